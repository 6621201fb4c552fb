//! `holdfast serve`: configuration, data-dir lock, recovery, HTTP, shutdown.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use crate::actors::{Engine, EngineConfig, Recovered};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::http::{self, auth::Auth, idempotency::IdemTable, AppState};
use crate::metrics::Metrics;
use crate::orders;
use crate::persistence::events::EventsPolicy;
use crate::persistence::snapshot::{HistoryPolicy, SnapshotPolicy};
use crate::persistence::RealStorage;

pub fn run(config: Option<&Path>) -> Result<(), String> {
    let cfg = Config::load(config)?;
    let lock = lock_data_dir(&cfg.data_dir)?;

    if cfg.tokens.is_none() {
        tracing::warn!("NO [auth] SECTION: the server runs OPEN, every request is admin. For local development only.");
    }
    let (engine, recovered) = Engine::open(
        &engine_config(&cfg),
        Arc::new(RealStorage),
        Arc::new(SystemClock),
        Arc::new(Metrics::default()),
    )
    .map_err(|e| format!("recovery failed: {e}"))?;
    let feed_rt = feed_runtime(&cfg)?;
    let background = background_runtime(&cfg)?;
    let payments = payment_providers(&cfg)?;
    let shipping = shipping(&cfg)?;
    let state = app_state(
        &cfg,
        engine.clone(),
        &recovered,
        feed_rt.handle().clone(),
        payments,
        &shipping,
        false,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .map_err(|e| e.to_string())?;
    // Orders paid but not yet confirmed when the last process died.
    match rt.block_on(engine.reconcile_orders()) {
        Ok((0, 0)) => {}
        Ok((confirmed, lost)) => {
            tracing::info!(confirmed, lost, "orders reconciled with their holds")
        }
        Err(e) => return Err(format!("reconciling orders: {e}")),
    }
    // Parcels followed at their carriers (when any is configured).
    let one = || {
        let s = state.orders.clone();
        move || vec![s.clone()]
    };
    let tracking = (!state.orders.shipping.carriers.is_empty())
        .then(|| rt.spawn(orders::jobs::track(one(), cfg.carriers.track_every)));
    // Captures owed (a provider down when the goods left) made later.
    let captures = rt.spawn(orders::jobs::retry(one(), cfg.payments.retry_every));
    // The webhook subscriptions' deliveries.
    let hooks = state.webhooks.clone();
    let hooks_stop = state.webhooks.clone();
    let deliveries = background.spawn(crate::webhooks::run(move || vec![hooks.clone()]));
    let durability = cfg.durability;
    let data_dir = cfg.data_dir.clone();
    let r = rt.block_on(http::serve(
        Arc::new(http::Node(state)),
        cfg.listen,
        shutdown_signal(),
        move |addr| {
            tracing::info!(%addr, data_dir = %data_dir.display(), ?durability, "ready");
        },
    ));
    if let Some(t) = tracking {
        t.abort();
    }
    captures.abort();
    deliveries.abort();
    hooks_stop.stop();
    // Deliveries (and their journal steps) end before the engine does.
    background.shutdown_timeout(std::time::Duration::from_secs(1));
    feed_rt.shutdown_timeout(std::time::Duration::from_secs(1));
    engine.shutdown();
    tracing::info!("stopped");
    drop(lock);
    r
}

/// Creates and locks `dir`: one server per data dir, a second writer
/// would interleave journals. Held while the answer lives.
fn lock_data_dir(dir: &Path) -> Result<File, String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lock_path = dir.join("LOCK");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.try_lock()
        .map_err(|_| format!("{} is in use by another holdfast", dir.display()))?;
    Ok(lock)
}

/// The feed's sessions run on a runtime of their own: thousands of them
/// woken by one busy store would otherwise queue the API's requests behind
/// them; the OS shares the cores between the two.
fn feed_runtime(cfg: &Config) -> Result<tokio::runtime::Runtime, String> {
    runtime_of_feed_size(cfg, "feed-ws")
        .build()
        .map_err(|e| e.to_string())
}

/// A multi-threaded runtime named `name` of `[feed] threads` workers
/// (0: tokio's own default, one per core, as the API's runtime).
fn runtime_of_feed_size(cfg: &Config, name: &str) -> tokio::runtime::Builder {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if cfg.feed.threads > 0 {
        rt.worker_threads(cfg.feed.threads);
    }
    rt.enable_all().thread_name(name);
    rt
}

/// The niceness priority of the background runtime's threads (the
/// `thread_priority` crate's 0-99 scale: 22 is niceness 10, a tenth of a
/// request thread's CPU weight).
const BACKGROUND_PRIORITY: u8 = 22;

/// The background runtime: webhook deliveries, on threads of a lower
/// CPU priority than the requests' (niceness 10). When a peak takes
/// every core, checkout gets the CPU first and this work falls behind
/// and catches up after it (from the event store, which is its queue);
/// on an idle machine it changes nothing. Checkout first: a retailer's
/// webhooks may wait a second on Black Friday, its checkout may not.
/// Niceness 19 was tried: webhooks of every event then fell behind for
/// as long as a peak lasts, past what `[events] events_max` keeps
/// (BENCHMARKS.md). `[feed] threads` as the feed's (0: one per core).
fn background_runtime(cfg: &Config) -> Result<tokio::runtime::Runtime, String> {
    runtime_of_feed_size(cfg, "background")
        .on_thread_start(|| {
            let lower = thread_priority::ThreadPriorityValue::try_from(BACKGROUND_PRIORITY)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    thread_priority::set_current_thread_priority(
                        thread_priority::ThreadPriority::Crossplatform(p),
                    )
                    .map_err(|e| e.to_string())
                });
            if let Err(e) = lower {
                tracing::warn!(error = %e, "background work: could not lower its CPU priority");
            }
        })
        .build()
        .map_err(|e| e.to_string())
}

/// What the handlers of one engine use: the engine, the tokens, the
/// idempotency table seeded from what recovery found.
fn app_state(
    cfg: &Config,
    engine: Engine,
    recovered: &Recovered,
    feed_rt: tokio::runtime::Handle,
    payments: Payments,
    shipping: &crate::carriers::Shipping,
    took_over: bool,
) -> Arc<AppState> {
    let idem = IdemTable::default();
    for (key, entry) in &recovered.idempotency {
        idem.seed(key.clone(), http::reservations::idempotent_answer(entry));
    }
    // One node reconciles before it serves (`run`); a cluster leader that
    // took over, for whatever its orders did just before (the previous
    // leader may have died between an order's record and its holds').
    let unsettled_since = if took_over {
        orders::Unsettled::since_takeover(engine.clock().now_ms())
    } else {
        orders::Unsettled::default()
    };
    Arc::new(AppState {
        auth: Auth::new(cfg.tokens.as_deref()),
        idem,
        orders: Arc::new(orders::Orders {
            engine: engine.clone(),
            payments: payments.providers,
            scalapay: payments.scalapay,
            payment_routing: cfg.payments.routing.clone(),
            shipping: shipping.clone(),
            unsettled_since,
        }),
        adyen_hmac: cfg.payments.adyen.as_ref().map(|(_, key)| key.clone()),
        webhooks: crate::webhooks::Webhooking::new(engine.clone()),
        feed: Arc::new(http::feed::FeedHost::new(
            Arc::new(http::feed::EngineFeeds(engine.clone())),
            Auth::new(cfg.tokens.as_deref()),
            engine.metrics().clone(),
            std::time::Duration::from_secs(cfg.feed.idle_timeout_s),
            feed_rt,
        )),
        engine,
    })
}

/// The payment providers by name.
type Providers = Vec<(String, Arc<dyn crate::payments::PaymentProvider>)>;

/// The payment providers, and Scalapay's own side (its checkouts).
#[derive(Clone)]
struct Payments {
    providers: Providers,
    scalapay: Option<Arc<crate::payments::scalapay::Scalapay>>,
}

/// The sandbox, and every provider holdfast.toml configures.
fn payment_providers(cfg: &Config) -> Result<Payments, String> {
    let mut v: Providers = vec![(
        "sandbox".to_string(),
        Arc::new(crate::payments::sandbox::Sandbox::new()),
    )];
    if let Some((adyen, _)) = &cfg.payments.adyen {
        let p = crate::payments::adyen::Adyen::new(adyen.clone())?;
        v.push(("adyen".to_string(), Arc::new(p)));
    }
    if let Some(g) = &cfg.payments.gestpay {
        let p = crate::payments::gestpay::Gestpay::new(g.clone())?;
        v.push(("gestpay".to_string(), Arc::new(p)));
    }
    if let Some(a) = &cfg.payments.amazonpay {
        let p = crate::payments::amazonpay::AmazonPay::new(a.clone())?;
        v.push(("amazonpay".to_string(), Arc::new(p)));
    }
    let scalapay = match &cfg.payments.scalapay {
        Some(x) => {
            let p = Arc::new(crate::payments::scalapay::Scalapay::new(x.clone())?);
            v.push(("scalapay".to_string(), p.clone()));
            Some(p)
        }
        None => None,
    };
    Ok(Payments {
        providers: v,
        scalapay,
    })
}

/// The carriers holdfast.toml configures; with one and no default, that
/// one is the default.
fn shipping(cfg: &Config) -> Result<crate::carriers::Shipping, String> {
    let c = &cfg.carriers;
    let mut carriers: Vec<(String, Arc<dyn crate::carriers::Carrier>)> = Vec::new();
    if let Some(f) = &c.fedex {
        carriers.push((
            "fedex".into(),
            Arc::new(crate::carriers::fedex::Fedex::new(f.clone())?),
        ));
    }
    if let Some(d) = &c.dhl {
        carriers.push((
            "dhl".into(),
            Arc::new(crate::carriers::dhl::Dhl::new(d.clone())?),
        ));
    }
    if let Some(x) = &c.dhl_express {
        carriers.push((
            "dhl_express".into(),
            Arc::new(crate::carriers::dhl_express::DhlExpress::new(x.clone())?),
        ));
    }
    if let Some(x) = &c.correos {
        carriers.push((
            "correos".into(),
            Arc::new(crate::carriers::correos::Correos::new(x.clone())?),
        ));
    }
    if let Some(x) = &c.tnt {
        carriers.push((
            "tnt".into(),
            Arc::new(crate::carriers::tnt::Tnt::new(x.clone())?),
        ));
    }
    let mut routing = c.routing.clone();
    if routing.default.is_none() && carriers.len() == 1 {
        routing.default = Some(carriers[0].0.clone());
    }
    Ok(crate::carriers::Shipping {
        carriers,
        routing,
        labels: cfg.data_dir.join("labels"),
        storage: Arc::new(RealStorage),
    })
}

fn engine_config(cfg: &Config) -> EngineConfig {
    EngineConfig {
        data_dir: cfg.data_dir.clone(),
        durability: cfg.durability,
        shards: cfg.shards,
        sourcing: cfg.sourcing,
        feed_window: std::time::Duration::from_millis(cfg.feed.window_ms),
        snapshot: Some(SnapshotPolicy {
            every_records: cfg.snapshot.every_records,
            every_s: cfg.snapshot.every_s,
            history: HistoryPolicy::new(cfg.history.retention_days, cfg.history.movements_max),
            events: EventsPolicy::new(cfg.events.retention_days, cfg.events.events_max),
        }),
    }
}

/// `holdfast serve --cluster F --node ID`: this node of the cluster in
/// `F`, on its `http` address and `data_dir` (the rest of `config` as on
/// one node: tokens, durability of the local journal, feed, sourcing).
pub fn run_cluster(config: Option<&Path>, cluster: &Path, node_id: &str) -> Result<(), String> {
    let mut cfg = Config::load(config)?;
    let cc = crate::cluster::ClusterConfig::load(cluster)?;
    let me = cc.node(node_id)?.clone();
    if let Some(n) = cc.shards {
        tracing::warn!(shards = n, "cluster.toml: `shards` is no longer read: one leader writes the whole network, with [server] shards of holdfast.toml in process (docs/cluster.md)");
    }
    cfg.listen = me.http;
    cfg.data_dir = me.data_dir.clone();
    if cfg.data_dir.join("shard-0").exists() {
        tracing::warn!(data_dir = %cfg.data_dir.display(), "this data dir holds a sharded cluster's shard-N/ copies, which the one-leader cluster does not read: give it a new data_dir and cluster name (docs/cluster.md, Upgrading)");
    }
    let lock = lock_data_dir(&cfg.data_dir)?;
    if cfg.tokens.is_none() {
        tracing::warn!("NO [auth] SECTION: the cluster node runs OPEN, every request is admin. For local development only.");
    }
    let feed_rt = feed_runtime(&cfg)?;
    let background = background_runtime(&cfg)?;
    let handle = feed_rt.handle().clone();
    let cfg2 = cfg.clone();
    let payments = payment_providers(&cfg)?;
    let shipping = shipping(&cfg)?;
    let no_carriers = shipping.carriers.is_empty();
    let node = crate::cluster::node::ClusterNode::start(
        cc.clone(),
        node_id,
        crate::cluster::node::Template {
            engine: engine_config(&cfg),
            clock: Arc::new(SystemClock),
            make_state: Box::new(move |engine, recovered| {
                app_state(
                    &cfg2,
                    engine,
                    recovered,
                    handle.clone(),
                    payments.clone(),
                    &shipping,
                    true,
                )
            }),
        },
    )?;
    let auth = || http::auth::Auth::new(cfg.tokens.as_deref());
    let feed = Arc::new(http::feed::FeedHost::new(
        Arc::new(crate::cluster::feed::ClusterFeeds(node.clone())),
        auth(),
        node.metrics.clone(),
        std::time::Duration::from_secs(cfg.feed.idle_timeout_s),
        feed_rt.handle().clone(),
    ));
    let front = Arc::new(crate::cluster::front::Front::new(
        node.clone(),
        auth(),
        feed,
    )?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("http")
        .build()
        .map_err(|e| e.to_string())?;
    // The owed captures and refunds, and the parcels, of the orders of
    // the shards this node owns at each round.
    let owned = || {
        let node = node.clone();
        move || {
            let owned = node.owned_states();
            owned.iter().map(|s| s.orders.clone()).collect()
        }
    };
    let tracking =
        (!no_carriers).then(|| rt.spawn(orders::jobs::track(owned(), cfg.carriers.track_every)));
    let captures = rt.spawn(orders::jobs::retry(owned(), cfg.payments.retry_every));
    // The webhook subscriptions' deliveries, while this node leads.
    let leading = node.clone();
    let deliveries = background.spawn(crate::webhooks::run(move || {
        leading
            .owned_states()
            .iter()
            .map(|s| s.webhooks.clone())
            .collect()
    }));
    let cluster_name = cc.cluster.clone();
    let r = rt.block_on(http::serve(
        front,
        cfg.listen,
        shutdown_signal(),
        move |addr| {
            tracing::info!(%addr, node = %me.id, cluster = %cluster_name, "ready");
        },
    ));
    if let Some(t) = tracking {
        t.abort();
    }
    captures.abort();
    deliveries.abort();
    for s in node.owned_states() {
        s.webhooks.stop();
    }
    // Deliveries (and their journal steps) end before the engines do.
    background.shutdown_timeout(std::time::Duration::from_secs(1));
    node.shutdown();
    feed_rt.shutdown_timeout(std::time::Duration::from_secs(1));
    tracing::info!("stopped");
    drop(lock);
    r
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
