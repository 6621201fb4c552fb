//! Reading request JSON field by field, collecting every error with its path,
//! so a client learns everything wrong with a request in one answer.

use serde_json::{Map, Value};

use super::error::{ApiError, Code, FieldError};
use crate::domain::ids::validate_id;

/// Parses a body: malformed JSON is 400, anything but an object is 422.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            Code::BadRequest,
            "the request needs a JSON body",
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(Code::BadRequest, format!("malformed JSON: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::validation(vec![FieldError {
            field: "".into(),
            message: "the body must be a JSON object".into(),
        }])),
    }
}

/// Collects field errors while reading an object.
#[derive(Default)]
pub struct Errors(pub Vec<FieldError>);

impl Errors {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        // Bounded: a 10,000-item batch with every item wrong answers the first 100.
        if self.0.len() < 100 {
            self.0.push(FieldError {
                field: field.into(),
                message: message.into(),
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::validation(self.0))
        }
    }

    /// The value of `key` with its field path, or `None` when it is absent
    /// (an error only if `required`).
    fn present<'a>(
        &mut self,
        m: &'a Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<(&'a Value, String)> {
        let field = join(path, key);
        match m.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.add(field, "is required");
                }
                None
            }
            Some(v) => Some((v, field)),
        }
    }

    /// An RFC 3339 date-time in `min..=max` (milliseconds since the
    /// epoch); `None` if absent (an error only if `required`) or wrong.
    pub fn time(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
        (min, max): (crate::domain::TimeMs, crate::domain::TimeMs),
        required: bool,
    ) -> Option<crate::domain::TimeMs> {
        use crate::clock::{parse_rfc3339, rfc3339};
        let (v, field) = self.present(m, key, path, required)?;
        match v.as_str().and_then(parse_rfc3339) {
            Some(t) if (min..=max).contains(&t) => Some(t),
            Some(_) => {
                let (a, b) = (rfc3339(min), rfc3339(max));
                self.add(field, format!("must be between {a} and {b}"));
                None
            }
            None => {
                self.add(field, "must be an RFC 3339 date-time");
                None
            }
        }
    }

    /// An integer in `min..=max`; `None` if absent (not an error) or wrong (an error).
    pub fn int(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
        min: i64,
        max: i64,
        required: bool,
    ) -> Option<i64> {
        let (v, field) = self.present(m, key, path, required)?;
        // JSON has numbers, not integers: 850.0 and 8.5e2 are 850 (as JSON
        // Schema's `integer` reads them). Below 2^53 a float is exact.
        let whole = v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        });
        match whole {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(_) => {
                self.add(field, format!("must be between {min} and {max}"));
                None
            }
            None if v.is_number() => {
                self.add(field, format!("must be an integer between {min} and {max}"));
                None
            }
            None => {
                self.add(field, "must be an integer");
                None
            }
        }
    }

    pub fn float(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
        min: f64,
        max: f64,
        required: bool,
    ) -> Option<f64> {
        let (v, field) = self.present(m, key, path, required)?;
        match v.as_f64() {
            Some(n) if n.is_finite() && (min..=max).contains(&n) => Some(n),
            _ => {
                self.add(field, format!("must be a number between {min} and {max}"));
                None
            }
        }
    }

    pub fn boolean(&mut self, m: &Map<String, Value>, key: &str, path: &str) -> Option<bool> {
        let (v, field) = self.present(m, key, path, false)?;
        match v {
            Value::Bool(b) => Some(*b),
            _ => {
                self.add(field, "must be true or false");
                None
            }
        }
    }

    /// An optional postal address (`{name, street, city, postal_code,
    /// country, phone}`) at `key` of `m`, errors under `path.key`.
    pub fn address(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
    ) -> Option<crate::domain::address::Address> {
        let at = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        let a = match m.get(key) {
            None | Some(Value::Null) => return None,
            Some(Value::Object(a)) => a,
            Some(_) => {
                self.add(
                    at,
                    "must be an object: {name, street, city, postal_code, country, phone}",
                );
                return None;
            }
        };
        let max = crate::limits::ADDRESS_FIELD_MAX;
        let mut field = |k: &str| self.string(a, k, &at, max, true);
        let address = crate::domain::address::Address {
            name: field("name")?,
            street: field("street")?,
            city: field("city")?,
            postal_code: field("postal_code")?,
            country: field("country")?,
            phone: field("phone")?,
        };
        let problems = address.problems();
        for (f, why) in &problems {
            self.add(format!("{at}.{f}"), *why);
        }
        problems.is_empty().then_some(address)
    }

    pub fn string(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
        max_len: usize,
        required: bool,
    ) -> Option<String> {
        let (v, field) = self.present(m, key, path, required)?;
        match v {
            Value::String(s) if !s.trim().is_empty() && s.chars().count() <= max_len => {
                Some(s.clone())
            }
            Value::String(_) => {
                self.add(field, format!("must have 1 to {max_len} characters"));
                None
            }
            _ => {
                self.add(field, "must be a string");
                None
            }
        }
    }

    /// One of a list of names (`parse` reads one; `names` lists them for
    /// the error).
    pub fn one_of<T>(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
        (parse, names): (fn(&str) -> Option<T>, &str),
        required: bool,
    ) -> Option<T> {
        let (v, field) = self.present(m, key, path, required)?;
        let got = v.as_str().and_then(parse);
        if got.is_none() {
            self.add(field, format!("must be one of {names}"));
        }
        got
    }

    /// An identifier per api.md (1 to 64 of `A-Z a-z 0-9 . _ : -`).
    pub fn id(
        &mut self,
        m: &Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<String> {
        let (v, field) = self.present(m, key, path, required)?;
        match v {
            Value::String(s) => match validate_id(s) {
                Ok(()) => Some(s.clone()),
                Err(e) => {
                    self.add(field, e.0);
                    None
                }
            },
            _ => {
                self.add(field, "must be a string identifier");
                None
            }
        }
    }
}

/// An array of 1 to `max` objects under `key` (`noun` names one: "line",
/// "item"). Gives each object with its index and path (`key[i]`); anything
/// else is an error named by its path. `shape` completes "is required: an
/// array of ...".
pub fn objects<'a>(
    e: &mut Errors,
    m: &'a Map<String, Value>,
    key: &str,
    noun: &str,
    max: usize,
    shape: &str,
) -> Vec<(usize, String, &'a Map<String, Value>)> {
    let mut out = Vec::new();
    match m.get(key) {
        Some(Value::Array(a)) if a.is_empty() => {
            e.add(key, format!("must have at least one {noun}"))
        }
        Some(Value::Array(a)) if a.len() > max => e.add(key, format!("at most {max} {noun}s")),
        Some(Value::Array(a)) => {
            for (i, x) in a.iter().enumerate() {
                let path = format!("{key}[{i}]");
                match x.as_object() {
                    Some(o) => out.push((i, path, o)),
                    None => e.add(path, "must be an object"),
                }
            }
        }
        _ => e.add(key, format!("is required: an array of {shape}")),
    }
    out
}

/// The `lines` of a cart: 1 to `CART_LINES_MAX` objects.
pub fn cart_lines<'a>(
    e: &mut Errors,
    m: &'a Map<String, Value>,
    shape: &str,
) -> Vec<(usize, String, &'a Map<String, Value>)> {
    objects(e, m, "lines", "line", crate::limits::CART_LINES_MAX, shape)
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The value of `name` in a query (the first if named twice),
/// percent-decoded as a path segment is (`?location=S%3A1` names `S:1`;
/// `+` stays `+`: a token may hold one).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| decode_segment(v))
    })
}

/// A page's `limit` query parameter: `default` when absent, else 1 to
/// `max` (an error named `limit` otherwise).
pub fn page_limit(e: &mut Errors, query: &str, default: usize, max: usize) -> usize {
    match query_param(query, "limit") {
        None => default,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => n,
            _ => {
                e.add("limit", format!("must be an integer from 1 to {max}"));
                default
            }
        },
    }
}

/// A path segment percent-decoded (RFC 3986 §2.1: `FZ%3AP1` is `FZ:P1`, as
/// JavaScript's `encodeURIComponent` writes it). A segment that does not
/// decode (a bad escape, bytes that are not UTF-8) is kept as it came, so
/// the identifier check names it (422).
pub fn decode_segment(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('%') {
        return std::borrow::Cow::Borrowed(s);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (Some(hi), Some(lo)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) else {
                return std::borrow::Cow::Borrowed(s);
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(d) => std::borrow::Cow::Owned(d),
        Err(_) => std::borrow::Cow::Borrowed(s),
    }
}

/// Validates a path segment as an identifier: 422 when it is not one.
pub fn path_id(s: &str, what: &str) -> Result<String, ApiError> {
    validate_id(s).map_err(|e| {
        ApiError::validation(vec![FieldError {
            field: what.into(),
            message: e.0.into(),
        }])
    })?;
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_decoded() {
        assert_eq!(decode_segment("FZ%3AP1"), "FZ:P1");
        assert_eq!(decode_segment("fz%3ap1"), "fz:p1");
        assert_eq!(decode_segment("A1"), "A1");
        assert_eq!(decode_segment("%41%2d"), "A-");
        // Decoded, then refused by the identifier check.
        assert_eq!(decode_segment("a%2Fb"), "a/b");
        assert_eq!(decode_segment("caf%C3%A9"), "café");
        // Kept as they came: the check refuses the `%`.
        for bad in ["%", "%4", "%ZZ", "a%G1", "%FF"] {
            assert_eq!(decode_segment(bad), bad);
        }
    }
}
