//! Placing an order: its shipments held (planned, or split from a held
//! reservation), its payment authorized, the order journaled with the
//! payment's answer, its holds confirmed.

use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::stock::{self, unsourced_error, Replans};
use super::view::order_json;
use super::{provider_error, Orders, CURRENCY};
use crate::actors::CartLine;
use crate::domain::catalog::SkuIdx;
use crate::domain::ids::{LocationId, ReservationId};
use crate::domain::order::{
    Delivery, Minor, Order, OrderEvent, OrderLine, Route, ShipStatus, Shipment,
};
use crate::domain::reservation::{Line, SplitRefused, Status, Transition};
use crate::domain::sourcing::{PlanOptions, Target};
use crate::limits::ORDER_HOLD_TTL_S;
use crate::payments::{Authorization, Authorize, Follow, PaymentProvider};
use crate::problem::{ApiError, Code, FieldError};

/// An order as its request asked for it, validated and resolved.
pub struct NewOrder {
    pub id: String,
    pub channel: Option<String>,
    pub lines: Vec<OrderLine>,
    /// Each line's SKU and quantity, for the planner.
    pub asked: Vec<(SkuIdx, u32)>,
    pub target: Target,
    /// Where its goods go, as the order keeps it.
    pub delivery: Delivery,
    pub provider: Arc<dyn PaymentProvider>,
    /// The shopper's payment details, for the providers that take them.
    pub method: Option<serde_json::Value>,
    pub options: PlanOptions,
    /// The held reservation it is made from, if any.
    pub from: Option<ReservationId>,
    pub customer: crate::domain::order::Customer,
}

/// Places `n`: the order as recorded (201), or why not; a declined payment
/// is 402 with the order, recorded declined, in its `order` member. The
/// caller checked that its id is free (`refuse_existing`: one lookup, which
/// for a new id reads the archive); a request racing it for the same id
/// authorizes under the same key and is refused when recording
/// (`order_exists`, its holds released).
pub async fn place(orders: &Orders, n: NewOrder) -> Result<Order, ApiError> {
    // Plan, then hold each shipment as its own reservation; all or none.
    // Or, with a reservation named, its lines make the shipments, split
    // into them once the payment is authorized.
    let (shipments, held, parts) = match &n.from {
        None => {
            let (shipments, held) = hold_shipments(orders, &n.asked, n.target, n.options).await?;
            (shipments, held, Vec::new())
        }
        Some(r) => {
            let (shipments, parts) =
                shipments_of_reservation(orders, r, &n.lines, &n.delivery).await?;
            (shipments, Vec::new(), parts)
        }
    };
    let now = orders.engine.clock().now_ms();
    let order = Order {
        channel: n.channel.clone(),
        customer: n.customer.clone(),
        ..Order::new(
            n.id.clone(),
            n.lines,
            n.delivery,
            shipments,
            n.provider.name().to_string(),
            now,
        )
    };
    let auth = Authorize {
        // From a reservation, the key names it too: if the split loses a
        // race, the authorization is voided, and a retry of this order id
        // with another cart must get a fresh one, not the voided answer.
        idempotency_key: match &n.from {
            None => format!("{}:authorize", n.id),
            Some(r) => format!("{}:authorize:{r}", n.id),
        },
        order: n.id.clone(),
        amount: order.total(),
        currency: CURRENCY.into(),
        method: n.method,
    };
    // A free order (a promotion) has nothing to authorize.
    let answer = if auth.amount == 0 {
        Ok(Authorization::Authorized {
            reference: String::new(),
        })
    } else {
        n.provider.authorize(&auth).await
    };
    match answer {
        Err(e) => {
            release_all(orders, &held).await;
            Err(provider_error(e))
        }
        Ok(Authorization::Declined { reason }) => {
            release_all(orders, &held).await;
            Err(declined(orders, order, n.from.as_ref(), &reason, now).await)
        }
        Ok(Authorization::Authorized { reference }) => {
            let (order, held) = match &n.from {
                None => (order, held),
                Some(r) => {
                    let p = &*n.provider;
                    split_reservation(orders, order, r, parts, p, &reference, auth.amount).await?
                }
            };
            record(orders, order, held, auth.amount, reference, now).await
        }
    }
}

/// 409 `order_exists` if order `id` exists: an order is placed once by
/// its id, whatever else a request for it says.
pub async fn refuse_existing(orders: &Orders, id: &str) -> Result<(), ApiError> {
    match orders.engine.order(id).await? {
        Some(o) => Err(ApiError::new(
            Code::OrderExists,
            format!("order {id} exists ({})", o.status().as_str()),
        )),
        None => Ok(()),
    }
}

/// The order recorded declined (nothing held for it), as the 402's
/// `order` member; a named reservation is left held until its own expiry:
/// the shopper may pay again, with another card, in a new order.
async fn declined(
    orders: &Orders,
    order: Order,
    from: Option<&ReservationId>,
    reason: &str,
    now: crate::domain::TimeMs,
) -> ApiError {
    let left = match from {
        None => "nothing is held".to_string(),
        Some(r) => format!("reservation {r} is left as it was, held until it expires"),
    };
    let mut declined = order;
    for s in &mut declined.shipments {
        s.reservation = None;
    }
    let placed = match orders
        .engine
        .place_order(declined, OrderEvent::PaymentDeclined { at_ms: now })
        .await
    {
        Ok(Ok(placed)) => placed,
        Ok(Err(x)) => return ApiError::new(Code::OrderExists, format!("order {} exists", x.0.id)),
        Err(e) => return e.into(),
    };
    ApiError::new(
        Code::PaymentDeclined,
        format!("the payment was declined: {reason}; {left}"),
    )
    .with("order", order_json(&placed))
}

/// The held reservation `r` split into the order's shipments (`parts`),
/// each shipment naming its part. Expired or released since it was read:
/// nothing is held for the order, so its authorization (`reference`) is
/// voided and the order refused.
async fn split_reservation(
    orders: &Orders,
    mut order: Order,
    r: &ReservationId,
    parts: Vec<Vec<Line>>,
    provider: &dyn PaymentProvider,
    reference: &str,
    amount: Minor,
) -> Result<(Order, Vec<ReservationId>), ApiError> {
    let refused = match stock::split(orders, r.clone(), parts, ORDER_HOLD_TTL_S).await {
        Ok(Ok(split)) => {
            for (s, part) in order.shipments.iter_mut().zip(&split) {
                s.reservation = Some(part.as_str().to_string());
            }
            return Ok((order, split));
        }
        Ok(Err(SplitRefused::NotHeld(st))) => not_held(r, st),
        Ok(Err(SplitRefused::LinesDiffer)) => ApiError::new(
            Code::ReservationNotHeld,
            format!("reservation {r} changed while the order was placed"),
        ),
        Err(e) => e,
    };
    let id = &order.id;
    void_quietly(provider, id, &format!("{id}:{r}"), reference, amount).await;
    Err(refused)
}

/// Records the authorized order, then confirms its holds (`held`). Not
/// recorded, the holds go back at once; recorded, a hold that cannot be
/// confirmed now is left to the retry job's reconciliation.
async fn record(
    orders: &Orders,
    order: Order,
    held: Vec<ReservationId>,
    amount: Minor,
    reference: String,
    now: crate::domain::TimeMs,
) -> Result<Order, ApiError> {
    let placed = orders
        .engine
        .place_order(
            order,
            OrderEvent::PaymentAuthorized {
                amount,
                reference,
                at_ms: now,
            },
        )
        .await;
    let placed = match placed {
        Ok(Ok(o)) => o,
        Err(e) => {
            // Not recorded, or not known to be (the journal refused or
            // failed): give the stock back now (a poisoned journal refuses
            // the releases, and the holds expire); a retry with the same
            // id authorizes with the same key, so it is never charged
            // twice.
            release_all(orders, &held).await;
            return Err(e.into());
        }
        Ok(Err(exists)) => {
            // Another request placed this id meanwhile.
            release_all(orders, &held).await;
            return Err(ApiError::new(
                Code::OrderExists,
                format!("order {} exists", exists.0.id),
            ));
        }
    };
    // Recorded: the order is placed, whatever its holds say now. A hold
    // not confirmed here (the engine busy, or it expired while the
    // payment was authorized) is left to the retry job's reconciliation,
    // which confirms it if it is still held or names it lost; answering
    // 503 would tell the client that nothing was done.
    for r in &held {
        let confirmed = stock::transition(orders, r.clone(), Transition::Confirm).await;
        if !matches!(confirmed, Ok(true)) {
            tracing::warn!(order = %placed.id, reservation = %r, ?confirmed, "an order's hold was not confirmed: left to the reconciliation");
            orders.unsettled_since.failed(placed.updated_ms);
        }
    }
    Ok(placed)
}

/// Releases the reservations of `held` (a failed or declined placement).
async fn release_all(orders: &Orders, held: &[ReservationId]) {
    for r in held {
        // A release that fails leaves a hold that expires by its TTL.
        let _ = stock::transition(orders, r.clone(), Transition::Release).await;
    }
}

fn not_held(r: &ReservationId, st: Status) -> ApiError {
    ApiError::new(
        Code::ReservationNotHeld,
        format!(
            "reservation {r} is {}: only a held reservation can become an order",
            st.as_str()
        ),
    )
    .with("reservation_status", json!(st.as_str()))
}

/// Voids an authorization that nothing will use (`key`: the order and the
/// reservation it was for); a failure is logged (the provider lets an
/// unused authorization lapse on its own).
async fn void_quietly(
    p: &dyn PaymentProvider,
    order: &str,
    key: &str,
    reference: &str,
    amount: Minor,
) {
    if reference.is_empty() {
        return;
    }
    let void = Follow {
        idempotency_key: format!("{key}:void"),
        order: order.to_string(),
        reference: reference.to_string(),
        currency: CURRENCY.into(),
        amount,
    };
    if let Err(e) = p.void(&void).await {
        tracing::warn!(%key, error = %e, "could not void an unused authorization");
    }
}

/// The shipments of an order made from the held reservation `rid`: one per
/// location of its lines (a delivery, a pickup at the store itself, or a
/// transfer to it), and each shipment's lines as reservation lines for the
/// split. The order must ask for exactly what the reservation holds.
async fn shipments_of_reservation(
    orders: &Orders,
    rid: &ReservationId,
    lines: &[OrderLine],
    delivery: &Delivery,
) -> Result<(Vec<Shipment>, Vec<Vec<Line>>), ApiError> {
    let field = |msg: String| {
        ApiError::validation(vec![FieldError {
            field: "reservation_id".into(),
            message: msg,
        }])
    };
    let (status, held_lines) = stock::reservation(orders, rid.clone())
        .await?
        .ok_or_else(|| field(format!("no reservation {rid}")))?;
    if status != Status::Held {
        return Err(not_held(rid, status));
    }
    same_goods(lines, &held_lines).map_err(field)?;
    // One shipment per location, in the order the reservation names them.
    let mut groups: Vec<(LocationId, Vec<Line>)> = Vec::new();
    for l in &held_lines {
        match groups.iter_mut().find(|g| g.0 == l.location) {
            Some(g) => g.1.push(l.clone()),
            None => groups.push((l.location.clone(), vec![l.clone()])),
        }
    }
    let pickup = match delivery {
        Delivery::Pickup { location } => Some(location),
        Delivery::Ship { .. } => None,
    };
    // The day's capacity is not asked here, unlike a planned order: the
    // stock is already held for this shopper; the order counts against it
    // all the same once placed.
    let c = orders.engine.catalog();
    if let Some(p) = pickup {
        match c.location_idx(p.as_str()).and_then(|i| c.location(i)) {
            Some((_, l)) if l.active && l.pickup => {}
            _ => {
                return Err(ApiError::validation(vec![FieldError {
                    field: "delivery.location".into(),
                    message: "is not an active location with a pickup counter".into(),
                }]))
            }
        }
    }
    // What is left to place of each order line.
    let mut left: Vec<u32> = lines.iter().map(|l| l.qty).collect();
    let mut shipments = Vec::with_capacity(groups.len());
    for (n, (location, held)) in groups.iter().enumerate() {
        let route = match pickup {
            None => Route::Deliver,
            Some(p) if p == location => Route::PickupHere,
            Some(_) => Route::Transfer,
        };
        let can = c
            .location_idx(location.as_str())
            .and_then(|i| c.location(i))
            .is_some_and(|(_, l)| l.active && (route == Route::PickupHere || l.ship));
        if !can {
            return Err(field(format!(
                "holds stock at {location}, which is inactive or does not ship"
            )));
        }
        let mine = order_lines_of(held, lines, &mut left);
        shipments.push(Shipment {
            id: n as u32 + 1,
            location: location.clone(),
            route,
            lines: mine,
            status: ShipStatus::Pending,
            reservation: None,
            parcel: None,
        });
    }
    let parts = groups
        .into_iter()
        .map(|(_, held)| {
            held.into_iter()
                .map(|l| Line {
                    requested: l.qty,
                    ..l
                })
                .collect()
        })
        .collect();
    Ok((shipments, parts))
}

/// Whether the order asks for exactly what the reservation holds (each
/// SKU's quantity); why not, if not.
fn same_goods(lines: &[OrderLine], held_lines: &[Line]) -> Result<(), String> {
    let mut ordered: BTreeMap<&str, u64> = BTreeMap::new();
    for l in lines {
        *ordered.entry(l.sku.as_str()).or_default() += u64::from(l.qty);
    }
    let mut holds: BTreeMap<&str, u64> = BTreeMap::new();
    for l in held_lines {
        *holds.entry(l.sku.as_str()).or_default() += u64::from(l.qty);
    }
    if ordered != holds {
        let list = |m: &BTreeMap<&str, u64>| {
            m.iter()
                .map(|(s, q)| format!("{s} x{q}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "the order's lines must be what the reservation holds: it holds {}, the order asks {}",
            list(&holds),
            list(&ordered)
        ));
    }
    Ok(())
}

/// A shipment's order lines, (index, qty), from the reservation lines it
/// ships (`held`): each taken from the order's lines of its SKU, first
/// line first, out of what is `left` of each.
fn order_lines_of(held: &[Line], lines: &[OrderLine], left: &mut [u32]) -> Vec<(usize, u32)> {
    let mut mine: Vec<(usize, u32)> = Vec::new();
    for h in held {
        let mut want = h.qty;
        for (k, l) in lines.iter().enumerate() {
            if want == 0 {
                break;
            }
            if l.sku != h.sku || left[k] == 0 {
                continue;
            }
            let take = want.min(left[k]);
            left[k] -= take;
            want -= take;
            match mine.iter_mut().find(|x| x.0 == k) {
                Some(x) => x.1 += take,
                None => mine.push((k, take)),
            }
        }
    }
    mine.sort_unstable();
    mine
}

/// Plans the cart and holds each planned shipment as a reservation (a
/// split line's part in the shipment of its location, with its share of
/// the line's quantity). If a hold fails (the stock moved), releases what
/// was held and plans again.
async fn hold_shipments(
    orders: &Orders,
    asked: &[(SkuIdx, u32)],
    target: Target,
    options: PlanOptions,
) -> Result<(Vec<Shipment>, Vec<ReservationId>), ApiError> {
    let mut replans = Replans::default();
    loop {
        let plan = replans
            .plan(&orders.engine, asked, &[], target, options)
            .await?;
        if !plan.unsourced.is_empty() {
            return Err(unsourced_error(
                &orders.engine.catalog(),
                asked,
                &plan.unsourced,
                "the eligible locations cannot serve every line: nothing is held",
            ));
        }
        let mut held = Vec::new();
        let mut shipments = Vec::new();
        let mut moved = false;
        for (n, sh) in plan.shipments.iter().enumerate() {
            let cart: Vec<CartLine> = sh
                .lines
                .iter()
                .map(|&(k, qty)| CartLine::on_hand(asked[k].0, sh.location, qty))
                .collect();
            match stock::hold(orders, &cart, ORDER_HOLD_TTL_S).await {
                Ok(Some(r)) => {
                    let location = orders
                        .engine
                        .catalog()
                        .location(sh.location)
                        .map(|l| l.0.clone())
                        .ok_or_else(|| ApiError::new(Code::Unavailable, "location"))?;
                    let route = match target {
                        Target::Deliver { .. } => Route::Deliver,
                        Target::Pickup { .. } if sh.transfer => Route::Transfer,
                        Target::Pickup { .. } => Route::PickupHere,
                    };
                    shipments.push(Shipment {
                        id: n as u32 + 1,
                        location,
                        route,
                        lines: sh.lines.clone(),
                        status: ShipStatus::Pending,
                        reservation: Some(r.as_str().to_string()),
                        parcel: None,
                    });
                    held.push(r);
                }
                Ok(None) => {
                    moved = true;
                    break;
                }
                Err(e) => {
                    release_all(orders, &held).await;
                    return Err(e);
                }
            }
        }
        if !moved {
            return Ok((shipments, held));
        }
        release_all(orders, &held).await;
        replans.moved(
            ApiError::new(
                Code::InsufficientStock,
                "the stock kept moving while the order was placed: nothing is held",
            )
            .with("lines", json!([])),
        )?;
    }
}
