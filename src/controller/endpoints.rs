//! The Endpoints controller: every Service with a selector gets an Endpoints object of its name
//! listing its pods' addresses, ready ones apart from not-ready ones, per port. Mirrors upstream's
//! `pkg/controller/endpoint`. Services and pods enter through the shared informers
//! (`service_pods::watch`); Endpoints leave through create, update and delete calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use super::Context;
use super::service_pods::{self, Backend, ResolvedPort};
use crate::events::Recorder;
use crate::informer::{Change, Informer, ObjectKey};
use crate::workqueue::{WorkQueue, run_workers};

/// Upstream's `--concurrent-endpoint-syncs` default.
const WORKERS: usize = 5;
/// The most addresses one Endpoints object holds; the rest are cut off and the object is marked.
const MAX_CAPACITY: usize = 1000;
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Endpoints that hold an old-style leader-election record have no Service and must stay.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("deleting Endpoints {0}: {1}")]
    Delete(ObjectKey, #[source] kube::Error),
    #[error("writing Endpoints {0}: {1}")]
    Write(ObjectKey, #[source] kube::Error),
}

struct Controller {
    client: kube::Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
    recorder: Recorder,
}

pub(super) async fn run(ctx: Arc<Context>) {
    let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new(ctx.shutdown.clone());
    let (services, pods) = service_pods::watch(&ctx, &queue);
    let endpoints = ctx.informers.get::<Endpoints>();
    endpoints.add_handler({
        let queue = queue.clone();
        // Deleted by someone else: made again if its Service still wants it.
        move |change| {
            if let Change::Deleted(ep) = change {
                queue.add(ObjectKey::of(&***ep));
            }
        }
    });
    services.wait_synced().await;
    pods.wait_synced().await;
    endpoints.wait_synced().await;
    // Endpoints whose Service went while no controller ran are found once, at start.
    for ep in endpoints.list() {
        if !ep
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LEADER_ANNOTATION))
        {
            queue.add(ObjectKey::of(&*ep));
        }
    }
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        services,
        pods,
        endpoints,
        recorder: ctx.recorder("endpoint-controller"),
    });
    run_workers(queue, WORKERS, "endpoint", move |key| {
        let controller = controller.clone();
        async move { controller.sync(key).await }
    })
    .await;
}

impl Controller {
    async fn sync(&self, key: ObjectKey) -> Result<Option<Duration>, Error> {
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), &key.namespace);
        let Some(service) = self.services.get(&key.namespace, &key.name) else {
            return match api.delete(&key.name, &DeleteParams::default()).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                Err(err) => Err(Error::Delete(key, err)),
            };
        };
        if service_pods::selector(&service).is_none() {
            return Ok(None);
        }
        let publish_not_ready = service_pods::publish_not_ready(&service);
        let backends = service_pods::backends(&service, &self.pods, publish_not_ready);
        let has_ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .is_some_and(|p| !p.is_empty());
        let headless = service_pods::is_headless(&service);
        let mut subsets = subsets(&backends, has_ports || !headless, publish_not_ready);
        let truncated = truncate(&mut subsets);

        let current = self.endpoints.get(&key.namespace, &key.name);
        let mut labels = service.metadata.labels.clone().unwrap_or_default();
        if headless {
            labels.insert(service_pods::HEADLESS.into(), String::new());
        }
        let mut annotations = current
            .as_ref()
            .and_then(|ep| ep.metadata.annotations.clone())
            .unwrap_or_default();
        if truncated {
            annotations.insert(OVER_CAPACITY.into(), "truncated".into());
        } else {
            annotations.remove(OVER_CAPACITY);
        }
        let desired = Endpoints {
            metadata: ObjectMeta {
                name: Some(key.name.clone()),
                namespace: Some(key.namespace.clone()),
                labels: Some(labels).filter(|l| !l.is_empty()),
                annotations: Some(annotations).filter(|a| !a.is_empty()),
                resource_version: current.as_ref().and_then(|ep| ep.metadata.resource_version.clone()),
                ..current.as_ref().map(|ep| ep.metadata.clone()).unwrap_or_default()
            },
            subsets: Some(subsets).filter(|s| !s.is_empty()),
        };
        let written = match &current {
            Some(current) if unchanged(current, &desired) => return Ok(None),
            Some(_) => api.replace(&key.name, &PostParams::default(), &desired).await,
            None => api.create(&PostParams::default(), &desired).await,
        };
        match written {
            Ok(_) => Ok(None),
            // The namespace is being deleted: nothing may be created in it any more.
            Err(kube::Error::Api(s)) if current.is_none() && s.code == 403 => Ok(None),
            Err(err) => {
                let (reason, verb) = match current {
                    None => ("FailedToCreateEndpoint", "create"),
                    Some(_) => ("FailedToUpdateEndpoint", "update"),
                };
                let message = format!("Failed to {verb} endpoint {key}: {}", crate::error_chain(&err));
                self.recorder.record(&desired, true, reason, &message);
                Err(Error::Write(key, err))
            }
        }
    }
}

fn unchanged(current: &Endpoints, desired: &Endpoints) -> bool {
    current.subsets.as_deref().unwrap_or_default() == desired.subsets.as_deref().unwrap_or_default()
        && current.metadata.labels == desired.metadata.labels
        && current.metadata.annotations == desired.metadata.annotations
}

/// An address's identity within one Endpoints object: IP, then pod UID (upstream's sort order).
type AddressKey = (String, String);

/// The subsets for `backends`, packed as upstream's `RepackSubsets` does: the ports that reach
/// exactly the same addresses share one subset. With `ported` false (a headless Service without
/// ports) every address goes into one subset without ports.
fn subsets(backends: &[Backend], ported: bool, publish_not_ready: bool) -> Vec<EndpointSubset> {
    let mut addresses: HashMap<AddressKey, EndpointAddress> = HashMap::new();
    // Port (`None`: none, for headless Services) → the addresses it reaches, and whether each is ready.
    let mut by_port: BTreeMap<Option<&ResolvedPort>, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    for backend in backends {
        let key = (backend.ip.clone(), backend.target_ref.uid.clone().unwrap_or_default());
        let ready = publish_not_ready || backend.ready;
        let ports: Vec<Option<&ResolvedPort>> = match ported {
            true => backend.ports.iter().map(Some).collect(),
            false => vec![None],
        };
        if ports.is_empty() {
            continue;
        }
        for port in ports {
            by_port.entry(port).or_default().insert(key.clone(), ready);
        }
        addresses.insert(
            key,
            EndpointAddress {
                ip: backend.ip.clone(),
                hostname: backend.hostname.clone(),
                node_name: backend.node_name.clone(),
                target_ref: Some(backend.target_ref.clone()),
            },
        );
    }
    let mut by_addresses: BTreeMap<Vec<(AddressKey, bool)>, Vec<EndpointPort>> = BTreeMap::new();
    for (port, members) in by_port {
        let ports = by_addresses.entry(members.into_iter().collect()).or_default();
        ports.extend(port.map(|p| EndpointPort {
            name: p.name.clone(),
            port: p.port,
            protocol: Some(p.protocol.clone()),
            app_protocol: p.app_protocol.clone(),
        }));
    }
    by_addresses
        .into_iter()
        .map(|(members, ports)| {
            let pick = |want: bool| {
                let list: Vec<EndpointAddress> = members
                    .iter()
                    .filter(|(_, ready)| *ready == want)
                    .filter_map(|(key, _)| addresses.get(key).cloned())
                    .collect();
                Some(list).filter(|l| !l.is_empty())
            };
            EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: Some(ports).filter(|p| !p.is_empty()),
            }
        })
        .collect()
}

/// Cuts the subsets down to [`MAX_CAPACITY`] addresses, keeping ready ones first and sharing the
/// cut between subsets in proportion to their size, as upstream's `truncateEndpoints`. Returns
/// whether anything was cut.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |s: &EndpointSubset, ready: bool| {
        let list = if ready { &s.addresses } else { &s.not_ready_addresses };
        list.as_ref().map_or(0, Vec::len)
    };
    let ready: usize = subsets.iter().map(|s| count(s, true)).sum();
    let not_ready: usize = subsets.iter().map(|s| count(s, false)).sum();
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    // Over capacity with ready addresses alone: share the room among them and drop every
    // not-ready one; otherwise keep every ready one and share what is left.
    let cut_ready = ready > MAX_CAPACITY;
    let (room, total) = match cut_ready {
        true => (MAX_CAPACITY, ready),
        false => (MAX_CAPACITY - ready, not_ready),
    };
    let mut left = room;
    for subset in subsets.iter_mut() {
        let share = (count(subset, cut_ready) * room).div_ceil(total).min(left);
        let list = match cut_ready {
            true => {
                subset.not_ready_addresses = None;
                &mut subset.addresses
            }
            false => &mut subset.not_ready_addresses,
        };
        if let Some(list) = list {
            list.truncate(share);
            left -= list.len();
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn backend(uid: &str, ready: bool, ports: &[i32]) -> Backend {
        Backend {
            ip: "10.0.0.1".into(),
            ports: ports
                .iter()
                .map(|p| ResolvedPort {
                    name: Some(format!("p{p}")),
                    port: *p,
                    protocol: "TCP".into(),
                    app_protocol: None,
                })
                .collect(),
            ready,
            terminating: false,
            hostname: None,
            node_name: Some("node".into()),
            target_ref: ObjectReference {
                uid: Some(uid.into()),
                ..Default::default()
            },
        }
    }

    fn uids(list: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        list.iter()
            .flatten()
            .filter_map(|a| a.target_ref.as_ref()?.uid.clone())
            .collect()
    }

    #[test]
    fn ports_reaching_the_same_addresses_share_a_subset() {
        let subsets = subsets(
            &[
                backend("a", true, &[80, 443]),
                backend("b", false, &[80]),
                backend("c", true, &[]),
            ],
            true,
            false,
        );
        assert_eq!(subsets.len(), 2);
        let port_80 = subsets.iter().find(|s| uids(&s.not_ready_addresses) == ["b"]).unwrap();
        assert_eq!(uids(&port_80.addresses), ["a"]);
        assert_eq!(port_80.ports.as_ref().unwrap()[0].port, 80);
        let port_443 = subsets.iter().find(|s| s.not_ready_addresses.is_none()).unwrap();
        assert_eq!(uids(&port_443.addresses), ["a"]);
    }

    #[test]
    fn publishing_not_ready_addresses_lists_every_pod_as_ready() {
        let subsets = subsets(&[backend("a", false, &[80])], true, true);
        assert_eq!(uids(&subsets[0].addresses), ["a"]);
        assert!(subsets[0].not_ready_addresses.is_none());
    }

    #[test]
    fn headless_services_without_ports_list_addresses_without_ports() {
        let subsets = subsets(&[backend("a", true, &[]), backend("b", true, &[])], false, false);
        assert_eq!(uids(&subsets[0].addresses), ["a", "b"]);
        assert!(subsets[0].ports.is_none());
    }

    #[test]
    fn truncation_keeps_ready_addresses_and_marks_the_cut() {
        let many: Vec<Backend> = (0..MAX_CAPACITY + 5)
            .map(|i| backend(&format!("{i:05}"), i % 2 == 0, &[80]))
            .collect();
        let mut packed = subsets(&many, true, false);
        assert!(truncate(&mut packed));
        let ready: usize = packed.iter().map(|s| uids(&s.addresses).len()).sum();
        let not_ready: usize = packed.iter().map(|s| uids(&s.not_ready_addresses).len()).sum();
        assert_eq!((ready, ready + not_ready), (503, MAX_CAPACITY));
        assert!(!truncate(&mut subsets(&many[..10], true, false)));
    }
}
