"""Golden fixture for the differential test of Multi-AD (issue 18): an
independent PyTorch implementation of the networks, losses, one training
step and the anomaly map, run on the weights and batch that multiad wrote.

    cargo run -p multiad --example golden_inputs -- experiments/smoke.yaml /tmp/g
    python3 scripts/golden_fixture.py --config /tmp/g/config.yaml \
        --inputs /tmp/g/inputs.safetensors --out crates/multiad/tests/fixtures/smoke_golden.safetensors

(`scripts/differential.sh smoke cpu paper` does this and runs the Rust side.)
Teachers: the smoke preset's random network, EfficientNet-Lite0 (TF "SAME"
padding, ReLU6, BN eps 1e-3, input (pixel - 127) / 128) and torchvision's
WideResNet-50-2, from the weights in the inputs.

The output holds the inputs and, computed here in float32 (PyTorch's
default, as multiad; `--float64` for a reference of higher precision):
  loss.g, loss.d, loss.adv          L_G (Eq 8), L_D (Eq 10), L_adv (Eq 11)
  grad.disc.<name>                  dL_D/dθ_D, before D's Adam step
  grad.student.<name>               d(L_G + λ L_adv)/dθ_S, against the updated D
  after.disc.<name>, after.student.<name>
                                    every tensor after one Adam step of each
                                    network (BN running statistics included)
  psi.mean, psi.std                 Ψ's statistics of the batch's layer maps
                                    after the step (eval mode)
  map, score                        the fused, smoothed map (Eqs 13-15) and
                                    the image scores, with those statistics

Written from the paper's equations and docs/multiad.md, not from the Rust
code: convolutions, batch norm, bilinear resizing and Adam are PyTorch's
own. The discriminator's dropout is off (its mask comes from multiad's
generator). Needs torch, numpy and PyYAML; not run in CI (the Rust test
`crates/multiad/tests/golden.rs` reads the committed fixture).
"""
import argparse, json, os, struct, sys

import numpy as np
import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_lite0 import LITE0, pad_same as tf_same  # noqa: E402

from safetensors_np import read_arrays  # noqa: E402


def read_safetensors(path):
    return {k: torch.from_numpy(v) for k, v in read_arrays(path).items()}


def write_safetensors(path, tensors, float64=False):
    """Every tensor as F32, or as F64 for a float64 run (so that a float64
    multiad can be compared beyond float32's last digit)."""
    header, blobs, off = {}, [], 0
    np_type, st_type = (torch.float64, "F64") if float64 else (torch.float32, "F32")
    for k in sorted(tensors):
        a = tensors[k].detach().to(np_type).contiguous().numpy()
        b = a.tobytes()
        header[k] = {"dtype": st_type, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


p = argparse.ArgumentParser()
p.add_argument("--config", required=True)
p.add_argument("--inputs", required=True)
p.add_argument("--out", required=True)
p.add_argument("--frozen-d", action="store_true", help="D's Adam step with lr 0 (scripts/differential.sh beyond smoke)")
p.add_argument("--float64", action="store_true", help="compute in float64 (how far float32 itself is from exact)")
p.add_argument("--threads", type=int, help="PyTorch's CPU threads (another summation order: float32's spread between two PyTorch runs)")
a = p.parse_args()
cfg = yaml.safe_load(open(a.config))
sc, dc, tc, ic = cfg["student"], cfg["discriminator"], cfg.get("train", {}), cfg.get("inference", {})
tkind = cfg["teacher"]["kind"]
# student.padding auto: "same" against Lite0's one-sided padding, else symmetric.
same = sc.get("padding", "auto") == "same" or (sc.get("padding", "auto") == "auto" and tkind == "efficientnet_lite0")
linear = sc.get("linear_outputs", False)
# What is mirrored here: the bottleneck student, Eq 8 over every cell, Ψ on
# one mean per layer (every preset's settings).
for key, default in (("student.layout", "bottleneck"), ("train.hard_share", 1), ("inference.psi_centre", "layer")):
    section, name = key.split(".")
    if cfg.get(section, {}).get(name, default) != default:
        raise SystemExit(f"{key} other than {default!r} is not mirrored here")

if a.threads:
    torch.set_num_threads(a.threads)
DTYPE = torch.float64 if a.float64 else torch.float32
torch.set_default_dtype(DTYPE)
inputs = read_safetensors(a.inputs)
T = {k: v.to(DTYPE) for k, v in inputs.items()}
images = T["input.images"]
BUFFERS = ("running_mean", "running_var", "sn_u")


def split(prefix):
    """(trainable params with grad, buffers) of one network."""
    params, bufs = {}, {}
    for k, v in T.items():
        if k.startswith(prefix):
            name = k[len(prefix) :]
            if name.endswith(BUFFERS):
                bufs[name] = v.clone()
            else:
                params[name] = v.clone().requires_grad_(True)
    return params, bufs


def bn(x, P, B, pre, train, relu):
    y = F.batch_norm(x, B[pre + ".running_mean"], B[pre + ".running_var"], P[pre + ".weight"], P[pre + ".bias"], training=train, momentum=0.1, eps=1e-5)
    return F.relu(y) if relu else y


def pad_stride2(x, extent):
    """TF "SAME" for a stride-2 layer spanning `extent` pixels on an even
    input: extent - 2 zeros, the odd one after (bottom/right)."""
    total = extent - 2
    return F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2))


def resnet(x, P, B, train, blocks, dilation, se, fusion, same=False, linear=False):
    """Stem (7x7/2, BN, ReLU, 3x3/2 max pool), four stages of bottlenecks
    (first of stages 2-4 strided; dilation 1, 2, 4, 8 with padding = rate),
    SE on the residual branch (Eqs 2-4), fusion of each stage with the
    upsampled one above (Eq 5). `same`: stride-2 layers padded as TF "SAME"
    and strided shortcuts sampling the odd pixels (student.padding: same);
    `linear`: no ReLU on the compared outputs (student.linear_outputs)."""
    if same:
        h = bn(F.conv2d(pad_stride2(x, 7), P["conv1.weight"], stride=2), P, B, "bn1", train, True)
        h = F.max_pool2d(pad_stride2(h, 3), 3, 2)  # zeros act as -inf after a ReLU
    else:
        h = bn(F.conv2d(x, P["conv1.weight"], stride=2, padding=3), P, B, "bn1", train, True)
        h = F.max_pool2d(h, 3, 2, 1)
    outs = []
    for s in range(4):
        rate = 2**s if dilation else 1
        for b in range(blocks[s]):
            stride = 2 if b == 0 and s > 0 else 1
            pre = f"layer{s + 1}.{b}."
            y = bn(F.conv2d(h, P[pre + "conv1.weight"]), P, B, pre + "bn1", train, True)
            if same and stride == 2:
                y = F.conv2d(pad_stride2(y, 2 * rate + 1), P[pre + "conv2.weight"], stride=2, dilation=rate)
            else:
                y = F.conv2d(y, P[pre + "conv2.weight"], stride=stride, padding=rate, dilation=rate)
            y = bn(y, P, B, pre + "bn2", train, True)
            y = bn(F.conv2d(y, P[pre + "conv3.weight"]), P, B, pre + "bn3", train, False)
            if pre + "downsample.0.weight" in P:
                src = h[:, :, 1:, 1:] if same and stride == 2 else h
                short = bn(F.conv2d(src, P[pre + "downsample.0.weight"], stride=stride), P, B, pre + "downsample.1", train, False)
            else:
                short = h
            if se:
                z = y.mean((2, 3))  # Eq 2
                s_ = torch.sigmoid(F.linear(F.relu(F.linear(z, P[pre + "se.fc1.weight"], P[pre + "se.fc1.bias"])), P[pre + "se.fc2.weight"], P[pre + "se.fc2.bias"]))  # Eq 3
                y = y * s_[:, :, None, None]  # Eq 4
            compared = (not fusion or s == 3) and b + 1 == blocks[s]
            h = y + short if linear and compared else F.relu(y + short)
        outs.append(h)
    if not fusion:
        return outs
    fused = []
    for s in range(3):
        up = F.interpolate(outs[s + 1], size=outs[s].shape[2:], mode="bilinear", align_corners=False)
        y = F.conv2d(torch.cat([outs[s], up], 1), P[f"fuse{s + 1}.conv.weight"])
        fused.append(bn(y, P, B, f"fuse{s + 1}.bn", train, not linear))
    return fused + [outs[3]]


def lite0(x, P, B, layers):
    """Stage outputs of EfficientNet-Lite0 (the package's tensor names), in
    eval mode, for ImageNet-normalised input."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = ((x * std + mean) * 255 - 127) / 128
    cbn = lambda h, conv, norm, **kw: F.batch_norm(F.conv2d(h, P[conv + ".weight"], **kw), B[norm + ".running_mean"], B[norm + ".running_var"], P[norm + ".weight"], P[norm + ".bias"], False, 0.1, 1e-3)
    h = F.relu6(cbn(tf_same(x, 3, 2), "_conv_stem", "_bn0", stride=2))
    outs, i = [], 0
    for n, k, st, e, cin, cout in LITE0:
        for r in range(n):
            pre, s_, c_in = f"_blocks.{i}.", st if r == 0 else 1, cin if r == 0 else cout
            y = F.relu6(cbn(h, pre + "_expand_conv", pre + "_bn0")) if e != 1 else h
            y = F.relu6(cbn(tf_same(y, k, s_), pre + "_depthwise_conv", pre + "_bn1", stride=s_, groups=y.shape[1]))
            y = cbn(y, pre + "_project_conv", pre + "_bn2")
            h = y + h if s_ == 1 and c_in == cout else y
            i += 1
        outs.append(h)
        if len(outs) > max(layers):
            break
    return [outs[l] for l in layers]


def unit(f):
    # Eq 6, the squared norm clamped at 1e-16 before the square root.
    return f / (f * f).sum(1, keepdim=True).clamp_min(1e-16).sqrt()


def cos_map(t, s):
    return 1 - (unit(t) * unit(s)).sum(1, keepdim=True)  # Eq 13


tP, tB = split("teacher.")
sP, sB = split("student.")
dP, dB = split("disc.")
for v in tP.values():
    v.requires_grad_(False)
if tkind == "random":
    teacher = lambda x: resnet(x, tP, tB, False, [1, 1, 1, 1], False, False, False)
elif tkind == "efficientnet_lite0":
    teacher = lambda x: lite0(x, tP, tB, cfg["teacher"].get("layers") or [1, 2, 4, 6])
elif tkind == "wide_resnet50_2":
    import torchvision

    wrn = torchvision.models.wide_resnet50_2().to(DTYPE).eval()
    missing = wrn.load_state_dict({**tP, **tB}, strict=False).missing_keys
    assert all(k.startswith("fc.") or k.endswith("num_batches_tracked") for k in missing), missing
    layers = cfg["teacher"].get("layers") or [0, 1, 2, 3]

    def teacher(x):
        h = wrn.maxpool(wrn.relu(wrn.bn1(wrn.conv1(x))))
        outs = []
        for layer in (wrn.layer1, wrn.layer2, wrn.layer3, wrn.layer4):
            h = layer(h)
            outs.append(h)
        return [outs[l] for l in layers]
else:
    raise SystemExit(f"teacher kind {tkind!r} is not mirrored here")
unframed_teacher = teacher
unframed_student = lambda x, train: resnet(x, sP, sB, train, sc["blocks"], sc.get("dilation", True), sc.get("se", True), sc.get("fusion", True), same, linear)
# reflect_pad: both networks see the image framed by its mirror image
# (F.pad's reflect mode); critical layer n (stride 4·2^n) is cropped by
# pad / stride cells on each side, back to the image's cells.
PAD = cfg.get("reflect_pad", 0)


def framed(net):
    if PAD == 0:
        return net

    def run(x, *args):
        outs = net(F.pad(x, (PAD, PAD, PAD, PAD), mode="reflect"), *args)
        return [f[:, :, PAD // (4 << n) : f.shape[2] - PAD // (4 << n), PAD // (4 << n) : f.shape[3] - PAD // (4 << n)] for n, f in enumerate(outs)]

    return run


teacher = framed(unframed_teacher)
# reflect_pad_networks: teacher leaves the student unframed.
student = framed(unframed_student) if cfg.get("reflect_pad_networks", "both") == "both" else unframed_student
grid = min(dc.get("grid", 8), cfg["image_size"] // 32)
slope = dc.get("leaky_slope", 0.2)


def prepare(feats):
    parts = []
    for f in feats:
        if dc.get("input", "normalized") == "normalized":
            f = unit(f)
        k = (f.shape[2] // grid, f.shape[3] // grid)
        parts.append(F.avg_pool2d(f, k) if max(k) > 1 else f)
    return torch.cat(parts, 1)


def spectral(name):
    """discriminator.spectral_norm (Miyato et al. 2018): W / σ(W), σ from one
    power iteration that starts at the stored u and stores the new u (every
    training forward pass), σ = uᵀ W v with u, v held constant."""
    w = dP[name + ".weight"]
    if not dc.get("spectral_norm", False):
        return w
    m = w.detach().reshape(w.shape[0], -1)
    u = dB[name + ".sn_u"]
    v = F.normalize(m.t() @ u, dim=0, eps=1e-12)
    u = F.normalize(m @ v, dim=0, eps=1e-12)
    dB[name + ".sn_u"] = u
    return w / (u @ (w.reshape(w.shape[0], -1) @ v))


def disc(x):
    h = x
    for i in range(len(dc["channels"])):
        w = spectral(f"conv{i + 1}")
        y = bn(F.conv2d(h, w, dP.get(f"conv{i + 1}.bias"), padding=1), dP, dB, f"bn{i + 1}", True, False)
        h = F.leaky_relu(y, slope)
    return F.linear(h.flatten(1), spectral("fc"), dP["fc.bias"]).squeeze(1)


def adam(params, lr):
    return torch.optim.Adam(list(params.values()), lr=lr, betas=(tc.get("beta1", 0.9), tc.get("beta2", 0.999)), eps=1e-8)


def upsample(m, size):
    """Eq 14's bilinear upsampling. half_pixel: PyTorch's resize. cell_centres:
    each cell on its receptive-field centre, s·i + s - 1 under TF "SAME"
    (Lite0), s·i under symmetric padding; sampled with grid_sample, whose
    align_corners=True grid runs from the first cell's centre to the last."""
    if ic.get("upsample", "half_pixel") == "half_pixel":
        return F.interpolate(m, size=size, mode="bilinear", align_corners=False)
    coords = []
    for n_out, n_in in zip(size, m.shape[2:]):
        s = n_out / n_in
        first = s - 1 if tkind == "efficientnet_lite0" else 0.0
        u = ((torch.arange(n_out, dtype=m.dtype) - first) / s).clamp(0, n_in - 1)
        coords.append(2 * u / max(n_in - 1, 1) - 1)
    gy, gx = torch.meshgrid(coords[0], coords[1], indexing="ij")
    grid = torch.stack([gx, gy], -1).unsqueeze(0).expand(m.shape[0], -1, -1, -1)
    return F.grid_sample(m, grid, mode="bilinear", padding_mode="border", align_corners=True)


# The anomaly map on the weights before the step (eval mode; after Adam's
# first step, about lr·sign(g), the student is not determined in float32
# wherever g is rounding noise: at the paper scale that is 67 M of 84 M
# parameters, and PyTorch's own float32 and float64 maps then differ by 13%,
# against 4e-6 before the step). Ψ's statistics from this batch's layer
# maps, then Eq 14 (ReLU of the standardised map), bilinear upsampling, the
# sum, a Gaussian (reflect borders) and the maximum (Eq 15).
with torch.no_grad():
    maps = [cos_map(t, s) for t, s in zip(teacher(images), student(images, False))]
    mean = torch.stack([m.mean() for m in maps])
    std = torch.stack([m.std(unbiased=False) for m in maps])
    size = images.shape[2:]
    total = 0
    for n, m in enumerate(maps):
        m = F.relu((m - mean[n]) / torch.sqrt(std[n] ** 2 + 1e-5))
        total = total + upsample(m, size)
    sigma = ic.get("sigma", 4.0)
    r = int(4 * sigma + 0.5)
    x = torch.arange(-r, r + 1, dtype=torch.get_default_dtype())
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    y = F.pad(total, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    y = F.conv2d(y, k.view(1, 1, -1, 1))
out = dict(inputs)
out["psi.mean"], out["psi.std"] = mean, std
out["map"] = y.squeeze(1)
out["score"] = y.flatten(1).max(1).values
opt_d, opt_s = adam(dP, 0.0 if a.frozen_d else tc.get("disc_lr", 1e-3)), adam(sP, tc.get("lr", 1e-3))
with torch.no_grad():
    t_feats = teacher(images)
s_feats = student(images, True)
lg = sum(cos_map(t, s).mean() for t, s in zip(t_feats, s_feats)) / len(t_feats)  # Eq 8
# D first: T real, S fake and detached (Eq 10).
real, fake = disc(prepare(t_feats)), disc(prepare([f.detach() for f in s_feats]))
# One-sided label smoothing ε: the teacher's target is 1 - ε.
eps_ls = dc.get("label_smoothing", 0.0)
ld = ((1 - eps_ls) * F.softplus(-real) + eps_ls * F.softplus(real)).mean() + F.softplus(fake).mean()
names_d = list(dP)
gd = torch.autograd.grad(ld, [dP[n] for n in names_d])
for n, g in zip(names_d, gd):
    out["grad.disc." + n] = g
    dP[n].grad = g
opt_d.step()
# Then S against the updated D: L_G + λ L_adv (Eqs 11-12).
fake2 = disc(prepare(s_feats))
ladv = F.softplus(-fake2).mean()
# λ of the run's first step with one batch per epoch (what golden.rs runs):
# the warm-up ramps it linearly over lambda_warmup_epochs epochs.
warm = dc.get("lambda_warmup_epochs", 0)
ls = lg + dc.get("lambda", 0.01) * (min(1.0, 1.0 / warm) if warm else 1.0) * ladv
names_s = list(sP)
gs = torch.autograd.grad(ls, [sP[n] for n in names_s])
for n, g in zip(names_s, gs):
    out["grad.student." + n] = g
    sP[n].grad = g
opt_s.step()
out["loss.g"], out["loss.d"], out["loss.adv"] = lg.reshape(1), ld.reshape(1), ladv.reshape(1)
for pre, P, B in (("after.student.", sP, sB), ("after.disc.", dP, dB)):
    for n, v in list(P.items()) + list(B.items()):
        out[pre + n] = v

write_safetensors(a.out, out, float64=a.float64)
print(f"L_G {lg.item():.6f}  L_D {ld.item():.6f}  L_adv {ladv.item():.6f}  scores {out['score'].tolist()}")
print(f"wrote {len(out)} tensors to {a.out}")
