// libtorch runtime facts and settings for the CLI and other modules, without exposing torch
// headers: versions, CUDA availability, thread count.
#pragma once
#include <string>

namespace slm::model {

struct runtime_info {
    std::string torch_version;   ///< libtorch's own TORCH_VERSION
    bool cuda_compiled = false;  ///< built with -DSLMCTL_CUDA=ON
    int cuda_devices = 0;        ///< visible CUDA devices at run time
    int threads = 1;             ///< libtorch intra-op threads
};
runtime_info runtime();

/// Sets libtorch's intra-op thread count (it starts with 1 here).
void set_torch_threads(int n);

/// Parses "cpu" / "cuda" / "cuda:N"; user_error if CUDA is asked for but not available.
void check_device(const std::string& device);

}  // namespace slm::model
