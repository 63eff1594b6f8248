//! `POST /uploads` (multipart field `file`, answered `{fileUrl}`, as Gleap's importers use
//! it) behind the same key, project, quota and faults as `/v3`; the bytes are kept in memory
//! and served back at the URL answered (`GET /uploads/files/{id}`). The stats count uploads,
//! distinct contents and duplicates (the same content uploaded again).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api::App;

/// One stored upload.
struct Upload {
    name: String,
    mime: String,
    bytes: axum::body::Bytes,
    hash: u128,
}

#[derive(Default)]
pub struct Uploads {
    files: Vec<Upload>,
    /// Uploads per content hash.
    by_content: HashMap<u128, u64>,
}

impl Uploads {
    /// `{uploads, distinct_contents, duplicate_uploads, bytes}`.
    pub fn stats(&self) -> Value {
        let uploads = self.files.len() as u64;
        let distinct = self.by_content.len() as u64;
        json!({
            "uploads": uploads,
            "distinct_contents": distinct,
            "duplicate_uploads": uploads - distinct,
            "bytes": self.files.iter().map(|f| f.bytes.len() as u64).sum::<u64>(),
        })
    }

    /// Every upload: `{id, name, type, size, xxh3}` (tests compare contents by `xxh3`).
    pub fn list(&self) -> Value {
        Value::Array(
            self.files
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    json!({"id": i, "name": f.name, "type": f.mime, "size": f.bytes.len(),
                           "xxh3": format!("{:032x}", f.hash)})
                })
                .collect(),
        )
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

/// `POST /uploads`.
pub async fn upload(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    mut form: Multipart,
) -> Response {
    let mut file = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => {
                let name = field.file_name().unwrap_or("file").to_string();
                let mime = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_string();
                match field.bytes().await {
                    Ok(bytes) => file = Some((name, mime, bytes)),
                    Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        }
    }
    let Some((name, mime, bytes)) = file else {
        return error(
            StatusCode::BAD_REQUEST,
            "No file: send it as multipart field `file`",
        );
    };
    let hash = xxhash_rust::xxh3::xxh3_128(&bytes);
    let id = {
        let mut shared = app.shared.lock().unwrap_or_else(|p| p.into_inner());
        let uploads = &mut shared.uploads;
        uploads.files.push(Upload {
            name: name.clone(),
            mime,
            bytes,
            hash,
        });
        *uploads.by_content.entry(hash).or_default() += 1;
        uploads.files.len() - 1
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    axum::Json(json!({ "fileUrl": format!("http://{host}/uploads/files/{id}/{safe}") }))
        .into_response()
}

/// `GET /uploads/files/{id}/{name}`: the bytes, as Gleap's file host would serve them.
pub async fn download(
    State(app): State<Arc<App>>,
    Path((id, _name)): Path<(usize, String)>,
) -> Response {
    let shared = app.shared.lock().unwrap_or_else(|p| p.into_inner());
    match shared.uploads.files.get(id) {
        Some(f) => ([(header::CONTENT_TYPE, f.mime.clone())], f.bytes.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "No such upload"),
    }
}
