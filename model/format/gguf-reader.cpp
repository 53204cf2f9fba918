// GGUF parsing: header, metadata key/values, tensor table, alignment, tensor data bounds.
// Untrusted input: every read goes through a cursor that checks the remaining bytes first.
#include "model/format/gguf-reader.h"

#include <cstring>
#include <fstream>
#include <limits>

#include <fmt/ranges.h>

#include "common/common.h"

namespace slm::model {

namespace {

// Limits well above anything real, so that a corrupt count fails fast with a clear message
// instead of allocating; allocations are also bounded by the bytes left in the file.
constexpr uint64_t k_max_key_len = 65535;           // GGUF spec: keys are at most 65535 bytes
constexpr uint64_t k_max_tensor_name_len = 65535;
constexpr uint32_t k_max_dims = 4;                  // GGML_MAX_DIMS
constexpr int k_max_array_depth = 8;

const char* k_corrupt_hint = "the file is truncated or not a GGUF model; download it again "
                             "(scripts/fetch-models.sh) or re-export it with llama.cpp's convert script";

// Smallest encoded size of one value of a type, to bound array counts by the bytes left.
uint64_t min_encoded_size(gguf_type t) {
    switch (t) {
        case gguf_type::u8: case gguf_type::i8: case gguf_type::boolean: return 1;
        case gguf_type::u16: case gguf_type::i16: return 2;
        case gguf_type::u32: case gguf_type::i32: case gguf_type::f32: return 4;
        case gguf_type::u64: case gguf_type::i64: case gguf_type::f64: return 8;
        case gguf_type::string: return 8;   // length prefix
        case gguf_type::array: return 12;   // element type + count
    }
    return 1;
}

bool valid_gguf_type(uint32_t t) { return t <= static_cast<uint32_t>(gguf_type::f64); }

// Reads little-endian values from [pos, end) and throws user_error when they run out.
struct cursor {
    const uint8_t* base;
    uint64_t pos;
    uint64_t end;
    const std::string& file;

    [[noreturn]] void fail(const std::string& what) const {
        throw user_error(fmt::format("{}: corrupt GGUF at byte {}: {}", file, pos, what), k_corrupt_hint);
    }
    uint64_t left() const { return end - pos; }
    void need(uint64_t n, const char* what) const {
        if (n > left())
            fail(fmt::format("{} needs {} bytes but only {} remain (file size {})", what, n, left(), end));
    }
    template <typename T> T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, base + pos, sizeof(T));
        pos += sizeof(T);
        return v;
    }
    std::string read_string(const char* what, uint64_t max_len = std::numeric_limits<uint64_t>::max()) {
        const uint64_t n = read<uint64_t>(what);
        if (n > max_len) fail(fmt::format("{} has length {} (limit {})", what, n, max_len));
        need(n, what);
        std::string s(reinterpret_cast<const char*>(base + pos), static_cast<size_t>(n));
        pos += n;
        return s;
    }
};

void read_value(cursor& c, gguf_type type, gguf_value& v, const std::string& key, int depth) {
    v.type = type;
    switch (type) {
        case gguf_type::u8: v.u64 = c.read<uint8_t>(key.c_str()); return;
        case gguf_type::i8: v.i64 = c.read<int8_t>(key.c_str()); return;
        case gguf_type::u16: v.u64 = c.read<uint16_t>(key.c_str()); return;
        case gguf_type::i16: v.i64 = c.read<int16_t>(key.c_str()); return;
        case gguf_type::u32: v.u64 = c.read<uint32_t>(key.c_str()); return;
        case gguf_type::i32: v.i64 = c.read<int32_t>(key.c_str()); return;
        case gguf_type::u64: v.u64 = c.read<uint64_t>(key.c_str()); return;
        case gguf_type::i64: v.i64 = c.read<int64_t>(key.c_str()); return;
        case gguf_type::f32: v.f64 = c.read<float>(key.c_str()); return;
        case gguf_type::f64: v.f64 = c.read<double>(key.c_str()); return;
        case gguf_type::boolean: {
            const uint8_t b = c.read<uint8_t>(key.c_str());
            if (b > 1) c.fail(fmt::format("key '{}': bool value is {}, expected 0 or 1", key, b));
            v.u64 = b;
            return;
        }
        case gguf_type::string: v.str = c.read_string(key.c_str()); return;
        case gguf_type::array: {
            if (depth >= k_max_array_depth)
                c.fail(fmt::format("key '{}': arrays nested deeper than {}", key, k_max_array_depth));
            const uint32_t et = c.read<uint32_t>(key.c_str());
            if (!valid_gguf_type(et)) c.fail(fmt::format("key '{}': unknown array element type {}", key, et));
            v.elem_type = static_cast<gguf_type>(et);
            v.count = c.read<uint64_t>(key.c_str());
            const uint64_t min_sz = min_encoded_size(v.elem_type);
            if (v.count > c.left() / min_sz)
                c.fail(fmt::format("key '{}': array of {} {} elements does not fit in the {} bytes left", key,
                                   v.count, gguf_type_name(v.elem_type), c.left()));
            if (v.elem_type == gguf_type::string) {
                v.strings.reserve(static_cast<size_t>(v.count));
                for (uint64_t i = 0; i < v.count; ++i) v.strings.push_back(c.read_string(key.c_str()));
            } else if (v.elem_type == gguf_type::array) {
                v.items.resize(static_cast<size_t>(v.count));
                for (auto& item : v.items) read_value(c, gguf_type::array, item, key, depth + 1);
            } else {
                if (v.elem_type == gguf_type::boolean)
                    for (uint64_t i = 0; i < v.count; ++i)
                        if (c.base[c.pos + i] > 1)
                            c.fail(fmt::format("key '{}': bool element {} is {}", key, i, c.base[c.pos + i]));
                v.raw = c.base + c.pos;
                c.pos += v.count * min_sz;  // fits: checked above
            }
            return;
        }
    }
    c.fail(fmt::format("key '{}': unknown value type {}", key, static_cast<uint32_t>(type)));
}

// Element i of a numeric array, as the widest type of its kind.
template <typename T> T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}
bool elem_as_int(const gguf_value& v, uint64_t i, int64_t& s, uint64_t& u, bool& is_signed) {
    const uint8_t* p = v.raw + i * min_encoded_size(v.elem_type);
    is_signed = false;
    switch (v.elem_type) {
        case gguf_type::u8: case gguf_type::boolean: u = *p; return true;
        case gguf_type::u16: u = load<uint16_t>(p); return true;
        case gguf_type::u32: u = load<uint32_t>(p); return true;
        case gguf_type::u64: u = load<uint64_t>(p); return true;
        case gguf_type::i8: s = static_cast<int8_t>(*p); break;
        case gguf_type::i16: s = load<int16_t>(p); break;
        case gguf_type::i32: s = load<int32_t>(p); break;
        case gguf_type::i64: s = load<int64_t>(p); break;
        default: return false;
    }
    is_signed = true;
    return true;
}

std::string scalar_to_string(const gguf_value& v) {
    switch (v.type) {
        case gguf_type::u8: case gguf_type::u16: case gguf_type::u32: case gguf_type::u64: return std::to_string(v.u64);
        case gguf_type::i8: case gguf_type::i16: case gguf_type::i32: case gguf_type::i64: return std::to_string(v.i64);
        case gguf_type::f32: return fmt::format("{}", static_cast<float>(v.f64));
        case gguf_type::f64: return fmt::format("{}", v.f64);
        case gguf_type::boolean: return v.u64 ? "true" : "false";
        case gguf_type::string: return v.str;
        case gguf_type::array: break;
    }
    return "?";
}

}  // namespace

std::string gguf_type_name(gguf_type t) {
    switch (t) {
        case gguf_type::u8: return "u8";
        case gguf_type::i8: return "i8";
        case gguf_type::u16: return "u16";
        case gguf_type::i16: return "i16";
        case gguf_type::u32: return "u32";
        case gguf_type::i32: return "i32";
        case gguf_type::f32: return "f32";
        case gguf_type::boolean: return "bool";
        case gguf_type::string: return "string";
        case gguf_type::array: return "array";
        case gguf_type::u64: return "u64";
        case gguf_type::i64: return "i64";
        case gguf_type::f64: return "f64";
    }
    return fmt::format("type {}", static_cast<uint32_t>(t));
}

bool gguf_value::is_integer() const {
    switch (type) {
        case gguf_type::u8: case gguf_type::i8: case gguf_type::u16: case gguf_type::i16:
        case gguf_type::u32: case gguf_type::i32: case gguf_type::u64: case gguf_type::i64: return true;
        default: return false;
    }
}

std::string gguf_value::to_string(size_t max_items) const {
    if (type != gguf_type::array) return type == gguf_type::string ? fmt::format("\"{}\"", str) : scalar_to_string(*this);
    std::string out = "[";
    const uint64_t shown = std::min<uint64_t>(count, max_items);
    for (uint64_t i = 0; i < shown; ++i) {
        if (i) out += ", ";
        if (elem_type == gguf_type::string) {
            out += fmt::format("\"{}\"", strings[i]);
        } else if (elem_type == gguf_type::array) {
            out += items[i].to_string(max_items);
        } else {
            gguf_value e;
            e.type = elem_type;
            const uint8_t* p = raw + i * min_encoded_size(elem_type);
            int64_t s = 0;
            uint64_t u = 0;
            bool is_signed = false;
            if (elem_as_int(*this, i, s, u, is_signed)) {
                e.i64 = s;
                e.u64 = u;
            } else if (elem_type == gguf_type::f32) {
                e.f64 = load<float>(p);
            } else {
                e.f64 = load<double>(p);
            }
            out += scalar_to_string(e);
        }
    }
    if (count > shown) out += fmt::format(", ... ({} total)", count);
    return out + "]";
}

// ---- reader ------------------------------------------------------------------------------

bool is_gguf_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    char m[4] = {};
    return f.read(m, 4) && std::memcmp(m, "GGUF", 4) == 0;
}

gguf_reader::gguf_reader(const std::string& path)
    : path_(path), file_(path, "check the path; models are fetched by scripts/fetch-models.sh (`make test` runs it)") {
    base_ = file_.data();
    size_ = file_.size();
    parse();  // on a throw, file_ unmaps itself
}

gguf_reader::gguf_reader(const void* data, size_t size, std::string name)
    : path_(std::move(name)), base_(static_cast<const uint8_t*>(data)), size_(size) {
    parse();
}

gguf_reader::~gguf_reader() { release(); }

void gguf_reader::release() noexcept {
    file_.reset();
    base_ = nullptr;
}

gguf_reader::gguf_reader(gguf_reader&& o) noexcept { *this = std::move(o); }

gguf_reader& gguf_reader::operator=(gguf_reader&& o) noexcept {
    if (this == &o) return *this;
    release();
    path_ = std::move(o.path_);
    base_ = o.base_;
    size_ = o.size_;
    file_ = std::move(o.file_);
    version_ = o.version_;
    alignment_ = o.alignment_;
    data_offset_ = o.data_offset_;
    kvs_ = std::move(o.kvs_);
    kv_index_ = std::move(o.kv_index_);
    tensors_ = std::move(o.tensors_);
    tensor_index_ = std::move(o.tensor_index_);
    o.base_ = nullptr;
    o.size_ = 0;
    return *this;
}

void gguf_reader::parse() {
    cursor c{base_, 0, size_, path_};
    if (size_ < 4 || std::memcmp(base_, "GGUF", 4) != 0)
        throw user_error(fmt::format("{} is not a GGUF file (no 'GGUF' magic at the start)", path_),
                         "pass a .gguf model file (llama.cpp format); HF safetensors are not read directly");
    c.pos = 4;
    version_ = c.read<uint32_t>("version");
    if (version_ == 1)
        throw user_error(fmt::format("{}: GGUF version 1 is not supported", path_),
                         "convert the model again with a recent llama.cpp (writes GGUF v3)");
    if (version_ != 2 && version_ != 3) {
        const bool swapped = (version_ & 0xFFFF) == 0 && (version_ >> 24) <= 3;
        throw user_error(fmt::format("{}: GGUF version {} is not supported (expected 2 or 3){}", path_, version_,
                                     swapped ? "; the file looks big-endian" : ""),
                         "use a little-endian GGUF v2/v3 file");
    }
    const uint64_t n_tensors = c.read<uint64_t>("tensor count");
    const uint64_t n_kv = c.read<uint64_t>("metadata count");
    // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info at
    // least 8 + 4 + 4 + 8 bytes.
    if (n_kv > c.left() / 13) c.fail(fmt::format("metadata count {} is larger than the file allows", n_kv));
    if (n_tensors > c.left() / 24) c.fail(fmt::format("tensor count {} is larger than the file allows", n_tensors));

    kvs_.reserve(static_cast<size_t>(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
        gguf_kv kv;
        kv.key = c.read_string("metadata key", k_max_key_len);
        if (kv_index_.count(kv.key)) c.fail(fmt::format("duplicate metadata key '{}'", kv.key));
        const uint32_t t = c.read<uint32_t>(kv.key.c_str());
        if (!valid_gguf_type(t)) c.fail(fmt::format("key '{}': unknown value type {}", kv.key, t));
        read_value(c, static_cast<gguf_type>(t), kv.value, kv.key, 0);
        kv_index_.emplace(kv.key, kvs_.size());
        kvs_.push_back(std::move(kv));
    }

    if (const gguf_value* a = find("general.alignment")) {
        if (!a->is_integer() || a->u64 == 0 || a->u64 > (1u << 30) || (a->u64 & (a->u64 - 1)) != 0)
            throw user_error(fmt::format("{}: general.alignment is {} ({}), expected a power of two", path_,
                                         a->to_string(), gguf_type_name(a->type)),
                             k_corrupt_hint);
        alignment_ = a->u64;
    }

    tensors_.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
        gguf_tensor t;
        t.name = c.read_string("tensor name", k_max_tensor_name_len);
        if (tensor_index_.count(t.name)) c.fail(fmt::format("duplicate tensor '{}'", t.name));
        const uint32_t n_dims = c.read<uint32_t>(t.name.c_str());
        if (n_dims > k_max_dims)
            c.fail(fmt::format("tensor '{}' has {} dimensions (at most {})", t.name, n_dims, k_max_dims));
        int64_t n = 1;
        for (uint32_t d = 0; d < n_dims; ++d) {
            const int64_t dim = c.read<int64_t>(t.name.c_str());
            if (dim < 0) c.fail(fmt::format("tensor '{}' dimension {} is negative ({})", t.name, d, dim));
            if (dim != 0 && n > std::numeric_limits<int64_t>::max() / dim)
                c.fail(fmt::format("tensor '{}' has too many elements", t.name));
            n *= dim;
            t.dims.push_back(dim);
        }
        t.n_elements = n;
        const uint32_t raw_type = c.read<uint32_t>(t.name.c_str());
        const ggml_type_traits* tt = find_ggml_type(raw_type);
        if (!tt)
            throw user_error(fmt::format("{}: tensor '{}' has ggml type {}, which slmctl does not know", path_,
                                         t.name, ggml_type_name(raw_type)),
                             "use a GGUF quantized to F32/F16/BF16, Q4_0..Q8_0 or a K-quant (e.g. Q4_K_M)");
        t.type = tt->type;
        const int64_t row = t.dims.empty() ? 1 : t.dims[0];
        if (row % tt->block_size != 0)
            c.fail(fmt::format("tensor '{}': row length {} is not a multiple of the {} block size {}", t.name, row,
                               tt->name, tt->block_size));
        t.offset = c.read<uint64_t>(t.name.c_str());
        if (t.offset % alignment_ != 0)
            c.fail(fmt::format("tensor '{}': data offset {} is not a multiple of the alignment {}", t.name, t.offset,
                               alignment_));
        const uint64_t blocks = static_cast<uint64_t>(n / tt->block_size);
        if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(tt->type_size))
            c.fail(fmt::format("tensor '{}' is too large", t.name));
        t.n_bytes = blocks * static_cast<uint64_t>(tt->type_size);
        tensor_index_.emplace(t.name, tensors_.size());
        tensors_.push_back(std::move(t));
    }

    // The data section starts at the next multiple of the alignment (even with no tensors,
    // but a vocab-only file may end right after the tensor table).
    const uint64_t pad = (alignment_ - c.pos % alignment_) % alignment_;
    data_offset_ = c.pos + pad;
    if (tensors_.empty()) return;
    if (data_offset_ > size_)
        c.fail(fmt::format("the tensor data section (at byte {}) starts past the end of the file", data_offset_));
    const uint64_t data_size = size_ - data_offset_;
    for (auto& t : tensors_) {
        if (t.offset > data_size || t.n_bytes > data_size - t.offset)
            throw user_error(fmt::format("{}: tensor '{}' ({} {}, {} bytes at data offset {}) ends past the end of "
                                         "the file ({} bytes of tensor data)",
                                         path_, t.name, ggml_type_name(t.type), fmt::join(t.dims, "x"), t.n_bytes,
                                         t.offset, data_size),
                             k_corrupt_hint);
        t.data = base_ + data_offset_ + t.offset;
    }
}

// ---- metadata getters --------------------------------------------------------------------

const gguf_value* gguf_reader::find(std::string_view key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const gguf_value& gguf_reader::get(std::string_view key) const {
    if (const gguf_value* v = find(key)) return *v;
    throw user_error(fmt::format("{}: metadata key '{}' is missing", path_, key),
                     "the GGUF was written without it; use a model converted by a recent llama.cpp "
                     "(`slmctl model info` lists the keys present)");
}

namespace {
[[noreturn]] void wrong_type(const std::string& path, std::string_view key, const gguf_value& v, const char* expected) {
    std::string found = gguf_type_name(v.type);
    if (v.type == gguf_type::array) found = fmt::format("array of {}", gguf_type_name(v.elem_type));
    throw user_error(fmt::format("{}: metadata key '{}' has type {} (value {}), expected {}", path, key, found,
                                 v.to_string(4), expected),
                     "the file does not follow the GGUF conventions for this key; re-convert the model");
}
}  // namespace

uint64_t gguf_reader::get_u64(std::string_view key) const {
    const gguf_value& v = get(key);
    if (!v.is_integer()) wrong_type(path_, key, v, "an unsigned integer");
    switch (v.type) {
        case gguf_type::i8: case gguf_type::i16: case gguf_type::i32: case gguf_type::i64:
            if (v.i64 < 0) wrong_type(path_, key, v, "a non-negative integer");
            return static_cast<uint64_t>(v.i64);
        default: return v.u64;
    }
}

uint32_t gguf_reader::get_u32(std::string_view key) const {
    const uint64_t u = get_u64(key);
    if (u > std::numeric_limits<uint32_t>::max()) wrong_type(path_, key, get(key), "an integer that fits in u32");
    return static_cast<uint32_t>(u);
}

int64_t gguf_reader::get_i64(std::string_view key) const {
    const gguf_value& v = get(key);
    if (!v.is_integer()) wrong_type(path_, key, v, "an integer");
    switch (v.type) {
        case gguf_type::u8: case gguf_type::u16: case gguf_type::u32: case gguf_type::u64:
            if (v.u64 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                wrong_type(path_, key, v, "an integer that fits in i64");
            return static_cast<int64_t>(v.u64);
        default: return v.i64;
    }
}

float gguf_reader::get_f32(std::string_view key) const {
    const gguf_value& v = get(key);
    if (v.is_float()) return static_cast<float>(v.f64);
    wrong_type(path_, key, v, "f32");
}

bool gguf_reader::get_bool(std::string_view key) const {
    const gguf_value& v = get(key);
    if (v.type != gguf_type::boolean) wrong_type(path_, key, v, "bool");
    return v.u64 != 0;
}

const std::string& gguf_reader::get_string(std::string_view key) const {
    const gguf_value& v = get(key);
    if (v.type != gguf_type::string) wrong_type(path_, key, v, "string");
    return v.str;
}

uint32_t gguf_reader::get_u32(std::string_view key, uint32_t fallback) const {
    return has(key) ? get_u32(key) : fallback;
}
float gguf_reader::get_f32(std::string_view key, float fallback) const { return has(key) ? get_f32(key) : fallback; }
bool gguf_reader::get_bool(std::string_view key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }
std::string gguf_reader::get_string(std::string_view key, const std::string& fallback) const {
    return has(key) ? get_string(key) : fallback;
}

uint64_t gguf_reader::get_array_size(std::string_view key) const {
    const gguf_value& v = get(key);
    if (v.type != gguf_type::array) wrong_type(path_, key, v, "an array");
    return v.count;
}

const std::vector<std::string>& gguf_reader::get_array_strings(std::string_view key) const {
    const gguf_value& v = get(key);
    if (v.type != gguf_type::array || v.elem_type != gguf_type::string) wrong_type(path_, key, v, "array of string");
    return v.strings;
}

std::vector<float> gguf_reader::get_array_f32(std::string_view key) const {
    const gguf_value& v = get(key);
    if (v.type != gguf_type::array || (v.elem_type != gguf_type::f32 && v.elem_type != gguf_type::f64))
        wrong_type(path_, key, v, "array of f32");
    std::vector<float> out(static_cast<size_t>(v.count));
    for (uint64_t i = 0; i < v.count; ++i)
        out[i] = v.elem_type == gguf_type::f32 ? load<float>(v.raw + 4 * i)
                                               : static_cast<float>(load<double>(v.raw + 8 * i));
    return out;
}

std::vector<int32_t> gguf_reader::get_array_i32(std::string_view key) const {
    const gguf_value& v = get(key);
    if (v.type != gguf_type::array || v.elem_type == gguf_type::string || v.elem_type == gguf_type::array ||
        v.elem_type == gguf_type::f32 || v.elem_type == gguf_type::f64 || v.elem_type == gguf_type::boolean)
        wrong_type(path_, key, v, "array of i32");
    std::vector<int32_t> out(static_cast<size_t>(v.count));
    for (uint64_t i = 0; i < v.count; ++i) {
        int64_t s = 0;
        uint64_t u = 0;
        bool is_signed = false;
        elem_as_int(v, i, s, u, is_signed);
        const bool fits = is_signed ? (s >= std::numeric_limits<int32_t>::min() && s <= std::numeric_limits<int32_t>::max())
                                    : u <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
        if (!fits)
            throw user_error(fmt::format("{}: metadata array '{}' element {} ({}) does not fit in i32", path_, key, i,
                                         is_signed ? std::to_string(s) : std::to_string(u)),
                             "the file does not follow the GGUF conventions for this key; re-convert the model");
        out[i] = static_cast<int32_t>(is_signed ? s : static_cast<int64_t>(u));
    }
    return out;
}

// ---- tensors -----------------------------------------------------------------------------

const gguf_tensor* gguf_reader::find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const gguf_tensor& gguf_reader::tensor(std::string_view name) const {
    if (const gguf_tensor* t = find_tensor(name)) return *t;
    throw user_error(fmt::format("{}: tensor '{}' is missing ({} tensors in the file)", path_, name, tensors_.size()),
                     "the model's architecture does not match what slmctl expects; `slmctl model info` lists "
                     "the tensors present");
}

std::vector<float> gguf_reader::tensor_f32(std::string_view name) const {
    const gguf_tensor& t = tensor(name);
    return dequantize(t.type, t.data, t.n_elements);
}

}  // namespace slm::model
