// safetensors parsing: 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and [begin, end) byte range in the data section, then the data. Untrusted input.
#include "model/format/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "common/common.h"

namespace slm::model {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t k_max_header = 100ull << 20;  // the reference implementation's limit
const char* k_corrupt_hint = "the file is truncated or not a safetensors file; download or export it again";

}  // namespace

int64_t st_dtype_size(std::string_view d) {
    if (d == "F64" || d == "I64" || d == "U64") return 8;
    if (d == "F32" || d == "I32" || d == "U32") return 4;
    if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
    if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
    return 0;
}

safetensors_file::safetensors_file(const std::string& path)
    : path_(path), file_(path, "check the path; an HF model directory holds config.json and *.safetensors") {
    base_ = file_.data();
    size_ = file_.size();
    parse();  // on a throw, file_ unmaps itself
}

safetensors_file::safetensors_file(const void* data, size_t size, std::string name)
    : path_(std::move(name)), base_(static_cast<const uint8_t*>(data)), size_(size) {
    parse();
}

safetensors_file::~safetensors_file() = default;

const st_tensor* safetensors_file::find(std::string_view name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

void safetensors_file::parse() {
    auto fail = [&](const std::string& what) -> void {
        throw user_error(fmt::format("{}: corrupt safetensors: {}", path_, what), k_corrupt_hint);
    };
    if (size_ < 8) fail(fmt::format("file has {} bytes, less than the 8-byte header length", size_));
    uint64_t hlen = 0;
    std::memcpy(&hlen, base_, 8);
    if (hlen > k_max_header) fail(fmt::format("header length {} exceeds the {} byte limit", hlen, k_max_header));
    if (hlen > size_ - 8) fail(fmt::format("header length {} runs past the end of the file ({} bytes)", hlen, size_));
    const uint64_t data_start = 8 + hlen;
    const uint64_t data_size = size_ - data_start;

    auto j = nlohmann::json::parse(base_ + 8, base_ + 8 + hlen, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail("header is not valid JSON");
    if (!j.is_object()) fail("header is not a JSON object");

    for (auto it = j.begin(); it != j.end(); ++it) {
        const std::string& name = it.key();
        const auto& v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object()) fail("__metadata__ is not an object");
            for (auto m = v.begin(); m != v.end(); ++m)
                if (m.value().is_string()) metadata_[m.key()] = m.value().get<std::string>();
            continue;
        }
        auto bad = [&](const std::string& what) { fail(fmt::format("tensor '{}': {}", name, what)); };
        if (!v.is_object()) bad("entry is not an object");
        st_tensor t;
        t.name = name;
        t.file = path_;
        auto dt = v.find("dtype");
        if (dt == v.end() || !dt->is_string()) bad("missing or non-string dtype");
        t.dtype = dt->get<std::string>();
        t.elem_size = st_dtype_size(t.dtype);
        if (t.elem_size == 0) bad(fmt::format("unknown dtype '{}'", t.dtype));
        auto sh = v.find("shape");
        if (sh == v.end() || !sh->is_array()) bad("missing or non-array shape");
        if (sh->size() > 8) bad(fmt::format("{} dimensions (at most 8 supported)", sh->size()));
        uint64_t n = 1;
        for (const auto& d : *sh) {
            if (!d.is_number_unsigned()) bad("shape has a negative or non-integer dimension");
            const uint64_t x = d.get<uint64_t>();
            if (x > (1ull << 40)) bad(fmt::format("dimension {} is implausibly large", x));
            if (x != 0 && n > std::numeric_limits<uint64_t>::max() / x / 8) bad("shape overflows");
            n *= x;
            t.shape.push_back(static_cast<int64_t>(x));
        }
        t.n_elements = static_cast<int64_t>(n);
        auto off = v.find("data_offsets");
        if (off == v.end() || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
            !(*off)[1].is_number_unsigned())
            bad("data_offsets is not a pair of non-negative integers");
        const uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
        if (b > e) bad(fmt::format("data_offsets [{}, {}) are reversed", b, e));
        if (e > data_size)
            bad(fmt::format("data_offsets [{}, {}) run past the data section ({} bytes)", b, e, data_size));
        t.n_bytes = e - b;
        if (t.n_bytes != n * static_cast<uint64_t>(t.elem_size))
            bad(fmt::format("{} bytes for shape [{}] of {} (expected {})", t.n_bytes, fmt::join(t.shape, ", "),
                            t.dtype, n * t.elem_size));
        t.data = base_ + data_start + b;
        index_[name] = tensors_.size();
        tensors_.push_back(std::move(t));
    }
}

// ---- sharded directories ---------------------------------------------------------------------

safetensors_set::safetensors_set(const std::string& dir) : dir_(dir) {
    const fs::path single = fs::path(dir) / "model.safetensors";
    const fs::path index = fs::path(dir) / "model.safetensors.index.json";
    if (fs::exists(single)) {
        files_.push_back(std::make_unique<safetensors_file>(single.string()));
        return;
    }
    if (!fs::exists(index))
        throw user_error(fmt::format("{}: no model.safetensors nor model.safetensors.index.json", dir),
                         "an HF model directory needs its weights in safetensors format (convert .bin "
                         "checkpoints with transformers' save_pretrained(safe_serialization=True))");
    std::ifstream f(index);
    auto j = nlohmann::json::parse(f, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
        throw user_error(fmt::format("{}: not a valid index (no weight_map object)", index.string()), k_corrupt_hint);
    std::vector<std::string> shards;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
        if (!it.value().is_string())
            throw user_error(fmt::format("{}: weight_map entry '{}' is not a file name", index.string(), it.key()));
        shards.push_back(it.value().get<std::string>());
    }
    std::sort(shards.begin(), shards.end());
    shards.erase(std::unique(shards.begin(), shards.end()), shards.end());
    for (const auto& s : shards) {
        if (s.find('/') != std::string::npos || s.find("..") != std::string::npos)
            throw user_error(fmt::format("{}: shard name '{}' points outside the directory", index.string(), s));
        files_.push_back(std::make_unique<safetensors_file>((fs::path(dir) / s).string()));
    }
}

safetensors_set::~safetensors_set() = default;

const st_tensor* safetensors_set::find(std::string_view name) const {
    for (const auto& f : files_)
        if (const auto* t = f->find(name)) return t;
    return nullptr;
}

std::vector<const st_tensor*> safetensors_set::tensors() const {
    std::vector<const st_tensor*> out;
    for (const auto& f : files_)
        for (const auto& t : f->tensors()) out.push_back(&t);
    return out;
}

std::string safetensors_set::describe() const {
    std::vector<std::string> names;
    for (const auto& f : files_) names.push_back(fs::path(f->path()).filename().string());
    return fmt::format("{}", fmt::join(names, ", "));
}

// ---- writer ------------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::vector<st_write_entry>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    nlohmann::ordered_json h = nlohmann::ordered_json::object();
    if (!metadata.empty()) h["__metadata__"] = metadata;
    uint64_t at = 0;
    for (const auto& t : tensors) {
        int64_t n = 1;
        for (auto d : t.shape) n *= d;
        SLM_ASSERT(static_cast<uint64_t>(n * st_dtype_size(t.dtype)) == t.n_bytes, "tensor {}: {} bytes for its shape",
                   t.name, t.n_bytes);
        h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + t.n_bytes}}};
        at += t.n_bytes;
    }
    std::string hs = h.dump();
    while ((hs.size() + 8) % 8 != 0) hs.push_back(' ');
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) throw user_error(fmt::format("cannot write {}: {}", path, std::strerror(errno)));
    const uint64_t hlen = hs.size();
    f.write(reinterpret_cast<const char*>(&hlen), 8);
    f.write(hs.data(), static_cast<std::streamsize>(hs.size()));
    for (const auto& t : tensors) f.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(t.n_bytes));
    if (!f) throw user_error(fmt::format("cannot write {}: disk full?", path));
}

}  // namespace slm::model
