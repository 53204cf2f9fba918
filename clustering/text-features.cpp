// Internal helpers of the shared tokenizer: stopwords for labels and small sparse TF-IDF vectors
// (response similarity). The hot feature loops are inline in text-features.h.
#include "clustering/text-features.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>

namespace slm::clustering::detail {

bool is_stopword(std::string_view w) {
    static const std::unordered_set<std::string_view> words = {
        "the", "and", "for", "with", "that", "this", "from", "are", "was", "were", "you", "your", "our",
        "has", "have", "had", "not", "but", "can", "will", "would", "should", "could", "into", "onto",
        "its", "it's", "all", "any", "each", "per", "via", "than", "then", "them", "they", "their",
        "there", "here", "what", "which", "who", "when", "where", "how", "why", "also", "just", "only",
        "please", "thanks", "thank", "use", "using", "used", "need", "needs", "want", "make", "get",
        "let", "yes", "out", "about", "over", "under", "some", "more", "most", "other", "such", "one",
        "two", "new", "may", "might", "must", "shall", "been", "being", "does", "did", "doing", "done",
        "these", "those", "both", "very", "too", "own", "same", "again", "once", "because", "while",
        "after", "before", "below", "above", "between", "through", "during", "without", "within",
        "user", "assistant", "system", "tool", "tools", "response", "content", "role", "null", "true",
        "false", "none", "http", "https", "www", "com",
        // collect's task_text markup: the response shape says what kind, not which task
        "prose", "json", "code", "empty", "tool_call", "tool_result", "after"};
    return words.count(w) > 0;
}

sparse_vec hashed_tfidf(std::string_view text, int bits, const std::vector<float>& idf) {
    feature_config cfg;
    cfg.word_ngram_max = 2;
    cfg.char_ngram_max = 0;
    const uint32_t shift = 64 - bits;
    std::vector<std::pair<uint32_t, float>> tf;
    tf.reserve(text.size() / 3 + 4);
    for_each_feature(text, cfg, [&](uint64_t h, int) { tf.emplace_back(static_cast<uint32_t>(h >> shift), 1.f); });
    std::sort(tf.begin(), tf.end(), [](auto& a, auto& b) { return a.first < b.first; });
    sparse_vec v;
    double norm = 0;
    for (size_t i = 0; i < tf.size();) {
        size_t j = i;
        while (j < tf.size() && tf[j].first == tf[i].first) ++j;
        float w = 1.f + std::log(static_cast<float>(j - i));
        if (!idf.empty()) w *= idf[tf[i].first];
        if (w > 0) {
            v.idx.push_back(tf[i].first);
            v.val.push_back(w);
            norm += static_cast<double>(w) * w;
        }
        i = j;
    }
    if (norm > 0) {
        float inv = static_cast<float>(1.0 / std::sqrt(norm));
        for (auto& x : v.val) x *= inv;
    }
    return v;
}

float dot(const sparse_vec& a, const sparse_vec& b) {
    float s = 0;
    size_t i = 0, j = 0;
    while (i < a.idx.size() && j < b.idx.size()) {
        if (a.idx[i] < b.idx[j]) ++i;
        else if (a.idx[i] > b.idx[j]) ++j;
        else s += a.val[i++] * b.val[j++];
    }
    return s;
}

}  // namespace slm::clustering::detail
