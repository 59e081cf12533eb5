//! Our model loader on arbitrary bytes: validation must reject anything inconsistent with a
//! clear error, and whatever it accepts must run without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shortcut_runtime::core_ops::Shape;
use shortcut_runtime::{Model, RunOptions, Tensor};

fuzz_target!(|data: &[u8]| {
    let options = RunOptions { threads: Some(1), ..RunOptions::default() };
    let Ok(model) = Model::from_bytes_with("fuzz.safetensors", data.to_vec(), &options) else {
        return;
    };
    let c = model.spec().in_channels;
    // Keep accepted inputs cheap to run: the weights are bounded by the input size, the
    // activations by this small image.
    if c > 8 {
        return;
    }
    let shape = Shape::new(1, c, 9, 7);
    if model.check_input(&[1, c, 9, 7]).is_ok() {
        let x = Tensor::new(vec![1, c, 9, 7], vec![0.25; shape.len()]).unwrap();
        let y = model.forward(&x).expect("an accepted model runs");
        assert_eq!(y.shape(), &[1, model.spec().head.num_classes]);
    }
});
