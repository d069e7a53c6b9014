#!/usr/bin/python3
"""ONNX accuracy round trip (issue 11): a CNN built and trained in PyTorch, exported with
torch.onnx.export with its batchnorm folded and preserved, gives PyTorch's outputs in Kiln fp32
(target: 1e-4), and Kiln's int8 quantisation of each file stays within 1 point of PyTorch's test
accuracy on Fashion-MNIST.

How to run (from the repository root, after a Release build):

    scripts/bench build accuracy                         # the same as the next line
    /usr/bin/python3 bench/onnx_accuracy.py build        # 3 seeds x 4 epochs -> bench/RESULTS_ONNX_ACCURACY.md
    /usr/bin/python3 bench/onnx_accuracy.py build --quick    # 1 seed, 1 epoch, results in the scratch dir

Needs Debian's python3 with torch, numpy and onnx (python3-torch, python3-onnx), and Debian's
Fashion-MNIST (dataset-fashion-mnist, /usr/share/datasets/fashion-mnist).

For each seed:
  1. PyTorch trains the reference CNN (examples/fashion_cnn.kiln = tests/ref/torch_ref.py's CNN) with
     a BatchNorm2d after each conv (the convs then have no bias, as in examples/fashion_default.kiln):
     conv 32 3x3 pad 1, BN, ReLU, max pool 2, conv 64 3x3 pad 1, BN, ReLU, max pool 2, flatten,
     dense 128, ReLU, dense 10. Adam (lr 1e-3), batch 64, a seeded shuffle each epoch, mean
     cross-entropy, torch.manual_seed(seed), torch.set_num_threads(2).
     Inputs are what Kiln's dataset loader feeds: each uint8 pixel times (1.0f / 255.0f) in float32
     (src/data/dataset.c), not pixel / 255 (which differs by one ulp for some pixel values), so
     PyTorch and Kiln see the same values bit for bit (checked below).
  2. torch.onnx.export (opset 17, dynamic batch) of the model in eval mode, twice:
       folded     the default (training=EVAL, constant folding): the exporter folds each
                  BatchNormalization into the Conv before it;
       preserved  training=TrainingMode.PRESERVE, do_constant_folding=False: the model is in eval
                  mode, so the BatchNormalization nodes stay, in inference form (training_mode 0).
     Each file is checked with onnx.checker and its BatchNormalization nodes counted (folded: 0;
     preserved: 2, else the run fails).
  3. For each file:
       PyTorch test accuracy (10,000 images) of the model the file was exported from;
       Kiln fp32 accuracy: `kiln eval FILE.onnx --data fashion-mnist` (Kiln's own loader);
       Kiln fp32 logits of the 10,000 test images: `kiln run FILE.onnx TEST_X.npy --output Y.npy`, and
         the largest |kiln - torch| / (1 + |torch|) over all 100,000 logits (target 1e-4); also the
         largest absolute difference, the largest plain relative |kiln - torch| / |torch| over the
         logits with |torch| >= 1e-3 (plain relative is unbounded near 0), and top-1 agreement;
       input check: `kiln run FILE.onnx --data fashion-mnist --count 1000` (Kiln's loader) against
         `kiln run FILE.onnx` of the first 1000 rows of TEST_X.npy: identical logits, bit for bit;
       int8: `kiln quantize FILE.onnx --calib-data fashion-mnist --calib N` (a seeded random sample
         of N training images; default 1000, Kiln's default; method auto), then `kiln eval` of the
         int8 model; target |int8 - PyTorch| <= 1 point. Also its top-1 agreement with PyTorch.

Options:
  --seeds S,S,...   seeds (default 0,1,2; quick 0)
  --epochs N        training epochs (default 4; quick 1)
  --calib N         calibration images for kiln quantize (default 1000)
  --threads N       threads for PyTorch and Kiln (default 2)
  --out DIR         where results_onnx_accuracy.json and RESULTS_ONNX_ACCURACY.md go (default bench/
                    for a full run, the scratch directory for a quick one)
  --quick           the quick settings above
"""
import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import numpy as np                          # noqa: E402
import torch                                # noqa: E402
import torch.nn as nn                       # noqa: E402
import torch.nn.functional as F             # noqa: E402
import run_bench as rb                      # noqa: E402  (run_proc, last_json, machine_info, log)
from peer_data import DATA_DIR, read_idx    # noqa: E402

OPSET = 17
BATCH = 64
LR = 1e-3
REL_TOL = 1e-4          # largest |kiln - torch| / (1 + |torch|) of the fp32 logits
INT8_POINTS = 1.0       # largest |int8 accuracy - PyTorch accuracy|, in percentage points
PLAIN_REL_FLOORS = (1e-3, 1.0)   # plain relative differences are taken over logits at least this large
log = rb.log


class CNNBN(nn.Module):
    """The reference CNN with a BatchNorm2d after each conv."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(3136, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = torch.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def kiln_scale(u8):
    """uint8 images as Kiln's loader gathers them: (float)pixel * (1.0f / 255.0f), in float32."""
    return u8.astype(np.float32) * (np.float32(1) / np.float32(255))


def load(prefix):
    x = read_idx(os.path.join(DATA_DIR, f"{prefix}-images-idx3-ubyte.gz"), 0x00000803)
    y = read_idx(os.path.join(DATA_DIR, f"{prefix}-labels-idx1-ubyte.gz"), 0x00000801)
    return kiln_scale(x).reshape(-1, 1, 28, 28), y.astype(np.int64)


def train(seed, epochs, x, y, threads):
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    model = CNNBN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    hist = []
    t0, busy0, own0 = time.monotonic(), rb.stat_jiffies()[0], sum(os.times()[:2])
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        total, n = 0.0, 0
        for i in range(0, len(perm), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            n += len(idx)
        hist.append({"epoch": ep + 1, "train_loss": total / n, "elapsed_s": round(time.monotonic() - t0, 1)})
        log(f"seed {seed} epoch {ep + 1}/{epochs}: train loss {total / n:.4f} ({time.monotonic() - t0:.0f} s)")
    wall = time.monotonic() - t0
    # CPUs' worth of time other processes used while PyTorch trained (a busy machine slows training)
    others = ((rb.stat_jiffies()[0] - busy0) / rb.HZ - (sum(os.times()[:2]) - own0)) / max(wall, 1e-9)
    return model.eval(), hist, wall, max(others, 0.0)


def logits_of(model, x, batch=1000):
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch])).numpy() for i in range(0, len(x), batch)])


def export(model, path, preserve):
    kw = {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False} if preserve else {}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), torch.zeros(1, 1, 28, 28), str(path), opset_version=OPSET,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, **kw)
    import onnx
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    ops = [n.op_type for n in m.graph.node]
    bn = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    modes = sorted({next((a.i for a in n.attribute if a.name == "training_mode"), 0) for n in bn})
    return {"file": str(path), "bytes": path.stat().st_size, "opset": OPSET, "onnx_checker": "ok",
            "nodes": len(ops), "ops": sorted(set(ops)), "batchnorm_nodes": len(bn), "batchnorm_training_modes": modes,
            "export_args": "training=PRESERVE, do_constant_folding=False" if preserve else "defaults (training=EVAL)"}


def compare(k, t):
    """Differences between Kiln's logits k and PyTorch's t (same shape)."""
    d = np.abs(k.astype(np.float64) - t.astype(np.float64))
    rel1 = d / (1 + np.abs(t))
    plain = {}
    for floor in PLAIN_REL_FLOORS:
        big = np.abs(t) >= floor
        plain[f"{floor:g}"] = {"max": float((d[big] / np.abs(t[big])).max()), "logits": int(big.sum())}
    i = np.unravel_index(np.argmax(rel1), rel1.shape)
    return {"logits": int(t.size), "max_rel_1p": float(rel1.max()), "mean_rel_1p": float(rel1.mean()),
            "at": {"example": int(i[0]), "class": int(i[1]), "kiln": float(k[i]), "torch": float(t[i])},
            "max_abs": float(d.max()), "max_plain_rel_where_abs_torch_at_least": plain,
            # per example: the largest difference over the largest |logit| (a normwise relative difference)
            "max_example_norm_rel": float((d.max(1) / np.abs(t).max(1)).max()),
            "top1_agree": int((k.argmax(1) == t.argmax(1)).sum())}


def run_file(kiln, name, path, model_logits, torch_acc, test_x_npy, test_y, work, a):
    """Kiln fp32 and int8 figures of one .onnx file."""
    r = {}
    tag = f"s{a.cur_seed}-{name}"
    e = rb.kiln_json(kiln, ["eval", path, "--data", "fashion-mnist", "--threads", a.threads, "--json"], work, f"{tag}-eval")
    r["kiln_fp32_accuracy"] = e.get("accuracy")
    # logits of all test images from the same float32 array PyTorch saw
    yk = work / f"{tag}-logits.npy"
    rb.run_proc([kiln, "run", path, test_x_npy, "--output", yk, "--threads", a.threads, "--top", 1], work,
                f"{tag}-run")
    k = np.load(yk).reshape(model_logits.shape)
    r["fp32_vs_pytorch"] = compare(k, model_logits)
    r["kiln_fp32_accuracy_from_logits"] = float((k.argmax(1) == test_y).mean())
    # input check: Kiln's own loader gives the same logits as our array, bit for bit
    first = work / f"{tag}-first1000-x.npy"
    np.save(first, np.load(test_x_npy, mmap_mode="r")[:1000])
    ya, yb = work / f"{tag}-first1000-npy.npy", work / f"{tag}-first1000-loader.npy"
    rb.run_proc([kiln, "run", path, first, "--output", ya, "--threads", a.threads, "--top", 1], work, f"{tag}-run-a")
    rb.run_proc([kiln, "run", path, "--data", "fashion-mnist", "--count", 1000, "--output", yb, "--threads",
                 a.threads, "--top", 1], work, f"{tag}-run-b")
    r["input_check"] = {"examples": 1000, "identical": bool(np.array_equal(np.load(ya), np.load(yb))),
                        "max_abs": float(np.abs(np.load(ya) - np.load(yb)).max())}
    # int8
    q8 = work / f"{tag}-int8.safetensors"
    q = rb.kiln_json(kiln, ["quantize", path, "--calib-data", "fashion-mnist", "--calib", a.calib, "--out", q8,
                         "--threads", a.threads, "--json"], work, f"{tag}-quantize")
    e8 = rb.kiln_json(kiln, ["eval", q8, "--data", "fashion-mnist", "--threads", a.threads, "--json"], work,
                   f"{tag}-eval-int8")
    y8 = work / f"{tag}-int8-logits.npy"
    rb.run_proc([kiln, "run", q8, test_x_npy, "--output", y8, "--threads", a.threads, "--top", 1], work,
                f"{tag}-run-int8")
    k8 = np.load(y8).reshape(model_logits.shape)
    r["int8"] = {"calibration": q.get("calibration"), "calibration_examples": q.get("calibration_examples"),
                 "bytes": q.get("output_bytes"), "accuracy": e8.get("accuracy"),
                 "top1_agree_with_pytorch": int((k8.argmax(1) == model_logits.argmax(1)).sum()),
                 "max_abs_logit_vs_pytorch": float(np.abs(k8 - model_logits).max())}
    acc8 = e8.get("accuracy")
    r["int8"]["points_vs_pytorch"] = None if acc8 is None else 100 * (acc8 - torch_acc)
    r["pass"] = {"fp32_rel_1e-4": r["fp32_vs_pytorch"]["max_rel_1p"] <= REL_TOL,
                 "int8_within_1_point": acc8 is not None and abs(100 * (acc8 - torch_acc)) <= INT8_POINTS,
                 "same_inputs": r["input_check"]["identical"]}
    f = r["fp32_vs_pytorch"]
    log(f"seed {a.cur_seed} {name}: Kiln fp32 {100 * (r['kiln_fp32_accuracy'] or 0):.2f}% (PyTorch "
        f"{100 * torch_acc:.2f}%), max |k-t|/(1+|t|) {f['max_rel_1p']:.2e}, max abs {f['max_abs']:.2e}; "
        f"int8 {100 * (acc8 or 0):.2f}% ({r['int8']['calibration']}); inputs identical: {r['input_check']['identical']}")
    return r


def run_seed(kiln, seed, data, work, a, res):
    a.cur_seed = seed
    (xtr, ytr), (xte, yte), test_x_npy = data
    model, hist, train_s, others = train(seed, a.epochs, xtr, ytr, a.threads)
    t = logits_of(model, xte)
    acc = float((t.argmax(1) == yte).mean())
    log(f"seed {seed}: PyTorch test accuracy {100 * acc:.2f}% after {a.epochs} epochs ({train_s:.0f} s)")
    res["model"] = {"parameters": sum(p.numel() for p in model.parameters()),
                    "batchnorm_running_statistics": sum(b.numel() for n, b in model.named_buffers() if "running" in n)}
    s = {"seed": seed, "epochs": a.epochs, "train_s": round(train_s, 1), "train_other_cpus": round(others, 2),
         "history": hist,
         "pytorch_test_accuracy": acc, "files": {}}
    for name, preserve in (("folded", False), ("preserved", True)):
        path = work / f"s{seed}-cnn_bn_{name}.onnx"
        info = export(model, path, preserve)
        want = 2 if preserve else 0
        if info["batchnorm_nodes"] != want or info["batchnorm_training_modes"] not in ([], [0]):
            res["errors"].append(f"seed {seed} {name}: {info['batchnorm_nodes']} BatchNormalization nodes "
                                 f"(training modes {info['batchnorm_training_modes']}), expected {want} in inference form")
        try:
            r = run_file(kiln, name, path, t, acc, test_x_npy, yte, work, a)
        except rb.RunFailed as e:
            res["errors"].append(f"seed {seed} {name}: {e}")
            log(f"seed {seed} {name} FAILED: {e}")
            r = {"pass": {"fp32_rel_1e-4": False, "int8_within_1_point": False, "same_inputs": False}}
        s["files"][name] = {"onnx": info, **r}
    s["total_s"] = round(time.monotonic() - a.t_seed, 1)
    return s


# ---------------------------------------------------------------- report

def pct(x):
    return "n/a" if x is None else f"{100 * x:.2f}%"


def verdict(ok):
    return "PASS" if ok else "FAIL"


def summary(res):
    out = {}
    for name in ("folded", "preserved"):
        fs = [s["files"][name] for s in res["seeds"] if name in s["files"]]
        rel = [f["fp32_vs_pytorch"]["max_rel_1p"] for f in fs if "fp32_vs_pytorch" in f]
        pts = [f["int8"]["points_vs_pytorch"] for f in fs if f.get("int8", {}).get("points_vs_pytorch") is not None]
        out[name] = {"max_rel_1p_over_seeds": max(rel) if rel else None,
                     "int8_points_worst": min(pts) if pts else None,
                     "int8_points_mean": sum(pts) / len(pts) if pts else None,
                     "pass": {k: all(f["pass"][k] for f in fs) for k in ("fp32_rel_1e-4", "int8_within_1_point",
                                                                           "same_inputs")}}
    res["summary"] = out


def write_report(res, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results_onnx_accuracy.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    c, cfg, v = res["machine"], res["config"], res["versions"]
    seeds = [s["seed"] for s in res["seeds"]]
    L = ["# ONNX accuracy round trip: PyTorch CNN with batchnorm -> .onnx -> Kiln fp32 and int8 (issue 11)", "",
         f"Generated by `bench/onnx_accuracy.py` on {c.get('date_utc')}, Kiln {c.get('kiln_commit')}, "
         f"PyTorch {v['torch']}, onnx {v.get('onnx')}, NumPy {v['numpy']}.", "",
         f"CPU: **{c.get('model_name')}** ({c.get('nproc')} logical CPUs). Seeds {', '.join(map(str, seeds))}; "
         f"{cfg['epochs']} epoch{'s' if cfg['epochs'] != 1 else ''} each; {cfg['threads']} threads for PyTorch and Kiln.", ""]
    if cfg["quick"]:
        L += ["**Quick run** (one seed, short training): indicative only.", ""]
    L += ["## Targets", "", "| target | file | figure (worst over seeds) | verdict |", "| --- | --- | --- | --- |"]
    for name, sm in res.get("summary", {}).items():
        L.append(f"| Kiln fp32 logits within {REL_TOL:g} of PyTorch's, max \\|k − t\\| / (1 + \\|t\\|) | {name} | "
                 f"{sm['max_rel_1p_over_seeds']:.2e} | {verdict(sm['pass']['fp32_rel_1e-4'])} |"
                 if sm["max_rel_1p_over_seeds"] is not None else f"| fp32 | {name} | n/a | FAIL |")
        L.append(f"| Kiln int8 accuracy within {INT8_POINTS:g} point of PyTorch's | {name} | "
                 + (f"{sm['int8_points_worst']:+.2f} points (mean {sm['int8_points_mean']:+.2f})"
                    if sm["int8_points_worst"] is not None else "n/a")
                 + f" | {verdict(sm['pass']['int8_within_1_point'])} |")
    L += ["", "## Per seed", "",
          "| seed | file | BN nodes | PyTorch | Kiln fp32 | max \\|k−t\\|/(1+\\|t\\|) | max abs | "
          "max \\|k−t\\|/\\|t\\| (\\|t\\| ≥ 1e-3; ≥ 1) | max per-example normwise | "
          "top-1 agree fp32 | Kiln int8 (calibration) | int8 − PyTorch | top-1 agree int8 | same inputs |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in res["seeds"]:
        for name, f in s["files"].items():
            if "fp32_vs_pytorch" not in f:
                L.append(f"| {s['seed']} | {name} | {f['onnx']['batchnorm_nodes']} | {pct(s['pytorch_test_accuracy'])} | "
                         "failed | | | | | | | | | |")
                continue
            d, q = f["fp32_vs_pytorch"], f["int8"]
            pr = d["max_plain_rel_where_abs_torch_at_least"]
            L.append(f"| {s['seed']} | {name} | {f['onnx']['batchnorm_nodes']} | {pct(s['pytorch_test_accuracy'])} | "
                     f"{pct(f['kiln_fp32_accuracy'])} | {d['max_rel_1p']:.2e} | {d['max_abs']:.2e} | "
                     f"{pr['0.001']['max']:.2e}; {pr['1']['max']:.2e} | {d['max_example_norm_rel']:.2e} | {d['top1_agree']:,}/{d['logits'] // 10:,} | {pct(q['accuracy'])} "
                     f"({q['calibration']}) | {q['points_vs_pytorch']:+.2f} | {q['top1_agree_with_pytorch']:,}/"
                     f"{d['logits'] // 10:,} | {'yes' if f['input_check']['identical'] else 'NO'} |")
    L += ["", "Training (PyTorch, train loss per epoch): "
          + "; ".join(f"seed {s['seed']}: " + ", ".join(f"{h['train_loss']:.4f}" for h in s["history"])
                      + f" ({s['train_s']:.0f} s, other processes using {s['train_other_cpus']:.2f} CPUs meanwhile; whole seed "
                        f"{s['total_s']:.0f} s)" for s in res["seeds"]) + "."]
    L += ["", "## Method", "",
          "* Model: the reference CNN (`examples/fashion_cnn.kiln`, `tests/ref/torch_ref.py`) with a BatchNorm2d after "
          "each conv (convs without bias): conv 32 3x3 pad 1, BN, ReLU, max pool 2, conv 64 3x3 pad 1, BN, ReLU, "
          f"max pool 2, flatten, dense 128, ReLU, dense 10 ({res['model']['parameters']:,} parameters, "
          f"{res['model']['batchnorm_running_statistics']} batchnorm running statistics).",
          f"* Training in PyTorch: Adam lr {LR:g}, batch {BATCH}, {cfg['epochs']} epoch(s) over the 60,000 training images "
          "(seeded shuffle each epoch), mean cross-entropy, `torch.manual_seed(seed)`, "
          f"`torch.set_num_threads({cfg['threads']})`.",
          "* Inputs: each uint8 pixel times `(1.0f / 255.0f)` in float32, as Kiln's loader gathers them "
          "(`src/data/dataset.c`; `pixel / 255` would differ by one ulp for "
          f"{res['checks']['pixels_differing_from_div255']} of the 256 pixel values). \"Same inputs\": "
          "`kiln run FILE --data fashion-mnist --count 1000` (Kiln's loader) gives the same logits, bit for bit, "
          "as `kiln run FILE X.npy` of the first 1,000 rows of the array PyTorch evaluated.",
          f"* Export: `torch.onnx.export`, opset {OPSET}, dynamic batch, model in eval mode. *folded*: defaults "
          "(training=EVAL, constant folding), which fold each BatchNormalization into its Conv; *preserved*: "
          "`training=TrainingMode.PRESERVE, do_constant_folding=False`, which keeps the 2 BatchNormalization nodes in "
          "inference form (training_mode 0); Kiln's importer makes them `batchnorm` nodes and its optimiser folds "
          "them into the convs at load. `onnx.checker.check_model(full_check=True)` accepts both files.",
          "* fp32: PyTorch's logits of all 10,000 test images against `kiln run FILE.onnx TEST_X.npy --output "
          "Y.npy`. The target's figure is the largest `|kiln - torch| / (1 + |torch|)` over the 100,000 logits. Also "
          "given: plain relative `|kiln - torch| / |torch|` over the logits with |torch| >= 1e-3 and >= 1 (it is "
          "unbounded near zero: an absolute difference of a few 1e-6, float32 rounding of sums of ~3,000 products, "
          "is large beside a logit of 0.003), and the per-example normwise `max |kiln - torch| / max |torch|` over "
          "each example's 10 logits. Kiln fp32 accuracy is `kiln eval FILE.onnx --data fashion-mnist`.",
          f"* int8: `kiln quantize FILE.onnx --calib-data fashion-mnist --calib {cfg['calib']}` (a seeded random "
          "sample of training images, method auto: min-max or percentile, whichever agrees better with fp32 on "
          "the calibration set), then `kiln eval` of the int8 model; PyTorch's accuracy is the fp32 model's.",
          f"* Command: `{' '.join(cfg['argv'])}`; every child's command line and output are in the scratch directory "
          f"`{cfg['work']}`."]
    if res["errors"]:
        L += ["", "## Errors", ""] + [f"* {e}" for e in res["errors"]]
    (out_dir / "RESULTS_ONNX_ACCURACY.md").write_text("\n".join(L) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default=str(rb.ROOT / "build"))
    ap.add_argument("--seeds")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--calib", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    kiln = Path(a.build).resolve() / "kiln"
    if not kiln.exists():
        raise SystemExit(f"onnx_accuracy: {kiln} not found; build first (make build)")
    q = a.quick
    seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else ([0] if q else [0, 1, 2])
    a.epochs = a.epochs or (1 if q else 4)
    work = Path(tempfile.mkdtemp(prefix="kiln-onnx-acc-"))
    out_dir = Path(a.out).resolve() if a.out else (work if q else HERE)
    log(f"scratch directory {work}; results to {out_dir}")
    try:
        import onnx
    except ImportError:
        raise SystemExit("onnx_accuracy: /usr/bin/python3 cannot import onnx; install python3-onnx (scripts/setup-deps)")
    res = {"config": {"quick": q, "seeds": seeds, "epochs": a.epochs, "batch": BATCH, "optimizer": f"adam lr {LR:g}",
                      "calib": a.calib, "threads": a.threads, "opset": OPSET, "argv": sys.argv, "work": str(work)},
           "targets": {"max_rel_1p": REL_TOL, "int8_points": INT8_POINTS},
           "machine": rb.machine_info(a.build), "versions": {"torch": torch.__version__, "onnx": onnx.__version__,
                                                            "numpy": np.__version__},
           "checks": {}, "seeds": [], "errors": []}
    px = np.arange(256, dtype=np.uint8)
    res["checks"]["pixels_differing_from_div255"] = int((kiln_scale(px) != px.astype(np.float32) / np.float32(255)).sum())
    train_d, test_d = load("train"), load("t10k")
    test_x_npy = work / "test_x.npy"
    np.save(test_x_npy, test_d[0])
    for seed in seeds:
        a.t_seed = time.monotonic()
        res["seeds"].append(run_seed(kiln, seed, (train_d, test_d, test_x_npy), work, a, res))
        log(f"seed {seed} done in {res['seeds'][-1]['total_s']:.0f} s")
    summary(res)
    write_report(res, out_dir)
    ok = all(all(sm["pass"].values()) for sm in res["summary"].values())
    log(f"wrote {out_dir / 'RESULTS_ONNX_ACCURACY.md'} and {out_dir / 'results_onnx_accuracy.json'}; "
        f"targets {'all met' if ok else 'NOT all met'}")
    return 0 if ok and not res["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
