//! A set's `status` from the pods it owns (upstream's `replica_set_utils.go`): how many exist,
//! carry every template label, are ready, and have been ready for `minReadySeconds`; and the
//! ReplicaFailure condition while creating or deleting pods fails.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Replicated;
use crate::api::selector::LabelSelector;
use crate::controller::pods::{available_in, is_available, is_ready, ready_since};

const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The status `set` should report, given the active pods it owns, how many of its pods are
/// terminating, and the failure (reason, message) of this sync's creations or deletions.
pub(super) fn calculate<K: Replicated>(
    set: &K,
    pods: &[Arc<Pod>],
    terminating: usize,
    failure: Option<(&'static str, String)>,
    now: jiff::Timestamp,
) -> ReplicaSetStatus {
    let template_labels = set
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .map(LabelSelector::from)
        .unwrap_or_default();
    let fully_labeled = pods
        .iter()
        .filter(|p| template_labels.matches(p.metadata.labels.as_ref()))
        .count();
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    let min_ready = set.min_ready_seconds();
    let available = pods.iter().filter(|p| is_available(p, min_ready, now)).count();
    let mut status = ReplicaSetStatus {
        replicas: count(pods.len()),
        fully_labeled_replicas: omit_zero(fully_labeled),
        ready_replicas: omit_zero(ready),
        available_replicas: omit_zero(available),
        terminating_replicas: Some(count(terminating)),
        observed_generation: set.meta().generation,
        conditions: set.status().conditions,
    };
    set_failure(&mut status, failure, now);
    status
}

/// Adds the ReplicaFailure condition for `failure` unless one is there, or removes it when
/// there is no failure; `true` when it was added.
pub(super) fn set_failure(
    status: &mut ReplicaSetStatus,
    failure: Option<(&'static str, String)>,
    now: jiff::Timestamp,
) -> bool {
    let conditions = status.conditions.get_or_insert_default();
    let present = conditions.iter().any(|c| c.type_.as_deref() == Some(REPLICA_FAILURE));
    let added = match failure {
        Some((reason, message)) if !present => {
            conditions.push(ReplicaSetCondition {
                type_: Some(REPLICA_FAILURE.into()),
                status: Some("True".into()),
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: Some(Time(now)),
            });
            true
        }
        Some(_) => false,
        None => {
            conditions.retain(|c| c.type_.as_deref() != Some(REPLICA_FAILURE));
            false
        }
    };
    if conditions.is_empty() {
        status.conditions = None;
    }
    added
}

/// When to look again because a ready pod becomes available with no event to say so: a second
/// after the first one does, as upstream.
pub(super) fn recheck_after(pods: &[Arc<Pod>], min_ready_seconds: i32, now: jiff::Timestamp) -> Option<Duration> {
    pods.iter()
        .filter_map(|p| available_in(ready_since(p)?, min_ready_seconds, now))
        .min()
        .map(|wait| wait + Duration::from_secs(1))
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Upstream leaves zero counts out of the status (`omitempty`).
fn omit_zero(n: usize) -> Option<i32> {
    Some(count(n)).filter(|n| *n != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use serde_json::json;

    fn pod(labels: serde_json::Value, ready_secs_ago: Option<i64>) -> Arc<Pod> {
        let mut status = json!({"phase": "Running"});
        if let Some(ago) = ready_secs_ago {
            let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(ago);
            status["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": since.to_string()}]);
        }
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p", "labels": labels}, "status": status})).unwrap(),
        )
    }

    #[test]
    fn status_counts_labeled_ready_and_available_pods() {
        let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "rs", "generation": 3},
            "spec": {"replicas": 3, "minReadySeconds": 10, "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a", "tier": "t"}}, "spec": {"containers": []}}}}))
        .unwrap();
        let pods = [
            pod(json!({"app": "a", "tier": "t"}), Some(60)),
            pod(json!({"app": "a", "tier": "t"}), Some(2)),
            pod(json!({"app": "a"}), None),
        ];
        let now = jiff::Timestamp::now();
        let status = calculate(&rs, &pods, 1, None, now);
        assert_eq!(status.replicas, 3);
        assert_eq!(status.fully_labeled_replicas, Some(2));
        assert_eq!(status.ready_replicas, Some(2));
        assert_eq!(status.available_replicas, Some(1));
        assert_eq!(status.terminating_replicas, Some(1));
        assert_eq!(status.observed_generation, Some(3));
        let wait = recheck_after(&pods, 10, now).unwrap();
        assert!(
            wait > Duration::from_secs(8) && wait <= Duration::from_secs(9),
            "{wait:?}"
        );
    }

    #[test]
    fn replica_failure_is_added_once_and_removed_when_syncs_succeed() {
        let now = jiff::Timestamp::now();
        let mut status = ReplicaSetStatus::default();
        assert!(set_failure(&mut status, Some(("FailedCreate", "quota".into())), now));
        assert!(!set_failure(&mut status, Some(("FailedCreate", "quota".into())), now));
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
        assert!(!set_failure(&mut status, None, now));
        assert_eq!(status.conditions, None);
    }
}
