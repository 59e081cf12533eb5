//! Fast versions of the non-convolution ops, tested against [`crate::reference`]. Portable code
//! written so the compiler vectorises it (independent accumulators, bounds-check-free
//! interiors), except [`linear`], which runs the ISA's kernel ([`crate::arch::linear`]): the FC
//! head is bound by reading its weights, which wants prefetches and wide loads the baseline
//! target lacks.

use crate::arch::linear::LinearArgs;
use crate::arch::Isa;
use crate::shape::{PoolGeometry, Shape};

pub mod nchw16c;

/// Max-pool, separably: per output row, the element-wise maximum of the window's input rows
/// (contiguous, so it vectorises), then the maximum of each window's columns of that. Padding
/// is skipped (as PyTorch pads with `-inf`); a window with no input element gives `-inf`.
pub fn max_pool2d(geom: &PoolGeometry, input: &[f32], in_shape: Shape, output: &mut [f32]) {
    let out_shape = geom.output_shape(in_shape).expect("max_pool2d: input does not fit");
    assert_eq!(input.len(), in_shape.len());
    assert_eq!(output.len(), out_shape.len());
    let (k, s, p) = (geom.kernel, geom.stride, geom.pad as isize);
    let (h, w) = (in_shape.h, in_shape.w);
    let (oh, ow) = (out_shape.h, out_shape.w);
    // Input columns are reduced in blocks of at most `SPAN`: `block` output columns each.
    const SPAN: usize = 512;
    if k > SPAN {
        return crate::reference::max_pool2d(geom, input, in_shape, output);
    }
    let mut rows_max = [f32::NEG_INFINITY; SPAN];
    let mut runs_max = [f32::NEG_INFINITY; SPAN];
    let block = SPAN.saturating_sub(k) / s + 1;
    // The valid input range `[lo, hi)` of a window starting at `start` (may be empty).
    let clip = |start: isize, len: usize| {
        let lo = start.clamp(0, len as isize) as usize;
        let hi = (start + k as isize).clamp(0, len as isize) as usize;
        (lo, hi.max(lo))
    };
    for (plane, out) in input.chunks_exact(h * w).zip(output.chunks_exact_mut(oh * ow)) {
        for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
            let (y_lo, y_hi) = clip(oy as isize * s as isize - p, h);
            for ox0 in (0..ow).step_by(block) {
                let ox1 = (ox0 + block).min(ow);
                let first = ox0 as isize * s as isize - p;
                let (x_lo, x_hi) = clip(first, w);
                let x_hi = x_hi.max(clip((ox1 - 1) as isize * s as isize - p, w).1);
                let span = &mut rows_max[..x_hi - x_lo];
                span.fill(f32::NEG_INFINITY);
                for iy in y_lo..y_hi {
                    for (m, &v) in span.iter_mut().zip(&plane[iy * w + x_lo..][..x_hi - x_lo]) {
                        // A plain comparison (not `f32::max`) compiles to one `maxps`.
                        *m = if v > *m { v } else { *m };
                    }
                }
                // Output columns whose window is whole (inside the span): one strided pass per
                // kernel column; the others (at the padding) one window at a time.
                // Window `ox` starts at span index `ox * s - p - x_lo`; it is whole for
                // `ox` in `a .. b`.
                let (si, pi, xi) = (s as isize, p, x_lo as isize);
                let a = ((pi + xi + si - 1).div_euclid(si).max(0) as usize).clamp(ox0, ox1);
                let last = (span.len() as isize - k as isize + pi + xi).div_euclid(si) + 1;
                let b = (last.max(0) as usize).clamp(a, ox1);
                for ox in (ox0..a).chain(b..ox1) {
                    let (lo, hi) = clip(ox as isize * s as isize - p, w);
                    let window = &span[lo.max(x_lo) - x_lo..hi.max(x_lo) - x_lo];
                    row[ox] =
                        window.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
                }
                if a < b {
                    // The maximum of every `k` consecutive columns (contiguous passes, which
                    // vectorise), then every `s`-th of them.
                    let first = (a as isize * si - pi - xi) as usize;
                    let n = (b - a - 1) * s + 1;
                    let runs = &mut runs_max[..n];
                    runs.copy_from_slice(&span[first..][..n]);
                    for kx in 1..k {
                        for (m, &v) in runs.iter_mut().zip(&span[first + kx..][..n]) {
                            *m = if v > *m { v } else { *m };
                        }
                    }
                    for (o, &m) in row[a..b].iter_mut().zip(runs.iter().step_by(s)) {
                        *o = m;
                    }
                }
            }
        }
    }
}

/// Dot product with eight independent accumulators, so it vectorises.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let n8 = a.len() / 8 * 8;
    for (x, y) in a[..n8].chunks_exact(8).zip(b[..n8].chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail = a[n8..].iter().zip(&b[n8..]).fold(0.0, |t, (x, y)| t + x * y);
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

/// Fully connected layer `y[n, o] = b[o] + x[n, :] . w[o, :]`, by `isa`'s kernel
/// ([`crate::arch::linear`]).
///
/// # Panics
/// If the lengths disagree, `in_features` is zero, or `isa` is not available on this CPU or in this
/// build.
#[allow(clippy::too_many_arguments)]
pub fn linear(
    isa: Isa,
    in_features: usize,
    out_features: usize,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    output: &mut [f32],
) {
    // `checked_mul`: a product that wrapped would let short buffers pass to the kernel.
    assert_eq!(Some(weight.len()), in_features.checked_mul(out_features));
    assert_eq!(bias.len(), out_features);
    assert_eq!(input.len() % in_features.max(1), 0);
    assert_eq!(Some(output.len()), (input.len() / in_features.max(1)).checked_mul(out_features));
    let kernels = crate::arch::kernels(isa).filter(|_| isa.is_available());
    let kernels = kernels.unwrap_or_else(|| panic!("linear: {isa} is not available"));
    if out_features == 0 {
        return;
    }
    for (x, y) in input.chunks_exact(in_features).zip(output.chunks_exact_mut(out_features)) {
        let args = LinearArgs {
            x: x.as_ptr(),
            n: in_features,
            w: weight.as_ptr(),
            rows: out_features,
            bias: bias.as_ptr(),
            y: y.as_mut_ptr(),
        };
        // SAFETY: the ISA is available (checked above); `x` holds `n` floats, `weight`
        // `rows * n`, `bias` and `y` `rows` (asserted above); `y` is borrowed exclusively.
        unsafe { (kernels.linear)(&args) };
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
