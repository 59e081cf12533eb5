//! The non-convolution ops on channel-blocked activations (`NCHW16c`, [`crate::layout`]): each
//! works on a pixel's 16 channels at once (`[f32; 16]`, which the compiler keeps in vector
//! registers), so none of them transposes. Tested against the NCHW reference ops through
//! [`crate::layout::convert`].

use crate::arch::blocked::BLOCK;
use crate::layout::ActLayout;
use crate::shape::{PoolGeometry, Shape};

type Lanes = [f32; BLOCK];

#[inline(always)]
fn lanes(s: &[f32]) -> &Lanes {
    s.try_into().expect("a whole block")
}

fn check_blocked(shape: Shape, len: usize, what: &str) {
    assert!(ActLayout::Nchw16c.fits(shape.c), "{what}: channels are not whole blocks");
    assert_eq!(len, shape.len(), "{what}: buffer length");
}

/// Max-pool ([`super::max_pool2d`]) of blocked activations. Padding is skipped, as PyTorch pads
/// with `-inf`; a window with no input element gives `-inf`.
pub fn max_pool2d(geom: &PoolGeometry, input: &[f32], in_shape: Shape, output: &mut [f32]) {
    let out_shape = geom.output_shape(in_shape).expect("max_pool2d: input does not fit");
    check_blocked(in_shape, input.len(), "max_pool2d input");
    check_blocked(out_shape, output.len(), "max_pool2d output");
    let (k, s, p) = (geom.kernel, geom.stride, geom.pad);
    let (h, w) = (in_shape.h, in_shape.w);
    // The valid input range of a window starting at `o * s - p`.
    let clip = |o: usize, len: usize| {
        let lo = (o * s).saturating_sub(p).min(len);
        let hi = (o * s + k).saturating_sub(p).clamp(lo, len);
        (lo, hi)
    };
    let planes = input
        .chunks_exact(h * w * BLOCK)
        .zip(output.chunks_exact_mut(out_shape.h * out_shape.w * BLOCK));
    for (src, dst) in planes {
        for (oy, row) in dst.chunks_exact_mut(out_shape.w * BLOCK).enumerate() {
            let (y0, y1) = clip(oy, h);
            for (ox, px) in row.chunks_exact_mut(BLOCK).enumerate() {
                let (x0, x1) = clip(ox, w);
                let mut m = [f32::NEG_INFINITY; BLOCK];
                for y in y0..y1 {
                    for x in x0..x1 {
                        let v = lanes(&src[(y * w + x) * BLOCK..][..BLOCK]);
                        for (m, &v) in m.iter_mut().zip(v) {
                            // A plain comparison (not `f32::max`) compiles to one `maxps`.
                            *m = if v > *m { v } else { *m };
                        }
                    }
                }
                px.copy_from_slice(&m);
            }
        }
    }
}

/// Mean over the top-left `kh x kw` window of each channel, blocked `[n, c, h, w]` to `[n, c]`
/// (which is the same in both layouts).
pub fn avg_pool_window(input: &[f32], in_shape: Shape, kh: usize, kw: usize, output: &mut [f32]) {
    check_blocked(in_shape, input.len(), "avg_pool input");
    assert_eq!(output.len(), in_shape.n * in_shape.c, "avg_pool: output length");
    assert!(kh >= 1 && kw >= 1 && kh <= in_shape.h && kw <= in_shape.w, "avg_pool: window");
    let (h, w) = (in_shape.h, in_shape.w);
    let scale = 1.0 / (kh * kw) as f32;
    for (src, out) in input.chunks_exact(h * w * BLOCK).zip(output.chunks_exact_mut(BLOCK)) {
        let mut sum = [0.0f32; BLOCK];
        for y in 0..kh {
            for px in src[y * w * BLOCK..][..kw * BLOCK].chunks_exact(BLOCK) {
                for (s, &v) in sum.iter_mut().zip(lanes(px)) {
                    *s += v;
                }
            }
        }
        for (o, s) in out.iter_mut().zip(sum) {
            *o = s * scale;
        }
    }
}

/// Per-channel `y = x * scale[c] + shift[c]`, optionally ReLU ([`super::affine`]), blocked.
pub fn affine(
    scale: &[f32],
    shift: &[f32],
    relu: bool,
    input: &[f32],
    shape: Shape,
    output: &mut [f32],
) {
    check_blocked(shape, input.len(), "affine input");
    check_blocked(shape, output.len(), "affine output");
    assert!(scale.len() == shape.c && shift.len() == shape.c, "affine: parameters");
    let plane = shape.h * shape.w * BLOCK;
    let blocks = shape.c / BLOCK;
    for (i, (x, y)) in input.chunks_exact(plane).zip(output.chunks_exact_mut(plane)).enumerate() {
        let cb = i % blocks;
        let a = lanes(&scale[cb * BLOCK..][..BLOCK]);
        let b = lanes(&shift[cb * BLOCK..][..BLOCK]);
        for (x, y) in x.chunks_exact(BLOCK).zip(y.chunks_exact_mut(BLOCK)) {
            for l in 0..BLOCK {
                let t = x[l] * a[l] + b[l];
                y[l] = if relu { t.max(0.0) } else { t };
            }
        }
    }
}

/// Option-A shortcut ([`crate::reference::subsample_pad_channels`]) on blocked activations:
/// every `stride`-th pixel, channels shifted by `pad_front` and zero-padded to `out_channels`.
/// Element by element (the padding need not be whole blocks); it runs twice per CIFAR net.
pub fn subsample_pad_channels(
    input: &[f32],
    in_shape: Shape,
    stride: usize,
    out_channels: usize,
    pad_front: usize,
    output: &mut [f32],
) {
    let out_shape = crate::reference::subsample_pad_shape(in_shape, stride, out_channels);
    check_blocked(in_shape, input.len(), "subsample input");
    check_blocked(out_shape, output.len(), "subsample output");
    assert!(pad_front + in_shape.c <= out_channels, "subsample: channels");
    let at = |shape, n, c, y, x| ActLayout::Nchw16c.index(shape, n, c, y, x);
    for n in 0..out_shape.n {
        for oc in 0..out_channels {
            let ic = oc.checked_sub(pad_front).filter(|&c| c < in_shape.c);
            for oy in 0..out_shape.h {
                for ox in 0..out_shape.w {
                    output[at(out_shape, n, oc, oy, ox)] = match ic {
                        Some(ic) => input[at(in_shape, n, ic, oy * stride, ox * stride)],
                        None => 0.0,
                    };
                }
            }
        }
    }
}
