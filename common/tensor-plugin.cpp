// Loads libslmctl-torch.so on demand (dlopen) and resolves its entry points; the reason slmctl
// starts in milliseconds for collect/db/cluster instead of paying libtorch's ~0.3 s load.
#include "common/tensor-plugin.h"

#include <dlfcn.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <mutex>

#include "common/common.h"

namespace slm::tensor_plugin {

namespace {

std::string exe_dir() {
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0) return ".";
    std::string p(buf, static_cast<size_t>(n));
    auto slash = p.rfind('/');
    return slash == std::string::npos ? "." : p.substr(0, slash);
}

std::mutex g_mu;
void* g_handle = nullptr;

}  // namespace

std::string plugin_path() {
    if (const char* e = std::getenv("SLMCTL_TORCH_PLUGIN"); e && *e) return e;
    return exe_dir() + "/libslmctl-torch.so";
}

void* symbol_if_loaded(const char* name) {
    {
        std::lock_guard lk(g_mu);
        if (g_handle) return dlsym(g_handle, name);
    }
    return dlsym(RTLD_DEFAULT, name);
}

void* symbol(const char* name) {
    if (void* s = symbol_if_loaded(name)) return s;
    std::lock_guard lk(g_mu);
    if (!g_handle) {
        std::string path = plugin_path();
        log_debug("loading the tensor plugin {}", path);
        // RTLD_GLOBAL: libtorch's own dlopen'ed pieces and exceptions see one set of symbols
        g_handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
        if (!g_handle) {
            const char* err = dlerror();
            throw user_error(fmt::format("cannot load slmctl's tensor half {}: {}", path, err ? err : "unknown error"),
                             "it is built beside the slmctl binary (scripts/build.sh); set SLMCTL_TORCH_PLUGIN to "
                             "its path if you moved the binary");
        }
    }
    void* s = dlsym(g_handle, name);
    if (!s)
        throw internal_error(fmt::format("{} lacks the entry point {} (a stale build? rebuild slmctl)",
                                         plugin_path(), name));
    return s;
}

}  // namespace slm::tensor_plugin
