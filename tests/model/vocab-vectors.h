// llama.cpp's tokenizer golden vectors (../shared/data/tokenizers/llama.cpp-vocab/*.inp/.out),
// read for the tokenizer tests here and the `slmctl model tokenize` tests in tests/cli/.
#pragma once
#include <doctest/doctest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "../test-util.h"

namespace slm::test {

inline const std::string k_vocab_dir = "tokenizers/llama.cpp-vocab/";

struct vector_case {
    std::string text;
    std::vector<int32_t> ids;
};

// .inp: strings joined by "\n__ggml_vocab_test__\n" (with a trailing separator);
// .out: one line of space-prefixed ids per string.
inline std::vector<vector_case> load_vectors(const std::string& vocab) {
    const std::string inp = read_file(shared_data(k_vocab_dir + vocab + ".inp"));
    const std::string out = read_file(shared_data(k_vocab_dir + vocab + ".out"));
    REQUIRE_MESSAGE(!inp.empty(), "missing test vectors for " << vocab);
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<vector_case> cases;
    for (size_t pos = 0;;) {
        const size_t next = inp.find(sep, pos);
        if (next == std::string::npos) break;
        cases.push_back({inp.substr(pos, next - pos), {}});
        pos = next + sep.size();
    }
    std::istringstream lines(out);
    std::string line;
    for (auto& c : cases) {
        REQUIRE(std::getline(lines, line));
        std::istringstream ids(line);
        int32_t id;
        while (ids >> id) c.ids.push_back(id);
    }
    return cases;
}

}  // namespace slm::test
