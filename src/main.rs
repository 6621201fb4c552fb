//! The `holdfast` command: thin; the work is in the library.

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "holdfast",
    version,
    about = "Order-management and stock-reservation engine"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API (default: 127.0.0.1:8080, data under ./data, open).
    Serve {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Run as a node of the cluster this file describes (`cluster.toml`);
        /// its `http` address and `data_dir` replace `[server]`'s.
        #[arg(long, requires = "node")]
        cluster: Option<PathBuf>,
        /// This node's id in the cluster file.
        #[arg(long, requires = "cluster")]
        node: Option<String>,
    },
    /// Load stock counts (CSV `location,sku,on_hand` or JSON lines with those
    /// fields) into a running server through `POST /v1/inventory/batch`.
    Import {
        file: PathBuf,
        /// The server's base URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Bearer token (an admin token when the server has `[auth]`).
        #[arg(long, env = "HOLDFAST_TOKEN")]
        token: Option<String>,
        /// Items per request (at most 10,000).
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        /// The file holds SKUs (`sku,name[,weight_g[,ship_alone]]` or JSON
        /// lines of SKUs), not stock counts.
        #[arg(long)]
        catalog: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let r = match Cli::parse().cmd {
        Cmd::Serve {
            config,
            cluster,
            node,
        } => match (cluster, node) {
            (Some(cluster), Some(node)) => {
                holdfast::server::run_cluster(config.as_deref(), &cluster, &node)
            }
            _ => holdfast::server::run(config.as_deref()),
        },
        Cmd::Import {
            file,
            url,
            token,
            batch,
            catalog,
        } => {
            let kind = if catalog {
                holdfast::import::Kind::Catalog
            } else {
                holdfast::import::Kind::Counts
            };
            holdfast::import::run(&file, &url, token.as_deref(), batch, kind)
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("holdfast: {e}");
            ExitCode::FAILURE
        }
    }
}
