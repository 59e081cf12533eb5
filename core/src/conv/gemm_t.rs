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

use super::gemm::pack_b;
use super::{Io, Job, Layout, PackedConv};
use crate::arch::transpose::TransposeArgs;
use crate::arch::Tile;

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
    // Pointwise: whole tiles read the NCHW input in place (pixel `r` of step `k` at
    // `k * plane + r`), only a partial last tile is packed; otherwise the job's im2col rows are.
    let pointwise = super::pointwise(geom);
    let packed_tiles = if pointwise { 1 } else { row_panels };
    let (panels, rest) = scratch.split_at_mut(depth * packed_tiles * mr);
    let (acc, phases) = rest.split_at_mut(row_panels * mr * nr);
    let whole = if pointwise { job.ncols / mr } else { 0 };
    let packed_cols = (job.col0 + whole * mr, job.ncols - whole * mr);
    if packed_cols.1 > 0 {
        pack_b(geom, img, in_shape, l.out, 0, depth, packed_cols, mr, panels, phases);
    }
    // The row operand of tile `i` from step `k0`, and its step stride.
    let a_tile = |i: usize, k0: usize| {
        if i < whole {
            (img[k0 * plane + job.col0 + i * mr..].as_ptr(), plane)
        } else {
            (panels[(i - whole) * depth * mr + k0 * mr..].as_ptr(), mr)
        }
    };
    let chunks = depth.div_ceil(l.kc);
    let next_chunk = |p: usize, chunk: usize| {
        if chunk + 1 < chunks {
            w_group[p * nr * depth + (chunk + 1) * l.kc * nr..].as_ptr()
        } else if p + 1 < job.panels.end {
            w_group[(p + 1) * nr * depth..].as_ptr()
        } else {
            core::ptr::null()
        }
    };
    for p in job.panels.clone() {
        let chans = nr.min(cout_g - p * nr);
        let w_panel = &w_group[p * nr * depth..][..nr * depth];
        // `kc` steps of one weight panel stay in L1 while every pixel tile passes; the job's
        // `pixels x NR` sums accumulate in `acc` over the chunks.
        for chunk in 0..chunks {
            let k0 = chunk * l.kc;
            let kc = l.kc.min(depth - k0);
            for i in 0..row_panels {
                let (a, lda) = a_tile(i, k0);
                let tile = Tile {
                    k: kc,
                    a,
                    lda,
                    b: w_panel[k0 * nr..].as_ptr(),
                    ldb: nr,
                    c: acc[i * mr * nr..].as_mut_ptr(),
                    ldc: nr,
                    bias: core::ptr::null(),
                    load_c: chunk > 0,
                    relu: false,
                    // The first tile fetches the next chunk of weights (of this panel or the
                    // next) while the weights of this one, fetched the same way, are in cache:
                    // these layers' weights come from memory, and the prefetchers stop at
                    // every page.
                    prefetch: if i == 0 { next_chunk(p, chunk) } else { core::ptr::null() },
                };
                // SAFETY: `a` is `kc` steps of a packed `depth x MR` panel, or of `MR` pixels
                // inside each input plane (`i < whole`); `b` `kc` steps of a packed
                // `depth x NR` panel; `c` an `MR x NR` block of `acc`.
                unsafe { (kern.run)(&tile) };
            }
        }
        let c0 = out_base + p * nr * ohw + job.col0;
        debug_assert!(c0 + (chans - 1) * ohw + job.ncols <= out.len);
        let args = TransposeArgs {
            src: acc.as_ptr(),
            src_ld: nr,
            rows: job.ncols,
            cols: chans,
            bias: bias[p * nr..][..chans].as_ptr(),
            // SAFETY: channels `p*nr .. p*nr + chans` of this group and the job's pixels are
            // inside `out` and belong to this task.
            dst: unsafe { out.ptr.add(c0) },
            dst_ld: ohw,
            accumulate: ep.accumulate,
            relu: ep.relu,
        };
        // SAFETY: `acc` holds the job's `ncols x nr` sums (`ncols * nr` is bounded by the
        // scratch budget, far below `i32::MAX`);
        // the output run of each channel is this task's; the ISA was checked at packing.
        unsafe { (pc.kernels.store_t)(&args) };
    }
}
