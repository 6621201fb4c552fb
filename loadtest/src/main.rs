//! `loadtest`: drives holdfast and its rivals with the same scenarios and the
//! same client, verifies the invariants through the API at the end, and
//! reports figures as ratios measured in one run.
//!
//! Layout:
//! - `client`: the keep-alive HTTP/1.1 client, one connection per worker.
//! - `workload`: the scenarios (checkout, flash-sale, mixed) and the ledger.
//! - `driver`: closed and open loop, HDR histograms, progress bar.
//! - `verify`: the network's setup and the end-of-run checks.
//! - `targets`: starting holdfast and the rivals (optionally pinned).
//! - `rivals`: the rival services (ceiling, redis, postgres).
//! - `report`: terminal table, JSON, HTML.
//!
//! `loadtest run --target holdfast --scenario checkout` runs one;
//! `loadtest compare --scenario checkout` runs every target back to back.

mod client;
mod driver;
mod fanout;
mod hooks;
mod report;
mod rivals;
mod sse;
mod targets;
mod verify;
mod workload;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use driver::{Model, Plan};
use report::{Environment, Latency, OpLatency, RunResult};
use targets::{TargetKind, TargetOptions};
use workload::{Network, Scenario, Session, WorkloadOptions, Zipf};

#[derive(Parser)]
#[command(
    name = "loadtest",
    about = "Load tests for holdfast, beside its rivals"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One scenario against one target.
    Run {
        #[arg(long, value_enum, default_value = "holdfast")]
        target: TargetKind,
        #[command(flatten)]
        common: Common,
    },
    /// One scenario against every target back to back, holdfast first; with
    /// `--open-fraction F`, each target is also run open loop at F x its own
    /// closed-loop peak.
    Compare {
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "holdfast,ceiling,redis-always,redis-everysec,postgres"
        )]
        targets: Vec<TargetKind>,
        /// Open-loop run at this fraction of each target's peak (0: none).
        #[arg(long, default_value_t = 0.5)]
        open_fraction: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Serve a rival (started by the harness).
    #[command(hide = true)]
    Rival {
        #[arg(value_parser = ["ceiling", "redis", "postgres", "postgres-drop"])]
        kind: String,
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        redis_url: Option<String>,
        #[arg(long)]
        pg_url: Option<String>,
        /// The postgres rival's own database (created, or dropped).
        #[arg(long)]
        database: Option<String>,
        /// A deliberate bug (ceiling only), to prove the verification fails.
        #[arg(long, value_enum)]
        fault: Option<rivals::ceiling::Fault>,
    },
}

#[derive(Args, Clone)]
struct Common {
    #[arg(long, value_enum, default_value = "checkout")]
    scenario: Scenario,
    /// Seconds of load (after setup).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Connections (each a simulated client working through its sessions).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Open loop at this many requests per second; absent: closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// SKUs of the network (checkout, mixed).
    #[arg(long, default_value_t = 1_000)]
    skus: u32,
    /// Locations of the network (checkout, mixed).
    #[arg(long, default_value_t = 10)]
    locations: u32,
    /// on_hand of every record (checkout, mixed).
    #[arg(long, default_value_t = 1_000_000)]
    on_hand: i64,
    /// Zipf exponent of SKU popularity.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Units of the hot SKU (flash-sale).
    #[arg(long, default_value_t = 20_000)]
    hot_stock: i64,
    /// TTL of carts to be confirmed or released.
    #[arg(long, default_value_t = 600)]
    ttl_s: u64,
    /// TTL of carts abandoned to expire.
    #[arg(long, default_value_t = 2)]
    abandon_ttl_s: u64,
    /// A running holdfast to test instead of starting one (`--target holdfast`).
    #[arg(long)]
    url: Option<String>,
    /// Bearer token for `--url` (an admin token: the run sets up its network).
    #[arg(long, env = "HOLDFAST_TOKEN")]
    token: Option<String>,
    /// holdfast's durability when the harness starts it.
    #[arg(long, default_value = "fsync", value_parser = ["fsync", "none"])]
    durability: String,
    /// The holdfast binary (default: beside this one).
    #[arg(long)]
    holdfast_bin: Option<PathBuf>,
    /// PostgreSQL for the postgres rival, in key=value form (a user that
    /// may create databases; the run adds `dbname=` of its own database).
    #[arg(long, default_value = "host=127.0.0.1 user=postgres dbname=postgres")]
    pg_url: String,
    /// Pin the servers to these CPUs (`taskset -c` list, e.g. `1`).
    #[arg(long)]
    server_cpus: Option<String>,
    /// Pin this harness to these CPUs (e.g. `0`).
    #[arg(long)]
    client_cpus: Option<String>,
    /// Give the ceiling rival a deliberate bug (tests of the verification).
    #[arg(long, value_enum, hide = true)]
    ceiling_fault: Option<rivals::ceiling::Fault>,
    /// Skip the end-of-run verification.
    #[arg(long)]
    no_verify: bool,
    /// Confirmed reservations read back at most (an even sample beyond).
    #[arg(long, default_value_t = 20_000)]
    verify_max: usize,
    /// Where results.json and report.html go.
    #[arg(long, default_value = "loadtest-results")]
    out: PathBuf,
    /// Seconds before a request counts as unanswered.
    #[arg(long, default_value_t = 10)]
    timeout_s: u64,
    /// No progress bar (CI logs).
    #[arg(long)]
    quiet: bool,
    /// WebSocket clients on holdfast's stock feed during the run, spread
    /// over the locations: delivery latency and server memory per client.
    #[arg(long, default_value_t = 0)]
    feed_clients: usize,
    /// Webhook subscriptions to every event type during the run, each to a
    /// receiver of this harness: their cost, and delivery latency.
    #[arg(long, default_value_t = 0)]
    webhooks: usize,
    /// The event types those subscriptions name (comma-separated).
    #[arg(long, default_value = "*")]
    webhook_types: String,
    /// Clients of the event stream (`GET /v1/events` as Server-Sent
    /// Events) during the run: delivery, latency, memory per client.
    #[arg(long, default_value_t = 0)]
    sse_clients: usize,
    /// The event types those clients ask (comma-separated).
    #[arg(long, default_value = "stock.out,stock.back,stock.low")]
    sse_types: String,
    /// Events a webhook request carries at most (the subscription's
    /// `batch`).
    #[arg(long, default_value_t = 1)]
    webhook_batch: u32,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Rival {
            kind,
            listen,
            redis_url,
            pg_url,
            database,
            fault,
        } => serve_rival(&kind, listen, redis_url, pg_url, database, fault),
        Cmd::Run { target, common } => run_cmd(vec![target], None, common),
        Cmd::Compare {
            targets,
            open_fraction,
            common,
        } => run_cmd(targets, Some(open_fraction), common),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("loadtest: an invariant was broken (see the checks above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve_rival(
    kind: &str,
    listen: std::net::SocketAddr,
    redis_url: Option<String>,
    pg_url: Option<String>,
    database: Option<String>,
    fault: Option<rivals::ceiling::Fault>,
) -> Result<bool, String> {
    match kind {
        "ceiling" => rivals::serve(listen, Arc::new(rivals::ceiling::Ceiling::start(fault)))?,
        "postgres" | "postgres-drop" => {
            let url = pg_url.ok_or("--pg-url is required")?;
            let db = database.ok_or("--database is required")?;
            if kind == "postgres-drop" {
                return rivals::postgres::drop_database(&url, &db).map(|()| true);
            }
            rivals::serve_with(listen, move || async move {
                let r = Arc::new(rivals::postgres::PostgresRival::create(&url, &db).await?);
                r.spawn_sweeper();
                Ok(r)
            })?
        }
        _ => {
            let url = redis_url.ok_or("--redis-url is required")?;
            // The connection lives on the serving runtime: made there.
            rivals::serve_with(listen, move || async move {
                let r = rivals::redis::RedisRival::connect(&url).await?;
                r.spawn_sweeper();
                Ok(Arc::new(r))
            })?
        }
    }
    Ok(true)
}

/// Pins this process (every thread: none but main exists yet) to `cpus`.
fn pin_self(cpus: &str) -> Result<(), String> {
    let st = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus])
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("taskset: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("taskset -c {cpus} failed"))
    }
}

fn run_cmd(kinds: Vec<TargetKind>, open_fraction: Option<f64>, c: Common) -> Result<bool, String> {
    // Counted before this process pins itself (the count follows affinity).
    let cpus_all = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(cpus) = &c.client_cpus {
        pin_self(cpus)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let topts = TargetOptions {
        holdfast_bin: c.holdfast_bin.clone(),
        url: c.url.clone(),
        durability: c.durability.clone(),
        // Servers would inherit this process's pinning: unpin them unless
        // they are pinned themselves.
        server_cpus: c.server_cpus.clone().or_else(|| {
            c.client_cpus
                .as_ref()
                .map(|_| format!("0-{}", cpus_all.saturating_sub(1)))
        }),
        pg_url: c.pg_url.clone(),
        ceiling_fault: c.ceiling_fault,
    };
    let mut runs = Vec::new();
    let mut all_passed = true;
    let comparing = kinds.len() > 1;
    for kind in kinds {
        // The rivals answer the reservation endpoints only.
        if c.scenario.holdfast_only() && kind != TargetKind::Holdfast {
            if comparing {
                eprintln!(
                    "{}: skipped, it has no orders, transfers or supply",
                    kind.name()
                );
                continue;
            }
            return Err(format!(
                "{}: the {} scenario needs holdfast",
                kind.name(),
                c.scenario.name()
            ));
        }
        let target = match targets::start(kind, &topts) {
            Ok(t) => t,
            // A comparison goes on without a rival this machine lacks.
            Err(e) if comparing && kind != TargetKind::Holdfast => {
                eprintln!("{}: skipped, it could not start: {e}", kind.name());
                continue;
            }
            Err(e) => return Err(e),
        };
        eprintln!("{}: {}", kind.name(), target.describe);
        let first_model = match c.rate {
            Some(r) => Model::Open { rate_per_s: r },
            None => Model::Closed,
        };
        let r = rt.block_on(one_run(&target, first_model, &c, &topts, cpus_all))?;
        eprint!("{}", report::detail(&r));
        all_passed &= r.verification.as_ref().is_none_or(|v| v.passed);
        let peak = r.requests_per_s;
        runs.push(r);
        if let (Some(f), Model::Closed) = (open_fraction, first_model) {
            if f > 0.0 {
                let model = Model::Open {
                    rate_per_s: (peak * f).max(1.0),
                };
                let r = rt.block_on(one_run(&target, model, &c, &topts, cpus_all))?;
                eprint!("{}", report::detail(&r));
                all_passed &= r.verification.as_ref().is_none_or(|v| v.passed);
                runs.push(r);
            }
        }
    }
    println!("{}", report::table(&runs));
    report::write(&c.out, &runs, &command)?;
    println!(
        "results: {} and {}",
        c.out.join("results.json").display(),
        c.out.join("report.html").display()
    );
    Ok(all_passed)
}

async fn one_run(
    target: &targets::Running,
    model: Model,
    c: &Common,
    topts: &TargetOptions,
    cpus_all: usize,
) -> Result<RunResult, String> {
    let wopts = Arc::new(WorkloadOptions {
        skus: c.skus.max(1),
        locations: c.locations.max(1),
        on_hand: c.on_hand,
        zipf_s: c.zipf,
        hot_stock: c.hot_stock,
        ttl_s: c.ttl_s,
        abandon_ttl_s: c.abandon_ttl_s,
    });
    // A fresh prefix per run: runs never share records.
    let prefix = format!(
        "lt{}{}-",
        std::process::id() % 10_000,
        rand::random::<u16>()
    );
    let net = Arc::new(Network::for_scenario(c.scenario, &wopts, prefix));
    let token = c.token.clone();
    let t0 = std::time::Instant::now();
    verify::setup(&target.base, &token, &net).await?;
    eprintln!(
        "  set up {} SKUs x {} locations in {:.1} s; {} {} for {} s",
        net.skus,
        net.locations,
        t0.elapsed().as_secs_f64(),
        c.scenario.name(),
        match model {
            Model::Closed => format!("closed loop, {} connections", c.connections),
            Model::Open { rate_per_s } => format!(
                "open loop at {rate_per_s:.0}/s over {} connections",
                c.connections
            ),
        },
        c.duration
    );
    let feed = if c.feed_clients > 0 {
        if target.kind != TargetKind::Holdfast {
            return Err("--feed-clients needs holdfast".into());
        }
        let locations: Vec<String> = (0..net.locations).map(|j| net.location(j)).collect();
        Some(
            fanout::connect(
                &target.base,
                &token,
                &locations,
                c.feed_clients,
                target.pid(),
            )
            .await?,
        )
    } else {
        None
    };
    let hooks = if c.webhooks > 0 {
        if target.kind != TargetKind::Holdfast {
            return Err("--webhooks needs holdfast".into());
        }
        let types: Vec<&str> = c.webhook_types.split(',').collect();
        Some(hooks::start(&target.base, &token, (c.webhooks, c.webhook_batch), &types).await?)
    } else {
        None
    };
    let streams = if c.sse_clients > 0 {
        if target.kind != TargetKind::Holdfast {
            return Err("--sse-clients needs holdfast".into());
        }
        Some(
            sse::connect(
                &target.base,
                &token,
                c.sse_clients,
                &c.sse_types,
                target.pid(),
            )
            .await?,
        )
    } else {
        None
    };
    let zipf = Arc::new(Zipf::new(net.skus, net.zipf_s));
    let sessions = (0..c.connections.max(1))
        .map(|k| {
            Session::new(
                c.scenario,
                net.clone(),
                zipf.clone(),
                wopts.clone(),
                0x5eed ^ k as u64,
            )
        })
        .collect();
    let plan = Plan {
        base: target.base.clone(),
        token: token.clone(),
        connections: c.connections.max(1),
        duration: Duration::from_secs(c.duration.max(1)),
        model,
        timeout: Duration::from_secs(c.timeout_s.max(1)),
        progress: !c.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let driven = driver::drive(&plan, sessions).await?;
    let feed = match feed {
        Some(f) => Some(f.finish().await),
        None => None,
    };
    let webhooks = match hooks {
        Some(h) => Some(h.finish().await),
        None => None,
    };
    let sse = match streams {
        Some(s) => Some(s.finish().await?),
        None => None,
    };
    let verification = if c.no_verify {
        None
    } else {
        eprintln!("  verifying through the API...");
        Some(
            verify::verify(
                &target.base,
                &token,
                c.scenario,
                &net,
                &driven.ledger,
                c.verify_max,
            )
            .await?,
        )
    };
    let secs = driven.elapsed.as_secs_f64().max(0.001);
    let requests = driven.counts.total();
    Ok(RunResult {
        target: target.kind.name().into(),
        target_detail: target.describe.clone(),
        durable: target.kind.durable(&topts.durability),
        scenario: c.scenario.name().into(),
        model,
        connections: plan.connections,
        duration_s: secs,
        requests,
        requests_per_s: requests as f64 / secs,
        carts_held_per_s: driven.ledger.carts_held as f64 / secs,
        counts: driven.counts,
        latency: Latency::of(&driven.all),
        ops: driven
            .per_op
            .iter()
            .map(|(op, h)| OpLatency {
                op: op.name(),
                latency: Latency::of(h),
            })
            .collect(),
        timeline: driven.timeline,
        verification,
        feed,
        webhooks,
        sse,
        environment: Environment {
            date: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            cpus: cpus_all,
            client_cpus: c.client_cpus.clone(),
            server_cpus: c.server_cpus.clone(),
            how: match (&c.client_cpus, &c.server_cpus) {
                (None, None) => "client and server share every CPU (not pinned)".into(),
                (cl, sv) => format!(
                    "client on CPUs {}, server on CPUs {}",
                    cl.as_deref().unwrap_or("any"),
                    sv.as_deref().unwrap_or("any")
                ),
            },
        },
    })
}
