//! The RollingUpdate strategy (upstream's `rolling.go`): grow the new set as far as `maxSurge`
//! allows, shrink old sets as far as `maxUnavailable` allows, unhealthy pods first.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;

use super::Error;
use super::sync::Rollout;
use super::util::{self, replicas, rs_replicas};

impl Rollout<'_> {
    /// One step of a rolling update.
    pub(super) async fn rolling(&mut self) -> Result<Option<Duration>, Error> {
        let (mut new, mut old) = self.new_and_old(true).await?;
        if let Some(rs) = new.as_mut() {
            if self.reconcile_new(rs, &old).await? {
                return self.sync_rollout_status(new.as_ref(), &old).await;
            }
            if self.reconcile_old(&mut old, rs).await? {
                return self.sync_rollout_status(new.as_ref(), &old).await;
            }
        }
        if util::complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&old).await?;
        }
        self.sync_rollout_status(new.as_ref(), &old).await
    }

    /// Grows the new set within the surge (or shrinks it to `spec.replicas`); whether it changed.
    async fn reconcile_new(&self, new: &mut ReplicaSet, old: &[ReplicaSet]) -> Result<bool, Error> {
        let want = replicas(&self.d);
        let size = if rs_replicas(new) > want {
            want
        } else {
            self.new_rs_replicas(old.iter(), Some(new))
        };
        self.scale_to(new, size).await
    }

    /// Shrinks old sets as far as availability allows; whether any changed.
    async fn reconcile_old(&self, old: &mut [ReplicaSet], new: &ReplicaSet) -> Result<bool, Error> {
        if util::spec_replicas(old.iter()) == 0 {
            return Ok(false);
        }
        let all = util::spec_replicas(old.iter()) + rs_replicas(new);
        let new_unavailable = rs_replicas(new) - util::available(new);
        // Pods that are not available anyway may go first, as long as the new set's missing
        // pods are counted as missing too.
        let max_scaled_down = all - util::min_available(&self.d) - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        old.sort_by(util::by_creation);
        let cleaned = self.shrink_unhealthy(old, max_scaled_down).await?;
        let scaled = self.shrink_available(old, new).await?;
        Ok(cleaned + scaled > 0)
    }

    /// Takes up to `budget` unavailable pods off the old sets, oldest set first.
    async fn shrink_unhealthy(&self, old: &mut [ReplicaSet], budget: i32) -> Result<i32, Error> {
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= budget {
                break;
            }
            let unavailable = rs_replicas(rs) - util::available(rs);
            if rs_replicas(rs) == 0 || unavailable == 0 {
                continue;
            }
            let down = (budget - total).min(unavailable);
            self.scale_to(rs, rs_replicas(rs) - down).await?;
            total += down;
        }
        Ok(total)
    }

    /// Takes available pods off the old sets, oldest first, down to `minAvailable` overall.
    async fn shrink_available(&self, old: &mut [ReplicaSet], new: &ReplicaSet) -> Result<i32, Error> {
        let available = old.iter().map(util::available).sum::<i32>() + util::available(new);
        let budget = available - util::min_available(&self.d);
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= budget {
                break;
            }
            if rs_replicas(rs) == 0 {
                continue;
            }
            let down = rs_replicas(rs).min(budget - total);
            self.scale_to(rs, rs_replicas(rs) - down).await?;
            total += down;
        }
        Ok(total)
    }
}
