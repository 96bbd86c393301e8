//! The DaemonSet controller (upstream's `pkg/controller/daemon`): one pod of the template on every
//! node that the template's node selector, required node affinity and tolerations admit.
//!
//! As upstream since 1.12, the controller does not place pods itself: each pod gets a required
//! node affinity on the node's `metadata.name`, and the scheduler binds it there. Pods carry the
//! `controller-revision-hash` label, a hash of the template (this apiserver serves no
//! ControllerRevisions), by which a `RollingUpdate` replaces old pods at most `maxUnavailable` at a
//! time; with `OnDelete`, new pods come only where old ones were deleted.
//!
//! DaemonSets are keys on a work queue, synced when they, their pods, or any node changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use tokio::time::Instant;

use super::Context;
use super::pods::{self, Expectations, controlled_by, is_available, is_ready};
use crate::api::scheduling::{RequiredNodeAffinity, untolerated_taint};
use crate::backoff::Backoff;
use crate::events::Recorder;
use crate::informer::{Change, Informer, ObjectKey};
use crate::workqueue::{WorkQueue, run_workers};

/// The label holding the hash of the template a pod was made from.
const REVISION_HASH: &str = "controller-revision-hash";
/// The deprecated label holding the DaemonSet generation a pod was made from (upstream still sets it).
const TEMPLATE_GENERATION: &str = "pod-template-generation";
/// A failed daemon pod is replaced after 1 s, doubling per failure on the same node up to 15 min.
const FAILED_POD_BACKOFF: Backoff = Backoff {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(900),
};

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("creating a pod for daemon set {ds} on node {node} failed: {}", crate::error_chain(.source))]
    CreatePod {
        ds: ObjectKey,
        node: String,
        source: kube::Error,
    },
    #[error("deleting pod {pod} failed: {}", crate::error_chain(.source))]
    DeletePod { pod: ObjectKey, source: kube::Error },
    #[error("updating the status of daemon set {ds} failed: {}", crate::error_chain(.source))]
    UpdateStatus { ds: ObjectKey, source: kube::Error },
}

struct DaemonSetController {
    daemonsets: Arc<Informer<DaemonSet>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    client: kube::Client,
    recorder: Recorder,
    expectations: Expectations,
    /// Failed pods replaced per (daemon set, node), and when the last one was found.
    failures: Mutex<HashMap<(ObjectKey, String), (u32, Instant)>>,
}

pub(super) async fn run(ctx: Arc<Context>) {
    let controller = Arc::new(DaemonSetController {
        daemonsets: ctx.informers.get::<DaemonSet>(),
        pods: ctx.informers.get::<Pod>(),
        nodes: ctx.informers.get::<Node>(),
        client: ctx.client.clone(),
        recorder: ctx.recorder("daemonset-controller"),
        expectations: Expectations::default(),
        failures: Mutex::default(),
    });
    let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new(ctx.shutdown.clone());
    controller.daemonsets.add_handler({
        let queue = queue.clone();
        move |change| queue.add(ObjectKey::of(&**change.object()))
    });
    controller.pods.add_handler({
        let (queue, controller) = (queue.clone(), controller.clone());
        move |change| {
            let Some(ds) = controlled_by::<DaemonSet>(change.object()) else {
                return;
            };
            controller.expectations.observe(&ds, change);
            queue.add(ds);
        }
    });
    controller.nodes.add_handler({
        let (queue, daemonsets) = (queue.clone(), controller.daemonsets.clone());
        move |change| {
            let relevant = match change {
                Change::Updated { old, new } => {
                    old.metadata.labels != new.metadata.labels
                        || old.spec.as_ref().map(|s| &s.taints) != new.spec.as_ref().map(|s| &s.taints)
                }
                Change::Added(_) | Change::Deleted(_) => true,
            };
            if relevant {
                for ds in daemonsets.list() {
                    queue.add(ObjectKey::of(&*ds));
                }
            }
        }
    });
    controller.daemonsets.wait_synced().await;
    controller.pods.wait_synced().await;
    controller.nodes.wait_synced().await;
    run_workers(queue, 2, "daemonset", move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(&key).await }
    })
    .await;
}

/// Whether a daemon pod should be placed on `node`, and whether one already there may stay
/// (upstream's `NodeShouldRunDaemonPod`): an untolerated NoSchedule taint keeps new pods away but
/// lets running ones stay; an untolerated NoExecute taint does neither.
fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let fits_name = spec.node_name.as_deref().is_none_or(|n| n.is_empty() || n == name);
    // A requirement upstream would refuse matches no node.
    let affine = || RequiredNodeAffinity::parse(spec).is_ok_and(|r| r.matches(node));
    if !fits_name || !affine() {
        return (false, false);
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let untolerated = |effect: &str| untolerated_taint(taints, tolerations, |t| t.effect == effect).is_some();
    if untolerated("NoExecute") {
        return (false, false);
    }
    (!untolerated("NoSchedule"), true)
}

/// The template's pod spec with upstream's daemon tolerations (`AddOrUpdateDaemonPodTolerations`):
/// daemons stay on not-ready and unreachable nodes and go on nodes under pressure or cordoned.
fn daemon_pod_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds.spec.template.spec.clone().unwrap_or_default();
    let mut add = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        add.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in add {
        let toleration = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // One toleration per key, operator and effect: ours replaces the template's.
        tolerations.retain(|t| {
            (t.key.as_deref(), t.operator.as_deref(), t.effect.as_deref()) != (Some(key), Some("Exists"), Some(effect))
        });
        tolerations.push(toleration);
    }
    spec
}

/// The template's hash, as the `controller-revision-hash` label: FNV-1a over its JSON, written
/// with upstream's `SafeEncodeString` alphabet.
fn template_hash(ds: &DaemonSet) -> String {
    let template = &ds.spec.template;
    let bytes = serde_json::to_vec(&template).unwrap_or_default();
    let hash = bytes
        .iter()
        .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193));
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The node a daemon pod is for: its `nodeName` once bound, else its `metadata.name` affinity.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    let required = spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    required.node_selector_terms.iter().find_map(|term| {
        let fields = term.match_fields.as_deref().unwrap_or_default();
        let by_name = fields.iter().find(|r| r.key == "metadata.name" && r.operator == "In")?;
        by_name.values.as_ref()?.first().cloned()
    })
}

fn is_updated(pod: &Pod, hash: &str) -> bool {
    pod.labels().get(REVISION_HASH).map(String::as_str) == Some(hash)
}

/// Pods first by how far along they are (running, then pending), then the oldest first: the one
/// to keep when a node has several.
fn keep_order(pods: &mut [Arc<Pod>]) {
    pods.sort_by_key(|p| {
        let rank = match pods::phase(p) {
            "Running" => 0,
            "Pending" => 1,
            _ => 2,
        };
        (rank, p.metadata.creation_timestamp.clone())
    });
}

/// `maxUnavailable` as a number of pods out of `desired`, percentages rounded up; at least one.
fn max_unavailable(ds: &DaemonSet, desired: usize) -> usize {
    let value = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone())
        .unwrap_or(IntOrString::Int(1));
    let n = match value {
        IntOrString::Int(n) => usize::try_from(n).unwrap_or_default(),
        IntOrString::String(s) => {
            let percent: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            (desired * percent).div_ceil(100)
        }
    };
    n.max(1)
}

/// What one sync decided to change.
#[derive(Default)]
struct Plan {
    create_on: Vec<String>,
    delete: Vec<Arc<Pod>>,
}

impl DaemonSetController {
    async fn sync(&self, key: &ObjectKey) -> Result<Option<Duration>, Error> {
        let Some(ds) = self.daemonsets.get(&key.namespace, &key.name) else {
            self.expectations.forget(key);
            self.lock_failures().retain(|(ds, _), _| ds != key);
            return Ok(None);
        };
        let uid = ds.metadata.uid.clone();
        let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
        let mut unplaceable = Vec::new();
        for pod in self.pods.list_namespace(&key.namespace) {
            if pod.metadata.deletion_timestamp.is_some()
                || !pod.owner_references().iter().any(|o| Some(&o.uid) == uid.as_ref())
            {
                continue;
            }
            match target_node(&pod) {
                Some(node) => by_node.entry(node).or_default().push(pod),
                None => unplaceable.push(pod),
            }
        }
        let nodes = self.nodes.list();
        let spec = daemon_pod_spec(&ds);
        let hash = template_hash(&ds);
        let mut requeue = None;
        if ds.metadata.deletion_timestamp.is_none() && self.expectations.satisfied(key) {
            let (mut plan, wait) = self.plan(key, &ds, &spec, &nodes, &mut by_node);
            plan.delete.extend(unplaceable);
            requeue = wait;
            if plan.create_on.is_empty() && plan.delete.is_empty() {
                plan.delete = rolling_update(&ds, &spec, &nodes, &by_node, &hash);
            }
            self.apply(key, &ds, &spec, &hash, plan).await?;
        }
        let status = status(&ds, &spec, &nodes, &by_node, &hash);
        if ds.status.as_ref() != Some(&status) {
            let mut updated = (*ds).clone();
            updated.status = Some(status);
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &key.namespace);
            api.replace_status(&key.name, &PostParams::default(), &updated)
                .await
                .map_err(|source| Error::UpdateStatus {
                    ds: key.clone(),
                    source,
                })?;
        }
        Ok(requeue)
    }

    /// Upstream's `podsShouldBeOnNode` for every node: a pod where one should run and none does;
    /// none where none may stay; one, the most advanced, where several are; failed pods replaced
    /// after their back-off, which is returned when it holds one back.
    fn plan(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        spec: &PodSpec,
        nodes: &[Arc<Node>],
        by_node: &mut BTreeMap<String, Vec<Arc<Pod>>>,
    ) -> (Plan, Option<Duration>) {
        let mut plan = Plan::default();
        let mut wait: Option<Duration> = None;
        let known: Vec<&str> = nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
        // Unscheduled pods for nodes that are gone will never run.
        for (node, pods) in by_node.iter() {
            if !known.contains(&node.as_str()) {
                let unscheduled = pods
                    .iter()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none());
                plan.delete.extend(unscheduled.cloned());
            }
        }
        for node in nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let (run, stay) = should_run(spec, node);
            let pods = by_node.entry(name.clone()).or_default();
            if !stay {
                plan.delete.append(pods);
                continue;
            }
            let (failed, mut alive): (Vec<_>, Vec<_>) = pods.drain(..).partition(|p| pods::phase(p) == "Failed");
            if let Some(pod) = failed.first() {
                match self.failure_backoff(key, &name) {
                    Some(left) => wait = Some(wait.map_or(left, |w| w.min(left))),
                    None => {
                        let message = format!(
                            "Found failed daemon pod {}/{} on node {name}, will try to kill it",
                            key.namespace,
                            pod.name_any()
                        );
                        self.recorder.record(ds, true, "FailedDaemonPod", &message);
                        plan.delete.extend(failed.iter().cloned());
                    }
                }
            }
            keep_order(&mut alive);
            if alive.len() > 1 {
                plan.delete.extend(alive.drain(1..));
            }
            if run && alive.is_empty() && failed.is_empty() {
                plan.create_on.push(name);
            }
            *pods = alive;
        }
        (plan, wait)
    }

    /// `None` when a failed pod on `node` may be replaced now (and counts this failure), else how
    /// long until it may.
    fn failure_backoff(&self, key: &ObjectKey, node: &str) -> Option<Duration> {
        let mut failures = self.lock_failures();
        let entry = failures.entry((key.clone(), node.to_string()));
        let (count, last) = entry.or_insert((0, Instant::now()));
        if *count > 0 {
            let delay = FAILED_POD_BACKOFF.after(*count);
            let left = delay.saturating_sub(last.elapsed());
            if !left.is_zero() {
                return Some(left);
            }
        }
        *count += 1;
        *last = Instant::now();
        None
    }

    async fn apply(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        spec: &PodSpec,
        hash: &str,
        plan: Plan,
    ) -> Result<(), Error> {
        let Some(owner) = pods::controller_ref(ds) else {
            return Ok(());
        };
        let deletions = plan.delete.iter().map(|p| ObjectKey::of(&**p));
        self.expectations.expect(key, plan.create_on.len(), deletions);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut result = Ok(());
        for node in plan.create_on {
            let pod = daemon_pod(ds, owner.clone(), spec, hash, &node);
            match api.create(&PostParams::default(), &pod).await {
                Ok(created) => {
                    let message = format!("Created pod: {}", created.name_any());
                    self.recorder.record(ds, false, "SuccessfulCreate", &message);
                }
                Err(source) => {
                    self.expectations.creation_observed(key);
                    let message = format!("Error creating: {}", crate::error_chain(&source));
                    self.recorder.record(ds, true, "FailedCreate", &message);
                    result = Err(Error::CreatePod {
                        ds: key.clone(),
                        node,
                        source,
                    });
                }
            }
        }
        for pod in plan.delete {
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    let message = format!("Deleted pod: {}", pod.name_any());
                    self.recorder.record(ds, false, "SuccessfulDelete", &message);
                }
                Err(source) => {
                    self.expectations.deletion_observed(key, &ObjectKey::of(&*pod));
                    if !matches!(&source, kube::Error::Api(s) if s.code == 404) {
                        result = Err(Error::DeletePod {
                            pod: ObjectKey::of(&*pod),
                            source,
                        });
                    }
                }
            }
        }
        result
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<(ObjectKey, String), (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A daemon pod for `node`, controlled by `owner`: the template with the daemon tolerations, the
/// revision labels, and a required affinity for that node alone in place of the template's node
/// affinity terms (the node already satisfies them), as upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`.
fn daemon_pod(ds: &DaemonSet, owner: OwnerReference, spec: &PodSpec, hash: &str, node: &str) -> Pod {
    let mut pod = pods::pod_from_template(&ds.spec.template, owner, &format!("{}-", ds.name_any()));
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(REVISION_HASH.into(), hash.into());
    labels.insert(
        TEMPLATE_GENERATION.into(),
        ds.metadata.generation.unwrap_or(0).to_string(),
    );
    let mut spec = spec.clone();
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    });
    pod.spec = Some(spec);
    pod
}

/// Upstream's rolling update without surge: old pods that are not available are replaced at
/// once; available ones as long as fewer than `maxUnavailable` pods are unavailable.
fn rolling_update(
    ds: &DaemonSet,
    spec: &PodSpec,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
) -> Vec<Arc<Pod>> {
    let ds_spec = ds.spec.clone();
    if ds_spec.update_strategy.and_then(|s| s.type_).as_deref() == Some("OnDelete") {
        return Vec::new();
    }
    let min_ready = ds_spec.min_ready_seconds.unwrap_or(0);
    let now = jiff::Timestamp::now();
    let desired = nodes.iter().filter(|n| should_run(spec, n).0).count();
    let budget = max_unavailable(ds, desired);
    let mut unavailable = 0;
    let (mut replace, mut candidates) = (Vec::new(), Vec::new());
    for node in nodes {
        let pods = by_node.get(node.metadata.name.as_deref().unwrap_or_default());
        match pods.and_then(|p| p.first()) {
            None => unavailable += usize::from(should_run(spec, node).0),
            Some(pod) if is_updated(pod, hash) => unavailable += usize::from(!is_available(pod, min_ready, now)),
            Some(pod) if !is_available(pod, min_ready, now) => replace.push(pod.clone()),
            Some(pod) => candidates.push(pod.clone()),
        }
    }
    let room = budget.saturating_sub(unavailable).min(candidates.len());
    replace.extend(candidates.into_iter().take(room));
    replace
}

/// The status upstream's `updateDaemonSetStatus` computes: for each node that should run the
/// daemon, whether it has its pod, and whether that is ready, available and of the current
/// template; pods on nodes that should not run it are misscheduled.
fn status(
    ds: &DaemonSet,
    spec: &PodSpec,
    nodes: &[Arc<Node>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
) -> DaemonSetStatus {
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let now = jiff::Timestamp::now();
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        ..Default::default()
    };
    for node in nodes {
        let pods = by_node.get(node.metadata.name.as_deref().unwrap_or_default());
        let pod = pods.and_then(|p| p.first());
        if !should_run(spec, node).0 {
            status.number_misscheduled += i32::from(pod.is_some());
            continue;
        }
        status.desired_number_scheduled += 1;
        let Some(pod) = pod else { continue };
        status.current_number_scheduled += 1;
        if is_ready(pod) {
            status.number_ready += 1;
            if is_available(pod, min_ready, now) {
                *status.number_available.get_or_insert(0) += 1;
            }
        }
        if is_updated(pod, hash) {
            *status.updated_number_scheduled.get_or_insert(0) += 1;
        }
    }
    let available = status.number_available.unwrap_or(0);
    status.number_unavailable = Some(status.desired_number_scheduled - available).filter(|n| *n > 0);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(v: serde_json::Value) -> DaemonSet {
        serde_json::from_value(v).unwrap()
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}
        }))
        .unwrap()
    }

    #[test]
    fn taints_keep_new_daemons_away_but_only_no_execute_evicts() {
        let daemon = ds(serde_json::json!({"metadata": {"name": "d"}, "spec": {
            "selector": {}, "template": {"spec": {"nodeSelector": {"role": "edge"}, "containers": []}}}}));
        let spec = daemon_pod_spec(&daemon);
        let edge = serde_json::json!({"role": "edge"});
        assert_eq!(
            should_run(&spec, &node("a", edge.clone(), serde_json::json!([]))),
            (true, true)
        );
        assert_eq!(
            should_run(&spec, &node("b", serde_json::json!({}), serde_json::json!([]))),
            (false, false)
        );
        let no_schedule = serde_json::json!([{"key": "dedicated", "effect": "NoSchedule"}]);
        assert_eq!(should_run(&spec, &node("c", edge.clone(), no_schedule)), (false, true));
        let no_execute = serde_json::json!([{"key": "dedicated", "effect": "NoExecute"}]);
        assert_eq!(should_run(&spec, &node("d", edge.clone(), no_execute)), (false, false));
        // The daemon tolerations cover cordoned, unreachable and pressured nodes.
        let cordoned = serde_json::json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                                          {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]);
        assert_eq!(should_run(&spec, &node("e", edge, cordoned)), (true, true));
    }

    #[test]
    fn daemon_pods_are_pinned_to_their_node_by_affinity() {
        let daemon = ds(
            serde_json::json!({"metadata": {"name": "d", "uid": "u", "generation": 3}, "spec": {
            "selector": {}, "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [], "affinity":
                {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "role", "operator": "In", "values": ["edge"]}]}]}}}}}}}),
        );
        let hash = template_hash(&daemon);
        let owner = pods::controller_ref(&daemon).unwrap();
        let pod = daemon_pod(&daemon, owner, &daemon_pod_spec(&daemon), &hash, "n1");
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        let labels = pod.labels();
        assert_eq!(
            (labels["app"].as_str(), labels[TEMPLATE_GENERATION].as_str()),
            ("d", "3")
        );
        assert!(is_updated(&pod, &hash));
        let n1 = node("n1", serde_json::json!({}), serde_json::json!([]));
        let n2 = node("n2", serde_json::json!({}), serde_json::json!([]));
        let required = RequiredNodeAffinity::parse(pod.spec.as_ref().unwrap()).unwrap();
        assert!(required.matches(&n1));
        assert!(!required.matches(&n2));
    }

    #[test]
    fn template_hashes_change_with_the_template_only() {
        let a = ds(
            serde_json::json!({"metadata": {"name": "d"}, "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": "a"}]}}}}),
        );
        let mut b = a.clone();
        b.metadata.generation = Some(7);
        assert_eq!(template_hash(&a), template_hash(&b));
        b.spec.template.spec.as_mut().unwrap().containers[0].image = Some("b".into());
        assert_ne!(template_hash(&a), template_hash(&b));
        assert!(
            template_hash(&a)
                .bytes()
                .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c))
        );
    }

    #[test]
    fn max_unavailable_rounds_percentages_up() {
        let with = |v: serde_json::Value| {
            ds(
                serde_json::json!({"metadata": {"name": "d"}, "spec": {"selector": {}, "template": {},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": v}}}}),
            )
        };
        assert_eq!(max_unavailable(&with(serde_json::json!(2)), 10), 2);
        assert_eq!(max_unavailable(&with(serde_json::json!("25%")), 10), 3);
        assert_eq!(max_unavailable(&with(serde_json::json!("0%")), 10), 1);
    }
}
