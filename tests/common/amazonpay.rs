//! A local Amazon Pay (API v2) on a free port, checking every request's
//! signature as Amazon does (`AMZN-PAY-RSASSA-PSS-V2`: the canonical
//! request of the method, path, query, the signed headers and the body's
//! SHA-256, hashed, verified with RSASSA-PSS SHA-256 under the merchant's
//! public key). Checkout sessions opened by the test (as the Amazon Pay
//! button would) are completed into charges (an amount ending in 51
//! minor units is declined: `HardDeclined`); charges are captured,
//! refunded, canceled, following the money; `x-amz-pay-idempotency-key`
//! answers its first answer again. Errors `{"reasonCode", "message"}`.
//! Faults: `down` (503 before anything is done), `lose` (the next answer
//! of each operation named is lost: done, then a 500).
//!
//! A signed request is then held to Amazon Pay's published rules
//! (tests/specs/amazonpay_v2_signing.json) before anything is done, and
//! refused as Amazon does, 400 with its reason code: an
//! `x-amz-pay-idempotency-key` of more than 32 characters or any but
//! a-z A-Z 0-9 - _ (`InvalidHeaderValue`), none on an operation the spec
//! says carries one (`MissingHeader`); a body without a field the
//! operation requires (`MissingParameterValue`), with one it does not know
//! (`UnrecognizedField`), or a Price or string of the wrong shape
//! (`InvalidParameterValue`). A key used again for another request is
//! `DuplicateIdempotencyKey`.

use base64::Engine as _;
use parking_lot::Mutex;
use rsa::signature::Verifier;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use warp::Filter;

use super::spec::Spec;

/// Amazon Pay's signing, operations and idempotency rules as published.
fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::load("amazonpay_v2_signing.json"))
}

/// The spec's idempotency rule: "at most 32 characters of a-z A-Z 0-9 - _".
fn key_fits(k: &str) -> bool {
    (1..=32).contains(&k.len())
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A Price (`{amount, currencyCode}`): the amount a decimal, as a string
/// (the README's) or a number (the .NET SDK's); the currency ISO 4217.
fn price_fits(v: &Value) -> bool {
    let amount = match &v["amount"] {
        Value::String(a) => a.parse::<f64>().is_ok(),
        a => a.is_number(),
    };
    let currency = v["currencyCode"]
        .as_str()
        .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
    v.is_object() && amount && currency
}

/// What Amazon Pay refuses of a request to `/v2/{rest}` before anything
/// is done, by the spec's operation (its body's fields, each "Price" or
/// "string", "(required" or optional; whether it carries a key).
fn refusal(method: &str, rest: &str, key: Option<&str>, body: &Value) -> Option<(u16, Value)> {
    if let Some(k) = key.filter(|k| !key_fits(k)) {
        return Some(error(
            400,
            "InvalidHeaderValue",
            &format!("x-amz-pay-idempotency-key {k:?}: at most 32 characters of a-z A-Z 0-9 - _"),
        ));
    }
    let (_, op) = spec().operation(method, &format!("/v2/{rest}"))?;
    if key.is_none() && op.get("idempotency_key").is_some() {
        return Some(error(
            400,
            "MissingHeader",
            "x-amz-pay-idempotency-key is required",
        ));
    }
    let fields = op["body"].as_object()?;
    if let Some(unknown) = body
        .as_object()
        .into_iter()
        .flat_map(|b| b.keys())
        .find(|k| !fields.contains_key(*k))
    {
        return Some(error(
            400,
            "UnrecognizedField",
            &format!("{unknown} is not a field of this request"),
        ));
    }
    for (name, what) in fields {
        let what = what.as_str().unwrap_or_default();
        let fits = match &body[name.as_str()] {
            Value::Null if what.contains("(required") => {
                return Some(error(
                    400,
                    "MissingParameterValue",
                    &format!("{name} is required"),
                ))
            }
            Value::Null => true,
            v if what.starts_with("Price") => price_fits(v),
            v if what.starts_with("string") => v.is_string(),
            _ => true,
        };
        if !fits {
            return Some(error(
                400,
                "InvalidParameterValue",
                &format!("The value provided for {name} is invalid"),
            ));
        }
    }
    None
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Charge {
    pub session: String,
    pub amount: i64,
    pub captured: i64,
    pub refunded: i64,
    pub canceled: bool,
}

pub struct State {
    pub public_key_id: String,
    pub key: rsa::RsaPublicKey,
    /// Checkout sessions the buyer approved: id -> its charge, once completed.
    pub sessions: HashMap<String, Option<String>>,
    /// By chargeId.
    pub charges: HashMap<String, Charge>,
    /// Operations ("complete", "capture", "refunds", "cancel") whose next
    /// answer is lost.
    pub lose: Vec<String>,
    /// Requests whose signature did not verify.
    pub forged: usize,
    /// 503 before anything is done.
    pub down: bool,
    keys: HashMap<String, (String, u16, Value)>,
    next: u64,
}

impl State {
    pub fn open_session(&mut self, id: &str) {
        self.sessions.insert(id.to_string(), None);
    }

    pub fn charges_of(&self, session: &str) -> Vec<Charge> {
        self.charges
            .values()
            .filter(|c| c.session == session)
            .cloned()
            .collect()
    }
}

fn error(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (code, json!({"reasonCode": reason, "message": message}))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `authorization` signs this request under `st`'s key.
fn verified(
    st: &State,
    method: &str,
    path: &str,
    headers: &warp::http::HeaderMap,
    body: &[u8],
) -> bool {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(rest) = auth.strip_prefix("AMZN-PAY-RSASSA-PSS-V2 ") else {
        return false;
    };
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or("")
            .to_string()
    };
    if field("PublicKeyId") != st.public_key_id {
        return false;
    }
    let signed = field("SignedHeaders");
    let mut canonical_headers = String::new();
    for name in signed.split(';') {
        let value = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        canonical_headers.push_str(&format!("{name}:{}\n", value.trim()));
    }
    let canonical = format!(
        "{method}\n{path}\n\n{canonical_headers}\n{signed}\n{}",
        hex(&Sha256::digest(body))
    );
    let to_sign = format!(
        "AMZN-PAY-RSASSA-PSS-V2\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(field("Signature")) else {
        return false;
    };
    let Ok(sig) = rsa::pss::Signature::try_from(sig.as_slice()) else {
        return false;
    };
    rsa::pss::VerifyingKey::<Sha256>::new(st.key.clone())
        .verify(to_sign.as_bytes(), &sig)
        .is_ok()
}

fn decide(
    st: &mut State,
    method: &str,
    seg: &[&str],
    body: &Value,
) -> (&'static str, (u16, Value)) {
    match (method, seg) {
        ("POST", ["checkoutSessions", id, "complete"]) => {
            let answer = match st.sessions.get(*id) {
                None => error(404, "ResourceNotFound", "no such checkout session"),
                Some(Some(_)) => error(
                    422,
                    "InvalidCheckoutSessionStatus",
                    "the session is completed",
                ),
                Some(None) => {
                    let amount =
                        super::serve::decimal(&body["chargeAmount"]["amount"]).unwrap_or(0);
                    if amount % 100 == 51 {
                        error(400, "HardDeclined", "The payment method was declined")
                    } else {
                        st.next += 1;
                        let charge = format!("S02-0000000-{:07}-C{:06}", st.next, st.next);
                        st.sessions.insert(id.to_string(), Some(charge.clone()));
                        st.charges.insert(
                            charge.clone(),
                            Charge {
                                session: id.to_string(),
                                amount,
                                ..Charge::default()
                            },
                        );
                        (
                            200,
                            json!({"checkoutSessionId": id, "statusDetails": {"state": "Completed"},
                            "chargeId": charge, "chargePermissionId": format!("S02-0000000-{:07}", st.next)}),
                        )
                    }
                }
            };
            ("complete", answer)
        }
        ("POST", ["charges", id, "capture"]) => {
            let amount = super::serve::decimal(&body["captureAmount"]["amount"]).unwrap_or(0);
            let answer = match st.charges.get_mut(*id) {
                Some(c) if !c.canceled && amount > 0 && amount <= c.amount - c.captured => {
                    c.captured += amount;
                    (
                        200,
                        json!({"chargeId": id, "statusDetails": {"state": "Captured"}}),
                    )
                }
                Some(_) => error(422, "InvalidChargeStatus", "the charge cannot be captured"),
                None => error(404, "ResourceNotFound", "no such charge"),
            };
            ("capture", answer)
        }
        ("POST", ["refunds"]) => {
            let id = body["chargeId"].as_str().unwrap_or("");
            let amount = super::serve::decimal(&body["refundAmount"]["amount"]).unwrap_or(0);
            let answer = match st.charges.get_mut(id) {
                Some(c) if amount > 0 && amount <= c.captured - c.refunded => {
                    c.refunded += amount;
                    st.next += 1;
                    (
                        201,
                        json!({"refundId": format!("S02-R{:06}", st.next), "chargeId": id,
                        "statusDetails": {"state": "RefundInitiated"}}),
                    )
                }
                Some(_) => error(422, "TransactionAmountExceeded", "more than was captured"),
                None => error(404, "ResourceNotFound", "no such charge"),
            };
            ("refunds", answer)
        }
        ("DELETE", ["charges", id, "cancel"]) => {
            let answer = match st.charges.get_mut(*id) {
                Some(c) if c.captured == 0 => {
                    c.canceled = true;
                    (
                        200,
                        json!({"chargeId": id, "statusDetails": {"state": "Canceled"}}),
                    )
                }
                Some(_) => error(
                    422,
                    "InvalidChargeStatus",
                    "a captured charge is refunded, not canceled",
                ),
                None => error(404, "ResourceNotFound", "no such charge"),
            };
            ("cancel", answer)
        }
        _ => ("", error(404, "ResourceNotFound", "no such operation")),
    }
}

fn handle(
    st: &mut State,
    method: &str,
    path: &str,
    headers: &warp::http::HeaderMap,
    raw: &[u8],
) -> (u16, Value) {
    if st.down {
        return error(503, "ServiceUnavailable", "try again later");
    }
    if !verified(st, method, path, headers, raw) {
        st.forged += 1;
        return error(
            401,
            "InvalidRequestSignature",
            "the request signature does not match",
        );
    }
    let Some(rest) = path.strip_prefix("/sandbox/v2/") else {
        return error(404, "ResourceNotFound", "only the sandbox here");
    };
    let body: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let key = headers
        .get("x-amz-pay-idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if let Some(refused) = refusal(method, rest, key.as_deref(), &body) {
        return refused;
    }
    if let Some((asked, status, answer)) = key.as_ref().and_then(|k| st.keys.get(k)) {
        if *asked == format!("{method} {path} {body}") {
            return (*status, answer.clone());
        }
        return error(
            400,
            "DuplicateIdempotencyKey",
            "idempotency key used for another request",
        );
    }
    let seg: Vec<&str> = rest.split('/').collect();
    let (op, (status, answer)) = decide(st, method, &seg, &body);
    if let Some(k) = key {
        st.keys.insert(
            k,
            (format!("{method} {path} {body}"), status, answer.clone()),
        );
    }
    if let Some(i) = st.lose.iter().position(|o| o == op) {
        st.lose.remove(i);
        return error(500, "InternalServerError", "the answer was lost");
    }
    (status, answer)
}

pub struct AmazonPaySim {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _served: super::serve::Served,
}

impl AmazonPaySim {
    pub fn start(public_key_id: &str, key: rsa::RsaPublicKey) -> AmazonPaySim {
        let state = Arc::new(Mutex::new(State {
            public_key_id: public_key_id.into(),
            key,
            sessions: HashMap::new(),
            charges: HashMap::new(),
            lose: Vec::new(),
            forged: 0,
            down: false,
            keys: HashMap::new(),
            next: 0,
        }));
        let s = state.clone();
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(
                move |m: warp::http::Method,
                      path: warp::path::FullPath,
                      headers: warp::http::HeaderMap,
                      body: bytes::Bytes| {
                    let (code, out) =
                        handle(&mut s.lock(), m.as_str(), path.as_str(), &headers, &body);
                    super::serve::reply(code, &out)
                },
            );
        let served = super::serve::serve(route);
        AmazonPaySim {
            port: served.port,
            state,
            _served: served,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
