//! Shipments labelled and tracked at their carrier (a local FedEx, DHL,
//! Correos and TNT speaking their APIs, tests/common/), through
//! the order API of the real binary: packing labels a delivery at the
//! carrier its channel's and country's rule names (the label printable, kept across a
//! kill -9), packing again makes no second label, tracking moves the
//! shipment to shipped (the payment captured) and delivered; a carrier
//! down makes packing wait (503) until it is back, then labels once; a
//! cancelled order's label is cancelled; an order without an address is
//! handled by hand.

mod common;

use common::correos::CorreosSim;
use common::dhl::DhlSim;
use common::dhl_express::DhlExpressSim;
use common::fedex::FedexSim;
use common::tnt::TntSim;
use common::{client, get, post, put_ok, Server};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// FedEx by default, DHL for Germany (TNT for the app's orders there),
/// Correos for Portugal, TNT for France, DHL Express for Switzerland.
fn config(
    fedex: &FedexSim,
    dhl: &DhlSim,
    correos: &CorreosSim,
    tnt: &TntSim,
    express: &DhlExpressSim,
) -> String {
    std::env::set_var("HOLDFAST_T_ORDERS_DHLX_KEY", "apxKey");
    std::env::set_var("HOLDFAST_T_ORDERS_DHLX_SECRET", "s3cret");
    std::env::set_var("HOLDFAST_T_ORDERS_TNT_COMPANY", "HOLDFASTIT");
    std::env::set_var("HOLDFAST_T_ORDERS_TNT_PASSWORD", "pw");
    std::env::set_var("HOLDFAST_T_ORDERS_CORREOS_USER", "holdfast");
    std::env::set_var("HOLDFAST_T_ORDERS_CORREOS_PASSWORD", "s3cret");
    std::env::set_var("HOLDFAST_T_ORDERS_FEDEX_ID", "l7xx-client");
    std::env::set_var("HOLDFAST_T_ORDERS_FEDEX_SECRET", "s3cret");
    std::env::set_var("HOLDFAST_T_ORDERS_DHL_KEY", "dhl-key");
    std::env::set_var("HOLDFAST_T_ORDERS_DHL_USER", "user-valid");
    std::env::set_var("HOLDFAST_T_ORDERS_DHL_PASSWORD", "pw");
    format!(
        "[carriers]\ntrack_every_s = 1\ndefault = \"fedex\"\n\
         [[carriers.rules]]\nchannel = \"app\"\ncountry = \"DE\"\ncarrier = \"tnt\"\n\
         [[carriers.rules]]\ncountry = \"DE\"\ncarrier = \"dhl\"\n\
         [carriers.fedex]\nbase_url = \"{}\"\naccount_number = \"740561073\"\n\
         client_id_env = \"HOLDFAST_T_ORDERS_FEDEX_ID\"\nclient_secret_env = \"HOLDFAST_T_ORDERS_FEDEX_SECRET\"\n\
         [carriers.fedex.calls]\ntimeout_ms = 2000\nretries = 1\nbackoff_ms = 10\ncircuit_trip = 100\ncircuit_open_s = 1\n\
         [carriers.dhl]\nbase_url = \"{}\"\ntracking_url = \"{}\"\nbilling_number = \"33333333330102\"\n\
         api_key_env = \"HOLDFAST_T_ORDERS_DHL_KEY\"\nuser_env = \"HOLDFAST_T_ORDERS_DHL_USER\"\npassword_env = \"HOLDFAST_T_ORDERS_DHL_PASSWORD\"\n\
         [[carriers.rules]]\ncountry = \"PT\"\ncarrier = \"correos\"\n\
         [carriers.correos]\nbase_url = \"{}\"\ntracking_url = \"{}\"\nlabeller = \"XX1A\"\n\
         user_env = \"HOLDFAST_T_ORDERS_CORREOS_USER\"\npassword_env = \"HOLDFAST_T_ORDERS_CORREOS_PASSWORD\"\n\
         [[carriers.rules]]\ncountry = \"FR\"\ncarrier = \"tnt\"\n\
         [carriers.tnt]\nbase_url = \"{}\"\ntracking_url = \"{}\"\naccount = \"000123456\"\n\
         company_env = \"HOLDFAST_T_ORDERS_TNT_COMPANY\"\npassword_env = \"HOLDFAST_T_ORDERS_TNT_PASSWORD\"\n\
         [[carriers.rules]]\ncountry = \"CH\"\ncarrier = \"dhl_express\"\n\
         [carriers.dhl_express]\nbase_url = \"{}\"\naccount_number = \"123456789\"\n\
         api_key_env = \"HOLDFAST_T_ORDERS_DHLX_KEY\"\napi_secret_env = \"HOLDFAST_T_ORDERS_DHLX_SECRET\"\n",
        fedex.base_url(),
        dhl.base_url(),
        dhl.tracking_url(),
        correos.base_url(),
        correos.tracking_url(),
        tnt.base_url(),
        tnt.tracking_url(),
        express.base_url()
    )
}

fn address(name: &str, city: &str, country: &str) -> Value {
    json!({"name": name, "street": "Calle Mayor 5", "city": city, "postal_code": "28013", "country": country, "phone": "+34911234567"})
}

/// SKU `A` (500 g), 10 of them at `DC1` (Milano, with its address).
fn network(c: &Client, s: &Server) {
    put_ok(c, s, "/v1/skus/A", json!({"name": "A", "weight_g": 500}));
    put_ok(
        c,
        s,
        "/v1/locations/DC1",
        json!({"name": "DC1", "kind": "dc", "lat": 45.5, "lon": 9.2, "ship": true, "address": address("DC Milano", "Milano", "IT")}),
    );
    let (st, v) = post(
        c,
        s,
        "/v1/inventory/batch",
        Some(&json!({"items": [{"location": "DC1", "sku": "A", "on_hand": 20}]}).to_string()),
    );
    assert_eq!(st, 200, "{v}");
}

fn order(c: &Client, s: &Server, id: &str, to: Option<Value>) -> Value {
    order_on(c, s, id, to, Value::Null)
}

/// `order`, placed on `channel` (web, app...).
fn order_on(c: &Client, s: &Server, id: &str, to: Option<Value>, channel: Value) -> Value {
    let mut delivery = json!({"type": "ship", "lat": 40.42, "lon": -3.70});
    if let Some(a) = to {
        delivery["address"] = a;
    }
    let (st, o) = post(
        c,
        s,
        "/v1/orders",
        Some(&json!({"id": id, "lines": [{"sku": "A", "qty": 2, "unit_price": "10.00"}], "delivery": delivery, "payment": {"provider": "sandbox"}, "channel": channel}).to_string()),
    );
    assert_eq!(st, 201, "{o}");
    assert_eq!(o["channel"], channel, "{o}");
    o
}

fn event(c: &Client, s: &Server, id: &str, status: &str) -> (u16, Value) {
    post(
        c,
        s,
        &format!("/v1/orders/{id}/shipments/1/events"),
        Some(&json!({ "status": status }).to_string()),
    )
}

/// Packs order `id`'s first shipment: labelled at `carrier`; its tracking
/// number.
fn packed_at(c: &Client, s: &Server, id: &str, carrier: &str) -> String {
    let (st, o) = event(c, s, id, "packed");
    let parcel = &o["shipments"][0]["parcel"];
    assert_eq!(
        (st, parcel["carrier"].as_str()),
        (200, Some(carrier)),
        "{o}"
    );
    parcel["tracking"].as_str().unwrap_or_default().to_string()
}

/// Waits until order `id`'s first shipment is `status`.
fn wait_status(c: &Client, s: &Server, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, o) = get(c, s, &format!("/v1/orders/{id}"));
        if o["shipments"][0]["status"] == status {
            return o;
        }
        assert!(Instant::now() < deadline, "never {status}: {o}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn packing_labels_and_tracking_moves_the_shipment() {
    let sim = FedexSim::start("l7xx-client", "s3cret", "740561073");
    let dhl = DhlSim::start("dhl-key", "user-valid", "pw", "33333333330102");
    let correos = CorreosSim::start("holdfast", "s3cret", "XX1A");
    let tnt = TntSim::start("HOLDFASTIT", "pw", "000123456");
    let express = DhlExpressSim::start("apxKey", "s3cret", "123456789");
    let cfg = config(&sim, &dhl, &correos, &tnt, &express);
    let mut s = Server::start(&cfg);
    let c = client();
    network(&c, &s);

    order(&c, &s, "O-1", Some(address("Ana Ruiz", "Madrid", "ES")));
    let (st, o) = event(&c, &s, "O-1", "packed");
    assert_eq!(st, 200, "{o}");
    let parcel = o["shipments"][0]["parcel"].clone();
    assert_eq!(parcel["carrier"], "fedex", "{o}");
    let tracking = parcel["tracking"].as_str().unwrap_or_default().to_string();
    {
        let st = sim.state.lock();
        let p = &st.parcels[&tracking];
        assert_eq!(
            (p.reference.as_str(), p.to_country.as_str()),
            ("O-1/1", "ES")
        );
        let (_, body) = st
            .calls
            .iter()
            .find(|(c, _)| c == "POST /ship/v1/shipments")
            .expect("shipped");
        let rs = &body["requestedShipment"];
        assert_eq!(rs["shipper"]["address"]["city"], "Milano", "{body}");
        assert_eq!(rs["recipients"][0]["contact"]["personName"], "Ana Ruiz");
        assert_eq!(
            rs["requestedPackageLineItems"][0]["weight"]["value"], 1.0,
            "2 x 500 g"
        );
    }
    // Packed again (a retry): the same label, none made again.
    let (st, o) = event(&c, &s, "O-1", "packed");
    assert_eq!((st, &o["shipments"][0]["parcel"]), (200, &parcel), "{o}");
    assert_eq!(sim.state.lock().parcels.len(), 1);

    // The label, printable, survives a kill -9.
    s.kill_and_restart(&cfg);
    let r = c
        .get(s.url(parcel["label"].as_str().unwrap_or("/")))
        .send()
        .expect("label");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/pdf")
    );
    assert!(r.bytes().expect("bytes").starts_with(b"%PDF"));

    // Picked up by FedEx: shipped, the payment captured; delivered.
    sim.state.lock().set_status(&tracking, "PU");
    let o = wait_status(&c, &s, "O-1", "shipped");
    assert_eq!(o["payment"]["state"], "captured", "{o}");
    sim.state.lock().set_status(&tracking, "DL");
    let o = wait_status(&c, &s, "O-1", "delivered");
    assert_eq!(o["status"], "delivered", "{o}");

    // Cancelled after packing: its label is cancelled at FedEx.
    order(&c, &s, "O-2", Some(address("Luis Gil", "Sevilla", "ES")));
    let (_, o) = event(&c, &s, "O-2", "packed");
    let t2 = o["shipments"][0]["parcel"]["tracking"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (st, o) = post(&c, &s, "/v1/orders/O-2/cancel", None);
    assert_eq!(st, 200, "{o}");
    assert!(sim.state.lock().parcels[&t2].cancelled);

    // To Germany: DHL, by the country's rule; from the app, TNT, by the
    // rule of the app's orders to Germany before it.
    let berlin = || Some(address("Jonas Weber", "Berlin", "DE"));
    order_on(&c, &s, "O-5A", berlin(), json!("app"));
    packed_at(&c, &s, "O-5A", "tnt");
    order_on(&c, &s, "O-5", berlin(), json!("web"));
    let t5 = packed_at(&c, &s, "O-5", "dhl");
    assert_eq!(dhl.state.lock().parcels[&t5].to_country, "DEU");
    dhl.state
        .lock()
        .parcels
        .get_mut(&t5)
        .expect("parcel")
        .status = "delivered".into();
    let o = wait_status(&c, &s, "O-5", "delivered");
    assert_eq!(o["payment"]["state"], "captured", "{o}");

    // To Portugal: Correos; admitted there: shipped.
    order(&c, &s, "O-6", Some(address("Rui Costa", "Porto", "PT")));
    let t6 = packed_at(&c, &s, "O-6", "correos");
    let at_correos = |status: &str| {
        correos
            .state
            .lock()
            .parcels
            .get_mut(&t6)
            .expect("parcel")
            .status = status.into();
    };
    at_correos("Admitido");
    wait_status(&c, &s, "O-6", "shipped");
    at_correos("Entregado");
    wait_status(&c, &s, "O-6", "delivered");

    // To France: TNT, its label the XML TNT's style sheet renders; tracked
    // to delivered.
    order(&c, &s, "O-7", Some(address("Marie Dubois", "Lyon", "FR")));
    let t7 = packed_at(&c, &s, "O-7", "tnt");
    let r = c
        .get(s.url("/v1/orders/O-7/shipments/1/label"))
        .send()
        .expect("label");
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/xml")
    );
    assert!(r.text().expect("text").contains(&t7));
    tnt.state
        .lock()
        .parcels
        .get_mut(&t7)
        .expect("parcel")
        .status = "DEL".into();
    wait_status(&c, &s, "O-7", "delivered");

    // DHL down: packing waits (503, nothing labelled, the shipment as it
    // was); DHL back: packed, labelled once.
    order_on(&c, &s, "O-9", berlin(), json!("web"));
    dhl.state.lock().down = true;
    let (st, v) = event(&c, &s, "O-9", "packed");
    assert_eq!((st, v["code"].as_str()), (503, Some("unavailable")), "{v}");
    let (_, o) = get(&c, &s, "/v1/orders/O-9");
    let ship = &o["shipments"][0];
    assert!(
        ship["status"] != "packed" && ship["parcel"].is_null(),
        "{o}"
    );
    dhl.state.lock().down = false;
    let t9 = packed_at(&c, &s, "O-9", "dhl");
    let labels = |reference: &str| {
        let st = dhl.state.lock();
        st.parcels
            .values()
            .filter(|p| p.reference.starts_with(reference))
            .count()
    };
    assert_eq!(labels("O-9/1"), 1, "{t9}");

    // To Switzerland: DHL Express; picked up, then delivered.
    order(&c, &s, "O-8", Some(address("Lea Meier", "Zürich", "CH")));
    let t8 = packed_at(&c, &s, "O-8", "dhl_express");
    let checkpoints = |codes: &[&str]| {
        express
            .state
            .lock()
            .shipments
            .get_mut(&t8)
            .expect("shipment")
            .events = codes.iter().map(|c| c.to_string()).collect();
    };
    checkpoints(&["PU"]);
    wait_status(&c, &s, "O-8", "shipped");
    checkpoints(&["PU", "AF", "WC", "OK"]);
    wait_status(&c, &s, "O-8", "delivered");

    // No address: packed without a label (handled by hand).
    order(&c, &s, "O-3", None);
    let (st, o) = event(&c, &s, "O-3", "packed");
    assert_eq!(
        (st, &o["shipments"][0]["parcel"]),
        (200, &Value::Null),
        "{o}"
    );
    assert_eq!(sim.state.lock().parcels.len(), 2);
    let (st, v) = get(&c, &s, "/v1/orders/O-3/shipments/1/label");
    assert_eq!((st, v["code"].as_str()), (404, Some("not_found")), "{v}");

    // An address a label cannot take is refused when the order is placed.
    let (st, v) = post(
        &c,
        &s,
        "/v1/orders",
        Some(&json!({"id": "O-4", "lines": [{"sku": "A", "qty": 1, "unit_price": "1.00"}],
            "delivery": {"type": "ship", "lat": 40.0, "lon": -3.0, "address": {"name": "x", "street": "y", "city": "z", "postal_code": "1", "country": "Spain", "phone": "1"}},
            "payment": {"provider": "sandbox"}}).to_string()),
    );
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("validation_failed")),
        "{v}"
    );
    assert!(v.to_string().contains("delivery.address.country"), "{v}");
}
