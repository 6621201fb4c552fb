//! Payment providers' webhooks: `POST /v1/webhooks/adyen`. No bearer
//! token (the provider has none): each notification is taken only with
//! a valid signature (Adyen's HMAC-SHA256 with the configured key),
//! otherwise the whole delivery is refused with 401 and nothing is kept.
//! A notice is kept on its order once (`Order::decide_notice`): a
//! delivery repeated (Adyen retries until it gets a 2xx) or replayed
//! changes nothing. A notice of an order this server does not know, or
//! about another payment than the order's, is logged and acknowledged
//! (refusing it would only make the provider send it again).

use bytes::Bytes;
use warp::http::Response;
use warp::hyper::Body;

use super::error::{ApiError, ApiResult, Code};
use super::AppState;
use crate::domain::order::Notice;
use crate::payments::adyen::{notifications, NotificationError};

pub async fn adyen(state: &AppState, body: &Bytes) -> ApiResult {
    let Some(key) = &state.adyen_hmac else {
        return Err(ApiError::new(
            Code::NotFound,
            "adyen is not configured here: no webhook",
        ));
    };
    let items = notifications(body, key).map_err(|e| match e {
        NotificationError::Forged(_) => {
            tracing::warn!(error = %e, "adyen webhook refused");
            ApiError::new(Code::Unauthorized, e.to_string())
        }
        NotificationError::Malformed(_) => ApiError::new(Code::BadRequest, e.to_string()),
    })?;
    let now = state.engine.clock().now_ms();
    for n in items {
        let notice = Notice {
            event: n.event_code.clone(),
            success: n.success,
            reference: n.psp_reference.clone(),
            at_ms: now,
        };
        let kept = state
            .engine
            .order_change(&n.merchant_reference, {
                let payment = n.payment().to_string();
                move |o| {
                    let ours = o.payment.provider == "adyen" && o.payment.reference == payment;
                    Ok(if ours { o.decide_notice(notice) } else { None })
                }
            })
            .await?;
        match kept {
            Some(Ok((_, Some(_)))) => {
                tracing::info!(order = %n.merchant_reference, event = %n.event_code, success = n.success, "adyen notice kept")
            }
            Some(Ok((o, None))) if o.payment.reference != n.payment() => {
                tracing::warn!(order = %n.merchant_reference, payment = %n.payment(), "adyen notice about another payment than the order's: ignored")
            }
            Some(_) => {}
            None => {
                tracing::warn!(order = %n.merchant_reference, event = %n.event_code, "adyen notice of an unknown order: ignored")
            }
        }
    }
    // What Adyen expects back.
    Response::builder()
        .status(200)
        .header("content-type", "text/plain")
        .body(Body::from("[accepted]"))
        .map_err(|e| ApiError::new(Code::BadRequest, e.to_string()))
}
