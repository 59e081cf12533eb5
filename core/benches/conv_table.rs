//! Best-of-N single-thread GFLOP/s of every ISA and algorithm on ResNet layer shapes, printed
//! as a table: the measurements behind `PackedConv::choose_for_input`. On a shared machine the
//! best of many short runs is steadier than criterion's mean.
//!
//! `cargo bench -p shortcut-core --bench conv_table [-- ISA [LAYER-FILTER]]`
//!
//! GFLOP/s count the direct convolution's `2 * MACs`, also for Winograd.

use std::time::Instant;

use shortcut_core::arch::Isa;
use shortcut_core::conv::{ConvAlgo, PackedConv};
use shortcut_core::{Conv2dGeometry, Epilogue, Shape};

/// (name, geometry, input height = width).
const LAYERS: [(&str, Conv2dGeometry, usize); 21] = [
    ("stem_7x7s2_3-64_224", Conv2dGeometry::square(3, 64, 7, 2, 3, 1), 224),
    ("1x1_256-64_56", Conv2dGeometry::square(256, 64, 1, 1, 0, 1), 56),
    ("1x1_64-256_56", Conv2dGeometry::square(64, 256, 1, 1, 0, 1), 56),
    ("3x3_64-64_56", Conv2dGeometry::square(64, 64, 3, 1, 1, 1), 56),
    ("3x3_128-128_28", Conv2dGeometry::square(128, 128, 3, 1, 1, 1), 28),
    ("3x3s2_128-128_56", Conv2dGeometry::square(128, 128, 3, 2, 1, 1), 56),
    ("3x3s2_128-128_28", Conv2dGeometry::square(128, 128, 3, 2, 1, 1), 28),
    ("3x3_256-256_14", Conv2dGeometry::square(256, 256, 3, 1, 1, 1), 14),
    ("1x1_1024-256_14", Conv2dGeometry::square(1024, 256, 1, 1, 0, 1), 14),
    ("1x1_512-2048_7", Conv2dGeometry::square(512, 2048, 1, 1, 0, 1), 7),
    ("1x1_2048-512_7", Conv2dGeometry::square(2048, 512, 1, 1, 0, 1), 7),
    ("1x1s2_256-512_56", Conv2dGeometry::square(256, 512, 1, 2, 0, 1), 56),
    ("1x1s2_1024-2048_14", Conv2dGeometry::square(1024, 2048, 1, 2, 0, 1), 14),
    ("3x3s2_256-256_14", Conv2dGeometry::square(256, 256, 3, 2, 1, 1), 14),
    ("3x3_512-512_7", Conv2dGeometry::square(512, 512, 3, 1, 1, 1), 7),
    ("3x3_16-16_32", Conv2dGeometry::square(16, 16, 3, 1, 1, 1), 32),
    ("3x3_64-64_8", Conv2dGeometry::square(64, 64, 3, 1, 1, 1), 8),
    ("3x3g32_128-128_56", Conv2dGeometry::square(128, 128, 3, 1, 1, 32), 56),
    ("3x3g32_256-256_28", Conv2dGeometry::square(256, 256, 3, 1, 1, 32), 28),
    ("3x3g32_512-512_14", Conv2dGeometry::square(512, 512, 3, 1, 1, 32), 14),
    ("3x3g32_1024-1024_7", Conv2dGeometry::square(1024, 1024, 3, 1, 1, 32), 7),
];

fn main() {
    // `cargo bench` passes `--bench`; the remaining arguments are ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let isas: Vec<Isa> = match args.first().and_then(|s| Isa::from_name(s)) {
        Some(isa) => vec![isa],
        None => Isa::all_available().collect(),
    };
    let filter = args.get(1).cloned().unwrap_or_default();
    for isa in isas.into_iter().filter(|isa| isa.is_available()) {
        println!("{isa}");
        for (name, geom, hw) in LAYERS.into_iter().filter(|l| l.0.contains(&filter)) {
            let in_shape = Shape::new(1, geom.in_channels, hw, hw);
            let out_shape = geom.output_shape(in_shape).expect("layer fits");
            let flops = 2.0 * geom.macs(out_shape.h, out_shape.w) as f64;
            let x: Vec<f32> = (0..in_shape.len()).map(|i| (i % 97) as f32 / 97.0).collect();
            let w: Vec<f32> =
                (0..geom.weight_len()).map(|i| (i % 89) as f32 / 890.0 - 0.05).collect();
            let b = vec![0.1; geom.out_channels];
            let mut out = vec![0.0; out_shape.len()];
            let picked = PackedConv::choose_for_input(isa, &geom, in_shape);
            let mut line = format!("  {name:20}");
            for algo in ConvAlgo::ALL {
                let Some(p) = PackedConv::try_new(isa, Some(algo), &geom, &w, &b) else {
                    continue;
                };
                let mut scratch = vec![0.0; p.scratch_len(in_shape)];
                let reps = ((4e9 / flops) as usize).clamp(5, 400);
                let mut best = f64::MAX;
                for _ in 0..reps {
                    let t = Instant::now();
                    p.run(&x, in_shape, &mut out, Epilogue::RELU, &mut scratch);
                    best = best.min(t.elapsed().as_secs_f64());
                }
                let mark = if algo == picked { "*" } else { "" };
                line += &format!(" {}{mark}={:.0}", algo.name(), flops / best / 1e9);
            }
            println!("{line}");
        }
    }
}
