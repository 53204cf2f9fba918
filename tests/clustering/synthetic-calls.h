// Seeded synthetic calls for the clustering tests: a few task types of different shape (templated
// tool calls, JSON extraction, open-ended reasoning) written into a store like collect would.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/store.h"

namespace slm::test {

struct synthetic_call {
    std::string type;          ///< ground truth task type
    std::string workload_id;
    std::string task_text;     ///< as collect writes it: user turn, tools, response shape
    std::string system_prompt;
    std::string response_text;
    std::string response_tool_calls;  ///< JSON array or ""
    int64_t prompt_tokens = 0, completion_tokens = 0;
};

class synth {
public:
    explicit synth(uint64_t seed) : rng_(seed) {}

    template <size_t N> const char* pick(const char* const (&a)[N]) { return a[rng_() % N]; }
    int num(int lo, int hi) { return lo + static_cast<int>(rng_() % static_cast<uint64_t>(hi - lo + 1)); }

    /// A pronounceable made-up word: open-ended text that shares little vocabulary.
    std::string word() {
        static const char* const syl[] = {"ka", "lo", "mi", "re", "tu", "ven", "sar", "pol", "dri", "que", "zen",
                                          "bar", "fil", "gor", "hap", "jun", "nex", "vor", "tal", "wim"};
        std::string w;
        for (int i = num(2, 3); i > 0; --i) w += pick(syl);
        return w;
    }

    synthetic_call ticket() {
        static const char* const things[] = {"printer", "VPN", "disk", "login", "wiki", "badge reader", "mailbox",
                                             "laptop", "monitor", "router", "phone", "projector", "scanner", "dock"};
        static const char* const problems[] = {"offline", "keeps dropping", "is full", "loops", "is slow", "is broken",
                                               "bounces mail", "overheats", "flickers", "will not boot"};
        static const char* const prio[] = {"urgent", "high", "normal", "low"};
        static const char* const lead[] = {"Open a ticket:", "Please file a ticket -", "Create a ticket for",
                                           "Log an incident:"};
        synthetic_call c;
        c.type = "ticket";
        c.workload_id = "ops.tool_caller";
        std::string issue = std::string(pick(things)) + " " + pick(problems);
        std::string where = "floor " + std::to_string(num(1, 40)) + " room " + std::to_string(num(100, 999));
        std::string p = pick(prio);
        c.task_text = std::string(pick(lead)) + " " + issue + " on " + where + ", priority " + p +
                      "\ntools: create_ticket, send_email, lookup_record\nresponse: tool_call:create_ticket";
        c.system_prompt = ops_system;
        c.response_tool_calls =
            nlohmann::json::array({{{"name", "create_ticket"},
                                    {"arguments", {{"title", issue + " (" + where + ")"}, {"priority", p}}}}})
                .dump();
        c.prompt_tokens = num(180, 220);
        c.completion_tokens = num(18, 26);
        return c;
    }

    synthetic_call email() {
        static const char* const people[] = {"Dana", "Rui", "Mia", "Omar", "Lena", "Theo", "Ines", "Karl", "Ada",
                                             "Bo", "Chen", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jo"};
        static const char* const events[] = {"the release", "the offsite", "payroll", "the demo", "the audit",
                                             "the board meeting", "the launch", "the training", "the retro"};
        static const char* const days[] = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"};
        static const char* const lead[] = {"Email", "Send an email to", "Drop a mail to", "Write to"};
        synthetic_call c;
        c.type = "email";
        c.workload_id = "ops.tool_caller";
        std::string who = pick(people);
        std::string what = std::string(pick(events)) + " moved to " + pick(days) + " at " + std::to_string(num(8, 18)) + ":00";
        c.task_text = std::string(pick(lead)) + " " + who + " and tell them " + what +
                      "\ntools: create_ticket, send_email, lookup_record\nresponse: tool_call:send_email";
        c.system_prompt = ops_system;
        c.response_tool_calls =
            nlohmann::json::array({{{"name", "send_email"},
                                    {"arguments", {{"to", who + "@example.com"}, {"subject", "FYI"}, {"body", what}}}}})
                .dump();
        c.prompt_tokens = num(170, 210);
        c.completion_tokens = num(25, 40);
        return c;
    }

    synthetic_call invoice_json() {
        static const char* const vendors[] = {"Acme GmbH", "Globex", "Initech", "Umbrella Ltd", "Hooli", "Stark AG",
                                              "Wayne Co", "Tyrell", "Cyberdyne", "Soylent"};
        static const char* const lead[] = {"Extract vendor, total and due date as JSON from this invoice:",
                                           "Return the invoice fields (vendor, total, due date) as JSON:",
                                           "Parse this invoice into JSON with vendor, total and due:"};
        synthetic_call c;
        c.type = "invoice";
        c.workload_id = "docs.extractor";
        std::string vendor = pick(vendors);
        int amount = num(100, 9000);
        std::string date = "2025-0" + std::to_string(num(1, 9)) + "-1" + std::to_string(num(0, 9));
        c.task_text = std::string(pick(lead)) + "\nINVOICE " + std::to_string(num(1000, 9999)) + " " + vendor +
                      " total EUR " + std::to_string(amount) + ".00 due " + date + "\nresponse: json";
        c.system_prompt = "You extract fields from business documents. Answer with JSON only.";
        c.response_text = nlohmann::json{{"vendor", vendor}, {"total", amount}, {"due", date}}.dump();
        c.prompt_tokens = num(90, 120);
        c.completion_tokens = num(20, 30);
        return c;
    }

    synthetic_call reasoning() {
        static const char* const lead[] = {"Why does", "Help me understand why", "Investigate why"};
        static const char* const tail[] = {"Think it through and propose next steps.", "Reason step by step.",
                                           "What would you check first?"};
        synthetic_call c;
        c.type = "reasoning";
        c.workload_id = "dev.reviewer";
        c.task_text = std::string(pick(lead)) + " the " + word() + " service fail after the " + word() + " change? " +
                      pick(tail) + "\nresponse: prose";
        c.system_prompt = "You are a senior engineer who debugs production incidents.";
        int n = num(350, 700);
        for (int i = 0; i < n; ++i) {
            c.response_text += word();
            c.response_text += (i % 13 == 12) ? ". " : " ";
        }
        c.prompt_tokens = num(300, 900);
        c.completion_tokens = num(700, 1600);
        return c;
    }

    /// `n` calls drawn with weights ticket 4 : email 3 : invoice 2 : reasoning 1.
    std::vector<synthetic_call> mix(int n) {
        std::vector<synthetic_call> out;
        for (int i = 0; i < n; ++i) {
            int r = static_cast<int>(rng_() % 10);
            out.push_back(r < 4 ? ticket() : r < 7 ? email() : r < 9 ? invoice_json() : reasoning());
        }
        return out;
    }

private:
    static constexpr const char* ops_system =
        "You are the operations assistant of ACME. Use the tools to act on the user's request. Never invent "
        "data; ask when a field is missing. Be brief.";
    std::mt19937_64 rng_;
};

/// Writes calls into `d` as a collect run would (call ids 1..n in order); returns the run id.
inline int64_t store_calls(store::db& d, const std::vector<synthetic_call>& calls) {
    int64_t run = store::begin_run(d, "collect", "{}");
    store::txn tx(d);
    auto s = d.prepare(
        "INSERT INTO calls (content_id, response_id, run_id, source_file, source_line, format, workload_id, messages, "
        "response_text, response_tool_calls, prompt_tokens, completion_tokens, task_text) "
        "VALUES (?, ?, ?, 'synthetic.jsonl', ?, 'flywheel', ?, ?, ?, ?, ?, ?, ?)");
    for (size_t i = 0; i < calls.size(); ++i) {
        const auto& c = calls[i];
        nlohmann::json messages = nlohmann::json::array(
            {{{"role", "system"}, {"content", c.system_prompt}}, {{"role", "user"}, {"content", c.task_text}}});
        s.bind_all("content-" + std::to_string(i), "chatcmpl-" + std::to_string(i), run, static_cast<int64_t>(i + 1),
                   c.workload_id, messages.dump());
        if (c.response_text.empty()) s.bind_null(7);
        else s.bind(7, c.response_text);
        if (c.response_tool_calls.empty()) s.bind_null(8);
        else s.bind(8, c.response_tool_calls);
        s.bind(9, c.prompt_tokens);
        s.bind(10, c.completion_tokens);
        s.bind(11, c.task_text);
        s.run();
    }
    tx.commit();
    store::finish_run(d, run, "ok", "{}");
    return run;
}

}  // namespace slm::test
