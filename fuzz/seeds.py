#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/<target>/): small
valid inputs of every kind each target reads, plus a few near misses. Run
from fuzz/ (needs numpy and pillow); the output is committed."""
import glob
import gzip
import io
import json
import os
import struct

import numpy as np
from PIL import Image

os.chdir(os.path.dirname(os.path.abspath(__file__)))
for t in ["image", "nifti", "config", "checkpoint", "layout"]:
    os.makedirs(f"corpus/{t}", exist_ok=True)


def enc(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


# image: [u16 length of the image][image][mask]
g = Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype("uint8"))
rgb = Image.fromarray((np.random.RandomState(0).rand(8, 8, 3) * 255).astype("uint8"))
m = np.zeros((8, 8), "uint8")
m[2:5, 2:5] = 255
mask = enc(Image.fromarray(m), "PNG")
seeds = {
    "png_grey": enc(g, "PNG"),
    "png_rgb": enc(rgb, "PNG"),
    "png_rgba": enc(rgb.convert("RGBA"), "PNG"),
    "png_palette": enc(rgb.convert("P"), "PNG"),
    "png16": enc(Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype("uint16")), "PNG"),
    "jpeg": enc(rgb, "JPEG", quality=80),
    "tiff": enc(g, "TIFF"),
    "bmp": enc(rgb, "BMP"),
}
for k, v in seeds.items():
    open(f"corpus/image/{k}", "wb").write(struct.pack("<H", len(v)) + v + mask)
small = enc(Image.fromarray(m[:4, :4]), "PNG")
open("corpus/image/mask_wrong_size", "wb").write(struct.pack("<H", len(seeds["png_grey"])) + seeds["png_grey"] + small)


# nifti: NIfTI-1 single files, plain and gzipped
def nii(shape, code, dtype, big=False, slope=0.0):
    e = ">" if big else "<"
    h = bytearray(348)
    struct.pack_into(e + "i", h, 0, 348)
    struct.pack_into(e + "8h", h, 40, len(shape), *shape, *[1] * (7 - len(shape)))
    struct.pack_into(e + "hh", h, 70, code, np.dtype(dtype).itemsize * 8)
    struct.pack_into(e + "8f", h, 76, *[1.0] * 8)
    struct.pack_into(e + "f", h, 108, 352.0)
    struct.pack_into(e + "ff", h, 112, slope, 0.0)
    struct.pack_into(e + "hh", h, 252, 0, 1)
    for r in range(3):
        struct.pack_into(e + "4f", h, 280 + 16 * r, *[1.0 if c == r else 0.0 for c in range(4)])
    h[344:348] = b"n+1\0"
    n = int(np.prod(shape))
    data = (np.arange(n) % 7).astype(np.dtype(dtype).newbyteorder(e))
    return bytes(h) + b"\0\0\0\0" + data.tobytes()


vols = {
    "f32": nii((6, 5, 4), 16, "float32"),
    "u8": nii((6, 5, 4), 2, "uint8"),
    "i16_be": nii((4, 4, 3), 4, "int16", big=True),
    "i16_scaled": nii((4, 4, 3), 4, "int16", slope=2.0),
    "f64_4d": nii((3, 3, 3, 1), 64, "float64"),
    "u16": nii((5, 5, 2), 512, "uint16"),
}
for k, v in vols.items():
    open(f"corpus/nifti/{k}.nii", "wb").write(v)
    open(f"corpus/nifti/{k}.nii.gz", "wb").write(gzip.compress(v, mtime=0))

# config: every shipped smoke and cpu preset
for p in sorted(glob.glob("../experiments/**/smoke.yaml", recursive=True) + glob.glob("../experiments/**/cpu.yaml", recursive=True)):
    name = p.replace("../experiments/", "").replace("/", "_")
    open(f"corpus/config/{name}", "wb").write(open(p, "rb").read())


# checkpoint: safetensors files (8-byte header length, JSON header, data)
def st(tensors):
    hdr, data = {}, b""
    for name, (dt, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    j = json.dumps(hdr).encode()
    j += b" " * ((8 - len(j) % 8) % 8)
    return struct.pack("<Q", len(j)) + j + data


epochs = ("I64", [1], struct.pack("<q", 3))
open("corpus/checkpoint/epochs_only", "wb").write(st({"meta.epochs_done": epochs}))
open("corpus/checkpoint/one_weight", "wb").write(
    st({"meta.epochs_done": epochs, "student.stem.conv.weight": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4))})
)
open("corpus/checkpoint/bad_epochs", "wb").write(st({"meta.epochs_done": ("F32", [2], struct.pack("<2f", 1, 2))}))

# layout: byte pairs (directory + 13 * name, content); see fuzz_targets/layout.rs
D = 13


def pair(d, n, c):
    return bytes([d + D * n, c])


mvtec = pair(0, 0, 0) + pair(0, 1, 0) + pair(1, 0, 0) + pair(2, 0, 0) + pair(3, 2, 1) + pair(4, 1, 0) + pair(5, 3, 1)
open("corpus/layout/mvtec", "wb").write(mvtec)
open("corpus/layout/mvtec_missing_mask", "wb").write(pair(0, 0, 0) + pair(0, 1, 0) + pair(1, 0, 0) + pair(2, 0, 0))
open("corpus/layout/mvtec_bad_files", "wb").write(mvtec + pair(0, 4, 4) + pair(1, 5, 3) + pair(3, 2, 2))
bmad = pair(0, 0, 0) + pair(0, 1, 0) + pair(6, 0, 0) + pair(7, 0, 0) + pair(8, 0, 1) + pair(1, 0, 0) + pair(9, 0, 0) + pair(10, 0, 1)
open("corpus/layout/bmad", "wb").write(bmad)
