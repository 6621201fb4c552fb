use super::*;

impl Engine {
    /// Journals a catalog change, applies it, and waits for durability. The
    /// write lock orders the record and the change alike.
    pub(super) async fn write_catalog(
        &self,
        event: Event,
        apply: impl FnOnce(&mut Catalog),
    ) -> Result<(), EngineError> {
        let durable = {
            let mut c = self.0.catalog.write();
            let d = self.0.journal.append(&event)?;
            apply(&mut c);
            d
        };
        durable.await?;
        Ok(())
    }

    pub async fn put_sku(&self, id: SkuId, sku: Sku) -> Result<(), EngineError> {
        let event = Event::SkuPut {
            sku: id.clone(),
            value: sku.clone(),
        };
        self.write_catalog(event, |c| {
            c.put_sku(id, sku);
        })
        .await
    }

    /// A bulk catalog import: one journal record for every SKU of it, so
    /// that it is applied whole or not at all.
    pub async fn put_skus(&self, skus: Vec<(SkuId, Sku)>) -> Result<(), EngineError> {
        let event = Event::SkusPut { skus: skus.clone() };
        self.write_catalog(event, |c| {
            for (id, sku) in skus {
                c.put_sku(id, sku);
            }
        })
        .await
    }

    pub async fn put_location(&self, id: LocationId, loc: Location) -> Result<(), EngineError> {
        let event = Event::LocationPut {
            location: id.clone(),
            value: loc.clone(),
        };
        let (version, locations) = (&self.0.locations_version, &self.0.locations);
        self.write_catalog(event, |c| {
            // A new capacity may make the location full, or not any more:
            // its actor reads it once this write is applied. (A location
            // without an actor has taken no order today.)
            if let Some(actor) = locations.existing(&id) {
                actor.do_send(location::Recheck);
            }
            c.put_location(id, loc);
            version.fetch_add(1, Ordering::Release);
        })
        .await
    }
}
