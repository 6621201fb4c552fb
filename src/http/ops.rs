//! `/healthz`, `/metrics` and `/v1/openapi.json`.

use warp::http::{header, Response};
use warp::hyper::Body;

use super::error::{json_response, ApiError, ApiResult, Code};
use super::AppState;

pub fn healthz(state: &AppState) -> ApiResult {
    if state.engine.journal().is_poisoned() {
        return Err(ApiError::new(
            Code::Unavailable,
            "the journal failed; writes are refused until restart",
        )
        .retry_after(30));
    }
    Ok(json_response(200, &serde_json::json!({"status": "ok"})))
}

pub fn metrics(state: &AppState) -> ApiResult {
    let mut text = state
        .engine
        .metrics()
        .render(&state.engine.journal().stats, state.engine.feed_stats());
    crate::wire::render_metrics(&mut text);
    state.webhooks.render_metrics(&mut text);
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(Body::from(text))
        .unwrap_or_else(|_| Response::new(Body::empty())))
}

pub fn openapi() -> ApiResult {
    Ok(json_response(200, &super::openapi::document()))
}
