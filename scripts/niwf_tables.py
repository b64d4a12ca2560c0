#!/usr/bin/env python3
"""Per-method tables for the NIWF notes (docs/notes/niwf.md) from `clorch run` output folders.

    scripts/niwf_tables.py results/niwf-permuted-mnist [results/niwf-split-mnist …]

For each method (the run spec's method name), over seeds: ACC, BWT and forgetting of the
accuracy matrix R (R[i][j], accuracy on task j after training task i), the accuracy on each
task right after training it (R[t][t]) and its ratio to sgd's, the largest change of a
committed task's held-out outputs (the last `*.drift` event, tasks before the last), and the
rollback rows' reproduction of R[t][t].
"""
import json
import pathlib
import statistics
import sys


def runs(folder):
    for spec_path in sorted(pathlib.Path(folder).glob("runs/*/spec.json")):
        spec = json.loads(spec_path.read_text())
        log = spec_path.parent / "events.jsonl"
        if not log.exists() or '"event":"finished"' not in log.read_text():
            continue
        events = [json.loads(l) for l in (spec_path.parent / "events.jsonl").read_text().splitlines() if l]
        yield spec, events


def method_name(spec):
    m = spec.get("method", {})
    return m.get("name") or m.get("kind")


def summarise(spec, events):
    tasks = next(e["tasks"] for e in events if e["event"] == "started")
    R = [[None] * tasks for _ in range(tasks)]
    variants = {}
    drift = None
    flags = []
    for e in events:
        if e["event"] == "eval" and e.get("after_task") is not None:
            if e.get("variant"):
                variants.setdefault(e["variant"], {})[(e["after_task"], e["on_task"])] = e["accuracy"]
            else:
                R[e["after_task"]][e["on_task"]] = e["accuracy"]
        if e["event"] == "method" and e["name"].endswith(".drift"):
            drift = e["values"]["tasks"]
        if e["event"] == "method" and e["name"] == "niwf.commit" and e["values"]["overlap"] > 0:
            flags.append((e["values"]["task"], e["values"]["overlap"], e["values"].get("overlap_region")))
    T = tasks
    acc = sum(R[T - 1]) / T
    bwt = sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)
    forgetting = sum(max(R[i][j] for i in range(j, T - 1)) - R[T - 1][j] for j in range(T - 1)) / (T - 1)
    diag = [R[t][t] for t in range(T)]
    max_change = max((d["max_abs_change"] for d in drift[:-1]), default=0.0) if drift else None
    rollback = {}
    for v, rows in variants.items():
        if v.startswith("version:"):
            t = int(v.split(":")[1])
            rollback[v] = max(abs(a - R[t][t]) for (i, j), a in rows.items() if j == t)
    compose = {v: {j: a for (i, j), a in rows.items() if i == T - 1} for v, rows in variants.items() if v.startswith("compose:")}
    return dict(acc=acc, bwt=bwt, forgetting=forgetting, diag=diag, max_change=max_change,
                rollback=rollback, compose=compose, flags=flags)


def mean_sd(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"


def main():
    for folder in sys.argv[1:]:
        by = {}
        for spec, events in runs(folder):
            by.setdefault(method_name(spec), []).append(summarise(spec, events))
        print(f"## {folder}\n")
        sgd_diag = None
        if "sgd" in by:
            T = len(by["sgd"][0]["diag"])
            sgd_diag = [statistics.mean(r["diag"][t] for r in by["sgd"]) for t in range(T)]
        print("| method | runs | ACC | BWT | forgetting | R[t][t] mean | min R[t][t]/sgd | max output change (committed) |")
        print("|---|---|---|---|---|---|---|---|")
        for m, rs in by.items():
            T = len(rs[0]["diag"])
            diag = [statistics.mean(r["diag"][t] for r in rs) for t in range(T)]
            ratio = min(diag[t] / sgd_diag[t] for t in range(T)) if sgd_diag else None
            mc = [r["max_change"] for r in rs if r["max_change"] is not None]
            print(f"| {m} | {len(rs)} | {mean_sd([r['acc'] for r in rs])} | {mean_sd([r['bwt'] for r in rs])} | "
                  f"{mean_sd([r['forgetting'] for r in rs])} | {statistics.mean(diag):.3f} | "
                  f"{ratio:.3f} | {max(mc) if mc else '—'} |")
        print("\nR[t][t] per task (mean over seeds), and its ratio to sgd's:\n")
        for m, rs in by.items():
            T = len(rs[0]["diag"])
            diag = [statistics.mean(r["diag"][t] for r in rs) for t in range(T)]
            cells = " ".join(f"{d:.3f}" for d in diag)
            ratios = " ".join(f"{d / s:.2f}" for d, s in zip(diag, sgd_diag)) if sgd_diag else ""
            print(f"- {m}: {cells}  (÷sgd: {ratios})")
        for m, rs in by.items():
            rb = [r["rollback"] for r in rs if r["rollback"]]
            if rb:
                worst = {v: max(x[v] for x in rb) for v in rb[0]}
                print(f"- {m} rollback |version:t on task t − R[t][t]| (max over seeds): {worst}")
            cp = [r["compose"] for r in rs if r["compose"]]
            for v in (cp[0] if cp else {}):
                print(f"- {m} {v} after the last task: " + ", ".join(
                    f"task {j}: {statistics.mean(c[v][j] for c in cp):.3f}" for j in sorted(cp[0][v])))
            fl = [f for r in rs for f in r["flags"]]
            if fl:
                print(f"- {m} overlap flags: {fl}")
        print()


if __name__ == "__main__":
    main()
