use super::*;

impl Engine {
    /// The network as the planner sees it, rebuilt only when a location
    /// was written since the last build.
    pub(super) fn sites(&self) -> Arc<Sites> {
        let v = self.0.locations_version.load(Ordering::Acquire);
        if let Some((built, s)) = &*self.0.sites.read() {
            if *built == v {
                return s.clone();
            }
        }
        // Read after the version: what is built is at least version `v`; a
        // later write bumps the version and the next call rebuilds.
        let sites = Arc::new(Sites(
            self.catalog()
                .locations()
                // Today's capacity is marked per plan (`sites_now`).
                .map(|(_, l)| Site::of(l, false))
                .collect(),
        ));
        *self.0.sites.write() = Some((v, sites.clone()));
        sites
    }

    /// The network with today's full locations marked (`daily_capacity`
    /// reached). Usually none is full and the cached network serves as is.
    /// The count is checked when planning: two orders placed at the same
    /// moment can both take a location's last slot of the day.
    pub(super) fn sites_now(&self) -> Arc<Sites> {
        let today = crate::domain::rotation::day_of(self.0.clock.now_ms());
        let full = self.0.locations.board().full_on(today);
        self.sites_marking(full)
    }

    /// The network with the locations `full` marked at capacity.
    pub(super) fn sites_marking(&self, full: Vec<LocationId>) -> Arc<Sites> {
        let sites = self.sites();
        if full.is_empty() {
            return sites;
        }
        let full: Vec<LocIdx> = {
            let c = self.catalog();
            full.iter()
                .filter_map(|l| c.location_idx(l.as_str()))
                .collect()
        };
        let mut marked = (*sites).clone();
        for l in full {
            if let Some(s) = marked.0.get_mut(l as usize) {
                s.at_capacity = true;
            }
        }
        Arc::new(marked)
    }

    /// What the planner reads of each of `skus`: its stock at every
    /// location with the rotation index there (every SKU's shard asked at
    /// once).
    pub(super) async fn plan_stock(
        &self,
        skus: &[SkuIdx],
    ) -> Result<Vec<(SkuIdx, Vec<LineStock>)>, EngineError> {
        let records =
            futures::future::try_join_all(skus.iter().map(|&s| self.read_stock(s, None, true)))
                .await?;
        Ok(skus
            .iter()
            .zip(records)
            .map(|(&sku, recs)| {
                let v = recs
                    .iter()
                    .map(|v| LineStock {
                        location: v.record.location,
                        available: v.record.available(),
                        rotation: v.rotation,
                    })
                    .collect();
                (sku, v)
            })
            .collect())
    }

    /// Plans `lines` (SKU, quantity) for `target`: reads the stock of each
    /// SKU from its shard (every shard asked at once), then runs the
    /// planner with `[sourcing]`'s weights and the request's `options`.
    /// Holds nothing. The one way every caller plans.
    pub async fn plan(
        &self,
        lines: &[(SkuIdx, u32)],
        target: Target,
        options: PlanOptions,
    ) -> Result<Result<Plan, PickupRefused>, EngineError> {
        let mut skus: Vec<SkuIdx> = lines.iter().map(|l| l.0).collect();
        skus.sort_unstable();
        skus.dedup();
        let mut stock = self.plan_stock(&skus).await?;
        let plan_lines: Vec<PlanLine> = {
            let c = self.catalog();
            lines
                .iter()
                .map(|&(sku, qty)| PlanLine {
                    sku,
                    qty,
                    // The planner reads a SKU's stock from its first line
                    // (sourcing.rs): moved there, not copied to every line.
                    stock: stock
                        .iter_mut()
                        .find(|(s, _)| *s == sku)
                        .map(|(_, v)| std::mem::take(v))
                        .unwrap_or_default(),
                    ship_alone: c.sku(sku).is_some_and(|s| s.1.ship_alone),
                })
                .collect()
        };
        let sites = self.sites_now();
        let weights = self.0.weights.asked(options);
        Ok(sourcing::plan(
            &plan_lines,
            target,
            &sites,
            &weights,
            options.explain,
        ))
    }
}
