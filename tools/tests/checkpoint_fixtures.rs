//! Reads every real PyTorch checkpoint in `fixtures/` (made by
//! `scripts/make_fixtures.py`) and the deliberately bad files in `fixtures/bad/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use shortcut_tools::checkpoint::{read_checkpoint, CheckpointError, RawTensor};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn manifest() -> serde_json::Value {
    let path = repo().join("fixtures/manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/make_fixtures.py)", path.display()));
    serde_json::from_str(&text).expect("manifest.json is valid JSON")
}

fn cases() -> Vec<serde_json::Value> {
    manifest()["cases"].as_array().expect("manifest has cases").clone()
}

fn load(rel: &str) -> Vec<(String, RawTensor)> {
    read_checkpoint(&repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn load_case(name: &str) -> Vec<(String, RawTensor)> {
    let case = cases()
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name} in the manifest"));
    load(case["checkpoint"].as_str().expect("checkpoint path"))
}

fn as_map(tensors: Vec<(String, RawTensor)>) -> HashMap<String, RawTensor> {
    tensors.into_iter().collect()
}

#[test]
fn every_manifest_checkpoint_parses_with_sane_tensors() {
    let cases = cases();
    assert!(cases.len() >= 10, "expected the full fixture set");
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let tensors = load(case["checkpoint"].as_str().unwrap());
        assert!(tensors.len() >= 10, "{name}: only {} tensors", tensors.len());
        let mut seen = std::collections::HashSet::new();
        for (key, t) in &tensors {
            assert!(seen.insert(key.clone()), "{name}: duplicate key {key}");
            assert!(!key.starts_with("module."), "{name}: prefix kept on {key}");
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>(), "{name}: {key}");
            assert!(t.data.iter().all(|v| v.is_finite()), "{name}: {key}");
            if key.ends_with("num_batches_tracked") {
                assert!(t.shape.is_empty(), "{name}: {key} should be 0-dim");
            }
            if key.ends_with("running_var") {
                assert!(t.data.iter().all(|&v| v > 0.0), "{name}: {key}");
            }
        }
        let conv1 = &as_map(tensors)["conv1.weight"];
        assert_eq!(conv1.shape.len(), 4, "{name}: conv1.weight");
        assert_eq!(conv1.shape[1], 3, "{name}: conv1.weight takes RGB");
    }
}

#[test]
fn state_dicts_keep_file_order() {
    let tensors = load_case("tv_resnet18_basic");
    let keys: Vec<&str> = tensors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(&keys[..3], ["conv1.weight", "bn1.weight", "bn1.bias"]);
    assert_eq!(keys.last(), Some(&"fc.bias"));
}

#[test]
fn storage_edge_cases_match_the_plain_checkpoint() {
    // Transposed, channels-last, offset, shared and strided views of the same values.
    let plain = as_map(load_case("tv_resnet18_basic"));
    let edge = load_case("tv_resnet18_storage_edge");
    assert_eq!(edge.len(), plain.len());
    for (key, t) in &edge {
        assert_eq!(Some(t), plain.get(key), "{key}");
    }
}

#[test]
fn safetensors_matches_the_zip_checkpoint() {
    let plain = as_map(load_case("tv_resnet18_basic"));
    let st = load_case("tv_resnet18_basic_safetensors");
    assert_eq!(st.len(), plain.len());
    for (key, t) in &st {
        assert_eq!(Some(t), plain.get(key), "{key}");
    }
}

#[test]
fn low_and_high_precision_variants_agree() {
    let f64v = load_case("cifar_resnet8_f64");
    let f16v = as_map(load_case("cifar_resnet8_f16"));
    let bf16v = as_map(load_case("cifar_resnet8_bf16"));
    assert_eq!(f16v.len(), f64v.len());
    assert_eq!(bf16v.len(), f64v.len());
    for (key, reference) in &f64v {
        let half = &f16v[key];
        let bf = &bf16v[key];
        assert_eq!(half.shape, reference.shape, "{key}");
        assert_eq!(bf.shape, reference.shape, "{key}");
        for ((&r, &h), &b) in reference.data.iter().zip(&half.data).zip(&bf.data) {
            if key.ends_with("num_batches_tracked") {
                assert_eq!((r, h, b), (r, r, r), "{key}");
                continue;
            }
            // Values came from f16/bf16: the dropped mantissa bits are zero.
            assert_eq!(h.to_bits() & 0x1fff, 0, "{key}: {h} is not an f16 value");
            assert_eq!(b.to_bits() & 0xffff, 0, "{key}: {b} is not a bf16 value");
            assert!((h - r).abs() <= r.abs() * 2f32.powi(-11) + 2f32.powi(-25), "{key}");
            assert!((b - r).abs() <= r.abs() * 2f32.powi(-8), "{key}");
        }
    }
}

#[test]
fn wrappers_and_dataparallel_prefix_are_unwrapped() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let prefix = case["key_prefix"].as_str().unwrap_or("");
        let wrapped = !case["state_dict_path"].is_null();
        if prefix.is_empty() && !wrapped {
            continue;
        }
        let tensors = load(case["checkpoint"].as_str().unwrap());
        assert!(
            tensors.iter().any(|(k, _)| k == "conv1.weight"),
            "{name}: state dict not found or prefix not stripped"
        );
    }
}

#[test]
fn legacy_checkpoint_matches_shapes() {
    let tensors = as_map(load_case("tv_resnet50_bottleneck_legacy"));
    assert_eq!(tensors["conv1.weight"].shape, vec![4, 3, 7, 7]);
    assert_eq!(tensors["layer1.0.downsample.0.weight"].shape, vec![16, 4, 1, 1]);
    assert_eq!(tensors["fc.weight"].shape.len(), 2);
}

fn bad(name: &str) -> CheckpointError {
    let path = repo().join("fixtures/bad").join(name);
    assert!(path.exists(), "{} is missing", path.display());
    let err = match read_checkpoint(&path) {
        Ok(t) => panic!("{name} loaded {} tensors", t.len()),
        Err(e) => e,
    };
    assert!(err.to_string().contains(name), "error does not name the file: {err}");
    err
}

#[test]
fn evil_os_system_is_rejected_by_name() {
    for (file, global) in [
        ("evil_os_system.pth", "os.system"),
        ("evil_posix_system.pth", "posix.system"),
        ("evil_legacy.pth", "__builtin__.eval"),
    ] {
        let err = bad(file);
        assert!(
            matches!(err.root(), CheckpointError::ForbiddenGlobal { global: g } if g == global),
            "{file}: {err}"
        );
        assert!(err.to_string().contains(global), "{err}");
    }
}

#[test]
fn truncated_files_give_clean_errors() {
    let err = bad("truncated_zip.pth");
    assert!(matches!(err.root(), CheckpointError::Zip(_)), "truncated zip: {err}");
    let err = bad("truncated_legacy.pth");
    assert!(matches!(err.root(), CheckpointError::Truncated(_)), "truncated legacy: {err}");
}

/// Cross-check against PyTorch itself: run with
/// `SHORTCUT_DUMP_DIR=/tmp/dump cargo test -p shortcut-tools --test checkpoint_fixtures -- --ignored`
/// then compare `/tmp/dump/<case>/<key>.npy` with `torch.load(..., weights_only=True)`.
#[test]
#[ignore = "manual cross-check against PyTorch; needs SHORTCUT_DUMP_DIR"]
fn dump_for_pytorch_crosscheck() {
    let out = PathBuf::from(std::env::var("SHORTCUT_DUMP_DIR").expect("SHORTCUT_DUMP_DIR"));
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let dir = out.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (key, t) in load(case["checkpoint"].as_str().unwrap()) {
            shortcut_tools::npy::write_npy_f32(&dir.join(format!("{key}.npy")), &t.shape, &t.data)
                .unwrap();
        }
    }
}
