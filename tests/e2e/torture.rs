//! The torture harness: random concurrent schedules of every settlement call an HIS makes, with
//! replays, HIS deadlines, and servers aborted and restarted under them; then every city's
//! recovery sweep runs until nothing is in doubt, and an invariant checker reads every store
//! with plain SQL. `TORTURE.md` says what it does, the faults, the invariants, and how to run it
//! with a given seed or at a hundred thousand operations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use tonic::Code;
use tonic_types::StatusExt;
use yitong_core::{Owner, PoolCode, Service};
use yitong_proto::catalog::v1::{Policy, UpsertPolicyRequest};
use yitong_proto::identity::v1::InsuranceType;
use yitong_proto::ledger::v1::VerifyJournalRequest;
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_proto::settlement::v1::{
    CancelCertificationRequest, CancelFilingRequest, Certification, CertifyRequest,
    FileFilingRequest, Filing, FilingKind, FilingPolicy, SetFilingPolicyRequest, SettlementSplit,
    UnfiledVisit,
};
use yitong_proto::settlement::v1::{
    CancelSettlementRequest, CancelSettlementResponse, FeeLine, MedicalType, PreSettleRequest,
    PreSettleResponse, RegisterVisitRequest, RegisterVisitResponse, ReversalOutcome,
    ReverseByMessageIdRequest, ReverseByMessageIdResponse, ReversibleTransaction, SettleRequest,
    SettleResponse, Settlement, SettlementStatus, UploadFeeLinesRequest, UploadFeeLinesResponse,
    Visit,
};
use yitong_sandbox::{
    BINZHOU, Channel, DONGYING, JINAN, PILOT_CITIES, Sandbox, ZIBO, network_test,
};
use yitong_settlement::SettlementNode;
use yitong_settlement::treatment::TreatmentOptions;
use yitong_store::{Store, sqlx};

use crate::settlement::{cancel_request, card, fen, hospital, line, upload_request};
use crate::support::yuan;

/// Operations (HIS calls, replays and retries included) when `YITONG_TORTURE_OPS` is not set:
/// a bounded run for CI, under a minute and a half per database in a debug build
/// (`TORTURE.md`).
const OPS_DEFAULT: usize = 800;
/// HIS counters working at once; each runs one visit, or one burst of a patient's visits, at a
/// time.
const WORKERS: usize = 6;
/// Most times an HIS sends one call under one message id before it gives up on it.
const ATTEMPTS_MAX: u32 = 10;
/// Deadline of an HIS call, unless the HIS is in a hurry.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// A hurried HIS's deadline, in ms: short enough that the treatment node drops its handler
/// between two steps of a Settle, as a crash of that node would.
const SHORT_DEADLINE_MS: std::ops::RangeInclusive<u64> = 5..=250;
/// Out of a hundred, how often a call goes out under a short deadline.
const SHORT_DEADLINE_PERCENT: u32 = 8;
/// Out of a hundred, how often an HIS sends a call once and never again, whatever it got.
const ABANDON_PERCENT: u32 = 4;
/// The same two for a reversal racing its Settle.
const RACING_SHORT_PERCENT: u32 = 30;
const RACING_ABANDON_PERCENT: u32 = 15;
/// Out of a hundred, how often a call is sent twice at once under one message id.
const CONCURRENT_REPLAY_PERCENT: u32 = 25;
/// Out of a hundred, how often a call is sent again once its visit is over.
const LATER_REPLAY_PERCENT: u32 = 25;
/// Out of a hundred, how often an HIS gives up on a Settle at once and reverses it while the
/// Settle may still be running.
const RACING_REVERSAL_PERCENT: u32 = 15;
/// Out of a hundred, how often a visit is cancelled (CancelSettlement) once settled, and how
/// often it is reversed after the Settle took effect.
const CANCEL_PERCENT: u32 = 30;
const REVERSE_AFTER_PERCENT: u32 = 10;
/// Out of a hundred, how often a worker runs a burst of visits of one patient at once, and
/// the most visits in a burst.
const BURST_PERCENT: u32 = 35;
const BURST_MAX: usize = 4;
/// How far apart, in ms, the first Settles of a burst are sent.
const BURST_STAGGER_MS: std::ops::RangeInclusive<u64> = 0..=150;
/// Settlements per visit at most (a cancelled visit is settled again).
const SETTLES_PER_VISIT_MAX: u32 = 3;
/// Message ids a visit's Settle may go through after voids and reversals, and a
/// cancellation after voids.
const SETTLE_IDS_MAX: u32 = 5;
const CANCEL_IDS_MAX: u32 = 3;
/// Time between two faults, and how long a server stays down, in ms.
const FAULT_GAP_MS: std::ops::RangeInclusive<u64> = 100..=800;
const OUTAGE_MS: std::ops::RangeInclusive<u64> = 20..=300;
/// How long the final sweeps may take to leave nothing in doubt: longer than the sweep's
/// longest back-off, so a row waiting for its next attempt is not taken for a stuck one.
const SWEEP_TIME_MAX: Duration = Duration::from_secs(75);
/// How often, and how long apart, an aborted server's port is tried before it is restarted.
const PORT_WAITS_MAX: u32 = 1_000;
const PORT_WAIT: Duration = Duration::from_millis(5);
/// Time between two rounds of the final sweeps.
const SWEEP_PAUSE: Duration = Duration::from_millis(250);
/// Violations printed in full; the rest are counted.
const VIOLATIONS_SHOWN_MAX: usize = 300;
/// The journal's flag of a transfer created pending (`crates/yitong-ledger/src/transfer.rs`).
const FLAG_PENDING: i64 = 2;

/// The run's seed: `YITONG_TORTURE_SEED`, else drawn once per process, so the SQLite and the
/// PostgreSQL variants of one `cargo test` run the same schedule.
static SEED: LazyLock<u64> = LazyLock::new(|| match std::env::var("YITONG_TORTURE_SEED") {
    Ok(text) => text
        .trim()
        .parse()
        .expect("YITONG_TORTURE_SEED is an unsigned 64-bit integer"),
    Err(_) => rand::random(),
});

/// A run prints its progress every this many calls (the bounded run never reaches it).
const PROGRESS_EVERY: usize = 5_000;

fn ops_max() -> usize {
    match std::env::var("YITONG_TORTURE_OPS") {
        Ok(text) => text
            .trim()
            .parse()
            .expect("YITONG_TORTURE_OPS is a number of operations"),
        Err(_) => OPS_DEFAULT,
    }
}

fn percent(rng: &mut ChaCha8Rng, percent: u32) -> bool {
    rng.random_range(0..100) < percent
}

// ---- The patients ----------------------------------------------------------------------------

/// An employee in service of one pilot city whose personal account holds two to three thousand
/// yuan: a handful of settlements drains it and brings the fund near the annual cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Patient {
    city: &'static str,
    /// The patient's position among the city's seeded persons (`seeds/README.md`).
    n: u32,
}

const PATIENTS: [Patient; 4] = [
    Patient { city: JINAN, n: 26 },
    Patient { city: ZIBO, n: 58 },
    Patient {
        city: DONGYING,
        n: 90,
    },
    Patient {
        city: BINZHOU,
        n: 177,
    },
];

impl Patient {
    fn person_no(&self) -> String {
        format!("{}{:010}", self.city, self.n)
    }
}

/// What the seeds say of a patient: the opening account balance, and the insured city's annual
/// cap and deductible for them at a level-3 hospital this year.
#[derive(Debug, Clone, Copy)]
struct Seeded {
    balance_fen: i64,
    annual_cap_fen: i64,
    deductible_fen: i64,
    /// The national person type: 1 in service, 2 retired.
    person_type: i32,
}

fn seeded(patient: Patient) -> Seeded {
    let dir = yitong_sandbox::seeds_dir();
    let persons = std::fs::read_to_string(dir.join("persons.csv")).expect("persons.csv");
    let row = persons
        .lines()
        .skip(1)
        .filter(|row| row.starts_with(patient.city))
        .nth(patient.n as usize - 1)
        .expect("the patient is seeded");
    let columns: Vec<&str> = row.split(',').collect();
    assert_eq!(
        (columns[4], columns[8], columns[10]),
        ("310", "active", "active"),
        "{patient:?} must be an active employee with an active card: {row}"
    );
    let person_type = columns[5];
    let today = yitong_core::today().to_string();
    let policies = std::fs::read_to_string(dir.join("policies.csv")).expect("policies.csv");
    let policy = policies
        .lines()
        .filter(|row| row.starts_with(&format!("{},310,{person_type},3,", patient.city)))
        .filter(|row| {
            row.split(',')
                .nth(7)
                .is_some_and(|from| from <= today.as_str())
        })
        .max_by_key(|row| row.split(',').nth(7).map(str::to_owned))
        .expect("the insured city has a policy for the patient");
    let policy: Vec<&str> = policy.split(',').collect();
    Seeded {
        balance_fen: fen(columns[7]),
        annual_cap_fen: fen(policy[6]),
        deductible_fen: fen(policy[4]),
        person_type: if person_type == "retired" { 2 } else { 1 },
    }
}

/// The pause before each patient's policy change during the run, in ms.
const POLICY_CHANGE_GAP_MS: std::ops::Range<u64> = 100..2_000;

/// Out of a hundred, how often a visit is an outpatient chronic-disease visit (medical type 14)
/// for a disease drawn from the seeded catalog.
const DISEASE_VISIT_PERCENT: u32 = 35;

/// The disease catalog's codes (`seeds/diseases.csv`): the five diseases a type-14 visit draws
/// from and the bureaus certify.
static DISEASES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let dir = yitong_sandbox::seeds_dir();
    let catalog = std::fs::read_to_string(dir.join("diseases.csv")).expect("diseases.csv");
    let codes: Vec<String> = catalog
        .lines()
        .filter(|row| !row.starts_with('#'))
        .skip(1)
        .filter_map(|row| row.split(',').next())
        .map(str::to_owned)
        .collect();
    assert!(!codes.is_empty(), "the disease catalog is seeded");
    codes
});

/// The insured city's disease policy for a patient (an employee) as the seeds write it:
/// the disease's own deductible and annual quota, in fen.
fn disease_policy(patient: Patient, disease: &str) -> (i64, i64) {
    let dir = yitong_sandbox::seeds_dir();
    let policies =
        std::fs::read_to_string(dir.join("disease_policies.csv")).expect("disease_policies.csv");
    let row = policies
        .lines()
        .find(|row| row.starts_with(&format!("{},{disease},310,", patient.city)))
        .unwrap_or_else(|| panic!("{} has a policy for {disease}", patient.city));
    let columns: Vec<&str> = row.split(',').collect();
    (fen(columns[3]), fen(columns[5]))
}

// ---- Calls and what they got -----------------------------------------------------------------

/// One HIS call, as sent (and sent again, unchanged, as a replay).
#[derive(Debug, Clone)]
enum Call {
    Register(RegisterVisitRequest),
    Upload(UploadFeeLinesRequest),
    PreSettle(PreSettleRequest),
    Settle(SettleRequest),
    Cancel(CancelSettlementRequest),
    Reverse(ReverseByMessageIdRequest),
}

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Register(RegisterVisitResponse),
    Upload(UploadFeeLinesResponse),
    PreSettle(PreSettleResponse),
    Settle(SettleResponse),
    Cancel(CancelSettlementResponse),
    Reverse(ReverseByMessageIdResponse),
}

fn timed<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}

impl Call {
    fn rpc(&self) -> &'static str {
        match self {
            Call::Register(_) => "RegisterVisit",
            Call::Upload(_) => "UploadFeeLines",
            Call::PreSettle(_) => "PreSettle",
            Call::Settle(_) => "Settle",
            Call::Cancel(_) => "CancelSettlement",
            Call::Reverse(_) => "ReverseByMessageId",
        }
    }

    fn message_id(&self) -> &str {
        match self {
            Call::Register(request) => &request.message_id,
            Call::Upload(request) => &request.message_id,
            Call::PreSettle(request) => &request.message_id,
            Call::Settle(request) => &request.message_id,
            Call::Cancel(request) => &request.message_id,
            Call::Reverse(request) => &request.message_id,
        }
    }

    async fn send(
        &self,
        his: &mut SettlementServiceClient<Channel>,
        deadline: Duration,
    ) -> Result<Reply, tonic::Status> {
        Ok(match self {
            Call::Register(request) => Reply::Register(
                his.register_visit(timed(request.clone(), deadline))
                    .await?
                    .into_inner(),
            ),
            Call::Upload(request) => Reply::Upload(
                his.upload_fee_lines(timed(request.clone(), deadline))
                    .await?
                    .into_inner(),
            ),
            Call::PreSettle(request) => Reply::PreSettle(
                his.pre_settle(timed(request.clone(), deadline))
                    .await?
                    .into_inner(),
            ),
            Call::Settle(request) => Reply::Settle(
                his.settle(timed(request.clone(), deadline))
                    .await?
                    .into_inner(),
            ),
            Call::Cancel(request) => Reply::Cancel(
                his.cancel_settlement(timed(request.clone(), deadline))
                    .await?
                    .into_inner(),
            ),
            Call::Reverse(request) => Reply::Reverse(
                his.reverse_by_message_id(timed(request.clone(), deadline))
                    .await?
                    .into_inner(),
            ),
        })
    }
}

// Answers are kept once per call for the checker; boxing the replies would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Ok(Reply),
    Failed {
        code: Code,
        /// The google.rpc.ErrorInfo reason of a business refusal; empty otherwise.
        reason: String,
        message: String,
    },
}

impl Answer {
    fn of(result: Result<Reply, tonic::Status>) -> Answer {
        match result {
            Ok(reply) => Answer::Ok(reply),
            Err(status) => Answer::Failed {
                code: status.code(),
                reason: status
                    .get_details_error_info()
                    .map(|info| info.reason)
                    .unwrap_or_default(),
                message: status.message().to_owned(),
            },
        }
    }

    fn reason(&self) -> &str {
        match self {
            Answer::Ok(_) => "",
            Answer::Failed { reason, .. } => reason,
        }
    }

    fn code(&self) -> Code {
        match self {
            Answer::Ok(_) => Code::Ok,
            Answer::Failed { code, .. } => *code,
        }
    }

    /// An answer an HIS sends the same call again after: no answer at all (a server down, a
    /// deadline passed, a call shed, a connection broken) or "still in progress".
    fn transient(&self) -> bool {
        matches!(
            self.code(),
            Code::Unavailable
                | Code::Aborted
                | Code::DeadlineExceeded
                | Code::ResourceExhausted
                | Code::Cancelled
                | Code::Unknown
        ) || self.reason() == "SETTLEMENT_IN_PROGRESS"
            || self.broken_connection()
    }

    /// The client's own INTERNAL for an HTTP/2 stream reset under it (tonic maps h2's
    /// PROTOCOL_ERROR and INTERNAL_ERROR resets to it): the connection broke, the server did not
    /// answer. A handler's INTERNAL says "internal error".
    fn broken_connection(&self) -> bool {
        matches!(self, Answer::Failed { code: Code::Internal, message, .. }
            if message.starts_with("h2 protocol error"))
    }

    fn short(&self) -> String {
        let settlement = |settlement: &Option<Settlement>| match settlement {
            Some(settlement) => format!(
                "{} {:?}",
                settlement.settlement_id,
                SettlementStatus::try_from(settlement.status).unwrap_or_default()
            ),
            None => "no settlement".into(),
        };
        match self {
            Answer::Ok(Reply::Settle(reply)) => format!("OK {}", settlement(&reply.settlement)),
            Answer::Ok(Reply::Cancel(reply)) => format!("OK {}", settlement(&reply.settlement)),
            Answer::Ok(Reply::Reverse(reply)) => format!(
                "OK {:?} {}",
                ReversalOutcome::try_from(reply.outcome).unwrap_or_default(),
                settlement(&reply.settlement)
            ),
            Answer::Ok(_) => "OK".into(),
            Answer::Failed {
                code,
                reason,
                message,
            } => format!("{code:?} {reason} ({message})"),
        }
    }
}

/// How an HIS waits for one call: the first attempt's deadline, and how many attempts it makes
/// before it gives up (one: the counter walked away).
#[derive(Debug, Clone, Copy)]
struct Patience {
    deadline: Duration,
    attempts: u32,
}

impl Patience {
    const FULL: Patience = Patience {
        deadline: CALL_DEADLINE,
        attempts: ATTEMPTS_MAX,
    };

    /// A short deadline `short` times in a hundred, a single attempt `abandon` times.
    fn draw(rng: &mut ChaCha8Rng, short: u32, abandon: u32) -> Patience {
        let deadline = if percent(rng, short) {
            Duration::from_millis(rng.random_range(SHORT_DEADLINE_MS))
        } else {
            CALL_DEADLINE
        };
        let attempts = if percent(rng, abandon) {
            1
        } else {
            ATTEMPTS_MAX
        };
        Patience { deadline, attempts }
    }
}

/// One call the HIS made and the answer it got. `sent` and `answered` are ticks of one clock
/// for the whole run, so "sent after that answer arrived" is `sent > answered`.
#[derive(Debug, Clone)]
struct Exchange {
    city: &'static str,
    rpc: &'static str,
    message_id: String,
    /// For a reversal, the Settle's message id it reverses.
    original_message_id: String,
    sent: u64,
    answered: u64,
    /// How long the HIS waited for the answer.
    took: Duration,
    answer: Answer,
}

// ---- The HIS side ----------------------------------------------------------------------------

/// Everything the HIS workers share: a client per treatment city's level-3 hospital and the
/// record of every call.
struct Torture {
    his: BTreeMap<&'static str, SettlementServiceClient<Channel>>,
    /// Calls to make; a visit under way when they run out is finished.
    ops_max: usize,
    /// Calls made so far.
    ops: AtomicUsize,
    /// When the schedule began: a long run says how far it has come every [`PROGRESS_EVERY`]
    /// calls.
    started: Instant,
    /// Visits (or bursts) begun so far: each one's number seeds its choices.
    flows: AtomicUsize,
    /// The clock of [`Exchange::sent`] and [`Exchange::answered`].
    clock: AtomicU64,
    exchanges: Mutex<Vec<Exchange>>,
}

impl Torture {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// Sends `call` once and notes what it got.
    async fn once(&self, city: &'static str, call: &Call, deadline: Duration) -> Answer {
        let made = self.ops.fetch_add(1, Ordering::Relaxed) + 1;
        if made.is_multiple_of(PROGRESS_EVERY) {
            eprintln!(
                "torture: {made} of {} calls after {:?}",
                self.ops_max,
                self.started.elapsed()
            );
        }
        let mut his = self.his[city].clone();
        let sent = self.tick();
        let clock = Instant::now();
        let answer = Answer::of(call.send(&mut his, deadline).await);
        let took = clock.elapsed();
        let answered = self.tick();
        let original_message_id = match call {
            Call::Reverse(request) => request.original_message_id.clone(),
            _ => String::new(),
        };
        self.exchanges.lock().expect("exchanges").push(Exchange {
            city,
            rpc: call.rpc(),
            message_id: call.message_id().to_owned(),
            original_message_id,
            sent,
            answered,
            took,
            answer: answer.clone(),
        });
        answer
    }

    /// Sends `call` as an HIS does until the answer is not transient, under the same message id,
    /// at most `patience.attempts` times; the first attempt under `patience.deadline`.
    async fn until_answered(&self, city: &'static str, call: &Call, patience: Patience) -> Answer {
        let mut answer = self.once(city, call, patience.deadline).await;
        for attempt in 1..patience.attempts {
            if !answer.transient() {
                break;
            }
            let pause_ms = 50 * u64::from(attempt.min(6));
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            answer = self.once(city, call, CALL_DEADLINE).await;
        }
        answer
    }

    /// One step of a visit as a hurried, impatient HIS makes it: sometimes under a short
    /// deadline, sometimes sent once and abandoned, sometimes sent twice at once, sometimes noted
    /// to be sent again once the visit is over. The answer that counts is the first call's, or
    /// the replay's when only it got one.
    async fn step(
        &self,
        city: &'static str,
        call: &Call,
        rng: &mut ChaCha8Rng,
        later: &mut Vec<(&'static str, Call)>,
    ) -> Answer {
        let patience = Patience::draw(rng, SHORT_DEADLINE_PERCENT, ABANDON_PERCENT);
        if percent(rng, LATER_REPLAY_PERCENT) {
            later.push((city, call.clone()));
        }
        if !percent(rng, CONCURRENT_REPLAY_PERCENT) {
            return self.until_answered(city, call, patience).await;
        }
        let pause = Duration::from_millis(rng.random_range(0..=30));
        let (first, replay) = tokio::join!(self.until_answered(city, call, patience), async {
            tokio::time::sleep(pause).await;
            self.once(city, call, CALL_DEADLINE).await
        });
        match (&first, &replay) {
            (Answer::Failed { .. }, Answer::Ok(_)) => replay,
            _ => first,
        }
    }

    /// Visits until the operations run out.
    async fn work(self: Arc<Self>, seed: u64) {
        while self.ops.load(Ordering::Relaxed) < self.ops_max {
            let flow = self.flows.fetch_add(1, Ordering::Relaxed) as u64;
            let mut rng =
                ChaCha8Rng::seed_from_u64(seed ^ flow.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let patient = PATIENTS[rng.random_range(0..PATIENTS.len())];
            if !percent(&mut rng, BURST_PERCENT) {
                let city = PILOT_CITIES[rng.random_range(0..PILOT_CITIES.len())];
                self.visit(flow.to_string(), patient, city, &mut rng, None)
                    .await;
                continue;
            }
            // Visits of one patient at several hospitals at once, their first Settles sent
            // together: they race for the same personal account and the same annual cap.
            let size = rng.random_range(2..=BURST_MAX);
            let barrier = Arc::new(Barrier::new(size));
            let mut visits = JoinSet::new();
            for index in 0..size {
                let city = PILOT_CITIES[rng.random_range(0..PILOT_CITIES.len())];
                let mut rng = ChaCha8Rng::seed_from_u64(rng.random());
                let (torture, barrier) = (self.clone(), barrier.clone());
                visits.spawn(async move {
                    let tag = format!("{flow}-{index}");
                    torture
                        .visit(tag, patient, city, &mut rng, Some(barrier))
                        .await;
                });
            }
            while let Some(done) = visits.join_next().await {
                done.expect("a visit");
            }
        }
    }

    /// One visit: register, upload, maybe pre-settle, settle (again after a void or a
    /// reversal), maybe cancel or reverse and settle again; then the replays noted on the way.
    /// A visit of a burst waits for the others at `barrier` before its first Settle.
    async fn visit(
        &self,
        tag: String,
        patient: Patient,
        city: &'static str,
        rng: &mut ChaCha8Rng,
        barrier: Option<Arc<Barrier>>,
    ) {
        let mut later = Vec::new();
        // A chronic-disease visit names its disease; whether the patient is certified for it
        // there today is the bureaus' race (`certify_and_cancel`).
        let disease = percent(rng, DISEASE_VISIT_PERCENT)
            .then(|| DISEASES[rng.random_range(0..DISEASES.len())].as_str());
        let opened = self
            .open(&tag, patient, city, disease, rng, &mut later)
            .await;
        if let Some(barrier) = barrier {
            // Together, then a little apart: a Settle that reads the account while another
            // one's completion moves it is the race to find, and it needs the two staggered.
            barrier.wait().await;
            let stagger = rng.random_range(BURST_STAGGER_MS);
            tokio::time::sleep(Duration::from_millis(stagger)).await;
        }
        if let Some((visit, total)) = opened {
            self.settle_visit(&tag, patient, city, &visit, &total, rng, &mut later)
                .await;
        }
        for (city, call) in later {
            self.once(city, &call, CALL_DEADLINE).await;
        }
    }

    /// Registers a visit (of `disease`, if any), uploads its lines and maybe pre-settles it:
    /// the visit and its total.
    async fn open(
        &self,
        tag: &str,
        patient: Patient,
        city: &'static str,
        disease: Option<&str>,
        rng: &mut ChaCha8Rng,
        later: &mut Vec<(&'static str, Call)>,
    ) -> Option<(Visit, String)> {
        let register = Call::Register(register_request(
            &format!("R-{tag}"),
            city,
            patient,
            disease,
        ));
        let Answer::Ok(Reply::Register(RegisterVisitResponse { visit: Some(visit) })) =
            self.step(city, &register, rng, later).await
        else {
            return None;
        };
        let (lines, total_fen) = random_lines(rng);
        let upload = Call::Upload(upload_request(&format!("U-{tag}"), &visit, lines));
        if !matches!(self.step(city, &upload, rng, later).await, Answer::Ok(_)) {
            return None;
        }
        let total = yuan(total_fen);
        for quote in 0..rng.random_range(0..=2) {
            let message_id = format!("P-{tag}-{quote}");
            let pre = Call::PreSettle(pre_settle_request(&message_id, &visit, patient, &total));
            self.step(city, &pre, rng, later).await;
        }
        Some((visit, total))
    }

    /// Settles an open visit, then maybe cancels or reverses it and settles it again.
    #[allow(clippy::too_many_arguments)]
    async fn settle_visit(
        &self,
        tag: &str,
        patient: Patient,
        city: &'static str,
        visit: &Visit,
        total: &str,
        rng: &mut ChaCha8Rng,
        later: &mut Vec<(&'static str, Call)>,
    ) {
        let mut serial = 0;
        for _ in 0..SETTLES_PER_VISIT_MAX {
            let Some((message_id, settlement)) = self
                .settle(tag, &mut serial, city, visit, patient, total, rng, later)
                .await
            else {
                return;
            };
            let undo = rng.random_range(0..100);
            let undone = if undo < CANCEL_PERCENT {
                // A cancellation the node voided is asked for again under a new message id.
                let mut answer = None;
                for attempt in 0..CANCEL_IDS_MAX {
                    let message_id = format!("C-{tag}-{serial}-{attempt}");
                    let cancel = Call::Cancel(cancel_request(&message_id, &settlement));
                    let answered = self.step(city, &cancel, rng, later).await;
                    let voided = answered.reason() == "CANCELLATION_VOIDED";
                    answer = Some(answered);
                    if !voided {
                        break;
                    }
                }
                answer.expect("at least one cancellation was asked for")
            } else if undo < CANCEL_PERCENT + REVERSE_AFTER_PERCENT {
                // The HIS never heard the Settle's answer and reverses it after it took effect.
                let reverse =
                    reverse_request(&format!("X-{tag}-{serial}-after"), &message_id, city);
                self.step(city, &Call::Reverse(reverse), rng, later).await
            } else {
                return;
            };
            if !matches!(undone, Answer::Ok(_)) {
                return;
            }
        }
    }

    /// Settles `visit` as an HIS does: the same message id again while the answer is transient,
    /// a new one after SETTLEMENT_VOIDED, and a reversal when no answer ever came. Sometimes the
    /// HIS gives up at once and reverses the Settle while it may still be running. The
    /// settlement and its message id, once one was answered OK.
    #[allow(clippy::too_many_arguments)]
    async fn settle(
        &self,
        tag: &str,
        serial: &mut u32,
        city: &'static str,
        visit: &Visit,
        patient: Patient,
        total: &str,
        rng: &mut ChaCha8Rng,
        later: &mut Vec<(&'static str, Call)>,
    ) -> Option<(String, Settlement)> {
        for _ in 0..SETTLE_IDS_MAX {
            *serial += 1;
            let message_id = format!("S-{tag}-{serial}");
            let call = Call::Settle(settle_request(&message_id, visit, patient, total));
            let reverse = Call::Reverse(reverse_request(
                &format!("X-{tag}-{serial}"),
                &message_id,
                city,
            ));
            if percent(rng, RACING_REVERSAL_PERCENT) {
                let deadline = Duration::from_millis(rng.random_range(SHORT_DEADLINE_MS));
                let pause = Duration::from_millis(rng.random_range(0..=100));
                let late = percent(rng, 50);
                // The reversal may be hurried or abandoned too: its void then falls to another
                // actor (the HIS's next try, a sweep), which must send the same void.
                let patience = Patience::draw(rng, RACING_SHORT_PERCENT, RACING_ABANDON_PERCENT);
                let (_, reversed) = tokio::join!(self.once(city, &call, deadline), async {
                    tokio::time::sleep(pause).await;
                    self.until_answered(city, &reverse, patience).await
                });
                if late {
                    // The Settle arrives once more, late: refused if its id is dead.
                    self.once(city, &call, CALL_DEADLINE).await;
                }
                match reversed {
                    Answer::Ok(_) => continue,
                    _ => return None,
                }
            }
            match self.step(city, &call, rng, later).await {
                Answer::Ok(Reply::Settle(SettleResponse {
                    settlement: Some(settlement),
                })) => return Some((message_id, settlement)),
                answer if answer.reason() == "SETTLEMENT_VOIDED" => continue,
                answer if answer.transient() => {
                    // No answer however often it asked: the HIS reverses the Settle.
                    match self.until_answered(city, &reverse, Patience::FULL).await {
                        Answer::Ok(_) => continue,
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        None
    }
}

/// An ordinary outpatient visit, or a chronic-disease one (medical type 14) of `disease`.
fn register_request(
    message_id: &str,
    city: &str,
    patient: Patient,
    disease: Option<&str>,
) -> RegisterVisitRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    RegisterVisitRequest {
        message_id: message_id.into(),
        person_no: patient.person_no(),
        credential: card(patient.city, patient.n),
        insurance_type: InsuranceType::Employee as i32,
        institution_code: hospital(city),
        medical_type: match disease {
            Some(_) => MedicalType::ChronicDisease,
            None => MedicalType::Outpatient,
        } as i32,
        began_at: Some(prost_types::Timestamp {
            seconds: now as i64 - 60,
            nanos: 0,
        }),
        department_code: "0301".into(),
        department_name: "内科".into(),
        doctor_code: "D001".into(),
        doctor_name: "王医生".into(),
        his_visit_no: format!("HIS-{message_id}"),
        diagnoses: vec![],
        operator_id: "op1".into(),
        disease_code: disease.unwrap_or_default().into(),
    }
}

/// An examination above every city's price cap, four to sixteen CT scans and one to four packs
/// of a grade-B drug: 636 to 2,484 yuan, most of it in scope, so the deductible goes on the first
/// settlement and the cap comes near after a handful. With the total in fen.
fn random_lines(rng: &mut ChaCha8Rng) -> (Vec<FeeLine>, i64) {
    let scans: i64 = rng.random_range(4..=16);
    let packs: i64 = rng.random_range(1..=4);
    let lines = vec![
        line("1", "001102000010000", "1", "20.00", "20.00"),
        line(
            "2",
            "002103000010000",
            &scans.to_string(),
            "150.00",
            &yuan(scans * 15_000),
        ),
        line(
            "3",
            "ZA01AAA001A002000100101",
            &packs.to_string(),
            "16.00",
            &yuan(packs * 1_600),
        ),
    ];
    (lines, 2_000 + scans * 15_000 + packs * 1_600)
}

fn pre_settle_request(
    message_id: &str,
    visit: &Visit,
    patient: Patient,
    total: &str,
) -> PreSettleRequest {
    PreSettleRequest {
        message_id: message_id.into(),
        visit_id: visit.visit_id.clone(),
        person_no: visit.person_no.clone(),
        credential: card(patient.city, patient.n),
        insurance_type: InsuranceType::Employee as i32,
        total_amount: total.into(),
        use_personal_account: true,
        institution_code: visit.institution_code.clone(),
        operator_id: "op1".into(),
    }
}

fn settle_request(message_id: &str, visit: &Visit, patient: Patient, total: &str) -> SettleRequest {
    SettleRequest {
        message_id: message_id.into(),
        visit_id: visit.visit_id.clone(),
        person_no: visit.person_no.clone(),
        credential: card(patient.city, patient.n),
        insurance_type: InsuranceType::Employee as i32,
        total_amount: total.into(),
        use_personal_account: true,
        institution_code: visit.institution_code.clone(),
        operator_id: "op1".into(),
    }
}

fn reverse_request(message_id: &str, original: &str, city: &str) -> ReverseByMessageIdRequest {
    ReverseByMessageIdRequest {
        message_id: message_id.into(),
        original_message_id: original.into(),
        original_transaction: ReversibleTransaction::Settle as i32,
        institution_code: hospital(city),
        reason: "no answer at the counter".into(),
        operator_id: "op1".into(),
    }
}

// ---- Faults ----------------------------------------------------------------------------------

fn city_owner(city: &str) -> Owner {
    Owner::Pool(PoolCode::parse(city).expect("a pilot city"))
}

/// Aborts a server now and then and restarts it after a short outage, until `stop`: a city's
/// settlement server (its treatment side and its benefit service), the ledger, or a city's
/// identity. Returns what it did, one line per outage.
async fn inject_faults(net: &Sandbox, mut rng: ChaCha8Rng, stop: &AtomicBool) -> Vec<String> {
    let mut faults = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(FAULT_GAP_MS))).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let city = PILOT_CITIES[rng.random_range(0..PILOT_CITIES.len())];
        let (owner, service) = match rng.random_range(0..100) {
            0..45 => (city_owner(city), Service::Settlement),
            45..75 => (Owner::ClearingHouse, Service::Ledger),
            _ => (city_owner(city), Service::Identity),
        };
        let outage = Duration::from_millis(rng.random_range(OUTAGE_MS));
        abort(net, owner, service).await;
        tokio::time::sleep(outage).await;
        net.restart_server(owner, service).await;
        faults.push(format!("{owner} {service} down {} ms", outage.as_millis()));
    }
    faults
}

/// Aborts a server and waits until its port is free again. The abort takes effect when the
/// runtime next polls the server's task, so a restart right after it may find the old listener
/// still bound (`Sandbox::restart_server` of a running server fails with AddrInUse).
async fn abort(net: &Sandbox, owner: Owner, service: Service) {
    net.abort_server(owner, service);
    let url = net.endpoint(owner, service);
    let address = url.trim_start_matches("http://");
    for _ in 0..PORT_WAITS_MAX {
        if std::net::TcpListener::bind(address).is_ok() {
            return;
        }
        tokio::time::sleep(PORT_WAIT).await;
    }
    panic!("{owner} {service} still holds {address} after it was aborted");
}

/// Restarts every server, then sweeps every city with a node of the test's own on the city's
/// store (no grace period: no HIS call is in flight any more) until no settlement is pending,
/// recorded or voiding anywhere, or [`SWEEP_TIME_MAX`] passed. Returns what each city's last
/// sweeps reported that was not empty, or failed.
async fn quiesce(net: &Sandbox) -> Vec<String> {
    let endpoints: Vec<(Owner, Service)> = net
        .endpoints()
        .iter()
        .map(|endpoint| (endpoint.owner, endpoint.service))
        .collect();
    for (owner, service) in endpoints {
        abort(net, owner, service).await;
        net.restart_server(owner, service).await;
    }
    let mut nodes = Vec::new();
    for city in PILOT_CITIES {
        let owner = city_owner(city);
        let store = net.store(owner, Service::Settlement).await;
        let node = SettlementNode::new(
            PoolCode::parse(city).expect("a pilot city"),
            store,
            Arc::new(net.network().clone()),
            &net.peer_access(owner),
        )
        .expect("a sweeping node")
        .with_options(TreatmentOptions {
            pending_grace_ms: 0,
            ..TreatmentOptions::default()
        });
        nodes.push((city, node));
    }
    let started = Instant::now();
    let mut reports: BTreeMap<&str, String> = BTreeMap::new();
    loop {
        for (city, node) in &nodes {
            match node.recover().await {
                Ok(report) if report.is_empty() => {}
                Ok(report) => {
                    reports.insert(city, format!("{report:?}"));
                }
                Err(error) => {
                    reports.insert(city, format!("sweep failed: {error}"));
                }
            }
        }
        let mut in_doubt = 0;
        for (_, node) in &nodes {
            in_doubt += treatment_rows(node.store(), "")
                .await
                .iter()
                .filter(|row| !matches!(row.phase.as_str(), "completed" | "voided"))
                .count();
        }
        if in_doubt == 0 || started.elapsed() > SWEEP_TIME_MAX {
            break;
        }
        tokio::time::sleep(SWEEP_PAUSE).await;
    }
    for (_, node) in nodes {
        node.store().close().await;
    }
    reports
        .into_iter()
        .map(|(city, report)| format!("{city}: {report}"))
        .collect()
}

// ---- The stores, as plain SQL reads them ------------------------------------------------------

/// A settlement or cancellation at its treatment city (`settlements`).
#[derive(Debug, Clone)]
struct TreatmentRow {
    city: &'static str,
    settlement_id: String,
    /// "settlement" or "cancellation".
    kind: String,
    original_settlement_id: Option<String>,
    visit_id: String,
    insured_city: String,
    message_id: String,
    /// "pending", "recorded", "completed", "voiding" or "voided".
    phase: String,
    fund_pay_fen: i64,
    account_pay_fen: i64,
    cancelled_by: Option<String>,
    last_error: String,
}

async fn treatment_rows(store: &Store, city: &'static str) -> Vec<TreatmentRow> {
    type Columns = (
        String,
        String,
        Option<String>,
        String,
        String,
        String,
        String,
        String,
        i64,
        i64,
        Option<String>,
        String,
    );
    let rows: Vec<Columns> = sqlx::query_as(
        "SELECT settlement_id, kind, original_settlement_id, visit_id, insured_city, person_no, \
         message_id, phase, fund_pay_fen, account_pay_fen, cancelled_by, last_error FROM settlements",
    )
    .fetch_all(store.pool())
    .await
    .expect("settlements read");
    rows.into_iter()
        .map(|row| TreatmentRow {
            city,
            settlement_id: row.0,
            kind: row.1,
            original_settlement_id: row.2,
            visit_id: row.3,
            insured_city: row.4,
            message_id: row.6,
            phase: row.7,
            fund_pay_fen: row.8,
            account_pay_fen: row.9,
            cancelled_by: row.10,
            last_error: row.11,
        })
        .collect()
}

/// A reservation at the insured city (`reservations`).
#[derive(Debug, Clone)]
struct ReservationRow {
    insured_city: &'static str,
    /// "tombstone", "settlement" or "cancellation".
    kind: String,
    /// "reserved", "posted" or "voided".
    status: String,
    person_no: String,
    benefit_year: i64,
    fund_pay_fen: i64,
    account_pay_fen: i64,
    deductible_applied_fen: i64,
    account_moved: i64,
    expires_at_ms: i64,
    /// The disease whose totals it moves; empty for the ordinary outpatient totals.
    disease_code: String,
    reserved_at_ms: i64,
    institution_code: String,
    visit_id: String,
    /// The split as reserved (none for a tombstone).
    split: Option<SettlementSplit>,
}

/// A certification as the insured city's store holds it (`certifications`).
#[derive(Debug, Clone)]
struct CertificationRow {
    insured_city: &'static str,
    person_no: String,
    disease_code: String,
    valid_from: String,
    /// Empty for open-ended.
    valid_until: String,
    /// Comma-separated; empty for any networked institution.
    institution_codes: String,
    /// "certified" or "cancelled".
    status: String,
    message_id: String,
    certified_at_ms: i64,
    cancelled_at_ms: Option<i64>,
}

impl CertificationRow {
    /// Whether it let a reservation made at `at_ms` for `institution` on `date` price under
    /// the disease: made before, not cancelled before, in force on the date, there.
    fn covered(&self, at_ms: i64, institution: &str, date: &str) -> bool {
        self.certified_at_ms <= at_ms
            && self
                .cancelled_at_ms
                .is_none_or(|cancelled| cancelled >= at_ms)
            && self.valid_from.as_str() <= date
            && (self.valid_until.is_empty() || self.valid_until.as_str() >= date)
            && (self.institution_codes.is_empty()
                || self
                    .institution_codes
                    .split(',')
                    .any(|code| code == institution))
    }
}

/// One ledger transfer of a settlement id, from its journal entries.
#[derive(Debug, Clone, Default)]
struct TransferRow {
    settlement_id: String,
    code: i64,
    amount_fen: i64,
    fund_pay_fen: i64,
    account_pay_fen: i64,
    debit_account_id: String,
    credit_account_id: String,
    /// Created pending (else created posted).
    created_pending: bool,
    /// The event that resolved a pending transfer: "posted", "voided" or "expired".
    resolution: Option<String>,
}

impl TransferRow {
    /// Whether the transfer moved money for good. A zero amount counts: a settlement past the
    /// cap with an empty account is booked for 0.00 all the same.
    fn posted(&self) -> bool {
        self.resolution.as_deref() == Some("posted")
            || (self.resolution.is_none() && !self.created_pending)
    }

    fn pending(&self) -> bool {
        self.resolution.is_none() && self.created_pending
    }
}

/// Everything the checker reads.
#[derive(Debug, Default)]
struct Stores {
    treatment: BTreeMap<String, TreatmentRow>,
    /// Visits: id -> (status word, the settlement id it holds).
    visits: BTreeMap<String, (String, Option<String>)>,
    reservations: BTreeMap<String, ReservationRow>,
    /// Per insured city's store: (person, year) -> (deductible used, fund paid).
    benefit_years: BTreeMap<(String, i64), (i64, i64)>,
    /// The same per disease: (person, year, disease) -> (deductible used, fund paid).
    disease_years: BTreeMap<(String, i64, String), (i64, i64)>,
    /// Visits' service dates, by visit id.
    service_dates: BTreeMap<String, String>,
    /// Every insured city's certifications, by certification id.
    certifications: BTreeMap<String, CertificationRow>,
    /// Ledger transfers of SETTLEMENT and CANCELLATION, by transfer id.
    transfers: BTreeMap<String, TransferRow>,
    /// Account id -> (debits pending, debits posted, credits pending, credits posted).
    accounts: BTreeMap<String, (i64, i64, i64, i64)>,
    /// Identity's account movements: settlement id -> (person, amount).
    movements: BTreeMap<String, (String, i64)>,
    /// Each patient's account balance now.
    balances: BTreeMap<String, i64>,
    journal_problem: Option<String>,
}

/// A split as a reservation stores it (protobuf, base64).
fn decode_split(text: &str) -> SettlementSplit {
    use base64::Engine as _;
    use prost::Message as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("a stored split is base64");
    SettlementSplit::decode(bytes.as_slice()).expect("a stored split decodes")
}

async fn read_stores(net: &Sandbox) -> Stores {
    let mut stores = Stores::default();
    for city in PILOT_CITIES {
        let store = net.store(city_owner(city), Service::Settlement).await;
        for row in treatment_rows(&store, city).await {
            stores.treatment.insert(row.settlement_id.clone(), row);
        }
        let visits: Vec<(String, String, Option<String>, String)> =
            sqlx::query_as("SELECT visit_id, status, settlement_id, service_date FROM visits")
                .fetch_all(store.pool())
                .await
                .expect("visits read");
        for (visit_id, status, settlement_id, service_date) in visits {
            stores.service_dates.insert(visit_id.clone(), service_date);
            stores.visits.insert(visit_id, (status, settlement_id));
        }
        type Columns = (
            String,
            String,
            String,
            String,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            String,
            i64,
            String,
            String,
            String,
        );
        let reservations: Vec<Columns> = sqlx::query_as(
            "SELECT settlement_id, kind, status, person_no, benefit_year, \
             fund_pay_fen, account_pay_fen, deductible_applied_fen, account_moved, expires_at_ms, \
             disease_code, reserved_at_ms, institution_code, visit_id, split \
             FROM reservations",
        )
        .fetch_all(store.pool())
        .await
        .expect("reservations read");
        for row in reservations {
            let split = (row.1 != "tombstone").then(|| decode_split(&row.14));
            stores.reservations.insert(
                row.0,
                ReservationRow {
                    insured_city: city,
                    kind: row.1,
                    status: row.2,
                    person_no: row.3,
                    benefit_year: row.4,
                    fund_pay_fen: row.5,
                    account_pay_fen: row.6,
                    deductible_applied_fen: row.7,
                    account_moved: row.8,
                    expires_at_ms: row.9,
                    disease_code: row.10,
                    reserved_at_ms: row.11,
                    institution_code: row.12,
                    visit_id: row.13,
                    split,
                },
            );
        }
        let diseases: Vec<(String, i64, String, i64, i64)> = sqlx::query_as(
            "SELECT person_no, benefit_year, disease_code, deductible_used_fen, fund_paid_fen \
             FROM disease_years",
        )
        .fetch_all(store.pool())
        .await
        .expect("disease years read");
        for (person_no, year, disease, deductible, fund) in diseases {
            stores
                .disease_years
                .insert((person_no, year, disease), (deductible, fund));
        }
        type Certified = (
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            String,
            i64,
            Option<i64>,
        );
        let certifications: Vec<Certified> = sqlx::query_as(
            "SELECT certification_id, person_no, disease_code, valid_from, valid_until, \
             institution_codes, status, message_id, certified_at_ms, cancelled_at_ms \
             FROM certifications",
        )
        .fetch_all(store.pool())
        .await
        .expect("certifications read");
        for row in certifications {
            stores.certifications.insert(
                row.0,
                CertificationRow {
                    insured_city: city,
                    person_no: row.1,
                    disease_code: row.2,
                    valid_from: row.3,
                    valid_until: row.4,
                    institution_codes: row.5,
                    status: row.6,
                    message_id: row.7,
                    certified_at_ms: row.8,
                    cancelled_at_ms: row.9,
                },
            );
        }
        let years: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT person_no, benefit_year, deductible_used_fen, fund_paid_fen FROM benefit_years",
        )
        .fetch_all(store.pool())
        .await
        .expect("benefit years read");
        for (person_no, year, deductible, fund) in years {
            stores
                .benefit_years
                .insert((person_no, year), (deductible, fund));
        }
        store.close().await;

        let identity = net.store(city_owner(city), Service::Identity).await;
        let movements: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT settlement_id, person_no, amount_fen FROM account_movements")
                .fetch_all(identity.pool())
                .await
                .expect("account movements read");
        for (settlement_id, person_no, amount) in movements {
            stores.movements.insert(settlement_id, (person_no, amount));
        }
        for patient in PATIENTS.iter().filter(|patient| patient.city == city) {
            let (balance,): (i64,) =
                sqlx::query_as("SELECT account_balance_fen FROM persons WHERE person_no = $1")
                    .bind(patient.person_no())
                    .fetch_one(identity.pool())
                    .await
                    .expect("the patient's balance read");
            stores.balances.insert(patient.person_no(), balance);
        }
        identity.close().await;
    }

    let ledger = net.ledger_store().await;
    type Entry = (
        String,
        String,
        i64,
        i64,
        i64,
        i64,
        String,
        String,
        String,
        i64,
    );
    let entries: Vec<Entry> = sqlx::query_as(
        "SELECT transfer_id, settlement_id, code, amount_fen, fund_pay_fen, account_pay_fen, \
         debit_account_id, credit_account_id, event, flags \
         FROM journal WHERE code IN (3, 4)",
    )
    .fetch_all(ledger.pool())
    .await
    .expect("journal read");
    for entry in entries {
        let transfer = stores.transfers.entry(entry.0).or_default();
        transfer.settlement_id = entry.1;
        transfer.code = entry.2;
        transfer.amount_fen = entry.3;
        transfer.fund_pay_fen = entry.4;
        transfer.account_pay_fen = entry.5;
        transfer.debit_account_id = entry.6;
        transfer.credit_account_id = entry.7;
        if entry.8 == "created" {
            transfer.created_pending = entry.9 & FLAG_PENDING != 0;
        } else {
            transfer.resolution = Some(entry.8);
        }
    }
    let accounts: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT id, debits_pending_fen, debits_posted_fen, credits_pending_fen, credits_posted_fen \
         FROM accounts",
    )
    .fetch_all(ledger.pool())
    .await
    .expect("accounts read");
    for (id, debits_pending, debits_posted, credits_pending, credits_posted) in accounts {
        stores.accounts.insert(
            id,
            (
                debits_pending,
                debits_posted,
                credits_pending,
                credits_posted,
            ),
        );
    }
    ledger.close().await;

    let verified = net
        .ledger()
        .verify_journal(VerifyJournalRequest { up_to_sequence: 0 })
        .await
        .map(tonic::Response::into_inner);
    stores.journal_problem = match verified {
        Ok(answer) if answer.intact && answer.detail.is_empty() => None,
        Ok(answer) => Some(format!(
            "the journal does not verify: entry {} {}",
            answer.first_altered_sequence, answer.detail
        )),
        Err(status) => Some(format!("VerifyJournal failed: {status:?}")),
    };
    stores
}

// ---- The invariants --------------------------------------------------------------------------

/// Violations, each under the number of the invariant it breaks (`TORTURE.md`).
#[derive(Debug, Default)]
struct Violations(Vec<String>);

impl Violations {
    fn add(&mut self, invariant: u32, text: String) {
        self.0.push(format!("[{invariant}] {text}"));
    }
}

/// The settlement ids the HIS was answered OK for: a Settle's settlement, a cancellation's and
/// a reversal's cancellation. With the answer's fund and account pay, as the HIS was told them.
fn answered_ok(exchanges: &[Exchange]) -> BTreeMap<String, (&'static str, i64, i64)> {
    let mut ids = BTreeMap::new();
    for exchange in exchanges {
        let settlement = match &exchange.answer {
            Answer::Ok(Reply::Settle(reply)) => reply.settlement.as_ref().map(|s| (s, false)),
            Answer::Ok(Reply::Cancel(reply)) => reply.settlement.as_ref().map(|s| (s, true)),
            Answer::Ok(Reply::Reverse(reply)) => reply.settlement.as_ref().map(|s| (s, true)),
            _ => None,
        };
        let Some((settlement, cancelled)) = settlement else {
            continue;
        };
        let (id, split) = match (cancelled, &settlement.cancellation) {
            (false, _) => (settlement.settlement_id.clone(), settlement.split.as_ref()),
            (true, Some(cancellation)) => (
                cancellation.cancellation_id.clone(),
                cancellation.split.as_ref(),
            ),
            (true, None) => continue,
        };
        let (fund, account) = split.map_or((0, 0), |split| {
            (fen(&split.fund_pay), fen(&split.account_pay))
        });
        ids.insert(id, (exchange.rpc, fund, account));
    }
    ids
}

/// Invariant 1: every settlement answered OK is complete in all three places, as answered.
fn check_answered(stores: &Stores, exchanges: &[Exchange], violations: &mut Violations) {
    let mut posted_by_settlement: HashMap<&str, usize> = HashMap::new();
    for transfer in stores.transfers.values().filter(|t| t.posted()) {
        *posted_by_settlement
            .entry(transfer.settlement_id.as_str())
            .or_default() += 1;
    }
    for (id, (rpc, fund, account)) in answered_ok(exchanges) {
        let Some(row) = stores.treatment.get(&id) else {
            violations.add(1, format!("{id} ({rpc} answered OK) has no treatment row"));
            continue;
        };
        if row.phase != "completed" {
            violations.add(
                1,
                format!("{id} ({rpc} answered OK) is {} at {}", row.phase, row.city),
            );
        }
        if (row.fund_pay_fen, row.account_pay_fen) != (fund, account) {
            violations.add(
                1,
                format!(
                    "{id} ({rpc} answered OK) told the HIS fund {fund} account {account}, the record \
                     says {} {}",
                    row.fund_pay_fen, row.account_pay_fen
                ),
            );
        }
        match stores.reservations.get(&id) {
            Some(reservation) if reservation.status == "posted" => {}
            Some(reservation) => violations.add(
                1,
                format!(
                    "{id} ({rpc} answered OK) is {} at the insured city {}",
                    reservation.status, reservation.insured_city
                ),
            ),
            None => violations.add(
                1,
                format!("{id} ({rpc} answered OK) has no reservation at the insured city"),
            ),
        }
        let posted = posted_by_settlement.get(id.as_str()).copied().unwrap_or(0);
        if posted != 1 {
            violations.add(
                1,
                format!("{id} ({rpc} answered OK) has {posted} posted ledger transfers, not one"),
            );
        }
    }
    // A reversal that found the Settle without effect: the Settle never takes effect after it.
    let mut by_message: HashMap<(&str, &str), Vec<&TreatmentRow>> = HashMap::new();
    for row in stores.treatment.values() {
        by_message
            .entry((row.city, row.message_id.as_str()))
            .or_default()
            .push(row);
    }
    for exchange in exchanges {
        let Answer::Ok(Reply::Reverse(reply)) = &exchange.answer else {
            continue;
        };
        if reply.outcome != ReversalOutcome::MessageIdDead as i32 {
            continue;
        }
        let key = (exchange.city, exchange.original_message_id.as_str());
        for row in by_message.get(&key).into_iter().flatten() {
            if row.phase != "voided" {
                violations.add(
                    1,
                    format!(
                        "{} answered MESSAGE_ID_DEAD for {}, whose settlement {} is {} at {}",
                        exchange.message_id,
                        exchange.original_message_id,
                        row.settlement_id,
                        row.phase,
                        row.city
                    ),
                );
            }
        }
    }
}

/// Invariants 2 and 3: nothing in doubt anywhere, and the three places agree to the fen on
/// every settlement id, and the ledger's balances on the sum of them.
fn check_agreement(stores: &Stores, violations: &mut Violations) {
    let mut by_settlement: HashMap<&str, Vec<&TransferRow>> = HashMap::new();
    for transfer in stores.transfers.values() {
        by_settlement
            .entry(transfer.settlement_id.as_str())
            .or_default()
            .push(transfer);
    }
    // Posted sums each account should hold: (debits, credits).
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for row in stores.treatment.values() {
        let id = &row.settlement_id;
        let transfers = by_settlement.get(id.as_str()).cloned().unwrap_or_default();
        let posted: Vec<&&TransferRow> = transfers.iter().filter(|t| t.posted()).collect();
        let reservation = stores.reservations.get(id);
        match row.phase.as_str() {
            "completed" => check_completed(stores, row, &posted, &mut expected, violations),
            "voided" => {
                if reservation.is_some_and(|reservation| reservation.status == "posted") {
                    violations.add(
                        3,
                        format!(
                            "{id} voided at {} is posted at {}",
                            row.city, row.insured_city
                        ),
                    );
                }
                if !posted.is_empty() {
                    violations.add(
                        3,
                        format!("{id} voided at {} is posted in the ledger", row.city),
                    );
                }
            }
            phase => violations.add(
                2,
                format!(
                    "{id} ({}, message id {}) left {phase} at {}: {}",
                    row.kind, row.message_id, row.city, row.last_error
                ),
            ),
        }
    }
    let now = yitong_store::now_ms();
    for (id, reservation) in &stores.reservations {
        if reservation.status == "reserved" {
            let lapsed = if reservation.expires_at_ms <= now {
                " (expired)"
            } else {
                ""
            };
            violations.add(
                2,
                format!(
                    "{id} still reserved at {}{lapsed}",
                    reservation.insured_city
                ),
            );
        }
        if !stores.treatment.contains_key(id) {
            violations.add(
                3,
                format!(
                    "{id} is {} at {} but no treatment city has it",
                    reservation.status, reservation.insured_city
                ),
            );
        }
    }
    for (transfer_id, transfer) in &stores.transfers {
        if transfer.pending() {
            let phase = stores
                .treatment
                .get(&transfer.settlement_id)
                .map_or("unknown", |row| row.phase.as_str());
            violations.add(
                2,
                format!(
                    "ledger transfer {transfer_id} ({} fen) of {} ({phase} at its treatment city) is \
                     still pending",
                    transfer.amount_fen, transfer.settlement_id
                ),
            );
        }
        if !stores.treatment.contains_key(&transfer.settlement_id) {
            violations.add(
                3,
                format!(
                    "ledger transfer {transfer_id} names {}, which no treatment city has",
                    transfer.settlement_id
                ),
            );
        }
    }
    for (id, (debits_pending, debits_posted, credits_pending, credits_posted)) in &stores.accounts {
        if *debits_pending != 0 || *credits_pending != 0 {
            violations.add(
                2,
                format!(
                    "ledger account {id} holds {debits_pending} debits and {credits_pending} credits \
                     pending",
                ),
            );
        }
        let (debits, credits) = expected.get(id).copied().unwrap_or_default();
        if (*debits_posted, *credits_posted) != (debits, credits) {
            violations.add(
                3,
                format!(
                    "ledger account {id} posted debits {debits_posted} credits {credits_posted}; the \
                     completed settlements make {debits} and {credits}"
                ),
            );
        }
    }
    if let Some(problem) = &stores.journal_problem {
        violations.add(3, problem.clone());
    }
    // One live settlement per settled visit, none for an open one.
    let mut live_by_visit: HashMap<&str, Vec<&TreatmentRow>> = HashMap::new();
    for row in stores.treatment.values() {
        let cancelled = row
            .cancelled_by
            .as_ref()
            .and_then(|by| stores.treatment.get(by))
            .is_some_and(|cancellation| cancellation.phase == "completed");
        if row.kind == "settlement" && row.phase == "completed" && !cancelled {
            live_by_visit
                .entry(row.visit_id.as_str())
                .or_default()
                .push(row);
        }
    }
    for (visit_id, (status, holds)) in &stores.visits {
        let live = live_by_visit
            .get(visit_id.as_str())
            .cloned()
            .unwrap_or_default();
        let ok = match status.as_str() {
            "settled" => {
                live.len() == 1 && holds.as_deref() == Some(live[0].settlement_id.as_str())
            }
            _ => live.is_empty(),
        };
        if !ok {
            let ids: Vec<&str> = live.iter().map(|row| row.settlement_id.as_str()).collect();
            violations.add(
                3,
                format!(
                    "visit {visit_id} is {status} (holding {holds:?}) with live settlements {ids:?}"
                ),
            );
        }
    }
}

/// A completed settlement or cancellation: posted at the insured city and once in the ledger,
/// all three to the fen; what it moves is added to the accounts' `expected` posted sums.
fn check_completed(
    stores: &Stores,
    row: &TreatmentRow,
    posted: &[&&TransferRow],
    expected: &mut BTreeMap<String, (i64, i64)>,
    violations: &mut Violations,
) {
    let id = &row.settlement_id;
    let here = (row.fund_pay_fen, row.account_pay_fen);
    match stores.reservations.get(id) {
        None => violations.add(
            3,
            format!(
                "{id} completed at {} has no reservation at {}",
                row.city, row.insured_city
            ),
        ),
        Some(reservation) => {
            if reservation.status != "posted" {
                violations.add(
                    3,
                    format!(
                        "{id} completed at {} is {} at {}",
                        row.city, reservation.status, row.insured_city
                    ),
                );
            }
            let there = (reservation.fund_pay_fen, reservation.account_pay_fen);
            if there != here {
                violations.add(
                    3,
                    format!("{id}: (fund, account) {here:?} at treatment, {there:?} at insured"),
                );
            }
        }
    }
    if posted.len() != 1 {
        violations.add(
            3,
            format!(
                "{id} completed at {} has {} posted ledger transfers, not one",
                row.city,
                posted.len()
            ),
        );
    }
    let pay = (row.fund_pay_fen + row.account_pay_fen).abs();
    let (advances, payer) = accounts_of(row);
    let (code, debit, credit) = if row.kind == "cancellation" {
        (4, payer, advances)
    } else {
        (3, advances, payer)
    };
    let want = (code, debit.as_str(), credit.as_str(), pay, here);
    for transfer in posted {
        let booked = (
            transfer.code,
            transfer.debit_account_id.as_str(),
            transfer.credit_account_id.as_str(),
            transfer.amount_fen,
            (transfer.fund_pay_fen, transfer.account_pay_fen),
        );
        if booked != want {
            violations.add(
                3,
                format!(
                    "{id}: the ledger booked (code, debit, credit, amount, (fund, account)) \
                     {booked:?}, the treatment city recorded {want:?}"
                ),
            );
        }
    }
    expected.entry(debit).or_default().0 += pay;
    expected.entry(credit).or_default().1 += pay;
    if row.kind == "cancellation" {
        check_cancellation(stores, row, violations);
    }
}

/// The advances account and the paying account (obligation or pool) of a row.
fn accounts_of(row: &TreatmentRow) -> (String, String) {
    let advances = format!("{}.advances", row.city);
    let payer = if row.insured_city == row.city {
        format!("{}.pool", row.city)
    } else {
        format!("{}->{}.obligation", row.insured_city, row.city)
    };
    (advances, payer)
}

/// A completed cancellation reverses its original to the fen, and the original names it.
fn check_cancellation(stores: &Stores, row: &TreatmentRow, violations: &mut Violations) {
    let id = &row.settlement_id;
    let Some(original) = row
        .original_settlement_id
        .as_ref()
        .and_then(|original| stores.treatment.get(original))
    else {
        violations.add(3, format!("cancellation {id} has no original settlement"));
        return;
    };
    if original.phase != "completed" || original.cancelled_by.as_deref() != Some(id.as_str()) {
        violations.add(
            3,
            format!(
                "cancellation {id} completed, its original {} is {} and cancelled by {:?}",
                original.settlement_id, original.phase, original.cancelled_by
            ),
        );
    }
    if (row.fund_pay_fen, row.account_pay_fen)
        != (-original.fund_pay_fen, -original.account_pay_fen)
    {
        violations.add(
            3,
            format!(
                "cancellation {id} moves fund {} account {}, its original {} fund {} account {}",
                row.fund_pay_fen,
                row.account_pay_fen,
                original.settlement_id,
                original.fund_pay_fen,
                original.account_pay_fen
            ),
        );
    }
}

/// Invariant 4: the patients' money. No account negative; identity's movements are exactly the
/// posted reservations' account pays; the fund never past the annual cap nor the deductible past
/// the policy's; the yearly totals are the posted reservations' sums.
fn check_money(stores: &Stores, violations: &mut Violations) {
    for patient in PATIENTS {
        let person = patient.person_no();
        let seeds = seeded(patient);
        let posted: Vec<(&String, &ReservationRow)> = stores
            .reservations
            .iter()
            .filter(|(_, r)| r.person_no == person && r.status == "posted" && r.kind != "tombstone")
            .collect();
        // The ordinary outpatient totals only: a chronic-disease reservation moves its
        // disease's (invariant 8), the account is one.
        let mut years: BTreeMap<i64, (i64, i64)> = stores
            .benefit_years
            .keys()
            .filter(|(owner, _)| *owner == person)
            .map(|(_, year)| (*year, (0, 0)))
            .collect();
        let mut account_paid = 0;
        for (id, reservation) in &posted {
            if reservation.disease_code.is_empty() {
                let year = years.entry(reservation.benefit_year).or_default();
                year.0 += reservation.deductible_applied_fen;
                year.1 += reservation.fund_pay_fen;
            }
            account_paid += reservation.account_pay_fen;
            let moved = stores.movements.get(*id).map(|(_, amount)| *amount);
            let want = (reservation.account_pay_fen != 0).then_some(-reservation.account_pay_fen);
            if moved != want || (want.is_some() && reservation.account_moved != 1) {
                violations.add(
                    4,
                    format!(
                        "{person}: {id} posted with account pay {}, identity moved {moved:?} \
                         (account_moved {})",
                        reservation.account_pay_fen, reservation.account_moved
                    ),
                );
            }
        }
        let moved: i64 = stores
            .movements
            .values()
            .filter(|(owner, _)| *owner == person)
            .map(|(_, amount)| amount)
            .sum();
        for (id, (owner, amount)) in &stores.movements {
            let posted = stores
                .reservations
                .get(id)
                .is_some_and(|r| r.status == "posted");
            if *owner == person && !posted {
                violations.add(
                    4,
                    format!("{person}: identity moved {amount} for {id}, which is not posted"),
                );
            }
        }
        if moved != -account_paid {
            violations.add(
                4,
                format!(
                    "{person}: identity's movements sum to {moved}, the posted reservations' account \
                     pays to {account_paid}",
                ),
            );
        }
        let balance = stores.balances.get(&person).copied().unwrap_or_default();
        if balance < 0 || balance != seeds.balance_fen + moved {
            violations.add(
                4,
                format!(
                    "{person}: account balance {balance}, opened with {} and moved {moved}",
                    seeds.balance_fen
                ),
            );
        }
        if account_paid > seeds.balance_fen {
            violations.add(
                4,
                format!(
                    "{person}: the account paid {account_paid} out of {}",
                    seeds.balance_fen
                ),
            );
        }
        for (year, (deductible, fund)) in &years {
            if *fund > seeds.annual_cap_fen {
                violations.add(
                    4,
                    format!(
                        "{person}: the fund paid {fund} in {year}, past the annual cap {}",
                        seeds.annual_cap_fen
                    ),
                );
            }
            if *deductible > seeds.deductible_fen {
                violations.add(
                    4,
                    format!(
                        "{person}: deductible {deductible} applied in {year}, past the policy's {}",
                        seeds.deductible_fen
                    ),
                );
            }
            let kept = stores
                .benefit_years
                .get(&(person.clone(), *year))
                .copied()
                .unwrap_or_default();
            if kept != (*deductible, *fund) {
                violations.add(
                    4,
                    format!(
                        "{person}: benefit_years {year} holds deductible {} fund {}, the posted \
                         reservations sum to {deductible} and {fund}",
                        kept.0, kept.1
                    ),
                );
            }
        }
    }
}

/// What is missing from an OK reply, if anything: an OK must carry what it answers.
fn hollow(reply: &Reply) -> Option<String> {
    let settlement_hollow = |settlement: &Option<Settlement>, cancelled: bool| match settlement {
        None => Some("no settlement".to_owned()),
        Some(settlement) => {
            let Some(split) = settlement.split.as_ref() else {
                return Some("a settlement without its split".into());
            };
            if fen(&split.fund_pay) + fen(&split.account_pay) + fen(&split.cash_pay)
                != fen(&split.total_amount)
            {
                return Some(format!("a split that does not add up: {split:?}"));
            }
            match (cancelled, &settlement.cancellation) {
                (false, _) if settlement.status != SettlementStatus::Settled as i32 => {
                    Some("a settlement not SETTLED".into())
                }
                (true, None) => Some("a cancelled settlement without its cancellation".into()),
                (true, Some(cancellation)) if cancellation.split.is_none() => {
                    Some("a cancellation without its split".into())
                }
                (true, Some(_)) if settlement.status != SettlementStatus::Cancelled as i32 => {
                    Some("a cancelled settlement not CANCELLED".into())
                }
                _ => None,
            }
        }
    };
    match reply {
        Reply::Register(reply) => reply.visit.is_none().then(|| "no visit".into()),
        Reply::Upload(reply) => {
            (reply.visit.is_none() || reply.lines.is_empty()).then(|| "no visit or no lines".into())
        }
        Reply::PreSettle(reply) => reply.split.is_none().then(|| "no split".into()),
        Reply::Settle(reply) => settlement_hollow(&reply.settlement, false),
        Reply::Cancel(reply) => settlement_hollow(&reply.settlement, true),
        Reply::Reverse(reply) => match ReversalOutcome::try_from(reply.outcome) {
            Ok(ReversalOutcome::Cancelled) => settlement_hollow(&reply.settlement, true),
            Ok(ReversalOutcome::MessageIdDead) => reply
                .settlement
                .is_some()
                .then(|| "MESSAGE_ID_DEAD with a settlement".into()),
            _ => Some(format!("outcome {}", reply.outcome)),
        },
    }
}

/// Two OK answers to one message id agree, but for a completion time only one of them knew.
fn same_answer(first: &Reply, other: &Reply) -> bool {
    fn settlement_of(reply: &mut Reply) -> Option<&mut Settlement> {
        match reply {
            Reply::Settle(reply) => reply.settlement.as_mut(),
            Reply::Cancel(reply) => reply.settlement.as_mut(),
            Reply::Reverse(reply) => reply.settlement.as_mut(),
            _ => None,
        }
    }
    let (mut first, mut other) = (first.clone(), other.clone());
    if let (Some(a), Some(b)) = (settlement_of(&mut first), settlement_of(&mut other))
        && (a.completed_at.is_none() || b.completed_at.is_none())
    {
        a.completed_at = None;
        b.completed_at = None;
    }
    first == other
}

fn brief(answer: &Answer) -> String {
    let text = format!("{answer:?}");
    match text.char_indices().nth(400) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

/// Answers an HIS sending valid requests of its own should never get: a server's failure, or a
/// refusal of what is well formed and its own.
const UNEXPECTED: [Code; 7] = [
    Code::Internal,
    Code::DataLoss,
    Code::Unimplemented,
    Code::PermissionDenied,
    Code::Unauthenticated,
    Code::InvalidArgument,
    Code::OutOfRange,
];

/// Invariants 5 and 6: every replay got the first answer; no OK without content; no answer an
/// HIS should never get.
fn check_replies(exchanges: &[Exchange], violations: &mut Violations) {
    let mut by_message: BTreeMap<(&str, &str), Vec<&Exchange>> = BTreeMap::new();
    for exchange in exchanges {
        by_message
            .entry((exchange.rpc, exchange.message_id.as_str()))
            .or_default()
            .push(exchange);
        match exchange.answer.code() {
            Code::AlreadyExists => violations.add(
                5,
                format!(
                    "{} {} answered ALREADY_EXISTS, though the message id was only ever sent with one \
                     content: {}",
                    exchange.rpc, exchange.message_id, exchange.answer.short()
                ),
            ),
            code if UNEXPECTED.contains(&code) && !exchange.answer.broken_connection() => {
                let answer = exchange.answer.short();
                violations.add(
                    6,
                    format!("{} {} answered {answer}", exchange.rpc, exchange.message_id),
                );
            }
            _ => {}
        }
    }
    let mut reversals: HashMap<&str, Vec<&Exchange>> = HashMap::new();
    for exchange in exchanges
        .iter()
        .filter(|e| !e.original_message_id.is_empty())
    {
        reversals
            .entry(exchange.original_message_id.as_str())
            .or_default()
            .push(exchange);
    }
    for ((rpc, message_id), calls) in &by_message {
        // Every call of the message id, and the reversals of a Settle, in the order sent.
        let history = || {
            let mut related: Vec<&Exchange> = calls.clone();
            related.extend(reversals.get(message_id).into_iter().flatten());
            related.sort_by_key(|exchange| exchange.sent);
            let mut text = String::new();
            for exchange in related {
                let _ = write!(
                    text,
                    "\n      {} {} sent #{} answered #{}: {}",
                    exchange.rpc,
                    exchange.message_id,
                    exchange.sent,
                    exchange.answered,
                    exchange.answer.short()
                );
            }
            text
        };
        for call in calls {
            if let Answer::Ok(reply) = &call.answer
                && let Some(missing) = hollow(reply)
            {
                violations.add(
                    5,
                    format!("{rpc} {message_id} answered OK with {missing}{}", history()),
                );
            }
        }
        // A quote is a read: sent again later it quotes the totals as they stand then.
        if *rpc == "PreSettle" {
            continue;
        }
        let oks: Vec<&&Exchange> = calls
            .iter()
            .filter(|c| matches!(c.answer, Answer::Ok(_)))
            .collect();
        if let Some(first) = oks.iter().min_by_key(|c| c.answered) {
            let Answer::Ok(first_reply) = &first.answer else {
                unreachable!("only OK answers are kept")
            };
            for other in &oks {
                let Answer::Ok(reply) = &other.answer else {
                    unreachable!("only OK answers are kept")
                };
                if !same_answer(first_reply, reply) {
                    violations.add(
                        5,
                        format!(
                            "{rpc} {message_id} answered OK twice, differently:\n      {}\n      {}{}",
                            brief(&first.answer),
                            brief(&other.answer),
                            history()
                        ),
                    );
                }
            }
            for other in calls.iter().filter(|c| c.sent > first.answered) {
                if matches!(other.answer, Answer::Failed { .. }) && !other.answer.transient() {
                    violations.add(
                        5,
                        format!(
                            "{rpc} {message_id} was answered OK, then a replay sent after it got \
                             {}{}",
                            other.answer.short(),
                            history()
                        ),
                    );
                }
            }
            if let Some(refusal) = calls
                .iter()
                .find(|c| matches!(c.answer.reason(), "SETTLEMENT_VOIDED" | "MESSAGE_ID_DEAD"))
            {
                violations.add(
                    5,
                    format!(
                        "{rpc} {message_id} was answered OK and also {}{}",
                        refusal.answer.short(),
                        history()
                    ),
                );
            }
        }
    }
    // A Settle a reversal declared dead was never answered OK.
    for exchange in exchanges {
        let Answer::Ok(Reply::Reverse(reply)) = &exchange.answer else {
            continue;
        };
        if reply.outcome != ReversalOutcome::MessageIdDead as i32 {
            continue;
        }
        let settled = by_message
            .get(&("Settle", exchange.original_message_id.as_str()))
            .is_some_and(|calls| calls.iter().any(|c| matches!(c.answer, Answer::Ok(_))));
        if settled {
            violations.add(
                5,
                format!(
                    "{} declared Settle {} dead, which was answered OK",
                    exchange.message_id, exchange.original_message_id
                ),
            );
        }
    }
}

/// Counts of answers by RPC and outcome, each with the longest the HIS waited for one, for the
/// run's summary.
fn tally(exchanges: &[Exchange]) -> String {
    let mut counts: BTreeMap<(&str, String), (usize, Duration)> = BTreeMap::new();
    for exchange in exchanges {
        let outcome = match &exchange.answer {
            Answer::Ok(_) => "OK".to_owned(),
            Answer::Failed { code, reason, .. } if reason.is_empty() => format!("{code:?}"),
            Answer::Failed { reason, .. } => reason.clone(),
        };
        let (count, slowest) = counts.entry((exchange.rpc, outcome)).or_default();
        *count += 1;
        *slowest = (*slowest).max(exchange.took);
    }
    let mut text = String::new();
    for ((rpc, outcome), (count, slowest)) in counts {
        let _ = write!(
            text,
            "{rpc} {outcome} {count} (slowest {} ms); ",
            slowest.as_millis()
        );
    }
    text
}

// ---- Filings racing the Settles --------------------------------------------------------------

/// Out of a hundred, how often a bureau's filing step cancels one of its filings rather than
/// files a new one.
const FILING_CANCEL_PERCENT: u32 = 35;
/// Pause between two of a bureau's filing steps, in ms.
const FILING_PAUSE_MS: std::ops::RangeInclusive<u64> = 20..=120;
/// The filing policies' cuts, in percentage points.
const TEMPORARY_CUT_POINTS: u32 = 10;
const UNFILED_CUT_POINTS: u32 = 20;

/// Each patient's insured city requires filing for one other pilot city, drawn from the seed,
/// refusing the unfiled or cutting them: insured city, treatment city, the policy.
async fn set_filing_policies(
    net: &Sandbox,
    rng: &mut ChaCha8Rng,
) -> BTreeMap<(&'static str, &'static str), FilingPolicy> {
    let mut policies = BTreeMap::new();
    for patient in PATIENTS {
        let others: Vec<&'static str> = PILOT_CITIES
            .into_iter()
            .filter(|city| *city != patient.city)
            .collect();
        let treatment = others[rng.random_range(0..others.len())];
        let refuse = percent(rng, 50);
        let policy = FilingPolicy {
            treatment_city: treatment.into(),
            filing_required: true,
            unfiled: if refuse {
                UnfiledVisit::Refused
            } else {
                UnfiledVisit::RatioCut
            } as i32,
            unfiled_cut_points: if refuse { 0 } else { UNFILED_CUT_POINTS },
            temporary_cut_points: TEMPORARY_CUT_POINTS,
        };
        let request = SetFilingPolicyRequest {
            message_id: format!("TFP-{}", patient.city),
            policy: Some(policy.clone()),
        };
        net.bureau(patient.city)
            .filing(patient.city)
            .set_filing_policy(request)
            .await
            .expect("a filing policy is set before the run");
        policies.insert((patient.city, treatment), policy);
    }
    policies
}

/// One filing call of a bureau and its last answer.
#[derive(Debug, Clone)]
struct FilingExchange {
    city: &'static str,
    rpc: &'static str,
    message_id: String,
    answer: Result<Filing, (Code, String)>,
}

/// The patients' bureaus file and cancel filings (every kind, for every other pilot city, in
/// force today) while the HIS workers settle and the servers crash, until `stop`: each call sent
/// again under its message id while its answer is transient, as a bureau's console would.
async fn file_and_cancel(
    net: &Sandbox,
    mut rng: ChaCha8Rng,
    stop: &AtomicBool,
) -> Vec<FilingExchange> {
    let kinds = [
        FilingKind::ResettledRetiree,
        FilingKind::LongTermResident,
        FilingKind::PostedStaff,
        FilingKind::Referral,
        FilingKind::Emergency,
        FilingKind::OtherTemporary,
    ];
    let today = yitong_core::today();
    let yesterday = today.pred_opt().expect("a date").to_string();
    let next_week = (0..7)
        .try_fold(today, |date, _| date.succ_opt())
        .expect("a date")
        .to_string();
    let mut exchanges = Vec::new();
    let mut filed: Vec<(&'static str, String)> = Vec::new();
    let mut serial = 0;
    while !stop.load(Ordering::Relaxed) {
        serial += 1;
        let patient = PATIENTS[rng.random_range(0..PATIENTS.len())];
        let mut client = net.bureau(patient.city).filing(patient.city);
        let message_id = format!("TF-{serial}");
        let (rpc, result) = if percent(&mut rng, FILING_CANCEL_PERCENT) && !filed.is_empty() {
            let (city, filing_id) = filed.swap_remove(rng.random_range(0..filed.len()));
            let mut client = net.bureau(city).filing(city);
            let request = CancelFilingRequest {
                message_id: message_id.clone(),
                filing_id,
            };
            let mut answer = client
                .cancel_filing(timed(request.clone(), CALL_DEADLINE))
                .await;
            for _ in 1..ATTEMPTS_MAX {
                if !matches!(&answer, Err(status) if Answer::of(Err(status.clone())).transient()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                answer = client
                    .cancel_filing(timed(request.clone(), CALL_DEADLINE))
                    .await;
            }
            exchanges.push(FilingExchange {
                city,
                rpc: "CancelFiling",
                message_id,
                answer: answer
                    .map(|reply| reply.into_inner().filing.unwrap_or_default())
                    .map_err(|status| (status.code(), reason_of(&status))),
            });
            tokio::time::sleep(Duration::from_millis(rng.random_range(FILING_PAUSE_MS))).await;
            continue;
        } else {
            let others: Vec<&'static str> = PILOT_CITIES
                .into_iter()
                .filter(|city| *city != patient.city)
                .collect();
            let kind = kinds[rng.random_range(0..kinds.len())];
            let open_ended = matches!(
                kind,
                FilingKind::ResettledRetiree
                    | FilingKind::LongTermResident
                    | FilingKind::PostedStaff
            ) && percent(&mut rng, 50);
            let request = FileFilingRequest {
                message_id: message_id.clone(),
                person_no: patient.person_no(),
                kind: kind as i32,
                treatment_city: others[rng.random_range(0..others.len())].into(),
                valid_from: yesterday.clone(),
                valid_until: if open_ended {
                    String::new()
                } else {
                    next_week.clone()
                },
            };
            let mut answer = client
                .file_filing(timed(request.clone(), CALL_DEADLINE))
                .await;
            for _ in 1..ATTEMPTS_MAX {
                if !matches!(&answer, Err(status) if Answer::of(Err(status.clone())).transient()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                answer = client
                    .file_filing(timed(request.clone(), CALL_DEADLINE))
                    .await;
            }
            ("FileFiling", answer)
        };
        let answer = result
            .map(|reply| reply.into_inner().filing.unwrap_or_default())
            .map_err(|status| (status.code(), reason_of(&status)));
        if let Ok(filing) = &answer {
            filed.push((patient.city, filing.filing_id.clone()));
        }
        exchanges.push(FilingExchange {
            city: patient.city,
            rpc,
            message_id,
            answer,
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(FILING_PAUSE_MS))).await;
    }
    exchanges
}

fn reason_of(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// A filing as the insured city's store holds it.
#[derive(Debug, Clone)]
struct FilingRow {
    person_no: String,
    treatment_city: String,
    status: String,
    message_id: String,
}

/// Invariant 7, filings: every filing answered OK is stored as answered, and cancelled where a
/// cancellation was answered OK; a refused filing stored nothing; a bureau's call is answered
/// OK or refused for its content (FILING_OVERLAPS, FILING_CANCELLED), never anything else once
/// the servers are back. Every posted settlement of a patient was priced under the standing its
/// filing policy gives: a waived pair cut nothing; where filing is required, the filing the split
/// names is the patient's, for the settlement's treatment city, and its kind gives the cut (an
/// other temporary trip the temporary cut, any other kind none), and no filing named means the
/// unfiled cut, never a settlement the policy refuses.
async fn check_filings(
    net: &Sandbox,
    policies: &BTreeMap<(&'static str, &'static str), FilingPolicy>,
    exchanges: &[FilingExchange],
    violations: &mut Violations,
) -> String {
    let (mut under_filing, mut cut) = (0, 0);
    let mut rows: HashMap<String, FilingRow> = HashMap::new();
    for city in PILOT_CITIES {
        let store = net.store(city_owner(city), Service::Settlement).await;
        let found: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT filing_id, person_no, treatment_city, status, message_id FROM filings",
        )
        .fetch_all(store.pool())
        .await
        .expect("filings read");
        for (filing_id, person_no, treatment_city, status, message_id) in found {
            rows.insert(
                filing_id,
                FilingRow {
                    person_no,
                    treatment_city,
                    status,
                    message_id,
                },
            );
        }
        let posted: Vec<(String, String, String, String)> = sqlx::query_as(
            "SELECT settlement_id, person_no, treatment_city, split FROM reservations \
             WHERE kind = 'settlement' AND status = 'posted'",
        )
        .fetch_all(store.pool())
        .await
        .expect("reservations read");
        store.close().await;
        for (settlement_id, person_no, treatment_city, split) in posted {
            let standing = decode_split(&split).filing.unwrap_or_default();
            let Some(policy) = policies
                .iter()
                .find(|((insured, treatment), _)| *insured == city && *treatment == treatment_city)
                .map(|(_, policy)| policy)
            else {
                if standing.filing_required || standing.ratio_cut_points != 0 {
                    violations.add(7, format!("{settlement_id} of {person_no} at {treatment_city}, a waived pair, was priced {standing:?}"));
                }
                continue;
            };
            let want = match &standing.filing {
                Some(filing) => {
                    let stored = rows.get(&filing.filing_id);
                    if !stored.is_some_and(|row| {
                        row.person_no == person_no && row.treatment_city == treatment_city
                    }) {
                        violations.add(7, format!("{settlement_id} names filing {} which is not {person_no}'s for {treatment_city}: {stored:?}", filing.filing_id));
                    }
                    match FilingKind::try_from(filing.kind) {
                        Ok(FilingKind::OtherTemporary) => policy.temporary_cut_points,
                        _ => 0,
                    }
                }
                None if policy.unfiled == UnfiledVisit::Refused as i32 => {
                    violations.add(7, format!("{settlement_id} of {person_no} at {treatment_city} posted with no filing where the policy refuses the unfiled"));
                    continue;
                }
                None => policy.unfiled_cut_points,
            };
            under_filing += usize::from(standing.filing.is_some());
            cut += usize::from(standing.ratio_cut_points > 0);
            if !standing.filing_required || standing.ratio_cut_points != want {
                violations.add(7, format!("{settlement_id} of {person_no} at {treatment_city} was priced {standing:?}, the policy gives a cut of {want}"));
            }
        }
    }
    for exchange in exchanges {
        match (&exchange.answer, exchange.rpc) {
            (Ok(filing), "FileFiling") => match rows.get(&filing.filing_id) {
                Some(row)
                    if row.message_id == exchange.message_id
                        && row.person_no == filing.person_no => {}
                other => violations.add(
                    7,
                    format!(
                        "FileFiling {} answered {} but the store holds {other:?}",
                        exchange.message_id, filing.filing_id
                    ),
                ),
            },
            (Ok(filing), _) => {
                if rows
                    .get(&filing.filing_id)
                    .is_none_or(|row| row.status != "cancelled")
                {
                    violations.add(
                        7,
                        format!(
                            "CancelFiling {} answered OK but {} is not cancelled",
                            exchange.message_id, filing.filing_id
                        ),
                    );
                }
            }
            (Err((Code::FailedPrecondition, reason)), rpc)
                if matches!(reason.as_str(), "FILING_OVERLAPS" | "FILING_CANCELLED") =>
            {
                if rpc == "FileFiling"
                    && rows
                        .values()
                        .any(|row| row.message_id == exchange.message_id)
                {
                    violations.add(
                        7,
                        format!(
                            "FileFiling {} was refused {reason} but stored a filing",
                            exchange.message_id
                        ),
                    );
                }
            }
            (Err((code, reason)), rpc) => violations.add(
                7,
                format!(
                    "{rpc} {} of {} answered {code:?} {reason}",
                    exchange.message_id, exchange.city
                ),
            ),
        }
    }
    format!("{under_filing} posted settlements priced under a filing, {cut} with a cut")
}

// ---- Certifications racing the Settles -------------------------------------------------------

/// Out of a hundred, how often a bureau's certification step cancels one of its certifications
/// rather than certifies, and how often a certification designates one hospital rather than
/// any networked institution.
const CERTIFICATION_CANCEL_PERCENT: u32 = 35;
const CERTIFICATION_DESIGNATED_PERCENT: u32 = 40;

/// One certification call of a bureau and its last answer.
#[derive(Debug, Clone)]
struct CertificationExchange {
    city: &'static str,
    rpc: &'static str,
    message_id: String,
    answer: Result<Certification, (Code, String)>,
}

/// Sends a bureau's call again under its message id while its answer is transient, as a
/// bureau's console would: the last answer, with a refusal's code and reason.
async fn bureau_call<T, F, Fut>(mut call: F) -> Result<T, (Code, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut answer = call().await;
    for _ in 1..ATTEMPTS_MAX {
        if !matches!(&answer, Err(status) if Answer::of(Err(status.clone())).transient()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = call().await;
    }
    answer
        .map(tonic::Response::into_inner)
        .map_err(|status| (status.code(), reason_of(&status)))
}

/// A version of a patient's policy from today, recorded by the insured city's bureau during
/// the run: when the call was sent and answered (on the HIS calls' clock), and what it answered.
#[derive(Debug, Clone)]
struct PolicyChange {
    city: &'static str,
    sent: u64,
    answered: u64,
    answer: Result<String, (Code, String)>,
}

/// Each patient's insured city's bureau records, once during the run at a random moment, a
/// version of the patient's policy (level-3 hospital) from today: the seeds' deductible and
/// annual cap (which invariant 4 holds the totals to), another reimbursement ratio. Sent again
/// under its message id while its answer is transient.
async fn change_policies(
    net: &Sandbox,
    torture: Arc<Torture>,
    mut rng: ChaCha8Rng,
    stop: &AtomicBool,
) -> Vec<PolicyChange> {
    let mut changes = Vec::new();
    for patient in PATIENTS {
        tokio::time::sleep(Duration::from_millis(
            rng.random_range(POLICY_CHANGE_GAP_MS),
        ))
        .await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let seeds = seeded(patient);
        let percent: u32 = rng.random_range(50..=90);
        let request = UpsertPolicyRequest {
            message_id: format!("TPOL-{}", patient.city),
            policy: Some(Policy {
                insured_city: patient.city.into(),
                insurance_type: 310,
                person_type: seeds.person_type,
                hospital_level: 3,
                deductible: yuan(seeds.deductible_fen),
                reimbursement_ratio: format!("0.{percent:02}"),
                annual_cap: yuan(seeds.annual_cap_fen),
                effective_from: yitong_core::today().to_string(),
                ..Default::default()
            }),
            reason: "a ratio changed under the run".into(),
            operator_id: "torture-bureau".into(),
        };
        let sent = torture.tick();
        let client = net.catalog(patient.city);
        let answer = bureau_call(|| {
            let (mut client, request) = (client.clone(), request.clone());
            async move { client.upsert_policy(timed(request, CALL_DEADLINE)).await }
        })
        .await
        .map(|reply| {
            reply
                .policy
                .map(|policy| policy.policy_id)
                .unwrap_or_default()
        });
        let answered = torture.tick();
        changes.push(PolicyChange {
            city: patient.city,
            sent,
            answered,
            answer,
        });
    }
    changes
}

/// Invariant 9: every policy change was recorded, and the catalog node's copy of its policies
/// followed it at once: an ordinary PreSettle or Settle of the city's patient sent after the
/// change was answered is priced under the new version (a Settle by the first sending of its
/// message id, since a replay answers as the first call did), and one answered before the
/// change was sent under an earlier one.
fn check_policy_changes(
    changes: &[PolicyChange],
    exchanges: &[Exchange],
    violations: &mut Violations,
) -> String {
    let mut first_sent: HashMap<&str, u64> = HashMap::new();
    for exchange in exchanges {
        let sent = first_sent
            .entry(&exchange.message_id)
            .or_insert(exchange.sent);
        *sent = (*sent).min(exchange.sent);
    }
    let mut checked = 0;
    for change in changes {
        let policy_id = match &change.answer {
            Ok(policy_id) => policy_id,
            Err(failed) => {
                violations.add(
                    9,
                    format!("the policy change of {} failed: {failed:?}", change.city),
                );
                continue;
            }
        };
        for exchange in exchanges {
            let (split, insured, sent) = match &exchange.answer {
                Answer::Ok(Reply::PreSettle(reply)) => (
                    reply.split.as_ref(),
                    reply
                        .visit
                        .as_ref()
                        .map(|visit| visit.insured_city.as_str()),
                    exchange.sent,
                ),
                Answer::Ok(Reply::Settle(reply)) => (
                    reply
                        .settlement
                        .as_ref()
                        .and_then(|settlement| settlement.split.as_ref()),
                    reply
                        .settlement
                        .as_ref()
                        .map(|settlement| settlement.insured_city.as_str()),
                    first_sent[exchange.message_id.as_str()],
                ),
                _ => continue,
            };
            let Some(split) = split.filter(|split| split.disease_code.is_empty()) else {
                continue;
            };
            if insured != Some(change.city) {
                continue;
            }
            let priced_new = &split.policy_id == policy_id;
            if sent > change.answered && !priced_new {
                violations.add(9, format!(
                    "{} {} sent after {}'s policy change was answered, priced under {} instead of {policy_id}",
                    exchange.rpc, exchange.message_id, change.city, split.policy_id
                ));
            }
            if exchange.answered < change.sent && priced_new {
                violations.add(
                    9,
                    format!(
                        "{} {} answered before {}'s policy change was sent, priced under it",
                        exchange.rpc, exchange.message_id, change.city
                    ),
                );
            }
            checked += 1;
        }
    }
    format!(
        "{} policy changes, {checked} quotes and settlements checked against them",
        changes.len()
    )
}

/// The patients' bureaus certify them for diseases of the catalog (from yesterday, open-ended or
/// for a week, at any institution or at one pilot city's hospital) and cancel certifications,
/// while the HIS workers settle chronic-disease visits and the servers crash, until `stop`.
async fn certify_and_cancel(
    net: &Sandbox,
    mut rng: ChaCha8Rng,
    stop: &AtomicBool,
) -> Vec<CertificationExchange> {
    let today = yitong_core::today();
    let yesterday = today.pred_opt().expect("a date").to_string();
    let next_week = (0..7)
        .try_fold(today, |date, _| date.succ_opt())
        .expect("a date")
        .to_string();
    let mut exchanges = Vec::new();
    let mut certified: Vec<(&'static str, String)> = Vec::new();
    let mut serial = 0;
    while !stop.load(Ordering::Relaxed) {
        serial += 1;
        let message_id = format!("TC-{serial}");
        if percent(&mut rng, CERTIFICATION_CANCEL_PERCENT) && !certified.is_empty() {
            let (city, certification_id) =
                certified.swap_remove(rng.random_range(0..certified.len()));
            let client = net.bureau(city).certification(city);
            let request = CancelCertificationRequest {
                message_id: message_id.clone(),
                certification_id,
            };
            let answer = bureau_call(|| {
                let (mut client, request) = (client.clone(), request.clone());
                async move {
                    client
                        .cancel_certification(timed(request, CALL_DEADLINE))
                        .await
                }
            })
            .await;
            exchanges.push(CertificationExchange {
                city,
                rpc: "CancelCertification",
                message_id,
                answer: answer.map(|reply| reply.certification.unwrap_or_default()),
            });
        } else {
            let patient = PATIENTS[rng.random_range(0..PATIENTS.len())];
            let client = net.bureau(patient.city).certification(patient.city);
            let institution_codes = if percent(&mut rng, CERTIFICATION_DESIGNATED_PERCENT) {
                vec![hospital(
                    PILOT_CITIES[rng.random_range(0..PILOT_CITIES.len())],
                )]
            } else {
                Vec::new()
            };
            let request = CertifyRequest {
                message_id: message_id.clone(),
                person_no: patient.person_no(),
                disease_code: DISEASES[rng.random_range(0..DISEASES.len())].clone(),
                valid_from: yesterday.clone(),
                valid_until: if percent(&mut rng, 50) {
                    String::new()
                } else {
                    next_week.clone()
                },
                institution_codes,
            };
            let answer = bureau_call(|| {
                let (mut client, request) = (client.clone(), request.clone());
                async move { client.certify(timed(request, CALL_DEADLINE)).await }
            })
            .await
            .map(|reply| reply.certification.unwrap_or_default());
            if let Ok(certification) = &answer {
                certified.push((patient.city, certification.certification_id.clone()));
            }
            exchanges.push(CertificationExchange {
                city: patient.city,
                rpc: "Certify",
                message_id,
                answer,
            });
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(FILING_PAUSE_MS))).await;
    }
    exchanges
}

/// Whether a split's fund itemised (setldetail) sums to its fund pay, each line naming the
/// split's disease (none for the ordinary totals).
fn itemised(split: &SettlementSplit) -> bool {
    let lines: i64 = split
        .fund_payments
        .iter()
        .map(|line| fen(&line.amount))
        .sum();
    lines == fen(&split.fund_pay)
        && split
            .fund_payments
            .iter()
            .all(|line| line.disease_code == split.disease_code)
}

/// Invariant 8, chronic diseases: every posted type-14 settlement was reserved for the disease
/// its visit was registered for (and an ordinary one for none), while a certification of the
/// person for that disease, in force on the visit's service date at its institution, stood in
/// the insured city's store (certified before the reservation was written and not cancelled
/// before it: Certify, CancelCertification and Reserve all take the person's year lock, so the
/// store's times order them); each patient's `disease_years` hold exactly the sums of their
/// posted reservations of the disease, never past the disease's quota nor its deductible; every
/// split, stored or answered, has its fund itemised summing to its fund pay; every certification
/// answered OK is stored as answered, cancelled where its cancellation was answered OK, a refused
/// one stored nothing, and no other answer. Returns what was seen, for the run's summary.
fn check_diseases(
    stores: &Stores,
    exchanges: &[Exchange],
    certifying: &[CertificationExchange],
    violations: &mut Violations,
) -> String {
    let mut registered: HashMap<&str, &str> = HashMap::new();
    for exchange in exchanges {
        let split = match &exchange.answer {
            Answer::Ok(Reply::Register(RegisterVisitResponse { visit: Some(visit) })) => {
                registered.insert(visit.visit_id.as_str(), visit.disease_code.as_str());
                continue;
            }
            Answer::Ok(Reply::PreSettle(reply)) => reply.split.iter().collect::<Vec<_>>(),
            Answer::Ok(Reply::Settle(SettleResponse {
                settlement: Some(settlement),
            }))
            | Answer::Ok(Reply::Cancel(CancelSettlementResponse {
                settlement: Some(settlement),
            }))
            | Answer::Ok(Reply::Reverse(ReverseByMessageIdResponse {
                settlement: Some(settlement),
                ..
            })) => settlement
                .split
                .iter()
                .chain(settlement.cancellation.iter().flat_map(|c| c.split.iter()))
                .collect(),
            _ => continue,
        };
        for split in split.into_iter().filter(|split| !itemised(split)) {
            violations.add(
                8,
                format!(
                    "{} {} answered a split whose fund itemised does not sum to its fund pay {}: {:?}",
                    exchange.rpc, exchange.message_id, split.fund_pay, split.fund_payments
                ),
            );
        }
    }
    let (mut posted, mut refused) = (0, 0);
    let mut sums: BTreeMap<(String, i64, String), (i64, i64)> = BTreeMap::new();
    for (id, reservation) in &stores.reservations {
        if let Some(split) = &reservation.split
            && (!itemised(split) || split.disease_code != reservation.disease_code)
        {
            violations.add(
                8,
                format!(
                    "{id} of disease {:?} stored a split of disease {:?} whose fund itemised {:?} \
                     is to sum to {}",
                    reservation.disease_code,
                    split.disease_code,
                    split.fund_payments,
                    split.fund_pay
                ),
            );
        }
        if reservation.status != "posted" || reservation.kind == "tombstone" {
            continue;
        }
        if !reservation.disease_code.is_empty() {
            let sum = sums
                .entry((
                    reservation.person_no.clone(),
                    reservation.benefit_year,
                    reservation.disease_code.clone(),
                ))
                .or_default();
            sum.0 += reservation.deductible_applied_fen;
            sum.1 += reservation.fund_pay_fen;
        }
        if reservation.kind != "settlement" {
            continue;
        }
        let visit_disease = registered.get(reservation.visit_id.as_str()).copied();
        if visit_disease != Some(reservation.disease_code.as_str()) {
            violations.add(
                8,
                format!(
                    "{id} posted for disease {:?}, its visit {} registered for {visit_disease:?}",
                    reservation.disease_code, reservation.visit_id
                ),
            );
        }
        if reservation.disease_code.is_empty() {
            continue;
        }
        posted += 1;
        let date = stores
            .service_dates
            .get(&reservation.visit_id)
            .map_or("", String::as_str);
        let certified = stores.certifications.values().any(|certification| {
            certification.insured_city == reservation.insured_city
                && certification.person_no == reservation.person_no
                && certification.disease_code == reservation.disease_code
                && certification.covered(
                    reservation.reserved_at_ms,
                    &reservation.institution_code,
                    date,
                )
        });
        if !certified {
            violations.add(
                8,
                format!(
                    "{id} of {} posted for disease {} at {} on {date:?}, reserved at {} ms, with no \
                     certification standing then",
                    reservation.person_no,
                    reservation.disease_code,
                    reservation.institution_code,
                    reservation.reserved_at_ms
                ),
            );
        }
    }
    for patient in PATIENTS {
        let person = patient.person_no();
        let keys: BTreeSet<(String, i64, String)> = sums
            .keys()
            .chain(stores.disease_years.keys())
            .filter(|(owner, _, _)| *owner == person)
            .cloned()
            .collect();
        for key in keys {
            let (_, year, disease) = &key;
            let (deductible, fund) = sums.get(&key).copied().unwrap_or_default();
            let kept = stores.disease_years.get(&key).copied().unwrap_or_default();
            if kept != (deductible, fund) {
                violations.add(
                    8,
                    format!(
                        "{person}: disease_years {year} {disease} holds deductible {} fund {}, the \
                         posted reservations sum to {deductible} and {fund}",
                        kept.0, kept.1
                    ),
                );
            }
            let (deductible_max, quota) = disease_policy(patient, disease);
            if fund > quota || deductible > deductible_max {
                violations.add(
                    8,
                    format!(
                        "{person}: {disease} in {year} took fund {fund} of quota {quota}, \
                         deductible {deductible} of {deductible_max}"
                    ),
                );
            }
        }
    }
    for exchange in certifying {
        let stored = |message_id: &str| {
            stores
                .certifications
                .values()
                .any(|row| row.message_id == message_id)
        };
        match (&exchange.answer, exchange.rpc) {
            (Ok(answered), "Certify") => {
                match stores.certifications.get(&answered.certification_id) {
                    Some(row)
                        if row.message_id == exchange.message_id
                            && (row.person_no.as_str(), row.disease_code.as_str())
                                == (
                                    answered.person_no.as_str(),
                                    answered.disease_code.as_str(),
                                ) => {}
                    other => violations.add(
                        8,
                        format!(
                            "Certify {} answered {} but the store holds {other:?}",
                            exchange.message_id, answered.certification_id
                        ),
                    ),
                }
            }
            (Ok(answered), _) => {
                if stores
                    .certifications
                    .get(&answered.certification_id)
                    .is_none_or(|row| row.status != "cancelled")
                {
                    violations.add(
                        8,
                        format!(
                            "CancelCertification {} answered OK but {} is not cancelled",
                            exchange.message_id, answered.certification_id
                        ),
                    );
                }
            }
            (Err((Code::FailedPrecondition, reason)), rpc)
                if matches!(
                    reason.as_str(),
                    "CERTIFICATION_OVERLAPS" | "CERTIFICATION_CANCELLED"
                ) =>
            {
                refused += 1;
                if rpc == "Certify" && stored(&exchange.message_id) {
                    violations.add(
                        8,
                        format!(
                            "Certify {} was refused {reason} but stored a certification",
                            exchange.message_id
                        ),
                    );
                }
            }
            (Err((code, reason)), rpc) => violations.add(
                8,
                format!(
                    "{rpc} {} of {} answered {code:?} {reason}",
                    exchange.message_id, exchange.city
                ),
            ),
        }
    }
    let not_certified = exchanges
        .iter()
        .filter(|exchange| exchange.rpc == "Settle" && exchange.answer.reason() == "NOT_CERTIFIED")
        .count();
    format!(
        "{posted} chronic-disease settlements posted, {not_certified} Settles refused \
         NOT_CERTIFIED, {refused} certification calls refused for their content"
    )
}

network_test! {
    /// Proves the settlement protocol keeps its invariants under random concurrent HIS schedules
    /// (every settlement RPC, replays at once and later, hurried deadlines, reversals racing
    /// their Settle, two visits of one patient at once, ordinary and chronic-disease visits),
    /// the bureaus filing and cancelling cross-city filings and certifying and cancelling
    /// certifications under them, while settlement, ledger and identity servers crash and
    /// restart: after the sweeps, every settlement answered OK is complete in
    /// all three places, nothing is in doubt, the three places and the ledger's balances agree
    /// to the fen, no account goes negative nor fund past the cap, every replay got the first
    /// answer and no OK came without content; every chronic-disease settlement stood on a
    /// certification when reserved, its disease's totals are its posted reservations' within
    /// the quota, and every fund itemised sums to its fund pay. Every violation is reported,
    /// with the seed.
    async fn random_schedules_under_crashes_keep_every_invariant(net) {
        let seed = *SEED;
        let ops_max = ops_max();
        eprintln!(
            "torture on {:?}: seed {seed} (YITONG_TORTURE_SEED={seed} replays its choices), \
             {ops_max} operations",
            net.database()
        );
        let his = PILOT_CITIES
            .into_iter()
            .map(|city| (city, net.his_settlement(&hospital(city))))
            .collect();
        let torture = Arc::new(Torture {
            his,
            ops_max,
            ops: AtomicUsize::new(0),
            started: Instant::now(),
            flows: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            exchanges: Mutex::new(Vec::new()),
        });

        let mut filing_rng = ChaCha8Rng::seed_from_u64(seed.rotate_left(16) ^ 0xF11E);
        let policies = set_filing_policies(net, &mut filing_rng).await;

        let started = Instant::now();
        let stop = AtomicBool::new(false);
        let mut workers = JoinSet::new();
        for _ in 0..WORKERS {
            workers.spawn(torture.clone().work(seed));
        }
        let run = async {
            while let Some(done) = workers.join_next().await {
                done.expect("an HIS worker");
            }
            stop.store(true, Ordering::Relaxed);
        };
        let fault_rng = ChaCha8Rng::seed_from_u64(seed.rotate_left(32) ^ 0xFA17);
        let certifying_rng = ChaCha8Rng::seed_from_u64(seed.rotate_left(48) ^ 0xCE27);
        let policy_rng = ChaCha8Rng::seed_from_u64(seed.rotate_left(8) ^ 0x9011);
        let (faults, filings, certifying, policy_changes, ()) = tokio::join!(
            inject_faults(net, fault_rng, &stop),
            file_and_cancel(net, filing_rng, &stop),
            certify_and_cancel(net, certifying_rng, &stop),
            change_policies(net, torture.clone(), policy_rng, &stop),
            run
        );
        let ran = started.elapsed();

        let sweeping = Instant::now();
        let sweeps = quiesce(net).await;
        let swept = sweeping.elapsed();

        let exchanges = torture.exchanges.lock().expect("exchanges").clone();
        let stores = read_stores(net).await;
        let mut violations = Violations::default();
        check_answered(&stores, &exchanges, &mut violations);
        check_agreement(&stores, &mut violations);
        check_money(&stores, &mut violations);
        check_replies(&exchanges, &mut violations);
        let filed = check_filings(net, &policies, &filings, &mut violations).await;
        let diseased = check_diseases(&stores, &exchanges, &certifying, &mut violations);
        let repriced = check_policy_changes(&policy_changes, &exchanges, &mut violations);

        let completed = stores.treatment.values().filter(|row| row.phase == "completed").count();
        let voided = stores.treatment.values().filter(|row| row.phase == "voided").count();
        let patients: Vec<String> = PATIENTS
            .iter()
            .map(|patient| {
                let person = patient.person_no();
                let fund: i64 = stores
                    .benefit_years
                    .iter()
                    .filter(|((owner, _), _)| *owner == person)
                    .map(|(_, (_, fund))| fund)
                    .sum();
                let seeds = seeded(*patient);
                format!(
                    "{person}: fund {fund} of cap {}, account {} of {}",
                    seeds.annual_cap_fen,
                    stores.balances.get(&person).copied().unwrap_or_default(),
                    seeds.balance_fen
                )
            })
            .collect();
        eprintln!(
            "torture on {:?}, seed {seed}: {} calls in {} visits over {ran:?}, {} outages; \
             sweeps took {swept:?} ({sweeps:?}); {completed} rows completed, {voided} voided; \
             {} filing calls ({filed}); {} certification calls ({diseased}); {repriced}; \
             {patients:?}\n  \
             answers: {}",
            net.database(),
            exchanges.len(),
            torture.flows.load(Ordering::Relaxed),
            faults.len(),
            filings.len(),
            certifying.len(),
            tally(&exchanges),
        );

        let Violations(found) = violations;
        let classes: BTreeSet<&str> = found.iter().filter_map(|v| v.get(..3)).collect();
        let mut report = format!(
            "torture seed {seed} on {:?}: {} violations (invariants {classes:?}); \
             rerun with YITONG_TORTURE_SEED={seed}\n",
            net.database(),
            found.len()
        );
        for violation in found.iter().take(VIOLATIONS_SHOWN_MAX) {
            let _ = writeln!(report, "  {violation}");
        }
        if found.len() > VIOLATIONS_SHOWN_MAX {
            let _ = writeln!(report, "  ... and {} more", found.len() - VIOLATIONS_SHOWN_MAX);
        }
        if !found.is_empty() {
            // Why a server answered INTERNAL is in its ERROR log lines (of any test running in
            // this process, the last ones kept).
            let errors = yitong_sandbox::privacy::errors();
            let _ = writeln!(report, "errors logged in this process ({}):", errors.len());
            for error in errors {
                let _ = writeln!(report, "  {error}");
            }
        }
        assert!(found.is_empty(), "{report}");
    }
}
