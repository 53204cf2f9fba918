// Internal to slm_collector: pieces shared by the normalizer's files (OTLP span conversion, the
// quarantine raw-text cap). Other modules see only collector.h.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "collector/json-dom.h"

namespace slm::collector {

/// What an OTLP span is to collect.
enum class span_verdict {
    not_a_call,  ///< not a GenAI inference span, or one recorded without content: skipped
    call,        ///< converted: `record` holds a Data-Flywheel-style JSON record (unscrubbed)
    broken,      ///< a GenAI inference span that cannot be converted: `why` says why
};

/// Converts one OTLP JSON span (`resourceSpans[].scopeSpans[].spans[]`) to a flywheel record
/// {timestamp, latency_ms, workload_id, client_id, request, response}. Reads the GenAI semantic
/// conventions: gen_ai.input/output.messages, gen_ai.system_instructions, gen_ai.tool.definitions
/// (span attributes or the gen_ai.client.inference.operation.details event), the older
/// gen_ai.content.prompt/completion events, per-message events (gen_ai.*.message, gen_ai.choice)
/// and OpenLLMetry's indexed gen_ai.prompt.N.* / gen_ai.completion.N.* attributes.
span_verdict otel_span_to_record(const json::document& d, const json::node& span, const json::node* resource_attrs,
                                 std::string& record, std::string& why);

/// A ShareGPT or Alpaca record (LLaMA-Factory's dataset forms) rewritten as fine-tuning-form
/// records {"messages":[...], "tools":[...]?} (unscrubbed) that normalize.cpp treats like any other.
struct llamafactory_calls {
    std::vector<std::string> records;  ///< one per assistant turn, in order
    std::vector<size_t> turns;         ///< conversations[] index of each record's answer (ShareGPT)
    std::string reason, detail;        ///< why the record was refused (records then empty)
};

/// ShareGPT {conversations:[{from,value}], system?, tools?}: each gpt / function_call turn becomes
/// one record whose messages are the turns before it plus that turn as the final assistant message.
/// human -> user, gpt -> assistant, function_call (JSON {name, arguments} or a list of them) ->
/// assistant tool_calls with ids call_1, call_2... counted over the record, observation -> tool
/// answering the previous function_call's next id, system -> system. `tools` (a JSON string or an
/// array) is given in OpenAI form, bare function objects wrapped as {"type":"function","function"}.
/// Any bad turn refuses the whole record (false), so a conversation is never stored half.
bool sharegpt_to_records(const json::document& d, const json::node& root, llamafactory_calls& out);

/// Alpaca {instruction, input?, output, system?, history?: [[query, answer]...]}: one record,
/// system, then the history pairs as user/assistant, then user "instruction\ninput" (just the
/// instruction when input is empty), then the output as the assistant answer.
bool alpaca_to_record(const json::document& d, const json::node& root, llamafactory_calls& out);

/// Largest raw text stored for a quarantined record.
constexpr size_t quarantine_raw_cap = 1 << 20;

}  // namespace slm::collector
