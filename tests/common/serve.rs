//! A warp route served on a free port of 127.0.0.1 from a thread of its
//! own, until dropped: how the providers' and carriers' simulators run.

use warp::Filter;

pub struct Served {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a carrier's simulator keeps of a parcel it labelled.
#[derive(Debug, Clone, PartialEq)]
pub struct Parcel {
    pub reference: String,
    pub to_country: String,
    /// The carrier's own status code.
    pub status: String,
    pub cancelled: bool,
}

/// The text inside the first `<name>...</name>` of `xml` (the XML
/// simulators' reading: no namespaces, no attributes on these tags).
pub fn xml_tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

/// A decimal amount with two decimals as the providers send them
/// ("12.50"), in minor units; `None` for anything else.
pub fn decimal(v: &serde_json::Value) -> Option<i64> {
    let (w, f) = v.as_str()?.split_once('.')?;
    if f.len() != 2 {
        return None;
    }
    Some(w.parse::<i64>().ok()? * 100 + f.parse::<i64>().ok()?)
}

/// A JSON answer with its status, as the simulators give them.
pub fn reply(code: u16, body: &serde_json::Value) -> warp::reply::WithStatus<warp::reply::Json> {
    warp::reply::with_status(
        warp::reply::json(body),
        warp::http::StatusCode::from_u16(code)
            .unwrap_or(warp::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
}

/// A JSON simulator's handler: (state, method, path, `Authorization`,
/// body) to (status, answer).
pub type Handler<S> = fn(&mut S, &str, &str, Option<&str>, &[u8]) -> (u16, serde_json::Value);

/// A JSON simulator served: every request's method, path, `Authorization`
/// header and body handed to `handle` with the state locked, its answer
/// sent back as JSON with its status.
pub fn serve_json<S: Send + 'static>(
    state: std::sync::Arc<parking_lot::Mutex<S>>,
    handle: Handler<S>,
) -> Served {
    let route = warp::method()
        .and(warp::path::full())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::bytes())
        .map(
            move |m: warp::http::Method,
                  path: warp::path::FullPath,
                  auth: Option<String>,
                  body: bytes::Bytes| {
                let (code, out) = handle(
                    &mut state.lock(),
                    m.as_str(),
                    path.as_str(),
                    auth.as_deref(),
                    &body,
                );
                reply(code, &out)
            },
        );
    serve(route)
}

pub fn serve<F>(route: F) -> Served
where
    F: Filter + Clone + Send + Sync + 'static,
    F::Extract: warp::Reply,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (addr, server) =
                warp::serve(route).bind_with_graceful_shutdown(([127, 0, 0, 1], 0), async {
                    let _ = stopped.await;
                });
            let _ = tx.send(addr.port());
            server.await;
        });
    });
    let port = rx.recv().expect("the simulator's port");
    Served {
        port,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
