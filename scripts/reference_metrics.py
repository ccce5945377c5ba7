"""Reference values for crates/multiad-metrics/tests/independent.rs.

AUROC with scikit-learn's roc_auc_score; AUPRO following the MVTec AD
evaluation protocol (8-connected components with scipy.ndimage.label, FPR over
all normal pixels, mean overlap over all regions, curve from (0,0) to (1,1),
trapezoid up to FPR 0.3 with interpolation, divided by 0.3).
Run: python3 scripts/reference_metrics.py
"""
import numpy as np
from scipy import ndimage
from sklearn.metrics import roc_auc_score

idx = np.arange(64)
scores = np.floor(((idx * 37) % 64) / 8.0) / 8.0
mask = (((idx * 37) % 64) > 40) | ((idx % 8 == 0) & (idx < 24))
print("SKLEARN_AUROC", repr(roc_auc_score(mask.astype(int), scores)))

m = mask.reshape(8, 8)
s = scores.reshape(8, 8)
labels, n = ndimage.label(m, structure=np.ones((3, 3), dtype=int))
fp = np.zeros(m.shape)
pro = np.zeros(m.shape)
fp[~m] = 1.0 / (~m).sum()
for r in range(1, n + 1):
    region = labels == r
    pro[region] = 1.0 / (n * region.sum())
order = np.argsort(-s.ravel(), kind="stable")
ss = s.ravel()[order]
fprs = np.cumsum(fp.ravel()[order])
pros = np.cumsum(pro.ravel()[order])
keep = np.append(np.diff(ss) != 0, True)
fprs = np.concatenate([[0.0], np.clip(fprs[keep], 0, 1), [1.0]])
pros = np.concatenate([[0.0], np.clip(pros[keep], 0, 1), [1.0]])
limit = 0.3
i = np.searchsorted(fprs, limit, side="right")
area = np.sum(0.5 * (pros[1:i] + pros[: i - 1]) * (fprs[1:i] - fprs[: i - 1]))
if fprs[i - 1] < limit:
    y = pros[i - 1] + (pros[i] - pros[i - 1]) * (limit - fprs[i - 1]) / (fprs[i] - fprs[i - 1])
    area += 0.5 * (y + pros[i - 1]) * (limit - fprs[i - 1])
print("REFERENCE_AUPRO", repr(float(area / limit)))
