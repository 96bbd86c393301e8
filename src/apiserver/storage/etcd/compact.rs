//! Compaction of old revisions every `--etcd-compaction-interval`, as upstream's
//! `pkg/storage/etcd3/compact.go` does it.
//!
//! Each interval, the compactor records the current revision in the key `compact_rev_key` and
//! compacts up to the revision recorded one interval earlier, so a revision stays watchable for
//! at least one interval. The record is written in a transaction on the key's version: when
//! several apiservers share one etcd, only the one whose view of that version is current wins an
//! interval, and the others learn the version and compact nothing.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, KvClient, Txn, TxnOp, TxnOpResponse};
use tokio_util::sync::CancellationToken;

use super::call;
use crate::apiserver::storage::Error;

/// The key upstream's apiservers coordinate compaction through (outside any `--etcd-prefix`).
const COMPACT_REV_KEY: &str = "compact_rev_key";

/// Compacts every `interval` until `shutdown`.
pub(super) async fn run(kv: KvClient, interval: Duration, shutdown: CancellationToken) {
    // The version of COMPACT_REV_KEY this apiserver last saw, and the revision it recorded then.
    let (mut version, mut recorded) = (0, 0);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.cancelled() => return,
        }
        match compact(kv.clone(), version, recorded).await {
            Ok((v, r)) => (version, recorded) = (v, r),
            Err(err) => tracing::warn!(error = %crate::error_chain(&err), "compacting etcd failed"),
        }
    }
}

/// One interval: records the current revision if `version` is still current, then compacts to
/// `recorded`. Returns the key's version and the revision to compact to next time.
async fn compact(mut kv: KvClient, version: i64, recorded: i64) -> Result<(i64, i64), Error> {
    let txn = Txn::new()
        .when(vec![Compare::version(COMPACT_REV_KEY, CompareOp::Equal, version)])
        // The put's side effect is what matters: it bumps the key's version.
        .and_then(vec![TxnOp::put(COMPACT_REV_KEY, recorded.to_string(), None)])
        .or_else(vec![TxnOp::get(COMPACT_REV_KEY, None)]);
    let resp = call(kv.txn(txn)).await?;
    let current = resp.header().map_or(0, |h| h.revision());
    if !resp.succeeded() {
        // Another apiserver compacted this interval; follow its version from now on.
        let theirs = resp.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.version()),
            _ => None,
        });
        return Ok((theirs.unwrap_or(version), current));
    }
    if recorded > 0 {
        match call(kv.compact(recorded, None)).await {
            // Someone compacted further already (etcd's own auto-compaction, say).
            Ok(_) | Err(Error::Expired { .. }) => {
                tracing::info!(revision = recorded, "compacted etcd");
            }
            Err(err) => return Err(err),
        }
    }
    Ok((version + 1, current))
}
