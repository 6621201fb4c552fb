//! Webhook subscriptions (api.md, Webhooks): where the published events
//! are sent, which types, the secret they are signed with, and how far
//! delivery got. Journaled like every other state (`Event::Webhook`), so
//! a restart or a new leader goes on where the last one left off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::TimeMs;

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    /// Type patterns (`stock.*`, `order.placed`, `*`).
    pub types: Vec<String>,
    /// `whsec_` and the key in base64 (Standard Webhooks).
    pub secret: String,
    pub created_ms: TimeMs,
    /// The last event acknowledged (a 2xx answer) as journaled: after a
    /// restart the ones after it are sent again (at least once).
    pub delivered: u64,
    /// Failing for 24 hours (`WEBHOOK_FAILING_AFTER`): still tried,
    /// shown as `failing`.
    pub failing: bool,
    /// Replays asked so far: a delivery mark made before the newest
    /// replay (journaled after it) is not taken, so a replay is never
    /// undone by a mark in flight.
    pub replays: u64,
    /// Events sent in one request at most: 1, one event a request as its
    /// own body; more, `{"events":[...]}` of up to this many.
    #[serde(default = "one_event")]
    pub batch: u32,
}

/// A subscription made before batches sends one event a request.
fn one_event() -> u32 {
    1
}

/// A subscription's step as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookFact {
    /// Made, to hear the events after `after` (the newest when it was).
    Created {
        url: String,
        types: Vec<String>,
        secret: String,
        after: u64,
        #[serde(default = "one_event")]
        batch: u32,
    },
    Deleted,
    /// Events through this one were acknowledged, by the delivery that
    /// began after replay number `replays`.
    Delivered {
        through: u64,
        replays: u64,
    },
    /// Sent again from after this one (`POST .../replay`).
    Replay {
        after: u64,
    },
    Failing {
        failing: bool,
    },
}

pub type Webhooks = BTreeMap<String, Webhook>;

/// Applies `fact` of subscription `id`. A step of one not kept (deleted
/// meanwhile) changes nothing.
pub fn apply(webhooks: &mut Webhooks, id: &str, fact: &WebhookFact, at_ms: TimeMs) {
    match fact {
        WebhookFact::Created {
            url,
            types,
            secret,
            after,
            batch,
        } => {
            webhooks.insert(
                id.to_string(),
                Webhook {
                    id: id.to_string(),
                    url: url.clone(),
                    types: types.clone(),
                    secret: secret.clone(),
                    created_ms: at_ms,
                    delivered: *after,
                    failing: false,
                    replays: 0,
                    batch: *batch,
                },
            );
        }
        WebhookFact::Deleted => {
            webhooks.remove(id);
        }
        WebhookFact::Delivered { through, replays } => {
            if let Some(w) = webhooks.get_mut(id).filter(|w| w.replays == *replays) {
                w.delivered = *through;
                w.failing = false;
            }
        }
        WebhookFact::Replay { after } => {
            if let Some(w) = webhooks.get_mut(id) {
                w.delivered = *after;
                w.replays += 1;
            }
        }
        WebhookFact::Failing { failing } => {
            if let Some(w) = webhooks.get_mut(id) {
                w.failing = *failing;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A subscription journaled (or snapshotted) before batches decodes
    /// as one event a request.
    #[test]
    fn older_subscriptions_decode_with_batch_one() {
        #[derive(Serialize)]
        enum Old {
            Created {
                url: String,
                types: Vec<String>,
                secret: String,
                after: u64,
            },
        }
        #[derive(Serialize)]
        struct OldWebhook {
            id: String,
            url: String,
            types: Vec<String>,
            secret: String,
            created_ms: TimeMs,
            delivered: u64,
            failing: bool,
            replays: u64,
        }
        let old = Old::Created {
            url: "http://x".into(),
            types: vec!["*".into()],
            secret: "whsec_AA".into(),
            after: 7,
        };
        let fact: WebhookFact =
            rmp_serde::from_slice(&rmp_serde::to_vec(&old).expect("encode")).expect("decode");
        assert!(matches!(
            fact,
            WebhookFact::Created {
                batch: 1,
                after: 7,
                ..
            }
        ));
        let old = OldWebhook {
            id: "wh1".into(),
            url: "http://x".into(),
            types: vec!["*".into()],
            secret: "whsec_AA".into(),
            created_ms: 5,
            delivered: 3,
            failing: false,
            replays: 0,
        };
        let w: Webhook =
            rmp_serde::from_slice(&rmp_serde::to_vec(&old).expect("encode")).expect("decode");
        assert_eq!((w.batch, w.delivered), (1, 3));
    }

    #[test]
    fn steps_move_delivery_on_and_a_replay_back() {
        let mut w = Webhooks::new();
        let made = WebhookFact::Created {
            url: "http://x".into(),
            types: vec!["*".into()],
            secret: "whsec_AA".into(),
            after: 5,
            batch: 1,
        };
        apply(&mut w, "wh1", &made, 10);
        assert_eq!(w["wh1"].delivered, 5);
        apply(&mut w, "wh1", &WebhookFact::Failing { failing: true }, 11);
        assert!(w["wh1"].failing);
        let delivered = |through, replays| WebhookFact::Delivered { through, replays };
        apply(&mut w, "wh1", &delivered(9, 0), 12);
        assert_eq!((w["wh1"].delivered, w["wh1"].failing), (9, false));
        apply(&mut w, "wh1", &WebhookFact::Replay { after: 2 }, 14);
        assert_eq!(w["wh1"].delivered, 2);
        // A mark made before the replay, journaled after it: not taken.
        apply(&mut w, "wh1", &delivered(12, 0), 14);
        assert_eq!(w["wh1"].delivered, 2);
        apply(&mut w, "wh1", &delivered(4, 1), 14);
        assert_eq!(w["wh1"].delivered, 4);
        apply(&mut w, "wh1", &WebhookFact::Deleted, 15);
        apply(&mut w, "wh1", &delivered(20, 1), 16);
        assert!(w.is_empty());
    }
}
