//! `[auth]`: the API's tokens, each with its role, checked into
//! `TokenConfig`s.

use serde::Deserialize;

use crate::domain::ids::LocationId;

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

impl AuthSection {
    /// The tokens checked (at least 8 characters, none twice), or why not.
    pub fn resolve(self) -> Result<Vec<TokenConfig>, String> {
        let mut out = Vec::new();
        for (i, t) in self.tokens.into_iter().enumerate() {
            if t.token.len() < 8 {
                return Err(format!(
                    "auth.tokens[{i}]: a token must have at least 8 characters"
                ));
            }
            if out.iter().any(|o: &TokenConfig| o.token == t.token) {
                return Err(format!("auth.tokens[{i}]: duplicate token"));
            }
            out.push(t.resolve(i)?);
        }
        Ok(out)
    }
}

impl TokenSection {
    /// The `i`th token with its role bound, or why not.
    fn resolve(self, i: usize) -> Result<TokenConfig, String> {
        let role = match (self.role, self.location) {
            (RoleName::Store, Some(l)) => Role::Store(
                LocationId::parse(&l).map_err(|e| format!("auth.tokens[{i}].location: {}", e.0))?,
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
        if self.rate_limit_per_s == Some(0) {
            return Err(format!(
                "auth.tokens[{i}].rate_limit_per_s must be at least 1"
            ));
        }
        Ok(TokenConfig {
            token: self.token,
            role,
            rate_limit_per_s: self.rate_limit_per_s,
            rate_limit_burst: self
                .rate_limit_burst
                .or(self.rate_limit_per_s)
                .unwrap_or(1)
                .max(1),
        })
    }
}
