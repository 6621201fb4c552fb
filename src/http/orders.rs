//! `/v1/orders`: orders from cart to doorstep or pickup counter (api.md,
//! Orders).
//!
//! Placing an order: plan it (the sourcing planner), hold each shipment's
//! lines as its own reservation (all shipments or none: the ones held are
//! released if another fails, then the cart is planned again), authorize
//! the payment, journal the order with the payment's answer as one record,
//! then confirm the reservations and answer. A declined payment releases
//! every hold: nothing stays held. Moving a shipment out of its building
//! fulfils its reservation (on_hand falls) and, the first time, captures the
//! payment; a cancel releases the holds and voids the authorization; a
//! return restocks where the goods came back (in the order's own journal
//! record) and refunds. Provider calls carry idempotency keys derived from
//! the order, so a retry never charges twice.

use serde_json::{json, Value};
use std::sync::Arc;

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{cart_lines, parse_object, path_id, Errors};
use super::inventory::resolve_sku;
use super::sourcing::{pickup_refused, resolve_target, split_lines, unsourced_error, TargetInput};
use super::{order_stock, AppState, Request};
use crate::actors::CartLine;
use crate::carriers::{CarrierError, LabelRequest};
use crate::clock::rfc3339;
use crate::config::Role;
use crate::domain::catalog::SkuIdx;
use crate::domain::ids::{LocationId, ReservationId, SkuId};
use crate::domain::order::{
    format_minor, parse_minor, Delivery, Minor, Order, OrderEvent, OrderLine, OwedRefund, Parcel,
    PayState, RefundOutcome, Refused, Route, ShipStatus, Shipment,
};
use crate::domain::reservation::{Line, SplitRefused, Status, Transition};
use crate::domain::sourcing::{PlanOptions, Target};
use crate::domain::TimeMs;
use crate::limits::{QTY_MAX, SOURCING_REPLANS_MAX};
use crate::payments::{Authorization, Authorize, Follow, PaymentError, PaymentProvider};
use std::collections::BTreeMap;

/// Holds of an order waiting for its payment: long enough for a slow
/// provider, short enough that a crash before the order is journaled gives
/// the stock back soon.
const ORDER_HOLD_TTL_S: u64 = 900;

/// A SKU's weight on a label when the catalog has none.
const DEFAULT_WEIGHT_G: u32 = 1000;

/// The bytes of an order's `payment.method` at most.
const PAYMENT_METHOD_MAX: usize = 4096;

/// Orders are priced in euros (api.md: `unit_price` has no currency).
const CURRENCY: &str = "EUR";

pub fn order_json(o: &Order) -> Value {
    let shipments: Vec<Value> = o
        .shipments
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "location": s.location.as_str(),
                "type": match s.route {
                    Route::Deliver => "delivery",
                    Route::PickupHere => "pickup",
                    Route::Transfer => "transfer",
                },
                "status": s.status.as_str(),
                "lines": s.lines.iter().map(|(l, q)| json!({"sku": o.lines[*l].sku.as_str(), "qty": q})).collect::<Vec<_>>(),
                "reservation_id": s.reservation,
                "parcel": s.parcel.as_ref().map(|p| json!({
                    "carrier": p.carrier, "tracking": p.tracking,
                    "label": format!("/v1/orders/{}/shipments/{}/label", o.id, s.id),
                })),
            })
        })
        .collect();
    json!({
        "id": o.id,
        "status": o.status().as_str(),
        "channel": o.channel,
        "lines": o.lines.iter().zip(&o.returned).map(|(l, r)| json!({
            "sku": l.sku.as_str(), "qty": l.qty, "unit_price": format_minor(l.unit_price), "returned": r,
        })).collect::<Vec<_>>(),
        "delivery": match &o.delivery {
            Delivery::Ship { lat, lon, address } => json!({"type": "ship", "lat": lat, "lon": lon, "address": address}),
            Delivery::Pickup { location } => json!({"type": "pickup", "location": location.as_str()}),
        },
        "total": format_minor(o.total()),
        // Returned units not back in stock yet (a cluster's restock to
        // another shard, made by the retry loop).
        "restock_pending": o.restocks_owed.iter().map(|r| u64::from(r.qty)).sum::<u64>(),
        "payment": {
            "provider": o.payment.provider,
            // The provider's reference of the authorization (Adyen's
            // pspReference): what its back office and webhooks name.
            "reference": o.payment.reference,
            "state": match o.payment.state {
                PayState::Pending => "pending",
                PayState::Authorized => "authorized",
                PayState::Declined => "declined",
                PayState::Captured => "captured",
                PayState::Voided => "voided",
            },
            "authorized": format_minor(o.payment.authorized),
            "captured": format_minor(o.payment.captured),
            "refunded": format_minor(o.payment.refunded),
            // Something left while the provider could not be reached: the
            // capture is made once it answers.
            "capture_pending": o.capture_owed() > 0,
            // Refunds of returns owed: `pending` made by itself once the
            // provider answers, `unclear` ones settled by the back office.
            "refund_pending": format_minor(o.payment.refunds_owed.iter().filter(|r| !r.unclear).map(|r| r.amount).sum()),
            "refund_unclear": format_minor(o.payment.refunds_owed.iter().filter(|r| r.unclear).map(|r| r.amount).sum()),
            "refunds_owed": o.payment.refunds_owed.iter().map(|r| json!({
                "key": r.key, "amount": format_minor(r.amount), "unclear": r.unclear,
            })).collect::<Vec<_>>(),
            "notices": o.payment.notices.iter().map(|n| json!({
                "event": n.event, "success": n.success, "reference": n.reference, "at": rfc3339(n.at_ms),
            })).collect::<Vec<_>>(),
        },
        "shipments": shipments,
        "created_at": rfc3339(o.created_ms),
        "updated_at": rfc3339(o.updated_ms),
    })
}

fn refused(r: Refused) -> ApiError {
    ApiError::new(Code::InvalidTransition, r.to_string())
}

pub(super) fn provider_error(e: PaymentError) -> ApiError {
    match e {
        PaymentError::Unavailable(m) | PaymentError::Unclear(m) => {
            ApiError::new(Code::Unavailable, m).retry_after(5)
        }
        PaymentError::Rejected(m) => ApiError::new(Code::InvalidTransition, m),
    }
}

pub(super) fn provider(state: &AppState, name: &str) -> Option<Arc<dyn PaymentProvider>> {
    state
        .payments
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p.clone())
}

/// A store token's reach over an order: the shipments its store sends,
/// and, at its pickup counter, the handing over. Admin and channel tokens
/// reach everything.
fn store_may(
    req: &Request,
    o: &Order,
    shipment: Option<(u32, ShipStatus)>,
) -> Result<(), ApiError> {
    let Role::Store(own) = &req.principal.role else {
        return req.principal.require_channel();
    };
    let counter = matches!(&o.delivery, Delivery::Pickup { location } if location == own);
    let sends = |n: u32| o.shipments.iter().any(|s| s.id == n && &s.location == own);
    let allowed = match shipment {
        // Reading: any order the store sends or hands over.
        None => counter || o.shipments.iter().any(|s| &s.location == own),
        Some((n, to)) => {
            sends(n)
                || (counter && matches!(to, ShipStatus::ReadyForPickup | ShipStatus::Collected))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(super::auth::forbidden(
            "a store token may only act on its own shipments and pickups",
        ))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(Code::NotFound, format!("no order {id}"))
}

/// `GET /v1/orders/{id}` answered from a copy of the state (a cluster
/// follower's): `None` when the copy does not hold it (passivated, or not
/// there yet: the leader answers then).
pub fn get_from(model: &crate::domain::model::Model, req: &Request, id: &str) -> Option<ApiResult> {
    let id = match path_id(id, "id") {
        Ok(id) => id,
        Err(e) => return Some(Err(e)),
    };
    let o = model.orders.get(&id)?;
    Some(store_may(req, o, None).map(|()| json_response(200, &order_json(o))))
}

pub fn get(state: &AppState, req: &Request, id: &str) -> ApiResult {
    let id = path_id(id, "id")?;
    let o = state.engine.order(&id)?.ok_or_else(|| not_found(&id))?;
    store_may(req, &o, None)?;
    Ok(json_response(200, &order_json(&o)))
}

/// Releases the reservations of `held` (a failed or declined placement).
async fn release_all(state: &AppState, held: &[ReservationId]) {
    for r in held {
        // A release that fails leaves a hold that expires by its TTL.
        let _ = order_stock::transition(state, r.clone(), Transition::Release).await;
    }
}

pub async fn create(state: &Arc<AppState>, req: &Request) -> ApiResult {
    req.principal.require_channel()?;
    // An identifier (api.md), or 422. An order is placed once by its id:
    // a repeat answers 409 order_exists whatever its key.
    super::idempotency::idempotency_key(req)?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let id = e.id(&m, "id", "", true);
    let mut wanted = Vec::new();
    for (i, path, o) in cart_lines(&mut e, &m, "{sku, qty, unit_price}") {
        let sku = e.id(o, "sku", &path, true);
        let qty = e.int(o, "qty", &path, 1, QTY_MAX, true);
        let price = match o.get("unit_price") {
            Some(Value::String(p)) => match parse_minor(p) {
                Some(v) => Some(v),
                None => {
                    e.add(
                        format!("{path}.unit_price"),
                        "must be a decimal amount with at most two decimals, e.g. \"59.90\"",
                    );
                    None
                }
            },
            _ => {
                e.add(
                    format!("{path}.unit_price"),
                    "is required: a decimal string, e.g. \"59.90\"",
                );
                None
            }
        };
        if let (Some(sku), Some(qty), Some(price)) = (sku, qty, price) {
            wanted.push((i, sku, qty as u32, price));
        }
    }
    let address = match m.get("delivery") {
        Some(Value::Object(d)) => e.address(d, "address", "delivery"),
        _ => None,
    };
    let delivery = match m.get("delivery") {
        Some(Value::Object(d)) => match d.get("type").and_then(Value::as_str) {
            Some("ship") => {
                let lat = e.float(d, "lat", "delivery", -90.0, 90.0, true);
                let lon = e.float(d, "lon", "delivery", -180.0, 180.0, true);
                lat.zip(lon).map(|(a, b)| TargetInput::Deliver(a, b))
            }
            Some("pickup") => e
                .id(d, "location", "delivery", true)
                .map(TargetInput::Pickup),
            _ => {
                e.add("delivery.type", "must be \"ship\" or \"pickup\"");
                None
            }
        },
        _ => {
            e.add(
                "delivery",
                "is required: {type: ship, lat, lon} or {type: pickup, location}",
            );
            None
        }
    };
    // The provider the order names, else the one the payment rules
    // choose for its channel and where its goods go.
    let channel = e.id(&m, "channel", "", false);
    let provider_name = match m.get("payment") {
        Some(Value::Object(p)) if p.get("provider").is_some_and(|v| !v.is_null()) => {
            e.string(p, "provider", "payment", 64, true)
        }
        Some(Value::Object(_)) => {
            let country = match &delivery {
                Some(TargetInput::Pickup(l)) => state
                    .engine
                    .catalog()
                    .location_by_id(l)
                    .and_then(|x| x.address.as_ref())
                    .map(|a| a.country.clone()),
                _ => address.as_ref().map(|a| a.country.clone()),
            };
            let chosen = state
                .payment_routing
                .choose(channel.as_deref(), country.as_deref())
                .map(String::from);
            if chosen.is_none() {
                e.add(
                    "payment.provider",
                    "is required: no payment rule chooses one for this order",
                );
            }
            chosen
        }
        _ => {
            e.add(
                "payment",
                "is required: {provider} (or {} where payment rules choose)",
            );
            None
        }
    };
    let provider = provider_name.as_deref().and_then(|n| {
        let p = provider(state, n);
        if p.is_none() {
            let names: Vec<&str> = state.payments.iter().map(|(n, _)| n.as_str()).collect();
            e.add(
                "payment.provider",
                format!(
                    "{n} is not configured here (available: {})",
                    names.join(", ")
                ),
            );
        }
        p
    });
    // The shopper's payment details, for the providers that take them
    // (Adyen's `paymentMethod`): passed on as they are, bounded.
    let method = match m.get("payment").and_then(|p| p.get("method")) {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) if v.to_string().len() <= PAYMENT_METHOD_MAX => Some(v.clone()),
        Some(Value::Object(_)) => {
            e.add(
                "payment.method",
                format!("is longer than {PAYMENT_METHOD_MAX} bytes"),
            );
            None
        }
        Some(_) => {
            e.add("payment.method", "must be an object");
            None
        }
    };
    if let (Some(p), None) = (&provider, &method) {
        if p.needs_method() {
            e.add(
                "payment.method",
                format!(
                    "is required by {}: the shopper's payment details from the checkout",
                    p.name()
                ),
            );
        }
    }
    // Lines sourced by the planner may be split across locations unless
    // the order says no (`[sourcing] split_lines` otherwise).
    let options = PlanOptions {
        explain: false,
        split_lines: split_lines(&mut e, &m),
    };
    let from = match m.get("reservation_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => match ReservationId::parse(r) {
            Ok(r) => Some(r),
            Err(_) => {
                e.add("reservation_id", "is not a reservation id");
                None
            }
        },
        Some(_) => {
            e.add(
                "reservation_id",
                "must be a string: a held reservation's id",
            );
            None
        }
    };
    e.into_result()?;
    let (Some(id), Some(delivery), Some(provider)) = (id, delivery, provider) else {
        return Err(ApiError::new(Code::ValidationFailed, "order"));
    };
    if let Some(o) = state.engine.order(&id)? {
        return Err(ApiError::new(
            Code::OrderExists,
            format!("order {id} exists ({})", o.status().as_str()),
        ));
    }

    let (lines, asked, target, delivery) = {
        let c = state.engine.catalog();
        let mut lines = Vec::with_capacity(wanted.len());
        let mut asked: Vec<(SkuIdx, u32)> = Vec::with_capacity(wanted.len());
        for (i, sku, qty, price) in &wanted {
            let s = resolve_sku(&c, sku, &format!("lines[{i}]."))?;
            asked.push((s, *qty));
            lines.push(OrderLine {
                sku: SkuId::parse(sku).map_err(|_| ApiError::new(Code::ValidationFailed, "sku"))?,
                qty: *qty,
                unit_price: *price,
            });
        }
        // What the order keeps, from what the client named.
        let kept = match &delivery {
            TargetInput::Deliver(lat, lon) => Delivery::Ship {
                lat: *lat,
                lon: *lon,
                address: address.clone(),
            },
            TargetInput::Pickup(p) => Delivery::Pickup {
                location: LocationId::parse(p)
                    .map_err(|_| ApiError::new(Code::ValidationFailed, "delivery.location"))?,
            },
        };
        let target = resolve_target(&c, delivery)
            .map_err(|e| e.with("field", json!("delivery.location")))?;
        (lines, asked, target, kept)
    };

    // Plan, then hold each shipment as its own reservation; all or none.
    // Or, with a reservation named, its lines make the shipments, split
    // into them once the payment is authorized.
    let (shipments, mut held, parts) = match &from {
        None => {
            let (shipments, held) = hold_shipments(state, &asked, target, options).await?;
            (shipments, held, Vec::new())
        }
        Some(r) => {
            let (shipments, parts) = shipments_of_reservation(state, r, &lines, &delivery).await?;
            (shipments, Vec::new(), parts)
        }
    };
    let now = state.engine.clock().now_ms();
    let order = Order {
        channel: channel.clone(),
        ..Order::new(
            id.clone(),
            lines,
            delivery,
            shipments,
            provider.name().to_string(),
            now,
        )
    };

    let auth = Authorize {
        // From a reservation, the key names it too: if the split loses a
        // race, the authorization is voided, and a retry of this order id
        // with another cart must get a fresh one, not the voided answer.
        idempotency_key: match &from {
            None => format!("{id}:authorize"),
            Some(r) => format!("{id}:authorize:{r}"),
        },
        order: id.clone(),
        amount: order.total(),
        currency: CURRENCY.into(),
        method: method.clone(),
    };
    // A free order (a promotion) has nothing to authorize.
    let answer = if auth.amount == 0 {
        Ok(Authorization::Authorized {
            reference: String::new(),
        })
    } else {
        provider.authorize(&auth).await
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            release_all(state, &held).await;
            return Err(provider_error(e));
        }
    };
    match answer {
        Authorization::Declined { reason } => {
            release_all(state, &held).await;
            // A named reservation is left held until its own expiry: the
            // shopper may pay again, with another card, in a new order.
            let left = match &from {
                None => "nothing is held".to_string(),
                Some(r) => format!("reservation {r} is left as it was, held until it expires"),
            };
            let mut declined = order;
            for s in &mut declined.shipments {
                s.reservation = None;
            }
            let placed = state
                .engine
                .place_order(declined, OrderEvent::PaymentDeclined { at_ms: now })
                .await?
                .map_err(|x| {
                    ApiError::new(Code::OrderExists, format!("order {} exists", x.0.id))
                })?;
            Err(ApiError::new(
                Code::PaymentDeclined,
                format!("the payment was declined: {reason}; {left}"),
            )
            .with("order", order_json(&placed)))
        }
        Authorization::Authorized { reference } => {
            let mut order = order;
            if let Some(r) = &from {
                let refused =
                    match order_stock::split(state, r.clone(), parts, ORDER_HOLD_TTL_S).await {
                        Ok(Ok(split)) => {
                            for (s, part) in order.shipments.iter_mut().zip(&split) {
                                s.reservation = Some(part.as_str().to_string());
                            }
                            held = split;
                            None
                        }
                        Ok(Err(SplitRefused::NotHeld(st))) => Some(not_held(r, st)),
                        Ok(Err(SplitRefused::LinesDiffer)) => Some(ApiError::new(
                            Code::ReservationNotHeld,
                            format!("reservation {r} changed while the order was placed"),
                        )),
                        Err(e) => Some(e),
                    };
                if let Some(err) = refused {
                    // Expired or released since it was read: nothing is
                    // held for the order, so its authorization goes.
                    void_quietly(
                        provider.as_ref(),
                        &id,
                        &format!("{id}:{r}"),
                        &reference,
                        auth.amount,
                    )
                    .await;
                    return Err(err);
                }
            }
            let placed = state
                .engine
                .place_order(
                    order,
                    OrderEvent::PaymentAuthorized {
                        amount: auth.amount,
                        reference,
                        at_ms: now,
                    },
                )
                .await;
            let placed = match placed {
                Ok(Ok(o)) => o,
                Err(e) => {
                    // Not recorded (the journal refused): give the stock
                    // back now; a retry with the same id authorizes with
                    // the same key, so it is never charged twice.
                    release_all(state, &held).await;
                    return Err(e.into());
                }
                Ok(Err(exists)) => {
                    // Another request placed this id meanwhile.
                    release_all(state, &held).await;
                    return Err(ApiError::new(
                        Code::OrderExists,
                        format!("order {} exists", exists.0.id),
                    ));
                }
            };
            for r in &held {
                let confirmed =
                    order_stock::transition(state, r.clone(), Transition::Confirm).await;
                if !matches!(confirmed, Ok(true)) {
                    // The order is journaled: the retry loop's next
                    // reconciliation confirms what is still held (a
                    // cluster shard moving answered 503) or names it lost.
                    state.unsettled_since.failed(placed.updated_ms);
                }
                if !confirmed? {
                    return Err(ApiError::new(
                        Code::Unavailable,
                        "a hold of the order expired before it was confirmed",
                    ));
                }
            }
            let mut resp = json_response(201, &order_json(&placed));
            if let Ok(loc) = format!("/v1/orders/{}", placed.id).parse() {
                resp.headers_mut().insert(warp::http::header::LOCATION, loc);
            }
            Ok(resp)
        }
    }
}

/// How far back a node that takes a shard over reconciles its orders'
/// holds: its owner may have died between recording an order's step and
/// the stock operation it asks of another shard (moments, or a forward's
/// timeouts), or with one failed and not yet reconciled (the retry loop's
/// round). Orders changed before were settled by their owner.
const TAKEOVER_SETTLE_MS: TimeMs = 15 * 60 * 1000;

/// Since when an engine's orders' holds may not be what the orders say
/// (`AppState::unsettled_since`), and how many failures marked it (a
/// pass of `reconcile` clears it only if none came meanwhile: the order
/// of one may have changed after the pass read the orders).
pub struct Unsettled(parking_lot::Mutex<(TimeMs, u64)>);

impl Default for Unsettled {
    fn default() -> Self {
        Unsettled(parking_lot::Mutex::new((TimeMs::MAX, 0)))
    }
}

impl Unsettled {
    /// A shard taken over at `now`.
    pub fn since_takeover(now: TimeMs) -> Self {
        Unsettled(parking_lot::Mutex::new((now - TAKEOVER_SETTLE_MS, 0)))
    }
    /// A stock operation of an order changed at `at` failed.
    pub fn failed(&self, at: TimeMs) {
        let mut m = self.0.lock();
        m.0 = m.0.min(at);
        m.1 += 1;
    }
    /// Since when, and the mark's count, if unsettled.
    pub fn get(&self) -> Option<(TimeMs, u64)> {
        let m = *self.0.lock();
        (m.0 != TimeMs::MAX).then_some(m)
    }
    /// Reconciled as of mark `seen` (`get`): settled, unless marked since.
    pub fn settled(&self, seen: (TimeMs, u64)) {
        let mut m = self.0.lock();
        if *m == seen {
            m.0 = TimeMs::MAX;
        }
    }
}

/// The holds of the orders changed at or after `since` made what their
/// orders say (`Order::hold_states`): a paid order's held holds confirmed,
/// a shipment that left fulfilled, a cancelled order's released; a hold
/// that expired before its order was confirmed is named lost. On one node
/// at its start (`Engine::reconcile_orders`) an order's holds are its own
/// engine's; on a cluster they are in other shards, and a node that takes
/// a shard over, or an engine whose order's stock operation failed, asks
/// them here. Returns (settled, lost).
pub async fn reconcile(state: &AppState, since: TimeMs) -> Result<(usize, usize), ApiError> {
    let (mut settled, mut lost) = (0, 0);
    for (order, r, want) in state.engine.holds_to_settle(since) {
        let now = order_stock::status(state, r.clone()).await?;
        let steps: &[Transition] = match (now, want) {
            (Some(Status::Held), Status::Confirmed) => &[Transition::Confirm],
            (Some(Status::Held), Status::Fulfilled) => &[Transition::Confirm, Transition::Fulfil],
            (Some(Status::Confirmed), Status::Fulfilled) => &[Transition::Fulfil],
            (Some(Status::Held | Status::Confirmed), Status::Released) => &[Transition::Release],
            (Some(Status::Expired | Status::Released), Status::Confirmed | Status::Fulfilled) => {
                lost += 1;
                tracing::warn!(%order, reservation = %r, "an order's hold expired before it was confirmed: the order has lost that stock");
                &[]
            }
            _ => &[],
        };
        for t in steps {
            order_stock::transition(state, r.clone(), *t).await?;
        }
        settled += usize::from(!steps.is_empty());
    }
    Ok((settled, lost))
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
    state: &AppState,
    rid: &ReservationId,
    lines: &[OrderLine],
    delivery: &Delivery,
) -> Result<(Vec<Shipment>, Vec<Vec<Line>>), ApiError> {
    let field = |msg: String| {
        ApiError::validation(vec![super::error::FieldError {
            field: "reservation_id".into(),
            message: msg,
        }])
    };
    let (status, held_lines) = order_stock::reservation(state, rid.clone())
        .await?
        .ok_or_else(|| field(format!("no reservation {rid}")))?;
    if status != Status::Held {
        return Err(not_held(rid, status));
    }
    let mut ordered: BTreeMap<&str, u64> = BTreeMap::new();
    for l in lines {
        *ordered.entry(l.sku.as_str()).or_default() += u64::from(l.qty);
    }
    let mut holds: BTreeMap<&str, u64> = BTreeMap::new();
    for l in &held_lines {
        *holds.entry(l.sku.as_str()).or_default() += u64::from(l.qty);
    }
    if ordered != holds {
        let list = |m: &BTreeMap<&str, u64>| {
            m.iter()
                .map(|(s, q)| format!("{s} x{q}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(field(format!(
            "the order's lines must be what the reservation holds: it holds {}, the order asks {}",
            list(&holds),
            list(&ordered)
        )));
    }
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
    let c = state.engine.catalog();
    if let Some(p) = pickup {
        match c.location_idx(p.as_str()).and_then(|i| c.location(i)) {
            Some((_, l)) if l.active && l.pickup => {}
            _ => {
                return Err(ApiError::validation(vec![super::error::FieldError {
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

/// Plans the cart and holds each planned shipment as a reservation (a
/// split line's part in the shipment of its location, with its share of
/// the line's quantity). If a hold fails (the stock moved), releases what
/// was held and plans again.
async fn hold_shipments(
    state: &AppState,
    asked: &[(SkuIdx, u32)],
    target: Target,
    options: PlanOptions,
) -> Result<(Vec<Shipment>, Vec<ReservationId>), ApiError> {
    let mut attempt = 0;
    loop {
        let plan = order_stock::plan(state, asked, target, options)
            .await?
            .map_err(pickup_refused)?;
        if !plan.unsourced.is_empty() {
            return Err(unsourced_error(
                &state.engine.catalog(),
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
                .map(|&(k, qty)| CartLine {
                    sku: asked[k].0,
                    location: sh.location,
                    qty,
                })
                .collect();
            match order_stock::hold(state, &cart, ORDER_HOLD_TTL_S).await {
                Ok(Some(r)) => {
                    let location = state
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
                    release_all(state, &held).await;
                    return Err(e);
                }
            }
        }
        if !moved {
            return Ok((shipments, held));
        }
        release_all(state, &held).await;
        if attempt >= SOURCING_REPLANS_MAX {
            return Err(ApiError::new(
                Code::InsufficientStock,
                "the stock kept moving while the order was placed: nothing is held",
            )
            .with("lines", json!([])));
        }
        attempt += 1;
    }
}

pub async fn shipment_event(state: &AppState, req: &Request, id: &str, n: &str) -> ApiResult {
    let id = path_id(id, "id")?;
    let n: u32 = n
        .parse()
        .map_err(|_| ApiError::new(Code::NotFound, format!("no shipment {n}")))?;
    let o = state.engine.order(&id)?.ok_or_else(|| not_found(&id))?;
    // Authorization before validation: a store that may not see the order
    // learns nothing of the body's rules (the move itself is checked below).
    store_may(req, &o, None)?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let to = match m.get("status").and_then(Value::as_str) {
        Some(s) => match ShipStatus::parse(s) {
            Some(t) => Some(t),
            None => {
                e.add("status", "must be one of picked, packed, shipped, delivered, ready_for_pickup, collected");
                None
            }
        },
        None => {
            e.add("status", "is required");
            None
        }
    };
    e.into_result()?;
    let Some(to) = to else {
        return Err(ApiError::new(Code::ValidationFailed, "status"));
    };
    store_may(req, &o, Some((n, to)))?;
    let o = move_shipment(state, o, n, to).await?;
    Ok(json_response(200, &order_json(&o)))
}

/// Moves shipment `n` of order `id` to `to`: an event of the API, or where
/// its carrier tracked the parcel. Packing a delivery or a transfer
/// labels it at its carrier first (when one is configured for its
/// destination and both addresses are known; otherwise it is handled by
/// hand); the first move that leaves captures the payment; a move that
/// leaves fulfils the shipment's reservation.
///
/// `o` is the order as the caller read it; the move is decided again
/// under the order's lock when it is recorded.
pub async fn move_shipment(
    state: &AppState,
    mut o: Order,
    n: u32,
    to: ShipStatus,
) -> Result<Order, ApiError> {
    let now = state.engine.clock().now_ms();
    let id = o.id.clone();
    let id = id.as_str();
    let decided = o.decide_move(n, to, now).map_err(refused)?;
    if to == ShipStatus::Packed && decided.is_some() {
        o = label(state, o, n).await?;
    }
    // Capture first (idempotent by key) when this move is the first to
    // leave: the journal then records it captured.
    // A provider that cannot be reached does not hold the goods back: the
    // move is recorded owing the capture, made later (`super::payments::retry`).
    let mut captured_here = None;
    let mut owing = false;
    if let Some(OrderEvent::ShipmentMoved { captured, .. }) = decided {
        if captured > 0 {
            let p = provider(state, &o.payment.provider).ok_or_else(|| {
                ApiError::new(Code::Unavailable, "payment provider gone").retry_after(5)
            })?;
            match p.capture(&capture_of(&o, captured)).await {
                Ok(()) => captured_here = Some((p, captured)),
                // A capture asked again is never made twice (a key, or
                // the provider answers "already captured"): one that may
                // have been made is owed all the same.
                Err(PaymentError::Unavailable(why) | PaymentError::Unclear(why)) => {
                    tracing::warn!(order = %id, error = %why, "capture deferred: the goods leave, the capture is made once the provider answers");
                    owing = true;
                }
                Err(e) => return Err(provider_error(e)),
            }
        }
    }
    let from = o.shipments.iter().find(|s| s.id == n).map(|s| s.status);
    let changed = state
        .engine
        .order_change(id, |o| {
            if owing {
                o.decide_move_owing_capture(n, to, now)
            } else {
                o.decide_move(n, to, now)
            }
        })
        .await?
        .ok_or_else(|| not_found(id))?;
    let (o, event) = match changed {
        Ok(x) => x,
        Err(r) => {
            // Refused after the capture (a cancel won the race): the money
            // goes back.
            if let Some((p, amount)) = captured_here {
                p.refund(&Follow {
                    idempotency_key: format!("{id}:capture-undo"),
                    order: id.to_string(),
                    reference: o.payment.reference.clone(),
                    currency: CURRENCY.into(),
                    amount,
                })
                .await
                .map_err(provider_error)?;
            }
            return Err(refused(r));
        }
    };
    // The goods left their building: their reservation is fulfilled.
    if let (Some(_), Some(from), Some(s)) = (event, from, o.shipments.iter().find(|s| s.id == n)) {
        if s.route.leaves_stock(from, to) {
            if let Some(r) = s
                .reservation
                .as_deref()
                .and_then(|r| ReservationId::parse(r).ok())
            {
                let fulfilled = order_stock::transition(state, r, Transition::Fulfil).await;
                if fulfilled.is_err() {
                    // Recorded as left: the retry loop fulfils it.
                    state.unsettled_since.failed(o.updated_ms);
                }
                if !fulfilled? {
                    return Err(ApiError::new(
                        Code::InvalidTransition,
                        "the shipment's reservation is not confirmed",
                    ));
                }
            }
        }
    }
    Ok(o)
}

/// The capture of order `o`'s payment (`amount`), under the key every
/// attempt of it shares.
pub(super) fn capture_of(o: &Order, amount: Minor) -> Follow {
    follow_of(o, format!("{}:capture", o.id), amount)
}

fn carrier_error(e: CarrierError) -> ApiError {
    match e {
        CarrierError::Unavailable(m) => ApiError::new(Code::Unavailable, m).retry_after(30),
        CarrierError::Rejected(m) => ApiError::new(Code::InvalidTransition, m),
    }
}

/// Labels shipment `n` of `o` at the carrier of its destination, unless
/// it has a label, goes nowhere (a pickup at the store itself), has no
/// carrier, or an address is missing (the shipment is then handled by
/// hand). The label is kept on disk before the order records it, so a
/// recorded parcel always has its label; a `packed` retried after that
/// finds the label made (one made but not recorded before a crash is made
/// again: carriers charge a label only once its parcel is scanned).
async fn label(state: &AppState, o: Order, n: u32) -> Result<Order, ApiError> {
    let Some(s) = o.shipments.iter().find(|s| s.id == n) else {
        return Ok(o);
    };
    if s.parcel.is_some() || s.route == Route::PickupHere {
        return Ok(o);
    }
    let (from, to, weight_g) = {
        let c = state.engine.catalog();
        let from = c
            .location_by_id(s.location.as_str())
            .and_then(|l| l.address.clone());
        let to = match &o.delivery {
            Delivery::Ship { address, .. } => address.clone(),
            Delivery::Pickup { location } => c
                .location_by_id(location.as_str())
                .and_then(|l| l.address.clone()),
        };
        let weight_g: u32 = s
            .lines
            .iter()
            .map(|(l, q)| {
                let w = o
                    .lines
                    .get(*l)
                    .and_then(|line| c.sku_by_id(line.sku.as_str()).and_then(|k| k.weight_g));
                w.unwrap_or(DEFAULT_WEIGHT_G).saturating_mul(*q)
            })
            .sum();
        (from, to, weight_g)
    };
    let (Some(from), Some(to)) = (from, to) else {
        return Ok(o);
    };
    let Some(carrier) = state.shipping.choose(o.channel.as_deref(), &to.country) else {
        return Ok(o);
    };
    let made = carrier
        .create_label(&LabelRequest {
            reference: format!("{}/{n}", o.id),
            from,
            to,
            weight_g,
        })
        .await
        .map_err(carrier_error)?;
    state.shipping.keep_label(&o.id, n, &made).map_err(|e| {
        ApiError::new(Code::Unavailable, format!("keeping the label: {e}")).retry_after(5)
    })?;
    let parcel = Parcel {
        carrier: carrier.name().to_string(),
        tracking: made.tracking,
        format: made.format,
    };
    tracing::info!(order = %o.id, shipment = n, carrier = %parcel.carrier, tracking = %parcel.tracking, "labelled");
    let now = state.engine.clock().now_ms();
    let (o, _) = state
        .engine
        .order_change(&o.id, |o| o.decide_label(n, parcel, now))
        .await?
        .ok_or_else(|| not_found(&o.id))?
        .map_err(refused)?;
    Ok(o)
}

/// `GET /v1/orders/{id}/shipments/{n}/label`: the label to print.
pub fn get_label(state: &AppState, req: &Request, id: &str, n: &str) -> ApiResult {
    let id = path_id(id, "id")?;
    let o = state.engine.order(&id)?.ok_or_else(|| not_found(&id))?;
    store_may(req, &o, None)?;
    let Some(p) = n
        .parse::<u32>()
        .ok()
        .and_then(|n| o.shipments.iter().find(|s| s.id == n))
        .and_then(|s| Some((s.id, s.parcel.as_ref()?)))
    else {
        return Err(ApiError::new(
            Code::NotFound,
            format!("shipment {n} of order {id} has no label"),
        ));
    };
    let data = state.shipping.label(&id, p.0, &p.1.format).map_err(|e| {
        ApiError::new(Code::Unavailable, format!("reading the label: {e}")).retry_after(5)
    })?;
    let kind = match p.1.format.as_str() {
        "PDF" => "application/pdf",
        "PNG" => "image/png",
        "XML" => "application/xml",
        _ => "application/x-zpl",
    };
    warp::http::Response::builder()
        .header("content-type", kind)
        .body(warp::hyper::Body::from(data))
        .map_err(|e| ApiError::new(Code::Unavailable, e.to_string()))
}

pub async fn cancel(state: &AppState, req: &Request, id: &str) -> ApiResult {
    req.principal.require_channel()?;
    let id = path_id(id, "id")?;
    let now = state.engine.clock().now_ms();
    let o = state.engine.order(&id)?.ok_or_else(|| not_found(&id))?;
    if let Some(OrderEvent::Cancelled { voided: true, .. }) =
        o.decide_cancel(now).map_err(refused)?
    {
        // A free order was never sent to the provider: nothing to void.
        let sent = !o.payment.reference.is_empty();
        if let Some(p) = provider(state, &o.payment.provider).filter(|_| sent) {
            p.void(&Follow {
                idempotency_key: format!("{id}:void"),
                order: id.to_string(),
                reference: o.payment.reference.clone(),
                currency: CURRENCY.into(),
                // What a void releases (a provider that charged at once,
                // Scalapay, refunds it).
                amount: o.payment.authorized,
            })
            .await
            .map_err(provider_error)?;
        }
    }
    let (o, _) = state
        .engine
        .order_change(&id, |o| o.decide_cancel(now))
        .await?
        .ok_or_else(|| not_found(&id))?
        .map_err(refused)?;
    for s in &o.shipments {
        if let Some(r) = s
            .reservation
            .as_deref()
            .and_then(|r| ReservationId::parse(r).ok())
        {
            // Released at once; a held one would also expire by its TTL.
            let released = order_stock::transition(state, r, Transition::Release).await;
            if let Err(e) = released {
                // Recorded as cancelled: the retry loop releases it.
                state.unsettled_since.failed(o.updated_ms);
                return Err(e);
            }
        }
        // A label made for it is cancelled at its carrier (nothing has
        // left, so nothing was picked up); a failure is logged: an unused
        // label is not charged.
        if let Some(p) = &s.parcel {
            if let Some(c) = state.shipping.by_name(&p.carrier) {
                if let Err(e) = c.cancel(&p.tracking).await {
                    tracing::warn!(order = %o.id, tracking = %p.tracking, error = %e, "could not cancel a label");
                }
            }
        }
    }
    Ok(json_response(200, &order_json(&o)))
}

pub async fn returns(state: &AppState, req: &Request, id: &str) -> ApiResult {
    let id = path_id(id, "id")?;
    let m = parse_object(&req.body)?;
    // Authorization before validation: a store takes returns at its own
    // counter only, whatever else the body says.
    let location = m.get("location").and_then(Value::as_str);
    if let (Role::Store(_), Some(l)) = (&req.principal.role, location) {
        req.principal.require_location(l)?;
    }
    let mut e = Errors::default();
    let location = e.id(&m, "location", "", true);
    let mut wanted = Vec::new();
    for (i, path, o) in cart_lines(&mut e, &m, "{sku, qty}") {
        let sku = e.id(o, "sku", &path, true);
        let qty = e.int(o, "qty", &path, 1, QTY_MAX, true);
        if let (Some(sku), Some(qty)) = (sku, qty) {
            wanted.push((i, sku, qty as u32));
        }
    }
    e.into_result()?;
    let location = location
        .and_then(|l| LocationId::parse(&l).ok())
        .ok_or_else(|| ApiError::new(Code::ValidationFailed, "location"))?;
    // A store takes returns at its own counter.
    if let Role::Store(_) = req.principal.role {
        req.principal.require_location(location.as_str())?;
    } else {
        req.principal.require_channel()?;
    }
    if state
        .engine
        .catalog()
        .location_idx(location.as_str())
        .is_none()
    {
        return Err(ApiError::new(
            Code::UnknownLocation,
            format!("unknown location {location}"),
        )
        .with("field", json!("location")));
    }
    let now = state.engine.clock().now_ms();
    let o = state.engine.order(&id)?.ok_or_else(|| not_found(&id))?;
    // Each returned SKU against the order's lines of it, first line first.
    let mut asked: Vec<(usize, u32)> = Vec::new();
    for (i, sku, qty) in &wanted {
        let line = o
            .lines
            .iter()
            .position(|l| l.sku.as_str() == sku)
            .ok_or_else(|| {
                ApiError::validation(vec![super::error::FieldError {
                    field: format!("lines[{i}].sku"),
                    message: format!("{sku} is not in order {id}"),
                }])
            })?;
        asked.push((line, *qty));
    }
    let decided = o
        .decide_return(&asked, location.clone(), now)
        .map_err(refused)?;
    // The goods are back at the counter: a provider that cannot be
    // reached does not send them away again. The return is recorded owing
    // its refund, made later by the retry loop under the same key; one
    // whose answer was lost where sending it again could refund twice is
    // recorded unclear, for the back office to settle.
    let mut owed = None;
    if let OrderEvent::Returned { refund, .. } = &decided {
        if *refund > 0 {
            let p = provider(state, &o.payment.provider).ok_or_else(|| {
                ApiError::new(Code::Unavailable, "payment provider gone").retry_after(5)
            })?;
            let key = o.refund_key(*refund);
            match p.refund(&follow_of(&o, key.clone(), *refund)).await {
                Ok(()) => {}
                Err(e @ PaymentError::Rejected(_)) => return Err(provider_error(e)),
                Err(e) => {
                    let unclear = matches!(e, PaymentError::Unclear(_));
                    tracing::warn!(order = %id, error = %e, unclear, "refund owed: the return is recorded, the refund made once the provider answers");
                    owed = Some(OwedRefund {
                        key,
                        amount: *refund,
                        unclear,
                    });
                }
            }
        }
    }
    let (o, _) = state
        .engine
        .order_change(&id, |o| {
            let mut e = o.decide_return(&asked, location.clone(), now)?;
            if let OrderEvent::Returned {
                owed: w, refund, ..
            } = &mut e
            {
                // What was decided again is what was sent (a return
                // racing this one would have changed the amount).
                *w = owed.clone().filter(|_| *refund > 0).map(|x| OwedRefund {
                    amount: *refund,
                    ..x
                });
            }
            Ok(Some(e))
        })
        .await?
        .ok_or_else(|| not_found(&id))?
        .map_err(refused)?;
    let o = if o.restocks_owed.is_empty() {
        o
    } else {
        settle_restocks(state, &o).await;
        state.engine.order(&id)?.unwrap_or(o)
    };
    Ok(json_response(200, &order_json(&o)))
}

/// Makes the restocks `o` owes (`Order::restocks_owed`): each a keyed
/// adjustment of its SKU's stock, recorded made on the order once its
/// shard took it; one that fails stays owed for the retry loop. Returns
/// how many were made.
pub(super) async fn settle_restocks(state: &AppState, o: &Order) -> usize {
    let mut made = 0;
    for r in &o.restocks_owed {
        if let Err(e) = order_stock::restock(state, r).await {
            tracing::warn!(order = %o.id, key = %r.key, error = %e.detail, "a restock owed: made by the retry loop");
            continue;
        }
        let now = state.engine.clock().now_ms();
        match state
            .engine
            .order_change(&o.id, |o| Ok(o.decide_restocked(&r.key, now)))
            .await
        {
            Ok(_) => made += 1,
            // Made under its key: sent again, it is not made twice.
            Err(e) => {
                tracing::warn!(order = %o.id, key = %r.key, error = %e, "a restock made but not recorded: recorded next round")
            }
        }
    }
    made
}

/// The provider's call about `o`'s payment for `amount` under `key`.
pub(super) fn follow_of(o: &Order, key: String, amount: Minor) -> Follow {
    Follow {
        idempotency_key: key,
        order: o.id.clone(),
        reference: o.payment.reference.clone(),
        currency: CURRENCY.into(),
        amount,
    }
}

/// `POST /v1/orders/{id}/refunds/settle` `{"key", "made"}` (admin): what
/// the provider's back office shows of an owed refund whose answer was
/// lost (`payment.refunds_owed[].unclear`): made (it counts as refunded)
/// or not (owed again: the retry loop makes it).
pub async fn settle_refund(state: &AppState, req: &Request, id: &str) -> ApiResult {
    req.principal.require_admin()?;
    let id = path_id(id, "id")?;
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let key = e.string(&m, "key", "", 200, true);
    let made = e.boolean(&m, "made", "");
    if matches!(m.get("made"), None | Some(Value::Null)) {
        e.add(
            "made",
            "is required: true if the provider made the refund, false if not",
        );
    }
    e.into_result()?;
    let (Some(key), Some(made)) = (key, made) else {
        return Err(ApiError::new(Code::ValidationFailed, "key, made"));
    };
    let outcome = if made {
        RefundOutcome::Made
    } else {
        RefundOutcome::NotMade
    };
    let now = state.engine.clock().now_ms();
    let (o, _) = state
        .engine
        .order_change(&id, |o| o.decide_refund(&key, outcome, now))
        .await?
        .ok_or_else(|| not_found(&id))?
        .map_err(refused)?;
    Ok(json_response(200, &order_json(&o)))
}

/// Pickups listed at most (the oldest first).
pub const PICKUPS_MAX: usize = 200;

/// `GET /v1/locations/{id}/pickups`: the store's open pickups (pay and
/// collect orders not yet collected, cancelled or declined), for its
/// counter and its board. Admin, or the store's own token.
pub fn pickups(state: &AppState, req: &Request, id: &str) -> ApiResult {
    let id = path_id(id, "location")?;
    req.principal.require_location(&id)?;
    let loc =
        LocationId::parse(&id).map_err(|_| ApiError::new(Code::ValidationFailed, "location"))?;
    if state.engine.catalog().location_idx(&id).is_none() {
        return Err(ApiError::new(Code::NotFound, format!("no location {id}")));
    }
    let list: Vec<Value> = state
        .engine
        .pickups_at(&loc, PICKUPS_MAX)
        .iter()
        .map(order_json)
        .collect();
    Ok(json_response(
        200,
        &json!({"location": id, "pickups": list}),
    ))
}

#[cfg(test)]
mod tests {
    use super::Unsettled;

    /// A pass settles the mark it read, not one a failure moved meanwhile
    /// (that failure's order may have changed after the pass read them).
    #[test]
    fn a_failure_during_a_pass_keeps_its_engine_unsettled() {
        let u = Unsettled::default();
        assert_eq!(u.get(), None);
        u.failed(500);
        let seen = u.get().expect("unsettled");
        assert_eq!(seen.0, 500);
        u.failed(700);
        u.settled(seen);
        assert_eq!(u.get().map(|m| m.0), Some(500), "the later failure is kept");
        let seen = u.get().expect("unsettled");
        u.settled(seen);
        assert_eq!(u.get(), None);
        let t = Unsettled::since_takeover(10_000_000);
        assert!(t.get().is_some_and(|m| m.0 < 10_000_000));
    }
}
