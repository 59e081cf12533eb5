use shortcut_core::arch::Isa;
use shortcut_core::conv::{ConvAlgo, PackedConv};
use shortcut_core::{Conv2dGeometry, Epilogue, Shape};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let algo = ConvAlgo::from_name(&a[1]).unwrap();
    let c: usize = a[2].parse().unwrap();
    let hw: usize = a[3].parse().unwrap();
    let k: usize = a[4].parse().unwrap();
    let geom = Conv2dGeometry::square(c, c, k, 1, k / 2, 1);
    let in_shape = Shape::new(1, c, hw, hw);
    let o = geom.output_shape(in_shape).unwrap();
    let x = vec![0.3f32; in_shape.len()];
    let w = vec![0.01f32; geom.weight_len()];
    let b = vec![0.0; c];
    let p = PackedConv::new(Isa::best_available(), Some(algo), &geom, &w, &b);
    let mut out = vec![0.0; o.len()];
    let mut s = vec![0.0; p.scratch_len(in_shape)];
    for _ in 0..a[5].parse().unwrap() {
        p.run(&x, in_shape, &mut out, Epilogue::RELU, &mut s);
    }
}
