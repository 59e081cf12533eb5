//! Kernels for the channel-blocked activation layout (`NCHW16c`, see [`crate::layout`]): a
//! micro-kernel that writes its tile straight into blocked output, its row operand read
//! straight from blocked activations (or, for the stem of a blocked network, from plain NCHW
//! pixel rows), and the store that writes a tile of sums into blocked output through the
//! convolution epilogue.
//!
//! In the blocked layout the 16 channels of one pixel are contiguous, so a tile of `MR` output
//! pixels by `NR` channels is `NR / 16` runs of `MR * 16` consecutive floats of the output, and
//! a tile's inputs for 16 consecutive steps of the reduction (one channel block of one kernel
//! tap) are `MR * 16` consecutive floats of the input: neither side is transposed or gathered.
//! Written once against [`Vector`] and compiled per ISA by the `blocked_kernels!` macro.

use super::vector::Vector;
use super::winograd::{input_tile, output_tile};
use super::Tile;

/// Channels per block of the blocked layout (one AVX-512 vector).
pub const BLOCK: usize = 16;

/// The portable body of every ISA's blocked-output micro-kernels: an `MR x NV*N` tile, `G` the
/// steps per group of the row operand: 16 for blocked input (`Kernels::gemm_b`), 1 for the
/// plain pixel rows of NCHW input (`Kernels::gemm_tb`, the stem of a blocked network). It
/// prefetches `t.prefetch` (rows of `t.prefetch_ld`) unless null, in a copy of the loop
/// compiled for that.
///
/// Its [`Tile`] contract has blocked output, and with `G = 16` blocked input:
/// - `t.k` is a multiple of `G`; steps `G*g .. G*g + G` form group `g`, whose rows start at
///   `t.a + t.a_offsets[g]` (or `t.a + g * t.lda` when `a_offsets` is null), and step
///   `G*g + l` of row `r` is at `+ r * G + l` from there (with `G = 1`, step `g`'s `MR`
///   consecutive floats: the operand of `Kernels::gemm_t`);
/// - `c` is blocked too: element `(r, j)` at `c + (j / 16) * ldc + r * 16 + j % 16`, so a tile
///   of output pixels is written straight into `NCHW16c` output (`ldc` a channel block's plane)
///   or into a scratch tile (`ldc = MR * 16`);
/// - `bias`, unless null, holds `nr` per-column (channel) biases.
///
/// # Safety
/// The ISA of `V` is available; `NV * V::N` is the kernel's `nr`, a multiple of 16; each
/// group's `MR * G` floats are readable, `b` is readable for `k` rows of `nr` floats at
/// stride `ldb`, `bias` (unless null) for `nr` floats, and every element of `c` named above is
/// readable and writable and does not alias `a`/`b`.
#[inline(always)]
pub unsafe fn gemm_blocked<V: Vector, const MR: usize, const NV: usize, const G: usize>(t: &Tile) {
    if t.prefetch.is_null() {
        // SAFETY: forwarded contract.
        unsafe { gemm_blocked_pf::<V, MR, NV, false, G>(t) }
    } else {
        // SAFETY: forwarded contract.
        unsafe { gemm_blocked_pf::<V, MR, NV, true, G>(t) }
    }
}

/// [`gemm_blocked`] with `PF` saying whether to prefetch `t.prefetch`.
///
/// # Safety
/// [`gemm_blocked`]'s contract.
#[inline(always)]
unsafe fn gemm_blocked_pf<
    V: Vector,
    const MR: usize,
    const NV: usize,
    const PF: bool,
    const G: usize,
>(
    t: &Tile,
) {
    // SAFETY: the ISA is available (caller's contract).
    let zero = unsafe { V::zero() };
    let mut acc = [[zero; NV]; MR];
    let (mut b, mut pf) = (t.b, t.prefetch);
    let pf_lines = t.prefetch_lines(NV * V::N);
    debug_assert!(t.k.is_multiple_of(G), "reduction in whole groups");
    let groups = t.k / G;
    // Where group `g`'s rows start.
    let group_at = |g: usize| {
        if t.a_offsets.is_null() {
            t.a.wrapping_add(g * t.lda)
        } else {
            // SAFETY: `g < k / G` offsets are readable (contract).
            t.a.wrapping_add(unsafe { *t.a_offsets.add(g) } as usize)
        }
    };
    for g in 0..groups {
        let a = group_at(g);
        if G == BLOCK && g + 1 < groups {
            // The next group's rows, one cache line each (a channel block of a pixel): a tap
            // or a channel block away (windows, offsets), or a plane of the input or of
            // Winograd's `V_ξ` away (`lda`, usually kilobytes), where the hardware prefetchers
            // do not look.
            let next = group_at(g + 1);
            for r in 0..MR {
                // SAFETY: a prefetch never faults; the ISA is available.
                unsafe { V::prefetch(next.wrapping_add(r * BLOCK)) };
            }
        }
        for l in 0..G {
            if PF {
                for v in 0..pf_lines {
                    // SAFETY: a prefetch never faults; the ISA is available.
                    unsafe { V::prefetch(pf.wrapping_add(16 * v)) };
                }
                pf = pf.wrapping_add(t.prefetch_ld);
            }
            // SAFETY: this step's `nr` floats of `b` and the group's rows are readable
            // (contract).
            let bv: [V; NV] = core::array::from_fn(|v| unsafe { V::load(b.add(v * V::N)) });
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let x = unsafe { *a.add(r * G + l) };
                for (acc, bv) in acc.iter_mut().zip(&bv) {
                    *acc = bv.scale_add(x, *acc);
                }
            }
            // `wrapping_add`: after the last step `b` is not read again.
            b = b.wrapping_add(t.ldb);
        }
    }
    let bias: [V; NV] = core::array::from_fn(|v| {
        if t.bias.is_null() {
            zero
        } else {
            // SAFETY: a non-null bias holds `nr` floats.
            unsafe { V::load(t.bias.add(v * V::N)) }
        }
    });
    for (r, acc) in acc.iter().enumerate() {
        for (v, (acc, bias)) in acc.iter().zip(&bias).enumerate() {
            let col = v * V::N;
            // SAFETY: row `r < MR`, columns `col .. col + N` (inside one block, as `N` divides
            // 16) of `c` (contract).
            unsafe {
                let c = t.c.add((col / BLOCK) * t.ldc + r * BLOCK + col % BLOCK);
                let mut y = acc.add(*bias);
                if t.load_c {
                    y = y.add(V::load(c));
                }
                if t.relu {
                    y = y.max(zero);
                }
                y.store(c);
            }
        }
    }
}

/// Arguments of the blocked store: for `r < rows`, `j < cols`, with `c = col0 + j`,
/// `dst[(c / 16) * dst_block + r * 16 + c % 16] =
/// relu?(src[(j / 16) * src_block + r * src_row + j % 16] + bias[j] + dst[..]?)`: a row-major
/// source has `src_row = ld, src_block = 16`, a blocked tile `src_row = 16`.
///
/// `dst` points at the first pixel to write in the block holding channel 0 (`col0` counts from
/// there), so one call writes `rows` consecutive pixels of the channels `col0 .. col0 + cols`.
#[derive(Clone, Copy, Debug)]
pub struct BlockedStoreArgs {
    pub src: *const f32,
    pub src_row: usize,
    pub src_block: usize,
    pub rows: usize,
    pub cols: usize,
    pub col0: usize,
    /// `cols` biases.
    pub bias: *const f32,
    pub dst: *mut f32,
    /// Floats between channel blocks of `dst` (a block's plane: `pixels * 16`).
    pub dst_block: usize,
    pub accumulate: bool,
    pub relu: bool,
}

/// The portable body of every ISA's blocked store (`Kernels::store_b`).
///
/// # Safety
/// The ISA of `V` is available; `src` is readable at `(j / 16) * src_block + r * src_row + j % 16`,
/// `bias` at `j`, and
/// `dst` readable and writable at every element the [`BlockedStoreArgs`] formula names, for
/// `r < rows`, `j < cols`; `src` and `dst` do not overlap; `col0` is a multiple of 16 unless
/// the source is row-major (`src_block = 16`).
#[inline(always)]
pub unsafe fn store_blocked<V: Vector>(p: &BlockedStoreArgs) {
    // SAFETY: the ISA is available (caller's contract).
    let zero = unsafe { V::zero() };
    // Runs of columns that stay inside one block, in pieces of at most `N` lanes.
    let mut j = 0;
    while j < p.cols {
        let c = p.col0 + j;
        let lane = c % BLOCK;
        let n = (BLOCK - lane).min(p.cols - j).min(V::N);
        let whole = n == V::N;
        // SAFETY: biases `j .. j + n` (contract).
        let bias = unsafe {
            if whole {
                V::load(p.bias.add(j))
            } else {
                V::load_n(p.bias.add(j), n)
            }
        };
        // SAFETY: the block of channel `c` (contract).
        let block = unsafe { p.dst.add((c / BLOCK) * p.dst_block + lane) };
        for r in 0..p.rows {
            // SAFETY: `n` columns from `j` of source row `r` and `n` lanes from `lane` of
            // pixel `r` in the block (contract).
            unsafe {
                let s = p.src.add((j / BLOCK) * p.src_block + r * p.src_row + j % BLOCK);
                let o = block.add(r * BLOCK);
                let mut y = if whole { V::load(s) } else { V::load_n(s, n) }.add(bias);
                if p.accumulate {
                    y = y.add(if whole { V::load(o) } else { V::load_n(o, n) });
                }
                if p.relu {
                    y = y.max(zero);
                }
                if whole {
                    y.store(o)
                } else {
                    y.store_n(o, n)
                }
            }
        }
        j += n;
    }
}

/// Arguments of the blocked Winograd input transform of one tile, all its channel blocks:
/// `V = B^T d B` per channel, where pixel `(i, j)` (`i, j < α`) of channel block `cb` of the
/// tile's window is at `src + cb * src_block + i * src_row + j * 16` (a zero-padded copy, so
/// no bounds are checked), and `V_ξ` of the block is written to
/// `dst + ξ * dst_xi + cb * dst_block` (16 floats).
#[derive(Clone, Copy, Debug)]
pub struct WinogradInputArgs {
    pub src: *const f32,
    pub src_row: usize,
    pub src_block: usize,
    pub blocks: usize,
    pub dst: *mut f32,
    pub dst_xi: usize,
    pub dst_block: usize,
}

/// Arguments of the blocked Winograd output transform of one tile: `Y = A^T M A` per channel
/// with `M_ξ` of block `cb` at `src + ξ * src_xi + cb * src_block`, then the epilogue, into
/// output pixel `(r, c)` (`r < rows`, `c < cols`, the tile clipped at the image's edge) at
/// `dst + cb * dst_block + r * dst_row + c * 16`; `bias` holds `blocks * 16` floats.
#[derive(Clone, Copy, Debug)]
pub struct WinogradOutputArgs {
    pub src: *const f32,
    pub src_xi: usize,
    pub src_block: usize,
    pub blocks: usize,
    pub bias: *const f32,
    pub dst: *mut f32,
    pub dst_row: usize,
    pub dst_block: usize,
    pub rows: usize,
    pub cols: usize,
    pub accumulate: bool,
    pub relu: bool,
}

/// The portable body of every ISA's blocked Winograd input transform, `F(M, 3)` with
/// `A = M + 2`: the channels of a block are the vector lanes, so no lane is gathered.
///
/// # Safety
/// The ISA of `V` is available; every element [`WinogradInputArgs`] names for `ξ < A²`,
/// `cb < blocks` is readable (`src`) or writable (`dst`).
#[inline(always)]
pub unsafe fn winograd_input<V: Vector, const M: usize, const A: usize>(p: &WinogradInputArgs) {
    // SAFETY: the ISA is available (caller's contract).
    let zero = unsafe { V::zero() };
    for cb in 0..p.blocks {
        for h in (0..BLOCK).step_by(V::N) {
            input_tile::<V, M, A>(
                zero,
                // SAFETY: pixel `(i, j)` of the window, lanes `h .. h + N` (contract).
                |i, j| unsafe {
                    V::load(p.src.add(cb * p.src_block + i * p.src_row + j * BLOCK + h))
                },
                // SAFETY: `ξ < A²`, block `cb`, lanes `h .. h + N` (contract).
                |xi, v| unsafe { v.store(p.dst.add(xi * p.dst_xi + cb * p.dst_block + h)) },
            );
        }
    }
}

/// The portable body of every ISA's blocked Winograd output transform, with the epilogue.
///
/// # Safety
/// The ISA of `V` is available; `rows, cols <= M`; every element [`WinogradOutputArgs`] names
/// is readable (`src`, `bias`) or readable and writable (`dst`), and they do not overlap.
#[inline(always)]
pub unsafe fn winograd_output<V: Vector, const M: usize, const A: usize>(p: &WinogradOutputArgs) {
    // SAFETY: the ISA is available (caller's contract).
    let zero = unsafe { V::zero() };
    for cb in 0..p.blocks {
        for h in (0..BLOCK).step_by(V::N) {
            let src = p.src.wrapping_add(cb * p.src_block + h);
            // SAFETY: `blocks * 16` biases (contract).
            let bias = unsafe { V::load(p.bias.add(cb * BLOCK + h)) };
            output_tile::<V, M, A>(
                zero,
                // SAFETY: `M_ξ` of this block, lanes `h .. h + N` (contract).
                |xi| unsafe { V::load(src.add(xi * p.src_xi)) },
                p.rows,
                |i, r| {
                    for (c, y) in r.iter().enumerate().take(p.cols) {
                        // SAFETY: output pixel `(i, c)` of the tile, `i < rows`, `c < cols`,
                        // lanes `h .. h + N` of block `cb` (contract).
                        unsafe {
                            let o = p.dst.add(cb * p.dst_block + i * p.dst_row + c * BLOCK + h);
                            let mut y = y.add(bias);
                            if p.accumulate {
                                y = y.add(V::load(o));
                            }
                            if p.relu {
                                y = y.max(zero);
                            }
                            y.store(o);
                        }
                    }
                },
            );
        }
    }
}

/// Defines an ISA's `GEMM_B` and `GEMM_TB` ([`gemm_blocked`] with `MR` rows and `NV` vectors
/// of columns, over blocked and plain rows) and `STORE_B` ([`store_blocked`]) on the vector
/// type `$v`, carrying the ISA's `#[target_feature]` attribute.
macro_rules! blocked_kernels {
    ($(#[$attr:meta])* vector = $v:ty, mr = $mr:literal, nv = $nv:literal, name = $name:literal,
     name_tb = $name_tb:literal) => {
        /// # Safety
        /// See [`$crate::arch::blocked::gemm_blocked`] with `G = 16`.
        $(#[$attr])*
        unsafe fn gemm_b_run(t: &$crate::arch::Tile) {
            // SAFETY: forwarded contract.
            unsafe { $crate::arch::blocked::gemm_blocked::<$v, $mr, $nv, 16>(t) }
        }

        /// # Safety
        /// See [`$crate::arch::blocked::gemm_blocked`] with `G = 1`.
        $(#[$attr])*
        unsafe fn gemm_tb_run(t: &$crate::arch::Tile) {
            // SAFETY: forwarded contract.
            unsafe { $crate::arch::blocked::gemm_blocked::<$v, $mr, $nv, 1>(t) }
        }

        /// # Safety
        /// See [`$crate::arch::blocked::store_blocked`].
        $(#[$attr])*
        unsafe fn store_b_run(p: &$crate::arch::blocked::BlockedStoreArgs) {
            // SAFETY: forwarded contract.
            unsafe { $crate::arch::blocked::store_blocked::<$v>(p) }
        }

        const GEMM_B: $crate::arch::GemmKernel = $crate::arch::GemmKernel {
            name: $name,
            mr: $mr,
            nr: $nv * <$v as $crate::arch::vector::Vector>::N,
            run: gemm_b_run,
        };

        const GEMM_TB: $crate::arch::GemmKernel = $crate::arch::GemmKernel {
            name: $name_tb,
            mr: $mr,
            nr: $nv * <$v as $crate::arch::vector::Vector>::N,
            run: gemm_tb_run,
        };

        const STORE_B: unsafe fn(&$crate::arch::blocked::BlockedStoreArgs) = store_b_run;

        $crate::arch::blocked::blocked_winograd!($(#[$attr])* $v, wb_in2, wb_out2, 2, 4);
        $crate::arch::blocked::blocked_winograd!($(#[$attr])* $v, wb_in4, wb_out4, 4, 6);
        $crate::arch::blocked::blocked_winograd!($(#[$attr])* $v, wb_in6, wb_out6, 6, 8);

        const WINOGRAD_B: [$crate::arch::BlockedWinograd; 3] = [
            $crate::arch::BlockedWinograd { input: wb_in2, output: wb_out2 },
            $crate::arch::BlockedWinograd { input: wb_in4, output: wb_out4 },
            $crate::arch::BlockedWinograd { input: wb_in6, output: wb_out6 },
        ];
    };
}

/// One `F(m, 3)`'s blocked Winograd transforms as `#[target_feature]` wrappers.
macro_rules! blocked_winograd {
    ($(#[$attr:meta])* $v:ty, $input:ident, $output:ident, $m:literal, $a:literal) => {
        /// # Safety
        /// See [`$crate::arch::blocked::winograd_input`].
        $(#[$attr])*
        unsafe fn $input(p: &$crate::arch::blocked::WinogradInputArgs) {
            // SAFETY: forwarded contract.
            unsafe { $crate::arch::blocked::winograd_input::<$v, $m, $a>(p) }
        }

        /// # Safety
        /// See [`$crate::arch::blocked::winograd_output`].
        $(#[$attr])*
        unsafe fn $output(p: &$crate::arch::blocked::WinogradOutputArgs) {
            // SAFETY: forwarded contract.
            unsafe { $crate::arch::blocked::winograd_output::<$v, $m, $a>(p) }
        }
    };
}
pub(crate) use blocked_kernels;
pub(crate) use blocked_winograd;
