// S2 scrubbing, vendor formats: one table of the token formats cloud, payment, code-host, registry,
// AI, chat and SaaS vendors issue (prefix + body alphabet + length), and the matcher that reads it.
//
// The families follow gitleaks' default rule set and detect-secrets' plugins (read for coverage,
// not copied): a rule is a literal prefix and a body, so adding a vendor is adding a row. Rules
// whose token has no prefix (Telegram, Discord, Mailchimp) carry a shape flag instead. Order
// matters only where prefixes overlap: the first matching row wins (sk-ant- before sk-).
#include <array>
#include <vector>

#include "collector/scrub-internal.h"

namespace slm::collector::scrub_detail {

namespace {

using cs = charset;
constexpr pii K = pii::api_key, GH = pii::github_token, SL = pii::slack_token, AWS = pii::aws_key, S = pii::secret;

// clang-format off
const vendor_rule k_rules[] = {
    // ---- cloud ----
    {"aws-access-key-id",          "AKIA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-temporary-key-id",       "ASIA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-key-id-abia",            "ABIA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-key-id-acca",            "ACCA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-group-id",               "AGPA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-user-id",                "AIDA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-role-id",                "AROA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-instance-profile-id",    "AIPA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-managed-policy-id",      "ANPA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-version-policy-id",      "ANVA", cs::upper_digit, 16, 16, AWS, vf_exact},
    {"aws-a3t-key-id",             "A3T",  cs::upper_digit, 17, 17, AWS, vf_exact},
    {"gcp-api-key",                "AIza", cs::b64url, 30, 40, K, 0},
    {"gcp-oauth-client-secret",    "GOCSPX-", cs::b64url, 24, 40, K, 0},
    {"gcp-oauth-access-token",     "ya29.", cs::token, 30, 2048, K, 0},
    {"azure-storage-account-key",  "AccountKey=", cs::b64, 40, 128, S, vf_keep_prefix},
    {"azure-shared-access-key",    "SharedAccessKey=", cs::b64, 40, 128, S, vf_keep_prefix},
    {"azure-sas-signature",        "sig=", cs::b64, 20, 256, S, vf_keep_prefix},
    {"digitalocean-pat",           "dop_v1_", cs::hex_lower, 64, 64, K, vf_exact},
    {"digitalocean-oauth-token",   "doo_v1_", cs::hex_lower, 64, 64, K, vf_exact},
    {"digitalocean-refresh-token", "dor_v1_", cs::hex_lower, 64, 64, K, vf_exact},
    {"hashicorp-vault-token",      "hvs.", cs::b64url, 24, 512, K, 0},
    // ---- payments ----
    {"stripe-secret-key",          "sk_live_", cs::alnum, 24, 247, K, 0},
    {"stripe-test-secret-key",     "sk_test_", cs::alnum, 24, 247, K, 0},
    {"stripe-restricted-key",      "rk_live_", cs::alnum, 24, 247, K, 0},
    {"stripe-test-restricted-key", "rk_test_", cs::alnum, 24, 247, K, 0},
    {"stripe-webhook-secret",      "whsec_", cs::alnum, 32, 128, K, 0},
    {"square-access-token",        "sq0atp-", cs::b64url, 22, 64, K, 0},
    {"square-oauth-secret",        "sq0csp-", cs::b64url, 43, 64, K, 0},
    {"square-production-token",    "EAAA", cs::b64url, 60, 128, K, 0},
    // ---- code hosts ----
    {"github-pat",                 "ghp_", cs::alnum, 30, 255, GH, 0},
    {"github-oauth-token",         "gho_", cs::alnum, 30, 255, GH, 0},
    {"github-user-to-server",      "ghu_", cs::alnum, 30, 255, GH, 0},
    {"github-server-to-server",    "ghs_", cs::alnum, 30, 255, GH, 0},
    {"github-refresh-token",       "ghr_", cs::alnum, 30, 255, GH, 0},
    {"github-fine-grained-pat",    "github_pat_", cs::word, 22, 255, GH, 0},
    {"gitlab-pat",                 "glpat-", cs::b64url, 20, 64, K, 0},
    {"gitlab-deploy-token",        "gldt-", cs::b64url, 20, 64, K, 0},
    {"gitlab-pipeline-trigger",    "glptt-", cs::b64url, 20, 64, K, 0},
    {"gitlab-runner-token",        "glrt-", cs::b64url, 20, 64, K, 0},
    {"gitlab-oauth-secret",        "gloas-", cs::b64url, 20, 80, K, 0},
    {"gitlab-runner-registration", "GR1348941", cs::b64url, 20, 64, K, 0},
    {"bitbucket-app-password",     "ATBB", cs::alnum, 28, 64, K, vf_digit},
    {"atlassian-api-token",        "ATATT3", cs::token, 50, 256, K, 0},
    // ---- package registries ----
    {"npm-access-token",           "npm_", cs::alnum, 36, 36, K, vf_exact},
    {"pypi-upload-token",          "pypi-", cs::b64url, 50, 512, K, 0},
    {"rubygems-api-key",           "rubygems_", cs::hex_lower, 48, 48, K, vf_exact},
    {"dockerhub-pat",              "dckr_pat_", cs::b64url, 24, 64, K, 0},
    // ---- AI providers ----
    {"anthropic-api-key",          "sk-ant-", cs::b64url, 20, 255, K, 0},
    {"openai-api-key",             "sk-", cs::b64url, 20, 255, K, vf_digit},
    {"huggingface-token",          "hf_", cs::alpha, 30, 40, K, 0},
    {"huggingface-org-token",      "api_org_", cs::alpha, 30, 40, K, 0},
    {"groq-api-key",               "gsk_", cs::alnum, 40, 64, K, 0},
    {"replicate-api-token",        "r8_", cs::alnum, 30, 48, K, 0},
    {"perplexity-api-key",         "pplx-", cs::alnum, 40, 64, K, 0},
    {"xai-api-key",                "xai-", cs::alnum, 60, 100, K, 0},
    // ---- chat ----
    {"slack-bot-token",            "xoxb-", cs::token, 10, 255, SL, 0},
    {"slack-user-token",           "xoxp-", cs::token, 10, 255, SL, 0},
    {"slack-app-token-legacy",     "xoxa-", cs::token, 10, 255, SL, 0},
    {"slack-refresh-token",        "xoxr-", cs::token, 10, 255, SL, 0},
    {"slack-workspace-token",      "xoxs-", cs::token, 10, 255, SL, 0},
    {"slack-config-token",         "xoxe-", cs::token, 10, 255, SL, 0},
    {"slack-client-token",         "xoxc-", cs::token, 10, 255, SL, 0},
    {"slack-cookie-token",         "xoxd-", cs::token, 10, 255, SL, 0},
    {"slack-app-level-token",      "xapp-", cs::token, 10, 255, SL, 0},
    {"slack-webhook-url",          "hooks.slack.com/services/", cs::token, 20, 255, SL, vf_url},
    {"slack-workflow-webhook-url", "hooks.slack.com/workflows/", cs::token, 20, 255, SL, vf_url},
    {"discord-webhook-url",        "discord.com/api/webhooks/", cs::token, 20, 255, K, vf_url},
    {"discordapp-webhook-url",     "discordapp.com/api/webhooks/", cs::token, 20, 255, K, vf_url},
    {"discord-bot-token",          "", cs::b64url, 0, 0, K, vf_discord},
    {"telegram-bot-token",         "", cs::b64url, 0, 0, K, vf_telegram},
    // ---- SaaS ----
    {"twilio-api-key",             "SK", cs::hex, 32, 32, K, vf_exact | vf_digit},
    {"sendgrid-api-key",           "SG.", cs::b64url, 0, 0, K, vf_sendgrid},
    {"mailgun-private-key",        "key-", cs::hex, 32, 32, K, vf_exact | vf_digit},
    {"mailchimp-api-key",          "", cs::hex, 0, 0, K, vf_mailchimp},
    {"shopify-access-token",       "shpat_", cs::hex, 32, 32, K, vf_exact},
    {"shopify-custom-app-token",   "shpca_", cs::hex, 32, 32, K, vf_exact},
    {"shopify-private-app-token",  "shppa_", cs::hex, 32, 32, K, vf_exact},
    {"shopify-shared-secret",      "shpss_", cs::hex, 32, 32, K, vf_exact},
    {"postman-api-key",            "PMAK-", cs::b64url, 24, 80, K, 0},
    {"linear-api-key",             "lin_api_", cs::alnum, 40, 40, K, vf_exact},
    {"newrelic-user-key",          "NRAK-", cs::upper_digit, 27, 27, K, vf_exact},
    {"databricks-token",           "dapi", cs::hex_lower, 32, 32, K, vf_exact | vf_digit},
    {"grafana-cloud-token",        "glc_", cs::b64, 32, 400, K, 0},
    {"grafana-service-account",    "glsa_", cs::word, 32, 64, K, 0},
    {"sentry-org-token",           "sntrys_", cs::b64, 40, 400, K, 0},
    {"doppler-token",              "dp.pt.", cs::alnum, 40, 64, K, 0},
    {"age-secret-key",             "AGE-SECRET-KEY-1", cs::upper_digit, 58, 58, K, vf_exact},
    {nullptr, nullptr, cs::alnum, 0, 0, K, 0},
};
// clang-format on

bool in_set(charset c, char ch) {
    switch (c) {
    case cs::alnum: return is_alnum(ch);
    case cs::b64url: return is_b64url(ch);
    case cs::b64: return is_alnum(ch) || ch == '+' || ch == '/' || ch == '=' || ch == '%';
    case cs::hex_lower: return is_digit(ch) || (ch >= 'a' && ch <= 'f');
    case cs::hex: return is_hex(ch);
    case cs::upper_digit: return is_upper(ch) || is_digit(ch);
    case cs::alpha: return is_alpha(ch);
    case cs::word: return is_word(ch);
    case cs::token: return is_b64url(ch) || ch == '.' || (ch == '/');
    }
    return false;
}

size_t body_run(const scan& t, size_t i, charset c, size_t cap = 4096) {
    size_t j = i;
    while (j < t.n && j - i < cap && in_set(c, t.s[j])) ++j;
    return j;
}

bool has_digit(const char* s, size_t n) {
    for (size_t k = 0; k < n; ++k)
        if (is_digit(s[k])) return true;
    return false;
}

// Rules by the first byte of their prefix; shape-only rules apart.
struct rule_index {
    std::array<std::vector<const vendor_rule*>, 128> by_first;
    std::vector<const vendor_rule*> shapes;
    rule_index() {
        for (const vendor_rule* r = k_rules; r->name; ++r) {
            if (!r->prefix[0])
                shapes.push_back(r);
            else
                by_first[static_cast<unsigned char>(r->prefix[0]) & 127].push_back(r);
        }
    }
};
const rule_index& index() {
    static const rule_index ix;
    return ix;
}

// SG.<22 b64url>.<43 b64url>
size_t sendgrid_end(const scan& t, size_t b) {
    size_t e1 = body_run(t, b, cs::b64url);
    if (e1 - b != 22 || t.at(e1) != '.') return 0;
    size_t e2 = body_run(t, e1 + 1, cs::b64url);
    return e2 - (e1 + 1) == 43 ? e2 : 0;
}

// <8-10 digits>:<35 b64url>
size_t telegram_end(const scan& t, size_t ts) {
    size_t d = ts;
    while (d < t.n && is_digit(t.s[d]) && d - ts <= 10) ++d;
    if (d - ts < 8 || d - ts > 10 || t.at(d) != ':') return 0;
    size_t e = body_run(t, d + 1, cs::b64url);
    return e - (d + 1) == 35 ? e : 0;
}

// [MNO]<23-27 b64url>.<6 b64url>.<27+ b64url>: a base64 user id, a timestamp, an HMAC
size_t discord_end(const scan& t, size_t ts) {
    char c = t.at(ts);
    if (c != 'M' && c != 'N' && c != 'O') return 0;
    size_t e1 = body_run(t, ts, cs::b64url);
    if (e1 - ts < 24 || e1 - ts > 28 || t.at(e1) != '.') return 0;
    size_t e2 = body_run(t, e1 + 1, cs::b64url);
    if (e2 - (e1 + 1) != 6 || t.at(e2) != '.') return 0;
    size_t e3 = body_run(t, e2 + 1, cs::b64url);
    if (e3 - (e2 + 1) < 27 || !has_digit(t.s + ts, e3 - ts)) return 0;
    return e3;
}

// <32 lowercase hex>-us<1-2 digits>
size_t mailchimp_end(const scan& t, size_t ts) {
    size_t e = body_run(t, ts, cs::hex_lower);
    if (e - ts != 32 || !t.starts(e, "-us")) return 0;
    size_t d = e + 3;
    while (d < t.n && is_digit(t.s[d]) && d - (e + 3) < 3) ++d;
    if (d == e + 3 || d - (e + 3) > 2 || is_alnum(t.at(d))) return 0;
    return d;
}

}  // namespace

const vendor_rule* vendor_rules() { return k_rules; }

const vendor_rule* vendor_at(const scan& t, size_t ts, match& m) {
    const unsigned char c0 = static_cast<unsigned char>(t.at(ts));
    if (c0 >= 128) return nullptr;
    for (const vendor_rule* r : index().by_first[c0]) {
        size_t pl = std::strlen(r->prefix);
        if (ts + pl > t.n || std::memcmp(t.s + ts, r->prefix, pl) != 0) continue;
        size_t b = ts + pl, e;
        if (r->flags & vf_sendgrid) {
            e = sendgrid_end(t, b);
            if (!e) continue;
        } else {
            e = body_run(t, b, r->body);
            size_t len = e - b;
            if (len < r->min || ((r->flags & vf_exact) && len > r->max)) continue;
            if ((r->flags & vf_digit) && !has_digit(t.s + b, len)) continue;
            // a body that runs on into more word characters is some other identifier
            if (is_word(t.at(e)) && r->body != cs::b64 && r->body != cs::token) continue;
        }
        m = {(r->flags & (vf_url | vf_keep_prefix)) ? b : ts, e, r->kind, false, false};
        return r;
    }
    if (is_alnum(static_cast<char>(c0))) {
        for (const vendor_rule* r : index().shapes) {
            size_t e = 0;
            if (r->flags & vf_telegram) e = is_digit(static_cast<char>(c0)) ? telegram_end(t, ts) : 0;
            else if (r->flags & vf_discord) e = discord_end(t, ts);
            else if (r->flags & vf_mailchimp) e = is_hex(static_cast<char>(c0)) ? mailchimp_end(t, ts) : 0;
            if (e && !is_word(t.at(e))) {
                m = {ts, e, r->kind, false, false};
                return r;
            }
        }
    }
    return nullptr;
}

}  // namespace slm::collector::scrub_detail
