//! ResNet-18/50/ResNeXt and CIFAR layer shapes shared by the convolution benches.

use shortcut_core::Conv2dGeometry;

/// (name, geometry, input height = width).
pub const LAYERS: [(&str, Conv2dGeometry, usize); 30] = [
    ("stem_7x7s2_3-64_224", Conv2dGeometry::square(3, 64, 7, 2, 3, 1), 224),
    ("1x1_256-64_56", Conv2dGeometry::square(256, 64, 1, 1, 0, 1), 56),
    ("1x1_64-256_56", Conv2dGeometry::square(64, 256, 1, 1, 0, 1), 56),
    ("3x3_64-64_56", Conv2dGeometry::square(64, 64, 3, 1, 1, 1), 56),
    ("3x3_128-128_28", Conv2dGeometry::square(128, 128, 3, 1, 1, 1), 28),
    ("3x3s2_128-128_56", Conv2dGeometry::square(128, 128, 3, 2, 1, 1), 56),
    ("3x3s2_128-128_28", Conv2dGeometry::square(128, 128, 3, 2, 1, 1), 28),
    ("3x3_256-256_14", Conv2dGeometry::square(256, 256, 3, 1, 1, 1), 14),
    ("1x1_1024-256_14", Conv2dGeometry::square(1024, 256, 1, 1, 0, 1), 14),
    ("1x1_1024-512_14", Conv2dGeometry::square(1024, 512, 1, 1, 0, 1), 14),
    ("1x1_256-1024_14", Conv2dGeometry::square(256, 1024, 1, 1, 0, 1), 14),
    ("1x1_512-2048_7", Conv2dGeometry::square(512, 2048, 1, 1, 0, 1), 7),
    ("1x1_2048-512_7", Conv2dGeometry::square(2048, 512, 1, 1, 0, 1), 7),
    ("1x1s2_256-512_56", Conv2dGeometry::square(256, 512, 1, 2, 0, 1), 56),
    ("1x1s2_512-1024_28", Conv2dGeometry::square(512, 1024, 1, 2, 0, 1), 28),
    ("1x1s2_1024-2048_14", Conv2dGeometry::square(1024, 2048, 1, 2, 0, 1), 14),
    ("3x3s2_256-256_28", Conv2dGeometry::square(256, 256, 3, 2, 1, 1), 28),
    ("3x3s2_256-256_14", Conv2dGeometry::square(256, 256, 3, 2, 1, 1), 14),
    ("3x3_512-512_7", Conv2dGeometry::square(512, 512, 3, 1, 1, 1), 7),
    ("stem_3x3_3-16_32", Conv2dGeometry::square(3, 16, 3, 1, 1, 1), 32),
    ("3x3_16-16_32", Conv2dGeometry::square(16, 16, 3, 1, 1, 1), 32),
    ("3x3s2_16-32_32", Conv2dGeometry::square(16, 32, 3, 2, 1, 1), 32),
    ("3x3_64-64_8", Conv2dGeometry::square(64, 64, 3, 1, 1, 1), 8),
    ("3x3g32_128-128_56", Conv2dGeometry::square(128, 128, 3, 1, 1, 32), 56),
    ("3x3g32_256-256_28", Conv2dGeometry::square(256, 256, 3, 1, 1, 32), 28),
    ("3x3g32_512-512_14", Conv2dGeometry::square(512, 512, 3, 1, 1, 32), 14),
    ("3x3g32_1024-1024_7", Conv2dGeometry::square(1024, 1024, 3, 1, 1, 32), 7),
    ("3x3g32s2_256-256_56", Conv2dGeometry::square(256, 256, 3, 2, 1, 32), 56),
    ("3x3g32s2_512-512_28", Conv2dGeometry::square(512, 512, 3, 2, 1, 32), 28),
    ("3x3g32s2_1024-1024_14", Conv2dGeometry::square(1024, 1024, 3, 2, 1, 32), 14),
];
