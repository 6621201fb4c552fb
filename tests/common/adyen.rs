//! A local Adyen: the Checkout API's wire format (v71) on a free port,
//! for the adapter's end-to-end tests. `POST /v71/payments` authorizes
//! (an amount ending in 51 minor units is refused), `/captures`,
//! `/refunds`, `/cancels` follow the money as Adyen does (never more
//! captured than authorized, nor refunded than captured, no cancel after
//! a capture), answering 201 `received`; `X-API-Key` is checked, an
//! `Idempotency-Key` seen before answers its first answer. Faults: `down`
//! (503 before anything is done), `lose_answers` (done, then a 500: the
//! answer lost on the way), `slow_answers` (done, answered only after
//! `slow_by`: past the caller's timeout). `webhook` delivers notifications as Adyen
//! does: `{"live", "notificationItems": [{"NotificationRequestItem"}]}`,
//! each signed with the HMAC key (HMAC-SHA256 over eight fields joined by
//! `:`, base64, in `additionalData.hmacSignature`).
//!
//! Every request is first held to Adyen's published Checkout API v71
//! (tests/specs/adyen_checkout_v71.json): the operation's request schema
//! (required fields such as `returnUrl`, their JSON types, no field the
//! schema does not know) and the `Idempotency-Key` of at most 64
//! characters; what breaks it is answered as Adyen answers a bad request:
//! 422 `{status, errorCode, message, errorType: "validation"}` naming the
//! field, nothing done. (The error codes are the simulator's; the body's
//! shape is Adyen's `ServiceError`.)

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use warp::Filter;

use super::spec::{Kind, Spec};

/// Adyen's Checkout API v71 as published (read once per test binary).
fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::load("adyen_checkout_v71.json"))
}

/// The spec's `Idempotency-Key`: "a maximum of 64 characters".
const IDEMPOTENCY_KEY_MAX: usize = 64;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payment {
    pub reference: String,
    pub amount: i64,
    pub currency: String,
    pub captured: i64,
    pub refunded: i64,
    pub cancelled: bool,
    pub refused: bool,
}

#[derive(Default)]
pub struct State {
    pub api_key: String,
    pub merchant: String,
    pub down: bool,
    pub lose_answers: u32,
    pub slow_answers: u32,
    pub slow_by: std::time::Duration,
    /// By pspReference.
    pub payments: HashMap<String, Payment>,
    /// Idempotency-Key -> (request body, status, answer).
    keys: HashMap<String, (Value, u16, Value)>,
    /// Every request that reached the simulator: (path, body).
    pub calls: Vec<(String, Value)>,
    next: u64,
}

impl State {
    /// The payments made for an order reference.
    pub fn payments_of(&self, reference: &str) -> Vec<Payment> {
        self.payments
            .values()
            .filter(|p| p.reference == reference)
            .cloned()
            .collect()
    }

    fn psp(&mut self) -> String {
        self.next += 1;
        format!("SIM{:013}", self.next)
    }
}

fn error(status: u16, code: &str, message: &str, kind: &str) -> (u16, Value) {
    (
        status,
        json!({"status": status, "errorCode": code, "message": message, "errorType": kind}),
    )
}

/// What Adyen refuses of a request before anything is done: 422
/// `validation` naming the first field the spec's schema of the operation
/// finds wrong (a path no operation of the spec has is left to `decide`).
pub fn refusal(path: &str, idem: Option<&str>, body: &Value) -> Option<(u16, Value)> {
    if idem.is_some_and(|k| k.is_empty() || k.chars().count() > IDEMPOTENCY_KEY_MAX) {
        return Some(error(
            422,
            "14_030",
            "Idempotency-Key must have 1 to 64 characters",
            "validation",
        ));
    }
    let (_, op) = spec().operation("POST", path.strip_prefix("/v71")?)?;
    let schema = op["request"].as_str()?;
    let first = spec().check(schema, body).into_iter().next()?;
    let message = match first.kind {
        Kind::Missing => format!("Required field '{}' is not provided", first.at),
        Kind::Unknown => format!(
            "Structure of {schema} contains the following unknown fields: [{}]",
            first.at
        ),
        Kind::Invalid => format!("Field '{}' is invalid: {}", first.at, first.detail),
    };
    Some(error(422, "14_030", &message, "validation"))
}

fn handle(
    st: &mut State,
    path: &str,
    key: Option<&str>,
    idem: Option<&str>,
    body: Value,
) -> (u16, Value) {
    if st.down {
        return error(503, "000", "Service Unavailable", "internal");
    }
    st.calls.push((path.to_string(), body.clone()));
    if key != Some(st.api_key.as_str()) {
        return error(
            401,
            "000",
            "HTTP Status Response - Unauthorized",
            "security",
        );
    }
    if let Some(refused) = refusal(path, idem, &body) {
        return refused;
    }
    if let Some(k) = idem {
        if let Some((asked, status, answer)) = st.keys.get(k) {
            if *asked == body {
                return (*status, answer.clone());
            }
            return error(
                422,
                "704",
                "Idempotency key reused with another request",
                "validation",
            );
        }
    }
    let (status, answer) = decide(st, path, &body);
    if let Some(k) = idem {
        st.keys
            .insert(k.to_string(), (body, status, answer.clone()));
    }
    if st.lose_answers > 0 {
        st.lose_answers -= 1;
        return error(
            500,
            "905",
            "Internal error (the answer was lost)",
            "internal",
        );
    }
    (status, answer)
}

fn decide(st: &mut State, path: &str, body: &Value) -> (u16, Value) {
    if body["merchantAccount"].as_str() != Some(st.merchant.as_str()) {
        return error(403, "901", "Invalid Merchant Account", "security");
    }
    let amount = body["amount"]["value"].as_i64();
    let currency = body["amount"]["currency"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let reference = body["reference"].as_str().unwrap_or_default().to_string();
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    match seg[..] {
        ["v71", "payments"] => {
            let (Some(amount), true, false, true) = (
                amount.filter(|a| *a > 0),
                currency.len() == 3,
                reference.is_empty(),
                body["paymentMethod"].is_object(),
            ) else {
                return error(
                    422,
                    "14_030",
                    "Required field missing or invalid",
                    "validation",
                );
            };
            let psp = st.psp();
            let refused = amount % 100 == 51;
            st.payments.insert(
                psp.clone(),
                Payment {
                    reference: reference.clone(),
                    amount,
                    currency: currency.clone(),
                    refused,
                    ..Payment::default()
                },
            );
            let mut a = json!({
                "pspReference": psp,
                "merchantReference": reference,
                "amount": {"currency": currency, "value": amount},
            });
            if refused {
                a["resultCode"] = json!("Refused");
                a["refusalReason"] = json!("Refused");
                a["refusalReasonCode"] = json!("2");
            } else {
                a["resultCode"] = json!("Authorised");
            }
            (200, a)
        }
        ["v71", "payments", original, op @ ("captures" | "refunds" | "cancels")] => {
            let Some(p) = st.payments.get(original).cloned().filter(|p| !p.refused) else {
                return error(
                    422,
                    "167",
                    "Original pspReference required for this operation",
                    "validation",
                );
            };
            let a = amount.unwrap_or(0);
            let wrong_currency = op != "cancels" && currency != p.currency;
            let allowed = match op {
                "captures" => !p.cancelled && a > 0 && a <= p.amount - p.captured,
                "refunds" => a > 0 && a <= p.captured - p.refunded,
                _ => !p.cancelled && p.captured == 0,
            };
            if wrong_currency || !allowed || reference.is_empty() {
                return error(422, "137", "Invalid amount specified", "validation");
            }
            if let Some(q) = st.payments.get_mut(original) {
                match op {
                    "captures" => q.captured += a,
                    "refunds" => q.refunded += a,
                    _ => q.cancelled = true,
                }
            }
            let psp = st.psp();
            let mut answer = json!({
                "merchantAccount": st.merchant,
                "paymentPspReference": original,
                "pspReference": psp,
                "reference": reference,
                "status": "received",
            });
            if op != "cancels" {
                answer["amount"] = json!({"currency": currency, "value": a});
            }
            (201, answer)
        }
        _ => error(404, "000", "Not found", "validation"),
    }
}

/// A notification item (unsigned).
pub fn item(
    psp: &str,
    original: &str,
    merchant_reference: &str,
    value: i64,
    event: &str,
    success: bool,
) -> Value {
    json!({
        "pspReference": psp,
        "originalReference": original,
        "merchantAccountCode": "HoldfastECOM",
        "merchantReference": merchant_reference,
        "amount": {"value": value, "currency": "EUR"},
        "eventCode": event,
        "eventDate": "2026-11-27T10:00:00+01:00",
        "success": if success { "true" } else { "false" },
        "additionalData": {},
    })
}

/// Adyen's signature of an item under the hex key `key`.
pub fn signature(item: &Value, key: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac;
    let key: Vec<u8> = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&key[i..i + 2], 16).expect("hex key"))
        .collect();
    let field = |k: &str| item[k].as_str().unwrap_or("").to_string();
    let data = [
        field("pspReference"),
        field("originalReference"),
        field("merchantAccountCode"),
        field("merchantReference"),
        item["amount"]["value"].to_string(),
        item["amount"]["currency"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        field("eventCode"),
        field("success"),
    ]
    .join(":");
    let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).expect("key");
    m.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// Delivers `items`, each signed with the hex key `key`, to `url`; the
/// status and body of the answer.
pub fn webhook(url: &str, items: &[Value], key: &str) -> (u16, String) {
    let items: Vec<Value> = items
        .iter()
        .map(|i| {
            let mut i = i.clone();
            i["additionalData"]["hmacSignature"] = json!(signature(&i, key));
            json!({ "NotificationRequestItem": i })
        })
        .collect();
    let body = json!({"live": "false", "notificationItems": items});
    let r = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .expect("webhook delivered");
    let status = r.status().as_u16();
    (status, r.text().unwrap_or_default())
}

pub struct AdyenSim {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _served: super::serve::Served,
}

impl AdyenSim {
    pub fn start(api_key: &str, merchant: &str) -> AdyenSim {
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.into(),
            merchant: merchant.into(),
            ..State::default()
        }));
        let s = state.clone();
        let route = warp::post()
            .and(warp::path::full())
            .and(warp::header::optional::<String>("x-api-key"))
            .and(warp::header::optional::<String>("idempotency-key"))
            .and(warp::body::bytes())
            .and_then(
                move |path: warp::path::FullPath,
                      key: Option<String>,
                      idem: Option<String>,
                      body: bytes::Bytes| {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let (status, answer, late) = {
                        let mut st = s.lock();
                        let (status, answer) = handle(
                            &mut st,
                            path.as_str(),
                            key.as_deref(),
                            idem.as_deref(),
                            body,
                        );
                        let late = (st.slow_answers > 0).then(|| {
                            st.slow_answers -= 1;
                            st.slow_by
                        });
                        (status, answer, late)
                    };
                    async move {
                        if let Some(d) = late {
                            tokio::time::sleep(d).await;
                        }
                        Ok::<_, warp::Rejection>(super::serve::reply(status, &answer))
                    }
                },
            );
        let served = super::serve::serve(route);
        AdyenSim {
            port: served.port,
            state,
            _served: served,
        }
    }

    /// The Checkout API's base URL, version included.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v71", self.port)
    }
}
