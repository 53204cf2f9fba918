// Entry points of libslmctl-torch.so, the tensor half of slmctl (see common/tensor-plugin.h): sets up
// the tensor subcommands and applies the thread count to libtorch. Wiring only, as in all of cli/.
#include <cstring>

#include "cli/cli.h"
#include "common/common.h"
#include "model/runtime.h"

extern "C" {

/// Sets up the subcommand `name` on `sub`; false when this build has no such tensor command.
bool slm_plugin_setup_command(const char* name, CLI::App* sub) {
    using namespace slm::cli;
    slm::model::set_torch_threads(slm::num_threads());
    struct entry {
        const char* name;
        void (*setup)(CLI::App&);
    };
    static const entry table[] = {
        {"model", set_model_command},
        {"finetune", set_finetune_command},
        {"select", set_select_command},
        {"eval", set_eval_command},
        {"run", set_run_command},
        {"route", set_route_command},
    };
    for (const auto& e : table)
        if (std::strcmp(e.name, name) == 0) {
            e.setup(*sub);
            return true;
        }
    return false;
}

/// libtorch intra-op threads (cli::apply_globals calls this once the plugin is loaded).
void slm_plugin_apply_threads(int n) { slm::model::set_torch_threads(n); }

/// Visible CUDA devices (for `slmctl --version` in a CUDA build).
int slm_plugin_cuda_devices() { return slm::model::runtime().cuda_devices; }

}  // extern "C"
