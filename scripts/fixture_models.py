"""Reference PyTorch model definitions used to make the `shortcut` test fixtures.

Every class here is a faithful copy of a well-known upstream implementation, so
that the state_dict key names (and the forward arithmetic) are exactly what
real checkpoints in the wild contain:

* `TVResNet`, `TVBasicBlock`, `TVBottleneck` -- torchvision.models.resnet
  (resnet18/34/50/101/152, resnext*, wide_resnet*), with one addition: the
  stage widths 64/128/256/512 are `base * (1, 2, 4, 8)` so that fixtures can be
  small. With base=64 the module tree is identical to torchvision's (checked
  by `assert_matches_torchvision`). Bottleneck width is
  `int(planes * (width_per_group / base)) * groups`, which for base=64 is
  torchvision's `int(planes * (base_width / 64.0)) * groups`. Stride sits on
  the 3x3 conv of the bottleneck (ResNet v1.5).
* `CifarResNet` -- akamaster/pytorch_resnet_cifar10 (He et al. CIFAR ResNets:
  resnet20/32/44/56/110), option A (parameter-free strided subsample + zero
  channel padding on both sides) or option B (1x1 conv + BN) shortcuts.
  `in_channels` is added (default 3) for the 1-channel digits demo, and `base`
  (default 16 = upstream) for smaller fixtures.
* `KLResNet`, `KLBasicBlock`, `KLBottleneck`, `KLPreActResNet`,
  `KLPreActBlock`, `KLPreActBottleneck` -- kuangliu/pytorch-cifar, with the
  64/128/256/512 widths likewise scaled by `base`.

Only PyTorch is needed; nothing is downloaded.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------

def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride,
                     padding=dilation, groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class TVBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1,
                 width_per_group=64, base=64):
        super().__init__()
        if groups != 1 or width_per_group != base:
            raise ValueError("BasicBlock only supports groups=1 and width_per_group=base")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class TVBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1,
                 width_per_group=64, base=64):
        super().__init__()
        width = int(planes * (width_per_group / float(base))) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class TVResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000, groups=1,
                 width_per_group=None, base=64, in_channels=3):
        super().__init__()
        if width_per_group is None:
            width_per_group = base
        self.base = base
        self.inplanes = base
        self.groups = groups
        self.width_per_group = width_per_group
        self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(base * 8 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, self.groups,
                        self.width_per_group, self.base)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups,
                                width_per_group=self.width_per_group, base=self.base))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def assert_matches_torchvision():
    """For base=64 our copy must have exactly torchvision's keys and shapes."""
    import torchvision.models as tvm

    pairs = [
        ("resnet18", tvm.resnet18(), TVResNet(TVBasicBlock, [2, 2, 2, 2])),
        ("resnet34", tvm.resnet34(), TVResNet(TVBasicBlock, [3, 4, 6, 3])),
        ("resnet50", tvm.resnet50(), TVResNet(TVBottleneck, [3, 4, 6, 3])),
        ("resnext50_32x4d", tvm.resnext50_32x4d(),
         TVResNet(TVBottleneck, [3, 4, 6, 3], groups=32, width_per_group=4)),
        ("wide_resnet50_2", tvm.wide_resnet50_2(),
         TVResNet(TVBottleneck, [3, 4, 6, 3], width_per_group=128)),
    ]
    for name, ref, ours in pairs:
        a = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
        b = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
        assert list(a) == list(b), f"{name}: key order/names differ"
        assert a == b, f"{name}: shapes differ"
        # identical forward given identical weights
        ours.load_state_dict(ref.state_dict())
        ref.eval()
        ours.eval()
        x = torch.randn(1, 3, 67, 59)
        with torch.no_grad():
            d = (ref(x) - ours(x)).abs().max().item()
        assert d == 0.0, f"{name}: forward differs by {d}"
        print(f"  ok: TVResNet(base=64) == torchvision.models.{name}() ({len(a)} keys)")


# --------------------------------------------------------------------------
# akamaster/pytorch_resnet_cifar10
# --------------------------------------------------------------------------

class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class CifarBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, option="A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                # For CIFAR10 ResNet paper uses option A.
                self.shortcut = LambdaLayer(lambda x: F.pad(
                    x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0))
            elif option == "B":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(self.expansion * planes),
                )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


def _weights_init(m):
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(m.weight)


class CifarResNet(nn.Module):
    # `base` (upstream: fixed 16 -> widths 16/32/64) only exists to make the
    # dtype fixtures smaller; keys are unchanged.
    def __init__(self, num_blocks, num_classes=10, option="A", in_channels=3, base=16):
        super().__init__()
        self.in_planes = base
        block = CifarBasicBlock
        self.conv1 = nn.Conv2d(in_channels, base, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.layer1 = self._make_layer(block, base, num_blocks[0], stride=1, option=option)
        self.layer2 = self._make_layer(block, base * 2, num_blocks[1], stride=2, option=option)
        self.layer3 = self._make_layer(block, base * 4, num_blocks[2], stride=2, option=option)
        self.linear = nn.Linear(base * 4, num_classes)
        self.apply(_weights_init)

    def _make_layer(self, block, planes, num_blocks, stride, option):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride, option))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        # NB: kernel = width of the last map; on non-square maps this is NOT a
        # global pool (a 9x8 map pools rows 0..7 only), exactly as upstream.
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


# --------------------------------------------------------------------------
# kuangliu/pytorch-cifar
# --------------------------------------------------------------------------

class KLBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class KLBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(self.expansion * planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class KLResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, base=64):
        super().__init__()
        self.in_planes = base
        self.conv1 = nn.Conv2d(3, base, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.layer1 = self._make_layer(block, base, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, base * 2, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, num_blocks[3], stride=2)
        self.linear = nn.Linear(base * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


class KLPreActBlock(nn.Module):
    """Pre-activation version of the BasicBlock."""
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False)
            )

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out += shortcut
        return out


class KLPreActBottleneck(nn.Module):
    """Pre-activation version of the original Bottleneck module."""
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, self.expansion * planes, kernel_size=1, bias=False)
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False)
            )

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        out += shortcut
        return out


class KLPreActResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, base=64):
        super().__init__()
        self.in_planes = base
        self.conv1 = nn.Conv2d(3, base, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(block, base, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, base * 2, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, num_blocks[3], stride=2)
        self.linear = nn.Linear(base * 8 * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out
