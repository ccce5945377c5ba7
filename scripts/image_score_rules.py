#!/usr/bin/env python3
"""Image AUROC of tested runs under other image-score rules than Eq 15's
maximum: the mean of the map's top 0.1% / 1% / 5% pixels, and the map's
mean (a diagnostic of how much of the image score one pixel decides; it
chooses nothing). Needs runs tested with `multiad test --run RUN
--save-maps`, and NumPy. One row per run, then the mean and the minimum
over the runs.

    python3 scripts/image_score_rules.py RUN [RUN ...]
"""
import argparse
import csv

import numpy as np

RULES = {
    "max": lambda desc: desc[0],
    "top0.1%": lambda desc: desc[: max(1, desc.size // 1000)].mean(),
    "top1%": lambda desc: desc[: max(1, desc.size // 100)].mean(),
    "top5%": lambda desc: desc[: max(1, desc.size // 20)].mean(),
    "mean": lambda desc: desc.mean(),
}


def auroc(label: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney U over all (defective, normal) pairs, ties counted half."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    s = score[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos, neg = label.sum(), (1 - label).sum()
    return float((ranks[label == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()
    print(f"{'run':32s}" + "".join(f"{r:>9s}" for r in RULES))
    table = []
    for run in a.runs:
        label = np.array([int(r["label"]) for r in csv.DictReader(open(f"{run}/scores.csv"))])
        maps = np.load(f"{run}/maps.npy", mmap_mode="r")
        if len(maps) != len(label):
            raise SystemExit(f"{run}: maps.npy holds {len(maps)} maps, scores.csv {len(label)} rows")
        scores = {r: np.empty(len(label)) for r in RULES}
        for i, m in enumerate(maps):
            desc = np.sort(np.asarray(m, dtype=np.float64).ravel())[::-1]
            for r, f in RULES.items():
                scores[r][i] = f(desc)
        row = [auroc(label, scores[r]) for r in RULES]
        table.append(row)
        print(f"{run.rstrip('/').split('/')[-1]:32s}" + "".join(f"{v:9.3f}" for v in row))
    t = np.array(table)
    print(f"{'mean':32s}" + "".join(f"{v:9.3f}" for v in t.mean(0)))
    print(f"{'min':32s}" + "".join(f"{v:9.3f}" for v in t.min(0)))


if __name__ == "__main__":
    main()
