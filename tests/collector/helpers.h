// Helpers of the collector tests: counting rows, a digest of everything collect stored, writing
// plain and gzip files, and a generator of a large log with duplicates, PII and malformed lines.
#pragma once
#include <doctest/doctest.h>
#include <zlib.h>

#include <fstream>
#include <string>

#include "collector/collector.h"
#include "store/store.h"

namespace slm::test {

inline int64_t count(store::db& d, const std::string& sql) {
    auto s = d.prepare(sql);
    REQUIRE(s.step());
    return s.get_int(0);
}

/// Everything stored about calls and quarantine except row ids and run ids, as one hash.
inline std::string content_digest(store::db& d) {
    collector::hasher h;
    auto s = d.prepare(
        "SELECT content_id, ifnull(response_id,''), source_file, source_line, format, ifnull(workload_id,''), "
        "ifnull(client_id,''), ifnull(timestamp,''), ifnull(model,''), messages, ifnull(tools,''), "
        "ifnull(response_text,'<null>'), ifnull(response_tool_calls,''), ifnull(finish_reason,''), "
        "ifnull(latency_ms,-1), ifnull(prompt_tokens,-1), ifnull(completion_tokens,-1), task_text, scrubbed, flags "
        "FROM calls ORDER BY content_id");
    while (s.step())
        for (int c = 0; c < s.columns(); ++c) {
            h.update(s.get_text(c));
            h.update("\x1f");
        }
    auto q = d.prepare("SELECT source_file, source_line, raw_hash, reason, detail, raw FROM quarantine "
                       "ORDER BY source_file, source_line, raw_hash");
    while (q.step())
        for (int c = 0; c < q.columns(); ++c) {
            h.update(q.get_text(c));
            h.update("\x1e");
        }
    return h.hex();
}

inline void write_file(const std::string& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary);
    f << text;
}

inline void write_gz(const std::string& path, const std::string& text) {
    gzFile g = gzopen(path.c_str(), "wb");
    REQUIRE(g);
    REQUIRE(gzwrite(g, text.data(), static_cast<unsigned>(text.size())) == static_cast<int>(text.size()));
    gzclose(g);
}

/// `n` flywheel records (about 1 KB each) with distinct content, plus every 50th line repeated
/// (a duplicate) and every 97th line followed by a truncated one (quarantined).
inline std::string generated_log(int n) {
    std::string out;
    out.reserve(static_cast<size_t>(n) * 1100);
    std::string prev;
    for (int i = 0; i < n; ++i) {
        std::string id = std::to_string(i);
        std::string line =
            R"({"timestamp":"2026-11-25T10:00:00.000Z","workload_id":"ops.tool_caller","client_id":"c)" + std::to_string(i % 3) +
            R"(","request":{"model":"gpt-4o","messages":[{"role":"system","content":"You are an operations agent. Call one tool per command, copy arguments exactly from the command, never answer in prose when a tool fits."},)"
            R"({"role":"user","content":"Ticket )" + id + R"(: notify user)" + id + R"(@example.com that order #)" + id +
            R"( shipped; their phone is +1 415 555 )" + std::to_string(1000 + i % 9000) +
            R"("}],"tools":[{"type":"function","function":{"name":"send_email","description":"Send an email","parameters":{"type":"object","properties":{"to":{"type":"string"},"body":{"type":"string"}}}}}]},)"
            R"("response":{"id":"chatcmpl-gen)" + id + R"(","object":"chat.completion","model":"gpt-4o-2024-08-06","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_)" + id +
            R"(","type":"function","function":{"name":"send_email","arguments":"{\"to\": \"user)" + id +
            R"(@example.com\", \"body\": \"Order )" + id + R"( shipped\"}"}}]}}],"usage":{"prompt_tokens":180,"completion_tokens":30}},"latency_ms":)" +
            std::to_string(300 + i % 700) + "}";
        out += line;
        out += '\n';
        if (i % 50 == 49) {
            out += prev;
            out += '\n';
        }
        if (i % 97 == 96) {
            out += line.substr(0, line.size() / 2);
            out += '\n';
        }
        prev = line;
    }
    return out;
}

}  // namespace slm::test
