//! The fully connected layer's matrix-vector product, written once against [`Vector`] and
//! compiled per ISA by the `linear_kernel!` macro.
//!
//! For one image the FC head is `y = W x + b` with `W` `[out][in]` as PyTorch stores it: every
//! weight is read once, so the layer is bound by reading `W` (2 MiB for ResNet-18, 8 MiB for
//! ResNet-50), not by arithmetic. The kernel keeps `R` rows in flight (`R` memory streams),
//! and prefetches the same cache lines of the next `R` rows while it reads these, so the
//! weights arrive from L3 or memory ahead of use; portable code compiled for the baseline
//! (SSE2, no prefetch) read them at about half the rate ONNX Runtime does.

use super::vector::{Vector, LANES};

/// Arguments of one call: for `o < rows`,
/// `y[o] = bias[o] + sum_k x[k] * w[o * n + k]` (`k < n`).
#[derive(Clone, Copy, Debug)]
pub struct LinearArgs {
    pub x: *const f32,
    pub n: usize,
    pub w: *const f32,
    pub rows: usize,
    pub bias: *const f32,
    pub y: *mut f32,
}

/// The portable body of every ISA's linear kernel (`Kernels::linear`), `R` rows at a time.
///
/// Each output is summed in the same order whichever rows share its pass (lane `l` of the
/// accumulator takes the steps `k = l (mod N)`, a masked vector the tail, then the lanes are
/// added in a fixed tree), so splitting the rows between threads never changes a result.
///
/// # Safety
/// The ISA of `V` is available; `x` is readable for `n` floats, `w` for `rows * n`, `bias` for
/// `rows`, `y` writable for `rows` and not overlapping the others.
#[inline(always)]
pub unsafe fn linear<V: Vector, const R: usize>(p: &LinearArgs) {
    let full = p.rows / R * R;
    for o in (0..full).step_by(R) {
        // SAFETY: rows `o .. o + R` are inside `rows` (contract).
        unsafe { rows::<V, R>(p, o) };
    }
    for o in full..p.rows {
        // SAFETY: row `o < rows` (contract).
        unsafe { rows::<V, 1>(p, o) };
    }
}

/// Rows `o .. o + R` of [`linear`].
///
/// # Safety
/// [`linear`]'s contract, and `o + R <= rows`.
#[inline(always)]
unsafe fn rows<V: Vector, const R: usize>(p: &LinearArgs, o: usize) {
    let n = p.n;
    let whole = n / V::N * V::N;
    // SAFETY: the ISA is available (contract).
    let mut acc = [unsafe { V::zero() }; R];
    let w = p.w.wrapping_add(o * n);
    let mut k = 0;
    while k < whole {
        // SAFETY: `k + N <= n` floats of `x` and of each row `o + r` (contract).
        unsafe {
            let x = V::load(p.x.add(k));
            for (r, acc) in acc.iter_mut().enumerate() {
                let row = w.add(r * n + k);
                // The same line `R` rows on: the next pass's. A hint, never a fault.
                V::prefetch(row.wrapping_add(R * n));
                *acc = V::load(row).mul_add(x, *acc);
            }
        }
        k += V::N;
    }
    if whole < n {
        // SAFETY: the last `n - whole < N` floats of `x` and of each row (contract).
        unsafe {
            let x = V::load_n(p.x.add(whole), n - whole);
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = V::load_n(w.add(r * n + whole), n - whole).mul_add(x, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let mut lanes = [0.0f32; LANES];
        // SAFETY: `lanes` holds `LANES >= N` floats; `bias` and `y` hold row `o + r`.
        unsafe {
            acc.store(lanes.as_mut_ptr());
            *p.y.add(o + r) = *p.bias.add(o + r) + sum_lanes(&lanes[..V::N]);
        }
    }
}

/// The lanes' sum in a fixed pairwise tree (`N` is a power of two).
#[inline(always)]
fn sum_lanes(lanes: &[f32]) -> f32 {
    let mut t = [0.0f32; LANES];
    t[..lanes.len()].copy_from_slice(lanes);
    let mut n = lanes.len();
    while n > 1 {
        n /= 2;
        for i in 0..n {
            t[i] += t[i + n];
        }
    }
    t[0]
}

/// Defines an ISA's `LINEAR` ([`linear`] with `R` rows per pass) on the vector type `$v`,
/// carrying the ISA's `#[target_feature]` attribute.
macro_rules! linear_kernel {
    ($(#[$attr:meta])* vector = $v:ty, rows = $r:literal) => {
        /// # Safety
        /// See [`$crate::arch::linear::linear`].
        $(#[$attr])*
        unsafe fn linear_run(p: &$crate::arch::linear::LinearArgs) {
            // SAFETY: forwarded contract.
            unsafe { $crate::arch::linear::linear::<$v, $r>(p) }
        }

        const LINEAR: unsafe fn(&$crate::arch::linear::LinearArgs) = linear_run;
    };
}
pub(crate) use linear_kernel;
