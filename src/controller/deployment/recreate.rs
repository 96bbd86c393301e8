//! The Recreate strategy (upstream's `recreate.go`): scale every old set to zero, wait until
//! none of their pods runs, then bring up the new set at full size.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;

use super::Error;
use super::sync::Rollout;
use super::util::{self, replicas, rs_replicas};
use crate::controller::pods::is_finished;

impl Rollout<'_> {
    /// One step of a Recreate rollout; `pods` are the deployment's pods by owning set uid.
    pub(super) async fn recreate(&mut self, pods: &[(String, Arc<Pod>)]) -> Result<Option<Duration>, Error> {
        let (mut new, mut old) = self.new_and_old(false).await?;
        let mut scaled = false;
        for rs in old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
            scaled |= self.scale_to(rs, 0).await?;
        }
        if scaled || old_pods_running(new.as_ref(), &old, pods) {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        if new.is_none() {
            (new, old) = self.new_and_old(true).await?;
        }
        if let Some(rs) = new.as_mut() {
            self.scale_to(rs, replicas(&self.d)).await?;
        }
        if util::complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new.as_ref(), &old).await
    }
}

/// Whether an old set still reports pods, or any pod not of the new set has not finished.
fn old_pods_running(new: Option<&ReplicaSet>, old: &[ReplicaSet], pods: &[(String, Arc<Pod>)]) -> bool {
    if util::status_sum(old, |s| Some(s.replicas)) > 0 {
        return true;
    }
    let new_uid = new.and_then(|rs| rs.metadata.uid.as_deref());
    pods.iter()
        .any(|(owner, pod)| Some(owner.as_str()) != new_uid && !is_finished(pod))
}
