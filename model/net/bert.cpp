// The BERT encoder of sentence-transformers checkpoints (all-MiniLM-L6-v2) in libtorch: weight
// loading with checks, the post-LayerNorm forward, mean pooling, L2 normalisation, length batching.
#include "model/bert.h"
#include "model/dtype.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <optional>

#include <torch/torch.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "common/common.h"
#include "model/runtime.h"
#include "model/format/safetensors.h"

namespace slm::model {

namespace fs = std::filesystem;

namespace {

const char* k_fetch_hint = "run scripts/fetch-models.sh to fetch all-MiniLM-L6-v2 (again)";

// HF BertModel tensor names (BertFor* checkpoints prefix them with "bert.", accepted too).
// Shapes use C hidden size, F intermediate size, V vocabulary, P positions, Y token types.
enum class bert_role { word_emb, pos_emb, type_emb, emb_ln_w, emb_ln_b,
                       q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln1_w, ln1_b, up_w, up_b, down_w, down_b, ln2_w, ln2_b };
struct role_desc {
    bert_role role;
    const char* name;  // per-layer names follow "encoder.layer.{i}."
    bool per_layer;
};
constexpr role_desc k_roles[] = {
    {bert_role::word_emb, "embeddings.word_embeddings.weight", false},        // (V, C)
    {bert_role::pos_emb, "embeddings.position_embeddings.weight", false},     // (P, C)
    {bert_role::type_emb, "embeddings.token_type_embeddings.weight", false},  // (Y, C)
    {bert_role::emb_ln_w, "embeddings.LayerNorm.weight", false},              // (C)
    {bert_role::emb_ln_b, "embeddings.LayerNorm.bias", false},
    {bert_role::q_w, "attention.self.query.weight", true},  // (C, C)
    {bert_role::q_b, "attention.self.query.bias", true},    // (C)
    {bert_role::k_w, "attention.self.key.weight", true},
    {bert_role::k_b, "attention.self.key.bias", true},
    {bert_role::v_w, "attention.self.value.weight", true},
    {bert_role::v_b, "attention.self.value.bias", true},
    {bert_role::o_w, "attention.output.dense.weight", true},  // (C, C)
    {bert_role::o_b, "attention.output.dense.bias", true},
    {bert_role::ln1_w, "attention.output.LayerNorm.weight", true},
    {bert_role::ln1_b, "attention.output.LayerNorm.bias", true},
    {bert_role::up_w, "intermediate.dense.weight", true},  // (F, C)
    {bert_role::up_b, "intermediate.dense.bias", true},    // (F)
    {bert_role::down_w, "output.dense.weight", true},      // (C, F)
    {bert_role::down_b, "output.dense.bias", true},        // (C)
    {bert_role::ln2_w, "output.LayerNorm.weight", true},
    {bert_role::ln2_b, "output.LayerNorm.bias", true},
};

std::vector<int64_t> role_shape(bert_role r, const bert_config& c) {
    switch (r) {
        case bert_role::word_emb: return {c.vocab_size, c.dim};
        case bert_role::pos_emb: return {c.max_positions, c.dim};
        case bert_role::type_emb: return {c.type_vocab_size, c.dim};
        case bert_role::q_w: case bert_role::k_w: case bert_role::v_w: case bert_role::o_w: return {c.dim, c.dim};
        case bert_role::up_w: return {c.ffn_dim, c.dim};
        case bert_role::up_b: return {c.ffn_dim};
        case bert_role::down_w: return {c.dim, c.ffn_dim};
        default: return {c.dim};
    }
}

std::string role_name(const role_desc& d, int layer) {
    return d.per_layer ? fmt::format("encoder.layer.{}.{}", layer, d.name) : std::string(d.name);
}

nlohmann::json read_json_file(const fs::path& path, bool required) {
    if (!fs::exists(path)) {
        if (!required) return nlohmann::json::object();
        throw user_error(fmt::format("{} not found", path.string()), k_fetch_hint);
    }
    std::ifstream f(path);
    auto j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw user_error(fmt::format("{}: not a JSON object", path.string()), k_fetch_hint);
    return j;
}

template <typename T> T json_num(const nlohmann::json& j, const char* key, const fs::path& file, std::optional<T> def = {}) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (def) return *def;
        throw user_error(fmt::format("{}: '{}' is missing", file.string(), key), k_fetch_hint);
    }
    if (!it->is_number())
        throw user_error(fmt::format("{}: '{}' is not a number", file.string(), key), k_fetch_hint);
    return it->get<T>();
}

bert_config read_config(const fs::path& dir) {
    const auto file = dir / "config.json";
    const auto j = read_json_file(file, true);
    bert_config c;
    const std::string type = j.value("model_type", std::string("bert"));
    if (type != "bert")
        throw user_error(fmt::format("{}: model_type '{}' is not supported by the sentence embedder", file.string(), type),
                         "give a BERT sentence-transformers model such as all-MiniLM-L6-v2");
    const std::string act = j.value("hidden_act", std::string("gelu"));
    if (act != "gelu")
        throw user_error(fmt::format("{}: hidden_act '{}' is not supported", file.string(), act), "supported: gelu");
    const std::string pos = j.value("position_embedding_type", std::string("absolute"));
    if (pos != "absolute")
        throw user_error(fmt::format("{}: position_embedding_type '{}' is not supported", file.string(), pos),
                         "supported: absolute");
    c.vocab_size = json_num<int64_t>(j, "vocab_size", file);
    c.dim = json_num<int64_t>(j, "hidden_size", file);
    c.n_layers = json_num<int64_t>(j, "num_hidden_layers", file);
    c.n_heads = json_num<int64_t>(j, "num_attention_heads", file);
    c.ffn_dim = json_num<int64_t>(j, "intermediate_size", file);
    c.max_positions = json_num<int64_t>(j, "max_position_embeddings", file, int64_t(512));
    c.type_vocab_size = json_num<int64_t>(j, "type_vocab_size", file, int64_t(2));
    c.ln_eps = json_num<double>(j, "layer_norm_eps", file, 1e-12);
    if (c.vocab_size <= 0 || c.dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.ffn_dim <= 0 ||
        c.max_positions <= 0 || c.type_vocab_size <= 0 || c.dim % c.n_heads != 0)
        throw user_error(fmt::format("{}: inconsistent sizes (hidden {}, heads {}, layers {}, ffn {}, vocab {})",
                                     file.string(), c.dim, c.n_heads, c.n_layers, c.ffn_dim, c.vocab_size),
                         k_fetch_hint);
    const auto st = read_json_file(dir / "sentence_bert_config.json", false);
    c.max_seq_length = json_num<int64_t>(st, "max_seq_length", dir / "sentence_bert_config.json", c.max_positions);
    c.max_seq_length = std::min(c.max_seq_length, c.max_positions);
    const auto pool_file = dir / "1_Pooling" / "config.json";
    const auto pool = read_json_file(pool_file, false);
    for (const char* other : {"pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"})
        if (pool.value(other, false))
            throw user_error(fmt::format("{}: {} is not supported", pool_file.string(), other),
                             "the sentence embedder implements mean pooling only");
    return c;
}

torch::ScalarType resolve_dtype(const std::string& name, const std::string& device) {
    if (name == "fp32" || name == "float32") return torch::kFloat32;
    if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
    if (name == "auto") {
        // measured, not assumed: bf16 is 3.6x fp32 on one EPYC and 0.55x on one Xeon (model/dtype.h)
        const auto c = choose_dtype("auto", device, {384, 3 * 384, 1536});  // all-MiniLM-L6-v2's shapes
        return c.choice == "bf16" ? torch::kBFloat16 : torch::kFloat32;
    }
    throw user_error(fmt::format("unknown dtype '{}' for the sentence embedder", name), "use fp32, bf16 or auto");
}

}  // namespace

// ---- the encoder ---------------------------------------------------------------------------
// B batch, T time (tokens), C hidden, H heads, D = C/H head size, F intermediate size.
class bert_encoder {
public:
    bert_config cfg;
    torch::Device device{torch::kCPU};
    torch::ScalarType dtype = torch::kFloat32;

    struct layer {
        torch::Tensor wqkv, bqkv;    // (3C, C), (3C): q (scaled by 1/sqrt(D)), k, v stacked
        torch::Tensor wo, bo;        // (C, C), (C)
        torch::Tensor ln1_w, ln1_b;  // (C)
        torch::Tensor w_up, b_up;    // (F, C), (F)
        torch::Tensor w_down, b_down;  // (C, F), (C)
        torch::Tensor ln2_w, ln2_b;  // (C)
    };
    // dtype: the matmul weights; embeddings and LayerNorm parameters are float32
    torch::Tensor word_emb;  // (V, C)
    torch::Tensor pos_type;  // (P, C): position embeddings + token type 0 (single-sentence input)
    torch::Tensor emb_ln_w, emb_ln_b;
    std::vector<layer> layers;

    /// ids, mask: (B, T) int64, mask 1 for real tokens (right padding). Returns (B, C) float32,
    /// mean-pooled over the mask and L2-normalised.
    torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask) const;
};

// Post-LayerNorm BERT as HF BertModel, then sentence-transformers' pooling:
//   x = LN(E_tok[ids] + E_pos[t] + E_type[0])
//   per layer: a = softmax(q k^T / sqrt(D) + key_bias) v per head;  x = LN(x + W_o a + b_o)
//              x = LN(x + W_2 gelu(W_1 x + b_1) + b_2)
//   e = normalize(sum_t m_t x_t / sum_t m_t)   (m: attention mask)
torch::Tensor bert_encoder::forward(const torch::Tensor& ids, const torch::Tensor& mask) const {
    const int64_t B = ids.size(0), T = ids.size(1), C = cfg.dim, H = cfg.n_heads, D = C / H;
    SLM_ASSERT(T <= cfg.max_positions, "sequence of {} tokens > {} positions", T, cfg.max_positions);
    // The residual stream and LayerNorms stay float32; matmuls (and attention) run in `dtype`.
    // bf16 LayerNorm is slow on the CPU in libtorch 1.13, and float32 keeps the sums accurate.
    const auto ln = [&](const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
        return torch::layer_norm(x, {C}, w, b, cfg.ln_eps);
    };
    auto x = word_emb.index_select(0, ids.reshape({-1})).view({B, T, C}) + pos_type.narrow(0, 0, T);  // (B, T, C)
    x = ln(x, emb_ln_w, emb_ln_b);
    // additive key mask as HF's get_extended_attention_mask: 0 to keep a key, a huge negative for padding
    // (-1e30 rather than float's lowest: it survives the cast to bf16 and gives the same exp() = 0)
    const auto key_bias = ((1 - mask).to(torch::kFloat32) * -1e30f).to(dtype).view({B, 1, 1, T});  // (B, 1, 1, T)
    for (const auto& l : layers) {
        // q comes out scaled by 1/sqrt(D): folded into wqkv at load
        auto qkv = torch::linear(x.to(dtype), l.wqkv, l.bqkv).view({B, T, 3, H, D}).permute({2, 0, 3, 1, 4});  // (3, B, H, T, D)
        auto q = qkv[0].reshape({B * H, T, D}), k = qkv[1].reshape({B * H, T, D}), v = qkv[2].reshape({B * H, T, D});
        auto att = torch::bmm(q, k.transpose(1, 2)).view({B, H, T, T}).add_(key_bias);  // (B, H, T, T)
        att = torch::softmax(att, -1).view({B * H, T, T});
        auto ctx = torch::bmm(att, v).view({B, H, T, D}).transpose(1, 2).reshape({B, T, C});  // (B, T, C)
        x = ln(x + torch::linear(ctx, l.wo, l.bo), l.ln1_w, l.ln1_b);  // float32 + dtype -> float32, one pass
        auto h = torch::gelu(torch::linear(x.to(dtype), l.w_up, l.b_up));  // (B, T, F), exact erf GELU as HF "gelu"
        x = ln(x + torch::linear(h, l.w_down, l.b_down), l.ln2_w, l.ln2_b);
    }
    // mean pooling over real tokens, then L2 normalisation (sentence-transformers' Pooling + Normalize)
    const auto m = mask.to(torch::kFloat32).unsqueeze(-1);     // (B, T, 1)
    auto pooled = (x * m).sum(1) / m.sum(1).clamp_min(1e-9);  // (B, C)
    return torch::nn::functional::normalize(pooled, torch::nn::functional::NormalizeFuncOptions().p(2).dim(1).eps(1e-12));
}

namespace {

// Reads every tensor of the encoder from `file`, checking names, dtypes, shapes and values.
std::unique_ptr<bert_encoder> load_encoder(const std::string& file, const bert_config& c, torch::Device device,
                                           torch::ScalarType dtype) {
    if (!fs::exists(file)) throw user_error(fmt::format("{} not found", file), k_fetch_hint);
    std::unique_ptr<safetensors_file> st_file;
    try {
        st_file = std::make_unique<safetensors_file>(file);
    } catch (const user_error& e) {  // a truncated or garbled file: say how to get a good one
        throw user_error(e.what(), e.hint.empty() ? k_fetch_hint : fmt::format("{}; {}", e.hint, k_fetch_hint));
    }
    const safetensors_file& st = *st_file;
    std::string prefix;
    if (!st.find(k_roles[0].name) && st.find(std::string("bert.") + k_roles[0].name)) prefix = "bert.";

    auto read = [&](const role_desc& d, int layer) {
        const std::string name = prefix + role_name(d, layer);
        const st_tensor* t = st.find(name);
        if (!t)
            throw user_error(fmt::format("{}: tensor '{}' is missing", file, name),
                             fmt::format("is this a BERT checkpoint matching config.json? {}", k_fetch_hint));
        const auto want = role_shape(d.role, c);
        if (t->shape != want)
            throw user_error(fmt::format("{}: tensor '{}' has shape [{}], expected [{}] from config.json", file, name,
                                         fmt::join(t->shape, ", "), fmt::join(want, ", ")),
                             k_fetch_hint);
        torch::ScalarType type;
        if (t->dtype == "F32") type = torch::kFloat32;
        else if (t->dtype == "F16") type = torch::kFloat16;
        else if (t->dtype == "BF16") type = torch::kBFloat16;
        else
            throw user_error(fmt::format("{}: tensor '{}' has dtype {}, expected F32, F16 or BF16", file, name, t->dtype),
                             k_fetch_hint);
        auto out = torch::empty(t->shape, torch::TensorOptions().dtype(type));
        SLM_ASSERT(static_cast<uint64_t>(out.nbytes()) == t->n_bytes, "{}: {} bytes for {}", name, t->n_bytes, out.nbytes());
        std::memcpy(out.data_ptr(), t->data, t->n_bytes);
        out = out.to(torch::kFloat32);
        if (!torch::isfinite(out).all().item<bool>())
            throw user_error(fmt::format("{}: tensor '{}' holds NaN or Inf values", file, name),
                             fmt::format("the file is corrupt; {}", k_fetch_hint));
        return out;
    };
    auto get = [&](bert_role r, int layer = -1) {
        for (const auto& d : k_roles)
            if (d.role == r) return read(d, layer);
        SLM_ASSERT(false, "no tensor name for role {}", static_cast<int>(r));
        return torch::Tensor();
    };
    const auto opt = torch::TensorOptions().dtype(dtype).device(device);  // matmul weights
    const auto opt32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);  // embeddings, LayerNorms
    auto e = std::make_unique<bert_encoder>();
    e->cfg = c;
    e->device = device;
    e->dtype = dtype;
    e->word_emb = get(bert_role::word_emb).to(opt32);
    e->pos_type = (get(bert_role::pos_emb) + get(bert_role::type_emb)[0]).to(opt32);
    e->emb_ln_w = get(bert_role::emb_ln_w).to(opt32);
    e->emb_ln_b = get(bert_role::emb_ln_b).to(opt32);
    const float scale = 1.f / std::sqrt(static_cast<float>(c.dim / c.n_heads));  // attention's 1/sqrt(D), folded into q
    for (int i = 0; i < c.n_layers; ++i) {
        bert_encoder::layer l;
        l.wqkv = torch::cat({get(bert_role::q_w, i) * scale, get(bert_role::k_w, i), get(bert_role::v_w, i)}).to(opt);
        l.bqkv = torch::cat({get(bert_role::q_b, i) * scale, get(bert_role::k_b, i), get(bert_role::v_b, i)}).to(opt);
        l.wo = get(bert_role::o_w, i).to(opt);
        l.bo = get(bert_role::o_b, i).to(opt);
        l.ln1_w = get(bert_role::ln1_w, i).to(opt32);
        l.ln1_b = get(bert_role::ln1_b, i).to(opt32);
        l.w_up = get(bert_role::up_w, i).to(opt);
        l.b_up = get(bert_role::up_b, i).to(opt);
        l.w_down = get(bert_role::down_w, i).to(opt);
        l.b_down = get(bert_role::down_b, i).to(opt);
        l.ln2_w = get(bert_role::ln2_w, i).to(opt32);
        l.ln2_b = get(bert_role::ln2_b, i).to(opt32);
        e->layers.push_back(std::move(l));
    }
    return e;
}

}  // namespace

// ---- sentence_embedder ---------------------------------------------------------------------

sentence_embedder::sentence_embedder(wordpiece_tokenizer tok, std::unique_ptr<bert_encoder> enc,
                                     sentence_embedder_params p, std::string dtype)
    : tok_(std::move(tok)), enc_(std::move(enc)), p_(std::move(p)), dtype_(std::move(dtype)) {}
sentence_embedder::sentence_embedder(sentence_embedder&&) noexcept = default;
sentence_embedder& sentence_embedder::operator=(sentence_embedder&&) noexcept = default;
sentence_embedder::~sentence_embedder() = default;

sentence_embedder sentence_embedder::load(const std::string& dir, sentence_embedder_params p) {
    if (!fs::is_directory(dir))
        throw user_error(fmt::format("sentence embedder directory {} not found", dir), k_fetch_hint);
    if (p.batch_size < 1) throw user_error(fmt::format("batch size {} must be >= 1", p.batch_size));
    check_device(p.device);
    const bert_config c = read_config(dir);
    if (p.max_length <= 0) p.max_length = static_cast<int>(c.max_seq_length);
    if (p.max_length < 2 || p.max_length > c.max_positions)
        throw user_error(fmt::format("max_length {} is outside [2, {}] for {}", p.max_length, c.max_positions, dir),
                         fmt::format("the model was trained with max_seq_length {}", c.max_seq_length));
    auto tok = wordpiece_tokenizer::from_dir(dir);
    if (tok.vocab_size() != c.vocab_size)
        throw user_error(fmt::format("{}/vocab.txt has {} tokens, config.json says vocab_size {}", dir, tok.vocab_size(),
                                     c.vocab_size),
                         k_fetch_hint);
    const auto dtype = resolve_dtype(p.dtype, p.device);
    c10::InferenceMode guard;
    auto enc = load_encoder((fs::path(dir) / "model.safetensors").string(), c, torch::Device(p.device), dtype);
    return sentence_embedder(std::move(tok), std::move(enc), std::move(p), dtype == torch::kBFloat16 ? "bf16" : "fp32");
}

int sentence_embedder::dim() const { return static_cast<int>(enc_->cfg.dim); }
const bert_config& sentence_embedder::config() const { return enc_->cfg; }

std::vector<float> sentence_embedder::embed(const std::vector<std::string>& texts) const {
    const int64_t n = static_cast<int64_t>(texts.size()), C = enc_->cfg.dim;
    std::vector<float> out(static_cast<size_t>(n * C));
    if (n == 0) return out;
    std::vector<std::vector<int32_t>> ids(texts.size());
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t i = 0; i < n; ++i) ids[i] = tok_.encode(texts[i], true, static_cast<size_t>(p_.max_length));
    // longest first, so that each batch pads to about its own length
    std::vector<int64_t> order(texts.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return ids[a].size() > ids[b].size(); });

    c10::InferenceMode guard;
    std::optional<progress> prog;  // only for long work
    if (n >= 2048) prog.emplace("embedding", static_cast<uint64_t>(n), "texts");
    for (int64_t b0 = 0; b0 < n; b0 += p_.batch_size) {
        const int64_t B = std::min<int64_t>(p_.batch_size, n - b0);
        const int64_t T = static_cast<int64_t>(ids[order[b0]].size());
        auto tid = torch::full({B, T}, static_cast<int64_t>(std::max(tok_.pad_id(), 0)), torch::kInt64);  // (B, T)
        auto tmask = torch::zeros({B, T}, torch::kInt64);                                                  // (B, T)
        auto* pid = tid.data_ptr<int64_t>();
        auto* pm = tmask.data_ptr<int64_t>();
        for (int64_t r = 0; r < B; ++r) {
            const auto& s = ids[order[b0 + r]];
            for (size_t t = 0; t < s.size(); ++t) {
                pid[r * T + t] = s[t];
                pm[r * T + t] = 1;
            }
        }
        const auto dev = enc_->device;
        auto emb = enc_->forward(tid.to(dev), tmask.to(dev)).to(torch::kCPU).contiguous();  // (B, C) float32
        const float* pe = emb.data_ptr<float>();
        for (int64_t r = 0; r < B; ++r) std::copy_n(pe + r * C, C, out.data() + order[b0 + r] * C);
        if (prog) prog->add(static_cast<uint64_t>(B));
    }
    if (prog) prog->finish();
    return out;
}

std::string default_minilm_dir() { return models_dir() + "/all-MiniLM-L6-v2"; }

}  // namespace slm::model
