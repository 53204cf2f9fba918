// Block layouts of the ggml types and their conversion to float. Layouts follow ggml-common.h
// (llama.cpp); blocks are read byte by byte so file data need not be aligned.
#include "model/format/dequant.h"

#include <cstring>

#include "common/common.h"

namespace slm::model {

namespace {

constexpr int64_t qk_k = 256;  // super-block size of the k-quants

// clang-format off
constexpr ggml_type_traits k_types[] = {
    // type               name      block  bytes                      dequantize
    {ggml_type::f32,    "F32",     1,     4,                          true},
    {ggml_type::f16,    "F16",     1,     2,                          true},
    {ggml_type::q4_0,   "Q4_0",    32,    2 + 16,                     true},
    {ggml_type::q4_1,   "Q4_1",    32,    2 + 2 + 16,                 true},
    {ggml_type::q5_0,   "Q5_0",    32,    2 + 4 + 16,                 true},
    {ggml_type::q5_1,   "Q5_1",    32,    2 + 2 + 4 + 16,             true},
    {ggml_type::q8_0,   "Q8_0",    32,    2 + 32,                     true},
    {ggml_type::q8_1,   "Q8_1",    32,    4 + 4 + 32,                 false},
    {ggml_type::q2_k,   "Q2_K",    qk_k,  16 + 64 + 2 + 2,            true},
    {ggml_type::q3_k,   "Q3_K",    qk_k,  32 + 64 + 12 + 2,           true},
    {ggml_type::q4_k,   "Q4_K",    qk_k,  2 + 2 + 12 + 128,           true},
    {ggml_type::q5_k,   "Q5_K",    qk_k,  2 + 2 + 12 + 32 + 128,      true},
    {ggml_type::q6_k,   "Q6_K",    qk_k,  128 + 64 + 16 + 2,          true},
    {ggml_type::q8_k,   "Q8_K",    qk_k,  4 + 256 + 32,               true},
    {ggml_type::iq4_nl, "IQ4_NL",  32,    2 + 16,                     true},
    {ggml_type::iq4_xs, "IQ4_XS",  qk_k,  2 + 2 + 4 + 128,            true},
    {ggml_type::i8,     "I8",      1,     1,                          true},
    {ggml_type::i16,    "I16",     1,     2,                          true},
    {ggml_type::i32,    "I32",     1,     4,                          true},
    {ggml_type::i64,    "I64",     1,     8,                          false},
    {ggml_type::f64,    "F64",     1,     8,                          true},
    {ggml_type::bf16,   "BF16",    1,     2,                          true},
};
// clang-format on

// Names of ggml types we can't size, so messages can still say what the file holds.
const char* other_type_name(uint32_t t) {
    switch (t) {
        case 4: case 5: return "Q4_2/Q4_3 (removed from ggml)";
        case 16: return "IQ2_XXS";
        case 17: return "IQ2_XS";
        case 18: return "IQ3_XXS";
        case 19: return "IQ1_S";
        case 21: return "IQ3_S";
        case 22: return "IQ2_S";
        case 29: return "IQ1_M";
        case 31: case 32: case 33: return "Q4_0_4_4/Q4_0_4_8/Q4_0_8_8 (removed from ggml)";
        case 34: return "TQ1_0";
        case 35: return "TQ2_0";
        case 39: return "MXFP4";
        default: return nullptr;
    }
}

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;  // little-endian host (x86-64/aarch64); GGUF is little-endian
}
inline float h2f(const uint8_t* p) { return fp16_to_f32(rd16(p)); }

// ---- type-0 / type-1 32-element blocks: w = d*q (+ m) ----

void deq_q4_0(const uint8_t* b, float* y) {  // {f16 d; u8 qs[16]}: w = d*(nibble-8)
    const float d = h2f(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        y[j] = d * (static_cast<int>(qs[j] & 0x0F) - 8);
        y[j + 16] = d * (static_cast<int>(qs[j] >> 4) - 8);
    }
}

void deq_q4_1(const uint8_t* b, float* y) {  // {f16 d, m; u8 qs[16]}: w = d*nibble + m
    const float d = h2f(b), m = h2f(b + 2);
    const uint8_t* qs = b + 4;
    for (int j = 0; j < 16; ++j) {
        y[j] = d * (qs[j] & 0x0F) + m;
        y[j + 16] = d * (qs[j] >> 4) + m;
    }
}

void deq_q5_0(const uint8_t* b, float* y) {  // {f16 d; u32 qh; u8 qs[16]}: w = d*(q5-16)
    const float d = h2f(b);
    const uint32_t qh = rd32(b + 2);
    const uint8_t* qs = b + 6;
    for (int j = 0; j < 16; ++j) {
        const int hi0 = (qh >> j) & 1, hi1 = (qh >> (j + 16)) & 1;
        y[j] = d * (((qs[j] & 0x0F) | (hi0 << 4)) - 16);
        y[j + 16] = d * (((qs[j] >> 4) | (hi1 << 4)) - 16);
    }
}

void deq_q5_1(const uint8_t* b, float* y) {  // {f16 d, m; u32 qh; u8 qs[16]}: w = d*q5 + m
    const float d = h2f(b), m = h2f(b + 2);
    const uint32_t qh = rd32(b + 4);
    const uint8_t* qs = b + 8;
    for (int j = 0; j < 16; ++j) {
        const int hi0 = (qh >> j) & 1, hi1 = (qh >> (j + 16)) & 1;
        y[j] = d * ((qs[j] & 0x0F) | (hi0 << 4)) + m;
        y[j + 16] = d * ((qs[j] >> 4) | (hi1 << 4)) + m;
    }
}

void deq_q8_0(const uint8_t* b, float* y) {  // {f16 d; i8 qs[32]}
    const float d = h2f(b);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 2);
    for (int j = 0; j < 32; ++j) y[j] = d * qs[j];
}

constexpr int8_t k_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                       1,    13,   25,  38,  53,  69,  89,  113};

void deq_iq4_nl(const uint8_t* b, float* y) {  // {f16 d; u8 qs[16]}: w = d*table[nibble]
    const float d = h2f(b);
    const uint8_t* qs = b + 2;
    for (int j = 0; j < 16; ++j) {
        y[j] = d * k_iq4nl_values[qs[j] & 0x0F];
        y[j + 16] = d * k_iq4nl_values[qs[j] >> 4];
    }
}

// ---- k-quants: 256-element super-blocks ----

// Q4_K/Q5_K pack 8 (scale, min) pairs of 6 bits into 12 bytes: pairs 0..3 in the low 6 bits of
// bytes 0..3 / 4..7; pairs 4..7 as nibbles of bytes 8..11 plus the top 2 bits of bytes 0..7.
inline void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = static_cast<uint8_t>((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

// {u8 scales[16]; u8 qs[64]; f16 d, dmin}: 16 sub-blocks of 16, scale/min nibbles,
// w = d*sc*q2 - dmin*m. qs byte l of each 32-byte half holds 4 sub-blocks' quants at shifts 0,2,4,6.
void deq_q2_k(const uint8_t* b, float* y) {
    const uint8_t* scales = b;
    const uint8_t* q = b + 16;
    const float d = h2f(b + 80), dmin = h2f(b + 82);
    int is = 0;
    for (int half = 0; half < 2; ++half, q += 32) {
        for (int shift = 0; shift < 8; shift += 2) {
            for (int part = 0; part < 2; ++part) {
                const uint8_t sc = scales[is++];
                const float dl = d * (sc & 0x0F), ml = dmin * (sc >> 4);
                for (int l = 0; l < 16; ++l) *y++ = dl * ((q[l + 16 * part] >> shift) & 3) - ml;
            }
        }
    }
}

// {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}: 16 sub-blocks of 16, 6-bit signed scales
// (stored +32), w = d*(sc-32)*(q2 + 4*hbit - 4).
void deq_q3_k(const uint8_t* b, float* y) {
    const uint8_t* hm = b;
    const uint8_t* q = b + 32;
    const uint8_t* sraw = b + 96;
    const float d = h2f(b + 108);
    // scales j<8: low nibble of byte j; j>=8: high nibble of byte j-8; top 2 bits from
    // byte 8 + j%4 at shift 2*(j/4).
    int scales[16];
    for (int j = 0; j < 16; ++j) {
        const int lo = j < 8 ? (sraw[j] & 0x0F) : (sraw[j - 8] >> 4);
        const int hi = (sraw[8 + j % 4] >> (2 * (j / 4))) & 3;
        scales[j] = (lo | (hi << 4)) - 32;
    }
    int is = 0;
    uint8_t m = 1;
    for (int half = 0; half < 2; ++half, q += 32) {
        for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
            for (int part = 0; part < 2; ++part) {
                const float dl = d * scales[is++];
                for (int l = 0; l < 16; ++l) {
                    const int idx = l + 16 * part;
                    const int v = ((q[idx] >> shift) & 3) - ((hm[idx] & m) ? 0 : 4);
                    *y++ = dl * v;
                }
            }
        }
    }
}

// {f16 d, dmin; u8 scales[12]; u8 qs[128]}: 8 sub-blocks of 32, w = d*sc*q4 - dmin*m.
// Each 32-byte chunk of qs holds two sub-blocks: low nibbles then high nibbles.
void deq_q4_k(const uint8_t* b, float* y) {
    const float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* q = b + 16;
    for (int is = 0; is < 8; is += 2, q += 32) {
        uint8_t sc, m;
        scale_min_k4(is, scales, sc, m);
        const float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, sc, m);
        const float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0x0F) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
}

// {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as Q4_K plus a 5th bit from qh
// (bit 2*chunk for the low-nibble sub-block, 2*chunk+1 for the high one).
void deq_q5_k(const uint8_t* b, float* y) {
    const float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* ql = b + 48;
    uint8_t u1 = 1, u2 = 2;
    for (int is = 0; is < 8; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
        uint8_t sc, m;
        scale_min_k4(is, scales, sc, m);
        const float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(is + 1, scales, sc, m);
        const float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0x0F) + ((qh[l] & u1) ? 16 : 0)) - m1;
        for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0)) - m2;
    }
}

// {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: 16 sub-blocks of 16, w = d*sc*(q6-32).
// Per 128 outputs: ql[0..63] and qh[0..31]; element l+32k takes nibble (k>=2) of ql[l + 32*(k&1)]
// and bits 2k..2k+1 of qh[l].
void deq_q6_k(const uint8_t* b, float* y) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = h2f(b + 208);
    for (int n = 0; n < 2; ++n, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

void deq_q8_k(const uint8_t* b, float* y) {  // {f32 d; i8 qs[256]; i16 bsums[16]}
    float d;
    std::memcpy(&d, b, 4);
    const int8_t* qs = reinterpret_cast<const int8_t*>(b + 4);
    for (int j = 0; j < 256; ++j) y[j] = d * qs[j];
}

// {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}: 8 sub-blocks of 32 with 6-bit scales
// (stored +32), values from the IQ4_NL table.
void deq_iq4_xs(const uint8_t* b, float* y) {
    const float d = h2f(b);
    const uint16_t scales_h = rd16(b + 2);
    const uint8_t* scales_l = b + 4;
    const uint8_t* qs = b + 8;
    for (int ib = 0; ib < 8; ++ib, y += 32, qs += 16) {
        const int ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F) | (((scales_h >> (2 * ib)) & 3) << 4);
        const float dl = d * (ls - 32);
        for (int j = 0; j < 16; ++j) {
            y[j] = dl * k_iq4nl_values[qs[j] & 0x0F];
            y[j + 16] = dl * k_iq4nl_values[qs[j] >> 4];
        }
    }
}

template <typename Fn>
void for_blocks(const void* src, float* dst, int64_t n, int64_t block, int64_t bytes, Fn fn) {
    const uint8_t* p = static_cast<const uint8_t*>(src);
    for (int64_t i = 0; i < n / block; ++i) fn(p + i * bytes, dst + i * block);
}

}  // namespace

const ggml_type_traits* find_ggml_type(uint32_t raw_type) {
    for (const auto& t : k_types)
        if (static_cast<uint32_t>(t.type) == raw_type) return &t;
    return nullptr;
}

const ggml_type_traits& ggml_traits(ggml_type type) {
    const ggml_type_traits* t = find_ggml_type(static_cast<uint32_t>(type));
    SLM_ASSERT(t != nullptr, "ggml type {} is not in the traits table", static_cast<uint32_t>(type));
    return *t;
}

std::string ggml_type_name(uint32_t raw_type) {
    if (const ggml_type_traits* t = find_ggml_type(raw_type)) return t->name;
    if (const char* n = other_type_name(raw_type)) return fmt::format("{} (type {})", n, raw_type);
    return fmt::format("type {}", raw_type);
}

uint64_t ggml_nbytes(ggml_type type, int64_t n) {
    const ggml_type_traits& t = ggml_traits(type);
    SLM_ASSERT(n >= 0 && n % t.block_size == 0, "{} elements is not a whole number of {} blocks of {}", n,
               t.name, t.block_size);
    return static_cast<uint64_t>(n / t.block_size) * static_cast<uint64_t>(t.type_size);
}

float fp16_to_f32(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {  // subnormal: renormalise
            int e = -1;
            do {
                ++e;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_fp16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
    const uint32_t abs = x & 0x7FFFFFFFu;
    if (abs >= 0x7F800000u) return sign | (abs > 0x7F800000u ? 0x7E00 : 0x7C00);  // NaN / Inf
    if (abs >= 0x477FF000u) return sign | 0x7C00;                                // rounds to Inf
    if (abs < 0x38800000u) {  // result is subnormal or zero: add 0.5 in the float domain
        float a;
        std::memcpy(&a, &abs, 4);
        a += 0.5f;  // 2^-1 makes the fp16 subnormal bits land in the low mantissa, rounded
        uint32_t r;
        std::memcpy(&r, &a, 4);
        return sign | static_cast<uint16_t>(r - 0x3F000000u);
    }
    const uint32_t mant_odd = (abs >> 13) & 1;
    uint32_t r = abs + 0xC8000FFFu + mant_odd;  // rebias exponent (-112<<23) and round to nearest even
    return sign | static_cast<uint16_t>(r >> 13);
}

float bf16_to_f32(uint16_t h) {
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 64);  // quiet NaN
    return static_cast<uint16_t>((x + (0x7FFF + ((x >> 16) & 1))) >> 16);
}

void dequantize(ggml_type type, const void* src, float* dst, int64_t n) {
    const ggml_type_traits& t = ggml_traits(type);
    SLM_ASSERT(n >= 0 && n % t.block_size == 0, "dequantize {}: {} elements is not a multiple of {}", t.name,
               n, t.block_size);
    if (n == 0) return;  // empty tensors: src/dst may be null
    const uint8_t* p = static_cast<const uint8_t*>(src);
    switch (type) {
        case ggml_type::f32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
        case ggml_type::f16:
            for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(rd16(p + 2 * i));
            return;
        case ggml_type::bf16:
            for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(rd16(p + 2 * i));
            return;
        case ggml_type::f64:
            for (int64_t i = 0; i < n; ++i) {
                double v;
                std::memcpy(&v, p + 8 * i, 8);
                dst[i] = static_cast<float>(v);
            }
            return;
        case ggml_type::i8:
            for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int8_t>(p[i]);
            return;
        case ggml_type::i16:
            for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int16_t>(rd16(p + 2 * i));
            return;
        case ggml_type::i32:
            for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(static_cast<int32_t>(rd32(p + 4 * i)));
            return;
        case ggml_type::q4_0: for_blocks(src, dst, n, 32, t.type_size, deq_q4_0); return;
        case ggml_type::q4_1: for_blocks(src, dst, n, 32, t.type_size, deq_q4_1); return;
        case ggml_type::q5_0: for_blocks(src, dst, n, 32, t.type_size, deq_q5_0); return;
        case ggml_type::q5_1: for_blocks(src, dst, n, 32, t.type_size, deq_q5_1); return;
        case ggml_type::q8_0: for_blocks(src, dst, n, 32, t.type_size, deq_q8_0); return;
        case ggml_type::iq4_nl: for_blocks(src, dst, n, 32, t.type_size, deq_iq4_nl); return;
        case ggml_type::q2_k: for_blocks(src, dst, n, qk_k, t.type_size, deq_q2_k); return;
        case ggml_type::q3_k: for_blocks(src, dst, n, qk_k, t.type_size, deq_q3_k); return;
        case ggml_type::q4_k: for_blocks(src, dst, n, qk_k, t.type_size, deq_q4_k); return;
        case ggml_type::q5_k: for_blocks(src, dst, n, qk_k, t.type_size, deq_q5_k); return;
        case ggml_type::q6_k: for_blocks(src, dst, n, qk_k, t.type_size, deq_q6_k); return;
        case ggml_type::q8_k: for_blocks(src, dst, n, qk_k, t.type_size, deq_q8_k); return;
        case ggml_type::iq4_xs: for_blocks(src, dst, n, qk_k, t.type_size, deq_iq4_xs); return;
        case ggml_type::q8_1:
        case ggml_type::i64: break;
    }
    throw user_error(fmt::format("cannot convert tensors of type {} to float", t.name),
                     "slmctl reads F32/F16/BF16, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and the K-quants; "
                     "use a GGUF quantized to one of those (e.g. Q8_0 or Q4_K_M)");
}

std::vector<float> dequantize(ggml_type type, const void* src, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n));
    dequantize(type, src, out.data(), n);
    return out;
}

}  // namespace slm::model
