//! The fast portable ops against the reference, on random shapes.

use proptest::prelude::*;
use shortcut_core::arch::Isa;
use shortcut_core::layout::{self, ActLayout};
use shortcut_core::shape::PoolGeometry;
use shortcut_core::{ops, reference, Shape};

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// The fast max-pool equals the reference bit for bit (when the geometry fits the input).
fn check_max_pool(g: PoolGeometry, shape: Shape, seed: u64) -> Result<(), TestCaseError> {
    let Some(out) = g.output_shape(shape) else { return Ok(()) };
    let x = values(shape.len(), seed);
    let (mut a, mut b) = (vec![0.0; out.len()], vec![0.0; out.len()]);
    reference::max_pool2d(&g, &x, shape, &mut a);
    ops::max_pool2d(&g, &x, shape, &mut b);
    prop_assert_eq!(a, b);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Max is exact: bit-identical to the reference.
    #[test]
    fn max_pool_matches_reference(n in 1usize..3, c in 1usize..5, h in 1usize..20, w in 1usize..20,
                                  k in 1usize..4, s in 1usize..3, p in 0usize..2, seed in any::<u64>()) {
        check_max_pool(PoolGeometry { kernel: k, stride: s, pad: p }, Shape::new(n, c, h, w), seed)?;
    }

    /// Rows wider than the pool's 512-column block, so blocks split a row (at odd places).
    #[test]
    fn max_pool_wide_rows_match_reference(w in 500usize..1200, k in 1usize..8, s in 1usize..4,
                                          p in 0usize..3, seed in any::<u64>()) {
        check_max_pool(PoolGeometry { kernel: k, stride: s, pad: p }, Shape::new(1, 2, 3, w), seed)?;
    }

    /// Every available ISA's kernel; summation order differs from the reference's:
    /// |y - ref| <= 1e-6 * (1 + sum |x w|). Sizes cover vector tails (`i` not a multiple of
    /// 4/8/16) and row groups with a remainder (`o` not a multiple of 4/8). Any split of the
    /// output rows (as threads split them) gives the same bits.
    #[test]
    fn linear_matches_reference(n in 1usize..4, i in 1usize..70, o in 1usize..20, cut in 0usize..20,
                                seed in any::<u64>()) {
        let x = values(n * i, seed);
        let w = values(i * o, seed ^ 1);
        let b = values(o, seed ^ 2);
        let mut a = vec![0.0; n * o];
        reference::linear(i, o, &x, &w, &b, &mut a);
        for isa in Isa::all_available() {
            let mut f = vec![f32::NAN; n * o];
            ops::linear(isa, i, o, &x, &w, &b, &mut f);
            for (idx, (r, v)) in a.iter().zip(&f).enumerate() {
                let bound: f32 = (0..i).map(|k| (x[idx / o * i + k] * w[idx % o * i + k]).abs()).sum();
                prop_assert!((r - v).abs() <= 1e-6 * (1.0 + bound), "{}: {} vs {}", isa, r, v);
            }
            if n == 1 {
                let cut = cut.min(o);
                let mut g = vec![f32::NAN; o];
                let (g0, g1) = g.split_at_mut(cut);
                ops::linear(isa, i, cut, &x, &w[..cut * i], &b[..cut], g0);
                ops::linear(isa, i, o - cut, &x, &w[cut * i..], &b[cut..], g1);
                prop_assert_eq!(&f, &g, "{}: rows split at {}", isa, cut);
            }
        }
    }

    #[test]
    fn affine_and_avg_pool_match_reference(n in 1usize..3, c in 1usize..6, h in 1usize..12, w in 1usize..12,
                                           relu in any::<bool>(), seed in any::<u64>()) {
        let shape = Shape::new(n, c, h, w);
        let x = values(shape.len(), seed);
        let (sc, sh) = (values(c, seed ^ 3), values(c, seed ^ 4));
        let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        reference::affine(&sc, &sh, relu, &x, shape, &mut a);
        ops::affine(&sc, &sh, relu, &x, shape, &mut b);
        prop_assert_eq!(a, b);
        let (kh, kw) = (h.div_ceil(2), w);
        let (mut p, mut q) = (vec![0.0; n * c], vec![0.0; n * c]);
        reference::avg_pool_window(&x, shape, kh, kw, &mut p);
        ops::avg_pool_window(&x, shape, kh, kw, &mut q);
        for (r, v) in p.iter().zip(&q) {
            prop_assert!((r - v).abs() <= 1e-6 * (1.0 + r.abs()));
        }
    }
}

/// `x` (NCHW, `shape`) in the blocked layout.
fn blocked(x: &[f32], shape: Shape) -> Vec<f32> {
    let mut o = vec![0.0; x.len()];
    layout::convert(x, ActLayout::Nchw, shape, &mut o, ActLayout::Nchw16c);
    o
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The blocked ops equal the reference on the same tensors converted to `NCHW16c`: bit for
    /// bit where the arithmetic is the same (max-pool, affine, the option-A shortcut), within
    /// summation-order rounding for the average.
    #[test]
    fn blocked_ops_match_reference(n in 1usize..3, blocks in 1usize..4, h in 1usize..14,
                                   w in 1usize..14, k in 1usize..5, s in 1usize..4, p in 0usize..3,
                                   relu in any::<bool>(), extra in 1usize..3,
                                   pad_front in 0usize..=32, seed in any::<u64>()) {
        let c = 16 * blocks;
        let shape = Shape::new(n, c, h, w);
        let x = values(shape.len(), seed);
        let xb = blocked(&x, shape);
        let g = PoolGeometry { kernel: k, stride: s, pad: p };
        if let Some(out) = g.output_shape(shape) {
            let (mut a, mut b) = (vec![0.0; out.len()], vec![0.0; out.len()]);
            reference::max_pool2d(&g, &x, shape, &mut a);
            ops::nchw16c::max_pool2d(&g, &xb, shape, &mut b);
            prop_assert_eq!(blocked(&a, out), b);
        }
        let (sc, sh) = (values(c, seed ^ 3), values(c, seed ^ 4));
        let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        reference::affine(&sc, &sh, relu, &x, shape, &mut a);
        ops::nchw16c::affine(&sc, &sh, relu, &xb, shape, &mut b);
        prop_assert_eq!(blocked(&a, shape), b);
        let (kh, kw) = (h.div_ceil(2), w);
        let (mut a, mut b) = (vec![0.0; n * c], vec![0.0; n * c]);
        reference::avg_pool_window(&x, shape, kh, kw, &mut a);
        ops::nchw16c::avg_pool_window(&xb, shape, kh, kw, &mut b);
        for (r, v) in a.iter().zip(&b) {
            prop_assert!((r - v).abs() <= 1e-6 * (1.0 + r.abs()), "{} vs {}", r, v);
        }
        // Option A pads `extra` blocks of channels; the shift need not be whole blocks.
        let out_c = c + 16 * extra;
        let pad_front = pad_front.min(out_c - c);
        let out = reference::subsample_pad_shape(shape, s, out_c);
        let (mut a, mut b) = (vec![0.0; out.len()], vec![0.0; out.len()]);
        reference::subsample_pad_channels(&x, shape, s, out_c, pad_front, &mut a);
        ops::nchw16c::subsample_pad_channels(&xb, shape, s, out_c, pad_front, &mut b);
        prop_assert_eq!(blocked(&a, out), b);
    }
}
