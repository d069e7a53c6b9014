#!/usr/bin/python3
"""PyTorch peer of `kiln train` for the bench (bench/run_bench.py): the reference models of
tests/ref/torch_ref.py trained under Kiln's reference protocol, on the CPU.

Protocol (the same as `kiln train SPEC --batch 64 --opt momentum --lr 0.01`):
  * Fashion-MNIST from /usr/share/datasets/fashion-mnist, preloaded once as float32 tensors
    scaled to [0, 1] by /255 (Kiln gathers uint8 pixels and scales by /255 per batch);
  * batch 64, the last batch of an epoch partial (60000 = 937 * 64 + 32), no drop_last;
  * a seeded shuffle every epoch (torch.randperm with a generator seeded once from --seed);
  * mean softmax cross-entropy; torch.optim.SGD(lr=0.01, momentum=0.9), which is Kiln's
    "momentum" update (v = mu v + g; p -= lr v);
  * PyTorch's default initialisation under torch.manual_seed(seed);
  * training accuracy and loss accumulated every step, as Kiln's trainer does;
  * test evaluation after each epoch in batches of 500 under torch.no_grad(), timed separately
    and excluded from the training time.

Modes:
  throughput: --warmup W untimed steps, then --steps N timed steps (crossing epoch boundaries
              with a fresh shuffle, no evaluation); reports images_per_s = N * 64 / seconds.
  train:      up to --epochs E epochs, evaluating after each; with --stop-acc A stops after the
              epoch >= --min-epochs by which the test accuracy has reached A (the bench uses this to
              stop once both "accuracy after 5 epochs" and "time to 90%" are known).

Prints one JSON object on stdout; progress goes to stderr.
usage: torch_peer.py {cnn,mlp} {throughput,train} [--threads N] [--seed S] ...
"""
import argparse
import json
import os
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


def vm_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def evaluate(model, x, y, batch=500):
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            logits = model(x[i:i + batch])
            t = y[i:i + batch]
            loss_sum += F.cross_entropy(logits, t, reduction="sum").item()
            correct += (logits.argmax(1) == t).sum().item()
    model.train()
    return loss_sum / x.shape[0], correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["cnn", "mlp"])
    ap.add_argument("mode", choices=["throughput", "train"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--stop-acc", type=float, default=None, help="fraction, e.g. 0.90")
    ap.add_argument("--min-epochs", type=int, default=0)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t_load = time.perf_counter()
    x_train, y_train = load_split("train")
    x_test, y_test = load_split("t10k")
    load_s = time.perf_counter() - t_load
    rss_after_load = vm_rss_bytes()

    model = CNN() if a.model == "cnn" else MLP()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum)
    gen = torch.Generator().manual_seed(a.seed)
    n, B = x_train.shape[0], a.batch
    spe = (n + B - 1) // B

    def log(msg):
        if not a.quiet:
            print(msg, file=sys.stderr, flush=True)

    out = {"tool": "pytorch", "torch_version": torch.__version__, "model": a.model, "mode": a.mode,
           "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
           "seed": a.seed, "batch": B, "lr": a.lr, "momentum": a.momentum, "steps_per_epoch": spe,
           "data_load_s": round(load_s, 3), "rss_after_data_load_bytes": rss_after_load}

    def step(idx):
        xb, yb = x_train[idx], y_train[idx]
        opt.zero_grad(set_to_none=True)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        loss.backward()
        opt.step()
        return loss.detach() * yb.shape[0], (logits.detach().argmax(1) == yb).sum()

    if a.mode == "throughput":
        total = a.warmup + a.steps
        done, t0 = 0, None
        epoch = 0
        while done < total:
            perm = torch.randperm(n, generator=gen)
            for s in range(spe):
                if done == a.warmup:
                    t0 = time.perf_counter()
                step(perm[s * B:(s + 1) * B])
                done += 1
                if done == total:
                    break
            epoch += 1
        secs = time.perf_counter() - t0
        out.update({"warmup_steps": a.warmup, "timed_steps": a.steps, "seconds": round(secs, 4),
                    "images_per_s": round(a.steps * B / secs, 1)})
        log(f"torch {a.model} threads {a.threads}: {out['images_per_s']:.0f} img/s over {a.steps} steps")
    else:
        epochs_out, train_s, eval_s, reached = [], 0.0, 0.0, False
        for epoch in range(1, a.epochs + 1):
            perm = torch.randperm(n, generator=gen)
            loss_sum = torch.zeros((), dtype=torch.float64)
            correct = torch.zeros((), dtype=torch.int64)
            t0 = time.perf_counter()
            for s in range(spe):
                l, c = step(perm[s * B:(s + 1) * B])
                loss_sum += l
                correct += c
            train_s += time.perf_counter() - t0
            t1 = time.perf_counter()
            test_loss, test_acc = evaluate(model, x_test, y_test)
            e_s = time.perf_counter() - t1
            eval_s += e_s
            rec = {"epoch": epoch, "train_s": round(train_s, 3), "eval_s": round(e_s, 3),
                   "train_loss": round(loss_sum.item() / n, 6), "train_accuracy": round(correct.item() / n, 6),
                   "test_loss": round(test_loss, 6), "test_accuracy": round(test_acc, 6)}
            epochs_out.append(rec)
            log(f"torch {a.model} epoch {epoch}: train loss {rec['train_loss']:.4f} acc "
                f"{100 * rec['train_accuracy']:.2f}% | test acc {100 * test_acc:.2f}% | train {train_s:.1f} s "
                f"(eval {e_s:.1f} s)")
            reached = reached or (a.stop_acc is not None and test_acc >= a.stop_acc)
            if reached and epoch >= a.min_epochs:
                break
        out.update({"epochs": epochs_out, "train_seconds": round(train_s, 3), "eval_seconds": round(eval_s, 3),
                    "images_per_s": round(len(epochs_out) * n / train_s, 1)})
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
