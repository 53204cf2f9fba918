// The subcommand table and the shared flags: the one place that lists what slmctl can do.
// main.cpp walks this table; each set_*_command lives in its own cmd-*.cpp file.
#include <cstdlib>
#include <cstring>

#include "cli/cli.h"
#include "common/common.h"
#include <faiss/Index.h>
#include <sqlite3.h>

#include "common/tensor-plugin.h"

namespace slm::cli {

global_options& globals() {
    static global_options g;
    return g;
}

const std::vector<subcommand>& subcommands() {
    static const std::vector<subcommand> table = {
        {"collect", "S1+S2: ingest agent call logs into the database, scrubbed and validated", set_collect_command},
        {"cluster", "S3: embed and cluster the stored calls into recurring tasks", set_cluster_command},
        {"select", "S4: rank candidate small models per cluster", nullptr, "issue #12", true},
        {"finetune", "S5: LoRA fine-tune a small model on a cluster's calls", nullptr, "issue #10", true},
        {"eval", "replay held-out calls: small model vs the logged LLM answers", nullptr, "issue #11", true},
        {"run", "S6: the whole loop (collect -> cluster -> select -> finetune -> eval), skipping unchanged stages", nullptr, "", true},
        {"route", "route new requests to their cluster's approved adapter or the LLM", nullptr, "", true},
        {"model", "inspect a model, tokenize, generate (GGUF file or HF directory)", nullptr, "", true},
        {"db", "inspect the database", set_db_command},
    };
    return table;
}

void add_shared_flags(CLI::App& app) {
    auto& g = globals();
    if (const char* env = std::getenv("SLMCTL_DB"); env && *env) g.db_path = env;
    app.add_option("--db", g.db_path, "SQLite database (env SLMCTL_DB)")->capture_default_str();
    app.add_flag("--json", g.json, "Machine-readable JSON on stdout");
    app.add_flag("-v,--verbose", g.verbose, "More output on stderr (repeat for debug)");
    app.add_flag("-q,--quiet", g.quiet, "Only errors and warnings on stderr");
    app.add_option("--threads", g.threads, "Threads for tensor and clustering work (default: all cores)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--device", g.device, "Device for tensor work")->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
}

void apply_globals() {
    auto& g = globals();
    if (g.quiet)
        set_verbosity(verbosity::quiet);
    else if (g.verbose >= 2)
        set_verbosity(verbosity::debug);
    else if (g.verbose == 1)
        set_verbosity(verbosity::verbose);
    set_num_threads(g.threads);
    // libtorch's intra-op threads follow, when the tensor half is loaded (it applies them on load too)
    if (void* f = tensor_plugin::symbol_if_loaded("slm_plugin_apply_threads"))
        reinterpret_cast<void (*)(int)>(f)(num_threads());
}

bool setup_tensor_command(const std::string& name, CLI::App& sub) {
    auto setup = tensor_plugin::fn<bool(const char*, CLI::App*)>("slm_plugin_setup_command");
    return setup(name.c_str(), &sub);
}

void print_json(const nlohmann::json& j) { fmt::print("{}\n", j.dump(2)); }

void not_built(const std::string& command, const std::string& issue) {
    throw usage_error(fmt::format("`slmctl {}` is not built yet in this version", command),
                      fmt::format("it is tracked in {}; nothing was done", issue));
}

std::string version_string() {
    bool cuda = false;
    std::string devices;
#ifdef SLMCTL_WITH_CUDA
    cuda = true;
    try {
        devices = fmt::format(", CUDA devices: {}", tensor_plugin::fn<int()>("slm_plugin_cuda_devices")());
    } catch (const std::exception& e) {  // --version still answers when the CUDA libraries are missing
        devices = fmt::format(", CUDA devices: unknown ({})", e.what());
    }
#endif
    return fmt::format("slmctl {} (libtorch {}, faiss {}.{}.{}, sqlite {}, CUDA compiled: {}{})", SLMCTL_VERSION,
                       SLMCTL_TORCH_VERSION, FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR, FAISS_VERSION_PATCH,
                       sqlite3_libversion(), cuda ? "yes" : "no", devices);
}

}  // namespace slm::cli
