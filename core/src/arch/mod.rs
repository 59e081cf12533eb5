//! Instruction sets and the micro-kernels written for each of them.
//!
//! Every SIMD instruction of the crate lives below this module, one file per ISA:
//! [`scalar`] (portable Rust, every target), `x86_64/avx2.rs` (AVX2 + FMA),
//! `x86_64/avx512.rs` (AVX-512F) and `aarch64/neon.rs`. Each exposes the same small set of
//! kernels with the same contracts, and [`kernels`] is the one place that maps an [`Isa`] to
//! them. A generic x86_64 build contains the AVX2 and AVX-512 code and, with the `std`
//! feature, selects it at run time through [`Isa::is_available`], so the same binary runs
//! everywhere (without `std`, only what the build's target features promise is used).
//!
//! The kernels are:
//! - a GEMM micro-kernel ([`GemmKernel`]): one `MR x NR` tile of `C = A·B` over packed panels,
//!   with the convolution epilogue (bias, accumulate into `C`, ReLU) fused into the store;
//! - Winograd transforms ([`WinogradKernels`]) and a direct stride-1 convolution
//!   ([`DirectKernel`]), written once in [`winograd`] and [`direct`] against the small
//!   [`vector::Vector`] trait that each ISA implements with its registers, and compiled per ISA
//!   inside its `#[target_feature]` wrappers;
//! - the same way, the blocked-layout kernels ([`blocked`]) and the FC head's matrix-vector
//!   product ([`linear`]).

pub mod blocked;
pub mod direct;
pub mod linear;
pub mod scalar;
pub mod transpose;
pub mod vector;
pub mod winograd;

#[cfg(target_arch = "x86_64")]
pub mod x86_64;

#[cfg(target_arch = "aarch64")]
pub mod aarch64;

/// An instruction set a kernel is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable Rust; runs on every target.
    Scalar,
    /// x86_64 AVX2 with FMA.
    Avx2,
    /// x86_64 AVX-512F.
    Avx512,
    /// aarch64 Advanced SIMD.
    Neon,
}

impl Isa {
    /// Every ISA, in order of preference (best first).
    pub const ALL: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Neon, Isa::Scalar];

    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    pub fn from_name(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == s)
    }

    /// Whether this CPU can run the ISA's kernels. With the `std` feature x86 features are
    /// detected at run time; without it only what the build targets (`-C target-feature`)
    /// counts. NEON is part of every aarch64 target.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => avx2_available(),
            Isa::Avx512 => avx512_available(),
            Isa::Neon => cfg!(target_arch = "aarch64"),
        }
    }

    /// The fastest available ISA: AVX-512 > AVX2 > NEON > scalar.
    pub fn best_available() -> Isa {
        Isa::ALL.into_iter().find(|isa| isa.is_available()).unwrap_or(Isa::Scalar)
    }

    /// Every available ISA, best first.
    pub fn all_available() -> impl Iterator<Item = Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.is_available())
    }
}

impl core::fmt::Display for Isa {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn avx2_available() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(all(target_arch = "x86_64", feature = "std"))]
fn avx512_available() -> bool {
    std::is_x86_feature_detected!("avx512f")
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn avx2_available() -> bool {
    cfg!(all(target_feature = "avx2", target_feature = "fma"))
}

#[cfg(all(target_arch = "x86_64", not(feature = "std")))]
fn avx512_available() -> bool {
    cfg!(target_feature = "avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn avx2_available() -> bool {
    false
}

#[cfg(not(target_arch = "x86_64"))]
fn avx512_available() -> bool {
    false
}

/// A bound on `MR x NR` of every GEMM kernel, so callers can size an edge-tile buffer.
pub const MAX_TILE: usize = 16 * 64;

/// Arguments of one micro-kernel call: `C[MR x NR] = epilogue(A·B)`.
///
/// `a` is an `MR`-row panel stored k-major with step stride `lda` (`a[k * lda + r]`; `lda = MR`
/// for a packed panel), or with `a_offsets` set, step `k`'s rows at `a[a_offsets[k] + r]`; `b`
/// an `NR`-column panel with row stride `ldb` (`b[k * ldb + j]`;
/// `ldb = NR` for a packed panel), `c` the tile's top-left
/// element with row stride `ldc`. The kernel computes
/// `c[r, j] = relu?(sum_k a[k, r] * b[k, j] + bias[r]? + c[r, j]?)`, where `bias` is applied
/// unless null and the old `c` is added when `load_c`.
#[derive(Clone, Copy, Debug)]
pub struct Tile {
    pub k: usize,
    pub a: *const f32,
    /// Floats between consecutive steps of `a` (`>= MR`), unless `a_offsets` is set.
    pub lda: usize,
    /// Null, or `k` offsets: step `k`'s `MR` floats of `a` then start at `a + a_offsets[k]`
    /// (an indirect operand, e.g. the taps of a convolution window read in place).
    pub a_offsets: *const u32,
    pub b: *const f32,
    pub ldb: usize,
    pub c: *mut f32,
    pub ldc: usize,
    /// `MR` row biases, or null for none.
    pub bias: *const f32,
    pub load_c: bool,
    pub relu: bool,
    /// A hint, or null: at step `s` the kernel may prefetch the `min(prefetch_ld, nr)` floats
    /// at `prefetch + s * prefetch_ld` while it runs: with `prefetch_ld = ldb` the rows of a
    /// panel laid out as `b` (e.g. the next in-place `B` panel), with less a slice of a
    /// contiguous run that several tiles share. Prefetching never faults, so this pointer need
    /// not be readable; kernels that ignore it are correct too.
    pub prefetch: *const f32,
    /// Floats between the rows of `prefetch` (see there).
    pub prefetch_ld: usize,
}

impl Tile {
    /// Cache lines (16 floats) a kernel `nr` columns wide prefetches per step: those of the
    /// `min(prefetch_ld, nr)` floats at the step's row of [`Tile::prefetch`].
    #[inline(always)]
    pub fn prefetch_lines(&self, nr: usize) -> usize {
        self.prefetch_ld.min(nr).div_ceil(16)
    }
}

/// A GEMM micro-kernel: computes one full `mr x nr` tile.
///
/// # Safety (of calling `run`)
/// The kernel's ISA is available; `a` is readable for `mr` floats at each of `k` steps of
/// `lda` (or, with `a_offsets` set, `k` offsets readable at it and `mr` floats readable at
/// `a + a_offsets[k]`), `b` for rows
/// `0..k` of `nr` floats at stride `ldb`, `bias` (unless null) for `mr` floats, and `c` is
/// readable and writable for `mr` rows of `nr` floats at stride `ldc`, not aliasing `a`/`b`.
#[derive(Clone, Copy, Debug)]
pub struct GemmKernel {
    pub name: &'static str,
    pub mr: usize,
    pub nr: usize,
    pub run: unsafe fn(&Tile),
}

/// Winograd input/output transforms for one `F(m, 3)`, compiled for one ISA.
///
/// The transforms work on `lanes` tiles at once; see [`winograd::InputArgs`],
/// [`winograd::OutputArgs`] and [`winograd::StoreArgs`] for the exact contracts.
#[derive(Clone, Copy, Debug)]
pub struct WinogradKernels {
    /// Tiles per call, at most (`<=` [`winograd::LANES`]).
    pub lanes: usize,
    pub input: unsafe fn(&winograd::InputArgs),
    pub output: unsafe fn(&winograd::OutputArgs),
    pub store: unsafe fn(&winograd::StoreArgs),
}

/// Winograd input/output transforms of one `F(m, 3)` on channel-blocked activations, one tile
/// per call; see [`blocked::WinogradInputArgs`] and [`blocked::WinogradOutputArgs`].
#[derive(Clone, Copy, Debug)]
pub struct BlockedWinograd {
    pub input: unsafe fn(&blocked::WinogradInputArgs),
    pub output: unsafe fn(&blocked::WinogradOutputArgs),
}

/// The direct stride-1 convolution kernel of an ISA; see [`direct::DirectArgs`].
#[derive(Clone, Copy, Debug)]
pub struct DirectKernel {
    /// Lanes per vector.
    pub lanes: usize,
    /// Vectors of output pixels per call, at most.
    pub max_vectors: usize,
    pub run: unsafe fn(&direct::DirectArgs),
}

/// Everything an [`Isa`] provides.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub isa: Isa,
    pub gemm: GemmKernel,
    /// The micro-kernel of [`crate::conv::ConvAlgo::GemmT`], whose rows are output pixels and
    /// columns output channels (same contract, operands swapped): wide in channels, so small
    /// images fill its tiles and each weight is read once per tile of pixels.
    pub gemm_t: GemmKernel,
    /// The transposing store of the transposed GEMMs; see [`transpose::TransposeArgs`].
    pub store_t: unsafe fn(&transpose::TransposeArgs),
    /// The pixel-rows micro-kernel for channel-blocked inputs: the [`Tile`] contract, with
    /// the row operand read in groups of 16 steps from blocked activations (see
    /// [`blocked::gemm_blocked`]); `nr` is a multiple of [`blocked::BLOCK`].
    pub gemm_b: GemmKernel,
    /// The pixel-rows micro-kernel from NCHW input into channel-blocked output (the stem of a
    /// blocked network): [`Kernels::gemm_t`]'s row operand, [`Kernels::gemm_b`]'s blocked
    /// output, per-column bias and shape (see [`blocked::gemm_blocked`] with `G = 1`).
    pub gemm_tb: GemmKernel,
    /// The store of tiles into channel-blocked output; see [`blocked::BlockedStoreArgs`].
    pub store_b: unsafe fn(&blocked::BlockedStoreArgs),
    /// Winograd `F(2,3)`, `F(4,3)`, `F(6,3)` transforms of channel-blocked activations.
    pub winograd_b: [BlockedWinograd; 3],
    /// `F(2,3)`, `F(4,3)`, `F(6,3)`.
    pub winograd: [WinogradKernels; 3],
    pub direct: DirectKernel,
    /// The FC head's matrix-vector product; see [`linear::LinearArgs`].
    pub linear: unsafe fn(&linear::LinearArgs),
}

/// The kernels of `isa`, or `None` when this build does not contain them (e.g. NEON on x86).
/// The caller still checks [`Isa::is_available`] before running them.
pub fn kernels(isa: Isa) -> Option<Kernels> {
    match isa {
        Isa::Scalar => Some(scalar::KERNELS),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(x86_64::avx2::KERNELS),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(x86_64::avx512::KERNELS),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => Some(aarch64::neon::KERNELS),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}
