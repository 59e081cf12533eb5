//! Checkpoint reading on arbitrary bytes: format sniffing, zip, legacy and
//! safetensors layouts, storage views and dtype conversion.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tensors) = shortcut_tools::checkpoint::read_checkpoint_bytes(data) {
        for (_, t) in &tensors {
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
        }
    }
});
