//! AVX2 + FMA kernels.

use core::arch::x86_64::*;

use crate::arch::{GemmKernel, Isa, Kernels, Tile};

pub const KERNELS: Kernels = Kernels {
    isa: Isa::Avx2,
    gemm: GemmKernel { name: "avx2_gemm_f32_6x16", mr: 6, nr: 16, run: gemm_6x16 },
    winograd: WINOGRAD,
};

crate::arch::winograd::winograd_kernels!(
    #[target_feature(enable = "avx2,fma")]
    lanes = 8
);

/// An `MR x 8*NV` tile: `MR * NV` ymm accumulators, `NV` loads of `b` and `MR` broadcasts of
/// `a` per step of k.
///
/// # Safety
/// See [`GemmKernel`], with `mr = MR`, `nr = 8 * NV`.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile<const MR: usize, const NV: usize>(t: &Tile) {
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.k {
        // SAFETY: this step's `NV * 8` floats of `b` and `MR` floats of `a` are inside the
        // panels the caller made readable (`k` steps of `ldb` and `MR`).
        let bv: [__m256; NV] = core::array::from_fn(|v| unsafe { _mm256_loadu_ps(b.add(8 * v)) });
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let av = _mm256_set1_ps(unsafe { *a.add(r) });
            for v in 0..NV {
                acc[v] = _mm256_fmadd_ps(av, bv[v], acc[v]);
            }
        }
        // SAFETY: advancing by one step stays within (or one past) the panels.
        unsafe {
            a = a.add(MR);
            b = b.add(t.ldb);
        }
    }
    let zero = _mm256_setzero_ps();
    for (r, acc) in acc.iter().enumerate() {
        let bias = if t.bias.is_null() {
            zero
        } else {
            // SAFETY: a non-null bias holds `MR` floats.
            _mm256_set1_ps(unsafe { *t.bias.add(r) })
        };
        for (v, acc) in acc.iter().enumerate() {
            // SAFETY: row `r < MR`, columns `8 * v .. 8 * v + 8 < NR` of the tile are
            // readable and writable.
            let c = unsafe { t.c.add(r * t.ldc + 8 * v) };
            let mut x = _mm256_add_ps(*acc, bias);
            if t.load_c {
                // SAFETY: as above.
                x = _mm256_add_ps(x, unsafe { _mm256_loadu_ps(c) });
            }
            if t.relu {
                x = _mm256_max_ps(x, zero);
            }
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(c, x) };
        }
    }
}

/// # Safety
/// See [`GemmKernel`]; AVX2 and FMA are available.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gemm_6x16(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<6, 2>(t) }
}
