//! A postal address: what a carrier's label needs of the shipping
//! location and of the recipient.

use crate::limits::ADDRESS_FIELD_MAX;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The person or the company.
    pub name: String,
    pub street: String,
    pub city: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 ("IT", "ES").
    pub country: String,
    pub phone: String,
}

impl Address {
    /// Why it cannot go on a label, if it cannot: (field, problem).
    pub fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut v = Vec::new();
        for (field, value) in [
            ("name", &self.name),
            ("street", &self.street),
            ("city", &self.city),
            ("postal_code", &self.postal_code),
            ("phone", &self.phone),
        ] {
            if value.trim().is_empty() {
                v.push((field, "is required"));
            } else if value.chars().count() > ADDRESS_FIELD_MAX {
                v.push((field, "is longer than 100 characters"));
            }
        }
        if self.country.len() != 2 || !self.country.bytes().all(|b| b.is_ascii_uppercase()) {
            v.push(("country", "must be an ISO 3166-1 alpha-2 code, e.g. \"IT\""));
        }
        v
    }
}
