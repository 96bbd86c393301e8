//! Pod defaults and validation, shared by the apiserver (every pod and pod template it stores)
//! and the kubelet (static pods it reads from files). Mirrors upstream's
//! `pkg/apis/core/v1/defaults.go` and `pkg/apis/core/validation` for pod specs, and the
//! node-placement helpers of `k8s.io/component-helpers/scheduling/corev1` (taints against
//! tolerations, node selectors and required node affinity) that controllers share.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};

use crate::api::validation::{FieldError, NameRule, is_dns1123_label};

/// Defaults and validates a whole pod read outside the apiserver (a static pod); the errors are
/// upstream's `field: message` lines.
pub fn default_and_validate(pod: &mut Pod) -> Result<(), Vec<String>> {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    let errors = validate_pod_spec(spec, "spec");
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.iter().map(ToString::to_string).collect())
    }
}

/// Fills a pod spec's defaults, as upstream's `SetDefaults_PodSpec` and `SetDefaults_Container`.
pub fn default_pod_spec(spec: &mut PodSpec) {
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name.get_or_insert_with(|| "default-scheduler".into());
    spec.security_context.get_or_insert_with(Default::default);
    spec.enable_service_links.get_or_insert(true);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        default_container(c);
    }
}

fn default_container(c: &mut Container) {
    if c.image_pull_policy.is_none() {
        let image = c.image.as_deref().unwrap_or_default();
        // The tag is what follows the last ':' after the last '/', unless pinned by digest.
        let last = image.rsplit('/').next().unwrap_or_default();
        let tag = if image.contains('@') {
            Some("digest")
        } else {
            last.split_once(':').map(|(_, t)| t)
        };
        c.image_pull_policy = Some(match tag {
            None | Some("latest") => "Always".into(),
            Some(_) => "IfNotPresent".into(),
        });
    }
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy.get_or_insert_with(|| "File".into());
    c.resources.get_or_insert_with(Default::default);
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
    }
}

/// Validates a pod spec whose fields sit under `path` (`spec`, or `spec.template.spec`).
pub fn validate_pod_spec(spec: &PodSpec, path: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if spec.containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers")));
    }
    let mut names = HashSet::new();
    let groups = [
        ("containers", spec.containers.as_slice()),
        ("initContainers", spec.init_containers.as_deref().unwrap_or_default()),
    ];
    for (field, containers) in groups {
        for (i, c) in containers.iter().enumerate() {
            let at = format!("{path}.{field}[{i}]");
            if c.name.is_empty() {
                errs.push(FieldError::required(format!("{at}.name")));
            } else if !is_dns1123_label(&c.name) {
                errs.push(FieldError::invalid(
                    format!("{at}.name"),
                    &c.name,
                    NameRule::Label.check(&c.name).unwrap_or_default(),
                ));
            } else if !names.insert(c.name.clone()) {
                errs.push(FieldError::duplicate(format!("{at}.name"), &c.name));
            }
            if c.image.as_deref().unwrap_or_default().trim().is_empty() {
                errs.push(FieldError::required(format!("{at}.image")));
            }
            for (j, p) in c.ports.iter().flatten().enumerate() {
                if !(1..=65535).contains(&p.container_port) {
                    errs.push(FieldError::invalid(
                        format!("{at}.ports[{j}].containerPort"),
                        p.container_port,
                        "must be between 1 and 65535, inclusive",
                    ));
                }
                if let Some(proto) = p.protocol.as_deref().filter(|p| !["TCP", "UDP", "SCTP"].contains(p)) {
                    errs.push(FieldError::not_supported(
                        format!("{at}.ports[{j}].protocol"),
                        proto,
                        &["SCTP", "TCP", "UDP"],
                    ));
                }
            }
            let volumes: HashSet<&str> = spec.volumes.iter().flatten().map(|v| v.name.as_str()).collect();
            for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
                if !volumes.contains(m.name.as_str()) {
                    errs.push(FieldError::invalid(
                        format!("{at}.volumeMounts[{j}].name"),
                        &m.name,
                        "not found",
                    ));
                }
            }
            if let Some(policy) = c
                .image_pull_policy
                .as_deref()
                .filter(|p| !["Always", "IfNotPresent", "Never"].contains(p))
            {
                errs.push(FieldError::not_supported(
                    format!("{at}.imagePullPolicy"),
                    policy,
                    &["Always", "IfNotPresent", "Never"],
                ));
            }
        }
    }
    let mut volume_names = HashSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        if !is_dns1123_label(&v.name) {
            errs.push(FieldError::invalid(
                format!("{path}.volumes[{i}].name"),
                &v.name,
                NameRule::Label.check(&v.name).unwrap_or_default(),
            ));
        } else if !volume_names.insert(v.name.as_str()) {
            errs.push(FieldError::duplicate(format!("{path}.volumes[{i}].name"), &v.name));
        }
    }
    if let Some(policy) = spec
        .restart_policy
        .as_deref()
        .filter(|p| !["Always", "OnFailure", "Never"].contains(p))
    {
        errs.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    if let Some(policy) = spec
        .dns_policy
        .as_deref()
        .filter(|p| !["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"].contains(p))
    {
        errs.push(FieldError::not_supported(
            format!("{path}.dnsPolicy"),
            policy,
            &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
        ));
    }
    if let Some(g) = spec.termination_grace_period_seconds.filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            format!("{path}.terminationGracePeriodSeconds"),
            g,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

/// Whether `toleration` tolerates `taint`, as upstream's `Toleration.ToleratesTaint`: an empty
/// effect matches every effect, an empty key with `Exists` matches every key, and `Equal` (the
/// default operator) also compares the values.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        _ => false,
    }
}

/// Whether a pod with `spec` may run on `node` by its `nodeSelector` and its required node
/// affinity (upstream's `nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)`). Taints are
/// not considered.
pub fn matches_node(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selector_ok = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    let name = node.metadata.name.as_deref().unwrap_or_default();
    // Terms are ORed; an empty list of terms matches no node.
    selector_ok && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, &labels, name)))
}

fn term_matches(term: &NodeSelectorTerm, labels: &std::collections::BTreeMap<String, String>, name: &str) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    // A term without requirements matches nothing.
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(name)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(number), values.first().and_then(|b| number(b))) else {
                return false;
            };
            if r.operator == "Gt" { v > bound } else { v < bound }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        Toleration {
            key: some(key),
            operator: some(op),
            value: some(value),
            effect: some(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn tolerations_match_taints_like_upstream() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(&toleration("dedicated", "Equal", "gpu", "NoSchedule"), &t));
        assert!(tolerates(&toleration("dedicated", "", "gpu", ""), &t));
        assert!(!tolerates(&toleration("dedicated", "Equal", "cpu", "NoSchedule"), &t));
        assert!(!tolerates(&toleration("dedicated", "Exists", "", "NoExecute"), &t));
        assert!(tolerates(&toleration("", "Exists", "", ""), &t));
        assert!(!tolerates(&toleration("other", "Exists", "", ""), &t));
    }

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn node_selector_and_required_affinity_both_must_match() {
        let n = node("n1", serde_json::json!({"disk": "ssd", "cores": "8"}));
        assert!(matches_node(&spec(serde_json::json!({"containers": []})), &n));
        assert!(matches_node(
            &spec(serde_json::json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
            &n
        ));
        assert!(!matches_node(
            &spec(serde_json::json!({"containers": [], "nodeSelector": {"disk": "hdd"}})),
            &n
        ));
        let affinity = |terms: serde_json::Value| {
            spec(serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
        };
        let by_name = |name: &str| {
            affinity(serde_json::json!([{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": [name]}]}]))
        };
        assert!(matches_node(&by_name("n1"), &n));
        assert!(!matches_node(&by_name("n2"), &n));
        let gt = |bound: &str| {
            affinity(serde_json::json!([{"matchExpressions": [
                {"key": "cores", "operator": "Gt", "values": [bound]}]}]))
        };
        assert!(matches_node(&gt("4"), &n));
        assert!(!matches_node(&gt("8"), &n));
        assert!(!matches_node(&affinity(serde_json::json!([])), &n));
        assert!(!matches_node(&affinity(serde_json::json!([{}])), &n));
    }
}
