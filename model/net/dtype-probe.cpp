// The matmul probe behind `--dtype auto`: times (M, in) x (in, out) matmuls of a model's shapes in
// fp32 and bf16 on this machine and keeps the faster, cached per CPU model + libtorch + threads.
#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <tuple>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "common/common.h"
#include "model/dtype.h"

namespace slm::model {

namespace fs = std::filesystem;

namespace {

std::string cpu_model() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) {
            auto colon = line.find(':');
            if (colon != std::string::npos) {
                auto v = line.substr(colon + 1);
                v.erase(0, v.find_first_not_of(' '));
                return v;
            }
        }
    return "unknown cpu";
}

std::string cache_file() { return cache_dir() + "/dtype-probe.json"; }

// The model's three matmul shapes at `rows` rows in one dtype: operands and FLOPs per repetition.
struct matmul_set {
    std::vector<std::pair<torch::Tensor, torch::Tensor>> ab;  // x (M, in), W (out, in)
    double flops = 0;
    matmul_set(const probe_shapes& s, int64_t rows, torch::ScalarType dt) {
        auto opt = torch::TensorOptions().dtype(dt);
        for (auto [in, out] : {std::pair{s.dim, s.qkv_out}, {s.dim, 2 * s.ffn}, {s.ffn, s.dim}}) {
            ab.emplace_back(torch::randn({rows, in}, opt), torch::randn({out, in}, opt));
            flops += 2.0 * double(rows) * double(in) * double(out);
        }
    }
    double seconds(int reps) const {
        const auto t0 = std::chrono::steady_clock::now();
        for (int r = 0; r < reps; ++r)
            for (const auto& [x, w] : ab) (void)torch::linear(x, w);
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
    }
};

// Best-of GFLOP/s for fp32 and bf16, the two timed in turn so that a load change on a shared
// machine hits both alike. The first round warms caches and oneDNN's kernel cache up.
std::pair<double, double> time_fp32_bf16(const probe_shapes& s, int64_t rows) {
    torch::NoGradGuard ng;
    const matmul_set f32(s, rows, torch::kFloat32), b16(s, rows, torch::kBFloat16);
    const int reps = std::max(3, static_cast<int>(1.5e9 / std::max(f32.flops, 1.0)));  // ~15 ms at 100 GFLOP/s
    // screen with one product set each: a dtype 5x slower cannot win. Without native bf16 (AVX2
    // only) ATen's reference bf16 GEMM runs at 1/10 to 1/400 of fp32, and timing it `reps` times
    // over 5 rounds took 8 minutes for a tiny model.
    (void)f32.seconds(1), (void)b16.seconds(1);  // first calls: allocation, kernel selection
    if (const double sf = f32.seconds(1), sb = b16.seconds(1); sb > 5 * sf || sf > 5 * sb)
        return {f32.flops / sf / 1e9, b16.flops / sb / 1e9};
    double best_f = 1e30, best_b = 1e30;
    const auto t0 = std::chrono::steady_clock::now();
    for (int round = 0; round < 5; ++round) {
        const double tf = f32.seconds(reps), tb = b16.seconds(reps);
        if (round == 0) continue;
        best_f = std::min(best_f, tf);
        best_b = std::min(best_b, tb);
        if (round >= 2 && std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > 2.0) break;
    }
    return {f32.flops / best_f / 1e9, b16.flops / best_b / 1e9};
}

double load_average() {
    double l[1] = {0};
    return getloadavg(l, 1) == 1 ? l[0] : 0.0;
}

}  // namespace

std::string probe_shapes::key() const { return fmt::format("C{} qkv{} F{}", dim, qkv_out, ffn); }

nlohmann::json dtype_choice::to_json() const {
    nlohmann::json j = {{"requested", requested}, {"choice", choice}, {"reason", reason}};
    if (fp32_gflops > 0) {
        j["gflops"] = {{"fp32_m256", fp32_gflops}, {"bf16_m256", bf16_gflops}, {"fp32_m8", fp32_gflops_m8},
                       {"bf16_m8", bf16_gflops_m8}};
        j["machine"] = machine;
        j["load_avg"] = load_avg;
    }
    return j;
}

dtype_choice probe_dtype_now(const probe_shapes& shapes, int64_t rows) {
    dtype_choice c;
    c.requested = "auto";
    c.reason = "probe";
    std::tie(c.fp32_gflops, c.bf16_gflops) = time_fp32_bf16(shapes, rows);
    std::tie(c.fp32_gflops_m8, c.bf16_gflops_m8) = time_fp32_bf16(shapes, 8);
    c.choice = c.bf16_gflops > c.fp32_gflops ? "bf16" : "fp32";
    c.machine = fmt::format("{}; libtorch {}; {} threads", cpu_model(), TORCH_VERSION, at::get_num_threads());
    c.load_avg = load_average();
    return c;
}

dtype_choice choose_dtype(const std::string& requested, const std::string& device, const probe_shapes& shapes) {
    dtype_choice c;
    c.requested = requested;
    if (requested == "fp32" || requested == "bf16") {
        c.choice = requested;
        c.reason = "requested";
        return c;
    }
    if (requested != "auto")
        throw usage_error(fmt::format("unknown dtype '{}'", requested), "use --dtype auto, fp32 or bf16");
    if (const char* e = std::getenv("SLMCTL_DTYPE"); e && *e) {
        std::string v = e;
        if (v != "fp32" && v != "bf16")
            throw user_error(fmt::format("SLMCTL_DTYPE={} is not a dtype", v), "set it to fp32 or bf16, or unset it");
        c.choice = v;
        c.reason = "SLMCTL_DTYPE";
        return c;
    }
    if (device != "cpu") {
        c.choice = "bf16";  // tensor cores: bf16 matmul is many times fp32 on every GPU we target
        c.reason = "cuda default";
        return c;
    }
    const std::string machine = fmt::format("{}; libtorch {}; {} threads", cpu_model(), TORCH_VERSION,
                                            at::get_num_threads());
    const std::string key = machine + "; " + shapes.key();
    const std::string path = cache_file();
    nlohmann::json cache = nlohmann::json::object();
    {
        std::ifstream f(path);
        if (f) {
            auto j = nlohmann::json::parse(f, nullptr, false);
            if (j.is_object()) cache = std::move(j);  // a corrupt cache is re-measured, not an error
        }
    }
    // a cached probe is used, except one taken under load (> 1.5x the cores) when the machine is
    // quiet now (< 0.5x): that one is measured again and replaced
    const double cores = available_cores();
    if (cache.contains(key) && cache[key].is_object()) {
        const auto& e = cache[key];
        const bool busy_then = e.value("load_avg", 0.0) > 1.5 * cores, quiet_now = load_average() < 0.5 * cores;
        c.choice = e.value("choice", "");
        if ((c.choice == "fp32" || c.choice == "bf16") && !(busy_then && quiet_now)) {
            c.reason = "cached probe";
            c.fp32_gflops = e.value("fp32_m256", 0.0);
            c.bf16_gflops = e.value("bf16_m256", 0.0);
            c.fp32_gflops_m8 = e.value("fp32_m8", 0.0);
            c.bf16_gflops_m8 = e.value("bf16_m8", 0.0);
            c.load_avg = e.value("load_avg", 0.0);
            c.machine = machine;
            return c;
        }
    }
    c = probe_dtype_now(shapes);
    log_verbose("dtype auto: fp32 {:.0f} GFLOP/s, bf16 {:.0f} GFLOP/s (M 256, {}) -> {}", c.fp32_gflops,
                c.bf16_gflops, shapes.key(), c.choice);
    if (c.load_avg > 1.5 * cores)
        log_verbose("dtype probe taken under load {:.1f} on {:.0f} cores: re-measured once the machine is quiet",
                    c.load_avg, cores);
    cache[key] = {{"choice", c.choice},          {"fp32_m256", c.fp32_gflops}, {"bf16_m256", c.bf16_gflops},
                  {"fp32_m8", c.fp32_gflops_m8}, {"bf16_m8", c.bf16_gflops_m8}, {"load_avg", c.load_avg}};
    // written to a temp file and renamed: concurrent processes never see half a cache
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    const std::string tmp = fmt::format("{}.{}.tmp", path, getpid());
    {
        std::ofstream o(tmp);
        o << cache.dump(2) << "\n";
    }
    fs::rename(tmp, path, ec);
    if (ec) {
        log_debug("could not write the dtype cache {}: {}", path, ec.message());
        fs::remove(tmp, ec);
    }
    return c;
}

}  // namespace slm::model
