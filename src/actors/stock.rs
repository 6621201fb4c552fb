use super::*;

impl Engine {
    /// Counts: sets on_hand and safety_stock of records; one journal record
    /// per shard touched. Waits for mailbox room (a back-office path). Per
    /// item, its record, or why a count as of a time was refused.
    pub async fn count(
        &self,
        items: Vec<CountItem>,
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
                .send(Count { items, reply: tx })
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
        self.adjust_keyed(sku_idx, loc_idx, sku, location, delta, reason, None)
            .await
    }

    /// `adjust`, applied once under `key` if given (journaled with it, so
    /// a takeover or a restart keeps it): the same adjustment asked again
    /// answers the record as it is, another under the key is refused
    /// (`AdjustRefused::key_reused`).
    #[allow(clippy::too_many_arguments)]
    pub async fn adjust_keyed(
        &self,
        sku_idx: SkuIdx,
        loc_idx: LocIdx,
        sku: SkuId,
        location: LocationId,
        delta: i64,
        reason: AdjustReason,
        key: Option<String>,
    ) -> Result<Result<RecordView, AdjustRefused>, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.stock_of(sku_idx)
            .try_send(stock_shard::Adjust {
                sku_idx,
                loc_idx,
                sku,
                location,
                delta,
                reason,
                key,
                reply: tx,
            })
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
