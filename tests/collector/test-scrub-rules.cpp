// collector scrubbing rules, each both ways: every row of the vendor table (scrub-vendors.cpp) has a
// token it must catch and a look-alike it must keep; credentials in prose, values with odd
// characters, query strings and URL userinfo; the precision cases (ids, dates, versions, digests).
#include <doctest/doctest.h>

#include <map>
#include <set>
#include <string>

#include "collector/collector.h"
#include "collector/scrub-internal.h"

using namespace slm::collector;

namespace {

std::string scrub1(const std::string& in, uint32_t* total = nullptr) {
    scrubber s;
    std::string out;
    s.scrub(in, out);
    if (total) *total = s.total();
    return out;
}

const std::string H32 = "0a1b2c3d4e5f60718293a4b5c6d7e8f9", A36 = "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5";

// rule name -> {caught, kept}
const std::map<std::string, std::pair<std::string, std::string>> k_cases = {
    {"aws-access-key-id", {"AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLEX"}},
    {"aws-temporary-key-id", {"ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBO"}},
    {"aws-key-id-abia", {"ABIAY34FZKBOKMUTVV7A", "ABIAy34fzkbokmutvv7a"}},
    {"aws-key-id-acca", {"ACCAY34FZKBOKMUTVV7A", "ACCA-Y34FZKBOKMUTVV7A"}},
    {"aws-group-id", {"AGPAY34FZKBOKMUTVV7A", "AGPAY34FZK"}},
    {"aws-user-id", {"AIDAY34FZKBOKMUTVV7A", "AIDAY34FZKBOKMUTVV7A_B"}},
    {"aws-role-id", {"AROAY34FZKBOKMUTVV7A", "AROAY34"}},
    {"aws-instance-profile-id", {"AIPAY34FZKBOKMUTVV7A", "AIPAY34FZKBOKMUTVV"}},
    {"aws-managed-policy-id", {"ANPAY34FZKBOKMUTVV7A", "ANPAY34FZKBOKMUTV"}},
    {"aws-version-policy-id", {"ANVAY34FZKBOKMUTVV7A", "ANVAY34FZKBOK"}},
    {"aws-a3t-key-id", {"A3TXY34FZKBOKMUTVV7A", "A3TXY34FZKB"}},
    {"gcp-api-key", {"AIzaSyD4f8GhJk2Lm3Np4Qr5St6Uv7Wx8Yz9Ab0C", "AIzaSyD4f8"}},
    {"gcp-oauth-client-secret", {"GOCSPX-" + A36.substr(0, 28), "GOCSPX-short"}},
    {"gcp-oauth-access-token", {"ya29.a0AfH6SMBx" + A36, "ya29.short"}},
    {"azure-storage-account-key", {"AccountKey=" + A36 + A36 + "ab12cd34ef56gh78==", "AccountKey=${STORAGE_KEY}"}},
    {"azure-shared-access-key", {"SharedAccessKey=" + A36 + "Xy12==", "SharedAccessKey=<redacted>"}},
    {"azure-sas-signature", {"sig=k2Fj8%2BqLm4Np6Rs8Tu0Vw2Xy4Za6Bc8De0%3D", "sig=abc"}},
    {"digitalocean-pat", {"dop_v1_" + H32 + H32, "dop_v1_" + H32}},
    {"digitalocean-oauth-token", {"doo_v1_" + H32 + H32, "doo_v1_" + H32 + "zz"}},
    {"digitalocean-refresh-token", {"dor_v1_" + H32 + H32, "dor_v1_" + H32.substr(0, 10)}},
    {"hashicorp-vault-token", {"hvs.CAESIJ" + A36, "hvs.short"}},
    {"stripe-secret-key", {"sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_short"}},
    {"stripe-test-secret-key", {"sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_"}},
    {"stripe-restricted-key", {"rk_live_4eC39HqLyjWDarjtT1zdp7dc", "rk_live_4eC39"}},
    {"stripe-test-restricted-key", {"rk_test_4eC39HqLyjWDarjtT1zdp7dc", "rk_test_4eC"}},
    {"stripe-webhook-secret", {"whsec_" + A36, "whsec_abc"}},
    {"square-access-token", {"sq0atp-" + A36.substr(0, 22), "sq0atp-abc"}},
    {"square-oauth-secret", {"sq0csp-" + A36 + "abcdefg", "sq0csp-" + A36.substr(0, 20)}},
    {"square-production-token", {"EAAA" + A36 + A36.substr(0, 24), "EAAAAB"}},
    {"github-pat", {"ghp_" + A36, "ghp_short"}},
    {"github-oauth-token", {"gho_" + A36, "gho_abc"}},
    {"github-user-to-server", {"ghu_" + A36, "ghu_abc"}},
    {"github-server-to-server", {"ghs_" + A36, "ghs_abc"}},
    {"github-refresh-token", {"ghr_" + A36, "ghr_abc"}},
    {"github-fine-grained-pat", {"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github_pat_x"}},
    {"gitlab-pat", {"glpat-xY9zK2Lm4Np6Qr8St0Uv", "glpat-short"}},
    {"gitlab-deploy-token", {"gldt-xY9zK2Lm4Np6Qr8St0Uv", "gldt-short"}},
    {"gitlab-pipeline-trigger", {"glptt-" + H32, "glptt-abc"}},
    {"gitlab-runner-token", {"glrt-xY9zK2Lm4Np6Qr8St0Uv", "glrt-short"}},
    {"gitlab-oauth-secret", {"gloas-" + H32, "gloas-abc"}},
    {"gitlab-runner-registration", {"GR1348941xY9zK2Lm4Np6Qr8St0Uv", "GR1348941ab"}},
    {"bitbucket-app-password", {"ATBB" + A36.substr(0, 32), "ATBBabcdefghijklmnopqrstuvwxyzabcdef"}},
    {"atlassian-api-token", {"ATATT3xFfGF0" + A36 + A36, "ATATT3short"}},
    {"npm-access-token", {"npm_" + A36, "npm_install"}},
    {"pypi-upload-token", {"pypi-AgEIcHlwaS5vcmc" + A36 + A36, "pypi-package"}},
    {"rubygems-api-key", {"rubygems_" + H32 + H32.substr(0, 16), "rubygems_org"}},
    {"dockerhub-pat", {"dckr_pat_" + A36.substr(0, 27), "dckr_pat_x"}},
    {"anthropic-api-key", {"sk-ant-api03-Xy9Zk2Lm4Np6Qr8St0Uv2Wx4Yz6Ab8Cd0Ef2Gh4Ij6Kl8", "sk-ant-x"}},
    {"openai-api-key", {"sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA2bC7dE", "sk-learn-pipeline-for-classification"}},
    {"huggingface-token", {"hf_" + std::string("aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH"), "hf_hub_download"}},
    {"huggingface-org-token", {"api_org_" + std::string("aBcDeFgHiJkLmNoPqRsTuVwXyZaBcDeFgH"), "api_org_name"}},
    {"groq-api-key", {"gsk_" + A36 + "aB3dE5gH7jK9mN1p", "gsk_short"}},
    {"replicate-api-token", {"r8_" + A36.substr(0, 37), "r8_abc"}},
    {"perplexity-api-key", {"pplx-" + A36 + "aB3dE5gH7jK9", "pplx-short"}},
    {"xai-api-key", {"xai-" + A36 + A36, "xai-grok"}},
    {"slack-bot-token", {"xoxb-1234567890-0987654321-AbCdEfGhIjKl", "xoxb-1"}},
    {"slack-user-token", {"xoxp-1234567890-0987654321-AbCdEfGhIjKl", "xoxp-abc"}},
    {"slack-app-token-legacy", {"xoxa-2-1234567890-AbCdEfGhIjKl", "xoxa-2"}},
    {"slack-refresh-token", {"xoxr-1234567890-AbCdEfGhIjKl", "xoxr-x"}},
    {"slack-workspace-token", {"xoxs-1234567890-AbCdEfGhIjKl", "xoxs-x"}},
    {"slack-config-token", {"xoxe-1-AbCdEfGhIjKl1234567890", "xoxe-1"}},
    {"slack-client-token", {"xoxc-1234567890-AbCdEfGhIjKl", "xoxc"}},
    {"slack-cookie-token", {"xoxd-AbCdEfGhIjKl1234567890", "xoxd-"}},
    {"slack-app-level-token", {"xapp-1-A0123456789-1234567890123-" + H32, "xapp-1"}},
    {"slack-webhook-url", {"https://hooks.slack.com/services/T0123ABCD/B0123ABCD/" + A36.substr(0, 24),
                           "https://hooks.slack.com/services/"}},
    {"slack-workflow-webhook-url", {"https://hooks.slack.com/workflows/T0123ABCD/A0123ABCD/" + H32,
                                    "https://hooks.slack.com/workflows/x"}},
    {"discord-webhook-url", {"https://discord.com/api/webhooks/123456789012345678/" + A36 + A36,
                             "https://discord.com/api/webhooks/"}},
    {"discordapp-webhook-url", {"https://discordapp.com/api/webhooks/123456789012345678/" + A36,
                                "https://discordapp.com/api/"}},
    {"discord-bot-token", {"MTA4NzY1NDMyMTA5ODc2NTQz.GhIjKl." + A36.substr(0, 30), "MTA4NzY1NDMy.GhIjKl.abc"}},
    {"telegram-bot-token", {"123456789:AAH" + A36.substr(0, 32), "12:30 and 123456789:short"}},
    {"twilio-api-key", {"SK" + H32, "SKU" + H32}},
    {"sendgrid-api-key", {"SG." + A36.substr(0, 22) + "." + A36 + "aB3dE5g", "SG.short.parts"}},
    {"mailgun-private-key", {"key-" + H32, "key-value-store-configuration"}},
    {"mailchimp-api-key", {H32 + "-us12", H32 + "-eu12"}},
    {"shopify-access-token", {"shpat_" + H32, "shpat_" + H32.substr(0, 8)}},
    {"shopify-custom-app-token", {"shpca_" + H32, "shpca_x"}},
    {"shopify-private-app-token", {"shppa_" + H32, "shppa_x"}},
    {"shopify-shared-secret", {"shpss_" + H32, "shpss_x"}},
    {"postman-api-key", {"PMAK-" + H32.substr(0, 24) + "-" + H32, "PMAK-x"}},
    {"linear-api-key", {"lin_api_" + A36 + "aB3d", "lin_api_docs"}},
    {"newrelic-user-key", {"NRAK-" + std::string("ABCDEFGHIJ0123456789KLMNOPQ"), "NRAK-ABC"}},
    {"databricks-token", {"dapi" + H32, "dapiabcdef"}},
    {"grafana-cloud-token", {"glc_" + A36 + A36, "glc_x"}},
    {"grafana-service-account", {"glsa_" + A36 + "_" + H32.substr(0, 8), "glsa_x"}},
    {"sentry-org-token", {"sntrys_" + A36 + A36, "sntrys_x"}},
    {"doppler-token", {"dp.pt." + A36 + "aB3dE5gH", "dp.pt.x"}},
    {"age-secret-key", {"AGE-SECRET-KEY-1" + std::string("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7LQPZRY9X8GF2TVDW0S3JN54KHCE"), "AGE-SECRET-KEY-1QP"}},
};

}  // namespace

TEST_CASE("every vendor rule catches its format and keeps a look-alike") {
    using namespace slm::collector::scrub_detail;
    std::set<std::string> names;
    for (const vendor_rule* r = vendor_rules(); r->name; ++r) {
        CHECK_MESSAGE(names.insert(r->name).second, "duplicate rule name ", r->name);
        auto it = k_cases.find(r->name);
        REQUIRE_MESSAGE(it != k_cases.end(), "rule ", r->name, " has no test case");
        const auto& [pos, neg] = it->second;
        uint32_t n = 0;
        std::string got = scrub1("use " + pos + " now", &n);
        CHECK_MESSAGE(n == 1, r->name, ": ", got);
        CHECK_MESSAGE(got.find(pos.substr(pos.size() - 8)) == std::string::npos, r->name, ": ", got);
        // the rule itself matches the positive (not some other rule or detector)
        scan t{pos.data(), pos.size(), 0};
        match m;
        size_t ts = pos.rfind("://") == std::string::npos ? 0 : pos.find("://") + 3;
        const vendor_rule* hit = vendor_at(t, ts, m);
        CHECK_MESSAGE((hit && std::string(hit->name) == r->name), r->name, " matched ", hit ? hit->name : "nothing");
        got = scrub1("use " + neg + " now", &n);
        CHECK_MESSAGE(n == 0, r->name, " negative: ", got);
    }
    CHECK(names.size() == k_cases.size());
}

TEST_CASE("credentials in prose, after a keyword or before one") {
    struct tc {
        const char* in;
        const char* out;
    } cases[] = {
        {"Use API key key_Ab3dEf9hIjKlMn0pQrStUvWxYz123456 please", "Use API key <SECRET_1> please"},
        {"(API key key_Ab3dEf9hIjKlMn0pQrStUvWxYz123456)", "(API key <SECRET_1>)"},
        {"the password is Hunter12#x&y; rotate it", "the password is <SECRET_1>; rotate it"},
        {"Wi-Fi password for guests changed to Guest2025!Ab3c; ask Dana", "Wi-Fi password for guests changed to <SECRET_1>; ask Dana"},
        {"my passphrase: C0rrect;Horse&Battery", "my passphrase: <SECRET_1>"},
        {"Use bearer token zX9yW8vU7tS6rQ5pO4nM3 now", "Use bearer token <SECRET_1> now"},
        {"Type Hunter6697?aJl into the Password input.", "Type <SECRET_1> into the Password input."},
        {"Enter Summer1622$fyT in the \"Password\" text field.", "Enter <SECRET_1> in the \"Password\" text field."},
        {"access key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "access key <SECRET_1>"},
    };
    for (const auto& c : cases) CHECK_MESSAGE(scrub1(c.in) == c.out, c.in, " -> ", scrub1(c.in));
    // a value found once in a call goes wherever it recurs in that call, bare
    scrubber s;
    std::string a, b;
    s.scrub("Type Hunter6697?aJl into the Password input.", a);
    s.scrub(R"({"element_id":50,"text":"Hunter6697?aJl"})", b);
    CHECK(b == R"({"element_id":50,"text":"<SECRET_1>"})");
}

TEST_CASE("values end where the credential ends, whatever characters they hold") {
    struct tc {
        const char* in;
        const char* out;
    } cases[] = {
        {"SMTP_PASSWORD=Summer12&Fh3\nNEXT=1", "SMTP_PASSWORD=<SECRET_1>\nNEXT=1"},
        {"export DB_PASS=a;b#c&d%e\n", "export DB_PASS=<SECRET_1>\n"},
        {"DB_PASSWORD=\"Tr0ub4dor;x&y#12\"", "DB_PASSWORD=\"<SECRET_1>\""},
        {"(user=bob, password=Hunter12#aB); rotate", "(user=bob, password=<SECRET_1>); rotate"},
        {"Server=db;User Id=sa;Password=Ab;c12#3;Database=app", "Server=db;User Id=sa;Password=<SECRET_1>;Database=app"},
        {"postgresql://app:Hun%ter12#x@10.0.0.1:5432/db", "postgresql://app:<SECRET_1>@<IPV4_1>:5432/db"},
        {"mongodb+srv://svc:p@ss#w0rd@cluster0.ab12c.mongodb.net/app", "mongodb+srv://svc:<SECRET_1>@cluster0.ab12c.mongodb.net/app"},
        {"redis://:s3cr3t?x@cache:6379", "redis://:<SECRET_1>@cache:6379"},
        {"GET https://x.io/cb?code=1&access_token=ya3Xk9L2mN&state=ok", "GET https://x.io/cb?code=1&access_token=<SECRET_1>&state=ok"},
        {"https://x.io/f?key=AbC123dEf456&page=2", "https://x.io/f?key=<SECRET_1>&page=2"},
        {"https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&sp=r&sig=k2Fj8%2BqLm4Np6Rs8Tu0Vw2Xy4Za6Bc8De0%3D",
         "https://acct.blob.core.windows.net/c/f.csv?sv=2022-11-02&sp=r&sig=<SECRET_1>"},
        {"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5aB3dE5gH7jK9mN1p==;EndpointSuffix=core.windows.net",
         "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=<SECRET_1>;EndpointSuffix=core.windows.net"},
    };
    for (const auto& c : cases) CHECK_MESSAGE(scrub1(c.in) == c.out, c.in, " -> ", scrub1(c.in));
}

TEST_CASE("precision: ids, dates, versions, digests, references and prose stay") {
    const char* keep[] = {
        "token call_J3ajtA7qivswzXp8A9sJ7foO returned",           // tool-call id after a keyword
        "the auth ticket OPS-4821 and order ORD-2025-99281",     // ticket / order ids
        "password reset for SKU-88213-B on 2025-03-03T08:00:12.345Z",
        "secret sauce v2.14.3 released",                          // version
        "token 550e8400-e29b-41d4-a716-446655440000",             // UUID
        "commit sha 9fceb02d0ae598e95dc970b74767f19372d6af2b",     // commit sha named as such
        "content digest sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "aws_secret_access_key=AWS_SECRET_ACCESS_KEY)",           // a constant's name
        "password = settings.db_password",                        // a reference
        "Hard-coded AWS credentials in the source.",              // hyphenated prose
        "tests pass on fix/abc-123",                              // branch name
        "{\"message_id\":\"<ab12cd34ef56@mail.acme.io>\"}",      // Message-ID
        "the max_tokens: 4096 and token count 12345678",
        "https://medium.com/@author/post-123 and https://api.acme.io/v1/orders?limit=50&status=open",
    };
    for (const char* k : keep) {
        uint32_t n = 0;
        std::string got = scrub1(k, &n);
        CHECK_MESSAGE(got == k, k, " -> ", got);
        CHECK_MESSAGE(n == 0, k);
    }
}
