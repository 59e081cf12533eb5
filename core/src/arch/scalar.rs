//! Portable kernels: plain Rust, no intrinsics. The tile loops have constant bounds, so the
//! compiler may still vectorise them for the baseline of the target.

use super::{GemmKernel, Kernels, Tile};

const MR: usize = 4;
const NR: usize = 8;

pub const KERNELS: Kernels = Kernels {
    isa: super::Isa::Scalar,
    gemm: GemmKernel { name: "scalar_gemm_f32_4x8", mr: MR, nr: NR, run: gemm_4x8 },
    gemm_t: GemmKernel { name: "scalar_gemm_f32_4x8", mr: MR, nr: NR, run: gemm_4x8 },
    store_t: TRANSPOSE_STORE,
    gemm_b: GEMM_B,
    gemm_tb: GEMM_TB,
    store_b: STORE_B,
    winograd_b: WINOGRAD_B,
    winograd: WINOGRAD,
    direct: DIRECT,
    linear: LINEAR,
};

super::linear::linear_kernel!(vector = F32x8, rows = 4);

super::winograd::winograd_kernels!(vector = F32x8);

super::direct::direct_kernel!(vector = F32x8, widths = [1, 2]);

super::blocked::blocked_kernels!(
    vector = F32x8,
    mr = 4,
    nv = 2,
    name = "scalar_gemm_b_f32_4x16",
    name_tb = "scalar_gemm_tb_f32_4x16"
);

super::transpose::transpose_store_kernel!(vector = F32x8);

/// # Safety
/// See [`GemmKernel`].
unsafe fn gemm_4x8(t: &Tile) {
    // One named row per accumulator keeps them in registers (an `[[f32; NR]; MR]` spills).
    let (mut c0, mut c1, mut c2, mut c3) = ([0.0f32; NR], [0.0f32; NR], [0.0f32; NR], [0.0f32; NR]);
    for k in 0..t.k {
        // SAFETY: `k < t.k`, so the panel rows are inside what the caller made readable.
        let (a, b) = unsafe {
            (
                (if t.a_offsets.is_null() {
                    t.a.add(k * t.lda)
                } else {
                    t.a.add(*t.a_offsets.add(k) as usize)
                } as *const [f32; MR])
                    .read_unaligned(),
                (t.b.add(k * t.ldb) as *const [f32; NR]).read_unaligned(),
            )
        };
        for j in 0..NR {
            c0[j] += a[0] * b[j];
            c1[j] += a[1] * b[j];
            c2[j] += a[2] * b[j];
            c3[j] += a[3] * b[j];
        }
    }
    for (r, acc) in [c0, c1, c2, c3].iter().enumerate() {
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

/// Eight `f32` lanes as a plain array.
#[derive(Clone, Copy, Debug)]
pub struct F32x8([f32; 8]);

impl F32x8 {
    #[inline(always)]
    fn map2(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        F32x8(core::array::from_fn(|l| f(self.0[l], o.0[l])))
    }
}

impl super::vector::Vector for F32x8 {
    const N: usize = 8;
    type Index = [u32; 8];
    #[inline(always)]
    unsafe fn zero() -> Self {
        F32x8([0.0; 8])
    }
    #[inline(always)]
    unsafe fn index(base: &[u32; super::vector::LANES]) -> [u32; 8] {
        core::array::from_fn(|l| base[l])
    }
    #[inline(always)]
    unsafe fn gather(p: *const f32, idx: [u32; 8]) -> Self {
        // SAFETY: every `p + idx[l]` is readable (caller's contract).
        F32x8(idx.map(|i| unsafe { *p.add(i as usize) }))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: `p` is readable for 8 floats (caller's contract).
        F32x8(unsafe { (p as *const [f32; 8]).read_unaligned() })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: `p` is writable for 8 floats (caller's contract).
        unsafe { (p as *mut [f32; 8]).write_unaligned(self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.map2(o, |a, b| a + b)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.map2(o, |a, b| a - b)
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        F32x8([x; 8])
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        self.map2(o, f32::max)
    }
    #[inline(always)]
    fn scale(self, c: f32) -> Self {
        F32x8(self.0.map(|a| a * c))
    }
    #[inline(always)]
    fn scale_add(self, c: f32, o: Self) -> Self {
        self.map2(o, |a, b| a * c + b)
    }
    #[inline(always)]
    fn mul_add(self, b: Self, o: Self) -> Self {
        let p = self.map2(b, |a, b| a * b);
        p.map2(o, |p, o| p + o)
    }
}
