// Tests of the GGUF reader and dequantizers: hand-packed blocks against the documented formulas,
// real files (SmolLM2 Q4_1, ollama's tiny llama), and truncated / corrupted inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "common/common.h"
#include "model/format/dequant.h"
#include "model/format/gguf-reader.h"
#include "model/tokenizer.h"
#include "tests/test-util.h"

using namespace slm::model;

namespace {

std::string smollm2_path() { return slm::models_dir() + "/SmolLM2-135M-Instruct.Q4_1.gguf"; }

void require_smollm2() {
    REQUIRE_MESSAGE(std::filesystem::exists(smollm2_path()),
                    "SmolLM2 GGUF not found at " << smollm2_path()
                                                 << ": run `make test` or scripts/fetch-models.sh to fetch it");
}

void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
    b[at] = v & 0xFF;
    b[at + 1] = v >> 8;
}
float h(float x) { return fp16_to_f32(f32_to_fp16(x)); }  // value as stored in an f16 field

// max |a-b| over two arrays, printed on failure (as llm.c's check_tensor)
void check_close(const std::vector<float>& got, const std::vector<float>& want, const char* label, float tol = 1e-6f) {
    REQUIRE(got.size() == want.size());
    float maxdiff = 0;
    size_t at = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        const float d = std::fabs(got[i] - want[i]);
        if (d > maxdiff) maxdiff = d, at = i;
    }
    INFO(label << ": max diff " << maxdiff << " at " << at << " (got " << got[at] << ", want " << want[at] << ")");
    CHECK(maxdiff <= tol);
}

// ---- a minimal GGUF writer for synthetic files --------------------------------------------
struct gguf_builder {
    std::vector<uint8_t> b;
    template <typename T> void raw(T v) {
        const auto* p = reinterpret_cast<const uint8_t*>(&v);
        b.insert(b.end(), p, p + sizeof(T));
    }
    void str(const std::string& s) {
        raw<uint64_t>(s.size());
        b.insert(b.end(), s.begin(), s.end());
    }
    void key(const std::string& k, gguf_type t) {
        str(k);
        raw<uint32_t>(static_cast<uint32_t>(t));
    }
};

// A file with every metadata type, a nested array and three tensors (F32, F16, Q8_0).
std::vector<uint8_t> synthetic_gguf() {
    gguf_builder g;
    g.b.insert(g.b.end(), {'G', 'G', 'U', 'F'});
    g.raw<uint32_t>(3);
    g.raw<uint64_t>(3);   // tensors
    g.raw<uint64_t>(17);  // kvs
    g.key("general.architecture", gguf_type::string), g.str("llama");
    g.key("t.u8", gguf_type::u8), g.raw<uint8_t>(200);
    g.key("t.i8", gguf_type::i8), g.raw<int8_t>(-5);
    g.key("t.u16", gguf_type::u16), g.raw<uint16_t>(60000);
    g.key("t.i16", gguf_type::i16), g.raw<int16_t>(-300);
    g.key("t.u32", gguf_type::u32), g.raw<uint32_t>(4000000000u);
    g.key("t.i32", gguf_type::i32), g.raw<int32_t>(-7);
    g.key("t.f32", gguf_type::f32), g.raw<float>(1.5f);
    g.key("t.bool", gguf_type::boolean), g.raw<uint8_t>(1);
    g.key("t.u64", gguf_type::u64), g.raw<uint64_t>(1ull << 40);
    g.key("t.i64", gguf_type::i64), g.raw<int64_t>(-(1ll << 40));
    g.key("t.f64", gguf_type::f64), g.raw<double>(0.25);
    g.key("t.strs", gguf_type::array), g.raw<uint32_t>(8), g.raw<uint64_t>(3), g.str("a"), g.str(""), g.str("ccc");
    g.key("t.f32s", gguf_type::array), g.raw<uint32_t>(6), g.raw<uint64_t>(2), g.raw<float>(0.5f), g.raw<float>(-2.f);
    g.key("t.i32s", gguf_type::array), g.raw<uint32_t>(5), g.raw<uint64_t>(3), g.raw<int32_t>(1), g.raw<int32_t>(-1),
        g.raw<int32_t>(6);
    // [[1, 2], [3]] as arrays of u16
    g.key("t.nested", gguf_type::array), g.raw<uint32_t>(9), g.raw<uint64_t>(2);
    g.raw<uint32_t>(2), g.raw<uint64_t>(2), g.raw<uint16_t>(1), g.raw<uint16_t>(2);
    g.raw<uint32_t>(2), g.raw<uint64_t>(1), g.raw<uint16_t>(3);
    g.key("general.alignment", gguf_type::u32), g.raw<uint32_t>(64);
    // tensors: a [4] F32 at 0, a [2,3] F16 at 64, a [32] Q8_0 at 128
    g.str("a"), g.raw<uint32_t>(1), g.raw<int64_t>(4), g.raw<uint32_t>(0), g.raw<uint64_t>(0);
    g.str("b"), g.raw<uint32_t>(2), g.raw<int64_t>(2), g.raw<int64_t>(3), g.raw<uint32_t>(1), g.raw<uint64_t>(64);
    g.str("c"), g.raw<uint32_t>(1), g.raw<int64_t>(32), g.raw<uint32_t>(8), g.raw<uint64_t>(128);
    while (g.b.size() % 64) g.b.push_back(0);
    const size_t data = g.b.size();
    g.b.resize(data + 128 + 34);
    const float a[4] = {1, 2, 3, -4};
    std::memcpy(&g.b[data], a, sizeof(a));
    for (int i = 0; i < 6; ++i) put16(g.b, data + 64 + 2 * i, f32_to_fp16(0.5f * i));
    put16(g.b, data + 128, f32_to_fp16(0.25f));
    for (int i = 0; i < 32; ++i) g.b[data + 130 + i] = static_cast<uint8_t>(static_cast<int8_t>(i - 16));
    return g.b;
}

// Parsing (and building the tokenizer from what parsed) must either succeed or throw
// user_error: never crash, never anything else.
int parse_or_user_error(const std::vector<uint8_t>& buf, size_t size, const std::string& what,
                        bool with_tokenizer = false) {
    try {
        gguf_reader r(buf.data(), size, what);
        for (const auto& kv : r.metadata()) (void)kv.value.to_string();
        for (const auto& t : r.tensors()) {
            if (find_ggml_type(static_cast<uint32_t>(t.type))->can_dequantize && t.n_elements <= (1 << 20))
                (void)r.tensor_f32(t.name);
        }
        if (with_tokenizer && r.has("tokenizer.ggml.model")) {
            const auto tok = tokenizer::from_gguf(r);
            (void)tok.decode(tok.encode("Hello world, <s> 123 \xff", true, true));
        }
        return 0;
    } catch (const slm::user_error&) {
        return 1;
    } catch (const std::exception& e) {
        FAIL(what << ": threw a non-user error: " << e.what());
    }
    return 2;
}

}  // namespace

// ---- scalar conversions ------------------------------------------------------------------

TEST_CASE("fp16 and bf16 conversions") {
    CHECK(fp16_to_f32(0x3C00) == 1.0f);
    CHECK(fp16_to_f32(0xC000) == -2.0f);
    CHECK(fp16_to_f32(0x7BFF) == 65504.0f);
    CHECK(fp16_to_f32(0x0001) == std::ldexp(1.0f, -24));
    CHECK(fp16_to_f32(0x0400) == std::ldexp(1.0f, -14));
    CHECK(fp16_to_f32(0x3555) == 0.333251953125f);
    CHECK(std::isinf(fp16_to_f32(0x7C00)));
    CHECK(std::isnan(fp16_to_f32(0x7E00)));
    CHECK(std::signbit(fp16_to_f32(0x8000)));
    // every non-NaN half survives a round trip through float
    for (uint32_t u = 0; u < 0x10000; ++u) {
        const uint16_t hv = static_cast<uint16_t>(u);
        if ((hv & 0x7C00) == 0x7C00 && (hv & 0x3FF)) continue;
        REQUIRE(f32_to_fp16(fp16_to_f32(hv)) == hv);
    }
    CHECK(f32_to_fp16(1.0f + std::ldexp(1.0f, -11)) == 0x3C00);  // tie rounds to even
    CHECK(f32_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3C02);
    CHECK(f32_to_fp16(70000.f) == 0x7C00);
    CHECK(bf16_to_f32(0x3F80) == 1.0f);
    CHECK(bf16_to_f32(0xC0A0) == -5.0f);
    CHECK(f32_to_bf16(1.0f) == 0x3F80);
    CHECK(f32_to_bf16(bf16_to_f32(0x4049)) == 0x4049);
}

TEST_CASE("ggml type table") {
    CHECK(ggml_nbytes(ggml_type::q4_1, 64) == 40);
    CHECK(ggml_nbytes(ggml_type::q8_0, 32) == 34);
    CHECK(ggml_nbytes(ggml_type::q6_k, 256) == 210);
    CHECK(ggml_nbytes(ggml_type::q4_k, 512) == 288);
    CHECK(ggml_nbytes(ggml_type::q2_k, 256) == 84);
    CHECK(ggml_nbytes(ggml_type::q3_k, 256) == 110);
    CHECK(ggml_nbytes(ggml_type::q5_k, 256) == 176);
    CHECK(ggml_nbytes(ggml_type::q8_k, 256) == 292);
    CHECK(ggml_type_name(ggml_type::q5_1) == "Q5_1");
    CHECK(ggml_type_name(16) == "IQ2_XXS (type 16)");
    CHECK(find_ggml_type(1000) == nullptr);
    CHECK_THROWS_AS(ggml_nbytes(ggml_type::q4_0, 31), slm::internal_error);
    std::vector<uint8_t> z(40);
    CHECK_THROWS_AS(dequantize(ggml_type::q8_1, z.data(), 32), slm::user_error);
}

// ---- dequantization of hand-packed blocks ------------------------------------------------
// Each case picks quant values and scales, packs them the way ggml's quantizer does (bit
// positions from ggml-common.h), and compares with the documented formula.

TEST_CASE("dequantize plain types") {
    const float f[3] = {1.f, -0.5f, 3.25f};
    check_close(dequantize(ggml_type::f32, f, 3), {1.f, -0.5f, 3.25f}, "F32");
    const uint16_t hh[3] = {0x3C00, 0xB800, 0x4200};
    check_close(dequantize(ggml_type::f16, hh, 3), {1.f, -0.5f, 3.f}, "F16");
    const uint16_t bb[2] = {0x3F80, 0xBF00};
    check_close(dequantize(ggml_type::bf16, bb, 2), {1.f, -0.5f}, "BF16");
    const int8_t i8[2] = {-128, 127};
    check_close(dequantize(ggml_type::i8, i8, 2), {-128.f, 127.f}, "I8");
}

TEST_CASE("dequantize 32-element block types") {
    std::mt19937 rng(7);
    const int nb = 3;  // blocks per case
    SUBCASE("Q4_0: w = d*(q-8)") {
        std::vector<uint8_t> b(18 * nb);
        std::vector<float> want;
        for (int k = 0; k < nb; ++k) {
            const float d = h(0.37f * (k + 1));
            int q[32];
            for (int& x : q) x = rng() % 16;
            put16(b, 18 * k, f32_to_fp16(d));
            for (int j = 0; j < 16; ++j) b[18 * k + 2 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
            for (int x : q) want.push_back(d * (x - 8));
        }
        check_close(dequantize(ggml_type::q4_0, b.data(), 32 * nb), want, "Q4_0");
    }
    SUBCASE("Q4_1: w = d*q + m") {
        std::vector<uint8_t> b(20 * nb);
        std::vector<float> want;
        for (int k = 0; k < nb; ++k) {
            const float d = h(0.11f * (k + 1)), m = h(-0.9f + k);
            int q[32];
            for (int& x : q) x = rng() % 16;
            put16(b, 20 * k, f32_to_fp16(d));
            put16(b, 20 * k + 2, f32_to_fp16(m));
            for (int j = 0; j < 16; ++j) b[20 * k + 4 + j] = static_cast<uint8_t>(q[j] | (q[j + 16] << 4));
            for (int x : q) want.push_back(d * x + m);
        }
        check_close(dequantize(ggml_type::q4_1, b.data(), 32 * nb), want, "Q4_1");
    }
    SUBCASE("Q5_0: w = d*(q-16), 5th bits in qh") {
        std::vector<uint8_t> b(22 * nb);
        std::vector<float> want;
        for (int k = 0; k < nb; ++k) {
            const float d = h(0.05f * (k + 2));
            int q[32];
            for (int& x : q) x = rng() % 32;
            uint32_t qh = 0;
            for (int j = 0; j < 16; ++j) {
                b[22 * k + 6 + j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
                qh |= static_cast<uint32_t>(q[j] >> 4) << j;
                qh |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
            }
            put16(b, 22 * k, f32_to_fp16(d));
            std::memcpy(&b[22 * k + 2], &qh, 4);
            for (int x : q) want.push_back(d * (x - 16));
        }
        check_close(dequantize(ggml_type::q5_0, b.data(), 32 * nb), want, "Q5_0");
    }
    SUBCASE("Q5_1: w = d*q + m") {
        std::vector<uint8_t> b(24 * nb);
        std::vector<float> want;
        for (int k = 0; k < nb; ++k) {
            const float d = h(0.07f * (k + 1)), m = h(0.3f - k);
            int q[32];
            for (int& x : q) x = rng() % 32;
            uint32_t qh = 0;
            for (int j = 0; j < 16; ++j) {
                b[24 * k + 8 + j] = static_cast<uint8_t>((q[j] & 15) | ((q[j + 16] & 15) << 4));
                qh |= static_cast<uint32_t>(q[j] >> 4) << j;
                qh |= static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
            }
            put16(b, 24 * k, f32_to_fp16(d));
            put16(b, 24 * k + 2, f32_to_fp16(m));
            std::memcpy(&b[24 * k + 4], &qh, 4);
            for (int x : q) want.push_back(d * x + m);
        }
        check_close(dequantize(ggml_type::q5_1, b.data(), 32 * nb), want, "Q5_1");
    }
    SUBCASE("Q8_0: w = d*q") {
        std::vector<uint8_t> b(34 * nb);
        std::vector<float> want;
        for (int k = 0; k < nb; ++k) {
            const float d = h(0.013f * (k + 1));
            put16(b, 34 * k, f32_to_fp16(d));
            for (int j = 0; j < 32; ++j) {
                const int q = static_cast<int>(rng() % 256) - 128;
                b[34 * k + 2 + j] = static_cast<uint8_t>(static_cast<int8_t>(q));
                want.push_back(d * q);
            }
        }
        check_close(dequantize(ggml_type::q8_0, b.data(), 32 * nb), want, "Q8_0");
    }
    SUBCASE("IQ4_NL: w = d*table[q]") {
        const int table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
        std::vector<uint8_t> b(18);
        std::vector<float> want(32);
        const float d = h(0.01f);
        put16(b, 0, f32_to_fp16(d));
        for (int j = 0; j < 16; ++j) {
            const int lo = j, hi = 15 - j;
            b[2 + j] = static_cast<uint8_t>(lo | (hi << 4));
            want[j] = d * table[lo];
            want[j + 16] = d * table[hi];
        }
        check_close(dequantize(ggml_type::iq4_nl, b.data(), 32), want, "IQ4_NL");
    }
}

TEST_CASE("dequantize k-quants") {
    std::mt19937 rng(11);
    SUBCASE("Q2_K: w = d*sc*q - dmin*m, 16 sub-blocks of 16") {
        std::vector<uint8_t> b(84);
        const float d = h(0.02f), dmin = h(0.005f);
        int sc[16], mn[16], L[256];
        for (int j = 0; j < 16; ++j) sc[j] = rng() % 16, mn[j] = rng() % 16, b[j] = static_cast<uint8_t>(sc[j] | (mn[j] << 4));
        for (int& x : L) x = rng() % 4;
        for (int j = 0; j < 256; j += 128)
            for (int l = 0; l < 32; ++l)
                b[16 + j / 4 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
        put16(b, 80, f32_to_fp16(d));
        put16(b, 82, f32_to_fp16(dmin));
        std::vector<float> want(256);
        for (int i = 0; i < 256; ++i) want[i] = d * sc[i / 16] * L[i] - dmin * mn[i / 16];
        check_close(dequantize(ggml_type::q2_k, b.data(), 256), want, "Q2_K");
    }
    SUBCASE("Q3_K: w = d*(s-32)*(q-4), high bit in hmask") {
        std::vector<uint8_t> b(110, 0);
        const float d = h(0.03f);
        int s[16], L[256];
        for (int& x : s) x = rng() % 64;
        for (int& x : L) x = rng() % 8;
        // scales: low nibbles in bytes 0..7 (j<8 low, j>=8 high), top 2 bits in bytes 8..11
        for (int j = 0; j < 16; ++j) {
            if (j < 8) b[96 + j] = static_cast<uint8_t>(s[j] & 15);
            else b[96 + j - 8] |= static_cast<uint8_t>((s[j] & 15) << 4);
            b[96 + 8 + j % 4] |= static_cast<uint8_t>((s[j] >> 4) << (2 * (j / 4)));
        }
        int low[256];
        for (int j = 0; j < 256; ++j) {  // high bit of quant j goes to hmask[j%32], bit j/32
            if (L[j] > 3) b[j % 32] |= static_cast<uint8_t>(1 << (j / 32));
            low[j] = L[j] & 3;
        }
        for (int j = 0; j < 256; j += 128)
            for (int l = 0; l < 32; ++l)
                b[32 + j / 4 + l] = static_cast<uint8_t>(low[j + l] | (low[j + l + 32] << 2) | (low[j + l + 64] << 4) | (low[j + l + 96] << 6));
        put16(b, 108, f32_to_fp16(d));
        std::vector<float> want(256);
        for (int i = 0; i < 256; ++i) want[i] = d * (s[i / 16] - 32) * (L[i] - 4);
        check_close(dequantize(ggml_type::q3_k, b.data(), 256), want, "Q3_K");
    }
    // Q4_K and Q5_K share the 12-byte packing of eight 6-bit (scale, min) pairs
    auto pack_scales_k4 = [](uint8_t* y, const int* ls, const int* lm) {
        std::memset(y, 0, 12);
        for (int j = 0; j < 8; ++j) {
            if (j < 4) {
                y[j] = static_cast<uint8_t>(ls[j]);
                y[j + 4] = static_cast<uint8_t>(lm[j]);
            } else {
                y[j + 4] = static_cast<uint8_t>((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
                y[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
                y[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
            }
        }
    };
    SUBCASE("Q4_K: w = d*sc*q - dmin*m, 8 sub-blocks of 32") {
        std::vector<uint8_t> b(144 * 2);
        std::vector<float> want;
        for (int k = 0; k < 2; ++k) {
            uint8_t* y = b.data() + 144 * k;
            const float d = h(0.01f * (k + 1)), dmin = h(0.002f * (k + 1));
            int ls[8], lm[8], L[256];
            for (int j = 0; j < 8; ++j) ls[j] = rng() % 64, lm[j] = rng() % 64;
            for (int& x : L) x = rng() % 16;
            put16(b, 144 * k, f32_to_fp16(d));
            put16(b, 144 * k + 2, f32_to_fp16(dmin));
            pack_scales_k4(y + 4, ls, lm);
            for (int j = 0; j < 256; j += 64)
                for (int l = 0; l < 32; ++l) y[16 + j / 2 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
            for (int i = 0; i < 256; ++i) want.push_back(d * ls[i / 32] * L[i] - dmin * lm[i / 32]);
        }
        check_close(dequantize(ggml_type::q4_k, b.data(), 512), want, "Q4_K");
    }
    SUBCASE("Q5_K: w = d*sc*q - dmin*m, 5th bit in qh") {
        std::vector<uint8_t> b(176, 0);
        const float d = h(0.004f), dmin = h(0.001f);
        int ls[8], lm[8], L[256];
        for (int j = 0; j < 8; ++j) ls[j] = rng() % 64, lm[j] = rng() % 64;
        for (int& x : L) x = rng() % 32;
        put16(b, 0, f32_to_fp16(d));
        put16(b, 2, f32_to_fp16(dmin));
        pack_scales_k4(b.data() + 4, ls, lm);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < 256; n += 64, m1 <<= 2, m2 <<= 2)
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) l1 -= 16, b[16 + j] |= m1;
                if (l2 > 15) l2 -= 16, b[16 + j] |= m2;
                b[48 + n / 2 + j] = static_cast<uint8_t>(l1 | (l2 << 4));
            }
        std::vector<float> want(256);
        for (int i = 0; i < 256; ++i) want[i] = d * ls[i / 32] * L[i] - dmin * lm[i / 32];
        check_close(dequantize(ggml_type::q5_k, b.data(), 256), want, "Q5_K");
    }
    SUBCASE("Q6_K: w = d*sc*(q-32), 16 sub-blocks of 16") {
        std::vector<uint8_t> b(210, 0);
        const float d = h(0.0007f);
        int sc[16], L[256];
        for (int& x : sc) x = static_cast<int>(rng() % 256) - 128;
        for (int& x : L) x = rng() % 64;
        for (int j = 0; j < 16; ++j) b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(sc[j]));
        put16(b, 208, f32_to_fp16(d));
        for (int j = 0; j < 256; j += 128) {
            uint8_t* ql = b.data() + j / 2;
            uint8_t* qh = b.data() + 128 + j / 4;
            for (int l = 0; l < 32; ++l) {
                ql[l] = static_cast<uint8_t>((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
                ql[l + 32] = static_cast<uint8_t>((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
                qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                             ((L[j + l + 96] >> 4) << 6));
            }
        }
        std::vector<float> want(256);
        for (int i = 0; i < 256; ++i) want[i] = d * sc[i / 16] * (L[i] - 32);
        check_close(dequantize(ggml_type::q6_k, b.data(), 256), want, "Q6_K");
    }
    SUBCASE("Q8_K: w = d*q with an f32 d") {
        std::vector<uint8_t> b(292, 0);
        const float d = 0.0123f;
        std::memcpy(b.data(), &d, 4);
        std::vector<float> want(256);
        for (int i = 0; i < 256; ++i) {
            const int q = static_cast<int>(rng() % 256) - 128;
            b[4 + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
            want[i] = d * q;
        }
        check_close(dequantize(ggml_type::q8_k, b.data(), 256), want, "Q8_K");
    }
    SUBCASE("IQ4_XS: w = d*(s-32)*table[q]") {
        const int table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
        std::vector<uint8_t> b(136, 0);
        const float d = h(0.002f);
        int s[8], L[256];
        for (int& x : s) x = rng() % 64;
        for (int& x : L) x = rng() % 16;
        put16(b, 0, f32_to_fp16(d));
        uint16_t sh = 0;
        for (int ib = 0; ib < 8; ++ib) {
            b[4 + ib / 2] |= static_cast<uint8_t>((s[ib] & 0xF) << (4 * (ib % 2)));
            sh |= static_cast<uint16_t>((s[ib] >> 4) << (2 * ib));
            for (int j = 0; j < 16; ++j) b[8 + 16 * ib + j] = static_cast<uint8_t>(L[32 * ib + j] | (L[32 * ib + j + 16] << 4));
        }
        put16(b, 2, sh);
        std::vector<float> want(256);
        for (int i = 0; i < 256; ++i) want[i] = d * (s[i / 32] - 32) * table[L[i]];
        check_close(dequantize(ggml_type::iq4_xs, b.data(), 256), want, "IQ4_XS");
    }
}

// ---- parsing -------------------------------------------------------------------------------

TEST_CASE("synthetic GGUF: every metadata type, nested arrays, tensors") {
    const auto buf = synthetic_gguf();
    gguf_reader r(buf.data(), buf.size(), "synthetic.gguf");
    CHECK(r.version() == 3);
    CHECK(r.alignment() == 64);
    CHECK(r.architecture() == "llama");
    CHECK(r.get_u32("t.u8") == 200);
    CHECK(r.get_i64("t.i8") == -5);
    CHECK(r.get_u32("t.u16") == 60000);
    CHECK(r.get_i64("t.i16") == -300);
    CHECK(r.get_u32("t.u32") == 4000000000u);
    CHECK(r.get_i64("t.i32") == -7);
    CHECK(r.get_f32("t.f32") == 1.5f);
    CHECK(r.get_bool("t.bool"));
    CHECK(r.get_u64("t.u64") == (1ull << 40));
    CHECK(r.get_i64("t.i64") == -(1ll << 40));
    CHECK(r.get_f32("t.f64") == 0.25f);
    CHECK(r.get_array_strings("t.strs") == std::vector<std::string>{"a", "", "ccc"});
    CHECK(r.get_array_f32("t.f32s") == std::vector<float>{0.5f, -2.f});
    CHECK(r.get_array_i32("t.i32s") == std::vector<int32_t>{1, -1, 6});
    CHECK(r.get_array_size("t.nested") == 2);
    CHECK(r.get("t.nested").items[0].count == 2);
    CHECK(r.get("t.nested").to_string() == "[[1, 2], [3]]");
    CHECK(r.metadata().size() == 17);
    CHECK(r.metadata()[1].key == "t.u8");
    CHECK(r.get_u32("missing.key", 9) == 9);
    CHECK(r.get_string("missing.key", "x") == "x");
    // typed getters refuse wrong types and out-of-range values with a message naming the key
    CHECK_THROWS_WITH_AS(r.get_u32("t.i8"), doctest::Contains("t.i8"), slm::user_error);
    CHECK_THROWS_AS(r.get_u32("t.u64"), slm::user_error);
    CHECK_THROWS_AS(r.get_string("t.u8"), slm::user_error);
    CHECK_THROWS_AS(r.get_array_f32("t.strs"), slm::user_error);
    CHECK_THROWS_WITH_AS(r.get_u32("nope"), doctest::Contains("'nope' is missing"), slm::user_error);
    CHECK_THROWS_AS(r.get_string("t.u8", "x"), slm::user_error);  // present with another type

    REQUIRE(r.tensors().size() == 3);
    CHECK(r.data_offset() % 64 == 0);
    CHECK(r.tensor_f32("a") == std::vector<float>{1, 2, 3, -4});
    const auto& b = r.tensor("b");
    CHECK(b.dims == std::vector<int64_t>{2, 3});
    CHECK(b.type == ggml_type::f16);
    CHECK(b.n_elements == 6);
    CHECK(r.tensor_f32("b") == std::vector<float>{0, 0.5f, 1, 1.5f, 2, 2.5f});
    CHECK(r.tensor("c").n_bytes == 34);
    CHECK(r.tensor_f32("c")[0] == -16 * 0.25f);
    CHECK(r.find_tensor("zzz") == nullptr);
    CHECK_THROWS_WITH_AS(r.tensor("zzz"), doctest::Contains("'zzz'"), slm::user_error);
}

TEST_CASE("corrupt GGUF: truncation and byte flips only ever give user_error") {
    SUBCASE("synthetic file: every truncation, every byte set to 0xFF / 0x80 / 0x00") {
        const auto buf = synthetic_gguf();
        int errors = 0;
        for (size_t n = 0; n < buf.size(); ++n) errors += parse_or_user_error(buf, n, fmt::format("truncated at {}", n));
        CHECK(errors > 0);
        for (size_t i = 0; i < buf.size(); ++i) {
            for (uint8_t v : {uint8_t(0xFF), uint8_t(0x80), uint8_t(0x00), uint8_t(0x07)}) {
                auto bad = buf;
                bad[i] = v;
                parse_or_user_error(bad, bad.size(), fmt::format("byte {} set to {:#x}", i, v));
            }
        }
    }
    SUBCASE("real tiny llama: truncations and random flips") {
        const std::string path = slm::test::shared_data("models/ollama_tiny/llama-2-tiny-random.gguf");
        const std::string s = slm::test::read_file(path);
        REQUIRE(s.size() > 1000);
        const std::vector<uint8_t> buf(s.begin(), s.end());
        std::mt19937 rng(1);
        int errors = 0;
        for (int k = 0; k < 150; ++k) {
            const size_t n = k < 100 ? rng() % 4096 : rng() % buf.size();
            errors += parse_or_user_error(buf, n, fmt::format("truncated at {}", n));
        }
        CHECK(errors == 150);
        for (int k = 0; k < 150; ++k) {
            auto bad = buf;
            const size_t i = k < 100 ? rng() % 2048 : rng() % bad.size();
            bad[i] ^= static_cast<uint8_t>(1 + rng() % 255);
            parse_or_user_error(bad, bad.size(), fmt::format("byte {} flipped", i), /*with_tokenizer=*/true);
        }
    }
    SUBCASE("specific corruptions name the problem") {
        auto buf = synthetic_gguf();
        CHECK_THROWS_WITH_AS(gguf_reader(buf.data(), 3, "x.gguf"), doctest::Contains("not a GGUF"), slm::user_error);
        auto v1 = buf;
        v1[4] = 1;
        CHECK_THROWS_WITH_AS(gguf_reader(v1.data(), v1.size(), "x.gguf"), doctest::Contains("version 1"), slm::user_error);
        auto huge = buf;
        huge[8 + 7] = 0x7F;  // tensor count ~ 2^62
        CHECK_THROWS_WITH_AS(gguf_reader(huge.data(), huge.size(), "x.gguf"), doctest::Contains("tensor count"),
                             slm::user_error);
        // the last tensor's data cut off
        CHECK_THROWS_WITH_AS(gguf_reader(buf.data(), buf.size() - 1, "x.gguf"),
                             doctest::Contains("tensor 'c'"), slm::user_error);
        CHECK_THROWS_WITH_AS(gguf_reader("/nonexistent/model.gguf"), doctest::Contains("/nonexistent/model.gguf"),
                             slm::user_error);
    }
}

TEST_CASE("ollama tiny llama GGUF parses") {
    gguf_reader r(slm::test::shared_data("models/ollama_tiny/llama-2-tiny-random.gguf"));
    CHECK(r.version() == 3);
    CHECK(r.architecture() == "llama");
    CHECK(r.get_u32("llama.block_count") == 1);
    CHECK(r.get_u32("llama.embedding_length") == 8);
    CHECK(r.get_string("tokenizer.ggml.model") == "llama");
    CHECK(r.get_array_strings("tokenizer.ggml.tokens").size() == 32000);
    CHECK(r.get_array_f32("tokenizer.ggml.scores").size() == 32000);
    CHECK(r.get_array_i32("tokenizer.ggml.token_type")[1] == 3);
    CHECK(r.tensors().size() == 12);
    const auto& out = r.tensor("output.weight");
    CHECK(out.dims == std::vector<int64_t>{8, 32000});
    CHECK(out.type == ggml_type::f16);
    const auto w = r.tensor_f32("blk.0.attn_q.weight");
    CHECK(w.size() == 64);
    for (float x : w) CHECK(std::isfinite(x));
    CHECK(r.tensor("output_norm.weight").type == ggml_type::f32);
}

TEST_CASE("SmolLM2-135M-Instruct Q4_1 GGUF parses") {
    require_smollm2();
    gguf_reader r(smollm2_path());
    CHECK(r.architecture() == "llama");
    CHECK(r.get_u32("llama.block_count") == 30);
    CHECK(r.get_u32("llama.embedding_length") == 576);
    CHECK(r.get_u32("llama.attention.head_count") == 9);
    CHECK(r.get_u32("llama.attention.head_count_kv") == 3);
    CHECK(r.get_f32("llama.rope.freq_base") == 100000.0f);
    CHECK(r.get_string("tokenizer.ggml.pre") == "smollm");
    CHECK(r.get_string("tokenizer.chat_template").find("<|im_start|>") != std::string::npos);
    CHECK(r.tensors().size() == 272);
    std::set<std::string> types;
    for (const auto& t : r.tensors()) types.insert(ggml_type_name(t.type));
    CHECK(types == std::set<std::string>{"F32", "Q4_1", "Q8_0"});
    const auto& emb = r.tensor("token_embd.weight");
    CHECK(emb.dims == std::vector<int64_t>{576, 49152});
    CHECK(emb.type == ggml_type::q8_0);
    CHECK(r.find_tensor("output.weight") == nullptr);  // tied embeddings
    CHECK(r.tensor("blk.29.ffn_down.weight").dims == std::vector<int64_t>{1536, 576});
    // one row of every quantized tensor kind dequantizes to finite, non-constant values
    for (const char* name : {"token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight"}) {
        const auto& t = r.tensor(name);
        const auto row = dequantize(t.type, t.data, t.dims[0]);
        float lo = row[0], hi = row[0];
        for (float x : row) {
            REQUIRE(std::isfinite(x));
            lo = std::min(lo, x), hi = std::max(hi, x);
        }
        CHECK_MESSAGE(hi > lo, name);
        CHECK_MESSAGE(hi < 100.f, name);
    }
}
