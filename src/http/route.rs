//! Every resource the API serves, in one table.
//!
//! A request's path is parsed once into a `Route`; from it come the
//! handler (`http::handle`), the metrics label, the methods allowed (a
//! 405's `Allow`), who answers it on a cluster node (`Serving`), and its
//! OpenAPI path (`openapi::OPS` names routes, never paths). A test checks
//! that every route's every method is documented and every documented
//! operation is a route's.

use warp::http::Method;

use crate::metrics::Route as Label;

/// Declares `Route` with its `ALL` (in parse order) and `template`, from
/// one list of `Name => "/path/{param}"`.
macro_rules! routes {
    ($($(#[$doc:meta])* $name:ident => $template:literal,)*) => {
        /// One resource: a path template and the methods it answers.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Route {
            $($(#[$doc])* $name,)*
        }

        impl Route {
            /// Every route, in parse order.
            pub const ALL: &'static [Route] = &[$(Route::$name,)*];

            /// The path, parameters in braces (as OpenAPI writes them).
            pub fn template(self) -> &'static str {
                match self {
                    $(Route::$name => $template,)*
                }
            }
        }
    };
}

// In parse order: a literal segment before a parameter in the same place
// (`/v1/skus/batch` before `/v1/skus/{sku}`).
routes! {
    Healthz => "/healthz",
    Metrics => "/metrics",
    OpenApi => "/v1/openapi.json",
    /// The operations console's page (`http::console`); `/ui/` alike.
    Console => "/ui",
    /// The store board's page (`http::board`).
    Board => "/ui/stores/{location}",
    /// Who the request's token is (the console shows what it may do).
    Whoami => "/v1/whoami",
    AdyenWebhook => "/v1/webhooks/adyen",
    /// The published events: a page, or a Server-Sent Events stream.
    Events => "/v1/events",
    /// Webhook subscriptions (after Adyen's literal path).
    Webhooks => "/v1/webhooks",
    Webhook => "/v1/webhooks/{id}",
    WebhookDeliveries => "/v1/webhooks/{id}/deliveries",
    WebhookReplay => "/v1/webhooks/{id}/replay",
    /// The stock feed: a WebSocket, upgraded before routing (`http::feed`).
    Feed => "/v1/feed",
    /// A cluster node's view (`cluster::front`); a single node has none.
    Cluster => "/v1/cluster",
    /// The bulk catalog import; also the SKU whose id is `batch`.
    SkuBatch => "/v1/skus/batch",
    Sku => "/v1/skus/{sku}",
    Locations => "/v1/locations",
    Location => "/v1/locations/{id}",
    Pickups => "/v1/locations/{id}/pickups",
    InventoryBatch => "/v1/inventory/batch",
    /// A location's or the network's records as CSV.
    InventoryExport => "/v1/inventory/export",
    Stock => "/v1/inventory/{location}/{sku}",
    Adjustments => "/v1/inventory/{location}/{sku}/adjustments",
    /// Units set apart from sale (or back), by bucket.
    Unsellable => "/v1/inventory/{location}/{sku}/unsellable",
    /// A record's movement history.
    History => "/v1/inventory/{location}/{sku}/history",
    Availability => "/v1/availability/{sku}",
    Reservations => "/v1/reservations",
    Reservation => "/v1/reservations/{id}",
    Confirm => "/v1/reservations/{id}/confirm",
    Release => "/v1/reservations/{id}/release",
    Fulfil => "/v1/reservations/{id}/fulfil",
    Extend => "/v1/reservations/{id}/extend",
    ScalapayCheckouts => "/v1/payments/scalapay/checkouts",
    Orders => "/v1/orders",
    Order => "/v1/orders/{id}",
    OrderCancel => "/v1/orders/{id}/cancel",
    OrderReturns => "/v1/orders/{id}/returns",
    RefundSettle => "/v1/orders/{id}/refunds/settle",
    ShipmentLabel => "/v1/orders/{id}/shipments/{shipment}/label",
    ShipmentEvents => "/v1/orders/{id}/shipments/{shipment}/events",
    SourcingPlan => "/v1/sourcing/plan",
    /// Transfers between locations: the listing, and requests.
    Transfers => "/v1/transfers",
    Transfer => "/v1/transfers/{id}",
    TransferShip => "/v1/transfers/{id}/ship",
    TransferReceive => "/v1/transfers/{id}/receive",
    TransferCancel => "/v1/transfers/{id}/cancel",
    /// Incoming supply: the listing, and announcements.
    Supplies => "/v1/supply",
    Supply => "/v1/supply/{id}",
    SupplyReceive => "/v1/supply/{id}/receive",
    SupplyCancel => "/v1/supply/{id}/cancel",
}

/// Who answers a request on a cluster node (`cluster::front`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// The node itself, whatever its role: health, metrics, the document,
    /// the cluster's view, the feed.
    Node,
    /// A follower from its copy when fresh (a GET), else the leader.
    CopyOrLeader,
    /// The leader.
    Leader,
}

use Route::*;

/// Every route's template split at `/`, once (requests are parsed against
/// it on the hot path).
static SPLIT: std::sync::LazyLock<Vec<(Route, Vec<&'static str>)>> =
    std::sync::LazyLock::new(|| {
        Route::ALL
            .iter()
            .map(|r| (*r, r.template()[1..].split('/').collect()))
            .collect()
    });

impl Route {
    /// The route of a path split at `/` (each segment percent-decoded),
    /// if any.
    pub fn parse(seg: &[&str]) -> Option<Route> {
        SPLIT
            .iter()
            .find(|(_, t)| {
                t.len() == seg.len() && t.iter().zip(seg).all(|(p, s)| p.starts_with('{') || p == s)
            })
            .map(|(r, _)| *r)
    }

    /// The methods it answers (HEAD too wherever GET is: `allows`).
    pub fn methods(self) -> &'static [Method] {
        const GET: &[Method] = &[Method::GET];
        const POST: &[Method] = &[Method::POST];
        const GET_PUT: &[Method] = &[Method::GET, Method::PUT];
        match self {
            Healthz | Metrics | OpenApi | Board | Console | Whoami | Feed | Cluster | Locations
            | Pickups | Availability | Reservation | Order | ShipmentLabel | History | Transfer
            | Supply | Events | WebhookDeliveries | InventoryExport => GET,
            Transfers | Supplies | Webhooks | Orders => &[Method::GET, Method::POST],
            Webhook => &[Method::GET, Method::DELETE],
            SkuBatch => &[Method::GET, Method::PUT, Method::POST],
            Sku | Location | Stock => GET_PUT,
            AdyenWebhook | InventoryBatch | Adjustments | Unsellable | Reservations | Confirm
            | Release | Fulfil | Extend | ScalapayCheckouts | OrderCancel | OrderReturns
            | RefundSettle | ShipmentEvents | SourcingPlan | TransferShip | TransferReceive
            | TransferCancel | SupplyReceive | SupplyCancel | WebhookReplay => POST,
        }
    }

    pub fn allows(self, m: &Method) -> bool {
        let m = if m == Method::HEAD { &Method::GET } else { m };
        self.methods().contains(m)
    }

    /// A 405's `Allow`: its methods, HEAD after GET.
    pub fn allow(self) -> String {
        let mut out: Vec<&str> = Vec::new();
        for m in self.methods() {
            out.push(m.as_str());
            if m == Method::GET {
                out.push("HEAD");
            }
        }
        out.join(", ")
    }

    /// Served without a token: the operations endpoints, the store board's
    /// page (its feed asks for one), Adyen's webhook (signed by Adyen).
    pub fn public(self) -> bool {
        matches!(
            self,
            Healthz | Metrics | OpenApi | Board | Console | AdyenWebhook
        )
    }

    /// The label of its requests in the latency histogram (a bounded set).
    pub fn label(self, m: &Method) -> Label {
        let read = m == Method::GET;
        match self {
            Reservations => Label::ReservationsCreate,
            Confirm | Release | Fulfil | Extend => Label::ReservationsTransition,
            Reservation => Label::ReservationsGet,
            InventoryBatch => Label::InventoryBatch,
            Stock | Adjustments | Unsellable | History if read => Label::InventoryRead,
            InventoryExport => Label::InventoryRead,
            Stock | Adjustments | Unsellable | History => Label::InventoryWrite,
            Availability => Label::Availability,
            SourcingPlan => Label::SourcingPlan,
            Orders | Order | OrderCancel | OrderReturns | RefundSettle | ShipmentLabel
            | ShipmentEvents | AdyenWebhook | ScalapayCheckouts | Pickups => Label::Orders,
            SkuBatch | Sku | Locations | Location if read => Label::CatalogRead,
            SkuBatch | Sku | Locations | Location => Label::CatalogWrite,
            Healthz | Metrics | OpenApi => Label::Operations,
            Feed => Label::Feed,
            Transfers | Transfer | TransferShip | TransferReceive | TransferCancel => {
                Label::Transfers
            }
            Supplies | Supply | SupplyReceive | SupplyCancel => Label::Supply,
            Events | Webhooks | Webhook | WebhookDeliveries | WebhookReplay => Label::Events,
            Board | Console | Whoami | Cluster => Label::Other,
        }
    }

    /// Who answers it on a cluster node.
    pub fn serving(self) -> Serving {
        match self {
            Healthz | Metrics | OpenApi | Cluster | Feed => Serving::Node,
            Stock | Availability | Reservation | Order | Transfers | Transfer | Supplies
            | Supply => Serving::CopyOrLeader,
            _ => Serving::Leader,
        }
    }

    /// A write a follower may send again to the next leader when the
    /// first one's answer was lost (`cluster::front`): a confirm or a
    /// release (made twice, made once), and, under an `Idempotency-Key`,
    /// a hold or an adjustment, of on_hand or of a bucket (applied once
    /// per key), a transfer's request or step (its id is its key; a
    /// step taken answers the transfer), a supply's announcement or
    /// cancel, and, keyed, its delivery. Not a count's PUT:
    /// sent seconds later it could undo a newer one.
    pub fn resendable(self, keyed: bool) -> bool {
        match self {
            Confirm | Release | Transfers | TransferShip | TransferReceive | TransferCancel
            | Supplies | SupplyCancel => true,
            Reservations | Adjustments | Unsellable | SupplyReceive => keyed,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(path: &str) -> Vec<&str> {
        path.trim_matches('/').split('/').collect()
    }

    #[test]
    fn every_template_parses_to_its_route() {
        for &r in Route::ALL {
            let path = r.template().replace(['{', '}'], "");
            assert_eq!(Route::parse(&split(&path)), Some(r), "{path}");
        }
        assert_eq!(Route::parse(&split("/v1/skus/batch")), Some(SkuBatch));
        assert_eq!(Route::parse(&split("/v1/skus/A1")), Some(Sku));
        for none in [
            "/",
            "/v1",
            "/v1/skus",
            "/v1/reservations/r/cancel",
            "/v1/inventory/S1/A1/adjustments/x",
            "/healthz/x",
        ] {
            assert_eq!(Route::parse(&split(none)), None, "{none}");
        }
    }

    #[test]
    fn allow_names_head_beside_get() {
        assert_eq!(SkuBatch.allow(), "GET, HEAD, PUT, POST");
        assert_eq!(Stock.allow(), "GET, HEAD, PUT");
        assert_eq!(Orders.allow(), "GET, HEAD, POST");
        assert_eq!(Confirm.allow(), "POST");
        assert!(Order.allows(&Method::HEAD));
        assert!(!Confirm.allows(&Method::HEAD));
    }
}
