#!/usr/bin/env python3
# Seeded, stdlib-only generator of slmctl's sample LLM-call logs (issue 3).
# Owns every file under sample_logs/ except itself; reruns reproduce them byte for byte.
"""Generate synthetic agent LLM-call logs modelled on three SLM case studies.

  python3 sample_logs/gen/generate.py                  # rewrite the committed set in place
  python3 sample_logs/gen/generate.py --out DIR        # write the same set elsewhere
  python3 sample_logs/gen/generate.py --calls 1000000 --out DIR   # big benchmark variant
  python3 sample_logs/gen/generate.py --check          # regenerate to a temp dir, compare bytes

Determinism: one seeded random.Random stream for the main records (a second one, seed+1, for the
bad file), dicts built in a fixed key order, json.dumps(ensure_ascii=False, separators=(",", ":")),
'\\n' line endings, synthetic timestamps (fixed start + seeded gaps). Nothing depends on hash
ordering, locale or the clock. Output streams to disk: memory does not grow with --calls.
"""

import argparse
import base64
import os
import re
import shutil
import string
import sys
import tempfile
import json
import random
from datetime import date, datetime, timedelta, timezone

SEED = 20250303
DEFAULT_CALLS = 4500          # records in the five main files together
BAD_GOOD_LINES = 30           # good records mixed into bad/malformed.jsonl
START = datetime(2025, 3, 3, 8, 0, 0, tzinfo=timezone.utc)
SPAN_MS = 14 * 24 * 3600 * 1000   # the whole set spans two weeks whatever --calls is
LEGACY_SHARE = 0.12           # share of operator tool calls logged in the legacy function_call form
FINETUNE_SHARE = 0.07         # share of all calls exported in the plain fine-tuning form

SYSTEM_FILES = {
    "software_company": "software_company.jsonl",
    "workflow_operator": "workflow_operator.jsonl",
    "gui_controller": "gui_controller.jsonl",
}
FINETUNE_FILE = "finetune_form.jsonl"
LEGACY_FILE = "legacy_functions.jsonl"
BAD_FILE = "bad/malformed.jsonl"
LABELS_FILE = "labels.jsonl"
README_FILE = "README.md"
PLANTED_FILE = "planted.tsv"
GENERATED = sorted(list(SYSTEM_FILES.values()) + [FINETUNE_FILE, LEGACY_FILE, BAD_FILE, LABELS_FILE, README_FILE,
                                                  PLANTED_FILE])


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))   # == json.dumps(..., same args)
dumps = _ENCODER.encode
jargs = _ENCODER.encode   # tool-call arguments: a JSON string, as the OpenAI API returns them


class SeededRandom(random.Random):
    """random.Random(seed) whose integer draws all go through random() (one float per draw).

    Faster than the stock bit-rejection sampler, and pins choice/shuffle/sample/randrange to
    random(), whose output for a given seed Python keeps stable across versions.
    """

    def _randbelow(self, n):
        return int(self.random() * n)

    def choice(self, seq):
        return seq[int(self.random() * len(seq))]

    def randrange(self, start, stop=None):
        if stop is None:
            return int(self.random() * start)
        return start + int(self.random() * (stop - start))


ALNUM = string.ascii_letters + string.digits
UPNUM = string.ascii_uppercase + string.digits
B64URL = string.ascii_letters + string.digits + "-_"
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def rand_str(rng, alphabet, n):
    return "".join(rng.choices(alphabet, k=n))


_B64_TO_ALNUM = bytes.maketrans(b"+/", b"xQ")


def rand_alnum(rng, n):
    """n alphanumerics, fast (ids are drawn for every record): base64 of random bytes, +/ mapped."""
    return base64.b64encode(rng.randbytes((n * 3 + 3) // 4)).translate(_B64_TO_ALNUM)[:n].decode()


# ----------------------------------------------------------------------------------------------
# Planted values: every PII value and secret the generator draws is noted with its kind; the ones
# that reach a written line go to planted.tsv (for the scrubbing tests: collect never reads it).
# Secrets beyond the original set come from their own stream (_SRNG), so adding them leaves every
# draw of the main stream, and so the structure of the set, unchanged.
# ----------------------------------------------------------------------------------------------

_PENDING = []          # (kind, value) drawn since the last written record
_SRNG = None           # the secrets stream, reset by generate()


def plant(kind, value):
    _PENDING.append((kind, value))
    return value


def take_planted(line):
    """The pending values that the written line holds (as is, JSON-escaped once or twice), and for a
    line cut short the part of a value it ends with; clears the pending list."""
    out = []
    for kind, v in _PENDING:
        once = dumps(v)[1:-1]
        forms = [v, once, dumps(once)[1:-1]]
        if any(f in line for f in forms):
            out.append((kind, v))
            continue
        for f in forms:   # a truncated line ends inside the value
            cut = next((k for k in range(len(f) - 1, 7, -1) if line.endswith(f[:k])), 0)
            if cut:
                out.append((kind, f[:cut]))
                break
    _PENDING.clear()
    return sorted(set(out))


def srand(alphabet, n):
    return "".join(_SRNG.choices(alphabet, k=n))


HEX = "0123456789abcdef"


def vendor_secret():
    """(kind, env name with a keyword, neutral env name, value) for one vendor format."""
    k = _SRNG.randrange(18)
    if k == 0:
        return "stripe_key", "STRIPE_SECRET_KEY", "STRIPE", _SRNG.choice(["sk_live_", "rk_live_", "sk_test_"]) + srand(ALNUM, 24)
    if k == 1:
        return "gitlab_token", "GITLAB_TOKEN", "GITLAB_CI_USER", "glpat-" + srand(B64URL, 20)
    if k == 2:
        return "npm_token", "NPM_TOKEN", "NPM_CONFIG", "npm_" + srand(ALNUM, 36)
    if k == 3:
        return "pypi_token", "PYPI_API_TOKEN", "TWINE_CONFIG", "pypi-AgEIcHlwaS5vcmc" + srand(B64URL, 60)
    if k == 4:
        return "huggingface_token", "HF_TOKEN", "HF_HUB", "hf_" + srand(string.ascii_letters, 34)
    if k == 5:
        return "anthropic_key", "ANTHROPIC_API_KEY", "CLAUDE", "sk-ant-api03-" + srand(B64URL, 93) + "AA"
    if k == 6:
        return "groq_key", "GROQ_API_KEY", "GROQ", "gsk_" + srand(ALNUM, 52)
    if k == 7:
        return "replicate_token", "REPLICATE_API_TOKEN", "REPLICATE", "r8_" + srand(ALNUM, 37)
    if k == 8:
        return "sendgrid_key", "SENDGRID_API_KEY", "SENDGRID", "SG." + srand(B64URL, 22) + "." + srand(B64URL, 43)
    if k == 9:
        return "twilio_key", "TWILIO_API_KEY", "TWILIO_SID_2", "SK" + srand(HEX, 32)
    if k == 10:
        return "mailgun_key", "MAILGUN_API_KEY", "MAILGUN", "key-" + srand(HEX, 32)
    if k == 11:
        return "shopify_token", "SHOPIFY_ACCESS_TOKEN", "SHOPIFY", "shpat_" + srand(HEX, 32)
    if k == 12:
        return "digitalocean_token", "DIGITALOCEAN_TOKEN", "DO_CONFIG", "dop_v1_" + srand(HEX, 64)
    if k == 13:
        return "square_token", "SQUARE_ACCESS_TOKEN", "SQUARE", "sq0atp-" + srand(B64URL, 22)
    if k == 14:
        return ("telegram_bot_token", "TELEGRAM_BOT_TOKEN", "TELEGRAM",
                str(_SRNG.randrange(10**8, 10**10)) + ":AA" + srand(B64URL, 33))
    if k == 15:
        return ("discord_bot_token", "DISCORD_BOT_TOKEN", "DISCORD", _SRNG.choice("MNO") + srand(B64URL, 25) + "."
                + srand(B64URL, 6) + "." + srand(B64URL, 38))
    if k == 16:
        return "bitbucket_app_password", "BITBUCKET_APP_PASSWORD", "BITBUCKET", "ATBB" + srand(ALNUM, 28) + srand(HEX, 4) + "1"
    return "github_token", "GH_TOKEN", "GH_CONFIG", "ghp_" + srand(ALNUM, 36)


def odd_password():
    """A password holding the characters that end values elsewhere: ; & # % @ ? and quotes aside."""
    return (_SRNG.choice(["Tr0ub4dor", "C0rrect", "Bl4ckbird", "M0onrise", "Qu1cksilver"]) + _SRNG.choice(";&#%@?")
            + srand(ALNUM, 3) + _SRNG.choice(";&#") + str(_SRNG.randrange(10, 99)))


def env_secrets():
    """Extra lines for a captured environment: vendor tokens, a cloud connection string, a SAS URL,
    a Mongo URL and a quoted password with odd characters."""
    lines = []
    for _ in range(_SRNG.randrange(2, 5)):
        kind, named, neutral, v = vendor_secret()
        lines.append(f"{named if _SRNG.random() < 0.5 else neutral}={plant(kind, v)}")
    k = _SRNG.randrange(4)
    if k == 0:
        key = plant("azure_storage_key", base64.b64encode(_SRNG.randbytes(64)).decode())
        name = _SRNG.choice(["AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE"])
        lines.append(f"{name}=DefaultEndpointsProtocol=https;AccountName=acme{_SRNG.randrange(100, 999)};"
                     f"AccountKey={key};EndpointSuffix=core.windows.net")
    elif k == 1:
        sig = plant("azure_sas_sig", base64.b64encode(_SRNG.randbytes(32)).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D"))
        lines.append(f"EXPORT_URL=https://acme{_SRNG.randrange(100, 999)}.blob.core.windows.net/exports/orders.csv"
                     f"?sv=2022-11-02&ss=b&srt=o&sp=r&se=2025-06-01T00:00:00Z&sig={sig}")
    elif k == 2:
        pw = plant("password", odd_password())
        lines.append(f"MONGO_URL=mongodb+srv://svc:{pw}@cluster0.{srand(HEX, 5)}.mongodb.net/app")
    else:
        pw = plant("password", odd_password())
        lines.append(f"DB_PASSWORD=\"{pw}\"")
    return "\n".join(lines)


GCP_KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"


def gcp_service_account():
    """A GCP service-account key as it gets pasted: JSON with a PEM private key."""
    body = "\n".join(GCP_KEY_BODY[:8] + srand(ALNUM + "+/", 56) for _ in range(4))
    pem = plant("private_key", f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    return dumps({"type": "service_account", "project_id": f"acme-{_SRNG.randrange(1000, 9999)}",
                  "private_key_id": srand(HEX, 40), "private_key": pem,
                  "client_email": f"ci@acme-{_SRNG.randrange(1000, 9999)}.iam.gserviceaccount.com"})


# ----------------------------------------------------------------------------------------------
# Entities, PII and secrets
# ----------------------------------------------------------------------------------------------

FIRST = ["Alice", "Bruno", "Chen", "Dana", "Elif", "Farah", "Gustavo", "Hana", "Ivan", "Jonas",
         "Keiko", "Liam", "Maya", "Nikhil", "Olga", "Priya", "Quentin", "Rosa", "Sven", "Tariq",
         "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoë", "José", "Amara", "Björn", "Chloé",
         "Darius", "Emeka", "Fatima", "Gabriel", "Hiroshi", "Ingrid", "Jamal", "Kofi", "Lena", "Mateo"]
LAST = ["Anderson", "Bauer", "Castillo", "Dubois", "Eriksen", "Fischer", "García", "Haddad", "Ito",
        "Jensen", "Kowalski", "Lopez", "Müller", "Nakamura", "Okafor", "Petrov", "Quinn", "Rossi",
        "Schmidt", "Tanaka", "Umarov", "Varga", "Wang", "Xu", "Yilmaz", "Zhang", "O'Brien", "Nguyen",
        "Patel", "Silva"]
DOMAINS = ["acme.io", "northwind.com", "globex.net", "initech.dev", "umbrella.co", "hooli.com",
           "contoso.org", "vandelay.biz", "stark-ind.com", "wayne.ent", "gmail.com", "outlook.com"]
COMPANIES = ["Acme Corp", "Northwind Traders", "Globex", "Initech", "Umbrella Health", "Hooli",
             "Contoso", "Vandelay Industries", "Stark Logistics", "Wayne Foods"]
FOLD = str.maketrans({"ë": "e", "é": "e", "ü": "u", "í": "i", "ö": "o", "ø": "o", "á": "a",
                      "'": "", "ç": "c"})
STREETS = ["Maple St", "Oak Avenue", "Elm Street", "Harbor Blvd", "Sunset Dr", "Mission St",
           "Lakeview Rd", "Pine Ct", "Market Street", "Cedar Lane", "Hauptstraße", "Rue de Rivoli"]
CITIES = [("Springfield", "IL", "627"), ("Austin", "TX", "787"), ("Portland", "OR", "972"),
          ("Denver", "CO", "802"), ("Madison", "WI", "537"), ("Raleigh", "NC", "276"),
          ("Boise", "ID", "837"), ("Tucson", "AZ", "857")]


def person(rng):
    return rng.choice(FIRST), rng.choice(LAST)


def email_of(rng, first, last):
    f, l = first.lower().translate(FOLD), last.lower().translate(FOLD)
    dom = rng.choice(DOMAINS)
    k = rng.randrange(3)
    if k == 0:
        return plant("email", f"{f}.{l}@{dom}")
    if k == 1:
        return plant("email", f"{f[0]}{l}@{dom}")
    return plant("email", f"{f}{rng.randrange(10, 99)}@{dom}")


def phone(rng):
    k = rng.randrange(4)
    if k == 0:
        return plant("phone", f"+1 {rng.randrange(201, 989)}-555-{rng.randrange(100, 9999):04d}")
    if k == 1:
        return plant("phone", f"({rng.randrange(201, 989)}) 555-{rng.randrange(100, 9999):04d}")
    if k == 2:
        return plant("phone", f"+44 20 7946 {rng.randrange(0, 999):04d}")
    return plant("phone", f"+49 30 {rng.randrange(1000000, 99999999)}")


def luhn_digit(payload):
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = ord(ch) - 48
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def card_number(rng):
    """A Luhn-valid Visa / Mastercard / Amex number, in one of three spellings."""
    k = rng.randrange(3)
    if k == 0:
        payload, n = "4" + rand_str(rng, string.digits, 14), 16
    elif k == 1:
        payload, n = "5" + str(rng.randrange(1, 6)) + rand_str(rng, string.digits, 13), 16
    else:
        payload, n = "3" + rng.choice("47") + rand_str(rng, string.digits, 12), 15
    num = payload + luhn_digit(payload)
    assert len(num) == n
    style = rng.randrange(3)
    if style == 0 or n == 15:
        return plant("card", num if style != 1 else f"{num[:4]} {num[4:10]} {num[10:]}")
    sep = " " if style == 1 else "-"
    return plant("card", sep.join(num[i:i + 4] for i in range(0, 16, 4)))


def ssn(rng):
    area = rng.randrange(1, 899)
    if area == 666:
        area = 667
    return plant("ssn", f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}")


def iban(rng):
    if rng.randrange(2):
        cc, bban = "DE", rand_str(rng, string.digits, 18)
    else:
        cc, bban = "GB", rand_str(rng, string.ascii_uppercase, 4) + rand_str(rng, string.digits, 14)
    rearranged = bban + cc + "00"
    num = "".join(str(int(c, 36)) for c in rearranged)
    check = 98 - int(num) % 97
    raw = f"{cc}{check:02d}{bban}"
    return plant("iban", " ".join(raw[i:i + 4] for i in range(0, len(raw), 4)))


def ipv4(rng, private=None):
    if private is None:
        private = rng.random() < 0.6
    if private:
        k = rng.randrange(3)
        if k == 0:
            return plant("ipv4", f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
        if k == 1:
            return plant("ipv4", f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}")
        return plant("ipv4", f"172.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    return plant("ipv4", f"{rng.choice([34, 52, 81, 95, 104, 142, 185, 203])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")


def street_address(rng):
    city, st, zp = rng.choice(CITIES)
    return plant("address", f"{rng.randrange(1, 9999)} {rng.choice(STREETS)}, {city}, {st} {zp}{rng.randrange(10, 99)}")


def openai_key(rng):
    if rng.randrange(2):
        return plant("openai_key", "sk-proj-" + rand_str(rng, ALNUM, 48))
    return plant("openai_key", "sk-" + rand_str(rng, ALNUM, 48))


def aws_key(rng):
    return plant("aws_key", "AKIA" + rand_str(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16))


def aws_secret(rng):
    return plant("aws_secret", rand_str(rng, ALNUM + "+/", 40))


def github_token(rng):
    return plant("github_token", "ghp_" + rand_str(rng, ALNUM, 36))


def slack_token(rng):
    return plant("slack_token", (f"xoxb-{rng.randrange(10**10, 10**12)}-{rng.randrange(10**12, 10**13)}-")
            + rand_str(rng, ALNUM, 24))


def jwt(rng):
    def b64(obj):
        return base64.urlsafe_b64encode(dumps(obj).encode()).rstrip(b"=").decode()
    first, last = person(rng)
    head = b64({"alg": "HS256", "typ": "JWT"})
    body = b64({"sub": f"user_{rng.randrange(1000, 99999)}", "name": f"{first} {last}",
                "iat": 1740000000 + rng.randrange(5000000)})
    return plant("jwt", f"{head}.{body}.{rand_str(rng, B64URL, 43)}")


def password(rng):
    return plant("password", (rng.choice(["Summer", "Winter", "Hunter", "Dragon", "Welcome", "Qwerty", "Falcon", "Monkey"]))
            + str(rng.randrange(10, 9999)) + rng.choice("!#$%&*?") + rand_str(rng, ALNUM, 3))


def rand_day(rng, span=120):
    return date(2025, 3, 3) + timedelta(days=rng.randrange(span))


def long_date(d):
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"


def short_date(d):
    return f"{WEEKDAYS[d.weekday()][:3]} {MONTHS[d.month - 1][:3]} {d.day}"


def time12(h, m):
    return f"{(h - 1) % 12 + 1}:{m:02d} {'AM' if h < 12 else 'PM'}"


# ----------------------------------------------------------------------------------------------
# System prompts: one per agent node (two deployed versions each), shared by its task types
# ----------------------------------------------------------------------------------------------

SYSTEM_PROMPTS = {
    "metagpt.product_manager": [
        "You are Alice, the Product Manager in a software company staffed by AI agents (Architect, "
        "Engineer, QA Engineer, Reviewer). Your goal is to turn raw requests into clear, testable "
        "product documents.\nConstraints:\n- Answer in the language of the request.\n- Be concise; "
        "prefer lists to prose.\n- A PRD is a single JSON object with the keys title, product, "
        "requested_by, priority, target_release, problem, requirements, acceptance_criteria.\n- User "
        "stories follow \"As a <persona>, I want <capability> so that <benefit>\" and are numbered.\n"
        "- Never invent stakeholders, dates or numbers that are not in the request.",
        "Role: Product Manager (Alice)\nProfile: experienced PM who writes crisp requirements for an "
        "agent team.\nGoal: create a successful product that meets user needs.\nRules:\n1. Use only "
        "facts given in the request; copy names, priorities and releases verbatim.\n2. PRDs are "
        "returned as one JSON object (title, product, requested_by, priority, target_release, "
        "problem, requirements, acceptance_criteria) with no extra text.\n3. User stories are a "
        "numbered list in the classic As a / I want / so that form, each with an acceptance line.",
    ],
    "metagpt.architect": [
        "You are Bob, the Architect. You design simple, maintainable systems for the Engineer to "
        "implement. For API designs return one JSON object with resource, base_path, endpoints "
        "(method, path, action) and model (name, fields). For database work return PostgreSQL DDL "
        "in a single ```sql block. Use snake_case for columns, plural table names, BIGSERIAL ids. "
        "Do not add fields that were not requested.",
        "Role: Architect (Bob)\nGoal: design the API and data layer so that the Engineer can build "
        "it without questions.\nOutput rules: REST designs as a JSON object {resource, base_path, "
        "endpoints[], model}; schemas as PostgreSQL CREATE TABLE statements in one ```sql fence. "
        "Keep names exactly as given, plural snake_case tables, id BIGSERIAL PRIMARY KEY.",
    ],
    "metagpt.engineer": [
        "You are Alex, an Engineer. Write elegant, readable, typed Python 3.11 that follows PEP 8. "
        "Implement exactly the requested function; keep the given signature. The project uses "
        "SQLAlchemy 2 sessions and Pydantic v2 schemas (models in app.models, schemas in "
        "app.schemas). Return the code in a single ```python block unless asked to explain.",
        "Role: Engineer (Alex)\nLanguage: Python 3.11, SQLAlchemy ORM, Pydantic v2.\nInstructions: "
        "implement the function described by the signature and docstring, complete and correct, "
        "no TODOs, no placeholder code. Do not change the signature. Answer with one fenced "
        "python code block.",
    ],
    "metagpt.qa_engineer": [
        "You are Edward, the QA Engineer. Write pytest unit tests for the code you are given. "
        "Import the function from its module path (derived from the file path), use "
        "pytest.mark.parametrize for tables of cases, cover the edges visible in the code, and "
        "return only one ```python block.",
        "Role: QA Engineer (Edward)\nGoal: make sure the code works.\nRules: pytest only; derive the "
        "import from the '# file:' header; one parametrized test per function with the boundary "
        "values the code implies; compare floats with pytest.approx; no prose.",
    ],
    "metagpt.reviewer": [
        "You are Rachel, a senior engineer who reviews code and debugs failures for the team. "
        "Think step by step. Explain the root cause in plain words, point to the exact lines, "
        "propose a minimal fix with code when useful, and flag security problems (leaked "
        "credentials, injection, PII in logs) even when you were not asked about them.",
        "Role: Reviewer/Debugger (Rachel)\nYou receive diffs to review and failing test output to "
        "diagnose. Be specific and constructive. Structure: what is wrong, why, how to fix, "
        "anything else worth knowing. Call out secrets or personal data in code or logs.",
    ],
    "operator.router": [
        "You are the router of an operations assistant. Read the user's command and pick the one "
        "route that should handle it. Reply with a JSON object {\"route\": <route>} and nothing "
        "else.",
        "Routing model for Operator. Classify each incoming command into exactly one route from "
        "the list given in the message. Output JSON: {\"route\": \"<name>\"}. No explanations.",
    ],
    "operator.tool_caller": [
        "You are Operator, an assistant that performs actions for employees by calling tools. "
        "Extract every argument from the user's command exactly as written (emails, ids, text in "
        "quotes). Convert dates and times to ISO 8601 local time. Call exactly one tool. If "
        "something is missing, use only what is given; never guess recipients.",
        "You are an operations agent with access to HTTP, calendar, messaging, ticketing, "
        "monitoring and database lookup tools. For each command, call the single best tool with "
        "arguments copied from the command. Dates: YYYY-MM-DDTHH:MM. Priorities: urgent=P1, "
        "high=P2, normal=P3, low=P4. Do not answer in prose when a tool fits.",
    ],
    "operator.notifier": [
        "You write outgoing notifications from fixed company templates. Fill the requested "
        "template with the values given, keep its wording exactly, and output only the final "
        "message text.",
        "Notifier agent. Templates: shipping_delay, incident_update, invoice_reminder, welcome, "
        "meeting_reminder. Produce the filled template verbatim, no commentary, no subject line "
        "unless the template has one.",
    ],
    "operator.planner": [
        "You are Operator's planner. Break goals into concrete steps that the tool agents can "
        "execute (calendar, email, Slack, tickets, HTTP, monitoring, lookups), keep track of what "
        "has been done across turns, and re-plan when a step fails. Be explicit about "
        "dependencies and risks.",
        "Planner for a workflow automation assistant. Maintain the plan over the whole "
        "conversation: reuse completed steps, adapt to failures, ask for approval before "
        "irreversible actions. Answer with a short assessment and a numbered plan.",
    ],
    "cradle.action_planner": [
        "You are a helpful assistant that controls a computer through its GUI. Each turn you get "
        "the goal or routine and a text rendering of the screen: one UI element per line as "
        "[id] role \"label\" with its value and coarse screen position. Choose the single next action "
        "and call the matching tool among those offered (click, type_text, scroll, press_keys, wait). "
        "Only use element ids that are on the screen.",
        "GUI agent (Cradle-style). Observation: screen elements with ids, roles, labels and "
        "positions. Skills (the relevant ones are offered per step): click(element_id), "
        "type_text(element_id, text, press_enter), scroll(direction, amount), press_keys(keys), "
        "wait(seconds). Call one tool per turn. Use cmd instead of ctrl on macOS.",
    ],
    "cradle.self_reflection": [
        "You are the self-reflection module of a GUI agent. Compare what the last action was "
        "expected to do with the screen you observe now, explain what went wrong, and call the "
        "one tool that gets the task back on track.",
        "Self-reflection: the previous action did not have the expected effect. Reason about the "
        "observed screen (dialogs, errors, focus), say what happened and what to do, then issue "
        "exactly one recovery action as a tool call.",
    ],
}

NODE_MODELS = {
    "metagpt.product_manager": [("gpt-4o", 6), ("claude-3-5-sonnet-20241022", 3), ("gpt-4o-mini", 1)],
    "metagpt.architect": [("gpt-4o", 5), ("claude-3-5-sonnet-20241022", 5)],
    "metagpt.engineer": [("gpt-4o", 4), ("claude-3-5-sonnet-20241022", 4), ("gpt-4-turbo", 1),
                         ("llama-3.1-70b-instruct", 1)],
    "metagpt.qa_engineer": [("gpt-4o-mini", 5), ("gpt-4o", 5)],
    "metagpt.reviewer": [("gpt-4o", 5), ("claude-3-5-sonnet-20241022", 4), ("o1-mini", 1)],
    "operator.router": [("gpt-4o-mini", 9), ("gpt-3.5-turbo", 1)],
    "operator.tool_caller": [("gpt-4o", 6), ("gpt-4o-mini", 4)],
    "operator.notifier": [("gpt-4o-mini", 8), ("gpt-3.5-turbo", 2)],
    "operator.planner": [("gpt-4o", 6), ("claude-3-5-sonnet-20241022", 4)],
    "cradle.action_planner": [("gpt-4o", 8), ("claude-3-5-sonnet-20241022", 2)],
    "cradle.self_reflection": [("gpt-4o", 7), ("claude-3-5-sonnet-20241022", 3)],
}
MODEL_VERSION = {
    "gpt-4o": "gpt-4o-2024-08-06", "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
    "gpt-4-turbo": "gpt-4-turbo-2024-04-09", "gpt-3.5-turbo": "gpt-3.5-turbo-0125",
    "o1-mini": "o1-mini-2024-09-12", "claude-3-5-sonnet-20241022": "claude-3-5-sonnet-20241022",
    "llama-3.1-70b-instruct": "meta-llama/Llama-3.1-70B-Instruct",
}
FINGERPRINT = {"gpt-4o": "fp_7f6be3efb0", "gpt-4o-mini": "fp_0ba0d124f1", "gpt-4-turbo": "fp_5b26d85e12",
               "gpt-3.5-turbo": "fp_0165350fbb", "o1-mini": "fp_a8f9b2c1d3"}
# (base ms, ms per completion token)
MODEL_SPEED = {"gpt-4o": (420, 16), "gpt-4o-mini": (260, 9), "gpt-4-turbo": (650, 28),
               "gpt-3.5-turbo": (230, 8), "o1-mini": (2600, 14), "claude-3-5-sonnet-20241022": (560, 19),
               "llama-3.1-70b-instruct": (380, 22)}
SYSTEM_CLIENTS = {
    "software_company": [("devco-metagpt", 7), ("devco-ci-bot", 3)],
    "workflow_operator": [("ops-operator-prod", 8), ("ops-operator-staging", 2)],
    "gui_controller": [("qa-cradle-runner", 6), ("rpa-desktop-01", 4)],
}


def weighted(rng, pairs):
    total = 0
    for _, w in pairs:
        total += w
    x = rng.random() * total
    for v, w in pairs:
        x -= w
        if x < 0:
            return v
    return pairs[-1][0]


def tool(name, desc, props, required):
    return {"type": "function", "function": {"name": name, "description": desc, "parameters": {
        "type": "object", "properties": props, "required": required}}}


S = {"type": "string"}
I = {"type": "integer"}
OP_TOOLS = [
    tool("http_request", "Send an HTTP request to an external API and return the status code and body.",
         {"method": {"type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]}, "url": S,
          "headers": {"type": "object", "additionalProperties": S}, "body": {"type": "object"}},
         ["method", "url"]),
    tool("create_calendar_event", "Create a calendar event and invite attendees.",
         {"title": S, "start": {"type": "string", "description": "Local start, YYYY-MM-DDTHH:MM"},
          "duration_minutes": I, "attendees": {"type": "array", "items": S}, "location": S},
         ["title", "start", "duration_minutes"]),
    tool("send_email", "Send an email from the operations mailbox.",
         {"to": {"type": "array", "items": S}, "subject": S, "body": S}, ["to", "subject", "body"]),
    tool("send_slack_message", "Post a message to a Slack channel (#name) or user (@name).",
         {"channel": S, "text": S}, ["channel", "text"]),
    tool("send_sms", "Send a text message to a phone number.", {"to": S, "text": S}, ["to", "text"]),
    tool("create_ticket", "Create a ticket in the issue tracker.",
         {"project": S, "title": S, "type": {"type": "string", "enum": ["bug", "task", "incident", "request"]},
          "priority": {"type": "string", "enum": ["P1", "P2", "P3", "P4"]}, "assignee": S, "description": S},
         ["project", "title", "type", "priority"]),
    tool("check_service_health", "Get health status or a metric for a service.",
         {"service": S, "environment": {"type": "string", "enum": ["prod", "staging", "dev"]},
          "metric": {"type": "string", "enum": ["p95_latency_ms", "error_rate", "cpu_percent", "requests_per_s"]},
          "window_minutes": I}, ["service", "environment"]),
    tool("ping_host", "Check TCP connectivity to a host and port.", {"host": S, "port": I}, ["host", "port"]),
    tool("list_calendar_events", "List calendar events in a time range.",
         {"start": S, "end": S, "attendee": S}, ["start", "end"]),
    tool("update_ticket", "Change fields of an existing ticket.",
         {"key": S, "status": S, "priority": S, "assignee": S, "comment": S}, ["key"]),
    tool("get_logs", "Fetch recent log lines of a service.",
         {"service": S, "environment": S, "query": S, "minutes": I}, ["service", "environment"]),
    tool("lookup_record", "Look up one record in the company database.",
         {"table": {"type": "string", "enum": ["customers", "orders", "invoices", "shipments", "employees", "accounts"]},
          "field": S, "value": S}, ["table", "field", "value"]),
]
GUI_TOOLS = [
    tool("click", "Click a UI element.", {"element_id": I}, ["element_id"]),
    tool("type_text", "Focus a text field and type into it.",
         {"element_id": I, "text": S, "press_enter": {"type": "boolean"}}, ["element_id", "text"]),
    tool("scroll", "Scroll the active window.",
         {"direction": {"type": "string", "enum": ["up", "down"]}, "amount": I}, ["direction", "amount"]),
    tool("press_keys", "Press a key or key combination, e.g. ctrl+s.", {"keys": S}, ["keys"]),
    tool("wait", "Wait before observing the screen again.", {"seconds": I}, ["seconds"]),
]
_OP_BY_NAME = {t["function"]["name"]: t for t in OP_TOOLS}
# The operator retrieves the few tools relevant to a command before calling the model (tool
# retrieval keeps prompts short), so each command category is offered its own small tool list.
OP_TOOLSETS = {
    "wf.http_request": [_OP_BY_NAME["http_request"]],
    "wf.calendar_event": [_OP_BY_NAME[n] for n in ("create_calendar_event", "list_calendar_events", "send_email")],
    "wf.send_email": [_OP_BY_NAME["send_email"]],
    "wf.send_chat_message": [_OP_BY_NAME[n] for n in ("send_slack_message", "send_sms")],
    "wf.create_ticket": [_OP_BY_NAME[n] for n in ("create_ticket", "update_ticket", "send_slack_message")],
    "wf.monitoring_check": [_OP_BY_NAME[n] for n in ("check_service_health", "ping_host", "get_logs")],
    "wf.data_lookup": [_OP_BY_NAME["lookup_record"]],
}
_GUI_BY_NAME = {t["function"]["name"]: t for t in GUI_TOOLS}
# Cradle-style skill retrieval: the GUI agent is offered the skills relevant to the current subtask.
GUI_TOOLSETS = {
    "click": [_GUI_BY_NAME[n] for n in ("click", "scroll", "wait")],
    "type": [_GUI_BY_NAME[n] for n in ("click", "type_text", "press_keys")],
    "scroll": [_GUI_BY_NAME[n] for n in ("scroll", "click")],
    "keys": [_GUI_BY_NAME[n] for n in ("press_keys", "type_text", "click")],
    "wait": [_GUI_BY_NAME[n] for n in ("click", "wait")],
    "routine": [_GUI_BY_NAME[n] for n in ("click", "type_text", "scroll")],
    "recover": [_GUI_BY_NAME[n] for n in ("click", "press_keys", "wait")],
}
TOOL_LISTS = list(GUI_TOOLSETS.values()) + list(OP_TOOLSETS.values())
# the same lists in the legacy `functions` form, keyed by id() of the tools list
FUNCTIONS_OF = {id(x): [t["function"] for t in x] for x in TOOL_LISTS}
TOOLS_CHARS = {id(x): len(dumps(x)) for x in TOOL_LISTS}
# Tool lists are shared objects repeated in most records: encode them once and splice them in.
_PRE_ENCODED = {id(x): dumps(x) for x in TOOL_LISTS + list(FUNCTIONS_OF.values())}
_SENTINELS = ["\u0001shared%d\u0001" % i for i in range(2)]
_SENTINELS_JSON = [dumps(x) for x in _SENTINELS]


def encode_record(rec):
    """dumps(rec), byte-identical, but faster: shared objects repeated in most records (tool lists,
    system messages) are swapped for sentinels, the rest is encoded and their cached encoding is
    spliced back in."""
    req = rec.get("request")
    holder = req if isinstance(req, dict) else rec
    swaps = []   # (container, key, original)
    for key in ("tools", "functions"):
        v = holder.get(key)
        if v is not None and id(v) in _PRE_ENCODED:
            swaps.append((holder, key, v))
            break
    msgs = holder.get("messages")
    if isinstance(msgs, list) and msgs and id(msgs[0]) in _PRE_ENCODED:
        swaps.append((msgs, 0, msgs[0]))
    if not swaps:
        return dumps(rec)
    for n, (c, k, v) in enumerate(swaps):
        c[k] = _SENTINELS[n]
    try:
        out = dumps(rec)
    finally:
        for c, k, v in swaps:
            c[k] = v
    for n, (c, k, v) in enumerate(swaps):
        out = out.replace(_SENTINELS_JSON[n], _PRE_ENCODED[id(v)], 1)
    return out


def call(messages, content=None, calls=None, tools=None, response_format=None, temperature=0.0,
         max_tokens=None):
    return {"messages": messages, "content": content, "calls": calls, "tools": tools,
            "response_format": response_format, "temperature": temperature, "max_tokens": max_tokens}


# one shared dict per (node, prompt version): records reference it, encode_record splices its cached JSON
SYSTEM_MESSAGES = {node: [{"role": "system", "content": p} for p in prompts] for node, prompts in SYSTEM_PROMPTS.items()}
_PRE_ENCODED.update({id(m): dumps(m) for ms in SYSTEM_MESSAGES.values() for m in ms})


def sys_msg(rng, node):
    return rng.choice(SYSTEM_MESSAGES[node])


def user(text):
    return {"role": "user", "content": text}


# ----------------------------------------------------------------------------------------------
# Software company (MetaGPT-like)
# ----------------------------------------------------------------------------------------------

PRODUCTS = ["ShopLite", "TaskNest", "MediTrack", "FleetPilot", "LedgerLeaf", "CampusHub", "PawCare",
            "GreenGrid", "TicketTide", "RecipeBox", "HireFlow", "StayEasy"]
OBJECTS = [("invoice", "invoices"), ("order", "orders"), ("task", "tasks"), ("contact", "contacts"),
           ("ticket", "tickets"), ("report", "reports"), ("shipment", "shipments"),
           ("appointment", "appointments"), ("product", "products"), ("employee", "employees"),
           ("booking", "bookings"), ("patient", "patients")]
PERSONAS = ["admin", "store manager", "support agent", "nurse", "dispatcher", "accountant", "teacher",
            "recruiter", "team lead", "warehouse clerk"]
FORMATS = ["CSV", "PDF", "XLSX"]
FIELDS_F = ["status", "date", "owner", "amount", "region", "tag"]
CHANNELS = ["email", "Slack", "SMS"]
PERIODS = ["daily", "weekly", "monthly"]

# action -> (request phrasings, title, problem, requirements, acceptance, story want, story benefit)
FEATURES = {
    "export": (["let users export {objs} to {fmt}", "add a way to download the {obj} list as {fmt}",
                "support exporting {objs} into a {fmt} file"],
               "Export {objs} to {fmt}", "Users cannot get their {objs} out of {product}.",
               ["Export button on the {objs} list", "Generate the {fmt} file with all visible columns",
                "Apply the active filters and sort order"],
               ["Exported {fmt} opens without errors", "Row count matches the filtered list"],
               "export the {obj} list as {fmt}", "I can share it with people outside {product}"),
    "filter": (["make it possible to filter {objs} by {field}", "add a {field} filter to the {objs} page",
                "let people narrow down {objs} by {field}"],
               "Filter {objs} by {field}", "Finding the right {objs} in {product} takes too long.",
               ["{field} filter control above the {objs} list", "Filter state kept in the URL",
                "Clear-filter action"],
               ["Only {objs} matching the selected {field} are shown", "Clearing restores the full list"],
               "filter {objs} by {field}", "I only see the {objs} I care about"),
    "bulk_edit": (["allow editing the {field} of many {objs} at once", "add bulk {field} updates for {objs}",
                   "let users change {field} on several selected {objs} in one go"],
                  "Bulk edit {field} of {objs}", "Changing the {field} of many {objs} one by one is slow.",
                  ["Multi-select on the {objs} list", "Bulk action to set {field}", "Confirmation with count"],
                  ["All selected {objs} get the new {field}", "Action is recorded in the history"],
                  "change the {field} of many {objs} at once", "I save time on repetitive edits"),
    "share_link": (["let users share a {obj} through a public link", "add shareable links for {objs}",
                    "make {objs} shareable with a read-only URL"],
                   "Share {objs} via link", "{product} users cannot show a {obj} to outsiders.",
                   ["Generate a read-only link per {obj}", "Links can be revoked", "Optional expiry date"],
                   ["Link opens the {obj} without login", "Revoked links return 404"],
                   "share a {obj} with a read-only link", "outsiders can see it without an account"),
    "notify": (["send a {channel} alert when a {obj} changes", "notify owners via {channel} on {obj} updates",
                "add {channel} notifications for {obj} changes"],
               "{channel} alerts on {obj} changes", "People miss important {obj} updates in {product}.",
               ["Notification settings per user", "Send a {channel} message on every {obj} update",
                "Include a link to the changed {obj}"],
               ["A change triggers one {channel} message within a minute", "Users can opt out"],
               "get a {channel} alert when a {obj} changes", "I react to updates quickly"),
    "schedule_report": (["email a {period} summary of {objs}", "add a {period} {obj} report sent by email",
                         "schedule {period} reports on {objs}"],
                        "{period} {obj} report", "Managers assemble {obj} summaries in {product} by hand.",
                        ["{period} job that builds the {obj} summary", "Recipients configurable per workspace",
                         "Report contains totals and changes since the last run"],
                        ["Report arrives on schedule", "Totals match the {objs} list"],
                        "receive a {period} summary of {objs}", "I don't have to compile it myself"),
    "archive": (["let users archive old {objs}", "add an archive for {objs} that are done",
                 "hide finished {objs} by archiving them"],
                "Archive {objs}", "Old {objs} clutter the {product} workspace.",
                ["Archive action on a {obj}", "Archived view with restore", "Archived {objs} excluded from search"],
                ["Archived {objs} disappear from the main list", "Restore brings them back unchanged"],
                "archive {objs} I no longer need", "my list stays focused"),
    "import_csv": (["import {objs} from a CSV file", "let users upload a CSV of {objs}",
                    "bulk-create {objs} from a spreadsheet upload"],
                   "Import {objs} from CSV", "Moving existing {objs} into {product} is manual.",
                   ["CSV upload with column mapping", "Validation report before import", "Duplicates skipped"],
                   ["Valid rows become {objs}", "Invalid rows are listed with the reason"],
                   "import {objs} from a CSV file", "I can migrate without retyping"),
    "audit_log": (["keep an audit log of changes to {objs}", "record who changed which {obj} and when",
                   "add change history for {objs}"],
                  "Audit log for {objs}", "Nobody can tell who changed a {obj} in {product}.",
                  ["Log every create, update and delete of a {obj}", "Show author, time and diff",
                   "Log is read-only"],
                  ["Each change appears in the log", "Entries cannot be edited"],
                  "see who changed a {obj} and when", "I can trace mistakes"),
}
FEATURE_KEYS = list(FEATURES)
PRIORITIES = ["P0", "P1", "P2", "P3"]


def feature_slots(rng):
    key = rng.choice(FEATURE_KEYS)
    obj, objs = rng.choice(OBJECTS)
    slots = {"obj": obj, "objs": objs, "fmt": rng.choice(FORMATS), "field": rng.choice(FIELDS_F),
             "channel": rng.choice(CHANNELS), "period": rng.choice(PERIODS), "product": rng.choice(PRODUCTS)}
    f = FEATURES[key]
    phrase = rng.choice(f[0]).format(**slots)
    return key, slots, phrase


def cap(s):
    return s[:1].upper() + s[1:]


PRD_KEYS = "title, product, requested_by, priority, target_release, problem, requirements, acceptance_criteria"
PRD_INSTR = ["Write the PRD for the original requirements as one JSON object.",
             "Based on the original requirements, write the PRD (product requirements document) as JSON.",
             "Fill in the PRD JSON from the original requirements above. JSON only, no prose.",
             "Turn the original requirements into our PRD JSON with exactly these keys."]
PRD_PROMPT = "## Original Requirements\n{req}\n\n## PRD keys\n" + PRD_KEYS + "\n\n## Instruction\n{instr}"


def task_prd_json(rng):
    node = "metagpt.product_manager"
    key, sl, phrase = feature_slots(rng)
    f = FEATURES[key]
    first, last = person(rng)
    who = f"{first} {last}"
    prio = rng.choice(PRIORITIES)
    rel = rng.choice([f"v{rng.randrange(2, 6)}.{rng.randrange(0, 10)}", f"2025-Q{rng.randrange(2, 5)}"])
    t = rng.randrange(5)
    if t == 0:
        req = f"Product: {sl['product']}\nRequest: {phrase}\nRequested by: {who}\nPriority: {prio}\nTarget release: {rel}"
    elif t == 1:
        req = f"{who} asks: \"{phrase}\". Product {sl['product']}, priority {prio}, target release {rel}."
    elif t == 2:
        req = f"{who} wants {sl['product']} to {phrase}. Priority {prio}, release {rel}."
    elif t == 3:
        req = f"- product: {sl['product']}\n- from: {who}\n- ask: {phrase}\n- priority: {prio}\n- release: {rel}"
    else:
        req = f"{sl['product']} / {prio} / {rel}. Requester {who} writes: \"Could you {phrase}?\""
    text = PRD_PROMPT.format(req=req, instr=rng.choice(PRD_INSTR))
    prd = {"title": cap(f[1].format(**sl)), "product": sl["product"], "requested_by": who, "priority": prio,
           "target_release": rel, "problem": f[2].format(**sl),
           "requirements": [cap(r.format(**sl)) for r in f[3]],
           "acceptance_criteria": [cap(a.format(**sl)) for a in f[4]]}
    msgs = [sys_msg(rng, node), user(text)]
    return node, call(msgs, content=json.dumps(prd, ensure_ascii=False),
                      response_format={"type": "json_object"}, temperature=0.0)


STORY_INSTR = ["Write user stories for the backlog, one per persona: \"As a <persona>, I want <capability> so that "
               "<benefit>\", each followed by an Acceptance line.",
               "One user story per persona in the As a / I want / so that form, numbered, with an Acceptance line.",
               "User stories please (As a ..., I want ... so that ...), numbered, one per persona, each with its acceptance "
               "criterion."]
STORY_PROMPT = "## Feature\n{feat}\n\n## Personas\n{plist}\n\n## Instruction\n{instr}"


def task_user_stories(rng):
    node = "metagpt.product_manager"
    key, sl, phrase = feature_slots(rng)
    f = FEATURES[key]
    personas = rng.sample(PERSONAS, rng.randrange(1, 4))
    plist = ", ".join(personas)
    feat = rng.choice([f"{sl['product']}: {phrase}", f"{cap(phrase)} (product: {sl['product']})",
                       f"In {sl['product']}, {phrase}"])
    text = STORY_PROMPT.format(feat=feat, plist=plist, instr=rng.choice(STORY_INSTR))
    want, benefit = f[5].format(**sl), f[6].format(**sl)
    acc = f[4][0].format(**sl)
    lines = []
    for i, p in enumerate(personas, 1):
        art = "an" if p[0] in "aeiou" else "a"
        lines.append(f"{i}. As {art} {p}, I want to {want} so that {benefit}.\n   Acceptance: {acc}.")
    msgs = [sys_msg(rng, node), user(text)]
    return node, call(msgs, content="\n".join(lines), temperature=0.2)


ENTITIES = {
    "Order": [("customer_email", "string"), ("total", "number"), ("status", "string"), ("placed_at", "datetime"),
              ("currency", "string"), ("notes", "string")],
    "Customer": [("name", "string"), ("email", "string"), ("phone", "string"), ("vip", "boolean"),
                 ("created_at", "datetime"), ("country", "string")],
    "Invoice": [("number", "string"), ("amount", "number"), ("due_date", "date"), ("paid", "boolean"),
                ("customer_id", "integer"), ("currency", "string")],
    "Ticket": [("title", "string"), ("priority", "string"), ("status", "string"), ("assignee", "string"),
               ("opened_at", "datetime"), ("sla_hours", "integer")],
    "Product": [("name", "string"), ("sku", "string"), ("price", "number"), ("in_stock", "boolean"),
                ("category", "string"), ("weight_kg", "number")],
    "Booking": [("guest_name", "string"), ("check_in", "date"), ("check_out", "date"), ("room", "string"),
                ("guests", "integer"), ("confirmed", "boolean")],
    "Employee": [("full_name", "string"), ("email", "string"), ("department", "string"), ("salary", "number"),
                 ("hired_on", "date"), ("active", "boolean")],
    "Shipment": [("tracking_number", "string"), ("carrier", "string"), ("status", "string"),
                 ("shipped_at", "datetime"), ("weight_kg", "number"), ("order_id", "integer")],
    "Appointment": [("patient_name", "string"), ("starts_at", "datetime"), ("doctor", "string"),
                    ("reason", "string"), ("duration_min", "integer"), ("cancelled", "boolean")],
    "Course": [("title", "string"), ("teacher", "string"), ("credits", "integer"), ("starts_on", "date"),
               ("capacity", "integer"), ("published", "boolean")],
}
ENTITY_NAMES = list(ENTITIES)
PLURAL = {"Order": "orders", "Customer": "customers", "Invoice": "invoices", "Ticket": "tickets",
          "Product": "products", "Booking": "bookings", "Employee": "employees", "Shipment": "shipments",
          "Appointment": "appointments", "Course": "courses"}


def pick_fields(rng, ent, lo=3, hi=5):
    fields = ENTITIES[ent]
    idx = sorted(rng.sample(range(len(fields)), rng.randrange(lo, hi + 1)))
    return [fields[i] for i in idx]


API_FORMAT = ("{{\"resource\": \"...\", \"base_path\": \"/api/v1/...\", \"endpoints\": [{{\"method\": \"GET\", "
              "\"path\": \"...\", \"action\": \"list\"}}], \"model\": {{\"name\": \"...\", \"fields\": {{...}}}}}}")
API_INSTR = ["Design the REST API endpoints and the data model for this resource. JSON only.",
             "Design the REST endpoints (method, path, action) and the data model; answer with one JSON object in the "
             "format above.",
             "Produce the API design JSON: endpoints for the requested operations and the model with the given fields."]
API_PROMPT = "## Context\n{ctx}\n\n## Format example\n" + API_FORMAT + "\n\n## Instruction\n{instr}"


def task_api_design(rng):
    node = "metagpt.architect"
    ent = rng.choice(ENTITY_NAMES)
    plural = PLURAL[ent]
    fields = pick_fields(rng, ent)
    ops_all = ["list", "create", "get", "update", "delete"]
    ops = [o for o in ops_all if rng.random() < 0.75] or ["list", "get"]
    ver = rng.choice(["v1", "v1", "v2"])
    style = rng.randrange(3)
    if style == 0:
        ftxt = ", ".join(f"{n} ({t})" for n, t in fields)
    elif style == 1:
        ftxt = "\n" + "\n".join(f"- {n}: {t}" for n, t in fields)
    else:
        ftxt = "; ".join(f"{n} -> {t}" for n, t in fields)
    otxt = ", ".join(ops)
    ctx = rng.choice([f"Resource: {ent} (API {ver})\nFields: {ftxt}\nOperations: {otxt}",
                      f"We need endpoints for {plural} ({ver}) supporting {otxt}. A {ent} has: {ftxt}",
                      f"Resource {ent}, version {ver}, operations [{otxt}], fields {ftxt}."])
    text = API_PROMPT.format(ctx=ctx, instr=rng.choice(API_INSTR))
    base = f"/api/{ver}/{plural}"
    eps = []
    for o in ops:
        if o == "list":
            eps.append({"method": "GET", "path": base, "action": "list"})
        elif o == "create":
            eps.append({"method": "POST", "path": base, "action": "create"})
        elif o == "get":
            eps.append({"method": "GET", "path": base + "/{id}", "action": "get"})
        elif o == "update":
            eps.append({"method": "PATCH", "path": base + "/{id}", "action": "update"})
        else:
            eps.append({"method": "DELETE", "path": base + "/{id}", "action": "delete"})
    model = {"name": ent, "fields": {"id": "integer"}}
    for n, ty in fields:
        model["fields"][n] = ty
    design = {"resource": plural, "base_path": base, "endpoints": eps, "model": model}
    msgs = [sys_msg(rng, node), user(text)]
    return node, call(msgs, content=json.dumps(design, ensure_ascii=False), temperature=0.0,
                      response_format={"type": "json_object"})


SQL_WORDS = {"string": "text", "number": "numeric", "boolean": "bool", "datetime": "timestamptz", "date": "date",
             "integer": "int"}
SQL_TYPES = {"string": "TEXT", "number": "NUMERIC(12, 2)", "boolean": "BOOLEAN", "datetime": "TIMESTAMPTZ",
             "date": "DATE", "integer": "INTEGER"}


DDL_INSTR = ["Write the PostgreSQL DDL (CREATE TABLE) for this table, id BIGSERIAL PRIMARY KEY, NOT NULL unless NULL "
             "allowed.",
             "SQL migration: write the CREATE TABLE statement (PostgreSQL) for the table above.",
             "Return PostgreSQL DDL only (CREATE TABLE, CREATE INDEX) in one sql block."]
DDL_PROMPT = "## Table\n{table}\n\n## Columns\n{cols}{extra}\n\n## Instruction\n{instr}"


def task_db_schema(rng):
    node = "metagpt.architect"
    ent = rng.choice(ENTITY_NAMES)
    table = PLURAL[ent]
    fields = pick_fields(rng, ent, 3, 6)
    optional = {n for n, _ in fields if rng.random() < 0.3}
    idx_field = rng.choice(fields)[0] if rng.random() < 0.5 else None
    parts = []
    for n, ty in fields:
        parts.append(f"{n} {SQL_WORDS[ty]}" + (" NULL allowed" if n in optional else ""))
    cols_txt = rng.choice([", ".join(parts), "\n" + "\n".join("- " + p for p in parts), "; ".join(parts)])
    extra = f"\nAlso create an index on column {idx_field}." if idx_field else ""
    text = DDL_PROMPT.format(table=table, cols=cols_txt, extra=extra, instr=rng.choice(DDL_INSTR))
    cols = ["    id BIGSERIAL PRIMARY KEY"]
    for n, ty in fields:
        cols.append(f"    {n} {SQL_TYPES[ty]}" + ("" if n in optional else " NOT NULL"))
    sql = f"CREATE TABLE {table} (\n" + ",\n".join(cols) + "\n);"
    if idx_field:
        sql += f"\nCREATE INDEX idx_{table}_{idx_field} ON {table} ({idx_field});"
    msgs = [sys_msg(rng, node), user(text)]
    return node, call(msgs, content=f"```sql\n{sql}\n```", temperature=0.0)


PY_TYPES = {"string": "str", "number": "float", "boolean": "bool", "datetime": "datetime", "date": "date",
            "integer": "int"}
CRUD_OPS = ["get", "list", "create", "update", "delete", "filter", "count", "exists"]


def snake(ent):
    return re.sub(r"(?<!^)([A-Z])", r"_\1", ent).lower()


def crud_case(rng):
    ent = rng.choice(ENTITY_NAMES)
    e = snake(ent)
    es = PLURAL[ent]
    op = rng.choice(CRUD_OPS)
    fname, ftype = rng.choice(ENTITIES[ent])
    pt = PY_TYPES[ftype]
    lim = rng.choice([20, 50, 100])
    art = "an" if e[0] in "aeiou" else "a"
    if op == "get":
        sig = f"def get_{e}(db: Session, {e}_id: int) -> {ent} | None:"
        doc = f"Return the {e} with the given id, or None if it does not exist."
        body = f"    return db.get({ent}, {e}_id)"
    elif op == "list":
        sig = f"def list_{es}(db: Session, skip: int = 0, limit: int = {lim}) -> list[{ent}]:"
        doc = f"Return a page of {es} ordered by id."
        body = f"    return list(db.scalars(select({ent}).order_by({ent}.id).offset(skip).limit(limit)))"
    elif op == "create":
        sig = f"def create_{e}(db: Session, data: {ent}Create) -> {ent}:"
        doc = f"Create {art} {e} from the validated payload, commit and return it."
        body = (f"    {e} = {ent}(**data.model_dump())\n    db.add({e})\n    db.commit()\n"
                f"    db.refresh({e})\n    return {e}")
    elif op == "update":
        sig = f"def update_{e}_{fname}(db: Session, {e}_id: int, {fname}: {pt}) -> {ent} | None:"
        doc = f"Set the {fname} of {art} {e}; return the updated {e} or None if it does not exist."
        body = (f"    {e} = db.get({ent}, {e}_id)\n    if {e} is None:\n        return None\n"
                f"    {e}.{fname} = {fname}\n    db.commit()\n    db.refresh({e})\n    return {e}")
    elif op == "delete":
        sig = f"def delete_{e}(db: Session, {e}_id: int) -> bool:"
        doc = f"Delete the {e}; return True if it existed."
        body = (f"    {e} = db.get({ent}, {e}_id)\n    if {e} is None:\n        return False\n"
                f"    db.delete({e})\n    db.commit()\n    return True")
    elif op == "filter":
        sig = f"def list_{es}_by_{fname}(db: Session, {fname}: {pt}) -> list[{ent}]:"
        doc = f"Return all {es} whose {fname} equals the given value."
        body = f"    return list(db.scalars(select({ent}).where({ent}.{fname} == {fname})))"
    elif op == "count":
        sig = f"def count_{es}_by_{fname}(db: Session, {fname}: {pt}) -> int:"
        doc = f"Count the {es} with the given {fname}."
        body = f"    return db.scalar(select(func.count()).select_from({ent}).where({ent}.{fname} == {fname}))"
    else:
        sig = f"def {e}_exists_with_{fname}(db: Session, {fname}: {pt}) -> bool:"
        doc = f"Tell whether any {e} has the given {fname}."
        body = f"    return db.scalar(select({ent}.id).where({ent}.{fname} == {fname}).limit(1)) is not None"
    name = sig[4:sig.index("(")]
    return ent, e, name, sig, doc, body


CRUD_INSTR = ["Implement this CRUD function; keep the signature. Output only the code.",
              "Implement the CRUD function with SQLAlchemy 2 (Session, select). Keep the signature.",
              "Write the body of `{name}` for the CRUD layer; return only the code.",
              "Implement `{name}` as specified. Do not change the signature."]
CRUD_PROMPT = (
    "NOTICE\nRole: you are a professional engineer; the main goal is to write PEP 8 compliant, elegant, modular, easy to "
    "read and maintain Python 3.11 code for the data access (CRUD) layer.\n"
    "ATTENTION: use '##' to split sections, not '#'. Output format carefully referenced \"Format example\".\n\n"
    "## Code: app/crud/{e}.py\n```python\n{sig}\n    \"\"\"{doc}\"\"\"\n```\n\n"
    "## Attentions\n1. Only one function: implement THIS function only, with SQLAlchemy 2 (Session, select, func).\n"
    "2. Complete code: no TODO, no placeholder, no pass.\n3. Keep the signature and the type hints exactly as given.\n"
    "4. Models live in app.models, schemas in app.schemas; they are already imported.\n\n"
    "## Format example\n```python\ndef ...(db: Session, ...) -> ...:\n    ...\n```\n\n## Instruction\n{instr}")


def crud_prompt(rng, ent, e, name, sig, doc):
    return CRUD_PROMPT.format(e=e, sig=sig, doc=doc, instr=rng.choice(CRUD_INSTR).format(name=name))


def task_crud_function(rng):
    node = "metagpt.engineer"
    msgs = [sys_msg(rng, node)]
    if rng.random() < 0.15:
        ent, e, name, sig, doc, body = crud_case(rng)
        msgs.append(user(crud_prompt(rng, ent, e, name, sig, doc)))
        msgs.append({"role": "assistant", "content": f"```python\n{sig}\n{body}\n```"})
    ent, e, name, sig, doc, body = crud_case(rng)
    msgs.append(user(crud_prompt(rng, ent, e, name, sig, doc)))
    return node, call(msgs, content=f"```python\n{sig}\n{body}\n```", temperature=0.0)


ALGOS = [
    ("merge_intervals", "def {f}(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:",
     ["Merge all overlapping closed intervals and return them sorted by start.",
      "Given possibly overlapping [start, end] ranges, return the minimal set of disjoint ranges."],
     ["    merged: list[tuple[int, int]] = []\n    for start, end in sorted(intervals):\n        if merged and start <= merged[-1][1]:\n            merged[-1] = (merged[-1][0], max(merged[-1][1], end))\n        else:\n            merged.append((start, end))\n    return merged",
      "    if not intervals:\n        return []\n    items = sorted(intervals, key=lambda iv: iv[0])\n    out = [items[0]]\n    for s, e in items[1:]:\n        ls, le = out[-1]\n        if s <= le:\n            out[-1] = (ls, max(le, e))\n        else:\n            out.append((s, e))\n    return out"],
     "O(n log n) time for the sort, O(n) extra space."),
    ("top_k_frequent", "def {f}(words: list[str], k: int) -> list[str]:",
     ["Return the k most frequent words, ties broken alphabetically.",
      "Find the k words that occur most often; equal counts are ordered lexicographically."],
     ["    counts = Counter(words)\n    return sorted(counts, key=lambda w: (-counts[w], w))[:k]",
      "    counts = Counter(words)\n    return [w for _, w in heapq.nsmallest(k, ((-c, w) for w, c in counts.items()))]"],
     "Counting is O(n); the heap variant keeps selection at O(m log k)."),
    ("is_balanced", "def {f}(text: str) -> bool:",
     ["Return True if every (, [ and { in text is closed in the right order.",
      "Check that brackets are balanced and properly nested; other characters are ignored."],
     ["    pairs = {')': '(', ']': '[', '}': '{'}\n    stack: list[str] = []\n    for ch in text:\n        if ch in '([{':\n            stack.append(ch)\n        elif ch in pairs:\n            if not stack or stack.pop() != pairs[ch]:\n                return False\n    return not stack"],
     "Single pass with a stack: O(n) time, O(n) space in the worst case."),
    ("leftmost_index", "def {f}(nums: list[int], target: int) -> int:",
     ["Binary search in a sorted list: return the first index whose value is >= target.",
      "Return the insertion point for target in sorted nums (leftmost position)."],
     ["    lo, hi = 0, len(nums)\n    while lo < hi:\n        mid = (lo + hi) // 2\n        if nums[mid] < target:\n            lo = mid + 1\n        else:\n            hi = mid\n    return lo",
      "    return bisect.bisect_left(nums, target)"],
     "O(log n) comparisons."),
    ("topo_order", "def {f}(deps: dict[str, list[str]]) -> list[str]:",
     ["Return a build order where every node comes after its dependencies; raise ValueError on a cycle.",
      "Topologically sort the dependency graph (node -> prerequisites). Detect cycles."],
     ["    indeg = {n: 0 for n in deps}\n    users: dict[str, list[str]] = {n: [] for n in deps}\n    for n, pre in deps.items():\n        for p in pre:\n            indeg.setdefault(p, 0)\n            users.setdefault(p, []).append(n)\n            indeg[n] += 1\n    queue = deque(sorted(n for n, d in indeg.items() if d == 0))\n    order = []\n    while queue:\n        n = queue.popleft()\n        order.append(n)\n        for u in users.get(n, []):\n            indeg[u] -= 1\n            if indeg[u] == 0:\n                queue.append(u)\n    if len(order) != len(indeg):\n        raise ValueError(\"dependency cycle\")\n    return order"],
     "Kahn's algorithm, O(V + E)."),
    ("shortest_path", "def {f}(graph: dict[str, dict[str, float]], src: str, dst: str) -> float:",
     ["Dijkstra: return the length of the shortest path from src to dst, math.inf if unreachable.",
      "Weighted directed graph with non-negative weights; compute the minimal distance src -> dst."],
     ["    dist = {src: 0.0}\n    heap = [(0.0, src)]\n    while heap:\n        d, node = heapq.heappop(heap)\n        if node == dst:\n            return d\n        if d > dist.get(node, math.inf):\n            continue\n        for nxt, w in graph.get(node, {}).items():\n            nd = d + w\n            if nd < dist.get(nxt, math.inf):\n                dist[nxt] = nd\n                heapq.heappush(heap, (nd, nxt))\n    return math.inf"],
     "O((V + E) log V) with a binary heap."),
    ("edit_distance", "def {f}(a: str, b: str) -> int:",
     ["Return the Levenshtein distance between a and b.",
      "Minimum number of single-character inserts, deletes and substitutions turning a into b."],
     ["    prev = list(range(len(b) + 1))\n    for i, ca in enumerate(a, 1):\n        cur = [i]\n        for j, cb in enumerate(b, 1):\n            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))\n        prev = cur\n    return prev[-1]",
      "    m, n = len(a), len(b)\n    dp = [[0] * (n + 1) for _ in range(m + 1)]\n    for i in range(m + 1):\n        dp[i][0] = i\n    for j in range(n + 1):\n        dp[0][j] = j\n    for i in range(1, m + 1):\n        for j in range(1, n + 1):\n            cost = 0 if a[i - 1] == b[j - 1] else 1\n            dp[i][j] = min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + cost)\n    return dp[m][n]"],
     "O(len(a) * len(b)) time; the rolling-row version needs O(len(b)) memory."),
    ("longest_unique_run", "def {f}(s: str) -> int:",
     ["Length of the longest substring without repeated characters.",
      "Return the size of the longest window of s in which all characters are distinct."],
     ["    last: dict[str, int] = {}\n    start = best = 0\n    for i, ch in enumerate(s):\n        if last.get(ch, -1) >= start:\n            start = last[ch] + 1\n        last[ch] = i\n        best = max(best, i - start + 1)\n    return best"],
     "Sliding window, O(n)."),
    ("parse_duration", "def {f}(text: str) -> int:",
     ["Parse durations like '1h30m', '45s' or '2h5s' into seconds; raise ValueError on garbage.",
      "Convert a compact duration string (h, m, s units, any subset, in that order) to seconds."],
     ["    m = re.fullmatch(r\"(?:(\\d+)h)?(?:(\\d+)m)?(?:(\\d+)s)?\", text.strip())\n    if not text.strip() or m is None:\n        raise ValueError(f\"bad duration: {text!r}\")\n    h, mi, s = (int(g) if g else 0 for g in m.groups())\n    return h * 3600 + mi * 60 + s"],
     "Regex-based, linear in the input length."),
    ("window_max", "def {f}(nums: list[int], k: int) -> list[int]:",
     ["Return the maximum of every contiguous window of size k.",
      "Sliding window maximum over nums with window length k."],
     ["    dq: deque[int] = deque()\n    out = []\n    for i, x in enumerate(nums):\n        while dq and nums[dq[-1]] <= x:\n            dq.pop()\n        dq.append(i)\n        if dq[0] <= i - k:\n            dq.popleft()\n        if i >= k - 1:\n            out.append(nums[dq[0]])\n    return out"],
     "Monotonic deque, O(n) overall."),
    ("rotate_matrix", "def {f}(m: list[list[int]]) -> list[list[int]]:",
     ["Return the square matrix rotated 90 degrees clockwise.",
      "Rotate an n x n grid clockwise by a quarter turn, returning a new matrix."],
     ["    return [list(row) for row in zip(*m[::-1])]",
      "    n = len(m)\n    return [[m[n - 1 - j][i] for j in range(n)] for i in range(n)]"],
     "O(n^2), which is optimal since every cell moves."),
    ("token_bucket", "class {F}:\n    def __init__(self, rate: float, capacity: int) -> None: ...\n    def allow(self, now: float) -> bool: ...",
     ["Token-bucket rate limiter: refill `rate` tokens per second up to `capacity`; allow() spends one.",
      "Implement a rate limiter class; allow(now) returns True if a request at time now may pass."],
     ["    def __init__(self, rate: float, capacity: int) -> None:\n        self.rate = rate\n        self.capacity = capacity\n        self.tokens = float(capacity)\n        self.last = 0.0\n\n    def allow(self, now: float) -> bool:\n        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)\n        self.last = now\n        if self.tokens >= 1:\n            self.tokens -= 1\n            return True\n        return False"],
     "O(1) per call; time is injected so the class is easy to test."),
]
ALGO_INTROS = ["", "", "Here is an implementation.\n\n", "Sure — this handles the edge cases mentioned in the spec.\n\n",
               "A straightforward approach works well here.\n\n", "Implementation below; I kept it dependency-free apart from the standard library.\n\n",
               "Let me think about the edge cases first: empty input and duplicates. With that settled:\n\n"]
ALGO_OUTROS = ["", "", "\n\nComplexity: {cx}", "\n\n{cx} Edge cases: empty input returns early.",
               "\n\nNote: {cx} Add a couple of property-based tests if this is on a hot path.",
               "\n\nWhy this works: each element is processed a bounded number of times. {cx}"]


ALGO_INSTR = ["It is on a hot path: choose an efficient algorithm and state its time complexity.",
              "Implement `{fname}`; mind the edge cases and the algorithmic complexity.",
              "Standard library only; explain the complexity if it is not obvious."]
ALGO_PROMPT = ("## Algorithm task: utils/{name}.py\n```python\n{sig}\n```\n## Requirements\n{spec}\n\n"
               "## Performance notes\n- Inputs can be large (up to 10^6 items); avoid quadratic algorithms where a better "
               "one exists.\n- Standard library only (collections, heapq, bisect, math, re).\n\n## Instruction\n{instr}")


def task_algorithmic_code(rng):
    node = "metagpt.engineer"
    name, sig_t, specs, sols, cx = rng.choice(ALGOS)
    fname = rng.choice([name, name + "_v2", "compute_" + name, name.replace("_", "")]) if not sig_t.startswith("class") else rng.choice(["TokenBucket", "RateLimiter", "Throttle"])
    sig = sig_t.format(f=fname, F=fname)
    spec = rng.choice(specs)
    text = ALGO_PROMPT.format(name=name, sig=sig, spec=spec, instr=rng.choice(ALGO_INSTR).format(fname=fname))
    sol = rng.choice(sols)
    if sig_t.startswith("class"):
        code = f"class {fname}:\n{sol}"
    else:
        code = f"{sig}\n{sol}"
    imports = [imp for kw, imp in (("Counter", "from collections import Counter"), ("deque", "from collections import deque"),
                                   ("heapq", "import heapq"), ("math.", "import math"), ("bisect", "import bisect"),
                                   ("re.", "import re")) if kw in sol]
    if imports:
        code = "\n".join(imports) + "\n\n\n" + code
    content = rng.choice(ALGO_INTROS) + f"```python\n{code}\n```" + rng.choice(ALGO_OUTROS).format(cx=cx)
    msgs = [sys_msg(rng, node), user(text)]
    return node, call(msgs, content=content, temperature=rng.choice([0.2, 0.7]))


def unit_case(rng):
    """A small function (source text), its import path and a table of (args, expected)."""
    fam = rng.randrange(6)
    pkg = rng.choice(["billing", "shop", "core", "utils", "pricing", "hr", "app"])
    if fam == 0:
        fn = rng.choice(["add_vat", "with_sales_tax", "gross_price", "apply_tax"])
        rate = rng.choice([0.05, 0.07, 0.19, 0.2, 0.21, 0.25])
        src = f"def {fn}(amount: float) -> float:\n    return round(amount * (1 + {rate}), 2)"
        cases = [(a, round(a * (1 + rate), 2)) for a in (100, 19.99, 0)]
        return pkg, "tax", fn, src, ("amount",), cases, True
    if fam == 1:
        fn = rng.choice(["clamp_quantity", "clamp_volume", "bound_score", "limit_retries"])
        lo = rng.randrange(0, 5)
        hi = lo + rng.choice([10, 20, 50, 100])
        src = f"def {fn}(value: int) -> int:\n    return max({lo}, min({hi}, value))"
        cases = [(lo - 1, lo), (hi + 1, hi), ((lo + hi) // 2, (lo + hi) // 2), (lo, lo), (hi, hi)]
        return pkg, "limits", fn, src, ("value",), cases, False
    if fam == 2:
        fn = rng.choice(["discounted_total", "loyalty_price", "tiered_total"])
        t1 = rng.choice([50, 100, 150])
        t2 = t1 * rng.choice([2, 3, 4])
        d1, d2 = rng.choice([(0.95, 0.9), (0.9, 0.8), (0.97, 0.93)])
        src = (f"def {fn}(total: float) -> float:\n    if total >= {t2}:\n        return round(total * {d2}, 2)\n"
               f"    if total >= {t1}:\n        return round(total * {d1}, 2)\n    return total")
        cases = [(t1 - 1, t1 - 1), (t1, round(t1 * d1, 2)), (t2, round(t2 * d2, 2)), (t2 - 1, round((t2 - 1) * d1, 2))]
        return pkg, "discounts", fn, src, ("total",), cases, True
    if fam == 3:
        fn = rng.choice(["fizz_label", "beat_word", "tick_label"])
        a, b = rng.choice([(3, 5), (2, 7), (4, 6), (3, 7)])
        wa, wb = rng.choice([("Fizz", "Buzz"), ("Ping", "Pong"), ("Foo", "Bar")])
        src = (f"def {fn}(n: int) -> str:\n    out = \"\"\n    if n % {a} == 0:\n        out += \"{wa}\"\n"
               f"    if n % {b} == 0:\n        out += \"{wb}\"\n    return out or str(n)")
        def lab(n):
            o = (wa if n % a == 0 else "") + (wb if n % b == 0 else "")
            return o or str(n)
        cases = [(n, lab(n)) for n in (1, a, b, a * b)]
        return pkg, "labels", fn, src, ("n",), cases, False
    if fam == 4:
        fn = rng.choice(["truncate", "shorten_title", "preview_text"])
        n = rng.choice([10, 12, 16, 20])
        src = f"def {fn}(text: str) -> str:\n    if len(text) <= {n}:\n        return text\n    return text[: {n} - 1] + \"…\""
        long_t = "The quick brown fox jumps over the lazy dog"
        cases = [("", ""), ("hello", "hello"), (long_t[:n], long_t[:n]), (long_t, long_t[:n - 1] + "…")]
        return pkg, "text", fn, src, ("text",), cases, False
    fn = rng.choice(["grade_for", "letter_grade", "score_band"])
    a, b, c = rng.choice([(90, 80, 70), (85, 70, 55), (93, 85, 75)])
    src = (f"def {fn}(score: int) -> str:\n    if score >= {a}:\n        return \"A\"\n    if score >= {b}:\n"
           f"        return \"B\"\n    if score >= {c}:\n        return \"C\"\n    return \"F\"")
    cases = [(a, "A"), (a - 1, "B"), (b, "B"), (c, "C"), (c - 1, "F")]
    return pkg, "grading", fn, src, ("score",), cases, False


TEST_INSTR = ["Write pytest unit tests for the code above: a parametrized test with the boundary values, pytest.approx "
              "for floats. Test file: tests/test_{mod}.py",
              "Write PEP 8 compliant pytest unit tests for `{fn}` in tests/test_{mod}.py; cover the edge cases.",
              "Given the code above, write unit test cases with pytest (parametrize the cases)."]
TEST_PROMPT = (
    "NOTICE\n1. Role: you are a QA engineer; the main goal is to design, develop, and execute PEP 8 compliant, "
    "well-structured, maintainable test cases and scripts for Python 3.11.\n2. Requirement: based on the context, write "
    "unit tests that make sure the code below works; use pytest.\n3. Attention: use '##' to split sections.\n\n"
    "## Code to test\n```python\n# file: {path}\n{src}\n```\n\n## Instruction\n{instr}")


def task_unit_tests(rng):
    node = "metagpt.qa_engineer"
    pkg, mod, fn, src, params, cases, approx = unit_case(rng)
    path = f"{pkg}/{mod}.py"
    text = TEST_PROMPT.format(path=path, src=src, instr=rng.choice(TEST_INSTR).format(fn=fn, mod=mod))
    p = params[0]
    rows = "\n".join(f"        ({a!r}, {e!r})," for a, e in cases)
    check = "pytest.approx(expected)" if approx else "expected"
    code = (f"import pytest\n\nfrom {pkg}.{mod} import {fn}\n\n\n@pytest.mark.parametrize(\n"
            f"    (\"{p}\", \"expected\"),\n    [\n{rows}\n    ],\n)\ndef test_{fn}({p}, expected):\n"
            f"    assert {fn}({p}) == {check}")
    msgs = [sys_msg(rng, node), user(text)]
    return node, call(msgs, content=f"```python\n{code}\n```", temperature=0.0)


def debug_scenario(rng):
    """Failing CI output + code under test; returns (output, code, path, key facts for the prose)."""
    k = rng.randrange(8)
    job = rng.randrange(1000, 99999)
    branch = rng.choice(["main", "feature/export", "fix/pagination", "release/2.4", "dependabot/pip/sqlalchemy-2.0.36"])
    secrets = False
    if k == 0:
        size = rng.choice([10, 20, 25, 50])
        out = (f"FAILED tests/test_orders.py::test_list_orders_second_page - assert {size - 1} == {size}\n"
               f" +  where {size - 1} = len([<Order 2>, <Order 3>, ...])\n1 failed, 84 passed in 3.2{rng.randrange(10)}s")
        code = f"def page(items, page, size={size}):\n    start = page * size - 1\n    return items[start:start + size - 1]"
        facts = {"cause": ["`start` is shifted by one and the slice end drops one more element",
                           "the slice bounds are off by one on both ends",
                           "the pagination arithmetic subtracts 1 twice"],
                 "fix": f"def page(items, page, size={size}):\n    start = (page - 1) * size\n    return items[start:start + size]",
                 "area": "pagination"}
    elif k == 1:
        out = ("FAILED tests/test_reminders.py::test_due_soon - TypeError: can't compare offset-naive and "
               "offset-aware datetimes\napp/reminders.py:14: in due_soon\n    return inv.due_at - datetime.now() < timedelta(days=3)")
        code = "def due_soon(inv):\n    return inv.due_at - datetime.now() < timedelta(days=3)"
        facts = {"cause": ["`inv.due_at` comes back timezone-aware from the DB while `datetime.now()` is naive",
                           "mixing an aware timestamp from Postgres (TIMESTAMPTZ) with a naive `datetime.now()`",
                           "the model stores UTC-aware datetimes but the function compares against local naive time"],
                 "fix": "def due_soon(inv):\n    return inv.due_at - datetime.now(timezone.utc) < timedelta(days=3)",
                 "area": "timezones"}
    elif k == 2:
        out = ("FAILED tests/test_cart.py::test_total_with_coupon - assert 0.30000000000000004 == 0.3\n"
               " +  where 0.30000000000000004 = cart_total([0.1, 0.2])")
        code = "def cart_total(prices):\n    return sum(prices)"
        facts = {"cause": ["binary floating point cannot represent 0.1 and 0.2 exactly",
                           "the test compares floats with == after summation",
                           "money is being handled as float"],
                 "fix": "def cart_total(prices):\n    return sum(Decimal(str(p)) for p in prices)",
                 "area": "floating point"}
    elif k == 3:
        out = ("FAILED tests/test_sync.py::test_fetch_profile - AttributeError: 'coroutine' object has no attribute 'json'\n"
               "RuntimeWarning: coroutine 'AsyncClient.get' was never awaited")
        code = "async def fetch_profile(client, user_id):\n    resp = client.get(f\"/users/{user_id}\")\n    return resp.json()"
        facts = {"cause": ["`client.get` is a coroutine and is never awaited",
                           "the async HTTP call is missing an `await`",
                           "`resp` is a coroutine object, not a response"],
                 "fix": "async def fetch_profile(client, user_id):\n    resp = await client.get(f\"/users/{user_id}\")\n    return resp.json()",
                 "area": "async"}
    elif k == 4:
        out = ("FAILED tests/test_webhooks.py::test_order_created - KeyError: 'customer_id'\n"
               "payload = {'customerId': 4411, 'orderId': 99812, 'total': 129.5}")
        code = "def on_order_created(payload):\n    return notify(payload['customer_id'], payload['order_id'])"
        facts = {"cause": ["the webhook payload switched to camelCase keys (`customerId`)",
                           "the provider renamed the fields in the new API version",
                           "the handler still reads snake_case keys"],
                 "fix": "def on_order_created(payload):\n    return notify(payload['customerId'], payload['orderId'])",
                 "area": "API contract"}
    elif k == 5:
        out = ("FAILED tests/test_tags.py::test_new_item_has_no_tags - assert ['urgent'] == []\n"
               "(passes when run alone: pytest tests/test_tags.py::test_new_item_has_no_tags)")
        code = "def make_item(name, tags=[]):\n    return {'name': name, 'tags': tags}"
        facts = {"cause": ["the mutable default argument `tags=[]` is shared between calls",
                           "a previous test appended to the shared default list",
                           "default list evaluated once at definition time"],
                 "fix": "def make_item(name, tags=None):\n    return {'name': name, 'tags': list(tags or [])}",
                 "area": "shared state"}
    elif k == 6:
        host = ipv4(rng, private=True)
        pw = password(rng)
        ak, sk = aws_key(rng), aws_secret(rng)
        out = (f"E   psycopg2.OperationalError: connection to server at \"{host}\", port 5432 failed: Connection refused\n"
               f"---- captured environment ----\nDATABASE_URL=postgresql://app:{pw}@{host}:5432/orders\n"
               f"AWS_ACCESS_KEY_ID={ak}\nAWS_SECRET_ACCESS_KEY={sk}\nSMTP_PASSWORD={password(rng)}\n{env_secrets()}\nPYTHONHASHSEED=0\n1 error in 0.9{rng.randrange(10)}s")
        code = "engine = create_engine(os.environ['DATABASE_URL'])\n\n@pytest.fixture\ndef db():\n    with Session(engine) as s:\n        yield s"
        facts = {"cause": ["the tests run against a database host that is not reachable from the CI runner",
                           f"nothing listens on {host}:5432 from the CI network",
                           "the job has no Postgres service container"],
                 "fix": "services:\n  postgres:\n    image: postgres:16\n# and DATABASE_URL pointing at localhost", "area": "CI infrastructure",
                 "lang": "yaml"}
        secrets = True
    else:
        out = ("FAILED tests/test_report.py::test_regions - AssertionError: assert ['west', 'east'] == ['east', 'west']\n"
               "(fails about 1 in 3 runs)")
        code = "def regions(rows):\n    return list({r['region'] for r in rows})"
        facts = {"cause": ["set iteration order is not stable across runs (string hashing is randomized)",
                           "the function builds a set and converts it to a list without sorting",
                           "the test depends on hash ordering"],
                 "fix": "def regions(rows):\n    return sorted({r['region'] for r in rows})", "area": "nondeterminism"}
    path = rng.choice(["app/service.py", "app/core.py", "app/handlers.py", "app/utils.py"])
    return out, code, path, facts, job, branch, secrets


DBG_OPENERS = ["Let's walk through it.", "Looking at the traceback, the failure is deterministic.",
               "Good news: this is a small bug.", "I think I see what's going on.",
               "The test is doing its job here.", "Short version first, details below.",
               "This one is about {area}."]
DBG_EXTRAS = ["Add a regression test that pins this exact case so it cannot come back silently.",
              "It would be worth grepping for the same pattern elsewhere in the codebase.",
              "Consider enabling the corresponding lint rule so CI flags this earlier.",
              "If the fix feels risky, land it behind the existing feature flag first.",
              "I'd also run the suite with `-p no:randomly` disabled to shake out order dependence.",
              "Once merged, re-run the flaky-test dashboard to confirm the failure rate drops to zero."]


DEBUG_INSTR = ["Find the root cause of the failing test and propose a fix.",
               "Why does the test fail, and what is the fix?",
               "Explain the root cause step by step and suggest a fix."]
DEBUG_PROMPT = ("## Failing test output (CI job #{job}, branch {branch})\n```\n{out}\n```\n\n## Code under test: {path}\n"
                "```python\n{code}\n```\n\n## Instruction\n{instr}")


def task_debug_reasoning(rng):
    node = "metagpt.reviewer"
    out, code, path, facts, job, branch, secrets = debug_scenario(rng)
    text = DEBUG_PROMPT.format(job=job, branch=branch, out=out, path=path, code=code, instr=rng.choice(DEBUG_INSTR))
    parts = [rng.choice(DBG_OPENERS).format(area=facts["area"])]
    causes = rng.sample(facts["cause"], rng.randrange(1, 3))
    parts.append(rng.choice(["**Root cause:** ", "Root cause: ", "", "What happens: "]) + cap(causes[0]) + "."
                 + ("" if len(causes) == 1 else " In other words, " + causes[1] + "."))
    if rng.random() < 0.6:
        parts.append(rng.choice(["The assertion in the log shows exactly that.",
                                 "That matches the values printed by pytest.",
                                 f"You can confirm it by running only this test on {branch}.",
                                 "Nothing in the test itself is wrong."]))
    parts.append(rng.choice(["**Fix:**", "Suggested fix:", "A minimal change:", "I'd change it to:"]) +
                 f"\n```{facts.get('lang', 'python')}\n{facts['fix']}\n```")
    for e in rng.sample(DBG_EXTRAS, rng.randrange(0, 3)):
        parts.append(e)
    if secrets and rng.random() < 0.8:
        parts.append(rng.choice([
            "Separately, and more urgently: the CI log prints DATABASE_URL with the password and the AWS keys. "
            "Rotate those credentials and mask them in the job output.",
            "Security note: the captured environment leaks a database password and an AWS access key. Treat them as "
            "compromised and rotate them today."]))
    msgs = [sys_msg(rng, node), user(text)]
    return node, call(msgs, content="\n\n".join(parts), temperature=0.7)


def review_scenario(rng):
    k = rng.randrange(6)
    fn = rng.choice(["sync_invoices", "charge_customer", "export_report", "notify_owner", "load_orders"])
    if k == 0:
        ak, sk = aws_key(rng), aws_secret(rng)
        diff = (f"--- a/app/storage.py\n+++ b/app/storage.py\n@@ -3,6 +3,8 @@ import boto3\n"
                f"+AWS_ACCESS_KEY_ID = \"{ak}\"\n+AWS_SECRET_ACCESS_KEY = \"{sk}\"\n"
                f" def {fn}():\n-    s3 = boto3.client(\"s3\")\n+    s3 = boto3.client(\"s3\", aws_access_key_id=AWS_ACCESS_KEY_ID, aws_secret_access_key=AWS_SECRET_ACCESS_KEY)")
        if _SRNG.random() < 0.5:
            diff += f"\n+SERVICE_ACCOUNT_INFO = {gcp_service_account()}"
        issues = ["Hard-coded AWS credentials in the source. They are now in git history: rotate the key and read it from the environment or the instance role.",
                  "Passing keys explicitly bypasses the default credential chain, which already works in prod."]
        verdict = "Request changes"
    elif k == 1:
        diff = (f"--- a/app/repo.py\n+++ b/app/repo.py\n@@ -12,4 +12,4 @@\n def {fn}(db, customer):\n"
                f"-    return db.execute(text(\"SELECT * FROM orders WHERE customer = :c\"), {{\"c\": customer}})\n"
                f"+    return db.execute(text(f\"SELECT * FROM orders WHERE customer = '{{customer}}'\"))")
        issues = ["This reintroduces SQL injection: `customer` is interpolated into the query. Keep the bound parameter.",
                  "`SELECT *` will break when columns are added; list the columns you need."]
        verdict = "Request changes"
    elif k == 2:
        diff = (f"--- a/app/jobs.py\n+++ b/app/jobs.py\n@@ -20,5 +20,8 @@\n def {fn}():\n-    run()\n"
                f"+    try:\n+        run()\n+    except Exception:\n+        pass")
        issues = ["`except Exception: pass` swallows every failure, including bugs; log it and re-raise or handle the specific exception.",
                  "The job will now report success when it did nothing, which hides incidents."]
        verdict = "Request changes"
    elif k == 3:
        email = email_of(rng, *person(rng))
        card = card_number(rng)
        diff = (f"--- a/app/payments.py\n+++ b/app/payments.py\n@@ -40,3 +40,4 @@\n def {fn}(card_number, email, amount):\n"
                f"+    logger.info(f\"charging {{card_number}} for {{email}} amount={{amount}}\")\n     return gateway.charge(card_number, amount)\n"
                f"# test fixture\n+TEST_CARD = \"{card}\"  # customer {email}")
        issues = ["Logging the full card number and email puts PCI and personal data into the logs. Log a masked card (last 4) and the customer id instead.",
                  "A real-looking card number and a customer email are committed in a fixture; use the gateway's documented test cards."]
        verdict = "Request changes"
    elif k == 4:
        diff = (f"--- a/app/report.py\n+++ b/app/report.py\n@@ -8,4 +8,6 @@\n def {fn}(db):\n"
                f"-    orders = db.query(Order).options(selectinload(Order.items)).all()\n+    orders = db.query(Order).all()\n"
                f"+    for o in orders:\n+        o.item_count = len(o.items)")
        issues = ["Dropping `selectinload` turns this into an N+1 query: one SELECT per order.",
                  "Consider a single aggregate query with COUNT grouped by order id."]
        verdict = rng.choice(["Request changes", "Comment"])
    else:
        tok = slack_token(rng)
        diff = (f"--- a/app/notify.py\n+++ b/app/notify.py\n@@ -1,5 +1,7 @@\n+SLACK_TOKEN = \"{tok}\"\n"
                f" def {fn}(text):\n-    requests.post(WEBHOOK, json={{\"text\": text}})\n"
                f"+    requests.post(\"https://slack.com/api/chat.postMessage\", headers={{\"Authorization\": f\"Bearer {{SLACK_TOKEN}}\"}}, json={{\"channel\": \"#ops\", \"text\": text}})")
        issues = ["A Slack bot token is committed in plain text; revoke it and load it from the secret store.",
                  "`requests.post` has no timeout, so a slow Slack API can hang the worker."]
        verdict = "Request changes"
    return diff, issues, verdict, fn


REVIEW_NITS = ["Nit: the function is getting long; consider splitting the I/O from the logic.",
               "Please add a test that exercises the new branch.",
               "Type hints on the new parameters would help the next reader.",
               "The commit message could say why, not just what.",
               "Minor: naming — `data` is vague here.",
               "Consider a small docstring explaining the expected input shape."]


REVIEW_INSTR = ["Review the diff: list the issues by severity and end with a verdict (Approve / Request changes).",
                "Please review this change to `{fn}`. Anything blocking? Give a verdict.",
                "Code review: flag bugs, security and style problems by severity, then a verdict."]
REVIEW_PROMPT = "## Code review request (PR #{pr})\n```diff\n{diff}\n```\n\n## Instruction\n{instr}"


def task_code_review(rng):
    node = "metagpt.reviewer"
    diff, issues, verdict, fn = review_scenario(rng)
    text = REVIEW_PROMPT.format(diff=diff, pr=rng.randrange(100, 3000), instr=rng.choice(REVIEW_INSTR).format(fn=fn))
    intro = rng.choice(["Thanks for the PR. A few things before this can merge:",
                        "Reviewed. Summary of findings:", "Overall the intent is clear, but:",
                        f"I looked at the change to `{fn}`.", "Here is my review."])
    bullets = []
    for i, s in enumerate(issues):
        tag = rng.choice(["**Blocking:** ", "[high] ", "1) ", "- "]) if i == 0 else rng.choice(["**Also:** ", "[medium] ", "2) ", "- "])
        bullets.append(tag + s)
    for n in rng.sample(REVIEW_NITS, rng.randrange(0, 3)):
        bullets.append(rng.choice(["- ", "[low] ", "Nit/"]) + n)
    outro = rng.choice([f"Verdict: {verdict}.", f"{verdict} — happy to re-review quickly.", f"Status: {verdict.lower()}.",
                        f"{verdict}. Ping me when updated."])
    msgs = [sys_msg(rng, node), user(text)]
    return node, call(msgs, content=intro + "\n\n" + "\n".join(bullets) + "\n\n" + outro, temperature=0.7)


# ----------------------------------------------------------------------------------------------
# Workflow operator (Open-Operator-like)
# ----------------------------------------------------------------------------------------------

SERVICES = ["checkout-api", "auth-service", "search", "billing-worker", "inventory", "notifications",
            "payments-gateway", "user-profile", "reporting", "media-upload"]
ENVS = ["prod", "staging", "dev"]
SLACK_CHANNELS = ["ops", "deploys", "incidents", "sales", "support", "eng-backend", "finance", "general", "oncall"]
PROJECTS = ["OPS", "WEB", "PAY", "MOB", "DATA", "SEC", "HR"]
MEETINGS = ["Sprint planning", "1:1", "Quarterly review", "Design sync", "Vendor call with {company}",
            "Incident retro", "Interview: backend candidate", "Budget review", "Customer demo for {company}",
            "Onboarding session"]
ROOMS = ["Room 4B", "Zoom", "Google Meet", "HQ Atrium", "Room Oslo", "Teams"]


MSG_BODIES = [
    "The office is closed on {date}; enjoy the long weekend.",
    "Invoice {inv} for {company} is {n} days overdue.",
    "Standup moved to {time} today.",
    "Please call {name} back at {phone} about order #{order}.",
    "New hire {name} starts Monday; laptop ships to {address}.",
    "Pizza in the kitchen at {time} to celebrate the {product} launch!",
    "Reminder: expense reports are due on {date}.",
    "Customer {name} ({email}) asked for a refund of ${amount}.",
    "Welcome {first} to the {team} team, say hi!",
    "The {quarter} numbers are in the shared drive; great work, team!",
    "Parking garage B is closed until {date}.",
    "{first} is out sick today; {first2} covers the front desk.",
    "The contract with {company} was signed — thanks {first}!",
    "Fire drill at {time}, please leave by the east stairs.",
    "Your badge for {address} is ready at reception.",
    "Payroll runs a day early this month ({date}).",
    "{first}'s farewell drinks are on {date} at {time}.",
    "Heads-up: the VPN certificate expires on {date}.",
    "Order #{order} shipped to {address}.",
    "Can you review the {product} pricing deck before {time}?",
    "Delivery for {name} arrived, it's at the mailroom.",
    "{company} confirmed the meeting; agenda to follow.",
    "Happy birthday {first}! Cake at {time} on floor {floor}.",
    "Wi-Fi password for guests changed to {wifi}; ask {first} at IT.",
    "Reminder to submit your timesheet by {date}.",
    "{name} left a voicemail from {phone}, please call back.",
    "The {team} offsite is booked for {date}.",
    "Lunch-and-learn on {product} tomorrow at {time}.",
    "Thanks everyone for the {quarter} push, bonuses go out {date}.",
    "Quarterly security training is due {date}.",
]


def msg_body(rng):
    """Free-text payload for notifications, sometimes with PII; many small templates so no single
    one dominates the type."""
    first, last = person(rng)
    tpl = rng.choice(MSG_BODIES)
    slots = {}
    for key in re.findall(r"{(\w+)}", tpl):
        if key in slots:
            continue
        if key == "date":
            v = long_date(rand_day(rng))
        elif key == "time":
            v = time12(rng.randrange(9, 18), rng.choice([0, 15, 30, 45]))
        elif key == "inv":
            v = f"INV-2025-{rng.randrange(1000, 9999)}"
        elif key == "company":
            v = rng.choice(COMPANIES)
        elif key == "n":
            v = str(rng.randrange(3, 45))
        elif key == "name":
            v = f"{first} {last}"
        elif key == "first":
            v = first
        elif key == "first2":
            v = rng.choice(FIRST)
        elif key == "phone":
            v = phone(rng)
        elif key == "order":
            v = str(rng.randrange(10000, 99999))
        elif key == "address":
            v = street_address(rng)
        elif key == "product":
            v = rng.choice(PRODUCTS)
        elif key == "email":
            v = email_of(rng, first, last)
        elif key == "amount":
            v = f"{rng.randrange(20, 900)}.{rng.randrange(10, 99)}"
        elif key == "team":
            v = rng.choice(["sales", "design", "finance", "support", "platform", "legal"])
        elif key == "quarter":
            v = rng.choice(["Q1", "Q2", "Q3", "Q4"])
        elif key == "wifi":   # from the secrets stream: the main stream's draws stay as they were
            v = plant("password_prose", _SRNG.choice(["Guest", "Lobby", "Visitor", "Cafe"]) + str(_SRNG.randrange(2024, 2027))
                      + _SRNG.choice("!#&;") + srand(ALNUM, 4))
        elif key == "floor":
            v = str(rng.randrange(2, 12))
        else:
            raise KeyError(key)
        slots[key] = v
    return tpl.format(**slots)


def cmd_http(rng):
    svc = rng.choice(["orders", "users", "inventory", "payments", "repos", "chat", "tickets", "metrics"])
    dom = rng.choice(["api.acme.io", "api.northwind.com", "internal.globex.net", "api.github.com", "slack.com/api",
                      "api.stripe.com"])
    method = rng.choice(["GET", "GET", "GET", "POST", "PUT", "PATCH", "DELETE"])
    rid_ = rng.randrange(100, 99999)
    if method == "GET":
        path = rng.choice([f"/v2/{svc}/{rid_}", f"/v1/{svc}?status=pending&limit={rng.choice([10, 50, 100])}",
                           f"/v1/{svc}/{rid_}/history"])
    else:
        path = f"/v1/{svc}/{rid_}" if method != "POST" else f"/v1/{svc}"
    url = f"https://{dom}{path}"
    body = None
    if method in ("POST", "PUT", "PATCH"):
        body = rng.choice([{"status": rng.choice(["shipped", "cancelled", "on_hold"])},
                           {"quantity": rng.randrange(1, 500)}, {"name": " ".join(person(rng))},
                           {"note": rng.choice(["escalated", "customer called", "refund approved"])}])
    auth = rng.randrange(5)
    headers = None
    auth_txt = ""
    if auth == 1:
        tok = github_token(rng) if "github" in dom else openai_key(rng)
        if "stripe" in dom:   # the main stream's draw stays, so the rest of the set is unchanged
            tok = plant("stripe_key", _SRNG.choice(["sk_live_", "rk_live_"]) + srand(ALNUM, 24))
        headers = {"Authorization": f"Bearer {tok}"}
        auth_txt = f" Use bearer token {tok}."
    elif auth == 2:
        tok = jwt(rng)
        headers = {"Authorization": f"Bearer {tok}"}
        auth_txt = f" Auth: Bearer {tok}"
    elif auth == 3:
        key = slack_token(rng) if "slack" in dom else plant("api_key_prose", "key_" + rand_str(rng, ALNUM, 32))
        if "slack" not in dom and _SRNG.random() < 0.5:   # a vendor's token instead (main draws unchanged)
            kind, _, _, v = vendor_secret()
            key = plant(kind, v)
        headers = {"X-API-Key": key}
        auth_txt = f" (API key {key})"
    bj = dumps(body) if body else ""
    t = rng.randrange(5)
    if t == 0:
        text = f"{method} {url}" + (f" with body {bj}" if body else "") + "." + auth_txt
    elif t == 1:
        text = f"Call the {svc} endpoint: {method} {url}" + (f", payload {bj}" if body else "") + auth_txt
    elif t == 2:
        text = f"Send a {method} request to {url}" + (f" with JSON {bj}" if body else "") + " and tell me what comes back." + auth_txt
    elif t == 3:
        text = f"Hit {url} ({method})" + (f" body={bj}" if body else "") + auth_txt
    else:
        text = f"Can you do a {method} on {url}?" + (f" Body: {bj}." if body else "") + auth_txt
    args = {"method": method, "url": url}
    if headers:
        args["headers"] = headers
    if body:
        args["body"] = body
    return text, "http_request", args


def cmd_calendar(rng):
    d = rand_day(rng)
    h, m = rng.randrange(8, 18), rng.choice([0, 0, 15, 30, 45])
    dur = rng.choice([15, 30, 30, 45, 60, 90])
    title = rng.choice(MEETINGS).format(company=rng.choice(COMPANIES))
    att = [email_of(rng, *person(rng)) for _ in range(rng.randrange(1, 4))]
    atxt = ", ".join(att)
    room = rng.choice(ROOMS) if rng.random() < 0.35 else None
    iso = f"{d.isoformat()}T{h:02d}:{m:02d}"
    t = rng.randrange(5)
    if t == 0:
        text = f"Schedule a {dur}-minute meeting \"{title}\" with {atxt} on {long_date(d)} at {time12(h, m)}."
    elif t == 1:
        text = f"Book \"{title}\" for {d.isoformat()} {h:02d}:{m:02d}, {dur} min, invite {atxt}."
    elif t == 2:
        text = f"Can you set up '{title}' on {long_date(d)} at {time12(h, m)} for {dur} minutes? Attendees: {atxt}"
    elif t == 3:
        text = f"Put a {dur} min call on the calendar: {title}, {d.isoformat()} at {h:02d}:{m:02d}, with {atxt}."
    else:
        text = f"calendar: {title} / {long_date(d)} {time12(h, m)} / {dur}m / {atxt}"
    if room:
        text += f" Location: {room}."
    args = {"title": title, "start": iso, "duration_minutes": dur, "attendees": att}
    if room:
        args["location"] = room
    return text, "create_calendar_event", args


def cmd_email(rng):
    body = msg_body(rng)
    if True:
        first, last = person(rng)
        to = email_of(rng, first, last)
        subj = rng.choice(["Deploy status", "Overdue invoice", "Schedule change", "Follow-up", "Welcome aboard",
                           "Incident update", "Refund request", "Action needed"])
        t = rng.randrange(4)
        if t == 0:
            text = f"Send an email message to {to} with subject \"{subj}\": {body}"
        elif t == 1:
            text = f"Send an email to {to}, subject '{subj}', message: \"{body}\""
        elif t == 2:
            text = f"Send {first} ({to}) a message by email. Subject: {subj}. Message: {body}"
        else:
            text = f"Email message to {to} — subject \"{subj}\" — {body}"
        return text, "send_email", {"to": [to], "subject": subj, "body": body}


def cmd_chat(rng):
    body = msg_body(rng)
    if rng.random() < 0.8:
        if rng.random() < 0.75:
            ch = "#" + rng.choice(SLACK_CHANNELS)
        else:
            ch = "@" + rng.choice(FIRST).lower().translate(FOLD)
        t = rng.randrange(4)
        if t == 0:
            text = f"Send a Slack message to {ch}: \"{body}\""
        elif t == 1:
            text = f"Post a message on Slack in {ch}: {body}"
        elif t == 2:
            body = body[0].lower() + body[1:]
            text = f"Send a Slack message letting {ch} know that {body}"
        else:
            text = f"Slack message for {ch}: {body}"
        return text, "send_slack_message", {"channel": ch, "text": body}
    ph = phone(rng)
    first, _ = person(rng)
    t = rng.randrange(3)
    if t == 0:
        text = f"Send a text message to {ph}: \"{body}\""
    elif t == 1:
        text = f"Send an SMS message to {first} at {ph}: {body}"
    else:
        text = f"Text message to {ph}: {body}"
    return text, "send_sms", {"to": ph, "text": body}


PRIO_WORD = {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"}
TICKET_TITLES = ["{svc} returns 500 on checkout", "Password reset email not delivered", "Add SSO for {company}",
                 "Slow dashboard load in {env}", "Renew TLS certificate for {svc}", "Broken link in onboarding docs",
                 "Duplicate charges reported", "Export to CSV times out", "New laptop for {first}",
                 "Access request: {first} needs {svc} admin"]


def ticket_desc(rng):
    first, last = person(rng)
    k = rng.randrange(8)
    if k == 0:
        return f"Customer {first} {last} ({email_of(rng, first, last)}) says card {card_number(rng)} was charged twice."
    if k == 6:
        user_, pw = first.lower().translate(FOLD), password(rng)
        if _SRNG.random() < 0.5:
            return f"Vendor portal login shared in chat (user={user_}, password={pw}); rotate it."
        return f"Vendor portal login shared in chat: user {user_}, and the password is {pw} — rotate it."
    if k == 1:
        return f"User pasted their SSN {ssn(rng)} in the support chat; please redact the transcript."
    if k == 2:
        return f"Repeated failed logins from {ipv4(rng, private=False)} against {rng.choice(SERVICES)}."
    if k == 3:
        return f"Ship the replacement to {street_address(rng)}, phone {phone(rng)}."
    if k == 4:
        return f"Refund to IBAN {iban(rng)} for {first} {last}."
    if k == 5:
        return f"Started after the {rng.choice(SERVICES)} release this morning."
    return f"Reported by {first} {last}, reproducible in {rng.choice(ENVS)}."


def cmd_ticket(rng):
    first, last = person(rng)
    proj = rng.choice(PROJECTS)
    title = rng.choice(TICKET_TITLES).format(svc=rng.choice(SERVICES), company=rng.choice(COMPANIES),
                                             env=rng.choice(ENVS), first=first)
    typ = rng.choice(["bug", "bug", "task", "incident", "request"])
    prio = rng.choice(["P1", "P2", "P3", "P3", "P4"])
    pw = PRIO_WORD[prio]
    assignee = email_of(rng, *person(rng)) if rng.random() < 0.5 else None
    desc = ticket_desc(rng) if rng.random() < 0.55 else None
    t = rng.randrange(4)
    if t == 0:
        text = f"Open a {pw} {typ} in {proj}: \"{title}\"."
    elif t == 1:
        text = f"File a ticket ({typ}, {prio}) in the {proj} project titled '{title}'."
    elif t == 2:
        text = f"Create {proj} ticket: {title}. Priority {prio}, type {typ}."
    else:
        text = f"New {typ} for {proj}, {pw} priority — \"{title}\"."
    if assignee:
        text += f" Assign it to {assignee}."
    if desc:
        text += f" Details: {desc}"
    args = {"project": proj, "title": title, "type": typ, "priority": prio}
    if assignee:
        args["assignee"] = assignee
    if desc:
        args["description"] = desc
    return text, "create_ticket", args


METRICS = [("p95 latency", "p95_latency_ms"), ("error rate", "error_rate"), ("CPU", "cpu_percent"),
           ("throughput", "requests_per_s")]


def cmd_monitor(rng):
    svc, env = rng.choice(SERVICES), rng.choice(ENVS)
    k = rng.randrange(3)
    if k == 0:
        t = rng.randrange(4)
        text = [f"Is {svc} healthy in {env}?", f"Check the health of {svc} ({env}).",
                f"Run a health check on {env} {svc}.", f"health {svc} {env}"][t]
        return text, "check_service_health", {"service": svc, "environment": env}
    if k == 1:
        mw, m = rng.choice(METRICS)
        n = rng.choice([5, 15, 30, 60])
        t = rng.randrange(3)
        text = [f"What's the {mw} of {svc} in {env} over the last {n} minutes?",
                f"Show {mw} for {svc} ({env}), last {n}m.",
                f"Pull {svc}'s {mw} in {env} for the past {n} min."][t]
        return text, "check_service_health", {"service": svc, "environment": env, "metric": m, "window_minutes": n}
    host = ipv4(rng)
    port = rng.choice([22, 80, 443, 5432, 6379, 8080, 9200, 3306])
    t = rng.randrange(3)
    text = [f"Ping {host} on port {port}.", f"Can we reach {host}:{port}?",
            f"Check connectivity to host {host} port {port}."][t]
    return text, "ping_host", {"host": host, "port": port}


def cmd_lookup(rng):
    k = rng.randrange(6)
    first, last = person(rng)
    if k == 0:
        e = email_of(rng, first, last)
        text = rng.choice([f"Look up customer {e}.", f"Find the customer with email {e}.", f"Who is {e}? Check customers."])
        return text, "lookup_record", {"table": "customers", "field": "email", "value": e}
    if k == 1:
        n = str(rng.randrange(10000, 999999))
        text = rng.choice([f"Find order #{n}.", f"Pull up order {n}.", f"What's in order number {n}?"])
        return text, "lookup_record", {"table": "orders", "field": "id", "value": n}
    if k == 2:
        inv = f"INV-2025-{rng.randrange(1000, 9999)}"
        text = rng.choice([f"Look up invoice {inv}.", f"Get me the details of {inv}.", f"Is invoice {inv} paid?"])
        return text, "lookup_record", {"table": "invoices", "field": "number", "value": inv}
    if k == 3:
        tr = "1Z" + rand_str(rng, UPNUM, 16)
        text = rng.choice([f"What's the status of shipment {tr}?", f"Track {tr}.", f"Where is package {tr}?"])
        return text, "lookup_record", {"table": "shipments", "field": "tracking_number", "value": tr}
    if k == 4:
        nm = f"{first} {last}"
        text = rng.choice([f"Get the employee record for {nm}.", f"Look up employee {nm}.", f"Which team is {nm} on?"])
        return text, "lookup_record", {"table": "employees", "field": "name", "value": nm}
    acct = f"ACC-{rng.randrange(100000, 999999)}"
    text = rng.choice([f"Who owns account {acct}?", f"Look up account {acct}.", f"Show me account {acct}."])
    return text, "lookup_record", {"table": "accounts", "field": "id", "value": acct}


TOOL_RESULTS = {
    "http_request": lambda rng: dumps({"status": rng.choice([200, 200, 201, 204, 404]), "body": {"ok": True}}),
    "create_calendar_event": lambda rng: dumps({"event_id": "evt_" + rand_str(rng, ALNUM, 10), "status": "confirmed"}),
    "send_email": lambda rng: dumps({"message_id": f"<{rand_str(rng, ALNUM, 12)}@mail.acme.io>", "status": "sent"}),
    "send_slack_message": lambda rng: dumps({"ok": True, "ts": f"17410{rng.randrange(10000, 99999)}.{rng.randrange(100000, 999999)}"}),
    "send_sms": lambda rng: dumps({"sid": "SM" + rand_str(rng, "0123456789abcdef", 32), "status": "queued"}),
    "create_ticket": lambda rng: dumps({"key": f"{rng.choice(PROJECTS)}-{rng.randrange(100, 9999)}", "url": "https://tracker.acme.io/browse/x"}),
    "check_service_health": lambda rng: dumps({"status": rng.choice(["healthy", "degraded"]), "value": rng.randrange(1, 900)}),
    "ping_host": lambda rng: dumps({"reachable": rng.random() < 0.8, "rtt_ms": rng.randrange(1, 120)}),
    "lookup_record": lambda rng: lookup_result(rng),
}
CONFIRM = {"http_request": "The request returned successfully.", "create_calendar_event": "The event is on the calendar.",
           "send_email": "Email sent.", "send_slack_message": "Posted.", "send_sms": "Text queued.",
           "create_ticket": "Ticket created.", "check_service_health": "Here is the current status.",
           "ping_host": "Connectivity check done.", "lookup_record": "Found the record."}


def lookup_result(rng):
    first, last = person(rng)
    return dumps({"name": f"{first} {last}", "email": email_of(rng, first, last), "phone": phone(rng),
                  "address": street_address(rng), "iban": iban(rng), "status": rng.choice(["active", "past_due", "closed"])})


COMMANDS = {"wf.http_request": cmd_http, "wf.calendar_event": cmd_calendar, "wf.send_email": cmd_email,
            "wf.send_chat_message": cmd_chat,
            "wf.create_ticket": cmd_ticket, "wf.monitoring_check": cmd_monitor, "wf.data_lookup": cmd_lookup}
COMMAND_KEYS = list(COMMANDS)


def history_exchange(rng):
    """One earlier command -> tool call -> tool result -> short confirmation."""
    text, name, args = COMMANDS[rng.choice(COMMAND_KEYS)](rng)
    cid = "call_" + rand_alnum(rng, 24)
    return [user(text),
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": cid, "type": "function", "function": {"name": name, "arguments": jargs(args)}}]},
            {"role": "tool", "tool_call_id": cid, "content": TOOL_RESULTS[name](rng)},
            {"role": "assistant", "content": CONFIRM[name]}]


def make_tool_caller(key):
    def fn(rng):
        node = "operator.tool_caller"
        msgs = [sys_msg(rng, node)]
        if rng.random() < 0.25:
            msgs.extend(history_exchange(rng))
        text, name, args = COMMANDS[key](rng)
        msgs.append(user(text))
        return node, call(msgs, calls=[(name, args)], tools=OP_TOOLSETS[key], temperature=0.0)
    return fn


ROUTE_OF = {"http_request": "http", "create_calendar_event": "calendar", "send_email": "email",
            "send_slack_message": "slack", "send_sms": "sms", "create_ticket": "tickets",
            "check_service_health": "monitoring", "ping_host": "monitoring", "lookup_record": "lookup"}
ROUTE_LIST = "calendar, email, slack, sms, tickets, http, monitoring, lookup"
ROUTER_CMD_W = [("wf.send_chat_message", 3), ("wf.send_email", 2), ("wf.calendar_event", 3), ("wf.create_ticket", 2),
                ("wf.data_lookup", 2), ("wf.http_request", 1), ("wf.monitoring_check", 1)]


def task_route_command(rng):
    node = "operator.router"
    text, name, _ = COMMANDS[weighted(rng, ROUTER_CMD_W)](rng)
    src = rng.choice(["slack #ops-bot", "web console", "email to ops@", "mobile app", "slack DM"])
    u = f"Route the command to one of the routes: {ROUTE_LIST}.\nCommand (via {src}): {text}\nAnswer with the route JSON."
    msgs = [sys_msg(rng, node), user(u)]
    return node, call(msgs, content=dumps({"route": ROUTE_OF[name]}), temperature=0.0,
                      response_format={"type": "json_object"}, max_tokens=20)


def task_template_message(rng):
    node = "operator.notifier"
    first, last = person(rng)
    company = rng.choice(COMPANIES)
    k = rng.randrange(5)
    t = rng.randrange(3)
    if k == 0:
        order, d = rng.randrange(10000, 999999), rand_day(rng)
        vals = {"customer": first, "order": f"#{order}", "new_eta": long_date(d), "company": company}
        nat = f"Draft the shipping delay notice for {first} {last}, order #{order}, new ETA {long_date(d)}. Sender: {company}."
        out = (f"Hi {first},\n\nYour order #{order} is running late. The new estimated delivery date is {long_date(d)}. "
               f"We're sorry for the wait.\n\n— {company} Support")
        tpl = "shipping_delay"
    elif k == 1:
        svc = rng.choice(SERVICES)
        sev = rng.choice(["SEV1", "SEV2", "SEV3"])
        st = rng.choice(["investigating", "identified", "monitoring", "resolved"])
        h, m = rng.randrange(0, 24), rng.choice([0, 15, 30, 45])
        vals = {"severity": sev, "service": svc, "status": st, "next_update": f"{h:02d}:{m:02d} UTC"}
        nat = f"Incident update for {svc}: it's {sev}, status {st}, next update at {h:02d}:{m:02d} UTC."
        out = f"[{sev}] {svc} incident update: status is {st}. Next update by {h:02d}:{m:02d} UTC."
        tpl = "incident_update"
    elif k == 2:
        inv = f"INV-2025-{rng.randrange(1000, 9999)}"
        amt = f"${rng.randrange(50, 20000)}.{rng.randrange(0, 100):02d}"
        d = rand_day(rng)
        vals = {"name": f"{first} {last}", "invoice": inv, "amount": amt, "due": long_date(d)}
        nat = f"Remind {first} {last} that invoice {inv} ({amt}) is due {long_date(d)}."
        out = (f"Hello {first} {last},\n\nThis is a friendly reminder that invoice {inv} for {amt} is due on {long_date(d)}. "
               f"You can pay online at https://pay.acme.io/{inv}.\n\nThank you!")
        tpl = "invoice_reminder"
    elif k == 3:
        ws = rng.choice(["design", "growth", "platform", "finance", "support"]) + "-" + str(rng.randrange(1, 99))
        vals = {"first_name": first, "company": company, "workspace": ws}
        nat = f"Welcome message for {first} who just joined {company}; their workspace is {ws}."
        out = (f"Welcome to {company}, {first}! Your workspace \"{ws}\" is ready. "
               f"Start with the getting-started checklist and say hi in #general.")
        tpl = "welcome"
    else:
        title = rng.choice(MEETINGS).format(company=rng.choice(COMPANIES))
        h, m = rng.randrange(8, 18), rng.choice([0, 30])
        room = rng.choice(ROOMS)
        vals = {"name": first, "meeting": title, "time": time12(h, m), "location": room}
        nat = f"Remind {first} about \"{title}\" at {time12(h, m)} in {room}."
        out = f"Hi {first}, reminder: \"{title}\" starts at {time12(h, m)} ({room})."
        tpl = "meeting_reminder"
    if t == 0:
        values = "\n".join(f"{a}: {b}" for a, b in vals.items())
    elif t == 1:
        values = nat
    else:
        values = ", ".join(f"{a}={b}" for a, b in vals.items())
    instr = rng.choice(["Fill in the notification template with these values.", "Fill in the message template; output "
                        "only the final message.", "Render the notification template with the values above."])
    u = f"## Message template: {tpl}\n## Values\n{values}\n## Instruction\n{instr}"
    msgs = [sys_msg(rng, node), user(u)]
    return node, call(msgs, content=out, temperature=0.0)


PLAN_GOALS = [
    ("Onboard {name} as a {role} starting {date}",
     ["create the {name} accounts in Google Workspace and Slack", "order a laptop and ship it to the home address",
      "schedule the orientation session", "add {name} to the team's on-call rotation after week 2",
      "assign an onboarding buddy", "send the welcome email with the first-week agenda"],
     ["the laptop vendor is out of stock", "Slack SSO provisioning returned 403", "the manager is on vacation that week"]),
    ("Handle the {svc} outage in {env}",
     ["open an incident ticket", "page the on-call engineer", "post a status update in #incidents",
      "check {svc} health and error rate", "roll back the last deploy if errors persist", "schedule the retro"],
     ["the rollback pipeline is locked", "on-call did not acknowledge the page", "health checks are flapping"]),
    ("Prepare the Q{q} board report",
     ["pull revenue numbers from the finance API", "collect headcount from HR", "draft the slides",
      "book a review meeting with the CFO", "email the draft to the board secretary"],
     ["the finance API returns stale data", "HR numbers don't match payroll", "the CFO is only free after the deadline"]),
    ("Offboard vendor {company}",
     ["revoke {company}'s API keys", "close open tickets with {company}", "notify procurement",
      "archive the shared Slack channel", "confirm the final invoice is paid"],
     ["two keys are still used by production jobs", "the final invoice is disputed", "legal wants a data export first"]),
    ("Roll out {svc} v{ver} to production",
     ["check staging health", "announce the rollout in #deploys", "deploy to 10% of traffic",
      "watch p95 latency and error rate for 30 minutes", "ramp to 100%", "close the release ticket"],
     ["p95 latency went up 40% at 10%", "the canary pods crash-loop", "the database migration is still running"]),
]
PLAN_OPENERS = ["Thanks for the update.", "Understood.", "OK, adjusting the plan.", "That changes the order a bit.",
                "Noted — here's where we are.", "Good progress overall."]
PLAN_RISKS = ["I'll ask for your approval before anything irreversible.",
              "Risk: if this slips again we miss the date; I'd flag it to the owner now.",
              "I'll keep the ticket updated so the history stays in one place.",
              "Watch-out: we're relying on one person for the next two steps.",
              "If the blocker isn't cleared by tomorrow morning, I suggest escalating."]


def task_multi_step_plan(rng):
    node = "operator.planner"
    goal_t, steps_t, blockers = rng.choice(PLAN_GOALS)
    first, last = person(rng)
    sl = {"name": f"{first} {last}", "role": rng.choice(["backend engineer", "designer", "account executive", "data analyst"]),
          "date": long_date(rand_day(rng)), "svc": rng.choice(SERVICES), "env": rng.choice(ENVS),
          "q": rng.randrange(1, 5), "company": rng.choice(COMPANIES), "ver": f"{rng.randrange(1, 5)}.{rng.randrange(0, 20)}"}
    goal = goal_t.format(**sl)
    steps = [s.format(**sl) for s in steps_t]
    msgs = [sys_msg(rng, node), user(f"Goal: {goal}. Make a plan.")]
    msgs.append({"role": "assistant", "content": "Plan:\n" + "\n".join(f"{i}. {cap(s)}" for i, s in enumerate(steps, 1))})
    done = rng.randrange(1, len(steps) - 1)
    for j in range(rng.randrange(0, min(done, 3) + 1)):
        note = rng.choice([".", " — no issues.", f", see ticket {rng.choice(PROJECTS)}-{rng.randrange(100, 999)}.",
                           f" ({rng.choice(['took longer than expected', 'done by ' + rng.choice(FIRST), 'confirmed by email'])})."])
        msgs.append(user(f"Step {j + 1} done{note}"))
        msgs.append({"role": "assistant", "content": rng.choice([
            f"Great, moving on to step {j + 2}: {steps[j + 1]}.", f"Noted. Next up: {steps[j + 1]}.",
            f"Thanks. Step {j + 2} ({steps[j + 1]}) is next; I'll report back."])})
    blocker = rng.choice(blockers)
    last_q = rng.choice([
        f"Steps 1-{done} are done. Step {done + 1} is blocked: {blocker}. What now?",
        f"Update: {blocker}. We finished {done} step(s). Re-plan please.",
        f"We're stuck at step {done + 1} ({steps[done]}) because {blocker}. How should we proceed?",
    ])
    msgs.append(user(last_q))
    parts = [rng.choice(PLAN_OPENERS)]
    parts.append(rng.choice([f"Since {blocker}, step {done + 1} can't go ahead as planned.",
                             f"The blocker ({blocker}) only affects step {done + 1} directly.",
                             f"Given that {blocker}, I'd reorder the remaining work."]))
    remaining = steps[done + 1:]
    rng.shuffle(remaining)
    plan = [rng.choice([f"Work around the blocker: {rng.choice(['escalate to the owner', 'open a ticket and ask for an ETA', 'use the fallback option', 'ask for an exception'])}",
                        f"Ask in #{rng.choice(SLACK_CHANNELS)} for help with: {blocker}"])]
    plan += [cap(s) for s in remaining[: rng.randrange(1, len(remaining) + 1)]]
    plan.append(f"Retry step {done + 1} ({steps[done]}) once unblocked")
    parts.append("Revised plan:\n" + "\n".join(f"{i}. {p}" for i, p in enumerate(plan, 1)))
    for r in rng.sample(PLAN_RISKS, rng.randrange(1, 3)):
        parts.append(r)
    return node, call(msgs, content="\n\n".join(parts), temperature=0.7)


# ----------------------------------------------------------------------------------------------
# GUI controller (Cradle-like)
# ----------------------------------------------------------------------------------------------

# Apps by the kind of screen they show. Agents click around navigation screens, type into forms,
# press shortcuts in editors, scroll long pages and wait on progress screens, so each task type
# draws its screens from the matching group (as real traffic is correlated).
APPS = {
    "nav": [
        ("Invoices — Acme Workspace", [("button", "New invoice"), ("button", "Export"), ("tab", "Paid"), ("tab", "Overdue"),
                                     ("button", "Send reminder"), ("checkbox", "Select all"),
                                     ("link", "Help center")]),
        ("Inbox — Acme Workspace", [("button", "Compose"), ("button", "Reply"), ("button", "Archive"), ("link", "Sent"),
                          ("link", "Drafts"), ("button", "Delete"), ("link", "Spam"), ("button", "Forward")]),
        ("Settings — Acme Workspace", [("tab", "General"), ("tab", "Privacy"), ("tab", "Notifications"), ("toggle", "Dark mode"),
                      ("toggle", "Do not disturb"), ("button", "Apply"), ("button", "Cancel"), ("link", "About")]),
        ("Files — Acme Workspace", [("button", "New folder"), ("button", "Upload"), ("listitem", "Q3-report.pdf"),
                              ("listitem", "invoices.zip"), ("link", "Shared with me"), ("button", "Download"),
                              ("button", "Rename"), ("link", "Trash")]),
        ("Board — Acme Workspace", [("button", "Create issue"), ("column", "To do"), ("column", "In progress"),
                              ("column", "Done"), ("button", "Sprint report"), ("link", "Backlog"), ("link", "Roadmap")]),
    ],
    "form": [
        ("Sign in — Contoso SSO", [("textbox", "Email"), ("textbox", "Password"), ("button", "Sign in"),
                                   ("link", "Forgot password?"), ("checkbox", "Keep me signed in")]),
        ("Checkout — ShopLite", [("textbox", "Card number"), ("textbox", "Name on card"), ("textbox", "Expiry"),
                                 ("textbox", "CVC"), ("textbox", "Billing address"), ("button", "Place order"),
                                 ("link", "Back to cart")]),
        ("Patient record — MediTrack", [("textbox", "Patient search"), ("textbox", "Notes"), ("tab", "History"),
                                        ("button", "Save"), ("button", "Print summary")]),
        ("Contact us — Support", [("textbox", "Your name"), ("textbox", "Email"), ("textbox", "Phone"),
                                  ("textbox", "Message"), ("button", "Send"), ("link", "FAQ")]),
        ("Knowledge base — Search", [("textbox", "Search articles"), ("combobox", "Category"), ("button", "Search"),
                                     ("link", "Popular articles")]),
    ],
    "editor": [
        ("Budget.xlsx — Spreadsheet", [("menu", "File"), ("menu", "Edit"), ("button", "Bold"), ("textbox", "Formula bar"),
                                       ("cell", "A1"), ("cell", "B2"), ("tab", "Sheet2")]),
        ("Q3 plan.docx — Writer", [("menu", "File"), ("menu", "Format"), ("button", "Italic"), ("document", "Body text"),
                                   ("button", "Comment"), ("statusbar", "Page 3 of 12")]),
        ("main.py — Code editor", [("menu", "Run"), ("tab", "main.py"), ("tab", "utils.py"), ("document", "Editor"),
                                   ("panel", "Terminal"), ("statusbar", "Ln 42, Col 8")]),
        ("New Tab — Browser", [("textbox", "Address bar"), ("tab", "Docs"), ("tab", "Mail"), ("button", "Bookmarks"),
                               ("button", "Extensions")]),
    ],
    "long": [
        ("API reference — Developer Portal", [("link", "Authentication"), ("link", "Endpoints"), ("heading", "Overview"),
                                              ("textbox", "Search docs"), ("link", "Changelog")]),
        ("Order history — ShopLite", [("heading", "Your orders"), ("listitem", "Order #10482"), ("listitem", "Order #10377"),
                                      ("combobox", "Last 6 months"), ("link", "Track package")]),
        ("Team feed — Intranet", [("heading", "Announcements"), ("article", "Office move update"),
                                  ("article", "Welcome new hires"), ("button", "New post")]),
        ("Privacy policy — Browser", [("heading", "Privacy policy"), ("paragraph", "1. Data we collect"),
                                      ("paragraph", "2. How we use it"), ("link", "Contact DPO")]),
    ],
    "loading": [
        ("Reports — Analytics", [("button", "Export"), ("button", "Download"), ("combobox", "Date range"), ("link", "Reports")]),
        ("Drive — Upload", [("button", "Upload"), ("button", "Open"), ("link", "My drive"), ("button", "Share")]),
        ("Setup Wizard — Installer", [("button", "Next"), ("button", "Back"), ("button", "Cancel"), ("checkbox", "Launch app")]),
        ("Dashboards — Grafana", [("button", "Refresh"), ("link", "Home"), ("combobox", "Last 24 hours"), ("button", "Share")]),
    ],
}
# The fixed chrome of each group's application (always on screen above the page elements).
SHELLS = {   # (role, label, value, fixed region)
    "nav": [("link", "Home", None, "left"), ("link", "Inbox", None, "left"), ("link", "Invoices", None, "left"),
            ("link", "Files", None, "left"), ("button", "Account", None, "top-right")],
    "editor": [("menu", "View", None, "top-left"), ("menu", "Help", None, "top-left"), ("button", "Undo", None, "top"),
               ("button", "Redo", None, "top")],
    "long": [("button", "Table of contents", None, "top-left"), ("button", "Zoom in", None, "top-right"),
             ("button", "Zoom out", None, "top-right")],
    "routine": [("link", "Dashboard", None, "top-left"), ("link", "My requests", None, "top-left"),
                ("button", "Help", None, "top-right")],
}
OFFSCREEN = ["Terms of service", "Billing history", "Danger zone", "Load more", "Page 2", "Comments", "Rate limits",
             "Pagination", "Footer links", "Older posts", "Attachments", "Cookie settings"]
PLATFORMS = ["Windows 11", "macOS 14", "Ubuntu 22.04"]


REGIONS = ["top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right"]


def render_screen(rng, title, elems, platform, extra_lines=()):
    """elems: (id, role, label, value|None[, region]) tuples -> one line per element, with a coarse
    screen region as the position (an accessibility-tree style rendering)."""
    lines = [f"Window: \"{title}\""]
    if platform:
        lines.append(f"Platform: {platform}")
    row = 0
    for eid, role, label, value, *fixed in elems:
        v = f" value=\"{value}\"" if value is not None else ""
        region = fixed[0] if fixed else None
        if region is None:   # page elements flow from the top of the content area downwards
            region = REGIONS[3 * row + rng.randrange(3)]
            row = min(2, row + (rng.random() < 0.4))
        lines.append(f"[{eid}] {role} \"{label}\"{v} ({region})")
    lines.extend(extra_lines)
    return "\n".join(lines)


def screen_elements(rng, app_elems, must=(), k_lo=4, k_hi=6, shell=()):
    """Sample visible page elements (always including `must`) below the app's fixed shell (menus,
    sidebar, browser chrome), and give them all unique ids."""
    pool = [e for e in app_elems if e not in must]
    k = min(len(pool), max(rng.randrange(k_lo, k_hi + 1) - len(must), 0))
    picked = set(must) | set(rng.sample(pool, k))
    chosen = list(shell) + [e for e in app_elems if e in picked]   # page layout order
    base = rng.randrange(2, 40)
    ids = rng.sample(range(base, base + 3 * len(chosen)), len(chosen))
    out = []
    for el, eid in zip(chosen, ids):
        if len(el) == 4:    # shell element with a fixed place
            out.append((eid, el[0], el[1], el[2], el[3]))
        else:
            out.append((eid, el[0], el[1], "" if el[0] == "textbox" else None))
    return out


def gui_prompt(goal, screen):
    """The action planner's one prompt template: the goal varies with the task, the frame does not."""
    return f"Current task: {goal}\n\nScreen:\n{screen}\n\nDecide the next single action."


def browser_shell(title):
    slug = title.split(" — ")[-1].lower().replace(" ", "")
    page = title.split(" — ")[0].lower().replace(" ", "-")
    return [("button", "Back", None, "top-left"), ("textbox", "Address bar", f"https://{slug}.example.com/{page}", "top"),
            ("button", "Reload", None, "top-left")]


def task_click(rng):
    node = "cradle.action_planner"
    title, app = rng.choice(APPS["nav"])
    shell = SHELLS["nav"]
    target = rng.choice(shell) if rng.random() < 0.25 else rng.choice(app)
    elems = screen_elements(rng, app, must=() if target in shell else (target,), k_lo=3, k_hi=5, shell=shell)
    eid = next(e[0] for e in elems if (e[1], e[2]) == target[:2])
    role, label = target[:2]
    if role == "tab":
        goal = rng.choice([f"Click the \"{label}\" tab.", f"Switch to the {label} tab by clicking it.",
                           f"Click on the tab labelled {label}."])
    elif role in ("checkbox", "toggle"):
        goal = rng.choice([f"Click the \"{label}\" {role} to turn it on.", f"Tick the {label} {role} (one click).",
                           f"Click the \"{label}\" {role}."])
    elif role in ("link", "listitem", "column"):
        goal = rng.choice([f"Click the \"{label}\" {role}.", f"Click on {label} to open it.",
                           f"Open {label} with a click.", f"Click {label}."])
    else:
        goal = rng.choice([f"Click the \"{label}\" button.", f"Click {label}.", f"Press the {label} button (click it).",
                           f"Click on the button labelled {label}."])
    screen = render_screen(rng, title, elems, None)
    msgs = [sys_msg(rng, node), user(gui_prompt(goal, screen))]
    return node, call(msgs, calls=[("click", {"element_id": eid})], tools=GUI_TOOLSETS["click"], temperature=0.0)


def text_for_field(rng, label):
    first, last = person(rng)
    if label == "Card number":
        return card_number(rng)
    if label in ("Email", "Contact email"):
        return email_of(rng, first, last)
    if label == "Password":
        return password(rng)
    if label == "Billing address":
        return street_address(rng)
    if label == "Phone":
        return phone(rng)
    if label in ("Name on card", "Your name", "Patient search"):
        return f"{first} {last}"
    if label == "Expiry":
        return f"{rng.randrange(1, 13):02d}/{rng.randrange(26, 31)}"
    if label == "CVC":
        return f"{rng.randrange(100, 1000)}"
    if label == "Amount":
        return f"{rng.randrange(5, 900)}.{rng.randrange(0, 100):02d}"
    if label == "Hours":
        return str(rng.randrange(1, 45))
    if label in ("Date", "Start date", "End date"):
        return rand_day(rng).isoformat()
    if label == "Tax ID":
        return f"{rng.choice(['DE', 'FR', 'NL', 'US'])}{rng.randrange(100000000, 999999999)}"
    if label == "Vendor name":
        return rng.choice(COMPANIES)
    if label == "Project":
        return rng.choice(PRODUCTS)
    if label in ("Description", "Notes", "Message", "Reason"):
        return rng.choice(["Taxi from airport to client office", "Follow-up in two weeks", "Family event",
                           "Team lunch with the design group", "Patient reports mild headache",
                           f"Please call me back at {phone(rng)}", "The export button does nothing on Safari"])
    return rng.choice(["Q3 budget", "reset password", "onboarding", f"{first} {last}", "refund policy", "VPN setup",
                       "invoice template", "two-factor authentication"])


def task_type_text(rng):
    node = "cradle.action_planner"
    title, app = rng.choice(APPS["form"])
    target = rng.choice([e for e in app if e[0] == "textbox"])
    elems = screen_elements(rng, app, must=(target,), k_lo=3, k_hi=5, shell=browser_shell(title))
    eid = next(e[0] for e in elems if (e[1], e[2]) == target)
    label = target[1]
    text = text_for_field(rng, label)
    search = "earch" in label
    enter = False
    if search and rng.random() < 0.5:
        goal = rng.choice([f"Type \"{text}\" in the {label} box and press Enter.",
                           f"Enter {text} into {label} and submit with Enter."])
        enter = True
    else:
        goal = rng.choice([f"Type \"{text}\" into the {label} field.", f"Enter {text} in the \"{label}\" text field.",
                           f"Fill the {label} field by typing: {text}", f"Type {text} into the {label} input."])
    screen = render_screen(rng, title, elems, None)
    msgs = [sys_msg(rng, node), user(gui_prompt(goal, screen))]
    args = {"element_id": eid, "text": text}
    if enter:
        args["press_enter"] = True
    return node, call(msgs, calls=[("type_text", args)], tools=GUI_TOOLSETS["type"], temperature=0.0)


def task_scroll(rng):
    node = "cradle.action_planner"
    title, app = rng.choice(APPS["long"])
    elems = screen_elements(rng, app, k_lo=3, k_hi=5, shell=SHELLS["long"])
    label = rng.choice(OFFSCREEN)
    direction = rng.choice(["down", "down", "up"])
    small = rng.random() < 0.3
    where = "below" if direction == "down" else "above"
    if small:
        goal = rng.choice([f"Scroll {direction} a little to reveal \"{label}\".",
                           f"\"{label}\" is just {where} the visible area; scroll {direction} a bit."])
    else:
        goal = rng.choice([f"Scroll {direction} to the \"{label}\" section.",
                           f"Find {label}; it is further {direction} the page, so scroll.",
                           f"The {label} link is {where} the fold — scroll {direction} to bring it into view."])
    pos = rng.randrange(0, 70) if direction == "down" else rng.randrange(30, 100)
    screen = render_screen(rng, title, elems, None,
                           extra_lines=[f"Scrollbar: vertical, position {pos}%, page is long (more content off screen)"])
    msgs = [sys_msg(rng, node), user(gui_prompt(goal, screen))]
    return node, call(msgs, calls=[("scroll", {"direction": direction, "amount": 3 if small else 10})],
                      tools=GUI_TOOLSETS["scroll"], temperature=0.0)


SHORTCUTS = [("s", ["Save the file with the keyboard shortcut.", "Use the keyboard shortcut to save.", "Save (keyboard shortcut only)."]),
             ("z", ["Undo the last change with the keyboard shortcut.", "Use the undo keyboard shortcut."]),
             ("c", ["Copy the selection with the keyboard shortcut.", "Use the copy keyboard shortcut on the selected text."]),
             ("v", ["Paste the clipboard with the keyboard shortcut.", "Use the paste keyboard shortcut."]),
             ("a", ["Select everything with the keyboard shortcut.", "Select all using the keyboard shortcut."]),
             ("w", ["Close the current tab using the keyboard shortcut.", "Use the keyboard shortcut to close this tab."]),
             ("t", ["Open a new tab with the keyboard shortcut.", "Use the new-tab keyboard shortcut."]),
             ("f", ["Open find with the keyboard shortcut.", "Use the find keyboard shortcut to search this page."]),
             ("b", ["Make the selected text bold with the keyboard shortcut.", "Bold the selection via keyboard shortcut."])]


def task_key_shortcut(rng):
    node = "cradle.action_planner"
    title, app = rng.choice(APPS["editor"])
    elems = screen_elements(rng, app, k_lo=3, k_hi=4, shell=SHELLS["editor"])
    key, goals = rng.choice(SHORTCUTS)
    platform = rng.choice(PLATFORMS)
    mod = "cmd" if platform.startswith("macOS") else "ctrl"
    screen = render_screen(rng, title, elems, platform, extra_lines=["Keyboard focus: editor area"])
    goal = rng.choice(goals)
    msgs = [sys_msg(rng, node), user(gui_prompt(goal, screen))]
    return node, call(msgs, calls=[("press_keys", {"keys": f"{mod}+{key}"})], tools=GUI_TOOLSETS["keys"], temperature=0.0)


def task_wait_for_load(rng):
    node = "cradle.action_planner"
    title, app = rng.choice(APPS["loading"])
    elems = screen_elements(rng, app, k_lo=3, k_hi=4)
    kind = rng.randrange(3)
    pct = rng.randrange(3, 95)
    if kind == 0:
        extra = [f"[{rng.randrange(80, 99)}] progressbar \"Loading…\" value=\"{pct}%\" (center)"]
        secs = 2
    elif kind == 1:
        extra = [f"[{rng.randrange(80, 99)}] status \"Uploading {pct}%\" (bottom)"]
        secs = 5
    else:
        extra = [f"[{rng.randrange(80, 99)}] status \"Exporting report… {pct}%\" (bottom)"]
        secs = 5
    extra.append("Note: controls are disabled (greyed out) while busy.")
    lbl = elems[0][2]
    goal = rng.choice([f"Click \"{lbl}\" once the page has finished loading.", f"Continue with {lbl} when the app is ready.",
                       f"Next step is {lbl}, but the screen must finish loading first."])
    screen = render_screen(rng, title, elems, None, extra_lines=extra)
    msgs = [sys_msg(rng, node), user(gui_prompt(goal, screen))]
    return node, call(msgs, calls=[("wait", {"seconds": secs})], tools=GUI_TOOLSETS["wait"], temperature=0.0)


# routine name -> (app title, visible extras, steps: ("click", label) | ("type", label))
WORKFLOWS = {
    "Submit expense report": ("Expenses — HR Portal", [("link", "My reports"), ("button", "Save draft")],
                              [("click", "New expense"), ("type", "Amount"), ("type", "Description"), ("type", "Date"),
                               ("click", "Submit")]),
    "Request time off": ("Time off — HR Portal", [("link", "Balance"), ("button", "Cancel")],
                         [("click", "New request"), ("type", "Start date"), ("type", "End date"), ("type", "Reason"),
                          ("click", "Submit request")]),
    "Register a vendor": ("Vendors — Procurement", [("link", "All vendors"), ("button", "Import")],
                          [("click", "Add vendor"), ("type", "Vendor name"), ("type", "Tax ID"), ("type", "Contact email"),
                           ("click", "Save vendor")]),
    "Fill in the timesheet": ("Timesheet — HR Portal", [("link", "Last week"), ("button", "Copy last week")],
                              [("type", "Project"), ("type", "Hours"), ("click", "Submit week")]),
}
WORKFLOW_NAMES = list(WORKFLOWS)


def task_form_workflow(rng):
    node = "cradle.action_planner"
    name = rng.choice(WORKFLOW_NAMES)
    title, extras, steps = WORKFLOWS[name]
    must = tuple(("button", s[1]) if s[0] == "click" else ("textbox", s[1]) for s in steps)
    inputs = {s[1]: text_for_field(rng, s[1]) for s in steps if s[0] == "type"}
    elems = screen_elements(rng, list(must) + extras, must=must, k_lo=len(must) + 1, k_hi=len(must) + 2,
                            shell=SHELLS["routine"])
    ids = {e[2]: e[0] for e in elems}
    platform = None
    routine_id = rng.randrange(10, 99)
    itxt = "; ".join(f"{k} = {v}" for k, v in inputs.items())
    done = rng.randrange(0, len(steps))

    def action(s):
        if s[0] == "click":
            return "click", {"element_id": ids[s[1]]}
        return "type_text", {"element_id": ids[s[1]], "text": inputs[s[1]]}

    head = f"Saved routine #{routine_id} \"{name}\" (replay)\nRoutine inputs: {itxt}"
    msgs = [sys_msg(rng, node)]
    for i in range(done):
        if i == 0:
            msgs.append(user(f"{head}\nRoutine step {i + 1} of {len(steps)}.\n{render_screen(rng, title, elems, platform)}"))
        else:
            msgs.append(user(f"Routine step {i + 1} of {len(steps)}. (screen unchanged apart from the last action)"))
        nm, args = action(steps[i])
        cid = "call_" + rand_alnum(rng, 24)
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": nm, "arguments": jargs(args)}}]})
        msgs.append({"role": "tool", "tool_call_id": cid, "content": "ok"})
    typed = {s[1] for s in steps[:done] if s[0] == "type"}
    now = [(e[0], e[1], e[2], inputs[e[2]] if e[2] in typed else e[3]) + tuple(e[4:]) for e in elems]
    screen = render_screen(rng, title, now, platform)
    msgs.append(user(f"{head}\nRoutine step {done + 1} of {len(steps)}; previous routine steps succeeded.\n{screen}"))
    return node, call(msgs, calls=[action(steps[done])], tools=GUI_TOOLSETS["routine"], temperature=0.0)


DIALOGS = [
    ("Session expired", "Your session has expired. Please sign in again.", ["Sign in again", "Cancel"], "Sign in again",
     "the session timed out while the agent was working"),
    ("Unsaved changes", "You have unsaved changes. Save before leaving?", ["Save", "Discard", "Cancel"], "Save",
     "navigating away triggered the unsaved-changes guard"),
    ("Upload failed", "Error 413: the file is larger than 25 MB.", ["Retry", "Choose another file", "Close"], "Choose another file",
     "the attachment exceeded the size limit"),
    ("We value your privacy", "This site uses cookies.", ["Accept all", "Reject all", "Manage"], "Reject all",
     "a cookie banner is blocking the page"),
    ("Update available", "A new version is ready. Restart now?", ["Restart now", "Later"], "Later",
     "an updater prompt grabbed focus"),
    ("Permission denied", "You don't have access to this folder. Request access?", ["Request access", "Close"], "Close",
     "the account lacks permission for that location"),
    ("Something went wrong", "Server error (500). Please try again.", ["Try again", "Dismiss"], "Try again",
     "the server returned a transient 500"),
]
REFLECT_OPEN = ["The last action did not produce the expected screen.", "Something interrupted the flow.",
                "Comparing the expected and observed screens:", "The click landed, but the app responded differently.",
                "I expected the next view, but a modal dialog is in front of it."]
REFLECT_NEXT = ["Once it is dismissed I will repeat the previous action.", "After that, continue with the original goal.",
                "Then I'll re-check that the form still has the values entered earlier.",
                "If the dialog appears again, I will stop and report it.", "This should unblock the task without losing data."]


def task_dialog_recovery(rng):
    node = "cradle.self_reflection"
    group = rng.choice(["nav", "form"])
    title, app = rng.choice(APPS[group])
    dtitle, dtext, buttons, best, why = rng.choice(DIALOGS)
    shell = SHELLS["nav"] if group == "nav" else browser_shell(title)
    elems = screen_elements(rng, app, k_lo=2, k_hi=3, shell=shell)
    nid = max(e[0] for e in elems) + 1
    bids = []
    for b in buttons:
        bids.append((nid, b))
        nid += rng.randrange(1, 3)
    extra = [f"MODAL DIALOG \"{dtitle}\" (blocks the page): {dtext}"] + [
        f"[{i}] button \"{b}\" (in dialog, center)" for j, (i, b) in enumerate(bids)]
    target = rng.choice([e for e in elems if e[1] in ("button", "link", "tab", "listitem")] or elems)
    goal = rng.choice([f"{rng.choice(['Finish', 'Complete', 'Continue'])} the task in {title.split(' — ')[0]}",
                       f"Open \"{target[2]}\""])
    last = f"click(element_id={target[0]})"
    # a modal hides the page from the accessibility tree: only the dialog is listed
    screen = "\n".join([f"Window: \"{title}\"", f"({len(elems)} page elements hidden behind the dialog)"] + extra)
    instr = rng.choice(["Reflect on the unexpected result and recover.", "What went wrong, and how do we recover?",
                        "The previous action did not have the expected effect. Explain why and recover."])
    u = (f"Task: {goal}\nLast action: {last}\nExpected: the \"{target[2]}\" view opens.\nObserved instead:\n{screen}\n\n"
         f"Self-reflection: {instr}")
    choice_label = best if rng.random() < 0.8 else rng.choice(buttons)
    bid = next(i for i, b in bids if b == choice_label)
    reason = [rng.choice(REFLECT_OPEN), f"The \"{dtitle}\" dialog is open: {dtext}",
              rng.choice([f"Most likely {why}.", f"My reading: {why}.", f"This happens when {why}."]),
              rng.choice([f"The safest option is \"{choice_label}\".", f"I'll choose \"{choice_label}\" to get back on track.",
                          f"Clicking \"{choice_label}\" keeps the work and closes the dialog."]),
              rng.choice(REFLECT_NEXT)]
    if rng.random() < 0.4:
        reason.insert(2, rng.choice(["Nothing else on the screen looks wrong.", "The underlying page is still loaded.",
                                     "Focus is trapped in the dialog, so other clicks would be ignored."]))
    msgs = [sys_msg(rng, node), user(u)]
    return node, call(msgs, content=" ".join(reason), calls=[("click", {"element_id": bid})], tools=GUI_TOOLSETS["recover"],
                      temperature=0.5)


# ----------------------------------------------------------------------------------------------
# Task registry
# ----------------------------------------------------------------------------------------------

# name: (system, agent node, function, templated?, relative volume, description)
TASKS = [
    ("wf.send_chat_message", "workflow_operator", "operator.tool_caller", make_tool_caller("wf.send_chat_message"), True, 640,
     "Slack / SMS notification tool call parsed from a command"),
    ("sw.crud_function", "software_company", "metagpt.engineer", task_crud_function, True, 760,
     "engineer: CRUD/boilerplate SQLAlchemy function from signature + spec"),
    ("wf.route_command", "workflow_operator", "operator.router", task_route_command, True, 700,
     "router: pick the route for a command, JSON {\"route\": ...}"),
    ("gui.click_element", "gui_controller", "cradle.action_planner", task_click, True, 520,
     "click the element named in the goal on a rendered screen"),
    ("wf.calendar_event", "workflow_operator", "operator.tool_caller", make_tool_caller("wf.calendar_event"), True, 300,
     "create_calendar_event tool call (dates normalised to ISO)"),
    ("gui.type_text", "gui_controller", "cradle.action_planner", task_type_text, True, 270,
     "type the given text into the named field"),
    ("sw.prd_json", "software_company", "metagpt.product_manager", task_prd_json, True, 240,
     "product manager: PRD as JSON from a feature request"),
    ("wf.send_email", "workflow_operator", "operator.tool_caller", make_tool_caller("wf.send_email"), True, 230,
     "send_email tool call (recipient, subject, body) parsed from a command"),
    ("wf.create_ticket", "workflow_operator", "operator.tool_caller", make_tool_caller("wf.create_ticket"), True, 190,
     "create_ticket tool call (priority words mapped to P1-P4)"),
    ("sw.unit_tests", "software_company", "metagpt.qa_engineer", task_unit_tests, True, 170,
     "QA: parametrized pytest tests for a small given function"),
    ("wf.data_lookup", "workflow_operator", "operator.tool_caller", make_tool_caller("wf.data_lookup"), True, 140,
     "lookup_record tool call (customers, orders, invoices, ...)"),
    ("wf.http_request", "workflow_operator", "operator.tool_caller", make_tool_caller("wf.http_request"), True, 120,
     "http_request tool call with method, URL, headers, body"),
    ("gui.form_workflow", "gui_controller", "cradle.action_planner", task_form_workflow, True, 110,
     "next step of a saved multi-step GUI routine (multi-turn)"),
    ("sw.api_design", "software_company", "metagpt.architect", task_api_design, True, 95,
     "architect: REST endpoints + data model as JSON"),
    ("wf.template_message", "workflow_operator", "operator.notifier", task_template_message, True, 85,
     "notifier: fill a fixed message template"),
    ("wf.monitoring_check", "workflow_operator", "operator.tool_caller", make_tool_caller("wf.monitoring_check"), True, 75,
     "check_service_health / ping_host tool call"),
    ("sw.debug_reasoning", "software_company", "metagpt.reviewer", task_debug_reasoning, False, 80,
     "reviewer/debugger: reason about a failing test (open-ended)"),
    ("sw.algorithmic_code", "software_company", "metagpt.engineer", task_algorithmic_code, False, 70,
     "engineer: harder algorithmic function, varied solutions and commentary"),
    ("gui.scroll", "gui_controller", "cradle.action_planner", task_scroll, True, 60,
     "scroll towards an element that is off screen"),
    ("sw.user_stories", "software_company", "metagpt.product_manager", task_user_stories, True, 55,
     "product manager: numbered user stories, one per persona"),
    ("sw.db_schema", "software_company", "metagpt.architect", task_db_schema, True, 50,
     "architect: PostgreSQL CREATE TABLE (+ index) from a column list"),
    ("wf.multi_step_plan", "workflow_operator", "operator.planner", task_multi_step_plan, False, 48,
     "planner: re-plan a multi-step goal after a blocker (multi-turn, open-ended)"),
    ("gui.key_shortcut", "gui_controller", "cradle.action_planner", task_key_shortcut, True, 48,
     "press the keyboard shortcut for an intent (ctrl vs cmd by platform)"),
    ("gui.dialog_recovery", "gui_controller", "cradle.self_reflection", task_dialog_recovery, False, 46,
     "self-reflection: recover from an unexpected dialog (prose + tool call, open-ended)"),
    ("sw.code_review", "software_company", "metagpt.reviewer", task_code_review, False, 45,
     "reviewer: review a diff (open-ended)"),
    ("gui.wait_for_load", "gui_controller", "cradle.action_planner", task_wait_for_load, True, 44,
     "wait while a progress bar / status shows loading"),
]
TASK_INDEX = {t[0]: t for t in TASKS}
LEGACY_TYPES = {"wf.send_email", "wf.send_chat_message", "wf.calendar_event", "wf.create_ticket", "wf.data_lookup",
                "wf.http_request", "wf.monitoring_check"}


def quotas(calls):
    """Exact per-type counts proportional to the volumes (largest remainder)."""
    total_w = sum(t[5] for t in TASKS)
    raw = [(t[0], calls * t[5] / total_w) for t in TASKS]
    counts = {n: int(r) for n, r in raw}
    left = calls - sum(counts.values())
    for n, r in sorted(raw, key=lambda x: (-(x[1] - int(x[1])), x[0]))[:left]:
        counts[n] += 1
    return counts


# ----------------------------------------------------------------------------------------------
# Record builders (Data-Flywheel / legacy function_call / fine-tuning form)
# ----------------------------------------------------------------------------------------------

def prompt_chars(messages):
    n = 0
    for m in messages:
        c = m.get("content")
        if c:
            n += len(c)
        n += 16
        tc = m.get("tool_calls")
        if tc:
            for x in tc:
                n += len(x["function"]["arguments"]) + 24
        fc = m.get("function_call")
        if fc:
            n += len(fc["arguments"]) + 24
    return n


def materialize_calls(rng, calls):
    out = []
    for name, args in calls:
        out.append({"id": "call_" + rand_alnum(rng, 24), "type": "function",
                    "function": {"name": name, "arguments": jargs(args)}})
    return out


def to_legacy_messages(messages):
    names = {}
    out = []
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            f = m["tool_calls"][0]
            names[f["id"]] = f["function"]["name"]
            out.append({"role": "assistant", "content": None,
                        "function_call": {"name": f["function"]["name"], "arguments": f["function"]["arguments"]}})
        elif m["role"] == "tool":
            out.append({"role": "function", "name": names.get(m["tool_call_id"], "unknown"), "content": m["content"]})
        else:
            out.append(m)
    return out


def build_record(rng, ts_ms, node, model, client, c, legacy=False):
    messages = c["messages"]
    tools = c["tools"]
    req = {"model": model}
    if legacy:
        messages = to_legacy_messages(messages)
    req["messages"] = messages
    if c["temperature"] is not None:
        req["temperature"] = c["temperature"]
    if c["max_tokens"]:
        req["max_tokens"] = c["max_tokens"]
    tools_chars = 0
    if tools:
        if legacy:
            req["functions"] = FUNCTIONS_OF[id(tools)]
            req["function_call"] = "auto"
        else:
            req["tools"] = tools
            req["tool_choice"] = "auto"
        tools_chars = TOOLS_CHARS[id(tools)]
    if c["response_format"]:
        req["response_format"] = c["response_format"]
    msg = {"role": "assistant", "content": c["content"]}
    comp_chars = len(c["content"]) if c["content"] else 0
    finish = "stop"
    if c["calls"]:
        tcs = materialize_calls(rng, c["calls"])
        for x in tcs:
            comp_chars += len(x["function"]["arguments"]) + 12
        if legacy:
            msg["function_call"] = {"name": tcs[0]["function"]["name"], "arguments": tcs[0]["function"]["arguments"]}
            finish = "function_call"
        else:
            msg["tool_calls"] = tcs
            finish = "tool_calls"
    if not legacy:
        msg["refusal"] = None
    pt = (prompt_chars(messages) + tools_chars) // 4 + 3
    ct = comp_chars // 4 + 1
    resp = {"id": "chatcmpl-" + rand_alnum(rng, 24), "object": "chat.completion", "created": ts_ms // 1000,
            "model": MODEL_VERSION[model],
            "choices": [{"index": 0, "message": msg, "logprobs": None, "finish_reason": finish}],
            "usage": {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}}
    fp = FINGERPRINT.get(model)
    if fp:
        resp["system_fingerprint"] = fp
    base, per = MODEL_SPEED[model]
    lat = (base + per * ct + pt * 0.05) * (0.75 + rng.random() * 0.7)
    rec = {"timestamp": iso_ts(ts_ms), "workload_id": node, "client_id": client, "request": req,
           "response": resp, "latency_ms": round(lat, 1)}
    return rec


def build_finetune(rng, c):
    msgs = list(c["messages"])
    a = {"role": "assistant", "content": c["content"]}
    if c["calls"]:
        a["tool_calls"] = materialize_calls(rng, c["calls"])
    msgs.append(a)
    out = {"messages": msgs}
    if c["tools"]:
        out["tools"] = c["tools"]
    return out


START_MS = int(START.timestamp() * 1000)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


_DAYS = {}


def iso_ts(ms):
    """Unix milliseconds -> '2025-03-03T08:00:12.345Z' (UTC)."""
    days, rem = divmod(ms, 86400000)
    day = _DAYS.get(days)
    if day is None:
        day = _DAYS[days] = (EPOCH + timedelta(days=days)).date().isoformat()
    h, rem = divmod(rem, 3600000)
    m, rem = divmod(rem, 60000)
    s, milli = divmod(rem, 1000)
    return f"{day}T{h:02d}:{m:02d}:{s:02d}.{milli:03d}Z"


# ----------------------------------------------------------------------------------------------
# Bad file
# ----------------------------------------------------------------------------------------------

DEFECTS = [
    ("truncated_json", "line cut off mid-object (writer crashed)"),
    ("truncated_json", "line cut off mid-string"),
    ("invalid_utf8", "raw bytes 0xC3 0x28 inside a string: not valid UTF-8"),
    ("invalid_utf8", "raw 0xFF 0xFE bytes inside the user content"),
    ("empty_line", "empty line"),
    ("whitespace_only", "only spaces and a tab"),
    ("non_object_array", "valid JSON, but an array instead of an object"),
    ("non_object_string", "valid JSON, but a bare string"),
    ("non_object_null", "the JSON literal null"),
    ("messages_is_string", "request.messages is a string, not a list"),
    ("missing_response", "no response field"),
    ("missing_request", "no request field"),
    ("tool_args_invalid_json", "tool_calls[0].function.arguments is not valid JSON (cut off)"),
    ("tool_args_invalid_json", "tool_calls[0].function.arguments uses Python dict syntax (single quotes)"),
    ("tool_args_not_string", "tool_calls[0].function.arguments is an object, not a JSON string"),
    ("choices_not_list", "response.choices is an object, not a list"),
    ("content_wrong_type", "a user message's content is a number"),
    ("message_missing_role", "a message has no role"),
    ("latency_is_string", "latency_ms is the string \"812ms\""),
    ("timestamp_is_number", "timestamp is a Unix number, not an ISO-8601 string"),
    ("two_records_one_line", "two records concatenated on one line (missing newline)"),
    ("trailing_comma", "trailing comma before the closing brace"),
    ("python_repr", "the record written with Python repr (single quotes, None)"),
]


def pick_good(rng, want_tools):
    """Draw a Data-Flywheel record from the normal generators (for the bad file)."""
    while True:
        _PENDING.clear()
        name = weighted(rng, [(t[0], t[5]) for t in TASKS])
        node, c = TASK_INDEX[name][3](rng)
        if want_tools and not c["calls"]:
            continue
        return name, node, c


def make_bad_file(out_dir, seed):
    rng = SeededRandom(seed + 1)
    ts = START_MS
    entries = []   # (bytes line, defect key or None, description or None, label-or-None, planted)
    for _ in range(BAD_GOOD_LINES):
        ts += rng.randrange(1000, 40000000)
        name, node, c = pick_good(rng, False)
        system = TASK_INDEX[name][1]
        rec = build_record(rng, ts, node, weighted(rng, NODE_MODELS[node]), weighted(rng, SYSTEM_CLIENTS[system]), c)
        line = dumps(rec)
        entries.append((line.encode("utf-8"), None, None, (rec["response"]["id"], system, name), take_planted(line)))
    for key, desc in DEFECTS:
        ts += rng.randrange(1000, 40000000)
        name, node, c = pick_good(rng, key.startswith("tool_args"))
        system = TASK_INDEX[name][1]
        rec = build_record(rng, ts, node, weighted(rng, NODE_MODELS[node]), weighted(rng, SYSTEM_CLIENTS[system]), c)
        s = dumps(rec)
        rec = json.loads(s)   # a private copy: the defects below mutate it, records share system messages
        if key == "truncated_json":
            line = (s[: len(s) // 2] if "mid-object" in desc else s[: s.index('"content":"') + 40]).encode()
        elif key == "invalid_utf8":
            b = s.encode()
            i = b.index(b'"role":"user","content":"') + len(b'"role":"user","content":"') + 3
            bad = b"\xc3\x28" if "C3" in desc else b"\xff\xfe"
            line = b[:i] + bad + b[i:]
        elif key == "empty_line":
            line = b""
        elif key == "whitespace_only":
            line = b"   \t "
        elif key == "non_object_array":
            line = dumps([rec["timestamp"], rec["workload_id"], rec["request"]["model"]]).encode()
        elif key == "non_object_string":
            line = dumps("upstream timeout after 30s; request not logged").encode()
        elif key == "non_object_null":
            line = b"null"
        elif key == "messages_is_string":
            rec["request"]["messages"] = "\n".join(f"{m['role']}: {m.get('content') or ''}" for m in rec["request"]["messages"])
            line = dumps(rec).encode()
        elif key == "missing_response":
            del rec["response"]
            line = dumps(rec).encode()
        elif key == "missing_request":
            del rec["request"]
            line = dumps(rec).encode()
        elif key == "tool_args_invalid_json":
            f = rec["response"]["choices"][0]["message"]["tool_calls"][0]["function"]
            if "cut off" in desc:
                f["arguments"] = f["arguments"][:-7]
            else:
                f["arguments"] = repr(json.loads(f["arguments"]))
            line = dumps(rec).encode()
        elif key == "tool_args_not_string":
            f = rec["response"]["choices"][0]["message"]["tool_calls"][0]["function"]
            f["arguments"] = json.loads(f["arguments"])
            line = dumps(rec).encode()
        elif key == "choices_not_list":
            rec["response"]["choices"] = rec["response"]["choices"][0]
            line = dumps(rec).encode()
        elif key == "content_wrong_type":
            for m in rec["request"]["messages"]:
                if m["role"] == "user":
                    m["content"] = 42
                    break
            line = dumps(rec).encode()
        elif key == "message_missing_role":
            del rec["request"]["messages"][-1]["role"]
            line = dumps(rec).encode()
        elif key == "latency_is_string":
            rec["latency_ms"] = "812ms"
            line = dumps(rec).encode()
        elif key == "timestamp_is_number":
            rec["timestamp"] = ts // 1000
            line = dumps(rec).encode()
        elif key == "two_records_one_line":
            line = (s + s).encode()
        elif key == "trailing_comma":
            line = (s[:-1] + ",}").encode()
        elif key == "python_repr":
            line = repr(rec).encode()
        else:
            raise AssertionError(key)
        entries.append((line, key, desc, None, take_planted(line.decode("utf-8", "replace"))))
    # keep the first line good so a reader's format sniffing sees a real record
    head, rest = entries[0], entries[1:]
    rng.shuffle(rest)
    entries = [head] + rest
    path = os.path.join(out_dir, BAD_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    labels, defects, planted = [], [], []
    with open(path, "wb") as f:
        for i, (line, key, desc, lab, pl) in enumerate(entries, 1):
            f.write(line + b"\n")
            planted.extend((BAD_FILE, i, k, v) for k, v in pl)
            if lab:
                labels.append({"response_id": lab[0], "system": lab[1], "task_type": lab[2], "file": BAD_FILE, "line": i})
            else:
                defects.append((i, key, desc))
    return labels, defects, len(entries), planted


def write_planted(out_dir, planted):
    """planted.tsv: file, line, kind, value (a JSON string), one planted value per line, sorted."""
    with open(os.path.join(out_dir, PLANTED_FILE), "w", encoding="utf-8", newline="\n") as f:
        f.write("# file\tline\tkind\tvalue (JSON string): every PII value and secret planted in the logs; not a log\n")
        for fn, line, kind, v in sorted(planted):
            f.write(f"{fn}\t{line}\t{kind}\t{dumps(v)}\n")


# ----------------------------------------------------------------------------------------------
# README
# ----------------------------------------------------------------------------------------------

def write_readme(out_dir, seed, calls, counts, file_counts, defects, bad_lines, sizes):
    L = []
    a = L.append
    a("# Sample agent LLM-call logs")
    a("")
    a("Generated by `gen/generate.py` (seeded, stdlib-only Python 3.11); do not edit by hand — this README is")
    a("generated too. `python3 sample_logs/gen/generate.py` rewrites the committed set in place,")
    a("`--check` regenerates into a temp dir and compares byte for byte (exit 1 on a difference),")
    a("`--calls N --out DIR` writes a large, uncommitted benchmark variant (streams to disk, constant memory).")
    a("")
    a(f"This set: seed {seed}, {calls} calls in the five main files, plus {bad_lines} lines in `{BAD_FILE}`.")
    a("")
    a("The calls imitate the three case studies NVIDIA uses to argue for small language models in agents:")
    a("a MetaGPT-like software company, an Open-Operator-like workflow operator and a Cradle-like GUI controller.")
    a("All names, numbers, keys and personal data are synthetic (random, Luhn/IBAN-valid where the format has a")
    a("checksum) and belong to nobody.")
    a("")
    a("## Files")
    a("")
    a("| file | form | records |")
    a("| --- | --- | ---: |")
    for fn, form in ((SYSTEM_FILES["software_company"], "Data-Flywheel records"),
                     (SYSTEM_FILES["workflow_operator"], "Data-Flywheel records"),
                     (SYSTEM_FILES["gui_controller"], "Data-Flywheel records"),
                     (LEGACY_FILE, "Data-Flywheel records, legacy `functions` / `function_call`"),
                     (FINETUNE_FILE, "plain fine-tuning form `{\"messages\", \"tools\"}`"),
                     (BAD_FILE, "good Data-Flywheel records mixed with malformed lines"),
                     (LABELS_FILE, "ground truth (not logs; never read by slmctl)")):
        a(f"| `{fn}` | {form} | {file_counts[fn]} |")
    a("")
    a(f"Total size of the generated files: {sum(sizes.values())} bytes.")
    a("")
    a("## Record format")
    a("")
    a("Every line of the Data-Flywheel files is one JSON object with the keys, in this order:")
    a("")
    a("- `timestamp`: ISO-8601 UTC string with milliseconds, e.g. `2025-03-03T08:00:12.345Z` (synthetic:")
    a("  a fixed start plus seeded gaps; the main files are in time order, the bad file is shuffled).")
    a("- `workload_id`: the agent node that made the call, e.g. `metagpt.engineer`, `operator.tool_caller`,")
    a("  `cradle.action_planner`. Task types of the same node share its system prompts (two deployed versions")
    a("  per node), so neither the workload id nor the system prompt alone identifies the task type.")
    a("- `client_id`: the deployment that logged the call (two per agent system).")
    a("- `request`: an OpenAI chat-completions request: `model`, `messages` (`system`, `user`, `assistant`")
    a("  with optional `tool_calls`, `tool` with `tool_call_id`), `temperature`, optional `max_tokens`,")
    a("  `tools` + `tool_choice` for tool-calling nodes, `response_format` for JSON outputs. The operator and")
    a("  GUI agents retrieve the few tools relevant to each step (tool / skill retrieval), so the offered tool")
    a("  list is a small subset that varies with the kind of command.")
    a("- `response`: a `chat.completion`: `id` (`chatcmpl-` + 24 alphanumerics, unique), `object`, `created`,")
    a("  `model`, `choices[0].message` (`content` and/or `tool_calls` whose `function.arguments` is a JSON")
    a("  string), `finish_reason` (`stop` or `tool_calls`), `usage` (token counts ≈ characters / 4),")
    a("  `system_fingerprint` for OpenAI models.")
    a("- `latency_ms`: number (float with one decimal).")
    a("")
    a(f"`{LEGACY_FILE}` holds operator tool calls in the pre-tools form: the request has `functions` and")
    a("`function_call: \"auto\"`, the response message has `function_call: {name, arguments}` (arguments a")
    a("JSON string) and `finish_reason: \"function_call\"`; histories carry assistant `function_call` messages")
    a("and `role: \"function\"` results.")
    a("")
    a(f"`{FINETUNE_FILE}` lines are `{{\"messages\": [...], \"tools\": [...]}}` (`tools` only when the call")
    a("offered tools); the last message is the assistant's answer. These lines have no response id.")
    a("")
    a("## Labels")
    a("")
    a(f"`{LABELS_FILE}` has one line per good record in every file: `{{\"response_id\", \"system\", \"task_type\",")
    a("\"file\", \"line\"}` (`file` relative to `sample_logs/`, `line` 1-based). For Data-Flywheel and legacy")
    a("records `response_id` is the completion's `response.id`. For the fine-tuning form, which has no id,")
    a(f"`response_id` is the key `\"{FINETUNE_FILE}:<line>\"` (file name, colon, 1-based line number).")
    a("The labels are for tests and benchmarks (e.g. scoring clustering); slmctl never reads them.")
    a("")
    a("## Task types")
    a("")
    a("Templated types: the response is a deterministic function of the input (arguments copied or mapped")
    a("from the request, fixed output layout) — these are the ones a small model should learn. Open-ended")
    a("types: varied free text (reasoning, plans, reviews); the same input can get different answers.")
    a("Every type has several prompt variants (3-6 instruction wordings or request phrasings, often combined)")
    a("and randomised entities, numbers and dates; some are multi-turn.")
    a("")
    a("| task type | system | node | kind | calls | what |")
    a("| --- | --- | --- | --- | ---: | --- |")
    for name, system, node, _fn, templated, _w, desc in sorted(TASKS, key=lambda t: (-counts[t[0]], t[0])):
        a(f"| `{name}` | {system} | `{node}` | {'templated' if templated else 'open-ended'} | {counts[name]} | {desc} |")
    a("")
    a(f"{len(TASKS)} task types; counts include the fine-tuning-form and legacy files and the good lines of the bad")
    a("file. Volumes are skewed on purpose (Zipf-like) as in real traffic.")
    a("")
    a("Multi-turn: `wf.*` tool-caller types carry an earlier command/tool-call/result exchange in about a quarter")
    a("of the calls, `sw.crud_function` an earlier function in about 15%, `gui.form_workflow` the routine's")
    a("previous steps, `wf.multi_step_plan` the plan and progress reports. Every call ends with a user turn.")
    a("")
    a("## Personal data and secrets")
    a("")
    a("Some calls carry realistic PII and secrets so that curation has something to find: emails, phone")
    a("numbers, Luhn-valid card numbers (Visa/Mastercard/Amex, plain, spaced or dashed), US SSNs, IBANs with")
    a("valid check digits, street addresses, IPv4 addresses, `sk-`/`sk-proj-` keys, `AKIA…` AWS key ids with")
    a("secrets, `ghp_` GitHub tokens, `xoxb-` Slack tokens, JWTs, `password=` / `SMTP_PASSWORD=` assignments")
    a("and passwords inside connection strings. Where: notification bodies, ticket descriptions, lookup results,")
    a("HTTP auth headers, GUI form inputs (email, password, card), CI logs in debugging prompts, diffs under review.")
    a("Captured CI environments also hold vendor tokens (Stripe, GitLab, npm, PyPI, Hugging Face, Anthropic, Groq,")
    a("Replicate, SendGrid, Twilio, Mailgun, Shopify, DigitalOcean, Square, Telegram, Discord, Bitbucket, GitHub),")
    a("under keyword names or neutral ones, Azure storage connection strings and SAS URLs, Mongo URLs and quoted")
    a("passwords holding `;`, `&`, `#`, `%`, `@`, `?`; AWS diffs sometimes paste a GCP service-account key (PEM);")
    a("API keys and passwords also appear in prose (\"(API key key_…)\", \"the password is …\", Wi-Fi passwords).")
    a("These extra secrets come from their own seeded stream, so they change no other draw.")
    a("")
    a(f"`{PLANTED_FILE}` lists every planted value: file, line, kind, and the value as a JSON string (tab-separated,")
    a("one per line; a value cut off by a truncated line is listed as far as the line holds it). It is not a log:")
    a("collect's directory walk skips `.tsv`, and the scrubbing tests assert that none of these values, nor any")
    a("8-character piece of one, survives `slmctl collect`.")
    a("")
    a("## Malformed lines")
    a("")
    a(f"`{BAD_FILE}` mixes {bad_lines - len(defects)} good records (labelled like the others) with these")
    a("malformed lines; every line not listed here is a good record.")
    a("")
    a("| line | defect | detail |")
    a("| ---: | --- | --- |")
    for ln, key, desc in defects:
        a(f"| {ln} | `{key}` | {desc} |")
    a("")
    with open(os.path.join(out_dir, README_FILE), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(L))


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------

def generate(out_dir, calls=DEFAULT_CALLS, seed=SEED, progress=False):
    global _SRNG
    rng = SeededRandom(seed)
    _SRNG = SeededRandom(seed + 2)
    _PENDING.clear()
    planted = []   # (file, line, kind, value)
    os.makedirs(out_dir, exist_ok=True)
    remaining = quotas(calls)
    names = [t[0] for t in TASKS]
    left = calls
    counts = {n: 0 for n in names}
    files = {}
    lines = {}
    for fn in list(SYSTEM_FILES.values()) + [FINETUNE_FILE, LEGACY_FILE, LABELS_FILE]:
        files[fn] = open(os.path.join(out_dir, fn), "w", encoding="utf-8", newline="\n")
        lines[fn] = 0
    labels = files[LABELS_FILE]
    mean_gap = SPAN_MS / max(calls, 1)
    ts = START_MS
    try:
        for i in range(calls):
            x = rng.random() * left
            for n in names:
                x -= remaining[n]
                if x < 0:
                    break
            if remaining[n] == 0:   # float edge case: take the last type with quota left
                n = next(m for m in reversed(names) if remaining[m] > 0)
            remaining[n] -= 1
            left -= 1
            task = TASK_INDEX[n]
            system = task[1]
            # bursty gaps (product of two uniforms, mean = mean_gap) using only IEEE-exact arithmetic
            ts += int(rng.random() * rng.random() * 4.0 * mean_gap) + 1
            node, c = task[3](rng)
            assert node == task[2]
            model = weighted(rng, NODE_MODELS[node])
            client = weighted(rng, SYSTEM_CLIENTS[system])
            u = rng.random()
            if n in LEGACY_TYPES and u < LEGACY_SHARE:
                fn = LEGACY_FILE
                rec = build_record(rng, ts, node, model, client, c, legacy=True)
                rid_ = rec["response"]["id"]
            elif u > 1.0 - FINETUNE_SHARE:
                fn = FINETUNE_FILE
                rec = build_finetune(rng, c)
                rid_ = None
            else:
                fn = SYSTEM_FILES[system]
                rec = build_record(rng, ts, node, model, client, c)
                rid_ = rec["response"]["id"]
            enc = encode_record(rec)
            files[fn].write(enc + "\n")
            lines[fn] += 1
            planted.extend((fn, lines[fn], k, v) for k, v in take_planted(enc))
            if rid_ is None:
                rid_ = f"{FINETUNE_FILE}:{lines[fn]}"
            # == dumps({...}) for these plain ASCII values, without the encoder call
            labels.write(f'{{"response_id":"{rid_}","system":"{system}","task_type":"{n}","file":"{fn}",'
                         f'"line":{lines[fn]}}}\n')
            lines[LABELS_FILE] += 1
            counts[n] += 1
            if progress and (i + 1) % 100000 == 0:
                print(f"{i + 1} records", file=sys.stderr)
        bad_labels, defects, bad_lines, bad_planted = make_bad_file(out_dir, seed)
        planted.extend(bad_planted)
        write_planted(out_dir, planted)
        for lab in bad_labels:
            labels.write(dumps(lab) + "\n")
            lines[LABELS_FILE] += 1
            counts[lab["task_type"]] += 1
    finally:
        for f in files.values():
            f.close()
    lines[BAD_FILE] = bad_lines
    sizes = {fn: os.path.getsize(os.path.join(out_dir, fn)) for fn in GENERATED if fn != README_FILE}
    write_readme(out_dir, seed, calls, counts, lines, defects, bad_lines, sizes)
    return counts, lines


def check(committed_dir, seed=SEED):
    tmp = tempfile.mkdtemp(prefix="slm-sample-logs-")
    try:
        generate(tmp, DEFAULT_CALLS, seed)
        bad = []
        for fn in GENERATED:
            a, b = os.path.join(committed_dir, fn), os.path.join(tmp, fn)
            if not os.path.exists(a):
                bad.append(f"{fn}: missing in {committed_dir}")
                continue
            with open(a, "rb") as fa, open(b, "rb") as fb:
                if fa.read() != fb.read():
                    bad.append(f"{fn}: differs from a fresh regeneration")
        for m in bad:
            print(m, file=sys.stderr)
        if not bad:
            print(f"ok: {len(GENERATED)} files identical to a fresh regeneration")
        return 0 if not bad else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    committed = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output directory (default: the committed sample_logs/)")
    ap.add_argument("--calls", type=int, default=DEFAULT_CALLS, help=f"records in the main files (default {DEFAULT_CALLS})")
    ap.add_argument("--seed", type=int, default=SEED, help=f"random seed (default {SEED})")
    ap.add_argument("--check", action="store_true", help="regenerate to a temp dir and compare with the committed files")
    args = ap.parse_args(argv)
    if args.check:
        return check(args.out or committed, args.seed)
    out = args.out or committed
    if os.path.abspath(out) == committed and (args.calls != DEFAULT_CALLS or args.seed != SEED):
        ap.error("the committed set uses the default --calls and --seed; pass --out for other variants")
    if args.calls < 1:
        ap.error("--calls must be positive")
    counts, lines = generate(out, args.calls, args.seed, progress=args.calls >= 200000)
    total = sum(lines[f] for f in list(SYSTEM_FILES.values()) + [FINETUNE_FILE, LEGACY_FILE])
    print(f"wrote {total} records + {lines[BAD_FILE]} bad-file lines to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
