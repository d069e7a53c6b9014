#!/usr/bin/python3
"""Exports small seeded PyTorch models to ONNX (opset 13, dynamic batch) with their PyTorch
outputs: the oracle for tests/test_onnx_import.c.

For each model NAME it writes into OUT_DIR
  NAME.onnx          torch.onnx.export(..., opset_version=13, input_names=['x'],
                     output_names=['y'], dynamic_axes={'x': {0: 'N'}, 'y': {0: 'N'}})
  NAME.safetensors   x: the input (3, per-example dims...), F32
                     y: PyTorch's output for x (3, ...), F32
                     metadata "ops": the exported graph's op types, in node order
Models are in eval mode; the reference y is computed in fp64 from the fp32 weights and input
(the true result rounded to fp32), and checked here against the fp32 forward.

Besides those, the manifest OUT_DIR/onnx_models.txt lists one "NAME per-example-dims" line per
model (e.g. "mlp 1,8,8"), and OUT_DIR/elu.onnx is a model with an op the importer is not
expected to support (Gemm then Elu, the Elu node named "/Elu"), for the test of its error
message.

usage: onnx_models.py OUT_DIR [--seed 0]
"""
import argparse
import contextlib
import io
import json
import os
import struct
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_ops import write_safetensors  # noqa: E402  (one safetensors writer for the references)


def onnx_nodes(path):
    """(op_type, name) of each node of an ONNX file's graph in order, read without the onnx
    package: the ModelProto's graph (field 7), its nodes (field 1), their name (3), op_type (4)."""
    def varint(b, i):
        v, s = 0, 0
        while True:
            c = b[i]
            i += 1
            v |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return v, i

    def fields(b):
        i = 0
        while i < len(b):
            key, i = varint(b, i)
            wt = key & 7
            if wt == 0:
                v, i = varint(b, i)
            elif wt == 1:
                v, i = b[i:i + 8], i + 8
            elif wt == 5:
                v, i = b[i:i + 4], i + 4
            elif wt == 2:
                n, i = varint(b, i)
                v, i = b[i:i + n], i + n
            else:
                raise ValueError("unexpected wire type %d" % wt)
            yield key >> 3, v

    with open(path, "rb") as f:
        model = f.read()
    nodes = []
    for fno, graph in fields(model):
        if fno == 7:
            for gno, node in fields(graph):
                if gno == 1:
                    f = {n: v.decode() for n, v in fields(node) if n in (3, 4)}
                    nodes.append((f.get(4, ""), f.get(3, "")))
    return nodes


# a. Flatten + Gemm + Relu
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


# b, c. Conv, BatchNorm, Relu, MaxPool, strided Conv, Sigmoid, flatten, Gemm on (1, 16, 16)
class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16 * 4 * 4, 10)
        with torch.no_grad():  # non-trivial running statistics and affine parameters
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.3, 0.3)

    def forward(self, x):
        x = self.pool(F.relu(self.bn(self.conv1(x))))
        x = torch.sigmoid(self.conv2(x))
        return self.fc(x.flatten(1))


# d. AveragePool, Tanh, LeakyRelu, Add/Mul/Sub/Div by a broadcast constant, GlobalAveragePool,
# reshape(x.shape[0], -1) (shape arithmetic), Softmax, on (4, 6, 6)
class Ops(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.register_buffer("c", torch.rand(4, 1, 3) + 0.5)  # broadcast over rows: (4, 1, 3)
        self.register_buffer("d", torch.rand(3) + 0.5)        # over channels and rows: (3,)

    def forward(self, x):
        x = torch.tanh(self.pool(x))                          # (N, 4, 3, 3)
        x = F.leaky_relu(x, 0.1)
        x = (x + self.c) * self.d
        x = (x - self.d) / self.c
        x = self.gap(x)                                       # (N, 4, 1, 1)
        x = x.reshape(x.shape[0], -1)                         # (N, 4)
        return torch.softmax(x, dim=1)


# e. MatMul by an initializer, Add, Transpose perm [0, 2, 1], on (5, 8)
class MatMulT(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 6) * 0.3)
        self.b = nn.Parameter(torch.randn(6) * 0.1)

    def forward(self, x):
        return (x @ self.w + self.b).transpose(1, 2)


# f. two 1x1 Conv branches, Concat on channels, Relu, on (3, 4, 4)
class ConcatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 2, 1)
        self.b = nn.Conv2d(3, 5, 1)

    def forward(self, x):
        return F.relu(torch.cat([self.a(x), self.b(x)], dim=1))


# a pre-norm transformer encoder block (opset 17: LayerNormalization, Split, MatMul of two tensors,
# Transpose of heads, Softmax, and the exporter's shape arithmetic around the reshapes); width d,
# `heads` heads, MLP width ff. The test's is Encoder(); bench/onnx_latency.py stacks larger ones.
class Encoder(nn.Module):
    def __init__(self, d=16, heads=2, ff=32):
        super().__init__()
        self.d, self.heads = d, heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        b, t, d = x.shape   # traced: the last reshape's target is shape arithmetic in the graph
        hd = self.d // self.heads
        q, k, v = self.qkv(self.ln1(x)).split(self.d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, hd).transpose(1, 2) for z in (q, k, v))
        a = torch.softmax(q @ k.transpose(-2, -1) / hd ** 0.5, dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.relu(self.fc1(self.ln2(x))))


# the same block with GELU, exported at opset 13: LayerNorm becomes ReduceMean/Sub/Pow/Sqrt/Div and
# GELU becomes Div/Erf/Add/Mul (the decomposed forms older exporters emit)
class EncoderGelu(Encoder):
    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(16, dim=-1)
        q, k, v = (z.reshape(b, t, 2, 8).transpose(1, 2) for z in (q, k, v))
        a = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1) @ v
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


# Resize (nearest: asymmetric/floor; bilinear: pytorch_half_pixel), Clip as ReLU6 and Hardtanh, on (3, 5, 5)
class UpNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        x = F.relu6(F.interpolate(self.a(x), scale_factor=2, mode="nearest"))
        x = F.interpolate(self.b(x), scale_factor=1.5, mode="bilinear", align_corners=False)
        return F.hardtanh(x, -0.5, 0.5)


# 1-d convolutions and pools (audio-like), on (2, 16)
class Conv1dNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(2, 4, 3, padding=1)
        self.b = nn.Conv1d(4, 3, 3, stride=2, dilation=2)
        self.up = nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1)

    def forward(self, x):
        x = F.max_pool1d(F.relu(self.a(x)), 2)
        return self.up(F.avg_pool1d(torch.tanh(self.b(F.pad(x, (2, 2)))), 2))


def qdq_model(path, seed):
    """A QDQ model as ONNX Runtime's static quantiser writes one (built with onnx.helper): the input
    quantised to uint8 and dequantised, a Conv whose int8 weights are dequantised per output channel,
    Relu, the activation quantised and dequantised again, Flatten, Gemm on dequantised weights.
    Returns (model, reference forward in float64)."""
    from onnx import TensorProto, helper, numpy_helper
    g = np.random.RandomState(seed)
    w = g.randint(-127, 128, size=(4, 2, 3, 3)).astype(np.int8)
    ws = (g.rand(4) * 0.01 + 0.005).astype(np.float32)
    b = (g.randn(4) * 0.1).astype(np.float32)
    fw = g.randint(-127, 128, size=(5, 4 * 6 * 6)).astype(np.int8)
    fs = np.float32(0.004)
    xs, xz, ys, yz = np.float32(0.02), np.uint8(128), np.float32(0.05), np.uint8(0)
    fb = (g.randn(5) * 0.1).astype(np.float32)
    init = [numpy_helper.from_array(a, n) for a, n in (
        (w, "w_q"), (ws, "w_s"), (np.zeros(4, np.int8), "w_z"), (b, "b"), (fw, "fw_q"), (np.array(fs), "fw_s"),
        (np.int8(0), "fw_z"), (np.array(xs), "x_s"), (np.array(xz), "x_z"), (np.array(ys), "y_s"),
        (np.array(yz), "y_z"), (fb, "fb"))]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], axis=0),
        helper.make_node("Conv", ["xd", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "y_s", "y_z"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "y_s", "y_z"], ["rd"]),
        helper.make_node("Flatten", ["rd"], ["f"]),
        helper.make_node("DequantizeLinear", ["fw_q", "fw_s", "fw_z"], ["fw"]),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
    ]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with open(path, "wb") as f:
        f.write(model.SerializeToString())

    def fq(t, s, z, lo, hi):   # fake quantisation, rounding halves to even as ONNX
        return (torch.clamp(torch.round(t / s) + z, lo, hi) - z) * s

    def forward(x):
        x = fq(x, float(xs), float(xz), 0, 255)
        wd = torch.from_numpy(w.astype(np.float64) * ws.astype(np.float64)[:, None, None, None])
        c = F.conv2d(x, wd, torch.from_numpy(b.astype(np.float64)), padding=1)
        r = fq(F.relu(c), float(ys), float(yz), 0, 255).flatten(1)
        fwd = torch.from_numpy(fw.astype(np.float64) * float(fs))
        return r @ fwd.T + torch.from_numpy(fb.astype(np.float64))
    return forward


# not expected to be supported: Gemm then Elu
class EluNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return F.elu(self.fc(x))


def export(model, x, path, **kw):
    # the exporter's warnings and "Exported graph" diagnostics are noise in a test log
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        kw.setdefault("opset_version", 13)
        torch.onnx.export(model, x, path, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, **kw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    torch.manual_seed(a.seed)

    cnn = CNN()
    # (name, model, per-example shape, extra export arguments)
    models = [
        ("mlp", MLP(), (1, 8, 8), {}),
        ("cnn_folded", cnn, (1, 16, 16), {}),  # default training=EVAL: batchnorm folded
        ("cnn_bn", cnn, (1, 16, 16), {"training": torch.onnx.TrainingMode.PRESERVE, "do_constant_folding": False}),
        ("ops", Ops(), (4, 6, 6), {}),
        ("matmul", MatMulT(), (5, 8), {}),
        ("concat", ConcatNet(), (3, 4, 4), {}),
        ("encoder", Encoder(), (5, 16), {"opset_version": 17}),
        ("encoder13", EncoderGelu(), (5, 16), {}),
        ("upnet", UpNet(), (3, 5, 5), {}),
        ("conv1d", Conv1dNet(), (2, 16), {}),
    ]
    manifest = []
    for name, model, shape, kw in models:
        model.eval()
        x = torch.randn(3, *shape)
        path = os.path.join(a.out_dir, name + ".onnx")
        export(model, x, path, **kw)
        with torch.no_grad():
            y32 = model(x)
            y = model.double()(x.double())
            model.float()
        err = ((y32.double() - y).abs() / (1 + y.abs())).max().item()
        assert err < 1e-5, f"{name}: fp32 and fp64 forwards differ by {err}"
        ops = [op for op, _ in onnx_nodes(path)]
        write_safetensors(os.path.join(a.out_dir, name + ".safetensors"), {"x": x, "y": y},
                          {"model": name, "ops": " ".join(ops)})
        manifest.append(f"{name} {','.join(map(str, shape))}")

    forward = qdq_model(os.path.join(a.out_dir, "qdq.onnx"), a.seed)
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64) * 4 - 2
    y = forward(x)
    write_safetensors(os.path.join(a.out_dir, "qdq.safetensors"), {"x": x.float(), "y": y.float()},
                      {"model": "qdq", "ops": " ".join(op for op, _ in onnx_nodes(os.path.join(a.out_dir, "qdq.onnx")))})
    manifest.append("qdq 2,6,6")

    export(EluNet().eval(), torch.randn(2, 4), os.path.join(a.out_dir, "elu.onnx"))
    # the test looks for the op and the node's name in the importer's message
    assert ("Elu", "/Elu") in onnx_nodes(os.path.join(a.out_dir, "elu.onnx"))
    with open(os.path.join(a.out_dir, "onnx_models.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")


if __name__ == "__main__":
    main()
