// Internal to slm_collector: pieces shared by the normalizer's files (OTLP span conversion, the
// quarantine raw-text cap). Other modules see only collector.h.
#pragma once
#include <string>
#include <string_view>

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

/// Largest raw text stored for a quarantined record.
constexpr size_t quarantine_raw_cap = 1 << 20;

}  // namespace slm::collector
