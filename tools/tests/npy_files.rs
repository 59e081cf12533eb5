//! `.npy` files written by NumPy itself (`tools/tests/data/make_checkpoint_data.py`)
//! and the atomic writer.

use std::path::{Path, PathBuf};

use shortcut_tools::npy::{read_npy, read_npy_bytes, write_npy_f32, NpyData, NpyError};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn as_f64(data: &NpyData) -> Vec<f64> {
    match data {
        NpyData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        NpyData::F64(v) => v.clone(),
        NpyData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        NpyData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        NpyData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
    }
}

#[test]
fn numpy_written_files_match() {
    let text = std::fs::read_to_string(data_dir().join("npy_expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = expected.as_object().unwrap();
    assert!(cases.len() >= 10);
    for (file, want) in cases {
        let arr = read_npy(&data_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let values: Vec<f64> = want["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(arr.shape, shape, "{file}");
        assert_eq!(as_f64(&arr.data), values, "{file}");
    }
}

#[test]
fn dtypes_map_to_the_right_variant() {
    let kind = |f: &str| match read_npy(&data_dir().join(f)).unwrap().data {
        NpyData::F32(_) => "f32",
        NpyData::F64(_) => "f64",
        NpyData::I64(_) => "i64",
        NpyData::I32(_) => "i32",
        NpyData::U8(_) => "u8",
    };
    assert_eq!(kind("npy_f4.npy"), "f32");
    assert_eq!(kind("npy_f8_fortran.npy"), "f64");
    assert_eq!(kind("npy_i8.npy"), "i64");
    assert_eq!(kind("npy_i4_big_endian.npy"), "i32");
    assert_eq!(kind("npy_bool.npy"), "u8");
    assert_eq!(kind("npy_v3.npy"), "f64");
}

#[test]
fn truncated_numpy_file_is_an_error() {
    let bytes = std::fs::read(data_dir().join("npy_f4.npy")).unwrap();
    for n in [0, 5, 9, 20, 127, bytes.len() - 1] {
        let err = read_npy_bytes(&bytes[..n]).unwrap_err();
        assert!(
            matches!(
                err,
                NpyError::BadMagic | NpyError::Truncated(_) | NpyError::DataLength { .. }
            ),
            "{n}: {err}"
        );
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("shortcut-npy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn write_then_read_round_trips_without_leftovers() {
    let dir = TempDir::new("roundtrip");
    let path = dir.0.join("logits.npy");
    let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 3.0).collect();
    write_npy_f32(&path, &[3, 4], &data).unwrap();
    let arr = read_npy(&path).unwrap();
    assert_eq!(arr.shape, vec![3, 4]);
    assert_eq!(arr.data, NpyData::F32(data.clone()));
    // Overwrite in place, also 0-d and empty arrays.
    write_npy_f32(&path, &[], &[1.0]).unwrap();
    assert_eq!(read_npy(&path).unwrap().shape, Vec::<usize>::new());
    write_npy_f32(&path, &[0, 5], &[]).unwrap();
    assert_eq!(read_npy(&path).unwrap().data, NpyData::F32(vec![]));
    assert_eq!(dir.entries(), ["logits.npy"]);
}

#[test]
fn failed_writes_leave_existing_file_untouched() {
    let dir = TempDir::new("failure");
    let path = dir.0.join("out.npy");
    write_npy_f32(&path, &[2], &[1.0, 2.0]).unwrap();
    let before = std::fs::read(&path).unwrap();

    let err = write_npy_f32(&path, &[3], &[1.0, 2.0]).unwrap_err();
    assert!(matches!(err, NpyError::ShapeMismatch { .. }), "{err}");
    // The target is a directory: rename fails after the temp file was written.
    let sub = dir.0.join("sub.npy");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("keep"), b"x").unwrap();
    let err = write_npy_f32(&sub, &[1], &[1.0]).unwrap_err();
    assert!(err.to_string().contains("sub.npy"), "{err}");

    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(dir.entries(), ["out.npy", "sub.npy"]);
}

#[test]
fn errors_name_the_path() {
    let missing = Path::new("/nonexistent/shortcut/in.npy");
    let err = read_npy(missing).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/shortcut/in.npy"), "{err}");
    let err = write_npy_f32(missing, &[1], &[0.0]).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/shortcut/in.npy"), "{err}");

    let dir = TempDir::new("badfile");
    let path = dir.0.join("bad.npy");
    std::fs::write(&path, b"\x93NUMPY\x01\x00\x10\x00{'descr': '<c8'}").unwrap();
    let err = read_npy(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bad.npy"), "{msg}");
}
