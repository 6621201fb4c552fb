//! Correos (Spain), through its pre-registration web service (SOAP 1.1,
//! Basic authentication: `PreregistroEnvio` answers the parcel's
//! `CodEnvio` and its PDF label in `Bulto/Etiqueta/Etiqueta_pdf/Fichero`;
//! `AnularOp` cancels one not yet admitted) and its tracking service
//! (`GET {tracking_url}/{CodEnvio}?codIdioma=ES&indUltEvento=S`: the
//! last event's `desTextoResumen`). A SOAP answer says `Resultado` 0 when
//! done, else `BultoError/Error` and `DescError`.
//!
//! `base_url`: `https://preregistroenviospre.correos.es/preregistroenvios`
//! (test), `https://preregistroenvios.correos.es/preregistroenvios`;
//! `tracking_url`:
//! `https://localizador.correos.es/canonico/eventos_envio_servicio_auth`.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::xml::{element, escape};
use super::{Carrier, CarrierError, Label, LabelRequest, Tracked, TRACK_BATCH};
use crate::domain::address::Address;
use crate::payments::section::{http_url, string_defaults, CallsSection, Secrets};
use crate::wire::{Answer, Caller, Policy};

#[derive(Debug, Clone)]
pub struct CorreosConfig {
    pub base_url: String,
    pub tracking_url: String,
    pub user: String,
    pub password: String,
    /// `CodEtiquetador`: the labeller code Correos gives the customer.
    pub labeller: String,
    /// `CodProducto`: "S0132" (Paq Premium), "S0235" (Paq Estándar)...
    pub product: String,
    pub policy: Policy,
}

/// `[carriers.correos]` as the file has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorreosSection {
    pub base_url: String,
    #[serde(default = "tracking_url")]
    pub tracking_url: String,
    /// `CodEtiquetador`.
    pub labeller: String,
    #[serde(default = "product")]
    pub product: String,
    #[serde(default = "user_env")]
    pub user_env: String,
    #[serde(default = "password_env")]
    pub password_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

string_defaults! {
    tracking_url = "https://localizador.correos.es/canonico/eventos_envio_servicio_auth",
    product = "S0132",
    user_env = "HOLDFAST_CORREOS_USER",
    password_env = "HOLDFAST_CORREOS_PASSWORD",
}

impl CorreosSection {
    /// The adapter's configuration, its credentials read, or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<CorreosConfig, String> {
        let at = "carriers.correos";
        http_url(at, &self.base_url)?;
        http_url(at, &self.tracking_url)?;
        Ok(CorreosConfig {
            base_url: self.base_url.clone(),
            tracking_url: self.tracking_url.clone(),
            user: secrets.get(at, &self.user_env)?,
            password: secrets.get(at, &self.password_env)?,
            labeller: self.labeller.clone(),
            product: self.product.clone(),
            policy: self.calls.policy(at)?,
        })
    }
}

pub struct Correos {
    cfg: CorreosConfig,
    caller: Caller,
}

fn party(tag: &str, a: &Address) -> String {
    format!(
        "<{tag}><Identificacion><Nombre>{}</Nombre></Identificacion>\
         <DatosDireccion><Direccion>{}</Direccion><Localidad>{}</Localidad></DatosDireccion>\
         <CP>{}</CP><Pais>{}</Pais><Telefonocontacto>{}</Telefonocontacto></{tag}>",
        escape(&a.name),
        escape(&a.street),
        escape(&a.city),
        escape(&a.postal_code),
        escape(&a.country),
        escape(&a.phone)
    )
}

fn envelope(body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns=\"http://www.correos.es/iris6/services/preregistroetiquetas\">\
         <soapenv:Header/><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
}

/// A SOAP answer's refusal: its error code and description.
fn refused(what: &str, a: &Answer) -> CarrierError {
    let text = String::from_utf8_lossy(&a.body);
    CarrierError::Rejected(format!(
        "correos {what} {}: {} {}",
        a.status,
        element(&text, "Error")
            .or_else(|| element(&text, "faultcode"))
            .unwrap_or_default(),
        element(&text, "DescError")
            .or_else(|| element(&text, "faultstring"))
            .unwrap_or_default()
    ))
}

/// A tracking event's summary, as a parcel's place.
fn tracked(summary: &str) -> Tracked {
    let s = summary.to_lowercase();
    if s.contains("entregado") {
        Tracked::Delivered
    } else if s.contains("reparto") {
        Tracked::OutForDelivery
    } else if s.contains("admitido") {
        Tracked::PickedUp
    } else if s.contains("tránsito") || s.contains("transito") || s.contains("clasificado") {
        Tracked::InTransit
    } else if s.contains("registrado") {
        Tracked::Created
    } else if s.contains("devuelto") || s.contains("ausente") || s.contains("incidencia") {
        Tracked::Exception
    } else if s.contains("anulado") {
        Tracked::Cancelled
    } else {
        Tracked::Unknown
    }
}

impl Correos {
    pub fn new(cfg: CorreosConfig) -> Result<Correos, String> {
        let caller = Caller::new("correos", cfg.policy)?;
        Ok(Correos { cfg, caller })
    }

    async fn soap(
        &self,
        action: &str,
        body: String,
        idempotent: bool,
    ) -> Result<Answer, CarrierError> {
        let xml = envelope(&body);
        self.caller
            .send(idempotent, |c| {
                c.post(&self.cfg.base_url)
                    .basic_auth(&self.cfg.user, Some(&self.cfg.password))
                    .header("content-type", "text/xml; charset=utf-8")
                    .header("SOAPAction", action)
                    .body(xml.clone())
            })
            .await
            .map_err(CarrierError::from)
    }
}

impl Carrier for Correos {
    fn name(&self) -> &str {
        "correos"
    }

    fn create_label<'a>(
        &'a self,
        r: &'a LabelRequest,
    ) -> BoxFuture<'a, Result<Label, CarrierError>> {
        Box::pin(async move {
            let now = time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!(
                    "[day]-[month]-[year] [hour]:[minute]:[second]"
                ))
                .map_err(|e| CarrierError::Rejected(e.to_string()))?;
            let body = format!(
                "<PreregistroEnvio><FechaOperacion>{now}</FechaOperacion>\
                 <CodEtiquetador>{}</CodEtiquetador><Care>000000</Care>\
                 <TotalBultos>1</TotalBultos><ModDevEtiqueta>2</ModDevEtiqueta>{}{}\
                 <Envio><CodProducto>{}</CodProducto><ReferenciaCliente>{}</ReferenciaCliente>\
                 <TipoFranqueo>FP</TipoFranqueo><ModalidadEntrega>ST</ModalidadEntrega>\
                 <Pesos><Peso><TipoPeso>R</TipoPeso><Valor>{}</Valor></Peso></Pesos></Envio>\
                 </PreregistroEnvio>",
                escape(&self.cfg.labeller),
                party("Remitente", &r.from),
                party("Destinatario", &r.to),
                escape(&self.cfg.product),
                escape(&r.reference),
                r.weight_g.max(100)
            );
            // No idempotency key at Correos: sent again only when surely
            // not done.
            let a = self.soap("PreRegistro", body, false).await?;
            let text = String::from_utf8_lossy(&a.body).to_string();
            if a.status != 200 || element(&text, "Resultado").as_deref() != Some("0") {
                return Err(refused("PreregistroEnvio", &a));
            }
            Label::decoded(
                "correos",
                element(&text, "CodEnvio").as_deref(),
                element(&text, "Fichero").as_deref(),
                Some("PDF"),
            )
        })
    }

    fn track<'a>(
        &'a self,
        tracking: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Tracked)>, CarrierError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for t in tracking.iter().take(TRACK_BATCH) {
                let url = format!("{}/{t}", self.cfg.tracking_url.trim_end_matches('/'));
                let a = self
                    .caller
                    .send(true, |c| {
                        c.get(&url)
                            .query(&[("codIdioma", "ES"), ("indUltEvento", "S")])
                            .basic_auth(&self.cfg.user, Some(&self.cfg.password))
                    })
                    .await
                    .map_err(CarrierError::from)?;
                match a.status {
                    200 => {
                        let v = a.json();
                        let events = v[0]["eventos"].as_array().cloned().unwrap_or_default();
                        if let Some(last) = events.last() {
                            let summary = last["desTextoResumen"].as_str().unwrap_or("");
                            out.push((t.clone(), tracked(summary)));
                        }
                    }
                    404 => {}
                    _ => return Err(refused("tracking", &a)),
                }
            }
            Ok(out)
        })
    }

    fn cancel<'a>(&'a self, tracking: &'a str) -> BoxFuture<'a, Result<(), CarrierError>> {
        Box::pin(async move {
            let body = format!(
                "<AnularOp><codCertificado>{}</codCertificado></AnularOp>",
                escape(tracking)
            );
            let a = self.soap("AnularOp", body, true).await?;
            let text = String::from_utf8_lossy(&a.body);
            match (a.status, element(&text, "Resultado").as_deref()) {
                (200, Some("0")) => Ok(()),
                _ => Err(refused("AnularOp", &a)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_summaries_map_to_places() {
        assert_eq!(
            tracked("Admitido").reached(),
            Some(crate::domain::order::ShipStatus::Shipped)
        );
        assert_eq!(tracked("En tránsito"), Tracked::InTransit);
        assert_eq!(tracked("En reparto"), Tracked::OutForDelivery);
        assert_eq!(tracked("Entregado"), Tracked::Delivered);
        assert_eq!(tracked("Pre-registrado"), Tracked::Created);
    }
}
