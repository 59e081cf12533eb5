//! Advanced SIMD (NEON) kernels.

use core::arch::aarch64::*;

use crate::arch::{GemmKernel, Isa, Kernels, Tile};

pub const KERNELS: Kernels = Kernels {
    isa: Isa::Neon,
    gemm: GemmKernel { name: "neon_gemm_f32_8x12", mr: 8, nr: 12, run: gemm_8x12 },
    gemm_t: GemmKernel { name: "neon_gemm_f32_8x12", mr: 8, nr: 12, run: gemm_8x12 },
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
    #[target_feature(enable = "neon")]
    vector = F32x4,
    rows = 8
);

crate::arch::winograd::winograd_kernels!(
    #[target_feature(enable = "neon")]
    vector = F32x4
);

crate::arch::blocked::blocked_kernels!(
    #[target_feature(enable = "neon")]
    vector = F32x4,
    mr = 6,
    nv = 4,
    name = "neon_gemm_b_f32_6x16",
    name_tb = "neon_gemm_tb_f32_6x16"
);

crate::arch::transpose::transpose_store_kernel!(
    #[target_feature(enable = "neon")]
    vector = F32x4
);

crate::arch::direct::direct_kernel!(
    #[target_feature(enable = "neon")]
    vector = F32x4,
    widths = [1, 2, 3, 4]
);

/// An `MR x 4*NV` tile: `MR * NV` q-register accumulators, `NV` loads of `b` and `MR`
/// broadcasts of `a` per step of k.
///
/// # Safety
/// See [`GemmKernel`], with `mr = MR`, `nr = 4 * NV`.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn tile<const MR: usize, const NV: usize>(t: &Tile) {
    let mut acc = [[vdupq_n_f32(0.0); NV]; MR];
    let (mut a, mut b) = (t.a, t.b);
    for k in 0..t.k {
        // An indirect operand names each step's rows (see `Tile::a_offsets`).
        let ak = if t.a_offsets.is_null() {
            a
        } else {
            // SAFETY: `k < t.k` offsets are readable (caller's contract).
            t.a.wrapping_add(unsafe { *t.a_offsets.add(k) } as usize)
        };
        // SAFETY: this step's `NV * 4` floats of `b` and `MR` floats of `a` are inside the
        // panels the caller made readable (`k` steps of `ldb`, and of `lda` or `a_offsets`).
        let bv: [float32x4_t; NV] = core::array::from_fn(|v| unsafe { vld1q_f32(b.add(4 * v)) });
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let av = vdupq_n_f32(unsafe { *ak.add(r) });
            for v in 0..NV {
                acc[v] = vfmaq_f32(acc[v], av, bv[v]);
            }
        }
        // `wrapping_add`: after the last step the pointers are not read again, and with an
        // operand read in place (`lda` or `ldb` a whole plane) they would point past the end
        // of its buffer, which `add` does not allow.
        a = a.wrapping_add(t.lda);
        b = b.wrapping_add(t.ldb);
    }
    let zero = vdupq_n_f32(0.0);
    for (r, acc) in acc.iter().enumerate() {
        let bias = if t.bias.is_null() {
            zero
        } else {
            // SAFETY: a non-null bias holds `MR` floats.
            vdupq_n_f32(unsafe { *t.bias.add(r) })
        };
        for (v, acc) in acc.iter().enumerate() {
            // SAFETY: row `r < MR`, columns `4 * v .. 4 * v + 4 < NR` of the tile are
            // readable and writable.
            let c = unsafe { t.c.add(r * t.ldc + 4 * v) };
            let mut x = vaddq_f32(*acc, bias);
            if t.load_c {
                // SAFETY: as above.
                x = vaddq_f32(x, unsafe { vld1q_f32(c) });
            }
            if t.relu {
                x = vmaxq_f32(x, zero);
            }
            // SAFETY: as above.
            unsafe { vst1q_f32(c, x) };
        }
    }
}

/// # Safety
/// See [`GemmKernel`]; NEON is available (always, on aarch64).
#[target_feature(enable = "neon")]
pub unsafe fn gemm_8x12(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<8, 3>(t) }
}

/// Four `f32` lanes in a q register.
#[derive(Clone, Copy, Debug)]
pub struct F32x4(float32x4_t);

// SAFETY (every `unsafe` block in this impl): NEON is part of every aarch64 target, and a
// `F32x4` exists only after one of the unsafe constructors; pointer accesses are the
// documented contracts of the trait methods.
impl crate::arch::vector::Vector for F32x4 {
    const N: usize = 4;
    type Index = [u32; 4];
    #[inline(always)]
    unsafe fn zero() -> Self {
        F32x4(unsafe { vdupq_n_f32(0.0) })
    }
    #[inline(always)]
    unsafe fn index(base: &[u32; crate::arch::vector::LANES]) -> [u32; 4] {
        [base[0], base[1], base[2], base[3]]
    }
    #[inline(always)]
    unsafe fn gather(p: *const f32, idx: [u32; 4]) -> Self {
        let v = idx.map(|i| unsafe { *p.add(i as usize) });
        F32x4(unsafe { vld1q_f32(v.as_ptr()) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        F32x4(unsafe { vld1q_f32(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { vst1q_f32(p, self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        F32x4(unsafe { vaddq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        F32x4(unsafe { vsubq_f32(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        F32x4(unsafe { vdupq_n_f32(x) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        F32x4(unsafe { vmaxq_f32(self.0, o.0) })
    }
    #[inline(always)]
    fn scale(self, c: f32) -> Self {
        F32x4(unsafe { vmulq_n_f32(self.0, c) })
    }
    #[inline(always)]
    fn scale_add(self, c: f32, o: Self) -> Self {
        F32x4(unsafe { vfmaq_n_f32(o.0, self.0, c) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, o: Self) -> Self {
        F32x4(unsafe { vfmaq_f32(o.0, self.0, b.0) })
    }
}
