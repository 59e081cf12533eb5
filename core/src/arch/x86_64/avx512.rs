//! AVX-512F kernels.

use core::arch::x86_64::*;

use crate::arch::{GemmKernel, Isa, Kernels, Tile};

pub const KERNELS: Kernels = Kernels {
    isa: Isa::Avx512,
    gemm: GemmKernel { name: "avx512_gemm_f32_8x32", mr: 8, nr: 32, run: gemm_8x32 },
    gemm_t: GemmKernel { name: "avx512_gemm_f32_7x32", mr: 7, nr: 32, run: gemm_7x32 },
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
    #[target_feature(enable = "avx512f")]
    vector = F32x16,
    rows = 8
);

crate::arch::winograd::winograd_kernels!(
    #[target_feature(enable = "avx512f")]
    vector = F32x16
);

crate::arch::blocked::blocked_kernels!(
    #[target_feature(enable = "avx512f")]
    vector = F32x16,
    mr = 7,
    nv = 2,
    name = "avx512_gemm_b_f32_7x32",
    name_tb = "avx512_gemm_tb_f32_7x32"
);

crate::arch::transpose::transpose_store_kernel!(
    #[target_feature(enable = "avx512f")]
    vector = F32x16
);

crate::arch::direct::direct_kernel!(
    #[target_feature(enable = "avx512f")]
    vector = F32x16,
    widths = [1, 2, 3, 4]
);

/// An `MR x 16*NV` tile: `MR * NV` zmm accumulators, `NV` loads of `b` and `MR` broadcasts of
/// `a` per step of k.
///
/// # Safety
/// See [`GemmKernel`], with `mr = MR`, `nr = 16 * NV`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const MR: usize, const NV: usize>(t: &Tile) {
    let acc = if t.prefetch.is_null() {
        // SAFETY: forwarded contract.
        unsafe { product::<MR, NV, false>(t) }
    } else {
        // SAFETY: forwarded contract.
        unsafe { product::<MR, NV, true>(t) }
    };
    // SAFETY: forwarded contract.
    unsafe { store::<MR, NV>(t, &acc) };
}

/// The `MR x 16*NV` accumulators of `A·B`, prefetching `t.prefetch`'s rows when `PF`.
///
/// # Safety
/// See [`GemmKernel`], with `mr = MR`, `nr = 16 * NV`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn product<const MR: usize, const NV: usize, const PF: bool>(
    t: &Tile,
) -> [[__m512; NV]; MR] {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let (mut a, mut b, mut pf) = (t.a, t.b, t.prefetch);
    let pf_lines = t.prefetch_lines(16 * NV);
    for k in 0..t.k {
        if PF {
            // One prefetch per cache line of the step's row; `wrapping_add` because the hinted
            // address need not be inside an allocation (prefetches never fault).
            for v in 0..pf_lines {
                _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(16 * v).cast());
            }
            pf = pf.wrapping_add(t.prefetch_ld);
        }
        // An indirect operand names each step's rows (see `Tile::a_offsets`).
        let ak = if t.a_offsets.is_null() {
            a
        } else {
            // SAFETY: `k < t.k` offsets are readable (caller's contract).
            t.a.wrapping_add(unsafe { *t.a_offsets.add(k) } as usize)
        };
        // SAFETY: this step's `NV * 16` floats of `b` and `MR` floats of `a` are inside the
        // panels the caller made readable (`k` steps of `ldb`, and of `lda` or `a_offsets`).
        let bv: [__m512; NV] = core::array::from_fn(|v| unsafe { _mm512_loadu_ps(b.add(16 * v)) });
        for (r, acc) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            let av = _mm512_set1_ps(unsafe { *ak.add(r) });
            for v in 0..NV {
                acc[v] = _mm512_fmadd_ps(av, bv[v], acc[v]);
            }
        }
        // `wrapping_add`: after the last step the pointers are not read again, and with an
        // operand read in place (`lda` or `ldb` a whole plane) they would point past the end
        // of its buffer, which `add` does not allow.
        a = a.wrapping_add(t.lda);
        b = b.wrapping_add(t.ldb);
    }
    acc
}

/// Stores the accumulators through the epilogue.
///
/// # Safety
/// See [`GemmKernel`], with `mr = MR`, `nr = 16 * NV`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store<const MR: usize, const NV: usize>(t: &Tile, acc: &[[__m512; NV]; MR]) {
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

/// Seven output pixels by 32 output channels, the kernel of the transposed algorithms
/// ([`crate::conv::ConvAlgo::GemmT`], `Winograd2T`, `Winograd4T`): 14 accumulators, two loads
/// of weights and seven broadcasts of inputs per step of k. Seven rows because ResNet maps are
/// `7 * 2^k` wide, so no row of a tile is wasted; 32 columns divide every ResNet channel count.
/// With cold weights (`COLD=16`, `benches/conv_table.rs`; input still packed, before pointwise
/// layers were read in place), GFLOP/s against 7x48: 1x1 1024->256 at 14x14 126 vs 110 (48
/// pads 256 channels to 288), 3x3/2 256->256 into 14x14 96
/// vs 76, 1x1/2 1024->2048 into 7x7 114 vs 104, and within noise on the 7x7 layers (114-123
/// vs 118-121); 7x64 spilled (102 on 1x1 2048->512 at 7x7), 6x64 ran 96. Equal end to end
/// on ResNet-50 and -18.
///
/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_7x32(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<7, 2>(t) }
}

/// Seven output pixels by 48 output channels (a tuning variant; see [`gemm_7x32`]).
///
/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_7x48(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<7, 3>(t) }
}

/// Seven output pixels by 64 output channels: 28 accumulators and four loads leave no
/// register for the broadcast, so it spills (a tuning variant; see [`gemm_7x32`]).
///
/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_7x64(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<7, 4>(t) }
}

/// Six output pixels by 64 output channels (a tuning variant; see [`gemm_7x32`]).
///
/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_6x64(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<6, 4>(t) }
}

/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_16x16(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<16, 1>(t) }
}

/// Tile shapes tried when tuning, benchmarked by `benches/conv.rs` (`gemm_kernel`); all reach
/// 140-165 GFLOP/s on L2-resident panels, and 8x32 was kept because 8 divides every ResNet
/// channel count and 32 columns waste less than 48 on small images. [`KERNELS`] holds it;
/// [`GEMM_WIDE`] (8x48) takes over for large images. 12x32 measured no faster than 8x32 on
/// ResNet-50's 1x1 layers in `benches/conv_table.rs` (and pads 64 channels to 72). The
/// pixel-row shapes 7x64, 6x64 and 7x48 lost to 7x32 as [`KERNELS`]' `gemm_t`.
pub const GEMM_VARIANTS: [GemmKernel; 7] = [
    GemmKernel { name: "avx512_gemm_f32_8x32", mr: 8, nr: 32, run: gemm_8x32 },
    GemmKernel { name: "avx512_gemm_f32_12x32", mr: 12, nr: 32, run: gemm_12x32 },
    GEMM_WIDE,
    GemmKernel { name: "avx512_gemm_f32_16x16", mr: 16, nr: 16, run: gemm_16x16 },
    GemmKernel { name: "avx512_gemm_f32_7x64", mr: 7, nr: 64, run: gemm_7x64 },
    GemmKernel { name: "avx512_gemm_f32_6x64", mr: 6, nr: 64, run: gemm_6x64 },
    GemmKernel { name: "avx512_gemm_f32_7x48", mr: 7, nr: 48, run: gemm_7x48 },
];

/// The 8x48 tile: the same `MR` as [`KERNELS`]' (so the same packed weights), used by the
/// GEMM and pointwise convolutions of large images (`conv::PackedConv`), where 48 columns
/// waste little and each `A` broadcast feeds three FMAs instead of two (measured 5-15% faster
/// at 56x56 and 112x112 outputs, 20-30% slower at 14x14 and 7x7).
pub const GEMM_WIDE: GemmKernel =
    GemmKernel { name: "avx512_gemm_f32_8x48", mr: 8, nr: 48, run: gemm_8x48 };

/// The blocked-output tiles beside `KERNELS`' (`gemm_b`, `gemm_tb`): [`gemm_blocked`] with
/// `MR` rows, `NV` vectors of columns and `G` steps per group.
///
/// [`gemm_blocked`]: crate::arch::blocked::gemm_blocked
///
/// # Safety
/// See [`crate::arch::blocked::gemm_blocked`] with `MR`, `nr = 16 * NV` and `G`; AVX-512F is
/// available.
#[target_feature(enable = "avx512f")]
unsafe fn blocked<const MR: usize, const NV: usize, const G: usize>(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { crate::arch::blocked::gemm_blocked::<F32x16, MR, NV, G>(t) }
}

/// Fourteen output pixels by 32 output channels over channel-blocked input (the
/// [`crate::arch::blocked::gemm_blocked`] contract): 28 accumulators, two loads of weights and
/// 14 broadcasts per step, so each weight load feeds 14 FMAs instead of the 7x32 tile's 7.
/// Used (`conv::PackedConv::gemm_kernel`) for blocked pointwise layers with at least 14x14
/// outputs or a multiple of 7 pixels, whose tiles are runs of pixels that need not stay in one
/// row: ResNet-50's 1x1 layers at 56x56, 28x28 and 14x14 ran 7-10% faster than with 7x32
/// (e.g. 0.80 -> 0.72 ms, `shortcut bench resnet50 --threads 1 --profile`), and 7x7 ones too,
/// with a 7-row tile for the last 7 pixels. kxk windows use it where output rows are multiples
/// of 14 pixels (tiles in one row of the phase-split copy) and where they read shifted copies
/// (tiles across rows, `conv::blocked::shifted`): ResNet's 3x3 512->512 at 7x7 138/136 ->
/// 149/146 GFLOP/s warm, 105/112 -> 110/117 cold (`[COLD=16] LAYOUT=nchw16c cargo bench -p
/// shortcut-core --bench conv_table -- avx512 3x3_512`).
///
/// Same panel width as [`KERNELS`]' `gemm_b`, so the same packed weights.
pub const GEMM_B_WIDE: GemmKernel =
    GemmKernel { name: "avx512_gemm_b_f32_14x32", mr: 14, nr: 32, run: blocked::<14, 2, 16> };

/// Eight rows by 32 channels over channel-blocked input, for blocked Winograd GEMMs whose
/// tiles per image are a multiple of 8 but not of 7 (`conv::PackedConv::gemm_kernel`; e.g.
/// 16, 64, 256, whatever the map): with the 7-row tile, the 16 tiles of `F(2,3)` at 7x7 or
/// 8x8 and of `F(4,3)` at 14x14 ran as 7 + 7 + 2, a quarter of the GEMM spent on zero rows
/// (64 tiles: 10 tiles of 7, a tenth). 16 of its 32 registers accumulate, against 14 for
/// 7x32. ResNet's 3x3 512->512 at 7x7, `F(2,3)`, `COLD=64 LAYOUT=nchw16c cargo bench -p
/// shortcut-core --bench conv_table -- avx512 3x3_512` on the Zen 5 host: 248 -> 319
/// GFLOP/s (GemmT 211-213).
///
/// Same panel width as [`KERNELS`]' `gemm_b`, so the same packed weights.
pub const GEMM_B_8X32: GemmKernel =
    GemmKernel { name: "avx512_gemm_b_f32_8x32", mr: 8, nr: 32, run: blocked::<8, 2, 16> };

/// The 14x32 sibling of `KERNELS.gemm_tb` (`G = 1`), for stems whose output rows are multiples
/// of 14.
pub const GEMM_TB_WIDE: GemmKernel =
    GemmKernel { name: "avx512_gemm_tb_f32_14x32", mr: 14, nr: 32, run: blocked::<14, 2, 1> };

/// The 16-column sibling of a blocked tile with `mr` rows (7: `KERNELS`' `gemm_b`, 8:
/// [`GEMM_B_8X32`], 14: [`GEMM_B_WIDE`]), reading the same packed panels (`ldb` stays the
/// panel's width): the tile for a last panel of 16 channels (layers whose channels per group
/// are an odd multiple of 16, e.g. CIFAR ResNets' 16-channel stage), which the 32-column tiles
/// would compute half on zero weights and store through scratch.
pub fn gemm_b_narrow_for(mr: usize) -> Option<GemmKernel> {
    match mr {
        7 => Some(GemmKernel {
            name: "avx512_gemm_b_f32_7x16",
            mr: 7,
            nr: 16,
            run: blocked::<7, 1, 16>,
        }),
        8 => Some(GemmKernel {
            name: "avx512_gemm_b_f32_8x16",
            mr: 8,
            nr: 16,
            run: blocked::<8, 1, 16>,
        }),
        14 => Some(GemmKernel {
            name: "avx512_gemm_b_f32_14x16",
            mr: 14,
            nr: 16,
            run: blocked::<14, 1, 16>,
        }),
        _ => None,
    }
}

/// The 16-column sibling of `KERNELS.gemm_tb` (the 16-channel stem of a CIFAR ResNet in a
/// blocked network).
pub const GEMM_TB_NARROW: GemmKernel =
    GemmKernel { name: "avx512_gemm_tb_f32_7x16", mr: 7, nr: 16, run: blocked::<7, 1, 1> };

/// # Safety
/// See [`GemmKernel`]; AVX-512F is available.
#[target_feature(enable = "avx512f")]
unsafe fn gemm_7x16(t: &Tile) {
    // SAFETY: forwarded contract.
    unsafe { tile::<7, 1>(t) }
}

/// The 16-column sibling of [`gemm_7x32`] for a last panel of 16 channels (a 16-channel
/// CIFAR layer in NCHW).
pub const GEMM_T_NARROW: GemmKernel =
    GemmKernel { name: "avx512_gemm_f32_7x16", mr: 7, nr: 16, run: gemm_7x16 };

/// Sixteen `f32` lanes in a zmm register.
#[derive(Clone, Copy, Debug)]
pub struct F32x16(__m512);

// SAFETY (every `unsafe` block in this impl): a `F32x16` exists only after one of the unsafe
// constructors, whose caller guaranteed AVX-512F; pointer accesses are the documented
// contracts of the trait methods.
impl crate::arch::vector::Vector for F32x16 {
    const N: usize = 16;
    type Index = __m512i;
    #[inline(always)]
    unsafe fn zero() -> Self {
        F32x16(unsafe { _mm512_setzero_ps() })
    }
    #[inline(always)]
    unsafe fn index(base: &[u32; crate::arch::vector::LANES]) -> __m512i {
        unsafe { _mm512_loadu_si512(base.as_ptr().cast()) }
    }
    #[inline(always)]
    unsafe fn gather(p: *const f32, idx: __m512i) -> Self {
        F32x16(unsafe { _mm512_i32gather_ps::<4>(idx, p) })
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        F32x16(unsafe { _mm512_loadu_ps(p) })
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        unsafe { _mm512_storeu_ps(p, self.0) }
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        F32x16(unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p) })
    }
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as __mmask16, self.0) }
    }
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        F32x16(unsafe { _mm512_add_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        F32x16(unsafe { _mm512_sub_ps(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast()) }
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        F32x16(unsafe { _mm512_set1_ps(x) })
    }
    #[inline(always)]
    fn max(self, o: Self) -> Self {
        F32x16(unsafe { _mm512_max_ps(self.0, o.0) })
    }
    #[inline(always)]
    fn scale(self, c: f32) -> Self {
        F32x16(unsafe { _mm512_mul_ps(self.0, _mm512_set1_ps(c)) })
    }
    #[inline(always)]
    fn scale_add(self, c: f32, o: Self) -> Self {
        F32x16(unsafe { _mm512_fmadd_ps(self.0, _mm512_set1_ps(c), o.0) })
    }
    #[inline(always)]
    fn mul_add(self, b: Self, o: Self) -> Self {
        F32x16(unsafe { _mm512_fmadd_ps(self.0, b.0, o.0) })
    }
}
