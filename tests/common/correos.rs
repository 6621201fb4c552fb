//! A local Correos on a free port: the pre-registration web service
//! (SOAP 1.1 at `/preregistroenvios`, Basic authentication; `SOAPAction`
//! `PreRegistro`: the labeller code, both parties and the weight checked,
//! a `CodEnvio` and a base64 PDF label answered; `AnularOp`: a parcel not
//! yet admitted cancelled) and the tracking service (`GET
//! /canonico/eventos_envio_servicio_auth/{CodEnvio}`: its events, the
//! last one's `desTextoResumen` set by the test: Pre-registrado,
//! Admitido, En tránsito, En reparto, Entregado). SOAP answers carry
//! `Resultado` 0, or 1 with `BultoError/Error` and `DescError`.

use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use warp::Filter;

use super::serve::xml_tag as tag;

pub use super::serve::Parcel;

#[derive(Default)]
pub struct State {
    /// "Basic base64(user:password)".
    pub basic: String,
    pub labeller: String,
    pub parcels: HashMap<String, Parcel>,
    pub calls: Vec<String>,
    next: u64,
}

fn soap(inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\"><soapenv:Body>{inner}</soapenv:Body></soapenv:Envelope>"
    )
}

fn failed(answer: &str, code: &str, why: &str) -> (u16, String) {
    (
        200,
        soap(&format!(
            "<{answer}><Resultado>1</Resultado><BultoError><Error>{code}</Error><DescError>{why}</DescError></BultoError></{answer}>"
        )),
    )
}

/// Text an XML parser takes: no markup, every `&` an entity.
fn well_formed(v: &str) -> bool {
    !v.contains('<')
        && v.match_indices('&').all(|(i, _)| {
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| v[i..].starts_with(e))
        })
}

/// Why a party cannot go on a label, if it cannot.
fn party_error(xml: &str, who: &str) -> Option<String> {
    let p = tag(xml, who)?;
    for k in ["Nombre", "Direccion", "Localidad", "CP", "Telefonocontacto"] {
        match tag(p, k) {
            None => return Some(format!("{who}/{k} is required")),
            Some(v) if v.trim().is_empty() => return Some(format!("{who}/{k} is required")),
            Some(v) if !well_formed(v) => return Some(format!("{who}/{k} is not well-formed XML")),
            Some(_) => {}
        }
    }
    tag(p, "Pais")
        .filter(|c| c.len() != 2)
        .map(|_| format!("{who}/Pais must be an ISO 3166-1 alpha-2 code"))
}

fn preregister(st: &mut State, xml: &str) -> (u16, String) {
    let answer = "RespuestaPreregistroEnvio";
    if tag(xml, "CodEtiquetador") != Some(st.labeller.as_str()) {
        return failed(answer, "ERROR_ETIQUETADOR", "CodEtiquetador not known");
    }
    for who in ["Remitente", "Destinatario"] {
        if tag(xml, who).is_none() {
            return failed(answer, "ERROR_DATOS", &format!("{who} is required"));
        }
        if let Some(why) = party_error(xml, who) {
            return failed(answer, "ERROR_DATOS", &why);
        }
    }
    let reference = tag(xml, "ReferenciaCliente").unwrap_or("");
    let weight: u64 = tag(xml, "Valor").and_then(|v| v.parse().ok()).unwrap_or(0);
    if reference.is_empty() || weight == 0 {
        return failed(
            answer,
            "ERROR_DATOS",
            "ReferenciaCliente and Peso/Valor are required",
        );
    }
    st.next += 1;
    let code = format!("PQ4A1B07{:013}X", st.next);
    let pdf = format!("%PDF-1.4\n% simulated Correos label {code}\n%%EOF\n");
    let to = tag(xml, "Destinatario")
        .and_then(|d| tag(d, "Pais"))
        .unwrap_or("ES");
    st.parcels.insert(
        code.clone(),
        Parcel {
            reference: reference.to_string(),
            to_country: to.to_string(),
            status: "Pre-registrado".into(),
            cancelled: false,
        },
    );
    (
        200,
        soap(&format!(
            "<{answer}><FechaRespuesta>27-11-2026</FechaRespuesta><Resultado>0</Resultado><Bulto>\
             <CodEnvio>{code}</CodEnvio><Resultado>0</Resultado><Etiqueta><Etiqueta_pdf><Fichero>{}</Fichero>\
             </Etiqueta_pdf></Etiqueta></Bulto></{answer}>",
            base64::engine::general_purpose::STANDARD.encode(pdf)
        )),
    )
}

fn cancel(st: &mut State, xml: &str) -> (u16, String) {
    let code = tag(xml, "codCertificado").unwrap_or("");
    match st.parcels.get_mut(code) {
        Some(p) if p.status == "Pre-registrado" && !p.cancelled => {
            p.cancelled = true;
            p.status = "Anulado".into();
            (
                200,
                soap("<RespuestaAnularOp><Resultado>0</Resultado></RespuestaAnularOp>"),
            )
        }
        _ => failed(
            "RespuestaAnularOp",
            "ERROR_ANULACION",
            "the parcel cannot be cancelled",
        ),
    }
}

pub struct CorreosSim {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    _served: super::serve::Served,
}

impl CorreosSim {
    pub fn start(user: &str, password: &str, labeller: &str) -> CorreosSim {
        let state = Arc::new(Mutex::new(State {
            basic: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            labeller: labeller.into(),
            ..State::default()
        }));
        let (s1, s2) = (state.clone(), state.clone());
        let soap_route = warp::post()
            .and(warp::path("preregistroenvios"))
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::header::optional::<String>("soapaction"))
            .and(warp::body::bytes())
            .map(move |auth: Option<String>, action: Option<String>, body: bytes::Bytes| {
                let mut st = s1.lock();
                let xml = String::from_utf8_lossy(&body).to_string();
                st.calls.push(action.clone().unwrap_or_default());
                let (code, text) = if auth.as_deref() != Some(st.basic.as_str()) {
                    (401, soap("<soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>Unauthorized</faultstring></soapenv:Fault>"))
                } else {
                    match action.as_deref().map(|a| a.trim_matches('"')) {
                        Some("PreRegistro") => preregister(&mut st, &xml),
                        Some("AnularOp") => cancel(&mut st, &xml),
                        _ => (500, soap("<soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>Unknown SOAPAction</faultstring></soapenv:Fault>")),
                    }
                };
                warp::reply::with_status(
                    warp::reply::with_header(text, "content-type", "text/xml; charset=utf-8"),
                    warp::http::StatusCode::from_u16(code).unwrap_or(warp::http::StatusCode::INTERNAL_SERVER_ERROR),
                )
            });
        let track_route = warp::get()
            .and(warp::path!("canonico" / "eventos_envio_servicio_auth" / String))
            .and(warp::header::optional::<String>("authorization"))
            .map(move |code: String, auth: Option<String>| {
                let st = s2.lock();
                let (status, body): (u16, Value) = if auth.as_deref() != Some(st.basic.as_str()) {
                    (401, json!({"error": "Unauthorized"}))
                } else {
                    match st.parcels.get(&code) {
                        Some(p) => (200, json!([{"codEnvio": code, "eventos": [
                            {"fecEvento": "27/11/2026", "horEvento": "09:00:00", "desTextoResumen": "Pre-registrado"},
                            {"fecEvento": "27/11/2026", "horEvento": "10:00:00", "desTextoResumen": p.status}]}])),
                        None => (404, json!({"error": "Envío no encontrado"})),
                    }
                };
                super::serve::reply(status, &body)
            });
        let served = super::serve::serve(soap_route.or(track_route));
        CorreosSim {
            port: served.port,
            state,
            _served: served,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/preregistroenvios", self.port)
    }

    pub fn tracking_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/canonico/eventos_envio_servicio_auth",
            self.port
        )
    }
}
