// SHA-256 (FIPS 180-4): the identity of model files (a base model's sha256 beside its path).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace slm {

class sha256 {
public:
    sha256();
    void update(const void* data, size_t n);
    void update(std::string_view s) { update(s.data(), s.size()); }
    /// Lowercase hex digest; the object is spent afterwards.
    std::string hex();

private:
    void block(const uint8_t* p);
    uint32_t h_[8];
    uint8_t buf_[64];
    size_t used_ = 0;
    uint64_t bytes_ = 0;
};

/// sha256 of a file's bytes, hex; user_error naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace slm
