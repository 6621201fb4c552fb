//! The carrier adapters against local carriers speaking their APIs
//! (tests/common/fedex.rs, dhl.rs, dhl_express.rs, correos.rs, tnt.rs): a label (tracking number and PDF) for
//! a parcel, tracking mapped to places, cancelling a label not picked up,
//! refusals (bad credentials, a bad address), the carrier down; FedEx's
//! OAuth tokens fetched once and again after a 401.

mod common;

use common::correos::CorreosSim;
use common::dhl::DhlSim;
use common::dhl_express::DhlExpressSim;
use common::fedex::FedexSim;
use common::tnt::TntSim;
use holdfast::carriers::correos::{Correos, CorreosConfig};
use holdfast::carriers::dhl::{Dhl, DhlConfig};
use holdfast::carriers::dhl_express::{DhlExpress, DhlExpressConfig};
use holdfast::carriers::fedex::{Fedex, FedexConfig};
use holdfast::carriers::tnt::{Tnt, TntConfig};
use holdfast::carriers::{Carrier, CarrierError, Label, LabelRequest, Tracked};
use holdfast::domain::address::Address;
use holdfast::wire::Policy;
use serde_json::{json, Value};
use std::time::Duration;

fn policy() -> Policy {
    Policy {
        timeout: Duration::from_secs(2),
        retries: 1,
        backoff: Duration::from_millis(10),
        trip: 100,
        open_for: Duration::from_secs(1),
    }
}

fn fedex(sim: &FedexSim, secret: &str) -> Fedex {
    Fedex::new(FedexConfig {
        base_url: sim.base_url(),
        account_number: "740561073".into(),
        client_id: "l7xx-client".into(),
        client_secret: secret.into(),
        service_type: "FEDEX_INTERNATIONAL_PRIORITY".into(),
        policy: policy(),
    })
    .expect("adapter")
}

/// A dedicated user group profile (not DHL's standard one): what the
/// adapter is configured with is what it sends.
const PROFILE: &str = "HOLDFAST_VERSAND";

fn dhl(sim: &DhlSim, password: &str) -> Dhl {
    Dhl::new(DhlConfig {
        base_url: sim.base_url(),
        tracking_url: sim.tracking_url(),
        api_key: "dhl-key".into(),
        user: "user-valid".into(),
        password: password.into(),
        billing_number: "33333333330102".into(),
        product: "V01PAK".into(),
        profile: PROFILE.into(),
        policy: policy(),
    })
    .expect("adapter")
}

fn address(name: &str, city: &str, country: &str) -> Address {
    Address {
        name: name.into(),
        street: "Via Roma 1".into(),
        city: city.into(),
        postal_code: "20121".into(),
        country: country.into(),
        phone: "+39021234567".into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn parcel(reference: &str) -> LabelRequest {
    LabelRequest {
        reference: reference.into(),
        from: address("DC Milano", "Milano", "IT"),
        to: address("Ana Ruiz", "Madrid", "ES"),
        weight_g: 1200,
    }
}

/// What every carrier does, against its simulator: three labels (PDF),
/// the first two tracked in transit and delivered (a number it does not
/// know left out), the third cancelled, the first (on its way) not.
/// `set(tracking, place)` moves a parcel in the simulator (in the
/// carrier's own codes); `cancelled(tracking)` reads it back.
async fn labels_track_and_cancel(
    k: &dyn Carrier,
    set: &dyn Fn(&str, Tracked),
    cancelled: &dyn Fn(&str) -> bool,
    unknown: &str,
) -> [Label; 3] {
    let a = k.create_label(&parcel("O-1/1")).await.expect("label");
    assert!(a.data.starts_with(b"%PDF"), "a PDF label: {a:?}");
    assert_eq!(a.format, "PDF");
    let b = k.create_label(&parcel("O-2/1")).await.expect("label");
    let c = k.create_label(&parcel("O-3/1")).await.expect("label");
    set(&a.tracking, Tracked::InTransit);
    set(&b.tracking, Tracked::Delivered);
    let asked = vec![a.tracking.clone(), b.tracking.clone(), unknown.to_string()];
    let got = tracked_sorted(k, &asked).await;
    let mut want = vec![
        (a.tracking.clone(), Tracked::InTransit),
        (b.tracking.clone(), Tracked::Delivered),
    ];
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(got, want);
    k.cancel(&c.tracking).await.expect("cancelled");
    assert!(cancelled(&c.tracking));
    assert!(matches!(
        k.cancel(&a.tracking).await,
        Err(CarrierError::Rejected(_))
    ));
    [a, b, c]
}

#[test]
fn labels_tracking_and_cancels_at_fedex() {
    let sim = FedexSim::start("l7xx-client", "s3cret", "740561073");
    let f = fedex(&sim, "s3cret");
    let rt = runtime();
    rt.block_on(async {
        let set = |t: &str, place: Tracked| {
            let code = if place == Tracked::Delivered {
                "DL"
            } else {
                "IT"
            };
            sim.state.lock().set_status(t, code);
        };
        let cancelled = |t: &str| sim.state.lock().parcels[t].cancelled;
        let [a, b, _] = labels_track_and_cancel(&f, &set, &cancelled, "000000000000").await;
        assert!(a.tracking.starts_with("7946"), "{a:?}");
        {
            let st = sim.state.lock();
            assert_eq!(st.tokens_issued, 1, "one token for every call");
            let p = &st.parcels[&a.tracking];
            assert_eq!(
                (p.reference.as_str(), p.to_country.as_str()),
                ("O-1/1", "ES")
            );
        }
        let asked = vec![a.tracking.clone(), b.tracking.clone()];

        // The token revoked (or expired early): a 401, a new token, the
        // call goes through.
        sim.state.lock().tokens.clear();
        f.track(&asked).await.expect("tracked after a new token");
        assert_eq!(sim.state.lock().tokens_issued, 2);

        // A recipient without a city: refused, with FedEx's code.
        let mut bad = parcel("O-4/1");
        bad.to.city.clear();
        expect_refused(f.create_label(&bad).await, "INVALID.INPUT");

        // FedEx down: unavailable (try later), nothing made.
        sim.state.lock().down = true;
        let before = sim.state.lock().parcels.len();
        assert!(matches!(
            f.track(&asked).await,
            Err(CarrierError::Unavailable(_))
        ));
        sim.state.lock().tokens.clear();
        assert!(matches!(
            f.create_label(&parcel("O-5/1")).await,
            Err(CarrierError::Unavailable(_))
        ));
        assert_eq!(sim.state.lock().parcels.len(), before);
    });
    // Wrong credentials: refused at the token.
    let wrong = fedex(&sim, "nope");
    sim.state.lock().down = false;
    let r = rt.block_on(wrong.create_label(&parcel("O-6/1")));
    expect_refused(r, "NOT.AUTHORIZED")
}

/// The local FedEx refuses what FedEx's Ship and Track APIs refuse
/// (tests/specs/fedex_ship_track_v1.json): the spec's own intra-EU sample
/// is labelled, and the same without `requestedShipment.totalWeight` (what
/// holdfast sent), or without any other field required at any depth, or
/// with one of the wrong type, is 400 `INVALID.INPUT.EXCEPTION` naming
/// the field, nothing made; a cancel or a track missing what they require
/// too.
#[test]
fn the_fedex_simulator_refuses_what_fedex_refuses() {
    let sim = FedexSim::start("l7xx-client", "s3cret", "XXXXX2888");
    let c = reqwest::blocking::Client::new();
    let token = c
        .post(format!("{}/oauth/token", sim.base_url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "l7xx-client"),
            ("client_secret", "s3cret"),
        ])
        .send()
        .expect("sent")
        .json::<Value>()
        .expect("json")["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    let send = |method: &str, path: &str, body: &Value| {
        let r = c
            .request(
                method.parse().expect("method"),
                format!("{}{path}", sim.base_url()),
            )
            .bearer_auth(&token)
            .json(body)
            .send()
            .expect("sent");
        let status = r.status().as_u16();
        (status, r.json::<Value>().expect("json"))
    };
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/specs/fedex_ship_track_v1.json"
        ))
        .expect("the spec"),
    )
    .expect("json");
    let sample = spec["sample_MinimumSamplePayload-Intra-EU"].clone();
    let refused = |what: &str, body: &Value| {
        let (st, v) = send("POST", "/ship/v1/shipments", body);
        assert_eq!(
            (st, v["errors"][0]["code"].as_str()),
            (400, Some("INVALID.INPUT.EXCEPTION")),
            "{what}: {v}"
        );
        let named = v["errors"].as_array().into_iter().flatten().any(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("{what}:"))
        });
        assert!(named, "{what}: {v}");
    };
    let without = |path: &[&str]| {
        let mut b = sample.clone();
        let (last, parents) = path.split_last().expect("a path");
        let mut at = &mut b;
        for p in parents {
            at = match p.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*p],
            };
        }
        at.as_object_mut().expect("an object").remove(*last);
        b
    };
    for path in [
        &["requestedShipment", "totalWeight"][..],
        &["requestedShipment", "labelSpecification"],
        &[
            "requestedShipment",
            "requestedPackageLineItems",
            "0",
            "weight",
        ],
        &[
            "requestedShipment",
            "recipients",
            "0",
            "contact",
            "phoneNumber",
        ],
        &["requestedShipment", "shipper", "address", "countryCode"],
        &["accountNumber", "value"],
        &["labelResponseOptions"],
    ] {
        refused(&path.join(".").replace(".0.", "[0]."), &without(path));
    }
    let mut wrong = sample.clone();
    wrong["requestedShipment"]["totalWeight"] = json!("heavy");
    refused("requestedShipment.totalWeight", &wrong);
    let mut wrong = sample.clone();
    wrong["requestedShipment"]["pickupType"] = json!("WHENEVER");
    refused("requestedShipment.pickupType", &wrong);
    assert!(sim.state.lock().parcels.is_empty(), "nothing made");
    let (st, v) = send("POST", "/ship/v1/shipments", &sample);
    assert_eq!(st, 200, "{v}");
    let tracking = v["output"]["transactionShipments"][0]["pieceResponses"][0]["trackingNumber"]
        .as_str()
        .expect("a tracking number")
        .to_string();

    let (st, v) = send(
        "PUT",
        "/ship/v1/shipments/cancel",
        &json!({"trackingNumber": tracking}),
    );
    assert_eq!(st, 400, "no accountNumber: {v}");
    let (st, v) = send(
        "POST",
        "/track/v1/trackingnumbers",
        &json!({"trackingInfo": [{"trackingNumberInfo": {"trackingNumber": tracking}}]}),
    );
    assert_eq!(st, 400, "no includeDetailedScans: {v}");
    assert!(!sim.state.lock().parcels[&tracking].cancelled);
}

#[test]
fn labels_tracking_and_cancels_at_dhl() {
    let sim = DhlSim::start(
        "dhl-key",
        "user-valid",
        "SandboxPasswort2023!",
        "33333333330102",
    );
    let d = dhl(&sim, "SandboxPasswort2023!");
    let rt = runtime();
    rt.block_on(async {
        let set = |t: &str, place: Tracked| {
            let code = if place == Tracked::Delivered {
                "delivered"
            } else {
                "transit"
            };
            sim.state.lock().parcels.get_mut(t).expect("parcel").status = code.into();
        };
        let cancelled = |t: &str| sim.state.lock().parcels[t].cancelled;
        let [a, _, c] = labels_track_and_cancel(&d, &set, &cancelled, "00340000000000000000").await;
        {
            // The configured profile with the label and with its cancel
            // (where DHL requires it).
            let st = sim.state.lock();
            let labelled = st.calls.iter().find(|(call, _)| call.starts_with("POST"));
            assert_eq!(labelled.map(|(_, b)| &b["profile"]), Some(&json!(PROFILE)));
            let cancel = format!(
                "DELETE /parcel/de/shipping/v2/orders?profile={PROFILE}&shipment={}",
                c.tracking
            );
            assert!(
                st.calls.iter().any(|(call, _)| *call == cancel),
                "{cancel} in {:?}",
                st.calls
            );
        }
        {
            let st = sim.state.lock();
            let p = &st.parcels[&a.tracking];
            // A short reference padded to DHL's 8 characters; countries
            // in alpha-3 on the wire.
            assert_eq!(
                (p.reference.as_str(), p.to_country.as_str()),
                ("O-1/1---", "ESP")
            );
        }

        // A recipient without a postal code: DHL's validation message.
        let mut bad = parcel("O-4/1");
        bad.to.postal_code.clear();
        expect_refused(d.create_label(&bad).await, "postalCode");
        // A country DHL's table does not know: refused before any call.
        let calls = sim.state.lock().calls.len();
        let mut far = parcel("O-5/1");
        far.to.country = "ZZ".into();
        assert!(matches!(
            d.create_label(&far).await,
            Err(CarrierError::Rejected(_))
        ));
        assert_eq!(sim.state.lock().calls.len(), calls);
        // DHL down: unavailable, nothing made.
        sim.state.lock().down = true;
        let before = sim.state.lock().parcels.len();
        assert!(matches!(
            d.create_label(&parcel("O-6/1")).await,
            Err(CarrierError::Unavailable(_))
        ));
        assert_eq!(sim.state.lock().parcels.len(), before);
    });
    sim.state.lock().down = false;
    let wrong = dhl(&sim, "nope");
    expect_refused(rt.block_on(wrong.create_label(&parcel("O-7/1"))), "401")
}

/// The local DHL refuses what DHL's Parcel DE Shipping API refuses
/// (tests/specs/dhl_parcel_de_v2.json): a cancel without its required
/// `profile` (what holdfast sent) is 400 with a validation message naming
/// it, nothing cancelled; the spec's own DHL Paket example is labelled,
/// and the same without its profile or its weight, with a consignee's
/// country in alpha-2, or asking for an unknown document format, is 400
/// naming the property.
#[test]
fn the_dhl_simulator_refuses_what_dhl_refuses() {
    let sim = DhlSim::start("dhl-key", "user-valid", "pw", "33333333330102");
    let c = reqwest::blocking::Client::new();
    let send = |method: &str, query: &str, body: Option<&Value>| {
        let mut r = c
            .request(
                method.parse().expect("method"),
                format!("{}/orders?{query}", sim.base_url()),
            )
            .basic_auth("user-valid", Some("pw"))
            .header("dhl-api-key", "dhl-key");
        if let Some(b) = body {
            r = r.json(b);
        }
        let r = r.send().expect("sent");
        let status = r.status().as_u16();
        (status, r.json::<Value>().expect("json"))
    };
    let refused = |(st, v): (u16, Value), property: &str| {
        assert_eq!(
            (st, v["status"]["statusCode"].as_u64()),
            (400, Some(400)),
            "{property}: {v}"
        );
        let named = v["items"][0]["validationMessages"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["property"] == property);
        assert!(named, "{property}: {v}");
    };
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/specs/dhl_parcel_de_v2.json"
        ))
        .expect("the spec"),
    )
    .expect("json");
    let example = spec["example_DHLPaket"].clone();
    let mut no_profile = example.clone();
    no_profile
        .as_object_mut()
        .expect("object")
        .remove("profile");
    refused(send("POST", "docFormat=PDF", Some(&no_profile)), "profile");
    let mut no_weight = example.clone();
    no_weight["shipments"][0]["details"]
        .as_object_mut()
        .expect("object")
        .remove("weight");
    refused(
        send("POST", "docFormat=PDF", Some(&no_weight)),
        "shipments[0].details.weight",
    );
    let mut alpha2 = example.clone();
    alpha2["shipments"][0]["consignee"]["country"] = json!("DE");
    refused(
        send("POST", "docFormat=PDF", Some(&alpha2)),
        "shipments[0].consignee.country",
    );
    refused(send("POST", "docFormat=GIF", Some(&example)), "docFormat");
    assert!(sim.state.lock().parcels.is_empty(), "nothing labelled");
    let (st, v) = send("POST", "docFormat=PDF", Some(&example));
    assert_eq!(st, 200, "{v}");
    let number = v["items"][0]["shipmentNo"]
        .as_str()
        .expect("a shipment number")
        .to_string();

    refused(
        send("DELETE", &format!("shipment={number}"), None),
        "profile",
    );
    refused(
        send("DELETE", "profile=STANDARD_GRUPPENPROFIL", None),
        "shipment",
    );
    assert!(!sim.state.lock().parcels[&number].cancelled);
    let (st, v) = send(
        "DELETE",
        &format!("profile=STANDARD_GRUPPENPROFIL&shipment={number}"),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert!(sim.state.lock().parcels[&number].cancelled);
}

fn correos(sim: &CorreosSim, password: &str) -> Correos {
    Correos::new(CorreosConfig {
        base_url: sim.base_url(),
        tracking_url: sim.tracking_url(),
        user: "holdfast".into(),
        password: password.into(),
        labeller: "XX1A".into(),
        product: "S0132".into(),
        policy: policy(),
    })
    .expect("adapter")
}

#[test]
fn labels_tracking_and_cancels_at_correos() {
    let sim = CorreosSim::start("holdfast", "s3cret", "XX1A");
    let k = correos(&sim, "s3cret");
    let rt = runtime();
    rt.block_on(async {
        let set = |t: &str, place: Tracked| {
            let code = if place == Tracked::Delivered {
                "Entregado"
            } else {
                "En tránsito"
            };
            sim.state.lock().parcels.get_mut(t).expect("parcel").status = code.into();
        };
        let cancelled = |t: &str| sim.state.lock().parcels[t].cancelled;
        let [a, _, _] = labels_track_and_cancel(&k, &set, &cancelled, "PQ000").await;
        assert!(a.tracking.starts_with("PQ"), "{a:?}");
        {
            let st = sim.state.lock();
            let p = &st.parcels[&a.tracking];
            assert_eq!(
                (p.reference.as_str(), p.to_country.as_str()),
                ("O-1/1", "ES")
            );
        }
        // A name with XML in it goes through escaped; a recipient without
        // a city is refused with Correos' own words.
        let mut odd = parcel("O-4/1");
        odd.to.name = "Pérez & <Hijos>".into();
        k.create_label(&odd).await.expect("escaped");
        let mut bad = parcel("O-5/1");
        bad.to.city.clear();
        expect_refused(k.create_label(&bad).await, "Destinatario/Localidad")
    });
    let wrong = correos(&sim, "nope");
    expect_refused(
        rt.block_on(wrong.create_label(&parcel("O-6/1"))),
        "Unauthorized",
    )
}

fn tnt(sim: &TntSim, password: &str) -> Tnt {
    Tnt::new(TntConfig {
        base_url: sim.base_url(),
        tracking_url: sim.tracking_url(),
        company: "HOLDFASTIT".into(),
        password: password.into(),
        account: "000123456".into(),
        service: "15N".into(),
        policy: policy(),
    })
    .expect("adapter")
}

/// TNT's label is its XML (rendered by TNT's style sheet), and
/// ExpressConnect cancels nothing: a label not collected lapses.
#[test]
fn labels_and_tracking_at_tnt() {
    let sim = TntSim::start("HOLDFASTIT", "pw", "000123456");
    let t = tnt(&sim, "pw");
    let rt = runtime();
    rt.block_on(async {
        let a = t.create_label(&parcel("O-1/1")).await.expect("label");
        let b = t.create_label(&parcel("O-2/1")).await.expect("label");
        assert_eq!(a.format, "XML");
        let xml = String::from_utf8_lossy(&a.data).to_string();
        assert!(
            xml.contains("<labelResponse") && xml.contains(&a.tracking),
            "{xml}"
        );
        {
            let st = sim.state.lock();
            let p = &st.parcels[&a.tracking];
            assert_eq!(
                (p.reference.as_str(), p.to_country.as_str()),
                ("O-1/1", "ES")
            );
        }
        // Not collected yet: not in TNT's tracking (left out).
        assert!(t
            .track(std::slice::from_ref(&a.tracking))
            .await
            .expect("tracked")
            .is_empty());
        sim.state
            .lock()
            .parcels
            .get_mut(&a.tracking)
            .expect("a")
            .status = "INT".into();
        sim.state
            .lock()
            .parcels
            .get_mut(&b.tracking)
            .expect("b")
            .status = "DEL".into();
        let asked = vec![
            a.tracking.clone(),
            b.tracking.clone(),
            "GE000000000WW".into(),
        ];
        let got = tracked_sorted(&t, &asked).await;
        assert_eq!(
            got,
            vec![
                (a.tracking.clone(), Tracked::InTransit),
                (b.tracking.clone(), Tracked::Delivered)
            ]
        );
        assert!(matches!(
            t.cancel(&a.tracking).await,
            Err(CarrierError::Rejected(_))
        ));
        let mut bad = parcel("O-3/1");
        bad.to.city.clear();
        expect_refused(t.create_label(&bad).await, "RECEIVER CITY")
    });
    expect_refused(
        rt.block_on(tnt(&sim, "nope").create_label(&parcel("O-4/1"))),
        "Invalid login",
    )
}

fn dhl_express(sim: &DhlExpressSim, secret: &str) -> DhlExpress {
    DhlExpress::new(DhlExpressConfig {
        base_url: sim.base_url(),
        api_key: "apxKey".into(),
        api_secret: secret.into(),
        account_number: "123456789".into(),
        product_code: "P".into(),
        policy: policy(),
    })
    .expect("adapter")
}

/// DHL Express (MyDHL API): a PDF label per parcel, tracking by its
/// checkpoints (none yet: labelled; `PU`: on its way; `OK`: delivered; a
/// number it does not know left out); MyDHL API voids nothing, so a
/// cancel is refused; refusals (bad credentials, an address without a
/// city) and DHL down.
#[test]
fn labels_and_tracking_at_dhl_express() {
    let sim = DhlExpressSim::start("apxKey", "s3cret", "123456789");
    let k = dhl_express(&sim, "s3cret");
    let rt = runtime();
    rt.block_on(async {
        let a = k.create_label(&parcel("O-1/1")).await.expect("label");
        let b = k.create_label(&parcel("O-2/1")).await.expect("label");
        assert!(a.data.starts_with(b"%PDF"), "a PDF label: {a:?}");
        assert_eq!(a.format, "PDF");
        {
            let st = sim.state.lock();
            let s = &st.shipments[&a.tracking];
            assert_eq!(
                (s.reference.as_str(), s.to_country.as_str()),
                ("O-1/1", "ES")
            );
        }
        let pu = |t: &str, codes: &[&str]| {
            sim.state
                .lock()
                .shipments
                .get_mut(t)
                .expect("shipment")
                .events = codes.iter().map(|c| c.to_string()).collect();
        };
        let asked = vec![a.tracking.clone(), b.tracking.clone(), "9999999999".into()];
        let got = tracked_sorted(&k, &asked).await;
        assert_eq!(
            got,
            vec![
                (a.tracking.clone(), Tracked::Created),
                (b.tracking.clone(), Tracked::Created)
            ]
        );
        pu(&a.tracking, &["PU", "AF"]);
        pu(&b.tracking, &["PU", "AF", "WC", "OK"]);
        let got = tracked_sorted(&k, &asked).await;
        assert_eq!(
            got,
            vec![
                (a.tracking.clone(), Tracked::InTransit),
                (b.tracking.clone(), Tracked::Delivered)
            ]
        );
        assert!(matches!(
            k.cancel(&a.tracking).await,
            Err(CarrierError::Rejected(_))
        ));
        let mut bad = parcel("O-3/1");
        bad.to.city.clear();
        expect_refused(k.create_label(&bad).await, "cityName");
        sim.state.lock().down = true;
        assert!(matches!(
            k.create_label(&parcel("O-4/1")).await,
            Err(CarrierError::Unavailable(_))
        ));
        sim.state.lock().down = false;
    });
    expect_refused(
        rt.block_on(dhl_express(&sim, "nope").create_label(&parcel("O-5/1"))),
        "Unauthorized",
    )
}

/// The carriers' and providers' endpoints are HTTPS: the adapters speak
/// TLS (a client built without it refuses every https URL before sending
/// anything). Against a plain-HTTP port the TLS handshake is tried and
/// fails, reported as the carrier being unreachable, nothing sent.
#[test]
fn https_endpoints_are_spoken_to_over_tls() {
    let sim = DhlExpressSim::start("apxKey", "s3cret", "123456789");
    let k = DhlExpress::new(DhlExpressConfig {
        base_url: format!("https://127.0.0.1:{}/mydhlapi/test", sim.port),
        api_key: "apxKey".into(),
        api_secret: "s3cret".into(),
        account_number: "123456789".into(),
        product_code: "P".into(),
        policy: policy(),
    })
    .expect("adapter");
    match runtime().block_on(k.create_label(&parcel("O-1/1"))) {
        // rustls read the plain-HTTP answer as a TLS record.
        Err(CarrierError::Unavailable(m)) => assert!(m.contains("InvalidContentType"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(sim.state.lock().shipments.is_empty());
}

/// `k`'s tracking of `asked`, in tracking-number order.
async fn tracked_sorted(k: &dyn Carrier, asked: &[String]) -> Vec<(String, Tracked)> {
    let mut got = k.track(asked).await.expect("tracked");
    got.sort_by(|x, y| x.0.cmp(&y.0));
    got
}

/// A label the carrier refused, its reason naming `why`.
fn expect_refused(label: Result<Label, CarrierError>, why: &str) {
    match label {
        Err(CarrierError::Rejected(m)) => assert!(m.contains(why), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// An address at holdfast's own bounds (100 characters a field): what the
/// carrier's fields cannot take whole.
fn long_parcel(reference: &str) -> LabelRequest {
    let mut p = parcel(reference);
    p.to = Address {
        name:
            "Ana María de los Ángeles Ruiz-Fernández y Gómez de la Serna, Departamento de Compras"
                .into(),
        street:
            "Calle del Doctor Fourquet, número 14, escalera B, planta tercera, puerta izquierda"
                .into(),
        city: "San Sebastián de los Reyes (Comunidad de Madrid), Urbanización".into(),
        postal_code: "28703".into(),
        country: "ES".into(),
        phone: "+34 (91) 123 45 67 ext. 890".into(),
    };
    p
}

/// Fields longer than a carrier takes are fitted to its limits (a name or a
/// street continued in the next field it has, a city cut), never sent to
/// be refused: a label the carrier refuses leaves a paid order unshipped.
#[test]
fn long_addresses_fit_the_carriers_fields() {
    let rt = runtime();
    let dhl_sim = DhlSim::start(
        "dhl-key",
        "user-valid",
        "SandboxPasswort2023!",
        "33333333330102",
    );
    let d = dhl(&dhl_sim, "SandboxPasswort2023!");
    let fedex_sim = FedexSim::start("l7xx-client", "s3cret", "740561073");
    let f = fedex(&fedex_sim, "s3cret");
    rt.block_on(async {
        let label = d.create_label(&long_parcel("O-9/1")).await;
        assert!(label.is_ok(), "dhl: {label:?}");
        let label = f.create_label(&long_parcel("O-9/2")).await;
        assert!(label.is_ok(), "fedex: {label:?}");
    });
    // Nothing lost: the overflow went to the next field.
    let st = dhl_sim.state.lock();
    let (_, body) = st
        .calls
        .iter()
        .find(|(call, _)| call.starts_with("POST"))
        .expect("a label call");
    let to = &body["shipments"][0]["consignee"];
    let joined = format!(
        "{} {}",
        to["addressStreet"].as_str().unwrap_or(""),
        to["additionalAddressInformation1"].as_str().unwrap_or("")
    );
    assert_eq!(
        joined,
        "Calle del Doctor Fourquet, número 14, escalera B, planta tercera, puerta izquierda",
        "{to}"
    );
}
