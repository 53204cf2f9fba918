// Streaming split of a JSON document into records: brackets and strings are matched byte by byte,
// each record is handed out as soon as it closes, and nothing before it is kept.
#include "collector/json-splitter.h"

#include <algorithm>

#include "common/common.h"

namespace slm::collector {

json_splitter::json_splitter(size_t max_record, int64_t first_line) : max_(max_record), line_(first_line) {}

void json_splitter::keep(const char* p, size_t n) {
    cur_bytes_ += n;
    if (cur_.size() < max_) cur_.append(p, std::min(n, max_ - cur_.size()));
}

void json_splitter::begin_value(int64_t line) {
    cur_.clear();
    cur_bytes_ = 0;
    cur_line_ = line;
    depth_ = 0;
    in_str_ = esc_ = false;
    st_ = state::value;
}

void json_splitter::fail(std::string detail, int64_t line) {
    begin_value(line);
    fail_detail_ = std::move(detail);
    st_ = state::failed;
}

void json_splitter::end_value(const sink& emit) {
    split_record r;
    r.text = cur_;
    r.line = cur_line_;
    r.index = in_array_ ? index_ : 0;
    if (cur_bytes_ > max_) {
        r.reason = "line_too_long";
        r.detail = r.index ? fmt::format("record {} of the array is {} bytes, longer than {} (--max-line-bytes)", r.index,
                                         cur_bytes_, max_)
                           : fmt::format("a record of {} bytes, longer than {} (--max-line-bytes)", cur_bytes_, max_);
    }
    ++records_;
    st_ = state::between;
    scalar_ = in_str_ = esc_ = false;
    depth_ = 0;
    emit(r);
}

static bool is_ws(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

void json_splitter::feed(std::string_view bytes, const sink& emit) {
    const char* p = bytes.data();
    const char* const e = p + bytes.size();
    while (p < e) {
        if (st_ == state::failed) {
            keep(p, static_cast<size_t>(e - p));
            return;
        }
        const char ch = *p;
        if (st_ == state::between) {
            if (is_ws(ch)) {
                line_ += ch == '\n';
                ++p;
                continue;
            }
            if (in_array_) {
                if (ch == ',') {
                    if (want_elem_) {
                        fail(fmt::format("two commas in a row after record {} of the array", index_), line_);
                        continue;
                    }
                    want_elem_ = true;
                    ++p;
                    continue;
                }
                if (ch == ']') {  // a trailing comma before it is forgiven
                    in_array_ = want_elem_ = false;
                    ++p;
                    continue;
                }
                if (!want_elem_) {
                    fail(fmt::format("expected ',' or ']' after record {} of the array, found '{}'", index_, ch), line_);
                    continue;
                }
                ++index_;
                want_elem_ = false;
            } else if (ch == '[') {
                in_array_ = want_elem_ = true;
                index_ = 0;
                ++p;
                continue;
            } else if (ch == ']' || ch == '}' || ch == ',' || ch == ':') {
                fail(fmt::format("unexpected '{}' between records", ch), line_);
                continue;
            }
            begin_value(line_);
            scalar_ = !(ch == '"' || ch == '{' || ch == '[');
        }
        // st_ == value
        if (scalar_) {
            if (is_ws(ch) || ch == ',' || ch == ']' || ch == '}' || ch == '[' || ch == '{' || ch == '"' || ch == ':') {
                end_value(emit);  // the delimiter is read again between records
                continue;
            }
            keep(p, 1);
            ++p;
            continue;
        }
        if (esc_) {
            esc_ = false;
            line_ += ch == '\n';
            keep(p, 1);
            ++p;
            continue;
        }
        if (in_str_) {
            const char* q = p;
            while (q < e && *q != '"' && *q != '\\' && *q != '\n') ++q;
            if (q > p) {
                keep(p, static_cast<size_t>(q - p));
                p = q;
                continue;
            }
            keep(p, 1);
            ++p;
            if (ch == '\\') {
                esc_ = true;
            } else if (ch == '\n') {
                ++line_;
            } else {  // the closing quote
                in_str_ = false;
                if (depth_ == 0) end_value(emit);
            }
            continue;
        }
        keep(p, 1);
        ++p;
        if (ch == '"') {
            in_str_ = true;
        } else if (ch == '{' || ch == '[') {
            ++depth_;
        } else if (ch == '}' || ch == ']') {
            if (--depth_ == 0) end_value(emit);
        } else if (ch == '\n') {
            ++line_;
        }
    }
}

void json_splitter::finish(const sink& emit) {
    if (st_ == state::value) {
        if (scalar_) {
            end_value(emit);
        } else {  // cut short: the parser says where (invalid_json, "truncated?")
            split_record r;
            r.text = cur_;
            r.line = cur_line_;
            r.index = in_array_ ? index_ : 0;
            if (cur_bytes_ > max_) {
                r.reason = "line_too_long";
                r.detail = fmt::format("a record of {} bytes (cut short), longer than {} (--max-line-bytes)", cur_bytes_, max_);
            }
            ++records_;
            emit(r);
        }
    } else if (st_ == state::failed) {
        split_record r;
        r.text = cur_;
        r.line = cur_line_;
        r.reason = "invalid_json";
        r.detail = fail_detail_ + "; the rest of the document is not read";
        emit(r);
    } else if (in_array_) {
        split_record r;
        r.line = line_;
        r.reason = "invalid_json";
        r.detail = fmt::format("the file ends inside the top-level array, after record {} (truncated?)", index_);
        emit(r);
    }
    st_ = state::between;
    in_array_ = false;
}

}  // namespace slm::collector
