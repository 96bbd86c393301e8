//! The endpoint, endpointslice, namespace and garbage-collector controllers against a real
//! in-process apiserver: the controller manager runs them as `hyperkube controller-manager`
//! would, and the tests stand in for kubelets (`mark_pod`) and users.

mod common;

use std::time::Duration;

use common::{TestServer, flags, mark_pod, register_node, start, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const TIMEOUT: Duration = Duration::from_secs(20);

/// An apiserver with the controller manager running `controllers` against it; both stop when
/// dropped.
struct Cluster {
    server: TestServer,
    controllers: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controllers.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Cluster {
    async fn start(controllers: &str) -> Self {
        let server = start().await;
        let args = flags::<hyperkube::controller::Args>(&[
            "--master",
            &server.url,
            "--leader-elect=false",
            &format!("--controllers={controllers}"),
        ]);
        let token = CancellationToken::new();
        let task = tokio::spawn({
            let token = token.clone();
            async move { hyperkube::controller::run(args, token).await.unwrap() }
        });
        Self {
            server,
            controllers: token,
            task: Some(task),
        }
    }

    fn client(&self) -> Client {
        self.server.client.clone()
    }

    async fn namespace(&self, name: &str) {
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.client())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    let obj: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj).await.unwrap()
}

/// A pod on `node` labelled `app=web`, serving port 8080 under the name `http`.
fn web_pod(name: &str, node: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                 "ports": [{"name": "http", "containerPort": 8080}]}]}
    })
}

/// The (ready, not ready) pod names of an Endpoints object, sorted.
fn endpoint_pods(ep: &Endpoints) -> (Vec<String>, Vec<String>) {
    let names = |ready: bool| {
        let mut out: Vec<String> = ep
            .subsets
            .iter()
            .flatten()
            .flat_map(|s| if ready { &s.addresses } else { &s.not_ready_addresses })
            .flatten()
            .filter_map(|a| a.target_ref.as_ref()?.name.clone())
            .collect();
        out.sort();
        out
    };
    (names(true), names(false))
}

#[tokio::test]
async fn endpoints_follow_pod_readiness() {
    let cluster = Cluster::start("endpoint").await;
    let client = cluster.client();
    cluster.namespace("web").await;
    register_node(&client, "node-1", "4", "8Gi", 110).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "web");
    let services: Api<Service> = Api::namespaced(client.clone(), "web");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "web");
    create(&pods, web_pod("a", "node-1")).await;
    create(&pods, web_pod("b", "node-1")).await;
    create(
        &services,
        json!({"metadata": {"name": "web", "labels": {"tier": "front"}},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    // A Service without a selector: its Endpoints are the user's.
    create(
        &services,
        json!({"metadata": {"name": "manual"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;

    // Pods without an address are not listed.
    let ep = wait_for("the Endpoints of web", TIMEOUT, || async {
        endpoints.get_opt("web").await.unwrap()
    })
    .await;
    assert_eq!(endpoint_pods(&ep), (vec![], vec![]));
    assert_eq!(ep.labels()["tier"], "front");

    mark_pod(&client, "web", "a", "Running", true).await;
    mark_pod(&client, "web", "b", "Running", false).await;
    let ep = wait_for("a ready and b not ready", TIMEOUT, || async {
        let ep = endpoints.get("web").await.unwrap();
        (endpoint_pods(&ep) == (vec!["a".into()], vec!["b".into()])).then_some(ep)
    })
    .await;
    let subset = &ep.subsets.as_ref().unwrap()[0];
    let port = &subset.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), 8080));
    let address = &subset.addresses.as_ref().unwrap()[0];
    assert_eq!(
        (address.ip.as_str(), address.node_name.as_deref()),
        ("10.244.0.10", Some("node-1"))
    );
    assert_eq!(address.target_ref.as_ref().unwrap().kind.as_deref(), Some("Pod"));

    mark_pod(&client, "web", "b", "Running", true).await;
    mark_pod(&client, "web", "a", "Running", false).await;
    wait_for("b ready and a not ready", TIMEOUT, || async {
        let ep = endpoints.get("web").await.unwrap();
        (endpoint_pods(&ep) == (vec!["b".into()], vec!["a".into()])).then_some(())
    })
    .await;

    // Finished pods leave; deleting the Service removes its Endpoints.
    mark_pod(&client, "web", "a", "Succeeded", false).await;
    wait_for("a gone from the Endpoints", TIMEOUT, || async {
        let ep = endpoints.get("web").await.unwrap();
        (endpoint_pods(&ep) == (vec!["b".into()], vec![])).then_some(())
    })
    .await;
    assert!(endpoints.get_opt("manual").await.unwrap().is_none());
    services.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for("the Endpoints of web to go", TIMEOUT, || async {
        endpoints.get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn publish_not_ready_addresses_lists_unready_pods_as_ready() {
    let cluster = Cluster::start("endpoint,endpointslice").await;
    let client = cluster.client();
    cluster.namespace("web").await;
    register_node(&client, "node-1", "4", "8Gi", 110).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "web");
    create(&pods, web_pod("a", "node-1")).await;
    mark_pod(&client, "web", "a", "Running", false).await;
    create(
        &Api::<Service>::namespaced(client.clone(), "web"),
        json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
               "publishNotReadyAddresses": true, "ports": [{"port": 80, "targetPort": 8080}]}}),
    )
    .await;
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "web");
    wait_for("a listed as ready", TIMEOUT, || async {
        let ep = endpoints.get_opt("web").await.unwrap()?;
        (endpoint_pods(&ep) == (vec!["a".into()], vec![])).then_some(())
    })
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "web");
    let conditions = wait_for("a in a slice", TIMEOUT, || async {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .unwrap();
        list.items
            .into_iter()
            .flat_map(|s| s.endpoints.unwrap_or_default())
            .next()?
            .conditions
    })
    .await;
    assert_eq!((conditions.ready, conditions.serving), (Some(true), Some(false)));
}

/// The conditions (ready, serving, terminating) of each pod in the Service's slices.
async fn slice_conditions(slices: &Api<EndpointSlice>, service: &str) -> Vec<(String, bool, bool, bool)> {
    let selector = format!("kubernetes.io/service-name={service}");
    let list = slices.list(&ListParams::default().labels(&selector)).await.unwrap();
    let mut out: Vec<_> = list
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .map(|e| {
            let c = e.conditions.clone().unwrap_or_default();
            let name = e.target_ref.as_ref().and_then(|r| r.name.clone()).unwrap_or_default();
            (
                name,
                c.ready == Some(true),
                c.serving == Some(true),
                c.terminating == Some(true),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn endpoint_slices_follow_pod_readiness_and_termination() {
    let cluster = Cluster::start("endpointslice").await;
    let client = cluster.client();
    cluster.namespace("web").await;
    register_node(&client, "node-1", "4", "8Gi", 110).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "web");
    create(&pods, web_pod("a", "node-1")).await;
    create(&pods, web_pod("b", "node-1")).await;
    let service: Service = create(
        &Api::<Service>::namespaced(client.clone(), "web"),
        json!({"metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}),
    )
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "web");

    // No endpoints yet: one placeholder slice.
    let placeholder = wait_for("a placeholder slice", TIMEOUT, || async {
        slices
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
    })
    .await;
    assert!(placeholder.endpoints.unwrap_or_default().is_empty());
    let labels = placeholder.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &placeholder.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.clone()),
        ("Service", service.uid().unwrap())
    );

    mark_pod(&client, "web", "a", "Running", true).await;
    mark_pod(&client, "web", "b", "Running", false).await;
    wait_for("a ready, b not", TIMEOUT, || async {
        let want = vec![("a".into(), true, true, false), ("b".into(), false, false, false)];
        (slice_conditions(&slices, "web").await == want).then_some(())
    })
    .await;
    let list = slices.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(list.len(), 1, "the placeholder made way: {list:?}");
    assert_eq!(list[0].address_type, "IPv4");
    let port = &list[0].ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), Some(8080)));
    assert_eq!(list[0].endpoints.as_ref().unwrap()[0].addresses, ["10.244.0.10"]);

    // A pod being deleted stays listed as terminating, serving while it is ready.
    pods.delete("a", &DeleteParams::default()).await.unwrap();
    wait_for("a terminating", TIMEOUT, || async {
        let want = vec![("a".into(), false, true, true), ("b".into(), false, false, false)];
        (slice_conditions(&slices, "web").await == want).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_a_namespace_removes_its_content_and_then_the_namespace() {
    let cluster = Cluster::start("namespace").await;
    let client = cluster.client();
    cluster.namespace("doomed").await;
    cluster.namespace("kept").await;
    for ns in ["doomed", "kept"] {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        create(&cms, json!({"metadata": {"name": "cm"}})).await;
        create(&Api::<Pod>::namespaced(client.clone(), ns), web_pod("p", "")).await;
        create(
            &Api::<Service>::namespaced(client.clone(), ns),
            json!({"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await;
    }
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "doomed");
    create(&leases, json!({"metadata": {"name": "l"}})).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    wait_for("the namespace to go", TIMEOUT, || async {
        namespaces.get_opt("doomed").await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), "doomed")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        Api::<Pod>::namespaced(client.clone(), "doomed")
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(leases.list(&ListParams::default()).await.unwrap().items.is_empty());
    // Other namespaces keep theirs.
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), "kept")
            .get_opt("cm")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<Service>::namespaced(client.clone(), "kept")
            .get_opt("svc")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_namespace_waits_for_content_held_by_a_finalizer_and_says_so() {
    let cluster = Cluster::start("namespace").await;
    let client = cluster.client();
    cluster.namespace("held").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "held");
    create(
        &cms,
        json!({"metadata": {"name": "cm", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete("held", &DeleteParams::default()).await.unwrap();
    let condition = wait_for("NamespaceFinalizersRemaining", TIMEOUT, || async {
        let ns = namespaces.get("held").await.unwrap();
        let conditions = ns.status?.conditions?;
        conditions
            .into_iter()
            .find(|c| c.type_ == "NamespaceFinalizersRemaining" && c.status == "True")
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("SomeFinalizersRemain"));
    let ns = namespaces.get("held").await.unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert!(ns.spec.unwrap().finalizers.unwrap().contains(&"kubernetes".to_string()));

    cms.patch(
        "cm",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for("the namespace to go", Duration::from_secs(40), || async {
        namespaces.get_opt("held").await.unwrap().is_none().then_some(())
    })
    .await;
}

/// An owner reference to `owner`.
fn owner_ref(owner: &ConfigMap, block: bool) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": owner.name_any(), "uid": owner.uid().unwrap(),
           "blockOwnerDeletion": block})
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.get_opt(name).await.unwrap().is_none()
}

/// A cluster running the garbage collector, with a namespace `gc` and its ConfigMaps.
async fn gc_cluster() -> (Cluster, Api<ConfigMap>) {
    let cluster = Cluster::start("garbagecollector").await;
    cluster.namespace("gc").await;
    let cms = Api::namespaced(cluster.client(), "gc");
    (cluster, cms)
}

#[tokio::test]
async fn background_deletion_removes_dependents_of_any_kind() {
    let (cluster, cms) = gc_cluster().await;
    let client = cluster.client();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "gc");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "gc");
    let owner: ConfigMap = create(&cms, json!({"metadata": {"name": "owner"}})).await;
    let other: ConfigMap = create(&cms, json!({"metadata": {"name": "other"}})).await;
    let owned = |name: &str, refs: Vec<serde_json::Value>| json!({"metadata": {"name": name, "ownerReferences": refs}});
    create(&cms, owned("dep-cm", vec![owner_ref(&owner, true)])).await;
    create(&secrets, owned("dep-secret", vec![owner_ref(&owner, false)])).await;
    create(&leases, owned("dep-lease", vec![owner_ref(&owner, false)])).await;
    create(
        &cms,
        owned("two-owners", vec![owner_ref(&owner, false), owner_ref(&other, false)]),
    )
    .await;

    cms.delete("owner", &DeleteParams::background()).await.unwrap();
    wait_for("the dependents to go", TIMEOUT, || async {
        (gone(&cms, "dep-cm").await && gone(&secrets, "dep-secret").await && gone(&leases, "dep-lease").await)
            .then_some(())
    })
    .await;
    // An object with an owner left stays, without the reference to the gone one.
    let survivor = wait_for("the gone owner's reference to go", TIMEOUT, || async {
        let cm = cms.get("two-owners").await.unwrap();
        (cm.owner_references().len() == 1).then_some(cm)
    })
    .await;
    assert_eq!(survivor.owner_references()[0].uid, other.uid().unwrap());
}

#[tokio::test]
async fn objects_created_with_a_dangling_owner_reference_are_collected() {
    let (_cluster, cms) = gc_cluster().await;
    let alive: ConfigMap = create(&cms, json!({"metadata": {"name": "alive"}})).await;
    let missing = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "never", "uid": "3b1c7e4a-0000-4000-8000-000000000000"});
    create(
        &cms,
        json!({"metadata": {"name": "orphaned", "ownerReferences": [missing]}}),
    )
    .await;
    create(
        &cms,
        json!({"metadata": {"name": "owned", "ownerReferences": [owner_ref(&alive, false)]}}),
    )
    .await;
    wait_for("the object without an owner to go", TIMEOUT, || async {
        gone(&cms, "orphaned").await.then_some(())
    })
    .await;
    assert!(!gone(&cms, "owned").await, "an object whose owner exists stays");
}

#[tokio::test]
async fn a_cluster_scoped_object_owned_by_a_namespaced_one_gets_an_event_about_it() {
    let (cluster, _) = gc_cluster().await;
    let namespaces: Api<Namespace> = Api::all(cluster.client());
    let owner = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "3b1c7e4a-0000-4000-8000-000000000001"});
    let claimed: Namespace = create(
        &namespaces,
        json!({"metadata": {"name": "claimed", "ownerReferences": [owner]}}),
    )
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(cluster.client(), "default");
    let event = wait_for("an OwnerRefInvalidNamespace event", TIMEOUT, || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("OwnerRefInvalidNamespace"))
    })
    .await;
    let involved = &event.involved_object;
    assert_eq!(
        (
            involved.kind.as_deref(),
            involved.name.as_deref(),
            involved.api_version.as_deref()
        ),
        (Some("Namespace"), Some("claimed"), Some("v1"))
    );
    assert_eq!(involved.uid, claimed.uid());
    assert_eq!(event.type_.as_deref(), Some("Warning"));
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_before_the_owner() {
    let (_cluster, cms) = gc_cluster().await;
    let owner: ConfigMap = create(&cms, json!({"metadata": {"name": "owner"}})).await;
    // A dependent that a finalizer of its own keeps for a while once deleted.
    create(
        &cms,
        json!({"metadata": {"name": "slow", "finalizers": ["example.com/hold"], "ownerReferences": [owner_ref(&owner, true)]}}),
    )
    .await;
    create(
        &cms,
        json!({"metadata": {"name": "quick", "ownerReferences": [owner_ref(&owner, true)]}}),
    )
    .await;

    cms.delete("owner", &DeleteParams::foreground()).await.unwrap();
    wait_for("the dependents to be deleted", TIMEOUT, || async {
        let slow = cms.get("slow").await.unwrap();
        (slow.metadata.deletion_timestamp.is_some() && gone(&cms, "quick").await).then_some(())
    })
    .await;
    // The owner waits for its last blocking dependent.
    let waiting = cms.get("owner").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(waiting.finalizers(), ["foregroundDeletion"]);

    cms.patch(
        "slow",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for("the owner to go after its dependents", TIMEOUT, || async {
        gone(&cms, "owner").await.then_some(())
    })
    .await;
    assert!(gone(&cms, "slow").await);
}

#[tokio::test]
async fn orphan_deletion_leaves_the_dependents_without_the_owner_reference() {
    let (_cluster, cms) = gc_cluster().await;
    let owner: ConfigMap = create(&cms, json!({"metadata": {"name": "owner"}})).await;
    for name in ["dep-1", "dep-2"] {
        create(
            &cms,
            json!({"metadata": {"name": name, "ownerReferences": [owner_ref(&owner, true)]}}),
        )
        .await;
    }
    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    wait_for("the owner to go", TIMEOUT, || async {
        gone(&cms, "owner").await.then_some(())
    })
    .await;
    for name in ["dep-1", "dep-2"] {
        let dep = cms.get(name).await.unwrap();
        assert!(
            dep.owner_references().is_empty(),
            "{name}: {:?}",
            dep.owner_references()
        );
        assert!(dep.metadata.deletion_timestamp.is_none());
    }
}

#[tokio::test]
async fn the_finalize_subresource_changes_only_a_namespaces_finalizers_and_ends_its_deletion() {
    let server = start().await;
    let namespaces: Api<Namespace> = Api::all(server.client.clone());
    let ns: Namespace = create(&namespaces, json!({"metadata": {"name": "fin", "labels": {"a": "1"}}})).await;
    assert_eq!(ns.spec.clone().unwrap().finalizers.unwrap(), ["kubernetes"]);

    // A plain update cannot drop the finalizer.
    let mut plain = ns.clone();
    plain.spec.as_mut().unwrap().finalizers = Some(vec![]);
    let updated = namespaces.replace("fin", &PostParams::default(), &plain).await.unwrap();
    assert_eq!(updated.spec.unwrap().finalizers.unwrap(), ["kubernetes"]);

    namespaces.delete("fin", &DeleteParams::default()).await.unwrap();
    let mut finalized = namespaces.get("fin").await.unwrap();
    assert_eq!(finalized.status.clone().unwrap().phase.as_deref(), Some("Terminating"));
    finalized.spec.as_mut().unwrap().finalizers = Some(vec![]);
    finalized.metadata.labels = Some([("a".to_string(), "changed".to_string())].into());
    let stale = finalized.clone();
    namespaces
        .replace_subresource("finalize", "fin", &PostParams::default(), &finalized)
        .await
        .unwrap();
    assert!(
        namespaces.get_opt("fin").await.unwrap().is_none(),
        "finalized while terminating: gone"
    );
    let err = namespaces
        .replace_subresource("finalize", "fin", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");

    // Outside a deletion only spec.finalizers changes.
    let live: Namespace = create(&namespaces, json!({"metadata": {"name": "live", "labels": {"a": "1"}}})).await;
    let mut change = live.clone();
    change.spec.as_mut().unwrap().finalizers = Some(vec!["example.com/x".into()]);
    change.metadata.labels = Some([("a".to_string(), "changed".to_string())].into());
    let out: Namespace = namespaces
        .replace_subresource("finalize", "live", &PostParams::default(), &change)
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().finalizers.unwrap(), ["example.com/x"]);
    assert_eq!(out.metadata.labels.unwrap()["a"], "1");
}
