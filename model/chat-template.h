// Chat templates: renders an OpenAI-style conversation (messages, tool calls, tools) into the
// prompt text a model was trained on (ChatML, Llama-3, Llama-2 [INST]), plus its stop markers.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::model {

class tokenizer;

/// One tool call made by the assistant (OpenAI "tool_calls" entry).
struct tool_call {
    std::string id;         ///< "call_abc" (not rendered by the templates we support)
    std::string name;       ///< function name
    std::string arguments;  ///< JSON text of the arguments object, as OpenAI sends it
};

/// One message of a conversation.
struct chat_message {
    chat_message() = default;
    chat_message(std::string role_, std::string content_, std::vector<tool_call> tool_calls_ = {},
                 std::string tool_call_id_ = {}, std::string name_ = {})
        : role(std::move(role_)), content(std::move(content_)), tool_calls(std::move(tool_calls_)),
          tool_call_id(std::move(tool_call_id_)), name(std::move(name_)) {}

    std::string role;                   ///< "system", "user", "assistant" or "tool"
    std::string content;                ///< text (may be empty for an assistant turn that only calls tools)
    std::vector<tool_call> tool_calls;  ///< assistant turns only
    std::string tool_call_id;           ///< tool results: the call they answer (informational)
    std::string name;                   ///< tool results: the tool's name (informational)
};

/// Prompt formats we render natively.
enum class chat_format {
    chatml,  ///< <|im_start|>role\n...<|im_end|>\n  (SmolLM2, Qwen2/2.5; tools the Qwen2.5 way)
    llama3,  ///< <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
    llama2,  ///< <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s>
};

/// The body of an assistant turn exactly as chat_template::render prints it in `format`: the
/// text after the generation prompt ("<|im_start|>assistant\n", "...<|end_header_id|>\n\n",
/// "[/INST] ") and before the end marker. ChatML: content, then one
/// "<tool_call>\n{...}\n</tool_call>" block per call (each after "\n" unless it opens the body);
/// Llama-3: the trimmed content, or the one call as {"name": ..., "parameters": ...} (the content is
/// then not printed); Llama-2: the trimmed content. user_error for what the format cannot print
/// (tool calls in Llama-2, several calls in one Llama-3 turn).
std::string render_assistant_body(chat_format format, const chat_message& assistant);

class chat_template {
public:
    /// Picks the format from a Jinja chat template's markers (GGUF tokenizer.chat_template or
    /// tokenizer_config.json chat_template), and takes the default system prompt it inserts
    /// when the conversation has none (SmolLM2, Qwen2.5). Empty or unknown text -> ChatML
    /// without a default system prompt (logged at verbose level).
    static chat_template from_jinja(std::string_view jinja);
    explicit chat_template(chat_format format, std::string default_system = {});

    chat_format format() const { return format_; }
    /// "chatml", "llama3", "llama2".
    const char* format_name() const;
    /// System prompt used when the conversation starts without one ("" = none).
    const std::string& default_system() const { return default_system_; }

    /// The prompt text. `tools_json` is an OpenAI "tools" JSON array (or empty); with
    /// `add_generation_prompt` the text ends with the assistant turn's header. The text includes
    /// BOS when the format does (Llama-3, Llama-2): encode it with add_special=false and
    /// parse_special=true. Tool-call arguments that are not JSON are printed as a JSON string.
    /// Throws slm::user_error for a conversation the format cannot express (tools in Llama-2,
    /// non-alternating Llama-2 turns) or a `tools_json` that is not a JSON array.
    std::string render(const std::vector<chat_message>& messages, bool add_generation_prompt,
                       std::string_view tools_json = {}) const;

    /// Text that ends an assistant turn ("<|im_end|>", "<|eot_id|>", "</s>").
    const std::vector<std::string>& stop_strings() const { return stops_; }
    /// Stop strings that are single tokens in `tok`, plus its end-of-generation ids.
    std::vector<int32_t> stop_ids(const tokenizer& tok) const;

private:
    chat_format format_;
    std::string default_system_;
    std::vector<std::string> stops_;
};

}  // namespace slm::model
