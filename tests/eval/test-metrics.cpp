// eval/ metrics: BFCL-style tool-call checks (one passing and one failing case per rule), the JSON
// schema subset, chrF / ROUGE-L against hand-computed (and sacrebleu / rouge-score) values,
// Wilson and bootstrap intervals, verdicts, the replaceable share, prices and the judge parser.
#include <doctest/doctest.h>

#include <fstream>

#include "common/common.h"
#include "eval/metrics.h"
#include "tests/test-util.h"

using namespace slm;
using namespace slm::eval;
using nlohmann::json;
using model::tool_call;

namespace {

// get_weather(city: string required, unit: string enum, days: integer, lat: number, verbose: boolean,
//             tags: array of string, where: object {city: string, zip: string})
const char* weather_tools = R"([{"type":"function","function":{"name":"get_weather","parameters":{
  "type":"object","properties":{
    "city":{"type":"string"},"unit":{"type":"string","enum":["c","f"],"default":"c"},
    "days":{"type":"integer"},"lat":{"type":"number"},"verbose":{"type":"boolean"},
    "tags":{"type":"array","items":{"type":"string"}},
    "where":{"type":"object","properties":{"city":{"type":"string"},"zip":{"type":"string"}}}},
  "required":["city"]}}},
 {"type":"function","function":{"name":"send_email","parameters":{"type":"object",
  "properties":{"to":{"type":"string"},"body":{"type":"string"}},"required":["to","body"]}}}])";

tool_call call(std::string name, std::string args) { return {"", std::move(name), std::move(args)}; }

tool_check one(const std::string& gen_args, const std::string& ref_args, const char* tools = weather_tools,
               const std::string& gen_name = "get_weather") {
    return check_tool_calls({call(gen_name, gen_args)}, {call("get_weather", ref_args)}, tools);
}

}  // namespace

TEST_CASE("tool calls: a matching call passes both accuracies") {
    auto r = one(R"({"city":"Paris","days":3})", R"({"days":3,"city":"Paris"})");
    CHECK(r.name_ok);
    CHECK(r.args_ok);
    CHECK(r.failure == call_failure::none);
    CHECK_FALSE(r.schema_missing);
    REQUIRE(r.calls.size() == 1);
    CHECK(r.calls[0].args_ok);
}

TEST_CASE("tool calls: function name must match") {
    auto r = one(R"({"city":"Paris"})", R"({"city":"Paris"})", weather_tools, "get_forecast");
    CHECK_FALSE(r.name_ok);
    CHECK_FALSE(r.args_ok);
    CHECK(r.failure == call_failure::wrong_name);
    CHECK(r.detail.find("get_weather") != std::string::npos);
    CHECK(std::string(failure_name(r.failure)) == "wrong_name");
}

TEST_CASE("tool calls: the number of calls must match") {
    auto ok = check_tool_calls({call("get_weather", R"({"city":"a"})"), call("get_weather", R"({"city":"b"})")},
                               {call("get_weather", R"({"city":"a"})"), call("get_weather", R"({"city":"b"})")},
                               weather_tools);
    CHECK(ok.args_ok);
    auto r = check_tool_calls({call("get_weather", R"({"city":"a"})")},
                              {call("get_weather", R"({"city":"a"})"), call("get_weather", R"({"city":"b"})")},
                              weather_tools);
    CHECK_FALSE(r.name_ok);
    CHECK_FALSE(r.args_ok);
    CHECK(r.failure == call_failure::wrong_count);
    CHECK(r.detail.find("1 call(s), the reference has 2") != std::string::npos);
    auto none = check_tool_calls({}, {call("get_weather", R"({"city":"a"})")}, weather_tools);
    CHECK(none.failure == call_failure::wrong_count);
    auto extra = check_tool_calls({call("get_weather", R"({"city":"a"})")}, {}, weather_tools);
    CHECK(extra.failure == call_failure::wrong_count);
    auto both_empty = check_tool_calls({}, {}, weather_tools);
    CHECK(both_empty.args_ok);
}

TEST_CASE("tool calls: required parameters must be present") {
    auto r = check_tool_calls({call("send_email", R"({"to":"a@b.c"})")}, {call("send_email", R"({"to":"a@b.c"})")},
                              weather_tools);
    CHECK(r.name_ok);
    CHECK_FALSE(r.args_ok);
    CHECK(r.failure == call_failure::missing_param);
    CHECK(r.detail.find("'body'") != std::string::npos);
    auto ok = check_tool_calls({call("send_email", R"({"to":"a@b.c","body":"hi"})")},
                               {call("send_email", R"({"to":"a@b.c","body":"hi"})")}, weather_tools);
    CHECK(ok.args_ok);
}

TEST_CASE("tool calls: no parameter absent from the schema") {
    auto r = one(R"({"city":"Paris","colour":"red"})", R"({"city":"Paris","colour":"red"})");
    CHECK(r.failure == call_failure::unexpected_param);
    CHECK(r.detail.find("'colour' is not a parameter") != std::string::npos);
    CHECK(one(R"({"city":"Paris","unit":"f"})", R"({"city":"Paris","unit":"f"})").args_ok);
}

TEST_CASE("tool calls: types per the JSON schema, integer accepted for number") {
    // string
    CHECK(one(R"({"city":3})", R"({"city":"3"})").failure == call_failure::wrong_type);
    // integer: 3 and 3.0 are integers (JSON Schema), 3.5 is not
    CHECK(one(R"({"city":"x","days":3})", R"({"city":"x","days":3})").args_ok);
    CHECK(one(R"({"city":"x","days":3.0})", R"({"city":"x","days":3})").args_ok);
    CHECK(one(R"({"city":"x","days":3.5})", R"({"city":"x","days":3.5})").failure == call_failure::wrong_type);
    CHECK(one(R"({"city":"x","days":"3"})", R"({"city":"x","days":3})").failure == call_failure::wrong_type);
    // number: an integer passes
    CHECK(one(R"({"city":"x","lat":48})", R"({"city":"x","lat":48.0})").args_ok);
    CHECK(one(R"({"city":"x","lat":"48"})", R"({"city":"x","lat":48})").failure == call_failure::wrong_type);
    // boolean
    CHECK(one(R"({"city":"x","verbose":true})", R"({"city":"x","verbose":true})").args_ok);
    CHECK(one(R"({"city":"x","verbose":"true"})", R"({"city":"x","verbose":true})").failure == call_failure::wrong_type);
    // array (and its items)
    CHECK(one(R"({"city":"x","tags":["a"]})", R"({"city":"x","tags":["a"]})").args_ok);
    CHECK(one(R"({"city":"x","tags":"a"})", R"({"city":"x","tags":["a"]})").failure == call_failure::wrong_type);
    auto item = one(R"({"city":"x","tags":["a",2]})", R"({"city":"x","tags":["a","2"]})");
    CHECK(item.failure == call_failure::wrong_type);
    CHECK(item.detail.find("'tags'[1]") != std::string::npos);
    // object (and its properties)
    CHECK(one(R"({"city":"x","where":{"zip":"1"}})", R"({"city":"x","where":{"zip":"1"}})").args_ok);
    CHECK(one(R"({"city":"x","where":[1]})", R"({"city":"x","where":{"zip":"1"}})").failure == call_failure::wrong_type);
    CHECK(one(R"({"city":"x","where":{"zip":1}})", R"({"city":"x","where":{"zip":"1"}})").failure ==
          call_failure::wrong_type);
    // a list of types
    const char* nullable = R"([{"type":"function","function":{"name":"get_weather","parameters":{"type":"object",
      "properties":{"city":{"type":["string","null"]}}}}}])";
    CHECK(one(R"({"city":null})", R"({"city":null})", nullable).args_ok);
    CHECK(one(R"({"city":1})", R"({"city":1})", nullable).failure == call_failure::wrong_type);
}

TEST_CASE("tool calls: string normalisation") {
    CHECK(normalize_tool_string("New York, N.Y.") == "newyorkny");
    CHECK(normalize_tool_string("a-b_c*d^e/f") == "abcdef");
    CHECK(normalize_tool_string("it's") == "it\"s");
    CHECK(one(R"({"city":"new york"})", R"({"city":"New-York"})").args_ok);
    CHECK(one(R"({"city":"San_Francisco, CA"})", R"({"city":"san francisco ca"})").args_ok);
    auto r = one(R"({"city":"Paris"})", R"({"city":"London"})");
    CHECK(r.failure == call_failure::wrong_value);
    CHECK(r.detail.find("\"Paris\" vs \"London\"") != std::string::npos);
}

TEST_CASE("tool calls: numbers by value") {
    CHECK(one(R"({"city":"x","lat":3})", R"({"city":"x","lat":3.0})").args_ok);
    CHECK(one(R"({"city":"x","lat":0.1})", R"({"city":"x","lat":0.1})").args_ok);
    CHECK(one(R"({"city":"x","lat":3.01})", R"({"city":"x","lat":3})").failure == call_failure::wrong_value);
    CHECK(one(R"({"city":"x","verbose":false})", R"({"city":"x","verbose":true})").failure == call_failure::wrong_value);
}

TEST_CASE("tool calls: an omitted optional parameter passes only when the reference omitted it too") {
    CHECK(one(R"({"city":"x"})", R"({"city":"x"})").args_ok);  // both omit days
    auto r = one(R"({"city":"x"})", R"({"city":"x","days":2})");
    CHECK(r.failure == call_failure::missing_param);
    CHECK(r.detail.find("'days' is missing") != std::string::npos);
    // the other way: given by the SLM, omitted by the LLM
    auto g = one(R"({"city":"x","days":2})", R"({"city":"x"})");
    CHECK(g.failure == call_failure::unexpected_param);
    CHECK(g.detail.find("not in the reference") != std::string::npos);
    // ... unless it is the schema's default
    CHECK(one(R"({"city":"x","unit":"c"})", R"({"city":"x"})").args_ok);
    CHECK(one(R"({"city":"x","unit":"f"})", R"({"city":"x"})").failure == call_failure::unexpected_param);
}

TEST_CASE("tool calls: nested arrays in order, objects key by key") {
    CHECK(one(R"({"city":"x","tags":["a","b"]})", R"({"city":"x","tags":["a","b"]})").args_ok);
    CHECK(one(R"({"city":"x","tags":["b","a"]})", R"({"city":"x","tags":["a","b"]})").failure == call_failure::wrong_value);
    CHECK(one(R"({"city":"x","tags":["a"]})", R"({"city":"x","tags":["a","b"]})").failure == call_failure::wrong_value);
    CHECK(one(R"({"city":"x","where":{"zip":"1","city":"P"}})", R"({"city":"x","where":{"city":"p","zip":"1"}})").args_ok);
    auto extra = one(R"({"city":"x","where":{"zip":"1","city":"P"}})", R"({"city":"x","where":{"zip":"1"}})");
    CHECK(extra.failure == call_failure::unexpected_param);
    CHECK(extra.detail.find("'where'.city") != std::string::npos);
    auto miss = one(R"({"city":"x","where":{"zip":"1"}})", R"({"city":"x","where":{"zip":"1","city":"P"}})");
    CHECK(miss.failure == call_failure::missing_param);
    auto val = one(R"({"city":"x","where":{"zip":"2"}})", R"({"city":"x","where":{"zip":"1"}})");
    CHECK(val.failure == call_failure::wrong_value);
    CHECK(val.detail.find("'where'.zip") != std::string::npos);
}

TEST_CASE("tool calls: unparseable arguments") {
    auto r = one(R"({"city": "Paris")", R"({"city":"Paris"})");
    CHECK(r.name_ok);
    CHECK_FALSE(r.args_ok);
    CHECK(r.failure == call_failure::unparseable);
    CHECK(one(R"(["Paris"])", R"({"city":"Paris"})").failure == call_failure::unparseable);
    // empty arguments are {}, as OpenAI sends them for a call without parameters
    const char* no_params = R"([{"type":"function","function":{"name":"get_weather"}}])";
    CHECK(one("", "{}", no_params).args_ok);
    CHECK(one(R"({"x":1})", "{}", no_params).failure == call_failure::unexpected_param);
    // the codec dropped a malformed call block: unparseable even though the rest matches
    auto dropped = check_tool_calls({call("get_weather", R"({"city":"P"})")}, {call("get_weather", R"({"city":"P"})")},
                                    weather_tools, "invalid_json");
    CHECK(dropped.name_ok);
    CHECK_FALSE(dropped.args_ok);
    CHECK(dropped.failure == call_failure::unparseable);
    CHECK(dropped.detail.find("invalid_json") != std::string::npos);
    // a broken reference passes only for the same text
    CHECK(one("{oops", "{oops").args_ok);
    CHECK(one(R"({"city":"P"})", "{oops").failure == call_failure::unparseable);
}

TEST_CASE("tool calls: parallel calls match regardless of order") {
    std::vector<tool_call> ref = {call("get_weather", R"({"city":"Paris"})"), call("get_weather", R"({"city":"Rome"})"),
                                  call("send_email", R"({"to":"a","body":"b"})")};
    std::vector<tool_call> gen = {call("send_email", R"({"body":"b","to":"a"})"), call("get_weather", R"({"city":"rome"})"),
                                  call("get_weather", R"({"city":"paris"})")};
    auto r = check_tool_calls(gen, ref, weather_tools);
    CHECK(r.name_ok);
    CHECK(r.args_ok);
    REQUIRE(r.calls.size() == 3);
    for (const auto& c : r.calls) CHECK(c.args_ok);
    // one wrong value among the parallel calls: names still right, the failing reference call is named
    gen[1] = call("get_weather", R"({"city":"Milan"})");
    auto w = check_tool_calls(gen, ref, weather_tools);
    CHECK(w.name_ok);
    CHECK_FALSE(w.args_ok);
    CHECK(w.calls[0].args_ok);
    CHECK_FALSE(w.calls[1].args_ok);
    CHECK(w.calls[1].failure == call_failure::wrong_value);
    CHECK(w.failure == call_failure::wrong_value);
    // a generated call is taken once: two references, the same generated call twice is not enough
    auto dup = check_tool_calls({call("get_weather", R"({"city":"Paris"})"), call("get_weather", R"({"city":"Paris"})")},
                                {call("get_weather", R"({"city":"Paris"})"), call("get_weather", R"({"city":"Rome"})")},
                                weather_tools);
    CHECK(dup.name_ok);
    CHECK_FALSE(dup.args_ok);
    CHECK(dup.calls[1].failure == call_failure::wrong_value);
    // a name missing from a parallel set
    auto nm = check_tool_calls({call("get_weather", R"({"city":"Paris"})"), call("get_weather", R"({"city":"Rome"})")},
                               {call("get_weather", R"({"city":"Paris"})"), call("send_email", R"({"to":"a","body":"b"})")},
                               weather_tools);
    CHECK_FALSE(nm.name_ok);
    CHECK(nm.calls[1].failure == call_failure::wrong_name);
}

TEST_CASE("tool calls: without a schema values are compared against the reference only") {
    auto r = check_tool_calls({call("lookup", R"({"q":"A b","n":2})")}, {call("lookup", R"({"n":2.0,"q":"ab"})")}, "");
    CHECK(r.args_ok);
    CHECK(r.schema_missing);
    CHECK(r.calls[0].schema_missing);
    // not in tools: also schema_missing; a type difference against the reference is wrong_type
    auto t = check_tool_calls({call("lookup", R"({"n":"2"})")}, {call("lookup", R"({"n":2})")}, weather_tools);
    CHECK(t.schema_missing);
    CHECK(t.failure == call_failure::wrong_type);
    CHECK(check_tool_calls({call("lookup", R"({"n":2,"x":1})")}, {call("lookup", R"({"n":2})")}, "null").failure ==
          call_failure::unexpected_param);
    // the legacy functions form carries schemas too
    auto legacy = check_tool_calls({call("f", R"({"a":1})")}, {call("f", R"({"a":1})")},
                                   R"([{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}])");
    CHECK_FALSE(legacy.schema_missing);
    CHECK(legacy.failure == call_failure::wrong_type);
}

TEST_CASE("tool tally counts both accuracies and failure kinds") {
    tool_tally t;
    t.add(one(R"({"city":"x"})", R"({"city":"x"})"));
    t.add(one(R"({"city":"y"})", R"({"city":"x"})"));
    t.add(one(R"({"city":"x"})", R"({"city":"x"})", weather_tools, "other"));
    auto j = t.to_json();
    CHECK(j["responses"] == 3);
    CHECK(j["name_accuracy"].get<double>() == doctest::Approx(2.0 / 3));
    CHECK(j["args_accuracy"].get<double>() == doctest::Approx(1.0 / 3));
    CHECK(j["failures"]["wrong_value"] == 1);
    CHECK(j["failures"]["wrong_name"] == 1);
}

// ---- structured output -------------------------------------------------------------------------

TEST_CASE("schema validator: the subset, pass and fail") {
    json s = json::parse(R"({"type":"object","additionalProperties":false,"required":["name","age"],
      "properties":{"name":{"type":"string","minLength":2,"maxLength":5},
                    "age":{"type":"integer","minimum":0,"maximum":120},
                    "tags":{"type":"array","items":{"enum":["a","b"]},"minItems":1,"maxItems":2},
                    "kind":{"const":"person"},
                    "id":{"anyOf":[{"type":"integer"},{"type":"string","pattern":"^id-"}]},
                    "v":{"oneOf":[{"type":"number"},{"type":"integer"}]}}})");
    auto ok = [&](const char* doc) { return validate_json_schema(json::parse(doc), s); };
    CHECK(ok(R"({"name":"Al","age":30})").ok);
    CHECK(ok(R"({"name":"Alé","age":30.0,"tags":["a","b"],"kind":"person","id":"id-7"})").ok);
    CHECK(ok(R"({"name":"Al","age":30,"id":7})").ok);
    auto miss = ok(R"({"name":"Al"})");
    CHECK_FALSE(miss.ok);
    CHECK(miss.error == "$: required property 'age' is missing");
    CHECK(ok(R"({"name":"Al","age":30,"x":1})").error.find("not allowed") != std::string::npos);
    CHECK(ok(R"({"name":"Al","age":"30"})").error == "$.age: \"30\" is not of type integer");
    CHECK(ok(R"({"name":"Al","age":121})").error.find("maximum") != std::string::npos);
    CHECK(ok(R"({"name":"Al","age":-1})").error.find("minimum") != std::string::npos);
    CHECK(ok(R"({"name":"A","age":1})").error.find("minLength") != std::string::npos);
    CHECK(ok(R"({"name":"Alfred","age":1})").error.find("maxLength") != std::string::npos);
    CHECK(ok(R"({"name":"Al","age":1,"tags":[]})").error.find("minItems") != std::string::npos);
    CHECK(ok(R"({"name":"Al","age":1,"tags":["a","a","b"]})").error.find("maxItems") != std::string::npos);
    CHECK(ok(R"({"name":"Al","age":1,"tags":["c"]})").error.find("$.tags[0]") != std::string::npos);
    CHECK(ok(R"({"name":"Al","age":1,"kind":"cat"})").error.find("constant") != std::string::npos);
    CHECK(ok(R"({"name":"Al","age":1,"id":"x7"})").error.find("anyOf") != std::string::npos);
    // 2 is both a number and an integer: oneOf wants exactly one
    CHECK(ok(R"({"name":"Al","age":1,"v":2})").error.find("oneOf") != std::string::npos);
    CHECK(ok(R"({"name":"Al","age":1,"v":2.5})").ok);
    CHECK(ok(R"([1])").error.find("not of type object") != std::string::npos);
    CHECK(ok(R"({"name":"Al","age":1})").unknown_keywords == 0);
}

TEST_CASE("schema validator: $ref, allOf/not, unknown keywords counted") {
    json s = json::parse(R"({"$defs":{"pos":{"type":"integer","exclusiveMinimum":0}},"type":"object",
      "properties":{"n":{"$ref":"#/$defs/pos"},"e":{"type":"string","format":"email"},
                    "m":{"allOf":[{"type":"number"},{"not":{"const":13}}]},
                    "t":{"type":"array","prefixItems":[{"type":"string"}],"uniqueItems":true}}})");
    CHECK(validate_json_schema(json::parse(R"({"n":1,"e":"not an email","m":12,"t":[1,2]})"), s).ok);
    CHECK(validate_json_schema(json::parse(R"({"n":0})"), s).error.find("exclusiveMinimum") != std::string::npos);
    CHECK(validate_json_schema(json::parse(R"({"m":13})"), s).error.find("not") != std::string::npos);
    CHECK(validate_json_schema(json::parse(R"({"t":[1,1]})"), s).error.find("equal") != std::string::npos);
    auto r = validate_json_schema(json::parse("{}"), s);
    CHECK(r.unknown_keywords == 2);
    CHECK(r.unknown_names == std::vector<std::string>{"format", "prefixItems"});
    CHECK_FALSE(validate_json_schema(json(1), json::parse(R"({"$ref":"#/nowhere"})")).ok);
    CHECK_FALSE(validate_json_schema(json(1), json(false)).ok);
    CHECK(validate_json_schema(json(1), json(true)).ok);
}

TEST_CASE("structured output: JSON validity and response_format schemas") {
    auto plain = check_structured(R"( {"a": 1} )", "");
    CHECK(plain.json_ok);
    CHECK_FALSE(plain.schema_checked);
    CHECK_FALSE(plain.schema_ok);
    auto fenced = check_structured("```json\n{\"a\": 1}\n```", R"({"type":"json_object"})");
    CHECK(fenced.json_ok);
    CHECK(fenced.fenced);
    CHECK_FALSE(fenced.schema_checked);
    auto bad = check_structured("Sure: {\"a\": 1}", "");
    CHECK_FALSE(bad.json_ok);
    CHECK(bad.detail.find("parse error") != std::string::npos);
    const char* rf = R"({"type":"json_schema","json_schema":{"name":"x","strict":true,
      "schema":{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":false}}})";
    CHECK(check_structured(R"({"a": 1})", rf).schema_ok);
    auto wrong = check_structured(R"({"a": "1"})", rf);
    CHECK(wrong.json_ok);
    CHECK(wrong.schema_checked);
    CHECK_FALSE(wrong.schema_ok);
    CHECK(wrong.detail.find("$.a") != std::string::npos);
    auto broken = check_structured(R"({"a": )", rf);
    CHECK(broken.schema_checked);
    CHECK_FALSE(broken.schema_ok);
    // a bare schema is accepted as the schema
    CHECK_FALSE(check_structured("[1]", R"({"type":"object"})").schema_ok);
    CHECK_THROWS_AS(check_structured("{}", "{nope"), user_error);
    CHECK_THROWS_AS(check_structured("{}", R"({"type":"json_schema"})"), user_error);
}

// ---- text ------------------------------------------------------------------------------------

TEST_CASE("exact match trims whitespace only") {
    CHECK(exact_match("  yes\n", "yes"));
    CHECK_FALSE(exact_match("Yes", "yes"));
}

TEST_CASE("ROUGE-L F1: known values") {
    // LCS "the cat on the mat" = 5 of 6 tokens each side: P = R = 5/6 (rouge-score agrees: 0.8333)
    CHECK(rouge_l("The cat sat on the mat.", "The cat is on the mat.") == doctest::Approx(5.0 / 6));
    // LCS "a b d" = 3: P = 3/4, R = 3/5, F = 2 PR / (P + R) = 2/3 (rouge-score: 0.6667)
    CHECK(rouge_l("a b c d", "a c b d e") == doctest::Approx(2.0 / 3));
    CHECK(rouge_l("Hello, WORLD", "hello world") == doctest::Approx(1.0));
    CHECK(rouge_l("x", "y") == 0.0);
    CHECK(rouge_l("", "") == 1.0);
    CHECK(rouge_l("", "a") == 0.0);
}

TEST_CASE("chrF: known values computed by hand (and by sacrebleu 2.6)") {
    // "abc"/"abd": n=1 P=R=2/3, n=2 P=R=1/2, n=3 P=R=0, n>=4 no n-grams: P=R=7/18, F = 7/18
    CHECK(chrf("abc", "abd") == doctest::Approx(7.0 / 18).epsilon(1e-12));
    // "ab"/"abc": n=1 P=1 R=2/3, n=2 P=1 R=1/2 -> P=1, R=7/12, F = 5*7/12 / (4 + 7/12) = 7/11
    CHECK(chrf("ab", "abc") == doctest::Approx(7.0 / 11).epsilon(1e-12));
    // clipping: "aaa"/"a": n=1 match min(3,1)=1, P=1/3 R=1; no higher orders on the reference: F = 5/7
    CHECK(chrf("aaa", "a") == doctest::Approx(5.0 / 7).epsilon(1e-12));
    CHECK(chrf("a b", "ab") == doctest::Approx(1.0));  // whitespace removed
    CHECK(chrf("a\tb\u3000", "ab") == doctest::Approx(1.0));
    CHECK(chrf("The cat sat on the mat.", "The cat is on the mat.") == doctest::Approx(0.6717273492330232).epsilon(1e-9));
    // code points, not bytes
    CHECK(chrf("Votre commande a été expédiée", "Votre commande est expédiée") ==
          doctest::Approx(0.7363098865210408).epsilon(1e-9));
    CHECK(chrf("é", "e") == 0.0);
    CHECK(chrf("", "abc") == 0.0);
    CHECK(chrf("", " ") == 1.0);
    CHECK(chrf("Abc", "abc") < 1.0);  // case matters, as in sacrebleu
}

TEST_CASE("judge score parser") {
    auto s = parse_judge_score("Score: 10/10");
    REQUIRE(s);
    CHECK(s->raw == 10);
    CHECK(s->scale == 10);
    CHECK(s->normalized == doctest::Approx(1.0));
    CHECK(parse_judge_score("8.5")->normalized == doctest::Approx(0.85));
    CHECK(parse_judge_score("**7**")->raw == 7);
    CHECK(parse_judge_score("**7**")->normalized == doctest::Approx(0.7));
    auto r = parse_judge_score("rating: 3 out of 5");
    REQUIRE(r);
    CHECK(r->scale == 5);
    CHECK(r->normalized == doctest::Approx(0.6));
    CHECK(parse_judge_score("The answer misses 2/4 points.\n**Score:** 6")->raw == 6);
    CHECK(parse_judge_score("Good overall. 4/5")->normalized == doctest::Approx(0.8));
    CHECK(parse_judge_score("4", 5)->normalized == doctest::Approx(0.8));
    CHECK(parse_judge_score("I would give it a score of 9.")->raw == 9);
    CHECK(parse_judge_score("Final rating is 2/4")->normalized == doctest::Approx(0.5));
    CHECK_FALSE(parse_judge_score("I cannot judge this."));
    CHECK_FALSE(parse_judge_score("Score: 15/10"));
    CHECK_FALSE(parse_judge_score("Score: 11"));
    CHECK_FALSE(parse_judge_score(""));
}

// ---- intervals, verdicts, share ----------------------------------------------------------------

TEST_CASE("Wilson interval: known values") {
    auto w = wilson(8, 10);
    CHECK(w.value == doctest::Approx(0.8));
    CHECK(w.lo == doctest::Approx(0.49016246912).epsilon(1e-9));
    CHECK(w.hi == doctest::Approx(0.94331784906).epsilon(1e-9));
    CHECK(wilson(0, 10).lo == 0.0);
    CHECK(wilson(0, 10).hi == doctest::Approx(0.27753280303).epsilon(1e-9));
    CHECK(wilson(10, 10).lo == doctest::Approx(0.72246719697).epsilon(1e-9));
    CHECK(wilson(10, 10).hi <= 1.0);
    CHECK(wilson(50, 100).lo == doctest::Approx(0.40383152964).epsilon(1e-9));
    CHECK(wilson(95, 100).hi == doctest::Approx(0.97845632098).epsilon(1e-9));
    auto e = wilson(0, 0);
    CHECK(e.lo == 0.0);
    CHECK(e.hi == 1.0);
    CHECK_THROWS_AS(wilson(3, 2), internal_error);
}

TEST_CASE("bootstrap mean: deterministic, sensible, seed-dependent") {
    std::vector<double> xs;
    for (int i = 0; i < 50; ++i) xs.push_back((i * 37 % 11) / 10.0);
    auto a = bootstrap_mean(xs), b = bootstrap_mean(xs);
    CHECK(a.value == b.value);
    CHECK(a.lo == b.lo);
    CHECK(a.hi == b.hi);
    double mean = 0;
    for (double x : xs) mean += x / xs.size();
    CHECK(a.value == doctest::Approx(mean));
    CHECK(a.lo < a.value);
    CHECK(a.hi > a.value);
    // the normal-theory half width s/sqrt(n)*1.96 is about 0.09 here; the bootstrap's is close to it
    CHECK(a.hi - a.lo == doctest::Approx(2 * 0.089).epsilon(0.25));
    auto c = bootstrap_mean(xs, 1000, 7);
    CHECK((c.lo != a.lo || c.hi != a.hi));
    auto constant = bootstrap_mean(std::vector<double>(5, 0.5));
    CHECK(constant.lo == 0.5);
    CHECK(constant.hi == 0.5);
    CHECK_THROWS_AS(bootstrap_mean(std::vector<double>{}), internal_error);
}

TEST_CASE("verdicts on the lower bound, per kind") {
    verdict_params p;
    metric_summary tools{response_kind::tool_call, "name+args accuracy", wilson(98, 100), 100};
    auto v = decide(tools, p);
    CHECK(v.replaceable);  // lower bound 0.930 >= 0.90
    CHECK(v.reason.find(">= threshold 0.900 for tool_call") != std::string::npos);
    metric_summary weak{response_kind::tool_call, "name+args accuracy", wilson(9, 10), 10};
    CHECK_FALSE(decide(weak, p).replaceable);  // 90% observed, lower bound 0.596
    metric_summary few{response_kind::prose, "chrF", {0.9, 0.85, 0.95}, 5};
    auto f = decide(few, p);
    CHECK_FALSE(f.replaceable);
    CHECK(f.reason.find("fewer than the 10") != std::string::npos);
    metric_summary prose{response_kind::prose, "chrF", {0.7, 0.62, 0.77}, 40};
    CHECK(decide(prose, p).replaceable);
    p.prose = 0.65;  // configurable
    CHECK_FALSE(decide(prose, p).replaceable);
    CHECK(p.threshold(response_kind::json) == 0.95);
    CHECK(p.threshold(response_kind::prose, true) == p.judge);
}

TEST_CASE("replaceable share: volume-weighted, with a stratified bootstrap interval") {
    // a: 60/60 right (Wilson lo 0.940, replaceable at 0.9; 30/30 would only reach 0.886); b: none right
    cluster_outcome a{700, std::vector<double>(60, 1.0)};
    cluster_outcome b{200, std::vector<double>(60, 0.0)};
    std::vector<double> mixed(60, 1.0);
    for (int i = 0; i < 4; ++i) mixed[i * 15] = 0.0;  // 56/60: lo 0.84, not replaceable at 0.9
    cluster_outcome c{100, mixed};
    auto rule = make_verdict_rule(0.9, true, 10);
    auto s = replaceable_share({a, b, c}, {rule, rule, rule});
    CHECK(s.value == doctest::Approx(0.7));
    CHECK(s.lo <= s.value);
    CHECK(s.hi >= s.value);
    auto again = replaceable_share({a, b, c}, {rule, rule, rule});
    CHECK(again.lo == s.lo);
    CHECK(again.hi == s.hi);
    // a borderline cluster makes the interval wide: its verdict flips between replicates
    std::vector<double> border(100, 1.0);
    for (int i = 0; i < 3; ++i) border[i * 30] = 0.0;  // 97/100: Wilson lo 0.915
    cluster_outcome d{300, border};
    auto w = replaceable_share({a, d}, {rule, rule});
    CHECK(w.value == doctest::Approx(1.0));
    CHECK(w.lo <= 0.7 + 1e-12);  // in >2.5% of replicates cluster d fails
    CHECK(w.hi == doctest::Approx(1.0));
    // all right on few calls: the verdict holds, but not in every replicate (a plain resample of
    // 10/10 is 10/10 every time and printed [share, share]); all right on many calls: it holds
    auto rule7 = make_verdict_rule(0.7, true, 10);
    cluster_outcome few{100, std::vector<double>(10, 1.0)}, rest{900, std::vector<double>(10, 0.0)};
    auto f = replaceable_share({few, rest}, {rule7, rule7});
    CHECK(f.value == doctest::Approx(0.1));
    CHECK(f.lo == doctest::Approx(0.0));
    CHECK(f.hi == doctest::Approx(0.1));
    cluster_outcome many{100, std::vector<double>(400, 1.0)};
    auto m = replaceable_share({many, rest}, {rule7, rule7});
    CHECK(m.lo == doctest::Approx(0.1));
    CHECK(m.hi == doctest::Approx(0.1));
    // means use the bootstrap lower bound
    auto mean_rule = make_verdict_rule(0.6, false, 10);
    cluster_outcome t{50, std::vector<double>(20, 0.8)};
    CHECK(replaceable_share({t}, {mean_rule}).value == 1.0);
    CHECK(replaceable_share({cluster_outcome{0, {}}}, {rule}).value == 0.0);
}

// ---- prices ------------------------------------------------------------------------------------

TEST_CASE("prices: defaults equal eval/prices.json, carry sources and dates, find by prefix") {
    auto d = default_prices();
    auto file = parse_prices(test::read_file(std::string(SLMCTL_SOURCE_DIR) + "/eval/prices.json"), "eval/prices.json");
    CHECK(file.to_json() == d.to_json());
    for (const auto& m : d.models) {
        CHECK_FALSE(m.source.empty());
        CHECK(m.as_of.size() == 10);
    }
    REQUIRE(d.find("gpt-4o"));
    CHECK(d.find("gpt-4o")->input_per_m == 2.5);
    CHECK(d.find("gpt-4o-2024-08-06")->model == "gpt-4o");
    CHECK(d.find("gpt-4o-mini-2024-07-18")->model == "gpt-4o-mini");
    CHECK(d.find("openai/gpt-4.1-mini")->model == "gpt-4.1-mini");
    CHECK(d.find("claude-3-5-sonnet-20241022")->output_per_m == 15.0);
    CHECK(d.find("gpt-4ox") == nullptr);
    CHECK(d.find("llama-70b") == nullptr);
    const auto* slm = d.find(d.slm);
    REQUIRE(slm);
    CHECK(slm->assumption);
    auto c = cost_saving(*d.find("gpt-4o"), *slm, 2'000'000, 500'000);
    CHECK(c.llm_usd == doctest::Approx(2 * 2.5 + 0.5 * 10));
    CHECK(c.slm_usd == doctest::Approx(2 * slm->input_per_m + 0.5 * slm->output_per_m));
    CHECK(c.saving_usd == doctest::Approx(c.llm_usd - c.slm_usd));
    CHECK(c.saving_share == doctest::Approx(c.saving_usd / c.llm_usd));
}

TEST_CASE("prices: a price file overrides and adds; bad files name the field") {
    test::temp_dir t;
    auto write = [&](const std::string& text) {
        std::ofstream(t / "p.json") << text;
        return t / "p.json";
    };
    auto p = load_prices(write(R"({"slm":"my-slm","models":{"gpt-4o":{"input":1,"output":2,"as_of":"2026-01-01"},
                                   "my-slm":{"input":0.01,"output":0.02,"assumption":true,"source":"our cluster"}}})"));
    CHECK(p.find("gpt-4o")->input_per_m == 1.0);
    CHECK(p.find("gpt-4o")->source == t / "p.json");
    CHECK(p.find("claude-sonnet-4")->input_per_m == 3.0);  // defaults kept
    CHECK(p.slm == "my-slm");
    auto err = [&](const std::string& text) -> std::string {
        try {
            load_prices(write(text));
        } catch (const user_error& e) {
            CHECK_FALSE(e.hint.empty());
            return e.what();
        }
        return "no error";
    };
    CHECK(err(R"({"models":{"gpt-4o":{"input":"cheap","output":2}}})").find("models.gpt-4o.input: expected a number") !=
          std::string::npos);
    CHECK(err(R"({"models":{"gpt-4o":{"input":1}}})").find("models.gpt-4o.output is missing") != std::string::npos);
    CHECK(err(R"({"models":{"gpt-4o":{"input":-1,"output":2}}})").find("models.gpt-4o.input") != std::string::npos);
    CHECK(err(R"({"models":{"gpt-4o":{"input":1,"output":2,"inptu":3}}})").find("models.gpt-4o.inptu: unknown field") !=
          std::string::npos);
    CHECK(err(R"({"model":{}})").find("model: unknown field") != std::string::npos);
    CHECK(err(R"({"currency":"EUR"})").find("currency") != std::string::npos);
    CHECK(err(R"({"slm":"nope"})").find("slm: 'nope' is not a models entry") != std::string::npos);
    CHECK(err("{oops").find("not valid JSON") != std::string::npos);
    CHECK(err("[]").find("p.json") != std::string::npos);
    CHECK_THROWS_AS(load_prices(t / "missing.json"), user_error);
}
