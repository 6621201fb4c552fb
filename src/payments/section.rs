//! What every provider's and carrier's config section shares: how the
//! adapter is called (`[*.calls]`), the URL check, where secrets come
//! from, and the macro naming the sections' string defaults. Each adapter
//! owns its own section (`AdyenSection` beside `AdyenConfig`, say);
//! the configuration module gathers them into one typed configuration.

use serde::Deserialize;

use crate::wire::Policy;

/// The defaults of an adapter's section (serde names a function for each).
macro_rules! string_defaults {
    ($($name:ident = $value:literal,)*) => {
        $(fn $name() -> String {
            $value.into()
        })*
    };
}
pub(crate) use string_defaults;

/// An http(s) URL, or why not.
pub fn http_url(at: &str, url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("{at}.base_url must be an http(s) URL"))
    }
}

/// Where a section's secrets come from: the environment variables it
/// names (the file never holds a secret).
pub struct Secrets<'a>(pub &'a dyn Fn(&str) -> Option<String>);

impl Secrets<'_> {
    /// The value of `var`, which the section `at` names, or why not (an
    /// empty value counts as not set).
    pub fn get(&self, at: &str, var: &str) -> Result<String, String> {
        (self.0)(var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{at}: the environment variable {var} is not set"))
    }

    /// `section` resolved by `resolve` (its adapter's) with these
    /// secrets, when the file has it.
    pub fn resolve<S, C>(
        &self,
        section: &Option<S>,
        resolve: impl FnOnce(&S, &Self) -> Result<C, String>,
    ) -> Result<Option<C>, String> {
        section.as_ref().map(|s| resolve(s, self)).transpose()
    }
}

/// How a provider is called (`crate::wire::Policy`).
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
        let p = Policy::default();
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
    /// The policy these numbers make, or why not (`at` names the section).
    pub fn policy(&self, at: &str) -> Result<Policy, String> {
        if !(100..=60_000).contains(&self.timeout_ms)
            || self.retries > 10
            || self.backoff_ms > 10_000
            || self.circuit_trip == 0
            || !(1..=3600).contains(&self.circuit_open_s)
        {
            return Err(format!("{at}.calls: timeout_ms 100..=60000, retries 0..=10, backoff_ms 0..=10000, circuit_trip at least 1, circuit_open_s 1..=3600"));
        }
        Ok(Policy {
            timeout: std::time::Duration::from_millis(self.timeout_ms),
            retries: self.retries,
            backoff: std::time::Duration::from_millis(self.backoff_ms),
            trip: self.circuit_trip,
            open_for: std::time::Duration::from_secs(self.circuit_open_s),
        })
    }
}
