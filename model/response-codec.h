// One codec per chat family between an assistant answer (text and tool calls) and the text the
// model writes for it: finetune renders training targets with it, eval parses generated text back.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "model/chat-template.h"

namespace slm::model {

/// What parse() read from generated text.
struct parsed_response {
    std::string text;                 ///< the answer's text (ChatML: before the tool calls)
    std::vector<tool_call> tool_calls;///< arguments as canonical_json() text (ids empty)
    bool ok = true;                   ///< false: a tool call was malformed (the good ones are still listed)
    /// Short kind of the first problem: "invalid_json" (a block that is not JSON), "missing_name",
    /// "arguments_not_json" (arguments given as a string that is not JSON; kept as that string),
    /// "bad_arguments" (arguments neither an object nor a string), "not_an_object".
    std::string error;
};

/// Renders and parses assistant answers in one chat family's form:
///  - ChatML (Qwen2.5): content, then `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`
///    blocks, one per call;
///  - Llama-3: the text, or one `{"name": ..., "parameters": {...}}` object;
///  - Llama-2: text only.
class response_codec {
public:
    static response_codec for_format(chat_format f);
    chat_format format() const { return format_; }

    /// The assistant turn's body exactly as chat_template::render prints it (no header, no end
    /// marker): render_assistant_body(). user_error for what the format cannot express.
    std::string render(const chat_message& assistant) const;
    /// The text that ends the turn after the body, as the template prints it: "<|im_end|>",
    /// "<|eot_id|>", " </s>" (Llama-2 puts a space before it).
    const std::string& end_marker() const { return end_; }
    /// Everything the model writes after the generation prompt for this answer: render() +
    /// end_marker() (Llama-2: with the space its template puts after "[/INST]" in front).
    std::string target(const chat_message& assistant) const;

    /// Inverse of render() for generated text (cut at the stop string or not: a trailing end
    /// marker is dropped). Lenient where small models wander: whitespace around and inside the
    /// blocks, a missing </tool_call> (the block then runs to the next <tool_call> or the end),
    /// ``` / ```json fences around the JSON, "parameters" for "arguments" and back, arguments
    /// given as a JSON string, Llama-3.1's <|python_tag|> prefix.
    parsed_response parse(std::string_view generated) const;

private:
    explicit response_codec(chat_format f);
    chat_format format_;
    std::string end_;
};

/// Tool-call arguments in one comparable form: JSON text -> compact, keys sorted byte-wise, UTF-8
/// kept (what the collector stores up to number spelling); text that is not JSON comes back as is.
std::string canonical_json(std::string_view json_text);

}  // namespace slm::model
