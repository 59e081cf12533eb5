//! The transposing store of the transposed GEMMs ([`crate::conv::ConvAlgo::GemmT`]): their
//! sums are `pixels x channels`, the output NCHW, so each channel's pixels are gathered from a
//! column of the sums and written as one contiguous run through the convolution epilogue.

use super::vector::{Vector, LANES};

/// Arguments of one call: for `r < rows`, `j < cols`,
/// `dst[j * dst_ld + r] = relu?(src[r * src_ld + j] + bias[j] + dst[j * dst_ld + r]?)`.
#[derive(Clone, Copy, Debug)]
pub struct TransposeArgs {
    pub src: *const f32,
    pub src_ld: usize,
    pub rows: usize,
    pub cols: usize,
    /// `cols` biases.
    pub bias: *const f32,
    pub dst: *mut f32,
    pub dst_ld: usize,
    pub accumulate: bool,
    pub relu: bool,
}

/// The portable body of every ISA's transposing store: one gather of `N` pixels per channel
/// and vector.
///
/// # Safety
/// The ISA of `V` is available; `src` is readable at `r * src_ld + j` and `dst` readable and
/// writable at `j * dst_ld + r` for `r < rows`, `j < cols`; `bias` holds `cols` floats; `src`
/// and `dst` do not overlap; `rows * src_ld <= i32::MAX` (gather offsets are signed 32-bit).
#[inline(always)]
pub unsafe fn transpose_store<V: Vector>(p: &TransposeArgs) {
    if p.rows == 0 {
        return;
    }
    let full: [u32; LANES] = core::array::from_fn(|l| (l * p.src_ld) as u32);
    // The tail repeats its last row in the unused lanes, so every gathered address is valid.
    let tail = p.rows % V::N;
    let last: [u32; LANES] = core::array::from_fn(|l| (l.min(tail.max(1) - 1) * p.src_ld) as u32);
    // SAFETY: the ISA is available (caller's contract).
    let (full, last, zero) = unsafe { (V::index(&full), V::index(&last), V::zero()) };
    for j in 0..p.cols {
        // SAFETY: `j < cols` biases; row `j` of `dst` (caller's contract).
        let (bias, dst) = unsafe { (V::splat(*p.bias.add(j)), p.dst.add(j * p.dst_ld)) };
        let mut r0 = 0;
        while r0 < p.rows {
            let n = (p.rows - r0).min(V::N);
            // SAFETY: rows `r0 .. r0 + n` (the tail's repeated) of column `j` are readable.
            let mut y = unsafe {
                let at = p.src.add(r0 * p.src_ld + j);
                V::gather(at, if n == V::N { full } else { last })
            };
            y = y.add(bias);
            // SAFETY: `n` floats of `dst` row `j` from `r0` (caller's contract).
            unsafe {
                let o = dst.add(r0);
                if p.accumulate {
                    y = y.add(if n == V::N { V::load(o) } else { V::load_n(o, n) });
                }
                if p.relu {
                    y = y.max(zero);
                }
                if n == V::N {
                    y.store(o)
                } else {
                    y.store_n(o, n)
                }
            }
            r0 += n;
        }
    }
}

/// Defines an ISA's `TRANSPOSE_STORE` as a wrapper around [`transpose_store`] on the vector
/// type `$v`, carrying the ISA's `#[target_feature]` attribute.
macro_rules! transpose_store_kernel {
    ($(#[$attr:meta])* vector = $v:ty) => {
        /// # Safety
        /// See [`$crate::arch::transpose::transpose_store`]; the ISA is available.
        $(#[$attr])*
        unsafe fn transpose_store_run(p: &$crate::arch::transpose::TransposeArgs) {
            // SAFETY: forwarded contract.
            unsafe { $crate::arch::transpose::transpose_store::<$v>(p) }
        }

        const TRANSPOSE_STORE: unsafe fn(&$crate::arch::transpose::TransposeArgs) =
            transpose_store_run;
    };
}
pub(crate) use transpose_store_kernel;
