//! The direct convolution driver: per task (image, group, block of output rows, block of
//! output channels) a zero-padded copy of the input rows the block reads, then one kernel call
//! per output row, [`CO`] output channels and run of pixels.
//!
//! Strides go through the same stride-1 kernel: each padded input row is stored as its `sw`
//! phases (columns `q, q + sw, q + 2sw, ...`), so output pixel `i` reads element `i + kx / sw`
//! of phase `kx % sw`, a contiguous run, and the kernel sees a "virtual" kernel of
//! `kh * sw` rows (one per input row and phase) of `ceil(kw / sw)` columns, with zero weights
//! where `kx` passes `kw` (3x3/2: 4 taps per row where 3 are real; 7x7/2: 8 for 7).

use super::{Io, Job, Layout, PackedConv};
use crate::aligned::AlignedVec;
use crate::arch::blocked::BLOCK;
use crate::arch::direct::{DirectArgs, CO};
use crate::shape::{Conv2dGeometry, Shape};

/// The virtual kernel of a geometry: `(rows, columns)` = `(kh * sw, ceil(kw / sw))`.
fn virtual_kernel(geom: &Conv2dGeometry) -> (usize, usize) {
    (geom.kernel_h * geom.stride_w, geom.kernel_w.div_ceil(geom.stride_w))
}

/// Packs `[out, in/groups, kh, kw]` weights into `[group][out/CO][in/groups][kh][sw][kw'][CO]`
/// (the virtual kernel's taps), zero past the group's output channels (`m_pad` rounds them up
/// to `CO`) and where `kx' * sw + q >= kw`.
pub(super) fn pack_weights(geom: &Conv2dGeometry, weight: &[f32], m_pad: usize) -> AlignedVec {
    let (kh, kw, sw) = (geom.kernel_h, geom.kernel_w, geom.stride_w);
    let (vh, vw) = virtual_kernel(geom);
    let cin_g = geom.in_per_group();
    let taps = cin_g * vh * vw;
    let cout_g = geom.out_per_group();
    let mut a = AlignedVec::zeros(geom.groups * m_pad * taps);
    for g in 0..geom.groups {
        for co in 0..cout_g {
            let (block, c) = (co / CO, co % CO);
            let src = &weight[(g * cout_g + co) * cin_g * kh * kw..][..cin_g * kh * kw];
            let dst = &mut a[(g * m_pad + block * CO) * taps..][..CO * taps];
            for ci in 0..cin_g {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let (q, kv) = (kx % sw, kx / sw);
                        let t = ((ci * kh + ky) * sw + q) * vw + kv;
                        dst[t * CO + c] = src[(ci * kh + ky) * kw + kx];
                    }
                }
            }
        }
    }
    a
}

/// Length of one phase of a padded input row: the output row rounded up to whole vectors,
/// plus the virtual kernel's overhang.
pub(super) fn phase_width(pc: &PackedConv, out: Shape) -> usize {
    let lanes = pc.kernels.direct.lanes;
    out.w.div_ceil(lanes) * lanes + virtual_kernel(&pc.geom).1 - 1
}

/// Floats of one padded input row (all its phases).
pub(super) fn padded_width(pc: &PackedConv, out: Shape) -> usize {
    phase_width(pc, out) * pc.geom.stride_w
}

/// Padded input rows that `rows` consecutive output rows read.
pub(super) fn input_rows(geom: &Conv2dGeometry, rows: usize) -> usize {
    (rows.max(1) - 1) * geom.stride_h + geom.kernel_h
}

/// Scratch of one task with at most `rows` output rows: the padded copy of its input rows.
pub(super) fn scratch_len(pc: &PackedConv, out: Shape, rows: usize) -> usize {
    pc.geom.in_per_group() * input_rows(&pc.geom, rows) * padded_width(pc, out)
}

/// Fills `buf` with the zero-padded input rows that output rows from `first` on read, split
/// into phases: padded row `r` holds input row `first * sh + r - pad_h`, its phase `q` the
/// columns `j * sw + q - pad_w`. Each pixel is `pixel` floats: 1 for NCHW (`buf` holds
/// `in/groups` planes of rows of `sw * phase_w` floats), 16 for channel-blocked input (`img` is
/// `NCHW16c`, `buf` holds `in/groups / 16` planes of rows of `sw * phase_w` 16-float pixels).
pub(super) fn padded_rows(
    geom: &Conv2dGeometry,
    img: &[f32],
    in_shape: Shape,
    first: usize,
    (phase_w, pixel): (usize, usize),
    buf: &mut [f32],
) {
    let (ih, iw) = (in_shape.h, in_shape.w);
    let plane_in = ih * iw * pixel;
    let (sh, sw) = (geom.stride_h, geom.stride_w);
    let row_len = phase_w * sw * pixel;
    let plane = buf.len() / (geom.in_per_group() / pixel);
    for (ci, dst) in buf.chunks_exact_mut(plane).enumerate() {
        let src = &img[ci * plane_in..][..plane_in];
        for (r, row) in dst.chunks_exact_mut(row_len).enumerate() {
            let Some(line) = input_line(src, (ih, iw), first * sh + r, geom.pad_h, pixel) else {
                row.fill(0.0);
                continue;
            };
            for (q, phase) in row.chunks_exact_mut(phase_w * pixel).enumerate() {
                padded_columns(phase, line, (q, geom.pad_w, sw), pixel);
            }
        }
    }
}

/// Row `y - pad_h` of the input plane `src` (`ih` rows of `iw` pixels of `pixel` floats), or
/// `None` where row `y` of the zero-padded input is padding: the rows of [`padded_rows`],
/// `blocked::shifted_rows` and blocked Winograd's windows.
pub(super) fn input_line(
    src: &[f32],
    (ih, iw): (usize, usize),
    y: usize,
    pad_h: usize,
    pixel: usize,
) -> Option<&[f32]> {
    let y = y.checked_sub(pad_h).filter(|&y| y < ih)?;
    Some(&src[y * iw * pixel..][..iw * pixel])
}

/// Fills `dst` (pixels of `pixel` floats: 1 for NCHW, 16 for channel-blocked input) with the
/// input row `line`'s columns `j * sw + q - pad_w` for pixel `j`, zero outside the row: one
/// phase of a padded row ([`padded_rows`]), or one shifted copy's row
/// (`blocked::shifted_rows`).
pub(super) fn padded_columns(
    dst: &mut [f32],
    line: &[f32],
    (q, pad_w, sw): (usize, usize, usize),
    pixel: usize,
) {
    let (n, iw) = (dst.len() / pixel, line.len() / pixel);
    // Pixel `j` is inside the row for `lo <= j < hi`.
    let lo = pad_w.saturating_sub(q).div_ceil(sw).min(n);
    let hi = (iw + pad_w).saturating_sub(q).div_ceil(sw).clamp(lo, n);
    dst[..lo * pixel].fill(0.0);
    dst[hi * pixel..].fill(0.0);
    if lo == hi {
        return;
    }
    let x0 = lo * sw + q - pad_w;
    let inside = &mut dst[lo * pixel..hi * pixel];
    if sw == 1 {
        inside.copy_from_slice(&line[x0 * pixel..][..(hi - lo) * pixel]);
    } else if pixel == 1 {
        let columns = line[x0..].iter().step_by(sw);
        inside.iter_mut().zip(columns).for_each(|(v, x)| *v = *x);
    } else {
        debug_assert_eq!(pixel, BLOCK, "NCHW or NCHW16c");
        copy_pixels_strided(inside, &line[x0 * pixel..], sw);
    }
}

/// Copies pixel `j * stride` of `src` to pixel `j` of `dst`, both blocked (16 floats a pixel),
/// for every pixel of `dst`, in whole 16-float moves the compiler keeps inline: a
/// `copy_from_slice` of a length known only at run time called `memmove` once per pixel (64
/// bytes), which took about as long as the copy itself.
fn copy_pixels_strided(dst: &mut [f32], src: &[f32], stride: usize) {
    let (dst, rest) = dst.as_chunks_mut::<BLOCK>();
    debug_assert!(rest.is_empty(), "whole pixels");
    let (src, _) = src.as_chunks::<BLOCK>();
    for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
        *d = *s;
    }
}

/// Runs one job (output rows `col0 .. col0 + ncols`).
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
    let kern = pc.kernels.direct;
    let (cin_g, cout_g) = (geom.in_per_group(), geom.out_per_group());
    let Io { in_shape, out, ep } = io;
    let img = job.img;
    let (oh, ow) = (l.out.h, l.out.w);
    let out_base = job.out_base;
    let (sh, sw) = (geom.stride_h, geom.stride_w);
    let phase_w = phase_width(pc, l.out);
    let row_len = phase_w * sw;
    let rows = input_rows(geom, job.ncols);
    let plane = rows * row_len;
    let buf = &mut scratch[..cin_g * plane];
    padded_rows(geom, img, in_shape, job.col0, (phase_w, 1), buf);
    let (vh, vw) = virtual_kernel(geom);
    let taps = cin_g * vh * vw;
    let (a_group, bias) = (job.weights, job.bias);
    let span = kern.lanes * kern.max_vectors;
    for r in 0..job.ncols {
        let oy = job.col0 + r;
        for block in job.panels.clone() {
            for x0 in (0..ow).step_by(span) {
                let args = DirectArgs {
                    src: buf[r * sh * row_len + x0..].as_ptr(),
                    plane,
                    pw: phase_w,
                    cin: cin_g,
                    kh: vh,
                    kw: vw,
                    w: a_group[block * CO * taps..].as_ptr(),
                    bias: bias[block * CO..].as_ptr(),
                    // SAFETY: channel `block * CO` of this image and group, pixel (oy, x0):
                    // inside `out`.
                    dst: unsafe { out.ptr.add(out_base + block * CO * oh * ow + oy * ow + x0) },
                    ohw: oh * ow,
                    count: span.min(ow - x0),
                    channels: CO.min(cout_g - block * CO),
                    accumulate: ep.accumulate,
                    relu: ep.relu,
                };
                // SAFETY: the padded copy holds `(ncols - 1) * sh + kh` rows of `sw` phases
                // of `phase_w >= x0 + whole vectors + vw - 1` floats per channel, so virtual
                // row `ky * sw + q` of output row `r` (`phase_w` floats each, consecutive) is
                // inside it; `CO * taps` packed weights and `CO` biases per block; the
                // `channels x count` outputs belong to this job; the ISA was checked when `pc`
                // was built.
                unsafe { (kern.run)(&args) };
            }
        }
    }
}
