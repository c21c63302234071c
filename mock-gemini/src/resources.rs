//! Project-scoped resources (files, uploads in progress, batches, cached contents), each
//! remembered with the API key that created it: Google scopes them to one project, and
//! gemgate's key pinning is tested by the mock refusing them to any other key.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A resumable upload between `start` and `finalize`.
pub(crate) struct Upload {
    pub key: Option<String>,
    pub display_name: Option<String>,
    pub mime_type: String,
    pub size: u64,
    pub hasher: Sha256,
}

impl Upload {
    pub fn append(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.size += data.len() as u64;
    }
}

/// A stored resource: its owner and its JSON as served.
pub(crate) struct Owned {
    pub key: Option<String>,
    pub json: Value,
}

#[derive(Default)]
pub(crate) struct Resources {
    pub uploads: HashMap<String, Upload>,
    pub files: BTreeMap<String, Owned>,
    pub batches: BTreeMap<String, Owned>,
    pub caches: BTreeMap<String, Owned>,
}

/// May `key` use resource `id` of `map`?
pub(crate) enum Access<'a> {
    Granted(&'a mut Owned),
    Denied,
    Missing,
}

pub(crate) fn access<'a>(map: &'a mut BTreeMap<String, Owned>, id: &str, key: Option<&str>) -> Access<'a> {
    match map.get_mut(id) {
        None => Access::Missing,
        Some(o) if o.key.as_deref() == key => Access::Granted(o),
        Some(_) => Access::Denied,
    }
}

/// The JSON of every resource of `map` owned by `key`.
pub(crate) fn owned_by(map: &BTreeMap<String, Owned>, key: Option<&str>) -> Vec<Value> {
    map.values().filter(|o| o.key.as_deref() == key).map(|o| o.json.clone()).collect()
}

/// The file id in a file URI or name: `…/v1beta/files/abc123`, `files/abc123`.
pub(crate) fn file_id(uri: &str) -> Option<&str> {
    let start = if let Some(rest) = uri.strip_prefix("files/") {
        rest
    } else {
        let i = uri.find("/files/")?;
        &uri[i + "/files/".len()..]
    };
    let end = start.find(['/', '?', '#', ':']).unwrap_or(start.len());
    let id = &start[..end];
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_from_uris() {
        assert_eq!(file_id("https://generativelanguage.googleapis.com/v1beta/files/abc123"), Some("abc123"));
        assert_eq!(file_id("http://127.0.0.1:9/v1beta/files/x1?alt=media"), Some("x1"));
        assert_eq!(file_id("files/x2"), Some("x2"));
        assert_eq!(file_id("gs://bucket/obj"), None);
    }
}
