//! A local Scalapay (API v2) on a free port, `Authorization: Bearer`
//! checked. `POST /v2/orders` (total, consumer, items, redirect URLs and
//! the merchant's reference checked) answers a token and a checkout URL;
//! the test approves a token as the shopper would (`approve`: an amount
//! ending in 51 minor units is declined); `POST /v2/payments/capture`
//! charges an approved order (`APPROVED`, the same answer again for one
//! charged), `DECLINED` for a declined one; `POST
//! /v2/payments/{token}/refund` refunds within what was charged, a
//! repeated `merchantRefundReference` answering its first refund.
//! Errors `{"errorCode", "message"}`. Fault: `down` (503 before anything
//! is done).

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warp::Filter;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Order {
    pub reference: String,
    pub amount: i64,
    /// created, approved, declined, charged
    pub status: String,
    pub refunded: i64,
}

#[derive(Default)]
pub struct State {
    pub api_key: String,
    pub port: u16,
    /// By token.
    pub orders: HashMap<String, Order>,
    /// merchantRefundReference -> answer.
    refunds: HashMap<String, Value>,
    pub calls: Vec<String>,
    /// 503 before anything is done.
    pub down: bool,
    next: u64,
}

impl State {
    /// The shopper approves (or, for an amount ending in 51, is declined).
    pub fn approve(&mut self, token: &str) {
        if let Some(o) = self.orders.get_mut(token) {
            o.status = if o.amount % 100 == 51 {
                "declined"
            } else {
                "approved"
            }
            .into();
        }
    }
}

fn error(code: u16, error: &str, message: &str) -> (u16, Value) {
    (code, json!({"errorCode": error, "message": message}))
}

fn handle(st: &mut State, path: &str, auth: Option<&str>, body: Value) -> (u16, Value) {
    if st.down {
        return error(503, "SERVICE_UNAVAILABLE", "try again later");
    }
    st.calls.push(path.to_string());
    if auth != Some(format!("Bearer {}", st.api_key).as_str()) {
        return error(401, "UNAUTHORIZED", "Invalid API key");
    }
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match seg[..] {
        ["v2", "orders"] => {
            let ok = super::serve::decimal(&body["totalAmount"]["amount"]).is_some_and(|a| a > 0)
                && body["consumer"]["givenNames"].is_string()
                && body["consumer"]["surname"].is_string()
                && body["items"].as_array().is_some_and(|i| !i.is_empty())
                && body["merchant"]["redirectConfirmUrl"].is_string()
                && body["merchant"]["redirectCancelUrl"].is_string()
                && body["merchantReference"].is_string();
            if !ok {
                return error(
                    400,
                    "VALIDATION_ERROR",
                    "totalAmount, consumer, items, merchant and merchantReference are required",
                );
            }
            st.next += 1;
            let token = format!("SPTOK{:05}", st.next);
            st.orders.insert(
                token.clone(),
                Order {
                    reference: body["merchantReference"].as_str().unwrap_or("").into(),
                    amount: super::serve::decimal(&body["totalAmount"]["amount"]).unwrap_or(0),
                    status: "created".into(),
                    refunded: 0,
                },
            );
            (
                200,
                json!({"token": token, "expires": "2026-11-27T23:59:59.000Z",
                "checkoutUrl": format!("http://127.0.0.1:{}/checkout/{token}", st.port)}),
            )
        }
        ["v2", "payments", "capture"] => {
            let token = body["token"].as_str().unwrap_or("");
            let Some(o) = st.orders.get_mut(token) else {
                return error(404, "NOT_FOUND", "no such order token");
            };
            match o.status.as_str() {
                "approved" | "charged" => {
                    o.status = "charged".into();
                    (
                        200,
                        json!({"token": token, "status": "APPROVED",
                        "totalAmount": {"amount": format!("{}.{:02}", o.amount / 100, o.amount % 100), "currency": "EUR"},
                        "merchantReference": o.reference}),
                    )
                }
                "declined" => (
                    200,
                    json!({"token": token, "status": "DECLINED", "message": "The instalment plan was not approved"}),
                ),
                _ => error(
                    400,
                    "PAYMENT_NOT_APPROVED",
                    "the consumer has not approved the order",
                ),
            }
        }
        ["v2", "payments", token, "refund"] => {
            let reference = body["merchantRefundReference"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if let Some(done) = st.refunds.get(&reference) {
                return (200, done.clone());
            }
            let amount = super::serve::decimal(&body["refundAmount"]["amount"]).unwrap_or(0);
            let Some(o) = st.orders.get_mut(token) else {
                return error(404, "NOT_FOUND", "no such order token");
            };
            if o.status != "charged" || amount <= 0 || amount > o.amount - o.refunded {
                return error(
                    400,
                    "REFUND_NOT_ALLOWED",
                    "more than what is left to refund",
                );
            }
            o.refunded += amount;
            st.next += 1;
            let answer = json!({"token": token, "amount": body["refundAmount"], "merchantReference": body["merchantReference"],
                "refundToken": format!("SPREF{:05}", st.next), "refundedAt": "2026-11-27T12:00:00.000Z"});
            st.refunds.insert(reference, answer.clone());
            (200, answer)
        }
        _ => error(404, "NOT_FOUND", "no such resource"),
    }
}

pub struct ScalapaySim {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _served: super::serve::Served,
}

impl ScalapaySim {
    pub fn start(api_key: &str) -> ScalapaySim {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.into(),
            ..State::default()
        }));
        let s = state.clone();
        let route = warp::post()
            .and(warp::path::full())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .map(
                move |path: warp::path::FullPath, auth: Option<String>, body: bytes::Bytes| {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let (code, out) = handle(&mut s.lock(), path.as_str(), auth.as_deref(), body);
                    super::serve::reply(code, &out)
                },
            );
        let served = super::serve::serve(route);
        state.lock().port = served.port;
        ScalapaySim {
            port: served.port,
            state,
            _served: served,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
