// `--dtype auto`: fp32 or bf16 chosen from a short matmul probe of the shapes a model uses, measured
// once per machine (CPU model, libtorch version, threads) and cached. Torch-free header.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace slm::model {

/// The matmuls a model runs per token: (M, in) x (in, out) for each (in, out).
struct probe_shapes {
    int64_t dim = 576;      ///< C
    int64_t qkv_out = 960;  ///< (H + 2K) * D
    int64_t ffn = 1536;     ///< F
    std::string key() const;  ///< "C576 qkv960 F1536"
};

/// What `auto` resolved to and why; shown by `slmctl model info` and stored with runs.
struct dtype_choice {
    std::string requested;     ///< "auto", "fp32", "bf16"
    std::string choice;        ///< "fp32" or "bf16"
    std::string reason;        ///< "probe", "cached probe", "requested", "SLMCTL_DTYPE", "cuda default"
    double fp32_gflops = 0;    ///< measured, rows M = 256 (prefill / training); 0 when not probed
    double bf16_gflops = 0;
    double fp32_gflops_m8 = 0; ///< rows M = 8 (batched decoding)
    double bf16_gflops_m8 = 0;
    std::string machine;       ///< CPU model name, libtorch version, threads
    double load_avg = 0;       ///< 1-minute load average when probed (a busy probe is redone when quiet)
    nlohmann::json to_json() const;
};

/// Resolves `requested` ("auto", "fp32", "bf16") for `device`. `auto` on the CPU: the environment
/// variable SLMCTL_DTYPE if set, else the faster dtype at M = 256 of a matmul probe of `shapes`
/// (~0.2 s), cached in $SLMCTL_CACHE/dtype-probe.json (default ~/.cache/slmctl). On CUDA: bf16.
/// usage_error for an unknown name.
dtype_choice choose_dtype(const std::string& requested, const std::string& device, const probe_shapes& shapes = {});

/// Runs the probe now (no cache): what bench/RESULTS.md records as matmul peaks.
dtype_choice probe_dtype_now(const probe_shapes& shapes, int64_t rows = 256);

}  // namespace slm::model
