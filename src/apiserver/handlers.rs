//! Request handling: route a URL to discovery, documents or a resource registry, run the verb,
//! and write the answer (JSON, a Table, or a watch stream). Mirrors upstream's
//! `k8s.io/apiserver/pkg/endpoints/handlers` and `request.RequestInfoFactory`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::BoxStream;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::discovery::{self, Discovery};
use super::metrics::{Metrics, RequestLabels};
use super::openapi;
use super::patch::PatchType;
use super::pod_log;
use super::printers::Include;
use super::protobuf;
use super::registry::{ListQuery, ListResult, Rest, Target, WatchEvent, WatchKind};
use super::status::Error;
use super::storage::Store;
use crate::api::resources;

/// The response body type: a whole buffer, or a stream for watches and logs.
pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Request bodies larger than this are refused with 413, as upstream's 3 MiB limit.
pub(crate) const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

const JSON: &str = "application/json";
const TABLE_CONTENT_TYPE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// Everything a request may need, shared by all connections.
pub(crate) struct ApiServer {
    registries: HashMap<(&'static str, &'static str), Arc<dyn Rest>>,
    discovery: Discovery,
    /// Built on first use: only kubectl's explain and apply read them, and building takes
    /// longer than the rest of startup together.
    openapi: OnceLock<openapi::Documents>,
    metrics: Metrics,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
}

/// A parsed resource URL.
struct ResourceRequest<'a> {
    rest: Arc<dyn Rest>,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

impl ApiServer {
    pub(crate) fn new(
        registries: Vec<Arc<dyn Rest>>,
        discovery: Discovery,
        metrics: Metrics,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> Self {
        let registries = registries
            .into_iter()
            .map(|r| ((r.info().group, r.info().plural), r))
            .collect();
        Self {
            registries,
            discovery,
            openapi: OnceLock::new(),
            metrics,
            store,
            shutdown,
        }
    }

    fn openapi(&self) -> &openapi::Documents {
        self.openapi.get_or_init(|| {
            let mut generator = openapi::generator();
            let mut kinds: Vec<_> = self
                .registries
                .values()
                .map(|r| (r.info(), r.schema(&mut generator)))
                .collect();
            // Table order, so documents do not depend on the map's iteration order.
            kinds.sort_by_key(|(info, _)| resources::RESOURCES.iter().position(|r| r == *info));
            openapi::Documents::build(&kinds, generator)
        })
    }

    /// The registry serving `group`/`plural`, if any.
    pub(crate) fn registry(&self, group: &str, plural: &str) -> Option<Arc<dyn Rest>> {
        // The map's keys are 'static; a map reference may be read with shorter-lived keys.
        let registries: &HashMap<(&str, &str), Arc<dyn Rest>> = &self.registries;
        registries.get(&(group, plural)).cloned()
    }

    /// Answers one request. Never fails: errors become Status responses.
    pub(crate) async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let mut labels = RequestLabels {
            verb: canonical_verb(req.method(), false, false),
            ..Default::default()
        };
        let (parts, body) = req.into_parts();
        // Read the whole body before routing, so that every answer, errors included, leaves
        // the connection ready for the next request.
        let body = match parts.method {
            Method::GET | Method::HEAD => Ok(Bytes::new()),
            _ => read_body(&parts, body).await,
        };
        let response = match body {
            Ok(body) => match self.route(&parts, body, &mut labels).await {
                Ok(resp) => resp,
                Err(err) => error_response(&err),
            },
            Err(err) => error_response(&err),
        };
        self.metrics
            .observe(&labels, response.status().as_u16(), started.elapsed().as_secs_f64());
        response
    }

    async fn route(&self, req: &Parts, body: Bytes, labels: &mut RequestLabels) -> Result<Response<Body>, Error> {
        let segments: Vec<&str> = req.uri.path().split('/').filter(|s| !s.is_empty()).collect();
        let accept = header_str(req, header::ACCEPT);
        if req.method != Method::GET && !matches!(segments.first(), Some(&"api" | &"apis")) {
            return Err(Error::MethodNotAllowed);
        }
        match segments.as_slice() {
            ["healthz" | "livez", ..] => Ok(text(StatusCode::OK, "ok")),
            ["readyz", ..] => Ok(self.readyz().await),
            ["version"] => Ok(json_response(StatusCode::OK, self.discovery.version())),
            ["metrics"] => Ok(bytes_response(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                Bytes::from(self.metrics.render()),
            )),
            ["openapi", "v2"] => Ok(self.openapi_v2(accept)),
            ["openapi", "v3"] => Ok(json_response(StatusCode::OK, self.openapi().v3_index())),
            ["openapi", "v3", rest @ ..] => self
                .openapi()
                .v3(&rest.join("/"))
                .map(|b| json_response(StatusCode::OK, b))
                .ok_or(Error::NoRoute),
            ["api"] => Ok(self.discovery_root(accept, true)),
            ["apis"] => Ok(self.discovery_root(accept, false)),
            ["api", "v1"] => self.discovery_list("api/v1"),
            ["apis", group] => self
                .discovery
                .group(group)
                .map(|b| json_response(StatusCode::OK, b))
                .ok_or(Error::NoRoute),
            ["apis", group, version] => self.discovery_list(&format!("apis/{group}/{version}")),
            ["api", "v1", rest @ ..] => self.resource(req, body, "", "v1", rest, labels).await,
            ["apis", group, version, rest @ ..] => self.resource(req, body, group, version, rest, labels).await,
            _ => Err(Error::NoRoute),
        }
    }

    async fn readyz(&self) -> Response<Body> {
        // The store answering a read is what readiness means here.
        match self.store.get("/registry/namespaces/default").await {
            Ok(_) => text(StatusCode::OK, "ok"),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("[-]etcd failed: {e}\nreadyz check failed"),
            ),
        }
    }

    fn openapi_v2(&self, accept: &str) -> Response<Body> {
        if accept.contains("protobuf") {
            bytes_response(
                StatusCode::OK,
                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                self.openapi().v2_protobuf(),
            )
        } else {
            json_response(StatusCode::OK, self.openapi().v2_json())
        }
    }

    fn discovery_root(&self, accept: &str, core: bool) -> Response<Body> {
        let aggregated = discovery::wants_aggregated(accept);
        let body = if core {
            self.discovery.api(aggregated)
        } else {
            self.discovery.apis(aggregated)
        };
        let content_type = if aggregated {
            discovery::AGGREGATED_CONTENT_TYPE
        } else {
            JSON
        };
        let mut resp = bytes_response(StatusCode::OK, content_type, body);
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
        resp
    }

    fn discovery_list(&self, path: &str) -> Result<Response<Body>, Error> {
        self.discovery
            .resource_list(path)
            .map(|b| json_response(StatusCode::OK, b))
            .ok_or(Error::NoRoute)
    }

    /// Routes `rest` (the segments after `/api/v1` or `/apis/G/V`) to a registry and runs the verb.
    async fn resource(
        &self,
        req: &Parts,
        body: Bytes,
        group: &str,
        version: &str,
        rest: &[&str],
        labels: &mut RequestLabels,
    ) -> Result<Response<Body>, Error> {
        let namespaced = |plural: &str| resources::find(group, version, plural).is_some_and(|r| r.namespaced);
        let (namespace, tail) = match rest {
            ["namespaces", ns, plural, tail @ ..] if namespaced(plural) => (Some(*ns), {
                let mut t = vec![*plural];
                t.extend_from_slice(tail);
                t
            }),
            other => (None, other.to_vec()),
        };
        let (plural, name, subresource) = match tail.as_slice() {
            [plural] => (*plural, None, None),
            [plural, name] => (*plural, Some(*name), None),
            [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
            _ => return Err(Error::NoRoute),
        };
        let info = resources::find(group, version, plural).ok_or(Error::NoRoute)?;
        if info.namespaced && namespace.is_none() && name.is_some() {
            return Err(Error::NoRoute);
        }
        if let Some(sub) = subresource
            && info.subresource(sub).is_none()
        {
            return Err(Error::NoRoute);
        }
        let rest = self.registry(group, plural).ok_or(Error::NoRoute)?;
        let query = parse_query(req.uri.query());
        let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        labels.verb = canonical_verb(&req.method, name.is_none(), watch);
        labels.group = group.to_string();
        labels.version = version.to_string();
        labels.resource = plural.to_string();
        labels.subresource = subresource.unwrap_or_default().to_string();
        labels.scope = match (namespace, name) {
            (_, Some(_)) => "resource",
            (Some(_), None) => "namespace",
            (None, None) => "cluster",
        };
        labels.dry_run = query.get("dryRun").is_some_and(|d| d == "All");
        let request = ResourceRequest {
            rest,
            namespace,
            name,
            subresource,
        };
        self.run_verb(req, body, request, &query, watch).await
    }

    async fn run_verb(
        &self,
        req: &Parts,
        body: Bytes,
        r: ResourceRequest<'_>,
        query: &HashMap<String, String>,
        watch: bool,
    ) -> Result<Response<Body>, Error> {
        let info = r.rest.info();
        let dry_run = match query.get("dryRun").map(String::as_str) {
            None | Some("") => false,
            Some("All") => true,
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "Invalid dryRun value {other:?}: supported values: \"All\""
                )));
            }
        };
        let target = match r.subresource {
            None => Target::Main,
            Some("status") => Target::Status,
            Some("scale") => Target::Scale,
            Some("finalize") => Target::Finalize,
            Some(_) => Target::Main,
        };
        let view = View::from_request(req, query)?;
        let method = req.method.clone();
        let supports = |verb: &str| {
            let allowed = match r.subresource.and_then(|s| info.subresource(s)) {
                Some(sub) => sub.verbs.contains(&verb),
                None => info.supports(verb),
            };
            if allowed { Ok(()) } else { Err(Error::MethodNotAllowed) }
        };
        match (method, r.name) {
            (Method::GET, Some(name)) if r.subresource == Some("log") => {
                supports("get")?;
                let pod = r.rest.get(r.namespace, name, Target::Main).await?;
                pod_log::proxy(&pod, self.registry("", "nodes"), query).await
            }
            (Method::GET, Some(name)) => {
                supports("get")?;
                let obj = r.rest.get(r.namespace, name, target).await?;
                self.object_response(&r, StatusCode::OK, obj, &view)
            }
            (Method::GET, None) if watch => {
                supports("watch")?;
                let list = list_query(query, true)?;
                let events = r.rest.watch(r.namespace, &list).await?;
                let timeout = watch_timeout(query)?;
                let bookmarks = query.get("allowWatchBookmarks").is_some_and(|b| b == "true");
                Ok(self.watch_response(r.rest.clone(), events, view, timeout, bookmarks))
            }
            (Method::GET, None) => {
                supports("list")?;
                let list = list_query(query, false)?;
                let result = r.rest.list(r.namespace, &list).await?;
                self.list_response(&r, result, &view)
            }
            (Method::POST, None) => {
                supports("create")?;
                let obj = r.rest.create(r.namespace, read_object(req, &body)?, dry_run).await?;
                self.object_response(&r, StatusCode::CREATED, obj, &view)
            }
            (Method::POST, Some(name)) if r.subresource == Some("binding") => {
                supports("create")?;
                r.rest.bind(r.namespace, name, read_object(req, &body)?).await?;
                Ok(json_response(StatusCode::CREATED, success_status()))
            }
            (Method::PUT, Some(name)) => {
                supports("update")?;
                let (obj, created) = r
                    .rest
                    .update(r.namespace, name, read_object(req, &body)?, target, dry_run)
                    .await?;
                let code = if created { StatusCode::CREATED } else { StatusCode::OK };
                self.object_response(&r, code, obj, &view)
            }
            (Method::PATCH, Some(name)) => {
                supports("patch")?;
                let content_type = header_str(req, header::CONTENT_TYPE);
                let patch_type = PatchType::from_content_type(content_type).ok_or_else(|| {
                    Error::UnsupportedMediaType(
                        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json".into(),
                    )
                })?;
                let obj = r
                    .rest
                    .patch(r.namespace, name, patch_type, &body, target, dry_run)
                    .await?;
                self.object_response(&r, StatusCode::OK, obj, &view)
            }
            (Method::DELETE, Some(name)) => {
                supports("delete")?;
                let opts = delete_options(req, &body, query)?;
                let dry_run = dry_run || opts.dry_run.as_ref().is_some_and(|d| d.iter().any(|v| v == "All"));
                let (body, _gone) = r.rest.delete(r.namespace, name, &opts, dry_run).await?;
                Ok(json_response(StatusCode::OK, body))
            }
            (Method::DELETE, None) => {
                supports("deletecollection")?;
                let list = list_query(query, false)?;
                let opts = delete_options(req, &body, query)?;
                let dry_run = dry_run || opts.dry_run.as_ref().is_some_and(|d| d.iter().any(|v| v == "All"));
                let result = r.rest.delete_collection(r.namespace, &list, &opts, dry_run).await?;
                self.list_response(&r, result, &View::Json)
            }
            _ => Err(Error::MethodNotAllowed),
        }
    }

    fn object_response(
        &self,
        r: &ResourceRequest<'_>,
        code: StatusCode,
        obj: Bytes,
        view: &View,
    ) -> Result<Response<Body>, Error> {
        match view {
            View::Table(include) if r.subresource.is_none() => {
                let table = r.rest.table(std::slice::from_ref(&obj), true)?;
                let rv = serde_json::from_slice::<Value>(&obj)
                    .ok()
                    .and_then(|v| v["metadata"]["resourceVersion"].as_str().map(String::from))
                    .unwrap_or_default();
                let doc = table.to_json(&rv, None, *include, std::slice::from_ref(&obj));
                Ok(bytes_response(code, TABLE_CONTENT_TYPE, to_bytes(&doc)))
            }
            _ => Ok(json_response(code, obj)),
        }
    }

    fn list_response(&self, r: &ResourceRequest<'_>, result: ListResult, view: &View) -> Result<Response<Body>, Error> {
        let info = r.rest.info();
        let rv = result.revision.to_string();
        if let View::Table(include) = view {
            let table = r.rest.table(&result.items, true)?;
            let doc = table.to_json(&rv, result.continue_token.as_deref(), *include, &result.items);
            return Ok(bytes_response(StatusCode::OK, TABLE_CONTENT_TYPE, to_bytes(&doc)));
        }
        let mut meta = json!({"resourceVersion": rv});
        if let Some(token) = &result.continue_token {
            meta["continue"] = token.clone().into();
        }
        if let Some(remaining) = result.remaining {
            meta["remainingItemCount"] = remaining.into();
        }
        let head = format!(
            r#"{{"kind":"{}List","apiVersion":"{}","metadata":{},"items":["#,
            info.kind,
            info.api_version(),
            meta
        );
        let size = head.len() + result.items.iter().map(|i| i.len() + 1).sum::<usize>() + 2;
        let mut out = BytesMut::with_capacity(size);
        out.put_slice(head.as_bytes());
        for (i, item) in result.items.iter().enumerate() {
            if i > 0 {
                out.put_u8(b',');
            }
            out.put_slice(item);
        }
        out.put_slice(b"]}");
        Ok(json_response(StatusCode::OK, out.freeze()))
    }

    fn watch_response(
        &self,
        rest: Arc<dyn Rest>,
        events: BoxStream<'static, WatchEvent>,
        view: View,
        timeout: Duration,
        bookmarks: bool,
    ) -> Response<Body> {
        let content_type = match view {
            View::Table(_) => TABLE_CONTENT_TYPE,
            View::Json => JSON,
        };
        let frames = watch_frames(WatchState {
            rest,
            events,
            view,
            first: true,
            revision: 0,
            deadline: tokio::time::Instant::now() + timeout,
            bookmark_every: bookmarks.then_some(BOOKMARK_INTERVAL),
            shutdown: self.shutdown.clone(),
        });
        let body = StreamBody::new(frames.map(|chunk| Ok::<_, Infallible>(Frame::data(chunk))));
        let mut resp = Response::new(BodyExt::boxed_unsync(body));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        resp
    }
}

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

struct WatchState {
    rest: Arc<dyn Rest>,
    events: BoxStream<'static, WatchEvent>,
    view: View,
    first: bool,
    revision: u64,
    deadline: tokio::time::Instant,
    bookmark_every: Option<Duration>,
    shutdown: CancellationToken,
}

/// The watch body: one JSON line per event, until the timeout, the end of the events, or shutdown.
fn watch_frames(state: WatchState) -> BoxStream<'static, Bytes> {
    futures::stream::unfold(state, |mut st| async move {
        let bookmark_at = st.bookmark_every.map(|every| tokio::time::Instant::now() + every);
        let next = tokio::select! {
            event = st.events.next() => event?,
            _ = tokio::time::sleep_until(st.deadline) => return None,
            _ = st.shutdown.cancelled() => return None,
            _ = sleep_until_opt(bookmark_at) => WatchEvent {
                kind: WatchKind::Bookmark(false),
                revision: st.revision,
                object: Bytes::new(),
            },
        };
        let is_error = matches!(next.kind, WatchKind::Error(_));
        let line = st.encode(next);
        if is_error {
            // Nothing follows an error event: the client must re-list.
            st.deadline = tokio::time::Instant::now();
        }
        Some((line, st))
    })
    .boxed()
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => futures::future::pending().await,
    }
}

impl WatchState {
    fn encode(&mut self, event: WatchEvent) -> Bytes {
        self.revision = self.revision.max(event.revision);
        let info = self.rest.info();
        let kind = match &event.kind {
            WatchKind::Added => "ADDED",
            WatchKind::Modified => "MODIFIED",
            WatchKind::Deleted => "DELETED",
            WatchKind::Bookmark(_) => "BOOKMARK",
            WatchKind::Error(_) => "ERROR",
        };
        let object: Bytes = match (&event.kind, &self.view) {
            (WatchKind::Error(status), _) => to_bytes(status),
            (WatchKind::Bookmark(end), _) => {
                let mut meta = json!({"resourceVersion": event.revision.to_string()});
                if *end {
                    meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                }
                to_bytes(&json!({"kind": info.kind, "apiVersion": info.api_version(), "metadata": meta}))
            }
            (_, View::Table(include)) => {
                let headers = std::mem::take(&mut self.first);
                match self.rest.table(std::slice::from_ref(&event.object), headers) {
                    Ok(table) => to_bytes(&table.to_json(
                        &event.revision.to_string(),
                        None,
                        *include,
                        std::slice::from_ref(&event.object),
                    )),
                    Err(err) => to_bytes(&err.to_status()),
                }
            }
            (_, View::Json) => event.object,
        };
        let mut line = BytesMut::with_capacity(object.len() + 32);
        line.put_slice(br#"{"type":""#);
        line.put_slice(kind.as_bytes());
        line.put_slice(br#"","object":"#);
        line.put_slice(&object);
        line.put_slice(b"}\n");
        line.freeze()
    }
}

/// How the client wants objects: plain JSON, or a Table for `kubectl get`.
#[derive(Debug, Clone, Copy)]
enum View {
    Json,
    Table(Include),
}

impl View {
    fn from_request(req: &Parts, query: &HashMap<String, String>) -> Result<Self, Error> {
        let accept = header_str(req, header::ACCEPT);
        let wants_table = accept.split(',').any(|part| {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            params.contains(&"as=Table")
                && params.contains(&"g=meta.k8s.io")
                && (params.contains(&"v=v1") || params.contains(&"v=v1beta1"))
        });
        if !wants_table {
            return Ok(View::Json);
        }
        let include = match query.get("includeObject").map(String::as_str) {
            None | Some("") | Some("Metadata") => Include::Metadata,
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            Some(other) => {
                return Err(Error::BadRequest(format!(
                    "Unable to convert to Table as requested: includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
                )));
            }
        };
        Ok(View::Table(include))
    }
}

fn canonical_verb(method: &Method, collection: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET if watch => "WATCH",
        Method::GET if collection => "LIST",
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE if collection => "DELETECOLLECTION",
        Method::DELETE => "DELETE",
        _ => "UNKNOWN",
    }
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn list_query(query: &HashMap<String, String>, watch: bool) -> Result<ListQuery, Error> {
    let limit = match query.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| Error::BadRequest(format!("invalid limit: {l:?}")))?,
        ),
        None => None,
    };
    let send_initial_events = match query.get("sendInitialEvents").map(String::as_str) {
        Some("true") if !watch => {
            return Err(Error::BadRequest(
                "sendInitialEvents is only supported for watch requests".into(),
            ));
        }
        Some("true") => true,
        _ => false,
    };
    Ok(ListQuery {
        label_selector: query.get("labelSelector").cloned(),
        field_selector: query.get("fieldSelector").cloned(),
        limit,
        continue_token: query.get("continue").cloned().filter(|c| !c.is_empty()),
        resource_version: query.get("resourceVersion").cloned(),
        send_initial_events,
    })
}

fn watch_timeout(query: &HashMap<String, String>) -> Result<Duration, Error> {
    match query.get("timeoutSeconds").filter(|t| !t.is_empty()) {
        Some(t) => t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| Error::BadRequest(format!("invalid timeoutSeconds: {t:?}"))),
        // Upstream spreads unlimited watches over 30 to 60 minutes so clients reconnect evenly.
        None => Ok(Duration::from_secs(
            1800 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 7,
        )),
    }
}

fn delete_options(req: &Parts, body: &[u8], query: &HashMap<String, String>) -> Result<DeleteOptions, Error> {
    let mut opts: DeleteOptions = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        let mut doc = read_object(req, body)?;
        // Clients send it with their own group's apiVersion; the fields are the same.
        if let Value::Object(map) = &mut doc {
            map.remove("apiVersion");
            map.remove("kind");
        }
        serde_json::from_value(doc).map_err(|e| Error::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    if let Some(g) = query.get("gracePeriodSeconds").filter(|g| !g.is_empty()) {
        opts.grace_period_seconds = Some(
            g.parse()
                .map_err(|_| Error::BadRequest(format!("invalid gracePeriodSeconds: {g:?}")))?,
        );
    }
    if let Some(p) = query.get("propagationPolicy").filter(|p| !p.is_empty()) {
        opts.propagation_policy = Some(p.clone());
    }
    if let Some(o) = query.get("orphanDependents") {
        opts.orphan_dependents = Some(o == "true");
    }
    Ok(opts)
}

/// Reads a request body of at most `MAX_BODY_BYTES`. A larger one is still read (up to
/// `DRAIN_LIMIT`) and thrown away, so the client gets its 413 instead of a reset connection.
async fn read_body(parts: &Parts, body: Incoming) -> Result<Bytes, Error> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let limit = if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        DRAIN_LIMIT
    } else {
        MAX_BODY_BYTES
    };
    match Limited::new(body, limit).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            if bytes.len() > MAX_BODY_BYTES {
                Err(Error::TooLarge(MAX_BODY_BYTES))
            } else {
                Ok(bytes)
            }
        }
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(Error::TooLarge(MAX_BODY_BYTES)),
        Err(err) => Err(Error::BadRequest(format!("reading the request body failed: {err}"))),
    }
}

/// How much of an oversized body is read and discarded before giving up on the connection.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// Parses a JSON, YAML or Kubernetes-protobuf object body, as its Content-Type says.
fn read_object(req: &Parts, body: &[u8]) -> Result<Value, Error> {
    let content_type = header_str(req, header::CONTENT_TYPE)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    match content_type {
        "" | "application/json" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("the request body is not valid JSON: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| Error::BadRequest(format!("the request body is not valid YAML: {e}"))),
        PROTOBUF => protobuf::decode(body).map_err(|e| match e {
            protobuf::DecodeError::UnsupportedKind { .. } => {
                Error::UnsupportedMediaType(format!("application/json, application/yaml ({e}; send it as JSON)"))
            }
            other => Error::BadRequest(format!("the request body is not valid protobuf: {other}")),
        }),
        _ => Err(Error::UnsupportedMediaType(format!(
            "application/json, application/yaml, {PROTOBUF}"
        ))),
    }
}

/// Kubernetes' protobuf media type, which typed clients such as kubectl's send.
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

fn header_str(req: &Parts, name: header::HeaderName) -> &str {
    req.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}
fn to_bytes<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

fn success_status() -> Bytes {
    to_bytes(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}))
}

fn bytes_response(code: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(BodyExt::boxed_unsync(Full::new(body)));
    *resp.status_mut() = code;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn json_response(code: StatusCode, body: Bytes) -> Response<Body> {
    bytes_response(code, JSON, body)
}

fn text(code: StatusCode, body: &str) -> Response<Body> {
    bytes_response(code, "text/plain; charset=utf-8", Bytes::from(body.to_string()))
}

fn error_response(err: &Error) -> Response<Body> {
    let code = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, err.to_body())
}
