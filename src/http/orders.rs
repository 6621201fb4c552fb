//! `/v1/orders`: the order endpoints (api.md, Orders). Each parses and
//! validates its request, checks the token's reach, calls the order
//! workflow (`crate::orders`) and renders its answer.

use serde_json::{json, Value};
use std::sync::{Arc, LazyLock};

use super::error::{json_response, ApiError, ApiResult, Code};
use super::input::{cart_lines, page_limit, parse_object, path_id, query_param, Errors};
use super::inventory::resolve_sku;
use super::sourcing::{resolve_target, split_lines, TargetInput};
use super::{AppState, Request};
use crate::actors::EngineError;
use crate::clock::parse_rfc3339;
use crate::config::Role;
use crate::domain::address::Address;
use crate::domain::catalog::SkuIdx;
use crate::domain::ids::{LocationId, ReservationId, SkuId};
use crate::domain::order::{parse_minor, Delivery, Minor, Order, OrderLine, ShipStatus};
use crate::domain::order::{phone_digits, Customer, OrderQuery, OrderStatus};
use crate::domain::sourcing::{PlanOptions, Target};
use crate::domain::TimeMs;
use crate::limits::PAYMENT_METHOD_MAX;
use crate::limits::PICKUPS_MAX;
use crate::limits::QTY_MAX;
use crate::limits::{
    EMAIL_MAX, EMAIL_PATTERN, ORDER_PAGE_DEFAULT, ORDER_PAGE_MAX, PHONE_MAX, PHONE_PATTERN,
};
use crate::orders::place::NewOrder;
use crate::orders::shipments::move_shipment;
use crate::orders::view::order_json;
use crate::orders::{not_found, provider};
use crate::payments::PaymentProvider;

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

pub async fn get(state: &AppState, req: &Request, id: &str) -> ApiResult {
    let id = path_id(id, "id")?;
    let o = state
        .engine
        .order(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    store_may(req, &o, None)?;
    Ok(json_response(200, &order_json(&o)))
}

/// `POST /v1/orders`: 201 with the order placed.
pub async fn create(state: &Arc<AppState>, req: &Request) -> ApiResult {
    req.principal.require_channel()?;
    // An identifier (api.md), or 422. An order is placed once by its id:
    // a repeat answers 409 order_exists whatever its key.
    super::idempotency::idempotency_key(req)?;
    let new = new_order(state, req).await?;
    let placed = crate::orders::place::place(&state.orders, new).await?;
    let mut resp = json_response(201, &order_json(&placed));
    if let Ok(loc) = format!("/v1/orders/{}", placed.id).parse() {
        resp.headers_mut().insert(warp::http::header::LOCATION, loc);
    }
    Ok(resp)
}

/// The order a request asks for: every field checked (all the errors in
/// one 422), its SKUs and destination resolved.
async fn new_order(state: &AppState, req: &Request) -> Result<NewOrder, ApiError> {
    let m = parse_object(&req.body)?;
    let mut e = Errors::default();
    let id = e.id(&m, "id", "", true);
    let wanted = priced_lines(&mut e, &m);
    let (delivery, address) = delivery_of(&mut e, &m);
    let channel = e.id(&m, "channel", "", false);
    let provider = provider_of(state, &mut e, &m, channel.as_deref(), &delivery, &address);
    let method = method_of(&mut e, &m, provider.as_deref());
    // Lines sourced by the planner may be split across locations unless
    // the order says no (`[sourcing] split_lines` otherwise).
    let options = PlanOptions {
        explain: false,
        split_lines: split_lines(&mut e, &m),
    };
    let from = reservation_of(&mut e, &m);
    let customer = customer_of(&mut e, &m);
    e.into_result()?;
    let (Some(id), Some(delivery), Some(provider)) = (id, delivery, provider) else {
        return Err(ApiError::new(Code::ValidationFailed, "order"));
    };
    // Taken before its SKUs and destination are looked up.
    crate::orders::place::refuse_existing(&state.orders, &id).await?;
    let r = resolved(state, &wanted, delivery, address)?;
    Ok(NewOrder {
        id,
        channel,
        lines: r.lines,
        asked: r.asked,
        target: r.target,
        delivery: r.delivery,
        provider,
        method,
        options,
        from,
        customer,
    })
}

/// Whether `v` is at most `max` characters and matches `re` (a pattern
/// of limits.rs, as the OpenAPI document states it; `None` only if one
/// failed to compile, then nothing does).
fn patterned(v: &str, re: &Option<regex::Regex>, max: usize) -> bool {
    v.chars().count() <= max && re.as_ref().is_some_and(|r| r.is_match(v))
}

const EMAIL_RULE: &str = "must be an email address (name@domain), at most 254 characters";
const PHONE_RULE: &str =
    "must be a phone number: digits, spaces and + ( ) . -, at least 4 digits, at most 32 characters";

fn email_ok(v: &str) -> bool {
    static RE: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(EMAIL_PATTERN).ok());
    patterned(v, &RE, EMAIL_MAX)
}

fn phone_ok(v: &str) -> bool {
    static RE: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(PHONE_PATTERN).ok());
    patterned(v, &RE, PHONE_MAX)
}

/// The optional `customer` `{email?, phone?}`.
fn customer_of(e: &mut Errors, m: &serde_json::Map<String, Value>) -> Customer {
    let c = match m.get("customer") {
        None | Some(Value::Null) => return Customer::default(),
        Some(Value::Object(c)) => c,
        Some(_) => {
            e.add(
                "customer",
                "must be an object: {email, phone}, each optional",
            );
            return Customer::default();
        }
    };
    let mut field = |key: &str, ok: fn(&str) -> bool, rule: &str| match c.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) if ok(v) => Some(v.clone()),
        Some(_) => {
            e.add(format!("customer.{key}"), rule);
            None
        }
    };
    Customer {
        email: field("email", email_ok, EMAIL_RULE),
        phone: field("phone", phone_ok, PHONE_RULE),
    }
}

/// `GET /v1/orders?id=&email=&phone=&status=&location=&from=&to=&limit=&cursor=`:
/// an order search, newest first, a bounded page at a time (api.md,
/// "Finding orders"). An admin or a channel token searches every order;
/// a store token those its store ships or hands over (`location` its own,
/// the default).
pub async fn search(state: &Arc<AppState>, req: &Request) -> ApiResult {
    let q = req.query.as_deref().unwrap_or("");
    let location = query_param(q, "location");
    let location = match &req.principal.role {
        Role::Store(own) => {
            if location.as_deref().is_some_and(|l| l != own.as_str()) {
                return Err(super::auth::forbidden(
                    "a store token finds its own location's orders only",
                ));
            }
            Some(own.as_str().to_string())
        }
        _ => location.map(|l| l.into_owned()),
    };
    let mut e = Errors::default();
    let mut id_of = |name: &str, v: String| match path_id(&v, name) {
        Ok(v) => Some(v),
        Err(err) => {
            e.0.extend(err.errors);
            None
        }
    };
    let id_prefix = query_param(q, "id").and_then(|v| id_of("id", v.into_owned()));
    let location = location.and_then(|l| id_of("location", l));
    // A form-encoded space is `+` (query strings keep `+` as it is): in a
    // phone number past its first character, `+` can only be a space.
    let phone = query_param(q, "phone").and_then(|v| {
        let mut spaced = v.chars();
        let v: String = spaced
            .next()
            .into_iter()
            .chain(spaced.map(|c| if c == '+' { ' ' } else { c }))
            .collect();
        if phone_ok(&v) {
            return Some(v);
        }
        e.add("phone", PHONE_RULE);
        None
    });
    let mut checked = |name: &str, ok: fn(&str) -> bool, rule: &str| {
        let v = query_param(q, name)?;
        if ok(&v) {
            return Some(v.into_owned());
        }
        e.add(name, rule);
        None
    };
    let email = checked("email", email_ok, EMAIL_RULE);
    let status = checked("status", |v| OrderStatus::parse(v).is_some(), STATUS_RULE)
        .and_then(|s| OrderStatus::parse(&s));
    let mut time = |name: &str| {
        let v = query_param(q, name)?;
        let t = parse_rfc3339(&v);
        if t.is_none() {
            e.add(name, "must be an RFC 3339 date-time");
        }
        t
    };
    let (from_ms, to_ms) = (time("from"), time("to"));
    let limit = page_limit(&mut e, q, ORDER_PAGE_DEFAULT, ORDER_PAGE_MAX);
    let before = query_param(q, "cursor").and_then(|c| {
        let parsed = c
            .split_once('.')
            .filter(|(t, _)| (1..=15).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(t, id)| Some((t.parse::<TimeMs>().ok()?, path_id(id, "cursor").ok()?)));
        if parsed.is_none() {
            e.add("cursor", "must be a next_cursor this endpoint answered");
        }
        parsed
    });
    e.into_result()?;
    let query = OrderQuery {
        id_prefix,
        email,
        phone_digits: phone.map(|p| phone_digits(&p)),
        status,
        location: location.and_then(|l| LocationId::parse(&l).ok()),
        from_ms,
        to_ms,
    };
    // Up to ORDER_SEARCH_ARCHIVE_SCAN archive reads: on the blocking
    // pool, not a request thread.
    let engine = state.engine.clone();
    let (orders, next) =
        tokio::task::spawn_blocking(move || engine.search_orders(&query, before, limit))
            .await
            .map_err(|_| EngineError::Stopped)??;
    let orders: Vec<Value> = orders.iter().map(order_json).collect();
    Ok(json_response(
        200,
        &json!({
            "orders": orders,
            "next_cursor": next.map(|(t, id)| format!("{t}.{id}")),
        }),
    ))
}

const STATUS_RULE: &str = "must be one of pending_payment, payment_declined, confirmed, in_fulfilment, shipped, ready_for_pickup, delivered, collected, cancelled, returned";

/// The order's lines: (index, SKU, qty, unit price in minor units).
fn priced_lines(
    e: &mut Errors,
    m: &serde_json::Map<String, Value>,
) -> Vec<(usize, String, u32, Minor)> {
    let mut wanted = Vec::new();
    for (i, path, o) in cart_lines(e, m, "{sku, qty, unit_price}") {
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
    wanted
}

/// Where the goods go, as asked, and the delivery address if given.
fn delivery_of(
    e: &mut Errors,
    m: &serde_json::Map<String, Value>,
) -> (Option<TargetInput>, Option<Address>) {
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
    (delivery, address)
}

/// The payment provider the order names, else the one the payment rules
/// choose for its channel and where its goods go.
fn provider_of(
    state: &AppState,
    e: &mut Errors,
    m: &serde_json::Map<String, Value>,
    channel: Option<&str>,
    delivery: &Option<TargetInput>,
    address: &Option<Address>,
) -> Option<Arc<dyn PaymentProvider>> {
    let provider_name = match m.get("payment") {
        Some(Value::Object(p)) if p.get("provider").is_some_and(|v| !v.is_null()) => {
            e.string(p, "provider", "payment", 64, true)
        }
        Some(Value::Object(_)) => {
            let country = match delivery {
                Some(TargetInput::Pickup(l)) => state
                    .engine
                    .catalog()
                    .location_by_id(l)
                    .and_then(|x| x.address.as_ref())
                    .map(|a| a.country.clone()),
                _ => address.as_ref().map(|a| a.country.clone()),
            };
            let chosen = state
                .orders
                .payment_routing
                .choose(channel, country.as_deref())
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
    provider_name.as_deref().and_then(|n| {
        let p = provider(&state.orders, n);
        if p.is_none() {
            let names: Vec<&str> = state
                .orders
                .payments
                .iter()
                .map(|(n, _)| n.as_str())
                .collect();
            e.add(
                "payment.provider",
                format!(
                    "{n} is not configured here (available: {})",
                    names.join(", ")
                ),
            );
        }
        p
    })
}

/// The shopper's payment details, for the providers that take them
/// (Adyen's `paymentMethod`): passed on as they are, bounded.
fn method_of(
    e: &mut Errors,
    m: &serde_json::Map<String, Value>,
    provider: Option<&dyn PaymentProvider>,
) -> Option<Value> {
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
    if let (Some(p), None) = (provider, &method) {
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
    method
}

/// The held reservation the order is made from, if it names one.
fn reservation_of(e: &mut Errors, m: &serde_json::Map<String, Value>) -> Option<ReservationId> {
    match m.get("reservation_id") {
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
    }
}

/// An order's lines and each one's SKU for the planner, its destination
/// as the planner takes it and as the order keeps it.
struct Resolved {
    lines: Vec<OrderLine>,
    asked: Vec<(SkuIdx, u32)>,
    target: Target,
    delivery: Delivery,
}

/// The order's lines and destination resolved against the catalog.
fn resolved(
    state: &AppState,
    wanted: &[(usize, String, u32, Minor)],
    delivery: TargetInput,
    address: Option<Address>,
) -> Result<Resolved, ApiError> {
    let c = state.engine.catalog();
    let mut lines = Vec::with_capacity(wanted.len());
    let mut asked: Vec<(SkuIdx, u32)> = Vec::with_capacity(wanted.len());
    for (i, sku, qty, price) in wanted {
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
    let target =
        resolve_target(&c, delivery).map_err(|e| e.with("field", json!("delivery.location")))?;
    Ok(Resolved {
        lines,
        asked,
        target,
        delivery: kept,
    })
}

pub async fn shipment_event(state: &AppState, req: &Request, id: &str, n: &str) -> ApiResult {
    let id = path_id(id, "id")?;
    let n: u32 = n
        .parse()
        .map_err(|_| ApiError::new(Code::NotFound, format!("no shipment {n}")))?;
    let o = state
        .engine
        .order(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
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
    let o = move_shipment(&state.orders, o, n, to).await?;
    Ok(json_response(200, &order_json(&o)))
}

/// `GET /v1/orders/{id}/shipments/{n}/label`: the label to print.
pub async fn get_label(state: &AppState, req: &Request, id: &str, n: &str) -> ApiResult {
    let id = path_id(id, "id")?;
    let o = state
        .engine
        .order(&id)
        .await?
        .ok_or_else(|| not_found(&id))?;
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
    let data = state
        .orders
        .shipping
        .label(&id, p.0, &p.1.format)
        .map_err(|e| {
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

/// `POST /v1/orders/{id}/returns` `{"location", "lines"}`: goods taken back
/// at a counter.
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
    let o = crate::orders::returns::take(&state.orders, &id, location, &wanted).await?;
    Ok(json_response(200, &order_json(&o)))
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
    let o = crate::orders::returns::settle_refund(&state.orders, &id, &key, made).await?;
    Ok(json_response(200, &order_json(&o)))
}

/// `POST /v1/orders/{id}/cancel`: the order cancelled before anything left.
pub async fn cancel(state: &AppState, req: &Request, id: &str) -> ApiResult {
    req.principal.require_channel()?;
    let id = path_id(id, "id")?;
    let o = crate::orders::cancel::cancel(&state.orders, &id).await?;
    Ok(json_response(200, &order_json(&o)))
}

/// `GET /v1/locations/{id}/pickups`: the store's open pickups (pay and
/// collect orders not yet collected, cancelled or declined), for its
/// counter and its board. Admin, or the store's own token.
pub async fn pickups(state: &AppState, req: &Request, id: &str) -> ApiResult {
    let id = path_id(id, "location")?;
    req.principal.require_location(&id)?;
    let loc =
        LocationId::parse(&id).map_err(|_| ApiError::new(Code::ValidationFailed, "location"))?;
    if state.engine.catalog().location_idx(&id).is_none() {
        return Err(ApiError::new(Code::NotFound, format!("no location {id}")));
    }
    let ((day, taken), open) = state.engine.pickups_at(&loc, PICKUPS_MAX).await?;
    let list: Vec<Value> = open.iter().map(order_json).collect();
    let capacity = {
        let c = state.engine.catalog();
        c.location_idx(&id)
            .and_then(|i| c.location(i))
            .and_then(|(_, l)| l.daily_capacity)
    };
    Ok(json_response(
        200,
        &json!({"location": id, "pickups": list, "today": {
            "date": crate::domain::rfc3339(day * 86_400_000).get(..10),
            "orders": taken,
            "daily_capacity": capacity,
        }}),
    ))
}
