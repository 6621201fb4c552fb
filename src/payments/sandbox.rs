//! The sandbox provider: no network, outcomes fixed by the amount.
//!
//! | minor units of the amount end in | authorize answers |
//! |---|---|
//! | `51` (e.g. 10.51) | declined: "refused by the issuer" |
//! | `52` (e.g. 10.52) | `Unavailable` (the provider is down: retry) |
//! | `53` (e.g. 10.53) | authorized, after `SLOW` (a slow provider) |
//! | anything else | authorized, reference `sbx-<boot>-<n>-<amount>` |
//!
//! Captures, refunds and voids follow the money: never more captured than
//! authorized, never more refunded than captured, nothing captured after a
//! void. Every call is idempotent by its key (the same key with other
//! parameters is `Rejected`); at most `SANDBOX_KEYS_MAX` keys are remembered.

use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};

use super::{Authorization, Authorize, Follow, PaymentError, PaymentProvider};

/// How long an authorization of an amount ending in 53 takes.
pub const SLOW: std::time::Duration = std::time::Duration::from_secs(3);
use crate::domain::order::Minor;
use crate::limits::SANDBOX_KEYS_MAX;

#[derive(Debug, Default)]
struct Auth {
    authorized: Minor,
    captured: Minor,
    refunded: Minor,
    voided: bool,
    /// Rebuilt from its reference after a restart: what was captured
    /// before is unknown, so captures and refunds are bounded by the
    /// authorized amount only.
    rebuilt: bool,
}

impl Auth {
    fn refundable(&self) -> Minor {
        if self.rebuilt {
            self.authorized
        } else {
            self.captured
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Auth(Authorization),
    Done,
}

#[derive(Default)]
struct State {
    /// Tells this process's references from an earlier one's.
    boot: u64,
    next: u64,
    auths: HashMap<String, Auth>,
    /// key -> (what was asked, what was answered)
    keys: HashMap<String, (String, Answer)>,
    order: VecDeque<String>,
}

impl State {
    fn remember(&mut self, key: &str, asked: String, answer: Answer) {
        self.keys.insert(key.to_string(), (asked, answer));
        self.order.push_back(key.to_string());
        while self.order.len() > SANDBOX_KEYS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
    }

    /// The first answer of `key`, if it asked the same.
    fn replay(&self, key: &str, asked: &str) -> Option<Result<Answer, PaymentError>> {
        self.keys.get(key).map(|(a, answer)| {
            if a == asked {
                Ok(answer.clone())
            } else {
                Err(PaymentError::Rejected(format!(
                    "idempotency key {key} was used for another request"
                )))
            }
        })
    }
}

#[derive(Default)]
pub struct Sandbox {
    state: Mutex<State>,
}

#[derive(Clone, Copy)]
enum Op {
    Capture,
    Refund,
    Void,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            state: Mutex::new(State {
                boot: rand::random::<u32>() as u64,
                ..State::default()
            }),
        }
    }

    fn authorize_now(&self, r: &Authorize) -> Result<Authorization, PaymentError> {
        let asked = format!("authorize {} {} {}", r.order, r.amount, r.currency);
        let mut s = self.state.lock();
        if let Some(a) = s.replay(&r.idempotency_key, &asked) {
            return match a? {
                Answer::Auth(x) => Ok(x),
                Answer::Done => Err(PaymentError::Rejected("key reused".into())),
            };
        }
        if r.amount <= 0 {
            return Err(PaymentError::Rejected("the amount must be positive".into()));
        }
        let answer = match r.amount % 100 {
            51 => Authorization::Declined {
                reason: "refused by the issuer".into(),
            },
            // Not remembered: a retry with the same key may succeed once
            // the provider is back (here: never, by design of the amount).
            52 => return Err(PaymentError::Unavailable("sandbox: provider down".into())),
            _ => {
                s.next += 1;
                let reference = format!("sbx-{:x}-{}-{}", s.boot, s.next, r.amount);
                s.auths.insert(
                    reference.clone(),
                    Auth {
                        authorized: r.amount,
                        ..Auth::default()
                    },
                );
                Authorization::Authorized { reference }
            }
        };
        s.remember(&r.idempotency_key, asked, Answer::Auth(answer.clone()));
        Ok(answer)
    }

    fn follow_now(&self, op: Op, r: &Follow) -> Result<(), PaymentError> {
        let name = match op {
            Op::Capture => "capture",
            Op::Refund => "refund",
            Op::Void => "void",
        };
        let asked = format!("{name} {} {}", r.reference, r.amount);
        let mut s = self.state.lock();
        if let Some(a) = s.replay(&r.idempotency_key, &asked) {
            return a.map(|_| ());
        }
        let reject = |m: &str| Err(PaymentError::Rejected(format!("{name}: {m}")));
        // A provider keeps its authorizations across our restarts: one
        // this process never saw is rebuilt from its reference, which
        // carries the amount (`sbx-<boot>-<n>-<amount>`).
        if !s.auths.contains_key(&r.reference) {
            let amount = r
                .reference
                .strip_prefix("sbx-")
                .and_then(|x| x.rsplit('-').next())
                .and_then(|a| a.parse::<Minor>().ok());
            match amount {
                Some(authorized) => {
                    s.auths.insert(
                        r.reference.clone(),
                        Auth {
                            authorized,
                            rebuilt: true,
                            ..Auth::default()
                        },
                    );
                }
                None => return reject("unknown reference"),
            }
        }
        let Some(a) = s.auths.get_mut(&r.reference) else {
            return reject("unknown reference");
        };
        if r.amount < 0 {
            return reject("negative amount");
        }
        match op {
            Op::Capture if a.voided => return reject("the authorization was voided"),
            Op::Capture if a.captured + r.amount > a.authorized => {
                return reject("more than authorized")
            }
            Op::Capture => a.captured += r.amount,
            Op::Refund if a.refunded + r.amount > a.refundable() => {
                return reject("more than captured")
            }
            Op::Refund => a.refunded += r.amount,
            Op::Void if a.captured > 0 => return reject("already captured: refund instead"),
            Op::Void => a.voided = true,
        }
        s.remember(&r.idempotency_key, asked, Answer::Done);
        Ok(())
    }
}

impl PaymentProvider for Sandbox {
    fn name(&self) -> &str {
        "sandbox"
    }
    fn authorize<'a>(
        &'a self,
        r: &'a Authorize,
    ) -> BoxFuture<'a, Result<Authorization, PaymentError>> {
        Box::pin(async move {
            if r.amount % 100 == 53 {
                tokio::time::sleep(SLOW).await;
            }
            self.authorize_now(r)
        })
    }
    fn capture<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(async move { self.follow_now(Op::Capture, r) })
    }
    fn refund<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(async move { self.follow_now(Op::Refund, r) })
    }
    fn void<'a>(&'a self, r: &'a Follow) -> BoxFuture<'a, Result<(), PaymentError>> {
        Box::pin(async move { self.follow_now(Op::Void, r) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(key: &str, amount: Minor) -> Authorize {
        Authorize {
            idempotency_key: key.into(),
            order: "O-1".into(),
            amount,
            currency: "EUR".into(),
            method: None,
        }
    }

    fn follow(key: &str, reference: &str, amount: Minor) -> Follow {
        Follow {
            idempotency_key: key.into(),
            order: "O-1".into(),
            reference: reference.into(),
            amount,
            currency: "EUR".into(),
        }
    }

    #[tokio::test]
    async fn outcomes_are_fixed_by_the_amount() {
        let p = Sandbox::new();
        assert!(matches!(
            p.authorize(&auth("k1", 1051)).await,
            Ok(Authorization::Declined { .. })
        ));
        assert!(matches!(
            p.authorize(&auth("k2", 1052)).await,
            Err(PaymentError::Unavailable(_))
        ));
        assert!(matches!(
            p.authorize(&auth("k3", 5990)).await,
            Ok(Authorization::Authorized { .. })
        ));
        assert!(matches!(
            p.authorize(&auth("k4", 0)).await,
            Err(PaymentError::Rejected(_))
        ));
    }

    #[tokio::test]
    async fn every_call_is_idempotent_by_its_key() {
        let p = Sandbox::new();
        let first = p.authorize(&auth("k", 5990)).await;
        assert_eq!(p.authorize(&auth("k", 5990)).await, first);
        assert!(matches!(
            p.authorize(&auth("k", 100)).await,
            Err(PaymentError::Rejected(_))
        ));
        let Ok(Authorization::Authorized { reference }) = first else {
            panic!("authorized: {first:?}");
        };
        // One capture, asked twice (a retry after a timeout): once.
        p.capture(&follow("c1", &reference, 5990))
            .await
            .expect("capture");
        p.capture(&follow("c1", &reference, 5990))
            .await
            .expect("the same answer");
        // A second capture would exceed what was authorized.
        assert!(p.capture(&follow("c2", &reference, 1)).await.is_err());
        p.refund(&follow("r1", &reference, 2000))
            .await
            .expect("refund");
        p.refund(&follow("r1", &reference, 2000))
            .await
            .expect("again, once");
        p.refund(&follow("r2", &reference, 3990))
            .await
            .expect("the rest");
        assert!(p.refund(&follow("r3", &reference, 1)).await.is_err());
        assert!(p.void(&follow("v", &reference, 0)).await.is_err());
    }

    #[tokio::test]
    async fn a_void_stops_captures() {
        let p = Sandbox::new();
        let Ok(Authorization::Authorized { reference }) = p.authorize(&auth("k", 1000)).await
        else {
            panic!("authorized");
        };
        p.void(&follow("v", &reference, 0)).await.expect("void");
        assert!(p.capture(&follow("c", &reference, 1000)).await.is_err());
        assert!(p.capture(&follow("c2", "nope", 1)).await.is_err());
        // A reference from before a restart is known by its amount.
        let other = Sandbox::new();
        other
            .refund(&follow("r3", &reference, 400))
            .await
            .expect("a fresh sandbox knows it: a refund up to the amount");
        other
            .capture(&follow("c3", &reference, 1000))
            .await
            .expect("a capture up to the amount");
        assert!(other.capture(&follow("c4", &reference, 1)).await.is_err());
    }
}
