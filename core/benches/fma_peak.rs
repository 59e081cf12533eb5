//! The machine's single-thread f32 FMA peak, the ceiling the kernels' GFLOP/s are read
//! against: twelve independent FMA chains per vector width (enough to hide a 4-cycle latency
//! on two pipes), best of several runs. The compiler cannot shorten the loop: it is assembly.
//!
//! `cargo bench -p shortcut-core --bench fma_peak`

use std::time::Instant;

/// FMAs per loop iteration (one per accumulator).
const CHAINS: f64 = 12.0;

fn main() {
    #[cfg(target_arch = "x86_64")]
    x86::run();
    #[cfg(not(target_arch = "x86_64"))]
    println!("fma_peak: only x86_64 is measured");
}

/// Best GFLOP/s of `f(iterations)` over `runs` runs, `flops_per_iter` each.
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{best_gflops, CHAINS};
    use std::arch::asm;

    pub fn run() {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // 16 lanes x 2 flops per FMA.
            let g = best_gflops(CHAINS * 32.0, |n| {
                // SAFETY: AVX-512F was detected; the assembly touches only the declared
                // registers and no memory.
                unsafe { fma_zmm(n) }
            });
            println!("avx512 f32 FMA peak: {g:.1} GFLOP/s per core");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            let g = best_gflops(CHAINS * 16.0, |n| {
                // SAFETY: FMA (and so AVX) was detected; the assembly touches only the
                // declared registers and no memory.
                unsafe { fma_ymm(n) }
            });
            println!("avx2 (fma) f32 FMA peak: {g:.1} GFLOP/s per core");
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn fma_zmm(n: u64) {
        // SAFETY: register-only arithmetic on the clobbered registers; the caller checked
        // AVX-512F.
        unsafe {
            asm!(
                "vxorps {z:x}, {z:x}, {z:x}",
                "2:",
                "vfmadd231ps zmm4, {z}, {z}",
                "vfmadd231ps zmm5, {z}, {z}",
                "vfmadd231ps zmm6, {z}, {z}",
                "vfmadd231ps zmm7, {z}, {z}",
                "vfmadd231ps zmm8, {z}, {z}",
                "vfmadd231ps zmm9, {z}, {z}",
                "vfmadd231ps zmm10, {z}, {z}",
                "vfmadd231ps zmm11, {z}, {z}",
                "vfmadd231ps zmm12, {z}, {z}",
                "vfmadd231ps zmm13, {z}, {z}",
                "vfmadd231ps zmm14, {z}, {z}",
                "vfmadd231ps zmm15, {z}, {z}",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) n => _,
                z = out(zmm_reg) _,
                out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
                out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
                options(nomem, nostack),
            );
        }
    }

    #[target_feature(enable = "avx,fma")]
    unsafe fn fma_ymm(n: u64) {
        // SAFETY: register-only arithmetic on the clobbered registers; the caller checked FMA.
        unsafe {
            asm!(
                "vxorps {z}, {z}, {z}",
                "2:",
                "vfmadd231ps ymm4, {z}, {z}",
                "vfmadd231ps ymm5, {z}, {z}",
                "vfmadd231ps ymm6, {z}, {z}",
                "vfmadd231ps ymm7, {z}, {z}",
                "vfmadd231ps ymm8, {z}, {z}",
                "vfmadd231ps ymm9, {z}, {z}",
                "vfmadd231ps ymm10, {z}, {z}",
                "vfmadd231ps ymm11, {z}, {z}",
                "vfmadd231ps ymm12, {z}, {z}",
                "vfmadd231ps ymm13, {z}, {z}",
                "vfmadd231ps ymm14, {z}, {z}",
                "vfmadd231ps ymm15, {z}, {z}",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) n => _,
                z = out(ymm_reg) _,
                out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                options(nomem, nostack),
            );
        }
    }
}
