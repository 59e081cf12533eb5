//! `Model::profile`: one entry per scheduled layer, in order, with the layer's work, a mean
//! and a best time that are consistent with each other.

use shortcut_core::plan::walk;
use shortcut_core::Shape;
use shortcut_runtime::{zoo, Model, RunOptions};

#[test]
fn profile_lists_every_layer_with_mean_and_best_times() {
    let arch = "resnet18";
    let spec = zoo::torchvision(arch).unwrap();
    let options = RunOptions { threads: Some(1), ..RunOptions::default() };
    let model = Model::random(arch, spec, 3, &options).unwrap();
    let shape = Shape::new(1, 3, 40, 36);
    let passes = 3;
    let layers = model.profile(shape, passes).unwrap();

    let mut expected = Vec::new();
    walk(&model.spec().view(), shape, |s| expected.push((s.layer.to_string(), s.macs()))).unwrap();
    let got: Vec<_> = layers.iter().map(|l| (l.layer.clone(), l.macs)).collect();
    assert_eq!(got, expected);
    assert!(layers.iter().any(|l| l.op.starts_with("conv3x3/1 ")));
    assert!(layers.iter().any(|l| l.op == "maxpool"));
    for l in &layers {
        assert!(l.best <= l.time, "{}: best {:?} above mean {:?}", l.layer, l.best, l.time);
        if l.macs > 0 {
            assert!(l.best > std::time::Duration::ZERO, "{}: no time recorded", l.layer);
        }
    }
}
