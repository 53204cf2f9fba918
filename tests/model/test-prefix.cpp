// Shared prefixes: find_prefix_groups against a brute force over every partition, and
// generate_shared against generate() (same greedy and seeded tokens, with and without LoRA, across
// batches through the prefix cache, the cache dropped when the adapter changes), with the counts
// of prompt tokens it computed.
#include <torch/torch.h>  // before doctest: glog's CHECK must not win over doctest's
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <numeric>
#include <random>

#include "common/common.h"
#include "model/adapter.h"
#include "model/chat-template.h"
#include "model/generate.h"
#include "model/llama.h"
#include "model/model.h"
#include "model/prefix.h"
#include "tests/model/check-tensor.h"

using namespace slm::model;

namespace {

using seqs_t = std::vector<std::vector<int32_t>>;

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::vector<int32_t> run(int32_t from, int n) {
    std::vector<int32_t> v;
    for (int i = 0; i < n; ++i) v.push_back(from + i);
    return v;
}

int64_t saved(const std::vector<prefix_group>& gs) {
    int64_t s = 0;
    for (const auto& g : gs)
        if (g.len > 0) s += (static_cast<int64_t>(g.members.size()) - 1) * g.len;
    return s;
}

// Every sequence exactly once; shared groups really share len tokens within the caps.
void check_partition(const seqs_t& xs, const std::vector<int64_t>& caps, int64_t min_tokens,
                     const std::vector<prefix_group>& gs) {
    std::vector<int> seen(xs.size(), 0);
    for (size_t k = 0; k < gs.size(); ++k) {
        const auto& g = gs[k];
        REQUIRE(!g.members.empty());
        for (auto i : g.members) ++seen[i];
        if (g.len == 0) {
            CHECK(k + 1 == gs.size());  // the unshared rest comes last
            continue;
        }
        CHECK(g.members.size() >= 2);
        CHECK(g.len >= min_tokens);
        for (auto i : g.members) {
            CHECK(common_prefix(xs[g.members[0]], xs[i]) >= g.len);
            CHECK(g.len <= (caps.empty() ? static_cast<int64_t>(xs[i].size()) - 1 : caps[i]));
        }
    }
    for (size_t i = 0; i < xs.size(); ++i) CHECK(seen[i] == 1);
}

// The best saving over every split into contiguous runs of the lexicographic order of the sequences
// cut to their caps (n <= 7): the
// contract of find_prefix_groups. (A group may in general interleave with a deeper one, e.g. {s1,
// s4} sharing 2 tokens around {s2, s3} sharing 10; such partitions are not searched.)
int64_t brute_force(const seqs_t& xs, const std::vector<int64_t>& caps, int64_t min_tokens) {
    const size_t n = xs.size();
    auto cap = [&](size_t i) { return caps.empty() ? static_cast<int64_t>(xs[i].size()) - 1 : caps[i]; };
    auto key = [&](size_t i) { return std::vector<int32_t>(xs[i].begin(), xs[i].begin() + cap(i)); };
    std::vector<size_t> o(n);
    std::iota(o.begin(), o.end(), 0);
    std::stable_sort(o.begin(), o.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
    int64_t best = 0;
    for (uint32_t cuts = 0; cuts < (1u << (n - 1)); ++cuts) {  // bit k: a run ends after o[k]
        int64_t total = 0;
        size_t start = 0;
        for (size_t k = 0; k < n; ++k) {
            if (k + 1 < n && !(cuts >> k & 1)) continue;
            if (k > start) {
                int64_t L = cap(o[start]);
                for (size_t t = start + 1; t <= k; ++t)
                    L = std::min({L, cap(o[t]), common_prefix(xs[o[start]], xs[o[t]])});
                if (L >= min_tokens) total += static_cast<int64_t>(k - start) * L;
            }
            start = k + 1;
        }
        best = std::max(best, total);
    }
    return best;
}

std::unique_ptr<language_model> load_stories() {
    set_torch_threads(1);
    load_options o;
    o.dtype = "fp32";
    return load_model(slm::test::shared_data("models/llama2c/stories260K.bin"), o);
}

std::vector<int32_t> story_ids() {
    return slm::test::read_json(slm::test::shared_data("models/llama2c/stories260K_greedy_from_bos.json"))
        .at("greedy_ids")
        .get<std::vector<int32_t>>();
}

// A batch in the shape of agent calls: a 40-token "system prompt" shared by four prompts with
// suffixes of different lengths (one of them twice), a second family sharing 20 tokens, and one
// prompt that shares nothing.
seqs_t agent_batch(int variant) {
    const auto ids = story_ids();
    auto piece = [&](int from, int n) { return std::vector<int32_t>(ids.begin() + from, ids.begin() + from + n); };
    const auto sys = cat({1}, piece(0, 39));
    const auto other = cat({1}, piece(120, 19));
    seqs_t out = {cat(sys, piece(60 + variant, 3)), cat(sys, piece(80 + variant, 11)), cat(other, piece(50, 5)),
                  cat(sys, piece(100, 1 + variant)), cat({1}, piece(200, 7 + variant)), cat(other, piece(150, 9)),
                  cat(sys, piece(80 + variant, 11))};
    return out;
}

}  // namespace

TEST_CASE("find_prefix_groups: shared runs, minimum length, caps") {
    const auto sys = run(1000, 40);
    SUBCASE("one family") {
        seqs_t xs = {cat(sys, {1, 2}), cat(sys, {3}), cat(sys, {4, 5, 6})};
        auto gs = find_prefix_groups(xs, {}, 32);
        REQUIRE(gs.size() == 1);
        CHECK(gs[0].len == 40);
        CHECK(gs[0].members == std::vector<size_t>{0, 1, 2});
        check_partition(xs, {}, 32, gs);
    }
    SUBCASE("too short to share, and nothing at all") {
        seqs_t xs = {cat(run(1000, 10), {1}), cat(run(1000, 10), {2})};
        auto gs = find_prefix_groups(xs, {}, 32);
        REQUIRE(gs.size() == 1);
        CHECK(gs[0].len == 0);
        CHECK(gs[0].members.size() == 2);
        CHECK(find_prefix_groups({}, {}, 32).empty());
        CHECK(find_prefix_groups(xs, {}, 8)[0].len == 10);
    }
    SUBCASE("identical prompts keep their last token, caps hold") {
        seqs_t xs = {sys, sys, sys};
        auto gs = find_prefix_groups(xs, {}, 32);
        REQUIRE(gs.size() == 1);
        CHECK(gs[0].len == 39);
        gs = find_prefix_groups(xs, {35, 39, 39}, 32);
        CHECK(gs[0].len == 35);
        gs = find_prefix_groups(xs, {10, 39, 39}, 32);  // the capped one alone, the other two share
        REQUIRE(gs.size() == 2);
        CHECK(gs[0].members == std::vector<size_t>{1, 2});
        CHECK(gs[1].len == 0);
        CHECK(gs[1].members == std::vector<size_t>{0});
    }
    SUBCASE("two families beat one shorter shared prefix") {
        // A, B share 100; C, D share 100; all four share 60: 2 * 100 > 3 * 60
        const auto base = run(0, 60);
        const auto a = cat(base, run(500, 40)), c = cat(base, run(700, 40));
        seqs_t xs = {cat(a, {1}), cat(c, {2}), cat(a, {3}), cat(c, {4}), cat(run(9000, 50), {5})};
        auto gs = find_prefix_groups(xs, {}, 32);
        check_partition(xs, {}, 32, gs);
        REQUIRE(gs.size() == 3);
        CHECK(gs[0].members == std::vector<size_t>{0, 2});
        CHECK(gs[1].members == std::vector<size_t>{1, 3});
        CHECK(gs[0].len == 100);
        CHECK(gs[2].members == std::vector<size_t>{4});
        // with a third member in each family one group of all (5 * 60 = 300) loses to 2 * 2 * 100
        CHECK(saved(gs) == 200);
    }
    SUBCASE("the best split into runs, against a brute force over all of them") {
        std::mt19937 rng(7);
        for (int trial = 0; trial < 300; ++trial) {
            const int n = 2 + int(rng() % 6);
            seqs_t xs;
            std::vector<int64_t> caps;
            for (int i = 0; i < n; ++i) {
                // few distinct tokens over short lengths: many shared prefixes of all lengths
                std::vector<int32_t> s;
                const int len = 1 + int(rng() % 12);
                for (int t = 0; t < len; ++t) s.push_back(int32_t(rng() % (t < 6 ? 2 : 3)));
                xs.push_back(s);
                caps.push_back(int64_t(rng() % (len + 1)));
            }
            const int64_t min_tokens = 1 + int64_t(rng() % 4);
            const bool use_caps = trial % 2 == 0;
            const std::vector<int64_t> c = use_caps ? caps : std::vector<int64_t>{};
            auto gs = find_prefix_groups(xs, c, min_tokens);
            INFO("trial " << trial << " n " << n << " min " << min_tokens);
            check_partition(xs, c, min_tokens, gs);
            CHECK(saved(gs) == brute_force(xs, c, min_tokens));
        }
    }
}

TEST_CASE("generate_shared: the same tokens as generate(), prefixes computed once, reused across batches") {
    static auto m = load_stories();
    const auto& d = m->decoder();
    sampling_params sp;
    sp.max_tokens = 24;
    sp.sync_every = 4;
    prefix_options po;
    po.min_tokens = 16;

    SUBCASE("greedy, one batch, then the next batch from the cache") {
        prefix_cache cache(po);
        for (int variant = 0; variant < 2; ++variant) {
            const auto xs = agent_batch(variant);
            generate_stats plain, shared;
            const auto want = generate(d, xs, sp, {}, &plain);
            const auto got = generate_shared(d, xs, sp, cache, {}, &shared);
            REQUIRE(got.size() == xs.size());
            for (size_t i = 0; i < xs.size(); ++i) {
                INFO("batch " << variant << " prompt " << i << " of " << xs[i].size() << " tokens");
                CHECK(got[i].tokens == want[i].tokens);
                CHECK(got[i].reason == want[i].reason);
            }
            int64_t prompt = 0, suffix = 0;
            for (const auto& x : xs) prompt += static_cast<int64_t>(x.size());
            // the 40-token prefix of four prompts (sharing the duplicate pair's 50 would save less)
            // and the 20 of two
            const auto gs = find_prefix_groups(xs, {}, po.min_tokens);
            int64_t prefixes = 0;
            for (const auto& g : gs) {
                prefixes += g.len;
                for (auto i : g.members) suffix += static_cast<int64_t>(xs[i].size()) - g.len;
            }
            MESSAGE("batch " << variant << ": " << shared.prefill_tokens << " of " << prompt
                             << " prompt tokens computed, " << shared.cached_tokens << " from the cache");
            CHECK(plain.prefill_tokens == prompt);
            CHECK(shared.prompt_tokens == prompt);
            // a group's prefix may start from another group's (the BOS at least): computed + cached
            CHECK(shared.prefill_tokens + shared.cached_tokens == prefixes + suffix);
            if (variant == 0) {
                CHECK(shared.cached_tokens <= 1);
            } else {
                // both prefixes come from the cache: only the suffixes are computed
                CHECK(shared.prefill_tokens == suffix);
            }
            CHECK(shared.prefill_tokens < prompt * 6 / 10);
            CHECK(shared.generated_tokens == plain.generated_tokens);
        }
        CHECK(cache.entries() >= 2);
        CHECK(cache.bytes() > 0);
    }
    SUBCASE("a prompt alone in its batch takes an earlier batch's prefix") {
        prefix_cache cache(po);
        const auto xs = agent_batch(0);
        generate_shared(d, xs, sp, cache);
        generate_stats st;
        const seqs_t one = {cat(std::vector<int32_t>(xs[0].begin(), xs[0].begin() + 40), {7, 8, 9})};
        const auto got = generate_shared(d, one, sp, cache, {}, &st);
        CHECK(st.cached_tokens == 40);
        CHECK(st.prefill_tokens == 3);
        CHECK(got[0].tokens == generate(d, one, sp)[0].tokens);
    }
    SUBCASE("seeded sampling and stop callbacks see the caller's sequence order") {
        sampling_params s = sp;
        s.temperature = 1.0f;
        s.seed = 11;
        const auto xs = agent_batch(1);
        auto stop3 = [](size_t seq, const std::vector<int32_t>& t) -> int64_t {
            return seq == 3 && t.size() >= 6 ? 6 : -1;
        };
        prefix_cache cache(po);
        const auto want = generate(d, xs, s, stop3);
        const auto got = generate_shared(d, xs, s, cache, stop3);
        for (size_t i = 0; i < xs.size(); ++i) CHECK(got[i].tokens == want[i].tokens);
        CHECK(got[3].reason == finish_reason::stop);
        CHECK(got[3].tokens.size() == 6);
    }
    SUBCASE("sharing off is generate()") {
        prefix_options off = po;
        off.enabled = false;
        prefix_cache cache(off);
        generate_stats st;
        const auto xs = agent_batch(0);
        generate_shared(d, xs, sp, cache, {}, &st);
        CHECK(st.prefill_tokens == st.prompt_tokens);
        CHECK(cache.entries() == 0);
    }
}

TEST_CASE("generate_shared with LoRA: same tokens, and a new adapter never reads the old one's cache") {
    auto m = load_stories();
    auto& d = m->decoder();
    lora_config c;
    c.rank = 4;
    c.alpha = 8;
    auto adapt = [&](uint64_t seed) {
        add_lora(d, c, seed);
        torch::NoGradGuard ng;
        auto g = at::detail::createCPUGenerator(seed + 100);
        auto ps = lora_parameters(d);
        for (size_t i = 1; i < ps.size(); i += 2) ps[i].normal_(0, 0.3, g);
    };
    sampling_params sp;
    sp.max_tokens = 20;
    prefix_options po;
    po.min_tokens = 16;
    prefix_cache cache(po);
    const auto xs = agent_batch(0);
    const auto base = generate(d, xs, sp);
    adapt(1);
    const auto want1 = generate(d, xs, sp);
    const auto got1 = generate_shared(d, xs, sp, cache);
    int differ = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
        CHECK(got1[i].tokens == want1[i].tokens);
        differ += want1[i].tokens != base[i].tokens;
    }
    CHECK(differ > 0);  // the adapter does change the answers
    // another adapter (new tensors), then the same one changed in place: the cache must not serve
    adapt(2);
    const auto want2 = generate(d, xs, sp);
    generate_stats st, fresh;
    {
        prefix_cache empty(po);
        generate_shared(d, xs, sp, empty, {}, &fresh);  // what a cache without the old entries reuses
    }
    const auto got2 = generate_shared(d, xs, sp, cache, {}, &st);
    CHECK(st.cached_tokens == fresh.cached_tokens);
    for (size_t i = 0; i < xs.size(); ++i) CHECK(got2[i].tokens == want2[i].tokens);
    {
        torch::NoGradGuard ng;
        for (auto& p : lora_parameters(d)) p.mul_(1.5);
    }
    const auto want3 = generate(d, xs, sp);
    const auto got3 = generate_shared(d, xs, sp, cache, {}, &st);
    CHECK(st.cached_tokens == fresh.cached_tokens);
    for (size_t i = 0; i < xs.size(); ++i) CHECK(got3[i].tokens == want3[i].tokens);
    remove_lora(d);
    const auto got0 = generate_shared(d, xs, sp, cache, {}, &st);
    CHECK(st.cached_tokens == fresh.cached_tokens);
    for (size_t i = 0; i < xs.size(); ++i) CHECK(got0[i].tokens == base[i].tokens);
}

TEST_CASE("generate_shared on SmolLM2-135M-Instruct: chats with one system prompt give the same answers") {
    const std::string path = default_smollm2_path();
    REQUIRE_MESSAGE(std::filesystem::exists(path),
                    "SmolLM2 GGUF not found at " << path << ": run scripts/fetch-models.sh to fetch it");
    set_torch_threads(1);
    load_options o;
    o.dtype = "fp32";
    auto m = load_model(path, o);
    const std::string sys =
        "You are the booking assistant of a small airline. Answer in one short sentence. Never invent flight "
        "numbers; if you do not know, say so. Be polite and precise.";
    seqs_t xs;
    for (const char* q : {"What is the capital of France?", "Can I bring a dog on board?", "What is 2 + 2?"})
        xs.push_back(m->encode_chat({{"system", sys}, {"user", q}}));
    text_params p;
    p.sampling.max_tokens = 24;
    p.stop = m->chat().stop_strings();
    generate_stats plain, shared;
    const auto want = m->generate_ids(xs, p, &plain);
    prefix_cache cache;
    p.prefixes = &cache;
    const auto got = m->generate_ids(xs, p, &shared);
    for (size_t i = 0; i < xs.size(); ++i) {
        MESSAGE("SmolLM2: " << got[i].text);
        CHECK(got[i].text == want[i].text);
    }
    MESSAGE("prefill " << shared.prefill_tokens << " of " << shared.prompt_tokens << " prompt tokens");
    CHECK(shared.prefill_tokens < plain.prefill_tokens);
}
