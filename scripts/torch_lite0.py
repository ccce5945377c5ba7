"""EfficientNet-Lite0's stage table and TensorFlow "SAME" padding, as
crates/multiad-backbones/src/efficientnet.rs has them: shared by the PyTorch
scripts (bench_torch.py, golden_fixture.py)."""
import torch.nn.functional as F

# (repeats, kernel, stride, expand, in, out) per stage; no SE, ReLU6, BN eps
# 1e-3, TensorFlow "SAME" padding (odd pixel at the bottom/right).
LITE0 = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
         (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def pad_same(x, k, s):
    h, w = x.shape[-2:]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
