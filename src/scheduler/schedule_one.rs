//! One scheduling attempt's algorithm, after upstream's `schedule_one.go`: run the PreFilter
//! plugins once, walk the nodes round-robin from where the last attempt stopped running the
//! Filter plugins until enough feasible nodes are found, score those, and pick the best (ties
//! broken at random). When no node fits, the reasons per node become upstream's
//! "0/3 nodes are available: ..." message.
//!
//! The algorithm reads the cache and mutates nothing but its own buffers and cursor; the caller
//! holds the cache lock for the attempt and assumes the pod on the chosen node.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::framework::{Code, CycleState, Events, FilterPlugin, Profile, ScorePlugin, Status};
use super::types::{NodeInfo, PodInfo};

/// Below this many nodes every node is searched (upstream's `minFeasibleNodesToFind`).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never goes below this (`minFeasibleNodesPercentageToFind`).
const MIN_FEASIBLE_NODES_PERCENTAGE: usize = 5;

/// Why an attempt placed the pod nowhere.
#[derive(Debug)]
pub(crate) enum ScheduleError {
    /// The cluster has no nodes.
    NoNodes,
    /// Nodes exist, but none fits.
    Fit(FitError),
    /// A plugin failed.
    Plugin { plugin: &'static str, message: String },
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::NoNodes => f.write_str("no nodes available to schedule pods"),
            ScheduleError::Fit(fit) => fit.fmt(f),
            ScheduleError::Plugin { plugin, message } => write!(f, "running {plugin}: {message}"),
        }
    }
}

/// How many nodes rejected the pod for each reason.
#[derive(Debug, Default)]
pub(crate) struct FitError {
    nodes: usize,
    reasons: BTreeMap<Cow<'static, str>, usize>,
    /// The events registered by the plugins that rejected nodes.
    pub(crate) events: Events,
}

impl FitError {
    fn reject(&mut self, status: Status, events: Events) {
        for reason in status.reasons {
            *self.reasons.entry(reason).or_default() += 1;
        }
        self.events = self.events.or(events);
    }
}

impl fmt::Display for FitError {
    /// Upstream's shape: `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match
    /// Pod's node affinity/selector.`, the "count reason" parts sorted as strings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.nodes)?;
        let mut parts: Vec<String> = self.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        write!(f, " {}.", parts.join(", "))
    }
}

/// Upstream's `numFeasibleNodesToFind`: how many feasible nodes are enough to pick from.
/// `percentage` 0 is adaptive: 50% minus one point per 125 nodes, at least 5%.
fn feasible_nodes_to_find(percentage: u32, nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return nodes;
    }
    let percentage = match percentage as usize {
        0 => 50usize.saturating_sub(nodes / 125).max(MIN_FEASIBLE_NODES_PERCENTAGE),
        p => p,
    };
    (nodes * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

pub(crate) struct Algorithm {
    profile: Arc<Profile>,
    percentage_of_nodes_to_score: u32,
    /// Where the next attempt starts walking the nodes.
    next_start: usize,
    rng: u64,
    // Buffers reused by every attempt.
    feasible: Vec<usize>,
    totals: Vec<i64>,
    scores: Vec<i64>,
}

impl Algorithm {
    pub(crate) fn new(profile: Profile, percentage_of_nodes_to_score: u32) -> Self {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
        Self {
            profile: Arc::new(profile),
            percentage_of_nodes_to_score,
            next_start: 0,
            rng: seed,
            feasible: Vec::new(),
            totals: Vec::new(),
            scores: Vec::new(),
        }
    }

    /// The index in `nodes` of the node to bind `pod` to.
    pub(crate) fn schedule(
        &mut self,
        nodes: &[NodeInfo],
        node_count: usize,
        pod: &PodInfo,
    ) -> Result<usize, ScheduleError> {
        if node_count == 0 {
            return Err(ScheduleError::NoNodes);
        }
        let profile = self.profile.clone();
        let mut state = CycleState::default();
        let mut skipped: Vec<&'static str> = Vec::new();
        for plugin in &profile.pre_filter {
            let status = plugin.pre_filter(&mut state, pod, nodes);
            match status.code {
                Code::Success => {}
                Code::Skip => skipped.push(plugin.name()),
                Code::Error => return Err(plugin_error(plugin.name(), status)),
                Code::Unschedulable | Code::UnschedulableAndUnresolvable => {
                    let mut fit = FitError {
                        nodes: node_count,
                        ..Default::default()
                    };
                    for _ in 0..node_count {
                        fit.reject(status.clone(), Events::NODE_ADD);
                    }
                    return Err(ScheduleError::Fit(fit));
                }
            }
        }
        let filters: Vec<&dyn FilterPlugin> = profile
            .filter
            .iter()
            .filter(|p| !skipped.contains(&p.name()))
            .map(|p| p.as_ref())
            .collect();
        self.find_feasible(&filters, &state, nodes, node_count, pod)?;
        if self.feasible.len() == 1 {
            return Ok(self.feasible[0]);
        }
        self.prioritize(&profile, &mut state, nodes, pod);
        Ok(self.select_host())
    }

    fn find_feasible(
        &mut self,
        filters: &[&dyn FilterPlugin],
        state: &CycleState,
        nodes: &[NodeInfo],
        node_count: usize,
        pod: &PodInfo,
    ) -> Result<(), ScheduleError> {
        let want = feasible_nodes_to_find(self.percentage_of_nodes_to_score, node_count);
        let mut fit = FitError {
            nodes: node_count,
            ..Default::default()
        };
        self.feasible.clear();
        let mut walked = 0;
        for offset in 0..nodes.len() {
            let at = (self.next_start + offset) % nodes.len();
            walked = offset + 1;
            let node = &nodes[at];
            if node.node.is_none() {
                continue;
            }
            let rejection = filters
                .iter()
                .map(|f| (f, f.filter(state, pod, node)))
                .find(|(_, status)| !status.is_success());
            match rejection {
                None => {
                    self.feasible.push(at);
                    if self.feasible.len() >= want {
                        break;
                    }
                }
                Some((plugin, status)) if status.code == Code::Error => {
                    return Err(plugin_error(plugin.name(), status));
                }
                Some((plugin, status)) => fit.reject(status, plugin.events()),
            }
        }
        self.next_start = (self.next_start + walked) % nodes.len().max(1);
        if self.feasible.is_empty() {
            return Err(ScheduleError::Fit(fit));
        }
        Ok(())
    }

    /// Fills `totals` with the weighted sum of the normalized scores of each feasible node.
    fn prioritize(&mut self, profile: &Profile, state: &mut CycleState, nodes: &[NodeInfo], pod: &PodInfo) {
        let mut skipped: Vec<&'static str> = Vec::new();
        for plugin in &profile.pre_score {
            if plugin.pre_score(state, pod).code == Code::Skip {
                skipped.push(plugin.name());
            }
        }
        self.totals.clear();
        self.totals.resize(self.feasible.len(), 0);
        let scoring: Vec<(&dyn ScorePlugin, i64)> = profile
            .score
            .iter()
            .filter(|(p, _)| !skipped.contains(&p.name()))
            .map(|(p, w)| (p.as_ref(), *w))
            .collect();
        for (plugin, weight) in scoring {
            self.scores.clear();
            self.scores
                .extend(self.feasible.iter().map(|&at| plugin.score(state, pod, &nodes[at])));
            plugin.normalize(&mut self.scores);
            for (total, score) in self.totals.iter_mut().zip(&self.scores) {
                *total += score * weight;
            }
        }
    }

    /// The feasible node with the highest total; among equals, each is as likely.
    fn select_host(&mut self) -> usize {
        let mut best = 0;
        let mut ties = 0u64;
        for i in 0..self.totals.len() {
            let total = self.totals[i];
            if total > self.totals[best] {
                best = i;
                ties = 1;
            } else if total == self.totals[best] {
                ties += 1;
                if self.next_random().is_multiple_of(ties) {
                    best = i;
                }
            }
        }
        self.feasible[best]
    }

    /// xorshift64: cheap, and random enough to break ties.
    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

fn plugin_error(plugin: &'static str, status: Status) -> ScheduleError {
    ScheduleError::Plugin {
        plugin,
        message: status.reasons.join("; "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::default_profile;
    use crate::scheduler::types::testing::{node, pod, pod_requesting};
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn feasible_nodes_to_find_follows_upstream() {
        assert_eq!(feasible_nodes_to_find(0, 50), 50);
        assert_eq!(feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(feasible_nodes_to_find(0, 200), 100);
        assert_eq!(feasible_nodes_to_find(10, 5000), 500);
        assert_eq!(feasible_nodes_to_find(100, 5000), 5000);
    }

    #[test]
    fn the_fit_error_counts_nodes_per_reason() {
        let nodes = [
            node("small", "500m", "8Gi", json!({})),
            node("other-1", "8", "8Gi", json!({"metadata": {"labels": {"disk": "hdd"}}})),
            node("other-2", "8", "8Gi", json!({})),
        ];
        let p = pod(
            json!({"metadata": {"name": "p"}, "spec": {"nodeSelector": {"kubernetes.io/hostname": "small"},
            "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        let mut algorithm = Algorithm::new(default_profile(), 0);
        let Err(ScheduleError::Fit(fit)) = algorithm.schedule(&nodes, 3, &p) else {
            panic!("expected no node to fit");
        };
        assert_eq!(
            fit.to_string(),
            "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector."
        );
        assert!(fit.events.intersects(Events::NODE_LABEL));
        assert!(fit.events.intersects(Events::NODE_ALLOCATABLE));
        assert!(!fit.events.intersects(Events::NODE_TAINT));
        assert!(matches!(algorithm.schedule(&[], 0, &p), Err(ScheduleError::NoNodes)));
    }

    #[test]
    fn the_emptiest_fitting_node_wins() {
        let mut busy = node("busy", "4", "8Gi", json!({}));
        busy.add_pod(Arc::new(pod_requesting("x", "3", "6Gi")));
        let nodes = [
            busy,
            node("idle", "4", "8Gi", json!({})),
            node("tiny", "1", "1Gi", json!({})),
        ];
        let mut algorithm = Algorithm::new(default_profile(), 0);
        for _ in 0..5 {
            let at = algorithm.schedule(&nodes, 3, &pod_requesting("p", "1", "2Gi")).unwrap();
            assert_eq!(nodes[at].name, "idle");
        }
    }

    #[test]
    fn ties_are_broken_at_random() {
        let nodes: Vec<NodeInfo> = (0..4).map(|i| node(&format!("n{i}"), "4", "8Gi", json!({}))).collect();
        let mut algorithm = Algorithm::new(default_profile(), 0);
        let chosen: std::collections::HashSet<usize> = (0..200)
            .map(|_| algorithm.schedule(&nodes, 4, &pod_requesting("p", "1", "1Gi")).unwrap())
            .collect();
        assert_eq!(chosen.len(), 4);
    }

    #[test]
    fn large_clusters_stop_searching_once_enough_nodes_fit() {
        let nodes: Vec<NodeInfo> = (0..1000)
            .map(|i| node(&format!("n{i}"), "4", "8Gi", json!({})))
            .collect();
        let mut algorithm = Algorithm::new(default_profile(), 0);
        algorithm
            .schedule(&nodes, 1000, &pod_requesting("p", "1", "1Gi"))
            .unwrap();
        assert_eq!(algorithm.feasible.len(), 420);
        // The next attempt starts where this one stopped.
        assert_eq!(algorithm.next_start, 420);
    }
}
