#!/usr/bin/env python3
"""Image and pixel AUROC of a tested run with one defect type left out of the
test set (all pixels, masks thresholded at > 127 and resized to the maps'
size with nearest neighbour, as the loader does). Needs a run tested with
`multiad test --run RUN --save-maps`, NumPy, Pillow and scikit-learn, and
masks beside the images with the same name and a `.png` extension (the
magnetic-tile layout).

    python3 scripts/pooled_without_type.py results/mt-cpu MT_Uneven
"""
import csv
import sys

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score


def main(run: str, left_out: str) -> None:
    rows = list(csv.DictReader(open(f"{run}/scores.csv")))
    maps = np.load(f"{run}/maps.npy", mmap_mode="r")
    _, h, w = maps.shape
    keep = [i for i, r in enumerate(rows) if r["defect_type"] != left_out]
    label = np.array([int(rows[i]["label"]) for i in keep])
    score = np.array([float(rows[i]["score"]) for i in keep])
    masks = np.zeros((len(keep), h, w), bool)
    for k, i in enumerate(keep):
        if rows[i]["label"] == "1":
            m = Image.open(rows[i]["path"].rsplit(".", 1)[0] + ".png").convert("L").resize((w, h), Image.NEAREST)
            masks[k] = np.asarray(m) > 127
    pixel = roc_auc_score(masks.ravel(), np.asarray(maps[keep]).ravel())
    print(f"without {left_out}: image AUROC {roc_auc_score(label, score):.3f}, pixel AUROC {pixel:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
