// make_split(): the deterministic, stratified train / val / test split, with near-duplicates kept
// on one side. Torch-free.
#include <algorithm>
#include <cmath>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/common.h"

#include "finetune/finetune.h"

namespace slm::finetune {

namespace {

// FNV-1a 64 then a splitmix finaliser: stable across platforms and runs (std::hash is not).
uint64_t stable_hash(std::string_view s, uint64_t seed) {
    uint64_t h = 1469598103934665603ull ^ (seed * 0x9E3779B97F4A7C15ull);
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h ^= h >> 30, h *= 0xBF58476D1CE4E5B9ull, h ^= h >> 27, h *= 0x94D049BB133111EBull, h ^= h >> 31;
    return h;
}

}  // namespace

std::vector<store::split_row> make_split(const std::vector<split_item>& items, uint64_t seed,
                                         const split_fractions& f) {
    const double sum = f.train + f.val + f.test;
    if (!(f.train > 0) || f.val < 0 || f.test < 0 || !(sum > 0))
        throw user_error(fmt::format("split fractions train {} val {} test {} are not valid", f.train, f.val, f.test),
                         "use non-negative shares with train > 0, e.g. 0.8/0.1/0.1");
    const double ft = f.train / sum, fv = f.val / sum;
    // stratum -> group -> calls
    std::map<std::string, std::map<std::string, std::vector<int64_t>>> strata;
    for (const auto& it : items) strata[it.stratum][it.group].push_back(it.call_id);
    std::vector<store::split_row> out;
    for (auto& [name, groups] : strata) {
        struct g {
            uint64_t key;
            const std::vector<int64_t>* calls;
        };
        std::vector<g> order;
        int64_t n = 0;
        for (auto& [key, calls] : groups) {
            order.push_back({stable_hash(name + '\x1f' + key, seed), &calls});
            n += calls.size();
        }
        std::sort(order.begin(), order.end(), [](const g& a, const g& b) { return a.key < b.key; });
        // the first groups (by hash) go to test, the next to val, the rest to train; a stratum with
        // three or more groups gives val and test at least one group each (when their share > 0)
        const bool small = order.size() < 3;
        const double want_test = small ? 0 : std::max(f.test > 0 ? 1.0 : 0.0, n * (1 - ft - fv));
        const double want_val = small ? 0 : std::max(f.val > 0 ? 1.0 : 0.0, n * fv);
        double test_n = 0, val_n = 0;
        for (size_t i = 0; i < order.size(); ++i) {
            const char* split = "train";
            const double sz = order[i].calls->size();
            if (i + 1 < order.size() || small) {  // the last group always trains
                if (test_n < want_test && test_n + sz / 2 <= want_test + 0.5) {
                    split = "test";
                    test_n += sz;
                } else if (val_n < want_val && val_n + sz / 2 <= want_val + 0.5) {
                    split = "val";
                    val_n += sz;
                }
            }
            for (auto id : *order[i].calls) out.push_back({id, split});
        }
    }
    std::sort(out.begin(), out.end(), [](const store::split_row& a, const store::split_row& b) { return a.call_id < b.call_id; });
    return out;
}

std::string call_stratum(const store::call_row& c) {
    if (!c.response_tool_calls.empty()) {
        auto j = nlohmann::json::parse(c.response_tool_calls, nullptr, false);
        if (j.is_array() && !j.empty() && j[0].is_object() && j[0].contains("name") && j[0]["name"].is_string())
            return j[0]["name"].get<std::string>();
    }
    return "text";
}

std::string call_group(const store::call_row& c) {
    auto j = nlohmann::json::parse(c.messages, nullptr, false);
    if (j.is_array())
        for (auto it = j.rbegin(); it != j.rend(); ++it)
            if (it->is_object() && it->value("role", "") == "user") {
                const auto& content = (*it)["content"];
                return content.is_string() ? content.get<std::string>() : content.dump();
            }
    return c.messages;
}

}  // namespace slm::finetune
