//! The `shortcut` binary on good and bad input: clear errors naming the file, non-zero exit,
//! no panic, and nothing overwritten on failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shortcut(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shortcut")).args(args).output().expect("run shortcut")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failing command: non-zero exit, an `error:` line containing each of `needles`, no panic.
fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks `{n}`: {err}");
    }
}

fn fixture(p: &str) -> String {
    repo().join(p).to_string_lossy().into_owned()
}

#[test]
fn convert_inspect_run_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let m = model.to_str().unwrap();
    let o = shortcut(&["convert", &fixture("fixtures/models/cifar_resnet8_optA.pth"), "-o", m]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = shortcut(&["inspect", m]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("blocks.0.conv1") && text.contains("total MACs"), "{text}");
    // Its channels (16/32/64) fit the blocked layout, which inspect reports; NCHW when asked.
    for (layout, shown) in [("nchw16c", "nchw16c activations"), ("nchw", "nchw activations")] {
        let o = shortcut(&["inspect", m, "--layout", layout, "--isa", "scalar"]);
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && text.contains(shown), "{text}{}", stderr(&o));
    }
    assert_fails(&shortcut(&["inspect", m, "--layout", "nhwc"]), &["activation layout", "nhwc"]);
    let out = dir.path().join("y.npy");
    let o = shortcut(&[
        "run",
        m,
        "--input",
        &fixture("fixtures/models/cifar_resnet8_optA.input.npy"),
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let y = shortcut_tools::npy::read_npy(&out).unwrap();
    assert_eq!(y.shape, vec![2, 10]);
}

#[test]
fn malicious_pickles_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("never.safetensors");
    for (file, global) in [
        ("fixtures/bad/evil_os_system.pth", "os.system"),
        ("fixtures/bad/evil_posix_system.pth", "posix.system"),
        ("fixtures/bad/evil_legacy.pth", "eval"),
    ] {
        let o = shortcut(&["convert", &fixture(file), "-o", out.to_str().unwrap()]);
        assert_fails(&o, &[file.rsplit('/').next().unwrap(), global]);
        assert!(!out.exists(), "{file}: output written despite failure");
    }
}

#[test]
fn truncated_checkpoints_fail_cleanly_and_keep_existing_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("existing.safetensors");
    std::fs::write(&out, b"precious").unwrap();
    for file in ["fixtures/bad/truncated_zip.pth", "fixtures/bad/truncated_legacy.pth"] {
        let o = shortcut(&["convert", &fixture(file), "-o", out.to_str().unwrap()]);
        assert_fails(&o, &[file.rsplit('/').next().unwrap()]);
        assert_eq!(std::fs::read(&out).unwrap(), b"precious", "{file}: output clobbered");
    }
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1, "temporary files left behind");
}

#[test]
fn unknown_layout_lists_keys() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("weird.safetensors");
    let data = vec![0u8; 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![4], &data).unwrap();
    std::fs::write(&st, safetensors::serialize([("encoder.weight", view)], &None).unwrap())
        .unwrap();
    let o =
        shortcut(&["convert", st.to_str().unwrap(), "-o", dir.path().join("o").to_str().unwrap()]);
    assert_fails(&o, &["weird.safetensors", "encoder.weight", "expected"]);
}

#[test]
fn run_rejects_bad_inputs_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.safetensors");
    let m = model.to_str().unwrap();
    assert!(shortcut(&["convert", &fixture("fixtures/models/cifar_resnet8_optA.pth"), "-o", m])
        .status
        .success());
    let out = dir.path().join("y.npy");
    let o_str = out.to_str().unwrap();
    let write = |name: &str, shape: &[usize], data: &[f32]| {
        let p = dir.path().join(name);
        shortcut_tools::npy::write_npy_f32(&p, shape, data).unwrap();
        p.to_str().unwrap().to_string()
    };
    let wrong_channels = write("c1.npy", &[1, 1, 32, 32], &[0.0; 1024]);
    assert_fails(
        &shortcut(&["run", m, "--input", &wrong_channels, "--output", o_str]),
        &["c1.npy", "channels"],
    );
    let wrong_rank = write("r3.npy", &[3, 32, 32], &vec![0.0; 3 * 1024]);
    assert_fails(
        &shortcut(&["run", m, "--input", &wrong_rank, "--output", o_str]),
        &["r3.npy", "rank 4"],
    );
    // A float64 array: write a valid .npy by hand.
    let f64_path = dir.path().join("f64.npy");
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 3, 2, 2), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let hlen = header.len() + pad + 1;
    bytes.extend_from_slice(&(hlen as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(b' ', pad));
    bytes.push(b'\n');
    bytes.extend(std::iter::repeat_n(0u8, 12 * 8));
    std::fs::write(&f64_path, bytes).unwrap();
    assert_fails(
        &shortcut(&["run", m, "--input", f64_path.to_str().unwrap(), "--output", o_str]),
        &["f64.npy", "float64"],
    );
    assert!(!out.exists());
    // Not a model at all.
    let o = shortcut(&["run", &wrong_channels, "--input", &wrong_channels, "--output", o_str]);
    assert_fails(&o, &["c1.npy", "safetensors"]);
}

/// `SHORTCUT_WEIGHT_STREAM` overrides the detected host: a bad value is an error, and with
/// AVX-512 the heavy 7x7 layers of ResNet-18 change algorithm between `fast` and `slow`.
#[test]
fn weight_stream_override() {
    let inspect = |stream: &str, isa: &str| {
        Command::new(env!("CARGO_BIN_EXE_shortcut"))
            .args(["inspect", "resnet18", "--isa", isa, "--threads", "1"])
            .env("SHORTCUT_WEIGHT_STREAM", stream)
            .output()
            .expect("run shortcut")
    };
    assert_fails(&inspect("quick", "scalar"), &["SHORTCUT_WEIGHT_STREAM", "quick"]);
    let auto = inspect("auto", "scalar");
    assert!(auto.status.success(), "`auto` detects: {}", stderr(&auto));
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    if !avx512 {
        return;
    }
    let layer = |o: &Output, name: &str| {
        assert!(o.status.success(), "{}", stderr(o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let line = text.lines().find(|l| l.starts_with(name)).map(str::to_owned);
        line.unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let (fast, slow) = (inspect("fast", "avx512"), inspect("slow", "avx512"));
    assert!(layer(&fast, "engine:").contains("fast weight streaming"));
    assert!(layer(&slow, "engine:").contains("slow weight streaming"));
    assert!(layer(&fast, "blocks.7.conv2").contains("winograd2"), "{}", layer(&fast, "blocks.7"));
    assert!(layer(&slow, "blocks.7.conv2").contains("gemm-t"), "{}", layer(&slow, "blocks.7"));
}

/// `bench --profile` prints every layer with its mean and best time, and both sums.
#[test]
fn bench_profile_prints_mean_and_best() {
    let o = shortcut(&[
        "bench",
        "resnet18",
        "--size",
        "32",
        "--iters",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--profile",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let header = text.lines().find(|l| l.starts_with("layer")).expect("table header");
    assert!(header.contains("mean ms") && header.contains("best ms"), "{header}");
    let row = text.lines().find(|l| l.starts_with("blocks.7.conv2")).expect("a layer row");
    let numbers: Vec<f64> = row.split_whitespace().filter_map(|t| t.parse().ok()).collect();
    assert_eq!(numbers.len(), 4, "mean, GFLOP/s, best, GFLOP/s in {row}");
    assert!(numbers[2] <= numbers[0], "best above mean in {row}");
    assert!(text.contains("sum of layers: mean"), "{text}");
}
