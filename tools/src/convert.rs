//! PyTorch state dict -> shortcut model: architecture inference from key names and shapes,
//! and BN folding.
//!
//! Recognised layouts (after the checkpoint reader stripped wrappers and `module.`):
//! - torchvision / timm `resnet*`, `resnext*`, `wide_resnet*`: `conv1` 7x7, `bn1`,
//!   `layerL.B.{conv1,bn1,conv2,bn2[,conv3,bn3]}`, `layerL.B.downsample.{0,1}`, `fc`;
//! - CIFAR ResNets (akamaster, kuangliu): `conv1` 3x3, `bn1`, `layerL.B.*`, `shortcut.{0,1}`
//!   for option B, nothing for option A, `linear`;
//! - pre-activation ResNets (kuangliu `PreActResNet*`): no top-level `bn1`; blocks start with
//!   `bn1` over their input, `shortcut.0` is a bare conv; optional final `bn` before the head.
//!
//! In every family the first block of stages 2+ has stride 2 (shapes do not record strides).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use shortcut_core::{BlockKind, BlockSpec, HeadPool, HeadSpec, Shortcut, StemSpec};
use shortcut_runtime::{ModelSpec, Preprocess};

/// Source tensors by name: shape and f32 data.
pub type StateDict = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// How to read the state dict.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Forces a family or a named architecture (`torchvision`, `cifar`, `preact`, `resnet50`, ...).
    pub arch: Option<String>,
    /// BN epsilon (PyTorch's default is 1e-5; state dicts do not record it).
    pub bn_eps: f64,
    /// Image preprocessing to record in the model file; `None` records torchvision's ImageNet
    /// transform for ImageNet-layout nets and nothing for others.
    pub preprocess: Option<Preprocess>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions { arch: None, bn_eps: 1e-5, preprocess: None }
    }
}

/// A converted model, ready for [`shortcut_runtime::save_model`].
#[derive(Debug)]
pub struct Converted {
    pub arch: String,
    pub spec: ModelSpec,
    pub preprocess: Option<Preprocess>,
    pub tensors: Tensors,
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(
        "unrecognised layout: {reason}\n  found keys: {found}\n  expected a torchvision/timm ResNet \
         (conv1, bn1, layerN.M.conv1.., fc), a CIFAR ResNet (conv1 3x3, bn1, layerN.M.., linear) or a \
         pre-activation ResNet (conv1, layerN.M.bn1.., linear)"
    )]
    Layout { reason: String, found: String },
    #[error("tensor `{name}`: {problem}")]
    Tensor { name: String, problem: String },
    #[error("unknown --arch `{0}` (families: torchvision, cifar, preact; or a name such as resnet50, resnext50_32x4d, wide_resnet50_2, resnet20, preactresnet18)")]
    UnknownArch(String),
    #[error("--arch {arch} expects {expected}, the checkpoint has {found}")]
    ArchMismatch { arch: String, expected: String, found: String },
    #[error("preprocessing: {0}")]
    Preprocess(String),
    #[error("keys not used by the inferred architecture ({arch}): {keys}")]
    Unused { arch: String, keys: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Torchvision,
    Cifar,
    PreAct,
}

/// Named architectures: family, block kind name, blocks per stage (and groups/width hints).
fn named_arch(name: &str) -> Option<(Family, Option<&'static [usize]>, bool)> {
    let tv = |b: &'static [usize], bottleneck| Some((Family::Torchvision, Some(b), bottleneck));
    match name {
        "torchvision" | "timm" | "imagenet" => Some((Family::Torchvision, None, false)),
        "cifar" => Some((Family::Cifar, None, false)),
        "preact" => Some((Family::PreAct, None, false)),
        "resnet18" => tv(&[2, 2, 2, 2], false),
        "resnet34" => tv(&[3, 4, 6, 3], false),
        "resnet50" | "resnext50_32x4d" | "wide_resnet50_2" => tv(&[3, 4, 6, 3], true),
        "resnet101" | "resnext101_32x8d" | "resnext101_64x4d" | "wide_resnet101_2" => {
            tv(&[3, 4, 23, 3], true)
        }
        "resnet152" => tv(&[3, 8, 36, 3], true),
        "preactresnet18" => Some((Family::PreAct, Some(&[2, 2, 2, 2]), false)),
        "preactresnet34" => Some((Family::PreAct, Some(&[3, 4, 6, 3]), false)),
        "preactresnet50" => Some((Family::PreAct, Some(&[3, 4, 6, 3]), true)),
        _ => {
            // resnet{6n+2}: the CIFAR family of He et al.
            let depth: usize = name.strip_prefix("resnet")?.parse().ok()?;
            if depth >= 8 && (depth - 2).is_multiple_of(6) {
                let n = (depth - 2) / 6;
                let stages: &'static [usize] = Box::leak(vec![n; 3].into_boxed_slice());
                Some((Family::Cifar, Some(stages), false))
            } else {
                None
            }
        }
    }
}

struct Source<'a> {
    sd: &'a StateDict,
    used: BTreeSet<String>,
    eps: f64,
}

impl<'a> Source<'a> {
    fn has(&self, name: &str) -> bool {
        self.sd.contains_key(name)
    }

    fn get(&mut self, name: &str) -> Result<&'a (Vec<usize>, Vec<f32>), ConvertError> {
        let t = self.sd.get(name).ok_or_else(|| ConvertError::Tensor {
            name: name.to_string(),
            problem: "missing".into(),
        })?;
        self.used.insert(name.to_string());
        Ok(t)
    }

    fn shape(&self, name: &str) -> Option<&'a [usize]> {
        self.sd.get(name).map(|t| t.0.as_slice())
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<&'a [f32], ConvertError> {
        let (shape, data) = self.get(name)?;
        if shape.as_slice() != [len] {
            return Err(ConvertError::Tensor {
                name: name.into(),
                problem: format!("shape is {shape:?}, expected [{len}]"),
            });
        }
        Ok(data)
    }

    /// Inference-mode BN as `(scale, shift)` in f64: `y = x * scale + shift`.
    fn bn(&mut self, prefix: &str, channels: usize) -> Result<(Vec<f64>, Vec<f64>), ConvertError> {
        let gamma = self.vector(&format!("{prefix}.weight"), channels)?;
        let beta = self.vector(&format!("{prefix}.bias"), channels)?;
        let mean = self.vector(&format!("{prefix}.running_mean"), channels)?;
        let var = self.vector(&format!("{prefix}.running_var"), channels)?;
        self.used.insert(format!("{prefix}.num_batches_tracked"));
        let mut scale = Vec::with_capacity(channels);
        let mut shift = Vec::with_capacity(channels);
        for c in 0..channels {
            if var[c] < 0.0 || !var[c].is_finite() {
                return Err(ConvertError::Tensor {
                    name: format!("{prefix}.running_var"),
                    problem: format!("channel {c} has variance {}", var[c]),
                });
            }
            let s = gamma[c] as f64 / (var[c] as f64 + self.eps).sqrt();
            scale.push(s);
            shift.push(beta[c] as f64 - mean[c] as f64 * s);
        }
        Ok((scale, shift))
    }

    /// A conv's weight (checked against `expected` shape), its optional bias, and the BN after
    /// it folded in: `w' = w * s`, `b' = (b - mean) * s + beta`, computed in f64.
    fn conv(
        &mut self,
        conv: &str,
        bn: Option<&str>,
        expected: [usize; 4],
    ) -> Result<(Vec<f32>, Vec<f32>), ConvertError> {
        let wname = format!("{conv}.weight");
        let (shape, w) = self.get(&wname)?;
        if shape.as_slice() != expected {
            return Err(ConvertError::Tensor {
                name: wname,
                problem: format!("shape is {shape:?}, expected {expected:?}"),
            });
        }
        let out = expected[0];
        let bname = format!("{conv}.bias");
        let bias: Vec<f64> = if self.has(&bname) {
            self.vector(&bname, out)?.iter().map(|&b| b as f64).collect()
        } else {
            vec![0.0; out]
        };
        let (scale, shift) = match bn {
            Some(p) => self.bn(p, out)?,
            None => (vec![1.0; out], vec![0.0; out]),
        };
        let per_out = w.len() / out;
        let weight = w
            .chunks_exact(per_out)
            .zip(&scale)
            .flat_map(|(row, &s)| row.iter().map(move |&v| (v as f64 * s) as f32))
            .collect();
        let bias = (0..out).map(|o| (bias[o] * scale[o] + shift[o]) as f32).collect();
        Ok((weight, bias))
    }
}

/// Blocks per stage found in the keys: `layer1.0`, `layer1.1`, `layer2.0`, ...
fn stage_layout(sd: &StateDict) -> Vec<usize> {
    let mut counts: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for key in sd.keys() {
        let mut parts = key.split('.');
        let (Some(layer), Some(block)) = (parts.next(), parts.next()) else { continue };
        let (Some(l), Ok(b)) =
            (layer.strip_prefix("layer").and_then(|l| l.parse().ok()), block.parse())
        else {
            continue;
        };
        counts.entry(l).or_default().insert(b);
    }
    let mut stages = Vec::new();
    for (i, (l, blocks)) in counts.iter().enumerate() {
        // Stages must be layer1, layer2, ... and blocks 0..n, or the layout is not ours.
        if *l != i + 1 || blocks.iter().enumerate().any(|(j, &b)| b != j) {
            return Vec::new();
        }
        stages.push(blocks.len());
    }
    stages
}

fn summarize_keys(sd: &StateDict) -> String {
    let mut shown: Vec<String> = sd.keys().take(12).cloned().collect();
    if sd.len() > 12 {
        shown.push(format!("... ({} keys in all)", sd.len()));
    }
    shown.join(", ")
}

/// Infers the architecture of a state dict and converts it.
pub fn convert(sd: &StateDict, opts: &ConvertOptions) -> Result<Converted, ConvertError> {
    let layout_err =
        |reason: &str| ConvertError::Layout { reason: reason.into(), found: summarize_keys(sd) };
    let forced = match &opts.arch {
        Some(name) => {
            Some(named_arch(name).ok_or_else(|| ConvertError::UnknownArch(name.clone()))?)
        }
        None => None,
    };
    let stem_shape = sd
        .get("conv1.weight")
        .map(|t| t.0.clone())
        .ok_or_else(|| layout_err("no `conv1.weight`"))?;
    let &[stem_out, in_channels, k, k2] = stem_shape.as_slice() else {
        return Err(layout_err("`conv1.weight` is not 4-D"));
    };
    if k != k2 {
        return Err(layout_err("`conv1` kernel is not square"));
    }
    let family = match forced {
        Some((f, _, _)) => f,
        None if !sd.contains_key("bn1.weight") => Family::PreAct,
        None if k == 7 => Family::Torchvision,
        None if k == 3 => Family::Cifar,
        None => {
            return Err(layout_err(&format!(
                "`conv1` is {k}x{k}; expected 7x7 (ImageNet) or 3x3 (CIFAR)"
            )))
        }
    };
    let stages = stage_layout(sd);
    if stages.is_empty() {
        return Err(layout_err("no `layerN.M.*` residual blocks"));
    }
    let bottleneck = sd.contains_key("layer1.0.conv3.weight");
    if let (Some((_, Some(expected), exp_bottleneck)), Some(name)) = (forced, &opts.arch) {
        if expected != stages.as_slice() || exp_bottleneck != bottleneck {
            let kind = |b| if b { "bottleneck" } else { "basic" };
            return Err(ConvertError::ArchMismatch {
                arch: name.clone(),
                expected: format!("{} blocks {:?}", kind(exp_bottleneck), expected),
                found: format!("{} blocks {:?}", kind(bottleneck), stages),
            });
        }
    }
    let head = if sd.contains_key("fc.weight") {
        "fc"
    } else if sd.contains_key("linear.weight") {
        "linear"
    } else {
        return Err(layout_err("no classifier (`fc.weight` or `linear.weight`)"));
    };

    let mut src = Source { sd, used: BTreeSet::new(), eps: opts.bn_eps };
    let mut tensors: Tensors = Vec::new();
    let preact = family == Family::PreAct;
    let stem = match family {
        Family::Torchvision => StemSpec {
            out_channels: stem_out,
            kernel: k,
            stride: 2,
            padding: k / 2,
            relu: true,
            max_pool: true,
        },
        Family::Cifar => StemSpec {
            out_channels: stem_out,
            kernel: k,
            stride: 1,
            padding: k / 2,
            relu: true,
            max_pool: false,
        },
        // Pre-activation nets normalise at the start of each block; the stem conv is bare.
        Family::PreAct => StemSpec {
            out_channels: stem_out,
            kernel: k,
            stride: 1,
            padding: k / 2,
            relu: false,
            max_pool: false,
        },
    };
    let (w, b) = src.conv("conv1", (!preact).then_some("bn1"), [stem_out, in_channels, k, k])?;
    tensors.push(("stem.conv.weight".to_string(), vec![stem_out, in_channels, k, k], w));
    tensors.push(("stem.conv.bias".to_string(), vec![stem_out], b));

    let mut blocks = Vec::new();
    let mut channels = stem_out;
    for (s, &count) in stages.iter().enumerate() {
        for j in 0..count {
            let p = format!("layer{}.{}", s + 1, j);
            let index = blocks.len();
            let stride = if s > 0 && j == 0 { 2 } else { 1 };
            let c1 = src
                .shape(&format!("{p}.conv1.weight"))
                .ok_or_else(|| layout_err(&format!("no `{p}.conv1.weight`")))?
                .to_vec();
            let last = if bottleneck { "conv3" } else { "conv2" };
            let cl = src
                .shape(&format!("{p}.{last}.weight"))
                .ok_or_else(|| layout_err(&format!("no `{p}.{last}.weight`")))?
                .to_vec();
            let (out_channels, kind) = if bottleneck {
                let width = c1[0];
                let c2 = src
                    .shape(&format!("{p}.conv2.weight"))
                    .ok_or_else(|| layout_err(&format!("no `{p}.conv2.weight`")))?;
                if c2.len() != 4 || c2[1] == 0 || width % c2[1] != 0 {
                    return Err(ConvertError::Tensor {
                        name: format!("{p}.conv2.weight"),
                        problem: format!("shape {c2:?} does not fit width {width}"),
                    });
                }
                (cl[0], BlockKind::Bottleneck { width, groups: width / c2[1] })
            } else {
                (cl[0], BlockKind::Basic)
            };
            let proj = ["downsample.0.weight", "shortcut.0.weight"]
                .iter()
                .map(|k| format!("{p}.{k}"))
                .find(|k| src.has(k));
            let shortcut = match &proj {
                Some(_) => Shortcut::Projection,
                None if channels != out_channels || stride != 1 => Shortcut::ZeroPad,
                None => Shortcut::Identity,
            };
            let spec =
                BlockSpec { kind, in_channels: channels, out_channels, stride, shortcut, preact };
            let convs = spec.convs();
            let name = |l: &str, t: &str| format!("blocks.{index}.{l}.{t}");
            let push_conv = |tensors: &mut Vec<_>,
                             src: &mut Source,
                             ours: &str,
                             conv: &str,
                             bn: Option<String>,
                             g: shortcut_core::Conv2dGeometry|
             -> Result<(), ConvertError> {
                let shape = g.weight_shape();
                let (w, b) = src.conv(conv, bn.as_deref(), shape)?;
                tensors.push((name(ours, "weight"), shape.to_vec(), w));
                tensors.push((name(ours, "bias"), vec![shape[0]], b));
                Ok(())
            };
            if preact {
                let (scale, shift) = src.bn(&format!("{p}.bn1"), channels)?;
                push_affine(&mut tensors, &format!("blocks.{index}.pre_norm"), &scale, &shift);
                // conv_k is followed by bn_{k+1}; the last conv has no BN after it.
                push_conv(
                    &mut tensors,
                    &mut src,
                    "conv1",
                    &format!("{p}.conv1"),
                    Some(format!("{p}.bn2")),
                    convs.conv1,
                )?;
                let bn3 = convs.conv3.map(|_| format!("{p}.bn3"));
                push_conv(
                    &mut tensors,
                    &mut src,
                    "conv2",
                    &format!("{p}.conv2"),
                    bn3,
                    convs.conv2,
                )?;
                if let Some(g) = convs.conv3 {
                    push_conv(&mut tensors, &mut src, "conv3", &format!("{p}.conv3"), None, g)?;
                }
            } else {
                push_conv(
                    &mut tensors,
                    &mut src,
                    "conv1",
                    &format!("{p}.conv1"),
                    Some(format!("{p}.bn1")),
                    convs.conv1,
                )?;
                push_conv(
                    &mut tensors,
                    &mut src,
                    "conv2",
                    &format!("{p}.conv2"),
                    Some(format!("{p}.bn2")),
                    convs.conv2,
                )?;
                if let Some(g) = convs.conv3 {
                    push_conv(
                        &mut tensors,
                        &mut src,
                        "conv3",
                        &format!("{p}.conv3"),
                        Some(format!("{p}.bn3")),
                        g,
                    )?;
                }
            }
            if let (Some(key), Some(g)) = (&proj, convs.shortcut) {
                let conv = key.trim_end_matches(".0.weight").to_string();
                let bn = format!("{conv}.1");
                let bn = src.has(&format!("{bn}.weight")).then_some(bn);
                push_conv(&mut tensors, &mut src, "shortcut", &format!("{conv}.0"), bn, g)?;
            }
            blocks.push(spec);
            channels = out_channels;
        }
    }

    // A final BN before the pool (pre-activation v2 heads): `bn`, `bn_final` or `final_bn`.
    let head_norm =
        ["bn", "bn_final", "final_bn"].into_iter().find(|p| src.has(&format!("{p}.weight")));
    if let Some(p) = head_norm {
        let (scale, shift) = src.bn(p, channels)?;
        push_affine(&mut tensors, "head.norm", &scale, &shift);
    }
    let fc_shape = src.shape(&format!("{head}.weight")).unwrap_or_default().to_vec();
    let [classes, features] = fc_shape.as_slice() else {
        return Err(ConvertError::Tensor {
            name: format!("{head}.weight"),
            problem: format!("shape {fc_shape:?} is not 2-D"),
        });
    };
    let (classes, features) = (*classes, *features);
    if features != channels {
        return Err(ConvertError::Tensor {
            name: format!("{head}.weight"),
            problem: format!("takes {features} features, the last block gives {channels}"),
        });
    }
    let fc_w = src.get(&format!("{head}.weight"))?.1.clone();
    let fc_b = src.vector(&format!("{head}.bias"), classes)?.to_vec();
    tensors.push(("head.fc.weight".into(), vec![classes, features], fc_w));
    tensors.push(("head.fc.bias".into(), vec![classes], fc_b));

    // CIFAR code pools with a fixed window written for 32x32 inputs: akamaster's 3-stage nets
    // use `avg_pool2d(out, out.size()[3])`, kuangliu's 4-stage nets `avg_pool2d(out, 4)`.
    let pool = match (family, stages.len()) {
        (Family::Torchvision, _) => HeadPool::Global,
        (Family::Cifar, 3) => HeadPool::WidthWindow,
        _ => HeadPool::Window { size: 4 },
    };
    let head = HeadSpec { norm: head_norm.is_some(), pool, num_classes: classes };
    let spec = ModelSpec { in_channels, stem, blocks, head };
    let arch = opts
        .arch
        .clone()
        .filter(|a| !matches!(a.as_str(), "torchvision" | "timm" | "imagenet" | "cifar" | "preact"))
        .unwrap_or_else(|| display_name(family, &stages, &spec));
    let unused: Vec<&String> = sd
        .keys()
        .filter(|k| !src.used.contains(*k) && !k.ends_with("num_batches_tracked"))
        .collect();
    if !unused.is_empty() {
        let keys = unused.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        return Err(ConvertError::Unused { arch, keys });
    }
    spec.view().validate().map_err(|e| layout_err(&e.to_string()))?;
    let preprocess = match &opts.preprocess {
        Some(p) => Some(p.clone()),
        None if family == Family::Torchvision && in_channels == 3 => Some(Preprocess::imagenet()),
        None => None,
    };
    if let Some(p) = &preprocess {
        p.validate(in_channels).map_err(ConvertError::Preprocess)?;
    }
    Ok(Converted { arch, spec, preprocess, tensors })
}

type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// Stores an unfolded BN as `{layer}.scale` and `{layer}.shift`.
fn push_affine(tensors: &mut Tensors, layer: &str, scale: &[f64], shift: &[f64]) {
    let c = scale.len();
    tensors.push((format!("{layer}.scale"), vec![c], scale.iter().map(|&v| v as f32).collect()));
    tensors.push((format!("{layer}.shift"), vec![c], shift.iter().map(|&v| v as f32).collect()));
}

/// A conventional name for the inferred architecture (`resnet50`, `resnext50_32x4d`, `resnet20`...).
fn display_name(family: Family, stages: &[usize], spec: &ModelSpec) -> String {
    let first = spec.blocks.first().map(|b| b.kind);
    let layers: usize = stages.iter().sum();
    match family {
        Family::Torchvision => {
            let (per_block, depth_extra) = match first {
                Some(BlockKind::Bottleneck { .. }) => (3, 2),
                _ => (2, 2),
            };
            let depth = layers * per_block + depth_extra;
            match first {
                Some(BlockKind::Bottleneck { width, groups }) if groups > 1 => {
                    format!(
                        "resnext{depth}_{groups}x{}d",
                        width / groups * 64 / spec.stem.out_channels.max(1)
                    )
                }
                Some(BlockKind::Bottleneck { width, .. }) if width > spec.stem.out_channels => {
                    format!("wide_resnet{depth}_{}", width / spec.stem.out_channels.max(1))
                }
                _ => format!("resnet{depth}"),
            }
        }
        Family::Cifar => format!("resnet{}", layers * 2 + 2),
        Family::PreAct => {
            let per_block = if matches!(first, Some(BlockKind::Bottleneck { .. })) { 3 } else { 2 };
            format!("preactresnet{}", layers * per_block + 2)
        }
    }
}

/// Why `shortcut convert` failed; every message names the input or output file.
#[derive(Debug, thiserror::Error)]
pub enum ConvertFileError {
    #[error(transparent)]
    Read(#[from] crate::checkpoint::CheckpointError),
    #[error("{path}: {error}")]
    Convert { path: String, error: ConvertError },
    #[error(transparent)]
    Save(#[from] shortcut_runtime::SaveError),
}

/// Reads a PyTorch checkpoint, converts it and writes the model file atomically.
/// Returns the architecture name.
pub fn convert_checkpoint(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
) -> Result<String, ConvertFileError> {
    let tensors = crate::checkpoint::read_checkpoint(input)?;
    let sd: StateDict = tensors.into_iter().map(|(k, t)| (k, (t.shape, t.data))).collect();
    let c = convert(&sd, opts)
        .map_err(|error| ConvertFileError::Convert { path: input.display().to_string(), error })?;
    let named: Vec<_> = c
        .tensors
        .iter()
        .map(|(name, shape, data)| shortcut_runtime::NamedTensor {
            name: name.clone(),
            shape: shape.clone(),
            data,
        })
        .collect();
    shortcut_runtime::save_model(output, &c.arch, &c.spec, c.preprocess.as_ref(), &named)?;
    Ok(c.arch)
}
