//! The schedule interpreter (`forward`) against a direct, allocation-happy composition of the
//! reference ops written from the block definitions, on random small networks.

use proptest::prelude::*;
use shortcut_core::forward::forward;
use shortcut_core::reference as r;
use shortcut_core::spec::ParamInfo;
use shortcut_core::*;

/// Deterministic pseudo-random values in [-1, 1).
fn fill(seed: &mut u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Params(Vec<(String, Vec<f32>)>);

impl Params {
    fn get(&self, name: &str) -> &[f32] {
        &self.0.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name}")).1
    }
}

fn conv(
    p: &Params,
    name: &str,
    g: Conv2dGeometry,
    x: &[f32],
    s: Shape,
    relu: bool,
) -> (Vec<f32>, Shape) {
    let o = g.output_shape(s).unwrap();
    let mut y = vec![0.0; o.len()];
    let e = if relu { Epilogue::RELU } else { Epilogue::NONE };
    r::conv2d(
        &g,
        x,
        s,
        p.get(&format!("{name}.weight")),
        p.get(&format!("{name}.bias")),
        &mut y,
        e,
    );
    (y, o)
}

fn affine_relu(p: &Params, name: &str, x: &[f32], s: Shape) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    r::affine(p.get(&format!("{name}.scale")), p.get(&format!("{name}.shift")), true, x, s, &mut y);
    y
}

/// The network written out plainly: y = act(F(x) + shortcut(x)).
fn composed(spec: &NetworkSpec, p: &Params, x: &[f32], s: Shape) -> Vec<f32> {
    let (mut x, mut s) = conv(p, "stem.conv", spec.stem_conv(), x, s, spec.stem.relu);
    if spec.stem.max_pool {
        let g = shortcut_core::shape::STEM_POOL;
        let o = g.output_shape(s).unwrap();
        let mut y = vec![0.0; o.len()];
        r::max_pool2d(&g, &x, s, &mut y);
        (x, s) = (y, o);
    }
    for (i, b) in spec.blocks.iter().enumerate() {
        let n = |l: &str| format!("blocks.{i}.{l}");
        let c = b.convs();
        let t = if b.preact { affine_relu(p, &n("pre_norm"), &x, s) } else { x.clone() };
        let (y1, s1) = conv(p, &n("conv1"), c.conv1, &t, s, true);
        let (mut y, so) = match c.conv3 {
            None => conv(p, &n("conv2"), c.conv2, &y1, s1, false),
            Some(g3) => {
                let (y2, s2) = conv(p, &n("conv2"), c.conv2, &y1, s1, true);
                conv(p, &n("conv3"), g3, &y2, s2, false)
            }
        };
        let short = match b.shortcut {
            Shortcut::Identity => x.clone(),
            Shortcut::Projection => conv(p, &n("shortcut"), c.shortcut.unwrap(), &t, s, false).0,
            Shortcut::ZeroPad => {
                let mut z = vec![0.0; so.len()];
                r::subsample_pad_channels(
                    &x,
                    s,
                    b.stride,
                    b.out_channels,
                    b.zero_pad_front(),
                    &mut z,
                );
                z
            }
        };
        let sum = y.clone();
        r::add(&sum, &short, &mut y);
        if !b.preact {
            r::relu(&mut y);
        }
        (x, s) = (y, so);
    }
    if spec.head.norm {
        x = affine_relu(p, "head.norm", &x, s);
    }
    let mut f = vec![0.0; s.n * s.c];
    r::global_avg_pool(&x, s, &mut f);
    let mut out = vec![0.0; s.n * spec.head.num_classes];
    r::linear(
        s.c,
        spec.head.num_classes,
        &f,
        p.get("head.fc.weight"),
        p.get("head.fc.bias"),
        &mut out,
    );
    out
}

fn block_strategy() -> impl Strategy<Value = (u8, usize, usize, u8, bool)> {
    // (kind, out_channels, stride, shortcut, preact)
    (0u8..3, 1usize..7, 1usize..3, 0u8..3, any::<bool>())
}

fn build_spec(
    stem_channels: usize,
    imagenet: bool,
    raw: &[(u8, usize, usize, u8, bool)],
    head_norm: bool,
) -> (StemSpec, Vec<BlockSpec>, HeadSpec) {
    let stem =
        if imagenet { StemSpec::imagenet(stem_channels) } else { StemSpec::cifar(stem_channels) };
    let mut blocks = Vec::new();
    let mut c = stem_channels;
    for &(kind, out, stride, short, preact) in raw {
        let kind = match kind {
            0 => BlockKind::Basic,
            1 => BlockKind::Bottleneck { width: 4, groups: 1 },
            _ => BlockKind::Bottleneck { width: 4, groups: 2 },
        };
        let shortcut = match short {
            _ if out == c && stride == 1 && short == 0 => Shortcut::Identity,
            1 if out >= c => Shortcut::ZeroPad,
            _ => Shortcut::Projection,
        };
        blocks.push(BlockSpec {
            kind,
            in_channels: c,
            out_channels: out,
            stride,
            shortcut,
            preact,
        });
        c = out;
    }
    (stem, blocks, HeadSpec { norm: head_norm, pool: HeadPool::Global, num_classes: 3 })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn forward_matches_composition(
        stem_c in 1usize..5, imagenet in any::<bool>(), raw in prop::collection::vec(block_strategy(), 0..4),
        head_norm in any::<bool>(), n in 1usize..3, h in 5usize..14, w in 5usize..14, seed in any::<u64>(),
    ) {
        let (stem, blocks, head) = build_spec(stem_c, imagenet, &raw, head_norm);
        let spec = NetworkSpec { in_channels: 2, stem, blocks: &blocks, head };
        let shape = Shape::new(n, 2, h, w);
        let Ok(p) = plan(&spec, shape) else { return Ok(()) };
        let mut seed = seed;
        let mut params = Vec::new();
        spec.for_each_param(|info: ParamInfo| params.push((info.to_string(), fill(&mut seed, info.len()))));
        let params = Params(params);
        let x = fill(&mut seed, shape.len());
        let blocks_w: Vec<BlockWeights> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| BlockWeights::gather(b, i, |info| Ok::<_, ()>(params.get(&info.to_string()))).unwrap())
            .collect();
        let conv_w = |n: &str| ConvWeights { weight: params.get(&format!("{n}.weight")), bias: params.get(&format!("{n}.bias")) };
        let weights = NetworkWeights {
            stem: conv_w("stem.conv"),
            blocks: &blocks_w,
            head_norm: head.norm.then(|| AffineWeights { scale: params.get("head.norm.scale"), shift: params.get("head.norm.shift") }),
            fc: LinearWeights { weight: params.get("head.fc.weight"), bias: params.get("head.fc.bias") },
        };
        let mut arena = vec![f32::NAN; p.arena_len()];
        let mut out = vec![0.0; p.output_len()];
        forward(&ReferenceBackend, &spec, &weights, &x, shape, &mut arena, &mut out).unwrap();
        let expected = composed(&spec, &params, &x, shape);
        // The lifetime-based layout gives the same bits in a smaller (never larger) arena.
        let lifetimes = LifetimePlan::new(&spec, shape).unwrap();
        prop_assert!(lifetimes.arena_len() <= p.arena_len());
        prop_assert!(lifetimes.arena_len() >= lifetimes.peak_live());
        let mut arena2 = vec![f32::NAN; lifetimes.arena_len()];
        let mut out2 = vec![0.0; p.output_len()];
        shortcut_core::forward::forward_with_layout(&ReferenceBackend, &spec, &weights, &x, shape, &lifetimes, &mut arena2, &mut out2).unwrap();
        prop_assert!(out.iter().zip(&out2).all(|(a, b)| a.to_bits() == b.to_bits()));
        // The schedule numbers convs exactly as `for_each_conv` does.
        let mut scheduled = Vec::new();
        shortcut_core::plan::walk(&spec, shape, |s| {
            if let shortcut_core::plan::Op::Conv { index, geom, .. } = s.op {
                scheduled.push((index, s.layer, geom));
            }
        }).unwrap();
        let mut listed = Vec::new();
        spec.for_each_conv(|i, l, g| listed.push((i, l, g)));
        scheduled.sort_by_key(|c| c.0);
        prop_assert_eq!(scheduled, listed);
        for (a, b) in out.iter().zip(&expected) {
            prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn plan_rejects_too_small_inputs_and_wrong_channels() {
    let blocks = [BlockSpec {
        kind: BlockKind::Basic,
        in_channels: 4,
        out_channels: 8,
        stride: 2,
        shortcut: Shortcut::Projection,
        preact: false,
    }];
    let spec = NetworkSpec {
        in_channels: 3,
        stem: StemSpec::imagenet(4),
        blocks: &blocks,
        head: HeadSpec { norm: false, pool: HeadPool::Global, num_classes: 2 },
    };
    assert!(plan(&spec, Shape::new(1, 3, 224, 224)).is_ok());
    assert!(matches!(
        plan(&spec, Shape::new(1, 1, 224, 224)),
        Err(SpecError::InputChannels { .. })
    ));
    // 1x1 input: the 7x7/2 stem with padding 3 gives 1x1; still valid in PyTorch.
    assert!(plan(&spec, Shape::new(1, 3, 1, 1)).is_ok());
    assert!(matches!(plan(&spec, Shape::new(1, 3, 0, 4)), Err(SpecError::InputTooSmall { .. })));
}
