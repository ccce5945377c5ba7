#!/usr/bin/env python3
"""A tested run's pooled AUROCs beside the means of its per-type ones
(`per_defect_type` in metrics.json): image AUROC weighted by each type's
image count (equal to the pooled value, since every type is scored against
the same normal images) and pixel AUROC weighted by each type's share of
the defect pixels (close to the pooled value, not equal: the pooled
negatives include the normal pixels of every defective image).

    python3 scripts/weighted_per_type.py results/mt-cpu
"""
import json
import sys


def main(run: str) -> None:
    m = json.load(open(f"{run}/metrics.json"))
    per = m.get("per_defect_type")
    if not per:
        sys.exit(f"{run}/metrics.json has no per_defect_type: test the run again with this version of multiad")
    n = sum(t["images"] for t in per.values())
    image = sum(t["images"] * t["image_auroc"] for t in per.values()) / n
    print(f"image AUROC: pooled {m['image_auroc']:.4f}, count-weighted mean of the types {image:.4f}")
    typed = [t for t in per.values() if t.get("pixel_auroc") is not None]
    if m.get("pixel_auroc") is not None and typed:
        pixel = sum(t["defect_pixel_share"] * t["pixel_auroc"] for t in typed)
        print(f"pixel AUROC: pooled {m['pixel_auroc']:.4f}, defect-pixel-share-weighted mean {pixel:.4f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
