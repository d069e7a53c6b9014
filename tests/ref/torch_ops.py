#!/usr/bin/python3
"""Writes PyTorch's forward outputs and gradients (inputs and parameters) for each of Kiln's N-d
ops on random shapes (upsample, conv_transpose2d and pad among them), plus one pre-norm transformer
block, as one safetensors file: the oracle for tests/test_torch_ops.c.

Each case i is a Kiln spec (metadata "i/spec", with "i/batch" and "i/label") and the tensors
  i/x/NAME    graph input NAME, (batch, per-example dims...), F32 or I32
  i/p/NAME    parameter NAME ("<node>.<param>", Kiln's layout), F32
  i/y/K       output K (batch, ...)
  i/r/K       the output gradient R_K; PyTorch's loss is sum_K sum(out_K * R_K)
  i/dx/NAME   d loss / d input NAME (F32 inputs only)
  i/dp/NAME   d loss / d parameter NAME
Inputs and parameters are drawn in fp32 and written as such; PyTorch computes in fp64 from those
exact values, so the reference is the true result rounded to fp32. Kiln's per-example axis a is
PyTorch's dim a + 1 (the batch leads), and Kiln's broadcasting aligns per-example shapes from the
right, so a lower-rank batched operand gets unit dims inserted after its batch dim here.

usage: torch_ops.py OUT.safetensors [--seed 0]
"""
import argparse
import json
import math
import random
import struct

import torch
import torch.nn.functional as F


def write_safetensors(path, tensors, meta):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous()
        if t.dtype in (torch.int32, torch.int64):
            dtype, data = "I32", t.to(torch.int32).numpy().tobytes()
        else:
            dtype, data = "F32", t.to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = dict(meta, source="torch " + torch.__version__)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Cases:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.tensors, self.meta, self.n = {}, {}, 0

    def r(self, lo, hi):
        return self.rng.randint(lo, hi)

    def randn(self, *shape, scale=1.0):
        return torch.randn(*shape, generator=self.gen) * scale

    def uniform(self, lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=self.gen)

    def add(self, label, spec, batch, inputs, params, fn):
        """inputs: {name: fp32 or int32 tensor (batch, ...)}; params: {kiln name: fp32 tensor};
        fn(x, p) -> list of outputs, x and p holding fp64 (int64 for indices) tensors."""
        i = self.n
        self.n += 1
        x = {k: (v.long() if v.dtype == torch.int32 else v.double().requires_grad_()) for k, v in inputs.items()}
        p = {k: v.double().requires_grad_() for k, v in params.items()}
        outs = fn(x, p)
        rs = [self.randn(*o.shape) for o in outs]
        loss = sum((o * r.double()).sum() for o, r in zip(outs, rs))
        loss.backward()
        self.meta[f"{i}/spec"] = spec
        self.meta[f"{i}/batch"] = str(batch)
        self.meta[f"{i}/label"] = label
        t = self.tensors
        for k, v in inputs.items():
            t[f"{i}/x/{k}"] = v
        for k, v in params.items():
            t[f"{i}/p/{k}"] = v
        for k, (o, r) in enumerate(zip(outs, rs)):
            t[f"{i}/y/{k}"] = o
            t[f"{i}/r/{k}"] = r
        for k, v in x.items():
            if v.is_floating_point():
                t[f"{i}/dx/{k}"] = v.grad
        for k, v in p.items():
            t[f"{i}/dp/{k}"] = v.grad


def align(t, rank):
    """A batched (B, d...) tensor of per-example rank len(d) viewed at per-example rank `rank`
    (unit dims after the batch), as Kiln's right-aligned broadcasting reads it."""
    return t.reshape(t.shape[:1] + (1,) * (rank + 1 - t.dim()) + t.shape[1:])


def attention(q, k, v, heads, causal):
    b, t, d = q.shape
    s, dh = k.shape[1], d // heads
    qh = q.reshape(b, t, heads, dh).transpose(1, 2)
    kh = k.reshape(b, s, heads, dh).transpose(1, 2)
    vh = v.reshape(b, s, heads, dh).transpose(1, 2)
    scores = qh @ kh.transpose(-1, -2) / math.sqrt(dh)
    if causal:
        mask = torch.ones(t, s, dtype=torch.bool).triu(1)   # key j > query i
        scores = scores.masked_fill(mask, float("-inf"))
    return (scores.softmax(-1) @ vh).transpose(1, 2).reshape(b, t, d)


def rmsnorm(x, w, eps):
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * w


BATCHES = (2, 3, 1)   # batch of shape 0, 1, 2 of each op


def linear_cases(c):
    for i in range(3):
        b, a, s, n, u = BATCHES[i], c.r(1, 4), c.r(2, 5), c.r(2, 9), c.r(2, 7)
        bias = i != 2
        ps = {"lin.weight": c.randn(u, n, scale=0.5)}
        if bias:
            ps["lin.bias"] = c.randn(u, scale=0.5)
        c.add("linear", f"x: input {a} {s} {n}\nlin: linear {u}{'' if bias else ' bias=0'}\n", b,
              {"x": c.randn(b, a, s, n)}, ps,
              lambda x, p: [F.linear(x["x"], p["lin.weight"], p.get("lin.bias"))])


def matmul_cases(c):
    for i in range(3):
        b, m, k, n = BATCHES[i], c.r(2, 5), c.r(2, 6), c.r(2, 5)
        if i == 0:    # both batched, leading dims broadcast both ways: (3,1,m,k) x (2,k,n)
            l0, l1 = c.r(2, 3), c.r(2, 3)
            c.add("matmul", f"x: input {l0} 1 {m} {k}\ny: input {l1} {k} {n}\nmm: matmul x y\n", b,
                  {"x": c.randn(b, l0, 1, m, k), "y": c.randn(b, l1, k, n)}, {},
                  lambda x, p: [torch.matmul(x["x"], align(x["y"], 4))])
        elif i == 1:  # an unbatched param on the right
            l0 = c.r(1, 3)
            c.add("matmul", f"x: input {l0} {m} {k}\nw: param {k}x{n} std=0.5\nmm: matmul x w\n", b,
                  {"x": c.randn(b, l0, m, k)}, {"w.weight": c.randn(k, n, scale=0.5)},
                  lambda x, p: [torch.matmul(x["x"], p["w.weight"])])
        else:         # an unbatched param with leading dims on the left of a plain batched operand
            c.add("matmul", f"x: input {k} {n}\nw: param 2x{m}x{k} std=0.5\nmm: matmul w x\n", b,
                  {"x": c.randn(b, k, n)}, {"w.weight": c.randn(2, m, k, scale=0.5)},
                  lambda x, p: [torch.matmul(p["w.weight"], align(x["x"], 3))])


def norm_cases(c):
    for i in range(3):
        b, a, s, d = BATCHES[i], c.r(2, 4), c.r(2, 5), c.r(3, 12)
        shape = (a, d) if i != 1 else (a, s, d)
        dims = " ".join(map(str, shape))
        ps = {"ln.weight": 1 + c.randn(d, scale=0.3), "ln.bias": c.randn(d, scale=0.3)}
        c.add("layernorm", f"x: input {dims}\nln: layernorm\n", b, {"x": c.randn(b, *shape, scale=2) + 0.5}, ps,
              lambda x, p, d=d: [F.layer_norm(x["x"], (d,), p["ln.weight"], p["ln.bias"], 1e-5)])
        eps = (1e-5, 1e-6, 1e-3)[i]
        c.add("rmsnorm", f"x: input {dims}\nrms: rmsnorm{'' if i == 0 else f' eps={eps}'}\n", b,
              {"x": c.randn(b, *shape, scale=2)}, {"rms.weight": 1 + c.randn(d, scale=0.3)},
              lambda x, p, eps=eps: [rmsnorm(x["x"], p["rms.weight"], eps)])


def softmax_cases(c):
    for i in range(3):
        b, a, m, z = BATCHES[i], c.r(2, 4), c.r(2, 7), c.r(2, 5)
        shape, axis = ((a, m, z), 1) if i != 2 else ((a, 2, m, z), 2)
        dims = " ".join(map(str, shape))
        c.add("softmax", f"x: input {dims}\nsm: softmax axis={axis}\n", b, {"x": c.randn(b, *shape, scale=3)}, {},
              lambda x, p, axis=axis: [torch.softmax(x["x"], axis + 1)])
        ax = axis if i != 1 else axis - len(shape)   # a negative axis once
        c.add("log_softmax", f"x: input {dims}\nls: log_softmax axis={ax}\n", b, {"x": c.randn(b, *shape, scale=3)},
              {}, lambda x, p, axis=axis: [torch.log_softmax(x["x"], axis + 1)])


def layout_cases(c):
    for i in range(3):
        b, a, s, n = BATCHES[i], c.r(2, 4), c.r(2, 5), c.r(2, 6)
        if i == 0:
            c.add("reshape+transpose", f"x: input {a} {s} {n}\nr: reshape {n}x-1\nt: transpose 1,0\n", b,
                  {"x": c.randn(b, a, s, n)}, {}, lambda x, p, n=n: [x["x"].reshape(x["x"].shape[0], n, -1)
                                                                     .permute(0, 2, 1)])
        else:
            perm = (2, 0, 1) if i == 1 else (1, 3, 0, 2)
            shape = (a, s, n) if i == 1 else (a, s, n, c.r(1, 3))
            c.add("reshape+transpose", f"x: input {' '.join(map(str, shape))}\nt: transpose "
                  f"{','.join(map(str, perm))}\n", b, {"x": c.randn(b, *shape)}, {},
                  lambda x, p, perm=perm: [x["x"].permute(0, *[q + 1 for q in perm])])
        ln = c.r(5, 9)
        start, end, step = ((1, -1, 2), (0, ln, 3), (-4, ln - 1, 2))[i]
        axis = (1, 0, 2)[i]
        shape = [a, s, n]
        shape[axis] = ln
        sl = [slice(None)] * 4
        sl[axis + 1] = slice(start, end, step)
        c.add("slice", f"x: input {' '.join(map(str, shape))}\ns: slice axis={axis} start={start} end={end} "
              f"step={step}\n", b, {"x": c.randn(b, *shape)}, {}, lambda x, p, sl=tuple(sl): [x["x"][sl]])
        m = c.r(1, 4)
        c.add("concat", f"x: input {a} {s}\ny: input {a} {m}\ncat: concat x y axis=1\n", b,
              {"x": c.randn(b, a, s), "y": c.randn(b, a, m)}, {}, lambda x, p: [torch.cat([x["x"], x["y"]], 2)])
        k = c.r(1, 2)
        c.add("concat", f"x: input {a} {n}\ncls: param {k}x{n} std=1\ncat: concat cls x axis=0\n", b,
              {"x": c.randn(b, a, n)}, {"cls.weight": c.randn(k, n)},
              lambda x, p, b=b: [torch.cat([p["cls.weight"].expand(b, -1, -1), x["x"]], 1)])


def binary_cases(c):
    ops = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}
    for name, f in ops.items():
        def operand(b, *shape):   # denominators stay away from zero
            if name != "div":
                return c.randn(b, *shape) if b else c.randn(*shape)
            sign = torch.where(c.uniform(0, 1, *((b,) if b else ()), *shape) < 0.5, -1.0, 1.0)
            return sign * c.uniform(0.5, 2, *((b,) if b else ()), *shape)
        for i in range(3):
            b, a, s, n, q = BATCHES[i], c.r(2, 4), c.r(2, 4), c.r(2, 5), c.r(2, 3)
            if i == 0:   # (B, A, S, N) vs (N)
                c.add(name, f"x: input {a} {s} {n}\ny: input {n}\nz: {name} x y\n", b,
                      {"x": c.randn(b, a, s, n), "y": operand(b, n)}, {},
                      lambda x, p, f=f: [f(x["x"], align(x["y"], 3))])
            elif i == 1:   # both sides broadcast: (A, 1, N) vs (S, 1), and the swapped order
                c.add(name, f"x: input {a} 1 {n}\ny: input {s} 1\nz: {name} x y\n", b,
                      {"x": c.randn(b, a, 1, n), "y": operand(b, s, 1)}, {},
                      lambda x, p, f=f: [f(x["x"], align(x["y"], 3))])
                c.add(name, f"x: input {q} {a} {s} {n}\ny: input {s} 1\nz: {name} y x\n", b,
                      {"x": operand(b, q, a, s, n), "y": c.randn(b, s, 1)}, {},
                      lambda x, p, f=f: [f(align(x["y"], 4), x["x"])])
            else:   # an unbatched param operand, on the right and on the left
                c.add(name, f"x: input {a} {s} {n}\nw: param 1x{n} std=1\nz: {name} x w\n", b,
                      {"x": c.randn(b, a, s, n)}, {"w.weight": operand(0, 1, n)},
                      lambda x, p, f=f: [f(x["x"], p["w.weight"])])
                c.add(name, f"x: input {s} 1\nw: param {a}x{s}x{n} std=1\nz: {name} w x\n", b,
                      {"x": operand(b, s, 1)}, {"w.weight": c.randn(a, s, n)},
                      lambda x, p, f=f: [f(p["w.weight"], align(x["x"], 3))])
    b, a, n = 2, c.r(2, 4), c.r(2, 5)
    c.add("mul", f"x: input {a} {n}\nz: mul x x\n", b, {"x": c.randn(b, a, n)}, {}, lambda x, p: [x["x"] * x["x"]])


def activation_cases(c):
    fns = {"gelu": F.gelu, "silu": F.silu, "hard_swish": F.hardswish, "relu6": F.relu6}
    for name, f in fns.items():
        for i in range(2):
            b, shape = BATCHES[i], (c.r(2, 5), c.r(3, 9)) if i == 0 else (c.r(2, 3), c.r(2, 4), c.r(2, 6))
            c.add(name, f"x: input {' '.join(map(str, shape))}\nact: {name}\n", b, {"x": c.randn(b, *shape, scale=4)},
                  {}, lambda x, p, f=f: [f(x["x"])])
        if name in ("gelu", "silu"):   # the negative tail alone, where small errors are not hidden by large outputs
            b, shape = 2, (c.r(3, 5), c.r(12, 16))   # (the tanh form of GELU is off by 2.8e-3 relative here)
            c.add(name, f"x: input {' '.join(map(str, shape))}\nact: {name}\n", b,
                  {"x": c.uniform(-5, -0.5, b, *shape)}, {}, lambda x, p, f=f: [f(x["x"])])


def embedding_cases(c):
    for i in range(3):
        b, v, d = BATCHES[i], c.r(2, 9), c.r(2, 6)
        shape = (c.r(3, 10),) if i != 1 else (c.r(2, 4), c.r(2, 4))
        tok = torch.randint(0, v, (b, *shape), generator=c.gen, dtype=torch.int32)
        c.add("embedding", f"tok: input {' '.join(map(str, shape))} dtype=i32\nemb: embedding {v} {d}\n", b,
              {"tok": tok}, {"emb.weight": c.randn(v, d)}, lambda x, p: [F.embedding(x["tok"], p["emb.weight"])])


def attention_cases(c):
    for i in range(3):
        b, h, dh, t = BATCHES[i], c.r(1, 3), c.r(2, 5), c.r(3, 9)
        d = h * dh
        for causal in (0, 1):
            c.add("attention", f"x: input {t} {3 * d}\natt: attention heads={h} causal={causal}\n", b,
                  {"x": c.randn(b, t, 3 * d, scale=1.5)}, {},
                  lambda x, p, h=h, causal=causal: [attention(*x["x"].chunk(3, -1), h, causal)])
    for i in range(3):
        b, h, dh, t, s = BATCHES[i], c.r(1, 3), c.r(2, 4), c.r(1, 7), c.r(2, 8)
        s = s + (s == t)   # keys differ in number from queries
        d = h * dh
        c.add("attention", f"q: input {t} {d}\nk: input {s} {d}\nv: input {s} {d}\n"
              f"att: attention in=q,k,v heads={h}\n", b,
              {"q": c.randn(b, t, d, scale=1.5), "k": c.randn(b, s, d, scale=1.5), "v": c.randn(b, s, d)}, {},
              lambda x, p, h=h: [attention(x["q"], x["k"], x["v"], h, False)])
    b, h, dh, t, s = 2, 2, c.r(2, 3), c.r(2, 6), c.r(2, 6)
    d = h * dh
    c.add("attention", f"q: input {t} {d}\nkv: input {s} {d}\natt: attention in=q,kv,kv heads={h}\n", b,
          {"q": c.randn(b, t, d, scale=1.5), "kv": c.randn(b, s, d, scale=1.5)}, {},
          lambda x, p, h=h: [attention(x["q"], x["kv"], x["kv"], h, False)])
    # kv also feeds a later node, so the attention's backward adds into a gradient already begun
    c.add("attention", f"q: input {t} {d}\nkv: input {s} {d}\natt: attention in=q,kv,kv heads={h}\n"
          f"sq: mul kv kv\noutput att,sq\n", b,
          {"q": c.randn(b, t, d, scale=1.5), "kv": c.randn(b, s, d, scale=1.5)}, {},
          lambda x, p, h=h: [attention(x["q"], x["kv"], x["kv"], h, False), x["kv"] * x["kv"]])
    c.add("attention", f"q: input {t} {d}\nk: input {t} {d}\nv: input {t} {d}\n"
          f"att: attention in=q,k,v heads={h} causal=1\n", b,
          {"q": c.randn(b, t, d, scale=1.5), "k": c.randn(b, t, d, scale=1.5), "v": c.randn(b, t, d)}, {},
          lambda x, p, h=h: [attention(x["q"], x["k"], x["v"], h, True)])


def reduce_cases(c):
    for name, f in (("mean", torch.mean), ("sum", torch.sum)):
        for i in range(3):
            b, shape = BATCHES[i], (c.r(2, 4), c.r(2, 5), c.r(2, 6))
            axes, keep = (((0, 2), 0), ((1,), 1), ((2, 0), 1))[i]
            tdims = tuple(q + 1 for q in axes)
            c.add(name, f"x: input {' '.join(map(str, shape))}\nred: {name} axes={','.join(map(str, axes))} "
                  f"keepdims={keep}\n", b, {"x": c.randn(b, *shape)}, {},
                  lambda x, p, f=f, tdims=tdims, keep=keep: [f(x["x"], tdims, keepdim=bool(keep))])


def block_cases(c):
    for i in range(2):
        b, h, t = BATCHES[i], 2 * (i + 1), c.r(3, 8)
        d = h * c.r(2, 4)
        spec = (f"x: input {t} {d}\nln1: layernorm\nqkv: linear {3 * d}\natt: attention heads={h} causal=1\n"
                f"proj: linear {d}\nr1: add x proj\nln2: layernorm\nfc: linear {4 * d}\nact: gelu\n"
                f"fc2: linear {d}\nr2: add r1 fc2\n")
        ps = {}
        for ln in ("ln1", "ln2"):
            ps[ln + ".weight"] = 1 + c.randn(d, scale=0.2)
            ps[ln + ".bias"] = c.randn(d, scale=0.2)
        for name, (o, n) in {"qkv": (3 * d, d), "proj": (d, d), "fc": (4 * d, d), "fc2": (d, 4 * d)}.items():
            ps[name + ".weight"] = c.randn(o, n, scale=1 / math.sqrt(n))
            ps[name + ".bias"] = c.randn(o, scale=0.1)

        def block(x, p, d=d, h=h):
            def lin(name, v):
                return F.linear(v, p[name + ".weight"], p[name + ".bias"])
            v = x["x"]
            a = F.layer_norm(v, (d,), p["ln1.weight"], p["ln1.bias"], 1e-5)
            r1 = v + lin("proj", attention(*lin("qkv", a).chunk(3, -1), h, True))
            m = F.layer_norm(r1, (d,), p["ln2.weight"], p["ln2.bias"], 1e-5)
            return [r1 + lin("fc2", F.gelu(lin("fc", m)))]
        c.add("transformer block", spec, b, {"x": c.randn(b, t, d)}, ps, block)


def upsample_cases(c):
    # Kiln resolves scale= to a size (floor(in * scale)) and samples at 1/scale, as PyTorch's default
    # (recompute_scale_factor unset) and ONNX's Resize do; size= samples at in/out; bilinear is
    # align_corners=False (half-pixel centres), docs/IR.md.
    cases = (("nearest", "scale", 2), ("nearest", "size", None), ("nearest", "scale", 1.5),
             ("bilinear", "scale", (2, 3)), ("bilinear", "size", None), ("bilinear", "size", None),
             ("bilinear", "scale", 2.5))
    for i, (mode, form, scale) in enumerate(cases):
        b, ch, h, w = BATCHES[i % 3], c.r(1, 3), c.r(2, 6), c.r(2, 7)
        if form == "size":   # up on one axis, down or odd ratios on the other
            hs, ws = (c.r(2 * h + 1, 3 * h + 2), c.r(2, w + 3)) if i % 2 else (c.r(1, h), c.r(w + 1, 3 * w))
            attr, kw = f"size={hs}x{ws}", {"size": (hs, ws)}
        else:
            sh, sw = scale if isinstance(scale, tuple) else (scale, scale)
            if sw % 1:   # an odd width, so floor(w * scale) truncates and 1/scale differs from in/out
                w = 2 * c.r(1, 3) + 1
            attr = f"scale={sh:g}" if sh == sw else f"scale={sh:g}x{sw:g}"
            kw = {"scale_factor": (float(sh), float(sw))}
        if mode == "bilinear":
            kw["align_corners"] = False
        c.add(f"upsample {mode}", f"x: input {ch} {h} {w}\nup: upsample {attr} mode={mode}\n", b,
              {"x": c.randn(b, ch, h, w)}, {}, lambda x, p, mode=mode, kw=kw: [F.interpolate(x["x"], mode=mode, **kw)])
    # bicubic (PyTorch's: a = -0.75, half-pixel centres, edge samples repeated), wider than one
    # block of Kiln's column taps (64) and by a scale
    for b, ch, h, w, attr, kw in ((2, 2, 4, 30, "size=5x130", {"size": (5, 130)}),
                                  (1, 3, 5, 6, "scale=2.5", {"scale_factor": (2.5, 2.5)})):
        c.add("upsample bicubic", f"x: input {ch} {h} {w}\nup: upsample {attr} mode=bicubic\n", b,
              {"x": c.randn(b, ch, h, w)}, {},
              lambda x, p, kw=kw: [F.interpolate(x["x"], mode="bicubic", align_corners=False, **kw)])


def conv_transpose_cases(c):
    # (kernel, stride, pad, out_pad, dilation, bias); weight (in, out, kh, kw) as PyTorch's
    cases = (((3, 3), (2, 2), (1, 1), (1, 1), (1, 1), True), ((2, 3), (2, 3), (0, 1), (1, 2), (1, 1), False),
             ((3, 3), (1, 1), (1, 1), (0, 0), (1, 1), True), ((4, 4), (2, 2), (1, 1), (0, 0), (1, 1), False),
             ((3, 2), (3, 2), (2, 0), (2, 1), (2, 1), True), ((1, 3), (1, 2), (0, 1), (0, 1), (1, 2), False))
    pair = lambda v: f"{v[0]}" if v[0] == v[1] else f"{v[0]}x{v[1]}"
    for i, (k, st, pd, op, dl, bias) in enumerate(cases):
        b, ci, co, h, w = BATCHES[i % 3], c.r(1, 4), c.r(1, 4), c.r(2, 5), c.r(2, 6)
        ps = {"ct.weight": c.randn(ci, co, *k, scale=0.5)}
        if bias:
            ps["ct.bias"] = c.randn(co, scale=0.5)
        spec = (f"x: input {ci} {h} {w}\nct: conv_transpose2d {co} {pair(k)} stride={pair(st)} pad={pair(pd)} "
                f"out_pad={pair(op)}{'' if dl == (1, 1) else f' dilation={pair(dl)}'}{'' if bias else ' bias=0'}\n")
        c.add("conv_transpose2d", spec, b, {"x": c.randn(b, ci, h, w)}, ps,
              lambda x, p, st=st, pd=pd, op=op, dl=dl: [F.conv_transpose2d(x["x"], p["ct.weight"], p.get("ct.bias"),
                                                                          st, pd, op, 1, dl)])


def pad_cases(c):
    # pads=B0,..,B(r-1),E0,..,E(r-1) (ONNX's order, per-example axes); F.pad takes (B, E) pairs from the last axis
    for i, (rank, value) in enumerate(((1, 0.0), (2, 0.5), (3, -1.25), (4, 0.0), (3, 2.0), (2, 0.0))):
        b = BATCHES[i % 3]
        shape = [c.r(2, 3) if rank == 4 else c.r(2, 5) for _ in range(rank)]
        lo, hi = [c.r(0, 3) for _ in range(rank)], [c.r(1, 3) for _ in range(rank)]
        if i == 4:   # an axis left alone
            lo[1] = hi[1] = 0
        flat = [v for a in reversed(range(rank)) for v in (lo[a], hi[a])]
        spec = (f"x: input {' '.join(map(str, shape))}\npd: pad pads={','.join(map(str, lo + hi))}"
                f"{'' if value == 0 else f' value={value:g}'}\n")
        c.add("pad", spec, b, {"x": c.randn(b, *shape)}, {},
              lambda x, p, flat=flat, value=value: [F.pad(x["x"], flat, "constant", value)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    c = Cases(a.seed)
    for f in (linear_cases, matmul_cases, norm_cases, softmax_cases, layout_cases, binary_cases, activation_cases,
              embedding_cases, attention_cases, reduce_cases, block_cases, upsample_cases, conv_transpose_cases,
              pad_cases):
        f(c)
    c.meta["cases"] = str(c.n)
    write_safetensors(a.out, c.tensors, c.meta)


if __name__ == "__main__":
    main()
