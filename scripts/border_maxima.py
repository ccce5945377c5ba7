#!/usr/bin/env python3
"""Share of a tested run's maps whose maximum lies within WIDTH pixels of the
image border, for normal and for defective test images (a diagnostic of
where the image score, Eq 15's maximum, comes from). Needs a run tested with
`multiad test --run RUN --save-maps` and NumPy.

    python3 scripts/border_maxima.py results/mt-cpu [--width 16]
"""
import argparse
import csv

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--width", type=int, default=16)
    a = ap.parse_args()
    label = np.array([int(r["label"]) for r in csv.DictReader(open(f"{a.run}/scores.csv"))])
    maps = np.load(f"{a.run}/maps.npy")
    n, h, w = maps.shape
    at = maps.reshape(n, -1).argmax(1)
    y, x = at // w, at % w
    near = np.minimum.reduce([y, x, h - 1 - y, w - 1 - x]) < a.width
    for name, sel in [("normal", label == 0), ("defective", label == 1)]:
        print(f"{name}: maximum within {a.width} px of the border for {near[sel].mean():.0%} of {sel.sum()} images")


if __name__ == "__main__":
    main()
