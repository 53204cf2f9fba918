# Tests of the committed sample logs (issue 3): reproducible from sample_logs/gen/generate.py,
# well-formed, fully labelled, within the size/volume bounds, with PII to curate and listed defects.
"""Run from the repo root: python3 -m unittest discover -s tests/py -p 'test_*.py'"""

import collections
import json
import re
import subprocess
import sys
import tempfile
import unittest
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "sample_logs"
GEN = LOGS / "gen" / "generate.py"

FLYWHEEL_FILES = ["software_company.jsonl", "workflow_operator.jsonl", "gui_controller.jsonl"]
LEGACY_FILE = "legacy_functions.jsonl"
FINETUNE_FILE = "finetune_form.jsonl"
BAD_FILE = "bad/malformed.jsonl"
SYSTEMS = {"software_company", "workflow_operator", "gui_controller"}
ROLES = {"system", "user", "assistant", "tool", "function"}
ISO_TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class BadRecord(ValueError):
    pass


def need(cond, why):
    if not cond:
        raise BadRecord(why)


def is_num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_args(args, where):
    need(isinstance(args, str), f"{where}.arguments is not a string")
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as e:
        raise BadRecord(f"{where}.arguments is not JSON: {e}") from None
    need(isinstance(parsed, dict), f"{where}.arguments is not a JSON object")


def check_tool_calls(tcs, where):
    need(isinstance(tcs, list) and tcs, f"{where}.tool_calls is not a non-empty list")
    for i, tc in enumerate(tcs):
        need(isinstance(tc, dict), f"{where}.tool_calls[{i}] is not an object")
        need(isinstance(tc.get("id"), str), f"{where}.tool_calls[{i}].id")
        need(tc.get("type") == "function", f"{where}.tool_calls[{i}].type")
        fn = tc.get("function")
        need(isinstance(fn, dict) and isinstance(fn.get("name"), str), f"{where}.tool_calls[{i}].function")
        check_args(fn.get("arguments"), f"{where}.tool_calls[{i}].function")


def check_message(m, where, assistant_only=False):
    need(isinstance(m, dict), f"{where} is not an object")
    role = m.get("role")
    need(role in ROLES, f"{where}.role {role!r}")
    if assistant_only:
        need(role == "assistant", f"{where}.role is not assistant")
    content = m.get("content")
    need(content is None or isinstance(content, str), f"{where}.content is {type(content).__name__}")
    if "tool_calls" in m:
        check_tool_calls(m["tool_calls"], where)
    if "function_call" in m:
        fc = m["function_call"]
        need(isinstance(fc, dict) and isinstance(fc.get("name"), str), f"{where}.function_call")
        check_args(fc.get("arguments"), f"{where}.function_call")
    if content is None:
        need(role == "assistant" and ("tool_calls" in m or "function_call" in m),
             f"{where}: content is null without a tool call")
    if role == "tool":
        need(isinstance(m.get("tool_call_id"), str), f"{where}.tool_call_id")
    if role == "function":
        need(isinstance(m.get("name"), str), f"{where}.name")


def check_messages(msgs, where):
    need(isinstance(msgs, list) and msgs, f"{where} is not a non-empty list")
    for i, m in enumerate(msgs):
        check_message(m, f"{where}[{i}]")


def check_record(rec):
    """A documented Data-Flywheel record (modern tools or legacy functions form)."""
    need(isinstance(rec, dict), "line is not a JSON object")
    for key in ("timestamp", "workload_id", "client_id", "request", "response", "latency_ms"):
        need(key in rec, f"missing {key}")
    ts = rec["timestamp"]
    need(isinstance(ts, str) and ISO_TS.match(ts), f"timestamp {ts!r} is not ISO-8601")
    datetime.fromisoformat(ts.replace("Z", "+00:00"))
    need(isinstance(rec["workload_id"], str) and rec["workload_id"], "workload_id")
    need(isinstance(rec["client_id"], str) and rec["client_id"], "client_id")
    need(is_num(rec["latency_ms"]) and rec["latency_ms"] >= 0, "latency_ms is not a number")
    req = rec["request"]
    need(isinstance(req, dict), "request is not an object")
    need(isinstance(req.get("model"), str) and req["model"], "request.model")
    check_messages(req.get("messages"), "request.messages")
    for key in ("tools", "functions"):
        if key in req:
            need(isinstance(req[key], list) and req[key], f"request.{key}")
    resp = rec["response"]
    need(isinstance(resp, dict), "response is not an object")
    need(isinstance(resp.get("id"), str) and resp["id"].startswith("chatcmpl-"), "response.id")
    need(resp.get("object") == "chat.completion", "response.object")
    need(isinstance(resp.get("created"), int), "response.created")
    need(isinstance(resp.get("model"), str), "response.model")
    choices = resp.get("choices")
    need(isinstance(choices, list) and choices, "response.choices is not a non-empty list")
    c0 = choices[0]
    need(isinstance(c0, dict) and isinstance(c0.get("finish_reason"), str), "response.choices[0]")
    msg = c0.get("message")
    check_message(msg, "response.choices[0].message", assistant_only=True)
    need(msg.get("content") or msg.get("tool_calls") or msg.get("function_call"), "empty answer")
    usage = resp.get("usage")
    need(isinstance(usage, dict), "response.usage")
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        need(isinstance(usage.get(k), int) and usage[k] > 0, f"response.usage.{k}")
    need(usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], "usage total")
    return rec


def parse_good(raw):
    """bytes of one line -> record, or BadRecord."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRecord(f"invalid UTF-8: {e}") from None
    need(text.strip(), "blank line")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadRecord(f"not JSON: {e}") from None
    return check_record(obj)


def read_lines(name):
    with open(LOGS / name, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n"), name
    return data[:-1].split(b"\n")


def luhn_ok(digits):
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_ok(s):
    s = s.replace(" ", "")
    r = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in r)) % 97 == 1


def bad_defects():
    """(line -> defect) from the README's table of malformed lines."""
    text = (LOGS / "README.md").read_text(encoding="utf-8")
    section = text.split("## Malformed lines", 1)[1]
    rows = re.findall(r"^\| (\d+) \| `([a-z0-9_]+)` \| .+ \|$", section, flags=re.M)
    return {int(n): d for n, d in rows}


class SampleLogsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.records = {}   # (file, line) -> record, every good Data-Flywheel record
        for name in FLYWHEEL_FILES + [LEGACY_FILE]:
            for i, raw in enumerate(read_lines(name), 1):
                cls.records[(name, i)] = parse_good(raw)
        defects = bad_defects()
        for i, raw in enumerate(read_lines(BAD_FILE), 1):
            if i not in defects:
                cls.records[(BAD_FILE, i)] = parse_good(raw)
        cls.finetune = [json.loads(raw) for raw in read_lines(FINETUNE_FILE)]
        cls.labels = [json.loads(l) for l in (LOGS / "labels.jsonl").read_text(encoding="utf-8").splitlines()]

    def test_regeneration_is_byte_identical(self):
        r = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_every_good_line_is_a_documented_record(self):
        # setUpClass parsed them all with check_record; spot-check the forms on top of that.
        self.assertGreater(len(self.records), 3000)
        for (name, _), rec in self.records.items():
            req, msg = rec["request"], rec["response"]["choices"][0]["message"]
            fin = rec["response"]["choices"][0]["finish_reason"]
            if name == LEGACY_FILE:
                self.assertIn("functions", req)
                self.assertEqual(req.get("function_call"), "auto")
                self.assertNotIn("tools", req)
                self.assertIn("function_call", msg)
                self.assertEqual(fin, "function_call")
            elif msg.get("tool_calls"):
                self.assertIn("tools", req)
                self.assertEqual(fin, "tool_calls")
            else:
                self.assertEqual(fin, "stop")

    def test_legacy_histories_have_function_messages(self):
        roles = collections.Counter(m["role"] for (name, _), r in self.records.items() if name == LEGACY_FILE
                                    for m in r["request"]["messages"])
        self.assertGreater(roles["function"], 0)
        self.assertEqual(roles["tool"], 0)

    def test_finetune_form(self):
        self.assertGreater(len(self.finetune), 50)
        with_tools = 0
        for i, rec in enumerate(self.finetune, 1):
            self.assertTrue(set(rec) <= {"messages", "tools"}, i)
            check_messages(rec["messages"], f"line {i}")
            last = rec["messages"][-1]
            self.assertEqual(last["role"], "assistant")
            self.assertTrue(last.get("content") or last.get("tool_calls"))
            if "tools" in rec:
                with_tools += 1
                self.assertIsInstance(rec["tools"], list)
                names = {t["function"]["name"] for t in rec["tools"]}
                for tc in last.get("tool_calls") or []:
                    self.assertIn(tc["function"]["name"], names)
        self.assertGreater(with_tools, 0)

    def test_response_ids_unique_and_labels_cover_every_record(self):
        ids = [r["response"]["id"] for r in self.records.values()]
        self.assertEqual(len(ids), len(set(ids)), "duplicate response ids")
        for i in ids:
            self.assertRegex(i, r"^chatcmpl-[A-Za-z0-9]{24}$")
        by_key = {}
        for lab in self.labels:
            self.assertEqual(list(lab), ["response_id", "system", "task_type", "file", "line"])
            self.assertIn(lab["system"], SYSTEMS)
            self.assertTrue(lab["task_type"].split(".")[0] in {"sw", "wf", "gui"})
            self.assertNotIn(lab["response_id"], by_key)
            by_key[lab["response_id"]] = lab
        want = {}
        for (name, line), rec in self.records.items():
            want[rec["response"]["id"]] = (name, line)
        for line in range(1, len(self.finetune) + 1):
            want[f"{FINETUNE_FILE}:{line}"] = (FINETUNE_FILE, line)
        self.assertEqual(set(by_key), set(want), "labels and records differ")
        for rid, (name, line) in want.items():
            self.assertEqual((by_key[rid]["file"], by_key[rid]["line"]), (name, line), rid)

    def test_volumes(self):
        counts = collections.Counter(lab["task_type"] for lab in self.labels)
        total = sum(counts.values())
        self.assertGreaterEqual(total, 3000)
        self.assertLessEqual(total, 6000)
        self.assertGreaterEqual(len(counts), 15)
        self.assertLessEqual(len(counts), 30)
        top = counts.most_common()
        self.assertGreaterEqual(top[0][1], 600, "the biggest type should dominate")
        self.assertLessEqual(top[-1][1], 60, "some types should be rare")
        self.assertGreaterEqual(top[-1][1], 30, "every type needs enough calls to learn or cluster")
        systems = collections.Counter(lab["system"] for lab in self.labels)
        self.assertEqual(set(systems), SYSTEMS)

    def test_system_prompt_does_not_name_the_task_type(self):
        # types of one agent node share its system prompts
        prompts = collections.defaultdict(set)
        types_of = {}
        labels = {(lab["file"], lab["line"]): lab["task_type"] for lab in self.labels}
        for key, rec in self.records.items():
            m0 = rec["request"]["messages"][0]
            self.assertEqual(m0["role"], "system")
            prompts[m0["content"]].add(labels[key])
            types_of.setdefault(rec["workload_id"], set()).add(labels[key])
        shared = [p for p, t in prompts.items() if len(t) > 1]
        self.assertGreaterEqual(len(shared), 4)
        self.assertGreaterEqual(max(len(t) for t in types_of.values()), 5)

    def test_total_size(self):
        total = sum(p.stat().st_size for p in LOGS.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        self.assertLessEqual(total, 20 * 1024 * 1024)

    def test_bad_file_defects_are_listed(self):
        defects = bad_defects()
        self.assertGreaterEqual(len(defects), 15)
        kinds = set(defects.values())
        for k in ("truncated_json", "invalid_utf8", "empty_line", "non_object_array", "messages_is_string",
                  "missing_response", "tool_args_invalid_json"):
            self.assertIn(k, kinds)
        lines = read_lines(BAD_FILE)
        good = 0
        for i, raw in enumerate(lines, 1):
            if i in defects:
                with self.assertRaises(BadRecord, msg=f"line {i} ({defects[i]}) parses as a good record"):
                    parse_good(raw)
            else:
                parse_good(raw)
                good += 1
        self.assertGreater(good, 10)
        self.assertLessEqual(max(defects), len(lines))

    def test_pii_and_secrets_present(self):
        text = "\n".join((LOGS / n).read_text(encoding="utf-8") for n in FLYWHEEL_FILES + [LEGACY_FILE, FINETUNE_FILE])
        cards = [re.sub(r"[ -]", "", m) for m in re.findall(r"(?<![\d.])(?:\d[ -]?){14,18}\d(?![\d.])", text)]
        self.assertTrue(any(len(c) in (15, 16) and c[0] in "345" and luhn_ok(c) for c in cards), "no Luhn card")
        ibans = re.findall(r"\b(?:DE|GB)\d{2}(?: [A-Z0-9]{4}){4}(?: [A-Z0-9]{2})?\b", text)
        self.assertTrue(any(iban_ok(s) for s in ibans), "no valid IBAN")
        for name, pattern in [
            ("email", r"[\w.+-]+@[\w-]+\.[a-z]{2,}"),
            ("phone", r"\+1 \d{3}-555-\d{4}|\(\d{3}\) 555-\d{4}"),
            ("ssn", r"\b\d{3}-\d{2}-\d{4}\b"),
            ("openai key", r"\bsk-(?:proj-)?[A-Za-z0-9]{48}\b"),
            ("aws key", r"\bAKIA[A-Z2-7]{16}\b"),
            ("github token", r"\bghp_[A-Za-z0-9]{36}\b"),
            ("slack token", r"\bxoxb-\d+-\d+-[A-Za-z0-9]{24}\b"),
            ("jwt", r"\beyJ[\w-]+\.eyJ[\w-]+\.[\w-]+"),
            ("ipv4", r"\b(?:\d{1,3}\.){3}\d{1,3}\b"),
            ("password assignment", r"password=\S+"),
            ("street address", r"\d+ [A-Z][a-z]+ (?:St|Street|Avenue|Blvd|Dr|Rd|Lane), [A-Z][a-z]+, [A-Z]{2} \d{5}"),
        ]:
            self.assertRegex(text, pattern, name)

    def test_large_variant_streams_with_consistent_labels(self):
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([sys.executable, str(GEN), "--calls", "1500", "--seed", "7", "--out", tmp],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = Path(tmp)
            n = sum(len(read_out(out / f)) for f in FLYWHEEL_FILES + [LEGACY_FILE, FINETUNE_FILE])
            self.assertEqual(n, 1500)
            labels = read_out(out / "labels.jsonl")
            self.assertEqual(len(labels), 1500 + len(read_out(out / BAD_FILE)) - len(bad_defects_of(out)))


def read_out(path):
    with open(path, "rb") as f:
        data = f.read()
    return data[:-1].split(b"\n") if data else []


def bad_defects_of(out):
    text = (out / "README.md").read_text(encoding="utf-8").split("## Malformed lines", 1)[1]
    return re.findall(r"^\| (\d+) \| `", text, flags=re.M)


if __name__ == "__main__":
    unittest.main()
