#!/usr/bin/env python3
"""How far the smoke tests' metrics move when training is perturbed.

A CPU model other than ours rounds the last bits of a matrix product
differently, and over a few epochs of training that difference grows like a
change of seed. So the spread of a method's smoke metrics over seeds bounds
what another x86-64 machine can give, and every threshold in the methods'
smoke tests sits below the minimum seen here, with a margin
(docs/reproducibility.md).

Runs the `multiad` binary on the synthetic category the tests use
(multiad_detector::testing::synthetic_category: tiles, seed 0, 64 px, 48
train, 16 good and 3 x 8 defective test images), once per method and seed:

    cargo build -p multiad-cli
    python3 scripts/smoke_spread.py --seeds 10 [--bin target/debug/multiad] [--methods padim,stfpm] [--check]

--check fails (exit 1) when any seed's metric is at or below the floor the
tests use (crates/multiad-detector/smoke_floors.txt): CI runs it over a few
seeds, so that a floor without margin shows on every machine, not only on
the CPU whose rounding happens to cross it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

METHODS = {
    "multiad": "experiments/smoke.yaml",
    "padim": "experiments/methods/padim/smoke.yaml",
    "patchcore": "experiments/methods/patchcore/smoke.yaml",
    "stfpm": "experiments/methods/stfpm/smoke.yaml",
    "rd4ad": "experiments/methods/rd4ad/smoke.yaml",
    "simplenet": "experiments/methods/simplenet/smoke.yaml",
    "mkd": "experiments/methods/mkd/smoke.yaml",
}


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "debug", "multiad"))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    floors = {}
    here = os.path.dirname(os.path.abspath(__file__))
    for line in open(os.path.join(here, "..", "crates", "multiad-detector", "smoke_floors.txt")):
        f = line.split()
        if f and not line.startswith("#"):
            floors[f[0]] = (float(f[1]), float(f[2]))
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        run([a.bin, "synth", "--out", data, "--category", "tiles", "--seed", "0", "--size", "64",
             "--train", "48", "--test-good", "16", "--test-per-defect", "8"])
        print("| method | image AUROC min / median / max | pixel AUROC min / median / max | seeds |")
        print("|---|---|---|---|")
        for m in a.methods.split(","):
            img, pix = [], []
            for s in range(a.seeds):
                out = os.path.join(tmp, f"{m}-{s}")
                run([a.bin, "train", "--config", METHODS[m], "--data", os.path.join(data, "tiles"),
                     "--out", out, "--seed", str(s)])
                run([a.bin, "test", "--run", out])
                with open(os.path.join(out, "metrics.json")) as f:
                    r = json.load(f)
                img.append(r["image_auroc"])
                pix.append(r["pixel_auroc"])
                print(f"  {m} seed {s}: {r['image_auroc']:.4f} / {r['pixel_auroc']:.4f}", file=sys.stderr)
            fi, fp = floors[m]
            if min(img) <= fi or min(pix) <= fp:
                failed.append(f"{m}: min {min(img):.3f} / {min(pix):.3f} against floors {fi} / {fp}")
            f3 = lambda v: f"{min(v):.3f} / {statistics.median(v):.3f} / {max(v):.3f}"
            print(f"| {m} | {f3(img)} | {f3(pix)} | {a.seeds} |", flush=True)
    if failed:
        print("floors without margin:\n  " + "\n  ".join(failed), file=sys.stderr)
        if a.check:
            sys.exit(1)


if __name__ == "__main__":
    main()
