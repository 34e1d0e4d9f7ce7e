"""The Python PyTorch peer of the checkpoint tests.

  peer.py prepare DIR   writes fixtures made by torch.save / torchvision / a
                        hand-written safetensors writer, plus manifests (JSON)
  peer.py verify DIR    reads what torchline wrote into DIR and reports (JSON)

Run with /usr/bin/python3 (torch 1.13 + torchvision 0.14 on this machine).
The last stdout line is one JSON object.
"""
import collections
import hashlib
import io
import json
import os
import pickle
import pickletools
import struct
import sys
import zipfile

import numpy as np
import torch
import torchvision

torch.set_num_threads(2)

DTYPE_NAME = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
    torch.bfloat16: "bfloat16", torch.int64: "int64", torch.int32: "int32", torch.int16: "int16",
    torch.int8: "int8", torch.uint8: "uint8", torch.bool: "bool",
}
ST_CODE = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
ST_DTYPE = {v: k for k, v in ST_CODE.items()}


def raw(t):
    """Row-major bytes of a tensor, whatever its dtype and strides."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def describe(t):
    return {"shape": list(t.shape), "dtype": DTYPE_NAME[t.dtype], "sha256": hashlib.sha256(raw(t)).hexdigest()}


def manifest(sd):
    return [[k, describe(v)] for k, v in sd.items()]


def write_safetensors(path, tensors, metadata=None):
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        b = raw(t)
        header[name] = {"dtype": ST_CODE[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    out = collections.OrderedDict()
    base = 8 + n
    for name, e in header.items():
        b, end = e["data_offsets"]
        buf = bytearray(data[base + b : base + end])
        dt = ST_DTYPE[e["dtype"]]
        t = torch.frombuffer(buf, dtype=dt) if len(buf) else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"])
    return out, meta


class Evil:
    """What a malicious checkpoint does: run a shell command when unpickled."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class EvalEvil:
    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (eval, (self.code,))


def prepare(d):
    out = {}
    torch.manual_seed(0)
    r50 = torchvision.models.resnet50()
    sd50 = r50.state_dict()
    torch.save(sd50, os.path.join(d, "resnet50.pth"))
    out["resnet50"] = manifest(sd50)

    torch.manual_seed(1)
    r18 = torchvision.models.resnet18(num_classes=10)
    # Non-trivial running stats, so a wrong buffer would change the outputs.
    r18.train()
    with torch.no_grad():
        r18(torch.randn(4, 3, 32, 32))
    torch.save(r18.state_dict(), os.path.join(d, "resnet18.pth"))

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    mixed = {
        "f16": torch.tensor([1.5, -2.0, 65504.0, 6e-8], dtype=torch.float16),
        "bf16": torch.tensor([1.5, -2.0, 3e38, 1e-38], dtype=torch.bfloat16),
        "f64": torch.tensor([[1e-300, 3.141592653589793]], dtype=torch.float64),
        "i64": torch.tensor([-(2**63), 2**53 + 1, 2**63 - 1], dtype=torch.int64),
        "i32": torch.tensor([-(2**31), 7], dtype=torch.int32),
        "i16": torch.tensor([-32768, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([[True, False], [False, True]]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "base": base,
        "transposed": base.t(),
        "slice": base[1:3, 2:5],
        "strided": base[:, ::2],
        "param": torch.nn.Parameter(torch.ones(3)),
        "sd": collections.OrderedDict([("w", base[0]), ("b", torch.zeros(2))]),
        "int_keys": {0: 1, 1: [2, 3]},
        "nested": {"list": [1, -2, 2**40, -(2**70), 0.25, "héllo", None, True, False], "tuple": (1, "a")},
    }
    torch.save(mixed, os.path.join(d, "mixed.pth"))
    out["mixed"] = {k: describe(v) for k, v in mixed.items() if isinstance(v, torch.Tensor)}

    torch.save({"weights": torch.ones(2), "payload": Evil("touch " + os.path.join(d, "PWNED"))}, os.path.join(d, "evil.pth"))
    torch.save(
        collections.OrderedDict([("w", torch.ones(2)), ("x", EvalEvil("open(%r,'w').write('x')" % os.path.join(d, "PWNED2")))]),
        os.path.join(d, "evil4.pth"),
        pickle_protocol=4,
    )

    st = collections.OrderedDict(
        [("conv.weight", sd50["conv1.weight"]), ("bn.num_batches_tracked", sd50["bn1.num_batches_tracked"]),
         ("half", mixed["f16"]), ("bf", mixed["bf16"]), ("mask", mixed["bool"]), ("empty", mixed["empty"])]
    )
    write_safetensors(os.path.join(d, "py.safetensors"), st, {"format": "pt", "source": "peer.py"})
    out["safetensors"] = manifest(st)

    # The same resnet18 archive, deflated by Python's zipfile (other zip tools do this).
    with zipfile.ZipFile(os.path.join(d, "resnet18.pth")) as src, zipfile.ZipFile(
        os.path.join(d, "resnet18-deflated.pth"), "w", zipfile.ZIP_DEFLATED
    ) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    out["resnet18"] = manifest(torch.load(os.path.join(d, "resnet18.pth")))

    # The pre-1.6 format, still common for published weights.
    torch.save(r18.state_dict(), os.path.join(d, "legacy-resnet18.pth"), _use_new_zipfile_serialization=False)
    torch.save(mixed, os.path.join(d, "legacy-mixed.pth"), _use_new_zipfile_serialization=False)
    torch.save(
        {"w": torch.ones(2), "payload": Evil("touch " + os.path.join(d, "PWNED3"))},
        os.path.join(d, "legacy-evil.pth"),
        _use_new_zipfile_serialization=False,
    )
    return out


ALLOWED = None


def restricted_load(path):
    """torch.load(weights_only=True); torch 1.13's weights_only unpickler has no
    BINFLOAT, so for files with Python floats check by hand that only its
    allowlisted globals occur, then load normally."""
    try:
        return torch.load(path, weights_only=True), "weights_only"
    except (RuntimeError, pickle.UnpicklingError) as e:
        if "Unsupported operand 71" not in str(e):
            raise
    from torch._weights_only_unpickler import _get_allowed_globals

    with zipfile.ZipFile(path) as z:
        pkl = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
        data = z.read(pkl)
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            name = arg.replace(" ", ".")
            if name not in _get_allowed_globals():
                raise RuntimeError("global outside the weights_only allowlist: " + name)
        elif op.name not in {
            "PROTO", "EMPTY_DICT", "BINPUT", "LONG_BINPUT", "MARK", "BINUNICODE", "GLOBAL", "EMPTY_TUPLE", "REDUCE",
            "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "BINPERSID", "BININT", "BININT1", "BININT2", "LONG1", "NEWFALSE",
            "NEWTRUE", "NONE", "SETITEMS", "EMPTY_LIST", "APPENDS", "BINGET", "LONG_BINGET", "STOP", "BINFLOAT",
        }:
            raise RuntimeError("opcode outside the weights_only set: " + op.name)
    return torch.load(path, weights_only=False), "weights_only-compatible (1.13 lacks BINFLOAT)"


def jsonable(v):
    if isinstance(v, torch.Tensor):
        return {"tensor": describe(v)}
    if isinstance(v, dict):
        return {"dict" if type(v) is dict else "odict": [[jsonable(k), jsonable(x)] for k, x in v.items()]}
    if isinstance(v, tuple):
        return {"tuple": [jsonable(x) for x in v]}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, int) and not isinstance(v, bool):
        return {"int": str(v)}
    if isinstance(v, float):
        return {"float": v}
    return v


def verify(d):
    out = {}
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(num_classes=10)
    ref.load_state_dict(torch.load(os.path.join(d, "resnet18.pth")))
    ref.eval()
    torch.manual_seed(2)
    x = torch.randn(2, 3, 64, 64)
    want = ref(x)

    sd = torch.load(os.path.join(d, "tl-resnet18.pth"), weights_only=True)
    out["sd_type"] = type(sd).__name__
    m = torchvision.models.resnet18(num_classes=10)
    res = m.load_state_dict(sd, strict=True)
    m.eval()
    got = m(x)
    out["strict"] = {"missing": list(res.missing_keys), "unexpected": list(res.unexpected_keys)}
    out["outputs_equal"] = bool(torch.equal(got, want))
    out["resnet18_manifest"] = manifest(sd)

    z64 = torch.load(os.path.join(d, "tl-zip64.pth"), weights_only=True)
    out["zip64_manifest"] = manifest(z64)
    with zipfile.ZipFile(os.path.join(d, "tl-zip64.pth")) as z:
        out["zip64_testzip"] = z.testzip()
        with open(os.path.join(d, "tl-zip64.pth"), "rb") as f:
            data = f.read()
        # data offset from each local header (its extra field holds the padding)
        out["zip64_aligned"] = all(
            (i.header_offset + 30 + sum(struct.unpack("<HH", data[i.header_offset + 26 : i.header_offset + 30]))) % 64 == 0
            for i in z.infolist()
        )

    nested, how = restricted_load(os.path.join(d, "tl-nested.pth"))
    out["nested_how"] = how
    out["nested"] = jsonable(nested)

    st, meta = read_safetensors(os.path.join(d, "tl.safetensors"))
    out["safetensors_manifest"] = manifest(st)
    out["safetensors_meta"] = meta
    return out


if __name__ == "__main__":
    cmd, d = sys.argv[1], sys.argv[2]
    result = prepare(d) if cmd == "prepare" else verify(d)
    print(json.dumps(result))
