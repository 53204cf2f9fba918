// Internal to slm_collector: input discovery (files, recursive directories in sorted order, "-" for
// stdin) and a streaming line reader over plain or gzip input with a bounded buffer.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace slm::collector {

struct input_file {
    std::string path;     ///< what to open ("-" for stdin)
    std::string display;  ///< stored as source_file: absolute, normalized path, or "<stdin>"
    uint64_t size = 0;    ///< bytes on disk (0 for stdin)
};

/// Expands the command-line paths: directories recursively (*.jsonl, *.ndjson, *.json, *.log and
/// *.gz files; hidden entries skipped; sorted by path). Files named explicitly are always read.
/// Throws user_error for a path that does not exist.
std::vector<input_file> expand_inputs(const std::vector<std::string>& paths);

/// Reads lines of at most `max_line` bytes from a file, gzip file (detected by magic bytes) or
/// stdin, in constant memory. A longer line is returned truncated with `too_long` set and the
/// rest of it skipped. Lines exclude "\n" and a trailing "\r"; a UTF-8 BOM at the start is dropped.
class line_reader {
public:
    line_reader(const input_file& in, size_t max_line);
    ~line_reader();
    line_reader(const line_reader&) = delete;
    line_reader& operator=(const line_reader&) = delete;

    /// The next line; false at end of input. The view is valid until the next call.
    bool next(std::string_view& line, bool& too_long);
    /// 1-based number of the line last returned.
    int64_t line_no() const { return line_no_; }
    /// Input bytes consumed so far (compressed bytes for gzip).
    uint64_t consumed() const;
    bool gzip() const { return gz_ != nullptr; }
    /// Appends everything not yet returned (buffered and unread) to `out`; false if that would
    /// exceed `limit` bytes in total.
    bool read_rest(std::string& out, size_t limit);
    /// Before the first line is read: the first byte that is not whitespace (a UTF-8 BOM skipped),
    /// without consuming anything; -1 at end of input or when the first MiB is all whitespace.
    int peek_content();
    /// Appends up to `max` bytes not yet returned (a leading BOM dropped) to `out`, bypassing the
    /// line logic (line_no() no longer counts); returns the bytes appended, 0 at end of input.
    size_t read_some(std::string& out, size_t max);

private:
    size_t fill(char* dst, size_t cap);  // decompressed bytes into dst, 0 at end
    size_t read_raw(char* dst, size_t cap);

    struct gz_state;
    std::string path_;
    int fd_ = -1;
    bool own_fd_ = false;
    bool regular_ = false;
    std::unique_ptr<gz_state> gz_;
    std::vector<char> buf_;
    size_t beg_ = 0, end_ = 0;
    size_t max_line_;
    bool eof_ = false;
    bool first_ = true;
    int64_t line_no_ = 0;
    uint64_t raw_read_ = 0;
    std::string long_line_;
};

}  // namespace slm::collector
