use super::*;
use crate::domain::sourcing::Shipment;
use ahash::AHashMap;

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
    /// once), and what a line allowing a backorder may get beyond it.
    async fn plan_stock(&self, skus: &[SkuIdx]) -> Result<Vec<(SkuIdx, Vec<Offer>)>, EngineError> {
        let records =
            futures::future::try_join_all(skus.iter().map(|&s| self.read_stock(s, None, true)))
                .await?;
        let now = self.0.clock.now_ms();
        let c = self.catalog();
        Ok(skus
            .iter()
            .zip(records)
            .map(|(&sku, recs)| {
                let sale = c.sku(sku).and_then(|x| x.1.supply_sale(now));
                let outstanding: i64 = recs.iter().map(|v| v.record.backordered).sum();
                let room = sale.map_or(0, |p| p.room(outstanding));
                let v = recs
                    .iter()
                    .map(|v| {
                        let (available, ahead) = v.record.offered(sale, room);
                        let own = v.record.available();
                        Offer {
                            stock: LineStock {
                                location: v.record.location,
                                available,
                                rotation: v.rotation,
                            },
                            own,
                            supply: ahead - (own - available),
                            room,
                            sold_ahead: u32::try_from(v.record.backordered).unwrap_or(u32::MAX),
                        }
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
    ///
    /// Lines `ahead` names (allowing a backorder) that on-hand stock
    /// cannot serve are planned after the rest against what each location
    /// may sell ahead of its supply (on hand first there, then the supply
    /// not sold yet): later than any on-hand unit, in shipments of their
    /// own that name the supply's ETA.
    pub async fn plan(
        &self,
        lines: &[(SkuIdx, u32)],
        ahead: &[bool],
        target: Target,
        options: PlanOptions,
    ) -> Result<Result<Plan, PickupRefused>, EngineError> {
        let mut skus: Vec<SkuIdx> = lines.iter().map(|l| l.0).collect();
        skus.sort_unstable();
        skus.dedup();
        let offers = self.plan_stock(&skus).await?;
        let sites = self.sites_now();
        let weights = self.0.weights.asked(options);
        let on_hand = |sku: SkuIdx| -> Vec<LineStock> {
            offers
                .iter()
                .find(|(s, _)| *s == sku)
                .map(|(_, v)| v.iter().map(|o| o.stock).collect())
                .unwrap_or_default()
        };
        let first = sourcing::plan(
            &self.plan_lines(lines, &on_hand),
            target,
            &sites,
            &weights,
            options.explain,
        );
        let Ok(mut plan) = first else {
            return Ok(first);
        };
        let again: Vec<usize> = plan
            .unsourced
            .iter()
            .copied()
            .filter(|&k| ahead.get(k) == Some(&true))
            .collect();
        if !again.is_empty() {
            let run = |asked: &[(SkuIdx, u32)], stock: &dyn Fn(SkuIdx) -> Vec<LineStock>| {
                sourcing::plan(
                    &self.plan_lines(asked, stock),
                    target,
                    &sites,
                    &weights,
                    false,
                )
                .ok()
            };
            plan_ahead(&mut plan, lines, &again, &offers, &run);
            self.plan_etas(&mut plan, lines, &offers).await?;
        }
        Ok(Ok(plan))
    }

    /// Each shipment planned against supply gets the time its last units
    /// are expected: each line's, the supply that first-in first-out gives
    /// them (after the units sold ahead there before, and those of the
    /// plan's earlier parts), as a hold's line's `eta` is.
    async fn plan_etas(
        &self,
        plan: &mut Plan,
        lines: &[(SkuIdx, u32)],
        offers: &[(SkuIdx, Vec<Offer>)],
    ) -> Result<(), EngineError> {
        // (shipment, SKU, location, units sold ahead before, units).
        let mut asks: Vec<(usize, SkuId, LocationId, u32, u32)> = Vec::new();
        {
            let c = self.catalog();
            let mut after: AHashMap<(SkuIdx, LocIdx), u32> = AHashMap::new();
            for (i, sh) in plan.shipments.iter().enumerate() {
                for (&(k, _), &b) in sh.lines.iter().zip(&sh.backordered) {
                    let sku = lines[k].0;
                    let (Some(s), Some(l)) = (c.sku(sku), c.location(sh.location)) else {
                        continue;
                    };
                    if b == 0 {
                        continue;
                    }
                    let before = after.entry((sku, sh.location)).or_insert_with(|| {
                        offers
                            .iter()
                            .find(|(x, _)| *x == sku)
                            .and_then(|(_, v)| v.iter().find(|o| o.stock.location == sh.location))
                            .map_or(0, |o| o.sold_ahead)
                    });
                    asks.push((i, s.0.clone(), l.0.clone(), *before, b));
                    *before = before.saturating_add(b);
                }
            }
        }
        if asks.is_empty() {
            return Ok(());
        }
        let etas: Vec<(usize, Option<TimeMs>)> = self
            .read_supplies(|b| {
                asks.iter()
                    .map(|(i, sku, loc, after, units)| (*i, b.fifo_eta(sku, loc, *after, *units)))
                    .collect()
            })
            .await?;
        for (i, eta) in etas {
            let sh = &mut plan.shipments[i];
            sh.eta = sh.eta.max(eta);
        }
        Ok(())
    }

    /// The planner's lines of `lines` with `stock` of each SKU (given to
    /// its first line: the planner reads a SKU's stock there, sourcing.rs).
    fn plan_lines(
        &self,
        lines: &[(SkuIdx, u32)],
        stock: &dyn Fn(SkuIdx) -> Vec<LineStock>,
    ) -> Vec<PlanLine> {
        let c = self.catalog();
        lines
            .iter()
            .enumerate()
            .map(|(i, &(sku, qty))| PlanLine {
                sku,
                qty,
                stock: if lines[..i].iter().any(|l| l.0 == sku) {
                    Vec::new()
                } else {
                    stock(sku)
                },
                ship_alone: c.sku(sku).is_some_and(|s| s.1.ship_alone),
            })
            .collect()
    }
}

/// One SKU's stock at one location as the planner reads it: what any line
/// may hold (`stock`); what a line allowing a backorder may hold on hand
/// (`own`: more than `stock` before a preorder's release) and against the
/// supply not sold yet (`supply`, within the SKU's limit).
struct Offer {
    stock: LineStock,
    own: i64,
    supply: i64,
    /// What the SKU may still sell against supply, network-wide (every
    /// location's `supply` is within it; their sum may not be).
    room: i64,
    /// Units sold ahead there already: the supply comes to them first.
    sold_ahead: u32,
}

/// Plans `lines` against a stock of each SKU (`None`: the target refused).
type Run<'r> = dyn Fn(&[(SkuIdx, u32)], &dyn Fn(SkuIdx) -> Vec<LineStock>) -> Option<Plan> + 'r;

/// Plans again the lines `again` of `lines` (allowing a backorder) that
/// the on-hand plan left unsourced, after it and against what it left:
/// first what on-hand stock can still give of them (split as any line),
/// then the rest against what each location may sell ahead of its supply
/// (on hand first there, as the hold takes it). Their parts join `plan`
/// as shipments of their own, one per location, each line's part naming
/// its units not on hand (their ETA: `Engine::plan_etas`). A line not served whole, or one of a SKU that would
/// sell more ahead than its limit leaves, stays unsourced, whole.
fn plan_ahead(
    plan: &mut Plan,
    lines: &[(SkuIdx, u32)],
    again: &[usize],
    offers: &[(SkuIdx, Vec<Offer>)],
    run: &Run<'_>,
) {
    let mut a = Ahead {
        lines,
        offers,
        taken: AHashMap::new(),
        parts: Vec::new(),
        places: AHashMap::new(),
    };
    for sh in &plan.shipments {
        for &(k, q) in &sh.lines {
            *a.taken.entry((lines[k].0, sh.location)).or_default() += i64::from(q);
        }
    }
    let got = a.take_on_hand(again, run);
    let rest: Vec<usize> = again
        .iter()
        .copied()
        .filter(|&k| got[k] < lines[k].1)
        .collect();
    let mut unsourced = a.take_supply(&rest, &got, run);
    unsourced.extend(a.past_the_limit(again, &unsourced));
    a.parts.retain(|p| !unsourced.contains(&p.0));
    plan.unsourced
        .retain(|k| !again.contains(k) || unsourced.contains(k));
    plan.shipments.extend(a.shipments());
}

/// The second plan's work: what the plans so far took of each record (not
/// offered again), and its parts: (line, location, units, of which not on
/// hand), with each location's distance and transfer as planned.
struct Ahead<'a> {
    lines: &'a [(SkuIdx, u32)],
    offers: &'a [(SkuIdx, Vec<Offer>)],
    taken: AHashMap<(SkuIdx, LocIdx), i64>,
    parts: Vec<(usize, LocIdx, u32, u32)>,
    places: AHashMap<LocIdx, (f64, bool)>,
}

impl Ahead<'_> {
    fn offer(&self, sku: SkuIdx) -> &[Offer] {
        self.offers
            .iter()
            .find(|(s, _)| *s == sku)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// Units on hand a line allowing a backorder may still hold there.
    fn free(&self, sku: SkuIdx, o: &Offer) -> i64 {
        let taken = self.taken.get(&(sku, o.stock.location)).copied();
        (o.own - taken.unwrap_or(0)).max(0)
    }

    /// SKU's stock at each location: what is free on hand, and with
    /// `supply` what may be sold ahead of supply too.
    fn stock(&self, sku: SkuIdx, supply: bool) -> Vec<LineStock> {
        self.offer(sku)
            .iter()
            .map(|o| LineStock {
                available: self.free(sku, o) + if supply { o.supply } else { 0 },
                ..o.stock
            })
            .collect()
    }

    /// Takes `q` units of line `k` at `sh`'s location, `ahead` of them not
    /// on hand.
    fn take(&mut self, k: usize, sh: &Shipment, q: u32, ahead: u32) {
        self.places
            .entry(sh.location)
            .or_insert((sh.distance_km, sh.transfer));
        let on_hand = i64::from(q - ahead);
        *self
            .taken
            .entry((self.lines[k].0, sh.location))
            .or_default() += on_hand;
        self.parts.push((k, sh.location, q, ahead));
    }

    /// Plans what on-hand stock can still give of lines `again` (a SKU's
    /// units shared out over its lines in order): what each line got.
    fn take_on_hand(&mut self, again: &[usize], run: &Run<'_>) -> Vec<u32> {
        let mut got = vec![0u32; self.lines.len()];
        let mut left: AHashMap<SkuIdx, i64> = AHashMap::new();
        let mut first: Vec<(usize, (SkuIdx, u32))> = Vec::new();
        for &k in again {
            let (sku, qty) = self.lines[k];
            let l = left
                .entry(sku)
                .or_insert_with(|| self.offer(sku).iter().map(|o| self.free(sku, o)).sum());
            let q = i64::from(qty).min(*l);
            if q > 0 {
                *l -= q;
                first.push((k, (sku, u32::try_from(q).unwrap_or(qty))));
            }
        }
        if first.is_empty() {
            return got;
        }
        let asked: Vec<(SkuIdx, u32)> = first.iter().map(|f| f.1).collect();
        let Some(p) = run(&asked, &|sku| self.stock(sku, false)) else {
            return got;
        };
        for sh in &p.shipments {
            for &(i, q) in &sh.lines {
                got[first[i].0] += q;
                self.take(first[i].0, sh, q, 0);
            }
        }
        got
    }

    /// Plans the rest of lines `rest` (what on hand did not give, `got`)
    /// against what each location may sell ahead of its supply: the
    /// lines not served whole.
    fn take_supply(&mut self, rest: &[usize], got: &[u32], run: &Run<'_>) -> Vec<usize> {
        if rest.is_empty() {
            return Vec::new();
        }
        let asked: Vec<(SkuIdx, u32)> = rest
            .iter()
            .map(|&k| (self.lines[k].0, self.lines[k].1 - got[k]))
            .collect();
        let mut served = got.to_vec();
        if let Some(p) = run(&asked, &|sku| self.stock(sku, true)) {
            for sh in &p.shipments {
                for &(i, q) in &sh.lines {
                    let k = rest[i];
                    let sku = self.lines[k].0;
                    let o = self
                        .offer(sku)
                        .iter()
                        .find(|o| o.stock.location == sh.location);
                    // On hand first, as the hold takes it.
                    let on_hand = o.map_or(0, |o| self.free(sku, o)).min(i64::from(q));
                    served[k] += q;
                    self.take(k, sh, q, q - u32::try_from(on_hand).unwrap_or(q));
                }
            }
        }
        rest.iter()
            .copied()
            .filter(|&k| served[k] < self.lines[k].1)
            .collect()
    }

    /// The lines of `again` (not `unsourced` already) of SKUs whose parts
    /// would sell more ahead than the SKU's limit leaves, network-wide
    /// (each location's offer is within it, their sum may not be).
    fn past_the_limit(&self, again: &[usize], unsourced: &[usize]) -> Vec<usize> {
        let mut ahead: AHashMap<SkuIdx, i64> = AHashMap::new();
        for p in self.parts.iter().filter(|p| !unsourced.contains(&p.0)) {
            *ahead.entry(self.lines[p.0].0).or_default() += i64::from(p.3);
        }
        let over: Vec<SkuIdx> = ahead
            .into_iter()
            .filter(|&(sku, units)| units > self.offer(sku).first().map_or(0, |o| o.room))
            .map(|(sku, _)| sku)
            .collect();
        again
            .iter()
            .copied()
            .filter(|&k| over.contains(&self.lines[k].0) && !unsourced.contains(&k))
            .collect()
    }

    /// The parts as shipments, one per location in location order, a
    /// line's parts there summed.
    fn shipments(&self) -> Vec<Shipment> {
        let mut out: Vec<Shipment> = Vec::new();
        for &(k, l, q, b) in &self.parts {
            let i = match out.iter().position(|sh| sh.location == l) {
                Some(i) => i,
                None => {
                    let (distance_km, transfer) =
                        self.places.get(&l).copied().unwrap_or((0.0, false));
                    out.push(Shipment {
                        location: l,
                        lines: Vec::new(),
                        distance_km,
                        transfer,
                        backordered: Vec::new(),
                        eta: None,
                    });
                    out.len() - 1
                }
            };
            let sh = &mut out[i];
            match sh.lines.iter().position(|x| x.0 == k) {
                Some(j) => {
                    sh.lines[j].1 += q;
                    sh.backordered[j] += b;
                }
                None => {
                    sh.lines.push((k, q));
                    sh.backordered.push(b);
                }
            }
        }
        out.sort_by_key(|sh| sh.location);
        out
    }
}
