//! The HTTP stack's limit on this machine: a warp server that answers
//! `POST /v1/reservations` with a fixed 201 JSON after reading the body, on
//! the same runtime settings as `holdfast serve`, with no engine behind it.
//! `cargo run --release --example bare_warp -- 127.0.0.1:8090`

use warp::Filter;

fn main() {
    let addr: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into())
        .parse()
        .expect("address");
    let route = warp::post()
        .and(warp::path!("v1" / "reservations"))
        .and(warp::body::bytes())
        .map(|body: bytes::Bytes| {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let reply = serde_json::json!({"id": "r1", "status": "held", "lines": v["lines"]});
            warp::reply::with_status(warp::reply::json(&reply), warp::http::StatusCode::CREATED)
        });
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(warp::serve(route).run(addr));
}
