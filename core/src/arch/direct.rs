//! Direct convolution with stride 1, for layers with few channels per group (ResNeXt's grouped
//! 3x3, the stem), where an im2col copy costs as much as the GEMM it feeds. Strided layers
//! reach it too: `conv/direct.rs` splits the padded input rows into phases, which turns a
//! strided kernel into a stride-1 one with more rows.
//!
//! One call computes [`CO`] output channels over up to `X` vectors of consecutive output
//! pixels of one row: for every input channel and kernel tap it loads `X` input vectors once
//! and accumulates them into the `CO x X` accumulators with the tap's `CO` weights. The input
//! is a zero-padded copy, so no tap needs a bounds check.

use super::vector::Vector;

/// Output channels per call.
pub const CO: usize = 4;

/// Arguments of one call.
///
/// Output pixel `i` (`i < count`) of channel `c` (`c < channels`) is
/// `dst[c * ohw + i] = relu?(bias[c] + dst?[..] + sum w[ci][ky][kx][c] * src[ci * plane + ky * pw + kx + i])`,
/// with `ci < cin`, `ky < kh`, `kx < kw`: `src` points at the window of the first output
/// pixel in a zero-padded copy of the input whose rows are `pw` floats and planes `plane`.
#[derive(Clone, Copy, Debug)]
pub struct DirectArgs {
    pub src: *const f32,
    pub plane: usize,
    pub pw: usize,
    pub cin: usize,
    pub kh: usize,
    pub kw: usize,
    /// `[cin][kh][kw][CO]`.
    pub w: *const f32,
    /// `CO` biases.
    pub bias: *const f32,
    pub dst: *mut f32,
    pub ohw: usize,
    pub count: usize,
    pub channels: usize,
    pub accumulate: bool,
    pub relu: bool,
}

/// The portable body of every ISA's direct kernel with `X` vectors per row.
///
/// # Safety
/// The ISA of `V` is available; `count <= X * V::N`, `channels <= CO`; `src` is readable at
/// `ci * plane + ky * pw + kx + i` for `i < X * V::N` (whole vectors, past `count`); `w` holds
/// `cin * kh * kw * CO` floats and `bias` `CO`; `dst` is readable and writable at
/// `c * ohw + i` for `c < channels`, `i < count`.
#[inline(always)]
pub unsafe fn direct<V: Vector, const X: usize>(p: &DirectArgs) {
    // SAFETY: the ISA is available (caller's contract).
    let zero = unsafe { V::zero() };
    let mut acc = [[zero; X]; CO];
    // One loop over the taps (like the GEMM kernel's k loop), the window offset advanced
    // along kx, then ky, then ci.
    let (mut off, mut kx, mut ky) = (0, 0, 0);
    for t in 0..p.cin * p.kh * p.kw {
        // SAFETY: `off + v * N + lane` stays inside the padded rows of the window (contract);
        // tap `t` has `CO` weights.
        let (x, wt): ([V; X], [f32; CO]) = unsafe {
            (
                core::array::from_fn(|v| V::load(p.src.add(off + v * V::N))),
                (p.w.add(t * CO) as *const [f32; CO]).read_unaligned(),
            )
        };
        for (acc, wt) in acc.iter_mut().zip(wt) {
            for (a, x) in acc.iter_mut().zip(&x) {
                *a = x.scale_add(wt, *a);
            }
        }
        kx += 1;
        off += 1;
        if kx == p.kw {
            kx = 0;
            ky += 1;
            off += p.pw - p.kw;
            if ky == p.kh {
                ky = 0;
                off += p.plane - p.kh * p.pw;
            }
        }
    }
    for (c, acc) in acc.iter().enumerate() {
        if c >= p.channels {
            continue;
        }
        // SAFETY: `c < channels <= CO` biases, and output row `c` (contract).
        let (bias, out) = unsafe { (V::splat(*p.bias.add(c)), p.dst.add(c * p.ohw)) };
        for (v, a) in acc.iter().enumerate() {
            let n = p.count.saturating_sub(v * V::N).min(V::N);
            if n == 0 {
                continue;
            }
            // SAFETY: pixels `v * N .. v * N + n` of the row are inside `count` (contract).
            unsafe { store(a.add(bias), out.add(v * V::N), n, p.accumulate, p.relu) };
        }
    }
}

/// Stores `n <= N` lanes of `y` at `o` through the epilogue.
///
/// # Safety
/// The ISA of `V` is available; `o` is readable and writable for `n` floats.
#[inline(always)]
unsafe fn store<V: Vector>(mut y: V, o: *mut f32, n: usize, accumulate: bool, relu: bool) {
    let whole = n == V::N;
    if accumulate {
        // SAFETY: `n` floats at `o` (contract).
        y = y.add(unsafe {
            if whole {
                V::load(o)
            } else {
                V::load_n(o, n)
            }
        });
    }
    if relu {
        // SAFETY: the ISA is available (contract).
        y = y.max(unsafe { V::zero() });
    }
    // SAFETY: as above.
    unsafe {
        if whole {
            y.store(o)
        } else {
            y.store_n(o, n)
        }
    }
}

/// Defines an ISA's `DIRECT` kernel as a wrapper around [`direct`] on the vector type `$v`,
/// dispatching on the number of vectors a call needs (one instance per listed width), and
/// carrying the ISA's `#[target_feature]` attribute.
macro_rules! direct_kernel {
    ($(#[$attr:meta])* vector = $v:ty, widths = [$($x:literal),+]) => {
        /// # Safety
        /// See [`$crate::arch::direct::direct`], with `X` the largest width that fits `count`.
        $(#[$attr])*
        unsafe fn direct_run(p: &$crate::arch::direct::DirectArgs) {
            let n = <$v as $crate::arch::vector::Vector>::N;
            match p.count.div_ceil(n) {
                // SAFETY: `count <= X * N` for the chosen width; the rest is the caller's.
                $($x => unsafe { $crate::arch::direct::direct::<$v, $x>(p) },)+
                _ => unreachable!("more pixels than the widest kernel"),
            }
        }

        const DIRECT: $crate::arch::DirectKernel = $crate::arch::DirectKernel {
            lanes: <$v as $crate::arch::vector::Vector>::N,
            max_vectors: [$($x),+].len(),
            run: direct_run,
        };
    };
}
pub(crate) use direct_kernel;
