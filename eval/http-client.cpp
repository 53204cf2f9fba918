// A small HTTP/1.1 client over POSIX sockets for `eval --judge` (http:// only): one POST per
// connection, deadlines on connect / send / receive, Content-Length, chunked and read-to-close bodies.
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "common/common.h"
#include "common/text.h"
#include "eval/metrics.h"

namespace slm::eval {

namespace {

using clock_type = std::chrono::steady_clock;

constexpr size_t k_max_header_bytes = 64 << 10;

// What a reply looked like, for an error message: its first bytes with control characters escaped.
std::string preview(std::string_view s, size_t n = 80) {
    std::string out;
    for (unsigned char c : s.substr(0, std::min(n, s.size()))) {
        if (c == '\r') out += "\\r";
        else if (c == '\n') out += "\\n";
        else if (c < 0x20 || c == 0x7f) out += fmt::format("\\x{:02x}", c);
        else out.push_back(static_cast<char>(c));
    }
    if (s.size() > n) out += "...";
    return out;
}

std::string lower(std::string_view s) {
    std::string o(s);
    for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return o;
}

// Closes the socket on every path.
struct fd_guard {
    int fd = -1;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

// Milliseconds left before `deadline` (0 when past).
int ms_left(clock_type::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

// Waits for `events` on `fd` until `deadline`; false on timeout.
bool wait_for(int fd, short events, clock_type::time_point deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        const int left = ms_left(deadline);
        if (left == 0) return false;
        const int r = ::poll(&p, 1, left);
        if (r > 0) return true;
        if (r == 0) return false;
        if (errno != EINTR) return false;
    }
}

// Connects to host:port (every address getaddrinfo gives, in order) before `deadline`.
int connect_to(const http_url& u, const std::string& url, clock_type::time_point deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    const std::string port = std::to_string(u.port);
    if (int rc = ::getaddrinfo(u.host.c_str(), port.c_str(), &hints, &res); rc != 0)
        throw user_error(fmt::format("{}: cannot resolve host '{}': {}", url, u.host, ::gai_strerror(rc)),
                         "check the --judge URL's host name");
    std::string last = "no address";
    int fd = -1;
    for (addrinfo* a = res; a; a = a->ai_next) {
        fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last = std::strerror(errno);
            continue;
        }
        const int flags = ::fcntl(fd, F_GETFL, 0);
        ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            if (!wait_for(fd, POLLOUT, deadline)) {
                last = "connection timed out";
                ::close(fd);
                fd = -1;
                continue;
            }
            int err = 0;
            socklen_t len = sizeof(err);
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
            rc = err == 0 ? 0 : -1;
            errno = err;
        }
        if (rc == 0) break;
        last = std::strerror(errno);
        ::close(fd);
        fd = -1;
    }
    ::freeaddrinfo(res);
    if (fd < 0)
        throw user_error(fmt::format("{}: cannot connect to {}:{}: {}", url, u.host, u.port, last),
                         "is the judge server running? e.g. python -m llama_cpp.server --model M.gguf --port 8080");
    return fd;
}

void send_all(int fd, std::string_view data, const std::string& url, clock_type::time_point deadline) {
    size_t off = 0;
    while (off < data.size()) {
        const ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!wait_for(fd, POLLOUT, deadline)) throw user_error(fmt::format("{}: timed out sending the request", url));
            continue;
        }
        throw user_error(fmt::format("{}: sending the request failed: {}", url, std::strerror(errno)));
    }
}

// Incremental response parser: feed bytes, ask whether the message is complete.
class response_reader {
public:
    response_reader(std::string url, size_t max_body) : url_(std::move(url)), max_body_(max_body) {}

    /// Appends received bytes; true once the whole response is in.
    bool feed(std::string_view data) {
        buf_.append(data);
        return advance();
    }
    /// The peer closed the connection: fine for a read-to-close body, an error otherwise.
    void at_close() {
        if (!headers_done_) {
            if (buf_.empty()) throw user_error(fmt::format("{}: the server closed the connection without an answer", url_));
            throw user_error(fmt::format("{}: the answer ended inside its headers: '{}'", url_, preview(buf_)));
        }
        if (mode_ == body_mode::to_close) {
            r_.body = std::move(buf_);
            return;
        }
        if (mode_ == body_mode::length)
            throw user_error(fmt::format("{}: the answer ended after {} of {} body bytes", url_, buf_.size(), length_));
        throw user_error(fmt::format("{}: the chunked answer ended before its last chunk", url_));
    }
    http_response take() { return std::move(r_); }

private:
    enum class body_mode { length, chunked, to_close };

    bool advance() {
        if (!headers_done_) {
            // garbage is told early: a reply must start like "HTTP/1."
            const size_t probe = std::min<size_t>(buf_.size(), 7);
            if (std::string_view(buf_).substr(0, probe) != std::string_view("HTTP/1.").substr(0, probe))
                throw user_error(fmt::format("{}: the answer is not HTTP: '{}'", url_, preview(buf_)),
                                 "is this an http:// server (not https, not another protocol)?");
            const size_t end = buf_.find("\r\n\r\n");
            if (end == std::string::npos) {
                if (buf_.size() > k_max_header_bytes)
                    throw user_error(fmt::format("{}: the answer's headers exceed {} bytes", url_, k_max_header_bytes));
                return false;
            }
            parse_head(std::string_view(buf_).substr(0, end));
            buf_.erase(0, end + 4);
            if (r_.status >= 100 && r_.status < 200) {  // 100 Continue and kin: the real answer follows
                r_ = {};
                return advance();
            }
            headers_done_ = true;
        }
        switch (mode_) {
        case body_mode::length:
            if (buf_.size() > max_body_) throw too_big();
            if (buf_.size() < length_) return false;
            buf_.resize(length_);
            r_.body = std::move(buf_);
            return true;
        case body_mode::to_close:
            if (buf_.size() > max_body_) throw too_big();
            return false;
        case body_mode::chunked: return advance_chunks();
        }
        return false;
    }

    user_error too_big() const { return user_error(fmt::format("{}: the answer's body exceeds {} bytes", url_, max_body_)); }

    void parse_head(std::string_view head) {
        size_t eol = head.find("\r\n");
        const std::string_view status_line = head.substr(0, eol);
        // HTTP/1.x SSS [reason]
        if (status_line.size() < 12 || status_line[8] != ' ' ||
            !std::all_of(status_line.begin() + 9, status_line.begin() + 12, [](char c) { return c >= '0' && c <= '9'; }) ||
            (status_line.size() > 12 && status_line[12] != ' '))
            throw user_error(fmt::format("{}: bad HTTP status line '{}'", url_, preview(status_line)));
        r_.status = std::stoi(std::string(status_line.substr(9, 3)));
        r_.reason = std::string(status_line.size() > 13 ? status_line.substr(13) : std::string_view());
        bool chunked = false;
        std::optional<size_t> length;
        while (eol != std::string_view::npos) {
            const size_t start = eol + 2;
            eol = head.find("\r\n", start);
            const std::string_view line = head.substr(start, eol == std::string_view::npos ? head.size() - start : eol - start);
            if (line.empty()) continue;
            const size_t colon = line.find(':');
            if (colon == std::string_view::npos || colon == 0)
                throw user_error(fmt::format("{}: bad header line '{}'", url_, preview(line)));
            std::string name = lower(trim_space(line.substr(0, colon)));
            std::string value(trim_space(line.substr(colon + 1)));
            if (name == "transfer-encoding") {
                const std::string v = lower(value);
                if (v.size() >= 7 && v.compare(v.size() - 7, 7, "chunked") == 0) chunked = true;
            } else if (name == "content-length") {
                size_t n = 0;
                if (value.empty() || !std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
                    value.size() > 15)
                    throw user_error(fmt::format("{}: bad Content-Length '{}'", url_, preview(value)));
                n = static_cast<size_t>(std::stoull(value));
                if (length && *length != n) throw user_error(fmt::format("{}: conflicting Content-Length headers", url_));
                length = n;
            }
            r_.headers[name] = value;
        }
        // RFC 9112 6.3: chunked wins over Content-Length; 204 / 304 carry no body
        if (r_.status == 204 || r_.status == 304) {
            mode_ = body_mode::length;
            length_ = 0;
        } else if (chunked) {
            mode_ = body_mode::chunked;
        } else if (length) {
            mode_ = body_mode::length;
            length_ = *length;
            if (length_ > max_body_) throw too_big();
        } else {
            mode_ = body_mode::to_close;
        }
    }

    // chunk = hex-size [; extensions] CRLF data CRLF; last-chunk "0" CRLF, trailers, CRLF
    bool advance_chunks() {
        for (;;) {
            if (in_trailers_) {
                const size_t eol = buf_.find("\r\n", pos_);
                if (eol == std::string::npos) return false;
                if (eol == pos_) {  // the empty line after the trailers: done
                    r_.body = std::move(body_);
                    return true;
                }
                pos_ = eol + 2;  // a trailer field: ignored
                continue;
            }
            if (chunk_left_ == 0) {
                if (need_crlf_) {
                    if (buf_.size() < pos_ + 2) return false;
                    if (buf_.compare(pos_, 2, "\r\n") != 0)
                        throw user_error(fmt::format("{}: chunked body: missing CRLF after a chunk", url_));
                    pos_ += 2;
                    need_crlf_ = false;
                }
                const size_t eol = buf_.find("\r\n", pos_);
                if (eol == std::string::npos) {
                    if (buf_.size() - pos_ > 1024) throw user_error(fmt::format("{}: chunked body: chunk size line too long", url_));
                    return false;
                }
                std::string_view size_line = std::string_view(buf_).substr(pos_, eol - pos_);
                if (auto semi = size_line.find(';'); semi != std::string_view::npos) size_line = size_line.substr(0, semi);
                size_line = trim_space(size_line);
                size_t n = 0;
                if (size_line.empty() || size_line.size() > 12)
                    throw user_error(fmt::format("{}: chunked body: bad chunk size '{}'", url_, preview(size_line)));
                for (char c : size_line) {
                    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
                    if (d < 0) throw user_error(fmt::format("{}: chunked body: bad chunk size '{}'", url_, preview(size_line)));
                    n = n * 16 + static_cast<size_t>(d);
                }
                pos_ = eol + 2;
                if (n == 0) {
                    in_trailers_ = true;
                    continue;
                }
                if (body_.size() + n > max_body_) throw too_big();
                chunk_left_ = n;
            }
            const size_t avail = std::min(chunk_left_, buf_.size() - pos_);
            body_.append(buf_, pos_, avail);
            pos_ += avail;
            chunk_left_ -= avail;
            if (chunk_left_ > 0) {
                buf_.erase(0, pos_);  // keep the buffer small while a big chunk streams in
                pos_ = 0;
                return false;
            }
            need_crlf_ = true;
        }
    }

    std::string url_;
    size_t max_body_;
    std::string buf_;
    bool headers_done_ = false;
    body_mode mode_ = body_mode::to_close;
    size_t length_ = 0;
    // chunked state
    size_t pos_ = 0, chunk_left_ = 0;
    bool need_crlf_ = false, in_trailers_ = false;
    std::string body_;
    http_response r_;
};

}  // namespace

http_url parse_http_url(std::string_view url) {
    const std::string u(trim_space(url));
    const auto colon = u.find("://");
    if (colon == std::string::npos)
        throw user_error(fmt::format("'{}' is not a URL", u), "write it as http://HOST:PORT, e.g. http://127.0.0.1:8080");
    const std::string scheme = lower(u.substr(0, colon));
    if (scheme == "https")
        throw user_error(fmt::format("{}: https is not supported (slmctl's HTTP client speaks plain http only)", u),
                         "run the judge locally over http://, or put a local TLS-terminating proxy in front of it");
    if (scheme != "http") throw user_error(fmt::format("{}: scheme '{}' is not http", u, scheme));
    std::string rest = u.substr(colon + 3);
    http_url out;
    const size_t slash = rest.find_first_of("/?#");
    std::string authority = rest.substr(0, slash);
    out.path = slash == std::string::npos ? "/" : rest.substr(slash);
    if (auto hash = out.path.find('#'); hash != std::string::npos) out.path.resize(hash);
    if (out.path.empty() || out.path[0] != '/') out.path = "/" + out.path;
    if (authority.find('@') != std::string::npos)
        throw user_error(fmt::format("{}: credentials in the URL are not supported", u), "use --judge-key ENV_VAR for a key");
    std::string port;
    if (!authority.empty() && authority[0] == '[') {  // [::1]:8080
        const size_t close = authority.find(']');
        if (close == std::string::npos) throw user_error(fmt::format("{}: unterminated IPv6 address", u));
        out.host = authority.substr(1, close - 1);
        if (close + 1 < authority.size()) {
            if (authority[close + 1] != ':') throw user_error(fmt::format("{}: bad host '{}'", u, authority));
            port = authority.substr(close + 2);
        }
    } else {
        const size_t pc = authority.rfind(':');
        out.host = authority.substr(0, pc);
        if (pc != std::string::npos) port = authority.substr(pc + 1);
    }
    if (out.host.empty()) throw user_error(fmt::format("{}: no host", u), "e.g. http://127.0.0.1:8080");
    if (!port.empty()) {
        if (port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
            std::stoi(port) < 1 || std::stoi(port) > 65535)
            throw user_error(fmt::format("{}: bad port '{}'", u, port));
        out.port = std::stoi(port);
    }
    return out;
}

http_response http_post(std::string_view url_text, std::string_view body,
                        const std::vector<std::pair<std::string, std::string>>& headers, const http_options& o) {
    const std::string url(trim_space(url_text));
    const http_url u = parse_http_url(url);
    const auto start = clock_type::now();
    auto secs = [](double s) { return std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(s)); };
    const auto deadline = start + secs(o.timeout_s);
    fd_guard sock;
    sock.fd = connect_to(u, url, std::min(deadline, start + secs(o.connect_timeout_s)));

    std::string host_header = u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
    if (u.port != 80) host_header += fmt::format(":{}", u.port);
    std::string req = fmt::format("POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n"
                                  "User-Agent: slmctl/" SLMCTL_VERSION "\r\n",
                                  u.path, host_header, body.size());
    for (const auto& [k, v] : headers) {
        if (k.find_first_of("\r\n:") != std::string::npos || v.find_first_of("\r\n") != std::string::npos)
            throw internal_error(fmt::format("http_post: header '{}' has a line break or colon", k));
        req += fmt::format("{}: {}\r\n", k, v);
    }
    req += "\r\n";
    req.append(body);
    send_all(sock.fd, req, url, deadline);

    response_reader rd(url, o.max_body_bytes);
    char buf[16384];
    for (;;) {
        const ssize_t n = ::recv(sock.fd, buf, sizeof buf, 0);
        if (n > 0) {
            if (rd.feed(std::string_view(buf, static_cast<size_t>(n)))) break;
            continue;
        }
        if (n == 0) {
            rd.at_close();  // a complete read-to-close body, else it throws
            break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (!wait_for(sock.fd, POLLIN, deadline))
                throw user_error(fmt::format("{}: no complete answer within {:.0f} s", url, o.timeout_s),
                                 "a slow judge: raise --judge-timeout");
            continue;
        }
        throw user_error(fmt::format("{}: receiving the answer failed: {}", url, std::strerror(errno)));
    }
    auto r = rd.take();
    r.seconds = std::chrono::duration<double>(clock_type::now() - start).count();
    return r;
}

}  // namespace slm::eval
