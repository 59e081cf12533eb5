//! Convolutions from channel-blocked input to channel-blocked output (`NCHW16c`,
//! [`crate::layout`]): the drivers of [`ConvAlgo::GemmT`](super::ConvAlgo::GemmT) ([`run`]) and
//! of Winograd ([`run_winograd`]), the weights in the reduction order that layout reads, and
//! the operands.
//!
//! The reduction runs over kernel taps, then input channel blocks, then the 16 channels of a
//! block: step `((ky * kw + kx) * cin + ci)`. Each group of 16 steps (one tap of one channel
//! block) reads `MR` pixels x 16 channels, consecutive floats of the blocked input, at one
//! offset per group ([`Kernels::gemm_b`](crate::arch::Kernels::gemm_b)), and a tile's `MR`
//! pixels x `NR` channels are written straight into the blocked output, the epilogue fused.
//! Operands:
//! - pointwise layers read whole tiles of the input in place; a partial last tile is packed;
//! - strided `1x1` layers without padding (projection shortcuts) copy just the pixels they use;
//! - other kernels read windows at one offset per tap and channel block, from a zero-padded,
//!   phase-split, blocked copy of the input rows a job needs, each output row rounded up to
//!   whole tiles so that a tile's pixels are consecutive in the copy (the extra pixels are
//!   computed from padding and never stored); or, where rows are not whole tiles, from
//!   shifted copies ([`shifted`]: `kw` of them for a vertical stride of 1, else one per tap), in
//!   which consecutive output pixels are consecutive across rows too, so nothing is rounded.
//!
//! Tiles that are not whole (the rounded ends of rows, a partial last tile without a shorter
//! kernel, a last panel with fewer channels than `NR`) accumulate in scratch and are stored by
//! `Kernels::store_b`. The tile loop ([`run_tiles`]) is shared with the stem of a blocked
//! network, whose NCHW input is read by `Kernels::gemm_tb`.
//!
//! # Measured against NCHW
//! Best algorithm per layer, AVX-512, one thread, weights cold, GFLOP/s (`COLD=16 [LAYOUT=
//! nchw16c] cargo bench -p shortcut-core --bench conv_table -- avx512`), NCHW -> NCHW16c:
//!
//! | layer                 | NCHW            | NCHW16c         |
//! |-----------------------|-----------------|-----------------|
//! | stem 7x7/2 3->64, 224 | 116 (direct)    | 135 (GemmT)     |
//! | 1x1 64->256, 56x56    | 127 (direct)    | 166             |
//! | 1x1 1024->256, 14x14  | 156 (GemmT)     | 166             |
//! | 1x1 2048->512, 7x7    | 128 (GemmT)     | 138             |
//! | 1x1/2 256->512 -> 28  | 116 (GEMM)      | 159             |
//! | 3x3 64->64, 56x56     | 264 (`F(4,3)`)  | 352 (`F(4,3)`)  |
//! | 3x3 128->128, 28x28   | 275 (`F(6,3)`)  | 315 (`F(4,3)`)  |
//! | 3x3 256->256, 14x14   | 145 (`F(2,3)`)  | 158 (`F(2,3)`)  |
//! | 3x3 512->512, 7x7     | 119 (GemmT)     | 106 (GemmT)     |
//! | 3x3/2 128->128 -> 28  | 129 (GemmT)     | 141             |
//! | 3x3/2 16->32 -> 16    | 55 (direct)     | 112             |
//! | 3x3 64->64, 8x8       | 107 (`F(2,3)`)  | 175 (`F(2,3)`)  |
//! | 3x3 g32 512, 14x14    | 86 (direct)     | 101 (`F(2,3)`)  |
//!
//! In ResNet-50 (one thread, same run): 70.8-72.3 ms NCHW against 61.2-67.4 ms blocked.

use super::gemm_t::{input_offsets, next_chunk};
use super::{direct, Io, Job, Layout, PackedConv};
use crate::arch::blocked::{BlockedStoreArgs, BLOCK};
use crate::arch::Tile;
use crate::shape::{Conv2dGeometry, Shape};

/// Tiles per chunk that share the prefetch of the next chunk's weights ([`run_tiles`],
/// [`run_winograd`], [`spread_prefetch`]). With only the first tile prefetching, the
/// weight-bound 7x7 layers stalled; with every tile of a job prefetching, the stem (hundreds of
/// tiles per job, weights in L1) ran slower (ResNet-18, one thread, 20 interleaved rounds:
/// median of medians 22.90 -> 22.62 ms, best 21.17 -> 20.36 ms, when each of these tiles still
/// requested a whole chunk). With even slices, 4 and 16 measured the same as 8 on ResNet-50.
const PREFETCH_SPREAD: usize = 8;

/// Runs one task of a GemmT convolution with blocked input and output.
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
    let (mr, nr) = (l.gemm.mr, l.gemm.nr);
    let in_shape = io.in_shape;
    let plane = in_shape.h * in_shape.w;
    let (img, ow, depth) = (job.img, l.out.w, pc.depth);
    let tiles = job.ncols.div_ceil(mr);
    let (acc, rest) = scratch.split_at_mut(tiles * mr * nr);
    let vw = row_width(pc, l.out);
    let shifted = shifted(pc, l.out);
    // Phase-split windows need every tile inside one rounded row: `Layout` splits columns in
    // whole tiles.
    debug_assert!(
        !windows(pc)
            || shifted
            || (vw.is_multiple_of(mr)
                && job.col0.is_multiple_of(mr)
                && job.ncols.is_multiple_of(mr))
    );
    let operands = if super::pointwise(geom) {
        let whole = job.ncols / mr;
        let (tile, _) = rest.split_at_mut(geom.in_per_group() * mr);
        let left = job.ncols - whole * mr;
        if left > 0 {
            pack_tile(img, plane, job.col0 + whole * mr, left, mr, tile);
        }
        Operands::InPlace { src: img, plane, first: job.col0, whole, tile }
    } else if !windows(pc) {
        let pixels = tiles * mr;
        let (buf, _) = rest.split_at_mut(geom.in_per_group() * pixels);
        subsample(geom, img, in_shape, ow, job.col0, job.ncols, buf);
        Operands::InPlace { src: buf, plane: pixels, first: 0, whole: tiles, tile: &[] }
    } else if shifted {
        let kw = geom.kernel_w;
        let (row_copies, extra_rows) = shift_copies(geom);
        let first = job.col0 / ow;
        // Copy rows: those of the job's tiles (whole tiles, so a last partial one reads inside
        // the copy), plus the taps below (stride 1).
        let rows = (job.col0 - first * ow + tiles * mr).div_ceil(ow) + extra_rows;
        let shift_len = rows * ow * BLOCK;
        let block_len = row_copies * kw * shift_len;
        let blocks = geom.in_per_group() / BLOCK;
        let (buf, rest) = rest.split_at_mut(blocks * block_len);
        shifted_rows(geom, img, in_shape, (first, rows, ow), buf);
        let offsets = input_offsets(&mut rest[..depth / BLOCK], |g| {
            let (tap, cb) = (g / blocks, g % blocks);
            let (ky, kx) = (tap / kw, tap % kw);
            // `stride_h` 1: one copy per `kx`, the tap's rows `ky` rows on; else one per tap.
            let (copy, row) = if row_copies == 1 { (kx, ky) } else { (tap, 0) };
            cb * block_len + copy * shift_len + row * ow * BLOCK
        });
        Operands::Shifted { buf, offsets, first: first * ow }
    } else {
        let (sh, sw, kw) = (geom.stride_h, geom.stride_w, geom.kernel_w);
        let first = job.col0 / vw;
        let out_rows = (job.col0 + job.ncols - 1) / vw - first + 1;
        let phase_w = phase_width(geom, vw);
        let row_len = sw * phase_w * BLOCK;
        let block_len = direct::input_rows(geom, out_rows) * row_len;
        let blocks = geom.in_per_group() / BLOCK;
        let (buf, rest) = rest.split_at_mut(blocks * block_len);
        direct::padded_rows(geom, img, in_shape, first, (phase_w, BLOCK), buf);
        let offsets = input_offsets(&mut rest[..depth / BLOCK], |g| {
            let (tap, cb) = (g / blocks, g % blocks);
            let (ky, kx) = (tap / kw, tap % kw);
            cb * block_len + ky * row_len + ((kx % sw) * phase_w + kx / sw) * BLOCK
        });
        Operands::Window { buf, offsets, first, row_step: sh * row_len }
    };
    // The row operand of tile `i` from step `k0` (a multiple of 16): start, group stride,
    // per-group offsets.
    let a_tile = |i: usize, k0: usize| match &operands {
        Operands::InPlace { src, plane, first, whole, .. } if i < *whole => {
            let at = (k0 / BLOCK * plane + first + i * mr) * BLOCK;
            (src[at..].as_ptr(), plane * BLOCK, core::ptr::null())
        }
        Operands::InPlace { tile, .. } => {
            (tile[k0 / BLOCK * mr * BLOCK..].as_ptr(), mr * BLOCK, core::ptr::null())
        }
        Operands::Window { buf, offsets, first, row_step } => {
            let v = job.col0 + i * mr;
            let at = (v / vw - first) * row_step + (v % vw) * BLOCK;
            (buf[at..].as_ptr(), 0, offsets[k0 / BLOCK..].as_ptr())
        }
        Operands::Shifted { buf, offsets, first } => {
            let at = (job.col0 + i * mr - first) * BLOCK;
            (buf[at..].as_ptr(), 0, offsets[k0 / BLOCK..].as_ptr())
        }
    };
    let rounded = windows(pc) && !shifted;
    let pixels = |i| tile_pixels(job, i, mr, (vw, ow), rounded);
    // SAFETY: `a_tile(i, k0)` is `MR x 16` floats per group of 16 steps from `k0` (`Layout::kc`
    // chunks are whole groups): whole tiles of the input or of the subsampled copy, the
    // packed last tile, the blocked padded copy at each group's offset (the tile's pixels
    // are in one rounded output row, so `ox + MR - 1 + kx / sw < phase_w`, and its rows are
    // inside the copy), or the shifted copies at each group's offset (each copy holds the
    // rows of the job's whole tiles, and with `stride_h` 1 the `kh - 1` rows its taps reach
    // below them); `acc` holds `tiles` blocked tiles;
    // `out` is this task's (contract).
    unsafe { run_tiles(pc, l, job, io, acc, tiles, a_tile, pixels) };
}

/// Tile `i`'s first output pixel and how many of its rows are output pixels, for a job whose
/// columns are rows of `vw` pixels (`ow` of them output pixels) when `rounded` (windows: a
/// tile ends with its row), else consecutive output pixels (tiles cross rows).
pub(super) fn tile_pixels(
    job: &Job<'_>,
    i: usize,
    mr: usize,
    (vw, ow): (usize, usize),
    rounded: bool,
) -> (usize, usize) {
    let v = job.col0 + i * mr;
    let rows = (job.col0 + job.ncols - v).min(mr);
    if rounded {
        let (oy, ox) = (v / vw, v % vw);
        (oy * ow + ox, rows.min(ow - ox))
    } else {
        (v, rows)
    }
}

/// The tiles of a pixel-rows job into blocked output, for each panel of the job's channels
/// and each chunk of the reduction: whole tiles (`MR` output pixels, the kernel's full width of
/// channels) are written straight into the output with the epilogue fused (bias and the
/// shortcut with the first chunk, ReLU with the last); the others accumulate in `acc` and are
/// stored by `Kernels::store_b`. Shared by the blocked driver and the stem of a blocked network
/// ([`super::gemm_t`]), which differ only in their row operand.
///
/// # Safety
/// `a_tile(i, k0)` is the row operand of tile `i` from step `k0` (start, step or group stride,
/// per-step or per-group offsets) in the form `l.gemm` reads, valid for the chunk's steps;
/// `pixels(i)` is tile `i`'s first output pixel and count (at most `MR`, in one output row
/// unless tiles cross rows); `acc` holds `tiles * MR * NR` floats; `out` holds the
/// convolution's output and no other thread accesses this job's elements.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run_tiles(
    pc: &PackedConv,
    l: &Layout,
    job: &Job<'_>,
    io: Io<'_>,
    acc: &mut [f32],
    tiles: usize,
    a_tile: impl Fn(usize, usize) -> (*const f32, usize, *const u32),
    pixels: impl Fn(usize) -> (usize, usize),
) {
    let kern = l.gemm;
    let (mr, nr) = (kern.mr, kern.nr);
    let cout_g = pc.geom.out_per_group();
    let Io { out, ep, .. } = io;
    let (w_group, bias, out_base) = (job.weights, job.bias, job.out_base);
    let ohw = l.out.h * l.out.w;
    let depth = pc.depth;
    let chunks = depth.div_ceil(l.kc);
    // The first `spread` tiles of a chunk each prefetch a slice of the next chunk of weights.
    let spread = tiles.min(PREFETCH_SPREAD);
    for p in job.panels.clone() {
        let chans = nr.min(cout_g - p * nr);
        // A narrower tile for a last panel of one block, where the ISA has one.
        let pk = pc.panel_kernel(kern, chans);
        // The kernel of a tile of `rows` pixels (a shorter one for a last tile, where the ISA
        // has one), and whether the tile is whole for it: written straight into the output.
        let tile_kernel = |rows: usize| {
            let tk = if rows < mr { pc.tail_kernel(pk, rows) } else { pk };
            (tk, rows == tk.mr && chans == tk.nr)
        };
        let w_panel = &w_group[p * nr * depth..][..nr * depth];
        // Where this panel's first channel block starts in the output.
        let out_panel = out_base + p * nr * ohw;
        for chunk in 0..chunks {
            let k0 = chunk * l.kc;
            let kc = l.kc.min(depth - k0);
            let last = chunk + 1 == chunks;
            let next = next_chunk(w_group, (nr, depth, l.kc), p, chunk, job.panels.end);
            for i in 0..tiles {
                let (a, lda, a_offsets) = a_tile(i, k0);
                let (prefetch, prefetch_ld) = spread_prefetch(i, spread, kc, l.kc * nr, next);
                let (pixel, rows) = pixels(i);
                let (tk, whole) = tile_kernel(rows);
                let (c, ldc) = if whole {
                    debug_assert!(
                        out_panel + (tk.nr / BLOCK - 1) * ohw * BLOCK + (pixel + tk.mr) * BLOCK
                            <= out.len
                    );
                    // SAFETY: a whole tile's pixels and the panel's `nr` channels are inside
                    // `out` (checked above in debug builds) and belong to this task.
                    (unsafe { out.ptr.add(out_panel + pixel * BLOCK) }, ohw * BLOCK)
                } else {
                    (acc[i * mr * nr..].as_mut_ptr(), mr * BLOCK)
                };
                let tile = Tile {
                    k: kc,
                    a,
                    lda,
                    a_offsets,
                    b: w_panel[k0 * nr..].as_ptr(),
                    ldb: nr,
                    c,
                    ldc,
                    // Whole tiles apply the epilogue as they go: bias (and the shortcut) with
                    // the first chunk, ReLU with the last; other tiles in the store below.
                    bias: if whole && chunk == 0 {
                        bias[p * nr..].as_ptr()
                    } else {
                        core::ptr::null()
                    },
                    load_c: chunk > 0 || (whole && ep.accumulate),
                    relu: whole && last && ep.relu,
                    prefetch,
                    prefetch_ld,
                };
                // SAFETY: `a` is the chunk's row operand (contract); `b` is `kc` steps of a
                // packed `depth x NR` panel; `c` a whole tile of the output or an `MR x NR`
                // block of `acc`, which the chunks of this panel alone touch; the tile's kernel
                // has at most `kern`'s rows and columns.
                unsafe { (tk.run)(&tile) };
            }
        }
        for i in 0..tiles {
            let (pixel, rows) = pixels(i);
            if tile_kernel(rows).1 {
                continue;
            }
            let last_block = (p * nr + chans - 1) / BLOCK;
            debug_assert!(out_base + (last_block * ohw + pixel + rows) * BLOCK <= out.len);
            let args = BlockedStoreArgs {
                src: acc[i * mr * nr..].as_ptr(),
                src_row: BLOCK,
                src_block: mr * BLOCK,
                rows,
                cols: chans,
                col0: p * nr,
                bias: bias[p * nr..][..chans].as_ptr(),
                // SAFETY: the group's first channel block starts at `out_base` and the tile's
                // first pixel is inside it.
                dst: unsafe { out.ptr.add(out_base + pixel * BLOCK) },
                dst_block: ohw * BLOCK,
                accumulate: ep.accumulate,
                relu: ep.relu,
            };
            // SAFETY: `acc` holds tile `i`'s sums as a blocked `MR x NR` tile; channels
            // `p*nr .. p*nr + chans` of the group and the tile's `rows` pixels are inside `out`
            // and belong to this task; the ISA was checked at packing.
            unsafe { (pc.kernels.store_b)(&args) };
        }
    }
}

/// What tile `i` of a chunk of `kc` steps prefetches of the next chunk of weights (`next`,
/// null at the end, `len` floats), and the floats it advances per step: the first `spread`
/// tiles each one slice of it, a row of `ld` floats per step, so that lines are requested at a
/// steady rate over the chunk and no line by two tiles (a tile that requested the whole chunk
/// in one burst filled the L1's line-fill buffers and stalled its own loads). Kernels prefetch
/// at most their `nr` floats per step, so after a short last chunk in a job of few tiles
/// (`ld > nr`; never in ResNet, whose depths are multiples of 64) the end of the next chunk is
/// left to the hardware prefetchers.
fn spread_prefetch(
    i: usize,
    spread: usize,
    kc: usize,
    len: usize,
    next: *const f32,
) -> (*const f32, usize) {
    if i >= spread || kc == 0 || next.is_null() {
        return (core::ptr::null(), 0);
    }
    let ld = len.div_ceil(spread * kc);
    // A hint, never dereferenced.
    (next.wrapping_add(i * kc * ld), ld)
}

/// Where a job's row operand comes from.
enum Operands<'s> {
    /// Channel blocks of `plane` pixels in `src`, the job's from `first`: the first `whole`
    /// tiles are read there, a partial last one from `tile`.
    InPlace { src: &'s [f32], plane: usize, first: usize, whole: usize, tile: &'s [f32] },
    /// The blocked padded copy, with one offset per group of 16 steps.
    Window { buf: &'s [f32], offsets: &'s [u32], first: usize, row_step: usize },
    /// The shifted copies ([`shifted_rows`]) from output pixel `first` on, with one offset per
    /// group of 16 steps.
    Shifted { buf: &'s [f32], offsets: &'s [u32], first: usize },
}

/// Output pixels per row of the job's column space: windows from the phase-split copy (not
/// shifted ones) round output rows up to whole tiles of `MR` pixels, so that every tile lies
/// in one row; otherwise the row itself.
pub(super) fn row_width(pc: &PackedConv, out: Shape) -> usize {
    if windows(pc) && !shifted(pc, out) {
        let mr = pc.gemm_kernel(out).mr;
        out.w.div_ceil(mr) * mr
    } else {
        out.w
    }
}

/// Whether a blocked-input convolution reads windows from a padded copy: all but `1x1`
/// kernels without padding.
pub(super) fn windows(pc: &PackedConv) -> bool {
    let g = &pc.geom;
    pc.blocked_in() && !(g.kernel_h * g.kernel_w == 1 && g.pad_h == 0 && g.pad_w == 0)
}

/// Whether windows with output `out` read shifted copies ([`shifted_rows`]) instead of the
/// phase-split padded copy, whose tiles stay in one output row, rounded up to whole tiles:
/// where rows are not whole tiles of `gemm_b`, and on AVX-512 also for stride 1 where rows are
/// not whole 14-row tiles. Tiles then run across rows, so nothing is rounded: ResNet's 7x7 maps
/// run AVX-512's 14-row tiles (and a 7-row one) instead of 7-row ones, and AVX2's 6-row tiles
/// compute 54 pixels of a 7x7 map instead of 84. With a vertical stride of 1 the copies are
/// `kw` times the input; otherwise they are an im2col (`kh * kw` times the pixels read), so
/// where rows fit, the phase-split copy is kept.
pub(super) fn shifted(pc: &PackedConv, out: Shape) -> bool {
    let g = &pc.geom;
    let avx512 = pc.kernels.isa == crate::arch::Isa::Avx512;
    let wide = avx512 && out.w.is_multiple_of(14);
    let fits = out.w.is_multiple_of(pc.kernels.gemm_b.mr);
    let stride_1 = g.stride_h == 1 && g.stride_w == 1;
    windows(pc) && !wide && (!fits || (avx512 && stride_1))
}

/// Copies per kernel column of [`shifted_rows`] and the rows each holds beyond the output
/// rows: stride 1 shares one copy among a column's taps (tap `ky` reads `ky` rows on), so
/// `(1, kh - 1)`; a vertical stride needs one per tap, `(kh, 0)`.
fn shift_copies(geom: &Conv2dGeometry) -> (usize, usize) {
    if geom.stride_h == 1 {
        (1, geom.kernel_h - 1)
    } else {
        (geom.kernel_h, 0)
    }
}

/// Fills `buf` with the shifted copies of the zero-padded blocked input that windows from
/// output row `first` on read, `rows` rows of `ow` pixels each, layout `[block][copy][r][x][16]`
/// ([`shift_copies`]): copy `(ky, kx)` (`ky = 0` with `stride_h` 1) holds at row `r`, column `x`
/// the input pixel `((first + r) * sh + ky - pad_h, x * sw + kx - pad_w)`, zero outside the
/// image. Output pixel `p` (counted from row `first`'s start) then reads tap `(ky, kx)` at
/// `p * 16` of copy `(ky, kx)`, or with stride 1 at `(ky * ow + p) * 16` of copy `kx`:
/// consecutive pixels, across output rows too, are consecutive floats.
fn shifted_rows(
    geom: &Conv2dGeometry,
    img: &[f32],
    in_shape: Shape,
    (first, rows, ow): (usize, usize, usize),
    buf: &mut [f32],
) {
    let (ih, iw) = (in_shape.h, in_shape.w);
    let (sh, sw, kw) = (geom.stride_h, geom.stride_w, geom.kernel_w);
    let plane = ih * iw * BLOCK;
    let shift_len = rows * ow * BLOCK;
    let block_len = shift_copies(geom).0 * kw * shift_len;
    for (cb, copies) in buf.chunks_exact_mut(block_len).enumerate() {
        let src = &img[cb * plane..][..plane];
        for (c, copy) in copies.chunks_exact_mut(shift_len).enumerate() {
            let (ky, kx) = (c / kw, c % kw);
            for (r, row) in copy.chunks_exact_mut(ow * BLOCK).enumerate() {
                let y = (first + r) * sh + ky;
                let Some(line) = direct::input_line(src, (ih, iw), y, geom.pad_h, BLOCK) else {
                    row.fill(0.0);
                    continue;
                };
                // Column `x` reads input column `x * sw + kx - pad_w`.
                direct::padded_columns(row, line, (kx, geom.pad_w, sw), BLOCK);
            }
        }
    }
}

/// Floats of scratch one job of at most `nc` columns (of [`row_width`]-wide rows) needs.
pub(super) fn scratch_len(pc: &PackedConv, out: Shape, nc: usize) -> usize {
    let kern = pc.gemm_kernel(out);
    let (mr, nr) = (kern.mr, kern.nr);
    let pixels = nc.div_ceil(mr) * mr;
    let geom = &pc.geom;
    let operands = if super::pointwise(geom) {
        geom.in_per_group() * mr
    } else if !windows(pc) {
        geom.in_per_group() * pixels
    } else if shifted(pc, out) {
        // A job's pixels start anywhere in its first row.
        let (row_copies, extra_rows) = shift_copies(geom);
        let rows = (out.w - 1 + pixels).div_ceil(out.w) + extra_rows;
        geom.in_per_group() * row_copies * geom.kernel_w * rows * out.w + pc.depth / BLOCK
    } else {
        let vw = row_width(pc, out);
        let rows = direct::input_rows(geom, (nc.div_ceil(vw) + 1).min(out.h));
        let copy = geom.in_per_group() * rows * geom.stride_w * phase_width(geom, vw);
        copy + pc.depth / BLOCK
    };
    pixels * nr + operands
}

/// Where step `k` of the blocked reduction (taps, then input channels: `[kh][kw][in/groups]`)
/// is in a row of the weights `[out][in/groups][kh][kw]`: `gemm::pack_weights` packs them
/// in that order, as any GEMM's, in one pass.
pub(super) fn weight_source(geom: &Conv2dGeometry) -> impl Fn(usize) -> usize {
    let (cin, taps) = (geom.in_per_group(), geom.kernel_h * geom.kernel_w);
    move |k| (k % cin) * taps + k / cin
}

/// Columns per phase of the padded copy: a whole row of tiles (`row_tiles` pixels, a multiple
/// of `MR`) plus the columns the widest tap reaches past it.
pub(super) fn phase_width(geom: &Conv2dGeometry, row_tiles: usize) -> usize {
    row_tiles + (geom.kernel_w - 1) / geom.stride_w
}

/// Packs pixels `p0 .. p0 + n` (`n <= mr`) of the group's blocked input into one tile of `mr`
/// rows per channel block (`[in/16][mr][16]`, rows past `n` zero), for the last tile of a
/// pointwise layer, which would otherwise read past the input.
pub(super) fn pack_tile(
    img: &[f32],
    plane: usize,
    p0: usize,
    n: usize,
    mr: usize,
    dst: &mut [f32],
) {
    for (cb, tile) in dst.chunks_exact_mut(mr * BLOCK).enumerate() {
        let src = &img[(cb * plane + p0) * BLOCK..][..n * BLOCK];
        tile[..n * BLOCK].copy_from_slice(src);
        tile[n * BLOCK..].fill(0.0);
    }
}

/// Copies the input pixels that output pixels `p0 .. p0 + n` of a `1x1` convolution without
/// padding read (`(oy * sh, ox * sw)` for output `(oy, ox)`, `out_w` output columns) into
/// `dst`, `[in/16][dst.len() / in][16]`, zero past `n`: a strided layer's operand as a pointwise
/// layer's, holding only the pixels it uses.
pub(super) fn subsample(
    geom: &Conv2dGeometry,
    img: &[f32],
    in_shape: Shape,
    out_w: usize,
    p0: usize,
    n: usize,
    dst: &mut [f32],
) {
    let plane_in = in_shape.h * in_shape.w * BLOCK;
    let pixels = dst.len() / geom.in_per_group();
    for (cb, tile) in dst.chunks_exact_mut(pixels * BLOCK).enumerate() {
        let src = &img[cb * plane_in..][..plane_in];
        for (i, px) in tile.chunks_exact_mut(BLOCK).enumerate() {
            if i < n {
                let (oy, ox) = ((p0 + i) / out_w, (p0 + i) % out_w);
                let at = (oy * geom.stride_h * in_shape.w + ox * geom.stride_w) * BLOCK;
                px.copy_from_slice(&src[at..][..BLOCK]);
            } else {
                px.fill(0.0);
            }
        }
    }
}

/// Runs one task of a Winograd `F(m, 3)` convolution with blocked input and output: the job's
/// tiles are transformed from the input in place (a tile that reaches into the padding from a
/// zero-padded copy of its window), channels in the vector lanes, into
/// `V_ξ = [in/16][tiles][16]`, one blocked GEMM per `ξ` (tiles as the micro-kernel's rows)
/// gives `M_ξ` for a panel of output channels, and the output transform writes each
/// tile's pixels through the epilogue, clipped at the image's edges.
///
/// # Safety
/// `out` holds the convolution's output and no other thread accesses this job's elements.
pub(super) unsafe fn run_winograd(
    pc: &PackedConv,
    l: &Layout,
    m: usize,
    job: &Job<'_>,
    io: Io<'_>,
    scratch: &mut [f32],
) {
    let geom = &pc.geom;
    let kern = l.gemm;
    let (mr, nr) = (kern.mr, kern.nr);
    let alpha2 = (m + 2) * (m + 2);
    let (cin, cout_g) = (geom.in_per_group(), geom.out_per_group());
    let Io { in_shape, out, ep } = io;
    let (oh, ow) = (l.out.h, l.out.w);
    let ohw = oh * ow;
    let tiles_w = ow.div_ceil(m);
    // Tiles per job rounded up to whole micro-kernel tiles; the extra rows of `V` are zeroed
    // below (the GEMM reads them, and stale NaNs or denormals would slow it), their sums unused.
    let ntp = job.ncols.div_ceil(mr) * mr;
    // One tile's window, for tiles that reach into the padding.
    let (buf, rest) = scratch.split_at_mut(alpha2 * BLOCK);
    let (ih, iw) = (in_shape.h, in_shape.w);
    let (alpha, plane) = (m + 2, ih * iw * BLOCK);
    let (v, rest) = rest.split_at_mut(alpha2 * cin * ntp);
    let mbuf = &mut rest[..alpha2 * nr * ntp];
    for rows in v.chunks_exact_mut(ntp * BLOCK) {
        rows[job.ncols * BLOCK..].fill(0.0);
    }
    let wk = pc.kernels.winograd_b[m / 2 - 1];
    let tile_at = |t: usize| ((job.col0 + t) / tiles_w, (job.col0 + t) % tiles_w);
    // Channel block by channel block, and tile by tile within one: the transform of a block
    // of a tile writes one line into each of the α² planes `V_ξ`, and consecutive tiles write
    // the next lines, so the stores run as α² sequential streams. Tile by tile over all blocks
    // they ran as α² x in/16 interleaved streams (256 at F(2,3) with 256 channels), far more
    // than the hardware prefetchers follow, and the transform took 3.4x as long (1.6x at
    // F(4,3) with 64 and 128 channels) in ResNet-50.
    for cb in 0..cin / BLOCK {
        let src = &job.img[cb * plane..][..plane];
        for t in 0..job.ncols {
            let (ty, tx) = tile_at(t);
            // The tile's window, rows `ty * m - pad_h ..` and columns `tx * m - pad_w ..` of
            // the input: read in place where all of it is inside the input, else copied into
            // `buf` with the padding's zeros. (A padded copy of the job's rows, which every
            // tile read before, cost 0.27 ms per ResNet-50 image in the F(4,3) layers, and
            // most tiles do not reach the padding.)
            let (y0, x0) = ((ty * m).checked_sub(geom.pad_h), (tx * m).checked_sub(geom.pad_w));
            let (src_at, src_row) = match (y0, x0) {
                (Some(y0), Some(x0)) if y0 + alpha <= ih && x0 + alpha <= iw => {
                    (src[(y0 * iw + x0) * BLOCK..].as_ptr(), iw * BLOCK)
                }
                _ => {
                    for (i, row) in buf.chunks_exact_mut(alpha * BLOCK).enumerate() {
                        let y = ty * m + i;
                        match direct::input_line(src, (ih, iw), y, geom.pad_h, BLOCK) {
                            Some(line) => {
                                direct::padded_columns(row, line, (tx * m, geom.pad_w, 1), BLOCK)
                            }
                            None => row.fill(0.0),
                        }
                    }
                    (buf.as_ptr(), alpha * BLOCK)
                }
            };
            let args = crate::arch::blocked::WinogradInputArgs {
                src: src_at,
                src_row,
                src_block: 0,
                blocks: 1,
                dst: v[(cb * ntp + t) * BLOCK..].as_mut_ptr(),
                dst_xi: cin * ntp,
                dst_block: ntp * BLOCK,
            };
            // SAFETY: the tile's `α x α` window of block `cb` is inside the input's block
            // (checked above) or is `buf` (`α²` pixels); `V` holds `α²` x `in/16` blocks of
            // `ntp` tiles; the ISA was checked at packing.
            unsafe { (wk.input)(&args) };
        }
    }
    let chunks = cin.div_ceil(l.kc);
    let panel = |xi: usize, p: usize| &job.weights[(xi * pc.m_pad + p * nr) * cin..][..cin * nr];
    // The next chunk of `U`: in this panel of `U_ξ`, else the next `ξ`'s, else the next
    // panel's first (each is elsewhere in the weights, where hardware prefetchers do not look).
    let next_u = |xi: usize, p: usize, chunk: usize| {
        if chunk + 1 < chunks {
            panel(xi, p)[(chunk + 1) * l.kc * nr..].as_ptr()
        } else if xi + 1 < alpha2 {
            panel(xi + 1, p).as_ptr()
        } else if p + 1 < job.panels.end {
            panel(0, p + 1).as_ptr()
        } else {
            core::ptr::null()
        }
    };
    let spread = (ntp / mr).min(PREFETCH_SPREAD);
    for p in job.panels.clone() {
        let chans = nr.min(cout_g - p * nr);
        let pk = pc.panel_kernel(kern, chans);
        for xi in 0..alpha2 {
            let u = panel(xi, p);
            for chunk in 0..chunks {
                let k0 = chunk * l.kc;
                let kc = l.kc.min(cin - k0);
                let next = next_u(xi, p, chunk);
                for i in 0..ntp / mr {
                    let (prefetch, prefetch_ld) = spread_prefetch(i, spread, kc, l.kc * nr, next);
                    let tile = Tile {
                        k: kc,
                        a: v[xi * cin * ntp + (k0 / BLOCK * ntp + i * mr) * BLOCK..].as_ptr(),
                        lda: ntp * BLOCK,
                        a_offsets: core::ptr::null(),
                        b: u[k0 * nr..].as_ptr(),
                        ldb: nr,
                        c: mbuf[xi * nr * ntp + i * mr * BLOCK..].as_mut_ptr(),
                        ldc: ntp * BLOCK,
                        bias: core::ptr::null(),
                        load_c: chunk > 0,
                        relu: false,
                        prefetch,
                        prefetch_ld,
                    };
                    // SAFETY: `a` is `kc` steps (whole blocks) of `MR` tiles of `V_ξ`, `b` the
                    // matching rows of the packed `U_ξ` panel, `c` the tiles' `NR` channels of
                    // `M_ξ` (blocked, `ntp` tiles per block); the panel kernel has `kern`'s
                    // rows and at most its columns.
                    unsafe { (pk.run)(&tile) };
                }
            }
        }
        for t in 0..job.ncols {
            let (ty, tx) = tile_at(t);
            let (oy, ox) = (ty * m, tx * m);
            let last =
                (p * nr + chans - BLOCK) * ohw + ((oy + m.min(oh - oy) - 1) * ow + ox) * BLOCK;
            debug_assert!(job.out_base + last + m.min(ow - ox) * BLOCK <= out.len);
            let args = crate::arch::blocked::WinogradOutputArgs {
                src: mbuf[t * BLOCK..].as_ptr(),
                src_xi: nr * ntp,
                src_block: ntp * BLOCK,
                blocks: chans / BLOCK,
                bias: job.bias[p * nr..][..chans].as_ptr(),
                // SAFETY: the panel's first channel block of the group, at the tile's first
                // pixel, is inside `out`.
                dst: unsafe { out.ptr.add(job.out_base + p * nr * ohw + (oy * ow + ox) * BLOCK) },
                dst_row: ow * BLOCK,
                dst_block: ohw * BLOCK,
                rows: m.min(oh - oy),
                cols: m.min(ow - ox),
                accumulate: ep.accumulate,
                relu: ep.relu,
            };
            // SAFETY: `M_ξ` holds the tile's sums for the panel's `chans` channels (whole
            // blocks: channels per group are multiples of 16); the clipped tile's pixels of
            // those channels are inside `out` and belong to this task.
            unsafe { (wk.output)(&args) };
        }
    }
}

/// Floats of scratch one Winograd job of at most `nc` tiles needs.
pub(super) fn winograd_scratch_len(pc: &PackedConv, out: Shape, m: usize, nc: usize) -> usize {
    let kern = pc.gemm_kernel(out);
    let (mr, nr) = (kern.mr, kern.nr);
    let cin = pc.geom.in_per_group();
    let ntp = nc.div_ceil(mr) * mr;
    // One tile's window, then `V` and `M`.
    (m + 2) * (m + 2) * (BLOCK + (cin + nr) * ntp)
}
