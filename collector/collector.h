// S1+S2, `slmctl collect`: read agent call logs (JSONL files, directories, .gz, stdin), normalize each
// call, scrub PII and secrets, validate, dedupe and store it. The only public header of slm_collector.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace slm::store {
class db;
}

namespace slm::collector {

// ---- parameters and summary -------------------------------------------------------------------

/// `slmctl collect` parameters; stored (resolved) as the run's params JSON.
struct collect_params {
    std::vector<std::string> paths;  ///< files, directories (recursive, sorted), .gz files, or "-" for stdin
    std::string format = "auto";     ///< auto|flywheel|pair|finetune|legacy|otel|sharegpt|alpaca (auto: per record)
    std::string workload;            ///< when set, the workload_id (agent node) of every call
    std::string client;              ///< when set, the client_id of every call
    bool scrub = true;               ///< scrub PII and secrets before storing (off only when asked for)
    bool strict = false;             ///< the command fails (exit 1) when anything was quarantined
    int batch = 20000;               ///< input lines per transaction (also committed every 2 s)
    int threads = 1;                 ///< 1: all on the calling thread; N: N-1 read and normalize, the caller writes
    int64_t max_line_bytes = 64 << 20;  ///< longer lines are quarantined (line_too_long), not loaded
};
nlohmann::json to_json(const collect_params& p);

/// What a collect run did. Counts are for this run; `duplicate` includes calls stored by earlier runs.
struct collect_summary {
    int64_t run_id = 0;
    std::string status = "ok";     ///< ok | interrupted | failed
    int64_t files = 0;
    int64_t bytes = 0;             ///< input bytes read (compressed bytes for .gz)
    int64_t lines = 0;             ///< input lines (records) read, blank lines included
    int64_t blank = 0;             ///< empty lines, skipped
    int64_t calls = 0;             ///< normalized calls (ingested + duplicate)
    int64_t ingested = 0;          ///< new rows in `calls`
    int64_t duplicate = 0;         ///< calls whose content id was already stored
    int64_t quarantined = 0;       ///< records that could not be parsed or normalized
    int64_t quarantine_new = 0;    ///< of those, rows new to `quarantine` (a re-run adds none)
    int64_t skipped_spans = 0;     ///< OTLP spans that are not GenAI inference calls
    int64_t flagged = 0;           ///< stored calls carrying at least one validation flag
    std::map<std::string, int64_t> quarantined_by_reason;
    std::map<std::string, int64_t> scrubbed_by_kind;  ///< placeholders written, over ingested calls
    std::map<std::string, int64_t> flags;             ///< flag -> ingested calls carrying it
    std::map<std::string, int64_t> by_format;         ///< format -> calls normalized
    double seconds = 0;
};
nlohmann::json to_json(const collect_summary& s);

/// Reads every input of `p` into `d` (migrated, read-write): a `runs` row (running -> ok /
/// interrupted / failed), batched transactions, INSERT OR IGNORE on content id, quarantine rows.
/// SIGINT/SIGTERM during the run commit the current batch and return status "interrupted".
/// Throws user_error for a missing path, a bad --format, unreadable or corrupt input.
collect_summary collect(store::db& d, const collect_params& p);

// ---- normalized records -----------------------------------------------------------------------

/// Kinds of scrubbed values; a value of kind K becomes <LABEL_n>, n counting distinct values of
/// that kind within one call.
enum class pii : uint8_t {
    email, phone, card, ssn, ipv4, ipv6, iban, api_key, aws_key, github_token, slack_token, jwt,
    private_key, secret, address,
};
constexpr int pii_kind_count = 15;
struct pii_kind_info {
    const char* name;   ///< summary / `scrubbed` column key: "email"
    const char* label;  ///< placeholder label: "EMAIL" -> <EMAIL_1>
};
const pii_kind_info& kind_info(pii k);


/// Input: JSONL (one record per line) or JSON documents (a file whose first content is '[' or a
/// line holding only '{'): top-level values in a row, a top-level array giving one record per
/// element, streamed (one record in memory at a time, so arrays of any size); source_line is the
/// line where the record starts.
///
/// Record forms, detected per record (or forced with --format; a record of another form is then
/// quarantined format_mismatch):
///   flywheel  {timestamp?, workload_id?, client_id?, request, response, latency_ms?}
///   pair      {request, response}: an OpenAI chat request and its chat.completion
///   finetune  {messages: [..., assistant]}, optional tools
///   legacy    any of those with OpenAI's older functions / function_call
///   otel      OTLP/JSON {resourceSpans}: GenAI inference spans
///   sharegpt  LLaMA-Factory ShareGPT {conversations: [{from, value}], system?, tools?} with the
///             default tags human, gpt, function_call, observation, system. Each gpt / function_call
///             turn is one call: its request is every turn before it (system from `system` or system
///             turns, human -> user, gpt -> assistant, function_call -> assistant tool_calls with
///             ids call_1, call_2... counted over the record, observation -> tool answering the
///             previous function_call), tools in OpenAI form (a JSON string or an array; bare
///             function objects wrapped), its response the turn's text or tool calls. All calls of
///             a record share its source_line; the k-th turn is the one after the request's
///             messages. One bad turn (unknown tag, function_call value that is not JSON,
///             observation with no function_call before it, a first turn that is not human or
///             system) or tools that are not JSON quarantine the whole record (bad_field, the
///             detail naming conversations[i] and its turn): no conversation is stored in part.
///   alpaca    LLaMA-Factory Alpaca {instruction, input?, output, system?, history?: [[q, a]...]}:
///             one call, messages system?, history as user/assistant pairs, user "instruction\ninput"
///             (the instruction alone when input is empty), response the output.
/// sharegpt and alpaca carry no workload id: it stays empty (as for finetune: clustering lets such
/// calls join any node's cluster) unless --workload sets it.
///
/// Stored `calls.format` values.
enum class record_format : uint8_t { flywheel, pair, finetune, legacy_functions, otel, sharegpt, alpaca };
const char* format_name(record_format f);

/// One normalized, scrubbed call: a `calls` row (JSON columns already serialized).
///
/// messages: JSON array of request messages, each {"role", "content" (string, null, or an array of
///   parts when not text-only), "name"?, "tool_calls"? [{"id"?, "type":"function", "function":
///   {"name", "arguments" (string: canonical compact JSON when it parsed)}}], "tool_call_id"?}.
///   Legacy `function_call` becomes `tool_calls`, role `function` becomes role `tool` with a name.
/// tools: JSON array of {"type":"function","function":{name, description, parameters}} (legacy
///   `functions` wrapped the same way), or empty when none were offered.
/// response_tool_calls: JSON array of {"name", "arguments": parsed JSON (the raw string when it does
///   not parse, flagged tool_args_not_json)}, or empty.
///
/// task_text, what clustering embeds (the system prompt is left out: every call of an agent node
/// shares it, so it says nothing about the task):
///   line 1..: the text of the last user turn (its text parts joined by "\n"), at most 2000 bytes
///   "tools: a, b, c"            names of the tools offered, in order (omitted when none)
///   "after: tool_result NAME"   when the request ends with a tool result (NAME of the tool, or "?")
///   "response: SHAPE"           tool_call:NAME[+NAME...] | json | code | prose | empty
///   SHAPE is json when the response text is a JSON object/array (bare or in one ```json fence),
///   code when it holds a ``` fence or starts like code, else prose.
struct call_record {
    std::string content_id;         ///< BLAKE2b-256 hex of model, messages, H(tools), response (all scrubbed)
    std::string response_id;        ///< chat.completion id ("" when absent)
    std::string source_file;
    int64_t source_line = 0;
    record_format format = record_format::pair;
    std::string workload_id, client_id, timestamp, model;  ///< "" when absent
    std::string messages;
    std::string tools;              ///< "" when no tools were offered
    /// The request's response_format object (keys sorted, strings scrubbed), "" when absent, null or
    /// {"type":"text"}. Not part of the content id (ids stay those of earlier versions).
    std::string response_format;
    std::string response_text;
    bool has_response_text = false;
    std::string response_tool_calls;  ///< "" when none
    std::string finish_reason;
    std::optional<double> latency_ms;
    std::optional<int64_t> prompt_tokens, completion_tokens;
    std::string task_text;
    std::string scrubbed = "{}";    ///< placeholder counts per kind (JSON object)
    std::string flags = "[]";       ///< validation flags (JSON array of strings)
    std::array<uint32_t, pii_kind_count> scrub_counts{};  ///< placeholders written, per kind
    std::vector<std::string> flag_list;                  ///< the flags, unserialized
};

/// A record that could not be parsed or normalized.
struct quarantine_record {
    std::string source_file;
    int64_t source_line = 0;
    std::string reason;    ///< invalid_json, invalid_utf8, not_an_object, unknown_format, format_mismatch,
                           ///< no_request, no_messages, bad_field, no_response, error_response, line_too_long
    std::string detail;    ///< what was expected and found
    std::string raw;       ///< the scrubbed raw text, invalid UTF-8 escaped as \xNN
    std::string raw_hash;  ///< BLAKE2b-256 hex of `raw`
};

/// Everything one input record produced (an OTLP line may hold several calls).
///
/// Validation flags on stored calls (`calls.flags`): tool_args_not_json, tool_args_empty,
/// tool_args_not_string, tool_call_no_name, empty_response, refusal, multiple_choices, truncated
/// (finish_reason length), unknown_role, latency_not_number, timestamp_not_iso (converted).
struct record_result {
    std::vector<call_record> calls;
    std::vector<quarantine_record> quarantined;
    int64_t skipped_spans = 0;
    void clear() {
        calls.clear();
        quarantined.clear();
        skipped_spans = 0;
    }
};

/// Options of the normalizer (a subset of collect_params).
struct normalize_options {
    std::string format = "auto";  ///< auto|flywheel|pair|finetune|legacy|otel|sharegpt|alpaca
    std::string workload;         ///< overrides workload_id when set
    std::string client;           ///< overrides client_id when set
    bool scrub = true;
};

class scrubber;

/// Turns one input record (a JSON text) into calls or quarantine rows. Not thread-safe: one per thread.
class normalizer {
public:
    explicit normalizer(normalize_options o);
    ~normalizer();
    normalizer(const normalizer&) = delete;
    normalizer& operator=(const normalizer&) = delete;
    /// Appends to `out` what the record `text` at `file`:`line` yields.
    void process(std::string_view text, std::string_view file, int64_t line, record_result& out);
    /// Quarantines `raw` (scrubbed, invalid UTF-8 escaped) with a reason; used by the reader too.
    void quarantine(std::string_view raw, std::string_view file, int64_t line, std::string reason,
                    std::string detail, record_result& out);

    struct impl;

private:
    impl* impl_;
};

// ---- scrubbing --------------------------------------------------------------------------------

/// Finds and replaces PII and secrets in text, placeholders consistent within one call.
///
/// email (local@domain.tld); phone (+CC international, (415) 555-2671, NANP and 3+ digit-group
/// national forms with 10-11 digits); card (13-19 digits, optional space/dash groups, Luhn and an
/// issuer prefix); ssn (ddd-dd-dddd, valid area/group/serial); ipv4; ipv6 (full or :: compressed);
/// iban (country length, mod-97); api_key (OpenAI/Anthropic sk-..., Google AIza...); aws_key
/// (AKIA/ASIA... + 16); github_token (ghp_/gho_/ghu_/ghs_/ghr_, github_pat_); slack_token
/// (xox[abpr]-); jwt (eyJ...x.y.z); private_key (PEM block); secret (the value after a
/// password/secret/api_key/token-like key with = or :, "Bearer <token>", user:PASSWORD@ in URLs);
/// address (number + capitalised words + street suffix, with unit and "City, ST 12345").
class scrubber {
public:
    explicit scrubber(bool enabled = true);
    /// Starts a new call: forgets placeholders and counts.
    void reset();
    /// Appends `text` to `out` with every detected value replaced; returns the replacements made.
    size_t scrub(std::string_view text, std::string& out);
    /// Appends a secret placeholder for `value` (the value of a secret-naming JSON key) unless it
    /// is trivial (empty, null, a placeholder...); false when nothing was appended.
    bool scrub_secret_value(std::string_view value, std::string& out);
    /// Whether a key names a credential: password, passwd, secret, api_key, access_token, *_token...
    static bool is_secret_key(std::string_view key);

    bool enabled() const { return enabled_; }
    const std::array<uint32_t, pii_kind_count>& counts() const { return counts_; }
    uint32_t total() const;
    /// {"email":2,...}: kinds with a non-zero count.
    void counts_json(std::string& out) const;

private:
    void placeholder(pii kind, std::string_view identity, std::string& out);
    bool enabled_;
    std::array<uint32_t, pii_kind_count> counts_{};
    std::array<uint32_t, pii_kind_count> next_{};
    std::unordered_map<std::string, uint32_t> seen_;
    std::string key_;
};

// ---- hashing ----------------------------------------------------------------------------------

/// Incremental BLAKE2b (RFC 7693).
class hasher {
public:
    explicit hasher(size_t digest_bytes = 32);
    void update(const void* data, size_t n);
    void update(std::string_view s) { update(s.data(), s.size()); }
    /// Finalizes; lowercase hex of the digest.
    std::string hex();

private:
    void compress(const uint8_t* block, bool last);
    uint64_t h_[8];
    uint64_t t_[2] = {0, 0};
    uint8_t buf_[128];
    size_t buflen_ = 0;
    size_t outlen_;
};
std::string blake2b_hex(std::string_view data, size_t digest_bytes = 32);

// ---- small helpers (exposed for tests) -------------------------------------------------------

/// `raw` with every invalid UTF-8 byte (and NUL) written as the text \xNN.
std::string escape_invalid_utf8(std::string_view raw);
/// Seconds since the Unix epoch as ISO-8601 UTC with milliseconds.
std::string epoch_to_iso(double seconds);

}  // namespace slm::collector
