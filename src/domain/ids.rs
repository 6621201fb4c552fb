//! Validated identifiers. api.md: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

use crate::limits::ID_LEN_MAX;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidId(pub &'static str);

/// Checks the identifier grammar of api.md.
pub fn validate_id(s: &str) -> Result<(), InvalidId> {
    if s.is_empty() {
        return Err(InvalidId("must not be empty"));
    }
    if s.len() > ID_LEN_MAX {
        return Err(InvalidId("must be at most 64 characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(InvalidId("may only contain A-Z a-z 0-9 . _ : -"));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                validate_id(s)?;
                Ok(Self(Arc::from(s)))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A stock-keeping unit.
    SkuId
);
id_type!(
    /// A store or distribution centre.
    LocationId
);
id_type!(
    /// A reservation (server-assigned).
    ReservationId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert!(validate_id("A1").is_ok());
        assert!(validate_id("a.b_c:d-e").is_ok());
        assert!(validate_id(&"x".repeat(64)).is_ok());
        assert!(validate_id(&"x".repeat(65)).is_err());
        assert!(validate_id("").is_err());
        assert!(validate_id("a b").is_err());
        assert!(validate_id("a/b").is_err());
        assert!(validate_id("é").is_err());
    }
}
