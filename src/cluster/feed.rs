//! The stock feed on a cluster node (api.md, Stock feed): a session is
//! fed from this node's copy: the leader's engine, or a follower's copy.
//! Followers serve feed subscriptions, so store apps spread over the
//! nodes; none of them is forwarded.
//!
//! When what feeds the copy here changes (the node takes the lead or
//! gives it up, or its copy is rebuilt), the sessions follow again from a
//! fresh snapshot (`Feeds::moves`), as a reader that fell behind does.
//! While nothing feeds it here (its copy being rebuilt) new sessions are
//! refused with 503 and the ones following again are closed with 1011:
//! the client connects again.

use futures::future::BoxFuture;
use std::sync::Arc;

use super::node::{ClusterNode, ShardFeed};
use crate::actors::EngineError;
use crate::feed::{Sink, SnapshotText};
use crate::http::error::{ApiError, Code};
use crate::http::feed::{Feeds, Following, Part, Wanted};

pub struct ClusterFeeds(pub Arc<ClusterNode>);

impl ClusterFeeds {
    /// The partitions `want` spans: the network's one.
    fn shards(&self, _want: &Wanted) -> Vec<u32> {
        vec![super::PARTITION]
    }
}

fn unavailable(shard: u32) -> ApiError {
    ApiError::new(
        Code::Unavailable,
        format!("partition {shard} is being copied again on this node: retry shortly"),
    )
}

impl Feeds for ClusterFeeds {
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
