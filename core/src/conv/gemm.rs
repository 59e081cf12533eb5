//! The GEMM driver: implicit im2col into packed panels (or the input rows in place for
//! pointwise convolutions), `MR x NR` micro-kernel tiles, epilogue fused into the last store.

use alloc::vec;
use alloc::vec::Vec;

use super::{ConvAlgo, Job, Layout, OutPtr, PackedConv};
use crate::arch::{GemmKernel, Tile, MAX_TILE};
use crate::epilogue::Epilogue;
use crate::shape::{Conv2dGeometry, Shape};

/// Packs `[out, in/groups, kh, kw]` weights into `[group][panel][k][MR]`, zero rows past the
/// group's output channels.
pub(super) fn pack_weights(
    geom: &Conv2dGeometry,
    weight: &[f32],
    mr: usize,
    m_pad: usize,
) -> Vec<f32> {
    let depth = geom.in_per_group() * geom.kernel_h * geom.kernel_w;
    let cout_g = geom.out_per_group();
    let mut a = vec![0.0; geom.groups * m_pad * depth];
    for g in 0..geom.groups {
        for p in 0..m_pad / mr {
            let panel = &mut a[(g * m_pad + p * mr) * depth..][..mr * depth];
            for r in 0..mr.min(cout_g - p * mr) {
                let row = &weight[(g * cout_g + p * mr + r) * depth..][..depth];
                for (k, w) in row.iter().enumerate() {
                    panel[k * mr + r] = *w;
                }
            }
        }
    }
    a
}

/// Runs one task of a GEMM or Direct convolution.
///
/// # Safety
/// `out` holds the convolution's output and no other thread accesses this job's elements.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run(
    pc: &PackedConv,
    l: &Layout,
    job: Job,
    input: &[f32],
    in_shape: Shape,
    out: OutPtr<'_>,
    ep: Epilogue,
    scratch: &mut [f32],
) {
    let geom = &pc.geom;
    let kern = pc.kernels.gemm;
    let (mr, nr) = (kern.mr, kern.nr);
    let (cin_g, cout_g) = (geom.in_per_group(), geom.out_per_group());
    let plane = in_shape.h * in_shape.w;
    let img = &input[(job.n * in_shape.c + job.g * cin_g) * plane..][..cin_g * plane];
    let ohw = l.out.h * l.out.w;
    let out_base = (job.n * l.out.c + job.g * cout_g) * ohw;
    let a_group = &pc.a[job.g * pc.m_pad * pc.depth..][..pc.m_pad * pc.depth];
    let bias = &pc.bias[job.g * pc.m_pad..][..pc.m_pad];
    let panels = job.ncols.div_ceil(nr);
    let direct = pc.algo == ConvAlgo::Direct;
    let chunks = pc.depth.div_ceil(l.kc);
    for chunk in 0..chunks {
        let k0 = chunk * l.kc;
        let kc = l.kc.min(pc.depth - k0);
        if direct {
            // Only a partial last panel is copied: the others are read in place.
            let full = job.ncols / nr;
            if full < panels {
                let cols = job.ncols - full * nr;
                let src = &img[k0 * plane + job.col0 + full * nr..];
                for (k, row) in scratch[..kc * nr].chunks_exact_mut(nr).enumerate() {
                    row[..cols].copy_from_slice(&src[k * plane..][..cols]);
                    row[cols..].fill(0.0);
                }
            }
        } else {
            pack_b(geom, img, in_shape, l.out, k0, kc, job.col0, job.ncols, nr, scratch);
        }
        let first = chunk == 0;
        let last = chunk + 1 == chunks;
        // One `B` panel (`kc x NR`) stays in L1 while every `A` panel streams past it.
        for j in 0..panels {
            let cols = nr.min(job.ncols - j * nr);
            for p in 0..pc.m_pad / mr {
                let rows = mr.min(cout_g - p * mr);
                let (b, ldb) = if direct && cols == nr {
                    (img[k0 * plane + job.col0 + j * nr..].as_ptr(), plane)
                } else if direct {
                    (scratch.as_ptr(), nr)
                } else {
                    (scratch[j * kc * nr..].as_ptr(), nr)
                };
                let tile = Tile {
                    k: kc,
                    a: a_group[(p * mr) * pc.depth + k0 * mr..].as_ptr(),
                    b,
                    ldb,
                    c: core::ptr::null_mut(),
                    ldc: ohw,
                    bias: if first { bias[p * mr..].as_ptr() } else { core::ptr::null() },
                    load_c: !first || ep.accumulate,
                    relu: last && ep.relu,
                };
                let c0 = out_base + p * mr * ohw + job.col0 + j * nr;
                // SAFETY: rows `p*mr .. p*mr + rows` of this group and columns of this job are
                // inside `out` (the layout was derived from its shape) and belong to this task;
                // `a`, `b` and `bias` cover `kc` steps of full panels (packed, padded, or
                // `nr` in-place columns of `kc` input rows).
                unsafe { store_tile(kern, tile, out, c0, rows, cols) };
            }
        }
    }
}

/// Runs the micro-kernel on the `rows x cols` tile of `out` starting at element `c0` (row
/// stride `tile.ldc`), through a local buffer when the tile is partial.
///
/// # Safety
/// As for [`GemmKernel`], with `c = out + c0` valid for `rows x cols`.
unsafe fn store_tile(
    kern: GemmKernel,
    mut tile: Tile,
    out: OutPtr<'_>,
    c0: usize,
    rows: usize,
    cols: usize,
) {
    debug_assert!(c0 + (rows - 1) * tile.ldc + cols <= out.len);
    // SAFETY: `c0` is inside `out` (caller's contract).
    let c = unsafe { out.ptr.add(c0) };
    if rows == kern.mr && cols == kern.nr {
        tile.c = c;
        // SAFETY: a full tile of `out`; the rest is the caller's contract.
        unsafe { (kern.run)(&tile) };
        return;
    }
    let mut buf = [0.0f32; MAX_TILE];
    let ldc = tile.ldc;
    if tile.load_c {
        for r in 0..rows {
            // SAFETY: row `r < rows` of the partial tile is inside `out`.
            let src = unsafe { core::slice::from_raw_parts(c.add(r * ldc), cols) };
            buf[r * kern.nr..][..cols].copy_from_slice(src);
        }
    }
    tile.c = buf.as_mut_ptr();
    tile.ldc = kern.nr;
    // SAFETY: `buf` holds `MAX_TILE >= mr * nr` floats.
    unsafe { (kern.run)(&tile) };
    for r in 0..rows {
        // SAFETY: as above; `buf` is a local, so the ranges do not overlap.
        let dst = unsafe { core::slice::from_raw_parts_mut(c.add(r * ldc), cols) };
        dst.copy_from_slice(&buf[r * kern.nr..][..cols]);
    }
}

/// Packs rows `k0 .. k0 + kc` and columns `col0 .. col0 + ncols` of the implicit im2col matrix
/// of one image and group (`img`: its `in/groups` channel planes) into `NR`-column panels
/// (`dst[(panel * kc + k) * nr + j]`), zero where the window reads padding and past `ncols`.
#[allow(clippy::too_many_arguments)]
fn pack_b(
    geom: &Conv2dGeometry,
    img: &[f32],
    in_shape: Shape,
    out: Shape,
    k0: usize,
    kc: usize,
    col0: usize,
    ncols: usize,
    nr: usize,
    dst: &mut [f32],
) {
    let (ih, iw) = (in_shape.h, in_shape.w);
    let plane = ih * iw;
    let (kh, kw) = (geom.kernel_h, geom.kernel_w);
    let (sh, sw) = (geom.stride_h, geom.stride_w);
    let (ph, pw) = (geom.pad_h as isize, geom.pad_w as isize);
    let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
    for (j, panel) in dst[..ncols.div_ceil(nr) * kc * nr].chunks_exact_mut(kc * nr).enumerate() {
        let p0 = col0 + j * nr;
        let cols = nr.min(ncols - j * nr);
        let (oy0, ox0) = (p0 / out.w, p0 % out.w);
        for (kk, row) in panel.chunks_exact_mut(nr).enumerate() {
            let k = k0 + kk;
            let (ci, rem) = (k / (kh * kw), k % (kh * kw));
            let (ky, kx) = (rem / kw, rem % kw);
            let src = &img[ci * plane..][..plane];
            row[cols..].fill(0.0);
            if pointwise {
                row[..cols].copy_from_slice(&src[p0..][..cols]);
                continue;
            }
            let (mut oy, mut ox, mut q) = (oy0, ox0, 0);
            while q < cols {
                let run = (cols - q).min(out.w - ox);
                let seg = &mut row[q..q + run];
                let iy = (oy * sh + ky) as isize - ph;
                if iy < 0 || iy >= ih as isize {
                    seg.fill(0.0);
                } else {
                    let line = &src[iy as usize * iw..][..iw];
                    let ix0 = (ox * sw + kx) as isize - pw;
                    if sw == 1 {
                        let lo = (-ix0).clamp(0, run as isize) as usize;
                        let hi = (iw as isize - ix0).clamp(lo as isize, run as isize) as usize;
                        seg[..lo].fill(0.0);
                        seg[hi..].fill(0.0);
                        if lo < hi {
                            let s0 = (ix0 + lo as isize) as usize;
                            seg[lo..hi].copy_from_slice(&line[s0..s0 + hi - lo]);
                        }
                    } else {
                        for (i, v) in seg.iter_mut().enumerate() {
                            let ix = ix0 + (i * sw) as isize;
                            *v = if ix >= 0 && ix < iw as isize { line[ix as usize] } else { 0.0 };
                        }
                    }
                }
                q += run;
                ox = 0;
                oy += 1;
            }
        }
    }
}
