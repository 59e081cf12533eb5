//! End-to-end parity with PyTorch: every checkpoint in fixtures/manifest.json (made by
//! scripts/make_fixtures.py) is converted, loaded and run; logits must match PyTorch's within a
//! relative L2 error of 1e-5 with identical argmax.

use std::path::{Path, PathBuf};

use shortcut_core::arch::Isa;
use shortcut_core::conv::ConvAlgo;
use shortcut_core::layout::ActLayout;
use shortcut_runtime::{Model, RunOptions, Tensor};
use shortcut_tools::convert::{convert_checkpoint, ConvertOptions};
use shortcut_tools::npy::{read_npy, NpyData};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let a = read_npy(path).unwrap_or_else(|e| panic!("{e}"));
    match a.data {
        NpyData::F32(v) => (a.shape, v),
        _ => panic!("{}: not f32", path.display()),
    }
}

pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den).sqrt()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// Engine configurations checked on every fixture, with the tolerance each must meet:
/// exact algorithms (reference, direct/GEMM/GemmT in either layout) 1e-5, Winograd and the
/// automatic choice (which takes Winograd for 3x3 layers) 1e-4.
fn configurations() -> Vec<(String, Option<RunOptions>, f64)> {
    let mut configs = vec![("reference".to_string(), None, 1e-5)];
    for isa in Isa::all_available() {
        let opts = |conv, threads| RunOptions {
            isa: Some(isa),
            conv,
            threads: Some(threads),
            layout: Some(ActLayout::Nchw),
        };
        let auto = |threads| RunOptions { layout: None, ..opts(None, threads) };
        let blocked =
            |threads| RunOptions { layout: Some(ActLayout::Nchw16c), ..opts(None, threads) };
        configs.push((format!("{isa} auto"), Some(auto(1)), 1e-4));
        configs.push((format!("{isa} auto 3 threads"), Some(auto(3)), 1e-4));
        configs.push((format!("{isa} nchw16c"), Some(blocked(1)), 1e-4));
        configs.push((format!("{isa} nchw16c 3 threads"), Some(blocked(3)), 1e-4));
        let exact = RunOptions { conv: Some(ConvAlgo::GemmT), ..blocked(1) };
        configs.push((format!("{isa} nchw16c gemm-t"), Some(exact), 1e-5));
        for algo in ConvAlgo::ALL {
            let tol = if matches!(algo, ConvAlgo::Direct | ConvAlgo::Gemm | ConvAlgo::GemmT) {
                1e-5
            } else {
                1e-4
            };
            configs.push((format!("{isa} {algo}"), Some(opts(Some(algo), 1)), tol));
        }
    }
    configs
}

#[test]
fn every_fixture_matches_pytorch() {
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("fixtures/manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    let cases = manifest["cases"].as_array().expect("cases");
    assert!(cases.len() >= 16, "expected the full fixture set, found {}", cases.len());
    let dir = tempfile::tempdir().unwrap();
    let mut families = std::collections::BTreeSet::new();
    let mut blocked_runs = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let ckpt = repo().join(case["checkpoint"].as_str().unwrap());
        let out = dir.path().join(format!("{name}.safetensors"));
        convert_checkpoint(&ckpt, &out, &ConvertOptions::default())
            .unwrap_or_else(|e| panic!("{name}: convert failed: {e}"));
        let (shape, x) = read_f32(&repo().join(case["input"].as_str().unwrap()));
        let (eshape, expected) = read_f32(&repo().join(case["expected"].as_str().unwrap()));
        let x = Tensor::new(shape, x).unwrap();
        let mut worst = 0.0f64;
        let configs = configurations();
        for (config, opts, tol) in &configs {
            let model = Model::load_with(&out, &opts.clone().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if opts.is_some() && model.engine().layout() == ActLayout::Nchw16c {
                blocked_runs += 1;
            }
            let y = match opts {
                Some(_) => model.forward(&x),
                None => model.forward_reference(&x),
            }
            .unwrap_or_else(|e| panic!("{name} [{config}]: {e}"));
            assert_eq!(y.shape(), eshape.as_slice(), "{name}: output shape");
            let err = rel_l2(y.data(), &expected);
            assert!(err <= *tol, "{name} [{config}]: relative L2 error {err:.3e} > {tol:e}");
            let classes = eshape[1];
            for (i, (a, b)) in y.data().chunks(classes).zip(expected.chunks(classes)).enumerate() {
                assert_eq!(
                    argmax(a),
                    argmax(b),
                    "{name} [{config}]: argmax differs for sample {i}"
                );
            }
            worst = worst.max(err);
        }
        families.insert(case["family"].as_str().unwrap().to_string());
        eprintln!(
            "{name}: worst relative L2 error over {} configurations {worst:.2e}",
            configs.len()
        );
    }
    assert!(families.len() >= 8, "families covered: {families:?}");
    // Networks with channel counts in whole blocks of 16 ran blocked, with each ISA's two
    // forced configurations at least.
    let isas = Isa::all_available().count();
    assert!(blocked_runs >= 4 * 2 * isas, "only {blocked_runs} blocked runs");
}
