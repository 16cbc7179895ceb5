//! A JSON body extractor whose every failure is a precise problem+json error, and which never
//! echoes the input back (a mistyped field could be a password).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use http::header;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::error::ErrorCode;

/// A JSON request body.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| {
            let essence = essence.trim().to_ascii_lowercase();
            essence == "application/json"
                || (essence.starts_with("application/") && essence.ends_with("+json"))
        })
        .unwrap_or(false)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::new(ErrorCode::UnsupportedMediaType));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge)
            } else {
                ApiError::validation("the request body could not be read")
            }
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let what = match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "the body is not valid JSON".to_owned()
                }
                serde_json::error::Category::Io => "the body could not be read".to_owned(),
                serde_json::error::Category::Data if path == "." => {
                    "the body does not have the expected fields".to_owned()
                }
                serde_json::error::Category::Data => {
                    format!("field `{path}` is missing or invalid")
                }
            };
            ApiError::validation(what)
        })?;
        de.end()
            .map_err(|_| ApiError::validation("trailing data after the JSON body"))?;
        Ok(Self(value))
    }
}

/// A JSON body that may be absent: an empty body (with or without a content type) is `None`;
/// anything else must be JSON as for [`JsonBody`].
#[derive(Debug)]
pub(crate) struct MaybeJsonBody<T>(pub(crate) Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for MaybeJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let no_body_headers = !req.headers().contains_key(header::CONTENT_LENGTH)
            && !req.headers().contains_key(header::TRANSFER_ENCODING)
            && !req.headers().contains_key(header::CONTENT_TYPE);
        if declared_empty || no_body_headers {
            return Ok(Self(None));
        }
        JsonBody::<T>::from_request(req, state)
            .await
            .map(|JsonBody(v)| Self(Some(v)))
    }
}
