//! `shortcut classify` through the binary: exit codes, `error:` lines naming the file, and the
//! two output formats as a user sees them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn shortcut(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shortcut"))
        .arg("classify")
        .args(args)
        .output()
        .expect("run shortcut")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn convert(dir: &Path) -> PathBuf {
    let out = dir.join("tv18.safetensors");
    let o = Command::new(env!("CARGO_BIN_EXE_shortcut"))
        .arg("convert")
        .arg(repo("fixtures/models/tv_resnet18_basic.pth"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    out
}

#[test]
fn classifies_photos_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let model = convert(dir.path());
    let photos = repo("fixtures/preprocess");
    let top = Path::new("--top");
    let o = shortcut(&[&model, &photos.join("chelsea.jpg"), top, Path::new("2")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].ends_with("chelsea.jpg"));
    for row in &lines[1..] {
        let (label, p) = row.trim().rsplit_once(' ').unwrap();
        assert!(label.trim().parse::<usize>().unwrap() < 10);
        assert!((0.0..=1.0).contains(&p.parse::<f64>().unwrap()), "{row}");
    }

    // A directory, as JSON Lines: every image in it (sorted), each line a JSON object.
    let o = shortcut(&[&model, &photos, Path::new("--json")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let images: Vec<String> = text(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["image"].to_string())
        .collect();
    assert!(images.len() >= 3, "{images:?}");
    assert!(images.windows(2).all(|w| w[0] < w[1]), "{images:?}");
    assert!(images.iter().any(|i| i.contains("astronaut.png")));
}

#[test]
fn a_bad_image_fails_the_run_after_the_others_are_classified() {
    let dir = tempfile::tempdir().unwrap();
    let model = convert(dir.path());
    let bad = dir.path().join("notes.jpg");
    std::fs::write(&bad, "plain text").unwrap();
    let good = repo("fixtures/preprocess/coffee.jpg");
    let o = shortcut(&[&model, &bad, &good]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("error: ") && err.contains("notes.jpg"), "{err}");
    assert!(err.contains("1 of 2 images could not be classified"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(text(&o.stdout).starts_with(good.to_str().unwrap()), "{}", text(&o.stdout));
}

#[test]
fn a_checkpoint_instead_of_a_model_is_a_clear_error() {
    let pth = repo("fixtures/models/tv_resnet18_basic.pth");
    let o = shortcut(&[&pth, &repo("fixtures/preprocess/coffee.jpg")]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: ") && err.contains("tv_resnet18_basic.pth"), "{err}");
    assert!(err.contains("shortcut convert"), "{err}");
    assert!(o.stdout.is_empty());
}
