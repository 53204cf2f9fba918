// Internal to slm_clustering: the one tokenizer and feature hasher behind the TF-IDF embedder,
// the c-TF-IDF labels and the response similarity, so all three see words the same way.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slm::clustering::detail {

/// murmur3's 64-bit finaliser: spreads FNV's weak low bits before we take the top ones.
inline uint64_t fmix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

constexpr uint64_t fnv_offset = 0xcbf29ce484222325ULL;
constexpr uint64_t fnv_prime = 0x100000001b3ULL;

/// Byte class for tokenizing: word bytes are ASCII letters (lower-cased), digits (folded to '0'
/// so dates, ids and amounts do not split a task), '_' and every non-ASCII byte (UTF-8 letters).
/// Returns 0 for a separator.
struct byte_table {
    unsigned char map[256];
    constexpr byte_table() : map{} {
        for (int c = 0; c < 256; ++c) {
            unsigned char m = 0;
            if (c >= 'a' && c <= 'z') m = static_cast<unsigned char>(c);
            else if (c >= 'A' && c <= 'Z') m = static_cast<unsigned char>(c - 'A' + 'a');
            else if (c >= '0' && c <= '9') m = '0';
            else if (c == '_') m = '_';
            else if (c >= 0x80) m = static_cast<unsigned char>(c);
            map[c] = m;
        }
    }
};
inline constexpr byte_table k_bytes{};

/// Calls f(begin, end) for each word (as a view into `text`; the caller maps bytes through
/// k_bytes when it needs the normalised form).
template <typename F> inline void for_each_word(std::string_view text, F&& f) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    size_t n = text.size(), i = 0;
    while (i < n) {
        while (i < n && !k_bytes.map[s[i]]) ++i;
        size_t b = i;
        while (i < n && k_bytes.map[s[i]]) ++i;
        if (i > b) f(b, i);
    }
}

/// Normalised word (lower-cased, digits folded).
inline std::string normalise_word(std::string_view text, size_t b, size_t e) {
    std::string w(e - b, ' ');
    for (size_t i = b; i < e; ++i) w[i - b] = static_cast<char>(k_bytes.map[static_cast<unsigned char>(text[i])]);
    return w;
}

enum feature_block : int { word_block = 0, char_block = 1 };

struct feature_config {
    int word_ngram_max = 2;
    int char_ngram_min = 3;
    int char_ngram_max = 5;  ///< 0: no char n-grams
    int max_word_chars = 24; ///< longer words (hashes, base64) give no char n-grams
    bool split_identifiers = true;  ///< snake_case identifiers also give their parts as words
};

/// Hashes of every word n-gram and char n-gram (inside words padded with spaces) of `text`;
/// f(hash, block). One pass over the bytes, no allocation.
template <typename F> inline void for_each_feature(std::string_view text, const feature_config& cfg, F&& f) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    constexpr int max_n = 8;
    uint64_t prev[max_n] = {};  // hashes of the previous words, most recent first
    int have = 0;
    unsigned char buf[64];
    for_each_word(text, [&](size_t b, size_t e) {
        uint64_t h = fnv_offset;
        size_t len = e - b;
        for (size_t i = b; i < e; ++i) h = (h ^ k_bytes.map[s[i]]) * fnv_prime;
        h = fmix64(h);
        f(h, word_block);
        // identifiers: their parts are words too (count_tickets_by_title shares "tickets" with
        // list_tickets), as extra unigrams beside the whole token
        if (cfg.split_identifiers) {
            size_t pb = b;
            bool split = false;
            for (size_t i = b; i <= e; ++i) {
                if (i < e && s[i] != '_') continue;
                if (i < e) split = true;
                if (split && i > pb) {
                    uint64_t ph = fnv_offset;
                    for (size_t j = pb; j < i; ++j) ph = (ph ^ k_bytes.map[s[j]]) * fnv_prime;
                    f(fmix64(ph), word_block);
                }
                pb = i + 1;
            }
        }
        // word n-grams: combine with the previous words' hashes
        uint64_t g = h;
        for (int k = 0; k < have && k + 2 <= cfg.word_ngram_max; ++k) {
            g = fmix64(g * 0x9e3779b97f4a7c15ULL + prev[k] + static_cast<uint64_t>(k + 1));
            f(g, word_block);
        }
        for (int k = max_n - 1; k > 0; --k) prev[k] = prev[k - 1];
        prev[0] = h;
        if (have < max_n - 1) ++have;
        // char n-grams of " word "
        if (cfg.char_ngram_max > 0 && len <= static_cast<size_t>(cfg.max_word_chars)) {
            size_t m = 0;
            buf[m++] = ' ';
            for (size_t i = b; i < e; ++i) buf[m++] = k_bytes.map[s[i]];
            buf[m++] = ' ';
            for (size_t st = 0; st + cfg.char_ngram_min <= m; ++st) {
                uint64_t c = fnv_offset ^ 0x5bd1e995ULL;  // a different stream from the words
                for (int n = 1; n <= cfg.char_ngram_max && st + n <= m; ++n) {
                    c = (c ^ buf[st + n - 1]) * fnv_prime;
                    if (n >= cfg.char_ngram_min) f(fmix64(c + static_cast<uint64_t>(n)), char_block);
                }
            }
        }
    });
}

/// Counts features of one document: an open-addressing table over keys (bucket << 1 | block)
/// cleared through its list of used slots, so one instance serves many documents.
class feature_counter {
public:
    explicit feature_counter(int bits = 15) : mask_((1u << bits) - 1), keys_(1u << bits, empty), counts_(1u << bits, 0) {}
    void add(uint32_t key) {
        if (used_.size() * 2 >= keys_.size()) return;  // full: drop the rest of a huge document
        uint32_t i = (key * 0x9e3779b1u) & mask_;
        while (keys_[i] != empty && keys_[i] != key) i = (i + 1) & mask_;
        if (keys_[i] == empty) {
            keys_[i] = key;
            used_.push_back(i);
        }
        counts_[i] += 1;
    }
    template <typename F> void for_each(F&& f) const {
        for (uint32_t i : used_) f(keys_[i], counts_[i]);
    }
    /// Like for_each, f(key, count&) may rewrite the count (into a weight, say).
    template <typename F> void update_each(F&& f) {
        for (uint32_t i : used_) f(keys_[i], counts_[i]);
    }
    size_t size() const { return used_.size(); }
    void clear() {
        for (uint32_t i : used_) {
            keys_[i] = empty;
            counts_[i] = 0;
        }
        used_.clear();
    }

private:
    static constexpr uint32_t empty = 0xffffffffu;
    uint32_t mask_;
    std::vector<uint32_t> keys_;
    std::vector<float> counts_;
    std::vector<uint32_t> used_;
};

/// A few dozen English function words and chat boilerplate that never make a good label.
bool is_stopword(std::string_view w);

/// Sparse L2-normalised hashed TF-IDF vector (sorted by bucket) for small-scale similarity.
struct sparse_vec {
    std::vector<uint32_t> idx;
    std::vector<float> val;
};
/// Word unigrams + bigrams of `text`, sublinear tf, times idf[bucket] when idf is non-empty.
sparse_vec hashed_tfidf(std::string_view text, int bits, const std::vector<float>& idf);
float dot(const sparse_vec& a, const sparse_vec& b);

}  // namespace slm::clustering::detail
