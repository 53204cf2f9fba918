// eval's HTTP client and LLM judge against a canned HTTP server started in the test (a thread on
// 127.0.0.1): Content-Length, chunked and read-to-close bodies delivered in small pieces, 1xx,
// garbage, cut-short bodies, refused connections, timeouts; judge replies and their scores.
#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <mutex>

#include <fmt/format.h>

#include "common/common.h"
#include "eval/metrics.h"
#include "tests/eval/canned-server.h"

using namespace slm;
using namespace slm::eval;
using json = nlohmann::json;
using slm::test::canned_server;

namespace {

/// `s` cut into pieces of `n` bytes.
std::vector<std::string> pieces(const std::string& s, size_t n) {
    std::vector<std::string> out;
    for (size_t i = 0; i < s.size(); i += n) out.push_back(s.substr(i, n));
    return out;
}

std::string with_length(const std::string& body, const std::string& status = "200 OK") {
    return fmt::format("HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}", status,
                       body.size(), body);
}

/// `body` as a chunked message body in chunks of `n` bytes (hex sizes, one with an extension).
std::string chunked(const std::string& body, size_t n) {
    std::string out = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    bool first = true;
    for (size_t i = 0; i < body.size(); i += n) {
        const std::string part = body.substr(i, n);
        out += fmt::format("{:X}{}\r\n{}\r\n", part.size(), first ? ";note=x" : "", part);
        first = false;
    }
    return out + "0\r\nX-Trailer: t\r\n\r\n";
}

std::string completion(const std::string& content) {
    return json{{"id", "chatcmpl-1"},
                {"object", "chat.completion"},
                {"choices", {{{"index", 0}, {"message", {{"role", "assistant"}, {"content", content}}}, {"finish_reason", "stop"}}}}}
        .dump();
}

std::string error_text(const std::function<void()>& f) {
    try {
        f();
    } catch (const user_error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("parse_http_url: host, port, path; https and other schemes refused with the reason") {
    auto u = parse_http_url("http://127.0.0.1:8080");
    CHECK(u.host == "127.0.0.1");
    CHECK(u.port == 8080);
    CHECK(u.path == "/");
    u = parse_http_url("http://judge.local/v1/chat/completions?x=1");
    CHECK(u.host == "judge.local");
    CHECK(u.port == 80);
    CHECK(u.path == "/v1/chat/completions?x=1");
    u = parse_http_url("http://[::1]:9000/v1");
    CHECK(u.host == "::1");
    CHECK(u.port == 9000);
    CHECK(error_text([] { parse_http_url("https://api.openai.com/v1"); }).find("https is not supported") != std::string::npos);
    CHECK(error_text([] { parse_http_url("ftp://x"); }).find("not http") != std::string::npos);
    CHECK(error_text([] { parse_http_url("localhost:8080"); }).find("is not a URL") != std::string::npos);
    CHECK(error_text([] { parse_http_url("http://h:99999"); }).find("bad port") != std::string::npos);
    CHECK(error_text([] { parse_http_url("http://h:80x"); }).find("bad port") != std::string::npos);
    CHECK(error_text([] { parse_http_url("http://u:p@h/"); }).find("credentials") != std::string::npos);
    CHECK(error_text([] { parse_http_url("http:///v1"); }).find("no host") != std::string::npos);
}

TEST_CASE("http_post: Content-Length, chunked and read-to-close bodies arriving in small pieces") {
    const std::string body = R"({"hello": "world", "n": [1, 2, 3]})";
    SUBCASE("Content-Length, 7-byte pieces") {
        canned_server s([&](const std::string&) { return pieces(with_length(body), 7); });
        auto r = http_post(s.url("/v1/chat/completions"), R"({"q":1})", {{"Content-Type", "application/json"}});
        CHECK(r.status == 200);
        CHECK(r.reason == "OK");
        CHECK(r.headers.at("content-type") == "application/json");
        CHECK(r.body == body);
        auto reqs = s.requests();
        REQUIRE(reqs.size() == 1);
        CHECK(reqs[0].rfind("POST /v1/chat/completions HTTP/1.1\r\n", 0) == 0);
        CHECK(reqs[0].find(fmt::format("Host: 127.0.0.1:{}\r\n", s.port())) != std::string::npos);
        CHECK(reqs[0].find("Content-Length: 7\r\n") != std::string::npos);
        CHECK(reqs[0].find("Content-Type: application/json\r\n") != std::string::npos);
        CHECK(reqs[0].substr(reqs[0].size() - 7) == R"({"q":1})");
    }
    SUBCASE("chunked, chunk boundaries cut by 1- and 5-byte pieces, extension and trailer skipped") {
        for (size_t piece : {size_t(1), size_t(5)}) {
            canned_server s([&](const std::string&) { return pieces(chunked(body, 6), piece); });
            auto r = http_post(s.url(), "{}");
            CHECK(r.status == 200);
            CHECK(r.body == body);
        }
    }
    SUBCASE("no length: read to the close; a 100 Continue first is skipped") {
        canned_server s([&](const std::string&) {
            return std::vector<std::string>{"HTTP/1.1 100 Continue\r\n\r\n", "HTTP/1.0 200 OK\r\n\r\n", body.substr(0, 10),
                                            body.substr(10)};
        });
        auto r = http_post(s.url(), "{}");
        CHECK(r.status == 200);
        CHECK(r.body == body);
    }
    SUBCASE("an error status is returned with its body, not thrown") {
        canned_server s([&](const std::string&) { return std::vector<std::string>{with_length("model not loaded", "503 Service Unavailable")}; });
        auto r = http_post(s.url(), "{}");
        CHECK(r.status == 503);
        CHECK(r.reason == "Service Unavailable");
        CHECK(r.body == "model not loaded");
    }
}

TEST_CASE("http_post: garbage, cut-short bodies, refused connections and timeouts are errors naming the URL") {
    SUBCASE("an answer that is not HTTP") {
        canned_server s([](const std::string&) { return std::vector<std::string>{"SSH-2.0-OpenSSH_9.2\r\n"}; });
        auto e = error_text([&] { http_post(s.url("/v1"), "{}"); });
        CHECK(e.find(s.url("/v1")) != std::string::npos);
        CHECK(e.find("not HTTP") != std::string::npos);
        CHECK(e.find("SSH-2.0") != std::string::npos);
    }
    SUBCASE("a bad status line") {
        canned_server s([](const std::string&) { return std::vector<std::string>{"HTTP/1.1 OK fine\r\n\r\n"}; });
        CHECK(error_text([&] { http_post(s.url(), "{}"); }).find("bad HTTP status line") != std::string::npos);
    }
    SUBCASE("a bad chunk size") {
        canned_server s([](const std::string&) {
            return std::vector<std::string>{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"};
        });
        CHECK(error_text([&] { http_post(s.url(), "{}"); }).find("bad chunk size 'zz'") != std::string::npos);
    }
    SUBCASE("a chunked body cut before its last chunk") {
        canned_server s([](const std::string&) {
            return std::vector<std::string>{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"};
        });
        CHECK(error_text([&] { http_post(s.url(), "{}"); }).find("before its last chunk") != std::string::npos);
    }
    SUBCASE("a body shorter than its Content-Length") {
        canned_server s([](const std::string&) { return std::vector<std::string>{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"}; });
        CHECK(error_text([&] { http_post(s.url(), "{}"); }).find("after 3 of 10 body bytes") != std::string::npos);
    }
    SUBCASE("closed without a word") {
        canned_server s([](const std::string&) { return std::vector<std::string>{""}; });
        CHECK(error_text([&] { http_post(s.url(), "{}"); }).find("closed the connection without an answer") != std::string::npos);
    }
    SUBCASE("nobody listening") {
        int port = 0;
        {
            canned_server s([](const std::string&) { return std::vector<std::string>{}; });
            port = s.port();
        }
        const std::string url = fmt::format("http://127.0.0.1:{}", port);
        auto e = error_text([&] { http_post(url, "{}"); });
        CHECK(e.find(url) != std::string::npos);
        CHECK(e.find("cannot connect") != std::string::npos);
    }
    SUBCASE("a server that never answers: the deadline holds") {
        canned_server s([](const std::string&) { return std::vector<std::string>{}; });
        http_options o;
        o.timeout_s = 0.3;
        const auto t0 = std::chrono::steady_clock::now();
        auto e = error_text([&] { http_post(s.url(), "{}", {}, o); });
        const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        CHECK(e.find("no complete answer within") != std::string::npos);
        CHECK(took < 2.0);
    }
}

TEST_CASE("completion_text: the assistant text of a chat completion, or why there is none") {
    std::string why;
    CHECK(completion_text(completion("Score: 7"), why) == "Score: 7");
    CHECK(completion_text(R"({"choices":[{"text":"9/10"}]})", why) == "9/10");
    CHECK(completion_text(R"({"choices":[{"message":{"role":"assistant","content":null}}]})", why) == "");
    CHECK(!completion_text("<html>502 Bad Gateway</html>", why));
    CHECK(why.find("not JSON") != std::string::npos);
    CHECK(!completion_text(R"({"error":{"message":"context length exceeded"}})", why));
    CHECK(why.find("context length exceeded") != std::string::npos);
    CHECK(!completion_text(R"({"choices":[]})", why));
    CHECK(why.find("no choices[0]") != std::string::npos);
    CHECK(!completion_text("[1,2]", why));
}

TEST_CASE("judge_client: scores from canned replies, the request it sends, and errors per answer") {
    std::vector<std::string> replies;
    std::mutex m;
    size_t next = 0;
    canned_server s([&](const std::string&) {
        std::lock_guard<std::mutex> l(m);
        return pieces(replies.at(next++ % replies.size()), 11);
    });
    judge_options o;
    o.url = s.url();
    o.model = "smol-judge";
    judge_client j(o);
    CHECK(j.endpoint() == s.url("/v1/chat/completions"));
    replies = {with_length(completion("The candidate matches. Score: 8/10")),
               chunked(completion("**7**"), 9),
               with_length(completion("10")),
               with_length(completion("I think it is fine.")),
               with_length("oops", "500 Internal Server Error"),
               with_length("not json at all")};
    auto a = j.judge("Summarise the meeting", "Moved to Tuesday.", "The meeting moved to Tuesday.");
    REQUIRE(a.score);
    CHECK(a.score->normalized == doctest::Approx(0.8));
    CHECK(a.error.empty());
    auto b = j.judge("q", "r", "x");
    REQUIRE(b.score);
    CHECK(b.score->normalized == doctest::Approx(0.7));
    auto c = j.judge("q", "r", "x");
    REQUIRE(c.score);
    CHECK(c.score->raw == 10);  // a "10" is ten, not one
    CHECK(c.score->normalized == doctest::Approx(1.0));
    auto d = j.judge("q", "r", "x");
    CHECK(!d.score);
    CHECK(d.answered);
    CHECK(d.reply == "I think it is fine.");
    CHECK(d.error == "no score in the reply");
    auto e = j.judge("q", "r", "x");
    CHECK(!e.answered);
    CHECK(e.error.find("HTTP 500") != std::string::npos);
    CHECK(e.error.find(s.url("/v1/chat/completions")) != std::string::npos);
    auto f = j.judge("q", "r", "x");
    CHECK(!f.answered);
    CHECK(f.error.find("not JSON") != std::string::npos);

    // what went to the server: an OpenAI chat request with the three texts and greedy decoding
    auto reqs = s.requests();
    REQUIRE(reqs.size() == 6);
    CHECK(reqs[0].rfind("POST /v1/chat/completions HTTP/1.1\r\n", 0) == 0);
    CHECK(reqs[0].find("Authorization:") == std::string::npos);
    auto body = json::parse(reqs[0].substr(reqs[0].find("\r\n\r\n") + 4));
    CHECK(body["model"] == "smol-judge");
    CHECK(body["temperature"] == 0);
    CHECK(body["stream"] == false);
    REQUIRE(body["messages"].size() == 2);
    CHECK(body["messages"][0]["role"] == "system");
    const std::string user = body["messages"][1]["content"];
    CHECK(user.find("Summarise the meeting") != std::string::npos);
    CHECK(user.find("Moved to Tuesday.") != std::string::npos);
    CHECK(user.find("The meeting moved to Tuesday.") != std::string::npos);
}

TEST_CASE("judge_client: URL forms, the key from the environment, check() before a run") {
    canned_server s([](const std::string& req) {
        if (req.find("Authorization: Bearer sekrit\r\n") == std::string::npos)
            return std::vector<std::string>{with_length(R"({"error":{"message":"no key"}})", "401 Unauthorized")};
        return std::vector<std::string>{with_length(completion("Score: 9"))};
    });
    judge_options o;
    o.url = s.url("/v1/");
    CHECK(judge_client(o).endpoint() == s.url("/v1/chat/completions"));
    o.url = s.url("/v1/chat/completions");
    CHECK(judge_client(o).endpoint() == s.url("/v1/chat/completions"));
    o.url = s.url("/api/generate");
    CHECK(error_text([&] { judge_client{o}; }).find("neither /v1 nor") != std::string::npos);
    o.url = "https://api.example.com/v1";
    CHECK(error_text([&] { judge_client{o}; }).find("https is not supported") != std::string::npos);

    o.url = s.url();
    o.key_env = "SLMCTL_TEST_JUDGE_KEY_UNSET";
    ::unsetenv("SLMCTL_TEST_JUDGE_KEY_UNSET");
    CHECK(error_text([&] { judge_client{o}; }).find("SLMCTL_TEST_JUDGE_KEY_UNSET: the environment variable is not set") !=
          std::string::npos);
    o.key_env.clear();
    auto e = error_text([&] { judge_client(o).check(); });  // no key: the server says 401
    CHECK(e.find("HTTP 401") != std::string::npos);
    CHECK(e.find(s.url("/v1/chat/completions")) != std::string::npos);
    ::setenv("SLMCTL_TEST_JUDGE_KEY", "sekrit", 1);
    o.key_env = "SLMCTL_TEST_JUDGE_KEY";
    judge_client k(o);
    CHECK_NOTHROW(k.check());
    auto r = k.judge("q", "r", "a");
    REQUIRE(r.score);
    CHECK(r.score->normalized == doctest::Approx(0.9));
    CHECK(o.to_json().dump().find("sekrit") == std::string::npos);  // the key never lands in the run's params
}

TEST_CASE("judge_client::check: an unreachable or garbage-speaking judge stops the run before it starts") {
    canned_server garbage([](const std::string&) { return std::vector<std::string>{"hello there\n"}; });
    judge_options o;
    o.url = garbage.url();
    auto e = error_text([&] { judge_client(o).check(); });
    CHECK(e.find("--judge") != std::string::npos);
    CHECK(e.find("not HTTP") != std::string::npos);
    CHECK(e.find(garbage.url()) != std::string::npos);
    int port = 0;
    {
        canned_server gone([](const std::string&) { return std::vector<std::string>{}; });
        port = gone.port();
    }
    o.url = fmt::format("http://127.0.0.1:{}", port);
    e = error_text([&] { judge_client(o).check(); });
    CHECK(e.find("cannot connect") != std::string::npos);
}

TEST_CASE("judge_messages: the rubric names the scale; long parts are cut") {
    auto m = judge_messages("req", std::string(5000, 'r'), "ans", 5);
    CHECK(m[0]["content"].get<std::string>().find("Score: N/5") != std::string::npos);
    const std::string user = m[1]["content"];
    CHECK(user.find(std::string(3000, 'r') + " [...]") != std::string::npos);
    CHECK(user.find(std::string(3001, 'r')) == std::string::npos);
}
