// S1 normalization: one input record (flywheel, {request,response} pair, fine-tuning form, legacy
// functions, or OTLP spans via normalize-otel.cpp) into scrubbed `calls` rows or a quarantine row.
// Strings are scrubbed as they are written, in a fixed order (messages, tools, response), so a
// call's placeholders are numbered the same way every time it is read.
#include <algorithm>
#include <array>
#include <charconv>
#include <deque>
#include <cstring>
#include <ctime>
#include <cmath>

#include "collector/collector.h"
#include "collector/json-dom.h"
#include "collector/normalize-internal.h"
#include "common/common.h"
#include "common/response-kind.h"
#include "common/text.h"
#include "common/timing.h"

namespace slm::collector {

using json::kind;
using json::node;

const char* format_name(record_format f) {
    switch (f) {
    case record_format::flywheel: return "flywheel";
    case record_format::pair: return "pair";
    case record_format::finetune: return "finetune";
    case record_format::legacy_functions: return "legacy_functions";
    case record_format::otel: return "otel";
    case record_format::sharegpt: return "sharegpt";
    case record_format::alpaca: return "alpaca";
    }
    return "?";
}

std::string epoch_to_iso(double seconds) { return epoch_to_iso_utc(seconds); }

std::string escape_invalid_utf8(std::string_view raw) {
    std::string out;
    out.reserve(raw.size());
    auto p = reinterpret_cast<const unsigned char*>(raw.data());
    auto end = p + raw.size();
    static const char hex[] = "0123456789ABCDEF";
    while (p < end) {
        int l = *p == 0 ? 0 : utf8_seq_len(p, end);
        if (l == 0) {
            out += "\\x";
            out.push_back(hex[*p >> 4]);
            out.push_back(hex[*p & 15]);
            ++p;
        } else {
            out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(l));
            p += l;
        }
    }
    return out;
}

namespace {

bool is_text_part_type(std::string_view t) { return t == "text" || t == "input_text" || t == "output_text"; }

// A failed normalization: quarantine reason and detail.
struct failure {
    std::string reason, detail;
};

}  // namespace

// ---- the normalizer ---------------------------------------------------------------------------

struct normalizer::impl {
    normalize_options opt;
    scrubber scr;
    json::document doc;       // the record
    json::document aux_doc;   // a record synthesized from an OTLP span
    json::document args_doc;  // tool-call arguments
    std::string s_dec, s_key, s_tmp, s_args, s_canon;
    struct member {
        std::string_view key;
        uint32_t k, v;
    };
    std::vector<member> members_;          // passthrough's object members, as a stack
    std::deque<std::string> decoded_keys_;  // escaped keys decoded, as a stack

    // per call
    struct facts {
        std::string last_user_text;
        bool ends_with_tool_result = false;
        std::string last_tool_name;
        std::vector<std::string> tool_names;
        std::vector<std::pair<std::string, std::string>> call_names;  // tool_call id -> name
        std::vector<std::string> response_tool_names;
    } f;

    explicit impl(normalize_options o) : opt(std::move(o)), scr(opt.scrub) {}

    // ---- writing helpers ----------------------------------------------------------------------

    static void emit_plain(std::string_view s, std::string& out) {
        out.push_back('"');
        json_escape_into(out, s);
        out.push_back('"');
    }

    // a JSON string literal of the scrubbed text; `capture` receives the scrubbed text
    void emit_text(std::string_view decoded, std::string& out, std::string* capture = nullptr) {
        s_tmp.clear();
        scr.scrub(decoded, s_tmp);
        out.push_back('"');
        json_escape_into(out, s_tmp);
        out.push_back('"');
        if (capture) capture->append(s_tmp);
    }

    // Long strings seen again and again (system prompts, tool descriptions) that held nothing to
    // scrub: their JSON output, by raw bytes. Direct-mapped; a string without PII scrubs to itself
    // whatever the call's placeholder state, so reuse is exact.
    struct clean_entry {
        std::string raw, out;
    };
    static constexpr size_t clean_slots = 512, clean_min = 64, clean_max = 65536;  // 20 KB agent prompts fit
    std::vector<clean_entry> clean_ = std::vector<clean_entry>(clean_slots);

    static size_t clean_slot(const char* p, size_t n) {
        uint64_t h = 1469598103934665603ULL ^ n;  // FNV-1a over the length, head and tail
        auto mix = [&](const char* q, size_t m) {
            for (size_t i = 0; i < m; ++i) h = (h ^ static_cast<unsigned char>(q[i])) * 1099511628211ULL;
        };
        mix(p, std::min<size_t>(n, 48));
        if (n > 48) mix(p + n - 16, 16);
        return static_cast<size_t>(h % clean_slots);
    }

    void emit_string_node(const node& n, std::string& out, std::string* capture = nullptr) {
        const bool cacheable = !capture && n.n >= clean_min && n.n <= clean_max && scr.enabled();
        size_t slot = 0;
        if (cacheable) {
            slot = clean_slot(n.p, n.n);
            const clean_entry& e = clean_[slot];
            if (e.raw.size() == n.n && std::memcmp(e.raw.data(), n.p, n.n) == 0) {
                out.push_back('"');
                out += e.out;
                out.push_back('"');
                return;
            }
        }
        const uint32_t before = scr.total();
        out.push_back('"');
        const size_t start = out.size();
        if (!n.escaped && !capture) {  // raw text without escapes is valid JSON string content as is
            scr.scrub({n.p, n.n}, out);
        } else {
            s_tmp.clear();
            scr.scrub(json::str(n, s_dec), s_tmp);
            json_escape_into(out, s_tmp);
            if (capture) capture->append(s_tmp);
        }
        if (cacheable && scr.total() == before) {
            clean_entry& e = clean_[slot];
            e.raw.assign(n.p, n.n);
            e.out.assign(out, start, std::string::npos);
        }
        out.push_back('"');
    }

    void emit_key(const node& k, std::string& out) {
        if (!k.escaped) {
            out.push_back('"');
            out.append(k.p, k.n);
            out.push_back('"');
        } else {
            emit_plain(json::str(k, s_key), out);
        }
    }

    static void emit_plain_key(std::string_view key, bool needs_escape, std::string& out) {
        out.push_back('"');
        if (needs_escape)
            json_escape_into(out, key);
        else
            out.append(key);
        out.push_back('"');
    }

    // any JSON value, every string scrubbed; a string under a secret-naming key becomes <SECRET_n>
    void passthrough(const json::document& d, const node& n, std::string& out) {
        switch (n.k) {
        case kind::null_value:
        case kind::boolean:
        case kind::number: out.append(n.p, n.n); break;
        case kind::string: emit_string_node(n, out); break;
        case kind::array: {
            out.push_back('[');
            bool first = true;
            d.elements(n, [&](const node& e) {
                if (!first) out.push_back(',');
                first = false;
                passthrough(d, e, out);
            });
            out.push_back(']');
            break;
        }
        case kind::object: {
            // members in key order (byte-wise, keys decoded): key order in the input does not
            // change the stored JSON or the content id. One member stack for all depths.
            const size_t base = members_.size();
            const size_t dbase = decoded_keys_.size();
            bool sorted = true;
            d.members(n, [&](const node& k, const node& v) {
                std::string_view key(k.p, k.n);
                if (k.escaped) {
                    std::string tmp;
                    decoded_keys_.emplace_back(json::str(k, tmp));  // deque: references stay valid
                    key = decoded_keys_.back();
                }
                if (members_.size() > base && key < members_.back().key) sorted = false;
                members_.push_back({key, d.index_of(k), d.index_of(v)});
            });
            const size_t count = members_.size() - base;
            if (!sorted)
                std::stable_sort(members_.begin() + static_cast<long>(base), members_.end(),
                                 [](const member& a, const member& b) { return a.key < b.key; });
            out.push_back('{');
            for (size_t i = 0; i < count; ++i) {
                const member m = members_[base + i];  // copy: the vector grows while recursing
                if (i) out.push_back(',');
                emit_plain_key(m.key, d.at(m.k).escaped, out);
                out.push_back(':');
                const node& v = d.at(m.v);
                if (v.k == kind::string && scr.enabled() && scrubber::is_secret_key(m.key)) {
                    std::string_view val = json::str(v, s_dec);
                    size_t mark = out.size();
                    out.push_back('"');
                    if (scr.scrub_secret_value(val, out)) {
                        out.push_back('"');
                        continue;
                    }
                    out.resize(mark);
                }
                passthrough(d, v, out);
            }
            members_.resize(base);
            decoded_keys_.resize(dbase);
            out.push_back('}');
            break;
        }
        }
    }

    // Tool-call arguments into canonical compact JSON text (scrubbed). `valid`: it is JSON;
    // `empty`: missing, null or blank (treated as {}).
    void canonical_args(const json::document& d, const node* args, std::string& canon, bool& valid, bool& empty) {
        canon.clear();
        valid = true;
        empty = false;
        if (!args || args->k == kind::null_value) {
            canon = "{}";
            empty = true;
            return;
        }
        if (args->k != kind::string) {
            passthrough(d, *args, canon);
            return;
        }
        std::string_view text = trim_space(json::str(*args, s_dec));
        if (text.empty()) {
            canon = "{}";
            empty = true;
            return;
        }
        s_args.assign(text);
        if (args_doc.parse(s_args)) {
            passthrough(args_doc, args_doc.root(), canon);
        } else {
            valid = false;
            scr.scrub(s_args, canon);
        }
    }

    // ---- messages -----------------------------------------------------------------------------

    // Content: a string, null, or parts. Text-only part arrays become one string (parts joined by
    // "\n"); others are kept as parts. `capture` receives the scrubbed text.
    void emit_content(const json::document& d, const node* c, std::string& out, std::string* capture) {
        if (!c || c->k == kind::null_value) {
            out += "null";
            return;
        }
        if (c->k == kind::string) {
            emit_string_node(*c, out, capture);
            return;
        }
        if (c->k != kind::array) {
            passthrough(d, *c, out);
            return;
        }
        bool text_only = true;
        d.elements(*c, [&](const node& part) {
            if (part.k == kind::string) return;
            const node* t = d.get(part, "type");
            const node* tx = d.get(part, "text");
            if (!(part.k == kind::object && t && t->k == kind::string && is_text_part_type(json::str(*t, s_dec)) && tx &&
                  tx->k == kind::string))
                text_only = false;
        });
        if (text_only) {
            std::string joined;
            bool first = true;
            d.elements(*c, [&](const node& part) {
                const node* tx = part.k == kind::string ? &part : d.get(part, "text");
                if (!first) joined.push_back('\n');
                first = false;
                joined.append(json::str(*tx, s_dec));
            });
            emit_text(joined, out, capture);
            return;
        }
        // mixed parts: kept, text parts' text captured
        out.push_back('[');
        bool first = true;
        bool first_text = true;
        d.elements(*c, [&](const node& part) {
            if (!first) out.push_back(',');
            first = false;
            if (part.k != kind::object) {
                passthrough(d, part, out);
                return;
            }
            out.push_back('{');
            bool fm = true;
            d.members(part, [&](const node& k, const node& v) {
                if (!fm) out.push_back(',');
                fm = false;
                emit_key(k, out);
                out.push_back(':');
                if (json::str_eq(k, "text") && v.k == kind::string) {
                    if (capture && !first_text) capture->push_back('\n');
                    first_text = false;
                    emit_string_node(v, out, capture ? capture : nullptr);
                } else {
                    passthrough(d, v, out);
                }
            });
            out.push_back('}');
        });
        out.push_back(']');
    }

    // one tool call of a request message, canonical OpenAI shape
    bool emit_history_tool_call(const json::document& d, const node& tc, std::string& out) {
        if (tc.k != kind::object) return false;
        const node* fn = d.get(tc, "function");
        const node* custom = d.get(tc, "custom");
        const node* name = nullptr;
        const node* args = nullptr;
        if (fn && fn->k == kind::object) {
            name = d.get(*fn, "name");
            args = d.get(*fn, "arguments");
        } else if (custom && custom->k == kind::object) {
            name = d.get(*custom, "name");
            args = d.get(*custom, "input");
        } else {
            name = d.get(tc, "name");
            args = d.get(tc, "arguments");
            if (!args) args = d.get(tc, "input");
        }
        if (!name || name->k != kind::string) return false;
        out.push_back('{');
        const node* id = d.get(tc, "id");
        std::string idv;
        if (id && id->k == kind::string) {
            idv.assign(json::str(*id, s_dec));
            out += "\"id\":";
            emit_plain(idv, out);
            out.push_back(',');
        }
        std::string nm(json::str(*name, s_dec));
        if (!idv.empty()) f.call_names.emplace_back(idv, nm);
        out += "\"type\":\"function\",\"function\":{\"name\":";
        emit_plain(nm, out);
        out += ",\"arguments\":";
        bool valid, empty;
        canonical_args(d, args, s_canon, valid, empty);
        emit_plain(s_canon, out);
        out += "}}";
        return true;
    }

    bool emit_message(const json::document& d, const node& m, size_t idx, std::string& out, failure& fail,
                      std::vector<std::string>& flags) {
        if (m.k != kind::object) {
            fail = {"bad_field", fmt::format("messages[{}] is not an object", idx)};
            return false;
        }
        const node* role = d.get(m, "role");
        if (!role || role->k != kind::string) {
            fail = {"bad_field", fmt::format("messages[{}].role is missing or not a string", idx)};
            return false;
        }
        std::string r(json::str(*role, s_dec));
        bool legacy_fn = r == "function";
        if (!(r == "system" || r == "developer" || r == "user" || r == "assistant" || r == "tool" || legacy_fn))
            add_flag(flags, "unknown_role");
        out += "{\"role\":";
        emit_plain(legacy_fn ? "tool" : r, out);
        const node* name = d.get(m, "name");
        std::string nm;
        if (name && name->k == kind::string) {
            nm.assign(json::str(*name, s_dec));
            out += ",\"name\":";
            emit_plain(nm, out);
        }
        const node* content = d.get(m, "content");
        if (content && content->k != kind::string && content->k != kind::null_value && content->k != kind::array) {
            fail = {"bad_field", fmt::format("messages[{}].content is a {}, not a string or a list of parts", idx,
                                             content->k == kind::number ? "number" : content->k == kind::boolean ? "boolean" : "object")};
            return false;
        }
        out += ",\"content\":";
        bool user = r == "user";
        if (user) f.last_user_text.clear();
        emit_content(d, content, out, user ? &f.last_user_text : nullptr);
        const node* tcs = d.get(m, "tool_calls");
        const node* fc = d.get(m, "function_call");
        bool wrote_calls = false;
        if (tcs && tcs->k == kind::array && tcs->count > 0) {
            out += ",\"tool_calls\":[";
            size_t mark = out.size();
            bool first = true;
            d.elements(*tcs, [&](const node& tc) {
                size_t before = out.size();
                if (!first) out.push_back(',');
                if (emit_history_tool_call(d, tc, out))
                    first = false;
                else
                    out.resize(before);
            });
            (void)mark;
            out.push_back(']');
            wrote_calls = true;
        }
        if (!wrote_calls && fc && fc->k == kind::object) {
            const node* fname = d.get(*fc, "name");
            if (fname && fname->k == kind::string && fname->n > 0) {
                out += ",\"tool_calls\":[";
                emit_history_tool_call(d, *fc, out);
                out.push_back(']');
            }
        }
        const node* tcid = d.get(m, "tool_call_id");
        std::string tcid_v;
        if (tcid && tcid->k == kind::string) {
            tcid_v.assign(json::str(*tcid, s_dec));
            out += ",\"tool_call_id\":";
            emit_plain(tcid_v, out);
        }
        out.push_back('}');
        f.ends_with_tool_result = r == "tool" || legacy_fn;
        if (f.ends_with_tool_result) {
            f.last_tool_name = nm;
            if (nm.empty())
                for (auto& [id, n] : f.call_names)
                    if (id == tcid_v) f.last_tool_name = n;
        }
        return true;
    }

    // ---- tools --------------------------------------------------------------------------------

    // The tool definitions of an agent node repeat on every call: their output, names and digest
    // are kept by raw bytes when they held nothing to scrub.
    struct tools_entry {
        std::string raw;
        std::string out, digest;
        std::vector<std::string> names;
    };
    std::array<tools_entry, 8> tools_cache_;
    size_t tools_next_ = 0;
    std::string tools_key_, tools_digest_;

    void emit_tools(const json::document& d, const node* tools, const node* functions, std::string& out) {
        tools_key_.clear();
        if (tools) tools_key_.append(tools->p, tools->n);
        tools_key_.push_back('\0');
        if (functions) tools_key_.append(functions->p, functions->n);
        if (scr.enabled()) {
            for (const auto& e : tools_cache_) {
                if (e.raw.size() == tools_key_.size() && e.raw == tools_key_) {
                    out = e.out;
                    f.tool_names = e.names;
                    tools_digest_ = e.digest;
                    return;
                }
            }
        }
        const uint32_t before = scr.total();
        emit_tools_uncached(d, tools, functions, out);
        tools_digest_ = out.empty() ? std::string() : blake2b_hex(out);
        if (scr.enabled() && scr.total() == before && !out.empty()) {
            tools_entry& e = tools_cache_[tools_next_++ % tools_cache_.size()];
            e.raw = tools_key_;
            e.out = out;
            e.digest = tools_digest_;
            e.names = f.tool_names;
        }
    }

    void emit_tools_uncached(const json::document& d, const node* tools, const node* functions, std::string& out) {
        out.clear();
        bool any = false;
        auto open = [&] {
            out.push_back(any ? ',' : '[');
            any = true;
        };
        if (tools && tools->k == kind::array) {
            d.elements(*tools, [&](const node& t) {
                open();
                passthrough(d, t, out);
                const node* fn = t.k == kind::object ? d.get(t, "function") : nullptr;
                const node* nm = fn ? d.get(*fn, "name") : (t.k == kind::object ? d.get(t, "name") : nullptr);
                if (!nm && t.k == kind::object) nm = d.get(t, "type");
                if (nm && nm->k == kind::string && f.tool_names.size() < 64)
                    f.tool_names.emplace_back(json::str(*nm, s_dec));
            });
        }
        if (functions && functions->k == kind::array) {
            d.elements(*functions, [&](const node& fn) {
                open();
                out += "{\"type\":\"function\",\"function\":";
                passthrough(d, fn, out);
                out.push_back('}');
                const node* nm = d.get(fn, "name");
                if (nm && nm->k == kind::string && f.tool_names.size() < 64)
                    f.tool_names.emplace_back(json::str(*nm, s_dec));
            });
        }
        if (any) out.push_back(']');
    }

    // ---- response -----------------------------------------------------------------------------

    static void add_flag(std::vector<std::string>& flags, const char* fl) {
        for (auto& x : flags)
            if (x == fl) return;
        flags.emplace_back(fl);
    }

    // one response tool call: {"name", "arguments": parsed JSON}
    void emit_response_tool_call(const json::document& d, const node* name, const node* args, bool args_is_object,
                                 call_record& c, bool& first) {
        if (!name || name->k != kind::string || name->n == 0) {
            add_flag(c.flag_list, "tool_call_no_name");
            return;
        }
        c.response_tool_calls.push_back(first ? '[' : ',');
        first = false;
        std::string nm(json::str(*name, s_dec));
        f.response_tool_names.push_back(nm);
        c.response_tool_calls += "{\"name\":";
        emit_plain(nm, c.response_tool_calls);
        c.response_tool_calls += ",\"arguments\":";
        bool valid = true, empty = false;
        if (!args_is_object && args && args->k != kind::string && args->k != kind::null_value)
            add_flag(c.flag_list, "tool_args_not_string");
        if (args_is_object && args) {
            s_canon.clear();
            passthrough(d, *args, s_canon);
        } else {
            canonical_args(d, args, s_canon, valid, empty);
        }
        if (valid) {
            c.response_tool_calls += s_canon;
        } else {
            add_flag(c.flag_list, "tool_args_not_json");
            emit_plain(s_canon, c.response_tool_calls);
        }
        if (empty) add_flag(c.flag_list, "tool_args_empty");
        c.response_tool_calls.push_back('}');
    }

    // the assistant message (or Anthropic-style message) that answers the request
    void take_response_message(const json::document& d, const node& m, call_record& c) {
        const node* content = d.get(m, "content");
        bool first_tc = true;
        std::string text;
        bool has_text = false;
        if (content && content->k == kind::string) {
            if (content->n > 0) {
                has_text = true;
                s_tmp.clear();
                scr.scrub(json::str(*content, s_dec), text);
            }
        } else if (content && content->k == kind::array) {
            d.elements(*content, [&](const node& part) {
                if (part.k == kind::string) {
                    if (has_text) text.push_back('\n');
                    scr.scrub(json::str(part, s_dec), text);
                    has_text = true;
                    return;
                }
                const node* t = d.get(part, "type");
                std::string_view ty = t && t->k == kind::string ? json::str(*t, s_dec) : std::string_view();
                if (is_text_part_type(ty)) {
                    const node* tx = d.get(part, "text");
                    if (tx && tx->k == kind::string) {
                        if (has_text) text.push_back('\n');
                        scr.scrub(json::str(*tx, s_dec), text);
                        has_text = true;
                    }
                } else if (ty == "tool_use" || ty == "tool_call" || ty == "function_call") {
                    const node* in = d.get(part, "input");
                    bool obj = in != nullptr;
                    if (!in) in = d.get(part, "arguments");
                    emit_response_tool_call(d, d.get(part, "name"), in, obj && in->k != kind::string, c, first_tc);
                }
                // thinking / reasoning parts are not part of the answer
            });
        }
        const node* tcs = d.get(m, "tool_calls");
        if (tcs && tcs->k == kind::array) {
            d.elements(*tcs, [&](const node& tc) {
                if (tc.k != kind::object) {
                    add_flag(c.flag_list, "tool_call_no_name");
                    return;
                }
                const node* fn = d.get(tc, "function");
                const node* custom = d.get(tc, "custom");
                if (fn && fn->k == kind::object && d.get(*fn, "name")) {
                    emit_response_tool_call(d, d.get(*fn, "name"), d.get(*fn, "arguments"), false, c, first_tc);
                } else if (custom && custom->k == kind::object) {
                    const node* in = d.get(*custom, "input");
                    emit_response_tool_call(d, d.get(*custom, "name"), in, false, c, first_tc);
                } else {
                    emit_response_tool_call(d, d.get(tc, "name"), d.get(tc, "arguments"), false, c, first_tc);
                }
            });
        }
        const node* fc = d.get(m, "function_call");
        if (first_tc && fc && fc->k == kind::object) {
            const node* nm = d.get(*fc, "name");
            if (nm && nm->k == kind::string && nm->n > 0)
                emit_response_tool_call(d, nm, d.get(*fc, "arguments"), false, c, first_tc);
        }
        if (!first_tc) c.response_tool_calls.push_back(']');
        if (!has_text && first_tc) {
            const node* refusal = d.get(m, "refusal");
            if (refusal && refusal->k == kind::string && refusal->n > 0) {
                scr.scrub(json::str(*refusal, s_dec), text);
                has_text = true;
                add_flag(c.flag_list, "refusal");
            } else {
                add_flag(c.flag_list, "empty_response");
            }
        }
        c.response_text = std::move(text);
        c.has_response_text = has_text;
    }

    // ---- envelope -----------------------------------------------------------------------------

    static const node* obj_get(const json::document& d, const node* o, std::string_view k) {
        return o && o->k == kind::object ? d.get(*o, k) : nullptr;
    }

    static bool get_int(const json::document& d, const node* o, std::string_view k, std::optional<int64_t>& out) {
        const node* v = obj_get(d, o, k);
        int64_t x;
        if (v && json::to_int(*v, x)) {
            out = x;
            return true;
        }
        return false;
    }

    std::string get_str(const json::document& d, const node* o, std::string_view k) {
        const node* v = obj_get(d, o, k);
        if (!v || v->k != kind::string) return {};
        return std::string(json::str(*v, s_dec));
    }

    // A record's time as ISO-8601 UTC: ISO-8601 text as given; Unix epoch numbers (integer or
    // float, seconds or ms/us/ns by magnitude, also as digit strings) converted. `readable` is
    // false for a value that is no time at all (stored as given when text, else "").
    static std::string timestamp_of(const json::document& d, const node* v, bool& readable) {
        readable = true;
        if (!v || v->k == kind::null_value) return {};
        double x;
        if (v->k == kind::string) {
            std::string scratch;
            std::string_view t = json::str(*v, scratch);
            if (looks_iso8601(t)) return std::string(t);
            const auto n = trim_space(t);
            auto r = std::from_chars(n.data(), n.data() + n.size(), x);
            if (!n.empty() && r.ec == std::errc() && r.ptr == n.data() + n.size()) {
                std::string iso = epoch_to_iso(epoch_seconds_by_magnitude(x));
                if (!iso.empty()) return iso;
            }
            readable = false;
            return std::string(t);
        }
        if (json::to_double(*v, x)) {
            std::string iso = epoch_to_iso(epoch_seconds_by_magnitude(x));
            readable = !iso.empty();
            return iso;
        }
        readable = false;
        return {};
    }

    // YYYY-MM-DD, then optionally [T ]HH:MM[:SS[.fraction]] and Z or +HH[:]MM / -HH[:]MM.
    static bool looks_iso8601(std::string_view t) {
        size_t i = 0;
        auto digits = [&](int n) {
            for (int k = 0; k < n; ++k, ++i)
                if (i >= t.size() || t[i] < '0' || t[i] > '9') return false;
            return true;
        };
        auto lit = [&](char c) { return i < t.size() && t[i] == c ? (++i, true) : false; };
        if (!(digits(4) && lit('-') && digits(2) && lit('-') && digits(2))) return false;
        if (i == t.size()) return true;
        if (!(lit('T') || lit(' ')) || !(digits(2) && lit(':') && digits(2))) return false;
        if (lit(':')) {
            if (!digits(2)) return false;
            if (lit('.') || lit(',')) {
                const size_t f = i;
                while (i < t.size() && t[i] >= '0' && t[i] <= '9') ++i;
                if (i == f) return false;
            }
        }
        if (i == t.size() || (lit('Z') && i == t.size())) return true;
        if (!(lit('+') || lit('-')) || !digits(2)) return false;
        lit(':');
        return digits(2) && i == t.size();
    }

    static bool message_is_legacy(const json::document& d, const node& m) {
        if (m.k != kind::object) return false;
        const node* r = d.get(m, "role");
        if (r && json::str_eq(*r, "function")) return true;
        const node* fc = d.get(m, "function_call");
        if (fc && fc->k == kind::object) {
            const node* nm = d.get(*fc, "name");
            return nm && nm->k == kind::string && nm->n > 0;
        }
        return false;
    }

    static bool messages_legacy(const json::document& d, const node* msgs) {
        bool legacy = false;
        if (msgs && msgs->k == kind::array) d.elements(*msgs, [&](const node& m) { legacy |= message_is_legacy(d, m); });
        return legacy;
    }

    // ---- one OpenAI-family record ----------------------------------------------------------------

    bool normalize_openai(const json::document& d, const node& root, record_format fmt, bool finetune,
                          std::string_view file, int64_t line, call_record& c, failure& fail) {
        scr.reset();
        f = facts{};
        c.format = fmt;
        c.source_file.assign(file);
        c.source_line = line;

        const node* req = finetune ? &root : d.get(root, "request");
        const node* resp = finetune ? nullptr : d.get(root, "response");
        if (!finetune) {
            if (!req || req->k != kind::object) {
                fail = req ? failure{"bad_field", "request is not an object"} : failure{"no_request", "no request field"};
                return false;
            }
            const node* status = d.get(root, "status");
            int64_t st = 0;
            if (status && json::to_int(*status, st) && st >= 400) {
                fail = {"error_response", fmt::format("HTTP status {}", st)};
                return false;
            }
            if (!resp || resp->k == kind::null_value) {
                fail = {"no_response", "response is missing or null"};
                return false;
            }
        }
        const node* msgs = d.get(*req, "messages");
        if (!msgs || msgs->k == kind::null_value) {
            fail = {"no_messages", finetune ? "no messages" : "request.messages is missing"};
            return false;
        }
        if (msgs->k != kind::array) {
            fail = {"bad_field", "messages is not an array"};
            return false;
        }
        size_t n_req = msgs->count;
        const node* last = nullptr;
        if (finetune) {
            for (uint32_t i = d.first_child(*msgs); i < msgs->end; i = d.at(i).end) last = &d.at(i);
            const node* lr = last ? obj_get(d, last, "role") : nullptr;
            if (!last || !lr || !json::str_eq(*lr, "assistant")) {
                fail = {"no_response", "the last message is not an assistant message"};
                return false;
            }
            --n_req;
        }
        if (n_req == 0) {
            fail = {"no_messages", "no request messages"};
            return false;
        }

        // the response object: choices[0].message, a bare assistant message, or Anthropic content
        const node* resp_msg = last;
        std::string resp_text_plain;
        bool resp_is_plain_text = false;
        const node* finish = nullptr;
        const node* usage = nullptr;
        if (!finetune) {
            if (resp->k == kind::string) {
                resp_is_plain_text = true;
            } else if (resp->k != kind::object) {
                fail = {"no_response", "response is not an object"};
                return false;
            } else {
                const node* choices = d.get(*resp, "choices");
                const node* err = d.get(*resp, "error");
                if (err && err->k != kind::null_value && !choices) {
                    std::string msg = err->k == kind::object ? get_str(d, err, "message") : std::string();
                    if (msg.empty() && err->k == kind::string) msg = json::str(*err, s_dec);
                    fail = {"error_response", msg.empty() ? "response is an error" : "response error: " + msg};
                    return false;
                }
                if (choices && choices->k == kind::array) {
                    if (choices->count == 0) {
                        fail = {"no_response", "response.choices is empty"};
                        return false;
                    }
                    if (choices->count > 1) add_flag(c.flag_list, "multiple_choices");
                    const node& ch0 = d.at(d.first_child(*choices));
                    resp_msg = obj_get(d, &ch0, "message");
                    finish = obj_get(d, &ch0, "finish_reason");
                    if (!resp_msg || resp_msg->k != kind::object) {
                        const node* txt = obj_get(d, &ch0, "text");  // legacy completions
                        if (txt && txt->k == kind::string) {
                            resp_msg = nullptr;
                            resp_is_plain_text = true;
                            resp = txt;
                        } else {
                            fail = {"no_response", "response.choices[0] has no message"};
                            return false;
                        }
                    }
                } else if (choices) {
                    fail = {"bad_field", "response.choices is not an array"};
                    return false;
                } else if (d.get(*resp, "content") || d.get(*resp, "tool_calls")) {
                    resp_msg = resp;  // a bare assistant message, or an Anthropic Messages response
                    finish = d.get(*resp, "finish_reason");
                    if (!finish) finish = d.get(*resp, "stop_reason");
                } else {
                    fail = {"no_response", "response has no choices and no content"};
                    return false;
                }
                usage = d.get(*resp, "usage");
                c.response_id = get_str(d, resp, "id");
                c.model = get_str(d, resp, "model");
            }
        }
        if (c.model.empty()) c.model = get_str(d, req, "model");

        // envelope metadata
        if (!opt.workload.empty()) {
            c.workload_id = opt.workload;
        } else {
            c.workload_id = get_str(d, &root, "workload_id");
            if (c.workload_id.empty()) c.workload_id = get_str(d, &root, "workload");
        }
        c.client_id = !opt.client.empty() ? opt.client : get_str(d, &root, "client_id");
        const node* ts = d.get(root, "timestamp");
        bool ts_readable = true;
        c.timestamp = timestamp_of(d, ts, ts_readable);
        if (!ts_readable) add_flag(c.flag_list, "timestamp_not_iso");
        if (c.timestamp.empty() && resp && resp->k == kind::object) {
            bool created_readable;  // the response's own clock: a bad one is not the record's defect
            c.timestamp = timestamp_of(d, d.get(*resp, "created"), created_readable);
            if (!created_readable) c.timestamp.clear();
        }
        double lat;
        const node* latn = d.get(root, "latency_ms");
        if (latn && json::to_double(*latn, lat))
            c.latency_ms = lat;
        else if (latn && latn->k != kind::null_value)
            add_flag(c.flag_list, "latency_not_number");

        // messages, tools, response, response_format: scrubbed in this order
        c.messages.clear();
        c.messages.push_back('[');
        size_t idx = 0;
        bool ok = true;
        for (uint32_t i = d.first_child(*msgs); i < msgs->end && idx < n_req; i = d.at(i).end, ++idx) {
            if (idx) c.messages.push_back(',');
            if (!emit_message(d, d.at(i), idx, c.messages, fail, c.flag_list)) {
                ok = false;
                break;
            }
        }
        if (!ok) return false;
        c.messages.push_back(']');
        emit_tools(d, d.get(*req, "tools"), d.get(*req, "functions"), c.tools);

        if (resp_is_plain_text) {
            std::string text;
            scr.scrub(json::str(*resp, s_dec), text);
            c.has_response_text = !text.empty();
            c.response_text = std::move(text);
            if (!c.has_response_text) add_flag(c.flag_list, "empty_response");
        } else {
            take_response_message(d, *resp_msg, c);
        }
        // the request's response_format, after the response so that the response's placeholders
        // number as they did before it was kept; absent, null or {"type":"text"} store nothing
        if (const node* rf = d.get(*req, "response_format"); rf && rf->k == kind::object) {
            const node* t = d.get(*rf, "type");
            if (!(t && t->k == kind::string && json::str_eq(*t, "text"))) passthrough(d, *rf, c.response_format);
        }
        if (finish && finish->k == kind::string && finish->n > 0) c.finish_reason = json::str(*finish, s_dec);
        if (c.finish_reason == "length" || c.finish_reason == "max_tokens") add_flag(c.flag_list, "truncated");
        if (!get_int(d, usage, "prompt_tokens", c.prompt_tokens)) get_int(d, usage, "input_tokens", c.prompt_tokens);
        if (!get_int(d, usage, "completion_tokens", c.completion_tokens))
            get_int(d, usage, "output_tokens", c.completion_tokens);

        if (!opt.workload.empty() || !c.workload_id.empty()) {
            std::string w;
            scr.scrub(c.workload_id, w);
            c.workload_id = std::move(w);
        }
        if (!c.client_id.empty()) {
            std::string cl;
            scr.scrub(c.client_id, cl);
            c.client_id = std::move(cl);
        }
        finish_call(c);
        return true;
    }

    // ---- task text, content id, JSON columns -----------------------------------------------------

    // the kind of response; a tool call names its tools ("tool_call:f+g")
    std::string response_shape(const call_record& c) {
        const auto k = classify_response(c.response_text, c.response_tool_calls);
        if (k != response_kind::tool_call) return response_kind_name(k);
        std::string s = "tool_call:";
        for (size_t i = 0; i < f.response_tool_names.size(); ++i) {
            if (i) s.push_back('+');
            s += f.response_tool_names[i];
        }
        return s;
    }

    void finish_call(call_record& c) {
        std::string& tt = c.task_text;
        tt.assign(utf8_cut(trim_space(f.last_user_text), 2000));
        if (!f.tool_names.empty()) {
            if (!tt.empty()) tt.push_back('\n');
            tt += "tools: ";
            for (size_t i = 0; i < f.tool_names.size(); ++i) {
                if (i) tt += ", ";
                tt += f.tool_names[i];
            }
        }
        if (f.ends_with_tool_result) {
            if (!tt.empty()) tt.push_back('\n');
            tt += "after: tool_result ";
            tt += f.last_tool_name.empty() ? "?" : f.last_tool_name;
        }
        if (!tt.empty()) tt.push_back('\n');
        tt += "response: ";
        tt += response_shape(c);

        hasher h;
        auto field = [&](std::string_view s, bool present) {
            uint64_t len = present ? s.size() : ~uint64_t(0);
            h.update(&len, sizeof(len));
            h.update(s);
        };
        // tools enter by their own digest (cached per agent node), so a call's id is
        // H(model, messages, H(tools), response text, response tool calls)
        h.update("slmctl.call.v1");
        field(c.model, true);
        field(c.messages, true);
        field(tools_digest_, !c.tools.empty());
        field(c.response_text, c.has_response_text);
        field(c.response_tool_calls, !c.response_tool_calls.empty());
        c.content_id = h.hex();

        c.scrub_counts = scr.counts();
        c.scrubbed.clear();
        scr.counts_json(c.scrubbed);
        c.flags = "[";
        for (size_t i = 0; i < c.flag_list.size(); ++i) {
            if (i) c.flags.push_back(',');
            emit_plain(c.flag_list[i], c.flags);
        }
        c.flags.push_back(']');
    }

    // ---- records ------------------------------------------------------------------------------

    void quarantine(std::string_view raw, std::string_view file, int64_t line, std::string reason,
                    std::string detail, record_result& out) {
        quarantine_record q;
        q.source_file.assign(file);
        q.source_line = line;
        q.reason = std::move(reason);
        std::string_view body = raw;
        std::string note;
        if (body.size() > quarantine_raw_cap) {
            body = utf8_cut(body, quarantine_raw_cap);
            note = fmt::format(" [truncated: {} bytes in all]", raw.size());
        }
        scr.reset();
        if (valid_utf8(body) && std::memchr(body.data(), 0, body.size()) == nullptr) {
            scr.scrub(body, q.raw);
        } else {
            scr.scrub(escape_invalid_utf8(body), q.raw);
        }
        q.raw += note;
        scr.scrub(escape_invalid_utf8(detail), q.detail);
        q.raw_hash = blake2b_hex(q.raw);
        out.quarantined.push_back(std::move(q));
    }

    void record(const json::document& d, const node& root, std::string_view raw, std::string_view file,
                int64_t line, record_result& out) {
        if (root.k != kind::object) {
            quarantine(raw, file, line, "not_an_object", "a record must be a JSON object", out);
            return;
        }
        const node* rs = d.get(root, "resourceSpans");
        const node* req = d.get(root, "request");
        const node* resp = d.get(root, "response");
        const node* msgs = d.get(root, "messages");
        const std::string& forced = opt.format;
        if (rs) {
            if (forced != "auto" && forced != "otel") {
                quarantine(raw, file, line, "format_mismatch",
                           fmt::format("--format {} but the record holds OTLP resourceSpans", forced), out);
                return;
            }
            otel_record(d, *rs, file, line, out);
            return;
        }
        bool envelope = req || resp;
        bool finetune = !envelope && msgs;
        const bool sharegpt = !envelope && !finetune && d.get(root, "conversations");
        const bool alpaca = !envelope && !finetune && !sharegpt && d.get(root, "instruction");
        if (sharegpt || alpaca || forced == "sharegpt" || forced == "alpaca") {
            const char* looks = sharegpt ? "sharegpt" : alpaca ? "alpaca" : envelope ? "a {request, response} pair"
                                : finetune ? "finetune" : "none of the known forms";
            if (forced != "auto" && forced != looks) {
                quarantine(raw, file, line, "format_mismatch",
                           fmt::format("--format {} but the record looks like {}", forced, looks), out);
                return;
            }
            llamafactory_record(d, root, sharegpt ? record_format::sharegpt : record_format::alpaca, raw, file, line, out);
            return;
        }
        if (!envelope && !finetune) {
            if (forced == "otel")
                quarantine(raw, file, line, "format_mismatch", "--format otel but the record has no resourceSpans", out);
            else
                quarantine(raw, file, line, "unknown_format",
                           "expected {request, response}, {messages}, ShareGPT {conversations}, Alpaca {instruction, output}, "
                           "or OTLP {resourceSpans}", out);
            return;
        }
        record_format fmt;
        bool legacy = false;
        if (finetune) {
            legacy = d.get(root, "functions") || messages_legacy(d, msgs);
        } else if (req && req->k == kind::object) {
            legacy = d.get(*req, "functions") || d.get(*req, "function_call") || messages_legacy(d, d.get(*req, "messages"));
            const node* choices = resp ? obj_get(d, resp, "choices") : nullptr;
            if (!legacy && choices && choices->k == kind::array && choices->count > 0) {
                const node* m = obj_get(d, &d.at(d.first_child(*choices)), "message");
                legacy = m && message_is_legacy(d, *m);
            }
        }
        if (legacy) {
            fmt = record_format::legacy_functions;
        } else if (finetune) {
            fmt = record_format::finetune;
        } else {
            fmt = d.get(root, "workload_id") || d.get(root, "client_id") || d.get(root, "timestamp")
                      ? record_format::flywheel
                      : record_format::pair;
        }
        if (forced != "auto") {
            bool fits = forced == "legacy" || (forced == "finetune" ? finetune : (forced == "otel" ? false : envelope));
            if (!fits) {
                quarantine(raw, file, line, "format_mismatch",
                           fmt::format("--format {} but the record looks like {}", forced, format_name(fmt)), out);
                return;
            }
            fmt = forced == "legacy"     ? record_format::legacy_functions
                  : forced == "finetune" ? record_format::finetune
                  : forced == "flywheel" ? record_format::flywheel
                                         : record_format::pair;
        }
        call_record c;
        failure fail;
        if (normalize_openai(d, root, fmt, finetune, file, line, c, fail))
            out.calls.push_back(std::move(c));
        else
            quarantine(raw, file, line, fail.reason, fail.detail, out);
    }

    // ShareGPT / Alpaca: rewritten as fine-tuning-form records (one per assistant turn), each then
    // normalized like a {messages} record. A refused record is quarantined whole.
    void llamafactory_record(const json::document& d, const node& root, record_format fmt, std::string_view raw,
                             std::string_view file, int64_t line, record_result& out) {
        llamafactory_calls lf;
        bool ok = fmt == record_format::sharegpt ? sharegpt_to_records(d, root, lf) : alpaca_to_record(d, root, lf);
        if (!ok) {
            quarantine(raw, file, line, lf.reason, lf.detail, out);
            return;
        }
        const size_t first = out.calls.size();
        for (size_t k = 0; k < lf.records.size(); ++k) {
            call_record c;
            failure fail;
            if (!aux_doc.parse_owned(std::move(lf.records[k]))) {  // a bug: the records are written here
                fail = {"bad_field", fmt::format("internal: rewritten record is not JSON ({})", aux_doc.error().what)};
            } else if (normalize_openai(aux_doc, aux_doc.root(), fmt, true, file, line, c, fail)) {
                out.calls.push_back(std::move(c));
                continue;
            }
            out.calls.resize(first);  // never half a conversation
            quarantine(raw, file, line, fail.reason,
                       fmt == record_format::sharegpt ? fmt::format("conversations[{}]: {}", lf.turns[k], fail.detail)
                                                      : fail.detail,
                       out);
            return;
        }
    }

    void otel_record(const json::document& d, const node& rs, std::string_view file, int64_t line,
                     record_result& out) {
        if (rs.k != kind::array) {
            quarantine({rs.p, rs.n}, file, line, "bad_field", "resourceSpans is not an array", out);
            return;
        }
        std::string synth, why;
        d.elements(rs, [&](const node& r) {
            const node* res = obj_get(d, &r, "resource");
            const node* rattrs = obj_get(d, res, "attributes");
            const node* scopes = obj_get(d, &r, "scopeSpans");
            if (!scopes) scopes = obj_get(d, &r, "instrumentationLibrarySpans");
            if (!scopes || scopes->k != kind::array) return;
            d.elements(*scopes, [&](const node& sc) {
                const node* spans = obj_get(d, &sc, "spans");
                if (!spans || spans->k != kind::array) return;
                d.elements(*spans, [&](const node& span) {
                    std::string_view raw(span.p, span.n);
                    synth.clear();
                    why.clear();
                    span_verdict v = span.k == kind::object ? otel_span_to_record(d, span, rattrs, synth, why)
                                                            : span_verdict::broken;
                    if (v == span_verdict::not_a_call) {
                        ++out.skipped_spans;
                        return;
                    }
                    if (v == span_verdict::broken) {  // why = "<reason>: <detail>"
                        size_t colon = why.find(": ");
                        if (colon == std::string::npos)
                            quarantine(raw, file, line, "bad_field", why.empty() ? "span is not an object" : why, out);
                        else
                            quarantine(raw, file, line, why.substr(0, colon), why.substr(colon + 2), out);
                        return;
                    }
                    if (!aux_doc.parse_owned(std::move(synth))) {
                        quarantine(raw, file, line, "bad_field", "span content is not valid JSON", out);
                        return;
                    }
                    call_record c;
                    failure fail;
                    if (normalize_openai(aux_doc, aux_doc.root(), record_format::otel, false, file, line, c, fail))
                        out.calls.push_back(std::move(c));
                    else
                        quarantine(raw, file, line, fail.reason, "span: " + fail.detail, out);
                });
            });
        });
    }

    void process(std::string_view text, std::string_view file, int64_t line, record_result& out) {
        if (!doc.parse(text)) {
            const auto& e = doc.error();
            quarantine(text, file, line, e.bad_utf8 ? "invalid_utf8" : "invalid_json",
                       fmt::format("{} at byte {}{}", e.what, e.offset, e.at_end ? " (truncated?)" : ""), out);
            return;
        }
        record(doc, doc.root(), text, file, line, out);
    }
};

normalizer::normalizer(normalize_options o) : impl_(new impl(std::move(o))) {}
normalizer::~normalizer() { delete impl_; }

void normalizer::process(std::string_view text, std::string_view file, int64_t line, record_result& out) {
    impl_->process(text, file, line, out);
}

void normalizer::quarantine(std::string_view raw, std::string_view file, int64_t line, std::string reason,
                            std::string detail, record_result& out) {
    impl_->quarantine(raw, file, line, std::move(reason), std::move(detail), out);
}

}  // namespace slm::collector
