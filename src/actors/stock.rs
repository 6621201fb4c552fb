use super::*;
use crate::limits::{HISTORY_WAIT, STOCK_MAX};
use crate::persistence::history::{Page, Place};

impl Engine {
    /// Counts: sets on_hand and safety_stock of records; one journal record
    /// per shard touched. Waits for mailbox room (a back-office path). Per
    /// item, its record, or why a count as of a time was refused.
    pub async fn count(
        &self,
        items: Vec<CountItem>,
        by: Option<By>,
    ) -> Result<Vec<Result<RecordView, LateCountRefused>>, EngineError> {
        let n = self.0.stock.len();
        let late: Vec<bool> = items.iter().map(|c| c.counted_at.is_some()).collect();
        let mut per_shard: Vec<Vec<(usize, CountItem)>> = (0..n).map(|_| Vec::new()).collect();
        for (i, it) in items.into_iter().enumerate() {
            per_shard[it.sku_idx as usize % n].push((i, it));
        }
        let mut pending = Vec::new();
        for (shard, v) in per_shard.into_iter().enumerate() {
            if v.is_empty() {
                continue;
            }
            let (order, items): (Vec<usize>, Vec<CountItem>) = v.into_iter().unzip();
            let (tx, rx) = oneshot::channel();
            self.0.stock[shard]
                .send(Count {
                    items,
                    by: by.clone(),
                    reply: tx,
                })
                .await
                .map_err(|_| EngineError::Stopped)?;
            pending.push((order, rx));
        }
        let mut out = Vec::new();
        let mut durables = Vec::new();
        for (order, rx) in pending {
            let (recs, d) = reply(rx).await??;
            durables.push(d);
            out.extend(order.into_iter().zip(recs));
        }
        for d in durables {
            d.await?;
        }
        out.sort_by_key(|(i, _)| *i);
        let counted = &self.0.metrics.late_counts;
        for (_, r) in out.iter().filter(|(i, _)| late[*i]) {
            let i = match r {
                Ok(_) => 0,
                Err(LateCountRefused::Stale { .. }) => 1,
                Err(LateCountRefused::TooOld { .. }) => 2,
            };
            counted[i].fetch_add(1, Ordering::Relaxed);
        }
        Ok(out.into_iter().map(|(_, r)| r).collect())
    }

    pub async fn adjust(
        &self,
        sku_idx: SkuIdx,
        loc_idx: LocIdx,
        sku: SkuId,
        location: LocationId,
        delta: i64,
        reason: AdjustReason,
    ) -> Result<Result<RecordView, AdjustRefused>, EngineError> {
        self.adjust_as(stock_shard::Adjustment {
            sku_idx,
            loc_idx,
            sku,
            location,
            delta,
            reason,
            key: None,
            by: None,
            note: None,
            unsellable: None,
        })
        .await
    }

    /// `adjust` as asked: applied once under its `key` if it has one
    /// (journaled with it, so a takeover or a restart keeps it): the same
    /// adjustment asked again answers the record as it is, another under
    /// the key is refused (`AdjustRefused::key_reused`).
    pub async fn adjust_as(
        &self,
        what: stock_shard::Adjustment,
    ) -> Result<Result<RecordView, AdjustRefused>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.stock_of(what.sku_idx)
            .try_send(stock_shard::Adjust { what, reply: tx })
            .map_err(full)?;
        durable_reply(rx).await
    }

    /// Records of `sku` as a client reads them: what was journaled.
    pub async fn stock_records(
        &self,
        sku: SkuIdx,
        locations: Option<Vec<LocIdx>>,
    ) -> Result<Vec<RecordView>, EngineError> {
        self.read_stock(sku, locations, false).await
    }

    pub(super) async fn read_stock(
        &self,
        sku: SkuIdx,
        locations: Option<Vec<LocIdx>>,
        provisional: bool,
    ) -> Result<Vec<RecordView>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.stock_of(sku)
            .try_send(Read {
                sku,
                locations,
                provisional,
                reply: tx,
            })
            .map_err(full)?;
        reply(rx).await
    }
}

/// A page of a record's movement history, as `Engine::history` reads it.
pub enum HistoryRead {
    Page(Page),
    /// The history has not caught up with what was durable when asked
    /// within `HISTORY_WAIT` (a restart's catch-up on a long journal).
    CatchingUp,
    /// No history here: snapshots are off (it is kept beside them).
    Off,
}

impl Engine {
    /// A page of the movements of `location`'s `sku`, newest first (older
    /// than `before`, none older than `since`), once the history holds
    /// every movement durable when asked: a client reads its own writes.
    pub async fn history(
        &self,
        location: String,
        sku: String,
        since: Option<TimeMs>,
        before: Option<Place>,
        limit: usize,
    ) -> Result<HistoryRead, EngineError> {
        let Some(store) = self.snapshots() else {
            return Ok(HistoryRead::Off);
        };
        let stats = &self.journal().stats;
        let wanted = stats.settled_seq();
        let deadline = std::time::Instant::now() + HISTORY_WAIT;
        while stats.history_seq.load(Ordering::Acquire) < wanted {
            stats.history_wanted.store(true, Ordering::Release);
            if std::time::Instant::now() >= deadline {
                return Ok(HistoryRead::CatchingUp);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let history = store.history().clone();
        let page = tokio::task::spawn_blocking(move || {
            history.page(&location, &sku, since, before, limit)
        })
        .await
        .map_err(|_| EngineError::Stopped)??;
        Ok(HistoryRead::Page(page))
    }
}

/// An adjustment refused, as the API answers it: 409 `insufficient_stock`
/// saying what the record has, or 422 `idempotency_key_reused`.
impl From<AdjustRefused> for ApiError {
    fn from(r: AdjustRefused) -> ApiError {
        match r {
            AdjustRefused::OutOfRange { on_hand } => ApiError::new(
                Code::InsufficientStock,
                format!(
                    "on_hand is {on_hand}: the adjustment would take it out of 0..={STOCK_MAX}"
                ),
            )
            .with("on_hand", serde_json::json!(on_hand)),
            AdjustRefused::BucketShort { bucket, has } => ApiError::new(
                Code::InsufficientStock,
                format!(
                    "the {} bucket holds {has} units (0 to {STOCK_MAX})",
                    bucket.as_str()
                ),
            )
            .with("unsellable", serde_json::json!({ bucket.as_str(): has })),
            AdjustRefused::NotFree { free } => ApiError::new(
                Code::InsufficientStock,
                format!("{free} units are neither reserved nor unsellable"),
            )
            .with("free", serde_json::json!(free)),
            AdjustRefused::KeyReused => ApiError::new(
                Code::IdempotencyKeyReused,
                "this Idempotency-Key was used by another adjustment",
            ),
        }
    }
}
