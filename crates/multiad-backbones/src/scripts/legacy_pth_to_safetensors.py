"""Converts a PyTorch state dict saved in the legacy (pre-1.6, non-zip)
torch.save format to safetensors, with the Python standard library only (no
torch, no numpy). Usage: python3 - IN.pth OUT.safetensors  (script on stdin).

Legacy layout: pickle(magic), pickle(protocol), pickle(sys_info), the pickled
object whose tensors reference storages by persistent id, pickle(sorted
storage keys), then per key an int64 element count and the raw bytes.
"""
import array
import itertools
import json
import pickle
import struct
import sys
from collections import OrderedDict

MAGIC = 0x1950A86A20F9469CFC6C
SIZES = {"FloatStorage": (4, "F32"), "DoubleStorage": (8, "F64"), "HalfStorage": (2, "F16"),
         "LongStorage": (8, "I64"), "IntStorage": (4, "I32"), "ByteStorage": (1, "U8")}
TYPECODES = {"F32": "f", "F64": "d", "I64": "q", "I32": "i", "U8": "B"}


def gather(blob, dtype, offset, size, stride):
    """Copies a strided view (e.g. weights stored in a permuted layout) into
    row-major order."""
    if dtype not in TYPECODES:
        raise SystemExit(f"strided {dtype} tensors are not supported")
    src = array.array(TYPECODES[dtype])
    src.frombytes(blob)
    out = array.array(TYPECODES[dtype])
    for idx in itertools.product(*(range(s) for s in size)):
        out.append(src[offset + sum(i * st for i, st in zip(idx, stride))])
    if sys.byteorder != "little":
        out.byteswap()
    return out.tobytes()


def rebuild_tensor(storage, offset, size, stride, *rest):
    return {"storage": storage, "offset": offset, "size": tuple(size), "stride": tuple(stride)}


class Loader(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return rebuild_tensor
        if module == "torch" and name in SIZES:
            return name
        raise pickle.UnpicklingError(f"unsupported global {module}.{name}")

    def persistent_load(self, pid):
        if pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid[0]!r}")
        _, kind, key, _location, numel = pid[:5]
        return (kind, key, numel)


def main(src, dst):
    with open(src, "rb") as f:
        if pickle.load(f) != MAGIC:
            sys.exit(f"{src}: not a legacy torch.save file (wrong magic number)")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        obj = Loader(f).load()
        keys = pickle.load(f)
        blobs = {}
        kinds = {}
        for v in obj.values():
            kind, key, _ = v["storage"]
            kinds[key] = kind
        for key in keys:
            (count,) = struct.unpack("<q", f.read(8))
            blobs[key] = f.read(count * SIZES[kinds.get(key, "FloatStorage")][0])
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    header, chunks, pos = {}, [], 0
    for name, t in obj.items():
        kind, key, _ = t["storage"]
        elsize, dtype = SIZES[kind]
        numel = 1
        for s in t["size"]:
            numel *= s
        expect, acc = [], 1
        for s in reversed(t["size"]):
            expect.insert(0, acc)
            acc *= s
        if numel <= 1 or list(t["stride"]) == expect:
            data = blobs[key][t["offset"] * elsize:(t["offset"] + numel) * elsize]
        else:
            data = gather(blobs[key], dtype, t["offset"], t["size"], t["stride"])
        header[name] = {"dtype": dtype, "shape": list(t["size"]), "data_offsets": [pos, pos + len(data)]}
        chunks.append(data)
        pos += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(dst, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for c in chunks:
            out.write(c)


main(sys.argv[1], sys.argv[2])
