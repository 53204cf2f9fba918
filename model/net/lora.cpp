// LoRA adapters: init, the trainable tensors, merge, PEFT directories and llama.cpp LoRA GGUF files.
#include <torch/torch.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "common/common.h"
#include "common/text.h"
#include "model/adapter.h"
#include "model/format/gguf-reader.h"
#include "model/format/hf-export.h"
#include "model/format/safetensors.h"
#include "model/model.h"
#include "model/tensor-names.h"

namespace fs = std::filesystem;

namespace slm::model {

namespace {

constexpr const char* k_short[n_projs] = {"q", "k", "v", "o", "gate", "up", "down"};
constexpr const char* k_hf[n_projs] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

tensor_role role_of(proj p) {
    switch (p) {
        case proj::q: return tensor_role::attn_q;
        case proj::k: return tensor_role::attn_k;
        case proj::v: return tensor_role::attn_v;
        case proj::o: return tensor_role::attn_o;
        case proj::gate: return tensor_role::ffn_gate;
        case proj::up: return tensor_role::ffn_up;
        case proj::down: return tensor_role::ffn_down;
    }
    return tensor_role::attn_q;
}

// "model.layers.3.self_attn.q_proj" (the HF module path, no ".weight")
std::string hf_module(int layer, proj p) {
    auto n = tensor_name(source_format::hf, role_of(p), layer);
    return n.substr(0, n.size() - std::strlen(".weight"));
}
std::string peft_key(int layer, proj p, char ab) {
    return fmt::format("base_model.model.{}.lora_{}.weight", hf_module(layer, p), ab);
}
std::string gguf_key(int layer, proj p, char ab) {
    return fmt::format("{}.lora_{}", tensor_name(source_format::gguf, role_of(p), layer), ab);
}

// llama and mistral GGUFs store q/k rows for interleaved RoPE (see model/format/loader.cpp)
bool gguf_interleaved(const llama_config& c) { return c.arch == "llama" || c.arch == "mistral"; }

std::vector<int64_t> shape_of(const torch::Tensor& t) { return t.sizes().vec(); }
std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

// Makes the adapter of one projection from loaded A (r, in) and B (out, r), checking the shapes.
void attach(lora_linear& P, torch::Tensor a, torch::Tensor b, double scale, const std::string& what,
            const std::string& file) {
    if (a.dim() != 2 || b.dim() != 2 || a.size(1) != P.in_features() || b.size(0) != P.out_features() ||
        a.size(0) != b.size(1))
        throw user_error(fmt::format("{}: adapter tensors of {} have shapes A {} and B {}; this base model needs A [r, {}] "
                                     "and B [{}, r]",
                                     file, what, shape_str(shape_of(a)), shape_str(shape_of(b)), P.in_features(),
                                     P.out_features()),
                         "the adapter was trained on another base model: pass the --base it was made for");
    const auto dev = P.weight.device();
    P.lora_a = a.to(dev, torch::kFloat32).contiguous();
    P.lora_b = b.to(dev, torch::kFloat32).contiguous();
    P.lora_scale = scale;
    P.lora_dropout = 0;
}

torch::Tensor st_to_tensor(const st_tensor& t) {
    torch::ScalarType st;
    if (t.dtype == "F32")
        st = torch::kFloat32;
    else if (t.dtype == "BF16")
        st = torch::kBFloat16;
    else if (t.dtype == "F16")
        st = torch::kFloat16;
    else
        throw user_error(fmt::format("{}: tensor {} has dtype {}; adapters are read in F32, BF16 or F16", t.file, t.name,
                                     t.dtype),
                         "re-save the adapter in float32 or bfloat16");
    // copy out of the mapping (any alignment)
    auto out = torch::empty(t.shape, torch::TensorOptions().dtype(st));
    std::memcpy(out.data_ptr(), t.data, t.n_bytes);
    return out.to(torch::kFloat32);
}

// A temp directory beside `dir`, renamed over it by commit(); removed if never committed.
struct temp_output_dir {
    fs::path final_, tmp;
    bool done = false;
    explicit temp_output_dir(const std::string& dir) : final_(dir) {
        fs::path parent = final_.has_parent_path() ? final_.parent_path() : fs::path(".");
        std::error_code ec;
        fs::create_directories(parent, ec);
        if (ec || !fs::is_directory(parent))
            throw user_error(fmt::format("cannot create the directory {} for {}", parent.string(), dir),
                             "pass an output path whose parent is a writable directory");
        tmp = parent / fmt::format(".{}.tmp-{}", final_.filename().string(), ::getpid());
        fs::remove_all(tmp, ec);
        fs::create_directories(tmp);
    }
    void commit() {
        std::error_code ec;
        const fs::path old = final_.string() + ".old";
        fs::remove_all(old, ec);
        if (fs::exists(final_)) fs::rename(final_, old);
        fs::rename(tmp, final_);
        fs::remove_all(old, ec);
        done = true;
    }
    ~temp_output_dir() {
        if (!done) {
            std::error_code ec;
            fs::remove_all(tmp, ec);
        }
    }
};

void write_text(const fs::path& p, const std::string& s) {
    std::ofstream f(p, std::ios::binary);
    f << s;
    if (!f) throw user_error(fmt::format("cannot write {}", p.string()), "check free disk space and permissions");
}

// ---- a small GGUF v3 writer (metadata + f32 tensors), enough for adapter files ---------------
class gguf_writer {
public:
    void kv_string(const std::string& k, const std::string& v) {
        key(k, 8);
        str(v);
    }
    void kv_f32(const std::string& k, float v) {
        key(k, 6);
        put(v);
    }
    void kv_u32(const std::string& k, uint32_t v) {
        key(k, 4);
        put(v);
    }
    /// A float32 tensor, row-major with torch shape `shape` (written as ggml ne = reversed shape).
    void tensor(const std::string& name, const torch::Tensor& t) {
        tensors_.push_back({name, t.detach().to(torch::kCPU, torch::kFloat32).contiguous()});
    }
    void write(const std::string& path) const {
        std::string out;
        auto u32 = [&](uint32_t v) { out.append(reinterpret_cast<const char*>(&v), 4); };
        auto u64 = [&](uint64_t v) { out.append(reinterpret_cast<const char*>(&v), 8); };
        out += "GGUF";
        u32(3);
        u64(tensors_.size());
        u64(n_kv_);
        out += kv_;
        const uint64_t align = 32;
        uint64_t offset = 0;
        for (const auto& [name, t] : tensors_) {
            u64(name.size());
            out += name;
            u32(static_cast<uint32_t>(t.dim()));
            for (int64_t d = t.dim() - 1; d >= 0; --d) u64(t.size(d));
            u32(0);  // GGML_TYPE_F32
            u64(offset);
            offset += (t.numel() * 4 + align - 1) / align * align;
        }
        while (out.size() % align) out.push_back('\0');
        for (const auto& [name, t] : tensors_) {
            out.append(static_cast<const char*>(t.data_ptr()), t.numel() * 4);
            while (out.size() % align) out.push_back('\0');
        }
        const std::string tmp = path + ".tmp";
        {
            std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
            if (!f)
                throw user_error(fmt::format("cannot write {}: {}", path, std::strerror(errno)),
                                 "pass an output path in a writable directory");
            f.write(out.data(), static_cast<std::streamsize>(out.size()));
            if (!f) {
                std::error_code ec;
                fs::remove(tmp, ec);
                throw user_error(fmt::format("cannot write {}: disk full?", path), "free some disk space");
            }
        }
        fs::rename(tmp, path);
    }

private:
    void key(const std::string& k, uint32_t type) {
        ++n_kv_;
        uint64_t n = k.size();
        kv_.append(reinterpret_cast<const char*>(&n), 8);
        kv_ += k;
        put(type);
    }
    void str(const std::string& s) {
        uint64_t n = s.size();
        kv_.append(reinterpret_cast<const char*>(&n), 8);
        kv_ += s;
    }
    template <typename T> void put(T v) { kv_.append(reinterpret_cast<const char*>(&v), sizeof v); }
    std::string kv_;
    uint64_t n_kv_ = 0;
    std::vector<std::pair<std::string, torch::Tensor>> tensors_;
};

}  // namespace

const char* proj_hf_name(proj p) { return k_hf[static_cast<int>(p)]; }

double lora_config::scale() const { return rslora ? alpha / std::sqrt(double(rank)) : alpha / double(rank); }

std::vector<proj> lora_config::parse_targets(std::string_view csv) {
    std::vector<proj> out;
    auto add = [&](proj p) {
        if (std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    };
    size_t start = 0;
    while (start <= csv.size()) {
        size_t end = csv.find(',', start);
        if (end == std::string_view::npos) end = csv.size();
        std::string name(trim_space(csv.substr(start, end - start)));
        start = end + 1;
        if (name.empty()) continue;
        if (name == "all" || name == "all-linear") {
            for (int i = 0; i < n_projs; ++i) add(proj(i));
            continue;
        }
        bool found = false;
        for (int i = 0; i < n_projs; ++i)
            if (name == k_short[i] || name == k_hf[i]) {
                add(proj(i));
                found = true;
            }
        if (!found)
            throw user_error(fmt::format("unknown LoRA target '{}'", name),
                             "targets are q,k,v,o,gate,up,down (or their HF names q_proj,...,down_proj), or all");
    }
    if (out.empty()) throw user_error("no LoRA target given", "pass e.g. --targets all or --targets q,v");
    std::sort(out.begin(), out.end());
    return out;
}

void lora_config::validate() const {
    if (rank < 1) throw user_error(fmt::format("LoRA rank {} must be at least 1", rank), "pass e.g. --rank 8");
    if (!(alpha > 0)) throw user_error(fmt::format("LoRA alpha {} must be > 0", alpha), "pass e.g. --alpha 16 (2 x rank)");
    if (!(dropout >= 0 && dropout < 1))
        throw user_error(fmt::format("LoRA dropout {} must be in [0, 1)", dropout), "pass e.g. --dropout 0.05");
    if (targets.empty()) throw user_error("no LoRA target given", "pass e.g. --targets all");
}

nlohmann::json lora_config::to_json() const {
    nlohmann::json t = nlohmann::json::array();
    for (auto p : targets) t.push_back(k_short[static_cast<int>(p)]);
    return {{"rank", rank}, {"alpha", alpha}, {"dropout", dropout}, {"rslora", rslora}, {"targets", t}};
}

void add_lora(llama_model& m, const lora_config& c, uint64_t seed) {
    c.validate();
    remove_lora(m);
    torch::NoGradGuard ng;
    auto gen = at::detail::createCPUGenerator(seed);
    for (auto& L : m.layers)
        for (auto p : c.targets) {
            auto& P = L.projection(p);
            // kaiming_uniform_(a = sqrt(5)) on (r, in): gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / in) = 1/sqrt(in)
            const double bound = 1.0 / std::sqrt(double(P.in_features()));
            auto a = torch::empty({c.rank, P.in_features()}, torch::kFloat32);
            a.uniform_(-bound, bound, gen);
            P.lora_a = a.to(m.device()).requires_grad_(true);
            P.lora_b = torch::zeros({P.out_features(), c.rank}, torch::TensorOptions().dtype(torch::kFloat32).device(m.device()))
                           .requires_grad_(true);
            P.lora_scale = c.scale();
            P.lora_dropout = c.dropout;
        }
}

std::vector<torch::Tensor> lora_parameters(const llama_model& m) {
    std::vector<torch::Tensor> out;
    for (const auto& L : m.layers)
        for (int i = 0; i < n_projs; ++i) {
            const auto& P = L.projection(proj(i));
            if (!P.has_lora()) continue;
            out.push_back(P.lora_a);
            out.push_back(P.lora_b);
        }
    return out;
}

void remove_lora(llama_model& m) {
    for (auto& L : m.layers)
        for (int i = 0; i < n_projs; ++i) {
            auto& P = L.projection(proj(i));
            P.lora_a = torch::Tensor();
            P.lora_b = torch::Tensor();
            P.lora_scale = 0;
            P.lora_dropout = 0;
        }
}

void merge_lora(llama_model& m) {
    SLM_ASSERT(m.int4_max_rows == 0, "merge_lora after enable_int4_decode: the 4-bit copies would keep the unmerged weights");
    torch::NoGradGuard ng;
    for (auto& L : m.layers)
        for (int i = 0; i < n_projs; ++i) {
            auto& P = L.projection(proj(i));
            if (!P.has_lora()) continue;
            auto delta = torch::matmul(P.lora_b.to(torch::kFloat32), P.lora_a.to(torch::kFloat32)) * P.lora_scale;
            // in place: the projection's weight is a row view of the fused q/k/v or gate/up tensor
            P.weight.copy_((P.weight.to(torch::kFloat32) + delta).to(P.weight.scalar_type()));
        }
    remove_lora(m);
}

// the loaders proper; the public ones remove a half-attached adapter when these throw
lora_config load_peft_adapter_impl(llama_model& m, const std::string& dir);
lora_config load_gguf_adapter_impl(llama_model& m, const std::string& path);

// ---- PEFT ------------------------------------------------------------------------------------

void save_peft_adapter(const llama_model& m, const lora_config& c, const std::string& dir,
                       const std::string& base_model_name_or_path) {
    c.validate();
    temp_output_dir out(dir);
    std::vector<std::string> names;
    std::vector<torch::Tensor> keep;
    std::vector<st_write_entry> entries;
    for (size_t l = 0; l < m.layers.size(); ++l)
        for (auto p : c.targets) {
            const auto& P = m.layers[l].projection(p);
            if (!P.has_lora())
                throw internal_error(fmt::format("layer {} {} has no adapter to save", l, k_short[int(p)]));
            for (char ab : {'A', 'B'}) {
                auto t = (ab == 'A' ? P.lora_a : P.lora_b).detach().to(torch::kCPU, torch::kFloat32).contiguous();
                keep.push_back(t);
                entries.push_back({peft_key(int(l), p, ab), "F32", t.sizes().vec(), t.data_ptr(), uint64_t(t.nbytes())});
            }
        }
    write_safetensors((out.tmp / "adapter_model.safetensors").string(), entries, {{"format", "pt"}});
    nlohmann::ordered_json cfg;
    nlohmann::json targets = nlohmann::json::array();
    for (auto p : c.targets) targets.push_back(k_hf[int(p)]);
    cfg["peft_type"] = "LORA";
    cfg["task_type"] = "CAUSAL_LM";
    cfg["base_model_name_or_path"] = base_model_name_or_path;
    cfg["r"] = c.rank;
    cfg["lora_alpha"] = c.alpha;
    cfg["lora_dropout"] = c.dropout;
    cfg["target_modules"] = targets;
    cfg["bias"] = "none";
    cfg["use_rslora"] = c.rslora;
    cfg["use_dora"] = false;
    cfg["fan_in_fan_out"] = false;
    cfg["modules_to_save"] = nullptr;
    cfg["init_lora_weights"] = true;
    cfg["inference_mode"] = true;
    cfg["layers_to_transform"] = nullptr;
    cfg["rank_pattern"] = nlohmann::json::object();
    cfg["alpha_pattern"] = nlohmann::json::object();
    cfg["revision"] = nullptr;
    write_text(out.tmp / "adapter_config.json", cfg.dump(2) + "\n");
    out.commit();
}

lora_config load_peft_adapter_impl(llama_model& m, const std::string& dir) {
    const fs::path d(dir);
    const auto cfg_path = d / "adapter_config.json", st_path = d / "adapter_model.safetensors";
    if (!fs::exists(cfg_path))
        throw user_error(fmt::format("{} has no adapter_config.json: not a PEFT adapter directory", dir),
                         "pass the directory slmctl finetune wrote (or a PEFT save_pretrained directory)");
    if (!fs::exists(st_path))
        throw user_error(fmt::format("{} has no adapter_model.safetensors", dir),
                         "save the PEFT adapter with safe_serialization (the default), or re-run slmctl finetune");
    nlohmann::json j;
    try {
        std::ifstream f(cfg_path);
        j = nlohmann::json::parse(f);
    } catch (const std::exception& e) {
        throw user_error(fmt::format("{}: not valid JSON ({})", cfg_path.string(), e.what()), "re-save the adapter");
    }
    auto fail = [&](const std::string& what, const std::string& hint) {
        throw user_error(fmt::format("{}: {}", cfg_path.string(), what), hint);
    };
    if (j.value("peft_type", "LORA") != "LORA") fail("peft_type is " + j["peft_type"].dump() + ", not LORA", "only LoRA adapters load");
    if (j.contains("bias") && j["bias"] != "none") fail("bias " + j["bias"].dump() + " is not supported", "train with bias='none'");
    if (j.contains("modules_to_save") && !j["modules_to_save"].is_null() && !j["modules_to_save"].empty())
        fail("modules_to_save is not supported", "train without modules_to_save");
    if (j.value("use_dora", false)) fail("DoRA adapters are not supported", "train a plain LoRA adapter");
    if (j.value("fan_in_fan_out", false)) fail("fan_in_fan_out adapters are not supported", "train with fan_in_fan_out=false");
    if (j.contains("rank_pattern") && j["rank_pattern"].is_object() && !j["rank_pattern"].empty())
        fail("rank_pattern is not supported", "train with one rank for every module");
    lora_config c;
    try {
        c.rank = j.at("r").get<int64_t>();
        c.alpha = j.at("lora_alpha").get<double>();
        c.dropout = j.value("lora_dropout", 0.0);
        c.rslora = j.value("use_rslora", false);
    } catch (const nlohmann::json::exception& e) {
        fail(std::string("r or lora_alpha missing or not a number: ") + e.what(), "re-save the adapter");
    }
    const auto& tm = j.value("target_modules", nlohmann::json());
    if (!tm.is_array()) fail("target_modules must be a list of module names (regex strings are not supported)",
                             "train with target_modules=[\"q_proj\", ...]");
    std::string csv;
    for (const auto& t : tm) csv += (csv.empty() ? "" : ",") + t.get<std::string>();
    c.targets = lora_config::parse_targets(csv);
    c.validate();
    safetensors_file st(st_path.string());
    remove_lora(m);
    size_t used = 0;
    for (size_t l = 0; l < m.layers.size(); ++l)
        for (auto p : c.targets) {
            const auto* a = st.find(peft_key(int(l), p, 'A'));
            const auto* b = st.find(peft_key(int(l), p, 'B'));
            if (!a || !b)
                throw user_error(fmt::format("{}: no tensor {} for layer {} (the base has {} layers)", st_path.string(),
                                             !a ? peft_key(int(l), p, 'A') : peft_key(int(l), p, 'B'), l, m.layers.size()),
                                 "the adapter was trained on another base model: pass the --base it was made for");
            attach(m.layers[l].projection(p), st_to_tensor(*a), st_to_tensor(*b), c.scale(),
                   fmt::format("layer {} {}", l, k_hf[int(p)]), st_path.string());
            used += 2;
        }
    if (used != st.tensors().size()) {
        std::string extra;
        for (const auto& t : st.tensors()) {
            bool known = false;
            for (size_t l = 0; l < m.layers.size() && !known; ++l)
                for (auto p : c.targets) known = known || t.name == peft_key(int(l), p, 'A') || t.name == peft_key(int(l), p, 'B');
            if (!known) {
                extra = t.name;
                break;
            }
        }
        remove_lora(m);
        throw user_error(fmt::format("{}: tensor {} does not belong to this base model's layers or to target_modules",
                                     st_path.string(), extra),
                         "the adapter was trained on a deeper model, or target_modules does not list every module");
    }
    return c;
}

// ---- llama.cpp GGUF ------------------------------------------------------------------------------

void save_gguf_adapter(const llama_model& m, const lora_config& c, const std::string& path) {
    c.validate();
    gguf_writer w;
    w.kv_string("general.architecture", m.config.arch);
    w.kv_string("general.type", "adapter");
    w.kv_string("general.name", "slmctl LoRA adapter");
    w.kv_string("adapter.type", "lora");
    // llama.cpp scales by alpha / r: fold rsLoRA's sqrt(r) into the alpha written
    const double alpha = c.rslora ? c.alpha * std::sqrt(double(c.rank)) : c.alpha;
    w.kv_f32("adapter.lora.alpha", static_cast<float>(alpha));
    w.kv_u32("general.alignment", 32);
    const bool perm = gguf_interleaved(m.config);
    for (size_t l = 0; l < m.layers.size(); ++l)
        for (auto p : c.targets) {
            const auto& P = m.layers[l].projection(p);
            if (!P.has_lora()) throw internal_error(fmt::format("layer {} {} has no adapter to save", l, k_short[int(p)]));
            auto b = P.lora_b.detach().to(torch::kCPU, torch::kFloat32);
            if (perm && p == proj::q) b = permute_interleaved_rope(b, m.config.n_heads);
            if (perm && p == proj::k) b = permute_interleaved_rope(b, m.config.n_kv_heads);
            w.tensor(gguf_key(int(l), p, 'a'), P.lora_a);  // (r, in): ne [in, r]
            w.tensor(gguf_key(int(l), p, 'b'), b);         // (out, r): ne [r, out]
        }
    fs::path parent = fs::path(path).has_parent_path() ? fs::path(path).parent_path() : fs::path(".");
    if (!fs::is_directory(parent))
        throw user_error(fmt::format("cannot write {}: {} is not a directory", path, parent.string()),
                         "pass an output path in an existing directory");
    w.write(path);
}

lora_config load_gguf_adapter_impl(llama_model& m, const std::string& path) {
    gguf_reader g(path);
    if (g.get_string("general.type", "") != "adapter" || g.get_string("adapter.type", "") != "lora")
        throw user_error(fmt::format("{} is not a LoRA adapter GGUF (general.type '{}', adapter.type '{}')", path,
                                     g.get_string("general.type", ""), g.get_string("adapter.type", "")),
                         "pass an adapter written by slmctl finetune --format gguf or llama.cpp's convert_lora_to_gguf.py");
    const auto arch = g.get_string("general.architecture", "");
    if (!arch.empty() && arch != m.config.arch)
        throw user_error(fmt::format("{}: adapter for architecture '{}', base model is '{}'", path, arch, m.config.arch),
                         "pass the --base the adapter was made for");
    lora_config c;
    // llama.cpp: no (or zero) alpha means scale 1, i.e. alpha = r (set below once r is known)
    c.alpha = g.get_f32("adapter.lora.alpha", 0.f);
    const bool no_alpha = !(c.alpha > 0);
    c.targets.clear();
    const bool perm = gguf_interleaved(m.config);
    remove_lora(m);
    auto read = [&](const gguf_tensor& t) {
        // any type the reader dequantizes (convert_lora_to_gguf.py writes f16 by default)
        std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
        auto v = g.tensor_f32(t.name);
        return torch::from_blob(v.data(), shape, torch::kFloat32).clone();
    };
    size_t used = 0;
    for (int i = 0; i < n_projs; ++i) {
        const proj p = proj(i);
        if (!g.find_tensor(gguf_key(0, p, 'a'))) continue;
        c.targets.push_back(p);
        for (size_t l = 0; l < m.layers.size(); ++l) {
            const auto* a = g.find_tensor(gguf_key(int(l), p, 'a'));
            const auto* b = g.find_tensor(gguf_key(int(l), p, 'b'));
            if (!a || !b)
                throw user_error(fmt::format("{}: no tensor {} (the base has {} layers)", path,
                                             !a ? gguf_key(int(l), p, 'a') : gguf_key(int(l), p, 'b'), m.layers.size()),
                                 "the adapter was trained on another base model: pass the --base it was made for");
            auto ta = read(*a), tb = read(*b);
            if (c.rank != ta.size(0) && !c.targets.empty() && (l > 0 || c.targets.size() > 1))
                throw user_error(fmt::format("{}: {} has rank {}, the other adapters rank {}", path, a->name, ta.size(0), c.rank),
                                 "adapters with a rank per module are not supported");
            c.rank = ta.size(0);
            if (no_alpha) c.alpha = double(c.rank);
            if (tb.dim() == 2 && tb.size(0) == m.layers[l].projection(p).out_features()) {
                if (perm && p == proj::q) tb = unpermute_interleaved_rope(tb, m.config.n_heads);
                if (perm && p == proj::k) tb = unpermute_interleaved_rope(tb, m.config.n_kv_heads);
            }
            attach(m.layers[l].projection(p), ta, tb, c.alpha / double(ta.size(0)), fmt::format("layer {} {}", l, k_hf[i]),
                   path);
            used += 2;
        }
    }
    if (c.targets.empty())
        throw user_error(fmt::format("{}: no LoRA tensors (blk.0.attn_q.weight.lora_a, ...)", path),
                         "pass an adapter written by slmctl finetune --format gguf");
    size_t lora_tensors = 0;
    for (const auto& t : g.tensors())
        if (t.name.size() > 7 && (t.name.ends_with(".lora_a") || t.name.ends_with(".lora_b"))) ++lora_tensors;
    if (lora_tensors != used) {
        remove_lora(m);
        throw user_error(fmt::format("{}: {} LoRA tensors, {} of them fit this base model's {} layers", path, lora_tensors,
                                     used, m.layers.size()),
                         "the adapter was trained on another base model: pass the --base it was made for");
    }
    c.validate();
    return c;
}

lora_config load_peft_adapter(llama_model& m, const std::string& dir) {
    try {
        return load_peft_adapter_impl(m, dir);
    } catch (...) {
        remove_lora(m);  // no half-attached adapter
        throw;
    }
}

lora_config load_gguf_adapter(llama_model& m, const std::string& path) {
    try {
        return load_gguf_adapter_impl(m, path);
    } catch (...) {
        remove_lora(m);
        throw;
    }
}

lora_config load_adapter(llama_model& m, const std::string& path) {
    if (fs::is_directory(path)) {
        if (fs::exists(fs::path(path) / "adapter_config.json")) return load_peft_adapter(m, path);
        if (fs::exists(fs::path(path) / "adapter.gguf")) return load_gguf_adapter(m, (fs::path(path) / "adapter.gguf").string());
        throw user_error(fmt::format("{} holds neither adapter_config.json nor adapter.gguf", path),
                         "pass the directory slmctl finetune wrote, or a LoRA GGUF file");
    }
    if (!fs::exists(path)) throw user_error(fmt::format("adapter {} does not exist", path), "check the path");
    return load_gguf_adapter(m, path);
}

// ---- merged HF checkpoint ----------------------------------------------------------------------

void save_merged_hf(const language_model& lm, const std::string& dir) {
    const auto& m = lm.decoder();
    const auto& c = m.config;
    for (const auto& L : m.layers)
        for (int i = 0; i < n_projs; ++i)
            if (L.projection(proj(i)).has_lora())
                throw internal_error("save_merged_hf: merge_lora() first");
    temp_output_dir out(dir);
    const auto dt = m.dtype();
    const char* st_dtype = dt == torch::kBFloat16 ? "BF16" : dt == torch::kFloat16 ? "F16" : "F32";
    std::vector<torch::Tensor> keep;
    std::vector<st_write_entry> entries;
    auto add = [&](tensor_role r, int layer, const torch::Tensor& t) {
        if (!t.defined()) return;
        auto x = t.detach().to(torch::kCPU).contiguous();
        keep.push_back(x);
        entries.push_back({tensor_name(source_format::hf, r, layer), st_dtype, x.sizes().vec(), x.data_ptr(), uint64_t(x.nbytes())});
    };
    add(tensor_role::tok_embd, -1, m.tok_embd);
    add(tensor_role::out_norm, -1, m.out_norm);
    if (!c.tied_embeddings) add(tensor_role::output, -1, m.output);
    for (size_t l = 0; l < m.layers.size(); ++l) {
        const auto& L = m.layers[l];
        const int i = int(l);
        add(tensor_role::attn_norm, i, L.attn_norm);
        add(tensor_role::ffn_norm, i, L.ffn_norm);
        for (int p = 0; p < n_projs; ++p) add(role_of(proj(p)), i, L.projection(proj(p)).weight);
        add(tensor_role::attn_q_bias, i, L.wq.bias);
        add(tensor_role::attn_k_bias, i, L.wk.bias);
        add(tensor_role::attn_v_bias, i, L.wv.bias);
    }
    write_safetensors((out.tmp / "model.safetensors").string(), entries, {{"format", "pt"}});
    const bool qwen = c.arch == "qwen2";
    nlohmann::ordered_json cfg;
    cfg["architectures"] = {qwen ? "Qwen2ForCausalLM" : (c.arch == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM")};
    cfg["model_type"] = qwen ? "qwen2" : c.arch;
    cfg["hidden_size"] = c.dim;
    cfg["intermediate_size"] = c.ffn_dim;
    cfg["num_hidden_layers"] = c.n_layers;
    cfg["num_attention_heads"] = c.n_heads;
    cfg["num_key_value_heads"] = c.n_kv_heads;
    cfg["head_dim"] = c.head_dim;
    cfg["hidden_act"] = "silu";
    cfg["max_position_embeddings"] = c.context_length;
    cfg["rms_norm_eps"] = std::stod(fmt::format("{}", c.rms_eps));  // 1e-05, not 9.99999974e-06
    cfg["rope_theta"] = std::stod(fmt::format("{}", c.rope_theta));
    cfg["vocab_size"] = c.vocab_size;
    cfg["tie_word_embeddings"] = c.tied_embeddings;
    if (!qwen) cfg["attention_bias"] = c.qkv_bias;
    cfg["torch_dtype"] = dt == torch::kBFloat16 ? "bfloat16" : dt == torch::kFloat16 ? "float16" : "float32";
    for (const auto& [name, id] : lm.info().special_tokens) {
        if (name == "bos") cfg["bos_token_id"] = id;
        if (name == "eos") cfg["eos_token_id"] = id;
    }
    // rope scaling: an HF base's own entry as it was, else recovered from the frequency factors
    const fs::path base(lm.info().path);
    nlohmann::json base_cfg;
    if (fs::is_directory(base) && fs::exists(base / "config.json")) {
        std::ifstream f(base / "config.json");
        base_cfg = nlohmann::json::parse(f, nullptr, false);
    }
    // special ids the tokenizer did not give (a base loaded without it): the base's config or GGUF
    if (base_cfg.is_object()) {
        for (const char* k : {"bos_token_id", "eos_token_id", "pad_token_id"})
            if (!cfg.contains(k) && base_cfg.contains(k) && !base_cfg[k].is_null()) cfg[k] = base_cfg[k];
    } else if (lm.info().format == source_format::gguf) {
        gguf_reader g(base.string());
        for (auto [k, gk] : {std::pair{"bos_token_id", "tokenizer.ggml.bos_token_id"}, {"eos_token_id", "tokenizer.ggml.eos_token_id"},
                             {"pad_token_id", "tokenizer.ggml.padding_token_id"}})
            if (!cfg.contains(k) && g.has(gk)) cfg[k] = g.get_u32(gk);
    }
    if (!c.rope_freq_factors.empty()) {
        if (base_cfg.is_object() && base_cfg.contains("rope_scaling") && !base_cfg["rope_scaling"].is_null())
            cfg["rope_scaling"] = base_cfg["rope_scaling"];
        else if (base_cfg.is_object() && base_cfg.contains("rope_parameters"))
            cfg["rope_parameters"] = base_cfg["rope_parameters"];
        else
            cfg["rope_scaling"] = hf_rope_scaling(c);
    }
    write_text(out.tmp / "config.json", cfg.dump(2) + "\n");
    // tokenizer files: an HF base's travel along; a GGUF base's vocabulary is rebuilt as tokenizer.json
    if (fs::is_directory(base)) {
        for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                              "vocab.json", "merges.txt", "tokenizer.model"})
            if (fs::exists(base / f)) fs::copy_file(base / f, out.tmp / f);
    } else if (lm.info().format == source_format::gguf) {
        gguf_reader g(base.string());
        if (g.has("tokenizer.ggml.model"))
            write_hf_tokenizer(g, out.tmp.string(), c.context_length);
        else
            log_warn("{} has no vocabulary: the merged directory has no tokenizer files", base.string());
    }
    out.commit();
}

torch::Tensor permute_interleaved_rope(const torch::Tensor& w, int64_t n_heads) {
    // rotate-half halves (x0,x2,..),(x1,x3,..) of each head -> interleaved pairs (x0,x1),(x2,x3),..
    auto sizes = w.sizes().vec();
    const int64_t rows = sizes[0];
    SLM_ASSERT(rows % (2 * n_heads) == 0, "rows {} for {} heads", rows, n_heads);
    std::vector<int64_t> v = {n_heads, 2, rows / n_heads / 2};
    v.insert(v.end(), sizes.begin() + 1, sizes.end());
    return w.reshape(v).transpose(1, 2).reshape(sizes).contiguous();
}

}  // namespace slm::model
