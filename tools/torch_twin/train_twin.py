#!/usr/bin/env python3
"""PyTorch twin of the activeshift trainer, for timing only.

The network is read from an activeshift architecture description (the JSON form of
`activeshift::ArchConfig`, e.g. written by `activeshift bench` or `activeshift info --arch NAME
--json`), so the twin's layers are those of `Plan::new` and nothing lists them a second time:
a 3x3 stem (with the description's stride), pre-activation blocks (BN-ReLU, 1x1 expand + BN +
ReLU, ASL with the block's stride, 1x1 reduce, residual; a strided 1x1 projection shortcut
where the shape changes), BN-ReLU, global average pool, linear. Without `--arch` it builds
ASNet-20 WxE for 1x28x28 input (`activeshift::train::fashion_mnist_config`).

The recipe of `activeshift train`: Nesterov SGD (momentum 0.9), weight decay on convolution and
linear weights only, the shift gradient normalised per channel to unit length and applied at
0.01x the learning rate. `--frozen-norm` replaces every BatchNorm by a trainable per-channel
affine without batch statistics: what `train --from MODEL --freeze none` trains (folded
BatchNorm, `NormMode::Frozen`).

The ASL is expressed as a depthwise 3x3 convolution whose kernel is the bilinear "tent" built
from the shifts (exact for |shift| < 1, which holds for these timings), in channels-last
memory format, on 2 threads. It reports images/s over N timed steps on random data.

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
    /tmp/torchvenv/bin/python tools/torch_twin/train_twin.py --steps 20

`activeshift bench` runs it beside its training cases when ACTIVESHIFT_TORCH_PYTHON names that
interpreter, and reports the ratios (`train_cpu_vs_torch_twin`, `finetune_whole_w32_vs_torch_twin`).
"""
import argparse
import json
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


class Block(nn.Module):
    def __init__(self, cin, width, expansion, stride, norm):
        super().__init__()
        inner = width * expansion
        self.pre = norm(cin)
        self.projection = (
            nn.Conv2d(cin, width, 1, stride=stride, bias=False)
            if stride != 1 or cin != width
            else None
        )
        self.expand = nn.Conv2d(cin, inner, 1, bias=False)
        self.mid = norm(inner)
        self.asl = Asl(inner, stride)
        self.reduce = nn.Conv2d(inner, width, 1, bias=False)

    def forward(self, x):
        t = F.relu(self.pre(x))
        shortcut = self.projection(t) if self.projection is not None else x
        u = F.relu(self.mid(self.expand(t)))
        return self.reduce(self.asl(u)) + shortcut


def asnet20(w, e):
    """`activeshift::train::fashion_mnist_config(w, e)` as an architecture description."""
    return {
        "in_channels": 1,
        "input_size": [28, 28],
        "classes": 10,
        "stem_width": w,
        "stem_stride": 1,
        "expansion": e,
        "stages": [
            {"blocks": 3, "width": w, "stride": 1},
            {"blocks": 3, "width": 2 * w, "stride": 2},
            {"blocks": 3, "width": 4 * w, "stride": 2},
        ],
    }


class AsNet(nn.Module):
    """The network of an architecture description (the JSON of `activeshift::ArchConfig`)."""

    def __init__(self, arch, frozen_norm=False):
        super().__init__()
        if arch.get("block", "asl") != "asl":
            raise SystemExit("the twin builds ASL blocks only")
        norm = FrozenNorm if frozen_norm else nn.BatchNorm2d
        w = arch["stem_width"]
        self.stem = nn.Conv2d(
            arch["in_channels"], w, 3, stride=arch["stem_stride"], padding=1, bias=False
        )
        blocks, cin = [], w
        for stage in arch["stages"]:
            for b in range(stage["blocks"]):
                stride = stage["stride"] if b == 0 else 1
                blocks.append(Block(cin, stage["width"], arch["expansion"], stride, norm))
                cin = stage["width"]
        self.blocks = nn.Sequential(*blocks)
        self.head = norm(cin)
        self.fc = nn.Linear(cin, arch["classes"])

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = F.relu(self.head(x))
        return self.fc(x.mean(dim=(2, 3)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", help="architecture description (JSON of activeshift's ArchConfig)")
    ap.add_argument("--frozen-norm", action="store_true", help="folded BatchNorm (fine-tuning)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--expansion", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument(
        "--per-step", action="store_true", help="print each timed step's ms on its own line"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.arch:
        with open(args.arch) as f:
            arch = json.load(f)
    else:
        arch = asnet20(args.width, args.expansion)
    model = AsNet(arch, args.frozen_norm).to(memory_format=torch.channels_last)
    shifts = [p for n, p in model.named_parameters() if n.endswith("shift")]
    weights = [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    others = [
        p
        for n, p in model.named_parameters()
        if not n.endswith("shift") and not (n.endswith("weight") and p.dim() > 1)
    ]
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
    h, w = arch["input_size"]
    x = torch.randn(args.batch, arch["in_channels"], h, w)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, arch["classes"], (args.batch,))

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
