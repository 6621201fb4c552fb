//! A `redis-server` of a test's own, on a free port, with no persistence
//! and no shared state; stopped (SIGKILL) when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let port = super::free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Self::spawn(port, dir.path());
        let r = Redis {
            child,
            port,
            _dir: dir,
        };
        r.wait_ready();
        r
    }

    /// A replica of `primary`, once it has synced.
    pub fn replica_of(primary: &Redis) -> Redis {
        let port = super::free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--replicaof", "127.0.0.1", &primary.port.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let r = Redis {
            child,
            port,
            _dir: dir,
        };
        r.wait_ready();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !r
            .command("INFO replication")
            .contains("master_link_status:up")
        {
            assert!(Instant::now() < deadline, "the replica did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    /// An inline command's raw answer.
    pub fn command(&self, cmd: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(format!("{cmd}\r\n").as_bytes()).expect("write");
        let mut buf = vec![0u8; 16384];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn spawn(port: u16, dir: &std::path::Path) -> Child {
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            // A replica (`replica_of`) syncs at once, not after 5 s.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (.ci/run installs it)")
    }

    /// Starts it again on the same port, empty (it kept nothing on disk):
    /// as a Redis that lost everything.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port, self._dir.path());
        self.wait_ready();
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut buf = [0u8; 8];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read(&mut buf).is_ok()
                    && buf.starts_with(b"+PONG")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// Stops it at once (the Redis-down cases).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
