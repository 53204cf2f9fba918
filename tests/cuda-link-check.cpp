// The quick proof that a build's libtorch link line works (scripts/check-cuda-build.sh --quick): one
// translation unit against slm_libtorch and model/runtime, linked and run. Prints what the runtime
// sees; a matmul on the CPU, and on every visible CUDA device compared with the CPU's; exit 0 when
// all of it holds, and when CUDA is asked for without a device, the user error check_device gives.
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "common/common.h"
#include "model/runtime.h"

int main() {
    const auto r = slm::model::runtime();
    std::printf("libtorch %s, CUDA compiled: %s, CUDA devices: %d\n", r.torch_version.c_str(),
                r.cuda_compiled ? "yes" : "no", r.cuda_devices);
    torch::manual_seed(0);
    auto a = torch::randn({256, 512}), b = torch::randn({512, 128});
    auto c = torch::mm(a, b);  // (256, 128)
    std::printf("cpu matmul: |c| = %.4f\n", c.norm().item<double>());
    for (int i = 0; i < r.cuda_devices; ++i) {
        const torch::Device dev(torch::kCUDA, static_cast<c10::DeviceIndex>(i));
        auto g = torch::mm(a.to(dev), b.to(dev)).cpu();
        const double diff = (g - c).abs().max().item<double>();
        std::printf("cuda:%d matmul: max |gpu - cpu| = %.2e\n", i, diff);
        if (!(diff < 1e-3)) return 1;
    }
    if (r.cuda_devices == 0) {
        try {
            slm::model::check_device("cuda");
            std::printf("check_device(\"cuda\") did not refuse without a device\n");
            return 1;
        } catch (const slm::user_error& e) {
            std::printf("--device cuda without a device: %s (hint: %s)\n", e.what(), e.hint.c_str());
        }
    }
    return 0;
}
