//! Leader election through a Lease, after client-go's `tools/leaderelection`: of several
//! schedulers or controller managers, only the holder of the Lease acts. The holder renews it
//! every retry period; the others take it over once it has not been renewed for the lease
//! duration, measured on their own clock from when they saw it change (so clock skew between
//! machines does not matter). A holder that cannot renew within the renew deadline stops acting
//! (and the process exits), before anyone else may take over.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Upstream's `--leader-elect*` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectionArgs {
    /// Take a Lease before acting, so that of several replicas only one acts at a time.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// How long others wait after the last renewal before taking the Lease over.
    #[arg(long, default_value = "15s", value_parser = crate::flags::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops acting.
    #[arg(long, default_value = "10s", value_parser = crate::flags::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often to try to take or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = crate::flags::parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// The namespace of the Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// The name of the Lease; the component's name by default.
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
}

/// Runs `lead` while this process holds the Lease `default_name` (or `--leader-elect-resource-name`),
/// or at once with `--leader-elect=false`. `lead` must stop when its token is cancelled: on
/// `shutdown` (the Lease is then released, so a successor need not wait it out) or when the
/// Lease is lost, which is an error.
pub(crate) async fn run<F, Fut>(
    client: kube::Client,
    args: &LeaderElectionArgs,
    default_name: &str,
    shutdown: CancellationToken,
    lead: F,
) -> Result<(), String>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if !args.leader_elect {
        lead(shutdown).await;
        return Ok(());
    }
    let name = args.leader_elect_resource_name.as_deref().unwrap_or(default_name);
    let mut elector = Elector {
        api: Api::namespaced(client, &args.leader_elect_resource_namespace),
        name: name.to_owned(),
        identity: identity(),
        lease_duration: args.leader_elect_lease_duration,
        observed: None,
    };
    tracing::info!(lease = %format!("{}/{name}", args.leader_elect_resource_namespace), identity = %elector.identity, "waiting to become the leader");
    loop {
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %crate::error_chain(&err), "reading the leader Lease failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(args.leader_elect_retry_period)) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
    tracing::info!(identity = %elector.identity, "became the leader");
    let token = shutdown.child_token();
    let mut leading = tokio::spawn(lead(token.clone()));
    let mut renewed = Instant::now();
    let outcome = loop {
        tokio::select! {
            _ = tokio::time::sleep(args.leader_elect_retry_period) => {}
            _ = shutdown.cancelled() => {
                elector.release().await;
                break Ok(());
            }
            _ = &mut leading => return Ok(()),
        }
        match elector.try_acquire_or_renew().await {
            Ok(true) => renewed = Instant::now(),
            Ok(false) => break Err("the leader Lease was taken over".to_owned()),
            Err(err) => tracing::warn!(error = %crate::error_chain(&err), "renewing the leader Lease failed"),
        }
        if renewed.elapsed() > args.leader_elect_renew_deadline {
            break Err(format!(
                "could not renew the leader Lease within {:?}",
                args.leader_elect_renew_deadline
            ));
        }
    };
    token.cancel();
    let _ = leading.await;
    outcome
}

/// Upstream's identity: the host's name and a random suffix, unique per process.
fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}_{}", host.trim(), uuid::Uuid::new_v4())
}

/// Retries spread over up to 1.2 × the period (upstream's jitter), so candidates do not collide.
fn jittered(period: Duration) -> Duration {
    let spread = f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 255.0 * 0.2;
    period.mul_f64(1.0 + spread)
}

struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
    /// The holder and renew time last read, and when this process first saw them.
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector {
    /// Takes the Lease if it is free or expired, or renews it if held. `Ok(false)`: another
    /// holder has it (or won a race for it).
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let seconds = i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let seen = match &self.observed {
            Some((before, at))
                if before.holder_identity == spec.holder_identity && before.renew_time == spec.renew_time =>
            {
                *at
            }
            _ => Instant::now(),
        };
        self.observed = Some((spec.clone(), seen));
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds)).unwrap_or(0));
        if !holder.is_empty() && holder != self.identity && seen.elapsed() < duration {
            return Ok(false);
        }
        let mut next = spec;
        if holder != self.identity {
            next.holder_identity = Some(self.identity.clone());
            next.acquire_time = Some(now.clone());
            next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
        }
        next.renew_time = Some(now);
        next.lease_duration_seconds = Some(seconds);
        lease.spec = Some(next);
        let result = self.api.replace(&self.name, &PostParams::default(), &lease).await;
        if let Ok(written) = &result {
            self.observed = written.spec.clone().map(|s| (s, Instant::now()));
        }
        conflict_is_false(result)
    }

    /// Gives the Lease up, so a successor need not wait for it to expire.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease
            .spec
            .as_mut()
            .filter(|s| s.holder_identity.as_deref() == Some(&self.identity))
        else {
            return;
        };
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!("released the leader Lease"),
            Err(err) => tracing::warn!(error = %crate::error_chain(&err), "releasing the leader Lease failed"),
        }
    }
}

/// A write that lost an optimistic-concurrency race means someone else holds the Lease.
fn conflict_is_false(result: Result<Lease, kube::Error>) -> Result<bool, kube::Error> {
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(err) => Err(err),
    }
}
