//! Advanced SIMD (NEON) kernels.

use core::arch::aarch64::*;

use crate::arch::{GemmKernel, Isa, Kernels, Tile};

pub const KERNELS: Kernels = Kernels {
    isa: Isa::Neon,
    gemm: GemmKernel { name: "neon_gemm_f32_8x12", mr: 8, nr: 12, run: gemm_8x12 },
    winograd: WINOGRAD,
};

crate::arch::winograd::winograd_kernels!(
    #[target_feature(enable = "neon")]
    lanes = 8
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
    for _ in 0..t.k {
        // SAFETY: this step's `NV * 4` floats of `b` and `MR` floats of `a` are inside the
        // panels the caller made readable (`k` steps of `ldb` and `MR`).
        let bv: [float32x4_t; NV] = core::array::from_fn(|v| unsafe { vld1q_f32(b.add(4 * v)) });
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let av = vdupq_n_f32(unsafe { *a.add(r) });
            for v in 0..NV {
                acc[v] = vfmaq_f32(acc[v], av, bv[v]);
            }
        }
        // SAFETY: advancing by one step stays within (or one past) the panels.
        unsafe {
            a = a.add(MR);
            b = b.add(t.ldb);
        }
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
