//! Fast `f32` 2-D convolution: weights packed once, then a GEMM with the epilogue fused into
//! the micro-kernel's store.
//!
//! With NCHW activations, for one image and group the convolution is
//! `out[co, p] = sum_k W[co, k] * B[k, p]` with `p` the output pixels: each output channel's
//! pixels are one contiguous row of `C`, and the epilogue (per-row bias, optional accumulate
//! into the old output, ReLU) is applied where the micro-kernel stores. With channel-blocked
//! activations (`NCHW16c`, [`crate::layout`], [`PackedConv::try_new_with_layouts`]) the
//! pixel-rows algorithms read and write tiles of 16-channel vectors in place (`conv/blocked.rs`:
//! [`ConvAlgo::GemmT`] and Winograd).
//!
//! - `A` (weights) is packed at [`PackedConv::new`] into `MR`-row panels, k-major, per group.
//! - `B` is packed per task into `NR`-column panels by an implicit im2col that writes the panel
//!   layout directly and supplies the zero padding ([`ConvAlgo::Gemm`]), or read in place from
//!   the input rows for pointwise convolutions ([`ConvAlgo::Direct`]).
//! - Other convolutions can skip the GEMM: [`ConvAlgo::Direct`] runs a direct kernel over a
//!   zero-padded copy of the input rows (split into phases for a stride), vectorised along
//!   output rows, 4 output channels at a time, which wins when groups have few channels
//!   (ResNeXt, the 3-channel stem).
//! - Winograd `F(m, 3)` ([`ConvAlgo::Winograd2`], `4`, `6`) transforms input tiles straight into
//!   packed panels, runs one GEMM per transform position through the same micro-kernel, and
//!   applies the epilogue in the output transform.
//! - The transposed algorithms ([`ConvAlgo::GemmT`], [`ConvAlgo::Winograd2T`], `4T`) swap the
//!   GEMM's operands: pixels (or tiles) are the micro-kernel's rows and output channels its
//!   columns ([`Kernels::gemm_t`]), so small images fill its tiles and each weight is read once
//!   per job; the epilogue is applied while the sums are transposed into NCHW.
//!
//! Work is split into independent tasks (image x group x block of output columns x block of
//! output channels) that write disjoint parts of the output, so a caller can spread them over
//! threads with [`PackedConv::run_tasks`]; one call needs [`PackedConv::scratch_len`] floats of
//! scratch whatever its task range, and nothing is allocated while running.
//!
//! Accuracy against an `f64` reference on ResNet-like 3x3 layers (inputs in `[0, 1)`,
//! Kaiming-scaled weights; `max |error| / max |output|`, see `tests/kernels_conv.rs`):
//! GEMM `3e-7 .. 5e-7`, direct `1e-6 .. 2e-6` (one accumulator per output over the whole
//! reduction), `F(2,3)` `3e-7 .. 5e-7`, `F(4,3)` `3e-6 .. 6e-6`, `F(6,3)` `5e-6 .. 8e-6`; the
//! transposed variants form the same products and are held to their twins' tolerances.
//!
//! # Why our own GEMM
//! The issue said to start from `matrixmultiply` and keep whichever wins. Timed beside our
//! kernels by `cargo bench -p shortcut-core --bench conv_table -- ISA 1x1_` (pointwise layers,
//! `sgemm` over the NCHW planes in place plus a bias/ReLU pass; single thread, GFLOP/s;
//! `matrixmultiply` 0.3.11 has AVX2+FMA kernels but none for AVX-512): ours 106-161 with
//! AVX-512 and 68-97 with AVX2 against its 66-89 on the five ResNet-50 1x1 shapes (e.g.
//! 1x1 1024->256 at 14x14: 145 / 97 vs 89; 2048->512 at 7x7: 128 / 85 vs 66), so it is
//! only a dev-dependency of that bench.
//!
//! # Choosing the algorithm
//! [`PackedConv::choose`] (geometry only, what [`PackedConv::new`] uses when no algorithm is
//! forced) and [`PackedConv::choose_for_input`] (knowing the image size, which decides the
//! Winograd tile) state the rules and the measurements behind them.
#![cfg(feature = "alloc")]

mod blocked;
mod direct;
mod gemm;
mod gemm_t;
mod winograd;

use alloc::vec::Vec;
use core::marker::PhantomData;
use core::ops::Range;

use crate::aligned::AlignedVec;
use crate::arch::direct::CO;
use crate::arch::{self, GemmKernel, Isa, Kernels};
use crate::epilogue::Epilogue;
use crate::layout::ActLayout;
use crate::shape::{Conv2dGeometry, Shape};

/// How a [`PackedConv`] computes the convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvAlgo {
    /// Convolution without an im2col copy. Pointwise (`1x1`, stride 1, no padding): the GEMM
    /// micro-kernel streams the NCHW input rows in place (only a partial last column panel is
    /// packed). Other kernels: a direct convolution over a zero-padded copy of the input,
    /// vectorised along output rows, 4 output channels per pass (the `arch::direct` kernel;
    /// strides through phase-split rows, see `conv/direct.rs`); it wins where groups have few
    /// channels (ResNeXt, the stem). Applies to every geometry.
    Direct,
    /// GEMM over an implicit im2col, packed per task into the micro-kernel's panel layout.
    /// Applies to every geometry.
    Gemm,
    /// GEMM over the same implicit im2col with the operands swapped: output pixels are the
    /// micro-kernel's rows and channels its columns ([`Kernels::gemm_t`]), the epilogue applied
    /// while the tile is transposed into NCHW; into channel-blocked output whole tiles are
    /// written in place with the epilogue fused ([`Kernels::gemm_tb`], [`Kernels::gemm_b`]).
    /// For small images, where it fills tiles that [`ConvAlgo::Gemm`] leaves partly empty and
    /// reads each weight once per job, and for every layer between blocked activations (but
    /// Winograd's). Applies to every geometry.
    GemmT,
    /// Winograd `F(2x2, 3x3)`; `3x3`, stride 1, padding 1.
    Winograd2,
    /// Winograd `F(4x4, 3x3)`; `3x3`, stride 1, padding 1.
    Winograd4,
    /// Winograd `F(6x6, 3x3)`; `3x3`, stride 1, padding 1.
    Winograd6,
    /// [`ConvAlgo::Winograd2`] with each transform position's GEMM transposed as in
    /// [`ConvAlgo::GemmT`] (tiles as the micro-kernel's rows, channels as its columns), and the
    /// output transform vectorised across channels: for small images, whose few tiles leave
    /// the usual GEMM's column panels part empty while the transformed weights stream past.
    Winograd2T,
    /// [`ConvAlgo::Winograd4`], transposed as [`ConvAlgo::Winograd2T`].
    Winograd4T,
}

impl ConvAlgo {
    pub const ALL: [ConvAlgo; 8] = [
        ConvAlgo::Direct,
        ConvAlgo::Gemm,
        ConvAlgo::GemmT,
        ConvAlgo::Winograd2,
        ConvAlgo::Winograd4,
        ConvAlgo::Winograd6,
        ConvAlgo::Winograd2T,
        ConvAlgo::Winograd4T,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConvAlgo::Direct => "direct",
            ConvAlgo::Gemm => "gemm",
            ConvAlgo::GemmT => "gemm-t",
            ConvAlgo::Winograd2 => "winograd2",
            ConvAlgo::Winograd4 => "winograd4",
            ConvAlgo::Winograd6 => "winograd6",
            ConvAlgo::Winograd2T => "winograd2-t",
            ConvAlgo::Winograd4T => "winograd4-t",
        }
    }

    pub fn from_name(s: &str) -> Option<ConvAlgo> {
        ConvAlgo::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Output tile size `m` of a Winograd algorithm.
    fn winograd_m(self) -> Option<usize> {
        match self {
            ConvAlgo::Winograd2 | ConvAlgo::Winograd2T => Some(2),
            ConvAlgo::Winograd4 | ConvAlgo::Winograd4T => Some(4),
            ConvAlgo::Winograd6 => Some(6),
            ConvAlgo::Direct | ConvAlgo::Gemm | ConvAlgo::GemmT => None,
        }
    }

    /// Whether the GEMM runs transposed: output pixels or tiles as the micro-kernel's rows
    /// ([`Kernels::gemm_t`]).
    fn transposed(self) -> bool {
        matches!(self, ConvAlgo::GemmT | ConvAlgo::Winograd2T | ConvAlgo::Winograd4T)
    }
}

impl core::fmt::Display for ConvAlgo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// The output buffer of [`PackedConv::run_tasks`], shareable between threads.
///
/// It is a raw pointer and length borrowed from a `&mut [f32]` for `'a`; the tasks of a
/// convolution write disjoint elements, which is what makes concurrent use sound (see
/// [`PackedConv::run_tasks`]).
#[derive(Clone, Copy, Debug)]
pub struct OutPtr<'a> {
    ptr: *mut f32,
    len: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: `OutPtr` is only written through `PackedConv::run_tasks`, whose contract requires
// concurrent callers to run disjoint task ranges; tasks touch disjoint output elements.
unsafe impl Send for OutPtr<'_> {}
// SAFETY: as for `Send`.
unsafe impl Sync for OutPtr<'_> {}

impl<'a> OutPtr<'a> {
    pub fn new(out: &'a mut [f32]) -> OutPtr<'a> {
        OutPtr { ptr: out.as_mut_ptr(), len: out.len(), _borrow: PhantomData }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements `range` as a mutable slice, for splitting an output between threads.
    ///
    /// # Safety
    /// While the returned slice lives, no other reference to those elements may exist (for
    /// example from another part's `slice_mut` of an overlapping range).
    pub unsafe fn slice_mut(&self, range: core::ops::Range<usize>) -> &'a mut [f32] {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "OutPtr::slice_mut out of bounds"
        );
        // SAFETY: the range is in bounds of the borrowed slice (checked above) and exclusive by
        // the caller's contract.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
    }
}

/// A convolution with weights prepacked for one ISA and algorithm.
#[derive(Clone, Debug)]
pub struct PackedConv {
    geom: Conv2dGeometry,
    algo: ConvAlgo,
    kernels: Kernels,
    /// Output channels per group, rounded up to a whole panel ([`PackedConv::panel_rows`]).
    m_pad: usize,
    /// GEMM depth: `in/groups * kh * kw`, or `in/groups` for Winograd.
    depth: usize,
    /// Packed weights, in panels of [`PackedConv::panel_rows`] output channels (`P`). GEMM and
    /// the transposed GEMM: `[group][panel][k][P]`; Winograd (either orientation):
    /// `[group][ξ][panel][k][P]`; direct `kxk`: `[group][panel][in/groups][kh][sw][⌈kw/sw⌉][CO]`.
    /// 64-byte aligned, so the micro-kernels' panel loads never straddle cache lines.
    a: AlignedVec,
    /// Bias per group, zero-padded to `m_pad`.
    bias: Vec<f32>,
    /// Layouts of the input and the output ([`PackedConv::try_new_with_layouts`]).
    layouts: (ActLayout, ActLayout),
}

/// How the output of one image and group is split into tasks.
#[derive(Clone, Copy, Debug)]
struct Layout {
    out: Shape,
    /// GEMM columns of one image: output pixels, or Winograd tiles. Blocked kxk windows from the
    /// phase-split copy (not shifted ones) count positions in output rows rounded up to whole
    /// tiles (`blocked::row_width`), the padding positions included.
    cols: usize,
    /// Columns per task (a multiple of the column unit, `NR` or, for pixel-row kernels, `MR`,
    /// unless a single block covers everything).
    nc: usize,
    /// Column blocks per image and group.
    blocks: usize,
    /// Blocks of output channels (of [`PackedConv::panel_rows`]-channel panels) per column block.
    mblocks: usize,
    /// Depth per chunk of the reduction (GEMM, pointwise Direct, the transposed GEMM and blocked
    /// Winograd's GEMMs); a multiple of 16 with blocked input.
    kc: usize,
    /// The micro-kernel of the GEMM and pointwise paths ([`PackedConv::gemm_kernel`]).
    gemm: GemmKernel,
}

/// Tasks to aim for when an image is small, so a few threads have work.
const MIN_TASKS: usize = 8;

/// Depth of one packed `B` chunk: `KC x NR` floats of `B` and `KC x MR` of `A` per micro-kernel
/// call stay within L1 (48 KiB on the machine the constants were tuned on).
const KC: usize = 256;

/// Depth of one chunk of [`ConvAlgo::Direct`], whose `B` rows are whole input planes apart:
/// fewer rows per chunk touch fewer pages (measured 5-15% faster than 256 on 1x1 layers).
const KC_DIRECT: usize = 128;

/// Depth of one chunk (at most; chunks are balanced) of [`ConvAlgo::GemmT`], except the stem of
/// a blocked network ([`KC_STEM`]), and of blocked Winograd's GEMMs: a `KC_T x 32` weight
/// panel (8 KiB with AVX-512) stays in L1 while the job's pixel tiles (or tiles of `V_ξ`) pass
/// over it, beside the next chunk it prefetches and, where a job has few pixels (7x7 and 14x14
/// maps, whose weights stream from memory), the tiles' inputs: 49 pixels x 64 steps is 12.25
/// KiB; at 128 steps the three overflowed L1. ResNet-50, one thread,
/// interleaved: GemmT layers at 7x7 14.1 -> 12.7 ms, at 14x14 18.6 -> 17.9 ms, the rest
/// unchanged (32 lost 2 ms at 56x56 and 28x28); blocked `F(2,3)` at 14x14 207 -> 274-289
/// GFLOP/s against 256 steps (`conv_table`, cold).
const KC_T: usize = 64;

/// Depth of one chunk of the stem of a blocked network (GemmT from NCHW input): all of an
/// ImageNet stem's 147 steps (3 channels x 7x7), whose 18 KiB panel stays in L1 while the
/// job's hundreds of tiles pass over it, each reading 14 pixels per step, instead of three
/// passes over every tile's sums. 7x7/2 stem, `LAYOUT=nchw16c` conv_table, AVX-512: 146-149 ->
/// 160-161 GFLOP/s; in ResNet-50 1.68-1.75 -> 1.60-1.65 ms (AVX2: 2.89 -> 2.72 ms).
const KC_STEM: usize = 256;

/// Output pixels per image from which AVX-512 GEMM and pointwise convolutions use the 8x48
/// tile (56x56 and up; `benches/conv_table.rs`: stem 94 -> 105 GFLOP/s, 1x1 256->64 at 56x56
/// 121 -> 138, while 14x14 and 7x7 layers lose 20-30% to partial panels).
#[cfg(target_arch = "x86_64")]
const WIDE_PIXELS: usize = 56 * 56;

/// Floats of one task's packed `B` (GEMM) or transform buffers (Winograd): about 1 MiB, half
/// of an L2.
const B_BUDGET: usize = 256 * 1024;

/// What the host is, beyond its ISA, where that changes which algorithm is fastest: plain
/// data that the runtime fills in with [`Host::detect`] (or from `SHORTCUT_WEIGHT_STREAM`),
/// so one binary takes each host's measured choice. The default is the host the choice rules
/// were first measured on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Host {
    /// One core streams weights from memory fast enough, for its arithmetic rate, that
    /// Winograd's transformed weights (`α²/9` times a layer's) cost less than the
    /// multiplications they save on small maps ([`PackedConv::choose_for_host`]). Measured on
    /// an AMD Zen 5 host (about 33 GB/s read per core, 221-245 GFLOP/s); not so on the Intel
    /// host of the first measurements.
    pub fast_weight_stream: bool,
}

impl Host {
    /// The host this code runs on: fast weight streaming on AMD family 0x1A (Zen 5: the one
    /// host measured was a server part; the whole family counts as fast, including parts whose
    /// 512-bit operations run at half width, which only makes them more bound by arithmetic);
    /// the default elsewhere, including other AMD families, which were not measured.
    pub fn detect() -> Host {
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::__cpuid;
            // `__cpuid` is a safe fn from Rust 1.94, an unsafe one before (rust-version 1.89).
            #[allow(unused_unsafe)]
            // SAFETY: CPUID exists on every x86_64 CPU, and leaves 0 (vendor) and 1
            // (signature) on every one of them.
            let (vendor, sig) = unsafe { (__cpuid(0), __cpuid(1).eax) };
            Host::from_cpuid((vendor.ebx, vendor.edx, vendor.ecx), sig)
        }
        #[cfg(not(target_arch = "x86_64"))]
        Host::default()
    }

    /// Parses `SHORTCUT_WEIGHT_STREAM`'s values: `fast`, `slow`, or `auto` ([`Host::detect`]).
    pub fn from_name(s: &str) -> Option<Host> {
        match s {
            "fast" => Some(Host { fast_weight_stream: true }),
            "slow" => Some(Host { fast_weight_stream: false }),
            "auto" => Some(Host::detect()),
            _ => None,
        }
    }

    /// `fast` or `slow`, as [`Host::from_name`] reads them.
    pub fn name(self) -> &'static str {
        if self.fast_weight_stream {
            "fast"
        } else {
            "slow"
        }
    }

    /// [`Host::detect`] from the vendor string of CPUID leaf 0 (`ebx, edx, ecx`) and the
    /// signature of leaf 1 (`eax`).
    pub fn from_cpuid(vendor: (u32, u32, u32), signature: u32) -> Host {
        // "AuthenticAMD", four bytes per register, little-endian.
        let amd = vendor == (0x6874_7541, 0x6974_6e65, 0x444d_4163);
        // Family: base (bits 8-11) plus extended (bits 20-27) when the base is 0xF.
        let base = (signature >> 8) & 0xF;
        let family = if base == 0xF { base + ((signature >> 20) & 0xFF) } else { base };
        Host { fast_weight_stream: amd && family == 0x1A }
    }
}

impl PackedConv {
    /// Packs `weight` (`[out, in/groups, kh, kw]`) and `bias` (`[out]`) for `isa` and `algo`,
    /// or the algorithm [`PackedConv::choose`] picks when `algo` is `None`.
    ///
    /// # Panics
    /// If the geometry is invalid, the buffers do not match it, `isa` is not available, or the
    /// algorithm does not apply (see [`PackedConv::supports`]); [`PackedConv::try_new`] returns
    /// `None` instead.
    pub fn new(
        isa: Isa,
        algo: Option<ConvAlgo>,
        geom: &Conv2dGeometry,
        weight: &[f32],
        bias: &[f32],
    ) -> PackedConv {
        match PackedConv::try_new(isa, algo, geom, weight, bias) {
            Some(p) => p,
            None => panic!(
                "PackedConv::new: cannot run {:?} with {isa} and {algo:?} \
                 (weight {} floats, bias {})",
                geom,
                weight.len(),
                bias.len()
            ),
        }
    }

    /// [`PackedConv::new`], returning `None` where it would panic.
    pub fn try_new(
        isa: Isa,
        algo: Option<ConvAlgo>,
        geom: &Conv2dGeometry,
        weight: &[f32],
        bias: &[f32],
    ) -> Option<PackedConv> {
        let nchw = (ActLayout::Nchw, ActLayout::Nchw);
        PackedConv::try_new_with_layouts(isa, algo, geom, weight, bias, nchw)
    }

    /// [`PackedConv::try_new`] for activations in the given `(input, output)` layouts. Every
    /// algorithm runs NCHW to NCHW. Into `NCHW16c` output run [`ConvAlgo::GemmT`] (the default
    /// here), from NCHW input (the stem) or `NCHW16c` input, and Winograd `F(2,3)`, `F(4,3)`,
    /// `F(6,3)` from `NCHW16c` input. Blocked sides need channels per group that are multiples
    /// of 16. Blocked-input weights are packed in the reduction order `[kh][kw][in/groups]`.
    pub fn try_new_with_layouts(
        isa: Isa,
        algo: Option<ConvAlgo>,
        geom: &Conv2dGeometry,
        weight: &[f32],
        bias: &[f32],
        layouts: (ActLayout, ActLayout),
    ) -> Option<PackedConv> {
        if !geom.is_valid()
            || weight.len() != geom.weight_len()
            || bias.len() != geom.out_channels
            || !isa.is_available()
        {
            return None;
        }
        let kernels = arch::kernels(isa)?;
        let nchw = (ActLayout::Nchw, ActLayout::Nchw);
        let algo = match algo {
            Some(a) => a,
            None if layouts != nchw => ConvAlgo::GemmT,
            None => PackedConv::choose(isa, geom),
        };
        if !PackedConv::supports_layouts(algo, geom, layouts) {
            return None;
        }
        let direct = algo == ConvAlgo::Direct && !pointwise(geom);
        let blocked_in = layouts.0 == ActLayout::Nchw16c;
        let rows = panel_rows(&kernels, algo, geom, layouts);
        let m_pad = geom.out_per_group().div_ceil(rows) * rows;
        let mut bias_packed = Vec::with_capacity(geom.groups * m_pad);
        for g in 0..geom.groups {
            let b = &bias[g * geom.out_per_group()..][..geom.out_per_group()];
            bias_packed.extend_from_slice(b);
            bias_packed.resize((g + 1) * m_pad, 0.0);
        }
        let depth = geom.in_per_group() * geom.kernel_h * geom.kernel_w;
        let (depth, a) = match algo.winograd_m() {
            None if direct => (depth, direct::pack_weights(geom, weight, m_pad)),
            None if blocked_in => {
                let source = blocked::weight_source(geom);
                (depth, gemm::pack_weights(geom, weight, rows, m_pad, source))
            }
            None => (depth, gemm::pack_weights(geom, weight, rows, m_pad, |k| k)),
            Some(m) => (geom.in_per_group(), winograd::pack_weights(geom, weight, m, rows, m_pad)),
        };
        Some(PackedConv { geom: *geom, algo, kernels, m_pad, depth, a, bias: bias_packed, layouts })
    }

    /// The algorithm [`PackedConv::new`] uses when none is forced, from the geometry alone:
    ///
    /// - pointwise (`1x1`, stride 1, no padding): [`ConvAlgo::Direct`];
    /// - at most 16 input or output channels per group (ResNeXt's grouped 3x3, the 3-channel
    ///   stem), unless a strided `1x1`: [`ConvAlgo::Direct`]. Measured with strides
    ///   (`COLD=16 cargo bench -p shortcut-core --bench conv_table`, GFLOP/s AVX-512 / AVX2,
    ///   direct vs GEMM): stem 7x7/2 3->64 at 224 120 / 79 vs 118 / 72 (in ResNet-50 2.04-2.19
    ///   vs 2.18-2.32 ms), 3x3/2 g32 256 (8/g) at 56 18 / 18 vs 17 / 13, 512 g32 (16/g) at 28
    ///   27 / 26 vs 21 / 17, CIFAR 3x3/2 16->32 at 32 47 / 42 vs 48 / 41; but 3x3/2 128->128
    ///   at 56 62 vs 108, so wider layers keep GEMM;
    /// - `3x3`, stride 1, padding 1: [`ConvAlgo::Winograd2`], the one Winograd variant that is
    ///   never much slower than the best at any image size (60-100% of the best in the table
    ///   of [`PackedConv::choose_for_input`], while `F(4,3)` and `F(6,3)` drop to 20% and 10%
    ///   at 7x7);
    /// - other stride-1 kernels with at most 128 input channels per group:
    ///   [`ConvAlgo::Direct`] (faster than GEMM on 3x3 layers up to 128 channels);
    /// - everything else: [`ConvAlgo::Gemm`].
    ///
    /// When the input shape is known, [`PackedConv::choose_for_input`] also picks the Winograd
    /// tile size.
    pub fn choose(isa: Isa, geom: &Conv2dGeometry) -> ConvAlgo {
        let _ = isa;
        let stride1 = geom.stride_h == 1 && geom.stride_w == 1;
        let few = geom.in_per_group().min(geom.out_per_group()) <= 16;
        let strided_pointwise = geom.kernel_h * geom.kernel_w == 1 && !stride1;
        if pointwise(geom) || (few && !strided_pointwise) {
            ConvAlgo::Direct
        } else if PackedConv::supports(ConvAlgo::Winograd2, geom) {
            ConvAlgo::Winograd2
        } else if stride1 && geom.in_per_group() <= 128 {
            ConvAlgo::Direct
        } else {
            ConvAlgo::Gemm
        }
    }

    /// The algorithm to use for inputs of `in_shape` (only its height and width matter): as
    /// [`PackedConv::choose`], except that layers with small outputs and many weights take
    /// [`ConvAlgo::GemmT`] (the rule and its measurements: `small_map_heavy_weights`), and
    /// Winograd layers get the tile size that suits the image:
    ///
    /// `F(m,3)` minimising `score(m) = (α²/m²) · edge(m) / fill(m) · w(m)`, where `α²/m²` is
    /// the GEMM work per output pixel, `edge(m) = ⌈H/m⌉⌈W/m⌉m² / (HW)` the partial-tile waste,
    /// `fill(m) = T / (⌈T/NR⌉ NR)` how full the micro-kernel's column panels are with
    /// `T = ⌈H/m⌉⌈W/m⌉` tiles per image, and `w = 0.85, 1.0, 1.1` for `m = 2, 4, 6` the
    /// relative cost of the transforms (fitted to the measurements below).
    ///
    /// Measured with `benches/conv_table.rs` (best of N, one thread, batch 1, GFLOP/s counting
    /// the direct convolution's `2·MACs`, so Winograd can exceed the machine's peak of ~176),
    /// AVX-512 / AVX2 on an AVX-512 Xeon (48 KiB L1d, 2 MiB L2) shared with other jobs, so
    /// +-20% between runs:
    ///
    /// | 3x3/1 layer           | Direct    | GEMM      | F(2,3)    | F(4,3)    | F(6,3)    |
    /// |-----------------------|-----------|-----------|-----------|-----------|-----------|
    /// | 64->64, 56x56         | 122 / 65  | 93 / 51   | 150 / 101 | 242 / 172 | 226 / 178 |
    /// | 128->128, 28x28       | 100 / 64  | 104 / 58  | 194 / 122 | 273 / 172 | 285 / 192 |
    /// | 256->256, 14x14       | 71 / 59   | 91 / 60   | 197 / 116 | 181 / 190 | 104 / 104 |
    /// | 512->512, 7x7         | 36 / 35   | 85 / 48   | 102 / 118 | 30 / 34   | 16 / 18   |
    /// | 16->16, 32x32         | 123 / 69  | 46 / 25   | 78 / 47   | 125 / 75  | 78 / 64   |
    /// | 64->64, 8x8           | 41 / 43   | 40 / 39   | 93 / 97   | 45 / 60   | 27 / 34   |
    /// | 128 g32 (4/g), 56x56  | 78 / 51   | 10 / 7    | 13 / 8    | 21 / 16   | 21 / 20   |
    /// | 256 g32 (8/g), 28x28  | 92 / 55   | 16 / 10   | 28 / 23   | 42 / 36   | 49 / 36   |
    /// | 512 g32 (16/g), 14x14 | 68 / 55   | 19 / 14   | 44 / 34   | 64 / 64   | 40 / 36   |
    /// | 1024 g32 (32/g), 7x7  | 36 / 36   | 23 / 16   | 54 / 50   | 27 / 33   | 15 / 19   |
    ///
    /// The rule's picks (with the 16-channel Direct threshold) are the best or within ~10% of it
    /// in every row except `512 g32` with AVX2 (Direct 55 vs `F(4,3)` 64).
    ///
    /// With AVX2, where the rule would pick `F(4,3)` or `F(6,3)` for an output of at least
    /// 28x28, [`ConvAlgo::Winograd4T`] runs instead: `COLD=16 cargo bench -p shortcut-core
    /// --bench conv_table -- avx2 3x3_`, GFLOP/s: 64->64 at 56x56 206 (`F(4,3)` 187, `F(6,3)`
    /// 194), 128->128 at 28x28 210 (170, 144), but 256->256 at 14x14 87 (`F(4,3)` 142). With
    /// AVX-512 the transposed variants never won (at 14x14 `F(2,3)` 140, transposed 123; at
    /// 28x28 `F(6,3)` 279, `F(4,3)`-T 201).
    pub fn choose_for_input(isa: Isa, geom: &Conv2dGeometry, in_shape: Shape) -> ConvAlgo {
        let by_geometry = PackedConv::choose(isa, geom);
        let Some(out) = geom.output_shape(in_shape) else {
            return by_geometry;
        };
        if small_map_heavy_weights(isa, geom, out) {
            return ConvAlgo::GemmT;
        }
        if by_geometry != ConvAlgo::Winograd2 {
            return by_geometry;
        }
        let nr = arch::kernels(isa).map_or(8, |k| k.gemm.nr);
        let score = |m: usize, w: f64| {
            let tiles = winograd_tiles(m, out);
            let edge = (tiles * m * m) as f64 / (out.h * out.w) as f64;
            let fill = tiles as f64 / (tiles.div_ceil(nr) * nr) as f64;
            let alpha = (m + 2) as f64;
            alpha * alpha / (m * m) as f64 * edge / fill * w
        };
        let scores = [
            (ConvAlgo::Winograd2, score(2, 0.85)),
            (ConvAlgo::Winograd4, score(4, 1.0)),
            (ConvAlgo::Winograd6, score(6, 1.1)),
        ];
        let best = scores
            .into_iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(ConvAlgo::Winograd2, |(algo, _)| algo);
        // AVX2 runs the larger tiles transposed on large images (measurements above).
        if isa == Isa::Avx2 && best != ConvAlgo::Winograd2 && out.h * out.w >= 28 * 28 {
            return ConvAlgo::Winograd4T;
        }
        best
    }

    /// [`PackedConv::choose_for_host`] on a host whose cores stream weights slowly
    /// ([`Host::default`], the Intel host the rules were first measured on).
    pub fn choose_for_layouts(
        isa: Isa,
        geom: &Conv2dGeometry,
        in_shape: Shape,
        layouts: (ActLayout, ActLayout),
    ) -> ConvAlgo {
        PackedConv::choose_for_host(isa, Host::default(), geom, in_shape, layouts)
    }

    /// The algorithm for activations in `layouts` (input, output) and inputs of `in_shape` on
    /// `host`: [`PackedConv::choose_for_input`] for NCHW. Blocked: GemmT, except 3x3/1 layers
    /// between blocked activations, which take Winograd: `F(4,3)` above 14x14 (196 pixels),
    /// `F(2,3)` up to 14x14, except on maps of at most 8x8 with at least 1 MiB of weights
    /// (ResNet's last stage), where the transformed weights (`16/9` times as many) stream from
    /// memory for too little work: with AVX2, and with AVX-512 unless the host streams
    /// weights fast ([`Host::fast_weight_stream`]) and the tiles fill whole 8-row micro-tiles
    /// (7x7 and 8x8 maps: 16 tiles).
    ///
    /// Measured on the Intel host in ResNet-50 (`shortcut bench resnet50 --threads 1 --layout
    /// nchw16c --conv A --profile`, AVX-512, ms per 3x3/1 layer, before the 8-row tile):
    ///
    /// | output | GemmT     | `F(2,3)`  | `F(4,3)`  | `F(6,3)`  |
    /// |--------|-----------|-----------|-----------|-----------|
    /// | 56x56  | 1.69-1.77 | 1.22-1.31 | 0.83-0.93 | 1.06-1.15 |
    /// | 28x28  | 1.56-1.73 | 1.10-1.16 | 0.97-1.08 | 1.46-1.49 |
    /// | 14x14  | 1.87-1.92 | 1.54-1.67 | 2.85-3.36 | 4.7-5.7   |
    /// | 7x7    | 2.35-2.37 | 3.28-3.35 | 5.0-5.5   | 9.0-9.3   |
    ///
    /// The larger tiles lose on small maps to partial tiles and to transformed weights
    /// (`α²/9` times the layer's) streaming from memory. Per layer (`COLD=16 LAYOUT=nchw16c
    /// cargo bench -p shortcut-core --bench conv_table -- avx512`, GFLOP/s, weights cold):
    /// 3x3 512->512 at 7x7 GemmT 106, `F(2,3)` 80; 64->64 at 8x8 GemmT 89, `F(2,3)` 175;
    /// 256->256 at 14x14 131 / 158 (`F(4,3)` 84); 16->16 at 32x32 `F(4,3)` 139, `F(6,3)` 113.
    ///
    /// On the Zen 5 host (fast weight streaming), with the 8-row tile, ResNet-50 per 3x3/1
    /// layer (best of 20 passes, `--profile`): 512->512 at 7x7 `F(2,3)` 0.77-0.82 ms against
    /// GemmT's 1.11-1.12; the network's best-per-layer sums 28.6-29.5 ms against 29.7-30.3
    /// with the slow host's choice (five interleaved runs, `SHORTCUT_WEIGHT_STREAM`). 14x14
    /// keeps `F(2,3)`: `F(4,3)` (16 tiles, 8-row) ran 0.46-0.50 against 0.50-0.55 ms per layer,
    /// within noise in the network, for 5 MiB more transformed weights per layer.
    pub fn choose_for_host(
        isa: Isa,
        host: Host,
        geom: &Conv2dGeometry,
        in_shape: Shape,
        layouts: (ActLayout, ActLayout),
    ) -> ConvAlgo {
        if layouts == (ActLayout::Nchw, ActLayout::Nchw) {
            return PackedConv::choose_for_input(isa, geom, in_shape);
        }
        let winograd = PackedConv::supports_layouts(ConvAlgo::Winograd2, geom, layouts);
        let heavy = geom.weight_len() * 4 >= 1 << 20;
        // Heavy small maps are bound by streaming weights on the x86 ISAs, where GemmT reads
        // each weight once; GemmT's stride-1 windows run tiles across output rows
        // (`blocked::shifted`), so no tile height wastes a 7-pixel row. ResNet-18 at 7x7,
        // `shortcut bench resnet18 --threads 1 --isa I [--profile]`: AVX2 34.0-35.3 ms with
        // `F(2,3)` there, 31.2-31.9 with GemmT. The scalar kernels are bound by arithmetic,
        // where Winograd's fewer multiplications win: 6.1 ms per 3x3 512->512 layer with
        // `F(2,3)`, 8.7 with GemmT. NEON, untimed on hardware, keeps `F(2,3)` too. AVX-512 on
        // a host that streams weights fast (measurements above) takes Winograd where its
        // tiles fill the 8-row micro-tiles.
        let out = geom.output_shape(in_shape);
        let fast_avx512 = isa == Isa::Avx512 && host.fast_weight_stream;
        let fills = |algo| out.is_some_and(|o| eight_row_tiles(algo, o));
        let weight_bound = match isa {
            Isa::Avx2 => true,
            Isa::Avx512 => !(fast_avx512 && fills(ConvAlgo::Winograd2)),
            _ => false,
        };
        match out.map(|o| o.h * o.w) {
            Some(pixels) if winograd && pixels > 196 => ConvAlgo::Winograd4,
            Some(pixels) if winograd && (pixels > 64 || !heavy || !weight_bound) => {
                ConvAlgo::Winograd2
            }
            _ => ConvAlgo::GemmT,
        }
    }

    /// Whether `algo` can compute convolutions of this geometry.
    pub fn supports(algo: ConvAlgo, geom: &Conv2dGeometry) -> bool {
        let winograd = geom.kernel_h == 3
            && geom.kernel_w == 3
            && geom.stride_h == 1
            && geom.stride_w == 1
            && geom.pad_h == 1
            && geom.pad_w == 1;
        geom.is_valid()
            && match algo {
                ConvAlgo::Direct | ConvAlgo::Gemm | ConvAlgo::GemmT => true,
                ConvAlgo::Winograd2
                | ConvAlgo::Winograd4
                | ConvAlgo::Winograd6
                | ConvAlgo::Winograd2T
                | ConvAlgo::Winograd4T => winograd,
            }
    }

    /// Whether `algo` computes convolutions of this geometry ([`PackedConv::supports`]) from
    /// and to activations in `layouts` (input, output); see
    /// [`PackedConv::try_new_with_layouts`].
    pub fn supports_layouts(
        algo: ConvAlgo,
        geom: &Conv2dGeometry,
        layouts: (ActLayout, ActLayout),
    ) -> bool {
        let fits = |layout: ActLayout, per_group| {
            layout == ActLayout::Nchw || (per_group > 0 && layout.fits(per_group))
        };
        PackedConv::supports(algo, geom)
            && match layouts {
                (ActLayout::Nchw, ActLayout::Nchw) => true,
                (_, ActLayout::Nchw) => false,
                (input, output) => {
                    let winograd = matches!(
                        algo,
                        ConvAlgo::Winograd2 | ConvAlgo::Winograd4 | ConvAlgo::Winograd6
                    );
                    (algo == ConvAlgo::GemmT || (winograd && input == ActLayout::Nchw16c))
                        && fits(input, geom.in_per_group())
                        && fits(output, geom.out_per_group())
                }
            }
    }

    /// The `(input, output)` layouts of the activations this convolution reads and writes.
    pub fn layouts(&self) -> (ActLayout, ActLayout) {
        self.layouts
    }

    /// Whether output pixels (or tiles) are the micro-kernel's rows: the transposed
    /// algorithms and every blocked one.
    fn pixel_rows(&self) -> bool {
        self.algo.transposed() || self.blocked_in()
    }

    /// Whether the input is channel-blocked (read by [`Kernels::gemm_b`]).
    fn blocked_in(&self) -> bool {
        self.layouts.0 == ActLayout::Nchw16c
    }

    /// Whether NCHW input is read into channel-blocked output (by [`Kernels::gemm_tb`]): the
    /// stem of a blocked network.
    fn blocked_out_only(&self) -> bool {
        self.layouts == (ActLayout::Nchw, ActLayout::Nchw16c)
    }

    /// Floats held by the prepacked weights and bias (the conv's resident weight memory).
    pub fn packed_len(&self) -> usize {
        self.a.len() + self.bias.len()
    }

    pub fn algo(&self) -> ConvAlgo {
        self.algo
    }

    pub fn isa(&self) -> Isa {
        self.kernels.isa
    }

    pub fn geometry(&self) -> &Conv2dGeometry {
        &self.geom
    }

    /// Name of the ISA's micro-kernel, e.g. `avx512_gemm_f32_8x32` or, for the transposed
    /// algorithms, `avx512_gemm_f32_7x32`, for blocked input `avx512_gemm_b_f32_7x32` and for NCHW
    /// input into blocked output (a blocked network's stem) `avx512_gemm_tb_f32_7x32` (AVX-512
    /// GEMM and some blocked layers run the 8x48, 8x32 and 14x32 siblings, see
    /// `PackedConv::gemm_kernel`, which the name does not follow).
    pub fn kernel_name(&self) -> &'static str {
        if self.blocked_in() {
            self.kernels.gemm_b.name
        } else if self.blocked_out_only() {
            self.kernels.gemm_tb.name
        } else if self.algo.transposed() {
            self.kernels.gemm_t.name
        } else {
            self.kernels.gemm.name
        }
    }

    /// Whether this is the direct `kxk` kernel (columns are output rows, panels `CO` rows).
    fn direct_kxk(&self) -> bool {
        self.algo == ConvAlgo::Direct && !pointwise(&self.geom)
    }

    /// The micro-kernel for an output of `out`'s size: the ISA's, except that AVX-512 GEMM
    /// and pointwise convolutions with at least `WIDE_PIXELS` (56x56) output pixels per image use
    /// the wider 8x48 tile (same `MR`, so the same packed weights), and blocked `1x1` layers
    /// without padding (stride 1 or subsampled) with at least 14x14 outputs, or a multiple of 7
    /// pixels (7x7: three 14-row tiles and a 7-row one, [`PackedConv::tail_kernel`]), and
    /// blocked windows whose output rows are multiples of 14 pixels (a tile stays in one row;
    /// the 3x3/2 layers into 28x28 and 14x14 ran 6-7% faster, `LAYOUT=nchw16c cargo bench -p
    /// shortcut-core --bench conv_table -- avx512 3x3s2`) or that read shifted copies (tiles
    /// across rows, `blocked::shifted`), the 14-row blocked tile (same `NR`); and the stem of a
    /// blocked network (other than a pointwise one, read in place) with such rows its 14-row
    /// tile (the 7x7/2 ImageNet stem: 130/135 -> 141/142 GFLOP/s, same bench). Blocked
    /// Winograd, whose columns are tiles (4-16x fewer than pixels), keeps the ISA's kernel,
    /// except that with AVX-512 tile counts that are multiples of 8 but not of 7 (16 at 7x7
    /// and 8x8 with `F(2,3)`, at 14x14 with `F(4,3)`) take the 8-row tile, so no micro-tile
    /// is partly zero rows.
    fn gemm_kernel(&self, out: Shape) -> GemmKernel {
        #[cfg(target_arch = "x86_64")]
        if self.kernels.isa == Isa::Avx512
            && self.algo == ConvAlgo::GemmT
            && self.blocked_in()
            && if blocked::windows(self) {
                out.w.is_multiple_of(14) || blocked::shifted(self, out)
            } else {
                out.h * out.w >= 14 * 14 || (out.h * out.w).is_multiple_of(7)
            }
        {
            let wide = arch::x86_64::avx512::GEMM_B_WIDE;
            debug_assert_eq!(wide.nr, self.kernels.gemm_b.nr);
            return wide;
        }
        #[cfg(target_arch = "x86_64")]
        if self.kernels.isa == Isa::Avx512 && self.blocked_in() && eight_row_tiles(self.algo, out) {
            let eight = arch::x86_64::avx512::GEMM_B_8X32;
            debug_assert_eq!(eight.nr, self.kernels.gemm_b.nr);
            return eight;
        }
        if self.blocked_in() {
            return self.kernels.gemm_b;
        }
        #[cfg(target_arch = "x86_64")]
        if self.kernels.isa == Isa::Avx512
            && self.blocked_out_only()
            && !pointwise(&self.geom)
            && out.w.is_multiple_of(14)
        {
            return arch::x86_64::avx512::GEMM_TB_WIDE;
        }
        if self.blocked_out_only() {
            return self.kernels.gemm_tb;
        }
        if self.algo.transposed() {
            return self.kernels.gemm_t;
        }
        #[cfg(target_arch = "x86_64")]
        if self.kernels.isa == Isa::Avx512
            && matches!(self.algo, ConvAlgo::Gemm | ConvAlgo::Direct)
            && !self.direct_kxk()
            && out.h * out.w >= WIDE_PIXELS
        {
            let wide = arch::x86_64::avx512::GEMM_WIDE;
            debug_assert_eq!(wide.mr, self.kernels.gemm.mr);
            return wide;
        }
        let _ = out;
        self.kernels.gemm
    }

    /// The kernel for a panel of `chans < kern.nr` channels of the pixel-rows algorithms: a
    /// narrower sibling of `kern` (same rows) exactly `chans` wide where the ISA has one
    /// (AVX-512's 16-column tiles), else `kern` itself (it computes the zero-padded columns
    /// too).
    fn panel_kernel(&self, kern: GemmKernel, chans: usize) -> GemmKernel {
        #[cfg(target_arch = "x86_64")]
        if self.kernels.isa == Isa::Avx512 && chans < kern.nr {
            use arch::x86_64::avx512;
            let narrow = if self.blocked_in() {
                avx512::gemm_b_narrow_for(kern.mr)
            } else if self.blocked_out_only() {
                Some(avx512::GEMM_TB_NARROW).filter(|n| n.mr == kern.mr)
            } else {
                Some(avx512::GEMM_T_NARROW)
                    .filter(|n| kern.name == self.kernels.gemm_t.name && n.mr == kern.mr)
            };
            if let Some(narrow) = narrow.filter(|n| n.nr == chans) {
                return narrow;
            }
        }
        let _ = chans;
        kern
    }

    /// The kernel for a tile of `rows < kern.mr` output pixels at the end of an image: a
    /// shorter sibling of `kern` (same columns, so the same packed panels) exactly `rows` tall
    /// where the ISA has one (AVX-512's 7-row blocked tiles under the 14-row ones), which writes
    /// the tile into the output; else `kern` itself, which computes the missing rows too, into
    /// scratch.
    fn tail_kernel(&self, kern: GemmKernel, rows: usize) -> GemmKernel {
        #[cfg(target_arch = "x86_64")]
        if self.kernels.isa == Isa::Avx512 && self.blocked_in() && kern.mr == 14 && rows == 7 {
            let short = if kern.nr == self.kernels.gemm_b.nr {
                Some(self.kernels.gemm_b)
            } else {
                arch::x86_64::avx512::gemm_b_narrow_for(7)
            };
            if let Some(short) = short.filter(|s| s.mr == rows && s.nr == kern.nr) {
                return short;
            }
        }
        let _ = rows;
        kern
    }

    /// Output channels per panel of packed weights.
    fn panel_rows(&self) -> usize {
        panel_rows(&self.kernels, self.algo, &self.geom, self.layouts)
    }

    fn layout(&self, in_shape: Shape) -> Layout {
        let out = self.geom.output_shape(in_shape).expect("PackedConv: input does not fit");
        let direct_kxk = self.direct_kxk();
        let gemm = self.gemm_kernel(out);
        // Output columns (pixels) per tile: one row for the direct kernel, the tile's rows for
        // the transposed GEMM.
        let nr = match self.algo {
            _ if direct_kxk => 1,
            _ if self.pixel_rows() => gemm.mr,
            _ => gemm.nr,
        };
        // Images x groups; at least one so an empty batch still has a (taskless) layout.
        let units = (out.n * self.geom.groups).max(1);
        let kc_max = match self.algo {
            ConvAlgo::Direct => KC_DIRECT,
            ConvAlgo::GemmT if self.blocked_out_only() => KC_STEM,
            ConvAlgo::GemmT => KC_T,
            _ if self.blocked_in() && self.algo.winograd_m().is_some() => KC_T,
            _ => KC,
        };
        let (cols, max_nc) = match self.algo.winograd_m() {
            None if direct_kxk => {
                let per_row = self.geom.in_per_group() * direct::padded_width(self, out);
                let rows = (B_BUDGET / per_row).saturating_sub(self.geom.kernel_h);
                (out.h, (rows / self.geom.stride_h).max(1))
            }
            None if self.algo == ConvAlgo::GemmT => {
                let row = if self.blocked_in() {
                    blocked::row_width(self, out)
                } else {
                    gemm_t::row_width(self, out, gemm.mr)
                };
                (out.h * row, (B_BUDGET / self.depth).max(nr))
            }
            None => (out.h * out.w, (B_BUDGET / self.depth.min(kc_max)).max(nr)),
            Some(m) => {
                let alpha2 = (m + 2) * (m + 2);
                // Blocked Winograd keeps `M` for one panel of channels at a time.
                let m_cols = if self.blocked_in() { gemm.nr } else { self.m_pad };
                let per_col = alpha2 * (self.geom.in_per_group() + m_cols);
                (winograd_tiles(m, out), (B_BUDGET / per_col).max(nr))
            }
        };
        // At least enough blocks to respect the budget, more (down to one panel each) when the
        // image is too small to give every thread a task. The transposed GEMM, each of whose
        // column blocks reads all the weights, first splits channels (below) and only splits
        // columns where there are too few channel panels.
        let by_size = cols.div_ceil(max_nc);
        let units_before_columns =
            if self.pixel_rows() { units * self.m_pad / self.panel_rows() } else { units };
        let by_tasks = MIN_TASKS.div_ceil(units_before_columns).min(cols.div_ceil(nr));
        let want = by_size.max(by_tasks).max(1);
        let nc = cols.div_ceil(want).div_ceil(nr) * nr;
        let blocks = cols.div_ceil(nc).max(1);
        // Still too few: split the output channels too. `run_tasks` packs `B` once for a
        // range of tasks that share columns, so this costs nothing when run serially.
        let mblocks = MIN_TASKS.div_ceil(units * blocks).clamp(1, self.m_pad / self.panel_rows());
        let kc = if self.blocked_in() {
            // Whole groups of 16 steps (one channel block of one tap) per chunk.
            let groups = self.depth / arch::blocked::BLOCK;
            groups.div_ceil(self.depth.div_ceil(kc_max)) * arch::blocked::BLOCK
        } else {
            self.depth.div_ceil(self.depth.div_ceil(kc_max))
        };
        Layout { out, cols, nc, blocks, mblocks, kc, gemm }
    }

    /// `f32` scratch elements one call of [`PackedConv::run_tasks`] needs for this input shape.
    pub fn scratch_len(&self, in_shape: Shape) -> usize {
        self.scratch_len_for(&self.layout(in_shape), in_shape)
    }

    /// [`PackedConv::scratch_len`] for the layout `l` of `in_shape`.
    fn scratch_len_for(&self, l: &Layout, in_shape: Shape) -> usize {
        let nr = l.gemm.nr;
        match self.algo {
            ConvAlgo::GemmT if self.blocked_in() => blocked::scratch_len(self, l.out, l.nc),
            ConvAlgo::GemmT => gemm_t::scratch_len(self, in_shape, l.out, l.nc),
            ConvAlgo::Direct if self.direct_kxk() => direct::scratch_len(self, l.out, l.nc),
            ConvAlgo::Direct => l.kc * nr,
            ConvAlgo::Gemm => {
                l.kc * l.nc.div_ceil(nr) * nr + gemm::phases_len(&self.geom, in_shape, l.out, l.nc)
            }
            ConvAlgo::Winograd2
            | ConvAlgo::Winograd4
            | ConvAlgo::Winograd6
            | ConvAlgo::Winograd2T
            | ConvAlgo::Winograd4T => {
                let m = self.algo.winograd_m().expect("winograd");
                if self.blocked_in() {
                    blocked::winograd_scratch_len(self, l.out, m, l.nc)
                } else {
                    winograd::scratch_len(self, l.out, m, l.nc)
                }
            }
        }
    }

    /// Independent units of work for this input shape: image x group x column block x block
    /// of output channels, in that order (so consecutive tasks write nearby output). Small
    /// images are split down to one micro-kernel tile in each direction to give at least 8
    /// tasks where possible.
    pub fn task_count(&self, in_shape: Shape) -> usize {
        let l = self.layout(in_shape);
        l.out.n * self.geom.groups * l.blocks * l.mblocks
    }

    /// Runs tasks `tasks` of the convolution of `input` (shape `in_shape`) into `output`.
    ///
    /// # Safety
    /// Calls running at the same time on the same `output` must use disjoint task ranges
    /// (each task reads and writes only its own output elements), and nothing else may access
    /// `output` meanwhile.
    ///
    /// # Panics
    /// If the shapes do not match the geometry, `tasks` exceeds [`PackedConv::task_count`] or
    /// `scratch` is shorter than [`PackedConv::scratch_len`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run_tasks(
        &self,
        tasks: Range<usize>,
        input: &[f32],
        in_shape: Shape,
        output: OutPtr<'_>,
        epilogue: Epilogue,
        scratch: &mut [f32],
    ) {
        let l = self.layout(in_shape);
        assert_eq!(input.len(), in_shape.len(), "PackedConv: input length");
        assert_eq!(output.len, l.out.len(), "PackedConv: output length");
        assert!(
            tasks.end <= l.out.n * self.geom.groups * l.blocks * l.mblocks,
            "PackedConv: task range"
        );
        let scratch = &mut scratch[..self.scratch_len_for(&l, in_shape)];
        let m_panels = self.m_pad / self.panel_rows();
        let (cin_g, cout_g) = (self.geom.in_per_group(), self.geom.out_per_group());
        let plane = in_shape.h * in_shape.w;
        let group_weights = self.a.len() / self.geom.groups;
        let io = Io { in_shape, out: output, ep: epilogue };
        let mut task = tasks.start;
        while task < tasks.end {
            // The tasks of this range that share a column block run as one job.
            let unit = task / l.mblocks;
            let (mb0, mb1) = (task % l.mblocks, (tasks.end - unit * l.mblocks).min(l.mblocks));
            task = unit * l.mblocks + mb1;
            let block = unit % l.blocks;
            let g = (unit / l.blocks) % self.geom.groups;
            let n = unit / (l.blocks * self.geom.groups);
            let job = Job {
                col0: block * l.nc,
                ncols: l.nc.min(l.cols - block * l.nc),
                panels: mb0 * m_panels / l.mblocks..mb1 * m_panels / l.mblocks,
                img: &input[(n * in_shape.c + g * cin_g) * plane..][..cin_g * plane],
                weights: &self.a[g * group_weights..][..group_weights],
                bias: &self.bias[g * self.m_pad..][..self.m_pad],
                out_base: (n * l.out.c + g * cout_g) * l.out.h * l.out.w,
            };
            // SAFETY: the job's output elements belong to this task only (caller's contract).
            unsafe {
                match self.algo.winograd_m() {
                    None if self.direct_kxk() => direct::run(self, &l, &job, io, scratch),
                    None if self.blocked_in() => blocked::run(self, &l, &job, io, scratch),
                    None if self.algo == ConvAlgo::GemmT => {
                        gemm_t::run(self, &l, &job, io, scratch)
                    }
                    None => gemm::run(self, &l, &job, io, scratch),
                    Some(m) if self.blocked_in() => {
                        blocked::run_winograd(self, &l, m, &job, io, scratch)
                    }
                    Some(m) => winograd::run(self, &l, m, &job, io, scratch),
                }
            }
        }
    }

    /// Runs every task serially. `scratch` holds at least [`PackedConv::scratch_len`] floats.
    pub fn run(
        &self,
        input: &[f32],
        in_shape: Shape,
        output: &mut [f32],
        epilogue: Epilogue,
        scratch: &mut [f32],
    ) {
        let tasks = self.task_count(in_shape);
        // SAFETY: one caller, holding `output` exclusively.
        unsafe { self.run_tasks(0..tasks, input, in_shape, OutPtr::new(output), epilogue, scratch) }
    }
}

/// Whether a layer producing `out` suits [`ConvAlgo::GemmT`]: at least 128 output channels
/// per group, and either at most 64 output pixels per image (ResNet's 7x7 stage) with a depth
/// of at least 512, or at most 196 (14x14) with at least 2 MiB of weights where Winograd does
/// not apply, or at most 196 and pointwise (read in place, without packing): weights outweigh
/// the work per weight, so reading them once pays for the transposed store. With AVX-512 also
/// strided kxk layers whose output rows are whole 7-pixel tiles, read in place from a padded
/// copy (`COLD=16` conv_table: 3x3/2 128->128 from 56x56 102-104 GFLOP/s against GEMM 94-95,
/// from 28x28 93-95 against 65-66, 256->256 from 28x28 107-111 against 72-76; ResNet-50's
/// 3x3/2 into 28x28 2.61-2.66 ms against 2.84-2.88; the stem keeps `Direct`, 2.46-2.58 against
/// 2.78). With AVX2, never where Winograd applies (its 6-row tiles do not divide ResNet's
/// rows, so nothing is read in place). Only the x86 ISAs, where it was measured.
///
/// Measured with `COLD=16 cargo bench -p shortcut-core --bench conv_table` (weights cold, as in
/// a network, where each layer's weights come from memory), GFLOP/s AVX-512 / AVX2, the best
/// other algorithm in brackets:
///
/// | layer                    | GemmT     | best other                  |
/// |--------------------------|-----------|-----------------------------|
/// | 1x1 512->2048, 7x7       | 114 / 69  | GEMM 79 / 50                |
/// | 1x1 2048->512, 7x7       | 123 / 67  | GEMM 75 / 48                |
/// | 3x3 512->512, 7x7        | 99 / 60   | F(2,3) 70 / 81              |
/// | 1x1/2 1024->2048, 14x14  | 114 / 64  | GEMM 68 / 44                |
/// | 3x3/2 256->256, 14x14    | 90 / 50   | GEMM 53 / 40                |
/// | 1x1 1024->512, 14x14     | 128 / 84  | GEMM 124 / 81               |
/// | 1x1/2 512->1024, 28x28   | 121 / 83  | GEMM 99 / 67                |
/// | 3x3/2 256->256, 28x28    | 107 / 61  | GEMM 72 / 61                |
/// | 1x1 1024->256, 14x14     | 145 / 97  | direct 121 / 92             |
/// | 3x3 256->256, 14x14      | 132 / 65  | F(2,3) 128 / F(4,3) 136     |
/// | 3x3 64->64, 8x8          | 31 / -    | F(2,3) 119 / -              |
///
/// and 45-110 against 95-150 on larger images, where the transposed store and the short
/// packing runs cost more than the better use of weights saves (pointwise 1x1 at 28x28 in
/// ResNet-50: 6.3 ms for six layers against 4.6 with `Direct`). Pointwise layers at 14x14 read
/// in place: the ten of ResNet-50 take 9.3-9.6 ms against 10.0-10.5 with `Direct`. (Weights
/// cached, AVX-512, with a 7x48 tile:
/// 1x1 2048->512 at 7x7 GemmT 131, direct 115: the gain is mostly reading weights once.) In
/// ResNet-50 (`shortcut bench resnet50 --threads 1 --profile`, forcing each algorithm): the
/// 14x14 1x1/2 shortcut 1.83 ms (GEMM 2.25), the 1x1 1024->512 1.68 (direct 1.99), the 3x3/2
/// 2.68 (GEMM 3.14), while the 14x14 3x3 layers keep F(2,3) (1.86 against 2.67).
fn small_map_heavy_weights(isa: Isa, geom: &Conv2dGeometry, out: Shape) -> bool {
    let depth = geom.in_per_group() * geom.kernel_h * geom.kernel_w;
    let weight_bytes = geom.groups * geom.out_per_group() * depth * 4;
    let winograd = PackedConv::supports(ConvAlgo::Winograd2, geom);
    let pixels = out.h * out.w;
    let small = pixels <= 64 && depth >= 512;
    let medium = pixels <= 196 && ((weight_bytes >= 2 << 20 && !winograd) || pointwise(geom));
    let heavy = geom.out_per_group() >= 128 && (small || medium);
    // Strided windows read in place (`gemm_t::window`: whole 7-pixel tiles per output row)
    // beat GEMM's im2col, but not the 3-channel stem's direct kernel.
    let tile_rows = arch::kernels(isa).map_or(0, |k| k.gemm_t.mr);
    let strided_window = geom.stride_h * geom.stride_w > 1
        && geom.kernel_h * geom.kernel_w > 1
        && geom.in_per_group() >= 32
        && geom.out_per_group() >= 64
        && tile_rows > 0
        && out.w.is_multiple_of(tile_rows);
    match isa {
        Isa::Avx512 => heavy || strided_window,
        Isa::Avx2 => heavy && !winograd,
        Isa::Scalar | Isa::Neon => false,
    }
}

/// Winograd `F(m,3)` tiles per image for outputs of `out`'s size (partial tiles at the edges
/// count whole).
fn winograd_tiles(m: usize, out: Shape) -> usize {
    out.h.div_ceil(m) * out.w.div_ceil(m)
}

/// Whether `algo` is Winograd with a tile count per image (for outputs of `out`'s size) that
/// 8-row micro-tiles cover exactly and 7-row ones do not.
fn eight_row_tiles(algo: ConvAlgo, out: Shape) -> bool {
    algo.winograd_m().is_some_and(|m| {
        let tiles = winograd_tiles(m, out);
        tiles.is_multiple_of(8) && !tiles.is_multiple_of(7)
    })
}

/// `1x1`, stride 1, no padding: a plain matrix product over the NCHW input.
fn pointwise(geom: &Conv2dGeometry) -> bool {
    geom.kernel_h == 1
        && geom.kernel_w == 1
        && geom.stride_h == 1
        && geom.stride_w == 1
        && geom.pad_h == 0
        && geom.pad_w == 0
}

/// Output channels per panel of the weights `algo` packs for `layouts` with `kernels`: the
/// direct kernel's `CO`, else the columns of the pixel-rows kernels (blocked input, NCHW input
/// into blocked output, the transposed GEMM), else the GEMM's rows.
fn panel_rows(
    kernels: &Kernels,
    algo: ConvAlgo,
    geom: &Conv2dGeometry,
    layouts: (ActLayout, ActLayout),
) -> usize {
    match layouts {
        _ if algo == ConvAlgo::Direct && !pointwise(geom) => CO,
        (ActLayout::Nchw16c, _) => kernels.gemm_b.nr,
        (_, ActLayout::Nchw16c) => kernels.gemm_tb.nr,
        _ if algo.transposed() => kernels.gemm_t.nr,
        _ => kernels.gemm.mr,
    }
}

/// One job: output columns `col0 .. col0 + ncols` and the output channels of panels `panels`
/// of one image and group, with the operands of that image and group that every algorithm's
/// driver starts from.
#[derive(Clone, Debug)]
struct Job<'a> {
    col0: usize,
    ncols: usize,
    panels: Range<usize>,
    /// The `in/groups` input planes of the image and group.
    img: &'a [f32],
    /// The group's packed weights.
    weights: &'a [f32],
    /// The group's biases, zero-padded to `m_pad`.
    bias: &'a [f32],
    /// Element of the output where the group's first output plane of the image starts.
    out_base: usize,
}

/// What the tasks of one [`PackedConv::run_tasks`] call share: the input's shape, the output
/// and the epilogue.
#[derive(Clone, Copy, Debug)]
struct Io<'a> {
    in_shape: Shape,
    out: OutPtr<'a>,
    ep: Epilogue,
}
