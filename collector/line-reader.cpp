// Input discovery and streaming line reading for collect: plain files, gzip (zlib inflate, multi-
// member), stdin; one reusable buffer that grows only for a long line, up to the line cap.
#include "collector/line-reader.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/common.h"

namespace slm::collector {

namespace fs = std::filesystem;

bool stop_requested();  // collect.cpp: SIGINT/SIGTERM seen

// Files a directory walk picks up: *.jsonl, *.ndjson, *.json, *.log, and any of them gzipped (*.gz).
static bool log_name(const std::string& name) {
    auto ends = [&](const char* suf) {
        size_t n = std::strlen(suf);
        return name.size() > n && name.compare(name.size() - n, n, suf) == 0;
    };
    return ends(".jsonl") || ends(".ndjson") || ends(".json") || ends(".log") || ends(".gz");
}

std::vector<input_file> expand_inputs(const std::vector<std::string>& paths) {
    std::vector<input_file> out;
    for (const auto& p : paths) {
        if (p == "-") {
            out.push_back({"-", "<stdin>", 0});
            continue;
        }
        std::error_code ec;
        auto st = fs::status(p, ec);
        if (ec || !fs::exists(st))
            throw user_error(fmt::format("input '{}' does not exist", p), "pass log files, directories, .gz files or - for stdin");
        if (fs::is_directory(st)) {
            std::vector<input_file> found;
            auto it = fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
            if (ec) throw user_error(fmt::format("cannot read directory '{}': {}", p, ec.message()));
            for (auto end = fs::recursive_directory_iterator(); it != end; it.increment(ec)) {
                if (ec) throw user_error(fmt::format("cannot read directory '{}': {}", p, ec.message()));
                const auto name = it->path().filename().string();
                if (!name.empty() && name[0] == '.') {  // hidden files and directories
                    if (it->is_directory()) it.disable_recursion_pending();
                    continue;
                }
                if (!it->is_regular_file() || !log_name(name)) continue;
                std::error_code sec;
                uint64_t size = fs::file_size(it->path(), sec);
                found.push_back({it->path().string(), fs::absolute(it->path()).lexically_normal().string(), sec ? 0 : size});
            }
            std::sort(found.begin(), found.end(), [](const input_file& a, const input_file& b) { return a.path < b.path; });
            out.insert(out.end(), found.begin(), found.end());
            continue;
        }
        std::error_code sec;
        uint64_t size = fs::is_regular_file(st) ? fs::file_size(p, sec) : 0;
        out.push_back({p, fs::absolute(p).lexically_normal().string(), sec ? 0 : size});
    }
    return out;
}

// ---- line_reader --------------------------------------------------------------------------------

namespace {
constexpr size_t chunk = 1 << 20;  // read size and initial buffer
}

struct line_reader::gz_state {
    z_stream zs{};
    std::vector<unsigned char> in;
    bool input_eof = false;
    bool in_member = false;
    bool ended = false;
    ~gz_state() { inflateEnd(&zs); }
};

line_reader::line_reader(const input_file& in, size_t max_line) : path_(in.path), max_line_(std::max<size_t>(max_line, 16)) {
    if (in.path == "-") {
        fd_ = STDIN_FILENO;
    } else {
        fd_ = ::open(in.path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) throw user_error(fmt::format("cannot open '{}': {}", in.path, std::strerror(errno)), "check permissions");
        own_fd_ = true;
        ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
    }
    struct stat st{};
    regular_ = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
    buf_.resize(chunk);
    // sniff the gzip magic from the first bytes
    size_t got = 0;
    while (got < 2) {
        size_t n = read_raw(buf_.data() + got, buf_.size() - got);
        if (n == 0) break;
        got += n;
    }
    if (got >= 2 && static_cast<unsigned char>(buf_[0]) == 0x1f && static_cast<unsigned char>(buf_[1]) == 0x8b) {
        gz_ = std::make_unique<gz_state>();
        gz_->in.assign(buf_.begin(), buf_.begin() + static_cast<long>(got));
        gz_->in.resize(std::max<size_t>(chunk, got));
        if (inflateInit2(&gz_->zs, 15 + 32) != Z_OK) throw user_error(fmt::format("zlib init failed for '{}'", in.path));
        gz_->zs.next_in = gz_->in.data();
        gz_->zs.avail_in = static_cast<uInt>(got);
        gz_->in_member = true;
        end_ = 0;
    } else {
        end_ = got;
        if (got == 0) eof_ = true;
    }
}

line_reader::~line_reader() {
    if (own_fd_ && fd_ >= 0) ::close(fd_);
}

uint64_t line_reader::consumed() const { return raw_read_; }

size_t line_reader::read_raw(char* dst, size_t cap) {
    for (;;) {
        if (!regular_) {  // a pipe may block for long: wake up regularly to honour a stop request
            struct pollfd pf{fd_, POLLIN, 0};
            int pr = ::poll(&pf, 1, 250);
            if (stop_requested()) return 0;
            if (pr == 0 || (pr < 0 && errno == EINTR)) continue;
        }
        ssize_t n = ::read(fd_, dst, cap);
        if (n >= 0) {
            raw_read_ += static_cast<uint64_t>(n);
            return static_cast<size_t>(n);
        }
        if (errno == EINTR) {
            if (stop_requested()) return 0;
            continue;
        }
        throw user_error(fmt::format("cannot read '{}': {}", path_, std::strerror(errno)));
    }
}

size_t line_reader::fill(char* dst, size_t cap) {
    if (!gz_) return read_raw(dst, cap);
    auto& g = *gz_;
    if (g.ended) return 0;
    g.zs.next_out = reinterpret_cast<Bytef*>(dst);
    g.zs.avail_out = static_cast<uInt>(std::min<size_t>(cap, 1u << 30));
    const uInt want = g.zs.avail_out;
    while (g.zs.avail_out == want) {
        if (g.zs.avail_in == 0 && !g.input_eof) {
            size_t n = read_raw(reinterpret_cast<char*>(g.in.data()), g.in.size());
            if (n == 0) g.input_eof = true;
            g.zs.next_in = g.in.data();
            g.zs.avail_in = static_cast<uInt>(n);
        }
        if (g.zs.avail_in == 0 && g.input_eof) {
            if (g.in_member) log_warn("'{}' ends inside a gzip member (truncated file?); reading what was there", path_);
            g.ended = true;
            break;
        }
        if (!g.in_member) {  // another gzip member follows (concatenated .gz)
            inflateReset(&g.zs);
            g.in_member = true;
        }
        int rc = inflate(&g.zs, Z_NO_FLUSH);
        if (rc == Z_STREAM_END) {
            g.in_member = false;
            continue;
        }
        if (rc == Z_OK || (rc == Z_BUF_ERROR && g.zs.avail_in == 0)) continue;
        throw user_error(fmt::format("corrupt gzip data in '{}': {}", path_, g.zs.msg ? g.zs.msg : "inflate failed"),
                         "the calls read before this point are stored; fix or drop the file and re-run");
    }
    return want - g.zs.avail_out;
}

bool line_reader::next(std::string_view& line, bool& too_long) {
    too_long = false;
    size_t scan = beg_;
    for (;;) {
        const char* base = buf_.data();
        const void* nl = scan < end_ ? std::memchr(base + scan, '\n', end_ - scan) : nullptr;
        if (nl) {
            size_t e = static_cast<size_t>(static_cast<const char*>(nl) - base);
            line = std::string_view(base + beg_, std::min(e - beg_, max_line_));
            too_long = e - beg_ > max_line_;
            beg_ = e + 1;
            break;
        }
        scan = end_;
        if (end_ - beg_ > max_line_) {
            // overlong: hand out its head, then drop the rest up to the next newline
            long_line_.assign(buf_.data() + beg_, max_line_);
            beg_ = end_ = 0;
            for (;;) {
                size_t got = fill(buf_.data(), buf_.size());
                if (got == 0) {
                    eof_ = true;
                    break;
                }
                const void* n2 = std::memchr(buf_.data(), '\n', got);
                if (n2) {
                    beg_ = static_cast<size_t>(static_cast<const char*>(n2) - buf_.data()) + 1;
                    end_ = got;
                    break;
                }
            }
            line = long_line_;
            too_long = true;
            break;
        }
        if (eof_) {
            if (beg_ >= end_) return false;
            line = std::string_view(buf_.data() + beg_, end_ - beg_);
            beg_ = end_;
            break;
        }
        if (buf_.size() - end_ < chunk / 4) {  // little room left: slide the partial line down, or grow
            if (beg_ > 0) {
                std::memmove(buf_.data(), buf_.data() + beg_, end_ - beg_);
                end_ -= beg_;
                scan -= beg_;
                beg_ = 0;
            }
            if (buf_.size() - end_ < chunk / 4) buf_.resize(std::min(buf_.size() * 2, max_line_ + chunk + 1));
        }
        size_t got = fill(buf_.data() + end_, buf_.size() - end_);
        if (got == 0)
            eof_ = true;
        else
            end_ += got;
    }
    ++line_no_;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (first_) {
        first_ = false;
        if (line.size() >= 3 && std::memcmp(line.data(), "\xEF\xBB\xBF", 3) == 0) line.remove_prefix(3);
    }
    return true;
}

bool line_reader::read_rest(std::string& out, size_t limit) {
    out.append(buf_.data() + beg_, end_ - beg_);
    beg_ = end_ = 0;
    if (out.size() > limit) return false;
    while (!eof_) {
        size_t got = fill(buf_.data(), buf_.size());
        if (got == 0) {
            eof_ = true;
            break;
        }
        out.append(buf_.data(), got);
        if (out.size() > limit) return false;
    }
    return true;
}

int line_reader::peek_content() {
    for (;;) {
        size_t i = beg_;
        if (first_ && end_ - beg_ >= 3 && std::memcmp(buf_.data() + beg_, "\xEF\xBB\xBF", 3) == 0) i += 3;
        for (; i < end_; ++i) {
            char ch = buf_[i];
            if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n') return static_cast<unsigned char>(ch);
        }
        if (eof_ || end_ == buf_.size()) return -1;
        size_t got = fill(buf_.data() + end_, buf_.size() - end_);
        if (got == 0)
            eof_ = true;
        else
            end_ += got;
    }
}

size_t line_reader::read_some(std::string& out, size_t max) {
    for (;;) {
        if (beg_ >= end_) {
            if (eof_) return 0;
            beg_ = 0;
            end_ = fill(buf_.data(), buf_.size());
            if (end_ == 0) {
                eof_ = true;
                return 0;
            }
        }
        if (first_) {
            first_ = false;
            if (end_ - beg_ >= 3 && std::memcmp(buf_.data() + beg_, "\xEF\xBB\xBF", 3) == 0) beg_ += 3;
            continue;
        }
        size_t n = std::min(max, end_ - beg_);
        out.append(buf_.data() + beg_, n);
        beg_ += n;
        return n;
    }
}

}  // namespace slm::collector
