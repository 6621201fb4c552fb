//! Webhook subscriptions: the engine's book of them, each step journaled
//! (`Event::Webhook`) before it is answered. Delivery itself is the
//! `webhooks` module's, above the engine.

use super::transfers::locked;
use super::*;
use crate::domain::webhook::{self, Webhook, WebhookFact};
use crate::limits::WEBHOOKS_MAX;

/// Why a subscription's step was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRefused {
    /// `WEBHOOKS_MAX` are kept already.
    TooMany,
    NotFound,
}

impl Engine {
    /// Every subscription, by id.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, EngineError> {
        Ok(locked(&self.0.webhooks).await?.values().cloned().collect())
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<Webhook>, EngineError> {
        Ok(locked(&self.0.webhooks).await?.get(id).cloned())
    }

    /// Takes `fact` of subscription `id` once it is durable: the
    /// subscription after it (`None` once deleted).
    pub async fn webhook_step(
        &self,
        id: String,
        fact: WebhookFact,
    ) -> Result<Result<Option<Webhook>, WebhookRefused>, EngineError> {
        // In its own task: a caller that goes away cannot cut it short
        // between the journal and the book.
        let me = self.clone();
        tokio::spawn(async move {
            let mut book = locked(&me.0.webhooks).await?;
            match &fact {
                WebhookFact::Created { .. } if book.len() >= WEBHOOKS_MAX => {
                    return Ok(Err(WebhookRefused::TooMany))
                }
                WebhookFact::Created { .. } => {}
                _ if !book.contains_key(&id) => return Ok(Err(WebhookRefused::NotFound)),
                _ => {}
            }
            let at_ms = me.0.clock.now_ms();
            let durable = me.0.journal.append(&Event::Webhook {
                id: id.clone(),
                fact: fact.clone(),
                at_ms,
            })?;
            webhook::apply(&mut book, &id, &fact, at_ms);
            let after = book.get(&id).cloned();
            drop(book);
            durable.await?;
            Ok(Ok(after))
        })
        .await
        .map_err(|_| EngineError::Stopped)?
    }
}
