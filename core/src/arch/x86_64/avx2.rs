//! AVX2 + FMA kernels.

use core::arch::x86_64::*;

use crate::arch::{GemmKernel, Isa, Kernels, Tile};

pub const KERNELS: Kernels = Kernels {
    isa: Isa::Avx2,
    gemm: GemmKernel { name: "avx2_gemm_f32_6x16", mr: 6, nr: 16, run: gemm_6x16 },
    // Pixel rows: 16 registers leave no room for 7x16 (17 live vectors), and 6 rows waste
    // 5 of 54 on a 7x7 map.
    gemm_t: GemmKernel { name: "avx2_gemm_f32_6x16", mr: 6, nr: 16, run: gemm_6x16 },
    store_t: TRANSPOSE_STORE,
    gemm_b: GEMM_B,
    gemm_tb: GEMM_TB,
    store_b: STORE_B,
    winograd_b: WINOGRAD_B,
    winograd: WINOGRAD,
    direct: DIRECT,
    linear: LINEAR,
};

crate::arch::linear::linear_kernel!(
    #[target_feature(enable = "avx2,fma")]
    vector = F32x8,
    rows = 8
);

crate::arch::winograd::winograd_kernels!(
    #[target_feature(enable = "avx2,fma")]
    vector = F32x8
);

crate::arch::blocked::blocked_kernels!(
    #[target_feature(enable = "avx2,fma")]
    vector = F32x8,
    mr = 6,
    nv = 2,
    name = "avx2_gemm_b_f32_6x16",
    name_tb = "avx2_gemm_tb_f32_6x16"
);

crate::arch::transpose::transpose_store_kernel!(
    #[target_feature(enable = "avx2,fma")]
    vector = F32x8
);

crate::arch::direct::direct_kernel!(
    #[target_feature(enable = "avx2,fma")]
    vector = F32x8,
    widths = [1, 2]
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
    for k in 0..t.k {
        // An indirect operand names each step's rows (see `Tile::a_offsets`).
        let ak = if t.a_offsets.is_null() {
            a
        } else {
            // SAFETY: `k < t.k` offsets are readable (caller's contract).
            t.a.wrapping_add(unsafe { *t.a_offsets.add(k) } as usize)
        };
        // SAFETY: this step's `NV * 8` floats of `b` and `MR` floats of `a` are inside the
        // panels the caller made readable (`k` steps of `ldb`, and of `lda` or `a_offsets`).
        let bv: [__m256; NV] = core::array::from_fn(|v| unsafe { _mm256_loadu_ps(b.add(8 * v)) });
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let av = _mm256_set1_ps(unsafe { *ak.add(r) });
            for v in 0..NV {
                acc[v] = _mm256_fmadd_ps(av, bv[v], acc[v]);
            }
        }
        // `wrapping_add`: after the last step the pointers are not read again, and with an
        // operand read in place (`lda` or `ldb` a whole plane) they would point past the end
        // of its buffer, which `add` does not allow.
        a = a.wrapping_add(t.lda);
        b = b.wrapping_add(t.ldb);
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

/// Eight `f32` lanes in a ymm register.
#[derive(Clone, Copy, Debug)]
pub struct F32x8(__m256);

// SAFETY (every `unsafe` block in this impl): a `F32x8` exists only after one of the unsafe
// constructors, whose caller guaranteed AVX2 and FMA; pointer accesses are the documented
// contracts of the trait methods.
impl crate::arch::vector::Vector for F32x8 {
    const N: usize = 8;
    type Index = __m256i;
    #[inline(always)]
    unsafe fn zero() -> Self {
        F32x8(unsafe { _mm256_setzero_ps() })
    }
    #[inline(always)]
    unsafe fn index(base: &[u32; crate::arch::vector::LANES]) -> __m256i {
        unsafe { _mm256_loadu_si256(base.as_ptr().cast()) }
    }
    #[inline(always)]
    unsafe fn gather(p: *const f32, idx: __m256i) -> Self {
        F32x8(unsafe { _mm256_i32gather_ps::<4>(p, idx) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        F32x8(unsafe { _mm256_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm256_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        F32x8(unsafe { _mm256_maskload_ps(p, lane_mask(n)) })
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        unsafe { _mm256_maskstore_ps(p, lane_mask(n), self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        F32x8(unsafe { _mm256_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        F32x8(unsafe { _mm256_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        F32x8(unsafe { _mm256_set1_ps(x) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        F32x8(unsafe { _mm256_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn scale(self, c: f32) -> Self {
        F32x8(unsafe { _mm256_mul_ps(self.0, _mm256_set1_ps(c)) })
    }
    #[inline(always)]
    fn scale_add(self, c: f32, o: Self) -> Self {
        F32x8(unsafe { _mm256_fmadd_ps(self.0, _mm256_set1_ps(c), o.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, o: Self) -> Self {
        F32x8(unsafe { _mm256_fmadd_ps(self.0, b.0, o.0) })
    }
}

/// All-ones in lanes `0..n`, for `maskload`/`maskstore` (which touch no masked-off memory).
///
/// # Safety
/// AVX2 is available.
#[inline(always)]
unsafe fn lane_mask(n: usize) -> __m256i {
    // SAFETY: AVX2 (contract).
    unsafe {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }
}
