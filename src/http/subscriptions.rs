//! `/v1/webhooks...`: webhook subscriptions (api.md, Webhooks), admin
//! only. Delivery is the `webhooks` module's.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{parse_object, path_id, Errors};
use super::{AppState, Request};
use crate::actors::{EventFilter, WebhookRefused};
use crate::clock::rfc3339;
use crate::domain::webhook::{Webhook, WebhookFact};
use crate::limits::{
    JSON_INT_MAX, WEBHOOKS_MAX, WEBHOOK_BATCH_MAX, WEBHOOK_TYPES_MAX, WEBHOOK_URL_MAX,
    WEBHOOK_URL_PATTERN,
};
use crate::webhooks::{new_secret, secret_key};

fn webhook_json(w: &Webhook) -> Value {
    json!({
        "id": w.id,
        "url": w.url,
        "types": w.types,
        "secret": w.secret,
        "status": if w.failing { "failing" } else { "active" },
        "delivered": w.delivered,
        "batch": w.batch,
        "created_at": rfc3339(w.created_ms),
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no webhook {id}"))
}

fn refused(r: WebhookRefused, id: &str) -> ApiError {
    match r {
        WebhookRefused::NotFound => not_found(id),
        WebhookRefused::TooMany => ApiError::new(
            Code::TooManyWebhooks,
            format!("{WEBHOOKS_MAX} webhooks are kept already: delete one first"),
        ),
    }
}

/// `url`: `WEBHOOK_URL_PATTERN`, at most `WEBHOOK_URL_MAX` characters.
fn url(e: &mut Errors, m: &Map<String, Value>) -> Option<String> {
    static PATTERN: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(WEBHOOK_URL_PATTERN).ok());
    let u = e.string(m, "url", "", WEBHOOK_URL_MAX, true)?;
    if PATTERN.as_ref().is_some_and(|p| p.is_match(&u)) {
        return Some(u);
    }
    e.add(
        "url",
        "must be an http:// or https:// URL: a host name or an IPv4 address, a port, a path and query of plain characters",
    );
    None
}

/// `types`: 1 to `WEBHOOK_TYPES_MAX` type patterns, each naming a type.
fn types(e: &mut Errors, m: &Map<String, Value>) -> Option<Vec<String>> {
    let Some(Value::Array(a)) = m.get("types") else {
        e.add(
            "types",
            "required: an array of event types or families (stock.*, *)",
        );
        return None;
    };
    if a.is_empty() || a.len() > WEBHOOK_TYPES_MAX {
        e.add("types", format!("must name 1 to {WEBHOOK_TYPES_MAX} types"));
        return None;
    }
    let mut out = Vec::with_capacity(a.len());
    for (i, v) in a.iter().enumerate() {
        match v.as_str() {
            Some(p) if EventFilter::known(p) => out.push(p.to_string()),
            _ => e.add(
                format!("types[{i}]"),
                "must name an event type, a family (stock.*) or *",
            ),
        }
    }
    Some(out)
}

/// `secret`: absent (one is made), or `whsec_` and 24 to 62 bytes in
/// padded base64 (as the document's pattern states).
fn secret(e: &mut Errors, m: &Map<String, Value>) -> Option<String> {
    let padded = |s: &str| {
        s.strip_prefix("whsec_").is_some_and(|b| {
            let body = b.trim_end_matches('=');
            b.len() % 4 == 0 && b.len() - body.len() <= 2 && !body.contains('=')
        })
    };
    match m.get("secret") {
        None | Some(Value::Null) => Some(new_secret()),
        Some(Value::String(s))
            if padded(s) && secret_key(s).is_some_and(|k| (24..=62).contains(&k.len())) =>
        {
            Some(s.clone())
        }
        Some(_) => {
            e.add(
                "secret",
                "must be whsec_ and 24 to 62 random bytes in padded base64 (or absent: one is made)",
            );
            None
        }
    }
}

/// The newest event's number, the events of every write answered before
/// written: 404 without events (snapshots off), 503 while they catch up.
async fn latest(state: &AppState) -> Result<u64, ApiError> {
    if state.engine.snapshots().is_none() {
        return Err(ApiError::new(
            Code::NotFound,
            "this server keeps no events (snapshots are off): no webhooks",
        ));
    }
    state.engine.latest_event().await.ok_or_else(|| {
        ApiError::new(
            Code::Unavailable,
            "the events are catching up with the journal (after a restart); retry shortly",
        )
        .retry_after(1)
    })
}

/// `POST /v1/webhooks` `{"url","types":[...],"secret"?}` → 201.
pub async fn create(state: &AppState, req: &Request) -> ApiResult {
    req.principal.require_admin()?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let (url, types, secret) = (url(&mut e, &m), types(&mut e, &m), secret(&mut e, &m));
    let batch = e.int(&m, "batch", "", 1, i64::from(WEBHOOK_BATCH_MAX), false);
    e.into_result()?;
    let (Some(url), Some(types), Some(secret)) = (url, types, secret) else {
        return Err(ApiError::new(Code::ValidationFailed, "invalid webhook"));
    };
    let id = format!("wh_{:016x}", rand::random::<u64>());
    let after = latest(state).await?;
    let fact = WebhookFact::Created {
        url,
        types,
        secret,
        after,
        batch: batch.map_or(1, |b| b as u32),
    };
    match state.engine.webhook_step(id.clone(), fact).await? {
        Ok(Some(w)) => Ok(json_response(201, &webhook_json(&w))),
        Ok(None) => Err(not_found(&id)),
        Err(r) => Err(refused(r, &id)),
    }
}

/// `GET /v1/webhooks`.
pub async fn list(state: &AppState, req: &Request) -> ApiResult {
    req.principal.require_admin()?;
    let all: Vec<Value> = state
        .engine
        .webhooks()
        .await?
        .iter()
        .map(webhook_json)
        .collect();
    Ok(json_response(200, &json!({ "webhooks": all })))
}

async fn one(state: &AppState, req: &Request, id: &str) -> Result<Webhook, ApiError> {
    req.principal.require_admin()?;
    let id = path_id(id, "id")?;
    state
        .engine
        .webhook(&id)
        .await?
        .ok_or_else(|| not_found(&id))
}

/// `GET /v1/webhooks/{id}`.
pub async fn get(state: &AppState, req: &Request, id: &str) -> ApiResult {
    Ok(json_response(
        200,
        &webhook_json(&one(state, req, id).await?),
    ))
}

/// `DELETE /v1/webhooks/{id}` → 204; nothing more is sent.
pub async fn delete(state: &AppState, req: &Request, id: &str) -> ApiResult {
    let w = one(state, req, id).await?;
    match state
        .engine
        .webhook_step(w.id.clone(), WebhookFact::Deleted)
        .await?
    {
        Ok(_) => Ok(warp::http::Response::builder()
            .status(204)
            .body(warp::hyper::Body::empty())
            .unwrap_or_default()),
        Err(r) => Err(refused(r, &w.id)),
    }
}

/// `GET /v1/webhooks/{id}/deliveries`: the recent attempts, newest first.
pub async fn deliveries(state: &Arc<AppState>, req: &Request, id: &str) -> ApiResult {
    let w = one(state, req, id).await?;
    let (attempts, through) = state.webhooks.attempts(&w.id);
    let attempts: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "event": a.event,
                "events": a.events,
                "at": rfc3339(a.at_ms),
                "attempt": a.attempt,
                "status": a.status,
                "error": a.error,
                "latency_ms": a.latency_ms,
                "ok": a.ok(),
            })
        })
        .collect();
    let latest = state.engine.latest_written();
    Ok(json_response(
        200,
        &json!({
            "webhook": w.id,
            "status": if w.failing { "failing" } else { "active" },
            "delivered": through.unwrap_or(w.delivered).max(w.delivered),
            "latest": latest,
            "deliveries": attempts,
        }),
    ))
}

/// `POST /v1/webhooks/{id}/replay` `{"after": N}`: the events after N are
/// sent again, in order.
pub async fn replay(state: &AppState, req: &Request, id: &str) -> ApiResult {
    let w = one(state, req, id).await?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let after = e.int(&m, "after", "", 0, JSON_INT_MAX, true);
    e.into_result()?;
    let latest = latest(state).await?;
    // Past the newest: from the newest (nothing to send again yet).
    let after = (after.unwrap_or(0) as u64).min(latest);
    match state
        .engine
        .webhook_step(w.id.clone(), WebhookFact::Replay { after })
        .await?
    {
        Ok(Some(w)) => Ok(json_response(200, &webhook_json(&w))),
        Ok(None) => Err(not_found(&w.id)),
        Err(r) => Err(refused(r, &w.id)),
    }
}
