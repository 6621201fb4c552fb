//! The one HTTP client every target is driven by: a keep-alive HTTP/1.1
//! connection per worker (like wrk), so the client's cost is the same
//! whatever engine answers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Method;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Why a request has no answer. The write it carried is in doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Failure {
    Connect,
    Io,
    Timeout,
}

pub struct Conn {
    addr: SocketAddr,
    host: String,
    token: Option<String>,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// `http://host:port` (no TLS: the targets run on this machine).
pub fn parse_base(base: &str) -> Result<(SocketAddr, String), String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base}: only http:// URLs are supported"))?;
    let host = rest.trim_end_matches('/').to_string();
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&host)
        .map_err(|e| format!("{base}: {e}"))?
        .next()
        .ok_or_else(|| format!("{base}: no address"))?;
    Ok((addr, host))
}

impl Conn {
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Conn, String> {
        let (addr, host) = parse_base(base)?;
        Ok(Conn {
            addr,
            host,
            token,
            timeout,
            sender: None,
        })
    }

    async fn connect(&mut self) -> Result<(), Failure> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|_| Failure::Connect)?;
        stream.set_nodelay(true).map_err(|_| Failure::Connect)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// One request; on any failure the connection is dropped and the next
    /// call opens a new one.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), Failure> {
        match tokio::time::timeout(self.timeout, self.call_inner(method, path, body)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(f)) => {
                self.sender = None;
                Err(f)
            }
            Err(_) => {
                self.sender = None;
                Err(Failure::Timeout)
            }
        }
    }

    async fn call_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), Failure> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.connect().await?;
        }
        let Some(sender) = self.sender.as_mut() else {
            return Err(Failure::Connect);
        };
        sender.ready().await.map_err(|_| Failure::Io)?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.host);
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| Failure::Io)?;
        let resp = sender.send_request(req).await.map_err(|_| Failure::Io)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Io)?
            .to_bytes();
        Ok((status, body))
    }

    /// A call whose JSON answer is wanted (setup and verification).
    pub async fn json(
        &mut self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), String> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let (status, bytes) = self
            .call(method.clone(), path, body)
            .await
            .map_err(|f| format!("{method} {path}: {f:?}"))?;
        let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Ok((status, v))
    }
}
