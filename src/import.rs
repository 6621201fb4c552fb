//! `holdfast import FILE`: stock counts of a whole network into a running
//! server, in batches, with a progress bar; `--catalog`: SKUs instead
//! (`POST /v1/skus/batch`).

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::limits::BATCH_ITEMS_MAX;

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `location,sku,on_hand[,safety_stock]` or JSON lines of those.
    Counts,
    /// `sku,name[,weight_g[,ship_alone]]` or JSON lines of whole SKUs
    /// (with `dimensions_mm`, `max_qty_per_reservation`, ...).
    Catalog,
}

impl Kind {
    fn endpoint(self) -> &'static str {
        match self {
            Kind::Counts => "/v1/inventory/batch",
            Kind::Catalog => "/v1/skus/batch",
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Kind::Counts => "stock records",
            Kind::Catalog => "SKUs",
        }
    }
}

/// One line of a catalog file as a batch item, or why not.
fn parse_sku_line(line: &str, n: usize) -> Result<Option<Value>, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    if t.starts_with('{') {
        // The server validates every field and names it.
        return serde_json::from_str(t)
            .map(Some)
            .map_err(|e| format!("line {n}: {e}"));
    }
    let f: Vec<&str> = t.split(',').map(str::trim).collect();
    if n == 1 && f.first() == Some(&"sku") {
        return Ok(None); // header
    }
    if f.len() < 2 {
        return Err(format!(
            "line {n}: expected sku,name[,weight_g[,ship_alone]]"
        ));
    }
    let mut item = json!({"sku": f[0], "name": f[1]});
    if let Some(w) = f.get(2).filter(|s| !s.is_empty()) {
        item["weight_g"] = json!(w
            .parse::<i64>()
            .map_err(|_| format!("line {n}: weight_g {w:?} is not an integer"))?);
    }
    if let Some(a) = f.get(3).filter(|s| !s.is_empty()) {
        item["ship_alone"] = json!(match *a {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => return Err(format!("line {n}: ship_alone {a:?}: true or false")),
        });
    }
    Ok(Some(item))
}

/// One line of the file as a batch item, or why not.
fn parse_line(line: &str, n: usize) -> Result<Option<Value>, String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    if t.starts_with('{') {
        let v: Value = serde_json::from_str(t).map_err(|e| format!("line {n}: {e}"))?;
        return Ok(Some(
            json!({"location": v["location"], "sku": v["sku"], "on_hand": v["on_hand"], "safety_stock": v.get("safety_stock")}),
        ));
    }
    let f: Vec<&str> = t.split(',').map(str::trim).collect();
    if n == 1 && f.first() == Some(&"location") {
        return Ok(None); // header
    }
    if f.len() < 3 {
        return Err(format!(
            "line {n}: expected location,sku,on_hand[,safety_stock]"
        ));
    }
    let on_hand: i64 = f[2]
        .parse()
        .map_err(|_| format!("line {n}: on_hand {:?} is not an integer", f[2]))?;
    let mut item = json!({"location": f[0], "sku": f[1], "on_hand": on_hand});
    if let Some(s) = f.get(3).filter(|s| !s.is_empty()) {
        item["safety_stock"] = json!(s
            .parse::<i64>()
            .map_err(|_| format!("line {n}: safety_stock {s:?}"))?);
    }
    Ok(Some(item))
}

pub fn run(
    file: &Path,
    url: &str,
    token: Option<&str>,
    batch: usize,
    kind: Kind,
) -> Result<(), String> {
    let batch = batch.clamp(1, BATCH_ITEMS_MAX);
    let f = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let client = reqwest::blocking::Client::new();
    let endpoint = format!("{}{}", url.trim_end_matches('/'), kind.endpoint());
    let parse = match kind {
        Kind::Counts => parse_line,
        Kind::Catalog => parse_sku_line,
    };
    let mut items = Vec::with_capacity(batch);
    let mut applied = 0u64;
    let send = |items: &mut Vec<Value>, applied: &mut u64| -> Result<(), String> {
        let mut req = client.post(&endpoint).json(&json!({ "items": items }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().map_err(|e| format!("{endpoint}: {e}"))?;
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(format!("{endpoint} answered {status}: {body}"));
        }
        *applied += body["applied"].as_u64().unwrap_or(0);
        items.clear();
        Ok(())
    };
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        bar.inc(line.len() as u64 + 1);
        if let Some(item) = parse(&line, i + 1)? {
            items.push(item);
        }
        if items.len() == batch {
            send(&mut items, &mut applied)?;
            bar.set_message(format!("{applied} {}", kind.noun()));
        }
    }
    if !items.is_empty() {
        send(&mut items, &mut applied)?;
    }
    bar.finish_with_message(format!("{applied} {}", kind.noun()));
    eprintln!("imported {applied} {} from {}", kind.noun(), file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_lines() {
        assert_eq!(parse_line("location,sku,on_hand", 1), Ok(None));
        let v = parse_line("S001, A1, 10", 2).expect("ok").expect("item");
        assert_eq!(v["on_hand"], 10);
        let v = parse_line(r#"{"location":"S1","sku":"A","on_hand":3}"#, 3)
            .expect("ok")
            .expect("item");
        assert_eq!(v["sku"], "A");
        assert!(parse_line("S1,A,x", 4).is_err());
    }

    #[test]
    fn catalog_csv_and_json_lines() {
        assert_eq!(parse_sku_line("sku,name,weight_g", 1), Ok(None));
        let v = parse_sku_line("SOFA, Sofa 3 seats, 52000, true", 2)
            .expect("ok")
            .expect("item");
        assert_eq!(
            v,
            json!({"sku": "SOFA", "name": "Sofa 3 seats", "weight_g": 52000, "ship_alone": true})
        );
        let v = parse_sku_line(
            r#"{"sku":"A","name":"a","dimensions_mm":{"length":1,"width":2,"height":3}}"#,
            3,
        )
        .expect("ok")
        .expect("item");
        assert_eq!(v["dimensions_mm"]["height"], 3);
        assert!(parse_sku_line("A", 4).is_err());
        assert!(parse_sku_line("A,a,heavy", 5).is_err());
        assert!(parse_sku_line("A,a,1,maybe", 6).is_err());
    }
}
