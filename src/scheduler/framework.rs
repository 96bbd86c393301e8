//! The scheduling framework, after upstream's `pkg/scheduler/framework/interface.go`: each step
//! of a scheduling attempt is a plugin at one or more extension points. `PreFilter` looks at the
//! pod once (and may say the plugin has nothing to check: `Skip`), `Filter` says whether one node
//! can take the pod, `PreScore`/`Score` rank the nodes that can. A new step is one file in
//! `plugins/` and one line in its [`Profile`].
//!
//! Plugins are `Send + Sync` and keep no per-attempt state of their own: what `PreFilter`
//! computes goes in the attempt's [`CycleState`].

use std::any::Any;
use std::borrow::Cow;
use std::sync::Arc;

use super::types::{NodeInfo, PodInfo};

/// The highest score a plugin gives a node (upstream's `MaxNodeScore`).
pub(crate) const MAX_NODE_SCORE: i64 = 100;

/// What a plugin decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    Success,
    /// The node cannot take the pod now; it may after the cluster changes (preemption could help).
    Unschedulable,
    /// The node cannot take the pod whatever happens to other pods.
    UnschedulableAndUnresolvable,
    /// The plugin failed; the attempt is retried with back-off.
    Error,
    /// From `PreFilter`/`PreScore`: the plugin has nothing to do for this pod.
    Skip,
}

/// A plugin's decision and, unless it succeeded, why (upstream's reasons, counted per node in
/// the FailedScheduling message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) code: Code,
    pub(crate) reasons: Vec<Cow<'static, str>>,
}

impl Status {
    pub(crate) const SUCCESS: Status = Status {
        code: Code::Success,
        reasons: Vec::new(),
    };
    pub(crate) const SKIP: Status = Status {
        code: Code::Skip,
        reasons: Vec::new(),
    };

    pub(crate) fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            reasons: vec![reason.into()],
        }
    }

    pub(crate) fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Code::Unschedulable, reason)
    }

    pub(crate) fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Code::UnschedulableAndUnresolvable, reason)
    }

    pub(crate) fn is_success(&self) -> bool {
        self.code == Code::Success
    }
}

/// Kinds of cluster change that can make a rejected pod schedulable. Each filter names the ones
/// that can undo its rejections, so the queue retries a pod only when one of them happens
/// (upstream's `EventsToRegister` and `ClusterEvent`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Events(u8);

impl Events {
    pub(crate) const NONE: Events = Events(0);
    pub(crate) const NODE_ADD: Events = Events(1);
    pub(crate) const NODE_ALLOCATABLE: Events = Events(1 << 1);
    pub(crate) const NODE_LABEL: Events = Events(1 << 2);
    pub(crate) const NODE_TAINT: Events = Events(1 << 3);
    /// `spec.unschedulable` changed.
    pub(crate) const NODE_SPEC: Events = Events(1 << 4);
    pub(crate) const ASSIGNED_POD_ADD: Events = Events(1 << 5);
    pub(crate) const ASSIGNED_POD_UPDATE: Events = Events(1 << 6);
    pub(crate) const ASSIGNED_POD_DELETE: Events = Events(1 << 7);

    pub(crate) const fn or(self, other: Events) -> Events {
        Events(self.0 | other.0)
    }

    pub(crate) fn intersects(self, other: Events) -> bool {
        self.0 & other.0 != 0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// Data one scheduling attempt's plugins share: written by `PreFilter`/`PreScore`, read by
/// `Filter`/`Score` on every node. At most one value per type.
#[derive(Default)]
pub(crate) struct CycleState {
    values: Vec<Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    pub(crate) fn write<T: Any + Send + Sync>(&mut self, value: T) {
        self.values.retain(|v| !v.is::<T>());
        self.values.push(Box::new(value));
    }

    pub(crate) fn read<T: Any>(&self) -> Option<&T> {
        self.values.iter().find_map(|v| v.downcast_ref::<T>())
    }
}

/// Every plugin has upstream's name.
pub(crate) trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
}

/// Runs once per attempt before any node is filtered.
pub(crate) trait PreFilterPlugin: Plugin {
    /// `Skip` leaves this plugin's `Filter` out of the attempt; a rejection rejects every node.
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[NodeInfo]) -> Status;
}

/// Whether one node can take the pod. Called for many nodes per attempt: must not allocate
/// unless it rejects the node.
pub(crate) trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
    /// The cluster changes after which a pod this plugin rejected may fit.
    fn events(&self) -> Events;
}

/// Runs once per attempt before the feasible nodes are scored.
pub(crate) trait PreScorePlugin: Plugin {
    /// `Skip` leaves this plugin's `Score` out of the attempt.
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo) -> Status;
}

/// Ranks a feasible node.
pub(crate) trait ScorePlugin: Plugin {
    /// The node's raw score for the pod.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Brings the raw scores of all feasible nodes into 0..=[`MAX_NODE_SCORE`].
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Scales `scores` so the highest is [`MAX_NODE_SCORE`]; `reverse` makes the lowest raw score the
/// best (upstream's `DefaultNormalizeScore`).
pub(crate) fn normalize_scores(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = match (max, reverse) {
            (0, true) => MAX_NODE_SCORE,
            (0, false) => 0,
            (max, false) => *s * MAX_NODE_SCORE / max,
            (max, true) => MAX_NODE_SCORE - *s * MAX_NODE_SCORE / max,
        };
    }
}

/// The plugins of a scheduler, per extension point, in the order they run.
#[derive(Default)]
pub(crate) struct Profile {
    pub(crate) pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    pub(crate) filter: Vec<Arc<dyn FilterPlugin>>,
    pub(crate) pre_score: Vec<Arc<dyn PreScorePlugin>>,
    /// Score plugins with their weights.
    pub(crate) score: Vec<(Arc<dyn ScorePlugin>, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizing_scales_to_the_best_node() {
        let mut scores = [0, 5, 10];
        normalize_scores(&mut scores, false);
        assert_eq!(scores, [0, 50, 100]);
        let mut scores = [0, 5, 10];
        normalize_scores(&mut scores, true);
        assert_eq!(scores, [100, 50, 0]);
        let mut scores = [0, 0];
        normalize_scores(&mut scores, true);
        assert_eq!(scores, [100, 100]);
    }

    #[test]
    fn cycle_state_holds_one_value_per_type() {
        let mut state = CycleState::default();
        state.write(1u32);
        state.write(2u32);
        state.write("x");
        assert_eq!(state.read::<u32>(), Some(&2));
        assert_eq!(state.read::<&str>(), Some(&"x"));
        assert_eq!(state.read::<i64>(), None);
    }
}
