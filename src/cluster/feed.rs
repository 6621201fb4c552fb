//! The stock feed on a cluster node (api.md, Stock feed): a session is
//! fed from this node's copy of every shard its scope spans (a SKU's
//! one, a location's all of them): the engine of a shard it owns, the
//! followed copy of the others. Followers serve feed subscriptions, so
//! store apps spread over the nodes; none of them is forwarded.
//!
//! When what feeds a shard here changes (the node takes it or gives it
//! up, or its copy is rebuilt), the sessions of that shard follow again
//! from a fresh snapshot (`Feeds::moves`), as a reader that fell behind
//! does. A shard with nothing to feed it here (its copy being rebuilt)
//! refuses new sessions with 503 and closes the ones following again
//! with 1011: the client connects again.

use futures::future::BoxFuture;
use std::sync::Arc;

use super::node::{ClusterNode, ShardFeed};
use crate::actors::EngineError;
use crate::feed::{Sink, SnapshotText};
use crate::http::error::{ApiError, Code};
use crate::http::feed::{Feeds, Following, Part, Wanted};

pub struct ClusterFeeds(pub Arc<ClusterNode>);

impl ClusterFeeds {
    /// The shards `want` spans.
    fn shards(&self, want: &Wanted) -> Vec<u32> {
        let c = &self.0.config;
        match want {
            Wanted::Sku(s) => vec![c.shard_of(s)],
            Wanted::Location(_) => (0..c.shards).collect(),
        }
    }
}

fn unavailable(shard: u32) -> ApiError {
    ApiError::new(
        Code::Unavailable,
        format!("shard {shard} is being copied again on this node: retry shortly"),
    )
}

impl Feeds for ClusterFeeds {
    /// Every shard holds the whole catalog: the first one's names it.
    fn check(&self, want: &Wanted) -> Result<(), ApiError> {
        let shard = self.shards(want)[0];
        let named = match self.0.feed_of(shard).ok_or_else(|| unavailable(shard))? {
            ShardFeed::Owned(state) => want.scope(&state.engine.catalog()).is_some(),
            ShardFeed::Copy(copy) => copy.names(want),
        };
        if named {
            Ok(())
        } else {
            Err(want.missing())
        }
    }

    fn follow<'a>(
        &'a self,
        want: &'a Wanted,
        sink: &'a (dyn Fn(usize) -> Box<dyn Sink> + Send + Sync),
    ) -> BoxFuture<'a, Result<Following, EngineError>> {
        Box::pin(async move {
            let shards = self.shards(want);
            let mut parts = Vec::with_capacity(shards.len());
            let mut text = SnapshotText::default();
            for (i, s) in shards.into_iter().enumerate() {
                let part = match self.0.feed_of(s).ok_or(EngineError::Stopped)? {
                    ShardFeed::Owned(state) => {
                        let e = &state.engine;
                        let scope = want.scope(&e.catalog()).ok_or(EngineError::Stopped)?;
                        let (sub, view) = e.feed_subscribe(scope, sink(i)).await?;
                        text.add(&e.catalog(), &view.records);
                        Part {
                            sub,
                            seen: view.seen,
                        }
                    }
                    ShardFeed::Copy(copy) => copy
                        .follow(want, sink(i), &mut text)
                        .ok_or(EngineError::Stopped)?,
                };
                parts.push(part);
            }
            Ok(Following {
                parts,
                text: text.finish(),
            })
        })
    }

    fn moves(&self, want: &Wanted) -> u64 {
        self.shards(want)
            .into_iter()
            .map(|s| self.0.feed_moves(s))
            .sum()
    }
}
