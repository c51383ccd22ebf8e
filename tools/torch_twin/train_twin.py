#!/usr/bin/env python3
"""PyTorch twin of the activeshift trainer, for timing only.

The network is read from activeshift's execution plan as JSON (`activeshift info --arch NAME
--plan-json`, or written by `activeshift bench`): the twin builds one layer per plan op and runs
the ops in the plan's order on the plan's slots, so no layer is listed here a second time. Ops:
`conv3x3`, `affine` (BatchNorm, optionally + ReLU), `conv1x1` (with its epilogue: affine or bias,
then the residual, then ReLU), `shift` (the ASL), `depthwise3x3`, `avg_pool`; the loss takes
`softmax`'s place. Tensors keep the plan's names; those marked `weight_decay` get it.

The recipe of `activeshift train`: Nesterov SGD (momentum 0.9), weight decay 5e-4 on
convolution and classifier weights only, the shift gradient normalised per channel to unit
length and applied at 0.01x the learning rate. `--frozen-norm` replaces every BatchNorm by a
trainable per-channel affine without batch statistics: what `train --from MODEL --freeze none`
trains (folded BatchNorm, `NormMode::Frozen`).

The ASL is expressed as a depthwise 3x3 convolution whose kernel is the bilinear "tent" built
from the shifts (exact for |shift| < 1, which holds for these timings), in channels-last
memory format, on 2 threads. It reports images/s over N timed steps on random data.

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    activeshift info --arch asnet20-16x1 --plan-json > /tmp/plan.json
    /tmp/torchvenv/bin/python tools/torch_twin/train_twin.py --plan /tmp/plan.json --steps 20

`activeshift bench` runs it beside its training cases when ACTIVESHIFT_TORCH_PYTHON names that
interpreter, and reports the ratios (`train_cpu_vs_torch_twin`,
`finetune_whole_w32_vs_torch_twin`).
"""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Asl(nn.Module):
    """Active Shift Layer as a depthwise 3x3 convolution with a tent kernel."""

    def __init__(self, c, stride):
        super().__init__()
        self.c, self.stride = c, stride
        self.shift = nn.Parameter(torch.empty(2, c).uniform_(-0.9, 0.9))
        self.register_buffer("taps", torch.tensor([-1.0, 0.0, 1.0]))

    def forward(self, x):
        xp, yp = self.shift[0], self.shift[1]
        kx = torch.clamp(1 - (self.taps[None, :] - xp[:, None]).abs(), min=0)  # [C, 3]
        ky = torch.clamp(1 - (self.taps[None, :] - yp[:, None]).abs(), min=0)
        w = (ky[:, :, None] * kx[:, None, :]).unsqueeze(1)  # [C, 1, 3, 3]
        return F.conv2d(x, w, stride=self.stride, padding=1, groups=self.c)


class FrozenNorm(nn.Module):
    """A folded BatchNorm: per-channel scale and bias that train, no batch statistics."""

    def __init__(self, c):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1, c, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return x * self.scale + self.bias


def key(name):
    """A module name for a plan tensor's layer (`blocks.3.expand.weight` -> `blocks_3_expand`)."""
    for suffix in (".weight", ".shift"):
        if name.endswith(suffix):
            name = name[: -len(suffix)] + ("_shift" if suffix == ".shift" else "")
    return name.replace(".", "_")


class PlanNet(nn.Module):
    """The network of an activeshift execution plan (`Plan::to_json`)."""

    def __init__(self, plan, frozen_norm=False):
        super().__init__()
        self.plan = plan
        slots = plan["slots"]
        norm = FrozenNorm if frozen_norm else nn.BatchNorm2d
        self.layers = nn.ModuleDict()
        for op in plan["ops"]:
            kind = op["op"]
            cin = slots[op["input"]]["c"]
            cout = slots[op["out"]]["c"]
            if kind == "conv3x3":
                conv = nn.Conv2d(cin, cout, 3, stride=op["stride"], padding=1, bias=False)
                self.layers[key(op["weight"])] = conv
            elif kind == "affine":
                self.layers[key(op["norm"])] = norm(cin)
            elif kind == "conv1x1":
                conv = nn.Conv2d(
                    cin, cout, 1, stride=op["stride"], bias=op.get("bias") is not None
                )
                self.layers[key(op["weight"])] = conv
                if op.get("affine") is not None:
                    self.layers[key(op["affine"])] = norm(cout)
            elif kind == "shift":
                self.layers[key(op["shift"])] = Asl(cin, op["stride"])
            elif kind == "depthwise3x3":
                conv = nn.Conv2d(cin, cin, 3, stride=op["stride"], padding=1, groups=cin, bias=False)
                self.layers[key(op["weight"])] = conv
            elif kind not in ("avg_pool", "softmax"):
                raise SystemExit(f"the twin has no rule for the plan op `{kind}`")

    def forward(self, x):
        plan = self.plan
        slot = {plan["input"]: x}
        for op in plan["ops"]:
            kind = op["op"]
            t = slot.get(op["input"])
            if kind in ("conv3x3", "depthwise3x3"):
                y = self.layers[key(op["weight"])](t)
            elif kind == "affine":
                y = self.layers[key(op["norm"])](t)
                y = F.relu(y) if op["relu"] else y
            elif kind == "conv1x1":
                y = self.layers[key(op["weight"])](t)
                if op.get("affine") is not None:
                    y = self.layers[key(op["affine"])](y)
                if op.get("residual") is not None:
                    y = y + slot[op["residual"]]
                y = F.relu(y) if op["relu"] else y
            elif kind == "shift":
                y = self.layers[key(op["shift"])](t)
            elif kind == "avg_pool":
                y = t.mean(dim=(2, 3), keepdim=True)
            else:  # softmax: the loss takes its place
                continue
            slot[op["out"]] = y
        return slot[plan["logits"]].flatten(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plan", required=True, help="the network: `activeshift info --plan-json`")
    ap.add_argument("--frozen-norm", action="store_true", help="folded BatchNorm (fine-tuning)")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument(
        "--per-step", action="store_true", help="print each timed step's ms on its own line"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with open(args.plan) as f:
        described = json.load(f)
    plan = described["plan"]
    model = PlanNet(plan, args.frozen_norm).to(memory_format=torch.channels_last)
    decay = {key(p["name"]) for p in described["params"] if p["weight_decay"]}
    want = sum(math.prod(p["shape"]) for p in described["params"])
    have = sum(p.numel() for p in model.parameters())
    if have != want:
        raise SystemExit(f"the twin built {have} parameters; the plan has {want}")
    shifts, weights, others = [], [], []
    for name, layer in model.layers.items():
        for pname, p in layer.named_parameters():
            if isinstance(layer, Asl):
                shifts.append(p)
            elif pname == "weight" and name in decay:
                weights.append(p)
            else:
                others.append(p)
    opt = torch.optim.SGD(
        [
            {"params": weights, "weight_decay": 5e-4},
            {"params": others, "weight_decay": 0.0},
            {"params": shifts, "weight_decay": 0.0, "lr": args.lr * 0.01},
        ],
        lr=args.lr,
        momentum=0.9,
        nesterov=True,
    )
    shape = plan["slots"][plan["input"]]
    x = torch.randn(args.batch, shape["c"], shape["h"], shape["w"])
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, plan["slots"][plan["logits"]]["c"], (args.batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with torch.no_grad():
            for s in shifts:  # the normalised shift gradient: unit length per channel
                n = s.grad.norm(dim=0, keepdim=True)
                s.grad.div_(torch.where(n > 0, n, torch.ones_like(n)))
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        if args.per_step:
            print(f"step_ms {(time.perf_counter() - t0) * 1e3:.3f}")
    secs = time.perf_counter() - start
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, channels-last: "
        f"{args.steps * args.batch / secs:.0f} images/s "
        f"({secs * 1e3 / args.steps:.1f} ms per step of {args.batch})"
    )


if __name__ == "__main__":
    main()
