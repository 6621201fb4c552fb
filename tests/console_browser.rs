//! The operations console (`/ui/`) in a real browser, headless Chromium:
//! a search finds an order, its page shows the timeline, a cancel from the
//! page cancels it, a store token sees only its store's orders and no
//! cancel; the SKU, store and cluster pages show what the API holds.
//! Screenshots are kept in the tests' output folder (paths printed). CI
//! installs chromium (`.ci/run`); elsewhere, without it, the test says so
//! and passes only if `CI` is not set.

mod common;

use common::browser::{cdp, chromium, screenshot, wait_for, Browser, Cdp};
use common::{auth_with, call, client, Server};
use serde_json::{json, Value};

const ADMIN: Option<&str> = Some("admin-secret");
const STORES: &str = "[[auth.tokens]]\ntoken = \"store-mi\"\nrole = \"store\"\nlocation = \"S_MI\"\n[[auth.tokens]]\ntoken = \"store-rm\"\nrole = \"store\"\nlocation = \"S_RM\"\n";

fn admin(c: &reqwest::blocking::Client, s: &Server, method: &str, path: &str, body: Value) {
    let (st, v) = call(c, method, &s.url(path), ADMIN, Some(&body.to_string()));
    assert!(st == 200 || st == 201, "{path}: {st} {v}");
}

/// Evaluates `js` in the page (its value ignored).
async fn run(ws: &mut Cdp, id: &mut u64, js: &str) {
    *id += 1;
    let v = cdp(
        ws,
        *id,
        "Runtime.evaluate",
        json!({"expression": js, "returnByValue": true}),
    )
    .await;
    assert!(v["result"]["exceptionDetails"].is_null(), "{js}: {v}");
}

async fn open(ws: &mut Cdp, id: &mut u64, url: &str) {
    *id += 1;
    cdp(ws, *id, "Page.navigate", json!({"url": url})).await;
}

const ROWS: &str =
    r#"[...document.querySelectorAll('#results tr')].map((r) => r.dataset.order).join(",")"#;
const WHO: &str = r#"document.getElementById("who").textContent"#;

#[test]
fn the_console_finds_an_order_shows_its_story_and_cancels_it() {
    let Some(browser) = chromium() else {
        return; // said by `chromium` (CI must have it)
    };
    let s = Server::start(&auth_with(STORES));
    let c = client();
    for sku in ["A", "B"] {
        admin(
            &c,
            &s,
            "PUT",
            &format!("/v1/skus/{sku}"),
            json!({"name": sku}),
        );
    }
    for (id, lat) in [("S_MI", 45.46), ("S_RM", 41.9)] {
        admin(
            &c,
            &s,
            "PUT",
            &format!("/v1/locations/{id}"),
            json!({"name": id, "kind": "store", "lat": lat, "lon": 10.0, "priority": 1, "ship": true, "pickup": true, "daily_capacity": 40}),
        );
    }
    let items: Vec<Value> = ["S_MI", "S_RM"]
        .iter()
        .flat_map(|l| ["A", "B"].map(|k| json!({"location": l, "sku": k, "on_hand": 20})))
        .collect();
    admin(
        &c,
        &s,
        "POST",
        "/v1/inventory/batch",
        json!({ "items": items }),
    );
    for (id, store, email) in [
        ("CS-1", "S_MI", "anna@example.com"),
        ("CS-2", "S_RM", "anna@example.com"),
        ("CS-3", "S_MI", "bob@example.com"),
    ] {
        admin(
            &c,
            &s,
            "POST",
            "/v1/orders",
            json!({"id": id, "lines": [{"sku": "A", "qty": 2, "unit_price": "19.90"}],
                "delivery": {"type": "pickup", "location": store}, "payment": {"provider": "sandbox"},
                "customer": {"email": email, "phone": "+39 333 000 1111"}}),
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    let b = Browser::start(&browser, &c, (1280, 900));
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let mut shots = Vec::new();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(b.page_ws.as_str())
            .await
            .expect("cdp connect");
        let mut id = 1;
        let ws = &mut ws;
        let id = &mut id;
        open(ws, id, &s.url("/ui/?token=admin-secret#/orders")).await;
        assert_eq!(wait_for(ws, id, WHO, "admin").await, "admin");
        // Every order first, newest first; then the search.
        assert_eq!(wait_for(ws, id, ROWS, "CS-3,CS-2,CS-1").await, "CS-3,CS-2,CS-1");
        run(ws, id, r#"document.querySelector('#search input[name=email]').value = "ANNA@example.com"; document.querySelector('#search button').click()"#).await;
        assert_eq!(wait_for(ws, id, ROWS, "CS-2,CS-1").await, "CS-2,CS-1", "the search");
        // Placed today (the page's days are local ones), anyone's.
        run(ws, id, r##"const t = new Date(); const d = t.getFullYear() + "-" + String(t.getMonth() + 1).padStart(2, "0") + "-" + String(t.getDate()).padStart(2, "0"); location.hash = "#/orders?from=" + d + "&to=" + d"##).await;
        assert_eq!(wait_for(ws, id, ROWS, "CS-3,CS-2,CS-1").await, "CS-3,CS-2,CS-1", "today");
        run(ws, id, r##"location.hash = "#/orders?to=2000-01-01""##).await;
        let none = r#"(document.querySelector('#search-status .empty') || {}).textContent || """#;
        assert_eq!(wait_for(ws, id, none, "No order matches.").await, "No order matches.");
        run(ws, id, r##"location.hash = "#/orders?email=anna%40example.com""##).await;
        assert_eq!(wait_for(ws, id, ROWS, "CS-2,CS-1").await, "CS-2,CS-1");
        shots.push(screenshot(ws, id, "console-search.png").await);

        // The order's page: lines, shipments, its timeline.
        run(ws, id, r#"document.querySelector('#results tr[data-order="CS-1"]').click()"#).await;
        let title = r#"(document.getElementById("order-id") || {}).textContent || """#;
        assert_eq!(wait_for(ws, id, title, "CS-1").await, "CS-1");
        let timeline = r#"[...document.querySelectorAll('#timeline li')].map((l) => l.dataset.type).join(",")"#;
        assert_eq!(
            wait_for(ws, id, timeline, "order.placed,order.paid").await,
            "order.placed,order.paid"
        );
        let shipment = r#"[...document.querySelectorAll('tr[data-shipment] td')].map((t) => t.textContent).slice(0, 5).join("|")"#;
        assert_eq!(
            wait_for(ws, id, shipment, "1|S_MI|pickup|pending|2 × A").await,
            "1|S_MI|pickup|pending|2 × A"
        );
        let clean = r#"String(!/\bnull\b|undefined|\[object/.test(document.querySelector("main").innerText))"#;
        assert_eq!(wait_for(ws, id, clean, "true").await, "true", "nothing unset shown");
        // Not shipped yet: nothing to return, so no Return column.
        let returns = r#"String(document.querySelectorAll("input.ret, #take-return").length + [...document.querySelectorAll("th")].filter((h) => h.textContent === "Return").length)"#;
        assert_eq!(wait_for(ws, id, returns, "0").await, "0", "no return offered");
        shots.push(screenshot(ws, id, "console-order.png").await);

        // Cancelled from the page: asked, confirmed, shown, and done.
        run(ws, id, r#"document.getElementById("cancel").click()"#).await;
        run(ws, id, r#"document.getElementById("confirm-cancel").click()"#).await;
        let status = r#"((document.querySelector('#order-status [data-status]') || {}).dataset || {}).status || """#;
        assert_eq!(wait_for(ws, id, status, "cancelled").await, "cancelled");
        assert_eq!(
            wait_for(ws, id, timeline, "order.placed,order.paid,order.cancelled").await,
            "order.placed,order.paid,order.cancelled"
        );
        let (_, o) = tokio::task::block_in_place(|| {
            call(&c, "GET", &s.url("/v1/orders/CS-1"), ADMIN, None)
        });
        assert_eq!(o["status"], "cancelled", "{o}");
        shots.push(screenshot(ws, id, "console-cancelled.png").await);

        // The SKU: its stock by location, network-wide availability (CS-2
        // and CS-3 hold 2 each; CS-1's were released), a location's
        // movements.
        open(ws, id, &s.url("/ui/?token=admin-secret#/sku/A")).await;
        let net = r#"(document.getElementById("network-available") || {}).textContent || """#;
        assert_eq!(wait_for(ws, id, net, "36").await, "36");
        run(ws, id, r#"document.querySelector('tr[data-location="S_MI"]').click()"#).await;
        let moves = r#"String(document.querySelectorAll('#history tbody tr').length > 0)"#;
        assert_eq!(wait_for(ws, id, moves, "true").await, "true", "movements");
        shots.push(screenshot(ws, id, "console-sku.png").await);

        // A store's day: orders taken against its capacity, open pickups.
        open(ws, id, &s.url("/ui/?token=admin-secret#/store/S_MI")).await;
        let today = r#"String(/^[12] of 40$/.test((document.getElementById("today") || {}).textContent))"#;
        assert_eq!(wait_for(ws, id, today, "true").await, "true");
        // A single node: no cluster.
        open(ws, id, &s.url("/ui/?token=admin-secret#/cluster")).await;
        let single = r#"String(document.getElementById("single") !== null)"#;
        assert_eq!(wait_for(ws, id, single, "true").await, "true");

        // A store token, on a tablet: its store's orders only, no cancel.
        *id += 1;
        cdp(
            ws,
            *id,
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 768, "height": 1024, "deviceScaleFactor": 1, "mobile": true}),
        )
        .await;
        open(ws, id, &s.url("/ui/?token=store-rm#/orders")).await;
        assert_eq!(wait_for(ws, id, WHO, "store S_RM").await, "store S_RM");
        assert_eq!(wait_for(ws, id, ROWS, "CS-2").await, "CS-2");
        run(ws, id, r##"location.hash = "#/order/CS-2""##).await;
        assert_eq!(wait_for(ws, id, title, "CS-2").await, "CS-2");
        let cancel = r#"String(document.getElementById("cancel") === null)"#;
        assert_eq!(wait_for(ws, id, cancel, "true").await, "true");
        shots.push(screenshot(ws, id, "console-store-tablet.png").await);
        // Another store's order is refused, and said so.
        run(ws, id, r##"location.hash = "#/order/CS-3""##).await;
        let refused = r#"((document.querySelector('.msg') || {}).textContent || "").slice(0, 11)"#;
        assert_eq!(wait_for(ws, id, refused, "Not allowed").await, "Not allowed");
    });
    assert_eq!(shots.len(), 5);
    b.close();
}
