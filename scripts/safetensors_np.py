"""Reads a safetensors file into NumPy arrays without the `safetensors`
package (only NumPy): the golden-fixture scripts' one reader."""
import json, struct

import numpy as np

DT = {"F32": np.float32, "F64": np.float64, "U8": np.uint8, "I64": np.int64}


def read_arrays(path):
    """{name: array} of every tensor in the file (metadata skipped)."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a : 8 + n + b], dtype=DT[v["dtype"]]).reshape(v["shape"]).copy()
    return out
