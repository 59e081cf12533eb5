//! The CPU backend: prepacked convolutions for the chosen instruction set and algorithm, run on
//! a rayon pool; everything else uses the core's reference ops.

use std::sync::Mutex;

use rayon::prelude::*;
use shortcut_core::aligned::AlignedVec;
use shortcut_core::arch::Isa;
use shortcut_core::conv::{ConvAlgo, Host, OutPtr, PackedConv};
use shortcut_core::forward::Backend;
use shortcut_core::layout::ActLayout;
use shortcut_core::ops;
use shortcut_core::plan::{walk, Op, Slot};
use shortcut_core::shape::PoolGeometry;
use shortcut_core::{Conv2dGeometry, ConvWeights, Epilogue, NetworkSpec, Shape};

use crate::team::Team;

/// How a model runs. Unset fields come from `SHORTCUT_ISA` / `SHORTCUT_CONV` /
/// `SHORTCUT_LAYOUT` / `SHORTCUT_THREADS` when set, else from the machine (best ISA, per-layer
/// algorithm choice, the layout measured fastest for the ISA, one thread per physical core).
/// The per-layer choice also depends on the host ([`Host::detect`]; `SHORTCUT_WEIGHT_STREAM=
/// fast|slow` overrides it, to compare the two choices on one machine; `auto` detects).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub isa: Option<Isa>,
    /// Forces one convolution algorithm where it applies; other layers use an exact algorithm
    /// (direct/GEMM in NCHW, GemmT between blocked activations). Forcing one that does not run
    /// blocked (anything but GemmT and Winograd `F(2,3)`/`F(4,3)`/`F(6,3)`) keeps NCHW.
    pub conv: Option<ConvAlgo>,
    /// Forces the layout of the activations between layers, where the network allows it
    /// (`NCHW16c` needs channel counts that are multiples of 16; see [`Engine::layout`]).
    pub layout: Option<ActLayout>,
    pub threads: Option<usize>,
}

/// A run option that cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("unknown instruction set `{0}` (scalar, avx2, avx512, neon)")]
    UnknownIsa(String),
    #[error("instruction set `{0}` is not available on this CPU")]
    UnavailableIsa(Isa),
    #[error(
        "unknown convolution algorithm `{0}` (direct, gemm, gemm-t, winograd2, winograd4, winograd6, winograd2-t, winograd4-t, auto)"
    )]
    UnknownConv(String),
    #[error("unknown activation layout `{0}` (nchw, nchw16c, auto)")]
    UnknownLayout(String),
    #[error("bad thread count `{0}`")]
    Threads(String),
    #[error("bad SHORTCUT_GRAIN_MACS `{0}`")]
    Grain(String),
    #[error("bad SHORTCUT_WEIGHT_STREAM `{0}` (fast, slow, auto)")]
    WeightStream(String),
}

/// The choices in force after defaults and the environment are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub isa: Isa,
    pub conv: Option<ConvAlgo>,
    /// The layout asked for, or `None` for the default ([`Engine::layout`] is the one used).
    pub layout: Option<ActLayout>,
    pub threads: usize,
    /// Multiply-accumulates below which a layer is not split further between threads
    /// (`SHORTCUT_GRAIN_MACS`, a tuning knob for measuring the default).
    pub grain_macs: u64,
    /// The host, as far as it changes the per-layer choice.
    pub host: Host,
}

impl RunOptions {
    /// Parses an ISA name for `--isa` / `SHORTCUT_ISA`.
    pub fn parse_isa(s: &str) -> Result<Isa, OptionsError> {
        Isa::from_name(s).ok_or_else(|| OptionsError::UnknownIsa(s.to_string()))
    }

    /// Parses `--conv` / `SHORTCUT_CONV`; `auto` means no forcing.
    pub fn parse_conv(s: &str) -> Result<Option<ConvAlgo>, OptionsError> {
        if s == "auto" {
            return Ok(None);
        }
        ConvAlgo::from_name(s).map(Some).ok_or_else(|| OptionsError::UnknownConv(s.to_string()))
    }

    /// Parses `--layout` / `SHORTCUT_LAYOUT`; `auto` means no forcing.
    pub fn parse_layout(s: &str) -> Result<Option<ActLayout>, OptionsError> {
        if s == "auto" {
            return Ok(None);
        }
        ActLayout::from_name(s).map(Some).ok_or_else(|| OptionsError::UnknownLayout(s.to_string()))
    }

    /// Fills unset fields from the environment and the machine, and checks the ISA is usable.
    pub fn resolve(&self) -> Result<Resolved, OptionsError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let isa = match (self.isa, env("SHORTCUT_ISA")) {
            (Some(i), _) => i,
            (None, Some(s)) => Self::parse_isa(&s)?,
            (None, None) => Isa::best_available(),
        };
        if !isa.is_available() {
            return Err(OptionsError::UnavailableIsa(isa));
        }
        let conv = match (self.conv, env("SHORTCUT_CONV")) {
            (Some(c), _) => Some(c),
            (None, Some(s)) => Self::parse_conv(&s)?,
            (None, None) => None,
        };
        let layout = match (self.layout, env("SHORTCUT_LAYOUT")) {
            (Some(l), _) => Some(l),
            (None, Some(s)) => Self::parse_layout(&s)?,
            (None, None) => None,
        };
        let threads = match (self.threads, env("SHORTCUT_THREADS")) {
            (Some(t), _) => t,
            (None, Some(s)) => s.parse().map_err(|_| OptionsError::Threads(s))?,
            (None, None) => num_cpus::get_physical(),
        };
        if threads == 0 {
            return Err(OptionsError::Threads("0".into()));
        }
        let grain_macs = match env("SHORTCUT_GRAIN_MACS") {
            Some(s) => s.parse().map_err(|_| OptionsError::Grain(s))?,
            None => GRAIN_MACS,
        };
        let host = match env("SHORTCUT_WEIGHT_STREAM") {
            Some(s) => Host::from_name(&s).ok_or(OptionsError::WeightStream(s))?,
            None => Host::detect(),
        };
        Ok(Resolved { isa, conv, layout, threads, grain_macs, host })
    }
}

/// Below this many multiply-accumulates per thread a conv runs on fewer threads: handing work
/// to another core and waiting for it costs microseconds. Measured on the 2-core dev machine
/// (`SHORTCUT_GRAIN_MACS=... shortcut bench MODEL --threads 2`, median of 200 runs), CIFAR
/// ResNet-8 at 32x32, batch 1: 1 thread 0.314 ms; 2 threads with grain 0 0.388 ms, 256K
/// 0.330 ms, 1M 0.344 ms, 4M 0.316 ms. Batch 8 and ImageNet-size layers (all above 50M MACs
/// in ResNet-50 at 224) are unaffected by the grain and scale 1.8-2.1x on 2 threads.
const GRAIN_MACS: u64 = 1 << 22;

/// Prepacked convolutions and the threads that run them.
pub struct Engine {
    resolved: Resolved,
    /// The layout of every activation between layers except the network's input (NCHW, read
    /// only by the first conv).
    layout: ActLayout,
    convs: Vec<PackedConv>,
    team: Option<Team>,
    /// One scratch buffer per concurrent task range, grown on first use for an input shape.
    scratch: Vec<Mutex<AlignedVec>>,
}

impl Engine {
    /// Packs every conv of `spec`; `conv_weights(i)` gives conv `i`'s geometry and weights.
    /// Unforced algorithms are chosen for the layer's input at `natural_input` (the size the
    /// model is served at; Winograd's best tile depends on the feature-map size).
    pub fn new<'w>(
        resolved: Resolved,
        spec: &NetworkSpec<'_>,
        natural_input: Option<Shape>,
        conv_weights: impl Fn(usize) -> (Conv2dGeometry, ConvWeights<'w>),
    ) -> Engine {
        let mut in_shapes = vec![None; spec.conv_count()];
        // Which convs read the network's input, and whether every other activation can be
        // blocked.
        let mut reads_input = vec![false; spec.conv_count()];
        let mut blockable = natural_input.is_some();
        if let Some(input) = natural_input {
            let walked = walk(spec, input, |s| {
                let from_input = s.src == Slot::Input;
                match s.op {
                    Op::Conv { index, geom, .. } => {
                        in_shapes[index] = Some(s.in_shape);
                        reads_input[index] = from_input;
                        let input = if from_input { ActLayout::Nchw } else { ActLayout::Nchw16c };
                        let layouts = (input, ActLayout::Nchw16c);
                        blockable &= PackedConv::supports_layouts(ConvAlgo::GemmT, &geom, layouts);
                    }
                    Op::Linear { .. } => {}
                    _ => {
                        blockable &= !from_input
                            && ActLayout::Nchw16c.fits(s.in_shape.c)
                            && ActLayout::Nchw16c.fits(s.out_shape.c)
                    }
                }
            });
            blockable &= walked.is_ok();
        }
        let layout = Engine::choose_layout(resolved, blockable);
        let convs = (0..spec.conv_count())
            .map(|i| {
                let (geom, w) = conv_weights(i);
                if layout == ActLayout::Nchw16c {
                    let input = if reads_input[i] { ActLayout::Nchw } else { ActLayout::Nchw16c };
                    let layouts = (input, ActLayout::Nchw16c);
                    // A forced Winograd where it applies, else the exact GemmT.
                    let algo = match (resolved.conv, in_shapes[i]) {
                        (Some(a), _) if PackedConv::supports_layouts(a, &geom, layouts) => a,
                        (Some(_), _) | (None, None) => ConvAlgo::GemmT,
                        (None, Some(shape)) => {
                            let host = resolved.host;
                            PackedConv::choose_for_host(resolved.isa, host, &geom, shape, layouts)
                        }
                    };
                    return PackedConv::try_new_with_layouts(
                        resolved.isa,
                        Some(algo),
                        &geom,
                        w.weight,
                        w.bias,
                        layouts,
                    )
                    .expect("checked by supports_layouts");
                }
                // A forced algorithm applies where it can (Winograd: 3x3/1 only); other layers
                // use the exact (non-Winograd) path, so forcing `direct`, `gemm` or `gemm-t`
                // gives exact convolutions.
                let algo = match (resolved.conv, in_shapes[i]) {
                    (Some(a), _) if PackedConv::supports(a, &geom) => Some(a),
                    (Some(_), _) => match PackedConv::choose(resolved.isa, &geom) {
                        ConvAlgo::Winograd2 => Some(ConvAlgo::Gemm),
                        exact => Some(exact),
                    },
                    (None, Some(shape)) => {
                        Some(PackedConv::choose_for_input(resolved.isa, &geom, shape))
                    }
                    (None, None) => None,
                };
                PackedConv::new(resolved.isa, algo, &geom, w.weight, w.bias)
            })
            .collect();
        let team = (resolved.threads > 1).then(|| Team::new(resolved.threads));
        let scratch = (0..resolved.threads).map(|_| Mutex::new(AlignedVec::default())).collect();
        Engine { resolved, layout, convs, team, scratch }
    }

    /// The activation layout for a network that can (`blockable`) or cannot run blocked: the
    /// one asked for where possible, else `NCHW16c` unless an algorithm that does not run
    /// blocked is forced (only GemmT and Winograd `F(2,3)`, `F(4,3)`, `F(6,3)` do) or the ISA is
    /// NEON, else NCHW.
    ///
    /// Measured, one thread (`shortcut bench ARCH --threads 1 --isa I --layout L`): AVX-512
    /// ResNet-50 56-60 ms against 70-72 in NCHW; AVX2 ResNet-50 91-93 against 98; scalar
    /// ResNet-18 73 against 116. NEON is tested under qemu but was never timed on hardware, so
    /// it keeps NCHW until it is.
    fn choose_layout(resolved: Resolved, blockable: bool) -> ActLayout {
        let gemm_t = matches!(
            resolved.conv,
            None | Some(
                ConvAlgo::GemmT | ConvAlgo::Winograd2 | ConvAlgo::Winograd4 | ConvAlgo::Winograd6
            )
        );
        match resolved.layout {
            Some(ActLayout::Nchw16c) if blockable && gemm_t => ActLayout::Nchw16c,
            Some(_) => ActLayout::Nchw,
            None if blockable && gemm_t && resolved.isa != Isa::Neon => ActLayout::Nchw16c,
            None => ActLayout::Nchw,
        }
    }

    /// The layout of the activations between layers (the network's input and output are
    /// always NCHW and `[n, classes]`).
    pub fn layout(&self) -> ActLayout {
        self.layout
    }

    /// Runs `f` (a forward pass) where its parallel layers stay inside the engine's pool, so
    /// that steady-state passes allocate nothing.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.team {
            Some(team) => team.run(f),
            None => f(),
        }
    }

    /// Bytes of prepacked convolution weights held by the engine.
    pub fn packed_bytes(&self) -> usize {
        self.convs.iter().map(|c| c.packed_len() * 4).sum()
    }

    pub fn resolved(&self) -> Resolved {
        self.resolved
    }

    /// The algorithm chosen for conv `index`.
    pub fn conv_algo(&self, index: usize) -> ConvAlgo {
        self.convs[index].algo()
    }

    /// Grows the scratch buffers for `input` so that forward passes of this shape allocate nothing.
    pub fn prepare(&self, spec: &NetworkSpec<'_>, input: Shape) {
        let mut need = 0;
        let _ = walk(spec, input, |s| {
            if let Op::Conv { index, .. } = s.op {
                need = need.max(self.convs[index].scratch_len(s.in_shape));
            }
        });
        for s in &self.scratch {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            if s.len() < need {
                s.resize(need);
            }
        }
    }
}

/// The engine's ops work as a set: in the blocked layout every op reads and writes `NCHW16c`
/// activations, so a backend that takes some ops from the engine and others elsewhere must use
/// the NCHW layout (`RunOptions::layout`).
impl Backend for Engine {
    fn max_pool2d(&self, geom: &PoolGeometry, input: &[f32], in_shape: Shape, output: &mut [f32]) {
        let out_shape = geom.output_shape(in_shape).expect("planned");
        // Planes of one channel (NCHW) or one block of 16 (NCHW16c), split between threads.
        let per_plane = if self.layout == ActLayout::Nchw16c { 16 } else { 1 };
        let planes = in_shape.n * in_shape.c / per_plane;
        let (plane_in, plane_out) =
            (in_shape.plane_len() * per_plane, out_shape.plane_len() * per_plane);
        let parts = self.elementwise_parts(planes, plane_in);
        let out = OutPtr::new(output);
        self.parallel(parts, |part| {
            let (p0, p1) = (part * planes / parts, (part + 1) * planes / parts);
            let shape = Shape::new(1, (p1 - p0) * per_plane, in_shape.h, in_shape.w);
            let src = &input[p0 * plane_in..p1 * plane_in];
            // SAFETY: parts cover disjoint plane ranges, so the sub-slices do not overlap, and
            // `output` is borrowed exclusively by this call.
            let dst = unsafe { out.slice_mut(p0 * plane_out..p1 * plane_out) };
            match self.layout {
                ActLayout::Nchw => ops::max_pool2d(geom, src, shape, dst),
                ActLayout::Nchw16c => ops::nchw16c::max_pool2d(geom, src, shape, dst),
            }
        });
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
        match self.layout {
            ActLayout::Nchw => ops::affine(scale, shift, relu, input, shape, output),
            ActLayout::Nchw16c => ops::nchw16c::affine(scale, shift, relu, input, shape, output),
        }
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
        let (x, s, c, front, y) = (input, in_shape, out_channels, pad_front, output);
        match self.layout {
            ActLayout::Nchw => {
                shortcut_core::reference::subsample_pad_channels(x, s, stride, c, front, y)
            }
            ActLayout::Nchw16c => ops::nchw16c::subsample_pad_channels(x, s, stride, c, front, y),
        }
    }

    fn avg_pool(&self, input: &[f32], in_shape: Shape, kh: usize, kw: usize, output: &mut [f32]) {
        match self.layout {
            ActLayout::Nchw => ops::avg_pool_window(input, in_shape, kh, kw, output),
            ActLayout::Nchw16c => ops::nchw16c::avg_pool_window(input, in_shape, kh, kw, output),
        }
    }

    fn linear(
        &self,
        i: usize,
        o: usize,
        input: &[f32],
        weight: &[f32],
        bias: &[f32],
        output: &mut [f32],
    ) {
        // Output features split between threads: each part reads its own rows of the weights
        // (the layer is a matrix-vector product for one image, bound by reading them).
        let parts = self.elementwise_parts(o, i);
        if parts == 1 || input.len() != i {
            return ops::linear(self.resolved.isa, i, o, input, weight, bias, output);
        }
        // The checks of `ops::linear`, made once for the whole layer before it is split.
        let lengths =
            Some(weight.len()) == i.checked_mul(o) && bias.len() == o && output.len() == o;
        assert!(lengths, "linear: lengths");
        let out = OutPtr::new(output);
        self.parallel(parts, |part| {
            let (o0, o1) = (part * o / parts, (part + 1) * o / parts);
            // SAFETY: parts cover disjoint output ranges of this one call, and `output` is
            // borrowed exclusively by it.
            let dst = unsafe { out.slice_mut(o0..o1) };
            let (w, b) = (&weight[o0 * i..o1 * i], &bias[o0..o1]);
            ops::linear(self.resolved.isa, i, o1 - o0, input, w, b, dst);
        });
    }

    fn conv2d(
        &self,
        index: usize,
        geom: &Conv2dGeometry,
        _weights: ConvWeights<'_>,
        input: &[f32],
        in_shape: Shape,
        output: &mut [f32],
        epilogue: Epilogue,
    ) {
        let conv = &self.convs[index];
        let tasks = conv.task_count(in_shape);
        let out_shape = geom.output_shape(in_shape).expect("planned");
        let macs = geom.macs(out_shape.h, out_shape.w) * out_shape.n as u64;
        let by_grain = (macs / self.resolved.grain_macs.max(1)).max(1) as usize;
        let parts = self.resolved.threads.min(tasks).min(by_grain).max(1);
        let need = conv.scratch_len(in_shape);
        let out = OutPtr::new(output);
        let run = |part: usize| {
            let range = part * tasks / parts..(part + 1) * tasks / parts;
            let mut scratch = self.scratch[part].lock().unwrap_or_else(|e| e.into_inner());
            if scratch.len() < need {
                scratch.resize(need);
            }
            // SAFETY: the parts cover disjoint task ranges of this one call, and `output` is
            // borrowed exclusively by this call for its whole duration.
            unsafe { conv.run_tasks(range, input, in_shape, out, epilogue, &mut scratch[..need]) };
        };
        self.parallel(parts, run);
    }
}

impl Engine {
    /// Runs `f(0..parts)` on the team (serially when one part or no team).
    fn parallel(&self, parts: usize, f: impl Fn(usize) + Sync + Send) {
        match &self.team {
            Some(team) if parts > 1 && team.is_inside() => (0..parts).into_par_iter().for_each(f),
            Some(team) if parts > 1 => {
                team.pool().install(|| (0..parts).into_par_iter().for_each(f))
            }
            _ => (0..parts).for_each(f),
        }
    }

    /// Parts to split `elements` of cheap element-wise work into (at least 64K elements each).
    fn elementwise_parts(&self, planes: usize, plane_len: usize) -> usize {
        (planes * plane_len / (1 << 16)).clamp(1, self.resolved.threads.min(planes.max(1)))
    }
}
