//! Best-of-N single-thread GFLOP/s of every ISA and algorithm on ResNet layer shapes, printed
//! as a table: the measurements behind `PackedConv::choose_for_input`. On a shared machine the
//! best of many short runs is steadier than criterion's mean.
//!
//! `[COLD=N] [LAYOUT=nchw16c] [ALGO=name] [GFLOP=g] cargo bench -p shortcut-core --bench
//! conv_table [-- ISA [FILTER]]`
//!
//! With `COLD=N` each run uses the next of `N` copies of the packed weights, so that (for `N`
//! large enough to overflow the caches) weights come from memory, as they do in a network.
//! With `LAYOUT=nchw16c` the algorithms that run on channel-blocked activations are timed in
//! that layout (the stem from NCHW input), where the layer's channels allow it. `ALGO` times
//! one algorithm only (e.g. `winograd2`, or the `matrixmultiply` baseline), and `GFLOP` sets
//! the work per layer and algorithm (default 4, at most 400 runs): both make `perf record` of
//! one layer's kernel practical.
//!
//! GFLOP/s count the direct convolution's `2 * MACs`, also for Winograd. `*` marks the
//! algorithm the runtime picks for the layer on this host (`conv::Host::detect`, or
//! `SHORTCUT_WEIGHT_STREAM=fast|slow`).

use std::time::Instant;

use shortcut_core::arch::Isa;
use shortcut_core::conv::{ConvAlgo, Host, PackedConv};
use shortcut_core::layout::ActLayout;
use shortcut_core::{Epilogue, Shape};

#[path = "common/layers.rs"]
mod layers;
use layers::LAYERS;

fn main() {
    // `cargo bench` passes `--bench`; the remaining arguments are ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let isas: Vec<Isa> = match args.first().and_then(|s| Isa::from_name(s)) {
        Some(isa) => vec![isa],
        None => Isa::all_available().collect(),
    };
    let filter = args.get(1).cloned().unwrap_or_default();
    let copies: usize = std::env::var("COLD").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    // The `*` marks the runtime's pick on this host (`SHORTCUT_WEIGHT_STREAM` as there).
    let host = std::env::var("SHORTCUT_WEIGHT_STREAM").ok().and_then(|s| Host::from_name(&s));
    let host = host.unwrap_or_else(Host::detect);
    let only = std::env::var("ALGO").ok();
    let known =
        |name: &str| name == "matrixmultiply" || ConvAlgo::ALL.iter().any(|a| a.name() == name);
    if let Some(name) = only.as_deref().filter(|name| !known(name)) {
        eprintln!("conv_table: unknown ALGO `{name}`");
        std::process::exit(2);
    }
    let work: f64 = std::env::var("GFLOP").ok().and_then(|v| v.parse().ok()).unwrap_or(4.0);
    let blocked = std::env::var("LAYOUT").is_ok_and(|l| l == ActLayout::Nchw16c.name());
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
            let input = if geom.in_channels == 3 { ActLayout::Nchw } else { ActLayout::Nchw16c };
            let layouts = if blocked {
                (input, ActLayout::Nchw16c)
            } else {
                (ActLayout::Nchw, ActLayout::Nchw)
            };
            let picked = PackedConv::choose_for_host(isa, host, &geom, in_shape, layouts);
            let mut line = format!("  {name:20}");
            let algos = ConvAlgo::ALL.into_iter();
            for algo in algos.filter(|a| only.as_deref().is_none_or(|o| o == a.name())) {
                let packed =
                    PackedConv::try_new_with_layouts(isa, Some(algo), &geom, &w, &b, layouts);
                let Some(p) = packed else {
                    continue;
                };
                let mut scratch = vec![0.0; p.scratch_len(in_shape)];
                let packed = vec![p; copies.max(1)];
                let reps = ((work * 1e9 / flops) as usize).clamp(5, 400);
                let mut best = f64::MAX;
                for p in packed.iter().cycle().take(reps) {
                    let t = Instant::now();
                    p.run(&x, in_shape, &mut out, Epilogue::RELU, &mut scratch);
                    best = best.min(t.elapsed().as_secs_f64());
                }
                let mark = if algo == picked { "*" } else { "" };
                line += &format!(" {}{mark}={:.0}", algo.name(), flops / best / 1e9);
            }
            let baseline = only.as_deref().is_none_or(|o| o == "matrixmultiply");
            if baseline && !blocked && geom.kernel_h == 1 && geom.stride_h == 1 && geom.groups == 1
            {
                let reps = ((work * 1e9 / flops) as usize).clamp(5, 400);
                let best =
                    pointwise_matrixmultiply(&geom, &x, &w, &b, hw * hw, &mut out, (copies, reps));
                line += &format!(" matrixmultiply={:.0}", flops / best / 1e9);
            }
            println!("{line}");
        }
    }
}

/// Best seconds of `reps` runs of a pointwise convolution through `matrixmultiply::sgemm`
/// (`out = W · x` over the NCHW planes in place, then bias and ReLU in a second pass), with
/// `copies` copies of the weights rotated as for our kernels.
fn pointwise_matrixmultiply(
    geom: &shortcut_core::Conv2dGeometry,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    pixels: usize,
    out: &mut [f32],
    (copies, reps): (usize, usize),
) -> f64 {
    let (m, k, n) = (geom.out_channels, geom.in_channels, pixels);
    let weights = vec![w.to_vec(); copies.max(1)];
    let mut best = f64::MAX;
    for w in weights.iter().cycle().take(reps) {
        let t = Instant::now();
        // SAFETY: row-major `m x k`, `k x n` and `m x n` matrices inside `w`, `x` and `out`.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                w.as_ptr(),
                k as isize,
                1,
                x.as_ptr(),
                n as isize,
                1,
                0.0,
                out.as_mut_ptr(),
                n as isize,
                1,
            )
        };
        for (row, bias) in out.chunks_exact_mut(n).zip(b) {
            for v in row {
                *v = (*v + bias).max(0.0);
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}
