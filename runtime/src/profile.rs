//! Per-layer timing of a forward pass: which layers cost what, and at what GFLOP/s.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use shortcut_core::forward::Backend;
use shortcut_core::plan::{walk, Op};
use shortcut_core::shape::PoolGeometry;
use shortcut_core::{Conv2dGeometry, ConvWeights, Epilogue, Shape};

use crate::engine::Engine;
use crate::model::{Model, RunError};

/// Time spent in one layer over the profiled passes.
#[derive(Clone, Debug)]
pub struct LayerTime {
    /// The layer's name (`blocks.3.conv2`).
    pub layer: String,
    /// What it is (`conv3x3/1 winograd4`, `maxpool`, ...).
    pub op: String,
    pub macs: u64,
    /// Mean time per pass.
    pub time: Duration,
    /// Shortest time of any pass: on a shared machine the mean carries every other tenant's
    /// interruptions, the best is what the layer costs when it runs undisturbed.
    pub best: Duration,
}

/// Wraps the engine and times every op call; calls happen in schedule order.
struct Timing<'e> {
    engine: &'e Engine,
    times: Mutex<Vec<Duration>>,
}

impl Timing<'_> {
    fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let t = Instant::now();
        let r = f();
        self.times.lock().unwrap_or_else(|e| e.into_inner()).push(t.elapsed());
        r
    }
}

impl Backend for Timing<'_> {
    fn conv2d(
        &self,
        index: usize,
        geom: &Conv2dGeometry,
        weights: ConvWeights<'_>,
        input: &[f32],
        in_shape: Shape,
        output: &mut [f32],
        epilogue: Epilogue,
    ) {
        self.time(|| self.engine.conv2d(index, geom, weights, input, in_shape, output, epilogue))
    }
    fn max_pool2d(&self, g: &PoolGeometry, input: &[f32], s: Shape, output: &mut [f32]) {
        self.time(|| self.engine.max_pool2d(g, input, s, output))
    }
    fn affine(&self, a: &[f32], b: &[f32], relu: bool, x: &[f32], s: Shape, y: &mut [f32]) {
        self.time(|| self.engine.affine(a, b, relu, x, s, y))
    }
    fn subsample_pad_channels(
        &self,
        x: &[f32],
        s: Shape,
        stride: usize,
        c: usize,
        front: usize,
        y: &mut [f32],
    ) {
        self.time(|| self.engine.subsample_pad_channels(x, s, stride, c, front, y))
    }
    fn avg_pool(&self, x: &[f32], s: Shape, kh: usize, kw: usize, y: &mut [f32]) {
        self.time(|| self.engine.avg_pool(x, s, kh, kw, y))
    }
    fn linear(&self, i: usize, o: usize, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
        self.time(|| self.engine.linear(i, o, x, w, b, y))
    }
}

impl Model {
    /// Runs `passes` forward passes of a batch of `shape` (after one warm-up) and returns the
    /// mean and best time of every layer, in schedule order.
    pub fn profile(&self, shape: Shape, passes: usize) -> Result<Vec<LayerTime>, RunError> {
        let mut session = self.session(shape)?;
        let x: Vec<f32> =
            (0..shape.len()).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
        let mut y = vec![0.0; session.output_len()];
        session.run(&x, &mut y)?;
        let engine = self.engine();
        let timing = Timing { engine, times: Mutex::new(Vec::new()) };
        for _ in 0..passes.max(1) {
            session.run_with(&timing, &x, &mut y)?;
        }
        let spec = self.spec().view();
        let times = timing.times.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut layers = Vec::new();
        walk(&spec, shape, |s| {
            let op = match s.op {
                Op::Conv { index, geom, .. } => format!(
                    "conv{}x{}/{}{} {}",
                    geom.kernel_h,
                    geom.kernel_w,
                    geom.stride_h,
                    if geom.groups > 1 { format!(" g{}", geom.groups) } else { String::new() },
                    engine.conv_algo(index)
                ),
                Op::MaxPool(_) => "maxpool".into(),
                Op::Affine { .. } => "bn+relu".into(),
                Op::ZeroPad { .. } => "zeropad".into(),
                Op::AvgPool { .. } => "avgpool".into(),
                Op::Linear { .. } => "fc".into(),
            };
            layers.push(LayerTime {
                layer: s.layer.to_string(),
                op,
                macs: s.macs(),
                time: Duration::ZERO,
                best: Duration::MAX,
            });
        })
        .expect("planned");
        let steps = layers.len();
        for (i, t) in times.iter().enumerate() {
            let l = &mut layers[i % steps];
            l.time += *t;
            l.best = l.best.min(*t);
        }
        let passes = passes.max(1) as u32;
        for l in &mut layers {
            l.time /= passes;
        }
        Ok(layers)
    }
}
