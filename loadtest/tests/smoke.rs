//! CI's smoke of the harness: 10 seconds of `checkout` and of `flash-sale`
//! against a freshly started holdfast with verification on, and a short
//! flash sale against each rival so that the baselines are held to the same
//! invariants as the engine they are compared with.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The holdfast binary of this build (same profile dir as this harness).
fn holdfast_bin() -> PathBuf {
    let me = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    let bin = me.with_file_name("holdfast");
    if !bin.exists() {
        // `cargo test -p loadtest` alone does not build the engine.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "holdfast", "--bin", "holdfast"]);
        if me.parent().and_then(|p| p.file_name()) == Some("release".as_ref()) {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo build");
        assert!(st.success(), "building holdfast failed");
    }
    bin
}

/// Runs the harness; its exit code and its runs from results.json.
fn loadtest_status(args: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let out = tempfile::tempdir().expect("tempdir");
    let o = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .arg("--holdfast-bin")
        .arg(holdfast_bin())
        .arg("--out")
        .arg(out.path())
        .arg("--quiet")
        .output()
        .expect("run loadtest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    eprintln!("{text}");
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("results.json")).expect("results.json"),
    )
    .expect("json");
    let html = std::fs::read_to_string(out.path().join("report.html")).expect("report.html");
    assert!(html.contains("<svg") && html.contains("Throughput"));
    let runs = json["runs"].as_array().cloned().expect("runs");
    (o.status.code(), runs, text)
}

/// Runs the harness, which must succeed; its runs.
fn loadtest(args: &[&str]) -> Vec<Value> {
    let (code, runs, text) = loadtest_status(args);
    assert_eq!(code, Some(0), "loadtest {args:?} failed:\n{text}");
    runs
}

fn checks(run: &Value) -> Vec<(String, bool, String)> {
    run["verification"]["checks"]
        .as_array()
        .expect("verification ran")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["passed"].as_bool().unwrap_or(false),
                c["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn checkout_smoke_against_holdfast_verifies() {
    let runs = loadtest(&[
        "run",
        "--target",
        "holdfast",
        "--scenario",
        "checkout",
        "--duration",
        "10",
        "--connections",
        "16",
    ]);
    let r = &runs[0];
    assert_eq!(r["verification"]["passed"], true, "{r}");
    assert!(r["counts"]["ok_2xx"].as_u64().unwrap_or(0) > 100, "{r}");
    assert_eq!(r["counts"]["server_5xx"], 0);
    let names: Vec<String> = checks(r).into_iter().map(|c| c.0).collect();
    for want in [
        "never oversold",
        "conservation of on_hand",
        "reserved = live holds",
        "every confirmed reservation present",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert!(r["timeline"].as_array().is_some_and(|t| t.len() == 10));
}

#[test]
fn flash_sale_smoke_wins_exactly_the_stock() {
    let runs = loadtest(&[
        "run",
        "--target",
        "holdfast",
        "--scenario",
        "flash-sale",
        "--duration",
        "10",
        "--connections",
        "32",
        "--hot-stock",
        "1500",
    ]);
    let r = &runs[0];
    assert_eq!(r["verification"]["passed"], true, "{r}");
    let (_, passed, detail) = checks(r)
        .into_iter()
        .find(|c| c.0 == "flash sale: exactly the stock won")
        .expect("flash-sale check");
    assert!(passed);
    assert!(detail.starts_with("1500 units of 1500 won"), "{detail}");
    // Many more buyers than units: most were turned away.
    assert!(
        r["counts"]["conflict_409"].as_u64().unwrap_or(0) > 1500,
        "{r}"
    );
}

#[test]
fn rivals_keep_the_same_invariants() {
    let mut targets = "ceiling".to_string();
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        targets.push_str(",redis-always");
    } else {
        eprintln!("redis-server not installed: the redis rival is not checked here");
    }
    let runs = loadtest(&[
        "compare",
        "--targets",
        &targets,
        "--open-fraction",
        "0",
        "--scenario",
        "flash-sale",
        "--duration",
        "3",
        "--connections",
        "16",
        "--hot-stock",
        "500",
    ]);
    assert_eq!(runs.len(), targets.split(',').count());
    for r in &runs {
        assert_eq!(r["verification"]["passed"], true, "{r}");
        let detail = checks(r)
            .into_iter()
            .find(|c| c.0 == "flash sale: exactly the stock won")
            .map(|c| c.2)
            .unwrap_or_default();
        assert!(detail.starts_with("500 units of 500 won"), "{detail}");
    }
}

/// The verification is only worth its "yes" if it says "no" to a target
/// that breaks the invariants: a ceiling with a deliberate bug must fail it,
/// and the harness must exit 1.
#[test]
fn verification_catches_an_oversell_and_a_lost_confirm() {
    for (fault, check) in [
        ("oversell", "flash sale: exactly the stock won"),
        ("lose-confirm", "every confirmed reservation present"),
    ] {
        let (code, runs, text) = loadtest_status(&[
            "run",
            "--target",
            "ceiling",
            "--ceiling-fault",
            fault,
            "--scenario",
            "flash-sale",
            "--duration",
            "2",
            "--connections",
            "8",
            "--hot-stock",
            "100",
        ]);
        assert_eq!(code, Some(1), "{fault}: the run should fail:\n{text}");
        let r = &runs[0];
        assert_eq!(r["verification"]["passed"], false);
        let failed: Vec<String> = checks(r)
            .into_iter()
            .filter(|c| !c.1)
            .map(|c| c.0)
            .collect();
        assert!(failed.iter().any(|c| c == check), "{fault}: {failed:?}");
    }
}

#[test]
fn mixed_smoke_reads_adjusts_and_reserves_and_verifies() {
    let runs = loadtest(&[
        "run",
        "--target",
        "holdfast",
        "--scenario",
        "mixed",
        "--duration",
        "4",
        "--connections",
        "8",
        "--skus",
        "50",
        "--on-hand",
        "20",
    ]);
    let r = &runs[0];
    assert_eq!(r["verification"]["passed"], true, "{r}");
    // Every kind of request of the scenario was made and answered.
    for op in ["availability", "adjust", "reserve", "release"] {
        assert!(op_count(r, op) > 0, "no {op} in {r}");
    }
    // Sales on small stock may be refused (409); nothing fails.
    assert_eq!(r["counts"]["server_5xx"], 0);
    assert_eq!(r["counts"]["no_answer"], 0);
}

#[test]
fn orders_smoke_places_ships_delivers_and_cancels_and_verifies() {
    // Little stock: some orders find nothing left (409), and the holds,
    // fulfilments and cancels must still add up.
    let runs = loadtest(&[
        "run",
        "--target",
        "holdfast",
        "--scenario",
        "orders",
        "--duration",
        "4",
        "--connections",
        "8",
        "--skus",
        "30",
        "--on-hand",
        "20",
    ]);
    let r = &runs[0];
    assert_eq!(r["verification"]["passed"], true, "{r}");
    for op in ["order", "shipment_event", "cancel"] {
        assert!(op_count(r, op) > 0, "no {op} in {r}");
    }
}

#[test]
fn feed_clients_get_changes_while_checkouts_run() {
    let runs = loadtest(&[
        "run",
        "--target",
        "holdfast",
        "--scenario",
        "checkout",
        "--duration",
        "3",
        "--connections",
        "8",
        "--skus",
        "50",
        "--locations",
        "4",
        "--feed-clients",
        "40",
    ]);
    let r = &runs[0];
    assert_eq!(r["verification"]["passed"], true, "{r}");
    let f = &r["feed"];
    assert_eq!(f["clients"], 40, "{r}");
    assert!(f["deliveries"].as_u64().is_some_and(|n| n > 0), "{f}");
    assert!(
        f["latency"]["p99_us"].as_u64().is_some_and(|n| n > 0),
        "{f}"
    );
    assert!(
        f["server_rss_after_kb"].as_u64().is_some_and(|n| n > 0),
        "{f}"
    );
}

/// How many requests of kind `op` a run's result made.
fn op_count(r: &Value, op: &str) -> u64 {
    r["ops"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["op"] == op))
        .and_then(|o| o["count"].as_u64())
        .unwrap_or(0)
}

#[test]
fn store_day_smoke_counts_moves_and_sells_ahead_and_verifies() {
    // Few SKUs: the backorder SKUs (every 8th, 3 on hand each) sell out
    // and are sold against their supply.
    let runs = loadtest(&[
        "run",
        "--target",
        "holdfast",
        "--scenario",
        "store-day",
        "--duration",
        "4",
        "--connections",
        "8",
        "--skus",
        "16",
        "--locations",
        "3",
        "--on-hand",
        "30",
    ]);
    let r = &runs[0];
    assert_eq!(r["verification"]["passed"], true, "{r}");
    for op in ["reserve", "fulfil", "count", "transfer", "supply", "adjust"] {
        assert!(op_count(r, op) > 0, "no {op} in {r}");
    }
    let names: Vec<String> = checks(r).into_iter().map(|c| c.0).collect();
    for want in [
        "store day: every late count's history adds up",
        "store day: backorder conversions never exceed receipts",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    let (_, _, ahead) = checks(r)
        .into_iter()
        .find(|c| c.0 == "store day: backorder conversions never exceed receipts")
        .expect("the check");
    assert!(!ahead.starts_with("0 units sold ahead"), "{ahead}");
    assert_eq!(r["counts"]["server_5xx"], 0);
}
