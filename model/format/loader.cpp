// Checkpoint loading: detects the format, reads the config (config.json, GGUF metadata, llama2.c
// header), fetches every tensor by the name tables with shape checks, and builds language_model.
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "common/common.h"
#include "model/chat-template.h"
#include "model/format/dequant.h"
#include "model/format/gguf-reader.h"
#include "model/llama.h"
#include "model/format/llama2c.h"
#include "model/dtype.h"
#include "model/model.h"
#include "model/format/safetensors.h"
#include "model/tensor-names.h"

namespace slm::model {

namespace fs = std::filesystem;

namespace {

// Architectures we run, and whether their GGUF q/k rows are stored for interleaved-pair RoPE
// (llama.cpp's LLAMA_ROPE_TYPE_NORM: convert_hf_to_gguf permutes them) or as in HF (NEOX).
struct arch_row {
    const char* name;
    bool gguf_interleaved;
    bool qkv_bias;
};
constexpr arch_row k_archs[] = {
    {"llama", true, false},
    {"mistral", true, false},
    {"qwen2", false, true},
};

const arch_row& find_arch(const std::string& arch, const std::string& file) {
    for (const auto& a : k_archs)
        if (arch == a.name) return a;
    throw user_error(fmt::format("{}: architecture '{}' is not supported", file, arch),
                     "slmctl runs Llama-family decoders: llama (Llama 2/3, SmolLM, TinyLlama), mistral, qwen2");
}

std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// Shape every role must have under `c`.
std::vector<int64_t> expected_shape(const llama_config& c, tensor_role r) {
    const int64_t C = c.dim, V = c.vocab_size, F = c.ffn_dim, QD = c.n_heads * c.head_dim,
                  KD = c.n_kv_heads * c.head_dim;
    switch (r) {
        case tensor_role::tok_embd: case tensor_role::output: return {V, C};
        case tensor_role::out_norm: case tensor_role::attn_norm: case tensor_role::ffn_norm: return {C};
        case tensor_role::attn_q: return {QD, C};
        case tensor_role::attn_k: case tensor_role::attn_v: return {KD, C};
        case tensor_role::attn_o: return {C, QD};
        case tensor_role::attn_q_bias: return {QD};
        case tensor_role::attn_k_bias: case tensor_role::attn_v_bias: return {KD};
        case tensor_role::ffn_gate: case tensor_role::ffn_up: return {F, C};
        case tensor_role::ffn_down: return {C, F};
        case tensor_role::count_: break;
    }
    SLM_ASSERT(false, "bad role");
}

// One tensor found in a checkpoint: its shape and a way to read it as float32 (CPU).
struct found_tensor {
    std::vector<int64_t> shape;
    std::string type;                       // storage type, for the info histogram
    std::function<torch::Tensor()> read;    // float32, contiguous, `shape`
};

// Reads tensors by role from one checkpoint and builds the decoder.
struct weight_reader {
    source_format fmt;
    std::string file;                                          // for messages
    std::function<std::optional<found_tensor>(const std::string&)> find;
    std::function<std::string()> list_hint;                    // a few names that do exist
    bool interleaved_qk = false;
    torch::ScalarType dtype = torch::kFloat32;
    torch::Device device = torch::kCPU;

    torch::Tensor get(const llama_config& c, tensor_role role, int layer, bool optional = false) const {
        const std::string name = tensor_name(fmt, role, layer);
        auto t = find(name);
        if (!t) {
            if (optional) return {};
            throw user_error(fmt::format("{}: tensor '{}' is missing (expected shape {} for {})", file, name,
                                         shape_str(expected_shape(c, role)), c.summary()),
                             fmt::format("this is not a complete {} checkpoint, or the config does not match the "
                                         "weights; tensors present include {}",
                                         c.arch, list_hint()));
        }
        const auto want = expected_shape(c, role);
        if (t->shape != want)
            throw user_error(fmt::format("{}: tensor '{}' has shape {}, expected {} from the config ({})", file, name,
                                         shape_str(t->shape), shape_str(want), c.summary()),
                             "the config and the weights disagree: the checkpoint is corrupt, or its config "
                             "belongs to another model");
        auto x = t->read();
        if (interleaved_qk) {
            if (role == tensor_role::attn_q || role == tensor_role::attn_q_bias)
                x = unpermute_interleaved_rope(x, c.n_heads);
            if (role == tensor_role::attn_k || role == tensor_role::attn_k_bias)
                x = unpermute_interleaved_rope(x, c.n_kv_heads);
        }
        return x.to(device, dtype);
    }

    std::unique_ptr<llama_model> build(const llama_config& c) const {
        auto m = std::make_unique<llama_model>();
        m->config = c;
        m->tok_embd = get(c, tensor_role::tok_embd, -1);
        m->out_norm = get(c, tensor_role::out_norm, -1);
        m->output = c.tied_embeddings ? m->tok_embd : get(c, tensor_role::output, -1);
        m->layers.resize(c.n_layers);
        for (int l = 0; l < c.n_layers; ++l) {
            auto& L = m->layers[l];
            L.attn_norm = get(c, tensor_role::attn_norm, l);
            L.ffn_norm = get(c, tensor_role::ffn_norm, l);
            L.wq.weight = get(c, tensor_role::attn_q, l);
            L.wk.weight = get(c, tensor_role::attn_k, l);
            L.wv.weight = get(c, tensor_role::attn_v, l);
            L.wo.weight = get(c, tensor_role::attn_o, l);
            if (c.qkv_bias) {
                L.wq.bias = get(c, tensor_role::attn_q_bias, l);
                L.wk.bias = get(c, tensor_role::attn_k_bias, l);
                L.wv.bias = get(c, tensor_role::attn_v_bias, l);
            }
            L.w_gate.weight = get(c, tensor_role::ffn_gate, l);
            L.w_up.weight = get(c, tensor_role::ffn_up, l);
            L.w_down.weight = get(c, tensor_role::ffn_down, l);
        }
        m->finalize();
        return m;
    }
};

// ---- HF directories ------------------------------------------------------------------------

nlohmann::json read_json_file(const std::string& path) {
    std::ifstream f(path);
    if (!f) throw user_error(fmt::format("cannot open {}", path), "an HF model directory needs config.json");
    auto j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw user_error(fmt::format("{}: not a JSON object", path), "the file is corrupt; download it again");
    return j;
}

template <typename T> T json_get(const nlohmann::json& j, const char* key, const std::string& file, std::optional<T> def = {}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (def) return *def;
        throw user_error(fmt::format("{}: '{}' is missing", file, key), "the config is incomplete");
    }
    if constexpr (std::is_same_v<T, bool>) {
        if (it->is_boolean()) return it->get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
        if (it->is_number_integer()) return it->get<T>();
    } else if constexpr (std::is_floating_point_v<T>) {
        if (it->is_number()) return it->get<T>();
    } else {
        if (it->is_string()) return it->get<T>();
    }
    throw user_error(fmt::format("{}: '{}' has an unexpected type ({})", file, key, it->type_name()),
                     "the config is corrupt");
}

llama_config hf_config(const nlohmann::json& j, const std::string& file) {
    llama_config c;
    c.arch = json_get<std::string>(j, "model_type", file);
    const auto& arch = find_arch(c.arch, file);
    if (auto act = json_get<std::string>(j, "hidden_act", file, std::string("silu")); act != "silu")
        throw user_error(fmt::format("{}: hidden_act '{}' is not supported (silu expected)", file, act));
    if (json_get<bool>(j, "mlp_bias", file, false))
        throw user_error(fmt::format("{}: mlp_bias is not supported", file));
    c.vocab_size = json_get<int64_t>(j, "vocab_size", file);
    c.dim = json_get<int64_t>(j, "hidden_size", file);
    c.n_layers = json_get<int64_t>(j, "num_hidden_layers", file);
    c.n_heads = json_get<int64_t>(j, "num_attention_heads", file);
    c.n_kv_heads = json_get<int64_t>(j, "num_key_value_heads", file, c.n_heads);
    c.head_dim = json_get<int64_t>(j, "head_dim", file, c.n_heads > 0 ? c.dim / c.n_heads : 0);
    c.ffn_dim = json_get<int64_t>(j, "intermediate_size", file);
    c.context_length = json_get<int64_t>(j, "max_position_embeddings", file, int64_t(2048));
    c.rms_eps = json_get<float>(j, "rms_norm_eps", file, 1e-6f);
    c.tied_embeddings = json_get<bool>(j, "tie_word_embeddings", file, false);
    c.qkv_bias = arch.qkv_bias || json_get<bool>(j, "attention_bias", file, false);
    // rope: transformers < 5 has rope_theta + rope_scaling, 5.x nests both in rope_parameters
    nlohmann::json rope = nlohmann::json::object();
    if (auto it = j.find("rope_parameters"); it != j.end() && it->is_object()) rope = *it;
    if (auto it = j.find("rope_scaling"); it != j.end() && it->is_object()) rope.update(*it);
    c.rope_theta = json_get<float>(j, "rope_theta", file, json_get<float>(rope, "rope_theta", file, 10000.f));
    const auto type = json_get<std::string>(rope, "rope_type", file, json_get<std::string>(rope, "type", file, std::string("default")));
    if (type == "llama3") {
        c.rope_freq_factors = llama3_rope_factors(
            c.head_dim, c.rope_theta, json_get<float>(rope, "factor", file), json_get<float>(rope, "low_freq_factor", file),
            json_get<float>(rope, "high_freq_factor", file), json_get<int64_t>(rope, "original_max_position_embeddings", file));
    } else if (type == "linear") {
        c.rope_freq_factors.assign(c.head_dim / 2, json_get<float>(rope, "factor", file));
    } else if (type != "default") {
        throw user_error(fmt::format("{}: rope scaling '{}' is not supported", file, type),
                         "supported: default, linear, llama3");
    }
    if (auto sw = json_get<int64_t>(j, "sliding_window", file, int64_t(0)); sw > 0 && sw < c.context_length &&
                                                                              json_get<bool>(j, "use_sliding_window", file, true))
        log_warn("{}: sliding-window attention ({}) is not implemented; full attention is used, fine up to {} tokens",
                 file, sw, sw);
    c.validate(file);
    return c;
}

torch::ScalarType st_torch_type(const std::string& dtype, const std::string& file, const std::string& name) {
    if (dtype == "F32") return torch::kFloat32;
    if (dtype == "F16") return torch::kFloat16;
    if (dtype == "BF16") return torch::kBFloat16;
    throw user_error(fmt::format("{}: tensor '{}' has dtype {}, expected F32, F16 or BF16", file, name, dtype),
                     "convert the checkpoint to a float format");
}

weight_reader hf_reader(const safetensors_set& st, const std::string& dir, model_info& info) {
    weight_reader w;
    w.fmt = source_format::hf;
    w.file = fmt::format("{} ({})", dir, st.describe());
    w.find = [&st](const std::string& name) -> std::optional<found_tensor> {
        const st_tensor* t = st.find(name);
        if (!t) return std::nullopt;
        found_tensor f;
        f.shape = t->shape;
        f.type = t->dtype;
        f.read = [t] {
            const auto type = st_torch_type(t->dtype, t->file, t->name);
            auto out = torch::empty(t->shape, torch::TensorOptions().dtype(type));
            std::memcpy(out.data_ptr(), t->data, t->n_bytes);
            return out.to(torch::kFloat32);
        };
        return f;
    };
    w.list_hint = [&st] {
        std::vector<std::string> names;
        for (const auto* t : st.tensors()) {
            if (names.size() == 4) break;
            names.push_back("'" + t->name + "'");
        }
        return fmt::format("{}", fmt::join(names, ", "));
    };
    for (const auto* t : st.tensors()) info.tensor_types[t->dtype]++;
    return w;
}

// ---- GGUF ----------------------------------------------------------------------------------

llama_config gguf_config(const gguf_reader& g) {
    llama_config c;
    c.arch = g.architecture();
    find_arch(c.arch, g.path());
    const std::string p = c.arch + ".";
    c.dim = g.get_u32(p + "embedding_length");
    c.n_layers = g.get_u32(p + "block_count");
    c.n_heads = g.get_u32(p + "attention.head_count");
    c.n_kv_heads = g.get_u32(p + "attention.head_count_kv", static_cast<uint32_t>(c.n_heads));
    c.head_dim = g.get_u32(p + "attention.key_length", c.n_heads > 0 ? static_cast<uint32_t>(c.dim / c.n_heads) : 0);
    c.ffn_dim = g.get_u32(p + "feed_forward_length");
    c.context_length = g.get_u32(p + "context_length", 2048);
    c.rms_eps = g.get_f32(p + "attention.layer_norm_rms_epsilon", 1e-5f);
    c.rope_theta = g.get_f32(p + "rope.freq_base", 10000.f);
    const auto& emb = g.tensor(tensor_name(source_format::gguf, tensor_role::tok_embd));
    if (emb.dims.size() != 2)
        throw user_error(fmt::format("{}: token_embd.weight has {} dimensions, expected 2", g.path(), emb.dims.size()));
    c.vocab_size = emb.dims[1];
    c.tied_embeddings = g.find_tensor(tensor_name(source_format::gguf, tensor_role::output)) == nullptr;
    c.qkv_bias = g.find_tensor(tensor_name(source_format::gguf, tensor_role::attn_q_bias, 0)) != nullptr;
    if (const auto* rf = g.find_tensor("rope_freqs.weight")) {  // Llama 3.1 scaling, as divisors
        if (rf->n_elements != c.head_dim / 2)
            throw user_error(fmt::format("{}: rope_freqs.weight has {} elements, expected {}", g.path(), rf->n_elements,
                                         c.head_dim / 2));
        c.rope_freq_factors = g.tensor_f32("rope_freqs.weight");
    } else if (g.get_string(p + "rope.scaling.type", "none") == "linear") {
        c.rope_freq_factors.assign(c.head_dim / 2, g.get_f32(p + "rope.scaling.factor", 1.f));
    }
    c.validate(g.path());
    return c;
}

weight_reader gguf_weights(const gguf_reader& g, const llama_config& c, model_info& info) {
    weight_reader w;
    w.fmt = source_format::gguf;
    w.file = g.path();
    w.interleaved_qk = find_arch(c.arch, g.path()).gguf_interleaved;
    w.find = [&g](const std::string& name) -> std::optional<found_tensor> {
        const gguf_tensor* t = g.find_tensor(name);
        if (!t) return std::nullopt;
        found_tensor f;
        f.shape.assign(t->dims.rbegin(), t->dims.rend());  // ggml dims[0] is the row length
        f.type = ggml_type_name(t->type);
        f.read = [t, shape = f.shape] {
            auto out = torch::empty(shape, torch::kFloat32);
            dequantize(t->type, t->data, out.data_ptr<float>(), t->n_elements);
            return out;
        };
        return f;
    };
    w.list_hint = [&g] {
        std::vector<std::string> names;
        for (const auto& t : g.tensors()) {
            if (names.size() == 4) break;
            names.push_back("'" + t.name + "'");
        }
        return fmt::format("{}", fmt::join(names, ", "));
    };
    for (const auto& t : g.tensors()) {
        info.tensor_types[ggml_type_name(t.type)]++;
        if (t.name == "output.weight" || (t.name == "token_embd.weight" && info.head_type.empty()))
            info.head_type = ggml_type_name(t.type);
    }
    return w;
}

void fill_info_from_config(model_info& info, const llama_config& c) {
    info.architecture = c.arch;
    info.n_layers = c.n_layers, info.dim = c.dim, info.n_heads = c.n_heads, info.n_kv_heads = c.n_kv_heads;
    info.head_dim = c.head_dim, info.ffn_dim = c.ffn_dim, info.vocab_size = c.vocab_size;
    info.context_length = c.context_length, info.rope_theta = c.rope_theta, info.rms_eps = c.rms_eps;
    info.tied_embeddings = c.tied_embeddings, info.qkv_bias = c.qkv_bias;
}

}  // namespace

std::string default_smollm2_path() { return models_dir() + "/SmolLM2-135M-Instruct.Q4_1.gguf"; }

language_model::language_model() = default;
language_model::~language_model() = default;

std::unique_ptr<language_model> load_model(const std::string& path, const load_options& opt) {
    const auto t0 = std::chrono::steady_clock::now();
    check_device(opt.device);
    if (opt.dtype != "auto") (void)parse_dtype(opt.dtype);  // a bad name fails before any reading
    const torch::Device device(opt.device);
    std::unique_ptr<language_model> m(new language_model());
    auto& info = m->info_;
    info.path = path;
    info.device = opt.device;
    torch::ScalarType dtype = torch::kFloat32;
    // `auto` needs the model's shapes: resolved once the config is read, before any weight is cast
    auto pick_dtype = [&](const llama_config& c) {
        const auto ch = choose_dtype(opt.dtype, opt.device, {c.dim, (c.n_heads + 2 * c.n_kv_heads) * c.head_dim, c.ffn_dim});
        dtype = parse_dtype(ch.choice);
        info.dtype = ch.choice;
        info.dtype_choice = ch.to_json();
    };

    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        info.format = source_format::hf;
        info.name = fs::path(path).filename().string();
        if (info.name.empty()) info.name = fs::path(path).parent_path().filename().string();
        const std::string cfg_path = (fs::path(path) / "config.json").string();
        if (!fs::exists(cfg_path))
            throw user_error(fmt::format("{}: no config.json", path),
                             "PATH must be a GGUF file or an HF model directory (config.json + *.safetensors)");
        const auto cfg = hf_config(read_json_file(cfg_path), cfg_path);
        safetensors_set st(path);
        auto w = hf_reader(st, path, info);
        pick_dtype(cfg);
        w.dtype = dtype, w.device = device;
        m->decoder_ = w.build(cfg);
        fill_info_from_config(info, cfg);
        if (opt.tokenizer) {
            const auto tj = fs::path(path) / "tokenizer.json";
            if (fs::exists(tj)) m->tokenizer_ = tokenizer::from_hf_json(tj.string());
        }
    } else if (!fs::exists(path, ec)) {
        throw user_error(fmt::format("{}: no such file or directory", path),
                         fmt::format("give a GGUF file or an HF model directory; fetched models live in {}", models_dir()));
    } else if (is_gguf_file(path)) {
        info.format = source_format::gguf;
        gguf_reader g(path);
        info.name = g.get_string("general.name", fs::path(path).stem().string());
        const auto cfg = gguf_config(g);
        auto w = gguf_weights(g, cfg, info);
        pick_dtype(cfg);
        w.dtype = dtype, w.device = device;
        m->decoder_ = w.build(cfg);
        fill_info_from_config(info, cfg);
        if (opt.tokenizer && g.has("tokenizer.ggml.model")) m->tokenizer_ = tokenizer::from_gguf(g);
    } else if (is_llama2c_file(path)) {
        info.format = source_format::llama2c;
        info.name = fs::path(path).stem().string();
        auto dec = load_llama2c(path);
        pick_dtype(dec->config);
        dec->to(dtype, device);
        fill_info_from_config(info, dec->config);
        info.tensor_types["F32"] = 9 * dec->config.n_layers + 2 + (dec->config.tied_embeddings ? 0 : 1);
        m->decoder_ = std::move(dec);
        if (opt.tokenizer) {
            const auto dir = fs::path(path).parent_path();
            for (const auto& name : {fmt::format("tok{}.bin", info.vocab_size), std::string("tokenizer.bin")}) {
                if (fs::exists(dir / name)) {
                    m->llama2c_vocab_ = std::make_unique<llama2c_vocab>(
                        llama2c_vocab::load((dir / name).string(), info.vocab_size));
                    break;
                }
            }
        }
    } else {
        throw user_error(fmt::format("{}: not a GGUF file, HF model directory or llama2.c checkpoint", path),
                         "GGUF files start with the bytes 'GGUF'; HF directories hold config.json");
    }
    info.n_params = m->decoder_->n_params();
    if (opt.int4_decode != "auto" && opt.int4_decode != "on" && opt.int4_decode != "off")
        throw usage_error(fmt::format("int4 decode '{}'", opt.int4_decode), "use auto, on or off");
    {
        // auto: only where it keeps the file's own 4-bit groups (Q4_1 projections); the head is
        // 4-bit only if the file has it so (SmolLM2's tied embedding is Q8_0: it stays dense)
        const bool q4_file = info.format == source_format::gguf && info.tensor_types.count("Q4_1") &&
                             info.tensor_types.at("Q4_1") >= 7 * info.n_layers;
        const bool want = opt.int4_decode == "on" || (opt.int4_decode == "auto" && q4_file);
        if (want && device.is_cpu()) {
            const bool head = opt.int4_decode == "on" || info.head_type == "Q4_1";
            if (m->decoder_->enable_int4_decode(4, head)) info.int4_decode = head ? "layers+head" : "layers";
        }
    }

    // tokenizer facts for `model info`
    if (m->tokenizer_) {
        const auto& t = *m->tokenizer_;
        info.tokenizer_kind = fmt::format("{} ({})", t.kind(), t.pre_style());
        for (auto [label, id] : {std::pair{"bos", t.bos_id()}, {"eos", t.eos_id()}, {"eot", t.eot_id()},
                                 {"pad", t.pad_id()}, {"unk", t.unk_id()}})
            if (id >= 0) {
                info.special_tokens.emplace_back(label, id);
                info.special_texts.push_back(t.token_text(id));
            }
        if (t.vocab_size() > info.vocab_size)
            log_warn("{}: tokenizer has {} tokens but the model only {}", path, t.vocab_size(), info.vocab_size);
        if (!t.chat_template().empty())
            m->chat_ = std::make_shared<const chat_template>(chat_template::from_jinja(t.chat_template()));
    } else if (m->llama2c_vocab_) {
        info.tokenizer_kind = "llama2c (run.c score merges)";
        info.special_tokens = {{"bos", 1}, {"eos", 2}};
        info.special_texts = {m->llama2c_vocab_->pieces.at(1), m->llama2c_vocab_->pieces.at(2)};
    } else {
        info.tokenizer_kind = "none";
    }
    info.chat_format = m->chat_ ? m->chat_->format_name() : "none";
    info.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log_verbose("loaded {} ({}, {}) in {:.2f} s: {}", path, source_format_name(info.format), info.dtype, info.load_s,
                m->decoder_->config.summary());
    return m;
}

}  // namespace slm::model
