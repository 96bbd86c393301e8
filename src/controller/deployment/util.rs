//! The arithmetic and bookkeeping of rollouts, after upstream's
//! `pkg/controller/deployment/util`: surge and unavailability budgets with upstream's rounding,
//! the pod-template hash, revisions and the annotations kubectl reads, conditions, and the
//! orders replica sets are walked in.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

/// The label that tells a deployment's replica sets (and their pods) apart.
pub(super) const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// A replica set's place in its deployment's rollout sequence; the deployment carries the newest.
pub(super) const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a replica set served, when a rollback brought it back.
pub(super) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The deployment's `spec.replicas` when the replica set was last sized.
pub(super) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The deployment's `spec.replicas` plus its surge, when the replica set was last sized.
pub(super) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Upstream keeps the revision history annotation under this many characters.
const REVISION_HISTORY_MAX_CHARS: usize = 2000;
/// Annotations of a deployment that are not copied to its replica sets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

pub(super) const PROGRESSING: &str = "Progressing";
pub(super) const AVAILABLE: &str = "Available";
pub(super) const REPLICA_FAILURE: &str = "ReplicaFailure";

/// `spec.replicas`, defaulted.
pub(super) fn replicas(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1)
}

/// Whether the strategy is RollingUpdate (the default).
pub(super) fn is_rolling(d: &Deployment) -> bool {
    d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) != Some("Recreate")
}

/// `value` of `total`: itself when an integer, `N%` of `total` rounded up or down otherwise
/// (upstream's `GetScaledValueFromIntOrPercent`).
pub(super) fn scaled(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: {s:?} is not a percentage"))?;
            let product = percent * i64::from(total);
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            Ok(i32::try_from(value).unwrap_or(i32::MAX))
        }
    }
}

/// The surge and unavailability budgets of a rolling update (upstream's `ResolveFenceposts`):
/// surge rounds up, unavailability rounds down, and both zero would deadlock, so
/// unavailability becomes one.
pub(super) fn fenceposts(d: &Deployment) -> Result<(i32, i32), String> {
    let rolling = d.spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
    let default = IntOrString::String("25%".into());
    let surge = rolling.and_then(|r| r.max_surge.as_ref()).unwrap_or(&default);
    let unavailable = rolling.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&default);
    let desired = replicas(d);
    let surge = scaled(surge, desired, true)?;
    let unavailable = scaled(unavailable, desired, false)?;
    Ok(if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    })
}

/// How many pods above `spec.replicas` a rollout may run.
pub(super) fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).map_or(0, |(surge, _)| surge)
}

/// How many of `spec.replicas` may be unavailable during a rollout.
pub(super) fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).map_or(0, |(_, unavailable)| unavailable.min(replicas(d)))
}

/// The fewest available pods a rollout keeps.
pub(super) fn min_available(d: &Deployment) -> i32 {
    replicas(d) - max_unavailable(d)
}

/// The hash naming a template's replica set: FNV-1a (32 bits) of the template and the collision
/// count, spelled in upstream's consonants-and-digits alphabet (`rand.SafeEncodeString`).
pub(super) fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut hash: u32 = 0x811c_9dc5;
    let mut write = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u32::from(*b);
            hash = hash.wrapping_mul(0x0100_0193);
        }
    };
    write(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        write(count.to_string().as_bytes());
    }
    hash.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// Whether two templates are the same but for the hash label (upstream's `EqualIgnoreHash`).
pub(super) fn same_template(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let normal = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH);
        }
        prune(serde_json::to_value(t).unwrap_or_default())
    };
    normal(a) == normal(b)
}

/// Drops empty maps and lists, which mean the same as absent ones.
fn prune(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !matches!(v, Value::Null) && v != &Value::Object(Default::default()))
                .filter(|(_, v)| v.as_array().is_none_or(|a| !a.is_empty()))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(prune).collect()),
        other => other,
    }
}

/// A replica set's revision; 0 without one, `None` when it does not parse.
pub(super) fn revision(rs: &ReplicaSet) -> Option<i64> {
    match annotation(rs, REVISION) {
        None => Some(0),
        Some(v) => v.parse().ok(),
    }
}

/// The newest revision among `sets`.
pub(super) fn max_revision(sets: &[ReplicaSet]) -> i64 {
    sets.iter().filter_map(revision).max().unwrap_or(0)
}

fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// An integer annotation of a replica set, if it has one that parses.
pub(super) fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse().ok()
}

/// Brings the new replica set's annotations up to date (upstream's
/// `SetNewReplicaSetAnnotations`): the deployment's own annotations, the revision `new_revision`
/// if that is newer (keeping the one it replaces in the history), and for a set about to be
/// created the replica annotations. Returns whether anything changed.
pub(super) fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_default();
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if !NOT_COPIED.contains(&k.as_str()) && annotations.get(k) != Some(v) {
            annotations.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    let old = annotations.get(REVISION).cloned();
    let old_revision = match old.as_deref().map(str::parse::<i64>) {
        None => 0,
        Some(Ok(n)) => n,
        // Someone wrote nonsense; leave the revision to them, as upstream does.
        Some(Err(_)) => return changed,
    };
    if old_revision < new_revision {
        annotations.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            push_history(annotations, &old);
        }
    }
    if !exists {
        changed |= set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d));
    }
    changed
}

/// Appends `old` to the revision history, dropping the oldest entries beyond the length limit.
fn push_history(annotations: &mut BTreeMap<String, String>, old: &str) {
    let mut history: Vec<&str> = annotations
        .get(REVISION_HISTORY)
        .map(|h| h.split(',').filter(|r| !r.is_empty()).collect())
        .unwrap_or_default();
    history.push(old);
    while history.len() > 1 && history.join(",").len() > REVISION_HISTORY_MAX_CHARS {
        history.remove(0);
    }
    let joined = history.join(",");
    annotations.insert(REVISION_HISTORY.into(), joined);
}

/// Records `desired` and `max` on the replica set; whether they changed.
pub(super) fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_default();
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.into(), value);
            changed = true;
        }
    }
    changed
}

/// The sum of `spec.replicas`.
pub(super) fn spec_replicas<'a>(sets: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    sets.into_iter().map(rs_replicas).sum()
}

/// A replica set's `spec.replicas`.
pub(super) fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

/// The sum of one status count over `sets`.
pub(super) fn status_sum<'a>(
    sets: impl IntoIterator<Item = &'a ReplicaSet>,
    field: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> Option<i32>,
) -> i32 {
    sets.into_iter()
        .filter_map(|rs| rs.status.as_ref().and_then(&field))
        .sum()
}

/// A replica set's available pods, never more than it is sized for: a set just scaled down still
/// reports the pods it is about to delete, and counting them would let a rollout take away
/// more than `maxUnavailable` allows.
pub(super) fn available(rs: &ReplicaSet) -> i32 {
    let reported = rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0);
    reported.min(rs_replicas(rs))
}

/// Oldest first; ties by name (upstream's `ReplicaSetsByCreationTimestamp`).
pub(super) fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Lowest revision first; ties oldest first (upstream's `ReplicaSetsByRevision`).
pub(super) fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .unwrap_or(0)
        .cmp(&revision(b).unwrap_or(0))
        .then_with(|| by_creation(a, b))
}

/// Whether the deployment has finished rolling out, as seen in `status`.
pub(super) fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    status.updated_replicas.unwrap_or(0) == want
        && status.replicas.unwrap_or(0) == want
        && status.available_replicas.unwrap_or(0) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Whether `spec.progressDeadlineSeconds` applies.
pub(super) fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec.progress_deadline_seconds.filter(|s| *s != i32::MAX)
}

pub(super) fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_.as_deref() == Some(type_))
}

pub(super) fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_.as_deref() != Some(type_));
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// A condition as of now.
pub(super) fn new_condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    let now = Some(Time(jiff::Timestamp::now()));
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: now.clone(),
        last_transition_time: now,
    }
}

/// Sets `condition` unless one of its type with the same status and reason is there; keeps the
/// transition time when only the reason changes (upstream's `SetDeploymentCondition`).
pub(super) fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = condition_of(status, &condition) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    let type_ = condition.type_.clone().unwrap_or_default();
    remove_condition(status, &type_);
    status.conditions.get_or_insert_default().push(condition);
}

fn condition_of<'a>(status: &'a DeploymentStatus, like: &DeploymentCondition) -> Option<&'a DeploymentCondition> {
    condition(status, like.type_.as_deref().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i32, surge: Value, unavailable: Value) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": "a"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}}}))
        .unwrap()
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailability_down() {
        assert_eq!(fenceposts(&deployment(10, json!("25%"), json!("25%"))), Ok((3, 2)));
        assert_eq!(fenceposts(&deployment(5, json!(2), json!(0))), Ok((2, 0)));
        // Both zero would never make progress: one pod may be unavailable.
        assert_eq!(fenceposts(&deployment(1, json!("10%"), json!("10%"))), Ok((1, 0)));
        assert_eq!(fenceposts(&deployment(3, json!(0), json!("10%"))), Ok((0, 1)));
        assert!(fenceposts(&deployment(3, json!("ten"), json!(1))).is_err());
        assert_eq!(max_unavailable(&deployment(2, json!(0), json!(5))), 2);
        assert_eq!(min_available(&deployment(10, json!("25%"), json!("25%"))), 8);
    }

    #[test]
    fn template_hash_is_stable_safe_and_moves_with_collisions() {
        let d = deployment(1, json!(1), json!(1));
        let hash = template_hash(&d.spec.template, None);
        assert_eq!(hash, template_hash(&d.spec.template, None));
        assert!(
            hash.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{hash}"
        );
        assert_ne!(hash, template_hash(&d.spec.template, Some(1)));
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        let d = deployment(1, json!(1), json!(1));
        let mut labeled = d.spec.template.clone();
        labeled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), "abc".into());
        assert!(same_template(&d.spec.template, &labeled));
        labeled.spec.as_mut().unwrap().hostname = Some("x".into());
        assert!(!same_template(&d.spec.template, &labeled));
    }

    #[test]
    fn a_reused_replica_set_keeps_its_old_revision_in_history() {
        let mut d = deployment(3, json!(1), json!(0));
        d.metadata.annotations = Some([("kubernetes.io/change-cause".to_string(), "v2".to_string())].into());
        let mut rs = ReplicaSet::default();
        assert!(set_new_rs_annotations(&d, &mut rs, 1, false));
        let a = rs.metadata.annotations.clone().unwrap();
        assert_eq!(
            (
                a[REVISION].as_str(),
                a[DESIRED_REPLICAS].as_str(),
                a[MAX_REPLICAS].as_str()
            ),
            ("1", "3", "4")
        );
        assert_eq!(a["kubernetes.io/change-cause"], "v2");
        assert!(!set_new_rs_annotations(&d, &mut rs, 1, true));
        assert!(set_new_rs_annotations(&d, &mut rs, 3, true));
        assert!(set_new_rs_annotations(&d, &mut rs, 5, true));
        let a = rs.metadata.annotations.unwrap();
        assert_eq!((a[REVISION].as_str(), a[REVISION_HISTORY].as_str()), ("5", "1,3"));
    }

    #[test]
    fn conditions_keep_transition_time_while_status_holds() {
        let mut status = DeploymentStatus::default();
        let mut first = new_condition(PROGRESSING, "True", "NewReplicaSetCreated", "m".into());
        first.last_transition_time = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        set_condition(&mut status, first);
        set_condition(
            &mut status,
            new_condition(PROGRESSING, "True", "ReplicaSetUpdated", "m".into()),
        );
        let c = condition(&status, PROGRESSING).unwrap();
        assert_eq!(c.reason.as_deref(), Some("ReplicaSetUpdated"));
        assert_eq!(c.last_transition_time, Some(Time(jiff::Timestamp::UNIX_EPOCH)));
        assert_eq!(status.conditions.as_ref().unwrap().len(), 1);
    }
}
