// ggml tensor element types (the numbering GGUF files use), their block layouts, and conversion
// of their blocks to float. Pure C++: no torch, so parsers and tests compile fast.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::model {

/// ggml element types, numbered as in ggml.h (the numbers are stored in GGUF files).
/// Only types whose block size we know are listed; others are rejected when a file is read.
enum class ggml_type : uint32_t {
    f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9,
    q2_k = 10, q3_k = 11, q4_k = 12, q5_k = 13, q6_k = 14, q8_k = 15,
    iq4_nl = 20, iq4_xs = 23, i8 = 24, i16 = 25, i32 = 26, i64 = 27, f64 = 28, bf16 = 30,
};

/// Layout of one ggml type: `block_size` elements are stored in `type_size` bytes.
struct ggml_type_traits {
    ggml_type type;
    const char* name;      ///< as ggml prints it: "F32", "Q4_K", ...
    int64_t block_size;    ///< elements per block (1 for plain types)
    int64_t type_size;     ///< bytes per block
    bool can_dequantize;   ///< dequantize() supports it
};

/// Traits of a raw type number from a file, or nullptr when it is not one we know.
const ggml_type_traits* find_ggml_type(uint32_t raw_type);
/// Traits of a known type (never null).
const ggml_type_traits& ggml_traits(ggml_type type);
/// "Q4_K"; "type 123" style text for numbers we do not know.
std::string ggml_type_name(uint32_t raw_type);
inline std::string ggml_type_name(ggml_type type) { return ggml_type_name(static_cast<uint32_t>(type)); }
/// Bytes used by `n` elements of `type`; `n` must be a multiple of the block size (asserted).
uint64_t ggml_nbytes(ggml_type type, int64_t n);

/// IEEE half / bfloat16 <-> float (round to nearest even on the way down).
float fp16_to_f32(uint16_t h);
uint16_t f32_to_fp16(float f);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);

/// Converts `n` elements of `type` at `src` (raw file bytes, any alignment) into `dst`.
/// `n` must be a multiple of the type's block size (asserted: callers validate shapes first).
/// Types without a dequantizer throw slm::user_error naming the type.
/// Supported: F32, F16, BF16, F64, I8/I16/I32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
/// Q5_K, Q6_K, Q8_K, IQ4_NL.
void dequantize(ggml_type type, const void* src, float* dst, int64_t n);
/// Same, into a new vector.
std::vector<float> dequantize(ggml_type type, const void* src, int64_t n);

}  // namespace slm::model
