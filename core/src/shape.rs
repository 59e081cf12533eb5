//! Shapes and the output-size arithmetic of PyTorch's `Conv2d` and `MaxPool2d`.

/// An NCHW activation shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(n: usize, c: usize, h: usize, w: usize) -> Self {
        Shape { n, c, h, w }
    }

    /// Number of elements, or `None` on overflow.
    pub fn checked_len(&self) -> Option<usize> {
        self.n.checked_mul(self.c)?.checked_mul(self.h)?.checked_mul(self.w)
    }

    /// Number of elements; callers validate shapes with [`Shape::checked_len`] first.
    pub fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements in one image (C x H x W).
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Elements in one channel plane (H x W).
    pub fn plane_len(&self) -> usize {
        self.h * self.w
    }
}

/// Output length of a sliding window along one axis, as PyTorch computes it
/// (`floor((size + 2 * pad - kernel) / stride) + 1`, dilation 1, `ceil_mode=False`).
/// `None` when the padded input is smaller than the kernel or the stride is zero.
pub fn window_output_len(size: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = size.checked_add(2 * pad)?;
    if stride == 0 || kernel == 0 || padded < kernel {
        return None;
    }
    Some((padded - kernel) / stride + 1)
}

/// The geometry of one 2-D convolution (dilation 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dGeometry {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
    pub groups: usize,
}

impl Conv2dGeometry {
    /// A square-kernel convolution with equal stride and padding on both axes, as ResNets use.
    pub const fn square(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        groups: usize,
    ) -> Self {
        Conv2dGeometry {
            in_channels,
            out_channels,
            kernel_h: kernel,
            kernel_w: kernel,
            stride_h: stride,
            stride_w: stride,
            pad_h: pad,
            pad_w: pad,
            groups,
        }
    }

    /// Whether channel counts, groups, kernel and stride are consistent.
    pub fn is_valid(&self) -> bool {
        self.groups > 0
            && self.in_channels > 0
            && self.out_channels > 0
            && self.in_channels.is_multiple_of(self.groups)
            && self.out_channels.is_multiple_of(self.groups)
            && self.kernel_h > 0
            && self.kernel_w > 0
            && self.stride_h > 0
            && self.stride_w > 0
    }

    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    pub fn out_per_group(&self) -> usize {
        self.out_channels / self.groups
    }

    /// Weight tensor shape `[out, in / groups, kh, kw]`, PyTorch's layout.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels, self.in_per_group(), self.kernel_h, self.kernel_w]
    }

    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_per_group() * self.kernel_h * self.kernel_w
    }

    /// Output shape for an input shape, or `None` if the input does not fit.
    pub fn output_shape(&self, input: Shape) -> Option<Shape> {
        if input.c != self.in_channels {
            return None;
        }
        let h = window_output_len(input.h, self.kernel_h, self.stride_h, self.pad_h)?;
        let w = window_output_len(input.w, self.kernel_w, self.stride_w, self.pad_w)?;
        Some(Shape::new(input.n, self.out_channels, h, w))
    }

    /// Multiply-accumulates per image for an output of `out_h x out_w`.
    pub fn macs(&self, out_h: usize, out_w: usize) -> u64 {
        (self.out_channels * out_h * out_w) as u64
            * (self.in_per_group() * self.kernel_h * self.kernel_w) as u64
    }
}

/// Max-pool 3x3, stride 2, padding 1: the ImageNet stem pool.
pub const STEM_POOL: PoolGeometry = PoolGeometry { kernel: 3, stride: 2, pad: 1 };

/// A square max-pool window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGeometry {
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl PoolGeometry {
    pub fn output_shape(&self, input: Shape) -> Option<Shape> {
        // PyTorch requires pad <= kernel / 2.
        if self.pad * 2 > self.kernel {
            return None;
        }
        let h = window_output_len(input.h, self.kernel, self.stride, self.pad)?;
        let w = window_output_len(input.w, self.kernel, self.stride, self.pad)?;
        Some(Shape::new(input.n, input.c, h, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_len_matches_pytorch_formula() {
        // 224 -> 112 (7x7/2 pad 3) -> 56 (3x3/2 pad 1), and odd sizes.
        assert_eq!(window_output_len(224, 7, 2, 3), Some(112));
        assert_eq!(window_output_len(112, 3, 2, 1), Some(56));
        assert_eq!(window_output_len(37, 7, 2, 3), Some(19));
        assert_eq!(window_output_len(19, 3, 2, 1), Some(10));
        assert_eq!(window_output_len(1, 3, 1, 1), Some(1));
        assert_eq!(window_output_len(1, 3, 1, 0), None);
        assert_eq!(window_output_len(5, 3, 0, 0), None);
    }

    #[test]
    fn conv_geometry_rejects_bad_groups() {
        assert!(!Conv2dGeometry::square(6, 8, 3, 1, 1, 4).is_valid());
        assert!(Conv2dGeometry::square(8, 8, 3, 1, 1, 4).is_valid());
    }
}
