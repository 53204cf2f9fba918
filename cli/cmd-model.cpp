// `slmctl model info|tokenize|generate PATH`: inspect a checkpoint (GGUF file, HF directory,
// llama2.c .bin), tokenize text, generate. Parses and prints only; the work is in model/.
#include <cstdio>
#include <unistd.h>

#include "cli/cli.h"
#include "common/common.h"
#include "model/chat-template.h"
#include "model/model.h"

namespace slm::cli {

namespace {

struct model_args {
    std::string path;
    std::string text;      ///< tokenize --text
    bool decode = false;   ///< tokenize --decode
    bool special = false;  ///< tokenize --special
    std::string prompt;    ///< generate --prompt
    std::string chat;      ///< generate --chat
    std::string system;    ///< generate --system
    std::string dtype = "auto";
    std::string int4 = "auto";  ///< --int4-decode
    int batch = 1;         ///< generate --batch: the prompt N times (throughput check)
    bool ignore_eos = false;  ///< generate --ignore-eos: always max_tokens (throughput check)
    model::sampling_params sampling;
};
model_args& args() {
    static model_args a;
    return a;
}

std::unique_ptr<model::language_model> load(bool tokenizer = true) {
    model::load_options o;
    o.dtype = args().dtype;
    o.int4_decode = args().int4;
    o.device = globals().device;
    o.tokenizer = tokenizer;
    return model::load_model(args().path, o);
}

void info_main() {
    apply_globals();
    auto m = load();
    const auto& i = m->info();
    if (globals().json) {
        print_json(i.to_json());
        return;
    }
    fmt::print("path            {}\n", i.path);
    fmt::print("format          {}\n", model::source_format_name(i.format));
    fmt::print("name            {}\n", i.name);
    fmt::print("architecture    {}\n", i.architecture);
    fmt::print("parameters      {} ({:.1f} M)\n", i.n_params, i.n_params / 1e6);
    fmt::print("layers          {} (hidden {}, ffn {}, heads {}, kv heads {}, head dim {})\n", i.n_layers, i.dim,
               i.ffn_dim, i.n_heads, i.n_kv_heads, i.head_dim);
    fmt::print("vocabulary      {}{}\n", i.vocab_size, i.tied_embeddings ? " (embeddings tied to the LM head)" : "");
    fmt::print("context length  {}\n", i.context_length);
    fmt::print("rope theta      {:g}   rms eps {:g}{}\n", i.rope_theta, i.rms_eps, i.qkv_bias ? "   qkv bias" : "");
    std::string types;
    for (const auto& [t, n] : i.tensor_types) types += fmt::format("{}{} x{}", types.empty() ? "" : ", ", t, n);
    fmt::print("tensor types    {}\n", types);
    fmt::print("tokenizer       {}\n", i.tokenizer_kind);
    fmt::print("chat template   {}\n", i.chat_format);
    std::string specials;
    for (size_t k = 0; k < i.special_tokens.size(); ++k)
        specials += fmt::format("{}{} {} {:?}", specials.empty() ? "" : ", ", i.special_tokens[k].first,
                                i.special_tokens[k].second, k < i.special_texts.size() ? i.special_texts[k] : "");
    fmt::print("special tokens  {}\n", specials.empty() ? "none" : specials);
    fmt::print("loaded as       {} on {} in {:.2f} s\n", i.dtype, i.device, i.load_s);
    if (const auto& d = i.dtype_choice; d.is_object()) {
        std::string why = d.value("reason", "");
        if (d.contains("gflops"))
            why += fmt::format(": fp32 {:.0f} / bf16 {:.0f} GFLOP/s at M 256, {:.0f} / {:.0f} at M 8 ({})",
                               d["gflops"].value("fp32_m256", 0.0), d["gflops"].value("bf16_m256", 0.0),
                               d["gflops"].value("fp32_m8", 0.0), d["gflops"].value("bf16_m8", 0.0),
                               d.value("machine", ""));
        fmt::print("dtype choice    {} ({}: {})\n", i.dtype, d.value("requested", ""), why);
    }
    fmt::print("int4 decode     {}\n", i.int4_decode == "off" ? std::string("off")
                                        : i.int4_decode + " (4-bit copies for decoding at most 4 rows)");
}

// A tokenizer.json, a directory or a GGUF file: only the tokenizer is loaded (a vocab-only GGUF
// works); other checkpoints (llama2.c, whose vocabulary comes with the model) are loaded whole.
void tokenize_main() {
    apply_globals();
    const auto& a = args();
    std::vector<int32_t> ids;
    std::string back;
    nlohmann::json pieces = nlohmann::json::array();
    if (model::is_tokenizer_path(a.path)) {
        const auto src = model::load_tokenizer(a.path);
        ids = src.tok.encode(a.text, /*add_special=*/true, a.special);
        back = src.tok.decode(ids);
        for (auto id : ids) pieces.push_back(src.tok.token_text(id));
    } else {
        auto m = load();
        ids = m->encode(a.text, /*add_special=*/true, a.special);
        back = m->decode(ids);
        for (auto id : ids) pieces.push_back(m->has_tokenizer() ? m->tok().token_text(id) : m->decode({id}));
    }
    if (globals().json) {
        nlohmann::json j = {{"ids", ids}, {"count", ids.size()}, {"tokens", pieces}};
        if (a.decode) j["decoded"] = back;
        print_json(j);
        return;
    }
    fmt::print("{}\n", fmt::join(ids, " "));
    if (a.decode) fmt::print("{}\n", back);
}

void generate_main() {
    apply_globals();
    const auto& a = args();
    auto m = load();
    model::text_params p;
    p.sampling = a.sampling;
    if (a.ignore_eos) p.sampling.eos_ids = {-1};  // no token has id -1: nothing ends a sequence early
    const int batch = std::max(1, a.batch);
    // stream to a terminal when there is one answer to show
    const bool stream = !globals().json && batch == 1 && isatty(STDOUT_FILENO);
    size_t shown = 0;
    if (stream)
        p.on_text = [&](size_t, const std::string& text) {
            if (text.size() > shown) {
                fmt::print("{}", text.substr(shown));
                std::fflush(stdout);
                shown = text.size();
            }
        };
    model::generate_stats st;
    std::vector<model::completion> out;
    if (!a.chat.empty()) {
        std::vector<model::chat_message> msgs;
        if (!a.system.empty()) msgs.push_back({"system", a.system});
        msgs.push_back({"user", a.chat});
        out = m->chat_generate(std::vector(batch, msgs), p, &st);
    } else {
        out = m->generate(std::vector(batch, a.prompt), p, &st);
    }
    if (globals().json) {
        nlohmann::json results = nlohmann::json::array();
        for (const auto& c : out)
            results.push_back({{"text", c.text}, {"ids", c.tokens}, {"finish_reason", model::finish_reason_name(c.reason)}});
        print_json({{"model", m->info().path},
                    {"dtype", m->info().dtype},
                    {"device", m->info().device},
                    {"batch", batch},
                    {"results", results},
                    {"prompt_tokens", st.prompt_tokens},
                    {"generated_tokens", st.generated_tokens},
                    {"prefill_seconds", st.prefill_s},
                    {"decode_seconds", st.decode_s},
                    {"tokens_per_second", st.decode_tokens_per_s()}});
        return;
    }
    if (stream) {
        if (out[0].text.size() > shown) fmt::print("{}", out[0].text.substr(shown));
        fmt::print("\n");
    } else {
        for (size_t i = 0; i < out.size(); ++i) fmt::print("{}{}\n", batch > 1 ? fmt::format("[{}] ", i) : "", out[i].text);
    }
    log_info("{} tokens in {:.2f} s ({:.1f} tokens/s, batch {}, {}), prompt {} tokens in {:.2f} s", st.generated_tokens,
             st.decode_s, st.decode_tokens_per_s(), batch, m->info().dtype, st.prompt_tokens, st.prefill_s);
}

}  // namespace

void set_model_command(CLI::App& sub) {
    sub.require_subcommand(1);
    auto& a = args();
    auto* info = sub.add_subcommand("info", "Architecture, parameters, tensor types, context, tokenizer, chat template");
    info->add_option("PATH", a.path, "GGUF file, HF model directory or llama2.c .bin")->required();
    info->callback(info_main);

    auto* tok = sub.add_subcommand("tokenize", "Text to token ids (and back with --decode)");
    tok->add_option("PATH", a.path, "tokenizer.json, a directory holding one, a GGUF file (vocab-only too) or a llama2.c .bin")->required();
    tok->add_option("--text", a.text, "Text to tokenize")->required();
    tok->add_flag("--decode", a.decode, "Also decode the ids back to text");
    tok->add_flag("--special", a.special, "Parse special-token text such as <|im_start|> into their ids");
    tok->callback(tokenize_main);

    auto* gen = sub.add_subcommand("generate", "Generate text from a prompt or a chat message (uses --device)");
    gen->add_option("PATH", a.path, "GGUF file, HF model directory or llama2.c .bin")->required();
    auto* pr = gen->add_option("--prompt", a.prompt, "Raw prompt text (BOS added when the model wants it)");
    auto* ch = gen->add_option("--chat", a.chat, "A user message, rendered with the model's chat template");
    pr->excludes(ch);
    gen->add_option("--system", a.system, "System message for --chat");
    gen->add_option("--max-tokens", a.sampling.max_tokens, "Most new tokens")->capture_default_str()->check(CLI::PositiveNumber);
    gen->add_option("--temperature", a.sampling.temperature, "0 = greedy")->capture_default_str()->check(CLI::NonNegativeNumber);
    gen->add_option("--top-p", a.sampling.top_p, "Nucleus sampling mass")->capture_default_str()->check(CLI::Range(0.0, 1.0));
    gen->add_option("--seed", a.sampling.seed, "Sampling seed")->capture_default_str();
    gen->add_option("--dtype", a.dtype, "Weights and activations (auto: measured on this machine)")->capture_default_str()->check(CLI::IsMember({"auto", "fp32", "bf16"}));
    gen->add_option("--batch", a.batch, "Generate for N copies of the prompt at once (throughput check)")
        ->capture_default_str()
        ->check(CLI::Range(1, 4096));
    gen->add_flag("--ignore-eos", a.ignore_eos, "Never stop at an end token: every sequence runs --max-tokens (throughput check)");
    gen->callback([pr, ch] {
        if (pr->count() == 0 && ch->count() == 0) throw usage_error("model generate needs --prompt or --chat");
        generate_main();
    });
    for (auto* s : {info, gen})
        s->add_option("--int4-decode", a.int4, "4-bit weight copies for small-batch decoding (auto: Q4_1 GGUFs)")
            ->capture_default_str()->check(CLI::IsMember({"auto", "on", "off"}));
    for (auto* s : {info, tok}) s->add_option("--dtype", a.dtype, "Weights dtype (auto: measured on this machine)")->capture_default_str()->check(CLI::IsMember({"auto", "fp32", "bf16"}));
}

}  // namespace slm::cli
