//! Label and field selectors, parsed once and matched against many objects: the string form
//! of `?labelSelector=` (`app=web,tier notin (db)`), the structured form workloads and affinity
//! terms carry (`matchLabels` + `matchExpressions`), and the plain label sets of Services and
//! `nodeSelector`.
//!
//! Follows upstream's `k8s.io/apimachinery/pkg/labels` and `pkg/fields` grammar, and
//! `metav1.LabelSelectorAsSelector` for the structured form.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

/// A selector that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct ParseError(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

/// One requirement on the value of one label (or field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    /// A requirement in the structured form of `matchExpressions` and node selector terms,
    /// checked as upstream's `labels.NewRequirement`: a valid key, values for `In` and `NotIn`,
    /// none for `Exists` and `DoesNotExist`, and (where `numeric`, as in node selectors) one
    /// integer for `Gt` and `Lt`.
    pub fn new(key: &str, operator: &str, values: &[String], numeric: bool) -> Result<Self, ParseError> {
        let bad = |why: &str| Err(ParseError(format!("{key}: {why}")));
        let op = match (operator, values) {
            ("In" | "NotIn", []) => return bad("values must be given for In and NotIn"),
            ("In", _) => Op::In(valid_values(values, key)?),
            ("NotIn", _) => Op::NotIn(valid_values(values, key)?),
            ("Exists", []) => Op::Exists,
            ("DoesNotExist", []) => Op::DoesNotExist,
            ("Exists" | "DoesNotExist", _) => return bad("values must be empty for Exists and DoesNotExist"),
            ("Gt" | "Lt", [value]) if numeric => {
                let Ok(n) = value.parse::<i64>() else {
                    return bad(&format!("{operator} needs an integer value, not {value:?}"));
                };
                if operator == "Gt" {
                    Op::GreaterThan(n)
                } else {
                    Op::LessThan(n)
                }
            }
            ("Gt" | "Lt", _) if numeric => return bad(&format!("{operator} needs exactly one value")),
            (other, _) => return bad(&format!("{other:?} is not a valid selector operator")),
        };
        Ok(Self {
            key: valid_key(key, key)?,
            op,
        })
    }

    /// A requirement on an object field, as node selector terms' `matchFields` (upstream's
    /// `nodeSelectorRequirementsAsFieldSelector`): `In` or `NotIn` with exactly one value.
    pub fn field(key: &str, operator: &str, values: &[String]) -> Result<Self, ParseError> {
        let op = match (operator, values) {
            ("In", [value]) => Op::Equals(value.clone()),
            ("NotIn", [value]) => Op::NotEquals(value.clone()),
            ("In" | "NotIn", _) => return Err(ParseError(format!("{key}: values must have one element"))),
            (other, _) => {
                return Err(ParseError(format!(
                    "{key}: {other:?} is not a valid field selector operator"
                )));
            }
        };
        Ok(Self {
            key: key.to_owned(),
            op,
        })
    }

    /// The label (or field) the requirement is about.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether `value` (`None`: the label is absent) satisfies the requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let number = || value.and_then(|x| x.parse::<i64>().ok());
        match &self.op {
            Op::Equals(v) => value == Some(v.as_str()),
            Op::NotEquals(v) => value != Some(v.as_str()),
            Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
            Op::NotIn(vs) => value.is_none_or(|x| !vs.iter().any(|v| v == x)),
            Op::Exists => value.is_some(),
            Op::DoesNotExist => value.is_none(),
            Op::GreaterThan(n) => number().is_some_and(|x| x > *n),
            Op::LessThan(n) => number().is_some_and(|x| x < *n),
        }
    }
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses the string form used by `?labelSelector=` and `kubectl -l`.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let mut requirements = Vec::new();
        for part in split_top_level(input) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self { requirements })
    }

    /// Whether the selector has no requirements.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object with `labels` is selected.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
    }
}

/// The structured form (upstream's `LabelSelectorAsSelector`): every `matchLabels` pair and
/// every `matchExpressions` requirement must hold; the empty selector matches everything. An
/// error names the first invalid part.
impl TryFrom<&meta::LabelSelector> for LabelSelector {
    type Error = ParseError;

    fn try_from(selector: &meta::LabelSelector) -> Result<Self, ParseError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement {
                key: valid_key(key, key)?,
                op: Op::Equals(valid_value(value, key)?),
            });
        }
        for expr in selector.match_expressions.iter().flatten() {
            let values = expr.values.as_deref().unwrap_or_default();
            requirements.push(Requirement::new(&expr.key, &expr.operator, values, false)?);
        }
        Ok(Self { requirements })
    }
}

/// A label set as a selector (upstream's `SelectorFromSet`): every label must have its value.
/// A Service's selector and a pod's `nodeSelector` are such sets; they are not validated.
impl From<&BTreeMap<String, String>> for LabelSelector {
    fn from(set: &BTreeMap<String, String>) -> Self {
        let requirements = set
            .iter()
            .map(|(key, value)| Requirement {
                key: key.clone(),
                op: Op::Equals(value.clone()),
            })
            .collect();
        Self { requirements }
    }
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, ParseError> {
    let bad = || ParseError(part.to_string());
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement {
            key: valid_key(key.trim(), part)?,
            op: Op::DoesNotExist,
        });
    }
    for (token, make) in [
        ("==", Op::Equals as fn(String) -> Op),
        ("!=", Op::NotEquals),
        ("=", Op::Equals),
    ] {
        if let Some((key, value)) = part.split_once(token) {
            return Ok(Requirement {
                key: valid_key(key.trim(), part)?,
                op: make(valid_value(value.trim(), part)?),
            });
        }
    }
    for (token, greater) in [(">", true), ("<", false)] {
        if let Some((key, value)) = part.split_once(token) {
            let n = value.trim().parse::<i64>().map_err(|_| bad())?;
            return Ok(Requirement {
                key: valid_key(key.trim(), part)?,
                op: if greater { Op::GreaterThan(n) } else { Op::LessThan(n) },
            });
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim();
    if rest.is_empty() {
        return Ok(Requirement {
            key: valid_key(key, part)?,
            op: Op::Exists,
        });
    }
    let (word, set) = rest
        .split_once(|c: char| c == '(' || c.is_whitespace())
        .ok_or_else(bad)?;
    let set = if rest[word.len()..].trim_start().starts_with('(') {
        rest[word.len()..].trim_start()
    } else {
        set
    };
    let values = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(bad)?
        .split(',')
        .map(|v| valid_value(v.trim(), part))
        .collect::<Result<Vec<_>, _>>()?;
    let op = match word {
        "in" => Op::In(values),
        "notin" => Op::NotIn(values),
        _ => return Err(bad()),
    };
    Ok(Requirement {
        key: valid_key(key, part)?,
        op,
    })
}

fn valid_key(key: &str, part: &str) -> Result<String, ParseError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty() && name.len() <= 63 && is_qualified_name_part(name);
    let prefix_ok = prefix.is_none_or(crate::api::validation::is_dns1123_subdomain);
    if name_ok && prefix_ok {
        Ok(key.to_string())
    } else {
        Err(ParseError(format!("{part}: invalid label key {key:?}")))
    }
}

fn valid_values(values: &[String], part: &str) -> Result<Vec<String>, ParseError> {
    values.iter().map(|v| valid_value(v, part)).collect()
}

fn valid_value(value: &str, part: &str) -> Result<String, ParseError> {
    if value.is_empty() || (value.len() <= 63 && is_qualified_name_part(value)) {
        Ok(value.to_string())
    } else {
        Err(ParseError(format!("{part}: invalid label value {value:?}")))
    }
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, the name part of a label key and a label value.
pub(crate) fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A parsed field selector: `field=value` and `field!=value` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses `?fieldSelector=`; `supported` names the fields this resource can be selected by.
    pub fn parse(input: &str, supported: &[&str]) -> Result<Self, ParseError> {
        let mut terms = Vec::new();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ParseError(format!(
                    "invalid selector: '{part}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !supported.contains(&field) {
                return Err(ParseError(format!("field label not supported: {field}")));
            }
            terms.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self { terms })
    }

    /// Whether the selector has no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the object's fields, looked up through `field`, satisfy every term. A missing
    /// field counts as the empty string, as upstream's field sets do.
    pub fn matches(&self, field: impl Fn(&str) -> String) -> bool {
        self.terms
            .iter()
            .all(|(name, equal, value)| (field(name) == *value) == *equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selector_supports_every_operator() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let yes = [
            "app=web",
            "app==web",
            "app!=db",
            "tier in (front, back)",
            "tier notin (db)",
            "app",
            "!missing",
            "app=web,tier in (front)",
            "n>4",
            "n<6",
            "",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(Some(&l)), "{s}");
        }
        let no = [
            "app=db",
            "app!=web",
            "tier in (back)",
            "tier notin (front)",
            "missing",
            "!app",
            "n>5",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(Some(&l)), "{s}");
        }
        assert!(LabelSelector::parse("missing notin (x)").unwrap().matches(None));
    }

    #[test]
    fn label_selector_rejects_bad_syntax() {
        for s in ["app in web", "bad key=x", "app=in valid", "a=(b)", "-x=y"] {
            assert!(LabelSelector::parse(s).is_err(), "{s}");
        }
    }

    fn structured(v: serde_json::Value) -> Result<LabelSelector, ParseError> {
        LabelSelector::try_from(&serde_json::from_value::<meta::LabelSelector>(v).unwrap())
    }

    #[test]
    fn structured_selectors_match_labels_and_expressions() {
        let s = structured(serde_json::json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "canary", "operator": "DoesNotExist"},
                                 {"key": "track", "operator": "NotIn", "values": ["db"]}]}))
        .unwrap();
        assert!(s.matches(Some(&labels(&[("app", "web"), ("tier", "b")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web"), ("tier", "b"), ("canary", "1")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web"), ("tier", "b"), ("track", "db")]))));
        assert!(!s.matches(Some(&labels(&[("app", "web")]))));
        assert!(structured(serde_json::json!({})).unwrap().matches(None));
    }

    #[test]
    fn structured_selectors_refuse_what_upstream_refuses() {
        for bad in [
            serde_json::json!({"matchExpressions": [{"key": "k", "operator": "Near", "values": ["a"]}]}),
            serde_json::json!({"matchExpressions": [{"key": "k", "operator": "In"}]}),
            serde_json::json!({"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["a"]}]}),
            // Gt and Lt belong to node selectors only.
            serde_json::json!({"matchExpressions": [{"key": "k", "operator": "Gt", "values": ["1"]}]}),
            serde_json::json!({"matchLabels": {"k": "a,b"}}),
            serde_json::json!({"matchLabels": {"bad key": "a"}}),
        ] {
            assert!(structured(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn numeric_and_field_requirements_follow_node_selector_rules() {
        let values = |vs: &[&str]| vs.iter().map(|v| v.to_string()).collect::<Vec<_>>();
        let gt = Requirement::new("cores", "Gt", &values(&["4"]), true).unwrap();
        assert!(gt.matches(Some("8")) && !gt.matches(Some("4")) && !gt.matches(Some("x")) && !gt.matches(None));
        assert!(Requirement::new("cores", "Lt", &values(&["a"]), true).is_err());
        assert!(Requirement::new("cores", "Lt", &values(&["1", "2"]), true).is_err());
        let name = Requirement::field("metadata.name", "In", &values(&["n1"])).unwrap();
        assert!(name.matches(Some("n1")) && !name.matches(Some("n2")));
        let not = Requirement::field("metadata.name", "NotIn", &values(&["n1"])).unwrap();
        assert!(!not.matches(Some("n1")) && not.matches(Some("n2")));
        assert!(Requirement::field("metadata.name", "In", &values(&["a", "b"])).is_err());
        assert!(Requirement::field("metadata.name", "Exists", &values(&["a"])).is_err());
    }

    #[test]
    fn label_sets_select_by_equality() {
        let s = LabelSelector::from(&labels(&[("app", "web")]));
        assert!(s.matches(Some(&labels(&[("app", "web"), ("x", "y")]))));
        assert!(!s.matches(Some(&labels(&[("app", "db")]))));
        assert!(!s.matches(None));
    }

    #[test]
    fn field_selector_matches_and_rejects_unknown_fields() {
        let sel = FieldSelector::parse(
            "metadata.name=a,status.phase!=Failed",
            &["metadata.name", "status.phase"],
        )
        .unwrap();
        assert!(sel.matches(|f| if f == "metadata.name" {
            "a".into()
        } else {
            "Running".into()
        }));
        assert!(!sel.matches(|f| if f == "metadata.name" {
            "a".into()
        } else {
            "Failed".into()
        }));
        assert!(!sel.matches(|f| if f == "metadata.name" {
            "b".into()
        } else {
            "Running".into()
        }));
        assert!(FieldSelector::parse("spec.bogus=x", &["metadata.name"]).is_err());
    }
}
