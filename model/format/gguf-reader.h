// GGUF v2/v3 reader: memory-maps a file, parses its metadata and tensor table, and hands out
// pointers to tensor data inside the mapping. Every count, length and offset is bounds-checked.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <map>
#include <vector>

#include "common/mmap-file.h"
#include "model/format/dequant.h"

namespace slm::model {

/// Metadata value types, numbered as in the GGUF spec.
enum class gguf_type : uint32_t {
    u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
    string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};
/// "u32", "string", "array[f32]" style names, for error messages and `model info`.
std::string gguf_type_name(gguf_type t);

/// One metadata value. Scalars are widened into u64/i64/f64; numeric arrays stay in the file
/// (`raw`, little-endian, unaligned) so a 1M-element array costs nothing until it is read.
struct gguf_value {
    gguf_type type = gguf_type::u8;
    uint64_t u64 = 0;                     ///< u8/u16/u32/u64 and bool (0/1)
    int64_t i64 = 0;                      ///< i8/i16/i32/i64
    double f64 = 0;                       ///< f32/f64
    std::string str;                      ///< string
    gguf_type elem_type = gguf_type::u8;  ///< arrays: element type
    uint64_t count = 0;                   ///< arrays: number of elements
    const uint8_t* raw = nullptr;         ///< numeric arrays: first element, inside the mapping
    std::vector<std::string> strings;     ///< string arrays
    std::vector<gguf_value> items;        ///< arrays of arrays

    bool is_integer() const;
    bool is_float() const { return type == gguf_type::f32 || type == gguf_type::f64; }
    /// Short human rendering; arrays show their first `max_items` elements.
    std::string to_string(size_t max_items = 8) const;
};

struct gguf_kv {
    std::string key;
    gguf_value value;
};

/// One entry of the tensor table.
struct gguf_tensor {
    std::string name;
    std::vector<int64_t> dims;  ///< GGUF/ggml order: dims[0] varies fastest (the row length)
    ggml_type type = ggml_type::f32;
    uint64_t offset = 0;        ///< from the start of the data section
    int64_t n_elements = 0;
    uint64_t n_bytes = 0;
    const void* data = nullptr; ///< inside the mapping, valid while the reader lives
};

/// True when `path` is a readable file that starts with the GGUF magic.
bool is_gguf_file(const std::string& path);

class gguf_reader {
public:
    /// Maps and parses `path`; throws slm::user_error for a missing, truncated or corrupt file.
    explicit gguf_reader(const std::string& path);
    /// Parses a buffer the caller keeps alive (tests, fuzzing); `name` is used in messages.
    gguf_reader(const void* data, size_t size, std::string name);
    ~gguf_reader();
    gguf_reader(gguf_reader&& other) noexcept;
    gguf_reader& operator=(gguf_reader&& other) noexcept;
    gguf_reader(const gguf_reader&) = delete;
    gguf_reader& operator=(const gguf_reader&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint64_t file_size() const { return size_; }
    uint64_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  ///< start of the tensor data section

    // ---- metadata ----
    /// All key/value pairs in file order (for `model info`).
    const std::vector<gguf_kv>& metadata() const { return kvs_; }
    bool has(std::string_view key) const { return find(key) != nullptr; }
    /// nullptr when absent.
    const gguf_value* find(std::string_view key) const;
    /// The value, or user_error naming the key and the file.
    const gguf_value& get(std::string_view key) const;

    // Typed getters: throw user_error when the key is missing, has another type, or does not
    // fit (any integer type converts to any other when the value fits; f32 and f64 convert).
    uint32_t get_u32(std::string_view key) const;
    uint64_t get_u64(std::string_view key) const;
    int64_t get_i64(std::string_view key) const;
    float get_f32(std::string_view key) const;
    bool get_bool(std::string_view key) const;
    const std::string& get_string(std::string_view key) const;
    // Same, with a default for a missing key (a present key of the wrong type still throws).
    uint32_t get_u32(std::string_view key, uint32_t fallback) const;
    float get_f32(std::string_view key, float fallback) const;
    bool get_bool(std::string_view key, bool fallback) const;
    std::string get_string(std::string_view key, const std::string& fallback) const;

    /// Arrays. Numeric getters convert every element (range-checked for integers).
    uint64_t get_array_size(std::string_view key) const;
    const std::vector<std::string>& get_array_strings(std::string_view key) const;
    std::vector<float> get_array_f32(std::string_view key) const;
    std::vector<int32_t> get_array_i32(std::string_view key) const;

    /// general.architecture ("llama", "qwen2", ...); user_error when missing.
    const std::string& architecture() const { return get_string("general.architecture"); }

    // ---- tensors ----
    const std::vector<gguf_tensor>& tensors() const { return tensors_; }
    /// nullptr when absent.
    const gguf_tensor* find_tensor(std::string_view name) const;
    /// The tensor, or user_error naming it and the file.
    const gguf_tensor& tensor(std::string_view name) const;
    /// Whole tensor converted to float (any type dequantize() supports).
    std::vector<float> tensor_f32(std::string_view name) const;

private:
    void parse();
    void release() noexcept;

    std::string path_;
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    mapped_file file_;           ///< the mapping we own (empty for a caller's buffer)
    uint32_t version_ = 0;
    uint64_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<gguf_kv> kvs_;
    std::map<std::string, size_t, std::less<>> kv_index_;      ///< key -> index in kvs_
    std::vector<gguf_tensor> tensors_;
    std::map<std::string, size_t, std::less<>> tensor_index_;  ///< name -> index in tensors_
};

}  // namespace slm::model
