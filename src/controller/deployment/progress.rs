//! The Progressing condition and the progress deadline (upstream's `progress.go`): a rollout
//! that makes no progress for `progressDeadlineSeconds` is marked ProgressDeadlineExceeded; one
//! whose new set is fully available is marked NewReplicaSetAvailable.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus, ReplicaSet};

use super::Error;
use super::sync::Rollout;
use super::util::{self, PROGRESSING};

/// The Progressing reason of a rollout past its deadline.
pub(super) const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";

impl Rollout<'_> {
    /// Writes the status after a rollout step, with the Progressing and ReplicaFailure
    /// conditions; when nothing changed, says when the deadline must be checked again.
    pub(super) async fn sync_rollout_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<Option<Duration>, Error> {
        let mut status = self.calculate_status(new, old);
        let deadline = util::progress_deadline(&self.d);
        if deadline.is_none() {
            util::remove_condition(&mut status, PROGRESSING);
        }
        let current = util::condition(&status, PROGRESSING).cloned();
        let done = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
        if deadline.is_some() && !done {
            let subject = match new {
                Some(rs) => format!("ReplicaSet {:?}", rs.metadata.name.as_deref().unwrap_or_default()),
                None => format!("Deployment {:?}", self.d.metadata.name.as_deref().unwrap_or_default()),
            };
            if util::complete(&self.d, &status) {
                let message = format!("{subject} has successfully progressed.");
                util::set_condition(
                    &mut status,
                    util::new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message),
                );
            } else if self.progressed(&status) {
                // Progress refreshes lastUpdateTime even with an unchanged reason: the deadline
                // counts from the last progress.
                let message = format!("{subject} is progressing.");
                let mut condition = util::new_condition(PROGRESSING, "True", "ReplicaSetUpdated", message);
                if let Some(current) = current.filter(|c| c.status.as_deref() == Some("True")) {
                    condition.last_transition_time = current.last_transition_time;
                }
                util::remove_condition(&mut status, PROGRESSING);
                status.conditions.get_or_insert_default().push(condition);
            } else if self.timed_out(&status) {
                let message = format!("{subject} has timed out progressing.");
                util::set_condition(
                    &mut status,
                    util::new_condition(PROGRESSING, "False", TIMED_OUT, message),
                );
            }
        }
        match replica_failure(new, old) {
            Some(failure) => util::set_condition(&mut status, failure),
            None => util::remove_condition(&mut status, util::REPLICA_FAILURE),
        }
        if self.d.status.as_ref() == Some(&status) {
            return Ok(self.deadline_check(&status));
        }
        self.write_status(status).await?;
        Ok(None)
    }

    /// Whether `status` shows progress over the deployment's last status.
    fn progressed(&self, status: &DeploymentStatus) -> bool {
        let old = self.d.status.clone().unwrap_or_default();
        let n = |v: Option<i32>| v.unwrap_or(0);
        let stale = |s: &DeploymentStatus| n(s.replicas) - n(s.updated_replicas);
        n(status.updated_replicas) > n(old.updated_replicas)
            || stale(status) < stale(&old)
            || n(status.ready_replicas) > n(old.ready_replicas)
            || n(status.available_replicas) > n(old.available_replicas)
    }

    /// Whether the last progress is older than the deadline.
    fn timed_out(&self, status: &DeploymentStatus) -> bool {
        let Some(condition) = util::condition(status, PROGRESSING) else {
            return false;
        };
        match condition.reason.as_deref() {
            Some(NEW_RS_AVAILABLE) => false,
            Some(TIMED_OUT) => true,
            _ => self.until_deadline(condition).is_some_and(|left| left.is_zero()),
        }
    }

    /// How long until the deadline passes from `condition`'s last update (zero once it has).
    fn until_deadline(&self, condition: &DeploymentCondition) -> Option<Duration> {
        let seconds = util::progress_deadline(&self.d)?;
        let since = condition.last_update_time.as_ref()?.0;
        let at = since
            .checked_add(jiff::SignedDuration::from_secs(seconds.into()))
            .ok()?;
        Some(Duration::try_from(jiff::Timestamp::now().duration_until(at)).unwrap_or(Duration::ZERO))
    }

    /// When to look again at a rollout that has not finished, to notice its deadline passing
    /// with no event to say so (upstream's `requeueStuckDeployment`).
    fn deadline_check(&self, status: &DeploymentStatus) -> Option<Duration> {
        let condition = util::condition(status, PROGRESSING)?;
        if util::complete(&self.d, status) || condition.reason.as_deref() == Some(TIMED_OUT) {
            return None;
        }
        self.until_deadline(condition).map(|left| left + Duration::from_secs(1))
    }
}

/// The first ReplicaFailure condition of the sets, new set first, as a deployment condition.
fn replica_failure(new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Option<DeploymentCondition> {
    new.into_iter()
        .chain(old)
        .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
        .find(|c| c.type_.as_deref() == Some(util::REPLICA_FAILURE))
        .map(|c| DeploymentCondition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.clone(),
            last_update_time: c.last_transition_time.clone(),
        })
}
