//! `.npy` reading on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shortcut_tools::npy::NpyData;

fuzz_target!(|data: &[u8]| {
    if let Ok(arr) = shortcut_tools::npy::read_npy_bytes(data) {
        let len = match &arr.data {
            NpyData::F32(v) => v.len(),
            NpyData::F64(v) => v.len(),
            NpyData::I64(v) => v.len(),
            NpyData::I32(v) => v.len(),
            NpyData::U8(v) => v.len(),
        };
        assert_eq!(len, arr.shape.iter().product::<usize>());
    }
});
