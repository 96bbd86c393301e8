//! The scheduler in-process against a real apiserver: nodes are registered as kubelets would,
//! pods are created directly, and the tests watch where they get bound, what the PodScheduled
//! condition says and which events are recorded.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{events_by_reason, flags, register_node, start, wait_for};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// A scheduler running in this process; stops when dropped.
struct Scheduler {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), hyperkube::scheduler::Error>>>,
}

impl Scheduler {
    fn start(url: &str, extra: &[&str]) -> Self {
        let mut argv = vec!["--master", url];
        argv.extend_from_slice(extra);
        let args: hyperkube::scheduler::Args = flags(&argv);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(hyperkube::scheduler::run(args, shutdown.clone()));
        Self {
            shutdown,
            task: Some(task),
        }
    }

    fn without_election(url: &str) -> Self {
        Self::start(url, &["--leader-elect=false"])
    }

    /// Stops the scheduler and waits until it has.
    async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().expect("running");
        tokio::time::timeout(WAIT, task)
            .await
            .expect("the scheduler stops")
            .expect("the scheduler task does not panic")
            .expect("the scheduler stops without error");
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn pods(client: &Client) -> Api<Pod> {
    Api::namespaced(client.clone(), "default")
}

/// Creates pod `name` with one container; `spec` fields are merged into its spec.
async fn create_pod(client: &Client, name: &str, labels: Value, spec: Value) {
    let mut pod = json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "busybox"}]}
    });
    json_patch::merge(&mut pod["spec"], &spec);
    pods(client)
        .create(&PostParams::default(), &serde_json::from_value(pod).unwrap())
        .await
        .unwrap();
}

/// A pod whose container requests `cpu`.
async fn create_pod_requesting(client: &Client, name: &str, cpu: &str) {
    let spec = json!({"containers": [{"name": "app", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}]});
    create_pod(client, name, json!({}), spec).await;
}

fn node_of(pod: &Pod) -> Option<String> {
    pod.spec.as_ref()?.node_name.clone().filter(|n| !n.is_empty())
}

/// Waits until pod `name` is bound, and returns its node.
async fn wait_bound(client: &Client, name: &str) -> String {
    wait_for(&format!("pod {name} to be bound"), WAIT, || async {
        node_of(&pods(client).get(name).await.ok()?)
    })
    .await
}

/// Waits until pod `name` has `PodScheduled=False`, and returns the condition's reason and message.
async fn wait_unschedulable(client: &Client, name: &str) -> (String, String) {
    wait_for(&format!("pod {name} to be marked unschedulable"), WAIT, || async {
        let pod = pods(client).get(name).await.ok()?;
        let condition = pod
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
        Some((condition.reason?, condition.message?))
    })
    .await
}

/// The messages of `reason` events about pod `name`.
async fn events(client: &Client, name: &str, reason: &str) -> Vec<String> {
    events_by_reason(client, "default", reason)
        .await
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.message)
        .collect()
}

async fn patch_node(client: &Client, name: &str, patch: Value) {
    Api::<Node>::all(client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn pods_are_bound_and_spread_over_three_nodes() {
    let server = start().await;
    let client = &server.client;
    for node in ["n1", "n2", "n3"] {
        register_node(client, node, "4", "8Gi", 110).await;
    }
    let _scheduler = Scheduler::without_election(&server.url);
    for i in 0..9 {
        create_pod_requesting(client, &format!("web-{i}"), "500m").await;
    }
    let mut per_node: BTreeMap<String, u32> = BTreeMap::new();
    for i in 0..9 {
        *per_node
            .entry(wait_bound(client, &format!("web-{i}")).await)
            .or_default() += 1;
    }
    let expected: BTreeMap<String, u32> = [("n1".into(), 3), ("n2".into(), 3), ("n3".into(), 3)].into();
    assert_eq!(per_node, expected, "the least allocated node takes each next pod");

    let bound = pods(client).get("web-0").await.unwrap();
    let node = node_of(&bound).unwrap();
    let scheduled = bound.status.unwrap().conditions.unwrap();
    assert!(
        scheduled
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True")
    );
    let messages = wait_for("the Scheduled event", WAIT, || async {
        Some(events(client, "web-0", "Scheduled").await).filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(messages, [format!("Successfully assigned default/web-0 to {node}")]);
}

#[tokio::test]
async fn a_pod_too_big_for_every_node_waits_until_a_node_fits() {
    let server = start().await;
    let client = &server.client;
    for node in ["small-1", "small-2", "small-3"] {
        register_node(client, node, "2", "4Gi", 110).await;
    }
    let _scheduler = Scheduler::without_election(&server.url);
    create_pod_requesting(client, "big", "8").await;
    let expected = "0/3 nodes are available: 3 Insufficient cpu.";
    assert_eq!(
        wait_unschedulable(client, "big").await,
        ("Unschedulable".to_owned(), expected.to_owned())
    );
    let messages = wait_for("a FailedScheduling event", WAIT, || async {
        Some(events(client, "big", "FailedScheduling").await).filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(messages[0], expected);
    let pod = pods(client).get("big").await.unwrap();
    assert_eq!(node_of(&pod), None);
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));

    register_node(client, "large", "16", "64Gi", 110).await;
    assert_eq!(wait_bound(client, "big").await, "large");
}

#[tokio::test]
async fn a_pod_that_only_limits_cpu_requests_its_limit() {
    let server = start().await;
    let client = &server.client;
    for node in ["small-1", "small-2"] {
        register_node(client, node, "2", "4Gi", 110).await;
    }
    let _scheduler = Scheduler::without_election(&server.url);
    let spec = json!({"containers": [{"name": "app", "image": "busybox", "resources": {"limits": {"cpu": "8"}}}]});
    create_pod(client, "limited", json!({}), spec).await;
    let pod = pods(client).get("limited").await.unwrap();
    let resources = pod.spec.unwrap().containers[0].resources.clone().unwrap();
    assert_eq!(
        resources.requests.unwrap()["cpu"].0,
        "8",
        "the apiserver defaults requests to limits"
    );
    assert_eq!(
        wait_unschedulable(client, "limited").await,
        (
            "Unschedulable".to_owned(),
            "0/2 nodes are available: 2 Insufficient cpu.".to_owned()
        )
    );
}

#[tokio::test]
async fn node_selector_and_node_affinity_choose_the_node() {
    let server = start().await;
    let client = &server.client;
    for node in ["n1", "n2", "n3"] {
        register_node(client, node, "4", "8Gi", 110).await;
    }
    patch_node(client, "n2", json!({"metadata": {"labels": {"disk": "ssd"}}})).await;
    let _scheduler = Scheduler::without_election(&server.url);

    for i in 0..3 {
        create_pod(
            client,
            &format!("ssd-{i}"),
            json!({}),
            json!({"nodeSelector": {"disk": "ssd"}}),
        )
        .await;
    }
    let affinity = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["n1", "n2"]}]}]}}}});
    create_pod(client, "not-n1-n2", json!({}), affinity).await;
    create_pod(client, "nvme", json!({}), json!({"nodeSelector": {"disk": "nvme"}})).await;

    for i in 0..3 {
        assert_eq!(wait_bound(client, &format!("ssd-{i}")).await, "n2");
    }
    assert_eq!(wait_bound(client, "not-n1-n2").await, "n3");
    let (reason, message) = wait_unschedulable(client, "nvme").await;
    assert_eq!(reason, "Unschedulable");
    assert_eq!(
        message,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
    // Labelling a node is an event the rejecting plugin registered: the pod is tried again.
    patch_node(client, "n1", json!({"metadata": {"labels": {"disk": "nvme"}}})).await;
    assert_eq!(wait_bound(client, "nvme").await, "n1");
}

#[tokio::test]
async fn taints_keep_pods_off_unless_tolerated() {
    let server = start().await;
    let client = &server.client;
    for node in ["dedicated", "not-ready", "plain"] {
        register_node(client, node, "4", "8Gi", 110).await;
    }
    patch_node(
        client,
        "dedicated",
        json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    )
    .await;
    patch_node(
        client,
        "not-ready",
        json!({"spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}),
    )
    .await;
    let _scheduler = Scheduler::without_election(&server.url);

    for i in 0..4 {
        create_pod(client, &format!("plain-{i}"), json!({}), json!({})).await;
    }
    let on_dedicated = json!({"nodeSelector": {"kubernetes.io/hostname": "dedicated"}});
    let mut tolerating = on_dedicated.clone();
    tolerating["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]);
    create_pod(client, "tolerating", json!({}), tolerating).await;
    create_pod(client, "intolerant", json!({}), on_dedicated).await;

    for i in 0..4 {
        assert_eq!(wait_bound(client, &format!("plain-{i}")).await, "plain");
    }
    assert_eq!(wait_bound(client, "tolerating").await, "dedicated");
    let (_, message) = wait_unschedulable(client, "intolerant").await;
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {dedicated: db}, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
    );
}

#[tokio::test]
async fn a_host_port_is_taken_once_per_node() {
    let server = start().await;
    let client = &server.client;
    for node in ["n1", "n2"] {
        register_node(client, node, "4", "8Gi", 110).await;
    }
    let _scheduler = Scheduler::without_election(&server.url);
    let port = json!({"containers": [{"name": "app", "image": "busybox",
                                      "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    let mut nodes = HashSet::new();
    for i in 0..2 {
        create_pod(client, &format!("port-{i}"), json!({}), port.clone()).await;
        nodes.insert(wait_bound(client, &format!("port-{i}")).await);
    }
    assert_eq!(nodes.len(), 2, "the second pod could not share the port: {nodes:?}");
    create_pod(client, "port-2", json!({}), port).await;
    let (_, message) = wait_unschedulable(client, "port-2").await;
    assert_eq!(
        message,
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
    );
}

#[tokio::test]
async fn anti_affinity_keeps_replicas_on_different_nodes() {
    let server = start().await;
    let client = &server.client;
    for node in ["n1", "n2", "n3"] {
        register_node(client, node, "4", "8Gi", 110).await;
    }
    let _scheduler = Scheduler::without_election(&server.url);
    let apart = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    let mut nodes = HashSet::new();
    for i in 0..3 {
        create_pod(client, &format!("web-{i}"), json!({"app": "web"}), apart.clone()).await;
    }
    for i in 0..3 {
        nodes.insert(wait_bound(client, &format!("web-{i}")).await);
    }
    assert_eq!(nodes.len(), 3);
    create_pod(client, "web-3", json!({"app": "web"}), apart).await;
    let (_, message) = wait_unschedulable(client, "web-3").await;
    assert_eq!(
        message,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    );

    // Once a replica is gone, its node is free for the waiting one.
    let freed = node_of(&pods(client).get("web-0").await.unwrap()).unwrap();
    pods(client)
        .delete("web-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(wait_bound(client, "web-3").await, freed);
}

#[tokio::test]
async fn two_schedulers_never_bind_a_pod_twice() {
    let server = start().await;
    let client = &server.client;
    for node in ["n1", "n2", "n3"] {
        register_node(client, node, "8", "16Gi", 110).await;
    }
    // Every node each pod is ever seen bound to, from a watch opened before any pod exists.
    let bindings: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
    let watch = tokio::spawn({
        let (bindings, api) = (bindings.clone(), pods(client));
        async move {
            let mut stream = watcher(api, watcher::Config::default()).applied_objects().boxed();
            while let Some(Ok(pod)) = stream.next().await {
                if let Some(node) = node_of(&pod) {
                    let mut bindings = bindings.lock().unwrap();
                    let seen = bindings.entry(pod.name_any()).or_default();
                    if seen.last() != Some(&node) {
                        seen.push(node);
                    }
                }
            }
        }
    });
    let election = [
        "--leader-elect=true",
        "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=200ms",
    ];
    let first = Scheduler::start(&server.url, &election);
    let second = Scheduler::start(&server.url, &election);
    for i in 0..40 {
        create_pod_requesting(client, &format!("p-{i}"), "100m").await;
    }
    for i in 0..40 {
        wait_bound(client, &format!("p-{i}")).await;
    }
    // Stopping one of them (the leader or not) leaves the other to schedule what comes next.
    first.stop().await;
    for i in 40..50 {
        create_pod_requesting(client, &format!("p-{i}"), "100m").await;
    }
    for i in 40..50 {
        wait_bound(client, &format!("p-{i}")).await;
    }
    let bindings = wait_for("the watch to see all 50 bindings", WAIT, || async {
        let bindings = bindings.lock().unwrap().clone();
        (bindings.len() == 50).then_some(bindings)
    })
    .await;
    watch.abort();
    for (pod, nodes) in &bindings {
        assert_eq!(nodes.len(), 1, "{pod} was bound to {nodes:?}");
    }
    // A second scheduler binding the same pods would have its bindings rejected, and report them.
    let failed = events_by_reason(client, "default", "FailedScheduling").await;
    assert!(failed.is_empty(), "{failed:?}");
    let lease = Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get("kube-scheduler")
        .await
        .unwrap();
    assert!(lease.spec.and_then(|s| s.holder_identity).is_some());
    second.stop().await;
}
