//! The transposed GEMM driver ([`ConvAlgo::GemmT`](super::ConvAlgo::GemmT)): output pixels are
//! the micro-kernel's rows and output channels its columns, `Cᵀ = im2colᵀ · Wᵀ`.
//!
//! Why: on small images (ResNet's 14x14 and 7x7 stages) the channel-rows GEMM has few pixel
//! columns to fill its `NR`-wide tiles (49 pixels in two 32-column panels) and streams every
//! weight once per column panel from beyond L2, since those layers hold 1-9 MiB of weights.
//! Here a tile is `MR` pixels (7 on AVX-512: ResNet maps are `7 * 2^k` wide) by `NR` channels:
//! the job's im2col rows are packed once (pointwise layers read whole tiles of the NCHW input
//! in place, `plane` floats between steps), each weight panel (`depth x NR`) is read from
//! memory once per job and from L1 for the job's other pixel tiles, and no lane is wasted.
//!
//! The cost is the store: the kernel's tile is pixels x channels while the output is NCHW, so
//! the epilogue (bias, accumulate, ReLU) is applied while transposing the tile into place.
//! Into channel-blocked output (`NCHW16c`, the stem of a blocked network) there is no transpose:
//! [`Kernels::gemm_tb`](crate::arch::Kernels::gemm_tb) writes whole tiles straight into the
//! output, 16 channels per pixel ([`blocked::run_tiles`]). Blocked input has its own driver,
//! [`super::blocked`].

use super::gemm::pack_b;
use super::{blocked, direct};
use super::{Io, Job, Layout, PackedConv};
use crate::arch::transpose::TransposeArgs;
use crate::arch::Tile;
use crate::layout::ActLayout;
use crate::shape::Shape;

/// Runs one task of a [`ConvAlgo::GemmT`](super::ConvAlgo::GemmT) convolution.
///
/// # Safety
/// `out` holds the convolution's output and no other thread accesses this job's elements.
pub(super) unsafe fn run(
    pc: &PackedConv,
    l: &Layout,
    job: &Job<'_>,
    io: Io<'_>,
    scratch: &mut [f32],
) {
    let geom = &pc.geom;
    let kern = l.gemm;
    // Rows are pixels, columns channels.
    let (mr, nr) = (kern.mr, kern.nr);
    let cout_g = geom.out_per_group();
    let Io { in_shape, out, ep } = io;
    let plane = in_shape.h * in_shape.w;
    let (img, w_group, bias, out_base) = (job.img, job.weights, job.bias, job.out_base);
    let ohw = l.out.h * l.out.w;
    let depth = pc.depth;
    let row_panels = job.ncols.div_ceil(mr);
    let (acc, rest) = scratch.split_at_mut(row_panels * mr * nr);
    // Output pixels per row of the job's columns (rows rounded up to whole tiles for windows
    // into blocked output; the extra pixels are computed from padding and not stored).
    let vw = row_width(pc, l.out, mr);
    let operands = if window(pc, l.out, mr) {
        // Every tile's rows lie in one output row: each step reads `MR` consecutive floats of
        // a zero-padded, phase-split copy of the input rows (`direct::padded_rows`), at an
        // offset per step (`Tile::a_offsets`) plus one per tile. No im2col copy.
        let (sh, sw) = (geom.stride_h, geom.stride_w);
        let (kh, kw) = (geom.kernel_h, geom.kernel_w);
        let first = job.col0 / vw;
        let out_rows = (job.col0 + job.ncols - 1) / vw - first + 1;
        let phase_w = window_phase_width(pc, l.out, mr);
        let row_len = sw * phase_w;
        let in_plane = direct::input_rows(geom, out_rows) * row_len;
        // Layout rounds blocks to whole tiles, and `window` asks rows of whole tiles.
        debug_assert!(job.col0.is_multiple_of(mr) && job.ncols.is_multiple_of(mr));
        let (buf, rest) = rest.split_at_mut(geom.in_per_group() * in_plane);
        direct::padded_rows(geom, img, in_shape, first, (phase_w, 1), buf);
        let offsets = input_offsets(&mut rest[..depth], |k| {
            let (ci, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
            ci * in_plane + ky * row_len + (kx % sw) * phase_w + kx / sw
        });
        Operands::Window { buf, offsets, first, row_step: sh * row_len }
    } else {
        // Pointwise: whole tiles read the NCHW input in place (pixel `r` of step `k` at
        // `k * plane + r`), only a partial last tile is packed; otherwise the job's im2col
        // rows are.
        let pointwise = super::pointwise(geom);
        let packed_tiles = if pointwise { 1 } else { row_panels };
        let (panels, phases) = rest.split_at_mut(depth * packed_tiles * mr);
        let whole = if pointwise { job.ncols / mr } else { 0 };
        let packed_cols = (job.col0 + whole * mr, job.ncols - whole * mr);
        if packed_cols.1 > 0 {
            pack_b(geom, img, in_shape, l.out, 0, depth, packed_cols, mr, panels, phases);
        }
        Operands::Packed { panels, whole }
    };
    // The row operand of tile `i` from step `k0`: start, step stride, per-step offsets.
    let a_tile = |i: usize, k0: usize| match &operands {
        Operands::Window { buf, offsets, first, row_step } => {
            let p = job.col0 + i * mr;
            let at = (p / vw - first) * row_step + p % vw;
            (buf[at..].as_ptr(), 0, offsets[k0..].as_ptr())
        }
        Operands::Packed { whole, .. } if i < *whole => {
            (img[k0 * plane + job.col0 + i * mr..].as_ptr(), plane, core::ptr::null())
        }
        Operands::Packed { panels, whole } => {
            (panels[(i - whole) * depth * mr + k0 * mr..].as_ptr(), mr, core::ptr::null())
        }
    };
    if pc.layouts.1 == ActLayout::Nchw16c {
        // The stem of a blocked network: whole tiles go straight into the output.
        let rounded = window(pc, l.out, mr);
        let pixels = |i| blocked::tile_pixels(job, i, mr, (vw, l.out.w), rounded);
        // SAFETY: `a_tile(i, k0)` is `MR` floats per step from `k0` (`Kernels::gemm_tb`'s row
        // operand): a packed `depth x MR` panel, or `MR` pixels inside each input plane
        // (`i < whole`), or the padded copy at each step's offset (the tile's pixels are in
        // one rounded output row, so `ox + MR - 1 + kx / sw < phase_w`, and the rows are inside
        // the copy); `acc` holds `row_panels` tiles of `MR x NR`; `out` is this task's
        // (contract).
        unsafe { blocked::run_tiles(pc, l, job, io, acc, row_panels, a_tile, pixels) };
        return;
    }
    let chunks = depth.div_ceil(l.kc);
    for p in job.panels.clone() {
        let chans = nr.min(cout_g - p * nr);
        // A narrower tile for a last panel of one block, where the ISA has one.
        let kern = pc.panel_kernel(kern, chans);
        let w_panel = &w_group[p * nr * depth..][..nr * depth];
        // `kc` steps of one weight panel stay in L1 while every pixel tile passes; the job's
        // `pixels x NR` sums accumulate in `acc` over the chunks.
        for chunk in 0..chunks {
            let k0 = chunk * l.kc;
            let kc = l.kc.min(depth - k0);
            for i in 0..row_panels {
                let (a, lda, a_offsets) = a_tile(i, k0);
                let tile = Tile {
                    k: kc,
                    a,
                    lda,
                    a_offsets,
                    b: w_panel[k0 * nr..].as_ptr(),
                    ldb: nr,
                    c: acc[i * mr * nr..].as_mut_ptr(),
                    ldc: nr,
                    bias: core::ptr::null(),
                    load_c: chunk > 0,
                    relu: false,
                    // The first tile fetches the next chunk of weights while the weights of
                    // this one, fetched the same way, are in cache.
                    prefetch: if i == 0 {
                        next_chunk(w_group, (nr, depth, l.kc), p, chunk, job.panels.end)
                    } else {
                        core::ptr::null()
                    },
                    prefetch_ld: nr,
                };
                // SAFETY: `a` is `kc` steps of a packed `depth x MR` panel, or of `MR` pixels
                // inside each input plane (`i < whole`), or `MR` floats of the padded copy at
                // each step's offset (the tile's pixels are in one output row, so
                // `ox + MR - 1 + kx / sw < phase_w` and the rows are inside the copy); `b` is
                // `kc` steps of a packed `depth x NR` panel; `c` an `MR x NR` block of `acc`.
                unsafe { (kern.run)(&tile) };
            }
        }
        // The job's pixels into NCHW output, one run of pixels per output row.
        let mut v = job.col0;
        while v < job.col0 + job.ncols {
            let (oy, ox) = (v / vw, v % vw);
            let end = (oy * vw + l.out.w).min(job.col0 + job.ncols);
            let (src, pixel, rows) =
                (acc[(v - job.col0) * nr..].as_ptr(), oy * l.out.w + ox, end - v);
            v = (oy + 1) * vw;
            let c0 = out_base + p * nr * ohw + pixel;
            debug_assert!(c0 + (chans - 1) * ohw + rows <= out.len);
            let args = TransposeArgs {
                src,
                src_ld: nr,
                rows,
                cols: chans,
                bias: bias[p * nr..][..chans].as_ptr(),
                // SAFETY: channels `p*nr .. p*nr + chans` of this group and the run's pixels
                // are inside `out` and belong to this task.
                dst: unsafe { out.ptr.add(c0) },
                dst_ld: ohw,
                accumulate: ep.accumulate,
                relu: ep.relu,
            };
            // SAFETY: `acc` holds the run's `rows x nr` sums (`ncols * nr` is bounded by the
            // scratch budget, far below `i32::MAX`); the output run of each channel is this
            // task's; the ISA was checked at packing.
            unsafe { (pc.kernels.store_t)(&args) };
        }
    }
}

/// Where a job's row operand comes from.
enum Operands<'s> {
    /// A zero-padded, phase-split copy of the input rows the job reads, with one offset per
    /// step of the reduction ([`window`]).
    Window { buf: &'s [f32], offsets: &'s [u32], first: usize, row_step: usize },
    /// Packed panels of `MR` pixels; the first `whole` tiles of a pointwise job read the input
    /// in place instead.
    Packed { panels: &'s [f32], whole: usize },
}

/// The first weights of the next chunk of a pixel-rows job (of panel `p`, or of the job's
/// next panel), for the micro-kernel to prefetch while it runs: these layers' weights come
/// from memory, and the hardware prefetchers stop at every page. Panels are `nr x depth`,
/// chunks `kc` steps.
pub(super) fn next_chunk(
    w_group: &[f32],
    (nr, depth, kc): (usize, usize, usize),
    p: usize,
    chunk: usize,
    panels_end: usize,
) -> *const f32 {
    if (chunk + 1) * kc < depth {
        w_group[p * nr * depth + (chunk + 1) * kc * nr..].as_ptr()
    } else if p + 1 < panels_end {
        w_group[(p + 1) * nr * depth..].as_ptr()
    } else {
        core::ptr::null()
    }
}

/// Views scratch floats as `u32` offsets, offset `g` set to `at(g)`: where step (or group of
/// steps) `g` of the reduction starts in a copy of the input.
pub(super) fn input_offsets(floats: &mut [f32], at: impl Fn(usize) -> usize) -> &mut [u32] {
    let len = floats.len();
    // SAFETY: `u32` has the size and alignment of `f32`, every bit pattern is valid for both,
    // and the returned slice borrows `floats` exclusively.
    let offsets: &mut [u32] =
        unsafe { core::slice::from_raw_parts_mut(floats.as_mut_ptr().cast(), len) };
    for (g, o) in offsets.iter_mut().enumerate() {
        *o = u32::try_from(at(g)).expect("GemmT: input copy beyond 2^32 floats");
    }
    offsets
}

/// Whether a GemmT convolution with output `out` reads its windows from a padded copy
/// ([`Operands::Window`]): a kernel larger than 1x1, and output rows of whole tiles of `mr`
/// pixels, or rounded up to them for blocked output (the stem of a blocked network, e.g. a
/// CIFAR stem at 32x32, where packing the im2col of 7-pixel tiles ran at 14 GFLOP/s).
pub(super) fn window(pc: &PackedConv, out: Shape, mr: usize) -> bool {
    // Strided 1x1 layers (shortcuts) keep the im2col: it copies only the pixels they read,
    // the padded copy every input row and phase.
    pc.geom.kernel_h * pc.geom.kernel_w > 1
        && (out.w.is_multiple_of(mr) || pc.layouts.1 == ActLayout::Nchw16c)
}

/// Pixels per row of a job's columns: output rows rounded up to whole tiles of `mr` for
/// windows, else the output width.
pub(super) fn row_width(pc: &PackedConv, out: Shape, mr: usize) -> usize {
    if window(pc, out, mr) {
        out.w.next_multiple_of(mr)
    } else {
        out.w
    }
}

/// Columns per phase of a window copy: a rounded row plus what the widest tap reaches past
/// it, and at least the direct kernel's width (the copy is [`direct::padded_rows`]).
fn window_phase_width(pc: &PackedConv, out: Shape, mr: usize) -> usize {
    let reach = (pc.geom.kernel_w - 1) / pc.geom.stride_w;
    direct::phase_width(pc, out).max(row_width(pc, out, mr) + reach)
}

/// Floats of scratch one GemmT job of at most `nc` output pixels needs.
pub(super) fn scratch_len(pc: &PackedConv, in_shape: Shape, out: Shape, nc: usize) -> usize {
    let kern = pc.gemm_kernel(out);
    let (mr, nr) = (kern.mr, kern.nr);
    let pixels = nc.div_ceil(mr) * mr;
    let operands = if window(pc, out, mr) {
        // The padded copy of the rows a job touches, and one offset per step.
        let rows =
            direct::input_rows(&pc.geom, (nc.div_ceil(row_width(pc, out, mr)) + 1).min(out.h));
        let row_len = window_phase_width(pc, out, mr) * pc.geom.stride_w;
        pc.geom.in_per_group() * rows * row_len + pc.depth
    } else {
        let packed = if super::pointwise(&pc.geom) { mr } else { pixels };
        packed * pc.depth + super::gemm::phases_len(&pc.geom, in_shape, out, nc)
    };
    pixels * nr + operands
}
