#!/usr/bin/python3
"""PyTorch peer of Kiln's language-model bench: a byte-level causal transformer trained on the
fortune-cookie text of Debian's `fortunes` package, and a plain KV-cache sampling loop at batch 1.
The protocol is written out in bench/TRANSFORMERS.md; Kiln's spec mirrors it.

Data:
  * every text file the `fortunes` package installs: the paths of /var/lib/dpkg/info/fortunes.list
    (what `dpkg -L fortunes` prints) under /usr/share/games/fortunes/ that are regular files, not
    symbolic links (the *.u8 names) and not *.dat index files; sorted by path (byte order) and
    concatenated as bytes. Files of other packages in that directory (fortunes-min's fortunes,
    literature, riddles) are not used. Debian 12, fortunes 1:1.99.1-7.3: 40 files, 2,478,275 bytes.
  * validation = the last N // 20 bytes (N = all bytes), training = the first N - N // 20;
  * windows: example i of a split starts at byte s = 128 i, input bytes [s, s + 128), targets
    [s + 1, s + 129); used only if s + 129 <= the split's length, i.e. (len - 1) // 128 windows.

Model (875,520 parameters): vocab 256; token embedding nn.Embedding(256, 128) (default init,
normal std 1) plus a learned position embedding nn.Parameter(128, 128) ~ normal(std 0.02);
4 pre-norm blocks x = x + attn(LN1(x)); x = x + mlp(LN2(x)), LayerNorm(128, eps 1e-5);
attention: qkv = nn.Linear(128, 384) (bias), reshape(B, T, 3, 4, 32) -> q, k, v in that order,
4 heads of 32, scores q k^T / sqrt(32), causal mask (a key after the query gets -inf), softmax
over the keys, weighted sum of v, heads merged (head h in columns 32h..32h+31), out proj
nn.Linear(128, 128); mlp nn.Linear(128, 512) -> GELU (exact, erf) -> nn.Linear(512, 128);
no dropout; final LayerNorm(128); head nn.Linear(128, 256), not tied to the embedding.
PyTorch's default initialisation under torch.manual_seed(seed) for everything else.

Training (mode `train`, the default):
  * mean per-token cross-entropy over the batch's 32 x 128 targets;
  * torch.optim.AdamW(lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01) over all
    parameters;
  * batch 32 windows; every epoch a seeded permutation of the training windows (torch.randperm
    with a generator seeded once from --seed), cut into consecutive batches of 32; the last
    partial batch of an epoch is dropped (every step sees exactly 4096 target tokens);
  * --steps updates (default 2000), learning rate set before every update by lr_at() (linear
    warm-up over 100 steps from 0, then cosine to 0 at the last step);
  * validation loss = mean per-token cross-entropy over all validation windows (batches of 64,
    torch.no_grad) after every --eval-every updates and after the last; evaluation is timed
    separately and excluded from the training time.

Generation (mode --generate): see generate_main(); a batch-1 KV-cache sampling loop written
plainly, and a timing of the per-token cost at contexts 16 and 128.

Prints one JSON object on stdout; progress goes to stderr.
usage: lm_peer.py [--threads N] [--seed S] [--steps N] [--eval-every N] [--save PATH] [--rss] [--quiet]
       lm_peer.py --generate [--load PATH] [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K]
                  [--seed S] [--threads N] [--timing-reps R] [--timing-warmup W] [--quiet]
"""
import argparse
import hashlib
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

FORTUNE_DIR = "/usr/share/games/fortunes/"
DPKG_LIST = "/var/lib/dpkg/info/fortunes.list"
VOCAB, CTX, WIDTH, HEADS, MLP_HIDDEN, DEPTH = 256, 128, 128, 4, 512, 4
BATCH, LR, BETAS, EPS, WD, WARMUP = 32, 1e-3, (0.9, 0.999), 1e-8, 0.01, 100
EVAL_BATCH = 64
TIMING_CONTEXTS = (16, 128)


# ------------------------------------------------------------------------------------------ data

def corpus_files():
    try:
        with open(DPKG_LIST) as f:
            listed = [line.rstrip("\n") for line in f]
    except OSError:
        raise SystemExit(f"{DPKG_LIST}: not found; install Debian's `fortunes` package (apt-get install fortunes)")
    files = [p for p in listed if p.startswith(FORTUNE_DIR) and not p.endswith(".dat")
             and os.path.isfile(p) and not os.path.islink(p)]
    if not files:
        raise SystemExit(f"no fortune text files listed in {DPKG_LIST}")
    return sorted(files, key=lambda p: p.encode())


def load_corpus():
    """(train bytes, validation bytes, description) of the fortune corpus."""
    files = corpus_files()
    data = b"".join(open(p, "rb").read() for p in files)
    n_val = len(data) // 20
    train, val = data[:len(data) - n_val], data[len(data) - n_val:]
    info = {"corpus_files": len(files), "corpus_bytes": len(data), "corpus_sha256": hashlib.sha256(data).hexdigest(),
            "train_bytes": len(train), "val_bytes": len(val)}
    return train, val, info


def windows(split):
    """(inputs, targets) int64 tensors (W, 128) of the non-overlapping windows of a split."""
    t = torch.tensor(list(split), dtype=torch.int64)
    w = (len(split) - 1) // CTX
    x = t[:w * CTX].view(w, CTX)
    y = t[1:w * CTX + 1].view(w, CTX)
    return x.contiguous(), y.contiguous()


# ----------------------------------------------------------------------------------------- model

class Attention(nn.Module):
    def __init__(self, width, heads, ctx):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        # True above the diagonal: key j > query i is masked out
        self.register_buffer("mask", torch.ones(ctx, ctx, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                                 # (B, H, T, D) each
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)    # (B, H, T, T)
        scores = scores.masked_fill(self.mask[:T, :T], float("-inf"))
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
    def __init__(self, width, heads, hidden, ctx):
        super().__init__()
        self.ln1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = Attention(width, heads, ctx)
        self.ln2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = MLP(width, hidden)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ByteLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(torch.empty(CTX, WIDTH).normal_(std=0.02))
        self.blocks = nn.ModuleList([Block(WIDTH, HEADS, MLP_HIDDEN, CTX) for _ in range(DEPTH)])
        self.ln_f = nn.LayerNorm(WIDTH, eps=1e-5)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, idx):                       # idx (B, T) int64, T <= 128 -> logits (B, T, 256)
        x = self.tok(idx) + self.pos[:idx.shape[1]]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


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


def val_loss(model, xv, yv):
    total = 0.0
    with torch.no_grad():
        for i in range(0, xv.shape[0], EVAL_BATCH):
            logits = model(xv[i:i + EVAL_BATCH])
            total += F.cross_entropy(logits.reshape(-1, VOCAB), yv[i:i + EVAL_BATCH].reshape(-1),
                                     reduction="sum").item()
    return total / yv.numel()


# -------------------------------------------------------------------------------------- training

def train_main(a, log):
    t_wall = time.perf_counter()
    t_load = time.perf_counter()
    train, val, info = load_corpus()
    xt, yt = windows(train)
    xv, yv = windows(val)
    load_s = time.perf_counter() - t_load

    model = ByteLM()
    model.train()   # no dropout: train and eval mode compute the same
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    gen = torch.Generator().manual_seed(a.seed)
    n = xt.shape[0]
    spe = n // BATCH
    tokens_per_step = BATCH * CTX

    out = {"tool": "pytorch", "torch_version": torch.__version__, "model": "byte_lm", "mode": "train",
           "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(), "seed": a.seed,
           "params": n_params, "batch": BATCH, "context": CTX, "lr": LR, "betas": list(BETAS), "eps": EPS,
           "weight_decay": WD, "warmup_steps": WARMUP, "steps": a.steps, "eval_every": a.eval_every, **info,
           "train_windows": n, "val_windows": xv.shape[0], "steps_per_epoch": spe, "data_load_s": round(load_s, 3)}

    evals, train_s, eval_s, step, epoch = [], 0.0, 0.0, 0, 0
    loss_acc, loss_n = torch.zeros((), dtype=torch.float64), 0
    perm, pos_in_epoch = None, spe
    t0 = time.perf_counter()
    while step < a.steps:
        if pos_in_epoch == spe:
            perm, pos_in_epoch, epoch = torch.randperm(n, generator=gen), 0, epoch + 1
        idx = perm[pos_in_epoch * BATCH:(pos_in_epoch + 1) * BATCH]
        pos_in_epoch += 1
        xb, yb = xt[idx], yt[idx]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.steps)
        opt.zero_grad(set_to_none=True)
        logits = model(xb)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), yb.reshape(-1))
        loss.backward()
        opt.step()
        loss_acc += loss.detach()
        loss_n += 1
        step += 1
        if step % a.eval_every == 0 or step == a.steps:
            train_s += time.perf_counter() - t0
            t1 = time.perf_counter()
            vl = val_loss(model, xv, yv)
            e_s = time.perf_counter() - t1
            eval_s += e_s
            rec = {"step": step, "epoch": epoch, "train_s": round(train_s, 3), "eval_s": round(e_s, 3),
                   "train_loss": round(loss_acc.item() / loss_n, 6), "val_loss": round(vl, 6),
                   "val_bits_per_byte": round(vl / math.log(2), 6)}
            evals.append(rec)
            log(f"lm step {step}: train loss {rec['train_loss']:.4f} | val loss {vl:.4f} "
                f"({rec['val_bits_per_byte']:.3f} bits/byte) | train {train_s:.1f} s (eval {e_s:.1f} s)")
            loss_acc, loss_n = torch.zeros((), dtype=torch.float64), 0
            t0 = time.perf_counter()

    last = evals[-1] if evals else {}
    out.update({"evals": evals, "val_loss": last.get("val_loss"), "val_bits_per_byte": last.get("val_bits_per_byte"),
                "epochs_started": epoch, "seconds": round(train_s, 3), "train_seconds": round(train_s, 3),
                "eval_seconds": round(eval_s, 3),
                "tokens_per_s": round(a.steps * tokens_per_step / train_s, 1) if train_s > 0 else None,
                "wall_seconds": round(time.perf_counter() - t_wall, 3)})
    if a.save:
        torch.save(model.state_dict(), a.save)
        out["saved"] = a.save
    if a.rss:
        out["peak_rss_bytes"] = peak_rss_bytes()
    return out


# ------------------------------------------------------------------------------------ generation

class KVCache:
    """Per layer key and value tensors (heads, 128, head_dim), preallocated to the full context;
    `length` tokens (positions 0 .. length-1) are filled."""

    def __init__(self):
        D = WIDTH // HEADS
        self.k = [torch.zeros(HEADS, CTX, D) for _ in range(DEPTH)]
        self.v = [torch.zeros(HEADS, CTX, D) for _ in range(DEPTH)]
        self.length = 0


def decode_step(model, cache, token):
    """Feeds one token at position cache.length; appends its keys and values to the cache of every
    layer; returns the logits (256,) of the next byte. Plain single-token arithmetic, batch 1."""
    pos = cache.length
    if pos >= CTX:
        raise ValueError(f"the model has {CTX} positions")
    D = WIDTH // HEADS
    x = model.tok.weight[token] + model.pos[pos]                         # (128,)
    for l, blk in enumerate(model.blocks):
        h = blk.ln1(x)
        qkv = blk.attn.qkv(h).view(3, HEADS, D)                          # q, k, v of this token
        q, k, v = qkv[0], qkv[1], qkv[2]                                 # (H, D) each
        cache.k[l][:, pos] = k                                           # append to the cache
        cache.v[l][:, pos] = v
        keys, vals = cache.k[l][:, :pos + 1], cache.v[l][:, :pos + 1]    # (H, pos+1, D)
        scores = (keys @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(D)     # (H, pos+1): one query
        att = scores.softmax(dim=-1)                                     # over the cached keys
        y = (att.unsqueeze(1) @ vals).reshape(WIDTH)                     # (H, 1, D) -> (128,)
        x = x + blk.attn.proj(y)
        x = x + blk.mlp(blk.ln2(x))
    cache.length = pos + 1
    return model.head(model.ln_f(x))


def sample(logits, temperature, top_k, gen):
    """temperature <= 0: greedy (argmax). Otherwise softmax(logits / temperature), restricted to
    the top_k most likely bytes when top_k > 0, sampled with torch.multinomial from `gen`."""
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits / temperature
    if 0 < top_k < VOCAB:
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return int(torch.multinomial(logits.softmax(dim=-1), 1, generator=gen))


def prefill(model, cache, tokens):
    """Fills the cache with the prompt, one decode step per token (no sampling); returns the logits
    after the last prompt token."""
    logits = None
    for t in tokens:
        logits = decode_step(model, cache, t)
    return logits


def time_context(model, prompt_bytes, L, reps, warmup, temperature, top_k, gen):
    """Per-token time of the sampling loop at context L: the new token sits at position L-1 and its
    query attends over L keys (the L-1 prompt tokens already cached plus its own). The model has
    only 128 positions, so at L = 128 no token can follow 128 cached ones; "context L" is
    therefore the number of keys the new token attends over, the same definition at 16 and 128.

    How: fill the cache with the first L-1 bytes of `prompt_bytes` (untimed), then do warmup +
    reps steps, each: set cache.length back to L-1, then time (time.perf_counter) one decode step
    of the current token at position L-1 (embedding + position, 4 layers of LN, qkv, cache append,
    one-query attention over the L cached keys, MLP; final LN, head) plus sample() and the int
    conversion of the sampled byte; the sampled byte is the next step's input. Every timed step
    thus does exactly the work of generating one token with L-1 tokens before it. The first
    `warmup` steps are discarded; reported: the median, mean and min of the other `reps`."""
    cache = KVCache()
    prefill(model, cache, prompt_bytes[:L - 1])
    tok = prompt_bytes[L - 1]
    times = []
    for r in range(warmup + reps):
        cache.length = L - 1
        t0 = time.perf_counter()
        logits = decode_step(model, cache, tok)
        tok = sample(logits, temperature, top_k, gen)
        dt = time.perf_counter() - t0
        if r >= warmup:
            times.append(dt)
    med = statistics.median(times)
    return {"context": L, "cached_before": L - 1, "reps": reps, "warmup": warmup,
            "median_s_per_token": round(med, 7), "mean_s_per_token": round(statistics.fmean(times), 7),
            "min_s_per_token": round(min(times), 7), "tokens_per_s": round(1.0 / med, 1)}


def generate_main(a, log):
    model = ByteLM()
    if a.load:
        model.load_state_dict(torch.load(a.load, map_location="cpu"))
    model.eval()
    gen = torch.Generator().manual_seed(a.seed)
    prompt = list(a.prompt.encode("utf-8"))
    if not prompt:
        raise SystemExit("--prompt must not be empty")
    if len(prompt) + a.tokens > CTX:
        raise SystemExit(f"prompt ({len(prompt)} bytes) + --tokens {a.tokens} exceed the model's {CTX} positions")
    out = {"tool": "pytorch", "torch_version": torch.__version__, "model": "byte_lm", "mode": "generate",
           "threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(), "seed": a.seed,
           "loaded": a.load, "temperature": a.temperature, "top_k": a.top_k,
           "prompt_bytes": len(prompt), "tokens": a.tokens}
    with torch.inference_mode():
        # The KV-cache loop checked against the full causal forward on the prompt
        cache = KVCache()
        kv_logits = torch.stack([decode_step(model, cache, t) for t in prompt])
        full_logits = model(torch.tensor([prompt]))[0]
        out["kv_check_max_abs_diff"] = float((kv_logits - full_logits).abs().max())

        # Free generation from --prompt: prefill, then --tokens sampled bytes
        cache = KVCache()
        t0 = time.perf_counter()
        logits = prefill(model, cache, prompt)
        t1 = time.perf_counter()
        generated = []
        for _ in range(a.tokens):      # per token: sample, then feed it (decode step)
            tok = sample(logits, a.temperature, a.top_k, gen)
            generated.append(tok)
            logits = decode_step(model, cache, tok)
        t2 = time.perf_counter()
        text = bytes(generated).decode("utf-8", errors="replace")
        out.update({"prefill_s": round(t1 - t0, 4), "generate_s": round(t2 - t1, 4),
                    "generate_tokens_per_s": round(a.tokens / (t2 - t1), 1) if a.tokens and t2 > t1 else None,
                    "text": text})
        log(f"{a.prompt}{text}")

        # Per-token timing at contexts 16 and 128, prompts from the start of the validation text
        _, val, _ = load_corpus()
        timing_prompt = list(val[:CTX])
        timings = [time_context(model, timing_prompt, L, a.timing_reps, a.timing_warmup, a.temperature,
                                a.top_k, gen) for L in TIMING_CONTEXTS]
    for t in timings:
        out[f"tokens_per_s_ctx{t['context']}"] = t["tokens_per_s"]
        log(f"context {t['context']}: {1e3 * t['median_s_per_token']:.3f} ms/token median "
            f"({t['tokens_per_s']:.0f} tokens/s)")
    out["timing"] = timings
    out["peak_rss_bytes"] = peak_rss_bytes()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2000, help="training updates (default 2000)")
    ap.add_argument("--eval-every", type=int, default=500, help="validation every N updates (default 500)")
    ap.add_argument("--save", metavar="PATH", help="training: save the state dict (torch.save) here")
    ap.add_argument("--rss", action="store_true", help="training: also report peak RSS (ru_maxrss)")
    ap.add_argument("--generate", action="store_true", help="generation mode instead of training")
    ap.add_argument("--load", metavar="PATH", help="generation: load a state dict saved by --save")
    ap.add_argument("--prompt", default="The ", help="generation: prompt text (UTF-8 bytes; default 'The ')")
    ap.add_argument("--tokens", type=int, default=100, help="generation: bytes to sample (default 100)")
    ap.add_argument("--temperature", type=float, default=1.0, help="generation: <= 0 is greedy (default 1.0)")
    ap.add_argument("--top-k", type=int, default=0, help="generation: 0 = all 256 bytes (default 0)")
    ap.add_argument("--timing-reps", type=int, default=48, help="generation: timed tokens per context (default 48)")
    ap.add_argument("--timing-warmup", type=int, default=8, help="generation: untimed tokens first (default 8)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args()
    if a.steps < 1 or a.eval_every < 1:
        ap.error("--steps and --eval-every must be >= 1")

    def log(msg):
        if not a.quiet:
            print(msg, file=sys.stderr, flush=True)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = generate_main(a, log) if a.generate else train_main(a, log)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
