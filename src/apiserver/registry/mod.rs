//! The generic registry: create, read, update, patch, delete and watch, written once for every
//! resource, with a `Strategy` supplying what differs. Mirrors upstream's
//! `k8s.io/apiserver/pkg/registry/generic/registry.Store`.
//!
//! Objects enter as JSON (`serde_json::Value`), are decoded into their k8s-openapi type for
//! defaulting and validation, and are stored as JSON bytes. Reads hand the stored bytes out
//! unchanged: the store has already stamped their `resourceVersion`.

pub(crate) mod apps;
pub(crate) mod core;
pub(crate) mod ipalloc;
pub(crate) mod other;
mod strategy;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::Metadata;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ObjectMeta, Status, StatusDetails, Time};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) use strategy::Strategy;

use crate::api::resources::ResourceInfo;
use crate::api::selector::{FieldSelector, LabelSelector};
use crate::api::validation::{self, FieldError};
use crate::apiserver::patch::{self, PatchType};
use crate::apiserver::printers;
use crate::apiserver::status::{Error, OBJECT_MODIFIED, ObjectRef};
use crate::apiserver::storage::{self, EventType, KeyValue, Revision, Store};

/// Which part of an object a request addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The object itself; its `status` is ignored on writes when a status subresource exists.
    Main,
    /// `.../status`: only `status` changes.
    Status,
    /// `.../scale`: an autoscaling/v1 Scale standing for `spec.replicas`.
    Scale,
    /// `namespaces/NAME/finalize`: only `spec` (its `finalizers`) changes.
    Finalize,
}

/// The query of a list or watch.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListQuery {
    pub(crate) label_selector: Option<String>,
    pub(crate) field_selector: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_token: Option<String>,
    pub(crate) resource_version: Option<String>,
    pub(crate) send_initial_events: bool,
}

/// One page of a list.
#[derive(Debug)]
pub(crate) struct ListResult {
    pub(crate) items: Vec<Bytes>,
    pub(crate) revision: Revision,
    pub(crate) continue_token: Option<String>,
    pub(crate) remaining: Option<i64>,
}

/// One watch event, ready to be framed by the HTTP layer.
#[derive(Debug, Clone)]
pub(crate) struct WatchEvent {
    pub(crate) kind: WatchKind,
    /// The revision the client has seen everything up to once it has this event.
    pub(crate) revision: Revision,
    /// The object; empty for bookmarks and errors.
    pub(crate) object: Bytes,
}

/// The `type` of a watch event.
#[derive(Debug, Clone)]
pub(crate) enum WatchKind {
    Added,
    Modified,
    Deleted,
    /// `true` when it marks the end of the initial events of a streaming list.
    Bookmark(bool),
    Error(Box<Status>),
}

impl WatchEvent {
    fn new(kind: WatchKind, revision: Revision, object: Bytes) -> Self {
        Self { kind, revision, object }
    }

    fn error(status: Status, revision: Revision) -> Self {
        Self::new(WatchKind::Error(Box::new(status)), revision, Bytes::new())
    }
}

/// A registry as the HTTP layer sees it: JSON in, JSON out, whatever the resource.
#[async_trait::async_trait]
pub(crate) trait Rest: Send + Sync {
    fn info(&self) -> &'static ResourceInfo;
    async fn get(&self, ns: Option<&str>, name: &str, target: Target) -> Result<Bytes, Error>;
    async fn list(&self, ns: Option<&str>, query: &ListQuery) -> Result<ListResult, Error>;
    async fn watch(&self, ns: Option<&str>, query: &ListQuery) -> Result<BoxStream<'static, WatchEvent>, Error>;
    async fn create(&self, ns: Option<&str>, body: Value, dry_run: bool) -> Result<Bytes, Error>;
    /// Returns the stored object and whether the PUT created it.
    async fn update(
        &self,
        ns: Option<&str>,
        name: &str,
        body: Value,
        target: Target,
        dry_run: bool,
    ) -> Result<(Bytes, bool), Error>;
    async fn patch(
        &self,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &[u8],
        target: Target,
        dry_run: bool,
    ) -> Result<Bytes, Error>;
    /// Returns the response body and whether the object is gone (`false`: only marked).
    async fn delete(
        &self,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        dry_run: bool,
    ) -> Result<(Bytes, bool), Error>;
    async fn delete_collection(
        &self,
        ns: Option<&str>,
        query: &ListQuery,
        opts: &DeleteOptions,
        dry_run: bool,
    ) -> Result<ListResult, Error>;
    /// `pods/binding`: assigns a pod to a node.
    async fn bind(&self, ns: Option<&str>, name: &str, binding: Value) -> Result<(), Error>;
    /// The table rows (and, with `headers`, columns) for stored objects.
    fn table(&self, items: &[Bytes], headers: bool) -> Result<printers::Table, Error>;
    /// Adds the object type's schema to `generator`; returns its component name.
    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> String;
}

/// The generic registry for one resource.
pub(crate) struct Registry<S: Strategy> {
    info: &'static ResourceInfo,
    strategy: S,
    store: Arc<dyn Store>,
}

/// How many times a write retries after losing a race to another writer. Upstream retries
/// until the request times out; each try costs one read of the in-memory object, and every
/// lost race means another writer won, so N writers at once finish within N tries.
const MAX_RETRIES: usize = 1000;

impl<S: Strategy> Registry<S> {
    pub(crate) fn new(info: &'static ResourceInfo, strategy: S, store: Arc<dyn Store>) -> Self {
        Self { info, strategy, store }
    }

    fn key(&self, ns: Option<&str>, name: &str) -> String {
        match ns {
            Some(ns) if self.info.namespaced => format!("/registry/{}/{ns}/{name}", self.info.plural),
            _ => format!("/registry/{}/{name}", self.info.plural),
        }
    }

    fn prefix(&self, ns: Option<&str>) -> String {
        match ns {
            Some(ns) if self.info.namespaced => format!("/registry/{}/{ns}/", self.info.plural),
            _ => format!("/registry/{}/", self.info.plural),
        }
    }

    fn not_found(&self, name: &str) -> Error {
        Error::NotFound {
            resource: self.info.into(),
            name: name.to_string(),
        }
    }

    fn storage_error(&self, err: storage::Error, name: &str) -> Error {
        Error::from_storage(err, self.info, name)
    }

    async fn current(&self, ns: Option<&str>, name: &str) -> Result<KeyValue, Error> {
        self.store
            .get(&self.key(ns, name))
            .await
            .map_err(|e| self.storage_error(e, name))?
            .ok_or_else(|| self.not_found(name))
    }

    /// Decodes a request body into the resource's type, checking `apiVersion` and `kind`.
    fn decode(&self, mut body: Value) -> Result<S::Object, Error> {
        let Value::Object(map) = &mut body else {
            return Err(Error::BadRequest("the request body must be a JSON object".into()));
        };
        let expected_version = self.info.api_version();
        match map.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("apiVersion".into(), expected_version.clone().into());
            }
            Some(v) if v != expected_version => {
                return Err(Error::BadRequest(format!(
                    "the API version in the data ({v}) does not match the expected API version ({expected_version})"
                )));
            }
            Some(_) => {}
        }
        match map.get("kind").and_then(Value::as_str) {
            None | Some("") => {
                map.insert("kind".into(), self.info.kind.into());
            }
            Some(k) if k != self.info.kind => {
                return Err(Error::BadRequest(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    self.info.kind
                )));
            }
            Some(_) => {}
        }
        serde_json::from_value(body).map_err(|e| {
            Error::BadRequest(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
                kind = self.info.kind,
                version = self.info.version
            ))
        })
    }

    fn decode_stored(&self, kv: &KeyValue) -> Result<S::Object, Error> {
        serde_json::from_slice(&kv.value)
            .map_err(|e| Error::Internal(format!("stored object {} does not decode: {e}", kv.key)))
    }

    fn encode(&self, obj: &S::Object) -> Result<Bytes, Error> {
        serde_json::to_vec(obj)
            .map(Bytes::from)
            .map_err(|e| Error::Internal(format!("object does not encode: {e}")))
    }

    fn invalid(&self, name: &str, causes: Vec<FieldError>) -> Error {
        Error::Invalid {
            kind: self.info.kind.to_string(),
            group: self.info.group.to_string(),
            name: name.to_string(),
            causes,
        }
    }

    /// Puts the URL's namespace on the object, refusing a different one in the body.
    fn bind_namespace(&self, meta: &mut ObjectMeta, ns: Option<&str>) -> Result<(), Error> {
        if !self.info.namespaced {
            meta.namespace = None;
            return Ok(());
        }
        let Some(ns) = ns else {
            return Err(Error::BadRequest("a namespace is required for this resource".into()));
        };
        match meta.namespace.as_deref() {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => Err(Error::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            )),
            _ => {
                meta.namespace = Some(ns.to_string());
                Ok(())
            }
        }
    }

    /// Refuses creates in a namespace that is missing or being deleted.
    async fn check_namespace(&self, ns: Option<&str>, name: &str) -> Result<(), Error> {
        let Some(ns) = ns.filter(|_| self.info.namespaced) else {
            return Ok(());
        };
        let namespaces = crate::api::resources::find("", "v1", "namespaces").ok_or(Error::NoRoute)?;
        let kv = self
            .store
            .get(&format!("/registry/namespaces/{ns}"))
            .await
            .map_err(|e| self.storage_error(e, name))?
            .ok_or_else(|| Error::NotFound {
                resource: namespaces.into(),
                name: ns.to_string(),
            })?;
        let doc: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        if doc["metadata"]["deletionTimestamp"].is_string() {
            return Err(Error::Forbidden {
                message: format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    self.info.qualified_name()
                ),
                details: Some((ObjectRef::from(self.info), name.to_string())),
            });
        }
        Ok(())
    }

    fn selectors(&self, query: &ListQuery) -> Result<Selectors, Error> {
        let label = LabelSelector::parse(query.label_selector.as_deref().unwrap_or_default())
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        let mut fields: Vec<&str> = vec!["metadata.name", "metadata.namespace"];
        fields.extend_from_slice(S::SELECTABLE_FIELDS);
        let field = FieldSelector::parse(query.field_selector.as_deref().unwrap_or_default(), &fields)
            .map_err(|e| Error::BadRequest(e.to_string()))?;
        Ok(Selectors { label, field })
    }

    /// Checks, prepares, validates and stores a new object; see `Rest::create`.
    async fn create_object(&self, ns: Option<&str>, mut obj: S::Object, dry_run: bool) -> Result<Bytes, Error> {
        self.bind_namespace(obj.metadata_mut(), ns)?;
        {
            let meta = obj.metadata_mut();
            if meta.name.as_deref().unwrap_or_default().is_empty()
                && let Some(prefix) = meta.generate_name.as_deref().filter(|p| !p.is_empty())
            {
                meta.name = Some(generate_name(prefix));
            }
            meta.uid = Some(uuid::Uuid::new_v4().to_string());
            meta.creation_timestamp = Some(Time(jiff::Timestamp::now()));
            meta.resource_version = None;
            meta.deletion_timestamp = None;
            meta.deletion_grace_period_seconds = None;
            meta.generation = S::GENERATION.then_some(1);
            meta.managed_fields = None;
            meta.self_link = None;
        }
        self.strategy.default(&mut obj);
        self.strategy.prepare_for_create(&mut obj);
        let name = obj.metadata().name.clone().unwrap_or_default();
        let mut errs = validation::validate_object_meta(obj.metadata(), self.info.namespaced, S::NAME_RULE);
        errs.extend(self.strategy.validate(&obj));
        if !errs.is_empty() {
            return Err(self.invalid(&name, errs));
        }
        self.check_namespace(ns, &name).await?;
        self.strategy.allocate(&mut obj, None).await?;
        let value = self.encode(&obj)?;
        if dry_run {
            self.strategy.release(&obj).await;
            return Ok(value);
        }
        match self.store.create(&self.key(ns, &name), value).await {
            Ok(kv) => Ok(kv.value),
            Err(e) => {
                self.strategy.release(&obj).await;
                Err(self.storage_error(e, &name))
            }
        }
    }

    /// Turns the client's view of an object (`proposed`, a full object as JSON) into the next
    /// stored version of `current`, and writes it if anything changed. `Ok(None)` means the
    /// write lost a race and should be retried from a fresh read.
    async fn write_update(
        &self,
        current: &KeyValue,
        mut proposed: Value,
        target: Target,
        dry_run: bool,
    ) -> Result<Option<Bytes>, Error> {
        let old_doc: Value = serde_json::from_slice(&current.value)
            .map_err(|e| Error::Internal(format!("stored object does not decode: {e}")))?;
        let name = old_doc["metadata"]["name"].as_str().unwrap_or_default().to_string();
        let has_status = self.info.subresource("status").is_some();
        match target {
            // A scale write arrives as the whole object with only spec.replicas changed.
            Target::Main | Target::Scale if has_status => copy_field(&mut proposed, &old_doc, "status"),
            Target::Main | Target::Scale => {}
            Target::Status | Target::Finalize => {
                let field = if target == Target::Status { "status" } else { "spec" };
                let mut next = old_doc.clone();
                copy_field(&mut next, &proposed, field);
                if target == Target::Status && S::STATUS_UPDATES_ANNOTATIONS {
                    copy_field(&mut next["metadata"], &proposed["metadata"], "annotations");
                }
                // The subresource still honours the client's resourceVersion precondition.
                next["metadata"]["resourceVersion"] = proposed["metadata"]["resourceVersion"].clone();
                proposed = next;
            }
        }
        let old = self.decode_stored(current)?;
        let mut new = self.decode(proposed)?;
        let requested_version = new.metadata().resource_version.clone().filter(|v| !v.is_empty());
        if let Some(v) = &requested_version
            && v != &current.mod_revision.to_string()
        {
            return Err(Error::Conflict {
                resource: self.info.into(),
                name,
                message: OBJECT_MODIFIED.into(),
            });
        }
        if new.metadata().name.as_deref() != Some(name.as_str()) {
            return Err(Error::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                new.metadata().name.as_deref().unwrap_or_default()
            )));
        }
        let ns = old.metadata().namespace.clone();
        self.bind_namespace(new.metadata_mut(), ns.as_deref())?;
        carry_system_metadata(new.metadata_mut(), old.metadata());
        self.strategy.default(&mut new);
        if target == Target::Main || target == Target::Scale {
            self.strategy.prepare_for_update(&mut new, &old);
        }
        let mut errs = validation::validate_object_meta(new.metadata(), self.info.namespaced, S::NAME_RULE);
        errs.extend(self.strategy.validate_update(&new, &old));
        if !errs.is_empty() {
            return Err(self.invalid(&name, errs));
        }
        self.strategy.allocate(&mut new, Some(&old)).await?;
        let outcome = self
            .store_update(
                current,
                &old_doc,
                &mut new,
                target,
                requested_version.is_some(),
                dry_run,
            )
            .await;
        match &outcome {
            Ok(Some(_)) if !dry_run => self.strategy.release_unused(&new, &old).await,
            _ => self.strategy.release_unused(&old, &new).await,
        }
        outcome
    }

    /// The tail of `write_update`: bump the generation, skip no-op writes, finish deletions whose
    /// last finalizer went, and write with a compare on the revision read.
    async fn store_update(
        &self,
        current: &KeyValue,
        old_doc: &Value,
        new: &mut S::Object,
        target: Target,
        precondition: bool,
        dry_run: bool,
    ) -> Result<Option<Bytes>, Error> {
        let name = new.metadata().name.clone().unwrap_or_default();
        let mut new_doc = serde_json::to_value(&*new).map_err(|e| Error::Internal(e.to_string()))?;
        // As upstream, a status write is never a new generation, even one carrying annotations.
        if S::GENERATION && target != Target::Status && self.strategy.changes_generation(&new_doc, old_doc) {
            let next = new.metadata().generation.unwrap_or(0) + 1;
            new.metadata_mut().generation = Some(next);
            new_doc["metadata"]["generation"] = next.into();
        }
        new_doc["metadata"]["resourceVersion"] = current.mod_revision.to_string().into();
        if &new_doc == old_doc {
            return Ok(Some(current.value.clone()));
        }
        // As upstream's `ShouldDeleteDuringUpdate`: only an update that lifts the last thing holding
        // a deletion finishes it; a terminating pod's status updates leave it in place.
        let finished = new.metadata().deletion_timestamp.is_some()
            && new.metadata().finalizers.as_ref().is_none_or(Vec::is_empty)
            && !self.strategy.blocks_deletion(new)
            && serde_json::from_value::<S::Object>(old_doc.clone()).is_ok_and(|old| {
                old.metadata().finalizers.as_ref().is_some_and(|f| !f.is_empty()) || self.strategy.blocks_deletion(&old)
            });
        if dry_run {
            return Ok(Some(self.encode(new)?));
        }
        let written = if finished {
            // The last finalizer is gone from an object being deleted: finish the deletion.
            self.store.delete(&current.key, Some(current.mod_revision)).await
        } else {
            let value = self.encode(new)?;
            self.store.update(&current.key, value, current.mod_revision).await
        };
        match written {
            Ok(kv) => {
                if finished {
                    self.strategy.release(new).await;
                }
                Ok(Some(kv.value))
            }
            Err(storage::Error::Conflict { .. }) if !precondition => Ok(None),
            Err(e) => Err(self.storage_error(e, &name)),
        }
    }

    /// Reads, changes and writes an object until the write wins, as upstream's GuaranteedUpdate.
    async fn update_loop(
        &self,
        ns: Option<&str>,
        name: &str,
        target: Target,
        dry_run: bool,
        proposed: impl Fn(&KeyValue) -> Result<Value, Error>,
    ) -> Result<Bytes, Error> {
        for _ in 0..MAX_RETRIES {
            let current = self.current(ns, name).await?;
            let next = proposed(&current)?;
            if let Some(out) = self.write_update(&current, next, target, dry_run).await? {
                return Ok(out);
            }
        }
        Err(Error::Conflict {
            resource: self.info.into(),
            name: name.to_string(),
            message: "too many concurrent writers; please retry".into(),
        })
    }

    /// Applies a scale change: `scale` is an autoscaling/v1 Scale as JSON.
    fn apply_scale(&self, current: &KeyValue, scale: &Value) -> Result<Value, Error> {
        let mut doc: Value = serde_json::from_slice(&current.value).map_err(|e| Error::Internal(e.to_string()))?;
        let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
        if replicas < 0 {
            return Err(self.invalid(
                doc["metadata"]["name"].as_str().unwrap_or_default(),
                vec![FieldError::invalid(
                    "spec.replicas",
                    replicas,
                    "must be greater than or equal to 0",
                )],
            ));
        }
        doc["spec"]["replicas"] = replicas.into();
        if let Some(rv) = scale["metadata"]["resourceVersion"].as_str().filter(|v| !v.is_empty()) {
            doc["metadata"]["resourceVersion"] = rv.into();
        }
        Ok(doc)
    }

    fn matches(&self, value: &[u8], selectors: &Selectors) -> bool {
        if selectors.is_empty() {
            return true;
        }
        let Ok(doc) = serde_json::from_slice::<Value>(value) else {
            return false;
        };
        selectors.matches(&doc)
    }

    async fn finish_delete(&self, current: &KeyValue, dry_run: bool) -> Result<Option<KeyValue>, Error> {
        if dry_run {
            return Ok(Some(current.clone()));
        }
        match self.store.delete(&current.key, Some(current.mod_revision)).await {
            Ok(kv) => {
                if let Ok(obj) = self.decode_stored(current) {
                    self.strategy.release(&obj).await;
                }
                Ok(Some(kv))
            }
            Err(storage::Error::Conflict { .. }) => Ok(None),
            Err(e) => Err(self.storage_error(e, &current.key)),
        }
    }

    fn deleted_response(&self, kv: &KeyValue) -> Bytes {
        if S::RETURN_DELETED_OBJECT {
            return kv.value.clone();
        }
        let doc: Value = serde_json::from_slice(&kv.value).unwrap_or_default();
        let status = Status {
            status: Some("Success".into()),
            details: Some(StatusDetails {
                name: doc["metadata"]["name"].as_str().map(String::from),
                group: Some(self.info.group.to_string()).filter(|g| !g.is_empty()),
                kind: Some(self.info.plural.to_string()),
                uid: doc["metadata"]["uid"].as_str().map(String::from),
                ..Default::default()
            }),
            ..Default::default()
        };
        Bytes::from(serde_json::to_vec(&status).unwrap_or_default())
    }
}

/// The finalizers an object keeps while it is deleted: its own, plus the one that asks the garbage
/// collector to orphan (`orphan`) or delete first (`foregroundDeletion`) its dependents.
fn finalizers_for(meta: &ObjectMeta, opts: &DeleteOptions) -> Result<Vec<String>, FieldError> {
    let mut finalizers = meta.finalizers.clone().unwrap_or_default();
    let policy = opts.propagation_policy.as_deref().or(match opts.orphan_dependents {
        Some(true) => Some("Orphan"),
        _ => None,
    });
    let extra = match policy {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Background") | None => None,
        Some(other) => {
            return Err(FieldError::not_supported(
                "propagationPolicy",
                other,
                &["Foreground", "Background", "Orphan"],
            ));
        }
    };
    if let Some(extra) = extra
        && !finalizers.iter().any(|f| f == extra)
    {
        finalizers.push(extra.to_string());
    }
    Ok(finalizers)
}

/// Copies `field` of `from` into `into` (or removes it from `into` when `from` lacks it).
fn copy_field(into: &mut Value, from: &Value, field: &str) {
    if let Value::Object(map) = into {
        match from.get(field) {
            Some(v) => {
                map.insert(field.to_string(), v.clone());
            }
            None => {
                map.remove(field);
            }
        }
    }
}

/// Keeps what only the server may set: identity, creation and deletion marks, generation.
fn carry_system_metadata(new: &mut ObjectMeta, old: &ObjectMeta) {
    new.uid = old.uid.clone();
    new.creation_timestamp = old.creation_timestamp.clone();
    new.deletion_timestamp = old.deletion_timestamp.clone();
    new.deletion_grace_period_seconds = old.deletion_grace_period_seconds;
    new.generation = old.generation;
    new.generate_name = old.generate_name.clone();
    new.managed_fields = None;
    new.self_link = None;
    new.resource_version = None;
}

/// `prefix` plus five random characters from upstream's alphabet (no vowels, no look-alikes).
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let random = uuid::Uuid::new_v4();
    let suffix: String = random.as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let max_prefix = 63 - 5;
    let prefix = if prefix.len() > max_prefix {
        &prefix[..max_prefix]
    } else {
        prefix
    };
    format!("{prefix}{suffix}")
}

struct Selectors {
    label: LabelSelector,
    field: FieldSelector,
}

impl Selectors {
    fn is_empty(&self) -> bool {
        self.label.is_empty() && self.field.is_empty()
    }

    fn matches(&self, doc: &Value) -> bool {
        let labels: Option<BTreeMap<String, String>> = doc["metadata"]
            .get("labels")
            .and_then(|l| serde_json::from_value(l.clone()).ok());
        self.label.matches(labels.as_ref()) && self.field.matches(|path| field_value(doc, path))
    }
}

/// The value of a dotted field path as a field selector compares it.
fn field_value(doc: &Value, path: &str) -> String {
    let mut at = doc;
    for part in path.split('.') {
        match at.get(part) {
            Some(v) => at = v,
            None => return String::new(),
        }
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The opaque `continue` token, upstream's: the key the next page starts at (after the list's
/// prefix), and the revision of the list's first page, or -1 to go on at the newest revision.
#[derive(Serialize, Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

/// The version of the continue token's encoding.
const CONTINUE_VERSION: &str = "meta.k8s.io/v1";

/// The most keys one read of a paginated list asks for; upstream's `maxLimit`.
const MAX_CHUNK: usize = 10_000;

impl ContinueToken {
    /// The revision to read the next page at; `None` for the newest.
    fn revision(&self) -> Option<Revision> {
        Revision::try_from(self.rv).ok()
    }
}

fn encode_continue(rv: i64, start: &str) -> String {
    let token = ContinueToken {
        v: CONTINUE_VERSION.into(),
        rv,
        start: start.to_string(),
    };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str) -> Result<ContinueToken, Error> {
    let invalid = |why: &str| Error::BadRequest(format!("continue key is not valid: {why}"));
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| invalid("the token is malformed"))?;
    let token: ContinueToken = serde_json::from_slice(&raw).map_err(|_| invalid("the token is malformed"))?;
    if token.v != CONTINUE_VERSION {
        return Err(invalid("server does not recognize this encoded version"));
    }
    if token.rv == 0 || token.rv < -1 {
        return Err(invalid(&format!(
            "incorrect encoded start resourceVersion (version {CONTINUE_VERSION})"
        )));
    }
    Ok(token)
}

#[async_trait::async_trait]
impl<S: Strategy> Rest for Registry<S> {
    fn info(&self) -> &'static ResourceInfo {
        self.info
    }

    async fn get(&self, ns: Option<&str>, name: &str, target: Target) -> Result<Bytes, Error> {
        let kv = self.current(ns, name).await?;
        match target {
            Target::Scale => Ok(Bytes::from(
                serde_json::to_vec(&scale_of(&kv.value)?).unwrap_or_default(),
            )),
            _ => Ok(kv.value),
        }
    }

    async fn list(&self, ns: Option<&str>, query: &ListQuery) -> Result<ListResult, Error> {
        let selectors = self.selectors(query)?;
        let prefix = self.prefix(ns);
        let limit = query.limit.filter(|l| *l > 0);
        let token = query.continue_token.as_deref().map(decode_continue).transpose()?;
        if limit.is_none() && token.is_none() {
            let (all, revision) = self.store.list(&prefix).await.map_err(|e| self.storage_error(e, ""))?;
            let items = all
                .into_iter()
                .filter(|kv| self.matches(&kv.value, &selectors))
                .map(|kv| kv.value)
                .collect();
            return Ok(ListResult {
                items,
                revision,
                continue_token: None,
                remaining: None,
            });
        }
        // As upstream's etcd3 GetList: read chunks from where the client left off, at the
        // revision of the list's first page, until `limit` objects match or the range ends.
        let (mut start, mut at) = match &token {
            Some(token) => (format!("{prefix}{}", token.start), token.revision()),
            None => (prefix.clone(), None),
        };
        let limit = limit.unwrap_or(usize::MAX);
        let mut chunk = limit.min(MAX_CHUNK);
        let mut items = Vec::new();
        loop {
            let page = self
                .store
                .list_page(&prefix, &start, chunk, at)
                .await
                .map_err(|e| match (&token, e) {
                    (Some(token), storage::Error::Expired { .. }) => {
                        Error::ContinueExpired(encode_continue(-1, &token.start))
                    }
                    (_, e) => self.storage_error(e, ""),
                })?;
            at = Some(page.revision);
            let mut examined = 0;
            for kv in &page.items {
                if items.len() == limit {
                    break;
                }
                examined += 1;
                if self.matches(&kv.value, &selectors) {
                    items.push(kv.value.clone());
                }
            }
            let unexamined = (page.items.len() - examined) as u64 + page.remaining;
            let next = page.items[..examined].last().map(|kv| format!("{}\0", kv.key));
            match next {
                Some(next) if unexamined > 0 && items.len() < limit => {
                    start = next;
                    // Selectors may skip many keys: read more at a time, as upstream does.
                    let wanted = if selectors.is_empty() {
                        limit - items.len()
                    } else {
                        chunk.saturating_mul(2)
                    };
                    chunk = wanted.min(MAX_CHUNK);
                }
                next => {
                    let revision = page.revision;
                    let continue_token = next.filter(|_| unexamined > 0).map(|next| {
                        encode_continue(i64::try_from(revision).unwrap_or(i64::MAX), &next[prefix.len()..])
                    });
                    // With selectors, the keys left are no count of the objects left.
                    let remaining = continue_token
                        .as_ref()
                        .filter(|_| selectors.is_empty())
                        .map(|_| i64::try_from(unexamined).unwrap_or(i64::MAX));
                    return Ok(ListResult {
                        items,
                        revision,
                        continue_token,
                        remaining,
                    });
                }
            }
        }
    }

    async fn watch(&self, ns: Option<&str>, query: &ListQuery) -> Result<BoxStream<'static, WatchEvent>, Error> {
        let selectors = Arc::new(self.selectors(query)?);
        let prefix = self.prefix(ns);
        let from = match query.resource_version.as_deref() {
            None | Some("") | Some("0") => None,
            Some(rv) => Some(
                rv.parse::<Revision>()
                    .map_err(|_| Error::BadRequest(format!("invalid resource version: {rv}")))?,
            ),
        };
        let (initial, after) = match (from, query.send_initial_events) {
            (Some(rev), false) => (Vec::new(), rev),
            _ => {
                let (items, rev) = self.store.list(&prefix).await.map_err(|e| self.storage_error(e, ""))?;
                let initial: Vec<WatchEvent> = items
                    .into_iter()
                    .filter(|kv| self.matches(&kv.value, &selectors))
                    .map(|kv| WatchEvent::new(WatchKind::Added, rev, kv.value))
                    .collect();
                (initial, rev)
            }
        };
        let mut initial = initial;
        if query.send_initial_events {
            initial.push(WatchEvent::new(WatchKind::Bookmark(true), after, Bytes::new()));
        }
        let changes = match self.store.watch(&prefix, after).await {
            Ok(stream) => stream,
            Err(e @ storage::Error::Expired { .. }) => {
                let status = Error::Expired(e.to_string()).to_status();
                return Ok(futures::stream::iter([WatchEvent::error(status, after)]).boxed());
            }
            Err(e) => return Err(self.storage_error(e, "")),
        };
        let events = changes.filter_map(move |event| {
            let selectors = selectors.clone();
            async move {
                match event {
                    Ok(event) => translate(event, &selectors),
                    Err(e) => Some(WatchEvent::error(Error::Expired(e.to_string()).to_status(), after)),
                }
            }
        });
        Ok(futures::stream::iter(initial).chain(events).boxed())
    }

    async fn create(&self, ns: Option<&str>, body: Value, dry_run: bool) -> Result<Bytes, Error> {
        let mut body = body;
        if self.info.subresource("status").is_some()
            && !S::KEEP_STATUS_ON_CREATE
            && let Value::Object(map) = &mut body
        {
            map.remove("status");
        }
        let obj = self.decode(body)?;
        self.create_object(ns, obj, dry_run).await
    }

    async fn update(
        &self,
        ns: Option<&str>,
        name: &str,
        body: Value,
        target: Target,
        dry_run: bool,
    ) -> Result<(Bytes, bool), Error> {
        if target == Target::Main && S::CREATE_ON_UPDATE {
            match self.current(ns, name).await {
                Err(Error::NotFound { .. }) => {
                    let obj = self.decode(body)?;
                    if obj.metadata().name.as_deref() != Some(name) {
                        return Err(Error::BadRequest(format!(
                            "the name of the object ({}) does not match the name on the URL ({name})",
                            obj.metadata().name.as_deref().unwrap_or_default()
                        )));
                    }
                    return Ok((self.create_object(ns, obj, dry_run).await?, true));
                }
                Err(e) => return Err(e),
                Ok(_) => {}
            }
        }
        let out = self
            .update_loop(ns, name, target, dry_run, |current| match target {
                Target::Scale => self.apply_scale(current, &body),
                _ => Ok(body.clone()),
            })
            .await?;
        Ok((self.scale_view(out, target)?, false))
    }

    async fn patch(
        &self,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: &[u8],
        target: Target,
        dry_run: bool,
    ) -> Result<Bytes, Error> {
        let out = self
            .update_loop(ns, name, target, dry_run, |current| {
                let mut doc: Value = match target {
                    Target::Scale => scale_of(&current.value)?,
                    _ => serde_json::from_slice(&current.value).map_err(|e| Error::Internal(e.to_string()))?,
                };
                patch::apply(&mut doc, patch_type, patch).map_err(|e| match e {
                    patch::PatchError::Malformed(message) => Error::BadRequest(message),
                    patch::PatchError::NotApplicable(message) => Error::UnprocessablePatch(message),
                })?;
                let mut next = match target {
                    Target::Scale => self.apply_scale(current, &doc)?,
                    _ => doc,
                };
                // The patch applies to the object as stored, resourceVersion included (a JSON
                // patch may `test` it). Only a resourceVersion the patch changed is a
                // precondition: otherwise losing a race to another writer retries on the newer
                // object instead of failing with 409.
                if next["metadata"]["resourceVersion"].as_str() == Some(current.mod_revision.to_string().as_str())
                    && let Some(meta) = next["metadata"].as_object_mut()
                {
                    meta.remove("resourceVersion");
                }
                Ok(next)
            })
            .await?;
        self.scale_view(out, target)
    }

    async fn delete(
        &self,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
        dry_run: bool,
    ) -> Result<(Bytes, bool), Error> {
        for _ in 0..MAX_RETRIES {
            let current = self.current(ns, name).await?;
            let obj = self.decode_stored(&current)?;
            if let Some(pre) = &opts.preconditions {
                let conflict = |message: String| Error::Conflict {
                    resource: self.info.into(),
                    name: name.to_string(),
                    message,
                };
                if let Some(uid) = &pre.uid
                    && Some(uid) != obj.metadata().uid.as_ref()
                {
                    return Err(conflict(format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        obj.metadata().uid.as_deref().unwrap_or_default()
                    )));
                }
                if let Some(rv) = &pre.resource_version
                    && *rv != current.mod_revision.to_string()
                {
                    return Err(conflict(format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        current.mod_revision
                    )));
                }
            }
            let finalizers = finalizers_for(obj.metadata(), opts).map_err(|e| self.invalid(name, vec![e]))?;
            let terminating = obj.metadata().deletion_timestamp.is_some();
            let grace = if terminating {
                // Already waiting for its grace period: only a forced (zero) one ends it now.
                let waiting = self.strategy.grace_period(&obj, None).is_some();
                (waiting && opts.grace_period_seconds != Some(0)).then_some(0)
            } else {
                self.strategy.grace_period(&obj, opts.grace_period_seconds)
            };
            let mut marked = obj.clone();
            let blocked = self.strategy.prepare_for_delete(&mut marked);
            if finalizers.is_empty() && grace.is_none() && !blocked {
                match self.finish_delete(&current, dry_run).await? {
                    Some(kv) => return Ok((self.deleted_response(&kv), true)),
                    None => continue,
                }
            }
            let meta = marked.metadata_mut();
            if terminating && meta.finalizers.clone().unwrap_or_default() == finalizers {
                // A second DELETE of an object already waiting changes nothing.
                return Ok((current.value, false));
            }
            if !terminating {
                // Marking an object for deletion is a change its controller must observe.
                if let Some(generation) = meta.generation.filter(|g| *g > 0) {
                    meta.generation = Some(generation + 1);
                }
                let grace = grace.unwrap_or(0);
                meta.deletion_timestamp = Some(Time(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace)));
                meta.deletion_grace_period_seconds = Some(grace);
            }
            meta.finalizers = Some(finalizers).filter(|f| !f.is_empty());
            let value = self.encode(&marked)?;
            if dry_run {
                return Ok((value, false));
            }
            match self.store.update(&current.key, value, current.mod_revision).await {
                Ok(kv) => return Ok((kv.value, false)),
                Err(storage::Error::Conflict { .. }) => continue,
                Err(e) => return Err(self.storage_error(e, name)),
            }
        }
        Err(Error::Conflict {
            resource: self.info.into(),
            name: name.to_string(),
            message: "too many concurrent writers; please retry".into(),
        })
    }

    async fn delete_collection(
        &self,
        ns: Option<&str>,
        query: &ListQuery,
        opts: &DeleteOptions,
        dry_run: bool,
    ) -> Result<ListResult, Error> {
        let mut query = query.clone();
        query.limit = None;
        query.continue_token = None;
        let listed = self.list(ns, &query).await?;
        let mut deleted = Vec::new();
        for item in listed.items {
            let doc: Value = serde_json::from_slice(&item).unwrap_or_default();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let item_ns = doc["metadata"]["namespace"].as_str();
            match self.delete(item_ns, name, opts, dry_run).await {
                Ok(_) => deleted.push(item),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ListResult {
            items: deleted,
            revision: self.store.revision(),
            continue_token: None,
            remaining: None,
        })
    }

    async fn bind(&self, ns: Option<&str>, name: &str, binding: Value) -> Result<(), Error> {
        for _ in 0..MAX_RETRIES {
            let current = self.current(ns, name).await?;
            let mut obj = self.decode_stored(&current)?;
            self.strategy.bind(&mut obj, &binding)?;
            let value = self.encode(&obj)?;
            match self.store.update(&current.key, value, current.mod_revision).await {
                Ok(_) => return Ok(()),
                Err(storage::Error::Conflict { .. }) => continue,
                Err(e) => return Err(self.storage_error(e, name)),
            }
        }
        Err(Error::Conflict {
            resource: self.info.into(),
            name: name.to_string(),
            message: "too many concurrent writers; please retry".into(),
        })
    }

    fn table(&self, items: &[Bytes], headers: bool) -> Result<printers::Table, Error> {
        let mut rows = Vec::with_capacity(items.len());
        for item in items {
            let obj: S::Object = serde_json::from_slice(item)
                .map_err(|e| Error::Internal(format!("stored object does not decode: {e}")))?;
            let cells = match self.strategy.columns() {
                Some(_) => self.strategy.cells(&obj),
                None => printers::default_cells(obj.metadata()),
            };
            rows.push(printers::Row {
                cells,
                meta: obj.metadata().clone(),
            });
        }
        let columns = headers.then(|| self.strategy.columns().unwrap_or(printers::DEFAULT_COLUMNS));
        Ok(printers::Table { columns, rows })
    }

    fn schema(&self, generator: &mut schemars::SchemaGenerator) -> String {
        generator.subschema_for::<S::Object>();
        <S::Object as schemars::JsonSchema>::schema_name().into_owned()
    }
}

impl<S: Strategy> Registry<S> {
    fn scale_view(&self, out: Bytes, target: Target) -> Result<Bytes, Error> {
        match target {
            Target::Scale => Ok(Bytes::from(serde_json::to_vec(&scale_of(&out)?).unwrap_or_default())),
            _ => Ok(out),
        }
    }
}

/// The autoscaling/v1 Scale view of a stored object with `spec.replicas`.
fn scale_of(value: &[u8]) -> Result<Value, Error> {
    let doc: Value = serde_json::from_slice(value).map_err(|e| Error::Internal(e.to_string()))?;
    let selector = match &doc["spec"]["selector"] {
        Value::Object(sel) if sel.contains_key("matchLabels") || sel.contains_key("matchExpressions") => {
            printers::format_label_selector(&doc["spec"]["selector"], "")
        }
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    let meta = &doc["metadata"];
    Ok(serde_json::json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": doc["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": doc["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    }))
}

/// Maps a store event to the watch event a client with these selectors should see: objects that
/// move into the selection are ADDED, those that move out are DELETED.
fn translate(event: storage::Event, selectors: &Selectors) -> Option<WatchEvent> {
    let parse = |kv: &KeyValue| serde_json::from_slice::<Value>(&kv.value).ok();
    let now_matches = selectors.is_empty() || parse(&event.kv).is_some_and(|d| selectors.matches(&d));
    let was_matching = || {
        selectors.is_empty()
            || event
                .prev
                .as_ref()
                .and_then(parse)
                .is_some_and(|d| selectors.matches(&d))
    };
    let kind = match event.event_type {
        EventType::Created => now_matches.then_some(WatchKind::Added),
        EventType::Deleted => was_matching().then_some(WatchKind::Deleted),
        EventType::Updated => match (was_matching(), now_matches) {
            (true, true) => Some(WatchKind::Modified),
            (false, true) => Some(WatchKind::Added),
            (true, false) => Some(WatchKind::Deleted),
            (false, false) => None,
        },
    }?;
    Some(WatchEvent::new(kind, event.revision(), event.kv.value))
}

/// The settings registries take from the apiserver's flags.
pub(crate) struct Settings {
    /// Where Services get their ClusterIPs.
    pub(crate) cluster_ips: ipalloc::Cidr,
    /// Where Services get their node ports.
    pub(crate) node_ports: std::ops::RangeInclusive<u16>,
    /// How long pods tolerate not-ready and unreachable nodes unless they say otherwise.
    pub(crate) pod_tolerations: core::DefaultTolerations,
}

/// Builds the registry of every resource in the table, in table order, and the ranges Services
/// allocate from, repaired once against the stored Services (see `ServiceRanges::repair`).
pub(crate) async fn install(
    store: Arc<dyn Store>,
    settings: Settings,
) -> Result<(Vec<Arc<dyn Rest>>, Arc<core::ServiceRanges>), storage::Error> {
    use crate::api::resources::RESOURCES;
    let ranges = Arc::new(core::ServiceRanges::new(
        settings.cluster_ips,
        settings.node_ports,
        store.clone(),
    ));
    ranges.repair().await?;
    let mut out: Vec<Arc<dyn Rest>> = Vec::new();
    for info in RESOURCES {
        fn make<S: Strategy>(info: &'static ResourceInfo, s: S, store: &Arc<dyn Store>) -> Arc<dyn Rest> {
            Arc::new(Registry::new(info, s, store.clone()))
        }
        let rest = match (info.group, info.plural) {
            ("", "namespaces") => make(info, core::NamespaceStrategy, &store),
            ("", "pods") => make(info, core::PodStrategy(settings.pod_tolerations), &store),
            ("", "nodes") => make(info, core::NodeStrategy, &store),
            ("", "services") => make(info, core::ServiceStrategy::new(info, ranges.clone()), &store),
            ("", "endpoints") => make(info, core::EndpointsStrategy, &store),
            ("", "configmaps") => make(info, core::ConfigMapStrategy, &store),
            ("", "secrets") => make(info, core::SecretStrategy, &store),
            ("", "serviceaccounts") => make(info, core::ServiceAccountStrategy, &store),
            ("", "events") => make(info, core::EventStrategy, &store),
            ("", "replicationcontrollers") => make(info, core::ReplicationControllerStrategy, &store),
            ("apps", "deployments") => make(info, apps::DeploymentStrategy, &store),
            ("apps", "replicasets") => make(info, apps::ReplicaSetStrategy, &store),
            ("apps", "daemonsets") => make(info, apps::DaemonSetStrategy, &store),
            ("apps", "statefulsets") => make(info, apps::StatefulSetStrategy, &store),
            ("batch", "jobs") => make(info, other::JobStrategy, &store),
            ("coordination.k8s.io", "leases") => make(info, other::LeaseStrategy, &store),
            ("discovery.k8s.io", "endpointslices") => make(info, other::EndpointSliceStrategy, &store),
            _ => continue,
        };
        out.push(rest);
    }
    Ok((out, ranges))
}

/// The registry of `group`/`plural` among `registries`.
pub(crate) fn registry_for(registries: &[Arc<dyn Rest>], group: &str, plural: &str) -> Option<Arc<dyn Rest>> {
    registries
        .iter()
        .find(|r| r.info().group == group && r.info().plural == plural)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_keep_the_prefix_and_add_five_characters() {
        let name = generate_name("web-");
        assert!(name.starts_with("web-"));
        assert_eq!(name.len(), 9);
        assert_ne!(generate_name("web-"), generate_name("web-"));
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_garbage() {
        let token = encode_continue(42, "b\0");
        let back = decode_continue(&token).unwrap();
        assert_eq!((back.revision(), back.start.as_str()), (Some(42), "b\0"));
        assert_eq!(decode_continue(&encode_continue(-1, "b")).unwrap().revision(), None);
        assert!(decode_continue(&encode_continue(0, "b")).is_err());
        assert!(decode_continue("not base64!").is_err());
    }

    #[test]
    fn field_values_follow_dotted_paths() {
        let doc = serde_json::json!({"spec": {"nodeName": "n1", "hostNetwork": true}});
        assert_eq!(field_value(&doc, "spec.nodeName"), "n1");
        assert_eq!(field_value(&doc, "spec.hostNetwork"), "true");
        assert_eq!(field_value(&doc, "status.phase"), "");
    }
}
