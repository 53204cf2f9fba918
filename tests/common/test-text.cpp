// common/text.h, timing.h, mmap-file.h: JSON escaping (against nlohmann's parser), UTF-8-safe
// cutting, trimming, seconds_since, epoch numbers to ISO-8601, mapped files.
#include <doctest/doctest.h>

#include <fstream>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/common.h"
#include "common/mmap-file.h"
#include "common/text.h"
#include "common/timing.h"
#include "../test-util.h"

using namespace slm;

TEST_CASE("json_escape_into: named escapes, \\u00xx for other controls, UTF-8 and DEL as they are") {
    std::string out;
    json_escape_into(out, std::string("a\"b\\c\n\r\t\b\f\x01\x1f\x7f", 13));
    CHECK(out == "a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\x7f");
    CHECK(json_quoted("caf\xC3\xA9 \xE2\x82\xAC") == "\"caf\xC3\xA9 \xE2\x82\xAC\"");
    CHECK(json_quoted("") == "\"\"");
    CHECK(json_quoted(std::string("\0", 1)) == "\"\\u0000\"");
    CHECK(json_needs_no_escape("plain text, \xC3\xA9"));
    CHECK(!json_needs_no_escape("tab\there"));
    // long inputs cross the 32-byte SIMD blocks: every position of a special byte round-trips
    for (size_t pos = 0; pos < 70; ++pos) {
        std::string s(70, 'x');
        s[pos] = pos % 3 == 0 ? '"' : pos % 3 == 1 ? '\\' : '\n';
        CHECK(!json_needs_no_escape(s));
        CHECK(nlohmann::json::parse(json_quoted(s)).get<std::string>() == s);
    }
}

TEST_CASE("utf8_cut never splits a character") {
    const std::string s = "ab\xC3\xA9" "c\xE2\x82\xAC" "d\xF0\x9F\x98\x80";  // a b é c € d 😀
    CHECK(utf8_cut(s, 100) == s);
    CHECK(utf8_cut(s, 0).empty());
    CHECK(utf8_cut(s, 2) == "ab");
    CHECK(utf8_cut(s, 3) == "ab");                 // inside é
    CHECK(utf8_cut(s, 4) == "ab\xC3\xA9");
    CHECK(utf8_cut(s, 6) == "ab\xC3\xA9" "c");     // inside €
    CHECK(utf8_cut(s, 7) == "ab\xC3\xA9" "c");
    CHECK(utf8_cut(s, 8) == "ab\xC3\xA9" "c\xE2\x82\xAC");
    CHECK(utf8_cut(s, 12) == "ab\xC3\xA9" "c\xE2\x82\xAC" "d");  // inside 😀
    CHECK(utf8_cut("\x80\x80\x80", 2).empty());    // stray continuation bytes: nothing to keep
}

TEST_CASE("trim_space") {
    CHECK(trim_space("  \t\n a b \r\n\v\f") == "a b");
    CHECK(trim_space("   ").empty());
    CHECK(trim_space("").empty());
    CHECK(trim_space("x") == "x");
}

TEST_CASE("seconds_since counts steady-clock seconds") {
    const auto t0 = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const double s = seconds_since(t0);
    CHECK(s >= 0.019);
    CHECK(s < 5);
}

TEST_CASE("epoch numbers: magnitude tells s/ms/us/ns; ISO-8601 UTC with milliseconds") {
    CHECK(epoch_to_iso_utc(1742032306) == "2025-03-15T09:51:46.000Z");
    CHECK(epoch_to_iso_utc(1763632800.5) == "2025-11-20T10:00:00.500Z");
    CHECK(epoch_to_iso_utc(0) == "1970-01-01T00:00:00.000Z");
    CHECK(epoch_to_iso_utc(1.9999996) == "1970-01-01T00:00:02.000Z");  // rounding carries into seconds
    CHECK(epoch_to_iso_utc(-1).empty());
    CHECK(epoch_to_iso_utc(1e12).empty());
    CHECK(epoch_to_iso_utc(std::numeric_limits<double>::quiet_NaN()).empty());
    CHECK(epoch_seconds_by_magnitude(1742032306) == 1742032306);
    CHECK(epoch_seconds_by_magnitude(1742032306123.0) == doctest::Approx(1742032306.123));
    CHECK(epoch_seconds_by_magnitude(1742032306123456.0) == doctest::Approx(1742032306.123456));
    CHECK(epoch_seconds_by_magnitude(1742032306123456789.0) == doctest::Approx(1742032306.123456789));
    CHECK(epoch_to_iso_utc(epoch_seconds_by_magnitude(1742032306123.0)) == "2025-03-15T09:51:46.123Z");
}

TEST_CASE("mapped_file maps a file, moves, and names the file in its errors") {
    test::temp_dir t;
    const std::string p = t / "f.bin";
    std::ofstream(p, std::ios::binary) << "GGUF and more";
    mapped_file m(p);
    CHECK(m.size() == 13);
    CHECK(m.view() == "GGUF and more");
    CHECK(m.path() == p);
    mapped_file moved(std::move(m));
    CHECK(moved.view().substr(0, 4) == "GGUF");
    CHECK(m.data() == nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
    moved.reset();
    CHECK(moved.size() == 0);

    std::ofstream(t / "empty", std::ios::binary).flush();
    mapped_file e(t / "empty");
    CHECK(e.size() == 0);
    CHECK(e.data() == nullptr);

    try {
        mapped_file missing(t / "nope", "fetch it first");
        FAIL("no throw");
    } catch (const user_error& err) {
        CHECK(std::string(err.what()).find("nope") != std::string::npos);
        CHECK(err.hint == "fetch it first");
    }
    CHECK_THROWS_AS(mapped_file(t.path.string()), user_error);  // a directory
}

TEST_CASE("valid_utf8, utf8_seq_len and append_utf8") {
    CHECK(valid_utf8(""));
    CHECK(valid_utf8("plain ascii"));
    CHECK(valid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"));
    CHECK(!valid_utf8("caf\xC3\x28"));       // bad continuation
    CHECK(!valid_utf8("\xC0\xAF"));          // overlong '/'
    CHECK(!valid_utf8("\xE0\x80\xAF"));      // overlong, 3 bytes
    CHECK(!valid_utf8("\xED\xA0\x80"));      // UTF-16 surrogate
    CHECK(!valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
    CHECK(!valid_utf8("\xE2\x82"));          // cut short
    const std::string euro = "\xE2\x82\xAC";
    const auto* p = reinterpret_cast<const unsigned char*>(euro.data());
    CHECK(utf8_seq_len(p, p + 3) == 3);
    CHECK(utf8_seq_len(p, p + 2) == 0);
    for (uint32_t cp : {0x41u, 0xE9u, 0x20ACu, 0x1F600u, 0x10FFFFu}) {
        std::string s;
        append_utf8(s, cp);
        CHECK(valid_utf8(s));
        CHECK(utf8_seq_len(reinterpret_cast<const unsigned char*>(s.data()),
                           reinterpret_cast<const unsigned char*>(s.data()) + s.size()) == static_cast<int>(s.size()));
    }
    std::string s;
    append_utf8(s, 0x20AC);
    CHECK(s == euro);
}
