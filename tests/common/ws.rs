//! A stock feed client (tokio-tungstenite): connect, read the snapshot,
//! follow changes in version order.

use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to the feed; `header` puts the token in `Authorization`,
/// otherwise it goes in `?token=`. Err: the HTTP status of the refusal.
pub async fn connect(port: u16, query: &str, token: &str, header: bool) -> Result<Socket, u16> {
    let url = if header {
        format!("ws://127.0.0.1:{port}/v1/feed?{query}")
    } else {
        format!("ws://127.0.0.1:{port}/v1/feed?{query}&token={token}")
    };
    let mut req = url.into_client_request().expect("request");
    if header {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("connect: {e}"),
    }
}

/// The next JSON text message (pings and pongs skipped), or None on close
/// or after `wait`.
pub async fn next_json(ws: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).ok(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            _ => return None,
        }
    }
}

/// Reads a client's snapshot, then its changes until every record it
/// follows shows `want` (sku@location -> (on_hand, reserved)); checks each
/// record's versions grow. Returns how many changes it read.
pub async fn follow(
    ws: &mut Socket,
    snapshot: &mut BTreeMap<String, (i64, i64, i64)>,
    want: &BTreeMap<String, (i64, i64)>,
) -> usize {
    let mut read = 0;
    loop {
        let done = want
            .iter()
            .all(|(k, v)| snapshot.get(k).map(|x| (x.0, x.1)) == Some(*v));
        if done {
            return read;
        }
        let m = next_json(ws, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("feed ended early; have {snapshot:?}, want {want:?}"));
        assert_eq!(m["type"], "stock", "{m}");
        assert!(m["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{m}");
        let key = format!(
            "{}@{}",
            m["sku"].as_str().unwrap_or(""),
            m["location"].as_str().unwrap_or("")
        );
        let version = m["version"].as_i64().unwrap_or(-1);
        let before = snapshot.get(&key).map_or(-1, |x| x.2);
        assert!(version > before, "{key}: version {version} after {before}");
        snapshot.insert(
            key,
            (
                m["on_hand"].as_i64().unwrap_or(-1),
                m["reserved"].as_i64().unwrap_or(-1),
                version,
            ),
        );
        read += 1;
    }
}

pub fn records(snapshot: &Value) -> BTreeMap<String, (i64, i64, i64)> {
    snapshot["records"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                format!(
                    "{}@{}",
                    r["sku"].as_str().unwrap_or(""),
                    r["location"].as_str().unwrap_or("")
                ),
                (
                    r["on_hand"].as_i64().unwrap_or(-1),
                    r["reserved"].as_i64().unwrap_or(-1),
                    r["version"].as_i64().unwrap_or(-1),
                ),
            )
        })
        .collect()
}

/// Reads until every record of `want` shows its value, taking fresh
/// snapshots as they come (a cluster node's session follows again from
/// one when a shard changes hands there, as a reader that fell behind
/// does); a record's version never goes back, in a change or a snapshot.
/// Returns (changes, snapshots) read.
pub async fn converge(
    ws: &mut Socket,
    state: &mut BTreeMap<String, (i64, i64, i64)>,
    want: &BTreeMap<String, (i64, i64)>,
    wait: Duration,
) -> (usize, usize) {
    let (mut changes, mut snapshots) = (0, 0);
    loop {
        let done = want
            .iter()
            .all(|(k, v)| state.get(k).map(|x| (x.0, x.1)) == Some(*v));
        if done {
            return (changes, snapshots);
        }
        let m = next_json(ws, wait)
            .await
            .unwrap_or_else(|| panic!("feed ended early; have {state:?}, want {want:?}"));
        let fresh = match m["type"].as_str() {
            Some("snapshot") => {
                snapshots += 1;
                records(&m)
            }
            Some("stock") => {
                changes += 1;
                records(&serde_json::json!({ "records": [m] }))
            }
            _ => panic!("unexpected message {m}"),
        };
        for (key, now) in fresh {
            let before = state.get(&key).map_or(-1, |x| x.2);
            assert!(now.2 >= before, "{key}: version {} after {before}", now.2);
            state.insert(key, now);
        }
    }
}
