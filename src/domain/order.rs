//! Orders: the state machine from checkout to doorstep or pickup counter,
//! cancellations and returns (api.md, Orders). Pure: every change is decided
//! here against the current order and returned as an `OrderEvent`, which
//! `apply` folds in (the journal stores the events; replay applies them and
//! never decides again).
//!
//! The lifecycle, per shipment (one per fulfilling location):
//! - delivery: `pending` -> `picked` -> `packed` -> `shipped` -> `delivered`;
//! - pickup from the pickup store itself: `pending` -> `picked` -> `packed`
//!   -> `ready_for_pickup` -> `collected`;
//! - pickup by transfer from another location: ... `packed` -> `shipped`
//!   (to the store) -> `ready_for_pickup` -> `collected`.
//!
//! A shipment moves forward only. A step may be skipped (a carrier scans
//! `shipped` without a `packed` scan) except into `delivered` (only from
//! `shipped`) and `collected` (only from `ready_for_pickup`). The same status
//! again changes nothing (a retried webhook). Money: the payment is
//! authorized when the order is placed, captured when its first shipment
//! ships (or is ready for pickup), voided on a cancel before that, refunded
//! line by line on returns. An order can be cancelled until something has
//! left a building; after that, returns.

use serde::{Deserialize, Serialize};

use super::address::Address;
use super::ids::{LocationId, SkuId};
use super::stock::StockDelta;
use super::transfer::{OrderRef, OrderTransfer};
use super::TimeMs;
use crate::limits::PAYMENT_NOTICES_MAX;

/// An amount in minor units (cents).
pub type Minor = i64;

/// Parses a decimal amount of at most two decimals ("59.90", "12", "0.5")
/// into minor units; `None` for anything else (signs, exponents, three
/// decimals, more than 10^13 minor units).
pub fn parse_minor(s: &str) -> Option<Minor> {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty()
        || whole.len() > 11
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (s.contains('.') && frac.is_empty())
    {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    w.checked_mul(100)?.checked_add(f)
}

/// Minor units as a decimal string with two decimals.
pub fn format_minor(m: Minor) -> String {
    format!("{}.{:02}", m / 100, m % 100)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Delivery {
    Ship {
        lat: f64,
        lon: f64,
        /// Where a carrier delivers (its label needs it); added later.
        #[serde(default)]
        address: Option<Address>,
    },
    Pickup {
        location: LocationId,
    },
}

impl Delivery {
    /// Where the goods go, if the order says (a pickup's is its store's).
    pub fn address(&self) -> Option<&Address> {
        match self {
            Delivery::Ship { address, .. } => address.as_ref(),
            Delivery::Pickup { .. } => None,
        }
    }
}

/// A shipment's parcel at a carrier: its label's tracking number, and the
/// label's format (the label itself is kept beside the journal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    pub carrier: String,
    pub tracking: String,
    pub format: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: SkuId,
    pub qty: u32,
    pub unit_price: Minor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ShipStatus {
    Pending,
    Picked,
    Packed,
    Shipped,
    ReadyForPickup,
    Delivered,
    Collected,
}

impl ShipStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShipStatus::Pending => "pending",
            ShipStatus::Picked => "picked",
            ShipStatus::Packed => "packed",
            ShipStatus::Shipped => "shipped",
            ShipStatus::ReadyForPickup => "ready_for_pickup",
            ShipStatus::Delivered => "delivered",
            ShipStatus::Collected => "collected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "picked" => ShipStatus::Picked,
            "packed" => ShipStatus::Packed,
            "shipped" => ShipStatus::Shipped,
            "ready_for_pickup" => ShipStatus::ReadyForPickup,
            "delivered" => ShipStatus::Delivered,
            "collected" => ShipStatus::Collected,
            _ => return None,
        })
    }

    /// Goods have left their building (or are at the counter): no cancel.
    fn left(self) -> bool {
        self >= ShipStatus::Shipped
    }

    pub fn done(self) -> bool {
        matches!(self, ShipStatus::Delivered | ShipStatus::Collected)
    }
}

/// The kind of a shipment, which fixes its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// To the customer's address.
    Deliver,
    /// Picked at the pickup store itself.
    PickupHere,
    /// From another location to the pickup store.
    Transfer,
}

impl Route {
    /// Whether a move from `from` to `to` takes the goods out of their
    /// location's stock: when they are shipped (delivery, transfer), or
    /// handed over at the counter (pickup at the store itself), even if a
    /// step was skipped on the way.
    pub fn leaves_stock(self, from: ShipStatus, to: ShipStatus) -> bool {
        let exit = match self {
            Route::Deliver | Route::Transfer => ShipStatus::Shipped,
            Route::PickupHere => ShipStatus::Collected,
        };
        let at = |s| self.path().iter().position(|p| *p == s);
        match (at(from), at(to), at(exit)) {
            (Some(f), Some(t), Some(x)) => f < x && t >= x,
            _ => false,
        }
    }

    /// The statuses of this route, in order.
    fn path(self) -> &'static [ShipStatus] {
        use ShipStatus::*;
        match self {
            Route::Deliver => &[Pending, Picked, Packed, Shipped, Delivered],
            Route::PickupHere => &[Pending, Picked, Packed, ReadyForPickup, Collected],
            Route::Transfer => &[Pending, Picked, Packed, Shipped, ReadyForPickup, Collected],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// 1, 2, ... within the order.
    pub id: u32,
    pub location: LocationId,
    pub route: Route,
    /// (order line index, quantity).
    pub lines: Vec<(usize, u32)>,
    pub status: ShipStatus,
    /// The reservation holding this shipment's stock: fulfilled when the
    /// goods leave their building, released on a cancel.
    pub reservation: Option<String>,
    /// Its carrier's parcel, once labelled (added later: default).
    #[serde(default)]
    pub parcel: Option<Parcel>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayState {
    /// Waiting for the provider's answer.
    Pending,
    Authorized,
    Declined,
    Captured,
    /// The authorization was released (a cancel before capture).
    Voided,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub provider: String,
    /// The provider's reference of the authorization (empty before it).
    pub reference: String,
    pub state: PayState,
    pub authorized: Minor,
    pub captured: Minor,
    pub refunded: Minor,
    /// What the provider said of the payment afterwards (its webhooks),
    /// each once, at most `PAYMENT_NOTICES_MAX` (added later: default).
    #[serde(default)]
    pub notices: Vec<Notice>,
    /// Refunds owed to the shopper (added later: default).
    #[serde(default)]
    pub refunds_owed: Vec<OwedRefund>,
}

/// A refund the order owes: its goods came back while the provider could
/// not be reached (made by the retry loop, `orders::jobs::retry`, under
/// its `key`), or its answer was lost at a provider where sending it again
/// could refund twice (`unclear`: never sent again by itself; what the
/// provider did is looked up in its back office and settled,
/// `POST /v1/orders/{id}/refunds/settle`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedRefund {
    pub key: String,
    pub amount: Minor,
    pub unclear: bool,
}

/// What became of an owed refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundOutcome {
    /// The provider refunded it.
    Made,
    /// Its answer was lost where sending it again could refund twice.
    Unclear,
    /// Found not made (its provider's back office): owed again, retried.
    NotMade,
}

/// A provider's word about a payment (a webhook notification): its event
/// (`CAPTURE`, `REFUND`, ...), whether it succeeded, and the provider's
/// reference of the notification. The same word again is the same notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub event: String,
    pub success: bool,
    pub reference: String,
    pub at_ms: TimeMs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    PendingPayment,
    PaymentDeclined,
    Confirmed,
    InFulfilment,
    Shipped,
    ReadyForPickup,
    Delivered,
    Collected,
    Cancelled,
    Returned,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 10] = [
        OrderStatus::PendingPayment,
        OrderStatus::PaymentDeclined,
        OrderStatus::Confirmed,
        OrderStatus::InFulfilment,
        OrderStatus::Shipped,
        OrderStatus::ReadyForPickup,
        OrderStatus::Delivered,
        OrderStatus::Collected,
        OrderStatus::Cancelled,
        OrderStatus::Returned,
    ];

    pub fn parse(s: &str) -> Option<OrderStatus> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingPayment => "pending_payment",
            OrderStatus::PaymentDeclined => "payment_declined",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::InFulfilment => "in_fulfilment",
            OrderStatus::Shipped => "shipped",
            OrderStatus::ReadyForPickup => "ready_for_pickup",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Collected => "collected",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Returned => "returned",
        }
    }

    /// Nothing more can happen but returns (or nothing at all).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            OrderStatus::PaymentDeclined
                | OrderStatus::Delivered
                | OrderStatus::Collected
                | OrderStatus::Cancelled
                | OrderStatus::Returned
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub lines: Vec<OrderLine>,
    pub delivery: Delivery,
    pub shipments: Vec<Shipment>,
    pub payment: Payment,
    /// Returned quantity per line.
    pub returned: Vec<u32>,
    pub cancelled: bool,
    pub created_ms: TimeMs,
    pub updated_ms: TimeMs,
    /// Where it was placed (web, app, callcenter...): payment and carrier
    /// rules choose by it (added later: default).
    #[serde(default)]
    pub channel: Option<String>,
    /// Returned goods not put back in stock yet: on a cluster node their
    /// stock is another shard's, restocked by a keyed adjustment there
    /// (added later: default).
    #[serde(default)]
    pub restocks_owed: Vec<OwedRestock>,
    /// Restocks owed so far (their keys' numbers; added later: default).
    #[serde(default)]
    pub restocks: u32,
    /// Who ordered, as customer service finds them (added later: default).
    #[serde(default)]
    pub customer: Customer,
    /// What happened to it, oldest first: the first and the newest
    /// `ORDER_TIMELINE_MAX` - 1 steps (added later: default).
    #[serde(default)]
    pub timeline: Vec<Step>,
}

/// What one of an order's facts did, as its timeline shows it and its
/// published events name it (`published::Kind::of_happened`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Happened {
    Placed,
    Paid,
    PaymentDeclined,
    Captured { amount: Minor },
    Shipment { id: u32, to: ShipStatus },
    Labelled { shipment: u32 },
    Cancelled,
    Returned,
    Refunded,
}

/// One step of an order's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub at_ms: TimeMs,
    pub happened: Happened,
}

/// The customer's contact, each optional: an order search finds orders by
/// them (`OrderQuery`). The email is kept as given; searches ignore case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// The digits of a phone number: how numbers written differently
/// ("+39 02 1234", "0039-02-1234") are compared.
pub fn phone_digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// What an order search asks (`GET /v1/orders`); every part optional, all
/// of them must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderQuery {
    /// The id starts with this.
    pub id_prefix: Option<String>,
    /// The customer's email, any case.
    pub email: Option<String>,
    /// The digits a phone number ends with: the customer's, or the
    /// delivery address's (at least 4: `PHONE_PATTERN`).
    pub phone_digits: Option<String>,
    pub status: Option<OrderStatus>,
    /// Ships from, or is collected at, this location.
    pub location: Option<LocationId>,
    /// Placed at or after.
    pub from_ms: Option<TimeMs>,
    /// Placed before.
    pub to_ms: Option<TimeMs>,
}

impl OrderQuery {
    /// Whether `(created_ms, id)` can match (what the order archive's
    /// index knows without reading the order).
    pub fn may_match(&self, created_ms: TimeMs, id: &str) -> bool {
        self.from_ms.is_none_or(|f| created_ms >= f)
            && self.to_ms.is_none_or(|t| created_ms < t)
            && self.id_prefix.as_deref().is_none_or(|p| id.starts_with(p))
    }

    pub fn matches(&self, o: &Order) -> bool {
        let phone_ends = |p: &str, want: &str| phone_digits(p).ends_with(want);
        self.may_match(o.created_ms, &o.id)
            && self.status.is_none_or(|s| o.status() == s)
            && self.email.as_deref().is_none_or(|e| {
                o.customer
                    .email
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(e))
            })
            && self.phone_digits.as_deref().is_none_or(|want| {
                o.customer
                    .phone
                    .as_deref()
                    .is_some_and(|p| phone_ends(p, want))
                    || o.delivery
                        .address()
                        .is_some_and(|a| phone_ends(&a.phone, want))
            })
            && self.location.as_ref().is_none_or(|l| o.concerns(l))
    }
}

/// Returned goods owed to a location's stock (`Order::restocks_owed`),
/// under the key of the adjustment that puts them back once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedRestock {
    pub key: String,
    pub sku: SkuId,
    pub location: LocationId,
    pub qty: u32,
}

/// Why a change was refused (409 `invalid_transition`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the order is {0}")]
    Finished(&'static str),
    #[error("no shipment {0} in this order")]
    NoShipment(u32),
    #[error("shipment {id} is {from}: it cannot become {to}")]
    Backwards {
        id: u32,
        from: &'static str,
        to: &'static str,
    },
    #[error("a {route} shipment never becomes {to}")]
    NotOnRoute {
        route: &'static str,
        to: &'static str,
    },
    #[error("shipment {id} must be {need} before it is {to}")]
    Skipped {
        id: u32,
        need: &'static str,
        to: &'static str,
    },
    #[error("shipment {0} has left its building: return the goods instead")]
    AlreadyLeft(u32),
    #[error("the payment is not authorized")]
    NotPaid,
    #[error(
        "line {line}: {asked} returned, but only {can} can be (delivered and not yet returned)"
    )]
    TooManyReturned { line: usize, asked: u32, can: u32 },
    #[error("a return must name at least one unit")]
    EmptyReturn,
    #[error(
        "the payment's capture is waiting for its provider: returns are taken once it is captured"
    )]
    CapturePending,
    #[error("no refund {0} is owed")]
    NoRefundOwed(String),
}

impl OrderEvent {
    /// When it happened.
    pub fn at_ms(&self) -> TimeMs {
        match self {
            OrderEvent::Placed(o) => o.created_ms,
            OrderEvent::PaymentAuthorized { at_ms, .. }
            | OrderEvent::PaymentDeclined { at_ms }
            | OrderEvent::ShipmentMoved { at_ms, .. }
            | OrderEvent::Cancelled { at_ms, .. }
            | OrderEvent::Returned { at_ms, .. }
            | OrderEvent::Labelled { at_ms, .. }
            | OrderEvent::Captured { at_ms, .. }
            | OrderEvent::RefundSettled { at_ms, .. }
            | OrderEvent::Restocked { at_ms, .. } => *at_ms,
            OrderEvent::Notified(n) => n.at_ms,
        }
    }

    /// What it did that the outside hears of (at most two things: a
    /// shipment leaving captures the payment; a return refunds it).
    pub fn happened(&self) -> Vec<Happened> {
        match self {
            OrderEvent::Placed(_) => vec![Happened::Placed],
            OrderEvent::PaymentAuthorized { .. } => vec![Happened::Paid],
            OrderEvent::PaymentDeclined { .. } => vec![Happened::PaymentDeclined],
            OrderEvent::Captured { amount, .. } => vec![Happened::Captured { amount: *amount }],
            OrderEvent::ShipmentMoved {
                shipment,
                to,
                captured,
                ..
            } => {
                let mut v = vec![Happened::Shipment {
                    id: *shipment,
                    to: *to,
                }];
                if *captured > 0 {
                    v.push(Happened::Captured { amount: *captured });
                }
                v
            }
            OrderEvent::Labelled { shipment, .. } => vec![Happened::Labelled {
                shipment: *shipment,
            }],
            OrderEvent::Cancelled { .. } => vec![Happened::Cancelled],
            OrderEvent::Returned { refund, owed, .. } => {
                let mut v = vec![Happened::Returned];
                if owed.is_none() && *refund > 0 {
                    v.push(Happened::Refunded);
                }
                v
            }
            OrderEvent::RefundSettled { outcome, .. } if *outcome == RefundOutcome::Made => {
                vec![Happened::Refunded]
            }
            OrderEvent::RefundSettled { .. }
            | OrderEvent::Notified(_)
            | OrderEvent::Restocked { .. } => Vec::new(),
        }
    }
}

/// A fact about an order, as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderEvent {
    Placed(Box<Order>),
    PaymentAuthorized {
        amount: Minor,
        reference: String,
        at_ms: TimeMs,
    },
    PaymentDeclined {
        at_ms: TimeMs,
    },
    ShipmentMoved {
        shipment: u32,
        to: ShipStatus,
        /// Captured with this move (the first shipment to leave).
        captured: Minor,
        at_ms: TimeMs,
    },
    Cancelled {
        voided: bool,
        at_ms: TimeMs,
    },
    Returned {
        /// (line, quantity)
        lines: Vec<(usize, u32)>,
        location: LocationId,
        refund: Minor,
        at_ms: TimeMs,
        /// The refund not made yet: owed (added later: default).
        #[serde(default)]
        owed: Option<OwedRefund>,
        /// The goods go back to another shard's stock (a cluster's):
        /// owed (`Order::restocks_owed`), not restocked with this record
        /// (added later: default).
        #[serde(default)]
        restock_owed: bool,
    },
    /// A provider's notice (added later: variants go last).
    Notified(Notice),
    /// A shipment labelled at its carrier.
    Labelled {
        shipment: u32,
        parcel: Parcel,
        at_ms: TimeMs,
    },
    /// A capture made after the shipment that owed it left (its provider
    /// was down then: `capture_owed`).
    Captured {
        amount: Minor,
        at_ms: TimeMs,
    },
    /// What became of the owed refund under `key`.
    RefundSettled {
        key: String,
        outcome: RefundOutcome,
        at_ms: TimeMs,
    },
    /// The owed restock under `key` was made.
    Restocked {
        key: String,
        at_ms: TimeMs,
    },
}

/// The key of an order's `n`th owed restock: short enough for a header
/// whatever the order's id (its hash).
fn restock_key(order: &str, n: u32) -> String {
    format!(
        "restock:{:016x}:{n}",
        super::hash::fnv1a64(order.as_bytes())
    )
}

impl Order {
    /// The event that records the owed restock under `key` made; `None`
    /// when it is not owed (made before).
    pub fn decide_restocked(&self, key: &str, now: TimeMs) -> Option<OrderEvent> {
        self.restocks_owed
            .iter()
            .any(|r| r.key == key)
            .then(|| OrderEvent::Restocked {
                key: key.to_string(),
                at_ms: now,
            })
    }

    /// A new order, its payment pending.
    pub fn new(
        id: String,
        lines: Vec<OrderLine>,
        delivery: Delivery,
        shipments: Vec<Shipment>,
        provider: String,
        now: TimeMs,
    ) -> Order {
        let n = lines.len();
        Order {
            id,
            lines,
            delivery,
            shipments,
            payment: Payment {
                provider,
                reference: String::new(),
                state: PayState::Pending,
                authorized: 0,
                captured: 0,
                refunded: 0,
                notices: Vec::new(),
                refunds_owed: Vec::new(),
            },
            returned: vec![0; n],
            cancelled: false,
            created_ms: now,
            updated_ms: now,
            channel: None,
            restocks_owed: Vec::new(),
            restocks: 0,
            customer: Customer::default(),
            timeline: vec![Step {
                at_ms: now,
                happened: Happened::Placed,
            }],
        }
    }

    /// Ships from `location`, or is collected there.
    pub fn concerns(&self, location: &LocationId) -> bool {
        self.shipments.iter().any(|s| &s.location == location)
            || matches!(&self.delivery, Delivery::Pickup { location: l } if l == location)
    }

    /// The locations whose daily capacity this order takes: every
    /// fulfilling location, and the pickup store (which hands it over).
    pub fn capacity_locations(&self) -> Vec<LocationId> {
        let mut v: Vec<LocationId> = self.shipments.iter().map(|s| s.location.clone()).collect();
        if let Delivery::Pickup { location } = &self.delivery {
            v.push(location.clone());
        }
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        v.dedup();
        v
    }

    /// Counts against capacity: paid for and not cancelled.
    pub fn takes_capacity(&self) -> bool {
        !self.cancelled
            && matches!(
                self.payment.state,
                PayState::Authorized | PayState::Captured
            )
    }

    /// What a return of `lines` (line, quantity) puts back on the shelf
    /// where it is returned: each line's SKU with its on_hand delta. The
    /// one rule for replay (the model) and the running engine alike.
    pub fn restock<'a>(
        &'a self,
        lines: &'a [(usize, u32)],
    ) -> impl Iterator<Item = (&'a SkuId, StockDelta)> + 'a {
        lines.iter().filter_map(|(l, q)| {
            let line = self.lines.get(*l)?;
            Some((
                &line.sku,
                StockDelta {
                    on_hand: i64::from(*q),
                    ..StockDelta::default()
                },
            ))
        })
    }

    pub fn total(&self) -> Minor {
        self.lines
            .iter()
            .map(|l| l.unit_price * i64::from(l.qty))
            .sum()
    }

    /// Finished and idle: nothing will move it but a late return, so it
    /// may leave memory (passivation). Placed on an earlier UTC day than
    /// `now`: the day's capacity counts are rebuilt from the orders in
    /// memory.
    pub fn is_passivable(&self, now: TimeMs) -> bool {
        self.passivable_from().is_some_and(|at| at <= now)
    }

    /// When this order, as it is, may leave memory (`is_passivable`): an
    /// idle hour after its last change and not before the UTC day after
    /// it was placed. `None`: not finished, or owing a refund or restock.
    pub fn passivable_from(&self) -> Option<TimeMs> {
        use OrderStatus::*;
        const DAY: TimeMs = 86_400_000;
        let finished = matches!(
            self.status(),
            PaymentDeclined | Delivered | Collected | Cancelled | Returned
        ) && self.payment.refunds_owed.is_empty()
            && self.restocks_owed.is_empty();
        finished.then(|| {
            let idle = self.updated_ms + crate::limits::ORDER_PASSIVATE_IDLE_MS;
            let next_day = (self.created_ms.div_euclid(DAY) + 1) * DAY;
            idle.max(next_day)
        })
    }

    /// The store where this order waits to be collected: a pay and
    /// collect order not yet collected, cancelled, declined or returned.
    pub fn open_pickup(&self) -> Option<&LocationId> {
        use OrderStatus::*;
        match &self.delivery {
            Delivery::Pickup { location }
                if !matches!(
                    self.status(),
                    Collected | Cancelled | PaymentDeclined | Returned
                ) =>
            {
                Some(location)
            }
            _ => None,
        }
    }

    /// What each shipment's reservation must be now, by what the order
    /// says: released (the order cancelled), fulfilled (its goods left
    /// their building), confirmed (paid, not left). Nothing before the
    /// payment's yes, or after its no (nothing is held then).
    pub fn hold_states(&self) -> Vec<(&str, super::reservation::Status)> {
        use super::reservation::Status;
        if matches!(self.payment.state, PayState::Pending | PayState::Declined) {
            return Vec::new();
        }
        self.shipments
            .iter()
            .filter_map(|s| {
                let want = if self.cancelled {
                    Status::Released
                } else if s.route.leaves_stock(ShipStatus::Pending, s.status) {
                    Status::Fulfilled
                } else {
                    Status::Confirmed
                };
                Some((s.reservation.as_deref()?, want))
            })
            .collect()
    }

    /// What each of its transfers to the pickup store must be, by what
    /// the order says: one per shipment by transfer whose goods left
    /// (shipped, or further), at the counter once ready for pickup.
    pub fn transfers_owed(&self) -> Vec<OrderTransfer> {
        let Delivery::Pickup { location } = &self.delivery else {
            return Vec::new();
        };
        self.shipments
            .iter()
            .filter(|s| s.route == Route::Transfer && s.status.left())
            .map(|s| {
                let mut lines: Vec<(SkuId, u32)> = Vec::new();
                for &(l, q) in &s.lines {
                    let Some(line) = self.lines.get(l) else {
                        continue;
                    };
                    match lines.iter_mut().find(|(sku, _)| *sku == line.sku) {
                        Some(same) => same.1 = same.1.saturating_add(q),
                        None => lines.push((line.sku.clone(), q)),
                    }
                }
                OrderTransfer {
                    of: OrderRef {
                        order: self.id.clone(),
                        shipment: s.id,
                    },
                    from: s.location.clone(),
                    to: location.clone(),
                    lines,
                    arrived: s.status >= ShipStatus::ReadyForPickup,
                }
            })
            .collect()
    }

    pub fn status(&self) -> OrderStatus {
        if self.cancelled {
            return OrderStatus::Cancelled;
        }
        match self.payment.state {
            PayState::Pending => return OrderStatus::PendingPayment,
            PayState::Declined => return OrderStatus::PaymentDeclined,
            _ => {}
        }
        let pickup = matches!(self.delivery, Delivery::Pickup { .. });
        let all = |f: &dyn Fn(ShipStatus) -> bool| self.shipments.iter().all(|s| f(s.status));
        if !self.shipments.is_empty() && all(&|s| s.done()) {
            let fully_returned = self
                .lines
                .iter()
                .zip(&self.returned)
                .all(|(l, r)| *r >= l.qty);
            return if fully_returned {
                OrderStatus::Returned
            } else if pickup {
                OrderStatus::Collected
            } else {
                OrderStatus::Delivered
            };
        }
        if pickup && all(&|s| s >= ShipStatus::ReadyForPickup) {
            return OrderStatus::ReadyForPickup;
        }
        if !pickup && all(&|s| s >= ShipStatus::Shipped) {
            return OrderStatus::Shipped;
        }
        if self
            .shipments
            .iter()
            .any(|s| s.status > ShipStatus::Pending)
        {
            return OrderStatus::InFulfilment;
        }
        OrderStatus::Confirmed
    }

    fn refuse_if_finished(&self) -> Result<(), Refused> {
        let s = self.status();
        if matches!(
            s,
            OrderStatus::Cancelled | OrderStatus::PaymentDeclined | OrderStatus::Returned
        ) {
            return Err(Refused::Finished(s.as_str()));
        }
        Ok(())
    }

    /// Decides a shipment event.
    pub fn decide_move(
        &self,
        shipment: u32,
        to: ShipStatus,
        now: TimeMs,
    ) -> Result<Option<OrderEvent>, Refused> {
        self.refuse_if_finished()?;
        if !matches!(
            self.payment.state,
            PayState::Authorized | PayState::Captured
        ) {
            return Err(Refused::NotPaid);
        }
        let s = self
            .shipments
            .iter()
            .find(|s| s.id == shipment)
            .ok_or(Refused::NoShipment(shipment))?;
        let path = s.route.path();
        let route = match s.route {
            Route::Deliver => "delivery",
            Route::PickupHere => "pickup",
            Route::Transfer => "transfer",
        };
        let Some(to_i) = path.iter().position(|p| *p == to) else {
            return Err(Refused::NotOnRoute {
                route,
                to: to.as_str(),
            });
        };
        let from_i = path.iter().position(|p| *p == s.status).unwrap_or(0);
        if to_i == from_i {
            return Ok(None);
        }
        if to_i < from_i {
            return Err(Refused::Backwards {
                id: shipment,
                from: s.status.as_str(),
                to: to.as_str(),
            });
        }
        // The last step of a route is taken only from the one before it.
        if to.done() && from_i + 1 != to_i {
            return Err(Refused::Skipped {
                id: shipment,
                need: path[to_i - 1].as_str(),
                to: to.as_str(),
            });
        }
        let captured = if to.left() && self.payment.state == PayState::Authorized {
            self.payment.authorized
        } else {
            0
        };
        Ok(Some(OrderEvent::ShipmentMoved {
            shipment,
            to,
            captured,
            at_ms: now,
        }))
    }

    /// `decide_move`, the capture it would record left owed instead (the
    /// provider could not be reached: the goods leave anyway, and the
    /// capture is made later, `decide_capture`).
    pub fn decide_move_owing_capture(
        &self,
        shipment: u32,
        to: ShipStatus,
        now: TimeMs,
    ) -> Result<Option<OrderEvent>, Refused> {
        Ok(self.decide_move(shipment, to, now)?.map(|e| match e {
            OrderEvent::ShipmentMoved {
                shipment,
                to,
                at_ms,
                ..
            } => OrderEvent::ShipmentMoved {
                shipment,
                to,
                captured: 0,
                at_ms,
            },
            other => other,
        }))
    }

    /// What is owed a capture: the authorized amount, once something left
    /// its building while the payment is only authorized.
    pub fn capture_owed(&self) -> Minor {
        let left = self.shipments.iter().any(|s| s.status.left());
        if !self.cancelled && left && self.payment.state == PayState::Authorized {
            self.payment.authorized
        } else {
            0
        }
    }

    /// The owed capture, made at the provider: recorded.
    pub fn decide_capture(&self, now: TimeMs) -> Option<OrderEvent> {
        let amount = self.capture_owed();
        (amount > 0).then_some(OrderEvent::Captured { amount, at_ms: now })
    }

    /// Decides a cancel: only while nothing has left a building.
    pub fn decide_cancel(&self, now: TimeMs) -> Result<Option<OrderEvent>, Refused> {
        if self.cancelled {
            return Ok(None);
        }
        self.refuse_if_finished()?;
        if let Some(s) = self.shipments.iter().find(|s| s.status.left()) {
            return Err(Refused::AlreadyLeft(s.id));
        }
        Ok(Some(OrderEvent::Cancelled {
            voided: self.payment.state == PayState::Authorized,
            at_ms: now,
        }))
    }

    /// Decides a return of `lines` (line, quantity) restocked at `location`:
    /// only what was delivered or collected and not yet returned.
    pub fn decide_return(
        &self,
        lines: &[(usize, u32)],
        location: LocationId,
        now: TimeMs,
    ) -> Result<OrderEvent, Refused> {
        if self.cancelled {
            return Err(Refused::Finished("cancelled"));
        }
        if lines.iter().all(|(_, q)| *q == 0) {
            return Err(Refused::EmptyReturn);
        }
        // Refunded from what was captured: not before it is.
        if self.capture_owed() > 0 {
            return Err(Refused::CapturePending);
        }
        let mut asked = vec![0u32; self.lines.len()];
        for &(line, qty) in lines {
            let Some(a) = asked.get_mut(line) else {
                return Err(Refused::TooManyReturned {
                    line,
                    asked: qty,
                    can: 0,
                });
            };
            *a = a.saturating_add(qty);
        }
        let mut refund = 0;
        for (line, &a) in asked.iter().enumerate() {
            if a == 0 {
                continue;
            }
            let delivered: u32 = self
                .shipments
                .iter()
                .filter(|s| s.status.done())
                .flat_map(|s| s.lines.iter())
                .filter(|(l, _)| *l == line)
                .map(|(_, q)| *q)
                .sum();
            let can = delivered.saturating_sub(self.returned[line]);
            if a > can {
                return Err(Refused::TooManyReturned {
                    line,
                    asked: a,
                    can,
                });
            }
            refund += self.lines[line].unit_price * i64::from(a);
        }
        // Never more than was captured and not yet refunded (or owed).
        let refund =
            refund.min(self.payment.captured - self.payment.refunded - self.refunds_owed_total());
        Ok(OrderEvent::Returned {
            lines: asked
                .iter()
                .enumerate()
                .filter(|(_, q)| **q > 0)
                .map(|(l, q)| (l, *q))
                .collect(),
            location,
            refund,
            at_ms: now,
            owed: None,
            restock_owed: false,
        })
    }

    /// What is owed in refunds, settled or not.
    pub fn refunds_owed_total(&self) -> Minor {
        self.payment.refunds_owed.iter().map(|r| r.amount).sum()
    }

    /// The provider's idempotency key of the next refund of `amount`: what
    /// was refunded or is owed before names it, so a retry of the same
    /// return reuses it and a later return gets its own.
    pub fn refund_key(&self, amount: Minor) -> String {
        let before = self.payment.refunded + self.refunds_owed_total();
        format!("{}:refund:{before}:{amount}", self.id)
    }

    /// What became of the owed refund `key`: refused when it is not owed
    /// (settled before), nothing when it already stands so.
    pub fn decide_refund(
        &self,
        key: &str,
        outcome: RefundOutcome,
        now: TimeMs,
    ) -> Result<Option<OrderEvent>, Refused> {
        let owed = self
            .payment
            .refunds_owed
            .iter()
            .find(|r| r.key == key)
            .ok_or_else(|| Refused::NoRefundOwed(key.to_string()))?;
        let same = match outcome {
            RefundOutcome::Made => false,
            RefundOutcome::Unclear => owed.unclear,
            RefundOutcome::NotMade => !owed.unclear,
        };
        Ok((!same).then(|| OrderEvent::RefundSettled {
            key: key.to_string(),
            outcome,
            at_ms: now,
        }))
    }

    /// A provider's notice, kept unless it is kept already (a webhook
    /// delivered twice, or replayed) or the order keeps `PAYMENT_NOTICES_MAX`.
    pub fn decide_notice(&self, n: Notice) -> Option<OrderEvent> {
        let seen = self.payment.notices.iter().any(|k| {
            (k.event.as_str(), k.success, k.reference.as_str())
                == (n.event.as_str(), n.success, n.reference.as_str())
        });
        (!seen && self.payment.notices.len() < PAYMENT_NOTICES_MAX)
            .then_some(OrderEvent::Notified(n))
    }

    /// A label for shipment `n`, unless it has one (a retried `packed`
    /// finds the label it made). Only a shipment that has not left and
    /// goes somewhere (a delivery, a transfer) is labelled.
    pub fn decide_label(
        &self,
        n: u32,
        parcel: Parcel,
        now: TimeMs,
    ) -> Result<Option<OrderEvent>, Refused> {
        let s = self
            .shipments
            .iter()
            .find(|s| s.id == n)
            .ok_or(Refused::NoShipment(n))?;
        if s.parcel.is_some() {
            return Ok(None);
        }
        if self.cancelled || s.route == Route::PickupHere {
            return Err(Refused::Finished(self.status().as_str()));
        }
        Ok(Some(OrderEvent::Labelled {
            shipment: n,
            parcel,
            at_ms: now,
        }))
    }

    /// Folds in one fact (replay applies, never decides).
    pub fn apply(&mut self, e: &OrderEvent) {
        self.apply_fact(e);
        let at_ms = e.at_ms();
        for happened in e.happened() {
            if happened == Happened::Placed {
                continue; // the placed order holds it from `Order::new`
            }
            if self.timeline.len() >= crate::limits::ORDER_TIMELINE_MAX {
                self.timeline.remove(1); // the first step stays: placed
            }
            self.timeline.push(Step { at_ms, happened });
        }
    }

    fn apply_fact(&mut self, e: &OrderEvent) {
        match e {
            OrderEvent::Placed(o) => *self = (**o).clone(),
            OrderEvent::PaymentAuthorized {
                amount,
                reference,
                at_ms,
            } => self.apply_authorized(*amount, reference, *at_ms),
            OrderEvent::PaymentDeclined { at_ms } => self.apply_declined(*at_ms),
            OrderEvent::ShipmentMoved {
                shipment,
                to,
                captured,
                at_ms,
            } => self.apply_moved(*shipment, *to, *captured, *at_ms),
            OrderEvent::Cancelled { voided, at_ms } => self.apply_cancelled(*voided, *at_ms),
            OrderEvent::Returned {
                lines,
                location,
                refund,
                at_ms,
                owed,
                restock_owed,
            } => self.apply_returned(
                lines,
                location,
                *refund,
                owed.as_ref(),
                *restock_owed,
                *at_ms,
            ),
            OrderEvent::RefundSettled {
                key,
                outcome,
                at_ms,
            } => self.apply_refund_settled(key, *outcome, *at_ms),
            OrderEvent::Restocked { key, at_ms } => self.apply_restocked(key, *at_ms),
            OrderEvent::Notified(n) => self.apply_notified(n),
            OrderEvent::Captured { amount, at_ms } => self.apply_captured(*amount, *at_ms),
            OrderEvent::Labelled {
                shipment,
                parcel,
                at_ms,
            } => self.apply_labelled(*shipment, parcel, *at_ms),
        }
    }

    /// The payment authorized for `amount` under the provider's `reference`.
    fn apply_authorized(&mut self, amount: Minor, reference: &str, at_ms: TimeMs) {
        self.payment.state = PayState::Authorized;
        self.payment.authorized = amount;
        self.payment.reference = reference.to_string();
        self.updated_ms = at_ms;
    }

    /// The payment declined.
    fn apply_declined(&mut self, at_ms: TimeMs) {
        self.payment.state = PayState::Declined;
        self.updated_ms = at_ms;
    }

    /// A shipment's new status, and the capture made with it if any.
    fn apply_moved(&mut self, shipment: u32, to: ShipStatus, captured: Minor, at_ms: TimeMs) {
        if let Some(s) = self.shipments.iter_mut().find(|s| s.id == shipment) {
            s.status = to;
        }
        if captured > 0 {
            self.payment.state = PayState::Captured;
            self.payment.captured = captured;
        }
        self.updated_ms = at_ms;
    }

    /// The order cancelled, its authorization voided if it says so.
    fn apply_cancelled(&mut self, voided: bool, at_ms: TimeMs) {
        self.cancelled = true;
        if voided {
            self.payment.state = PayState::Voided;
        }
        self.updated_ms = at_ms;
    }

    /// A return: the lines counted, the restocks owed noted (goods going
    /// back to another shard's stock), the refund made or owed.
    fn apply_returned(
        &mut self,
        lines: &[(usize, u32)],
        location: &LocationId,
        refund: Minor,
        owed: Option<&OwedRefund>,
        restock_owed: bool,
        at_ms: TimeMs,
    ) {
        for (l, q) in lines {
            if let Some(r) = self.returned.get_mut(*l) {
                *r += q;
            }
            let sku = self.lines.get(*l).map(|x| x.sku.clone());
            if let (true, Some(sku)) = (restock_owed, sku) {
                self.restocks += 1;
                self.restocks_owed.push(OwedRestock {
                    key: restock_key(&self.id, self.restocks),
                    sku,
                    location: location.clone(),
                    qty: *q,
                });
            }
        }
        match owed {
            Some(w) => self.payment.refunds_owed.push(w.clone()),
            None => self.payment.refunded += refund,
        }
        self.updated_ms = at_ms;
    }

    /// What became of the owed refund under `key`.
    fn apply_refund_settled(&mut self, key: &str, outcome: RefundOutcome, at_ms: TimeMs) {
        let owed = &mut self.payment.refunds_owed;
        if let Some(i) = owed.iter().position(|r| r.key == key) {
            match outcome {
                RefundOutcome::Made => {
                    self.payment.refunded += owed.remove(i).amount;
                }
                RefundOutcome::Unclear => owed[i].unclear = true,
                RefundOutcome::NotMade => owed[i].unclear = false,
            }
        }
        self.updated_ms = at_ms;
    }

    /// The owed restock under `key` made.
    fn apply_restocked(&mut self, key: &str, at_ms: TimeMs) {
        self.restocks_owed.retain(|r| r.key != key);
        self.updated_ms = at_ms;
    }

    /// A provider's notice kept.
    fn apply_notified(&mut self, n: &Notice) {
        self.updated_ms = n.at_ms;
        self.payment.notices.push(n.clone());
    }

    /// A capture owed made.
    fn apply_captured(&mut self, amount: Minor, at_ms: TimeMs) {
        self.payment.state = PayState::Captured;
        self.payment.captured = amount;
        self.updated_ms = at_ms;
    }

    /// A shipment's parcel at its carrier.
    fn apply_labelled(&mut self, shipment: u32, parcel: &Parcel, at_ms: TimeMs) {
        if let Some(s) = self.shipments.iter_mut().find(|s| s.id == shipment) {
            s.parcel = Some(parcel.clone());
        }
        self.updated_ms = at_ms;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A return whose goods go to another shard's stock owes them, one
    /// restock per line under its own key, until each is recorded made;
    /// the order is not passivated meanwhile.
    #[test]
    fn a_return_to_another_shard_owes_its_restocks_until_made() {
        let mut o = order(false);
        for n in [1, 2] {
            step(&mut o, n, ShipStatus::Shipped).expect("left");
            step(&mut o, n, ShipStatus::Delivered).expect("delivered");
        }
        let mut e = o
            .decide_return(&[(0, 1), (1, 1)], loc("S1"), 4)
            .expect("return");
        if let OrderEvent::Returned { restock_owed, .. } = &mut e {
            *restock_owed = true;
        }
        o.apply(&e);
        assert_eq!(o.restocks_owed.len(), 2);
        let keys: Vec<String> = o.restocks_owed.iter().map(|r| r.key.clone()).collect();
        assert_ne!(keys[0], keys[1]);
        assert!(keys.iter().all(|k| k.len() <= 64));
        assert_eq!(
            (o.restocks_owed[0].qty, o.restocks_owed[0].sku.as_str()),
            (1, "A")
        );
        let far = crate::limits::ORDER_PASSIVATE_IDLE_MS + 10 * 86_400_000;
        assert!(!o.is_passivable(far), "owing a restock");
        let made = o.decide_restocked(&keys[0], 5).expect("owed");
        o.apply(&made);
        assert_eq!(o.decide_restocked(&keys[0], 6), None, "made once");
        let made = o.decide_restocked(&keys[1], 7).expect("owed");
        o.apply(&made);
        assert!(o.restocks_owed.is_empty());
        // The next return's keys are new ones.
        let mut e = o.decide_return(&[(0, 1)], loc("S1"), 8).expect("return");
        if let OrderEvent::Returned { restock_owed, .. } = &mut e {
            *restock_owed = true;
        }
        o.apply(&e);
        assert!(!keys.contains(&o.restocks_owed[0].key));
    }

    /// A shipment leaving while the provider is down owes the capture:
    /// returns wait for it; it is made once, then the order is as if
    /// captured when it left.
    #[test]
    fn a_capture_owed_is_made_later_and_returns_wait_for_it() {
        let mut o = order(false);
        assert_eq!(o.capture_owed(), 0, "nothing left yet");
        let e = o
            .decide_move_owing_capture(1, ShipStatus::Shipped, 2)
            .expect("move")
            .expect("event");
        assert!(matches!(e, OrderEvent::ShipmentMoved { captured: 0, .. }));
        o.apply(&e);
        assert_eq!(o.capture_owed(), o.total());
        assert_eq!(o.payment.state, PayState::Authorized);
        // Delivered while the provider is still down: still owed. (A move
        // that left while it is up captures: `decide_move`.)
        let e = o
            .decide_move_owing_capture(1, ShipStatus::Delivered, 3)
            .expect("move")
            .expect("event");
        o.apply(&e);
        assert_eq!(o.capture_owed(), o.total());
        assert_eq!(
            o.decide_return(&[(0, 1)], loc("S1"), 4),
            Err(Refused::CapturePending)
        );
        let c = o.decide_capture(5).expect("owed");
        o.apply(&c);
        assert_eq!(
            (o.payment.state, o.payment.captured),
            (PayState::Captured, o.total())
        );
        assert_eq!((o.capture_owed(), o.decide_capture(6)), (0, None));
        assert!(o.decide_return(&[(0, 1)], loc("S1"), 7).is_ok());
    }

    /// What an order's holds must be follows the order: confirmed once
    /// paid, fulfilled when the goods left their building (collected, for
    /// a pickup at the store itself; shipped, for a transfer), released
    /// when cancelled; nothing when the payment said no.
    #[test]
    fn an_order_says_what_its_holds_must_be() {
        use crate::domain::reservation::Status::*;
        let held = |o: &mut Order| {
            for (s, r) in o.shipments.iter_mut().zip(["r1", "r2"]) {
                s.reservation = Some(r.into());
            }
        };
        let mut o = order(true);
        held(&mut o);
        assert_eq!(o.hold_states(), [("r1", Confirmed), ("r2", Confirmed)]);
        step(&mut o, 2, ShipStatus::Shipped).expect("transfer leaves");
        step(&mut o, 1, ShipStatus::ReadyForPickup).expect("ready");
        assert_eq!(o.hold_states(), [("r1", Confirmed), ("r2", Fulfilled)]);
        step(&mut o, 1, ShipStatus::Collected).expect("collected");
        assert_eq!(o.hold_states(), [("r1", Fulfilled), ("r2", Fulfilled)]);

        let mut o = order(false);
        held(&mut o);
        let c = o.decide_cancel(5).expect("cancel").expect("event");
        o.apply(&c);
        assert_eq!(o.hold_states(), [("r1", Released), ("r2", Released)]);

        let mut o = order(false);
        held(&mut o);
        o.payment.state = PayState::Declined;
        assert!(o.hold_states().is_empty());
    }

    /// Orders journaled before addresses, parcels and payment notices
    /// decode with none of them.
    #[test]
    fn an_order_written_before_addresses_and_parcels_still_decodes() {
        #[derive(Serialize)]
        enum OldDelivery {
            Ship { lat: f64, lon: f64 },
        }
        #[derive(Serialize)]
        struct OldShipment {
            id: u32,
            location: LocationId,
            route: Route,
            lines: Vec<(usize, u32)>,
            status: ShipStatus,
            reservation: Option<String>,
        }
        #[derive(Serialize)]
        struct OldPayment {
            provider: String,
            reference: String,
            state: PayState,
            authorized: Minor,
            captured: Minor,
            refunded: Minor,
        }
        #[derive(Serialize)]
        struct OldOrder {
            id: String,
            lines: Vec<OrderLine>,
            delivery: OldDelivery,
            shipments: Vec<OldShipment>,
            payment: OldPayment,
            returned: Vec<u32>,
            cancelled: bool,
            created_ms: TimeMs,
            updated_ms: TimeMs,
        }
        let old = OldOrder {
            id: "O-1".into(),
            lines: vec![],
            delivery: OldDelivery::Ship {
                lat: 45.0,
                lon: 9.0,
            },
            shipments: vec![OldShipment {
                id: 1,
                location: loc("DC"),
                route: Route::Deliver,
                lines: vec![(0, 1)],
                status: ShipStatus::Packed,
                reservation: None,
            }],
            payment: OldPayment {
                provider: "sandbox".into(),
                reference: "r".into(),
                state: PayState::Authorized,
                authorized: 100,
                captured: 0,
                refunded: 0,
            },
            returned: vec![],
            cancelled: false,
            created_ms: 1,
            updated_ms: 2,
        };
        let bytes = rmp_serde::to_vec(&old).expect("encode");
        let o: Order = rmp_serde::from_slice(&bytes).expect("decode");
        assert_eq!(o.delivery.address(), None);
        assert_eq!(o.shipments[0].parcel, None);
        assert!(o.payment.notices.is_empty());
        assert!(o.payment.refunds_owed.is_empty());
        assert_eq!(o.channel, None);
        assert_eq!(
            (o.shipments[0].status, o.payment.authorized),
            (ShipStatus::Packed, 100)
        );
        // A return journaled before refunds could be owed: made.
        #[derive(Serialize)]
        enum OldEvent {
            _Placed,
            _PaymentAuthorized,
            _PaymentDeclined,
            _ShipmentMoved,
            _Cancelled,
            Returned {
                lines: Vec<(usize, u32)>,
                location: LocationId,
                refund: Minor,
                at_ms: TimeMs,
            },
        }
        let bytes = rmp_serde::to_vec(&OldEvent::Returned {
            lines: vec![(0, 1)],
            location: loc("S1"),
            refund: 700,
            at_ms: 3,
        })
        .expect("encode");
        let e: OrderEvent = rmp_serde::from_slice(&bytes).expect("decode");
        assert!(matches!(
            e,
            OrderEvent::Returned {
                refund: 700,
                owed: None,
                restock_owed: false,
                ..
            }
        ));
    }

    /// A refund owed is not refunded until it is settled made; the next
    /// return's key counts it; a refund settled is no longer owed.
    #[test]
    fn an_owed_refund_counts_once_settled() {
        let mut o = order(false);
        for n in [1, 2] {
            for to in [ShipStatus::Shipped, ShipStatus::Delivered] {
                let e = o.decide_move(n, to, 2).expect("move").expect("event");
                o.apply(&e);
            }
        }
        assert_eq!(o.status(), OrderStatus::Delivered);
        assert!(o.is_passivable(i64::MAX / 2));
        let key = o.refund_key(1000);
        let mut e = o.decide_return(&[(0, 1)], loc("S1"), 3).expect("return");
        if let OrderEvent::Returned { owed, refund, .. } = &mut e {
            *owed = Some(OwedRefund {
                key: key.clone(),
                amount: *refund,
                unclear: true,
            });
        }
        o.apply(&e);
        assert_eq!((o.payment.refunded, o.refunds_owed_total()), (0, 1000));
        assert_ne!(o.refund_key(1000), key, "the next return's own key");
        assert!(!o.is_passivable(i64::MAX / 2), "kept in memory while owed");
        assert_eq!(o.decide_refund(&key, RefundOutcome::Unclear, 4), Ok(None));
        let made = o
            .decide_refund(&key, RefundOutcome::Made, 5)
            .expect("owed")
            .expect("event");
        o.apply(&made);
        assert_eq!((o.payment.refunded, o.refunds_owed_total()), (1000, 0));
        assert_eq!(
            o.decide_refund(&key, RefundOutcome::Made, 6),
            Err(Refused::NoRefundOwed(key))
        );
    }

    fn loc(s: &str) -> LocationId {
        LocationId::parse(s).expect("id")
    }

    /// Two lines (2 x 10.00, 1 x 5.50) from two locations.
    fn order(pickup: bool) -> Order {
        let lines = vec![
            OrderLine {
                sku: SkuId::parse("A").expect("id"),
                qty: 2,
                unit_price: 1000,
            },
            OrderLine {
                sku: SkuId::parse("B").expect("id"),
                qty: 1,
                unit_price: 550,
            },
        ];
        let (delivery, routes) = if pickup {
            (
                Delivery::Pickup {
                    location: loc("S1"),
                },
                [Route::PickupHere, Route::Transfer],
            )
        } else {
            (
                Delivery::Ship {
                    lat: 45.0,
                    lon: 9.0,
                    address: None,
                },
                [Route::Deliver, Route::Deliver],
            )
        };
        let shipments = vec![
            Shipment {
                id: 1,
                location: loc("S1"),
                route: routes[0],
                lines: vec![(0, 2)],
                status: ShipStatus::Pending,
                reservation: None,
                parcel: None,
            },
            Shipment {
                id: 2,
                location: loc("DC"),
                route: routes[1],
                lines: vec![(1, 1)],
                status: ShipStatus::Pending,
                reservation: None,
                parcel: None,
            },
        ];
        let mut o = Order::new(
            "O-1".into(),
            lines,
            delivery,
            shipments,
            "sandbox".into(),
            0,
        );
        let total = o.total();
        o.apply(&OrderEvent::PaymentAuthorized {
            amount: total,
            reference: "sbx-test".into(),
            at_ms: 1,
        });
        o
    }

    /// Line 0 (6 x 10.00) split by sourcing: 4 from S1 (with line 1, 1 x
    /// 5.50), 2 from DC.
    fn split_order() -> Order {
        let mut o = order(false);
        o.lines[0].qty = 6;
        o.returned = vec![0, 0];
        o.shipments[0].lines = vec![(0, 4), (1, 1)];
        o.shipments[1].lines = vec![(0, 2)];
        o.payment.authorized = o.total();
        o
    }

    /// A line whose quantity is spread over two shipments: the payment is
    /// the line's whole amount, captured once; returns and refunds count
    /// what each shipment delivered of it; a cancel releases both parts'
    /// holds and is refused once either part has left.
    #[test]
    fn a_line_split_across_two_shipments_ships_returns_and_refunds_per_part() {
        let mut o = split_order();
        assert_eq!(o.total(), 6550);
        step(&mut o, 1, ShipStatus::Shipped).expect("the first part leaves");
        assert_eq!((o.payment.captured, o.capture_owed()), (6550, 0));
        assert_eq!(o.decide_cancel(3), Err(Refused::AlreadyLeft(1)));
        step(&mut o, 1, ShipStatus::Delivered).expect("delivered");
        assert_eq!(o.status(), OrderStatus::InFulfilment);
        // Only the part delivered can come back.
        assert_eq!(
            o.decide_return(&[(0, 5)], loc("S1"), 4),
            Err(Refused::TooManyReturned {
                line: 0,
                asked: 5,
                can: 4
            })
        );
        let e = o.decide_return(&[(0, 4)], loc("S1"), 4).expect("a return");
        assert!(matches!(&e, OrderEvent::Returned { refund: 4000, .. }));
        o.apply(&e);
        assert_eq!(o.returned, vec![4, 0]);
        assert!(o.decide_return(&[(0, 1)], loc("S1"), 5).is_err());
        // The second part arrives: its 2 can come back, and the order ends
        // returned with every cent refunded.
        step(&mut o, 2, ShipStatus::Shipped).expect("left");
        assert_eq!(o.payment.captured, 6550, "captured once");
        step(&mut o, 2, ShipStatus::Delivered).expect("delivered");
        assert_eq!(o.status(), OrderStatus::Delivered);
        let e = o
            .decide_return(&[(0, 2), (1, 1)], loc("DC"), 6)
            .expect("the rest");
        assert!(matches!(&e, OrderEvent::Returned { refund: 2550, .. }));
        o.apply(&e);
        assert_eq!(o.status(), OrderStatus::Returned);
        assert_eq!(o.payment.refunded, o.payment.captured);

        // Cancelled before anything left: both parts' holds released.
        let mut o = split_order();
        for (s, r) in o.shipments.iter_mut().zip(["r1", "r2"]) {
            s.reservation = Some(r.into());
        }
        let c = o.decide_cancel(2).expect("cancel").expect("event");
        o.apply(&c);
        use crate::domain::reservation::Status::Released;
        assert_eq!(o.hold_states(), [("r1", Released), ("r2", Released)]);
        assert_eq!(o.payment.state, PayState::Voided);
    }

    fn step(o: &mut Order, shipment: u32, to: ShipStatus) -> Result<(), Refused> {
        if let Some(e) = o.decide_move(shipment, to, 10)? {
            o.apply(&e);
        }
        Ok(())
    }

    #[test]
    fn amounts_parse_as_minor_units() {
        assert_eq!(parse_minor("59.90"), Some(5990));
        assert_eq!(parse_minor("12"), Some(1200));
        assert_eq!(parse_minor("0.5"), Some(50));
        for bad in ["", "-1", "1.234", "1e3", "1.", ".5", "abc", "999999999999"] {
            assert_eq!(parse_minor(bad), None, "{bad}");
        }
        assert_eq!(format_minor(5990), "59.90");
        assert_eq!(format_minor(5), "0.05");
    }

    #[test]
    fn ship_to_home_captures_on_the_first_shipment_and_ends_delivered() {
        let mut o = order(false);
        assert_eq!((o.status(), o.total()), (OrderStatus::Confirmed, 2550));
        step(&mut o, 1, ShipStatus::Picked).expect("picked");
        assert_eq!(o.status(), OrderStatus::InFulfilment);
        assert_eq!(o.payment.captured, 0);
        // A carrier scan may skip `packed`.
        step(&mut o, 1, ShipStatus::Shipped).expect("shipped");
        assert_eq!(
            (o.payment.state, o.payment.captured),
            (PayState::Captured, 2550)
        );
        // The same status again changes nothing.
        assert_eq!(o.decide_move(1, ShipStatus::Shipped, 11), Ok(None));
        // Never backwards; delivered only from shipped.
        assert!(matches!(
            o.decide_move(1, ShipStatus::Packed, 11),
            Err(Refused::Backwards { .. })
        ));
        assert!(matches!(
            o.decide_move(2, ShipStatus::Delivered, 11),
            Err(Refused::Skipped { .. })
        ));
        assert!(matches!(
            o.decide_move(2, ShipStatus::ReadyForPickup, 11),
            Err(Refused::NotOnRoute { .. })
        ));
        // Nothing can be cancelled once a parcel left.
        assert_eq!(o.decide_cancel(12), Err(Refused::AlreadyLeft(1)));
        step(&mut o, 2, ShipStatus::Shipped).expect("shipped");
        assert_eq!(o.status(), OrderStatus::Shipped);
        // Captured once.
        assert_eq!(o.payment.captured, 2550);
        step(&mut o, 1, ShipStatus::Delivered).expect("delivered");
        step(&mut o, 2, ShipStatus::Delivered).expect("delivered");
        assert_eq!(o.status(), OrderStatus::Delivered);
    }

    #[test]
    fn pay_and_collect_from_the_store_and_by_transfer() {
        let mut o = order(true);
        // The store's own part is never "shipped"; the transfer is.
        assert!(matches!(
            o.decide_move(1, ShipStatus::Shipped, 5),
            Err(Refused::NotOnRoute { .. })
        ));
        step(&mut o, 1, ShipStatus::ReadyForPickup).expect("ready");
        assert_eq!(o.payment.state, PayState::Captured);
        assert_eq!(o.status(), OrderStatus::InFulfilment);
        assert!(matches!(
            o.decide_move(2, ShipStatus::Collected, 5),
            Err(Refused::Skipped { .. })
        ));
        step(&mut o, 2, ShipStatus::Shipped).expect("transfer left the DC");
        step(&mut o, 2, ShipStatus::ReadyForPickup).expect("arrived");
        assert_eq!(o.status(), OrderStatus::ReadyForPickup);
        step(&mut o, 1, ShipStatus::Collected).expect("collected");
        step(&mut o, 2, ShipStatus::Collected).expect("collected");
        assert_eq!(o.status(), OrderStatus::Collected);
    }

    #[test]
    fn cancel_voids_the_authorization_and_ends_everything() {
        let mut o = order(false);
        step(&mut o, 1, ShipStatus::Packed).expect("packed");
        let e = o.decide_cancel(3).expect("cancellable").expect("an event");
        o.apply(&e);
        assert_eq!(
            (o.status(), o.payment.state),
            (OrderStatus::Cancelled, PayState::Voided)
        );
        assert_eq!(o.decide_cancel(4), Ok(None), "cancelling twice is a no-op");
        assert_eq!(
            o.decide_move(1, ShipStatus::Shipped, 4),
            Err(Refused::Finished("cancelled"))
        );
        assert!(o.decide_return(&[(0, 1)], loc("S1"), 4).is_err());
    }

    #[test]
    fn returns_refund_only_what_was_delivered_once() {
        let mut o = order(false);
        for s in [1, 2] {
            step(&mut o, s, ShipStatus::Shipped).expect("shipped");
        }
        // Nothing delivered yet: nothing to return.
        assert!(matches!(
            o.decide_return(&[(0, 1)], loc("S1"), 5),
            Err(Refused::TooManyReturned { can: 0, .. })
        ));
        step(&mut o, 1, ShipStatus::Delivered).expect("delivered");
        let e = o.decide_return(&[(0, 1)], loc("S1"), 6).expect("a return");
        assert!(matches!(&e, OrderEvent::Returned { refund: 1000, .. }));
        o.apply(&e);
        assert_eq!((o.returned.clone(), o.payment.refunded), (vec![1, 0], 1000));
        assert!(matches!(
            o.decide_return(&[(0, 2)], loc("S1"), 7),
            Err(Refused::TooManyReturned {
                asked: 2,
                can: 1,
                ..
            })
        ));
        assert_eq!(
            o.decide_return(&[(0, 0)], loc("S1"), 7),
            Err(Refused::EmptyReturn)
        );
        assert!(o.decide_return(&[(9, 1)], loc("S1"), 7).is_err());
        step(&mut o, 2, ShipStatus::Delivered).expect("delivered");
        let e = o
            .decide_return(&[(0, 1), (1, 1)], loc("S1"), 8)
            .expect("the rest");
        o.apply(&e);
        assert_eq!(o.status(), OrderStatus::Returned);
        assert_eq!(o.payment.refunded, o.payment.captured);
    }

    #[test]
    fn nothing_moves_before_the_payment_is_authorized_or_after_a_decline() {
        let mut o = order(false);
        o.payment.state = PayState::Pending;
        assert_eq!(o.status(), OrderStatus::PendingPayment);
        assert_eq!(
            o.decide_move(1, ShipStatus::Picked, 1),
            Err(Refused::NotPaid)
        );
        o.apply(&OrderEvent::PaymentDeclined { at_ms: 2 });
        assert_eq!(o.status(), OrderStatus::PaymentDeclined);
        assert!(o.decide_move(1, ShipStatus::Picked, 3).is_err());
        assert!(o.decide_cancel(3).is_err());
    }

    #[derive(Debug, Clone)]
    enum Cmd {
        Move(u32, ShipStatus),
        Cancel,
        Return(usize, u32),
    }

    fn cmd() -> impl Strategy<Value = Cmd> {
        let status = prop_oneof![
            Just(ShipStatus::Picked),
            Just(ShipStatus::Packed),
            Just(ShipStatus::Shipped),
            Just(ShipStatus::ReadyForPickup),
            Just(ShipStatus::Delivered),
            Just(ShipStatus::Collected),
        ];
        prop_oneof![
            6 => (1..4u32, status).prop_map(|(s, t)| Cmd::Move(s, t)),
            1 => Just(Cmd::Cancel),
            2 => (0..3usize, 0..3u32).prop_map(|(l, q)| Cmd::Return(l, q)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever the clients send, in any order: money never goes
        /// backwards or beyond what was authorized, returns never exceed
        /// deliveries, shipments only move forward, a cancelled order has
        /// nothing out of its buildings, and replaying the events gives the
        /// same order.
        #[test]
        fn any_command_sequence_keeps_the_invariants(
            pickup in any::<bool>(),
            cmds in prop::collection::vec(cmd(), 0..40),
        ) {
            let start = order(pickup);
            let mut o = start.clone();
            let mut events = Vec::new();
            for (t, c) in cmds.into_iter().enumerate() {
                let before = o.clone();
                let e = match c {
                    Cmd::Move(s, to) => o.decide_move(s, to, t as i64).ok().flatten(),
                    Cmd::Cancel => o.decide_cancel(t as i64).ok().flatten(),
                    Cmd::Return(l, q) => o.decide_return(&[(l, q)], loc("S1"), t as i64).ok(),
                };
                if let Some(e) = e {
                    o.apply(&e);
                    events.push(e);
                }
                for (a, b) in before.shipments.iter().zip(&o.shipments) {
                    prop_assert!(b.status >= a.status, "a shipment moved backwards");
                }
                prop_assert!(o.payment.captured >= before.payment.captured);
                prop_assert!(o.payment.refunded >= before.payment.refunded);
                prop_assert!(o.payment.captured <= o.payment.authorized);
                prop_assert!(o.payment.refunded <= o.payment.captured);
                for (l, line) in o.lines.iter().enumerate() {
                    let delivered: u32 = o.shipments.iter()
                        .filter(|s| s.status.done())
                        .flat_map(|s| s.lines.iter())
                        .filter(|(x, _)| *x == l)
                        .map(|(_, q)| *q)
                        .sum();
                    prop_assert!(o.returned[l] <= delivered && delivered <= line.qty);
                }
                if o.cancelled {
                    prop_assert!(o.shipments.iter().all(|s| !s.status.left()));
                    prop_assert_eq!(o.payment.captured, 0);
                }
            }
            let mut replayed = start;
            for e in &events {
                replayed.apply(e);
            }
            prop_assert_eq!(replayed, o);
        }
    }
}
