// Text <-> token ids for the models slmctl trains: byte-level BPE (GPT-2, SmolLM, StarCoder,
// Llama-3, Qwen2 styles) and Llama SentencePiece BPE, loaded from tokenizer.json or GGUF metadata.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace slm::model {

class gguf_reader;
class chat_template;  // model/chat-template.h
struct tokenizer_impl;

/// What a vocabulary entry is (GGUF tokenizer.ggml.token_type numbering).
enum class token_attr : uint8_t {
    normal = 1,        ///< ordinary piece, goes through merges
    unknown = 2,       ///< <unk>
    control = 3,       ///< special: <s>, <|im_start|>, ... (parsed only with parse_special)
    user_defined = 4,  ///< added token matched verbatim in any text
    unused = 5,
    byte = 6,          ///< SentencePiece byte fallback <0xNN>
};

/// Tokenizer of one model. Copies share the (immutable) vocabulary; encode/decode are const and
/// safe to call from several threads at once.
class tokenizer {
public:
    /// From a Hugging Face tokenizer.json; reads tokenizer_config.json beside it when present
    /// (bos/eos/pad tokens, add_bos_token). Throws slm::user_error for unsupported layouts.
    static tokenizer from_hf_json(const std::string& path);
    /// Same from JSON text already in memory; `config_json` may be empty.
    static tokenizer from_hf_json_text(std::string_view tokenizer_json, std::string_view config_json,
                                       const std::string& name);
    /// From GGUF metadata (tokenizer.ggml.model "gpt2" or "llama").
    static tokenizer from_gguf(const gguf_reader& gguf);

    /// Text to ids. `add_special` adds BOS/EOS when the model asks for them; `parse_special`
    /// turns the text of control tokens ("<|im_start|>") into their ids (user-defined added
    /// tokens are always matched). Invalid UTF-8 is tokenized byte by byte, never rejected.
    std::vector<int32_t> encode(std::string_view text, bool add_special = false, bool parse_special = false) const;
    /// Ids to text; control tokens are skipped unless `render_special`. SentencePiece models drop
    /// the space their encoder put in front of the text, so decode(encode(s)) == s (for spm,
    /// except a literal "▁" in the input, which decodes as a space as upstream).
    std::string decode(std::span<const int32_t> ids, bool render_special = false) const;
    /// Raw bytes one token contributes to decoded text (may be part of a UTF-8 character).
    std::string token_to_piece(int32_t id, bool render_special = false) const;

    int32_t vocab_size() const;
    /// Token text as stored in the vocabulary ("Ġthe", "▁the", "<0x0A>"); "" for a bad id.
    const std::string& token_text(int32_t id) const;
    /// Id of a vocabulary entry by its stored text, or -1.
    int32_t token_id(std::string_view text) const;
    token_attr attr(int32_t id) const;
    /// Control or user-defined (HF "added") tokens, in id order.
    std::vector<int32_t> special_tokens() const;

    // Special ids, -1 when the model has none.
    int32_t bos_id() const;
    int32_t eos_id() const;
    int32_t eot_id() const;  ///< end of turn (<|im_end|>, <|eot_id|>); eos when no separate one
    int32_t pad_id() const;
    int32_t unk_id() const;
    bool add_bos() const;
    bool add_eos() const;
    /// Ids that end generation: eos, eot and other end-of-turn markers in the vocabulary.
    std::vector<int32_t> eog_ids() const;

    /// "bpe" (byte-level BPE) or "spm" (SentencePiece BPE).
    const char* kind() const;
    /// Pre-tokenizer style: "gpt2", "starcoder" (digits split first), "llama3", "qwen2", "spm".
    const char* pre_style() const;
    /// chat template text found with the tokenizer ("" if none): GGUF tokenizer.chat_template
    /// or tokenizer_config.json's chat_template.
    const std::string& chat_template() const;

private:
    explicit tokenizer(std::shared_ptr<const tokenizer_impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const tokenizer_impl> impl_;
};

/// What load_tokenizer() finds at a path: a tokenizer, the chat template that came with it, and
/// the file they were read from.
struct tokenizer_source {
    tokenizer tok;
    std::shared_ptr<const chat_template> chat;  ///< null when the tokenizer came without a template
    std::string file;                           ///< the tokenizer.json or GGUF file read
};

/// The tokenizer (and chat template) of `path` without any weights: a tokenizer.json (with the
/// tokenizer_config.json beside it), a directory holding one (an HF model directory, or only the
/// tokenizer files), or a GGUF file, vocab-only or a whole model of which only the metadata is
/// read. user_error naming the path when it holds no tokenizer we can load.
tokenizer_source load_tokenizer(const std::string& path);
/// True for the paths load_tokenizer() reads: a directory, a .json file or a GGUF file. Other
/// checkpoints (llama2.c .bin, whose vocabulary is not a `tokenizer`) need load_model().
bool is_tokenizer_path(const std::string& path);

}  // namespace slm::model
