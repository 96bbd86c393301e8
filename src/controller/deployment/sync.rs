//! One deployment's sync and what every strategy shares (upstream's `sync.go`): finding or
//! creating the new replica set and keeping revisions in step, sizing sets, spreading a scaling
//! proportionally, deleting history beyond `revisionHistoryLimit`, and writing status.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::util::{self, POD_TEMPLATE_HASH, REVISION, replicas, rs_replicas};
use super::{Controller, Error};
use crate::controller::pods::{self, controller_of};

/// A deployment being synced, with the replica sets it owns; writes update both in place.
pub(super) struct Rollout<'a> {
    ctl: &'a Controller,
    pub(super) d: Deployment,
    pub(super) sets: Vec<ReplicaSet>,
}

impl<'a> Rollout<'a> {
    pub(super) fn new(ctl: &'a Controller, d: Deployment, sets: Vec<ReplicaSet>) -> Self {
        Self { ctl, d, sets }
    }

    fn namespace(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    fn set_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctl.client.clone(), &self.namespace())
    }

    fn deployment_api(&self) -> Api<Deployment> {
        Api::namespaced(self.ctl.client.clone(), &self.namespace())
    }

    fn status(&self) -> DeploymentStatus {
        self.d.status.clone().unwrap_or_default()
    }

    /// A deployment being deleted: report, change nothing.
    pub(super) async fn sync_status_only(&mut self) -> Result<Option<Duration>, Error> {
        let (new, old) = self.new_and_old(false).await?;
        self.sync_status(new.as_ref(), &old).await?;
        Ok(None)
    }

    /// A paused deployment, or one whose `spec.replicas` changed: size the sets, no rollout.
    pub(super) async fn sync(&mut self) -> Result<Option<Duration>, Error> {
        let (mut new, mut old) = self.new_and_old(false).await?;
        self.scale(&mut new, &mut old).await?;
        if self.d.spec.paused == Some(true) {
            self.cleanup(&old).await?;
        }
        self.sync_status(new.as_ref(), &old).await?;
        Ok(None)
    }

    /// Marks the Progressing condition while paused and once resumed, so time spent paused
    /// never counts against the progress deadline.
    pub(super) async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if util::progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut status = self.status();
        let reason = util::condition(&status, util::PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(super::progress::TIMED_OUT) {
            return Ok(());
        }
        let marked_paused = reason.as_deref() == Some("DeploymentPaused");
        let condition = match (self.d.spec.paused == Some(true), marked_paused) {
            (true, false) => ("DeploymentPaused", "Deployment is paused"),
            (false, true) => ("DeploymentResumed", "Deployment is resumed"),
            _ => return Ok(()),
        };
        let (reason, message) = condition;
        util::set_condition(
            &mut status,
            util::new_condition(util::PROGRESSING, "Unknown", reason, message.into()),
        );
        self.write_status(status).await
    }

    /// Whether `spec.replicas` differs from what the active sets were last sized for.
    pub(super) fn is_scaling_event(&self) -> bool {
        let want = replicas(&self.d);
        self.sets
            .iter()
            .filter(|rs| rs_replicas(rs) > 0)
            .filter_map(|rs| util::int_annotation(rs, util::DESIRED_REPLICAS))
            .any(|desired| desired != want)
    }

    /// The new replica set (whose template is the deployment's), created if `create` and
    /// missing, and the old ones; revisions brought in step (upstream's
    /// `getAllReplicaSetsAndSyncRevision`).
    pub(super) async fn new_and_old(&mut self, create: bool) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), Error> {
        let mut sets = self.sets.clone();
        sets.sort_by(util::by_creation);
        let template = &self.d.spec.template;
        let position = sets.iter().position(|rs| {
            rs.spec
                .template
                .as_ref()
                .is_some_and(|t| util::same_template(t, template))
        });
        let existing = position.map(|i| sets.remove(i));
        let new = self.new_replica_set(existing, &sets, create).await?;
        Ok((new, sets))
    }

    async fn new_replica_set(
        &mut self,
        existing: Option<ReplicaSet>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, Error> {
        let new_revision = util::max_revision(old) + 1;
        let mut status = self.status();
        if let Some(mut rs) = existing {
            let annotated = util::set_new_rs_annotations(&self.d, &mut rs, new_revision, true);
            if annotated || rs.spec.min_ready_seconds != self.d.spec.min_ready_seconds {
                rs.spec.min_ready_seconds = self.d.spec.min_ready_seconds;
                return self.replace(rs).await.map(Some);
            }
            if util::progress_deadline(&self.d).is_some() && util::condition(&status, util::PROGRESSING).is_none() {
                let message = format!("Found new replica set {:?}", rs.name_any());
                let found = util::new_condition(util::PROGRESSING, "True", "FoundNewReplicaSet", message);
                util::set_condition(&mut status, found);
            }
            let revision = rs.annotations().get(REVISION).cloned().unwrap_or_default();
            self.write_status_and_revision(status, Some(&revision)).await?;
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }
        let wanted = self.new_rs_replicas(old.iter(), None);
        let mut rs = self.new_rs_object(wanted);
        util::set_new_rs_annotations(&self.d, &mut rs, new_revision, false);
        let name = rs.name_any();
        let (rs, created) = match self.set_api().create(&PostParams::default(), &rs).await {
            Ok(created) => (created, true),
            Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => (self.adopt_existing(&name).await?, false),
            Err(source) => {
                let message = format!(
                    "Failed to create new replica set {name:?}: {}",
                    crate::error_chain(&source)
                );
                self.ctl.recorder.record(&self.d, true, "FailedCreate", &message);
                if util::progress_deadline(&self.d).is_some() {
                    let failed = util::new_condition(util::PROGRESSING, "False", "ReplicaSetCreateError", message);
                    util::set_condition(&mut status, failed);
                    self.write_status(status).await?;
                }
                return Err(Error::CreateReplicaSet { name, source });
            }
        };
        if created {
            if wanted > 0 {
                let message = format!("Scaled up replica set {name} to {wanted} from 0");
                self.ctl.recorder.record(&self.d, false, "ScalingReplicaSet", &message);
            }
            if util::progress_deadline(&self.d).is_some() {
                let message = format!("Created new replica set {name:?}");
                let made = util::new_condition(util::PROGRESSING, "True", "NewReplicaSetCreated", message);
                util::set_condition(&mut status, made);
            }
            self.sets.push(rs.clone());
        }
        self.write_status_and_revision(status, Some(&new_revision.to_string()))
            .await?;
        Ok(Some(rs))
    }

    /// The replica set for the deployment's current template, sized `replicas`.
    fn new_rs_object(&self, replicas: i32) -> ReplicaSet {
        let d = &self.d;
        let hash = util::template_hash(&d.spec.template, d.status.as_ref().and_then(|s| s.collision_count));
        let mut template = d.spec.template.clone();
        let labels = template.metadata.get_or_insert_default().labels.get_or_insert_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let labels = labels.clone();
        let mut selector = d.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", d.name_any())),
                namespace: d.namespace(),
                labels: Some(labels),
                owner_references: pods::controller_ref(d).map(|r| vec![r]),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: d.spec.min_ready_seconds,
                selector,
                template: Some(template),
            },
            status: None,
        }
    }

    /// The set named like our new one already exists: ours (a cache that lagged our own
    /// creation) or a hash collision, which bumps `collisionCount` so the next try gets a new name.
    async fn adopt_existing(&mut self, name: &str) -> Result<ReplicaSet, Error> {
        let existing = self
            .set_api()
            .get(name)
            .await
            .map_err(|source| Error::UpdateReplicaSet {
                name: name.to_owned(),
                source,
            })?;
        let ours = controller_of(&existing.metadata).is_some_and(|r| Some(&r.uid) == self.d.metadata.uid.as_ref());
        let same = existing
            .spec
            .template
            .as_ref()
            .is_some_and(|t| util::same_template(t, &self.d.spec.template));
        if ours && same {
            return Ok(existing);
        }
        let mut status = self.status();
        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
        self.write_status(status).await?;
        Err(Error::HashCollision(name.to_owned()))
    }

    /// How big the new set may be now (upstream's `NewRSNewReplicas`): all of `spec.replicas`
    /// for Recreate; for RollingUpdate, as far as the surge allows over every set's size.
    pub(super) fn new_rs_replicas<'s>(
        &self,
        others: impl Iterator<Item = &'s ReplicaSet>,
        new: Option<&ReplicaSet>,
    ) -> i32 {
        let want = replicas(&self.d);
        if !util::is_rolling(&self.d) {
            return want;
        }
        let current = util::spec_replicas(others) + new.map_or(0, rs_replicas);
        let new_size = new.map_or(0, rs_replicas);
        let max_total = want + util::max_surge(&self.d);
        if current >= max_total {
            return new_size;
        }
        new_size + (max_total - current).min(want - new_size)
    }

    /// Resizes `rs` to `size` if it is not that size, with an event (upstream's
    /// `scaleReplicaSetAndRecordEvent`); whether it was resized.
    pub(super) async fn scale_to(&self, rs: &mut ReplicaSet, size: i32) -> Result<bool, Error> {
        if rs_replicas(rs) == size {
            return Ok(false);
        }
        self.resize(rs, size).await
    }

    /// Writes `size` and the replica annotations to `rs` if either differs; whether the size did.
    async fn resize(&self, rs: &mut ReplicaSet, size: i32) -> Result<bool, Error> {
        let before = rs_replicas(rs);
        let mut copy = rs.clone();
        let want = replicas(&self.d);
        let annotated = util::set_replicas_annotations(&mut copy, want, want + util::max_surge(&self.d));
        if before == size && !annotated {
            return Ok(false);
        }
        copy.spec.replicas = Some(size);
        *rs = self.replace(copy).await?;
        if before != size {
            let direction = if size > before { "up" } else { "down" };
            let message = format!(
                "Scaled {direction} replica set {} to {size} from {before}",
                rs.name_any()
            );
            self.ctl.recorder.record(&self.d, false, "ScalingReplicaSet", &message);
        }
        Ok(before != size)
    }

    async fn replace(&self, rs: ReplicaSet) -> Result<ReplicaSet, Error> {
        let name = rs.name_any();
        self.set_api()
            .replace(&name, &PostParams::default(), &rs)
            .await
            .map_err(|source| Error::UpdateReplicaSet { name, source })
    }

    /// Sizes the sets for `spec.replicas` without a rollout (upstream's `scale`): the only
    /// active set takes it all; otherwise the change is spread over the active sets in
    /// proportion to their sizes.
    async fn scale(&self, new: &mut Option<ReplicaSet>, old: &mut [ReplicaSet]) -> Result<(), Error> {
        let want = replicas(&self.d);
        if let Some(rs) = active_or_latest(new, old) {
            self.scale_to(rs, want).await?;
            return Ok(());
        }
        if new.as_ref().is_some_and(|rs| saturated(&self.d, rs)) {
            for rs in old.iter_mut().filter(|rs| rs_replicas(rs) > 0) {
                self.scale_to(rs, 0).await?;
            }
            return Ok(());
        }
        if !util::is_rolling(&self.d) {
            // Recreate never runs two sets on purpose: its rollout sorts them out.
            return Ok(());
        }
        let mut active: Vec<&mut ReplicaSet> = new
            .iter_mut()
            .chain(old.iter_mut())
            .filter(|rs| rs_replicas(rs) > 0)
            .collect();
        let allowed = if want > 0 { want + util::max_surge(&self.d) } else { 0 };
        let to_add = allowed - active.iter().map(|rs| rs_replicas(rs)).sum::<i32>();
        // Larger sets first; among equals, newer first when growing and older first when shrinking.
        active.sort_by(|a, b| {
            let by_age = if to_add > 0 {
                util::by_creation(b, a)
            } else {
                util::by_creation(a, b)
            };
            rs_replicas(b).cmp(&rs_replicas(a)).then(by_age)
        });
        let mut sizes = Vec::with_capacity(active.len());
        let mut added = 0;
        for rs in &active {
            let share = proportion(&self.d, rs, to_add, added);
            sizes.push(rs_replicas(rs) + share);
            added += share;
        }
        if let Some(first) = sizes.first_mut() {
            *first = (*first + to_add - added).max(0);
        }
        for (rs, size) in active.into_iter().zip(sizes) {
            self.resize(rs, size).await?;
        }
        Ok(())
    }

    /// Deletes the oldest sets scaled to zero beyond `revisionHistoryLimit`.
    pub(super) async fn cleanup(&self, old: &[ReplicaSet]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.revision_history_limit else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        cleanable.sort_by(|a, b| util::by_revision(a, b));
        for rs in cleanable.into_iter().take(excess) {
            let status = rs.status.clone().unwrap_or_default();
            let settled = status.observed_generation.unwrap_or(0) >= rs.metadata.generation.unwrap_or(0);
            if status.replicas != 0 || rs_replicas(rs) != 0 || !settled {
                continue;
            }
            match self.set_api().delete(&rs.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(Error::UpdateReplicaSet {
                        name: rs.name_any(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// The status the sets add up to, with the Available condition (upstream's `calculateStatus`).
    pub(super) fn calculate_status(&self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> DeploymentStatus {
        let all = || new.into_iter().chain(old);
        let available = util::status_sum(all(), |s| s.available_replicas);
        let unavailable = (util::spec_replicas(all()) - available).max(0);
        let terminating = all().any(|rs| rs.status.as_ref().is_some_and(|s| s.terminating_replicas.is_some()));
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: omit_zero(util::status_sum(all(), |s| Some(s.replicas))),
            updated_replicas: omit_zero(util::status_sum(new, |s| Some(s.replicas))),
            ready_replicas: omit_zero(util::status_sum(all(), |s| s.ready_replicas)),
            available_replicas: omit_zero(available),
            unavailable_replicas: omit_zero(unavailable),
            terminating_replicas: terminating.then(|| util::status_sum(all(), |s| s.terminating_replicas)),
            collision_count: self.d.status.as_ref().and_then(|s| s.collision_count),
            conditions: self.d.status.as_ref().and_then(|s| s.conditions.clone()),
        };
        let condition = if available >= util::min_available(&self.d) {
            (
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        };
        let (state, reason, message) = condition;
        util::set_condition(
            &mut status,
            util::new_condition(util::AVAILABLE, state, reason, message.into()),
        );
        status
    }

    async fn sync_status(&mut self, new: Option<&ReplicaSet>, old: &[ReplicaSet]) -> Result<(), Error> {
        let status = self.calculate_status(new, old);
        self.write_status(status).await
    }

    /// Writes `status` if it differs from the deployment's.
    pub(super) async fn write_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        self.write_status_and_revision(status, None).await
    }

    /// Writes `status`, and `revision` as the revision annotation kubectl reads, where they differ
    /// from the deployment's: one write to the status endpoint, which takes a deployment's
    /// annotations too and leaves its generation alone (upstream's `getNewReplicaSet`).
    async fn write_status_and_revision(
        &mut self,
        status: DeploymentStatus,
        revision: Option<&str>,
    ) -> Result<(), Error> {
        let old = serde_json::to_value(self.status()).unwrap_or_default();
        let status_patch = pods::status_patch(&old, &serde_json::to_value(&status).unwrap_or_default());
        let revision = revision.filter(|r| self.d.annotations().get(REVISION).map(String::as_str) != Some(*r));
        let mut patch = match (status_patch, revision) {
            (None, None) => return Ok(()),
            (patch, _) => patch.unwrap_or_else(|| json!({})),
        };
        if let Some(revision) = revision {
            patch["metadata"] = json!({"annotations": {REVISION: revision}});
        }
        let patched = self
            .deployment_api()
            .patch_status(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await;
        self.d = patched.map_err(Error::UpdateDeployment)?;
        Ok(())
    }
}

/// The one active set, or the newest when none is active; `None` when several are active.
fn active_or_latest<'s>(new: &'s mut Option<ReplicaSet>, old: &'s mut [ReplicaSet]) -> Option<&'s mut ReplicaSet> {
    let active = new.iter().chain(old.iter()).filter(|rs| rs_replicas(rs) > 0).count();
    match active {
        0 if new.is_some() => new.as_mut(),
        0 => old.iter_mut().max_by(|a, b| util::by_creation(a, b)),
        1 => new.iter_mut().chain(old.iter_mut()).find(|rs| rs_replicas(rs) > 0),
        _ => None,
    }
}

/// Whether `rs` runs all of the deployment, sized and available.
fn saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let want = replicas(d);
    rs_replicas(rs) == want
        && util::int_annotation(rs, util::DESIRED_REPLICAS) == Some(want)
        && rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0) == want
}

/// `rs`'s share of `to_add` replicas of which `added` are placed (upstream's `GetProportion`):
/// its size scaled from the deployment size it was last sized for to the current one.
fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    let size = rs_replicas(rs);
    if size == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -size
    } else {
        let total = replicas(d) + util::max_surge(d);
        let annotated = util::int_annotation(rs, util::MAX_REPLICAS)
            .or_else(|| d.status.as_ref().and_then(|s| s.replicas))
            .unwrap_or(0);
        if annotated <= 0 {
            0
        } else {
            (f64::from(size) * f64::from(total) / f64::from(annotated)).round() as i32 - size
        }
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Upstream leaves zero counts out of the status (`omitempty`).
fn omit_zero(n: i32) -> Option<i32> {
    Some(n).filter(|n| *n != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32, max_replicas: i32) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": name,
            "annotations": {util::MAX_REPLICAS: max_replicas.to_string()}},
            "spec": {"replicas": replicas, "selector": {}}}))
        .unwrap()
    }

    fn deployment(replicas: i32) -> Deployment {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": replicas,
            "selector": {"matchLabels": {"app": "a"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "a"}}}}}))
        .unwrap()
    }

    #[test]
    fn scaling_spreads_over_sets_in_proportion() {
        // Sized for 10 replicas + 3 surge: two sets of 8 and 5, scaled to 20 (+ 5 surge).
        let (big, small) = (rs("big", 8, 13), rs("small", 5, 13));
        let to_add = 25 - 13;
        let first = proportion(&deployment(20), &big, to_add, 0);
        let second = proportion(&deployment(20), &small, to_add, first);
        assert_eq!((first, second), (7, 5));
        // Scaled to 4 (+ 1 surge): the big set would lose 5, but only 4 are to go.
        assert_eq!(proportion(&deployment(4), &big, -4, 0), -4);
    }

    #[test]
    fn only_one_active_set_takes_the_whole_scale() {
        let mut new = Some(rs("new", 0, 1));
        let mut old = vec![rs("old", 3, 4), rs("older", 0, 4)];
        assert_eq!(active_or_latest(&mut new, &mut old).unwrap().name_any(), "old");
        old[1].spec.replicas = Some(1);
        assert!(active_or_latest(&mut new, &mut old).is_none());
    }
}
