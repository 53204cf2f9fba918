// Internal to slm_clustering: the little-endian blob layout of saved embedders (magic, format
// version, length-prefixed strings and float arrays), checked on every read.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/common.h"

namespace slm::clustering {
class embedder;
}

namespace slm::clustering::detail {

struct blob_writer {
    std::vector<uint8_t> out;
    void bytes(const void* p, size_t n) {
        auto* b = static_cast<const uint8_t*>(p);
        out.insert(out.end(), b, b + n);
    }
    void u64(uint64_t v) { bytes(&v, 8); }
    void magic(const char (&m)[9], uint32_t version) {
        bytes(m, 8);
        bytes(&version, 4);
    }
    void str(const std::string& s) {
        u64(s.size());
        bytes(s.data(), s.size());
    }
    void floats(const std::vector<float>& v) {
        u64(v.size());
        bytes(v.data(), v.size() * sizeof(float));
    }
};

class blob_reader {
public:
    blob_reader(const std::vector<uint8_t>& b, std::string what) : b_(b), what_(std::move(what)) {}
    void magic(const char (&m)[9], uint32_t version) {
        need(12);
        if (std::memcmp(b_.data() + pos_, m, 8) != 0)
            fail(fmt::format("does not start with {}", std::string(m, 8)));
        uint32_t v;
        std::memcpy(&v, b_.data() + pos_ + 8, 4);
        if (v != version)
            throw user_error(fmt::format("stored {} has format {}, this slmctl reads {}", what_, v, version),
                             "run `slmctl cluster` again with this slmctl");
        pos_ += 12;
    }
    uint64_t u64() {
        need(8);
        uint64_t v;
        std::memcpy(&v, b_.data() + pos_, 8);
        pos_ += 8;
        return v;
    }
    std::string str() {
        uint64_t n = u64();
        need(n);
        std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
        pos_ += n;
        return s;
    }
    std::vector<float> floats() {
        uint64_t n = u64();
        if (n > (b_.size() - pos_) / sizeof(float)) fail("float array runs past the end");
        std::vector<float> v(n);
        std::memcpy(v.data(), b_.data() + pos_, n * sizeof(float));
        pos_ += n * sizeof(float);
        return v;
    }
    void done() {
        if (pos_ != b_.size()) fail(fmt::format("{} trailing bytes", b_.size() - pos_));
    }

private:
    void need(uint64_t n) {
        if (n > b_.size() - pos_) fail("truncated");
    }
    [[noreturn]] void fail(const std::string& why) {
        throw user_error(fmt::format("stored {} is damaged: {} (at byte {} of {})", what_, why, pos_, b_.size()),
                         "run `slmctl cluster` again to rebuild it");
    }
    const std::vector<uint8_t>& b_;
    std::string what_;
    size_t pos_ = 0;
};

std::unique_ptr<embedder> load_tfidf(const std::vector<uint8_t>& blob);

}  // namespace slm::clustering::detail
