//! Loading and validating a model file, and running it.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use shortcut_core::aligned::AlignedVec;
use shortcut_core::forward::{forward, forward_with_layout, Backend, ForwardError};
use shortcut_core::spec::ParamInfo;
use shortcut_core::weights::{AffineWeights, ConvWeights, LinearWeights};
use shortcut_core::{plan, BlockWeights, LifetimePlan, NetworkWeights, Shape, SpecError};

use crate::engine::{Engine, RunOptions};
use crate::format::{ModelSpec, Preprocess, FORMAT_VERSION};
use crate::tensor::Tensor;

/// Why a model file was rejected. Every message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path}: not a safetensors file: {reason}")]
    NotSafetensors { path: String, reason: String },
    #[error("{path}: not a shortcut model: {reason}")]
    Metadata { path: String, reason: String },
    #[error("{path}: invalid network description: {reason}")]
    Spec { path: String, reason: String },
    #[error("{path}: tensor `{name}`: {problem}")]
    Tensor { path: String, name: String, problem: String },
    #[error("{path}: {reason}")]
    Options { path: String, reason: String },
}

/// Why a forward pass was refused.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("input must be NCHW (rank 4), got shape {0:?}")]
    Rank(Vec<usize>),
    #[error("input has {found} channels, the model takes {expected}")]
    Channels { expected: usize, found: usize },
    #[error("input shape {shape:?} does not fit the model: {reason}")]
    Shape { shape: Vec<usize>, reason: SpecError },
    #[error("forward pass failed: {0}")]
    Forward(ForwardError),
}

/// Where the parameter bytes live.
enum Store {
    Mapped(memmap2::Mmap),
    Bytes(Vec<u8>),
    /// A copy, made when the file's tensors are not 4-byte aligned or the host is big-endian.
    Floats(Vec<f32>),
}

/// A validated model: its architecture and its parameters, ready to run.
pub struct Model {
    path: String,
    arch: String,
    spec: ModelSpec,
    store: Store,
    /// Parameter name -> range in `store` (bytes for `Mapped`/`Bytes`, elements for `Floats`).
    params: HashMap<String, Range<usize>>,
    preprocess: Option<Preprocess>,
    engine: Option<Engine>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("path", &self.path).field("arch", &self.arch).finish()
    }
}

impl Model {
    /// Memory-maps and validates a model file, and prepacks it for this machine
    /// (options from the environment, see [`RunOptions`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Model, LoadError> {
        Model::load_with(path, &RunOptions::default())
    }

    /// [`Model::load`] with explicit run options.
    pub fn load_with(path: impl AsRef<Path>, options: &RunOptions) -> Result<Model, LoadError> {
        let mut model = Model::load_unprepared(path)?;
        model.prepare(options)?;
        Ok(model)
    }

    /// Packs the weights for the options' ISA and algorithms (replacing any earlier packing).
    pub fn prepare(&mut self, options: &RunOptions) -> Result<(), LoadError> {
        let resolved = options
            .resolve()
            .map_err(|e| LoadError::Options { path: self.path.clone(), reason: e.to_string() })?;
        self.engine = None;
        let spec = self.spec.view();
        let mut convs = Vec::new();
        spec.for_each_conv(|_, layer, geom| convs.push((layer, geom)));
        let engine = Engine::new(resolved, &spec, Some(self.natural_input()), |i| {
            let (layer, geom) = convs[i];
            let get = |t: &str| self.param(&format!("{layer}.{t}")).expect("validated at load");
            (geom, ConvWeights { weight: get("weight"), bias: get("bias") })
        });
        self.engine = Some(engine);
        Ok(())
    }

    /// The input the model is served at, batch 1: its preprocessing crop if recorded, else
    /// 224x224 for ImageNet stems and 32x32 otherwise. Algorithms are chosen for this size.
    pub fn natural_input(&self) -> Shape {
        let side = match (&self.preprocess, self.spec.stem.max_pool) {
            (Some(p), _) => p.crop,
            (None, true) => 224,
            (None, false) => 32,
        };
        Shape::new(1, self.spec.in_channels, side, side)
    }

    /// The prepacked engine.
    pub fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("models are prepared when built")
    }

    fn load_unprepared(path: impl AsRef<Path>) -> Result<Model, LoadError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let io = |error| LoadError::Io { path: shown.clone(), error };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; like every mmap user we rely on the file not being
        // truncated or rewritten by another process while the model is alive.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Model::from_store(shown, Store::Mapped(map))
    }

    /// Validates a model held in memory; `name` stands for the path in error messages.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Model, LoadError> {
        Model::from_bytes_with(name, bytes, &RunOptions::default())
    }

    /// [`Model::from_bytes`] with explicit run options.
    pub fn from_bytes_with(
        name: &str,
        bytes: Vec<u8>,
        options: &RunOptions,
    ) -> Result<Model, LoadError> {
        let mut model = Model::from_store(name.to_string(), Store::Bytes(bytes))?;
        model.prepare(options)?;
        Ok(model)
    }

    /// Validates a model held in memory without packing it (what a fuzzer exercises).
    pub fn validate_bytes(name: &str, bytes: Vec<u8>) -> Result<(), LoadError> {
        Model::from_store(name.to_string(), Store::Bytes(bytes)).map(|_| ())
    }

    fn from_store(path: String, store: Store) -> Result<Model, LoadError> {
        let bytes: &[u8] = match &store {
            Store::Mapped(m) => m,
            Store::Bytes(b) => b,
            Store::Floats(_) => unreachable!("files are read as bytes"),
        };
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| LoadError::NotSafetensors { path: path.clone(), reason: e.to_string() })?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| LoadError::NotSafetensors { path: path.clone(), reason: e.to_string() })?;
        let meta = header.metadata().clone().unwrap_or_default();
        let meta_err = |reason: String| LoadError::Metadata { path: path.clone(), reason };
        match meta.get("format") {
            Some(v) if v == FORMAT_VERSION => {}
            Some(v) => {
                return Err(meta_err(format!(
                    "format `{v}` is not supported (this build reads `{FORMAT_VERSION}`)"
                )))
            }
            None => {
                return Err(meta_err(
                    "no `format` in __metadata__ (convert the checkpoint with `shortcut convert`)"
                        .into(),
                ))
            }
        }
        let network =
            meta.get("network").ok_or_else(|| meta_err("no `network` in __metadata__".into()))?;
        let spec: ModelSpec = serde_json::from_str(network)
            .map_err(|e| LoadError::Spec { path: path.clone(), reason: e.to_string() })?;
        spec.view()
            .validate()
            .map_err(|e| LoadError::Spec { path: path.clone(), reason: e.to_string() })?;
        let arch = meta.get("arch").cloned().unwrap_or_else(|| "resnet".into());
        let preprocess = match meta.get("preprocess") {
            None => None,
            Some(json) => {
                let p: Preprocess = serde_json::from_str(json).map_err(|e| {
                    LoadError::Metadata { path: path.clone(), reason: format!("`preprocess`: {e}") }
                })?;
                p.validate(spec.in_channels).map_err(|reason| LoadError::Metadata {
                    path: path.clone(),
                    reason: format!("`preprocess`: {reason}"),
                })?;
                Some(p)
            }
        };

        let base = bytes.as_ptr() as usize;
        let mut params = HashMap::new();
        let mut failure = None;
        spec.view().for_each_param(|p: ParamInfo| {
            if failure.is_some() {
                return;
            }
            let name = p.to_string();
            let problem = |problem: String| LoadError::Tensor {
                path: path.clone(),
                name: name.clone(),
                problem,
            };
            match st.tensor(&name) {
                Err(_) => failure = Some(problem("missing".into())),
                Ok(t) if t.dtype() != safetensors::Dtype::F32 => {
                    failure = Some(problem(format!("dtype is {:?}, expected F32", t.dtype())))
                }
                Ok(t) if t.shape() != p.shape() => {
                    failure =
                        Some(problem(format!("shape is {:?}, expected {:?}", t.shape(), p.shape())))
                }
                Ok(t) => {
                    let start = t.data().as_ptr() as usize - base;
                    params.insert(name.clone(), start..start + t.data().len());
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(extra) = st.names().into_iter().find(|n| !params.contains_key(*n)) {
            return Err(LoadError::Tensor {
                path,
                name: extra.clone(),
                problem: "not a parameter of the network described in the metadata".into(),
            });
        }
        let aligned = cfg!(target_endian = "little")
            && params
                .values()
                .all(|r| bytemuck::try_cast_slice::<u8, f32>(&bytes[r.clone()]).is_ok());
        let (store, params) = if aligned {
            (store, params)
        } else {
            let mut floats = Vec::new();
            let mut ranges = HashMap::new();
            for (name, r) in params {
                let start = floats.len();
                floats.extend(
                    bytes[r].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
                ranges.insert(name, start..floats.len());
            }
            (Store::Floats(floats), ranges)
        };
        Ok(Model { path, arch, spec, store, params, preprocess, engine: None })
    }

    /// A model from in-memory tensors (named as in the model file), validated like a file.
    pub fn from_tensors(
        arch: &str,
        spec: ModelSpec,
        tensors: Vec<(String, Vec<f32>)>,
        options: &RunOptions,
    ) -> Result<Model, LoadError> {
        let path = format!("<{arch}>");
        spec.view()
            .validate()
            .map_err(|e| LoadError::Spec { path: path.clone(), reason: e.to_string() })?;
        let mut by_name: HashMap<String, Vec<f32>> = tensors.into_iter().collect();
        let mut floats = Vec::new();
        let mut params = HashMap::new();
        let mut failure = None;
        spec.view().for_each_param(|p| {
            let name = p.to_string();
            match by_name.remove(&name) {
                Some(v) if v.len() == p.len() => {
                    params.insert(name, floats.len()..floats.len() + v.len());
                    floats.extend_from_slice(&v);
                }
                found => {
                    let problem = match found {
                        Some(v) => format!("has {} elements, expected {:?}", v.len(), p.shape()),
                        None => "missing".into(),
                    };
                    failure.get_or_insert(LoadError::Tensor { path: path.clone(), name, problem });
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(name) = by_name.into_keys().next() {
            return Err(LoadError::Tensor {
                path,
                name,
                problem: "not a parameter of the network".into(),
            });
        }
        let mut model = Model {
            path,
            arch: arch.to_string(),
            spec,
            store: Store::Floats(floats),
            params,
            preprocess: None,
            engine: None,
        };
        model.prepare(options)?;
        Ok(model)
    }

    /// A model with deterministic pseudo-random weights (He-scaled, so activations stay finite):
    /// for benchmarks, where speed does not depend on the values.
    pub fn random(
        arch: &str,
        spec: ModelSpec,
        seed: u64,
        options: &RunOptions,
    ) -> Result<Model, LoadError> {
        let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let mut tensors = Vec::new();
        spec.view().for_each_param(|p| {
            let fan_in: usize = p.shape().iter().skip(1).product::<usize>().max(1);
            let scale = match p.tensor {
                "weight" => (3.0 / fan_in as f32).sqrt(),
                "scale" => 0.0,
                _ => 0.1,
            };
            let offset = if p.tensor == "scale" { 1.0 } else { 0.0 };
            tensors.push((p.to_string(), (0..p.len()).map(|_| offset + scale * next()).collect()));
        });
        Model::from_tensors(arch, spec, tensors, options)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The architecture's display name (e.g. `resnet50`), as the converter recorded it.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    /// Replaces the image preprocessing (e.g. for built-in architectures).
    pub fn set_preprocess(&mut self, preprocess: Option<Preprocess>) {
        self.preprocess = preprocess;
    }

    /// The image preprocessing recorded in the model file, if any.
    pub fn preprocess(&self) -> Option<&Preprocess> {
        self.preprocess.as_ref()
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// A parameter by name (`blocks.0.conv1.weight`).
    pub fn param(&self, name: &str) -> Option<&[f32]> {
        let r = self.params.get(name)?.clone();
        Some(match &self.store {
            Store::Mapped(m) => bytemuck::cast_slice(&m[r]),
            Store::Bytes(b) => bytemuck::cast_slice(&b[r]),
            Store::Floats(f) => &f[r],
        })
    }

    /// Bytes of parameters resident for this model (mapped or copied).
    pub fn weights_bytes(&self) -> usize {
        self.params.values().map(|r| r.len()).sum::<usize>()
            * if matches!(self.store, Store::Floats(_)) { 4 } else { 1 }
    }

    /// Whether the weights are memory-mapped from the file (as opposed to copied).
    pub fn is_mapped(&self) -> bool {
        matches!(self.store, Store::Mapped(_))
    }

    /// Borrowed parameter slices in the form the core's forward pass takes.
    fn gather(&self) -> Gathered<'_> {
        let get = |name: &str| self.param(name).expect("validated at load");
        let spec = self.spec.view();
        let blocks = spec
            .blocks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                BlockWeights::gather(b, i, |p| {
                    Ok::<_, std::convert::Infallible>(get(&p.to_string()))
                })
                .unwrap_or_else(|e| match e {})
            })
            .collect();
        let stem = ConvWeights { weight: get("stem.conv.weight"), bias: get("stem.conv.bias") };
        let head_norm = spec.head.norm.then(|| AffineWeights {
            scale: get("head.norm.scale"),
            shift: get("head.norm.shift"),
        });
        let fc = LinearWeights { weight: get("head.fc.weight"), bias: get("head.fc.bias") };
        Gathered { blocks, stem, head_norm, fc }
    }

    /// Runs the model on an NCHW batch and returns logits `[n, classes]`.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, RunError> {
        let shape = self.check_input(input.shape())?;
        let mut session = self.session(shape)?;
        let mut out = vec![0.0f32; session.output_len()];
        session.run(input.data(), &mut out)?;
        Ok(Tensor::new(vec![shape.n, self.spec.head.num_classes], out).expect("length matches"))
    }

    /// Runs the model with the reference ops only (the oracle).
    pub fn forward_reference(&self, input: &Tensor) -> Result<Tensor, RunError> {
        self.forward_with(&shortcut_core::ReferenceBackend, input)
    }

    /// Runs the model with a given backend.
    pub fn forward_with<B: Backend + ?Sized>(
        &self,
        backend: &B,
        input: &Tensor,
    ) -> Result<Tensor, RunError> {
        let shape = self.check_input(input.shape())?;
        let spec = self.spec.view();
        let p = plan(&spec, shape)
            .map_err(|reason| RunError::Shape { shape: input.shape().to_vec(), reason })?;
        let g = self.gather();
        let mut arena = AlignedVec::zeros(p.arena_len());
        let mut out = vec![0.0f32; p.output_len()];
        forward(backend, &spec, &g.weights(), input.data(), shape, &mut arena, &mut out)
            .map_err(RunError::Forward)?;
        Ok(Tensor::new(vec![shape.n, spec.head.num_classes], out).expect("length matches"))
    }

    /// A reusable context for one input shape: after creation, [`Session::run`] allocates nothing.
    pub fn session(&self, input: Shape) -> Result<Session<'_>, RunError> {
        let dims = [input.n, input.c, input.h, input.w];
        let shape = self.check_input(&dims)?;
        let spec = self.spec.view();
        let layout = LifetimePlan::new(&spec, shape)
            .map_err(|reason| RunError::Shape { shape: dims.to_vec(), reason })?;
        self.engine().prepare(&spec, shape);
        Ok(Session {
            model: self,
            shape,
            weights: self.gather(),
            arena: AlignedVec::zeros(layout.arena_len()),
            output_len: shape.n * self.spec.head.num_classes,
            layout,
        })
    }

    /// Checks an input shape against the model and converts it to a core [`Shape`].
    pub fn check_input(&self, dims: &[usize]) -> Result<Shape, RunError> {
        let &[n, c, h, w] = dims else { return Err(RunError::Rank(dims.to_vec())) };
        if c != self.spec.in_channels {
            return Err(RunError::Channels { expected: self.spec.in_channels, found: c });
        }
        let shape = Shape::new(n, c, h, w);
        plan(&self.spec.view(), shape)
            .map_err(|reason| RunError::Shape { shape: dims.to_vec(), reason })?;
        Ok(shape)
    }
}

struct Gathered<'m> {
    blocks: Vec<BlockWeights<'m>>,
    stem: ConvWeights<'m>,
    head_norm: Option<AffineWeights<'m>>,
    fc: LinearWeights<'m>,
}

impl<'m> Gathered<'m> {
    fn weights(&self) -> NetworkWeights<'_> {
        NetworkWeights {
            stem: self.stem,
            blocks: &self.blocks,
            head_norm: self.head_norm,
            fc: self.fc,
        }
    }
}

/// A model bound to one input shape, with its activation arena: repeated [`Session::run`]
/// calls allocate nothing.
pub struct Session<'m> {
    model: &'m Model,
    shape: Shape,
    weights: Gathered<'m>,
    /// 64-byte aligned, as are the plan's buffer offsets.
    arena: AlignedVec,
    layout: LifetimePlan,
    output_len: usize,
}

impl Session<'_> {
    pub fn input_shape(&self) -> Shape {
        self.shape
    }

    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Activation arena size in bytes.
    pub fn arena_bytes(&self) -> usize {
        self.arena.len() * 4
    }

    /// Runs one batch: `input` is NCHW of the session's shape, `output` receives `[n, classes]`.
    pub fn run(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), RunError> {
        let engine = self.model.engine();
        self.run_with(engine, input, output)
    }

    /// [`Session::run`] through another backend (e.g. one that times the engine's ops); the
    /// pass still runs on the engine's threads.
    pub(crate) fn run_with<B: Backend + Sync + ?Sized>(
        &mut self,
        backend: &B,
        input: &[f32],
        output: &mut [f32],
    ) -> Result<(), RunError> {
        let spec = self.model.spec.view();
        let (weights, shape, arena) = (self.weights.weights(), self.shape, &mut self.arena);
        let layout = &self.layout;
        self.model
            .engine()
            .run(|| {
                forward_with_layout(backend, &spec, &weights, input, shape, layout, arena, output)
            })
            .map_err(RunError::Forward)?;
        Ok(())
    }
}
