//! A local FedEx: its REST APIs' wire formats on a free port, for the
//! carrier adapter's tests. `POST /oauth/token` (form, client
//! credentials) gives bearer tokens that expire (`token_life_s`); `POST
//! /ship/v1/shipments` checks the account and both addresses and answers
//! a tracking number with a base64 PDF label; `PUT
//! /ship/v1/shipments/cancel` cancels a label not picked up; `POST
//! /track/v1/trackingnumbers` answers each number's
//! `latestStatusDetail.code` (set by the test with `set_status`: OC, PU,
//! IT, OD, DL...). Errors as FedEx's `{"errors": [{"code", "message"}]}`.
//! `down`: 503 to everything.
//!
//! Every request is first held to FedEx's published schemas
//! (tests/specs/fedex_ship_track_v1.json): the token's form to
//! `OAuth_FullSchema`, each Ship and Track request to its schema (required
//! fields at every depth, such as `requestedShipment.totalWeight`, their
//! JSON types, enums, lengths); what breaks it is answered 400 with one
//! `INVALID.INPUT.EXCEPTION` error naming each field, nothing done. A
//! number sent as a string (`"5.8"`) is taken where the schema says
//! number or integer: the spec's own intra-EU sample sends its weights and
//! counts so.

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::spec::Spec;

/// FedEx's OAuth, Ship and Track APIs as published.
fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::load("fedex_ship_track_v1.json").numbers_as_strings())
}

/// What FedEx refuses of `body` sent to `method path` before anything is
/// done: 400, an error for each problem the operation's request schema
/// finds.
fn refusal(method: &str, path: &str, body: &Value) -> Option<(u16, Value)> {
    let (_, op) = spec().operation(method, path)?;
    let problems = spec().check(op["request"].as_str()?, body);
    if problems.is_empty() {
        return None;
    }
    let errors: Vec<Value> = problems
        .iter()
        .map(|p| json!({"code": "INVALID.INPUT.EXCEPTION", "message": format!("Invalid field value in the input: {p}")}))
        .collect();
    Some((400, json!({"transactionId": "sim", "errors": errors})))
}

pub use super::serve::Parcel;

#[derive(Default)]
pub struct State {
    pub client_id: String,
    pub client_secret: String,
    pub account: String,
    pub down: bool,
    pub token_life_s: u64,
    /// Tokens given (and when each expires).
    pub tokens: HashMap<String, Instant>,
    pub tokens_issued: usize,
    /// By tracking number.
    pub parcels: HashMap<String, Parcel>,
    /// Every request: (method path, body).
    pub calls: Vec<(String, Value)>,
    next: u64,
}

impl State {
    pub fn set_status(&mut self, tracking: &str, code: &str) {
        if let Some(p) = self.parcels.get_mut(tracking) {
            p.status = code.to_string();
        }
    }
}

fn error(status: u16, code: &str, message: &str) -> (u16, Value) {
    (
        status,
        json!({"transactionId": "sim", "errors": [{"code": code, "message": message}]}),
    )
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.replace('+', " ")))
        })
        .collect()
}

/// A number as FedEx takes them: JSON's, or a string holding one; 0
/// for anything else.
fn number(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0.0)
}

fn address_ok(p: &Value) -> bool {
    let a = &p["address"];
    a["streetLines"][0].as_str().is_some_and(|s| !s.is_empty())
        && a["city"].as_str().is_some_and(|s| !s.is_empty())
        && a["postalCode"].as_str().is_some_and(|s| !s.is_empty())
        && a["countryCode"].as_str().is_some_and(|s| s.len() == 2)
        && p["contact"]["personName"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
}

fn handle(
    st: &mut State,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    if st.down {
        return error(
            503,
            "SERVICE.UNAVAILABLE.ERROR",
            "The service is currently unavailable",
        );
    }
    if (method, path) == ("POST", "/oauth/token") {
        let f = form(body);
        st.calls.push(("POST /oauth/token".into(), json!({})));
        let fields: serde_json::Map<String, Value> = f
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        if let Some(refused) = refusal(method, path, &Value::Object(fields)) {
            return refused;
        }
        let ok = f.get("grant_type").map(String::as_str) == Some("client_credentials")
            && f.get("client_id") == Some(&st.client_id)
            && f.get("client_secret") == Some(&st.client_secret);
        if !ok {
            return error(
                401,
                "NOT.AUTHORIZED.ERROR",
                "The given client credentials were not valid",
            );
        }
        st.tokens_issued += 1;
        let token = format!("sim-token-{}", st.tokens_issued);
        st.tokens.insert(
            token.clone(),
            Instant::now() + Duration::from_secs(st.token_life_s),
        );
        return (
            200,
            json!({"access_token": token, "token_type": "bearer", "expires_in": st.token_life_s, "scope": "CXS"}),
        );
    }
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    st.calls.push((format!("{method} {path}"), body.clone()));
    let token = auth.and_then(|a| a.strip_prefix("Bearer "));
    let valid = token
        .and_then(|t| st.tokens.get(t))
        .is_some_and(|until| Instant::now() < *until);
    if !valid {
        return error(
            401,
            "NOT.AUTHORIZED.ERROR",
            "Access token expired. Please modify your request and try again.",
        );
    }
    if let Some(refused) = refusal(method, path, &body) {
        return refused;
    }
    match (method, path) {
        ("POST", "/ship/v1/shipments") => {
            let s = &body["requestedShipment"];
            if body["accountNumber"]["value"].as_str() != Some(st.account.as_str()) {
                return error(
                    403,
                    "ACCOUNT.NUMBER.MISMATCH",
                    "The account number is not valid for these credentials",
                );
            }
            let weight = number(&s["requestedPackageLineItems"][0]["weight"]["value"]);
            let total = number(&s["totalWeight"]);
            if !address_ok(&s["shipper"])
                || !address_ok(&s["recipients"][0])
                || weight <= 0.0
                || total <= 0.0
            {
                return error(
                    400,
                    "INVALID.INPUT.EXCEPTION",
                    "Invalid field value in the input",
                );
            }
            st.next += 1;
            let tracking = format!("7946{:08}", st.next);
            let pdf = format!("%PDF-1.4\n% simulated FedEx label {tracking}\n%%EOF\n");
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(pdf);
            st.parcels.insert(
                tracking.clone(),
                Parcel {
                    reference: s["requestedPackageLineItems"][0]["customerReferences"][0]["value"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    to_country: s["recipients"][0]["address"]["countryCode"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    status: "OC".into(),
                    cancelled: false,
                },
            );
            (
                200,
                json!({"transactionId": "sim", "output": {"transactionShipments": [{
                    "masterTrackingNumber": tracking, "serviceType": s["serviceType"],
                    "pieceResponses": [{"trackingNumber": tracking, "packageDocuments": [
                        {"contentType": "LABEL", "copiesToPrint": 1, "encodedLabel": encoded, "docType": "PDF"}]}]}]}}),
            )
        }
        ("PUT", "/ship/v1/shipments/cancel") => {
            let t = body["trackingNumber"].as_str().unwrap_or("");
            match st.parcels.get_mut(t) {
                Some(p) if p.status == "OC" => {
                    p.cancelled = true;
                    p.status = "CA".into();
                    (
                        200,
                        json!({"transactionId": "sim", "output": {"cancelledShipment": true, "message": "Shipment is successfully cancelled"}}),
                    )
                }
                Some(_) => (
                    200,
                    json!({"transactionId": "sim", "output": {"cancelledShipment": false, "message": "Shipment already picked up"}}),
                ),
                None => error(
                    404,
                    "TRACKING.TRACKINGNUMBER.NOTFOUND",
                    "Tracking number cannot be found",
                ),
            }
        }
        ("POST", "/track/v1/trackingnumbers") => {
            let asked = body["trackingInfo"].as_array().cloned().unwrap_or_default();
            if asked.is_empty() || asked.len() > 30 {
                return error(
                    400,
                    "TRACKING.TRACKINGNUMBER.EMPTY",
                    "1 to 30 tracking numbers",
                );
            }
            let results: Vec<Value> = asked
                .iter()
                .map(|i| {
                    let t = i["trackingNumberInfo"]["trackingNumber"].as_str().unwrap_or("");
                    match st.parcels.get(t) {
                        Some(p) => json!({"trackingNumber": t, "trackResults": [{
                            "trackingNumberInfo": {"trackingNumber": t},
                            "latestStatusDetail": {"code": p.status, "derivedCode": p.status, "description": p.status}}]}),
                        None => json!({"trackingNumber": t, "trackResults": [{
                            "trackingNumberInfo": {"trackingNumber": t},
                            "error": {"code": "TRACKING.TRACKINGNUMBER.NOTFOUND", "message": "Tracking number cannot be found"}}]}),
                    }
                })
                .collect();
            (
                200,
                json!({"transactionId": "sim", "output": {"completeTrackResults": results}}),
            )
        }
        _ => error(
            404,
            "NOT.FOUND.ERROR",
            "The resource you requested is no longer available",
        ),
    }
}

pub struct FedexSim {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _served: super::serve::Served,
}

impl FedexSim {
    pub fn start(client_id: &str, client_secret: &str, account: &str) -> FedexSim {
        let state = Arc::new(Mutex::new(State {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            account: account.into(),
            token_life_s: 3600,
            ..State::default()
        }));
        let served = super::serve::serve_json(state.clone(), handle);
        FedexSim {
            port: served.port,
            state,
            _served: served,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
