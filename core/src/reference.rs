//! Slow, obviously correct implementations of every op: the oracle every kernel is tested against.
//!
//! Each function is a direct transcription of the op's definition (PyTorch semantics, NCHW,
//! dilation 1). They panic on inconsistent buffer lengths: callers validate shapes first.

use crate::epilogue::Epilogue;
use crate::shape::{Conv2dGeometry, PoolGeometry, Shape};

/// 2-D convolution with bias and a fused epilogue. `weight` is `[out, in/groups, kh, kw]`.
pub fn conv2d(
    geom: &Conv2dGeometry,
    input: &[f32],
    in_shape: Shape,
    weight: &[f32],
    bias: &[f32],
    output: &mut [f32],
    epilogue: Epilogue,
) {
    let out_shape = geom.output_shape(in_shape).expect("conv2d: input does not fit the geometry");
    assert!(geom.is_valid(), "conv2d: invalid geometry");
    assert_eq!(input.len(), in_shape.len());
    assert_eq!(weight.len(), geom.weight_len());
    assert_eq!(bias.len(), geom.out_channels);
    assert_eq!(output.len(), out_shape.len());
    let (cin_g, cout_g) = (geom.in_per_group(), geom.out_per_group());
    for n in 0..out_shape.n {
        for oc in 0..geom.out_channels {
            let g = oc / cout_g;
            for oy in 0..out_shape.h {
                for ox in 0..out_shape.w {
                    let mut acc = bias[oc];
                    for icg in 0..cin_g {
                        let ic = g * cin_g + icg;
                        for ky in 0..geom.kernel_h {
                            for kx in 0..geom.kernel_w {
                                let iy = (oy * geom.stride_h + ky) as isize - geom.pad_h as isize;
                                let ix = (ox * geom.stride_w + kx) as isize - geom.pad_w as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy as usize >= in_shape.h
                                    || ix as usize >= in_shape.w
                                {
                                    continue;
                                }
                                let x = input[((n * in_shape.c + ic) * in_shape.h + iy as usize)
                                    * in_shape.w
                                    + ix as usize];
                                let w = weight[((oc * cin_g + icg) * geom.kernel_h + ky)
                                    * geom.kernel_w
                                    + kx];
                                acc += x * w;
                            }
                        }
                    }
                    let o = ((n * out_shape.c + oc) * out_shape.h + oy) * out_shape.w + ox;
                    output[o] = epilogue.apply(acc, output[o]);
                }
            }
        }
    }
}

/// Max-pool; padding never wins (it is `-inf`), as in PyTorch.
pub fn max_pool2d(geom: &PoolGeometry, input: &[f32], in_shape: Shape, output: &mut [f32]) {
    let out_shape = geom.output_shape(in_shape).expect("max_pool2d: input does not fit");
    assert_eq!(input.len(), in_shape.len());
    assert_eq!(output.len(), out_shape.len());
    for nc in 0..in_shape.n * in_shape.c {
        let plane = &input[nc * in_shape.plane_len()..][..in_shape.plane_len()];
        for oy in 0..out_shape.h {
            for ox in 0..out_shape.w {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..geom.kernel {
                    for kx in 0..geom.kernel {
                        let iy = (oy * geom.stride + ky) as isize - geom.pad as isize;
                        let ix = (ox * geom.stride + kx) as isize - geom.pad as isize;
                        if iy >= 0
                            && ix >= 0
                            && (iy as usize) < in_shape.h
                            && (ix as usize) < in_shape.w
                        {
                            m = m.max(plane[iy as usize * in_shape.w + ix as usize]);
                        }
                    }
                }
                output[(nc * out_shape.h + oy) * out_shape.w + ox] = m;
            }
        }
    }
}

/// Mean over each channel plane: `[n, c, h, w] -> [n, c]`.
pub fn global_avg_pool(input: &[f32], in_shape: Shape, output: &mut [f32]) {
    avg_pool_window(input, in_shape, in_shape.h, in_shape.w, output);
}

/// Mean over the top-left `kh x kw` window of each channel plane: `[n, c, h, w] -> [n, c]`
/// (what `F.avg_pool2d` computes when its output is 1x1).
pub fn avg_pool_window(input: &[f32], in_shape: Shape, kh: usize, kw: usize, output: &mut [f32]) {
    assert_eq!(input.len(), in_shape.len());
    assert_eq!(output.len(), in_shape.n * in_shape.c);
    assert!(kh >= 1 && kw >= 1 && kh <= in_shape.h && kw <= in_shape.w);
    let plane = in_shape.plane_len();
    for (o, chunk) in output.iter_mut().zip(input.chunks_exact(plane)) {
        let sum: f32 = chunk.chunks_exact(in_shape.w).take(kh).flat_map(|row| &row[..kw]).sum();
        *o = sum / (kh * kw) as f32;
    }
}

/// Fully connected layer: `y[n, o] = b[o] + sum_i x[n, i] * w[o, i]`.
pub fn linear(
    in_features: usize,
    out_features: usize,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    output: &mut [f32],
) {
    assert_eq!(input.len() % in_features, 0);
    let batch = input.len() / in_features;
    assert_eq!(weight.len(), in_features * out_features);
    assert_eq!(bias.len(), out_features);
    assert_eq!(output.len(), batch * out_features);
    for n in 0..batch {
        let x = &input[n * in_features..][..in_features];
        for o in 0..out_features {
            let w = &weight[o * in_features..][..in_features];
            let mut acc = bias[o];
            for i in 0..in_features {
                acc += x[i] * w[i];
            }
            output[n * out_features + o] = acc;
        }
    }
}

/// Per-channel affine map `y = x * scale[c] + shift[c]`, optionally followed by ReLU:
/// batch norm in inference mode where it cannot be folded into a conv (pre-activation nets).
pub fn affine(
    scale: &[f32],
    shift: &[f32],
    relu: bool,
    input: &[f32],
    shape: Shape,
    output: &mut [f32],
) {
    assert_eq!(scale.len(), shape.c);
    assert_eq!(shift.len(), shape.c);
    assert_eq!(input.len(), shape.len());
    assert_eq!(output.len(), shape.len());
    for (i, (o, x)) in output.iter_mut().zip(input).enumerate() {
        let c = (i / shape.plane_len()) % shape.c;
        let v = x * scale[c] + shift[c];
        *o = if relu { v.max(0.0) } else { v };
    }
}

/// Element-wise `y = a + b`.
pub fn add(a: &[f32], b: &[f32], output: &mut [f32]) {
    assert_eq!(a.len(), b.len());
    assert_eq!(a.len(), output.len());
    for ((o, x), y) in output.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// In-place ReLU.
pub fn relu(data: &mut [f32]) {
    for v in data {
        *v = v.max(0.0);
    }
}

/// The "option A" shortcut of He et al.'s CIFAR ResNets: keep every `stride`-th row and column
/// (`x[:, :, ::s, ::s]`) and place the `in` channels at `pad_front` in an output of
/// `out_channels`, the rest zero (`F.pad(..., (0, 0, 0, 0, pad_front, pad_back))`).
pub fn subsample_pad_channels(
    input: &[f32],
    in_shape: Shape,
    stride: usize,
    out_channels: usize,
    pad_front: usize,
    output: &mut [f32],
) {
    let out_shape = subsample_pad_shape(in_shape, stride, out_channels);
    assert!(pad_front + in_shape.c <= out_channels);
    assert_eq!(input.len(), in_shape.len());
    assert_eq!(output.len(), out_shape.len());
    for n in 0..out_shape.n {
        for oc in 0..out_channels {
            for oy in 0..out_shape.h {
                for ox in 0..out_shape.w {
                    let o = ((n * out_channels + oc) * out_shape.h + oy) * out_shape.w + ox;
                    output[o] = if oc >= pad_front && oc < pad_front + in_shape.c {
                        let ic = oc - pad_front;
                        input[((n * in_shape.c + ic) * in_shape.h + oy * stride) * in_shape.w
                            + ox * stride]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// Output shape of [`subsample_pad_channels`]: `ceil(h / s) x ceil(w / s)`, as slicing `::s` gives.
pub fn subsample_pad_shape(in_shape: Shape, stride: usize, out_channels: usize) -> Shape {
    Shape::new(in_shape.n, out_channels, in_shape.h.div_ceil(stride), in_shape.w.div_ceil(stride))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv2d_hand_computed() {
        // 1x1x3x3 input, 1 output channel, 2x2 kernel of ones, stride 1, no pad.
        let g = Conv2dGeometry::square(1, 1, 2, 1, 0, 1);
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let mut y = [0.0; 4];
        conv2d(&g, &x, Shape::new(1, 1, 3, 3), &[1.0; 4], &[0.5], &mut y, Epilogue::NONE);
        assert_eq!(y, [12.5, 16.5, 24.5, 28.5]);
        // Accumulate + ReLU with a negative bias.
        let mut y2 = [-100.0, 0.0, 1.0, 0.0];
        conv2d(
            &g,
            &x,
            Shape::new(1, 1, 3, 3),
            &[1.0; 4],
            &[-20.0],
            &mut y2,
            Epilogue { accumulate: true, relu: true },
        );
        assert_eq!(y2, [0.0, 0.0, 5.0, 8.0]);
    }

    #[test]
    fn conv2d_padding_and_groups() {
        // Two groups, each a 3x3 identity-centre kernel with pad 1: output equals input, scaled.
        let g = Conv2dGeometry::square(2, 2, 3, 1, 1, 2);
        let x: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut w = [0.0; 18];
        w[4] = 1.0;
        w[9 + 4] = 2.0;
        let mut y = [0.0; 8];
        conv2d(&g, &x, Shape::new(1, 2, 2, 2), &w, &[0.0, 0.0], &mut y, Epilogue::NONE);
        assert_eq!(y, [1.0, 2.0, 3.0, 4.0, 10.0, 12.0, 14.0, 16.0]);
    }

    #[test]
    fn max_pool_ignores_padding() {
        let x = [-1.0, -2.0, -3.0, -4.0];
        let mut y = [0.0; 1];
        max_pool2d(
            &PoolGeometry { kernel: 3, stride: 2, pad: 1 },
            &x,
            Shape::new(1, 1, 2, 2),
            &mut y,
        );
        assert_eq!(y, [-1.0]);
    }

    #[test]
    fn option_a_pads_both_sides() {
        // 1 channel 3x3 -> 3 channels 2x2 with the data in the middle channel.
        let x: [f32; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
        let mut y = [9.0; 12];
        subsample_pad_channels(&x, Shape::new(1, 1, 3, 3), 2, 3, 1, &mut y);
        assert_eq!(y, [0.0, 0.0, 0.0, 0.0, 1.0, 3.0, 7.0, 9.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn linear_and_gap() {
        let mut f = [0.0; 2];
        global_avg_pool(
            &[1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0],
            Shape::new(1, 2, 2, 2),
            &mut f,
        );
        assert_eq!(f, [2.5, 10.0]);
        let mut y = [0.0; 1];
        linear(2, 1, &f, &[2.0, -1.0], &[1.0], &mut y);
        assert_eq!(y, [-4.0]);
    }
}
