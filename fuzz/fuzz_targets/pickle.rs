//! The restricted pickle reader on arbitrary bytes: must never panic, hang,
//! overflow the stack or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((value, used)) = shortcut_tools::pickle::parse_prefix(data) {
        assert!(used <= data.len());
        // Exercise the accessors on whatever came out.
        let _ = (value.type_name(), value.as_dict(), value.get("state_dict"));
    }
});
