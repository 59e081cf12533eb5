//! The Winograd `F(m, 3)` driver (3x3, stride 1, padding 1).
//!
//! Per task (image, group, block of `nc` tiles):
//! 1. the input transform writes `V = B^T d B` of every tile and input channel straight into
//!    `α²` packed `B` matrices (`in/groups x nc`, `NR`-column panels);
//! 2. one GEMM per transform position `ξ`: `M_ξ = U_ξ · V_ξ` through the GEMM micro-kernel,
//!    `U_ξ` the transformed weights packed at construction;
//! 3. the output transform `Y = A^T M A` adds the bias, the old output (accumulate) and
//!    applies ReLU while writing each tile, clipped at the right and bottom edges.

use alloc::vec;
use alloc::vec::Vec;

use super::{Job, Layout, OutPtr, PackedConv};
use crate::arch::winograd::{InputArgs, OutputArgs, G2, G4, G6};
use crate::arch::Tile;
use crate::epilogue::Epilogue;
use crate::shape::{Conv2dGeometry, Shape};

/// `G` of `F(m, 3)` as rows of 3.
fn g_matrix(m: usize) -> &'static [[f64; 3]] {
    match m {
        2 => &G2,
        4 => &G4,
        6 => &G6,
        _ => unreachable!("F({m},3) is not implemented"),
    }
}

/// Transforms every 3x3 filter to `U = G g G^T` (in `f64`, rounded once) and packs `U_ξ` into
/// `[group][ξ][panel][in/groups][MR]`.
pub(super) fn pack_weights(
    geom: &Conv2dGeometry,
    weight: &[f32],
    m: usize,
    mr: usize,
    m_pad: usize,
) -> Vec<f32> {
    let g_mat = g_matrix(m);
    let alpha = m + 2;
    let (cin_g, cout_g) = (geom.in_per_group(), geom.out_per_group());
    let group_len = alpha * alpha * m_pad * cin_g;
    let mut a = vec![0.0; geom.groups * group_len];
    for g in 0..geom.groups {
        for co in 0..cout_g {
            let (panel, r) = (co / mr, co % mr);
            for ci in 0..cin_g {
                let w = &weight[((g * cout_g + co) * cin_g + ci) * 9..][..9];
                // t = G g (alpha x 3), then u = t G^T (alpha x alpha).
                let mut t = [[0.0f64; 3]; 8];
                for (i, ti) in t.iter_mut().enumerate().take(alpha) {
                    for (c, tc) in ti.iter_mut().enumerate() {
                        *tc = (0..3).map(|k| g_mat[i][k] * w[k * 3 + c] as f64).sum();
                    }
                }
                for i in 0..alpha {
                    for j in 0..alpha {
                        let u: f64 = (0..3).map(|c| t[i][c] * g_mat[j][c]).sum();
                        let xi = i * alpha + j;
                        let at = g * group_len + (xi * m_pad + panel * mr) * cin_g + ci * mr + r;
                        a[at] = u as f32;
                    }
                }
            }
        }
    }
    a
}

/// Scratch of one task: `V` (`α² x in/groups x nc`) and `M` (`α² x m_pad x nc`), `nc` rounded
/// up to `NR`.
pub(super) fn scratch_len(
    geom: &Conv2dGeometry,
    m: usize,
    nc: usize,
    nr: usize,
    m_pad: usize,
) -> usize {
    let ncp = nc.div_ceil(nr) * nr;
    (m + 2) * (m + 2) * ncp * (geom.in_per_group() + m_pad)
}

/// Runs one task.
///
/// # Safety
/// `out` holds the convolution's output and no other thread accesses this job's elements.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn run(
    pc: &PackedConv,
    l: &Layout,
    m: usize,
    job: Job,
    input: &[f32],
    in_shape: Shape,
    out: OutPtr<'_>,
    ep: Epilogue,
    scratch: &mut [f32],
) {
    let geom = &pc.geom;
    let kern = pc.kernels.gemm;
    let wk = pc.kernels.winograd[m / 2 - 1];
    let (mr, nr) = (kern.mr, kern.nr);
    let alpha2 = (m + 2) * (m + 2);
    let (cin_g, cout_g) = (geom.in_per_group(), geom.out_per_group());
    let plane = in_shape.h * in_shape.w;
    let img = &input[(job.n * in_shape.c + job.g * cin_g) * plane..][..cin_g * plane];
    let ohw = l.out.h * l.out.w;
    let out_base = (job.n * l.out.c + job.g * cout_g) * ohw;
    let tiles_w = l.out.w.div_ceil(m);
    let ncp = job.ncols.div_ceil(nr) * nr;
    let (v, mbuf) = scratch.split_at_mut(alpha2 * cin_g * ncp);
    let mbuf = &mut mbuf[..alpha2 * pc.m_pad * ncp];

    // Runs of at most `lanes` tiles within one tile row and one NR panel.
    let runs = || {
        let mut q = 0;
        core::iter::from_fn(move || {
            if q >= job.ncols {
                return None;
            }
            let t = job.col0 + q;
            let (ty, tx) = (t / tiles_w, t % tiles_w);
            let count = wk.lanes.min(tiles_w - tx).min(nr - q % nr).min(job.ncols - q);
            let run = (q, ty, tx, count);
            q += count;
            Some(run)
        })
    };

    let v_ptr = v.as_mut_ptr();
    for ci in 0..cin_g {
        for (q, ty, tx, count) in runs() {
            let args = InputArgs {
                src: img[ci * plane..].as_ptr(),
                h: in_shape.h,
                w: in_shape.w,
                y0: (ty * m) as isize - 1,
                x0: (tx * m) as isize - 1,
                count,
                // SAFETY: panel `q / nr`, row `ci`, column `q % nr` of `V_0`, inside `v`.
                dst: unsafe { v_ptr.add((q / nr) * cin_g * nr + ci * nr + q % nr) },
                dst_stride: cin_g * ncp,
            };
            // SAFETY: the plane is `h x w` floats of `input`; the `α²` destinations
            // `ξ * cin_g * ncp + ...` with `count` columns left in the panel lie inside `v`;
            // `count <= lanes`; the kernels' ISA was checked when `pc` was built.
            unsafe { (wk.input)(&args) };
        }
    }

    let a_group = &pc.a[job.g * alpha2 * pc.m_pad * cin_g..][..alpha2 * pc.m_pad * cin_g];
    let m_ptr = mbuf.as_mut_ptr();
    for xi in 0..alpha2 {
        for p in 0..pc.m_pad / mr {
            for j in 0..ncp / nr {
                let tile = Tile {
                    k: cin_g,
                    a: a_group[(xi * pc.m_pad + p * mr) * cin_g..].as_ptr(),
                    b: v[xi * cin_g * ncp + j * cin_g * nr..].as_ptr(),
                    ldb: nr,
                    // SAFETY: row `p * mr` column `j * nr` of `M_ξ` (`m_pad x ncp`), in `mbuf`.
                    c: unsafe { m_ptr.add(xi * pc.m_pad * ncp + p * mr * ncp + j * nr) },
                    ldc: ncp,
                    bias: core::ptr::null(),
                    load_c: false,
                    relu: false,
                };
                // SAFETY: full `mr x nr` tiles of `U_ξ` (cin_g steps), `V_ξ` panel `j` and
                // `M_ξ`, all padded to whole panels; distinct buffers.
                unsafe { (kern.run)(&tile) };
            }
        }
    }

    let bias = &pc.bias[job.g * pc.m_pad..];
    for co in 0..cout_g {
        for (q, ty, tx, count) in runs() {
            let args = OutputArgs {
                src: mbuf[co * ncp + q..].as_ptr(),
                src_stride: pc.m_pad * ncp,
                // SAFETY: the channel plane `co` of this image and group is inside `out`.
                dst: unsafe { out.ptr.add(out_base + co * ohw) },
                h: l.out.h,
                w: l.out.w,
                y0: ty * m,
                x0: tx * m,
                count,
                bias: bias[co],
                accumulate: ep.accumulate,
                relu: ep.relu,
            };
            // SAFETY: `M` holds `α²` rows of `m_pad x ncp` and `q + count <= ncp`; the tiles
            // `ty, tx ..` of this job lie in the plane (`ty * m < h`, `tx * m < w`) and belong
            // to this task only; `count <= lanes`.
            unsafe { (wk.output)(&args) };
        }
    }
}
