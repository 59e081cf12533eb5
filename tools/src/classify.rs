//! `shortcut classify`: run a model on JPEG/PNG images and print the most likely classes.
//!
//! Images go through torchvision's evaluation transform (see [`crate::preprocess`]) with the
//! sizes and normalisation recorded in the model file, ImageNet's otherwise, are batched for
//! throughput, and each gets its top-K classes with softmax probabilities.
//!
//! The ImageNet-1k class names shipped in `data/imagenet_classes.txt` are torchvision 0.29's
//! `ResNet50_Weights.IMAGENET1K_V1.meta["categories"]`, one per line, in class-index order.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use shortcut_runtime::{LoadError, Model, OptionsError, Preprocess, RunError, RunOptions};

use crate::preprocess::{self, PreprocessError};

/// The 1000 ImageNet-1k class names, in index order.
pub const IMAGENET_CLASSES: &str = include_str!("../data/imagenet_classes.txt");

/// Classify images with a model file.
#[derive(clap::Args, Clone, Debug)]
pub struct ClassifyArgs {
    /// A shortcut model file (made by `shortcut convert`).
    pub model: PathBuf,
    /// JPEG or PNG files, or directories (searched recursively for .jpg, .jpeg and .png files,
    /// in sorted order).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Class names, one per line in class order (default: the ImageNet-1k names for 1000-class
    /// models, class indices otherwise).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Print one JSON object per image, one per line (JSON Lines):
    /// {"image", "top": [{"class", "label", "probability", "logit"}]}, or {"image", "error"}.
    #[arg(long)]
    pub json: bool,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Resize the shorter image side to this many pixels (default: the model's recorded
    /// preprocessing, else 256); without --crop, the crop shrinks to fit if needed.
    #[arg(long)]
    pub resize: Option<usize>,
    /// Center crop size fed to the network (default: the model's, else 224).
    #[arg(long)]
    pub crop: Option<usize>,
    #[command(flatten)]
    pub engine: crate::cli::EngineArgs,
}

/// Why `classify` failed. Per-image problems are reported as they happen and summed up in
/// [`ClassifyError::Failed`] at the end, after the other images were classified.
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error("{error}{hint}")]
    Model { error: LoadError, hint: &'static str },
    #[error("{path}: takes {channels}-channel input; classify feeds it RGB images (3 channels)")]
    Channels { path: String, channels: usize },
    #[error("{path}: the network cannot take {crop}x{crop} inputs (--crop): {reason}")]
    InputSize { path: String, crop: usize, reason: RunError },
    #[error("preprocessing (resize {resize}, crop {crop}): {reason}")]
    Preprocess { resize: usize, crop: usize, reason: String },
    #[error("{path}: {reason}")]
    Labels { path: String, reason: String },
    #[error("{path}: forward pass failed: {error}")]
    Run { path: String, error: RunError },
    #[error("cannot write the results: {0}")]
    Output(std::io::Error),
    #[error("no JPEG or PNG images found in {0}")]
    NoImages(String),
    #[error("{failed} of {total} images could not be classified")]
    Failed { failed: usize, total: usize },
}

/// One image's result: its top classes, best first.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub class: usize,
    pub probability: f64,
    pub logit: f32,
}

/// Softmax over `logits` (in double precision, shifted by the maximum so it cannot overflow)
/// and the `k` most likely classes, best first; ties go to the lower index.
pub fn top_k(logits: &[f32], k: usize) -> Vec<Prediction> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|class| Prediction { class, probability: exps[class] / sum, logit: logits[class] })
        .collect()
}

/// Reads class names, one per line; the count must match the model's classes.
pub fn read_labels(path: &Path, classes: usize) -> Result<Vec<String>, ClassifyError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ClassifyError::Labels {
        path: shown.clone(),
        reason: format!("cannot read: {e}"),
    })?;
    let labels = parse_labels(&text);
    if labels.len() != classes {
        return Err(ClassifyError::Labels {
            path: shown,
            reason: format!("has {} labels, the model has {classes} classes", labels.len()),
        });
    }
    Ok(labels)
}

/// One label per line; trailing blank lines (and `\r` of Windows line ends) are ignored.
fn parse_labels(text: &str) -> Vec<String> {
    let mut labels: Vec<String> =
        text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l).to_string()).collect();
    while labels.last().is_some_and(|l| l.trim().is_empty()) {
        labels.pop();
    }
    labels
}

/// The ImageNet-1k class names shipped with the tool.
pub fn imagenet_labels() -> Vec<String> {
    parse_labels(IMAGENET_CLASSES)
}

/// Names for a model's classes when none are given: ImageNet-1k's for 1000 classes (the
/// torchvision models), else the class indices.
pub fn default_labels(classes: usize) -> Vec<String> {
    if classes == 1000 {
        imagenet_labels()
    } else {
        (0..classes).map(|i| i.to_string()).collect()
    }
}

/// Expands the command line's paths: files are kept as given (their content tells the
/// format), directories are searched recursively for `.jpg`/`.jpeg`/`.png` files in sorted
/// order. Unreadable directories are returned as failures, to be reported with the images.
pub fn collect_images(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<(PathBuf, std::io::Error)>) {
    let mut files = Vec::new();
    let mut failures = Vec::new();
    let mut seen_dirs = std::collections::HashSet::new();
    for p in paths {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found, &mut failures, &mut seen_dirs);
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    (files, failures)
}

fn walk(
    dir: &Path,
    found: &mut Vec<PathBuf>,
    failures: &mut Vec<(PathBuf, std::io::Error)>,
    seen: &mut std::collections::HashSet<PathBuf>,
) {
    // Symbolic links may form cycles: visit each real directory once.
    match dir.canonicalize() {
        Ok(real) => {
            if !seen.insert(real) {
                return;
            }
        }
        Err(e) => return failures.push((dir.to_path_buf(), e)),
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => return failures.push((dir.to_path_buf(), e)),
    };
    for entry in entries {
        let path = match entry {
            Ok(e) => e.path(),
            Err(e) => {
                failures.push((dir.to_path_buf(), e));
                continue;
            }
        };
        if path.is_dir() {
            walk(&path, found, failures, seen);
        } else if preprocess::is_image_path(&path) {
            found.push(path);
        }
    }
}

impl ClassifyArgs {
    /// The engine options given on the command line.
    pub fn run_options(&self) -> Result<RunOptions, ClassifyError> {
        Ok(self.engine.options()?)
    }
}

/// The preprocessing in force: the model's own if it records one, else torchvision's
/// ImageNet transform, with `--resize` / `--crop` applied on top.
pub fn effective_preprocess(model: &Model, args: &ClassifyArgs) -> Preprocess {
    let mut p = model.preprocess().cloned().unwrap_or_else(Preprocess::imagenet);
    if let Some(r) = args.resize {
        p.resize = r;
        // A smaller resize than the recorded crop would be refused: keep the pair valid
        // unless the crop was asked for too.
        if args.crop.is_none() && p.crop > r {
            p.crop = r;
        }
    }
    if let Some(c) = args.crop {
        p.crop = c;
    }
    p
}

/// Loads the model (a hint in the error when it is not a model file) and checks it takes RGB.
fn open_model(args: &ClassifyArgs) -> Result<Model, ClassifyError> {
    let options = args.run_options()?;
    let model = Model::load_with(&args.model, &options).map_err(|error| {
        let hint = match error {
            LoadError::NotSafetensors { .. } | LoadError::Metadata { .. } => {
                " (classify takes a shortcut model file: convert a PyTorch checkpoint first \
                 with `shortcut convert CHECKPOINT -o MODEL`)"
            }
            _ => "",
        };
        ClassifyError::Model { error, hint }
    })?;
    let channels = model.spec().in_channels;
    if channels != 3 {
        return Err(ClassifyError::Channels { path: args.model.display().to_string(), channels });
    }
    Ok(model)
}

/// Runs `shortcut classify`: results on stdout, per-image problems and progress on stderr.
pub fn run(args: &ClassifyArgs) -> Result<(), ClassifyError> {
    let progress = std::io::stderr().is_terminal();
    run_with(args, &mut std::io::stdout().lock(), &mut std::io::stderr(), progress)
}

/// [`run`] writing to the given streams; `progress` draws a progress bar on `err` (meant for
/// a terminal).
pub fn run_with(
    args: &ClassifyArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    progress: bool,
) -> Result<(), ClassifyError> {
    if args.top == 0 || args.batch == 0 {
        return Err(ClassifyError::Usage("--top and --batch must be at least 1".into()));
    }
    let model = open_model(args)?;
    let model_path = args.model.display().to_string();
    let pre = effective_preprocess(&model, args);
    preprocess::check_settings(&pre).map_err(|e| ClassifyError::Preprocess {
        resize: pre.resize,
        crop: pre.crop,
        reason: match e {
            PreprocessError::Settings(reason) => reason,
            other => other.to_string(),
        },
    })?;
    model.check_input(&[1, 3, pre.crop, pre.crop]).map_err(|reason| ClassifyError::InputSize {
        path: model_path.clone(),
        crop: pre.crop,
        reason,
    })?;
    let classes = model.spec().head.num_classes;
    let labels = match &args.labels {
        Some(path) => read_labels(path, classes)?,
        None => default_labels(classes),
    };

    let (files, walk_failures) = collect_images(&args.images);
    let mut failed = 0;
    for (path, e) in &walk_failures {
        failed += 1;
        let shown = path.display().to_string();
        report_error(out, err, args.json, &shown, &format!("{shown}: cannot read directory: {e}"))?;
    }
    if files.is_empty() {
        let shown: Vec<String> = args.images.iter().map(|p| p.display().to_string()).collect();
        return Err(ClassifyError::NoImages(shown.join(", ")));
    }
    let total = files.len() + walk_failures.len();

    let threads = model.engine().resolved().threads;
    // Decoding and resizing use as many threads as the network, in their own pool so that
    // `--threads` bounds the whole command.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok();
    let mut bar = Progress::new(progress && files.len() > 1, files.len());
    let plane = 3 * pre.crop * pre.crop;
    let mut session: Option<(usize, shortcut_runtime::Session<'_>)> = None;
    let mut logits = Vec::new();
    for chunk in files.chunks(args.batch) {
        let prepare = || -> Vec<Result<Vec<f32>, PreprocessError>> {
            chunk.par_iter().map(|p| preprocess::preprocess(p, &pre)).collect()
        };
        let prepared = match &pool {
            Some(pool) => pool.install(prepare),
            None => prepare(),
        };
        let good: Vec<&Vec<f32>> = prepared.iter().filter_map(|r| r.as_ref().ok()).collect();
        if !good.is_empty() {
            let n = good.len();
            let mut input = Vec::with_capacity(n * plane);
            for x in &good {
                input.extend_from_slice(x);
            }
            if !matches!(&session, Some((size, _)) if *size == n) {
                let shape = model.check_input(&[n, 3, pre.crop, pre.crop]).map_err(|reason| {
                    ClassifyError::InputSize { path: model_path.clone(), crop: pre.crop, reason }
                })?;
                let s = model
                    .session(shape)
                    .map_err(|error| ClassifyError::Run { path: model_path.clone(), error })?;
                session = Some((n, s));
            }
            let (_, s) = session.as_mut().expect("just set");
            logits.resize(s.output_len(), 0.0);
            s.run(&input, &mut logits)
                .map_err(|error| ClassifyError::Run { path: model_path.clone(), error })?;
        }
        bar.clear(err);
        let mut row = 0;
        for (path, result) in chunk.iter().zip(&prepared) {
            let shown = path.display().to_string();
            match result {
                Ok(_) => {
                    let l = &logits[row * classes..(row + 1) * classes];
                    row += 1;
                    let top = top_k(l, args.top);
                    if !print_result(out, args.json, &shown, &top, &labels)? {
                        return Ok(());
                    }
                }
                Err(e) => {
                    failed += 1;
                    report_error(out, err, args.json, &shown, &e.to_string())?;
                }
            }
        }
        bar.advance(err, chunk.len());
    }
    bar.finish(err);
    if failed > 0 {
        return Err(ClassifyError::Failed { failed, total });
    }
    Ok(())
}

/// Writes one image's classes; `Ok(false)` when stdout is closed (e.g. piped into `head`),
/// which ends the run quietly.
fn print_result(
    out: &mut dyn Write,
    json: bool,
    image: &str,
    top: &[Prediction],
    labels: &[String],
) -> Result<bool, ClassifyError> {
    let label =
        |p: &Prediction| labels.get(p.class).cloned().unwrap_or_else(|| p.class.to_string());
    let written = if json {
        let top: Vec<_> = top
            .iter()
            .map(|p| {
                serde_json::json!({
                    "class": p.class, "label": label(p), "probability": p.probability,
                    "logit": p.logit,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::json!({ "image": image, "top": top }))
    } else {
        let width = top.iter().map(|p| label(p).chars().count()).max().unwrap_or(0);
        let mut text = format!("{image}\n");
        for p in top {
            text.push_str(&format!("  {:<width$}  {:.4}\n", label(p), p.probability));
        }
        out.write_all(text.as_bytes())
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(ClassifyError::Output(e)),
    }
}

/// Reports a failed image on stderr (and as a JSON line in `--json` mode, so consumers see
/// every input); the run goes on.
fn report_error(
    out: &mut dyn Write,
    err: &mut dyn Write,
    json: bool,
    image: &str,
    problem: &str,
) -> Result<(), ClassifyError> {
    let _ = writeln!(err, "error: {problem}");
    if json {
        let line = serde_json::json!({ "image": image, "error": problem });
        match writeln!(out, "{line}") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => return Err(ClassifyError::Output(e)),
        }
    }
    Ok(())
}

/// A one-line progress bar on stderr, redrawn with `\r`: a few lines of code instead of a
/// terminal-handling dependency. Cleared before results are printed so the two never mix.
struct Progress {
    enabled: bool,
    total: usize,
    done: usize,
    start: Instant,
}

impl Progress {
    fn new(enabled: bool, total: usize) -> Progress {
        Progress { enabled, total, done: 0, start: Instant::now() }
    }

    fn clear(&self, err: &mut dyn Write) {
        if self.enabled && self.done > 0 {
            let _ = write!(err, "\r\x1b[2K");
        }
    }

    fn advance(&mut self, err: &mut dyn Write, n: usize) {
        self.done += n;
        if !self.enabled {
            return;
        }
        const WIDTH: usize = 30;
        let filled = WIDTH * self.done / self.total.max(1);
        let rate = self.done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        let _ = write!(
            err,
            "\r[{}{}] {}/{} images, {rate:.1}/s",
            "#".repeat(filled),
            " ".repeat(WIDTH - filled),
            self.done,
            self.total
        );
        let _ = err.flush();
    }

    fn finish(&self, err: &mut dyn Write) {
        self.clear(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_labels_are_imagenet_1k() {
        let labels = imagenet_labels();
        assert_eq!(labels.len(), 1000);
        assert_eq!(labels[0], "tench");
        assert_eq!(labels[281], "tabby");
        assert_eq!(labels[999], "toilet tissue");
        assert!(labels.iter().all(|l| !l.is_empty() && l.trim() == l));
    }

    #[test]
    fn top_k_is_sorted_softmax() {
        let top = top_k(&[1.0, 3.0, 2.0, 3.0], 3);
        let classes: Vec<usize> = top.iter().map(|p| p.class).collect();
        assert_eq!(classes, vec![1, 3, 2]);
        let all: f64 = top_k(&[1.0, 3.0, 2.0, 3.0], 4).iter().map(|p| p.probability).sum();
        assert!((all - 1.0).abs() < 1e-12);
        assert!(top[0].probability >= top[2].probability);
        // Large logits must not overflow.
        let big = top_k(&[1000.0, 999.0], 2);
        assert!((big[0].probability - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-12);
        assert_eq!(top_k(&[0.5], 5).len(), 1);
    }

    #[test]
    fn default_labels_are_imagenet_for_1000_classes_else_indices() {
        assert_eq!(default_labels(1000)[1], "goldfish");
        assert_eq!(default_labels(3), vec!["0", "1", "2"]);
    }

    #[test]
    fn labels_ignore_trailing_blank_lines_and_cr() {
        assert_eq!(parse_labels("a\r\nb c\n\n\n"), vec!["a", "b c"]);
        assert!(parse_labels("").is_empty());
    }
}
