#!/usr/bin/python3
"""PyTorch peer of Kiln's inference runtime for the inference bench (bench/run_infer_bench.py).

Loads the very weights Kiln trained from Kiln's safetensors file (8-byte little-endian header
length, JSON header, raw F32 data; tensor names conv1.*, conv2.*, fc1.*, fc2.* as in
tests/ref/torch_ref.py's CNN) into the reference CNN and runs it as:

  eager            the nn.Module under torch.inference_mode()
  script           torch.jit.freeze(torch.jit.script(model).eval())
  trace            torch.jit.freeze(torch.jit.trace(model, x).eval())
  ofi              torch.jit.optimize_for_inference(torch.jit.script(model).eval())
                   (freeze + PyTorch's own inference passes; reported as an extra)
  int8-ENGINE      static post-training quantisation with torch.ao.quantization (eager mode:
                   QuantStub/DeQuantStub, conv+relu and linear+relu fused, the engine's default
                   qconfig, calibrated on 1000 training images drawn with a seeded permutation
                   like `kiln quantize --calib 1000`), ENGINE = onednn | qnnpack (fbgemm/x86 are
                   absent from Debian's build), run with torch.backends.quantized.engine = ENGINE
  int8-ENGINE-jit  the same quantised model, traced and frozen

Commands (each prints one JSON object on stdout):
  logits MODEL --variant V --input X.npy --out Y.npy   logits of a (N,1,28,28) float32 batch
  latency MODEL --variants V,V,... [--warmup 200] [--runs 2000]
                   batch-1 latency: after the warm-up, every run is timed on its own
                   (time.perf_counter_ns around the call); p50/p99/mean in microseconds.
                   The input is the one `kiln bench` uses: x[i] = (i % 251) / 251.
  eval MODEL --variant V                              test-set accuracy (10,000 images)
  export-onnx MODEL --out M.onnx [--opset 13]         torch.onnx.export of the fp32 model

All commands run with torch.set_num_threads(1) (and one inter-op thread) unless --threads says
otherwise.
"""
import argparse
import json
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The reference models, defined once for the tests and the benches.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
from torch_ref import CNN, MLP  # noqa: E402
from peer_data import DATA_DIR, load_split  # noqa: E402,F401
CALIB_N, CALIB_SEED = 1000, 0


class QuantCNN(nn.Module):
    """The same layers written with modules so that eager-mode quantisation can fuse and swap them."""

    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Linear(3136, 128)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.quant(x)
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        return self.dequant(self.fc2(x))


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name} is {info['dtype']}, expected F32 (an fp32 Kiln model)")
        a, b = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(raw, dtype="<f4", count=(b - a) // 4, offset=base + a)
                                     .reshape(info["shape"]).copy())
    return out


def load_weights(model, path):
    sd = read_safetensors(path)
    want = set(model.state_dict().keys())
    missing = sorted(want - set(sd))
    if missing:
        raise SystemExit(f"{path}: missing tensors {missing}")
    model.load_state_dict({k: sd[k] for k in want}, strict=True)
    return model.eval()


def bench_input():
    """The input `kiln bench` times: x[i] = (i % 251) / 251."""
    return torch.from_numpy((np.arange(784) % 251).astype(np.float32) / np.float32(251)).reshape(1, 1, 28, 28)


def build(variant, weights):
    """Returns (callable, info) for a variant; the callable maps a float32 NCHW batch to logits."""
    example = bench_input()
    info = {"variant": variant}
    if variant in ("eager", "script", "trace", "ofi"):
        m = load_weights(CNN(), weights)
        if variant == "eager":
            return m, info
        with torch.no_grad():
            if variant == "script":
                return torch.jit.freeze(torch.jit.script(m).eval()), info
            if variant == "trace":
                return torch.jit.freeze(torch.jit.trace(m, example).eval()), info
            return torch.jit.optimize_for_inference(torch.jit.script(m).eval()), info
    if variant.startswith("int8-"):
        parts = variant.split("-")
        engine, jit = parts[1], len(parts) > 2 and parts[2] == "jit"
        if engine not in torch.backends.quantized.supported_engines:
            raise SystemExit(f"quantized engine {engine} is not in this PyTorch "
                             f"(supported: {torch.backends.quantized.supported_engines})")
        torch.backends.quantized.engine = engine
        m = load_weights(QuantCNN(), weights)
        m = torch.ao.quantization.fuse_modules(m, [["conv1", "relu1"], ["conv2", "relu2"], ["fc1", "relu3"]])
        m.qconfig = torch.ao.quantization.get_default_qconfig(engine)
        qconfig = str(m.qconfig)
        torch.ao.quantization.prepare(m, inplace=True)
        x_train, _ = load_split("train")
        g = torch.Generator().manual_seed(CALIB_SEED)
        idx = torch.randperm(x_train.shape[0], generator=g)[:CALIB_N]
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, CALIB_N, 100):
                m(x_train[idx[i:i + 100]])
        torch.ao.quantization.convert(m, inplace=True)
        info.update(engine=engine, qconfig=qconfig, calibration_images=CALIB_N, calibration_s=round(time.perf_counter() - t0, 3))
        m.eval()
        if jit:
            with torch.no_grad():
                m = torch.jit.freeze(torch.jit.trace(m, example).eval())
        return m, info
    raise SystemExit(f"unknown variant {variant}")


def rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cmd_latency(a):
    x = bench_input()
    out = {"command": "latency", "threads": torch.get_num_threads(), "torch": torch.__version__,
           "warmup": a.warmup, "runs": a.runs, "variants": {}}
    for v in a.variants.split(","):
        m, info = build(v, a.model)
        lat = np.empty(a.runs, dtype=np.int64)
        pc = time.perf_counter_ns
        with torch.inference_mode():
            for _ in range(a.warmup):
                m(x)
            t_all = pc()
            for i in range(a.runs):
                t = pc()
                m(x)
                lat[i] = pc() - t
            total = pc() - t_all
        lat.sort()
        info.update(latency_p50_us=round(float(lat[a.runs // 2]) / 1e3, 2),
                    latency_p99_us=round(float(lat[int((a.runs - 1) * 0.99)]) / 1e3, 2),
                    latency_mean_us=round(float(lat.mean()) / 1e3, 2),
                    latency_min_us=round(float(lat[0]) / 1e3, 2),
                    throughput_per_s=round(a.runs / (total / 1e9), 1))
        if v.startswith("int8-"):
            info["engine_at_run"] = torch.backends.quantized.engine
        out["variants"][v] = info
        print(f"{v}: p50 {info['latency_p50_us']} us, p99 {info['latency_p99_us']} us", file=sys.stderr)
    out["peak_rss_bytes"] = rss_bytes()
    print(json.dumps(out))


def cmd_logits(a):
    m, info = build(a.variant, a.model)
    x = torch.from_numpy(np.load(a.input).astype(np.float32)).reshape(-1, 1, 28, 28)
    with torch.inference_mode():
        y = m(x).numpy().astype(np.float32)
    np.save(a.out, y)
    print(json.dumps({"command": "logits", "variant": a.variant, "examples": int(x.shape[0]), "out": a.out, **info}))


def cmd_eval(a):
    m, info = build(a.variant, a.model)
    x, y = load_split("t10k")
    correct, t0 = 0, time.perf_counter()
    with torch.inference_mode():
        for i in range(0, x.shape[0], 500):
            correct += (m(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum().item()
    print(json.dumps({"command": "eval", "variant": a.variant, "examples": int(x.shape[0]),
                      "accuracy": correct / x.shape[0], "seconds": round(time.perf_counter() - t0, 3), **info}))


def cmd_export_onnx(a):
    m = load_weights(CNN(), a.model)
    with torch.no_grad():
        torch.onnx.export(m, bench_input(), a.out, opset_version=a.opset, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    print(json.dumps({"command": "export-onnx", "out": a.out, "opset": a.opset, "bytes": os.path.getsize(a.out),
                      "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["latency", "logits", "eval", "export-onnx"])
    ap.add_argument("model", help="Kiln fp32 model (safetensors)")
    ap.add_argument("--variant", default="eager")
    ap.add_argument("--variants", default="eager,script,trace")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--input")
    ap.add_argument("--out")
    ap.add_argument("--opset", type=int, default=13)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    {"latency": cmd_latency, "logits": cmd_logits, "eval": cmd_eval, "export-onnx": cmd_export_onnx}[a.command](a)


if __name__ == "__main__":
    main()
