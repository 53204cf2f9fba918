// BLAKE2b (RFC 7693), unkeyed, for content ids and quarantine raw hashes: a strong hash that runs
// near 1 GB/s in portable C++, so hashing every stored byte costs little next to parsing.
#include <cstring>

#include "collector/collector.h"
#include "common/common.h"

// GCC's Zen tuning (-march=native on an AMD EPYC gives -mtune=znver3) keeps the 32 live 64-bit
// words of a compression in xmm registers, moving each one through vmovq: the hash ran at ~190 MB/s
// instead of ~900 (bench: 55 MB, one core). Generic tuning spills to the stack, which is cheap.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#pragma GCC target("tune=generic")
#endif

namespace slm::collector {

namespace {

constexpr uint64_t iv[8] = {0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
                            0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
                            0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

constexpr uint8_t sigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
};

inline uint64_t rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

inline uint64_t load64(const uint8_t* p) {
    uint64_t v;
    std::memcpy(&v, p, 8);  // little-endian hosts only (x86-64, aarch64)
    return v;
}

}  // namespace

hasher::hasher(size_t digest_bytes) : outlen_(digest_bytes) {
    SLM_ASSERT(digest_bytes >= 1 && digest_bytes <= 64, "BLAKE2b digest size {} out of range", digest_bytes);
    for (int i = 0; i < 8; ++i) h_[i] = iv[i];
    h_[0] ^= 0x01010000ULL ^ static_cast<uint64_t>(outlen_);
}

void hasher::compress(const uint8_t* block, bool last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; ++i) m[i] = load64(block + 8 * i);
    for (int i = 0; i < 8; ++i) {
        v[i] = h_[i];
        v[i + 8] = iv[i];
    }
    v[12] ^= t_[0];
    v[13] ^= t_[1];
    if (last) v[14] = ~v[14];
#define SLM_B2_G(a, b, c, d, x, y)      \
    a = a + b + x;                      \
    d = rotr(d ^ a, 32);                \
    c = c + d;                          \
    b = rotr(b ^ c, 24);                \
    a = a + b + y;                      \
    d = rotr(d ^ a, 16);                \
    c = c + d;                          \
    b = rotr(b ^ c, 63);
    // unrolled so that every sigma index is a constant
#pragma GCC unroll 12
    for (int r = 0; r < 12; ++r) {
        const uint8_t* s = sigma[r];
        SLM_B2_G(v[0], v[4], v[8], v[12], m[s[0]], m[s[1]]);
        SLM_B2_G(v[1], v[5], v[9], v[13], m[s[2]], m[s[3]]);
        SLM_B2_G(v[2], v[6], v[10], v[14], m[s[4]], m[s[5]]);
        SLM_B2_G(v[3], v[7], v[11], v[15], m[s[6]], m[s[7]]);
        SLM_B2_G(v[0], v[5], v[10], v[15], m[s[8]], m[s[9]]);
        SLM_B2_G(v[1], v[6], v[11], v[12], m[s[10]], m[s[11]]);
        SLM_B2_G(v[2], v[7], v[8], v[13], m[s[12]], m[s[13]]);
        SLM_B2_G(v[3], v[4], v[9], v[14], m[s[14]], m[s[15]]);
    }
#undef SLM_B2_G
    for (int i = 0; i < 8; ++i) h_[i] ^= v[i] ^ v[i + 8];
}

void hasher::update(const void* data, size_t n) {
    auto p = static_cast<const uint8_t*>(data);
    while (n > 0) {
        if (buflen_ == 128) {  // a full block is compressed only once more data follows
            t_[0] += 128;
            if (t_[0] < 128) ++t_[1];
            compress(buf_, false);
            buflen_ = 0;
        }
        if (buflen_ == 0) {
            while (n > 128) {  // whole blocks straight from the input
                t_[0] += 128;
                if (t_[0] < 128) ++t_[1];
                compress(p, false);
                p += 128;
                n -= 128;
            }
        }
        size_t take = std::min(n, 128 - buflen_);
        std::memcpy(buf_ + buflen_, p, take);
        buflen_ += take;
        p += take;
        n -= take;
    }
}

std::string hasher::hex() {
    t_[0] += buflen_;
    if (t_[0] < buflen_) ++t_[1];
    std::memset(buf_ + buflen_, 0, 128 - buflen_);
    compress(buf_, true);
    uint8_t out[64];
    std::memcpy(out, h_, 64);
    static const char digits[] = "0123456789abcdef";
    std::string s(outlen_ * 2, '0');
    for (size_t i = 0; i < outlen_; ++i) {
        s[2 * i] = digits[out[i] >> 4];
        s[2 * i + 1] = digits[out[i] & 15];
    }
    return s;
}

std::string blake2b_hex(std::string_view data, size_t digest_bytes) {
    hasher h(digest_bytes);
    h.update(data);
    return h.hex();
}

}  // namespace slm::collector
