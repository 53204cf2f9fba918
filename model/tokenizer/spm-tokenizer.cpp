// SentencePiece BPE as Llama-2 uses it: spaces become "▁", a "▁" is put in front of the text,
// adjacent pieces merge highest score first, and characters outside the vocabulary fall back
// to <0xNN> byte tokens.
#include <algorithm>
#include <unordered_map>

#include "model/tokenizer/tokenizer-impl.h"
#include "model/tokenizer/unicode.h"

namespace slm::model {

namespace {

constexpr std::string_view k_space_marker = "\xE2\x96\x81";  // U+2581 "▁"

struct piece {
    size_t start, len;  // bytes of the escaped text; len 0 once merged into its left neighbour
    int32_t prev, next;
};
struct bigram {
    float score;
    int32_t left, right;
    size_t len;  // combined length when queued: a mismatch later means a side has changed
};
// Pops the highest score, then the leftmost pair (SentencePiece's order).
inline bool lower(const bigram& a, const bigram& b) {
    return a.score != b.score ? a.score < b.score : a.left > b.left;
}

// Merges one run of the escaped text and appends its ids (with byte fallback).
void merge_word(const tokenizer_impl& t, std::string_view esc, std::vector<int32_t>& out) {
    thread_local std::vector<piece> sym;
    thread_local std::vector<bigram> heap;
    sym.clear();
    for (size_t i = 0; i < esc.size();) {
        size_t len;
        unicode::decode_utf8(esc, i, len);  // a stray byte is a piece of its own
        const auto idx = static_cast<int32_t>(sym.size());
        sym.push_back({i, len, idx - 1, -1});
        if (idx > 0) sym[idx - 1].next = idx;
        i += len;
    }

    heap.clear();
    auto try_add = [&](int32_t l) {
        if (l < 0) return;
        const int32_t r = sym[l].next;
        if (r < 0) return;
        const size_t len = sym[l].len + sym[r].len;
        const int32_t id = t.find(esc.substr(sym[l].start, len));
        if (id < 0) return;
        heap.push_back({t.scores[id], l, r, len});
        std::push_heap(heap.begin(), heap.end(), lower);
    };
    for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) try_add(i);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), lower);
        const bigram b = heap.back();
        heap.pop_back();
        piece& l = sym[b.left];
        piece& r = sym[b.right];
        if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) sym[r.next].prev = b.left;
        try_add(l.prev);
        try_add(b.left);
    }

    for (int32_t i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
        const std::string_view text = esc.substr(sym[i].start, sym[i].len);
        const int32_t id = t.find(text);
        if (id >= 0) {
            out.push_back(id);
            continue;
        }
        for (char c : text) {  // byte fallback
            const int32_t bid = t.byte_ids[static_cast<uint8_t>(c)];
            if (bid >= 0) out.push_back(bid);
            else if (t.unk >= 0) out.push_back(t.unk);
        }
    }
}

struct string_hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
// Per-thread ids of words already merged, for one vocabulary at a time (see bpe-tokenizer.cpp).
struct word_cache {
    static constexpr size_t k_max_entries = 1 << 16;
    static constexpr size_t k_max_word = 64;
    uint64_t owner = 0;
    std::unordered_map<std::string, std::vector<int32_t>, string_hash, std::equal_to<>> ids;
};

}  // namespace

void tokenizer_impl::encode_spm(std::string_view fragment, bool prefix_space, std::vector<int32_t>& out) const {
    thread_local std::string esc;
    thread_local word_cache cache;
    esc.clear();
    if (prefix_space) esc += k_space_marker;
    for (char c : fragment) {
        if (c == ' ') esc += k_space_marker;
        else esc += c;
    }
    if (!spm_word_split) {
        merge_word(*this, esc, out);
        return;
    }
    if (cache.owner != uid) {
        cache.ids.clear();
        cache.owner = uid;
    }
    // No piece of this vocabulary has a "▁" after another character, so merges never cross the
    // start of a "▁word": each word merges alone, and repeated words come from the cache.
    const std::string_view all = esc;
    const size_t m = k_space_marker.size();
    size_t begin = 0;
    auto flush = [&](size_t end) {
        const std::string_view w = all.substr(begin, end - begin);
        if (w.empty()) return;
        if (w.size() <= word_cache::k_max_word) {
            if (auto it = cache.ids.find(w); it != cache.ids.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                return;
            }
            const size_t first = out.size();
            merge_word(*this, w, out);
            if (cache.ids.size() >= word_cache::k_max_entries) cache.ids.clear();
            cache.ids.emplace(std::string(w), std::vector<int32_t>(out.begin() + first, out.end()));
        } else {
            merge_word(*this, w, out);
        }
    };
    for (size_t i = m; i + m <= all.size(); ++i) {
        if (all.compare(i, m, k_space_marker) == 0 && all.compare(i - m, m, k_space_marker) != 0) {
            flush(i);
            begin = i;
        }
    }
    flush(all.size());
}

}  // namespace slm::model
