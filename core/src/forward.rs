//! The forward pass: executes the schedule of [`crate::plan::walk`] over caller-provided buffers.

use crate::epilogue::Epilogue;
use crate::plan::{plan, walk, Op, Plan, Slot, SLOTS};
use crate::reference;
use crate::shape::{Conv2dGeometry, PoolGeometry, Shape};
use crate::spec::{NetworkSpec, SpecError};
use crate::weights::{ConvWeights, NetworkWeights, WeightsError};

/// The ops a forward pass needs. Every method defaults to the reference implementation, so a
/// backend overrides only what it accelerates (the runtime's SIMD and threaded convolutions).
pub trait Backend {
    /// `index` is the conv's position in execution order (`0..spec.conv_count()`), so a backend
    /// can keep per-layer state such as prepacked weights or the chosen algorithm.
    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        &self,
        index: usize,
        geom: &Conv2dGeometry,
        weights: ConvWeights<'_>,
        input: &[f32],
        in_shape: Shape,
        output: &mut [f32],
        epilogue: Epilogue,
    ) {
        let _ = index;
        reference::conv2d(geom, input, in_shape, weights.weight, weights.bias, output, epilogue);
    }

    fn max_pool2d(&self, geom: &PoolGeometry, input: &[f32], in_shape: Shape, output: &mut [f32]) {
        reference::max_pool2d(geom, input, in_shape, output);
    }

    fn affine(
        &self,
        scale: &[f32],
        shift: &[f32],
        relu: bool,
        input: &[f32],
        shape: Shape,
        output: &mut [f32],
    ) {
        reference::affine(scale, shift, relu, input, shape, output);
    }

    fn subsample_pad_channels(
        &self,
        input: &[f32],
        in_shape: Shape,
        stride: usize,
        out_channels: usize,
        pad_front: usize,
        output: &mut [f32],
    ) {
        reference::subsample_pad_channels(input, in_shape, stride, out_channels, pad_front, output);
    }

    /// Mean over the top-left `kh x kw` window of each plane, `[n, c, h, w] -> [n, c]`.
    fn avg_pool(&self, input: &[f32], in_shape: Shape, kh: usize, kw: usize, output: &mut [f32]) {
        reference::avg_pool_window(input, in_shape, kh, kw, output);
    }

    fn linear(
        &self,
        in_features: usize,
        out_features: usize,
        input: &[f32],
        weight: &[f32],
        bias: &[f32],
        output: &mut [f32],
    ) {
        reference::linear(in_features, out_features, input, weight, bias, output);
    }
}

/// Runs every op with its reference implementation: the oracle for whole networks.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReferenceBackend;

impl Backend for ReferenceBackend {}

/// Why a forward pass could not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardError {
    Spec(SpecError),
    Weights(WeightsError),
    /// A caller buffer has the wrong length.
    Buffer {
        what: &'static str,
        expected: usize,
        found: usize,
    },
}

impl core::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ForwardError::Spec(e) => e.fmt(f),
            ForwardError::Weights(e) => e.fmt(f),
            ForwardError::Buffer { what, expected, found } => {
                write!(f, "{what} buffer has {found} elements, expected {expected}")
            }
        }
    }
}

impl From<SpecError> for ForwardError {
    fn from(e: SpecError) -> Self {
        ForwardError::Spec(e)
    }
}

impl From<WeightsError> for ForwardError {
    fn from(e: WeightsError) -> Self {
        ForwardError::Weights(e)
    }
}

/// Where each step's activations live in the arena.
pub trait ArenaLayout {
    /// Arena elements needed.
    fn arena_len(&self) -> usize;
    /// Offset of the buffer that step `step` (in schedule order) reads or writes through `slot`
    /// (an arena slot or the features). Buffers a step reads and writes never overlap.
    fn offset(&self, step: usize, slot: Slot) -> usize;
}

/// The fixed layout: every slot has its own region, sized by [`plan`]. Needs no allocation.
impl ArenaLayout for Plan {
    fn arena_len(&self) -> usize {
        Plan::arena_len(self)
    }

    fn offset(&self, _step: usize, slot: Slot) -> usize {
        match slot {
            Slot::Arena(i) => self.slot_offset(i),
            Slot::Features => self.slot_offset(SLOTS),
            Slot::Input | Slot::Output => unreachable!("not in the arena"),
        }
    }
}

/// Runs `spec` on `input` (NCHW, shape `in_shape`) and writes logits `[n, classes]` to `output`.
/// `arena` must hold at least [`Plan::arena_len`] elements; nothing is allocated.
pub fn forward<B: Backend + ?Sized>(
    backend: &B,
    spec: &NetworkSpec<'_>,
    weights: &NetworkWeights<'_>,
    input: &[f32],
    in_shape: Shape,
    arena: &mut [f32],
    output: &mut [f32],
) -> Result<Plan, ForwardError> {
    let p = plan(spec, in_shape)?;
    forward_with_layout(backend, spec, weights, input, in_shape, &p, arena, output)?;
    Ok(p)
}

/// [`forward`] with activations placed by `layout` (e.g. a lifetime-based plan).
#[allow(clippy::too_many_arguments)]
pub fn forward_with_layout<B: Backend + ?Sized, L: ArenaLayout + ?Sized>(
    backend: &B,
    spec: &NetworkSpec<'_>,
    weights: &NetworkWeights<'_>,
    input: &[f32],
    in_shape: Shape,
    layout: &L,
    arena: &mut [f32],
    output: &mut [f32],
) -> Result<(), ForwardError> {
    let p = plan(spec, in_shape)?;
    weights.check(spec)?;
    let check = |what, expected: usize, found: usize, exact: bool| {
        if found < expected || (exact && found != expected) {
            Err(ForwardError::Buffer { what, expected, found })
        } else {
            Ok(())
        }
    };
    check("input", in_shape.len(), input.len(), true)?;
    check("output", p.output_len(), output.len(), true)?;
    check("arena", layout.arena_len(), arena.len(), false)?;

    let mut t = 0;
    walk(spec, in_shape, |step| {
        let region = |slot, len| {
            let start = layout.offset(t, slot);
            start..start + len
        };
        let (in_len, out_len) = (step.in_shape.len(), step.out_shape.len());
        let (src, dst): (&[f32], &mut [f32]) = match (step.src, step.dst) {
            (Slot::Input, d) => (input, &mut arena[region(d, out_len)]),
            (s, Slot::Output) => (&arena[region(s, in_len)], &mut *output),
            (s, d) => disjoint(arena, region(s, in_len), region(d, out_len)),
        };
        t += 1;
        let src = &src[..in_len];
        let dst = &mut dst[..out_len];
        let param = |tensor| weights.get(step.layer, tensor).expect("checked");
        match step.op {
            Op::Conv { index, geom, epilogue } => {
                let w = ConvWeights { weight: param("weight"), bias: param("bias") };
                backend.conv2d(index, &geom, w, src, step.in_shape, dst, epilogue);
            }
            Op::MaxPool(g) => backend.max_pool2d(&g, src, step.in_shape, dst),
            Op::Affine { relu } => {
                backend.affine(param("scale"), param("shift"), relu, src, step.in_shape, dst)
            }
            Op::ZeroPad { stride, pad_front } => backend.subsample_pad_channels(
                src,
                step.in_shape,
                stride,
                step.out_shape.c,
                pad_front,
                dst,
            ),
            Op::AvgPool { kh, kw } => backend.avg_pool(src, step.in_shape, kh, kw, dst),
            Op::Linear { in_features, out_features } => {
                backend.linear(in_features, out_features, src, param("weight"), param("bias"), dst)
            }
        }
    })?;
    Ok(())
}

/// Borrows two non-overlapping ranges of the arena, one shared and one exclusive.
fn disjoint(
    arena: &mut [f32],
    src: core::ops::Range<usize>,
    dst: core::ops::Range<usize>,
) -> (&[f32], &mut [f32]) {
    assert!(src.end <= dst.start || dst.end <= src.start, "arena layout overlaps a step's buffers");
    if src.start < dst.start {
        let (low, high) = arena.split_at_mut(dst.start);
        (&low[src], &mut high[..dst.len()])
    } else {
        let (low, high) = arena.split_at_mut(src.start);
        (&high[..src.len()], &mut low[dst])
    }
}

impl core::error::Error for ForwardError {}
