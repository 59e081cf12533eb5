"""Writes the tiny files used by tools/tests/checkpoint_torch_data.rs and npy_files.rs.

Run from the repo root with a Python that has torch and numpy:
    python tools/tests/data/make_checkpoint_data.py
Deterministic; the files cover what fixtures/ does not: pickle protocols 1/4/5,
training-wrapper objects (argparse.Namespace, numpy scalars/arrays, torch.device,
optimizer state), nn.Parameter, deflate-compressed zips, and big-endian zip and
legacy files. expected.json lists every tensor the Rust reader must return.
"""

import argparse
import collections
import io
import json
import os
import pickle
import struct
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
torch.manual_seed(0)
expected = {}


def record(name, sd, prefix=""):
    expected[name] = [
        [k[len(prefix):], list(v.shape), [float(x) for x in v.detach().float().flatten().tolist()]]
        for k, v in sd.items()
    ]


def path(name):
    return os.path.join(HERE, name)


# 1. Protocol 4 zip inside a training wrapper, DataParallel prefix, Parameters,
#    non-contiguous and scalar tensors, and non-tensor objects around it.
base = torch.randn(3, 2)
sd = collections.OrderedDict()
sd["module.w"] = torch.nn.Parameter(torch.randn(2, 3))
sd["module.t"] = base.t()  # non-contiguous view
sd["module.h"] = torch.randn(4).half()
sd["module.bn.num_batches_tracked"] = torch.tensor(5)
opt = torch.optim.SGD([sd["module.w"]], lr=0.1, momentum=0.9)
sd["module.w"].grad = torch.ones(2, 3)
opt.step()
wrapper = {
    "epoch": 7,
    "args": argparse.Namespace(lr=0.1, arch="r8", milestones=[3, 6]),
    "state_dict": sd,
    "optimizer": opt.state_dict(),
    "best": np.float64(0.5),
    "arr": np.arange(3, dtype=np.int64),
    "device": torch.device("cpu"),
    "version": str(torch.__version__),
    "blob": b"\x00\xff bytes",
}
torch.save(wrapper, path("proto4_wrapped.pth"), pickle_protocol=4)
record("proto4_wrapped.pth", sd, prefix="module.")

# 2. The same archive recompressed with deflate (torch.load accepts it too).
with zipfile.ZipFile(path("proto4_wrapped.pth")) as src, zipfile.ZipFile(
    path("deflate.pth"), "w", compression=zipfile.ZIP_DEFLATED
) as dst:
    for info in src.infolist():
        dst.writestr(info.filename, src.read(info.filename))
assert torch.load(path("deflate.pth"), weights_only=False)["epoch"] == 7
record("deflate.pth", sd, prefix="module.")

# 3. Protocol 5, plain state dict, several dtypes.
plain = collections.OrderedDict()
plain["a"] = torch.arange(6, dtype=torch.float32).reshape(2, 3)
plain["b"] = torch.tensor([1.5, -2.25, 65504.0, 6e-8], dtype=torch.float16)
plain["c"] = torch.tensor([0.1, -3.0], dtype=torch.float64)
plain["d"] = torch.tensor([1.0, -0.5], dtype=torch.bfloat16)
plain["n"] = torch.tensor(3, dtype=torch.int64)
plain["i"] = torch.tensor([-7, 9], dtype=torch.int32)
plain["u"] = torch.tensor([0, 255], dtype=torch.uint8)
plain["z"] = torch.tensor([True, False])
torch.save(plain, path("proto5_dtypes.pth"), pickle_protocol=5)
record("proto5_dtypes.pth", plain)

# 4. Big-endian zip: flip the byteorder record and byte-swap every storage.
buf = io.BytesIO()
torch.save(plain, buf)
sizes = {}
for k, v in plain.items():
    sizes[k] = v.element_size()
with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(
    path("big_endian.pth"), "w", compression=zipfile.ZIP_STORED
) as dst:
    # Storage keys are assigned in state-dict order.
    elem = {str(i): s for i, s in enumerate(sizes.values())}
    for info in src.infolist():
        data = src.read(info.filename)
        leaf = info.filename.split("/", 1)[1]
        if leaf == "byteorder":
            data = b"big"
        elif leaf.startswith("data/"):
            n = elem[leaf[5:]]
            data = b"".join(data[i : i + n][::-1] for i in range(0, len(data), n))
        dst.writestr(info.filename, data)
loaded = torch.load(path("big_endian.pth"), weights_only=True)
assert all(torch.equal(loaded[k], plain[k]) for k in plain), "torch disagrees with the BE file"
record("big_endian.pth", plain)

# 5. Legacy format, pickle protocol 1, with views sharing one storage.
shared = torch.arange(10, dtype=torch.float32)
legacy = collections.OrderedDict()
legacy["x"] = shared[2:8].view(2, 3)
legacy["y"] = shared[::3]
legacy["xt"] = shared[2:8].view(2, 3).t()
legacy["s"] = torch.tensor(2.5)
torch.save(legacy, path("legacy_proto1.pth"), _use_new_zipfile_serialization=False, pickle_protocol=1)
record("legacy_proto1.pth", legacy)


# 6. Legacy format written by a big-endian machine (hand-assembled: torch
#    cannot produce it here). Element counts and data are big-endian.
class Storage:
    def __init__(self, key, cls, values, fmt):
        self.key, self.cls, self.values, self.fmt = key, cls, values, fmt


class FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", len(obj.values), None)
        return None


s0 = Storage("0", torch.FloatStorage, [1.0, -2.0, 3.5, 0.25], ">f")
s1 = Storage("1", torch.LongStorage, [42], ">q")
be = collections.OrderedDict()
be["w"] = FakeTensor(s0, 0, (2, 2), (1, 2))
be["n"] = FakeTensor(s1, 0, (), ())
out = io.BytesIO()
for obj in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": False,
                                            "type_sizes": {"short": 2, "int": 4, "long": 8}}):
    pickle.dump(obj, out, protocol=2)
LegacyPickler(out, protocol=2).dump(be)
pickle.dump(["0", "1"], out, protocol=2)
for s in (s0, s1):
    out.write(struct.pack(">q", len(s.values)))
    out.write(struct.pack(">" + s.fmt[1] * len(s.values), *s.values))
with open(path("legacy_big_endian.pth"), "wb") as f:
    f.write(out.getvalue())
expected["legacy_big_endian.pth"] = [["w", [2, 2], [1.0, 3.5, -2.0, 0.25]], ["n", [], [42.0]]]

with open(path("expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
    f.write("\n")

# 7. .npy files written by numpy itself, for tools/tests/npy_files.rs.
npy_expected = {}


def save_npy(name, arr, version=None):
    with open(path(name), "wb") as f:
        if version is None:
            np.save(f, arr)
        else:
            np.lib.format.write_array(f, arr, version=version)
    flat = np.ascontiguousarray(arr).reshape(-1)
    # repr() strings: exact for f64, unlike JSON numbers through some parsers.
    npy_expected[name] = {"shape": list(arr.shape), "values": [repr(float(x)) for x in flat.tolist()]}


rng = np.random.default_rng(0)
save_npy("npy_f4.npy", rng.standard_normal((2, 3, 4)).astype("<f4"))
save_npy("npy_f8_fortran.npy", np.asfortranarray(rng.standard_normal((3, 4))))
save_npy("npy_i8.npy", np.array([-(2**40), 0, 7], dtype="<i8"))
save_npy("npy_i4_big_endian.npy", np.array([[1, -2], [3, 40000]], dtype=">i4"))
save_npy("npy_u1_fortran.npy", np.asfortranarray(np.arange(24, dtype=np.uint8).reshape(2, 3, 4)))
save_npy("npy_bool.npy", np.array([True, False, True]))
save_npy("npy_scalar.npy", np.array(2.5, dtype=np.float32))
save_npy("npy_empty.npy", np.zeros((0, 3), dtype=np.float32))
save_npy("npy_v2.npy", np.arange(3, dtype="<f4"), version=(2, 0))
save_npy("npy_v3.npy", np.arange(3, dtype=">f8"), version=(3, 0))
with open(path("npy_expected.json"), "w") as f:
    json.dump(npy_expected, f, indent=1)
    f.write("\n")
