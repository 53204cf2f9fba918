// collector scrubbing: every kind found and replaced by a typed placeholder, placeholders consistent
// within a call, and the look-alikes that must stay (Luhn/IBAN failures, dates, versions, times, code).
#include <doctest/doctest.h>

#include <string>

#include "collector/collector.h"

using namespace slm::collector;

static std::string scrub1(const std::string& in, scrubber* use = nullptr) {
    scrubber local;
    scrubber& s = use ? *use : local;
    std::string out;
    s.scrub(in, out);
    return out;
}

static uint32_t count_of(const scrubber& s, pii k) { return s.counts()[static_cast<size_t>(k)]; }

TEST_CASE("each kind is replaced by its typed placeholder") {
    struct tc {
        const char* in;
        const char* out;
        pii kind;
    } cases[] = {
        {"write to jane.doe+work@mail.example.co.uk today", "write to <EMAIL_1> today", pii::email},
        {"call +1 415 555 2671 now", "call <PHONE_1> now", pii::phone},
        {"call (415) 555-2671 now", "call <PHONE_1> now", pii::phone},
        {"call 415-555-2671.", "call <PHONE_1>.", pii::phone},
        {"ring +44 20 7946 0958", "ring <PHONE_1>", pii::phone},
        {"ring 01 23 45 67 89 ok", "ring <PHONE_1> ok", pii::phone},
        {"card 4111 1111 1111 1111 exp", "card <CARD_1> exp", pii::card},
        {"card 4111-1111-1111-1111", "card <CARD_1>", pii::card},
        {"amex 378282246310005;", "amex <CARD_1>;", pii::card},
        {"mc 5555555555554444", "mc <CARD_1>", pii::card},
        {"ssn 078-05-1120 on file", "ssn <SSN_1> on file", pii::ssn},
        {"host 192.168.10.254:8080", "host <IPV4_1>:8080", pii::ipv4},
        {"v6 2001:db8:85a3::8a2e:370:7334 up", "v6 <IPV6_1> up", pii::ipv6},
        {"v6 fe80::1ff:fe23:4567:890a%eth0", "v6 <IPV6_1>%eth0", pii::ipv6},
        {"full 2001:0db8:0000:0000:0000:ff00:0042:8329.", "full <IPV6_1>.", pii::ipv6},
        {"IBAN DE89 3704 0044 0532 0130 00 please", "IBAN <IBAN_1> please", pii::iban},
        {"iban GB82WEST12345698765432", "iban <IBAN_1>", pii::iban},
        {"key sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA2bC7dE", "key <API_KEY_1>", pii::api_key},
        {"key sk-ant-api03-Xy9Zk2Lm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd0Ef2Gh4Ij6Kl8", "key <API_KEY_1>", pii::api_key},
        {"google AIzaSyD4f8GhJk2Lm3Np4Qr5St6Uv7Wx8Yz9Ab0C", "google <API_KEY_1>", pii::api_key},
        {"aws AKIAIOSFODNN7EXAMPLE here", "aws <AWS_KEY_1> here", pii::aws_key},
        {"gh ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R", "gh <GITHUB_TOKEN_1>", pii::github_token},
        {"gh github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "gh <GITHUB_TOKEN_1>", pii::github_token},
        {"slack xoxb-1234567890-0987654321-AbCdEfGhIjKl", "slack <SLACK_TOKEN_1>", pii::slack_token},
        {"jwt eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
         "jwt <JWT_1>", pii::jwt},
        {"password=hunter2 next", "password=<SECRET_1> next", pii::secret},
        {"DB_PASSWORD: 'c0rrect-h0rse'", "DB_PASSWORD: '<SECRET_1>'", pii::secret},
        {R"({"api_key": "abc123xyz"})", R"({"api_key": "<SECRET_1>"})", pii::secret},
        {"Authorization: Bearer abcdefghijklmnop1234", "Authorization: Bearer <SECRET_1>", pii::secret},
        {"AWS_ACCESS_KEY_ID=\"AKIAXXBDKVJVG5UWNVAP\"", "AWS_ACCESS_KEY_ID=\"<AWS_KEY_1>\"", pii::aws_key},
        {"Auth: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl", "Auth: Bearer <JWT_1>", pii::jwt},
        {"postgres://admin:s3cr3tpw@db.internal.example.com:5432/app", "postgres://admin:<SECRET_1>@db.internal.example.com:5432/app",
         pii::secret},
        {"ship to 1600 Pennsylvania Avenue NW, Washington, DC 20500 asap", "ship to <ADDRESS_1> asap", pii::address},
        {"at 221B Baker Street.", "at <ADDRESS_1>.", pii::address},
        {"at 42 Main St., Apt 4B, Springfield, IL 62704!", "at <ADDRESS_1>!", pii::address},
    };
    for (const auto& c : cases) {
        scrubber s;
        std::string got = scrub1(c.in, &s);
        CHECK_MESSAGE(got == c.out, c.in, " -> ", got);
        CHECK_MESSAGE(count_of(s, c.kind) == 1, c.in);
    }
}

TEST_CASE("raw JSON text (quarantined lines): escapes are boundaries, nested quotes are handled") {
    CHECK(scrub1(R"({"arguments":"{\"api_key\":\"abc123xyz\",\"to\":\"x\"}"})") ==
          R"({"arguments":"{\"api_key\":\"<SECRET_1>\",\"to\":\"x\"}"})");
    CHECK(scrub1(R"("env:\nAWS_KEY=AKIAIOSFODNN7EXAMPLE\nmail:\nbob@x.io\t4111 1111 1111 1111")") ==
          R"("env:\nAWS_KEY=<AWS_KEY_1>\nmail:\n<EMAIL_1>\t<CARD_1>")");
    CHECK(scrub1(R"("\u00e9sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA2bC7dE")") == R"("\u00e9<API_KEY_1>")");
}

TEST_CASE("PEM private key blocks go whole") {
    std::string pem =
        "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7bq+Zx\nQ2lM9s0a==\n-----END RSA PRIVATE KEY-----\nthanks";
    scrubber s;
    CHECK(scrub1(pem, &s) == "key:\n<PRIVATE_KEY_1>\nthanks");
    CHECK(count_of(s, pii::private_key) == 1);
    // truncated block: the rest of the text goes
    CHECK(scrub1("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA") == "<PRIVATE_KEY_1>");
    // a certificate is public: kept
    std::string cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    CHECK(scrub1(cert) == cert);
}

TEST_CASE("placeholders are consistent within a call and restart with the next") {
    scrubber s;
    std::string a = scrub1("from bob@x.io to amy@y.org", &s);
    std::string b = scrub1("cc BOB@X.IO and amy@y.org, card 4111 1111 1111 1111 / 4111-1111-1111-1111", &s);
    CHECK(a == "from <EMAIL_1> to <EMAIL_2>");
    CHECK(b == "cc <EMAIL_1> and <EMAIL_2>, card <CARD_1> / <CARD_1>");
    CHECK(count_of(s, pii::email) == 4);
    CHECK(count_of(s, pii::card) == 2);
    std::string j;
    s.counts_json(j);
    CHECK(j == R"({"email":4,"card":2})");
    s.reset();
    CHECK(scrub1("amy@y.org", &s) == "<EMAIL_1>");
    CHECK(s.total() == 1);
}

TEST_CASE("look-alikes are left alone") {
    const char* keep[] = {
        "order 4111111111111112 shipped",                 // fails Luhn
        "order #1234567812345678",                        // fails Luhn
        "ref 4111 1111 1111 1112",                        // fails Luhn, grouped
        "id 1234567890123456",                             // Luhn-valid? no issuer prefix 1
        "IBAN DE89 3704 0044 0532 0130 01",               // fails mod-97
        "GB82WEST12345698765433",                          // fails mod-97
        "date 2024-01-15 at 12:30:45",                    // dates and times
        "timestamp 2026-11-25T13:26:23.123Z",
        "version 1.2.3 and 10.0.19041.1 build",            // versions (not 4 octets / not valid)
        "ip-ish 1.2.3.4.5 and 256.1.1.1",
        "std::vector<int> and Foo::bar and a::b",          // C++ scopes
        "mac 00:1A:2B:3C:4D:5E",
        "call_J3ajtA7qivswzXp8A9sJ7foO chatcmpl-Dyln92ILj4hwfpf8pkB29u5SE8WQb",  // provider ids
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "the max_tokens: 200 and prompt_tokens: 12",
        "task-sk-learn pipeline and risk-free",
        "@mention and user@localhost",
        "password: must be 8 chars",                       // prose after ':'
        "password=null and secret: None and token=\"\"",   // trivial values
        "1234-5678-9012 serial",                           // 12 digits in 4s: not a phone
        "tel 12345",
        "The 3 Little Pigs",                               // no street suffix
        "price 1,234.56 USD and 3.14159",
        "Hello World, This Is A Title",
        "<EMAIL_1> and <CARD_2> stay placeholders",
    };
    for (const char* k : keep) {
        scrubber s;
        CHECK_MESSAGE(scrub1(k, &s) == k, k);
        CHECK_MESSAGE(s.total() == 0, k);
    }
}

TEST_CASE("scrubbing is idempotent and off means off") {
    std::string in = "mail a@b.com, key sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA2bC7dE, ip 10.0.0.1";
    std::string once = scrub1(in);
    CHECK(scrub1(once) == once);
    scrubber off(false);
    CHECK(scrub1(in, &off) == in);
    CHECK(off.total() == 0);
}

TEST_CASE("secret keys") {
    for (const char* k : {"password", "DB_PASSWORD", "api_key", "apiKey", "x-api-key", "client_secret",
                          "AWS_SECRET_ACCESS_KEY", "access_token", "github_token", "csrftoken", "pwd", "passwd"})
        CHECK_MESSAGE(scrubber::is_secret_key(k), k);
    for (const char* k : {"max_tokens", "prompt_tokens", "tokens", "keyword", "description", "type", "name",
                          "token_type", "passenger"})
        CHECK_MESSAGE(!scrubber::is_secret_key(k), k);
}

TEST_CASE("BLAKE2b matches the reference (hashlib.blake2b, digest_size=32)") {
    CHECK(blake2b_hex("") == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
    CHECK(blake2b_hex("abc") == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319");
    CHECK(blake2b_hex(std::string(128, 'a')) == "ae2aa48507885c4c950fb809b2076f959cde9f8ea6da260d9a3587df33dac450");
    CHECK(blake2b_hex(std::string(129, 'a')) == "2f64744a6de0d2c0b56e64cf6e29a5aaa255010d415d51c75ccc82f73dccd865");
    std::string bytes;
    for (int r = 0; r < 5; ++r)
        for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
    CHECK(blake2b_hex(bytes) == "82628cbfc9689e234b0923a531f4578fe2e7138a03e2f81ed6cde97517336650");
    CHECK(blake2b_hex("abc", 64) ==
          "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923");
    hasher h;  // incremental in odd pieces
    for (size_t i = 0; i < bytes.size(); i += 97) h.update(std::string_view(bytes).substr(i, 97));
    CHECK(h.hex() == "82628cbfc9689e234b0923a531f4578fe2e7138a03e2f81ed6cde97517336650");
}
