//! Hostile input for every request message of every RPC (issue 7, acceptance 3).
//!
//! Each of the 45 RPCs is a fuzz target ([`targets::all`]): proptest feeds it inputs built
//! from the descriptor set ([`wire`]), mostly well-formed messages with arbitrary values in
//! every field, some with bytes overwritten or cut short, some random bytes; the input is
//! decoded as tonic would and handed to the real handler of a real node ([`harness`]). A target
//! fails when the handler panics or answers INTERNAL, UNKNOWN or DATA_LOSS: hostile input must
//! be refused with a deliberate code. `cargo test -p yitong-fuzz` runs a short round of every
//! target; the `yitong-fuzz` binary runs long ones (FUZZING.md).

pub mod callers;
pub mod harness;
pub mod targets;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use tonic::Code;

use harness::Harness;
use targets::{Mode, Outcome, Shape, Target};
use wire::Schema;

/// What one target's run did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    /// Inputs run, all of them passed (a failing run returns its minimal input instead).
    pub cases: u32,
    pub elapsed: Duration,
    /// How the inputs ended: "undecodable", "OK", "InvalidArgument", ...
    pub outcomes: BTreeMap<String, u64>,
}

/// Answers that mean the server failed rather than refused the input. A request stream that
/// does not decode is refused INVALID_ARGUMENT by the frame check (`yitong_node::frames`), which
/// the ReconcileDetails target reads its body through, as a server does.
fn is_failure(code: Code) -> bool {
    matches!(code, Code::Internal | Code::Unknown | Code::DataLoss)
}

/// The input strategy of a target: its encoded request (a request body for a client stream)
/// and how it is sent: marked as forwarded by another node or not, aimed at its caller or not.
fn strategy(schema: &Arc<Schema>, target: &Target) -> BoxedStrategy<(Vec<u8>, Mode)> {
    let body = match target.shape {
        Shape::Unary => wire::input(schema, target.message),
        Shape::ClientStream => {
            let framed = prop::collection::vec(wire::input(schema, target.message), 0..4)
                .prop_map(|messages| targets::frames(&messages));
            prop_oneof![
                6 => framed.clone(),
                // A bad frame header first: any flag byte (compressed without compression,
                // undefined flags) and any length (short, past the end, past the limit).
                2 => (framed, any::<u8>(), any::<u32>()).prop_map(|(body, flag, length)| {
                    let mut bad = vec![flag];
                    bad.extend_from_slice(&length.to_be_bytes());
                    bad.extend_from_slice(&body);
                    bad
                }),
                1 => prop::collection::vec(any::<u8>(), 0..256),
            ]
            .boxed()
        }
    };
    (body, any::<bool>(), any::<bool>())
        .prop_map(|(body, forwarded, aimed)| (body, Mode { forwarded, aimed }))
        .boxed()
}

/// Runs `cases` inputs of `target` from the RNG seeded with `seed`. On a failure, proptest
/// shrinks it and the error names the minimal input.
pub fn run(
    runtime: &tokio::runtime::Runtime,
    harness: &Arc<Harness>,
    schema: &Arc<Schema>,
    target: &Target,
    cases: u32,
    seed: u64,
) -> Result<Report, String> {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    seed_bytes[8..16].copy_from_slice(&(target.name.len() as u64).to_le_bytes());
    for (index, byte) in target.name.bytes().enumerate() {
        seed_bytes[16 + index % 16] ^= byte;
    }
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let outcomes = Mutex::new(BTreeMap::<String, u64>::new());
    let started = Instant::now();
    let result = runner.run(&strategy(schema, target), |(bytes, mode)| {
        let outcome = runtime.block_on((target.call)(harness.clone(), bytes, mode));
        let name = match outcome {
            Outcome::Undecodable => "undecodable".to_owned(),
            Outcome::Answered(code) => format!("{code:?}"),
        };
        *outcomes
            .lock()
            .expect("outcome table")
            .entry(name)
            .or_default() += 1;
        match outcome {
            Outcome::Answered(code) if is_failure(code) => {
                Err(TestCaseError::fail(format!("answered {code:?}")))
            }
            _ => Ok(()),
        }
    });
    let elapsed = started.elapsed();
    result.map_err(|error| format!("{}: {error}", target.name))?;
    Ok(Report {
        target: target.name,
        cases,
        elapsed,
        outcomes: outcomes.into_inner().expect("outcome table"),
    })
}

/// A runtime and a started harness in a fresh directory (kept alive by the returned guard).
pub fn start() -> (
    tokio::runtime::Runtime,
    Arc<Harness>,
    Arc<Schema>,
    tempfile::TempDir,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // On tmpfs when there is one: the stores' fsyncs would otherwise set the pace.
    let dir = match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm"),
        false => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    let harness = Arc::new(runtime.block_on(Harness::start(dir.path())));
    let schema = Schema::load(harness.dictionary.clone());
    (runtime, harness, schema, dir)
}
