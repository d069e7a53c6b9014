#!/usr/bin/python3
"""PyTorch peer of Kiln's Vision Transformer bench: a small pre-norm ViT trained on Fashion-MNIST
on the CPU. The protocol is written out in bench/TRANSFORMERS.md; Kiln's spec mirrors it.

Model (139,018 parameters):
  * input (B, 1, 28, 28) in [0, 1] (pixels / 255, no normalisation);
  * patch embedding nn.Conv2d(1, 64, kernel 4, stride 4) -> (B, 64, 7, 7) -> flatten(2).transpose(1, 2)
    -> 49 tokens of width 64 (row-major over the 7x7 patch grid);
  * a class token nn.Parameter(zeros(1, 1, 64)) prepended -> 50 tokens; a learned position
    embedding nn.Parameter(50, 64) ~ normal(std 0.02) added;
  * 4 pre-norm blocks: x = x + attn(LN1(x)); x = x + mlp(LN2(x)); LayerNorm(64, eps 1e-5);
    attention: qkv = nn.Linear(64, 192) (bias), reshape(B, T, 3, 4, 16) -> q, k, v in that order,
    4 heads of 16; scores q k^T / sqrt(16); softmax over the keys; weighted sum of v; heads merged
    back to (B, T, 64) (head h in columns 16h..16h+15); out proj nn.Linear(64, 64);
    mlp: nn.Linear(64, 128) -> GELU (exact, erf) -> nn.Linear(128, 64); no dropout anywhere;
  * final LayerNorm(64); the class token's row (token 0) -> nn.Linear(64, 10).
  * PyTorch's default initialisation under torch.manual_seed(seed), except the position
    embedding (normal, std 0.02) and the class token (zeros).

Training:
  * mean softmax cross-entropy; torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8,
    weight_decay 0.01) over all parameters (biases, LayerNorms, class token and position
    embedding included);
  * batch 64, the last batch of an epoch partial (no drop_last); a seeded shuffle every epoch
    (torch.randperm with a generator seeded once from --seed);
  * learning rate set before every step by lr_at() (linear warm-up over 100 steps, then cosine
    to 0 at the last step);
  * test evaluation (all 10000 images, batches of 500, torch.no_grad) after each epoch, timed
    separately and excluded from the training time.

Prints one JSON object on stdout; progress goes to stderr.
usage: vit_peer.py [--threads N] [--seed S] [--epochs E] [--train-limit K] [--rss] [--quiet]
"""
import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_data import load_split  # noqa: E402

IMG, PATCH, WIDTH, HEADS, MLP_HIDDEN, DEPTH, CLASSES = 28, 4, 64, 4, 128, 4, 10
TOKENS = (IMG // PATCH) ** 2 + 1   # 49 patches + the class token
BATCH, LR, BETAS, EPS, WD, WARMUP = 64, 1e-3, (0.9, 0.999), 1e-8, 0.01, 100


class Attention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                                 # (B, H, T, D) each
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)    # (B, H, T, T)
        att = scores.softmax(dim=-1)                                     # over the keys
        y = (att @ v).transpose(1, 2).reshape(B, T, C)                   # heads merged
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))   # exact (erf) GELU, PyTorch's default


class Block(nn.Module):
    def __init__(self, width, heads, hidden):
        super().__init__()
        self.ln1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = Attention(width, heads)
        self.ln2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = MLP(width, hidden)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, WIDTH, kernel_size=PATCH, stride=PATCH)
        self.cls = nn.Parameter(torch.zeros(1, 1, WIDTH))
        self.pos = nn.Parameter(torch.empty(TOKENS, WIDTH).normal_(std=0.02))
        self.blocks = nn.ModuleList([Block(WIDTH, HEADS, MLP_HIDDEN) for _ in range(DEPTH)])
        self.ln_f = nn.LayerNorm(WIDTH, eps=1e-5)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, img):
        x = self.patch(img).flatten(2).transpose(1, 2)                    # (B, 49, 64)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)    # (B, 50, 64)
        x = x + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x)[:, 0])


def lr_at(step, total, peak=LR, warmup=WARMUP):
    """Learning rate of update `step` (0-based) of `total` updates, as Kiln's cosine schedule with
    warm-up (kiln_optim_lr in src/train/optim.c) computes it:
         t  = clamp((step - warmup) / (total - warmup), 0, 1)
         lr = peak * 0.5 * (1 + cos(pi * t)),  times (step + 1) / warmup while step < warmup."""
    t = (step - warmup) / (total - warmup) if total > warmup else 1.0
    t = min(max(t, 0.0), 1.0)
    lr = peak * 0.5 * (1.0 + math.cos(math.pi * t))
    if step < warmup:
        lr *= (step + 1) / warmup
    return lr


def peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # ru_maxrss is in KiB on Linux


def evaluate(model, x, y, batch=500):
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            logits = model(x[i:i + batch])
            t = y[i:i + batch]
            loss_sum += F.cross_entropy(logits, t, reduction="sum").item()
            correct += (logits.argmax(1) == t).sum().item()
    return loss_sum / x.shape[0], correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--train-limit", type=int, default=None, metavar="K",
                    help="train on the first K training images only (quick runs)")
    ap.add_argument("--rss", action="store_true", help="also report peak RSS (ru_maxrss)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()

    t_wall = time.perf_counter()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t_load = time.perf_counter()
    x_train, y_train = load_split("train")
    x_test, y_test = load_split("t10k")
    load_s = time.perf_counter() - t_load
    if a.train_limit is not None:
        x_train, y_train = x_train[:a.train_limit].contiguous(), y_train[:a.train_limit].contiguous()

    model = ViT()
    model.train()   # no dropout or batch norm: train and eval mode compute the same
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    gen = torch.Generator().manual_seed(a.seed)
    n, B = x_train.shape[0], BATCH
    spe = (n + B - 1) // B
    total = a.epochs * spe

    def log(msg):
        if not a.quiet:
            print(msg, file=sys.stderr, flush=True)

    out = {"tool": "pytorch", "torch_version": torch.__version__, "model": "vit", "threads": torch.get_num_threads(),
           "interop_threads": torch.get_num_interop_threads(), "seed": a.seed, "params": n_params,
           "batch": B, "lr": LR, "betas": list(BETAS), "eps": EPS, "weight_decay": WD, "warmup_steps": WARMUP,
           "train_images": n, "test_images": x_test.shape[0], "steps_per_epoch": spe, "total_steps": total,
           "data_load_s": round(load_s, 3)}

    epochs_out, train_s, eval_s, step = [], 0.0, 0.0, 0
    for epoch in range(1, a.epochs + 1):
        perm = torch.randperm(n, generator=gen)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.int64)
        t0 = time.perf_counter()
        for s in range(spe):
            idx = perm[s * B:(s + 1) * B]
            xb, yb = x_train[idx], y_train[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total)
            opt.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * yb.shape[0]
            correct += (logits.detach().argmax(1) == yb).sum()
            step += 1
        train_s += time.perf_counter() - t0
        t1 = time.perf_counter()
        test_loss, test_acc = evaluate(model, x_test, y_test)
        e_s = time.perf_counter() - t1
        eval_s += e_s
        rec = {"epoch": epoch, "steps": step, "train_s": round(train_s, 3), "eval_s": round(e_s, 3),
               "train_loss": round(loss_sum.item() / n, 6), "train_accuracy": round(correct.item() / n, 6),
               "test_loss": round(test_loss, 6), "test_accuracy": round(test_acc, 6)}
        epochs_out.append(rec)
        log(f"vit epoch {epoch}: train loss {rec['train_loss']:.4f} acc {100 * rec['train_accuracy']:.2f}% | "
            f"test loss {test_loss:.4f} acc {100 * test_acc:.2f}% | train {train_s:.1f} s (eval {e_s:.1f} s)")

    last = epochs_out[-1] if epochs_out else {}
    out.update({"epochs_run": len(epochs_out), "epochs": epochs_out,
                "test_accuracy": last.get("test_accuracy"), "test_loss": last.get("test_loss"),
                "seconds": round(train_s, 3), "train_seconds": round(train_s, 3), "eval_seconds": round(eval_s, 3),
                "images_per_s": round(len(epochs_out) * n / train_s, 1) if train_s > 0 else None,
                "wall_seconds": round(time.perf_counter() - t_wall, 3)})
    if a.rss:
        out["peak_rss_bytes"] = peak_rss_bytes()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
