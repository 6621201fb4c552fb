//! Amazon Pay (API v2), its requests signed: the Amazon Pay button gives
//! the checkout a checkout session; the order names it in
//! `payment.method.checkoutSessionId`, and the authorization completes it
//! (`POST /v2/checkoutSessions/{id}/complete` with the charge amount: its
//! `chargeId` is the reference). Then `POST /v2/charges/{id}/capture`,
//! `POST /v2/refunds`, `DELETE /v2/charges/{id}/cancel`. Every POST
//! carries `x-amz-pay-idempotency-key` (Amazon answers a repeated key with
//! its first answer). Errors: `{"reasonCode", "message"}`; a completion
//! refused for the payment itself (`CheckoutSessionCanceled`,
//! `HardDeclined`, `SoftDeclined`, `PaymentMethodNotAllowed`) is a decline.
//!
//! Signing (`AMZN-PAY-RSASSA-PSS-V2`): the canonical request (method,
//! path, query, the signed headers `name:value` sorted, their names, the
//! hex SHA-256 of the body), its hex SHA-256 after the algorithm's name
//! is the string signed with RSASSA-PSS (SHA-256, 32-byte salt) under the
//! merchant's private key; `authorization: AMZN-PAY-RSASSA-PSS-V2
//! PublicKeyId=..., SignedHeaders=..., Signature=<base64>`.
//!
//! `base_url`: `https://pay-api.amazon.eu` (EU; `.com` NA, `.jp` JP), and
//! `environment` `sandbox` or `live`.

use base64::Engine as _;
use futures::future::BoxFuture;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::section::{http_url, string_defaults, CallsSection, Secrets};
use super::{Authorization, Authorize, Follow, PaymentError, PaymentProvider};
use crate::domain::order::format_minor;
use crate::wire::{Answer, Caller, Policy};

#[derive(Clone)]
pub struct AmazonPayConfig {
    pub base_url: String,
    /// "sandbox" or "live".
    pub environment: String,
    /// "eu", "na", "jp".
    pub region: String,
    pub public_key_id: String,
    /// The merchant's RSA private key (PKCS#8 PEM).
    pub private_key: rsa::RsaPrivateKey,
    pub policy: Policy,
}

/// `[payments.amazonpay]` as the file has it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmazonPaySection {
    pub base_url: String,
    /// "sandbox" or "live".
    pub environment: String,
    #[serde(default = "region")]
    pub region: String,
    pub public_key_id: String,
    /// The environment variable holding the private key (PKCS#8 PEM).
    #[serde(default = "private_key_env")]
    pub private_key_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

string_defaults! {
    region = "eu",
    private_key_env = "HOLDFAST_AMAZONPAY_PRIVATE_KEY",
}

impl AmazonPaySection {
    /// The adapter's configuration, its private key read, or why not.
    pub fn resolve(&self, secrets: &Secrets) -> Result<AmazonPayConfig, String> {
        let at = "payments.amazonpay";
        http_url(at, &self.base_url)?;
        if self.environment != "sandbox" && self.environment != "live" {
            return Err(format!("{at}.environment must be sandbox or live"));
        }
        let pem = secrets.get(at, &self.private_key_env)?;
        Ok(AmazonPayConfig {
            base_url: self.base_url.clone(),
            environment: self.environment.clone(),
            region: self.region.clone(),
            public_key_id: self.public_key_id.clone(),
            private_key: private_key(&pem)
                .map_err(|e| format!("{at}: {}: {e}", self.private_key_env))?,
            policy: self.calls.policy(at)?,
        })
    }
}

impl std::fmt::Debug for AmazonPayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmazonPayConfig")
            .field("base_url", &self.base_url)
            .field("environment", &self.environment)
            .field("public_key_id", &self.public_key_id)
            .finish_non_exhaustive()
    }
}

/// The private key from its PEM (PKCS#8), or why not.
pub fn private_key(pem: &str) -> Result<rsa::RsaPrivateKey, String> {
    rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| format!("not a PKCS#8 RSA key: {e}"))
}

pub const ALGORITHM: &str = "AMZN-PAY-RSASSA-PSS-V2";

/// Amazon Pay's idempotency keys are 32 characters at most (of a-z A-Z
/// 0-9 - _).
const IDEMPOTENCY_MAX: usize = 32;

/// The string Amazon Pay signs of a request: the algorithm's name and the
/// hex SHA-256 of the canonical request. `headers`: (lowercase name,
/// value), sorted by name; all of them signed.
pub fn string_to_sign(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &str,
) -> String {
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let canonical = format!(
        "{method}\n{path}\n{query}\n{canonical_headers}\n{}\n{}",
        signed.join(";"),
        hex(&Sha256::digest(body.as_bytes()))
    );
    format!(
        "{ALGORITHM}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    )
}

/// The `x-amz-pay-idempotency-key` of the call holdfast keys `key`:
/// Amazon Pay takes at most 32 characters of a-z A-Z 0-9 - _, and
/// holdfast's keys name their operation after a `:` and may be longer. A
/// key that fits goes as it is; any other as the first 24 bytes of its
/// SHA-256 in base64url without padding (32 characters, 192 bits: no two
/// keys collide in practice). A function of the key alone: a retry, a
/// process after a restart, another node send the same call under the
/// same key, which is what makes Amazon answer it once.
fn idempotency_key(key: &str) -> String {
    let fits = (1..=IDEMPOTENCY_MAX).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fits {
        return key.to_string();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&Sha256::digest(key.as_bytes())[..24])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct AmazonPay {
    cfg: AmazonPayConfig,
    host: String,
    signer: rsa::pss::BlindedSigningKey<Sha256>,
    caller: Caller,
}

/// Amazon Pay's error answer as a refusal.
fn refused(what: &str, a: &Answer) -> PaymentError {
    let v = a.json();
    PaymentError::Rejected(format!(
        "amazonpay {what} {}: {} {}",
        a.status,
        v["reasonCode"].as_str().unwrap_or("?"),
        v["message"].as_str().unwrap_or("")
    ))
}

impl AmazonPay {
    pub fn new(cfg: AmazonPayConfig) -> Result<AmazonPay, String> {
        let host = cfg
            .base_url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .filter(|h| !h.is_empty())
            .ok_or("amazonpay: base_url has no host")?
            .to_string();
        let signer = rsa::pss::BlindedSigningKey::<Sha256>::new(cfg.private_key.clone());
        let caller = Caller::new("amazonpay", cfg.policy)?;
        Ok(AmazonPay {
            cfg,
            host,
            signer,
            caller,
        })
    }

    /// Sends `method` to `/{environment}/v2/{path}` with `body`, signed;
    /// with `key`, as an idempotent POST.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Result<Answer, PaymentError> {
        let full = format!("/{}/v2/{path}", self.cfg.environment);
        let url = format!("{}{full}", self.cfg.base_url.trim_end_matches('/'));
        let body = body.to_string();
        let date = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .map_err(|e| PaymentError::Rejected(e.to_string()))?;
        let mut headers: Vec<(String, String)> = vec![
            ("accept".into(), "application/json".into()),
            ("content-type".into(), "application/json".into()),
            ("x-amz-pay-date".into(), date),
            ("x-amz-pay-host".into(), self.host.clone()),
            ("x-amz-pay-region".into(), self.cfg.region.clone()),
        ];
        if let Some(k) = key {
            headers.push(("x-amz-pay-idempotency-key".into(), idempotency_key(k)));
        }
        headers.sort();
        let to_sign = string_to_sign(method.as_str(), &full, "", &headers, &body);
        let signature = self
            .signer
            .sign_with_rng(&mut rand::thread_rng(), to_sign.as_bytes());
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let authorization = format!(
            "{ALGORITHM} PublicKeyId={}, SignedHeaders={}, Signature={}",
            self.cfg.public_key_id,
            signed.join(";"),
            base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
        );
        // Signed once: a retry sends the same request (its date within
        // Amazon's 15 minutes).
        // A POST is sent again only under its idempotency key; a DELETE
        // (a cancel) finds the charge canceled the second time.
        let idempotent = key.is_some() || method != reqwest::Method::POST;
        self.caller
            .send(idempotent, |c| {
                let mut r = c
                    .request(method.clone(), &url)
                    .header("authorization", &authorization)
                    .body(body.clone());
                for (k, v) in &headers {
                    r = r.header(k.as_str(), v.as_str());
                }
                r
            })
            .await
            .map_err(PaymentError::from)
    }

    fn amount(amount: i64, currency: &str) -> Value {
        json!({"amount": format_minor(amount), "currencyCode": currency})
    }
}

impl PaymentProvider for AmazonPay {
    fn name(&self) -> &str {
        "amazonpay"
    }

    fn needs_method(&self) -> bool {
        true
    }

    fn authorize<'a>(
        &'a self,
        r: &'a Authorize,
    ) -> BoxFuture<'a, Result<Authorization, PaymentError>> {
        Box::pin(async move {
            let session = r.method_field("amazonpay", "checkoutSessionId", 100)?;
            let body = json!({"chargeAmount": Self::amount(r.amount, &r.currency)});
            let a = self
                .call(
                    reqwest::Method::POST,
                    &format!("checkoutSessions/{session}/complete"),
                    &body,
                    Some(&r.idempotency_key),
                )
                .await?;
            let v = a.json();
            match (a.status, v["chargeId"].as_str(), v["reasonCode"].as_str()) {
                (200 | 202, Some(charge), _) if !charge.is_empty() => {
                    Ok(Authorization::Authorized {
                        reference: charge.to_string(),
                    })
                }
                (
                    _,
                    _,
                    Some(
                        code @ ("CheckoutSessionCanceled"
                        | "HardDeclined"
                        | "SoftDeclined"
                        | "PaymentMethodNotAllowed"),
                    ),
                ) => Ok(Authorization::Declined {
                    reason: format!("{code}: {}", v["message"].as_str().unwrap_or("")),
                }),
                _ => Err(refused("complete", &a)),
            }
        })
    }

    fn capture<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(async move {
            let body = json!({"captureAmount": Self::amount(r.amount, &r.currency)});
            let path = format!("charges/{}/capture", r.reference);
            let a = self
                .call(
                    reqwest::Method::POST,
                    &path,
                    &body,
                    Some(&r.idempotency_key),
                )
                .await?;
            match (a.status, a.json()["statusDetails"]["state"].as_str()) {
                (200, Some("Captured" | "CaptureInitiated")) => Ok(()),
                _ => Err(refused("capture", &a)),
            }
        })
    }

    fn refund<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(async move {
            let body = json!({
                "chargeId": r.reference,
                "refundAmount": Self::amount(r.amount, &r.currency),
            });
            let a = self
                .call(
                    reqwest::Method::POST,
                    "refunds",
                    &body,
                    Some(&r.idempotency_key),
                )
                .await?;
            match (a.status, a.json()["statusDetails"]["state"].as_str()) {
                (200 | 201, Some("RefundInitiated" | "Refunded")) => Ok(()),
                _ => Err(refused("refund", &a)),
            }
        })
    }

    fn void<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(async move {
            let body = json!({"cancellationReason": "order cancelled"});
            let path = format!("charges/{}/cancel", r.reference);
            let a = self
                .call(reqwest::Method::DELETE, &path, &body, None)
                .await?;
            match (a.status, a.json()["statusDetails"]["state"].as_str()) {
                (200, Some("Canceled")) => Ok(()),
                _ => Err(refused("cancel", &a)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Amazon Pay's rule (amazonpay_v2_signing.json, its idempotency
    /// page): at most 32 characters of a-z A-Z 0-9 - _.
    fn fits(k: &str) -> bool {
        (1..=32).contains(&k.len())
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn idempotency_keys_fit_amazons_rule_and_are_stable() {
        let long = format!("HF-AMZ-2001:authorize:{}", "R".repeat(40));
        let keys = [
            "HF-AMZ-2001:authorize",
            "HF-AMZ-2001:capture",
            "HF-AMZ-2001:return:1",
            "HF-AMZ-2001:return:2",
            long.as_str(),
            &format!("{long}~77c0db7be23b5217"),
        ];
        let sent: Vec<String> = keys.iter().map(|k| idempotency_key(k)).collect();
        for (k, s) in keys.iter().zip(&sent) {
            assert!(fits(s), "{k} sent as {s}");
            // The same call, asked again (a retry, another process after
            // a restart, another build): the same key.
            assert_eq!(&idempotency_key(k), s);
        }
        let mut distinct = sent.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), sent.len(), "{sent:?}");
        // Pinned (base64url of the first 24 bytes of SHA-256, computed
        // independently): a change of the derivation would make Amazon
        // take a call retried across an upgrade for a new one.
        assert_eq!(sent[0], "i96fYxjEMQ2suNCLjgAjwI6gqUmJT84f");
        // A key that fits already goes as it is.
        assert_eq!(
            idempotency_key("AVLo5tI10BHgEk2jEXAMPLEKEY"),
            "AVLo5tI10BHgEk2jEXAMPLEKEY"
        );
    }

    #[test]
    fn the_string_to_sign_is_the_canonical_requests_hash() {
        let headers = vec![
            ("accept".to_string(), "application/json".to_string()),
            ("x-amz-pay-date".to_string(), "20261127T101010Z".to_string()),
        ];
        let s = string_to_sign("POST", "/sandbox/v2/refunds", "", &headers, "{}");
        let canonical = format!(
            "POST\n/sandbox/v2/refunds\n\naccept:application/json\nx-amz-pay-date:20261127T101010Z\n\naccept;x-amz-pay-date\n{}",
            hex(&Sha256::digest(b"{}"))
        );
        assert_eq!(
            s,
            format!(
                "{ALGORITHM}\n{}",
                hex(&Sha256::digest(canonical.as_bytes()))
            )
        );
        assert_eq!(
            hex(&Sha256::digest(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
