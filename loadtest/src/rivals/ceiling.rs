//! `ceiling`: the reservation semantics as an in-memory conditional
//! decrement behind one mutex. No actors, no journal, no durability: what
//! this HTTP stack gives on this machine when the engine costs nothing.

use ahash::AHashMap;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::{
    now_ms, Backend, CountItem, Ids, Line, Record, ReservationView, Shortage, Transition,
    TransitionOutcome,
};

#[derive(Default, Clone, Copy)]
struct Stock {
    on_hand: i64,
    reserved: i64,
    version: i64,
}

/// The rival's own statuses: a baseline shares no code with the engine it
/// is compared with (holdfast's `domain::reservation::Status` is the same
/// list by design, from api.md).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Held,
    Confirmed,
    Released,
    Expired,
    Fulfilled,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Held => "held",
            Status::Confirmed => "confirmed",
            Status::Released => "released",
            Status::Expired => "expired",
            Status::Fulfilled => "fulfilled",
        }
    }
}

struct Res {
    status: Status,
    expires_ms: u64,
    lines: Vec<Line>,
}

#[derive(Default)]
struct State {
    stock: AHashMap<(String, String), Stock>,
    locations_of: AHashMap<String, Vec<String>>,
    res: AHashMap<String, Res>,
    expiries: BTreeSet<(u64, String)>,
}

impl State {
    fn record(&self, loc: &str, sku: &str) -> Record {
        let s = self
            .stock
            .get(&(loc.to_string(), sku.to_string()))
            .copied()
            .unwrap_or_default();
        Record::new(loc, sku, s.on_hand, s.reserved, s.version)
    }

    /// Gives back the lines' quantity; `fulfil` also takes it off on_hand.
    fn unhold(&mut self, lines: &[Line], fulfil: bool) {
        for l in lines {
            let s = self
                .stock
                .entry((l.location.clone(), l.sku.clone()))
                .or_default();
            s.reserved -= l.qty;
            if fulfil {
                s.on_hand -= l.qty;
            }
            s.version += 1;
        }
    }

    fn view(id: &str, r: &Res) -> ReservationView {
        ReservationView::new(id, r.status.name(), r.expires_ms, r.lines.clone())
    }

    fn expire_due(&mut self, now: u64) {
        while let Some((at, id)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.expiries.remove(&(at, id.clone()));
            let lines = match self.res.get_mut(&id) {
                Some(r) if r.status == Status::Held => {
                    r.status = Status::Expired;
                    std::mem::take(&mut r.lines)
                }
                _ => continue,
            };
            self.unhold(&lines, false);
            if let Some(r) = self.res.get_mut(&id) {
                r.lines = lines;
            }
        }
    }
}

/// A deliberate bug, so that tests can show the harness's verification
/// catches what it claims to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Holds without checking what is available.
    Oversell,
    /// Answers a confirm with 200 and forgets it.
    LoseConfirm,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Oversell => "oversell",
            Fault::LoseConfirm => "lose-confirm",
        }
    }
}

pub struct Ceiling {
    state: Arc<Mutex<State>>,
    ids: Ids,
    fault: Option<Fault>,
}

impl Ceiling {
    /// With a sweeper thread expiring held reservations every 100 ms.
    pub fn start(fault: Option<Fault>) -> Ceiling {
        let state: Arc<Mutex<State>> = Arc::default();
        let s = state.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            s.lock().expire_due(now_ms());
        });
        Ceiling {
            state,
            ids: Ids::new('c'),
            fault,
        }
    }
}

impl Backend for Ceiling {
    async fn count(&self, items: Vec<CountItem>) -> Result<(), String> {
        let mut st = self.state.lock();
        for it in items {
            let key = (it.location.clone(), it.sku.clone());
            if !st.stock.contains_key(&key) {
                st.locations_of.entry(it.sku).or_default().push(it.location);
            }
            let s = st.stock.entry(key).or_default();
            s.on_hand = it.on_hand;
            s.version += 1;
        }
        Ok(())
    }

    async fn record(&self, location: &str, sku: &str) -> Result<Record, String> {
        Ok(self.state.lock().record(location, sku))
    }

    async fn availability(&self, sku: &str) -> Result<Vec<(String, i64)>, String> {
        let st = self.state.lock();
        Ok(st
            .locations_of
            .get(sku)
            .map(|locs| {
                locs.iter()
                    .map(|l| (l.clone(), st.record(l, sku).available))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn adjust(
        &self,
        location: &str,
        sku: &str,
        delta: i64,
    ) -> Result<Result<Record, Record>, String> {
        let mut st = self.state.lock();
        let s = st
            .stock
            .entry((location.to_string(), sku.to_string()))
            .or_default();
        if s.on_hand + delta < 0 {
            return Ok(Err(st.record(location, sku)));
        }
        s.on_hand += delta;
        s.version += 1;
        Ok(Ok(st.record(location, sku)))
    }

    async fn reserve(
        &self,
        lines: Vec<Line>,
        ttl_s: u64,
    ) -> Result<Result<ReservationView, Vec<Shortage>>, String> {
        let id = self.ids.next();
        let expires_ms = now_ms() + ttl_s * 1000;
        let mut st = self.state.lock();
        let short: Vec<Shortage> = lines
            .iter()
            .filter_map(|l| {
                let r = st.record(&l.location, &l.sku);
                (r.available < l.qty).then(|| Shortage {
                    sku: l.sku.clone(),
                    location: l.location.clone(),
                    requested: l.qty,
                    available: r.available,
                })
            })
            .collect();
        if !short.is_empty() && self.fault != Some(Fault::Oversell) {
            return Ok(Err(short));
        }
        for l in &lines {
            let s = st
                .stock
                .entry((l.location.clone(), l.sku.clone()))
                .or_default();
            s.reserved += l.qty;
            s.version += 1;
        }
        let r = Res {
            status: Status::Held,
            expires_ms,
            lines,
        };
        let view = State::view(&id, &r);
        st.expiries.insert((expires_ms, id.clone()));
        st.res.insert(id, r);
        Ok(Ok(view))
    }

    async fn transition(&self, id: &str, t: Transition) -> Result<TransitionOutcome, String> {
        let mut st = self.state.lock();
        st.expire_due(now_ms());
        let Some(r) = st.res.get(id) else {
            return Ok(TransitionOutcome::NotFound);
        };
        let (status, expires_ms) = (r.status, r.expires_ms);
        let (next, unhold) = match (t, status) {
            (Transition::Confirm, Status::Held) => (Status::Confirmed, None),
            (Transition::Confirm, Status::Confirmed) => (Status::Confirmed, None),
            (Transition::Release, Status::Held | Status::Confirmed) => {
                (Status::Released, Some(false))
            }
            (Transition::Release, Status::Released | Status::Expired) => (status, None),
            (Transition::Fulfil, Status::Confirmed) => (Status::Fulfilled, Some(true)),
            _ => return Ok(TransitionOutcome::NotHeld(status.name().into())),
        };
        if status == Status::Held && next != Status::Held {
            st.expiries.remove(&(expires_ms, id.to_string()));
        }
        if let Some(fulfil) = unhold {
            let lines = st.res.get(id).map(|r| r.lines.clone()).unwrap_or_default();
            st.unhold(&lines, fulfil);
        }
        let Some(r) = st.res.get_mut(id) else {
            return Ok(TransitionOutcome::NotFound);
        };
        if t == Transition::Confirm && self.fault == Some(Fault::LoseConfirm) {
            let mut view = State::view(id, r);
            view.status = "confirmed".into();
            return Ok(TransitionOutcome::Done(view));
        }
        r.status = next;
        Ok(TransitionOutcome::Done(State::view(id, r)))
    }

    async fn get(&self, id: &str) -> Result<Option<ReservationView>, String> {
        let st = self.state.lock();
        Ok(st.res.get(id).map(|r| State::view(id, r)))
    }
}
