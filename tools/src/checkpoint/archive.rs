//! The zip layout `torch.save` has written since PyTorch 1.6: `<dir>/data.pkl`
//! holds the object, `<dir>/data/<key>` each storage, `<dir>/byteorder` the
//! storages' byte order (absent in older files, meaning little-endian).

use std::collections::HashMap;
use std::io::{Cursor, Read};

use zip::result::ZipError;
use zip::ZipArchive;

use super::{tensors_from_pickle, Budget, CheckpointError, RawTensor, StorageSource};
use crate::pickle;

type Archive<'a> = ZipArchive<Cursor<&'a [u8]>>;

pub(crate) fn read(
    bytes: &[u8],
    budget: &mut Budget,
) -> Result<Vec<(String, RawTensor)>, CheckpointError> {
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(CheckpointError::Zip)?;
    // Deflate cannot expand data more than ~1032×, so this only stops bombs
    // beyond what a valid stream can produce.
    let max_entry = bytes.len().saturating_mul(1100).saturating_add(1 << 20);

    // torch puts everything under one top-level folder, whatever its name.
    let pkl = zip
        .file_names()
        .filter(|n| {
            n.strip_suffix("data.pkl")
                .is_some_and(|dir| dir.is_empty() || dir.find('/') == Some(dir.len() - 1))
        })
        .min_by_key(|n| n.len())
        .map(str::to_owned)
        .ok_or_else(|| {
            CheckpointError::UnsupportedFormat(
                "zip archive without <folder>/data.pkl: not a PyTorch checkpoint".into(),
            )
        })?;
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_owned();
    if zip.file_names().any(|n| n.starts_with(&format!("{prefix}code/"))) {
        return Err(CheckpointError::UnsupportedFormat(
            "TorchScript archive (torch.jit.save); save a state dict with \
             torch.save(model.state_dict(), path) instead"
                .into(),
        ));
    }

    let byteorder_name = format!("{prefix}byteorder");
    let big_endian = if zip.index_for_name(&byteorder_name).is_some() {
        let order = read_entry(&mut zip, &byteorder_name, 64)?;
        match order.trim_ascii() {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(CheckpointError::Corrupt(format!(
                    "byteorder entry says {:?}",
                    String::from_utf8_lossy(other)
                )))
            }
        }
    } else {
        false
    };

    let data = read_entry(&mut zip, &pkl, max_entry)?;
    let root = pickle::parse(&data).map_err(|e| CheckpointError::pickle(&pkl, e))?;
    let mut source = ZipSource { zip, prefix, cache: HashMap::new(), big_endian, max_entry };
    tensors_from_pickle(&root, &mut source, budget)
}

fn read_entry(zip: &mut Archive<'_>, name: &str, cap: usize) -> Result<Vec<u8>, CheckpointError> {
    let file = zip.by_name(name).map_err(CheckpointError::Zip)?;
    let mut out = Vec::new();
    file.take(u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| CheckpointError::Zip(ZipError::Io(e)))?;
    if out.len() > cap {
        return Err(CheckpointError::Corrupt(format!(
            "zip entry {name} decompresses to more than {cap} bytes"
        )));
    }
    Ok(out)
}

/// Reads storages from `<dir>/data/<key>` on demand, once each.
struct ZipSource<'a> {
    zip: Archive<'a>,
    prefix: String,
    cache: HashMap<String, Vec<u8>>,
    big_endian: bool,
    max_entry: usize,
}

impl StorageSource for ZipSource<'_> {
    fn storage(
        &mut self,
        tensor: &str,
        key: &str,
        min_bytes: usize,
    ) -> Result<&[u8], CheckpointError> {
        if !self.cache.contains_key(key) {
            let name = format!("{}data/{key}", self.prefix);
            if self.zip.index_for_name(&name).is_none() {
                return Err(CheckpointError::MissingStorage {
                    key: tensor.to_owned(),
                    storage: key.to_owned(),
                });
            }
            let data = read_entry(&mut self.zip, &name, self.max_entry)?;
            self.cache.insert(key.to_owned(), data);
        }
        let data = self.cache.get(key).map(Vec::as_slice).unwrap_or_default();
        crate::checkpoint::check_storage_len(tensor, key, data, min_bytes)
    }

    fn big_endian(&self) -> bool {
        self.big_endian
    }
}
