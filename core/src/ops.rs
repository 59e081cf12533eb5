//! Portable fast versions of the non-convolution ops. Written so the compiler vectorises them
//! (independent accumulators, bounds-check-free interiors); tested against [`crate::reference`].

use crate::shape::{PoolGeometry, Shape};

/// Max-pool: windows fully inside the plane take a branch-free path, the border the general one.
pub fn max_pool2d(geom: &PoolGeometry, input: &[f32], in_shape: Shape, output: &mut [f32]) {
    let out_shape = geom.output_shape(in_shape).expect("max_pool2d: input does not fit");
    assert_eq!(input.len(), in_shape.len());
    assert_eq!(output.len(), out_shape.len());
    let (k, s, p) = (geom.kernel, geom.stride, geom.pad);
    let (h, w) = (in_shape.h, in_shape.w);
    // Output rows/cols whose window lies inside the input: o*s >= p and o*s - p + k <= size.
    let inner = |size: usize, out: usize| {
        let lo = p.div_ceil(s).min(out);
        let hi = if size + p >= k { ((size + p - k) / s + 1).min(out) } else { 0 };
        (lo, hi.max(lo))
    };
    let (y_lo, y_hi) = inner(h, out_shape.h);
    let (x_lo, x_hi) = inner(w, out_shape.w);
    for (plane, out) in
        input.chunks_exact(h * w).zip(output.chunks_exact_mut(out_shape.plane_len()))
    {
        for oy in 0..out_shape.h {
            let row = &mut out[oy * out_shape.w..][..out_shape.w];
            let y_inside = oy >= y_lo && oy < y_hi;
            for (ox, o) in row.iter_mut().enumerate() {
                if y_inside && ox >= x_lo && ox < x_hi {
                    let (y0, x0) = (oy * s - p, ox * s - p);
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..k {
                        for &v in &plane[(y0 + ky) * w + x0..][..k] {
                            // A plain comparison (not `f32::max`) compiles to one `maxss`.
                            m = if v > m { v } else { m };
                        }
                    }
                    *o = m;
                } else {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..k {
                        let Some(iy) = (oy * s + ky).checked_sub(p).filter(|&y| y < h) else {
                            continue;
                        };
                        for kx in 0..k {
                            if let Some(ix) = (ox * s + kx).checked_sub(p).filter(|&x| x < w) {
                                m = m.max(plane[iy * w + ix]);
                            }
                        }
                    }
                    *o = m;
                }
            }
        }
    }
}

/// Dot product with eight independent accumulators, so it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ar.iter().zip(br) {
        tail += x * y;
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

/// Fully connected layer `y[n, o] = b[o] + x[n, :] . w[o, :]`.
pub fn linear(
    in_features: usize,
    out_features: usize,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    output: &mut [f32],
) {
    assert_eq!(weight.len(), in_features * out_features);
    assert_eq!(bias.len(), out_features);
    assert_eq!(input.len() % in_features.max(1), 0);
    assert_eq!(output.len(), input.len() / in_features.max(1) * out_features);
    for (x, y) in input.chunks_exact(in_features).zip(output.chunks_exact_mut(out_features)) {
        for ((o, w), b) in y.iter_mut().zip(weight.chunks_exact(in_features)).zip(bias) {
            *o = b + dot(x, w);
        }
    }
}

/// Per-channel `y = x * scale[c] + shift[c]`, optionally ReLU, one channel plane at a time.
pub fn affine(
    scale: &[f32],
    shift: &[f32],
    relu: bool,
    input: &[f32],
    shape: Shape,
    output: &mut [f32],
) {
    assert_eq!(input.len(), shape.len());
    assert_eq!(output.len(), shape.len());
    assert_eq!(scale.len(), shape.c);
    assert_eq!(shift.len(), shape.c);
    let plane = shape.plane_len();
    for (i, (x, y)) in input.chunks_exact(plane).zip(output.chunks_exact_mut(plane)).enumerate() {
        let (a, b) = (scale[i % shape.c], shift[i % shape.c]);
        for (o, &v) in y.iter_mut().zip(x) {
            let t = v * a + b;
            *o = if relu { t.max(0.0) } else { t };
        }
    }
}

/// Mean over the top-left `kh x kw` window of each plane, `[n, c, h, w] -> [n, c]`.
pub fn avg_pool_window(input: &[f32], in_shape: Shape, kh: usize, kw: usize, output: &mut [f32]) {
    assert_eq!(input.len(), in_shape.len());
    assert_eq!(output.len(), in_shape.n * in_shape.c);
    assert!(kh >= 1 && kw >= 1 && kh <= in_shape.h && kw <= in_shape.w);
    let ones = [1.0f32; 64];
    for (o, plane) in output.iter_mut().zip(input.chunks_exact(in_shape.plane_len())) {
        let mut sum = 0.0;
        for row in plane.chunks_exact(in_shape.w).take(kh) {
            let row = &row[..kw];
            sum += row.chunks(64).map(|c| dot(c, &ones[..c.len()])).sum::<f32>();
        }
        *o = sum / (kh * kw) as f32;
    }
}
