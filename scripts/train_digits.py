#!/usr/bin/env python3
"""Train the small demo model shipped in demo/: a CIFAR-style ResNet-20 on digits.

Model: akamaster/pytorch_resnet_cifar10 ResNet-20 (n=3, widths 16/32/64,
option A shortcuts, `linear` head) with a 1-channel stem (see
scripts/fixture_models.py: CifarResNet([3, 3, 3], in_channels=1)).

Data: scikit-learn's bundled `load_digits()` (1797 8x8 grey images, values
0..16, no download). Pixels are scaled to [0, 1] by /16, shape N x 1 x 8 x 8;
the feature maps go 8x8 -> 4x4 -> 2x2 through the three stages. Split: the
first 1400 images train, the LAST 397 images are the test set.

Training: SGD (momentum 0.9, nesterov, wd 5e-4), lr 0.1 with cosine decay,
batch 64, light augmentation (random shift of up to 1 pixel with zero fill),
fixed seed, one CPU thread. About a minute or two of CPU.

Writes (paths relative to the repo root):
  demo/resnet20_digits.pth      torch.save(model.state_dict()) -- zip format
  demo/digits_test_x.npy        f32 [397, 1, 8, 8] test images, already in [0, 1]
  demo/digits_test_y.npy        int64 [397] labels
  demo/digits_test_logits.npy   f32 [397, 10] PyTorch eval() logits
  demo/README.md                what these are + the measured test accuracy

Run:  /work/venv/bin/python scripts/train_digits.py
"""

import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

sys.dont_write_bytecode = True  # keep scripts/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture_models as fm  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, "demo")
SEED = 20240607
N_TEST = 397
EPOCHS = 60
BATCH = 64


def shift_augment(x, g):
    """Random integer shift in [-1, 1] on each axis, zero fill (pad 1 + random 8x8 crop)."""
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=g)
    dx = torch.randint(0, 3, (n,), generator=g)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
    return out


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return logits, (logits.argmax(1) == y).float().mean().item()


def main():
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)

    digits = load_digits()
    x_all = torch.from_numpy((digits.images / 16.0).astype(np.float32)).unsqueeze(1)
    y_all = torch.from_numpy(digits.target.astype(np.int64))
    x_tr, y_tr = x_all[:-N_TEST], y_all[:-N_TEST]
    x_te, y_te = x_all[-N_TEST:], y_all[-N_TEST:]
    print(f"train {tuple(x_tr.shape)}  test {tuple(x_te.shape)}")

    model = fm.CifarResNet([3, 3, 3], num_classes=10, option="A", in_channels=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps_per_epoch = (len(x_tr) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS * steps_per_epoch)

    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(x_tr), generator=g)
        tot, correct, loss_sum = 0, 0, 0.0
        for i in range(0, len(x_tr), BATCH):
            idx = perm[i:i + BATCH]
            xb = shift_augment(x_tr[idx], g)
            yb = y_tr[idx]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += len(idx)
            correct += (out.argmax(1) == yb).sum().item()
            loss_sum += loss.item() * len(idx)
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            _, acc = evaluate(model, x_te, y_te)
            print(f"epoch {epoch + 1:3d}  loss {loss_sum / tot:.4f}  train acc {correct / tot:.4f}  "
                  f"test acc {acc:.4f}  ({time.time() - t0:.0f}s)")

    model.eval()
    logits, acc = evaluate(model, x_te, y_te)
    n_ok = int((logits.argmax(1) == y_te).sum())
    print(f"final test accuracy {acc:.4f} ({n_ok}/{N_TEST})")

    os.makedirs(DEMO, exist_ok=True)
    sd = model.state_dict()
    ckpt = os.path.join(DEMO, "resnet20_digits.pth")
    torch.save(sd, ckpt)
    np.save(os.path.join(DEMO, "digits_test_x.npy"), np.ascontiguousarray(x_te.numpy().astype("<f4")))
    np.save(os.path.join(DEMO, "digits_test_y.npy"), np.ascontiguousarray(y_te.numpy().astype("<i8")))
    np.save(os.path.join(DEMO, "digits_test_logits.npy"), np.ascontiguousarray(logits.numpy().astype("<f4")))

    # round trip: the saved file reproduces the saved logits exactly
    m2 = fm.CifarResNet([3, 3, 3], num_classes=10, option="A", in_channels=1)
    m2.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    l2, _ = evaluate(m2, torch.from_numpy(np.load(os.path.join(DEMO, "digits_test_x.npy"))), y_te)
    assert torch.equal(l2, logits)

    n_params = sum(p.numel() for p in model.parameters())
    info = {"test_accuracy": acc, "correct": n_ok, "n_test": N_TEST, "epochs": EPOCHS,
            "seed": SEED, "params": n_params, "torch": torch.__version__}
    with open(os.path.join(DEMO, "README.md"), "w") as f:
        f.write(README.format(acc=100 * acc, ok=n_ok, n=N_TEST, epochs=EPOCHS, seed=SEED,
                              params=n_params, torch=torch.__version__,
                              info=json.dumps(info, indent=2)))
    print(json.dumps(info), f"({time.time() - t0:.0f}s)")


README = """# Demo model: ResNet-20 on scikit-learn digits

A small, really trained ResNet to demo and test `shortcut` end to end.

| file | content |
| --- | --- |
| `resnet20_digits.pth` | `torch.save(model.state_dict())`, zip format, float32 |
| `digits_test_x.npy` | float32 `[{n}, 1, 8, 8]` test images, already scaled to [0, 1] (pixel / 16) |
| `digits_test_y.npy` | int64 `[{n}]` true labels (0..9) |
| `digits_test_logits.npy` | float32 `[{n}, 10]` PyTorch `model.eval()` logits for `digits_test_x` |

**PyTorch test accuracy: {acc:.2f}% ({ok}/{n})** -- argmax of `digits_test_logits.npy`
against `digits_test_y.npy`; an engine that matches the logits gets the same.

## Model
akamaster/pytorch_resnet_cifar10 `resnet20` layout: `conv1` 3x3 (1 -> 16 channels,
stride 1) + `bn1` + ReLU, `layer1..3` with 3 BasicBlocks each (16, 32, 64 channels;
first block of layer2/3 has stride 2 and the parameter-free **option A** shortcut:
`x[:, :, ::2, ::2]` zero-padded with planes//4 channels on both sides), then
`F.avg_pool2d(out, out.size()[3])` (2x2 -> 1x1, global here) and `linear` (64 -> 10).
Feature maps: 8x8 -> 8x8 -> 4x4 -> 2x2. {params} parameters. Same key names as
upstream (`conv1.weight`, `layer2.0.bn1.running_var`, `linear.bias`, ...). No
input normalisation besides /16.

## Data and training
`sklearn.datasets.load_digits()` (bundled with scikit-learn; 1797 8x8 images,
values 0..16). The first 1400 images are the training set, the **last {n}** the test
set (`digits_test_*`, in the original order). SGD (momentum 0.9, Nesterov,
weight decay 5e-4), lr 0.1 cosine-annealed to 0, batch 64, {epochs} epochs, augmentation:
random shift by up to 1 pixel (zero fill). Seed {seed}, one CPU thread, torch {torch}.

Reproduce (rewrites every file here): `/work/venv/bin/python scripts/train_digits.py`
(the model definition is `CifarResNet([3, 3, 3], in_channels=1)` in
`scripts/fixture_models.py`). Bitwise reproducibility across torch versions or
CPUs is not guaranteed; the files here are the reference.

```json
{info}
```
"""


if __name__ == "__main__":
    main()
