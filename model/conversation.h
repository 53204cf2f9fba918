// A stored LLM call as a conversation (request messages, tools, the logged answer) and its
// encoding into token ids for training and evaluation: prompt with the model's template, target
// with the family's response codec, oldest history dropped to fit a token budget.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/chat-template.h"

namespace slm::model {

class tokenizer;

/// A stored call, as JSON text (the fields of store::call_row).
struct logged_call {
    std::string_view messages_json;               ///< request messages (OpenAI form)
    std::string_view tools_json;                  ///< tools array or ""
    std::optional<std::string_view> response_text;///< the answer's text, if any
    std::string_view response_tool_calls_json;    ///< [{name, arguments}] (arguments parsed JSON) or ""
};

/// A call ready to render.
struct conversation {
    std::vector<chat_message> messages;  ///< the request: system/user/assistant(+tool_calls)/tool
    std::string tools_json;              ///< "" when no tools
    chat_message response;               ///< the logged assistant answer (content and/or tool_calls)
};

/// Reads a stored call. Messages: roles kept except "developer" -> "system" and legacy
/// "function" -> "tool"; content null -> "", text parts joined by "\n"; assistant tool_calls
/// ({function: {name, arguments}} or legacy function_call) with arguments as canonical_json()
/// text. user_error naming the field (messages[2].tool_calls[0].function.name, ...) for bad
/// JSON, wrong types, non-text content parts.
conversation conversation_from_call(const logged_call& c);

/// Token ids of one conversation.
struct encoded_example {
    std::vector<int32_t> ids;  ///< prompt ids followed by target ids
    /// ids[0, prompt_len) carry no loss; ids[prompt_len, end) do (the response body and the turn's
    /// end marker token(s)). With with_target=false, prompt_len == ids.size().
    int64_t prompt_len = 0;
    int cut_turns = 0;  ///< history messages dropped to fit the budget
    /// false: even system + tools + the last user turn (and what follows it) + the response exceed
    /// the budget; ids are then those of that shortest form (caller counts and skips it).
    bool fits = true;
};

/// How to encode.
struct encode_options {
    int64_t max_tokens = 2048;  ///< budget for prompt + target ids
    bool with_target = true;    ///< false: the prompt only (eval), generation prompt appended
};

/// Prompt = tmpl.render(messages, add_generation_prompt=true, tools) encoded with add_special=false,
/// parse_special=true (as language_model::encode_chat). Target = response_codec render of the
/// response + end marker, encoded on its own with the same flags and appended (Llama-2: the ids the
/// joint text has after the prompt, since SentencePiece would put a second "▁" in front of a
/// separately encoded " answer"). So prompt text + target text == tmpl.render(messages + {response},
/// false, tools), except that ChatML's full render has one more "\n" after the final <|im_end|>.
/// Too long: whole oldest history exchanges are dropped (a user message with the assistant turns
/// and tool results that follow it, up to the next user message; never the system message, the
/// tools, or the last user message and what follows it) and counted in cut_turns. user_error from
/// the template or codec for a conversation the format cannot express.
encoded_example encode_conversation(const tokenizer& tok, const chat_template& tmpl, const conversation& c,
                                    const encode_options& o);

}  // namespace slm::model
