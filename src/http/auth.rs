//! Bearer tokens, roles and scopes, and per-token rate limits.

use ahash::AHashMap;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Instant;
use warp::http::HeaderMap;

use super::error::{ApiError, Code};
use crate::config::{Role, TokenConfig};
use crate::domain::event::fnv1a64;
use crate::domain::history::{By, ByRole};

/// Who is asking.
#[derive(Debug, Clone)]
pub struct Principal {
    pub role: Role,
    /// FNV-1a of the token: scopes idempotency keys per token.
    pub scope: u64,
}

impl Principal {
    /// Whose word a write is on, as the journal keeps it.
    pub fn by(&self) -> By {
        let (role, location) = match &self.role {
            Role::Admin => (ByRole::Admin, None),
            Role::Channel => (ByRole::Channel, None),
            Role::Store(l) => (ByRole::Store, Some(l.clone())),
        };
        By { role, location }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(forbidden("this needs an admin token")),
        }
    }

    /// Admin or channel (checkout): reservations, availability.
    pub fn require_channel(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin | Role::Channel => Ok(()),
            Role::Store(_) => Err(forbidden("a store token cannot do this")),
        }
    }

    /// Admin, or the store token of this location.
    pub fn require_location(&self, location: &str) -> Result<(), ApiError> {
        match &self.role {
            Role::Admin => Ok(()),
            Role::Store(l) if l.as_str() == location => Ok(()),
            Role::Store(_) => Err(forbidden("a store token may only act on its own location")),
            Role::Channel => Err(forbidden("a channel token cannot do this")),
        }
    }
}

/// `GET /v1/whoami`: the token's role, and a store token's location.
pub fn whoami(req: &super::Request) -> warp::http::Response<warp::hyper::Body> {
    let (role, location) = match &req.principal.role {
        Role::Admin => ("admin", None),
        Role::Channel => ("channel", None),
        Role::Store(l) => ("store", Some(l.as_str())),
    };
    super::error::json_response(
        200,
        &serde_json::json!({"role": role, "location": location}),
    )
}

pub fn forbidden(detail: &str) -> ApiError {
    ApiError::new(Code::Forbidden, detail)
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is
/// case-insensitive (RFC 9110 §11.1), spaces around the token are not
/// part of it.
fn bearer(v: &str) -> Option<&str> {
    let (scheme, token) = v.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A token bucket.
struct Bucket {
    rate_per_s: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Takes one token, or says in how many seconds one will be there.
    fn take(&mut self, now: Instant) -> Result<(), u64> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate_per_s).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.rate_per_s).ceil().max(1.0) as u64)
        }
    }
}

struct Entry {
    principal: Principal,
    limiter: Option<Mutex<Bucket>>,
}

/// The token table; `None` when the server runs open.
#[derive(Clone)]
pub struct Auth(Option<Arc<AHashMap<String, Entry>>>);

impl Auth {
    pub fn new(tokens: Option<&[TokenConfig]>) -> Self {
        Auth(tokens.map(|ts| {
            Arc::new(
                ts.iter()
                    .map(|t| {
                        let limiter = t.rate_limit_per_s.map(|r| {
                            Mutex::new(Bucket {
                                rate_per_s: f64::from(r),
                                burst: f64::from(t.rate_limit_burst),
                                tokens: f64::from(t.rate_limit_burst),
                                last: Instant::now(),
                            })
                        });
                        (
                            t.token.clone(),
                            Entry {
                                principal: Principal {
                                    role: t.role.clone(),
                                    scope: fnv1a64(t.token.as_bytes()),
                                },
                                limiter,
                            },
                        )
                    })
                    .collect(),
            )
        }))
    }

    pub fn is_open(&self) -> bool {
        self.0.is_none()
    }

    /// The principal of a request: 401 without a known token, 429 past its rate.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let Some(table) = &self.0 else {
            return Ok(Principal {
                role: Role::Admin,
                scope: 0,
            });
        };
        let token = headers
            .get(warp::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .or(query_token)
            .ok_or_else(|| {
                ApiError::new(Code::Unauthorized, "send Authorization: Bearer <token>")
            })?;
        let e = table
            .get(token)
            .ok_or_else(|| ApiError::new(Code::Unauthorized, "unknown token"))?;
        if let Some(l) = &e.limiter {
            if let Err(s) = l.lock().take(Instant::now()) {
                return Err(
                    ApiError::new(Code::RateLimited, "this token is over its rate limit")
                        .retry_after(s),
                );
            }
        }
        Ok(e.principal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer t1", "bearer t1", "BEARER  t1 ", " Bearer t1"] {
            assert_eq!(bearer(v), Some("t1"), "{v:?}");
        }
        for v in ["Basic t1", "Bearer", "Bearer ", "Bearert1", "t1"] {
            assert_eq!(bearer(v), None, "{v:?}");
        }
    }

    #[test]
    fn bucket_refills() {
        let t0 = Instant::now();
        let mut b = Bucket {
            rate_per_s: 2.0,
            burst: 2.0,
            tokens: 2.0,
            last: t0,
        };
        assert!(b.take(t0).is_ok());
        assert!(b.take(t0).is_ok());
        assert_eq!(b.take(t0), Err(1));
        assert!(b.take(t0 + Duration::from_millis(600)).is_ok());
    }
}
