//! Built-in architecture descriptions (torchvision's ResNet family) for benchmarks and tests
//! with random weights.

use shortcut_core::{BlockKind, BlockSpec, HeadPool, HeadSpec, Shortcut, StemSpec};

use crate::format::ModelSpec;

/// Names accepted by [`torchvision`].
pub const TORCHVISION_ARCHS: &[&str] = &[
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
];

/// The torchvision architecture `name` (1000 classes, 3 input channels), as torchvision builds it.
pub fn torchvision(name: &str) -> Option<ModelSpec> {
    let (bottleneck, layers, groups, width_per_group): (bool, [usize; 4], usize, usize) = match name
    {
        "resnet18" => (false, [2, 2, 2, 2], 1, 64),
        "resnet34" => (false, [3, 4, 6, 3], 1, 64),
        "resnet50" => (true, [3, 4, 6, 3], 1, 64),
        "resnet101" => (true, [3, 4, 23, 3], 1, 64),
        "resnet152" => (true, [3, 8, 36, 3], 1, 64),
        "resnext50_32x4d" => (true, [3, 4, 6, 3], 32, 4),
        "resnext101_32x8d" => (true, [3, 4, 23, 3], 32, 8),
        "resnext101_64x4d" => (true, [3, 4, 23, 3], 64, 4),
        "wide_resnet50_2" => (true, [3, 4, 6, 3], 1, 128),
        "wide_resnet101_2" => (true, [3, 4, 23, 3], 1, 128),
        _ => return None,
    };
    let mut blocks = Vec::new();
    let mut channels = 64;
    for (stage, &count) in layers.iter().enumerate() {
        let planes = 64 << stage;
        for j in 0..count {
            let stride = if stage > 0 && j == 0 { 2 } else { 1 };
            let (kind, out) = if bottleneck {
                let width = planes * width_per_group / 64 * groups;
                (BlockKind::Bottleneck { width, groups }, planes * 4)
            } else {
                (BlockKind::Basic, planes)
            };
            let shortcut = if stride != 1 || channels != out {
                Shortcut::Projection
            } else {
                Shortcut::Identity
            };
            blocks.push(BlockSpec {
                kind,
                in_channels: channels,
                out_channels: out,
                stride,
                shortcut,
                preact: false,
            });
            channels = out;
        }
    }
    Some(ModelSpec {
        in_channels: 3,
        stem: StemSpec::imagenet(64),
        blocks,
        head: HeadSpec { norm: false, pool: HeadPool::Global, num_classes: 1000 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_match_torchvision() {
        // torchvision's published counts minus BN parameters (folded: each BN's 2 affine
        // parameters become the conv bias, so count = conv weights + out channels per conv + fc).
        for name in TORCHVISION_ARCHS {
            let spec = torchvision(name).unwrap();
            spec.view().validate().unwrap();
        }
        // resnet18: 11,689,512 parameters in torchvision including 9,600 BN parameters
        // (2 x 4,800 channels); folding keeps one bias per BN channel: 11,689,512 - 4,800.
        assert_eq!(torchvision("resnet18").unwrap().view().param_count(), 11_689_512 - 4_800);
        // resnet50: 25,557,032 with 53,120 BN parameters (26,560 channels).
        assert_eq!(torchvision("resnet50").unwrap().view().param_count(), 25_557_032 - 26_560);
    }
}
