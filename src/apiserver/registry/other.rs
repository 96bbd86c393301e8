//! Strategies of the remaining groups: batch/v1 Jobs, coordination.k8s.io/v1 Leases and
//! discovery.k8s.io/v1 EndpointSlices. Mirrors upstream's `pkg/registry/{batch,coordination,
//! discovery}`.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use super::strategy::Strategy;
use crate::api::pod::{default_pod_spec, validate_pod_spec};
use crate::api::validation::FieldError;
use crate::apiserver::printers::{self, Column};

/// Jobs: a generated selector on the job's uid unless `manualSelector`, and the batch defaults.
pub(crate) struct JobStrategy;

const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
const JOB_NAME: &str = "batch.kubernetes.io/job-name";

impl Strategy for JobStrategy {
    type Object = Job;
    const GENERATION: bool = true;

    fn default(&self, job: &mut Job) {
        let spec = job.spec.get_or_insert_with(Default::default);
        if spec.completions.is_none() && spec.parallelism.is_none() {
            spec.completions = Some(1);
            spec.parallelism = Some(1);
        }
        spec.parallelism.get_or_insert(1);
        spec.backoff_limit.get_or_insert(6);
        spec.completion_mode.get_or_insert_with(|| "NonIndexed".into());
        spec.suspend.get_or_insert(false);
        spec.manual_selector.get_or_insert(false);
        spec.pod_replacement_policy
            .get_or_insert_with(|| "TerminatingOrFailed".into());
        default_pod_spec(spec.template.spec.get_or_insert_with(Default::default));
    }

    fn prepare_for_create(&self, job: &mut Job) {
        job.status = Some(Default::default());
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let name = job.metadata.name.clone().unwrap_or_default();
        let Some(spec) = job.spec.as_mut() else {
            return;
        };
        if spec.manual_selector == Some(true) {
            return;
        }
        let labels = spec
            .template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new);
        for (k, v) in [
            (CONTROLLER_UID, &uid),
            (JOB_NAME, &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels.insert(k.into(), v.clone());
        }
        spec.selector = Some(LabelSelector {
            match_labels: Some([(CONTROLLER_UID.to_string(), uid)].into()),
            ..Default::default()
        });
    }

    fn validate(&self, job: &Job) -> Vec<FieldError> {
        let Some(spec) = &job.spec else {
            return vec![FieldError::required("spec")];
        };
        let mut errs = Vec::new();
        match &spec.template.spec {
            Some(pod) => {
                errs.extend(validate_pod_spec(pod, "spec.template.spec"));
                let policy = pod.restart_policy.as_deref().unwrap_or_default();
                if policy != "OnFailure" && policy != "Never" {
                    errs.push(FieldError::not_supported(
                        "spec.template.spec.restartPolicy",
                        policy,
                        &["OnFailure", "Never"],
                    ));
                }
            }
            None => errs.push(FieldError::required("spec.template.spec")),
        }
        for (field, value) in [
            ("spec.parallelism", spec.parallelism),
            ("spec.completions", spec.completions),
            ("spec.backoffLimit", spec.backoff_limit),
        ] {
            if let Some(v) = value.filter(|v| *v < 0) {
                errs.push(FieldError::invalid(field, v, "must be greater than or equal to 0"));
            }
        }
        if spec.selector.is_none() {
            errs.push(FieldError::required("spec.selector"));
        }
        errs
    }

    fn validate_update(&self, new: &Job, old: &Job) -> Vec<FieldError> {
        let mut errs = self.validate(new);
        if let (Some(n), Some(o)) = (&new.spec, &old.spec) {
            if n.selector != o.selector {
                errs.push(FieldError::immutable("spec.selector", ""));
            }
            if n.template != o.template && o.suspend != Some(true) {
                errs.push(FieldError::immutable("spec.template", ""));
            }
            if n.completions != o.completions {
                errs.push(FieldError::immutable("spec.completions", n.completions.unwrap_or(0)));
            }
        }
        errs
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::JOB_COLUMNS)
    }

    fn cells(&self, job: &Job) -> Vec<Value> {
        printers::job_cells(job)
    }
}

/// Leases: created by PUT as well, for leader election and node heartbeats.
pub(crate) struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    type Object = Lease;
    const CREATE_ON_UPDATE: bool = true;

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::LEASE_COLUMNS)
    }

    fn cells(&self, lease: &Lease) -> Vec<Value> {
        printers::lease_cells(lease)
    }
}

/// EndpointSlices: the address type must be one upstream knows.
pub(crate) struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    type Object = EndpointSlice;

    fn validate(&self, slice: &EndpointSlice) -> Vec<FieldError> {
        let types = ["IPv4", "IPv6", "FQDN"];
        if types.contains(&slice.address_type.as_str()) {
            Vec::new()
        } else {
            vec![FieldError::not_supported("addressType", &slice.address_type, &types)]
        }
    }

    fn columns(&self) -> Option<&'static [Column]> {
        Some(printers::ENDPOINTSLICE_COLUMNS)
    }

    fn cells(&self, slice: &EndpointSlice) -> Vec<Value> {
        printers::endpointslice_cells(slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_get_a_selector_on_their_uid_and_need_a_terminating_restart_policy() {
        let mut job: Job = serde_json::from_value(json!({"metadata": {"name": "j", "uid": "u1"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
        .unwrap();
        JobStrategy.default(&mut job);
        JobStrategy.prepare_for_create(&mut job);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.completions, Some(1));
        assert_eq!(
            spec.selector.as_ref().unwrap().match_labels.as_ref().unwrap()[CONTROLLER_UID],
            "u1"
        );
        let errs = JobStrategy.validate(&job);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "spec.template.spec.restartPolicy");
    }
}
