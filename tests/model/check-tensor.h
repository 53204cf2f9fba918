// Test helpers for the decoder tests: check_tensor (llm.c's habit: print the max abs diff) and the
// paths of the reference fixtures.
#pragma once
#include <torch/torch.h>  // before doctest: glog's CHECK must not win over doctest's
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/test-util.h"

namespace slm::test {

/// Max |a - b| over two tensors (compared in float32 on the CPU), printed; CHECKs it is <= tol.
inline float check_tensor(const torch::Tensor& a, const torch::Tensor& b, const std::string& label, float tol) {
    REQUIRE_MESSAGE(a.sizes() == b.sizes(), label << ": shape " << a.sizes() << " vs " << b.sizes());
    const float d = (a.to(torch::kCPU, torch::kFloat32) - b.to(torch::kCPU, torch::kFloat32)).abs().max().item<float>();
    MESSAGE(label << ": max abs diff " << d << " (tol " << tol << ")");
    CHECK_MESSAGE(d <= tol, label << ": max abs diff " << d << " > " << tol);
    return d;
}

inline std::string ref_dir(const std::string& rel = "") { return source_dir("tests/data/ref/" + rel); }

inline nlohmann::json read_json(const std::string& path) {
    std::ifstream f(path);
    REQUIRE_MESSAGE(f.good(), "cannot open " << path);
    return nlohmann::json::parse(f);
}

}  // namespace slm::test
