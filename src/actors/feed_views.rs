use super::*;

/// What the stock feed may show of a scope at a moment (`feed_view`).
#[derive(Debug, Clone, Default)]
pub struct FeedView {
    /// (SKU, committed record), by shard then SKU.
    pub records: Vec<(SkuIdx, StockRecord)>,
    /// Per stock shard, its count of changes the records include.
    pub seen: Vec<u64>,
}

impl Engine {
    /// Follows `scope`: `sink` gets every committed change of its records
    /// from now on (see `feed`), and the answer is what the feed may show
    /// of the scope now. Changes the sink gets that the view holds already
    /// are those at or before `FeedView::seen` of their shard: drop them.
    pub async fn feed_subscribe(
        &self,
        scope: Scope,
        sink: Box<dyn Sink>,
    ) -> Result<(Subscription, FeedView), EngineError> {
        // Subscribed first: a change after the view then reaches the sink.
        let sub = self.0.feed.subscribe(scope, sink);
        let view = self.feed_view(scope).await?;
        Ok((sub, view))
    }

    /// What the feed may show of `scope` now: the committed records of
    /// every shard, once the journal holds everything they show.
    pub async fn feed_view(&self, scope: Scope) -> Result<FeedView, EngineError> {
        let mut views = self.feed_views(&[scope]).await?;
        views.pop().ok_or(EngineError::Stopped)
    }

    /// `feed_view` of each of `scopes`, with one wait for the journal for
    /// all of them (an export of many locations waits once a batch, not
    /// once a location).
    pub async fn feed_views(&self, scopes: &[Scope]) -> Result<Vec<FeedView>, EngineError> {
        let n = self.0.stock.len();
        let mut views = Vec::with_capacity(scopes.len());
        for &scope in scopes {
            let shards: Vec<usize> = match scope {
                Scope::Sku(s) => vec![s as usize % n],
                Scope::Location(_) => (0..n).collect(),
            };
            let mut view = FeedView {
                records: Vec::new(),
                seen: vec![0; n],
            };
            for i in shards {
                let (tx, rx) = oneshot::channel();
                self.0.stock[i]
                    .send(FeedSnapshot { scope, reply: tx })
                    .await
                    .map_err(|_| EngineError::Stopped)?;
                let r: FeedSnapshotReply = reply(rx).await?;
                view.records.extend(r.records);
                view.seen[r.shard as usize] = r.changes;
            }
            views.push(view);
        }
        // Every change those records show was queued to the journal before
        // this barrier: once it is durable, so are they.
        self.0.journal.barrier()?.await?;
        Ok(views)
    }

    /// Subscribers of the feed and its counters (for `/metrics`).
    pub fn feed_stats(&self) -> &Arc<crate::feed::FeedStats> {
        &self.0.feed.stats
    }
}
