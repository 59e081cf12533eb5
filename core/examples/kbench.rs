use shortcut_core::arch::{GemmKernel, Tile};
use std::time::Instant;
fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        let mut ks: Vec<GemmKernel> = shortcut_core::arch::x86_64::avx512::GEMM_VARIANTS.to_vec();
        ks.push(shortcut_core::arch::x86_64::avx2::KERNELS.gemm);
        for k in ks {
            for depth in [64usize, 256, 512] {
                let a = vec![0.5f32; depth * k.mr];
                let npan = 8;
                let b = vec![0.25f32; depth * k.nr * npan];
                let mut c = vec![0.0f32; k.mr * k.nr * npan];
                let iters = 200_000_000 / (depth * k.mr * k.nr);
                let t = Instant::now();
                for it in 0..iters {
                    let j = it % npan;
                    let tile = Tile {
                        k: depth,
                        a: a.as_ptr(),
                        b: b[j * depth * k.nr..].as_ptr(),
                        ldb: k.nr,
                        c: c[j * k.mr * k.nr..].as_mut_ptr(),
                        ldc: k.nr,
                        bias: std::ptr::null(),
                        load_c: true,
                        relu: false,
                    };
                    unsafe { (k.run)(&tile) };
                }
                let s = t.elapsed().as_secs_f64();
                let flops = 2.0 * (iters * depth * k.mr * k.nr) as f64;
                println!("{} k={depth}: {:.1} GFLOP/s", k.name, flops / s / 1e9);
            }
        }
    }
}
