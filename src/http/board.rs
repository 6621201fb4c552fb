//! `GET /ui/stores/{location}`: the live store board. One self-contained
//! page (no external assets: the engine serves everything) that follows the
//! store's stock feed and highlights each change as it arrives. Made for a
//! tablet on the shop floor: large type, touch-sized controls, a filter.
//!
//! The page holds no secret: a store app opens it with `?token=` (passed on
//! to the feed, whose scope rule applies), or without one on an open server.

use serde_json::json;
use warp::http::{header, Response};
use warp::hyper::Body;

use super::error::{ApiError, ApiResult, Code};
use super::input::path_id;
use super::AppState;

const PAGE: &str = include_str!("board.html");
const CONSOLE: &str = include_str!("console.html");

/// The page's headers: no caching, nothing from elsewhere.
fn html(body: String) -> Response<Body> {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header(
            "content-security-policy",
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:",
        )
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// `GET /ui/`: the operations console (api.md, "The operations console"):
/// one self-contained page over the API, the token as on the board
/// (`?token=`, or typed in and kept for the tab).
pub fn console() -> Response<Body> {
    html(CONSOLE.to_string())
}

pub fn page(state: &AppState, location: &str) -> ApiResult {
    let location = path_id(location, "location")?;
    let name = {
        let c = state.engine.catalog();
        let idx = c
            .location_idx(&location)
            .ok_or_else(|| ApiError::new(Code::NotFound, format!("no location {location}")))?;
        c.location(idx)
            .map(|(_, l)| l.name.clone())
            .unwrap_or_default()
    };
    // Into the script as JSON literals: never as markup.
    let boot = json!({"location": location, "name": name}).to_string();
    // `</` cannot end the script early inside a JSON string.
    let boot = boot.replace("</", "<\\/");
    Ok(html(PAGE.replace("/*BOOT*/null", &boot)))
}
