//! The direct stride-1 convolution driver: per task (image, group, block of output rows,
//! block of output channels) a zero-padded copy of the input rows the block reads, then one
//! kernel call per output row, [`CO`] output channels and run of pixels.

use alloc::vec;
use alloc::vec::Vec;

use super::{Job, Layout, OutPtr, PackedConv};
use crate::arch::direct::{DirectArgs, CO};
use crate::epilogue::Epilogue;
use crate::shape::{Conv2dGeometry, Shape};

/// Packs `[out, in/groups, kh, kw]` weights into `[group][out/CO][in/groups][kh][kw][CO]`, zero
/// past the group's output channels (`m_pad` rounds them up to `CO`).
pub(super) fn pack_weights(geom: &Conv2dGeometry, weight: &[f32], m_pad: usize) -> Vec<f32> {
    let taps = geom.in_per_group() * geom.kernel_h * geom.kernel_w;
    let cout_g = geom.out_per_group();
    let mut a = vec![0.0; geom.groups * m_pad * taps];
    for g in 0..geom.groups {
        for co in 0..cout_g {
            let (block, c) = (co / CO, co % CO);
            let src = &weight[(g * cout_g + co) * taps..][..taps];
            let dst = &mut a[(g * m_pad + block * CO) * taps..][..CO * taps];
            for (t, w) in src.iter().enumerate() {
                dst[t * CO + c] = *w;
            }
        }
    }
    a
}

/// Row length of the padded input copy: the output row rounded up to whole vectors, plus the
/// kernel's overhang.
pub(super) fn padded_width(pc: &PackedConv, out: Shape) -> usize {
    let lanes = pc.kernels.direct.lanes;
    out.w.div_ceil(lanes) * lanes + pc.geom.kernel_w - 1
}

/// Scratch of one task with at most `rows` output rows: the padded copy of its input rows.
pub(super) fn scratch_len(pc: &PackedConv, out: Shape, rows: usize) -> usize {
    pc.geom.in_per_group() * (rows + pc.geom.kernel_h - 1) * padded_width(pc, out)
}

/// Runs one job (output rows `col0 .. col0 + ncols`).
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
    let kern = pc.kernels.direct;
    let (cin_g, cout_g) = (geom.in_per_group(), geom.out_per_group());
    let (ih, iw) = (in_shape.h, in_shape.w);
    let plane_in = ih * iw;
    let img = &input[(job.n * in_shape.c + job.g * cin_g) * plane_in..][..cin_g * plane_in];
    let (oh, ow) = (l.out.h, l.out.w);
    let out_base = (job.n * l.out.c + job.g * cout_g) * oh * ow;
    let pw = padded_width(pc, l.out);
    let rows = job.ncols + geom.kernel_h - 1;
    let plane = rows * pw;
    let buf = &mut scratch[..cin_g * plane];
    for (ci, dst) in buf.chunks_exact_mut(plane).enumerate() {
        let src = &img[ci * plane_in..][..plane_in];
        for (r, row) in dst.chunks_exact_mut(pw).enumerate() {
            // Padded row `r` holds input row `col0 + r - pad_h`.
            match (job.col0 + r).checked_sub(geom.pad_h).filter(|&y| y < ih) {
                Some(y) => {
                    row[..geom.pad_w].fill(0.0);
                    row[geom.pad_w..geom.pad_w + iw].copy_from_slice(&src[y * iw..][..iw]);
                    row[geom.pad_w + iw..].fill(0.0);
                }
                None => row.fill(0.0),
            }
        }
    }
    let taps = cin_g * geom.kernel_h * geom.kernel_w;
    let a_group = &pc.a[job.g * pc.m_pad * taps..][..pc.m_pad * taps];
    let bias = &pc.bias[job.g * pc.m_pad..][..pc.m_pad];
    let span = kern.lanes * kern.max_vectors;
    for r in 0..job.ncols {
        let oy = job.col0 + r;
        for block in job.panels.clone() {
            for x0 in (0..ow).step_by(span) {
                let args = DirectArgs {
                    src: buf[r * pw + x0..].as_ptr(),
                    plane,
                    pw,
                    cin: cin_g,
                    kh: geom.kernel_h,
                    kw: geom.kernel_w,
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
                // SAFETY: the padded copy holds `kh - 1 + ncols` rows of `pw >= x0 + whole
                // vectors + kw - 1` floats per channel; `CO * taps` packed weights and `CO`
                // biases per block; the `channels x count` outputs belong to this job; the
                // ISA was checked when `pc` was built.
                unsafe { (kern.run)(&args) };
            }
        }
    }
}
