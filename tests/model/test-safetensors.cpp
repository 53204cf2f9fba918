// safetensors reader tests: writer round trip, sharded directories, every header check, and a
// mutation fuzz loop (any input must load or raise slm::user_error, never crash).
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "common/common.h"
#include "model/format/safetensors.h"
#include "tests/test-util.h"

using namespace slm::model;
namespace fs = std::filesystem;

namespace {

// A safetensors image from a header text and a data section, as raw bytes.
std::string image(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return out + header + data;
}

std::string parse_error(const std::string& bytes) {
    try {
        safetensors_file f(bytes.data(), bytes.size(), "mem.safetensors");
    } catch (const slm::user_error& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("safetensors: write then read back") {
    slm::test::temp_dir t;
    std::vector<float> a = {1, 2, 3, 4, 5, 6};
    std::vector<uint16_t> b = {0x3f80, 0x4000};  // bf16 1, 2
    write_safetensors(t / "x.safetensors",
                      {{"a", "F32", {2, 3}, a.data(), a.size() * 4}, {"b.bias", "BF16", {2}, b.data(), b.size() * 2}},
                      {{"format", "pt"}});
    safetensors_file f(t / "x.safetensors");
    REQUIRE(f.tensors().size() == 2);
    const auto* ta = f.find("a");
    REQUIRE(ta);
    CHECK(ta->shape == std::vector<int64_t>{2, 3});
    CHECK(ta->n_elements == 6);
    CHECK(std::memcmp(ta->data, a.data(), 24) == 0);
    const auto* tb = f.find("b.bias");
    REQUIRE(tb);
    CHECK(tb->dtype == "BF16");
    CHECK(std::memcmp(tb->data, b.data(), 4) == 0);
    CHECK(f.metadata().at("format") == "pt");
    CHECK(f.find("c") == nullptr);
}

TEST_CASE("safetensors: sharded directory through the index file") {
    safetensors_set s(slm::test::source_dir("tests/data/ref/tiny-llama"));
    CHECK(s.describe().find("model-00001-of-00003.safetensors") != std::string::npos);
    CHECK(s.find("model.embed_tokens.weight") != nullptr);
    CHECK(s.find("lm_head.weight") != nullptr);
    CHECK(s.find("model.layers.1.mlp.down_proj.weight") != nullptr);
    CHECK(s.tensors().size() == 21);

    slm::test::temp_dir t;
    fs::create_directories(t.path / "m");
    std::ofstream(t.path / "m" / "model.safetensors.index.json") << R"({"weight_map": {"x": "model-1.safetensors"}})";
    try {
        safetensors_set bad((t.path / "m").string());
        FAIL("missing shard accepted");
    } catch (const slm::user_error& e) {
        CHECK(std::string(e.what()).find("model-1.safetensors") != std::string::npos);
    }
    std::ofstream(t.path / "m" / "model.safetensors.index.json") << R"({"weight_map": {"x": "../../etc/passwd"}})";
    CHECK_THROWS_AS(safetensors_set((t.path / "m").string()), slm::user_error);
    fs::remove(t.path / "m" / "model.safetensors.index.json");
    CHECK_THROWS_AS(safetensors_set((t.path / "m").string()), slm::user_error);
}

TEST_CASE("safetensors: every header check names the file and the tensor") {
    const std::string data(16, '\0');
    CHECK(parse_error(image(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", data)).empty());

    CHECK(parse_error("abc").find("less than the 8-byte header length") != std::string::npos);
    std::string big = image("{}", "");
    const uint64_t huge = 1ull << 40;
    std::memcpy(big.data(), &huge, 8);
    CHECK(parse_error(big).find("exceeds") != std::string::npos);
    std::string past = image("{}", "");
    const uint64_t n = 100;
    std::memcpy(past.data(), &n, 8);
    CHECK(parse_error(past).find("runs past the end") != std::string::npos);
    CHECK(parse_error(image("{not json", data)).find("not valid JSON") != std::string::npos);
    CHECK(parse_error(image("[1,2]", data)).find("not a JSON object") != std::string::npos);

    auto err = [&](const std::string& entry) { return parse_error(image(R"({"w":)" + entry + "}", data)); };
    CHECK(err(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,32]})").find("run past the data section") != std::string::npos);
    CHECK(err(R"({"dtype":"F32","shape":[2,2],"data_offsets":[8,4]})").find("reversed") != std::string::npos);
    CHECK(err(R"({"dtype":"F32","shape":[3,2],"data_offsets":[0,16]})").find("expected 24") != std::string::npos);
    CHECK(err(R"({"dtype":"Q4","shape":[2,2],"data_offsets":[0,16]})").find("unknown dtype 'Q4'") != std::string::npos);
    CHECK(err(R"({"dtype":"F32","shape":[-2,2],"data_offsets":[0,16]})").find("negative") != std::string::npos);
    CHECK(err(R"({"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]})") != "");
    CHECK(err(R"({"shape":[2,2],"data_offsets":[0,16]})").find("dtype") != std::string::npos);
    CHECK(err(R"({"dtype":"F32","data_offsets":[0,16]})").find("shape") != std::string::npos);
    CHECK(err(R"({"dtype":"F32","shape":[2,2]})").find("data_offsets") != std::string::npos);
    CHECK(err(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0]})").find("data_offsets") != std::string::npos);
    CHECK(err("7").find("tensor 'w'") != std::string::npos);
    CHECK(err("7").find("mem.safetensors") != std::string::npos);
}

TEST_CASE("safetensors: mutation fuzzing never crashes") {
    const std::string data(64, '\x01');
    const std::string good = image(
        R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]},)"
        R"("b":{"dtype":"BF16","shape":[16],"data_offsets":[32,64]}})",
        data);
    std::mt19937 rng(1234);
    int ok = 0, rejected = 0;
    for (int i = 0; i < 4000; ++i) {
        std::string s = good;
        const int kind = i % 4;
        if (kind == 0) {  // flip bytes anywhere in the header
            for (int k = 0; k < 3; ++k) s[8 + rng() % (s.size() - 8 - 64)] = static_cast<char>(rng());
        } else if (kind == 1) {  // truncate
            s.resize(rng() % s.size());
        } else if (kind == 2) {  // digits only: plausible JSON, wild numbers
            for (int k = 0; k < 2; ++k) {
                const size_t at = 8 + rng() % (s.size() - 8 - 64);
                if (std::isdigit(static_cast<unsigned char>(s[at]))) s[at] = static_cast<char>('0' + rng() % 10);
                if (s[at] == ',') s.insert(at, std::to_string(rng()));
            }
        } else {  // corrupt the length prefix
            const uint64_t n = rng() % (s.size() + 16);
            std::memcpy(s.data(), &n, 8);
        }
        try {
            safetensors_file f(s.data(), s.size(), "fuzz");
            for (const auto& t : f.tensors()) {  // whatever loads lies inside the buffer
                CHECK(t.data >= reinterpret_cast<const uint8_t*>(s.data()));
                CHECK(t.data + t.n_bytes <= reinterpret_cast<const uint8_t*>(s.data()) + s.size());
                CHECK(t.n_bytes == static_cast<uint64_t>(t.n_elements * t.elem_size));
            }
            ++ok;
        } catch (const slm::user_error&) {
            ++rejected;
        }
    }
    MESSAGE("fuzz: " << ok << " loaded, " << rejected << " rejected");
    CHECK(rejected > 1000);
}
