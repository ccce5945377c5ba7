#!/usr/bin/env python3
"""How far two golden fixtures of the same inputs are apart, measured as
`crates/multiad/tests/golden.rs` measures multiad against a fixture: each
gradient normwise over its network (max |a - b| over the largest gradient of
that network in B), the losses, Ψ, the map and the scores per tensor
(max |a - b| / max |b|). `scripts/differential.sh` uses it to print
PyTorch float32's own spread (one thread against the default) beside
multiad's error, so that a tolerance can be read against what float32
itself determines (docs/multiad.md, "Differential test"). The stepped
parameters are left out: Adam's first step is about lr·sign(g), so it
only repeats the gradients' comparison on the entries whose sign is settled.

    python3 scripts/golden_spread.py A.safetensors B.safetensors [--tolerance 1e-4] [--fail-beyond]

With --fail-beyond it exits 1 when any tensor is beyond the tolerance
(`scripts/differential.sh`: float32 then does not determine the result to
that tolerance, and the float32 comparison is reported, not required).
"""
import argparse, os, sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import read_arrays  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("a")
p.add_argument("b")
p.add_argument("--tolerance", type=float, default=1e-4)
p.add_argument("--fail-beyond", action="store_true", help="exit 1 when any tensor is beyond the tolerance")
args = p.parse_args()
A, B = read_arrays(args.a), read_arrays(args.b)


def max_abs(x):
    return float(np.abs(x.astype(np.float64)).max()) if x.size else 0.0


errors = {}
for net in ("student", "disc"):
    keys = [k for k in B if k.startswith(f"grad.{net}.")]
    scale = max((max_abs(B[k]) for k in keys), default=0.0) or np.finfo(float).tiny
    for k in keys:
        errors[k] = max_abs(A[k].astype(np.float64) - B[k]) / scale
for k in B:
    if k.startswith(("loss.", "psi.")) or k in ("map", "score"):
        errors[k] = max_abs(A[k].astype(np.float64) - B[k]) / (max_abs(B[k]) or np.finfo(float).tiny)
beyond = sorted(((e, k) for k, e in errors.items() if e > args.tolerance), reverse=True)
worst = max(errors.items(), key=lambda kv: kv[1])
print(f"worst relative difference: {worst[1]:.2e} ({worst[0]}); {len(beyond)} of {len(errors)} tensors beyond {args.tolerance:g}")
for e, k in beyond[:10]:
    print(f"  {k}: {e:.2e}")
sys.exit(1 if beyond and args.fail_beyond else 0)
