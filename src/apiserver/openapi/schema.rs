//! The schemas every document shares. schemars' definitions are brought into one canonical shape
//! (OpenAPI 3.0, refs written `#/components/schemas/NAME`), annotated as upstream's generated
//! schemas are (`x-kubernetes-group-version-kind` on kinds, `x-kubernetes-patch-*` on lists that
//! strategic merge patch merges), and rendered as v3 components or as swagger 2.0 definitions
//! that gnostic and kube-openapi's `pkg/util/proto` accept.
//!
//! Mirrors the post-processing upstream does in `k8s.io/kube-openapi/pkg/builder` (v2) and
//! `pkg/builder3` (v3). Everything here is pure: definitions come in, JSON values go out.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::apiserver::patch::{self, ListStrategy};

/// How a v3 document (and the canonical form) spells a reference, before the name.
pub(super) const V3_REF: &str = "#/components/schemas/";
/// How a swagger 2.0 document spells a reference, before the name.
pub(super) const V2_REF: &str = "#/definitions/";

const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const GVK: &str = "x-kubernetes-group-version-kind";
const MERGE_KEY: &str = "x-kubernetes-patch-merge-key";
const PATCH_STRATEGY: &str = "x-kubernetes-patch-strategy";

/// Keywords no document keeps: schemars bookkeeping and JSON Schema features that neither
/// OpenAPI 3.0 nor swagger 2.0 has.
const DROPPED: &[&str] = &[
    "$schema",
    "$id",
    "$anchor",
    "$comment",
    "$defs",
    "definitions",
    "unevaluatedProperties",
    "unevaluatedItems",
    "patternProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "if",
    "then",
    "else",
    "contains",
];

/// The merge behaviour strategic merge patch gives one list property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListPatch {
    /// Elements are objects merged by this key.
    MergeByKey(&'static str),
    /// Elements are primitives merged as a set.
    MergePrimitives,
}

/// Named schemas in canonical form. Built once at startup, then only read.
pub(super) struct Schemas {
    defs: Map<String, Value>,
}

impl Schemas {
    /// Canonicalises schemars' definitions (from `take_definitions`). References to names that
    /// are not defined are dropped, so every `$ref` that remains resolves.
    pub(super) fn new(raw: Map<String, Value>) -> Self {
        let mut defs = Map::new();
        for (name, mut schema) in raw {
            canonical(&mut schema);
            if name == INT_OR_STRING || name == QUANTITY {
                schema = upstream_scalar(&name, &schema);
            }
            defs.insert(name, schema);
        }
        let names: BTreeSet<String> = defs.keys().cloned().collect();
        for schema in defs.values_mut() {
            drop_dangling_refs(schema, &names);
        }
        Schemas { defs }
    }

    /// Whether `name` is defined.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.defs.contains_key(name)
    }

    /// Adds a schema written by hand (already canonical), unless `name` is already defined.
    pub(super) fn insert_if_absent(&mut self, name: &str, schema: Value) {
        if !self.defs.contains_key(name) {
            self.defs.insert(name.to_string(), schema);
        }
    }

    /// Marks `name` as the schema of kind `gvk` (a `{group, kind, version}` object), as upstream
    /// does: `x-kubernetes-group-version-kind` lists it, and `metadata` is not required (k8s-openapi
    /// lists it because its field is not an `Option`; upstream never requires it).
    pub(super) fn mark_kind(&mut self, name: &str, gvk: Value) {
        let Some(Value::Object(schema)) = self.defs.get_mut(name) else {
            return;
        };
        if let Value::Array(kinds) = schema.entry(GVK).or_insert_with(|| json!([]))
            && !kinds.contains(&gvk)
        {
            kinds.push(gvk);
        }
        if let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|field| field != "metadata");
            if required.is_empty() {
                schema.remove("required");
            }
        }
    }

    /// Writes `x-kubernetes-patch-merge-key`/`-strategy` on every list property that the patch
    /// engine merges, walking from each root kind as `patch::list_strategy` sees paths.
    pub(super) fn mark_list_patches(&mut self, roots: &[String]) {
        // NB: a schema reached along two paths could merge differently on each; the first path
        // (in `roots` order) wins. `tests::served_lists_merge_the_same_way_on_every_path` checks
        // that no served kind hits this.
        let marks: Vec<(String, String, ListPatch)> = list_patches(&self.defs, roots)
            .into_iter()
            .filter_map(|((def, field), found)| Some((def.to_string(), field.to_string(), (*found.first()?)?)))
            .collect();
        for (def, field, how) in marks {
            let Some(Value::Object(property)) = self
                .defs
                .get_mut(&def)
                .and_then(|schema| schema.get_mut("properties"))
                .and_then(|properties| properties.get_mut(&field))
            else {
                continue;
            };
            if let ListPatch::MergeByKey(key) = how {
                property.insert(MERGE_KEY.into(), Value::from(key));
            }
            property.insert(PATCH_STRATEGY.into(), Value::from("merge"));
        }
    }

    /// `roots` and every name they reference, directly or not.
    pub(super) fn closure(&self, roots: BTreeSet<String>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<String> = roots.into_iter().collect();
        while let Some(name) = todo.pop() {
            let Some(schema) = self.defs.get(&name) else {
                continue;
            };
            if !seen.insert(name) {
                continue;
            }
            let mut refs = BTreeSet::new();
            collect_refs(schema, V3_REF, &mut refs);
            todo.extend(refs.into_iter().filter(|r| !seen.contains(r)));
        }
        seen
    }

    /// Each schema as OpenAPI v3 JSON text, by name.
    pub(super) fn texts(&self) -> BTreeMap<&str, String> {
        self.defs
            .iter()
            .map(|(name, schema)| (name.as_str(), schema.to_string()))
            .collect()
    }

    /// The canonical definitions, for tests that walk them.
    #[cfg(test)]
    pub(super) fn defs_for_tests(&self) -> &Map<String, Value> {
        &self.defs
    }

    /// Every schema, as swagger 2.0 `definitions`.
    pub(super) fn v2(&self) -> Map<String, Value> {
        self.defs
            .iter()
            .map(|(name, schema)| (name.clone(), to_v2(schema)))
            .collect()
    }
}

/// The name a `$ref` points at, whatever definitions path the generator used (`#/$defs/X`,
/// `#/definitions/X`, `#/components/schemas/X`), with schemars' escapes (JSON pointer `~0`/`~1`,
/// then percent-encoding) undone. k8s-openapi's names need neither.
pub(super) fn ref_name(reference: &str) -> Option<String> {
    let tail = reference.strip_prefix('#')?.rsplit('/').next()?;
    if tail.is_empty() {
        return None;
    }
    let unescaped = tail.replace("~1", "/").replace("~0", "~");
    let mut bytes = Vec::with_capacity(unescaped.len());
    let mut rest = unescaped.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let decoded = match (byte, tail) {
            (b'%', [hi, lo, ..]) => std::str::from_utf8(&[*hi, *lo])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match decoded {
            Some(b) => {
                bytes.push(b);
                rest = tail.get(2..).unwrap_or_default();
            }
            None => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

/// Adds to `out` the names of every reference under `value` spelled with `prefix`.
pub(super) fn collect_refs(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(reference)) => {
                        if let Some(name) = reference.strip_prefix(prefix) {
                            out.insert(name.to_string());
                        }
                    }
                    _ => collect_refs(child, prefix, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, prefix, out)),
        _ => {}
    }
}

/// Rewrites one schema (in place) into the canonical shape: an object; one `type` at most
/// (`null` becomes `nullable`); `const` as `enum`; `items` a single schema; references
/// `#/components/schemas/NAME`, alone or wrapped in `allOf` when they have siblings, as
/// upstream's v3 documents write them.
fn canonical(schema: &mut Value) {
    let map = match schema {
        Value::Object(map) => map,
        Value::Bool(false) => {
            *schema = json!({"not": {}});
            return;
        }
        // `true` accepts anything; anything else is not a schema at all.
        _ => {
            *schema = Value::Object(Map::new());
            return;
        }
    };
    for keyword in DROPPED {
        map.remove(*keyword);
    }
    if let Some(reference) = map.remove("$ref")
        && let Some(name) = reference.as_str().and_then(ref_name)
    {
        map.insert("$ref".into(), Value::from(format!("{V3_REF}{name}")));
    }
    if let Some(value) = map.remove("const") {
        map.entry("enum").or_insert_with(|| json!([value]));
    }
    if let Some(Value::Array(examples)) = map.remove("examples")
        && let Some(first) = examples.into_iter().next()
    {
        map.entry("example").or_insert(first);
    }
    normalise_type(map);
    if let Some(prefix) = map.remove("prefixItems")
        && !map.contains_key("items")
    {
        map.insert("items".into(), prefix);
    }
    if let Some(items) = map.get_mut("items") {
        if let Value::Array(tuple) = items {
            *items = tuple.first().cloned().unwrap_or_else(|| json!({}));
        }
        canonical(items);
    }
    if let Some(not) = map.get_mut("not") {
        canonical(not);
    }
    match map.get_mut("additionalProperties") {
        Some(Value::Bool(_)) | None => {}
        Some(values) => canonical(values),
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(canonical);
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = map.get_mut(keyword) {
            branches.iter_mut().for_each(canonical);
        }
    }
    fold_nullable_branches(map);
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        && !["type", "oneOf", "anyOf", "$ref", "allOf"]
            .iter()
            .any(|k| map.contains_key(*k))
    {
        map.remove("x-kubernetes-int-or-string");
        map.insert("format".into(), Value::from("int-or-string"));
        map.insert("oneOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
    }
    if map.len() > 1
        && let Some(reference) = map.remove("$ref")
    {
        let wrapped = json!({"$ref": reference});
        match map.get_mut("allOf") {
            Some(Value::Array(all)) => all.insert(0, wrapped),
            _ => {
                map.insert("allOf".into(), json!([wrapped]));
            }
        }
    }
}

/// `"type": [T, "null"]` → `"type": T, "nullable": true`; several non-null types → no type.
fn normalise_type(map: &mut Map<String, Value>) {
    let nullable = match map.get("type") {
        Some(Value::Array(types)) => {
            let nullable = types.iter().any(|t| t == "null");
            let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
            match <[Value; 1]>::try_from(rest) {
                Ok([only]) => {
                    map.insert("type".into(), only);
                }
                Err(_) => {
                    map.remove("type");
                }
            }
            nullable
        }
        Some(Value::String(t)) if t == "null" => {
            map.remove("type");
            true
        }
        Some(Value::String(_)) | None => false,
        Some(_) => {
            map.remove("type");
            false
        }
    };
    if nullable {
        map.insert("nullable".into(), Value::Bool(true));
    }
}

/// `anyOf`/`oneOf` branches that only admit null become `nullable`; a single branch left over
/// is merged into the schema (a reference becomes `allOf: [ref]`).
fn fold_nullable_branches(map: &mut Map<String, Value>) {
    for keyword in ["anyOf", "oneOf"] {
        let Some(Value::Array(branches)) = map.get_mut(keyword) else {
            continue;
        };
        let before = branches.len();
        branches.retain(|b| !only_null(b));
        if branches.len() == before {
            continue;
        }
        map.insert("nullable".into(), Value::Bool(true));
        let Some(Value::Array(branches)) = map.remove(keyword) else {
            continue;
        };
        let mut rest = branches.into_iter();
        match (rest.next(), rest.next()) {
            (None, _) => {}
            (Some(Value::Object(only)), None) => {
                if only.contains_key("$ref") && !map.contains_key("allOf") {
                    map.insert("allOf".into(), json!([only]));
                } else {
                    for (key, value) in only {
                        map.entry(key).or_insert(value);
                    }
                }
            }
            (Some(first), second) => {
                let kept: Vec<Value> = [first].into_iter().chain(second).chain(rest).collect();
                map.insert(keyword.into(), Value::Array(kept));
            }
        }
    }
}

fn only_null(schema: &Value) -> bool {
    let Value::Object(map) = schema else {
        return false;
    };
    map.get("type") == Some(&Value::from("null"))
        || (map.get("nullable") == Some(&Value::Bool(true))
            && map.keys().all(|k| k == "nullable" || k == "description"))
}

/// IntOrString and Quantity as upstream's v3 documents define them (k8s-openapi only says
/// `x-kubernetes-int-or-string`, which leaves them without a type).
fn upstream_scalar(name: &str, schema: &Value) -> Value {
    let mut out = Map::new();
    if let Some(description) = schema.get("description") {
        out.insert("description".into(), description.clone());
    }
    if name == INT_OR_STRING {
        out.insert("format".into(), Value::from("int-or-string"));
        out.insert("oneOf".into(), json!([{"type": "integer"}, {"type": "string"}]));
    } else {
        out.insert("oneOf".into(), json!([{"type": "string"}, {"type": "number"}]));
    }
    Value::Object(out)
}

/// Removes references to undefined names, so a document never points nowhere.
fn drop_dangling_refs(value: &mut Value, names: &BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            let dangling = match map.get("$ref") {
                Some(Value::String(r)) => r.strip_prefix(V3_REF).is_none_or(|n| !names.contains(n)),
                _ => false,
            };
            if dangling {
                map.remove("$ref");
            }
            for child in map.values_mut() {
                drop_dangling_refs(child, names);
            }
            if let Some(Value::Array(all)) = map.get_mut("allOf") {
                all.retain(|s| s.as_object().is_none_or(|m| !m.is_empty()));
                if all.is_empty() {
                    map.remove("allOf");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| drop_dangling_refs(i, names)),
        _ => {}
    }
}

/// The name a schema refers to: a bare `$ref`, or `allOf` wrapping one reference.
fn reference(schema: &Value) -> Option<&str> {
    let map = schema.as_object()?;
    if let Some(r) = map.get("$ref") {
        return r.as_str()?.strip_prefix(V3_REF);
    }
    match map.get("allOf")?.as_array()?.as_slice() {
        [only] => only.get("$ref")?.as_str()?.strip_prefix(V3_REF),
        _ => None,
    }
}

/// One canonical schema in swagger 2.0 form. Kept: what gnostic's `Schema` message carries and
/// kube-openapi reads. A reference keeps only its description and extensions (kube-openapi
/// rejects a `$ref` beside `type` or `properties`); `oneOf`/`anyOf` of scalars become the one
/// type upstream writes (`string`, with `format: int-or-string` for IntOrString).
fn to_v2(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return json!({});
    };
    let mut out = Map::new();
    if let Some(name) = reference(schema) {
        out.insert("$ref".into(), Value::from(format!("{V2_REF}{name}")));
        if let Some(description) = map.get("description") {
            out.insert("description".into(), description.clone());
        }
        copy_extensions(map, &mut out);
        return Value::Object(out);
    }
    for keyword in ["description", "format"] {
        if let Some(value @ Value::String(_)) = map.get(keyword) {
            out.insert(keyword.into(), value.clone());
        }
    }
    match map.get("type") {
        Some(t @ Value::String(_)) => {
            out.insert("type".into(), t.clone());
        }
        _ => {
            if let Some(t) = scalar_type(map) {
                out.insert("type".into(), Value::from(t));
            }
        }
    }
    if let Some(items) = map.get("items") {
        out.insert("items".into(), to_v2(items));
    } else if out.get("type") == Some(&Value::from("array")) {
        // kube-openapi wants exactly one item schema on every array.
        out.insert("items".into(), json!({}));
    }
    if let Some(Value::Object(properties)) = map.get("properties") {
        let v2: Map<String, Value> = properties
            .iter()
            .map(|(name, property)| (name.clone(), to_v2(property)))
            .collect();
        out.insert("properties".into(), Value::Object(v2));
    }
    match map.get("additionalProperties") {
        Some(b @ Value::Bool(_)) => {
            out.insert("additionalProperties".into(), b.clone());
        }
        Some(values) => {
            out.insert("additionalProperties".into(), to_v2(values));
        }
        None => {}
    }
    for keyword in ["required", "enum"] {
        if let Some(value @ Value::Array(_)) = map.get(keyword) {
            out.insert(keyword.into(), value.clone());
        }
    }
    copy_extensions(map, &mut out);
    // Whatever `allOf` adds beyond a single reference fills in what is still missing.
    if let Some(Value::Array(all)) = map.get("allOf") {
        for part in all {
            if let Value::Object(part) = to_v2(part) {
                for (key, value) in part {
                    if key != "$ref" {
                        out.entry(key).or_insert(value);
                    }
                }
            }
        }
    }
    Value::Object(out)
}

/// The single swagger type for a schema that lists scalar alternatives, as upstream collapses
/// IntOrString (`string` + `int-or-string`) and Quantity (`string`).
fn scalar_type(map: &Map<String, Value>) -> Option<&'static str> {
    let branches = map
        .get("oneOf")
        .or_else(|| map.get("anyOf"))
        .and_then(Value::as_array)?;
    let types: Vec<&str> = branches
        .iter()
        .map(|b| b.get("type").and_then(Value::as_str))
        .collect::<Option<_>>()?;
    let scalar = |t: &&str| matches!(*t, "string" | "integer" | "number" | "boolean");
    if types.is_empty() || !types.iter().all(scalar) {
        return None;
    }
    if types.contains(&"string") {
        return Some("string");
    }
    match types.as_slice() {
        [first, rest @ ..] if rest.iter().all(|t| t == first) => match *first {
            "integer" => Some("integer"),
            "boolean" => Some("boolean"),
            _ => Some("number"),
        },
        _ => Some("number"),
    }
}

fn copy_extensions(from: &Map<String, Value>, to: &mut Map<String, Value>) {
    for (key, value) in from {
        if key.starts_with("x-") && key != "x-kubernetes-int-or-string" {
            to.insert(key.clone(), value.clone());
        }
    }
}

/// What one property's schema is, for the list walk.
enum Shape<'a> {
    Named(&'a str),
    Array(&'a Value),
    Map(&'a Value),
    Other,
}

fn shape(schema: &Value) -> Shape<'_> {
    if let Some(name) = reference(schema) {
        return Shape::Named(name);
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("array") => schema.get("items").map_or(Shape::Other, Shape::Array),
        Some("object") | None if schema.get("properties").is_none() => match schema.get("additionalProperties") {
            Some(values @ Value::Object(_)) => Shape::Map(values),
            _ => Shape::Other,
        },
        _ => Shape::Other,
    }
}

/// For each `(definition, property)` holding a list, how strategic merge patch merges it along
/// each path that reaches it (deduplicated, in walk order; `None` means replace).
pub(super) type ListPatches<'a> = BTreeMap<(&'a str, &'a str), Vec<Option<ListPatch>>>;

/// A property the walk goes through: into a named schema, a list, or a map's values.
enum Edge<'a> {
    Named(usize),
    List(List<'a>),
    Map(usize),
}

/// What a list's elements are, for checking a strategy fits them.
struct List<'a> {
    /// The named schema of its elements, if they have one.
    element: Option<usize>,
    /// Its elements' property names, if they are objects.
    keys: Option<&'a Map<String, Value>>,
    primitive: bool,
}

/// The definitions as a graph over indices, so the walk does no name lookups.
struct Graph<'a> {
    names: Vec<&'a str>,
    edges: Vec<Vec<(&'a str, Edge<'a>)>>,
}

impl<'a> Graph<'a> {
    fn new(defs: &'a Map<String, Value>) -> Self {
        let names: Vec<&str> = defs.keys().map(String::as_str).collect();
        let index: BTreeMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let named = |schema: &Value| match shape(schema) {
            Shape::Named(name) => index.get(name).copied(),
            _ => None,
        };
        let edges = defs
            .values()
            .map(|schema| {
                let properties = schema.get("properties").and_then(Value::as_object);
                properties
                    .into_iter()
                    .flatten()
                    .filter_map(|(field, property)| {
                        let edge = match shape(property) {
                            Shape::Named(name) => Edge::Named(*index.get(name)?),
                            Shape::Array(items) => {
                                let element = named(items);
                                let schema = match element.and_then(|i| defs.get(names[i])) {
                                    Some(schema) => schema,
                                    None => items,
                                };
                                let keys = schema.get("properties").and_then(Value::as_object);
                                let kind = schema.get("type").and_then(Value::as_str);
                                let primitive = keys.is_none() && !matches!(kind, Some("object" | "array"));
                                Edge::List(List {
                                    element,
                                    keys,
                                    primitive,
                                })
                            }
                            Shape::Map(values) => Edge::Map(named(values)?),
                            Shape::Other => return None,
                        };
                        Some((field.as_str(), edge))
                    })
                    .collect()
            })
            .collect();
        Graph { names, edges }
    }
}

/// Walks every path from each root kind, as the patch engine names paths: property names,
/// list indices dropped, a map's keys standing as `*`.
pub(super) fn list_patches<'a>(defs: &'a Map<String, Value>, roots: &[String]) -> ListPatches<'a> {
    let graph = Graph::new(defs);
    let mut walk = Walk {
        graph: &graph,
        path: Vec::new(),
        spare: Vec::new(),
        entered: vec![false; graph.names.len()],
        found: ListPatches::new(),
    };
    for root in roots {
        if let Some(i) = graph.names.iter().position(|n| n == root) {
            walk.enter(i);
        }
    }
    walk.found
}

/// The state of one walk: the current path, and what was found so far.
struct Walk<'g, 'a> {
    graph: &'g Graph<'a>,
    path: Vec<String>,
    /// Popped path segments, reused so descending does not allocate.
    spare: Vec<String>,
    /// The definitions on the current path; a type that contains itself (none of the served
    /// ones does) is not entered again below itself, so the walk ends.
    entered: Vec<bool>,
    found: ListPatches<'a>,
}

impl<'a> Walk<'_, 'a> {
    fn enter(&mut self, def: usize) {
        if self.entered[def] {
            return;
        }
        self.entered[def] = true;
        let graph = self.graph;
        for (field, edge) in &graph.edges[def] {
            match edge {
                Edge::Named(inner) => self.descend(&[field], *inner),
                Edge::List(list) => {
                    let strategy = patch::list_strategy(&self.path, field);
                    let how = match strategy {
                        ListStrategy::MergeByKey(key) if list.keys.is_some_and(|keys| keys.contains_key(key)) => {
                            Some(ListPatch::MergeByKey(key))
                        }
                        ListStrategy::MergePrimitives if list.primitive => Some(ListPatch::MergePrimitives),
                        // `list_strategy` goes by field names alone, so it also names lists such
                        // as EndpointSlice's string `addresses`, which upstream merges atomically.
                        _ => None,
                    };
                    let seen = self.found.entry((graph.names[def], *field)).or_default();
                    if !seen.contains(&how) {
                        seen.push(how);
                    }
                    if let Some(inner) = list.element {
                        self.descend(&[field], inner);
                    }
                }
                Edge::Map(inner) => self.descend(&[field, "*"], *inner),
            }
        }
        self.entered[def] = false;
    }

    fn descend(&mut self, segments: &[&str], def: usize) {
        for segment in segments {
            let mut s = self.spare.pop().unwrap_or_default();
            s.clear();
            s.push_str(segment);
            self.path.push(s);
        }
        self.enter(def);
        for _ in segments {
            if let Some(s) = self.path.pop() {
                self.spare.push(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas(raw: Value) -> Schemas {
        let Value::Object(raw) = raw else {
            panic!("definitions must be an object")
        };
        Schemas::new(raw)
    }

    #[test]
    fn schemars_constructs_become_openapi_30() {
        let s = schemas(json!({
            "A": {
                "type": "object",
                "$defs": {"x": {}},
                "properties": {
                    "maybe": {"type": ["string", "null"]},
                    "fixed": {"const": "v"},
                    "any": true,
                    "opt": {"anyOf": [{"$ref": "#/$defs/B"}, {"type": "null"}]},
                    "tuple": {"type": "array", "prefixItems": [{"type": "integer"}]},
                    "sibling": {"$ref": "#/definitions/B", "description": "d"},
                    "gone": {"$ref": "#/components/schemas/Nope", "description": "d"}
                }
            },
            "B": {"type": "string"}
        }));
        let a = &s.defs["A"]["properties"];
        assert_eq!(a["maybe"], json!({"type": "string", "nullable": true}));
        assert_eq!(a["fixed"], json!({"enum": ["v"]}));
        assert_eq!(a["any"], json!({}));
        assert_eq!(
            a["opt"],
            json!({"allOf": [{"$ref": "#/components/schemas/B"}], "nullable": true})
        );
        assert_eq!(a["tuple"]["items"], json!({"type": "integer"}));
        assert_eq!(
            a["sibling"],
            json!({"allOf": [{"$ref": "#/components/schemas/B"}], "description": "d"})
        );
        assert_eq!(a["gone"], json!({"description": "d"}));
        assert!(s.defs["A"].get("$defs").is_none());
    }

    #[test]
    fn v2_references_stand_alone_and_scalars_get_one_type() {
        let s = schemas(json!({
            INT_OR_STRING: {"description": "ios", "x-kubernetes-int-or-string": true},
            QUANTITY: {"description": "q", "x-kubernetes-int-or-string": true},
            "A": {"type": "object", "properties": {
                "port": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.util.intstr.IntOrString", "description": "p"},
                "list": {"type": "array"}
            }}
        }));
        let v2 = s.v2();
        assert_eq!(
            v2[INT_OR_STRING],
            json!({"description": "ios", "type": "string", "format": "int-or-string"})
        );
        assert_eq!(v2[QUANTITY], json!({"description": "q", "type": "string"}));
        assert_eq!(
            v2["A"]["properties"]["port"],
            json!({"$ref": format!("{V2_REF}{INT_OR_STRING}"), "description": "p"})
        );
        assert_eq!(v2["A"]["properties"]["list"]["items"], json!({}));
        assert_eq!(
            s.defs[INT_OR_STRING]["oneOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
    }

    #[test]
    fn ref_names_undo_schemars_escapes() {
        assert_eq!(
            ref_name("#/components/schemas/io.k8s.api.core.v1.Pod").as_deref(),
            Some("io.k8s.api.core.v1.Pod")
        );
        assert_eq!(ref_name("#/$defs/List%3CPod%3E").as_deref(), Some("List<Pod>"));
        assert_eq!(ref_name("#/definitions/a~1b~0c%").as_deref(), Some("a/b~c%"));
        assert_eq!(ref_name("#/definitions/"), None);
        assert_eq!(ref_name("other.json#/x"), None);
    }

    #[test]
    fn kinds_list_their_gvk_and_stop_requiring_metadata() {
        let mut s = schemas(json!({"Pod": {"type": "object", "required": ["metadata"]}}));
        let gvk = json!({"group": "", "kind": "Pod", "version": "v1"});
        s.mark_kind("Pod", gvk.clone());
        s.mark_kind("Pod", gvk.clone());
        assert_eq!(s.defs["Pod"][GVK], json!([gvk]));
        assert!(s.defs["Pod"].get("required").is_none());
    }

    #[test]
    fn lists_are_marked_only_where_elements_fit_the_strategy() {
        let mut s = schemas(json!({
            "Slice": {"type": "object", "properties": {
                "endpoints": {"type": "array", "items": {"$ref": "#/components/schemas/Endpoint"}}
            }},
            "Endpoint": {"type": "object", "properties": {
                "addresses": {"type": "array", "items": {"type": "string"}},
                "conditions": {"type": "array", "items": {"$ref": "#/components/schemas/Cond"}}
            }},
            "Cond": {"type": "object", "properties": {"type": {"type": "string"}}}
        }));
        s.mark_list_patches(&["Slice".to_string()]);
        let endpoint = &s.defs["Endpoint"]["properties"];
        assert!(endpoint["addresses"].get(MERGE_KEY).is_none());
        assert_eq!(endpoint["conditions"][MERGE_KEY], "type");
        assert_eq!(endpoint["conditions"][PATCH_STRATEGY], "merge");
    }
}
