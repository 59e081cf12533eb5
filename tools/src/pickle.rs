//! A restricted Python pickle reader that never executes code.
//!
//! PyTorch checkpoints are pickles, and a pickle is a small program: its
//! `GLOBAL`/`REDUCE` opcodes import and call arbitrary Python callables. We
//! interpret the opcodes (protocols 0–5) into a plain [`Value`] tree instead,
//! and nothing is ever imported or called. On top of that, the reader applies
//! an allow-list so that malicious files are reported rather than silently
//! accepted:
//!
//! - **Referencing** a global (`GLOBAL`, `STACK_GLOBAL`) yields an inert
//!   [`Value::Global`] placeholder, unless the global is obviously dangerous
//!   (`os.*`, `posix.*`, `subprocess.*`, `builtins.eval`, `builtins.getattr`,
//!   …), which is an error naming it: no legitimate checkpoint mentions those.
//! - **Calling** a global (`REDUCE`, `NEWOBJ`, `INST`, `OBJ`) is allowed only
//!   for what `torch.save` of state dicts and common training wrappers emit:
//!   the `torch._utils._rebuild_*` tensor functions (recorded unevaluated as
//!   [`Value::Call`] for the checkpoint reader to interpret), dict-like types
//!   (`collections.OrderedDict`, `defaultdict`, …), `torch.Size`,
//!   `_codecs.encode`, `set`/`frozenset`/`bytearray`, and a few harmless data
//!   classes that appear beside state dicts (`argparse.Namespace`, numpy
//!   scalars and dtypes, `torch.device`, …), which become opaque
//!   [`Value::Object`]s. Calling anything else is an error naming the global,
//!   so a pickled full model (`torch.save(model)`) is rejected with a clear
//!   message instead of being half-understood.
//!
//! Resource use is bounded by [`Limits`]: nesting depth, memo size, and the
//! number of nodes and bytes produced when shared (memoised) objects are
//! expanded into the tree, so memo bombs and deep nesting are errors rather
//! than stack overflows or out-of-memory aborts.

use std::collections::HashMap;
use std::fmt;

/// A reference to a Python global `module.name`; kept as text, never imported.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Global {
    /// Module path, e.g. `torch._utils`.
    pub module: String,
    /// Attribute name, e.g. `_rebuild_tensor_v2`.
    pub name: String,
}

impl Global {
    /// True if this is `module.name`.
    pub fn is(&self, module: &str, name: &str) -> bool {
        self.module == module && self.name == name
    }
}

impl fmt::Display for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// A decoded pickle object. Shared (memoised) objects are expanded into
/// copies, so this is always a finite tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python `None`.
    None,
    /// Python `bool`.
    Bool(bool),
    /// Python `int` that fits in 64 bits.
    Int(i64),
    /// Python `int` beyond 64 bits, as minimal little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    /// Python `float`.
    Float(f64),
    /// Python `str` (and Python 2 `str` that is valid UTF-8).
    Str(String),
    /// Python `bytes`/`bytearray` (and Python 2 `str` that is not UTF-8).
    Bytes(Vec<u8>),
    /// Python `tuple` (also `torch.Size`).
    Tuple(Vec<Value>),
    /// Python `list`.
    List(Vec<Value>),
    /// Python `dict` or dict-like type, in insertion order. A key may appear
    /// more than once if the pickle set it twice; as in Python, the later wins.
    Dict(Vec<(Value, Value)>),
    /// Python `set`/`frozenset`, in pickle order.
    Set(Vec<Value>),
    /// A global referenced but not called (e.g. `torch.FloatStorage`, `torch.float32`).
    Global(Global),
    /// An allow-listed function call (the `torch._utils._rebuild_*` family),
    /// recorded unevaluated.
    Call {
        /// The function.
        func: Global,
        /// Positional arguments.
        args: Vec<Value>,
    },
    /// An instance of an allow-listed harmless data class, never constructed.
    Object {
        /// The class.
        class: Global,
        /// Constructor arguments.
        args: Vec<Value>,
        /// State passed by `BUILD`, if any.
        state: Option<Box<Value>>,
    },
    /// A persistent id (`PERSID`/`BINPERSID`); PyTorch uses these for storages.
    PersistentId(Box<Value>),
}

impl Value {
    /// The string, if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `Int`.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements, if this is a `Tuple` or `List`.
    pub fn as_items(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(v) | Value::List(v) => Some(v),
            _ => None,
        }
    }

    /// The entries, if this is a `Dict`.
    pub fn as_dict(&self) -> Option<&[(Value, Value)]> {
        match self {
            Value::Dict(v) => Some(v),
            _ => None,
        }
    }

    /// Looks up a string key in a `Dict`; the last occurrence wins, as in Python.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.iter().rev().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }

    /// A short name of the variant, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::Global(_) => "global",
            Value::Call { .. } => "call",
            Value::Object { .. } => "object",
            Value::PersistentId(_) => "persistent id",
        }
    }
}

/// Resource limits for one pickle; exceeding any is [`PickleError::LimitExceeded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting depth of the resulting tree (and of open `MARK`s, times two).
    pub max_depth: usize,
    /// Maximum number of memo entries.
    pub max_memo: usize,
    /// Maximum number of nodes in the resulting tree, counting each expansion
    /// of a shared object separately.
    pub max_nodes: usize,
    /// Maximum total bytes of strings/bytes in the resulting tree, counting
    /// each expansion of a shared object separately.
    pub max_bytes: usize,
}

impl Limits {
    /// Generous limits for a pickle of `len` bytes: real checkpoints are far
    /// below them, while expansion is bounded by a small multiple of the input.
    pub fn for_input_len(len: usize) -> Limits {
        Limits {
            max_depth: 200,
            max_memo: 1 << 22,
            max_nodes: (1usize << 16).saturating_add(len.saturating_mul(16)),
            max_bytes: (1usize << 20).saturating_add(len.saturating_mul(16)),
        }
    }
}

/// Why a pickle could not be read. Offsets are byte positions in the pickle.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    /// The input ends in the middle of an opcode or before `STOP`.
    #[error("pickle data ends early at byte {offset} (truncated file?)")]
    Truncated {
        /// Where more data was needed.
        offset: usize,
    },
    /// A byte that is not a pickle opcode.
    #[error("invalid pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnknownOpcode {
        /// The byte.
        opcode: u8,
        /// Where it is.
        offset: usize,
    },
    /// A valid opcode this reader deliberately does not implement.
    #[error("unsupported pickle opcode {name} at byte {offset}")]
    UnsupportedOpcode {
        /// The opcode's name.
        name: &'static str,
        /// Where it is.
        offset: usize,
    },
    /// A pickle protocol newer than 5.
    #[error("unsupported pickle protocol {protocol} (at most 5 is supported)")]
    UnsupportedProtocol {
        /// The declared protocol.
        protocol: u8,
    },
    /// The pickle references a global that can run code (`os.system`, `builtins.eval`, …).
    #[error(
        "refusing to load: the pickle references `{global}` at byte {offset}, which can run code \
         (the file may be malicious)"
    )]
    ForbiddenGlobal {
        /// `module.name`.
        global: String,
        /// Where it is referenced.
        offset: usize,
    },
    /// The pickle calls or instantiates a global outside the allow-list.
    #[error(
        "the pickle constructs `{global}` (byte {offset}), which is not an allowed tensor or \
         plain-data type; it is not executed"
    )]
    DisallowedCall {
        /// `module.name`.
        global: String,
        /// Where it is called.
        offset: usize,
    },
    /// A `GET` of a memo slot that was never `PUT`.
    #[error("pickle refers to undefined memo entry {index} at byte {offset}")]
    MissingMemo {
        /// The memo index.
        index: u64,
        /// Where it is read.
        offset: usize,
    },
    /// Structurally invalid opcode sequence (e.g. stack underflow).
    #[error("malformed pickle at byte {offset}: {what}")]
    Malformed {
        /// What is wrong.
        what: String,
        /// Where.
        offset: usize,
    },
    /// A resource limit from [`Limits`] was hit.
    #[error("pickle exceeds the {what} limit of {limit}")]
    LimitExceeded {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: usize,
    },
    /// The object graph contains a cycle, which cannot become a tree.
    #[error("pickle object graph is cyclic (an object contains itself)")]
    Cyclic,
    /// Bytes remain after the `STOP` opcode.
    #[error("unexpected data after the end of the pickle at byte {offset}")]
    TrailingData {
        /// Where the extra data starts.
        offset: usize,
    },
}

/// Parses a complete pickle; data after `STOP` is an error.
pub fn parse(bytes: &[u8]) -> Result<Value, PickleError> {
    let (value, used) = parse_prefix(bytes)?;
    if used != bytes.len() {
        return Err(PickleError::TrailingData { offset: used });
    }
    Ok(value)
}

/// Parses one pickle from the start of `bytes` (legacy PyTorch files hold
/// several in a row) and returns it with the number of bytes it occupied.
pub fn parse_prefix(bytes: &[u8]) -> Result<(Value, usize), PickleError> {
    parse_with_limits(bytes, &Limits::for_input_len(bytes.len()))
}

/// [`parse_prefix`] with explicit limits.
pub fn parse_with_limits(bytes: &[u8], limits: &Limits) -> Result<(Value, usize), PickleError> {
    let mut parser = Parser {
        data: bytes,
        pos: 0,
        op_start: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        limits,
    };
    let root = parser.run()?;
    let mut builder = Builder {
        nodes: &parser.nodes,
        on_path: vec![false; parser.nodes.len()],
        nodes_left: limits.max_nodes,
        bytes_left: limits.max_bytes,
        max_depth: limits.max_depth,
    };
    let value = builder.build(root, 0)?;
    Ok((value, parser.pos))
}

/// Index into the parser's node arena.
type Id = usize;

/// An object under construction. Containers hold ids so that memoised objects
/// are shared and later mutations (`SETITEMS` after `PUT`) are seen everywhere,
/// as in Python.
#[derive(Debug)]
enum Node {
    Leaf(Value),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    Call { func: Global, args: Vec<Id> },
    Object { class: Global, args: Vec<Id>, state: Option<Id> },
    PersistentId(Id),
}

/// What calling a global produces; see the module docs for the policy.
enum CallPolicy {
    /// `torch._utils._rebuild_*`: recorded as [`Value::Call`].
    TensorFn,
    /// Dict subclasses: become a [`Value::Dict`].
    DictLike,
    /// `torch.Size`: becomes a tuple.
    TupleLike,
    /// `set`/`frozenset`.
    SetLike,
    /// `_codecs.encode(str, encoding)`: how protocol 2 pickles `bytes`.
    CodecsEncode,
    /// `bytearray(...)`.
    ByteArray,
    /// `copyreg._reconstructor(cls, base, state)`: protocol 0/1 object creation.
    Reconstructor,
    /// Harmless data class: becomes an opaque [`Value::Object`].
    Inert,
    /// Anything else.
    Forbidden,
}

fn call_policy(g: &Global) -> CallPolicy {
    let m = g.module.as_str();
    let n = g.name.as_str();
    match (m, n) {
        (
            "torch._utils",
            "_rebuild_tensor_v2"
            | "_rebuild_tensor"
            | "_rebuild_parameter"
            | "_rebuild_parameter_with_state",
        )
        | ("torch._tensor", "_rebuild_from_type_v2") => CallPolicy::TensorFn,
        ("collections", "OrderedDict" | "defaultdict" | "Counter")
        | ("lightning_fabric.utilities.data", "AttributeDict")
        | ("lightning.fabric.utilities.data", "AttributeDict")
        | ("pytorch_lightning.utilities.parsing", "AttributeDict") => CallPolicy::DictLike,
        ("torch", "Size") => CallPolicy::TupleLike,
        ("builtins" | "__builtin__", "set" | "frozenset") => CallPolicy::SetLike,
        ("_codecs", "encode") => CallPolicy::CodecsEncode,
        ("builtins" | "__builtin__", "bytearray") => CallPolicy::ByteArray,
        ("copyreg" | "copy_reg", "_reconstructor") => CallPolicy::Reconstructor,
        ("argparse", "Namespace")
        | ("types", "SimpleNamespace")
        | ("torch", "device")
        | ("torch.torch_version", "TorchVersion")
        | ("builtins" | "__builtin__", "slice" | "complex" | "range")
        | ("datetime", "datetime" | "date" | "time" | "timedelta" | "timezone")
        | (
            "pathlib" | "pathlib._local",
            "Path" | "PosixPath" | "WindowsPath" | "PurePath" | "PurePosixPath" | "PureWindowsPath",
        )
        | ("numpy", "dtype" | "ndarray")
        | ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar" | "_reconstruct") => {
            CallPolicy::Inert
        }
        _ => CallPolicy::Forbidden,
    }
}

/// Globals no checkpoint has a reason to mention; referencing them is an error.
fn is_dangerous(g: &Global) -> bool {
    const MODULES: &[&str] = &[
        "os",
        "posix",
        "nt",
        "subprocess",
        "sys",
        "shutil",
        "socket",
        "importlib",
        "runpy",
        "pickle",
        "_pickle",
        "cPickle",
        "marshal",
        "ctypes",
        "code",
        "codeop",
        "pty",
        "webbrowser",
        "commands",
        "pdb",
        "timeit",
        "multiprocessing",
        "signal",
        "operator",
        "functools",
        "inspect",
        "types",
        "io",
        "_io",
        "asyncio",
        "urllib",
        "http",
        "ftplib",
        "smtplib",
        "telnetlib",
        "tempfile",
        "glob",
        "zipimport",
        "_posixsubprocess",
        "torch.hub",
        "torch.ops",
        "torch.utils.cpp_extension",
    ];
    const SAFE_BUILTINS: &[&str] = &[
        "set",
        "frozenset",
        "bytearray",
        "bytes",
        "slice",
        "complex",
        "range",
        "list",
        "dict",
        "tuple",
        "int",
        "float",
        "str",
        "bool",
        "object",
    ];
    let m = g.module.as_str();
    if m == "builtins" || m == "__builtin__" {
        return !SAFE_BUILTINS.contains(&g.name.as_str());
    }
    if m == "types" && g.name == "SimpleNamespace" {
        return false;
    }
    MODULES
        .iter()
        .any(|bad| m == *bad || m.strip_prefix(bad).is_some_and(|rest| rest.starts_with('.')))
}

struct Parser<'a> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    nodes: Vec<Node>,
    stack: Vec<Id>,
    /// Stack lengths at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u64, Id>,
    limits: &'a Limits,
}

/// Python 3's `sys.int_info.default_max_str_digits`; longer decimal text
/// integers would make conversion quadratic.
const MAX_INT_DIGITS: usize = 4300;

impl<'a> Parser<'a> {
    fn malformed(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed { what: what.into(), offset: self.op_start }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let data = self.data;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= data.len())
            .ok_or(PickleError::Truncated { offset: data.len() })?;
        let out = data.get(self.pos..end).ok_or(PickleError::Truncated { offset: data.len() })?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, PickleError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A length prefix that must fit in the remaining input.
    fn len_u64(&mut self, n: u64) -> Result<usize, PickleError> {
        usize::try_from(n).map_err(|_| PickleError::Truncated { offset: self.data.len() })
    }

    /// The bytes up to (not including) the next `\n`, consuming the newline.
    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let data = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { offset: data.len() })?;
        let line = rest.get(..n).unwrap_or_default();
        self.pos += n + 1;
        Ok(line)
    }

    fn line_str(&mut self) -> Result<&'a str, PickleError> {
        let line = self.line()?;
        std::str::from_utf8(line).map_err(|_| self.malformed("text argument is not UTF-8"))
    }

    fn utf8(&self, bytes: &[u8]) -> Result<String, PickleError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("string is not valid UTF-8"))
    }

    fn base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn alloc(&mut self, node: Node) -> Result<Id, PickleError> {
        if self.nodes.len() >= self.limits.max_nodes {
            return Err(PickleError::LimitExceeded {
                what: "object count",
                limit: self.limits.max_nodes,
            });
        }
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    fn push_new(&mut self, node: Node) -> Result<(), PickleError> {
        let id = self.alloc(node)?;
        self.stack.push(id);
        Ok(())
    }

    fn push_value(&mut self, v: Value) -> Result<(), PickleError> {
        self.push_new(Node::Leaf(v))
    }

    fn pop(&mut self) -> Result<Id, PickleError> {
        if self.stack.len() <= self.base() {
            return Err(self.malformed("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.malformed("stack underflow"))
    }

    fn top(&self) -> Result<Id, PickleError> {
        if self.stack.len() <= self.base() {
            return Err(self.malformed("stack underflow"));
        }
        self.stack.last().copied().ok_or_else(|| self.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>, PickleError> {
        let base = self.marks.pop().ok_or_else(|| self.malformed("no MARK on the stack"))?;
        if base > self.stack.len() {
            return Err(self.malformed("stack underflow"));
        }
        Ok(self.stack.split_off(base))
    }

    fn node(&self, id: Id) -> Result<&Node, PickleError> {
        self.nodes.get(id).ok_or_else(|| self.malformed("internal: dangling object id"))
    }

    fn node_mut(&mut self, id: Id) -> Result<&mut Node, PickleError> {
        let offset = self.op_start;
        self.nodes
            .get_mut(id)
            .ok_or(PickleError::Malformed { what: "internal: dangling object id".into(), offset })
    }

    fn leaf(&self, id: Id) -> Option<&Value> {
        match self.nodes.get(id) {
            Some(Node::Leaf(v)) => Some(v),
            _ => None,
        }
    }

    fn node_kind(&self, id: Id) -> &'static str {
        match self.nodes.get(id) {
            Some(Node::Leaf(v)) => v.type_name(),
            Some(Node::Tuple(_)) => "tuple",
            Some(Node::List(_)) => "list",
            Some(Node::Dict(_)) => "dict",
            Some(Node::Set(_)) => "set",
            Some(Node::Call { .. }) => "call result",
            Some(Node::Object { .. }) => "object",
            Some(Node::PersistentId(_)) => "persistent id",
            None => "nothing",
        }
    }

    fn global_of(&self, id: Id, what: &str) -> Result<Global, PickleError> {
        match self.leaf(id) {
            Some(Value::Global(g)) => Ok(g.clone()),
            _ => {
                Err(self
                    .malformed(format!("{what} expects a global, found a {}", self.node_kind(id))))
            }
        }
    }

    fn tuple_items(&self, id: Id, what: &str) -> Result<Vec<Id>, PickleError> {
        match self.node(id)? {
            Node::Tuple(items) => Ok(items.clone()),
            _ => Err(self.malformed(format!(
                "{what} expects an argument tuple, found a {}",
                self.node_kind(id)
            ))),
        }
    }

    fn memo_put(&mut self, index: u64) -> Result<(), PickleError> {
        let id = self.top()?;
        if !self.memo.contains_key(&index) && self.memo.len() >= self.limits.max_memo {
            return Err(PickleError::LimitExceeded {
                what: "memo size",
                limit: self.limits.max_memo,
            });
        }
        self.memo.insert(index, id);
        Ok(())
    }

    fn memo_get(&mut self, index: u64) -> Result<(), PickleError> {
        let id = *self
            .memo
            .get(&index)
            .ok_or(PickleError::MissingMemo { index, offset: self.op_start })?;
        self.stack.push(id);
        Ok(())
    }

    fn global(&mut self, module: String, name: String) -> Result<Global, PickleError> {
        let g = Global { module, name };
        if is_dangerous(&g) {
            return Err(PickleError::ForbiddenGlobal {
                global: g.to_string(),
                offset: self.op_start,
            });
        }
        Ok(g)
    }

    fn disallowed(&self, g: &Global) -> PickleError {
        PickleError::DisallowedCall { global: g.to_string(), offset: self.op_start }
    }

    /// `func(*args)` under the allow-list policy.
    fn reduce(&mut self, func: Global, args: Vec<Id>) -> Result<Node, PickleError> {
        match call_policy(&func) {
            CallPolicy::TensorFn => Ok(Node::Call { func, args }),
            CallPolicy::DictLike => self.dict_from_args(&args),
            CallPolicy::TupleLike => match args.first() {
                None => Ok(Node::Tuple(Vec::new())),
                Some(&a) => match self.node(a)? {
                    Node::Tuple(v) | Node::List(v) => Ok(Node::Tuple(v.clone())),
                    _ => Err(self.malformed(format!("{func} expects a tuple"))),
                },
            },
            CallPolicy::SetLike => match args.first() {
                None => Ok(Node::Set(Vec::new())),
                Some(&a) => match self.node(a)? {
                    Node::Tuple(v) | Node::List(v) | Node::Set(v) => Ok(Node::Set(v.clone())),
                    _ => Err(self.malformed(format!("{func} expects a sequence"))),
                },
            },
            CallPolicy::CodecsEncode => {
                let text = args.first().and_then(|&a| self.leaf(a));
                let encoding = args.get(1).and_then(|&a| self.leaf(a));
                match (text, encoding) {
                    (Some(Value::Str(s)), enc) => {
                        let enc = match enc {
                            None => "utf-8",
                            Some(Value::Str(e)) => e.as_str(),
                            Some(_) => return Err(self.malformed("_codecs.encode: bad encoding")),
                        };
                        let bytes = self.encode(s, enc)?;
                        Ok(Node::Leaf(Value::Bytes(bytes)))
                    }
                    _ => Err(self.malformed("_codecs.encode expects (str, encoding)")),
                }
            }
            CallPolicy::ByteArray => {
                let first = args.first().and_then(|&a| self.leaf(a));
                match first {
                    None if args.is_empty() => Ok(Node::Leaf(Value::Bytes(Vec::new()))),
                    Some(Value::Bytes(b)) => Ok(Node::Leaf(Value::Bytes(b.clone()))),
                    Some(Value::Str(s)) => {
                        let enc = match args.get(1).and_then(|&a| self.leaf(a)) {
                            Some(Value::Str(e)) => e.as_str(),
                            _ => "utf-8",
                        };
                        let bytes = self.encode(s, enc)?;
                        Ok(Node::Leaf(Value::Bytes(bytes)))
                    }
                    _ => Err(self.malformed("bytearray expects bytes or (str, encoding)")),
                }
            }
            CallPolicy::Reconstructor => {
                let class = match args.first() {
                    Some(&c) => self.global_of(c, "copyreg._reconstructor")?,
                    None => return Err(self.malformed("copyreg._reconstructor needs a class")),
                };
                self.newobj(class, Vec::new())
            }
            CallPolicy::Inert => Ok(Node::Object { class: func, args, state: None }),
            CallPolicy::Forbidden => Err(self.disallowed(&func)),
        }
    }

    /// `cls.__new__(cls, *args)` under the allow-list policy.
    fn newobj(&mut self, class: Global, args: Vec<Id>) -> Result<Node, PickleError> {
        match call_policy(&class) {
            CallPolicy::DictLike => Ok(Node::Dict(Vec::new())),
            CallPolicy::SetLike => Ok(Node::Set(Vec::new())),
            CallPolicy::Inert => Ok(Node::Object { class, args, state: None }),
            _ => Err(self.disallowed(&class)),
        }
    }

    fn dict_from_args(&self, args: &[Id]) -> Result<Node, PickleError> {
        let Some(&first) = args.first() else {
            return Ok(Node::Dict(Vec::new()));
        };
        match self.node(first)? {
            Node::Dict(entries) => Ok(Node::Dict(entries.clone())),
            Node::List(items) | Node::Tuple(items) => {
                let mut entries = Vec::with_capacity(items.len());
                for &item in items {
                    match self.node(item)? {
                        Node::Tuple(kv) | Node::List(kv) => match kv.as_slice() {
                            [k, v] => entries.push((*k, *v)),
                            _ => return Err(self.malformed("dict item is not a pair")),
                        },
                        _ => return Err(self.malformed("dict item is not a pair")),
                    }
                }
                Ok(Node::Dict(entries))
            }
            // e.g. defaultdict(list): the factory is only a reference.
            _ => Ok(Node::Dict(Vec::new())),
        }
    }

    fn encode(&self, s: &str, encoding: &str) -> Result<Vec<u8>, PickleError> {
        match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" => s
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| self.malformed("character outside latin-1 in _codecs.encode")),
            "utf-8" | "utf8" | "ascii" => Ok(s.as_bytes().to_vec()),
            other => Err(self.malformed(format!("unsupported encoding {other:?}"))),
        }
    }

    fn run(&mut self) -> Result<Id, PickleError> {
        loop {
            self.op_start = self.pos;
            let op = self.u8()?;
            match op {
                // PROTO
                0x80 => {
                    let protocol = self.u8()?;
                    if protocol > 5 {
                        return Err(PickleError::UnsupportedProtocol { protocol });
                    }
                }
                // FRAME: framing is only a buffering hint; check it is in bounds.
                0x95 => {
                    let n = self.u64()?;
                    let n = self.len_u64(n)?;
                    if n > self.data.len().saturating_sub(self.pos) {
                        return Err(PickleError::Truncated { offset: self.data.len() });
                    }
                }
                // STOP
                b'.' => return self.pop(),
                // MARK
                b'(' => {
                    if self.marks.len() >= self.limits.max_depth.saturating_mul(2) {
                        return Err(PickleError::LimitExceeded {
                            what: "nesting depth",
                            limit: self.limits.max_depth,
                        });
                    }
                    self.marks.push(self.stack.len());
                }
                // POP: pops an item, or a MARK if the current frame is empty.
                b'0' => {
                    if self.stack.len() > self.base() {
                        self.pop()?;
                    } else {
                        self.pop_mark()?;
                    }
                }
                // POP_MARK
                b'1' => {
                    self.pop_mark()?;
                }
                // DUP
                b'2' => {
                    let id = self.top()?;
                    self.stack.push(id);
                }
                // NONE, NEWTRUE, NEWFALSE
                b'N' => self.push_value(Value::None)?,
                0x88 => self.push_value(Value::Bool(true))?,
                0x89 => self.push_value(Value::Bool(false))?,
                // BININT, BININT1, BININT2
                b'J' => {
                    let v = self.i32()?;
                    self.push_value(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push_value(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push_value(Value::Int(v.into()))?;
                }
                // LONG1, LONG4
                0x8a => {
                    let n = self.u8()?;
                    let bytes = self.take(n.into())?;
                    self.push_value(int_from_le(bytes))?;
                }
                0x8b => {
                    let n = self.i32()?;
                    let n = usize::try_from(n).map_err(|_| self.malformed("negative length"))?;
                    let bytes = self.take(n)?;
                    self.push_value(int_from_le(bytes))?;
                }
                // INT (text; "00"/"01" are protocol 0 booleans)
                b'I' => {
                    let line = self.line_str()?;
                    let v = match line {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        _ => self.text_int(line)?,
                    };
                    self.push_value(v)?;
                }
                // LONG (text, trailing 'L' in Python 2)
                b'L' => {
                    let line = self.line_str()?;
                    let v = self.text_int(line.strip_suffix('L').unwrap_or(line))?;
                    self.push_value(v)?;
                }
                // FLOAT (text), BINFLOAT (big-endian)
                b'F' => {
                    let line = self.line_str()?;
                    let v: f64 =
                        line.trim().parse().map_err(|_| self.malformed("invalid float literal"))?;
                    self.push_value(Value::Float(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push_value(Value::Float(v))?;
                }
                // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                b'X' => {
                    let n = self.u32()?;
                    self.push_unicode(n.into())?;
                }
                0x8c => {
                    let n = self.u8()?;
                    self.push_unicode(n.into())?;
                }
                0x8d => {
                    let n = self.u64()?;
                    self.push_unicode(n)?;
                }
                // UNICODE (raw-unicode-escape text)
                b'V' => {
                    let line = self.line()?;
                    let s = raw_unicode_escape(line)
                        .ok_or_else(|| self.malformed("invalid raw-unicode-escape string"))?;
                    self.push_value(Value::Str(s))?;
                }
                // BINSTRING, SHORT_BINSTRING, STRING: Python 2 `str`.
                b'T' => {
                    let n = self.i32()?;
                    let n = usize::try_from(n).map_err(|_| self.malformed("negative length"))?;
                    let bytes = self.take(n)?;
                    self.push_value(py2_str(bytes.to_vec()))?;
                }
                b'U' => {
                    let n = self.u8()?;
                    let bytes = self.take(n.into())?;
                    self.push_value(py2_str(bytes.to_vec()))?;
                }
                b'S' => {
                    let line = self.line()?;
                    let bytes = string_escape(line)
                        .ok_or_else(|| self.malformed("invalid quoted string"))?;
                    self.push_value(py2_str(bytes))?;
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
                b'B' => {
                    let n = self.u32()?;
                    self.push_bytes(n.into())?;
                }
                b'C' => {
                    let n = self.u8()?;
                    self.push_bytes(n.into())?;
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    self.push_bytes(n)?;
                }
                // EMPTY_TUPLE, TUPLE, TUPLE1-3
                b')' => self.push_new(Node::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_new(Node::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop()?;
                    }
                    self.push_new(Node::Tuple(items))?;
                }
                // EMPTY_LIST, LIST, APPEND, APPENDS
                b']' => self.push_new(Node::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_new(Node::List(items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.extend_list(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items)?;
                }
                // EMPTY_DICT, DICT, SETITEM, SETITEMS
                b'}' => self.push_new(Node::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(&items)?;
                    self.push_new(Node::Dict(pairs))?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.extend_dict(vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(&items)?;
                    self.extend_dict(pairs)?;
                }
                // EMPTY_SET, ADDITEMS, FROZENSET
                0x8f => self.push_new(Node::Set(Vec::new()))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    let kind = self.node_kind(target);
                    match self.node_mut(target)? {
                        Node::Set(v) => v.extend(items),
                        _ => return Err(self.malformed(format!("ADDITEMS on a {kind}"))),
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push_new(Node::Set(items))?;
                }
                // GLOBAL, STACK_GLOBAL
                b'c' => {
                    let module = self.line_str()?.to_owned();
                    let name = self.line_str()?.to_owned();
                    let g = self.global(module, name)?;
                    self.push_value(Value::Global(g))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(Value::Str(module)), Some(Value::Str(name))) =
                        (self.leaf(module), self.leaf(name))
                    else {
                        return Err(self.malformed("STACK_GLOBAL expects two strings"));
                    };
                    let g = self.global(module.clone(), name.clone())?;
                    self.push_value(Value::Global(g))?;
                }
                // REDUCE
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let func = self.global_of(func, "REDUCE")?;
                    let args = self.tuple_items(args, "REDUCE")?;
                    let node = self.reduce(func, args)?;
                    self.push_new(node)?;
                }
                // NEWOBJ, NEWOBJ_EX (keyword arguments are dropped: objects stay opaque)
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let class = self.global_of(class, "NEWOBJ")?;
                    let args = self.tuple_items(args, "NEWOBJ")?;
                    let node = self.newobj(class, args)?;
                    self.push_new(node)?;
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let class = self.global_of(class, "NEWOBJ_EX")?;
                    let args = self.tuple_items(args, "NEWOBJ_EX")?;
                    let node = self.newobj(class, args)?;
                    self.push_new(node)?;
                }
                // INST, OBJ: protocol 0/1 instantiation, i.e. a call.
                b'i' => {
                    let module = self.line_str()?.to_owned();
                    let name = self.line_str()?.to_owned();
                    let class = self.global(module, name)?;
                    let args = self.pop_mark()?;
                    let node = self.reduce(class, args)?;
                    self.push_new(node)?;
                }
                b'o' => {
                    let items = self.pop_mark()?;
                    let (&class, args) =
                        items.split_first().ok_or_else(|| self.malformed("OBJ without a class"))?;
                    let class = self.global_of(class, "OBJ")?;
                    let node = self.reduce(class, args.to_vec())?;
                    self.push_new(node)?;
                }
                // BUILD: set state on an object; ignored for dicts and tensors.
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    let kind = self.node_kind(target);
                    match self.node_mut(target)? {
                        Node::Object { state: s, .. } => *s = Some(state),
                        Node::Dict(_) | Node::Call { .. } => {}
                        _ => return Err(self.malformed(format!("BUILD on a {kind}"))),
                    }
                }
                // PUT, BINPUT, LONG_BINPUT, MEMOIZE
                b'p' => {
                    let index = self.text_index()?;
                    self.memo_put(index)?;
                }
                b'q' => {
                    let index = self.u8()?;
                    self.memo_put(index.into())?;
                }
                b'r' => {
                    let index = self.u32()?;
                    self.memo_put(index.into())?;
                }
                0x94 => {
                    let index = self.memo.len() as u64;
                    self.memo_put(index)?;
                }
                // GET, BINGET, LONG_BINGET
                b'g' => {
                    let index = self.text_index()?;
                    self.memo_get(index)?;
                }
                b'h' => {
                    let index = self.u8()?;
                    self.memo_get(index.into())?;
                }
                b'j' => {
                    let index = self.u32()?;
                    self.memo_get(index.into())?;
                }
                // PERSID, BINPERSID
                b'P' => {
                    let line = self.line()?;
                    let s = self.utf8(line)?;
                    let id = self.alloc(Node::Leaf(Value::Str(s)))?;
                    self.push_new(Node::PersistentId(id))?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push_new(Node::PersistentId(pid))?;
                }
                // EXT1, EXT2, EXT4: the extension registry maps codes to arbitrary globals.
                0x82..=0x84 => {
                    return Err(PickleError::UnsupportedOpcode {
                        name: "EXT (extension registry)",
                        offset: self.op_start,
                    })
                }
                // NEXT_BUFFER, READONLY_BUFFER: out-of-band buffers are never used by torch.save.
                0x97 | 0x98 => {
                    return Err(PickleError::UnsupportedOpcode {
                        name: "out-of-band buffer",
                        offset: self.op_start,
                    })
                }
                _ => return Err(PickleError::UnknownOpcode { opcode: op, offset: self.op_start }),
            }
        }
    }

    fn push_unicode(&mut self, n: u64) -> Result<(), PickleError> {
        let n = self.len_u64(n)?;
        let bytes = self.take(n)?;
        let s = self.utf8(bytes)?;
        self.push_value(Value::Str(s))
    }

    fn push_bytes(&mut self, n: u64) -> Result<(), PickleError> {
        let n = self.len_u64(n)?;
        let bytes = self.take(n)?;
        self.push_value(Value::Bytes(bytes.to_vec()))
    }

    fn text_index(&mut self) -> Result<u64, PickleError> {
        let line = self.line_str()?;
        line.trim().parse().map_err(|_| self.malformed("invalid memo index"))
    }

    fn text_int(&self, text: &str) -> Result<Value, PickleError> {
        let text = text.trim();
        if let Ok(v) = text.parse::<i64>() {
            return Ok(Value::Int(v));
        }
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text.strip_prefix('+').unwrap_or(text)),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.malformed("invalid integer literal"));
        }
        if digits.len() > MAX_INT_DIGITS {
            return Err(PickleError::LimitExceeded {
                what: "integer digit count",
                limit: MAX_INT_DIGITS,
            });
        }
        Ok(int_from_le(&decimal_to_twos_complement(digits, negative)))
    }

    fn pairs(&self, items: &[Id]) -> Result<Vec<(Id, Id)>, PickleError> {
        let chunks = items.chunks_exact(2);
        if !chunks.remainder().is_empty() {
            return Err(self.malformed("odd number of items for a dict"));
        }
        Ok(chunks
            .filter_map(|c| match c {
                [k, v] => Some((*k, *v)),
                _ => None,
            })
            .collect())
    }

    fn extend_list(&mut self, items: Vec<Id>) -> Result<(), PickleError> {
        let target = self.top()?;
        let kind = self.node_kind(target);
        match self.node_mut(target)? {
            Node::List(v) => {
                v.extend(items);
                Ok(())
            }
            _ => Err(self.malformed(format!("APPEND to a {kind}"))),
        }
    }

    fn extend_dict(&mut self, pairs: Vec<(Id, Id)>) -> Result<(), PickleError> {
        let target = self.top()?;
        let kind = self.node_kind(target);
        match self.node_mut(target)? {
            Node::Dict(v) => {
                v.extend(pairs);
                Ok(())
            }
            _ => Err(self.malformed(format!("SETITEM on a {kind}"))),
        }
    }
}

/// Decodes a little-endian two's-complement integer, as `LONG1`/`LONG4` store it.
fn int_from_le(bytes: &[u8]) -> Value {
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0x00 };
    // Drop redundant sign-extension bytes so equal numbers compare equal.
    let mut len = bytes.len();
    while len > 1 {
        let (Some(&top), Some(&next)) = (bytes.get(len - 1), bytes.get(len - 2)) else {
            break;
        };
        if top == fill && (next & 0x80 != 0) == negative {
            len -= 1;
        } else {
            break;
        }
    }
    let bytes = bytes.get(..len).unwrap_or_default();
    if bytes.len() <= 8 {
        let mut buf = [fill; 8];
        for (dst, src) in buf.iter_mut().zip(bytes) {
            *dst = *src;
        }
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(bytes.to_vec())
    }
}

/// Converts decimal digits to little-endian two's-complement bytes.
fn decimal_to_twos_complement(digits: &str, negative: bool) -> Vec<u8> {
    let mut mag: Vec<u8> = vec![0];
    for d in digits.bytes() {
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    // Room for the sign bit.
    mag.push(0);
    if negative {
        let mut carry = 1u16;
        for byte in mag.iter_mut() {
            let v = u16::from(!*byte) + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
    }
    mag
}

/// A Python 2 `str`: text if it is UTF-8, else raw bytes.
fn py2_str(bytes: Vec<u8>) -> Value {
    match String::from_utf8(bytes) {
        Ok(s) => Value::Str(s),
        Err(e) => Value::Bytes(e.into_bytes()),
    }
}

/// Decodes the `STRING` opcode's quoted, backslash-escaped argument.
fn string_escape(line: &[u8]) -> Option<Vec<u8>> {
    let (&q, rest) = line.split_first()?;
    if q != b'\'' && q != b'"' {
        return None;
    }
    let (&last, inner) = rest.split_last()?;
    if last != q {
        return None;
    }
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while let Some(&b) = inner.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let &e = inner.get(i)?;
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let hex = inner.get(i..i + 2)?;
                i += 2;
                let s = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(s, 16).ok()?);
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Decodes the `UNICODE` opcode's raw-unicode-escape argument: latin-1 bytes
/// plus `\uXXXX`/`\UXXXXXXXX` escapes.
fn raw_unicode_escape(line: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while let Some(&b) = line.get(i) {
        let width = match (b, line.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if width == 0 {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let hex = line.get(i + 2..i + 2 + width)?;
        let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        out.push(char::from_u32(code)?);
        i += 2 + width;
    }
    Some(out)
}

/// Expands the arena into a [`Value`] tree under the node/byte/depth budget.
struct Builder<'a> {
    nodes: &'a [Node],
    on_path: Vec<bool>,
    nodes_left: usize,
    bytes_left: usize,
    max_depth: usize,
}

impl Builder<'_> {
    fn charge(&mut self, nodes: usize, bytes: usize) -> Result<(), PickleError> {
        self.nodes_left = self
            .nodes_left
            .checked_sub(nodes)
            .ok_or(PickleError::LimitExceeded { what: "expanded object count", limit: 0 })?;
        self.bytes_left = self
            .bytes_left
            .checked_sub(bytes)
            .ok_or(PickleError::LimitExceeded { what: "expanded byte count", limit: 0 })?;
        Ok(())
    }

    fn build(&mut self, id: Id, depth: usize) -> Result<Value, PickleError> {
        if depth > self.max_depth {
            return Err(PickleError::LimitExceeded {
                what: "nesting depth",
                limit: self.max_depth,
            });
        }
        let nodes = self.nodes;
        let node = nodes.get(id).ok_or(PickleError::Malformed {
            what: "internal: dangling object id".into(),
            offset: 0,
        })?;
        if let Node::Leaf(v) = node {
            let bytes = match v {
                Value::Str(s) => s.len(),
                Value::Bytes(b) | Value::BigInt(b) => b.len(),
                Value::Global(g) => g.module.len() + g.name.len(),
                _ => 0,
            };
            self.charge(1, bytes)?;
            return Ok(v.clone());
        }
        self.charge(1, 0)?;
        match self.on_path.get_mut(id) {
            Some(flag) if *flag => return Err(PickleError::Cyclic),
            Some(flag) => *flag = true,
            None => return Err(PickleError::Cyclic),
        }
        let value = match node {
            Node::Leaf(v) => v.clone(),
            Node::Tuple(ids) => Value::Tuple(self.build_all(ids, depth)?),
            Node::List(ids) => Value::List(self.build_all(ids, depth)?),
            Node::Set(ids) => Value::Set(self.build_all(ids, depth)?),
            Node::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len().min(self.nodes_left));
                for &(k, v) in pairs {
                    let k = self.build(k, depth + 1)?;
                    let v = self.build(v, depth + 1)?;
                    out.push((k, v));
                }
                Value::Dict(out)
            }
            Node::Call { func, args } => {
                self.charge(0, func.module.len() + func.name.len())?;
                Value::Call { func: func.clone(), args: self.build_all(args, depth)? }
            }
            Node::Object { class, args, state } => {
                self.charge(0, class.module.len() + class.name.len())?;
                let args = self.build_all(args, depth)?;
                let state = match state {
                    Some(s) => Some(Box::new(self.build(*s, depth + 1)?)),
                    None => None,
                };
                Value::Object { class: class.clone(), args, state }
            }
            Node::PersistentId(pid) => Value::PersistentId(Box::new(self.build(*pid, depth + 1)?)),
        };
        if let Some(flag) = self.on_path.get_mut(id) {
            *flag = false;
        }
        Ok(value)
    }

    fn build_all(&mut self, ids: &[Id], depth: usize) -> Result<Vec<Value>, PickleError> {
        let mut out = Vec::with_capacity(ids.len().min(self.nodes_left));
        for &id in ids {
            out.push(self.build(id, depth + 1)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(bytes: &[u8]) -> Result<Value, PickleError> {
        parse(bytes)
    }

    #[test]
    fn scalars_protocol_2() {
        // (None, True, False, 1, -2, 300, 2**40, 1.5, 'hé', b'ab')
        let mut b = vec![0x80, 2, b'('];
        b.extend_from_slice(b"N\x88\x89K\x01J\xfe\xff\xff\xffM\x2c\x01");
        b.extend_from_slice(&[0x8a, 6, 0, 0, 0, 0, 0, 1]);
        b.push(b'G');
        b.extend_from_slice(&1.5f64.to_be_bytes());
        b.extend_from_slice(b"X\x03\x00\x00\x00h\xc3\xa9");
        b.extend_from_slice(b"C\x02ab");
        b.extend_from_slice(b"t.");
        let v = p(&b).unwrap();
        assert_eq!(
            v,
            Value::Tuple(vec![
                Value::None,
                Value::Bool(true),
                Value::Bool(false),
                Value::Int(1),
                Value::Int(-2),
                Value::Int(300),
                Value::Int(1 << 40),
                Value::Float(1.5),
                Value::Str("hé".into()),
                Value::Bytes(b"ab".to_vec()),
            ])
        );
    }

    #[test]
    fn long1_big_and_negative() {
        // The legacy torch magic number needs more than 64 bits.
        let magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
        let mut b = vec![0x80, 2, 0x8a, 10];
        b.extend_from_slice(&magic);
        b.push(b'.');
        assert_eq!(p(&b).unwrap(), Value::BigInt(magic.to_vec()));
        assert_eq!(int_from_le(&[0xff]), Value::Int(-1));
        assert_eq!(int_from_le(&[]), Value::Int(0));
        assert_eq!(int_from_le(&[0x00, 0x80, 0x00]), Value::Int(0x8000));
        assert_eq!(
            int_from_le(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            Value::BigInt(vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff])
        );
    }

    #[test]
    fn text_protocol_0() {
        // Python 2 `pickle.dumps({'a': [1, 2.5, 'x', u'\u00e9']}, 0)`-style text.
        let b = b"(dp0\nS'a'\np1\n(lp2\nI1\naF2.5\naS'x\\n'\np3\naV\\u00e9\np4\nas.";
        let v = p(b).unwrap();
        assert_eq!(
            v,
            Value::Dict(vec![(
                Value::Str("a".into()),
                Value::List(vec![
                    Value::Int(1),
                    Value::Float(2.5),
                    Value::Str("x\n".into()),
                    Value::Str("é".into()),
                ])
            )])
        );
    }

    #[test]
    fn text_long_and_bool() {
        let v = p(b"(I01\nL123456789012345678901234567890L\nL-5L\nt.").unwrap();
        let items = v.as_items().unwrap();
        assert_eq!(items[0], Value::Bool(true));
        assert_eq!(items[2], Value::Int(-5));
        // 123456789012345678901234567890 = 0x18EE90FF6C373E0EE4E3F0AD2
        let Value::BigInt(bytes) = &items[1] else {
            panic!("expected a big int, got {:?}", items[1]);
        };
        assert_eq!(
            bytes,
            &[0xd2, 0x0a, 0x3f, 0x4e, 0xee, 0xe0, 0x73, 0xc3, 0xf6, 0x0f, 0xe9, 0x8e, 0x01]
        );
        let neg = decimal_to_twos_complement("1", true);
        assert_eq!(int_from_le(&neg), Value::Int(-1));
    }

    #[test]
    fn memo_shares_mutations() {
        // d = {}; memo[0] = d; d['k'] = 1; return [d, d]  (PUT before SETITEM)
        let b = b"\x80\x02]q\x00(}q\x01h\x01X\x01\x00\x00\x00kK\x01se.";
        let v = p(b);
        // The list contains d, then d again after mutation via the shared id.
        let expected_d = Value::Dict(vec![(Value::Str("k".into()), Value::Int(1))]);
        // Sequence: [] PUT0 MARK {} PUT1 GET1 'k' 1 SETITEM -> stack [.., d, d] APPENDS
        assert_eq!(v.unwrap(), Value::List(vec![expected_d.clone(), expected_d]));
    }

    #[test]
    fn protocol_4_frame_stack_global_memoize() {
        // pickle.dumps(collections.OrderedDict(a=1), protocol=4)
        let b = b"\x80\x04\x95)\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01a\x94K\x01s.";
        let v = p(b).unwrap();
        assert_eq!(v, Value::Dict(vec![(Value::Str("a".into()), Value::Int(1))]));
    }

    #[test]
    fn os_system_global_reduce_is_rejected() {
        let b = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let err = p(b).unwrap_err();
        assert!(
            matches!(err, PickleError::ForbiddenGlobal { ref global, .. } if global == "os.system")
        );
        assert!(err.to_string().contains("os.system"));
    }

    #[test]
    fn eval_via_stack_global_is_rejected() {
        let b = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93\x8c\x041+1\x85R.";
        let err = p(b).unwrap_err();
        assert!(err.to_string().contains("builtins.eval"), "{err}");
    }

    #[test]
    fn unknown_class_call_is_disallowed_but_reference_is_inert() {
        let call = b"\x80\x02cmypkg\nThing\n)R.";
        let err = p(call).unwrap_err();
        assert!(
            matches!(err, PickleError::DisallowedCall { ref global, .. } if global == "mypkg.Thing")
        );
        let reference = b"\x80\x02cmypkg\nThing\n.";
        assert_eq!(
            p(reference).unwrap(),
            Value::Global(Global { module: "mypkg".into(), name: "Thing".into() })
        );
    }

    #[test]
    fn namespace_is_inert_object() {
        let b = b"\x80\x02cargparse\nNamespace\n)\x81}X\x02\x00\x00\x00lrG?\xb9\x99\x99\x99\x99\x99\x9asb.";
        let v = p(b).unwrap();
        let Value::Object { class, state, .. } = v else {
            panic!("expected object");
        };
        assert_eq!(class.to_string(), "argparse.Namespace");
        assert_eq!(state.unwrap().get("lr"), Some(&Value::Float(0.1)));
    }

    #[test]
    fn codecs_encode_bytes() {
        let b =
            b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00a\xc3\xbfX\x06\x00\x00\x00latin1\x86R.";
        assert_eq!(p(b).unwrap(), Value::Bytes(vec![b'a', 0xff]));
    }

    #[test]
    fn truncated_inputs_error() {
        let full = b"\x80\x02}q\x00X\x01\x00\x00\x00aK\x01s.";
        assert!(p(full).is_ok());
        for n in 0..full.len() {
            let err = p(&full[..n]).unwrap_err();
            assert!(matches!(err, PickleError::Truncated { .. }), "prefix {n}: {err:?}");
        }
    }

    #[test]
    fn memo_bomb_hits_limit() {
        // l0 = []; repeat: l = [l, l] via DUP-free GET pairs -> 2^k expansion.
        let mut b = vec![0x80, 2, b']', b'q', 0];
        for i in 0..60u8 {
            b.extend_from_slice(&[b'h', i, b'h', i, 0x86, b'q', i + 1]);
        }
        b.push(b'.');
        let err = p(&b).unwrap_err();
        assert!(matches!(err, PickleError::LimitExceeded { .. }), "{err:?}");
    }

    #[test]
    fn deep_nesting_hits_limit() {
        let mut b = vec![0x80, 2];
        b.extend(std::iter::repeat_n(b']', 100_000));
        b.extend(std::iter::repeat_n(b'a', 99_999));
        b.push(b'.');
        let err = p(&b).unwrap_err();
        assert!(matches!(err, PickleError::LimitExceeded { .. }), "{err:?}");
        let mut marks = vec![0x80, 2];
        marks.extend(std::iter::repeat_n(b'(', 100_000));
        assert!(matches!(p(&marks).unwrap_err(), PickleError::LimitExceeded { .. }));
    }

    #[test]
    fn cycle_is_an_error() {
        // l = []; l.append(l)
        let b = b"\x80\x02]q\x00h\x00a.";
        assert_eq!(p(b).unwrap_err(), PickleError::Cyclic);
    }

    #[test]
    fn malformed_inputs_error() {
        for bad in [
            &b"."[..],
            b"a.",
            b"\x80\x06N.",
            b"\x80\x02h\x05.",
            b"\x80\x02(u.",
            b"\x80\x02K\x01K\x02R.",
            b"\x80\x02\xff",
            b"\x80\x02\x82\x01.",
            b"\x80\x02N.N",
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn string_escapes() {
        assert_eq!(string_escape(b"'a\\x41\\101\\\\\\''").unwrap(), b"aAA\\'".to_vec());
        assert!(string_escape(b"'a").is_none());
        assert_eq!(raw_unicode_escape(b"a\\u005cb").unwrap(), "a\\b");
    }
}
