// Helpers shared by the doctest binaries: temp dirs, running the built slmctl, reading files.
// Header-only so each test binary stays self-contained.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace slm::test {

/// A fresh directory under $TMPDIR removed on scope exit.
struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string tmpl = (std::filesystem::temp_directory_path() / "slmctl-test-XXXXXX").string();
        char* p = mkdtemp(tmpl.data());
        if (!p) throw std::runtime_error("mkdtemp failed");
        path = p;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

inline std::string read_file(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

struct run_result {
    int exit_code = -1;
    std::string out;  ///< stdout
    std::string err;  ///< stderr
};

inline std::string slmctl_binary() {
    if (const char* e = std::getenv("SLMCTL_BINARY"); e && *e) return e;
#ifdef SLMCTL_BINARY
    return SLMCTL_BINARY;
#else
    return "slmctl";
#endif
}

/// Runs `slmctl ARGS` through the shell (args are shell-quoted by the caller), captures both streams.
inline run_result run_slmctl(const std::string& args, const std::string& stdin_file = "") {
    temp_dir t;
    std::string out = t / "out", err = t / "err";
    std::string cmd = "'" + slmctl_binary() + "' " + args + " >'" + out + "' 2>'" + err + "'";
    cmd += stdin_file.empty() ? " </dev/null" : " <'" + stdin_file + "'";
    int st = std::system(cmd.c_str());
    run_result r;
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = read_file(out);
    r.err = read_file(err);
    return r;
}

inline std::string shared_data(const std::string& rel) { return std::string(SLMCTL_SHARED_DATA) + "/" + rel; }
inline std::string source_dir(const std::string& rel) { return std::string(SLMCTL_SOURCE_DIR) + "/" + rel; }

}  // namespace slm::test
