// Chat template tests: exact prompt strings for small conversations, pinned against the
// upstream Jinja templates rendered by jinja2 (as transformers does), plus format detection.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>

#include "common/common.h"
#include "model/chat-template.h"
#include "model/format/gguf-reader.h"
#include "model/tokenizer.h"
#include "tests/test-util.h"

using namespace slm::model;

namespace {

// SmolLM2-135M-Instruct's tokenizer.chat_template (GGUF metadata)
const std::string k_smollm2_jinja =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
// the part of Qwen2.5-Instruct's template that carries its default system prompt
const std::string k_qwen25_jinja_excerpt =
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' + "
    "messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, "
    "created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}";
const std::string k_llama3_jinja =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

const std::string k_tools =
    R"([{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city — now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
        "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}])";

std::vector<chat_message> tool_conversation() {
    std::vector<chat_message> c;
    c.push_back({"system", "You are a bot.", {}, {}, {}});
    c.push_back({"user", "Weather in Paris?", {}, {}, {}});
    chat_message call{"assistant", "", {}, {}, {}};
    call.tool_calls.push_back({"call_1", "get_weather", R"({"city":"Paris","unit":"c"})"});
    c.push_back(call);
    c.push_back({"tool", R"({"temp": 21})", {}, "call_1", "get_weather"});
    c.push_back({"tool", "sunny", {}, "call_1", "get_weather"});
    c.push_back({"assistant", "It is 21°C and sunny.", {}, {}, {}});
    c.push_back({"user", "Thanks", {}, {}, {}});
    return c;
}

}  // namespace

TEST_CASE("ChatML as SmolLM2: default system prompt from its template") {
    const auto t = chat_template::from_jinja(k_smollm2_jinja);
    CHECK(t.format() == chat_format::chatml);
    CHECK(std::string(t.format_name()) == "chatml");
    CHECK(t.default_system() == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    CHECK(t.stop_strings() == std::vector<std::string>{"<|im_end|>"});
    const std::vector<chat_message> conv = {{"user", "Hi", {}, {}, {}}, {"assistant", "Hello!", {}, {}, {}},
                                            {"user", "Bye", {}, {}, {}}};
    CHECK(t.render(conv, true) ==
          "<|im_start|>system\n"
          "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\n"
          "Hi<|im_end|>\n"
          "<|im_start|>assistant\n"
          "Hello!<|im_end|>\n"
          "<|im_start|>user\n"
          "Bye<|im_end|>\n"
          "<|im_start|>assistant\n");
    const std::vector<chat_message> with_system = {{"system", "Be brief.", {}, {}, {}}, {"user", "Hi", {}, {}, {}}};
    CHECK(t.render(with_system, false) ==
          "<|im_start|>system\n"
          "Be brief.<|im_end|>\n"
          "<|im_start|>user\n"
          "Hi<|im_end|>\n");
    CHECK(t.render({}, false).empty());
}

TEST_CASE("ChatML with tools as Qwen2.5") {
    const auto t = chat_template::from_jinja(k_qwen25_jinja_excerpt);
    CHECK(t.default_system() == "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    CHECK(t.render({{"user", "Hi", {}, {}, {}}}, true) ==
          "<|im_start|>system\n"
          "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
          "<|im_start|>user\n"
          "Hi<|im_end|>\n"
          "<|im_start|>assistant\n");
    const auto conv = tool_conversation();
    CHECK(t.render(conv, true, k_tools) ==
          "<|im_start|>system\n"
          "You are a bot.\n"
          "\n"
          "# Tools\n"
          "\n"
          "You may call one or more functions to assist with the user query.\n"
          "\n"
          "You are provided with function signatures within <tools></tools> XML tags:\n"
          "<tools>\n"
          "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather for a city — now\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\"]}}}\n"
          "</tools>\n"
          "\n"
          "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
          "<tool_call>\n"
          "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
          "</tool_call><|im_end|>\n"
          "<|im_start|>user\n"
          "Weather in Paris?<|im_end|>\n"
          "<|im_start|>assistant\n"
          "<tool_call>\n"
          "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n"
          "</tool_call><|im_end|>\n"
          "<|im_start|>user\n"
          "<tool_response>\n"
          "{\"temp\": 21}\n"
          "</tool_response>\n"
          "<tool_response>\n"
          "sunny\n"
          "</tool_response><|im_end|>\n"
          "<|im_start|>assistant\n"
          "It is 21°C and sunny.<|im_end|>\n"
          "<|im_start|>user\n"
          "Thanks<|im_end|>\n"
          "<|im_start|>assistant\n");
    // no system message: the template's default goes in front of the tools
    const std::vector<chat_message> partial(conv.begin() + 1, conv.begin() + 4);
    CHECK(t.render(partial, false, k_tools) ==
          "<|im_start|>system\n"
          "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n"
          "\n"
          "# Tools\n"
          "\n"
          "You may call one or more functions to assist with the user query.\n"
          "\n"
          "You are provided with function signatures within <tools></tools> XML tags:\n"
          "<tools>\n"
          "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather for a city — now\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"unit\": {\"type\": \"string\", \"enum\": [\"c\", \"f\"]}}, \"required\": [\"city\"]}}}\n"
          "</tools>\n"
          "\n"
          "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
          "<tool_call>\n"
          "{\"name\": <function-name>, \"arguments\": <args-json-object>}\n"
          "</tool_call><|im_end|>\n"
          "<|im_start|>user\n"
          "Weather in Paris?<|im_end|>\n"
          "<|im_start|>assistant\n"
          "<tool_call>\n"
          "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n"
          "</tool_call><|im_end|>\n"
          "<|im_start|>user\n"
          "<tool_response>\n"
          "{\"temp\": 21}\n"
          "</tool_response><|im_end|>\n");
    // arguments that are not JSON are printed as a JSON string, not rejected
    chat_message odd{"assistant", "", {}, {}, {}};
    odd.tool_calls.push_back({"c", "f", "not json"});
    CHECK(t.render({odd}, false).find(R"({"name": "f", "arguments": "not json"})") != std::string::npos);
    CHECK_THROWS_AS(t.render(conv, true, "{not json"), slm::user_error);
    CHECK_THROWS_AS(t.render(conv, true, R"({"type": "function"})"), slm::user_error);
}

TEST_CASE("Llama-3 format") {
    const auto t = chat_template::from_jinja(k_llama3_jinja);
    CHECK(t.format() == chat_format::llama3);
    CHECK(t.stop_strings().front() == "<|eot_id|>");
    const std::vector<chat_message> conv = {{"system", "Be brief. ", {}, {}, {}}, {"user", " Hi", {}, {}, {}},
                                            {"assistant", "Hello!", {}, {}, {}}};
    CHECK(t.render(conv, true) ==
          "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
          "\n"
          "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
          "\n"
          "Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
          "\n"
          "Hello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
          "\n");
    // tools: Llama-3.1's wording in the system turn, calls as {"name", "parameters"}, results as ipython
    const std::string with_tools = t.render(tool_conversation(), true, k_tools);
    CHECK(with_tools.rfind("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nYou are a bot.\n\n"
                           "You have access to the following functions.",
                           0) == 0);
    CHECK(with_tools.find("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": "
                          "{\"city\": \"Paris\", \"unit\": \"c\"}}<|eot_id|>") != std::string::npos);
    CHECK(with_tools.find("<|start_header_id|>ipython<|end_header_id|>\n\n{\"temp\": 21}<|eot_id|>") != std::string::npos);
    CHECK(with_tools.find("    \"type\": \"function\",\n") != std::string::npos);  // tools printed with indent 4
}

TEST_CASE("Llama-2 [INST] format") {
    const auto t = chat_template::from_jinja("{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}");
    CHECK(t.format() == chat_format::llama2);
    const std::vector<chat_message> conv = {{"system", "S", {}, {}, {}}, {"user", "Hi", {}, {}, {}},
                                            {"assistant", "Hello", {}, {}, {}}, {"user", "Bye", {}, {}, {}}};
    CHECK(t.render(conv, true) == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST]");
    CHECK_THROWS_AS(t.render({{"user", "a", {}, {}, {}}, {"user", "b", {}, {}, {}}}, true), slm::user_error);
    CHECK_THROWS_AS(t.render(tool_conversation(), true), slm::user_error);
    CHECK(t.stop_strings() == std::vector<std::string>{"</s>"});
}

TEST_CASE("format detection defaults to ChatML") {
    CHECK(chat_template::from_jinja("").format() == chat_format::chatml);
    CHECK(chat_template::from_jinja("").default_system().empty());
    CHECK(chat_template::from_jinja("{{ messages }}").format() == chat_format::chatml);
}

TEST_CASE("SmolLM2's GGUF template and stop ids") {
    const std::string path = slm::models_dir() + "/SmolLM2-135M-Instruct.Q4_1.gguf";
    REQUIRE_MESSAGE(std::filesystem::exists(path),
                    "SmolLM2 GGUF not found at " << path << ": run `make test` or scripts/fetch-models.sh to fetch it");
    gguf_reader g(path);
    const auto tok = tokenizer::from_gguf(g);
    CHECK(tok.chat_template() == k_smollm2_jinja);
    const auto t = chat_template::from_jinja(tok.chat_template());
    CHECK(t.default_system() == "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    const auto stops = t.stop_ids(tok);
    CHECK(std::find(stops.begin(), stops.end(), 2) != stops.end());  // <|im_end|>
    // the rendered prompt tokenizes with the markers as single tokens
    const auto ids = tok.encode(t.render({{"user", "Hi", {}, {}, {}}}, true), false, true);
    CHECK(ids.front() == 1);
    CHECK(std::count(ids.begin(), ids.end(), 1) == 3);
    CHECK(std::count(ids.begin(), ids.end(), 2) == 2);
}
