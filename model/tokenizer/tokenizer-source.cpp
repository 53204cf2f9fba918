// Finding a tokenizer at a path and loading only it (and its chat template): tokenizer.json files,
// directories that hold one, GGUF files (their metadata; tensor data is never touched).
#include <filesystem>
#include <system_error>

#include "common/common.h"
#include "model/chat-template.h"
#include "model/format/gguf-reader.h"
#include "model/tokenizer.h"

namespace slm::model {

namespace fs = std::filesystem;

bool is_tokenizer_path(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) return true;
    if (!fs::is_regular_file(path, ec)) return false;
    return fs::path(path).extension() == ".json" || is_gguf_file(path);
}

tokenizer_source load_tokenizer(const std::string& path) {
    std::error_code ec;
    const auto with_chat = [](tokenizer tok, std::string file) {
        std::shared_ptr<const chat_template> chat;
        if (!tok.chat_template().empty())
            chat = std::make_shared<const chat_template>(chat_template::from_jinja(tok.chat_template()));
        return tokenizer_source{std::move(tok), std::move(chat), std::move(file)};
    };
    if (fs::is_directory(path, ec)) {
        const auto tj = (fs::path(path) / "tokenizer.json").string();
        if (!fs::exists(tj, ec))
            throw user_error(fmt::format("{}: no tokenizer.json in this directory", path),
                             "give an HF model directory (or its tokenizer files) or a GGUF file");
        return with_chat(tokenizer::from_hf_json(tj), tj);
    }
    if (!fs::exists(path, ec))
        throw user_error(fmt::format("{}: no such file or directory", path),
                         fmt::format("give a tokenizer.json, a directory holding one, or a GGUF file; fetched models "
                                     "live in {}", models_dir()));
    if (is_gguf_file(path)) {
        gguf_reader g(path);
        if (!g.has("tokenizer.ggml.model"))
            throw user_error(fmt::format("{}: no tokenizer in its metadata (tokenizer.ggml.model)", path),
                             "use a GGUF file converted with its vocabulary (llama.cpp's convert scripts keep it)");
        return with_chat(tokenizer::from_gguf(g), path);
    }
    if (fs::path(path).extension() == ".json") return with_chat(tokenizer::from_hf_json(path), path);
    throw user_error(fmt::format("{}: not a tokenizer.json, a directory holding one, or a GGUF file", path),
                     "a llama2.c checkpoint's vocabulary is read with the whole model (slmctl model generate)");
}

}  // namespace slm::model
