#!/usr/bin/env python3
"""Generate the PyTorch-parity test fixtures for `shortcut`.

What it makes (all paths relative to the repo root):

  fixtures/models/NAME.{pth,safetensors}  small checkpoints with RANDOM weights
                                          and non-trivial BatchNorm statistics
  fixtures/models/NAME.input.npy          f32 NCHW input, batch 2, '<f4', C order
  fixtures/models/NAME.expected.npy       f32 [N, classes] logits from PyTorch
                                          (model.eval(), float32, CPU)
  fixtures/manifest.json                  one entry per case (see below)
  fixtures/bad/                           malicious / corrupt checkpoints that a
                                          loader must REJECT (never torch.load
                                          the evil_* files!) + bad/manifest.json

Every case is a reduced-width copy of an upstream architecture (torchvision,
akamaster/pytorch_resnet_cifar10, kuangliu/pytorch-cifar) whose state_dict
key names are exactly the upstream ones; see scripts/fixture_models.py.  For
base width 64 the torchvision copy is asserted to have the same keys, shapes
and outputs as the real torchvision.models.resnet18/34/50, resnext50_32x4d
and wide_resnet50_2 (random init, nothing is downloaded).

Checkpoint containers covered: torch.save zip (default), legacy
(`_use_new_zipfile_serialization=False` layout), safetensors, wrapped dicts
({"state_dict": {"module.*": ...}}, {"model": ..., "epoch": ...}), f16 / bf16 /
f64 weights, and non-contiguous / offset / shared storages.

Run (from the repo root, in the venv that has torch, torchvision, numpy,
safetensors):

    /work/venv/bin/python scripts/make_fixtures.py

Everything is seeded; re-running rewrites byte-identical files (the legacy
files are written by a small deterministic re-implementation of
torch.serialization._legacy_save, because upstream names storages by memory
address; torch.load reads them back and this script checks that it does).
"""

import io
import json
import os
import pickle
import random
import sys
import types
import zipfile

import numpy as np
import torch
import torch.nn as nn

sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_models as fm  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(REPO, "fixtures")
MODELS = os.path.join(FIX, "models")
BAD = os.path.join(FIX, "bad")


def rel(path):
    return os.path.relpath(path, REPO)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def randomize_bn(model, seed):
    """Give every BatchNorm2d non-trivial affine params and running stats."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                m.weight.copy_(1.0 + 0.1 * torch.randn(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
                m.num_batches_tracked.fill_(int(torch.randint(100, 10000, (1,), generator=g)))
    return model


def make_input(seed, shape):
    """Normal noise with a random mean/std per (sample, channel).

    Pure N(0,1) inputs make the globally pooled features of a random net
    nearly identical for both batch items; per-(n, c) mean in [-1, 1] and std
    in [0.5, 2] keep the two rows of logits clearly different.
    """
    g = torch.Generator().manual_seed(seed)
    n, c = shape[0], shape[1]
    mean = torch.rand(n, c, 1, 1, generator=g) * 2.0 - 1.0
    std = torch.rand(n, c, 1, 1, generator=g) * 1.5 + 0.5
    x = torch.randn(*shape, generator=g, dtype=torch.float32) * std + mean
    return x.float().contiguous()


def run(model, x):
    model.eval()
    with torch.no_grad():
        return model(x).float()


def save_npy(path, arr, dtype="<f4"):
    arr = np.ascontiguousarray(np.asarray(arr).astype(dtype))
    np.save(path, arr)


def save_zip(obj, path, via_buffer=False):
    """torch.save zip format.

    Saved to a path, torch names the in-archive root folder after the file
    stem ("NAME/data.pkl"); saved to a file object it is "archive/data.pkl".
    Both occur in the wild; the manifest records which one each file has.
    """
    if via_buffer:
        buf = io.BytesIO()
        torch.save(obj, buf)
        with open(path, "wb") as f:
            f.write(buf.getvalue())
    else:
        torch.save(obj, path)


def legacy_bytes(obj, pickle_module=pickle, seed=0):
    """Byte-for-byte the layout of torch.save(..., _use_new_zipfile_serialization=False).

    Layout: pickle(MAGIC_NUMBER) pickle(PROTOCOL_VERSION) pickle(sys_info)
    pickle(obj, with persistent ids ("storage", StorageType, key, "cpu", numel,
    None)) pickle(sorted(keys)) then, for each key in that order, int64 numel
    + raw little-endian storage bytes.  Upstream keys are str(memory address);
    here they are deterministic address-like decimal strings (so their sorted
    order differs from first-use order, as with real files).
    """
    from torch.serialization import (INT_SIZE, LONG_SIZE, MAGIC_NUMBER,
                                     PROTOCOL_VERSION, SHORT_SIZE, location_tag)
    rng = random.Random(seed)
    keys = {}
    storages = {}

    def persistent_id(o):
        if isinstance(o, torch.storage.TypedStorage):
            st = o._untyped_storage
            if st._cdata not in keys:
                while True:
                    k = str(94_000_000_000_000 + 64 * rng.randrange(1 << 30))
                    if k not in storages:
                        break
                keys[st._cdata] = k
                storages[k] = (st, o.dtype)
            k = keys[st._cdata]
            return ("storage", getattr(torch, o._pickle_storage_type()), k,
                    location_tag(st), o._size(), None)
        return None

    class LegacyPickler(pickle_module.Pickler):
        def persistent_id(self, o):
            return persistent_id(o)

    f = io.BytesIO()
    sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True,
                "type_sizes": {"short": SHORT_SIZE, "int": INT_SIZE, "long": LONG_SIZE}}
    pickle.dump(MAGIC_NUMBER, f, protocol=2)
    pickle.dump(PROTOCOL_VERSION, f, protocol=2)
    pickle.dump(sys_info, f, protocol=2)
    LegacyPickler(f, protocol=2).dump(obj)
    skeys = sorted(storages)
    pickle.dump(skeys, f, protocol=2)
    for k in skeys:
        st, dtype = storages[k]
        st._write_file(f, False, True, torch._utils._element_size(dtype))
    return f.getvalue()


def save_legacy(obj, path):
    with open(path, "wb") as f:
        f.write(legacy_bytes(obj))


def strip_prefix(sd, prefix):
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}


# ---------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------

CASES = []


def add_case(name, model, x, *, family, fmt, ckpt_obj=None, sd_extract=lambda o: o,
             ckpt_name=None, notes="", extra=None, reuse_input=None, save=True,
             ref_model=None, via_buffer=False):
    """Save checkpoint + input + expected and record the manifest entry.

    After saving, the checkpoint is re-read with torch.load(weights_only=True)
    (or safetensors), loaded into a fresh copy of the architecture and the
    logits recomputed: they must be bit-identical to the expected ones.
    """
    ext = ".safetensors" if fmt == "safetensors" else ".pth"
    ckpt_path = os.path.join(MODELS, (ckpt_name or name) + ext)
    if reuse_input is None:
        in_path = os.path.join(MODELS, name + ".input.npy")
        save_npy(in_path, x.numpy())
    else:
        in_path = os.path.join(MODELS, reuse_input + ".input.npy")
    exp_path = os.path.join(MODELS, name + ".expected.npy")

    sd = model.state_dict()
    obj = sd if ckpt_obj is None else ckpt_obj
    if save:
        if fmt == "zip":
            save_zip(obj, ckpt_path, via_buffer)
        elif fmt == "legacy":
            save_legacy(obj, ckpt_path)
        elif fmt == "safetensors":
            from safetensors.torch import save_file
            save_file(obj, ckpt_path)
        else:
            raise ValueError(fmt)

    # reference logits: the model as stored (low-precision weights cast back
    # to f32 where relevant -- see ref_model)
    x_in = torch.from_numpy(np.load(in_path))
    assert torch.equal(x_in, x)
    y = run(ref_model if ref_model is not None else model, x_in)
    save_npy(exp_path, y.numpy())

    # round-trip check through the file on disk
    if fmt == "safetensors":
        from safetensors.torch import load_file
        loaded = load_file(ckpt_path)
    else:
        loaded = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    lsd = {k: v.float() if v.is_floating_point() else v
           for k, v in sd_extract(loaded).items()}
    fresh = copy_arch(model)
    fresh.load_state_dict(lsd, strict=True)
    y2 = run(fresh, x_in)
    assert torch.equal(y, y2), f"{name}: reload mismatch {(y - y2).abs().max()}"

    entry = {
        "name": name,
        "checkpoint": rel(ckpt_path),
        "format": fmt,
        "family": family,
        "input": rel(in_path),
        "expected": rel(exp_path),
        "num_classes": int(y.shape[1]),
        "input_shape": list(x.shape),
    }
    if fmt == "zip":
        entry["zip_root"] = zipfile.ZipFile(ckpt_path).namelist()[0].split("/")[0]
    if extra:
        entry.update(extra)
    entry["notes"] = notes
    CASES.append(entry)
    print(f"  {name:34s} {fmt:11s} in={tuple(x.shape)} logits std={y.std():.3f} "
          f"max|.|={y.abs().max():.3f}")
    return y


_ARCH_FACTORY = {}


def he_init(model):
    """Kaiming-normal convs and unit-gain linear heads.

    kuangliu's models keep PyTorch's default init (std ~ 1/sqrt(3*fan_in)), so
    with random weights the signal fades with depth and the logits are almost
    just the fc bias -- a weak test. This re-init keeps activations O(1).
    """
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(mod, nn.Linear):
            nn.init.normal_(mod.weight, std=1.0 / mod.in_features ** 0.5)
    return model


def build(name, fn, seed, init=None):
    """Build a model with seeded init + randomized BN; remember how to rebuild it."""
    torch.manual_seed(seed)
    m = fn()
    if init is not None:
        init(m)
    randomize_bn(m, seed + 1)
    m.eval()
    _ARCH_FACTORY[id(m)] = fn
    return m


def copy_arch(model):
    m = _ARCH_FACTORY[id(model)]()
    m.eval()
    return m


def main():
    os.makedirs(MODELS, exist_ok=True)
    os.makedirs(BAD, exist_ok=True)

    print("checking TVResNet(base=64) against torchvision ...")
    torch.manual_seed(0)
    fm.assert_matches_torchvision()

    print("writing cases ...")
    TV_IN = (2, 3, 37, 45)

    # --- torchvision BasicBlock (resnet18 layout, base 6) ------------------
    tvb = build("tv_basic", lambda: fm.TVResNet(fm.TVBasicBlock, [2, 1, 1, 1], num_classes=10, base=6), 100)
    x_tv = make_input(101, TV_IN)
    y_tvb = add_case(
        "tv_resnet18_basic", tvb, x_tv, family="torchvision-basic", fmt="zip",
        extra={"layers": [2, 1, 1, 1], "base_width": 6, "key_prefix": "", "state_dict_path": None},
        notes="torchvision ResNet/BasicBlock (resnet18 layout) at base width 6 "
              "(6/12/24/48: not multiples of 8), layers [2,1,1,1], 10 classes. 7x7/2 stem + maxpool 3/2 pad 1 on "
              "odd non-square 37x45 input (-> 19x23 -> 10x12 -> 10x12, 5x6, 3x3, 2x2), "
              "downsample.0/.1 on layer2-4 first blocks, identity shortcut in layer1, "
              "AdaptiveAvgPool2d(1) + fc. Plain state_dict, torch.save zip format.")

    # --- safetensors of the same state dict ---------------------------------
    add_case(
        "tv_resnet18_basic_safetensors", tvb, x_tv, family="torchvision-basic", fmt="safetensors",
        reuse_input="tv_resnet18_basic",
        extra={"layers": [2, 1, 1, 1], "base_width": 6, "key_prefix": "", "state_dict_path": None},
        notes="Same weights/keys/input as tv_resnet18_basic, written with "
              "safetensors.torch.save_file (timm / Hugging Face style). Includes the int64 "
              "num_batches_tracked tensors. Expected logits identical to tv_resnet18_basic.")

    # --- storage edge cases (value-preserving) ------------------------------
    sd = {k: v.clone() for k, v in tvb.state_dict().items()}
    # (a) non-contiguous: transposed view of a transposed copy
    sd["fc.weight"] = sd["fc.weight"].t().contiguous().t()
    assert not sd["fc.weight"].is_contiguous()
    # (b) non-contiguous 4-D: channels_last strides
    sd["conv1.weight"] = sd["conv1.weight"].contiguous(memory_format=torch.channels_last)
    assert not sd["conv1.weight"].is_contiguous()
    # (c) storage offset: a slice [3:] of a bigger tensor
    big = torch.cat([torch.full((3,), 7.0), sd["fc.bias"]])
    sd["fc.bias"] = big[3:]
    assert sd["fc.bias"].storage_offset() == 3
    # (d) several tensors sharing one storage (also with offsets)
    c = sd["bn1.weight"].numel()
    shared = torch.cat([sd["bn1.weight"], sd["bn1.bias"], sd["bn1.running_mean"]])
    sd["bn1.weight"], sd["bn1.bias"], sd["bn1.running_mean"] = shared[:c], shared[c:2 * c], shared[2 * c:]
    # (e) a strided (step 2) view into a storage twice its size
    rv = sd["layer1.0.bn1.running_var"]
    inter = torch.stack([rv, torch.full_like(rv, -1.0)], dim=1).reshape(-1)
    sd["layer1.0.bn1.running_var"] = inter[::2]
    assert sd["layer1.0.bn1.running_var"].stride() == (2,)
    for k, v in tvb.state_dict().items():
        assert torch.equal(sd[k], v)
    y_edge = add_case(
        "tv_resnet18_storage_edge", tvb, x_tv, family="torchvision-basic", fmt="zip",
        ckpt_obj=sd, reuse_input="tv_resnet18_basic", via_buffer=True,
        extra={"layers": [2, 1, 1, 1], "base_width": 6, "key_prefix": "", "state_dict_path": None},
        notes="Same values as tv_resnet18_basic but with awkward storages: fc.weight is a "
              f"transposed (non-contiguous, stride {sd['fc.weight'].stride()}) view; conv1.weight has "
              f"channels_last strides {sd['conv1.weight'].stride()}; fc.bias is a [3:] slice "
              "(storage_offset 3) of a larger storage; "
              "bn1.weight/bn1.bias/bn1.running_mean are three views of ONE shared storage "
              f"(offsets 0, {c}, {2 * c}); layer1.0.bn1.running_var is a stride-2 view. The loader must "
              "honour (storage, offset, size, stride). Expected logits identical to tv_resnet18_basic.")
    assert torch.equal(y_edge, y_tvb)

    # --- torchvision Bottleneck (resnet50 layout), legacy format ------------
    tvk = build("tv_bottle", lambda: fm.TVResNet(fm.TVBottleneck, [2, 1, 1, 1], num_classes=10, base=4), 200)
    add_case(
        "tv_resnet50_bottleneck_legacy", tvk, make_input(201, (2, 3, 41, 35)),
        family="torchvision-bottleneck", fmt="legacy",
        extra={"layers": [2, 1, 1, 1], "base_width": 4, "key_prefix": "", "state_dict_path": None},
        notes="torchvision Bottleneck (resnet50 layout, expansion 4) at base 4, layers "
              "[2,1,1,1], v1.5 (stride on conv2 3x3). layer1.0 has a stride-1 downsample "
              "(4->16 channels). Input 41x35. Saved in the LEGACY (pre-1.6, non-zip) "
              "torch.save format: magic/protocol/sys_info pickles, state_dict pickle with "
              "persistent ids, sorted storage-key list, then raw storages.")

    # --- ResNeXt: groups=4, width_per_group=4, {"state_dict": module.*} -----
    tvx = build("tv_resnext", lambda: fm.TVResNet(fm.TVBottleneck, [1, 1, 1, 1], num_classes=10,
                                                   base=4, groups=4, width_per_group=2), 300)
    wrapped = {"state_dict": {"module." + k: v for k, v in tvx.state_dict().items()}}
    add_case(
        "tv_resnext_groups4_dataparallel", tvx, make_input(301, (2, 3, 39, 43)),
        family="torchvision-resnext", fmt="zip", ckpt_obj=wrapped,
        sd_extract=lambda o: strip_prefix(o["state_dict"], "module."),
        extra={"layers": [1, 1, 1, 1], "base_width": 4, "groups": 4, "width_per_group": 2,
               "key_prefix": "module.", "state_dict_path": "state_dict"},
        notes="ResNeXt-style torchvision Bottleneck: groups=4, width_per_group=2 at base 4 "
              "(bottleneck width = int(planes*2/4)*4 = 2*planes, i.e. the 32x4d ratio), grouped "
              "3x3 convs (weight shape [w, w/4, 3, 3]; 2..16 channels per group). Saved like a DataParallel training script: "
              "{'state_dict': {'module.conv1.weight': ...}}. Input 39x43.")

    # --- Wide ResNet: width_per_group = 2*base, {"model": sd, ...} ----------
    tvw = build("tv_wide", lambda: fm.TVResNet(fm.TVBottleneck, [1, 1, 1, 1], num_classes=10,
                                                base=3, width_per_group=6), 400)
    wrapped = {"model": tvw.state_dict(), "epoch": 3, "optimizer_name": "sgd",
               "best_acc1": 0.5, "args": {"lr": 0.1, "milestones": [30, 60], "nesterov": True}}
    add_case(
        "tv_wide_resnet_model_key", tvw, make_input(401, (2, 3, 45, 33)),
        family="torchvision-wide", fmt="zip", ckpt_obj=wrapped,
        sd_extract=lambda o: o["model"],
        extra={"layers": [1, 1, 1, 1], "base_width": 3, "width_per_group": 6,
               "key_prefix": "", "state_dict_path": "model"},
        notes="Wide-ResNet-style torchvision Bottleneck at base 3 with width_per_group=6 "
              "(=2*base, like wide_resnet50_2's 128 vs 64): bottleneck width 2*planes, output "
              "4*planes. Saved as {'model': sd, 'epoch': 3, 'optimizer_name': 'sgd', "
              "'best_acc1': 0.5, 'args': {...}} -- non-tensor entries (int, str, float, dict, "
              "list, bool) must be skipped. Input 45x33 (tall).")

    # --- akamaster CIFAR ResNet-8, option A ---------------------------------
    cA = build("cifarA", lambda: fm.CifarResNet([1, 1, 1], num_classes=10, option="A"), 500)
    add_case(
        "cifar_resnet8_optA", cA, make_input(501, (2, 3, 32, 32)),
        family="cifar-akamaster-A", fmt="zip",
        extra={"num_blocks": [1, 1, 1], "option": "A", "base_width": 16, "key_prefix": "", "state_dict_path": None},
        notes="akamaster/pytorch_resnet_cifar10 ResNet (n=1 => ResNet-8), upstream widths 16/32/64, "
              "option A shortcut: x[:, :, ::2, ::2] then zero-pad planes//4 channels on BOTH "
              "sides (16 -> 8 zeros + 16 + 8 zeros = 32); no shortcut parameters in the "
              "state_dict. Head: F.avg_pool2d(out, out.size()[3]) + `linear`. 32x32 input.")
    add_case(
        "cifar_resnet8_optA_odd", cA, make_input(502, (2, 3, 33, 31)),
        family="cifar-akamaster-A", fmt="zip", ckpt_name="cifar_resnet8_optA", save=False,
        extra={"num_blocks": [1, 1, 1], "option": "A", "base_width": 16, "key_prefix": "", "state_dict_path": None},
        notes="Same checkpoint as cifar_resnet8_optA (file shared), odd non-square input "
              "33x31 (H x W). Maps: 33x31 -> 17x16 -> 9x8; ::2 subsampling of odd sizes "
              "(33->17, 31->16) matches the stride-2 conv. The head avg_pool2d(out, "
              "out.size()[3]) uses kernel=stride=W=8 on a 9x8 map, so it averages rows 0..7 "
              "ONLY (the 9th row is dropped) -- not a global average; upstream quirk to match.")

    # --- akamaster option B --------------------------------------------------
    cB = build("cifarB", lambda: fm.CifarResNet([1, 1, 1], num_classes=10, option="B", base=8), 600)
    add_case(
        "cifar_resnet8_optB", cB, make_input(601, (2, 3, 35, 33)),
        family="cifar-akamaster-B", fmt="zip",
        extra={"num_blocks": [1, 1, 1], "option": "B", "base_width": 8, "key_prefix": "", "state_dict_path": None},
        notes="akamaster ResNet-8 (widths reduced to 8/16/32) with option B shortcuts: nn.Sequential(1x1 conv stride 2, "
              "BatchNorm2d) => keys layerN.0.shortcut.0.weight, layerN.0.shortcut.1.*. "
              "Odd input 35x33 -> 18x17 -> 9x9 (square at the end, so the head is a global pool).")

    # --- kuangliu ResNet BasicBlock -----------------------------------------
    klb = build("kl_basic", lambda: fm.KLResNet(fm.KLBasicBlock, [2, 1, 1, 1], num_classes=10, base=4), 700, init=he_init)
    add_case(
        "kuangliu_resnet18_basic", klb, make_input(701, (2, 3, 32, 32)),
        family="kuangliu-basic", fmt="zip",
        extra={"layers": [2, 1, 1, 1], "base_width": 4, "key_prefix": "", "state_dict_path": None},
        notes="kuangliu/pytorch-cifar ResNet + BasicBlock (ResNet18 layout) at base 4, layers "
              "[2,1,1,1]: 3x3 stem conv1/bn1 (no maxpool), shortcut = Sequential(conv1x1, BN) "
              "=> keys shortcut.0.weight / shortcut.1.*, head F.avg_pool2d(out, 4) (4x4 map at "
              "32x32 input => global) + `linear`.")

    # --- kuangliu ResNet Bottleneck -----------------------------------------
    klk = build("kl_bottle", lambda: fm.KLResNet(fm.KLBottleneck, [1, 1, 1, 1], num_classes=10, base=4), 800, init=he_init)
    add_case(
        "kuangliu_resnet50_bottleneck", klk, make_input(801, (2, 3, 32, 32)),
        family="kuangliu-bottleneck", fmt="zip",
        extra={"layers": [1, 1, 1, 1], "base_width": 4, "key_prefix": "", "state_dict_path": None},
        notes="kuangliu ResNet + Bottleneck (ResNet50 layout, expansion 4) at base 4, layers "
              "[1,1,1,1]; stride on conv2 (3x3); shortcut.0/.1 conv+BN. 32x32 input.")

    # --- kuangliu PreActResNet, PreActBlock ----------------------------------
    kpb = build("kl_preact", lambda: fm.KLPreActResNet(fm.KLPreActBlock, [2, 1, 1, 1], num_classes=10, base=4), 900, init=he_init)
    add_case(
        "kuangliu_preact18_basic", kpb, make_input(901, (2, 3, 32, 32)),
        family="kuangliu-preact-basic", fmt="zip",
        extra={"layers": [2, 1, 1, 1], "base_width": 4, "key_prefix": "", "state_dict_path": None},
        notes="kuangliu PreActResNet + PreActBlock (PreActResNet18 layout) at base 4, layers "
              "[2,1,1,1]: stem is conv1 only (no BN), block = relu(bn1(x)) -> shortcut taken "
              "from that PRE-ACTIVATED tensor when the block has a shortcut (conv-only, key "
              "shortcut.0.weight, no BN), else the raw x; no ReLU after the add; no final BN "
              "before avg_pool2d(out, 4) + `linear`. layer1 blocks have no shortcut module.")

    # --- kuangliu PreActResNet, PreActBottleneck -----------------------------
    kpk = build("kl_preact_b", lambda: fm.KLPreActResNet(fm.KLPreActBottleneck, [1, 1, 1, 1], num_classes=10, base=4), 1000, init=he_init)
    add_case(
        "kuangliu_preact_bottleneck", kpk, make_input(1001, (2, 3, 32, 32)),
        family="kuangliu-preact-bottleneck", fmt="zip",
        extra={"layers": [1, 1, 1, 1], "base_width": 4, "key_prefix": "", "state_dict_path": None},
        notes="kuangliu PreActResNet + PreActBottleneck at base 4, layers [1,1,1,1]: "
              "bn1/conv1(1x1) bn2/conv2(3x3, stride) bn3/conv3(1x1), pre-activation shortcut "
              "(conv-only shortcut.0.weight), no final BN.")

    # --- dtype variants of a small CIFAR option-A model ----------------------
    cD = build("cifarD", lambda: fm.CifarResNet([1, 1, 1], num_classes=10, option="A", base=8), 1100)
    x_d = make_input(1101, (2, 3, 32, 32))
    save_npy(os.path.join(MODELS, "cifar_resnet8_dtype.input.npy"), x_d.numpy())
    for dt, tag, st_name in [(torch.float16, "f16", "HalfStorage"), (torch.bfloat16, "bf16", "BFloat16Storage"),
                             (torch.float64, "f64", "DoubleStorage")]:
        low = {k: v.to(dt) if v.is_floating_point() else v for k, v in cD.state_dict().items()}
        ref = fm.CifarResNet([1, 1, 1], num_classes=10, option="A", base=8)
        ref.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in low.items()})
        ref.eval()
        add_case(
            f"cifar_resnet8_{tag}", cD, x_d, family="cifar-akamaster-A", fmt="zip",
            ckpt_obj=low, reuse_input="cifar_resnet8_dtype", ref_model=ref, via_buffer=True,
            extra={"num_blocks": [1, 1, 1], "option": "A", "base_width": 8, "dtype": str(dt).replace("torch.", ""),
                   "key_prefix": "", "state_dict_path": None},
            notes=f"akamaster ResNet-8 option A, widths reduced to 8/16/32 (option A pads 4 zero "
                  f"channels each side), with every floating tensor (weights, BN "
                  f"params AND running stats) stored as {dt} (pickled as torch."
                  f"{st_name}); "
                  f"num_batches_tracked stays int64. Expected logits = f32 eval of the model whose "
                  f"weights are the STORED values cast back to f32 (rounding is part of the model).")

    # --- every conv width a multiple of 16 (blocked NCHW16c layout), f16 ----
    # Stored as float16 to keep the files small; the reference model holds the
    # stored values cast back to f32, as for cifar_resnet8_f16.
    def f16_copy(model):
        low = {k: v.to(torch.float16) if v.is_floating_point() else v
               for k, v in model.state_dict().items()}
        ref = copy_arch(model)
        ref.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in low.items()})
        ref.eval()
        return low, ref

    tv16 = build("tv_w16", lambda: fm.TVResNet(fm.TVBasicBlock, [1, 1, 1, 1], num_classes=10, base=16), 1200)
    low, ref = f16_copy(tv16)
    add_case(
        "tv_resnet18_w16_f16", tv16, make_input(1201, TV_IN), family="torchvision-basic", fmt="zip",
        ckpt_obj=low, ref_model=ref,
        extra={"layers": [1, 1, 1, 1], "base_width": 16, "key_prefix": "", "state_dict_path": None,
               "dtype": "float16"},
        notes="torchvision ResNet/BasicBlock (resnet18 layout) at base width 16 (16/32/64/128: "
              "every conv output channel count a multiple of 16), layers [1,1,1,1], 10 classes. "
              "Exists to run the channel-blocked NCHW16c layout against PyTorch: 7x7/2 stem + "
              "maxpool 3/2 pad 1 on odd non-square 37x45 input (-> 19x23 -> 10x12 -> 10x12, 5x6, "
              "3x3, 2x2), identity shortcut in layer1, projection shortcuts (downsample.0 1x1 "
              "stride-2 conv + downsample.1 BN) on layer2-4, AdaptiveAvgPool2d(1) + fc. Every "
              "floating tensor (weights, BN params AND running stats) stored as torch.float16; "
              "num_batches_tracked stays int64. Expected logits = f32 eval of the model whose "
              "weights are the STORED values cast back to f32. Plain state_dict, torch.save zip.")

    kp16 = build("kl_preact_w16", lambda: fm.KLPreActResNet(fm.KLPreActBlock, [1, 1, 1, 1], num_classes=10, base=16),
                 1300, init=he_init)
    low, ref = f16_copy(kp16)
    add_case(
        "kuangliu_preact18_w16_f16", kp16, make_input(1301, (2, 3, 32, 32)),
        family="kuangliu-preact-basic", fmt="zip", ckpt_obj=low, ref_model=ref,
        extra={"layers": [1, 1, 1, 1], "base_width": 16, "key_prefix": "", "state_dict_path": None,
               "dtype": "float16"},
        notes="kuangliu PreActResNet + PreActBlock (PreActResNet18 layout) at base 16 "
              "(16/32/64/128: every conv output channel count a multiple of 16), layers [1,1,1,1]. "
              "Exists to run the channel-blocked NCHW16c layout against PyTorch, in particular "
              "the standalone per-channel BN+ReLU ('affine') ops of the pre-activation blocks: "
              "block = relu(bn1(x)) -> shortcut (conv-only shortcut.0.weight on layer2-4) taken "
              "from that pre-activated tensor, layer1 identity shortcut from the raw x, no ReLU "
              "after the add, no final BN before avg_pool2d(out, 4) + `linear`. 32x32 input. "
              "Every floating tensor stored as torch.float16 (num_batches_tracked int64); "
              "expected logits = f32 eval of the model whose weights are the STORED values "
              "cast back to f32.")

    manifest = {
        "generator": "scripts/make_fixtures.py",
        "torch_version": torch.__version__,
        "conventions": {
            "input": "f32 NCHW .npy ('<f4', C order), batch 2, normal noise with a random "
                     "mean in [-1,1] and std in [0.5,2] per (sample, channel)",
            "expected": "f32 [N, num_classes] logits, PyTorch model.eval() in float32 on CPU",
            "bn": "running_mean ~ 0.1*randn, running_var ~ 0.5+1.5*rand, weight ~ 1+0.1*randn, "
                  "bias ~ 0.1*randn, eps 1e-5; conv/linear weights are the upstream random init, except kuangliu_* cases "
                  "(Kaiming-normal convs, N(0, 1/fan_in) linear, see he_init)",
            "key_prefix": "prefix on every state_dict key in the file ('' if none)",
            "state_dict_path": "key of the state dict inside a wrapping dict (null = the "
                               "top-level object is the state dict)",
            "zip_root": "name of the single top-level folder inside a zip checkpoint "
                        "('archive' when torch.save wrote to a file object, else the file stem)",
        },
        "cases": CASES,
    }
    with open(os.path.join(FIX, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")

    make_bad(tvb)
    print(f"wrote {len(CASES)} cases to {rel(FIX)}/manifest.json")


# ---------------------------------------------------------------------------
# fixtures/bad: checkpoints a safe loader must refuse
# ---------------------------------------------------------------------------

class _EvilSystem:
    """Pickles as a call to os.system("echo pwned"). Creating the pickle does not run it."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('echo pwned')",))


class _OsSystemPickler(pickle._Pickler):
    """Writes os.system as GLOBAL 'os system' (CPython would write 'posix system')."""

    def save_global(self, obj, name=None):
        if obj is os.system:
            self.write(pickle.GLOBAL + b"os\nsystem\n")
            self.memoize(obj)
            return
        return super().save_global(obj, name)


def _globals_in(pkl_bytes):
    import pickletools
    out = []
    for op, arg, _ in pickletools.genops(pkl_bytes):
        if op.name in ("GLOBAL", "INST"):
            out.append(arg)
    return out


def make_bad(tvb):
    sd = tvb.state_dict()
    small = {"fc.weight": sd["fc.weight"].clone(), "fc.bias": sd["fc.bias"].clone()}
    entries = []

    # 1. zip checkpoint whose data.pkl calls os.system (GLOBAL 'os system')
    mod = types.ModuleType("os_system_pickle")
    mod.Pickler = _OsSystemPickler
    buf = io.BytesIO()
    torch.save({**small, "payload": _EvilSystem()}, buf, pickle_module=mod)
    p = os.path.join(BAD, "evil_os_system.pth")
    with open(p, "wb") as f:
        f.write(buf.getvalue())
    g = _globals_in(zipfile.ZipFile(p).read("archive/data.pkl"))
    assert "os system" in g, g
    entries.append({"file": rel(p), "format": "zip", "expect": "reject",
                    "notes": "torch.save zip; archive/data.pkl contains GLOBAL 'os system' + REDUCE "
                             "with arg 'echo pwned' (value of key 'payload'), next to two real "
                             f"tensors. Pickle globals: {sorted(set(g))}. NEVER torch.load it."})

    # 2. same, pickled the way CPython really does: os.system -> 'posix system'
    buf = io.BytesIO()
    torch.save({**small, "payload": _EvilSystem()}, buf)
    p = os.path.join(BAD, "evil_posix_system.pth")
    with open(p, "wb") as f:
        f.write(buf.getvalue())
    g = _globals_in(zipfile.ZipFile(p).read("archive/data.pkl"))
    assert "posix system" in g, g
    entries.append({"file": rel(p), "format": "zip", "expect": "reject",
                    "notes": "As evil_os_system.pth but pickled by CPython's own pickler, which names "
                             f"os.system 'posix system' on Linux. Pickle globals: {sorted(set(g))}."})

    # 3. legacy-format checkpoint with eval (protocol 2 => GLOBAL '__builtin__ eval')
    data = legacy_bytes({**small, "payload": _EvilEval()})
    p = os.path.join(BAD, "evil_legacy.pth")
    with open(p, "wb") as f:
        f.write(data)
    # the 4th pickle in the stream is the object
    bio = io.BytesIO(data)
    import pickletools
    for _ in range(3):
        for _op in pickletools.genops(bio):
            pass
    start = bio.tell()
    g = []
    for op, arg, pos in pickletools.genops(bio):
        if op.name == "GLOBAL":
            g.append(arg)
    assert "__builtin__ eval" in g, g
    entries.append({"file": rel(p), "format": "legacy", "expect": "reject",
                    "notes": "Legacy (non-zip) torch.save layout; the main pickle (protocol 2, starting "
                             f"at byte {start}) has GLOBAL '__builtin__ eval' (= builtins.eval under "
                             "protocol 2 fix_imports) + REDUCE with \"__import__('os').system('echo "
                             f"pwned')\". Pickle globals: {sorted(set(g))}. NEVER torch.load it."})

    # 4./5. truncated valid checkpoints
    for src, dst, fmt in [("tv_resnet18_basic.pth", "truncated_zip.pth", "zip"),
                          ("tv_resnet50_bottleneck_legacy.pth", "truncated_legacy.pth", "legacy")]:
        with open(os.path.join(MODELS, src), "rb") as f:
            full = f.read()
        p = os.path.join(BAD, dst)
        with open(p, "wb") as f:
            f.write(full[: len(full) // 2])
        entries.append({"file": rel(p), "format": fmt, "expect": "reject",
                        "notes": f"First {len(full) // 2} of {len(full)} bytes of "
                                 f"fixtures/models/{src} (cut in half): must give a clean error, "
                                 "no panic / hang / huge allocation."})

    with open(os.path.join(BAD, "manifest.json"), "w") as f:
        json.dump({"generator": "scripts/make_fixtures.py",
                   "warning": "The evil_* files execute shell commands if unpickled with "
                              "pickle/torch.load(weights_only=False). Never load them in Python.",
                   "files": entries}, f, indent=2)
        f.write("\n")
    print(f"  wrote {len(entries)} bad checkpoints to {rel(BAD)}/")


if __name__ == "__main__":
    main()
