#!/usr/bin/python3
# Scores a members file (`slmctl cluster --members`, or the baseline's) against sample_logs'
# ground truth: NMI and ARI with scikit-learn's metrics, noise (-1) counted as one more cluster.
"""score.py --db DB --members M.jsonl --labels labels.jsonl  -> JSON {calls, scored, nmi, ari, k}

Calls are matched to labels by response id; calls without one (the fine-tuning-form file) by
"<file name>:<line>", the key labels.jsonl uses for them, from calls.source_file/source_line.
"""
import argparse
import json
import os
import sqlite3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--members", required=True)
    ap.add_argument("--labels", required=True)
    a = ap.parse_args()
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    truth = {}
    with open(a.labels) as f:
        for line in f:
            r = json.loads(line)
            truth[r["response_id"]] = r["task_type"]
    con = sqlite3.connect(a.db)
    src = {i: f"{os.path.basename(p)}:{ln}" for i, p, ln in
           con.execute("SELECT id, source_file, source_line FROM calls WHERE response_id IS NULL OR response_id = ''")}
    t, p, calls = [], [], 0
    with open(a.members) as f:
        for line in f:
            m = json.loads(line)
            calls += 1
            key = m["response_id"] or src.get(m["call_id"])
            if key in truth:
                t.append(truth[key])
                p.append(m["cluster"])
    print(json.dumps({"calls": calls, "scored": len(t), "k": len(set(c for c in p if c >= 0)),
                      "nmi": normalized_mutual_info_score(t, p), "ari": adjusted_rand_score(t, p)}))


if __name__ == "__main__":
    main()
