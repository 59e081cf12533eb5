//! Winograd `F(m, 3)` transform matrices and the input/output transforms, written once as
//! portable Rust over a [`Vector`] of tiles and compiled per ISA by the `#[target_feature]`
//! wrappers in each ISA module, which supply the vector type.
//!
//! Interpolation points (Toom-Cook, plus the point at infinity):
//! - `F(2,3)`: `0, 1, -1`;
//! - `F(4,3)`: `0, ±1, ±2`;
//! - `F(6,3)`: `0, ±1, ±2, ±1/2`. Pairing `±2` with `±1/2` keeps the entries of `A^T` between
//!   `1/32` and `32` (with `±3` they would reach `243`), which bounds the error growth; all
//!   entries of `B^T` and `A^T` are exact in `f32`. `G` is applied in `f64` when weights are
//!   packed.
//!
//! Measured error against an `f64` reference is in the `conv` module documentation: about
//! 10-20x that of a plain GEMM for `F(4,3)` and `F(6,3)`, the same for `F(2,3)`.
//!
//! With `d` an `α x α` input tile (`α = m + 2`) and `g` a `3 x 3` filter,
//! `Y = A^T [(G g G^T) ⊙ (B^T d B)] A` is the `m x m` output tile of the cross-correlation.
//! The constant matrices below define the transforms; the kernels apply `B^T` and `A^T` as the
//! equivalent sparse formulas of `bt` and `at`, which the tests check against the matrices.

pub use super::vector::{Vector, LANES};

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

/// Input transform of [`LANES`]-at-most tiles of one channel: `V = B^T d B` per tile.
///
/// `src` is a zero-padded copy of the channel's plane with rows of `pw` floats; tile `l`'s
/// `α x α` window starts at `src[base[l]]`. Element `(ξ = i * α + j, l)` of the result is
/// written to `dst[ξ * dst_stride + l]` for every lane `l < L` of the ISA's kernel (the caller
/// repeats a valid base in unused lanes and leaves room for all lanes).
#[derive(Clone, Copy, Debug)]
pub struct InputArgs {
    pub src: *const f32,
    pub pw: usize,
    pub base: [u32; LANES],
    pub dst: *mut f32,
    pub dst_stride: usize,
}

/// Output transform of [`LANES`]-at-most tiles of one channel: `Y = A^T M A` per tile.
///
/// Element `(ξ, l)` of tile `l` is `src[ξ * src_stride + l]`, readable for every lane
/// `l < L`. Tile `l < count` writes its `m x m` outputs to `dst[base[l] + r * pw + c]`, a
/// staging plane; [`StoreArgs`] then applies the epilogue.
#[derive(Clone, Copy, Debug)]
pub struct OutputArgs {
    pub src: *const f32,
    pub src_stride: usize,
    pub dst: *mut f32,
    pub pw: usize,
    pub base: [u32; LANES],
    pub count: usize,
}

/// The convolution epilogue over one contiguous run: `out[i] = relu?(src[i] + bias + out[i]?)`
/// for `i < len`.
#[derive(Clone, Copy, Debug)]
pub struct StoreArgs {
    pub src: *const f32,
    pub out: *mut f32,
    pub len: usize,
    pub bias: f32,
    pub accumulate: bool,
    pub relu: bool,
}

/// `B^T d` for one column (or row) `d` of an input tile, as sparse formulas.
#[inline(always)]
pub(crate) fn bt<V: Vector, const M: usize>(d: &[V], r: &mut [V]) {
    match M {
        2 => {
            r[0] = d[0].sub(d[2]);
            r[1] = d[1].add(d[2]);
            r[2] = d[2].sub(d[1]);
            r[3] = d[1].sub(d[3]);
        }
        4 => {
            let (a, b) = (d[3].add(d[4]), d[1].add(d[2]));
            r[0] = d[0].scale_add(4.0, d[2].scale_add(-5.0, d[4]));
            r[1] = b.scale_add(-4.0, a);
            r[2] = d[1].sub(d[2]).scale_add(4.0, d[4].sub(d[3]));
            let (c, e) = (d[4].sub(d[2]), d[3].sub(d[1]));
            r[3] = e.scale_add(2.0, c);
            r[4] = e.scale_add(-2.0, c);
            r[5] = d[1].scale_add(4.0, d[3].scale_add(-5.0, d[5]));
        }
        6 => {
            r[0] = d[4].sub(d[2]).scale_add(5.25, d[0].sub(d[6]));
            r[7] = d[3].sub(d[5]).scale_add(5.25, d[7].sub(d[1]));
            let a = d[4].scale_add(-4.25, d[2].add(d[6]));
            let b = d[3].scale_add(-4.25, d[1].add(d[5]));
            r[1] = a.add(b);
            r[2] = a.sub(b);
            let a = d[4].scale_add(-1.25, d[2].scale_add(0.25, d[6]));
            let b = d[1].scale_add(0.5, d[3].scale_add(-2.5, d[5].scale(2.0)));
            r[3] = a.add(b);
            r[4] = a.sub(b);
            let a = d[4].scale_add(-5.0, d[2].scale_add(4.0, d[6]));
            let b = d[1].scale_add(2.0, d[3].scale_add(-2.5, d[5].scale(0.5)));
            r[5] = a.add(b);
            r[6] = a.sub(b);
        }
        _ => unreachable!(),
    }
}

/// `A^T m` for one column (or row) `m` of a transform-domain tile, as sparse formulas.
#[inline(always)]
pub(crate) fn at<V: Vector, const M: usize>(m: &[V], y: &mut [V]) {
    match M {
        2 => {
            y[0] = m[0].add(m[1]).add(m[2]);
            y[1] = m[1].sub(m[2]).sub(m[3]);
        }
        4 => {
            let (a, b) = (m[1].add(m[2]), m[1].sub(m[2]));
            let (c, d) = (m[3].add(m[4]), m[3].sub(m[4]));
            y[0] = m[0].add(a).add(c);
            y[1] = d.scale_add(2.0, b);
            y[2] = c.scale_add(4.0, a);
            y[3] = d.scale_add(8.0, b).add(m[5]);
        }
        6 => {
            let (a, b) = (m[1].add(m[2]), m[1].sub(m[2]));
            let (c, d) = (m[3].add(m[4]), m[3].sub(m[4]));
            let (e, f) = (m[5].add(m[6]), m[5].sub(m[6]));
            y[0] = m[0].add(a).add(c).add(e);
            y[1] = d.scale_add(2.0, f.scale_add(0.5, b));
            y[2] = c.scale_add(4.0, e.scale_add(0.25, a));
            y[3] = d.scale_add(8.0, f.scale_add(0.125, b));
            y[4] = c.scale_add(16.0, e.scale_add(1.0 / 16.0, a));
            y[5] = d.scale_add(32.0, f.scale_add(1.0 / 32.0, b)).add(m[7]);
        }
        _ => unreachable!(),
    }
}

/// `V = Bᵀ d B` of one `α x α` tile (`A` = α = `M` + 2), for one vector of lanes: `d(i, j)`
/// is pixel `(i, j)`, `store(ξ, v)` receives `V_ξ`. Along x first (`t = d B`, per input row),
/// then along y. Shared by the NCHW and the channel-blocked transforms, which differ only in
/// where a pixel and `V_ξ` are.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // Columns of a square tile, by index.
pub(crate) fn input_tile<V: Vector, const M: usize, const A: usize>(
    zero: V,
    d: impl Fn(usize, usize) -> V,
    mut store: impl FnMut(usize, V),
) {
    let mut t: [[V; A]; A] = [[zero; A]; A];
    for (i, ti) in t.iter_mut().enumerate() {
        let row: [V; A] = core::array::from_fn(|j| d(i, j));
        bt::<V, M>(&row, ti);
    }
    let mut v = [zero; A];
    for j in 0..A {
        let col: [V; A] = core::array::from_fn(|i| t[i][j]);
        bt::<V, M>(&col, &mut v);
        for (i, vi) in v.iter().enumerate() {
            store(i * A + j, *vi);
        }
    }
}

/// `Y = Aᵀ M A` of one tile, for one vector of lanes: `m(ξ)` is `M_ξ`, and `row(i, y)`
/// receives output row `i` (its `M` pixels along x) for `i < rows`. Along y (columns of the
/// α x α tile), then along x. Shared like [`input_tile`].
#[inline(always)]
#[allow(clippy::needless_range_loop)] // Columns of a square tile, by index.
pub(crate) fn output_tile<V: Vector, const M: usize, const A: usize>(
    zero: V,
    m: impl Fn(usize) -> V,
    rows: usize,
    mut row: impl FnMut(usize, &[V; M]),
) {
    let mut u: [[V; A]; M] = [[zero; A]; M];
    let mut r: [V; M] = [zero; M];
    for j in 0..A {
        let col: [V; A] = core::array::from_fn(|i| m(i * A + j));
        at::<V, M>(&col, &mut r);
        for (i, ri) in r.iter().enumerate() {
            u[i][j] = *ri;
        }
    }
    for (i, ui) in u.iter().enumerate().take(rows) {
        at::<V, M>(ui, &mut r);
        row(i, &r);
    }
}

/// The portable body of every ISA's input transform (`M` = m, `A` = α = m + 2), on `V::N`
/// lanes.
///
/// # Safety
/// The ISA of `V` is available; `src` is readable at `base[l] + i * pw + j` for `l < V::N`,
/// `i, j < α`; `dst` is writable at `ξ * dst_stride + l` for `ξ < α²`, `l < V::N`.
#[inline(always)]
pub unsafe fn input<V: Vector, const M: usize, const A: usize>(p: &InputArgs) {
    // SAFETY: the ISA is available (caller's contract).
    let (idx, zero) = unsafe { (V::index(&p.base), V::zero()) };
    input_tile::<V, M, A>(
        zero,
        // SAFETY: inside every lane's window (caller's contract).
        |i, j| unsafe { V::gather(p.src.add(i * p.pw + j), idx) },
        // SAFETY: `ξ < α²`, `N` lanes: writable by the caller's contract.
        |xi, v| unsafe { v.store(p.dst.add(xi * p.dst_stride)) },
    );
}

/// The portable body of every ISA's output transform, on `V::N` lanes.
///
/// # Safety
/// The ISA of `V` is available; `count <= V::N`; `src` is readable at `ξ * src_stride + l` for
/// `ξ < α²`, `l < V::N`; `dst` is writable at `base[l] + r * pw + c` for `l < count`,
/// `r, c < m`.
#[inline(always)]
pub unsafe fn output<V: Vector, const M: usize, const A: usize>(p: &OutputArgs) {
    // SAFETY: the ISA is available (caller's contract).
    let zero = unsafe { V::zero() };
    let mut y = [[0.0f32; LANES]; M];
    output_tile::<V, M, A>(
        zero,
        // SAFETY: rows `ξ < α²` hold `N` readable lanes (caller's contract).
        |xi| unsafe { V::load(p.src.add(xi * p.src_stride)) },
        M,
        |i, r| {
            for (c, rc) in r.iter().enumerate() {
                // SAFETY: `y[c]` holds `LANES >= N` floats.
                unsafe { rc.store(y[c].as_mut_ptr()) };
            }
            for l in 0..p.count {
                for (c, yc) in y.iter().enumerate() {
                    // SAFETY: `l < count`, `i, c < m`: writable by the caller's contract.
                    unsafe { *p.dst.add(p.base[l] as usize + i * p.pw + c) = yc[l] };
                }
            }
        },
    );
}

/// The portable body of every ISA's epilogue store.
///
/// # Safety
/// `src` is readable and `out` readable and writable for `len` floats; they do not overlap.
#[inline(always)]
pub unsafe fn store(p: &StoreArgs) {
    // SAFETY: caller's contract.
    let (src, out) = unsafe {
        (core::slice::from_raw_parts(p.src, p.len), core::slice::from_raw_parts_mut(p.out, p.len))
    };
    match (p.accumulate, p.relu) {
        (false, false) => out.iter_mut().zip(src).for_each(|(o, s)| *o = s + p.bias),
        (false, true) => out.iter_mut().zip(src).for_each(|(o, s)| *o = (s + p.bias).max(0.0)),
        (true, false) => out.iter_mut().zip(src).for_each(|(o, s)| *o += s + p.bias),
        (true, true) => out.iter_mut().zip(src).for_each(|(o, s)| *o = (s + p.bias + *o).max(0.0)),
    }
}

/// Defines the three input and output transforms of an ISA (`WINOGRAD`) as wrappers around
/// [`input`] and [`output`] on the vector type `$v`, carrying the ISA's `#[target_feature]` attribute.
macro_rules! winograd_kernels {
    ($(#[$attr:meta])* vector = $v:ty) => {
        use $crate::arch::winograd::{self as wg, InputArgs, OutputArgs};

        /// # Safety
        /// See [`wg::input`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_in2(p: &InputArgs) {
            // SAFETY: the caller upholds `wg::input`'s contract.
            unsafe { wg::input::<$v, 2, 4>(p) }
        }
        /// # Safety
        /// See [`wg::input`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_in4(p: &InputArgs) {
            // SAFETY: the caller upholds `wg::input`'s contract.
            unsafe { wg::input::<$v, 4, 6>(p) }
        }
        /// # Safety
        /// See [`wg::input`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_in6(p: &InputArgs) {
            // SAFETY: the caller upholds `wg::input`'s contract.
            unsafe { wg::input::<$v, 6, 8>(p) }
        }
        /// # Safety
        /// See [`wg::output`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_out2(p: &OutputArgs) {
            // SAFETY: the caller upholds `wg::output`'s contract.
            unsafe { wg::output::<$v, 2, 4>(p) }
        }
        /// # Safety
        /// See [`wg::output`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_out4(p: &OutputArgs) {
            // SAFETY: the caller upholds `wg::output`'s contract.
            unsafe { wg::output::<$v, 4, 6>(p) }
        }
        /// # Safety
        /// See [`wg::output`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_out6(p: &OutputArgs) {
            // SAFETY: the caller upholds `wg::output`'s contract.
            unsafe { wg::output::<$v, 6, 8>(p) }
        }

        /// # Safety
        /// See [`wg::store`]; the ISA is available.
        $(#[$attr])*
        unsafe fn wino_store(p: &wg::StoreArgs) {
            // SAFETY: the caller upholds `wg::store`'s contract.
            unsafe { wg::store(p) }
        }

        const WINOGRAD: [$crate::arch::WinogradKernels; 3] = [
            $crate::arch::WinogradKernels { lanes: <$v as wg::Vector>::N, input: wino_in2, output: wino_out2, store: wino_store },
            $crate::arch::WinogradKernels { lanes: <$v as wg::Vector>::N, input: wino_in4, output: wino_out4, store: wino_store },
            $crate::arch::WinogradKernels { lanes: <$v as wg::Vector>::N, input: wino_in6, output: wino_out6, store: wino_store },
        ];
    };
}
pub(crate) use winograd_kernels;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::scalar::F32x8;

    /// The sparse formulas of `bt` and `at` apply exactly the documented matrices.
    #[test]
    fn formulas_match_matrices() {
        fn lanes(seed: usize) -> F32x8 {
            let v: [f32; 8] = core::array::from_fn(|l| ((seed * 31 + l * 17) % 23) as f32 - 11.0);
            // SAFETY: the scalar ISA is always available and `v` holds 8 floats.
            unsafe { F32x8::load(v.as_ptr()) }
        }
        fn check<const M: usize, const A: usize>(bt_m: &[[f32; A]; A], at_m: &[[f32; A]; M]) {
            let d: [F32x8; A] = core::array::from_fn(lanes);
            let (mut r, mut y) = ([d[0]; A], [d[0]; M]);
            bt::<F32x8, M>(&d, &mut r);
            at::<F32x8, M>(&d, &mut y);
            let get = |v: F32x8| {
                let mut out = [0.0f32; 8];
                // SAFETY: `out` holds 8 floats.
                unsafe { v.store(out.as_mut_ptr()) };
                out
            };
            for (rows, got) in [(&bt_m[..], &r[..]), (&at_m[..], &y[..])] {
                for (row, g) in rows.iter().zip(got) {
                    for (l, g) in get(*g).iter().enumerate() {
                        let want: f32 = row.iter().zip(&d).map(|(c, x)| c * get(*x)[l]).sum();
                        assert!((g - want).abs() <= 1e-4 * (1.0 + want.abs()), "F({M},3)");
                    }
                }
            }
        }
        check::<2, 4>(&BT2, &AT2);
        check::<4, 6>(&BT4, &AT4);
        check::<6, 8>(&BT6, &AT6);
    }
}
