//! The model loader rejects every inconsistency with an error naming the file and the tensor.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use shortcut_core::{BlockKind, BlockSpec, HeadPool, HeadSpec, Shortcut, StemSpec};
use shortcut_runtime::{save_model, Model, ModelSpec, NamedTensor};

fn spec() -> ModelSpec {
    ModelSpec {
        in_channels: 3,
        stem: StemSpec::cifar(4),
        blocks: vec![BlockSpec {
            kind: BlockKind::Basic,
            in_channels: 4,
            out_channels: 8,
            stride: 2,
            shortcut: Shortcut::Projection,
            preact: false,
        }],
        head: HeadSpec { norm: false, pool: HeadPool::Global, num_classes: 5 },
    }
}

/// Raw tensors: (name, dtype, shape, bytes).
type RawTensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

/// The spec's tensors as (name, shape, f32 data).
fn tensors(spec: &ModelSpec) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    spec.view()
        .for_each_param(|p| out.push((p.to_string(), p.shape().to_vec(), vec![0.1; p.len()])));
    out
}

/// Writes raw safetensors with the given metadata and (name, dtype, shape, bytes) tensors.
fn write_raw(
    path: &Path,
    meta: HashMap<String, String>,
    ts: &[(String, Dtype, Vec<usize>, Vec<u8>)],
) {
    let views: Vec<(String, TensorView<'_>)> = ts
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, &Some(meta)).unwrap()).unwrap();
}

fn meta(spec: &ModelSpec) -> HashMap<String, String> {
    HashMap::from([
        ("format".into(), "shortcut/1".into()),
        ("arch".into(), "tiny".into()),
        ("network".into(), serde_json::to_string(spec).unwrap()),
    ])
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn raw(spec: &ModelSpec) -> RawTensors {
    tensors(spec).into_iter().map(|(n, s, d)| (n, Dtype::F32, s, f32_bytes(&d))).collect()
}

fn load_err(path: &Path) -> String {
    Model::load(path).expect_err("must be rejected").to_string()
}

#[test]
fn a_valid_file_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.safetensors");
    let s = spec();
    let ts = tensors(&s);
    let named: Vec<_> = ts
        .iter()
        .map(|(n, sh, d)| NamedTensor { name: n.clone(), shape: sh.clone(), data: d })
        .collect();
    save_model(&path, "tiny", &s, None, &named).unwrap();
    let m = Model::load(&path).unwrap();
    let y = m.forward(&shortcut_runtime::Tensor::zeros(vec![2, 3, 9, 7])).unwrap();
    assert_eq!(y.shape(), &[2, 5]);
}

#[test]
fn wrong_shape_missing_extra_and_dtype_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec();
    type Mutation = Box<dyn Fn(&mut RawTensors)>;
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "shape",
            Box::new(|t| {
                let e = t.iter_mut().find(|e| e.0 == "blocks.0.conv2.weight").unwrap();
                e.2 = vec![8, 8, 9, 1];
            }),
            "`blocks.0.conv2.weight`: shape is [8, 8, 9, 1], expected [8, 8, 3, 3]",
        ),
        (
            "missing",
            Box::new(|t| t.retain(|e| e.0 != "blocks.0.shortcut.bias")),
            "`blocks.0.shortcut.bias`: missing",
        ),
        (
            "extra",
            Box::new(|t| t.push(("blocks.7.conv1.weight".into(), Dtype::F32, vec![1], vec![0; 4]))),
            "`blocks.7.conv1.weight`: not a parameter",
        ),
        (
            "dtype",
            Box::new(|t| {
                let e = t.iter_mut().find(|e| e.0 == "head.fc.bias").unwrap();
                e.1 = Dtype::F16;
                e.3.truncate(e.3.len() / 2);
            }),
            "`head.fc.bias`: dtype is F16, expected F32",
        ),
    ];
    for (name, mutate, expected) in cases {
        let path = dir.path().join(format!("{name}.safetensors"));
        let mut t = raw(&s);
        mutate(&mut t);
        write_raw(&path, meta(&s), &t);
        let e = load_err(&path);
        assert!(e.contains(&format!("{name}.safetensors")), "{name}: {e}");
        assert!(e.contains(expected), "{name}: {e}");
    }
}

#[test]
fn bad_metadata_and_truncation_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec();
    let path = dir.path().join("m.safetensors");
    let mut m = meta(&s);
    m.insert("format".into(), "shortcut/9".into());
    write_raw(&path, m, &raw(&s));
    assert!(load_err(&path).contains("format `shortcut/9` is not supported"));

    let mut m = meta(&s);
    m.remove("format");
    write_raw(&path, m, &raw(&s));
    assert!(load_err(&path).contains("no `format`"));

    let mut bad = s.clone();
    bad.blocks[0].in_channels = 5;
    write_raw(&path, meta(&bad), &raw(&s));
    assert!(load_err(&path).contains("invalid network description"));

    let mut m = meta(&s);
    m.insert("network".into(), "{\"in_channels\": 3".into());
    write_raw(&path, m, &raw(&s));
    assert!(load_err(&path).contains("invalid network description"));

    write_raw(&path, meta(&s), &raw(&s));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_err(&path).contains("not a safetensors file"));

    std::fs::write(&path, b"").unwrap();
    assert!(load_err(&path).contains("m.safetensors"));
}
