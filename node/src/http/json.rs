//! Request bodies and the answers axum would otherwise give in plain text.
//!
//! [`ApiJson`] reads the body within the configured limit and deserializes it with the path of
//! the offending field, mapping every failure to a JSON error: syntax → 400, wrong type or
//! unknown field → 422 naming the field, too large → 413. A body that is valid JSON is accepted
//! whatever `Content-Type` came with it (seed 000's troubleshooting `curl -d '{…}'` sends a form
//! type; the API is bearer-authenticated, so this opens no CSRF door); a body that is neither
//! declared JSON nor JSON → 415.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body of type `T`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_none_or(|ct| ct.to_str().is_ok_and(is_json_type));
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is too large",
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("cannot read request body: {rejection}"),
                )
            }
        })?;
        if !declared_json && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Content-Type must be application/json (and the body is not JSON either)",
            ));
        }
        parse(&bytes).map(ApiJson)
    }
}

/// Whether a `Content-Type` names JSON (`application/json`, `application/*+json`, parameters
/// allowed) — the admin API and the MCP endpoint decide it alike.
pub fn is_json_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes `bytes`, naming the field that failed.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "request body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(located)?;
    // serde_json stops at the end of the value; refuse trailing garbage.
    de.end()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Deserializes an already parsed JSON value (e.g. one part of a split body).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(located)
}

/// Splits a JSON object into the keys `pool_keys` lists and the rest.
pub fn split_object(
    object: serde_json::Map<String, serde_json::Value>,
    pool_keys: &[&str],
) -> (serde_json::Value, serde_json::Value) {
    let (pool, rest): (serde_json::Map<_, _>, serde_json::Map<_, _>) =
        object.into_iter().partition(|(k, _)| pool_keys.contains(&k.as_str()));
    (serde_json::Value::Object(rest), serde_json::Value::Object(pool))
}

/// Maps a deserialization error to 400 (syntax) or 422 naming the field (data).
fn located(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = inner.to_string();
            // The path already ends with the offending key, unknown keys included.
            let field = (path != ".").then_some(path);
            ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_field",
                message: match &field {
                    Some(f) => format!("{f}: {message}"),
                    None => message,
                },
                field,
            }
        }
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("malformed JSON: {inner}"),
        ),
    }
}

/// JSON 404 for unknown routes.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// JSON 405 for a known path with the wrong method.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        inner: Option<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        b: bool,
    }

    #[test]
    fn classifies_errors() {
        let e = parse::<T>(b"{\"a\": ").expect_err("eof");
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "invalid_json"));
        let e = parse::<T>(br#"{"a": "x"}"#).expect_err("type");
        assert_eq!(
            (e.status, e.field.as_deref()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("a"))
        );
        let e = parse::<T>(br#"{"a": 1, "zzz": 2}"#).expect_err("unknown");
        assert_eq!(e.field.as_deref(), Some("zzz"));
        let e = parse::<T>(br#"{"a": 1, "inner": {"b": 1}}"#).expect_err("nested type");
        assert_eq!(e.field.as_deref(), Some("inner.b"));
        let e = parse::<T>(br#"{"a": 1} x"#).expect_err("trailing");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(parse::<T>(br#"{"a": 1}"#).is_ok());
    }
}
