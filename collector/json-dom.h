// Internal to slm_collector: a fast JSON parser into a flat DOM whose strings point into the
// input text (decoded only when they carry escapes), and a compact JSON writer. Hot path of collect.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::collector::json {

enum class kind : uint8_t { null_value, boolean, number, string, array, object };

/// One value. Containers are followed by their subtree; `end` is the index one past it, so
/// children are walked with `i = nodes[i].end`. Object members are a string key node followed by
/// the value node.
struct node {
    kind k = kind::null_value;
    bool escaped = false;  ///< string: raw text holds backslash escapes (decode before use)
    bool truth = false;    ///< boolean value
    uint32_t end = 0;      ///< index one past this node's subtree
    uint32_t count = 0;    ///< array elements / object members
    uint32_t n = 0;        ///< string: raw length between quotes; number: literal length; container: span length
    const char* p = nullptr;  ///< string: first byte after the opening quote; number/container: first byte
};

struct parse_error {
    size_t offset = 0;        ///< byte offset in the text where parsing failed
    bool at_end = false;      ///< input ended inside a value (truncated)
    bool bad_utf8 = false;    ///< invalid UTF-8 inside a string
    const char* what = "";    ///< human message
};

/// A parsed JSON text. Node string pointers refer to the parsed text, which must outlive it
/// (or be owned: parse_owned keeps a copy).
class document {
public:
    /// Parses exactly one value (surrounding whitespace allowed). False on error (see error()).
    bool parse(std::string_view text);
    /// Parses one value starting at `text[pos]`, leaving `pos` just after it (trailing whitespace
    /// skipped). For documents holding several values in a row.
    bool parse_prefix(std::string_view text, size_t& pos);
    /// Copies `text` into the document first (for JSON held in a decoded string attribute).
    bool parse_owned(std::string text);

    const parse_error& error() const { return err_; }
    const node& root() const { return nodes_[0]; }
    uint32_t root_index() const { return 0; }
    const node& at(uint32_t i) const { return nodes_[i]; }
    size_t size() const { return nodes_.size(); }

    /// Member of an object by key, or nullptr (also when `obj` is not an object).
    const node* get(const node& obj, std::string_view key) const;
    /// Index of a node (nodes live in one vector).
    uint32_t index_of(const node& n) const { return static_cast<uint32_t>(&n - nodes_.data()); }
    /// First child (array element or object key), or end.
    uint32_t first_child(const node& c) const { return index_of(c) + 1; }

    /// Calls f(key_node, value_node) for each member of an object.
    template <typename F> void members(const node& obj, F&& f) const {
        if (obj.k != kind::object) return;
        for (uint32_t i = index_of(obj) + 1; i < obj.end;) {
            const node& k = nodes_[i];
            const node& v = nodes_[i + 1];
            f(k, v);
            i = v.end;
        }
    }
    /// Calls f(element) for each element of an array.
    template <typename F> void elements(const node& arr, F&& f) const {
        if (arr.k != kind::array) return;
        for (uint32_t i = index_of(arr) + 1; i < arr.end; i = nodes_[i].end) f(nodes_[i]);
    }

private:
    bool parse_value(const char*& p, const char* end, int depth);
    bool fail(const char* p, const char* what, bool at_end = false, bool bad_utf8 = false);

    std::vector<node> nodes_;
    std::string owned_;
    const char* begin_ = nullptr;
    parse_error err_;
};

// ---- strings ---------------------------------------------------------------------------------

/// The decoded text of a string node: a view of the input when it has no escapes, else decoded
/// into `scratch`. Lone surrogates become U+FFFD.
std::string_view str(const node& n, std::string& scratch);
/// True when `n` is a string equal to `s` (decoding escapes if needed).
bool str_eq(const node& n, std::string_view s);
/// Raw literal of a number node.
inline std::string_view num(const node& n) { return {n.p, n.n}; }
/// Number node as double / int64 (false when not a number or not representable).
bool to_double(const node& n, double& out);
bool to_int(const node& n, int64_t& out);

/// Compact serialization of a subtree, strings re-escaped canonically (no scrubbing).
void write_compact(const document& d, const node& n, std::string& out);

}  // namespace slm::collector::json
