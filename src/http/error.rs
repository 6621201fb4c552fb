//! A problem (`crate::problem`) as an HTTP answer (application/problem+json,
//! with Retry-After, Allow and Connection where it says), and JSON answers.

use serde_json::Value;
use warp::http::{header, Response, StatusCode};
use warp::hyper::Body;

pub use crate::problem::{ApiError, Code, FieldError};

impl ApiError {
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
        assert_eq!(after(ApiError::new(Code::NotFound, "no")), None);
    }
}
