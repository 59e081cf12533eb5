//! The vector abstraction the portable kernels ([`super::winograd`], [`super::direct`]) are
//! written against; each ISA module implements it with its registers.

/// Lanes of the widest [`Vector`] (AVX-512).
pub const LANES: usize = 16;

/// A vector of `N` `f32` lanes of one ISA: all the portable kernels need.
///
/// Values exist only after an `unsafe` constructor whose caller guaranteed the ISA is
/// available, which is what makes the arithmetic methods safe.
pub trait Vector: Copy {
    const N: usize;
    /// Gather offsets for [`Vector::gather`], in floats; at most `i32::MAX` (x86 gathers
    /// take signed 32-bit offsets).
    type Index: Copy;
    /// # Safety
    /// The ISA is available.
    unsafe fn zero() -> Self;
    /// # Safety
    /// The ISA is available.
    unsafe fn index(base: &[u32; LANES]) -> Self::Index;
    /// Lane `l` is `p[idx[l]]`.
    ///
    /// # Safety
    /// The ISA is available and every `p + idx[l]` (`l < N`) is readable.
    unsafe fn gather(p: *const f32, idx: Self::Index) -> Self;
    /// # Safety
    /// The ISA is available and `p` is readable for `N` floats.
    unsafe fn load(p: *const f32) -> Self;
    /// # Safety
    /// `p` is writable for `N` floats.
    unsafe fn store(self, p: *mut f32);
    /// The first `n <= N` lanes from `p`, the rest zero.
    ///
    /// # Safety
    /// The ISA is available and `p` is readable for `n` floats.
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> Self {
        let mut t = [0.0f32; LANES];
        // SAFETY: `n <= N <= LANES` floats from `p` (contract) into `t`.
        unsafe {
            core::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
            Self::load(t.as_ptr())
        }
    }
    /// Stores the first `n <= N` lanes at `p`.
    ///
    /// # Safety
    /// `p` is writable for `n` floats.
    #[inline(always)]
    unsafe fn store_n(self, p: *mut f32, n: usize) {
        let mut t = [0.0f32; LANES];
        // SAFETY: `t` holds `LANES >= N` floats; `n` floats to `p` (contract).
        unsafe {
            self.store(t.as_mut_ptr());
            core::ptr::copy_nonoverlapping(t.as_ptr(), p, n);
        }
    }
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    /// # Safety
    /// The ISA is available.
    unsafe fn splat(x: f32) -> Self;
    fn max(self, o: Self) -> Self;
    /// `self * c`.
    fn scale(self, c: f32) -> Self;
    /// `self * c + o`.
    fn scale_add(self, c: f32, o: Self) -> Self;
    /// `self * b + o`, lane by lane (fused where the ISA has FMA).
    fn mul_add(self, b: Self, o: Self) -> Self;
    /// A hint to bring the cache line of `p` into L1; never faults, so `p` need not be
    /// readable. Does nothing unless the ISA has a prefetch instruction.
    ///
    /// # Safety
    /// The ISA is available.
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        let _ = p;
    }
}
