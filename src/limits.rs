//! Every bound in the engine, in one place, with what it costs.
//!
//! A queue or an input without a bound is a bug: at peak it turns overload into
//! unbounded memory and latency. Each constant says what a unit costs.

/// Largest request body read, in bytes (api.md: over 1 MiB is 413).
/// Cost: one buffer of at most this size per in-flight request.
pub const REQUEST_BODY_BYTES_MAX: usize = 1024 * 1024;

/// A body over the limit is still read (and discarded) up to this size, so
/// that an ordinary client gets to read its 413 instead of a broken pipe;
/// past it the connection is cut. Cost: bandwidth only, nothing is kept.
pub const REQUEST_BODY_DRAIN_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Seconds a client has to send a request's head (request line and
/// headers), and that a kept-alive connection may wait idle for its next
/// request: past it the connection is closed. Bounds what a client that
/// trickles bytes (slowloris) holds: a connection permit and its buffers.
pub const REQUEST_HEAD_READ_S: u64 = 10;

/// Seconds a client has to send a request's body once its head arrived:
/// past it the answer is 408 and the connection is closed. Cost: as above,
/// plus the body read so far (at most `REQUEST_BODY_BYTES_MAX`).
pub const REQUEST_BODY_READ_S: u64 = 10;

/// The largest side of a SKU, in mm (30 m: anything a retailer ships).
pub const DIMENSION_MM_MAX: i64 = 30_000;

/// Lines in one cart (api.md: at most 100).
pub const CART_LINES_MAX: usize = 100;

/// Times a reservation whose lines are sourced is planned again when the
/// stock moved between its plan and its hold. Cost: one plan (~0.1-0.2 ms
/// for 5 lines over 5,000 locations) and one hold attempt each.
pub const SOURCING_REPLANS_MAX: usize = 3;

/// Items in one `POST /v1/inventory/batch` (api.md: at most 10,000).
pub const BATCH_ITEMS_MAX: usize = 10_000;

/// Identifier length bounds (api.md: 1 to 64 characters).
pub const ID_LEN_MAX: usize = 64;

/// Reservation line quantity bounds (api.md).
pub const QTY_MAX: i64 = 1_000_000;

/// on_hand and safety_stock bounds (api.md).
pub const STOCK_MAX: i64 = 1_000_000_000;

/// Reservation TTL bounds and default, in seconds (api.md).
pub const TTL_S_MIN: u64 = 1;
pub const TTL_S_MAX: u64 = 86_400;
pub const TTL_S_DEFAULT: u64 = 900;

/// Messages waiting in one actor's mailbox. A full mailbox answers 503 with
/// Retry-After. Cost: one boxed message (~100-300 bytes) per slot.
pub const MAILBOX_CAPACITY: usize = 16_384;

/// Records waiting for the journal writer. A full queue answers 503.
/// Cost: one encoded record (~100 bytes for a one-line cart) per slot.
pub const JOURNAL_QUEUE_RECORDS_MAX: usize = 65_536;

/// Records written by one group commit (one write + one fdatasync).
/// Bounds the latency of the batch and the size of the reused buffer.
pub const JOURNAL_BATCH_RECORDS_MAX: usize = 8_192;

/// Size of one encoded journal record body; a larger one is a bug (a cart of
/// 100 lines of 64-character ids is ~15 KiB).
pub const JOURNAL_RECORD_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A journal segment is closed and a new one started past this size.
pub const JOURNAL_SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Idempotency keys remembered. Past this the oldest (beyond the 24 h promise
/// of api.md, first) are forgotten. Cost: ~300 bytes per key with its answer.
pub const IDEMPOTENCY_KEYS_MAX: usize = 2_000_000;

/// How long idempotency keys are remembered at least, in milliseconds (api.md: 24 h).
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// Finished reservations (released, expired, fulfilled) are answered by
/// `GET` for this long after they finished, then forgotten (404): the book's
/// memory is bounded by a day of traffic, not by all time. Cost: ~600 bytes
/// per one-line reservation while kept.
pub const FINISHED_RETENTION_MS: i64 = 24 * 3600 * 1000;

/// How often the reservation book looks for expired holds, in milliseconds
/// (api.md: an expired hold is released within one second).
pub const EXPIRY_TICK_MS: u64 = 200;

/// Expirations journaled per tick and per book shard; the rest wait for the
/// next tick (bounds the work of one tick).
pub const EXPIRY_BATCH_MAX: usize = 10_000;

/// Connections served at once, feed sessions included; more wait in the
/// kernel's accept queue. Cost: a connection's buffers (~16 KiB) and one
/// in-flight request each. 16,384: 10,000 store apps on the feed leave
/// room for the checkout traffic (the process needs as many descriptors).
pub const CONNECTIONS_MAX: usize = 16_384;

/// A finished order (delivered, collected, cancelled, returned, declined)
/// untouched this long, and placed on an earlier UTC day (today's orders
/// count against today's capacity), is passivated: written to the order
/// archive in sled and dropped from memory; read back on demand.
pub const ORDER_PASSIVATE_IDLE_MS: i64 = 3600 * 1000;

/// How often the engine drops the orders the snapshotter has archived.
pub const ORDER_SWEEP_EVERY_S: u64 = 60;

/// Orders an order book examines for passivation at a time (each one read
/// back from the archive to compare): the stretch its arbiter spends on it
/// before serving checkouts again. Cost: about a millisecond per batch
/// (sled reads from its cache); a book with more due goes on 10 ms later.
pub const ORDER_SWEEP_BATCH: usize = 256;

/// Holders of a split line's SKU its parts are chosen among (sourcing.rs,
/// split lines): past this many, the largest few, then the cheapest that
/// could share a shipment, then the cheapest, and the plan says
/// `heuristic`. Cost: at most C(12, 6) = 924 subsets looked at per split
/// SKU (~50 us).
pub const SOURCING_SPLIT_POOL_MAX: usize = 12;

/// Combinations of the split SKUs' options the exact search weighs (each
/// split SKU's best ranked first; past it, `heuristic`). Cost: a score of
/// the parts each (~100 ns) and a partition of the whole lines per
/// distinct set of shared locations (`SOURCING_SPLIT_STEPS_MAX`).
pub const SOURCING_SPLIT_COMBOS_MAX: usize = 256;

/// Steps of the exact search's partitions spent on split lines'
/// combinations: 3^k per distinct set of shared locations, k the SKUs
/// served whole (a 10-SKU cart: 59,049 each, 35 sets). Cost: ~2 M steps,
/// a few ms at most, on the rare plan that splits.
pub const SOURCING_SPLIT_STEPS_MAX: usize = 1 << 21;

/// A request a follower forwards to the leader waits this long for the
/// answer at most (a lost answer is then settled as `cluster::front`
/// says: sent again under its key, or 504).
pub const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Idle connections a follower keeps to the leader: as many as requests
/// it forwards at once under a checkout's load (more are opened, and
/// closed after use).
pub const FORWARD_IDLE_CONNECTIONS: usize = 256;

/// A follower's connection to the leader is given up after this (a leader
/// that is gone, or cut off): nothing was sent, the request waits for the
/// next leader or is answered 503.
pub const FORWARD_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Holds of an order waiting for its payment: long enough for a slow
/// provider, short enough that a crash before the order is journaled gives
/// the stock back soon.
pub const ORDER_HOLD_TTL_S: u64 = 900;

/// How far back a node that takes a shard over reconciles its orders'
/// holds: its owner may have died between recording an order's step and
/// the stock operation it asks of another shard (moments, or a forward's
/// timeouts), or with one failed and not yet reconciled (the retry loop's
/// round). Orders changed before were settled by their owner.
pub const TAKEOVER_SETTLE_MS: i64 = 15 * 60 * 1000;

/// The length of a Scalapay checkout's confirm and cancel URLs at most.
pub const CHECKOUT_URL_MAX: usize = 500;

/// Batches queued for one stock feed session at most: a batch is what one window of
/// the feed (`[feed] window_ms`) changed in the session's scope, shared by
/// every session of the scope.
pub const FEED_SESSION_QUEUE: usize = 64;

/// The bytes of the batches a stock feed session holds (queued or being written) at
/// most, beyond one: what a reader that stopped reading can keep alive
/// before it is resynced instead. One batch is always taken, so the bound
/// is this or one window's changes of the scope (no more than a snapshot).
pub const FEED_SESSION_BYTES: usize = 128 * 1024;

/// Stock feed snapshots built at once at most (`http::feed::snapshot`):
/// each reads every record of its scope.
pub const FEED_SNAPSHOTS_AT_ONCE: usize = 4;

/// How long a stock feed session waits for every part of its scope to be
/// fed again (`http::feed::follow`) before it closes with 1011 (the
/// client connects again).
pub const FEED_FOLLOW_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// A SKU's or a location's name, in characters, at most.
pub const NAME_LEN_MAX: usize = 256;

/// The bytes of an order's `payment.method` at most.
pub const PAYMENT_METHOD_MAX: usize = 4096;

/// Pickups listed at most (the oldest first).
pub const PICKUPS_MAX: usize = 200;

/// A WebSocket frame a feed client may send at most (payload bytes): the feed expects
/// control frames (125 bytes at most) and nothing large.
pub const FEED_CLIENT_FRAME_MAX: usize = 64 * 1024;

/// Stock feed changes waiting for the journal at most; past it, every subscriber
/// resyncs (the hub cannot keep up, and says so rather than grow).
pub const FEED_PENDING_MAX: usize = 1 << 20;

/// Changes and requests queued for the feed's thread at most.
pub const FEED_QUEUE_MAX: usize = 65_536;

/// Stream entries a follower applies per shard per round.
pub const FOLLOW_BATCH: usize = 1000;

/// A follower that has read everything waits this long in Redis for the
/// next entry (`XREAD BLOCK`) before its round goes on: it wakes as soon
/// as the leader appends, and costs nothing while nothing is written.
/// Well under the connection's timeout and the lease's renewal.
pub const FOLLOW_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// Stream entries a cluster copy reads from Redis at once.
pub const STREAM_READ_BATCH: usize = 1000;

/// How fresh a follower's copy must be to answer a read: it had read all
/// the stream held no longer ago than this. A write acknowledged by the
/// leader shows in a follower's answers within this and the replication
/// lag (milliseconds); `Cache-Control: no-cache` reads the leader's.
pub const FOLLOWER_FRESH: std::time::Duration = std::time::Duration::from_millis(250);

/// Shipments queued to the shipper: beyond them the writer waits
/// (`ack_after`) or the shipper reads from the segments.
pub const JOURNAL_SHIP_QUEUE: usize = 64;

/// Idempotency keys the sandbox payment provider remembers (the oldest
/// forgotten first). Cost: a key and its answer, ~100 bytes each.
pub const SANDBOX_KEYS_MAX: usize = 1_000_000;

/// Notices an order keeps at most: a provider sends a handful per
/// payment; past this, more are not kept (and logged by the caller).
pub const PAYMENT_NOTICES_MAX: usize = 32;

/// An address field's length, in characters, at most (what the carriers'
/// labels take).
pub const ADDRESS_FIELD_MAX: usize = 100;

/// How far back a count may say it was taken (`counted_at`): each record
/// keeps its on_hand movements this long, to add those after the count.
/// Two days: a count taken in a store's morning and uploaded the next day
/// still lands. Cost: 16 bytes per movement of the last two days, for the
/// records that moved (bounded per record below).
pub const COUNT_REACH_MS: i64 = 48 * 3600 * 1000;

/// A `counted_at` ahead of the engine's clock by at most this much (a
/// device's clock running fast) is taken as now; further ahead, refused.
pub const COUNT_AHEAD_MS: i64 = 5 * 60 * 1000;

/// Movements a record keeps for late counts (one per millisecond with
/// movements): past it the oldest go, and a count reaching back before
/// the ones kept is refused. Cost: at most 1 MiB for the busiest record.
pub const MOVES_PER_RECORD_MAX: usize = 65_536;

/// An adjustment's `note`, in characters, at most: a line a person writes
/// beside the reason ("broken in the stockroom"), kept in the journal and
/// the movement history.
pub const ADJUST_NOTE_MAX: usize = 256;

/// Movements per block of the history's store: a write appends a block
/// per this many, a page's read decodes a block per step back (~15 KB).
pub const HISTORY_BLOCK_MOVES: usize = 256;

/// The movement history's page cache (redb's; its default is 1 GiB): a
/// page of a record's history read past it comes from the disk.
pub const HISTORY_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// How often the snapshotter's copy follows the journal: a movement is
/// in the history at most about this long after it is durable (a history
/// read waits for it, `HISTORY_WAIT`).
pub const SNAPSHOTTER_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// After a failure (its copy dropped: a bad record, storage), the
/// snapshotter loads its copy again this much later, not every tick.
pub const SNAPSHOTTER_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// The snapshotter writes the movements it applied once a second (or
/// at once when a history read waits for them): redb rewrites every
/// page a transaction touches, so one write a second of many movements
/// costs far less than ten small ones (BENCHMARKS.md, "Movement history").
pub const HISTORY_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Movements written to the history in one transaction at most, when the
/// snapshotter's copy catches up on a long journal (a restart): memory
/// ~200 bytes each while the batch is built.
pub const HISTORY_WRITE_BATCH: usize = 10_000;

/// Movements the history forgets in one round at most, and how often (in
/// snapshotter rounds: every 10 s) it looks: past retention, or beyond
/// `[history] movements_max`, the oldest go a batch at a time.
pub const HISTORY_PRUNE_BATCH: usize = 10_000;
pub const HISTORY_PRUNE_EVERY_ROUNDS: u64 = 100;

/// A history read waits this long at most for the movements of what was
/// durable when it came (the snapshotter writes them within a tick); past
/// it, 503 with Retry-After (a restart's catch-up on a long journal).
pub const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `[history]`'s defaults: movements are kept 90 days, at most 20
/// million in all (~400 bytes of disk each: ~8 GB; 90 days of 200,000
/// movements a day fit).
pub const HISTORY_RETENTION_DAYS_DEFAULT: u64 = 90;
pub const HISTORY_MOVEMENTS_MAX_DEFAULT: u64 = 20_000_000;

/// A history page's movements: `limit` defaults to the first, at most
/// the second.
pub const HISTORY_PAGE_DEFAULT: usize = 100;
pub const HISTORY_PAGE_MAX: usize = 1_000;

/// Published events per block of the event store (`persistence::events`):
/// a write fills the newest block then appends blocks of this many; a
/// page decodes a block per step (~60 KB).
pub const EVENTS_BLOCK: usize = 256;

/// The newest events kept in memory beside the store (`EventStore`'s
/// `Recent`), shared by the readers keeping up with it: a second and more
/// of a busy checkout's, some 25 MB at most with their JSON.
pub const EVENTS_RECENT: usize = 32_768;

/// The event store's page cache (redb's): readers far behind read the
/// disk.
pub const EVENTS_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Events written in one transaction at most while the snapshotter's copy
/// catches up on a long journal (a restart): ~300 bytes each in memory.
/// Otherwise it writes every `SNAPSHOTTER_TICK`, so an event reaches
/// readers within about a tick of its record being durable.
pub const EVENTS_WRITE_BATCH: usize = 10_000;

/// Events the store forgets in one round at most (every
/// `HISTORY_PRUNE_EVERY_ROUNDS`): past `[events] retention_days`, or
/// beyond `[events] events_max`, the oldest blocks go.
pub const EVENTS_PRUNE_BATCH: usize = 20_000;

/// `[events]`'s defaults: 7 days, at most 5 million events (~300 bytes of
/// disk each: ~1.5 GB; a week of 700,000 a day fits).
pub const EVENTS_RETENTION_DAYS_DEFAULT: u64 = 7;
pub const EVENTS_MAX_DEFAULT: u64 = 5_000_000;

/// A page of `GET /v1/events`: `limit` defaults to the first, at most the
/// second; a page looks at `EVENTS_SCAN_MAX` events at most for those its
/// filter (types, a store's location) passes, and says where it stopped.
pub const EVENTS_PAGE_DEFAULT: usize = 100;
pub const EVENTS_PAGE_MAX: usize = 1_000;
pub const EVENTS_SCAN_MAX: usize = 10_000;

/// A read of the events waits this long at most for those of what was
/// durable when it came (read your writes); past it, 503 with Retry-After.
pub const EVENTS_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// `types=` names this many patterns at most.
pub const EVENT_TYPES_MAX: usize = 64;

/// A stock export (`GET /v1/inventory/export`) reads this many
/// locations' records at a time at most, and at most about this many
/// records (the memory it holds; one location at least): the journal is
/// waited for once a batch.
pub const EXPORT_LOCATIONS_AT_ONCE: usize = 64;
pub const EXPORT_RECORDS_AT_ONCE: usize = 100_000;

/// Server-Sent Events streams open at once on a node, at most (past it,
/// 503); each sends a comment this often when there is nothing to send,
/// so proxies keep it open and a dead client is found.
pub const SSE_STREAMS_MAX: usize = 4_096;
pub const SSE_HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);

/// Webhook subscriptions kept at most (a new one past it is 409
/// `too_many_webhooks`): each has a delivery task and a log.
pub const WEBHOOKS_MAX: usize = 64;

/// The largest integer a JSON number holds exactly (2^53 - 1): the
/// bound of event numbers a body names (`replay`'s `after`).
pub const JSON_INT_MAX: i64 = 9_007_199_254_740_991;

/// Type patterns of a subscription, at most; its URL's length at most.
pub const WEBHOOK_TYPES_MAX: usize = 64;
/// Events a subscription may take in one request (`batch`): a receiver
/// of every event of a busy network takes them a hundred at a time.
pub const WEBHOOK_BATCH_MAX: u32 = 100;
pub const WEBHOOK_URL_MAX: usize = 2_048;

/// A subscription's URL, as the API takes it and the OpenAPI document
/// states it (one pattern for both): http or https; a host name (its last
/// label starting with a letter, so never read as an address) or an IPv4
/// address; a port 1 to 65535; a path and a query of plain characters.
pub const WEBHOOK_URL_PATTERN: &str = r"^https?://(((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])|([a-z0-9-]{1,63}\.){0,8}[a-z][a-z0-9-]{0,62})(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[A-Za-z0-9._~-]*)*(\?[A-Za-z0-9._~=&-]*)?$";

/// One delivery attempt's limit (connect, send, answer): a slow receiver
/// holds its own subscription back, never another's or a checkout.
pub const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// After a failed attempt the same event is tried again after 1 s,
/// doubled each time up to this; a subscription failing for
/// `WEBHOOK_FAILING_AFTER` (24 h) is marked failing, and still tried.
pub const WEBHOOK_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(600);
pub const WEBHOOK_FAILING_AFTER: std::time::Duration = std::time::Duration::from_secs(86_400);

/// How far delivery got is journaled at most this often per
/// subscription (and when it stops or fails): after a crash at most this
/// much is sent again.
pub const WEBHOOK_MARK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Events read for a subscription at a time (sent one by one, in order):
/// a read decodes whole blocks of `EVENTS_BLOCK`, so fewer reads of more
/// cost less (~300 bytes each in memory).
pub const WEBHOOK_READ: usize = 1_000;

/// A receiver's answer is read this far at most (its status is what
/// counts).
pub const WEBHOOK_REPLY_MAX: usize = 4_096;

/// Delivery attempts kept per subscription (`GET .../deliveries`).
pub const WEBHOOK_ATTEMPTS_KEPT: usize = 100;

/// How often the delivery supervisor looks for subscriptions made or
/// deleted (and, on a cluster, for the lead moving).
pub const WEBHOOK_SUPERVISE_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// After the signal to stop, connections still open this much later
/// (an event stream whose client reads nothing) are closed: past the
/// longest a request may take (a forward's 10 s and a takeover, a
/// provider's three 10 s attempts), so none in flight is cut.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(40);

/// The books of transfers and of incoming supply (`domain::book`): each
/// keeps at most this many (open and recently closed; ~300 bytes each
/// with a few lines: ~60 MB); a new one past it is refused (503) until
/// closed ones are forgotten.
pub const BOOK_MAX: usize = 200_000;
/// A closed entry (a transfer received or cancelled, supply received or
/// cancelled) is forgotten this long after its last step (as the movement
/// history's default retention)...
pub const BOOK_CLOSED_KEPT_MS: i64 = 90 * 24 * 3600 * 1000;
/// ...looked for every this many new entries.
pub const BOOK_SWEEP_EVERY: usize = 1024;
/// The ids an order's transfer may take (`{order}:{n}`, then
/// `{order}:{n}:1`...) when transfers asked through the API hold the
/// first ones; past them the order's goods travel without a transfer
/// (logged at error: someone chose those ids on purpose).
pub const ORDER_TRANSFER_IDS: u32 = 8;
/// When incoming supply may be expected: up to a year late (a purchase
/// order long overdue is still owed) and two years ahead.
pub const SUPPLY_BEHIND_MS: i64 = 365 * 24 * 3600 * 1000;
pub const SUPPLY_AHEAD_MS: i64 = 2 * 365 * 24 * 3600 * 1000;
/// A cart sold ahead of supply that a delivery overtook between its holds
/// and its record is held again this many times at most (deliveries are
/// rare beside carts: one retry nearly always does), then 503.
pub const BACKORDER_HOLD_TRIES: usize = 4;
/// A preorder's `release_at` is any RFC 3339 date-time (a date, not a
/// window around now, so that a SKU's record written once may be written
/// again years later), kept within 0000-01-01T00:00:00Z and
/// 9999-12-31T23:59:59.999Z (a time an offset takes past them is as good
/// as them).
pub const RELEASE_AT_MS: (i64, i64) = (-62_167_219_200_000, 253_402_300_799_999);
/// A supply's deliveries: each is kept on it (what arrived, its key);
/// past this many a delivery is refused (409) and the supply is to be
/// closed (cancelled) and a new one announced.
pub const SUPPLY_RECEIPTS_MAX: usize = 200;
/// A transfer's lines (as a cart's), a supply's.
pub const TRANSFER_LINES_MAX: usize = 100;
/// A transfer's or a supply's step waits this long at most for the one
/// before it (each book takes one at a time); past it, 503 with
/// Retry-After.
pub const BOOK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// A listing's transfers: `limit` defaults to the first, at most the
/// second.
pub const TRANSFER_PAGE_DEFAULT: usize = 50;
pub const TRANSFER_PAGE_MAX: usize = 200;

/// An order search's page (`GET /v1/orders`): by default, and at most.
pub const ORDER_PAGE_DEFAULT: usize = 20;
pub const ORDER_PAGE_MAX: usize = 100;

/// Archived orders an order search reads per page at most: a page of
/// a rare match over a long archive ends short with a cursor to go on
/// from, instead of reading the whole archive in one request.
pub const ORDER_SEARCH_ARCHIVE_SCAN: usize = 5_000;

/// Entries of the archive's index by time an order search page looks at
/// most (keys only: an id or a time range rules most out unread).
pub const ORDER_SEARCH_INDEX_SCAN: usize = 200_000;

/// A customer's email (an order's `customer.email`, a search's `email`):
/// at most this long, and of this shape (the OpenAPI document states the
/// same pattern).
pub const EMAIL_MAX: usize = 254;
pub const EMAIL_PATTERN: &str =
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63}){0,8}$";

/// A customer's phone number: digits, spaces and `+().-`, at least 4
/// digits (a search's `phone` alike: orders whose number ends with those
/// digits).
pub const PHONE_MAX: usize = 32;
pub const PHONE_PATTERN: &str = r"^\+?[ ().-]*([0-9][ ().-]*){4,}$";

/// Steps an order's timeline keeps (`Order::timeline`): its first (placed)
/// and the newest others. An order sees a few dozen at most; the bound
/// holds whatever a client keeps asking of it.
pub const ORDER_TIMELINE_MAX: usize = 64;
