// llama2.c checkpoint and tokenizer.bin reading. Weight order (run.c's memory_map_weights):
// token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, freq_cis (skipped), wcls.
#include "model/format/llama2c.h"

#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "common/common.h"
#include "model/llama.h"

namespace slm::model {

namespace {

bool plausible(const llama2c_header& h) {
    return h.dim > 0 && h.dim < (1 << 16) && h.hidden_dim > 0 && h.hidden_dim < (1 << 18) && h.n_layers > 0 &&
           h.n_layers < 1024 && h.n_heads > 0 && h.dim % h.n_heads == 0 && h.n_kv_heads > 0 &&
           h.n_heads % h.n_kv_heads == 0 && h.vocab_size > 0 && h.vocab_size < (1 << 22) && h.seq_len > 0 &&
           h.seq_len < (1 << 20) && (h.dim / h.n_heads) % 2 == 0;
}

// Floats the checkpoint must hold after the header.
uint64_t expected_floats(const llama2c_header& h) {
    const uint64_t C = h.dim, F = h.hidden_dim, L = h.n_layers, V = h.vocab_size, hs = h.dim / h.n_heads;
    const uint64_t kv = hs * h.n_kv_heads;
    uint64_t n = V * C + L * C + L * C * C + 2 * L * C * kv + L * C * C + L * C + 3 * L * F * C + C;
    n += uint64_t(h.seq_len) * hs;  // freq_cis_real + freq_cis_imag, (seq_len, hs/2) each
    if (!h.shared_classifier) n += V * C;
    return n;
}

bool read_header(std::ifstream& f, llama2c_header& h) {
    int32_t v[7];
    if (!f.read(reinterpret_cast<char*>(v), sizeof v)) return false;
    h.dim = v[0], h.hidden_dim = v[1], h.n_layers = v[2], h.n_heads = v[3], h.n_kv_heads = v[4];
    h.shared_classifier = v[5] > 0;
    h.vocab_size = v[5] < 0 ? -v[5] : v[5];
    h.seq_len = v[6];
    return true;
}

}  // namespace

bool is_llama2c_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    llama2c_header h;
    if (!f || !read_header(f, h) || !plausible(h)) return false;
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    return !ec && size == 28 + 4 * expected_floats(h);
}

std::unique_ptr<llama_model> load_llama2c(const std::string& path, llama2c_header* header_out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw user_error(fmt::format("cannot open {}", path), "check the path");
    llama2c_header h;
    if (!read_header(f, h) || !plausible(h))
        throw user_error(fmt::format("{}: not a llama2.c checkpoint (implausible header)", path),
                         "expected karpathy/llama2.c's run.c format: 7 int32 then fp32 weights");
    const uint64_t want = 28 + 4 * expected_floats(h);
    const auto size = std::filesystem::file_size(path);
    if (size != want)
        throw user_error(fmt::format("{}: llama2.c checkpoint of {} bytes, the header implies {}", path, size, want),
                         "the file is truncated or was written by another llama2.c version (version 0 expected)");
    if (header_out) *header_out = h;

    auto mp = std::make_unique<llama_model>();
    auto& m = *mp;
    auto& c = m.config;
    c.arch = "llama";
    c.dim = h.dim, c.ffn_dim = h.hidden_dim, c.n_layers = h.n_layers, c.n_heads = h.n_heads;
    c.n_kv_heads = h.n_kv_heads, c.vocab_size = h.vocab_size, c.context_length = h.seq_len;
    c.head_dim = h.dim / h.n_heads;
    c.rms_eps = 1e-5f, c.rope_theta = 10000.f;
    c.tied_embeddings = h.shared_classifier;
    c.validate(path);
    const int64_t C = c.dim, F = c.ffn_dim, L = c.n_layers, V = c.vocab_size, D = c.head_dim;
    const int64_t KD = D * c.n_kv_heads;

    auto read = [&](std::vector<int64_t> shape) {
        auto t = torch::empty(shape, torch::kFloat32);
        f.read(reinterpret_cast<char*>(t.data_ptr<float>()), static_cast<std::streamsize>(t.numel() * 4));
        if (!f) throw user_error(fmt::format("{}: truncated while reading weights", path));
        return t;
    };
    m.tok_embd = read({V, C});
    auto rms_att = read({L, C});
    auto wq = read({L, C, C});
    auto wk = read({L, KD, C});
    auto wv = read({L, KD, C});
    auto wo = read({L, C, C});
    auto rms_ffn = read({L, C});
    auto w1 = read({L, F, C});
    auto w2 = read({L, C, F});
    auto w3 = read({L, F, C});
    m.out_norm = read({C});
    read({int64_t(h.seq_len), D});  // freq_cis_real and _imag: we compute RoPE ourselves
    m.output = h.shared_classifier ? m.tok_embd : read({V, C});
    m.layers.resize(L);
    for (int64_t l = 0; l < L; ++l) {
        auto& Y = m.layers[l];
        Y.attn_norm = rms_att[l].clone();
        Y.ffn_norm = rms_ffn[l].clone();
        Y.wq.weight = unpermute_interleaved_rope(wq[l], c.n_heads);
        Y.wk.weight = unpermute_interleaved_rope(wk[l], c.n_kv_heads);
        Y.wv.weight = wv[l].clone();
        Y.wo.weight = wo[l].clone();
        Y.w_gate.weight = w1[l].clone();
        Y.w_down.weight = w2[l].clone();
        Y.w_up.weight = w3[l].clone();
    }
    m.finalize();
    return mp;
}

llama2c_vocab llama2c_vocab::load(const std::string& path, int64_t n_vocab) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw user_error(fmt::format("cannot open llama2.c tokenizer {}", path), "check the path");
    int32_t max_len = 0;
    f.read(reinterpret_cast<char*>(&max_len), 4);
    if (!f || max_len <= 0 || max_len > 4096)
        throw user_error(fmt::format("{}: not a llama2.c tokenizer.bin (max token length {})", path, max_len));
    llama2c_vocab v;
    for (int64_t i = 0; i < n_vocab; ++i) {
        float score = 0;
        int32_t len = 0;
        f.read(reinterpret_cast<char*>(&score), 4);
        f.read(reinterpret_cast<char*>(&len), 4);
        if (!f || len < 0 || len > max_len)
            throw user_error(fmt::format("{}: corrupt entry {} of {} (length {})", path, i, n_vocab, len),
                             "the tokenizer does not match the model's vocabulary size");
        std::string s(static_cast<size_t>(len), '\0');
        f.read(s.data(), len);
        if (!f) throw user_error(fmt::format("{}: truncated at token {} of {}", path, i, n_vocab));
        v.pieces.push_back(std::move(s));
        v.scores.push_back(score);
    }
    return v;
}

std::vector<int32_t> llama2c_vocab::encode(const std::string& text, bool bos) const {
    std::unordered_map<std::string, int32_t> ids;
    for (size_t i = 0; i < pieces.size(); ++i) ids.emplace(pieces[i], static_cast<int32_t>(i));
    auto find = [&](const std::string& s) {
        auto it = ids.find(s);
        return it == ids.end() ? -1 : it->second;
    };
    std::vector<int32_t> out;
    if (bos) out.push_back(1);
    if (text.empty()) return out;
    std::vector<int32_t> t;
    if (int32_t sp = find(" "); sp >= 0) t.push_back(sp);
    for (size_t i = 0; i < text.size();) {
        size_t n = 1;  // bytes of this UTF-8 character (continuation bytes are 10xxxxxx)
        while (i + n < text.size() && n < 4 && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80) ++n;
        const int32_t id = find(text.substr(i, n));
        if (id >= 0) {
            t.push_back(id);
        } else {
            for (size_t k = 0; k < n; ++k) t.push_back(static_cast<unsigned char>(text[i + k]) + 3);
        }
        i += n;
    }
    for (;;) {
        float best = -1e10f;
        int32_t best_id = -1;
        size_t best_at = 0;
        for (size_t i = 0; i + 1 < t.size(); ++i) {
            const int32_t id = find(pieces[t[i]] + pieces[t[i + 1]]);
            if (id >= 0 && scores[id] > best) best = scores[id], best_id = id, best_at = i;
        }
        if (best_id < 0) break;
        t[best_at] = best_id;
        t.erase(t.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
    }
    out.insert(out.end(), t.begin(), t.end());
    return out;
}

std::string llama2c_vocab::decode(const std::vector<int32_t>& ids) const {
    std::string out;
    int32_t prev = -1;
    for (int32_t id : ids) {
        if (id < 0 || id >= static_cast<int32_t>(pieces.size())) continue;
        if (id == 1 || id == 2) {  // BOS/EOS are control tokens: not text
            prev = id;
            continue;
        }
        const char* p = pieces[id].c_str();
        if (prev == 1 && p[0] == ' ') ++p;  // run.c: BOS strips the leading space
        unsigned byte = 0;
        if (std::sscanf(p, "<0x%02X>", &byte) == 1 && pieces[id].size() == 6)
            out.push_back(static_cast<char>(byte));
        else
            out += p;
        prev = id;
    }
    return out;
}

}  // namespace slm::model
