#!/usr/bin/python3
"""Writes PyTorch's optimizer trajectories and learning-rate schedules for a fixed sequence of
gradients, the oracle for tests/test_optim.c.  usage: torch_optim.py OUT.safetensors"""
import sys

import torch

from torch_ref import write_safetensors

N, T = 37, 12


def trajectory(make_opt, grads, p0, clip=None):
    p = torch.nn.Parameter(p0.clone())
    opt = make_opt([p])
    out = []
    for t in range(T):
        opt.zero_grad()
        p.grad = grads[t].clone()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_([p], clip)
        opt.step()
        out.append(p.detach().clone())
    return torch.stack(out)


def schedule(make_sched, steps):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    s = make_sched(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        s.step()
    return torch.tensor(lrs)


def main():
    torch.manual_seed(3)
    p0 = torch.randn(N)
    grads = torch.randn(T, N) * torch.linspace(0.1, 3.0, N)
    o = torch.optim
    out = {"p0": p0, "grads": grads}
    out["sgd"] = trajectory(lambda ps: o.SGD(ps, lr=0.1), grads, p0)
    out["sgd_wd"] = trajectory(lambda ps: o.SGD(ps, lr=0.1, weight_decay=0.01), grads, p0)
    out["momentum"] = trajectory(lambda ps: o.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.001), grads, p0)
    out["nesterov"] = trajectory(lambda ps: o.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), grads, p0)
    out["adam"] = trajectory(lambda ps: o.Adam(ps, lr=0.01, weight_decay=0.01), grads, p0)
    out["adamw"] = trajectory(lambda ps: o.AdamW(ps, lr=0.01, weight_decay=0.1), grads, p0)
    out["momentum_clip"] = trajectory(lambda ps: o.SGD(ps, lr=0.05, momentum=0.9), grads, p0, clip=0.5)
    S = 40
    out["sched_step"] = schedule(lambda op: o.lr_scheduler.StepLR(op, step_size=7, gamma=0.5), S)
    out["sched_cosine"] = schedule(lambda op: o.lr_scheduler.CosineAnnealingLR(op, T_max=S, eta_min=0.001), S)
    out["sched_warmup_cosine"] = schedule(lambda op: o.lr_scheduler.SequentialLR(
        op, [o.lr_scheduler.LinearLR(op, start_factor=1 / 5, end_factor=1.0, total_iters=4),
             o.lr_scheduler.CosineAnnealingLR(op, T_max=S - 5)], milestones=[5]), S)
    write_safetensors(sys.argv[1], out)


if __name__ == "__main__":
    main()
