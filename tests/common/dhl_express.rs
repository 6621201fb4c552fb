//! A local DHL Express: the MyDHL API on a free port, HTTP Basic with the
//! API key and secret checked. `POST /mydhlapi/test/shipments` (the
//! planned shipping time as `YYYY-MM-DDTHH:MM:SS GMT+hh:mm`, the product
//! code, the shipper account, both parties' postal addresses in ISO 3166-1
//! alpha-2, a package with its weight, checked) answers 201 with the
//! shipment tracking number and a base64 PDF label in `documents`; `GET
//! /mydhlapi/test/shipments/{number}/tracking` answers its checkpoints
//! (the test adds them: `PU`, `OK`...) or 404. Errors as MyDHL API's
//! problem+json `{"instance", "detail", "title", "status",
//! "additionalDetails"}`. Fault: `down` (503 before anything is done).

use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// A shipment the simulator labelled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shipment {
    pub reference: String,
    pub to_country: String,
    /// Checkpoint codes, oldest first.
    pub events: Vec<String>,
}

#[derive(Default)]
pub struct State {
    /// "key:secret", base64 as Basic authentication sends it.
    pub basic: String,
    pub account: String,
    pub down: bool,
    pub shipments: HashMap<String, Shipment>,
    pub calls: Vec<(String, Value)>,
    next: u64,
}

fn problem(status: u16, title: &str, detail: &str, more: &str) -> (u16, Value) {
    (
        status,
        json!({"instance": "/expressapi/shipments", "detail": detail, "title": title,
            "status": status.to_string(), "additionalDetails": [more]}),
    )
}

fn invalid(more: &str) -> (u16, Value) {
    problem(
        422,
        "Unprocessable Entity",
        "Multiple problems found, see Additional Details",
        more,
    )
}

/// What is wrong with a party, if anything.
fn party_error(p: &Value, at: &str) -> Option<(u16, Value)> {
    let a = &p["postalAddress"];
    for k in ["postalCode", "cityName", "addressLine1"] {
        if a[k].as_str().is_none_or(str::is_empty) {
            return Some(invalid(&format!("{at}.postalAddress.{k} is required")));
        }
    }
    if a["countryCode"].as_str().is_none_or(|c| c.len() != 2) {
        return Some(invalid(&format!(
            "{at}.postalAddress.countryCode must be ISO 3166-1 alpha-2"
        )));
    }
    if p["contactInformation"]["fullName"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        return Some(invalid(&format!(
            "{at}.contactInformation.fullName is required"
        )));
    }
    None
}

/// `YYYY-MM-DDTHH:MM:SS GMT+hh:mm`.
fn planned_ok(t: &str) -> bool {
    let b = t.as_bytes();
    t.len() == 29
        && b[10] == b'T'
        && t[19..].starts_with(" GMT")
        && matches!(b[23], b'+' | b'-')
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
}

fn handle(
    st: &mut State,
    method: &str,
    path: &str,
    basic: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if st.down {
        return problem(503, "Service Unavailable", "try again later", "");
    }
    st.calls.push((format!("{method} {path}"), body.clone()));
    if basic != Some(format!("Basic {}", st.basic).as_str()) {
        return problem(401, "Unauthorized", "Invalid credentials", "");
    }
    let rest = path.strip_prefix("/mydhlapi/test").unwrap_or(path);
    let seg: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match (method, seg.as_slice()) {
        ("POST", ["shipments"]) => {
            if !body["plannedShippingDateAndTime"]
                .as_str()
                .is_some_and(planned_ok)
            {
                return invalid("plannedShippingDateAndTime must be YYYY-MM-DDTHH:MM:SS GMT+hh:mm");
            }
            if body["productCode"].as_str().is_none_or(str::is_empty) {
                return invalid("productCode is required");
            }
            if body["accounts"][0]["typeCode"] != "shipper"
                || body["accounts"][0]["number"].as_str() != Some(st.account.as_str())
            {
                return problem(
                    400,
                    "Bad Request",
                    "Account number is not valid for the user",
                    "",
                );
            }
            let c = &body["customerDetails"];
            if let Some(e) = party_error(&c["shipperDetails"], "customerDetails.shipperDetails")
                .or_else(|| party_error(&c["receiverDetails"], "customerDetails.receiverDetails"))
            {
                return e;
            }
            if body["content"]["packages"][0]["weight"]
                .as_f64()
                .unwrap_or(0.0)
                <= 0.0
            {
                return invalid("content.packages[0].weight must be positive");
            }
            st.next += 1;
            let number = format!("{:010}", 1_234_567_000 + st.next);
            use base64::Engine as _;
            let pdf = format!("%PDF-1.4\n% simulated DHL Express label {number}\n%%EOF\n");
            st.shipments.insert(
                number.clone(),
                Shipment {
                    reference: body["customerReferences"][0]["value"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    to_country: c["receiverDetails"]["postalAddress"]["countryCode"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    events: Vec::new(),
                },
            );
            (
                201,
                json!({
                    "url": "http://127.0.0.1/mydhlapi/test/shipments",
                    "shipmentTrackingNumber": number,
                    "trackingUrl": format!("http://127.0.0.1/mydhlapi/test/shipments/{number}/tracking"),
                    "packages": [{"referenceNumber": 1, "trackingNumber": format!("JD0146000{number}")}],
                    "documents": [{"imageFormat": "PDF", "content": base64::engine::general_purpose::STANDARD.encode(pdf), "typeCode": "label"}],
                }),
            )
        }
        ("GET", ["shipments", number, "tracking"]) => match st.shipments.get(*number) {
            Some(s) => {
                let events: Vec<Value> = s
                    .events
                    .iter()
                    .map(|code| json!({"date": "2026-11-27", "time": "10:00:00", "typeCode": code, "description": code}))
                    .collect();
                (
                    200,
                    json!({"shipments": [{"shipmentTrackingNumber": number, "status": "Success", "events": events}]}),
                )
            }
            None => problem(404, "Not Found", "No shipment found", ""),
        },
        _ => problem(404, "Not Found", "no such resource", ""),
    }
}

pub struct DhlExpressSim {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _served: super::serve::Served,
}

impl DhlExpressSim {
    pub fn start(key: &str, secret: &str, account: &str) -> DhlExpressSim {
        use base64::Engine as _;
        let state = Arc::new(Mutex::new(State {
            basic: base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}")),
            account: account.into(),
            ..State::default()
        }));
        let served = super::serve::serve_json(state.clone(), handle);
        DhlExpressSim {
            port: served.port,
            state,
            _served: served,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/mydhlapi/test", self.port)
    }
}
