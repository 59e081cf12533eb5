//! `shortcut`: convert PyTorch ResNet checkpoints and run them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use shortcut_core::plan::{walk, Op};
use shortcut_core::Shape;
use shortcut_runtime::{Model, RunOptions, Tensor};
use shortcut_tools::cli::EngineArgs;
use shortcut_tools::{convert, npy};

/// `println!` that stops quietly when stdout is closed (e.g. piped into `head`) instead of panicking.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

#[derive(Parser)]
#[command(name = "shortcut", version, about = "CPU inference for PyTorch-trained ResNets")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Image preprocessing to record in the model (defaults: torchvision's ImageNet transform for
/// ImageNet-layout nets, none for others; any flag given starts from the ImageNet values).
#[derive(Args, Clone, Debug, Default)]
struct PreprocessArgs {
    /// Resize the shorter image side to this many pixels.
    #[arg(long)]
    resize: Option<usize>,
    /// Center crop size.
    #[arg(long)]
    crop: Option<usize>,
    /// Per-channel mean, comma-separated (e.g. 0.485,0.456,0.406).
    #[arg(long, value_delimiter = ',')]
    mean: Option<Vec<f32>>,
    /// Per-channel standard deviation, comma-separated.
    #[arg(long, value_delimiter = ',')]
    std: Option<Vec<f32>>,
}

impl PreprocessArgs {
    fn preprocess(&self) -> Option<shortcut_runtime::Preprocess> {
        if self.resize.is_none() && self.crop.is_none() && self.mean.is_none() && self.std.is_none()
        {
            return None;
        }
        let mut p = shortcut_runtime::Preprocess::imagenet();
        p.resize = self.resize.unwrap_or(p.resize);
        p.crop = self.crop.unwrap_or(p.crop);
        p.mean = self.mean.clone().unwrap_or(p.mean);
        p.std = self.std.clone().unwrap_or(p.std);
        Some(p)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Convert a PyTorch checkpoint (.pth/.pt, zip or legacy format, or .safetensors) to a shortcut model.
    Convert {
        input: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// Architecture family or name when the keys are ambiguous (torchvision, cifar, preact, resnet50, ...).
        #[arg(long)]
        arch: Option<String>,
        /// BN epsilon used when folding (state dicts do not record it).
        #[arg(long, default_value_t = 1e-5)]
        bn_eps: f64,
        #[command(flatten)]
        preprocess: PreprocessArgs,
    },
    /// Print a model's architecture, per-layer shapes, parameters and MACs.
    Inspect {
        /// A model file, or a torchvision architecture name (random weights).
        model: String,
        /// Input size HxW (default: the model's preprocessing crop, else 224x224 for ImageNet stems, 32x32 otherwise).
        #[arg(long)]
        size: Option<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Run a model on an f32 NCHW .npy batch and write the logits as .npy.
    Run {
        model: PathBuf,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Time forward passes of a model file or a torchvision architecture (random weights).
    Bench {
        /// A model file, or a torchvision architecture name (resnet18, resnet50, resnext50_32x4d, ...).
        model: String,
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Input size HxW (default: the model's preprocessing crop, else 224x224 for ImageNet stems, 32x32 otherwise).
        #[arg(long)]
        size: Option<String>,
        #[arg(long, default_value_t = 10)]
        iters: usize,
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Also time every layer and summarise GFLOP/s per convolution algorithm.
        #[arg(long)]
        profile: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Classify JPEG/PNG images (files or directories) and print the top classes.
    Classify(shortcut_tools::classify::ClassifyArgs),
    /// Convert the shipped digits ResNet-20 and classify the shipped test digits.
    Demo {
        /// Folder with resnet20_digits.pth and digits_test_{x,y}.npy.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Convert { input, output, arch, bn_eps, preprocess } => {
            let opts =
                convert::ConvertOptions { arch, bn_eps, preprocess: preprocess.preprocess() };
            cmd_convert(&input, &output, &opts)
        }
        Command::Inspect { model, size, engine } => cmd_inspect(&model, size.as_deref(), &engine),
        Command::Run { model, input, output, engine } => cmd_run(&model, &input, &output, &engine),
        Command::Demo { dir, engine } => cmd_demo(dir, &engine),
        Command::Classify(a) => shortcut_tools::classify::run(&a).map_err(Into::into),
        Command::Bench { model, batch, size, iters, warmup, json, profile, engine } => engine
            .options()
            .map_err(Into::into)
            .and_then(|options| open_model(&model, &options))
            .and_then(|m| {
                cmd_bench(&m, &model, batch, size.as_deref(), iters, warmup, json)?;
                if profile {
                    cmd_profile(&m, batch, size.as_deref(), iters)?;
                }
                Ok(())
            }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn cmd_convert(input: &Path, output: &Path, opts: &convert::ConvertOptions) -> Result<()> {
    let arch = convert::convert_checkpoint(input, output, opts)?;
    let model = Model::load(output)?;
    say!(
        "{} -> {}: {arch}, {} blocks, {} parameters",
        input.display(),
        output.display(),
        model.spec().blocks.len(),
        model.spec().view().param_count()
    );
    Ok(())
}

/// The size the model is served at (see [`Model::natural_input`]).
fn default_size(model: &Model) -> (usize, usize) {
    let s = model.natural_input();
    (s.h, s.w)
}

fn parse_size(s: &str) -> Result<(usize, usize)> {
    let parse = |v: &str| {
        v.trim().parse::<usize>().with_context(|| format!("bad size `{s}` (expected H or HxW)"))
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((parse(h)?, parse(w)?)),
        None => Ok((parse(s)?, parse(s)?)),
    }
}

fn fmt_shape(s: Shape) -> String {
    format!("{}x{}x{}", s.c, s.h, s.w)
}

fn cmd_inspect(name: &str, size: Option<&str>, engine: &EngineArgs) -> Result<()> {
    let model = open_model(name, &engine.options()?)?;
    let path = Path::new(name);
    let (h, w) = match size {
        Some(s) => parse_size(s)?,
        None => default_size(&model),
    };
    let spec = model.spec().view();
    let input = Shape::new(1, spec.in_channels, h, w);
    say!("model:      {}", path.display());
    say!("arch:       {}", model.arch());
    say!("input:      {} (batch 1)", fmt_shape(input));
    say!("blocks:     {}", spec.blocks.len());
    say!("parameters: {}", spec.param_count());
    let resolved = model.engine().resolved();
    say!(
        "engine:     {}, {} activations, {} thread(s), {} weight streaming",
        resolved.isa,
        model.engine().layout(),
        resolved.threads,
        resolved.host.name()
    );
    say!(
        "{:<22} {:<14} {:<10} {:>14} {:>14} {:>10} {:>14}",
        "layer",
        "op",
        "algorithm",
        "input",
        "output",
        "params",
        "MACs"
    );
    let mut total = 0u64;
    let mut rows = Vec::new();
    walk(&spec, input, |s| {
        let (op, params) = match s.op {
            Op::Conv { geom, .. } => (
                format!(
                    "conv{}x{}/{}{}",
                    geom.kernel_h,
                    geom.kernel_w,
                    geom.stride_h,
                    if geom.groups > 1 { format!(" g{}", geom.groups) } else { String::new() }
                ),
                geom.weight_len() + geom.out_channels,
            ),
            Op::MaxPool(g) => (format!("maxpool{}/{}", g.kernel, g.stride), 0),
            Op::Affine { .. } => ("bn+relu".to_string(), 2 * s.in_shape.c),
            Op::ZeroPad { stride, .. } => (format!("zeropad/{stride}"), 0),
            Op::AvgPool { kh, kw } => (format!("avgpool{kh}x{kw}"), 0),
            Op::Linear { in_features, out_features } => {
                ("fc".to_string(), in_features * out_features + out_features)
            }
        };
        total += s.macs();
        let algo = match s.op {
            Op::Conv { index, .. } => model.engine().conv_algo(index).name(),
            _ => "",
        };
        rows.push(format!(
            "{:<22} {:<14} {:<10} {:>14} {:>14} {:>10} {:>14}",
            s.layer.to_string(),
            op,
            algo,
            fmt_shape(s.in_shape),
            fmt_shape(s.out_shape),
            params,
            s.macs()
        ));
    })
    .map_err(|e| anyhow::anyhow!("{}: input {h}x{w}: {e}", path.display()))?;
    for r in rows {
        say!("{r}");
    }
    say!("total MACs: {total} ({:.3} GMACs)", total as f64 / 1e9);
    let lifetimes = shortcut_core::LifetimePlan::new(&spec, input)?;
    let mib = |elems: usize| elems as f64 * 4.0 / 1048576.0;
    say!(
        "activation arena: {:.2} MiB for batch 1 at {h}x{w} ({} buffers placed by lifetime; \
         peak live {:.2} MiB; one region per slot would need {:.2} MiB)",
        mib(lifetimes.arena_len()),
        lifetimes.buffer_count(),
        mib(lifetimes.peak_live()),
        mib(shortcut_core::plan(&spec, input)?.arena_len()),
    );
    say!(
        "weights: {:.2} MiB in the model file ({}); convolutions prepacked once at load for {}: \
         {:.2} MiB resident (the FC and unfolded-BN parameters are used from the file in place)",
        model.weights_bytes() as f64 / 1048576.0,
        if model.is_mapped() { "memory-mapped" } else { "in memory" },
        resolved.isa,
        model.engine().packed_bytes() as f64 / 1048576.0,
    );
    Ok(())
}

/// A model file, or a built-in torchvision architecture with random weights.
fn open_model(name: &str, options: &RunOptions) -> Result<Model> {
    if let Some(spec) = shortcut_runtime::zoo::torchvision(name) {
        return Ok(Model::random(name, spec, 0, options)?);
    }
    if !Path::new(name).exists() {
        bail!(
            "{name}: no such file, and not a built-in architecture ({})",
            shortcut_runtime::zoo::TORCHVISION_ARCHS.join(", ")
        );
    }
    Ok(Model::load_with(name, options)?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn cmd_bench(
    model: &Model,
    name: &str,
    batch: usize,
    size: Option<&str>,
    iters: usize,
    warmup: usize,
    json: bool,
) -> Result<()> {
    if iters == 0 || batch == 0 {
        bail!("--iters and --batch must be at least 1");
    }
    let (h, w) = match size {
        Some(s) => parse_size(s)?,
        None => default_size(model),
    };
    let spec = model.spec().view();
    let shape = Shape::new(batch, spec.in_channels, h, w);
    let mut macs = 0u64;
    walk(&spec, shape, |s| macs += s.macs())
        .map_err(|e| anyhow::anyhow!("{name}: input {h}x{w}: {e}"))?;
    let mut x = vec![0.0f32; shape.len()];
    for (i, v) in x.iter_mut().enumerate() {
        *v = ((i * 7919) % 255) as f32 / 127.5 - 1.0;
    }
    let mut session = model.session(shape)?;
    let mut y = vec![0.0f32; session.output_len()];
    let progress = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    for i in 0..warmup {
        if progress {
            eprint!("\rwarm-up {}/{warmup}", i + 1);
        }
        session.run(&x, &mut y)?;
    }
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters {
        if progress {
            eprint!("\riteration {}/{iters}   ", i + 1);
        }
        let t = Instant::now();
        session.run(&x, &mut y)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if progress {
        eprintln!();
    }
    times.sort_by(f64::total_cmp);
    let (min, median, p90) = (times[0], percentile(&times, 0.5), percentile(&times, 0.9));
    let images_per_s = batch as f64 * 1e3 / median;
    let gflops = 2.0 * macs as f64 / (median * 1e6);
    let resolved = model.engine().resolved();
    let threads = resolved.threads;
    if json {
        say!(
            "{}",
            serde_json::json!({
                "model": name, "arch": model.arch(), "batch": batch, "height": h, "width": w,
                "threads": threads, "isa": resolved.isa.name(),
                "layout": model.engine().layout().name(),
                "weight_stream": resolved.host.name(), "iters": iters, "warmup": warmup,
                "min_ms": min, "median_ms": median, "p90_ms": p90,
                "images_per_s": images_per_s, "gflops": gflops, "macs": macs,
            })
        );
    } else {
        say!(
            "{name} ({}), batch {batch}, {h}x{w}, {threads} thread(s), {}, {}, {} weight \
             streaming, {iters} iterations",
            model.arch(),
            resolved.isa,
            model.engine().layout(),
            resolved.host.name()
        );
        say!("latency  min {min:.2} ms   median {median:.2} ms   p90 {p90:.2} ms");
        say!("throughput {images_per_s:.2} images/s, {gflops:.1} GFLOP/s effective ({:.2} GMACs per batch)", macs as f64 / 1e9);
    }
    Ok(())
}

fn cmd_profile(model: &Model, batch: usize, size: Option<&str>, iters: usize) -> Result<()> {
    let (h, w) = match size {
        Some(s) => parse_size(s)?,
        None => default_size(model),
    };
    let layers = model.profile(Shape::new(batch, model.spec().in_channels, h, w), iters)?;
    let total: f64 = layers.iter().map(|l| l.time.as_secs_f64()).sum();
    let total_best: f64 = layers.iter().map(|l| l.best.as_secs_f64()).sum();
    let gflops =
        |macs: u64, secs: f64| if secs > 0.0 { 2.0 * macs as f64 / secs / 1e9 } else { 0.0 };
    say!(
        "{:<22} {:<22} {:>9} {:>7} {:>9} {:>9} {:>9}",
        "layer",
        "op",
        "mean ms",
        "%",
        "GFLOP/s",
        "best ms",
        "GFLOP/s"
    );
    for l in &layers {
        let (secs, best) = (l.time.as_secs_f64(), l.best.as_secs_f64());
        say!(
            "{:<22} {:<22} {:>9.3} {:>6.1}% {:>9.1} {:>9.3} {:>9.1}",
            l.layer,
            l.op,
            secs * 1e3,
            100.0 * secs / total,
            gflops(l.macs, secs),
            best * 1e3,
            gflops(l.macs, best)
        );
    }
    let mut by_algo: std::collections::BTreeMap<String, (u64, f64, f64)> = Default::default();
    for l in &layers {
        let key = l.op.rsplit(' ').next().unwrap_or(&l.op).to_string();
        let e = by_algo.entry(key).or_default();
        e.0 += l.macs;
        e.1 += l.time.as_secs_f64();
        e.2 += l.best.as_secs_f64();
    }
    say!("by algorithm / op (mean, then best):");
    for (k, (macs, secs, best)) in by_algo {
        say!(
            "  {k:<12} {:>9.3} ms {:>6.1}%  {:>7.1} GFLOP/s  {:>9.3} ms  {:>7.1} GFLOP/s",
            secs * 1e3,
            100.0 * secs / total,
            gflops(macs, secs),
            best * 1e3,
            gflops(macs, best)
        );
    }
    say!("sum of layers: mean {:.3} ms, best {:.3} ms", total * 1e3, total_best * 1e3);
    Ok(())
}

fn read_input(path: &Path) -> Result<Tensor> {
    let arr = npy::read_npy(path)?;
    let data = match arr.data {
        npy::NpyData::F32(v) => v,
        other => {
            bail!("{}: dtype is {}, expected float32 ('<f4')", path.display(), dtype_name(&other))
        }
    };
    if arr.shape.len() != 4 {
        bail!("{}: shape {:?} is not NCHW (rank 4)", path.display(), arr.shape);
    }
    Ok(Tensor::new(arr.shape, data)?)
}

fn cmd_run(model: &Path, input: &Path, output: &Path, engine: &EngineArgs) -> Result<()> {
    let model = Model::load_with(model, &engine.options()?)?;
    let x = read_input(input)?;
    model.check_input(x.shape()).with_context(|| format!("{}", input.display()))?;
    let t = Instant::now();
    let y = model.forward(&x)?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    npy::write_npy_f32(output, y.shape(), y.data())?;
    say!("{} -> {}: logits {:?} in {ms:.2} ms", input.display(), output.display(), y.shape());
    Ok(())
}

fn cmd_demo(dir: Option<PathBuf>, engine: &EngineArgs) -> Result<()> {
    let dir = dir.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo"));
    let ckpt = dir.join("resnet20_digits.pth");
    let out_dir = std::env::temp_dir().join(format!("shortcut-demo-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("{}", out_dir.display()))?;
    let model_path = out_dir.join("resnet20_digits.safetensors");
    let arch =
        convert::convert_checkpoint(&ckpt, &model_path, &convert::ConvertOptions::default())?;
    let model = Model::load_with(&model_path, &engine.options()?)?;
    say!("converted {} ({arch}, {} parameters)", ckpt.display(), model.spec().view().param_count());

    let x = read_input(&dir.join("digits_test_x.npy"))?;
    let y_path = dir.join("digits_test_y.npy");
    let labels: Vec<i64> = match npy::read_npy(&y_path)?.data {
        npy::NpyData::I64(v) => v,
        other => {
            bail!("{}: dtype is {}, expected int64 labels", y_path.display(), dtype_name(&other))
        }
    };
    let n = x.shape()[0];
    if labels.len() != n {
        bail!("{}: {} labels for {n} images", y_path.display(), labels.len());
    }
    // Warm up once, then time the whole batch.
    model.forward(&Tensor::new(
        [&[1], &x.shape()[1..]].concat(),
        x.data()[..x.data().len() / n].to_vec(),
    )?)?;
    let t = Instant::now();
    let logits = model.forward(&x)?;
    let secs = t.elapsed().as_secs_f64();
    let classes = model.spec().head.num_classes;
    let correct = logits
        .data()
        .chunks_exact(classes)
        .zip(&labels)
        .filter(|(row, &label)| argmax(row) as i64 == label)
        .count();
    say!(
        "classified {n} digits: accuracy {:.2}% ({correct}/{n}), {:.3} ms per image (batch {n}, {} thread(s), {})",
        100.0 * correct as f64 / n as f64,
        secs * 1e3 / n as f64,
        model.engine().resolved().threads,
        model.engine().resolved().isa
    );
    let reference = dir.join("digits_test_logits.npy");
    if let Ok(npy::NpyArray { data: npy::NpyData::F32(expected), .. }) = npy::read_npy(&reference) {
        let agree = logits
            .data()
            .chunks_exact(classes)
            .zip(expected.chunks_exact(classes))
            .filter(|(a, b)| argmax(a) == argmax(b))
            .count();
        say!(
            "agreement with PyTorch's predictions: {agree}/{n}, relative L2 error of logits {:.2e}",
            rel_l2(logits.data(), &expected)
        );
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    Ok(())
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (x as f64 - y as f64).powi(2);
        den += (y as f64).powi(2);
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

fn dtype_name(d: &npy::NpyData) -> &'static str {
    match d {
        npy::NpyData::F32(_) => "float32",
        npy::NpyData::F64(_) => "float64",
        npy::NpyData::I64(_) => "int64",
        npy::NpyData::I32(_) => "int32",
        npy::NpyData::U8(_) => "uint8",
    }
}
