// Internal to slm_collector: splits a JSON document that arrives in pieces into records without
// holding the document: top-level values in a row, a top-level array giving one record per element.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace slm::collector {

/// One record cut out of a document. `reason` is empty for a complete value (still to be parsed:
/// the splitter only matches brackets and strings); otherwise the text is quarantined as is.
struct split_record {
    std::string_view text;  ///< the value's bytes (at most max_record), or what is left after an error
    int64_t line = 0;       ///< 1-based line where it starts
    int64_t index = 0;      ///< 1-based element index in its top-level array, 0 for a top-level value
    std::string reason;     ///< "" | invalid_json | line_too_long
    std::string detail;
};

/// Feed bytes in order, then finish(). Memory: one record (capped at max_record) plus state.
/// Structure errors between records (a missing comma, a stray '}') end the splitting: the rest of
/// the document becomes one invalid_json record, as a parser would also stop there.
class json_splitter {
public:
    using sink = std::function<void(const split_record&)>;
    json_splitter(size_t max_record, int64_t first_line);
    void feed(std::string_view bytes, const sink& emit);
    /// End of input: a value cut short or an unclosed array is reported.
    void finish(const sink& emit);
    /// Records emitted so far.
    int64_t records() const { return records_; }

private:
    enum class state : uint8_t { between, value, failed };
    void begin_value(int64_t line);
    void end_value(const sink& emit);
    void fail(std::string detail, int64_t line);
    void keep(const char* p, size_t n);

    size_t max_;
    int64_t line_;
    state st_ = state::between;
    bool in_array_ = false;   // inside the top-level array
    bool want_elem_ = false;  // in the array: a value may come next (after '[' or ',')
    int64_t index_ = 0;       // elements seen in the current top-level array
    int64_t records_ = 0;
    // the value being read
    std::string cur_;
    int64_t cur_line_ = 0;
    size_t cur_bytes_ = 0;  // its full length (cur_ stops at max_)
    int depth_ = 0;
    bool scalar_ = false, in_str_ = false, esc_ = false;
    std::string fail_detail_;
};

}  // namespace slm::collector
