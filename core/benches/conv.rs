//! Single-thread convolution throughput on ResNet-18/50 layer shapes (batch 1, 224x224 input),
//! for every available ISA and every algorithm that applies, in NCHW and (`ISA-nchw16c/ALGO`)
//! on channel-blocked activations where the layer's channels allow it.
//!
//! Throughput is reported in elements where one element is one FLOP (a multiply-add counts
//! two), so criterion's "Melem/s" reads as MFLOP/s.
//!
//! `cargo bench -p shortcut-core --bench conv -- --warm-up-time 1 --measurement-time 3`
//! (append a filter such as `avx512/winograd` to run a subset).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shortcut_core::arch::{self, Isa, Tile};
use shortcut_core::conv::{ConvAlgo, PackedConv};
use shortcut_core::layout::ActLayout;
use shortcut_core::{Epilogue, Shape};

#[path = "common/layers.rs"]
mod layers;
use layers::LAYERS;

fn values(len: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn conv(c: &mut Criterion) {
    for (name, geom, hw) in LAYERS {
        let in_shape = Shape::new(1, geom.in_channels, hw, hw);
        let out_shape = geom.output_shape(in_shape).expect("layer fits");
        let flops = 2 * geom.macs(out_shape.h, out_shape.w);
        let x = values(in_shape.len(), 1);
        let w = values(geom.weight_len(), 2);
        let b = values(geom.out_channels, 3);
        let mut out = vec![0.0; out_shape.len()];
        let mut group = c.benchmark_group(format!("conv/{name}"));
        group.throughput(Throughput::Elements(flops));
        // The stem reads the NCHW image even in a blocked network.
        let blocked_in = if geom.in_channels == 3 { ActLayout::Nchw } else { ActLayout::Nchw16c };
        let layouts = [(ActLayout::Nchw, ActLayout::Nchw), (blocked_in, ActLayout::Nchw16c)];
        for isa in Isa::all_available() {
            for (layouts, algo) in layouts.into_iter().flat_map(|l| ConvAlgo::ALL.map(|a| (l, a))) {
                let packed =
                    PackedConv::try_new_with_layouts(isa, Some(algo), &geom, &w, &b, layouts);
                let Some(p) = packed else {
                    continue;
                };
                let mut scratch = vec![0.0; p.scratch_len(in_shape)];
                let id = match layouts.1 {
                    ActLayout::Nchw => BenchmarkId::new(isa.name(), algo.name()),
                    ActLayout::Nchw16c => BenchmarkId::new(format!("{isa}-nchw16c"), algo.name()),
                };
                group.bench_function(id, |bench| {
                    bench.iter(|| {
                        p.run(black_box(&x), in_shape, &mut out, Epilogue::RELU, &mut scratch)
                    })
                });
            }
        }
        group.finish();
    }
}

/// The micro-kernels alone: one `A` panel against 8 `B` panels of depth 256 (L1/L2-resident),
/// accumulating into 8 tiles. The ceiling the convolutions can reach. The blocked kernels
/// (`gemm_b`) read `A` as groups of 16 steps of `MR x 16` floats and write blocked tiles
/// (`ldc = MR * 16`), the same number of floats.
fn micro_kernel(c: &mut Criterion) {
    const K: usize = 256;
    const PANELS: usize = 8;
    let mut group = c.benchmark_group("gemm_kernel");
    let all = || Isa::all_available().map(|isa| arch::kernels(isa).expect("has kernels"));
    let mut kernels: Vec<_> = all().map(|k| (k.gemm, false)).collect();
    kernels.extend(all().map(|k| (k.gemm_b, true)));
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx512.is_available() {
        kernels.extend(arch::x86_64::avx512::GEMM_VARIANTS.into_iter().skip(1).map(|k| (k, false)));
        kernels.push((arch::x86_64::avx512::GEMM_B_WIDE, true));
        kernels.push((arch::x86_64::avx512::GEMM_B_8X32, true));
    }
    for (kern, blocked) in kernels {
        let (mr, nr) = (kern.mr, kern.nr);
        let a = values(K * mr, 1);
        let b = values(K * nr * PANELS, 2);
        let mut out = vec![0.0; mr * nr * PANELS];
        group.throughput(Throughput::Elements((2 * mr * nr * K * PANELS) as u64));
        group.bench_function(kern.name, |bench| {
            bench.iter(|| {
                for (j, c) in out.chunks_exact_mut(mr * nr).enumerate() {
                    let tile = Tile {
                        k: K,
                        a: a.as_ptr(),
                        lda: if blocked { mr * 16 } else { mr },
                        a_offsets: std::ptr::null(),
                        b: b[j * K * nr..].as_ptr(),
                        ldb: nr,
                        c: c.as_mut_ptr(),
                        ldc: if blocked { mr * 16 } else { nr },
                        bias: std::ptr::null(),
                        load_c: true,
                        relu: false,
                        prefetch: std::ptr::null(),
                        prefetch_ld: 0,
                    };
                    // SAFETY: the ISA is available; `a` holds `K` steps of `mr`, each `b`
                    // panel `K` rows of `nr`, each `c` tile `mr x nr` floats.
                    unsafe { (kern.run)(black_box(&tile)) };
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, micro_kernel, conv);
criterion_main!(benches);
