//! The API's errors as RFC 9457 problems: the one table of codes with
//! their status and title, and the problem's body. Below every module that
//! answers one (the engine, the order workflow, HTTP); `http::error` turns
//! a problem into an answer.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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
    /// A count taken before the record's last count (`counted_at`).
    StaleCount,
    /// Another transfer has this id.
    TransferExists,
    /// Another supply has this id.
    SupplyExists,
    /// A reservation with units sold against supply not arrived yet
    /// cannot be fulfilled.
    Backordered,
    /// A preorder cannot be fulfilled before its release.
    NotReleased,
    /// Events asked for were dropped (retention): member `oldest`.
    EventsGone,
    /// `WEBHOOKS_MAX` subscriptions are kept already.
    TooManyWebhooks,
}

impl Code {
    pub const ALL: [Code; 27] = [
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
        Code::StaleCount,
        Code::TransferExists,
        Code::SupplyExists,
        Code::Backordered,
        Code::NotReleased,
        Code::EventsGone,
        Code::TooManyWebhooks,
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
            Code::StaleCount => ("stale_count", 409, "Counted before the record's last count"),
            Code::TransferExists => ("transfer_exists", 409, "Transfer exists"),
            Code::SupplyExists => ("supply_exists", 409, "Supply exists"),
            Code::Backordered => ("backordered", 409, "Units not arrived yet"),
            Code::NotReleased => ("not_released", 409, "Preorder not released yet"),
            Code::EventsGone => ("events_gone", 410, "Events no longer kept"),
            Code::TooManyWebhooks => ("too_many_webhooks", 409, "Too many webhooks"),
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

    /// The methods of a 405, for its `Allow` header.
    pub fn allow(&self) -> Option<&str> {
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
}
