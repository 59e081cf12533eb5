#!/usr/bin/env python3
"""End-to-end fixture for `shortcut classify`: PyTorch logits on a preprocessed photo.

Writes fixtures/preprocess/astronaut.tv_resnet18_basic.logits.npy: float32 [1, 10], the
logits of fixtures/models/tv_resnet18_basic.pth (a torchvision-layout BasicBlock ResNet,
base width 6, layers [2,1,1,1], 10 classes; see scripts/make_fixtures.py) on
fixtures/preprocess/astronaut.png put through torchvision's standard evaluation transform:

    Image.open(p).convert("RGB") -> Resize(256) -> CenterCrop(224) -> ToTensor()
    -> Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

The checkpoint is loaded with torch.load(weights_only=True) into scripts/fixture_models.py's
TVResNet, in eval mode (BN uses its running statistics).

Also writes small JPEG decoding fixtures, each with PIL's decoded pixels
(np.asarray(Image.open(p).convert("RGB")), '|u1' [H, W, 3]) as NAME.expected_rgb.npy:
  jpeg_progressive_422.jpg  a 61x47 crop of coffee.jpg, progressive, 4:2:2, quality 85
  jpeg_gray.jpg             a 45x33 crop of astronaut.png as grayscale, quality 90
  jpeg_cmyk.jpg             a 16x12 CMYK gradient (PIL writes an Adobe marker, inverted)

Run:  /work/venv/bin/python scripts/make_classify_fixture.py
Deterministic on one machine (single thread); the Rust test allows relative L2 1e-4.
"""

import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_models as fm  # noqa: E402

torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CKPT = os.path.join(REPO, "fixtures", "models", "tv_resnet18_basic.pth")
IMAGE = os.path.join(REPO, "fixtures", "preprocess", "astronaut.png")
OUT = os.path.join(REPO, "fixtures", "preprocess", "astronaut.tv_resnet18_basic.logits.npy")


def jpeg_fixtures():
    out = os.path.dirname(OUT)
    coffee = Image.open(os.path.join(out, "coffee.jpg")).convert("RGB").crop((100, 60, 161, 107))
    astronaut = Image.open(IMAGE).convert("L").crop((60, 40, 105, 73))
    cmyk = np.zeros((12, 16, 4), np.uint8)
    for y in range(12):
        for x in range(16):
            cmyk[y, x] = [(x * 16) % 256, (y * 21) % 256, (x * y * 5) % 256, ((x + y) * 9) % 256]
    cases = [
        ("jpeg_progressive_422", coffee, dict(quality=85, progressive=True, subsampling=1)),
        ("jpeg_gray", astronaut, dict(quality=90)),
        ("jpeg_cmyk", Image.fromarray(cmyk, "CMYK"), dict(quality=95)),
    ]
    for name, img, opts in cases:
        path = os.path.join(out, name + ".jpg")
        img.save(path, "JPEG", **opts)
        rgb = np.asarray(Image.open(path).convert("RGB"))
        np.save(os.path.join(out, name + ".expected_rgb.npy"), np.ascontiguousarray(rgb))
        print(path, os.path.getsize(path), "bytes", rgb.shape)


def main():
    jpeg_fixtures()
    model = fm.TVResNet(fm.TVBasicBlock, [2, 1, 1, 1], num_classes=10, base=6)
    sd = torch.load(CKPT, map_location="cpu", weights_only=True)
    model.load_state_dict(sd)
    model.eval()
    tf = transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    x = tf(Image.open(IMAGE).convert("RGB")).unsqueeze(0)
    with torch.no_grad():
        y = model(x).float().numpy()
    np.save(OUT, np.ascontiguousarray(y.astype("<f4")))
    top = np.argsort(-y[0])[:5]
    print(OUT, y.shape, "top-5 classes", top.tolist(), "logits", y[0][top].tolist())


if __name__ == "__main__":
    main()
