//! The ReplicaSet, ReplicationController and Deployment controllers against a real in-process
//! apiserver, with the test standing in for kubelets (pods are marked Running and Ready through
//! the status subresource as they appear).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestServer, flags, start, wait_for};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ReplicationController};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A running controller manager; stopped (and awaited) by [`Manager::stop`].
struct Manager {
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl Manager {
    fn start(server: &TestServer) -> Self {
        let token = CancellationToken::new();
        let args = flags::<hyperkube::controller::Args>(&["--master", &server.url, "--leader-elect=false"]);
        let task = tokio::spawn({
            let token = token.clone();
            async move { hyperkube::controller::run(args, token).await.unwrap() }
        });
        Self { token, task }
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("controller manager stops")
            .unwrap();
    }
}

/// An apiserver with one namespace and the controller manager running against it.
struct Cluster {
    server: TestServer,
    client: Client,
    namespace: &'static str,
    manager: Manager,
}

async fn cluster(namespace: &'static str) -> Cluster {
    let server = start().await;
    let client = server.client.clone();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let manager = Manager::start(&server);
    Cluster {
        server,
        client,
        namespace,
        manager,
    }
}

impl Cluster {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), self.namespace)
    }

    /// Creates a deployment of `replicas` busybox:1 pods and waits until it has rolled out.
    async fn deploy(&self, name: &str, replicas: i32, strategy: Value) -> Api<Deployment> {
        let deployments = self.api::<Deployment>();
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": name}}, "strategy": strategy,
            "template": template(name, "busybox:1")}}))
        .unwrap();
        deployments.create(&PostParams::default(), &d).await.unwrap();
        wait_rolled_out(&self.client, self.namespace, name, replicas, "busybox:1").await;
        deployments
    }
}

fn template(app: &str, image: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "c", "image": image}]}})
}

/// Stands in for every kubelet of `namespace`: marks each pod Running and Ready once it
/// appears. A pod deleted before it is marked is skipped.
fn kubelet(client: &Client, namespace: &str) -> JoinHandle<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    tokio::spawn(async move {
        let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                _ => continue,
            };
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let now = jiff::Timestamp::now().to_string();
            let status = json!({"status": {"phase": "Running", "startTime": now, "podIP": "10.244.0.10",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                               {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
            let _ = pods
                .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(status))
                .await;
        }
    })
}

async fn active_pods(client: &Client, namespace: &str) -> Vec<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .unwrap();
    pods.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// Waits until the deployment has rolled out `replicas` pods of `image`, all available.
async fn wait_rolled_out(client: &Client, namespace: &str, name: &str, replicas: i32, image_name: &str) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    wait_for(&format!("{name} rolled out with {image_name}"), TIMEOUT, || async {
        let d = deployments.get(name).await.ok()?;
        let status = d.status.clone()?;
        let done = status.observed_generation >= d.metadata.generation
            && status.updated_replicas.unwrap_or(0) == replicas
            && status.replicas.unwrap_or(0) == replicas
            && status.available_replicas.unwrap_or(0) == replicas;
        let pods = active_pods(client, namespace).await;
        (done && pods.len() == replicas as usize && pods.iter().all(|p| image(p) == image_name)).then_some(())
    })
    .await;
}

/// Patches `name`, retrying while the apiserver answers 409.
// NB: our apiserver takes the stored resourceVersion as a precondition of every patch, so a
// patch racing a controller's status write fails with 409 where upstream's would retry itself.
async fn patch<K>(api: &Api<K>, name: &str, patch: &Patch<Value>) -> K
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("patching {name}"), TIMEOUT, || async {
        match api.patch(name, &PatchParams::default(), patch).await {
            Ok(obj) => Some(obj),
            Err(kube::Error::Api(s)) if s.code == 409 => None,
            Err(e) => panic!("patching {name}: {e}"),
        }
    })
    .await
}

fn owner_kind(pod: &Pod) -> Option<(String, String)> {
    let r = pod.owner_references().iter().find(|r| r.controller == Some(true))?;
    Some((r.kind.clone(), r.name.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_creates_replaces_and_scales_its_pods() {
    let c = cluster("basic").await;
    let client = c.client.clone();
    let kubelet = kubelet(&client, "basic");
    let deployments = c.deploy("web", 5, json!({"type": "RollingUpdate"})).await;

    let sets = Api::<ReplicaSet>::namespaced(client.clone(), "basic")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    let hash = rs.labels()["pod-template-hash"].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(rs.annotations()["deployment.kubernetes.io/revision"], "1");
    assert_eq!(rs.annotations()["deployment.kubernetes.io/desired-replicas"], "5");
    // maxSurge defaults to 25% of 5, rounded up: 2.
    assert_eq!(rs.annotations()["deployment.kubernetes.io/max-replicas"], "7");
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "1");
    // The revision goes with the status, as upstream writes it: no new generation.
    assert_eq!(d.metadata.generation, Some(1));
    let conditions: BTreeMap<String, String> = d
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_.unwrap(), c.reason.unwrap()))
        .collect();
    assert_eq!(conditions["Available"], "MinimumReplicasAvailable");
    assert_eq!(conditions["Progressing"], "NewReplicaSetAvailable");
    let pods = active_pods(&client, "basic").await;
    assert!(pods.iter().all(|p| p.labels()["pod-template-hash"] == hash));
    assert!(
        pods.iter()
            .all(|p| owner_kind(p) == Some(("ReplicaSet".into(), rs.name_any())))
    );

    let victim = pods[0].name_any();
    Api::<Pod>::namespaced(client.clone(), "basic")
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the deleted pod replaced", TIMEOUT, || async {
        let pods = active_pods(&client, "basic").await;
        (pods.len() == 5 && pods.iter().all(|p| p.name_any() != victim)).then_some(())
    })
    .await;

    let scale = |n: i32| Patch::Merge(json!({"spec": {"replicas": n}}));
    patch(&deployments, "web", &scale(0)).await;
    wait_for("no pods after scaling to 0", TIMEOUT, || async {
        active_pods(&client, "basic").await.is_empty().then_some(())
    })
    .await;
    patch(&deployments, "web", &scale(3)).await;
    wait_rolled_out(&client, "basic", "web", 3, "busybox:1").await;
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), "basic")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(sets.items.len(), 1, "scaling makes no new replica set");

    kubelet.abort();
    c.manager.stop().await;
}

/// What a watch saw of a rollout: the most replicas the sets were sized for at once, and the
/// fewest pods Ready at once.
#[derive(Default)]
struct Extremes {
    max_sized: i32,
    min_ready: Option<usize>,
}

/// Watches sets and pods of `namespace`, recording [`Extremes`] after every event.
fn watch_extremes(client: &Client, namespace: &str) -> (Arc<Mutex<Extremes>>, JoinHandle<()>, JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Extremes::default()));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace);
    let sizes = tokio::spawn({
        let seen = seen.clone();
        async move {
            let mut sized: HashMap<String, i32> = HashMap::new();
            let mut events = watcher(sets, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = events.next().await {
                match event {
                    watcher::Event::Apply(rs) | watcher::Event::InitApply(rs) => {
                        sized.insert(rs.name_any(), rs.spec.replicas.unwrap_or(1));
                    }
                    watcher::Event::Delete(rs) => {
                        sized.remove(&rs.name_any());
                    }
                    _ => continue,
                }
                let mut seen = seen.lock().unwrap();
                seen.max_sized = seen.max_sized.max(sized.values().sum());
            }
        }
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let readiness = tokio::spawn({
        let seen = seen.clone();
        async move {
            let mut ready: BTreeSet<String> = BTreeSet::new();
            let mut listing = false;
            let mut events = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = events.next().await {
                match event {
                    watcher::Event::Init => listing = true,
                    watcher::Event::InitDone => listing = false,
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                        let is_ready = pod.metadata.deletion_timestamp.is_none()
                            && pod
                                .status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                        if is_ready {
                            ready.insert(pod.name_any());
                        } else {
                            ready.remove(&pod.name_any());
                        }
                    }
                    watcher::Event::Delete(pod) => {
                        ready.remove(&pod.name_any());
                    }
                }
                if listing {
                    // Half a list is not a state the cluster was in.
                    continue;
                }
                let mut seen = seen.lock().unwrap();
                seen.min_ready = Some(seen.min_ready.map_or(ready.len(), |m| m.min(ready.len())));
            }
        }
    });
    (seen, sizes, readiness)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_surge_and_unavailability_and_undo_returns() {
    let c = cluster("rolling").await;
    let client = c.client.clone();
    let kubelet = kubelet(&client, "rolling");
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    let deployments = c.deploy("web", 4, strategy).await;

    let (seen, sizes, readiness) = watch_extremes(&client, "rolling");
    wait_for("the watches' first lists", TIMEOUT, || async {
        let seen = seen.lock().unwrap();
        (seen.max_sized == 4 && seen.min_ready == Some(4)).then_some(())
    })
    .await;
    let new_image = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}});
    patch(&deployments, "web", &Patch::Strategic(new_image)).await;
    wait_rolled_out(&client, "rolling", "web", 4, "busybox:2").await;
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen.max_sized <= 4 + 1,
            "sets sized for {} pods, over 4 + maxSurge 1",
            seen.max_sized
        );
        assert!(seen.max_sized == 5, "the rollout surged: {}", seen.max_sized);
        let min_ready = seen.min_ready.unwrap();
        assert!(
            min_ready >= 3,
            "only {min_ready} pods ready, under 4 - maxUnavailable 1"
        );
    }
    sizes.abort();
    readiness.abort();

    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "rolling");
    let by_revision = |list: Vec<ReplicaSet>| -> BTreeMap<String, ReplicaSet> {
        list.into_iter()
            .map(|rs| (rs.annotations()["deployment.kubernetes.io/revision"].clone(), rs))
            .collect()
    };
    let revisions = by_revision(sets.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(revisions.keys().collect::<Vec<_>>(), ["1", "2"]);
    assert_eq!(revisions["1"].spec.replicas, Some(0));
    assert_eq!(revisions["2"].spec.replicas, Some(4));

    // `kubectl rollout undo`: revision 1's template, without its hash label, back on the deployment.
    let mut previous = serde_json::to_value(&revisions["1"].spec.template).unwrap();
    previous["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    let undo = json!([{"op": "replace", "path": "/spec/template", "value": previous}]);
    patch(
        &deployments,
        "web",
        &Patch::Json::<Value>(serde_json::from_value(undo).unwrap()),
    )
    .await;
    wait_rolled_out(&client, "rolling", "web", 4, "busybox:1").await;
    let revisions = by_revision(sets.list(&ListParams::default()).await.unwrap().items);
    assert_eq!(
        revisions.keys().collect::<Vec<_>>(),
        ["2", "3"],
        "revision 1's set came back as 3"
    );
    assert_eq!(
        revisions["3"].annotations()["deployment.kubernetes.io/revision-history"],
        "1"
    );
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "3");

    kubelet.abort();
    c.manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let c = cluster("recreate").await;
    let client = c.client.clone();
    let kubelet = kubelet(&client, "recreate");
    let deployments = c.deploy("web", 3, json!({"type": "Recreate"})).await;

    let mixed = Arc::new(Mutex::new(false));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "recreate");
    let watch = tokio::spawn({
        let mixed = mixed.clone();
        async move {
            let mut images: HashMap<String, String> = HashMap::new();
            let mut events = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = events.next().await {
                match event {
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                        images.insert(pod.name_any(), image(&pod));
                    }
                    watcher::Event::Delete(pod) => {
                        images.remove(&pod.name_any());
                    }
                    _ => continue,
                }
                let distinct: BTreeSet<&String> = images.values().collect();
                if distinct.len() > 1 {
                    *mixed.lock().unwrap() = true;
                }
            }
        }
    });
    let new_image = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}});
    patch(&deployments, "web", &Patch::Strategic(new_image)).await;
    wait_rolled_out(&client, "recreate", "web", 3, "busybox:2").await;
    assert!(!*mixed.lock().unwrap(), "old and new pods existed at once");

    watch.abort();
    kubelet.abort();
    c.manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_manager_creates_no_extra_pods() {
    let c = cluster("restart").await;
    let client = c.client.clone();
    // Every pod ever created in the namespace, as a watch sees them.
    let created = Arc::new(Mutex::new(BTreeSet::new()));
    let watch = tokio::spawn({
        let created = created.clone();
        let pods: Api<Pod> = Api::namespaced(client.clone(), "restart");
        async move {
            let mut events = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = events.next().await {
                if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event {
                    created.lock().unwrap().insert(pod.name_any());
                }
            }
        }
    });
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "restart");
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "keep"}, "spec": {"replicas": 5,
        "selector": {"matchLabels": {"app": "keep"}}, "template": template("keep", "busybox:1")}}))
    .unwrap();
    sets.create(&PostParams::default(), &rs).await.unwrap();

    let mut first = Some(c.manager);
    for round in 0..3 {
        let want = 5 + round;
        // The cluster's manager first, then a fresh one each round.
        let manager = first.take().unwrap_or_else(|| Manager::start(&c.server));
        if round > 0 {
            // Something for the new manager to do, so that the check below follows its syncs.
            patch(&sets, "keep", &Patch::Merge(json!({"spec": {"replicas": want}}))).await;
        }
        wait_for(&format!("{want} pods and their status"), TIMEOUT, || async {
            let rs = sets.get("keep").await.ok()?;
            let status = rs.status?;
            (status.replicas == want && status.observed_generation == rs.metadata.generation).then_some(())
        })
        .await;
        manager.stop().await;
        assert_eq!(active_pods(&client, "restart").await.len(), want as usize);
        assert_eq!(created.lock().unwrap().len(), want as usize, "pods made beyond {want}");
    }
    watch.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_sets_adopt_matching_orphans_and_release_relabeled_pods() {
    let c = cluster("adopt").await;
    let client = c.client.clone();
    let pods = c.api::<Pod>();
    let orphan: Pod = serde_json::from_value(json!({"metadata": {"name": "orphan", "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.unwrap();
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "a"}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": "a"}}, "template": template("a", "busybox:1")}}))
    .unwrap();
    c.api::<ReplicaSet>().create(&PostParams::default(), &rs).await.unwrap();
    let owned = || async {
        let pods = active_pods(&client, "adopt").await;
        let owned: Vec<_> = pods
            .iter()
            .filter(|p| owner_kind(p) == Some(("ReplicaSet".into(), "a".into())))
            .map(|p| p.name_any())
            .collect();
        (pods.len(), owned)
    };
    let (total, names) = wait_for("the orphan adopted and one pod made", TIMEOUT, || async {
        let (total, names) = owned().await;
        (names.len() == 2).then_some((total, names))
    })
    .await;
    assert_eq!(total, 2, "the orphan counts as one of the two");
    assert!(names.contains(&"orphan".to_string()));

    patch(
        &pods,
        "orphan",
        &Patch::Merge(json!({"metadata": {"labels": {"app": "b"}}})),
    )
    .await;
    wait_for("the relabeled pod released and replaced", TIMEOUT, || async {
        let (total, names) = owned().await;
        let released = pods.get("orphan").await.ok()?.owner_references().is_empty();
        (released && total == 3 && names.len() == 2 && !names.contains(&"orphan".to_string())).then_some(())
    })
    .await;
    c.manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controllers_keep_their_replicas() {
    let c = cluster("rc").await;
    let client = c.client.clone();
    let kubelet = kubelet(&client, "rc");
    let rc: ReplicationController = serde_json::from_value(json!({"metadata": {"name": "old"},
        "spec": {"replicas": 3, "selector": {"app": "old"}, "template": template("old", "busybox:1")}}))
    .unwrap();
    let rcs = c.api::<ReplicationController>();
    rcs.create(&PostParams::default(), &rc).await.unwrap();
    wait_for("3 ready replicas reported", TIMEOUT, || async {
        let status = rcs.get("old").await.ok()?.status?;
        (status.replicas == 3 && status.ready_replicas == Some(3) && status.available_replicas == Some(3)).then_some(())
    })
    .await;
    let pods = active_pods(&client, "rc").await;
    assert_eq!(pods.len(), 3);
    assert!(
        pods.iter()
            .all(|p| owner_kind(p) == Some(("ReplicationController".into(), "old".into())))
    );
    kubelet.abort();
    c.manager.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_the_apiserver_refuses_gets_an_event_and_a_replica_failure() {
    let c = cluster("refused").await;
    let client = c.client.clone();
    // Pods refuse label values with spaces; the set's selector does not look at that label.
    let rs: ReplicaSet = serde_json::from_value(json!({"metadata": {"name": "bad"}, "spec": {"replicas": 2,
        "selector": {"matchLabels": {"app": "bad"}},
        "template": {"metadata": {"labels": {"app": "bad", "note": "not a label"}},
                     "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}}))
    .unwrap();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "refused");
    sets.create(&PostParams::default(), &rs).await.unwrap();
    let condition = wait_for("the ReplicaFailure condition", TIMEOUT, || async {
        let conditions = sets.get("bad").await.ok()?.status?.conditions?;
        conditions
            .into_iter()
            .find(|c| c.type_.as_deref() == Some("ReplicaFailure"))
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("FailedCreate"));
    assert_eq!(condition.status.as_deref(), Some("True"));
    let events: Api<Event> = Api::namespaced(client.clone(), "refused");
    let event = wait_for("a FailedCreate event", TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedCreate"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.involved_object.name.as_deref(), Some("bad"));
    assert!(event.message.unwrap().starts_with("Error creating: "));
    assert!(active_pods(&client, "refused").await.is_empty());

    // Fixed, the set makes its pods and the condition goes.
    let fixed = json!({"spec": {"template": {"metadata": {"labels": {"note": "fine"}}}}});
    patch(&sets, "bad", &Patch::Merge(fixed)).await;
    wait_for("pods made and the condition gone", TIMEOUT, || async {
        let status = sets.get("bad").await.ok()?.status?;
        (status.replicas == 2 && status.conditions.is_none()).then_some(())
    })
    .await;
    c.manager.stop().await;
}
