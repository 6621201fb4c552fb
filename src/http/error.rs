//! The one table mapping error codes to HTTP status and title, and the
//! problem+json (RFC 9457) body.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use warp::http::{header, Response, StatusCode};
use warp::hyper::Body;

use crate::actors::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    ValidationFailed,
    UnknownSku,
    UnknownLocation,
    InsufficientStock,
    ReservationNotHeld,
    IdempotencyKeyReused,
    RateLimited,
    Unavailable,
    InvalidTransition,
    PaymentDeclined,
    OrderExists,
    UpgradeRequired,
    /// The request's body did not arrive within `REQUEST_BODY_READ_S`.
    RequestTimeout,
    /// A cluster follower forwarded a write to the leader, which went away
    /// before answering: it may or may not have been applied.
    OutcomeUnknown,
}

impl Code {
    const ALL: [Code; 20] = [
        Code::BadRequest,
        Code::Unauthorized,
        Code::Forbidden,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::PayloadTooLarge,
        Code::ValidationFailed,
        Code::UnknownSku,
        Code::UnknownLocation,
        Code::InsufficientStock,
        Code::ReservationNotHeld,
        Code::IdempotencyKeyReused,
        Code::RateLimited,
        Code::Unavailable,
        Code::InvalidTransition,
        Code::PaymentDeclined,
        Code::OrderExists,
        Code::UpgradeRequired,
        Code::RequestTimeout,
        Code::OutcomeUnknown,
    ];

    /// The code a problem's `code` member names.
    pub fn named(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.meta().0 == name)
    }

    /// The table: code, status, title.
    pub fn meta(self) -> (&'static str, u16, &'static str) {
        match self {
            Code::BadRequest => ("bad_request", 400, "Malformed request"),
            Code::Unauthorized => ("unauthorized", 401, "Missing or unknown token"),
            Code::Forbidden => ("forbidden", 403, "Not allowed for this token"),
            Code::NotFound => ("not_found", 404, "Not found"),
            Code::MethodNotAllowed => ("method_not_allowed", 405, "Method not allowed"),
            Code::PayloadTooLarge => ("payload_too_large", 413, "Request body too large"),
            Code::ValidationFailed => ("validation_failed", 422, "Validation failed"),
            Code::UnknownSku => ("unknown_sku", 422, "Unknown SKU"),
            Code::UnknownLocation => ("unknown_location", 422, "Unknown location"),
            Code::InsufficientStock => ("insufficient_stock", 409, "Insufficient stock"),
            Code::ReservationNotHeld => ("reservation_not_held", 409, "Reservation not held"),
            Code::IdempotencyKeyReused => (
                "idempotency_key_reused",
                422,
                "Idempotency key reused with a different body",
            ),
            Code::RateLimited => ("rate_limited", 429, "Too many requests"),
            Code::Unavailable => ("unavailable", 503, "Temporarily unavailable"),
            Code::InvalidTransition => ("invalid_transition", 409, "Invalid transition"),
            Code::PaymentDeclined => ("payment_declined", 402, "Payment declined"),
            Code::OrderExists => ("order_exists", 409, "Order exists"),
            Code::UpgradeRequired => ("upgrade_required", 426, "Upgrade to a WebSocket"),
            Code::RequestTimeout => ("request_timeout", 408, "The request was not sent in time"),
            Code::OutcomeUnknown => ("outcome_unknown", 504, "The write's outcome is unknown"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An error answer: its code, a detail for humans, and extra members.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub detail: String,
    pub errors: Vec<FieldError>,
    /// Extra members merged into the body (e.g. `lines` of a 409).
    pub extra: Option<(&'static str, Value)>,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            extra: None,
            retry_after_s: None,
        }
    }

    /// 405 for a resource that allows `allowed` (`"GET, PUT"`): the
    /// `Allow` header (RFC 9110 §15.5.6), and `allow` in the body, so that
    /// a cluster node relaying a shard's answer keeps it.
    pub fn method_not_allowed(allowed: &str) -> Self {
        Self::new(Code::MethodNotAllowed, format!("allowed: {allowed}"))
            .with("allow", json!(allowed))
    }

    fn allow(&self) -> Option<&str> {
        match &self.extra {
            Some(("allow", v)) if self.code == Code::MethodNotAllowed => v.as_str(),
            _ => None,
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.first() {
            Some(e) => format!("{}: {}", e.field, e.message),
            None => "invalid request".into(),
        };
        Self {
            errors,
            ..Self::new(Code::ValidationFailed, detail)
        }
    }

    pub fn with(mut self, key: &'static str, v: Value) -> Self {
        self.extra = Some((key, v));
        self
    }

    pub fn retry_after(mut self, s: u64) -> Self {
        self.retry_after_s = Some(s);
        self
    }

    pub fn status(&self) -> u16 {
        self.code.meta().1
    }

    /// The problem another engine answered (a cluster node's request of a
    /// shard), as this node answers it: its code, detail, field errors and
    /// `lines`. An answer that is no problem of ours (a proxy's page) is
    /// `unavailable`.
    pub fn from_problem(status: u16, body: &Value) -> Self {
        let code = body["code"]
            .as_str()
            .and_then(Code::named)
            .filter(|c| c.meta().1 == status)
            .unwrap_or(Code::Unavailable);
        let detail = body["detail"]
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| format!("a shard answered {status}"));
        let mut e = ApiError::new(code, detail);
        if let Some(v) = body.get("errors") {
            e.errors = serde_json::from_value::<Vec<FieldError>>(v.clone()).unwrap_or_default();
        }
        for k in ["lines", "allow", "reservation_status"] {
            if let Some(l) = body.get(k) {
                e.extra = Some((k, l.clone()));
            }
        }
        e
    }

    pub fn body(&self) -> Value {
        let (code, status, title) = self.code.meta();
        let mut v = json!({
            "type": format!("https://holdfast.dev/problems/{code}"),
            "title": title,
            "status": status,
            "code": code,
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            v["errors"] = json!(self.errors);
        }
        if let Some((k, x)) = &self.extra {
            v[*k] = x.clone();
        }
        v
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut b = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header(header::CONTENT_TYPE, "application/problem+json");
        // api.md: every 503 says when to retry; a second unless its
        // maker knew better.
        let retry_after_s = match self.code {
            Code::Unavailable => Some(self.retry_after_s.unwrap_or(1)),
            _ => self.retry_after_s,
        };
        if let Some(s) = retry_after_s {
            b = b.header(header::RETRY_AFTER, s.to_string());
        }
        if let Some(a) = self.allow() {
            b = b.header(header::ALLOW, a);
        }
        if self.code == Code::RequestTimeout {
            // The rest of the body is not read: the connection cannot
            // carry another request.
            b = b.header(header::CONNECTION, "close");
        }
        b.body(Body::from(self.body().to_string()))
            .unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Overloaded => ApiError::new(
                Code::Unavailable,
                "the engine is at capacity; retry shortly",
            )
            .retry_after(1),
            EngineError::Storage(crate::persistence::JournalError::Replication(err)) => {
                tracing::warn!(error = %err, "write refused: not replicated");
                ApiError::new(
                    Code::Unavailable,
                    "the write could not be replicated (the cluster's leader is changing or Redis is unreachable); nothing was done, retry shortly",
                )
                .retry_after(1)
            }
            EngineError::Storage(crate::persistence::JournalError::ReplicationUnknown(err)) => {
                tracing::warn!(error = %err, "write not acknowledged: its replication's outcome is unknown");
                ApiError::new(
                    Code::OutcomeUnknown,
                    "Redis did not answer the write's replication: it may or may not have been applied; send it again with an Idempotency-Key to apply it once",
                )
                .retry_after(1)
            }
            EngineError::Storage(err) => {
                tracing::error!(error = %err, "write refused: storage failure");
                ApiError::new(
                    Code::Unavailable,
                    "storage is failing; writes are refused until the server is restarted",
                )
                .retry_after(30)
            }
            EngineError::Stopped => ApiError::new(
                Code::Unavailable,
                "the engine is stopping (the server shuts down, or this cluster node no longer leads)",
            )
            .retry_after(1),
        }
    }
}

pub type ApiResult = Result<Response<Body>, ApiError>;

/// A JSON answer.
pub fn json_response(status: u16, v: &Value) -> Response<Body> {
    json_text_response(status, v.to_string())
}

/// A JSON body already serialized.
pub fn json_text_response(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_named_back() {
        for c in Code::ALL {
            assert_eq!(Code::named(c.meta().0), Some(c));
        }
        assert_eq!(Code::named("teapot"), None);
    }

    #[test]
    fn every_503_says_when_to_retry() {
        // api.md: `unavailable` (503, with Retry-After), whoever made it.
        let after = |e: ApiError| {
            e.into_response()
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok().map(String::from))
        };
        assert_eq!(
            after(ApiError::new(Code::Unavailable, "a provider failed")).as_deref(),
            Some("1")
        );
        assert_eq!(
            after(ApiError::new(Code::Unavailable, "storage").retry_after(30)).as_deref(),
            Some("30")
        );
        assert_eq!(
            after(ApiError::from_problem(502, &json!("<html>"))).as_deref(),
            Some("1")
        );
        assert_eq!(after(ApiError::new(Code::NotFound, "no")), None);
    }

    #[test]
    fn a_part_s_problem_is_answered_as_it_came() {
        let e = ApiError::new(Code::InsufficientStock, "short")
            .with("lines", json!([{"sku": "A", "available": 0}]));
        let back = ApiError::from_problem(409, &e.body());
        assert_eq!(back.body(), e.body());
        let v = ApiError::validation(vec![FieldError {
            field: "lines[0].qty".into(),
            message: "must be at least 1".into(),
        }]);
        assert_eq!(ApiError::from_problem(422, &v.body()).body(), v.body());
        // Not ours, or a status that is not the code's: unavailable.
        assert_eq!(
            ApiError::from_problem(502, &json!("<html>bad gateway</html>")).code,
            Code::Unavailable
        );
        assert_eq!(
            ApiError::from_problem(500, &json!({"code": "insufficient_stock"})).code,
            Code::Unavailable
        );
    }
}
