//! The OpenAPI documents kubectl reads. `GET /openapi/v3` is an index of one JSON document per
//! group-version (`kubectl explain`, and client-side apply's field-validation and strategic
//! merge checks, read those); `GET /openapi/v2` is one swagger 2.0 document, served as gnostic
//! protobuf, the only form kubectl 1.20 (and 1.3x's fallbacks) fetch, or as JSON on request.
//!
//! Mirrors upstream's `k8s.io/apiserver/pkg/endpoints/openapi` (operations built from the
//! installed REST storage), `k8s.io/kube-openapi/pkg/builder{,3}` (schema post-processing) and
//! `pkg/handler{,3}` (serving). State enters once, at startup: the table of served resources and
//! a schemars generator holding their schemas. [`Documents::build`] renders every document to
//! bytes; handlers then only clone those `Bytes`, so serving never blocks or fails.
//!
//! Each operation carries `x-kubernetes-group-version-kind` (an object) and each kind's schema
//! lists it (an array); PATCH operations declare an inline `fieldValidation` query parameter
//! and the strategic-merge content type, and list properties carry the
//! `x-kubernetes-patch-merge-key`/`-strategy` that `crate::apiserver::patch` merges them by, so
//! kubectl computes the same patches the server applies.

mod proto;
mod schema;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use k8s_openapi::api::{autoscaling, core, policy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use crate::api::resources::{ResourceInfo, Subresource};

use schema::{Schemas, V2_REF, V3_REF};

/// The Kubernetes version the documents describe (`info.version`).
const KUBERNETES_VERSION: &str = "v1.37.0";
/// Name of the PATCH request body schema, as upstream names it.
const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
/// The content types a PATCH accepts, in upstream's order.
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];
/// The content types responses come in (v2 `produces`; v3 responses list JSON only).
const PRODUCES: &[&str] = &["application/json", "application/yaml"];

/// Every document, rendered once. Cheap to share: handlers clone `Bytes`.
pub(crate) struct Documents {
    index: Bytes,
    v3: BTreeMap<String, Bytes>,
    v2_json: Bytes,
    v2_protobuf: Bytes,
}

impl Documents {
    /// Builds every document once, at startup, before the server accepts requests.
    ///
    /// `kinds` holds each served resource with the schemars component name of its top-level
    /// type (e.g. `io.k8s.api.core.v1.Pod`); `generator` is one from [`generator`] on which the
    /// caller already called `subschema_for::<T>()` for each served type. Kinds that
    /// subresources return (`autoscaling/v1` Scale, Binding, Eviction) are added here. A name
    /// the generator does not define still gets its paths, with untyped bodies, rather than a
    /// reference to nothing. Pure CPU work, about 10–20 ms in a release build for the 17 served
    /// kinds; never fails.
    pub(crate) fn build(kinds: &[(&'static ResourceInfo, String)], mut generator: SchemaGenerator) -> Self {
        let status = add::<meta::Status>(&mut generator);
        let delete_options = add::<meta::DeleteOptions>(&mut generator);
        let list_meta = add::<meta::ListMeta>(&mut generator);
        let served: BTreeMap<Gvk, &str> = kinds
            .iter()
            .map(|(r, name)| (Gvk::new(r.group, r.version, r.kind), name.as_str()))
            .collect();
        // The schema of every kind a subresource returns, served or not.
        let mut returned: BTreeMap<Gvk, String> = BTreeMap::new();
        for (r, _) in kinds {
            for sub in r.subresources {
                let gvk = Gvk::new(sub.group, sub.version, sub.kind);
                let name = match served.get(&gvk) {
                    Some(name) => Some(name.to_string()),
                    None => subresource_kind(&mut generator, &gvk),
                };
                if let Some(name) = name {
                    returned.insert(gvk, name);
                }
            }
        }

        let mut schemas = Schemas::new(generator.take_definitions(true));
        let defined = |name: Option<String>| name.filter(|n| schemas.contains(n));
        let common = Common {
            status: defined(status),
            delete_options: defined(delete_options),
        };
        schemas.insert_if_absent(
            PATCH,
            json!({
                "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body.",
                "type": "object"
            }),
        );
        let list_meta = list_meta.filter(|n| schemas.contains(n));
        let mut roots = Vec::new();
        let mut resources = Vec::new();
        for (r, name) in kinds {
            let kind = Some(name.clone()).filter(|n| schemas.contains(n));
            let list = kind.as_ref().map(|kind| {
                let list = format!("{kind}List");
                schemas.insert_if_absent(&list, list_schema(r, kind, list_meta.as_deref()));
                schemas.mark_kind(&list, gvk_json(r.group, r.version, &format!("{}List", r.kind)));
                list
            });
            if let Some(kind) = &kind {
                schemas.mark_kind(kind, gvk_json(r.group, r.version, r.kind));
                roots.push(kind.clone());
            }
            resources.push(Resource { info: r, kind, list });
        }
        for (gvk, name) in &returned {
            if schemas.contains(name) {
                schemas.mark_kind(name, gvk.json());
                roots.push(name.clone());
            }
        }
        schemas.mark_list_patches(&roots);

        // Operations, grouped by the group-version whose document lists them.
        let mut by_gv: BTreeMap<String, Vec<PathItem>> = BTreeMap::new();
        for resource in &resources {
            let subs: Vec<(&Subresource, Option<&str>)> = resource
                .info
                .subresources
                .iter()
                .map(|sub| {
                    let gvk = Gvk::new(sub.group, sub.version, sub.kind);
                    let name = returned.get(&gvk).filter(|n| schemas.contains(n));
                    (sub, name.map(String::as_str))
                })
                .collect();
            let info = resource.info;
            by_gv
                .entry(gv_path(info.group, info.version))
                .or_default()
                .extend(path_items(resource, &subs, &common));
        }

        let info = json!({"title": "Kubernetes", "version": KUBERNETES_VERSION});
        // Each schema is serialised once and spliced into every v3 document that uses it.
        let texts = schemas.texts();
        let mut v3 = BTreeMap::new();
        let mut index = Map::new();
        let mut v2_paths = Map::new();
        for (gv, items) in &by_gv {
            let paths: Map<String, Value> = items.iter().map(|item| (item.path.clone(), item.v3())).collect();
            let paths = Value::Object(paths);
            let mut roots = BTreeSet::new();
            schema::collect_refs(&paths, V3_REF, &mut roots);
            let names = schemas.closure(roots);
            let bytes = Bytes::from(v3_document(&info, &paths, &names, &texts));
            index.insert(
                gv.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", content_hash(&bytes))}),
            );
            v3.insert(gv.clone(), bytes);
            v2_paths.extend(items.iter().map(|item| (item.path.clone(), item.v2())));
        }
        let v2 = object([
            ("swagger", Value::from("2.0")),
            ("info", info),
            ("paths", Value::Object(v2_paths)),
            ("definitions", Value::Object(schemas.v2())),
        ]);
        Documents {
            index: Bytes::from(object([("paths", Value::Object(index))]).to_string()),
            v3,
            v2_protobuf: Bytes::from(proto::document(&v2)),
            v2_json: Bytes::from(v2.to_string()),
        }
    }

    /// `GET /openapi/v3`: the index, JSON. Its URLs carry a content hash of each document, so a
    /// handler may serve those (and only those) with long-lived cache headers.
    pub(crate) fn v3_index(&self) -> Bytes {
        self.index.clone()
    }

    /// `GET /openapi/v3/{path}` for `path` like `api/v1` or `apis/apps/v1` (query string already
    /// removed), JSON; `None` if no such group-version is served.
    pub(crate) fn v3(&self, group_version_path: &str) -> Option<Bytes> {
        self.v3.get(group_version_path.trim_matches('/')).cloned()
    }

    /// `GET /openapi/v2` for `Accept: application/json`: swagger 2.0 as JSON.
    pub(crate) fn v2_json(&self) -> Bytes {
        self.v2_json.clone()
    }

    /// `GET /openapi/v2` for any other Accept (kubectl sends
    /// `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): the same document as a
    /// gnostic `openapi.v2.Document`. Upstream answers with Content-Type
    /// `application/com.github.proto-openapi.spec.v2.v1.0+protobuf`.
    pub(crate) fn v2_protobuf(&self) -> Bytes {
        self.v2_protobuf.clone()
    }
}

/// One group-version's v3 document: `info`, `paths`, and the schemas `names` lists, taken from
/// `texts` (each schema's JSON, serialised once for all documents).
fn v3_document(info: &Value, paths: &Value, names: &BTreeSet<String>, texts: &BTreeMap<&str, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(br#"{"openapi":"3.0.0","info":"#);
    out.extend_from_slice(info.to_string().as_bytes());
    out.extend_from_slice(br#","paths":"#);
    out.extend_from_slice(paths.to_string().as_bytes());
    out.extend_from_slice(br#","components":{"schemas":{"#);
    let mut first = true;
    for name in names {
        let Some(text) = texts.get(name.as_str()) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(Value::from(name.as_str()).to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(b"}}}");
    out
}

/// A schemars generator configured for these documents: OpenAPI 3.0 settings, so references
/// read `#/components/schemas/NAME` and a reference with siblings is wrapped in `allOf`, as
/// upstream writes them. Call `subschema_for::<T>()` on it for each served type, then hand it to
/// [`Documents::build`].
pub(crate) fn generator() -> SchemaGenerator {
    SchemaSettings::openapi3()
        .with(|s| s.meta_schema = None)
        .into_generator()
}

/// Registers `T` (and everything it references) and returns its definition's name.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> Option<String> {
    let reference = generator.subschema_for::<T>();
    reference.get("$ref").and_then(Value::as_str).and_then(schema::ref_name)
}

/// The schema of a kind that a subresource returns and no served resource has.
fn subresource_kind(generator: &mut SchemaGenerator, gvk: &Gvk) -> Option<String> {
    match (gvk.group, gvk.version, gvk.kind) {
        ("autoscaling", "v1", "Scale") => add::<autoscaling::v1::Scale>(generator),
        ("", "v1", "Binding") => add::<core::v1::Binding>(generator),
        ("policy", "v1", "Eviction") => add::<policy::v1::Eviction>(generator),
        _ => None,
    }
}

/// `PodList` and friends, as upstream defines them.
fn list_schema(r: &ResourceInfo, kind: &str, list_meta: Option<&str>) -> Value {
    let metadata = match list_meta {
        Some(name) => {
            json!({"allOf": [{"$ref": format!("{V3_REF}{name}")}], "description": "Standard list metadata."})
        }
        None => json!({"type": "object", "description": "Standard list metadata."}),
    };
    json!({
        "description": format!("{}List is a list of {}.", r.kind, r.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
            "items": {"type": "array", "items": {"$ref": format!("{V3_REF}{kind}")}, "description": format!("List of {}.", r.plural)},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
            "metadata": metadata,
        },
    })
}

/// `api/v1` for the core group, `apis/GROUP/VERSION` otherwise, as the v3 index keys them.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Gvk {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
}

impl Gvk {
    fn new(group: &'static str, version: &'static str, kind: &'static str) -> Self {
        Gvk { group, version, kind }
    }

    fn json(&self) -> Value {
        gvk_json(self.group, self.version, self.kind)
    }
}

/// `{"group", "kind", "version"}`, with `"group": ""` for core: kubectl compares these maps
/// whole, so operations and schemas must spell them identically.
fn gvk_json(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "kind": kind, "version": version})
}

/// A served resource and the schemas its operations use.
struct Resource {
    info: &'static ResourceInfo,
    kind: Option<String>,
    list: Option<String>,
}

/// Schemas operations share.
struct Common {
    status: Option<String>,
    delete_options: Option<String>,
}

/// A query or path parameter.
#[derive(Clone, Copy)]
struct Param {
    name: &'static str,
    location: &'static str,
    kind: &'static str,
    description: &'static str,
}

const fn query(name: &'static str, kind: &'static str, description: &'static str) -> Param {
    Param {
        name,
        location: "query",
        kind,
        description,
    }
}

const NAME: Param = Param {
    name: "name",
    location: "path",
    kind: "string",
    description: "name of the object",
};
const NAMESPACE: Param = Param {
    name: "namespace",
    location: "path",
    kind: "string",
    description: "object name and auth scope, such as for teams and projects",
};
const PRETTY: Param = query("pretty", "string", "If 'true', then the output is pretty printed.");
const DRY_RUN: Param = query(
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Param = query(
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes.",
);
const FIELD_VALIDATION: Param = query(
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
);
const FORCE: Param = query(
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.",
);
const WRITE: &[Param] = &[PRETTY, DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION];
const PATCH_PARAMS: &[Param] = &[PRETTY, DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE];
/// The options of a list (and of a delete-collection), besides `pretty`.
const LIST: &[Param] = &[
    query(
        "allowWatchBookmarks",
        "boolean",
        "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
    ),
    query(
        "continue",
        "string",
        "The continue option should be set when retrieving more results from the server.",
    ),
    query(
        "fieldSelector",
        "string",
        "A selector to restrict the list of returned objects by their fields.",
    ),
    query(
        "labelSelector",
        "string",
        "A selector to restrict the list of returned objects by their labels.",
    ),
    query(
        "limit",
        "integer",
        "limit is a maximum number of responses to return for a list call.",
    ),
    query(
        "resourceVersion",
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    query(
        "resourceVersionMatch",
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    ),
    query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
    query(
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
    ),
];
const DELETE: &[Param] = &[
    PRETTY,
    DRY_RUN,
    query(
        "gracePeriodSeconds",
        "integer",
        "The duration in seconds before the object should be deleted.",
    ),
    query(
        "propagationPolicy",
        "string",
        "Whether and how garbage collection will be performed. Acceptable values are: 'Orphan', 'Background', 'Foreground'.",
    ),
];

/// What an operation's request body is.
#[derive(Clone, Copy)]
enum Body<'a> {
    None,
    /// The object itself (create, update).
    Object(Option<&'a str>),
    /// A patch in any of [`PATCH_TYPES`].
    Patch,
    /// Optional `DeleteOptions`.
    Delete(Option<&'a str>),
}

/// One operation, in a form both document versions render.
struct Operation<'a> {
    method: &'static str,
    action: &'static str,
    id: String,
    gvk: Value,
    params: Vec<Param>,
    body: Body<'a>,
    response: Option<&'a str>,
    codes: &'static [&'static str],
}

/// One path and its operations.
struct PathItem<'a> {
    path: String,
    operations: Vec<Operation<'a>>,
}

/// How a verb on one object (or one object's subresource) becomes an operation, as upstream's
/// installer maps them: method, `x-kubernetes-action`, operation ID verb, parameters, body and
/// response codes.
struct Verb {
    method: &'static str,
    action: &'static str,
    id: &'static str,
    params: &'static [Param],
    body: BodyOf,
    codes: &'static [&'static str],
}

/// Which [`Body`] a [`Verb`] takes.
#[derive(Clone, Copy)]
enum BodyOf {
    None,
    Object,
    Patch,
    Delete,
}

const OBJECT_VERBS: &[(&str, Verb)] = &[
    (
        "get",
        Verb {
            method: "get",
            action: "get",
            id: "read",
            params: &[PRETTY],
            body: BodyOf::None,
            codes: &["200"],
        },
    ),
    (
        "create",
        Verb {
            method: "post",
            action: "post",
            id: "create",
            params: WRITE,
            body: BodyOf::Object,
            codes: &["200", "201", "202"],
        },
    ),
    (
        "update",
        Verb {
            method: "put",
            action: "put",
            id: "replace",
            params: WRITE,
            body: BodyOf::Object,
            codes: &["200", "201"],
        },
    ),
    (
        "patch",
        Verb {
            method: "patch",
            action: "patch",
            id: "patch",
            params: PATCH_PARAMS,
            body: BodyOf::Patch,
            codes: &["200", "201"],
        },
    ),
    (
        "delete",
        Verb {
            method: "delete",
            action: "delete",
            id: "delete",
            params: DELETE,
            body: BodyOf::Delete,
            codes: &["200", "202"],
        },
    ),
];

/// Every path of one resource: its collection, the all-namespaces list of a namespaced one,
/// its items, and each subresource, with an operation per verb it supports.
fn path_items<'a>(
    resource: &'a Resource,
    subs: &[(&Subresource, Option<&'a str>)],
    common: &'a Common,
) -> Vec<PathItem<'a>> {
    let r = resource.info;
    let kind = resource.kind.as_deref();
    let list = resource.list.as_deref();
    let delete_options = common.delete_options.as_deref();
    let prefix = match r.group {
        "" => format!("/api/{}", r.version),
        group => format!("/apis/{group}/{}", r.version),
    };
    // Operation IDs read like upstream's: `listCoreV1NamespacedPod`, `readAppsV1Deployment`...
    let gv_id = format!("{}{}", id_group(r.group), capitalize(r.version));
    let (collection, scope, scoped): (String, &str, &[Param]) = if r.namespaced {
        let collection = format!("{prefix}/namespaces/{{namespace}}/{}", r.plural);
        (collection, "Namespaced", &[NAMESPACE])
    } else {
        (format!("{prefix}/{}", r.plural), "", &[])
    };
    let item = format!("{collection}/{{name}}");
    let on_object: Vec<Param> = [NAME].iter().chain(scoped).copied().collect();
    let params = |first: &[Param], rest: &[Param]| first.iter().chain(rest).copied().collect();
    let list_params = |first: &[Param]| params(first, &[&[PRETTY], LIST].concat());
    let operation = |gvk: Value, sub: &str, verb: &Verb, object: Option<&'a str>| Operation {
        method: verb.method,
        action: verb.action,
        id: format!("{}{gv_id}{scope}{}{sub}", verb.id, r.kind),
        gvk,
        params: params(&on_object, verb.params),
        body: match verb.body {
            BodyOf::None => Body::None,
            BodyOf::Object => Body::Object(object),
            BodyOf::Patch => Body::Patch,
            BodyOf::Delete => Body::Delete(delete_options),
        },
        response: object,
        codes: verb.codes,
    };
    let gvk = gvk_json(r.group, r.version, r.kind);

    let mut on_collection = Vec::new();
    if r.supports("list") {
        on_collection.push(Operation {
            method: "get",
            action: "list",
            id: format!("list{gv_id}{scope}{}", r.kind),
            gvk: gvk.clone(),
            params: list_params(scoped),
            body: Body::None,
            response: list,
            codes: &["200"],
        });
    }
    if r.supports("create") {
        on_collection.push(Operation {
            method: "post",
            action: "post",
            id: format!("create{gv_id}{scope}{}", r.kind),
            gvk: gvk.clone(),
            params: params(scoped, WRITE),
            body: Body::Object(kind),
            response: kind,
            codes: &["200", "201", "202"],
        });
    }
    if r.supports("deletecollection") {
        on_collection.push(Operation {
            method: "delete",
            action: "deletecollection",
            id: format!("delete{gv_id}Collection{scope}{}", r.kind),
            gvk: gvk.clone(),
            params: params(scoped, &[DELETE, LIST].concat()),
            body: Body::Delete(delete_options),
            response: common.status.as_deref(),
            codes: &["200"],
        });
    }
    let on_item = OBJECT_VERBS
        .iter()
        .filter(|(name, _)| *name != "create" && r.supports(name))
        .map(|(_, verb)| operation(gvk.clone(), "", verb, kind))
        .collect();
    let mut items = vec![
        PathItem {
            path: collection,
            operations: on_collection,
        },
        PathItem {
            path: item.clone(),
            operations: on_item,
        },
    ];
    if r.namespaced && r.supports("list") {
        items.push(PathItem {
            path: format!("{prefix}/{}", r.plural),
            operations: vec![Operation {
                method: "get",
                action: "list",
                id: format!("list{gv_id}{}ForAllNamespaces", r.kind),
                gvk: gvk.clone(),
                params: list_params(&[]),
                body: Body::None,
                response: list,
                codes: &["200"],
            }],
        });
    }
    for (sub, returned) in subs {
        let gvk = gvk_json(sub.group, sub.version, sub.kind);
        let suffix = capitalize(sub.name);
        let operations = OBJECT_VERBS
            .iter()
            .filter(|(name, _)| sub.verbs.contains(name))
            .map(|(_, verb)| operation(gvk.clone(), &suffix, verb, *returned))
            .collect();
        items.push(PathItem {
            path: format!("{item}/{}", sub.name),
            operations,
        });
    }
    items.retain(|item| !item.operations.is_empty());
    items
}

/// The group as operation IDs spell it: `Core`, `Apps`, `Coordination` (from
/// `coordination.k8s.io`), `RbacAuthorization`.
fn id_group(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split(['.', '-'])
        .map(capitalize)
        .collect()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl PathItem<'_> {
    /// The path item as OpenAPI v3 writes it.
    fn v3(&self) -> Value {
        let ops: Map<String, Value> = self
            .operations
            .iter()
            .map(|op| (op.method.to_string(), op.v3()))
            .collect();
        Value::Object(ops)
    }

    /// The path item as swagger 2.0 writes it.
    fn v2(&self) -> Value {
        let ops: Map<String, Value> = self
            .operations
            .iter()
            .map(|op| (op.method.to_string(), op.v2()))
            .collect();
        Value::Object(ops)
    }
}

fn reference(prefix: &str, name: Option<&str>) -> Value {
    match name {
        Some(name) => object([("$ref", Value::from(format!("{prefix}{name}")))]),
        None => object([("type", Value::from("object"))]),
    }
}

/// A JSON object from owned entries. (`json!` copies every interpolated value by serialising
/// it, which made building the documents several times slower.)
fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}

fn strings(values: &[&str]) -> Value {
    Value::Array(values.iter().map(|v| Value::from(*v)).collect())
}

fn description(code: &str) -> &'static str {
    match code {
        "201" => "Created",
        "202" => "Accepted",
        _ => "OK",
    }
}

impl Param {
    /// The parameter in v3 form, or in v2 form (type inline instead of under `schema`).
    fn render(&self, v3: bool) -> Value {
        let mut param = Map::new();
        param.insert("name".into(), Value::from(self.name));
        param.insert("in".into(), Value::from(self.location));
        param.insert("description".into(), Value::from(self.description));
        if self.location == "path" {
            param.insert("required".into(), Value::Bool(true));
        }
        let kind = [("type", Value::from(self.kind)), ("uniqueItems", Value::Bool(true))];
        if v3 {
            param.insert("schema".into(), object(kind));
        } else {
            param.extend(kind.map(|(k, v)| (k.to_string(), v)));
        }
        Value::Object(param)
    }
}

impl Operation<'_> {
    fn v3(&self) -> Value {
        let parameters = self.params.iter().map(|p| p.render(true)).collect();
        let content = |types: &[&str], schema: Value| -> Value {
            let entries = types
                .iter()
                .map(|t| (t.to_string(), object([("schema", schema.clone())])))
                .collect();
            Value::Object(entries)
        };
        let response = reference(V3_REF, self.response);
        let responses = self
            .codes
            .iter()
            .map(|code| {
                let body = object([
                    ("description", Value::from(description(code))),
                    ("content", content(&["application/json"], response.clone())),
                ]);
                (code.to_string(), body)
            })
            .collect();
        let mut op = Map::new();
        op.insert("operationId".into(), Value::from(self.id.as_str()));
        op.insert("parameters".into(), Value::Array(parameters));
        let body = match &self.body {
            Body::None => None,
            Body::Object(name) => Some((content(&["*/*"], reference(V3_REF, *name)), true)),
            Body::Patch => Some((content(PATCH_TYPES, reference(V3_REF, Some(PATCH))), true)),
            Body::Delete(name) => Some((content(&["*/*"], reference(V3_REF, *name)), false)),
        };
        if let Some((content, required)) = body {
            let body = object([("content", content), ("required", Value::Bool(required))]);
            op.insert("requestBody".into(), body);
        }
        op.insert("responses".into(), Value::Object(responses));
        op.insert("x-kubernetes-action".into(), Value::from(self.action));
        op.insert("x-kubernetes-group-version-kind".into(), self.gvk.clone());
        Value::Object(op)
    }

    fn v2(&self) -> Value {
        let mut parameters: Vec<Value> = self.params.iter().map(|p| p.render(false)).collect();
        let body = match &self.body {
            Body::None => None,
            Body::Object(name) => Some((reference(V2_REF, *name), true)),
            Body::Patch => Some((reference(V2_REF, Some(PATCH)), true)),
            Body::Delete(name) => Some((reference(V2_REF, *name), false)),
        };
        if let Some((schema, required)) = body {
            parameters.push(object([
                ("name", Value::from("body")),
                ("in", Value::from("body")),
                ("required", Value::Bool(required)),
                ("schema", schema),
            ]));
        }
        let response = reference(V2_REF, self.response);
        let responses = self
            .codes
            .iter()
            .map(|code| {
                let body = object([
                    ("description", Value::from(description(code))),
                    ("schema", response.clone()),
                ]);
                (code.to_string(), body)
            })
            .collect();
        let consumes: &[&str] = match self.body {
            Body::Patch => PATCH_TYPES,
            _ => &["*/*"],
        };
        object([
            ("consumes", strings(consumes)),
            ("produces", strings(PRODUCES)),
            ("operationId", Value::from(self.id.as_str())),
            ("parameters", Value::Array(parameters)),
            ("responses", Value::Object(responses)),
            ("x-kubernetes-action", Value::from(self.action)),
            ("x-kubernetes-group-version-kind", self.gvk.clone()),
        ])
    }
}

/// A stable content hash for the index's `?hash=` (upstream uses SHA-512; we have no SHA crate,
/// and the hash only has to change when the document does): FNV-1a over 128 bits, as 32
/// uppercase hex digits. Not for anything adversarial.
fn content_hash(bytes: &[u8]) -> String {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let hash = bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME));
    format!("{hash:032X}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::RESOURCES;
    use k8s_openapi::api::{apps, batch, coordination, discovery};

    /// What the apiserver hands [`Documents::build`]: every served resource with its type's
    /// schema registered.
    fn served() -> (Vec<(&'static ResourceInfo, String)>, SchemaGenerator) {
        fn name<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
            add::<T>(g).expect("k8s-openapi types are referenced by name")
        }
        let mut g = generator();
        let kinds = RESOURCES
            .iter()
            .map(|r| {
                let schema = match (r.group, r.kind) {
                    ("", "Namespace") => name::<core::v1::Namespace>(&mut g),
                    ("", "Pod") => name::<core::v1::Pod>(&mut g),
                    ("", "Node") => name::<core::v1::Node>(&mut g),
                    ("", "Service") => name::<core::v1::Service>(&mut g),
                    ("", "Endpoints") => name::<core::v1::Endpoints>(&mut g),
                    ("", "ConfigMap") => name::<core::v1::ConfigMap>(&mut g),
                    ("", "Secret") => name::<core::v1::Secret>(&mut g),
                    ("", "ServiceAccount") => name::<core::v1::ServiceAccount>(&mut g),
                    ("", "Event") => name::<core::v1::Event>(&mut g),
                    ("", "ReplicationController") => name::<core::v1::ReplicationController>(&mut g),
                    ("apps", "Deployment") => name::<apps::v1::Deployment>(&mut g),
                    ("apps", "ReplicaSet") => name::<apps::v1::ReplicaSet>(&mut g),
                    ("apps", "DaemonSet") => name::<apps::v1::DaemonSet>(&mut g),
                    ("apps", "StatefulSet") => name::<apps::v1::StatefulSet>(&mut g),
                    ("batch", "Job") => name::<batch::v1::Job>(&mut g),
                    ("coordination.k8s.io", "Lease") => name::<coordination::v1::Lease>(&mut g),
                    ("discovery.k8s.io", "EndpointSlice") => name::<discovery::v1::EndpointSlice>(&mut g),
                    (group, kind) => panic!("no type for {group}/{kind}"),
                };
                (r, schema)
            })
            .collect();
        (kinds, g)
    }

    fn documents() -> Documents {
        let (kinds, generator) = served();
        Documents::build(&kinds, generator)
    }

    fn parse(bytes: &Bytes) -> Value {
        serde_json::from_slice(bytes).expect("documents are JSON")
    }

    fn v3(docs: &Documents, gv: &str) -> Value {
        parse(&docs.v3(gv).expect("group-version is served"))
    }

    fn operations(doc: &Value) -> impl Iterator<Item = (&String, &String, &Value)> {
        doc["paths"].as_object().into_iter().flatten().flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(method, op)| (path, method, op))
        })
    }

    #[test]
    fn every_ref_resolves_in_every_document() {
        let docs = documents();
        for gv in docs.v3.keys() {
            let doc = v3(&docs, gv);
            let mut refs = BTreeSet::new();
            schema::collect_refs(&doc, V3_REF, &mut refs);
            let components = doc["components"]["schemas"].as_object().expect("components");
            for name in &refs {
                assert!(components.contains_key(name), "{gv}: {name} is not defined");
            }
            assert!(refs.contains(PATCH), "{gv} references Patch");
        }
        let v2 = parse(&docs.v2_json());
        let mut refs = BTreeSet::new();
        schema::collect_refs(&v2, V2_REF, &mut refs);
        let definitions = v2["definitions"].as_object().expect("definitions");
        for name in &refs {
            assert!(definitions.contains_key(name), "v2: {name} is not defined");
        }
        assert!(refs.contains("io.k8s.api.core.v1.Container"));
        assert!(!docs.v2_json().windows(20).any(|w| w == b"#/components/schemas"));
    }

    #[test]
    fn v2_schemas_are_what_kube_openapi_parses() {
        fn check(schema: &Value, at: &str) {
            let Some(map) = schema.as_object() else {
                panic!("{at}: not an object")
            };
            if map.contains_key("$ref") {
                assert!(
                    map.keys()
                        .all(|k| k == "$ref" || k == "description" || k.starts_with("x-")),
                    "{at}: $ref with siblings {:?}",
                    map.keys().collect::<Vec<_>>()
                );
            }
            for keyword in ["oneOf", "anyOf", "allOf", "nullable", "const", "$defs"] {
                assert!(!map.contains_key(keyword), "{at}: has {keyword}");
            }
            match map.get("type") {
                Some(Value::String(t)) => {
                    assert!(
                        ["object", "array", "string", "integer", "number", "boolean"].contains(&t.as_str()),
                        "{at}: type {t}"
                    );
                    if t == "array" {
                        assert!(
                            map.get("items").is_some_and(Value::is_object),
                            "{at}: array without items"
                        );
                    }
                }
                Some(other) => panic!("{at}: type {other}"),
                None => {}
            }
            for (name, property) in map.get("properties").and_then(Value::as_object).into_iter().flatten() {
                check(property, &format!("{at}.{name}"));
            }
            if let Some(items) = map.get("items") {
                check(items, &format!("{at}[]"));
            }
            if let Some(values @ Value::Object(_)) = map.get("additionalProperties") {
                check(values, &format!("{at}{{}}"));
            }
        }
        let v2 = parse(&documents().v2_json());
        assert_eq!(v2["swagger"], "2.0");
        for (name, schema) in v2["definitions"].as_object().expect("definitions") {
            check(schema, name);
        }
        let definitions = &v2["definitions"];
        assert_eq!(
            definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"],
            "int-or-string"
        );
        assert_eq!(
            definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
            "string"
        );
    }

    #[test]
    fn pod_operations_and_schema_carry_the_same_gvk() {
        let doc = v3(&documents(), "api/v1");
        let gvk = json!({"group": "", "kind": "Pod", "version": "v1"});
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"], json!([gvk]));
        assert!(pod.get("required").is_none(), "metadata is not required");
        for path in [
            "/api/v1/pods",
            "/api/v1/namespaces/{namespace}/pods",
            "/api/v1/namespaces/{namespace}/pods/{name}",
        ] {
            assert_eq!(
                doc["paths"][path]["get"]["x-kubernetes-group-version-kind"], gvk,
                "{path}"
            );
        }
        let item = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
        assert_eq!(item["get"]["operationId"], "readCoreV1NamespacedPod");
        assert_eq!(item["patch"]["x-kubernetes-action"], "patch");
        let nodes = &doc["paths"]["/api/v1/nodes/{name}"]["get"];
        assert_eq!(nodes["operationId"], "readCoreV1Node");
        let scale = &v3(&documents(), "apis/apps/v1")["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
            ["get"];
        assert_eq!(
            scale["x-kubernetes-group-version-kind"],
            json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
        );
        assert_eq!(scale["operationId"], "readAppsV1NamespacedDeploymentScale");
        let v2 = parse(&documents().v2_json());
        assert_eq!(
            v2["definitions"]["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
            json!([gvk])
        );
    }

    #[test]
    fn paths_follow_scope_verbs_and_subresources() {
        let docs = documents();
        let core = v3(&docs, "api/v1");
        let paths = core["paths"].as_object().expect("paths");
        let node = &paths["/api/v1/nodes/{name}"];
        let names: Vec<&Value> = node["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| &p["name"])
            .collect();
        assert_eq!(names, ["name", "pretty"], "cluster-scoped items take no namespace");
        assert!(paths.contains_key("/api/v1/nodes"));
        assert!(!paths.contains_key("/api/v1/namespaces/{namespace}/nodes"));
        let binding = &paths["/api/v1/namespaces/{namespace}/pods/{name}/binding"];
        assert_eq!(binding.as_object().map(|m| m.len()), Some(1), "binding is create-only");
        assert_eq!(binding["post"]["operationId"], "createCoreV1NamespacedPodBinding");
        assert_eq!(binding["post"]["x-kubernetes-group-version-kind"]["kind"], "Binding");
        assert_eq!(
            binding["post"]["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
            format!("{V3_REF}io.k8s.api.core.v1.Binding")
        );
        let status = &paths["/api/v1/namespaces/{namespace}/pods/{name}/status"];
        assert_eq!(status["put"]["operationId"], "replaceCoreV1NamespacedPodStatus");
        // Namespaces have no deletecollection.
        assert!(paths["/api/v1/namespaces"].get("delete").is_none());
        let list = &paths["/api/v1/namespaces/{namespace}/pods"]["get"];
        assert_eq!(list["x-kubernetes-action"], "list");
        let pod_list = &core["components"]["schemas"]["io.k8s.api.core.v1.PodList"];
        assert_eq!(
            pod_list["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "PodList", "version": "v1"}])
        );
        assert!(
            core["components"]["schemas"]
                .get("io.k8s.api.apps.v1.Deployment")
                .is_none(),
            "each document holds only what it references"
        );
    }

    #[test]
    fn lists_carry_the_merge_keys_the_patch_engine_uses() {
        let docs = documents();
        let v2 = parse(&docs.v2_json());
        for (doc, defs) in [
            (v3(&docs, "api/v1"), "/components/schemas"),
            (v3(&docs, "apis/apps/v1"), "/components/schemas"),
            (v2, "/definitions"),
        ] {
            let property = |def: &str, field: &str| {
                doc.pointer(&format!("{defs}/io.k8s.api.core.v1.{def}/properties/{field}"))
                    .cloned()
                    .unwrap_or_else(|| panic!("{def}.{field} in {defs}"))
            };
            let container_ports = property("Container", "ports");
            assert_eq!(container_ports["x-kubernetes-patch-merge-key"], "containerPort");
            assert_eq!(container_ports["x-kubernetes-patch-strategy"], "merge");
            assert_eq!(
                property("PodSpec", "containers")["x-kubernetes-patch-merge-key"],
                "name"
            );
            assert_eq!(property("Container", "env")["x-kubernetes-patch-merge-key"], "name");
            assert_eq!(
                property("PodSpec", "tolerations").get("x-kubernetes-patch-strategy"),
                None
            );
            if doc.pointer(&format!("{defs}/io.k8s.api.core.v1.ServiceSpec")).is_some() {
                assert_eq!(property("ServiceSpec", "ports")["x-kubernetes-patch-merge-key"], "port");
                assert_eq!(
                    property("EndpointSubset", "addresses").get("x-kubernetes-patch-merge-key"),
                    None
                );
                assert_eq!(
                    property("NodeStatus", "addresses")["x-kubernetes-patch-merge-key"],
                    "type"
                );
            }
            let finalizers = doc
                .pointer(&format!(
                    "{defs}/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta/properties/finalizers"
                ))
                .expect("ObjectMeta.finalizers");
            assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
            assert_eq!(finalizers.get("x-kubernetes-patch-merge-key"), None);
        }
    }

    #[test]
    fn served_lists_merge_the_same_way_on_every_path() {
        let (kinds, mut generator) = served();
        let defs = Schemas::new(generator.take_definitions(true));
        let roots: Vec<String> = kinds.into_iter().map(|(_, name)| name).collect();
        let found = schema::list_patches(defs.defs_for_tests(), &roots);
        let conflicts: Vec<_> = found.iter().filter(|(_, how)| how.len() > 1).collect();
        assert!(conflicts.is_empty(), "{conflicts:?}");
        assert!(found.len() > 50, "the walk reached the nested lists");
    }

    #[test]
    fn patch_operations_declare_field_validation_and_strategic_merge() {
        let docs = documents();
        let mut patches = 0;
        for gv in docs.v3.keys() {
            let doc = v3(&docs, gv);
            for (path, _, op) in operations(&doc).filter(|(_, method, _)| *method == "patch") {
                patches += 1;
                let params = op["parameters"].as_array().expect("parameters");
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"),
                    "{path}"
                );
                let content = &op["requestBody"]["content"];
                for t in PATCH_TYPES {
                    assert_eq!(content[t]["schema"]["$ref"], format!("{V3_REF}{PATCH}"), "{path} {t}");
                }
            }
        }
        assert!(patches >= 17, "every resource has a PATCH");
        let v2 = parse(&docs.v2_json());
        for (path, _, op) in operations(&v2).filter(|(_, method, _)| *method == "patch") {
            let params = op["parameters"].as_array().expect("parameters");
            assert!(params.iter().any(|p| p["name"] == "fieldValidation"), "{path}");
            assert!(
                op["consumes"]
                    .as_array()
                    .expect("consumes")
                    .contains(&json!("application/strategic-merge-patch+json"))
            );
        }
    }

    #[test]
    fn index_points_at_each_group_version_with_a_content_hash() {
        let docs = documents();
        let index = parse(&docs.v3_index());
        let paths = index["paths"].as_object().expect("paths");
        let keys: Vec<&str> = paths.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "api/v1",
                "apis/apps/v1",
                "apis/batch/v1",
                "apis/coordination.k8s.io/v1",
                "apis/discovery.k8s.io/v1"
            ]
        );
        let bytes = docs.v3("/apis/apps/v1").expect("apps/v1");
        let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().expect("url");
        assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={}", content_hash(&bytes)));
        assert!(docs.v3("apis/nope/v1").is_none());
        let doc = parse(&bytes);
        assert_eq!(doc["openapi"], "3.0.0");
        assert_eq!(doc["info"]["version"], KUBERNETES_VERSION);
    }

    #[test]
    fn content_hash_is_stable_fnv1a_128() {
        // Published FNV-1a 128 test vectors.
        assert_eq!(content_hash(b""), "6C62272E07BB014262B821756295C58D");
        assert_eq!(content_hash(b"a"), "D228CB696F1A8CAF78912B704E4A8964");
    }

    #[test]
    fn protobuf_carries_every_definition() {
        let docs = documents();
        let v2 = parse(&docs.v2_json());
        let protobuf = docs.v2_protobuf();
        for name in v2["definitions"].as_object().expect("definitions").keys() {
            assert!(protobuf.windows(name.len()).any(|w| w == name.as_bytes()), "{name}");
        }
    }
}
