#!/usr/bin/python3
"""Kiln vs PyTorch on the two transformers of issue 10 (protocol in bench/TRANSFORMERS.md), and
the reference CNN against the Kiln of a base commit (no regression), all in one run:

  vit   examples/fashion_vit.kiln vs bench/vit_peer.py: test accuracy after the same epochs
        (seeds 0..R-1, medians) and training images/s (Kiln at 2 threads against PyTorch's best
        of 1 and 2 threads; runs interleaved)
  lm    examples/fortunes_lm.kiln vs bench/lm_peer.py: validation loss after the same steps,
        training tokens/s, generation tokens/s at batch 1 with a KV cache near 16 and near 128
        positions of context, generation's peak RSS against training's
  cnn   examples/fashion_cnn.kiln, this build against the build of BASE: training images/s and
        batch-1 latency, fp32 and int8 (interleaved, medians)

usage: run_transformer_bench.py BUILD_DIR [--base REV] [--quick] [--only vit,lm,cnn]
Writes bench/RESULTS_TRANSFORMERS.md and bench/results_transformers.json (a quick run writes to
the scratch directory it prints).
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = "/usr/bin/python3"
T0 = time.monotonic()


def log(msg):
    el = int(time.monotonic() - T0)
    print(f"[transformers {el // 60:02d}:{el % 60:02d}] {msg}", file=sys.stderr, flush=True)


def run_json(cmd, env=None):
    """Runs cmd, returns (the last JSON line it printed, the child's peak RSS in bytes)."""
    wrapper = ("import json,resource,subprocess,sys\n"
               "p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)\n"
               "sys.stdout.write(p.stdout)\n"
               "print(json.dumps({'__rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,"
               " '__rc': p.returncode}))\n")
    out = subprocess.run([PY, "-c", wrapper] + [str(c) for c in cmd], stdout=subprocess.PIPE, text=True,
                         env=env, check=True).stdout
    lines = [l for l in out.splitlines() if l.startswith("{")]
    meta = json.loads(lines[-1])
    if meta["__rc"] != 0:
        raise RuntimeError(f"{cmd[0]} failed ({meta['__rc']}): {' '.join(map(str, cmd))}")
    return json.loads(lines[-2]), meta["__rss"]


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------------------------------------- vit

def vit(kiln, scratch, epochs, reps, quick):
    res = {"epochs": epochs, "runs": []}
    limit = ["--train-limit", "6400"] if quick else []
    for seed in range(reps):
        out = scratch / f"vit_{seed}.safetensors"
        k, _ = run_json([kiln, "train", ROOT / "examples/fashion_vit.kiln", "--data", "fashion-mnist", "--epochs", epochs,
                         "--batch", 64, "--opt", "adamw", "--lr", "1e-3", "--wd", "0.01", "--schedule", "cosine",
                         "--warmup", 100, "--seed", seed, "--init-seed", seed, "--threads", 2, "--quiet", "--json",
                         "--out", out] + (["--steps", 100] if quick else []))
        t2, _ = run_json([PY, ROOT / "bench/vit_peer.py", "--threads", 2, "--seed", seed, "--epochs", epochs,
                          "--quiet"] + limit)
        t1, _ = run_json([PY, ROOT / "bench/vit_peer.py", "--threads", 1, "--seed", seed, "--epochs", 1,
                          "--train-limit", 6400, "--quiet"])   # throughput only: 100 steps
        run = {"seed": seed, "kiln_images_per_s": k["images_per_s"], "kiln_test_accuracy": k["test_accuracy"],
               "torch2_images_per_s": t2["images_per_s"], "torch2_test_accuracy": t2["test_accuracy"],
               "torch1_images_per_s": t1["images_per_s"]}
        res["runs"].append(run)
        log(f"vit seed {seed}: {run}")
    r = res["runs"]
    res["kiln_images_per_s"] = median([x["kiln_images_per_s"] for x in r])
    res["torch_best_images_per_s"] = max(median([x["torch2_images_per_s"] for x in r]),
                                         median([x["torch1_images_per_s"] for x in r]))
    res["speedup"] = res["kiln_images_per_s"] / res["torch_best_images_per_s"]
    res["kiln_test_accuracy"] = median([x["kiln_test_accuracy"] for x in r])
    res["torch_test_accuracy"] = median([x["torch2_test_accuracy"] for x in r])
    return res


# -------------------------------------------------------------------------------------------- lm

def lm(kiln, scratch, steps, reps, quick):
    corpus = scratch / "fortunes.txt"
    subprocess.run([ROOT / "scripts/fortunes-corpus", corpus], check=True)
    res = {"steps": steps, "runs": []}
    for seed in range(reps):
        out = scratch / f"lm_{seed}.safetensors"
        k, k_rss = run_json([kiln, "train", ROOT / "examples/fortunes_lm.kiln", "--data", f"text:{corpus}",
                             "--steps", steps, "--batch", 32, "--opt", "adamw", "--lr", "1e-3", "--wd", "0.01",
                             "--schedule", "cosine", "--warmup", 100, "--seed", seed, "--init-seed", seed,
                             "--threads", 2, "--quiet", "--json", "--out", out])
        t, t_rss = run_json([PY, ROOT / "bench/lm_peer.py", "--threads", 2, "--seed", seed, "--steps", steps,
                             "--eval-every", steps, "--rss", "--quiet"])
        kg, kg_rss = run_json([kiln, "generate", out, "--prompt", "A" * 8, "--tokens", 300, "--seed", seed,
                               "--json"])
        tg, tg_rss = run_json([PY, ROOT / "bench/lm_peer.py", "--generate", "--threads", 1, "--seed", seed,
                               "--quiet"])
        run = {"seed": seed, "kiln_val_loss": k["test_loss"], "torch_val_loss": t["val_loss"],
               "kiln_tokens_per_s": k["images_per_s"] * 128, "torch_tokens_per_s": t["tokens_per_s"],
               "kiln_train_rss": k_rss, "kiln_generate_rss": kg_rss,
               "kiln_gen_ms_ctx16": kg["ms_per_token_ctx16"], "kiln_gen_ms_ctx128": kg["ms_per_token_ctx_full"],
               "torch_gen_tokens_per_s_ctx16": tg.get("tokens_per_s_ctx16"),
               "torch_gen_tokens_per_s_ctx128": tg.get("tokens_per_s_ctx128"), "torch_train_rss": t_rss,
               "torch_generate_rss": tg_rss}
        res["runs"].append(run)
        log(f"lm seed {seed}: {run}")
    r = res["runs"]
    for key in r[0]:
        if key != "seed":
            res[key] = median([x[key] for x in r])
    res["val_loss_gap"] = res["kiln_val_loss"] / res["torch_val_loss"] - 1
    res["train_speedup"] = res["kiln_tokens_per_s"] / res["torch_tokens_per_s"]
    for c in ("16", "128"):
        kms = res[f"kiln_gen_ms_ctx{c}"]
        res[f"gen_speedup_ctx{c}"] = (1000.0 / kms) / res[f"torch_gen_tokens_per_s_ctx{c}"] if kms else None
    res["rss_ratio"] = res["kiln_generate_rss"] / res["kiln_train_rss"]
    return res


# ------------------------------------------------------------------------------------------- cnn

def build_base(rev, scratch):
    src = scratch / "base-src"
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--force", "--detach", src, rev], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b = scratch / "base-build"
    subprocess.run(["cmake", "-S", src, "-B", b, "-DCMAKE_BUILD_TYPE=Release"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", b, "-j2", "--target", "kiln_cli"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", src], check=False)
    return b / "kiln"


def cnn(kiln, base_kiln, scratch, reps, quick):
    steps = 100 if quick else 400
    res = {"base_steps": steps, "runs": []}
    tools = {"new": kiln, "base": base_kiln}
    models = {}
    for name, exe in tools.items():   # one model each, trained briefly, quantised by the same tool
        m = scratch / f"cnn_{name}.safetensors"
        run_json([exe, "train", ROOT / "examples/fashion_cnn.kiln", "--data", "fashion-mnist", "--epochs", 1,
                  "--max-steps", 50, "--threads", 2, "--quiet", "--json", "--out", m])
        q = scratch / f"cnn_{name}_int8.safetensors"
        subprocess.run([str(x) for x in (exe, "quantize", m, "--calib-data", "fashion-mnist", "--calib", 500, "--out", q)], check=True,
                       stdout=subprocess.DEVNULL)
        models[name] = (m, q)
    for rep in range(reps):
        for name, exe in tools.items():   # interleaved
            t, _ = run_json([exe, "train", ROOT / "examples/fashion_cnn.kiln", "--data", "fashion-mnist",
                             "--epochs", 1, "--max-steps", steps, "--batch", 64, "--threads", 2, "--quiet", "--json",
                             "--out", scratch / f"cnn_t_{name}.safetensors"])
            f, _ = run_json([exe, "bench", models[name][0], "--batch", 1, "--threads", 1, "--json"])
            q, _ = run_json([exe, "bench", models[name][1], "--batch", 1, "--threads", 1, "--json"])
            res["runs"].append({"tool": name, "rep": rep, "images_per_s": t["images_per_s"],
                                "fp32_p50_us": f["latency_p50_us"], "int8_p50_us": q["latency_p50_us"]})
            log(f"cnn {name} rep {rep}: {res['runs'][-1]}")
    for name in tools:
        r = [x for x in res["runs"] if x["tool"] == name]
        res[name] = {k: median([x[k] for x in r]) for k in ("images_per_s", "fp32_p50_us", "int8_p50_us")}
    n, b = res["new"], res["base"]
    res["train_ratio"] = n["images_per_s"] / b["images_per_s"]
    res["fp32_latency_ratio"] = n["fp32_p50_us"] / b["fp32_p50_us"]
    res["int8_latency_ratio"] = n["int8_p50_us"] / b["int8_p50_us"]
    return res


# ---------------------------------------------------------------------------------------- report

def fmt(x, spec=".3g"):
    return "n/a" if x is None else format(x, spec)


def report(r):
    lines = [f"# Transformers (issue 10) and the CNN against {r['base']}", "",
             f"CPU: {r['cpu']} ({os.cpu_count()} cores, shared machine). {r['date']}. "
             f"{'QUICK RUN: not the protocol. ' if r['quick'] else ''}Medians over the seeds/repetitions listed; "
             "every figure from `bench/run_transformer_bench.py`.", ""]
    if "vit" in r:
        v = r["vit"]
        lines += ["## ViT on Fashion-MNIST", "",
                  "| | Kiln | PyTorch | target | holds |", "|---|---|---|---|---|",
                  f"| test accuracy after {v['epochs']} epochs | {fmt(100 * v['kiln_test_accuracy'], '.2f')}% | "
                  f"{fmt(100 * v['torch_test_accuracy'], '.2f')}% | within 1 point | "
                  f"{abs(v['kiln_test_accuracy'] - v['torch_test_accuracy']) <= 0.01} |",
                  f"| training images/s | {fmt(v['kiln_images_per_s'], '.0f')} | {fmt(v['torch_best_images_per_s'], '.0f')}"
                  f" (best of 1, 2 threads) | >= 2x | {v['speedup'] >= 2} ({v['speedup']:.2f}x) |", ""]
    if "lm" in r:
        m = r["lm"]
        lines += ["## Byte-level LM on fortunes", "",
                  "| | Kiln | PyTorch | target | holds |", "|---|---|---|---|---|",
                  f"| validation loss after {m['steps']} steps | {fmt(m['kiln_val_loss'], '.4f')} | "
                  f"{fmt(m['torch_val_loss'], '.4f')} | within 2% | {m['val_loss_gap'] <= 0.02} "
                  f"({100 * m['val_loss_gap']:+.1f}%) |",
                  f"| training tokens/s | {fmt(m['kiln_tokens_per_s'], '.0f')} | {fmt(m['torch_tokens_per_s'], '.0f')} | "
                  f">= 2x | {m['train_speedup'] >= 2} ({m['train_speedup']:.2f}x) |"]
        for c in ("16", "128"):
            kms, sp = m[f"kiln_gen_ms_ctx{c}"], m[f"gen_speedup_ctx{c}"]
            lines.append(f"| generation tokens/s near {c} of context | {fmt(1000 / kms if kms else None, '.0f')} | "
                         f"{fmt(m[f'torch_gen_tokens_per_s_ctx{c}'], '.0f')} | >= 3x | "
                         f"{sp is not None and sp >= 3} ({fmt(sp, '.2f')}x) |")
        lines += [f"| generation peak RSS / training peak RSS | {fmt(m['kiln_generate_rss'] / 2**20, '.1f')} MiB / "
                  f"{fmt(m['kiln_train_rss'] / 2**20, '.1f')} MiB | | <= 1/10 | {m['rss_ratio'] <= 0.1} "
                  f"(1/{1 / m['rss_ratio']:.1f}) |", ""]
    if "cnn" in r:
        c = r["cnn"]
        lines += [f"## Reference CNN: this build against {r['base']}", "",
                  "| | this build | base | ratio | within 5% |", "|---|---|---|---|---|",
                  f"| training images/s | {fmt(c['new']['images_per_s'], '.0f')} | {fmt(c['base']['images_per_s'], '.0f')} | "
                  f"{c['train_ratio']:.3f} | {c['train_ratio'] >= 0.95} |",
                  f"| batch-1 fp32 p50 (us) | {fmt(c['new']['fp32_p50_us'], '.1f')} | {fmt(c['base']['fp32_p50_us'], '.1f')} | "
                  f"{c['fp32_latency_ratio']:.3f} | {c['fp32_latency_ratio'] <= 1.05} |",
                  f"| batch-1 int8 p50 (us) | {fmt(c['new']['int8_p50_us'], '.1f')} | {fmt(c['base']['int8_p50_us'], '.1f')} | "
                  f"{c['int8_latency_ratio']:.3f} | {c['int8_latency_ratio'] <= 1.05} |", ""]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--base", default="77e4299", help="the commit the CNN is compared against")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="vit,lm,cnn")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--vit-epochs", type=int, default=5)
    ap.add_argument("--lm-steps", type=int, default=2000)
    a = ap.parse_args()
    kiln = Path(a.build).resolve() / "kiln"
    scratch = Path(tempfile.mkdtemp(prefix="kiln-transformers-"))
    reps = 1 if a.quick else a.reps
    r = {"cpu": cpu_name(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": a.quick,
         "base": a.base}
    only = a.only.split(",")
    if "vit" in only:
        r["vit"] = vit(kiln, scratch, 1 if a.quick else a.vit_epochs, reps, a.quick)
    if "lm" in only:
        r["lm"] = lm(kiln, scratch, 200 if a.quick else a.lm_steps, reps, a.quick)
    if "cnn" in only:
        r["cnn"] = cnn(kiln, build_base(a.base, scratch), scratch, reps, a.quick)
    out = scratch if a.quick or a.only != "vit,lm,cnn" else ROOT / "bench"
    (out / "results_transformers.json").write_text(json.dumps(r, indent=1) + "\n")
    (out / "RESULTS_TRANSFORMERS.md").write_text(report(r))
    log(f"wrote {out / 'RESULTS_TRANSFORMERS.md'}")
    print(report(r))


if __name__ == "__main__":
    main()
