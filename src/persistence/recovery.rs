//! Recovery: replay the journal into a `Model` through the same apply code
//! the live engine's decisions are held to, then check the invariants.

use std::path::Path;
use std::time::Instant;

use super::journal::{decode_event, recover, JournalError, RecoveryReport};
// `apply_record` lives beside the archive it reads (the snapshotter
// replays through it too); named here as before.
pub use super::snapshot::apply_record;
use super::snapshot::SnapshotStore;
use super::storage::Storage;
use crate::domain::model::Model;

/// Log a progress line every this many records.
const PROGRESS_RECORDS: u64 = 1_000_000;

/// Replays the journal after the snapshot (if any) into its model;
/// `archive` holds the orders that snapshots passivated.
pub fn recover_model(
    storage: &dyn Storage,
    dir: &Path,
    snapshot: Option<(u64, Model)>,
    archive: Option<&SnapshotStore>,
) -> Result<(Model, RecoveryReport), JournalError> {
    let started = Instant::now();
    let (after_seq, mut model) = snapshot.unwrap_or_default();
    if after_seq > 0 {
        tracing::info!(seq = after_seq, "loaded snapshot");
    }
    let report = recover(storage, dir, after_seq, |seq, body| {
        let e = decode_event(body)?;
        apply_record(&mut model, &e, archive.map(|a| (a, after_seq)), None)
            .map_err(|err| JournalError::Corrupt(format!("record {seq}: {err}")))?;
        if seq % PROGRESS_RECORDS == 0 {
            tracing::info!(
                records = seq,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "recovering"
            );
        }
        Ok(())
    })?;
    model
        .check_invariants()
        .map_err(|e| JournalError::Corrupt(format!("invariant broken after replay: {e}")))?;
    model.stock.shrink_to_fit();
    model.moves.shrink_to_fit();
    tracing::info!(
        records = report.records,
        segments = report.segments,
        last_seq = report.last_seq,
        truncated_bytes = report.truncated_bytes,
        stock_records = model.stock.len(),
        reservations = model.reservations.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    Ok((model, report))
}
