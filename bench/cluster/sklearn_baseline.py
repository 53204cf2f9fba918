#!/usr/bin/python3
# The baseline `slmctl cluster` is measured against: scikit-learn's HashingVectorizer +
# TfidfTransformer + MiniBatchKMeans on the same task texts, read from the same database.
"""Cluster the calls of an slmctl database with scikit-learn; write members like `--members`.

  sklearn_baseline.py --db bench.db --k 25 --members sk.jsonl   # prints timings as JSON

The documents are `calls.task_text`, exactly what `slmctl cluster` embeds. Word 1-2 grams hashed
to 2^20 features (no char n-grams: they make the baseline several times slower), sublinear tf-idf,
L2 rows, MiniBatchKMeans with the given k (the bench passes the true number of task types: an
oracle the baseline gets for free, slmctl chooses its own k). Loading the texts is timed apart.
"""
import argparse
import json
import sqlite3
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--members", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    from sklearn.cluster import MiniBatchKMeans
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

    t0 = time.perf_counter()
    con = sqlite3.connect(a.db)
    rows = con.execute(
        "SELECT id, COALESCE(response_id, ''), COALESCE(workload_id, ''), task_text FROM calls ORDER BY id").fetchall()
    docs = [r[3] for r in rows]
    t1 = time.perf_counter()
    hv = HashingVectorizer(n_features=2**20, ngram_range=(1, 2), alternate_sign=False, norm=None)
    x = TfidfTransformer(sublinear_tf=True).fit_transform(hv.transform(docs))
    t2 = time.perf_counter()
    km = MiniBatchKMeans(n_clusters=a.k, batch_size=4096, n_init=3, random_state=a.seed)
    labels = km.fit_predict(x)
    t3 = time.perf_counter()
    with open(a.members, "w") as f:
        for (cid, rid, wl, _), lab in zip(rows, labels):
            f.write(json.dumps({"call_id": cid, "response_id": rid or None, "workload_id": wl or None,
                                "cluster": int(lab)}) + "\n")
    print(json.dumps({"calls": len(docs), "k": a.k, "load_s": t1 - t0, "vectorize_s": t2 - t1,
                      "kmeans_s": t3 - t2, "total_s": t3 - t1}))


if __name__ == "__main__":
    main()
