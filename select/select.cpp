// The select stage over the store: finds local checkpoints, merges them with the catalog, probes
// the loadable ones on each cluster's calls, ranks per cluster and records it all in `selections`.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "common/common.h"
#include "select/probe.h"
#include "select/select.h"

namespace slm::select {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string lower(std::string s) {
    for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return s;
}

// ---- what a file on disk is, without loading it ------------------------------------------------

// The two GGUF metadata strings that tell a decoder checkpoint from a LoRA adapter or an embedder:
// general.type ("model", "adapter") and general.architecture. A bounded sequential scan of the
// header (the full reader is model/'s); stops once both are read or at the first tensor-sized array.
struct gguf_brief {
    bool ok = false;
    std::string type, architecture;
};

gguf_brief scan_gguf(const fs::path& p) {
    gguf_brief b;
    std::ifstream f(p, std::ios::binary);
    if (!f) return b;
    auto rd = [&](void* dst, size_t n) { return static_cast<bool>(f.read(static_cast<char*>(dst), static_cast<std::streamsize>(n))); };
    char magic[4];
    uint32_t version = 0;
    uint64_t n_tensors = 0, n_kv = 0;
    if (!rd(magic, 4) || std::string(magic, 4) != "GGUF" || !rd(&version, 4) || version < 2 || version > 3) return b;
    if (!rd(&n_tensors, 8) || !rd(&n_kv, 8)) return b;
    b.ok = true;
    auto read_str = [&](std::string& out) {
        uint64_t len = 0;
        if (!rd(&len, 8) || len > (1u << 20)) return false;
        out.resize(len);
        return len == 0 || rd(out.data(), len);
    };
    auto scalar_size = [](uint32_t t) -> int {
        switch (t) {
            case 0: case 1: case 7: return 1;   // u8 i8 bool
            case 2: case 3: return 2;           // u16 i16
            case 4: case 5: case 6: return 4;   // u32 i32 f32
            case 10: case 11: case 12: return 8;// u64 i64 f64
            default: return 0;
        }
    };
    for (uint64_t i = 0; i < n_kv && i < 4096 && (b.type.empty() || b.architecture.empty()); ++i) {
        std::string key;
        uint32_t type = 0;
        if (!read_str(key) || !rd(&type, 4)) break;
        if (type == 8) {  // string
            std::string v;
            if (!read_str(v)) break;
            if (key == "general.type") b.type = v;
            if (key == "general.architecture") b.architecture = v;
        } else if (type == 9) {  // array: skip numeric ones in one seek, stop at string arrays (vocab)
            uint32_t et = 0;
            uint64_t count = 0;
            if (!rd(&et, 4) || !rd(&count, 8)) break;
            const int sz = scalar_size(et);
            if (sz == 0) break;
            f.seekg(static_cast<std::streamoff>(count * sz), std::ios::cur);
        } else if (int sz = scalar_size(type); sz > 0) {
            f.seekg(sz, std::ios::cur);
        } else {
            break;
        }
        if (!f) break;
    }
    return b;
}

// config.json of an HF directory: a decoder (causal LM) or not (BERT-style encoders).
bool hf_decoder(const fs::path& dir, std::string& architecture) {
    std::ifstream f(dir / "config.json");
    json j;
    try {
        j = json::parse(f);
    } catch (const json::exception&) {
        return false;
    }
    if (!j.is_object()) return false;
    architecture = j.value("model_type", std::string());
    static const std::set<std::string> encoders = {"bert", "roberta", "xlm-roberta", "distilbert", "mpnet", "electra",
                                                   "albert", "deberta", "deberta-v2", "nomic_bert", "modernbert", "t5"};
    if (auto a = j.find("architectures"); a != j.end() && a->is_array() && !a->empty()) {
        for (const auto& x : *a) {
            if (!x.is_string()) continue;
            const auto s = x.get<std::string>();
            for (const char* suffix : {"ForCausalLM", "LMHeadModel", "ForConditionalGeneration"})
                if (s.size() >= std::strlen(suffix) && s.compare(s.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
                    return !encoders.count(architecture);
        }
        return false;
    }
    return !architecture.empty() && !encoders.count(architecture);
}

bool is_gguf_model(const fs::path& p) {
    if (lower(p.extension().string()) != ".gguf") return false;
    const auto b = scan_gguf(p);
    if (!b.ok) return false;
    if (!b.type.empty() && b.type != "model") return false;  // adapter, vocab, ...
    static const std::set<std::string> encoders = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "t5", "t5encoder"};
    return !encoders.count(b.architecture);
}

void collect_models(const fs::path& root, std::set<std::string>& out) {
    std::error_code ec;
    std::string arch;
    if (fs::is_regular_file(root, ec)) {
        if (is_gguf_model(root)) out.insert(fs::weakly_canonical(root, ec).string());
        return;
    }
    if (!fs::is_directory(root, ec)) return;
    if (fs::exists(root / "config.json", ec)) {
        if (hf_decoder(root, arch)) out.insert(fs::weakly_canonical(root, ec).string());
        return;
    }
    // a models folder: GGUF files and HF directories up to two levels down (org/model/config.json)
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const auto& p = it->path();
        if (it->is_directory(ec)) {
            if (fs::exists(p / "config.json", ec)) {
                if (hf_decoder(p, arch)) out.insert(fs::weakly_canonical(p, ec).string());
                it.disable_recursion_pending();
            } else if (it.depth() >= 1) {
                it.disable_recursion_pending();
            }
        } else if (it->is_regular_file(ec) && is_gguf_model(p)) {
            out.insert(fs::weakly_canonical(p, ec).string());
        }
    }
}

// ---- candidates -----------------------------------------------------------------------------

// The catalog entry a local file or directory is a copy of: its name (SmolLM2-135M-Instruct.Q4_1.gguf,
// qwen2.5-0.5b-instruct-q4_k_m.gguf, an HF dir SmolLM2-135M-Instruct) starts with the entry's name
// or id followed by a separator; the longest such match wins.
const catalog_entry* match_catalog(const catalog& cat, const std::string& path) {
    fs::path p(path);
    std::string stem = lower(fs::is_directory(p) ? p.filename().string() : p.stem().string());
    const catalog_entry* best = nullptr;
    size_t best_len = 0;
    for (const auto& e : cat.models)
        for (const std::string& key : {lower(e.name), lower(e.id)}) {
            if (stem.size() < key.size() || stem.compare(0, key.size(), key) != 0) continue;
            if (stem.size() > key.size() && std::string_view(".-_ ").find(stem[key.size()]) == std::string_view::npos)
                continue;
            if (key.size() > best_len) best = &e, best_len = key.size();
        }
    return best;
}

std::string local_name(const std::string& path) { return fs::path(path).filename().string(); }

std::string local_architecture(const std::string& path) {
    if (fs::is_directory(path)) {
        std::string arch;
        hf_decoder(path, arch);
        return arch;
    }
    return scan_gguf(path).architecture;
}

int64_t resolve_cluster_run(store::db& d, int64_t run) {
    if (run == 0) {
        run = store::latest_ok_run(d, "cluster");
        if (run == 0)
            throw user_error(fmt::format("{} holds no finished clustering run", d.path()), "run slmctl cluster first");
        return run;
    }
    store::require_ok_run(d, run, "cluster");
    return run;
}

}  // namespace

json select_options::to_json() const {
    return {{"cluster_run", cluster_run},
            {"cluster_idx", cluster_idx ? json(*cluster_idx) : json(nullptr)},
            {"limits", limits.to_json()},
            {"model_dirs", model_dirs},
            {"model_cache", model_cache},
            {"probe", probe},
            {"probe_max_tokens", probe_max_tokens},
            {"probe_max_prompt", probe_max_prompt},
            {"catalog", catalog_path.empty() ? "built-in" : catalog_path},
            {"device", device},
            {"dtype", dtype}};
}

json select_report::to_json() const {
    json cl = json::array();
    for (const auto& c : clusters) {
        json cands = json::array();
        for (const auto& r : c.candidates) cands.push_back(r.to_json());
        json top = nullptr, top_local = nullptr;
        for (const auto& r : c.candidates) {
            if (r.filtered) continue;
            if (top.is_null()) top = r.c.name;
            if (top_local.is_null() && !r.c.path.empty() && r.c.loadable) top_local = r.c.path;
        }
        cl.push_back({{"cluster_id", c.cluster_id},
                      {"idx", c.idx},
                      {"label", c.label},
                      {"needs", c.needs.to_json()},
                      {"top", top},
                      {"top_local", top_local},
                      {"candidates", cands}});
    }
    return {{"run_id", run_id}, {"cluster_run", cluster_run}, {"local", local}, {"clusters", cl}};
}

std::vector<std::string> find_local_models(const std::vector<std::string>& dirs, bool cache) {
    std::set<std::string> out;
    for (const auto& d : dirs) {
        std::error_code ec;
        if (!fs::exists(d, ec))
            throw user_error(fmt::format("--models {}: no such file or directory", d),
                             "give a directory of GGUF files / HF model directories, or one checkpoint");
        collect_models(d, out);
    }
    if (cache) {
        std::error_code ec;
        const std::string m = models_dir();
        if (fs::is_directory(m, ec)) collect_models(m, out);
    }
    return {out.begin(), out.end()};
}

select_report run_select(store::db& d, const select_options& o) {
    store::reap_stale_runs(d);
    if (o.probe < 0) throw user_error(fmt::format("--probe {} is negative", o.probe), "give the calls to probe per cluster, 0 for none");
    if (o.probe_max_tokens < 1)
        throw user_error(fmt::format("--probe-max-tokens {} must be at least 1", o.probe_max_tokens), "e.g. --probe-max-tokens 256");
    if (o.probe_max_prompt < 16)
        throw user_error(fmt::format("--probe-max-prompt {} is too small", o.probe_max_prompt), "e.g. --probe-max-prompt 2048");
    select_report rep;
    rep.cluster_run = resolve_cluster_run(d, o.cluster_run);
    // the clusters asked for (noise is no task)
    std::vector<store::cluster_row> chosen;
    std::string known;
    for (auto& c : store::clusters_of_run(d, rep.cluster_run)) {
        if (c.idx < 0) continue;
        known += fmt::format("{}{}", known.empty() ? "" : ", ", c.idx);
        if (!o.cluster_idx || *o.cluster_idx == c.idx) chosen.push_back(std::move(c));
    }
    if (chosen.empty()) {
        if (o.cluster_idx)
            throw user_error(fmt::format("clustering run {} has no cluster {} (it has {})", rep.cluster_run, *o.cluster_idx,
                                         known.empty() ? "none" : known),
                             "pick one from the id column of: slmctl cluster --run " + std::to_string(rep.cluster_run));
        throw user_error(fmt::format("clustering run {} has no clusters (only noise)", rep.cluster_run),
                         "collect more calls or re-run slmctl cluster with a smaller --k");
    }
    std::vector<cluster_needs> needs;
    for (const auto& c : chosen) needs.push_back(needs_from_stats(c.stats, c.size, c.share));

    const catalog loaded = o.catalog_path.empty() ? catalog{} : load_catalog(o.catalog_path);
    const catalog& cat = o.catalog_path.empty() ? builtin_catalog() : loaded;
    rep.local = find_local_models(o.model_dirs, o.model_cache);

    // candidates: every catalog model, a local copy replacing the catalog-only line, then local
    // checkpoints the catalog does not know (facts filled in once the probe loaded them)
    std::vector<candidate> cands;
    std::map<std::string, std::vector<std::string>> copies;  // catalog id -> local paths
    std::vector<std::string> unknown;
    for (const auto& p : rep.local) {
        if (const auto* e = match_catalog(cat, p)) copies[e->id].push_back(p);
        else unknown.push_back(p);
    }
    for (const auto& e : cat.models) {
        auto it = copies.find(e.id);
        if (it == copies.end()) {
            cands.push_back(from_catalog(e));
            continue;
        }
        for (const auto& p : it->second) {
            auto c = from_catalog(e);
            c.path = p;
            if (it->second.size() > 1) c.name = fmt::format("{} ({})", e.name, local_name(p));
            cands.push_back(std::move(c));
        }
    }
    for (const auto& p : unknown) {
        candidate c;
        c.name = local_name(p);
        c.path = p;
        c.architecture = local_architecture(p);
        c.loadable = true;  // until the probe says otherwise
        cands.push_back(std::move(c));
    }

    json params = o.to_json();
    params["cluster_run"] = rep.cluster_run;  // resolved (0 meant the latest ok one)
    store::run_scope run(d, "select", params.dump());
    return run.guard([&] {
        rep.run_id = run.id();
        // per cluster, the probe result of each candidate (index into cands)
        std::vector<std::map<size_t, probe_result>> probes(chosen.size());
        json probed = json::array();
        if (o.probe > 0) {
            std::vector<size_t> to_probe;
            for (size_t i = 0; i < cands.size(); ++i) {
                const auto& c = cands[i];
                if (c.path.empty() || !c.loadable) continue;  // a local copy model/ cannot load is ranked on its card
                bool useful = false;  // a model every chosen cluster filters anyway is not worth minutes of generation
                for (const auto& n : needs) useful = useful || !violation(c, n, o.limits);
                if (useful) to_probe.push_back(i);
            }
            if (!to_probe.empty()) {
                const auto sets = probe_sets(d, rep.cluster_run, chosen, o.probe);
                for (size_t i : to_probe) {
                    auto& c = cands[i];
                    // only where the model passes the hard constraints: elsewhere it is filtered anyway
                    std::vector<size_t> where;
                    std::vector<probe_set> mine;
                    for (size_t k = 0; k < sets.size(); ++k)
                        if (!violation(c, needs[k], o.limits)) where.push_back(k), mine.push_back(sets[k]);
                    const probe_params pp{o.probe_max_tokens, o.probe_max_prompt, o.device, o.dtype, c.name};
                    log_info("probing {} on {} cluster(s), up to {} calls each", c.name, mine.size(), o.probe);
                    const auto mp = probe_model(c.path, mine, pp);
                    if (mp.error.empty()) {
                        // what the checkpoint itself says beats what the catalog entry says of the model
                        c.loadable = true;
                        if (mp.params > 0) c.params = mp.params;
                        if (mp.context_length > 0 && c.catalog_id.empty()) c.context_length = mp.context_length;
                        if (!mp.architecture.empty()) c.architecture = mp.architecture;
                    } else {
                        log_warn("{}", mp.error);
                        if (c.catalog_id.empty()) c.loadable = false;
                    }
                    json per = json::array();
                    for (size_t m = 0; m < mine.size(); ++m) {
                        const auto& r = mp.results[m];
                        if (r.calls == 0 && r.skipped == 0 && r.error.empty()) continue;  // no calls to probe on
                        probes[where[m]][i] = r;
                        per.push_back({{"cluster_id", mine[m].cluster_id}, {"idx", mine[m].idx}, {"probe", r.to_json()}});
                    }
                    probed.push_back({{"model", c.name}, {"path", c.path}, {"load_s", std::round(mp.load_s * 100) / 100},
                                      {"error", mp.error}, {"clusters", per}});
                }
            }
        }
        std::vector<store::selection_row> rows;
        json top = json::array();
        for (size_t k = 0; k < chosen.size(); ++k) {
            std::vector<candidate> cs = cands;
            for (const auto& [i, r] : probes[k]) cs[i].probe = r;
            cluster_selection sel;
            sel.cluster_id = chosen[k].id;
            sel.idx = chosen[k].idx;
            sel.label = chosen[k].label;
            sel.needs = needs[k];
            sel.candidates = rank_candidates(cs, needs[k], o.limits);
            for (const auto& r : sel.candidates) {
                store::selection_row row;
                row.run_id = rep.run_id;
                row.cluster_id = sel.cluster_id;
                row.model = r.c.path.empty() ? r.c.name : r.c.path;
                row.rank = r.rank;
                row.score = r.score;
                row.details = r.to_json().dump();
                rows.push_back(std::move(row));
            }
            json t = {{"cluster_id", sel.cluster_id}, {"idx", sel.idx}, {"top", nullptr}, {"score", nullptr}};
            if (!sel.candidates.empty() && !sel.candidates.front().filtered) {
                t["top"] = sel.candidates.front().c.name;
                t["score"] = std::round(sel.candidates.front().score * 1000) / 1000;
            }
            top.push_back(t);
            rep.clusters.push_back(std::move(sel));
        }
        store::insert_selections(d, rows);
        run.finish(json{{"cluster_run", rep.cluster_run},
                        {"clusters", rep.clusters.size()},
                        {"candidates", cands.size()},
                        {"local", rep.local},
                        {"probed", probed},
                        {"top", top}}
                       .dump());
        return rep;
    });
}

std::string top_local_pick(store::db& d, int64_t cluster_id) {
    for (const auto& r : store::latest_selections(d, cluster_id)) {
        if (r.rank <= 0) continue;
        json j;
        try {
            j = json::parse(r.details);
        } catch (const json::parse_error&) {
            continue;
        }
        if (!j.value("local", false) || !j.value("loadable", false)) continue;
        std::error_code ec;
        if (!fs::exists(r.model, ec)) {
            log_warn("select's pick {} for cluster {} is no longer on disk; taking the next one", r.model, cluster_id);
            continue;
        }
        return r.model;
    }
    return {};
}

}  // namespace slm::select
