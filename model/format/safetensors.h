// safetensors files: a memory-mapped reader with a bounds-checked header (untrusted input: every
// offset, shape and dtype is validated before use), sharded checkpoints, and a small writer.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/mmap-file.h"

namespace slm::model {

/// One tensor entry of a safetensors header, with its bytes inside the mapping.
struct st_tensor {
    std::string name;
    std::string dtype;            ///< as stored: "F32", "F16", "BF16", "I64", ...
    int64_t elem_size = 0;        ///< bytes per element of dtype
    std::vector<int64_t> shape;   ///< row-major, as torch
    int64_t n_elements = 0;
    const uint8_t* data = nullptr;  ///< valid while the file lives; any alignment
    uint64_t n_bytes = 0;
    std::string file;             ///< the file it lives in (for messages)
};

/// Bytes per element of a safetensors dtype name, or 0 when unknown.
int64_t st_dtype_size(std::string_view dtype);

class safetensors_file {
public:
    /// Maps and parses `path`; user_error naming the file (and tensor) when anything is off.
    explicit safetensors_file(const std::string& path);
    /// Parses a buffer the caller keeps alive (tests, fuzzing); `name` is used in messages.
    safetensors_file(const void* data, size_t size, std::string name);
    ~safetensors_file();
    safetensors_file(const safetensors_file&) = delete;
    safetensors_file& operator=(const safetensors_file&) = delete;

    const std::string& path() const { return path_; }
    const std::vector<st_tensor>& tensors() const { return tensors_; }
    /// nullptr when absent.
    const st_tensor* find(std::string_view name) const;
    /// `__metadata__` string pairs.
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

private:
    void parse();
    std::string path_;
    const uint8_t* base_ = nullptr;
    uint64_t size_ = 0;
    mapped_file file_;  ///< the mapping we own (empty for a caller's buffer)
    std::vector<st_tensor> tensors_;
    std::map<std::string, size_t, std::less<>> index_;
    std::map<std::string, std::string> metadata_;
};

/// A checkpoint directory's weights: `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json` (weight_map), opened lazily as one name space.
class safetensors_set {
public:
    /// user_error when the directory has neither file, or the index names a missing shard.
    explicit safetensors_set(const std::string& dir);
    ~safetensors_set();
    const std::string& dir() const { return dir_; }
    /// nullptr when absent.
    const st_tensor* find(std::string_view name) const;
    /// All tensors of all shards.
    std::vector<const st_tensor*> tensors() const;
    /// The files read, for messages ("model.safetensors" or "model-00001-of-00002.safetensors, ...").
    std::string describe() const;

private:
    std::string dir_;
    std::vector<std::unique_ptr<safetensors_file>> files_;
};

/// One tensor to write: raw bytes of `dtype` in row-major order.
struct st_write_entry {
    std::string name;
    std::string dtype;  ///< "F32", "BF16", ...
    std::vector<int64_t> shape;
    const void* data = nullptr;
    uint64_t n_bytes = 0;
};
/// Writes a safetensors file (header padded to 8 bytes); user_error when it cannot be written.
void write_safetensors(const std::string& path, const std::vector<st_write_entry>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace slm::model
