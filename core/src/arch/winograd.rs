//! Winograd `F(m, 3)` transform matrices and the input/output transforms, written once as
//! portable Rust over `L` lanes (horizontally adjacent tiles) and compiled per ISA by the
//! `#[target_feature]` wrappers in each ISA module, so the lane loops become vector code.
//!
//! Interpolation points (Toom-Cook, plus the point at infinity):
//! - `F(2,3)`: `0, 1, -1`;
//! - `F(4,3)`: `0, ±1, ±2`;
//! - `F(6,3)`: `0, ±1, ±2, ±1/2`. Pairing `±2` with `±1/2` keeps the entries of `A^T` between
//!   `1/32` and `32` (with `±3` they would reach `243`), which bounds the error growth; all
//!   entries of `B^T` and `A^T` are exact in `f32`. `G` is applied in `f64` when weights are
//!   packed.
//!
//! With `d` an `α x α` input tile (`α = m + 2`) and `g` a `3 x 3` filter,
//! `Y = A^T [(G g G^T) ⊙ (B^T d B)] A` is the `m x m` output tile of the cross-correlation.

/// Tiles transformed per call, at most.
pub const LANES: usize = 16;

/// `B^T` of `F(2,3)`.
pub const BT2: [[f32; 4]; 4] =
    [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]];
/// `G` of `F(2,3)`.
pub const G2: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
/// `A^T` of `F(2,3)`.
pub const AT2: [[f32; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];

/// `B^T` of `F(4,3)`.
pub const BT4: [[f32; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
/// `G` of `F(4,3)`.
pub const G4: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];
/// `A^T` of `F(4,3)`.
pub const AT4: [[f32; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// `B^T` of `F(6,3)`.
pub const BT6: [[f32; 8]; 8] = [
    [1.0, 0.0, -21.0 / 4.0, 0.0, 21.0 / 4.0, 0.0, -1.0, 0.0],
    [0.0, 1.0, 1.0, -17.0 / 4.0, -17.0 / 4.0, 1.0, 1.0, 0.0],
    [0.0, -1.0, 1.0, 17.0 / 4.0, -17.0 / 4.0, -1.0, 1.0, 0.0],
    [0.0, 0.5, 0.25, -5.0 / 2.0, -5.0 / 4.0, 2.0, 1.0, 0.0],
    [0.0, -0.5, 0.25, 5.0 / 2.0, -5.0 / 4.0, -2.0, 1.0, 0.0],
    [0.0, 2.0, 4.0, -5.0 / 2.0, -5.0, 0.5, 1.0, 0.0],
    [0.0, -2.0, 4.0, 5.0 / 2.0, -5.0, -0.5, 1.0, 0.0],
    [0.0, -1.0, 0.0, 21.0 / 4.0, 0.0, -21.0 / 4.0, 0.0, 1.0],
];
/// `G` of `F(6,3)`.
pub const G6: [[f64; 3]; 8] = [
    [1.0, 0.0, 0.0],
    [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
    [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
    [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0],
    [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0],
    [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0],
    [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0],
    [0.0, 0.0, 1.0],
];
/// `A^T` of `F(6,3)`.
pub const AT6: [[f32; 8]; 6] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.25, 0.25, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 0.125, -0.125, 0.0],
    [0.0, 1.0, 1.0, 16.0, 16.0, 1.0 / 16.0, 1.0 / 16.0, 0.0],
    [0.0, 1.0, -1.0, 32.0, -32.0, 1.0 / 32.0, -1.0 / 32.0, 1.0],
];

/// Input transform of `count` tiles of one channel: `V = B^T d B` per tile.
///
/// Tile `l` covers input rows `y0 .. y0 + α` and columns `x0 + m*l .. x0 + m*l + α` of the
/// `h x w` plane at `src`; positions outside the plane read as zero (padding). Element
/// `(ξ = i * α + j, l)` of the result is written to `dst[ξ * dst_stride + l]`.
#[derive(Clone, Copy, Debug)]
pub struct InputArgs {
    pub src: *const f32,
    pub h: usize,
    pub w: usize,
    pub y0: isize,
    pub x0: isize,
    pub count: usize,
    pub dst: *mut f32,
    pub dst_stride: usize,
}

/// Output transform of `count` tiles of one channel, with the convolution epilogue:
/// `Y = A^T M A` per tile, then `out = relu?(Y + bias + out?)`.
///
/// Element `(ξ, l)` of the transform-domain tile `l` is `src[ξ * src_stride + l]`; tile `l`
/// covers output rows `y0 .. y0 + m` and columns `x0 + m*l .. x0 + m*(l + 1)` of the `h x w`
/// plane at `dst`, clipped to the plane.
#[derive(Clone, Copy, Debug)]
pub struct OutputArgs {
    pub src: *const f32,
    pub src_stride: usize,
    pub dst: *mut f32,
    pub h: usize,
    pub w: usize,
    pub y0: usize,
    pub x0: usize,
    pub count: usize,
    pub bias: f32,
    pub accumulate: bool,
    pub relu: bool,
}

/// Width of the gathered input rows: `m * (LANES - 1) + α` for the largest `m`, rounded up.
const ROW: usize = 6 * LANES + 8;

/// `y[r] = sum_k t[r][k] * x[k]` over lanes; zero coefficients (constants after inlining) are
/// skipped, so the dense matrices cost what the sparse formulas would.
#[inline(always)]
fn apply<const R: usize, const C: usize, const L: usize>(
    t: &[[f32; C]; R],
    x: &[[f32; L]; C],
) -> [[f32; L]; R] {
    let mut y = [[0.0f32; L]; R];
    for r in 0..R {
        for k in 0..C {
            let c = t[r][k];
            if c == 0.0 {
                continue;
            }
            for l in 0..L {
                y[r][l] += c * x[k][l];
            }
        }
    }
    y
}

/// The portable body of every ISA's input transform (`M` = m, `A` = α = m + 2).
///
/// # Safety
/// `count <= L <= LANES`; `src` is readable for `h * w` floats; `dst` is writable at
/// `ξ * dst_stride + l` for `ξ < α²`, `l < count`.
#[inline(always)]
pub unsafe fn input<const M: usize, const A: usize, const L: usize>(
    bt: &[[f32; A]; A],
    p: &InputArgs,
) {
    debug_assert!(p.count <= L && L <= LANES && M * (L - 1) + A <= ROW);
    let width = M * (p.count - 1) + A;
    let mut rows = [[0.0f32; ROW]; A];
    for (i, row) in rows.iter_mut().enumerate() {
        let iy = p.y0 + i as isize;
        if iy < 0 || iy >= p.h as isize {
            continue;
        }
        // Columns of `row` that fall inside the plane.
        let lo = (-p.x0).clamp(0, width as isize) as usize;
        let hi = (p.w as isize - p.x0).clamp(lo as isize, width as isize) as usize;
        if lo < hi {
            // SAFETY: `iy < h` and `x0 + lo .. x0 + hi` lies in `0..w`, so the source run is
            // inside the plane the caller made readable.
            let src = unsafe {
                core::slice::from_raw_parts(
                    p.src.add(iy as usize * p.w + (p.x0 + lo as isize) as usize),
                    hi - lo,
                )
            };
            row[lo..hi].copy_from_slice(src);
        }
    }
    // d[i][j][l]: rows transformed along x first (t = d B), then along y (V = B^T t).
    let mut t = [[[0.0f32; L]; A]; A];
    for i in 0..A {
        let mut d = [[0.0f32; L]; A];
        for (j, dj) in d.iter_mut().enumerate() {
            for (l, v) in dj.iter_mut().enumerate() {
                *v = rows[i][M * l + j];
            }
        }
        t[i] = apply(bt, &d);
    }
    for j in 0..A {
        let col: [[f32; L]; A] = core::array::from_fn(|i| t[i][j]);
        let v = apply(bt, &col);
        for (i, vi) in v.iter().enumerate() {
            // SAFETY: `(i * A + j) < α²` and `count <= L`, inside what the caller made writable.
            let dst = unsafe {
                core::slice::from_raw_parts_mut(p.dst.add((i * A + j) * p.dst_stride), p.count)
            };
            dst.copy_from_slice(&vi[..p.count]);
        }
    }
}

/// The portable body of every ISA's output transform.
///
/// # Safety
/// `count <= L <= LANES`; `src` is readable at `ξ * src_stride + l` for `ξ < α²`, `l < count`;
/// `dst` is readable and writable for `h * w` floats; `y0 < h`, `x0 < w`.
#[inline(always)]
pub unsafe fn output<const M: usize, const A: usize, const L: usize>(
    at: &[[f32; A]; M],
    p: &OutputArgs,
) {
    debug_assert!(p.count <= L && L <= LANES && p.y0 < p.h && p.x0 < p.w);
    // s[ξ][l], zero beyond `count` so the unused lanes stay finite.
    let mut s = [[[0.0f32; L]; A]; A];
    for (xi, v) in s.iter_mut().flatten().enumerate() {
        // SAFETY: `ξ < α²` and `count <= L`: readable by the caller's contract.
        let src = unsafe { core::slice::from_raw_parts(p.src.add(xi * p.src_stride), p.count) };
        v[..p.count].copy_from_slice(src);
    }
    // Along y (rows of `s`), then along x.
    let mut u = [[[0.0f32; L]; A]; M];
    for j in 0..A {
        let col: [[f32; L]; A] = core::array::from_fn(|i| s[i][j]);
        let r = apply(at, &col);
        for (i, ri) in r.iter().enumerate() {
            u[i][j] = *ri;
        }
    }
    let n = (M * p.count).min(p.w - p.x0);
    for (r, ur) in u.iter().enumerate() {
        let oy = p.y0 + r;
        if oy >= p.h {
            break;
        }
        let y = apply(at, ur);
        let mut row = [0.0f32; ROW];
        for (c, yc) in y.iter().enumerate() {
            for (l, v) in yc.iter().enumerate() {
                row[M * l + c] = *v;
            }
        }
        // SAFETY: `oy < h` and `x0 + n <= w`: inside the plane the caller made writable.
        let out = unsafe { core::slice::from_raw_parts_mut(p.dst.add(oy * p.w + p.x0), n) };
        for (o, v) in out.iter_mut().zip(&row[..n]) {
            let mut x = *v + p.bias;
            if p.accumulate {
                x += *o;
            }
            if p.relu {
                x = x.max(0.0);
            }
            *o = x;
        }
    }
}

/// Defines the three input and output transforms of an ISA (`WINOGRAD`) as wrappers around
/// [`input`] and [`output`] with `L` lanes, carrying the ISA's `#[target_feature]` attribute.
macro_rules! winograd_kernels {
    ($(#[$attr:meta])* lanes = $lanes:literal) => {
        use $crate::arch::winograd::{self as wg, InputArgs, OutputArgs};

        /// # Safety
        /// See [`wg::input`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_in2(p: &InputArgs) {
            // SAFETY: the caller upholds `wg::input`'s contract.
            unsafe { wg::input::<2, 4, $lanes>(&wg::BT2, p) }
        }
        /// # Safety
        /// See [`wg::input`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_in4(p: &InputArgs) {
            // SAFETY: the caller upholds `wg::input`'s contract.
            unsafe { wg::input::<4, 6, $lanes>(&wg::BT4, p) }
        }
        /// # Safety
        /// See [`wg::input`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_in6(p: &InputArgs) {
            // SAFETY: the caller upholds `wg::input`'s contract.
            unsafe { wg::input::<6, 8, $lanes>(&wg::BT6, p) }
        }
        /// # Safety
        /// See [`wg::output`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_out2(p: &OutputArgs) {
            // SAFETY: the caller upholds `wg::output`'s contract.
            unsafe { wg::output::<2, 4, $lanes>(&wg::AT2, p) }
        }
        /// # Safety
        /// See [`wg::output`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_out4(p: &OutputArgs) {
            // SAFETY: the caller upholds `wg::output`'s contract.
            unsafe { wg::output::<4, 6, $lanes>(&wg::AT4, p) }
        }
        /// # Safety
        /// See [`wg::output`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_out6(p: &OutputArgs) {
            // SAFETY: the caller upholds `wg::output`'s contract.
            unsafe { wg::output::<6, 8, $lanes>(&wg::AT6, p) }
        }

        const WINOGRAD: [$crate::arch::WinogradKernels; 3] = [
            $crate::arch::WinogradKernels { lanes: $lanes, input: wino_in2, output: wino_out2 },
            $crate::arch::WinogradKernels { lanes: $lanes, input: wino_in4, output: wino_out4 },
            $crate::arch::WinogradKernels { lanes: $lanes, input: wino_in6, output: wino_out6 },
        ];
    };
}
pub(crate) use winograd_kernels;
