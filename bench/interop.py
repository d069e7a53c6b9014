#!/usr/bin/python3
"""Kiln models exported to ONNX, run by ONNX Runtime (npm onnxruntime-node, bench/ort_peer.js):
the same outputs as Kiln's own runtime within 1e-5 relative (issue 11's round trip).

usage: interop.py [MODEL.safetensors ...] [--shape 1x28x28] [--count 16]
  (default: out/fashion_default.safetensors, written by `make run`). Needs bench/node_modules
  (`npm ci --ignore-scripts` in bench/, as `make bench` does). Prints one JSON line per model and
  exits 1 if any differs.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="*", default=[os.path.join(ROOT, "out/fashion_default.safetensors")])
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build/kiln"))
    ap.add_argument("--shape", default="1x28x28")
    ap.add_argument("--count", type=int, default=16)
    a = ap.parse_args()
    shape = [int(d) for d in a.shape.split("x")]
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        x = np.random.RandomState(0).rand(a.count, *shape).astype(np.float32)
        np.save(os.path.join(tmp, "x.npy"), x)
        x.tofile(os.path.join(tmp, "x.f32"))
        for model in a.models:
            onnx_path = os.path.join(tmp, "m.onnx")
            subprocess.run([a.kiln, "export", model, "--onnx", onnx_path], check=True, capture_output=True)
            subprocess.run([a.kiln, "run", model, "--input", os.path.join(tmp, "x.npy"), "--output",
                            os.path.join(tmp, "yk.npy")], check=True, capture_output=True)
            r = subprocess.run(["node", os.path.join(ROOT, "bench/ort_peer.js"), "logits", onnx_path,
                                os.path.join(tmp, "x.f32"), os.path.join(tmp, "yo.f32")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(json.dumps({"model": model, "error": r.stdout.strip() or r.stderr.strip()}))
                bad += 1
                continue
            yk = np.load(os.path.join(tmp, "yk.npy")).reshape(a.count, -1)
            yo = np.fromfile(os.path.join(tmp, "yo.f32"), dtype=np.float32).reshape(a.count, -1)
            diff = float(np.max(np.abs(yk - yo) / (1 + np.abs(yk))))
            ok = diff <= 1e-5
            bad += not ok
            print(json.dumps({"model": model, "examples": a.count, "max_relative_difference": diff,
                              "within_1e-5": ok}))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
