#!/usr/bin/env python3
"""Fixtures for preprocessing parity of a `classify` command (image -> tensor).

Writes fixtures/preprocess/:
  chelsea.jpg, coffee.jpg, astronaut.png   real photographs from scikit-image's
                                           bundled sample data (no download),
                                           downscaled so each file is < 60 KB
  NAME.expected_u8.npy                     the torchvision standard eval transform
                                           output BEFORE normalisation, as uint8
  manifest.json                            one entry per image (+ how to compare)

The reference pipeline is exactly what a torchvision ImageFolder + the
standard ImageNet eval transform do:

    img = PIL.Image.open(path).convert("RGB")
    x = transforms.Compose([
        transforms.Resize(256),        # shorter side -> 256, bilinear, antialias (PIL path)
        transforms.CenterCrop(224),
        transforms.ToTensor(),         # float32 [3, 224, 224] in [0, 1]
    ])(img)

Because the PIL path keeps 8-bit pixels until ToTensor, x * 255 is an exact
integer: the .npy stores round(x * 255) as '|u1' [3, 224, 224] (C order) and
`u8.astype(float32) / 255` reproduces the torchvision tensor BIT-EXACTLY (this
script asserts it).  Normalisation (mean 0.485/0.456/0.406, std
0.229/0.224/0.225) comes after and is not included.

Run:  /work/venv/bin/python scripts/make_preprocess_fixtures.py
Deterministic (same PIL/libjpeg version => byte-identical files).
"""

import json
import os

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms

torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "fixtures", "preprocess")

# (name, skimage loader, size (W, H) to downscale to before saving, format)
IMAGES = [
    ("chelsea", "chelsea", (451, 300), "JPEG"),   # 451x300: stored as is; Resize downscales
    ("coffee", "coffee", (400, 267), "JPEG"),     # 600x400 -> 400x267
    ("astronaut", "astronaut", (181, 135), "PNG"),  # 512x512 -> 181x135: Resize UPscales
]


def tv_transform():
    return transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
    ])


def main():
    import skimage.data

    os.makedirs(OUT, exist_ok=True)
    entries = []
    for name, loader, size, fmt in IMAGES:
        arr = getattr(skimage.data, loader)()
        img = Image.fromarray(arr)
        if img.size != size:
            img = img.resize(size, Image.LANCZOS)
        ext = ".jpg" if fmt == "JPEG" else ".png"
        path = os.path.join(OUT, name + ext)
        if fmt == "JPEG":
            img.save(path, "JPEG", quality=90)
        else:
            img.save(path, "PNG", optimize=True)
        nbytes = os.path.getsize(path)
        assert nbytes < 60_000, (path, nbytes)

        # decode exactly like torchvision's ImageFolder (default_loader -> pil_loader)
        with open(path, "rb") as f:
            pil = Image.open(f)
            pil = pil.convert("RGB")
        w, h = pil.size
        x = tv_transform()(pil)
        assert x.dtype == torch.float32 and tuple(x.shape) == (3, 224, 224)

        u8 = torch.round(x * 255.0).to(torch.uint8).numpy()
        back = torch.from_numpy(u8.astype(np.float32)) / 255.0
        assert torch.equal(back, x), "u8/255 does not reproduce ToTensor exactly"
        exp_path = os.path.join(OUT, name + ".expected_u8.npy")
        np.save(exp_path, np.ascontiguousarray(u8.astype("|u1")))

        # the geometry torchvision used, spelled out for the Rust side
        short, long_ = min(w, h), max(w, h)
        new_long = int(256 * long_ / short)
        rw, rh = (256, new_long) if w <= h else (new_long, 256)
        top = int(round((rh - 224) / 2.0))
        left = int(round((rw - 224) / 2.0))
        manual = pil.resize((rw, rh), Image.BILINEAR).crop((left, top, left + 224, top + 224))
        assert np.array_equal(np.asarray(manual).transpose(2, 0, 1), u8), "geometry mismatch"

        entries.append({
            "name": name,
            "image": os.path.relpath(path, REPO),
            "format": fmt.lower(),
            "bytes": nbytes,
            "source": f"skimage.data.{loader}() {arr.shape[1]}x{arr.shape[0]}"
                      + (f", resized to {size[0]}x{size[1]} (PIL LANCZOS) before saving"
                         if (arr.shape[1], arr.shape[0]) != size else ", saved as is")
                      + (", JPEG quality 90 (PIL defaults: 4:2:0 subsampling)" if fmt == "JPEG"
                         else ", PNG (8-bit RGB)"),
            "decoded_size_wh": [w, h],
            "resized_size_wh": [rw, rh],
            "crop_top_left": [top, left],
            "expected": os.path.relpath(exp_path, REPO),
            "expected_dtype": "|u1",
            "expected_shape": [3, 224, 224],
        })
        print(f"  {name + ext:15s} {nbytes:6d} B  decoded {w}x{h} -> resize {rw}x{rh} "
              f"-> crop@({top},{left}) 224x224")

    manifest = {
        "generator": "scripts/make_preprocess_fixtures.py",
        "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                     "pillow": PIL.__version__},
        "pipeline": "Image.open(p).convert('RGB') -> transforms.Resize(256) (bilinear, "
                    "antialias=True; on a PIL image this is PIL Image.resize(BILINEAR), a "
                    "separable 2-pass filter whose support scales with the downscale factor, "
                    "8-bit rounded output) -> transforms.CenterCrop(224) -> transforms.ToTensor()",
        "resize_rule": "shorter side -> 256, longer side -> int(256 * long / short) (truncated); "
                       "CenterCrop: top = int(round((H - 224) / 2)), left = int(round((W - 224) / 2))",
        "expected_encoding": "expected = round(ToTensor_output * 255) stored as '|u1' [3, 224, 224] "
                             "CHW, RGB order; the float tensor is exactly expected.astype(f32) / 255 "
                             "(verified bit-exact). NOT normalised; ImageNet normalisation "
                             "(mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]) comes after.",
        "comparison_notes": "The PNG case decodes identically in any correct decoder, so it tests "
                            "resize + crop alone (and it is an UPscale: 135 -> 256). JPEG decoders "
                            "differ slightly (IDCT variant, chroma upsampling): PIL uses libjpeg(-turbo) "
                            "ISLOW IDCT with fancy upsampling; a different decoder may be off by a few "
                            "levels per pixel, so compare JPEG cases with a tolerance (e.g. mean abs "
                            "diff < 1 level, max a few levels) rather than exactly.",
        "images": entries,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {len(entries)} images to {os.path.relpath(OUT, REPO)}/")


if __name__ == "__main__":
    main()
