// Entry point: builds the CLI from the subcommand table and maps every exception to an exit
// code in one place: 0 ok, 1 user/data error, 2 usage error or not built, 3 internal error.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/cli.h"
#include "common/common.h"

namespace {

int report(const char* kind, const std::string& msg, const std::string& hint, int code) {
    std::fflush(stdout);
    fmt::print(stderr, "{}: {}\n", kind, msg);
    if (!hint.empty()) fmt::print(stderr, "hint: {}\n", hint);
    return code;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace slm;
    CLI::App app{"slmctl: turn an agent system's LLM calls into small, specialised language models", "slmctl"};
    app.fallthrough();  // shared flags may follow the subcommand: `slmctl db info --json`
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all", "Help for every subcommand");
    app.add_flag_callback("--version", [] {
        fmt::print("{}\n", cli::version_string());
        throw CLI::Success();
    }, "Print version (and libtorch/faiss/sqlite versions, CUDA support) and exit");
    cli::add_shared_flags(app);
    // A tensor subcommand is set up from the plugin only when the command line names it, so that
    // `slmctl collect` never loads libtorch.
    auto named = [&](const char* name) {
        for (int i = 1; i < argc; ++i)
            if (std::strcmp(argv[i], name) == 0) return true;
        return false;
    };
    try {
        for (const auto& sc : cli::subcommands()) {
            CLI::App* sub = app.add_subcommand(sc.name, sc.help);
            if (sc.setup) {
                sc.setup(*sub);
                continue;
            }
            if (sc.tensor && (named(sc.name) || named("--help-all")) && cli::setup_tensor_command(sc.name, *sub)) continue;
            sub->fallthrough(false)->allow_extras();  // keep its future flags: the user sees "not built"
            std::string name = sc.name, issue = sc.issue;
            sub->callback([name, issue] { cli::not_built(name, issue); });
        }
        app.parse(argc, argv);
        return 0;
    } catch (const CLI::ParseError& e) {
        // --help/--version arrive here as Success-like errors with code 0; all else is usage (2)
        return app.exit(e) == 0 ? 0 : 2;
    } catch (const user_error& e) {
        return report("error", e.what(), e.hint, 1);
    } catch (const usage_error& e) {
        return report("error", e.what(), e.hint, 2);
    } catch (const internal_error& e) {
        return report("error", e.what(), "this is a bug in slmctl; please report it with the command line", 3);
    } catch (const std::bad_alloc&) {
        return report("error", "out of memory", "try a smaller batch or fewer threads", 3);
    } catch (const std::exception& e) {
        return report("error", fmt::format("internal error: {}", e.what()),
                      "this is a bug in slmctl; please report it with the command line", 3);
    }
}
