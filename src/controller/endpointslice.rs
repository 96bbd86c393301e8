//! The EndpointSlice controller: every Service with a selector gets EndpointSlices listing its
//! pods, at most 100 to a slice, each pod with its ready/serving/terminating conditions. Mirrors
//! upstream's `pkg/controller/endpointslice` and its reconciler (`k8s.io/endpointslice`).
//!
//! Services, pods, nodes (for zones) and slices enter through the shared informers; slices leave
//! through create, update and delete calls. The slices a Service already has are changed in place
//! where they can be, so a pod coming or going rewrites one slice, not all of them. Slices are
//! owned by their Service: the garbage collector removes them with it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Resource, ResourceExt};

use super::Context;
use super::service_pods::{self, Backend, ResolvedPort};
use crate::events::Recorder;
use crate::informer::{Change, Informer, ObjectKey};
use crate::workqueue::{WorkQueue, run_workers};

/// Upstream's `--concurrent-service-endpoint-syncs` default.
const WORKERS: usize = 5;
/// Upstream's `--max-endpoints-per-slice` default.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;
const SERVICE_NAME: &str = "kubernetes.io/service-name";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
const ZONE: &str = "topology.kubernetes.io/zone";
/// How soon a Service is synced again when the slice cache has not yet seen our own writes.
const STALE_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("writing EndpointSlices of Service {0}: {1}")]
    Write(ObjectKey, #[source] kube::Error),
    #[error("Service {service}: pod {pod} is on node {node}, which does not exist")]
    NodeNotFound {
        service: ObjectKey,
        pod: String,
        node: String,
    },
}

struct Controller {
    client: kube::Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    slices: Arc<Informer<EndpointSlice>>,
    tracker: Arc<Tracker>,
    recorder: Recorder,
}

pub(super) async fn run(ctx: Arc<Context>) {
    let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new(ctx.shutdown.clone());
    let (services, pods) = service_pods::watch(&ctx, &queue);
    let nodes = ctx.informers.get::<Node>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let tracker = Arc::new(Tracker::default());
    slices.add_handler({
        let queue = queue.clone();
        let tracker = tracker.clone();
        // A slice changed by someone else is put back; our own writes are checked off.
        move |change| {
            let slice = change.object();
            if let Some(service) = owning_service(slice) {
                tracker.observe(&service, change);
                queue.add(service);
            }
        }
    });
    services.wait_synced().await;
    pods.wait_synced().await;
    nodes.wait_synced().await;
    slices.wait_synced().await;
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        services,
        pods,
        nodes,
        slices,
        tracker,
        recorder: ctx.recorder("endpointslice-controller"),
    });
    run_workers(queue, WORKERS, "endpointslice", move |key| {
        let controller = controller.clone();
        async move { controller.sync(key).await }
    })
    .await;
}

/// The Service a slice this controller manages belongs to.
fn owning_service(slice: &EndpointSlice) -> Option<ObjectKey> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY).map(String::as_str) != Some(CONTROLLER_NAME) {
        return None;
    }
    Some(ObjectKey::new(
        slice.metadata.namespace.as_deref()?,
        labels.get(SERVICE_NAME)?,
    ))
}

impl Controller {
    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        // A deleted Service's slices go with it through their owner reference.
        let Some(service) = self.services.get(&key.namespace, &key.name) else {
            self.tracker.forget(&key);
            return Ok(None);
        };
        if service_pods::selector(&service).is_none() {
            return Ok(None);
        }
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .list_namespace(&key.namespace)
            .into_iter()
            .filter(|s| owning_service(s).as_ref() == Some(&key))
            .collect();
        if self.tracker.stale(&key, &existing) {
            return Ok(Some(STALE_RETRY));
        }
        let publish_not_ready = service_pods::publish_not_ready(&service);
        let mut missing_node = None;
        let mut desired: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>> = BTreeMap::new();
        for backend in service_pods::backends(&service, &self.pods, true) {
            let node_name = backend.node_name.as_deref().unwrap_or_default();
            let node = self.nodes.get("", node_name);
            // A pod on a node that does not exist is left out (unless every address is to be
            // published) and the Service tried again, as upstream does.
            if node.is_none() && !publish_not_ready {
                let pod = backend.target_ref.name.clone().unwrap_or_default();
                missing_node.get_or_insert((pod, node_name.to_string()));
                continue;
            }
            let zone = node.and_then(|n| n.metadata.labels.as_ref()?.get(ZONE).cloned());
            let endpoint = endpoint(&backend, publish_not_ready, zone);
            desired.entry(backend.ports).or_default().push(endpoint);
        }
        let plan = plan(&template(&service), &existing, desired);
        if let Err(err) = self.apply(&key, plan).await {
            let message = format!(
                "Error updating Endpoint Slices for Service {key}: {}",
                crate::error_chain(&err)
            );
            self.recorder
                .record(&*service, true, "FailedToUpdateEndpointSlices", &message);
            return Err(Error::Write(key, err));
        }
        match missing_node {
            Some((pod, node)) => Err(Error::NodeNotFound {
                service: key,
                pod,
                node,
            }),
            None => Ok(None),
        }
    }

    /// Creates, then updates, then deletes, so that no endpoint is missing in between.
    async fn apply(&self, service: &ObjectKey, plan: Plan) -> Result<(), kube::Error> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &service.namespace);
        for slice in plan.create {
            match api.create(&PostParams::default(), &slice).await {
                Ok(made) => self.tracker.expect(service, &made.name_any(), written(&made)),
                // The namespace is being deleted: nothing may be created in it any more.
                Err(kube::Error::Api(s)) if s.code == 403 => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        for slice in plan.update {
            let made = api.replace(&slice.name_any(), &PostParams::default(), &slice).await?;
            self.tracker.expect(service, &made.name_any(), written(&made));
        }
        for name in plan.delete {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(err) => return Err(err),
            }
            self.tracker.expect(service, &name, Expect::Deleted);
        }
        Ok(())
    }
}

fn written(slice: &EndpointSlice) -> Expect {
    Expect::Written(revision(slice))
}

fn revision(slice: &EndpointSlice) -> u64 {
    slice
        .metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// The slice entry for one pod.
fn endpoint(backend: &Backend, publish_not_ready: bool, zone: Option<String>) -> Endpoint {
    Endpoint {
        addresses: vec![backend.ip.clone()],
        conditions: Some(EndpointConditions {
            // A terminating pod is never ready, unless every address is to be published.
            ready: Some(publish_not_ready || (backend.ready && !backend.terminating)),
            serving: Some(backend.ready),
            terminating: Some(backend.terminating),
        }),
        hostname: backend.hostname.clone(),
        node_name: backend.node_name.clone(),
        target_ref: Some(backend.target_ref.clone()),
        zone,
        ..Default::default()
    }
}

/// What every slice of `service` carries: its labels (with the controller's own), its owner
/// reference, and a name prefix.
fn template(service: &Service) -> EndpointSlice {
    let name = service.name_any();
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if service_pods::is_headless(service) {
        labels.insert(service_pods::HEADLESS.into(), String::new());
    }
    labels.insert(SERVICE_NAME.into(), name.clone());
    labels.insert(MANAGED_BY.into(), CONTROLLER_NAME.into());
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: service.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(Vec::new()),
        ports: None,
    }
}

/// The writes that bring a Service's slices to what it wants.
#[derive(Debug, Default)]
struct Plan {
    create: Vec<EndpointSlice>,
    update: Vec<EndpointSlice>,
    delete: Vec<String>,
}

/// One slice in the making: an existing one (by its index) or a new one.
struct Draft {
    existing: Option<usize>,
    ports: Option<Vec<EndpointPort>>,
    endpoints: Vec<Endpoint>,
}

/// Plans the slices for `desired` (endpoints grouped by the ports they serve). An existing slice
/// keeps the endpoints it has that are still wanted, gets new ones while it has room, and goes
/// when it is left empty; what does not fit goes into new slices. A Service without endpoints
/// keeps one empty placeholder slice, as upstream's.
fn plan(
    template: &EndpointSlice,
    existing: &[Arc<EndpointSlice>],
    desired: BTreeMap<Vec<ResolvedPort>, Vec<Endpoint>>,
) -> Plan {
    let mut drafts: Vec<Draft> = Vec::new();
    let mut claimed = vec![false; existing.len()];
    for (ports, endpoints) in desired {
        let ports: Vec<EndpointPort> = ports.iter().map(slice_port).collect();
        let mut wanted: BTreeMap<String, Endpoint> = endpoints.into_iter().map(|e| (endpoint_key(&e), e)).collect();
        let ports = Some(ports).filter(|p| !p.is_empty());
        let first = drafts.len();
        for (i, slice) in existing.iter().enumerate() {
            if claimed[i] || slice.address_type != "IPv4" || slice.ports != ports {
                continue;
            }
            claimed[i] = true;
            let kept = slice
                .endpoints
                .iter()
                .flatten()
                .filter_map(|e| wanted.remove(&endpoint_key(e)))
                .collect();
            drafts.push(Draft {
                existing: Some(i),
                ports: ports.clone(),
                endpoints: kept,
            });
        }
        let mut rest = wanted.into_values();
        for draft in &mut drafts[first..] {
            let room = MAX_ENDPOINTS_PER_SLICE.saturating_sub(draft.endpoints.len());
            draft.endpoints.extend(rest.by_ref().take(room));
        }
        let rest: Vec<Endpoint> = rest.collect();
        drafts.extend(rest.chunks(MAX_ENDPOINTS_PER_SLICE).map(|chunk| Draft {
            existing: None,
            ports: ports.clone(),
            endpoints: chunk.to_vec(),
        }));
    }

    let mut plan = Plan::default();
    let mut keep = vec![false; existing.len()];
    for mut draft in drafts.into_iter().filter(|d| !d.endpoints.is_empty()) {
        draft.endpoints.sort_by_key(endpoint_key);
        let mut slice = template.clone();
        slice.ports = draft.ports;
        slice.endpoints = Some(draft.endpoints);
        match draft.existing {
            None => plan.create.push(slice),
            Some(i) => {
                keep[i] = true;
                plan.update.extend(updated(&existing[i], slice));
            }
        }
    }
    if plan.create.is_empty() && !keep.contains(&true) {
        let placeholder = existing
            .iter()
            .position(|s| s.ports.is_none() && s.endpoints.as_ref().is_none_or(Vec::is_empty));
        match placeholder {
            Some(i) => {
                keep[i] = true;
                plan.update.extend(updated(&existing[i], template.clone()));
            }
            None => plan.create.push(template.clone()),
        }
    }
    plan.delete = existing
        .iter()
        .zip(keep)
        .filter(|(_, keep)| !keep)
        .map(|(slice, _)| slice.name_any())
        .collect();
    plan
}

/// `desired` under `current`'s name and metadata, if it differs from `current`.
fn updated(current: &EndpointSlice, mut desired: EndpointSlice) -> Option<EndpointSlice> {
    let same = current.endpoints.as_deref().unwrap_or_default() == desired.endpoints.as_deref().unwrap_or_default()
        && current.ports == desired.ports
        && current.metadata.labels == desired.metadata.labels
        && current.metadata.owner_references == desired.metadata.owner_references;
    if same {
        return None;
    }
    desired.metadata = ObjectMeta {
        labels: desired.metadata.labels,
        owner_references: desired.metadata.owner_references,
        ..current.metadata.clone()
    };
    Some(desired)
}

/// An endpoint's identity across syncs: its pod, or its address when it has no pod.
fn endpoint_key(endpoint: &Endpoint) -> String {
    match endpoint.target_ref.as_ref().and_then(|r| r.uid.clone()) {
        Some(uid) => uid,
        None => endpoint.addresses.join(","),
    }
}

fn slice_port(port: &ResolvedPort) -> EndpointPort {
    EndpointPort {
        name: port.name.clone(),
        port: Some(port.port),
        protocol: Some(port.protocol.clone()),
        app_protocol: port.app_protocol.clone(),
    }
}

/// What the controller last wrote to a slice: a revision the cache must reach, or its deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Written(u64),
    Deleted,
}

/// The controller's own writes that the slice cache has not shown yet, per Service (upstream's
/// `EndpointSliceTracker`). Syncing a Service from a cache without them would plan against old
/// slices, and create a second slice for endpoints that already have one.
#[derive(Default)]
struct Tracker {
    pending: Mutex<HashMap<ObjectKey, HashMap<String, Expect>>>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, HashMap<String, Expect>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expect(&self, service: &ObjectKey, slice: &str, expect: Expect) {
        self.lock()
            .entry(service.clone())
            .or_default()
            .insert(slice.to_string(), expect);
    }

    /// Checks off what a cache change shows: a slice at or past the revision we wrote, or gone
    /// (also when someone else deleted it, so that it is no longer waited for).
    fn observe(&self, service: &ObjectKey, change: &Change<'_, EndpointSlice>) {
        let mut pending = self.lock();
        let Some(slices) = pending.get_mut(service) else { return };
        let slice = change.object();
        let name = slice.name_any();
        let seen = match (change, slices.get(&name)) {
            (_, None) => return,
            (Change::Deleted(_), _) => true,
            (_, Some(Expect::Written(rv))) => revision(slice) >= *rv,
            (_, Some(Expect::Deleted)) => false,
        };
        if seen {
            slices.remove(&name);
        }
        if slices.is_empty() {
            pending.remove(service);
        }
    }

    /// Whether `cached` (the Service's slices in the cache) lacks one of our writes.
    fn stale(&self, service: &ObjectKey, cached: &[Arc<EndpointSlice>]) -> bool {
        let pending = self.lock();
        let Some(slices) = pending.get(service) else {
            return false;
        };
        slices.iter().any(|(name, expect)| {
            let found = cached.iter().find(|s| s.metadata.name.as_deref() == Some(name));
            match (expect, found) {
                (Expect::Written(rv), Some(slice)) => revision(slice) < *rv,
                (Expect::Written(_), None) => true,
                (Expect::Deleted, found) => found.is_some(),
            }
        })
    }

    fn forget(&self, service: &ObjectKey) {
        self.lock().remove(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use serde_json::json;

    fn service() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "10.0.0.5", "ports": [{"port": 80}]}
        }))
        .unwrap()
    }

    fn port(n: i32) -> Vec<ResolvedPort> {
        vec![ResolvedPort {
            name: None,
            port: n,
            protocol: "TCP".into(),
            app_protocol: None,
        }]
    }

    fn ep(uid: &str) -> Endpoint {
        Endpoint {
            addresses: vec!["10.0.0.1".into()],
            target_ref: Some(ObjectReference {
                uid: Some(uid.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn eps(range: std::ops::Range<usize>) -> Vec<Endpoint> {
        range.map(|i| ep(&format!("{i:04}"))).collect()
    }

    /// The slices after `plan` was carried out, named `new-N` when created.
    fn carry_out(existing: &[Arc<EndpointSlice>], plan: Plan) -> Vec<Arc<EndpointSlice>> {
        let mut out: Vec<Arc<EndpointSlice>> = existing
            .iter()
            .filter(|s| !plan.delete.contains(&s.name_any()))
            .map(|s| {
                let update = plan.update.iter().find(|u| u.name_any() == s.name_any());
                Arc::new(update.cloned().unwrap_or_else(|| (**s).clone()))
            })
            .collect();
        for (i, mut slice) in plan.create.into_iter().enumerate() {
            slice.metadata.name = Some(format!("new-{i}"));
            out.push(Arc::new(slice));
        }
        out
    }

    fn sizes(slices: &[Arc<EndpointSlice>]) -> Vec<usize> {
        slices
            .iter()
            .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
            .collect()
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints_and_carry_the_service_labels_and_owner() {
        let template = template(&service());
        let slices = carry_out(&[], plan(&template, &[], [(port(80), eps(0..250))].into()));
        assert_eq!(sizes(&slices), [100, 100, 50]);
        let labels = slices[0].metadata.labels.as_ref().unwrap();
        assert_eq!(labels[SERVICE_NAME], "web");
        assert_eq!(labels[MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(labels["app"], "web");
        let owner = &slices[0].metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("svc-uid", Some(true)));
        assert_eq!(slices[0].address_type, "IPv4");
    }

    #[test]
    fn a_pod_coming_or_going_changes_one_slice_and_nothing_when_nothing_changed() {
        let template = template(&service());
        let slices = carry_out(&[], plan(&template, &[], [(port(80), eps(0..150))].into()));
        let again = plan(&template, &slices, [(port(80), eps(0..150))].into());
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());

        let mut fewer = eps(0..150);
        fewer.remove(3);
        let one_gone = plan(&template, &slices, [(port(80), fewer.clone())].into());
        assert_eq!(
            (one_gone.create.len(), one_gone.update.len(), one_gone.delete.len()),
            (0, 1, 0)
        );
        let slices = carry_out(&slices, one_gone);
        assert_eq!(sizes(&slices), [99, 50]);

        // The new pod fills the room the gone one left.
        fewer.push(ep("0150"));
        let one_more = plan(&template, &slices, [(port(80), fewer)].into());
        assert_eq!(one_more.update.len(), 1);
        assert_eq!(sizes(&carry_out(&slices, one_more)), [100, 50]);
    }

    #[test]
    fn endpoints_on_other_ports_get_their_own_slices_and_emptied_slices_go() {
        let template = template(&service());
        let slices = carry_out(&[], plan(&template, &[], [(port(80), eps(0..3))].into()));
        let moved = plan(&template, &slices, [(port(8080), eps(0..3))].into());
        assert_eq!((moved.create.len(), moved.delete.len()), (1, 1));
        let slices = carry_out(&slices, moved);
        assert_eq!(slices[0].ports.as_ref().unwrap()[0].port, Some(8080));
    }

    #[test]
    fn a_service_without_endpoints_keeps_one_placeholder_slice() {
        let template = template(&service());
        let slices = carry_out(&[], plan(&template, &[], BTreeMap::new()));
        assert_eq!(sizes(&slices), [0]);
        assert!(slices[0].ports.is_none());
        let again = plan(&template, &slices, BTreeMap::new());
        assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
        // Endpoints arriving take the placeholder's place.
        let filled = plan(&template, &slices, [(port(80), eps(0..2))].into());
        assert_eq!((filled.create.len(), filled.delete.len()), (1, 1));
    }

    #[test]
    fn the_tracker_holds_syncs_until_the_cache_shows_our_writes() {
        let tracker = Tracker::default();
        let key = ObjectKey::new("ns", "web");
        let slice = |rv: &str| {
            let mut s = template(&service());
            s.metadata.name = Some("web-abc".into());
            s.metadata.resource_version = Some(rv.into());
            Arc::new(s)
        };
        tracker.expect(&key, "web-abc", Expect::Written(7));
        assert!(tracker.stale(&key, &[]));
        assert!(tracker.stale(&key, &[slice("6")]));
        assert!(!tracker.stale(&key, &[slice("7")]));
        tracker.observe(&key, &Change::Added(&slice("7")));
        tracker.expect(&key, "web-abc", Expect::Deleted);
        assert!(tracker.stale(&key, &[slice("7")]));
        tracker.observe(&key, &Change::Deleted(&slice("7")));
        assert!(tracker.lock().is_empty());
    }
}
