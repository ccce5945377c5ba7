#!/usr/bin/env python3
"""Image AUROC of a tested run when each map pixel is normalised by its own
position's statistics over normal images (a diagnostic, not a method).

The normal test images are split in two halves (seeded): one half gives the
per-position mean and standard deviation, the other half and every anomalous
image are scored, then the halves swap; the two AUROCs are averaged. Needs a
run tested with `multiad test --run RUN --save-maps`, NumPy and scikit-learn.

    python3 scripts/position_normalised_scores.py results/mt-cpu
"""
import csv
import sys

import numpy as np
from sklearn.metrics import roc_auc_score


def main(run: str) -> None:
    rows = list(csv.DictReader(open(f"{run}/scores.csv")))
    maps = np.load(f"{run}/maps.npy").astype(np.float64)
    label = np.array([int(r["label"]) for r in rows])
    kind = np.array([r["defect_type"] for r in rows])
    types = sorted(set(kind[label == 1]))
    normal = np.where(label == 0)[0]
    np.random.default_rng(0).shuffle(normal)
    halves = [normal[: len(normal) // 2], normal[len(normal) // 2 :]]
    rules = {
        "max of the map (Eq 15)": lambda x, mu, sd, pooled: x.max(1),
        "max of (map - mean) / std per position": lambda x, mu, sd, pooled: ((x - mu) / sd).max(1),
        "max of (map - mean per position) / pooled std": lambda x, mu, sd, pooled: ((x - mu) / pooled).max(1),
    }
    for name, rule in rules.items():
        overall, per_type = [], {t: [] for t in types}
        for k in range(2):
            fit, held = halves[k], halves[1 - k]
            flat_fit = maps[fit].reshape(len(fit), -1)
            mu, sd, pooled = flat_fit.mean(0), flat_fit.std(0) + 1e-6, flat_fit.std()
            sel = np.concatenate([held, np.where(label == 1)[0]])
            score = rule(maps[sel].reshape(len(sel), -1), mu, sd, pooled)
            overall.append(roc_auc_score(label[sel], score))
            for t in types:
                m = (kind[sel] == t) | (label[sel] == 0)
                per_type[t].append(roc_auc_score(label[sel][m], score[m]))
        detail = ", ".join(f"{t} {np.mean(v):.3f}" for t, v in per_type.items())
        print(f"{name}: image AUROC {np.mean(overall):.3f} ({detail})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
