//! What a kernel does to its accumulators before storing them.

/// The fused tail of a convolution: `y = act(conv(x) + bias [+ y_prev])`.
///
/// With `accumulate`, the output buffer already holds the block's shortcut and the kernel adds
/// to it, so a residual block's last conv writes `relu(conv + bias + shortcut)` in one pass
/// without a separate add and without aliasing an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Epilogue {
    pub accumulate: bool,
    pub relu: bool,
}

impl Epilogue {
    pub const NONE: Epilogue = Epilogue { accumulate: false, relu: false };
    pub const RELU: Epilogue = Epilogue { accumulate: false, relu: true };

    /// Applies the epilogue to one accumulator (conv sum plus bias) given the previous output.
    #[inline(always)]
    pub fn apply(self, acc: f32, prev: f32) -> f32 {
        let v = if self.accumulate { acc + prev } else { acc };
        if self.relu {
            v.max(0.0)
        } else {
            v
        }
    }
}
