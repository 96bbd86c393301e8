//! In-process tests of the node lifecycle, DaemonSet and Job controllers: a real apiserver, the
//! controller manager running only the controller under test, and the test standing in for the
//! kubelets (node registration, Lease renewal, pod phases).

mod common;

use std::time::Duration;

use common::{TestServer, flags, mark_pod, register_node, start, wait_for};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The controller manager, stopped when dropped.
struct ControllerManager {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}

fn controller_manager(server: &TestServer, extra: &[&str]) -> ControllerManager {
    let mut argv = vec!["--master", &server.url, "--leader-elect=false"];
    argv.extend_from_slice(extra);
    let args: hyperkube::controller::Args = flags(&argv);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { hyperkube::controller::run(args, token).await.unwrap() });
    ControllerManager { shutdown, task }
}

/// Renews `node`'s Lease in `kube-node-lease` every 500 ms, as its kubelet would, until dropped.
struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn heartbeat(client: &Client, node: &str) -> Heartbeat {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let node = node.to_string();
    Heartbeat(tokio::spawn(async move {
        loop {
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                         "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()}
            }))
            .unwrap();
            leases.replace(&node, &PostParams::default(), &lease).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }))
}

fn taint_keys(node: &Node) -> Vec<(String, String)> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    taints.into_iter().map(|t| (t.key, t.effect)).collect()
}

fn ready_condition(node: &Node) -> Option<(String, Option<String>)> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    let ready = conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((ready.status.clone(), ready.reason.clone()))
}

/// A running pod on `node`, as bound and started there.
async fn pod_on_node(client: &Client, name: &str, node: &str, tolerations: serde_json::Value) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "tolerations": tolerations,
                 "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    mark_pod(client, "default", name, "Running", true).await;
    pods.get(name).await.unwrap()
}

fn pod_ready(pod: &Pod) -> Option<&str> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    Some(conditions.iter().find(|c| c.type_ == "Ready")?.status.as_str())
}

#[tokio::test]
async fn a_node_that_stops_heartbeating_is_tainted_and_its_pods_evicted_by_their_tolerations() {
    let server = start().await;
    let client = server.client.clone();
    register_node(&client, "alive", "4", "8Gi", 110).await;
    register_node(&client, "silent", "4", "8Gi", 110).await;
    let _alive = heartbeat(&client, "alive");
    let unreachable = |seconds: Option<u32>| {
        json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": seconds}])
    };
    pod_on_node(&client, "prompt", "silent", unreachable(Some(0))).await;
    pod_on_node(&client, "patient", "silent", unreachable(Some(3))).await;
    pod_on_node(&client, "forever", "silent", unreachable(None)).await;
    pod_on_node(&client, "defaulted", "silent", json!([])).await;
    pod_on_node(&client, "elsewhere", "alive", json!([])).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let _cm = controller_manager(
        &server,
        &[
            "--controllers=nodelifecycle",
            "--node-monitor-grace-period=2s",
            "--node-monitor-period=200ms",
        ],
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let silent = wait_for("the silent node to become Unknown and tainted", TIMEOUT, || async {
        let node = nodes.get("silent").await.unwrap();
        let tainted = !taint_keys(&node).is_empty();
        (ready_condition(&node)? == ("Unknown".into(), Some("NodeStatusUnknown".into())) && tainted).then_some(node)
    })
    .await;
    let unreachable_taints = [
        ("node.kubernetes.io/unreachable".to_string(), "NoSchedule".to_string()),
        ("node.kubernetes.io/unreachable".to_string(), "NoExecute".to_string()),
    ];
    assert_eq!(taint_keys(&silent), unreachable_taints);
    let ready = silent
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));

    // Tolerating for 0 seconds goes at once; the patient pod waits for its 3 seconds.
    let deleting = |name: &'static str| {
        let pods = pods.clone();
        async move {
            pods.get(name)
                .await
                .unwrap()
                .metadata
                .deletion_timestamp
                .is_some()
                .then_some(())
        }
    };
    wait_for("the prompt pod to be evicted", TIMEOUT, || deleting("prompt")).await;
    let patient = pods.get("patient").await.unwrap();
    assert!(
        patient.metadata.deletion_timestamp.is_none(),
        "evicted before its toleration ran out"
    );
    // Marking pods not ready is the node controller's own step, racing the taint manager's
    // eviction of the prompt pod; it comes soon, while the patient pod still tolerates the taint.
    let not_ready = wait_for(
        "pods on a node that is not ready to be marked not ready",
        TIMEOUT,
        || async {
            let pod = pods.get("patient").await.unwrap();
            (pod_ready(&pod) == Some("False")).then_some(pod)
        },
    )
    .await;
    assert!(
        not_ready.metadata.deletion_timestamp.is_none(),
        "evicted before its toleration ran out"
    );
    let evicted = pods.get("prompt").await.unwrap();
    let reasons: Vec<_> = evicted
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .filter_map(|c| c.reason)
        .collect();
    assert!(reasons.contains(&"DeletionByTaintManager".to_string()), "{reasons:?}");
    // Terminating, it waits for its kubelet; a status update does not end that wait.
    mark_pod(&client, "default", "prompt", "Running", false).await;
    assert!(
        pods.get("prompt").await.is_ok(),
        "a status update finished a graceful deletion"
    );
    wait_for("the patient pod to be evicted", TIMEOUT, || deleting("patient")).await;

    let healthy = nodes.get("alive").await.unwrap();
    assert_eq!(
        ready_condition(&healthy).unwrap().0,
        "True",
        "a node renewing its Lease stays Ready"
    );
    assert!(taint_keys(&healthy).is_empty());
    let untouched = pods.get("elsewhere").await.unwrap();
    assert!(untouched.metadata.deletion_timestamp.is_none());
    assert_eq!(pod_ready(&untouched), Some("True"));
    for name in ["forever", "defaulted"] {
        let pod = pods.get(name).await.unwrap();
        assert!(
            pod.metadata.deletion_timestamp.is_none(),
            "{name} was evicted before its time"
        );
    }

    // The kubelet comes back and posts Ready: the taints go.
    let _silent = heartbeat(&client, "silent");
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes
        .patch_status("silent", &PatchParams::default(), &Patch::Strategic(status))
        .await
        .unwrap();
    wait_for("the taints to go once the node is Ready again", TIMEOUT, || async {
        taint_keys(&nodes.get("silent").await.unwrap()).is_empty().then_some(())
    })
    .await;

    // A NoExecute taint a pod does not tolerate at all evicts it at once.
    let taint = json!({"spec": {"taints": [{"key": "example.com/maintenance", "effect": "NoExecute"}]}});
    nodes
        .patch("alive", &PatchParams::default(), &Patch::Merge(taint))
        .await
        .unwrap();
    wait_for("the untolerating pod to be evicted", TIMEOUT, || deleting("elsewhere")).await;
}

fn job_condition(job: &Job, type_: &str) -> Option<String> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.type_ == type_ && c.status == "True")?;
    c.reason.clone()
}

/// The job's pods that have not finished, by name.
async fn running_pods(pods: &Api<Pod>, job: &str) -> Vec<String> {
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .unwrap();
    list.items
        .into_iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
            p.metadata.deletion_timestamp.is_none() && phase != "Succeeded" && phase != "Failed"
        })
        .map(|p| p.name_any())
        .collect()
}

async fn create_job(client: &Client, name: &str, spec: serde_json::Value) -> Api<Job> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut spec = spec;
    spec["template"] = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}});
    let job: Job = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    jobs
}

#[tokio::test]
async fn a_job_runs_parallelism_pods_at_a_time_until_completions_succeed() {
    let server = start().await;
    let client = server.client.clone();
    let _cm = controller_manager(&server, &["--controllers=job"]);
    let jobs = create_job(&client, "three", json!({"completions": 3, "parallelism": 2})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let first = wait_for("two pods", TIMEOUT, || async {
        let running = running_pods(&pods, "three").await;
        (running.len() == 2).then_some(running)
    })
    .await;
    let pod = pods.get(&first[0]).await.unwrap();
    assert!(
        pod.finalizers()
            .contains(&"batch.kubernetes.io/job-tracking".to_string())
    );
    let labels = pod.labels();
    assert_eq!(labels["batch.kubernetes.io/job-name"], "three");
    assert_eq!(
        labels["controller-uid"],
        jobs.get("three").await.unwrap().uid().unwrap()
    );
    mark_pod(&client, "default", &first[0], "Running", true).await;
    wait_for("the job to count one ready pod", TIMEOUT, || async {
        (jobs.get("three").await.unwrap().status?.ready? == 1).then_some(())
    })
    .await;

    // Each success makes room for one more pod, never more than the completions left.
    let mut succeeded = Vec::new();
    for round in 0..3 {
        let running = wait_for("a pod to mark succeeded", TIMEOUT, || async {
            let running = running_pods(&pods, "three").await;
            (running.len() == (3 - round).min(2)).then_some(running)
        })
        .await;
        mark_pod(&client, "default", &running[0], "Succeeded", false).await;
        succeeded.push(running[0].clone());
    }
    let done = wait_for("the job to complete", TIMEOUT, || async {
        let job = jobs.get("three").await.unwrap();
        job_condition(&job, "Complete").is_some().then_some(job)
    })
    .await;
    assert_eq!(job_condition(&done, "Complete").as_deref(), Some("CompletionsReached"));
    assert_eq!(
        job_condition(&done, "SuccessCriteriaMet").as_deref(),
        Some("CompletionsReached")
    );
    let status = done.status.unwrap();
    assert_eq!(
        (status.succeeded, status.failed, status.active),
        (Some(3), Some(0), Some(0))
    );
    assert!(status.start_time.is_some() && status.completion_time.is_some());
    // Counted, the pods are let go of.
    for name in succeeded {
        let pod = pods.get(&name).await.unwrap();
        assert!(pod.finalizers().is_empty(), "{name} still holds its finalizer");
    }
}

#[tokio::test]
async fn a_job_fails_when_its_pods_fail_more_often_than_its_backoff_limit() {
    let server = start().await;
    let client = server.client.clone();
    let _cm = controller_manager(&server, &["--controllers=job"]);
    let jobs = create_job(&client, "flaky", json!({"backoffLimit": 1})).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let mut failed = Vec::new();
    for attempt in 1..=2 {
        // The second pod comes after upstream's 10 s back-off.
        let running = wait_for("a pod to fail", Duration::from_secs(45), || async {
            let running = running_pods(&pods, "flaky").await;
            (running.len() == 1).then_some(running)
        })
        .await;
        mark_pod(&client, "default", &running[0], "Failed", false).await;
        failed.push(running[0].clone());
        if attempt == 1 {
            wait_for("the first failure to be counted", TIMEOUT, || async {
                (jobs.get("flaky").await.unwrap().status?.failed? == 1).then_some(())
            })
            .await;
            let job = jobs.get("flaky").await.unwrap();
            assert!(
                job_condition(&job, "Failed").is_none(),
                "one failure is within the limit"
            );
        }
    }
    let job = wait_for("the job to fail", TIMEOUT, || async {
        let job = jobs.get("flaky").await.unwrap();
        job_condition(&job, "Failed").is_some().then_some(job)
    })
    .await;
    assert_eq!(job_condition(&job, "Failed").as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        job_condition(&job, "FailureTarget").as_deref(),
        Some("BackoffLimitExceeded")
    );
    let status = job.status.unwrap();
    assert_eq!(
        (status.failed, status.succeeded, status.active),
        (Some(2), Some(0), Some(0))
    );
    assert!(
        running_pods(&pods, "flaky").await.is_empty(),
        "no pod replaces the last failure"
    );
}

#[tokio::test]
async fn a_job_past_its_active_deadline_fails_and_its_pods_are_deleted() {
    let server = start().await;
    let client = server.client.clone();
    let _cm = controller_manager(&server, &["--controllers=job"]);
    let jobs = create_job(
        &client,
        "slow",
        json!({"activeDeadlineSeconds": 2, "parallelism": 2, "completions": 4}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for("two pods", TIMEOUT, || async {
        (running_pods(&pods, "slow").await.len() == 2).then_some(())
    })
    .await;
    let job = wait_for("the job to fail", TIMEOUT, || async {
        let job = jobs.get("slow").await.unwrap();
        job_condition(&job, "Failed").is_some().then_some(job)
    })
    .await;
    assert_eq!(job_condition(&job, "Failed").as_deref(), Some("DeadlineExceeded"));
    let left = pods.list(&ListParams::default().labels("job-name=slow")).await.unwrap();
    assert!(
        left.items.is_empty(),
        "the running pods were deleted: {:?}",
        left.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    assert_eq!(job.status.unwrap().failed, Some(2), "deleted pods count as failed");
}

/// The node a daemon pod's required affinity names.
fn affinity_node(pod: &Pod) -> Option<String> {
    let affinity = pod.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()?;
    let terms = &affinity
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let fields = terms.first()?.match_fields.as_ref()?;
    assert_eq!(
        (fields[0].key.as_str(), fields[0].operator.as_str()),
        ("metadata.name", "In")
    );
    fields[0].values.as_ref()?.first().cloned()
}

/// The daemon set's pods not being deleted, by the node their affinity names.
async fn daemon_pods(pods: &Api<Pod>) -> std::collections::BTreeMap<String, Pod> {
    let list = pods.list(&ListParams::default().labels("app=agent")).await.unwrap();
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (affinity_node(&p).unwrap(), p))
        .collect()
}

/// Binds a daemon pod where its affinity says and reports it running and ready, as the scheduler
/// and the node's kubelet would.
async fn bind_and_start(client: &Client, pod: &Pod) {
    let name = pod.name_any();
    let node = affinity_node(pod).unwrap();
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                         "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let request = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/binding"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binding).unwrap())
        .unwrap();
    client.request_text(request).await.unwrap();
    mark_pod(client, "default", &name, "Running", true).await;
}

#[tokio::test]
async fn a_daemon_set_runs_one_pod_on_each_eligible_node_and_rolls_updates() {
    let server = start().await;
    let client = server.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    for name in ["edge-a", "edge-b", "edge-tainted", "core"] {
        register_node(&client, name, "4", "8Gi", 110).await;
        let role = if name == "core" { "core" } else { "edge" };
        nodes
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"role": role}}})),
            )
            .await
            .unwrap();
    }
    let taint = json!({"spec": {"taints": [{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]}});
    nodes
        .patch("edge-tainted", &PatchParams::default(), &Patch::Merge(taint))
        .await
        .unwrap();
    let _cm = controller_manager(&server, &["--controllers=daemonset"]);
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"nodeSelector": {"role": "edge"},
                                       "containers": [{"name": "agent", "image": "agent:1"}]}}}
    }))
    .unwrap();
    daemonsets.create(&PostParams::default(), &ds).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let placed = wait_for("a pod for each eligible node", TIMEOUT, || async {
        let placed = daemon_pods(&pods).await;
        (placed.len() == 2).then_some(placed)
    })
    .await;
    assert_eq!(
        placed.keys().collect::<Vec<_>>(),
        ["edge-a", "edge-b"],
        "none for the tainted or core node"
    );
    let pod = &placed["edge-a"];
    let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
    let unreachable = tolerations
        .iter()
        .find(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable"))
        .unwrap();
    assert_eq!(
        unreachable.toleration_seconds, None,
        "daemons tolerate unreachable nodes for good"
    );
    assert!(pod.labels().contains_key("controller-revision-hash"));
    for pod in placed.values() {
        bind_and_start(&client, pod).await;
    }
    wait_for("the status to count two ready pods", TIMEOUT, || async {
        let status = daemonsets.get("agent").await.unwrap().status?;
        let counts = (
            status.desired_number_scheduled,
            status.current_number_scheduled,
            status.number_ready,
            status.number_available,
            status.updated_number_scheduled,
            status.number_misscheduled,
        );
        (counts == (2, 2, 2, Some(2), Some(2), 0) && status.observed_generation == Some(1)).then_some(())
    })
    .await;

    // A new eligible node gets its pod.
    register_node(&client, "edge-new", "4", "8Gi", 110).await;
    nodes
        .patch(
            "edge-new",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": "edge"}}})),
        )
        .await
        .unwrap();
    let placed = wait_for("a pod for the new node", TIMEOUT, || async {
        let placed = daemon_pods(&pods).await;
        placed.contains_key("edge-new").then_some(placed)
    })
    .await;
    bind_and_start(&client, &placed["edge-new"]).await;

    // A new template replaces the pods one node at a time (maxUnavailable 1).
    let old_hash = placed["edge-a"].labels()["controller-revision-hash"].clone();
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "agent:2"}]}}}});
    daemonsets
        .patch("agent", &PatchParams::default(), &Patch::Strategic(image))
        .await
        .unwrap();
    for round in 1..=3 {
        let fresh = wait_for("the next pod of the new template", TIMEOUT, || async {
            let placed = daemon_pods(&pods).await;
            let fresh: Vec<Pod> = placed
                .values()
                .filter(|p| p.labels()["controller-revision-hash"] != old_hash)
                .cloned()
                .collect();
            (fresh.len() == round).then_some((placed, fresh))
        })
        .await;
        let (placed, fresh) = fresh;
        let old = placed.len() - fresh.len();
        assert_eq!(old, 3 - round, "more than one pod was replaced at once");
        let waiting: Vec<&Pod> = fresh
            .iter()
            .filter(|p| p.spec.as_ref().unwrap().node_name.is_none())
            .collect();
        assert_eq!(waiting.len(), 1);
        assert_eq!(
            waiting[0].spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some("agent:2")
        );
        bind_and_start(&client, waiting[0]).await;
    }
    wait_for("every pod to be updated", TIMEOUT, || async {
        let status = daemonsets.get("agent").await.unwrap().status?;
        (status.updated_number_scheduled == Some(3) && status.number_available == Some(3)).then_some(())
    })
    .await;
}
