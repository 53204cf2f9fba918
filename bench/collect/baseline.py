#!/usr/bin/env python3
"""Straightforward Python baseline of `slmctl collect` for bench/collect/run.sh.

What a reasonable engineer would write with the standard library: json.loads per line, the same
normalization (canonical messages / tools / response tool calls, task text, content id with
hashlib.blake2b), the same scrubbing kinds as precompiled `re` patterns applied one after the other
with callbacks for the Luhn / IBAN / trivial-value checks and placeholders consistent within a call,
then sqlite3 INSERT OR IGNORE into the database `slmctl db init` created, one transaction per batch.
OTLP spans are not handled (the benchmark input has none).

usage: baseline.py --db DB [--batch 5000] FILE...   (prints a JSON summary on stdout)
"""
import argparse
import hashlib
import json
import os
import re
import sqlite3
import sys
import time

# ---- scrubbing -------------------------------------------------------------------------------

STREET = (r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Square|Sq|"
          r"Terrace|Ter|Parkway|Pkwy|Circle|Cir|Highway|Hwy|Trail|Plaza|Alley|Crescent|Close|Row")
SECRET_KEY = r"[A-Za-z0-9_.-]*(?:password|passwd|passphrase|secret|api[_-]?key|access[_-]?key|private[_-]?key|token|pwd)[A-Za-z0-9_.-]*"
TRIVIAL = {"", "null", "none", "None", "NULL", "true", "false", "True", "False", "undefined", "nil", "required",
           "optional", "string"}
IBAN_LEN = {"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
            "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
            "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
            "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
            "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
            "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
            "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
            "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20}


def luhn_ok(digits):
    total, dbl = 0, False
    for ch in reversed(digits):
        d = int(ch)
        if dbl:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        dbl = not dbl
    return total % 10 == 0


def card_prefix_ok(d):
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)
    p2, p3, p4 = int(d[:2]), int(d[:3]), int(d[:4])
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (34, 37):
        return n == 15
    if p4 == 6011 or p2 == 65 or 644 <= p3 <= 649 or p2 == 35 or p2 == 62:
        return 16 <= n <= 19
    if p2 in (36, 38) or 300 <= p3 <= 305:
        return 14 <= n <= 16
    return False


def iban_ok(s):
    s = s.replace(" ", "")
    if IBAN_LEN.get(s[:2]) != len(s):
        return False
    r = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in r)) % 97 == 1


# (kind, pattern, check(match) -> span group or None to keep); applied in this order
PATTERNS = [
    ("private_key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S), None),
    ("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{7,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"), None),
    ("api_key", re.compile(r"(?<![\w-])sk-[A-Za-z0-9_-]{20,}"), None),
    ("api_key", re.compile(r"\bAIza[A-Za-z0-9_-]{30,}"), None),
    ("aws_key", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b"), None),
    ("github_token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"), None),
    ("slack_token", re.compile(r"\bxox[abpr]-[A-Za-z0-9-]{10,}"), None),
    ("secret", re.compile(r"(?i)(?:password|passwd|passphrase|secret|api[_-]?key|access[_-]?key|private[_-]?key|token|pwd)"
                          r"""[A-Za-z0-9_.-]*["']?\s{0,2}[:=]\s{0,3}["']?([^\s"',;&)}\]<>`]+)"""), "value"),
    ("secret", re.compile(r"\bBearer\s+([A-Za-z0-9._~+/=-]{16,})"), "value"),
    ("secret", re.compile(r"://[A-Za-z0-9._%+-]+:([^@\s/]+)@"), "value"),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), None),
    ("card", re.compile(r"(?<![\w.])\d(?:[ -]?\d){12,18}(?![\w])"), "card"),
    ("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), "iban"),
    ("ssn", re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b"), None),
    ("ipv6", re.compile(r"(?i)(?<![\w:.])(?:(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){1,6}(?::[0-9a-f]{1,4}){1,6}|(?:[0-9a-f]{1,4}:){1,7}:)(?![\w:])"), "ipv6"),
    ("ipv4", re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\w]|\.\d)"), None),
    ("phone", re.compile(r"\+\d[\d .()-]{6,18}\d(?!\d)|\(\d{3}\) ?\d{3}[ .-]\d{4}\b|(?<![\w.-])(?:1[ .-])?\d{3}[ .-]\d{3}[ .-]\d{4}\b"), None),
    ("address", re.compile(r"\b\d{1,6}[A-Z]? (?:(?:[A-Z][a-z]+|\d{1,3}(?:st|nd|rd|th)) ){1,5}(?:" + STREET + r")\b\.?"
                           r"(?: (?:N|S|E|W|NE|NW|SE|SW)\b)?(?:,? (?:Apt|Suite|Unit|#)\.? ?\w+)?"
                           r"(?:, [A-Z][a-z]+(?: [A-Z][a-z]+)*, [A-Z]{2} \d{5}(?:-\d{4})?)?"), None),
]


class Scrubber:
    def __init__(self, enabled=True):
        self.enabled = enabled
        self.reset()

    def reset(self):
        self.seen = {}
        self.next = {}
        self.counts = {}

    def placeholder(self, kind, identity):
        key = (kind, identity)
        if key not in self.seen:
            self.next[kind] = self.next.get(kind, 0) + 1
            self.seen[key] = self.next[kind]
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return "<%s_%d>" % (kind.upper(), self.seen[key])

    def scrub(self, text):
        if not self.enabled or not text:
            return text
        for kind, pat, check in PATTERNS:
            def repl(m, kind=kind, check=check):
                s = m.group(0)
                if s.startswith("<"):
                    return s
                if check == "value":
                    v = m.group(1)
                    if v in TRIVIAL or v.startswith(("<", "$", "{")):
                        return s
                    a, b = m.span(1)
                    a -= m.start()
                    b -= m.start()
                    return s[:a] + self.placeholder(kind, v) + s[b:]
                if check == "card":
                    d = re.sub(r"\D", "", s)
                    if not (13 <= len(d) <= 19 and card_prefix_ok(d) and luhn_ok(d)):
                        return s
                    return self.placeholder(kind, d)
                if check == "iban" and not iban_ok(s):
                    return s
                if check == "ipv6" and not any(c.isdigit() for c in s):
                    return s
                if kind in ("phone", "ssn"):
                    return self.placeholder(kind, re.sub(r"\D", "", s))
                if kind == "email":
                    return self.placeholder(kind, s.lower())
                return self.placeholder(kind, s)
            text = pat.sub(repl, text)
        return text

    def value(self, v, key=None):
        """Scrubs every string of a JSON value; a string under a secret-naming key goes whole."""
        if isinstance(v, str):
            if key is not None and self.enabled and re.fullmatch(SECRET_KEY, key, re.I) and v not in TRIVIAL and not v.startswith("<"):
                return self.placeholder("secret", v)
            return self.scrub(v)
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, dict):
            return {k: self.value(x, k) for k, x in v.items()}
        return v


# ---- normalization ---------------------------------------------------------------------------

class Bad(Exception):
    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def dumps(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def text_of(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content
                         if isinstance(p, str) or (isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text")))
    return ""


def canonical_args(args, scr):
    if args is None or (isinstance(args, str) and not args.strip()):
        return "{}", True
    if not isinstance(args, str):
        return dumps(scr.value(args)), True
    try:
        return dumps(scr.value(json.loads(args))), True
    except ValueError:
        return scr.scrub(args), False


def normalize(rec, scr):
    if not isinstance(rec, dict):
        raise Bad("not_an_object", "a record must be a JSON object")
    finetune = "request" not in rec and "response" not in rec and "messages" in rec
    if finetune:
        req, msgs = rec, rec.get("messages")
        if not isinstance(msgs, list) or not msgs or not isinstance(msgs[-1], dict) or msgs[-1].get("role") != "assistant":
            raise Bad("no_response", "the last message is not an assistant message")
        resp_msg, msgs, resp = msgs[-1], msgs[:-1], {}
        fmt = "finetune"
    elif "request" in rec or "response" in rec:
        req, resp = rec.get("request"), rec.get("response")
        if not isinstance(req, dict):
            raise Bad("no_request", "no request field")
        if not resp:
            raise Bad("no_response", "response is missing or null")
        msgs = req.get("messages")
        if not isinstance(msgs, list):
            raise Bad("bad_field" if msgs is not None else "no_messages", "messages is not a list")
        choices = resp.get("choices") if isinstance(resp, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0].get("message"), dict):
            raise Bad("no_response", "response has no choices[0].message")
        resp_msg = choices[0]["message"]
        fmt = "flywheel" if any(k in rec for k in ("workload_id", "client_id", "timestamp")) else "pair"
    else:
        raise Bad("unknown_format", "expected {request, response} or {messages}")
    if not msgs:
        raise Bad("no_messages", "no request messages")
    legacy = "functions" in req or any(isinstance(m, dict) and (m.get("role") == "function" or m.get("function_call")) for m in msgs) \
        or bool((resp_msg.get("function_call") or {}).get("name"))
    if legacy:
        fmt = "legacy_functions"
    scr.reset()
    flags = []
    out_msgs, last_user, call_names, after = [], "", {}, None
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise Bad("bad_field", "messages[%d].role is missing" % i)
        content = m.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise Bad("bad_field", "messages[%d].content is not a string or a list" % i)
        role = "tool" if m["role"] == "function" else m["role"]
        o = {"role": role}
        if isinstance(m.get("name"), str):
            o["name"] = m["name"]
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") in ("text", "input_text", "output_text") for p in content):
            content = text_of(content)
        o["content"] = scr.value(content)
        if m["role"] == "user":
            last_user = text_of(o["content"])
        calls = m.get("tool_calls") or ([m["function_call"]] if (m.get("function_call") or {}).get("name") else [])
        if calls:
            tcs = []
            for tc in calls:
                fn = tc.get("function", tc)
                c = {"type": "function", "function": {"name": fn.get("name"), "arguments": canonical_args(fn.get("arguments"), scr)[0]}}
                if "id" in tc:
                    c["id"] = tc["id"]
                    call_names[tc["id"]] = fn.get("name")
                tcs.append(c)
            o["tool_calls"] = tcs
        if isinstance(m.get("tool_call_id"), str):
            o["tool_call_id"] = m["tool_call_id"]
        after = (o.get("name") or call_names.get(m.get("tool_call_id")) or "?") if role == "tool" else None
        out_msgs.append(o)
    tools = [scr.value(t) for t in (req.get("tools") or [])] + \
            [{"type": "function", "function": scr.value(f)} for f in (req.get("functions") or [])]
    names = [(t.get("function") or t).get("name") for t in tools if isinstance(t, dict)]
    content = resp_msg.get("content")
    text = scr.scrub(text_of(content)) if content else None
    rcalls = []
    for tc in (resp_msg.get("tool_calls") or ([resp_msg["function_call"]] if (resp_msg.get("function_call") or {}).get("name") else [])):
        fn = tc.get("function", tc)
        args, ok = canonical_args(fn.get("arguments"), scr)
        if not ok:
            flags.append("tool_args_not_json")
        rcalls.append({"name": fn.get("name"), "arguments": json.loads(args) if ok else args})
    if not text and not rcalls:
        flags.append("empty_response")
    model = resp.get("model") or req.get("model") or ""
    messages, tools_s = dumps(out_msgs), dumps(tools) if tools else None
    calls_s = dumps(rcalls) if rcalls else None
    h = hashlib.blake2b(digest_size=32)
    for part in (model, messages, tools_s or "", text or "", calls_s or ""):
        h.update(part.encode())
        h.update(b"\x1f")
    if rcalls:
        shape = "tool_call:" + "+".join(c["name"] or "" for c in rcalls)
    elif not text:
        shape = "empty"
    elif text.lstrip().startswith(("{", "[")):
        shape = "json"
    elif "```" in text:
        shape = "code"
    else:
        shape = "prose"
    task = [last_user.strip()[:2000]] if last_user.strip() else []
    if names:
        task.append("tools: " + ", ".join(n or "" for n in names))
    if after:
        task.append("after: tool_result " + after)
    task.append("response: " + shape)
    usage = resp.get("usage") or {}
    lat = rec.get("latency_ms")
    return (h.hexdigest(), resp.get("id"), fmt, scr.scrub(rec.get("workload_id") or "") or None,
            scr.scrub(rec.get("client_id") or "") or None, rec.get("timestamp") if isinstance(rec.get("timestamp"), str) else None,
            model or None, messages, tools_s, text, calls_s, resp.get("choices", [{}])[0].get("finish_reason") if resp else None,
            lat if isinstance(lat, (int, float)) else None, usage.get("prompt_tokens"), usage.get("completion_tokens"),
            "\n".join(task), json.dumps(scr.counts, separators=(",", ":")), json.dumps(flags))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--scrub", default="on", choices=("on", "off"))
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    t0 = time.time()
    con = sqlite3.connect(a.db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("INSERT INTO runs (command, params, started) VALUES ('collect-baseline', ?, datetime('now'))",
                (json.dumps(vars(a)),))
    run_id = con.execute("SELECT last_insert_rowid()").fetchone()[0]
    ins_call = ("INSERT OR IGNORE INTO calls (content_id, response_id, run_id, source_file, source_line, format, workload_id, "
                "client_id, timestamp, model, messages, tools, response_text, response_tool_calls, finish_reason, latency_ms, "
                "prompt_tokens, completion_tokens, task_text, scrubbed, flags) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
    ins_q = ("INSERT OR IGNORE INTO quarantine (run_id, source_file, source_line, raw_hash, reason, detail, raw) "
             "VALUES (?,?,?,?,?,?,?)")
    scr = Scrubber(a.scrub == "on")
    n_lines = ingested = duplicate = quarantined = 0
    nbytes = 0
    con.execute("BEGIN")
    in_batch = 0
    for path in a.files:
        src = os.path.abspath(path)
        nbytes += os.path.getsize(path)
        with open(path, "rb") as f:
            for no, raw in enumerate(f, 1):
                n_lines += 1
                line = raw.rstrip(b"\r\n")
                if line.strip():
                    try:
                        try:
                            rec = json.loads(line.decode("utf-8"))
                        except UnicodeDecodeError as e:
                            raise Bad("invalid_utf8", str(e))
                        except ValueError as e:
                            raise Bad("invalid_json", str(e))
                        row = normalize(rec, scr)
                        cur = con.execute(ins_call, row[:2] + (run_id, src, no) + row[2:])
                        if cur.rowcount == 1:
                            ingested += 1
                        else:
                            duplicate += 1
                    except Bad as b:
                        quarantined += 1
                        scr.reset()
                        text = scr.scrub(line.decode("utf-8", "backslashreplace"))
                        con.execute(ins_q, (run_id, src, no, hashlib.blake2b(text.encode(), digest_size=32).hexdigest(),
                                            b.reason, b.detail, text))
                in_batch += 1
                if in_batch >= a.batch:
                    con.execute("COMMIT")
                    con.execute("BEGIN")
                    in_batch = 0
    con.execute("COMMIT")
    secs = time.time() - t0
    summary = {"lines": n_lines, "ingested": ingested, "duplicate": duplicate, "quarantined": quarantined,
               "bytes": nbytes, "seconds": secs, "mb_per_s": nbytes / 1e6 / secs if secs else 0}
    con.execute("UPDATE runs SET status='ok', finished=datetime('now'), summary=? WHERE id=?", (json.dumps(summary), run_id))
    con.close()
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
