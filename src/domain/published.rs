//! The events published to the rest of the business (api.md, Events):
//! what each committed fact means outside, in commit order.
//!
//! One derivation, as for the movement history: whoever applies the
//! journal (the snapshotter's copy, on a leader and on a follower alike)
//! calls `Watch::derive` with each fact, the model after it and the
//! records it moved (`Moved`). It reads no clock and nothing but these,
//! so every node derives the same events from the same journal, and
//! numbering them in order (`Model::events_published`) gives every node
//! the same ids.

use ahash::AHashMap;
use serde::Serialize;
use serde_json::{json, Value};

use super::catalog::SkuIdx;
use super::event::{Event, SupplyFact, TransferFact};
use super::history::Moved;
use super::ids::{LocationId, ReservationId};
use super::model::Model;
use super::order::{Happened, Order, OrderEvent, ShipStatus};
use super::reservation::Status;
use super::stock::{StockDelta, StockRecord};
use super::TimeMs;

/// Declares `Kind` with its wire names, from one list.
macro_rules! kinds {
    ($($name:ident => $wire:literal,)*) => {
        /// An event's type (api.md lists them).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($name,)*
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$name,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$name => $wire,)*
                }
            }
        }
    };
}

kinds! {
    StockChanged => "stock.changed",
    StockOut => "stock.out",
    StockBack => "stock.back",
    StockLow => "stock.low",
    ReservationHeld => "reservation.held",
    ReservationConfirmed => "reservation.confirmed",
    ReservationReleased => "reservation.released",
    ReservationExpired => "reservation.expired",
    ReservationFulfilled => "reservation.fulfilled",
    ReservationExtended => "reservation.extended",
    ReservationSplit => "reservation.split",
    ReservationConverted => "reservation.converted",
    OrderPlaced => "order.placed",
    OrderPaid => "order.paid",
    OrderPaymentDeclined => "order.payment_declined",
    OrderCaptured => "order.captured",
    OrderCancelled => "order.cancelled",
    OrderReturned => "order.returned",
    OrderRefunded => "order.refunded",
    ShipmentLabelled => "shipment.labelled",
    ShipmentPicked => "shipment.picked",
    ShipmentPacked => "shipment.packed",
    ShipmentShipped => "shipment.shipped",
    ShipmentReadyForPickup => "shipment.ready_for_pickup",
    ShipmentDelivered => "shipment.delivered",
    ShipmentCollected => "shipment.collected",
    TransferRequested => "transfer.requested",
    TransferShipped => "transfer.shipped",
    TransferReceived => "transfer.received",
    TransferCancelled => "transfer.cancelled",
    SupplyExpected => "supply.expected",
    SupplyReceived => "supply.received",
    SupplyCancelled => "supply.cancelled",
}

impl Kind {
    /// Its number as stored (its place in `ALL`: new kinds go last).
    pub fn code(self) -> u16 {
        Kind::ALL.iter().position(|k| *k == self).unwrap_or(0) as u16
    }

    pub fn of_code(c: u16) -> Option<Kind> {
        Kind::ALL.get(usize::from(c)).copied()
    }

    /// Whether `pattern` names it: its type, or a family (`stock.*`), or
    /// every one (`*`).
    pub fn matches(self, pattern: &str) -> bool {
        let name = self.as_str();
        match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == pattern,
        }
    }

    /// Every name a filter may hold: each type, each family (`stock.*`),
    /// and `*`.
    pub fn patterns() -> Vec<String> {
        let mut v: Vec<String> = Kind::ALL.iter().map(|k| k.as_str().to_string()).collect();
        for k in Kind::ALL {
            let family = format!("{}.*", k.as_str().split('.').next().unwrap_or(""));
            if !v.contains(&family) {
                v.push(family);
            }
        }
        v.push("*".into());
        v
    }

    /// Whether `pattern` is one of `patterns`.
    pub fn is_pattern(pattern: &str) -> bool {
        Kind::ALL.iter().any(|k| k.as_str() == pattern)
            || pattern == "*"
            || pattern.strip_suffix(".*").is_some_and(|f| {
                Kind::ALL
                    .iter()
                    .any(|k| k.as_str().split('.').next() == Some(f))
            })
    }

    /// The event of what an order's fact did (none for a shipment back
    /// to pending, which publishes nothing).
    pub fn of_happened(h: Happened) -> Option<Kind> {
        Some(match h {
            Happened::Placed => Kind::OrderPlaced,
            Happened::Paid => Kind::OrderPaid,
            Happened::PaymentDeclined => Kind::OrderPaymentDeclined,
            Happened::Captured { .. } => Kind::OrderCaptured,
            Happened::Shipment { to, .. } => return Kind::of_shipment(to),
            Happened::Labelled { .. } => Kind::ShipmentLabelled,
            Happened::Cancelled => Kind::OrderCancelled,
            Happened::Returned => Kind::OrderReturned,
            Happened::Refunded => Kind::OrderRefunded,
        })
    }

    fn of_shipment(s: ShipStatus) -> Option<Kind> {
        Some(match s {
            ShipStatus::Pending => return None,
            ShipStatus::Picked => Kind::ShipmentPicked,
            ShipStatus::Packed => Kind::ShipmentPacked,
            ShipStatus::Shipped => Kind::ShipmentShipped,
            ShipStatus::ReadyForPickup => Kind::ShipmentReadyForPickup,
            ShipStatus::Delivered => Kind::ShipmentDelivered,
            ShipStatus::Collected => Kind::ShipmentCollected,
        })
    }
}

/// One event as derived, before it has its number.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub kind: Kind,
    /// When its fact happened (the fact's own time).
    pub at_ms: TimeMs,
    /// The locations it concerns: a store token sees it if its own is
    /// one of them (a network-wide one names none).
    pub locations: Vec<LocationId>,
    /// Its `data`: a JSON object's text.
    pub data: String,
}

/// `stock.changed`'s data: a record's figures after the change.
#[derive(Serialize)]
struct Figures<'a> {
    location: &'a str,
    sku: &'a str,
    on_hand: i64,
    reserved: i64,
    available: i64,
    version: u64,
    #[serde(skip_serializing_if = "is_zero")]
    unsellable: i64,
    #[serde(skip_serializing_if = "is_zero")]
    in_transit: i64,
    #[serde(skip_serializing_if = "is_zero")]
    incoming: i64,
    #[serde(skip_serializing_if = "is_zero")]
    backordered: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// The availability a record had before `d` made it `after`.
fn available_before(after: &StockRecord, d: &StockDelta) -> i64 {
    let unsellable = d.unsellable.map_or(0, |(_, u)| u);
    (after.on_hand
        - d.on_hand
        - (after.reserved - d.reserved)
        - (i64::from(after.safety_stock) - d.safety_stock)
        - (after.unsellable.total() - unsellable))
        .max(0)
}

/// Which way availability crossed a threshold, if it did: out (to 0),
/// back (from 0), low (to `low` or under, above 0).
fn crossing(before: i64, after: i64, low: Option<u32>) -> Option<Kind> {
    if before > 0 && after <= 0 {
        return Some(Kind::StockOut);
    }
    if before <= 0 && after > 0 {
        return Some(Kind::StockBack);
    }
    let low = i64::from(low?);
    (before > low && after <= low && after > 0).then_some(Kind::StockLow)
}

/// What derivation keeps between facts: each SKU's availability across
/// the network, as of the last fact that moved it (summed from the model
/// the first time, then kept by the changes).
#[derive(Debug, Default)]
pub struct Watch {
    network: AHashMap<SkuIdx, i64>,
    /// The newest fact's time: the time of a fact that carries none.
    last_ms: TimeMs,
}

impl Watch {
    /// Appends to `out` the events of `e`, applied to make `model`, with
    /// `moved` the records it moved.
    pub fn derive(&mut self, model: &Model, e: &Event, moved: &[Moved], out: &mut Vec<Published>) {
        let at_ms = fact_at(e).unwrap_or(self.last_ms);
        self.last_ms = self.last_ms.max(at_ms);
        let mut push = |kind: Kind, locations: Vec<LocationId>, data: Value| {
            out.push(Published {
                kind,
                at_ms,
                locations,
                data: data.to_string(),
            })
        };
        match e {
            Event::ReservationHeld { id, .. } => {
                reservation(model, id, Kind::ReservationHeld, push)
            }
            Event::ReservationStatus { id, status, .. } => {
                let kind = match status {
                    Status::Held => Kind::ReservationHeld,
                    Status::Confirmed => Kind::ReservationConfirmed,
                    Status::Released => Kind::ReservationReleased,
                    Status::Expired => Kind::ReservationExpired,
                    Status::Fulfilled => Kind::ReservationFulfilled,
                };
                reservation(model, id, kind, push)
            }
            Event::ReservationExtended { id, .. } => {
                reservation(model, id, Kind::ReservationExtended, push)
            }
            Event::ReservationSplit { from, into, .. } => {
                let mut locations: Vec<LocationId> = into
                    .iter()
                    .flat_map(|(_, lines)| lines.iter().map(|l| l.location.clone()))
                    .collect();
                dedup(&mut locations);
                let into: Vec<&str> = into.iter().map(|(id, _)| id.as_str()).collect();
                push(
                    Kind::ReservationSplit,
                    locations,
                    json!({"id": from.as_str(), "into": into}),
                )
            }
            Event::Order { id, events } => {
                if let Some(o) = model.orders.get(id) {
                    for oe in events {
                        order_event(o, oe, &mut push);
                    }
                }
            }
            Event::Transfer { id, step, .. } => transfer(model, id, step, push),
            Event::Supply { id, step, .. } => supply(model, id, step, push),
            // A SKU's safety stock or a location's changes availability
            // without moving a record: the network's figures are summed
            // again from the model, so every node, however it began,
            // judges crossings from the same figures.
            Event::SkuPut { .. } | Event::LocationPut { .. } | Event::SkusPut { .. } => {
                self.network.clear()
            }
            Event::Counted { .. } | Event::Adjusted { .. } | Event::Webhook { .. } => {}
        }
        self.stock(model, moved, at_ms, out);
    }

    /// `stock.changed` for each record moved, then the crossings of its
    /// location's and the network's availability.
    fn stock(&mut self, model: &Model, moved: &[Moved], at_ms: TimeMs, out: &mut Vec<Published>) {
        // Network-wide crossings are judged once per SKU, over the whole
        // fact: a transfer's units leaving one store and reaching another
        // in one fact is no crossing.
        let mut network: Vec<(SkuIdx, i64)> = Vec::new();
        for m in moved.iter().filter(|m| m.applied) {
            let (Some((location, _)), Some((sku, config))) =
                (model.catalog.location(m.location), model.catalog.sku(m.sku))
            else {
                continue;
            };
            let a = &m.after;
            let after = a.available();
            let before = available_before(a, &m.delta);
            let figures = Figures {
                location: location.as_str(),
                sku: sku.as_str(),
                on_hand: a.on_hand,
                reserved: a.reserved,
                available: after,
                version: a.version,
                unsellable: a.unsellable.total(),
                in_transit: a.in_transit,
                incoming: a.incoming,
                backordered: a.backordered,
            };
            out.push(Published {
                kind: Kind::StockChanged,
                at_ms,
                locations: vec![location.clone()],
                data: serde_json::to_string(&figures).unwrap_or_default(),
            });
            let low = config.low_stock.and_then(|l| l.location);
            if let Some(kind) = crossing(before, after, low) {
                out.push(Published {
                    kind,
                    at_ms,
                    locations: vec![location.clone()],
                    data: level(sku.as_str(), Some(location.as_str()), after, low),
                });
            }
            match network.iter_mut().find(|(s, _)| *s == m.sku) {
                Some((_, d)) => *d += after - before,
                None => network.push((m.sku, after - before)),
            }
        }
        for (s, change) in network {
            let Some((sku, config)) = model.catalog.sku(s) else {
                continue;
            };
            let after = match self.network.get(&s) {
                Some(n) => n + change,
                None => model.stock.records_of(s).map(|r| r.available()).sum(),
            };
            let before = after - change;
            self.network.insert(s, after);
            let low = config.low_stock.and_then(|l| l.network);
            if let Some(kind) = crossing(before, after, low) {
                out.push(Published {
                    kind,
                    at_ms,
                    locations: Vec::new(),
                    data: level(sku.as_str(), None, after, low),
                });
            }
        }
    }
}

/// A crossing's data.
fn level(sku: &str, location: Option<&str>, available: i64, low: Option<u32>) -> String {
    let mut v = json!({"sku": sku, "location": location, "available": available});
    if let Some(l) = low {
        v["threshold"] = json!(l);
    }
    v.to_string()
}

fn dedup(locations: &mut Vec<LocationId>) {
    locations.sort();
    locations.dedup();
}

/// A reservation's event: its lines and status as the fact left them.
fn reservation(
    model: &Model,
    id: &ReservationId,
    kind: Kind,
    mut push: impl FnMut(Kind, Vec<LocationId>, Value),
) {
    let Some(r) = model.reservations.get(id) else {
        return;
    };
    let mut locations: Vec<LocationId> = r.lines.iter().map(|l| l.location.clone()).collect();
    dedup(&mut locations);
    let lines: Vec<Value> = r
        .lines
        .iter()
        .map(|l| {
            let mut v =
                json!({"sku": l.sku.as_str(), "location": l.location.as_str(), "qty": l.qty});
            if l.backordered > 0 {
                v["backordered"] = json!(l.backordered);
            }
            v
        })
        .collect();
    push(
        kind,
        locations,
        json!({
            "id": r.id.as_str(),
            "status": r.status.as_str(),
            "lines": lines,
            "expires_at": super::rfc3339(r.expires_at_ms),
        }),
    )
}

/// The locations an order concerns: its shipments' and its pickup store.
fn order_locations(o: &Order) -> Vec<LocationId> {
    let mut v: Vec<LocationId> = o.shipments.iter().map(|s| s.location.clone()).collect();
    if let super::order::Delivery::Pickup { location } = &o.delivery {
        v.push(location.clone());
    }
    dedup(&mut v);
    v
}

fn order_event(o: &Order, e: &OrderEvent, push: &mut impl FnMut(Kind, Vec<LocationId>, Value)) {
    let id = o.id.as_str();
    let locations = order_locations(o);
    for h in e.happened() {
        let Some(kind) = Kind::of_happened(h) else {
            continue;
        };
        let data = match (h, e) {
            (Happened::Placed, _) => placed_data(o),
            (
                Happened::Paid,
                OrderEvent::PaymentAuthorized {
                    amount, reference, ..
                },
            ) => json!({"id": id, "amount": amount, "reference": reference}),
            (Happened::Captured { amount }, _) => json!({"id": id, "amount": amount}),
            (Happened::Shipment { id: n, .. } | Happened::Labelled { shipment: n }, _) => {
                shipment_data(o, n)
            }
            (Happened::Cancelled, OrderEvent::Cancelled { voided, .. }) => {
                json!({"id": id, "voided": voided})
            }
            (
                Happened::Returned,
                OrderEvent::Returned {
                    lines,
                    location,
                    refund,
                    owed,
                    ..
                },
            ) => {
                let returned: Vec<Value> = lines
                    .iter()
                    .map(|(line, qty)| {
                        let sku = o.lines.get(*line).map(|l| l.sku.as_str());
                        json!({"line": line, "sku": sku, "qty": qty})
                    })
                    .collect();
                json!({
                    "id": id,
                    "lines": returned,
                    "location": location.as_str(),
                    "refund": refund,
                    "refund_owed": owed.is_some(),
                })
            }
            (Happened::Refunded, OrderEvent::Returned { refund, .. }) => {
                json!({"id": id, "amount": refund})
            }
            (Happened::Refunded, OrderEvent::RefundSettled { key, .. }) => {
                json!({"id": id, "key": key})
            }
            _ => json!({"id": id}),
        };
        push(kind, locations.clone(), data);
    }
}

/// `order.placed`'s data.
fn placed_data(o: &Order) -> Value {
    let lines: Vec<Value> = o
        .lines
        .iter()
        .map(|l| json!({"sku": l.sku.as_str(), "qty": l.qty, "unit_price": l.unit_price}))
        .collect();
    let shipments: Vec<Value> = o
        .shipments
        .iter()
        .map(|s| json!({"id": s.id, "location": s.location.as_str(), "status": s.status.as_str()}))
        .collect();
    let delivery = match &o.delivery {
        super::order::Delivery::Ship { .. } => json!({"type": "ship"}),
        super::order::Delivery::Pickup { location } => {
            json!({"type": "pickup", "location": location.as_str()})
        }
    };
    json!({
        "id": o.id.as_str(),
        "channel": o.channel,
        "lines": lines,
        "shipments": shipments,
        "delivery": delivery,
        "payment": {"provider": o.payment.provider},
    })
}

fn shipment_data(o: &Order, shipment: u32) -> Value {
    let Some(s) = o.shipments.iter().find(|s| s.id == shipment) else {
        return json!({"order": o.id, "shipment": shipment});
    };
    let parcel = s
        .parcel
        .as_ref()
        .map(|p| json!({"carrier": p.carrier, "tracking": p.tracking}));
    json!({
        "order": o.id,
        "shipment": s.id,
        "status": s.status.as_str(),
        "location": s.location.as_str(),
        "parcel": parcel,
    })
}

fn transfer(
    model: &Model,
    id: &str,
    step: &TransferFact,
    mut push: impl FnMut(Kind, Vec<LocationId>, Value),
) {
    let Some(t) = model.transfers.get(id) else {
        return;
    };
    let kind = match step {
        TransferFact::Requested { .. } => Kind::TransferRequested,
        TransferFact::Shipped | TransferFact::ForOrder { .. } => Kind::TransferShipped,
        TransferFact::Received { .. } => Kind::TransferReceived,
        TransferFact::Cancelled => Kind::TransferCancelled,
    };
    let mut locations = vec![t.from.clone(), t.to.clone()];
    dedup(&mut locations);
    let mut v = json!({
        "id": t.id,
        "from": t.from.as_str(),
        "to": t.to.as_str(),
        "status": t.status.as_str(),
        "lines": t.lines,
    });
    if let Some(r) = &t.order {
        v["order"] = json!({"id": r.order, "shipment": r.shipment});
    }
    let discrepancy: Option<i64> = t.lines.iter().map(|l| l.discrepancy()).sum();
    if let Some(d) = discrepancy {
        v["discrepancy"] = json!(d);
    }
    push(kind, locations, v)
}

fn supply(
    model: &Model,
    id: &str,
    step: &SupplyFact,
    mut push: impl FnMut(Kind, Vec<LocationId>, Value),
) {
    let Some(s) = model.supplies.get(id) else {
        return;
    };
    let locations = vec![s.location.clone()];
    let base = |v: &mut Value| {
        v["id"] = json!(s.id);
        v["location"] = json!(s.location.as_str());
        v["status"] = json!(s.status.as_str());
    };
    match step {
        SupplyFact::Expected { .. } => {
            let mut v = json!({"expected_at": super::rfc3339(s.expected_ms), "lines": s.lines});
            base(&mut v);
            push(Kind::SupplyExpected, locations, v)
        }
        SupplyFact::Received {
            lines, converted, ..
        } => {
            let arrived: Vec<Value> = lines
                .iter()
                .map(|(sku, qty)| json!({"sku": sku.as_str(), "qty": qty}))
                .collect();
            let mut v = json!({"received": arrived, "lines": s.lines});
            base(&mut v);
            push(Kind::SupplyReceived, locations.clone(), v);
            for c in converted {
                push(
                    Kind::ReservationConverted,
                    locations.clone(),
                    json!({
                        "id": c.reservation.as_str(),
                        "sku": c.sku.as_str(),
                        "location": s.location.as_str(),
                        "units": c.units,
                    }),
                )
            }
        }
        SupplyFact::Cancelled => {
            let mut v = json!({"lines": s.lines});
            base(&mut v);
            push(Kind::SupplyCancelled, locations, v)
        }
    }
}

/// A fact's own time, if it carries one.
fn fact_at(e: &Event) -> Option<TimeMs> {
    Some(match e {
        Event::Counted { at_ms, .. }
        | Event::Adjusted { at_ms, .. }
        | Event::ReservationStatus { at_ms, .. }
        | Event::ReservationExtended { at_ms, .. }
        | Event::ReservationSplit { at_ms, .. }
        | Event::Transfer { at_ms, .. }
        | Event::Supply { at_ms, .. }
        | Event::Webhook { at_ms, .. } => *at_ms,
        Event::ReservationHeld { created_ms, .. } => *created_ms,
        Event::Order { events, .. } => events.iter().map(OrderEvent::at_ms).max()?,
        Event::SkuPut { .. } | Event::LocationPut { .. } | Event::SkusPut { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_types_families_and_all_and_nothing_else() {
        let all = Kind::patterns();
        assert!(all.iter().all(|p| Kind::is_pattern(p)));
        for p in ["stock.*", "order.placed", "*", "supply.*"] {
            assert!(all.iter().any(|x| x == p), "{p}");
        }
        for p in [
            "",
            "s*",
            "stock.",
            "stock.ch*",
            "nope",
            "nope.*",
            " stock.*",
        ] {
            assert!(!Kind::is_pattern(p), "{p:?}");
        }
        assert!(Kind::StockOut.matches("stock.*") && !Kind::StockOut.matches("order.*"));
        assert!(Kind::ALL
            .iter()
            .all(|k| Kind::of_code(k.code()) == Some(*k)));
    }

    #[test]
    fn crossings_are_out_back_and_low_in_that_order() {
        assert_eq!(crossing(5, 0, None), Some(Kind::StockOut));
        assert_eq!(crossing(0, 3, Some(5)), Some(Kind::StockBack));
        assert_eq!(crossing(8, 5, Some(5)), Some(Kind::StockLow));
        assert_eq!(crossing(5, 4, Some(5)), None, "low already");
        assert_eq!(crossing(8, 6, Some(5)), None);
        assert_eq!(crossing(8, 5, None), None);
    }
}
