//! The GEMM driver: implicit im2col into packed panels (or the input rows in place for
//! pointwise convolutions), `MR x NR` micro-kernel tiles, epilogue fused into the last store.

use super::{ConvAlgo, Io, Job, Layout, OutPtr, PackedConv};
use crate::aligned::AlignedVec;
use crate::arch::{GemmKernel, Tile, MAX_TILE};
use crate::shape::{Conv2dGeometry, Shape};

/// Packs `[out, in/groups, kh, kw]` weights into `[group][panel][k][MR]`, zero rows past the
/// group's output channels. Step `k` of the reduction takes element `source(k)` of a weight
/// row: `k` itself for the im2col order, another order for blocked input
/// (`blocked::weight_source`).
pub(super) fn pack_weights(
    geom: &Conv2dGeometry,
    weight: &[f32],
    mr: usize,
    m_pad: usize,
    source: impl Fn(usize) -> usize,
) -> AlignedVec {
    let depth = geom.in_per_group() * geom.kernel_h * geom.kernel_w;
    let cout_g = geom.out_per_group();
    let mut a = AlignedVec::zeros(geom.groups * m_pad * depth);
    for g in 0..geom.groups {
        for p in 0..m_pad / mr {
            let panel = &mut a[(g * m_pad + p * mr) * depth..][..mr * depth];
            for r in 0..mr.min(cout_g - p * mr) {
                let row = &weight[(g * cout_g + p * mr + r) * depth..][..depth];
                for k in 0..depth {
                    panel[k * mr + r] = row[source(k)];
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
pub(super) unsafe fn run(
    pc: &PackedConv,
    l: &Layout,
    job: &Job<'_>,
    io: Io<'_>,
    scratch: &mut [f32],
) {
    let geom = &pc.geom;
    let kern = l.gemm;
    let (mr, nr) = (kern.mr, kern.nr);
    let cout_g = geom.out_per_group();
    let Io { in_shape, out, ep } = io;
    let plane = in_shape.h * in_shape.w;
    let (img, a_group, bias, out_base) = (job.img, job.weights, job.bias, job.out_base);
    let ohw = l.out.h * l.out.w;
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
            let (panels, phases) = scratch.split_at_mut(l.kc * job.ncols.div_ceil(nr) * nr);
            let cols = (job.col0, job.ncols);
            pack_b(geom, img, in_shape, l.out, k0, kc, cols, nr, panels, phases);
        }
        let first = chunk == 0;
        let last = chunk + 1 == chunks;
        // One `B` panel (`kc x NR`) stays in L1 while every `A` panel streams past it.
        for j in 0..panels {
            let cols = nr.min(job.ncols - j * nr);
            for p in job.panels.clone() {
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
                    lda: mr,
                    a_offsets: core::ptr::null(),
                    b,
                    ldb,
                    c: core::ptr::null_mut(),
                    ldc: ohw,
                    bias: if first { bias[p * mr..].as_ptr() } else { core::ptr::null() },
                    load_c: !first || ep.accumulate,
                    relu: last && ep.relu,
                    // While the first `A` panel passes over an in-place `B` panel, the next
                    // one (`kc` rows a whole plane apart, which the hardware prefetchers do
                    // not follow) is fetched into the cache; packed panels are contiguous and
                    // gained nothing from it.
                    prefetch: if direct && p == job.panels.start && (j + 2) * nr <= job.ncols {
                        img[k0 * plane + job.col0 + (j + 1) * nr..].as_ptr()
                    } else {
                        core::ptr::null()
                    },
                    prefetch_ld: ldb,
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

/// Floats [`pack_b`] needs besides the panels: the phase-split input rows of one (channel,
/// kernel row) for the output rows a block of `nc` columns touches.
pub(super) fn phases_len(geom: &Conv2dGeometry, in_shape: Shape, out: Shape, nc: usize) -> usize {
    if split_phases(geom) {
        (nc.div_ceil(out.w) + 1).min(out.h) * in_shape.w.div_ceil(geom.stride_w) * geom.stride_w
    } else {
        0
    }
}

/// Whether [`pack_b`] splits input rows into phases: with a horizontal stride and several
/// kernel columns to share each split row.
fn split_phases(geom: &Conv2dGeometry) -> bool {
    geom.stride_w > 1 && geom.kernel_w > 1
}

/// Packs rows `k0 .. k0 + kc` and columns `col0 .. col0 + ncols` of the implicit im2col matrix
/// of one image and group (`img`: its `in/groups` channel planes) into `NR`-column panels
/// (`dst[(panel * kc + k) * nr + j]`), zero where the window reads padding and past `ncols`.
///
/// Row by row, so each input row is read front to back (which the hardware prefetchers
/// follow), with runs split at output-row and panel boundaries. With a horizontal stride `s`
/// the input rows of one (channel, kernel row) are first split into their `s` phases
/// (`x = j * s + q`) in `phases`, so that every kernel column copies contiguous runs.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_b(
    geom: &Conv2dGeometry,
    img: &[f32],
    in_shape: Shape,
    out: Shape,
    k0: usize,
    kc: usize,
    (col0, ncols): (usize, usize),
    nr: usize,
    dst: &mut [f32],
    phases: &mut [f32],
) {
    let (ih, iw) = (in_shape.h, in_shape.w);
    let plane = ih * iw;
    let (kh, kw) = (geom.kernel_h, geom.kernel_w);
    let (sh, sw) = (geom.stride_h, geom.stride_w);
    let (ph, pw) = (geom.pad_h as isize, geom.pad_w as isize);
    let pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0;
    let panels = ncols.div_ceil(nr);
    let dst = &mut dst[..panels * kc * nr];
    let tail = panels * nr - ncols;
    let (oy0, ox0) = (col0 / out.w, col0 % out.w);
    // Phase rows: `phase_w` floats per phase, `sw` phases per output row of the block.
    let split = split_phases(geom);
    let phase_w = iw.div_ceil(sw);
    let mut phased = None;
    // The (channel, kernel row, kernel column) of row `k`, advanced without divisions.
    let mut next = (k0 / (kh * kw), (k0 / kw) % kh, k0 % kw);
    for kk in 0..kc {
        let (ci, ky, kx) = next;
        next = match (ky + 1 == kh, kx + 1 == kw) {
            (_, false) => (ci, ky, kx + 1),
            (false, true) => (ci, ky + 1, 0),
            (true, true) => (ci + 1, 0, 0),
        };
        let src = &img[ci * plane..][..plane];
        let at = |q: usize| (q / nr * kc + kk) * nr + q % nr;
        if tail > 0 {
            dst[at(ncols)..][..tail].fill(0.0);
        }
        if pointwise {
            let mut q = 0;
            while q < ncols {
                let run = (ncols - q).min(nr - q % nr);
                copy(&mut dst[at(q)..][..run], &src[col0 + q..][..run]);
                q += run;
            }
            continue;
        }
        let rows = (col0 + ncols - 1) / out.w - oy0 + 1;
        if split && phased != Some((ci, ky)) {
            phased = Some((ci, ky));
            for (r, row) in phases[..rows * sw * phase_w].chunks_exact_mut(sw * phase_w).enumerate()
            {
                let iy = ((oy0 + r) * sh + ky) as isize - ph;
                if iy < 0 || iy >= ih as isize {
                    continue;
                }
                let line = &src[iy as usize * iw..][..iw];
                let (even, odd) = row.split_at_mut(phase_w);
                if sw == 2 {
                    for ((e, o), pair) in
                        even.iter_mut().zip(odd.iter_mut()).zip(line.chunks_exact(2))
                    {
                        (*e, *o) = (pair[0], pair[1]);
                    }
                    if iw % 2 == 1 {
                        even[iw / 2] = line[iw - 1];
                    }
                } else {
                    for (q, phase) in row.chunks_exact_mut(phase_w).enumerate() {
                        for (p, v) in phase.iter_mut().zip(line[q.min(iw)..].iter().step_by(sw)) {
                            *p = *v;
                        }
                    }
                }
            }
        }
        // Input column `ox * sw + kx - pw` is element `ox + shift` of phase `q`.
        let (q, shift) = (
            (kx as isize - pw).rem_euclid(sw as isize),
            (kx as isize - pw).div_euclid(sw as isize),
        );
        let phase_len = (iw as isize - q).max(0) as usize;
        let phase_len = phase_len.div_ceil(sw) as isize;
        let (mut oy, mut ox, mut c) = (oy0, ox0, 0);
        while c < ncols {
            let run = (ncols - c).min(out.w - ox).min(nr - c % nr);
            let seg = &mut dst[at(c)..][..run];
            let iy = (oy * sh + ky) as isize - ph;
            if iy < 0 || iy >= ih as isize {
                seg.fill(0.0);
            } else {
                // Run element `i` reads element `j0 + i * step` of `line`, of length `len`.
                let (line, j0, step, len) = if split {
                    let row = &phases[(oy - oy0) * sw * phase_w..][..sw * phase_w];
                    (&row[q as usize * phase_w..][..phase_w], ox as isize + shift, 1, phase_len)
                } else {
                    let line = &src[iy as usize * iw..][..iw];
                    (line, (ox * sw) as isize + kx as isize - pw, sw, iw as isize)
                };
                // Outputs `lo .. hi` of the run read inside the row; the rest is padding.
                let lo = ((-j0).max(0) as usize).div_ceil(step).min(run);
                let hi = ((len - j0).max(0) as usize).div_ceil(step).clamp(lo, run);
                seg[..lo].fill(0.0);
                seg[hi..].fill(0.0);
                if lo < hi {
                    let s0 = (j0 + (lo * step) as isize) as usize;
                    if step == 1 {
                        copy(&mut seg[lo..hi], &line[s0..s0 + hi - lo]);
                    } else {
                        let src = line[s0..].iter().step_by(step);
                        seg[lo..hi].iter_mut().zip(src).for_each(|(v, x)| *v = *x);
                    }
                }
            }
            c += run;
            ox += run;
            if ox == out.w {
                ox = 0;
                oy += 1;
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short runs of packing, in fixed-size pieces that compile
/// to a few vector moves instead of a `memcpy` call each.
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32]) {
    let (mut d, mut s) = (dst.chunks_exact_mut(8), src.chunks_exact(8));
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}
