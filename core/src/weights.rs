//! Parameter slices for a [`NetworkSpec`], borrowed from wherever they live (an mmap, flash, a Vec).

use crate::spec::{BlockLayer, BlockSpec, LayerName, NetworkSpec, ParamInfo};

/// A conv's weight `[out, in/groups, kh, kw]` and bias `[out]` (BN folded in).
#[derive(Clone, Copy, Debug)]
pub struct ConvWeights<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
}

/// A per-channel affine map (an unfoldable inference-mode BN).
#[derive(Clone, Copy, Debug)]
pub struct AffineWeights<'a> {
    pub scale: &'a [f32],
    pub shift: &'a [f32],
}

/// A fully connected layer: weight `[out, in]`, bias `[out]`.
#[derive(Clone, Copy, Debug)]
pub struct LinearWeights<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
}

/// One block's parameters; optional parts are present exactly when the block's spec needs them.
#[derive(Clone, Copy, Debug)]
pub struct BlockWeights<'a> {
    pub pre_norm: Option<AffineWeights<'a>>,
    pub conv1: ConvWeights<'a>,
    pub conv2: ConvWeights<'a>,
    pub conv3: Option<ConvWeights<'a>>,
    pub shortcut: Option<ConvWeights<'a>>,
}

/// All of a network's parameters.
#[derive(Clone, Copy, Debug)]
pub struct NetworkWeights<'a> {
    pub stem: ConvWeights<'a>,
    pub blocks: &'a [BlockWeights<'a>],
    pub head_norm: Option<AffineWeights<'a>>,
    pub fc: LinearWeights<'a>,
}

/// A parameter is missing, unexpected, or has the wrong length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightsError {
    pub layer: LayerName,
    pub tensor: &'static str,
    pub expected: usize,
    pub found: Option<usize>,
}

impl core::fmt::Display for WeightsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.found {
            Some(n) => write!(
                f,
                "parameter {}.{} has {n} elements, expected {}",
                self.layer, self.tensor, self.expected
            ),
            None => write!(f, "parameter {}.{} is missing", self.layer, self.tensor),
        }
    }
}

impl<'a> BlockWeights<'a> {
    /// Gathers one block's parameters through `lookup`, which returns the slice for a parameter
    /// (already checked against `info.shape()`) or an error.
    pub fn gather<E>(
        block: &BlockSpec,
        index: usize,
        mut lookup: impl FnMut(ParamInfo) -> Result<&'a [f32], E>,
    ) -> Result<Self, E> {
        // Reuses the spec's own enumeration so names and shapes have one source of truth.
        let one = NetworkSpec {
            in_channels: 1,
            stem: crate::spec::StemSpec::cifar(1),
            blocks: core::slice::from_ref(block),
            head: crate::spec::HeadSpec {
                norm: false,
                pool: crate::spec::HeadPool::Global,
                num_classes: 1,
            },
        };
        let mut result: Option<E> = None;
        let mut slots: [[Option<&'a [f32]>; 2]; 5] = [[None; 2]; 5];
        one.for_each_param(|mut p| {
            if let LayerName::Block { layer, .. } = p.layer {
                p.layer = LayerName::Block { block: index, layer };
                let i = match layer {
                    BlockLayer::PreNorm => 0,
                    BlockLayer::Conv1 => 1,
                    BlockLayer::Conv2 => 2,
                    BlockLayer::Conv3 => 3,
                    BlockLayer::Shortcut => 4,
                };
                let j = matches!(p.tensor, "bias" | "shift") as usize;
                if result.is_none() {
                    match lookup(p) {
                        Ok(s) => slots[i][j] = Some(s),
                        Err(e) => result = Some(e),
                    }
                }
            }
        });
        if let Some(e) = result {
            return Err(e);
        }
        let conv = |s: [Option<&'a [f32]>; 2]| match s {
            [Some(weight), Some(bias)] => Some(ConvWeights { weight, bias }),
            _ => None,
        };
        let empty = ConvWeights { weight: &[], bias: &[] };
        Ok(BlockWeights {
            pre_norm: match slots[0] {
                [Some(scale), Some(shift)] => Some(AffineWeights { scale, shift }),
                _ => None,
            },
            conv1: conv(slots[1]).unwrap_or(empty),
            conv2: conv(slots[2]).unwrap_or(empty),
            conv3: conv(slots[3]),
            shortcut: conv(slots[4]),
        })
    }
}

impl<'a> NetworkWeights<'a> {
    /// The slices for a parameter, if present.
    pub fn get(&self, layer: LayerName, tensor: &str) -> Option<&'a [f32]> {
        let pick = |w: &ConvWeights<'a>| if tensor == "bias" { w.bias } else { w.weight };
        let pick_affine = |a: &AffineWeights<'a>| if tensor == "shift" { a.shift } else { a.scale };
        match layer {
            LayerName::StemConv => Some(pick(&self.stem)),
            LayerName::HeadFc => Some(if tensor == "bias" { self.fc.bias } else { self.fc.weight }),
            LayerName::HeadNorm => self.head_norm.as_ref().map(pick_affine),
            LayerName::StemPool | LayerName::HeadPool => None,
            LayerName::Block { block, layer } => {
                let b = self.blocks.get(block)?;
                match layer {
                    BlockLayer::PreNorm => b.pre_norm.as_ref().map(pick_affine),
                    BlockLayer::Conv1 => Some(pick(&b.conv1)),
                    BlockLayer::Conv2 => Some(pick(&b.conv2)),
                    BlockLayer::Conv3 => b.conv3.as_ref().map(pick),
                    BlockLayer::Shortcut => b.shortcut.as_ref().map(pick),
                }
            }
        }
    }

    /// Checks that every parameter the spec needs is present with the right length, so the
    /// forward pass can index without further checks.
    pub fn check(&self, spec: &NetworkSpec<'_>) -> Result<(), WeightsError> {
        let mut err = None;
        if self.blocks.len() != spec.blocks.len() {
            return Err(WeightsError {
                layer: LayerName::Block {
                    block: self.blocks.len().min(spec.blocks.len()),
                    layer: BlockLayer::Conv1,
                },
                tensor: "weight",
                expected: spec.blocks.len(),
                found: Some(self.blocks.len()),
            });
        }
        spec.for_each_param(|p| {
            if err.is_some() {
                return;
            }
            let found = self.get(p.layer, p.tensor).map(<[f32]>::len);
            if found != Some(p.len()) {
                err = Some(WeightsError {
                    layer: p.layer,
                    tensor: p.tensor,
                    expected: p.len(),
                    found,
                });
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl core::error::Error for WeightsError {}
