//! A local GestPay (Axerve E-commerce Solutions): its REST API's wire
//! format on a free port. `payment/create` (a payment token for an
//! amount, a currency and the shop's transaction id), `payment/submit`
//! (with the token in the `paymentToken` header and the card in
//! `paymentTypeDetails`: an amount ending in 51 minor units is refused,
//! code 74), `payment/detail` (by the shop's transaction id),
//! `payment/capture`, `payment/refund`, `payment/cancel` following the
//! money. Answers `{"error": {"code", "description"}, "payload"}`;
//! `Authorization: apikey {key}` checked. Faults: `down` (503 before
//! anything is done), `lose` (the next answer of each operation named is
//! lost: done, then a 500).

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warp::Filter;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payment {
    pub shop_id: String,
    pub amount: i64,
    pub currency: String,
    pub ok: bool,
    pub captured: i64,
    pub refunded: i64,
    pub cancelled: bool,
}

#[derive(Default)]
pub struct State {
    pub api_key: String,
    pub shop_login: String,
    pub down: bool,
    /// Operations ("submit", "capture") whose next answer is lost.
    pub lose: Vec<String>,
    /// By bankTransactionID.
    pub payments: HashMap<String, Payment>,
    /// paymentToken -> (shop id, amount, currency), until submitted.
    tokens: HashMap<String, (String, i64, String)>,
    pub calls: Vec<(String, Value)>,
    next: u64,
}

impl State {
    /// The payments submitted under a shop transaction id.
    pub fn payments_of(&self, shop_id: &str) -> Vec<Payment> {
        self.payments
            .values()
            .filter(|p| p.shop_id == shop_id)
            .cloned()
            .collect()
    }
}

fn answer(code: &str, description: &str, payload: Value) -> Value {
    json!({"error": {"code": code, "description": description}, "payload": payload})
}

fn handle(
    st: &mut State,
    op: &str,
    key: Option<&str>,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    if st.down {
        return (503, answer("9999", "Service unavailable", json!({})));
    }
    st.calls.push((op.to_string(), body.clone()));
    if key != Some(format!("apikey {}", st.api_key).as_str()) {
        return (
            401,
            answer("1131", "Not accepted call: Shop not recognized", json!({})),
        );
    }
    if body["shopLogin"].as_str() != Some(st.shop_login.as_str()) {
        return (
            400,
            answer("1131", "Not accepted call: Shop not recognized", json!({})),
        );
    }
    let (status, out) = decide(st, op, token, &body);
    if let Some(i) = st.lose.iter().position(|o| o == op) {
        st.lose.remove(i);
        return (
            500,
            answer("9999", "Internal error (the answer was lost)", json!({})),
        );
    }
    (status, out)
}

fn decide(st: &mut State, op: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let bank_id = body["bankTransactionID"].as_str().unwrap_or("").to_string();
    match op {
        "create" => {
            let shop_id = body["shopTransactionID"].as_str().unwrap_or("");
            let (Some(amount), 3, false, true) = (
                super::serve::decimal(&body["amount"]),
                body["currency"].as_str().map_or(0, str::len),
                shop_id.is_empty(),
                shop_id.len() <= 50,
            ) else {
                return (
                    400,
                    answer("1108", "Compulsory parameter not set", json!({})),
                );
            };
            st.next += 1;
            let t = format!("tok{}", st.next);
            st.tokens.insert(
                t.clone(),
                (
                    shop_id.to_string(),
                    amount,
                    body["currency"].as_str().unwrap_or("").to_string(),
                ),
            );
            (
                200,
                answer(
                    "0",
                    "request correctly processed",
                    json!({
                "paymentToken": t, "paymentID": format!("{:010}", st.next), "userRedirect": {"href": ""}}),
                ),
            )
        }
        "submit" => {
            let Some((shop_id, amount, currency)) = token.and_then(|t| st.tokens.remove(t)) else {
                return (400, answer("1143", "Invalid payment token", json!({})));
            };
            let card = &body["paymentTypeDetails"]["creditcard"];
            if !(card["token"].is_string() || card["number"].is_string()) {
                return (400, answer("1109", "Missing parameter", json!({})));
            }
            st.next += 1;
            let bank = format!("{}", 900_000 + st.next);
            let ok = amount % 100 != 51;
            st.payments.insert(
                bank.clone(),
                Payment {
                    shop_id: shop_id.clone(),
                    amount,
                    currency: currency.clone(),
                    ok,
                    ..Payment::default()
                },
            );
            let (result, code, why) = if ok {
                ("OK", "", "")
            } else {
                ("KO", "74", "Authorization denied")
            };
            (
                200,
                answer(
                    "0",
                    "request correctly processed",
                    json!({
                "transactionType": "submit", "transactionResult": result,
                "transactionErrorCode": code, "transactionErrorDescription": why,
                "bankTransactionID": bank, "shopTransactionID": shop_id, "currency": currency,
                "userRedirect": {"href": ""}}),
                ),
            )
        }
        "detail" => {
            let shop_id = body["shopTransactionID"].as_str().unwrap_or("");
            match st.payments.iter().find(|(_, p)| p.shop_id == shop_id) {
                Some((bank, p)) => (
                    200,
                    answer(
                        "0",
                        "request correctly processed",
                        json!({
                    "transactionType": "detail",
                    "transactionResult": if p.ok { "OK" } else { "KO" },
                    "transactionErrorDescription": if p.ok { "" } else { "Authorization denied" },
                    "bankTransactionID": bank, "shopTransactionID": shop_id}),
                    ),
                ),
                None => (200, answer("2011", "Transaction not found", json!({}))),
            }
        }
        "capture" | "refund" | "cancel" => {
            let Some(p) = st.payments.get_mut(&bank_id).filter(|p| p.ok) else {
                return (
                    400,
                    answer(
                        "63",
                        "Demand for settlement of one nonexistent transaction",
                        json!({}),
                    ),
                );
            };
            let amount = super::serve::decimal(&body["amount"]).unwrap_or(0);
            let refused = |code: &str, why: &str| {
                (400, answer(code, why, json!({"transactionResult": "KO"})))
            };
            match op {
                "capture" if p.cancelled => return refused("437", "Operation not allowed"),
                "capture" if p.captured == p.amount => {
                    return refused("66", "Preauthorization already notified")
                }
                "capture" if amount <= 0 || amount > p.amount - p.captured => {
                    return refused("58", "Confirmed amount exceeds authorized amount")
                }
                "capture" => p.captured += amount,
                "refund" if amount <= 0 || amount > p.captured - p.refunded => {
                    return refused("58", "Refund amount exceeds the settled amount")
                }
                "refund" => p.refunded += amount,
                _ if p.captured > 0 || p.cancelled => {
                    return refused("437", "Operation not allowed")
                }
                _ => p.cancelled = true,
            }
            (
                200,
                answer(
                    "0",
                    "request correctly processed",
                    json!({
                "transactionType": op, "transactionResult": "OK", "bankTransactionID": bank_id,
                "shopTransactionID": p.shop_id}),
                ),
            )
        }
        _ => (404, answer("404", "Not found", json!({}))),
    }
}

pub struct GestpaySim {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _served: super::serve::Served,
}

impl GestpaySim {
    pub fn start(api_key: &str, shop_login: &str) -> GestpaySim {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.into(),
            shop_login: shop_login.into(),
            ..State::default()
        }));
        let s = state.clone();
        let route = warp::post()
            .and(warp::path!("api" / "v1" / "payment" / String))
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::header::optional::<String>("paymenttoken"))
            .and(warp::body::bytes())
            .map(
                move |op: String,
                      key: Option<String>,
                      token: Option<String>,
                      body: bytes::Bytes| {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let (status, out) =
                        handle(&mut s.lock(), &op, key.as_deref(), token.as_deref(), body);
                    super::serve::reply(status, &out)
                },
            );
        let served = super::serve::serve(route);
        GestpaySim {
            port: served.port,
            state,
            _served: served,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
