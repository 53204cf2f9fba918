// Scoring one generated answer against the logged one, and batched greedy replay of calls through
// a loaded model (what eval's variants and select's probe run).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <numeric>
#include <optional>

#include <fmt/format.h>

#include "common/common.h"
#include "eval/eval.h"
#include "model/chat-template.h"
#include "model/conversation.h"
#include "model/model.h"
#include "model/prefix.h"
#include "model/response-codec.h"

namespace slm::eval {

const char* main_metric(response_kind kind) {
    switch (kind) {
        case response_kind::tool_call: return "name+args accuracy";
        case response_kind::json: return "JSON validity";  // "schema validity" with schemas: json_metric()
        case response_kind::code:
        case response_kind::prose: return "chrF";
        case response_kind::empty: return "exact match";
    }
    return "?";
}

std::string json_metric(int64_t with_schema, int64_t calls) {
    if (with_schema == 0) return "JSON validity";
    if (with_schema >= calls) return "schema validity";
    return "schema validity (JSON validity without a schema)";
}

bool binary_metric(response_kind kind) { return kind != response_kind::code && kind != response_kind::prose; }

namespace {

// The logged answer's tool calls ([{name, arguments}] with arguments parsed JSON, as the store keeps them).
std::vector<model::tool_call> reference_calls(const store::call_row& c) {
    std::vector<model::tool_call> out;
    if (c.response_tool_calls.empty()) return out;
    auto j = nlohmann::json::parse(c.response_tool_calls, nullptr, false);
    if (!j.is_array()) return out;
    for (const auto& t : j) {
        if (!t.is_object()) continue;
        model::tool_call tc;
        tc.name = t.value("name", "");
        if (t.contains("arguments")) {
            const auto& a = t["arguments"];
            tc.arguments = a.is_string() ? model::canonical_json(a.get<std::string>()) : model::canonical_json(a.dump());
        } else {
            tc.arguments = "{}";
        }
        out.push_back(std::move(tc));
    }
    return out;
}

}  // namespace

call_score score_answer(const store::call_row& c, const model::response_codec& codec, std::string_view generated,
                        const verdict_params& p) {
    call_score s;
    s.call_id = c.id;
    const std::string ref_text = c.response_text.value_or("");
    s.kind = classify_response(ref_text, c.response_tool_calls);
    auto parsed = codec.parse(generated);
    s.parsed = parsed.ok;
    auto& d = s.details;
    if (!parsed.ok) d["parse_error"] = parsed.error;
    d["generated_calls"] = parsed.tool_calls.size();
    switch (s.kind) {
        case response_kind::tool_call: {
            auto ref = reference_calls(c);
            auto chk = check_tool_calls(parsed.tool_calls, ref, c.tools, parsed.ok ? std::string_view{} : parsed.error);
            s.score = chk.args_ok ? 1 : 0;
            s.passed = chk.args_ok;
            d["name_ok"] = chk.name_ok;
            d["args_ok"] = chk.args_ok;
            d["failure"] = failure_name(chk.failure);
            if (!chk.detail.empty()) d["detail"] = chk.detail;
            if (chk.schema_missing) d["schema_missing"] = true;
            d["reference_calls"] = ref.size();
            break;
        }
        case response_kind::json: {
            // the request's response_format schema, when it had one, decides; else JSON validity
            structured_check chk;
            try {
                chk = check_structured(parsed.text, c.response_format);
            } catch (const user_error& e) {  // a logged response_format we cannot read: validity only
                chk = check_structured(parsed.text, "");
                d["response_format_error"] = e.what();
            }
            const bool ok = chk.schema_checked ? chk.schema_ok : chk.json_ok;
            s.score = ok ? 1 : 0;
            s.passed = ok;
            d["json_ok"] = chk.json_ok;
            d["schema_checked"] = chk.schema_checked;
            if (chk.schema_checked) {
                d["schema_ok"] = chk.schema_ok;
                // whether the logged LLM answer itself met the schema (a reference that does not is
                // worth knowing when the SLM "fails" the same way)
                try {
                    d["reference_schema_ok"] = check_structured(ref_text, c.response_format).schema_ok;
                } catch (const user_error&) {
                }
            }
            if (chk.unknown_keywords) d["schema_unknown_keywords"] = chk.unknown_keywords;
            if (!chk.detail.empty()) d["detail"] = chk.detail;
            break;
        }
        case response_kind::code:
        case response_kind::prose: {
            s.score = chrf(parsed.text, ref_text);
            s.passed = s.score >= p.threshold(s.kind);
            break;
        }
        case response_kind::empty: {
            bool ok = parsed.tool_calls.empty() && exact_match(parsed.text, "");
            s.score = ok ? 1 : 0;
            s.passed = ok;
            break;
        }
    }
    if (s.kind != response_kind::tool_call) {
        d["exact"] = exact_match(parsed.text, ref_text);
        d["rouge_l"] = rouge_l(parsed.text, ref_text);
        d["chrf"] = s.kind == response_kind::prose || s.kind == response_kind::code ? s.score : chrf(parsed.text, ref_text);
    }
    return s;
}

// ---- in-context examples -------------------------------------------------------------------------

namespace {

// What an example shows of its request: the last user message and, when the call answers tool
// results, those results (cut; the example is a hint, not a transcript).
std::string example_request(const model::conversation& c) {
    size_t last_user = c.messages.size();
    for (size_t i = c.messages.size(); i-- > 0;)
        if (c.messages[i].role == "user") {
            last_user = i;
            break;
        }
    std::string out;
    if (last_user < c.messages.size()) out = c.messages[last_user].content;
    for (size_t i = last_user == c.messages.size() ? 0 : last_user + 1; i < c.messages.size(); ++i) {
        const auto& m = c.messages[i];
        if (m.role == "tool") {
            std::string r = m.content.size() > 400 ? m.content.substr(0, 400) + "..." : m.content;
            out += fmt::format("\n[tool result{}]: {}", m.name.empty() ? "" : " of " + m.name, r);
        } else if (m.role == "assistant" && !m.tool_calls.empty()) {
            for (const auto& t : m.tool_calls) out += fmt::format("\n[called {}({})]", t.name, t.arguments);
        }
    }
    return out;
}

model::conversation to_conversation(const store::call_row& c) {
    model::logged_call lc;
    lc.messages_json = c.messages;
    lc.tools_json = c.tools;
    if (c.response_text) lc.response_text = *c.response_text;
    lc.response_tool_calls_json = c.response_tool_calls;
    return model::conversation_from_call(lc);
}

}  // namespace

std::string icl_system_prompt(const std::string& original_system, const std::vector<const store::call_row*>& examples,
                              const model::response_codec& codec) {
    std::string out = original_system;
    if (examples.empty()) return out;
    if (!out.empty()) out += "\n\n";
    out += examples.size() == 1 ? "Here is an example of a request and the expected answer:"
                                : "Here are examples of requests and the expected answers:";
    int n = 0;
    for (const auto* e : examples) {
        auto conv = to_conversation(*e);
        out += fmt::format("\n\n### Example {}\nRequest: {}\nAnswer:\n{}", ++n, example_request(conv),
                           codec.render(conv.response));
    }
    return out;
}

// ---- replay ---------------------------------------------------------------------------------------

namespace {

struct prepared {
    std::vector<int32_t> prompt;
    int64_t ref_tokens = 0;
    int cut_turns = 0, examples = 0;
};

// Encodes one item's prompt within the budget: examples dropped from the last while it does not
// fit; without examples a prompt that still does not fit is skipped.
std::optional<prepared> prepare(const model::language_model& lm, const model::response_codec& codec,
                                const replay_item& it, const replay_options& o, std::string& why) {
    model::conversation conv;
    try {
        conv = to_conversation(*it.call);
    } catch (const user_error& e) {
        why = fmt::format("stored call cannot be read: {}", e.what());
        return std::nullopt;
    }
    prepared p;
    try {
        p.ref_tokens = static_cast<int64_t>(lm.encode(codec.target(conv.response), false, true).size());
    } catch (const user_error&) {
        p.ref_tokens = it.call->completion_tokens.value_or(64);
    }
    model::encode_options eo;
    eo.max_tokens = std::min<int64_t>(o.max_prompt_tokens, lm.info().context_length);
    eo.with_target = false;
    std::string original_system;
    bool has_system = !conv.messages.empty() && conv.messages.front().role == "system";
    if (has_system) original_system = conv.messages.front().content;
    for (size_t k = it.examples.size() + 1; k-- > 0;) {
        auto c = conv;
        if (k > 0) {
            std::vector<const store::call_row*> ex(it.examples.begin(), it.examples.begin() + k);
            std::string sys;
            try {
                sys = icl_system_prompt(original_system, ex, codec);
            } catch (const user_error&) {
                continue;  // an example this format cannot express: try with fewer
            }
            if (has_system)
                c.messages.front().content = sys;
            else
                c.messages.insert(c.messages.begin(), model::chat_message("system", sys));
        }
        model::encoded_example e;
        try {
            e = model::encode_conversation(lm.tok(), lm.chat(), c, eo);
        } catch (const user_error& err) {
            why = fmt::format("{}'s chat template cannot express this call: {}", lm.info().name, err.what());
            return std::nullopt;
        }
        if (!e.fits || (k > 0 && e.cut_turns > 0)) continue;  // examples never push out the call's own history
        p.prompt = std::move(e.ids);
        p.cut_turns = e.cut_turns;
        p.examples = static_cast<int>(k);
        return p;
    }
    why = fmt::format("prompt longer than {} tokens even without history", eo.max_tokens);
    return std::nullopt;
}

}  // namespace

void replay_stats::add(const replay_stats& o) {
    calls += o.calls;
    prompt_tokens += o.prompt_tokens;
    prefill_tokens += o.prefill_tokens;
    cached_tokens += o.cached_tokens;
    prefill_pad += o.prefill_pad;
    generated_tokens += o.generated_tokens;
    prefill_s += o.prefill_s;
    decode_s += o.decode_s;
}

nlohmann::ordered_json replay_stats::to_json() const {
    auto share = [](int64_t a, int64_t b) { return b > 0 ? double(a) / double(b) : 0.0; };
    return {{"calls", calls},
            {"prompt_tokens", prompt_tokens},
            {"prefill_tokens", prefill_tokens},
            {"cached_tokens", cached_tokens},
            {"prefill_pad", prefill_pad},
            {"generated_tokens", generated_tokens},
            {"per_call_tokens", per_call_tokens()},
            {"processed_tokens", processed_tokens()},
            {"processed_share", share(processed_tokens(), per_call_tokens())},
            {"prefill_share", share(prefill_tokens, prompt_tokens)},
            {"prefill_s", prefill_s},
            {"decode_s", decode_s}};
}

std::vector<replay_result> replay(const model::language_model& lm, const std::vector<replay_item>& items,
                                  const replay_options& o, const replay_progress& progress, replay_stats* stats) {
    if (!lm.has_chat_template())
        throw user_error(fmt::format("{} has no chat template: eval renders the logged calls as chats", lm.info().path),
                         "use an instruct model (GGUF with tokenizer.chat_template, or an HF dir with tokenizer_config.json)");
    if (o.batch_size < 1) throw user_error("--batch-size must be at least 1");
    const auto codec = model::response_codec::for_format(lm.chat().format());
    std::vector<replay_result> out(items.size());
    std::vector<prepared> prep(items.size());
    std::vector<size_t> order;
    for (size_t i = 0; i < items.size(); ++i) {
        out[i].s.call_id = items[i].call->id;
        std::string why;
        auto p = prepare(lm, codec, items[i], o, why);
        if (!p) {
            out[i].skipped = true;
            out[i].skip_reason = why;
            out[i].s.kind = classify_response(items[i].call->response_text.value_or(""), items[i].call->response_tool_calls);
            continue;
        }
        prep[i] = std::move(*p);
        order.push_back(i);
    }
    // batches of similar prompt length: left padding costs prefill work on every padded position
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return prep[a].prompt.size() < prep[b].prompt.size(); });
    std::optional<model::prefix_cache> own;
    model::prefix_cache* prefixes = nullptr;
    if (o.prefix.enabled) prefixes = o.prefix_cache ? o.prefix_cache : &own.emplace(o.prefix);
    int64_t done = static_cast<int64_t>(items.size() - order.size());
    if (progress) progress(done, static_cast<int64_t>(items.size()));
    for (size_t b = 0; b < order.size(); b += static_cast<size_t>(o.batch_size)) {
        const size_t e = std::min(order.size(), b + static_cast<size_t>(o.batch_size));
        std::vector<std::vector<int32_t>> prompts;
        int64_t longest_ref = 0;
        for (size_t j = b; j < e; ++j) {
            prompts.push_back(prep[order[j]].prompt);
            longest_ref = std::max(longest_ref, prep[order[j]].ref_tokens);
        }
        model::text_params tp;
        tp.sampling.temperature = 0;
        tp.sampling.max_tokens = o.max_new_tokens;
        if (o.cap_by_reference)
            tp.sampling.max_tokens = static_cast<int>(
                std::min<int64_t>(o.max_new_tokens, static_cast<int64_t>(std::ceil(1.5 * longest_ref)) + 16));
        tp.stop = lm.chat().stop_strings();
        tp.prefixes = prefixes;
        model::generate_stats st;
        const auto t0 = std::chrono::steady_clock::now();
        auto gens = lm.generate_ids(prompts, tp, &st);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (stats) {
            replay_stats b;
            b.calls = static_cast<int64_t>(prompts.size());
            for (const auto& p : prompts) b.prompt_tokens += static_cast<int64_t>(p.size());
            b.prefill_tokens = st.prefill_tokens;
            b.cached_tokens = st.cached_tokens;
            b.prefill_pad = st.prefill_pad;
            b.generated_tokens = st.generated_tokens;
            b.prefill_s = st.prefill_s;
            b.decode_s = st.decode_s;
            stats->add(b);
        }
        if (!o.dump_prompts.empty()) {
            int64_t gen_tokens = 0;
            std::vector<int32_t> first;
            for (const auto& g : gens) {
                gen_tokens += static_cast<int64_t>(g.tokens.size());
                first.push_back(g.tokens.empty() ? -1 : g.tokens.front());
            }
            nlohmann::json line = {{"prompts", prompts},
                                   {"max_new_tokens", tp.sampling.max_tokens},
                                   {"eos_ids", lm.eos_ids()},
                                   {"seconds", ms / 1000},
                                   {"generated_tokens", gen_tokens},
                                   {"first_tokens", first}};
            std::FILE* f = std::fopen(o.dump_prompts.c_str(), "ab");
            if (!f) throw user_error(fmt::format("cannot write {}", o.dump_prompts));
            const std::string text = line.dump() + "\n";
            std::fwrite(text.data(), 1, text.size(), f);
            std::fclose(f);
        }
        for (size_t j = b; j < e; ++j) {
            const size_t i = order[j];
            auto& r = out[i];
            const auto& g = gens[j - b];
            r.output = g.text;
            r.s = score_answer(*items[i].call, codec, g.text, o.verdicts);
            r.prompt_tokens = static_cast<int64_t>(prep[i].prompt.size());
            r.output_tokens = static_cast<int64_t>(g.tokens.size());
            r.cut_turns = prep[i].cut_turns;
            r.examples = prep[i].examples;
            r.latency_ms = ms;
            r.tokens_per_s = st.decode_tokens_per_s();
            r.s.details["finish"] = model::finish_reason_name(g.reason);
        }
        done += static_cast<int64_t>(e - b);
        if (progress) progress(done, static_cast<int64_t>(items.size()));
    }
    return out;
}

}  // namespace slm::eval
