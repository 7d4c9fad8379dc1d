//! Running the checker over a model and reporting what it found, with each counterexample
//! told as the steps that lead to it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use stateright::{Checker, Expectation, HasDiscoveries, Model, Path};

use crate::model::{Action, SettlementModel, Variant};
use crate::state::State;

/// How far to check.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Explore only paths up to this many steps; `None` explores every reachable state.
    pub depth_max: Option<usize>,
    /// Stop as soon as this property has a discovery.
    pub stop_at: Option<&'static str>,
    /// Checker threads; zero means one per available core.
    pub threads: usize,
}

/// What one run of the checker found.
#[derive(Debug)]
pub struct Report {
    pub scenario: &'static str,
    pub variant: Variant,
    /// States generated, repeats included.
    pub states: usize,
    pub unique_states: usize,
    pub depth: usize,
    pub elapsed: Duration,
    /// Whether the run stopped at the counterexample it was asked for, before it had visited
    /// every reachable state (within the depth bound).
    pub stopped_early: bool,
    /// Each property with a discovery, and the path to it told step by step.
    pub discoveries: BTreeMap<&'static str, String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} / {:?}: {} unique states ({} generated), depth {}, {:.1} s{}",
            self.scenario,
            self.variant,
            self.unique_states,
            self.states,
            self.depth,
            self.elapsed.as_secs_f64(),
            if self.stopped_early {
                ", stopped at the first counterexample"
            } else {
                ""
            },
        )
    }
}

/// Runs the breadth-first checker over `model`.
pub fn check(model: SettlementModel, options: &Options) -> Report {
    let scenario = model.scenario().name;
    let variant = model.variant();
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let started = Instant::now();
    let mut builder = model.checker().threads(threads);
    if let Some(depth_max) = options.depth_max {
        builder = builder.target_max_depth(depth_max);
    }
    if let Some(name) = options.stop_at {
        builder = builder.finish_when(HasDiscoveries::AnyOf([name].into()));
    }
    let checker = builder.spawn_bfs().join();
    let elapsed = started.elapsed();
    let model = checker.model();
    let discoveries = checker
        .discoveries()
        .into_iter()
        .map(|(name, path)| (name, model.explain(&shortest_prefix(model, name, path))))
        .collect::<BTreeMap<_, _>>();
    let stopped_early = options
        .stop_at
        .is_some_and(|name| discoveries.contains_key(name));
    Report {
        scenario,
        variant,
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        depth: checker.max_depth(),
        elapsed,
        stopped_early,
        discoveries,
    }
}

/// Cuts a counterexample to an `always` property at its first state that breaks it. The
/// checker records the last violation it met in a block of states, so the path it reports
/// can run on past the point.
fn shortest_prefix(
    model: &SettlementModel,
    name: &'static str,
    path: Path<State, Action>,
) -> Vec<(State, Option<Action>)> {
    let mut steps = path.into_vec();
    let property = model.property(name);
    if property.expectation == Expectation::Always
        && let Some(first) = steps
            .iter()
            .position(|(state, _)| !(property.condition)(model, state))
    {
        steps.truncate(first + 1);
        steps[first].1 = None;
    }
    steps
}

/// The names of the properties that must hold (`always`) and those that must be reachable
/// (`sometimes`), in the model's order.
pub fn property_names(model: &SettlementModel) -> (Vec<&'static str>, Vec<&'static str>) {
    let mut always = Vec::new();
    let mut sometimes = Vec::new();
    for property in model.properties() {
        if property.expectation.discovery_is_failure() {
            always.push(property.name);
        } else {
            sometimes.push(property.name);
        }
    }
    (always, sometimes)
}
