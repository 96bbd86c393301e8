//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount, made
//! again when it is deleted (upstream's `pkg/controller/serviceaccount`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;

use super::Context;
use crate::workqueue::{WorkQueue, run_workers};

/// The ServiceAccount every namespace gets.
const DEFAULT: &str = "default";

pub(super) async fn run(ctx: Arc<Context>) {
    let queue: Arc<WorkQueue<String>> = WorkQueue::new(ctx.shutdown.clone());
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    namespaces.add_handler({
        let queue = queue.clone();
        move |change| {
            if let Some(name) = &change.object().metadata.name {
                queue.add(name.clone());
            }
        }
    });
    accounts.add_handler({
        let queue = queue.clone();
        move |change| {
            if let crate::informer::Change::Deleted(sa) = change
                && sa.metadata.name.as_deref() == Some(DEFAULT)
                && let Some(ns) = &sa.metadata.namespace
            {
                queue.add(ns.clone());
            }
        }
    });
    namespaces.wait_synced().await;
    accounts.wait_synced().await;
    let client = ctx.client.clone();
    run_workers(queue, 3, "serviceaccount", move |namespace: String| {
        let (namespaces, accounts, client) = (namespaces.clone(), accounts.clone(), client.clone());
        async move {
            let Some(ns) = namespaces.get("", &namespace) else {
                return Ok(None);
            };
            let terminating = ns.metadata.deletion_timestamp.is_some()
                || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
            if terminating || accounts.get(&namespace, DEFAULT).is_some() {
                return Ok(None);
            }
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(DEFAULT.into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match Api::<ServiceAccount>::namespaced(client, &namespace)
                .create(&PostParams::default(), &sa)
                .await
            {
                Ok(_) => Ok(None::<Duration>),
                // Made meanwhile by someone else, or the namespace began terminating: fine.
                Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => Ok(None),
                Err(err) => Err(crate::error_chain(&err)),
            }
        }
    })
    .await;
}
