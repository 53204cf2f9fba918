// BERT WordPiece tokenization as HF's BertTokenizerFast does it: BertNormalizer (clean text, CJK
// spacing, accent stripping, lower-casing), BertPreTokenizer, greedy longest-match "##" pieces.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace slm::model {

/// How text is normalised and split (HF BertNormalizer / WordPiece settings).
struct wordpiece_params {
    bool lowercase = true;          ///< lower-case every codepoint (uncased models)
    bool strip_accents = true;      ///< NFD and drop nonspacing marks (HF: follows lowercase unless set)
    bool chinese_chars = true;      ///< put spaces around CJK ideographs
    bool clean_text = true;         ///< drop control codepoints, map whitespace to ' '
    int max_chars_per_word = 100;   ///< longer words become [UNK]
    std::string prefix = "##";      ///< continuing-subword prefix
    std::string unk = "[UNK]", cls = "[CLS]", sep = "[SEP]", pad = "[PAD]", mask = "[MASK]";
    bool match_special = true;      ///< the exact text of a special token in the input is that token, as in HF
};

struct wordpiece_vocab;

/// A WordPiece vocabulary with its normaliser. Copies share the vocabulary; const methods are
/// safe to call from several threads at once.
class wordpiece_tokenizer {
public:
    /// From a model directory: vocab.txt, and tokenizer_config.json when present (do_lower_case,
    /// strip_accents, tokenize_chinese_chars). user_error naming the file when it is unusable.
    static wordpiece_tokenizer from_dir(const std::string& dir);
    /// From a vocab.txt (one token per line, id = line number).
    static wordpiece_tokenizer from_vocab_file(const std::string& path, const wordpiece_params& p = {});
    /// From tokens in id order; `name` is used in messages.
    static wordpiece_tokenizer from_tokens(std::vector<std::string> tokens, const wordpiece_params& p,
                                           const std::string& name);

    /// BertNormalizer output (UTF-8); invalid UTF-8 bytes are dropped like U+FFFD.
    std::string normalize(std::string_view text) const;
    /// Normalised words and punctuation marks, in order (special-token text kept as it is).
    std::vector<std::string> pre_tokenize(std::string_view text) const;
    /// Text to ids: [CLS] pieces [SEP] when `add_special`. `max_length` > 0 truncates the result
    /// (specials included) to that many ids, keeping [SEP] last, as HF's truncation=True does.
    std::vector<int32_t> encode(std::string_view text, bool add_special = true, size_t max_length = 0) const;
    /// Ids to their tokens joined by spaces, "##" pieces glued to the previous one (for messages).
    std::string decode(const std::vector<int32_t>& ids) const;

    int32_t vocab_size() const;
    /// Token text ("" for a bad id) and id (-1 when absent).
    const std::string& token_text(int32_t id) const;
    int32_t token_id(std::string_view text) const;
    int32_t unk_id() const;
    int32_t cls_id() const;
    int32_t sep_id() const;
    int32_t pad_id() const;
    const wordpiece_params& params() const;

private:
    explicit wordpiece_tokenizer(std::shared_ptr<const wordpiece_vocab> v) : v_(std::move(v)) {}
    void add_word_pieces(std::string_view word, std::vector<int32_t>& out) const;
    template <typename F> void for_each_word(std::string_view text, F&& fn) const;
    std::shared_ptr<const wordpiece_vocab> v_;
};

}  // namespace slm::model
