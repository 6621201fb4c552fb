//! Orders paid through the payment adapters against local providers
//! speaking their wire formats (tests/common/adyen.rs, gestpay.rs,
//! amazonpay.rs: every Amazon Pay request's signature verified;
//! scalapay.rs: the shopper approves first),
//! through the order API of the real binary: authorized when placed,
//! captured when shipped, refunded on a return, voided on a cancel; a
//! refusal; answers lost on the way or late past the timeout (charged
//! once); Adyen down (503,
//! nothing held, the circuit opens and stops calling), then back; Adyen's
//! webhooks kept once, a forged one refused.

mod common;

use common::adyen::{self, AdyenSim};
use common::amazonpay::AmazonPaySim;
use common::gestpay::GestpaySim;
use common::scalapay::ScalapaySim;
use common::{client, get, post, put_ok, stock, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::time::Duration;

const KEY: &str = "AQEyhmfxK4-test-key";
/// Where a shopper sent to a redirect comes back (Adyen requires it).
const RETURN_URL: &str = "https://shop.example.com/checkout/return";
const HMAC: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
const MERCHANT: &str = "HoldfastECOM";

fn config(sim: &AdyenSim, test: &str) -> String {
    // Secrets come from the environment the server inherits, under names
    // of this test's own.
    let (key_env, hmac_env) = (
        format!("HOLDFAST_T_{test}_ADYEN_KEY"),
        format!("HOLDFAST_T_{test}_ADYEN_HMAC"),
    );
    std::env::set_var(&key_env, KEY);
    std::env::set_var(&hmac_env, HMAC);
    format!(
        "[payments.adyen]\nbase_url = \"{}\"\nmerchant_account = \"{MERCHANT}\"\n\
         return_url = \"{RETURN_URL}\"\n\
         api_key_env = \"{key_env}\"\nhmac_key_env = \"{hmac_env}\"\n\
         [payments.adyen.calls]\ntimeout_ms = 2000\nretries = 2\nbackoff_ms = 20\n\
         circuit_trip = 3\ncircuit_open_s = 2\n",
        sim.base_url()
    )
}

/// One SKU `A` with 10 units at `DC1`.
fn network(c: &Client, s: &Server) {
    put_ok(c, s, "/v1/skus/A", json!({"name": "A"}));
    put_ok(
        c,
        s,
        "/v1/locations/DC1",
        json!({"name": "DC1", "kind": "dc", "lat": 45.5, "lon": 9.2, "priority": 10, "ship": true}),
    );
    let (st, v) = post(
        c,
        s,
        "/v1/inventory/batch",
        Some(&json!({"items": [{"location": "DC1", "sku": "A", "on_hand": 10}]}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
}

/// An order of `qty` A at `price`, paid with Adyen (a card from the
/// Drop-in: its encrypted fields).
fn order(c: &Client, s: &Server, id: &str, qty: u32, price: &str) -> (u16, Value) {
    let card = json!({
        "type": "scheme",
        "encryptedCardNumber": "test_4111111111111111",
        "encryptedExpiryMonth": "test_03",
        "encryptedExpiryYear": "test_2030",
        "encryptedSecurityCode": "test_737"
    });
    order_with(c, s, id, qty, price, "adyen", card)
}

fn order_with(
    c: &Client,
    s: &Server,
    id: &str,
    qty: u32,
    price: &str,
    provider: &str,
    method: Value,
) -> (u16, Value) {
    let body = json!({
        "id": id,
        "lines": [{"sku": "A", "qty": qty, "unit_price": price}],
        "delivery": {"type": "ship", "lat": 45.46, "lon": 9.19},
        "payment": {"provider": provider, "method": method},
    });
    post(c, s, "/v1/orders", Some(&body.to_string()))
}

fn event(c: &Client, s: &Server, id: &str, status: &str) -> (u16, Value) {
    post(
        c,
        s,
        &format!("/v1/orders/{id}/shipments/1/events"),
        Some(&json!({ "status": status }).to_string()),
    )
}

/// Waits until order `id`'s payment is captured (an owed capture made).
fn wait_captured(c: &Client, s: &Server, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, o) = get(c, s, &format!("/v1/orders/{id}"));
        if o["payment"]["state"] == "captured" {
            return o;
        }
        assert!(std::time::Instant::now() < deadline, "never captured: {o}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The answer `st`, `v` is the problem `status`, `code`.
fn expect_problem(st: u16, v: &Value, status: u16, code: &str) {
    assert_eq!((st, v["code"].as_str()), (status, Some(code)), "{v}");
}

/// The answer `st` of an order `o` is `status`, its payment `state`.
fn expect_payment(st: u16, o: &Value, status: u16, state: &str) {
    assert_eq!(
        (st, o["payment"]["state"].as_str()),
        (status, Some(state)),
        "{o}"
    );
}

/// Shipment 1 of `id` delivered, one A returned to DC1: `refund` refunded.
fn deliver_and_return_one(c: &Client, s: &Server, id: &str, refund: &str) {
    let (st, o) = event(c, s, id, "delivered");
    assert_eq!(st, 200, "{o}");
    let (st, o) = post(
        c,
        s,
        &format!("/v1/orders/{id}/returns"),
        Some(&json!({"lines": [{"sku": "A", "qty": 1}], "location": "DC1"}).to_string()),
    );
    assert_eq!(
        (st, o["payment"]["refunded"].as_str()),
        (200, Some(refund)),
        "{o}"
    );
}

#[test]
fn an_order_is_authorized_captured_and_refunded_at_adyen() {
    let sim = AdyenSim::start(KEY, MERCHANT);
    let s = Server::start(&config(&sim, "FLOW"));
    let c = client();
    network(&c, &s);

    // Placed: authorized at Adyen for the order's total, under its id.
    let (st, o) = order(&c, &s, "O-1", 2, "10.00");
    assert_eq!(st, 201, "{o}");
    assert_eq!(o["payment"]["state"], "authorized", "{o}");
    let paid = sim.state.lock().payments_of("O-1");
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!((paid[0].amount, paid[0].currency.as_str()), (2000, "EUR"));
    let (path, body) = sim.state.lock().calls[0].clone();
    assert_eq!(path, "/v71/payments");
    assert_eq!(body["paymentMethod"]["type"], "scheme", "{body}");
    assert_eq!(body["merchantAccount"], MERCHANT);
    assert_eq!(body["returnUrl"], RETURN_URL, "{body}");

    // Shipped: captured; delivered; one unit returned: refunded.
    let (st, o) = event(&c, &s, "O-1", "shipped");
    expect_payment(st, &o, 200, "captured");
    assert_eq!(sim.state.lock().payments_of("O-1")[0].captured, 2000);

    // Adyen's word on the capture, by webhook: kept once however often it
    // comes; a forged one (another key) refused, nothing kept.
    let psp = o["payment"]["reference"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let capture = adyen::item("SIMCAPTURE00001", &psp, "O-1", 2000, "CAPTURE", true);
    let hook = s.url("/v1/webhooks/adyen");
    for _ in 0..2 {
        assert_eq!(
            adyen::webhook(&hook, std::slice::from_ref(&capture), HMAC),
            (200, "[accepted]".into())
        );
    }
    let refund = adyen::item("SIMREFUND000001", &psp, "O-1", 2000, "REFUND", true);
    let forged = adyen::webhook(&hook, &[refund], &"AB".repeat(32));
    assert_eq!(forged.0, 401, "{forged:?}");
    let (_, o) = get(&c, &s, "/v1/orders/O-1");
    let notices = o["payment"]["notices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(notices.len(), 1, "{o}");
    assert_eq!(
        (
            notices[0]["event"].as_str(),
            notices[0]["success"].as_bool()
        ),
        (Some("CAPTURE"), Some(true))
    );
    // About another payment, or an order unknown here: acknowledged, not kept.
    let other = adyen::item(
        "SIMCAPTURE00002",
        "SIM9999999999999",
        "O-1",
        2000,
        "CAPTURE",
        true,
    );
    let unknown = adyen::item("SIMCAPTURE00003", &psp, "O-404", 2000, "CAPTURE", true);
    assert_eq!(adyen::webhook(&hook, &[other, unknown], HMAC).0, 200);
    let (_, o) = get(&c, &s, "/v1/orders/O-1");
    assert_eq!(
        o["payment"]["notices"].as_array().map(Vec::len),
        Some(1),
        "{o}"
    );
    deliver_and_return_one(&c, &s, "O-1", "10.00");
    assert_eq!(sim.state.lock().payments_of("O-1")[0].refunded, 1000);

    // Cancelled before shipping: the authorization is cancelled at Adyen.
    let (st, o) = order(&c, &s, "O-2", 1, "7.00");
    assert_eq!(st, 201, "{o}");
    let (st, o) = post(&c, &s, "/v1/orders/O-2/cancel", None);
    expect_payment(st, &o, 200, "voided");
    assert!(sim.state.lock().payments_of("O-2")[0].cancelled);

    // Refused by the issuer: 402, nothing held.
    let before = stock(&c, &s, "DC1", "A");
    let (st, v) = order(&c, &s, "O-3", 1, "10.51");
    expect_problem(st, &v, 402, "payment_declined");
    assert_eq!(stock(&c, &s, "DC1", "A"), before);

    // Adyen needs the shopper's details: an order without them is refused
    // before anything is held or sent.
    let calls = sim.state.lock().calls.len();
    let (st, v) = post(
        &c,
        &s,
        "/v1/orders",
        Some(&json!({"id": "O-4", "lines": [{"sku": "A", "qty": 1, "unit_price": "1.00"}], "delivery": {"type": "ship", "lat": 45.0, "lon": 9.0}, "payment": {"provider": "adyen"}}).to_string()),
    );
    expect_problem(st, &v, 422, "validation_failed");
    assert!(v.to_string().contains("payment.method"), "{v}");
    assert_eq!(sim.state.lock().calls.len(), calls);
}

/// The local Adyen refuses what Adyen's Checkout API v71 refuses
/// (tests/specs/): a payment without any of its required fields, with one
/// of the wrong type, or with a field the API does not know, is answered
/// 422 `validation` naming the field, and nothing is authorised; the same
/// payment whole is authorised. A payment without `returnUrl` (what
/// holdfast sent when configured as the README showed) is refused.
#[test]
fn the_adyen_simulator_refuses_what_adyen_refuses() {
    let sim = AdyenSim::start(KEY, MERCHANT);
    let c = reqwest::blocking::Client::new();
    let send_keyed = |body: &Value, key: &str| {
        let r = c
            .post(format!("{}/payments", sim.base_url()))
            .header("X-API-Key", KEY)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .expect("sent");
        let status = r.status().as_u16();
        (status, r.json::<Value>().expect("json"))
    };
    // A refused request is not kept under its key: the same key serves
    // every attempt.
    let send = |body: &Value| send_keyed(body, "O-1:authorize");
    let whole = json!({
        "merchantAccount": MERCHANT, "reference": "O-1",
        "amount": {"currency": "EUR", "value": 1000},
        "paymentMethod": {"type": "scheme", "encryptedCardNumber": "test_4111111111111111"},
        "returnUrl": RETURN_URL, "shopperInteraction": "Ecommerce",
    });
    for (field, broken) in [
        ("returnUrl", None),
        ("reference", None),
        ("paymentMethod", None),
        ("amount.currency", Some(("amount", json!({"value": 1000})))),
        (
            "amount.value",
            Some(("amount", json!({"currency": "EUR", "value": "10.00"}))),
        ),
        ("returnUrl", Some(("returnUrl", json!(42)))),
        (
            "shopperInteraction",
            Some(("shopperInteraction", json!("Phone"))),
        ),
        ("returnURL", Some(("returnURL", json!(RETURN_URL)))),
    ] {
        let mut body = whole.clone();
        match broken {
            None => {
                body.as_object_mut().expect("object").remove(field);
            }
            Some((k, v)) => body[k] = v,
        }
        let (st, v) = send(&body);
        assert_eq!(
            (st, v["status"].as_u64(), v["errorType"].as_str()),
            (422, Some(422), Some("validation")),
            "{field}: {v}"
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("'{field}'"))
                || v["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(&format!("[{field}]")),
            "{field}: {v}"
        );
    }
    // Adyen's Idempotency-Key: 64 characters at most.
    let (st, v) = send_keyed(&whole, &"k".repeat(65));
    assert_eq!(
        (st, v["errorType"].as_str()),
        (422, Some("validation")),
        "{v}"
    );
    assert!(sim.state.lock().payments.is_empty(), "nothing authorised");
    let (st, v) = send(&whole);
    assert_eq!(
        (st, v["resultCode"].as_str()),
        (200, Some("Authorised")),
        "{v}"
    );
}

#[test]
fn a_lost_answer_charges_once_and_a_provider_down_opens_the_circuit() {
    let sim = AdyenSim::start(KEY, MERCHANT);
    let s = Server::start(&config(&sim, "FAULTS"));
    let c = client();
    network(&c, &s);

    // Authorized, but the answer lost: the adapter asks again under the
    // same Idempotency-Key and gets the first answer: one payment.
    sim.state.lock().lose_answers = 1;
    let (st, o) = order(&c, &s, "O-1", 1, "5.00");
    assert_eq!(st, 201, "{o}");
    assert_eq!(sim.state.lock().payments_of("O-1").len(), 1);

    // Authorized, but answered past the adapter's 2 s timeout: asked
    // again under its key, the first answer: one payment.
    {
        let mut st = sim.state.lock();
        st.slow_answers = 1;
        st.slow_by = Duration::from_millis(3000);
    }
    let (st, o) = order(&c, &s, "O-1B", 1, "5.00");
    assert_eq!(st, 201, "{o}");
    assert_eq!(sim.state.lock().payments_of("O-1B").len(), 1);
    let asked = sim
        .state
        .lock()
        .calls
        .iter()
        .filter(|(path, b)| path.ends_with("/payments") && b["reference"] == "O-1B")
        .count();
    assert_eq!(asked, 2, "timed out once, asked again once");

    // Adyen down: each order is refused with 503 and nothing held; after
    // three failed calls the circuit opens: no request reaches Adyen.
    sim.state.lock().down = true;
    let before = stock(&c, &s, "DC1", "A");
    for _ in 0..3 {
        let (st, v) = order(&c, &s, "O-2", 1, "5.00");
        expect_problem(st, &v, 503, "unavailable");
        assert_eq!(stock(&c, &s, "DC1", "A"), before);
    }
    sim.state.lock().down = false;
    let calls = sim.state.lock().calls.len();
    let (st, v) = order(&c, &s, "O-2", 1, "5.00");
    expect_problem(st, &v, 503, "unavailable");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("not called"),
        "{v}"
    );
    assert_eq!(
        sim.state.lock().calls.len(),
        calls,
        "the open circuit called"
    );
    let m = c
        .get(s.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    for line in [
        "holdfast_outbound_circuit_open{to=\"adyen\"} 1\n",
        "holdfast_outbound_calls_total{to=\"adyen\",outcome=\"short_circuited\"} 1\n",
        "holdfast_outbound_calls_total{to=\"adyen\",outcome=\"failed\"} 3\n",
    ] {
        assert!(m.contains(line), "{line} in {m}");
    }

    // Back, and the circuit's time out: the same order goes through, paid
    // once.
    std::thread::sleep(Duration::from_millis(2100));
    let (st, o) = order(&c, &s, "O-2", 1, "5.00");
    expect_payment(st, &o, 201, "authorized");
    assert_eq!(sim.state.lock().payments_of("O-2").len(), 1);
}

/// An order paid with GestPay: a card token from Axerve's page.
fn gestpay_order(c: &Client, s: &Server, id: &str, price: &str) -> (u16, Value) {
    let card =
        json!({"creditcard": {"token": "4444xxxxxxxx4448", "expMonth": "03", "expYear": "30"}});
    order_with(c, s, id, 1, price, "gestpay", card)
}

fn gestpay_config(sim: &GestpaySim) -> String {
    std::env::set_var("HOLDFAST_T_GESTPAY_KEY", "R0VTVFBBWQ==");
    format!(
        "[payments.gestpay]\nbase_url = \"{}\"\nshop_login = \"GESPAY65987\"\napi_key_env = \"HOLDFAST_T_GESTPAY_KEY\"\n\
         [payments.gestpay.calls]\ntimeout_ms = 2000\nretries = 2\nbackoff_ms = 20\ncircuit_trip = 100\ncircuit_open_s = 1\n",
        sim.base_url()
    )
}

#[test]
fn an_order_is_paid_settled_refunded_and_cancelled_at_gestpay() {
    let sim = GestpaySim::start("R0VTVFBBWQ==", "GESPAY65987");
    let s = Server::start(&gestpay_config(&sim));
    let c = client();
    network(&c, &s);

    // Created, submitted: authorized; its bankTransactionID the reference.
    let (st, o) = gestpay_order(&c, &s, "O-1", "12.50");
    expect_payment(st, &o, 201, "authorized");
    let paid = sim.state.lock().payments_of("O-1:authorize");
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!((paid[0].amount, paid[0].ok), (1250, true));
    let ops: Vec<String> = sim
        .state
        .lock()
        .calls
        .iter()
        .map(|(op, _)| op.clone())
        .collect();
    assert_eq!(ops, ["detail", "create", "submit"]);

    // Shipped: settled; delivered and returned: refunded.
    let (st, o) = event(&c, &s, "O-1", "shipped");
    expect_payment(st, &o, 200, "captured");
    deliver_and_return_one(&c, &s, "O-1", "12.50");
    let p = &sim.state.lock().payments_of("O-1:authorize")[0];
    assert_eq!((p.captured, p.refunded), (1250, 1250));

    // Cancelled before shipping: cancelled at GestPay.
    let (st, _) = gestpay_order(&c, &s, "O-2", "3.00");
    assert_eq!(st, 201);
    let (st, o) = post(&c, &s, "/v1/orders/O-2/cancel", None);
    expect_payment(st, &o, 200, "voided");
    assert!(sim.state.lock().payments_of("O-2:authorize")[0].cancelled);

    // Denied: 402, nothing held.
    let before = stock(&c, &s, "DC1", "A");
    let (st, v) = gestpay_order(&c, &s, "O-3", "10.51");
    expect_problem(st, &v, 402, "payment_declined");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Authorization denied"),
        "{v}"
    );
    assert_eq!(stock(&c, &s, "DC1", "A"), before);
}

/// GestPay takes no idempotency key: a submit whose answer was lost is
/// found again by its shop transaction id (charged once), and a capture
/// whose answer was lost (the goods leave, the capture owed) is made
/// again by itself and not twice.
#[test]
fn lost_answers_at_gestpay_charge_and_settle_once() {
    let sim = GestpaySim::start("R0VTVFBBWQ==", "GESPAY65987");
    let s = Server::start(&format!(
        "[payments]\nretry_every_s = 1\n{}",
        gestpay_config(&sim)
    ));
    let c = client();
    network(&c, &s);

    sim.state.lock().lose.push("submit".into());
    let before = stock(&c, &s, "DC1", "A");
    let (st, v) = gestpay_order(&c, &s, "O-1", "8.00");
    expect_problem(st, &v, 503, "unavailable");
    assert_eq!(stock(&c, &s, "DC1", "A"), before, "nothing held meanwhile");
    // The client tries again: the authorization made is found.
    let (st, o) = gestpay_order(&c, &s, "O-1", "8.00");
    expect_payment(st, &o, 201, "authorized");
    assert_eq!(
        sim.state.lock().payments_of("O-1:authorize").len(),
        1,
        "charged once"
    );

    sim.state.lock().lose.push("capture".into());
    let (st, o) = event(&c, &s, "O-1", "shipped");
    expect_payment(st, &o, 200, "authorized");
    assert_eq!(o["payment"]["capture_pending"], true, "{o}");
    wait_captured(&c, &s, "O-1");
    assert_eq!(
        sim.state.lock().payments_of("O-1:authorize")[0].captured,
        800,
        "settled once"
    );
}

/// Waits until order `id`'s payment says `refunded`.
fn wait_refunded(c: &Client, s: &Server, id: &str, refunded: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, o) = get(c, s, &format!("/v1/orders/{id}"));
        if o["payment"]["refunded"] == refunded {
            return o;
        }
        assert!(std::time::Instant::now() < deadline, "never refunded: {o}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Returns while GestPay cannot refund: the goods are taken back all the
/// same. GestPay down: the return is recorded owing its refund (it
/// survives kill -9), made once GestPay is back, once. A refund whose
/// answer is lost (GestPay takes no key: sent again, it could refund
/// twice) is recorded unclear and never sent again by itself; the back
/// office settles it.
#[test]
fn refunds_owed_at_gestpay_are_made_once() {
    let sim = GestpaySim::start("R0VTVFBBWQ==", "GESPAY65987");
    let cfg = format!("[payments]\nretry_every_s = 1\n{}", gestpay_config(&sim));
    let mut s = Server::start(&cfg);
    let c = client();
    network(&c, &s);
    for (id, price) in [("O-1", "12.50"), ("O-2", "7.00")] {
        let (st, o) = gestpay_order(&c, &s, id, price);
        expect_payment(st, &o, 201, "authorized");
        let (st, o) = event(&c, &s, id, "shipped");
        expect_payment(st, &o, 200, "captured");
        let (st, o) = event(&c, &s, id, "delivered");
        assert_eq!(st, 200, "{o}");
    }
    let ret = json!({"lines": [{"sku": "A", "qty": 1}], "location": "DC1"}).to_string();
    let refunds_of = |id: &str| {
        let shop_id = format!("{id}:authorize");
        let st = sim.state.lock();
        let p = st.payments_of(&shop_id)[0].clone();
        let bank_id = st
            .payments
            .iter()
            .find(|(_, x)| x.shop_id == shop_id)
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let calls = st
            .calls
            .iter()
            .filter(|(op, b)| op == "refund" && b["bankTransactionID"] == bank_id.as_str())
            .count();
        (p.refunded, calls)
    };

    // GestPay down: taken back, the refund owed.
    let (on_hand, _) = stock(&c, &s, "DC1", "A");
    sim.state.lock().down = true;
    let (st, o) = post(&c, &s, "/v1/orders/O-1/returns", Some(&ret));
    assert_eq!(st, 200, "{o}");
    let owed = |o: &Value| {
        (
            o["payment"]["refunded"].as_str().map(String::from),
            o["payment"]["refund_pending"].as_str().map(String::from),
            o["payment"]["refund_unclear"].as_str().map(String::from),
        )
    };
    let some = |a: &str, b: &str, c: &str| (Some(a.into()), Some(b.into()), Some(c.into()));
    assert_eq!(owed(&o), some("0.00", "12.50", "0.00"), "{o}");
    assert_eq!(o["lines"][0]["returned"], 1, "{o}");
    assert_eq!(stock(&c, &s, "DC1", "A").0, on_hand + 1, "restocked");
    assert_eq!(refunds_of("O-1"), (0, 0), "nothing refunded at GestPay");
    // Owed across kill -9.
    s.kill_and_restart(&cfg);
    let (_, o) = get(&c, &s, "/v1/orders/O-1");
    assert_eq!(owed(&o), some("0.00", "12.50", "0.00"), "{o}");
    // Back: made by itself, once.
    sim.state.lock().down = false;
    let o = wait_refunded(&c, &s, "O-1", "12.50");
    assert_eq!(owed(&o), some("12.50", "0.00", "0.00"), "{o}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(refunds_of("O-1"), (1250, 1), "refunded once");

    // The refund's answer lost: done at GestPay, unclear here.
    sim.state.lock().lose.push("refund".into());
    let (st, o) = post(&c, &s, "/v1/orders/O-2/returns", Some(&ret));
    assert_eq!(st, 200, "{o}");
    assert_eq!(owed(&o), some("0.00", "0.00", "7.00"), "{o}");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(refunds_of("O-2"), (700, 1), "never sent again");
    // The back office finds it made at GestPay and says so.
    let key = o["payment"]["refunds_owed"][0]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let settle = |made: bool| {
        post(
            &c,
            &s,
            "/v1/orders/O-2/refunds/settle",
            Some(&json!({"key": key, "made": made}).to_string()),
        )
    };
    let (st, o) = settle(true);
    assert_eq!(st, 200, "{o}");
    assert_eq!(owed(&o), some("7.00", "0.00", "0.00"), "{o}");
    let (st, v) = settle(true);
    expect_problem(st, &v, 409, "invalid_transition");
    let (st, v) = post(&c, &s, "/v1/orders/O-2/refunds/settle", Some("{}"));
    expect_problem(st, &v, 422, "validation_failed");
    assert_eq!(refunds_of("O-2"), (700, 1));
}

/// A merchant key pair (Amazon Pay's are RSA 2048), its private half as
/// the PEM holdfast reads from the environment variable `var`.
fn merchant_key(var: &str) -> rsa::RsaPublicKey {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key");
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).expect("pem");
    std::env::set_var(var, pem.as_str());
    key.to_public_key()
}

fn amazonpay_config(sim: &AmazonPaySim, key_var: &str) -> String {
    format!(
        "[payments.amazonpay]\nbase_url = \"{}\"\nenvironment = \"sandbox\"\npublic_key_id = \"SANDBOX-AHQX\"\n\
         private_key_env = \"{key_var}\"\n\
         [payments.amazonpay.calls]\ntimeout_ms = 2000\nretries = 2\nbackoff_ms = 20\ncircuit_trip = 100\ncircuit_open_s = 1\n",
        sim.base_url()
    )
}

#[test]
fn an_order_is_paid_at_amazon_pay_with_signed_requests() {
    let public = merchant_key("HOLDFAST_T_AMAZONPAY_KEY");
    let sim = AmazonPaySim::start("SANDBOX-AHQX", public);
    let s = Server::start(&amazonpay_config(&sim, "HOLDFAST_T_AMAZONPAY_KEY"));
    let c = client();
    network(&c, &s);
    let session = |id: &str| json!({"checkoutSessionId": id});

    // The buyer approved a checkout session (the button): the order
    // completes it into a charge, captured when shipped, refunded.
    sim.state.lock().open_session("cs-1");
    sim.state.lock().lose.push("complete".into());
    let (st, o) = order_with(&c, &s, "O-1", 1, "20.00", "amazonpay", session("cs-1"));
    expect_payment(st, &o, 201, "authorized");
    assert_eq!(
        sim.state.lock().charges_of("cs-1").len(),
        1,
        "the lost answer replayed, one charge"
    );
    let (st, o) = event(&c, &s, "O-1", "shipped");
    expect_payment(st, &o, 200, "captured");
    deliver_and_return_one(&c, &s, "O-1", "20.00");
    let charge = &sim.state.lock().charges_of("cs-1")[0];
    assert_eq!(
        (charge.amount, charge.captured, charge.refunded),
        (2000, 2000, 2000)
    );

    // Cancelled: the charge canceled.
    sim.state.lock().open_session("cs-2");
    let (st, _) = order_with(&c, &s, "O-2", 1, "4.00", "amazonpay", session("cs-2"));
    assert_eq!(st, 201);
    let (st, o) = post(&c, &s, "/v1/orders/O-2/cancel", None);
    expect_payment(st, &o, 200, "voided");
    assert!(sim.state.lock().charges_of("cs-2")[0].canceled);

    // Declined: 402, nothing held; no session named: 422 before anything.
    sim.state.lock().open_session("cs-3");
    let before = stock(&c, &s, "DC1", "A");
    let (st, v) = order_with(&c, &s, "O-3", 1, "10.51", "amazonpay", session("cs-3"));
    expect_problem(st, &v, 402, "payment_declined");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("HardDeclined"),
        "{v}"
    );
    assert_eq!(stock(&c, &s, "DC1", "A"), before);
    assert_eq!(sim.state.lock().forged, 0, "every request signed");
}

#[test]
fn amazon_pay_refuses_requests_signed_with_another_key() {
    let _ours = merchant_key("HOLDFAST_T_AMAZONPAY_OTHER");
    let theirs = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
        .expect("key")
        .to_public_key();
    let sim = AmazonPaySim::start("SANDBOX-AHQX", theirs);
    let s = Server::start(&amazonpay_config(&sim, "HOLDFAST_T_AMAZONPAY_OTHER"));
    let c = client();
    network(&c, &s);
    sim.state.lock().open_session("cs-1");
    let before = stock(&c, &s, "DC1", "A");
    let (st, v) = order_with(
        &c,
        &s,
        "O-1",
        1,
        "5.00",
        "amazonpay",
        json!({"checkoutSessionId": "cs-1"}),
    );
    assert_eq!(st, 409, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("InvalidRequestSignature"),
        "{v}"
    );
    assert_eq!(stock(&c, &s, "DC1", "A"), before, "nothing held");
    assert_eq!(sim.state.lock().forged, 1);
    assert!(sim.state.lock().charges.is_empty());
}

/// A request to the local Amazon Pay signed as holdfast signs them
/// (`AMZN-PAY-RSASSA-PSS-V2` under `key`), with `idempotency` as its
/// `x-amz-pay-idempotency-key` when given: the status and answer.
fn amazon_call(
    sim: &AmazonPaySim,
    key: &rsa::RsaPrivateKey,
    method: &str,
    path: &str,
    body: &Value,
    idempotency: Option<&str>,
) -> (u16, Value) {
    use base64::Engine as _;
    use holdfast::payments::amazonpay::{string_to_sign, ALGORITHM};
    use rsa::signature::{RandomizedSigner, SignatureEncoding};
    let body = body.to_string();
    let mut headers: Vec<(String, String)> = vec![
        ("accept".into(), "application/json".into()),
        ("content-type".into(), "application/json".into()),
        ("x-amz-pay-date".into(), "20261127T101010Z".into()),
        ("x-amz-pay-host".into(), "127.0.0.1".into()),
        ("x-amz-pay-region".into(), "eu".into()),
    ];
    if let Some(k) = idempotency {
        headers.push(("x-amz-pay-idempotency-key".into(), k.into()));
    }
    headers.sort();
    let signer = rsa::pss::BlindedSigningKey::<sha2::Sha256>::new(key.clone());
    let signature = signer.sign_with_rng(
        &mut rand::thread_rng(),
        string_to_sign(method, path, "", &headers, &body).as_bytes(),
    );
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let mut r = reqwest::blocking::Client::new()
        .request(
            method.parse().expect("method"),
            format!("{}{path}", sim.base_url()),
        )
        .header(
            "authorization",
            format!(
                "{ALGORITHM} PublicKeyId=SANDBOX-AHQX, SignedHeaders={}, Signature={}",
                signed.join(";"),
                base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
            ),
        )
        .body(body);
    for (k, v) in &headers {
        r = r.header(k.as_str(), v.as_str());
    }
    let r = r.send().expect("sent");
    let status = r.status().as_u16();
    (status, r.json().expect("json"))
}

/// The local Amazon Pay refuses what Amazon Pay refuses
/// (tests/specs/amazonpay_v2_signing.json), each signed request answered
/// 400 with Amazon's reason code and nothing done: an idempotency key
/// beyond 32 characters of a-z A-Z 0-9 - _ (`HF-AMZ-2001:authorize`, as
/// holdfast sent them), none on a capture, a body without the amount it
/// requires or with a field it does not know; the same requests right go
/// through.
#[test]
fn the_amazon_pay_simulator_refuses_what_amazon_pay_refuses() {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("key");
    let sim = AmazonPaySim::start("SANDBOX-AHQX", key.to_public_key());
    sim.state.lock().open_session("cs-1");
    let call = |method: &str, path: &str, body: Value, k: Option<&str>| {
        amazon_call(&sim, &key, method, path, &body, k)
    };
    let complete = "/sandbox/v2/checkoutSessions/cs-1/complete";
    let amount = json!({"amount": "20.00", "currencyCode": "EUR"});
    for (k, reason) in [
        ("HF-AMZ-2001:authorize", "InvalidHeaderValue"),
        ("HF-AMZ-2001~77c0db7be23b5217", "InvalidHeaderValue"),
        (&*"K".repeat(33), "InvalidHeaderValue"),
    ] {
        let (st, v) = call("POST", complete, json!({"chargeAmount": amount}), Some(k));
        assert_eq!(
            (st, v["reasonCode"].as_str()),
            (400, Some(reason)),
            "{k}: {v}"
        );
    }
    for (body, reason) in [
        (json!({}), "MissingParameterValue"),
        (
            json!({"chargeAmount": {"amount": "20.00"}}),
            "InvalidParameterValue",
        ),
        (
            json!({"chargeAmount": amount, "note": "x"}),
            "UnrecognizedField",
        ),
    ] {
        let (st, v) = call("POST", complete, body.clone(), Some("K-1"));
        assert_eq!(
            (st, v["reasonCode"].as_str()),
            (400, Some(reason)),
            "{body}: {v}"
        );
    }
    assert!(sim.state.lock().charges.is_empty(), "nothing charged");
    let (st, v) = call(
        "POST",
        complete,
        json!({"chargeAmount": amount}),
        Some("K-1"),
    );
    assert_eq!(st, 200, "{v}");
    let charge = v["chargeId"].as_str().expect("charge").to_string();
    let capture = format!("/sandbox/v2/charges/{charge}/capture");
    let (st, v) = call("POST", &capture, json!({"captureAmount": amount}), None);
    assert_eq!(
        (st, v["reasonCode"].as_str()),
        (400, Some("MissingHeader")),
        "{v}"
    );
    let (st, v) = call(
        "POST",
        &capture,
        json!({"captureAmount": amount}),
        Some("K-2"),
    );
    assert_eq!(
        (st, v["statusDetails"]["state"].as_str()),
        (200, Some("Captured")),
        "{v}"
    );
    // The key again for another request: Amazon's DuplicateIdempotencyKey.
    let (st, v) = call(
        "POST",
        &capture,
        json!({"captureAmount": {"amount": "1.00", "currencyCode": "EUR"}}),
        Some("K-2"),
    );
    assert_eq!(
        (st, v["reasonCode"].as_str()),
        (400, Some("DuplicateIdempotencyKey")),
        "{v}"
    );
    assert_eq!(sim.state.lock().forged, 0, "every request signed");
}

/// An order that names no provider gets the one the payment rules choose
/// for its channel and its destination's country, else the default; one
/// that names a provider keeps it.
#[test]
fn providers_are_chosen_by_channel_and_country() {
    let sim = GestpaySim::start("R0VTVFBBWQ==", "GESPAY65987");
    let cfg = format!(
        "[payments]\ndefault = \"sandbox\"\n\
         [[payments.rules]]\nchannel = \"callcenter\"\nprovider = \"sandbox\"\n\
         [[payments.rules]]\ncountry = \"IT\"\nprovider = \"gestpay\"\n{}",
        gestpay_config(&sim)
    );
    let s = Server::start(&cfg);
    let c = client();
    network(&c, &s);
    let place = |id: &str, channel: Option<&str>, country: &str, provider: Option<&str>| {
        let mut payment = json!({"method": {"creditcard": {"token": "4444xxxxxxxx4448"}}});
        if let Some(p) = provider {
            payment["provider"] = json!(p);
        }
        let mut body = json!({
            "id": id,
            "lines": [{"sku": "A", "qty": 1, "unit_price": "2.00"}],
            "delivery": {"type": "ship", "lat": 45.46, "lon": 9.19, "address": {
                "name": "N", "street": "S", "city": "C", "postal_code": "1", "country": country, "phone": "1"}},
            "payment": payment,
        });
        if let Some(ch) = channel {
            body["channel"] = json!(ch);
        }
        let (st, o) = post(&c, &s, "/v1/orders", Some(&body.to_string()));
        assert_eq!(st, 201, "{o}");
        o["payment"]["provider"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(place("O-1", Some("web"), "IT", None), "gestpay");
    assert_eq!(place("O-2", Some("web"), "ES", None), "sandbox");
    assert_eq!(place("O-3", Some("callcenter"), "IT", None), "sandbox");
    assert_eq!(place("O-4", None, "ES", Some("gestpay")), "gestpay");
    assert_eq!(sim.state.lock().payments_of("O-1:authorize").len(), 1);
    assert_eq!(sim.state.lock().payments_of("O-4:authorize").len(), 1);
    assert!(sim.state.lock().payments_of("O-3:authorize").is_empty());
}

/// A Scalapay checkout for `reference` of `amount`: its token.
fn scalapay_checkout(c: &Client, s: &Server, reference: &str, amount: &str) -> String {
    let body = json!({
        "reference": reference, "amount": amount,
        "consumer": {"given_names": "Giulia", "surname": "Rossi", "email": "giulia@example.com"},
        "redirect": {"confirm_url": "https://shop.example/ok", "cancel_url": "https://shop.example/ko"},
    });
    let (st, v) = post(
        c,
        s,
        "/v1/payments/scalapay/checkouts",
        Some(&body.to_string()),
    );
    assert_eq!(st, 201, "{v}");
    assert!(
        v["checkout_url"]
            .as_str()
            .unwrap_or("")
            .contains("/checkout/"),
        "{v}"
    );
    v["token"].as_str().unwrap_or_default().to_string()
}

#[test]
fn an_order_is_paid_in_3_at_scalapay() {
    let sim = ScalapaySim::start("qhtfs87hjnc12kkos");
    std::env::set_var("HOLDFAST_T_SCALAPAY_KEY", "qhtfs87hjnc12kkos");
    let s = Server::start(&format!(
        "[payments.scalapay]\nbase_url = \"{}\"\napi_key_env = \"HOLDFAST_T_SCALAPAY_KEY\"\n",
        sim.base_url()
    ));
    let c = client();
    network(&c, &s);
    let pay = |token: &str| json!({"token": token});

    // Approved by the shopper, placed: charged at once; shipping moves no
    // money; a return is refunded.
    let t1 = scalapay_checkout(&c, &s, "O-1", "20.00");
    sim.state.lock().approve(&t1);
    let (st, o) = order_with(&c, &s, "O-1", 2, "10.00", "scalapay", pay(&t1));
    expect_payment(st, &o, 201, "authorized");
    assert_eq!(sim.state.lock().orders[&t1].status, "charged");
    let calls = sim.state.lock().calls.len();
    let (st, o) = event(&c, &s, "O-1", "shipped");
    expect_payment(st, &o, 200, "captured");
    assert_eq!(
        sim.state.lock().calls.len(),
        calls,
        "nothing sent when it ships"
    );
    deliver_and_return_one(&c, &s, "O-1", "10.00");
    assert_eq!(sim.state.lock().orders[&t1].refunded, 1000);

    // Cancelled: the whole amount refunded.
    let t2 = scalapay_checkout(&c, &s, "O-2", "10.00");
    sim.state.lock().approve(&t2);
    let (st, _) = order_with(&c, &s, "O-2", 1, "10.00", "scalapay", pay(&t2));
    assert_eq!(st, 201);
    let (st, o) = post(&c, &s, "/v1/orders/O-2/cancel", None);
    expect_payment(st, &o, 200, "voided");
    assert_eq!(sim.state.lock().orders[&t2].refunded, 1000);

    // Approved for another amount: refunded at once, the order refused,
    // nothing held.
    let before = stock(&c, &s, "DC1", "A");
    let t3 = scalapay_checkout(&c, &s, "O-3", "30.00");
    sim.state.lock().approve(&t3);
    let (st, v) = order_with(&c, &s, "O-3", 1, "10.00", "scalapay", pay(&t3));
    assert_eq!(st, 409, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("approved for 30.00"),
        "{v}"
    );
    assert_eq!(sim.state.lock().orders[&t3].refunded, 3000);
    // Declined by Scalapay: 402; never approved: refused; nothing held.
    let t4 = scalapay_checkout(&c, &s, "O-4", "10.51");
    sim.state.lock().approve(&t4);
    let (st, v) = order_with(&c, &s, "O-4", 1, "10.51", "scalapay", pay(&t4));
    expect_problem(st, &v, 402, "payment_declined");
    let t5 = scalapay_checkout(&c, &s, "O-5", "10.00");
    let (st, v) = order_with(&c, &s, "O-5", 1, "10.00", "scalapay", pay(&t5));
    assert_eq!(st, 409, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or("")
            .contains("PAYMENT_NOT_APPROVED"),
        "{v}"
    );
    assert_eq!(stock(&c, &s, "DC1", "A"), before);

    // A checkout without its consumer: 422, nothing sent.
    let calls = sim.state.lock().calls.len();
    let (st, v) = post(
        &c,
        &s,
        "/v1/payments/scalapay/checkouts",
        Some(&json!({"reference": "O-6", "amount": "5.00", "redirect": {"confirm_url": "https://a", "cancel_url": "https://b"}}).to_string()),
    );
    expect_problem(st, &v, 422, "validation_failed");
    assert_eq!(sim.state.lock().calls.len(), calls);
}

/// Adyen down when the goods leave: the shipment moves anyway, its
/// capture owed (returns wait for it); Adyen back, the capture is made
/// once, by itself.
#[test]
fn a_capture_while_adyen_is_down_is_made_when_it_is_back() {
    let sim = AdyenSim::start(KEY, MERCHANT);
    let cfg = format!("[payments]\nretry_every_s = 1\n{}", config(&sim, "OWED"));
    let s = Server::start(&cfg);
    let c = client();
    network(&c, &s);
    let (st, o) = order(&c, &s, "O-1", 2, "10.00");
    expect_payment(st, &o, 201, "authorized");

    sim.state.lock().down = true;
    let (st, o) = event(&c, &s, "O-1", "shipped");
    expect_payment(st, &o, 200, "authorized");
    assert_eq!(
        (
            o["shipments"][0]["status"].as_str(),
            &o["payment"]["capture_pending"]
        ),
        (Some("shipped"), &Value::Bool(true)),
        "{o}"
    );
    let (st, _) = event(&c, &s, "O-1", "delivered");
    assert_eq!(st, 200);
    let ret = json!({"lines": [{"sku": "A", "qty": 1}], "location": "DC1"}).to_string();
    let (st, v) = post(&c, &s, "/v1/orders/O-1/returns", Some(&ret));
    expect_problem(st, &v, 409, "invalid_transition");
    assert!(
        v["detail"].as_str().unwrap_or("").contains("capture"),
        "{v}"
    );

    sim.state.lock().down = false;
    let o = wait_captured(&c, &s, "O-1");
    assert_eq!(o["payment"]["capture_pending"], false, "{o}");
    assert_eq!(
        sim.state.lock().payments_of("O-1")[0].captured,
        2000,
        "captured once"
    );
    let (st, o) = post(&c, &s, "/v1/orders/O-1/returns", Some(&ret));
    assert_eq!(
        (st, o["payment"]["refunded"].as_str()),
        (200, Some("10.00")),
        "{o}"
    );
}

/// An order id, its provider, its payment.method, and how to take the
/// provider down (true) or bring it back.
type DownCase<'a> = (&'a str, &'a str, Value, &'a dyn Fn(bool));

/// Each provider down: the order answers 503 with nothing held and
/// nothing charged; back, the same order goes through, charged once.
#[test]
fn gestpay_amazon_pay_and_scalapay_down_then_back() {
    let gestpay = GestpaySim::start("R0VTVFBBWQ==", "GESPAY65987");
    let public = merchant_key("HOLDFAST_T_AMAZONPAY_DOWN");
    let amazon = AmazonPaySim::start("SANDBOX-AHQX", public);
    let scalapay = ScalapaySim::start("qhtfs87hjnc12kkos");
    std::env::set_var("HOLDFAST_T_SCALAPAY_KEY", "qhtfs87hjnc12kkos");
    let s = Server::start(&format!(
        "{}{}[payments.scalapay]\nbase_url = \"{}\"\napi_key_env = \"HOLDFAST_T_SCALAPAY_KEY\"\n\
         [payments.scalapay.calls]\ntimeout_ms = 2000\nretries = 1\nbackoff_ms = 10\ncircuit_trip = 100\ncircuit_open_s = 1\n",
        gestpay_config(&gestpay),
        amazonpay_config(&amazon, "HOLDFAST_T_AMAZONPAY_DOWN"),
        scalapay.base_url()
    ));
    let c = client();
    network(&c, &s);
    amazon.state.lock().open_session("cs-1");
    let token = scalapay_checkout(&c, &s, "O-3", "4.00");
    scalapay.state.lock().approve(&token);
    let cases: [DownCase; 3] = [
        (
            "O-1",
            "gestpay",
            json!({"creditcard": {"token": "4444xxxxxxxx4448"}}),
            &|d| gestpay.state.lock().down = d,
        ),
        (
            "O-2",
            "amazonpay",
            json!({"checkoutSessionId": "cs-1"}),
            &|d| amazon.state.lock().down = d,
        ),
        ("O-3", "scalapay", json!({"token": token}), &|d| {
            scalapay.state.lock().down = d
        }),
    ];
    for (id, provider, method, down) in cases {
        down(true);
        let before = stock(&c, &s, "DC1", "A");
        let (st, v) = order_with(&c, &s, id, 1, "4.00", provider, method.clone());
        expect_problem(st, &v, 503, "unavailable");
        assert_eq!(
            stock(&c, &s, "DC1", "A"),
            before,
            "{provider}: nothing held"
        );
        down(false);
        let (st, o) = order_with(&c, &s, id, 1, "4.00", provider, method);
        expect_payment(st, &o, 201, "authorized");
    }
    assert_eq!(gestpay.state.lock().payments_of("O-1:authorize").len(), 1);
    assert_eq!(amazon.state.lock().charges_of("cs-1").len(), 1);
    assert_eq!(scalapay.state.lock().orders[&token].status, "charged");
}
