//! The object storage a presigned attachment URL points at.
//!
//! `PUT /storage/uploads/{id}` stands in for the S3/MinIO bucket: like a
//! presigned S3 PUT it needs the signed `Content-Type` and a `Content-Length`
//! equal to the size the URL was signed for, refuses an expired URL with 403,
//! and counts the body as it streams (never holding it), so a 100 MB upload
//! costs the server no memory. It sits outside the REST layer (whose body
//! limit is 4 MiB) and outside the route listing (it is not the agent's API).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use futures::StreamExt;
use serde_json::json;

use crate::Shared;
use crate::faults::UploadFault;

/// Where presigned URLs point.
pub(crate) const UPLOAD_PATH: &str = "/storage/uploads";

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new().route(&format!("{UPLOAD_PATH}/{{id}}"), put(upload))
}

/// An S3-style XML error.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/xml")],
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"),
    )
        .into_response()
}

async fn upload(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Body,
) -> Response {
    let reserved = {
        let st = s.store();
        st.attachments
            .iter()
            .find(|a| a["attachment"]["id"] == id.as_str())
            .cloned()
    };
    let Some(reserved) = reserved else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "The upload does not exist",
        );
    };
    if reserved["expiresAt"].as_i64().unwrap_or(0) <= crate::store::utc_now().timestamp() {
        return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired");
    }
    let declared = reserved["attachment"]["bytes"].as_u64().unwrap_or(0);
    let mime = reserved["attachment"]["mimeType"].as_str().unwrap_or("");
    if crate::auth::header(&h, "content-type") != Some(mime) {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "Content-Type differs from the signed one",
        );
    }
    let length = crate::auth::header(&h, "content-length").and_then(|v| v.parse::<u64>().ok());
    if length != Some(declared) {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "Content-Length differs from the signed size",
        );
    }
    let fault = s.faults.take_upload_fault();
    let mut received: u64 = 0;
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return s3_error(
                StatusCode::BAD_REQUEST,
                "IncompleteBody",
                "The body ended early",
            );
        };
        received += chunk.len() as u64;
        // FNV-1a, so a test can check the bytes arrived intact without keeping them.
        for b in chunk.iter() {
            digest = (digest ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        if fault == Some(UploadFault::Reset) && received >= declared / 2 {
            // Dropping the body mid-way with no answer closes the connection.
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .header("connection", "close")
                .body(Body::from_stream(futures::stream::once(async {
                    Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("reset"))
                })))
                .unwrap_or_default();
        }
    }
    if received != declared {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "The body is shorter than Content-Length",
        );
    }
    if let Some(UploadFault::Status(status)) = fault {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return s3_error(status, "InjectedFault", "The storage failed on purpose");
    }
    let mut st = s.store();
    if let Some(a) = st
        .attachments
        .iter_mut()
        .find(|a| a["attachment"]["id"] == id.as_str())
    {
        a["received"] = json!({"bytes": received, "fnv1a": format!("{digest:016x}")});
    }
    StatusCode::OK.into_response()
}
