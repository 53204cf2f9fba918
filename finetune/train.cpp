// train_lora(): LoRA training on encoded examples. Length-bucketed batches (right padding, no mask:
// with causal attention a real token never sees the padding after it), each shared prompt prefix
// of a step run once across its micro-batches (model/prefix.h), loss only on response positions (hidden states gathered first, the vocabulary projection chunked), AdamW with warmup +
// cosine, gradient accumulation and clipping, validation, early stopping, checkpoints, resume.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "common/common.h"
#include "common/timing.h"
#include "finetune/finetune.h"
#include "finetune/train-step.h"
#include "model/adapter.h"
#include "model/llama.h"
#include "model/prefix.h"

namespace fs = std::filesystem;

namespace slm::finetune {

nlohmann::json loss_point::to_json() const {
    nlohmann::json j = {{"step", step}, {"train_loss", train_loss}, {"lr", lr}};
    if (val_loss) j["val_loss"] = *val_loss;
    return j;
}

nlohmann::json train_result::to_json() const {
    nlohmann::json c = nlohmann::json::array();
    for (const auto& p : curve) c.push_back(p.to_json());
    nlohmann::json j = {{"steps", steps},
                        {"total_steps", total_steps},
                        {"stop_reason", stop_reason},
                        {"best_step", best_step},
                        {"tokens", tokens},
                        {"attention_pairs", attention_pairs},
                        {"pad_tokens", pad_tokens},
                        {"padding_share", padding_share()},
                        {"loss_tokens", loss_tokens},
                        {"per_call_tokens", per_call_tokens},
                        {"processed_share", processed_share()},
                        {"train_s", train_s},
                        {"tokens_per_s", tokens_per_s()},
                        {"resumed_from", resumed_from},
                        {"curve", c}};
    j["val_first"] = val_first ? nlohmann::json(*val_first) : nlohmann::json();
    j["val_best"] = val_best ? nlohmann::json(*val_best) : nlohmann::json();
    return j;
}

namespace {

// One optimizer step's micro-batches, with the shared prompt prefixes found over the whole step
// (model/prefix.h): each group of examples that share their first L prompt tokens runs that
// prefix (1, L) once per step, and every micro-batch holding members of the group runs only their
// suffixes, attending to the prefix's keys/values. The gradient through a prefix is the sum over
// all the step's suffixes that read it, exactly as if each example had been run alone; a prefix
// shared across micro-batches is back-propagated once, after the last of them (for_each_micro).
//
// A micro-batch is parts, one per group it holds members of: the suffixes (G, T) right-padded,
// `group` the index of the step prefix they read (-1: examples that share nothing, run whole).
// loss_pos: the flat suffix positions g*T + t whose next token carries loss, with those tokens.
struct part {
    int group = -1;
    torch::Tensor tokens;    // (G, T) int64
    torch::Tensor loss_pos;  // (N) int64
    torch::Tensor targets;   // (N) int64
};

struct batch {
    std::vector<part> parts;
    batch_tokens n;  // the micro-batch's suffixes (prefixes are counted once, in the step's)
};

struct step_batch {
    std::vector<torch::Tensor> prefixes;  // (1, L) int64 per shared group
    std::vector<batch> micro;
    batch_tokens n;                       // the whole step, each prefix once
    std::vector<int> first_micro, last_micro;  // per prefix: the first and last micro-batch reading it
    int64_t prefix_tokens = 0;            // the prefixes' share of n.processed
    int64_t prefix_pairs = 0;             // and of n.attention_pairs
};

step_batch make_step(const std::vector<example>& xs, const std::vector<std::vector<int64_t>>& micro_which,
                     torch::Device dev, const model::prefix_options& po) {
    std::vector<int64_t> all;
    for (const auto& w : micro_which) all.insert(all.end(), w.begin(), w.end());
    // per position in `all`: the prefix group it reads and how many of its tokens that prefix holds
    std::vector<int> group_of(all.size(), -1);
    std::vector<int64_t> len_of(all.size(), 0);
    step_batch sb;
    if (po.enabled) {
        std::vector<std::vector<int32_t>> seqs;
        std::vector<int64_t> caps;  // the prefix ends before the first position that carries loss
        for (auto i : all) {
            seqs.push_back(xs[i].ids);
            caps.push_back(std::max<int64_t>(xs[i].prompt_len, 1) - 1);
        }
        for (const auto& g : model::find_prefix_groups(seqs, caps, po.min_tokens)) {
            if (g.len == 0) continue;
            const int gi = static_cast<int>(sb.prefixes.size());
            const auto& first = xs[all[g.members[0]]].ids;
            sb.prefixes.push_back(torch::tensor(std::vector<int64_t>(first.begin(), first.begin() + g.len), torch::kInt64)
                                      .unsqueeze(0)
                                      .to(dev));  // (1, L)
            for (auto r : g.members) group_of[r] = gi, len_of[r] = g.len;
            sb.prefix_tokens += g.len;
            sb.prefix_pairs += g.len * (g.len + 1) / 2;  // causal over the prefix
        }
    }
    sb.first_micro.assign(sb.prefixes.size(), -1);
    sb.last_micro.assign(sb.prefixes.size(), -1);
    size_t at = 0;  // position of the micro-batch's first example in `all`
    for (const auto& which : micro_which) {
        batch b;
        // the micro-batch's members of each group, groups in the order of their first member here
        std::vector<int> order;
        std::vector<std::vector<size_t>> members;
        for (size_t r = 0; r < which.size(); ++r) {
            const int g = group_of[at + r];
            auto it = std::find(order.begin(), order.end(), g);
            if (it == order.end()) {
                order.push_back(g);
                members.emplace_back();
                it = order.end() - 1;
            }
            members[it - order.begin()].push_back(at + r);
        }
        for (size_t k = 0; k < order.size(); ++k) {
            const int64_t G = static_cast<int64_t>(members[k].size());
            int64_t T = 0;
            for (auto r : members[k]) T = std::max<int64_t>(T, static_cast<int64_t>(xs[all[r]].ids.size()) - len_of[r]);
            auto tok = torch::zeros({G, T}, torch::kInt64);
            auto* tp = tok.data_ptr<int64_t>();
            std::vector<int64_t> pos, tgt;
            for (int64_t j = 0; j < G; ++j) {
                const size_t r = members[k][j];
                const auto& e = xs[all[r]];
                const int64_t n = e.ids.size(), L = len_of[r];
                for (int64_t t = L; t < n; ++t) tp[j * T + t - L] = e.ids[t];
                for (int64_t t = std::max<int64_t>(e.prompt_len, 1); t < n; ++t) {
                    pos.push_back(j * T + t - 1 - L);
                    tgt.push_back(e.ids[t]);
                }
                b.n.processed += n - L;
                b.n.attention_pairs += (n - L) * L + (n - L) * (n - L + 1) / 2;  // the prefix, then causal
                b.n.pad += T - (n - L);
                b.n.per_call += n;
            }
            b.n.loss += static_cast<int64_t>(tgt.size());
            part p;
            p.group = order[k];
            if (p.group >= 0) {
                auto& first = sb.first_micro[p.group];
                if (first < 0) first = static_cast<int>(sb.micro.size());
                sb.last_micro[p.group] = static_cast<int>(sb.micro.size());
            }
            p.tokens = tok.to(dev);
            p.loss_pos = torch::tensor(pos, torch::kInt64).to(dev);
            p.targets = torch::tensor(tgt, torch::kInt64).to(dev);
            b.parts.push_back(std::move(p));
        }
        sb.n.processed += b.n.processed;
        sb.n.pad += b.n.pad;
        sb.n.attention_pairs += b.n.attention_pairs;
        sb.n.per_call += b.n.per_call;
        sb.n.loss += b.n.loss;
        sb.micro.push_back(std::move(b));
        at += which.size();
    }
    sb.n.processed += sb.prefix_tokens;
    sb.n.attention_pairs += sb.prefix_pairs;
    return sb;
}

// Sum of the token losses of a micro-batch, its suffixes reading `pre` (for_each_micro's prefixes). The LM head runs only on the gathered loss positions, in chunks: with a 49k
// vocabulary the full (B, T, V) logits would dominate the step.
torch::Tensor loss_sum(const model::llama_model& m, const batch& b, const std::vector<model::kv_prefix>& pre,
                       int64_t chunk) {
    torch::Tensor total = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(m.device()));
    for (const auto& p : b.parts) {
        if (p.targets.numel() == 0) continue;
        model::forward_args a;
        a.tokens = p.tokens;
        a.hidden = true;
        if (p.group >= 0) a.prefix = &pre[p.group];
        auto h = m.forward(a);  // (G, T, C) float32
        auto hs = h.reshape({-1, h.size(-1)}).index_select(0, p.loss_pos).to(m.dtype());  // (N, C)
        const int64_t N = hs.size(0);
        for (int64_t s = 0; s < N; s += chunk) {
            const int64_t n = std::min(chunk, N - s);
            auto logits = torch::linear(hs.narrow(0, s, n), m.output).to(torch::kFloat32);  // (n, V)
            total = total + torch::nn::functional::cross_entropy(
                                logits, p.targets.narrow(0, s, n),
                                torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
        }
    }
    return total;
}

// Runs `f(micro-batch, prefixes)` over a step's micro-batches in order. Each prefix runs just before
// the first micro-batch that reads it and is released after the last, so only the prefixes still
// to be read are held. A prefix read by one micro-batch is used as it is: that micro-batch's
// backward goes straight through it. One read by several is handed to them as leaves cut from its
// keys/values; each micro-batch back-propagates into the leaves (its graph then freed), and after
// the last one a single backward carries their summed gradients through the prefix.
template <class F>
void for_each_micro(const model::llama_model& m, const step_batch& sb, F&& f) {
    const size_t P = sb.prefixes.size();
    std::vector<model::kv_prefix> graph(P), use(P);
    for (size_t mi = 0; mi < sb.micro.size(); ++mi) {
        for (size_t p = 0; p < P; ++p) {
            if (sb.first_micro[p] != static_cast<int>(mi)) continue;
            model::forward_args a;
            a.tokens = sb.prefixes[p];
            a.hidden = true;
            a.last_only = true;  // no loss on the prompt: only its keys/values are used
            a.capture = &graph[p];
            m.forward(a);
            if (sb.last_micro[p] == sb.first_micro[p] || !torch::GradMode::is_enabled()) {
                use[p] = std::move(graph[p]);
                continue;
            }
            use[p].len = graph[p].len;
            for (const auto& k : graph[p].k) use[p].k.push_back(k.detach().requires_grad_(k.requires_grad()));
            for (const auto& v : graph[p].v) use[p].v.push_back(v.detach().requires_grad_(v.requires_grad()));
        }
        f(sb.micro[mi], use);
        for (size_t p = 0; p < P; ++p) {
            if (sb.last_micro[p] != static_cast<int>(mi)) continue;
            std::vector<torch::Tensor> outs, grads;
            for (size_t j = 0; j < graph[p].k.size(); ++j)
                for (int kv = 0; kv < 2; ++kv) {
                    const auto& leaf = kv ? use[p].v[j] : use[p].k[j];
                    if (leaf.grad().defined()) {
                        outs.push_back(kv ? graph[p].v[j] : graph[p].k[j]);
                        grads.push_back(leaf.grad());
                    }
                }
            if (!outs.empty()) torch::autograd::backward(outs, grads);
            graph[p] = {};
            use[p] = {};
        }
    }
}

int64_t loss_count(const example& e) { return std::max<int64_t>(0, int64_t(e.ids.size()) - std::max<int64_t>(e.prompt_len, 1)); }

// The micro-batches of one epoch: a seeded shuffle, then within windows of `bucket` micro-batches
// the examples sorted by length and cut into batches (little padding), the batches shuffled again.
std::vector<std::vector<int64_t>> epoch_batches(const std::vector<example>& xs, int batch_size, int64_t bucket,
                                                uint64_t seed, int64_t epoch) {
    std::vector<int64_t> order(xs.size());
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + uint64_t(epoch) + 1);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::vector<int64_t>> out;
    const size_t window = size_t(std::max<int64_t>(1, bucket)) * batch_size;
    for (size_t w = 0; w < order.size(); w += window) {
        auto first = order.begin() + w, last = order.begin() + std::min(order.size(), w + window);
        std::stable_sort(first, last, [&](int64_t a, int64_t b) { return xs[a].ids.size() < xs[b].ids.size(); });
        std::vector<std::vector<int64_t>> win;
        for (auto it = first; it < last; it += batch_size)
            win.emplace_back(it, it + std::min<ptrdiff_t>(batch_size, last - it));
        std::shuffle(win.begin(), win.end(), rng);
        for (auto& b : win) out.push_back(std::move(b));
    }
    return out;
}

double lr_at(int step, int total, int warmup, double lr, double min_ratio) {
    if (warmup > 0 && step <= warmup) return lr * step / warmup;
    const double progress = total > warmup ? double(step - warmup) / double(total - warmup) : 1.0;
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + std::cos(M_PI * std::min(1.0, progress))));
}

// ---- checkpoints -----------------------------------------------------------------------------
// DIR/state.json (step, data position, curve, best), adapter.pt (LoRA tensors in lora_parameters
// order), best.pt, optimizer.pt, rng.pt (the CPU generator: dropout). Written to DIR.tmp, renamed.

struct ckpt_state {
    int step = 0;
    int64_t micro = 0;  // micro-batches consumed
    std::vector<loss_point> curve;
    std::optional<double> val_first, val_best;
    int best_step = 0, since_best = 0;
};

void write_json_file(const fs::path& p, const nlohmann::json& j) {
    std::ofstream f(p);
    f << j.dump(1) << '\n';
    if (!f) throw user_error(fmt::format("cannot write {}", p.string()), "check free disk space and permissions");
}

void save_checkpoint(const std::string& dir, const ckpt_state& s, const std::vector<torch::Tensor>& params,
                     const std::vector<torch::Tensor>& best, torch::optim::Optimizer& opt, const nlohmann::json& fp) {
    const fs::path d(dir), tmp = dir + ".tmp", old = dir + ".old";
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp);
    nlohmann::json curve = nlohmann::json::array();
    for (const auto& p : s.curve) curve.push_back(p.to_json());
    nlohmann::json j = {{"version", 1},      {"step", s.step},           {"micro", s.micro},
                        {"curve", curve},    {"best_step", s.best_step}, {"since_best", s.since_best},
                        {"fingerprint", fp}};
    j["val_first"] = s.val_first ? nlohmann::json(*s.val_first) : nlohmann::json();
    j["val_best"] = s.val_best ? nlohmann::json(*s.val_best) : nlohmann::json();
    std::vector<torch::Tensor> cpu, cpu_best;
    for (const auto& t : params) cpu.push_back(t.detach().to(torch::kCPU));
    for (const auto& t : best) cpu_best.push_back(t.to(torch::kCPU));
    torch::save(cpu, (tmp / "adapter.pt").string());
    torch::save(cpu_best, (tmp / "best.pt").string());
    torch::save(opt, (tmp / "optimizer.pt").string());
    torch::save(at::detail::getDefaultCPUGenerator().get_state(), (tmp / "rng.pt").string());
    write_json_file(tmp / "state.json", j);  // last: a directory with state.json is complete
    fs::remove_all(old, ec);
    if (fs::exists(d)) fs::rename(d, old);
    fs::rename(tmp, d);
    fs::remove_all(old, ec);
}

ckpt_state load_checkpoint(const std::string& dir, std::vector<torch::Tensor>& params, std::vector<torch::Tensor>& best,
                           torch::optim::Optimizer& opt, const nlohmann::json& fp) {
    const fs::path d(dir);
    if (!fs::exists(d / "state.json"))
        throw user_error(fmt::format("no checkpoint to resume in {}", dir),
                         "run without --resume first, or point --out at the interrupted run's directory");
    nlohmann::json j;
    try {
        std::ifstream f(d / "state.json");
        j = nlohmann::json::parse(f);
    } catch (const std::exception& e) {
        throw user_error(fmt::format("{}: checkpoint state is not valid JSON ({})", (d / "state.json").string(), e.what()),
                         "delete the checkpoint directory and train again");
    }
    if (j.value("fingerprint", nlohmann::json()) != fp) {
        std::string diff;
        const auto& old = j.value("fingerprint", nlohmann::json::object());
        for (auto& [k, v] : fp.items())
            if (!old.contains(k) || old[k] != v)
                diff += fmt::format("{}{}: checkpoint {} vs now {}", diff.empty() ? "" : "; ", k,
                                    old.contains(k) ? old[k].dump() : "(none)", v.dump());
        throw user_error(fmt::format("the checkpoint in {} was made with other data or settings ({})", dir, diff),
                         "resume with the same options, or train without --resume into a new --out");
    }
    std::vector<torch::Tensor> saved, saved_best;
    torch::load(saved, (d / "adapter.pt").string());
    torch::load(saved_best, (d / "best.pt").string());
    if (saved.size() != params.size())
        throw user_error(fmt::format("checkpoint in {} holds {} adapter tensors, this set-up has {}", dir, saved.size(),
                                     params.size()),
                         "resume with the same --targets and base model");
    {
        torch::NoGradGuard ng;
        for (size_t i = 0; i < params.size(); ++i) {
            if (!saved[i].sizes().equals(params[i].sizes()))
                throw user_error(fmt::format("checkpoint tensor {} has shape {}, expected {}", i,
                                             fmt::join(saved[i].sizes(), "x"), fmt::join(params[i].sizes(), "x")),
                                 "resume with the same --rank, --targets and base model");
            params[i].copy_(saved[i]);
        }
    }
    best.clear();
    for (auto& t : saved_best) best.push_back(t.to(params.empty() ? torch::kCPU : params[0].device()));
    torch::load(opt, (d / "optimizer.pt").string());
    torch::Tensor rng;
    torch::load(rng, (d / "rng.pt").string());
    auto gen = at::detail::getDefaultCPUGenerator();  // a handle on the global generator
    gen.set_state(rng);
    ckpt_state s;
    s.step = j.at("step");
    s.micro = j.at("micro");
    s.best_step = j.value("best_step", 0);
    s.since_best = j.value("since_best", 0);
    if (!j["val_first"].is_null()) s.val_first = j["val_first"].get<double>();
    if (!j["val_best"].is_null()) s.val_best = j["val_best"].get<double>();
    for (const auto& p : j.at("curve")) {
        loss_point lp;
        lp.step = p.at("step");
        lp.train_loss = p.at("train_loss").is_number() ? p["train_loss"].get<double>() : std::nan("");  // step 0: none
        lp.lr = p.at("lr");
        if (p.contains("val_loss")) lp.val_loss = p["val_loss"].get<double>();
        s.curve.push_back(lp);
    }
    return s;
}

}  // namespace

torch::Tensor batch_loss_sum(const model::llama_model& m, const std::vector<example>& xs,
                             const model::prefix_options& prefix, int64_t ce_chunk, batch_tokens* counts) {
    std::vector<int64_t> all(xs.size());
    std::iota(all.begin(), all.end(), 0);
    auto sb = make_step(xs, {all}, m.device(), prefix);
    if (counts) *counts = sb.n;
    torch::Tensor loss;  // one micro-batch: differentiable through its prefixes, for the caller's backward
    for_each_micro(m, sb, [&](const batch& b, const std::vector<model::kv_prefix>& pre) { loss = loss_sum(m, b, pre, ce_chunk); });
    return loss;
}

double mean_loss(const model::llama_model& m, const std::vector<example>& xs, int batch_size, int64_t ce_chunk,
                 const model::prefix_options& prefix) {
    torch::NoGradGuard ng;
    std::vector<int64_t> order(xs.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return xs[a].ids.size() < xs[b].ids.size(); });
    // the whole set as one step: each shared prefix runs once for all the micro-batches
    std::vector<std::vector<int64_t>> micro;
    for (size_t s = 0; s < order.size(); s += batch_size)
        micro.emplace_back(order.begin() + s, order.begin() + std::min(order.size(), s + batch_size));
    auto sb = make_step(xs, micro, m.device(), prefix);
    double sum = 0;
    for_each_micro(m, sb, [&](const batch& b, const std::vector<model::kv_prefix>& pre) {
        if (b.n.loss > 0) sum += loss_sum(m, b, pre, ce_chunk).item<double>();
    });
    return sb.n.loss > 0 ? sum / sb.n.loss : std::nan("");
}

train_result train_lora(model::llama_model& m, const std::vector<example>& train, const std::vector<example>& val,
                        const train_options& o) {
    o.lora.validate();
    if (o.batch_size < 1 || o.grad_accum < 1)
        throw user_error(fmt::format("batch size {} and gradient accumulation {} must be >= 1", o.batch_size, o.grad_accum),
                         "pass --batch-size and --grad-accum of at least 1");
    if (!(o.lr > 0)) throw user_error(fmt::format("learning rate {} must be > 0", o.lr), "pass e.g. --lr 2e-4");
    std::vector<example> xs;
    for (const auto& e : train)
        if (loss_count(e) > 0) xs.push_back(e);
    if (xs.empty())
        throw user_error("no training example carries any response tokens",
                         "check that the calls have logged responses and fit --max-tokens");
    std::vector<example> vs;
    for (const auto& e : val)
        if (loss_count(e) > 0 && int(vs.size()) < o.val_max) vs.push_back(e);

    const int64_t per_epoch = (int64_t(xs.size()) + o.batch_size - 1) / o.batch_size;  // micro-batches
    const int64_t steps_per_epoch = std::max<int64_t>(1, per_epoch / o.grad_accum);
    const int total = o.max_steps > 0 ? o.max_steps : std::max(1, int(std::ceil(o.epochs * steps_per_epoch)));
    const int warmup = o.warmup_steps >= 0 ? o.warmup_steps : std::max(1, int(std::lround(0.05 * total)));

    torch::manual_seed(o.seed);
    model::add_lora(m, o.lora, o.seed);
    auto params = model::lora_parameters(m);
    torch::optim::AdamW opt(params, torch::optim::AdamWOptions(o.lr)
                                        .betas({o.beta1, o.beta2})
                                        .eps(o.adam_eps)
                                        .weight_decay(o.weight_decay));
    nlohmann::json fp = o.fingerprint;
    fp["lora"] = o.lora.to_json();
    fp["n_train"] = xs.size();
    fp["batch_size"] = o.batch_size;
    fp["grad_accum"] = o.grad_accum;
    fp["total_steps"] = total;
    fp["seed"] = o.seed;
    fp["lr"] = o.lr;

    train_result r;
    r.total_steps = total;
    ckpt_state st;
    std::vector<torch::Tensor> best;
    if (o.resume) {
        st = load_checkpoint(o.checkpoint_dir, params, best, opt, fp);
        r.resumed_from = st.step;
        log_info("resuming from step {} of {} ({})", st.step, total, o.checkpoint_dir);
    }
    auto snapshot = [&] {
        best.clear();
        for (const auto& p : params) best.push_back(p.detach().clone());
    };
    auto validate = [&](int step) -> std::optional<double> {
        if (vs.empty()) return std::nullopt;
        const double v = mean_loss(m, vs, o.batch_size, o.ce_chunk, o.prefix);
        if (!st.val_first) st.val_first = v;
        if (!st.val_best || v < *st.val_best) {
            st.val_best = v;
            st.best_step = step;
            st.since_best = 0;
            snapshot();
        } else {
            ++st.since_best;
        }
        return v;
    };
    std::string last_good = "none";
    auto checkpoint = [&] {
        if (o.checkpoint_dir.empty()) return;
        save_checkpoint(o.checkpoint_dir, st, params, best, opt, fp);
        last_good = fmt::format("{} (step {})", o.checkpoint_dir, st.step);
    };
    if (o.resume) last_good = fmt::format("{} (step {})", o.checkpoint_dir, st.step);

    if (st.step == 0 && st.curve.empty()) {
        loss_point p0;
        p0.val_loss = validate(0);
        p0.train_loss = std::nan("");
        st.curve.push_back(p0);
        if (o.on_progress) {
            train_progress tp;
            tp.total_steps = total;
            tp.val_loss = p0.val_loss;
            tp.loss = std::nan("");
            o.on_progress(tp);
        }
    }

    std::unique_ptr<std::ofstream> dump;
    if (!o.dump_batches.empty()) {
        dump = std::make_unique<std::ofstream>(o.dump_batches);
        if (!*dump) throw user_error(fmt::format("cannot write {}", o.dump_batches), "check the path");
    }
    const auto t0 = std::chrono::steady_clock::now();
    int64_t cur_epoch = -1;
    std::vector<std::vector<int64_t>> epoch;
    r.stop_reason = "done";
    while (st.step < total) {
        if (o.should_stop && o.should_stop()) {
            r.stop_reason = "interrupted";
            break;
        }
        if (o.time_budget_s > 0 && seconds_since(t0) >= o.time_budget_s) {
            r.stop_reason = "time_budget";
            break;
        }
        const int step = st.step + 1;
        const double lr = lr_at(step, total, warmup, o.lr, o.min_lr_ratio);
        for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
        // this step's micro-batches, and the loss tokens they hold (the step's loss is their mean)
        std::vector<std::vector<int64_t>> which;
        for (int a = 0; a < o.grad_accum; ++a, ++st.micro) {
            const int64_t e = st.micro / per_epoch, i = st.micro % per_epoch;
            if (e != cur_epoch) {
                epoch = epoch_batches(xs, o.batch_size, o.bucket, o.seed, e);
                cur_epoch = e;
            }
            which.push_back(epoch[i]);
            if (dump) {
                nlohmann::json rows = nlohmann::json::array();
                for (auto k : epoch[i]) rows.push_back({{"ids", xs[k].ids}, {"prompt_len", xs[k].prompt_len}});
                *dump << nlohmann::json({{"step", step}, {"batch", rows}}).dump() << '\n';
            }
        }
        // the step's shared prefixes are found over all its micro-batches and run once; the step's
        // loss is the mean over the loss tokens of all of them
        const auto sb = make_step(xs, which, m.device(), o.prefix);
        const int64_t n_loss = sb.n.loss;
        const auto ts = std::chrono::steady_clock::now();
        opt.zero_grad();
        // the step's loss stays on the device until the gradient norm is read: one host wait per
        // step (the NaN guard needs both), not one per micro-batch
        torch::Tensor loss_acc;  // () float64, summed in micro-batch order
        if (n_loss > 0) {
            r.tokens += sb.prefix_tokens;
            r.attention_pairs += sb.prefix_pairs;
            for_each_micro(m, sb, [&](const batch& b, const std::vector<model::kv_prefix>& pre) {
                if (b.n.loss == 0) return;
                r.tokens += b.n.processed;
                r.attention_pairs += b.n.attention_pairs;
                r.pad_tokens += b.n.pad;
                r.per_call_tokens += b.n.per_call;
                r.loss_tokens += b.n.loss;
                auto l = loss_sum(m, b, pre, o.ce_chunk) / double(n_loss);
                l.backward();
                auto ld = l.detach().to(torch::kFloat64);
                loss_acc = loss_acc.defined() ? loss_acc + ld : ld;
            });
        }
        double gnorm = 0;
        if (o.clip > 0)
            gnorm = torch::nn::utils::clip_grad_norm_(params, o.clip);
        else
            for (const auto& p : params)
                if (p.grad().defined()) gnorm += p.grad().pow(2).sum().item<double>();
        const double step_loss = loss_acc.defined() ? loss_acc.item<double>() : 0.0;
        if (!std::isfinite(step_loss) || !std::isfinite(gnorm))
            throw user_error(fmt::format("training diverged at step {}: {} is {} (last good checkpoint: {})", step,
                                         std::isfinite(step_loss) ? "the gradient norm" : "the loss",
                                         std::isfinite(step_loss) ? gnorm : step_loss, last_good),
                             "lower --lr (or raise --warmup), check the data, and --resume from the checkpoint");
        opt.step();
        r.train_s += seconds_since(ts);
        st.step = step;
        loss_point p;
        p.step = step;
        p.train_loss = step_loss;
        p.lr = lr;
        if ((o.eval_every > 0 && step % o.eval_every == 0) || step == total) p.val_loss = validate(step);
        st.curve.push_back(p);
        if (o.on_progress) {
            train_progress tp;
            tp.step = step;
            tp.total_steps = total;
            tp.loss = step_loss;
            tp.val_loss = p.val_loss;
            tp.lr = lr;
            tp.tokens_per_s = r.tokens_per_s();
            const int done = step - r.resumed_from;
            tp.eta_s = done > 0 ? seconds_since(t0) / done * (total - step) : 0;
            o.on_progress(tp);
        }
        if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0 && step < total) checkpoint();
        if (o.patience > 0 && p.val_loss && st.since_best >= o.patience) {
            r.stop_reason = "early_stop";
            break;
        }
    }
    checkpoint();  // the final state, or where an interruption / time budget stopped
    // the adapters left in the model: the best validation point's
    if (!best.empty() && r.stop_reason != "interrupted") {
        torch::NoGradGuard ng;
        for (size_t i = 0; i < params.size(); ++i) params[i].copy_(best[i]);
    }
    r.steps = st.step;
    r.curve = st.curve;
    r.val_first = st.val_first;
    r.val_best = st.val_best;
    r.best_step = st.best_step;
    return r;
}

}  // namespace slm::finetune
