#!/usr/bin/python3
"""Kiln models exported to ONNX, run by ONNX Runtime (npm onnxruntime-node, bench/ort_peer.js):
the same outputs as Kiln's own runtime (`kiln run`) within 1e-5 relative (issue 11's round trip),
fp32 and int8 (QDQ).

usage: interop.py [--count 16] [--keep DIR] [--only cnn,default,vit,lm] [--opt all|basic|disabled]
       interop.py MODEL.safetensors ... [--shape 1x28x28] [--int32] [--count 16]

With no MODEL, trains briefly with `kiln train` (seconds each): the reference CNN
(examples/fashion_cnn.kiln) and the default model (examples/fashion_default.kiln) on
Fashion-MNIST, the ViT (examples/fashion_vit.kiln) on Fashion-MNIST and the byte-level LM
(examples/fortunes_lm.kiln) on the fortunes corpus (scripts/fortunes-corpus); quantises each with
`kiln quantize` and compares both forms on the first --count test images or held-out 128-byte
windows of the corpus. Needs bench/node_modules (`npm ci --ignore-scripts` in bench/, as `make
bench` does), Debian's dataset-fashion-mnist and fortunes. Prints one JSON line per model (the
largest relative difference |kiln - ort| / (1 + |kiln|) over every output value) and exits 1 if
any exceeds 1e-5.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
TARGET = 1e-5

# name: (spec, kiln train options, kiln quantize options); the smallest runs that learn something
TRAINED = {
    "cnn": ("examples/fashion_cnn.kiln", ["--data", "fashion-mnist", "--steps", "60", "--batch", "64"],
            ["--calib-data", "fashion-mnist", "--calib", "500"]),
    "default": ("examples/fashion_default.kiln", ["--data", "fashion-mnist", "--steps", "60", "--batch", "64"],
                ["--calib-data", "fashion-mnist", "--calib", "500"]),
    "vit": ("examples/fashion_vit.kiln", ["--data", "fashion-mnist", "--steps", "60", "--batch", "32"],
            ["--calib-data", "fashion-mnist", "--calib", "500"]),
    "lm": ("examples/fortunes_lm.kiln", ["--data", "text:{corpus}", "--context", "128", "--steps", "30", "--batch", "16"],
           ["--calib-data", "text:{corpus}", "--calib", "64"]),
}


def fashion_images(count):
    """The first count Fashion-MNIST test images as Kiln reads them: bytes x (1 / 255) in float32."""
    with gzip.open(FASHION, "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    return (raw[: count * 784].reshape(count, 1, 28, 28).astype(np.float32) * np.float32(1.0 / 255.0))


def corpus_windows(corpus, count, context=128):
    """count windows of context bytes from the held-out last 5% of the corpus, as int32 token ids."""
    data = np.fromfile(corpus, dtype=np.uint8)
    start = len(data) - len(data) // 20
    step = max(1, (len(data) - start - context) // count)
    return np.stack([data[start + i * step: start + i * step + context] for i in range(count)]).astype(np.int32)


def io_names(kiln, model):
    """The names of the model's (first) input and output, from `kiln info --json`."""
    info = json.loads(subprocess.run([kiln, "info", model, "--json"], check=True, capture_output=True, text=True).stdout)
    layers = info["layers"]
    inputs = [l["name"] for l in layers if l["op"] == "input"]
    return inputs[0], layers[-1]["name"]


def compare(kiln, model, x, tmp, opt):
    """Exports model, runs it in Kiln and in ONNX Runtime on x; the result line as a dict."""
    onnx_path, xk, yk, xo, yo = (os.path.join(tmp, n) for n in ("m.onnx", "x.npy", "yk.npy", "x.bin", "yo.f32"))
    np.save(xk, x)
    x.tofile(xo)
    subprocess.run([kiln, "export", model, "--onnx", onnx_path], check=True, capture_output=True)
    subprocess.run(["/usr/bin/python3", "-c", "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), "
                    "full_check=True)", onnx_path], check=True, capture_output=True)
    name_in, name_out = io_names(kiln, model)
    subprocess.run([kiln, "run", model, "--input", f"{name_in}={xk}", "--output", f"{name_out}={yk}"], check=True,
                   capture_output=True)
    cmd = ["node", os.path.join(ROOT, "bench/ort_peer.js"), "run", onnx_path, xo, yo, "--shape",
           "x".join(str(d) for d in x.shape), "--opt", opt] + (["--int32"] if x.dtype == np.int32 else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"model": model, "error": r.stdout.strip() or r.stderr.strip()}
    a = np.load(yk).reshape(-1).astype(np.float64)
    b = np.fromfile(yo, dtype=np.float32).astype(np.float64)
    if a.shape != b.shape:
        return {"model": model, "error": f"kiln gave {a.size} values, onnxruntime {b.size}"}
    rel = np.abs(a - b) / (1 + np.abs(a))
    return {"model": os.path.basename(model), "examples": int(x.shape[0]), "values": int(a.size),
            "max_relative_difference": float(rel.max()), "values_over_1e-5": int((rel > TARGET).sum()),
            "within_1e-5": bool(rel.max() <= TARGET)}


def train_all(kiln, out, names):
    """Trains and quantises the models named; [(label, model path, input kind)]."""
    corpus = os.path.join(out, "fortunes.txt")
    models = []
    for name in names:
        spec, train, quant = TRAINED[name]
        if name == "lm" and not os.path.exists(corpus):
            subprocess.run([os.path.join(ROOT, "scripts/fortunes-corpus"), corpus], check=True)
        fp32, int8 = os.path.join(out, f"{name}.safetensors"), os.path.join(out, f"{name}_int8.safetensors")
        subprocess.run([kiln, "train", os.path.join(ROOT, spec)] + [a.format(corpus=corpus) for a in train] +
                       ["--opt", "adamw", "--lr", "0.002", "--seed", "0", "--quiet", "--out", fp32,
                        "--metrics", os.path.join(out, f"{name}.metrics.jsonl"), "--plot", os.path.join(out, f"{name}.svg")],
                       check=True, capture_output=True)
        subprocess.run([kiln, "quantize", fp32, "--out", int8] + [a.format(corpus=corpus) for a in quant], check=True,
                       capture_output=True)
        kind = "tokens" if name == "lm" else "images"
        models += [(name, fp32, kind), (name + "_int8", int8, kind)]
    return models, corpus


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*")
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build/kiln"))
    ap.add_argument("--shape", default="1x28x28", help="per-example input shape of MODELs given")
    ap.add_argument("--int32", action="store_true", help="MODELs given take int32 token ids (below 256)")
    ap.add_argument("--count", type=int, default=16)
    ap.add_argument("--keep", help="train into this directory and keep the models")
    ap.add_argument("--only", default="cnn,default,vit,lm")
    ap.add_argument("--opt", default="all", help="ONNX Runtime's graph optimisation level")
    a = ap.parse_args()
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        out = a.keep or tmp
        os.makedirs(out, exist_ok=True)
        if a.models:
            shape = [int(d) for d in a.shape.split("x")]
            rs = np.random.RandomState(0)
            x = (rs.randint(0, 256, size=(a.count, *shape)).astype(np.int32) if a.int32
                 else rs.rand(a.count, *shape).astype(np.float32))
            cases = [(m, m, x) for m in a.models]
        else:
            models, corpus = train_all(a.kiln, out, a.only.split(","))
            inputs = {}
            for _, _, kind in models:
                if kind not in inputs:
                    inputs[kind] = fashion_images(a.count) if kind == "images" else corpus_windows(corpus, a.count)
            cases = [(label, path, inputs[kind]) for label, path, kind in models]
        for label, path, x in cases:
            res = compare(a.kiln, path, x, tmp, a.opt)
            res["model"] = label
            bad += not res.get("within_1e-5", False)
            print(json.dumps(res), flush=True)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
