//! A reservation: its lines, its status and the transitions between statuses.
//!
//! The reservation book alone decides a transition, so a confirm and an expiry
//! can never both win: each is a pure function of the current status and `now`.

use serde::{Deserialize, Serialize};

use super::ids::{LocationId, ReservationId, SkuId};
use super::stock::StockDelta;
use super::TimeMs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Held,
    Confirmed,
    Released,
    Expired,
    Fulfilled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Held => "held",
            Status::Confirmed => "confirmed",
            Status::Released => "released",
            Status::Expired => "expired",
            Status::Fulfilled => "fulfilled",
        }
    }
    /// Held and confirmed lines count in `reserved`.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Held | Status::Confirmed)
    }
}

/// One line of a reservation: `qty` held of `requested` (equal unless the
/// cart allowed partial holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: SkuId,
    pub location: LocationId,
    pub qty: u32,
    pub requested: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: ReservationId,
    pub lines: Vec<Line>,
    pub status: Status,
    pub created_ms: TimeMs,
    pub expires_at_ms: TimeMs,
    /// When it reached its current status.
    pub updated_ms: TimeMs,
}

/// A transition the book may be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Confirm,
    Release,
    Fulfil,
    Extend { ttl_s: u64 },
    Expire,
}

/// The reservation is not in a status that allows the transition (409).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHeld(pub Status);

/// What a transition decided: the new status and expiry, or nothing to do
/// (idempotent repeats such as confirming a confirmed reservation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Change {
        status: Status,
        expires_at_ms: TimeMs,
    },
    Unchanged,
}

/// When a hold taken at `now` for `ttl_s` seconds expires.
pub fn expires_at(now: TimeMs, ttl_s: u64) -> TimeMs {
    now + ttl_s as i64 * 1000
}

impl Reservation {
    /// A reservation just held.
    pub fn held(
        id: ReservationId,
        lines: Vec<Line>,
        created_ms: TimeMs,
        expires_at_ms: TimeMs,
    ) -> Self {
        Reservation {
            id,
            lines,
            status: Status::Held,
            created_ms,
            expires_at_ms,
            updated_ms: created_ms,
        }
    }

    /// Decides a transition at time `now`. Pure.
    pub fn decide(&self, t: Transition, now: TimeMs) -> Result<Decision, NotHeld> {
        use Status::*;
        let change = |status| Decision::Change {
            status,
            expires_at_ms: self.expires_at_ms,
        };
        match (t, self.status) {
            // A held reservation whose time has passed is as good as expired:
            // the expiry tick may just not have run yet.
            (Transition::Confirm | Transition::Extend { .. }, Held) if self.is_due(now) => {
                Err(NotHeld(Expired))
            }
            (Transition::Confirm, Held) => Ok(change(Confirmed)),
            (Transition::Confirm, Confirmed) => Ok(Decision::Unchanged),
            (Transition::Confirm, s) => Err(NotHeld(s)),
            (Transition::Release, Held | Confirmed) => Ok(change(Released)),
            (Transition::Release, Released | Expired) => Ok(Decision::Unchanged),
            (Transition::Release, s @ Fulfilled) => Err(NotHeld(s)),
            (Transition::Fulfil, Confirmed) => Ok(change(Fulfilled)),
            (Transition::Fulfil, s) => Err(NotHeld(s)),
            (Transition::Extend { ttl_s }, Held) => Ok(Decision::Change {
                status: Held,
                expires_at_ms: expires_at(now, ttl_s),
            }),
            (Transition::Extend { .. }, s) => Err(NotHeld(s)),
            (Transition::Expire, Held) if self.is_due(now) => Ok(change(Expired)),
            (Transition::Expire, s) => Err(NotHeld(s)),
        }
    }

    pub fn is_due(&self, now: TimeMs) -> bool {
        self.status == Status::Held && self.expires_at_ms <= now
    }

    /// The stock deltas of moving from the current status to `to`, per line.
    pub fn stock_effects(&self, to: Status) -> impl Iterator<Item = (&Line, StockDelta)> + '_ {
        let from_live = self.status.is_live();
        self.lines.iter().filter_map(move |l| {
            let q = i64::from(l.qty);
            let d = match to {
                Status::Released | Status::Expired if from_live => StockDelta {
                    reserved: -q,
                    ..Default::default()
                },
                Status::Fulfilled if from_live => StockDelta {
                    reserved: -q,
                    on_hand: -q,
                    ..Default::default()
                },
                _ => return None,
            };
            Some((l, d))
        })
    }
}

/// Why a held reservation cannot be split as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitRefused {
    /// Not held (released, expired, confirmed or fulfilled): 409.
    NotHeld(Status),
    /// The parts do not hold exactly the reservation's lines.
    LinesDiffer,
}

impl Reservation {
    /// Decides turning this held reservation into `parts` (each a list of
    /// lines) at `now`: every unit it holds goes to exactly one part, by
    /// SKU and location. Pure.
    pub fn decide_split(&self, parts: &[Vec<Line>], now: TimeMs) -> Result<(), SplitRefused> {
        if self.status != Status::Held || self.is_due(now) {
            let s = if self.status == Status::Held {
                Status::Expired
            } else {
                self.status
            };
            return Err(SplitRefused::NotHeld(s));
        }
        let key = |l: &Line| (l.sku.clone(), l.location.clone());
        let mut want: std::collections::BTreeMap<(SkuId, LocationId), i64> = Default::default();
        for l in &self.lines {
            *want.entry(key(l)).or_default() += i64::from(l.qty);
        }
        for l in parts.iter().flatten() {
            *want.entry(key(l)).or_default() -= i64::from(l.qty);
        }
        if want.values().any(|v| *v != 0) || parts.iter().any(Vec::is_empty) {
            return Err(SplitRefused::LinesDiffer);
        }
        Ok(())
    }
}

/// Units sold by a stock effect of moving to `to`: a fulfilled line left
/// the building for a customer.
pub fn sold_by_effect(to: Status, d: StockDelta) -> u32 {
    if to == Status::Fulfilled && d.on_hand < 0 {
        u32::try_from(-d.on_hand).unwrap_or(u32::MAX)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_gives_every_unit_to_one_part() {
        let line = |sku: &str, loc: &str, qty| Line {
            sku: SkuId::parse(sku).expect("id"),
            location: LocationId::parse(loc).expect("id"),
            qty,
            requested: qty,
        };
        let mut r = res(Status::Held, 1000);
        r.lines = vec![line("A", "S1", 2), line("B", "S2", 1), line("A", "S1", 1)];
        let good = vec![vec![line("A", "S1", 3)], vec![line("B", "S2", 1)]];
        assert_eq!(r.decide_split(&good, 10), Ok(()));
        let short = vec![vec![line("A", "S1", 2)], vec![line("B", "S2", 1)]];
        assert_eq!(r.decide_split(&short, 10), Err(SplitRefused::LinesDiffer));
        let moved = vec![vec![line("A", "S2", 3)], vec![line("B", "S2", 1)]];
        assert_eq!(r.decide_split(&moved, 10), Err(SplitRefused::LinesDiffer));
        let empty_part = vec![good[0].clone(), good[1].clone(), vec![]];
        assert_eq!(
            r.decide_split(&empty_part, 10),
            Err(SplitRefused::LinesDiffer)
        );
        assert_eq!(
            r.decide_split(&good, 1000),
            Err(SplitRefused::NotHeld(Status::Expired))
        );
        r.status = Status::Confirmed;
        assert_eq!(
            r.decide_split(&good, 10),
            Err(SplitRefused::NotHeld(Status::Confirmed))
        );
    }

    fn res(status: Status, expires_at_ms: TimeMs) -> Reservation {
        Reservation {
            id: ReservationId::parse("r1").expect("id"),
            lines: vec![Line {
                sku: SkuId::parse("A").expect("id"),
                location: LocationId::parse("S").expect("id"),
                qty: 2,
                requested: 2,
            }],
            status,
            created_ms: 0,
            expires_at_ms,
            updated_ms: 0,
        }
    }

    #[test]
    fn the_table_of_api_md() {
        use Status::*;
        use Transition::*;
        let now = 500;
        assert!(matches!(
            res(Held, 1000).decide(Confirm, now),
            Ok(Decision::Change {
                status: Confirmed,
                ..
            })
        ));
        assert_eq!(
            res(Confirmed, 1000).decide(Confirm, now),
            Ok(Decision::Unchanged)
        );
        assert_eq!(
            res(Released, 1000).decide(Confirm, now),
            Err(NotHeld(Released))
        );
        assert_eq!(res(Held, 400).decide(Confirm, now), Err(NotHeld(Expired)));
        assert_eq!(
            res(Released, 1000).decide(Release, now),
            Ok(Decision::Unchanged)
        );
        assert_eq!(
            res(Expired, 1000).decide(Release, now),
            Ok(Decision::Unchanged)
        );
        assert_eq!(
            res(Fulfilled, 1000).decide(Release, now),
            Err(NotHeld(Fulfilled))
        );
        assert_eq!(res(Held, 1000).decide(Fulfil, now), Err(NotHeld(Held)));
        assert!(matches!(
            res(Confirmed, 1000).decide(Fulfil, now),
            Ok(Decision::Change {
                status: Fulfilled,
                ..
            })
        ));
        assert_eq!(
            res(Held, 1000).decide(Extend { ttl_s: 10 }, now),
            Ok(Decision::Change {
                status: Held,
                expires_at_ms: 10_500
            })
        );
        assert_eq!(
            res(Confirmed, 1000).decide(Extend { ttl_s: 10 }, now),
            Err(NotHeld(Confirmed))
        );
        assert_eq!(res(Held, 1000).decide(Expire, now), Err(NotHeld(Held)));
        assert!(res(Held, 400).decide(Expire, now).is_ok());
        assert!(res(Confirmed, 400).decide(Expire, now).is_err());
    }

    #[test]
    fn effects() {
        let r = res(Status::Confirmed, 0);
        let f: Vec<_> = r.stock_effects(Status::Fulfilled).map(|(_, d)| d).collect();
        assert_eq!(
            f,
            vec![StockDelta {
                on_hand: -2,
                reserved: -2,
                ..StockDelta::default()
            }]
        );
        let r = res(Status::Released, 0);
        assert_eq!(r.stock_effects(Status::Released).count(), 0);
    }
}
