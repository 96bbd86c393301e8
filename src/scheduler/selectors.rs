//! The structured selectors pods carry: label selectors (`matchLabels` + `matchExpressions`) of
//! pod (anti-)affinity terms, and node selector terms of node affinity, parsed once per pod and
//! matched against many nodes and pods. Mirrors upstream's `apimachinery/pkg/labels` conversion
//! of `metav1.LabelSelector` and `component-helpers/scheduling/corev1/nodeaffinity`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

type Labels = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn parse(key: &str, operator: &str, values: Option<&Vec<String>>, numeric: bool) -> Result<Self, String> {
        let values = values.cloned().unwrap_or_default();
        let number = |values: &[String]| match values {
            [v] => v
                .parse::<i64>()
                .map_err(|_| format!("{key}: {operator} needs an integer value, not {v:?}")),
            _ => Err(format!("{key}: {operator} needs exactly one value")),
        };
        let op = match operator {
            "In" => Op::In(values),
            "NotIn" => Op::NotIn(values),
            "Exists" => Op::Exists,
            "DoesNotExist" => Op::DoesNotExist,
            "Gt" if numeric => Op::Gt(number(&values)?),
            "Lt" if numeric => Op::Lt(number(&values)?),
            other => return Err(format!("{key}: {other:?} is not a valid selector operator")),
        };
        Ok(Self {
            key: key.to_owned(),
            op,
        })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In(values), Some(v)) => values.iter().any(|x| x == v),
            (Op::In(_), None) => false,
            (Op::NotIn(values), v) => v.is_none_or(|v| !values.iter().any(|x| x == v)),
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }
}

/// A `metav1.LabelSelector`: every requirement must hold. The empty selector matches every
/// object; an absent one (see [`LabelSelector::parse`]) matches none.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LabelSelector {
    requirements: Vec<Requirement>,
    /// An absent selector selects nothing, as upstream's `LabelSelectorAsSelector(nil)`.
    nothing: bool,
}

impl LabelSelector {
    pub(crate) fn parse(selector: Option<&meta::LabelSelector>) -> Result<Self, String> {
        let Some(selector) = selector else {
            return Ok(Self {
                requirements: Vec::new(),
                nothing: true,
            });
        };
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                op: Op::In(vec![v.clone()]),
            })
            .collect();
        for e in selector.match_expressions.iter().flatten() {
            requirements.push(Requirement::parse(&e.key, &e.operator, e.values.as_ref(), false)?);
        }
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    pub(crate) fn matches(&self, labels: Option<&Labels>) -> bool {
        !self.nothing
            && self
                .requirements
                .iter()
                .all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
    }
}

/// One `NodeSelectorTerm`: its label expressions and `metadata.name` fields must all hold; a
/// term with neither matches no node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NodeTerm {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl NodeTerm {
    pub(crate) fn parse(term: &NodeSelectorTerm) -> Result<Self, String> {
        let parse_all = |reqs: Option<&Vec<NodeSelectorRequirement>>, numeric: bool| {
            reqs.into_iter()
                .flatten()
                .map(|r| Requirement::parse(&r.key, &r.operator, r.values.as_ref(), numeric))
                .collect::<Result<Vec<_>, _>>()
        };
        let fields = parse_all(term.match_fields.as_ref(), false)?;
        if let Some(f) = fields.iter().find(|f| f.key != "metadata.name") {
            return Err(format!("{}: not a supported field selector key", f.key));
        }
        Ok(Self {
            labels: parse_all(term.match_expressions.as_ref(), true)?,
            fields,
        })
    }

    pub(crate) fn matches(&self, node: &Node) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        let labels = node.metadata.labels.as_ref();
        let name = node.metadata.name.as_deref();
        self.labels
            .iter()
            .all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(name))
    }
}

/// Whether `node` satisfies any of `terms` (terms are ORed).
pub(crate) fn any_term_matches(terms: &[NodeTerm], node: &Node) -> bool {
    terms.iter().any(|t| t.matches(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors_match_labels_and_expressions() {
        let selector: meta::LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]},
                                 {"key": "track", "operator": "Exists"}]
        }))
        .unwrap();
        let s = LabelSelector::parse(Some(&selector)).unwrap();
        assert!(s.matches(Some(&labels(&[("app", "web"), ("track", "x")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web"), ("track", "x"), ("tier", "db")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web")]))));
        assert!(LabelSelector::parse(Some(&Default::default())).unwrap().matches(None));
        assert!(
            !LabelSelector::parse(None)
                .unwrap()
                .matches(Some(&labels(&[("a", "b")])))
        );
        let bad: meta::LabelSelector =
            serde_json::from_value(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}))
                .unwrap();
        assert!(LabelSelector::parse(Some(&bad)).is_err());
    }

    #[test]
    fn node_terms_match_labels_numbers_and_names() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"cores": "8"}}})).unwrap();
        let term = |v: serde_json::Value| NodeTerm::parse(&serde_json::from_value(v).unwrap()).unwrap();
        assert!(
            term(json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]})).matches(&node)
        );
        assert!(
            !term(json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]})).matches(&node)
        );
        assert!(
            term(json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})).matches(&node)
        );
        assert!(!term(json!({})).matches(&node));
        let bad = serde_json::from_value(json!({"matchFields": [{"key": "spec.x", "operator": "Exists"}]})).unwrap();
        assert!(NodeTerm::parse(&bad).is_err());
    }
}
