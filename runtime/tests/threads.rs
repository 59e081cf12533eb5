//! Thread-count invariance: work is split by output columns, and every output element is
//! computed by one task with the same summation order whatever the split, so results are
//! bit-identical for any thread count.

use shortcut_core::arch::Isa;
use shortcut_core::conv::ConvAlgo;
use shortcut_core::layout::ActLayout;
use shortcut_core::Shape;
use shortcut_runtime::{zoo, Model, RunOptions};

fn logits(threads: usize, isa: Isa, conv: Option<ConvAlgo>, shape: Shape) -> Vec<f32> {
    run(
        "resnext50_32x4d",
        RunOptions { isa: Some(isa), conv, threads: Some(threads), layout: None },
        shape,
    )
}

fn run(arch: &str, options: RunOptions, shape: Shape) -> Vec<f32> {
    let spec = zoo::torchvision(arch).unwrap();
    let model = Model::random(arch, spec, 7, &options).unwrap();
    if options.layout.is_some() {
        assert_eq!(options.layout, Some(model.engine().layout()), "{arch}: layout not applied");
    }
    let mut session = model.session(shape).unwrap();
    let x: Vec<f32> = (0..shape.len()).map(|i| ((i * 31) % 97) as f32 / 48.0 - 1.0).collect();
    let mut y = vec![0.0; session.output_len()];
    session.run(&x, &mut y).unwrap();
    y
}

/// Batch 1 too: the fully connected head splits its output features between threads only
/// for a single image.
#[test]
fn single_image_is_bit_identical_for_1_2_and_3_threads() {
    let shape = Shape::new(1, 3, 45, 38);
    for isa in Isa::all_available() {
        let one = logits(1, isa, None, shape);
        for threads in [2, 3] {
            let many = logits(threads, isa, None, shape);
            assert!(
                one.iter().zip(&many).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{isa}: {threads} threads differ from 1"
            );
        }
    }
}

#[test]
fn outputs_are_bit_identical_for_1_2_and_3_threads() {
    let shape = Shape::new(2, 3, 45, 38);
    for isa in Isa::all_available() {
        for conv in [None, Some(ConvAlgo::Gemm)] {
            let one = logits(1, isa, conv, shape);
            assert!(one.iter().all(|v| v.is_finite()));
            for threads in [2, 3] {
                let many = logits(threads, isa, conv, shape);
                assert!(
                    one.iter().zip(&many).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{isa} {conv:?}: {threads} threads differ from 1"
                );
            }
        }
    }
}

/// The channel-blocked layout (ResNeXt's 4-channel groups do not fit it; ResNet-18's layers
/// do), on every ISA.
#[test]
fn blocked_layout_is_bit_identical_for_1_2_and_3_threads() {
    let shape = Shape::new(2, 3, 45, 38);
    for isa in Isa::all_available() {
        let options = |threads| RunOptions {
            isa: Some(isa),
            conv: None,
            threads: Some(threads),
            layout: Some(ActLayout::Nchw16c),
        };
        let one = run("resnet18", options(1), shape);
        assert!(one.iter().all(|v| v.is_finite()));
        for threads in [2, 3] {
            let many = run("resnet18", options(threads), shape);
            assert!(
                one.iter().zip(&many).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{isa} nchw16c: {threads} threads differ from 1"
            );
        }
    }
}

/// A network whose channels do not fit the blocked layout (ResNeXt-50's 4-channel groups) keeps
/// NCHW when NCHW16c is asked for, and one that fits takes it by default except on NEON.
#[test]
fn layout_follows_the_network_and_the_isa() {
    let load = |arch: &str, isa, layout| {
        let spec = zoo::torchvision(arch).unwrap();
        let options = RunOptions { isa: Some(isa), conv: None, threads: Some(1), layout };
        Model::random(arch, spec, 7, &options).unwrap().engine().layout()
    };
    for isa in Isa::all_available() {
        assert_eq!(load("resnext50_32x4d", isa, Some(ActLayout::Nchw16c)), ActLayout::Nchw);
        assert_eq!(load("resnet18", isa, Some(ActLayout::Nchw16c)), ActLayout::Nchw16c);
        assert_eq!(load("resnet18", isa, Some(ActLayout::Nchw)), ActLayout::Nchw);
        let default = if isa == Isa::Neon { ActLayout::Nchw } else { ActLayout::Nchw16c };
        assert_eq!(load("resnet18", isa, None), default, "{isa}");
    }
}
