//! Counters and histograms for `/metrics` (Prometheus text format), kept in
//! atomics: recording is a few relaxed adds on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::domain::reservation::Status;
use crate::domain::stock::Bucket;
use crate::feed::FeedStats;
use crate::persistence::JournalStats;

/// Upper bounds of the latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

/// Routes named in the request histogram (a bounded label set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ReservationsCreate,
    ReservationsTransition,
    ReservationsGet,
    InventoryWrite,
    InventoryRead,
    InventoryBatch,
    Availability,
    SourcingPlan,
    Orders,
    CatalogWrite,
    CatalogRead,
    Operations,
    Feed,
    Transfers,
    Supply,
    Events,
    Other,
}

impl Route {
    pub const ALL: [Route; 17] = [
        Route::ReservationsCreate,
        Route::ReservationsTransition,
        Route::ReservationsGet,
        Route::InventoryWrite,
        Route::InventoryRead,
        Route::InventoryBatch,
        Route::Availability,
        Route::SourcingPlan,
        Route::Orders,
        Route::CatalogWrite,
        Route::CatalogRead,
        Route::Operations,
        Route::Feed,
        Route::Transfers,
        Route::Supply,
        Route::Events,
        Route::Other,
    ];

    /// The `route` label.
    pub fn name(self) -> &'static str {
        match self {
            Route::ReservationsCreate => "reservations_create",
            Route::ReservationsTransition => "reservations_transition",
            Route::ReservationsGet => "reservations_get",
            Route::InventoryWrite => "inventory_write",
            Route::InventoryRead => "inventory_read",
            Route::InventoryBatch => "inventory_batch",
            Route::Availability => "availability",
            Route::SourcingPlan => "sourcing_plan",
            Route::Orders => "orders",
            Route::CatalogWrite => "catalog_write",
            Route::CatalogRead => "catalog_read",
            Route::Operations => "operations",
            Route::Feed => "feed",
            Route::Transfers => "transfers",
            Route::Supply => "supply",
            Route::Events => "events",
            Route::Other => "other",
        }
    }
}

/// The steps of incoming supply, as `holdfast_supply_total` labels them.
pub const SUPPLY_STEPS: [&str; 3] = ["expected", "received", "cancelled"];

/// The steps of a transfer, as `holdfast_transfers_total` labels them.
pub const TRANSFER_STEPS: [&str; 4] = ["requested", "shipped", "received", "cancelled"];

/// Latencies (or any durations) in the buckets of `LATENCY_BUCKETS_US`.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Its lines (buckets, sum, count) under `name`, in seconds; `labels`
    /// are put first in each line's braces (`k="v",` or empty).
    pub fn write(&self, s: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (b, c) in LATENCY_BUCKETS_US.iter().zip(self.buckets.iter()) {
            cum += c.load(Relaxed);
            let _ = writeln!(
                s,
                "{name}_bucket{{{labels}le=\"{}\"}} {cum}",
                *b as f64 / 1e6
            );
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(s, "{name}_bucket{{{labels}le=\"+Inf\"}} {n}");
        let plain = labels.trim_end_matches(',');
        let braces = if plain.is_empty() {
            String::new()
        } else {
            format!("{{{plain}}}")
        };
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(s, "{name}_sum{braces} {sum}");
        let _ = writeln!(s, "{name}_count{braces} {n}");
    }

    pub fn observe(&self, us: u64) {
        if let Some(i) = LATENCY_BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }
}

#[derive(Default)]
pub struct Metrics {
    pub reservations_held: AtomicU64,
    pub reservations_rejected: AtomicU64,
    pub reservations_confirmed: AtomicU64,
    pub reservations_released: AtomicU64,
    pub reservations_expired: AtomicU64,
    pub reservations_fulfilled: AtomicU64,
    pub overload_rejections: AtomicU64,
    /// Counts as of a time (`counted_at`): placed, refused as older than
    /// the record's last count, refused as reaching past its movements.
    pub late_counts: [AtomicU64; 3],
    /// Units of unsellable stock moved, by bucket (`Bucket::ALL`'s
    /// order): into it (set apart, received into it), out of it (set
    /// back, written off).
    pub unsellable_units: [[AtomicU64; 2]; 6],
    /// Finished orders dropped from memory (archived in sled), and orders
    /// read back into memory to change.
    pub orders_passivated: AtomicU64,
    /// Transfer steps taken (`TRANSFER_STEPS`' order), units shipped and
    /// arrived (`["shipped", "received"]`), shipments refused for units
    /// not free at the sender, and transfers open (requested or shipped).
    pub transfer_steps: [AtomicU64; 4],
    pub transfer_units: [AtomicU64; 2],
    pub transfers_short: AtomicU64,
    pub transfers_open: AtomicU64,
    /// Supply steps (`SUPPLY_STEPS`' order) and units delivered.
    pub supply_steps: [AtomicU64; 3],
    pub supply_units_received: AtomicU64,
    /// Units held against incoming supply (backorders and preorders), and
    /// units of them converted to on hand as supply arrived.
    pub backorder_units_held: AtomicU64,
    pub backorder_units_converted: AtomicU64,
    pub orders_activated: AtomicU64,
    /// Per route: latency histogram; per route and status class: counts.
    latency: [Histogram; Route::ALL.len()],
    responses: [[AtomicU64; 5]; Route::ALL.len()],
}

impl Metrics {
    pub fn reservation_transition(&self, to: Status) {
        let c = match to {
            Status::Held => &self.reservations_held,
            Status::Confirmed => &self.reservations_confirmed,
            Status::Released => &self.reservations_released,
            Status::Expired => &self.reservations_expired,
            Status::Fulfilled => &self.reservations_fulfilled,
        };
        c.fetch_add(1, Relaxed);
    }

    pub fn observe_request(&self, route: Route, status: u16, us: u64) {
        let route = route as usize;
        self.latency[route].observe(us);
        let class = (usize::from(status / 100)).clamp(1, 5) - 1;
        self.responses[route][class].fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, journal: &JournalStats, feed: &FeedStats) -> String {
        let mut s = String::with_capacity(8192);
        self.write_reservations(&mut s);
        self.write_orders(&mut s);
        self.write_transfers(&mut s);
        self.write_supply(&mut s);
        write_feed_and_journal(&mut s, feed, journal);
        self.write_http(&mut s);
        s
    }

    /// The reservations by status, carts refused and overload refusals.
    fn write_reservations(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP holdfast_reservations_total Reservations by the status they reached.\n# TYPE holdfast_reservations_total counter"
        );
        for (st, c) in [
            ("held", &self.reservations_held),
            ("confirmed", &self.reservations_confirmed),
            ("released", &self.reservations_released),
            ("expired", &self.reservations_expired),
            ("fulfilled", &self.reservations_fulfilled),
        ] {
            let _ = writeln!(
                s,
                "holdfast_reservations_total{{status=\"{st}\"}} {}",
                c.load(Relaxed)
            );
        }
        counter(
            s,
            "holdfast_reservations_insufficient_stock_total",
            "Carts refused for insufficient stock.",
            self.reservations_rejected.load(Relaxed),
        );
        counter(
            s,
            "holdfast_overload_rejections_total",
            "Requests answered 503 because a mailbox or the journal queue was full.",
            self.overload_rejections.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP holdfast_late_counts_total Counts taken before they arrived (counted_at), by outcome.\n# TYPE holdfast_late_counts_total counter"
        );
        for (outcome, c) in ["placed", "stale", "too_old"].iter().zip(&self.late_counts) {
            let _ = writeln!(
                s,
                "holdfast_late_counts_total{{outcome=\"{outcome}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP holdfast_unsellable_units_total Units moved into a bucket of unsellable stock (set apart, received into it) and out of it (set back, written off).\n# TYPE holdfast_unsellable_units_total counter"
        );
        for (b, moved) in Bucket::ALL.iter().zip(&self.unsellable_units) {
            for (direction, c) in ["in", "out"].iter().zip(moved) {
                let _ = writeln!(
                    s,
                    "holdfast_unsellable_units_total{{bucket=\"{}\",direction=\"{direction}\"}} {}",
                    b.as_str(),
                    c.load(Relaxed)
                );
            }
        }
    }

    /// Transfers' steps, units, refusals and those open.
    fn write_transfers(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP holdfast_transfers_total Transfer steps taken between locations.\n# TYPE holdfast_transfers_total counter"
        );
        for (step, c) in TRANSFER_STEPS.iter().zip(&self.transfer_steps) {
            let _ = writeln!(
                s,
                "holdfast_transfers_total{{step=\"{step}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            s,
            "# HELP holdfast_transfer_units_total Units that left a location by transfer (shipped) and that arrived (received); the difference, once received, is the discrepancy.\n# TYPE holdfast_transfer_units_total counter"
        );
        for (kind, c) in ["shipped", "received"].iter().zip(&self.transfer_units) {
            let _ = writeln!(
                s,
                "holdfast_transfer_units_total{{kind=\"{kind}\"}} {}",
                c.load(Relaxed)
            );
        }
        counter(
            s,
            "holdfast_transfers_short_total",
            "Transfer shipments refused: units not free at the sender.",
            self.transfers_short.load(Relaxed),
        );
        metric(
            s,
            "gauge",
            "holdfast_transfers_open",
            "Transfers requested or shipped, not yet received or cancelled (kept by the leader).",
            self.transfers_open.load(Relaxed),
        );
    }

    /// Incoming supply's steps and units delivered.
    fn write_supply(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP holdfast_supply_total Steps of incoming supply (purchase orders, advance shipping notices): announced, deliveries, cancels.\n# TYPE holdfast_supply_total counter"
        );
        for (step, c) in SUPPLY_STEPS.iter().zip(&self.supply_steps) {
            let _ = writeln!(
                s,
                "holdfast_supply_total{{step=\"{step}\"}} {}",
                c.load(Relaxed)
            );
        }
        counter(
            s,
            "holdfast_supply_units_received_total",
            "Units delivered by incoming supply.",
            self.supply_units_received.load(Relaxed),
        );
        counter(
            s,
            "holdfast_backorder_units_held_total",
            "Units held against incoming supply (backorders and preorders).",
            self.backorder_units_held.load(Relaxed),
        );
        counter(
            s,
            "holdfast_backorder_units_converted_total",
            "Backordered units converted to reserved units on hand as supply arrived.",
            self.backorder_units_converted.load(Relaxed),
        );
    }

    /// The orders passivated and activated.
    fn write_orders(&self, s: &mut String) {
        counter(
            s,
            "holdfast_orders_passivated_total",
            "Finished orders dropped from memory; they are read back from the archive on demand.",
            self.orders_passivated.load(Relaxed),
        );
        counter(
            s,
            "holdfast_orders_activated_total",
            "Passivated orders read back into memory to change (a late return).",
            self.orders_activated.load(Relaxed),
        );
    }

    /// The request latencies and the responses, by route.
    fn write_http(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP holdfast_http_request_duration_seconds Request latency by route.\n# TYPE holdfast_http_request_duration_seconds histogram"
        );
        for (i, route) in Route::ALL.iter().map(|r| r.name()).enumerate() {
            self.latency[i].write(
                s,
                "holdfast_http_request_duration_seconds",
                &format!("route=\"{route}\","),
            );
        }
        let _ = writeln!(
            s,
            "# HELP holdfast_http_responses_total Responses by route and status class.\n# TYPE holdfast_http_responses_total counter"
        );
        for (i, route) in Route::ALL.iter().map(|r| r.name()).enumerate() {
            for (c, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                let _ = writeln!(
                    s,
                    "holdfast_http_responses_total{{route=\"{route}\",class=\"{class}\"}} {}",
                    self.responses[i][c].load(Relaxed)
                );
            }
        }
    }
}

/// One metric's lines: its help, its type (`counter` or `gauge`) and its
/// value.
fn metric(s: &mut String, kind: &str, name: &str, help: &str, v: u64) {
    let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
}

/// A counter's lines.
fn counter(s: &mut String, name: &str, help: &str, v: u64) {
    metric(s, "counter", name, help, v);
}

/// The stock feed's changes and subscribers, then the journal's records,
/// commits, syncs, bytes and last durable sequence.
fn write_feed_and_journal(s: &mut String, feed: &FeedStats, journal: &JournalStats) {
    let (c, g) = ("counter", "gauge");
    for (kind, name, help, v) in [
        (
            c,
            "holdfast_feed_changes_total",
            "Record changes handed to the stock feed.",
            &feed.changes,
        ),
        (
            c,
            "holdfast_feed_released_total",
            "Changes sent to subscribers once durable (coalesced per record).",
            &feed.released,
        ),
        (
            c,
            "holdfast_feed_dropped_total",
            "Changes the feed queue could not take (every subscriber resynced).",
            &feed.dropped,
        ),
        (
            g,
            "holdfast_feed_subscribers",
            "Subscribers of the stock feed.",
            &feed.subscribers,
        ),
        (
            c,
            "holdfast_journal_records_total",
            "Records written to the journal.",
            &journal.records,
        ),
        (
            c,
            "holdfast_journal_batches_total",
            "Group commits.",
            &journal.batches,
        ),
        (
            c,
            "holdfast_journal_fsyncs_total",
            "fdatasync calls of the journal.",
            &journal.syncs,
        ),
        (
            c,
            "holdfast_journal_bytes_total",
            "Bytes written to the journal.",
            &journal.bytes,
        ),
        (
            g,
            "holdfast_journal_last_seq",
            "Sequence of the last durable record.",
            &journal.last_seq,
        ),
        (
            g,
            "holdfast_history_seq",
            "Journal sequence the movement history is complete through (it follows holdfast_journal_last_seq within a tick).",
            &journal.history_seq,
        ),
        (
            g,
            "holdfast_history_movements",
            "Movements the movement history holds ([history] movements_max at most).",
            &journal.history_movements,
        ),
        (
            g,
            "holdfast_events_last",
            "The newest published event's number (GET /v1/events).",
            &journal.events_last,
        ),
        (
            g,
            "holdfast_events_kept",
            "Published events kept ([events] events_max at most).",
            &journal.events_kept,
        ),
        (
            g,
            "holdfast_events_seq",
            "Journal sequence the published events are complete through (it follows holdfast_journal_last_seq within a tick).",
            &journal.events_seq,
        ),
    ] {
        metric(s, kind, name, help, v.load(Relaxed));
    }
}
