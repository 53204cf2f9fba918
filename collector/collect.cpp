// The collect run: inputs -> chunks of lines -> normalized, scrubbed records -> batched INSERT OR
// IGNORE transactions, with the runs row, progress, SIGINT/SIGTERM handling and the summary.
// With threads > 1 a producer thread reads and normalizes while this thread writes SQLite.
#include <omp.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "collector/collector.h"
#include "collector/json-dom.h"
#include "collector/json-splitter.h"
#include "collector/line-reader.h"
#include "common/common.h"
#include "store/stages.h"

namespace slm::collector {

// SIGINT/SIGTERM: the run's store::run_scope (on_signal::stop) sets the flag; the reader and the
// writer stop at the next record, the open batch is committed and the run marked 'interrupted'.
bool stop_requested() { return store::stop_requested(); }

namespace {

// ---- chunks of input ------------------------------------------------------------------------------

struct chunk_item {
    size_t off = 0, len = 0;
    int64_t line = 0;
    bool too_long = false;
    std::string reason, detail;  // set: quarantined as is (a JSON document the splitter could not cut)
};

struct work_chunk {
    size_t file = 0;  // index into the input list
    std::string text;
    std::vector<chunk_item> items;
    std::vector<record_result> results;
    int64_t lines = 0, blank = 0;  // counted when read
    uint64_t consumed = 0;         // input bytes consumed when the chunk was closed (all files)
    bool last_of_file = false;
    void clear() {
        text.clear();
        items.clear();
        lines = blank = 0;
        last_of_file = false;
    }
};

constexpr size_t chunk_bytes = 4 << 20;
constexpr size_t chunk_lines = 4096;
constexpr size_t document_read = 1 << 20;  // bytes handed to the splitter at a time

bool only_brace(std::string_view line) {
    size_t a = 0, b = line.size();
    while (a < b && (line[a] == ' ' || line[a] == '\t')) ++a;
    while (b > a && (line[b - 1] == ' ' || line[b - 1] == '\t')) --b;
    return b - a == 1 && (line[a] == '{' || line[a] == '[');
}

// Reads the inputs into chunks and normalizes them (OpenMP over lines when threads > 1).
class producer {
public:
    producer(const std::vector<input_file>& inputs, const collect_params& p)
        : inputs_(inputs), p_(p), threads_(std::max(1, p.threads)) {
        for (int t = 0; t < threads_; ++t)
            norms_.push_back(std::make_unique<normalizer>(
                normalize_options{p.format, p.workload, p.client, p.scrub}));
    }

    /// Fills `c` with the next chunk, normalized; false when all input is read (or stop requested).
    bool next(work_chunk& c) {
        c.clear();
        if (!read_chunk(c)) return false;
        normalize(c);
        c.consumed = consumed_done_ + (reader_ ? reader_->consumed() : 0);
        return true;
    }

    int64_t files_opened() const { return files_opened_; }
    uint64_t bytes() const { return consumed_done_ + (reader_ ? reader_->consumed() : 0); }

private:
    bool read_chunk(work_chunk& c) {
        for (;;) {
            if (stop_requested()) return false;
            if (!reader_) {
                if (next_file_ >= inputs_.size()) return false;
                cur_ = next_file_++;
                reader_ = std::make_unique<line_reader>(inputs_[cur_], static_cast<size_t>(p_.max_line_bytes));
                ++files_opened_;
                seen_content_ = false;
                log_verbose("collect: reading {}{}", inputs_[cur_].display, reader_->gzip() ? " (gzip)" : "");
                // a JSON array document (pretty-printed or on one line of any length): split it
                if (reader_->peek_content() == '[')
                    splitter_ = std::make_unique<json_splitter>(static_cast<size_t>(p_.max_line_bytes), 1);
            }
            c.file = cur_;
            if (splitter_) return read_document(c);
            std::string_view line;
            bool too_long;
            while (c.text.size() < chunk_bytes && c.items.size() < chunk_lines) {
                if (!reader_->next(line, too_long)) {
                    close_file(c);
                    return true;
                }
                ++c.lines;
                if (!too_long && is_blank(line)) {
                    ++c.blank;
                    continue;
                }
                if (!seen_content_ && !too_long && only_brace(line)) {
                    // a pretty-printed JSON document: one record per top-level value
                    --c.lines;  // a document counts records, not lines
                    splitter_ = std::make_unique<json_splitter>(static_cast<size_t>(p_.max_line_bytes), reader_->line_no());
                    doc_buf_.assign(line);
                    doc_buf_.push_back('\n');
                    splitter_->feed(doc_buf_, [&](const split_record& r) { add_record(c, r); });
                    return read_document(c);
                }
                seen_content_ = true;
                c.items.push_back({c.text.size(), line.size(), reader_->line_no(), too_long, {}, {}});
                c.text.append(line);
                if (stop_requested()) return true;
            }
            return true;
        }
    }

    static bool is_blank(std::string_view l) {
        for (char ch : l)
            if (ch != ' ' && ch != '\t' && ch != '\r') return false;
        return true;
    }

    void close_file(work_chunk& c) {
        consumed_done_ += reader_->consumed();
        reader_.reset();
        c.last_of_file = true;
    }

    // A JSON document, streamed: values in a row, a top-level array giving one record per
    // element; line numbers are those where each record starts. Memory: one chunk and one record.
    bool read_document(work_chunk& c) {
        auto add = [&](const split_record& r) { add_record(c, r); };
        while (c.text.size() < chunk_bytes && c.items.size() < chunk_lines) {
            if (stop_requested()) return true;
            doc_buf_.clear();
            if (reader_->read_some(doc_buf_, document_read) == 0) {
                splitter_->finish(add);
                splitter_.reset();
                close_file(c);
                return true;
            }
            splitter_->feed(doc_buf_, add);
        }
        return true;
    }

    static void add_record(work_chunk& c, const split_record& r) {
        ++c.lines;
        c.items.push_back({c.text.size(), r.text.size(), r.line, false, r.reason, r.detail});
        c.text.append(r.text);
    }

    void normalize(work_chunk& c) {
        const std::string& file = inputs_[c.file].display;
        c.results.resize(std::max(c.results.size(), c.items.size()));
        const int n = static_cast<int>(c.items.size());
        auto one = [&](int i, normalizer& nm) {
            record_result& r = c.results[static_cast<size_t>(i)];
            r.clear();
            const chunk_item& it = c.items[static_cast<size_t>(i)];
            std::string_view text(c.text.data() + it.off, it.len);
            if (!it.reason.empty())
                nm.quarantine(text, file, it.line, it.reason, it.detail, r);
            else if (it.too_long)
                nm.quarantine(text, file, it.line, "line_too_long",
                              fmt::format("line longer than {} bytes (--max-line-bytes)", p_.max_line_bytes), r);
            else
                nm.process(text, file, it.line, r);
        };
        if (threads_ <= 1 || n < 64) {
            for (int i = 0; i < n; ++i) one(i, *norms_[0]);
            return;
        }
        std::exception_ptr err;
        std::mutex err_mu;
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads_)
        for (int i = 0; i < n; ++i) {
            try {
                one(i, *norms_[static_cast<size_t>(omp_thread())]);
            } catch (...) {
                std::lock_guard<std::mutex> lk(err_mu);
                if (!err) err = std::current_exception();
            }
        }
        if (err) std::rethrow_exception(err);
    }

    static int omp_thread();

    const std::vector<input_file>& inputs_;
    const collect_params& p_;
    int threads_;
    std::vector<std::unique_ptr<normalizer>> norms_;
    std::unique_ptr<line_reader> reader_;
    std::unique_ptr<json_splitter> splitter_;  // set while the current file is a JSON document
    std::string doc_buf_;
    size_t next_file_ = 0, cur_ = 0;
    int64_t files_opened_ = 0;
    uint64_t consumed_done_ = 0;
    bool seen_content_ = false;
};

int producer::omp_thread() { return omp_get_thread_num(); }

// ---- SQLite writing -------------------------------------------------------------------------------

// text is bound without copying (store::call_writer): the records outlive the insert
class writer {
public:
    writer(store::db& d, int64_t run_id) : w_(d, run_id) {}

    bool insert(const call_record& c) {
        store::call_insert r;
        r.content_id = c.content_id;
        r.response_id = c.response_id;
        r.source_file = c.source_file;
        r.source_line = c.source_line;
        r.format = format_name(c.format);
        r.workload_id = c.workload_id;
        r.client_id = c.client_id;
        r.timestamp = c.timestamp;
        r.model = c.model;
        r.messages = c.messages;
        r.tools = c.tools;
        r.response_format = c.response_format;
        if (c.has_response_text) r.response_text = c.response_text;
        r.response_tool_calls = c.response_tool_calls;
        r.finish_reason = c.finish_reason;
        r.latency_ms = c.latency_ms;
        r.prompt_tokens = c.prompt_tokens;
        r.completion_tokens = c.completion_tokens;
        r.task_text = c.task_text;
        r.scrubbed = c.scrubbed;
        r.flags = c.flags;
        return w_.insert(r);
    }

    bool insert(const quarantine_record& q) {
        return w_.insert(store::quarantine_insert{q.source_file, q.source_line, q.raw_hash, q.reason, q.detail, q.raw});
    }

private:
    store::call_writer w_;
};

// ---- a bounded queue between the producer thread and the writer ------------------------------------

class chunk_queue {
public:
    explicit chunk_queue(size_t cap) : cap_(cap) {}
    // producer side
    bool push(std::unique_ptr<work_chunk> c) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return q_.size() < cap_ || closed_; });
        if (closed_) return false;
        q_.push_back(std::move(c));
        cv_.notify_all();
        return true;
    }
    void finish(std::exception_ptr err) {
        std::lock_guard<std::mutex> lk(mu_);
        done_ = true;
        err_ = err;
        cv_.notify_all();
    }
    // writer side: nullptr when the producer is done
    std::unique_ptr<work_chunk> pop() {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return !q_.empty() || done_; });
        if (q_.empty()) {
            if (err_) std::rethrow_exception(err_);
            return nullptr;
        }
        auto c = std::move(q_.front());
        q_.pop_front();
        cv_.notify_all();
        return c;
    }
    void close() {  // writer gives up: unblock the producer
        std::lock_guard<std::mutex> lk(mu_);
        closed_ = true;
        cv_.notify_all();
    }
    // recycled chunks keep their buffers
    std::unique_ptr<work_chunk> spare() {
        std::lock_guard<std::mutex> lk(mu_);
        if (spares_.empty()) return std::make_unique<work_chunk>();
        auto c = std::move(spares_.back());
        spares_.pop_back();
        return c;
    }
    void recycle(std::unique_ptr<work_chunk> c) {
        std::lock_guard<std::mutex> lk(mu_);
        spares_.push_back(std::move(c));
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::unique_ptr<work_chunk>> q_;
    std::vector<std::unique_ptr<work_chunk>> spares_;
    size_t cap_;
    bool done_ = false, closed_ = false;
    std::exception_ptr err_;
};

void add_counts(std::map<std::string, int64_t>& m, const std::array<uint32_t, pii_kind_count>& counts) {
    for (int k = 0; k < pii_kind_count; ++k)
        if (counts[static_cast<size_t>(k)]) m[kind_info(static_cast<pii>(k)).name] += counts[static_cast<size_t>(k)];
}

}  // namespace

// ---- params and summary JSON ------------------------------------------------------------------

nlohmann::json to_json(const collect_params& p) {
    return {{"paths", p.paths},   {"format", p.format}, {"workload", p.workload},
            {"client", p.client}, {"scrub", p.scrub ? "on" : "off"}, {"strict", p.strict},
            {"batch", p.batch},   {"threads", p.threads}, {"max_line_bytes", p.max_line_bytes}};
}

nlohmann::json to_json(const collect_summary& s) {
    double mb = static_cast<double>(s.bytes) / 1e6;
    return {{"run_id", s.run_id},
            {"status", s.status},
            {"files", s.files},
            {"bytes", s.bytes},
            {"lines", s.lines},
            {"blank_lines", s.blank},
            {"calls", s.calls},
            {"ingested", s.ingested},
            {"duplicate", s.duplicate},
            {"quarantined", s.quarantined},
            {"quarantine_new", s.quarantine_new},
            {"quarantined_by_reason", s.quarantined_by_reason},
            {"skipped_spans", s.skipped_spans},
            {"flagged", s.flagged},
            {"flags", s.flags},
            {"scrubbed_by_kind", s.scrubbed_by_kind},
            {"by_format", s.by_format},
            {"seconds", s.seconds},
            {"mb_per_s", s.seconds > 0 ? mb / s.seconds : 0.0},
            {"lines_per_s", s.seconds > 0 ? static_cast<double>(s.lines) / s.seconds : 0.0}};
}

// ---- the run --------------------------------------------------------------------------------------

collect_summary collect(store::db& d, const collect_params& p) {
    static const char* const formats[] = {"auto", "flywheel", "pair", "finetune", "legacy", "otel", "sharegpt", "alpaca"};
    bool known = false;
    for (const char* f : formats) known |= p.format == f;
    if (!known)
        throw user_error(fmt::format("unknown --format '{}'", p.format), "use auto, flywheel, pair, finetune, legacy, otel, sharegpt or alpaca");
    if (p.paths.empty()) throw user_error("no input given", "pass log files, directories, .gz files, or - for stdin");
    if (p.batch < 1) throw user_error(fmt::format("--batch must be at least 1 (got {})", p.batch));
    int stdin_uses = 0;
    for (const auto& path : p.paths) stdin_uses += path == "-";
    if (stdin_uses > 1) throw user_error("stdin (-) given more than once");

    auto inputs = expand_inputs(p.paths);
    uint64_t total_bytes = 0;
    for (const auto& in : inputs) total_bytes += in.size;

    collect_summary s;
    d.tune_for_bulk_load();
    // a signal stops the run cooperatively: what was read before it is committed (a second one exits)
    store::run_scope run(d, "collect", to_json(p).dump(), store::on_signal::stop);
    s.run_id = run.id();
    auto t0 = std::chrono::steady_clock::now();

    writer w(d, s.run_id);
    progress prog("collect", (total_bytes + 999999) / 1000000, "MB");
    std::optional<store::txn> tx;
    int64_t lines_in_txn = 0;
    auto last_commit = std::chrono::steady_clock::now();
    auto last_note = last_commit;
    auto commit = [&] {
        if (tx) {
            tx->commit();
            tx.reset();
        }
        lines_in_txn = 0;
        last_commit = std::chrono::steady_clock::now();
    };

    // writes one chunk's results in order, committing every `batch` input lines
    auto write_chunk = [&](work_chunk& c) {
        s.lines += c.lines;
        s.blank += c.blank;
        lines_in_txn += c.blank;
        for (size_t i = 0; i < c.items.size(); ++i) {
            if (stop_requested()) return false;
            if (!tx) tx.emplace(d);
            const record_result& r = c.results[i];
            for (const auto& call : r.calls) {
                ++s.calls;
                ++s.by_format[format_name(call.format)];
                if (w.insert(call)) {
                    ++s.ingested;
                    add_counts(s.scrubbed_by_kind, call.scrub_counts);
                    if (!call.flag_list.empty()) ++s.flagged;
                    for (const auto& f : call.flag_list) ++s.flags[f];
                } else {
                    ++s.duplicate;
                }
            }
            for (const auto& q : r.quarantined) {
                ++s.quarantined;
                ++s.quarantined_by_reason[q.reason];
                if (w.insert(q)) ++s.quarantine_new;
            }
            s.skipped_spans += r.skipped_spans;
            if (++lines_in_txn >= p.batch ||
                std::chrono::steady_clock::now() - last_commit > std::chrono::seconds(2))
                commit();
        }
        if (c.last_of_file) ++s.files;
        prog.set(c.consumed / 1000000);
        auto now = std::chrono::steady_clock::now();
        if (now - last_note > std::chrono::seconds(5)) {  // -v: lines/s beside the MB/s of the progress line
            last_note = now;
            double secs = std::chrono::duration<double>(now - t0).count();
            log_verbose("collect: {} lines ({:.0f} lines/s), {} ingested, {} duplicate, {} quarantined", s.lines,
                        secs > 0 ? static_cast<double>(s.lines) / secs : 0.0, s.ingested, s.duplicate, s.quarantined);
        }
        return true;
    };

    // threads > 1: a producer thread reads and normalizes (OpenMP inside when threads > 2), this
    // thread writes SQLite
    const bool threaded = p.threads > 1;
    collect_params pp = p;
    pp.threads = threaded ? p.threads - 1 : 1;
    producer prod(inputs, pp);
    std::string status = "ok";
    try {
        if (!threaded) {
            work_chunk c;
            while (prod.next(c))
                if (!write_chunk(c)) break;
        } else {
            chunk_queue q(3);
            std::thread th([&] {
                try {
                    for (;;) {
                        auto c = q.spare();
                        if (!prod.next(*c)) break;
                        if (!q.push(std::move(c))) break;
                    }
                    q.finish(nullptr);
                } catch (...) {
                    q.finish(std::current_exception());
                }
            });
            try {
                while (auto c = q.pop()) {
                    bool go = write_chunk(*c);
                    q.recycle(std::move(c));
                    if (!go) break;
                }
            } catch (...) {
                q.close();
                th.join();
                throw;
            }
            q.close();
            th.join();
        }
        commit();
        if (stop_requested()) status = "interrupted";
    } catch (...) {
        tx.reset();  // roll back the open batch; everything committed before stays
        prog.finish();
        s.status = "failed";
        s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        try {
            throw;
        } catch (const std::exception& e) {
            try {
                run.fail(e.what(), to_json(s).dump());
            } catch (...) {
            }
            throw;
        }
    }
    prog.finish();
    s.bytes = static_cast<int64_t>(prod.bytes());
    s.status = status;
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s.status == "interrupted")
        run.interrupted(to_json(s).dump());
    else
        run.finish(to_json(s).dump());
    return s;
}

}  // namespace slm::collector
