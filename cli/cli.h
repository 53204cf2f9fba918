// The CLI layer's shared pieces: global flags, the subcommand table, output helpers.
// Subcommand files parse, call a module's API and print; no pipeline logic lives in cli/.
#pragma once
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace slm::cli {

/// Flags every subcommand accepts (declared once, on the root app).
struct global_options {
    std::string db_path = "slmctl.db";  ///< --db, env SLMCTL_DB
    bool json = false;                  ///< --json: machine-readable output on stdout
    int verbose = 0;                    ///< -v (repeatable)
    bool quiet = false;                 ///< -q
    int threads = 0;                    ///< --threads; 0 = all cores
    std::string device = "cpu";         ///< --device cpu|cuda (tensor work)
};
global_options& globals();

/// Declares the shared flags on the root app.
void add_shared_flags(CLI::App& app);
/// Applies verbosity and thread count; call at the start of every subcommand callback.
void apply_globals();

/// Prints JSON to stdout (one document, newline-terminated).
void print_json(const nlohmann::json& j);

struct subcommand {
    const char* name;
    const char* help;
    void (*setup)(CLI::App& sub);  ///< nullptr: in the tensor plugin (`tensor`), or not built yet (exit 2)
    const char* issue = "";        ///< where the unbuilt work is tracked
    bool tensor = false;           ///< set up by libslmctl-torch.so (slm_plugin_setup_command), loaded on use
};
/// The one table of subcommands, in pipeline order.
const std::vector<subcommand>& subcommands();

/// For a subcommand whose module is not built yet: says so, exit status 2.
[[noreturn]] void not_built(const std::string& command, const std::string& issue);

// One per cmd-*.cpp file. The tensor subcommands' files are compiled into libslmctl-torch.so and
// reached through cli/tensor-plugin.cpp's slm_plugin_setup_command.
void set_db_command(CLI::App& sub);
void set_collect_command(CLI::App& sub);
void set_cluster_command(CLI::App& sub);
void set_model_command(CLI::App& sub);     // tensor
void set_finetune_command(CLI::App& sub);  // tensor
void set_select_command(CLI::App& sub);  // tensor
void set_eval_command(CLI::App& sub);      // tensor
void set_run_command(CLI::App& sub);       // tensor
void set_route_command(CLI::App& sub);     // tensor

/// Sets a tensor subcommand up from the plugin (loading it); false when the plugin does not build
/// that command yet.
bool setup_tensor_command(const std::string& name, CLI::App& sub);

/// One line: "slmctl 0.1.0 (libtorch x, faiss y, sqlite z, CUDA compiled: yes/no)". Loads the tensor
/// plugin only in a CUDA build (to count devices).
std::string version_string();

}  // namespace slm::cli
