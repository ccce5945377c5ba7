#!/usr/bin/env python3
"""Image AUROC of a tested run when each map pixel is normalised by its own
position's statistics over normal images (a diagnostic, not a method).

By default the normal test images are split in two halves (seeded): one half
gives the per-position mean and standard deviation, the other half and every
anomalous image are scored, then the halves swap; the two AUROCs are
averaged. With `--fit-maps TRAIN.npy` (the training images' maps, written by
`cargo run -p multiad --example train_maps -- RUN TRAIN.npy`) the statistics
come from the training images instead and every test image is scored: no
test image informs the normalisation. Needs a run tested with
`multiad test --run RUN --save-maps`, NumPy and scikit-learn.

    python3 scripts/position_normalised_scores.py results/mt-cpu
    python3 scripts/position_normalised_scores.py results/mt-cpu --fit-maps train_maps.npy
"""
import argparse
import csv

import numpy as np
from sklearn.metrics import roc_auc_score

RULES = {
    "max of the map (Eq 15)": lambda x, mu, sd, pooled: x.max(1),
    "max of (map - mean) / std per position": lambda x, mu, sd, pooled: ((x - mu) / sd).max(1),
    "max of (map - mean per position) / pooled std": lambda x, mu, sd, pooled: ((x - mu) / pooled).max(1),
}


def fit(maps: np.ndarray):
    flat = maps.reshape(len(maps), -1)
    return flat.mean(0), flat.std(0) + 1e-6, flat.std()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--fit-maps", help="training images' maps (.npy) to fit the statistics on")
    a = ap.parse_args()
    rows = list(csv.DictReader(open(f"{a.run}/scores.csv")))
    maps = np.load(f"{a.run}/maps.npy").astype(np.float64)
    label = np.array([int(r["label"]) for r in rows])
    kind = np.array([r["defect_type"] for r in rows])
    types = sorted(set(kind[label == 1]))
    if a.fit_maps:
        train = np.load(a.fit_maps).astype(np.float64)
        if train.shape[1:] != maps.shape[1:]:
            raise SystemExit(f"{a.fit_maps}: maps of shape {train.shape[1:]}, the run's are {maps.shape[1:]}")
        # One fold: statistics from the training maps, every test image scored.
        folds = [(fit(train), np.arange(len(label)))]
    else:
        normal = np.where(label == 0)[0]
        np.random.default_rng(0).shuffle(normal)
        halves = [normal[: len(normal) // 2], normal[len(normal) // 2 :]]
        folds = [(fit(maps[halves[k]]), np.concatenate([halves[1 - k], np.where(label == 1)[0]])) for k in range(2)]
    for name, rule in RULES.items():
        overall, per_type = [], {t: [] for t in types}
        for (mu, sd, pooled), sel in folds:
            score = rule(maps[sel].reshape(len(sel), -1), mu, sd, pooled)
            overall.append(roc_auc_score(label[sel], score))
            for t in types:
                m = (kind[sel] == t) | (label[sel] == 0)
                per_type[t].append(roc_auc_score(label[sel][m], score[m]))
        detail = ", ".join(f"{t} {np.mean(v):.3f}" for t, v in per_type.items())
        print(f"{name}: image AUROC {np.mean(overall):.3f} ({detail})")


if __name__ == "__main__":
    main()
