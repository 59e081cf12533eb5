//! Checkpoints assembled byte by byte: a small pickle writer plus the `zip` and
//! `safetensors` crates, to reach layouts and failures real files rarely show.

use std::io::Write;

use shortcut_tools::checkpoint::{read_checkpoint_bytes, CheckpointError, RawTensor};

/// Emits protocol-2 pickle opcodes.
#[derive(Default)]
struct Pickle(Vec<u8>);

struct TensorDef<'a> {
    storage_type: &'a str,
    key: &'a str,
    numel: i32,
    offset: i32,
    shape: &'a [i32],
    stride: &'a [i32],
}

impl Pickle {
    fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }
    fn raw(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.raw(s.as_bytes())
    }
    fn int(&mut self, i: i32) -> &mut Self {
        self.0.push(b'J');
        self.raw(&i.to_le_bytes())
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.raw(format!("c{module}\n{name}\n").as_bytes())
    }
    fn ints(&mut self, v: &[i32]) -> &mut Self {
        self.raw(b"(");
        for &i in v {
            self.int(i);
        }
        self.raw(b"t")
    }
    fn tensor(&mut self, t: &TensorDef) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").raw(b"((");
        self.str("storage")
            .global("torch", t.storage_type)
            .str(t.key)
            .str("cpu")
            .int(t.numel)
            .raw(b"tQ");
        self.int(t.offset).ints(t.shape).ints(t.stride);
        self.raw(b"\x89").global("collections", "OrderedDict").raw(b")R").raw(b"tR")
    }
    /// `{key: tensor, ...}` as a plain dict.
    fn state_dict(&mut self, entries: &[(&str, TensorDef)]) -> &mut Self {
        self.raw(b"}(");
        for (k, t) in entries {
            self.str(k).tensor(t);
        }
        self.raw(b"u")
    }
    fn finish(&mut self) -> Vec<u8> {
        self.raw(b".");
        std::mem::take(&mut self.0)
    }
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn zip_archive(entries: &[(&str, &[u8])], deflate: bool) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let method =
        if deflate { zip::CompressionMethod::Deflated } else { zip::CompressionMethod::Stored };
    let opts = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn torch_zip(pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut entries: Vec<(String, &[u8])> = vec![("ckpt/data.pkl".into(), pickle)];
    for (k, v) in storages {
        entries.push((format!("ckpt/data/{k}"), v));
    }
    let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    zip_archive(&refs, false)
}

fn t<'a>(
    key: &'a str,
    numel: i32,
    offset: i32,
    shape: &'a [i32],
    stride: &'a [i32],
) -> TensorDef<'a> {
    TensorDef { storage_type: "FloatStorage", key, numel, offset, shape, stride }
}

fn tensor(shape: &[usize], data: &[f32]) -> RawTensor {
    RawTensor { shape: shape.to_vec(), data: data.to_vec() }
}

#[test]
fn shared_storage_offsets_and_strides() {
    let pkl = Pickle::new()
        .state_dict(&[
            ("a", t("0", 6, 0, &[2, 3], &[3, 1])),
            ("at", t("0", 6, 0, &[3, 2], &[1, 3])),
            ("tail", t("0", 6, 4, &[2], &[1])),
            ("every_other", t("0", 6, 1, &[3], &[2])),
            ("scalar", t("0", 6, 5, &[], &[])),
            ("empty", t("0", 6, 0, &[0, 4], &[4, 1])),
        ])
        .finish();
    let file = torch_zip(&pkl, &[("0", f32s(&[0., 1., 2., 3., 4., 5.]))]);
    let got = read_checkpoint_bytes(&file).unwrap();
    assert_eq!(
        got,
        vec![
            ("a".into(), tensor(&[2, 3], &[0., 1., 2., 3., 4., 5.])),
            ("at".into(), tensor(&[3, 2], &[0., 3., 1., 4., 2., 5.])),
            ("tail".into(), tensor(&[2], &[4., 5.])),
            ("every_other".into(), tensor(&[3], &[1., 3., 5.])),
            ("scalar".into(), tensor(&[], &[5.])),
            ("empty".into(), tensor(&[0, 4], &[])),
        ]
    );
}

fn err_of(file: &[u8]) -> CheckpointError {
    match read_checkpoint_bytes(file) {
        Ok(t) => panic!("accepted: {t:?}"),
        Err(e) => e,
    }
}

#[test]
fn view_outside_storage_names_the_tensor() {
    let pkl = Pickle::new()
        .state_dict(&[("ok", t("0", 3, 0, &[3], &[1])), ("bad", t("0", 3, 1, &[3], &[1]))])
        .finish();
    let err = err_of(&torch_zip(&pkl, &[("0", f32s(&[1., 2., 3.]))]));
    assert!(matches!(&err, CheckpointError::BadTensor { key, .. } if key == "bad"), "{err}");
    assert!(err.to_string().contains("`bad`"), "{err}");
}

#[test]
fn storage_shorter_than_declared_names_the_tensor() {
    let pkl = Pickle::new().state_dict(&[("w", t("0", 4, 0, &[4], &[1]))]).finish();
    let err = err_of(&torch_zip(&pkl, &[("0", f32s(&[1., 2., 3.]))]));
    assert!(matches!(&err, CheckpointError::BadTensor { key, .. } if key == "w"), "{err}");
}

#[test]
fn missing_storage_names_the_tensor() {
    let pkl = Pickle::new().state_dict(&[("w", t("7", 1, 0, &[1], &[1]))]).finish();
    let err = err_of(&torch_zip(&pkl, &[]));
    assert!(
        matches!(&err, CheckpointError::MissingStorage { key, storage } if key == "w" && storage == "7"),
        "{err}"
    );
}

#[test]
fn unsupported_dtype_names_the_tensor() {
    let mut def = t("0", 1, 0, &[1], &[1]);
    def.storage_type = "ComplexFloatStorage";
    let pkl = Pickle::new().state_dict(&[("z", def)]).finish();
    let err = err_of(&torch_zip(&pkl, &[("0", vec![0; 8])]));
    assert!(
        matches!(&err, CheckpointError::UnsupportedDtype { key, dtype } if key == "z" && dtype.contains("ComplexFloatStorage")),
        "{err}"
    );
}

#[test]
fn zero_stride_expansion_is_capped() {
    // A one-element storage viewed as 2^40 elements must not be allocated.
    let pkl =
        Pickle::new().state_dict(&[("huge", t("0", 1, 0, &[1 << 20, 1 << 20], &[0, 0]))]).finish();
    let err = err_of(&torch_zip(&pkl, &[("0", f32s(&[1.]))]));
    assert!(matches!(err, CheckpointError::TooLarge { .. }), "{err}");
}

#[test]
fn overflowing_shape_is_an_error() {
    let pkl = Pickle::new()
        .state_dict(&[("o", t("0", 1, 0, &[i32::MAX, i32::MAX, i32::MAX], &[0, 0, 0]))])
        .finish();
    let err = err_of(&torch_zip(&pkl, &[("0", f32s(&[1.]))]));
    assert!(
        matches!(err, CheckpointError::BadTensor { .. } | CheckpointError::TooLarge { .. }),
        "{err}"
    );
}

#[test]
fn negative_stride_is_an_error() {
    let pkl = Pickle::new().state_dict(&[("n", t("0", 3, 2, &[3], &[-1]))]).finish();
    let err = err_of(&torch_zip(&pkl, &[("0", f32s(&[1., 2., 3.]))]));
    assert!(matches!(&err, CheckpointError::BadTensor { key, .. } if key == "n"), "{err}");
}

#[test]
fn wrapper_precedence_and_prefix() {
    // {'rng': tensor, 'model': {'module.m': t}, 'state_dict': {'module.s': t}}
    let mut p = Pickle::new();
    p.raw(b"}(").str("rng").tensor(&t("0", 1, 0, &[1], &[1]));
    p.str("model").state_dict(&[("module.m", t("0", 1, 0, &[1], &[1]))]);
    p.str("state_dict").state_dict(&[("module.s", t("0", 1, 0, &[1], &[1]))]);
    p.str("epoch").int(3).raw(b"u");
    let file = torch_zip(&p.finish(), &[("0", f32s(&[9.]))]);
    let got = read_checkpoint_bytes(&file).unwrap();
    assert_eq!(got, vec![("s".into(), tensor(&[1], &[9.]))]);

    // Without `state_dict`, `model` wins over the stray top-level tensor.
    let mut p = Pickle::new();
    p.raw(b"}(").str("rng").tensor(&t("0", 1, 0, &[1], &[1]));
    p.str("model").state_dict(&[("m", t("0", 1, 0, &[1], &[1]))]);
    p.raw(b"u");
    let got = read_checkpoint_bytes(&torch_zip(&p.finish(), &[("0", f32s(&[9.]))])).unwrap();
    assert_eq!(got[0].0, "m");
}

#[test]
fn nested_wrapper_and_non_tensor_entries() {
    // {'checkpoint': ...} is not a wrapper key, but {'model': {'state_dict': sd}} nests.
    let mut p = Pickle::new();
    p.raw(b"}(").str("model").raw(b"}(").str("state_dict");
    p.raw(b"}(").str("a").tensor(&t("0", 1, 0, &[1], &[1]));
    p.str("note").str("text").str("b").tensor(&t("0", 1, 0, &[], &[]));
    p.raw(b"u").raw(b"u").raw(b"u");
    let got = read_checkpoint_bytes(&torch_zip(&p.finish(), &[("0", f32s(&[2.]))])).unwrap();
    let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn duplicate_key_later_value_wins_in_first_position() {
    let pkl = Pickle::new()
        .state_dict(&[
            ("x", t("0", 2, 0, &[1], &[1])),
            ("y", t("0", 2, 0, &[1], &[1])),
            ("x", t("0", 2, 1, &[1], &[1])),
        ])
        .finish();
    let got = read_checkpoint_bytes(&torch_zip(&pkl, &[("0", f32s(&[1., 2.]))])).unwrap();
    assert_eq!(got, vec![("x".into(), tensor(&[1], &[2.])), ("y".into(), tensor(&[1], &[1.]))]);
}

#[test]
fn no_state_dict_lists_the_keys() {
    let mut p = Pickle::new();
    p.raw(b"}(").str("epoch").int(3).str("optimizer").raw(b"}u");
    let err = err_of(&torch_zip(&p.finish(), &[]));
    assert!(matches!(err, CheckpointError::NoTensors(_)), "{err}");
    assert!(err.to_string().contains("\"epoch\""), "{err}");
    let err = err_of(&torch_zip(&Pickle::new().raw(b"]").finish(), &[]));
    assert!(err.to_string().contains("list"), "{err}");
}

#[test]
fn os_system_in_a_zip_is_refused() {
    let mut p = Pickle::new();
    p.raw(b"}(").str("w").tensor(&t("0", 1, 0, &[1], &[1]));
    p.str("payload").global("os", "system").str("echo pwned").raw(b"\x85R");
    p.raw(b"u");
    let err = err_of(&torch_zip(&p.finish(), &[("0", f32s(&[1.]))]));
    assert!(
        matches!(&err, CheckpointError::ForbiddenGlobal { global } if global == "os.system"),
        "{err}"
    );
}

#[test]
fn pickled_model_object_gets_a_helpful_error() {
    let pkl = Pickle::new().global("torchvision.models.resnet", "ResNet").raw(b")\x81}b").finish();
    let err = err_of(&torch_zip(&pkl, &[]));
    assert!(
        matches!(&err, CheckpointError::UnsupportedObject { global } if global == "torchvision.models.resnet.ResNet"),
        "{err}"
    );
    assert!(err.to_string().contains("state_dict()"), "{err}");
}

#[test]
fn zip_without_data_pkl_or_torchscript_is_unsupported() {
    let err = err_of(&zip_archive(&[("x/readme.txt", b"hi")], false));
    assert!(matches!(err, CheckpointError::UnsupportedFormat(_)), "{err}");
    let pkl = Pickle::new().raw(b"}").finish();
    let err = err_of(&zip_archive(&[("m/data.pkl", &pkl), ("m/code/__torch__.py", b"")], false));
    assert!(err.to_string().contains("TorchScript"), "{err}");
}

#[test]
fn deflated_entries_and_crc_errors() {
    let pkl = Pickle::new().state_dict(&[("w", t("0", 2, 0, &[2], &[1]))]).finish();
    let data = f32s(&[1., 2.]);
    let file = zip_archive(&[("a/data.pkl", &pkl), ("a/data/0", &data)], true);
    assert_eq!(read_checkpoint_bytes(&file).unwrap(), vec![("w".into(), tensor(&[2], &[1., 2.]))]);
    // Corrupt the stored storage bytes: the CRC check must catch it.
    let mut file = zip_archive(&[("a/data.pkl", &pkl), ("a/data/0", &data)], false);
    let pos = file.windows(8).position(|w| w == data.as_slice()).expect("stored data present");
    file[pos] ^= 0xff;
    assert!(matches!(err_of(&file), CheckpointError::Zip(_)));
}

#[test]
fn big_endian_byteorder_record() {
    let pkl = Pickle::new().state_dict(&[("w", t("0", 2, 0, &[2], &[1]))]).finish();
    let be: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_be_bytes()).collect();
    let file =
        zip_archive(&[("a/data.pkl", &pkl), ("a/byteorder", b"big"), ("a/data/0", &be)], false);
    assert_eq!(
        read_checkpoint_bytes(&file).unwrap(),
        vec![("w".into(), tensor(&[2], &[1.5, -2.0]))]
    );
    let bad = zip_archive(&[("a/data.pkl", &pkl), ("a/byteorder", b"middle")], false);
    assert!(matches!(err_of(&bad), CheckpointError::Corrupt(_)));
}

#[test]
fn legacy_layout_by_hand() {
    let magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";
    let proto = b"\x80\x02M\xe9\x03.";
    let sys_info = Pickle::new().raw(b"}").str("little_endian").raw(b"\x88s").finish();
    let main = Pickle::new().state_dict(&[("w", t("k", 3, 1, &[2], &[1]))]).finish();
    let keys = Pickle::new().raw(b"(").str("k").raw(b"l").finish();
    let mut file = Vec::new();
    for part in [&magic[..], proto, &sys_info, &main, &keys] {
        file.extend_from_slice(part);
    }
    file.extend_from_slice(&3u64.to_le_bytes());
    file.extend_from_slice(&f32s(&[7., 8., 9.]));
    assert_eq!(read_checkpoint_bytes(&file).unwrap(), vec![("w".into(), tensor(&[2], &[8., 9.]))]);
    // Truncated inside the storage data.
    let err = err_of(&file[..file.len() - 1]);
    assert!(matches!(err, CheckpointError::Truncated(_)), "{err}");
    // Wrong magic number.
    let mut wrong = file.clone();
    wrong[4] ^= 1;
    assert!(matches!(err_of(&wrong), CheckpointError::UnsupportedFormat(_)));
}

#[test]
fn safetensors_dtypes_and_order() {
    use safetensors::tensor::{Dtype, TensorView};
    let f16: Vec<u8> = [0x3c00u16, 0xc000].iter().flat_map(|h| h.to_le_bytes()).collect();
    let bf16: Vec<u8> = [0x3f80u16, 0x4040].iter().flat_map(|h| h.to_le_bytes()).collect();
    let f64s: Vec<u8> = [0.5f64].iter().flat_map(|x| x.to_le_bytes()).collect();
    let i64s: Vec<u8> = [-3i64].iter().flat_map(|x| x.to_le_bytes()).collect();
    let views = vec![
        ("z_half", TensorView::new(Dtype::F16, vec![2], &f16).unwrap()),
        ("a_bf16", TensorView::new(Dtype::BF16, vec![1, 2], &bf16).unwrap()),
        ("m_f64", TensorView::new(Dtype::F64, vec![], &f64s).unwrap()),
        ("n_i64", TensorView::new(Dtype::I64, vec![1], &i64s).unwrap()),
    ];
    let file = safetensors::serialize(views, &None).unwrap();
    let mut got = read_checkpoint_bytes(&file).unwrap();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("a_bf16".into(), tensor(&[1, 2], &[1.0, 3.0])),
            ("m_f64".into(), tensor(&[], &[0.5])),
            ("n_i64".into(), tensor(&[1], &[-3.0])),
            ("z_half".into(), tensor(&[2], &[1.0, -2.0])),
        ]
    );

    let fp8 = [0u8; 2];
    let views = vec![("f8", TensorView::new(Dtype::F8_E4M3, vec![2], &fp8).unwrap())];
    let file = safetensors::serialize(views, &None).unwrap();
    assert!(matches!(
        err_of(&file),
        CheckpointError::UnsupportedDtype { key, .. } if key == "f8"
    ));

    let mut bad = 16u64.to_le_bytes().to_vec();
    bad.extend_from_slice(b"{\"a\":1}         ");
    assert_eq!(bad.len(), 8 + 16);
    let err = err_of(&bad);
    assert!(matches!(err, CheckpointError::SafeTensors(_)), "{err}");
}
