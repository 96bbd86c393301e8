//! The apiserver on a real etcd (Debian's etcd-server, started by the tests on free loopback
//! ports): upstream's key layout, compaction and 410, an outage of etcd under a steady writer,
//! two apiservers sharing one etcd, TLS with client certificates, and failover between members.
//! The rest of the apiserver's behaviour on etcd is tests/apiserver.rs's `etcd::` half.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Etcd, EtcdTlsFiles, TestServer, events_by_reason, flags, register_node, start_with, wait_for};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, ObjectList, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

async fn on_etcd(etcd: &Etcd, extra: &[&str]) -> TestServer {
    let servers = format!("--etcd-servers={}", etcd.urls());
    let mut argv = vec![servers.as_str()];
    argv.extend_from_slice(extra);
    start_with(&argv).await
}

async fn namespace(client: &Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"key": "value"}})).unwrap()
}

fn rv<K: ResourceExt>(obj: &K) -> u64 {
    obj.resource_version().unwrap().parse().unwrap()
}

/// A raw etcd client, to look at what the apiserver stored.
async fn raw(etcd: &Etcd) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.url(0)], None).await.unwrap()
}

#[tokio::test]
async fn objects_live_under_upstreams_keys_with_the_etcd_revision_as_resource_version() {
    let etcd = Etcd::start().await;
    let server = on_etcd(&etcd, &["--etcd-prefix=/custom"]).await;
    namespace(&server.client, "layout").await;
    let created = Api::<ConfigMap>::namespaced(server.client.clone(), "layout")
        .create(&PostParams::default(), &configmap("settings"))
        .await
        .unwrap();

    let mut etcd_client = raw(&etcd).await;
    let stored = etcd_client
        .get("/custom/configmaps/layout/settings", None)
        .await
        .unwrap();
    let kv = &stored.kvs()[0];
    assert_eq!(u64::try_from(kv.mod_revision()).unwrap(), rv(&created));
    let doc: serde_json::Value = serde_json::from_slice(kv.value()).unwrap();
    assert_eq!(doc["metadata"]["name"], "settings");
    assert_eq!(doc["data"]["key"], "value");
    let namespaces = etcd_client
        .get(
            "/custom/namespaces/",
            Some(etcd_client::GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = namespaces.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
    assert!(keys.contains(&"/custom/namespaces/layout"), "{keys:?}");
    assert!(keys.contains(&"/custom/namespaces/kube-system"), "{keys:?}");
    let elsewhere = etcd_client
        .get(
            "/registry/",
            Some(etcd_client::GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(elsewhere.count(), 0, "nothing is written outside --etcd-prefix");
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_gets_410_expired_and_a_fresh_one_works() {
    let etcd = Etcd::start().await;
    let server = on_etcd(&etcd, &["--etcd-compaction-interval=200ms"]).await;
    namespace(&server.client, "compact").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "compact");
    let old = rv(&cms.create(&PostParams::default(), &configmap("old")).await.unwrap());

    let etcd_client = raw(&etcd).await;
    wait_for("etcd to compact past the ConfigMap's revision", WAIT, || {
        let mut etcd_client = etcd_client.clone();
        async move {
            let at = etcd_client::GetOptions::new().with_revision(i64::try_from(old).unwrap() + 1);
            let err = etcd_client.get("/registry/configmaps/", Some(at)).await.err()?;
            err.to_string().contains("compacted").then_some(())
        }
    })
    .await;

    // The first watch of ConfigMaps starts their watch cache, which finds its history compacted.
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &old.to_string())
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(WAIT, stream.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"), "{status:?}")
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // A client that re-lists watches on from the list's revision.
    let list = cms.list(&ListParams::default()).await.unwrap();
    let from = list.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &from)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &configmap("new")).await.unwrap();
    match tokio::time::timeout(WAIT, stream.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.name_any(), "new"),
        other => panic!("expected ADDED new, got {other:?}"),
    }
}

#[tokio::test]
async fn list_pages_are_read_at_the_first_pages_revision_until_it_is_compacted() {
    let etcd = Etcd::start().await;
    let server = on_etcd(&etcd, &[]).await;
    namespace(&server.client, "pages").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "pages");
    for i in 0..9 {
        cms.create(&PostParams::default(), &configmap(&format!("cm-{i}")))
            .await
            .unwrap();
    }
    let names = |list: &ObjectList<ConfigMap>| list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>();
    let next = |list: &ObjectList<ConfigMap>| {
        let token = list.metadata.continue_.clone().expect("a continue token");
        ListParams::default().limit(3).continue_token(&token)
    };

    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(names(&first), ["cm-0", "cm-1", "cm-2"]);
    assert_eq!(first.metadata.remaining_item_count, Some(6));
    let revision = first.metadata.resource_version.clone();

    // Between pages, objects of the next ones go, appear and change: the pages still show the
    // list as it was at the first page.
    cms.delete("cm-4", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &configmap("cm-3a")).await.unwrap();
    cms.patch(
        "cm-5",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"key": "changed"}})),
    )
    .await
    .unwrap();
    let second = cms.list(&next(&first)).await.unwrap();
    assert_eq!(names(&second), ["cm-3", "cm-4", "cm-5"]);
    assert_eq!(second.items[2].data.as_ref().unwrap()["key"], "value");
    assert_eq!(second.metadata.resource_version, revision);
    assert_eq!(second.metadata.remaining_item_count, Some(3));

    cms.delete("cm-7", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &configmap("cm-9")).await.unwrap();
    let third = cms.list(&next(&second)).await.unwrap();
    assert_eq!(names(&third), ["cm-6", "cm-7", "cm-8"]);
    assert_eq!(third.metadata.continue_.as_deref().unwrap_or_default(), "");
    assert_eq!(third.metadata.resource_version, revision);

    let now = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        names(&now),
        ["cm-0", "cm-1", "cm-2", "cm-3", "cm-3a", "cm-5", "cm-6", "cm-8", "cm-9"]
    );

    // Once etcd has compacted the first page's revision, continuing is 410 Expired, and the
    // Status carries a token that goes on at the newest revision instead.
    let mut etcd_client = raw(&etcd).await;
    let newest = etcd_client
        .get("compact", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    etcd_client.compact(newest, None).await.unwrap();
    let err = cms.list(&next(&first)).await.unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("not a Status: {err:?}")
    };
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"), "{status:?}");
    assert!(
        status
            .message
            .starts_with("The provided continue parameter is too old to display a consistent list result."),
        "{}",
        status.message
    );
    let inconsistent = status
        .metadata
        .and_then(|m| m.continue_)
        .expect("a token in the Status");
    let rest = cms
        .list(&ListParams::default().limit(3).continue_token(&inconsistent))
        .await
        .unwrap();
    assert_eq!(names(&rest), ["cm-3", "cm-3a", "cm-5"]);
    assert_eq!(rest.items[2].data.as_ref().unwrap()["key"], "changed");
}

/// The revision a list of `api` is read at: where a watch that follows it starts.
async fn list_revision(api: &Api<ConfigMap>) -> String {
    let list = api.list(&ListParams::default()).await.unwrap();
    list.metadata.resource_version.unwrap()
}

/// Waits until `seen` (from `record_watch`) ends at revision `newest`, and returns it.
async fn caught_up(seen: &Mutex<Vec<(String, String, u64)>>, newest: u64) -> Vec<(String, String, u64)> {
    wait_for("the watcher to catch up", WAIT, || async {
        let seen = seen.lock().unwrap().clone();
        seen.last().is_some_and(|(_, _, v)| *v == newest).then_some(seen)
    })
    .await
}

/// Watches ConfigMaps in `ns` from `from` until cancelled, re-opening the watch where it ended;
/// records every (type, name, resourceVersion) seen. A 410 would mean lost events: it panics.
fn record_watch(api: Api<ConfigMap>, from: String, stop: CancellationToken) -> Arc<Mutex<Vec<(String, String, u64)>>> {
    let seen: Arc<Mutex<Vec<(String, String, u64)>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let mut last = from;
        while !stop.is_cancelled() {
            let Ok(stream) = api.watch(&WatchParams::default().timeout(30), &last).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut stream = stream.boxed();
            loop {
                let event = tokio::select! {
                    event = stream.next() => event,
                    _ = stop.cancelled() => return,
                };
                let (kind, cm) = match event {
                    Some(Ok(WatchEvent::Added(cm))) => ("ADDED", cm),
                    Some(Ok(WatchEvent::Modified(cm))) => ("MODIFIED", cm),
                    Some(Ok(WatchEvent::Deleted(cm))) => ("DELETED", cm),
                    Some(Ok(WatchEvent::Bookmark(_))) => continue,
                    Some(Ok(WatchEvent::Error(status))) => panic!("the watch failed: {status:?}"),
                    Some(Err(_)) | None => break,
                };
                last = cm.resource_version().unwrap();
                record.lock().unwrap().push((kind.to_string(), cm.name_any(), rv(&cm)));
            }
        }
    });
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_down_for_ten_seconds_gives_clean_errors_then_loses_nothing() {
    let mut etcd = Etcd::start().await;
    let server = on_etcd(&etcd, &[]).await;
    namespace(&server.client, "outage").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "outage");
    let from = list_revision(&cms).await;
    let stop_watch = CancellationToken::new();
    let seen = record_watch(cms.clone(), from, stop_watch.clone());

    // A steady writer: one create after another, recording what was acknowledged and how each
    // failure looked and how long it took. Its client does not retry (kube-rs retries 503 and
    // 504 by default), so it sees every error.
    let mut config = kube::Config::new(server.url.parse().unwrap());
    config.default_retry = false;
    let writes: Api<ConfigMap> = Api::namespaced(Client::try_from(config).unwrap(), "outage");
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<(u16, Duration)>>> = Arc::default();
    let stop = CancellationToken::new();
    let writer = tokio::spawn({
        let (cms, acked, failures, stop) = (writes, acked.clone(), failures.clone(), stop.clone());
        async move {
            let mut i = 0;
            while !stop.is_cancelled() {
                let name = format!("cm-{i}");
                let started = Instant::now();
                match cms.create(&PostParams::default(), &configmap(&name)).await {
                    Ok(cm) => {
                        acked.lock().unwrap().push((name, rv(&cm)));
                        i += 1;
                    }
                    Err(kube::Error::Api(status)) => {
                        failures.lock().unwrap().push((status.code, started.elapsed()));
                        // A write that timed out may have landed: go on with a fresh name.
                        i += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(other) => panic!("not a Status: {other}"),
                }
            }
        }
    });
    let acked_count = || acked.lock().unwrap().len();
    wait_for("50 acknowledged writes", WAIT, || async {
        (acked_count() >= 50).then_some(())
    })
    .await;

    etcd.kill(0);
    let readyz = |client: Client| async move {
        let request = http::Request::get("/readyz").body(kube::client::Body::empty()).unwrap();
        client.send(request).await.map(|r| r.status().as_u16()).ok()
    };
    wait_for("/readyz to report the store down", WAIT, || async {
        readyz(server.client.clone()).await.filter(|code| *code != 200)
    })
    .await;
    // The outage itself lasts ten seconds, whatever happens meanwhile.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = acked_count();
    etcd.restart(0).await;

    wait_for("/readyz to recover", WAIT, || async {
        readyz(server.client.clone()).await.filter(|code| *code == 200)
    })
    .await;
    wait_for("50 more acknowledged writes", WAIT, || async {
        (acked_count() >= during + 50).then_some(())
    })
    .await;
    stop.cancel();
    writer.await.unwrap();

    let failures = failures.lock().unwrap().clone();
    assert!(!failures.is_empty(), "the writer saw no error while etcd was down");
    for (code, took) in &failures {
        assert!([503, 504].contains(code), "a write failed with {code}, not 503/504");
        assert!(*took < Duration::from_secs(10), "a failed write took {took:?}");
    }

    // Every acknowledged write is stored, as acknowledged; the watcher saw every stored object
    // exactly once, in order (a write whose acknowledgement timed out may have landed too).
    let stored: BTreeMap<String, u64> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|cm| (cm.name_any(), rv(cm)))
        .collect();
    for (name, version) in acked.lock().unwrap().iter() {
        assert_eq!(stored.get(name), Some(version), "acknowledged {name} at {version}");
    }
    let newest = stored.values().copied().max().unwrap();
    let seen = caught_up(&seen, newest).await;
    stop_watch.cancel();
    let versions: Vec<u64> = seen.iter().map(|(_, _, v)| *v).collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "out of order or twice: {versions:?}"
    );
    assert!(seen.iter().all(|(kind, _, _)| kind == "ADDED"));
    let watched: BTreeMap<String, u64> = seen.into_iter().map(|(_, name, v)| (name, v)).collect();
    assert_eq!(watched, stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apiservers_on_one_etcd_see_one_history() {
    let etcd = Etcd::start().await;
    let a = on_etcd(&etcd, &[]).await;
    let b = on_etcd(&etcd, &[]).await;
    namespace(&a.client, "shared").await;
    let on_a: Api<ConfigMap> = Api::namespaced(a.client.clone(), "shared");
    let on_b: Api<ConfigMap> = Api::namespaced(b.client.clone(), "shared");
    let from = list_revision(&on_a).await;
    let stop = CancellationToken::new();
    let seen_a = record_watch(on_a.clone(), from.clone(), stop.clone());
    let seen_b = record_watch(on_b.clone(), from, stop.clone());

    // A write through one is read at once through the other, at the same resourceVersion.
    let counter = on_a
        .create(&PostParams::default(), &configmap("counter"))
        .await
        .unwrap();
    assert_eq!(rv(&on_b.get("counter").await.unwrap()), rv(&counter));

    // Optimistic concurrency holds across them: a write based on a stale read conflicts.
    let mut stale = on_b.get("counter").await.unwrap();
    on_a.patch(
        "counter",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"n": "0"}})),
    )
    .await
    .unwrap();
    stale.data = Some([("n".to_string(), "stale".to_string())].into());
    let err = on_b
        .replace("counter", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err:?}");

    // A writer on each: its own objects, and read-modify-write increments of one shared counter.
    let writers = [("a", on_a.clone()), ("b", on_b.clone())].map(|(who, api)| {
        tokio::spawn(async move {
            for i in 0..40 {
                api.create(&PostParams::default(), &configmap(&format!("{who}-{i}")))
                    .await
                    .unwrap();
                loop {
                    let mut current = api.get("counter").await.unwrap();
                    let data = current.data.get_or_insert_default();
                    let n: u32 = data["n"].parse().unwrap();
                    data.insert("n".into(), (n + 1).to_string());
                    match api.replace("counter", &PostParams::default(), &current).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(s)) if s.code == 409 => continue,
                        Err(other) => panic!("{other}"),
                    }
                }
            }
        })
    });
    for writer in writers {
        writer.await.unwrap();
    }

    let state = |api: Api<ConfigMap>| async move {
        let list = api.list(&ListParams::default()).await.unwrap();
        let items: BTreeMap<String, (u64, Option<String>)> = list
            .items
            .iter()
            .map(|cm| {
                (
                    cm.name_any(),
                    (rv(cm), cm.data.as_ref().and_then(|d| d.get("n").cloned())),
                )
            })
            .collect();
        items
    };
    let (state_a, state_b) = (state(on_a.clone()).await, state(on_b.clone()).await);
    assert_eq!(state_a, state_b);
    assert_eq!(state_a.len(), 81);
    assert_eq!(state_a["counter"].1.as_deref(), Some("80"), "no increment was lost");

    let newest = state_a.values().map(|(v, _)| *v).max().unwrap();
    let (events_a, events_b) = (caught_up(&seen_a, newest).await, caught_up(&seen_b, newest).await);
    stop.cancel();
    assert_eq!(events_a, events_b, "both apiservers' watchers saw the same history");
    assert_eq!(
        events_a.len(),
        1 + 1 + 80 + 80,
        "counter created, patched, 80 increments, 80 objects"
    );
}

fn service(name: &str, node_ports: usize) -> Service {
    let ports: Vec<_> = (0..node_ports.max(1))
        .map(|i| json!({"name": format!("p{i}"), "port": 80 + i}))
        .collect();
    let kind = if node_ports > 0 { "NodePort" } else { "ClusterIP" };
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"type": kind, "ports": ports}})).unwrap()
}

fn cluster_ip(svc: &Service) -> String {
    svc.spec.as_ref().unwrap().cluster_ip.clone().unwrap()
}

fn node_ports(svc: &Service) -> Vec<i32> {
    let ports = svc.spec.as_ref().unwrap().ports.as_ref().unwrap();
    ports.iter().filter_map(|p| p.node_port).collect()
}

fn is_invalid(result: Result<Service, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref s)) if s.code == 422 && s.reason == "Invalid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_apiservers_on_one_etcd_never_hand_out_a_cluster_ip_or_node_port_twice() {
    let etcd = Etcd::start().await;
    let a = on_etcd(&etcd, &[]).await;
    let b = on_etcd(&etcd, &[]).await;
    namespace(&a.client, "alloc").await;
    let on_a: Api<Service> = Api::namespaced(a.client.clone(), "alloc");
    let on_b: Api<Service> = Api::namespaced(b.client.clone(), "alloc");

    // 30 Services through each at once; every third asks for two node ports.
    let creates = (0..60).map(|i| {
        let api = if i % 2 == 0 { on_a.clone() } else { on_b.clone() };
        async move {
            let node_ports = if i % 3 == 0 { 2 } else { 0 };
            api.create(&PostParams::default(), &service(&format!("s-{i}"), node_ports))
                .await
                .unwrap()
        }
    });
    let created = futures::future::join_all(creates).await;
    let ips: BTreeSet<String> = created.iter().map(cluster_ip).collect();
    assert_eq!(ips.len(), 60, "a ClusterIP was handed out twice");
    let ports: Vec<i32> = created.iter().flat_map(node_ports).collect();
    assert_eq!(ports.len(), 40);
    assert_eq!(
        ports.iter().collect::<BTreeSet<_>>().len(),
        40,
        "a node port was handed out twice: {ports:?}"
    );

    // A ClusterIP and a node port named through A are taken for B, until A's Service goes.
    let free_ip = (1..255)
        .map(|n| format!("10.0.0.{n}"))
        .find(|ip| !ips.contains(ip))
        .unwrap();
    let free_port = (30000..).find(|p| !ports.contains(p)).unwrap();
    let mut fixed = service("fixed", 1);
    let spec = fixed.spec.as_mut().unwrap();
    spec.cluster_ip = Some(free_ip.clone());
    spec.ports.as_mut().unwrap()[0].node_port = Some(free_port);
    on_a.create(&PostParams::default(), &fixed).await.unwrap();
    let mut same_ip = service("same-ip", 0);
    same_ip.spec.as_mut().unwrap().cluster_ip = Some(free_ip.clone());
    assert!(is_invalid(on_b.create(&PostParams::default(), &same_ip).await));
    let mut same_port = service("same-port", 1);
    same_port.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = Some(free_port);
    assert!(is_invalid(on_b.create(&PostParams::default(), &same_port).await));

    on_a.delete("fixed", &DeleteParams::default()).await.unwrap();
    assert_eq!(
        cluster_ip(&on_b.create(&PostParams::default(), &same_ip).await.unwrap()),
        free_ip
    );
    assert_eq!(
        node_ports(&on_b.create(&PostParams::default(), &same_port).await.unwrap()),
        [free_port]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedulers_on_two_apiservers_elect_one_leader_through_etcd() {
    let etcd = Etcd::start().await;
    let a = on_etcd(&etcd, &[]).await;
    let b = on_etcd(&etcd, &[]).await;
    for node in ["n1", "n2"] {
        register_node(&a.client, node, "8", "16Gi", 110).await;
    }
    let election = [
        "--leader-elect=true",
        "--leader-elect-lease-duration=3s",
        "--leader-elect-renew-deadline=2s",
        "--leader-elect-retry-period=200ms",
    ];
    let schedulers: Vec<(CancellationToken, tokio::task::JoinHandle<_>)> = [&a, &b]
        .into_iter()
        .map(|server| {
            let mut argv = vec!["--master", server.url.as_str()];
            argv.extend_from_slice(&election);
            let args: hyperkube::scheduler::Args = flags(&argv);
            let shutdown = CancellationToken::new();
            (
                shutdown.clone(),
                tokio::spawn(hyperkube::scheduler::run(args, shutdown)),
            )
        })
        .collect();
    // Pods created through both apiservers; each must be bound exactly once, by the one leader.
    for i in 0..20 {
        let client = if i % 2 == 0 { &a.client } else { &b.client };
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p-{i}")},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}
        }))
        .unwrap();
        Api::<Pod>::namespaced(client.clone(), "default")
            .create(&PostParams::default(), &pod)
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(a.client.clone(), "default");
    wait_for("every pod to be bound", WAIT, || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .then_some(())
    })
    .await;
    // A second active scheduler would lose binding races and report them as FailedScheduling.
    let failed = events_by_reason(&b.client, "default", "FailedScheduling").await;
    assert!(failed.is_empty(), "{failed:?}");
    let holders: BTreeSet<Option<String>> = [&a, &b]
        .into_iter()
        .map(|server| {
            let leases =
                Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(server.client.clone(), "kube-system");
            async move {
                leases
                    .get("kube-scheduler")
                    .await
                    .unwrap()
                    .spec
                    .and_then(|s| s.holder_identity)
            }
        })
        .collect::<futures::stream::FuturesOrdered<_>>()
        .collect()
        .await;
    assert_eq!(holders.len(), 1, "both apiservers name one holder: {holders:?}");
    assert!(holders.iter().all(Option::is_some));
    for (shutdown, task) in schedulers {
        shutdown.cancel();
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap().unwrap();
    }
}

/// A CA, a serving certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`;
/// returns etcd's files and the client's certificate and key.
fn certificates(dir: &std::path::Path) -> (EtcdTlsFiles, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, stem: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (
            write(&format!("{stem}.crt"), cert.pem()),
            write(&format!("{stem}.key"), key.serialize_pem()),
        )
    };
    let (server_cert, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    );
    let (client_cert, client_key) = leaf(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, "client");
    let tls = EtcdTlsFiles {
        ca: write("ca.crt", ca.pem()),
        cert: server_cert,
        key: server_key,
    };
    (tls, client_cert, client_key)
}

#[tokio::test]
async fn tls_with_client_certificates_reaches_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, client_cert, client_key) = certificates(dir.path());
    let ca = format!("--etcd-cafile={}", tls.ca.display());
    let etcd = Etcd::start_cluster(1, Some(tls)).await;
    let cert = format!("--etcd-certfile={}", client_cert.display());
    let key = format!("--etcd-keyfile={}", client_key.display());
    let server = on_etcd(&etcd, &[&ca, &cert, &key]).await;
    namespace(&server.client, "secure").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "secure");
    let created = cms
        .create(&PostParams::default(), &configmap("over-tls"))
        .await
        .unwrap();
    assert_eq!(rv(&cms.get("over-tls").await.unwrap()), rv(&created));

    // Without a client certificate etcd refuses the connection, and the apiserver says so.
    let args: hyperkube::apiserver::Args =
        flags(&["--insecure-port=0", &format!("--etcd-servers={}", etcd.urls()), &ca]);
    let config = hyperkube::apiserver::Config::try_from(args).unwrap();
    let refused = hyperkube::apiserver::ApiServer::new(config, CancellationToken::new()).await;
    assert!(refused.is_err(), "connected without a client certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_and_watches_fail_over_when_an_etcd_member_dies() {
    let mut etcd = Etcd::start_cluster(3, None).await;
    let server = on_etcd(&etcd, &[]).await;
    namespace(&server.client, "failover").await;
    let cms: Api<ConfigMap> = Api::namespaced(server.client.clone(), "failover");
    let from = list_revision(&cms).await;
    let stop = CancellationToken::new();
    let seen = record_watch(cms.clone(), from, stop.clone());
    for i in 0..10 {
        cms.create(&PostParams::default(), &configmap(&format!("before-{i}")))
            .await
            .unwrap();
    }

    etcd.kill(0);
    // The two members left keep a quorum: writes go on through them once the client has noticed.
    wait_for("a write through the other members", WAIT, || async {
        match cms.create(&PostParams::default(), &configmap("first-after")).await {
            // An earlier try landed after all; its answer was lost.
            Ok(_) => Some(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Some(()),
            Err(_) => None,
        }
    })
    .await;
    for i in 0..10 {
        cms.create(&PostParams::default(), &configmap(&format!("after-{i}")))
            .await
            .unwrap();
    }
    let stored: BTreeSet<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(stored.len(), 21, "{stored:?}");
    let seen = wait_for("the watcher to see every object", WAIT, || async {
        let seen = seen.lock().unwrap().clone();
        (seen.len() >= stored.len()).then_some(seen)
    })
    .await;
    stop.cancel();
    let watched: BTreeSet<String> = seen.iter().map(|(_, name, _)| name.clone()).collect();
    assert_eq!(watched, stored);
    assert_eq!(seen.len(), stored.len(), "every object seen once");
}
