// Matmul peaks from C++ through libtorch: (M, N) x (N, N) in fp32 and bf16, best of several runs,
// for bench/platform/run.sh. Usage: matmul M N[,N...] THREADS
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
    const int64_t M = argc > 1 ? std::atoll(argv[1]) : 1024;
    std::vector<int64_t> ns;
    std::stringstream ss(argc > 2 ? argv[2] : "576,1536,2048");
    for (std::string t; std::getline(ss, t, ',');) ns.push_back(std::stoll(t));
    at::set_num_threads(argc > 3 ? std::atoi(argv[3]) : 2);
    torch::NoGradGuard ng;
    for (auto N : ns)
        for (auto dt : {torch::kFloat32, torch::kBFloat16}) {
            auto a = torch::randn({M, N}).to(dt), b = torch::randn({N, N}).to(dt);
            const double flops = 2.0 * M * N * N;
            const int reps = std::max(3, static_cast<int>(4e9 / flops));
            double best = 1e30;
            for (int round = 0; round < 6; ++round) {
                auto t0 = std::chrono::steady_clock::now();
                for (int r = 0; r < reps; ++r) (void)torch::mm(a, b);
                double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
                if (round > 0) best = std::min(best, s);
            }
            std::printf("{\"M\": %ld, \"N\": %ld, \"dtype\": \"%s\", \"threads\": %d, \"gflops\": %.1f}\n", M, N,
                        dt == torch::kFloat32 ? "fp32" : "bf16", at::get_num_threads(), flops / best / 1e9);
        }
}
