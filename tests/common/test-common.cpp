// common/: error tiers, assertion messages, thread settings, formatting helpers.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "common/common.h"

using namespace slm;

TEST_CASE("SLM_ASSERT throws internal_error naming the expression and the message") {
    try {
        int x = 3;
        SLM_ASSERT(x == 4, "x was {}", x);
        FAIL("no throw");
    } catch (const internal_error& e) {
        std::string m = e.what();
        CHECK(m.find("x == 4") != std::string::npos);
        CHECK(m.find("x was 3") != std::string::npos);
        CHECK(m.find("test-common.cpp") != std::string::npos);
    }
    CHECK_NOTHROW(SLM_ASSERT(1 + 1 == 2));
}

TEST_CASE("user_error keeps its hint") {
    user_error e("bad file", "fix it");
    CHECK(std::string(e.what()) == "bad file");
    CHECK(e.hint == "fix it");
}

TEST_CASE("threads: default is the core count, explicit values stick") {
    CHECK(available_cores() >= 1);
    set_num_threads(0);
    CHECK(num_threads() == available_cores());
    set_num_threads(1);
    CHECK(num_threads() == 1);
    set_num_threads(0);
}

TEST_CASE("human_bytes and utc_now_iso formats") {
    CHECK(human_bytes(512) == "512 B");
    CHECK(human_bytes(1536) == "1.5 KiB");
    CHECK(human_bytes(3ull << 30) == "3.0 GiB");
    auto t = utc_now_iso();
    REQUIRE(t.size() == 24);
    CHECK(t[4] == '-');
    CHECK(t[10] == 'T');
    CHECK(t.back() == 'Z');
}

TEST_CASE("models_dir honours SLMCTL_MODELS") {
    setenv("SLMCTL_MODELS", "/x/y", 1);
    CHECK(models_dir() == "/x/y");
    unsetenv("SLMCTL_MODELS");
    CHECK(models_dir().find("slmctl/models") != std::string::npos);
}

#include "common/sha256.h"

TEST_CASE("sha256 matches the FIPS 180-4 examples") {
    auto h = [](std::string_view s) {
        slm::sha256 x;
        x.update(s);
        return x.hex();
    };
    CHECK(h("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(h("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(h("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    // a million 'a' fed in uneven pieces: the buffering across update() calls
    slm::sha256 x;
    std::string piece(777, 'a');
    size_t left = 1000000;
    while (left) {
        const size_t n = std::min(left, piece.size());
        x.update(piece.data(), n);
        left -= n;
    }
    CHECK(x.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
