//! What the scheduler knows about a pod and a node, computed once so that the filters and scores
//! run per node without parsing or allocating: a pod's requests, host ports, owner and parsed
//! affinity ([`PodInfo`]); a node's allocatable and the sums over the pods assigned to it
//! ([`NodeInfo`]). Mirrors upstream's `pkg/scheduler/framework/types.go`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, PodAffinityTerm, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::api::quantity;
use crate::api::scheduling::{NodeSelectorTerm, RequiredNodeAffinity};
use crate::api::selector::LabelSelector;

/// What non-zero requests count for a container that asks for no CPU, when scoring (upstream's
/// `DefaultMilliCPURequest`): so that best-effort pods still spread.
const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The same for memory (upstream's `DefaultMemoryRequest`, 200 MiB).
const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources pods request and nodes offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resources {
    pub(crate) milli_cpu: i64,
    pub(crate) memory: i64,
    pub(crate) ephemeral_storage: i64,
    /// Extended resources (`nvidia.com/gpu`, `hugepages-2Mi`), by name.
    pub(crate) scalar: Vec<(String, i64)>,
}

impl Resources {
    /// Reads a resource list; `pods` is not a resource a pod requests and is left out.
    fn parse(list: Option<&BTreeMap<String, Quantity>>) -> Result<Self, String> {
        let mut out = Self::default();
        for (name, q) in list.into_iter().flatten() {
            let bad = |e: quantity::ParseError| format!("{name}: {e}");
            match name.as_str() {
                "cpu" => out.milli_cpu = quantity::milli_value(&q.0).map_err(bad)?,
                "memory" => out.memory = quantity::value(&q.0).map_err(bad)?,
                "ephemeral-storage" => out.ephemeral_storage = quantity::value(&q.0).map_err(bad)?,
                "pods" => {}
                _ => out.scalar.push((name.clone(), quantity::value(&q.0).map_err(bad)?)),
            }
        }
        Ok(out)
    }

    pub(crate) fn scalar(&self, name: &str) -> i64 {
        self.scalar.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
    }

    fn combine(&mut self, other: &Resources, f: impl Fn(i64, i64) -> i64) {
        self.milli_cpu = f(self.milli_cpu, other.milli_cpu);
        self.memory = f(self.memory, other.memory);
        self.ephemeral_storage = f(self.ephemeral_storage, other.ephemeral_storage);
        for (name, v) in &other.scalar {
            match self.scalar.iter_mut().find(|(n, _)| n == name) {
                Some((_, mine)) => *mine = f(*mine, *v),
                None => self.scalar.push((name.clone(), f(0, *v))),
            }
        }
    }

    pub(crate) fn add(&mut self, other: &Resources) {
        self.combine(other, |a, b| a + b);
    }

    pub(crate) fn sub(&mut self, other: &Resources) {
        self.combine(other, |a, b| a - b);
    }

    fn max(&mut self, other: &Resources) {
        self.combine(other, i64::max);
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// CPU and memory as scoring counts them: a container without a request counts the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NonZero {
    pub(crate) milli_cpu: i64,
    pub(crate) memory: i64,
}

/// A host port a pod asks for: `0.0.0.0` when it names no host IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub(crate) ip: String,
    pub(crate) protocol: String,
    pub(crate) port: i32,
}

impl HostPort {
    /// Whether two pods asking for these ports cannot share a node.
    pub(crate) fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A required pod (anti-)affinity term: pods its selector matches, in its namespaces, on nodes
/// sharing the value of the topology label.
#[derive(Debug, Clone)]
pub(crate) struct AffinityTerm {
    /// `None` for an absent selector, which selects no pod (upstream's `LabelSelectorAsSelector(nil)`).
    pub(crate) selector: Option<LabelSelector>,
    /// `None`: every namespace (an empty `namespaceSelector`).
    pub(crate) namespaces: Option<Vec<String>>,
    pub(crate) topology_key: String,
}

impl AffinityTerm {
    fn parse(term: &PodAffinityTerm, own_namespace: &str) -> Result<Self, String> {
        let listed = term.namespaces.clone().unwrap_or_default();
        // NB: a non-empty namespaceSelector would need Namespace labels; only the empty one
        // ("every namespace") is understood, others add no namespaces to the listed ones.
        let namespaces = match &term.namespace_selector {
            Some(s) if LabelSelector::try_from(s).is_ok_and(|s| s.is_empty()) => None,
            _ if listed.is_empty() => Some(vec![own_namespace.to_owned()]),
            _ => Some(listed),
        };
        Ok(Self {
            selector: term
                .label_selector
                .as_ref()
                .map(LabelSelector::try_from)
                .transpose()
                .map_err(|e| e.to_string())?,
            namespaces,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether `pod` is one of the pods this term is about.
    pub(crate) fn matches(&self, pod: &PodInfo) -> bool {
        self.namespaces.as_ref().is_none_or(|ns| ns.contains(&pod.namespace))
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(pod.pod.metadata.labels.as_ref()))
    }
}

/// A pod as the scheduler sees it, computed once when it is scheduled or assigned.
#[derive(Debug)]
pub(crate) struct PodInfo {
    pub(crate) pod: Arc<Pod>,
    pub(crate) uid: String,
    pub(crate) namespace: String,
    /// Upstream's effective requests: the containers' sum, or the largest init container if
    /// more, plus sidecars and the pod overhead.
    pub(crate) requests: Resources,
    pub(crate) non_zero: NonZero,
    pub(crate) host_ports: Vec<HostPort>,
    /// The UID of the controller owning the pod (ReplicaSet, Job, ...), whose pods are spread.
    pub(crate) owner: Option<String>,
    /// `spec.nodeSelector` and the required node affinity terms.
    pub(crate) required_node_affinity: RequiredNodeAffinity,
    pub(crate) preferred_node_affinity: Vec<(i64, NodeSelectorTerm)>,
    pub(crate) required_affinity: Vec<AffinityTerm>,
    pub(crate) required_anti_affinity: Vec<AffinityTerm>,
}

impl PodInfo {
    /// Reads `pod`; an error says what in it cannot be understood (a bad quantity or selector).
    pub(crate) fn new(pod: Arc<Pod>) -> Result<Self, String> {
        let no_spec = PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&no_spec);
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let (mut requests, non_zero) =
            pod_requests(&spec.containers, spec.init_containers.as_deref().unwrap_or_default())?;
        requests.add(&Resources::parse(spec.overhead.as_ref()).map_err(|e| format!("spec.overhead: {e}"))?);
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.host_port.unwrap_or_default(),
            })
            .collect();
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        let affinity = spec.affinity.as_ref();
        let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
        let required_node_affinity = RequiredNodeAffinity::parse(spec).map_err(|e| e.to_string())?;
        let preferred_node_affinity = node_affinity
            .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .map(|p| Ok((i64::from(p.weight), NodeSelectorTerm::parse(&p.preference)?)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e: crate::api::selector::ParseError| e.to_string())?;
        let terms = |terms: Option<&Vec<PodAffinityTerm>>| {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(t, &namespace))
                .collect::<Result<Vec<_>, _>>()
        };
        let required_affinity = terms(
            affinity
                .and_then(|a| a.pod_affinity.as_ref())
                .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
        )?;
        let required_anti_affinity = terms(
            affinity
                .and_then(|a| a.pod_anti_affinity.as_ref())
                .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
        )?;
        Ok(Self {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace,
            requests,
            non_zero,
            host_ports,
            owner,
            required_node_affinity,
            preferred_node_affinity,
            required_affinity,
            required_anti_affinity,
            pod,
        })
    }
}

/// A container's requests (the apiserver's defaulting made a resource it only limits request
/// its limit).
fn container_requests(c: &Container) -> Result<Resources, String> {
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    Resources::parse(requests).map_err(|e| format!("container {}: {e}", c.name))
}

/// Upstream's `PodRequests` for containers and init containers (sidecars keep running, so they
/// add to everything after them), and the non-zero CPU and memory scoring uses.
fn pod_requests(containers: &[Container], init: &[Container]) -> Result<(Resources, NonZero), String> {
    let mut sum = Resources::default();
    let mut non_zero = NonZero::default();
    for c in containers {
        let r = container_requests(c)?;
        non_zero.milli_cpu += if r.milli_cpu == 0 {
            DEFAULT_MILLI_CPU_REQUEST
        } else {
            r.milli_cpu
        };
        non_zero.memory += if r.memory == 0 {
            DEFAULT_MEMORY_REQUEST
        } else {
            r.memory
        };
        sum.add(&r);
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in init {
        let r = container_requests(c)?;
        let during = if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            sidecars.clone()
        } else {
            let mut during = r;
            during.add(&sidecars);
            during
        };
        init_peak.max(&during);
    }
    sum.add(&sidecars);
    sum.max(&init_peak);
    Ok((sum, non_zero))
}

/// A node and the sums over the pods assigned (or assumed) to it.
#[derive(Debug, Clone)]
pub(crate) struct NodeInfo {
    pub(crate) name: String,
    /// `None` while pods name a node the cache has not seen (or no longer has).
    pub(crate) node: Option<Arc<Node>>,
    pub(crate) allocatable: Resources,
    pub(crate) allowed_pods: i64,
    pub(crate) requested: Resources,
    pub(crate) non_zero_requested: NonZero,
    pub(crate) pods: Vec<Arc<PodInfo>>,
    /// How many of `pods` have required anti-affinity terms.
    pub(crate) pods_with_anti_affinity: usize,
    pub(crate) used_ports: Vec<HostPort>,
    /// Pods per controlling owner UID.
    pub(crate) owners: Vec<(String, u32)>,
}

impl NodeInfo {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            node: None,
            allocatable: Resources::default(),
            allowed_pods: 0,
            requested: Resources::default(),
            non_zero_requested: NonZero::default(),
            pods: Vec::new(),
            pods_with_anti_affinity: 0,
            used_ports: Vec::new(),
            owners: Vec::new(),
        }
    }

    /// Takes the node's allocatable; a quantity that does not parse counts as none.
    pub(crate) fn set_node(&mut self, node: Arc<Node>) {
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        self.allocatable = Resources::parse(allocatable).unwrap_or_else(|e| {
            tracing::warn!(node = %self.name, error = %e, "node allocatable does not parse; treating it as empty");
            Resources::default()
        });
        self.allowed_pods = allocatable
            .and_then(|a| a.get("pods"))
            .and_then(|q| quantity::value(&q.0).ok())
            .unwrap_or(0);
        self.node = Some(node);
    }

    pub(crate) fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.milli_cpu += pod.non_zero.milli_cpu;
        self.non_zero_requested.memory += pod.non_zero.memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner {
            match self.owners.iter_mut().find(|(o, _)| o == owner) {
                Some((_, n)) => *n += 1,
                None => self.owners.push((owner.clone(), 1)),
            }
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `uid`; false when it is not here.
    pub(crate) fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(at) = self.pods.iter().position(|p| p.uid == uid) else {
            return false;
        };
        let pod = self.pods.swap_remove(at);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.milli_cpu -= pod.non_zero.milli_cpu;
        self.non_zero_requested.memory -= pod.non_zero.memory;
        for port in &pod.host_ports {
            if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(i);
            }
        }
        if let Some(owner) = &pod.owner
            && let Some(i) = self.owners.iter().position(|(o, _)| o == owner)
        {
            self.owners[i].1 -= 1;
            if self.owners[i].1 == 0 {
                self.owners.swap_remove(i);
            }
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_anti_affinity -= 1;
        }
        true
    }

    pub(crate) fn pods_of_owner(&self, owner: &str) -> u32 {
        self.owners.iter().find(|(o, _)| o == owner).map_or(0, |(_, n)| *n)
    }

    /// The node's value of label `key`.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.node
            .as_ref()?
            .metadata
            .labels
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Pods and nodes for the plugins' unit tests.
    use super::*;

    /// A pod from JSON; its `metadata` gets a uid and the `default` namespace unless given.
    pub(crate) fn pod(value: serde_json::Value) -> PodInfo {
        let mut pod: Pod = serde_json::from_value(value).unwrap();
        pod.metadata.namespace.get_or_insert_with(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_else(|| "p".into());
        pod.metadata.uid.get_or_insert(format!("uid-{name}"));
        PodInfo::new(Arc::new(pod)).unwrap()
    }

    /// A pod whose one container requests `cpu` and `memory`.
    pub(crate) fn pod_requesting(name: &str, cpu: &str, memory: &str) -> PodInfo {
        pod(serde_json::json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
    }

    /// A node with this allocatable and extra `spec`/`metadata` fields merged in.
    pub(crate) fn node(name: &str, cpu: &str, memory: &str, extra: serde_json::Value) -> NodeInfo {
        let mut value = serde_json::json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}
        });
        json_patch::merge(&mut value, &extra);
        let mut info = NodeInfo::new(name);
        info.set_node(Arc::new(serde_json::from_value(value).unwrap()));
        info
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_take_the_larger_of_containers_and_init_containers() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "1"}}}],
            "overhead": {"cpu": "10m"}}}));
        assert_eq!(p.requests.milli_cpu, 1010);
        assert_eq!(p.requests.memory, 1024 * 1024 * 1024);
        assert_eq!(p.requests.scalar("nvidia.com/gpu"), 1);
        // Container b requests no memory: scoring counts the default for it.
        assert_eq!(p.non_zero.memory, 1024 * 1024 * 1024 + DEFAULT_MEMORY_REQUEST);
        assert_eq!(p.non_zero.milli_cpu, 300);
    }

    #[test]
    fn sidecars_add_to_the_containers_after_them() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}],
            "initContainers": [
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "2"}}}]}}));
        assert_eq!(p.requests.milli_cpu, 2500);
    }

    #[test]
    fn bad_quantities_are_reported_not_ignored() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "lots"}}}]}}))
        .unwrap();
        let err = PodInfo::new(Arc::new(pod)).unwrap_err();
        assert!(err.contains("container a: cpu"), "{err}");
    }

    #[test]
    fn affinity_terms_without_a_selector_match_no_pod_and_an_empty_one_every_pod() {
        let term = |v: serde_json::Value| AffinityTerm::parse(&serde_json::from_value(v).unwrap(), "default").unwrap();
        let other = pod(json!({"metadata": {"name": "o", "labels": {"app": "web"}}}));
        assert!(!term(json!({"topologyKey": "zone"})).matches(&other));
        assert!(term(json!({"topologyKey": "zone", "labelSelector": {}})).matches(&other));
        let web = term(json!({"topologyKey": "zone", "labelSelector": {"matchLabels": {"app": "web"}}}));
        assert!(web.matches(&other));
        let elsewhere = pod(json!({"metadata": {"name": "e", "namespace": "kube-system", "labels": {"app": "web"}}}));
        assert!(
            !web.matches(&elsewhere),
            "a term looks in its pod's namespace unless told otherwise"
        );
        let bad: PodAffinityTerm = serde_json::from_value(json!({"topologyKey": "zone",
            "labelSelector": {"matchExpressions": [{"key": "app", "operator": "Gt", "values": ["1"]}]}}))
        .unwrap();
        assert!(AffinityTerm::parse(&bad, "default").is_err());
    }

    #[test]
    fn node_sums_follow_pods_added_and_removed() {
        let mut n = node("n", "4", "8Gi", json!({}));
        let owned = Arc::new(pod(json!({"metadata": {"name": "o", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}],
                                     "resources": {"requests": {"cpu": "1"}}}]}})));
        n.add_pod(owned.clone());
        n.add_pod(Arc::new(pod_requesting("x", "500m", "1Gi")));
        assert_eq!(n.requested.milli_cpu, 1500);
        assert_eq!(n.pods_of_owner("rs-1"), 1);
        assert_eq!(n.used_ports.len(), 1);
        assert!(n.remove_pod(&owned.uid));
        assert!(!n.remove_pod(&owned.uid));
        assert_eq!(n.requested.milli_cpu, 500);
        assert_eq!(n.pods_of_owner("rs-1"), 0);
        assert!(n.used_ports.is_empty());
        assert_eq!(n.allowed_pods, 110);
    }
}
