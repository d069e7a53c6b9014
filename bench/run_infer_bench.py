#!/usr/bin/python3
"""Kiln inference bench (issue 3): accuracy of int8 against fp32, batch-1 latency on one thread
against PyTorch (eager, frozen TorchScript, int8 on the onednn and qnnpack engines) and ONNX
Runtime (onnxruntime-node), memory of an inference process against a training process, and
model file sizes, all on the reference CNN (examples/fashion_cnn.kiln) with the very same weights.

usage: run_infer_bench.py BUILD_DIR [MODEL.safetensors]   (normally stage 2 of `make bench`)
       run_infer_bench.py --merge-only                    re-insert RESULTS_INFER.md's section
                                                          into RESULTS.md (after run_bench.py
                                                          has regenerated it)

Without MODEL, the bench trains its own: `kiln train examples/fashion_cnn.kiln --epochs 5`.
Writes RESULTS_INFER.md and results_infer.json, and replaces (or appends) the section
"## Inference (issue 3)" of RESULTS.md in the same directory.

Environment:
  KILN_INFER_MODEL=PATH    fp32 model to measure instead of training one (as the MODEL argument)
  KILN_INFER_EPOCHS=N      epochs of the bench's own model (default 5; quick mode 1)
  KILN_INFER_REPS=N        latency repetitions, interleaved across tools (default 3; quick 1)
  KILN_INFER_RUNS=N        timed single-image runs per latency measurement (default 2000)
  KILN_INFER_WARMUP=N      untimed runs before them (default 200)
  KILN_BENCH_QUICK=1 or KILN_INFER_QUICK=1   1-epoch model, 1 repetition
  KILN_BENCH_IDLE_WAIT_S   most seconds each run waits for idle CPUs (default 60; 300 in all)
  KILN_BENCH_RETRIES=N     repeats of a latency run disturbed by other processes (default 2)
  KILN_BENCH_OUT=DIR       where the results go. Default: bench/ for a standard run, the scratch
                           directory for a quick or overridden one (printed).
"""
import json
import os
import re
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as rb   # noqa: E402  (shared helpers: run_proc, wait_idle, machine_info, log)

ROOT = rb.ROOT
PY = rb.PY
PEER = ROOT / "bench" / "infer_peer.py"
ORT_PEER = ROOT / "bench" / "ort_peer.js"
SPEC = ROOT / "examples" / "fashion_cnn.kiln"
SECTION = "## Inference (issue 3)"
CHECK_N = 16                 # test images whose logits are compared across tools
LOGIT_TOL = 1e-4             # fp32 tools must agree with Kiln's fp32 logits within this (max abs)
TARGETS = {"acc_points": 0.5, "eager": 3.0, "int8_speedup": 1.8, "rss_fraction": 0.10, "size_ratio": 3.8}
TORCH_FP32 = ["eager", "script", "trace", "ofi"]
TORCH_INT8 = {"onednn": ["int8-onednn", "int8-onednn-jit"], "qnnpack": ["int8-qnnpack", "int8-qnnpack-jit"]}
LABELS = {"kiln-fp32": "Kiln fp32", "kiln-int8": "Kiln int8",
          "kiln-int8-no-amx": "Kiln int8, `--no-amx` (AVX-512 VNNI only, as CPUs without AMX run it; no target)",
          "eager": "PyTorch eager (`torch.inference_mode()`)",
          "script": "TorchScript `freeze(script(model).eval())`",
          "trace": "TorchScript `freeze(trace(model).eval())`",
          "ofi": "TorchScript `optimize_for_inference(script(model))` (extra)",
          "int8-onednn": "PyTorch int8, onednn engine, eager",
          "int8-onednn-jit": "PyTorch int8, onednn engine, traced + frozen",
          "int8-qnnpack": "PyTorch int8, qnnpack engine, eager",
          "int8-qnnpack-jit": "PyTorch int8, qnnpack engine, traced + frozen",
          "ort-api": "ONNX Runtime (node), `await session.run()`",
          "ort-binding": "ONNX Runtime (node), native session run synchronously"}
log = rb.log


def env_int(name, default):
    return rb.env_int(name, default)


def median(xs):
    return rb.median(xs)


def verdict(ok):
    return rb.verdict(ok)


def f1(x, spec=".1f"):
    return "n/a" if x is None else format(x, spec)


def load_npy_f32(path):
    import numpy as np
    return np.load(path).astype("float32")


def safetensors_meta(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)).get("__metadata__", {})


# Peak RSS of a child: Linux's ru_maxrss of a process includes the high-water RSS of the process
# it was forked (or vforked) from, up to its exec, so wait4 on a child of this Python process
# reports at least this process's own RSS (tens of MiB once numpy is loaded), more than a whole
# `kiln bench` process uses. Every child therefore runs under this launcher: a small C program
# that fork()s and execs the command and writes the wait4 ru_maxrss of that grandchild (whose
# pre-exec image is the launcher's, about 1 MiB) to a file.
RSS_LAUNCHER_C = r"""
#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: rss_launcher OUT_FILE COMMAND [ARGS]\n");
        return 127;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 127;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0)
        if (errno != EINTR) {
            perror("wait4");
            return 127;
        }
    FILE *f = fopen(argv[1], "w");
    if (f) {
        fprintf(f, "%ld\n", ru.ru_maxrss);
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
"""
_launcher = None


def rss_launcher(work, res):
    global _launcher
    if _launcher is None:
        import subprocess
        src, exe = work / "rss_launcher.c", work / "rss_launcher"
        src.write_text(RSS_LAUNCHER_C)
        cc = os.environ.get("CC", "cc")
        r = subprocess.run([cc, "-O2", "-o", str(exe), str(src)], capture_output=True, text=True)
        if r.returncode != 0:
            res["errors"].append(f"could not build the RSS launcher with {cc} ({r.stderr.strip()[-200:]}); peak RSS "
                                 "figures are wait4's, which include the bench process's own RSS")
            _launcher = False
        else:
            _launcher = exe
    return _launcher


def proc(argv, work, tag, res, retries=0):
    """rb.run_proc after waiting for idle CPUs; repeats a run during which other processes used
    more than rb.RETRY_OTHER_CPUS CPUs (at most `retries` times). Records the command line."""
    discarded = []
    for attempt in range(retries + 1):
        waited, _ = rb.wait_idle(res["config"]["idle_wait_s"])
        t = f"{tag}-{attempt}" if attempt else tag
        launcher, rss_file = rss_launcher(work, res), work / f"{t}.maxrss"
        r = rb.run_proc(([launcher, rss_file] if launcher else []) + list(argv), work, t)
        if launcher:
            r["argv"] = r["argv"][2:]
            r["peak_rss_bytes_incl_fork_parent"] = r["peak_rss_bytes"]
            r["peak_rss_bytes"] = int(rss_file.read_text()) * 1024
        r["waited_for_idle_s"] = waited
        if r["other_cpus"] <= rb.RETRY_OTHER_CPUS or attempt == retries:
            break
        log(f"other processes used {r['other_cpus']:.2f} CPUs during {tag}; repeating it")
        discarded.append({k: r[k] for k in ("other_cpus", "wall_s")})
    r["discarded_attempts"] = discarded
    r["json"] = rb.last_json(r["stdout"])
    res["commands"].append(r["argv"])
    return r


# ---------------------------------------------------------------- stages

def stage_models(kiln, work, res, model_arg):
    """Trains (or takes) the fp32 model, measures the training process, quantises to int8."""
    cfg = res["config"]
    train_argv = [kiln, "train", SPEC, "--epochs", cfg["epochs"], "--quiet", "--json"]
    if model_arg:
        fp32 = Path(model_arg).resolve()
        # a training process all the same, for its memory figures (one epoch: its RSS is steady)
        tr = proc(train_argv[:3] + ["--epochs", 1, "--quiet", "--json", "--out", work / "mem-train.safetensors"],
                  work, "train", res)
    else:
        fp32 = work / "cnn_fp32.safetensors"
        log(f"training the reference CNN for {cfg['epochs']} epoch(s)")
        tr = proc(train_argv + ["--out", fp32], work, "train", res)
    tj = tr["json"]
    res["training"] = {"argv": tr["argv"], "peak_rss_bytes": tr["peak_rss_bytes"], "wall_s": tr["wall_s"],
                       "activation_bytes_per_example": tj.get("activation_bytes_per_example"),
                       "test_accuracy": tj.get("test_accuracy"), "images_per_s": tj.get("images_per_s"),
                       "other_cpus": tr["other_cpus"], "model_given": bool(model_arg)}
    meta = safetensors_meta(fp32)
    res["model"] = {"fp32": str(fp32), "given": bool(model_arg),
                    "train_metadata": {k: v for k, v in meta.items() if k.startswith("kiln.train.")}}
    int8 = work / "cnn_int8.safetensors"
    q = proc([kiln, "quantize", fp32, "--calib-data", "fashion-mnist", "--calib", 1000, "--out", int8, "--json"],
             work, "quantize", res)
    res["model"].update(int8=str(int8), quantize=q["json"])
    log(f"model {fp32} ({fp32.stat().st_size} B), int8 {int8.stat().st_size} B, "
        f"training peak RSS {tr['peak_rss_bytes'] / 2**20:.1f} MiB")
    return fp32, int8


def stage_accuracy(kiln, fp32, int8, work, res):
    acc = {}
    for key, m in (("kiln-fp32", fp32), ("kiln-int8", int8)):
        r = proc([kiln, "eval", m, "--json"], work, f"eval-{key}", res)
        acc[key] = r["json"]["accuracy"]
    for v in ["eager"] + [vs[0] for vs in TORCH_INT8.values()]:
        try:
            r = proc([PY, PEER, "eval", fp32, "--variant", v], work, f"eval-{v}", res)
            acc[v] = r["json"]["accuracy"]
        except rb.RunFailed as e:
            acc[v] = None
            res["errors"].append(f"PyTorch eval {v}: {e}")
    d = None if acc["kiln-int8"] is None else 100 * (acc["kiln-fp32"] - acc["kiln-int8"])
    res["accuracy"] = {"test_accuracy": acc, "kiln_fp32_minus_int8_points": d,
                       "pass": d is not None and d <= TARGETS["acc_points"] + 1e-9}
    log(f"test accuracy: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in acc.items() if v is not None))


def have_ort(res):
    if not (ROOT / "bench" / "node_modules" / "onnxruntime-node").is_dir():
        res["ort"] = {"available": False, "reason": "onnxruntime-node is not installed in bench/ "
                      "(`cd bench && npm ci --ignore-scripts`; scripts/bench does this when npm is there)"}
        return False
    import shutil
    if not shutil.which("node"):
        res["ort"] = {"available": False, "reason": "node is not on PATH"}
        return False
    return True


def stage_agreement(kiln, fp32, int8, work, res):
    """Logits of the first CHECK_N test images from every tool against Kiln's fp32 logits."""
    import numpy as np
    x = peer_test_images(work, res)
    np.save(work / "check_x.npy", x)
    x.tofile(work / "check_x.f32")
    outs = {}
    for key, m in (("kiln-fp32", fp32), ("kiln-int8", int8)):
        proc([kiln, "run", m, work / "check_x.npy", "--output", work / f"check_{key}.npy", "--json"], work,
             f"run-{key}", res)
        outs[key] = load_npy_f32(work / f"check_{key}.npy").reshape(CHECK_N, -1)
    for v in TORCH_FP32 + [vs[0] for vs in TORCH_INT8.values()]:
        try:
            proc([PY, PEER, "logits", fp32, "--variant", v, "--input", work / "check_x.npy",
                  "--out", work / f"check_{v}.npy"], work, f"logits-{v}", res)
            outs[v] = load_npy_f32(work / f"check_{v}.npy").reshape(CHECK_N, -1)
        except rb.RunFailed as e:
            res["errors"].append(f"PyTorch logits {v}: {e}")
    onnx = work / "cnn_fp32.onnx"
    try:
        r = proc([PY, PEER, "export-onnx", fp32, "--out", onnx, "--opset", 13], work, "export-onnx", res)
        res["onnx"] = r["json"]
    except rb.RunFailed as e:
        res["errors"].append(f"ONNX export: {e}")
        onnx = None
    if onnx and have_ort(res):
        try:
            r = proc(["node", ORT_PEER, "logits", onnx, work / "check_x.f32", work / "check_ort.f32"], work,
                     "logits-ort", res)
            outs["ort"] = np.fromfile(work / "check_ort.f32", dtype="<f4").reshape(CHECK_N, -1)
            res["ort"] = {"available": True, "versions": r["json"].get("onnxruntime")}
        except rb.RunFailed as e:
            res["ort"] = {"available": False, "reason": f"ort_peer.js failed: {e}"}
    ref = outs["kiln-fp32"]
    agree = {}
    for k, y in outs.items():
        if k == "kiln-fp32":
            continue
        fp32_tool = not (k.startswith("int8") or k == "kiln-int8")
        diff = float(np.abs(y - ref).max())
        agree[k] = {"max_abs_diff_vs_kiln_fp32": diff,
                    "top1_agreement_vs_kiln_fp32": float((y.argmax(1) == ref.argmax(1)).mean()),
                    "fp32": fp32_tool, "pass": diff <= LOGIT_TOL if fp32_tool else None}
    res["agreement"] = {"images": CHECK_N, "tolerance": LOGIT_TOL, "max_abs_logit": float(np.abs(ref).max()),
                        "tools": agree}
    log("logits vs Kiln fp32 (max abs): " + ", ".join(f"{k} {v['max_abs_diff_vs_kiln_fp32']:.2e}"
                                                      for k, v in agree.items()))
    return onnx if res.get("ort", {}).get("available") else None


def peer_test_images(work, res):
    """The first CHECK_N Fashion-MNIST test images as float32 /255, shape (N, 1, 28, 28)."""
    import gzip
    import numpy as np
    with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", "rb") as f:
        raw = f.read(16 + CHECK_N * 784)
    if int.from_bytes(raw[0:4], "big") != 0x803:
        raise SystemExit("t10k-images-idx3-ubyte.gz: not an IDX image file")
    img = np.frombuffer(raw, dtype=np.uint8, offset=16, count=CHECK_N * 784)
    return (img.astype(np.float32) / np.float32(255)).reshape(CHECK_N, 1, 28, 28)


def stage_latency(kiln, fp32, int8, onnx, work, res):
    cfg = res["config"]
    R, W = cfg["runs"], cfg["warmup"]
    jobs = [("kiln-fp32", [kiln, "bench", fp32, "--batch", 1, "--threads", 1, "--runs", R, "--warmup", W, "--json"]),
            ("kiln-int8", [kiln, "bench", int8, "--batch", 1, "--threads", 1, "--runs", R, "--warmup", W, "--json"]),
            ("kiln-int8-no-amx", [kiln, "bench", int8, "--batch", 1, "--threads", 1, "--runs", R, "--warmup", W,
                                  "--no-amx", "--json"]),
            ("torch-fp32", [PY, PEER, "latency", fp32, "--variants", ",".join(TORCH_FP32), "--runs", R,
                            "--warmup", W, "--threads", 1])]
    jobs += [(f"torch-{e}", [PY, PEER, "latency", fp32, "--variants", ",".join(vs), "--runs", R, "--warmup", W,
                             "--threads", 1]) for e, vs in TORCH_INT8.items()]
    if onnx:
        jobs.append(("ort", ["node", ORT_PEER, "latency", onnx, "--runs", R, "--warmup", W]))
    runs = {}   # key -> list over reps of {"p50", "p99", ...}
    procs = []
    for rep in range(cfg["reps"]):
        for name, argv in jobs:
            try:
                r = proc(argv, work, f"lat-{name}-{rep}", res, retries=cfg["retries"])
            except rb.RunFailed as e:
                res["errors"].append(f"latency {name} rep {rep + 1}: {e}")
                log(f"latency {name} rep {rep + 1} FAILED: {e}")
                continue
            j = r["json"]
            procs.append({"job": name, "rep": rep, "peak_rss_bytes": r["peak_rss_bytes"], "other_cpus": r["other_cpus"],
                          "wall_s": r["wall_s"], "discarded_attempts": r["discarded_attempts"],
                          "waited_for_idle_s": r["waited_for_idle_s"], "json": j})
            if name.startswith("kiln"):
                items = {name: j}
            elif name == "ort":
                items = {f"ort-{k}": v for k, v in j["variants"].items()}
            else:
                items = j["variants"]
            for k, v in items.items():
                runs.setdefault(k, []).append({"p50": v["latency_p50_us"], "p99": v["latency_p99_us"],
                                               "other_cpus": r["other_cpus"]})
            log(f"latency rep {rep + 1} {name}: " + ", ".join(f"{k} {v['latency_p50_us']:.1f} us"
                                                              for k, v in items.items()))
    lat = {k: {"p50_us": median([x["p50"] for x in v]), "p99_us": median([x["p99"] for x in v]),
               "p50_runs_us": [x["p50"] for x in v], "p99_runs_us": [x["p99"] for x in v]} for k, v in runs.items()}
    res["latency"] = lat
    res["latency_processes"] = procs

    def p50(k):
        return lat.get(k, {}).get("p50_us")

    kf, ki = p50("kiln-fp32"), p50("kiln-int8")
    ts = [k for k in ("script", "trace") if p50(k)]
    ts_best = min(ts, key=p50) if ts else None
    i8 = [k for vs in TORCH_INT8.values() for k in vs if p50(k)]
    i8_best = min(i8, key=p50) if i8 else None
    i8_eager = [k for k in (vs[0] for vs in TORCH_INT8.values()) if p50(k)]
    i8_eager_best = min(i8_eager, key=p50) if i8_eager else None
    ort = [k for k in ("ort-api", "ort-binding") if p50(k)]
    ort_best = min(ort, key=p50) if ort else None

    def ratio(a, b):
        return None if a is None or b is None else a / b

    cmp = {"eager_over_kiln_fp32": ratio(p50("eager"), kf),
           "torchscript_best": ts_best, "torchscript_over_kiln_fp32": ratio(p50(ts_best), kf),
           "ofi_over_kiln_fp32": ratio(p50("ofi"), kf),
           "kiln_fp32_over_kiln_int8": ratio(kf, ki),
           "kiln_fp32_over_kiln_int8_no_amx": ratio(kf, p50("kiln-int8-no-amx")),
           "torch_int8_best": i8_best, "torch_int8_over_kiln_int8": ratio(p50(i8_best), ki),
           "torch_int8_eager_best": i8_eager_best, "torch_int8_eager_over_kiln_int8": ratio(p50(i8_eager_best), ki),
           "torch_int8_by_engine": {e: min((p50(k) for k in vs if p50(k)), default=None)
                                    for e, vs in TORCH_INT8.items()},
           "ort_best": ort_best, "ort_over_kiln_fp32": ratio(p50(ort_best), kf),
           "ort_api_over_kiln_fp32": ratio(p50("ort-api"), kf), "ort_over_kiln_int8": ratio(p50(ort_best), ki)}
    cmp["pass"] = {
        "eager": None if cmp["eager_over_kiln_fp32"] is None else cmp["eager_over_kiln_fp32"] >= TARGETS["eager"],
        "torchscript": None if cmp["torchscript_over_kiln_fp32"] is None else cmp["torchscript_over_kiln_fp32"] > 1,
        "int8_speedup": None if cmp["kiln_fp32_over_kiln_int8"] is None else
        cmp["kiln_fp32_over_kiln_int8"] >= TARGETS["int8_speedup"],
        "torch_int8": None if cmp["torch_int8_over_kiln_int8"] is None else cmp["torch_int8_over_kiln_int8"] > 1,
        "ort": None if cmp["ort_over_kiln_fp32"] is None else cmp["ort_over_kiln_fp32"] > 1,
        "ort_int8": None if cmp["ort_over_kiln_int8"] is None else cmp["ort_over_kiln_int8"] > 1}
    if kf is None:
        cmp["pass"] = {k: False for k in cmp["pass"]}
    res["latency_comparison"] = cmp


def stage_memory_size(fp32, int8, res):
    procs = res.get("latency_processes", [])

    def kiln_bench(job, key):
        xs = [p["json"][key] for p in procs if p["job"] == job and p["json"].get(key) is not None]
        return max(xs) if xs else None

    def wait4_rss(job):
        return rb.maxn(p["peak_rss_bytes"] for p in procs if p["job"] == job)

    tr = res["training"]
    mem = {"kiln_fp32_arena_bytes": kiln_bench("kiln-fp32", "arena_bytes"),
           "kiln_fp32_scratch_bytes": kiln_bench("kiln-fp32", "scratch_bytes"),
           "kiln_int8_arena_bytes": kiln_bench("kiln-int8", "arena_bytes"),
           "kiln_int8_scratch_bytes": kiln_bench("kiln-int8", "scratch_bytes"),
           "train_activation_bytes_per_example": tr["activation_bytes_per_example"],
           "kiln_fp32_bench_peak_rss_bytes": wait4_rss("kiln-fp32"),
           "kiln_fp32_bench_self_reported_rss_bytes": kiln_bench("kiln-fp32", "peak_rss_bytes"),
           "kiln_int8_bench_peak_rss_bytes": wait4_rss("kiln-int8"),
           "train_peak_rss_bytes": tr["peak_rss_bytes"],
           "torch_fp32_peer_peak_rss_bytes": wait4_rss("torch-fp32"),
           "ort_peer_peak_rss_bytes": wait4_rss("ort")}
    inf, trn = mem["kiln_fp32_bench_peak_rss_bytes"], mem["train_peak_rss_bytes"]
    mem["rss_fraction"] = None if not inf or not trn else inf / trn
    mem["pass"] = None if mem["rss_fraction"] is None else mem["rss_fraction"] <= TARGETS["rss_fraction"]
    res["memory"] = mem
    b32, b8 = Path(fp32).stat().st_size, Path(int8).stat().st_size
    res["size"] = {"fp32_bytes": b32, "int8_bytes": b8, "ratio": b32 / b8, "pass": b32 / b8 >= TARGETS["size_ratio"]}


# ---------------------------------------------------------------- report

def fmt_b(b):
    return "n/a" if b is None else f"{b:,} B ({b / 2**20:.2f} MiB)" if b >= 2**20 else f"{b:,} B ({b / 1024:.1f} KiB)"


def ratio_s(x):
    return "n/a" if x is None else f"{x:.2f}x"


def section(res):
    m, c = res["machine"], res["config"]
    L = [SECTION, ""]
    L.append("Generated by `bench/run_infer_bench.py` (stage 2 of `make bench`, after `bench/run_bench.py`); "
             "the same text is in `bench/RESULTS_INFER.md`, all figures in `bench/results_infer.json`.\n")
    if res["nonstandard"]:
        L.append(f"> **Not an acceptance run**: {res['nonstandard']}.\n")
    L.append(f"* Date: {m['date_utc']}; wall time {res['bench_wall_s'] / 60:.1f} min; CPU {m.get('model_name', '?')} "
             f"({m['nproc']} CPUs, {m.get('hypervisor_vendor', 'no')} hypervisor); Kiln {m.get('kiln_commit', '?')}; "
             f"PyTorch {m.get('torch_version', '?')} (`{PY}`); ONNX Runtime "
             + (f"{res['ort'].get('versions', {}).get('node', '?')} (npm onnxruntime-node, node "
                f"{res.get('node_version', '?')})" if res.get("ort", {}).get("available")
                else f"not run: {res.get('ort', {}).get('reason', '?')}"))
    if m["env"]:
        L.append("* Environment: " + ", ".join(f"`{k}={v}`" for k, v in sorted(m["env"].items())))
    md, tr = res["model"], res["training"]
    meta = md["train_metadata"]
    L.append(f"* Model: " + (f"given, `{md['fp32']}`" if md["given"] else
                             f"trained by the bench, `kiln train examples/fashion_cnn.kiln --epochs {c['epochs']}`")
             + (f" ({meta.get('kiln.train.epochs', '?')} epoch(s), {meta.get('kiln.train.optimizer', '?')} lr "
                f"{meta.get('kiln.train.lr', '?')}, seed {meta.get('kiln.train.seed', '?')})" if meta else "")
             + f"; int8 by `kiln quantize MODEL --calib-data fashion-mnist --calib 1000` (calibration chosen: "
             f"{(md.get('quantize') or {}).get('calibration', '?')})")
    L.append(f"* Latency: batch 1, one thread, input `x[i] = (i % 251) / 251` (the one `kiln bench` uses); each "
             f"measurement {c['warmup']} untimed then {c['runs']} individually timed runs in one process; "
             f"{c['reps']} repetition(s) interleaved across all tools (Kiln fp32, Kiln int8, PyTorch fp32, PyTorch "
             "int8 onednn, PyTorch int8 qnnpack, ONNX Runtime, repeat); the table gives the median over repetitions "
             "of each measurement's p50 and p99")
    oc = [p["other_cpus"] for p in res.get("latency_processes", [])]
    if oc:
        L.append(f"* Other processes' CPU use during the latency runs: at most {max(oc):.2f} CPUs"
                 + (" (**the machine was shared; figures may be depressed**)" if max(oc) > 0.10 else
                    " (the machine was otherwise idle)")
                 + f"; {sum(len(p['discarded_attempts']) for p in res['latency_processes'])} run(s) repeated for it")
    L.append("")

    s = res["summary"]
    L.append("### Targets\n")
    L.append("| target | measured | result |")
    L.append("|---|---|---|")
    for name, measured, ok in s:
        L.append(f"| {name} | {measured} | {verdict(ok)} |")
    L.append("")

    lat, cmp = res.get("latency", {}), res.get("latency_comparison", {})
    kf = lat.get("kiln-fp32", {}).get("p50_us")
    ki = lat.get("kiln-int8", {}).get("p50_us")
    L.append("### Latency, batch 1, one thread (microseconds)\n")
    L.append("| runtime | p50 | p99 | p50 / Kiln fp32 p50 | p50 / Kiln int8 p50 | p50 per repetition |")
    L.append("|---|---:|---:|---:|---:|---|")
    for k in ["kiln-fp32", "kiln-int8", "kiln-int8-no-amx"] + TORCH_FP32 + [v for vs in TORCH_INT8.values() for v in vs] + \
            ["ort-api", "ort-binding"]:
        if k not in lat:
            continue
        v = lat[k]
        L.append(f"| {LABELS[k]} | {f1(v['p50_us'])} | {f1(v['p99_us'])} | "
                 f"{ratio_s(None if not kf else v['p50_us'] / kf)} | {ratio_s(None if not ki else v['p50_us'] / ki)} | "
                 + ", ".join(f1(x) for x in v["p50_runs_us"]) + " |")
    L.append("")
    L.append("Ratios above 1 mean Kiln is faster. PyTorch runs with `torch.set_num_threads(1)` and one inter-op thread, "
             "every variant under `torch.inference_mode()`; int8 is eager-mode static post-training quantisation "
             "(`torch.ao.quantization`: QuantStub/DeQuantStub, conv+relu and linear+relu fused, the engine's default "
             "qconfig, 1000 calibration images from a seeded permutation of the training set; fbgemm/x86 are absent "
             "from Debian's build). The PyTorch int8 target is judged against the fastest int8 configuration measured "
             "(eager or traced + frozen, either engine); `optimize_for_inference` is an extra, not a target. ONNX "
             "Runtime runs the model exported by `torch.onnx.export` (opset 13) with intraOpNumThreads=1, "
             "interOpNumThreads=1, sequential execution, all graph optimisations; `session.run()` is the public "
             "API (a Promise and an event-loop turn per call), the native-session row calls the binding the API "
             "wraps synchronously (ORT's own run plus the N-API crossing); the target is judged against the faster.\n")

    a = res["accuracy"]["test_accuracy"]
    L.append("### Accuracy (Fashion-MNIST test set, 10,000 images, the same weights everywhere)\n")
    L.append("| model | Kiln | PyTorch |")
    L.append("|---|---:|---:|")
    L.append(f"| fp32 | {rb.fmt_pct(a.get('kiln-fp32'))} | {rb.fmt_pct(a.get('eager'))} (eager) |")
    L.append(f"| int8 | {rb.fmt_pct(a.get('kiln-int8'))} | onednn {rb.fmt_pct(a.get('int8-onednn'))}, "
             f"qnnpack {rb.fmt_pct(a.get('int8-qnnpack'))} |")
    L.append("")

    ag = res.get("agreement")
    if ag:
        L.append(f"### Outputs against Kiln fp32 (logits of the first {ag['images']} test images; largest |logit| "
                 f"{ag['max_abs_logit']:.2f})\n")
        L.append("| runtime | max abs difference | same top-1 | within 1e-4 (fp32 runtimes) |")
        L.append("|---|---:|---:|---|")
        for k, v in ag["tools"].items():
            name = LABELS.get(k, "ONNX Runtime (node)" if k == "ort" else k)
            L.append(f"| {name} | {v['max_abs_diff_vs_kiln_fp32']:.2e} | {100 * v['top1_agreement_vs_kiln_fp32']:.0f}% | "
                     f"{verdict(v['pass']) if v['fp32'] else 'n/a (int8)'} |")
        L.append("")

    mem = res["memory"]
    L.append("### Memory\n")
    L.append("| | bytes |")
    L.append("|---|---:|")
    L.append(f"| Kiln fp32 inference arena, batch 1 (`kiln bench --json` arena_bytes) | {fmt_b(mem['kiln_fp32_arena_bytes'])} |")
    L.append(f"| Kiln fp32 inference scratch, batch 1 (im2col etc.; scratch_bytes) | {fmt_b(mem['kiln_fp32_scratch_bytes'])} |")
    L.append(f"| Kiln int8 inference arena / scratch, batch 1 | {fmt_b(mem['kiln_int8_arena_bytes'])} / "
             f"{fmt_b(mem['kiln_int8_scratch_bytes'])} |")
    L.append(f"| activation bytes per example training keeps (`kiln train --json`) | "
             f"{fmt_b(mem['train_activation_bytes_per_example'])} |")
    L.append(f"| peak RSS, `kiln bench` fp32 process (wait4 ru_maxrss) | {fmt_b(mem['kiln_fp32_bench_peak_rss_bytes'])} |")
    L.append(f"| peak RSS, `kiln bench` int8 process | {fmt_b(mem['kiln_int8_bench_peak_rss_bytes'])} |")
    which = "a 1-epoch run for this figure only" if tr["model_given"] else "the run that trained the model"
    L.append(f"| peak RSS, `kiln train` process ({which}; batch 64, 2 threads; wait4 ru_maxrss) | "
             f"{fmt_b(mem['train_peak_rss_bytes'])} |")
    L.append(f"| peak RSS, PyTorch fp32 latency process (for comparison) | {fmt_b(mem['torch_fp32_peer_peak_rss_bytes'])} |")
    L.append(f"| peak RSS, ONNX Runtime latency process (node, for comparison) | {fmt_b(mem['ort_peer_peak_rss_bytes'])} |")
    L.append("")
    sz = res["size"]
    L.append("### Model files\n")
    L.append(f"fp32 {sz['fp32_bytes']:,} B, int8 {sz['int8_bytes']:,} B: {sz['ratio']:.2f}x smaller"
             + (f"; the ONNX export is {res['onnx']['bytes']:,} B" if res.get("onnx") else "") + ".\n")
    if res["errors"]:
        L.append("### Problems\n")
        for e in res["errors"]:
            L.append(f"* `{e}`")
        L.append("")
    L.append("### Commands\n")
    L.append("```")
    seen = set()
    for argv in res["commands"]:
        s_ = " ".join(str(a) for a in argv).replace(res["workdir"], "$W")
        key = re.sub(r"\$W/\S+", "", s_)
        if key not in seen:
            seen.add(key)
            L.append(s_)
    L.append("```\n")
    return "\n".join(L)


def section_of_infer_md(path):
    text = path.read_text()
    i = text.find(SECTION)
    if i < 0:
        raise SystemExit(f"{path}: no '{SECTION}' section")
    return text[i:]


def write_outputs(res, out_dir):
    text = section(res)
    (out_dir / "results_infer.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    (out_dir / "RESULTS_INFER.md").write_text(
        "# Kiln inference bench results\n\n" + text)
    if (out_dir / "RESULTS.md").exists():
        rb.merge_section(out_dir / "RESULTS.md", SECTION, text)


# ---------------------------------------------------------------- main

def main():
    args = sys.argv[1:]
    if args == ["--merge-only"]:
        out_dir = Path(os.environ["KILN_BENCH_OUT"]).resolve() if os.environ.get("KILN_BENCH_OUT") else ROOT / "bench"
        src = out_dir / "RESULTS_INFER.md"
        if src.exists() and (out_dir / "RESULTS.md").exists():
            rb.merge_section(out_dir / "RESULTS.md", SECTION, section_of_infer_md(src))
            print(f"merged {src} into {out_dir / 'RESULTS.md'}")
        return
    if len(args) not in (1, 2):
        raise SystemExit("usage: run_infer_bench.py BUILD_DIR [MODEL.safetensors] | --merge-only")
    build = Path(args[0]).resolve()
    kiln = build / "kiln"
    if not kiln.exists():
        raise SystemExit(f"bench: {kiln} not found; build first (make build)")
    model_arg = args[1] if len(args) == 2 else os.environ.get("KILN_INFER_MODEL") or None
    quick = os.environ.get("KILN_BENCH_QUICK") == "1" or os.environ.get("KILN_INFER_QUICK") == "1"
    cfg = {"quick": quick, "epochs": env_int("KILN_INFER_EPOCHS", 1 if quick else 5),
           "reps": env_int("KILN_INFER_REPS", 1 if quick else 3), "runs": env_int("KILN_INFER_RUNS", 2000),
           "warmup": env_int("KILN_INFER_WARMUP", 200), "idle_wait_s": env_int("KILN_BENCH_IDLE_WAIT_S", 60),
           "retries": env_int("KILN_BENCH_RETRIES", 2)}
    overrides = sorted(k for k in os.environ if k.startswith("KILN_INFER_") and k not in ("KILN_INFER_QUICK",)
                       and os.environ[k] != "")
    nonstandard = ", ".join(x for x in ["quick mode (1-epoch model, 1 repetition)" if quick else "",
                                        "overrides " + ", ".join(f"{k}={os.environ[k]}" for k in overrides)
                                        if overrides else ""] if x)
    work = Path(tempfile.mkdtemp(prefix="kiln-infer-bench-"))
    out_dir = Path(os.environ["KILN_BENCH_OUT"]).resolve() if os.environ.get("KILN_BENCH_OUT") else \
        (work if nonstandard else ROOT / "bench")
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {"config": cfg, "nonstandard": nonstandard, "workdir": str(work), "machine": rb.machine_info(build),
           "commands": [], "errors": [], "targets": TARGETS}
    try:
        import subprocess
        res["node_version"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        res["node_version"] = None
    log(f"inference bench, {'quick' if quick else 'full'} mode; scratch {work}")

    fp32, int8 = stage_models(kiln, work, res, model_arg)
    stage_accuracy(kiln, fp32, int8, work, res)
    onnx = stage_agreement(kiln, fp32, int8, work, res)
    if not res.get("ort", {}).get("available"):
        log(f"ONNX Runtime not measured: {res.get('ort', {}).get('reason')}")
    stage_latency(kiln, fp32, int8, onnx, work, res)
    stage_memory_size(fp32, int8, res)

    lat, cmp, acc, mem, sz = res["latency"], res["latency_comparison"], res["accuracy"], res["memory"], res["size"]
    kf, ki = lat.get("kiln-fp32", {}).get("p50_us"), lat.get("kiln-int8", {}).get("p50_us")

    def p50(k):
        return lat.get(k, {}).get("p50_us") if k else None

    fp32_agree = [v["pass"] for v in res["agreement"]["tools"].values() if v["fp32"]]
    fp32_diff = max((v["max_abs_diff_vs_kiln_fp32"] for v in res["agreement"]["tools"].values() if v["fp32"]),
                    default=None)
    frac = "n/a" if mem["rss_fraction"] is None else f"1/{1 / mem['rss_fraction']:.1f} of it"
    a = acc["test_accuracy"]
    eng = cmp["torch_int8_by_engine"]
    res["summary"] = [
        ("PyTorch (eager, TorchScript) and ONNX Runtime logits equal Kiln fp32's within 1e-4",
         f"largest difference {f1(fp32_diff, '.1e')}",
         all(fp32_agree) if fp32_agree else None),
        ("Accuracy: Kiln int8 within 0.5 points of Kiln fp32",
         f"fp32 {rb.fmt_pct(a['kiln-fp32'])}, int8 {rb.fmt_pct(a['kiln-int8'])} "
         f"({acc['kiln_fp32_minus_int8_points']:+.2f} points lost)", acc["pass"]),
        ("Latency: Kiln fp32 >= 3x faster than PyTorch eager",
         f"{f1(kf)} vs {f1(p50('eager'))} us: {ratio_s(cmp['eager_over_kiln_fp32'])}", cmp["pass"]["eager"]),
        ("Latency: Kiln fp32 faster than frozen TorchScript",
         f"{f1(kf)} vs {f1(p50(cmp['torchscript_best']))} us ({cmp['torchscript_best']}): "
         f"{ratio_s(cmp['torchscript_over_kiln_fp32'])}", cmp["pass"]["torchscript"]),
        ("Latency: Kiln int8 >= 1.8x faster than Kiln fp32",
         f"{f1(ki)} vs {f1(kf)} us: {ratio_s(cmp['kiln_fp32_over_kiln_int8'])}", cmp["pass"]["int8_speedup"]),
        ("Latency: Kiln int8 faster than PyTorch int8 (faster engine)",
         f"{f1(ki)} vs {f1(p50(cmp['torch_int8_best']))} us ({cmp['torch_int8_best']}): "
         f"{ratio_s(cmp['torch_int8_over_kiln_int8'])}; engines: onednn {f1(eng.get('onednn'))}, qnnpack "
         f"{f1(eng.get('qnnpack'))} us; against eager int8 only ({cmp['torch_int8_eager_best']}) "
         f"{ratio_s(cmp['torch_int8_eager_over_kiln_int8'])}", cmp["pass"]["torch_int8"]),
        ("Latency: Kiln fp32 faster than ONNX Runtime (1 intra-op thread)",
         (f"{f1(kf)} vs {f1(p50(cmp['ort_best']))} us ({cmp['ort_best']}): {ratio_s(cmp['ort_over_kiln_fp32'])}; "
          f"public API {f1(p50('ort-api'))} us: {ratio_s(cmp['ort_api_over_kiln_fp32'])}")
         if cmp["ort_best"] else f"not measured: {res.get('ort', {}).get('reason', 'ONNX Runtime failed')}",
         cmp["pass"]["ort"]),
        ("Latency: Kiln int8 faster than ONNX Runtime (the issue's 'faster at batch 1' read as Kiln's deployable "
         "best against ORT's; ORT runs the fp32 export, the int8 Kiln model is within 0.5 points of it)",
         (f"{f1(ki)} vs {f1(p50(cmp['ort_best']))} us ({cmp['ort_best']}): {ratio_s(cmp['ort_over_kiln_int8'])}")
         if cmp["ort_best"] else "not measured", cmp["pass"].get("ort_int8")),
        ("Memory: inference process peak RSS <= 1/10 of a training process's",
         f"{fmt_b(mem['kiln_fp32_bench_peak_rss_bytes'])} vs {fmt_b(mem['train_peak_rss_bytes'])}: "
         f"{frac}; arena "
         f"{fmt_b(mem['kiln_fp32_arena_bytes'])} at batch 1 vs {fmt_b(mem['train_activation_bytes_per_example'])} "
         "of training activations per example", mem["pass"]),
        ("Size: int8 model file ~4x smaller than fp32 (>= 3.8x)",
         f"{sz['fp32_bytes']:,} -> {sz['int8_bytes']:,} B: {sz['ratio']:.2f}x", sz["pass"]),
    ]
    res["bench_wall_s"] = time.monotonic() - rb.T_START
    write_outputs(res, out_dir)
    log(f"wrote {out_dir / 'RESULTS_INFER.md'} and {out_dir / 'results_infer.json'} in {res['bench_wall_s'] / 60:.1f} min")
    for name, measured, ok in res["summary"]:
        print(f"{verdict(ok):4s}  {name}: {measured}")
    print(f"report: {out_dir / 'RESULTS_INFER.md'}")


if __name__ == "__main__":
    main()
