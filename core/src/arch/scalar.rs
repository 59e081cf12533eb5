//! Portable kernels: plain Rust, no intrinsics. The tile loops have constant bounds, so the
//! compiler may still vectorise them for the baseline of the target.

use super::{GemmKernel, Kernels, Tile};

const MR: usize = 4;
const NR: usize = 8;

pub const KERNELS: Kernels = Kernels {
    isa: super::Isa::Scalar,
    gemm: GemmKernel { name: "scalar_gemm_f32_4x8", mr: MR, nr: NR, run: gemm_4x8 },
    winograd: WINOGRAD,
};

super::winograd::winograd_kernels!(lanes = 8);

/// # Safety
/// See [`GemmKernel`].
unsafe fn gemm_4x8(t: &Tile) {
    let mut acc = [[0.0f32; NR]; MR];
    for k in 0..t.k {
        // SAFETY: `k < t.k`, so the panel rows are inside what the caller made readable.
        let (a, b) = unsafe {
            (&*(t.a.add(k * MR) as *const [f32; MR]), &*(t.b.add(k * t.ldb) as *const [f32; NR]))
        };
        for r in 0..MR {
            for j in 0..NR {
                acc[r][j] += a[r] * b[j];
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let bias = if t.bias.is_null() {
            0.0
        } else {
            // SAFETY: a non-null bias holds `MR` floats.
            unsafe { *t.bias.add(r) }
        };
        // SAFETY: row `r < MR` of the tile is readable and writable for `NR` floats.
        let c = unsafe { &mut *(t.c.add(r * t.ldc) as *mut [f32; NR]) };
        for j in 0..NR {
            let mut v = acc[j] + bias;
            if t.load_c {
                v += c[j];
            }
            if t.relu {
                v = v.max(0.0);
            }
            c[j] = v;
        }
    }
}
