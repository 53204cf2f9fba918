#!/usr/bin/env python3
# Long-prompt collect input for the scrub benchmark (issue 16): sample_logs' Data-Flywheel records with
# their system prompt grown to ~20 KB of airline-agent policy prose (seeded, stdlib-only).
"""python3 bench/scrub/long_prompts.py OUT.jsonl [SIZE_MB] [--same-policy] : writes at least SIZE_MB
(default 55) MB. Each call gets its own ~20 KB policy (every sentence re-drawn: nothing repeats from
call to call, the worst case for the normalizer's cache), or with --same-policy one policy per agent
node (workload id), as a real agent's logs hold: the same policy text opens every call of a node."""
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICY = [
    "Passengers may change a basic economy ticket only within 24 hours of booking; after that, changes are not allowed.",
    "Each member tier has a checked-bag allowance: regular 0, silver 1, gold 2 free bags of up to 23 kg per passenger.",
    "Compensation for a delayed flight of more than {n} hours is a travel certificate of ${m} per passenger, on request.",
    "Before any action that updates the booking database, list the details and obtain explicit user confirmation (yes).",
    "Refunds go back to the original payment method within {n} business days; gift cards are refunded as certificates.",
    "You must not provide information, knowledge or procedures not given by the user or the available tools.",
    "Flight status is one of available, delayed, on time, cancelled or flying; only available flights can be booked.",
    "Insurance costs ${m} per passenger and allows a full refund if the user cancels for health or weather reasons.",
]


def main():
    args = [a for a in sys.argv[1:] if a != "--same-policy"]
    same = len(args) != len(sys.argv) - 1
    out, size = args[0], float(args[1]) if len(args) > 1 else 55.0
    rng = random.Random(16)
    fixed = {}
    recs = []
    for name in ("workflow_operator.jsonl", "software_company.jsonl", "gui_controller.jsonl"):
        recs += (ROOT / "sample_logs" / name).read_text(encoding="utf-8").splitlines()
    written = 0
    with open(out, "w", encoding="utf-8") as f:
        i = 0
        while written < size * 1e6:
            r = json.loads(recs[i % len(recs)])
            i += 1
            policy = fixed.get(r.get("workload_id")) if same else None
            if policy is None:
                policy = []
                while sum(len(p) for p in policy) < 20000:
                    policy.append(rng.choice(POLICY).format(n=rng.randrange(2, 9), m=rng.randrange(50, 500)))
                if same:
                    fixed[r.get("workload_id")] = policy
            msgs = r["request"]["messages"]
            msgs[0]["content"] = msgs[0]["content"] + "\n\n# Airline policy\n" + "\n".join(policy)
            r["response"]["id"] = f"chatcmpl-bench{i:019d}"
            line = json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n"
            f.write(line)
            written += len(line.encode())
    print(f"{out}: {written / 1e6:.1f} MB, {i} records")


if __name__ == "__main__":
    main()
