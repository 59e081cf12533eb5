//! The Winograd `F(m, 3)` driver (3x3, stride 1, padding 1).
//!
//! Per task (image, group, block of `nc` tiles):
//! 1. the input transform writes `V = B^T d B` of every tile and input channel straight into
//!    `α²` packed `B` matrices (`in/groups x nc`, `NR`-column panels);
//! 2. one GEMM per transform position `ξ`: `M_ξ = U_ξ · V_ξ` through the GEMM micro-kernel,
//!    `U_ξ` the transformed weights packed at construction;
//! 3. the output transform `Y = A^T M A` adds the bias, the old output (accumulate) and
//!    applies ReLU while writing each tile, clipped at the right and bottom edges.
//!
//! Transposed ([`ConvAlgo::Winograd2T`](super::ConvAlgo::Winograd2T), `4T`): step 2 computes
//! `M_ξᵀ = V_ξᵀ · U_ξᵀ` with the transposed micro-kernel ([`crate::arch::Kernels::gemm_t`]),
//! reading `V_ξ` in place as its row operand (tiles are rows, `lda` apart per channel), and
//! step 3 runs with channels in the vector lanes, each lane writing its own channel's plane of
//! the staging buffer.

use super::{Io, Job, Layout, OutPtr, PackedConv};
use crate::aligned::AlignedVec;
use crate::arch::winograd::{InputArgs, OutputArgs, StoreArgs, G2, G4, G6};
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
) -> AlignedVec {
    let g_mat = g_matrix(m);
    let alpha = m + 2;
    let (cin_g, cout_g) = (geom.in_per_group(), geom.out_per_group());
    let group_len = alpha * alpha * m_pad * cin_g;
    let mut a = AlignedVec::zeros(geom.groups * group_len);
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
                for (i, ti) in t.iter().enumerate().take(alpha) {
                    for (j, gj) in g_mat.iter().enumerate() {
                        let u: f64 = (0..3).map(|c| ti[c] * gj[c]).sum();
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

/// Buffer sizes of one task with at most `nc` tiles per block.
struct Bufs {
    /// Row stride of `V_ξ` and `M_ξ`: the block's tiles rounded up to the GEMM's tile columns
    /// (its rows when transposed) and to the lanes.
    ld: usize,
    /// Tile rows a block can touch.
    tile_rows: usize,
    v: usize,
    m: usize,
    pad: usize,
    /// Staging planes (one, or `lanes` for the transposed variant) of `stage_plane` floats.
    stage: usize,
    stage_plane: usize,
}

impl Bufs {
    /// `nr`: the GEMM's tile columns (or rows when `transposed`), to which `ld` is rounded.
    #[allow(clippy::too_many_arguments)]
    fn new(
        geom: &Conv2dGeometry,
        out: Shape,
        m: usize,
        nc: usize,
        nr: usize,
        lanes: usize,
        m_pad: usize,
        transposed: bool,
    ) -> Bufs {
        let alpha2 = (m + 2) * (m + 2);
        let ld = nc.div_ceil(nr) * nr;
        let ld = ld.div_ceil(lanes) * lanes;
        let tiles_w = out.w.div_ceil(m);
        let tile_rows = (nc.div_ceil(tiles_w) + 1).min(out.h.div_ceil(m));
        Bufs {
            ld,
            tile_rows,
            v: alpha2 * geom.in_per_group() * ld,
            m: alpha2 * m_pad * ld,
            pad: (tile_rows * m + 2) * (tiles_w * m + 2),
            stage: tile_rows * m * tiles_w * m * if transposed { lanes } else { 1 },
            stage_plane: tile_rows * m * tiles_w * m,
        }
    }

    fn len(&self) -> usize {
        self.v + self.m + self.pad + self.stage
    }
}

/// Scratch of one task: `V` (`α² x in/groups x ld`), `M` (`α² x m_pad x ld`), a padded copy of
/// the input rows of one channel and an output staging plane.
pub(super) fn scratch_len(pc: &PackedConv, out: Shape, m: usize, nc: usize) -> usize {
    let k = &pc.kernels;
    let lanes = k.winograd[m / 2 - 1].lanes;
    let (nr, t) = gemm_cols(pc);
    Bufs::new(&pc.geom, out, m, nc, nr, lanes, pc.m_pad, t).len()
}

/// The granularity of the tiles in a block (the GEMM's columns, or its rows when transposed)
/// and whether the GEMM is transposed.
fn gemm_cols(pc: &PackedConv) -> (usize, bool) {
    if pc.algo.transposed() {
        (pc.kernels.gemm_t.mr, true)
    } else {
        (pc.kernels.gemm.nr, false)
    }
}

/// Runs one task.
///
/// # Safety
/// `out` holds the convolution's output and no other thread accesses this job's elements.
pub(super) unsafe fn run(
    pc: &PackedConv,
    l: &Layout,
    m: usize,
    job: &Job<'_>,
    io: Io<'_>,
    scratch: &mut [f32],
) {
    let geom = &pc.geom;
    let kern = pc.kernels.gemm;
    let wk = pc.kernels.winograd[m / 2 - 1];
    let (mr, nr, lanes) = (kern.mr, kern.nr, wk.lanes);
    let (cols, transposed) = gemm_cols(pc);
    let alpha = m + 2;
    let alpha2 = alpha * alpha;
    let (cin_g, cout_g) = (geom.in_per_group(), geom.out_per_group());
    let Io { in_shape, out, ep } = io;
    let (ih, iw) = (in_shape.h, in_shape.w);
    let plane = ih * iw;
    let (img, out_base) = (job.img, job.out_base);
    let ohw = l.out.h * l.out.w;
    let tiles_w = l.out.w.div_ceil(m);
    let bufs = Bufs::new(geom, l.out, m, l.nc, cols, lanes, pc.m_pad, transposed);
    let ld = bufs.ld;
    let (v, rest) = scratch.split_at_mut(bufs.v);
    let (mbuf, rest) = rest.split_at_mut(bufs.m);
    let (pad, stage) = rest.split_at_mut(bufs.pad);
    let stage = &mut stage[..bufs.stage];
    let ty_first = job.col0 / tiles_w;
    let ty_last = (job.col0 + job.ncols - 1) / tiles_w;
    debug_assert!(ty_last - ty_first < bufs.tile_rows);
    let pw_in = tiles_w * m + 2;
    let pw_out = tiles_w * m;
    // Offset of tile `q` of the block in a plane of rows `pw` starting at tile row `ty_first`.
    let base = |q: usize, pw: usize| {
        let t = job.col0 + q.min(job.ncols - 1);
        (((t / tiles_w - ty_first) * m) * pw + (t % tiles_w) * m) as u32
    };

    let pad_rows = (ty_last - ty_first + 1) * m + 2;
    for ci in 0..cin_g {
        let src = &img[ci * plane..][..plane];
        for (pr, row) in pad[..pad_rows * pw_in].chunks_exact_mut(pw_in).enumerate() {
            // Padded row `pr` holds input row `ty_first * m + pr - 1`.
            match (ty_first * m + pr).checked_sub(1).filter(|&y| y < ih) {
                Some(y) => {
                    row[0] = 0.0;
                    row[1..=iw].copy_from_slice(&src[y * iw..][..iw]);
                    row[iw + 1..].fill(0.0);
                }
                None => row.fill(0.0),
            }
        }
        for q in (0..job.ncols).step_by(lanes) {
            let args = InputArgs {
                src: pad.as_ptr(),
                pw: pw_in,
                base: core::array::from_fn(|i| base(q + i, pw_in)),
                dst: v[ci * ld + q..].as_mut_ptr(),
                dst_stride: cin_g * ld,
            };
            // SAFETY: every lane's window (rows of its tile row + α, columns `tx*m .. + α`) is
            // inside the `pad_rows x pw_in` padded copy; `q + lanes <= ld`, so the `α²` rows
            // `ξ * cin_g * ld + ci * ld + q ..` of `V` are inside `v`; the ISA was checked when
            // `pc` was built.
            unsafe { (wk.input)(&args) };
        }
    }

    let (a_group, bias) = (job.weights, job.bias);
    if transposed {
        let kern = pc.kernels.gemm_t;
        let (mr, nr) = (kern.mr, kern.nr);
        let m_ptr = mbuf.as_mut_ptr();
        // The last block of tiles reads rows of `V` past those the input transform wrote (it
        // writes whole vectors of lanes); their results are discarded, but stale scratch could
        // hold NaN or denormals that slow the FMAs, so they are zeroed.
        let (written, read) = (job.ncols.div_ceil(lanes) * lanes, job.ncols.div_ceil(mr) * mr);
        if read > written {
            for row in v[..alpha2 * cin_g * ld].chunks_exact_mut(ld) {
                row[written..read].fill(0.0);
            }
        }
        for xi in 0..alpha2 {
            for p in job.panels.clone() {
                // One `U_ξ` panel (`cin_g x NR`) stays in L1 while every block of tiles passes.
                for tb in 0..job.ncols.div_ceil(mr) {
                    let tile = Tile {
                        k: cin_g,
                        a: v[xi * cin_g * ld + tb * mr..].as_ptr(),
                        lda: ld,
                        a_offsets: core::ptr::null(),
                        b: a_group[(xi * pc.m_pad + p * nr) * cin_g..].as_ptr(),
                        ldb: nr,
                        // SAFETY: row `tb * mr`, column `p * nr` of `M_ξᵀ` (`ld x m_pad`).
                        c: unsafe { m_ptr.add((xi * ld + tb * mr) * pc.m_pad + p * nr) },
                        ldc: pc.m_pad,
                        bias: core::ptr::null(),
                        load_c: false,
                        relu: false,
                        prefetch: core::ptr::null(),
                        prefetch_ld: 0,
                    };
                    // SAFETY: full `mr x nr` tiles: `V_ξ` holds `cin_g` rows of
                    // `ld >= (tb + 1) * mr` tiles, each `U_ξ` panel `cin_g` steps of `nr`,
                    // `M_ξᵀ` `ld` rows of `m_pad >= (p + 1) * nr`; distinct buffers.
                    unsafe { (kern.run)(&tile) };
                }
            }
        }
        let stage_plane = bufs.stage_plane;
        // Channel vectors start inside a panel and end inside `m_pad` only if the lanes divide
        // the panel width (true of every ISA's kernels: 32/16, 16/8, 12/4, 8/8).
        debug_assert_eq!(nr % lanes, 0);
        let chans = (job.panels.start * nr..(job.panels.end * nr).min(cout_g)).step_by(lanes);
        for c0 in chans {
            let count = lanes.min(cout_g - c0);
            for q in 0..job.ncols {
                let tile_base = base(q, pw_out);
                let args = OutputArgs {
                    src: mbuf[q * pc.m_pad + c0..].as_ptr(),
                    src_stride: ld * pc.m_pad,
                    dst: stage.as_mut_ptr(),
                    pw: pw_out,
                    // Lanes `>= count` are not written (`OutputArgs`).
                    base: core::array::from_fn(|i| (i * stage_plane) as u32 + tile_base),
                    count,
                };
                // SAFETY: lanes are channels `c0 ..`, inside `m_pad` (a multiple of `nr`, which
                // the lanes divide) for the `α²` rows of tile `q < ld` of `M_ξᵀ`; lane `i`
                // writes tile `q`'s `m x m` outputs into staging plane `i < lanes`.
                unsafe { (wk.output)(&args) };
            }
            for (i, co) in (c0..c0 + count).enumerate() {
                let plane = &stage[i * stage_plane..][..stage_plane];
                // SAFETY: as for the untransposed store below, from channel `co`'s plane.
                unsafe {
                    store_rows(wk.store, l, m, job, plane, out, out_base + co * ohw, bias[co], ep)
                };
            }
        }
        return;
    }
    let m_ptr = mbuf.as_mut_ptr();
    for xi in 0..alpha2 {
        // One `B` panel stays in L1 while every `A` panel streams past it.
        for j in 0..job.ncols.div_ceil(nr) {
            for p in job.panels.clone() {
                let tile = Tile {
                    k: cin_g,
                    a: a_group[(xi * pc.m_pad + p * mr) * cin_g..].as_ptr(),
                    lda: mr,
                    a_offsets: core::ptr::null(),
                    b: v[xi * cin_g * ld + j * nr..].as_ptr(),
                    ldb: ld,
                    // SAFETY: row `p * mr`, column `j * nr` of `M_ξ` (`m_pad x ld`), in `mbuf`.
                    c: unsafe { m_ptr.add((xi * pc.m_pad + p * mr) * ld + j * nr) },
                    ldc: ld,
                    bias: core::ptr::null(),
                    load_c: false,
                    relu: false,
                    prefetch: core::ptr::null(),
                    prefetch_ld: 0,
                };
                // SAFETY: full `mr x nr` tiles: `U_ξ` panels hold `cin_g` steps, `V_ξ` has
                // `cin_g` rows of `ld >= (j + 1) * nr` columns, `M_ξ` `m_pad` rows of `ld`;
                // distinct buffers.
                unsafe { (kern.run)(&tile) };
            }
        }
    }

    for co in job.panels.start * mr..(job.panels.end * mr).min(cout_g) {
        for q in (0..job.ncols).step_by(lanes) {
            let args = OutputArgs {
                src: mbuf[co * ld + q..].as_ptr(),
                src_stride: pc.m_pad * ld,
                dst: stage.as_mut_ptr(),
                pw: pw_out,
                base: core::array::from_fn(|i| base(q + i, pw_out)),
                count: lanes.min(job.ncols - q),
            };
            // SAFETY: `q + lanes <= ld` for the `α²` rows of `M`; each stored tile's `m x m`
            // outputs are inside the `tile_rows * m x pw_out` staging plane.
            unsafe { (wk.output)(&args) };
        }
        // SAFETY: the staging plane holds channel `co`'s tiles of this job.
        unsafe { store_rows(wk.store, l, m, job, stage, out, out_base + co * ohw, bias[co], ep) };
    }
}

/// Writes the job's tiles of one channel from its staging plane (rows of whole tiles, from the
/// job's first tile row) through the epilogue (`store`) into the channel's output plane at
/// `plane0`, row by row, clipped at the right and bottom edges.
///
/// # Safety
/// `out` holds the convolution's output, and the job's elements of the plane at `plane0` belong
/// to this task; `stage` holds the job's tile rows; `store` is an available ISA's.
#[allow(clippy::too_many_arguments)]
unsafe fn store_rows(
    store: unsafe fn(&StoreArgs),
    l: &Layout,
    m: usize,
    job: &Job,
    stage: &[f32],
    out: OutPtr<'_>,
    plane0: usize,
    bias: f32,
    ep: Epilogue,
) {
    let tiles_w = l.out.w.div_ceil(m);
    let pw_out = tiles_w * m;
    let ty_first = job.col0 / tiles_w;
    let ty_last = (job.col0 + job.ncols - 1) / tiles_w;
    for ty in ty_first..=ty_last {
        let tx_a = if ty == ty_first { job.col0 % tiles_w } else { 0 };
        let tx_b = if ty == ty_last { (job.col0 + job.ncols - 1) % tiles_w + 1 } else { tiles_w };
        let (x_a, x_b) = (tx_a * m, (tx_b * m).min(l.out.w));
        for oy in ty * m..(ty * m + m).min(l.out.h) {
            let args = StoreArgs {
                src: stage[(oy - ty_first * m) * pw_out + x_a..].as_ptr(),
                // SAFETY: row `oy < h`, columns `x_a .. x_b <= w` of the plane at `plane0`
                // (caller's contract): inside `out`.
                out: unsafe { out.ptr.add(plane0 + oy * l.out.w + x_a) },
                len: x_b - x_a,
                bias,
                accumulate: ep.accumulate,
                relu: ep.relu,
            };
            // SAFETY: both runs hold `x_b - x_a` floats (the staging row is `pw_out >= w`
            // wide); the output elements belong to this task's tiles only.
            unsafe { store(&args) };
        }
    }
}
