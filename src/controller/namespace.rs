//! The namespace lifecycle controller: a deleted namespace stays Terminating while its content
//! is deleted, then the `kubernetes` finalizer is taken out of its `spec.finalizers` through the
//! `finalize` subresource and the apiserver removes it. Mirrors upstream's
//! `pkg/controller/namespace` and its `deletion` package.
//!
//! Namespaces enter through the shared informer; the content is found through discovery (every
//! namespaced resource the apiserver serves, at its preferred version), so nothing is
//! hard-coded. Progress is reported in the namespace's status conditions, as upstream's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{ApiCapabilities, Discovery, Scope, verbs};
use kube::{Api, ResourceExt};

use super::Context;
use crate::workqueue::{WorkQueue, run_workers};

/// Upstream's `--concurrent-namespace-syncs` default.
const WORKERS: usize = 10;
/// The finalizer the apiserver puts on every namespace, and that this controller removes.
const FINALIZER: &str = "kubernetes";
/// How long to wait for content held by finalizers (upstream's `finalizerEstimateSeconds`).
const FINALIZER_WAIT: Duration = Duration::from_secs(15);
/// The longest wait for terminating pods before looking again; their kubelets usually finish
/// well within their grace period.
const POD_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(super) enum Error {
    #[error("reading namespace {0}: {1}")]
    Read(String, #[source] kube::Error),
    #[error("namespace {0}: {1}")]
    Content(String, String),
    #[error("updating the status of namespace {0}: {1}")]
    Status(String, #[source] kube::Error),
    #[error("finalizing namespace {0}: {1}")]
    Finalize(String, #[source] kube::Error),
}

pub(super) async fn run(ctx: Arc<Context>) {
    let queue: Arc<WorkQueue<String>> = WorkQueue::new(ctx.shutdown.clone());
    let namespaces = ctx.informers.get::<Namespace>();
    namespaces.add_handler({
        let queue = queue.clone();
        move |change| {
            let ns = change.object();
            if ns.metadata.deletion_timestamp.is_some() {
                queue.add(ns.name_any());
            }
        }
    });
    namespaces.wait_synced().await;
    let client = ctx.client.clone();
    run_workers(queue, WORKERS, "namespace", move |name: String| {
        let client = client.clone();
        async move { sync(&client, &name).await }
    })
    .await;
}

async fn sync(client: &kube::Client, name: &str) -> Result<Option<Duration>, Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    // Read afresh: acting on a stale copy could finalize a namespace whose content was just made.
    let Some(ns) = api.get_opt(name).await.map_err(|e| Error::Read(name.into(), e))? else {
        return Ok(None);
    };
    let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
    if ns.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(None);
    }
    let report = delete_content(client, name).await;
    let conditions = conditions(&report, ns.status.as_ref().and_then(|s| s.conditions.as_deref()));
    if Some(&conditions) != ns.status.as_ref().and_then(|s| s.conditions.as_ref()) {
        let mut updated = ns.clone();
        updated.status.get_or_insert_with(Default::default).conditions = Some(conditions);
        api.replace_status(name, &PostParams::default(), &updated)
            .await
            .map_err(|e| Error::Status(name.into(), e))?;
    }
    if !report.failures.is_empty() {
        return Err(Error::Content(name.into(), report.failures.join("; ")));
    }
    if let Some(wait) = report.wait() {
        return Ok(Some(wait));
    }
    if !report.remaining.is_empty() {
        return Err(Error::Content(name.into(), "unexpected content still remains".into()));
    }
    let mut finalized = ns;
    finalized.spec.get_or_insert_with(Default::default).finalizers =
        Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
    match api
        .replace_subresource("finalize", name, &PostParams::default(), &finalized)
        .await
    {
        Ok(_) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(err) => Err(Error::Finalize(name.into(), err)),
    }
}

/// What one pass over a namespace's content found.
#[derive(Debug, Default)]
struct Report {
    /// Discovery failed (for some groups, or altogether).
    discovery_failure: Option<String>,
    /// Resources whose content could not be listed or deleted, with why.
    failures: Vec<String>,
    /// `resource.group` → how many objects are left.
    remaining: BTreeMap<String, usize>,
    /// Finalizer → how many of the remaining objects hold it.
    finalizers: BTreeMap<String, usize>,
    /// Pods were left terminating; the longest they may still take.
    pods_terminating: Option<Duration>,
}

impl Report {
    /// How long to wait before looking again, when the remaining content is expected to go.
    fn wait(&self) -> Option<Duration> {
        if let Some(pods) = self.pods_terminating {
            return Some(pods.clamp(Duration::from_secs(1), POD_WAIT));
        }
        (!self.finalizers.is_empty()).then_some(FINALIZER_WAIT)
    }
}

/// Deletes everything in `namespace`: pods first (what they mount goes once they are gone, as
/// upstream's ordered namespace deletion), then every other namespaced resource.
async fn delete_content(client: &kube::Client, namespace: &str) -> Report {
    let mut report = Report::default();
    let resources = match Discovery::new(client.clone()).run().await {
        Ok(discovery) => namespaced_resources(&discovery),
        Err(err) => {
            report.discovery_failure = Some(crate::error_chain(&err));
            return report;
        }
    };
    let (pods, others): (Vec<_>, Vec<_>) = resources
        .into_iter()
        .partition(|(ar, _)| ar.group.is_empty() && ar.plural == "pods");
    for (ar, caps) in &pods {
        delete_resource(client, namespace, ar, caps, &mut report).await;
    }
    if !report.remaining.is_empty() {
        return report;
    }
    for (ar, caps) in &others {
        delete_resource(client, namespace, ar, caps, &mut report).await;
    }
    report
}

/// The namespaced resources that can be listed and deleted, at each group's preferred version.
fn namespaced_resources(discovery: &Discovery) -> Vec<(ApiResource, ApiCapabilities)> {
    discovery
        .groups()
        .flat_map(|group| group.recommended_resources())
        .filter(|(_, caps)| {
            caps.scope == Scope::Namespaced
                && caps.supports_operation(verbs::LIST)
                && (caps.supports_operation(verbs::DELETE) || caps.supports_operation(verbs::DELETE_COLLECTION))
        })
        .collect()
}

/// Deletes one resource's objects in `namespace` and records what is left in `report`.
async fn delete_resource(
    client: &kube::Client,
    namespace: &str,
    ar: &ApiResource,
    caps: &ApiCapabilities,
    report: &mut Report,
) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
    let resource = match ar.group.as_str() {
        "" => ar.plural.clone(),
        group => format!("{}.{group}", ar.plural),
    };
    // Background: the garbage collector must not hold content back with an orphan finalizer.
    let params = DeleteParams::background();
    let deleted = if caps.supports_operation(verbs::DELETE_COLLECTION) {
        api.delete_collection(&params, &ListParams::default()).await.map(drop)
    } else {
        delete_each(&api, &params).await
    };
    if let Err(err) = deleted {
        report
            .failures
            .push(format!("deleting {resource}: {}", crate::error_chain(&err)));
        return;
    }
    let left = match api.list(&ListParams::default()).await {
        Ok(left) => left.items,
        Err(err) => {
            report
                .failures
                .push(format!("listing {resource}: {}", crate::error_chain(&err)));
            return;
        }
    };
    if left.is_empty() {
        return;
    }
    report.remaining.insert(resource, left.len());
    for obj in &left {
        for finalizer in obj.finalizers() {
            *report.finalizers.entry(finalizer.clone()).or_default() += 1;
        }
        if ar.plural == "pods"
            && let Some(at) = &obj.metadata.deletion_timestamp
        {
            let left = Duration::try_from(at.0.duration_since(jiff::Timestamp::now())).unwrap_or_default();
            let longest = report.pods_terminating.get_or_insert_default();
            *longest = (*longest).max(left);
        }
    }
}

async fn delete_each(api: &Api<DynamicObject>, params: &DeleteParams) -> Result<(), kube::Error> {
    for obj in api.list(&ListParams::default()).await? {
        match api.delete(&obj.name_any(), params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// The five deletion conditions upstream reports, in its order: the `False` ("all is well")
/// reason and message of each, and the `True` reason.
const CONDITIONS: [(&str, &str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
        "DiscoveryFailed",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
        "GroupVersionParsingFailed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
        "ContentDeletionFailed",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
        "SomeResourcesRemain",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
        "SomeFinalizersRemain",
    ),
];

/// The namespace's conditions after `report`: the five deletion conditions replaced, others
/// kept, and a condition's transition time kept while its status does not change.
fn conditions(report: &Report, old: Option<&[NamespaceCondition]>) -> Vec<NamespaceCondition> {
    let old = old.unwrap_or_default();
    let problems = [
        report.discovery_failure.clone(),
        None,
        (!report.failures.is_empty()).then(|| {
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                report.failures.len(),
                report.failures.join(", ")
            )
        }),
        (!report.remaining.is_empty()).then(|| {
            let parts: Vec<String> = report
                .remaining
                .iter()
                .map(|(r, n)| format!("{r} has {n} resource instances"))
                .collect();
            format!("Some resources are remaining: {}", parts.join(", "))
        }),
        (!report.finalizers.is_empty()).then(|| {
            let parts: Vec<String> = report
                .finalizers
                .iter()
                .map(|(f, n)| format!("{f} in {n} resource instances"))
                .collect();
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            )
        }),
    ];
    let mut out: Vec<NamespaceCondition> = old
        .iter()
        .filter(|c| !CONDITIONS.iter().any(|(t, ..)| *t == c.type_))
        .cloned()
        .collect();
    let now = Time(jiff::Timestamp::now());
    for ((type_, ok_reason, ok_message, bad_reason), problem) in CONDITIONS.iter().zip(problems) {
        let (status, reason, message) = match problem {
            Some(message) => ("True", *bad_reason, message),
            None => ("False", *ok_reason, ok_message.to_string()),
        };
        let previous = old.iter().find(|c| c.type_ == *type_);
        let unchanged = previous.filter(|c| c.status == status);
        out.push(NamespaceCondition {
            type_: type_.to_string(),
            status: status.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: unchanged
                .and_then(|c| c.last_transition_time.clone())
                .or_else(|| Some(now.clone())),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(conditions: &'a [NamespaceCondition], type_: &str) -> &'a NamespaceCondition {
        conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn conditions_report_remaining_content_and_its_finalizers_as_upstream() {
        let report = Report {
            remaining: [("configmaps".to_string(), 2)].into(),
            finalizers: [("example.com/hold".to_string(), 1)].into(),
            ..Default::default()
        };
        let conditions = conditions(&report, None);
        assert_eq!(conditions.len(), 5);
        let remaining = find(&conditions, "NamespaceContentRemaining");
        assert_eq!(
            (remaining.status.as_str(), remaining.reason.as_deref()),
            ("True", Some("SomeResourcesRemain"))
        );
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: configmaps has 2 resource instances")
        );
        let finalizers = find(&conditions, "NamespaceFinalizersRemaining");
        assert_eq!(finalizers.reason.as_deref(), Some("SomeFinalizersRemain"));
        let content = find(&conditions, "NamespaceDeletionContentFailure");
        assert_eq!(
            (content.status.as_str(), content.reason.as_deref()),
            ("False", Some("ContentDeleted"))
        );
        assert_eq!(report.wait(), Some(FINALIZER_WAIT));
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let earlier = Time("2020-01-01T00:00:00Z".parse().unwrap());
        let mut old = conditions(&Report::default(), None);
        for c in &mut old {
            c.last_transition_time = Some(earlier.clone());
        }
        let failing = Report {
            failures: vec!["deleting pods: boom".into()],
            ..Default::default()
        };
        let new = conditions(&failing, Some(&old));
        assert_eq!(
            find(&new, "NamespaceContentRemaining").last_transition_time,
            Some(earlier)
        );
        let failed = find(&new, "NamespaceDeletionContentFailure");
        assert_eq!(failed.status, "True");
        assert_ne!(
            failed.last_transition_time,
            Some(Time("2020-01-01T00:00:00Z".parse().unwrap()))
        );
    }

    #[test]
    fn terminating_pods_are_waited_for_briefly() {
        let report = Report {
            pods_terminating: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        assert_eq!(report.wait(), Some(POD_WAIT));
        assert_eq!(Report::default().wait(), None);
    }
}
