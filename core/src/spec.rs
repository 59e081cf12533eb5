//! A residual network described as plain data: a stem, a list of residual blocks, a head.
//!
//! BN is assumed folded into the preceding conv (every conv has a bias). The only BNs that
//! cannot be folded are the ones in front of a conv in pre-activation blocks (and the final
//! BN of a v2 head); those are per-channel affine maps ([`BlockSpec::preact`], [`HeadSpec::norm`]).

use core::fmt;

use crate::shape::{Conv2dGeometry, Shape, STEM_POOL};

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// The first conv: 7x7/2 + max-pool for ImageNet nets, 3x3/1 for CIFAR nets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct StemSpec {
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    /// BN + ReLU after the conv (false in pre-activation nets, whose first block normalises).
    pub relu: bool,
    /// 3x3/2 max-pool with padding 1 after the conv.
    pub max_pool: bool,
}

impl StemSpec {
    pub const fn imagenet(out_channels: usize) -> Self {
        StemSpec { out_channels, kernel: 7, stride: 2, padding: 3, relu: true, max_pool: true }
    }
    pub const fn cifar(out_channels: usize) -> Self {
        StemSpec { out_channels, kernel: 3, stride: 1, padding: 1, relu: true, max_pool: false }
    }
}

/// The residual branch of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum BlockKind {
    /// Two 3x3 convs; the stride is on the first.
    Basic,
    /// 1x1 (in -> width), 3x3 with `groups` (width -> width, carries the stride as in torchvision
    /// v1.5), 1x1 (width -> out). ResNeXt and Wide ResNet are bottlenecks with other widths/groups.
    Bottleneck { width: usize, groups: usize },
}

/// How the block's input reaches the add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Shortcut {
    Identity,
    /// "Option B": 1x1 conv with the block's stride (+ folded BN).
    Projection,
    /// "Option A": keep every stride-th pixel and zero-pad channels, `(out - in) / 2` in front.
    ZeroPad,
}

/// One residual block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct BlockSpec {
    pub kind: BlockKind,
    pub in_channels: usize,
    pub out_channels: usize,
    pub stride: usize,
    pub shortcut: Shortcut,
    /// Pre-activation (v2): BN-ReLU on the input before the first conv, no ReLU after the add;
    /// a projection shortcut reads the normalised input, an identity shortcut the raw one.
    pub preact: bool,
}

/// How the head averages the last feature map. Models written for 32x32 CIFAR inputs pool
/// with a fixed window rather than globally; on other sizes PyTorch averages only that window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum HeadPool {
    /// `AdaptiveAvgPool2d(1)` (torchvision): the mean of the whole map.
    #[default]
    Global,
    /// `F.avg_pool2d(x, x.size(3))` (akamaster CIFAR ResNets): a W x W window at the top left;
    /// the map must be W to 2W-1 rows high so the result is 1x1.
    WidthWindow,
    /// `F.avg_pool2d(x, size)` (kuangliu CIFAR ResNets): a size x size window at the top left;
    /// both sides must be in `size..2*size` so the result is 1x1.
    Window { size: usize },
}

impl HeadPool {
    /// The averaging window for a final map of `h x w`, or `None` if PyTorch's pool would not
    /// give a 1x1 map there (the model's classifier could not take it).
    pub fn window(self, h: usize, w: usize) -> Option<(usize, usize)> {
        let one = |size: usize, k: usize| k > 0 && size >= k && size < 2 * k;
        match self {
            HeadPool::Global => (h > 0 && w > 0).then_some((h, w)),
            HeadPool::WidthWindow => one(h, w).then_some((w, w)),
            HeadPool::Window { size } => (one(h, size) && one(w, size)).then_some((size, size)),
        }
    }
}

/// Average pool, then a fully connected layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct HeadSpec {
    /// BN-ReLU before the pool (the final norm of pre-activation nets that have one).
    pub norm: bool,
    #[cfg_attr(feature = "serde", serde(default))]
    pub pool: HeadPool,
    pub num_classes: usize,
}

/// A whole network. `blocks` is borrowed so the description can live in flash on a microcontroller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkSpec<'a> {
    pub in_channels: usize,
    pub stem: StemSpec,
    pub blocks: &'a [BlockSpec],
    pub head: HeadSpec,
}

/// Why a spec, or an input shape, is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// A channel count, kernel, stride or class count is zero or inconsistent.
    Invalid { block: Option<usize>, what: &'static str },
    /// Block `block` takes `expected` channels but the previous layer gives `found`.
    ChannelMismatch { block: usize, expected: usize, found: usize },
    /// The input has the wrong number of channels.
    InputChannels { expected: usize, found: usize },
    /// The input is too small: the named layer would have an empty output.
    InputTooSmall { layer: LayerName },
    /// The last feature map is `h x w`, which the head's fixed-window pool cannot reduce to 1x1.
    HeadWindow { h: usize, w: usize },
    /// An activation would not fit in `usize`.
    TooLarge,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Invalid { block: Some(b), what } => write!(f, "block {b}: {what}"),
            SpecError::Invalid { block: None, what } => write!(f, "{what}"),
            SpecError::ChannelMismatch { block, expected, found } => write!(
                f,
                "block {block} takes {expected} input channels but the previous layer gives {found}"
            ),
            SpecError::InputChannels { expected, found } => {
                write!(f, "the network takes {expected} input channels, the input has {found}")
            }
            SpecError::InputTooSmall { layer } => {
                write!(f, "the input is too small: {layer} would have an empty output")
            }
            SpecError::HeadWindow { h, w } => write!(
                f,
                "the last feature map is {h}x{w}, which this model's fixed-window average pool \
                 does not reduce to 1x1 (the model was written for one input size, e.g. 32x32)"
            ),
            SpecError::TooLarge => write!(f, "an activation is too large to address"),
        }
    }
}

/// Where a layer sits in the network; its `Display` is the prefix of its parameter names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LayerName {
    StemConv,
    StemPool,
    Block { block: usize, layer: BlockLayer },
    HeadNorm,
    HeadPool,
    HeadFc,
}

/// A layer inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockLayer {
    PreNorm,
    Conv1,
    Conv2,
    Conv3,
    Shortcut,
}

impl BlockLayer {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockLayer::PreNorm => "pre_norm",
            BlockLayer::Conv1 => "conv1",
            BlockLayer::Conv2 => "conv2",
            BlockLayer::Conv3 => "conv3",
            BlockLayer::Shortcut => "shortcut",
        }
    }
}

impl fmt::Display for LayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerName::StemConv => f.write_str("stem.conv"),
            LayerName::StemPool => f.write_str("stem.pool"),
            LayerName::Block { block, layer } => write!(f, "blocks.{block}.{}", layer.as_str()),
            LayerName::HeadNorm => f.write_str("head.norm"),
            LayerName::HeadPool => f.write_str("head.pool"),
            LayerName::HeadFc => f.write_str("head.fc"),
        }
    }
}

/// The convolutions of one block, in execution order of their first use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockConvs {
    pub conv1: Conv2dGeometry,
    pub conv2: Conv2dGeometry,
    pub conv3: Option<Conv2dGeometry>,
    pub shortcut: Option<Conv2dGeometry>,
}

impl BlockSpec {
    /// The block's conv geometries.
    pub fn convs(&self) -> BlockConvs {
        let (i, o, s) = (self.in_channels, self.out_channels, self.stride);
        let shortcut = match self.shortcut {
            Shortcut::Projection => Some(Conv2dGeometry::square(i, o, 1, s, 0, 1)),
            _ => None,
        };
        match self.kind {
            BlockKind::Basic => BlockConvs {
                conv1: Conv2dGeometry::square(i, o, 3, s, 1, 1),
                conv2: Conv2dGeometry::square(o, o, 3, 1, 1, 1),
                conv3: None,
                shortcut,
            },
            BlockKind::Bottleneck { width, groups } => BlockConvs {
                conv1: Conv2dGeometry::square(i, width, 1, 1, 0, 1),
                conv2: Conv2dGeometry::square(width, width, 3, s, 1, groups),
                conv3: Some(Conv2dGeometry::square(width, o, 1, 1, 0, 1)),
                shortcut,
            },
        }
    }

    /// Zero channels placed before the input's channels by an option-A shortcut.
    pub fn zero_pad_front(&self) -> usize {
        (self.out_channels - self.in_channels) / 2
    }

    fn validate(&self, index: usize) -> Result<(), SpecError> {
        let bad = |what| Err(SpecError::Invalid { block: Some(index), what });
        if self.in_channels == 0 || self.out_channels == 0 {
            return bad("zero channels");
        }
        if self.stride == 0 {
            return bad("zero stride");
        }
        if let BlockKind::Bottleneck { width, groups } = self.kind {
            if width == 0 || groups == 0 || width % groups != 0 {
                return bad("bottleneck width must be a positive multiple of groups");
            }
        }
        match self.shortcut {
            Shortcut::Identity if self.in_channels != self.out_channels || self.stride != 1 => {
                bad("an identity shortcut needs equal channels and stride 1")
            }
            Shortcut::ZeroPad if self.out_channels < self.in_channels => {
                bad("a zero-pad shortcut cannot drop channels")
            }
            _ => Ok(()),
        }
    }
}

impl<'a> NetworkSpec<'a> {
    /// The stem conv's geometry.
    pub fn stem_conv(&self) -> Conv2dGeometry {
        let s = &self.stem;
        Conv2dGeometry::square(self.in_channels, s.out_channels, s.kernel, s.stride, s.padding, 1)
    }

    /// Channels entering the head.
    pub fn feature_channels(&self) -> usize {
        self.blocks.last().map_or(self.stem.out_channels, |b| b.out_channels)
    }

    /// Checks internal consistency (not an input shape: see [`crate::plan::plan`]).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.in_channels == 0 || self.head.num_classes == 0 {
            return Err(SpecError::Invalid { block: None, what: "zero input channels or classes" });
        }
        if !self.stem_conv().is_valid() {
            return Err(SpecError::Invalid { block: None, what: "invalid stem conv" });
        }
        let mut channels = self.stem.out_channels;
        for (i, b) in self.blocks.iter().enumerate() {
            b.validate(i)?;
            if b.in_channels != channels {
                return Err(SpecError::ChannelMismatch {
                    block: i,
                    expected: b.in_channels,
                    found: channels,
                });
            }
            channels = b.out_channels;
        }
        Ok(())
    }

    /// Number of convolutions, the range of the `index` passed to [`crate::Backend::conv2d`].
    pub fn conv_count(&self) -> usize {
        1 + self
            .blocks
            .iter()
            .map(|b| {
                let c = b.convs();
                2 + c.conv3.is_some() as usize + c.shortcut.is_some() as usize
            })
            .sum::<usize>()
    }

    /// Calls `f(index, layer, geometry)` for every conv, numbered as the schedule
    /// ([`crate::plan::walk`]) numbers them: the stem, then per block the projection shortcut
    /// (computed first, from the block input), conv1, conv2, conv3.
    pub fn for_each_conv(&self, mut f: impl FnMut(usize, LayerName, Conv2dGeometry)) {
        f(0, LayerName::StemConv, self.stem_conv());
        let mut index = 1;
        for (block, b) in self.blocks.iter().enumerate() {
            let c = b.convs();
            let layers = [
                (BlockLayer::Shortcut, c.shortcut),
                (BlockLayer::Conv1, Some(c.conv1)),
                (BlockLayer::Conv2, Some(c.conv2)),
                (BlockLayer::Conv3, c.conv3),
            ];
            for (layer, g) in layers {
                if let Some(g) = g {
                    f(index, LayerName::Block { block, layer }, g);
                    index += 1;
                }
            }
        }
    }

    /// Calls `f` for every parameter tensor, in a fixed order, with its name and shape.
    pub fn for_each_param(&self, mut f: impl FnMut(ParamInfo)) {
        let conv = |f: &mut dyn FnMut(ParamInfo), layer: LayerName, g: Conv2dGeometry| {
            let [o, i, kh, kw] = g.weight_shape();
            f(ParamInfo { layer, tensor: "weight", dims: [o, i, kh, kw], rank: 4 });
            f(ParamInfo { layer, tensor: "bias", dims: [o, 0, 0, 0], rank: 1 });
        };
        let affine = |f: &mut dyn FnMut(ParamInfo), layer: LayerName, c: usize| {
            f(ParamInfo { layer, tensor: "scale", dims: [c, 0, 0, 0], rank: 1 });
            f(ParamInfo { layer, tensor: "shift", dims: [c, 0, 0, 0], rank: 1 });
        };
        conv(&mut f, LayerName::StemConv, self.stem_conv());
        for (block, b) in self.blocks.iter().enumerate() {
            let name = |layer| LayerName::Block { block, layer };
            if b.preact {
                affine(&mut f, name(BlockLayer::PreNorm), b.in_channels);
            }
            let c = b.convs();
            conv(&mut f, name(BlockLayer::Conv1), c.conv1);
            conv(&mut f, name(BlockLayer::Conv2), c.conv2);
            if let Some(g) = c.conv3 {
                conv(&mut f, name(BlockLayer::Conv3), g);
            }
            if let Some(g) = c.shortcut {
                conv(&mut f, name(BlockLayer::Shortcut), g);
            }
        }
        let features = self.feature_channels();
        if self.head.norm {
            affine(&mut f, LayerName::HeadNorm, features);
        }
        let classes = self.head.num_classes;
        f(ParamInfo {
            layer: LayerName::HeadFc,
            tensor: "weight",
            dims: [classes, features, 0, 0],
            rank: 2,
        });
        f(ParamInfo {
            layer: LayerName::HeadFc,
            tensor: "bias",
            dims: [classes, 0, 0, 0],
            rank: 1,
        });
    }

    /// Total number of parameters (after BN folding).
    pub fn param_count(&self) -> usize {
        let mut n = 0;
        self.for_each_param(|p| n += p.len());
        n
    }
}

/// One parameter tensor: `{layer}.{tensor}` with a shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    pub layer: LayerName,
    pub tensor: &'static str,
    dims: [usize; 4],
    rank: usize,
}

impl ParamInfo {
    pub fn shape(&self) -> &[usize] {
        &self.dims[..self.rank]
    }
    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for ParamInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.layer, self.tensor)
    }
}

/// Shape after the stem (conv and optional pool) for an input shape.
pub(crate) fn stem_output(
    spec: &NetworkSpec<'_>,
    input: Shape,
) -> Result<(Shape, Shape), SpecError> {
    let conv = spec
        .stem_conv()
        .output_shape(input)
        .ok_or(SpecError::InputTooSmall { layer: LayerName::StemConv })?;
    let pooled = if spec.stem.max_pool {
        STEM_POOL
            .output_shape(conv)
            .ok_or(SpecError::InputTooSmall { layer: LayerName::StemPool })?
    } else {
        conv
    };
    Ok((conv, pooled))
}

impl core::error::Error for SpecError {}
