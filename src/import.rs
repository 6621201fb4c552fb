//! `holdfast import FILE`: stock counts of a whole network into a running
//! server, in batches, with a progress bar.

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use crate::limits::BATCH_ITEMS_MAX;

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

pub fn run(file: &Path, url: &str, token: Option<&str>, batch: usize) -> Result<(), String> {
    let batch = batch.clamp(1, BATCH_ITEMS_MAX);
    let f = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let total = f.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let client = reqwest::blocking::Client::new();
    let endpoint = format!("{}/v1/inventory/batch", url.trim_end_matches('/'));
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
        if let Some(item) = parse_line(&line, i + 1)? {
            items.push(item);
        }
        if items.len() == batch {
            send(&mut items, &mut applied)?;
            bar.set_message(format!("{applied} records"));
        }
    }
    if !items.is_empty() {
        send(&mut items, &mut applied)?;
    }
    bar.finish_with_message(format!("{applied} records"));
    eprintln!("imported {applied} stock records from {}", file.display());
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
}
