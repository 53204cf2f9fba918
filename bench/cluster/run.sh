#!/usr/bin/env bash
# bench/cluster: `slmctl cluster` (tfidf, --k auto) against scikit-learn (HashingVectorizer +
# TfidfTransformer + MiniBatchKMeans, given the true k) on N generated calls: time, NMI, ratios.
#
#   bench/cluster/run.sh [N]          N generated calls (default 1000000); collect deduplicates them
#   SLMCTL=build/slmctl PYTHON=/usr/bin/python3 BENCH_OUT=bench/out/cluster bench/cluster/run.sh
#
# Generated logs and the database are kept under $BENCH_OUT and reused by the next run.
# slmctl is timed end to end (read the calls, embed, cluster, describe, store the run and every
# member, write --members); the baseline only for vectorising and k-means (its load is reported
# apart). Needs Debian's python3-sklearn (apt-get install python3-sklearn).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${1:-1000000}
OUT=${BENCH_OUT:-$ROOT/bench/out/cluster}
SLMCTL=${SLMCTL:-$ROOT/build/slmctl}
PYTHON=${PYTHON:-/usr/bin/python3}
HERE=$ROOT/bench/cluster

[ -x "$SLMCTL" ] || { echo "error: $SLMCTL not built (cmake --build build --target slmctl)" >&2; exit 1; }
"$PYTHON" -c "import sklearn" 2>/dev/null || {
    echo "error: $PYTHON has no scikit-learn" >&2
    echo "hint: apt-get install python3-sklearn, or PYTHON=/path/to/python3" >&2
    exit 1
}
mkdir -p "$OUT"
LOGS=$OUT/logs-$N
DB=$OUT/calls-$N.db

if [ ! -f "$LOGS/labels.jsonl" ]; then
    echo "generating $N calls into $LOGS ..." >&2
    python3 "$ROOT/sample_logs/gen/generate.py" --calls "$N" --out "$LOGS" >&2
fi
if [ ! -f "$DB" ]; then
    echo "collecting into $DB ..." >&2
    "$SLMCTL" --db "$DB" -q collect "$LOGS"/software_company.jsonl "$LOGS"/workflow_operator.jsonl \
        "$LOGS"/gui_controller.jsonl "$LOGS"/legacy_functions.jsonl "$LOGS"/finetune_form.jsonl >&2
fi
K=$("$PYTHON" -c "import json,sys; print(len({json.loads(l)['task_type'] for l in open(sys.argv[1])}))" "$LOGS/labels.jsonl")

# wall and CPU seconds (user + sys) of each side: on a shared machine the CPU time says what the
# work cost when the wall clock was stretched by other load
echo "slmctl cluster ..." >&2
/usr/bin/time -f "%e %U %S" -o "$OUT/slmctl.time" \
    "$SLMCTL" --db "$DB" -q cluster --k auto --members "$OUT/slmctl-members.jsonl" > "$OUT/slmctl-table.txt"

echo "scikit-learn ..." >&2
/usr/bin/time -f "%e %U %S" -o "$OUT/sklearn.time" \
    "$PYTHON" "$HERE/sklearn_baseline.py" --db "$DB" --k "$K" --members "$OUT/sklearn-members.jsonl" > "$OUT/sklearn.json"

"$PYTHON" "$HERE/score.py" --db "$DB" --members "$OUT/slmctl-members.jsonl" --labels "$LOGS/labels.jsonl" > "$OUT/slmctl-score.json"
"$PYTHON" "$HERE/score.py" --db "$DB" --members "$OUT/sklearn-members.jsonl" --labels "$LOGS/labels.jsonl" > "$OUT/sklearn-score.json"

"$PYTHON" - "$N" "$K" "$OUT" "$DB" <<'EOF'
import json, sqlite3, sys
n, k, out, db = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
sk = json.load(open(f"{out}/sklearn.json"))
ss, ks = json.load(open(f"{out}/slmctl-score.json")), json.load(open(f"{out}/sklearn-score.json"))
slm_wall, u, s = map(float, open(f"{out}/slmctl.time").read().split()[-3:])
slm_cpu = u + s
sk_wall, u, s = map(float, open(f"{out}/sklearn.time").read().split()[-3:])
sk_cpu = u + s  # includes loading the texts and the interpreter; sk["total_s"] is vectorise + k-means wall
con = sqlite3.connect(db)
summary = json.loads(con.execute(
    "SELECT summary FROM runs WHERE command = 'cluster' AND status = 'ok' ORDER BY id DESC LIMIT 1").fetchone()[0])
t = summary.get("timings", {})
print(f"calls: {ss['calls']:,} distinct ({n:,} generated), {k} true task types, {ss['scored']:,} scored")
print(f"{'':16}{'wall':>9}{'cpu':>9}{'NMI':>8}{'ARI':>8}{'k':>5}")
print(f"{'slmctl cluster':16}{slm_wall:>8.1f}s{slm_cpu:>8.1f}s{ss['nmi']:>8.3f}{ss['ari']:>8.3f}{ss['k']:>5}  auto k; end to end")
print(f"{'scikit-learn':16}{sk['total_s']:>8.1f}s{sk_cpu:>8.1f}s{ks['nmi']:>8.3f}{ks['ari']:>8.3f}{ks['k']:>5}  "
      f"true k given; vectorise + k-means only (load {sk['load_s']:.1f}s)")
print(f"speed-up {sk['total_s'] / slm_wall:.1f}x wall, {sk_cpu / slm_cpu:.1f}x cpu   NMI {ss['nmi'] - ks['nmi']:+.3f}   "
      f"slmctl {'under' if slm_wall < 60 else 'OVER'} 60 s")
print("slmctl stages: " + ", ".join(f"{s[:-2]} {v:.1f}s" for s, v in t.items()))
json.dump({"generated": n, "calls": ss["calls"], "true_k": k,
           "slmctl": {"wall_s": slm_wall, "cpu_s": slm_cpu, **ss, "timings": t},
           "sklearn": {"cpu_s": sk_cpu, **sk, **ks},
           "speedup_wall": sk["total_s"] / slm_wall, "speedup_cpu": sk_cpu / slm_cpu},
          open(f"{out}/results.json", "w"), indent=2)
EOF
