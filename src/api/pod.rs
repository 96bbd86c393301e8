//! Pod defaults and validation, shared by the apiserver (every pod and pod template it stores)
//! and the kubelet (static pods it reads from files). Mirrors upstream's
//! `pkg/apis/core/v1/defaults.go` and `pkg/apis/core/validation` for pods and pod specs.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};

use crate::api::validation::{FieldError, NameRule, is_dns1123_label};

/// Defaults and validates a whole pod read outside the apiserver (a static pod); the errors are
/// upstream's `field: message` lines.
pub fn default_and_validate(pod: &mut Pod) -> Result<(), Vec<String>> {
    default_pod(pod);
    let spec = pod.spec.get_or_insert_with(Default::default);
    let errors = validate_pod_spec(spec, "spec");
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.iter().map(ToString::to_string).collect())
    }
}

/// Fills a pod's defaults, as upstream's `SetDefaults_Pod`: its spec's, and a container that
/// limits a resource without requesting it requests its limit. Pod templates do not get the
/// latter, as upstream's do not.
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        let resources = c.resources.get_or_insert_with(Default::default);
        let Some(limits) = resources.limits.as_ref().filter(|l| !l.is_empty()) else {
            continue;
        };
        let requests = resources.requests.get_or_insert_with(Default::default);
        for (name, limit) in limits {
            requests.entry(name.clone()).or_insert_with(|| limit.clone());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_request_what_they_only_limit() {
        let mut pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [
                {"name": "limited", "image": "i", "resources": {"limits": {"cpu": "2", "memory": "1Gi"},
                                                                "requests": {"cpu": "500m"}}},
                {"name": "free", "image": "i"}],
            "initContainers": [{"name": "init", "image": "i", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}))
        .unwrap();
        default_pod(&mut pod);
        let requests = |c: &Container| serde_json::to_value(&c.resources.as_ref().unwrap().requests).unwrap();
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(requests(&spec.containers[0]), json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(requests(&spec.containers[1]), json!(null), "no limits, no requests");
        assert_eq!(
            requests(&spec.init_containers.as_ref().unwrap()[0]),
            json!({"nvidia.com/gpu": "1"})
        );
        assert_eq!(
            spec.restart_policy.as_deref(),
            Some("Always"),
            "the spec is defaulted too"
        );
    }

    #[test]
    fn pod_templates_keep_requests_unset() {
        let mut spec: PodSpec = serde_json::from_value(json!({"containers": [
            {"name": "c", "image": "i", "resources": {"limits": {"cpu": "1"}}}]}))
        .unwrap();
        default_pod_spec(&mut spec);
        assert_eq!(spec.containers[0].resources.as_ref().unwrap().requests, None);
    }
}
