//! Tiny real PyTorch files from `tools/tests/data/make_checkpoint_data.py`,
//! compared value by value with what PyTorch itself held.

use std::path::{Path, PathBuf};

use shortcut_tools::checkpoint::{read_checkpoint, read_checkpoint_bytes, RawTensor};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn expected(file: &str) -> Vec<(String, RawTensor)> {
    let text = std::fs::read_to_string(data_dir().join("expected.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    all[file]
        .as_array()
        .unwrap_or_else(|| panic!("{file} not in expected.json"))
        .iter()
        .map(|entry| {
            let key = entry[0].as_str().unwrap().to_owned();
            let shape =
                entry[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let data =
                entry[2].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            (key, RawTensor { shape, data })
        })
        .collect()
}

fn check(file: &str) {
    let got = read_checkpoint(&data_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, expected(file), "{file}");
}

#[test]
fn protocol_4_training_wrapper_with_objects() {
    // Namespace, numpy scalar/array, torch.device, optimizer state, Parameters,
    // and a `module.` prefix around the state dict.
    check("proto4_wrapped.pth");
}

#[test]
fn deflate_compressed_zip() {
    check("deflate.pth");
}

#[test]
fn protocol_5_all_dtypes() {
    check("proto5_dtypes.pth");
}

#[test]
fn big_endian_zip() {
    check("big_endian.pth");
}

#[test]
fn legacy_protocol_1_shared_views() {
    check("legacy_proto1.pth");
}

#[test]
fn legacy_big_endian() {
    check("legacy_big_endian.pth");
}

#[test]
fn every_prefix_of_a_real_file_fails_cleanly() {
    for file in ["proto5_dtypes.pth", "legacy_proto1.pth", "deflate.pth"] {
        let bytes = std::fs::read(data_dir().join(file)).unwrap();
        assert!(read_checkpoint_bytes(&bytes).is_ok());
        for n in 0..bytes.len() {
            assert!(
                read_checkpoint_bytes(&bytes[..n]).is_err(),
                "{file}: prefix of {n} bytes was accepted"
            );
        }
    }
}

#[test]
fn single_byte_corruptions_never_panic() {
    for file in ["proto4_wrapped.pth", "legacy_proto1.pth"] {
        let bytes = std::fs::read(data_dir().join(file)).unwrap();
        let mut copy = bytes.clone();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                copy[i] = bytes[i] ^ flip;
                // Any result is fine as long as it returns.
                let _ = read_checkpoint_bytes(&copy);
            }
            copy[i] = bytes[i];
        }
    }
}
