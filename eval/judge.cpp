// LLM-as-judge for `eval --judge`: the rubric prompt, one chat-completions request per answer over
// eval/http-client.cpp, the reply read with parse_judge_score. Failures are per answer, never fatal.
#include <cstdlib>

#include <fmt/format.h>

#include "common/common.h"
#include "common/text.h"
#include "eval/metrics.h"

namespace slm::eval {

namespace {

constexpr size_t k_part_bytes = 3000;  // each of request, reference, answer shown to the judge

std::string cut(std::string_view s) {
    s = trim_space(s);
    if (s.size() <= k_part_bytes) return std::string(s);
    return std::string(utf8_cut(s, k_part_bytes)) + " [...]";
}

std::string endpoint_of(const std::string& url) {
    const http_url u = parse_http_url(url);  // refuses https and the like with the reason
    std::string base(trim_space(url));
    while (!base.empty() && base.back() == '/') base.pop_back();
    auto ends_with = [&](std::string_view tail) {
        return base.size() >= tail.size() && base.compare(base.size() - tail.size(), tail.size(), tail) == 0;
    };
    if (ends_with("/chat/completions")) return base;
    if (ends_with("/v1")) return base + "/chat/completions";
    if (u.path == "/" || u.path.empty()) return base + "/v1/chat/completions";
    throw user_error(fmt::format("--judge {}: the path {} is neither /v1 nor .../chat/completions", url, u.path),
                     "give the server's root (http://127.0.0.1:8080), its /v1, or the full /v1/chat/completions URL");
}

}  // namespace

nlohmann::json judge_options::to_json() const {
    return {{"url", url}, {"model", model}, {"key_env", key_env}, {"timeout_s", timeout_s},
            {"max_tokens", max_tokens}, {"scale", scale}};
}

nlohmann::json judge_messages(std::string_view request, std::string_view reference, std::string_view answer,
                              double scale) {
    const std::string sc = fmt::format("{:g}", scale);
    const std::string system = fmt::format(
        "You grade answers. You are shown a request, the reference answer that was accepted for it, and a "
        "candidate answer. Decide how well the candidate serves the request compared with the reference: the "
        "same facts, the same decision, nothing important missing or wrong. Wording and length may differ. "
        "Reply with one line, \"Score: N/{0}\", where {0} means as good as the reference and 0 means wrong, "
        "unrelated or empty.",
        sc);
    const std::string user = fmt::format(
        "Request:\n<<<\n{}\n>>>\n\nReference answer:\n<<<\n{}\n>>>\n\nCandidate answer:\n<<<\n{}\n>>>\n\n"
        "Score the candidate from 0 to {}.",
        cut(request), cut(reference), cut(answer), sc);
    return nlohmann::json::array({{{"role", "system"}, {"content", system}}, {{"role", "user"}, {"content", user}}});
}

std::optional<std::string> completion_text(std::string_view body, std::string& why) {
    auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (j.is_discarded()) {
        why = fmt::format("the body is not JSON: '{}'", std::string(utf8_cut(trim_space(body), 80)));
        return std::nullopt;
    }
    if (!j.is_object()) {
        why = fmt::format("the body is a JSON {}, not a chat completion object", j.type_name());
        return std::nullopt;
    }
    if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
        why = fmt::format("the server answered an error: {}",
                          e->is_object() && e->contains("message") && (*e)["message"].is_string()
                              ? (*e)["message"].get<std::string>()
                              : e->dump());
        return std::nullopt;
    }
    auto ch = j.find("choices");
    if (ch == j.end() || !ch->is_array() || ch->empty() || !(*ch)[0].is_object()) {
        why = "the body has no choices[0]: not a chat completion";
        return std::nullopt;
    }
    const auto& c0 = (*ch)[0];
    if (auto m = c0.find("message"); m != c0.end() && m->is_object()) {
        auto content = m->find("content");
        if (content != m->end() && content->is_string()) return content->get<std::string>();
        if (content == m->end() || content->is_null()) return std::string();  // an empty answer is an answer
        why = "choices[0].message.content is not a string";
        return std::nullopt;
    }
    if (auto t = c0.find("text"); t != c0.end() && t->is_string()) return t->get<std::string>();
    why = "choices[0] has neither message.content nor text";
    return std::nullopt;
}

judge_client::judge_client(judge_options o) : o_(std::move(o)) {
    endpoint_ = endpoint_of(o_.url);
    if (o_.timeout_s <= 0) throw user_error(fmt::format("--judge-timeout {} must be positive", o_.timeout_s));
    if (o_.max_tokens < 1) throw user_error("the judge's max_tokens must be at least 1");
    if (!o_.key_env.empty()) {
        const char* k = std::getenv(o_.key_env.c_str());
        if (!k || !*k)
            throw user_error(fmt::format("--judge-key {}: the environment variable is not set", o_.key_env),
                             fmt::format("export {}=... first, or leave --judge-key out for a server without a key",
                                         o_.key_env));
        key_ = k;
    }
}

judgement judge_client::judge(std::string_view request, std::string_view reference, std::string_view answer) const {
    judgement out;
    const nlohmann::json body = {{"model", o_.model},
                                 {"messages", judge_messages(request, reference, answer, o_.scale)},
                                 {"temperature", 0},
                                 {"max_tokens", o_.max_tokens},
                                 {"stream", false}};
    std::vector<std::pair<std::string, std::string>> headers = {{"Content-Type", "application/json"},
                                                                {"Accept", "application/json"}};
    if (!key_.empty()) headers.emplace_back("Authorization", "Bearer " + key_);
    http_options ho;
    ho.timeout_s = o_.timeout_s;
    http_response r;
    try {
        r = http_post(endpoint_, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), headers, ho);
    } catch (const user_error& e) {
        out.error = e.what();
        return out;
    }
    out.seconds = r.seconds;
    if (r.status != 200) {
        out.error = fmt::format("{}: HTTP {} {}: {}", endpoint_, r.status, r.reason,
                                std::string(utf8_cut(trim_space(r.body), 120)));
        return out;
    }
    std::string why;
    auto text = completion_text(r.body, why);
    if (!text) {
        out.error = fmt::format("{}: {}", endpoint_, why);
        return out;
    }
    out.answered = true;
    out.reply = *text;
    out.score = parse_judge_score(out.reply, o_.scale);
    if (!out.score) out.error = "no score in the reply";
    return out;
}

void judge_client::check() const {
    auto j = judge("What is 2 + 2?", "4", "4");
    if (!j.answered)
        throw user_error(fmt::format("--judge: {}", j.error),
                         "the judge must be an OpenAI-compatible chat-completions server, e.g. "
                         "python -m llama_cpp.server --model M.gguf --port 8080, then --judge http://127.0.0.1:8080");
    if (!j.score)
        log_warn("--judge {}: the test judgement ('4' for '2 + 2') had no readable score: '{}'", endpoint_,
                 std::string(utf8_cut(trim_space(j.reply), 80)));
    else
        log_info("judge {}: test judgement {:g}/{:g} in {:.1f} s", endpoint_, j.score->raw, j.score->scale, j.seconds);
}

}  // namespace slm::eval
