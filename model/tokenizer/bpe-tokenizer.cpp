// Byte-level BPE: the pre-tokenizer regexes (GPT-2, StarCoder/SmolLM, Llama-3, Qwen2) split by
// hand over codepoint classes, and merges applied by rank with a heap over a linked list.
#include <algorithm>
#include <unordered_map>

#include "model/tokenizer/tokenizer-impl.h"
#include "model/tokenizer/unicode.h"

namespace slm::model {

namespace {

using namespace unicode;

constexpr uint8_t k_lnw = cpt_letter | cpt_number | cpt_whitespace;

// A fragment decoded into codepoints with their byte offsets (off[n] == text size).
struct cpt_buffer {
    std::vector<uint32_t> cp;
    std::vector<uint8_t> fl;
    std::vector<size_t> off;

    void load(std::string_view text) {
        cp.clear(), fl.clear(), off.clear();
        for (size_t i = 0; i < text.size();) {
            size_t len;
            const uint32_t c = decode_utf8(text, i, len);
            cp.push_back(c);
            fl.push_back(c == invalid_cpt ? 0 : cpt_flags(c));  // a stray byte counts as "other"
            off.push_back(i);
            i += len;
        }
        off.push_back(text.size());
    }
};

struct splitter {
    const cpt_buffer& b;
    std::string_view text;
    std::vector<std::string_view>& pieces;

    void emit(size_t from, size_t to) {
        if (to > from) pieces.push_back(text.substr(b.off[from], b.off[to] - b.off[from]));
    }
    static uint32_t lower_ascii(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

    // Length of a contraction ('s 't 'm 'd 're 've 'll) at pos, 0 if none.
    size_t contraction(size_t pos, size_t end, bool ignore_case) const {
        if (b.cp[pos] != '\'' || pos + 1 >= end) return 0;
        auto at = [&](size_t i) { return ignore_case ? lower_ascii(b.cp[i]) : b.cp[i]; };
        const uint32_t c1 = at(pos + 1);
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
        if (pos + 2 < end) {
            const uint32_t c2 = at(pos + 2);
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
        }
        return 0;
    }

    // \s+(?!\S)|\s+ at pos (a whitespace char): a run that is followed by a non-space keeps its
    // last character for the next piece (" ?\p{L}+" and friends take it as their prefix).
    size_t whitespace_run(size_t pos, size_t end) const {
        size_t n = 0;
        while (pos + n < end && (b.fl[pos + n] & cpt_whitespace)) ++n;
        if (n > 1 && pos + n < end) return n - 1;
        return n;
    }

    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    void gpt2(size_t begin, size_t end) {
        size_t pos = begin;
        while (pos < end) {
            const size_t start = pos;
            if (size_t k = contraction(pos, end, false)) {
                emit(start, pos + k);
                pos += k;
                continue;
            }
            const bool space = b.cp[pos] == ' ';
            if (!space || pos + 1 < end) {  // " ?X": X is the next char after an optional space
                const uint8_t f = b.fl[pos + (space ? 1 : 0)];
                uint8_t cls = 0;
                if (f & cpt_letter) cls = cpt_letter;
                else if (f & cpt_number) cls = cpt_number;
                else if (!(f & k_lnw)) cls = 0xFF;  // other: run of [^\s\p{L}\p{N}]
                if (cls) {
                    pos += space ? 1 : 0;
                    if (cls == 0xFF) {
                        while (pos < end && !(b.fl[pos] & k_lnw)) ++pos;
                    } else {
                        while (pos < end && (b.fl[pos] & cls)) ++pos;
                    }
                    emit(start, pos);
                    continue;
                }
            }
            const size_t n = whitespace_run(pos, end);
            pos += n ? n : 1;  // every char is whitespace, letter, number or other: n > 0 here
            emit(start, pos);
        }
    }

    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
    // \s*[\r\n]+|\s+(?!\S)|\s+      (D = 3 for Llama-3, 1 for Qwen2)
    void llama3(size_t begin, size_t end, size_t max_digits) {
        size_t pos = begin;
        auto is_nl = [&](size_t i) { return b.cp[i] == '\r' || b.cp[i] == '\n'; };
        while (pos < end) {
            const size_t start = pos;
            if (size_t k = contraction(pos, end, true)) {
                emit(start, pos + k);
                pos += k;
                continue;
            }
            const uint8_t f = b.fl[pos];
            if (!is_nl(pos) && !(f & cpt_number)) {
                if ((f & cpt_letter) || (pos + 1 < end && (b.fl[pos + 1] & cpt_letter))) {
                    ++pos;  // the letter itself or the one-char prefix
                    while (pos < end && (b.fl[pos] & cpt_letter)) ++pos;
                    emit(start, pos);
                    continue;
                }
            }
            if (f & cpt_number) {
                while (pos < end && pos - start < max_digits && (b.fl[pos] & cpt_number)) ++pos;
                emit(start, pos);
                continue;
            }
            const bool space = b.cp[pos] == ' ';
            if (!space || pos + 1 < end) {
                const uint8_t f2 = b.fl[pos + (space ? 1 : 0)];
                if (!(f2 & k_lnw)) {
                    pos += space ? 1 : 0;
                    while (pos < end && !(b.fl[pos] & k_lnw)) ++pos;
                    while (pos < end && is_nl(pos)) ++pos;
                    emit(start, pos);
                    continue;
                }
            }
            // \s*[\r\n]+ : the whitespace run up to and including its last newline
            size_t n = 0, last_nl = 0;
            while (pos + n < end && (b.fl[pos + n] & cpt_whitespace)) {
                if (is_nl(pos + n)) last_nl = n + 1;
                ++n;
            }
            if (last_nl) {
                pos += last_nl;
            } else if (n > 1 && pos + n < end) {
                pos += n - 1;
            } else {
                pos += n ? n : 1;
            }
            emit(start, pos);
        }
    }
};

}  // namespace

void pretokenize(pretok_style style, std::string_view text, std::vector<std::string_view>& pieces) {
    thread_local cpt_buffer buf;
    buf.load(text);
    splitter s{buf, text, pieces};
    const size_t n = buf.cp.size();
    switch (style) {
        case pretok_style::gpt2: s.gpt2(0, n); break;
        case pretok_style::starcoder:
            // \p{N} first: each digit is its own piece; the text between goes through gpt2 alone
            for (size_t i = 0; i < n;) {
                if (buf.fl[i] & cpt_number) {
                    s.emit(i, i + 1);
                    ++i;
                    continue;
                }
                size_t j = i;
                while (j < n && !(buf.fl[j] & cpt_number)) ++j;
                s.gpt2(i, j);
                i = j;
            }
            break;
        case pretok_style::llama3: s.llama3(0, n, 3); break;
        case pretok_style::qwen2: s.llama3(0, n, 1); break;
    }
}

namespace {

struct symbol {
    int32_t id;
    int32_t prev, next;
};
// A mergeable adjacent pair; the heap pops the lowest rank, then the leftmost (as HF does).
struct candidate {
    int32_t rank, left, left_id, right_id, result;
};
inline bool later(const candidate& a, const candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
}

// Pre-tokens repeat a lot in real text (" the", "\n", "{\""), so each thread remembers the ids of
// the words it has merged, for one vocabulary at a time. Bounded: cleared when full.
struct string_hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
struct word_cache {
    static constexpr size_t k_max_entries = 1 << 16;
    static constexpr size_t k_max_word = 64;  // longer pre-tokens are rare and not worth keeping
    uint64_t owner = 0;
    std::unordered_map<std::string, std::vector<int32_t>, string_hash, std::equal_to<>> ids;
};

}  // namespace

void tokenizer_impl::encode_bpe(std::string_view fragment, std::vector<int32_t>& out) const {
    thread_local std::vector<std::string_view> words;
    thread_local std::vector<symbol> sym;
    thread_local std::vector<candidate> heap;
    thread_local std::string mapped;
    thread_local word_cache cache;
    if (cache.owner != uid) {
        cache.ids.clear();
        cache.owner = uid;
    }
    words.clear();
    pretokenize(style, fragment, words);

    for (std::string_view w : words) {
        const bool cacheable = w.size() > 1 && w.size() <= word_cache::k_max_word;
        if (cacheable) {
            if (auto it = cache.ids.find(w); it != cache.ids.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                continue;
            }
        }
        const size_t first_out = out.size();
        if (ignore_merges || w.size() == 1) {
            mapped.clear();
            for (char c : w) mapped += unicode::byte_to_text(static_cast<uint8_t>(c));
            const int32_t id = find(mapped);
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
        }
        sym.clear();
        for (char c : w) {
            const int32_t id = byte_ids[static_cast<uint8_t>(c)];
            if (id >= 0) sym.push_back({id, -1, -1});
            else if (unk >= 0) sym.push_back({unk, -1, -1});  // a vocabulary without this byte
        }
        const int32_t n = static_cast<int32_t>(sym.size());
        for (int32_t i = 0; i < n; ++i) sym[i].prev = i - 1, sym[i].next = i + 1 < n ? i + 1 : -1;

        heap.clear();
        auto try_add = [&](int32_t l) {
            if (l < 0) return;
            const int32_t r = sym[l].next;
            if (r < 0) return;
            const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(sym[l].id)) << 32) |
                                 static_cast<uint32_t>(sym[r].id);
            auto it = merges.find(key);
            if (it == merges.end()) return;
            heap.push_back({it->second.rank, l, sym[l].id, sym[r].id, it->second.result});
            std::push_heap(heap.begin(), heap.end(), later);
        };
        for (int32_t i = 0; i + 1 < n; ++i) try_add(i);
        while (!heap.empty()) {
            std::pop_heap(heap.begin(), heap.end(), later);
            const candidate c = heap.back();
            heap.pop_back();
            const int32_t l = c.left;
            if (sym[l].id != c.left_id) continue;  // stale: left was merged or removed since
            const int32_t r = sym[l].next;
            if (r < 0 || sym[r].id != c.right_id) continue;
            sym[l].id = c.result;
            sym[r].id = -1;
            sym[l].next = sym[r].next;
            if (sym[r].next >= 0) sym[sym[r].next].prev = l;
            try_add(sym[l].prev);
            try_add(l);
        }
        for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
        if (cacheable) {
            if (cache.ids.size() >= word_cache::k_max_entries) cache.ids.clear();
            cache.ids.emplace(std::string(w), std::vector<int32_t>(out.begin() + first_out, out.end()));
        }
    }
}

}  // namespace slm::model
