//! The machine's single-thread f32 FMA peak, the ceiling the kernels' GFLOP/s are read
//! against: twelve independent FMA chains per vector width (enough to hide a 4-cycle latency
//! on two pipes), best of five runs. The compiler cannot shorten the loop: it is assembly.
//!
//! `cargo bench -p shortcut-core --bench fma_peak`

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86::run();
    #[cfg(not(target_arch = "x86_64"))]
    println!("fma_peak: only x86_64 is measured");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::time::Instant;

    /// FMAs per loop iteration (one per accumulator).
    const CHAINS: f64 = 12.0;

    /// Best GFLOP/s of `f(iterations)` over five runs, `flops_per_iter` each.
    fn best_gflops(flops_per_iter: f64, f: impl Fn(u64)) -> f64 {
        let iters = 50_000_000;
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f(iters);
                iters as f64 * flops_per_iter / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    }

    /// A function running `n` iterations of twelve independent `vfmadd231ps` on registers
    /// 4-15 of one width (`zmm` or `ymm`), all zeroed first, so no denormal slows them.
    macro_rules! fma_loop {
        ($name:ident, $feature:literal, $r:literal) => {
            #[target_feature(enable = $feature)]
            unsafe fn $name(n: u64) {
                // SAFETY: register-only arithmetic; every register written is declared
                // clobbered (`clobber_abi("C")` covers the vector registers); the caller
                // checked the target feature. `vzeroupper` leaves no dirty upper state.
                unsafe {
                    asm!(
                        "vpxor xmm0, xmm0, xmm0",
                        concat!("vmovaps ", $r, "4, ", $r, "0"),
                        concat!("vmovaps ", $r, "5, ", $r, "0"),
                        concat!("vmovaps ", $r, "6, ", $r, "0"),
                        concat!("vmovaps ", $r, "7, ", $r, "0"),
                        concat!("vmovaps ", $r, "8, ", $r, "0"),
                        concat!("vmovaps ", $r, "9, ", $r, "0"),
                        concat!("vmovaps ", $r, "10, ", $r, "0"),
                        concat!("vmovaps ", $r, "11, ", $r, "0"),
                        concat!("vmovaps ", $r, "12, ", $r, "0"),
                        concat!("vmovaps ", $r, "13, ", $r, "0"),
                        concat!("vmovaps ", $r, "14, ", $r, "0"),
                        concat!("vmovaps ", $r, "15, ", $r, "0"),
                        "2:",
                        concat!("vfmadd231ps ", $r, "4, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "5, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "6, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "7, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "8, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "9, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "10, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "11, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "12, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "13, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "14, ", $r, "0, ", $r, "0"),
                        concat!("vfmadd231ps ", $r, "15, ", $r, "0, ", $r, "0"),
                        "dec rcx",
                        "jnz 2b",
                        "vzeroupper",
                        inout("rcx") n => _,
                        clobber_abi("C"),
                        options(nomem, nostack),
                    );
                }
            }
        };
    }

    fma_loop!(fma_zmm, "avx512f", "zmm");
    fma_loop!(fma_ymm, "avx,fma", "ymm");

    pub fn run() {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // 16 lanes x 2 flops per FMA.
            // SAFETY: AVX-512F was detected.
            let g = best_gflops(CHAINS * 32.0, |n| unsafe { fma_zmm(n) });
            println!("avx512 f32 FMA peak: {g:.1} GFLOP/s per core");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: FMA (and so AVX) was detected.
            let g = best_gflops(CHAINS * 16.0, |n| unsafe { fma_ymm(n) });
            println!("avx2 (fma) f32 FMA peak: {g:.1} GFLOP/s per core");
        }
    }
}
