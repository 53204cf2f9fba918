// finetune/ with shared prompt prefixes: a micro-batch whose examples open with the same prompt
// tokens runs them once, and its loss and LoRA gradients equal those of running every example
// whole (fp32, within 1e-5), with suffixes of different lengths, an example whose loss starts
// inside the common tokens, and an unrelated one; a short training run gives the same curve, and
// with gradient accumulation a prefix shared across a step's micro-batches runs once per step.
#include <torch/torch.h>  // before doctest: glog's CHECK must not win over doctest's
#include <doctest/doctest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "common/common.h"
#include "finetune/finetune.h"
#include "finetune/train-step.h"
#include "model/adapter.h"
#include "model/llama.h"
#include "model/model.h"
#include "model/prefix.h"
#include "tests/test-util.h"

using namespace slm;

namespace {

std::unique_ptr<model::language_model> tiny() {
    model::load_options o;
    o.dtype = "fp32";
    o.tokenizer = false;
    o.int4_decode = "off";
    return model::load_model(test::source_dir("tests/data/ref/tiny-llama"), o);
}

// Four calls of one "agent node": a 40-token system prompt, a user part of 2-12 tokens, a response
// of 2-6 tokens; a fifth with the same opening whose loss starts at token 12 (so it cannot share
// 40); a sixth that shares nothing.
std::vector<finetune::example> agent_examples(uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto tok = [&] { return int32_t(3 + rng() % 250); };
    std::vector<int32_t> sys = {1};
    for (int i = 1; i < 40; ++i) sys.push_back(tok());
    std::vector<finetune::example> xs;
    for (int user : {2, 12, 5, 8}) {
        finetune::example e;
        e.ids = sys;
        for (int i = 0; i < user; ++i) e.ids.push_back(tok());
        e.prompt_len = static_cast<int64_t>(e.ids.size());
        const int resp = 2 + int(rng() % 5);
        for (int i = 0; i < resp; ++i) e.ids.push_back(tok());
        e.ids.push_back(2);
        xs.push_back(std::move(e));
    }
    finetune::example early;
    early.ids = sys;
    early.ids.push_back(tok());
    early.prompt_len = 12;
    xs.push_back(early);
    finetune::example other;
    other.ids = {1};
    for (int i = 0; i < 20; ++i) other.ids.push_back(tok());
    other.prompt_len = 15;
    xs.push_back(other);
    return xs;
}

void randomize_adapters(model::llama_model& m, uint64_t seed) {
    torch::NoGradGuard ng;
    auto g = at::detail::createCPUGenerator(seed);
    auto ps = model::lora_parameters(m);
    for (size_t i = 1; i < ps.size(); i += 2) ps[i].normal_(0, 0.3, g);  // B: zero at init
}

struct loss_and_grads {
    double loss = 0;
    std::vector<torch::Tensor> grads;
    finetune::batch_tokens n;
};

loss_and_grads run(model::llama_model& m, const std::vector<finetune::example>& xs, bool share) {
    model::prefix_options po;
    po.enabled = share;
    po.min_tokens = 16;
    auto params = model::lora_parameters(m);
    for (auto& p : params)
        if (p.grad().defined()) p.grad().zero_();
    loss_and_grads r;
    auto l = finetune::batch_loss_sum(m, xs, po, 512, &r.n);
    l = l / double(r.n.loss);  // the step's loss: a mean over the loss positions
    l.backward();
    r.loss = l.item<double>();
    for (auto& p : params) r.grads.push_back(p.grad().clone());
    return r;
}

// Three draws of agent_examples as a training set; short-run options shared by the tests below.
std::vector<finetune::example> three_nodes(uint64_t seed) {
    std::vector<finetune::example> train;
    for (uint64_t s = 0; s < 3; ++s) {
        auto xs = agent_examples(seed + s);
        train.insert(train.end(), xs.begin(), xs.end());
    }
    return train;
}

finetune::train_options short_run(uint64_t seed) {
    finetune::train_options o;
    o.lora.rank = 4;
    o.lora.alpha = 8;
    o.lr = 1e-2;
    o.max_steps = 4;
    o.eval_every = 2;
    o.seed = seed;
    o.prefix.min_tokens = 16;
    return o;
}

void check_same_curve(const finetune::train_result& ra, const finetune::train_result& rb) {
    REQUIRE(ra.curve.size() == rb.curve.size());
    for (size_t i = 1; i < ra.curve.size(); ++i) {
        INFO("step " << ra.curve[i].step);
        CHECK(std::abs(ra.curve[i].train_loss - rb.curve[i].train_loss) <= 1e-5);
        if (ra.curve[i].val_loss) CHECK(std::abs(*ra.curve[i].val_loss - *rb.curve[i].val_loss) <= 1e-5);
    }
}

}  // namespace

TEST_CASE("shared-prefix micro-batch: same loss and LoRA gradients as every example alone (fp32, 1e-5)") {
    model::set_torch_threads(1);
    auto lm = tiny();
    auto& m = lm->decoder();
    model::lora_config c;
    c.rank = 4;
    c.alpha = 8;
    model::add_lora(m, c, 3);
    randomize_adapters(m, 4);
    const auto xs = agent_examples(5);

    const auto plain = run(m, xs, false);
    const auto shared = run(m, xs, true);
    MESSAGE("loss " << plain.loss << " vs shared " << shared.loss << "; tokens " << shared.n.processed << " of "
                    << shared.n.per_call << " processed");
    CHECK(std::abs(plain.loss - shared.loss) <= 1e-5);
    CHECK(plain.n.loss == shared.n.loss);
    CHECK(plain.n.processed == plain.n.per_call);
    CHECK(shared.n.per_call == plain.n.per_call);
    CHECK(shared.n.processed == plain.n.per_call - 3 * 40);  // four examples share 40 tokens
    REQUIRE(plain.grads.size() == shared.grads.size());
    double worst = 0, largest = 0;
    for (size_t i = 0; i < plain.grads.size(); ++i) {
        worst = std::max(worst, (plain.grads[i] - shared.grads[i]).abs().max().item<double>());
        largest = std::max(largest, plain.grads[i].abs().max().item<double>());
    }
    MESSAGE("LoRA gradients: max abs diff " << worst << " (largest gradient " << largest << ")");
    CHECK(largest > 1e-3);  // the gradients are not trivially zero
    CHECK(worst <= 1e-5);

    SUBCASE("one example alone: a batch of one shares nothing") {
        const auto one = run(m, {xs[0]}, true);
        CHECK(one.n.processed == one.n.per_call);
    }
    SUBCASE("the sum of the examples' losses alone") {
        double sum = 0;
        int64_t n = 0;
        for (const auto& e : xs) {
            model::prefix_options po;
            finetune::batch_tokens t;
            torch::NoGradGuard ng;
            sum += finetune::batch_loss_sum(m, {e}, po, 512, &t).item<double>();
            n += t.loss;
        }
        CHECK(std::abs(sum / double(n) - shared.loss) <= 1e-5);
    }
}

TEST_CASE("train_lora with shared prefixes: the same loss curve, fewer tokens processed") {
    model::set_torch_threads(1);
    const auto train = three_nodes(10), val = agent_examples(20);
    auto o = short_run(9);
    o.batch_size = 6;
    auto a = tiny();
    auto ra = finetune::train_lora(a->decoder(), train, val, o);
    o.prefix.enabled = false;
    auto b = tiny();
    auto rb = finetune::train_lora(b->decoder(), train, val, o);
    check_same_curve(ra, rb);
    MESSAGE("tokens processed " << ra.tokens << " of " << ra.per_call_tokens << " (" << ra.processed_share() << "x)");
    CHECK(rb.tokens == rb.per_call_tokens);
    CHECK(ra.per_call_tokens == rb.per_call_tokens);
    CHECK(ra.tokens < rb.tokens);
    CHECK(ra.to_json().at("processed_share").get<double>() < 1.0);
}

TEST_CASE("gradient accumulation: a prefix shared across a step's micro-batches runs once, same curve and adapters") {
    model::set_torch_threads(1);
    const auto train = three_nodes(30), val = agent_examples(40);
    auto o = short_run(11);
    o.batch_size = 2;
    o.grad_accum = 3;  // six examples a step in three micro-batches
    test::temp_dir tmp;
    o.dump_batches = (tmp.path / "batches.jsonl").string();
    auto a = tiny();
    auto ra = finetune::train_lora(a->decoder(), train, val, o);
    o.prefix.enabled = false;
    o.dump_batches.clear();
    auto b = tiny();
    auto rb = finetune::train_lora(b->decoder(), train, val, o);
    check_same_curve(ra, rb);
    // the adapters after four steps: the gradients through the shared prefixes were the same sums
    const auto pa = model::lora_parameters(a->decoder()), pb = model::lora_parameters(b->decoder());
    REQUIRE(pa.size() == pb.size());
    double worst = 0;
    for (size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, (pa[i] - pb[i]).abs().max().item<double>());
    MESSAGE("adapters after 4 steps: max abs diff " << worst);
    CHECK(worst <= 1e-5);

    // what was processed: each step's prefix groups found over all six of its examples, each
    // prefix once (not once per micro-batch: four examples of a node mostly land in several)
    std::map<int, std::vector<std::vector<int32_t>>> seqs;
    std::map<int, std::vector<int64_t>> caps;
    std::ifstream in(tmp.path / "batches.jsonl");
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        for (const auto& r : j.at("batch")) {
            seqs[j.at("step").get<int>()].push_back(r.at("ids").get<std::vector<int32_t>>());
            caps[j.at("step").get<int>()].push_back(std::max<int64_t>(r.at("prompt_len").get<int64_t>(), 1) - 1);
        }
    }
    REQUIRE(seqs.size() == 4);
    int64_t expect = 0, spread = 0, pairs = 0, pairs_whole = 0;
    auto tri = [](int64_t n) { return n * (n + 1) / 2; };  // causal (query, key) pairs of n tokens
    for (const auto& [step, ss] : seqs) {
        REQUIRE(ss.size() == 6);
        for (const auto& s : ss) expect += static_cast<int64_t>(s.size());
        for (const auto& s : ss) pairs_whole += tri(static_cast<int64_t>(s.size()));
        for (const auto& g : model::find_prefix_groups(ss, caps[step], 16)) {
            expect -= (static_cast<int64_t>(g.members.size()) - 1) * g.len;
            // a prefix's pairs once; each suffix sees the prefix and itself causally
            pairs += tri(g.len);
            for (auto r : g.members) {
                const int64_t t = static_cast<int64_t>(ss[r].size()) - g.len;
                pairs += t * g.len + tri(t);
            }
            // a group whose members sit in more than one micro-batch (micro-batch = position / 2)
            if (g.len > 0 && g.members.front() / 2 != g.members.back() / 2) ++spread;
        }
    }
    MESSAGE("tokens processed " << ra.tokens << " of " << ra.per_call_tokens << "; groups across micro-batches: " << spread);
    CHECK(ra.per_call_tokens == rb.per_call_tokens);
    CHECK(rb.tokens == rb.per_call_tokens);
    CHECK(spread > 0);  // the case this test is about occurs
    CHECK(ra.tokens == expect);
    CHECK(ra.attention_pairs == pairs);
    CHECK(rb.attention_pairs == pairs_whole);
    CHECK(ra.attention_pairs < rb.attention_pairs);
}

// Not a check: where a SmolLM2-135M training step goes, op by op (issue #10's FLOP/s question).
// Four 400-token examples sharing a 280-token prefix (what a sample_logs micro-batch holds), LoRA r 8
// on every projection, three steps of batch_loss_sum + backward under torch's profiler; the trace
// goes to $SLMCTL_TRACE (default /tmp/slm-train-trace.json): scripts/trace-self-time.py sums it.
TEST_CASE("profile: SmolLM2 LoRA training step ops" * doctest::skip(true)) {
    model::load_options lo;
    lo.dtype = std::getenv("SLMCTL_BENCH_DTYPE") ? std::getenv("SLMCTL_BENCH_DTYPE") : "bf16";
    lo.tokenizer = false;
    lo.int4_decode = "off";
    auto lm = model::load_model(model::default_smollm2_path(), lo);
    auto& m = lm->decoder();
    if (const char* e = std::getenv("SLMCTL_BENCH_THREADS")) model::set_torch_threads(std::atoi(e));
    model::lora_config c;
    c.rank = 8;
    c.alpha = 16;
    model::add_lora(m, c, 1);
    randomize_adapters(m, 2);
    std::mt19937_64 rng(3);
    auto tok = [&] { return int32_t(100 + rng() % 40000); };
    std::vector<int32_t> sys = {1};
    for (int i = 1; i < 280; ++i) sys.push_back(tok());
    std::vector<finetune::example> xs;
    for (int k = 0; k < 4; ++k) {
        finetune::example e;
        e.ids = sys;
        for (int i = 0; i < 60; ++i) e.ids.push_back(tok());
        e.prompt_len = static_cast<int64_t>(e.ids.size());
        for (int i = 0; i < 60; ++i) e.ids.push_back(tok());
        xs.push_back(std::move(e));
    }
    model::prefix_options po;
    auto step = [&] {
        finetune::batch_tokens n;
        auto l = finetune::batch_loss_sum(m, xs, po, 512, &n) / double(std::max<int64_t>(1, n.loss));
        l.backward();
    };
    // SLMCTL_FUSED_KERNELS=0: the op chains instead of model/net/fused.h (A/B)
    step();  // kernels and primitives created outside the trace
    for (int i = 0; i < 3; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        step();
        MESSAGE("untraced step " << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s");
    }
    const char* path = std::getenv("SLMCTL_TRACE");
    torch::autograd::profiler::RecordProfile rp(path ? path : "/tmp/slm-train-trace.json");
    for (int i = 0; i < 3; ++i) step();
}
