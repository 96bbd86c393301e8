//! In-process integration tests: a real apiserver on an ephemeral loopback port, driven by
//! kube-rs as any client would. Every test runs twice: on the embedded store in a temporary
//! directory (`embedded::NAME`) and on a real etcd of its own (`etcd::NAME`): one suite, two
//! stores.

mod common;

use common::TestServer;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use serde_json::json;

/// Runs each test of this suite once per store, as `embedded::NAME` and `etcd::NAME`.
macro_rules! on_both_stores {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        mod embedded {
            $($(#[$attr])* async fn $name() {
                super::$name(crate::common::start().await).await
            })*
        }
        mod etcd {
            $($(#[$attr])* async fn $name() {
                super::$name(crate::common::start_on_etcd().await).await
            })*
        }
    };
}

on_both_stores!(
    #[tokio::test]
    kube_rs_creates_reads_patches_and_deletes,
    #[tokio::test]
    lists_paginate_and_filter_by_labels,
    #[tokio::test]
    watches_resume_from_a_resource_version,
    #[tokio::test]
    kube_runtime_watcher_sees_later_changes,
    #[tokio::test]
    deployments_default_scale_and_bump_generation,
    #[tokio::test]
    services_get_distinct_cluster_ips_released_on_delete,
    #[tokio::test]
    pods_on_a_node_wait_for_their_grace_period_unless_forced,
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    concurrent_patches_without_a_resource_version_all_apply,
);

async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "test"}}, "data": {"key": value}}))
        .unwrap()
}

async fn kube_rs_creates_reads_patches_and_deletes(server: TestServer) {
    namespace(&server.client, "crud").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "crud");

    let created = cms
        .create(&PostParams::default(), &configmap("one", "a"))
        .await
        .unwrap();
    assert!(created.uid().is_some());
    assert!(created.creation_timestamp().is_some());
    let rv: u64 = created.resource_version().unwrap().parse().unwrap();

    let fetched = cms.get("one").await.unwrap();
    assert_eq!(fetched.data.unwrap()["key"], "a");

    let patched = cms
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"other": "b"}})),
        )
        .await
        .unwrap();
    let data = patched.data.clone().unwrap();
    assert_eq!((data["key"].as_str(), data["other"].as_str()), ("a", "b"));
    assert!(patched.resource_version().unwrap().parse::<u64>().unwrap() > rv);

    let mut stale = created.clone();
    stale.data = Some([("key".to_string(), "stale".to_string())].into());
    let err = cms.replace("one", &PostParams::default(), &stale).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err:?}");

    cms.delete("one", &DeleteParams::default()).await.unwrap();
    let err = cms.get("one").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );
}

async fn lists_paginate_and_filter_by_labels(server: TestServer) {
    namespace(&server.client, "pages").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "pages");
    for i in 0..7 {
        let mut cm = configmap(&format!("cm-{i}"), "v");
        if i % 2 == 0 {
            cm.labels_mut().insert("even".into(), "yes".into());
        }
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let pages = |mut params: ListParams| {
        let cms = cms.clone();
        async move {
            let mut pages = Vec::new();
            loop {
                let page = cms.list(&params).await.unwrap();
                pages.push(page.items.iter().map(|c| c.name_any()).collect::<Vec<_>>());
                match page.metadata.continue_ {
                    Some(token) if !token.is_empty() => params = params.continue_token(&token),
                    _ => return pages,
                }
            }
        }
    };
    let names = |numbers: &[usize]| numbers.iter().map(|i| format!("cm-{i}")).collect::<Vec<_>>();
    assert_eq!(
        pages(ListParams::default().limit(3)).await,
        [names(&[0, 1, 2]), names(&[3, 4, 5]), names(&[6])]
    );
    // A page holds `limit` matching objects, however many others lie between them.
    assert_eq!(
        pages(ListParams::default().labels("even=yes").limit(2)).await,
        [names(&[0, 2]), names(&[4, 6])]
    );
    let even = cms.list(&ListParams::default().labels("even=yes")).await.unwrap();
    assert_eq!(even.items.len(), 4);
    let odd = cms.list(&ListParams::default().labels("!even")).await.unwrap();
    assert_eq!(odd.items.len(), 3);
}

async fn watches_resume_from_a_resource_version(server: TestServer) {
    namespace(&server.client, "watch").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "watch");
    let first = cms
        .create(&PostParams::default(), &configmap("before", "1"))
        .await
        .unwrap();
    let from = first.resource_version().unwrap();
    cms.create(&PostParams::default(), &configmap("after-1", "2"))
        .await
        .unwrap();
    cms.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"key": "3"}})),
    )
    .await
    .unwrap();
    cms.delete("after-1", &DeleteParams::default()).await.unwrap();

    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &from)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("watch event in time")
            .unwrap()
            .expect("stream still open");
        seen.push(match event {
            WatchEvent::Added(cm) => format!("ADDED {}", cm.name_any()),
            WatchEvent::Modified(cm) => format!("MODIFIED {}", cm.name_any()),
            WatchEvent::Deleted(cm) => format!("DELETED {}", cm.name_any()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(seen, ["ADDED after-1", "MODIFIED before", "DELETED after-1"]);
}

async fn kube_runtime_watcher_sees_later_changes(server: TestServer) {
    namespace(&server.client, "runtime").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "runtime");
    cms.create(&PostParams::default(), &configmap("existing", "1"))
        .await
        .unwrap();
    let mut events = kube::runtime::watcher(cms.clone(), kube::runtime::watcher::Config::default())
        .applied_objects()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.name_any(), "existing");
    cms.create(&PostParams::default(), &configmap("later", "2"))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.name_any(), "later");
}

async fn deployments_default_scale_and_bump_generation(server: TestServer) {
    namespace(&server.client, "apps").await;
    let deploys: Api<Deployment> = Api::namespaced(server.client.clone(), "apps");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let created = deploys.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.spec.replicas, Some(1));
    let scale = deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(4));
    let after = deploys.get("web").await.unwrap();
    assert_eq!(after.spec.replicas, Some(4));
    assert_eq!(after.metadata.generation, Some(2));
    let status_only = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 4}, "spec": {"replicas": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(
        status_only.spec.replicas,
        Some(4),
        "the status subresource changes only status"
    );
    assert_eq!(status_only.status.unwrap().replicas, Some(4));
    // As upstream, a Deployment's status write also takes annotations (the controller writes its
    // revision that way), but not labels, and it is no new generation.
    let annotated = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "1"},
                                              "labels": {"tier": "web"}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(annotated.annotations()["deployment.kubernetes.io/revision"], "1");
    assert!(annotated.labels().is_empty(), "{:?}", annotated.labels());
    assert_eq!(annotated.metadata.generation, Some(2));
}

async fn services_get_distinct_cluster_ips_released_on_delete(server: TestServer) {
    namespace(&server.client, "svc").await;
    let services: Api<Service> = Api::namespaced(server.client.clone(), "svc");
    let svc = |name: &str| -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
        )
        .unwrap()
    };
    let a = services.create(&PostParams::default(), &svc("a")).await.unwrap();
    let b = services.create(&PostParams::default(), &svc("b")).await.unwrap();
    let ip = |s: &Service| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    let node_port = |s: &Service| s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].node_port.unwrap();
    assert_ne!(ip(&a), ip(&b));
    assert!(ip(&a).starts_with("10.0.0."));
    assert!((30000..=32767).contains(&node_port(&a)));
    assert_ne!(node_port(&a), node_port(&b));

    // Taking a's address explicitly fails while a holds it, and works once a is gone.
    let mut wanted = svc("c");
    wanted.spec.as_mut().unwrap().cluster_ip = Some(ip(&a));
    let err = services.create(&PostParams::default(), &wanted).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 422), "{err:?}");
    services.delete("a", &DeleteParams::default()).await.unwrap();
    let c = services.create(&PostParams::default(), &wanted).await.unwrap();
    assert_eq!(ip(&c), ip(&a));
}

async fn pods_on_a_node_wait_for_their_grace_period_unless_forced(server: TestServer) {
    use k8s_openapi::api::core::v1::Pod;
    namespace(&server.client, "grace").await;
    let pods: Api<Pod> = Api::namespaced(server.client.clone(), "grace");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let marked = pods.get("p").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));

    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let again = pods.get("p").await.unwrap();
    assert_eq!(
        again.resource_version(),
        marked.resource_version(),
        "a second delete changes nothing"
    );

    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let err = pods.get("p").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 404), "{err:?}");
}

async fn concurrent_patches_without_a_resource_version_all_apply(server: TestServer) {
    namespace(&server.client, "patches").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "patches");
    cms.create(&PostParams::default(), &configmap("shared", "0"))
        .await
        .unwrap();
    // Like controllers and kubectl writing one object at once: each patch names no
    // resourceVersion, so a race makes the server retry it on the newer object.
    let writers = (0..32).map(|i| {
        let cms = cms.clone();
        async move {
            let patch = json!({"data": {format!("k{i}"): i.to_string()}});
            cms.patch("shared", &PatchParams::default(), &Patch::Merge(patch)).await
        }
    });
    for result in futures::future::join_all(writers).await {
        result.expect("a patch without a resourceVersion never conflicts");
    }
    let data = cms.get("shared").await.unwrap().data.unwrap();
    assert_eq!(data.len(), 33, "every patch landed: {data:?}");
    // A patch that names a stale resourceVersion still conflicts.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "data": {"late": "x"}});
    let err = cms
        .patch("shared", &PatchParams::default(), &Patch::Merge(stale))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err}");
}
