//! Reading and writing NumPy `.npy` files, the input/output format of `shortcut run`.
//!
//! Reading accepts format versions 1.0–3.0, the dtypes `f4`, `f8`, `i8`, `i4`
//! and `u1` (plus `b1` as `u1`) in either byte order, and Fortran-order arrays,
//! which are transposed to C order so callers only ever see row-major data.
//! Writing produces version 1.0 little-endian `f32` files atomically.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// An array read from a `.npy` file, in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions; empty for a 0-d array.
    pub shape: Vec<usize>,
    /// The elements, `shape.iter().product()` of them.
    pub data: NpyData,
}

/// Element storage of an [`NpyArray`], by dtype.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// `f4`.
    F32(Vec<f32>),
    /// `f8`.
    F64(Vec<f64>),
    /// `i8`.
    I64(Vec<i64>),
    /// `i4`.
    I32(Vec<i32>),
    /// `u1` (and `b1`, as 0/1).
    U8(Vec<u8>),
}

/// Why a `.npy` file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file could not be written; any existing file is left untouched.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A format error, with the file it is in ([`read_npy`]).
    #[error("{path}: {error}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: Box<NpyError>,
    },
    /// Does not start with `\x93NUMPY`.
    #[error("not a .npy file (no \\x93NUMPY magic)")]
    BadMagic,
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error("unsupported .npy format version {major}.{minor}")]
    UnsupportedVersion {
        /// Major version byte.
        major: u8,
        /// Minor version byte.
        minor: u8,
    },
    /// The file ends inside the header.
    #[error(".npy file is truncated: {0}")]
    Truncated(String),
    /// The header dictionary is malformed.
    #[error("invalid .npy header: {0}")]
    BadHeader(String),
    /// A dtype we do not read.
    #[error("unsupported .npy dtype {0} (supported: f4, f8, i8, i4, u1, b1; either byte order)")]
    UnsupportedDtype(String),
    /// The shape's element count overflows.
    #[error(".npy shape {0:?} has too many elements")]
    ShapeOverflow(Vec<usize>),
    /// The data section does not match the header.
    #[error(
        ".npy data is {actual} bytes but shape {shape:?} of {dtype} needs {expected} \
         (truncated or corrupt file)"
    )]
    DataLength {
        /// Declared shape.
        shape: Vec<usize>,
        /// Declared dtype.
        dtype: String,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// [`write_npy_f32`] got data that does not fill the shape.
    #[error("shape {shape:?} needs {expected} values but {actual} were given")]
    ShapeMismatch {
        /// Requested shape.
        shape: Vec<usize>,
        /// Its element count (saturated on overflow).
        expected: usize,
        /// Values given.
        actual: usize,
    },
}

/// Reads a `.npy` file; errors name the path.
pub fn read_npy(path: &Path) -> Result<NpyArray, NpyError> {
    let bytes = fs::read(path).map_err(|error| NpyError::Read { path: path.to_owned(), error })?;
    read_npy_bytes(&bytes)
        .map_err(|error| NpyError::InFile { path: path.to_owned(), error: Box::new(error) })
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Element type and byte order from a `descr` string.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    F32,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl Kind {
    fn size(self) -> usize {
        match self {
            Kind::F64 | Kind::I64 => 8,
            Kind::F32 | Kind::I32 => 4,
            Kind::U8 | Kind::Bool => 1,
        }
    }
}

/// Reads a `.npy` file held in memory.
pub fn read_npy_bytes(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    if !bytes.starts_with(MAGIC) {
        return Err(NpyError::BadMagic);
    }
    let (major, minor) = match bytes.get(6..8) {
        Some(&[major, minor]) => (major, minor),
        _ => return Err(NpyError::Truncated("no version bytes".into())),
    };
    let (header_start, header_len) = match (major, minor) {
        (1, 0) => {
            let b =
                bytes.get(8..10).ok_or_else(|| NpyError::Truncated("no header length".into()))?;
            (10, usize::from(u16::from_le_bytes([b[0], b[1]])))
        }
        (2 | 3, 0) => {
            let b =
                bytes.get(8..12).ok_or_else(|| NpyError::Truncated("no header length".into()))?;
            let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (12, usize::try_from(n).unwrap_or(usize::MAX))
        }
        _ => return Err(NpyError::UnsupportedVersion { major, minor }),
    };
    let header = bytes.get(header_start..).and_then(|r| r.get(..header_len)).ok_or_else(|| {
        NpyError::Truncated(format!("header of {header_len} bytes, file has {}", bytes.len()))
    })?;
    let data = bytes.get(header_start + header_len..).unwrap_or_default();
    // Versions 1 and 2 are latin-1, version 3 UTF-8; the keys and values we
    // accept are ASCII either way.
    let text: String = if major == 3 {
        std::str::from_utf8(header)
            .map_err(|_| NpyError::BadHeader("header is not UTF-8".into()))?
            .to_owned()
    } else {
        header.iter().map(|&b| char::from(b)).collect()
    };
    let header = parse_header(&text)?;

    let (kind, big_endian) = parse_descr(&header.descr)?;
    let shape = header.shape;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| NpyError::ShapeOverflow(shape.clone()))?;
    let expected =
        numel.checked_mul(kind.size()).ok_or_else(|| NpyError::ShapeOverflow(shape.clone()))?;
    if data.len() != expected {
        return Err(NpyError::DataLength {
            shape,
            dtype: header.descr,
            expected,
            actual: data.len(),
        });
    }

    let mut data = decode(kind, big_endian, data);
    if header.fortran_order && shape.len() > 1 {
        data = match data {
            NpyData::F32(v) => NpyData::F32(fortran_to_c(&v, &shape)),
            NpyData::F64(v) => NpyData::F64(fortran_to_c(&v, &shape)),
            NpyData::I64(v) => NpyData::I64(fortran_to_c(&v, &shape)),
            NpyData::I32(v) => NpyData::I32(fortran_to_c(&v, &shape)),
            NpyData::U8(v) => NpyData::U8(fortran_to_c(&v, &shape)),
        };
    }
    Ok(NpyArray { shape, data })
}

fn parse_descr(descr: &str) -> Result<(Kind, bool), NpyError> {
    let unsupported = || NpyError::UnsupportedDtype(format!("{descr:?}"));
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(unsupported)?;
    let code = chars.as_str();
    let kind = match code {
        "f4" => Kind::F32,
        "f8" => Kind::F64,
        "i8" => Kind::I64,
        "i4" => Kind::I32,
        "u1" => Kind::U8,
        "b1" => Kind::Bool,
        _ => return Err(unsupported()),
    };
    let big_endian = match order {
        '<' | '=' => false,
        '>' => true,
        '|' if kind.size() == 1 => false,
        _ => return Err(unsupported()),
    };
    Ok((kind, big_endian))
}

/// Copies `b` into an array in little-endian order (reversed for big-endian).
fn le<const N: usize>(b: &[u8], big_endian: bool) -> [u8; N] {
    let mut out = [0u8; N];
    if big_endian {
        out.iter_mut().zip(b.iter().rev()).for_each(|(d, s)| *d = *s);
    } else {
        out.iter_mut().zip(b).for_each(|(d, s)| *d = *s);
    }
    out
}

fn decode(kind: Kind, be: bool, data: &[u8]) -> NpyData {
    match kind {
        Kind::F32 => {
            NpyData::F32(data.chunks_exact(4).map(|c| f32::from_le_bytes(le(c, be))).collect())
        }
        Kind::F64 => {
            NpyData::F64(data.chunks_exact(8).map(|c| f64::from_le_bytes(le(c, be))).collect())
        }
        Kind::I64 => {
            NpyData::I64(data.chunks_exact(8).map(|c| i64::from_le_bytes(le(c, be))).collect())
        }
        Kind::I32 => {
            NpyData::I32(data.chunks_exact(4).map(|c| i32::from_le_bytes(le(c, be))).collect())
        }
        Kind::U8 => NpyData::U8(data.to_vec()),
        Kind::Bool => NpyData::U8(data.iter().map(|&b| u8::from(b != 0)).collect()),
    }
}

/// Reorders column-major data into row-major order.
fn fortran_to_c<T: Copy>(data: &[T], shape: &[usize]) -> Vec<T> {
    // Column-major strides: the first index varies fastest.
    let mut fstride = Vec::with_capacity(shape.len());
    let mut acc = 1usize;
    for &d in shape {
        fstride.push(acc);
        acc = acc.saturating_mul(d);
    }
    let mut out = Vec::with_capacity(data.len());
    let mut idx = vec![0usize; shape.len()];
    let mut pos = 0usize;
    for _ in 0..data.len() {
        if let Some(&v) = data.get(pos) {
            out.push(v);
        }
        for ((i, &d), &s) in idx.iter_mut().zip(shape).zip(&fstride).rev() {
            *i += 1;
            pos += s;
            if *i < d {
                break;
            }
            pos -= s * d;
            *i = 0;
        }
    }
    out
}

/// The header fields we use.
#[derive(Debug)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A Python literal as found in `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(usize),
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

fn parse_header(text: &str) -> Result<Header, NpyError> {
    let mut p = LitParser { s: text.as_bytes(), pos: 0 };
    let lit = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(NpyError::BadHeader("unexpected text after the dictionary".into()));
    }
    let Lit::Dict(entries) = lit else {
        return Err(NpyError::BadHeader("header is not a dictionary".into()));
    };
    let get =
        |key: &str| entries.iter().rev().find(|(k, _)| *k == Lit::Str(key.into())).map(|(_, v)| v);
    let descr = match get("descr") {
        Some(Lit::Str(s)) => s.clone(),
        Some(_) => return Err(NpyError::UnsupportedDtype("structured (record) dtype".into())),
        None => return Err(NpyError::BadHeader("missing 'descr'".into())),
    };
    let fortran_order = match get("fortran_order") {
        Some(Lit::Bool(b)) => *b,
        _ => return Err(NpyError::BadHeader("missing or invalid 'fortran_order'".into())),
    };
    let shape = match get("shape") {
        Some(Lit::Seq(items)) => items
            .iter()
            .map(|d| match d {
                Lit::Int(n) => Ok(*n),
                _ => Err(NpyError::BadHeader("shape holds a non-integer".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(NpyError::BadHeader("missing or invalid 'shape'".into())),
    };
    Ok(Header { descr, fortran_order, shape })
}

struct LitParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl LitParser<'_> {
    fn err(&self, what: &str) -> NpyError {
        NpyError::BadHeader(format!("{what} at character {}", self.pos))
    }

    fn ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Lit, NpyError> {
        if depth > 16 {
            return Err(self.err("nesting too deep"));
        }
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                while !self.eat(b'}') {
                    let k = self.value(depth + 1)?;
                    if !self.eat(b':') {
                        return Err(self.err("expected ':'"));
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((k, v));
                    if !self.eat(b',') && self.peek() != Some(b'}') {
                        return Err(self.err("expected ',' or '}'"));
                    }
                }
                Ok(Lit::Dict(entries))
            }
            Some(open @ (b'(' | b'[')) => {
                let close = if open == b'(' { b')' } else { b']' };
                self.pos += 1;
                let mut items = Vec::new();
                while !self.eat(close) {
                    items.push(self.value(depth + 1)?);
                    if !self.eat(b',') && self.peek() != Some(close) {
                        return Err(self.err("expected ',' or closing bracket"));
                    }
                }
                Ok(Lit::Seq(items))
            }
            Some(q @ (b'\'' | b'"')) => {
                self.pos += 1;
                let start = self.pos;
                while let Some(&c) = self.s.get(self.pos) {
                    if c == q {
                        let raw = self.s.get(start..self.pos).unwrap_or_default();
                        self.pos += 1;
                        return Ok(Lit::Str(raw.iter().map(|&b| char::from(b)).collect()));
                    }
                    if c == b'\\' {
                        return Err(self.err("escapes in strings are not supported"));
                    }
                    self.pos += 1;
                }
                Err(self.err("unterminated string"))
            }
            Some(c) if c.is_ascii_digit() => {
                let mut n: usize = 0;
                while let Some(&d) = self.s.get(self.pos).filter(|d| d.is_ascii_digit()) {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(usize::from(d - b'0')))
                        .ok_or_else(|| self.err("integer too large"))?;
                    self.pos += 1;
                }
                // Python 2 wrote longs with an `L` suffix.
                if self.s.get(self.pos) == Some(&b'L') {
                    self.pos += 1;
                }
                Ok(Lit::Int(n))
            }
            Some(_) => {
                let rest = self.s.get(self.pos..).unwrap_or_default();
                if rest.starts_with(b"True") {
                    self.pos += 4;
                    Ok(Lit::Bool(true))
                } else if rest.starts_with(b"False") {
                    self.pos += 5;
                    Ok(Lit::Bool(false))
                } else {
                    Err(self.err("unexpected character"))
                }
            }
            None => Err(self.err("unexpected end of header")),
        }
    }
}

/// Builds a version 1.0 (or 2.0 if huge) header for little-endian `f32` C-order data.
fn header_bytes(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims.join("")),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad with spaces and a final newline so the data starts 64-byte aligned.
    let (prefix, version) =
        if dict.len() + 11 <= usize::from(u16::MAX) { (10, 1u8) } else { (12, 2u8) };
    let total = (prefix + dict.len() + 1).div_ceil(64) * 64;
    while prefix + dict.len() + 1 < total {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        out.extend_from_slice(&u16::try_from(dict.len()).unwrap_or(u16::MAX).to_le_bytes());
    } else {
        out.extend_from_slice(&u32::try_from(dict.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes `data` (C order, `shape`) as a little-endian `f32` `.npy` file.
/// The file is written to a temporary name in the same directory and renamed
/// into place, so readers never see a partial file and a failed write leaves
/// any existing file unchanged.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let expected = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(NpyError::ShapeMismatch {
            shape: shape.to_vec(),
            expected: expected.unwrap_or(usize::MAX),
            actual: data.len(),
        });
    }
    let write_err = |error| NpyError::Write { path: path.to_owned(), error };
    let name = path.file_name().ok_or_else(|| {
        write_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has no file name"))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let file = fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut w = BufWriter::new(file);
        w.write_all(&header_bytes(shape))?;
        for chunk in data.chunks(16 * 1024) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|x| x.to_le_bytes()).collect();
            w.write_all(&bytes)?;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(error) = result {
        // Best effort: the temporary file may not exist if creating it failed.
        let _ = fs::remove_file(&tmp);
        return Err(write_err(error));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let dict =
            format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}")
                .replace("true", "True")
                .replace("false", "False");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        out.extend_from_slice(dict.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_each_dtype_and_order() {
        let a =
            read_npy_bytes(&npy("<f4", false, "(2,)", &[0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0])).unwrap();
        assert_eq!(a.shape, vec![2]);
        assert_eq!(a.data, NpyData::F32(vec![1.0, -2.0]));
        let b = read_npy_bytes(&npy(">f4", false, "(1,)", &[0x3f, 0x80, 0, 0])).unwrap();
        assert_eq!(b.data, NpyData::F32(vec![1.0]));
        let c = read_npy_bytes(&npy("<i8", false, "()", &(-3i64).to_le_bytes())).unwrap();
        assert_eq!(c.shape, Vec::<usize>::new());
        assert_eq!(c.data, NpyData::I64(vec![-3]));
        let d = read_npy_bytes(&npy(">i4", false, "(1,)", &7i32.to_be_bytes())).unwrap();
        assert_eq!(d.data, NpyData::I32(vec![7]));
        let e = read_npy_bytes(&npy("<f8", false, "(1, 1)", &0.5f64.to_le_bytes())).unwrap();
        assert_eq!(e.data, NpyData::F64(vec![0.5]));
        let f = read_npy_bytes(&npy("|u1", false, "(3,)", &[1, 2, 255])).unwrap();
        assert_eq!(f.data, NpyData::U8(vec![1, 2, 255]));
        let g = read_npy_bytes(&npy("|b1", false, "(2,)", &[0, 5])).unwrap();
        assert_eq!(g.data, NpyData::U8(vec![0, 1]));
    }

    #[test]
    fn fortran_order_is_transposed() {
        // [[1, 2, 3], [4, 5, 6]] stored column-major: 1 4 2 5 3 6.
        let data: Vec<u8> = [1u8, 4, 2, 5, 3, 6].to_vec();
        let a = read_npy_bytes(&npy("|u1", true, "(2, 3)", &data)).unwrap();
        assert_eq!(a.data, NpyData::U8(vec![1, 2, 3, 4, 5, 6]));
        // 3-d: shape (2, 2, 2), value = 100*i + 10*j + k.
        let mut col = Vec::new();
        for k in 0..2u8 {
            for j in 0..2u8 {
                for i in 0..2u8 {
                    col.push(100 * i + 10 * j + k);
                }
            }
        }
        let b = read_npy_bytes(&npy("|u1", true, "(2, 2, 2)", &col)).unwrap();
        assert_eq!(b.data, NpyData::U8(vec![0, 1, 10, 11, 100, 101, 110, 111]));
    }

    #[test]
    fn rejects_bad_inputs() {
        let ok = npy("<f4", false, "(2,)", &[0; 8]);
        assert!(read_npy_bytes(&ok).is_ok());
        for n in 0..ok.len() {
            assert!(read_npy_bytes(&ok[..n]).is_err(), "prefix {n}");
        }
        let mut long = ok.clone();
        long.push(0);
        assert!(matches!(read_npy_bytes(&long), Err(NpyError::DataLength { .. })));
        assert!(matches!(
            read_npy_bytes(&npy("<c8", false, "(1,)", &[0; 8])),
            Err(NpyError::UnsupportedDtype(_))
        ));
        assert!(matches!(
            read_npy_bytes(&npy("<f4", false, "(4294967296, 4294967296, 4294967296)", &[])),
            Err(NpyError::ShapeOverflow(_))
        ));
        assert!(matches!(
            read_npy_bytes(b"\x93NUMPY\x04\x00\x00\x00"),
            Err(NpyError::UnsupportedVersion { .. })
        ));
        assert!(matches!(read_npy_bytes(b"PK\x03\x04"), Err(NpyError::BadMagic)));
        assert!(read_npy_bytes(&npy("<f4", false, "(2,", &[0; 8])).is_err());
    }

    #[test]
    fn version_2_and_3_headers() {
        for major in [2u8, 3] {
            let dict = "{'descr': '<i4', 'fortran_order': False, 'shape': (1,), }\n";
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[major, 0]);
            b.extend_from_slice(&(dict.len() as u32).to_le_bytes());
            b.extend_from_slice(dict.as_bytes());
            b.extend_from_slice(&9i32.to_le_bytes());
            assert_eq!(read_npy_bytes(&b).unwrap().data, NpyData::I32(vec![9]));
        }
    }

    #[test]
    fn header_is_aligned_and_round_trips() {
        for shape in [vec![], vec![3], vec![2, 3], vec![1, 2, 3, 4]] {
            let h = header_bytes(&shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(h.last(), Some(&b'\n'));
            let n: usize = shape.iter().product();
            let mut b = h.clone();
            b.extend((0..n).flat_map(|i| (i as f32).to_le_bytes()));
            let a = read_npy_bytes(&b).unwrap();
            assert_eq!(a.shape, shape);
            assert_eq!(a.data, NpyData::F32((0..n).map(|i| i as f32).collect()));
        }
    }
}
