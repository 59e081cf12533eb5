//! Image preprocessing that reproduces torchvision's standard evaluation transform on PIL
//! images, so that a model sees the inputs it was trained and validated on:
//!
//! ```text
//! Image.open(p).convert("RGB") -> Resize(resize) -> CenterCrop(crop) -> ToTensor() -> Normalize(mean, std)
//! ```
//!
//! `Resize` on a PIL image is PIL's `Image.resize(size, BILINEAR)`: a separable two-pass filter
//! (one direction into an 8-bit rounded intermediate, then the other) with a triangle kernel
//! whose support widens with the downscale factor (antialiasing) and fixed-point coefficients.
//! [`resize_bilinear_pil`] reimplements that integer arithmetic and Pillow 13's choice of pass
//! order (the version the parity fixtures were made with), so for a given decoded image the
//! result is bit-exact. PNG decoding is exact in any correct decoder. JPEGs are decoded by
//! libjpeg-turbo's own decoder (PIL's), because JPEG decoding is not fully specified: the
//! pure-Rust decoders (zune-jpeg, jpeg-decoder) round their IDCT and chroma upsampling
//! differently and land up to 3-4 levels away from PIL on real photographs.

use std::io::Cursor;
use std::ops::Range;
use std::path::Path;

use shortcut_runtime::Preprocess;

/// Largest decoded image accepted, in bytes of 8-bit RGB (the decoders' own allocation limit
/// is of the same order): a guard against decompression bombs, not a practical limit.
pub const MAX_DECODED_BYTES: u64 = 512 << 20;

/// Why an image could not be prepared. Every message starts with the file's name.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("{path}: cannot read: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not a JPEG or PNG image")]
    Format { path: String },
    #[error("{path}: cannot decode {format}: {reason}")]
    Decode { path: String, format: &'static str, reason: String },
    #[error("{path}: image is {width}x{height}, larger than this tool accepts")]
    TooLarge { path: String, width: usize, height: usize },
    #[error("invalid preprocessing: {0}")]
    Settings(String),
}

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `RGBRGB...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps interleaved RGB bytes; `None` when `data` is not `width * height * 3` long.
    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Option<RgbImage> {
        let len = width.checked_mul(height)?.checked_mul(3)?;
        (data.len() == len).then_some(RgbImage { width, height, data })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The interleaved RGB bytes.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    /// The pixel at column `x`, row `y`.
    pub fn pixel(&self, x: usize, y: usize) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// The bytes in planar CHW order (what `ToTensor` lays out, before scaling).
    pub fn to_chw(&self) -> Vec<u8> {
        let plane = self.width * self.height;
        let mut out = vec![0u8; plane * 3];
        for (i, px) in self.data.chunks_exact(3).enumerate() {
            out[i] = px[0];
            out[plane + i] = px[1];
            out[2 * plane + i] = px[2];
        }
        out
    }
}

/// True for the file names [`load_image`] is meant for (`.jpg`, `.jpeg`, `.png`, any case),
/// which is how directories are filtered.
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Reads and decodes a JPEG or PNG file to RGB as PIL's `Image.open(p).convert("RGB")` does.
/// The format is told by the file's content, not its name.
pub fn load_image(path: &Path) -> Result<RgbImage, PreprocessError> {
    let shown = path.display().to_string();
    let bytes =
        std::fs::read(path).map_err(|error| PreprocessError::Io { path: shown.clone(), error })?;
    decode_image(&shown, &bytes)
}

/// Decodes JPEG or PNG bytes to RGB like PIL's `convert("RGB")`: grayscale is replicated to
/// three channels, alpha is dropped (not composited), 16-bit samples keep their high byte,
/// except 16-bit grayscale, which PIL clips to 255 (its `I;16` to `L` conversion), and CMYK
/// JPEGs get PIL's naive CMYK to RGB. EXIF orientation and ICC profiles are ignored, as
/// torchvision's loader ignores them. `name` stands for the file in errors.
pub fn decode_image(name: &str, bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        decode_jpeg(name, bytes)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(name, bytes)
    } else {
        Err(PreprocessError::Format { path: name.to_string() })
    }
}

fn decode_png(name: &str, bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    let decode_err =
        |reason: String| PreprocessError::Decode { path: name.to_string(), format: "PNG", reason };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), image::ImageFormat::Png);
    let mut limits = image::Limits::default();
    // The decoder may hold RGBA or 16-bit samples before conversion: allow for that.
    limits.max_alloc = Some(MAX_DECODED_BYTES * 8 / 3);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| decode_err(e.to_string()))?;
    let (width, height) = image::ImageDecoder::dimensions(&decoder);
    check_size(name, "PNG", width as usize, height as usize)?;
    let decoded =
        image::DynamicImage::from_decoder(decoder).map_err(|e| decode_err(e.to_string()))?;
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let data = to_rgb_like_pil(decoded);
    RgbImage::from_raw(w, h, data)
        .ok_or_else(|| decode_err("decoder returned a short buffer".into()))
}

/// Refuses empty images and ones over [`MAX_DECODED_BYTES`] before anything is allocated.
fn check_size(
    name: &str,
    format: &'static str,
    width: usize,
    height: usize,
) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        let reason = "the image is empty".into();
        return Err(PreprocessError::Decode { path: name.to_string(), format, reason });
    }
    if (width as u64).saturating_mul(height as u64).saturating_mul(3) > MAX_DECODED_BYTES {
        return Err(PreprocessError::TooLarge { path: name.to_string(), width, height });
    }
    Ok(())
}

/// A byte source for libjpeg that notes when the decoder wanted more than the file holds:
/// libjpeg then pads the image with grey and only warns, where PIL refuses the file
/// ("image file is truncated"), so we refuse it too.
struct EofWatch<'a> {
    data: &'a [u8],
    ran_out: &'a std::cell::Cell<bool>,
}

impl std::io::Read for EofWatch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.ran_out.set(true);
        }
        Ok(n)
    }
}

impl std::io::BufRead for EofWatch<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.data.is_empty() {
            self.ran_out.set(true);
        }
        Ok(self.data)
    }

    fn consume(&mut self, amt: usize) {
        self.data = &self.data[amt.min(self.data.len())..];
    }
}

/// Decodes a JPEG with libjpeg-turbo's decoder (through `mozjpeg`), with PIL's settings:
/// ISLOW IDCT and fancy upsampling (the defaults), RGB output, or CMYK for four-component
/// files, converted the way PIL does.
fn decode_jpeg(name: &str, bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    let ran_out = std::cell::Cell::new(false);
    // libjpeg reports fatal errors by unwinding out of its callbacks (mozjpeg's documented
    // contract): catch that here so that a corrupt file is an error, never a crash.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_libjpeg(name, bytes, &ran_out)
    }));
    let img = match result {
        Ok(decoded) => decoded?,
        Err(payload) => {
            let reason = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".into());
            let reason = reason.strip_prefix("libjpeg fatal error: ").unwrap_or(&reason);
            return Err(jpeg_error(name, reason.to_string()));
        }
    };
    if ran_out.get() {
        return Err(jpeg_error(name, "the file is truncated".into()));
    }
    Ok(img)
}

fn jpeg_error(name: &str, reason: String) -> PreprocessError {
    PreprocessError::Decode { path: name.to_string(), format: "JPEG", reason }
}

/// The libjpeg calls of [`decode_jpeg`], which may unwind.
fn run_libjpeg(
    name: &str,
    bytes: &[u8],
    ran_out: &std::cell::Cell<bool>,
) -> Result<RgbImage, PreprocessError> {
    use mozjpeg::ColorSpace;
    let io = |e: std::io::Error| jpeg_error(name, e.to_string());
    let decoder = mozjpeg::Decompress::new_reader(EofWatch { data: bytes, ran_out }).map_err(io)?;
    let (width, height) = decoder.size();
    check_size(name, "JPEG", width, height)?;
    let cmyk = matches!(decoder.color_space(), ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK);
    let mut started = if cmyk {
        decoder.to_colorspace(ColorSpace::JCS_CMYK).map_err(io)?
    } else {
        decoder.rgb().map_err(io)?
    };
    let pixels: Vec<u8> = started.read_scanlines().map_err(io)?;
    let (width, height) = (started.width(), started.height());
    let data = if cmyk { cmyk_to_rgb_like_pil(&pixels) } else { pixels };
    RgbImage::from_raw(width, height, data)
        .ok_or_else(|| jpeg_error(name, "decoder returned a short buffer".into()))
}

/// PIL reads four-component JPEGs as Adobe-style inverted CMYK (`CMYK;I`), and its
/// `convert("RGB")` is `255 - k` scaled by `1 - c` (no colour management).
fn cmyk_to_rgb_like_pil(cmyk: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    cmyk.chunks_exact(4)
        .flat_map(|p| {
            // Undo the inversion: PIL's values are 255 - libjpeg's.
            let nk = u32::from(p[3]);
            let ch = |v: u8| (nk.saturating_sub(muldiv255(255 - u32::from(v), nk))) as u8;
            [ch(p[0]), ch(p[1]), ch(p[2])]
        })
        .collect()
}

/// PIL's `convert("RGB")` for each layout the JPEG and PNG decoders produce.
fn to_rgb_like_pil(img: image::DynamicImage) -> Vec<u8> {
    use image::DynamicImage as D;
    fn map<T: Copy, const N: usize>(src: &[T], f: impl Fn(&[T; N]) -> [u8; 3]) -> Vec<u8> {
        src.chunks_exact(N)
            .flat_map(|p| f(p.try_into().expect("chunks_exact gives N samples")))
            .collect()
    }
    let hi = |v: u16| (v >> 8) as u8;
    match img {
        D::ImageRgb8(b) => b.into_raw(),
        D::ImageRgba8(b) => map(b.as_raw(), |&[r, g, b, _]: &[u8; 4]| [r, g, b]),
        D::ImageLuma8(b) => map(b.as_raw(), |&[l]: &[u8; 1]| [l; 3]),
        D::ImageLumaA8(b) => map(b.as_raw(), |&[l, _]: &[u8; 2]| [l; 3]),
        D::ImageRgb16(b) => map(b.as_raw(), |&[r, g, b]: &[u16; 3]| [hi(r), hi(g), hi(b)]),
        D::ImageRgba16(b) => map(b.as_raw(), |&[r, g, b, _]: &[u16; 4]| [hi(r), hi(g), hi(b)]),
        D::ImageLuma16(b) => map(b.as_raw(), |&[l]: &[u16; 1]| [l.min(255) as u8; 3]),
        D::ImageLumaA16(b) => map(b.as_raw(), |&[l, _]: &[u16; 2]| [hi(l); 3]),
        other => other.to_rgb8().into_raw(),
    }
}

/// torchvision's `Resize(size)` output size for an int `size`: the shorter side becomes
/// `size`, the longer `int(size * long / short)` (truncated). Returns `(width, height)`.
pub fn resized_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    if short == 0 {
        return (width, height);
    }
    // The same IEEE double operations as Python's `int(size * long / short)`.
    let new_long = (size as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// Fixed-point fraction bits of PIL's 8-bit resampling coefficients (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One output pixel's source window and its fixed-point weights.
struct Taps {
    start: usize,
    weights: Vec<i64>,
}

/// PIL's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear (triangle) filter,
/// with the same double-precision steps so every coefficient rounds the same way; only for
/// the output positions in `range` (each is computed on its own).
fn coefficients(in_size: usize, out_size: usize, range: Range<usize>) -> Vec<Taps> {
    // PIL computes `in1 - in0` in single precision before widening.
    let scale = f64::from(in_size as f32) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // the triangle's support is 1, widened when downscaling
    let ss = 1.0 / filterscale;
    range
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero; clamping to 0 afterwards makes that a floor.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
            let count = xmax.saturating_sub(xmin);
            let raw: Vec<f64> = (0..count)
                .map(|x| {
                    let t = (((x + xmin) as f64 - center) + 0.5) * ss;
                    let t = t.abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let total: f64 = raw.iter().sum();
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if total != 0.0 { w / total } else { w };
                    if w < 0.0 {
                        (-0.5 + w * one) as i64
                    } else {
                        (0.5 + w * one) as i64
                    }
                })
                .collect();
            Taps { start: xmin, weights }
        })
        .collect()
}

/// PIL's `clip8`: drop the fraction bits and saturate to a byte.
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i64 = 1 << (PRECISION_BITS - 1);

/// PIL's `Image.resize((width, height), Image.BILINEAR)` on an RGB image, bit for bit: two
/// separable passes with an 8-bit rounded intermediate, a pass skipped when its dimension
/// does not change. Pillow 13 runs the vertical pass first when the height shrinks by more
/// than twice as many pixels as the width (Pillow PR 9549), else the horizontal pass first;
/// the order changes the rounding of the intermediate, so it is reproduced too. A zero target
/// side gives an empty image.
pub fn resize_bilinear_pil(img: &RgbImage, width: usize, height: usize) -> RgbImage {
    resize_window(img, width, height, 0..width, 0..height)
}

/// The `cols` x `rows` window of [`resize_bilinear_pil`]`(img, width, height)`, computed
/// alone: every output pixel depends only on its own coefficients, so cropping after a full
/// resize gives the same bytes, while the work and memory are the window's.
fn resize_window(
    img: &RgbImage,
    width: usize,
    height: usize,
    cols: Range<usize>,
    rows: Range<usize>,
) -> RgbImage {
    let (cols, rows) = (cols.start..cols.end.min(width), rows.start..rows.end.min(height));
    let (out_w, out_h) = (cols.len(), rows.len());
    if out_w == 0 || out_h == 0 || img.width == 0 || img.height == 0 {
        return RgbImage { width: out_w, height: out_h, data: vec![0u8; out_w * out_h * 3] };
    }
    let need_horizontal = width != img.width;
    let need_vertical = height != img.height;
    let vertical_first = need_horizontal
        && need_vertical
        && height < img.height
        && (img.height - height) as i64 > 2 * (img.width as i64 - width as i64);
    // Identity passes are the identity taps (one weight of 1.0 at the same index).
    let taps = |in_size: usize, out_size: usize, need: bool, range: &Range<usize>| {
        if need {
            coefficients(in_size, out_size, range.clone())
        } else {
            range.clone().map(|i| Taps { start: i, weights: vec![1 << PRECISION_BITS] }).collect()
        }
    };
    let horiz = taps(img.width, width, need_horizontal, &cols);
    let vert = taps(img.height, height, need_vertical, &rows);
    // The source rows and columns the window reads.
    let span = |t: &[Taps]| {
        let first = t.first().map_or(0, |t| t.start);
        first..t.last().map_or(first, |t| t.start + t.weights.len())
    };
    if vertical_first {
        let src_cols = span(&horiz);
        let tmp = vertical_pass(img, &vert, 0, src_cols.clone());
        horizontal_pass(&tmp, &horiz, 0..out_h, src_cols.start)
    } else {
        let src_rows = span(&vert);
        let tmp = horizontal_pass(img, &horiz, src_rows.clone(), 0);
        vertical_pass(&tmp, &vert, src_rows.start, 0..out_w)
    }
}

/// Resamples each of `rows` of `src` horizontally through `taps`; `src` column 0 is source
/// column `first_col`.
fn horizontal_pass(
    src: &RgbImage,
    taps: &[Taps],
    rows: Range<usize>,
    first_col: usize,
) -> RgbImage {
    let width = taps.len();
    let height = rows.len();
    let mut out = vec![0u8; width * height * 3];
    for (row_out, y) in out.chunks_exact_mut(width * 3).zip(rows) {
        let row = &src.data[y * src.width * 3..(y + 1) * src.width * 3];
        for (px, t) in row_out.chunks_exact_mut(3).zip(taps) {
            let mut acc = [HALF; 3];
            let start = (t.start - first_col) * 3;
            for (s, &k) in row[start..].chunks_exact(3).zip(&t.weights) {
                acc[0] += i64::from(s[0]) * k;
                acc[1] += i64::from(s[1]) * k;
                acc[2] += i64::from(s[2]) * k;
            }
            px.copy_from_slice(&acc.map(clip8));
        }
    }
    RgbImage { width, height, data: out }
}

/// Resamples columns `cols` of `src` vertically through `taps`; `src` row 0 is source row
/// `first_row`.
fn vertical_pass(src: &RgbImage, taps: &[Taps], first_row: usize, cols: Range<usize>) -> RgbImage {
    let stride = src.width * 3;
    let width = cols.len();
    let mut out = vec![0u8; width * 3 * taps.len()];
    let mut acc = vec![0i64; width * 3];
    for (row_out, t) in out.chunks_exact_mut(width * 3).zip(taps) {
        acc.fill(HALF);
        for (i, &k) in t.weights.iter().enumerate() {
            let y = t.start + i - first_row;
            let row = &src.data[y * stride + cols.start * 3..y * stride + cols.end * 3];
            for (a, &s) in acc.iter_mut().zip(row) {
                *a += i64::from(s) * k;
            }
        }
        for (o, &a) in row_out.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    RgbImage { width, height: taps.len(), data: out }
}

/// torchvision's crop offset along one side: `int(round((size - crop) / 2))` (Python rounds
/// halves to even), or minus the left/top zero padding when the crop is larger than the image.
fn crop_offset(size: usize, crop: usize) -> isize {
    if size >= crop {
        ((size - crop) as f64 / 2.0).round_ties_even() as isize
    } else {
        -(((crop - size) / 2) as isize)
    }
}

/// torchvision's `CenterCrop(crop)`: a `crop` x `crop` window centred as torchvision rounds it,
/// padded with black where the image is smaller.
pub fn center_crop(img: &RgbImage, crop: usize) -> RgbImage {
    let top = crop_offset(img.height, crop);
    let left = crop_offset(img.width, crop);
    let mut data = vec![0u8; crop * crop * 3];
    for (y, row) in data.chunks_exact_mut(crop * 3).enumerate() {
        let sy = y as isize + top;
        if sy < 0 || sy as usize >= img.height {
            continue;
        }
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let sx = x as isize + left;
            if sx >= 0 && (sx as usize) < img.width {
                let i = (sy as usize * img.width + sx as usize) * 3;
                px.copy_from_slice(&img.data[i..i + 3]);
            }
        }
    }
    RgbImage { width: crop, height: crop, data }
}

/// Resize then center crop, still 8-bit: what `ToTensor` would see (times 255). Only the
/// crop is resampled (the same bytes as resizing everything, then cropping), so a
/// panorama resized to a huge long side costs no more than its crop.
pub fn resize_and_crop(img: &RgbImage, resize: usize, crop: usize) -> RgbImage {
    let (w, h) = resized_size(img.width, img.height, resize);
    let (top, left) = (crop_offset(h, crop), crop_offset(w, crop));
    let window = |offset: isize, size: usize| {
        let start = offset.max(0) as usize;
        start..((offset + crop as isize).max(0) as usize).min(size).max(start)
    };
    let (cols, rows) = (window(left, w), window(top, h));
    let part = resize_window(img, w, h, cols.clone(), rows.clone());
    if cols.len() == crop && rows.len() == crop {
        return part;
    }
    // The crop is larger than the resized image: pad with black as torchvision does.
    let mut data = vec![0u8; crop * crop * 3];
    let (dx, dy) = ((cols.start as isize - left) as usize, (rows.start as isize - top) as usize);
    for (y, src) in part.data.chunks_exact(part.width.max(1) * 3).enumerate() {
        let at = ((y + dy) * crop + dx) * 3;
        data[at..at + src.len()].copy_from_slice(src);
    }
    RgbImage { width: crop, height: crop, data }
}

/// `ToTensor` + `Normalize`: CHW f32, each value `(v / 255 - mean[c]) / std[c]` computed in
/// single precision as torch does. `mean` and `std` need three entries.
pub fn normalize(img: &RgbImage, mean: &[f32], std: &[f32]) -> Vec<f32> {
    let plane = img.width * img.height;
    let mut out = vec![0f32; plane * 3];
    for (c, dst) in out.chunks_exact_mut(plane.max(1)).take(3).enumerate() {
        let (m, s) = (mean.get(c).copied().unwrap_or(0.0), std.get(c).copied().unwrap_or(1.0));
        for (o, px) in dst.iter_mut().zip(img.data.chunks_exact(3)) {
            *o = (f32::from(px[c]) / 255.0 - m) / s;
        }
    }
    out
}

/// Checks a transform for RGB images: sizes and three-entry mean/std, and a crop whose
/// tensor stays within [`MAX_DECODED_BYTES`].
pub fn check_settings(p: &Preprocess) -> Result<(), PreprocessError> {
    p.validate(3).map_err(PreprocessError::Settings)?;
    if (p.crop as u64).saturating_mul(p.crop as u64).saturating_mul(3 * 4) > MAX_DECODED_BYTES {
        return Err(PreprocessError::Settings(format!("crop {} is too large", p.crop)));
    }
    Ok(())
}

/// The whole transform on a decoded image: `[3, crop, crop]` f32, ready for the network.
pub fn prepare(img: &RgbImage, p: &Preprocess) -> Result<Vec<f32>, PreprocessError> {
    check_settings(p)?;
    Ok(normalize(&resize_and_crop(img, p.resize, p.crop), &p.mean, &p.std))
}

/// Loads an image file and applies the whole transform: `[3, crop, crop]` f32.
pub fn preprocess(path: &Path, p: &Preprocess) -> Result<Vec<f32>, PreprocessError> {
    check_settings(p)?;
    prepare(&load_image(path)?, p)
}

/// Loads an image file and resizes and crops it, without scaling or normalising: the 8-bit
/// values that torchvision's `ToTensor` output is `/ 255` of (what the parity fixtures hold).
pub fn preprocess_u8(path: &Path, resize: usize, crop: usize) -> Result<RgbImage, PreprocessError> {
    check_settings(&Preprocess { resize, crop, ..Preprocess::imagenet() })?;
    Ok(resize_and_crop(&load_image(path)?, resize, crop))
}
