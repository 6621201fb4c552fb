//! The movement history (`GET /v1/inventory/{loc}/{sku}/history`) of a
//! real server: every step of a record (count, adjustment, hold, confirm,
//! fulfil, release, expiry) with the record after it, why and on whose
//! word, newest first, a page at a time; each role's reach; bad queries;
//! and after kill -9 (an acknowledged write whose movement may not have
//! been written yet, and a journal trimmed behind a snapshot) nothing
//! missing and nothing twice.

mod common;

use common::{auth_with, call, client, movement_kinds, seed, stock, Server};
use serde_json::{json, Value};
use std::time::Duration;

const STORE: &str = "[[auth.tokens]]\ntoken = \"store-s000\"\nrole = \"store\"\nlocation = \"S000\"\n[[auth.tokens]]\ntoken = \"store-s001\"\nrole = \"store\"\nlocation = \"S001\"\n";
const ADMIN: Option<&str> = Some("admin-secret");
const CHANNEL: Option<&str> = Some("web-checkout");

fn history(
    c: &reqwest::blocking::Client,
    s: &Server,
    token: Option<&str>,
    query: &str,
) -> (u16, Value) {
    call(
        c,
        "GET",
        &s.url(&format!("/v1/inventory/S000/A0/history{query}")),
        token,
        None,
    )
}

/// Every movement of S000/A0, page by page (`limit` each), newest first.
fn all(c: &reqwest::blocking::Client, s: &Server, token: Option<&str>, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut query = format!("?limit={limit}");
    loop {
        let (st, v) = history(c, s, token, &query);
        assert_eq!(st, 200, "{v}");
        let page = v["movements"].as_array().expect("movements").clone();
        assert!(page.len() <= limit, "{v}");
        out.extend(page);
        match v["next_cursor"].as_str() {
            Some(cur) => query = format!("?limit={limit}&cursor={cur}"),
            None => return out,
        }
    }
}

fn reserve(c: &reqwest::blocking::Client, s: &Server, qty: u32, ttl_s: u64) -> String {
    let body = json!({"lines": [{"sku": "A0", "qty": qty, "location": "S000"}], "ttl_s": ttl_s});
    let (st, v) = call(
        c,
        "POST",
        &s.url("/v1/reservations"),
        CHANNEL,
        Some(&body.to_string()),
    );
    assert_eq!(st, 201, "{v}");
    v["id"].as_str().expect("id").to_string()
}

fn step(c: &reqwest::blocking::Client, s: &Server, id: &str, action: &str) {
    let (st, v) = call(
        c,
        "POST",
        &s.url(&format!("/v1/reservations/{id}/{action}")),
        CHANNEL,
        None,
    );
    assert_eq!(st, 200, "{action}: {v}");
}

/// Each movement starts where the one before it (older) ended, and the
/// newest is the record as it is.
fn assert_chained(moves: &[Value], now: (i64, i64)) {
    let mut figures = (0, 0);
    for m in moves.iter().rev() {
        let d = (
            m["delta_on_hand"].as_i64().expect("delta"),
            m["delta_reserved"].as_i64().expect("delta"),
        );
        let after = (
            m["on_hand"].as_i64().expect("on_hand"),
            m["reserved"].as_i64().expect("reserved"),
        );
        assert_eq!((figures.0 + d.0, figures.1 + d.1), after, "{m}");
        figures = after;
    }
    assert_eq!(figures, now);
}

#[test]
fn every_step_of_a_record_is_in_its_history_with_why_and_whose_word() {
    let s = Server::start(&auth_with(STORE));
    let c = client();
    seed(&c, &s, ADMIN, 1, 2, 10);
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/inventory/S000/A0/adjustments"),
        Some("store-s000"),
        Some(
            &json!({"delta": -2, "reason": "damage", "note": "dropped in the stockroom"})
                .to_string(),
        ),
    );
    assert_eq!(st, 200, "{v}");
    let sold = reserve(&c, &s, 3, 600);
    step(&c, &s, &sold, "confirm");
    step(&c, &s, &sold, "fulfil");
    let dropped = reserve(&c, &s, 1, 600);
    step(&c, &s, &dropped, "release");
    let lapsed = reserve(&c, &s, 1, 1);
    std::thread::sleep(Duration::from_millis(1_800));

    let moves = all(&c, &s, ADMIN, 1_000);
    assert_eq!(
        movement_kinds(&moves),
        [
            "expiry",
            "hold",
            "release",
            "hold",
            "fulfil",
            "confirm",
            "hold",
            "adjustment",
            "count"
        ],
        "{moves:#?}"
    );
    let (on_hand, reserved) = {
        let c2 = client();
        let (st, v) = call(&c2, "GET", &s.url("/v1/inventory/S000/A0"), ADMIN, None);
        assert_eq!(st, 200, "{v}");
        (
            v["on_hand"].as_i64().unwrap_or(-1),
            v["reserved"].as_i64().unwrap_or(-1),
        )
    };
    assert_eq!((on_hand, reserved), (5, 0));
    assert_chained(&moves, (on_hand, reserved));
    // Why, and on whose word.
    let adj = &moves[7];
    assert_eq!(adj["reason"], "damage", "{adj}");
    assert_eq!(adj["note"], "dropped in the stockroom", "{adj}");
    assert_eq!(
        adj["by"],
        json!({"role": "store", "location": "S000"}),
        "{adj}"
    );
    assert_eq!(moves[8]["by"], json!({"role": "admin", "location": null}));
    assert_eq!(moves[8]["delta_on_hand"], 10);
    for (i, id) in [
        (0, &lapsed),
        (1, &lapsed),
        (2, &dropped),
        (3, &dropped),
        (4, &sold),
        (5, &sold),
        (6, &sold),
    ] {
        assert_eq!(moves[i]["ref"].as_str(), Some(id.as_str()), "{}", moves[i]);
    }
    assert_eq!(
        (
            moves[5]["delta_on_hand"].as_i64(),
            moves[5]["delta_reserved"].as_i64()
        ),
        (Some(0), Some(0))
    );
    assert_eq!(
        (
            moves[4]["delta_on_hand"].as_i64(),
            moves[4]["delta_reserved"].as_i64()
        ),
        (Some(-3), Some(-3))
    );
    assert_eq!(
        moves[0]["by"],
        Value::Null,
        "the engine's own step: {}",
        moves[0]
    );
    // The checkout's steps are the channel's word.
    for m in &moves[1..=6] {
        assert_eq!(m["by"], json!({"role": "channel", "location": null}), "{m}");
    }

    // Pages of two give the same movements, in the same order.
    assert_eq!(all(&c, &s, ADMIN, 2), moves);
    // `since`: only what came at or after it.
    let since = moves[3]["at"].as_str().expect("at");
    let (st, v) = history(&c, &s, ADMIN, &format!("?since={since}"));
    assert_eq!(st, 200, "{v}");
    let recent = v["movements"].as_array().expect("movements");
    assert!(recent.len() >= 4 && recent.len() < moves.len(), "{v}");
    assert_eq!(recent[..], moves[..recent.len()]);
    // The other store's record has its own history.
    let (st, v) = call(
        &c,
        "GET",
        &s.url("/v1/inventory/S001/A0/history"),
        ADMIN,
        None,
    );
    assert_eq!(
        (
            st,
            movement_kinds(v["movements"].as_array().expect("movements"))
        ),
        (200, vec!["count"])
    );

    // Reach: admin and the store's own token; not another store's, not a
    // channel's, not without a token; authorization before validation.
    assert_eq!(history(&c, &s, Some("store-s000"), "").0, 200);
    for (token, want) in [(Some("store-s001"), 403), (CHANNEL, 403), (None, 401)] {
        assert_eq!(history(&c, &s, token, "").0, want, "{token:?}");
        assert_eq!(history(&c, &s, token, "?limit=0").0, want, "{token:?}");
    }
    // Bad queries: 422 naming the field; unknown records 404.
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=x", "limit"),
        ("?since=yesterday", "since"),
        ("?cursor=abc", "cursor"),
        ("?cursor=1", "cursor"),
    ] {
        let (st, v) = history(&c, &s, ADMIN, query);
        assert_eq!(
            (st, v["errors"][0]["field"].as_str()),
            (422, Some(field)),
            "{query}: {v}"
        );
    }
    for path in [
        "/v1/inventory/S000/NOPE/history",
        "/v1/inventory/S999/A0/history",
    ] {
        assert_eq!(call(&c, "GET", &s.url(path), ADMIN, None).0, 404, "{path}");
    }
    // A bad note, and the new reason.
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/inventory/S000/A0/adjustments"),
        ADMIN,
        Some(&json!({"delta": -1, "reason": "theft", "note": "x".repeat(257)}).to_string()),
    );
    assert_eq!(
        (st, v["errors"][0]["field"].as_str()),
        (422, Some("note")),
        "{v}"
    );
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/inventory/S000/A0/adjustments"),
        ADMIN,
        Some(&json!({"delta": -1, "reason": "theft"}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
    let (_, v) = history(&c, &s, ADMIN, "?limit=1");
    assert_eq!(
        (
            v["movements"][0]["reason"].as_str(),
            v["movements"][0]["note"].is_null()
        ),
        (Some("theft"), true),
        "{v}"
    );
    assert!(v["next_cursor"].is_string(), "{v}");
}

/// What the history says of S000/A0 on server `s` (open: no tokens).
fn story(s: &Server) -> Vec<Value> {
    all(&client(), s, None, 1_000)
}

#[test]
fn the_history_survives_kill_9_whole_and_once() {
    let journal_only = "[snapshot]\nevery_records = 1000000\n";
    let mut s = Server::start(journal_only);
    let c = client();
    seed(&c, &s, None, 1, 1, 10);
    let adjust = |s: &Server, n: i64| {
        let (st, v) = call(
            &client(),
            "POST",
            &s.url("/v1/inventory/S000/A0/adjustments"),
            None,
            Some(&json!({"delta": n, "reason": "receipt"}).to_string()),
        );
        assert_eq!(st, 200, "{v}");
    };
    for n in 1..=5 {
        adjust(&s, n);
    }
    // Killed right after an acknowledged write: its movement may not be
    // in the history yet; the journal has it.
    s.kill_and_restart(journal_only);
    let moves = story(&s);
    assert_eq!(
        movement_kinds(&moves),
        ["adjustment"; 5]
            .iter()
            .copied()
            .chain(["count"])
            .collect::<Vec<_>>()
    );
    assert_chained(&moves, (25, 0));

    // Snapshots taken (the journal trimmed behind them), more writes,
    // killed again: every movement once.
    s.kill_and_restart("[snapshot]\nevery_records = 1\nevery_s = 1\n");
    for n in 6..=8 {
        adjust(&s, n);
    }
    std::thread::sleep(Duration::from_millis(2_500));
    adjust(&s, 9);
    s.kill_and_restart(journal_only);
    let moves = story(&s);
    assert_eq!(moves.len(), 10, "{moves:#?}");
    assert_chained(&moves, (10 + (1..=9).sum::<i64>(), 0));
    assert_eq!(stock(&c, &s, "S000", "A0").0, 55);
}

#[test]
fn a_damaged_history_is_set_aside_and_the_node_still_serves() {
    let journal_only = "[snapshot]\nevery_records = 1000000\n";
    let mut s = Server::start(journal_only);
    let c = client();
    seed(&c, &s, None, 1, 1, 10);
    assert_eq!(story(&s).len(), 1, "the count");
    s.kill_and_restart_after(journal_only, |dir| {
        let path = dir.join("snapshots").join("history.redb");
        assert!(path.exists(), "{}", path.display());
        std::fs::write(&path, b"torn".repeat(1000)).expect("damage it");
    });
    // It starts, serves, and tells again what the journal still holds.
    assert_eq!(stock(&c, &s, "S000", "A0"), (10, 0));
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/inventory/S000/A0/adjustments"),
        None,
        Some(r#"{"delta":-1,"reason":"sale"}"#),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(movement_kinds(&story(&s)), ["adjustment", "count"]);
    let aside = s.data_dir.join("snapshots").join("history.redb.damaged-0");
    assert!(aside.exists(), "kept for a look: {}", aside.display());
}
