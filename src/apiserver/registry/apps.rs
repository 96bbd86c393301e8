//! Strategies of the apps/v1 workloads: Deployments, ReplicaSets, DaemonSets and StatefulSets.
//! Mirrors upstream's `pkg/registry/apps/*` and `pkg/apis/apps/v1/defaults.go`: a required
//! selector that matches the template's labels and never changes, and the defaults kubectl shows.

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetUpdateStrategy, Deployment, DeploymentStrategy as UpdateStrategy, ReplicaSet,
    RollingUpdateDaemonSet, RollingUpdateDeployment, RollingUpdateStatefulSetStrategy, StatefulSet,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

use super::strategy::Strategy;
use crate::api::pod::{default_pod_spec, validate_pod_spec};
use crate::api::selector;
use crate::api::validation::FieldError;
use crate::apiserver::printers::{self, Column};

/// The checks every workload shares: a valid selector, present and matching the template, a
/// valid pod template, and non-negative replicas.
fn validate_workload(selector: &LabelSelector, template: &PodTemplateSpec, replicas: Option<i32>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let labels = template.metadata.as_ref().and_then(|m| m.labels.as_ref());
    match selector::LabelSelector::try_from(selector) {
        Ok(sel) if sel.is_empty() => errs.push(FieldError::required("spec.selector")),
        Ok(sel) => {
            if !sel.matches(labels) {
                errs.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    printers::format_labels(labels),
                    "`selector` does not match template `labels`",
                ));
            }
        }
        // As upstream's `LabelSelectorAsSelector` check.
        Err(err) => errs.push(FieldError::invalid(
            "spec.selector",
            format_selector(selector),
            format!("invalid label selector: {err}"),
        )),
    }
    match &template.spec {
        Some(pod) => errs.extend(validate_pod_spec(pod, "spec.template.spec")),
        None => errs.push(FieldError::required("spec.template.spec")),
    }
    if let Some(r) = replicas.filter(|r| *r < 0) {
        errs.push(FieldError::invalid(
            "spec.replicas",
            r,
            "must be greater than or equal to 0",
        ));
    }
    errs
}

fn immutable_selector(new: &LabelSelector, old: &LabelSelector) -> Option<FieldError> {
    (new != old).then(|| FieldError::immutable("spec.selector", format_selector(new)))
}

fn format_selector(selector: &LabelSelector) -> String {
    printers::format_label_selector(&serde_json::to_value(selector).unwrap_or_default(), "")
}

fn default_template(template: &mut PodTemplateSpec) {
    default_pod_spec(template.spec.get_or_insert_with(Default::default));
}

/// Deployments.
pub(crate) struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    type Object = Deployment;
    const GENERATION: bool = true;
    const STATUS_UPDATES_ANNOTATIONS: bool = true;

    fn changes_generation(&self, new: &Value, old: &Value) -> bool {
        // Upstream also counts annotation changes, a leftover of annotation-driven rollbacks.
        new.get("spec") != old.get("spec") || new["metadata"].get("annotations") != old["metadata"].get("annotations")
    }

    fn default(&self, d: &mut Deployment) {
        let spec = &mut d.spec;
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        spec.progress_deadline_seconds.get_or_insert(600);
        let strategy = spec.strategy.get_or_insert_with(UpdateStrategy::default);
        let kind = strategy.type_.get_or_insert_with(|| "RollingUpdate".into()).clone();
        if kind == "RollingUpdate" {
            let ru = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDeployment::default);
            ru.max_surge.get_or_insert_with(|| IntOrString::String("25%".into()));
            ru.max_unavailable
                .get_or_insert_with(|| IntOrString::String("25%".into()));
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, d: &Deployment) -> Vec<FieldError> {
        validate_workload(&d.spec.selector, &d.spec.template, d.spec.replicas)
    }

    fn validate_update(&self, new: &Deployment, old: &Deployment) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(immutable_selector(&new.spec.selector, &old.spec.selector));
        errs
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::DEPLOYMENT_COLUMNS)
    }

    fn cells(&self, d: &Deployment) -> Vec<Value> {
        printers::deployment_cells(d)
    }
}

/// ReplicaSets.
pub(crate) struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    type Object = ReplicaSet;
    const GENERATION: bool = true;

    fn default(&self, rs: &mut ReplicaSet) {
        let spec = &mut rs.spec;
        spec.replicas.get_or_insert(1);
        if let Some(t) = spec.template.as_mut() {
            default_template(t);
        }
    }

    fn validate(&self, rs: &ReplicaSet) -> Vec<FieldError> {
        match &rs.spec.template {
            Some(t) => validate_workload(&rs.spec.selector, t, rs.spec.replicas),
            None => vec![FieldError::required("spec.template")],
        }
    }

    fn validate_update(&self, new: &ReplicaSet, old: &ReplicaSet) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(immutable_selector(&new.spec.selector, &old.spec.selector));
        errs
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::REPLICAS_COLUMNS)
    }

    fn cells(&self, rs: &ReplicaSet) -> Vec<Value> {
        printers::replicaset_cells(rs)
    }
}

/// DaemonSets.
pub(crate) struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    type Object = DaemonSet;
    const GENERATION: bool = true;

    fn default(&self, ds: &mut DaemonSet) {
        let spec = &mut ds.spec;
        spec.revision_history_limit.get_or_insert(10);
        let strategy = spec
            .update_strategy
            .get_or_insert_with(DaemonSetUpdateStrategy::default);
        if strategy.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
            let ru = strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateDaemonSet::default);
            ru.max_unavailable.get_or_insert(IntOrString::Int(1));
            ru.max_surge.get_or_insert(IntOrString::Int(0));
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, ds: &DaemonSet) -> Vec<FieldError> {
        validate_workload(&ds.spec.selector, &ds.spec.template, None)
    }

    fn validate_update(&self, new: &DaemonSet, old: &DaemonSet) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(immutable_selector(&new.spec.selector, &old.spec.selector));
        errs
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::DAEMONSET_COLUMNS)
    }

    fn cells(&self, ds: &DaemonSet) -> Vec<Value> {
        printers::daemonset_cells(ds)
    }
}

/// StatefulSets.
pub(crate) struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    type Object = StatefulSet;
    const GENERATION: bool = true;

    fn default(&self, s: &mut StatefulSet) {
        let spec = &mut s.spec;
        spec.replicas.get_or_insert(1);
        spec.revision_history_limit.get_or_insert(10);
        spec.pod_management_policy.get_or_insert_with(|| "OrderedReady".into());
        let strategy = spec
            .update_strategy
            .get_or_insert_with(StatefulSetUpdateStrategy::default);
        if strategy.type_.get_or_insert_with(|| "RollingUpdate".into()) == "RollingUpdate" {
            strategy
                .rolling_update
                .get_or_insert_with(RollingUpdateStatefulSetStrategy::default)
                .partition
                .get_or_insert(0);
        }
        default_template(&mut spec.template);
    }

    fn validate(&self, s: &StatefulSet) -> Vec<FieldError> {
        validate_workload(&s.spec.selector, &s.spec.template, s.spec.replicas)
    }

    fn validate_update(&self, new: &StatefulSet, old: &StatefulSet) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        errs.extend(immutable_selector(&new.spec.selector, &old.spec.selector));
        errs
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::STATEFULSET_COLUMNS)
    }

    fn cells(&self, s: &StatefulSet) -> Vec<Value> {
        printers::statefulset_cells(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(v: Value) -> Deployment {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn deployment_defaults_match_kubectl_output() {
        let mut d = deployment(json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}));
        DeploymentStrategy.default(&mut d);
        let spec = &d.spec;
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.strategy.as_ref().unwrap().type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(
            spec.template.spec.as_ref().unwrap().restart_policy.as_deref(),
            Some("Always")
        );
        assert!(DeploymentStrategy.validate(&d).is_empty());
    }

    #[test]
    fn deployment_selector_must_match_and_stay() {
        let d = deployment(json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}));
        assert_eq!(
            DeploymentStrategy.validate(&d)[0].field,
            "spec.template.metadata.labels"
        );
        let mut moved = d.clone();
        moved.spec.selector.match_labels = Some([("app".to_string(), "db".to_string())].into());
        let errs = DeploymentStrategy.validate_update(&moved, &d);
        assert!(
            errs.iter()
                .any(|e| e.field == "spec.selector" && e.detail == "field is immutable")
        );
    }

    #[test]
    fn selectors_must_be_valid_and_match_the_template() {
        let with_selector = |selector: Value| {
            deployment(json!({"metadata": {"name": "d"}, "spec": {"selector": selector,
                "template": {"metadata": {"labels": {"tier": "a"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}))
        };
        let fields = |selector: Value| -> Vec<String> {
            DeploymentStrategy
                .validate(&with_selector(selector))
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        let tier_in =
            |values: Value| json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": values}]});
        assert!(fields(tier_in(json!(["a"]))).is_empty());
        assert_eq!(fields(tier_in(json!(["b"]))), ["spec.template.metadata.labels"]);
        assert_eq!(fields(json!({})), ["spec.selector"]);
        assert_eq!(
            fields(json!({"matchExpressions": [{"key": "tier", "operator": "Near", "values": ["a"]}]})),
            ["spec.selector"]
        );
    }
}
