// A canned HTTP server for eval's tests: one thread on 127.0.0.1 answering each request with
// scripted bytes (the judge tests and the `eval --judge` end-to-end test share it).
#pragma once
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <fmt/format.h>

namespace slm::test {

/// A one-thread HTTP server on 127.0.0.1:PORT. For each connection it reads one request (headers
/// and a Content-Length body), records it, and writes what `answer(request)` returns: a list of
/// pieces written one by one with a short pause (so the client sees split reads), then closes.
/// An empty list means: never answer (hold the connection until the server stops).
class canned_server {
public:
    using answer_fn = std::function<std::vector<std::string>(const std::string& request)>;

    explicit canned_server(answer_fn answer) : answer_(std::move(answer)) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd_ >= 0);
        int one = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd_, 8) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        th_ = std::thread([this] { loop(); });
    }
    ~canned_server() {
        stop_ = true;
        th_.join();
        ::close(fd_);
    }
    int port() const { return port_; }
    std::string url(const std::string& path = "") const { return fmt::format("http://127.0.0.1:{}{}", port_, path); }
    std::vector<std::string> requests() {
        std::lock_guard<std::mutex> l(m_);
        return requests_;
    }

private:
    void loop() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            int c = ::accept(fd_, nullptr, nullptr);
            if (c < 0) continue;
            serve(c);
            ::close(c);
        }
    }
    void serve(int c) {
        std::string req;
        char buf[4096];
        size_t need = std::string::npos;
        while (!stop_) {
            pollfd p{c, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            ssize_t n = ::recv(c, buf, sizeof buf, 0);
            if (n <= 0) break;
            req.append(buf, static_cast<size_t>(n));
            const size_t end = req.find("\r\n\r\n");
            if (end != std::string::npos && need == std::string::npos) {
                size_t len = 0;
                auto cl = req.find("Content-Length: ");
                if (cl != std::string::npos && cl < end) len = std::stoul(req.substr(cl + 16));
                need = end + 4 + len;
            }
            if (need != std::string::npos && req.size() >= need) break;
        }
        {
            std::lock_guard<std::mutex> l(m_);
            requests_.push_back(req);
        }
        auto pieces = answer_(req);
        if (pieces.empty()) {  // hold the line without answering
            while (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
            return;
        }
        for (const auto& piece : pieces) {
            ::send(c, piece.data(), piece.size(), MSG_NOSIGNAL);
            std::this_thread::sleep_for(std::chrono::milliseconds(3));
        }
    }

    answer_fn answer_;
    int fd_ = -1, port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread th_;
    std::mutex m_;
    std::vector<std::string> requests_;
};

}  // namespace slm::test
