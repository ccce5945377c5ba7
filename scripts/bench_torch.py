"""PyTorch side of `cargo xtask bench model`: the same networks as multiad's
`paper` (WideResNet-50-2 teacher) and `cpu` (EfficientNet-Lite0 teacher)
presets, timed the same way (best of 2 after a warm-up).
Prints one JSON object: {"teacher": s, "train_step": s, "inference": s,
"flops": {same keys: operations per call}, "gemm_flops_per_s": f32 matmul rate}.

Needs torch (and torchvision for the WideResNet teacher). Not run in CI.
"""
import argparse, json, time

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml  # PyYAML

p = argparse.ArgumentParser()
p.add_argument("--preset", default="paper")
p.add_argument("--batch", type=int, default=2)
p.add_argument("--size", type=int, default=256)
p.add_argument("--device", default="cpu", help="cpu or cuda[:N], as multiad's --device")
a = p.parse_args()
torch.set_num_threads(torch.get_num_threads())
cfg = yaml.safe_load(open(f"experiments/{a.preset}.yaml"))
sc = cfg["student"]


class SE(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        h = max(1, c // r)
        self.fc1, self.fc2 = nn.Linear(c, h), nn.Linear(h, c)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class Bottleneck(nn.Module):
    def __init__(self, cin, w, cout, stride, dil, se, r):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, w, 1, bias=False), nn.BatchNorm2d(w)
        self.c2, self.b2 = nn.Conv2d(w, w, 3, stride, dil, dil, bias=False), nn.BatchNorm2d(w)
        self.c3, self.b3 = nn.Conv2d(w, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.se = SE(cout, r) if se else None
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.b1(self.c1(x)))
        h = F.relu(self.b2(self.c2(h)))
        h = self.b3(self.c3(h))
        if self.se is not None:
            h = self.se(h)
        return F.relu(h + (self.down(x) if self.down is not None else x))


class Student(nn.Module):
    def __init__(self, out):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, sc["stem_channels"], 7, 2, 3, bias=False), nn.BatchNorm2d(sc["stem_channels"]), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        cin, stages = sc["stem_channels"], []
        for s in range(4):
            blocks = []
            for b in range(sc["blocks"][s]):
                blocks.append(Bottleneck(cin, sc["widths"][s], out[s], 2 if (b == 0 and s > 0) else 1, (1 << s) if sc["dilation"] else 1, sc["se"], sc["se_reduction"]))
                cin = out[s]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.fuse = nn.ModuleList([nn.Sequential(nn.Conv2d(out[s] + out[s + 1], out[s], 1, bias=False), nn.BatchNorm2d(out[s]), nn.ReLU()) for s in range(3)]) if sc["fusion"] else None

    def forward(self, x):
        h, outs = self.stem(x), []
        for st in self.stages:
            h = st(h)
            outs.append(h)
        if self.fuse is None:
            return outs
        return [self.fuse[s](torch.cat([outs[s], F.interpolate(outs[s + 1], size=outs[s].shape[-2:], mode="bilinear", align_corners=False)], 1)) for s in range(3)] + [outs[3]]


import torchvision  # noqa: E402

# EfficientNet-Lite0 as crates/multiad-backbones/src/efficientnet.rs builds it.
import os, sys  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_lite0 import LITE0, pad_same  # noqa: E402


class MbConv(nn.Module):
    def __init__(self, cin, cout, k, s, e):
        super().__init__()
        mid = cin * e
        self.k, self.s, self.res = k, s, s == 1 and cin == cout
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid, 1e-3), nn.ReLU6()) if e != 1 else None
        self.dw, self.bn1 = nn.Conv2d(mid, mid, k, s, groups=mid, bias=False), nn.BatchNorm2d(mid, 1e-3)
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout, 1e-3))

    def forward(self, x):
        h = self.expand(x) if self.expand is not None else x
        h = self.project(F.relu6(self.bn1(self.dw(pad_same(h, self.k, self.s)))))
        return h + x if self.res else h


class Lite0(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, bias=False), nn.BatchNorm2d(32, 1e-3))
        self.stages = nn.ModuleList(
            nn.Sequential(*[MbConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e) for r in range(n)])
            for n, k, s, e, cin, cout in LITE0)

    def forward(self, x, upto):
        h, outs = F.relu6(self.stem(pad_same(x, 3, 2))), []
        for st in self.stages[:upto]:
            h = st(h)
            outs.append(h)
        return outs


kind = cfg["teacher"]["kind"]
if kind == "wide_resnet50_2":
    t = torchvision.models.wide_resnet50_2().eval()
    out = [256, 512, 1024, 2048]

    def teacher(x):
        x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
        f1 = t.layer1(x); f2 = t.layer2(f1); f3 = t.layer3(f2); f4 = t.layer4(f3)
        return [f1, f2, f3, f4]
elif kind == "efficientnet_lite0":
    t = Lite0().eval()
    layers = cfg["teacher"].get("layers") or [1, 2, 4, 6]
    out = [LITE0[l][5] for l in layers]

    def teacher(x):
        feats = t(x, max(layers) + 1)
        return [feats[l] for l in layers]
else:
    raise SystemExit(f"teacher kind {kind!r} is not mirrored here")

dev = torch.device(a.device)
t = t.to(dev)
student = Student(out).to(dev)
opt = torch.optim.Adam(student.parameters(), lr=1e-3)
x = torch.randn(a.batch, 3, a.size, a.size, device=dev)


def sync():
    """Waits for queued GPU kernels, so that a time covers the work."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def best(f, reps=2):
    f(); sync()
    b = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter(); f(); sync(); b = min(b, time.perf_counter() - t0)
    return b


with torch.no_grad():
    tf = teacher(x)
t_teacher = best(lambda: torch.no_grad()(teacher)(x))


def step():
    s = student.train()(x)
    loss = sum((1 - F.cosine_similarity(a_, b_, dim=1)).mean() for a_, b_ in zip(tf, s)) / 4
    opt.zero_grad(); loss.backward(); opt.step()


def infer():
    with torch.no_grad():
        s = student.eval()(x)
        m = sum(F.interpolate(1 - F.cosine_similarity(a_, b_, dim=1)[:, None], size=(a.size, a.size), mode="bilinear", align_corners=False) for a_, b_ in zip(teacher(x), s))
        return m


def flops(f):
    """Floating-point operations of one call, by PyTorch's own counter
    (convolutions and matrix products, forward and backward: the same count
    holds for multiad's identical networks)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        f()
    return counter.get_total_flops()


def gemm_peak(n=2048):
    """The machine's attainable f32 rate: one large matrix product."""
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    return 2 * n**3 / best(lambda: a @ b, reps=3)


out = {"teacher": t_teacher, "train_step": best(step), "inference": best(infer)}
out["flops"] = {"teacher": flops(lambda: torch.no_grad()(teacher)(x)), "train_step": flops(step), "inference": flops(infer)}
out["gemm_flops_per_s"] = gemm_peak()
print(json.dumps(out))
