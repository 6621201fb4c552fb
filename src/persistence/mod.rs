//! Durability: the journal (append, group commit, recovery), over a small
//! file-system trait so that crash tests can cut the power.
//!
//! - `storage`: the `Storage` trait, the real file system, and `SimStorage`,
//!   which loses every byte not yet fdatasync'd when the power is cut.
//! - `journal`: record framing, the writer thread (group commit), the reader
//!   and recovery (torn tail cut, corrupt middle refused).
//! - `snapshot`: snapshots in sled, the archive of passivated orders,
//!   replaying one record through it (`apply_record`), the snapshotter.
//! - `events`: the published events' store, beside the snapshots.
//! - `recovery`: the journal after the snapshot replayed into a `Model`.

pub mod events;
pub mod history;
pub mod journal;
pub mod recovery;
pub mod snapshot;
pub mod storage;

pub use journal::{Durability, Durable, Journal, JournalError, JournalStats, RecoveryReport};
pub use storage::{RealStorage, SimStorage, Storage};
