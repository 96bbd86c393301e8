//! The controller manager (`hyperkube controller-manager`): the loops that move the cluster
//! toward what its objects ask for. One process, upstream's controllers each in its own file,
//! sharing one informer per kind; each controller turns changes into keys on its own work queue
//! (`crate::workqueue`) and syncs one key at a time per worker, with back-off on failure.
//! Only the holder of the `kube-controller-manager` Lease runs them.

mod daemonset;
mod deployment;
mod endpoints;
mod endpointslice;
mod garbagecollector;
mod job;
mod namespace;
mod nodelifecycle;
mod pods;
mod replicaset;
mod service_pods;
mod serviceaccount;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::client::ClientArgs;
use crate::events::Recorder;
use crate::informer::Factory;
use crate::leaderelection::LeaderElectionArgs;

/// `hyperkube controller-manager` flags, named as upstream's kube-controller-manager's.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
    /// Controllers to run: `*` for all, `NAME` to add one, `-NAME` to leave one out.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub controllers: Vec<String>,
    /// How long a node may go without a heartbeat before it is marked unhealthy.
    #[arg(long, default_value = "40s", value_parser = crate::flags::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = crate::flags::parse_duration)]
    pub node_monitor_period: Duration,
    /// Log verbosity, 0 to 10, as upstream's `--v`.
    #[arg(long, default_value_t = 0)]
    pub v: u8,
}

/// Why the controller manager stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to the apiserver failed: {0}")]
    Client(String),
    #[error("leader election: {0}")]
    LeaderElection(String),
    #[error("unknown controller {0:?} in --controllers")]
    UnknownController(String),
}

/// What every controller is given.
pub(crate) struct Context {
    pub(crate) client: kube::Client,
    pub(crate) informers: Arc<Factory>,
    pub(crate) args: Args,
    pub(crate) shutdown: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
}

impl Context {
    /// An event recorder reporting as `component` (upstream's names, `replicaset-controller`).
    pub(crate) fn recorder(&self, component: &'static str) -> Recorder {
        let (recorder, sender) = Recorder::new(self.client.clone(), component, "", self.shutdown.clone());
        self.tasks.spawn(sender);
        recorder
    }
}

type Start = fn(Arc<Context>) -> BoxFuture<'static, ()>;

/// Every controller by upstream's name, in the order they start.
const CONTROLLERS: &[(&str, Start)] = &[
    ("serviceaccount", |ctx| serviceaccount::run(ctx).boxed()),
    ("replicaset", |ctx| replicaset::run_replicasets(ctx).boxed()),
    ("replicationcontroller", |ctx| {
        replicaset::run_replication_controllers(ctx).boxed()
    }),
    ("deployment", |ctx| deployment::run(ctx).boxed()),
    ("endpoint", |ctx| endpoints::run(ctx).boxed()),
    ("endpointslice", |ctx| endpointslice::run(ctx).boxed()),
    ("namespace", |ctx| namespace::run(ctx).boxed()),
    ("garbagecollector", |ctx| garbagecollector::run(ctx).boxed()),
    ("nodelifecycle", |ctx| nodelifecycle::run(ctx).boxed()),
    ("daemonset", |ctx| daemonset::run(ctx).boxed()),
    ("job", |ctx| job::run(ctx).boxed()),
];

/// The controllers `--controllers` selects.
fn selected(flags: &[String]) -> Result<Vec<(&'static str, Start)>, Error> {
    for flag in flags {
        let name = flag.trim_start_matches('-');
        if name != "*" && !CONTROLLERS.iter().any(|(n, _)| *n == name) {
            return Err(Error::UnknownController(flag.clone()));
        }
    }
    let all = flags.iter().any(|f| f == "*");
    Ok(CONTROLLERS
        .iter()
        .filter(|(name, _)| {
            let named = |f: &String| f == name;
            !flags.iter().any(|f| f.strip_prefix('-').is_some_and(|n| n == *name)) && (all || flags.iter().any(named))
        })
        .copied()
        .collect())
}

/// Runs the controller manager until `shutdown`: the entry point of `hyperkube controller-manager`.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<(), Error> {
    let controllers = selected(&args.controllers)?;
    let client = args.client.connect().await.map_err(Error::Client)?;
    let election = args.leader_election.clone();
    crate::leaderelection::run(
        client.clone(),
        &election,
        "kube-controller-manager",
        shutdown,
        move |token| async move {
            let ctx = Arc::new(Context {
                informers: Factory::new(client.clone(), token.clone()),
                client,
                args,
                shutdown: token.clone(),
                tasks: tokio_util::task::TaskTracker::new(),
            });
            for (name, start) in controllers {
                tracing::info!(controller = name, "starting");
                ctx.tasks.spawn(start(ctx.clone()));
            }
            token.cancelled().await;
            ctx.tasks.close();
            ctx.tasks.wait().await;
            ctx.informers.wait().await;
        },
    )
    .await
    .map_err(Error::LeaderElection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(flags: &[&str]) -> Result<Vec<&'static str>, Error> {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        Ok(selected(&flags)?.into_iter().map(|(n, _)| n).collect())
    }

    #[test]
    fn controllers_flag_selects_like_upstream() {
        assert_eq!(names(&["*"]).unwrap().len(), CONTROLLERS.len());
        assert_eq!(names(&["serviceaccount"]).unwrap(), ["serviceaccount"]);
        assert!(!names(&["*", "-serviceaccount"]).unwrap().contains(&"serviceaccount"));
        assert!(matches!(names(&["nope"]), Err(Error::UnknownController(_))));
    }
}
