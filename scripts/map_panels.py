#!/usr/bin/env python3
"""Looks at a tested run's maps: a PNG grid of image | mask | map rows for a
few normal and a few anomalous test images (every map on one shared scale,
so that colours compare across rows), and where the map mass lies: the mean
map value inside the masks, on normal pixels of the foreground, and on the
background (pixels darker than --dark in the image, e.g. the black around a
brain slice). Needs `multiad test --run RUN --save-maps`, NumPy and Pillow.

    python3 scripts/map_panels.py results/brain-cpu --out panels.png [--rows 4] [--dark 0.05]
"""
import argparse
import csv

import numpy as np
from PIL import Image


def load_grey(path, size):
    return np.asarray(Image.open(path).convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0


def mask_of(img_path, size):
    # MVTec: test/<type>/x.png -> ground_truth/<type>/x_mask.png; BMAD: img/ -> label/; folder: same-name .png.
    import os

    cands = [img_path.replace("/img/", "/label/"), os.path.splitext(img_path)[0] + ".png"]
    p = img_path.split("/test/")
    if len(p) == 2:
        t, f = p[1].split("/", 1)
        cands.append(f"{p[0]}/ground_truth/{t}/{os.path.splitext(f)[0]}_mask.png")
    for c in cands:
        if c != img_path and os.path.isfile(c):
            return load_grey(c, size) > 0.5
    return np.zeros((size, size), bool)


def jet(v):
    v = np.clip(v, 0, 1)
    f = lambda x: np.clip(1.5 - np.abs(4 * v - x), 0, 1)
    return np.stack([f(3), f(2), f(1)], -1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--dark", type=float, default=0.05)
    a = ap.parse_args()
    rows = list(csv.DictReader(open(f"{a.run}/scores.csv")))
    maps = np.load(f"{a.run}/maps.npy")
    n, size, _ = maps.shape
    inside, fg, bg = [], [], []
    for r, m in zip(rows, maps):
        img = load_grey(r["path"], size)
        mk = mask_of(r["path"], size) if r["label"] == "1" else np.zeros_like(img, bool)
        dark = img < a.dark
        if mk.any():
            inside.append(m[mk].mean())
        if (~dark & ~mk).any():
            fg.append(m[~dark & ~mk].mean())
        if dark.any():
            bg.append(m[dark].mean())
    print(f"mean map value: defect pixels {np.mean(inside) if inside else float('nan'):.4f}, "
          f"normal foreground {np.mean(fg):.4f}, dark background {np.mean(bg) if bg else float('nan'):.4f}")
    pick = [i for i, r in enumerate(rows) if r["label"] == "0"][: a.rows] + [i for i, r in enumerate(rows) if r["label"] == "1"][: a.rows]
    hi = float(np.percentile(maps[pick], 99.5)) or 1.0
    lo = float(maps[pick].min())
    tiles = []
    for i in pick:
        img = load_grey(rows[i]["path"], size)
        mk = mask_of(rows[i]["path"], size) if rows[i]["label"] == "1" else np.zeros_like(img, bool)
        rgb = np.repeat(img[..., None], 3, -1)
        tiles.append(np.concatenate([rgb, np.repeat(mk[..., None].astype(np.float32), 3, -1), jet((maps[i] - lo) / (hi - lo))], 1))
    grid = (np.concatenate(tiles, 0) * 255).astype(np.uint8)
    Image.fromarray(grid).save(a.out)
    print(f"{len(pick)} rows (normal first) -> {a.out}; map scale {lo:.3f} .. {hi:.3f}")


if __name__ == "__main__":
    main()
