#!/usr/bin/env python3
"""Sums a torch profiler trace (chrome JSON, e.g. the one tests/finetune/test-shared-prefix.cpp's
skipped "profile:" case writes) into self time per op: an op's duration less that of the ops nested
in it on the same thread. Prints the ops taking the most, with their share of the traced time.
Usage: scripts/trace-self-time.py TRACE.json [N]"""
import collections
import json
import sys


def main():
    trace = json.load(open(sys.argv[1]))
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    by_thread = collections.defaultdict(list)
    for e in events:
        if e.get("ph") == "X" and "dur" in e:
            by_thread[e.get("tid")].append((float(e["ts"]), float(e["dur"]), e["name"]))
    self_time = collections.Counter()
    count = collections.Counter()
    wall = 0.0
    for evs in by_thread.values():
        evs.sort(key=lambda x: (x[0], -x[1]))
        stack = []  # [end, name, child time]
        def close(upto):
            while stack and stack[-1][0] <= upto:
                end, name, child, dur = stack.pop()
                self_time[name] += dur - child
                if stack:
                    stack[-1][2] += dur
        for ts, dur, name in evs:
            close(ts)
            count[name] += 1
            stack.append([ts + dur, name, 0.0, dur])
        close(float("inf"))
        if evs:
            wall = max(wall, max(t + d for t, d, _ in evs) - min(t for t, _, _ in evs))
    total = sum(self_time.values())
    print(f"traced self time {total / 1e3:.1f} ms over {wall / 1e3:.1f} ms of wall time")
    for name, t in self_time.most_common(top):
        print(f"{100 * t / total:6.2f}%  {t / 1e3:9.2f} ms  {count[name]:6d}x  {name}")


if __name__ == "__main__":
    main()
