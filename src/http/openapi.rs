//! The OpenAPI 3.1 description of every endpoint, built from one table:
//! each operation's request rules as the handlers enforce them (what a
//! schema can say: lengths, ranges, patterns, required members, a null
//! member read as an absent one), and every status it may answer.

use serde_json::{json, Map, Value};

use super::route::Route;
use crate::domain::published::Kind;
use crate::domain::stock::Bucket;

use crate::limits::{
    ADDRESS_FIELD_MAX, ADJUST_NOTE_MAX, BATCH_ITEMS_MAX, CART_LINES_MAX, DIMENSION_MM_MAX,
    EMAIL_MAX, EMAIL_PATTERN, EVENTS_PAGE_DEFAULT, EVENTS_PAGE_MAX, EVENT_TYPES_MAX,
    HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX, JSON_INT_MAX, ORDER_PAGE_DEFAULT, ORDER_PAGE_MAX,
    ORDER_TIMELINE_MAX, PHONE_MAX, PHONE_PATTERN, QTY_MAX, STOCK_MAX, TRANSFER_LINES_MAX,
    TRANSFER_PAGE_DEFAULT, TRANSFER_PAGE_MAX, TTL_S_DEFAULT, TTL_S_MAX, TTL_S_MIN,
    WEBHOOK_BATCH_MAX, WEBHOOK_TYPES_MAX, WEBHOOK_URL_MAX, WEBHOOK_URL_PATTERN,
};

/// (method, route, summary, request schema, success status, response schema, error statuses)
type Op = (
    &'static str,
    Route,
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
    &'static [u16],
);

const OPS: &[Op] = &[
    (
        "put",
        Route::Sku,
        "Create or replace a SKU (admin)",
        Some("SkuInput"),
        200,
        "Sku",
        &[400, 401, 403, 408, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Sku,
        "Read a SKU",
        None,
        200,
        "Sku",
        &[401, 404, 422, 429, 503],
    ),
    (
        "put",
        Route::Location,
        "Create or replace a location (admin)",
        Some("LocationInput"),
        200,
        "Location",
        &[400, 401, 403, 408, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Location,
        "Read a location",
        None,
        200,
        "Location",
        &[401, 404, 422, 429, 503],
    ),
    (
        "get",
        Route::Locations,
        "List the locations",
        None,
        200,
        "LocationList",
        &[401, 429, 503],
    ),
    (
        "put",
        Route::Stock,
        "Count: set on_hand (and safety_stock). With counted_at, a count taken earlier than it arrives: on_hand becomes the count plus what moved after counted_at (fulfilments and sales subtract, receipts, returns and transfers in add); older than the record's last count is 409 stale_count; counted_at may reach back 48 hours and be at most 5 minutes ahead",
        Some("CountInput"),
        200,
        "StockRecord",
        &[400, 401, 403, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Stock,
        "Read a stock record (on a cluster follower: from its copy, fresh within 250 ms and past the node's own writes, answer header x-holdfast-read: follower; Cache-Control: no-cache asks the leader; with no leader to answer, from the copy whatever its age, with x-holdfast-stale-ms)",
        None,
        200,
        "StockRecord",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "post",
        Route::Adjustments,
        "Adjust on_hand with a reason (with an optional Idempotency-Key header: applied once per key of the token, kept 24 hours; the same adjustment again answers the record as it is, another under the key is 422 idempotency_key_reused). With a bucket, that bucket's unsellable units move alike: a write-off of damaged units (409 insufficient_stock if the bucket holds fewer), a receipt straight into quarantine; available does not move",
        Some("AdjustmentInput"),
        200,
        "StockRecord",
        &[400, 401, 403, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::Unsellable,
        "Set units apart from sale into a bucket (delta > 0; 409 insufficient_stock if fewer units are neither reserved nor unsellable) or back to sale (delta < 0; 409 if the bucket holds fewer). on_hand does not move; available does. Idempotency-Key as for adjustments",
        Some("UnsellableInput"),
        200,
        "StockRecord",
        &[400, 401, 403, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::History,
        "A record's movement history, newest first, a page at a time: each count, adjustment, hold, confirm, release, expiry, fulfilment and return, with the record after it, why (reason, ref) and on whose word (by). Kept beside the snapshots for [history] retention_days (90 by default); a read shows every movement durable when it came (503 with Retry-After while a restart catches up)",
        None,
        200,
        "History",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "get",
        Route::Whoami,
        "Who the token is: its role (admin, channel, store) and a store token's location (the console shows the actions it may take)",
        None,
        200,
        "Whoami",
        &[401, 429, 503],
    ),
    (
        "get",
        Route::Console,
        "The operations console: one page (no external assets) over this API: order search, an order's page with its timeline and actions, a SKU's stock by location and movements, a store's day and pickups, the cluster. The token as on the store board (?token=), or typed in",
        None,
        200,
        "BoardPage",
        &[],
    ),
    (
        "get",
        Route::InventoryExport,
        "A location's stock records, or the whole network's, as CSV streamed a location at a time (admin; a store token its own location): a header line, then location,sku,on_hand,safety_stock (the columns holdfast import reads: an export imported again changes nothing), reserved, available, unsellable, in_transit, incoming, incoming_eta, backordered, version. An answer cut short (the engine stopping) ends as a broken transfer, never as a shorter file",
        None,
        200,
        "StockRecord",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "get",
        Route::Events,
        "The published events after a number, in commit order, a page at a time: stock.changed/out/back/low, reservation.*, order.*, shipment.*, transfer.*, supply.* (api.md, Events). With Accept: text/event-stream, a Server-Sent Events stream of them (id: the event's number, event: its type, data: its data), resumed after Last-Event-ID. A store token sees its own location's events only. Kept [events] retention_days (7 by default): a number already dropped is 410 events_gone with the oldest kept. A page shows every event of what was durable when it came (503 with Retry-After while a restart catches up)",
        None,
        200,
        "EventPage",
        &[401, 404, 410, 422, 429, 503],
    ),
    (
        "post",
        Route::Webhooks,
        "Subscribe a URL to events (admin): they are POSTed to it in order (one a request, or batch of them as {events:[...]}), at least once, signed as Standard Webhooks says (webhook-id, webhook-timestamp, webhook-signature: v1, and the base64 HMAC-SHA256 of id.timestamp.body with the whsec_ secret), from the events published after it is made; failed deliveries are retried with backoff, and a subscription failing for 24 hours is marked failing and still tried (api.md, Webhooks)",
        Some("WebhookInput"),
        201,
        "Webhook",
        &[400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Webhooks,
        "Every webhook subscription (admin)",
        None,
        200,
        "WebhookList",
        &[401, 403, 429, 503],
    ),
    (
        "get",
        Route::Webhook,
        "A webhook subscription (admin)",
        None,
        200,
        "Webhook",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "delete",
        Route::Webhook,
        "Delete a webhook subscription (admin): nothing more is sent to it",
        None,
        204,
        "Webhook",
        &[401, 403, 404, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::WebhookDeliveries,
        "A webhook subscription's recent delivery attempts, newest first (admin): the event, the receiver's status or the error, the latency",
        None,
        200,
        "WebhookDeliveries",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "post",
        Route::WebhookReplay,
        "Send a webhook subscription's events again from after a number (admin), in order",
        Some("ReplayInput"),
        200,
        "Webhook",
        &[400, 401, 403, 404, 408, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::InventoryBatch,
        "Bulk count (at most 10,000 items), each item as a count's PUT; an item with counted_at that cannot be placed (stale_count, or reaching back before its record's kept movements) is reported in `refused`, the rest applied",
        Some("BatchInput"),
        200,
        "BatchResult",
        &[400, 401, 403, 408, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Availability,
        "Availability of a SKU across the network (on a cluster follower: from its copy, fresh within 250 ms and past the node's own writes, answer header x-holdfast-read: follower; Cache-Control: no-cache asks the leader; with no leader to answer, from the copy whatever its age, with x-holdfast-stale-ms)",
        None,
        200,
        "Availability",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "get",
        Route::SkuBatch,
        "Read SKU batch (the bulk import's path is also the SKU's whose id is batch: as GET /v1/skus/{sku})",
        None,
        200,
        "Sku",
        &[401, 404, 429, 503],
    ),
    (
        "put",
        Route::SkuBatch,
        "Create or replace SKU batch (admin; as PUT /v1/skus/{sku})",
        Some("SkuInput"),
        200,
        "Sku",
        &[400, 401, 403, 408, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::SkuBatch,
        "Bulk catalog import: up to 10,000 SKUs, all or nothing",
        Some("SkuBatchInput"),
        200,
        "SkuBatchResult",
        &[400, 401, 403, 408, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::Orders,
        "Place an order: sourced, held per shipment, paid (authorized at its provider; captured when the first shipment ships)",
        Some("OrderInput"),
        201,
        "Order",
        &[400, 401, 402, 403, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Orders,
        "Find orders, newest first, a page at a time: by id (its start), customer email (any case) or phone (the digits a number ends with: the customer's or the delivery address's), status, location (shipping from or collected at), and placed from/to; every part given must hold. In memory and archived alike; a page of a rare match over a long archive may end short with a next_cursor to go on from. Admin and channel tokens find every order, a store token its own location's",
        None,
        200,
        "OrderPage",
        &[401, 403, 422, 429, 503],
    ),
    (
        "get",
        Route::Order,
        "Read an order",
        None,
        200,
        "Order",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "post",
        Route::OrderCancel,
        "Cancel an order before anything left a building",
        None,
        200,
        "Order",
        &[401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::ShipmentEvents,
        "Move a shipment: picked, packed (a delivery or a transfer is labelled at its carrier), shipped, delivered, ready_for_pickup, collected (a labelled parcel's carrier moves it to shipped and delivered as it tracks it)",
        Some("ShipmentEventInput"),
        200,
        "Order",
        &[400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::ShipmentLabel,
        "The carrier's label of a shipment (made when it was packed: a delivery or a transfer, with a carrier configured for its destination and both addresses known)",
        None,
        200,
        "Label",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "post",
        Route::OrderReturns,
        "Return delivered goods to a location: restocked and refunded (a refund the provider cannot make now is owed: payment.refund_pending, made once it answers; one whose answer was lost where sending it again could refund twice: payment.refund_unclear)",
        Some("ReturnInput"),
        200,
        "Order",
        &[400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::RefundSettle,
        "Settle an owed refund from what the provider's back office shows (admin): made, or not (owed again: made by the retry loop)",
        Some("RefundSettleInput"),
        200,
        "Order",
        &[400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::ScalapayCheckouts,
        "A Scalapay order for the shopper to approve before the order is placed (pay in 3): its token (the order names it in payment.method.token) and the checkout URL to send the shopper to",
        Some("ScalapayCheckoutInput"),
        201,
        "ScalapayCheckout",
        &[400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::AdyenWebhook,
        "Adyen's notifications (no token: each item's HMAC signature is checked, a forged one refuses the delivery with 401); each kept once on its order's payment.notices; answers [accepted]",
        Some("AdyenNotification"),
        200,
        "Accepted",
        &[400, 401, 404, 408, 413, 503, 504],
    ),
    (
        "post",
        Route::SourcingPlan,
        "Plan which locations would serve a cart (holds nothing)",
        Some("PlanInput"),
        200,
        "Plan",
        &[400, 401, 403, 408, 413, 422, 429, 503],
    ),
    (
        "post",
        Route::Reservations,
        "Hold a cart (all or nothing); optional Idempotency-Key",
        Some("ReservationInput"),
        201,
        "Reservation",
        &[400, 401, 403, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Reservation,
        "Read a reservation",
        None,
        200,
        "Reservation",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "post",
        Route::Confirm,
        "Confirm a held reservation",
        None,
        200,
        "Reservation",
        &[401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::Release,
        "Release a reservation",
        None,
        200,
        "Reservation",
        &[401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::Fulfil,
        "Fulfil a confirmed reservation (409 backordered while units sold against incoming supply have not arrived)",
        None,
        200,
        "Reservation",
        &[401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::Extend,
        "Extend a held reservation",
        Some("ExtendInput"),
        200,
        "Reservation",
        &[400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::Transfers,
        "Request a transfer of stock between two locations (admin, or the token of a store it leaves or reaches): 201 requested. The id is its idempotency key: the same request again answers the transfer as it is now (200), another under the id 409 transfer_exists",
        Some("TransferInput"),
        201,
        "Transfer",
        &[400, 401, 403, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Transfers,
        "List transfers in id order, a page at a time (admin; a store token its own location's), by location (leaving or reaching it) and status (on a cluster follower: from its copy when fresh, as a stock record's read)",
        None,
        200,
        "TransferList",
        &[401, 403, 422, 429, 503],
    ),
    (
        "get",
        Route::Transfer,
        "Read a transfer (admin, or a store it leaves or reaches; on a cluster follower: from its copy when fresh, as a stock record's read)",
        None,
        200,
        "Transfer",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "post",
        Route::TransferShip,
        "Ship a requested transfer (admin or the sending store's token): every line's units leave from's on_hand and show as in_transit on to's records, all or none; 409 insufficient_stock if a line's units are not free at the sender (neither reserved nor unsellable; `lines` names them with `available`, the free units), 409 invalid_transition if it was cancelled. Shipping again answers the transfer",
        None,
        200,
        "Transfer",
        &[401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::TransferReceive,
        "Receive a shipped transfer (admin or the receiving store's token): what arrived of each SKU joins to's on_hand (a SKU not named: none arrived), its in_transit goes, each line shows received and its discrepancy (sent less arrived), and the transfer is closed. The same receipt again answers the transfer; other figures are 409 invalid_transition",
        Some("ReceiveInput"),
        200,
        "Transfer",
        &[400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::TransferCancel,
        "Cancel a transfer not yet shipped (admin, or a store it leaves or reaches); 409 invalid_transition once shipped. Cancelling again answers the transfer",
        None,
        200,
        "Transfer",
        &[401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::Supplies,
        "Announce incoming supply at a location, a purchase order or an advance shipping notice (admin, or the location's store token): 201 expected; its units show as incoming on the location's records (with the earliest expected_at as incoming_eta) until delivered or cancelled. The id is its idempotency key: the same announcement again answers the supply as it is now (200), another under the id 409 supply_exists",
        Some("SupplyInput"),
        201,
        "Supply",
        &[400, 401, 403, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Supplies,
        "List incoming supply in id order, a page at a time (admin; a store token its own location's), by location and status (on a cluster follower: from its copy when fresh, as a stock record's read)",
        None,
        200,
        "SupplyList",
        &[401, 403, 422, 429, 503],
    ),
    (
        "get",
        Route::Supply,
        "Read incoming supply (admin, or the location's store token; on a cluster follower: from its copy when fresh)",
        None,
        200,
        "Supply",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "post",
        Route::SupplyReceive,
        "A delivery of incoming supply (admin, or the location's store token): what arrived of each SKU joins on_hand (more than ordered too), and leaves incoming as far as it was still to come; once nothing remains the supply is received. Several deliveries may come: with an Idempotency-Key a delivery is applied once per key (the same again answers the supply; another under the key is 422 idempotency_key_reused). 409 invalid_transition once received or cancelled",
        Some("ReceiveInput"),
        200,
        "Supply",
        &[400, 401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "post",
        Route::SupplyCancel,
        "Cancel what is still to come of incoming supply (admin, or the location's store token): its units leave incoming; what was delivered stays. 409 invalid_transition once received or cancelled",
        None,
        200,
        "Supply",
        &[401, 403, 404, 408, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        Route::Pickups,
        "The store's open pickups (pay and collect orders not yet collected, cancelled or declined), oldest first, at most 200 (admin or the store's token)",
        None,
        200,
        "PickupList",
        &[401, 403, 404, 422, 429, 503],
    ),
    (
        "get",
        Route::Feed,
        "Stock feed: upgrade to a WebSocket with ?location= or ?sku= (token in Authorization or ?token=; a store token follows its own location only). Messages: {type: snapshot, records}, then {type: stock, <StockRecord>, ts} per committed change in version order; a fresh snapshot when the client falls behind; 1001 on shutdown",
        None,
        101,
        "FeedMessage",
        &[400, 401, 403, 404, 422, 426, 429, 503],
    ),
    (
        "get",
        Route::Cluster,
        "A cluster node's view (holdfast serve --cluster): its role, the leader and its epoch, this node's copy, and every node's copy and lag behind the leader as they last reported them (shards: the same in the sharded cluster's shape, one entry). A single node answers 404",
        None,
        200,
        "ClusterView",
        &[401, 404, 429],
    ),
    (
        "get",
        Route::Board,
        "The store board: a page following a location's stock feed, for the store's screens (no token for the page; its feed asks for one)",
        None,
        200,
        "BoardPage",
        &[404, 422],
    ),
    (
        "get",
        Route::Healthz,
        "Liveness and readiness",
        None,
        200,
        "Health",
        &[503],
    ),
    (
        "get",
        Route::Metrics,
        "Prometheus metrics (text format)",
        None,
        200,
        "Metrics",
        &[],
    ),
    (
        "get",
        Route::OpenApi,
        "This document",
        None,
        200,
        "OpenApi",
        &[],
    ),
];

/// Identifiers (api.md): 1 to 64 of `A-Z a-z 0-9 . _ : -`.
const ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,64}$";

fn id() -> Value {
    json!({"type": "string", "pattern": ID_PATTERN})
}

/// `schema`, or null (the server reads a null member as an absent one).
fn nullable(schema: Value) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some(t) => {
            let mut s = schema.clone();
            s["type"] = json!([t, "null"]);
            s
        }
        None => json!({"anyOf": [schema, {"type": "null"}]}),
    }
}

/// A character that is not white space as the server trims it (Rust's
/// `char::is_whitespace`, Unicode's White_Space; ECMA's `\S` differs on
/// U+0085 and U+FEFF).
const NOT_BLANK: &str =
    "[^\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// A string of 1 to `max` characters, not all of them blank.
fn text(max: usize) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "pattern": NOT_BLANK})
}

fn int(min: i64, max: i64) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max})
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// An array of 1 to `max` of `items`.
fn some(items: Value, max: usize) -> Value {
    json!({"type": "array", "minItems": 1, "maxItems": max, "items": items})
}

fn schemas() -> Value {
    let mut all = Map::new();
    for part in [
        catalog_schemas(),
        stock_schemas(),
        reservation_schemas(),
        sourcing_schemas(),
        order_schemas(),
        payment_schemas(),
        transfer_schemas(),
        cluster_schemas(),
    ] {
        if let Value::Object(part) = part {
            all.extend(part);
        }
    }
    if let Value::Object(examples) = examples() {
        for (name, example) in examples {
            if let Some(schema) = all.get_mut(&name) {
                schema["examples"] = json!([example]);
            }
        }
    }
    Value::Object(all)
}

/// A request of each kind, as api.md shows them (schemathesis's examples
/// phase sends these first).
fn examples() -> Value {
    let lines = json!([{"sku": "A1", "qty": 2, "location": "S001"}]);
    json!({
        "SkuInput": {"name": "Trail shoe 42", "weight_g": 850},
        "SkuBatchInput": {"items": [{"sku": "A1", "name": "Trail shoe 42", "weight_g": 850}]},
        "LocationInput": {"name": "Milano Duomo", "kind": "store", "lat": 45.4642, "lon": 9.19, "priority": 1,
            "ship": true, "pickup": true, "daily_capacity": 200, "active": true},
        "CountInput": {"on_hand": 10, "safety_stock": 1},
        "AdjustmentInput": {"delta": -2, "reason": "sale"},
        "UnsellableInput": {"bucket": "damaged", "delta": 1, "reason": "damage", "note": "box crushed"},
        "BatchInput": {"items": [{"location": "S001", "sku": "A1", "on_hand": 10, "safety_stock": 1}]},
        "ReservationInput": {"lines": lines, "ttl_s": 600},
        "ExtendInput": {"ttl_s": 600},
        "PlanInput": {"lines": [{"sku": "A1", "qty": 2}], "destination": {"lat": 45.1, "lon": 9.2}},
        "OrderInput": {"id": "O-1001", "lines": [{"sku": "A1", "qty": 2, "unit_price": "59.90"}],
            "delivery": {"type": "ship", "lat": 45.1, "lon": 9.2}, "payment": {"provider": "sandbox"}},
        "ShipmentEventInput": {"status": "picked"},
        "ReturnInput": {"lines": [{"sku": "A1", "qty": 1}], "location": "S001"},
        "RefundSettleInput": {"key": "O-1001:refund:0:5990", "made": true},
        "TransferInput": {"id": "T-1001", "from": "DC1", "to": "S001", "lines": [{"sku": "A1", "qty": 6}]},
        "ReceiveInput": {"lines": [{"sku": "A1", "qty": 5}]},
        "SupplyInput": {"id": "PO-1001", "location": "DC1", "expected_at": "2027-01-15T08:00:00Z", "lines": [{"sku": "A1", "qty": 500}]},
        "ScalapayCheckoutInput": {"reference": "O-1002", "amount": "119.80",
            "consumer": {"given_names": "Maria", "surname": "Rossi", "email": "maria@example.com"},
            "redirect": {"confirm_url": "https://shop.example.com/ok", "cancel_url": "https://shop.example.com/ko"}}
    })
}

/// SKUs and locations (one `json!` per part: the macro's recursion limit).
fn catalog_schemas() -> Value {
    let sku_fields = json!({
        "name": text(256),
        "weight_g": nullable(int(0, STOCK_MAX)),
        "max_qty_per_reservation": nullable(int(1, QTY_MAX)),
        "dimensions_mm": nullable(schema_ref("Dimensions")),
        "ship_alone": {"type": ["boolean", "null"], "default": false},
        "backorder": nullable(json!({"type": "object", "required": ["max_units"], "description": "May be sold against incoming supply once on-hand units run out (a reservation line's allow_backorder), up to max_units sold and not arrived, network-wide", "properties": {
            "max_units": int(1, STOCK_MAX)}})),
        "preorder": nullable(json!({"type": "object", "required": ["release_at", "max_units"], "description": "Sold only against incoming supply until release_at (its on-hand units are not sold before then, and a line without allow_backorder gets none), up to max_units sold and not arrived; after it as any SKU (with its backorder, if any)", "properties": {
            "release_at": {"type": "string", "format": "date-time"}, "max_units": int(1, STOCK_MAX)}})),
        "low_stock": nullable(json!({"type": "object", "description": "Thresholds of stock.low events: available falling to this or under (above 0), at a location and network-wide (api.md, Events); each optional", "properties": {
            "location": nullable(int(0, STOCK_MAX)), "network": nullable(int(0, STOCK_MAX))}}))
    });
    let mut batch_item = sku_fields.clone();
    batch_item["sku"] = id();
    json!({
        "Dimensions": {"type": "object", "required": ["length", "width", "height"], "properties": {
            "length": int(1, DIMENSION_MM_MAX), "width": int(1, DIMENSION_MM_MAX), "height": int(1, DIMENSION_MM_MAX)}},
        "SkuInput": {"type": "object", "required": ["name"], "properties": sku_fields},
        "SkuBatchInput": {"type": "object", "required": ["items"], "properties": {
            "items": some(json!({"type": "object", "required": ["sku", "name"], "properties": batch_item}), BATCH_ITEMS_MAX)}},
        "SkuBatchResult": {"type": "object", "required": ["applied"], "properties": {"applied": {"type": "integer", "minimum": 0}}},
        "Sku": {"type": "object", "required": ["sku", "name", "weight_g", "max_qty_per_reservation", "dimensions_mm", "ship_alone"], "properties": {
            "sku": id(), "name": {"type": "string"}, "weight_g": {"type": ["integer", "null"]}, "max_qty_per_reservation": {"type": ["integer", "null"]},
            "dimensions_mm": nullable(schema_ref("Dimensions")), "ship_alone": {"type": "boolean"},
            "backorder": {"type": "object", "required": ["max_units"], "description": "absent when none", "properties": {"max_units": {"type": "integer"}}},
            "preorder": {"type": "object", "required": ["release_at", "max_units"], "description": "absent when none", "properties": {
                "release_at": {"type": "string", "format": "date-time"}, "max_units": {"type": "integer"}}},
            "low_stock": {"type": "object", "required": ["location", "network"], "description": "absent when none", "properties": {
                "location": {"type": ["integer", "null"]}, "network": {"type": ["integer", "null"]}}}}},
        "Address": {"type": "object", "description": "A postal address, for carriers' labels (a delivery's, a location's)",
            "required": ["name", "street", "city", "postal_code", "country", "phone"], "properties": {
            "name": text(ADDRESS_FIELD_MAX), "street": text(ADDRESS_FIELD_MAX), "city": text(ADDRESS_FIELD_MAX),
            "postal_code": text(ADDRESS_FIELD_MAX), "country": {"type": "string", "pattern": "^[A-Z]{2}$", "description": "ISO 3166-1 alpha-2"},
            "phone": text(ADDRESS_FIELD_MAX)}},
        "LocationInput": {"type": "object", "required": ["name", "kind", "lat", "lon"], "properties": {
            "name": text(256), "kind": {"enum": ["store", "dc"]}, "lat": lat(), "lon": lon(),
            "priority": nullable(json!({"type": "integer", "minimum": 0, "maximum": 1000, "default": 100, "description": "lower is preferred"})),
            "ship": {"type": ["boolean", "null"]}, "pickup": {"type": ["boolean", "null"]},
            "daily_capacity": nullable(json!({"type": "integer", "minimum": 0, "maximum": STOCK_MAX, "description": "orders a day; absent: unlimited"})),
            "active": {"type": ["boolean", "null"]}, "address": nullable(schema_ref("Address"))}},
        "Location": {"type": "object", "required": ["id", "name", "kind", "lat", "lon", "priority", "ship", "pickup", "daily_capacity", "active", "address"], "properties": {
            "id": id(), "name": {"type": "string"}, "kind": {"enum": ["store", "dc"]}, "lat": {"type": "number"}, "lon": {"type": "number"},
            "priority": {"type": "integer"}, "ship": {"type": "boolean"}, "pickup": {"type": "boolean"},
            "daily_capacity": {"type": ["integer", "null"]}, "active": {"type": "boolean"}, "address": nullable(schema_ref("Address"))}},
        "LocationList": {"type": "object", "required": ["locations"], "properties": {"locations": {"type": "array", "items": schema_ref("Location")}}}
    })
}

/// `split_lines` of a plan, a reservation or an order.
fn split_lines() -> Value {
    json!({"type": ["boolean", "null"], "description": "A line no single location can serve whole is split across the fewest locations that together can (default: [sourcing] split_lines, true); false: it is unsourced"})
}

fn lat() -> Value {
    json!({"type": "number", "minimum": -90, "maximum": 90})
}

fn lon() -> Value {
    json!({"type": "number", "minimum": -180, "maximum": 180})
}

/// When a count was taken (`counted_at`).
fn counted_at() -> Value {
    nullable(
        json!({"type": "string", "format": "date-time", "description": "RFC 3339: when the count was taken, if earlier than it arrives (at most 48 hours back, 5 minutes ahead)"}),
    )
}

/// Stock records, counts and adjustments.
fn stock_schemas() -> Value {
    let stock = int(0, STOCK_MAX);
    let reasons = json!(["receipt", "sale", "return", "damage", "theft", "correction"]);
    let buckets = json!(Bucket::ALL.map(Bucket::as_str));
    let unsellable = json!({"type": "object", "description": "units of on_hand set apart from sale, by bucket (only buckets holding units; absent when none)",
        "properties": Bucket::ALL.map(|b| (b.as_str().to_string(), int(1, STOCK_MAX))).into_iter().collect::<Map<String, Value>>(),
        "additionalProperties": false});
    json!({
        "CountInput": {"type": "object", "required": ["on_hand"], "properties": {"on_hand": stock, "safety_stock": nullable(stock.clone()), "counted_at": counted_at()}},
        "AdjustmentInput": {"type": "object", "required": ["delta", "reason"], "properties": {
            "delta": {"type": "integer", "minimum": -STOCK_MAX, "maximum": STOCK_MAX, "not": {"const": 0}},
            "reason": {"enum": reasons},
            "note": nullable(text(ADJUST_NOTE_MAX)),
            "bucket": nullable(json!({"enum": buckets, "description": "the bucket of unsellable units that moves with on_hand"}))}},
        "UnsellableInput": {"type": "object", "required": ["bucket", "delta", "reason"], "properties": {
            "bucket": {"enum": buckets},
            "delta": {"type": "integer", "minimum": -STOCK_MAX, "maximum": STOCK_MAX, "not": {"const": 0}, "description": "units set apart (positive) or back to sale (negative)"},
            "reason": {"enum": reasons},
            "note": nullable(text(ADJUST_NOTE_MAX))}},
        "StockRecord": {"type": "object", "required": ["location", "sku", "on_hand", "reserved", "safety_stock", "available", "version"], "properties": {
            "location": id(), "sku": id(), "on_hand": {"type": "integer"}, "reserved": {"type": "integer"}, "safety_stock": {"type": "integer"},
            "available": {"type": "integer", "minimum": 0, "description": "max(0, on_hand - reserved - safety_stock - unsellable units)"}, "version": {"type": "integer", "minimum": 0},
            "unsellable": unsellable.clone(),
            "in_transit": {"type": "integer", "minimum": 1, "description": "units shipped here by transfers, not yet received (absent when none)"},
            "incoming": {"type": "integer", "minimum": 1, "description": "units of incoming supply still to come here (absent when none)"},
            "incoming_eta": {"type": "string", "format": "date-time", "description": "the earliest expected_at of the supply still to come here (absent when none)"},
            "backordered": {"type": "integer", "minimum": 1, "description": "units sold here against incoming supply, not arrived yet (absent when none); not in reserved, which counts units on hand"},
            "rotation": {"type": "number", "description": "Units sold (sales adjustments and fulfilled reservations) over the last 7 UTC days per average unit on hand; 0 when nothing sold"}}},
        "BatchInput": {"type": "object", "required": ["items"], "properties": {"items": some(json!({"type": "object", "required": ["location", "sku", "on_hand"], "properties": {
            "location": id(), "sku": id(), "on_hand": stock, "safety_stock": nullable(stock.clone()), "counted_at": counted_at()}}), BATCH_ITEMS_MAX)}},
        "BatchResult": {"type": "object", "required": ["applied", "refused"], "properties": {"applied": {"type": "integer", "minimum": 0},
            "refused": {"type": "array", "items": {"type": "object", "required": ["index", "sku", "location", "code", "status", "detail"], "properties": {
                "index": {"type": "integer", "minimum": 0}, "sku": id(), "location": id(), "code": {"enum": ["stale_count", "validation_failed"]},
                "status": {"type": "integer"}, "title": {"type": "string"}, "type": {"type": "string"}, "detail": {"type": "string"},
                "last_counted_at": {"type": "string", "format": "date-time"}, "errors": {"type": "array"}}}}}},
        "History": {"type": "object", "required": ["location", "sku", "movements", "next_cursor"], "properties": {
            "location": id(), "sku": id(),
            "movements": {"type": "array", "items": schema_ref("Movement")},
            "next_cursor": {"type": ["string", "null"], "description": "the next (older) page's cursor; null on the last page"}}},
        "Movement": {"type": "object", "required": ["at", "kind", "on_hand", "reserved", "delta_on_hand", "delta_reserved", "reason", "ref", "by", "note"], "properties": {
            "at": {"type": "string", "format": "date-time"},
            "kind": {"enum": ["count", "adjustment", "hold", "confirm", "release", "expiry", "fulfil", "return", "transfer_out", "transfer_in", "receipt", "unsellable"]},
            "on_hand": {"type": "integer"}, "reserved": {"type": "integer"},
            "delta_on_hand": {"type": "integer"}, "delta_reserved": {"type": "integer"},
            "reason": {"type": ["string", "null"], "description": "an adjustment's reason"},
            "ref": {"type": ["string", "null"], "description": "the reservation, the order, or a keyed adjustment's key"},
            "by": {"type": ["object", "null"], "required": ["role", "location"], "properties": {
                "role": {"enum": ["admin", "channel", "store"]}, "location": {"type": ["string", "null"]}},
                "description": "whose token made it (a store token's location); null for the engine's own steps (an expiry) and what came before this was recorded"},
            "note": {"type": ["string", "null"], "description": "an adjustment's note"},
            "unsellable": unsellable,
            "in_transit": {"type": "integer", "description": "units in transit to the record after it (with delta_in_transit, when a transfer moved them)"},
            "delta_in_transit": {"type": "integer"},
            "delta_unsellable": {"type": "object", "description": "the units this movement set apart (positive) or back (negative), by bucket; absent when none", "additionalProperties": {"type": "integer"}}}},
        "WebhookInput": {"type": "object", "required": ["url", "types"], "properties": {
            "url": {"type": "string", "minLength": 1, "maxLength": WEBHOOK_URL_MAX, "pattern": WEBHOOK_URL_PATTERN, "description": "an http:// or https:// URL: a host name or an IPv4 address, a port, a path and a query of plain characters"},
            "types": {"type": "array", "minItems": 1, "maxItems": WEBHOOK_TYPES_MAX, "items": {"enum": Kind::patterns()}},
            "secret": {"type": ["string", "null"], "pattern": "^whsec_([A-Za-z0-9+/]{4}){8,20}([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$", "description": "whsec_ and 24 to 62 bytes in base64; absent: one is made"},
            "batch": {"type": ["integer", "null"], "minimum": 1, "maximum": WEBHOOK_BATCH_MAX, "description": "events a request carries at most (1, the default: each event its own body; more: {\"events\":[...]})"}}},
        "Webhook": {"type": "object", "required": ["id", "url", "types", "secret", "status", "delivered", "batch", "created_at"], "properties": {
            "id": id(), "url": {"type": "string"}, "types": {"type": "array", "items": {"type": "string"}},
            "secret": {"type": "string", "description": "whsec_ and the key in base64: verify each delivery's webhook-signature with it"},
            "status": {"enum": ["active", "failing"]},
            "delivered": {"type": "integer", "minimum": 0, "description": "the last event acknowledged (a 2xx answer), as journaled (a second apart at most)"},
            "batch": {"type": "integer", "minimum": 1, "maximum": WEBHOOK_BATCH_MAX, "description": "events a request carries at most"},
            "created_at": {"type": "string", "format": "date-time"}}},
        "WebhookList": {"type": "object", "required": ["webhooks"], "properties": {"webhooks": {"type": "array", "items": schema_ref("Webhook")}}},
        "WebhookDeliveries": {"type": "object", "required": ["webhook", "status", "delivered", "latest", "deliveries"], "properties": {
            "webhook": id(), "status": {"enum": ["active", "failing"]},
            "delivered": {"type": "integer", "minimum": 0}, "latest": {"type": "integer", "minimum": 0},
            "deliveries": {"type": "array", "items": {"type": "object", "required": ["event", "events", "at", "attempt", "status", "error", "latency_ms", "ok"], "properties": {
                "event": {"type": "integer", "description": "the last event the request carried"}, "events": {"type": "integer", "minimum": 0, "description": "how many it carried (0: events dropped before they could be sent)"}, "at": {"type": "string", "format": "date-time"}, "attempt": {"type": "integer", "minimum": 1},
                "status": {"type": ["integer", "null"], "description": "the receiver's answer; null when none came"},
                "error": {"type": ["string", "null"]}, "latency_ms": {"type": "integer", "minimum": 0}, "ok": {"type": "boolean"}}}}}},
        "ReplayInput": {"type": "object", "required": ["after"], "properties": {"after": {"type": "integer", "minimum": 0, "maximum": JSON_INT_MAX, "description": "the events after this number are sent again (one past the newest: from the newest)"}}},
        "EventPage": {"type": "object", "required": ["events", "next_after", "latest", "oldest"], "properties": {
            "events": {"type": "array", "items": schema_ref("Event")},
            "next_after": {"type": "integer", "minimum": 0, "description": "the next page's after: the last event looked at (a filter may pass over many), the after asked when there was none"},
            "latest": {"type": "integer", "minimum": 0, "description": "the newest event's number written"},
            "oldest": {"type": "integer", "minimum": 0, "description": "the oldest event's number kept"}}},
        "Event": {"type": "object", "required": ["id", "type", "at", "data"], "properties": {
            "id": {"type": "integer", "minimum": 1, "description": "its number: every node numbers alike, in commit order, with no gap"},
            "type": {"type": "string", "description": "stock.changed, stock.out, stock.back, stock.low, reservation.held|confirmed|released|expired|fulfilled|extended|split|converted, order.placed|paid|payment_declined|captured|cancelled|returned|refunded, shipment.labelled|picked|packed|shipped|ready_for_pickup|delivered|collected, transfer.requested|shipped|received|cancelled, supply.expected|received|cancelled"},
            "at": {"type": "string", "format": "date-time", "description": "when its fact happened"},
            "data": {"type": "object", "description": "what happened, by type (api.md, Events)"}}},
        "Availability": {"type": "object", "required": ["sku", "available", "locations"], "properties": {"sku": id(), "available": {"type": "integer"},
            "available_to_backorder": {"type": "integer", "minimum": 0, "description": "a SKU sold against incoming supply (a backorder, or a preorder before its release, when available is 0): the units that may still be so, within its max_units (absent for other SKUs)"},
            "locations": {"type": "array", "items": {"type": "object", "required": ["location", "available"], "properties": {"location": id(), "available": {"type": "integer"},
                "available_to_backorder": {"type": "integer", "minimum": 0}}}}}}
    })
}

/// Where a cart goes: the rules of `destination` and `pickup_location`
/// (`sourcing::parse_target`: a null member is an absent one).
fn has_destination() -> Value {
    json!({"required": ["destination"], "properties": {"destination": {"type": "object"}}})
}

fn has_pickup() -> Value {
    json!({"required": ["pickup_location"], "properties": {"pickup_location": {"type": "string"}}})
}

/// Reservations.
fn reservation_schemas() -> Value {
    let qty = int(1, QTY_MAX);
    let located = json!({"required": ["location"], "properties": {"location": {"type": "string"}}});
    json!({
        "ReservationInput": {"type": "object", "required": ["lines"], "properties": {
            "lines": some(json!({"type": "object", "required": ["sku", "qty"], "properties": {"sku": id(), "qty": qty, "location": nullable(id()),
                "allow_backorder": {"type": ["boolean", "null"], "default": false, "description": "What is not available on hand may be held against incoming supply at the line's location, as far as the SKU's backorder or preorder allows: the answer's line says how many units are backordered and their eta"}},
                "description": "A line without a location is sourced (a destination or a pickup_location is then required)."}), CART_LINES_MAX),
            "ttl_s": nullable(json!({"type": "integer", "minimum": TTL_S_MIN, "maximum": TTL_S_MAX, "default": TTL_S_DEFAULT})),
            "allow_partial": {"type": ["boolean", "null"], "default": false},
            "destination": nullable(schema_ref("Destination")),
            "pickup_location": nullable(id()), "split_lines": split_lines()},
            "description": "A destination or a pickup_location, not both; one of them when a line has no location.",
            "not": {"allOf": [has_destination(), has_pickup()]},
            "anyOf": [{"properties": {"lines": {"items": located}}}, has_destination(), has_pickup()]},
        "ExtendInput": {"type": "object", "required": ["ttl_s"], "properties": {"ttl_s": {"type": "integer", "minimum": TTL_S_MIN, "maximum": TTL_S_MAX}}},
        "Reservation": {"type": "object", "required": ["id", "status", "expires_at", "created_at", "lines"], "properties": {
            "id": id(), "status": {"enum": ["held", "confirmed", "released", "expired", "fulfilled"]},
            "expires_at": {"type": ["string", "null"], "format": "date-time", "description": "null once it no longer expires (confirmed, released, fulfilled)"},
            "created_at": {"type": "string", "format": "date-time"},
            "lines": {"type": "array", "items": {"type": "object", "required": ["sku", "qty", "location", "requested"], "properties": {
                "sku": id(), "qty": qty, "location": id(), "requested": qty,
                "backordered": {"type": "integer", "minimum": 1, "description": "of qty, the units sold against incoming supply and not arrived yet (absent when none): converted to units on hand first-in first-out as the supply is received; until then the reservation cannot be fulfilled (409 backordered)"},
                "eta": {"type": "string", "format": "date-time", "description": "when the supply the backordered units wait for was expected as they were held"}}}}}}
    })
}

/// The sourcing planner.
fn sourcing_schemas() -> Value {
    let qty = int(1, QTY_MAX);
    let lines = json!({"type": "array", "items": {"type": "object", "required": ["sku", "qty"], "properties": {"sku": id(), "qty": qty}}});
    json!({
        "Destination": {"type": "object", "required": ["lat", "lon"], "properties": {"lat": lat(), "lon": lon()}},
        "PlanInput": {"type": "object", "required": ["lines"], "properties": {
            "lines": some(json!({"type": "object", "required": ["sku", "qty"], "properties": {"sku": id(), "qty": qty,
                "allow_backorder": {"type": ["boolean", "null"], "default": false, "description": "What on-hand stock cannot serve may be planned against incoming supply (a SKU with a backorder or preorder): after every on-hand unit, in a shipment naming the supply's eta"}}}), CART_LINES_MAX),
            "destination": nullable(schema_ref("Destination")),
            "pickup_location": nullable(id()), "explain": {"type": ["boolean", "null"], "default": false},
            "split_lines": split_lines()},
            "description": "A destination or a pickup_location, exactly one.",
            "oneOf": [has_destination(), has_pickup()]},
        "Plan": {"type": "object", "required": ["shipments", "unsourced", "method"], "properties": {
            "shipments": {"type": "array", "items": {"type": "object", "required": ["location", "lines", "distance_km", "transfer"], "properties": {
                "location": id(), "distance_km": {"type": "number"}, "transfer": {"type": "boolean"},
                "lines": {"type": "array", "items": {"type": "object", "required": ["sku", "qty"], "properties": {"sku": id(), "qty": qty,
                    "backordered": {"type": "integer", "minimum": 1, "description": "of qty, the units planned against incoming supply (left out when none)"}}}},
                "eta": {"type": "string", "format": "date-time", "description": "the earliest time the supply its backordered units wait for is expected (left out when none)"}}}},
            "unsourced": lines,
            "method": {"enum": ["exact", "heuristic"]},
            "explain": {"type": "array", "items": {"type": "object", "properties": {"location": id(), "distance_km": {"type": "number"}, "chosen": {"type": "boolean"},
                "lines": lines,
                "scores": {"type": "object", "properties": {"distance": {"type": "number"}, "priority": {"type": "number"}, "rotation": {"type": "number"}, "total": {"type": "number"}}}}}}}}
    })
}

/// Orders: placing one, and what happens to it.
fn order_schemas() -> Value {
    let qty = int(1, QTY_MAX);
    let price = json!({"type": "string", "pattern": "^[0-9]{1,11}(\\.[0-9]{1,2})?$"});
    let ship = json!({"required": ["type", "lat", "lon"], "properties": {"type": {"const": "ship"}, "lat": lat(), "lon": lon()}});
    let pickup = json!({"required": ["type", "location"], "properties": {"type": {"const": "pickup"}, "location": id()}});
    json!({
        "OrderInput": {"type": "object", "required": ["id", "lines", "delivery", "payment"], "properties": {
            "id": id(), "split_lines": split_lines(),
            "lines": some(json!({"type": "object", "required": ["sku", "qty", "unit_price"], "properties": {"sku": id(), "qty": qty, "unit_price": price}}), CART_LINES_MAX),
            "delivery": {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["ship", "pickup"]}, "address": nullable(schema_ref("Address"))},
                "oneOf": [ship, pickup], "description": "{type: ship, lat, lon, address?} or {type: pickup, location}"},
            "customer": nullable(json!({"type": "object", "description": "Who ordered, as customer service finds them (GET /v1/orders?email=, ?phone=): each optional", "properties": {
                "email": nullable(json!({"type": "string", "maxLength": EMAIL_MAX, "pattern": EMAIL_PATTERN})),
                "phone": nullable(json!({"type": "string", "maxLength": PHONE_MAX, "pattern": PHONE_PATTERN, "description": "at least 4 digits"}))}})),
            "channel": nullable(json!({"type": "string", "pattern": ID_PATTERN, "description": "Where the order comes from (web, app, callcenter...): payment rules may choose its provider by it"})),
            "payment": {"type": "object", "properties": {
                "provider": nullable(json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": NOT_BLANK, "description": "sandbox (amounts ending in .51 are declined, .52 answer unavailable), or a provider holdfast.toml configures (adyen, gestpay, amazonpay, scalapay); absent: the one [[payments.rules]] choose by channel and destination country, else [payments] default (none: 422)"})),
                "method": nullable(json!({"type": "object", "description": "The shopper's payment details from the checkout, passed to the provider as they are (Adyen: the Drop-in's paymentMethod object; GestPay: paymentTypeDetails; Amazon Pay: {checkoutSessionId}; Scalapay: {token}); required by those; at most 4096 bytes"}))}},
            "reservation_id": nullable(json!({"type": "string", "pattern": ID_PATTERN, "description": "A held reservation to turn into the order: its lines must be the order's (same SKUs and quantities); its units become one reservation per shipment without ever being released. Not held: 409 reservation_not_held. A declined payment leaves it held."}))}},
        "Order": order_schema(),
        "Whoami": {"type": "object", "required": ["role", "location"], "properties": {"role": {"enum": ["admin", "channel", "store"]}, "location": {"type": ["string", "null"]}}},
        "OrderPage": {"type": "object", "required": ["orders", "next_cursor"], "properties": {
            "orders": {"type": "array", "maxItems": ORDER_PAGE_MAX, "items": schema_ref("Order")},
            "next_cursor": {"type": ["string", "null"], "description": "the next page's cursor; null: no more"}}},
        "ShipmentEventInput": {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["picked", "packed", "shipped", "delivered", "ready_for_pickup", "collected"]}}},
        "ReturnInput": {"type": "object", "required": ["lines", "location"], "properties": {"location": id(),
            "lines": some(json!({"type": "object", "required": ["sku", "qty"], "properties": {"sku": id(), "qty": qty}}), CART_LINES_MAX)}},
        "RefundSettleInput": {"type": "object", "required": ["key", "made"], "properties": {"key": text(200), "made": {"type": "boolean"}}},
        "PickupList": {"type": "object", "required": ["location", "pickups", "today"], "properties": {"location": id(), "pickups": {"type": "array", "maxItems": 200, "items": schema_ref("Order")},
            "today": {"type": "object", "required": ["date", "orders", "daily_capacity"], "description": "Orders the location took today (UTC) against its daily_capacity (null: unlimited)",
                "properties": {"date": {"type": "string", "format": "date"}, "orders": {"type": "integer", "minimum": 0}, "daily_capacity": {"type": ["integer", "null"], "minimum": 0}}}}}
    })
}

/// An order as every answer shows it (`orders::order_json`).
fn order_schema() -> Value {
    let money = json!({"type": "string", "pattern": "^[0-9]+\\.[0-9]{2}$"});
    let time = json!({"type": "string", "format": "date-time"});
    let line = json!({"type": "object", "required": ["sku", "qty"], "properties": {"sku": id(), "qty": {"type": "integer"}}});
    let payment = json!({"type": "object", "required": ["provider", "reference", "state", "authorized", "captured", "refunded", "capture_pending", "refund_pending", "refund_unclear", "refunds_owed", "notices"], "properties": {
        "provider": {"type": "string"}, "reference": {"type": "string", "description": "The provider's reference of the authorization (Adyen's pspReference)"},
        "state": {"enum": ["pending", "authorized", "declined", "captured", "voided"]},
        "authorized": money, "captured": money, "refunded": money, "capture_pending": {"type": "boolean"},
        "refund_pending": money, "refund_unclear": money,
        "refunds_owed": {"type": "array", "items": {"type": "object", "required": ["key", "amount", "unclear"], "properties": {"key": {"type": "string"}, "amount": money, "unclear": {"type": "boolean"}}}},
        "notices": {"type": "array", "items": {"type": "object", "required": ["event", "success", "reference", "at"], "properties": {"event": {"type": "string"}, "success": {"type": "boolean"}, "reference": {"type": "string"}, "at": time}}}}});
    let shipment = json!({"type": "object", "required": ["id", "location", "type", "status", "lines", "reservation_id", "parcel"], "properties": {
        "id": {"type": "integer", "minimum": 0}, "location": id(), "type": {"enum": ["delivery", "pickup", "transfer"]},
        "status": {"enum": ["pending", "picked", "packed", "shipped", "ready_for_pickup", "delivered", "collected"]},
        "lines": {"type": "array", "items": line}, "reservation_id": {"type": ["string", "null"]},
        "parcel": nullable(json!({"type": "object", "required": ["carrier", "tracking", "label"], "properties": {"carrier": {"type": "string"}, "tracking": {"type": "string"}, "label": {"type": "string", "description": "the label's path"}}}))}});
    json!({"type": "object", "required": ["id", "status", "channel", "lines", "delivery", "total", "restock_pending", "payment", "shipments", "created_at", "updated_at"], "properties": {
        "id": id(),
        "status": {"enum": ["pending_payment", "payment_declined", "confirmed", "in_fulfilment", "shipped", "ready_for_pickup", "delivered", "collected", "cancelled", "returned"]},
        "channel": {"type": ["string", "null"]},
        "lines": {"type": "array", "items": {"type": "object", "required": ["sku", "qty", "unit_price", "returned"], "properties": {"sku": id(), "qty": {"type": "integer"}, "unit_price": money, "returned": {"type": "integer", "minimum": 0}}}},
        "delivery": {"oneOf": [
            {"type": "object", "required": ["type", "lat", "lon", "address"], "properties": {"type": {"const": "ship"}, "lat": {"type": "number"}, "lon": {"type": "number"}, "address": nullable(schema_ref("Address"))}},
            {"type": "object", "required": ["type", "location"], "properties": {"type": {"const": "pickup"}, "location": id()}}]},
        "total": money,
        "restock_pending": {"type": "integer", "minimum": 0, "description": "Returned units not back in stock yet (owed by orders returned on the sharded cluster, made by the retry loop; 0 otherwise)"},
        "customer": {"type": "object", "required": ["email", "phone"], "properties": {"email": {"type": ["string", "null"]}, "phone": {"type": ["string", "null"]}}},
        "timeline": {"type": "array", "maxItems": ORDER_TIMELINE_MAX, "description": "What happened to it, oldest first, each named as its published event (api.md, Events): the first step and the newest",
            "items": {"type": "object", "required": ["at", "type"], "properties": {"at": time, "type": {"type": "string"}, "shipment": {"type": "integer", "minimum": 0}, "amount": money}}},
        "payment": payment, "shipments": {"type": "array", "items": shipment}, "created_at": time, "updated_at": time}})
}

/// Transfers between locations.
fn transfer_schemas() -> Value {
    let line = |min: i64, what: &str| json!({"type": "object", "required": ["sku", "qty"], "properties": {"sku": id(), "qty": int(min, STOCK_MAX)}, "description": what});
    let time = json!({"type": "string", "format": "date-time"});
    let at = json!({"type": ["string", "null"], "format": "date-time"});
    json!({
        "TransferInput": {"type": "object", "required": ["id", "from", "to", "lines"], "properties": {
            "id": id(), "from": id(), "to": {"allOf": [id()], "description": "a location other than from"},
            "lines": some(line(1, "units of a SKU to send; each SKU once"), TRANSFER_LINES_MAX)}},
        "ReceiveInput": {"type": "object", "required": ["lines"], "properties": {
            "lines": some(line(0, "units of a SKU of the transfer that arrived; each SKU once"), TRANSFER_LINES_MAX)}},
        "Transfer": {"type": "object", "required": ["id", "from", "to", "status", "lines", "discrepancy", "created_at", "updated_at", "shipped_at", "received_at", "order"], "properties": {
            "id": id(), "from": id(), "to": id(),
            "status": {"enum": ["requested", "shipped", "received", "cancelled"]},
            "lines": {"type": "array", "items": {"type": "object", "required": ["sku", "qty", "received", "discrepancy"], "properties": {
                "sku": id(), "qty": int(1, STOCK_MAX),
                "received": {"type": ["integer", "null"], "minimum": 0, "description": "units that arrived; null until received"},
                "discrepancy": {"type": ["integer", "null"], "description": "qty less received (negative: more arrived than was sent); null until received"}}}},
            "discrepancy": {"type": ["integer", "null"], "description": "the lines' discrepancies summed, once received"},
            "created_at": time.clone(), "updated_at": time.clone(), "shipped_at": at, "received_at": at.clone(),
            "order": {"type": ["object", "null"], "required": ["id", "shipment"], "description": "the order shipment it carries to its pickup store (made shipped as the goods leave, received as they reach the counter; it moves with the shipment, never by a step asked of it); null for a transfer asked through the API",
                "properties": {"id": id(), "shipment": int(1, i64::from(u32::MAX))}}}},
        "TransferList": {"type": "object", "required": ["transfers", "next_cursor"], "properties": {
            "transfers": {"type": "array", "items": schema_ref("Transfer")},
            "next_cursor": {"type": ["string", "null"], "description": "the next page's cursor; null on the last page"}}},
        "SupplyInput": {"type": "object", "required": ["id", "location", "expected_at", "lines"], "properties": {
            "id": id(), "location": id(),
            "expected_at": {"type": "string", "format": "date-time", "description": "RFC 3339: when its units are expected (up to a year back, two years ahead)"},
            "lines": some(line(1, "units of a SKU ordered; each SKU once"), TRANSFER_LINES_MAX)}},
        "Supply": {"type": "object", "required": ["id", "location", "expected_at", "status", "lines", "receipts", "created_at", "updated_at"], "properties": {
            "id": id(), "location": id(), "expected_at": time.clone(),
            "status": {"enum": ["expected", "received", "cancelled"]},
            "lines": {"type": "array", "items": {"type": "object", "required": ["sku", "qty", "received", "remaining"], "properties": {
                "sku": id(), "qty": int(1, STOCK_MAX), "received": {"type": "integer", "minimum": 0},
                "remaining": {"type": "integer", "minimum": 0, "description": "qty less received, at least 0 (once cancelled, none of it comes)"}}}},
            "receipts": {"type": "array", "items": {"type": "object", "required": ["at", "lines"], "properties": {
                "at": time.clone(), "lines": {"type": "array", "items": {"type": "object", "required": ["sku", "qty"], "properties": {"sku": id(), "qty": {"type": "integer", "minimum": 0}}}}}}},
            "created_at": time.clone(), "updated_at": time}},
        "SupplyList": {"type": "object", "required": ["supplies", "next_cursor"], "properties": {
            "supplies": {"type": "array", "items": schema_ref("Supply")},
            "next_cursor": {"type": ["string", "null"], "description": "the next page's cursor; null on the last page"}}}
    })
}

/// Payment providers' own endpoints.
fn payment_schemas() -> Value {
    let url = json!({"type": "string", "maxLength": 500, "pattern": "^https?://"});
    json!({
        "ScalapayCheckoutInput": {"type": "object", "required": ["reference", "amount", "consumer", "redirect"], "properties": {
            "reference": id(), "amount": {"type": "string", "pattern": "^(?=.*[1-9])[0-9]{1,11}(\\.[0-9]{1,2})?$", "description": "a positive decimal amount"},
            "shipping": nullable(schema_ref("Address")),
            "consumer": {"type": "object", "required": ["given_names", "surname", "email"], "properties": {"given_names": text(100), "surname": text(100), "email": text(200)}},
            "redirect": {"type": "object", "required": ["confirm_url", "cancel_url"], "properties": {"confirm_url": url, "cancel_url": url}}}},
        "ScalapayCheckout": {"type": "object", "required": ["token", "checkout_url", "expires"], "properties": {"token": {"type": "string"}, "checkout_url": {"type": "string"}, "expires": {"type": "string"}}},
        "AdyenNotification": {"type": "object", "required": ["notificationItems"], "properties": {"live": {"description": "not read"},
            "notificationItems": {"type": "array", "items": {"type": "object", "required": ["NotificationRequestItem"], "properties": {"NotificationRequestItem": {"type": "object",
                "required": ["pspReference", "additionalData"], "properties": {"pspReference": {"type": "string", "minLength": 1},
                    "additionalData": {"type": "object", "required": ["hmacSignature"], "properties": {"hmacSignature": {"type": "string", "contentEncoding": "base64"}}}}}}}}}},
        "Accepted": {"type": "string", "enum": ["[accepted]"]}
    })
}

/// A cluster node's view, the operations endpoints, the feed's messages,
/// and the problem every error answers.
fn cluster_schemas() -> Value {
    json!({
        "ClusterView": {"type": "object", "required": ["cluster", "node", "role", "redis_reachable", "leader", "epoch", "applied_seq", "nodes", "shards"], "properties": {
            "cluster": {"type": "string"}, "node": {"type": "string"},
            "role": {"enum": ["leader", "follower"]},
            "redis_reachable": {"type": "boolean"},
            "leader": {"type": ["object", "null"], "required": ["node", "epoch"], "properties": {"node": {"type": "string"}, "epoch": {"type": "integer"}}},
            "epoch": {"type": "integer"}, "applied_seq": {"type": "integer"},
            "nodes": {"type": "array", "items": {"type": "object", "required": ["node", "http", "leader", "applied_seq", "lag_records", "reported_ms_ago"], "properties": {
                "node": {"type": "string"}, "http": {"type": "string"}, "leader": {"type": "boolean"},
                "applied_seq": {"type": ["integer", "null"]}, "lag_records": {"type": ["integer", "null"]},
                "reported_ms_ago": {"type": ["integer", "null"]}}}},
            "shards": {"type": "array", "items": {"type": "object", "required": ["shard", "owner", "epoch", "owned_here", "applied_seq"], "properties": {
                "shard": {"type": "integer"}, "owner": {"type": ["string", "null"]},
                "epoch": {"type": "integer"}, "owned_here": {"type": "boolean"},
                "applied_seq": {"type": "integer"}}}}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "FeedMessage": {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["snapshot", "stock"]},
            "records": {"type": "array", "items": schema_ref("StockRecord"), "description": "snapshot: every record of the scope (without rotation)"},
            "ts": {"type": "string", "format": "date-time", "description": "stock: when the change was made; the other fields are the StockRecord's"}}},
        "Metrics": {"type": "string"},
        "OpenApi": {"type": "object", "required": ["openapi", "info", "paths"]},
        "Problem": {"type": "object", "required": ["type", "title", "status", "code", "detail"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "code": {"type": "string"}, "detail": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "required": ["field", "message"], "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
            "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": id(), "location": {"type": ["string", "null"]}, "requested": {"type": "integer"}, "available": {"type": "integer"}}}},
            "field": {"type": "string", "description": "unknown_sku, unknown_location: the member naming it"},
            "allow": {"type": "string", "description": "405: the methods the resource allows"},
            "reservation_status": {"enum": ["held", "confirmed", "released", "expired", "fulfilled"], "description": "reservation_not_held: the reservation's status"},
            "order": {"type": "object", "description": "payment_declined: the order as recorded"},
            "on_hand": {"type": "integer", "description": "insufficient_stock of an adjustment: the record's on_hand"},
            "free": {"type": "integer", "minimum": 0, "description": "insufficient_stock setting units apart: the units neither reserved nor unsellable"},
            "unsellable": {"type": "object", "additionalProperties": {"type": "integer"}, "description": "insufficient_stock of a bucket: what it holds"},
            "last_counted_at": {"type": "string", "format": "date-time", "description": "stale_count: when the record was last counted"},
            "transfer_status": {"enum": ["requested", "shipped", "received", "cancelled"], "description": "invalid_transition of a transfer: its status"},
            "supply_status": {"enum": ["expected", "received", "cancelled"], "description": "invalid_transition of incoming supply: its status"},
            "backordered": {"type": "integer", "minimum": 1, "description": "backordered: the units not arrived yet"}}}
    })
}

/// What each error status means, for every operation that answers it.
fn problem_description(status: u16) -> &'static str {
    match status {
        400 => "bad_request: the body is not JSON, or is missing",
        401 => "unauthorized: no token, or an unknown one",
        402 => "payment_declined: the provider declined; the order is recorded as declined (member `order`) and nothing is held",
        403 => "forbidden: the token's role or location does not allow this",
        404 => "not_found",
        408 => "request_timeout: the body did not arrive within 10 s; the connection is closed",
        409 => "too_many_webhooks, insufficient_stock (`lines` names the short ones; of an adjustment `on_hand`, `free` or `unsellable`), reservation_not_held, invalid_transition (of a transfer: member `transfer_status`), order_exists, transfer_exists, supply_exists, stale_count (a count taken before the record's last count, member `last_counted_at`) or backordered (a fulfilment, or a shipment leaving, with units sold against supply not arrived yet, member `backordered`)",
        413 => "payload_too_large: the body is over 1 MiB",
        422 => "validation_failed (`errors` names each field, a path segment by its parameter's name), unknown_sku, unknown_location (`field` names it) or idempotency_key_reused",
        410 => "events_gone: events after the number asked were dropped ([events] retention); member `oldest`, the oldest kept",
        426 => "upgrade_required: a plain GET of the WebSocket feed",
        429 => "rate_limited: the token is over its rate; retry after Retry-After seconds",
        503 => "unavailable: the engine is at capacity, stopping, or its storage or a provider fails; retry after Retry-After seconds",
        504 => "outcome_unknown: the write may or may not have been applied (a cluster's leader went away before answering, or Redis did not answer its replication); send it again under its Idempotency-Key",
        _ => "problem",
    }
}

fn problem_response(status: u16) -> Value {
    let mut r = json!({"description": problem_description(status), "content": {"application/problem+json": {"schema": schema_ref("Problem")}}});
    match status {
        429 | 503 => {
            r["headers"] = json!({"Retry-After": {"required": true, "description": "seconds", "schema": {"type": "integer", "minimum": 0}}})
        }
        408 => {
            r["headers"] = json!({"Connection": {"required": true, "schema": {"const": "close"}}})
        }
        _ => {}
    }
    r
}

/// The success answer of an operation.
fn success_response(path: &str, status: u16, output: &str) -> Value {
    let json_of = |media: &str| json!({ media: {"schema": schema_ref(output)} });
    if status == 204 {
        return json!({"description": "done: no content"});
    }
    let mut r = match path {
        "/v1/feed" => {
            return json!({"description": "Switching Protocols: the WebSocket, whose text messages are FeedMessage (#/components/schemas/FeedMessage)",
                "headers": {"Upgrade": {"required": true, "schema": {"const": "websocket"}}, "Sec-WebSocket-Accept": {"required": true, "schema": {"type": "string"}}}})
        }
        "/metrics" => {
            json!({"description": "Prometheus text format", "content": json_of("text/plain")})
        }
        "/ui/stores/{location}" | "/ui" => {
            json!({"description": "the page (HTML, no external assets)", "content": {"text/html": {"schema": {"type": "string"}}}})
        }
        "/v1/inventory/export" => {
            json!({"description": "the records as CSV, a header line first", "content": {"text/csv": {"schema": {"type": "string"}}}})
        }
        "/v1/events" => {
            json!({"description": "a page (application/json), or with Accept: text/event-stream the stream: for each event `id: N`, `event: TYPE`, `data: DATA` (the event's data as one line of JSON); `: keep-alive` comments when quiet; `event: gone` (data: code, detail, oldest) before it ends when the next events were dropped under it",
                "content": {"application/json": {"schema": schema_ref(output)}, "text/event-stream": {"schema": {"type": "string"}}}})
        }
        "/v1/webhooks/adyen" => {
            json!({"description": "What Adyen expects back", "content": json_of("text/plain")})
        }
        // The label as its carrier made it.
        "/v1/orders/{id}/shipments/{shipment}/label" => {
            json!({"description": "the label, in the carrier's format", "content": {
            "application/pdf": {}, "image/png": {}, "application/xml": {}, "application/x-zpl": {}}})
        }
        _ => {
            json!({"description": if status == 201 { "created" } else { "success" }, "content": json_of("application/json")})
        }
    };
    if status == 201 {
        r["headers"] = json!({"Location": {"description": "the path of what was created", "schema": {"type": "string"}}});
    }
    let read = matches!(
        path,
        "/v1/inventory/{location}/{sku}"
            | "/v1/availability/{sku}"
            | "/v1/reservations/{id}"
            | "/v1/orders/{id}"
            | "/v1/transfers"
            | "/v1/transfers/{id}"
            | "/v1/supply"
            | "/v1/supply/{id}"
    );
    if read && status == 200 {
        r["headers"] = json!({
            "x-holdfast-read": {"description": "follower: a cluster follower answered from its copy", "schema": {"const": "follower"}},
            "x-holdfast-stale-ms": {"description": "on a follower's answer while no leader could answer: how long ago its copy had read the whole stream", "schema": {"type": "integer", "minimum": 0}}});
    }
    r
}

/// What a client does next with what it created: the reservation's and
/// the order's operations, by the id the answer gives.
fn links(path: &str, status: u16) -> Option<Value> {
    let op = |path: &str, method: &str| format!("#/paths/{}/{method}", path.replace('/', "~1"));
    let to = |path: &str, method: &str, params: Value| json!({"operationRef": op(path, method), "parameters": params});
    let id = json!({"id": "$response.body#/id"});
    match (path, status) {
        ("/v1/reservations", 201) => Some(json!({
            "read": to("/v1/reservations/{id}", "get", id.clone()),
            "confirm": to("/v1/reservations/{id}/confirm", "post", id.clone()),
            "extend": to("/v1/reservations/{id}/extend", "post", id.clone()),
            "release": to("/v1/reservations/{id}/release", "post", id.clone()),
            "fulfil": to("/v1/reservations/{id}/fulfil", "post", id),
        })),
        ("/v1/transfers", 201) => Some(json!({
            "read": to("/v1/transfers/{id}", "get", id.clone()),
            "ship": to("/v1/transfers/{id}/ship", "post", id.clone()),
            "receive": to("/v1/transfers/{id}/receive", "post", id.clone()),
            "cancel": to("/v1/transfers/{id}/cancel", "post", id),
        })),
        ("/v1/supply", 201) => Some(json!({
            "read": to("/v1/supply/{id}", "get", id.clone()),
            "receive": to("/v1/supply/{id}/receive", "post", id.clone()),
            "cancel": to("/v1/supply/{id}/cancel", "post", id.clone()),
        })),
        ("/v1/orders", 201) => {
            let shipment =
                json!({"id": "$response.body#/id", "shipment": "$response.body#/shipments/0/id"});
            Some(json!({
                "read": to("/v1/orders/{id}", "get", id.clone()),
                "cancel": to("/v1/orders/{id}/cancel", "post", id.clone()),
                "return": to("/v1/orders/{id}/returns", "post", id),
                "move": to("/v1/orders/{id}/shipments/{shipment}/events", "post", shipment.clone()),
                "label": to("/v1/orders/{id}/shipments/{shipment}/label", "get", shipment),
            }))
        }
        _ => None,
    }
}

fn path_parameter(name: &str) -> Value {
    let (schema, example) = match name {
        "shipment" => (
            json!({"type": "integer", "minimum": 0, "maximum": u32::MAX}),
            json!(1),
        ),
        "sku" => (id(), json!("A1")),
        "location" => (id(), json!("S001")),
        _ => (id(), Value::Null),
    };
    let mut p = json!({"name": name, "in": "path", "required": true, "schema": schema});
    if !example.is_null() {
        p["example"] = example;
    }
    p
}

/// `types=`: comma-separated names of `event_patterns`.
fn types_pattern() -> String {
    let one = Kind::patterns()
        .iter()
        .map(|p| regex::escape(p))
        .collect::<Vec<_>>()
        .join("|");
    format!("^({one})(,({one})){{0,{}}}$", EVENT_TYPES_MAX - 1)
}

/// The parameters an operation reads beside its path and its token.
fn other_parameters(method: &str, path: &str) -> Vec<Value> {
    let key = json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": id(),
        "description": "Applied once per key of the token (kept at least 24 hours): the same request again answers the first answer; another request under the key is 422 idempotency_key_reused"});
    let fresh = json!({"name": "Cache-Control", "in": "header", "required": false, "schema": {"type": "string"},
        "description": "no-cache: a cluster follower asks the leader instead of answering from its copy"});
    match (method, path) {
        ("post", "/v1/reservations" | "/v1/inventory/{location}/{sku}/adjustments") => vec![key],
        ("post", "/v1/orders") => vec![
            json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": id(),
            "description": "Checked as an identifier (422 otherwise); an order is placed once by its id whatever the key: a repeat answers 409 order_exists"}),
        ],
        ("get", "/v1/inventory/{location}/{sku}" | "/v1/availability/{sku}") => vec![fresh],
        ("post", "/v1/supply/{id}/receive") => vec![
            json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": id(),
            "description": "A delivery is applied once per key of the token: the same delivery again answers the supply; another under the key is 422 idempotency_key_reused"}),
        ],
        ("get", "/v1/supply") => vec![
            json!({"name": "location", "in": "query", "required": false, "schema": id(),
                "description": "supply expected at this location (a store token: its own, the default)"}),
            json!({"name": "status", "in": "query", "required": false, "schema": {"enum": ["expected", "received", "cancelled"]}}),
            json!({"name": "limit", "in": "query", "required": false,
                "schema": {"type": "integer", "minimum": 1, "maximum": TRANSFER_PAGE_MAX, "default": TRANSFER_PAGE_DEFAULT}}),
            json!({"name": "cursor", "in": "query", "required": false, "schema": id(),
                "description": "a page's next_cursor: the page after it"}),
            fresh,
        ],
        ("get", "/v1/supply/{id}") => vec![fresh],
        ("get", "/v1/transfers") => vec![
            json!({"name": "location", "in": "query", "required": false, "schema": id(),
                "description": "transfers leaving or reaching this location (a store token: its own, the default)"}),
            json!({"name": "status", "in": "query", "required": false, "schema": {"enum": ["requested", "shipped", "received", "cancelled"]}}),
            json!({"name": "limit", "in": "query", "required": false,
                "schema": {"type": "integer", "minimum": 1, "maximum": TRANSFER_PAGE_MAX, "default": TRANSFER_PAGE_DEFAULT}}),
            json!({"name": "cursor", "in": "query", "required": false, "schema": id(),
                "description": "a page's next_cursor: the page after it"}),
            fresh,
        ],
        ("get", "/v1/transfers/{id}") => vec![fresh],
        ("get", "/v1/inventory/{location}/{sku}/history") => vec![
            json!({"name": "since", "in": "query", "required": false, "schema": {"type": "string", "format": "date-time"},
                "description": "RFC 3339: no movement older than this"}),
            json!({"name": "limit", "in": "query", "required": false,
                "schema": {"type": "integer", "minimum": 1, "maximum": HISTORY_PAGE_MAX, "default": HISTORY_PAGE_DEFAULT}}),
            json!({"name": "cursor", "in": "query", "required": false, "schema": {"type": "string", "pattern": "^[0-9]{1,19}\\.[0-9]{1,9}$"},
                "description": "a page's next_cursor: the page after it"}),
        ],
        ("get", "/v1/orders") => vec![
            json!({"name": "id", "in": "query", "required": false, "schema": id(), "description": "orders whose id starts with this"}),
            json!({"name": "email", "in": "query", "required": false, "schema": {"type": "string", "maxLength": EMAIL_MAX, "pattern": EMAIL_PATTERN}, "description": "the customer's email, any case"}),
            json!({"name": "phone", "in": "query", "required": false, "schema": {"type": "string", "maxLength": PHONE_MAX, "pattern": PHONE_PATTERN},
                "description": "at least 4 digits: orders whose customer's or delivery address's phone number ends with these digits"}),
            json!({"name": "status", "in": "query", "required": false, "schema": {"enum": ["pending_payment", "payment_declined", "confirmed", "in_fulfilment", "shipped", "ready_for_pickup", "delivered", "collected", "cancelled", "returned"]}}),
            json!({"name": "location", "in": "query", "required": false, "schema": id(),
                "description": "orders shipping from or collected at this location (a store token: its own, the default)"}),
            json!({"name": "from", "in": "query", "required": false, "schema": {"type": "string", "format": "date-time"}, "description": "placed at or after (RFC 3339)"}),
            json!({"name": "to", "in": "query", "required": false, "schema": {"type": "string", "format": "date-time"}, "description": "placed before (RFC 3339)"}),
            json!({"name": "limit", "in": "query", "required": false,
                "schema": {"type": "integer", "minimum": 1, "maximum": ORDER_PAGE_MAX, "default": ORDER_PAGE_DEFAULT}}),
            json!({"name": "cursor", "in": "query", "required": false, "schema": {"type": "string", "pattern": "^[0-9]{1,15}\\.[A-Za-z0-9._:-]{1,64}$"},
                "description": "a page's next_cursor: the page after it"}),
        ],
        ("get", "/v1/inventory/export") => vec![
            json!({"name": "location", "in": "query", "required": false, "schema": id(),
                "description": "this location's records (a store token: its own, required); absent: every location's"}),
            json!({"name": "format", "in": "query", "required": false, "schema": {"enum": ["csv"], "default": "csv"}}),
        ],
        ("get", "/v1/events") => vec![
            json!({"name": "after", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0, "maximum": u64::MAX, "default": 0},
                "description": "the events after this number (a page's next_after)"}),
            json!({"name": "types", "in": "query", "required": false, "schema": {"type": "string", "pattern": types_pattern()},
                "description": format!("comma-separated types or families (stock.*, order.placed, *), at most {EVENT_TYPES_MAX}; absent: every type")}),
            json!({"name": "limit", "in": "query", "required": false,
                "schema": {"type": "integer", "minimum": 1, "maximum": EVENTS_PAGE_MAX, "default": EVENTS_PAGE_DEFAULT}}),
            json!({"name": "Last-Event-ID", "in": "header", "required": false, "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                "description": "a stream (Accept: text/event-stream) resumes after it, in place of after"}),
        ],
        ("get", "/v1/feed") => {
            let header = |name: &str, schema: Value| json!({"name": name, "in": "header", "required": true, "schema": schema});
            let query = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "schema": id(), "description": description});
            vec![
                header("Upgrade", json!({"const": "websocket"})),
                header("Connection", json!({"const": "Upgrade"})),
                header(
                    "Sec-WebSocket-Key",
                    json!({"type": "string", "pattern": "^[A-Za-z0-9+/]{22}==$"}),
                ),
                header("Sec-WebSocket-Version", json!({"const": "13"})),
                query(
                    "location",
                    "the location to follow (exactly one of location and sku)",
                ),
                query(
                    "sku",
                    "the SKU to follow (exactly one of location and sku; not with a store token)",
                ),
                json!({"name": "token", "in": "query", "required": false, "schema": {"type": "string"}, "description": "the token, for browsers (instead of Authorization)"}),
            ]
        }
        _ => Vec::new(),
    }
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for &(method, route, summary, input, status, output, errors) in OPS {
        let path = route.template();
        let mut params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(path_parameter)
            .collect();
        params.extend(other_parameters(method, path));
        let mut responses = Map::new();
        responses.insert(status.to_string(), success_response(path, status, output));
        if method == "post" && matches!(path, "/v1/transfers" | "/v1/supply") {
            // The id is the key: a request repeated alike answers what
            // it made, as it is now.
            responses.insert(
                "200".into(),
                json!({"description": "made already under this id, asked alike (a retry), as it is now",
                    "content": {"application/json": {"schema": schema_ref(output)}}}),
            );
        }
        for e in errors {
            responses.insert(e.to_string(), problem_response(*e));
        }
        let mut op = json!({"summary": summary, "responses": responses});
        if !params.is_empty() {
            op["parameters"] = json!(params);
        }
        if route.public() {
            op["security"] = json!([]);
        }
        if path == "/v1/cluster" {
            // A single node asks for a token (then answers 404); a
            // cluster node answers anyone.
            op["security"] = json!([{"bearer": []}, {}]);
        }
        if let Some(l) = links(path, status) {
            op["responses"][status.to_string()]["links"] = l;
        }
        if let Some(i) = input {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema_ref(i)}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "holdfast", "version": env!("CARGO_PKG_VERSION"),
            "description": "Order-management and stock-reservation engine. Every resource answers HEAD as GET without a body, and any other method it does not list 405 with Allow. Errors are application/problem+json (RFC 9457)."},
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` under `v`, with where it is.
    fn refs<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match (k.as_str(), x) {
                        ("$ref", Value::String(r)) => out.push((at.clone(), r)),
                        _ => refs(x, format!("{at}/{k}"), out),
                    }
                }
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    refs(x, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_ref_resolves() {
        let doc = document();
        let mut found = Vec::new();
        refs(&doc, String::new(), &mut found);
        assert!(found.len() > 20, "{found:?}");
        for (at, r) in found {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{at}: {r}"));
            assert!(
                doc.pointer(pointer).is_some(),
                "{at}: {r} resolves to nothing"
            );
        }
    }

    /// One table: each method of each route is one documented operation,
    /// and each operation a route's method.
    #[test]
    fn every_route_is_documented_and_every_operation_served() {
        let mut documented: std::collections::HashSet<(Route, String)> =
            OPS.iter().map(|op| (op.1, op.0.to_uppercase())).collect();
        assert_eq!(documented.len(), OPS.len(), "an operation twice");
        for &r in Route::ALL {
            for m in r.methods() {
                assert!(
                    documented.remove(&(r, m.to_string())),
                    "{m} {} is served but not documented",
                    r.template()
                );
            }
        }
        assert!(
            documented.is_empty(),
            "documented, not served: {documented:?}"
        );
    }

    /// A default the document states is the one the server applies.
    #[test]
    fn a_location_s_priority_defaults_as_served() {
        use crate::domain::catalog::{Location, LocationKind};
        let served = Location::new("x", LocationKind::Store, 0.0, 0.0).priority;
        let doc = document();
        let p = &doc["components"]["schemas"]["LocationInput"]["properties"]["priority"];
        let stated = p["default"].as_u64().or_else(|| {
            p["anyOf"]
                .as_array()?
                .iter()
                .find_map(|s| s["default"].as_u64())
        });
        assert_eq!(stated, Some(served as u64), "{p}");
    }

    #[test]
    fn every_operation_answers_what_it_may() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        assert_eq!(
            paths
                .values()
                .map(|p| p.as_object().map_or(0, |m| m.len()))
                .sum::<usize>(),
            OPS.len()
        );
        for (path, ops) in paths {
            for (method, op) in ops.as_object().expect("operations") {
                let at = format!("{method} {path}");
                let responses = op["responses"].as_object().expect(&at);
                assert!(
                    responses.keys().any(|s| s.starts_with('2') || s == "101"),
                    "{at}: no success"
                );
                for (status, r) in responses {
                    assert!(r["description"].is_string(), "{at} {status}");
                }
                // A token's operation says what a missing token gets, and
                // a public one asks for none.
                let public = op["security"] == json!([]);
                let route = Route::ALL.iter().find(|r| r.template() == path);
                assert_eq!(Some(public), route.map(|r| r.public()), "{at}");
                if !public {
                    for s in ["401", "429"] {
                        assert!(responses.contains_key(s), "{at}: {s}");
                    }
                }
                // A body read: malformed (400 where it is parsed), too
                // large, too slow.
                if op.get("requestBody").is_some() {
                    for s in ["400", "408", "413"] {
                        assert!(responses.contains_key(s), "{at}: {s}");
                    }
                }
                // Every path parameter is declared, and nothing else of the path.
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                let in_path: Vec<&str> = path
                    .split('/')
                    .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
                    .collect();
                assert_eq!(declared, in_path, "{at}");
                if !in_path.is_empty() {
                    assert!(
                        responses.contains_key("422") || responses.contains_key("404"),
                        "{at}: a malformed id"
                    );
                }
            }
        }
    }
}
