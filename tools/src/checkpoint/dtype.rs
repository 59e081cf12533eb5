//! Storage element types and their exact conversion to `f32`.

/// Element type of a tensor storage, as named by PyTorch storage classes or
/// safetensors dtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `float64` / `DoubleStorage`.
    F64,
    /// `float32` / `FloatStorage`.
    F32,
    /// IEEE half / `HalfStorage`.
    F16,
    /// bfloat16 / `BFloat16Storage`.
    BF16,
    /// `int64` / `LongStorage` (e.g. BatchNorm `num_batches_tracked`).
    I64,
    /// `int32` / `IntStorage`.
    I32,
    /// `int16` / `ShortStorage`.
    I16,
    /// `int8` / `CharStorage`.
    I8,
    /// `uint64` (safetensors only).
    U64,
    /// `uint32` (safetensors only).
    U32,
    /// `uint16` (safetensors only).
    U16,
    /// `uint8` / `ByteStorage` / untyped storage bytes.
    U8,
    /// `bool` / `BoolStorage`: any non-zero byte is true.
    Bool,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// The PyTorch dtype name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "float64",
            Dtype::F32 => "float32",
            Dtype::F16 => "float16",
            Dtype::BF16 => "bfloat16",
            Dtype::I64 => "int64",
            Dtype::I32 => "int32",
            Dtype::I16 => "int16",
            Dtype::I8 => "int8",
            Dtype::U64 => "uint64",
            Dtype::U32 => "uint32",
            Dtype::U16 => "uint16",
            Dtype::U8 => "uint8",
            Dtype::Bool => "bool",
        }
    }

    /// Maps a PyTorch storage class name (`FloatStorage`, …) to its dtype.
    pub fn from_storage_name(name: &str) -> Option<Dtype> {
        Some(match name {
            "FloatStorage" => Dtype::F32,
            "HalfStorage" => Dtype::F16,
            "BFloat16Storage" => Dtype::BF16,
            "DoubleStorage" => Dtype::F64,
            "LongStorage" => Dtype::I64,
            "IntStorage" => Dtype::I32,
            "ShortStorage" => Dtype::I16,
            "CharStorage" => Dtype::I8,
            "ByteStorage" | "UntypedStorage" => Dtype::U8,
            "BoolStorage" => Dtype::Bool,
            _ => return None,
        })
    }

    /// Converts one element (exactly `self.size()` bytes) to `f32`. Floats
    /// narrower than `f32` convert exactly; `f64` and wide integers round to
    /// nearest, as `tensor.float()` does.
    pub fn to_f32(self, b: &[u8], big_endian: bool) -> f32 {
        match self {
            Dtype::F64 => f64::from_le_bytes(load(b, big_endian)) as f32,
            Dtype::F32 => f32::from_le_bytes(load(b, big_endian)),
            Dtype::F16 => f16_to_f32(u16::from_le_bytes(load(b, big_endian))),
            Dtype::BF16 => bf16_to_f32(u16::from_le_bytes(load(b, big_endian))),
            Dtype::I64 => i64::from_le_bytes(load(b, big_endian)) as f32,
            Dtype::I32 => i32::from_le_bytes(load(b, big_endian)) as f32,
            Dtype::I16 => f32::from(i16::from_le_bytes(load(b, big_endian))),
            Dtype::I8 => f32::from(i8::from_le_bytes(load(b, false))),
            Dtype::U64 => u64::from_le_bytes(load(b, big_endian)) as f32,
            Dtype::U32 => u32::from_le_bytes(load(b, big_endian)) as f32,
            Dtype::U16 => f32::from(u16::from_le_bytes(load(b, big_endian))),
            Dtype::U8 => f32::from(u8::from_le_bytes(load(b, false))),
            Dtype::Bool => {
                if b.iter().any(|&x| x != 0) {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// Converts a contiguous run of elements, appending to `out`.
    pub fn extend_f32(self, bytes: &[u8], big_endian: bool, out: &mut Vec<f32>) {
        let size = self.size();
        out.reserve(bytes.len() / size);
        match (self, big_endian) {
            // The hot path for real checkpoints.
            (Dtype::F32, false) => {
                out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(load(c, false))))
            }
            _ => out.extend(bytes.chunks_exact(size).map(|c| self.to_f32(c, big_endian))),
        }
    }
}

/// Copies `b` into a little-endian array, reversing it for big-endian data.
/// Short input is zero-padded, so this never panics.
fn load<const N: usize>(b: &[u8], big_endian: bool) -> [u8; N] {
    let mut out = [0u8; N];
    if big_endian {
        for (dst, src) in out.iter_mut().zip(b.iter().rev()) {
            *dst = *src;
        }
    } else {
        for (dst, src) in out.iter_mut().zip(b) {
            *dst = *src;
        }
    }
    out
}

/// Exact IEEE 754 binary16 → binary32 conversion (every half is an f32),
/// including subnormals, infinities and NaN payloads.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal half: mant × 2^-24. Shift the leading one up to bit 10
            // to make it a normal f32 with exponent -14 - shift.
            let shift = mant.leading_zeros() - 21;
            let m = (mant << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (m << 13)
        }
        (0x1f, _) => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 112) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

/// Exact bfloat16 → f32 conversion: bfloat16 is the top half of an f32.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent definition of a half's value, computed in f64.
    fn f16_reference(h: u16) -> f64 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((h >> 10) & 0x1f);
        let mant = f64::from(h & 0x3ff);
        match exp {
            0 => sign * mant * 2f64.powi(-24),
            0x1f if mant == 0.0 => sign * f64::INFINITY,
            0x1f => f64::NAN,
            _ => sign * (1024.0 + mant) * 2f64.powi(exp - 25),
        }
    }

    #[test]
    fn f16_all_values_exact() {
        for h in 0..=u16::MAX {
            let got = f16_to_f32(h);
            let want = f16_reference(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
                // Payload and sign survive.
                assert_eq!(got.to_bits() >> 31, u32::from(h >> 15));
                assert_eq!((got.to_bits() >> 13) & 0x3ff, u32::from(h & 0x3ff));
            } else {
                assert_eq!(f64::from(got), want, "{h:#06x}");
                assert_eq!(got.is_sign_negative(), h & 0x8000 != 0, "{h:#06x}");
            }
        }
    }

    #[test]
    fn f16_known_values() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    }

    #[test]
    fn bf16_all_values_exact() {
        for h in 0..=u16::MAX {
            let got = bf16_to_f32(h);
            assert_eq!(got.to_bits(), u32::from(h) << 16);
        }
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
    }

    #[test]
    fn decode_endianness_and_ints() {
        let one_le = 1.0f32.to_le_bytes();
        let one_be = 1.0f32.to_be_bytes();
        assert_eq!(Dtype::F32.to_f32(&one_le, false), 1.0);
        assert_eq!(Dtype::F32.to_f32(&one_be, true), 1.0);
        assert_eq!(Dtype::I64.to_f32(&(-7i64).to_be_bytes(), true), -7.0);
        assert_eq!(Dtype::I8.to_f32(&[0xff], false), -1.0);
        assert_eq!(Dtype::Bool.to_f32(&[2], false), 1.0);
        assert_eq!(Dtype::F64.to_f32(&0.1f64.to_le_bytes(), false), 0.1f32);
        let mut out = Vec::new();
        Dtype::F16.extend_f32(&[0x00, 0x3c, 0x00, 0xc0], false, &mut out);
        assert_eq!(out, vec![1.0, -2.0]);
    }
}
