//! The OpenAPI 3 description of every endpoint, built from one table.

use serde_json::{json, Map, Value};

/// (method, path, summary, request schema, success status, response schema, error statuses)
type Op = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
    &'static [u16],
);

const OPS: &[Op] = &[
    (
        "put",
        "/v1/skus/{sku}",
        "Create or replace a SKU (admin)",
        Some("SkuInput"),
        200,
        "Sku",
        &[400, 401, 403, 413, 422],
    ),
    (
        "get",
        "/v1/skus/{sku}",
        "Read a SKU",
        None,
        200,
        "Sku",
        &[401, 404, 422],
    ),
    (
        "put",
        "/v1/locations/{id}",
        "Create or replace a location (admin)",
        Some("LocationInput"),
        200,
        "Location",
        &[400, 401, 403, 413, 422],
    ),
    (
        "get",
        "/v1/locations/{id}",
        "Read a location",
        None,
        200,
        "Location",
        &[401, 404, 422],
    ),
    (
        "get",
        "/v1/locations",
        "List the locations",
        None,
        200,
        "LocationList",
        &[401],
    ),
    (
        "put",
        "/v1/inventory/{location}/{sku}",
        "Count: set on_hand (and safety_stock)",
        Some("CountInput"),
        200,
        "StockRecord",
        &[400, 401, 403, 413, 422, 503],
    ),
    (
        "get",
        "/v1/inventory/{location}/{sku}",
        "Read a stock record (on a cluster node that follows the SKU's shard: from its copy, fresh within 250 ms and past the node's own writes, answer header x-holdfast-read: follower; Cache-Control: no-cache asks the owner)",
        None,
        200,
        "StockRecord",
        &[401, 403, 404, 422],
    ),
    (
        "post",
        "/v1/inventory/{location}/{sku}/adjustments",
        "Adjust on_hand with a reason (with an optional Idempotency-Key header: applied once per key of the token, kept 24 hours; the same adjustment again answers the record as it is, another under the key is 422 idempotency_key_reused)",
        Some("AdjustmentInput"),
        200,
        "StockRecord",
        &[400, 401, 403, 409, 413, 422, 503],
    ),
    (
        "post",
        "/v1/inventory/batch",
        "Bulk count (at most 10,000 items)",
        Some("BatchInput"),
        200,
        "BatchResult",
        &[400, 401, 403, 413, 422, 503],
    ),
    (
        "get",
        "/v1/availability/{sku}",
        "Availability of a SKU across the network (on a cluster node that follows the SKU's shard: from its copy, fresh within 250 ms and past the node's own writes, answer header x-holdfast-read: follower; Cache-Control: no-cache asks the owner)",
        None,
        200,
        "Availability",
        &[401, 403, 404, 422],
    ),
    (
        "post",
        "/v1/skus/batch",
        "Bulk catalog import: up to 10,000 SKUs, all or nothing",
        Some("SkuBatchInput"),
        200,
        "BatchResult",
        &[400, 401, 403, 413, 422, 503],
    ),
    (
        "post",
        "/v1/orders",
        "Place an order: sourced, held per shipment, paid (authorized at its provider; captured when the first shipment ships)",
        Some("OrderInput"),
        201,
        "Order",
        &[400, 401, 402, 403, 409, 413, 422, 503],
    ),
    (
        "get",
        "/v1/orders/{id}",
        "Read an order",
        None,
        200,
        "Order",
        &[401, 403, 404, 422],
    ),
    (
        "post",
        "/v1/orders/{id}/cancel",
        "Cancel an order before anything left a building",
        None,
        200,
        "Order",
        &[401, 403, 404, 409, 422, 503],
    ),
    (
        "post",
        "/v1/orders/{id}/shipments/{shipment}/events",
        "Move a shipment: picked, packed (a delivery or a transfer is labelled at its carrier), shipped, delivered, ready_for_pickup, collected (a labelled parcel's carrier moves it to shipped and delivered as it tracks it)",
        Some("ShipmentEventInput"),
        200,
        "Order",
        &[400, 401, 403, 404, 409, 422, 503],
    ),
    (
        "get",
        "/v1/orders/{id}/shipments/{shipment}/label",
        "The carrier's label of a shipment (made when it was packed: a delivery or a transfer, with a carrier configured for its destination and both addresses known)",
        None,
        200,
        "Label",
        &[401, 403, 404, 422, 503],
    ),
    (
        "post",
        "/v1/orders/{id}/returns",
        "Return delivered goods to a location: restocked and refunded (a refund the provider cannot make now is owed: payment.refund_pending, made once it answers; one whose answer was lost where sending it again could refund twice: payment.refund_unclear)",
        Some("ReturnInput"),
        200,
        "Order",
        &[400, 401, 403, 404, 409, 422, 503],
    ),
    (
        "post",
        "/v1/orders/{id}/refunds/settle",
        "Settle an owed refund from what the provider's back office shows (admin): made, or not (owed again: made by the retry loop)",
        Some("RefundSettleInput"),
        200,
        "Order",
        &[400, 401, 403, 404, 409, 413, 422, 503],
    ),
    (
        "post",
        "/v1/payments/scalapay/checkouts",
        "A Scalapay order for the shopper to approve before the order is placed (pay in 3): its token (the order names it in payment.method.token) and the checkout URL to send the shopper to",
        Some("ScalapayCheckoutInput"),
        201,
        "ScalapayCheckout",
        &[400, 401, 403, 404, 409, 413, 422, 503],
    ),
    (
        "post",
        "/v1/webhooks/adyen",
        "Adyen's notifications (no token: each item's HMAC signature is checked, a forged one refuses the delivery with 401); each kept once on its order's payment.notices; answers [accepted]",
        Some("AdyenNotification"),
        200,
        "Accepted",
        &[400, 401, 404, 413],
    ),
    (
        "post",
        "/v1/sourcing/plan",
        "Plan which locations would serve a cart (holds nothing)",
        Some("PlanInput"),
        200,
        "Plan",
        &[400, 401, 403, 413, 422, 503],
    ),
    (
        "post",
        "/v1/reservations",
        "Hold a cart (all or nothing); optional Idempotency-Key",
        Some("ReservationInput"),
        201,
        "Reservation",
        &[400, 401, 403, 409, 413, 422, 429, 503, 504],
    ),
    (
        "get",
        "/v1/reservations/{id}",
        "Read a reservation",
        None,
        200,
        "Reservation",
        &[401, 403, 404, 422],
    ),
    (
        "post",
        "/v1/reservations/{id}/confirm",
        "Confirm a held reservation",
        None,
        200,
        "Reservation",
        &[401, 403, 404, 409, 503, 504],
    ),
    (
        "post",
        "/v1/reservations/{id}/release",
        "Release a reservation",
        None,
        200,
        "Reservation",
        &[401, 403, 404, 409, 503, 504],
    ),
    (
        "post",
        "/v1/reservations/{id}/fulfil",
        "Fulfil a confirmed reservation",
        None,
        200,
        "Reservation",
        &[401, 403, 404, 409, 503, 504],
    ),
    (
        "post",
        "/v1/reservations/{id}/extend",
        "Extend a held reservation",
        Some("ExtendInput"),
        200,
        "Reservation",
        &[400, 401, 403, 404, 409, 422, 503, 504],
    ),
    (
        "get",
        "/v1/locations/{id}/pickups",
        "The store's open pickups (pay and collect orders not yet collected, cancelled or declined), oldest first, at most 200 (admin or the store's token)",
        None,
        200,
        "PickupList",
        &[401, 403, 404, 422],
    ),
    (
        "get",
        "/v1/feed",
        "Stock feed: upgrade to a WebSocket with ?location= or ?sku= (token in Authorization or ?token=; a store token follows its own location only). Messages: {type: snapshot, records}, then {type: stock, <StockRecord>, ts} per committed change in version order; a fresh snapshot when the client falls behind; 1001 on shutdown",
        None,
        101,
        "FeedMessage",
        &[401, 403, 404, 422, 426],
    ),
    (
        "get",
        "/v1/cluster",
        "A cluster node's view (holdfast serve --cluster): per shard, its owner node, the lease's epoch, whether this node owns it, and the last sequence number this node's copy holds. A single node answers 404",
        None,
        200,
        "ClusterView",
        &[404],
    ),
    (
        "get",
        "/healthz",
        "Liveness and readiness",
        None,
        200,
        "Health",
        &[503],
    ),
    (
        "get",
        "/metrics",
        "Prometheus metrics (text format)",
        None,
        200,
        "Metrics",
        &[],
    ),
    (
        "get",
        "/v1/openapi.json",
        "This document",
        None,
        200,
        "OpenApi",
        &[],
    ),
];

fn schemas() -> Value {
    let mut all = core_schemas();
    for more in [sourcing_schemas(), cluster_schemas()] {
        if let (Some(a), Value::Object(more)) = (all.as_object_mut(), more) {
            a.extend(more);
        }
    }
    all
}

/// The bulk catalog import and the sourcing planner (one `json!` per half:
/// the macro's recursion limit).
fn cluster_schemas() -> Value {
    json!({
        "ClusterView": {"type": "object", "properties": {
            "cluster": {"type": "string"}, "node": {"type": "string"},
            "redis_reachable": {"type": "boolean"},
            "shards": {"type": "array", "items": {"type": "object", "properties": {
                "shard": {"type": "integer"}, "owner": {"type": ["string", "null"]},
                "epoch": {"type": "integer"}, "owned_here": {"type": "boolean"},
                "applied_seq": {"type": "integer"}}}}}}
    })
}

fn sourcing_schemas() -> Value {
    let id = json!({"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"});
    let qty = json!({"type": "integer", "minimum": 1, "maximum": 1_000_000});
    json!({
        "SkuBatchInput": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 10000,
            "items": {"allOf": [{"$ref": "#/components/schemas/SkuInput"}, {"type": "object", "required": ["sku"], "properties": {"sku": id}}]}}}},
        "OrderInput": {"type": "object", "required": ["id", "lines", "delivery", "payment"], "properties": {
            "id": id,
            "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "object", "required": ["sku", "qty", "unit_price"], "properties": {"sku": id, "qty": qty, "unit_price": {"type": "string", "pattern": "^[0-9]{1,11}(\\.[0-9]{1,2})?$"}}}},
            "delivery": {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["ship", "pickup"]}, "lat": {"type": "number"}, "lon": {"type": "number"}, "location": id,
                "address": {"$ref": "#/components/schemas/Address"}}},
            "channel": {"type": "string", "description": "Where the order comes from (web, app, callcenter...): payment rules may choose its provider by it"},
            "payment": {"type": "object", "properties": {"provider": {"type": "string", "description": "sandbox (amounts ending in .51 are declined, .52 answer unavailable), or a provider holdfast.toml configures (adyen, gestpay, amazonpay); absent: the one [[payments.rules]] choose by channel and destination country, else [payments] default"},
                "method": {"type": "object", "description": "The shopper's payment details from the checkout, passed to the provider as they are (Adyen: the Drop-in's paymentMethod object; GestPay: paymentTypeDetails; Amazon Pay: {checkoutSessionId}); required by those; at most 4096 bytes"}}},
            "split_lines": {"type": "boolean", "description": "A line no single location can serve whole is split across the fewest locations that together can (default: [sourcing] split_lines, true); false: it is unsourced"},
            "reservation_id": {"type": "string", "description": "A held reservation to turn into the order: its lines must be the order's (same SKUs and quantities); its units become one reservation per shipment without ever being released. Not held: 409 reservation_not_held. A declined payment leaves it held."}}},
        "Order": {"type": "object", "properties": {"id": id, "status": {"enum": ["pending_payment", "payment_declined", "confirmed", "in_fulfilment", "shipped", "ready_for_pickup", "delivered", "collected", "cancelled", "returned"]},
            "total": {"type": "string"}, "lines": {"type": "array", "items": {"type": "object"}}, "delivery": {"type": "object"}, "payment": {"type": "object"},
            "shipments": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "integer"}, "location": id, "type": {"enum": ["delivery", "pickup", "transfer"]}, "status": {"type": "string"}}}}}},
        "ShipmentEventInput": {"type": "object", "required": ["status"], "properties": {"status": {"enum": ["picked", "packed", "shipped", "delivered", "ready_for_pickup", "collected"]}}},
        "Accepted": {"type": "string", "enum": ["[accepted]"]},
        "Address": {"type": "object", "description": "A postal address, for carriers' labels (a delivery's, a location's)", "required": ["name", "street", "city", "postal_code", "country", "phone"],
            "properties": {"name": {"type": "string", "maxLength": 100}, "street": {"type": "string", "maxLength": 100}, "city": {"type": "string", "maxLength": 100},
                "postal_code": {"type": "string", "maxLength": 100}, "country": {"type": "string", "pattern": "^[A-Z]{2}$"}, "phone": {"type": "string", "maxLength": 100}}},
        "Label": {"type": "string", "format": "binary"},
        "ScalapayCheckoutInput": {"type": "object", "required": ["reference", "amount", "consumer", "redirect"], "properties": {
            "reference": id, "amount": {"type": "string"}, "shipping": {"$ref": "#/components/schemas/Address"},
            "consumer": {"type": "object", "required": ["given_names", "surname", "email"]},
            "redirect": {"type": "object", "required": ["confirm_url", "cancel_url"]}}},
        "ScalapayCheckout": {"type": "object", "properties": {"token": {"type": "string"}, "checkout_url": {"type": "string"}, "expires": {"type": "string"}}},
        "AdyenNotification": {"type": "object", "required": ["notificationItems"], "properties": {"live": {"type": "string"},
            "notificationItems": {"type": "array", "items": {"type": "object", "properties": {"NotificationRequestItem": {"type": "object", "required": ["pspReference", "eventCode", "success", "additionalData"]}}}}}},
        "RefundSettleInput": {"type": "object", "required": ["key", "made"], "properties": {"key": {"type": "string", "maxLength": 200}, "made": {"type": "boolean"}}},
        "ReturnInput": {"type": "object", "required": ["lines", "location"], "properties": {"location": id, "lines": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["sku", "qty"], "properties": {"sku": id, "qty": qty}}}}},
        "PlanInput": {"type": "object", "required": ["lines"], "properties": {
            "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "object", "required": ["sku", "qty"], "properties": {"sku": id, "qty": qty}}},
            "destination": {"type": "object", "required": ["lat", "lon"], "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number", "minimum": -180, "maximum": 180}}},
            "pickup_location": id, "explain": {"type": "boolean", "default": false}, "split_lines": {"type": "boolean", "description": "A line no single location can serve whole is split across the fewest locations that together can (default: [sourcing] split_lines, true); false: it is unsourced"}},
            "description": "A destination or a pickup_location, exactly one."},
        "Plan": {"type": "object", "properties": {
            "shipments": {"type": "array", "items": {"type": "object", "properties": {"location": id, "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": id, "qty": qty}}}, "distance_km": {"type": "number"}, "transfer": {"type": "boolean"}}}},
            "unsourced": {"type": "array", "items": {"type": "object", "properties": {"sku": id, "qty": qty}}},
            "method": {"enum": ["exact", "heuristic"]},
            "explain": {"type": "array", "items": {"type": "object", "properties": {"location": id, "distance_km": {"type": "number"}, "chosen": {"type": "boolean"},
                "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": id, "qty": qty}}},
                "scores": {"type": "object", "properties": {"distance": {"type": "number"}, "priority": {"type": "number"}, "rotation": {"type": "number"}, "total": {"type": "number"}}}}}}}}
    })
}

fn core_schemas() -> Value {
    let id = json!({"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"});
    let qty = json!({"type": "integer", "minimum": 1, "maximum": 1_000_000});
    let stock = json!({"type": "integer", "minimum": 0, "maximum": 1_000_000_000i64});
    let side = json!({"type": "integer", "minimum": 1, "maximum": 30_000});
    let dims = json!({"type": "object", "required": ["length", "width", "height"], "properties": {"length": side, "width": side, "height": side}});
    let line = json!({"type": "object", "required": ["sku", "qty", "location"], "properties": {"sku": id, "qty": qty, "location": id, "requested": qty}});
    json!({
        "SkuInput": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "weight_g": {"type": "integer"}, "max_qty_per_reservation": qty,
            "dimensions_mm": dims, "ship_alone": {"type": "boolean", "default": false}}},
        "Sku": {"type": "object", "properties": {"sku": id, "name": {"type": "string"}, "weight_g": {"type": ["integer", "null"]}, "max_qty_per_reservation": {"type": ["integer", "null"]},
            "dimensions_mm": {"oneOf": [dims, {"type": "null"}]}, "ship_alone": {"type": "boolean"}}},
        "LocationInput": {"type": "object", "required": ["name", "kind", "lat", "lon"], "properties": {
            "name": {"type": "string"}, "kind": {"enum": ["store", "dc"]}, "lat": {"type": "number", "minimum": -90, "maximum": 90},
            "lon": {"type": "number", "minimum": -180, "maximum": 180}, "priority": {"type": "integer", "minimum": 0, "maximum": 1000},
            "ship": {"type": "boolean"}, "pickup": {"type": "boolean"}, "daily_capacity": {"type": ["integer", "null"]}, "active": {"type": "boolean"},
            "address": {"$ref": "#/components/schemas/Address"}}},
        "Location": {"allOf": [{"$ref": "#/components/schemas/LocationInput"}, {"type": "object", "properties": {"id": id}}]},
        "LocationList": {"type": "object", "properties": {"locations": {"type": "array", "items": {"$ref": "#/components/schemas/Location"}}}},
        "CountInput": {"type": "object", "required": ["on_hand"], "properties": {"on_hand": stock, "safety_stock": stock}},
        "AdjustmentInput": {"type": "object", "required": ["delta", "reason"], "properties": {"delta": {"type": "integer"}, "reason": {"enum": ["receipt", "sale", "return", "damage", "correction"]}}},
        "StockRecord": {"type": "object", "properties": {"location": id, "sku": id, "on_hand": {"type": "integer"}, "reserved": {"type": "integer"}, "safety_stock": {"type": "integer"}, "available": {"type": "integer"}, "version": {"type": "integer"}, "rotation": {"type": "number", "description": "Units sold (sales adjustments and fulfilled reservations) over the last 7 UTC days per average unit on hand; 0 when nothing sold"}}},
        "BatchInput": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "maxItems": 10000, "items": {"type": "object", "required": ["location", "sku", "on_hand"], "properties": {"location": id, "sku": id, "on_hand": stock, "safety_stock": stock}}}}},
        "BatchResult": {"type": "object", "properties": {"applied": {"type": "integer"}}},
        "Availability": {"type": "object", "properties": {"sku": id, "available": {"type": "integer"}, "locations": {"type": "array", "items": {"type": "object", "properties": {"location": id, "available": {"type": "integer"}}}}}},
        "ReservationInput": {"type": "object", "required": ["lines"], "properties": {
            "lines": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "object", "required": ["sku", "qty"], "properties": {"sku": id, "qty": qty, "location": id},
                "description": "A line without a location is sourced (a destination or a pickup_location is then required)."}},
            "ttl_s": {"type": "integer", "minimum": 1, "maximum": 86400, "default": 900}, "allow_partial": {"type": "boolean"},
            "destination": {"type": "object", "required": ["lat", "lon"], "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number", "minimum": -180, "maximum": 180}}},
            "pickup_location": id, "split_lines": {"type": "boolean", "description": "A line no single location can serve whole is split across the fewest locations that together can (default: [sourcing] split_lines, true); false: it is unsourced"}}},
        "ExtendInput": {"type": "object", "required": ["ttl_s"], "properties": {"ttl_s": {"type": "integer", "minimum": 1, "maximum": 86400}}},
        "Reservation": {"type": "object", "properties": {"id": id, "status": {"enum": ["held", "confirmed", "released", "expired", "fulfilled"]}, "expires_at": {"type": ["string", "null"], "format": "date-time"}, "created_at": {"type": "string", "format": "date-time"}, "lines": {"type": "array", "items": line}}},
        "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
        "PickupList": {"type": "object", "properties": {"location": {"type": "string"}, "pickups": {"type": "array", "items": {"$ref": "#/components/schemas/Order"}}}},
        "FeedMessage": {"type": "object", "required": ["type"], "properties": {"type": {"enum": ["snapshot", "stock"]},
            "records": {"type": "array", "items": {"$ref": "#/components/schemas/StockRecord"}, "description": "snapshot: every record of the scope (without rotation)"},
            "ts": {"type": "string", "format": "date-time", "description": "stock: when the change was made; the other fields are the StockRecord's"}}},
        "Metrics": {"type": "string"},
        "OpenApi": {"type": "object"},
        "Problem": {"type": "object", "required": ["type", "title", "status", "code"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"}, "code": {"type": "string"}, "detail": {"type": "string"},
            "errors": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
            "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": id, "location": id, "requested": {"type": "integer"}, "available": {"type": "integer"}}}}}}
    })
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, input, status, output, errors) in OPS {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}}))
            .collect();
        let mut responses = Map::new();
        let content_type = match *path {
            "/metrics" | "/v1/webhooks/adyen" => "text/plain",
            "/v1/orders/{id}/shipments/{shipment}/label" => "application/pdf",
            _ => "application/json",
        };
        responses.insert(
            status.to_string(),
            json!({"description": "success", "content": {content_type: {"schema": {"$ref": format!("#/components/schemas/{output}")}}}}),
        );
        for e in *errors {
            responses.insert(
                e.to_string(),
                json!({"description": "problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
            );
        }
        let mut op = json!({"summary": summary, "parameters": params, "responses": responses});
        if *path == "/v1/reservations" {
            if let Some(a) = op["parameters"].as_array_mut() {
                a.push(json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,64}$"}}));
            }
        }
        if let Some(i) = input {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{i}")}}}});
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "holdfast", "version": env!("CARGO_PKG_VERSION"), "description": "Order-management and stock-reservation engine"},
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}],
        "paths": paths,
    })
}
