//! An order as the API shows it.

use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::domain::order::{format_minor, Delivery, Happened, Order, PayState, Route};
use crate::domain::published::Kind;

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
        "customer": {"email": o.customer.email, "phone": o.customer.phone},
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
        "timeline": timeline_json(o),
        "created_at": rfc3339(o.created_ms),
        "updated_at": rfc3339(o.updated_ms),
    })
}

/// What happened to it, oldest first, each named as its published event
/// (orders placed before the timeline was kept show it from then on).
fn timeline_json(o: &Order) -> Vec<Value> {
    o.timeline
        .iter()
        .filter_map(|s| {
            let kind = Kind::of_happened(s.happened)?;
            let mut v = json!({"at": rfc3339(s.at_ms), "type": kind.as_str()});
            match s.happened {
                Happened::Shipment { id, .. } | Happened::Labelled { shipment: id } => {
                    v["shipment"] = json!(id);
                }
                Happened::Captured { amount } => v["amount"] = json!(format_minor(amount)),
                _ => {}
            }
            Some(v)
        })
        .collect()
}
