//! Where a pod may run: taints against tolerations, and node selection by `nodeSelector` and
//! node affinity. The scheduler's filters and scores, the DaemonSet controller and the node
//! lifecycle controller share these. Mirrors upstream's `k8s.io/component-helpers/scheduling/corev1`
//! (`helpers.go` and `nodeaffinity`).
//!
//! Selectors are parsed once per pod and then matched against many nodes without allocating: the
//! scheduler filters 1,000 nodes for each pod.

use k8s_openapi::api::core::v1::{Node, NodeSelectorTerm as ApiTerm, PodSpec, Taint, Toleration};

use crate::api::selector::{LabelSelector, ParseError, Requirement};

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

/// The first of `taints` that `filter` picks and no toleration tolerates (upstream's
/// `FindMatchingUntoleratedTaint`).
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// One `NodeSelectorTerm`: its label expressions (with `Gt` and `Lt`) and its `metadata.name`
/// fields must all hold. A term with neither matches no node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSelectorTerm {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl NodeSelectorTerm {
    /// Parses a term; an error names the first requirement upstream would refuse.
    pub fn parse(term: &ApiTerm) -> Result<Self, ParseError> {
        let labels = term
            .match_expressions
            .iter()
            .flatten()
            .map(|r| Requirement::new(&r.key, &r.operator, r.values.as_deref().unwrap_or_default(), true))
            .collect::<Result<_, _>>()?;
        let fields = term
            .match_fields
            .iter()
            .flatten()
            .map(|r| match r.key.as_str() {
                "metadata.name" => Requirement::field(&r.key, &r.operator, r.values.as_deref().unwrap_or_default()),
                other => Err(ParseError(format!("{other}: not a supported field selector key"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { labels, fields })
    }

    /// Whether `node` satisfies the term.
    pub fn matches(&self, node: &Node) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        let labels = node.metadata.labels.as_ref();
        let name = node.metadata.name.as_deref();
        self.labels
            .iter()
            .all(|r| r.matches(labels.and_then(|l| l.get(r.key())).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(name))
    }
}

/// What a pod requires of its node (upstream's `nodeaffinity.RequiredNodeAffinity`): every label
/// of its `nodeSelector`, and one of its required node affinity terms when it has them. Taints
/// are not considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredNodeAffinity {
    node_selector: LabelSelector,
    /// The required terms, ORed; `None` when the pod has none. An empty list matches no node.
    terms: Option<Vec<NodeSelectorTerm>>,
}

impl RequiredNodeAffinity {
    /// Parses the requirements of a pod with `spec`.
    pub fn parse(spec: &PodSpec) -> Result<Self, ParseError> {
        let required = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
        let terms = required
            .map(|r| r.node_selector_terms.iter().map(NodeSelectorTerm::parse).collect())
            .transpose()?;
        let node_selector = spec.node_selector.as_ref().map(LabelSelector::from).unwrap_or_default();
        Ok(Self { node_selector, terms })
    }

    /// Whether every node fits: no `nodeSelector` and no required terms.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    /// Whether the pod may run on `node`.
    pub fn matches(&self, node: &Node) -> bool {
        self.node_selector.matches(node.metadata.labels.as_ref())
            && self
                .terms
                .as_ref()
                .is_none_or(|terms| terms.iter().any(|t| t.matches(node)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()).filter(|v: &String| !v.is_empty()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn tolerations_match_taints_like_upstream() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        let yes = [
            json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}),
            json!({"key": "dedicated", "value": "gpu"}),
            json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}),
            json!({"operator": "Exists"}),
        ];
        for tol in yes {
            assert!(tolerates(&toleration(tol.clone()), &t), "{tol}");
        }
        let no = [
            json!({"key": "dedicated", "operator": "Equal", "value": "cpu", "effect": "NoSchedule"}),
            json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}),
            json!({"key": "other", "operator": "Exists"}),
            json!({"key": "dedicated", "operator": "Near", "value": "gpu"}),
        ];
        for tol in no {
            assert!(!tolerates(&toleration(tol.clone()), &t), "{tol}");
        }
    }

    #[test]
    fn the_first_untolerated_taint_among_those_filtered_is_found() {
        let taints = [
            taint("soft", "", "PreferNoSchedule"),
            taint("a", "", "NoSchedule"),
            taint("b", "", "NoExecute"),
        ];
        let tolerations = [toleration(json!({"key": "a", "operator": "Exists"}))];
        let hard = |t: &Taint| t.effect != "PreferNoSchedule";
        assert_eq!(
            untolerated_taint(&taints, &tolerations, hard).map(|t| t.key.as_str()),
            Some("b")
        );
        assert_eq!(
            untolerated_taint(&taints, &tolerations, |_| true).map(|t| t.key.as_str()),
            Some("soft")
        );
        assert!(untolerated_taint(&taints[..2], &tolerations, hard).is_none());
    }

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
    }

    fn required(spec: serde_json::Value) -> RequiredNodeAffinity {
        RequiredNodeAffinity::parse(&serde_json::from_value(spec).unwrap()).unwrap()
    }

    fn affinity(terms: serde_json::Value) -> RequiredNodeAffinity {
        required(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
    }

    #[test]
    fn node_selector_and_required_affinity_both_must_match() {
        let n = node("n1", json!({"disk": "ssd", "cores": "8"}));
        let free = required(json!({"containers": []}));
        assert!(free.is_empty() && free.matches(&n));
        assert!(required(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})).matches(&n));
        assert!(!required(json!({"containers": [], "nodeSelector": {"disk": "hdd"}})).matches(&n));
        let by_name = |name: &str| {
            affinity(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}]))
        };
        assert!(by_name("n1").matches(&n));
        assert!(!by_name("n2").matches(&n));
        let gt = |bound: &str| {
            affinity(json!([{"matchExpressions": [{"key": "cores", "operator": "Gt", "values": [bound]}]}]))
        };
        assert!(gt("4").matches(&n));
        assert!(!gt("8").matches(&n));
        // Terms are ORed; no terms, or a term without requirements, match no node.
        let either = affinity(
            json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                                     {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]),
        );
        assert!(either.matches(&n));
        assert!(!affinity(json!([])).matches(&n));
        assert!(!affinity(json!([{}])).matches(&n));
        let both = required(
            json!({"containers": [], "nodeSelector": {"disk": "hdd"}, "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}}),
        );
        assert!(!both.matches(&n));
    }

    #[test]
    fn node_terms_upstream_refuses_do_not_parse() {
        for bad in [
            json!({"matchFields": [{"key": "spec.x", "operator": "In", "values": ["a"]}]}),
            json!({"matchFields": [{"key": "metadata.name", "operator": "Exists"}]}),
            json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["many"]}]}),
            json!({"matchExpressions": [{"key": "disk", "operator": "Near", "values": ["a"]}]}),
        ] {
            let term: ApiTerm = serde_json::from_value(bad.clone()).unwrap();
            assert!(NodeSelectorTerm::parse(&term).is_err(), "{bad}");
        }
    }
}
