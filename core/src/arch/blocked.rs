//! Kernels for the channel-blocked activation layout (`NCHW16c`, see [`crate::layout`]): a
//! micro-kernel whose row operand is read straight from blocked activations, and the store
//! that writes a tile of sums into blocked output through the convolution epilogue.
//!
//! In the blocked layout the 16 channels of one pixel are contiguous, so a tile of `MR` output
//! pixels by `NR` channels is `NR / 16` runs of `MR * 16` consecutive floats of the output, and
//! a tile's inputs for 16 consecutive steps of the reduction (one channel block of one kernel
//! tap) are `MR * 16` consecutive floats of the input: neither side is transposed or gathered.
//! Written once against [`Vector`] and compiled per ISA by [`blocked_kernels`].

use super::vector::Vector;
use super::Tile;

/// Channels per block of the blocked layout (one AVX-512 vector).
pub const BLOCK: usize = 16;

/// The portable body of every ISA's blocked-operand micro-kernel (`Kernels::gemm_b`): an
/// `MR x NV*N` tile, `PF` saying whether to prefetch `t.prefetch`.
///
/// Its [`Tile`] contract has blocked operands on both sides:
/// - `t.k` is a multiple of [`BLOCK`]; steps `16g .. 16g + 16` form group `g`, whose rows start
///   at `t.a + t.a_offsets[g]` (or `t.a + g * t.lda` when `a_offsets` is null), and step
///   `16g + l` of row `r` is at `+ r * BLOCK + l` from there;
/// - `c` is blocked too: element `(r, j)` at `c + (j / 16) * ldc + r * 16 + j % 16`, so a tile
///   of output pixels is written straight into `NCHW16c` output (`ldc` a channel block's plane)
///   or into a scratch tile (`ldc = MR * 16`);
/// - `bias`, unless null, holds `nr` per-column (channel) biases.
///
/// # Safety
/// The ISA of `V` is available; `NV * V::N` is the kernel's `nr`, a multiple of 16; each
/// group's `MR * BLOCK` floats are readable, `b` is readable for `k` rows of `nr` floats at
/// stride `ldb`, `bias` (unless null) for `nr` floats, and every element of `c` named above is
/// readable and writable and does not alias `a`/`b`.
#[inline(always)]
pub unsafe fn gemm_blocked<V: Vector, const MR: usize, const NV: usize, const PF: bool>(t: &Tile) {
    // SAFETY: the ISA is available (caller's contract).
    let zero = unsafe { V::zero() };
    let mut acc = [[zero; NV]; MR];
    let (mut b, mut pf) = (t.b, t.prefetch);
    for g in 0..t.k / BLOCK {
        let at = if t.a_offsets.is_null() {
            g * t.lda
        } else {
            // SAFETY: `g < k / BLOCK` offsets are readable (contract).
            unsafe { *t.a_offsets.add(g) as usize }
        };
        let a = t.a.wrapping_add(at);
        for l in 0..BLOCK {
            if PF {
                for v in 0..(NV * V::N).div_ceil(16) {
                    // SAFETY: a prefetch never faults; the ISA is available.
                    unsafe { V::prefetch(pf.wrapping_add(16 * v)) };
                }
                pf = pf.wrapping_add(t.ldb);
            }
            // SAFETY: this step's `nr` floats of `b` and the group's rows are readable
            // (contract).
            let bv: [V; NV] = core::array::from_fn(|v| unsafe { V::load(b.add(v * V::N)) });
            for (r, acc) in acc.iter_mut().enumerate() {
                // SAFETY: as above.
                let x = unsafe { *a.add(r * BLOCK + l) };
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
/// `dst` points at pixel 0 of the block holding channel 0 (`col0` counts from there), so one
/// call writes `rows` consecutive pixels of the output channels `col0 .. col0 + cols`.
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
/// The ISA of `V` is available; `src` is readable at `r * src_ld + j`, `bias` at `j`, and
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

/// Defines an ISA's `GEMM_B` ([`gemm_blocked`] with `MR` rows and `NV` vectors of columns)
/// and `STORE_B` ([`store_blocked`]) on the vector type `$v`, carrying the ISA's
/// `#[target_feature]` attribute.
macro_rules! blocked_kernels {
    ($(#[$attr:meta])* vector = $v:ty, mr = $mr:literal, nv = $nv:literal, name = $name:literal) => {
        /// # Safety
        /// See [`$crate::arch::blocked::gemm_blocked`].
        $(#[$attr])*
        unsafe fn gemm_b_run(t: &$crate::arch::Tile) {
            if t.prefetch.is_null() {
                // SAFETY: forwarded contract.
                unsafe { $crate::arch::blocked::gemm_blocked::<$v, $mr, $nv, false>(t) }
            } else {
                // SAFETY: forwarded contract.
                unsafe { $crate::arch::blocked::gemm_blocked::<$v, $mr, $nv, true>(t) }
            }
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

        const STORE_B: unsafe fn(&$crate::arch::blocked::BlockedStoreArgs) = store_b_run;
    };
}
pub(crate) use blocked_kernels;
