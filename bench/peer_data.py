"""Shared by the bench peers: Fashion-MNIST from Debian's dataset-fashion-mnist as torch tensors."""
import gzip
import os

import numpy as np
import torch

DATA_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    got = int.from_bytes(raw[0:4], "big")
    if got != magic:
        raise SystemExit(f"{path}: magic: expected {magic:#010x}, found {got:#010x}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(prefix):
    """Images (N, 1, 28, 28) float32 in [0, 1] and labels (N,) int64 of the train or t10k split."""
    images = read_idx(os.path.join(DATA_DIR, f"{prefix}-images-idx3-ubyte.gz"), 0x00000803)
    labels = read_idx(os.path.join(DATA_DIR, f"{prefix}-labels-idx1-ubyte.gz"), 0x00000801)
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255)).reshape(-1, 1, 28, 28).contiguous()
    return x, torch.from_numpy(labels.astype(np.int64)).contiguous()
