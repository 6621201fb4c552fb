//! The targets behind one interface: each is started on a free port (or, for
//! holdfast, given by `--url`), waited for until it answers `/healthz`, and
//! killed when the run drops it. Servers may be pinned to CPUs (`taskset`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a target may take to answer its first `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// holdfast itself (durability from `--durability`).
    Holdfast,
    /// In-memory conditional decrement behind a mutex, no durability.
    Ceiling,
    /// Lua scripts on redis-server with `appendfsync always` (durable).
    RedisAlways,
    /// Lua scripts on redis-server with `appendfsync everysec`.
    RedisEverysec,
    /// Conditional UPDATEs in transactions on PostgreSQL (`--pg-url`),
    /// `synchronous_commit = on`, in a database of its own.
    Postgres,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Holdfast => "holdfast",
            TargetKind::Ceiling => "ceiling",
            TargetKind::RedisAlways => "redis-always",
            TargetKind::RedisEverysec => "redis-everysec",
            TargetKind::Postgres => "postgres",
        }
    }
    /// Whether an acknowledgement means the write is on disk.
    pub fn durable(self, holdfast_durability: &str) -> bool {
        match self {
            TargetKind::Holdfast => holdfast_durability == "fsync",
            TargetKind::RedisAlways | TargetKind::Postgres => true,
            TargetKind::Ceiling | TargetKind::RedisEverysec => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TargetOptions {
    /// The holdfast binary; default: `holdfast` beside this binary.
    pub holdfast_bin: Option<PathBuf>,
    /// A running holdfast to use instead of starting one.
    pub url: Option<String>,
    pub durability: String,
    /// `taskset -c` list for the servers.
    pub server_cpus: Option<String>,
    /// libpq-style connection string of a PostgreSQL server whose user may
    /// create databases.
    pub pg_url: String,
    /// A deliberate bug for the ceiling rival (tests of the verification).
    pub ceiling_fault: Option<crate::rivals::ceiling::Fault>,
}

/// A target that is up. Dropping it stops what it started.
pub struct Running {
    pub kind: TargetKind,
    pub base: String,
    /// What a reader of the report needs to know about how it ran.
    pub describe: String,
    children: Vec<Child>,
    logs: Vec<PathBuf>,
    /// Run once the children are gone (drops the postgres rival's database).
    cleanup: Option<Command>,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Running {
    fn drop(&mut self) {
        // The front service first, then what it stands on.
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut c) = self.cleanup.take() {
            let _ = c.stdout(Stdio::null()).status();
        }
    }
}

impl Running {
    /// The server's process id (the first child: the target itself).
    pub fn pid(&self) -> Option<u32> {
        self.children.first().map(|c| c.id())
    }

    /// The tail of each server's log, for an error message.
    pub fn log_tail(&self) -> String {
        self.logs
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .map(|s| {
                let lines: Vec<&str> = s.lines().collect();
                lines[lines.len().saturating_sub(10)..].join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }
}

pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn command(program: &std::ffi::OsStr, cpus: &Option<String>) -> Command {
    match cpus {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn spawn(mut cmd: Command, log: &PathBuf, what: &str) -> Result<Child, String> {
    let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))
}

/// Waits until `GET /healthz` answers 200.
fn wait_healthy(port: u16, child: &mut Child, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{what} exited at start: {status}"));
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
            let mut buf = [0u8; 16];
            if s.write_all(req.as_bytes()).is_ok()
                && s.read(&mut buf).is_ok()
                && buf.starts_with(b"HTTP/1.1 200")
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{what} did not answer /healthz within {START_TIMEOUT:?}"
    ))
}

/// Waits until a redis-server answers PING.
fn wait_redis(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited at start: {status}"));
        }
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let mut buf = [0u8; 8];
            if s.write_all(b"PING\r\n").is_ok()
                && s.read(&mut buf).is_ok()
                && buf.starts_with(b"+PONG")
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("redis-server did not answer PING".into())
}

pub fn holdfast_bin(opts: &TargetOptions) -> Result<PathBuf, String> {
    if let Some(p) = &opts.holdfast_bin {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let p = me.with_file_name("holdfast");
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} not found: build it (`cargo build --release --workspace`) or pass --holdfast-bin",
            p.display()
        ))
    }
}

pub fn start(kind: TargetKind, opts: &TargetOptions) -> Result<Running, String> {
    if let (TargetKind::Holdfast, Some(url)) = (kind, &opts.url) {
        return Ok(Running {
            kind,
            base: url.trim_end_matches('/').to_string(),
            describe: format!("holdfast at {url} (started elsewhere)"),
            children: Vec::new(),
            logs: Vec::new(),
            cleanup: None,
            _tmp: None,
        });
    }
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port()?;
    let pin = opts
        .server_cpus
        .as_ref()
        .map(|c| format!(", pinned to CPUs {c}"))
        .unwrap_or_default();
    let mut running = Running {
        kind,
        base: format!("http://127.0.0.1:{port}"),
        describe: String::new(),
        children: Vec::new(),
        logs: Vec::new(),
        cleanup: None,
        _tmp: None,
    };
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    match kind {
        TargetKind::Holdfast => {
            let bin = holdfast_bin(opts)?;
            let data = tmp.path().join("data");
            let config = tmp.path().join("holdfast.toml");
            std::fs::write(
                &config,
                format!(
                    "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\ndurability = \"{}\"\n",
                    data.display(),
                    opts.durability
                ),
            )
            .map_err(|e| e.to_string())?;
            let mut cmd = command(bin.as_os_str(), &opts.server_cpus);
            cmd.arg("serve").arg("--config").arg(&config);
            cmd.env("RUST_LOG", "warn");
            let log = tmp.path().join("holdfast.log");
            running.children.push(spawn(cmd, &log, "holdfast")?);
            running.logs.push(log);
            running.describe = format!(
                "holdfast {} (durability={}{pin})",
                bin.display(),
                opts.durability
            );
        }
        TargetKind::Ceiling => {
            let mut cmd = command(me.as_os_str(), &opts.server_cpus);
            cmd.args(["rival", "ceiling", "--listen"])
                .arg(format!("127.0.0.1:{port}"));
            if let Some(f) = opts.ceiling_fault {
                cmd.arg("--fault").arg(f.name());
            }
            let log = tmp.path().join("ceiling.log");
            running
                .children
                .push(spawn(cmd, &log, "the ceiling service")?);
            running.logs.push(log);
            running.describe = format!("ceiling: in-memory, one mutex, no durability{pin}");
        }
        TargetKind::RedisAlways | TargetKind::RedisEverysec => {
            let fsync = if kind == TargetKind::RedisAlways {
                "always"
            } else {
                "everysec"
            };
            let rport = free_port()?;
            let mut cmd = command(std::ffi::OsStr::new("redis-server"), &opts.server_cpus);
            cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
                .args(["--appendfsync", fsync, "--port"])
                .arg(rport.to_string())
                .arg("--dir")
                .arg(tmp.path());
            let log = tmp.path().join("redis.log");
            let mut child = spawn(cmd, &log, "redis-server (apt-get install redis-server)")?;
            let ready = wait_redis(rport, &mut child);
            running.children.push(child);
            running.logs.push(log);
            ready?;
            let mut cmd = command(me.as_os_str(), &opts.server_cpus);
            cmd.args(["rival", "redis", "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("--redis-url")
                .arg(format!("redis://127.0.0.1:{rport}/"));
            let log = tmp.path().join("redis-rival.log");
            running
                .children
                .push(spawn(cmd, &log, "the redis service")?);
            running.logs.push(log);
            running.describe = format!(
                "warp + Lua scripts on redis-server (appendonly, appendfsync {fsync}){pin}"
            );
        }
        TargetKind::Postgres => {
            let database = format!(
                "holdfast_lt_{}_{}",
                std::process::id(),
                rand::random::<u32>()
            );
            let mut cmd = command(me.as_os_str(), &opts.server_cpus);
            cmd.args(["rival", "postgres", "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("--pg-url")
                .arg(&opts.pg_url)
                .arg("--database")
                .arg(&database);
            let log = tmp.path().join("postgres-rival.log");
            running
                .children
                .push(spawn(cmd, &log, "the postgres service")?);
            running.logs.push(log);
            let mut drop_db = Command::new(&me);
            drop_db
                .args([
                    "rival",
                    "postgres-drop",
                    "--listen",
                    "127.0.0.1:0",
                    "--pg-url",
                ])
                .arg(&opts.pg_url)
                .arg("--database")
                .arg(&database);
            running.cleanup = Some(drop_db);
            running.describe = format!(
                "warp + conditional UPDATEs in transactions on PostgreSQL ({}, database {database}, synchronous_commit on){pin}",
                opts.pg_url
            );
        }
    }
    let what = kind.name();
    let ready = match running.children.last_mut() {
        Some(c) => wait_healthy(port, c, what),
        None => Err(format!("{what}: nothing started")),
    };
    if let Err(e) = ready {
        return Err(format!("{e}\n{}", running.log_tail()));
    }
    running._tmp = Some(tmp);
    Ok(running)
}
