use shortcut_core::arch::Isa;
use shortcut_core::conv::{ConvAlgo, PackedConv};
use shortcut_core::{Conv2dGeometry, Epilogue, Shape};
use std::time::Instant;
const LAYERS: [(&str, Conv2dGeometry, usize); 9] = [
    ("stem_7x7s2_3-64_224", Conv2dGeometry::square(3, 64, 7, 2, 3, 1), 224),
    ("1x1_256-64_56", Conv2dGeometry::square(256, 64, 1, 1, 0, 1), 56),
    ("1x1_64-256_56", Conv2dGeometry::square(64, 256, 1, 1, 0, 1), 56),
    ("3x3_64-64_56", Conv2dGeometry::square(64, 64, 3, 1, 1, 1), 56),
    ("3x3_128-128_28", Conv2dGeometry::square(128, 128, 3, 1, 1, 1), 28),
    ("3x3s2_128-128_28", Conv2dGeometry::square(128, 128, 3, 2, 1, 1), 28),
    ("3x3_256-256_14", Conv2dGeometry::square(256, 256, 3, 1, 1, 1), 14),
    ("1x1_1024-256_14", Conv2dGeometry::square(1024, 256, 1, 1, 0, 1), 14),
    ("3x3_512-512_7", Conv2dGeometry::square(512, 512, 3, 1, 1, 1), 7),
];
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let isa = Isa::from_name(args.get(1).map(|s| s.as_str()).unwrap_or("avx512")).unwrap();
    let filter = args.get(2).cloned().unwrap_or_default();
    for (name, geom, hw) in LAYERS {
        if !name.contains(&filter) {
            continue;
        }
        let in_shape = Shape::new(1, geom.in_channels, hw, hw);
        let o = geom.output_shape(in_shape).unwrap();
        let flops = 2.0 * geom.macs(o.h, o.w) as f64;
        let x: Vec<f32> =
            (0..in_shape.len()).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
        let w: Vec<f32> =
            (0..geom.weight_len()).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
        let b = vec![0.1; geom.out_channels];
        let mut out = vec![0.0; o.len()];
        let mut line = format!("{name:22}");
        for algo in ConvAlgo::ALL {
            let Some(p) = PackedConv::try_new(isa, Some(algo), &geom, &w, &b) else { continue };
            let mut s = vec![0.0; p.scratch_len(in_shape)];
            let mut best = f64::MAX;
            let reps = ((2e9 / flops) as usize).clamp(5, 200);
            for _ in 0..reps {
                let t = Instant::now();
                p.run(&x, in_shape, &mut out, Epilogue::RELU, &mut s);
                best = best.min(t.elapsed().as_secs_f64());
            }
            line += &format!(" {}={:.0}", algo.name(), flops / best / 1e9);
        }
        println!("{line}");
    }
}
