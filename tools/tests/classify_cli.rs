//! `classify` end to end through its library entry point (`classify::run_with`, what the
//! `shortcut classify` subcommand runs): output formats, directory walking, per-image and
//! per-model errors, and logits against PyTorch on a committed photograph.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::Parser;
use shortcut_runtime::{Model, Tensor};
use shortcut_tools::classify::{run_with, ClassifyArgs, ClassifyError};
use shortcut_tools::convert::{convert_checkpoint, ConvertOptions};
use shortcut_tools::npy::{read_npy, NpyData};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ClassifyArgs,
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn photo(name: &str) -> PathBuf {
    repo("fixtures/preprocess").join(name)
}

/// Converts a fixture checkpoint once per test run into a directory kept for the process.
fn converted(name: &str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let out = dir.path().join(format!("{name}.safetensors"));
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if !out.exists() {
        let input = repo(&format!("fixtures/models/{name}.pth"));
        convert_checkpoint(&input, &out, &ConvertOptions::default()).unwrap();
    }
    out
}

fn model() -> PathBuf {
    converted("tv_resnet18_basic")
}

struct Output {
    stdout: String,
    stderr: String,
    result: Result<(), ClassifyError>,
}

fn classify(argv: &[&str]) -> Output {
    let mut full = vec!["classify"];
    full.extend_from_slice(argv);
    let args = Cli::try_parse_from(full).unwrap().args;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = run_with(&args, &mut out, &mut err, false);
    Output {
        stdout: String::from_utf8(out).unwrap(),
        stderr: String::from_utf8(err).unwrap(),
        result,
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Parses the text output: (image, [(label, probability)]) blocks.
fn parse_text(stdout: &str) -> Vec<(String, Vec<(String, f64)>)> {
    let mut blocks: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for line in stdout.lines() {
        if let Some(row) = line.strip_prefix("  ") {
            let (label, prob) = row.trim_end().rsplit_once(' ').unwrap();
            blocks.last_mut().unwrap().1.push((label.trim().to_string(), prob.parse().unwrap()));
        } else {
            blocks.push((line.to_string(), Vec::new()));
        }
    }
    blocks
}

fn check_probabilities(probs: &[f64]) {
    assert!(probs.iter().all(|p| (0.0..=1.0).contains(p)), "{probs:?}");
    assert!(probs.windows(2).all(|w| w[0] >= w[1]), "not sorted: {probs:?}");
    assert!(probs.iter().sum::<f64>() <= 1.0 + 1e-3, "{probs:?}");
}

#[test]
fn prints_top_k_labels_with_probabilities() {
    let m = model();
    let images = [photo("chelsea.jpg"), photo("coffee.jpg"), photo("astronaut.png")];
    let o = classify(&[s(&m), s(&images[0]), s(&images[1]), s(&images[2]), "--top", "3"]);
    o.result.unwrap();
    assert_eq!(o.stderr, "");
    let blocks = parse_text(&o.stdout);
    assert_eq!(blocks.len(), 3, "{}", o.stdout);
    for ((image, rows), path) in blocks.iter().zip(&images) {
        assert_eq!(image, s(path));
        assert_eq!(rows.len(), 3);
        // A 10-class model without --labels is labelled by class index.
        assert!(rows.iter().all(|(l, _)| l.parse::<usize>().is_ok_and(|c| c < 10)), "{rows:?}");
        check_probabilities(&rows.iter().map(|r| r.1).collect::<Vec<_>>());
    }
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn json_output_parses_and_holds_the_softmax() {
    let m = model();
    let o = classify(&[s(&m), s(&photo("chelsea.jpg")), "--json", "--top", "10"]);
    o.result.unwrap();
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["image"], s(&photo("chelsea.jpg")));
    let top = lines[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 10);
    let probs: Vec<f64> = top.iter().map(|t| t["probability"].as_f64().unwrap()).collect();
    check_probabilities(&probs);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-9, "all 10 classes sum to 1");
    let mut classes: Vec<u64> = top.iter().map(|t| t["class"].as_u64().unwrap()).collect();
    classes.sort();
    assert_eq!(classes, (0..10).collect::<Vec<_>>());
    for t in top {
        assert_eq!(t["label"], t["class"].to_string());
        assert!(t["logit"].is_f64());
    }
}

#[test]
fn directories_are_walked_recursively_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("b_sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::copy(photo("chelsea.jpg"), sub.join("cat.JPG")).unwrap();
    std::fs::copy(photo("coffee.jpg"), dir.path().join("c.jpeg")).unwrap();
    std::fs::copy(photo("astronaut.png"), dir.path().join("a.png")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not an image").unwrap();
    let m = model();
    let o = classify(&[s(&m), s(dir.path()), "--json", "--batch", "2"]);
    o.result.unwrap();
    let images: Vec<String> =
        json_lines(&o.stdout).iter().map(|l| l["image"].as_str().unwrap().to_string()).collect();
    let want = [dir.path().join("a.png"), sub.join("cat.JPG"), dir.path().join("c.jpeg")];
    assert_eq!(images, want.iter().map(|p| s(p).to_string()).collect::<Vec<_>>());
}

#[test]
fn batching_does_not_change_the_results() {
    let m = model();
    let images = [photo("chelsea.jpg"), photo("coffee.jpg"), photo("astronaut.png")];
    let run = |batch: &str| {
        let o = classify(&[
            s(&m),
            s(&images[0]),
            s(&images[1]),
            s(&images[2]),
            "--json",
            "--top",
            "10",
            "--batch",
            batch,
        ]);
        o.result.unwrap();
        json_lines(&o.stdout)
    };
    let (one, all) = (run("1"), run("8"));
    assert_eq!(one.len(), 3);
    for (a, b) in one.iter().zip(&all) {
        for (x, y) in a["top"].as_array().unwrap().iter().zip(b["top"].as_array().unwrap()) {
            assert_eq!(x["class"], y["class"]);
            let (x, y) = (x["logit"].as_f64().unwrap(), y["logit"].as_f64().unwrap());
            assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{x} vs {y}");
        }
    }
}

#[test]
fn unreadable_images_are_reported_and_the_rest_classified() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.jpg");
    std::fs::write(&bad, "this is text, not a JPEG").unwrap();
    let truncated = dir.path().join("truncated.jpg");
    std::fs::write(&truncated, &std::fs::read(photo("coffee.jpg")).unwrap()[..5000]).unwrap();
    let missing = dir.path().join("missing.png");
    let m = model();
    let good = photo("chelsea.jpg");
    let o = classify(&[s(&m), s(&bad), s(&good), s(&truncated), s(&missing), "--top", "2"]);
    match o.result {
        Err(ClassifyError::Failed { failed: 3, total: 4 }) => {}
        other => panic!("{other:?}"),
    }
    for name in ["broken.jpg", "truncated.jpg", "missing.png"] {
        assert!(
            o.stderr.lines().any(|l| l.starts_with("error: ") && l.contains(name)),
            "{}",
            o.stderr
        );
    }
    assert!(o.stderr.contains("not a JPEG or PNG"), "{}", o.stderr);
    assert!(o.stderr.contains("truncated"), "{}", o.stderr);
    let blocks = parse_text(&o.stdout);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].0, s(&good));

    // In JSON mode each failure is also a line of its own.
    let o = classify(&[s(&m), s(&bad), s(&good), "--json"]);
    assert!(matches!(o.result, Err(ClassifyError::Failed { failed: 1, total: 2 })));
    let lines = json_lines(&o.stdout);
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["error"].as_str().unwrap().contains("broken.jpg"));
    assert!(lines[1]["top"].is_array());
}

#[test]
fn wrong_model_files_give_clear_errors() {
    let image = photo("astronaut.png");
    // A PyTorch checkpoint instead of a converted model.
    let pth = repo("fixtures/models/tv_resnet18_basic.pth");
    let o = classify(&[s(&pth), s(&image)]);
    let e = o.result.unwrap_err();
    assert!(matches!(e, ClassifyError::Model { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("tv_resnet18_basic.pth") && msg.contains("shortcut convert"), "{msg}");
    // An image where the model belongs.
    let e = classify(&[s(&image), s(&image)]).result.unwrap_err();
    assert!(e.to_string().contains("astronaut.png"), "{e}");
    // No such file.
    let e = classify(&["no/such/model.safetensors", s(&image)]).result.unwrap_err();
    assert!(e.to_string().contains("no/such/model.safetensors"), "{e}");
}

#[test]
fn sizes_the_network_cannot_take_are_refused_up_front() {
    // kuangliu's CIFAR ResNet pools a fixed 4x4 window: it takes 32x32 inputs, not 224x224.
    let m = converted("kuangliu_resnet18_basic");
    let image = photo("astronaut.png");
    let e = classify(&[s(&m), s(&image)]).result.unwrap_err();
    assert!(matches!(e, ClassifyError::InputSize { crop: 224, .. }), "{e:?}");
    assert!(e.to_string().contains("224x224"), "{e}");
    // At its own size it runs.
    let o = classify(&[s(&m), s(&image), "--resize", "32", "--crop", "32"]);
    o.result.unwrap();
    assert_eq!(parse_text(&o.stdout).len(), 1);
    // A crop larger than the resize is not a valid transform.
    let e = classify(&[s(&model()), s(&image), "--resize", "100", "--crop", "200"]).result;
    assert!(matches!(e, Err(ClassifyError::Preprocess { .. })), "{e:?}");
}

#[test]
fn labels_file_names_the_classes() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("labels.txt");
    let names: Vec<String> = (0..10).map(|i| format!("class number {i}")).collect();
    std::fs::write(&labels, names.join("\n") + "\n").unwrap();
    let m = model();
    let image = photo("coffee.jpg");
    let o = classify(&[s(&m), s(&image), "--labels", s(&labels), "--top", "10"]);
    o.result.unwrap();
    let blocks = parse_text(&o.stdout);
    let mut got: Vec<String> = blocks[0].1.iter().map(|r| r.0.clone()).collect();
    got.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(got, want);

    std::fs::write(&labels, "just\ntwo\n").unwrap();
    let e = classify(&[s(&m), s(&image), "--labels", s(&labels)]).result.unwrap_err();
    assert!(e.to_string().contains("has 2 labels, the model has 10 classes"), "{e}");
}

#[test]
fn empty_directories_and_bad_flags_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let m = model();
    let e = classify(&[s(&m), s(dir.path())]).result.unwrap_err();
    assert!(matches!(e, ClassifyError::NoImages(_)), "{e:?}");
    let image = photo("coffee.jpg");
    let e = classify(&[s(&m), s(&image), "--top", "0"]).result.unwrap_err();
    assert!(matches!(e, ClassifyError::Usage(_)), "{e:?}");
    let e = classify(&[s(&m), s(&image), "--isa", "mmx"]).result.unwrap_err();
    assert!(e.to_string().contains("mmx"), "{e}");
}

fn rel_l2(ours: &[f32], theirs: &[f32]) -> f64 {
    let num: f64 = ours.iter().zip(theirs).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let den: f64 = theirs.iter().map(|b| f64::from(*b).powi(2)).sum();
    (num / den).sqrt()
}

#[test]
fn logits_match_pytorch_on_a_photograph() {
    // scripts/make_classify_fixture.py: torchvision's eval transform + the PyTorch model.
    let expected = read_npy(&photo("astronaut.tv_resnet18_basic.logits.npy")).unwrap();
    assert_eq!(expected.shape, vec![1, 10]);
    let NpyData::F32(expected) = expected.data else { panic!("f32 logits expected") };

    let path = model();
    let net = Model::load(&path).unwrap();
    let pre = net.preprocess().cloned().expect("torchvision nets record their transform");
    assert_eq!(pre, shortcut_runtime::Preprocess::imagenet());
    let x = shortcut_tools::preprocess::preprocess(&photo("astronaut.png"), &pre).unwrap();
    let y = net.forward(&Tensor::new(vec![1, 3, 224, 224], x).unwrap()).unwrap();
    let err = rel_l2(y.data(), &expected);
    assert!(err < 1e-4, "relative L2 {err}: {:?} vs {expected:?}", y.data());

    // And through the command's JSON output (logits printed as f32 values).
    let o = classify(&[s(&path), s(&photo("astronaut.png")), "--json", "--top", "10"]);
    o.result.unwrap();
    let line = &json_lines(&o.stdout)[0];
    let mut logits = vec![0f32; 10];
    for t in line["top"].as_array().unwrap() {
        logits[t["class"].as_u64().unwrap() as usize] = t["logit"].as_f64().unwrap() as f32;
    }
    let err = rel_l2(&logits, &expected);
    assert!(err < 1e-4, "relative L2 {err}");
}
