//! One typed configuration: the TOML file (strict: unknown fields are
//! refused), then environment overrides, then validation into `Config`.
//!
//! - `auth`: the API's tokens and their roles.
//! - `payments`, `carriers`: which providers and carriers are configured
//!   and how an order or a parcel gets one; each adapter reads its own
//!   section (`payments::adyen::AdyenSection`, say).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod auth;
mod carriers;
mod payments;

pub use auth::{AuthSection, Role, RoleName, TokenConfig, TokenSection};
pub use carriers::{CarrierRule, Carriers, CarriersSection};
pub use payments::{PaymentRule, Payments, PaymentsSection};
// Each adapter owns its section; they are named here too, with the rest.
pub use crate::carriers::correos::CorreosSection;
pub use crate::carriers::dhl::DhlSection;
pub use crate::carriers::dhl_express::DhlExpressSection;
pub use crate::carriers::fedex::FedexSection;
pub use crate::carriers::tnt::TntSection;
pub use crate::payments::adyen::AdyenSection;
pub use crate::payments::amazonpay::AmazonPaySection;
pub use crate::payments::gestpay::GestpaySection;
pub use crate::payments::scalapay::ScalapaySection;
pub use crate::payments::section::CallsSection;

use crate::domain::sourcing::Weights;
use crate::payments::section::Secrets;
use crate::persistence::Durability;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerSection,
    pub auth: Option<AuthSection>,
    #[serde(default)]
    pub snapshot: SnapshotSection,
    #[serde(default)]
    pub history: HistorySection,
    #[serde(default)]
    pub events: EventsSection,
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

/// The movement history (api.md, Movement history), kept beside the
/// snapshots: ~400 bytes of disk per movement (measured: 600,000
/// movements of 10,000 records, written 10,000 at a time, took 257 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySection {
    /// Movements older than this go.
    pub retention_days: u64,
    /// At most this many in all: past it, the oldest go (20 million:
    /// ~8 GB).
    pub movements_max: u64,
}

impl Default for HistorySection {
    fn default() -> Self {
        Self {
            retention_days: crate::limits::HISTORY_RETENTION_DAYS_DEFAULT,
            movements_max: crate::limits::HISTORY_MOVEMENTS_MAX_DEFAULT,
        }
    }
}

/// The published events (api.md, Events), kept beside the snapshots:
/// ~300 bytes of disk per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsSection {
    /// Events older than this go (a reader asking before the oldest kept
    /// is answered 410).
    pub retention_days: u64,
    /// At most this many in all: past it, the oldest go (5 million:
    /// ~1.5 GB).
    pub events_max: u64,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            retention_days: crate::limits::EVENTS_RETENTION_DAYS_DEFAULT,
            events_max: crate::limits::EVENTS_MAX_DEFAULT,
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
    pub history: HistorySection,
    pub events: EventsSection,
    pub sourcing: Weights,
    pub feed: FeedSection,
    /// The payment providers configured, secrets read (Adyen's with its
    /// webhook HMAC key).
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

    /// Applies the environment's overrides to `f` (as `load` lists them),
    /// checks every section and reads the secrets the sections name from
    /// `env`.
    pub fn resolve(
        mut f: FileConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        f.override_from(&env)?;
        f.check_bounds()?;
        let listen: SocketAddr = f
            .server
            .listen
            .parse()
            .map_err(|e| format!("server.listen {:?}: {e}", f.server.listen))?;
        let tokens = f.auth.map(AuthSection::resolve).transpose()?;
        let secrets = Secrets(&env);
        let payments = f.payments.resolve(&secrets)?;
        let carriers = f.carriers.resolve(&secrets)?;
        Ok(Config {
            carriers,
            payments,
            listen,
            data_dir: f.server.data_dir,
            durability: f.server.durability,
            shards: f.server.shards,
            tokens,
            snapshot: f.snapshot,
            history: f.history,
            events: f.events,
            sourcing: f.sourcing,
            feed: f.feed,
        })
    }
}

impl FileConfig {
    /// Sets what the `HOLDFAST_*` variables of `env` name, or says which
    /// one does not parse.
    fn override_from(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
        if let Some(v) = env("HOLDFAST_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = env("HOLDFAST_DATA_DIR") {
            self.server.data_dir = PathBuf::from(v);
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
            self.server.shards = n;
        }
        if let Some(v) = env("HOLDFAST_DURABILITY") {
            self.server.durability = match v.as_str() {
                "fsync" => Durability::Fsync,
                "none" => Durability::None,
                _ => return Err(format!("HOLDFAST_DURABILITY={v}: expected fsync or none")),
            };
        }
        if let Some(n) = number("HOLDFAST_FEED_THREADS", "a number of threads")? {
            self.feed.threads = n;
        }
        if let Some(n) = number("HOLDFAST_FEED_WINDOW_MS", "milliseconds")? {
            self.feed.window_ms = n as u64;
        }
        if let Some(n) = number("HOLDFAST_SNAPSHOT_EVERY_RECORDS", "a number of records")? {
            self.snapshot.every_records = n as u64;
        }
        if let Some(n) = number("HOLDFAST_SNAPSHOT_EVERY_S", "seconds")? {
            self.snapshot.every_s = n as u64;
        }
        Ok(())
    }

    /// Checks the sourcing weights and the feed's and snapshots' numbers.
    fn check_bounds(&self) -> Result<(), String> {
        self.sourcing.validate()?;
        if !(3..=3600).contains(&self.feed.idle_timeout_s) {
            return Err("feed.idle_timeout_s must be 3..=3600".into());
        }
        if !(1..=1000).contains(&self.feed.window_ms) {
            return Err("feed.window_ms must be 1..=1000".into());
        }
        if self.feed.threads > 64 {
            return Err("feed.threads must be 0 (one per core) to 64".into());
        }
        if self.snapshot.every_records == 0 || self.snapshot.every_s == 0 {
            return Err("snapshot.every_records and snapshot.every_s must be at least 1".into());
        }
        if !(1..=3650).contains(&self.history.retention_days) {
            return Err("history.retention_days must be 1..=3650".into());
        }
        if self.history.movements_max == 0 {
            return Err("history.movements_max must be at least 1".into());
        }
        if !(1..=3650).contains(&self.events.retention_days) {
            return Err("events.retention_days must be 1..=3650".into());
        }
        if self.events.events_max == 0 {
            return Err("events.events_max must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::LocationId;

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
