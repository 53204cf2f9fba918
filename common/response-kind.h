// What an LLM response is — a tool call, JSON, code, prose or nothing — decided one way for
// collect (the task text's "response:" line), cluster (kind shares, suitability) and eval.
#pragma once
#include <string_view>

namespace slm {

enum class response_kind { tool_call, json, code, prose, empty };

/// "tool_call", "json", "code", "prose", "empty".
const char* response_kind_name(response_kind k);

/// Classifies a response by its text and its tool calls (a JSON array text, as the store keeps
/// them). In order, on the text without surrounding whitespace:
///   tool_call  `tool_calls_json` is neither empty, "[]" nor "null" (whatever the text says);
///   empty      no text;
///   json       the whole text is a JSON object or array, or one fenced block (``` or ```json,
///              nothing after the closing fence) whose body is one; JSON after leading words
///              ("Sure: {...}") is not;
///   code       a fenced block anywhere; a first line that opens a program (def, class, import,
///              #include, SELECT, ...); or three or more lines, at least half of them statements;
///   prose      the rest (a bare JSON scalar such as "42" included).
response_kind classify_response(std::string_view text, std::string_view tool_calls_json);

}  // namespace slm
