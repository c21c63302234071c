//! The Files API: the resumable upload protocol the google-genai SDKs speak
//! (`/upload/v1beta/files` start → upload/finalize on the returned URL) and
//! `files.get/list/delete`, each file scoped to the key that uploaded it.

use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::body::{ok_json, MockBody};
use crate::errors;
use crate::record::query_param;
use crate::resources::{access, owned_by, Access, Owned, Upload};
use crate::server::{Call, Reply};
use crate::util::{base64, new_id, timestamp};

/// Files expire 48 hours after upload, like Google's.
const FILE_TTL: Duration = Duration::from_secs(48 * 3600);

#[derive(Deserialize, Default)]
#[serde(default)]
struct StartBody {
    file: StartFile,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StartFile {
    #[serde(rename = "displayName", alias = "display_name")]
    display_name: Option<String>,
    #[serde(rename = "mimeType", alias = "mime_type")]
    mime_type: Option<String>,
}

fn header<'a>(call: &'a Call<'_>, name: &str) -> Option<&'a str> {
    call.parts.headers.get(name).and_then(|v| v.to_str().ok())
}

fn with_headers(mut rsp: Response<MockBody>, headers: &[(&'static str, &str)]) -> Reply {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            rsp.headers_mut().insert(*name, v);
        }
    }
    rsp
}

/// `POST /upload/{version}/files`: a resumable start, or a continuation when the query
/// carries `upload_id`.
pub(crate) fn upload(call: &Call<'_>) -> Reply {
    match query_param(call.parts.uri.query(), "upload_id") {
        Some(id) => upload_continue(call, id),
        None => upload_start(call),
    }
}

fn upload_start(call: &Call<'_>) -> Reply {
    let protocol = header(call, "x-goog-upload-protocol").unwrap_or("");
    let command = header(call, "x-goog-upload-command").unwrap_or("");
    if !protocol.eq_ignore_ascii_case("resumable") || !command.eq_ignore_ascii_case("start") {
        return errors::invalid_argument(
            "mock-gemini supports only resumable uploads (x-goog-upload-protocol: resumable, \
             x-goog-upload-command: start).",
        );
    }
    let start: StartBody = if call.body.is_empty() {
        StartBody::default()
    } else {
        match serde_json::from_slice(call.body) {
            Ok(s) => s,
            Err(e) if e.is_syntax() || e.is_eof() => return errors::bad_json(&e),
            Err(_) => StartBody::default(),
        }
    };
    let mime_type = header(call, "x-goog-upload-header-content-type")
        .map(str::to_owned)
        .or(start.file.mime_type)
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let upload_id = new_id(40);
    call.state.resources().uploads.insert(
        upload_id.clone(),
        Upload {
            key: call.key.map(str::to_owned),
            display_name: start.file.display_name,
            mime_type,
            size: 0,
            hasher: Sha256::new(),
        },
    );
    let url = format!("{}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable", call.state.base_url);
    with_headers(
        ok_json(Bytes::new()),
        &[
            ("x-goog-upload-url", &url),
            ("x-goog-upload-control-url", &url),
            ("x-goog-upload-status", "active"),
            ("x-goog-upload-chunk-granularity", "8388608"),
        ],
    )
}

fn upload_continue(call: &Call<'_>, upload_id: &str) -> Reply {
    let command = header(call, "x-goog-upload-command").unwrap_or("").to_ascii_lowercase();
    let has = |c: &str| command.split(',').any(|part| part.trim() == c);
    let mut res = call.state.resources();
    let Some(upload) = res.uploads.get_mut(upload_id) else {
        return errors::resource_missing("Upload", upload_id);
    };
    // The upload id authorizes a keyless continuation (as at Google), but a different key
    // is another project: refused, which is what gemgate's key pinning is tested with.
    if call.key.is_some() && call.key != upload.key.as_deref() {
        return errors::resource_denied("Upload", upload_id);
    }
    if has("cancel") {
        res.uploads.remove(upload_id);
        return with_headers(ok_json(Bytes::new()), &[("x-goog-upload-status", "cancelled")]);
    }
    if has("upload") {
        upload.append(call.body);
    }
    let received = upload.size.to_string();
    if !has("finalize") {
        return with_headers(
            ok_json(Bytes::new()),
            &[("x-goog-upload-status", "active"), ("x-goog-upload-size-received", &received)],
        );
    }
    let Some(upload) = res.uploads.remove(upload_id) else {
        return errors::resource_missing("Upload", upload_id);
    };
    let id = new_id(12);
    let now = timestamp(Duration::ZERO);
    let hex: String = upload.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let mut file = json!({
        "name": format!("files/{id}"),
        "mimeType": upload.mime_type,
        "sizeBytes": upload.size.to_string(),
        "createTime": now,
        "updateTime": now,
        "expirationTime": timestamp(FILE_TTL),
        "sha256Hash": base64(hex.as_bytes()),
        "uri": format!("{}/v1beta/files/{id}", call.state.base_url),
        "state": "ACTIVE",
        "source": "UPLOADED",
    });
    if let Some(name) = upload.display_name {
        file["displayName"] = Value::String(name);
    }
    let body = json!({ "file": file }).to_string();
    res.files.insert(id, Owned { key: call.key.map(str::to_owned).or(upload.key), json: file });
    with_headers(ok_json(body), &[("x-goog-upload-status", "final"), ("x-goog-upload-size-received", &received)])
}

/// `GET files/{id}`.
pub(crate) fn get(call: &Call<'_>, id: &str) -> Reply {
    match access(&mut call.state.resources().files, id, call.key) {
        Access::Granted(f) => ok_json(f.json.to_string()),
        Access::Denied => errors::resource_denied("File", id),
        Access::Missing => errors::resource_missing("File", id),
    }
}

/// `DELETE files/{id}`.
pub(crate) fn delete(call: &Call<'_>, id: &str) -> Reply {
    let mut res = call.state.resources();
    match access(&mut res.files, id, call.key) {
        Access::Granted(_) => {
            res.files.remove(id);
            ok_json(Bytes::from_static(b"{}"))
        }
        Access::Denied => errors::resource_denied("File", id),
        Access::Missing => errors::resource_missing("File", id),
    }
}

/// `GET files`: the files of this key.
pub(crate) fn list(call: &Call<'_>) -> Reply {
    let files = owned_by(&call.state.resources().files, call.key);
    ok_json(json!({ "files": files }).to_string())
}
