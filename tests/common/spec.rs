//! The providers' published request schemas as the simulators' gate: a
//! simulator refuses what the real provider refuses, so an adapter that
//! drifts from the provider's format fails its tests instead of failing in
//! production. The specs are copies kept in the repository
//! (tests/specs/, each naming its source), so a clean clone needs nothing
//! beside it.
//!
//! `Spec::check` reads the subset of JSON Schema the trimmed specs use:
//! `$ref` to `#/$defs/...`, `allOf`, `oneOf`, `type` (with `nullable`),
//! `required`, `properties`, `additionalProperties`, `items`, `enum`,
//! `minLength`/`maxLength`, `minItems`/`maxItems`, `minimum`/`maximum`.
//! Not read: `pattern` and `format` (no regex engine among the test
//! dependencies); where a simulator needs one of those, it checks by hand.

use serde_json::Value;

/// What a request breaks of its schema, at a field (`a.b[0].c`, empty for
/// the request itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: String,
    pub kind: Kind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A required field (or parameter, or header) absent or null.
    Missing,
    /// A field the schema does not know, where it admits none other.
    Unknown,
    /// Present with the wrong type, length, range or value.
    Invalid,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = if self.at.is_empty() {
            "the request"
        } else {
            &self.at
        };
        write!(f, "{at}: {}", self.detail)
    }
}

/// One provider's spec file, parsed.
pub struct Spec {
    pub doc: Value,
    /// A string holding a number fits `number` and `integer`: for a
    /// provider whose own published samples send numbers so (FedEx's),
    /// which it therefore takes.
    numbers_as_strings: bool,
}

impl Spec {
    /// `tests/specs/{file}`.
    pub fn load(file: &str) -> Spec {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/specs")
            .join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("the spec {}: {e}", path.display()));
        Spec {
            doc: serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("the spec {}: {e}", path.display())),
            numbers_as_strings: false,
        }
    }

    /// The same spec, taking numbers sent as strings (`"5.8"`) where it
    /// says number or integer.
    pub fn numbers_as_strings(self) -> Spec {
        Spec {
            numbers_as_strings: true,
            ..self
        }
    }

    /// The schema `#/$defs/{name}`.
    pub fn def(&self, name: &str) -> &Value {
        let d = &self.doc["$defs"][name];
        assert!(d.is_object(), "no $defs/{name} in the spec");
        d
    }

    /// What `v` breaks of the schema `#/$defs/{name}`; empty when it fits.
    pub fn check(&self, name: &str, v: &Value) -> Vec<Problem> {
        let mut out = Vec::new();
        self.walk(self.def(name), v, "", &mut out);
        out
    }

    /// The operation (a key of the spec's `operations`) whose `path`
    /// template matches `path` (`{name}` matching one segment), and its
    /// `method` is `method` (case-insensitive).
    pub fn operation(&self, method: &str, path: &str) -> Option<(&str, &Value)> {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.doc["operations"]
            .as_object()?
            .iter()
            .find(|(key, op)| {
                // Adyen's spec keys its operations by path and names no
                // `path`; the others name it.
                let template = op["path"].as_str().unwrap_or(key.as_str());
                let t: Vec<&str> = template.trim_matches('/').split('/').collect();
                op["method"]
                    .as_str()
                    .is_some_and(|m| m.eq_ignore_ascii_case(method))
                    && t.len() == segs.len()
                    && t.iter()
                        .zip(&segs)
                        .all(|(t, s)| (t.starts_with('{') && t.ends_with('}')) || t == s)
            })
            .map(|(k, op)| (k.as_str(), op))
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema["$ref"].as_str() {
            Some(r) => {
                let name = r
                    .strip_prefix("#/$defs/")
                    .unwrap_or_else(|| panic!("a $ref outside #/$defs: {r}"));
                self.resolve(self.def(name))
            }
            None => schema,
        }
    }

    fn walk(&self, schema: &Value, v: &Value, at: &str, out: &mut Vec<Problem>) {
        let schema = self.resolve(schema);
        if v.is_null() && schema["nullable"] == Value::Bool(true) {
            return;
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            self.walk(part, v, at, out);
        }
        if let Some(branches) = schema["oneOf"].as_array() {
            self.one_of(branches, v, at, out);
        }
        let mut problem = |kind: Kind, detail: String| {
            out.push(Problem {
                at: at.to_string(),
                kind,
                detail,
            })
        };
        if let Some(t) = schema["type"].as_str() {
            let text = v.as_str().filter(|_| self.numbers_as_strings);
            let fits = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "number" => v.is_number() || text.is_some_and(|s| s.parse::<f64>().is_ok()),
                "integer" => {
                    v.is_i64() || v.is_u64() || text.is_some_and(|s| s.parse::<i64>().is_ok())
                }
                "boolean" => v.is_boolean(),
                _ => true,
            };
            if !fits {
                problem(Kind::Invalid, format!("must be {t}, is {v}"));
                return;
            }
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(v) {
                problem(Kind::Invalid, format!("{v} is not one of {allowed:?}"));
            }
        }
        if let Some(s) = v.as_str() {
            let n = s.chars().count() as u64;
            if let Some(min) = schema["minLength"].as_u64().filter(|m| n < *m) {
                problem(Kind::Invalid, format!("{n} characters, at least {min}"));
            }
            if let Some(max) = schema["maxLength"].as_u64().filter(|m| n > *m) {
                problem(Kind::Invalid, format!("{n} characters, at most {max}"));
            }
        }
        if let Some(x) = v.as_f64() {
            if let Some(min) = schema["minimum"].as_f64().filter(|m| x < *m) {
                problem(Kind::Invalid, format!("{x} below the minimum {min}"));
            }
            if let Some(max) = schema["maximum"].as_f64().filter(|m| x > *m) {
                problem(Kind::Invalid, format!("{x} above the maximum {max}"));
            }
        }
        if let Some(items) = v.as_array() {
            let n = items.len() as u64;
            if let Some(min) = schema["minItems"].as_u64().filter(|m| n < *m) {
                problem(Kind::Invalid, format!("{n} items, at least {min}"));
            }
            if let Some(max) = schema["maxItems"].as_u64().filter(|m| n > *m) {
                problem(Kind::Invalid, format!("{n} items, at most {max}"));
            }
            if schema.get("items").is_some() {
                for (i, item) in items.iter().enumerate() {
                    self.walk(&schema["items"], item, &format!("{at}[{i}]"), out);
                }
            }
        }
        if let Some(fields) = v.as_object() {
            self.object(schema, fields, at, out);
        }
    }

    fn object(
        &self,
        schema: &Value,
        fields: &serde_json::Map<String, Value>,
        at: &str,
        out: &mut Vec<Problem>,
    ) {
        let field_at = |k: &str| {
            if at.is_empty() {
                k.to_string()
            } else {
                format!("{at}.{k}")
            }
        };
        for k in schema["required"].as_array().into_iter().flatten() {
            let k = k.as_str().unwrap_or_default();
            if fields.get(k).is_none_or(Value::is_null) {
                out.push(Problem {
                    at: field_at(k),
                    kind: Kind::Missing,
                    detail: "required, not provided".into(),
                });
            }
        }
        let known = &schema["properties"];
        for (k, v) in fields {
            if let Some(s) = known.get(k) {
                self.walk(s, v, &field_at(k), out);
                continue;
            }
            match &schema["additionalProperties"] {
                Value::Bool(false) => out.push(Problem {
                    at: field_at(k),
                    kind: Kind::Unknown,
                    detail: "not a field of this request".into(),
                }),
                s @ Value::Object(_) => self.walk(s, v, &field_at(k), out),
                _ => {}
            }
        }
    }

    /// Exactly one branch fits; none: the problems of the closest (the
    /// fewest), as a provider names what is wrong with what was meant.
    fn one_of(&self, branches: &[Value], v: &Value, at: &str, out: &mut Vec<Problem>) {
        let mut tried: Vec<Vec<Problem>> = branches
            .iter()
            .map(|b| {
                let mut p = Vec::new();
                self.walk(b, v, at, &mut p);
                p
            })
            .collect();
        match tried.iter().filter(|p| p.is_empty()).count() {
            1 => {}
            0 => {
                tried.sort_by_key(Vec::len);
                out.append(&mut tried[0]);
            }
            n => out.push(Problem {
                at: at.to_string(),
                kind: Kind::Invalid,
                detail: format!("fits {n} of its oneOf alternatives, must fit one"),
            }),
        }
    }

    /// What a request breaks of an operation's `parameters` (OpenAPI's
    /// `{name, in, required, schema}`): `get(in, name)` gives a query
    /// parameter's or a header's value as sent.
    pub fn check_parameters(
        &self,
        parameters: &Value,
        get: &dyn Fn(&str, &str) -> Option<String>,
    ) -> Vec<Problem> {
        let mut out = Vec::new();
        for p in parameters.as_array().into_iter().flatten() {
            let (Some(name), Some(place)) = (p["name"].as_str(), p["in"].as_str()) else {
                continue;
            };
            match get(place, name) {
                None if p["required"] == Value::Bool(true) => out.push(Problem {
                    at: name.to_string(),
                    kind: Kind::Missing,
                    detail: format!("the {place} parameter is required"),
                }),
                None => {}
                Some(raw) => {
                    // A parameter travels as text: read as the JSON value
                    // its schema means.
                    let schema = &p["schema"];
                    let v = match schema["type"].as_str() {
                        Some("boolean" | "integer" | "number") => {
                            serde_json::from_str(&raw).unwrap_or(Value::String(raw))
                        }
                        _ => Value::String(raw),
                    };
                    if schema.is_object() {
                        self.walk(schema, &v, name, &mut out);
                    }
                }
            }
        }
        out
    }
}

/// `q` (a raw query string) as (name, value) pairs, `+` and `%XX` decoded.
pub fn query_pairs(q: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.replace('+', " ").into_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(kv), String::new()),
        })
        .collect()
}
