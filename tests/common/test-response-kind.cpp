// common/response-kind.h: the one response classifier of collect, cluster and eval, pinned on the
// edge cases where the two classifiers it replaced disagreed.
#include <doctest/doctest.h>

#include <string>

#include "common/response-kind.h"

using namespace slm;

namespace {
std::string kind(std::string_view text, std::string_view tool_calls = "") {
    return response_kind_name(classify_response(text, tool_calls));
}
}  // namespace

TEST_CASE("tool calls win over any text; empty, [] and null are no tool calls") {
    const char* calls = R"([{"name":"f","arguments":{}}])";
    CHECK(kind("", calls) == "tool_call");
    CHECK(kind("Let me look that up.", calls) == "tool_call");  // tool_calls with content
    CHECK(kind("{\"a\": 1}", calls) == "tool_call");
    CHECK(kind("{\"a\": 1}", "[]") == "json");
    CHECK(kind("{\"a\": 1}", " null ") == "json");
    CHECK(kind("hi", "  \n") == "prose");
}

TEST_CASE("empty content") {
    CHECK(kind("") == "empty");
    CHECK(kind(" \n\t ") == "empty");
    CHECK(kind("", "[]") == "empty");
}

TEST_CASE("JSON: a whole object or array, bare or in one fenced block") {
    CHECK(kind("{\"title\": \"x\"}") == "json");
    CHECK(kind("  \n{\"a\": [1, 2]}\n") == "json");
    CHECK(kind("[1, 2, 3]") == "json");                 // arrays
    CHECK(kind("[]") == "json");
    CHECK(kind("[{\"a\": 1}, {\"a\": 2}]") == "json");
    CHECK(kind("```json\n{\"a\": 1}\n```") == "json");  // fenced ```json
    CHECK(kind("```JSON\n[1, 2]\n```") == "json");
    CHECK(kind("```\n{\"a\": 1}\n```") == "json");      // untagged fence
    CHECK(kind("42") == "prose");                       // scalars are not structured output
    CHECK(kind("\"just a string\"") == "prose");
    CHECK(kind("{not json") == "prose");
    CHECK(kind("[1, 2") == "prose");
}

TEST_CASE("JSON with text around it is not JSON") {
    CHECK(kind("Sure! Here it is: {\"a\": 1}") == "prose");         // leading text
    CHECK(kind("{\"a\": 1} is what you asked for") == "prose");    // trailing text
    CHECK(kind("Here:\n```json\n{\"a\": 1}\n```") == "code");      // text before the fence
    CHECK(kind("```json\n{\"a\": 1}\n```\nHope this helps!") == "code");  // text after it
    CHECK(kind("```json\n{\"a\": 1}\n```\n```json\n{\"b\": 2}\n```") == "code");  // two blocks
    CHECK(kind("```json\n{broken\n```") == "code");
    CHECK(kind("```python\n[1, 2]\n```") == "code");               // fenced, not tagged json
}

TEST_CASE("code: fences, a program's first line, or mostly statements") {
    CHECK(kind("```python\ndef f():\n    return 1\n```") == "code");
    CHECK(kind("def f(x):\n    return x") == "code");
    CHECK(kind("SELECT name FROM users WHERE id = 3") == "code");   // one line of SQL
    CHECK(kind("#include <stdio.h>\nint main() { return 0; }") == "code");
    CHECK(kind("x = os.getcwd();\nprint(x);\ny = 2;\n") == "code");
    CHECK(kind("The fix:\nlet a = 1;\nlet b = 2;\nconsole.log(a + b);") == "code");
}

TEST_CASE("prose") {
    CHECK(kind("The root cause is a race between two writers.") == "prose");
    CHECK(kind("From the logs, the job failed at 03:00.") == "prose");  // "From", not "from "
    CHECK(kind("Steps:\n1. open the file\n2. save it\n3. close it") == "prose");
    CHECK(kind("Use `x = 1;` here.\nThen restart.\nDone.") == "prose");
}
