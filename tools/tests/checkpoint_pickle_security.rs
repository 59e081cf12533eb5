//! Hostile pickles: code-execution gadgets, memo/depth bombs, absurd lengths.
//! Every one must be a typed error, quickly, without executing or allocating much.

use std::time::{Duration, Instant};

use shortcut_tools::pickle::{parse, PickleError, Value};

fn forbidden(bytes: &[u8]) -> String {
    match parse(bytes) {
        Err(PickleError::ForbiddenGlobal { global, .. }) => global,
        other => panic!("expected ForbiddenGlobal, got {other:?}"),
    }
}

fn disallowed(bytes: &[u8]) -> String {
    match parse(bytes) {
        Err(PickleError::DisallowedCall { global, .. }) => global,
        other => panic!("expected DisallowedCall, got {other:?}"),
    }
}

#[test]
fn os_system_protocol_2_global_reduce() {
    // pickle.dumps of an object whose __reduce__ is (os.system, ('echo pwned',)), protocol 2.
    let b = b"\x80\x02cos\nsystem\nq\x00X\n\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.";
    assert_eq!(forbidden(b), "os.system");
    let msg = parse(b).unwrap_err().to_string();
    assert!(msg.contains("os.system") && msg.contains("refusing"), "{msg}");
}

#[test]
fn posix_system_protocol_0_inst() {
    // INST: protocol 0 instantiation, i.e. posix.system('ls').
    assert_eq!(forbidden(b"(S'ls'\niposix\nsystem\n."), "posix.system");
}

#[test]
fn builtins_eval_stack_global_protocol_4() {
    let b = b"\x80\x04\x95\x1d\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x031+1\x94\x85\x94R\x94.";
    assert_eq!(forbidden(b), "builtins.eval");
}

#[test]
fn py2_builtin_eval_and_exec_gadgets() {
    assert_eq!(forbidden(b"c__builtin__\neval\n(S'1'\ntR."), "__builtin__.eval");
    assert_eq!(forbidden(b"\x80\x02cbuiltins\nexec\nX\x01\x00\x00\x00x\x85R."), "builtins.exec");
    // getattr(os, 'system') style gadget: the reference alone is refused.
    assert_eq!(forbidden(b"\x80\x02cbuiltins\ngetattr\n."), "builtins.getattr");
    assert_eq!(
        forbidden(b"\x80\x02csubprocess\nPopen\n(X\x02\x00\x00\x00lso."),
        "subprocess.Popen"
    );
    assert_eq!(forbidden(b"\x80\x02cos.path\njoin\n."), "os.path.join");
    assert_eq!(forbidden(b"\x80\x02cnt\nsystem\n."), "nt.system");
    assert_eq!(forbidden(b"\x80\x02cimportlib\nimport_module\n."), "importlib.import_module");
}

#[test]
fn harmless_names_in_dangerous_looking_modules_are_not_confused() {
    // `osgeo` is not `os`; referencing it is inert, calling it is refused.
    assert!(matches!(parse(b"\x80\x02cosgeo\nthing\n."), Ok(Value::Global(_))));
    assert_eq!(disallowed(b"\x80\x02cosgeo\nthing\n)R."), "osgeo.thing");
}

#[test]
fn unknown_classes_are_never_constructed() {
    // A whole pickled model: torch.save(model).
    let newobj = b"\x80\x02ctorchvision.models.resnet\nResNet\nq\x00)\x81q\x01}b.";
    assert_eq!(disallowed(newobj), "torchvision.models.resnet.ResNet");
    // NEWOBJ_EX and copyreg._reconstructor routes.
    assert_eq!(disallowed(b"\x80\x04\x8c\x01m\x8c\x01C\x93)}\x92."), "m.C");
    assert_eq!(
        disallowed(b"ccopy_reg\n_reconstructor\n(cmymod\nKlass\nc__builtin__\nobject\nNtR."),
        "mymod.Klass"
    );
    // A storage class is allowed as a reference, not as a call.
    assert_eq!(disallowed(b"\x80\x02ctorch\nFloatStorage\n)R."), "torch.FloatStorage");
}

#[test]
fn reduce_needs_a_global_callable() {
    // REDUCE on the result of another call (a common gadget shape).
    let b = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n)R)R.";
    assert!(matches!(parse(b), Err(PickleError::Malformed { .. })));
}

#[test]
fn extension_registry_and_buffers_are_unsupported() {
    assert!(matches!(parse(b"\x80\x02\x82\x01."), Err(PickleError::UnsupportedOpcode { .. })));
    assert!(matches!(parse(b"\x80\x05\x97."), Err(PickleError::UnsupportedOpcode { .. })));
}

fn quick<T>(f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < Duration::from_secs(5), "took {:?}", start.elapsed());
    out
}

#[test]
fn memo_bomb_is_bounded() {
    // t0 = (); t_{i+1} = (t_i, t_i): 2^100 nodes if expanded naively.
    let mut b = vec![0x80, 2, b')', b'r', 0, 0, 0, 0];
    for i in 0..100u32 {
        b.push(b'j');
        b.extend_from_slice(&i.to_le_bytes());
        b.push(b'j');
        b.extend_from_slice(&i.to_le_bytes());
        b.push(0x86);
        b.push(b'r');
        b.extend_from_slice(&(i + 1).to_le_bytes());
    }
    b.push(b'.');
    let err = quick(|| parse(&b)).unwrap_err();
    assert!(matches!(err, PickleError::LimitExceeded { .. }), "{err:?}");
}

#[test]
fn string_memo_bomb_is_bounded() {
    // One 1 MiB string referenced 10 000 times: 10 GiB if copied naively.
    let mut b = vec![0x80, 2, b'B'];
    b.extend_from_slice(&(1u32 << 20).to_le_bytes());
    b.extend(std::iter::repeat_n(b'x', 1 << 20));
    b.extend_from_slice(b"q\x00(");
    for _ in 0..10_000 {
        b.extend_from_slice(b"h\x00");
    }
    b.extend_from_slice(b"l.");
    let err = quick(|| parse(&b)).unwrap_err();
    assert!(matches!(err, PickleError::LimitExceeded { .. }), "{err:?}");
}

#[test]
fn deep_nesting_is_bounded_without_stack_overflow() {
    let n = 1_000_000;
    let mut lists = vec![0x80, 2];
    lists.extend(std::iter::repeat_n(b']', n));
    lists.extend(std::iter::repeat_n(b'a', n - 1));
    lists.push(b'.');
    assert!(matches!(quick(|| parse(&lists)), Err(PickleError::LimitExceeded { .. })));
    let mut tuples = vec![0x80, 2, b')'];
    tuples.extend(std::iter::repeat_n(0x85, n));
    tuples.push(b'.');
    assert!(matches!(quick(|| parse(&tuples)), Err(PickleError::LimitExceeded { .. })));
    let mut marks = vec![0x80, 2];
    marks.extend(std::iter::repeat_n(b'(', n));
    assert!(matches!(quick(|| parse(&marks)), Err(PickleError::LimitExceeded { .. })));
}

#[test]
fn absurd_lengths_do_not_allocate() {
    for b in [
        &b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7fabc"[..],
        b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xffabc",
        b"\x80\x03B\xff\xff\xff\xffabc",
        b"\x80\x02X\xff\xff\xff\xffabc",
        b"\x80\x02\x8b\xff\xff\xff\x7fabc",
        b"\x80\x02T\xff\xff\xff\x7fabc",
        b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.",
    ] {
        assert!(matches!(quick(|| parse(b)), Err(PickleError::Truncated { .. })), "{b:?}");
    }
    assert!(matches!(parse(b"\x80\x02T\xff\xff\xff\xffabc"), Err(PickleError::Malformed { .. })));
}

#[test]
fn huge_text_integer_is_bounded() {
    let mut b = b"L".to_vec();
    b.extend(std::iter::repeat_n(b'9', 1_000_000));
    b.extend_from_slice(b"L\n.");
    assert!(matches!(quick(|| parse(&b)), Err(PickleError::LimitExceeded { .. })));
    // Within Python's own default limit it works.
    let mut ok = b"L".to_vec();
    ok.extend(std::iter::repeat_n(b'9', 4000));
    ok.extend_from_slice(b"L\n.");
    assert!(matches!(parse(&ok), Ok(Value::BigInt(_))));
}

#[test]
fn memo_errors() {
    assert!(matches!(
        parse(b"\x80\x02j\xff\xff\xff\xff."),
        Err(PickleError::MissingMemo { index: 0xffff_ffff, .. })
    ));
    // PUT with nothing on the stack.
    assert!(matches!(parse(b"\x80\x02q\x00N."), Err(PickleError::Malformed { .. })));
    // A sparse, huge memo index is fine.
    assert_eq!(parse(b"\x80\x02Nr\xff\xff\xff\xff0j\xff\xff\xff\xff."), Ok(Value::None));
}

#[test]
fn pops_cannot_cross_a_mark() {
    // MARK then SETITEM would pop below the mark.
    assert!(parse(b"\x80\x02}X\x01\x00\x00\x00aK\x01(s.").is_err());
    // TUPLE2 right after MARK.
    assert!(parse(b"\x80\x02NN(\x86.").is_err());
}
