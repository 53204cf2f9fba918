// libtorch runtime: versions, CUDA availability and thread settings, behind runtime.h so that
// callers (cli/) never include torch.
#include "model/runtime.h"

#include <torch/torch.h>
#include <torch/version.h>

#include "common/common.h"

namespace slm::model {

runtime_info runtime() {
    runtime_info r;
    r.torch_version = TORCH_VERSION;
#ifdef SLMCTL_WITH_CUDA
    r.cuda_compiled = true;
#endif
    r.cuda_devices = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
    r.threads = at::get_num_threads();
    return r;
}

void set_torch_threads(int n) {
    if (n <= 0) n = available_cores();
    if (at::get_num_threads() != n) at::set_num_threads(n);
}

void check_device(const std::string& device) {
    if (device == "cpu") return;
    if (device.rfind("cuda", 0) == 0) {
        if (!torch::cuda::is_available())
            throw user_error(fmt::format("device '{}' requested but no CUDA device is available", device),
                             "this slmctl was built for CPU or no GPU is visible; rebuild with -DSLMCTL_CUDA=ON "
                             "against a CUDA libtorch, or use --device cpu");
        return;
    }
    throw user_error(fmt::format("unknown device '{}'", device), "use --device cpu or --device cuda");
}

}  // namespace slm::model
