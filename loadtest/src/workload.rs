//! The scenarios: what each simulated client asks next, and the ledger of
//! what the target acknowledged, which the end-of-run verification checks.
//!
//! - `checkout`: carts of 1-5 lines over N SKUs with Zipf popularity at L
//!   locations; each cart is reserved, then confirmed (70 %), released
//!   (20 %) or abandoned to expire (10 %); a confirmed cart is then fulfilled.
//! - `flash-sale`: one hot SKU with limited stock and many more buyers than
//!   units; every buyer who wins confirms.
//! - `mixed`: availability reads (60 %), store adjustments (10 %) and
//!   one-line reservations released at once (30 %).
//! - `store-day` (holdfast only): a store's day around checkout carts
//!   (50 %): availability reads (10 %), counts arriving late at the first
//!   location (8 %),
//!   transfers requested, shipped and received (10 %), supply announced
//!   and delivered in two parts (10 %), adjustments (12 %); every 8th SKU
//!   starts with 3 units and is sold ahead of its supply (backorders).
//!
//! Every arrival is one HTTP request: a session's follow-ups (confirm,
//! fulfil, release) take the next arrivals of the same connection.

use ahash::{AHashMap, AHashSet};
use bytes::Bytes;
use hyper::Method;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Checkout,
    FlashSale,
    Mixed,
    /// Orders through `/v1/orders` (holdfast only): placed (sourced by the
    /// engine, paid by its sandbox), then each shipment shipped and
    /// delivered (90 %) or the order cancelled (10 %).
    Orders,
    /// A store's day (holdfast only): see the module's text.
    StoreDay,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Checkout => "checkout",
            Scenario::FlashSale => "flash-sale",
            Scenario::Mixed => "mixed",
            Scenario::Orders => "orders",
            Scenario::StoreDay => "store-day",
        }
    }

    /// Whether only holdfast answers it (the rivals hold reservations only).
    pub fn holdfast_only(self) -> bool {
        matches!(self, Scenario::Orders | Scenario::StoreDay)
    }
}

/// The kinds of request, each with its own latency histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Reserve,
    Confirm,
    Release,
    Fulfil,
    Availability,
    Adjust,
    Order,
    ShipmentEvent,
    Cancel,
    Count,
    Transfer,
    Supply,
}

pub const OPS: [Op; 12] = [
    Op::Reserve,
    Op::Confirm,
    Op::Release,
    Op::Fulfil,
    Op::Availability,
    Op::Adjust,
    Op::Order,
    Op::ShipmentEvent,
    Op::Cancel,
    Op::Count,
    Op::Transfer,
    Op::Supply,
];

impl Op {
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn name(self) -> &'static str {
        match self {
            Op::Reserve => "reserve",
            Op::Confirm => "confirm",
            Op::Release => "release",
            Op::Fulfil => "fulfil",
            Op::Availability => "availability",
            Op::Adjust => "adjust",
            Op::Order => "order",
            Op::ShipmentEvent => "shipment_event",
            Op::Cancel => "cancel",
            Op::Count => "count",
            Op::Transfer => "transfer",
            Op::Supply => "supply",
        }
    }
}

/// The stock network a run sets up: SKUs `{prefix}A{i}` at locations
/// `{prefix}S{j}`. The prefix is new for every run, so a run against a
/// long-lived server (`--url`) never meets another run's records.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Network {
    pub prefix: String,
    pub skus: u32,
    pub locations: u32,
    pub on_hand: i64,
    /// Zipf exponent of SKU popularity.
    pub zipf_s: f64,
    /// Every this many SKUs one may be sold against incoming supply
    /// (`store-day`; 0: none).
    pub backorder_every: u32,
}

/// A backorder SKU's units on hand at the start: few, so that carts soon
/// sell against its supply.
pub const BACKORDER_ON_HAND: i64 = 3;

impl Network {
    pub fn for_scenario(scenario: Scenario, opts: &WorkloadOptions, prefix: String) -> Network {
        match scenario {
            Scenario::FlashSale => Network {
                prefix,
                skus: 1,
                locations: 1,
                on_hand: opts.hot_stock,
                zipf_s: 0.0,
                backorder_every: 0,
            },
            _ => Network {
                prefix,
                skus: opts.skus,
                locations: opts.locations,
                on_hand: opts.on_hand,
                zipf_s: opts.zipf_s,
                backorder_every: if scenario == Scenario::StoreDay { 8 } else { 0 },
            },
        }
    }
    /// Whether SKU `s` may be sold against its incoming supply.
    pub fn backorder(&self, s: u32) -> bool {
        self.backorder_every > 0 && s.is_multiple_of(self.backorder_every)
    }
    /// What SKU `s` has on hand at every location at the start.
    pub fn initial(&self, s: u32) -> i64 {
        if self.backorder(s) {
            BACKORDER_ON_HAND.min(self.on_hand)
        } else {
            self.on_hand
        }
    }
    pub fn sku(&self, i: u32) -> String {
        format!("{}A{i}", self.prefix)
    }
    pub fn location(&self, j: u32) -> String {
        format!("{}S{j:03}", self.prefix)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadOptions {
    pub skus: u32,
    pub locations: u32,
    pub on_hand: i64,
    pub zipf_s: f64,
    pub hot_stock: i64,
    /// TTL of carts that will be confirmed or released.
    pub ttl_s: u64,
    /// TTL of carts abandoned to expire (short, so the run can verify them).
    pub abandon_ttl_s: u64,
}

/// Zipf popularity over `0..n` by inverse CDF (binary search).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u32, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n.max(1))
            .map(|k| {
                acc += 1.0 / f64::from(k).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }
    pub fn sample(&self, rng: &mut SmallRng) -> u32 {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u32
    }
}

/// (sku index, location index, qty)
pub type LineRef = (u32, u32, i64);
type RecordKey = (u32, u32);

/// One request to send.
pub struct Req {
    pub op: Op,
    pub method: Method,
    pub path: String,
    pub body: Option<Bytes>,
    what: What,
}

enum What {
    NewCart { lines: Vec<LineRef>, fate: Fate },
    Follow(Follow),
    Read,
    Adjust { key: RecordKey, delta: i64 },
    NewOrder { skus: Vec<u32>, cancel: bool },
    OrderStep(OrderStep),
    Count { key: RecordKey },
    Chore(Chore),
}

/// A transfer's or a supply's next step (`store-day`).
#[derive(Clone)]
enum Chore {
    /// A transfer of `qty` of SKU `sku` from a location to another.
    Transfer {
        id: String,
        sku: u32,
        from: u32,
        to: u32,
        qty: i64,
        stage: TransferStage,
    },
    /// Supply of `qty` of `key` announced, then delivered in two parts.
    Supply {
        id: String,
        key: RecordKey,
        qty: i64,
        /// Units delivered so far; `None`: not announced yet.
        delivered: Option<i64>,
    },
}

impl Chore {
    /// The same transfer at its next stage.
    fn at(&self, next: TransferStage) -> Chore {
        let mut c = self.clone();
        if let Chore::Transfer { stage, .. } = &mut c {
            *stage = next;
        }
        c
    }

    /// The same supply with `units` delivered.
    fn delivered(&self, units: i64) -> Chore {
        let mut c = self.clone();
        if let Chore::Supply { delivered, .. } = &mut c {
            *delivered = Some(units);
        }
        c
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TransferStage {
    Request,
    Ship,
    /// This many arrived.
    Receive(i64),
}

/// The next step of a placed order.
#[derive(Clone)]
struct OrderStep {
    id: String,
    /// (shipment id, its lines) still to ship; the first is next.
    shipments: Vec<(u32, Vec<LineRef>)>,
    /// Shipped, now to deliver: (shipment id).
    deliver: Option<u32>,
    cancel: bool,
}

#[derive(Deserialize)]
struct PlacedOrder {
    id: String,
    shipments: Vec<PlacedShipment>,
}

#[derive(Deserialize)]
struct PlacedShipment {
    id: u32,
    location: String,
    lines: Vec<PlacedLine>,
}

#[derive(Deserialize)]
struct PlacedLine {
    sku: String,
    qty: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Confirm,
    Release,
    Abandon,
}

#[derive(Clone)]
struct Follow {
    op: Op,
    id: String,
    lines: Vec<LineRef>,
}

/// What the target acknowledged, per worker; merged at the end.
#[derive(Default)]
pub struct Ledger {
    /// Quantity fulfilled (acknowledged) per record.
    pub fulfilled: AHashMap<RecordKey, i64>,
    /// Sum of acknowledged adjustment deltas per record.
    pub adjusted: AHashMap<RecordKey, i64>,
    /// Quantity held or confirmed and not finished, per record (abandoned
    /// carts excluded: they expire); units sold against supply included.
    pub open: AHashMap<RecordKey, i64>,
    /// Units shipped by transfers to a record and not received; supply
    /// announced for it and not delivered (`store-day`).
    pub in_transit: AHashMap<RecordKey, i64>,
    pub incoming: AHashMap<RecordKey, i64>,
    /// Records a count set (their on_hand is the count plus what moved
    /// after it: the movement history is checked instead).
    pub counted: AHashSet<RecordKey>,
    /// Records a sale adjustment or a count took units from: on_hand may
    /// be below reserved there (units found missing), not an oversell.
    pub shrunk: AHashSet<RecordKey>,
    /// Fulfilments refused for units not arrived (409 backordered): the
    /// reservation stays confirmed.
    pub backorder_waits: u64,
    /// Records touched by a write whose outcome is unknown (no answer, 5xx):
    /// exact checks skip them.
    pub doubt: AHashSet<RecordKey>,
    /// Every record a write touched.
    pub touched: AHashSet<RecordKey>,
    /// Confirmed reservations and whether their fulfilment was acknowledged.
    pub confirmed: Vec<(String, bool)>,
    /// Units won on the hot SKU (flash sale).
    pub won: i64,
    pub carts_held: u64,
    pub carts_short: u64,
    /// Latest expiry of an abandoned cart.
    pub abandon_deadline: Option<Instant>,
    /// Answers no correct target gives (bounded list).
    pub unexpected: Vec<String>,
    pub unexpected_count: u64,
}

const UNEXPECTED_KEPT: usize = 20;

impl Ledger {
    fn add(map: &mut AHashMap<RecordKey, i64>, lines: &[LineRef], sign: i64) {
        for &(s, l, q) in lines {
            *map.entry((s, l)).or_default() += sign * q;
        }
    }
    fn doubt(&mut self, lines: &[LineRef]) {
        for &(s, l, _) in lines {
            self.doubt.insert((s, l));
        }
    }
    fn unexpected(&mut self, what: String) {
        self.unexpected_count += 1;
        if self.unexpected.len() < UNEXPECTED_KEPT {
            self.unexpected.push(what);
        }
    }
    pub fn merge(&mut self, o: Ledger) {
        for (k, v) in o.fulfilled {
            *self.fulfilled.entry(k).or_default() += v;
        }
        for (k, v) in o.adjusted {
            *self.adjusted.entry(k).or_default() += v;
        }
        for (k, v) in o.open {
            *self.open.entry(k).or_default() += v;
        }
        for (k, v) in o.in_transit {
            *self.in_transit.entry(k).or_default() += v;
        }
        for (k, v) in o.incoming {
            *self.incoming.entry(k).or_default() += v;
        }
        self.counted.extend(o.counted);
        self.shrunk.extend(o.shrunk);
        self.backorder_waits += o.backorder_waits;
        self.doubt.extend(o.doubt);
        self.touched.extend(o.touched);
        self.confirmed.extend(o.confirmed);
        self.won += o.won;
        self.carts_held += o.carts_held;
        self.carts_short += o.carts_short;
        self.abandon_deadline = self.abandon_deadline.max(o.abandon_deadline);
        self.unexpected_count += o.unexpected_count;
        for u in o.unexpected {
            if self.unexpected.len() < UNEXPECTED_KEPT {
                self.unexpected.push(u);
            }
        }
    }
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

/// One simulated client: its next request, and what it learns from answers.
pub struct Session {
    scenario: Scenario,
    net: Arc<Network>,
    zipf: Arc<Zipf>,
    opts: Arc<WorkloadOptions>,
    rng: SmallRng,
    follow: VecDeque<Follow>,
    steps: VecDeque<OrderStep>,
    chores: VecDeque<Chore>,
    /// This session's seed and order counter: order ids unique in the run.
    seed: u64,
    orders: u64,
    pub ledger: Ledger,
}

impl Session {
    pub fn new(
        scenario: Scenario,
        net: Arc<Network>,
        zipf: Arc<Zipf>,
        opts: Arc<WorkloadOptions>,
        seed: u64,
    ) -> Session {
        Session {
            scenario,
            net,
            zipf,
            opts,
            rng: SmallRng::seed_from_u64(seed),
            follow: VecDeque::new(),
            steps: VecDeque::new(),
            chores: VecDeque::new(),
            seed,
            orders: 0,
            ledger: Ledger::default(),
        }
    }

    /// The next request; when `stopping`, only follow-ups of carts already
    /// held (so the run ends with nothing half done), else `None`.
    pub fn next(&mut self, stopping: bool) -> Option<Req> {
        if let Some(f) = self.follow.pop_front() {
            return Some(self.follow_req(f));
        }
        if let Some(st) = self.steps.pop_front() {
            return Some(self.step_req(st));
        }
        if let Some(c) = self.chores.pop_front() {
            return Some(self.chore_req(c));
        }
        if stopping {
            return None;
        }
        Some(match self.scenario {
            Scenario::Checkout => self.new_cart(),
            Scenario::Orders => self.new_order(),
            Scenario::FlashSale => self.cart_req(vec![(0, 0, 1)], Fate::Confirm),
            Scenario::StoreDay => self.store_day(),
            Scenario::Mixed => {
                let roll = self.rng.gen_range(0..100);
                if roll < 60 {
                    self.availability_req()
                } else if roll < 70 {
                    self.adjust_req()
                } else {
                    let line = (
                        self.zipf.sample(&mut self.rng),
                        self.rng.gen_range(0..self.net.locations),
                        1,
                    );
                    self.cart_req(vec![line], Fate::Release)
                }
            }
        })
    }

    fn availability_req(&mut self) -> Req {
        let sku = self.net.sku(self.zipf.sample(&mut self.rng));
        Req {
            op: Op::Availability,
            method: Method::GET,
            path: format!("/v1/availability/{sku}"),
            body: None,
            what: What::Read,
        }
    }

    /// A store's adjustment: a receipt of 1-3 or a sale of 1.
    fn adjust_req(&mut self) -> Req {
        let key = self.record();
        let (delta, reason) = if self.rng.gen_bool(0.5) {
            (self.rng.gen_range(1..=3), "receipt")
        } else {
            (-1, "sale")
        };
        Req {
            op: Op::Adjust,
            method: Method::POST,
            path: format!("{}/adjustments", self.record_path(key)),
            body: Some(Bytes::from(format!(
                r#"{{"delta":{delta},"reason":"{reason}"}}"#
            ))),
            what: What::Adjust { key, delta },
        }
    }

    /// `/v1/inventory/{location}/{sku}` of a record.
    fn record_path(&self, key: RecordKey) -> String {
        format!(
            "/v1/inventory/{}/{}",
            self.net.location(key.1),
            self.net.sku(key.0)
        )
    }

    /// A record: a SKU by popularity at any location.
    fn record(&mut self) -> RecordKey {
        (
            self.zipf.sample(&mut self.rng),
            self.rng.gen_range(0..self.net.locations),
        )
    }

    /// The next new thing a store's day does (module text).
    fn store_day(&mut self) -> Req {
        let roll = self.rng.gen_range(0..100);
        if roll < 50 {
            return self.new_cart();
        }
        if roll < 60 {
            return self.availability_req();
        }
        if roll < 68 {
            return self.count_req();
        }
        self.orders += 1;
        let n = self.orders;
        let (seed, prefix) = (self.seed, self.net.prefix.clone());
        if roll < 78 && self.net.locations > 1 {
            let (sku, from) = self.record();
            let to = (from + self.rng.gen_range(1..self.net.locations)) % self.net.locations;
            let qty = self.rng.gen_range(1..=3);
            return self.chore_req(Chore::Transfer {
                id: format!("{prefix}T{seed:x}-{n}"),
                sku,
                from,
                to,
                qty,
                stage: TransferStage::Request,
            });
        }
        if roll < 88 {
            let key = self.record();
            let qty = self.rng.gen_range(4..=12);
            return self.chore_req(Chore::Supply {
                id: format!("{prefix}P{seed:x}-{n}"),
                key,
                qty,
                delivered: None,
            });
        }
        self.adjust_req()
    }

    /// A count taken up to 20 s before it arrives (`counted_at`), of
    /// about what the record started with; at the first location only,
    /// so the others' on_hand stays exactly checked.
    fn count_req(&mut self) -> Req {
        let key = (self.zipf.sample(&mut self.rng), 0);
        let on_hand = (self.net.initial(key.0) + self.rng.gen_range(-2..=2)).max(0);
        let ago = self.rng.gen_range(0..20_000);
        Req {
            op: Op::Count,
            method: Method::PUT,
            path: self.record_path(key),
            body: Some(Bytes::from(format!(
                r#"{{"on_hand":{on_hand},"counted_at":"{}"}}"#,
                rfc3339_from_now(-ago)
            ))),
            what: What::Count { key },
        }
    }

    fn chore_req(&self, c: Chore) -> Req {
        let line = |sku: u32, qty: i64| {
            format!(
                r#"{{"lines":[{{"sku":"{}","qty":{qty}}}]}}"#,
                self.net.sku(sku)
            )
        };
        let (op, (path, body)) = match &c {
            Chore::Transfer {
                id,
                sku,
                from,
                to,
                qty,
                stage,
            } => (
                Op::Transfer,
                match stage {
                    TransferStage::Request => (
                        "/v1/transfers".to_string(),
                        format!(
                            r#"{{"id":"{id}","from":"{}","to":"{}","lines":[{{"sku":"{}","qty":{qty}}}]}}"#,
                            self.net.location(*from),
                            self.net.location(*to),
                            self.net.sku(*sku)
                        ),
                    ),
                    TransferStage::Ship => (format!("/v1/transfers/{id}/ship"), "{}".to_string()),
                    TransferStage::Receive(got) => {
                        (format!("/v1/transfers/{id}/receive"), line(*sku, *got))
                    }
                },
            ),
            Chore::Supply {
                id,
                key,
                qty,
                delivered,
            } => (
                Op::Supply,
                match delivered {
                    None => (
                        "/v1/supply".to_string(),
                        format!(
                            r#"{{"id":"{id}","location":"{}","expected_at":"{}","lines":[{{"sku":"{}","qty":{qty}}}]}}"#,
                            self.net.location(key.1),
                            rfc3339_from_now(86_400_000),
                            self.net.sku(key.0)
                        ),
                    ),
                    // Half first, then the rest.
                    Some(d) => {
                        let part = if *d == 0 { qty / 2 } else { qty - d };
                        (format!("/v1/supply/{id}/receive"), line(key.0, part))
                    }
                },
            ),
        };
        Req {
            op,
            method: Method::POST,
            path,
            body: Some(Bytes::from(body)),
            what: What::Chore(c),
        }
    }

    fn new_cart(&mut self) -> Req {
        let n = self.rng.gen_range(1..=5usize).min(self.net.skus as usize);
        let loc = self.rng.gen_range(0..self.net.locations);
        let mut lines: Vec<LineRef> = Vec::with_capacity(n);
        // Distinct SKUs; Zipf makes repeats likely, so a bounded number of tries.
        for _ in 0..n * 8 {
            if lines.len() == n {
                break;
            }
            let s = self.zipf.sample(&mut self.rng);
            if !lines.iter().any(|l| l.0 == s) {
                lines.push((s, loc, self.rng.gen_range(1..=2)));
            }
        }
        let roll = self.rng.gen_range(0..100);
        let fate = if roll < 70 {
            Fate::Confirm
        } else if roll < 90 {
            Fate::Release
        } else {
            Fate::Abandon
        };
        self.cart_req(lines, fate)
    }

    /// An order of 1 to 3 distinct SKUs, one unit each, delivered to a
    /// point among the network's locations; the engine sources it.
    fn new_order(&mut self) -> Req {
        let n = self.rng.gen_range(1..=3usize).min(self.net.skus as usize);
        let mut skus: Vec<u32> = Vec::with_capacity(n);
        for _ in 0..n * 8 {
            if skus.len() == n {
                break;
            }
            let s = self.zipf.sample(&mut self.rng);
            if !skus.contains(&s) {
                skus.push(s);
            }
        }
        self.orders += 1;
        let id = format!("{}O{:x}-{}", self.net.prefix, self.seed, self.orders);
        let lines: Vec<String> = skus
            .iter()
            .map(|&s| {
                format!(
                    r#"{{"sku":"{}","qty":1,"unit_price":"9.90"}}"#,
                    self.net.sku(s)
                )
            })
            .collect();
        let (lat, lon) = (self.rng.gen_range(44.0..46.0), self.rng.gen_range(8.0..9.3));
        let body = format!(
            r#"{{"id":"{id}","lines":[{}],"delivery":{{"type":"ship","lat":{lat:.4},"lon":{lon:.4}}},"payment":{{"provider":"sandbox"}}}}"#,
            lines.join(",")
        );
        Req {
            op: Op::Order,
            method: Method::POST,
            path: "/v1/orders".into(),
            body: Some(Bytes::from(body)),
            what: What::NewOrder {
                skus,
                cancel: self.rng.gen_range(0..100) < 10,
            },
        }
    }

    fn step_req(&self, st: OrderStep) -> Req {
        let (op, path, body) = if st.cancel {
            (Op::Cancel, format!("/v1/orders/{}/cancel", st.id), None)
        } else if let Some(n) = st.deliver {
            (
                Op::ShipmentEvent,
                format!("/v1/orders/{}/shipments/{n}/events", st.id),
                Some(Bytes::from_static(br#"{"status":"delivered"}"#)),
            )
        } else {
            let n = st.shipments.first().map_or(0, |s| s.0);
            (
                Op::ShipmentEvent,
                format!("/v1/orders/{}/shipments/{n}/events", st.id),
                Some(Bytes::from_static(br#"{"status":"shipped"}"#)),
            )
        };
        Req {
            op,
            method: Method::POST,
            path,
            body,
            what: What::OrderStep(st),
        }
    }

    /// (sku index, location index) of names this run made.
    fn record_of(&self, sku: &str, location: &str) -> Option<(u32, u32)> {
        let p = &self.net.prefix;
        let s = sku.strip_prefix(p)?.strip_prefix('A')?.parse().ok()?;
        let l = location.strip_prefix(p)?.strip_prefix('S')?.parse().ok()?;
        Some((s, l))
    }

    fn cart_req(&self, lines: Vec<LineRef>, fate: Fate) -> Req {
        let ttl = if fate == Fate::Abandon {
            self.opts.abandon_ttl_s
        } else {
            self.opts.ttl_s
        };
        let mut body = String::with_capacity(64 + 80 * lines.len());
        body.push_str(r#"{"lines":["#);
        for (i, &(s, l, q)) in lines.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            // Sold against supply once on hand runs out, where it may be.
            let ahead = if self.net.backorder(s) {
                r#","allow_backorder":true"#
            } else {
                ""
            };
            body.push_str(&format!(
                r#"{{"sku":"{}","qty":{q},"location":"{}"{ahead}}}"#,
                self.net.sku(s),
                self.net.location(l)
            ));
        }
        body.push_str(&format!(r#"],"ttl_s":{ttl}}}"#));
        Req {
            op: Op::Reserve,
            method: Method::POST,
            path: "/v1/reservations".into(),
            body: Some(Bytes::from(body)),
            what: What::NewCart { lines, fate },
        }
    }

    fn follow_req(&self, f: Follow) -> Req {
        Req {
            op: f.op,
            method: Method::POST,
            path: format!("/v1/reservations/{}/{}", f.id, f.op.name()),
            body: None,
            what: What::Follow(f),
        }
    }

    /// Learns from one answer (`Err`: no answer).
    pub fn answer(&mut self, req: Req, result: &Result<(u16, Bytes), Failure>) {
        let status = match result {
            Ok((s, _)) => Some(*s),
            Err(_) => None,
        };
        // A 503 says nothing was done: a follow-up is tried again.
        let in_doubt = match status {
            None => true,
            Some(s) => s >= 500 && s != 503,
        };
        match req.what {
            What::NewOrder { skus, cancel } => match (status, result) {
                (Some(201), Ok((_, body))) => {
                    let Ok(o) = serde_json::from_slice::<PlacedOrder>(body) else {
                        self.ledger.unexpected("order 201 without shipments".into());
                        return;
                    };
                    let mut shipments = Vec::new();
                    for sh in &o.shipments {
                        let mut lines = Vec::new();
                        for l in &sh.lines {
                            match self.record_of(&l.sku, &sh.location) {
                                Some((s, loc)) => lines.push((s, loc, l.qty)),
                                None => self.ledger.unexpected(format!(
                                    "order {}: {} at {}?",
                                    o.id, l.sku, sh.location
                                )),
                            }
                        }
                        for &(s, l, _) in &lines {
                            self.ledger.touched.insert((s, l));
                        }
                        Ledger::add(&mut self.ledger.open, &lines, 1);
                        shipments.push((sh.id, lines));
                    }
                    self.ledger.carts_held += 1;
                    self.steps.push_back(OrderStep {
                        id: o.id,
                        shipments,
                        deliver: None,
                        cancel,
                    });
                }
                (Some(409), _) => self.ledger.carts_short += 1,
                (Some(503), _) => {}
                // Where an unanswered order was sourced is unknown: every
                // record of its SKUs is in doubt.
                _ if in_doubt => {
                    for &s in &skus {
                        for l in 0..self.net.locations {
                            self.ledger.doubt.insert((s, l));
                        }
                    }
                }
                (other, _) => self
                    .ledger
                    .unexpected(format!("order: {other:?} {}", body_text(result))),
            },
            What::OrderStep(mut st) => {
                let all: Vec<LineRef> = st
                    .shipments
                    .iter()
                    .flat_map(|s| s.1.iter().copied())
                    .collect();
                match status {
                    Some(200) if st.cancel => Ledger::add(&mut self.ledger.open, &all, -1),
                    Some(200) if st.deliver.is_some() => {
                        st.deliver = None;
                        if !st.shipments.is_empty() {
                            self.steps.push_back(st);
                        }
                    }
                    Some(200) => {
                        // Shipped: the goods left, the hold is fulfilled.
                        let (n, lines) = st.shipments.remove(0);
                        Ledger::add(&mut self.ledger.open, &lines, -1);
                        Ledger::add(&mut self.ledger.fulfilled, &lines, 1);
                        st.deliver = Some(n);
                        self.steps.push_back(st);
                    }
                    Some(503) => self.steps.push_back(st),
                    _ if in_doubt => self.ledger.doubt(&all),
                    other => {
                        self.ledger.unexpected(format!(
                            "{} {}: {other:?} {}",
                            req.op.name(),
                            req.path,
                            body_text(result)
                        ));
                        self.ledger.doubt(&all);
                    }
                }
            }
            What::Count { key } => {
                self.ledger.touched.insert(key);
                match status {
                    Some(200) => {
                        self.ledger.counted.insert(key);
                        self.ledger.shrunk.insert(key);
                    }
                    // Taken before the record's last count.
                    Some(409) | Some(503) => {}
                    _ if in_doubt => {
                        self.ledger.counted.insert(key);
                        self.ledger.shrunk.insert(key);
                    }
                    other => self.ledger.unexpected(format!(
                        "count {}: {other:?} {}",
                        req.path,
                        body_text(result)
                    )),
                }
            }
            What::Chore(c) => self.chore_answer(c, status, in_doubt, result),
            What::Read => {
                if status.is_some_and(|s| s != 200 && s != 503) && !in_doubt {
                    self.ledger
                        .unexpected(format!("{} {}: {status:?}", req.method, req.path));
                }
            }
            What::Adjust { key, delta } => {
                self.ledger.touched.insert(key);
                match status {
                    Some(200) => {
                        *self.ledger.adjusted.entry(key).or_default() += delta;
                        if delta < 0 {
                            self.ledger.shrunk.insert(key);
                        }
                    }
                    Some(409) | Some(503) => {}
                    _ if in_doubt => {
                        self.ledger.doubt.insert(key);
                    }
                    other => self
                        .ledger
                        .unexpected(format!("adjust {}: {other:?}", req.path)),
                }
            }
            What::NewCart { lines, fate } => {
                for &(s, l, _) in &lines {
                    self.ledger.touched.insert((s, l));
                }
                match (status, result) {
                    (Some(201), Ok((_, body))) => {
                        let Ok(c) = serde_json::from_slice::<Created>(body) else {
                            self.ledger.unexpected("201 without an id".into());
                            self.ledger.doubt(&lines);
                            return;
                        };
                        self.ledger.carts_held += 1;
                        if self.scenario == Scenario::FlashSale {
                            self.ledger.won += lines.iter().map(|l| l.2).sum::<i64>();
                        }
                        match fate {
                            Fate::Abandon => {
                                let until =
                                    Instant::now() + Duration::from_secs(self.opts.abandon_ttl_s);
                                self.ledger.abandon_deadline =
                                    self.ledger.abandon_deadline.max(Some(until));
                            }
                            Fate::Confirm | Fate::Release => {
                                Ledger::add(&mut self.ledger.open, &lines, 1);
                                let op = if fate == Fate::Confirm {
                                    Op::Confirm
                                } else {
                                    Op::Release
                                };
                                self.follow.push_back(Follow {
                                    op,
                                    id: c.id,
                                    lines,
                                });
                            }
                        }
                    }
                    (Some(409), _) => self.ledger.carts_short += 1,
                    (Some(503), _) => {}
                    _ if in_doubt => self.ledger.doubt(&lines),
                    (other, _) => {
                        self.ledger
                            .unexpected(format!("reserve: {other:?} {}", body_text(result)));
                    }
                }
            }
            What::Follow(f) => match status {
                Some(200) => match f.op {
                    Op::Confirm => {
                        if matches!(self.scenario, Scenario::Checkout | Scenario::StoreDay) {
                            self.follow.push_back(Follow {
                                op: Op::Fulfil,
                                ..f.clone()
                            });
                        } else {
                            self.ledger.confirmed.push((f.id, false));
                        }
                    }
                    Op::Release => Ledger::add(&mut self.ledger.open, &f.lines, -1),
                    Op::Fulfil => {
                        Ledger::add(&mut self.ledger.open, &f.lines, -1);
                        Ledger::add(&mut self.ledger.fulfilled, &f.lines, 1);
                        self.ledger.confirmed.push((f.id, true));
                    }
                    _ => {}
                },
                Some(503) => self.follow.push_back(f),
                // Units sold against supply not arrived: it stays
                // confirmed, its units held (on hand or ahead).
                Some(409) if f.op == Op::Fulfil && body_code(result) == Some("backordered") => {
                    self.ledger.backorder_waits += 1;
                    self.ledger.confirmed.push((f.id, false));
                }
                _ if in_doubt => self.ledger.doubt(&f.lines),
                other => {
                    self.ledger.unexpected(format!(
                        "{} {}: {other:?} {}",
                        f.op.name(),
                        f.id,
                        body_text(result)
                    ));
                    self.ledger.doubt(&f.lines);
                }
            },
        }
    }
}

impl Session {
    /// Learns from the answer to a transfer's or a supply's step.
    fn chore_answer(
        &mut self,
        c: Chore,
        status: Option<u16>,
        in_doubt: bool,
        result: &Result<(u16, Bytes), Failure>,
    ) {
        let l = &mut self.ledger;
        match (&c, status) {
            (_, Some(503)) => self.chores.push_back(c),
            (
                Chore::Transfer {
                    sku,
                    from,
                    to,
                    qty,
                    stage,
                    ..
                },
                Some(s),
            ) if !in_doubt => {
                let (sender, receiver) = ((*sku, *from), (*sku, *to));
                l.touched.insert(sender);
                l.touched.insert(receiver);
                match (stage, s) {
                    (TransferStage::Request, 201) => {
                        self.chores.push_back(c.at(TransferStage::Ship))
                    }
                    (TransferStage::Ship, 200) => {
                        *l.adjusted.entry(sender).or_default() -= qty;
                        *l.in_transit.entry(receiver).or_default() += qty;
                        // One in ten arrives a unit short.
                        let got = if self.rng.gen_range(0..10) == 0 {
                            qty - 1
                        } else {
                            *qty
                        };
                        self.chores.push_back(c.at(TransferStage::Receive(got)));
                    }
                    // Not free at the sender: it stays requested.
                    (TransferStage::Ship, 409) => {}
                    (TransferStage::Receive(got), 200) => {
                        *l.adjusted.entry(receiver).or_default() += got;
                        *l.in_transit.entry(receiver).or_default() -= qty;
                    }
                    _ => l.unexpected(format!("transfer: {s} {}", body_text(result))),
                }
            }
            (Chore::Transfer { sku, from, to, .. }, _) => {
                l.doubt.insert((*sku, *from));
                l.doubt.insert((*sku, *to));
            }
            (
                Chore::Supply {
                    key,
                    qty,
                    delivered,
                    ..
                },
                Some(s),
            ) if !in_doubt => {
                l.touched.insert(*key);
                match (delivered, s) {
                    (None, 201) => {
                        *l.incoming.entry(*key).or_default() += qty;
                        self.chores.push_back(c.delivered(0));
                    }
                    (Some(d), 200) => {
                        let part = if *d == 0 { qty / 2 } else { qty - d };
                        *l.adjusted.entry(*key).or_default() += part;
                        *l.incoming.entry(*key).or_default() -= part;
                        if d + part < *qty {
                            self.chores.push_back(c.delivered(d + part));
                        }
                    }
                    _ => l.unexpected(format!("supply: {s} {}", body_text(result))),
                }
            }
            (Chore::Supply { key, .. }, _) => {
                l.doubt.insert(*key);
            }
        }
    }
}

/// A problem's `code`, if the answer is one.
fn body_code(result: &Result<(u16, Bytes), Failure>) -> Option<&str> {
    let Ok((_, b)) = result else { return None };
    let i = b.windows(8).position(|w| w == b"\"code\":\"")? + 8;
    let rest = std::str::from_utf8(&b[i..]).ok()?;
    rest.split('"').next()
}

/// RFC 3339 (UTC) of now plus `ms`.
fn rfc3339_from_now(ms: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(ms);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn body_text(result: &Result<(u16, Bytes), Failure>) -> String {
    match result {
        Ok((_, b)) => String::from_utf8_lossy(&b[..b.len().min(200)]).into_owned(),
        Err(f) => format!("{f:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_prefers_the_first_items_and_covers_the_range() {
        let z = Zipf::new(100, 1.0);
        let mut rng = SmallRng::seed_from_u64(7);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        // With s = 1 the first item is about H(100) = 5.19 times rarer than
        // all: ~19 %; the tenth ~1.9 %.
        assert!(counts[0] > 17_000 && counts[0] < 21_500, "{}", counts[0]);
        assert!(counts[0] > 8 * counts[9]);
        assert!(counts[99] > 0);
    }

    fn session(s: Scenario) -> Session {
        let opts = WorkloadOptions {
            skus: 50,
            locations: 3,
            on_hand: 100,
            zipf_s: 1.0,
            hot_stock: 10,
            ttl_s: 600,
            abandon_ttl_s: 2,
        };
        let net = Arc::new(Network::for_scenario(s, &opts, "t-".into()));
        let zipf = Arc::new(Zipf::new(net.skus, net.zipf_s));
        Session::new(s, net, zipf, Arc::new(opts), 1)
    }

    #[test]
    fn a_confirmed_cart_is_fulfilled_and_the_ledger_follows() {
        let mut s = session(Scenario::Checkout);
        // Draw carts until one is to be confirmed.
        let req = loop {
            let r = s.next(false).expect("a cart");
            if matches!(
                r.what,
                What::NewCart {
                    fate: Fate::Confirm,
                    ..
                }
            ) {
                break r;
            }
        };
        let What::NewCart { lines, .. } = &req.what else {
            unreachable!()
        };
        let lines = lines.clone();
        assert!((1..=5).contains(&lines.len()));
        let body: serde_json::Value =
            serde_json::from_slice(req.body.as_ref().expect("body")).expect("json");
        assert_eq!(body["lines"].as_array().map(Vec::len), Some(lines.len()));
        s.answer(req, &Ok((201, Bytes::from(r#"{"id":"r1"}"#))));
        // Stopping: the follow-ups still come, then nothing.
        let confirm = s.next(true).expect("confirm");
        assert_eq!(confirm.path, "/v1/reservations/r1/confirm");
        s.answer(confirm, &Ok((200, Bytes::new())));
        let fulfil = s.next(true).expect("fulfil");
        assert_eq!(fulfil.op, Op::Fulfil);
        s.answer(fulfil, &Ok((200, Bytes::new())));
        assert!(s.next(true).is_none());
        let total: i64 = lines.iter().map(|l| l.2).sum();
        assert_eq!(s.ledger.fulfilled.values().sum::<i64>(), total);
        assert_eq!(s.ledger.open.values().sum::<i64>(), 0);
        assert_eq!(s.ledger.confirmed, vec![("r1".to_string(), true)]);
    }

    #[test]
    fn no_answer_puts_the_records_in_doubt_and_a_503_is_retried() {
        let mut s = session(Scenario::FlashSale);
        let req = s.next(false).expect("cart");
        s.answer(req, &Err(Failure::Timeout));
        assert!(s.ledger.doubt.contains(&(0, 0)));
        let req = s.next(false).expect("cart");
        s.answer(req, &Ok((201, Bytes::from(r#"{"id":"r2"}"#))));
        assert_eq!(s.ledger.won, 1);
        let confirm = s.next(false).expect("confirm");
        s.answer(confirm, &Ok((503, Bytes::new())));
        let again = s.next(true).expect("the confirm again");
        assert_eq!(again.op, Op::Confirm);
        s.answer(again, &Ok((422, Bytes::new())));
        assert_eq!(s.ledger.unexpected_count, 1);
    }
}
