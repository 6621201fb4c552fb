//! One typed configuration: the TOML file (strict: unknown fields are
//! refused), then environment overrides, then validation into `Config`.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::domain::ids::LocationId;
use crate::domain::sourcing::Weights;
use crate::persistence::Durability;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    pub auth: Option<AuthSection>,
    #[serde(default)]
    pub snapshot: SnapshotSection,
    /// The sourcing planner's weights and bounds, and whether lines are
    /// split across locations (defaults documented on `Weights`).
    #[serde(default)]
    pub sourcing: Weights,
    #[serde(default)]
    pub feed: FeedSection,
    #[serde(default)]
    pub payments: PaymentsSection,
    #[serde(default)]
    pub carriers: CarriersSection,
}

/// The carriers that label and track shipments (none: shipments move by
/// the API's events alone).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CarriersSection {
    /// The carrier of a parcel no rule names.
    pub default: Option<String>,
    /// By the order's channel and/or the destination's country, the
    /// first that fits: `[[carriers.rules]] channel = "app" country =
    /// "ES" carrier = "fedex"`.
    pub rules: Vec<CarrierRule>,
    /// How often parcels in transit are tracked.
    pub track_every_s: u64,
    pub fedex: Option<FedexSection>,
    pub dhl: Option<DhlSection>,
    pub dhl_express: Option<DhlExpressSection>,
    pub correos: Option<CorreosSection>,
    pub tnt: Option<TntSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TntSection {
    #[serde(default = "tnt_base_url")]
    pub base_url: String,
    #[serde(default = "tnt_tracking_url")]
    pub tracking_url: String,
    /// The sender's TNT account number.
    pub account: String,
    #[serde(default = "tnt_service")]
    pub service: String,
    #[serde(default = "tnt_company_env")]
    pub company_env: String,
    #[serde(default = "tnt_password_env")]
    pub password_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorreosSection {
    pub base_url: String,
    #[serde(default = "correos_tracking_url")]
    pub tracking_url: String,
    /// `CodEtiquetador`.
    pub labeller: String,
    #[serde(default = "correos_product")]
    pub product: String,
    #[serde(default = "correos_user_env")]
    pub user_env: String,
    #[serde(default = "correos_password_env")]
    pub password_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhlSection {
    pub base_url: String,
    #[serde(default = "dhl_tracking_url")]
    pub tracking_url: String,
    pub billing_number: String,
    #[serde(default = "dhl_product")]
    pub product: String,
    /// The user group profile sent with every label and cancel (DHL's
    /// standard one unless the account has a dedicated one).
    #[serde(default = "dhl_profile")]
    pub profile: String,
    #[serde(default = "dhl_api_key_env")]
    pub api_key_env: String,
    #[serde(default = "dhl_user_env")]
    pub user_env: String,
    #[serde(default = "dhl_password_env")]
    pub password_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhlExpressSection {
    pub base_url: String,
    pub account_number: String,
    #[serde(default = "dhl_express_product_code")]
    pub product_code: String,
    #[serde(default = "dhl_express_api_key_env")]
    pub api_key_env: String,
    #[serde(default = "dhl_express_api_secret_env")]
    pub api_secret_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

impl Default for CarriersSection {
    fn default() -> Self {
        CarriersSection {
            default: None,
            rules: Vec::new(),
            track_every_s: 300,
            fedex: None,
            dhl: None,
            dhl_express: None,
            correos: None,
            tnt: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierRule {
    pub channel: Option<String>,
    pub country: Option<String>,
    pub carrier: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FedexSection {
    pub base_url: String,
    pub account_number: String,
    #[serde(default = "fedex_client_id_env")]
    pub client_id_env: String,
    #[serde(default = "fedex_client_secret_env")]
    pub client_secret_env: String,
    #[serde(default = "fedex_service_type")]
    pub service_type: String,
    #[serde(default)]
    pub calls: CallsSection,
}

/// The payment providers besides the sandbox (always there). Secrets
/// never sit in the file: each names the environment variable that holds
/// it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentsSection {
    /// The provider of an order that names none and no rule fits.
    pub default: Option<String>,
    /// `[[payments.rules]]`: `channel` and/or `country` -> `provider`.
    #[serde(default)]
    pub rules: Vec<PaymentRule>,
    /// How often captures owed (a provider down when the goods left) are
    /// tried again; 30 when absent.
    pub retry_every_s: Option<u64>,
    pub adyen: Option<AdyenSection>,
    pub gestpay: Option<GestpaySection>,
    pub amazonpay: Option<AmazonPaySection>,
    pub scalapay: Option<ScalapaySection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalapaySection {
    pub base_url: String,
    #[serde(default = "scalapay_api_key_env")]
    pub api_key_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmazonPaySection {
    pub base_url: String,
    /// "sandbox" or "live".
    pub environment: String,
    #[serde(default = "amazonpay_region")]
    pub region: String,
    pub public_key_id: String,
    /// The environment variable holding the private key (PKCS#8 PEM).
    #[serde(default = "amazonpay_private_key_env")]
    pub private_key_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRule {
    pub channel: Option<String>,
    pub country: Option<String>,
    pub provider: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GestpaySection {
    pub base_url: String,
    pub shop_login: String,
    #[serde(default = "gestpay_api_key_env")]
    pub api_key_env: String,
    #[serde(default)]
    pub calls: CallsSection,
}

/// The defaults of the providers' and carriers' sections (serde names a
/// function for each).
macro_rules! string_defaults {
    ($($name:ident = $value:literal,)*) => {
        $(fn $name() -> String {
            $value.into()
        })*
    };
}

string_defaults! {
    tnt_base_url = "https://express.tnt.com/expressconnect/shipping/ship",
    tnt_tracking_url = "https://express.tnt.com/expressconnect/track.do",
    tnt_service = "15N",
    tnt_company_env = "HOLDFAST_TNT_COMPANY",
    tnt_password_env = "HOLDFAST_TNT_PASSWORD",
    correos_tracking_url = "https://localizador.correos.es/canonico/eventos_envio_servicio_auth",
    correos_product = "S0132",
    correos_user_env = "HOLDFAST_CORREOS_USER",
    correos_password_env = "HOLDFAST_CORREOS_PASSWORD",
    dhl_tracking_url = "https://api-eu.dhl.com/track/shipments",
    dhl_product = "V01PAK",
    dhl_profile = "STANDARD_GRUPPENPROFIL",
    dhl_api_key_env = "HOLDFAST_DHL_API_KEY",
    dhl_user_env = "HOLDFAST_DHL_USER",
    dhl_password_env = "HOLDFAST_DHL_PASSWORD",
    dhl_express_product_code = "P",
    dhl_express_api_key_env = "HOLDFAST_DHL_EXPRESS_API_KEY",
    dhl_express_api_secret_env = "HOLDFAST_DHL_EXPRESS_API_SECRET",
    fedex_client_id_env = "HOLDFAST_FEDEX_CLIENT_ID",
    fedex_client_secret_env = "HOLDFAST_FEDEX_CLIENT_SECRET",
    fedex_service_type = "FEDEX_INTERNATIONAL_PRIORITY",
    scalapay_api_key_env = "HOLDFAST_SCALAPAY_API_KEY",
    amazonpay_region = "eu",
    amazonpay_private_key_env = "HOLDFAST_AMAZONPAY_PRIVATE_KEY",
    gestpay_api_key_env = "HOLDFAST_GESTPAY_API_KEY",
    adyen_api_key_env = "HOLDFAST_ADYEN_API_KEY",
    adyen_hmac_key_env = "HOLDFAST_ADYEN_HMAC_KEY",
}

/// An http(s) URL, or why not.
fn http_url(at: &str, url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{at}.base_url must be an http(s) URL"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdyenSection {
    /// The Checkout API's, version included (`payments::adyen`).
    pub base_url: String,
    pub merchant_account: String,
    #[serde(default = "adyen_api_key_env")]
    pub api_key_env: String,
    /// The webhook's HMAC key (hex, as Adyen's Customer Area shows it).
    #[serde(default = "adyen_hmac_key_env")]
    pub hmac_key_env: String,
    /// Where a shopper sent to a redirect comes back (`returnUrl`):
    /// required, since Adyen refuses a payment without it; checked in
    /// `Config::resolve` so its absence is named at startup.
    pub return_url: Option<String>,
    #[serde(default)]
    pub calls: CallsSection,
}

/// How a provider is called (`payments::wire::Policy`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsSection {
    pub timeout_ms: u64,
    pub retries: u32,
    pub backoff_ms: u64,
    /// Failures in a row that open the circuit, and for how long.
    pub circuit_trip: u32,
    pub circuit_open_s: u64,
}

impl Default for CallsSection {
    fn default() -> Self {
        let p = crate::wire::Policy::default();
        CallsSection {
            timeout_ms: p.timeout.as_millis() as u64,
            retries: p.retries,
            backoff_ms: p.backoff.as_millis() as u64,
            circuit_trip: p.trip,
            circuit_open_s: p.open_for.as_secs(),
        }
    }
}

impl CallsSection {
    fn policy(&self, at: &str) -> Result<crate::wire::Policy, String> {
        if !(100..=60_000).contains(&self.timeout_ms)
            || self.retries > 10
            || self.backoff_ms > 10_000
            || self.circuit_trip == 0
            || !(1..=3600).contains(&self.circuit_open_s)
        {
            return Err(format!("{at}.calls: timeout_ms 100..=60000, retries 0..=10, backoff_ms 0..=10000, circuit_trip at least 1, circuit_open_s 1..=3600"));
        }
        Ok(crate::wire::Policy {
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            retries: self.retries,
            backoff: std::time::Duration::from_millis(self.backoff_ms),
            trip: self.circuit_trip,
            open_for: std::time::Duration::from_secs(self.circuit_open_s),
        })
    }
}

/// The carriers configured, secrets read, and how one is chosen.
#[derive(Debug, Clone, Default)]
pub struct Carriers {
    pub fedex: Option<crate::carriers::fedex::FedexConfig>,
    pub dhl: Option<crate::carriers::dhl::DhlConfig>,
    pub dhl_express: Option<crate::carriers::dhl_express::DhlExpressConfig>,
    pub correos: Option<crate::carriers::correos::CorreosConfig>,
    pub tnt: Option<crate::carriers::tnt::TntConfig>,
    /// The rules and the default of `[carriers]`.
    pub routing: crate::payments::Routing,
    pub track_every: std::time::Duration,
}

/// The providers configured, secrets read.
#[derive(Debug, Clone, Default)]
pub struct Payments {
    /// Adyen's, and its webhook HMAC key.
    pub adyen: Option<(crate::payments::adyen::AdyenConfig, Vec<u8>)>,
    pub gestpay: Option<crate::payments::gestpay::GestpayConfig>,
    pub amazonpay: Option<crate::payments::amazonpay::AmazonPayConfig>,
    pub scalapay: Option<crate::payments::scalapay::ScalapayConfig>,
    pub routing: crate::payments::Routing,
    pub retry_every: std::time::Duration,
}

/// The stock feed's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSection {
    /// A client silent this long is closed (it is pinged a third of it).
    pub idle_timeout_s: u64,
    /// Committed changes go out once a window: a record changed several
    /// times in it is sent once (a flash sale's hot record reaches a
    /// client 200 times a second at most, not at the checkout's rate), and
    /// a session wakes once a window at most. 5 ms adds 2.5 ms on average
    /// to a change's delivery (BENCHMARKS.md, "Stock feed").
    pub window_ms: u64,
    /// Threads of the sessions' own runtime (0: one per core, as the API's
    /// runtime has): however many clients follow a busy store, the OS
    /// shares the cores between the API and them (BENCHMARKS.md).
    pub threads: usize,
}

impl Default for FeedSection {
    fn default() -> Self {
        Self {
            idle_timeout_s: 60,
            window_ms: 5,
            threads: 0,
        }
    }
}

/// When snapshots are taken (off the hot path, from the journal).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotSection {
    /// Take one once the journal has this many records past the last.
    pub every_records: u64,
    /// ... or this many seconds have passed with anything new.
    pub every_s: u64,
}

impl Default for SnapshotSection {
    fn default() -> Self {
        Self {
            every_records: 1_000_000,
            every_s: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: String,
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Actor threads (arbiters); 0: one for every two cores, at least one.
    pub shards: usize,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            durability: Durability::Fsync,
            shards: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default)]
    pub tokens: Vec<TokenSection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    Admin,
    Channel,
    Store,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    pub token: String,
    pub role: RoleName,
    pub location: Option<String>,
    /// Requests a second this token may make on average; absent: unlimited.
    pub rate_limit_per_s: Option<u32>,
    /// Requests it may make at once after a quiet spell; default: one second's worth.
    pub rate_limit_burst: Option<u32>,
}

/// A role with what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Admin,
    Channel,
    Store(LocationId),
}

#[derive(Debug, Clone)]
pub struct TokenConfig {
    pub token: String,
    pub role: Role,
    pub rate_limit_per_s: Option<u32>,
    pub rate_limit_burst: u32,
}

/// The resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub shards: usize,
    /// `None`: open (every request is admin), the local-development default.
    pub tokens: Option<Vec<TokenConfig>>,
    pub snapshot: SnapshotSection,
    pub sourcing: Weights,
    pub feed: FeedSection,
    /// Adyen's configuration and webhook HMAC key, when configured.
    pub payments: Payments,
    pub carriers: Carriers,
}

impl Config {
    /// Reads `path` (if any), applies `HOLDFAST_LISTEN`, `HOLDFAST_DATA_DIR`,
    /// `HOLDFAST_SHARDS`, `HOLDFAST_DURABILITY`, `HOLDFAST_FEED_WINDOW_MS`,
    /// `HOLDFAST_FEED_THREADS`, `HOLDFAST_SNAPSHOT_EVERY_RECORDS` and
    /// `HOLDFAST_SNAPSHOT_EVERY_S`, validates.
    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        let file = match path {
            None => FileConfig::default(),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
        };
        Self::resolve(file, |k| std::env::var(k).ok())
    }

    pub fn resolve(
        mut f: FileConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        if let Some(v) = env("HOLDFAST_LISTEN") {
            f.server.listen = v;
        }
        if let Some(v) = env("HOLDFAST_DATA_DIR") {
            f.server.data_dir = PathBuf::from(v);
        }
        // A number from the environment, or a clear error naming it.
        let number = |name: &str, what: &str| -> Result<Option<usize>, String> {
            env(name)
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("{name}={v}: expected {what}"))
                })
                .transpose()
        };
        if let Some(n) = number("HOLDFAST_SHARDS", "a number of actor threads")? {
            f.server.shards = n;
        }
        if let Some(v) = env("HOLDFAST_DURABILITY") {
            f.server.durability = match v.as_str() {
                "fsync" => Durability::Fsync,
                "none" => Durability::None,
                _ => return Err(format!("HOLDFAST_DURABILITY={v}: expected fsync or none")),
            };
        }
        if let Some(n) = number("HOLDFAST_FEED_THREADS", "a number of threads")? {
            f.feed.threads = n;
        }
        if let Some(n) = number("HOLDFAST_FEED_WINDOW_MS", "milliseconds")? {
            f.feed.window_ms = n as u64;
        }
        if let Some(n) = number("HOLDFAST_SNAPSHOT_EVERY_RECORDS", "a number of records")? {
            f.snapshot.every_records = n as u64;
        }
        if let Some(n) = number("HOLDFAST_SNAPSHOT_EVERY_S", "seconds")? {
            f.snapshot.every_s = n as u64;
        }
        f.sourcing.validate()?;
        if !(3..=3600).contains(&f.feed.idle_timeout_s) {
            return Err("feed.idle_timeout_s must be 3..=3600".into());
        }
        if !(1..=1000).contains(&f.feed.window_ms) {
            return Err("feed.window_ms must be 1..=1000".into());
        }
        if f.feed.threads > 64 {
            return Err("feed.threads must be 0 (one per core) to 64".into());
        }
        if f.snapshot.every_records == 0 || f.snapshot.every_s == 0 {
            return Err("snapshot.every_records and snapshot.every_s must be at least 1".into());
        }
        let listen: SocketAddr = f
            .server
            .listen
            .parse()
            .map_err(|e| format!("server.listen {:?}: {e}", f.server.listen))?;
        let tokens = match f.auth {
            None => None,
            Some(a) => {
                let mut out = Vec::new();
                for (i, t) in a.tokens.into_iter().enumerate() {
                    if t.token.len() < 8 {
                        return Err(format!(
                            "auth.tokens[{i}]: a token must have at least 8 characters"
                        ));
                    }
                    if out.iter().any(|o: &TokenConfig| o.token == t.token) {
                        return Err(format!("auth.tokens[{i}]: duplicate token"));
                    }
                    let role = match (t.role, t.location) {
                        (RoleName::Store, Some(l)) => Role::Store(
                            LocationId::parse(&l)
                                .map_err(|e| format!("auth.tokens[{i}].location: {}", e.0))?,
                        ),
                        (RoleName::Store, None) => {
                            return Err(format!("auth.tokens[{i}]: a store token needs a location"))
                        }
                        (_, Some(_)) => {
                            return Err(format!(
                                "auth.tokens[{i}]: only a store token has a location"
                            ))
                        }
                        (RoleName::Admin, None) => Role::Admin,
                        (RoleName::Channel, None) => Role::Channel,
                    };
                    if t.rate_limit_per_s == Some(0) {
                        return Err(format!(
                            "auth.tokens[{i}].rate_limit_per_s must be at least 1"
                        ));
                    }
                    out.push(TokenConfig {
                        token: t.token,
                        role,
                        rate_limit_per_s: t.rate_limit_per_s,
                        rate_limit_burst: t
                            .rate_limit_burst
                            .or(t.rate_limit_per_s)
                            .unwrap_or(1)
                            .max(1),
                    });
                }
                Some(out)
            }
        };
        let secret = |at: &str, var: &str| {
            env(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{at}: the environment variable {var} is not set"))
        };
        let mut payments = Payments::default();
        if let Some(a) = &f.payments.adyen {
            let at = "payments.adyen";
            http_url(at, &a.base_url)?;
            let return_url = a
                .return_url
                .clone()
                .filter(|u| {
                    (u.starts_with("https://") || u.starts_with("http://"))
                        && u.len() <= crate::payments::adyen::RETURN_URL_MAX
                })
                .ok_or_else(|| {
                    format!(
                        "{at}.return_url is required: an http(s) URL of at most {} characters \
                         where a shopper sent to a redirect comes back (Adyen refuses \
                         every payment without returnUrl)",
                        crate::payments::adyen::RETURN_URL_MAX
                    )
                })?;
            payments.adyen = Some((
                crate::payments::adyen::AdyenConfig {
                    base_url: a.base_url.clone(),
                    merchant_account: a.merchant_account.clone(),
                    api_key: secret(at, &a.api_key_env)?,
                    return_url,
                    policy: a.calls.policy(at)?,
                },
                crate::payments::adyen::hmac_key(&secret(at, &a.hmac_key_env)?).ok_or_else(
                    || format!("{at}: {} must hold the HMAC key in hex", a.hmac_key_env),
                )?,
            ));
        }
        if let Some(g) = &f.payments.gestpay {
            let at = "payments.gestpay";
            http_url(at, &g.base_url)?;
            payments.gestpay = Some(crate::payments::gestpay::GestpayConfig {
                base_url: g.base_url.clone(),
                shop_login: g.shop_login.clone(),
                api_key: secret(at, &g.api_key_env)?,
                policy: g.calls.policy(at)?,
            });
        }
        if let Some(a) = &f.payments.amazonpay {
            let at = "payments.amazonpay";
            http_url(at, &a.base_url)?;
            if a.environment != "sandbox" && a.environment != "live" {
                return Err(format!("{at}.environment must be sandbox or live"));
            }
            let pem = secret(at, &a.private_key_env)?;
            payments.amazonpay = Some(crate::payments::amazonpay::AmazonPayConfig {
                base_url: a.base_url.clone(),
                environment: a.environment.clone(),
                region: a.region.clone(),
                public_key_id: a.public_key_id.clone(),
                private_key: crate::payments::amazonpay::private_key(&pem)
                    .map_err(|e| format!("{at}: {}: {e}", a.private_key_env))?,
                policy: a.calls.policy(at)?,
            });
        }
        if let Some(x) = &f.payments.scalapay {
            let at = "payments.scalapay";
            http_url(at, &x.base_url)?;
            payments.scalapay = Some(crate::payments::scalapay::ScalapayConfig {
                base_url: x.base_url.clone(),
                api_key: secret(at, &x.api_key_env)?,
                policy: x.calls.policy(at)?,
            });
        }
        let p = &f.payments;
        let configured = |name: &str| match name {
            "sandbox" => true,
            "adyen" => p.adyen.is_some(),
            "gestpay" => p.gestpay.is_some(),
            "amazonpay" => p.amazonpay.is_some(),
            "scalapay" => p.scalapay.is_some(),
            _ => false,
        };
        for name in p.rules.iter().map(|r| &r.provider).chain(&p.default) {
            if !configured(name) {
                return Err(format!(
                    "payments: {name} is named but not configured ([payments.{name}])"
                ));
            }
        }
        let retry = p.retry_every_s.unwrap_or(30);
        if !(1..=3600).contains(&retry) {
            return Err("payments.retry_every_s must be 1..=3600".into());
        }
        payments.retry_every = std::time::Duration::from_secs(retry);
        payments.routing = crate::payments::Routing {
            default: p.default.clone(),
            rules: p
                .rules
                .iter()
                .map(|r| crate::payments::Rule {
                    channel: r.channel.clone(),
                    country: r.country.clone(),
                    to: r.provider.clone(),
                })
                .collect(),
        };
        let c = &f.carriers;
        let mut carriers = Carriers {
            routing: crate::payments::Routing {
                default: c.default.clone(),
                rules: c
                    .rules
                    .iter()
                    .map(|r| crate::payments::Rule {
                        channel: r.channel.clone(),
                        country: r.country.clone(),
                        to: r.carrier.clone(),
                    })
                    .collect(),
            },
            track_every: std::time::Duration::from_secs(c.track_every_s),
            ..Carriers::default()
        };
        if !(1..=86_400).contains(&c.track_every_s) {
            return Err("carriers.track_every_s must be 1..=86400".into());
        }
        let known = |name: &str| match name {
            "fedex" => c.fedex.is_some(),
            "dhl" => c.dhl.is_some(),
            "dhl_express" => c.dhl_express.is_some(),
            "correos" => c.correos.is_some(),
            "tnt" => c.tnt.is_some(),
            _ => false,
        };
        for name in c.rules.iter().map(|r| &r.carrier).chain(&c.default) {
            if !known(name) {
                return Err(format!(
                    "carriers: {name} is named but not configured ([carriers.{name}])"
                ));
            }
        }
        if let Some(x) = &f.carriers.fedex {
            let at = "carriers.fedex";
            http_url(at, &x.base_url)?;
            carriers.fedex = Some(crate::carriers::fedex::FedexConfig {
                base_url: x.base_url.clone(),
                account_number: x.account_number.clone(),
                client_id: secret(at, &x.client_id_env)?,
                client_secret: secret(at, &x.client_secret_env)?,
                service_type: x.service_type.clone(),
                policy: x.calls.policy(at)?,
            });
        }
        if let Some(x) = &f.carriers.dhl {
            let at = "carriers.dhl";
            http_url(at, &x.base_url)?;
            http_url(at, &x.tracking_url)?;
            // DHL takes a profile of 35 characters at most.
            if !(1..=35).contains(&x.profile.chars().count()) {
                return Err(format!("{at}.profile must have 1 to 35 characters"));
            }
            carriers.dhl = Some(crate::carriers::dhl::DhlConfig {
                base_url: x.base_url.clone(),
                tracking_url: x.tracking_url.clone(),
                api_key: secret(at, &x.api_key_env)?,
                user: secret(at, &x.user_env)?,
                password: secret(at, &x.password_env)?,
                billing_number: x.billing_number.clone(),
                product: x.product.clone(),
                profile: x.profile.clone(),
                policy: x.calls.policy(at)?,
            });
        }
        if let Some(x) = &f.carriers.dhl_express {
            let at = "carriers.dhl_express";
            http_url(at, &x.base_url)?;
            carriers.dhl_express = Some(crate::carriers::dhl_express::DhlExpressConfig {
                base_url: x.base_url.clone(),
                api_key: secret(at, &x.api_key_env)?,
                api_secret: secret(at, &x.api_secret_env)?,
                account_number: x.account_number.clone(),
                product_code: x.product_code.clone(),
                policy: x.calls.policy(at)?,
            });
        }
        if let Some(x) = &f.carriers.correos {
            let at = "carriers.correos";
            http_url(at, &x.base_url)?;
            http_url(at, &x.tracking_url)?;
            carriers.correos = Some(crate::carriers::correos::CorreosConfig {
                base_url: x.base_url.clone(),
                tracking_url: x.tracking_url.clone(),
                user: secret(at, &x.user_env)?,
                password: secret(at, &x.password_env)?,
                labeller: x.labeller.clone(),
                product: x.product.clone(),
                policy: x.calls.policy(at)?,
            });
        }
        if let Some(x) = &f.carriers.tnt {
            let at = "carriers.tnt";
            http_url(at, &x.base_url)?;
            http_url(at, &x.tracking_url)?;
            carriers.tnt = Some(crate::carriers::tnt::TntConfig {
                base_url: x.base_url.clone(),
                tracking_url: x.tracking_url.clone(),
                company: secret(at, &x.company_env)?,
                password: secret(at, &x.password_env)?,
                account: x.account.clone(),
                service: x.service.clone(),
                policy: x.calls.policy(at)?,
            });
        }
        Ok(Config {
            carriers,
            payments,
            listen,
            data_dir: f.server.data_dir,
            durability: f.server.durability,
            shards: f.server.shards,
            tokens,
            snapshot: f.snapshot,
            sourcing: f.sourcing,
            feed: f.feed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_embedded_default() {
        let c = Config::resolve(FileConfig::default(), |_| None).expect("default");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.durability, Durability::Fsync);
        assert!(c.tokens.is_none());
    }

    #[test]
    fn the_sourcing_section_sets_the_weights_and_is_checked() {
        let f: FileConfig = toml::from_str(
            r#"
            [sourcing]
            distance_per_km = 2.0
            rotation = 0.0
            "#,
        )
        .expect("parses");
        let c = Config::resolve(f, |_| None).expect("valid");
        assert_eq!(c.sourcing.distance_per_km, 2.0);
        assert_eq!(c.sourcing.rotation, 0.0);
        assert_eq!(c.sourcing.priority, Weights::default().priority);
        let f: FileConfig = toml::from_str("[sourcing]\npriority = -1.0\n").expect("parses");
        let e = Config::resolve(f, |_| None).expect_err("negative weight");
        assert!(e.contains("sourcing.priority"), "{e}");
        assert!(toml::from_str::<FileConfig>("[sourcing]\nspeed = 1\n").is_err());
        // Lines are split across locations unless the section says no.
        assert!(c.sourcing.split_lines);
        let f: FileConfig = toml::from_str("[sourcing]\nsplit_lines = false\n").expect("parses");
        let c = Config::resolve(f, |_| None).expect("valid");
        assert!(!c.sourcing.split_lines);
        assert!(toml::from_str::<FileConfig>("[sourcing]\nsplit_lines = \"no\"\n").is_err());
    }

    /// Adyen's `POST /payments` requires `returnUrl` (its Checkout API
    /// v71): a section without one is refused at startup, naming the
    /// field, instead of every payment being refused by Adyen later.
    #[test]
    fn an_adyen_section_without_return_url_is_refused_at_startup() {
        let section = |extra: &str| -> FileConfig {
            toml::from_str(&format!(
                "[payments.adyen]\nbase_url = \"https://checkout-test.adyen.com/v71\"\n\
                 merchant_account = \"YourMerchantECOM\"\n{extra}"
            ))
            .expect("parses")
        };
        let secrets = |k: &str| match k {
            "HOLDFAST_ADYEN_API_KEY" => Some("AQE-key".to_string()),
            "HOLDFAST_ADYEN_HMAC_KEY" => Some("44782DEF547AAA06".to_string()),
            _ => None,
        };
        let e = Config::resolve(section(""), secrets).expect_err("no return_url");
        assert!(e.contains("payments.adyen.return_url"), "{e}");
        for bad in ["\"\"", "\"shop.example.com/back\""] {
            let e = Config::resolve(section(&format!("return_url = {bad}\n")), secrets)
                .expect_err("not a URL");
            assert!(e.contains("payments.adyen.return_url"), "{e}");
        }
        let c = Config::resolve(
            section("return_url = \"https://shop.example.com/checkout/return\"\n"),
            secrets,
        )
        .expect("valid");
        let (adyen, _) = c.payments.adyen.expect("adyen");
        assert_eq!(adyen.return_url, "https://shop.example.com/checkout/return");
    }

    #[test]
    fn strict_and_overridden() {
        let f: FileConfig = toml::from_str(
            r#"
            [server]
            listen = "127.0.0.1:9000"
            durability = "none"
            [[auth.tokens]]
            token = "store-s001"
            role = "store"
            location = "S001"
            "#,
        )
        .expect("parse");
        let c = Config::resolve(f.clone(), |k| match k {
            "HOLDFAST_LISTEN" => Some("127.0.0.1:9001".to_string()),
            "HOLDFAST_SHARDS" => Some("3".to_string()),
            "HOLDFAST_FEED_WINDOW_MS" => Some("25".to_string()),
            "HOLDFAST_SNAPSHOT_EVERY_RECORDS" => Some("500".to_string()),
            "HOLDFAST_SNAPSHOT_EVERY_S" => Some("2".to_string()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(c.listen.port(), 9001);
        assert_eq!(c.shards, 3);
        assert_eq!(c.feed.window_ms, 25);
        assert_eq!((c.snapshot.every_records, c.snapshot.every_s), (500, 2));
        assert!(
            Config::resolve(f.clone(), |k| (k == "HOLDFAST_SNAPSHOT_EVERY_S")
                .then(|| "0".to_string()))
            .is_err()
        );
        assert_eq!(
            Config::resolve(f.clone(), |_| None)
                .expect("valid")
                .feed
                .window_ms,
            5
        );
        for bad in ["0", "1001", "soon"] {
            assert!(
                Config::resolve(f.clone(), |k| (k == "HOLDFAST_FEED_WINDOW_MS")
                    .then(|| bad.to_string()))
                .is_err()
            );
        }
        assert!(Config::resolve(f.clone(), |k| (k == "HOLDFAST_SHARDS")
            .then(|| "many".to_string()))
        .is_err());
        assert_eq!(c.durability, Durability::None);
        assert_eq!(
            c.tokens.expect("tokens")[0].role,
            Role::Store(LocationId::parse("S001").expect("id"))
        );
        assert!(toml::from_str::<FileConfig>("[server]\nlisten_typo = 1").is_err());
        let bad: FileConfig =
            toml::from_str("[[auth.tokens]]\ntoken = \"store-xyz1\"\nrole = \"store\"")
                .expect("parse");
        assert!(Config::resolve(bad, |_| None).is_err());
    }
}
