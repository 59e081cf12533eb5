//! The execution schedule of a network for one input shape, and the buffer sizes it needs.
//!
//! [`walk`] is the single description of how blocks are executed: it emits [`Step`]s with the
//! buffer slot each reads and writes. [`plan()`] sizes the slots from it and [`crate::forward()`]
//! executes it, so planning and execution cannot disagree.

use crate::epilogue::Epilogue;
use crate::reference::subsample_pad_shape;
use crate::shape::{Conv2dGeometry, PoolGeometry, Shape, STEM_POOL};
use crate::spec::{
    stem_output, BlockKind, BlockLayer, LayerName, NetworkSpec, Shortcut, SpecError,
};

/// Number of interchangeable activation slots in the arena. A bottleneck with a projection
/// shortcut has four activations alive at once (input, two intermediates, shortcut).
pub const SLOTS: usize = 4;

/// Where a step reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// The caller's input tensor.
    Input,
    /// One of the [`SLOTS`] arena slots.
    Arena(usize),
    /// The pooled features `[n, c]`, in the arena after the slots.
    Features,
    /// The caller's output (logits).
    Output,
}

/// What a step computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `index` numbers convolutions in execution order, `0..spec.conv_count()`.
    Conv {
        index: usize,
        geom: Conv2dGeometry,
        epilogue: Epilogue,
    },
    MaxPool(PoolGeometry),
    /// Per-channel affine map (unfolded BN), optionally with ReLU.
    Affine {
        relu: bool,
    },
    /// Option-A shortcut.
    ZeroPad {
        stride: usize,
        pad_front: usize,
    },
    /// Mean over the top-left `kh x kw` window of each plane (the whole plane for global pooling).
    AvgPool {
        kh: usize,
        kw: usize,
    },
    Linear {
        in_features: usize,
        out_features: usize,
    },
}

/// One operation of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub layer: LayerName,
    pub op: Op,
    pub src: Slot,
    pub dst: Slot,
    pub in_shape: Shape,
    pub out_shape: Shape,
}

impl Step {
    /// Multiply-accumulates of this step for the whole batch.
    pub fn macs(&self) -> u64 {
        match self.op {
            Op::Conv { geom, .. } => {
                geom.macs(self.out_shape.h, self.out_shape.w) * self.out_shape.n as u64
            }
            Op::Linear { in_features, out_features } => {
                (in_features * out_features * self.out_shape.n) as u64
            }
            _ => 0,
        }
    }
}

/// Sizes of the buffers a forward pass needs for one input shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub input: Shape,
    /// Elements in each arena slot (the largest activation the slot ever holds).
    pub slot_lens: [usize; SLOTS],
    /// Elements of the pooled features.
    pub features_len: usize,
    /// Logits shape `[n, classes, 1, 1]`.
    pub output: Shape,
}

/// Buffers in an arena start at multiples of this many floats (64 bytes: a cache line, an
/// AVX-512 vector), so that vector accesses to an arena aligned as much never straddle lines.
pub const ALIGN_FLOATS: usize = 16;

impl Plan {
    /// Elements of `f32` scratch the caller provides to [`crate::forward::forward`].
    pub fn arena_len(&self) -> usize {
        self.slot_offset(SLOTS) + self.features_len
    }

    /// Offset of each slot in the arena (a multiple of [`ALIGN_FLOATS`]); `SLOTS` is the
    /// features buffer.
    pub fn slot_offset(&self, slot: usize) -> usize {
        self.slot_lens[..slot].iter().map(|l| l.next_multiple_of(ALIGN_FLOATS)).sum()
    }

    pub fn output_len(&self) -> usize {
        self.output.len()
    }
}

/// Validates `spec` against an input shape and sizes the buffers of a forward pass.
pub fn plan(spec: &NetworkSpec<'_>, input: Shape) -> Result<Plan, SpecError> {
    let mut slot_lens = [0usize; SLOTS];
    let mut features_len = 0;
    let mut overflow = false;
    let output = walk(spec, input, |s| {
        let Some(len) = s.out_shape.checked_len() else {
            overflow = true;
            return;
        };
        match s.dst {
            Slot::Arena(i) => slot_lens[i] = slot_lens[i].max(len),
            Slot::Features => features_len = len,
            Slot::Input | Slot::Output => {}
        }
    })?;
    if overflow || slot_lens.iter().try_fold(features_len, |a, &b| a.checked_add(b)).is_none() {
        return Err(SpecError::TooLarge);
    }
    Ok(Plan { input, slot_lens, features_len, output })
}

/// Tracks which arena slots hold live activations.
struct Slots {
    live: [bool; SLOTS],
}

impl Slots {
    fn take(&mut self) -> Slot {
        let i = self.live.iter().position(|l| !l).expect("schedule needs more than SLOTS buffers");
        self.live[i] = true;
        Slot::Arena(i)
    }
    fn release(&mut self, s: Slot) {
        if let Slot::Arena(i) = s {
            self.live[i] = false;
        }
    }
}

/// Emits the schedule of `spec` for `input`, in execution order, and returns the logits shape.
/// Validates the spec and every intermediate shape before emitting anything.
pub fn walk(
    spec: &NetworkSpec<'_>,
    input: Shape,
    mut emit: impl FnMut(&Step),
) -> Result<Shape, SpecError> {
    validate_input(spec, input)?;
    let mut slots = Slots { live: [false; SLOTS] };
    let mut conv_index = 0;
    let mut conv = |layer, geom: Conv2dGeometry, src, dst, in_shape: Shape, epilogue| -> Step {
        let out_shape = geom.output_shape(in_shape).expect("validated");
        conv_index += 1;
        Step {
            layer,
            op: Op::Conv { index: conv_index - 1, geom, epilogue },
            src,
            dst,
            in_shape,
            out_shape,
        }
    };

    let stem_epilogue = if spec.stem.relu { Epilogue::RELU } else { Epilogue::NONE };
    let mut cur = slots.take();
    let stem = conv(LayerName::StemConv, spec.stem_conv(), Slot::Input, cur, input, stem_epilogue);
    emit(&stem);
    let mut shape = stem.out_shape;
    if spec.stem.max_pool {
        let dst = slots.take();
        let out_shape = STEM_POOL.output_shape(shape).expect("validated");
        emit(&Step {
            layer: LayerName::StemPool,
            op: Op::MaxPool(STEM_POOL),
            src: cur,
            dst,
            in_shape: shape,
            out_shape,
        });
        slots.release(cur);
        cur = dst;
        shape = out_shape;
    }

    for (block, b) in spec.blocks.iter().enumerate() {
        let name = |layer| LayerName::Block { block, layer };
        let convs = b.convs();
        let x = cur;
        // The residual branch reads `branch_in`: the input, or its BN-ReLU in pre-activation nets.
        let branch_in = if b.preact {
            let t = slots.take();
            emit(&Step {
                layer: name(BlockLayer::PreNorm),
                op: Op::Affine { relu: true },
                src: x,
                dst: t,
                in_shape: shape,
                out_shape: shape,
            });
            t
        } else {
            x
        };
        // The shortcut is materialised in the block's output slot; the last conv accumulates.
        let out = match b.shortcut {
            Shortcut::Identity => x,
            Shortcut::Projection => {
                let out = slots.take();
                let g = convs.shortcut.expect("projection has a conv");
                emit(&conv(name(BlockLayer::Shortcut), g, branch_in, out, shape, Epilogue::NONE));
                out
            }
            Shortcut::ZeroPad => {
                let out = slots.take();
                emit(&Step {
                    layer: name(BlockLayer::Shortcut),
                    op: Op::ZeroPad { stride: b.stride, pad_front: b.zero_pad_front() },
                    src: x,
                    dst: out,
                    in_shape: shape,
                    out_shape: subsample_pad_shape(shape, b.stride, b.out_channels),
                });
                out
            }
        };
        let last = Epilogue { accumulate: true, relu: !b.preact };
        let t1 = slots.take();
        let s1 = conv(name(BlockLayer::Conv1), convs.conv1, branch_in, t1, shape, Epilogue::RELU);
        emit(&s1);
        if branch_in != x {
            slots.release(branch_in);
        }
        if x != out {
            slots.release(x);
        }
        let final_step = match (b.kind, convs.conv3) {
            (BlockKind::Basic, _) | (_, None) => {
                conv(name(BlockLayer::Conv2), convs.conv2, t1, out, s1.out_shape, last)
            }
            (BlockKind::Bottleneck { .. }, Some(g3)) => {
                let t2 = slots.take();
                let s2 = conv(
                    name(BlockLayer::Conv2),
                    convs.conv2,
                    t1,
                    t2,
                    s1.out_shape,
                    Epilogue::RELU,
                );
                emit(&s2);
                slots.release(t1);
                let s3 = conv(name(BlockLayer::Conv3), g3, t2, out, s2.out_shape, last);
                slots.release(t2);
                s3
            }
        };
        slots.release(t1);
        emit(&final_step);
        shape = final_step.out_shape;
        cur = out;
    }

    if spec.head.norm {
        let dst = slots.take();
        emit(&Step {
            layer: LayerName::HeadNorm,
            op: Op::Affine { relu: true },
            src: cur,
            dst,
            in_shape: shape,
            out_shape: shape,
        });
        cur = dst;
    }
    let features = Shape::new(shape.n, shape.c, 1, 1);
    let (kh, kw) = spec.head.pool.window(shape.h, shape.w).expect("validated");
    emit(&Step {
        layer: LayerName::HeadPool,
        op: Op::AvgPool { kh, kw },
        src: cur,
        dst: Slot::Features,
        in_shape: shape,
        out_shape: features,
    });
    let output = Shape::new(shape.n, spec.head.num_classes, 1, 1);
    emit(&Step {
        layer: LayerName::HeadFc,
        op: Op::Linear { in_features: shape.c, out_features: spec.head.num_classes },
        src: Slot::Features,
        dst: Slot::Output,
        in_shape: features,
        out_shape: output,
    });
    Ok(output)
}

/// Checks the spec and that every layer has a non-empty output for this input.
fn validate_input(spec: &NetworkSpec<'_>, input: Shape) -> Result<(), SpecError> {
    spec.validate()?;
    if input.c != spec.in_channels {
        return Err(SpecError::InputChannels { expected: spec.in_channels, found: input.c });
    }
    if input.n == 0 || input.h == 0 || input.w == 0 {
        return Err(SpecError::InputTooSmall { layer: LayerName::StemConv });
    }
    input.checked_len().ok_or(SpecError::TooLarge)?;
    let (_, mut shape) = stem_output(spec, input)?;
    for (block, b) in spec.blocks.iter().enumerate() {
        let c = b.convs();
        let too_small =
            |layer| SpecError::InputTooSmall { layer: LayerName::Block { block, layer } };
        let s1 = c.conv1.output_shape(shape).ok_or(too_small(BlockLayer::Conv1))?;
        let s2 = c.conv2.output_shape(s1).ok_or(too_small(BlockLayer::Conv2))?;
        let out = match c.conv3 {
            Some(g) => g.output_shape(s2).ok_or(too_small(BlockLayer::Conv3))?,
            None => s2,
        };
        let short = match b.shortcut {
            Shortcut::Identity => shape,
            Shortcut::Projection => c
                .shortcut
                .and_then(|g| g.output_shape(shape))
                .ok_or(too_small(BlockLayer::Shortcut))?,
            Shortcut::ZeroPad => subsample_pad_shape(shape, b.stride, b.out_channels),
        };
        if short != out {
            return Err(SpecError::Invalid {
                block: Some(block),
                what: "shortcut and residual shapes differ",
            });
        }
        out.checked_len().ok_or(SpecError::TooLarge)?;
        shape = out;
    }
    spec.head
        .pool
        .window(shape.h, shape.w)
        .ok_or(SpecError::HeadWindow { h: shape.h, w: shape.w })?;
    Ok(())
}

/// An arena layout from activation lifetimes, as TFLite-Micro's greedy planner builds one:
/// every buffer lives from the step that writes it to the last step that reads (or
/// accumulates into) it, and buffers whose lifetimes overlap get disjoint addresses, the
/// largest placed first at the lowest offset that fits.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug)]
pub struct LifetimePlan {
    /// Per step: the slot and offset of the buffers read and written (if in the arena).
    offsets: alloc::vec::Vec<[Option<(Slot, usize)>; 2]>,
    arena_len: usize,
    peak_live: usize,
    buffers: usize,
}

#[cfg(feature = "alloc")]
impl LifetimePlan {
    pub fn new(spec: &NetworkSpec<'_>, input: Shape) -> Result<LifetimePlan, SpecError> {
        use alloc::vec::Vec;
        let slots = plan(spec, input)?;
        struct Buffer {
            len: usize,
            first: usize,
            last: usize,
            offset: usize,
        }
        let mut buffers: Vec<Buffer> = Vec::new();
        let mut current = [usize::MAX; SLOTS + 1];
        let mut uses: Vec<[Option<(Slot, usize)>; 2]> = Vec::new();
        let slot_index = |s: Slot| match s {
            Slot::Arena(i) => Some(i),
            Slot::Features => Some(SLOTS),
            Slot::Input | Slot::Output => None,
        };
        walk(spec, input, |step| {
            let t = uses.len();
            let mut u = [None; 2];
            if let Some(i) = slot_index(step.src) {
                let b = current[i];
                buffers[b].last = t;
                u[0] = Some((step.src, b));
            }
            if let Some(i) = slot_index(step.dst) {
                let len = step.out_shape.len();
                let accumulate =
                    matches!(step.op, Op::Conv { epilogue: Epilogue { accumulate: true, .. }, .. });
                if accumulate {
                    let b = &mut buffers[current[i]];
                    b.last = t;
                    b.len = b.len.max(len);
                } else {
                    current[i] = buffers.len();
                    buffers.push(Buffer { len, first: t, last: t, offset: 0 });
                }
                u[1] = Some((step.dst, current[i]));
            }
            uses.push(u);
        })?;

        let mut order: Vec<usize> = (0..buffers.len()).collect();
        order.sort_by(|&a, &b| buffers[b].len.cmp(&buffers[a].len).then(a.cmp(&b)));
        let mut placed: Vec<usize> = Vec::new();
        let mut arena_len = 0;
        for &b in &order {
            // Whole lines, so every offset is a multiple of `ALIGN_FLOATS`.
            let (first, last) = (buffers[b].first, buffers[b].last);
            let len = buffers[b].len.next_multiple_of(ALIGN_FLOATS);
            let mut conflicts: Vec<(usize, usize)> = placed
                .iter()
                .filter(|&&p| buffers[p].first <= last && first <= buffers[p].last)
                .map(|&p| {
                    let len = buffers[p].len.next_multiple_of(ALIGN_FLOATS);
                    (buffers[p].offset, buffers[p].offset + len)
                })
                .collect();
            conflicts.sort_unstable();
            let mut offset = 0;
            for (start, end) in conflicts {
                if offset + len <= start {
                    break;
                }
                offset = offset.max(end);
            }
            buffers[b].offset = offset;
            arena_len = arena_len.max(offset + len);
            placed.push(b);
        }
        let peak_live = (0..uses.len())
            .map(|t| buffers.iter().filter(|b| b.first <= t && t <= b.last).map(|b| b.len).sum())
            .max()
            .unwrap_or(0);
        // Greedy placement is a heuristic; never do worse than one region per slot.
        let use_slots = arena_len > slots.arena_len();
        let offset = |slot: Slot, b: usize| match slot {
            Slot::Arena(i) if use_slots => slots.slot_offset(i),
            Slot::Features if use_slots => slots.slot_offset(SLOTS),
            _ => buffers[b].offset,
        };
        let offsets =
            uses.iter().map(|u| u.map(|side| side.map(|(s, b)| (s, offset(s, b))))).collect();
        let arena_len = if use_slots { slots.arena_len() } else { arena_len };
        Ok(LifetimePlan { offsets, arena_len, peak_live, buffers: buffers.len() })
    }

    /// Elements of the arena.
    pub fn arena_len(&self) -> usize {
        self.arena_len
    }

    /// The most elements alive at any one step: the lower bound for any layout.
    pub fn peak_live(&self) -> usize {
        self.peak_live
    }

    /// Number of distinct activation buffers.
    pub fn buffer_count(&self) -> usize {
        self.buffers
    }
}

#[cfg(feature = "alloc")]
impl crate::forward::ArenaLayout for LifetimePlan {
    fn arena_len(&self) -> usize {
        self.arena_len
    }

    fn offset(&self, step: usize, slot: Slot) -> usize {
        // A step's source and destination are distinct slots.
        self.offsets[step]
            .iter()
            .flatten()
            .find(|(s, _)| *s == slot)
            .map(|&(_, offset)| offset)
            .expect("the step uses this slot")
    }
}
