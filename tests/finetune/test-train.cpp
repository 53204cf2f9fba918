// finetune/: the split, and train_lora on the tiny reference Llama (token-level examples, fp32):
// the loss is the response-only cross-entropy, training lowers it, losses are pinned, resume
// equals an uninterrupted run, divergence and bad options stop with a clear error.
#include <torch/torch.h>  // before doctest: glog's CHECK must not win over doctest's
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "common/common.h"
#include "finetune/finetune.h"
#include "model/llama.h"
#include "model/model.h"
#include "tests/test-util.h"

using namespace slm;
namespace fs = std::filesystem;

namespace {

std::unique_ptr<model::language_model> tiny() {
    model::load_options o;
    o.dtype = "fp32";
    o.tokenizer = false;
    o.int4_decode = "off";
    return model::load_model(test::source_dir("tests/data/ref/tiny-llama"), o);
}

// A learnable task: a random prompt of 6-14 tokens, then the response: the prompt's first token,
// two fixed tokens, and an end token.
std::vector<finetune::example> task(int n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<finetune::example> xs;
    for (int i = 0; i < n; ++i) {
        finetune::example e;
        const int len = 6 + int(rng() % 9);
        e.ids.push_back(1);
        for (int t = 0; t < len; ++t) e.ids.push_back(3 + int(rng() % 250));
        e.prompt_len = e.ids.size();
        e.ids.push_back(e.ids[1]);
        e.ids.push_back(20);
        e.ids.push_back(30);
        e.ids.push_back(2);
        xs.push_back(std::move(e));
    }
    return xs;
}

finetune::train_options base_options() {
    finetune::train_options o;
    o.lora.rank = 4;
    o.lora.alpha = 8;
    o.lora.dropout = 0.1;
    o.lr = 1e-2;
    o.batch_size = 4;
    o.max_steps = 12;
    o.eval_every = 4;
    o.seed = 7;
    return o;
}

}  // namespace

TEST_CASE("split: deterministic whatever the order, near-duplicates on one side, every stratum held out") {
    std::vector<finetune::split_item> items;
    for (int i = 0; i < 300; ++i)
        items.push_back({i + 1, i % 3 == 0 ? "text" : (i % 3 == 1 ? "get_weather" : "book_flight"),
                         "user message " + std::to_string(i % 120)});  // 120 groups, most of 2-3 calls
    auto a = finetune::make_split(items, 5);
    auto shuffled = items;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(1));
    auto b = finetune::make_split(shuffled, 5);
    REQUIRE(a.size() == items.size());
    REQUIRE(b.size() == items.size());
    for (size_t i = 0; i < a.size(); ++i) {
        CHECK(a[i].call_id == b[i].call_id);
        CHECK(a[i].split == b[i].split);
    }
    // another seed gives another split
    auto c = finetune::make_split(items, 6);
    int differ = 0;
    for (size_t i = 0; i < a.size(); ++i) differ += a[i].split != c[i].split;
    CHECK(differ > 10);
    // groups never straddle; shares close to 80/10/10 per stratum
    std::map<int64_t, std::string> by_id;
    for (const auto& r : a) by_id[r.call_id] = r.split;
    std::map<std::string, std::set<std::string>> group_splits;
    std::map<std::string, std::map<std::string, int>> counts;
    for (const auto& it : items) {
        group_splits[it.stratum + "|" + it.group].insert(by_id[it.call_id]);
        counts[it.stratum][by_id[it.call_id]]++;
    }
    for (const auto& [g, s] : group_splits) CHECK_MESSAGE(s.size() == 1, g);
    for (auto& [stratum, c2] : counts) {
        const int n = c2["train"] + c2["val"] + c2["test"];
        CHECK(c2["val"] >= 1);
        CHECK(c2["test"] >= 1);
        CHECK(std::abs(c2["train"] - 0.8 * n) <= 0.08 * n);
    }
    // a stratum of two groups trains on both
    auto small = finetune::make_split({{1, "rare", "a"}, {2, "rare", "b"}}, 0);
    CHECK(small[0].split == "train");
    CHECK(small[1].split == "train");
    CHECK_THROWS_AS(finetune::make_split(items, 0, {0, 0.5, 0.5}), user_error);
}

TEST_CASE("the loss covers the response only and equals the cross-entropy of the full logits") {
    auto lm = tiny();
    auto& m = lm->decoder();
    auto xs = task(6, 3);
    // reference: full logits, cross-entropy on positions prompt_len-1 .. end-2
    torch::NoGradGuard ng;
    double sum = 0;
    int64_t n = 0;
    for (const auto& e : xs) {
        auto tok = torch::tensor(std::vector<int64_t>(e.ids.begin(), e.ids.end())).unsqueeze(0);
        auto logp = torch::log_softmax(m.forward(tok)[0], -1);  // (T, V)
        for (size_t t = e.prompt_len; t < e.ids.size(); ++t) {
            sum -= logp[t - 1][e.ids[t]].item<double>();
            ++n;
        }
    }
    const double ref = sum / n;
    CHECK(finetune::mean_loss(m, xs, 4) == doctest::Approx(ref).epsilon(1e-5));
    CHECK(finetune::mean_loss(m, xs, 1, /*ce_chunk=*/3) == doctest::Approx(ref).epsilon(1e-5));  // chunked head
    // changing a prompt token changes the loss only through the context, never as a target
    auto ys = xs;
    for (auto& e : ys) e.prompt_len = e.ids.size() - 1;  // only the end token carries loss
    CHECK(finetune::mean_loss(m, ys, 4) != doctest::Approx(ref));
}

TEST_CASE("train_lora lowers the validation loss; pinned losses; the adapters kept are the best point's") {
    auto lm = tiny();
    auto& m = lm->decoder();
    auto train = task(64, 1), val = task(16, 2);
    auto o = base_options();
    o.max_steps = 40;
    o.eval_every = 10;
    auto r = finetune::train_lora(m, train, val, o);
    REQUIRE(r.curve.size() == 41);
    REQUIRE(r.val_first);
    REQUIRE(r.val_best);
    CHECK(r.stop_reason == "done");
    CHECK(*r.val_best < 0.8 * *r.val_first);
    MESSAGE("val ", *r.val_first, " -> ", *r.val_best, "; train losses ", r.curve[1].train_loss, " ",
            r.curve[2].train_loss, " ", r.curve[3].train_loss, " ", r.curve[40].train_loss);
    // pinned (fixed seed, fp32); the first step runs with B = 0, so its loss is the base model's
    CHECK(r.curve[1].train_loss == doctest::Approx(5.38603).epsilon(1e-4));
    CHECK(r.curve[2].train_loss == doctest::Approx(5.60669).epsilon(1e-3));
    CHECK(r.curve[40].train_loss == doctest::Approx(2.2191).epsilon(0.02));  // 40 steps of rounding order
    CHECK(*r.val_best == doctest::Approx(2.44721).epsilon(0.02));
    // the adapters in the model are the best validation point's
    CHECK(finetune::mean_loss(m, val, 4) == doctest::Approx(*r.val_best).epsilon(1e-6));
    CHECK(r.padding_share() < 0.25);
    CHECK(r.tokens > 0);
    // warmup then cosine: the lr rises, peaks, falls to ~0 at the end
    CHECK(r.curve[1].lr < r.curve[3].lr);
    CHECK(r.curve[40].lr < 0.01 * o.lr);
}

TEST_CASE("an interrupted and resumed run gives the uninterrupted run's loss curve") {
    test::temp_dir t;
    auto train = task(40, 11), val = task(8, 12);
    auto o = base_options();
    o.checkpoint_every = 3;

    auto lm_a = tiny();
    auto full = finetune::train_lora(lm_a->decoder(), train, val, o);

    auto lm_b = tiny();
    auto ob = o;
    ob.checkpoint_dir = t / "ckpt";
    int polls = 0;
    ob.should_stop = [&] { return ++polls > 5; };  // stop before step 6
    auto first = finetune::train_lora(lm_b->decoder(), train, val, ob);
    CHECK(first.stop_reason == "interrupted");
    CHECK(first.steps == 5);
    REQUIRE(fs::exists(fs::path(ob.checkpoint_dir) / "state.json"));

    auto lm_c = tiny();
    auto oc = ob;
    oc.should_stop = nullptr;
    oc.resume = true;
    auto rest = finetune::train_lora(lm_c->decoder(), train, val, oc);
    CHECK(rest.resumed_from == 5);
    REQUIRE(rest.curve.size() == full.curve.size());
    for (size_t i = 1; i < full.curve.size(); ++i) {
        CHECK(rest.curve[i].train_loss == doctest::Approx(full.curve[i].train_loss).epsilon(1e-3));
        if (full.curve[i].val_loss) {
            REQUIRE(rest.curve[i].val_loss);
            CHECK(*rest.curve[i].val_loss == doctest::Approx(*full.curve[i].val_loss).epsilon(1e-3));
        }
    }
    // the final adapters match too
    CHECK(finetune::mean_loss(lm_c->decoder(), val, 4) == doctest::Approx(finetune::mean_loss(lm_a->decoder(), val, 4)).epsilon(1e-4));

    // a resume with other settings is refused, naming what changed
    auto lm_d = tiny();
    auto od = oc;
    od.lr = 5e-3;
    try {
        finetune::train_lora(lm_d->decoder(), train, val, od);
        FAIL("expected user_error");
    } catch (const user_error& e) {
        CHECK(std::string(e.what()).find("lr") != std::string::npos);
    }
}

TEST_CASE("early stopping, time budget, divergence and bad options") {
    auto train = task(32, 21), val = task(8, 22);
    SUBCASE("early stop after `patience` validations without improvement") {
        auto lm = tiny();
        auto o = base_options();
        o.lr = 0.5;  // far too high: validation gets worse quickly
        o.max_steps = 60;
        o.eval_every = 2;
        o.patience = 2;
        o.clip = 0;
        try {
            auto r = finetune::train_lora(lm->decoder(), train, val, o);
            CHECK(r.stop_reason == "early_stop");
            CHECK(r.steps < 60);
        } catch (const user_error& e) {  // or it diverges outright, which names the step
            CHECK(std::string(e.what()).find("diverged at step") != std::string::npos);
        }
    }
    SUBCASE("a NaN loss stops at its step with the last good checkpoint named") {
        auto lm = tiny();
        {
            torch::NoGradGuard ng;
            lm->decoder().layers[0].attn_norm.fill_(std::nan(""));
        }
        auto o = base_options();
        try {
            finetune::train_lora(lm->decoder(), train, {}, o);
            FAIL("expected user_error");
        } catch (const user_error& e) {
            const std::string msg = e.what();
            CHECK(msg.find("diverged at step 1") != std::string::npos);
            CHECK(msg.find("last good checkpoint: none") != std::string::npos);
        }
    }
    SUBCASE("time budget stops cleanly") {
        auto lm = tiny();
        auto o = base_options();
        o.max_steps = 100000;
        o.time_budget_s = 0.5;
        auto r = finetune::train_lora(lm->decoder(), train, val, o);
        CHECK(r.stop_reason == "time_budget");
        CHECK(r.steps < 100000);
    }
    SUBCASE("bad options") {
        auto lm = tiny();
        auto o = base_options();
        o.lora.rank = 0;
        CHECK_THROWS_AS(finetune::train_lora(lm->decoder(), train, val, o), user_error);
        o = base_options();
        o.batch_size = 0;
        CHECK_THROWS_AS(finetune::train_lora(lm->decoder(), train, val, o), user_error);
        std::vector<finetune::example> no_response = {{{1, 5, 6}, 3}};
        CHECK_THROWS_AS(finetune::train_lora(lm->decoder(), no_response, val, base_options()), user_error);
    }
}

TEST_CASE("CUDA: train_lora on the GPU follows the CPU's loss curve (fp32; bf16 base + fp32 LoRA)") {
    if (model::runtime().cuda_devices == 0) {
        MESSAGE("no CUDA device visible: skipped (scripts/gpu-check.sh runs it on a GPU)");
        return;
    }
    auto load_on = [](const std::string& device, const std::string& dtype) {
        model::load_options o;
        o.dtype = dtype;
        o.device = device;
        o.tokenizer = false;
        o.int4_decode = "off";
        return model::load_model(test::source_dir("tests/data/ref/tiny-llama"), o);
    };
    auto train = task(64, 1), val = task(16, 2);
    auto o = base_options();
    o.lora.dropout = 0;  // the masks come from each device's own generator
    auto cpu = load_on("cpu", "fp32");
    auto rc = finetune::train_lora(cpu->decoder(), train, val, o);
    auto g32 = load_on("cuda", "fp32");
    auto rg = finetune::train_lora(g32->decoder(), train, val, o);
    auto g16 = load_on("cuda", "bf16");
    auto rb = finetune::train_lora(g16->decoder(), train, val, o);
    CHECK((g16->decoder().layers[0].projection(model::proj::q).lora_a.scalar_type() == torch::kFloat32));
    REQUIRE(rg.curve.size() == rc.curve.size());
    REQUIRE(rb.curve.size() == rc.curve.size());
    for (size_t s = 1; s < rc.curve.size(); ++s) {
        INFO("step " << s << ": cpu " << rc.curve[s].train_loss << " cuda fp32 " << rg.curve[s].train_loss
                     << " cuda bf16 " << rb.curve[s].train_loss);
        CHECK(rg.curve[s].train_loss == doctest::Approx(rc.curve[s].train_loss).epsilon(1e-3));
        CHECK(rb.curve[s].train_loss == doctest::Approx(rc.curve[s].train_loss).epsilon(0.05));
    }
    REQUIRE(rg.val_best);
    CHECK(*rg.val_best == doctest::Approx(*rc.val_best).epsilon(1e-3));
    CHECK(*rb.val_best < *rb.val_first);
}
