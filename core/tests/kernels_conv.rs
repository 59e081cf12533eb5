//! `conv::PackedConv` against `reference::conv2d`, for every available ISA and every algorithm
//! that applies to a geometry.
//!
//! Tolerance, elementwise, with `mag = |bias| + sum_k |w_k x_k| (+ |y_prev|)`, the sum of
//! magnitudes that the output is computed from:
//! - GEMM and Direct: `|y - ref| <= 1e-5 * (1 + mag)` (f32 sums of up to ~2000 terms, in
//!   another order than the reference, with or without FMA);
//! - Winograd `F(2,3)`: `2e-5 * (1 + mag)`, `F(4,3)`: `1e-4 * (1 + mag)`,
//!   `F(6,3)`: `1e-3 * (1 + mag)` (the transforms scale inputs by up to 21/4 (`B^T`) and
//!   outputs by up to 32 (`A^T`) before cancelling). `error_report` prints the errors measured
//!   against an `f64` reference on realistic data, which stay far below these bounds.

use proptest::prelude::*;
use shortcut_core::arch::{self, winograd, Isa};
use shortcut_core::conv::{ConvAlgo, Host, OutPtr, PackedConv};
use shortcut_core::layout::{self, ActLayout};
use shortcut_core::reference;
use shortcut_core::{Conv2dGeometry, Epilogue, Shape};

fn tolerance(algo: ConvAlgo) -> f32 {
    match algo {
        ConvAlgo::Direct | ConvAlgo::Gemm | ConvAlgo::GemmT => 1e-5,
        ConvAlgo::Winograd2 | ConvAlgo::Winograd2T => 2e-5,
        ConvAlgo::Winograd4 | ConvAlgo::Winograd4T => 1e-4,
        ConvAlgo::Winograd6 => 1e-3,
    }
}

/// Deterministic values in `[-1, 1)`.
fn fill(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[derive(Clone, Debug)]
struct Case {
    geom: Conv2dGeometry,
    in_shape: Shape,
    epilogue: Epilogue,
    seed: u64,
}

struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    prev: Vec<f32>,
    expected: Vec<f32>,
    mag: Vec<f32>,
}

fn data(c: &Case) -> Data {
    let out_len = c.geom.output_shape(c.in_shape).expect("case fits").len();
    let x = fill(c.seed, c.in_shape.len());
    let w = fill(c.seed + 1, c.geom.weight_len());
    let b = fill(c.seed + 2, c.geom.out_channels);
    let prev = fill(c.seed + 3, out_len);
    let mut expected = prev.clone();
    reference::conv2d(&c.geom, &x, c.in_shape, &w, &b, &mut expected, c.epilogue);
    let abs = |v: &[f32]| v.iter().map(|v| v.abs()).collect::<Vec<_>>();
    let mut mag = abs(&prev);
    let acc = Epilogue { accumulate: c.epilogue.accumulate, relu: false };
    reference::conv2d(&c.geom, &abs(&x), c.in_shape, &abs(&w), &abs(&b), &mut mag, acc);
    Data { x, w, b, prev, expected, mag }
}

/// Largest `|y - ref| / (1 + mag)` over the output.
fn rel_error(got: &[f32], d: &Data) -> f32 {
    got.iter()
        .zip(&d.expected)
        .zip(&d.mag)
        .map(|((y, r), m)| if y.is_finite() { (y - r).abs() / (1.0 + m) } else { f32::INFINITY })
        .fold(0.0, f32::max)
}

fn run_packed(p: &PackedConv, c: &Case, d: &Data) -> Vec<f32> {
    let mut out = d.prev.clone();
    let mut scratch = vec![f32::NAN; p.scratch_len(c.in_shape)];
    p.run(&d.x, c.in_shape, &mut out, c.epilogue, &mut scratch);
    out
}

/// Checks every available ISA and every applicable algorithm on one case.
fn check(c: &Case) -> Result<(), TestCaseError> {
    let d = data(c);
    for isa in Isa::all_available() {
        for algo in ConvAlgo::ALL {
            if !PackedConv::supports(algo, &c.geom) {
                prop_assert!(PackedConv::try_new(isa, Some(algo), &c.geom, &d.w, &d.b).is_none());
                continue;
            }
            let p = PackedConv::new(isa, Some(algo), &c.geom, &d.w, &d.b);
            prop_assert_eq!((p.isa(), p.algo()), (isa, algo));
            let err = rel_error(&run_packed(&p, c, &d), &d);
            prop_assert!(
                err <= tolerance(algo),
                "{} {}: relative error {err:e} on {c:?}",
                isa,
                algo
            );
        }
    }
    Ok(())
}

/// Checks the algorithms that run blocked on every available ISA with channel-blocked output,
/// from NCHW input (the stem: GemmT) and from blocked input (GemmT and, for 3x3/1, Winograd),
/// wherever the channels per group allow it.
fn check_blocked(c: &Case) -> Result<(), TestCaseError> {
    let d = data(c);
    let out_shape = c.geom.output_shape(c.in_shape).expect("case fits");
    let to = |v: &[f32], shape: Shape, from: ActLayout, to: ActLayout| {
        let mut o = vec![0.0; v.len()];
        layout::convert(v, from, shape, &mut o, to);
        o
    };
    let (nchw, blocked) = (ActLayout::Nchw, ActLayout::Nchw16c);
    let mut checked = 0;
    for isa in Isa::all_available() {
        for (input, algo) in [nchw, blocked].into_iter().flat_map(|i| ConvAlgo::ALL.map(|a| (i, a)))
        {
            let layouts = (input, blocked);
            let p = PackedConv::try_new_with_layouts(isa, Some(algo), &c.geom, &d.w, &d.b, layouts);
            let supported = PackedConv::supports_layouts(algo, &c.geom, layouts);
            prop_assert_eq!(p.is_some(), supported, "{} {} {:?} on {:?}", isa, algo, layouts, c);
            let Some(p) = p else { continue };
            prop_assert_eq!((p.algo(), p.layouts()), (algo, layouts));
            let x =
                if input == blocked { to(&d.x, c.in_shape, nchw, blocked) } else { d.x.clone() };
            // The output between guard values that must survive.
            const GUARD: usize = 64;
            let mut buf = vec![-7.0; out_shape.len() + 2 * GUARD];
            buf[GUARD..][..out_shape.len()].copy_from_slice(&to(&d.prev, out_shape, nchw, blocked));
            let mut scratch = vec![f32::NAN; p.scratch_len(c.in_shape)];
            p.run(&x, c.in_shape, &mut buf[GUARD..][..out_shape.len()], c.epilogue, &mut scratch);
            let out = &buf[GUARD..][..out_shape.len()];
            let err = rel_error(&to(out, out_shape, blocked, nchw), &d);
            prop_assert!(
                err <= tolerance(algo),
                "{} {} {:?}: relative error {err:e} on {c:?}",
                isa,
                algo,
                layouts
            );
            let guards = buf[..GUARD].iter().chain(&buf[GUARD + out_shape.len()..]);
            prop_assert!(
                guards.into_iter().all(|&g| g == -7.0),
                "{} {}: wrote past the output",
                isa,
                algo
            );
            if !c.epilogue.accumulate {
                // One task at a time, last first, into a NaN-filled output: tasks must write
                // disjoint elements that together cover the output.
                let mut out = vec![f32::NAN; out_shape.len()];
                let ptr = OutPtr::new(&mut out);
                for t in (0..p.task_count(c.in_shape)).rev() {
                    // SAFETY: one task at a time on this thread, `out` borrowed by `ptr` only.
                    unsafe { p.run_tasks(t..t + 1, &x, c.in_shape, ptr, c.epilogue, &mut scratch) };
                }
                let err = rel_error(&to(&out, out_shape, blocked, nchw), &d);
                prop_assert!(err <= tolerance(algo), "{} {} task by task: {err:e}", isa, algo);
            }
            checked += 1;
        }
    }
    prop_assert!(checked > 0 || !c.geom.out_per_group().is_multiple_of(16), "nothing ran on {c:?}");
    Ok(())
}

/// A geometry with its own kernel size, stride and padding along each axis.
fn rect(
    cin: usize,
    cout: usize,
    (kernel_h, kernel_w): (usize, usize),
    (stride_h, stride_w): (usize, usize),
    (pad_h, pad_w): (usize, usize),
    groups: usize,
) -> Conv2dGeometry {
    Conv2dGeometry {
        in_channels: cin,
        out_channels: cout,
        kernel_h,
        kernel_w,
        stride_h,
        stride_w,
        pad_h,
        pad_w,
        groups,
    }
}

/// Geometry families: 0 = anything, 1 = pointwise (Direct applies), 2 = 3x3/1 pad 1 (Winograd).
fn case(family: u8) -> impl Strategy<Value = Case> {
    (
        (1usize..=3, prop_oneof![Just(1usize), Just(2), Just(4)], 1usize..=40, 1usize..=40),
        (prop_oneof![Just(1usize), Just(3), Just(7)], 1usize..=3, 0usize..=3),
        (1usize..=23, 1usize..=23, any::<bool>(), any::<bool>(), any::<u64>()),
    )
        .prop_map(move |((n, groups, cin, cout), (k, s, p), (h, w, accumulate, relu, seed))| {
            let (k, s, p) = match family {
                1 => (1, 1, 0),
                2 => (3, 1, 1),
                _ => (k, s, p.min(k / 2)),
            };
            let cin = cin.div_ceil(groups) * groups;
            let cout = cout.div_ceil(groups) * groups;
            // The padded input must hold one window.
            let (h, w) = (h.max(k - 2 * p), w.max(k - 2 * p));
            Case {
                geom: Conv2dGeometry::square(cin.min(40), cout.min(40), k, s, p, groups),
                in_shape: Shape::new(n, cin.min(40), h, w),
                epilogue: Epilogue { accumulate, relu },
                seed,
            }
        })
        .prop_filter("channels divisible by groups", |c| c.geom.is_valid())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_geometry_matches_reference(c in case(0)) {
        check(&c)?;
    }

    #[test]
    fn pointwise_matches_reference(c in case(1)) {
        check(&c)?;
    }

    #[test]
    fn winograd_geometry_matches_reference(c in case(2)) {
        check(&c)?;
    }

    /// Channel-blocked layouts: multiples of 16 channels per group, any kernel, stride,
    /// padding and image size (rows of partial tiles, pointwise layers with a partial last
    /// tile), and a deeper reduction than one chunk.
    #[test]
    fn blocked_layouts_match_reference(c in blocked_case(false)) {
        check_blocked(&c)?;
    }

    /// The same for 3x3/1 layers with padding 1, where Winograd runs blocked too.
    #[test]
    fn blocked_winograd_matches_reference(c in blocked_case(true)) {
        check_blocked(&c)?;
    }
}

/// Blocked-layout cases: any geometry (its own kernel, stride and padding per axis, padding up
/// to the kernel's size), or (`winograd`) 3x3, stride 1, padding 1. Input channels per group
/// up to 272, so the reduction spans several chunks (64 steps).
fn blocked_case(winograd: bool) -> impl Strategy<Value = Case> {
    let kernel = || prop_oneof![Just(1usize), Just(3), Just(5)];
    (
        (1usize..=2, 1usize..=2, prop_oneof![1usize..=3, Just(9), Just(17)], 1usize..=3),
        ((kernel(), kernel()), (1usize..=3, 1usize..=3), (0usize..=5, 0usize..=5), 1usize..=3),
        (1usize..=17, 1usize..=17, any::<bool>(), any::<bool>(), any::<u64>()),
    )
        .prop_map(
            move |((n, groups, bin, bout), (k, s, p, cin_stem), (h, w, accumulate, relu, seed))| {
                let ((kh, kw), (sh, sw), (ph, pw)) = if winograd {
                    ((3, 3), (1, 1), (1, 1))
                } else {
                    (k, s, (p.0.min(k.0), p.1.min(k.1)))
                };
                // Blocked input needs 16-channel blocks per group; a 3-channel input (the stem)
                // checks NCHW input into blocked output.
                let cin = if cin_stem == 3 { 3 } else { 16 * bin * groups };
                let groups = if cin == 3 { 1 } else { groups };
                let cout = 16 * bout * groups;
                let (h, w) = (h.max(kh.saturating_sub(2 * ph)), w.max(kw.saturating_sub(2 * pw)));
                Case {
                    geom: rect(cin, cout, (kh, kw), (sh, sw), (ph, pw), groups),
                    in_shape: Shape::new(n, cin, h.max(1), w.max(1)),
                    epilogue: Epilogue { accumulate, relu },
                    seed,
                }
            },
        )
        .prop_filter("a valid geometry whose output is not empty", |c| {
            c.geom.is_valid() && c.geom.output_shape(c.in_shape).is_some_and(|o| !o.is_empty())
        })
}

/// Shapes on both sides of each kernel's `MR` (channels) and `NR` (output width), and of the
/// Winograd tile sizes, with deep and shallow reductions.
#[test]
fn tile_edges() {
    for isa in Isa::all_available() {
        let k = arch::kernels(isa).expect("available ISA has kernels").gemm;
        let mut seed = 1000;
        for cout in [k.mr - 1, k.mr, k.mr + 1, 2 * k.mr + 1] {
            for w in [k.nr - 1, k.nr, k.nr + 1, 2 * k.nr + 3] {
                for (kernel, stride, pad, cin) in
                    [(1, 1, 0, 3), (1, 1, 0, 300), (3, 1, 1, 5), (3, 1, 1, 40), (3, 2, 1, 7)]
                {
                    seed += 1;
                    let geom = Conv2dGeometry::square(cin, cout.max(1), kernel, stride, pad, 1);
                    let c = Case {
                        geom,
                        in_shape: Shape::new(1, cin, 7, w),
                        epilogue: Epilogue { accumulate: seed % 2 == 0, relu: seed % 3 == 0 },
                        seed,
                    };
                    check(&c).unwrap_or_else(|e| panic!("{isa}: {e}"));
                }
            }
        }
        // The transposed kernel's edges: channels around its columns, pixels around its rows
        // (one image row, so a pointwise layer's last tile is partial or whole).
        let t = arch::kernels(isa).expect("available ISA has kernels").gemm_t;
        for cout in [t.nr - 1, t.nr + 1, 2 * t.nr + 1] {
            for w in [t.mr - 1, t.mr, t.mr + 1, 2 * t.mr + 3] {
                for (kernel, stride, pad, cin) in [(1, 1, 0, 9), (1, 1, 0, 300), (3, 1, 1, 6)] {
                    seed += 1;
                    let geom = Conv2dGeometry::square(cin, cout.max(1), kernel, stride, pad, 1);
                    let in_shape = Shape::new(1, cin, if kernel == 1 { 1 } else { 3 }, w);
                    let epilogue = Epilogue { accumulate: seed % 2 == 0, relu: seed % 3 == 0 };
                    check(&Case { geom, in_shape, epilogue, seed })
                        .unwrap_or_else(|e| panic!("{isa} transposed: {e}"));
                }
            }
            // Windows read in place with different strides along the two axes (rows of two
            // tiles: 3x5 kernel, strides 2 and 1).
            seed += 1;
            let geom = rect(4, cout, (3, 5), (2, 1), (1, 2), 1);
            let in_shape = Shape::new(1, 4, 6, 2 * t.mr);
            assert_eq!(geom.output_shape(in_shape).map(|o| o.w), Some(2 * t.mr));
            let epilogue = Epilogue { accumulate: true, relu: false };
            check(&Case { geom, in_shape, epilogue, seed })
                .unwrap_or_else(|e| panic!("{isa} window, strides 2x1: {e}"));
            // Strided windows read in place: output rows of exactly one and two tiles.
            for (kernel, pad, tiles) in [(3, 1, 1), (7, 3, 1), (3, 1, 2)] {
                seed += 1;
                let geom = Conv2dGeometry::square(5, cout, kernel, 2, pad, 1);
                let in_shape = Shape::new(2, 5, 5, 2 * t.mr * tiles);
                assert_eq!(geom.output_shape(in_shape).map(|o| o.w), Some(t.mr * tiles));
                let epilogue = Epilogue { accumulate: seed % 2 == 0, relu: true };
                check(&Case { geom, in_shape, epilogue, seed })
                    .unwrap_or_else(|e| panic!("{isa} strided window: {e}"));
            }
        }
    }
}

/// A depth larger than one packed chunk, and many column blocks.
#[test]
fn deep_and_wide() {
    for (geom, in_shape) in [
        (Conv2dGeometry::square(80, 24, 3, 1, 1, 1), Shape::new(1, 80, 17, 19)),
        (Conv2dGeometry::square(600, 17, 1, 1, 0, 1), Shape::new(2, 600, 9, 11)),
        (Conv2dGeometry::square(64, 33, 1, 2, 0, 1), Shape::new(1, 64, 29, 31)),
        (Conv2dGeometry::square(3, 16, 7, 2, 3, 1), Shape::new(1, 3, 45, 41)),
        (Conv2dGeometry::square(48, 48, 3, 1, 1, 4), Shape::new(1, 48, 40, 41)),
        // Different strides (and kernel sizes) along the two axes.
        (rect(20, 36, (3, 5), (2, 1), (1, 2), 1), Shape::new(1, 20, 15, 13)),
        (rect(12, 40, (1, 3), (1, 2), (0, 1), 2), Shape::new(2, 12, 9, 17)),
    ] {
        let c =
            Case { geom, in_shape, epilogue: Epilogue { accumulate: true, relu: true }, seed: 7 };
        check(&c).unwrap();
    }
}

/// Images large enough for the wide AVX-512 tile of the GEMM and pointwise paths (at least
/// 56x56 output pixels), with partial last panels.
#[test]
fn wide_images() {
    for (geom, in_shape) in [
        (Conv2dGeometry::square(40, 17, 1, 1, 0, 1), Shape::new(2, 40, 57, 59)),
        (Conv2dGeometry::square(3, 16, 7, 2, 3, 1), Shape::new(1, 3, 115, 117)),
        (Conv2dGeometry::square(8, 9, 3, 1, 1, 1), Shape::new(1, 8, 56, 57)),
        (Conv2dGeometry::square(16, 8, 1, 2, 0, 1), Shape::new(1, 16, 113, 115)),
    ] {
        for (seed, epilogue) in
            [(11, Epilogue { accumulate: true, relu: true }), (12, Epilogue::RELU)]
        {
            check(&Case { geom, in_shape, epilogue, seed }).unwrap();
        }
    }
}

/// Every GEMM micro-kernel (including the AVX-512 tile shapes kept for tuning) against a naive
/// tile product, with each epilogue and a row stride wider than the tile.
#[test]
fn gemm_micro_kernels() {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut kernels: Vec<arch::GemmKernel> = Isa::all_available()
        .flat_map(|isa| {
            let k = arch::kernels(isa).unwrap();
            [k.gemm, k.gemm_t]
        })
        .collect();
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx512.is_available() {
        kernels.extend(arch::x86_64::avx512::GEMM_VARIANTS);
    }
    for kern in kernels {
        let (mr, nr) = (kern.mr, kern.nr);
        for (k, load_c, relu, with_bias) in
            [(1, false, false, true), (37, true, true, false), (300, true, false, true)]
        {
            // `a` with steps `lda = mr + 3` apart (a strided operand, not a packed panel).
            let lda = mr + 3;
            let (a, b, bias) = (fill(1, k * lda), fill(2, k * nr), fill(3, mr));
            let ldc = nr + 5;
            let mut c = fill(4, mr * ldc);
            let c0 = c.clone();
            let mut expected = c.clone();
            for r in 0..mr {
                for j in 0..nr {
                    let mut acc: f32 = (0..k).map(|kk| a[kk * lda + r] * b[kk * nr + j]).sum();
                    acc += if with_bias { bias[r] } else { 0.0 }
                        + if load_c { c[r * ldc + j] } else { 0.0 };
                    expected[r * ldc + j] = if relu { acc.max(0.0) } else { acc };
                }
            }
            let tile = arch::Tile {
                k,
                a: a.as_ptr(),
                lda,
                a_offsets: std::ptr::null(),
                b: b.as_ptr(),
                ldb: nr,
                c: c.as_mut_ptr(),
                ldc,
                bias: if with_bias { bias.as_ptr() } else { std::ptr::null() },
                load_c,
                relu,
                prefetch: std::ptr::null(),
                prefetch_ld: 0,
            };
            // SAFETY: the kernel's ISA is available; the buffers have the documented sizes.
            unsafe { (kern.run)(&tile) };
            for (i, (y, e)) in c.iter().zip(&expected).enumerate() {
                let tol = 1e-5 * (1.0 + k as f32);
                assert!((y - e).abs() <= tol, "{} k={k}: [{i}] {y} vs {e}", kern.name);
            }
            // The same product with the steps named by offsets, in reverse order (and `lda`
            // ignored): the same terms, summed in another order.
            let offsets: Vec<u32> = (0..k).map(|kk| ((k - 1 - kk) * lda) as u32).collect();
            let rev: Vec<f32> = (0..k).rev().flat_map(|kk| b[kk * nr..][..nr].to_vec()).collect();
            c.copy_from_slice(&c0);
            let tile = arch::Tile {
                a_offsets: offsets.as_ptr(),
                lda: 0,
                b: rev.as_ptr(),
                c: c.as_mut_ptr(),
                ..tile
            };
            // SAFETY: as above; every offset names `mr` readable floats of `a`.
            unsafe { (kern.run)(&tile) };
            for (i, (y, e)) in c.iter().zip(&expected).enumerate() {
                let tol = 1e-5 * (1.0 + k as f32);
                assert!((y - e).abs() <= tol, "{} offsets k={k}: [{i}] {y} vs {e}", kern.name);
            }
        }
    }
}

#[test]
fn isa_names_and_forcing() {
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
    }
    assert_eq!(Isa::from_name("sse"), None);
    assert!(Isa::Scalar.is_available());
    assert_eq!(Isa::all_available().next(), Some(Isa::best_available()));
    #[cfg(target_arch = "aarch64")]
    assert!(Isa::Neon.is_available());
    #[cfg(target_arch = "x86_64")]
    assert!(!Isa::Neon.is_available());

    let geom = Conv2dGeometry::square(5, 7, 3, 1, 1, 1);
    let (w, b) = (fill(1, geom.weight_len()), fill(2, 7));
    for isa in Isa::ALL {
        let forced = Isa::from_name(isa.name()).unwrap();
        match PackedConv::try_new(forced, None, &geom, &w, &b) {
            Some(p) => {
                assert!(isa.is_available());
                assert_eq!(p.isa(), isa);
                assert!(p.kernel_name().starts_with(isa.name()));
            }
            None => assert!(!isa.is_available(), "{isa} is available but was refused"),
        }
    }
    for algo in ConvAlgo::ALL {
        assert_eq!(ConvAlgo::from_name(algo.name()), Some(algo));
    }
}

/// The selection rule reproduces the choices of the measured table in its documentation.
#[cfg(target_arch = "x86_64")]
#[test]
fn algorithm_choice() {
    use ConvAlgo::*;
    let sq =
        |c, hw, groups| (Conv2dGeometry::square(c, c, 3, 1, 1, groups), Shape::new(1, c, hw, hw));
    for (isa, (geom, shape), expect) in [
        (Isa::Avx512, sq(64, 56, 1), Winograd4),
        (Isa::Avx512, sq(128, 28, 1), Winograd6),
        (Isa::Avx512, sq(256, 14, 1), Winograd2),
        (Isa::Avx512, sq(512, 7, 1), GemmT),
        (Isa::Avx512, sq(16, 32, 1), Direct),
        (Isa::Avx512, sq(32, 32, 1), Winograd4),
        (Isa::Avx512, sq(64, 8, 1), Winograd2),
        (Isa::Avx512, sq(128, 56, 32), Direct),
        (Isa::Avx512, sq(256, 28, 32), Direct),
        (Isa::Avx512, sq(512, 14, 32), Direct),
        (Isa::Avx512, sq(1024, 7, 32), Winograd2),
        (Isa::Avx2, sq(256, 14, 1), Winograd4),
        (Isa::Avx2, sq(128, 28, 1), Winograd4T),
        (Isa::Avx2, sq(64, 56, 1), Winograd4T),
        (Isa::Avx2, sq(512, 7, 1), Winograd2),
        (Isa::Scalar, sq(512, 7, 1), Winograd2),
    ] {
        assert_eq!(PackedConv::choose_for_input(isa, &geom, shape), expect, "{isa} {geom:?}");
    }
    let pointwise = Conv2dGeometry::square(256, 64, 1, 1, 0, 1);
    let stem = Conv2dGeometry::square(3, 64, 7, 2, 3, 1);
    let strided = Conv2dGeometry::square(128, 128, 3, 2, 1, 1);
    for isa in [Isa::Avx512, Isa::Avx2, Isa::Scalar] {
        assert_eq!(PackedConv::choose(isa, &pointwise), Direct);
        assert_eq!(PackedConv::choose(isa, &stem), Direct);
        assert_eq!(PackedConv::choose(isa, &strided), Gemm);
        assert_eq!(PackedConv::choose(isa, &sq(64, 56, 1).0), Winograd2);
        assert_eq!(PackedConv::choose(isa, &sq(128, 56, 32).0), Direct);
        let valid = Conv2dGeometry::square(64, 64, 3, 1, 0, 1);
        assert_eq!(PackedConv::choose(isa, &valid), Direct);
        let wide = Conv2dGeometry::square(256, 256, 5, 1, 2, 1);
        assert_eq!(PackedConv::choose(isa, &wide), Gemm);
        let shape = Shape::new(1, 3, 224, 224);
        assert_eq!(PackedConv::choose_for_input(isa, &stem, shape), Direct);
        let grouped_strided = Conv2dGeometry::square(256, 256, 3, 2, 1, 32);
        assert_eq!(PackedConv::choose(isa, &grouped_strided), Direct);
        let strided_shortcut = Conv2dGeometry::square(16, 32, 1, 2, 0, 1);
        assert_eq!(PackedConv::choose(isa, &strided_shortcut), Gemm);
    }
    // The transposed GEMM takes ResNet-50's last stage on x86 (weights from memory dominate).
    let at = |c, hw| Shape::new(1, c, hw, hw);
    let shortcut = Conv2dGeometry::square(1024, 2048, 1, 2, 0, 1);
    let reduce = Conv2dGeometry::square(2048, 512, 1, 1, 0, 1);
    let reduce14 = Conv2dGeometry::square(1024, 256, 1, 1, 0, 1);
    for (isa, expect) in [(Isa::Avx512, GemmT), (Isa::Avx2, GemmT), (Isa::Scalar, Gemm)] {
        assert_eq!(PackedConv::choose_for_input(isa, &shortcut, at(1024, 14)), expect);
    }
    // With AVX-512, strided windows whose output rows are whole 7-pixel tiles (28x28 here).
    let strided56 = Conv2dGeometry::square(128, 128, 3, 2, 1, 1);
    assert_eq!(PackedConv::choose_for_input(Isa::Avx512, &strided56, at(128, 56)), GemmT);
    assert_eq!(PackedConv::choose_for_input(Isa::Avx2, &strided56, at(128, 56)), Gemm);
    // And 14x14 outputs with at least 2 MiB of weights, but not Winograd's.
    let reduce_wide = Conv2dGeometry::square(1024, 512, 1, 1, 0, 1);
    let strided = Conv2dGeometry::square(256, 256, 3, 2, 1, 1);
    let same = Conv2dGeometry::square(256, 256, 3, 1, 1, 1);
    for isa in [Isa::Avx512, Isa::Avx2] {
        assert_eq!(PackedConv::choose_for_input(isa, &reduce_wide, at(1024, 14)), GemmT);
        assert_eq!(PackedConv::choose_for_input(isa, &strided, at(256, 28)), GemmT);
        assert_ne!(PackedConv::choose_for_input(isa, &same, at(256, 14)), GemmT);
    }
    for (isa, expect) in [(Isa::Avx512, GemmT), (Isa::Avx2, GemmT), (Isa::Scalar, Direct)] {
        assert_eq!(PackedConv::choose_for_input(isa, &reduce, at(2048, 7)), expect);
        // Pointwise at 14x14 too (read in place), but not the same layer on a larger image.
        assert_eq!(PackedConv::choose_for_input(isa, &reduce14, at(1024, 14)), expect);
        assert_eq!(PackedConv::choose_for_input(isa, &reduce, at(2048, 28)), Direct);
    }
}

/// An empty batch has no tasks and leaves the (empty) output alone.
#[test]
fn empty_batch() {
    let geom = Conv2dGeometry::square(8, 8, 3, 1, 1, 1);
    let (w, b) = (fill(1, geom.weight_len()), fill(2, 8));
    for algo in ConvAlgo::ALL.into_iter().filter(|&a| PackedConv::supports(a, &geom)) {
        let p = PackedConv::new(Isa::best_available(), Some(algo), &geom, &w, &b);
        let shape = Shape::new(0, 8, 9, 9);
        assert_eq!(p.task_count(shape), 0);
        let mut scratch = vec![0.0; p.scratch_len(shape)];
        p.run(&[], shape, &mut [], Epilogue::RELU, &mut scratch);
    }
}

#[test]
fn unsupported_algorithms_are_refused() {
    let (w, b) = (fill(1, 4 * 4 * 9), fill(2, 4));
    let strided = Conv2dGeometry::square(4, 4, 3, 2, 1, 1);
    assert!(PackedConv::try_new(Isa::Scalar, Some(ConvAlgo::Winograd4), &strided, &w, &b).is_none());
    // Direct takes any stride (through phase-split rows), GEMM any geometry.
    assert!(PackedConv::try_new(Isa::Scalar, Some(ConvAlgo::Direct), &strided, &w, &b).is_some());
    assert!(!PackedConv::supports(ConvAlgo::Winograd2, &Conv2dGeometry::square(4, 4, 3, 1, 0, 1)));
    assert!(PackedConv::supports(ConvAlgo::Direct, &Conv2dGeometry::square(4, 4, 1, 1, 0, 2)));
    assert!(PackedConv::try_new(Isa::Scalar, None, &strided, &w[1..], &b).is_none());
}

#[test]
#[should_panic(expected = "cannot run")]
fn new_panics_on_unsupported_algorithm() {
    let geom = Conv2dGeometry::square(4, 4, 3, 2, 1, 1);
    PackedConv::new(Isa::Scalar, Some(ConvAlgo::Winograd6), &geom, &[0.0; 144], &[0.0; 4]);
}

/// Tasks run from several threads, one at a time or in ranges, give the serial result bit for
/// bit; small images are split over output channels too.
#[test]
fn tasks_from_threads() {
    for (geom, in_shape) in [
        (Conv2dGeometry::square(16, 20, 3, 1, 1, 2), Shape::new(2, 16, 21, 19)),
        (Conv2dGeometry::square(24, 72, 3, 1, 1, 1), Shape::new(1, 24, 7, 7)),
        (Conv2dGeometry::square(40, 64, 1, 1, 0, 1), Shape::new(1, 40, 5, 6)),
    ] {
        let c =
            Case { geom, in_shape, epilogue: Epilogue { accumulate: true, relu: true }, seed: 3 };
        let d = data(&c);
        let algos = ConvAlgo::ALL.into_iter().filter(|&a| PackedConv::supports(a, &geom));
        for (isa, algo) in Isa::all_available().flat_map(|i| algos.clone().map(move |a| (i, a))) {
            let p = PackedConv::new(isa, Some(algo), &geom, &d.w, &d.b);
            let serial = run_packed(&p, &c, &d);
            let tasks = p.task_count(in_shape);
            // Down to one tile each way: at least 4 tasks, but a transposed Winograd's 4 tiles
            // of a 7x7 image are one block of tile rows, over as few as 3 panels of channels.
            let enough = tasks >= 4 || tasks >= 2 && in_shape.h == 7;
            assert!(enough, "{isa} {algo} {geom:?}: {tasks} tasks");
            for chunk in [1, 2, 3, tasks / 2 + 1] {
                let mut out = d.prev.clone();
                let ptr = OutPtr::new(&mut out);
                let ranges: Vec<_> =
                    (0..tasks).step_by(chunk).map(|t| t..(t + chunk).min(tasks)).collect();
                std::thread::scope(|s| {
                    for t in 0..3 {
                        let (p, d, ranges) = (&p, &d, &ranges);
                        s.spawn(move || {
                            let mut scratch = vec![0.0; p.scratch_len(in_shape)];
                            for r in ranges.iter().skip(t).step_by(3) {
                                // SAFETY: every task range is run by exactly one thread.
                                unsafe {
                                    p.run_tasks(
                                        r.clone(),
                                        &d.x,
                                        in_shape,
                                        ptr,
                                        c.epilogue,
                                        &mut scratch,
                                    )
                                };
                            }
                        });
                    }
                });
                assert_eq!(out, serial, "{isa} {algo} {geom:?} chunk {chunk}");
            }
        }
    }
}

/// `A^T [(G g) ⊙ (B^T d)]` equals the correlation `y[i] = sum_k d[i + k] g[k]` for the 1-D
/// matrices (the 2-D transforms are their tensor products).
#[test]
fn winograd_matrices_compute_correlation() {
    fn check<const M: usize, const A: usize>(
        bt: &[[f32; A]; A],
        g: &[[f64; 3]; A],
        at: &[[f32; A]; M],
    ) {
        let d: Vec<f64> = fill(11, A).into_iter().map(f64::from).collect();
        let f: Vec<f64> = fill(12, 3).into_iter().map(f64::from).collect();
        let u: Vec<f64> = (0..A).map(|i| (0..3).map(|k| g[i][k] * f[k]).sum()).collect();
        let v: Vec<f64> = (0..A).map(|i| (0..A).map(|k| bt[i][k] as f64 * d[k]).sum()).collect();
        for i in 0..M {
            let y: f64 = (0..A).map(|k| at[i][k] as f64 * u[k] * v[k]).sum();
            let expect: f64 = (0..3).map(|k| d[i + k] * f[k]).sum();
            assert!((y - expect).abs() < 1e-9, "F({M},3) row {i}: {y} vs {expect}");
        }
    }
    check::<2, 4>(&winograd::BT2, &winograd::G2, &winograd::AT2);
    check::<4, 6>(&winograd::BT4, &winograd::G4, &winograd::AT4);
    check::<6, 8>(&winograd::BT6, &winograd::G6, &winograd::AT6);
}

/// Prints the measured error of every algorithm on ResNet-like 3x3 layers (`--nocapture`):
/// inputs in `[0, 1)` (post-ReLU), Kaiming-scaled weights (`±sqrt(6 / fan_in)`), against an
/// `f64` reference. "rel" is `max |y - ref| / max |ref|`.
#[test]
fn error_report() {
    for (cin, hw) in [(64, 56), (128, 28), (256, 14)] {
        let geom = Conv2dGeometry::square(cin, 64, 3, 1, 1, 1);
        let in_shape = Shape::new(1, cin, hw, hw);
        let x: Vec<f32> = fill(5, in_shape.len()).iter().map(|v| (v + 1.0) / 2.0).collect();
        let scale = (6.0 / (cin * 9) as f32).sqrt();
        let w: Vec<f32> = fill(6, geom.weight_len()).iter().map(|v| v * scale).collect();
        let b = fill(7, 64);
        let mut exact = vec![0.0f64; 64 * hw * hw];
        for (o, e) in exact.chunks_exact_mut(hw * hw).enumerate() {
            for (p, e) in e.iter_mut().enumerate() {
                let (oy, ox) = (p / hw, p % hw);
                let mut acc = b[o] as f64;
                for ci in 0..cin {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = ((oy + ky) as isize - 1, (ox + kx) as isize - 1);
                            if iy >= 0 && ix >= 0 && (iy as usize) < hw && (ix as usize) < hw {
                                let xv = x[(ci * hw + iy as usize) * hw + ix as usize] as f64;
                                acc += xv * w[((o * cin + ci) * 3 + ky) * 3 + kx] as f64;
                            }
                        }
                    }
                }
                *e = acc;
            }
        }
        let max_ref = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for algo in ConvAlgo::ALL {
            let p = PackedConv::new(Isa::best_available(), Some(algo), &geom, &w, &b);
            let mut got = vec![0.0; exact.len()];
            let mut scratch = vec![0.0; p.scratch_len(in_shape)];
            p.run(&x, in_shape, &mut got, Epilogue::NONE, &mut scratch);
            let max_abs =
                got.iter().zip(&exact).fold(0.0f64, |m, (y, r)| m.max((*y as f64 - r).abs()));
            println!(
                "{} {algo:9} {cin:3}->64 {hw}x{hw}: max |err| {max_abs:.2e}, max |ref| {max_ref:.2}, rel {:.2e}",
                p.isa(),
                max_abs / max_ref
            );
            assert!(max_abs / max_ref < 1e-4, "{algo}");
        }
    }
}

/// The blocked layout's choice: Winograd for 3x3/1 layers by output size, GemmT elsewhere and
/// for the NCHW-input stem; and it always names an algorithm that runs in those layouts. Heavy
/// small maps depend on the host's weight streaming too.
#[test]
fn blocked_algorithm_choice() {
    let blocked = (ActLayout::Nchw16c, ActLayout::Nchw16c);
    let stem = (ActLayout::Nchw, ActLayout::Nchw16c);
    let conv3 = Conv2dGeometry::square(64, 64, 3, 1, 1, 1);
    let heavy3 = Conv2dGeometry::square(512, 512, 3, 1, 1, 1);
    let cases = [
        (conv3, 56, blocked, ConvAlgo::Winograd4),
        (conv3, 28, blocked, ConvAlgo::Winograd4),
        (conv3, 14, blocked, ConvAlgo::Winograd2),
        (conv3, 7, blocked, ConvAlgo::Winograd2),
        (heavy3, 14, blocked, ConvAlgo::Winograd2),
        (heavy3, 8, blocked, ConvAlgo::GemmT),
        (heavy3, 7, blocked, ConvAlgo::GemmT),
        (heavy3, 6, blocked, ConvAlgo::GemmT),
        (Conv2dGeometry::square(64, 256, 1, 1, 0, 1), 56, blocked, ConvAlgo::GemmT),
        (Conv2dGeometry::square(64, 64, 3, 2, 1, 1), 56, blocked, ConvAlgo::GemmT),
        (Conv2dGeometry::square(3, 64, 7, 2, 3, 1), 224, stem, ConvAlgo::GemmT),
    ];
    // The choice is pure: every ISA, available here or not.
    for isa in Isa::ALL {
        for fast_weight_stream in [false, true] {
            let host = Host { fast_weight_stream };
            for (geom, hw, layouts, want) in cases {
                let shape = Shape::new(1, geom.in_channels, hw, hw);
                let got = PackedConv::choose_for_host(isa, host, &geom, shape, layouts);
                // Heavy small maps run GemmT where reading weights bounds them (x86), F(2,3)
                // with the scalar and NEON kernels, and with AVX-512 on a host that streams
                // weights fast where F(2,3)'s tiles fill its 8-row micro-tiles (16 tiles at
                // 7x7 and 8x8; 6x6 has 9).
                let weight_bound = match isa {
                    Isa::Avx2 => true,
                    Isa::Avx512 => !fast_weight_stream || hw == 6,
                    _ => false,
                };
                let want = if geom == heavy3 && hw <= 8 && !weight_bound {
                    ConvAlgo::Winograd2
                } else {
                    want
                };
                assert_eq!(got, want, "{isa} {host:?}: {geom:?} at {hw}");
                assert!(PackedConv::supports_layouts(got, &geom, layouts));
                if !fast_weight_stream {
                    let default = PackedConv::choose_for_layouts(isa, &geom, shape, layouts);
                    assert_eq!(default, got, "{isa}: the default host streams slowly");
                }
            }
        }
    }
}

/// Which hosts count as streaming weights fast: AMD family 0x1A (Zen 5), the one measured.
#[test]
fn host_from_cpuid() {
    // Vendor strings as CPUID leaf 0 returns them in ebx, edx, ecx.
    let amd = (0x6874_7541, 0x6974_6e65, 0x444d_4163); // "AuthenticAMD"
    let intel = (0x756e_6547, 0x4965_6e69, 0x6c65_746e); // "GenuineIntel"
                                                         // Signatures: Zen 5 EPYC (family 0xF + 0x0B), Zen 4 (0xF + 0x0A), Sapphire Rapids
                                                         // (family 6, extended model 8).
    let (zen5, zen4, spr) = (0x00B0_0F21, 0x00A1_0F11, 0x0008_06F8);
    assert!(Host::from_cpuid(amd, zen5).fast_weight_stream);
    assert!(!Host::from_cpuid(amd, zen4).fast_weight_stream);
    assert!(!Host::from_cpuid(intel, spr).fast_weight_stream);
    assert!(!Host::from_cpuid(intel, zen5).fast_weight_stream);
    assert_eq!(Host::default(), Host { fast_weight_stream: false });
}

/// `Host::detect` on this machine agrees with what Linux reports of the CPU (so the registers
/// reach `Host::from_cpuid` in the right order).
#[test]
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn host_detect_matches_proc_cpuinfo() {
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return };
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let (Some(vendor), Some(family)) = (field("vendor_id"), field("cpu family")) else { return };
    let zen5 = vendor == "AuthenticAMD" && family == "26";
    assert_eq!(Host::detect().fast_weight_stream, zen5, "{vendor}, family {family}");
}

/// Blocked 1x1 layers large enough for AVX-512's 14-row blocked tile, with partial last tiles
/// and a last panel narrower than the tile's 32 channels, stride 1 and 2; 7x7 outputs, whose
/// last tile of 7 pixels runs the 7-row kernel (also its 16-column sibling); windows whose
/// output rows are multiples of 14 pixels (one or two 14-row tiles per row); and stride-1
/// windows read from shifted copies, with tiles across rows and jobs that start mid-row.
#[test]
fn blocked_wide_tiles() {
    let mut seed = 5000;
    let windows = [
        (rect(16, 48, (3, 3), (2, 2), (1, 1), 1), 28),
        (rect(32, 32, (3, 3), (1, 1), (1, 1), 1), 14),
        (rect(16, 48, (3, 5), (2, 2), (1, 2), 1), 56),
        (rect(32, 32, (3, 3), (2, 2), (1, 1), 2), 28),
    ];
    let shifted = [
        // Also F(2,3) over 16 tiles: AVX-512's 8-row tile and its 16-column sibling.
        (rect(64, 48, (3, 3), (1, 1), (1, 1), 1), 7),
        (rect(272, 32, (3, 3), (1, 1), (1, 1), 1), 15),
        (rect(32, 32, (5, 3), (1, 1), (2, 1), 2), 9),
        (rect(16, 16, (3, 3), (1, 1), (0, 0), 1), 12),
        // 12-pixel rows: whole tiles of AVX2's and the scalar kernels' (phase-split copy),
        // shifted copies on AVX-512.
        (rect(32, 32, (3, 3), (1, 1), (1, 1), 1), 12),
        // Taps that lie wholly in the padding of a 1-pixel input (a copy's row is all zeros).
        (rect(16, 16, (5, 5), (1, 1), (2, 2), 1), 1),
        (rect(16, 32, (3, 3), (2, 2), (1, 1), 1), 1),
        // Strided windows whose rows are not whole tiles (AVX2's and NEON's 6-row tiles on
        // 7-, 14- and 28-pixel rows; any ISA on 9): per-tap copies.
        (rect(32, 48, (3, 3), (2, 2), (1, 1), 1), 14),
        (rect(16, 32, (3, 3), (2, 2), (1, 1), 2), 27),
        (rect(16, 16, (3, 5), (2, 1), (1, 2), 1), 17),
        (rect(16, 16, (5, 3), (1, 2), (2, 1), 1), 17),
        // Also blocked Winograd with a narrow panel (F(2,3) at 13x13, F(4,3) at 28x28), and
        // with 80 input channels (two chunks, 48 and 32 steps) and partial last tiles (27x27).
        (rect(32, 48, (3, 3), (1, 1), (1, 1), 1), 13),
        (rect(16, 48, (3, 3), (1, 1), (1, 1), 1), 28),
        (rect(80, 32, (3, 3), (1, 1), (1, 1), 1), 27),
    ];
    for (geom, hw) in windows.into_iter().chain(shifted) {
        for accumulate in [false, true] {
            seed += 1;
            let in_shape = Shape::new(2, geom.in_channels, hw, hw);
            let epilogue = Epilogue { accumulate, relu: !accumulate };
            check_blocked(&Case { geom, in_shape, epilogue, seed })
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for (cin, cout, stride, hw) in [
        (16, 48, 1, 14),
        (32, 16, 1, 15),
        (16, 32, 1, 16),
        (48, 48, 2, 29),
        (16, 80, 2, 30),
        (32, 48, 1, 7),
        (16, 32, 2, 13),
    ] {
        for accumulate in [false, true] {
            seed += 1;
            let geom = Conv2dGeometry::square(cin, cout, 1, stride, 0, 1);
            let in_shape = Shape::new(2, cin, hw, hw);
            let epilogue = Epilogue { accumulate, relu: !accumulate };
            check_blocked(&Case { geom, in_shape, epilogue, seed })
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// NCHW input into blocked output (the stem, `Kernels::gemm_tb`), with the ImageNet stem's
/// depth (147, one chunk of `KC_STEM = 256`) and deeper ones (300 and 450: two chunks), groups,
/// batch 2, pointwise and strided; and 7-row tails of the 14-row blocked tile (blocked input,
/// chunks of `KC_T = 64`).
#[test]
fn stem_into_blocked_deep() {
    let mut seed = 9000;
    for (geom, in_shape) in [
        (Conv2dGeometry::square(3, 64, 7, 2, 3, 1), Shape::new(2, 3, 29, 31)),
        (Conv2dGeometry::square(3, 48, 7, 2, 3, 1), Shape::new(1, 3, 33, 30)),
        (Conv2dGeometry::square(3, 16, 7, 2, 3, 1), Shape::new(1, 3, 33, 30)),
        // Rows of 14 and 28 pixels: AVX-512's 14-row stem tile, also with a narrow panel.
        (Conv2dGeometry::square(3, 64, 7, 2, 3, 1), Shape::new(2, 3, 17, 56)),
        (Conv2dGeometry::square(3, 48, 7, 2, 3, 1), Shape::new(1, 3, 9, 28)),
        (Conv2dGeometry::square(20, 48, 3, 1, 1, 1), Shape::new(2, 20, 9, 15)),
        (Conv2dGeometry::square(200, 48, 1, 1, 0, 1), Shape::new(2, 200, 5, 9)),
        (Conv2dGeometry::square(300, 16, 1, 2, 0, 1), Shape::new(1, 300, 9, 9)),
        (Conv2dGeometry::square(40, 64, 3, 1, 1, 2), Shape::new(2, 40, 8, 13)),
        (Conv2dGeometry::square(6, 32, 1, 1, 0, 2), Shape::new(2, 6, 7, 9)),
        (rect(30, 32, (5, 3), (2, 1), (2, 1), 1), Shape::new(1, 30, 11, 23)),
        // 7-row tails of the 14-row blocked tile, deep (5 chunks of `KC_T`, the last of 16
        // steps, with blocked input), groups, batch 2.
        (Conv2dGeometry::square(272, 48, 1, 1, 0, 1), Shape::new(2, 272, 7, 7)),
        (Conv2dGeometry::square(288, 64, 1, 2, 0, 2), Shape::new(2, 288, 13, 13)),
        (Conv2dGeometry::square(32, 16, 1, 1, 0, 1), Shape::new(1, 32, 3, 7)),
        (Conv2dGeometry::square(32, 16, 1, 1, 0, 1), Shape::new(3, 32, 1, 7)),
        (Conv2dGeometry::square(64, 96, 1, 1, 0, 1), Shape::new(1, 64, 5, 7)),
    ] {
        for (accumulate, relu) in [(false, true), (true, false), (true, true)] {
            seed += 1;
            let epilogue = Epilogue { accumulate, relu };
            check_blocked(&Case { geom, in_shape, epilogue, seed })
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// The blocked-output micro-kernels (`gemm_tb`, `G = 1`; `gemm_b`, `G = 16`; AVX-512's 16-column,
/// 8-row and 14-row siblings) against a naive product: a group stride wider than a group, per-group
/// offsets in reverse order, `ldc` wider than a tile, with and without bias, accumulate, ReLU
/// and prefetch. Tolerance: 1e-5 * (1 + k) absolute (values in [-1, 1]).
#[test]
fn blocked_micro_kernels() {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut kernels: Vec<(arch::GemmKernel, usize)> = Isa::all_available()
        .flat_map(|isa| {
            let k = arch::kernels(isa).unwrap();
            [(k.gemm_tb, 1), (k.gemm_b, 16)]
        })
        .collect();
    #[cfg(target_arch = "x86_64")]
    if Isa::Avx512.is_available() {
        kernels.push((arch::x86_64::avx512::GEMM_TB_NARROW, 1));
        kernels.push((arch::x86_64::avx512::GEMM_B_WIDE, 16));
        kernels.push((arch::x86_64::avx512::GEMM_TB_WIDE, 1));
        kernels.push((arch::x86_64::avx512::GEMM_B_8X32, 16));
        kernels.extend(arch::x86_64::avx512::gemm_b_narrow_for(8).map(|k| (k, 16)));
    }
    for (kern, g) in kernels {
        let (mr, nr) = (kern.mr, kern.nr);
        for (k, load_c, relu, with_bias, pf) in [
            (16, false, false, true, false),
            (48, true, true, false, true),
            (304, true, false, true, true),
        ] {
            let groups = k / g;
            let lda = mr * g + 5;
            let (a, b, bias) = (fill(1, groups * lda), fill(2, k * nr), fill(3, nr));
            let at = |kk: usize, r: usize| a[(kk / g) * lda + r * g + kk % g];
            let ldc = mr * 16 + 3;
            let clen = (nr / 16) * ldc;
            let mut c = fill(4, clen);
            let c0 = c.clone();
            let mut expected = c.clone();
            for r in 0..mr {
                for j in 0..nr {
                    let idx = (j / 16) * ldc + r * 16 + j % 16;
                    let mut acc: f32 = (0..k).map(|kk| at(kk, r) * b[kk * nr + j]).sum();
                    acc +=
                        if with_bias { bias[j] } else { 0.0 } + if load_c { c[idx] } else { 0.0 };
                    expected[idx] = if relu { acc.max(0.0) } else { acc };
                }
            }
            let tile = arch::Tile {
                k,
                a: a.as_ptr(),
                lda,
                a_offsets: std::ptr::null(),
                b: b.as_ptr(),
                ldb: nr,
                c: c.as_mut_ptr(),
                ldc,
                bias: if with_bias { bias.as_ptr() } else { std::ptr::null() },
                load_c,
                relu,
                prefetch: if pf { b.as_ptr() } else { std::ptr::null() },
                prefetch_ld: nr,
            };
            // SAFETY: the ISA is available; `a` holds `groups` groups of `MR * G` floats at
            // stride `lda`, `b` `k` rows of `nr`, `bias` `nr`, `c` every blocked element of the
            // tile at `ldc`; prefetches never fault.
            unsafe { (kern.run)(&tile) };
            for (i, (y, e)) in c.iter().zip(&expected).enumerate() {
                assert!(
                    (y - e).abs() <= 1e-5 * (1.0 + k as f32),
                    "{} k={k}: [{i}] {y} vs {e}",
                    kern.name
                );
            }
            // Offsets per group, groups reversed.
            let offsets: Vec<u32> =
                (0..groups).map(|gg| ((groups - 1 - gg) * lda) as u32).collect();
            let rev: Vec<f32> =
                (0..groups).rev().flat_map(|gg| b[gg * g * nr..][..g * nr].to_vec()).collect();
            c.copy_from_slice(&c0);
            let tile = arch::Tile {
                a_offsets: offsets.as_ptr(),
                lda: 0,
                b: rev.as_ptr(),
                c: c.as_mut_ptr(),
                ..tile
            };
            // SAFETY: as above, with `groups` offsets each naming a group of `a`.
            unsafe { (kern.run)(&tile) };
            for (i, (y, e)) in c.iter().zip(&expected).enumerate() {
                assert!(
                    (y - e).abs() <= 1e-5 * (1.0 + k as f32),
                    "{} offsets k={k}: [{i}] {y} vs {e}",
                    kern.name
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// NCHW input of any channel count (deep reductions, groups, kernels 1/3/7 per axis) into
    /// blocked output.
    #[test]
    fn stem_into_blocked_any(
        (n, groups, cin_g, bout) in (1usize..=2, 1usize..=2, 1usize..=40, 1usize..=3),
        ((kh, kw), (sh, sw), (ph, pw)) in ((prop_oneof![Just(1usize), Just(3), Just(7)], prop_oneof![Just(1usize), Just(3), Just(7)]), (1usize..=3, 1usize..=3), (0usize..=3, 0usize..=3)),
        (h, w, accumulate, relu, seed) in (1usize..=20, 1usize..=20, any::<bool>(), any::<bool>(), any::<u64>()),
    ) {
        let (ph, pw) = (ph.min(kh / 2 + 1), pw.min(kw / 2 + 1));
        let geom = rect(cin_g * groups, 16 * bout * groups, (kh, kw), (sh, sw), (ph, pw), groups);
        let in_shape = Shape::new(n, cin_g * groups, h.max(kh), w.max(kw));
        prop_assume!(geom.is_valid() && geom.output_shape(in_shape).is_some_and(|o| !o.is_empty()));
        check_blocked(&Case { geom, in_shape, epilogue: Epilogue { accumulate, relu }, seed })?;
    }
}
