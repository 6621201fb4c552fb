//! `GET /v1/events`: the published events (api.md, Events), a page as
//! JSON or, with `Accept: text/event-stream`, a Server-Sent Events stream
//! that resumes after `Last-Event-ID`.
//!
//! Who may: an admin or a channel token every event; a store token those
//! concerning its own location (an event names the locations it
//! concerns; one about the whole network names none, and a store does
//! not see it).

use std::sync::Arc;

use serde_json::{json, Value};
use warp::http::{header, Response};
use warp::hyper::body::Bytes;
use warp::hyper::Body;

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{page_limit, query_param, Errors};
use super::{AppState, Request};
use crate::actors::{EventFilter, EventsRead};
use crate::config::Role;
use crate::limits::{EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX, EVENT_TYPES_MAX, SSE_HEARTBEAT};
use crate::persistence::events::{Page, Read, Stored};

/// What a reader asked: after which number, which types, how many.
struct Asked {
    after: u64,
    limit: usize,
    filter: EventFilter,
}

fn asked(req: &Request, stream: bool) -> Result<Asked, ApiError> {
    let q = req.query.as_deref().unwrap_or("");
    let mut e = Errors::default();
    let mut number = |name: &str, v: &str| match v.parse::<u64>() {
        Ok(n) if !v.starts_with('+') => n,
        _ => {
            e.add(name, "must be an event's id: an integer from 0");
            0
        }
    };
    // A stream resumes after the last id its client saw (checked on a
    // page too, where it is not read).
    let resumed = req
        .headers
        .get("last-event-id")
        .map(|v| number("Last-Event-ID", v.to_str().unwrap_or("x")));
    let after = query_param(q, "after").map(|v| number("after", &v));
    let after = match (stream, resumed, after) {
        (true, Some(n), _) => n,
        (_, _, Some(n)) => n,
        _ => 0,
    };
    let mut types = Vec::new();
    if let Some(v) = query_param(q, "types") {
        for p in v.split(',') {
            if !EventFilter::known(p) {
                e.add(
                    "types",
                    format!("{p:?} names no event type (a type, a family as stock.*, or *)"),
                );
            } else if types.len() == EVENT_TYPES_MAX {
                e.add("types", format!("at most {EVENT_TYPES_MAX} patterns"));
                break;
            } else {
                types.push(p.to_string());
            }
        }
    }
    let limit = page_limit(&mut e, q, EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX);
    e.into_result()?;
    let location = match &req.principal.role {
        Role::Store(own) => Some(own.to_string()),
        Role::Admin | Role::Channel => None,
    };
    Ok(Asked {
        after,
        limit,
        filter: EventFilter { types, location },
    })
}

/// An event as the API shows it (`Stored::to_json`, as webhooks send it).
fn event_json(e: &Read) -> Value {
    serde_json::from_str(e.json()).unwrap_or(Value::Null)
}

fn gone(oldest: u64) -> ApiError {
    ApiError::new(
        Code::EventsGone,
        format!(
            "events before {oldest} are no longer kept ([events] retention): read on from after {}",
            oldest - 1
        ),
    )
    .with("oldest", json!(oldest))
}

/// A read's page, or the error it answers.
async fn read(state: &AppState, a: &Asked, own_writes: bool) -> Result<Page, ApiError> {
    match state
        .engine
        .events(a.after, a.limit, a.filter.clone(), own_writes)
        .await?
    {
        EventsRead::Page(p) => match p.gone {
            Some(oldest) => Err(gone(oldest)),
            None => Ok(p),
        },
        EventsRead::CatchingUp => Err(ApiError::new(
            Code::Unavailable,
            "the events are catching up with the journal (after a restart); retry shortly",
        )
        .retry_after(1)),
        EventsRead::Off => Err(ApiError::new(
            Code::NotFound,
            "this server keeps no events (snapshots are off)",
        )),
    }
}

pub async fn get(state: &Arc<AppState>, req: &Request) -> ApiResult {
    let stream = req
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let a = asked(req, stream)?;
    // Both begin with a read: what is gone, or a store still catching
    // up, is an answer before any stream starts.
    let page = read(state, &a, true).await?;
    if stream {
        return sse(state.clone(), a, page);
    }
    let events: Vec<Value> = page.events.iter().map(|(_, e)| event_json(e)).collect();
    let (latest, oldest) = state.engine.events_marks().unwrap_or((0, 1));
    Ok(json_response(
        200,
        &json!({
            "events": events,
            "next_after": page.through,
            "latest": latest,
            "oldest": oldest,
        }),
    ))
}

/// One event as a Server-Sent Events message.
fn sse_message(id: u64, e: &Stored) -> String {
    let kind = e.kind().map_or("unknown", |k| k.as_str());
    // The data is one line of JSON (serde_json writes no newline).
    format!("id: {id}\nevent: {kind}\ndata: {}\n\n", e.data)
}

/// The stream: the first page, then each page as it is written, a comment
/// every `SSE_HEARTBEAT` when there is nothing; it ends when the server
/// stops, when events it would send next are dropped (an `event: gone`
/// message saying the oldest kept), or past `SSE_STREAMS_MAX` streams
/// (503 before it starts).
fn sse(state: Arc<AppState>, mut a: Asked, first: Page) -> ApiResult {
    let Ok(permit) = state.feed.streams.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            Code::Unavailable,
            "too many event streams open on this server; read pages, or retry later",
        )
        .retry_after(5));
    };
    a.limit = EVENTS_PAGE_MAX;
    let closing = state.feed.closing.subscribe();
    let s = Stream {
        state,
        asked: a,
        first: Some(first),
        closing,
        ended: false,
        _permit: permit,
    };
    let body = futures::stream::unfold(s, |mut s| async move {
        let text = s.next().await?;
        Some((Ok::<_, std::io::Error>(Bytes::from(text)), s))
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::wrap_stream(body))
        .map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))
}

/// One stream's state.
struct Stream {
    state: Arc<AppState>,
    asked: Asked,
    first: Option<Page>,
    closing: tokio::sync::watch::Receiver<bool>,
    ended: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Stream {
    /// What it sends next; `None` when it ends.
    async fn next(&mut self) -> Option<String> {
        if self.ended || *self.closing.borrow() {
            return None;
        }
        loop {
            let page = match self.first.take() {
                Some(p) => Ok(p),
                None => read(&self.state, &self.asked, false).await,
            };
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    // Dropped under a slow reader (or a store gone): said,
                    // then the stream ends; the client reads pages again.
                    self.ended = true;
                    let oldest = e.extra.as_ref().map(|(_, v)| v.clone());
                    let body =
                        json!({"code": e.code.meta().0, "detail": e.detail, "oldest": oldest});
                    let name = if e.code == Code::EventsGone {
                        "gone"
                    } else {
                        "error"
                    };
                    return Some(format!("event: {name}\ndata: {body}\n\n"));
                }
            };
            let looked = page.through > self.asked.after;
            self.asked.after = page.through;
            if !page.events.is_empty() {
                return Some(
                    page.events
                        .iter()
                        .map(|(id, e)| sse_message(*id, e))
                        .collect(),
                );
            }
            if looked {
                // All passed over by the filter: on at once.
                continue;
            }
            // A second at a time: a stream of an engine that stops (a
            // cluster leader stepping down) ends within one.
            let quiet_since = std::time::Instant::now();
            loop {
                if self.state.engine.stopping() {
                    return None;
                }
                tokio::select! {
                    _ = self.state.engine.events_after(self.asked.after) => break,
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                    _ = self.closing.changed() => return None,
                }
                if quiet_since.elapsed() >= SSE_HEARTBEAT {
                    return Some(": keep-alive\n\n".into());
                }
            }
        }
    }
}
