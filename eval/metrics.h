// The metric half of `slmctl eval`: how close an SLM's answer is to the logged LLM's, per response
// kind (tool calls, structured JSON, text), the intervals around the rates, the verdicts, and costs.
// Torch-free. The public header for eval/tool-check.cpp, json-schema.cpp, text-metrics.cpp,
// stats.cpp and prices.cpp.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/response-kind.h"
#include "model/chat-template.h"

namespace slm::eval {

// ==== tool calls (eval/tool-check.cpp) ======================================================
// In the manner of BFCL's AST checker (gorilla/berkeley-function-call-leaderboard), our own code.
// A generated call passes against a reference call (the logged LLM's) when, in this order:
//   1. the function names are equal (exactly)                                   else wrong_name
//   2. the generated arguments are a JSON object ("" counts as {})               else unparseable
//   3. with the function's JSON schema from the request's `tools`:
//      every argument is declared in `properties` (unless additionalProperties
//      is true or a schema)                                                      else unexpected_param
//      every `required` parameter is present                                     else missing_param
//      every value has the schema's type (string, integer, number, boolean,
//      array, object, null; a type list = any of them; an integer passes for
//      number; 3.0 passes for integer as in JSON Schema; nested items and
//      properties are checked too; BFCL's dict/float/tuple/any are read as
//      object/number/array/anything)                                             else wrong_type
//   4. against the reference's arguments, key by key:
//      a parameter the reference gave and the generated call omitted             missing_param
//      a parameter the generated call gave and the reference omitted (an
//      optional left out by the LLM), unless it equals the schema's `default`    unexpected_param
//      values: numbers by value (3 == 3.0), strings after normalisation
//      (normalize_tool_string), booleans and null exactly, arrays in order and
//      of equal length, objects key by key (a missing key missing_param, an
//      extra key unexpected_param); a JSON type that differs (string vs number)  wrong_type
//      otherwise                                                                 wrong_value
// Without a schema for the function (no `tools`, or the function is not in it), step 3 is skipped
// and step 4 alone decides; the result says so (`schema_missing`).
// Several calls (parallel calls): the counts must be equal (else wrong_count for the response);
// each reference call, in order, takes the first not yet taken generated call that passes, so the
// order of the generated calls does not matter. A reference call nothing passes for reports the
// failure against the first untaken generated call of the same name (wrong_name when there is none).
// Reference arguments that are not JSON (a broken log line) pass only for the same text.

/// Why a call failed; `none` when it passed.
enum class call_failure { none, wrong_name, wrong_count, missing_param, unexpected_param, wrong_type, wrong_value, unparseable };
/// "none", "wrong_name", "wrong_count", "missing_param", "unexpected_param", "wrong_type", "wrong_value", "unparseable".
const char* failure_name(call_failure f);

/// The outcome for one reference call.
struct call_check {
    std::string name;                           ///< the reference call's function name
    bool name_ok = false;                       ///< a generated call of that name was there to take
    bool args_ok = false;                       ///< a generated call passed (name and arguments)
    call_failure failure = call_failure::none;  ///< why not, when !args_ok
    std::string detail;                         ///< "'city': \"paris\" vs \"london\"" etc.
    bool schema_missing = false;                ///< no schema for this function: compared against the reference only
};

/// The outcome for one response (all its calls).
struct tool_check {
    bool name_ok = false;  ///< same number of calls and the same multiset of function names
    bool args_ok = false;  ///< same number of calls and every reference call passed
    call_failure failure = call_failure::none;  ///< the response's failure: wrong_count, else the first failed call's
    std::string detail;                         ///< the first failed call's detail (or the counts)
    bool schema_missing = false;                ///< some reference function had no schema in `tools`
    std::vector<call_check> calls;              ///< one per reference call, in reference order
};

/// Checks `generated` against `reference` (the logged LLM's calls). `tools_json` is the request's
/// OpenAI `tools` array ([{"type":"function","function":{"name","parameters"}}]; the legacy
/// `functions` form [{"name","parameters"}] is read too); empty, "null" or text that is not a JSON
/// array means no schemas (every call is then `schema_missing`). `parse_error`: the response
/// codec's error for the generated text (model::parsed_response::error when !ok): a malformed call
/// block makes the response fail as `unparseable` whatever the calls that did parse say.
tool_check check_tool_calls(const std::vector<model::tool_call>& generated,
                            const std::vector<model::tool_call>& reference, std::string_view tools_json,
                            std::string_view parse_error = {});

/// BFCL's string normalisation: ASCII lowercase, the characters ` ,./-_*^` removed, `'` -> `"`.
std::string normalize_tool_string(std::string_view s);

/// Running counts over many responses: function-name accuracy and name+args accuracy, failures.
struct tool_tally {
    int64_t responses = 0, name_ok = 0, args_ok = 0;
    std::map<call_failure, int64_t> failures;  ///< response-level failure kinds (none excluded)
    int64_t schema_missing = 0;                ///< responses compared without a schema
    void add(const tool_check& c);
    /// {"responses","name_accuracy","args_accuracy","failures":{kind:count},"schema_missing"}.
    nlohmann::ordered_json to_json() const;
};

// ==== structured output (eval/json-schema.cpp) =============================================
// A practical JSON Schema subset: type (incl. a list of types), properties, required,
// additionalProperties (false or a schema), items (one schema), enum, const, anyOf, oneOf, allOf,
// not, minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers), minItems, maxItems,
// uniqueItems, minLength, maxLength (in code points), pattern (ECMAScript, searched), and local
// $ref ("#/$defs/x", "#/definitions/x", "#"). Annotations (title, description, default,
// examples, $schema, $id, $comment, $defs, definitions, deprecated, readOnly, writeOnly) are
// skipped silently; any other keyword (format, prefixItems, patternProperties, if/then/else, ...)
// is ignored and counted in `unknown_keywords`.

struct schema_check {
    bool ok = true;
    std::string error;                       ///< first violation: "$.items[2].age: 150 > maximum 120"
    int unknown_keywords = 0;                ///< occurrences of keywords we do not check, in the schema
    std::vector<std::string> unknown_names;  ///< their names, sorted, once each
};

/// Validates `instance` against `schema` (a JSON object or a boolean schema).
schema_check validate_json_schema(const nlohmann::json& instance, const nlohmann::json& schema);

struct structured_check {
    bool json_ok = false;         ///< the text (trimmed; or the body of one ``` / ```json fence) is JSON
    bool fenced = false;          ///< it was inside a fence
    bool schema_checked = false;  ///< the request had a response_format JSON schema
    bool schema_ok = false;       ///< json_ok and it validates (false when !schema_checked)
    std::string detail;           ///< the parse error or the first schema violation
    int unknown_keywords = 0;     ///< see schema_check
};

/// `response_format_json`: the request's OpenAI response_format ({"type":"json_schema",
/// "json_schema":{"schema":{...}}}; {"type":"json_object"} or "text" or empty = no schema; any other
/// object is taken as the schema itself). user_error when it is not JSON or has no usable schema.
structured_check check_structured(std::string_view text, std::string_view response_format_json);

// ==== text (eval/text-metrics.cpp) =========================================================

/// Equal after trimming ASCII whitespace at both ends.
bool exact_match(std::string_view hyp, std::string_view ref);
/// ROUGE-L F1: LCS over word tokens (ASCII lowercased; tokens are runs of ASCII letters/digits
/// or of non-ASCII bytes, everything else separates). Both empty -> 1, one empty -> 0.
double rouge_l(std::string_view hyp, std::string_view ref);
/// chrF with sacrebleu's defaults (char order 6, word order 0, beta 2, whitespace removed), on
/// Unicode code points, in 0..1 (sacrebleu's value / 100): per n = 1..6 with both sides having
/// n-grams, precision and recall of the clipped n-gram matches; both averaged over those n; then
/// F_beta = (1+b^2) P R / (b^2 P + R). Both empty (after whitespace removal) -> 1 (sacrebleu says 0).
double chrf(std::string_view hyp, std::string_view ref);

/// A judge's score: raw as written, the scale it is out of, and raw / scale in 0..1.
struct judge_score {
    double raw = 0, scale = 0, normalized = 0;
};
/// Reads an LLM-as-judge reply: in order of preference the last "score|rating|grade: X" (with an
/// optional "/ S" or "out of S"), the last "X/S" or "X out of S", the last **X**, or a reply that is
/// just a number. `default_scale` applies when no "/S" is written. nullopt when there is no score,
/// or it lies outside 0..scale.
std::optional<judge_score> parse_judge_score(std::string_view reply, double default_scale = 10);

// ==== HTTP and the LLM judge (eval/http-client.cpp, eval/judge.cpp) =========================
// `eval --judge URL`: an OpenAI-compatible chat-completions server (a local llama.cpp server,
// llama-cpp-python's, vLLM, ...) grades prose answers against the logged one. Plain http:// only:
// there is no TLS in the stack, and an https URL is refused with that said.

/// http://HOST[:PORT][/PATH] (IPv6 as [::1]); user_error naming the URL for https, another scheme,
/// credentials in the URL, a bad port.
struct http_url {
    std::string host;
    int port = 80;
    std::string path = "/";  ///< with the query, if any
};
http_url parse_http_url(std::string_view url);

struct http_options {
    double connect_timeout_s = 5;    ///< to open the connection
    double timeout_s = 60;           ///< the whole exchange, connect included
    size_t max_body_bytes = 16 << 20;
};

struct http_response {
    int status = 0;                              ///< 200, 404, ...
    std::string reason;                          ///< "OK"
    std::map<std::string, std::string> headers;  ///< names lowercased (the last of repeated ones)
    std::string body;                            ///< de-chunked
    double seconds = 0;                          ///< wall time of the exchange
};

/// POSTs `body` over HTTP/1.1 (one connection, Connection: close) and reads the answer: a
/// Content-Length body, a chunked one (extensions and trailers skipped), or one read to the close;
/// 1xx answers are skipped. Any status is returned (the caller decides); user_error naming the URL
/// when it cannot resolve or connect, times out, or the peer answers something that is not HTTP
/// (a bad status line, header, chunk size, or a body cut short).
http_response http_post(std::string_view url, std::string_view body,
                        const std::vector<std::pair<std::string, std::string>>& headers = {},
                        const http_options& o = {});

/// Where and how to ask the judge.
struct judge_options {
    /// The server: http://HOST:PORT (POSTs to /v1/chat/completions), .../v1 (adds /chat/completions),
    /// or the full .../chat/completions path. "" = no judge.
    std::string url;
    std::string model = "judge";  ///< the request's "model" (llama.cpp's server answers with its one model)
    std::string key_env;          ///< environment variable holding a bearer key ("" = none sent)
    double timeout_s = 120;       ///< per judgement
    int max_tokens = 48;          ///< the judge's reply length
    double scale = 10;            ///< the scale the prompt asks for (and parse_judge_score assumes)
    nlohmann::json to_json() const;  ///< without the key
};

/// One judgement: the score when the reply had a readable one, else `error` says why.
struct judgement {
    std::optional<judge_score> score;
    bool answered = false;  ///< the server gave a chat completion (scored or not)
    std::string reply;      ///< the judge's text
    std::string error;  ///< "" when scored: the HTTP / body problem, or "no score in the reply"
    double seconds = 0;
};

/// The chat messages the judge gets for one answer (system: the rubric; user: request, reference
/// answer, candidate answer), as an OpenAI messages array.
nlohmann::json judge_messages(std::string_view request, std::string_view reference, std::string_view answer,
                              double scale = 10);

/// The assistant text of a chat.completions body (choices[0].message.content, or a legacy
/// choices[0].text); nullopt with `why` set when the body is not JSON or has no such text.
std::optional<std::string> completion_text(std::string_view body, std::string& why);

/// A judge over one server. Stateless between calls; one connection per judgement.
class judge_client {
public:
    /// user_error for a bad URL or a --judge-key variable that is not set.
    explicit judge_client(judge_options o);
    /// The chat-completions URL requests go to.
    const std::string& endpoint() const { return endpoint_; }
    const judge_options& options() const { return o_; }
    /// Grades `answer` against `reference` for `request`. Never throws for the server's failures
    /// (unreachable, HTTP errors, garbage, no score): they come back in judgement::error.
    judgement judge(std::string_view request, std::string_view reference, std::string_view answer) const;
    /// Before a run: one judgement of a trivial case; user_error naming the URL when the server is
    /// unreachable or does not answer like a chat-completions endpoint (a reply without a score only
    /// warns: a small judge may need a few tries to follow the format).
    void check() const;

private:
    judge_options o_;
    std::string endpoint_;
    std::string key_;
};

// ==== intervals and verdicts (eval/stats.cpp) ==============================================

/// A point estimate with a 95% interval.
struct interval {
    double value = 0, lo = 0, hi = 0;
};
inline constexpr double z95 = 1.959964;  ///< two-sided 95% normal quantile

/// Wilson score interval for `successes` of `n` (95%); n == 0 -> {0, 0, 1}.
interval wilson(int64_t successes, int64_t n);
/// Mean of `xs` with a percentile bootstrap interval (2.5% / 97.5%, linear interpolation between
/// order statistics): `resamples` resamples of size n with replacement from our own xoshiro256**
/// generator seeded by splitmix64(seed), so the result is the same on every platform. xs must not
/// be empty.
interval bootstrap_mean(std::span<const double> xs, int resamples = 1000, uint64_t seed = 0);

/// Thresholds on a metric's lower bound per response kind, and the least number of evaluated calls.
struct verdict_params {
    double tool_call = 0.90;  ///< tool calls: name+args accuracy (Wilson lower bound)
    double json = 0.95;       ///< JSON: schema validity when there is a schema, else JSON validity (Wilson)
    double code = 0.70;       ///< code: chrF (bootstrap lower bound); code needs closer wording than prose
    double prose = 0.60;      ///< prose: chrF (bootstrap lower bound)
    double empty = 0.95;      ///< empty responses: exact-match rate (Wilson)
    double judge = 0.80;      ///< any kind scored by an LLM judge: mean normalised score (bootstrap)
    int64_t min_calls = 10;   ///< fewer evaluated calls than this: never replaceable
    /// The threshold for `kind` (or the judge's when `judged`).
    double threshold(response_kind kind, bool judged = false) const;
};

/// What a cluster's verdict is computed from.
struct metric_summary {
    response_kind kind = response_kind::prose;
    std::string metric;  ///< "name+args accuracy", "chrF", ... (for the reason text)
    interval iv;
    int64_t n = 0;       ///< evaluated calls
    bool judged = false; ///< the metric is an LLM judge's score
};

struct verdict {
    bool replaceable = false;
    std::string reason;  ///< "chrF 0.71 [0.64, 0.77] over 40 calls: lower bound 0.64 >= 0.60"
};
/// Replaceable when n >= min_calls and iv.lo >= the kind's threshold.
verdict decide(const metric_summary& m, const verdict_params& p = {});

/// One cluster for the volume-weighted share.
struct cluster_outcome {
    double volume = 0;           ///< the cluster's calls in the logs (or its tokens): its weight
    std::vector<double> scores;  ///< per evaluated call: 0/1 for rates, 0..1 for means
};
/// The verdict rule applied to a cluster's scores (the point estimate and every replicate alike).
using verdict_rule = std::function<bool(std::span<const double> scores)>;
/// The rule `decide` applies: rates (binary scores) use wilson(), means bootstrap_mean() with
/// `inner_resamples`; replaceable when there are >= min_calls scores and the lower bound >= threshold.
verdict_rule make_verdict_rule(double threshold, bool binary, int64_t min_calls, int inner_resamples = 200);

/// Share of volume in replaceable clusters: sum(volume of replaceable) / sum(volume).
/// The interval is a stratified bootstrap over calls within clusters: each of `resamples`
/// replicates redraws every cluster's scores (same size), re-applies `rule` to each cluster, and
/// recomputes the share with the volumes held fixed (they are counts of the whole log, not a
/// sample); the interval is the 2.5% / 97.5% percentiles of the replicate shares. Continuous
/// scores are resampled with replacement; binary ones (all 0/1) are drawn as n Bernoulli(p) with
/// p from the Jeffreys posterior Beta(k + 1/2, n - k + 1/2), so that 10/10 right does not give a
/// zero-width interval (a plain resample of all-ones is all-ones in every replicate).
/// Why not Wilson on calls: a cluster's verdict is one decision about all its calls, so the calls in
/// replaceable clusters are not independent successes; the uncertainty is in each cluster's
/// verdict, which is what the replicates vary. `rules` has one entry per cluster (kinds differ).
/// Deterministic for a given seed. Total volume 0 -> {0, 0, 0}.
interval replaceable_share(const std::vector<cluster_outcome>& clusters, const std::vector<verdict_rule>& rules,
                           int resamples = 1000, uint64_t seed = 0);

// ==== prices (eval/prices.cpp, defaults in eval/prices.json) ===============================

/// List price per 1M tokens, USD.
struct model_price {
    std::string model;        ///< "gpt-4o" (matches "gpt-4o-2024-08-06" by prefix, see find)
    double input_per_m = 0;   ///< USD per 1M input (prompt) tokens
    double output_per_m = 0;  ///< USD per 1M output (completion) tokens
    std::string source;       ///< URL, or the derivation of an assumption
    std::string as_of;        ///< "2025-06-01"
    bool assumption = false;  ///< not a published price (the self-hosted SLM's)
};

struct price_table {
    std::vector<model_price> models;  ///< in file order
    std::string slm = "slm-self-hosted";  ///< the entry used for the SLM side
    /// Exact name, else the longest entry that is a prefix of `model` followed by '-', '@', ':'
    /// or the end; a "provider/" prefix is dropped first. nullptr when none.
    const model_price* find(std::string_view model) const;
    /// {"slm": ..., "models": {name: {input, output, source, as_of, assumption}}} (load_prices' format).
    nlohmann::ordered_json to_json() const;
};

/// The built-in defaults (the same table as eval/prices.json; a test keeps them equal).
price_table default_prices();
/// The defaults overlaid by the file at `path` (same format as eval/prices.json; entries replace
/// or add by name, "slm" picks the SLM entry). user_error naming the file and the field on bad input.
price_table load_prices(const std::string& path);
/// Parses a price table from JSON text; `origin` names it in errors.
price_table parse_prices(std::string_view json_text, const std::string& origin);

struct cost_estimate {
    double llm_usd = 0, slm_usd = 0;
    double saving_usd = 0;    ///< llm_usd - slm_usd
    double saving_share = 0;  ///< saving_usd / llm_usd (0 when llm_usd is 0)
};
/// Cost of `input_tokens` + `output_tokens` at both prices.
cost_estimate cost_saving(const model_price& llm, const model_price& slm, int64_t input_tokens, int64_t output_tokens);

}  // namespace slm::eval
