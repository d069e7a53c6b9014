#!/usr/bin/python3
"""Selective Backprop bench (issue 4): wall-clock time to 90.0% test accuracy and accuracy at an
equal time budget, standard training vs Selective Backprop vs stale Selective Backprop, all in
Kiln, on the reference CNN and protocol of the training bench (run_bench.py).

usage: run_selective_bench.py BUILD_DIR      (normally through `make bench` / scripts/bench)
       run_selective_bench.py --render-only  (rewrites the report from results_selective.json)

Environment:
  KILN_BENCH_SB_REPS=N     seeds 0..N-1 per variant (default 3; medians are reported)
  KILN_BENCH_SB_BETA=X     --sb-beta of both selective variants (default 2)
  KILN_BENCH_SB_STALE=N    --sb-stale of the stale variant (default 1: scored every other epoch)
  KILN_BENCH_SB_EPOCHS=N   most epochs of a selective run (default 16); standard runs: 10
  KILN_BENCH_OUT=DIR       where RESULTS_SELECTIVE.md and results_selective.json go (default bench/);
                           the "## Selective Backprop (issue 4)" section is merged into RESULTS.md there
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import (BATCH, LR, MOMENTUM, KILN_THREADS, ROOT, SPECS, RunFailed, env_int, log,  # noqa: E402
                       median, merge_section, read_metrics, run_proc, wait_idle)

SECTION = "## Selective Backprop (issue 4)"
TARGET = 0.90
BUDGET_EPOCHS = 5          # the equal budget: the time standard training needs for 5 epochs
SPEEDUP_TARGET = 1.5
T0 = time.monotonic()


def env_float(name, default):
    v = os.environ.get(name)
    return float(v) if v not in (None, "") else default


def variant_args(name, beta, stale):
    if name == "standard":
        return []
    a = ["--selective-backprop", "--sb-beta", beta]
    return a + (["--sb-stale", stale] if name == "stale" else [])


def epochs_of(rows):
    """Epoch-end records of a metrics log: training seconds (evaluation excluded), test accuracy,
    and the cumulative counters and time split."""
    out = []
    for m in sorted(rows, key=lambda m: m["global_step"]):
        if not m.get("epoch_end"):
            continue
        out.append({k: m.get(k) for k in ("epoch", "elapsed_s", "test_accuracy", "examples", "scored", "scored_int8",
                                           "backpropagated", "fraction_backpropagated", "updates", "score_s",
                                           "forward_s", "backward_s", "update_s", "scorer", "rank_correlation")})
    return out


def run(kiln, work, name, seed, beta, stale, max_epochs, budget_s):
    """One training run; stops once it has reached the target and (selective runs) trained past
    the budget, or at max_epochs."""
    tag = f"sb-{name}-{seed}"
    metrics = work / f"{tag}.metrics.jsonl"

    def monitor():
        ends = epochs_of(read_metrics(metrics))
        reached = any((e["test_accuracy"] or 0) >= TARGET for e in ends)
        past = len(ends) >= BUDGET_EPOCHS if budget_s is None else any(e["elapsed_s"] >= budget_s for e in ends)
        return reached and past and len(ends) < max_epochs

    argv = [kiln, "train", SPECS["cnn"], "--batch", BATCH, "--opt", "momentum", "--lr", LR, "--momentum", MOMENTUM,
            "--seed", seed, "--threads", KILN_THREADS, "--epochs", max_epochs, "--json", "--quiet",
            "--out", work / f"{tag}.safetensors", "--metrics", metrics, "--plot", work / f"{tag}.svg"]
    argv += variant_args(name, beta, stale)
    wait_idle(60)
    try:
        r = run_proc(argv, work, tag, monitor=monitor)
    except RunFailed as e:
        log(f"{name} seed {seed} FAILED: {e}")
        return {"variant": name, "seed": seed, "error": str(e), "argv": [str(a) for a in argv], "epochs": []}
    ends = epochs_of(read_metrics(metrics))
    hit = next((e for e in ends if (e["test_accuracy"] or 0) >= TARGET), None)
    res = {"variant": name, "seed": seed, "argv": r["argv"], "metrics": str(metrics), "epochs": ends,
           "other_cpus": r["other_cpus"], "peak_rss_bytes": r["peak_rss_bytes"],
           "epoch_to_target": hit["epoch"] if hit else None, "s_to_target": hit["elapsed_s"] if hit else None,
           "at_target": hit}
    if name == "standard":
        e5 = next((e for e in ends if e["epoch"] == BUDGET_EPOCHS), None)
        res["budget_s"] = e5["elapsed_s"] if e5 else None
        res["acc_at_budget"] = e5["test_accuracy"] if e5 else None
    else:
        within = [e for e in ends if budget_s is not None and e["elapsed_s"] <= budget_s]
        res["budget_s"] = budget_s
        res["acc_at_budget"] = within[-1]["test_accuracy"] if within else None
        res["epochs_in_budget"] = within[-1]["epoch"] if within else 0
    log(f"{name} seed {seed}: " + ", ".join(f"e{e['epoch']} {100 * (e['test_accuracy'] or 0):.2f}% "
                                            f"@{e['elapsed_s']:.1f}s" for e in ends))
    return res


def split_of(e):
    if not e:
        return None
    parts = {k: e.get(f"{k}_s") or 0.0 for k in ("score", "forward", "backward", "update")}
    parts["other"] = max(e["elapsed_s"] - sum(parts.values()), 0.0)
    return parts


def pct(x):
    return "-" if x is None else f"{100 * x:.2f}%"


def sec(x):
    return "-" if x is None else f"{x:.1f}"


def verdict(ok):
    return "PASS" if ok else ("n/a" if ok is None else "FAIL")


def section(res):
    c = res["config"]
    s = res["summary"]
    L = [SECTION, ""]
    L.append(f"Generated by `make bench` (`bench/run_selective_bench.py`) on {res['date_utc']}, "
             f"{res['wall_s'] / 60:.1f} min. Reference CNN and protocol of the training bench (SGD momentum 0.9, "
             f"lr 0.01 constant, batch 64, no augmentation), Kiln with 2 threads; seeds 0 to {c['reps'] - 1} for each "
             f"variant, runs interleaved (standard, selective, stale, next seed); medians over seeds.")
    L.append("")
    L.append(f"* **standard**: `kiln train` as in the training bench.")
    L.append(f"* **selective**: `--selective-backprop --sb-beta {c['beta']}` (history 1024, scorer `auto`: the "
             "inference runtime in int8 wherever it ranks 512 calibration images like fp32, Spearman >= 0.95; "
             "recalibrated each scoring epoch). The first epoch backpropagates everything.")
    L.append(f"* **stale**: the same with `--sb-stale {c['stale']}` (a loss is reused for {c['stale']} epoch(s) after "
             f"it was scored, so examples are scored every {c['stale'] + 1} epochs).")
    L.append("* **Time to 90.0%**: training seconds (evaluation excluded) to the end of the first epoch whose test "
             "accuracy is >= 90.0%. **Budget**: the training seconds standard training needs for 5 epochs (per "
             "seed); a selective run's accuracy at the budget is that of its last epoch ending within it.")
    L.append("")
    L.append("| variant | time to 90.0% (median, s) | runs (s) | epochs to 90% | speedup vs standard | "
             "accuracy at budget (median) | runs | fraction backpropagated (to 90%) |")
    L.append("|---|---:|---|---|---:|---:|---|---:|")
    for v in ("standard", "selective", "stale"):
        a = s[v]
        L.append(f"| {v} | {sec(a['time'])} | {', '.join(sec(x) for x in a['times'])} | "
                 f"{', '.join(str(x or '-') for x in a['epochs'])} | "
                 f"{a['speedup_s']} | {pct(a['acc_budget'])} | {', '.join(pct(x) for x in a['accs'])} | "
                 f"{a['fraction_s']} |")
    L.append("")
    L.append("Time split up to the 90% epoch (seconds, median over seeds; `other` = data gather, selection, "
             "queueing, calibration outside scoring):")
    L.append("")
    L.append("| variant | scoring forward | training forward | backward | update | other | total | "
             "examples scored (int8) | examples backpropagated |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in ("standard", "selective", "stale"):
        a = s[v]
        sp = a["split"]
        if sp is None:
            L.append(f"| {v} | - | - | - | - | - | - | - | - |")
            continue
        L.append(f"| {v} | {sp['score']:.1f} | {sp['forward']:.1f} | {sp['backward']:.1f} | {sp['update']:.1f} | "
                 f"{sp['other']:.1f} | {sum(sp.values()):.1f} | {a['scored'] or 0} ({a['scored_int8'] or 0}) | "
                 f"{a['backpropagated']} |")
    L.append("")
    L.append("Each run, up to the end of its 90% epoch (seconds; fraction backpropagated of the examples seen):")
    L.append("")
    L.append("| variant | seed | time to 90.0% | epochs | fraction backpropagated | scoring forward | training forward | "
             "backward | update | other | accuracy at budget |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in ("standard", "selective", "stale"):
        for r in (r for r in res["runs"] if r["variant"] == v):
            h, sp = r.get("at_target"), split_of(r.get("at_target"))
            if not h:
                L.append(f"| {v} | {r['seed']} | not reached | - | - | - | - | - | - | - | {pct(r.get('acc_at_budget'))} |")
                continue
            L.append(f"| {v} | {r['seed']} | {sec(r['s_to_target'])} | {r['epoch_to_target']} | "
                     f"{100 * h['fraction_backpropagated']:.1f}% | {sp['score']:.1f} | {sp['forward']:.1f} | "
                     f"{sp['backward']:.1f} | {sp['update']:.1f} | {sp['other']:.1f} | {pct(r.get('acc_at_budget'))} |")
    L.append("")
    L.append("Beside the paper (Jiang et al., arXiv 1910.00762: CIFAR10, CIFAR100, SVHN on GPUs, their own "
             "schedules):")
    L.append("")
    L.append("| claim | paper | Kiln here |")
    L.append("|---|---|---|")
    L.append(f"| speedup to target error vs standard SGD | up to 3.5x | {s['selective']['speedup_s']} (to 90.0% test "
             f"accuracy, β = {c['beta']}) |")
    L.append(f"| further speedup from stale losses | +26% | {s['stale_gain_s']} (stale vs selective time to 90%) |")
    L.append(f"| fraction backpropagated | 1/(β+1) after warm-up | {s['selective']['fraction_s']} of all examples "
             f"to 90% (first epoch: all) |")
    L.append("")
    L.append("| target | result |")
    L.append("|---|---|")
    for name, ok in res["verdicts"]:
        L.append(f"| {name} | {verdict(ok)} |")
    L.append("")
    if res.get("plot"):
        L.append(f"Training curves by time, seed 0: `{res['plot']}` (`kiln plot --by-time`).")
        L.append("")
    L.append("Commands (first seed; the bench stops a run with SIGTERM once it has reached 90% and passed the budget):")
    L.append("")
    L.append("```")
    for r in res["runs"]:
        if r["seed"] == 0:
            L.append(" ".join(r["argv"]).replace(res["workdir"], "$W"))
    L.append("```")
    return "\n".join(L) + "\n"


def main():
    args = sys.argv[1:]
    out_dir = Path(os.environ["KILN_BENCH_OUT"]).resolve() if os.environ.get("KILN_BENCH_OUT") else ROOT / "bench"
    if args == ["--render-only"]:   # the report again from results_selective.json (no runs)
        res = json.loads((out_dir / "results_selective.json").read_text())
        text = section(res)
        (out_dir / "RESULTS_SELECTIVE.md").write_text("# Kiln Selective Backprop bench results\n\n" + text)
        if (out_dir / "RESULTS.md").exists():
            merge_section(out_dir / "RESULTS.md", SECTION, text)
        print(f"report: {out_dir / 'RESULTS_SELECTIVE.md'}")
        return
    if args == ["--merge-only"]:
        src = out_dir / "RESULTS_SELECTIVE.md"
        if src.exists() and (out_dir / "RESULTS.md").exists():
            text = src.read_text()
            merge_section(out_dir / "RESULTS.md", SECTION, text[text.find(SECTION):])
            print(f"merged {src} into {out_dir / 'RESULTS.md'}")
        return
    if len(args) != 1:
        raise SystemExit("usage: run_selective_bench.py BUILD_DIR | --merge-only | --render-only")
    kiln = Path(args[0]).resolve() / "kiln"
    if not kiln.exists():
        raise SystemExit(f"bench: {kiln} not found; build first (make build)")
    cfg = {"reps": env_int("KILN_BENCH_SB_REPS", 3), "beta": env_float("KILN_BENCH_SB_BETA", 2.0),
           "stale": env_int("KILN_BENCH_SB_STALE", 1), "sb_epochs": env_int("KILN_BENCH_SB_EPOCHS", 16),
           "std_epochs": 10}
    work = Path(os.environ.get("KILN_BENCH_WORK") or
                subprocess.run(["mktemp", "-d", "/tmp/kiln-sb-bench-XXXXXX"], capture_output=True, text=True,
                               check=True).stdout.strip())
    runs = []
    for seed in range(cfg["reps"]):
        std = run(kiln, work, "standard", seed, cfg["beta"], cfg["stale"], cfg["std_epochs"], None)
        runs.append(std)
        for v in ("selective", "stale"):
            runs.append(run(kiln, work, v, seed, cfg["beta"], cfg["stale"], cfg["sb_epochs"], std.get("budget_s")))
    s = {}
    inf = float("inf")
    for v in ("standard", "selective", "stale"):
        rs = [r for r in runs if r["variant"] == v]
        times = [r.get("s_to_target") for r in rs]
        t = median([x if x is not None else inf for x in times])
        hits = [r["at_target"] for r in rs if r.get("at_target")]
        splits = [split_of(h) for h in hits]
        s[v] = {"time": None if t in (None, inf) else t, "times": times,
                "epochs": [r.get("epoch_to_target") for r in rs],
                "acc_budget": median([r.get("acc_at_budget") for r in rs]), "accs": [r.get("acc_at_budget") for r in rs],
                "fraction": median([h["fraction_backpropagated"] for h in hits]),
                "split": {k: median([sp[k] for sp in splits]) for k in splits[0]} if splits else None,
                "scored": median([h["scored"] for h in hits]), "scored_int8": median([h["scored_int8"] for h in hits]),
                "backpropagated": median([h["backpropagated"] for h in hits])}
    for v in ("standard", "selective", "stale"):
        a = s[v]
        a["speedup"] = s["standard"]["time"] / a["time"] if a["time"] and s["standard"]["time"] else None
        a["speedup_s"] = "-" if a["speedup"] is None else f"{a['speedup']:.2f}x"
        a["fraction_s"] = "-" if a["fraction"] is None else f"{100 * a['fraction']:.1f}%"
    gain = s["selective"]["time"] / s["stale"]["time"] - 1 if s["selective"]["time"] and s["stale"]["time"] else None
    s["stale_gain"] = gain
    s["stale_gain_s"] = "-" if gain is None else f"{100 * gain:+.0f}%"
    sb, st, sd = s["selective"], s["stale"], s["standard"]
    verdicts = [
        (f"Time to 90.0%: selective >= {SPEEDUP_TARGET}x faster than standard ({sb['speedup_s']})",
         None if sd["time"] is None else (sb["speedup"] is not None and sb["speedup"] >= SPEEDUP_TARGET)),
        (f"Time to 90.0%: stale selective faster still ({st['speedup_s']} vs {sb['speedup_s']})",
         None if sd["time"] is None else (st["time"] is not None and (sb["time"] is None or st["time"] < sb["time"]))),
        (f"Accuracy at the 5-epoch budget: selective no lower than standard ({pct(sb['acc_budget'])} vs "
         f"{pct(sd['acc_budget'])})",
         None if sd["acc_budget"] is None else (sb["acc_budget"] is not None and sb["acc_budget"] >= sd["acc_budget"])),
        (f"Accuracy at the 5-epoch budget: stale no lower than standard ({pct(st['acc_budget'])} vs "
         f"{pct(sd['acc_budget'])})",
         None if sd["acc_budget"] is None else (st["acc_budget"] is not None and st["acc_budget"] >= sd["acc_budget"])),
    ]
    plot = out_dir / "selective_curves.svg"
    logs = [f"{r['metrics']}={r['variant']}" for r in runs if r["seed"] == 0 and r.get("metrics")]
    pr = subprocess.run([str(kiln), "plot", *logs, "--by-time", "--title",
                         "Reference CNN, seed 0: standard vs Selective Backprop", "--out", str(plot)],
                        capture_output=True, text=True)
    res = {"config": cfg, "date_utc": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
           "wall_s": time.monotonic() - T0, "workdir": str(work), "runs": runs, "summary": s, "verdicts": verdicts,
           "plot": str(plot.relative_to(ROOT)) if pr.returncode == 0 and plot.is_relative_to(ROOT) else
           (str(plot) if pr.returncode == 0 else None)}
    text = section(res)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results_selective.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (out_dir / "RESULTS_SELECTIVE.md").write_text("# Kiln Selective Backprop bench results\n\n" + text)
    if (out_dir / "RESULTS.md").exists():
        merge_section(out_dir / "RESULTS.md", SECTION, text)
    for name, ok in verdicts:
        print(f"{verdict(ok):4s}  {name}")
    print(f"report: {out_dir / 'RESULTS_SELECTIVE.md'}")


if __name__ == "__main__":
    main()
