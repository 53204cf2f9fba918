// Conversations from stored calls, the response codecs (render = the template's assistant body,
// parse robust to small-model output, round trip over every sample call) and encode_conversation
// (mask boundary, text identity with the template, history truncation) with real tokenizers.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "common/text.h"
#include "model/chat-template.h"
#include "model/conversation.h"
#include "model/model.h"
#include "model/response-codec.h"
#include "model/tokenizer.h"
#include "tests/test-util.h"

using namespace slm;
using namespace slm::model;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

const tokenizer_source& smollm2() {
    // the instruct model's GGUF: tokenizer and chat template come from its metadata, no weights are read
    static const tokenizer_source src = [] {
        const std::string path = default_smollm2_path();
        REQUIRE_MESSAGE(fs::exists(path), "SmolLM2 GGUF not found at " << path
                                                                        << ": run `make test` or scripts/fetch-models.sh to fetch it");
        return load_tokenizer(path);
    }();
    REQUIRE(src.chat);
    return src;
}

const std::string k_tools =
    R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])";

chat_message msg(std::string role, std::string content) { return chat_message(std::move(role), std::move(content)); }
chat_message call_msg(std::string content, std::vector<tool_call> calls) {
    return chat_message("assistant", std::move(content), std::move(calls));
}

// system, 2 history exchanges (the second with a tool call and two results), last user turn
conversation multi_turn() {
    conversation c;
    c.tools_json = k_tools;
    c.messages = {msg("system", "You are a weather bot."),
                  msg("user", "Weather in Paris? Tell me in detail, please, I am planning a long trip there."),
                  msg("assistant", "Paris is 21 degrees and sunny today, with light wind from the west."),
                  msg("user", "And in Rome?"),
                  call_msg("", {{"call_1", "get_weather", R"({"city":"Rome"})"}}),
                  chat_message("tool", R"({"temp": 25})", {}, "call_1", "get_weather"),
                  chat_message("tool", "sunny", {}, "call_1", "get_weather"),
                  msg("assistant", "Rome is 25 degrees and sunny."),
                  msg("user", "And Oslo?")};
    c.response = call_msg("Checking.", {{"", "get_weather", R"({"city":"Oslo"})"}});
    return c;
}

std::string decode_special(const tokenizer& tok, const std::vector<int32_t>& ids, size_t from, size_t to) {
    return tok.decode(std::span<const int32_t>(ids.data() + from, to - from), /*render_special=*/true);
}

std::string rtrim(std::string s) {
    while (!s.empty() && std::string_view(" \t\r\n").find(s.back()) != std::string_view::npos) s.pop_back();
    return s;
}

std::string trim(const std::string& s) { return std::string(trim_space(s)); }

// ---- sample logs as logged calls -----------------------------------------------------------------

struct sample_call {
    std::string where;  // file:line
    bool from_bad_file = false;  // bad/malformed.jsonl: calls conversation_from_call rejects are skipped
    std::string messages, tools, tool_calls;
    std::optional<std::string> text;
};

// [{name, arguments}] with arguments parsed when they are JSON text, as the collector stores them
json response_calls(const json& m) {
    json out = json::array();
    auto add = [&](const json& fn) {
        json args = json::object();
        if (fn.contains("arguments") && fn["arguments"].is_string()) {
            const std::string s = fn["arguments"];
            args = json::parse(s, nullptr, false);
            if (args.is_discarded()) args = s;
        } else if (fn.contains("arguments")) {
            args = fn["arguments"];
        }
        out.push_back({{"name", fn["name"]}, {"arguments", args}});
    };
    if (m.contains("tool_calls") && m["tool_calls"].is_array())
        for (const auto& tc : m["tool_calls"]) add(tc["function"]);
    else if (m.contains("function_call") && m["function_call"].is_object())
        add(m["function_call"]);
    return out;
}

std::vector<sample_call> sample_calls() {
    std::vector<sample_call> out;
    for (const char* f : {"software_company.jsonl", "workflow_operator.jsonl", "gui_controller.jsonl",
                          "legacy_functions.jsonl", "finetune_form.jsonl", "bad/malformed.jsonl"}) {
        const bool bad_file = std::string_view(f).starts_with("bad/");
        std::ifstream in(test::source_dir(std::string("sample_logs/") + f));
        REQUIRE_MESSAGE(in, "cannot read sample_logs/" << f);
        std::string line;
        for (int n = 1; std::getline(in, line); ++n) {
            const json r = json::parse(line, nullptr, false);
            if (bad_file && (r.is_discarded() || !r.is_object() || !r.contains("request") || !r.contains("response") ||
                             !r["response"].contains("choices") || !r["response"]["choices"].is_array() ||
                             !r["request"]["messages"].is_array()))
                continue;  // lines the collector quarantines
            sample_call c;
            c.from_bad_file = bad_file;
            c.where = fmt::format("{}:{}", f, n);
            json tools = json::array();
            json messages;
            json answer;
            if (r.contains("request")) {
                const json& req = r["request"];
                messages = req["messages"];
                if (req.contains("tools")) tools = req["tools"];
                if (req.contains("functions"))
                    for (const auto& fn : req["functions"]) tools.push_back({{"type", "function"}, {"function", fn}});
                answer = r["response"]["choices"][0]["message"];
            } else {
                messages = r["messages"];
                answer = messages.back();
                messages.erase(messages.size() - 1);
                if (r.contains("tools")) tools = r["tools"];
            }
            c.messages = messages.dump();
            c.tools = tools.empty() ? "" : tools.dump();
            if (answer.contains("content") && answer["content"].is_string()) c.text = answer["content"].get<std::string>();
            const json calls = response_calls(answer);
            c.tool_calls = calls.empty() ? "" : calls.dump();
            out.push_back(std::move(c));
        }
    }
    return out;
}

conversation to_conversation(const sample_call& s) {
    logged_call lc;
    lc.messages_json = s.messages;
    lc.tools_json = s.tools;
    if (s.text) lc.response_text = *s.text;
    lc.response_tool_calls_json = s.tool_calls;
    return conversation_from_call(lc);
}

}  // namespace

// ---- conversation_from_call -----------------------------------------------------------------------

TEST_CASE("conversation_from_call: the stored message forms") {
    const std::string messages = R"([
        {"role":"developer","content":"Be brief."},
        {"role":"user","content":[{"type":"text","text":"line one"},{"type":"input_text","text":"line two"}]},
        {"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function",
            "function":{"name":"get_weather","arguments":"{\"unit\":\"c\",\"city\":\"Paris\"}"}}]},
        {"role":"tool","content":"21","tool_call_id":"c1","name":"get_weather"},
        {"role":"assistant","content":"","function_call":{"name":"legacy_fn","arguments":"not json"}},
        {"role":"function","name":"legacy_fn","content":"done"},
        {"role":"user","content":"ok"}])";
    logged_call lc;
    lc.messages_json = messages;
    lc.tools_json = k_tools;
    lc.response_text = "Sure.";
    const std::string calls = R"([{"name":"get_weather","arguments":{"z":1,"a":[true,null]}},
                                  {"name":"noop","arguments":"{\"x\": 2}"}])";
    lc.response_tool_calls_json = calls;
    const conversation c = conversation_from_call(lc);
    REQUIRE(c.messages.size() == 7);
    CHECK(c.messages[0].role == "system");
    CHECK(c.messages[0].content == "Be brief.");
    CHECK(c.messages[1].content == "line one\nline two");
    CHECK(c.messages[2].content.empty());
    REQUIRE(c.messages[2].tool_calls.size() == 1);
    CHECK(c.messages[2].tool_calls[0].id == "c1");
    CHECK(c.messages[2].tool_calls[0].name == "get_weather");
    CHECK(c.messages[2].tool_calls[0].arguments == R"({"city":"Paris","unit":"c"})");
    CHECK(c.messages[3].role == "tool");
    CHECK(c.messages[3].tool_call_id == "c1");
    CHECK(c.messages[3].name == "get_weather");
    REQUIRE(c.messages[4].tool_calls.size() == 1);
    CHECK(c.messages[4].tool_calls[0].name == "legacy_fn");
    CHECK(c.messages[4].tool_calls[0].arguments == "not json");  // kept: the template prints it as a JSON string
    CHECK(c.messages[5].role == "tool");
    CHECK(c.tools_json == k_tools);
    CHECK(c.response.role == "assistant");
    CHECK(c.response.content == "Sure.");
    REQUIRE(c.response.tool_calls.size() == 2);
    CHECK(c.response.tool_calls[0].arguments == R"({"a":[true,null],"z":1})");
    CHECK(c.response.tool_calls[1].arguments == R"({"x":2})");

    logged_call plain;
    const std::string m2 = R"([{"role":"user","content":"hi"}])";
    plain.messages_json = m2;
    plain.tools_json = "[]";
    const conversation p = conversation_from_call(plain);
    CHECK(p.tools_json.empty());
    CHECK(p.response.content.empty());
    CHECK(p.response.tool_calls.empty());
}

TEST_CASE("conversation_from_call: errors name the field") {
    auto error_of = [](std::string messages, std::string tools = "", std::string calls = "") {
        logged_call lc;
        lc.messages_json = messages;
        lc.tools_json = tools;
        lc.response_tool_calls_json = calls;
        try {
            conversation_from_call(lc);
        } catch (const user_error& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(error_of("[{").find("messages is not valid JSON") != std::string::npos);
    CHECK(error_of(R"({"role":"user"})").find("messages is a object, not an array") != std::string::npos);
    CHECK(error_of(R"([{"content":"x"}])").find("messages[0].role is missing") != std::string::npos);
    CHECK(error_of(R"([{"role":"user","content":5}])").find("messages[0].content is a number") != std::string::npos);
    CHECK(error_of(R"([{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}])")
              .find("messages[0].content[0] is a 'image_url' part") != std::string::npos);
    CHECK(error_of(R"([{"role":"assistant","tool_calls":[{"function":{"arguments":"{}"}}]}])")
              .find("messages[0].tool_calls[0].function.name is missing") != std::string::npos);
    CHECK(error_of(R"([])", "{\"a\":1}").find("tools is a object, not an array") != std::string::npos);
    CHECK(error_of(R"([])", "[", "").find("tools is not valid JSON") != std::string::npos);
    CHECK(error_of(R"([])", "", R"([{"arguments":{}}])").find("response_tool_calls[0].name is missing") !=
          std::string::npos);
    CHECK(error_of(R"([])", "", "{").find("response_tool_calls is not valid JSON") != std::string::npos);
}

// ---- codecs ----------------------------------------------------------------------------------------

TEST_CASE("ChatML codec: render is the template's assistant body") {
    const auto codec = response_codec::for_format(chat_format::chatml);
    const chat_template t(chat_format::chatml);
    const std::vector<chat_message> req = {msg("user", "Weather in Paris and Rome?")};
    const std::vector<chat_message> answers = {
        msg("assistant", "Hello!"),
        call_msg("", {{"", "get_weather", R"({"city":"Paris"})"}}),
        call_msg("Let me check.", {{"", "get_weather", R"({"city": "Paris"})"}, {"", "get_weather", "{\"city\":\"Rome\"}"}}),
        msg("assistant", ""),
    };
    for (const auto& a : answers) {
        auto full_msgs = req;
        full_msgs.push_back(a);
        const std::string full = t.render(full_msgs, false, k_tools);
        const std::string prompt = t.render(req, true, k_tools);
        CHECK(full == prompt + codec.render(a) + "<|im_end|>\n");
        CHECK(codec.target(a) == codec.render(a) + "<|im_end|>");
    }
    CHECK(codec.render(answers[2]) ==
          "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
          "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}\n</tool_call>");
    const auto p = codec.parse(codec.render(answers[2]));
    CHECK(p.ok);
    CHECK(p.text == "Let me check.");
    REQUIRE(p.tool_calls.size() == 2);
    CHECK(p.tool_calls[0].name == "get_weather");
    CHECK(p.tool_calls[0].arguments == R"({"city":"Paris"})");
    CHECK(p.tool_calls[1].arguments == R"({"city":"Rome"})");
    CHECK(codec.parse("Hello!").text == "Hello!");
    CHECK(codec.parse("Hello!").tool_calls.empty());
    CHECK(codec.parse("Hello!<|im_end|>\n").text == "Hello!");
}

TEST_CASE("ChatML codec: parse what small models write") {
    const auto codec = response_codec::for_format(chat_format::chatml);
    auto one = [&](std::string_view text) {
        const auto p = codec.parse(text);
        CHECK_MESSAGE(p.ok, text << " -> " << p.error);
        REQUIRE_MESSAGE(p.tool_calls.size() == 1, text);
        CHECK(p.tool_calls[0].name == "get_weather");
        CHECK(p.tool_calls[0].arguments == R"({"city":"Paris","days":2})");
        return p;
    };
    one("<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"days\":2,\"city\":\"Paris\"}}</tool_call>");
    one("  <tool_call>\n\n  {\"name\": \"get_weather\",\n \"arguments\": {\"city\": \"Paris\", \"days\": 2}}  \n</tool_call>\n");
    one("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n");  // no close
    one("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}<|im_end|>");
    one("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\", \\\"days\\\": 2}\"}\n</tool_call>");
    one("<tool_call>\n```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n```\n</tool_call>");
    one("<tool_call>\n```\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"days\": 2}}\n```</tool_call>");
    CHECK(one("Sure thing.\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 2}}\n</tool_call>")
              .text == "Sure thing.");
    // an unclosed block before the next one ends there
    const auto two = codec.parse("<tool_call>{\"name\":\"a\",\"arguments\":{}}\n<tool_call>{\"name\":\"b\"}</tool_call>");
    CHECK(two.ok);
    REQUIRE(two.tool_calls.size() == 2);
    CHECK(two.tool_calls[1].name == "b");
    CHECK(two.tool_calls[1].arguments == "{}");

    auto bad = [&](std::string_view text, const char* kind, size_t good) {
        const auto p = codec.parse(text);
        CHECK_FALSE_MESSAGE(p.ok, text);
        CHECK_MESSAGE(p.error == kind, text);
        CHECK_MESSAGE(p.tool_calls.size() == good, text);
    };
    bad("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par", "invalid_json", 0);
    bad("<tool_call>\n{'name': 'get_weather'}\n</tool_call>", "invalid_json", 0);
    bad("<tool_call>\n{\"arguments\": {}}\n</tool_call>", "missing_name", 0);
    bad("<tool_call>\n{\"name\": \"\", \"arguments\": {}}\n</tool_call>", "missing_name", 0);
    bad("<tool_call>\n[1, 2]\n</tool_call>", "not_an_object", 0);
    bad("<tool_call>\n{\"name\": \"a\", \"arguments\": [1]}\n</tool_call>", "bad_arguments", 1);
    bad("<tool_call>\n{\"name\": \"a\", \"arguments\": \"city=Paris\"}\n</tool_call>", "arguments_not_json", 1);
    bad("<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>\n<tool_call>{\"name\":</tool_call>", "invalid_json", 1);
    CHECK(codec.parse("<tool_call>\n{\"name\": \"a\", \"arguments\": \"city=Paris\"}\n</tool_call>").tool_calls[0].arguments ==
          "city=Paris");
}

TEST_CASE("Llama-3 codec: one JSON call or text") {
    const auto codec = response_codec::for_format(chat_format::llama3);
    const chat_template t(chat_format::llama3);
    const std::vector<chat_message> req = {msg("system", "Be brief."), msg("user", "Weather in Paris?")};
    const std::vector<chat_message> answers = {msg("assistant", "  It is sunny.\n"),
                                               call_msg("", {{"", "get_weather", R"({"city":"Paris"})"}})};
    for (const auto& a : answers) {
        auto full_msgs = req;
        full_msgs.push_back(a);
        CHECK(t.render(full_msgs, false, k_tools) == t.render(req, true, k_tools) + codec.target(a));
    }
    CHECK(codec.render(answers[0]) == "It is sunny.");
    CHECK(codec.render(answers[1]) == R"({"name": "get_weather", "parameters": {"city": "Paris"}})");
    CHECK(codec.end_marker() == "<|eot_id|>");
    CHECK_THROWS_AS(codec.render(call_msg("", {{"", "a", "{}"}, {"", "b", "{}"}})), user_error);

    auto p = codec.parse(codec.render(answers[1]));
    CHECK(p.ok);
    CHECK(p.text.empty());
    REQUIRE(p.tool_calls.size() == 1);
    CHECK(p.tool_calls[0].name == "get_weather");
    CHECK(p.tool_calls[0].arguments == R"({"city":"Paris"})");
    p = codec.parse("<|python_tag|>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}<|eom_id|>");
    CHECK(p.ok);
    REQUIRE(p.tool_calls.size() == 1);
    p = codec.parse("```json\n{\"name\": \"get_weather\", \"parameters\": \"{\\\"city\\\":\\\"Paris\\\"}\"}\n```");
    CHECK(p.ok);
    REQUIRE(p.tool_calls.size() == 1);
    CHECK(p.tool_calls[0].arguments == R"({"city":"Paris"})");
    // JSON answers that are not calls stay text
    p = codec.parse(" {\"route\": \"billing\"}<|eot_id|>");
    CHECK(p.ok);
    CHECK(p.tool_calls.empty());
    CHECK(p.text == "{\"route\": \"billing\"}");
    p = codec.parse("{\"name\": \"Ann\", \"age\": 3}");
    CHECK(p.tool_calls.empty());
    // broken calls
    p = codec.parse("{\"name\": \"get_weather\", \"parameters\": {\"city\": ");
    CHECK_FALSE(p.ok);
    CHECK(p.error == "invalid_json");
    p = codec.parse("<|python_tag|>get_weather(city='Paris')");
    CHECK_FALSE(p.ok);
    CHECK(p.error == "invalid_json");
}

TEST_CASE("Llama-2 codec: text only") {
    const auto codec = response_codec::for_format(chat_format::llama2);
    CHECK(codec.render(msg("assistant", " Hello there. ")) == "Hello there.");
    CHECK(codec.target(msg("assistant", "Hi")) == " Hi </s>");
    try {
        codec.render(call_msg("", {{"", "a", "{}"}}));
        FAIL("no error for a tool call in Llama-2");
    } catch (const user_error& e) {
        CHECK(std::string(e.what()).find("Llama-2") != std::string::npos);
        CHECK_FALSE(e.hint.empty());
    }
    const auto p = codec.parse("  Hello there. </s>");
    CHECK(p.ok);
    CHECK(p.text == "Hello there.");
}

TEST_CASE("canonical_json") {
    CHECK(canonical_json(R"({ "b" : 1, "a" : {"d": [1, 2.5], "c": "é"} })") == R"({"a":{"c":"é","d":[1,2.5]},"b":1})");
    CHECK(canonical_json("not json") == "not json");
    CHECK(canonical_json("") == "");
}

// ---- encoding --------------------------------------------------------------------------------------

TEST_CASE("encode_conversation: ChatML mask boundary and text identity (SmolLM2 tokenizer)") {
    const auto& src = smollm2();
    REQUIRE(src.chat);
    const tokenizer& tok = src.tok;
    const chat_template& t = *src.chat;
    const conversation c = multi_turn();
    const auto e = encode_conversation(tok, t, c, {});
    CHECK(e.fits);
    CHECK(e.cut_turns == 0);
    const std::string prompt = t.render(c.messages, true, c.tools_json);
    const auto prompt_ids = tok.encode(prompt, false, true);
    REQUIRE(e.prompt_len == static_cast<int64_t>(prompt_ids.size()));
    CHECK(std::equal(prompt_ids.begin(), prompt_ids.end(), e.ids.begin()));
    const std::string target = decode_special(tok, e.ids, prompt_ids.size(), e.ids.size());
    CHECK(target == "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>");
    CHECK(e.ids.back() == tok.token_id("<|im_end|>"));
    CHECK(e.ids.back() == 2);
    // ChatML: the full render has one "\n" more, after the final <|im_end|>
    auto all = c.messages;
    all.push_back(c.response);
    CHECK(t.render(all, false, c.tools_json) == prompt + target + "\n");
    // the ids generation continues from are the prompt's (encode_chat's flags)
    CHECK(decode_special(tok, e.ids, 0, static_cast<size_t>(e.prompt_len)) == prompt);

    // prompt only
    const auto q = encode_conversation(tok, t, c, {.max_tokens = 4096, .with_target = false});
    CHECK(q.ids == prompt_ids);
    CHECK(q.prompt_len == static_cast<int64_t>(q.ids.size()));
    CHECK(q.fits);
}

TEST_CASE("encode_conversation: history is dropped oldest exchange first, tool results with their call") {
    const auto& src = smollm2();
    const tokenizer& tok = src.tok;
    const chat_template& t = *src.chat;
    const conversation c = multi_turn();
    const auto full = encode_conversation(tok, t, c, {.max_tokens = 100000});
    REQUIRE(full.fits);
    // the sizes with the first exchange dropped (2 messages), and with both (7 messages)
    auto size_without = [&](size_t from) {
        std::vector<chat_message> kept = {c.messages[0]};
        kept.insert(kept.end(), c.messages.begin() + static_cast<long>(from), c.messages.end());
        return tok.encode(t.render(kept, true, c.tools_json), false, true).size() +
               tok.encode(response_codec::for_format(chat_format::chatml).target(c.response), false, true).size();
    };
    const auto one_cut = static_cast<int64_t>(size_without(3));
    const auto two_cut = static_cast<int64_t>(size_without(8));
    REQUIRE(two_cut < one_cut);
    REQUIRE(one_cut < static_cast<int64_t>(full.ids.size()));

    auto e = encode_conversation(tok, t, c, {.max_tokens = static_cast<int64_t>(full.ids.size())});
    CHECK(e.fits);
    CHECK(e.cut_turns == 0);
    e = encode_conversation(tok, t, c, {.max_tokens = static_cast<int64_t>(full.ids.size()) - 1});
    CHECK(e.fits);
    CHECK(e.cut_turns == 2);
    CHECK(static_cast<int64_t>(e.ids.size()) == one_cut);
    std::string prompt = decode_special(tok, e.ids, 0, static_cast<size_t>(e.prompt_len));
    CHECK(prompt.find("You are a weather bot.") != std::string::npos);
    CHECK(prompt.find("# Tools") != std::string::npos);
    CHECK(prompt.find("Paris") == std::string::npos);
    CHECK(prompt.find("Rome") != std::string::npos);

    e = encode_conversation(tok, t, c, {.max_tokens = one_cut - 1});
    CHECK(e.fits);
    CHECK(e.cut_turns == 7);  // user, assistant call, two tool results, assistant answer
    CHECK(static_cast<int64_t>(e.ids.size()) == two_cut);
    prompt = decode_special(tok, e.ids, 0, static_cast<size_t>(e.prompt_len));
    CHECK(prompt.find("<tool_response>") == std::string::npos);  // no orphan tool result
    CHECK(prompt.find("Rome") == std::string::npos);
    CHECK(prompt.find("And Oslo?") != std::string::npos);
    CHECK(decode_special(tok, e.ids, static_cast<size_t>(e.prompt_len), e.ids.size()).find("Oslo") != std::string::npos);

    e = encode_conversation(tok, t, c, {.max_tokens = two_cut - 1});
    CHECK_FALSE(e.fits);
    CHECK(e.cut_turns == 7);
    CHECK(static_cast<int64_t>(e.ids.size()) == two_cut);

    // tool results after the last user message stay with it
    conversation agent;
    agent.tools_json = k_tools;
    agent.messages = {msg("user", "old question with quite a few words in it to make it cost tokens"),
                      msg("assistant", "old answer"), msg("user", "Weather in Oslo?"),
                      call_msg("", {{"c", "get_weather", R"({"city":"Oslo"})"}}), chat_message("tool", "12 degrees", {}, "c")};
    agent.response = msg("assistant", "It is 12 degrees in Oslo.");
    const auto a_full = encode_conversation(tok, t, agent, {});
    e = encode_conversation(tok, t, agent, {.max_tokens = static_cast<int64_t>(a_full.ids.size()) - 1});
    CHECK(e.fits);
    CHECK(e.cut_turns == 2);
    prompt = decode_special(tok, e.ids, 0, static_cast<size_t>(e.prompt_len));
    CHECK(prompt.find("<tool_response>\n12 degrees\n</tool_response>") != std::string::npos);
    CHECK(prompt.find("old") == std::string::npos);
    // the default system prompt stays (SmolLM2's template inserts it)
    CHECK(prompt.find(t.default_system()) != std::string::npos);
}

TEST_CASE("encode_conversation: Llama-3 form") {
    const tokenizer& tok = smollm2().tok;  // no Llama-3 vocabulary in the fixtures: the text side is what is pinned
    const chat_template t(chat_format::llama3);
    conversation c = multi_turn();
    c.response = call_msg("", {{"", "get_weather", R"({"city":"Oslo"})"}});
    const auto e = encode_conversation(tok, t, c, {});
    const std::string prompt = t.render(c.messages, true, c.tools_json);
    CHECK(tok.encode(prompt, false, true).size() == static_cast<size_t>(e.prompt_len));
    const std::string target = decode_special(tok, e.ids, static_cast<size_t>(e.prompt_len), e.ids.size());
    CHECK(target == "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}<|eot_id|>");
    auto all = c.messages;
    all.push_back(c.response);
    CHECK(t.render(all, false, c.tools_json) == prompt + target);  // exactly: no newline after <|eot_id|>
    c.response = call_msg("", {{"", "a", "{}"}, {"", "b", "{}"}});
    CHECK_THROWS_AS(encode_conversation(tok, t, c, {}), user_error);
}

TEST_CASE("encode_conversation: Llama-2 with the SentencePiece vocabulary") {
    const auto src = load_tokenizer(test::shared_data("tokenizers/llama.cpp-vocab/ggml-vocab-llama-spm.gguf"));
    const tokenizer& tok = src.tok;
    const chat_template t(chat_format::llama2);
    conversation c;
    c.messages = {msg("system", "Be brief."), msg("user", "Hi"), msg("assistant", "Hello."), msg("user", "Bye")};
    c.response = msg("assistant", "Goodbye!");
    const auto e = encode_conversation(tok, t, c, {});
    CHECK(e.fits);
    auto all = c.messages;
    all.push_back(c.response);
    const std::string full = t.render(all, false);
    // the ids are exactly the whole conversation's, split after the prompt
    CHECK(e.ids == tok.encode(full, false, true));
    CHECK(e.prompt_len == static_cast<int64_t>(tok.encode(t.render(c.messages, true), false, true).size()));
    CHECK(e.ids.back() == tok.eos_id());
    CHECK(tok.token_text(e.ids[static_cast<size_t>(e.prompt_len)]) == "\xE2\x96\x81Good");
    // truncation keeps user/assistant alternation
    const auto cut = encode_conversation(tok, t, c, {.max_tokens = static_cast<int64_t>(e.ids.size()) - 1});
    CHECK(cut.fits);
    CHECK(cut.cut_turns == 2);
    c.tools_json = k_tools;
    CHECK_THROWS_AS(encode_conversation(tok, t, c, {}), user_error);
}

// ---- every sample call -----------------------------------------------------------------------------

TEST_CASE("sample logs: codec round trips and template identity for every call") {
    const auto calls = sample_calls();
    REQUIRE(calls.size() > 4500);
    const auto chatml = response_codec::for_format(chat_format::chatml);
    const auto llama3 = response_codec::for_format(chat_format::llama3);
    const chat_template tml(chat_format::chatml, "You are a helpful assistant.");
    const chat_template tl3(chat_format::llama3);
    const auto& smol = smollm2();
    size_t n_calls = 0, n_parallel = 0, n_text_and_calls = 0, n_bad_args = 0, n_encoded = 0, n_rejected = 0;
    for (size_t i = 0; i < calls.size(); ++i) {
        const auto& s = calls[i];
        INFO(s.where);
        conversation c;
        try {
            c = to_conversation(s);
        } catch (const user_error&) {
            REQUIRE(s.from_bad_file);
            ++n_rejected;
            continue;
        }
        const auto& r = c.response;
        bool bad_args = false;
        for (const auto& tc : r.tool_calls) bad_args |= canonical_json(tc.arguments) == tc.arguments &&
                                                       json::parse(tc.arguments, nullptr, false).is_discarded();
        n_bad_args += bad_args;
        n_calls += !r.tool_calls.empty();
        n_parallel += r.tool_calls.size() > 1;
        n_text_and_calls += !r.tool_calls.empty() && !r.content.empty();

        // ChatML: render -> parse is identity
        const auto p = chatml.parse(chatml.render(r));
        CHECK(p.ok == !bad_args);
        if (bad_args) CHECK(p.error == "arguments_not_json");
        CHECK(p.text == (r.tool_calls.empty() ? r.content : rtrim(r.content)));
        REQUIRE(p.tool_calls.size() == r.tool_calls.size());
        for (size_t j = 0; j < r.tool_calls.size(); ++j) {
            CHECK(p.tool_calls[j].name == r.tool_calls[j].name);
            CHECK(p.tool_calls[j].arguments == canonical_json(r.tool_calls[j].arguments));
        }
        // prompt + target == the whole conversation rendered, modulo ChatML's final "\n"
        auto all = c.messages;
        all.push_back(r);
        CHECK(tml.render(c.messages, true, c.tools_json) + chatml.target(r) + "\n" == tml.render(all, false, c.tools_json));

        // Llama-3 (one call per turn; its template prints no text next to a call)
        if (r.tool_calls.size() <= 1) {
            const auto q = llama3.parse(llama3.render(r));
            CHECK(q.ok == !bad_args);
            if (r.tool_calls.empty()) {
                CHECK(q.text == trim(r.content));
                CHECK(q.tool_calls.empty());
            } else {
                REQUIRE(q.tool_calls.size() == 1);
                CHECK(q.tool_calls[0].name == r.tool_calls[0].name);
                CHECK(q.tool_calls[0].arguments == canonical_json(r.tool_calls[0].arguments));
            }
            bool one_call_history = true;
            for (const auto& m : c.messages) one_call_history &= m.tool_calls.size() <= 1;
            if (one_call_history)
                CHECK(tl3.render(c.messages, true, c.tools_json) + llama3.target(r) == tl3.render(all, false, c.tools_json));
        }

        // a sample of them through the SmolLM2 tokenizer: the target decodes to the codec's text
        if (i % 25 == 0) {
            const auto e = encode_conversation(smol.tok, *smol.chat, c, {.max_tokens = 1 << 20});
            CHECK(e.fits);
            CHECK(decode_special(smol.tok, e.ids, static_cast<size_t>(e.prompt_len), e.ids.size()) == chatml.target(r));
            ++n_encoded;
        }
    }
    // the set has what the round trip is meant to cover
    CHECK(n_calls > 1000);
    CHECK(n_text_and_calls > 0);
    CHECK(n_bad_args >= 2);  // the bad file's cut-off and Python-dict arguments
    CHECK(n_rejected >= 2);  // its number content and role-less message
    MESSAGE(fmt::format("{} calls: {} with tool calls, {} parallel, {} text + calls, {} with arguments that are not JSON, "
                        "{} rejected, {} encoded",
                        calls.size(), n_calls, n_parallel, n_text_and_calls, n_bad_args, n_rejected, n_encoded));
}
