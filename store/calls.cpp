// The calls and quarantine tables: collect's insert path (statements prepared once, text bound
// without copies) and the reads of later stages (task texts for clustering, whole calls).
#include "common/common.h"
#include "store/stages.h"

namespace slm::store {

// ---- writing ----------------------------------------------------------------------------------

call_writer::call_writer(db& d, int64_t run_id)
    : db_(d),
      run_id_(run_id),
      call_(d.prepare(
          "INSERT OR IGNORE INTO calls (content_id, response_id, run_id, source_file, source_line, format, "
          "workload_id, client_id, timestamp, model, messages, tools, response_text, response_tool_calls, "
          "finish_reason, latency_ms, prompt_tokens, completion_tokens, task_text, scrubbed, flags, response_format) "
          "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")),
      quar_(d.prepare("INSERT OR IGNORE INTO quarantine (run_id, source_file, source_line, raw_hash, reason, "
                      "detail, raw) VALUES (?,?,?,?,?,?,?)")) {}

bool call_writer::insert(const call_insert& c) {
    constexpr bool null_if_empty = true;
    call_.bind_static(1, c.content_id)
        .bind_static(2, c.response_id, null_if_empty)
        .bind(3, run_id_)
        .bind_static(4, c.source_file)
        .bind(5, c.source_line)
        .bind_static(6, c.format)
        .bind_static(7, c.workload_id, null_if_empty)
        .bind_static(8, c.client_id, null_if_empty)
        .bind_static(9, c.timestamp, null_if_empty)
        .bind_static(10, c.model, null_if_empty)
        .bind_static(11, c.messages)
        .bind_static(12, c.tools, null_if_empty);
    if (c.response_text)
        call_.bind_static(13, *c.response_text);
    else
        call_.bind_null(13);
    call_.bind_static(14, c.response_tool_calls, null_if_empty)
        .bind_static(15, c.finish_reason, null_if_empty)
        .bind(16, c.latency_ms)
        .bind(17, c.prompt_tokens)
        .bind(18, c.completion_tokens)
        .bind_static(19, c.task_text)
        .bind_static(20, c.scrubbed)
        .bind_static(21, c.flags)
        .bind_static(22, c.response_format, null_if_empty);
    call_.run();
    return db_.changes() == 1;
}

bool call_writer::insert(const quarantine_insert& q) {
    quar_.bind(1, run_id_)
        .bind_static(2, q.source_file)
        .bind(3, q.source_line)
        .bind_static(4, q.raw_hash)
        .bind_static(5, q.reason)
        .bind_static(6, q.detail)
        .bind_static(7, q.raw);
    quar_.run();
    return db_.changes() == 1;
}

// ---- reading ----------------------------------------------------------------------------------

void for_each_call_text(db& d, const call_filter& f, const std::function<void(const call_text_view&)>& fn) {
    std::string sql = "SELECT id, COALESCE(response_id, ''), COALESCE(workload_id, ''), task_text";
    if (f.system_prompt)
        sql += ", COALESCE((SELECT json_extract(value, '$.content') FROM json_each(calls.messages) "
               "WHERE json_extract(value, '$.role') = 'system' LIMIT 1), '')";
    sql += " FROM calls";
    if (!f.workload.empty()) sql += " WHERE workload_id = ?";
    sql += " ORDER BY id";
    auto s = d.prepare(sql);
    if (!f.workload.empty()) s.bind(1, f.workload);
    call_text_view v;
    while (s.step()) {
        v.id = s.get_int(0);
        v.response_id = s.get_view(1);
        v.workload_id = s.get_view(2);
        v.task_text = s.get_view(3);
        v.system_prompt = f.system_prompt ? s.get_view(4) : std::string_view();
        fn(v);
    }
}

std::vector<call_brief> get_call_briefs(db& d, const std::vector<int64_t>& ids) {
    auto s = d.prepare(
        "SELECT COALESCE(response_text, ''), COALESCE(response_tool_calls, ''), prompt_tokens, "
        "completion_tokens, task_text FROM calls WHERE id = ?");
    std::vector<call_brief> out;
    out.reserve(ids.size());
    for (int64_t id : ids) {
        s.bind(1, id);
        if (!s.step()) throw internal_error(fmt::format("call {} does not exist in {}", id, d.path()));
        call_brief b;
        b.id = id;
        b.response_text = s.get_text(0);
        b.response_tool_calls = s.get_text(1);
        if (!s.is_null(2)) b.prompt_tokens = s.get_int(2);
        if (!s.is_null(3)) b.completion_tokens = s.get_int(3);
        b.task_text = s.get_text(4);
        out.push_back(std::move(b));
        s.reset();
    }
    return out;
}

namespace {

constexpr const char* call_columns =
    "c.id, c.content_id, COALESCE(c.response_id, ''), COALESCE(c.workload_id, ''), COALESCE(c.client_id, ''), "
    "COALESCE(c.timestamp, ''), COALESCE(c.model, ''), c.messages, COALESCE(c.tools, ''), c.response_text, "
    "COALESCE(c.response_tool_calls, ''), COALESCE(c.finish_reason, ''), c.prompt_tokens, c.completion_tokens, "
    "c.task_text, c.latency_ms, COALESCE(c.response_format, '')";

call_row read_call(const stmt& s) {
    call_row r;
    r.id = s.get_int(0);
    r.content_id = s.get_text(1);
    r.response_id = s.get_text(2);
    r.workload_id = s.get_text(3);
    r.client_id = s.get_text(4);
    r.timestamp = s.get_text(5);
    r.model = s.get_text(6);
    r.messages = s.get_text(7);
    r.tools = s.get_text(8);
    r.response_text = s.get_opt_text(9);
    r.response_tool_calls = s.get_text(10);
    r.finish_reason = s.get_text(11);
    if (!s.is_null(12)) r.prompt_tokens = s.get_int(12);
    if (!s.is_null(13)) r.completion_tokens = s.get_int(13);
    r.task_text = s.get_text(14);
    if (!s.is_null(15)) r.latency_ms = s.get_double(15);
    r.response_format = s.get_text(16);
    return r;
}

}  // namespace

std::optional<call_row> get_call(db& d, int64_t call_id) {
    auto s = d.prepare(fmt::format("SELECT {} FROM calls c WHERE c.id = ?", call_columns));
    s.bind(1, call_id);
    if (!s.step()) return std::nullopt;
    return read_call(s);
}

std::vector<call_row> calls_of_cluster(db& d, int64_t cluster_id) {
    auto s = d.prepare(fmt::format(
        "SELECT {} FROM cluster_members m JOIN calls c ON c.id = m.call_id WHERE m.cluster_id = ? ORDER BY c.id",
        call_columns));
    s.bind(1, cluster_id);
    std::vector<call_row> out;
    while (s.step()) out.push_back(read_call(s));
    return out;
}

}  // namespace slm::store
