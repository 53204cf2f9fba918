// A whole file mapped read-only into memory (GGUF and safetensors checkpoints): one place that
// opens, checks, maps and unmaps, with messages that name the file.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace slm {

/// A private read-only mapping of a regular file, unmapped on destruction. Move-only. An empty
/// file maps to data() == nullptr, size() == 0.
class mapped_file {
public:
    mapped_file() = default;
    /// Maps `path`. user_error naming the file when it cannot be opened (with `open_hint` as the
    /// hint), is not a regular file, or cannot be mapped.
    explicit mapped_file(const std::string& path, std::string_view open_hint = {});
    ~mapped_file();
    mapped_file(mapped_file&& o) noexcept;
    mapped_file& operator=(mapped_file&& o) noexcept;
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;

    const uint8_t* data() const { return static_cast<const uint8_t*>(map_); }
    size_t size() const { return size_; }
    std::string_view view() const { return {static_cast<const char*>(map_), size_}; }
    const std::string& path() const { return path_; }
    /// Unmaps now (idempotent).
    void reset() noexcept;

private:
    std::string path_;
    void* map_ = nullptr;
    size_t size_ = 0;
};

}  // namespace slm
