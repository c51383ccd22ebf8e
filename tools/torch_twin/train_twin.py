#!/usr/bin/env python3
"""PyTorch twin of the activeshift CPU trainer, for timing only.

ASNet-20 WxE on 1x28x28 Fashion-MNIST-sized input (the network of docs/design.md and
`activeshift::train::fashion_mnist_config`): a 3x3 stem, nine pre-activation blocks
(BN-ReLU, 1x1 expand + BN + ReLU, ASL with the block's stride, 1x1 reduce, residual; a strided
1x1 projection shortcut where the shape changes), BN-ReLU, global average pool, linear. The
recipe of `activeshift train`: Nesterov SGD (momentum 0.9), weight decay on convolution and
linear weights only, the shift gradient normalised per channel to unit length and applied at
0.01x the learning rate, batch 128.

The ASL is expressed as a depthwise 3x3 convolution whose kernel is the bilinear "tent" built
from the shifts (exact for |shift| < 1, which holds for these timings), in channels-last
memory format, on 2 threads. It reports images/s over N timed steps on random data.

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch
    /tmp/torchvenv/bin/python tools/torch_twin/train_twin.py --steps 20

`activeshift bench` runs it beside its `train_cpu` case when ACTIVESHIFT_TORCH_PYTHON names
that interpreter, and reports the ratio (`train_cpu_vs_torch_twin`).
"""
import argparse
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


class Block(nn.Module):
    def __init__(self, cin, width, expansion, stride):
        super().__init__()
        inner = width * expansion
        self.pre = nn.BatchNorm2d(cin)
        self.projection = (
            nn.Conv2d(cin, width, 1, stride=stride, bias=False)
            if stride != 1 or cin != width
            else None
        )
        self.expand = nn.Conv2d(cin, inner, 1, bias=False)
        self.mid = nn.BatchNorm2d(inner)
        self.asl = Asl(inner, stride)
        self.reduce = nn.Conv2d(inner, width, 1, bias=False)

    def forward(self, x):
        t = F.relu(self.pre(x))
        shortcut = self.projection(t) if self.projection is not None else x
        u = F.relu(self.mid(self.expand(t)))
        return self.reduce(self.asl(u)) + shortcut


class AsNet20(nn.Module):
    def __init__(self, w=16, e=1, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, w, 3, padding=1, bias=False)
        blocks, cin = [], w
        for width, stride in [(w, 1), (2 * w, 2), (4 * w, 2)]:
            for b in range(3):
                blocks.append(Block(cin, width, e, stride if b == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, classes)

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
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--expansion", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument(
        "--per-step", action="store_true", help="print each timed step's ms on its own line"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = AsNet20(args.width, args.expansion).to(memory_format=torch.channels_last)
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
    x = torch.randn(args.batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))

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
