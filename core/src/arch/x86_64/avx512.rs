//! AVX-512F kernels.

use core::arch::x86_64::*;

use crate::arch::{GemmKernel, Isa, Kernels, Tile};

pub const KERNELS: Kernels = Kernels {
    isa: Isa::Avx512,
    gemm: GemmKernel { name: "avx512_gemm_f32_8x32", mr: 8, nr: 32, run: gemm_8x32 },
    winograd: WINOGRAD,
};

crate::arch::winograd::winograd_kernels!(
    #[target_feature(enable = "avx512f")]
    lanes = 16
);

/// An `MR x 16*NV` tile: `MR * NV` zmm accumulators, `NV` loads of `b` and `MR` broadcasts of
/// `a` per step of k.
///
/// # Safety
/// See [`GemmKernel`], with `mr = MR`, `nr = 16 * NV`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const MR: usize, const NV: usize>(t: &Tile) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.k {
        // SAFETY: this step's `NV * 16` floats of `b` and `MR` floats of `a` are inside the
        // panels the caller made readable (`k` steps of `ldb` and `MR`).
        let bv: [__m512; NV] = core::array::from_fn(|v| unsafe { _mm512_loadu_ps(b.add(16 * v)) });
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let av = _mm512_set1_ps(unsafe { *a.add(r) });
            for v in 0..NV {
                acc[v] = _mm512_fmadd_ps(av, bv[v], acc[v]);
            }
        }
        // SAFETY: advancing by one step stays within (or one past) the panels.
        unsafe {
            a = a.add(MR);
            b = b.add(t.ldb);
        }
    }
    let zero = _mm512_setzero_ps();
    for (r, acc) in acc.iter().enumerate() {
        let bias = if t.bias.is_null() {
            zero
        } else {
            // SAFETY: a non-null bias holds `MR` floats.
            _mm512_set1_ps(unsafe { *t.bias.add(r) })
        };
        for (v, acc) in acc.iter().enumerate() {
            // SAFETY: row `r < MR`, columns `16 * v .. 16 * v + 16 < NR` of the tile are
            // readable and writable.
            let c = unsafe { t.c.add(r * t.ldc + 16 * v) };
            let mut x = _mm512_add_ps(*acc, bias);
            if t.load_c {
                // SAFETY: as above.
                x = _mm512_add_ps(x, unsafe { _mm512_loadu_ps(c) });
            }
            if t.relu {
                x = _mm512_max_ps(x, zero);
            }
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(c, x) };
        }
    }
}

/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_8x32(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<8, 2>(t) }
}

/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_12x32(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<12, 2>(t) }
}

/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_8x48(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<8, 3>(t) }
}

/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_16x16(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<16, 1>(t) }
}

/// Tile shapes tried when tuning (see `benches/conv.rs`); [`KERNELS`] holds the one in use.
pub const GEMM_VARIANTS: [GemmKernel; 4] = [
    GemmKernel { name: "avx512_gemm_f32_8x32", mr: 8, nr: 32, run: gemm_8x32 },
    GemmKernel { name: "avx512_gemm_f32_12x32", mr: 12, nr: 32, run: gemm_12x32 },
    GemmKernel { name: "avx512_gemm_f32_8x48", mr: 8, nr: 48, run: gemm_8x48 },
    GemmKernel { name: "avx512_gemm_f32_16x16", mr: 16, nr: 16, run: gemm_16x16 },
];
