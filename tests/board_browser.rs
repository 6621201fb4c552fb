//! The store board in a real browser: headless Chromium (Debian's package,
//! driven through its DevTools protocol over a WebSocket) opens
//! `/ui/stores/S000`, the stock changes through the API, and the number on
//! the page changes; a pay-and-collect order shows among its pickups. A
//! screenshot is kept as a test artifact (its path is
//! printed). CI installs chromium (`.ci/run`); elsewhere, without it, the
//! test says so and passes only if `CI` is not set.

mod common;

use common::browser::{base64_decode, cdp, chromium, wait_for, Browser};
use common::{call, client, seed, Server};
use serde_json::json;

#[test]
fn the_store_board_shows_a_stock_change_as_it_happens() {
    let Some(browser) = chromium() else {
        return; // said by `chromium` (CI must have it)
    };
    let s = Server::start("");
    let c = client();
    seed(&c, &s, None, 2, 1, 5);

    let b = Browser::start(&browser, &c, (1024, 768));
    let page_ws = b.page_ws.clone();

    // A pay-and-collect order waiting at this store's counter.
    let (st, v) = call(
        &c,
        "POST",
        &s.url("/v1/orders"),
        None,
        Some(
            r#"{"id":"P-1","lines":[{"sku":"A0","qty":1,"unit_price":"9.90"}],"delivery":{"type":"pickup","location":"S000"},"payment":{"provider":"sandbox"}}"#,
        ),
    );
    assert_eq!(st, 201, "{v}");
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let board = s.url("/ui/stores/S000");
    let cell = r#"(() => { const td = document.querySelector('tr[data-sku="A1"] td.available'); return td ? td.textContent : "" })()"#;
    let status = r#"document.getElementById("status-text").textContent"#;
    let png = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .expect("cdp connect");
        let mut id = 1;
        cdp(&mut ws, id, "Page.navigate", json!({"url": board})).await;
        assert_eq!(wait_for(&mut ws, &mut id, status, "live").await, "live");
        assert_eq!(
            wait_for(&mut ws, &mut id, cell, "5").await,
            "5",
            "the snapshot"
        );
        let pickup = r#"(() => { const p = document.querySelector('[data-order="P-1"] .lines'); return p ? p.textContent : "" })()"#;
        assert_eq!(
            wait_for(&mut ws, &mut id, pickup, "1 × A0").await,
            "1 × A0",
            "the pickup at the counter"
        );
        // Two sold at the till, through the API.
        // (The blocking client keeps a runtime of its own.)
        let (st, v) = tokio::task::block_in_place(|| {
            call(
                &c,
                "POST",
                &s.url("/v1/inventory/S000/A1/adjustments"),
                None,
                Some(r#"{"delta":-2,"reason":"sale"}"#),
            )
        });
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            wait_for(&mut ws, &mut id, cell, "3").await,
            "3",
            "the change"
        );
        // One found damaged: set apart, no longer available.
        let (st, v) = tokio::task::block_in_place(|| {
            call(
                &c,
                "POST",
                &s.url("/v1/inventory/S000/A1/unsellable"),
                None,
                Some(r#"{"bucket":"damaged","delta":1,"reason":"damage"}"#),
            )
        });
        assert_eq!(st, 200, "{v}");
        let apart = r#"(() => { const td = document.querySelector('tr[data-sku="A1"] td.unsellable'); return td ? td.textContent + " " + td.title : "" })()"#;
        assert_eq!(
            wait_for(&mut ws, &mut id, apart, "1 damaged 1").await,
            "1 damaged 1",
            "the unsellable column"
        );
        assert_eq!(wait_for(&mut ws, &mut id, cell, "2").await, "2");
        // Supply announced: the Incoming column, its time on hover.
        let (st, v) = tokio::task::block_in_place(|| {
            call(
                &c,
                "POST",
                &s.url("/v1/supply"),
                None,
                Some(r#"{"id":"PO-1","location":"S000","expected_at":"2027-01-15T08:00:00Z","lines":[{"sku":"A1","qty":40}]}"#),
            )
        });
        assert_eq!(st, 201, "{v}");
        let incoming = r#"(() => { const td = document.querySelector('tr[data-sku="A1"] td.incoming'); return td ? td.textContent + " " + td.title : "" })()"#;
        let want = "40 expected from 2027-01-15T08:00:00.000Z";
        assert_eq!(
            wait_for(&mut ws, &mut id, incoming, want).await,
            want,
            "the incoming column"
        );
        // Sold ahead against it: 2 on hand, 3 backordered.
        let (st, v) = tokio::task::block_in_place(|| {
            let sku = r#"{"name":"sku 1","backorder":{"max_units":10}}"#;
            assert_eq!(call(&c, "PUT", &s.url("/v1/skus/A1"), None, Some(sku)).0, 200);
            call(
                &c,
                "POST",
                &s.url("/v1/reservations"),
                None,
                Some(r#"{"lines":[{"sku":"A1","location":"S000","qty":5,"allow_backorder":true}]}"#),
            )
        });
        assert_eq!(st, 201, "{v}");
        let ahead = r#"(() => { const td = document.querySelector('tr[data-sku="A1"] td.backordered'); return td ? td.textContent : "" })()"#;
        assert_eq!(
            wait_for(&mut ws, &mut id, ahead, "3").await,
            "3",
            "the sold-ahead column"
        );
        assert_eq!(wait_for(&mut ws, &mut id, cell, "0").await, "0");
        let flashed =
            r#"String(document.querySelector('tr[data-sku="A1"]').classList.contains("flash"))"#;
        assert_eq!(
            wait_for(&mut ws, &mut id, flashed, "true").await,
            "true",
            "highlighted"
        );
        id += 1;
        let shot = cdp(
            &mut ws,
            id,
            "Page.captureScreenshot",
            json!({"format": "png"}),
        )
        .await;
        base64_decode(shot["result"]["data"].as_str().expect("screenshot data"))
    });
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("store-board.png");
    std::fs::write(&path, &png).expect("keep the screenshot");
    println!("screenshot: {}", path.display());
    b.close();
}
