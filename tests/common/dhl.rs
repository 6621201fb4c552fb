//! A local DHL: the Parcel DE Shipping API (v2) and the Shipment
//! Tracking - Unified API on a free port. `POST
//! /parcel/de/shipping/v2/orders?docFormat=PDF` (Basic authentication and
//! `dhl-api-key`; the billing number, an 8-35 character reference and
//! both addresses, countries in alpha-3, checked) answers a shipment
//! number and a base64 PDF label; `DELETE ...orders?profile=&shipment=`
//! cancels one still `pre-transit`; `GET /track/shipments?trackingNumber=`
//! answers its status code (set by the test: pre-transit, transit,
//! delivered, failure) or 404. Errors as DHL's `{"status": {"title",
//! "statusCode", "detail"}, "items": [{"validationMessages"}]}`.
//!
//! A shipping call is first held to DHL's published Parcel DE Shipping
//! API 2.1.12 (tests/specs/dhl_parcel_de_v2.json): the operation's query
//! parameters (the cancel's required `profile` and `shipment`; the
//! create's enums and booleans) and the create's `ShipmentOrderRequest`
//! schema (required fields at every depth, JSON types, enums such as the
//! alpha-3 countries, lengths, ranges; `oneOf` for the shipper and the
//! consignee); what breaks them is answered 400 with a validation message
//! for each property, nothing done. Every call is recorded with its query.

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use warp::Filter;

use super::spec::{query_pairs, Problem, Spec};

/// DHL's Parcel DE Shipping API as published.
fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::load("dhl_parcel_de_v2.json"))
}

/// What DHL refuses of a shipping call to `/orders` (`rest`: the path
/// after the API's base) before anything is done: its query parameters,
/// then its body, by the spec's operation.
fn refusal(method: &str, rest: &str, q: &str, body: &Value) -> Option<(u16, Value)> {
    let (_, op) = spec().operation(method, rest)?;
    let pairs = query_pairs(q);
    let get = |place: &str, name: &str| {
        (place == "query")
            .then(|| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
            .flatten()
    };
    let mut problems = spec().check_parameters(&op["parameters"], &get);
    if let Some(schema) = op["request"].as_str() {
        problems.extend(spec().check(schema, body));
    }
    (!problems.is_empty()).then(|| invalid_all(&problems))
}

/// DHL's answer to a request that fails validation: a message for each
/// property.
fn invalid_all(problems: &[Problem]) -> (u16, Value) {
    let messages: Vec<Value> = problems
        .iter()
        .map(|p| json!({"property": p.at, "validationMessage": p.detail, "validationState": "Error"}))
        .collect();
    let mut v = status(400, "Bad Request", "Validation failed");
    v["items"] = json!([{"sstatus": {"title": "Bad Request", "statusCode": 400},
        "validationMessages": messages}]);
    (400, v)
}

pub use super::serve::Parcel;

#[derive(Default)]
pub struct State {
    pub api_key: String,
    /// "user:password", base64 as Basic authentication sends it.
    pub basic: String,
    pub billing_number: String,
    pub down: bool,
    pub parcels: HashMap<String, Parcel>,
    pub calls: Vec<(String, Value)>,
    next: u64,
}

fn status(code: u16, title: &str, detail: &str) -> Value {
    json!({"status": {"title": title, "statusCode": code, "detail": detail}})
}

fn invalid(property: &str, message: &str) -> (u16, Value) {
    let mut v = status(400, "Bad Request", "Validation failed");
    v["items"] = json!([{"sstatus": {"title": "Bad Request", "statusCode": 400},
        "validationMessages": [{"property": property, "validationMessage": message, "validationState": "Error"}]}]);
    (400, v)
}

fn party_error(p: &Value, at: &str) -> Option<(u16, Value)> {
    for k in ["name1", "addressStreet", "postalCode", "city"] {
        if p[k].as_str().is_none_or(str::is_empty) {
            return Some(invalid(
                &format!("shipments[0].{at}.{k}"),
                "must not be empty",
            ));
        }
    }
    if p["country"].as_str().is_none_or(|c| c.len() != 3) {
        return Some(invalid(
            &format!("shipments[0].{at}.country"),
            "must be an ISO 3166-1 alpha-3 code",
        ));
    }
    None
}

fn query(q: &str, name: &str) -> String {
    q.split('&')
        .find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap_or_default()
}

fn handle(
    st: &mut State,
    method: &str,
    path: &str,
    q: &str,
    basic: Option<&str>,
    key: Option<&str>,
    body: Value,
) -> (u16, Value) {
    if st.down {
        return (503, status(503, "Service Unavailable", "try again later"));
    }
    let called = if q.is_empty() {
        format!("{method} {path}")
    } else {
        format!("{method} {path}?{q}")
    };
    st.calls.push((called, body.clone()));
    if key != Some(st.api_key.as_str()) {
        return (401, status(401, "Unauthorized", "Invalid API key"));
    }
    let authenticated = basic == Some(format!("Basic {}", st.basic).as_str());
    if let Some(rest) = path.strip_prefix("/parcel/de/shipping/v2") {
        if !authenticated {
            return (401, status(401, "Unauthorized", "Invalid user credentials"));
        }
        if let Some(refused) = refusal(method, rest, q, &body) {
            return refused;
        }
    }
    match (method, path) {
        ("POST", "/parcel/de/shipping/v2/orders") => {
            if query(q, "docFormat") != "PDF" {
                return invalid("docFormat", "must be PDF or ZPL2");
            }
            let s = &body["shipments"][0];
            if s["billingNumber"].as_str() != Some(st.billing_number.as_str()) {
                return invalid(
                    "shipments[0].billingNumber",
                    "not a billing number of this customer",
                );
            }
            let reference = s["refNo"].as_str().unwrap_or("");
            if !(8..=35).contains(&reference.len()) {
                return invalid("shipments[0].refNo", "must have 8 to 35 characters");
            }
            if let Some(e) = party_error(&s["shipper"], "shipper")
                .or_else(|| party_error(&s["consignee"], "consignee"))
            {
                return e;
            }
            if s["details"]["weight"]["value"].as_f64().unwrap_or(0.0) <= 0.0 {
                return invalid("shipments[0].details.weight", "must be positive");
            }
            st.next += 1;
            let number = format!("0034043333301020{:06}", st.next);
            use base64::Engine as _;
            let pdf = format!("%PDF-1.4\n% simulated DHL label {number}\n%%EOF\n");
            st.parcels.insert(
                number.clone(),
                Parcel {
                    reference: reference.to_string(),
                    to_country: s["consignee"]["country"].as_str().unwrap_or("").to_string(),
                    status: "pre-transit".into(),
                    cancelled: false,
                },
            );
            let mut v = status(200, "OK", "");
            v["items"] = json!([{"shipmentNo": number, "sstatus": {"title": "OK", "statusCode": 200},
                "label": {"b64": base64::engine::general_purpose::STANDARD.encode(pdf), "fileFormat": "PDF"}}]);
            (200, v)
        }
        ("DELETE", "/parcel/de/shipping/v2/orders") => {
            let number = query(q, "shipment");
            let mut v = status(200, "OK", "");
            match st.parcels.get_mut(&number) {
                Some(p) if p.status == "pre-transit" && !p.cancelled => {
                    p.cancelled = true;
                    v["items"] = json!([{"shipmentNo": number, "sstatus": {"title": "OK", "statusCode": 200}}]);
                    (200, v)
                }
                _ => {
                    let mut v = status(400, "Bad Request", "Shipment cannot be deleted");
                    v["items"] = json!([{"shipmentNo": number, "sstatus": {"title": "Shipment already manifested or unknown", "statusCode": 400}}]);
                    (400, v)
                }
            }
        }
        ("GET", "/track/shipments") => {
            let number = query(q, "trackingNumber");
            match st.parcels.get(&number) {
                Some(p) => (
                    200,
                    json!({"shipments": [{"id": number, "service": "parcel-de",
                    "status": {"statusCode": p.status, "status": p.status, "description": p.status}}]}),
                ),
                None => (
                    404,
                    json!({"title": "No shipment with given tracking number found.", "status": 404}),
                ),
            }
        }
        _ => (404, status(404, "Not Found", "no such resource")),
    }
}

pub struct DhlSim {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _served: super::serve::Served,
}

impl DhlSim {
    pub fn start(api_key: &str, user: &str, password: &str, billing_number: &str) -> DhlSim {
        use base64::Engine as _;
        let state = Arc::new(Mutex::new(State {
            api_key: api_key.into(),
            basic: base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
            billing_number: billing_number.into(),
            ..State::default()
        }));
        let s = state.clone();
        let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
        let route = warp::method()
            .and(warp::path::full())
            .and(raw_query)
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::header::optional::<String>("dhl-api-key"))
            .and(warp::body::bytes())
            .map(
                move |m: warp::http::Method,
                      path: warp::path::FullPath,
                      q: String,
                      basic: Option<String>,
                      key: Option<String>,
                      body: bytes::Bytes| {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let (code, out) = handle(
                        &mut s.lock(),
                        m.as_str(),
                        path.as_str(),
                        &q,
                        basic.as_deref(),
                        key.as_deref(),
                        body,
                    );
                    super::serve::reply(code, &out)
                },
            );
        let served = super::serve::serve(route);
        DhlSim {
            port: served.port,
            state,
            _served: served,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/parcel/de/shipping/v2", self.port)
    }

    pub fn tracking_url(&self) -> String {
        format!("http://127.0.0.1:{}/track/shipments", self.port)
    }
}
