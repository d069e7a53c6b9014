#!/usr/bin/python3
"""ONNX latency bench (issue 11): batch-1, one-thread latency of the same PyTorch-exported .onnx
file in Kiln and in ONNX Runtime, Kiln int8 made from it, and the imported CNN against the same
CNN built and trained by Kiln itself ("import is not a second-class path").

How to run (from the repository root, after a Release build):

    scripts/bench build onnx                          # the same as the next line
    /usr/bin/python3 bench/onnx_latency.py build      # full: 7 rounds -> bench/RESULTS_ONNX.md
    /usr/bin/python3 bench/onnx_latency.py build --quick   # 2 short rounds, results in the scratch dir

Needs Debian's python3 with torch, numpy (and onnx, optional: it checks the exports) and the npm
package onnxruntime-node in bench/node_modules (`cd bench && npm ci --ignore-scripts`; scripts/bench
installs it). Without node or the package, Kiln's figures are measured and ONNX Runtime's are n/a.

The models (written to a scratch directory, printed):
  cnn        the reference CNN (examples/fashion_cnn.kiln = tests/ref/torch_ref.py's CNN). Kiln
             trains it briefly (`kiln train examples/fashion_cnn.kiln --steps 200`): that file is the
             *native* model. Its weights go into the PyTorch CNN, which torch.onnx.export writes as
             cnn.onnx (opset 17, dynamic batch): the *imported* model, the file ONNX Runtime runs.
             int8: `kiln quantize cnn.onnx --calib-data fashion-mnist --calib 1000`.
  encoder    a transformer encoder: 4 of tests/ref/onnx_models.py's pre-norm blocks (the one the
             import test uses) at the width of Kiln's ViT (examples/fashion_vit.kiln: width 64,
             4 heads, MLP 128, 50 tokens), then a layer norm; seeded PyTorch initialisation; input
             (N, 50, 64); exported the same way. int8: `kiln quantize encoder.onnx` calibrated on
             256 seeded standard-normal inputs (npy; the class targets the loader asks for are
             zeros and unused).
Before timing, outputs are checked (Kiln's imported CNN against the native one and PyTorch on 16
test images; Kiln's encoder against PyTorch) and the imported CNN's kernels against the native
one's (`kiln bench --profile`: the same op and kernel, layer by layer).

Timing: every measurement is one process: `kiln bench MODEL --batch 1 --threads 1 --warmup W
--runs R --json`, or `node bench/ort_peer.js latency MODEL.onnx --warmup W --runs R` (ONNX Runtime
with intra-op and inter-op threads 1, sequential, all graph optimisations; it reports the public
`await session.run()` and its native session called synchronously, and the faster of the two is
"ONNX Runtime"). Both time every run on its own after the warm-up, on the same input
(x[i] = (i % 251) / 251, batch 1) and report the median. A round runs every job once, in one
order on even rounds and the reverse on odd ones (A B C D, D C B A, ...), so drift and machine
noise fall on all peers alike; a figure is the median over rounds of the per-process medians.

Options:
  --rounds N        rounds (default 7; quick 2)
  --runs N          timed runs per process for every model (default: cnn 2000, encoder 500;
                    quick 300 / 100)
  --warmup N        untimed runs first (default 200; quick 50)
  --cpu N           run every peer under `taskset -c N` (off by default; the same for all peers)
  --idle-wait S     most seconds to wait for idle CPUs before each process (default 20; quick 0;
                    at most 300 s over the whole bench)
  --retries N       repeats of a process during which other processes used more than 0.25 CPUs
                    (default 2; quick 0); the last attempt counts whatever it saw
  --train-steps N   steps of the native CNN's training (default 200; latency does not depend on it)
  --out DIR         where results_onnx.json and RESULTS_ONNX.md go (default bench/ for a full run,
                    the scratch directory for a quick one)
  --quick           the quick settings above
"""
import argparse
import contextlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "ref"))
import numpy as np                          # noqa: E402
import torch                                # noqa: E402
import torch.nn as nn                       # noqa: E402
import run_bench as rb                      # noqa: E402  (run_proc, wait_idle, machine_info, log, median)
from infer_peer import load_weights         # noqa: E402  (Kiln safetensors -> the PyTorch CNN)
from onnx_models import Encoder             # noqa: E402  (the import test's transformer block)
from peer_data import load_split            # noqa: E402
from torch_ref import CNN                   # noqa: E402

ROOT = rb.ROOT
ORT_PEER = HERE / "ort_peer.js"
CNN_SPEC = ROOT / "examples" / "fashion_cnn.kiln"
OPSET = 17
ENC = {"width": 64, "heads": 4, "mlp": 128, "tokens": 50, "blocks": 4}
TARGETS = {"ort_over_kiln_fp32": 1.3, "ort_over_kiln_int8": 2.0, "imported_over_native_band": 0.03}
OUT_TOL = 1e-4           # largest |difference| allowed between fp32 outputs of the same model
log = rb.log


class EncoderStack(nn.Module):
    def __init__(self, width, heads, mlp, blocks):
        super().__init__()
        self.blocks = nn.Sequential(*[Encoder(width, heads, mlp) for _ in range(blocks)])
        self.ln = nn.LayerNorm(width)

    def forward(self, x):
        return self.ln(self.blocks(x))


def export(model, example, path):
    # the exporter's warnings and "Exported graph" diagnostics are noise in the bench log
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), example, str(path), opset_version=OPSET, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    info = {"file": str(path), "bytes": path.stat().st_size, "opset": OPSET}
    try:
        import onnx
        m = onnx.load(str(path))
        onnx.checker.check_model(m)
        ops = [n.op_type for n in m.graph.node]
        info.update(onnx_checker="ok", nodes=len(ops), ops=sorted(set(ops)))
    except ImportError:
        info["onnx_checker"] = "onnx package not installed"
    return info


def make_models(kiln, work, a, res):
    """Writes the models; returns {model: {job: (kind, path)}} and records how each was made."""
    torch.manual_seed(0)
    native = work / "cnn_native.safetensors"
    log(f"native CNN: kiln train {CNN_SPEC.name} --steps {a.train_steps}")
    t = rb.kiln_json(kiln, ["train", CNN_SPEC, "--steps", a.train_steps, "--seed", 0, "--threads", 2, "--quiet",
                         "--json", "--out", native], work, "train-native")
    cnn_onnx = work / "cnn.onnx"
    cnn = load_weights(CNN(), native)
    res["models"]["cnn"] = {"description": "reference CNN (examples/fashion_cnn.kiln), input 1x28x28",
                            "native": {"file": str(native), "bytes": native.stat().st_size,
                                       "train_steps": a.train_steps, "test_accuracy": t.get("test_accuracy")},
                            "onnx": export(cnn, torch.zeros(1, 1, 28, 28), cnn_onnx)}
    enc = EncoderStack(ENC["width"], ENC["heads"], ENC["mlp"], ENC["blocks"]).eval()
    enc_onnx = work / "encoder.onnx"
    res["models"]["encoder"] = {"description": f"transformer encoder: {ENC['blocks']} pre-norm blocks, width "
                                f"{ENC['width']}, {ENC['heads']} heads, MLP {ENC['mlp']} (ReLU), final layer norm; "
                                f"input {ENC['tokens']}x{ENC['width']}",
                                "config": ENC, "onnx": export(enc, torch.zeros(1, ENC["tokens"], ENC["width"]),
                                                              enc_onnx)}
    # int8, from the imported .onnx files
    cnn_int8 = work / "cnn_int8.safetensors"
    q = rb.kiln_json(kiln, ["quantize", cnn_onnx, "--calib-data", "fashion-mnist", "--calib", 1000, "--out", cnn_int8,
                         "--json"], work, "quantize-cnn")
    res["models"]["cnn"]["int8"] = {"file": str(cnn_int8), "calibration": q.get("calibration"),
                                    "calibration_examples": q.get("calibration_examples"), "bytes": q.get("output_bytes")}
    g = np.random.default_rng(0)
    cx, cy = work / "enc_calib_x.npy", work / "enc_calib_y.npy"
    np.save(cx, g.standard_normal((256, ENC["tokens"], ENC["width"])).astype(np.float32))
    np.save(cy, np.zeros((256, ENC["tokens"]), np.int64))
    enc_int8 = work / "encoder_int8.safetensors"
    q = rb.kiln_json(kiln, ["quantize", enc_onnx, "--calib-data", f"npy:{cx},{cy}", "--calib", 256, "--out", enc_int8,
                         "--json"], work, "quantize-encoder")
    res["models"]["encoder"]["int8"] = {"file": str(enc_int8), "calibration": q.get("calibration"),
                                        "calibration_examples": q.get("calibration_examples"),
                                        "bytes": q.get("output_bytes")}
    # the order of a round: each pair that makes a ratio runs back to back
    return ({"cnn": {"kiln-native": native, "kiln-fp32": cnn_onnx, "ort": cnn_onnx, "kiln-int8": cnn_int8},
             "encoder": {"kiln-fp32": enc_onnx, "ort": enc_onnx, "kiln-int8": enc_int8}},
            {"cnn": cnn, "encoder": enc})


def check_outputs(kiln, files, torch_models, work, res):
    """fp32 outputs of the same model must agree: Kiln imported vs Kiln native vs PyTorch."""
    x_test, _ = load_split("t10k")
    inputs = {"cnn": x_test[:16].numpy(),
              "encoder": np.random.default_rng(1).standard_normal((4, ENC["tokens"], ENC["width"])).astype(np.float32)}
    checks = {}
    for model, x in inputs.items():
        xp = work / f"check_{model}_x.npy"
        np.save(xp, x)
        with torch.no_grad():
            ref = torch_models[model](torch.from_numpy(x)).numpy()
        outs = {}
        for job in ("kiln-fp32", "kiln-native"):
            if job in files[model]:
                yp = work / f"check_{model}_{job}.npy"
                rb.run_proc([kiln, "run", files[model][job], xp, "--output", yp, "--json"], work, f"check-{model}-{job}")
                outs[job] = np.load(yp).reshape(ref.shape)
        c = {f"{job}_vs_pytorch_max_abs": float(np.abs(y - ref).max()) for job, y in outs.items()}
        if "kiln-native" in outs:
            c["imported_vs_native_max_abs"] = float(np.abs(outs["kiln-fp32"] - outs["kiln-native"]).max())
        c["examples"] = int(x.shape[0])
        c["pass"] = all(v <= OUT_TOL for k, v in c.items() if k.endswith("_max_abs"))
        checks[model] = c
        log(f"outputs {model}: " + ", ".join(f"{k} {v:.2g}" for k, v in c.items() if k.endswith("_max_abs")))
        if not c["pass"]:
            res["errors"].append(f"{model}: fp32 outputs differ by more than {OUT_TOL}: {c}")
    res["checks"]["outputs"] = checks


def profile(kiln, path, work, tag):
    """`kiln bench --profile`: [(op, kernel, us per run)] of each layer (constants left out)."""
    j = rb.kiln_json(kiln, ["bench", path, "--batch", 1, "--threads", 1, "--runs", 50, "--warmup", 10, "--profile",
                         "--json"], work, tag)
    return [(p["op"], p["kernel"], p["us_per_run"]) for p in j.get("profile", []) if p["op"] != "const"]


def check_kernels(kiln, files, work, res):
    prof = {f"{m}/{job}": profile(kiln, p, work, f"profile-{m}-{job}")
            for m, jobs in files.items() for job, p in jobs.items() if job.startswith("kiln")}
    ks = {k: [(op, kern) for op, kern, _ in v] for k, v in prof.items()}
    same = ks["cnn/kiln-fp32"] == ks["cnn/kiln-native"]
    by_op = {}   # where Kiln's time goes: us per run by op and kernel, largest first (one profiled pass)
    for k, v in prof.items():
        t = {}
        for op, kern, us in v:
            t[f"{op}:{kern}"] = t.get(f"{op}:{kern}", 0.0) + us
        by_op[k] = dict(sorted(((n, round(us, 2)) for n, us in t.items()), key=lambda kv: -kv[1]))
    res["checks"]["kernels"] = {"imported_cnn_same_as_native": same,
                                "by_model": {k: [f"{op}:{kern}" for op, kern in v] for k, v in ks.items()},
                                "profile_us_by_op": by_op}
    log(f"kernels: imported CNN {'==' if same else '!='} native CNN: {' '.join(f'{o}:{k}' for o, k in ks['cnn/kiln-fp32'])}")
    if not same:
        res["errors"].append(f"the imported CNN runs other kernels than the native one: {ks['cnn/kiln-fp32']} vs "
                             f"{ks['cnn/kiln-native']}")


def job_argv(kiln, job, path, runs, warmup, cpu):
    pin = ["taskset", "-c", cpu] if cpu is not None else []
    if job == "ort":
        return pin + ["node", ORT_PEER, "latency", path, "--runs", runs, "--warmup", warmup]
    return pin + [kiln, "bench", path, "--batch", 1, "--threads", 1, "--runs", runs, "--warmup", warmup, "--json"]


def measure(kiln, files, a, work, res):
    jobs = [(m, job, p) for m, js in files.items() for job, p in js.items()]
    if not res["ort_available"]:
        jobs = [j for j in jobs if j[1] != "ort"]
    samples = {}     # (model, peer) -> [{"p50", "p99", "other_cpus"}] over rounds
    for rnd in range(a.rounds):
        order = jobs if rnd % 2 == 0 else jobs[::-1]
        for model, job, path in order:
            runs = a.runs[model]
            try:
                for attempt in range(a.retries + 1):   # a run others disturbed is repeated
                    rb.wait_idle(a.idle_wait)
                    r = rb.run_proc(job_argv(kiln, job, path, runs, a.warmup, a.cpu), work,
                                    f"lat-{model}-{job}-{rnd}-{attempt}")
                    if r["other_cpus"] <= rb.RETRY_OTHER_CPUS or attempt == a.retries:
                        break
                    log(f"others used {r['other_cpus']:.2f} CPUs during {model} {job}; repeating it")
                    res["discarded_runs"].append({"model": model, "job": job, "round": rnd + 1,
                                                  "other_cpus": r["other_cpus"]})
            except rb.RunFailed as e:
                res["errors"].append(f"latency {model} {job} round {rnd + 1}: {e}")
                log(f"latency {model} {job} round {rnd + 1} FAILED: {e}")
                continue
            j = rb.last_json(r["stdout"]) or {}
            if job == "ort":
                res["versions"]["onnxruntime"] = j.get("onnxruntime", {}).get("common")
                res["versions"]["node"] = j.get("node")
                items = {f"ort-{k}": v for k, v in j.get("variants", {}).items()}
            else:
                items = {job: j}
            for peer, v in items.items():
                samples.setdefault((model, peer), []).append(
                    {"p50": v["latency_p50_us"], "p99": v["latency_p99_us"], "other_cpus": r["other_cpus"]})
            log(f"round {rnd + 1}/{a.rounds} {model} {job}: "
                + ", ".join(f"{k} {v['latency_p50_us']:.1f} us" for k, v in items.items())
                + f" (others used {r['other_cpus']:.2f} CPUs)")
    lat = {}
    for (model, peer), v in samples.items():
        lat.setdefault(model, {})[peer] = {
            "p50_us": rb.median([x["p50"] for x in v]), "p99_us": rb.median([x["p99"] for x in v]),
            "p50_rounds_us": [x["p50"] for x in v], "other_cpus_rounds": [x["other_cpus"] for x in v]}
    for model, peers in lat.items():   # "ort": the faster of ONNX Runtime's two ways of calling it
        ort = [p for p in ("ort-binding", "ort-api") if p in peers]
        if ort:
            best = min(ort, key=lambda p: peers[p]["p50_us"])
            peers["ort"] = dict(peers[best], variant=best)
    res["latency"] = lat
    return samples


def ratios(res, samples):
    lat = res["latency"]

    def p50(model, peer):
        return lat.get(model, {}).get(peer, {}).get("p50_us")

    def ratio(x, y):
        return None if x is None or y is None else x / y

    def paired(model, num, den):
        """Median of per-round ratios (the two processes of a round ran minutes apart at most)."""
        if num == "ort":
            num = lat.get(model, {}).get("ort", {}).get("variant")
        xs, ys = samples.get((model, num), []), samples.get((model, den), [])
        return rb.median([x["p50"] / y["p50"] for x, y in zip(xs, ys)]) if xs and len(xs) == len(ys) else None

    out = {}
    for model in lat:
        r = {"ort_over_kiln_fp32": ratio(p50(model, "ort"), p50(model, "kiln-fp32")),
             "ort_over_kiln_int8": ratio(p50(model, "ort"), p50(model, "kiln-int8")),
             "ort_over_kiln_fp32_paired": paired(model, "ort", "kiln-fp32"),
             "ort_over_kiln_int8_paired": paired(model, "ort", "kiln-int8"),
             "ort_api_over_kiln_fp32": ratio(p50(model, "ort-api"), p50(model, "kiln-fp32"))}
        if p50(model, "kiln-native") is not None:
            r["imported_over_native"] = ratio(p50(model, "kiln-fp32"), p50(model, "kiln-native"))
            r["imported_over_native_paired"] = paired(model, "kiln-fp32", "kiln-native")
        ok = {"ort_over_kiln_fp32": None if r["ort_over_kiln_fp32"] is None else
              r["ort_over_kiln_fp32"] >= TARGETS["ort_over_kiln_fp32"],
              "ort_over_kiln_int8": None if r["ort_over_kiln_int8"] is None else
              r["ort_over_kiln_int8"] >= TARGETS["ort_over_kiln_int8"]}
        if "imported_over_native" in r:
            same = res["checks"].get("kernels", {}).get("imported_cnn_same_as_native")
            ok["imported_as_fast_as_native"] = None if r["imported_over_native"] is None else \
                bool(same) and abs(r["imported_over_native"] - 1) <= TARGETS["imported_over_native_band"]
        r["pass"] = ok
        out[model] = r
    res["ratios"] = out


def cpu_info():
    info = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        info["model_name"] = m.group(1).strip() if m else None
        m = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
        flags = set(m.group(1).split()) if m else set()
        for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8",
                  "amx_bf16"):
            info[f] = f in flags
        info["amx"] = info["amx_tile"] and info["amx_int8"]
        info["logical_cpus"] = os.cpu_count()
    except OSError as e:
        info["error"] = str(e)
    return info


def fmt(x, spec=".1f"):
    return "n/a" if x is None else format(x, spec)


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


LABELS = {"kiln-fp32": "Kiln fp32, the imported .onnx", "kiln-native": "Kiln fp32, native (trained by Kiln)",
          "kiln-int8": "Kiln int8 (`kiln quantize` of the .onnx)",
          "ort-binding": "ONNX Runtime fp32, native session run synchronously",
          "ort-api": "ONNX Runtime fp32, `await session.run()`"}


def write_report(res, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results_onnx.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    c, cpu, cfg, v = res["machine"], res["cpu"], res["config"], res["versions"]
    flags = ", ".join(f"{f} {'yes' if cpu.get(f) else 'no'}" for f in ("avx512f", "avx512_vnni", "amx"))
    L = ["# Kiln vs ONNX Runtime: batch-1 latency of PyTorch-exported ONNX models (issue 11)", "",
         f"Generated by `bench/onnx_latency.py` on {c.get('date_utc')}, Kiln {c.get('kiln_commit')}, "
         f"ONNX Runtime {v.get('onnxruntime') or 'n/a'} (onnxruntime-node, node {v.get('node') or 'n/a'}), "
         f"PyTorch {v.get('torch')} (the exporter).", "",
         f"CPU: **{cpu.get('model_name')}** ({flags}; {cpu.get('logical_cpus')} logical CPUs); "
         f"CPUs busy before the start: {fmt(100 * (c.get('cpu_busy_before_start') or 0), '.0f')}%.", ""]
    if cfg["quick"]:
        L += ["**Quick run** (few rounds and runs): the figures are indicative only.", ""]
    L += ["## Targets", "", "| target | model | figure | verdict |", "| --- | --- | --- | --- |"]
    for model, r in res.get("ratios", {}).items():
        L.append(f"| ONNX Runtime fp32 / Kiln fp32 ≥ {TARGETS['ort_over_kiln_fp32']} | {model} | "
                 f"{fmt(r['ort_over_kiln_fp32'], '.2f')}x (paired by round: {fmt(r['ort_over_kiln_fp32_paired'], '.2f')}x) | "
                 f"{verdict(r['pass']['ort_over_kiln_fp32'])} |")
        L.append(f"| ONNX Runtime fp32 / Kiln int8 ≥ {TARGETS['ort_over_kiln_int8']} | {model} | "
                 f"{fmt(r['ort_over_kiln_int8'], '.2f')}x (paired: {fmt(r['ort_over_kiln_int8_paired'], '.2f')}x) | "
                 f"{verdict(r['pass']['ort_over_kiln_int8'])} |")
        if "imported_over_native" in r:
            same = res["checks"].get("kernels", {}).get("imported_cnn_same_as_native")
            L.append(f"| imported / native within 1 ± {TARGETS['imported_over_native_band']}, same kernels | {model} | "
                     f"{fmt(r['imported_over_native'], '.3f')}x (paired: {fmt(r['imported_over_native_paired'], '.3f')}x); "
                     f"kernels {'identical' if same else 'DIFFER'} | {verdict(r['pass']['imported_as_fast_as_native'])} |")
    for model, peers in res.get("latency", {}).items():
        m = res["models"][model]
        L += ["", f"## {model}: {m['description']}", "",
              f"`{Path(m['onnx']['file']).name}`: {m['onnx'].get('nodes', '?')} nodes, opset {OPSET}, "
              f"{m['onnx']['bytes']:,} bytes; {cfg['runs'][model]} timed runs per process after {cfg['warmup']} "
              f"warm-up runs, {cfg['rounds']} round{'s' if cfg['rounds'] != 1 else ''}.", "",
              "| peer | p50 (us, median of rounds) | p99 (us, median) | p50 per round (us) | others' CPU use per round |",
              "| --- | --- | --- | --- | --- |"]
        for peer in ("kiln-fp32", "kiln-native", "kiln-int8", "ort-binding", "ort-api"):
            if peer in peers:
                p = peers[peer]
                L.append(f"| {LABELS[peer]} | {fmt(p['p50_us'])} | {fmt(p['p99_us'])} | "
                         f"{', '.join(fmt(x) for x in p['p50_rounds_us'])} | "
                         f"{', '.join(fmt(x, '.2f') for x in p['other_cpus_rounds'])} |")
    chk = res["checks"]
    L += ["", "## Method", "",
          "* The same file: ONNX Runtime and Kiln fp32 run the very `.onnx` file `torch.onnx.export` wrote (opset "
          f"{OPSET}, dynamic batch); Kiln imports it at load (`kiln bench MODEL.onnx`). Kiln int8 is "
          "`kiln quantize` of that file (CNN: 1000 Fashion-MNIST training images; encoder: 256 seeded normal inputs).",
          "* The native CNN is `kiln train examples/fashion_cnn.kiln` (briefly); the `.onnx` holds its very weights "
          "(loaded into the PyTorch twin, then exported). Imported and native run "
          + ("the same kernels layer by layer" if chk.get("kernels", {}).get("imported_cnn_same_as_native")
             else "DIFFERENT kernels")
          + f" (`kiln bench --profile`): {' '.join(chk.get('kernels', {}).get('by_model', {}).get('cnn/kiln-fp32', []))}.",
          "* Where Kiln's time goes (one `kiln bench --profile` pass of 50 runs, us per run, largest first): "
          + "; ".join(f"{k}: " + ", ".join(f"{n} {us:.1f}" for n, us in list(v.items())[:5])
                      for k, v in chk.get("kernels", {}).get("profile_us_by_op", {}).items()) + ".",
          "* Outputs checked first (largest |difference|): "
          + "; ".join(f"{m}: " + ", ".join(f"{k.replace('_max_abs', '')} {x:.1e}" for k, x in o.items()
                                           if k.endswith("_max_abs")) for m, o in chk.get("outputs", {}).items()) + ".",
          "* Batch 1, one thread: `kiln bench --batch 1 --threads 1`; ONNX Runtime with intraOpNumThreads 1, "
          "interOpNumThreads 1, sequential execution, graph optimisation level all. Same input: x[i] = (i % 251) / 251.",
          "* Each process warms up, then times every run on its own (Kiln: clock_gettime around "
          "`kiln_session_run`; ONNX Runtime: process.hrtime around the call, so it includes the N-API crossing and "
          "the output tensor ONNX Runtime allocates) and reports the median. ONNX Runtime is timed two ways "
          "(synchronous native session, and the public `await session.run()`); the ratios use the faster.",
          "* Rounds run every job once, in alternating order (A B C … then … C B A); figures are medians over rounds; "
          "\"paired\" ratios are medians of the per-round ratios. \"Others' CPU use\" is the CPU time other processes "
          "used while that process ran (/proc/stat), in CPUs: high values mark noisy rounds; a process during which "
          f"they used more than {rb.RETRY_OTHER_CPUS} was repeated (up to {cfg['retries']} times; "
          f"{len(res['discarded_runs'])} repeated in this run).",
          f"* imported / native passes with identical kernels and a ratio within 1 ± "
          f"{TARGETS['imported_over_native_band']} (\"exactly as fast\", up to timing noise).",
          f"* Command: `{' '.join(cfg['argv'])}`; every child's command line is in results_onnx.json."]
    if res["errors"]:
        L += ["", "## Errors", ""] + [f"* {e}" for e in res["errors"]]
    (out_dir / "RESULTS_ONNX.md").write_text("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default=str(ROOT / "build"))
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--cpu", type=int)
    ap.add_argument("--idle-wait", type=float)
    ap.add_argument("--retries", type=int)
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    kiln = Path(a.build).resolve() / "kiln"
    if not kiln.exists():
        raise SystemExit(f"onnx_latency: {kiln} not found; build first (make build)")
    q = a.quick
    a.rounds = a.rounds or (2 if q else 7)
    a.runs = {m: a.runs for m in ("cnn", "encoder")} if a.runs else \
        ({"cnn": 300, "encoder": 100} if q else {"cnn": 2000, "encoder": 500})
    a.warmup = a.warmup if a.warmup is not None else (50 if q else 200)
    a.idle_wait = a.idle_wait if a.idle_wait is not None else (0 if q else 20)
    a.retries = a.retries if a.retries is not None else (0 if q else 2)
    work = Path(tempfile.mkdtemp(prefix="kiln-onnx-bench-"))
    out_dir = Path(a.out).resolve() if a.out else (work if q else HERE)
    log(f"scratch directory {work}; results to {out_dir}")
    res = {"config": {"quick": q, "rounds": a.rounds, "runs": a.runs, "warmup": a.warmup, "cpu": a.cpu,
                      "idle_wait_s": a.idle_wait, "retries": a.retries, "train_steps": a.train_steps, "argv": sys.argv, "work": str(work)},
           "targets": TARGETS, "machine": rb.machine_info(a.build), "cpu": cpu_info(),
           "versions": {"torch": torch.__version__}, "models": {}, "checks": {}, "discarded_runs": [], "errors": []}
    try:
        import onnx
        res["versions"]["onnx"] = onnx.__version__
    except ImportError:
        pass
    res["ort_available"] = ort_available(work)
    if not res["ort_available"]:
        res["errors"].append("node or bench/node_modules/onnxruntime-node is missing: ONNX Runtime not measured "
                             "(cd bench && npm ci --ignore-scripts)")
        log(res["errors"][-1])
    files, torch_models = make_models(kiln, work, a, res)
    check_outputs(kiln, files, torch_models, work, res)
    check_kernels(kiln, files, work, res)
    samples = measure(kiln, files, a, work, res)
    ratios(res, samples)
    write_report(res, out_dir)
    for model, r in res["ratios"].items():
        log(f"{model}: ORT/Kiln fp32 {fmt(r['ort_over_kiln_fp32'], '.2f')}x, ORT/Kiln int8 "
            f"{fmt(r['ort_over_kiln_int8'], '.2f')}x" + (f", imported/native {fmt(r['imported_over_native'], '.3f')}x"
                                                        if "imported_over_native" in r else ""))
    log(f"wrote {out_dir / 'RESULTS_ONNX.md'} and {out_dir / 'results_onnx.json'}")
    return 1 if res["errors"] else 0


def ort_available(work):
    pkg = HERE / "node_modules" / "onnxruntime-node"
    if shutil.which("node") is None or not pkg.exists():
        return False
    try:
        rb.run_proc(["node", "-e", f"require({json.dumps(str(pkg))})"], work, "ort-probe")
        return True
    except rb.RunFailed:
        return False


if __name__ == "__main__":
    sys.exit(main())
