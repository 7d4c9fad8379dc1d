//! `yitong bench`: a load generator acting as many HIS clients across the pilot cities. One unit
//! of work is one outpatient visit settled (RegisterVisit, UploadFeeLines, Settle), in a closed
//! loop (N clients, each starting its next visit when the last ends) or an open loop (visits
//! arriving at a fixed rate, whether or not the network keeps up). At the end: visits per second,
//! latency percentiles per RPC, failures by status code, and an invariant check of the ledger
//! against the settlements made.
//!
//! The first Ctrl-C (or SIGTERM) ends the load early and still reports and checks; a second
//! one exits at once. `--call-log` writes every Settle, CancelSettlement and ReverseByMessageId
//! sent, and `--replay` sends again those whose answer was lost (`bench/kill9/run`).

mod calls;
mod check;
mod health;
mod replay;
mod stats;
mod workload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};
use yitong_core::{Network, Owner, PoolCode};
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_rpc::Caller;

use crate::output::Outcome;
use calls::{CallLog, RunHeader};
use check::{CheckInput, CheckReport, Known};
use replay::{ReplayReport, Replayer};
use stats::{Figures, OpenLoop, Stats, per_second};
use workload::{LINES_PER_VISIT_MAX, Mix, Plan, Population};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Concurrent HIS clients of the closed loop (ignored with --rate).
    #[arg(long, default_value_t = 16)]
    clients: u32,
    /// Run an open loop instead: this many visits arrive per second, whether or not the
    /// network keeps up.
    #[arg(long)]
    rate: Option<u32>,
    /// Open loop: visits running at once beyond which an arriving visit is dropped (and
    /// counted as offered but not accepted).
    #[arg(long, default_value_t = 2048)]
    max_in_flight: u32,
    /// How long to run, after the warm-up.
    #[arg(long, default_value_t = 30)]
    duration_secs: u64,
    /// Visits run before measuring starts (closed loop), to warm connections and caches. Their
    /// settlements are still checked at the end.
    #[arg(long, default_value_t = 0)]
    warmup_visits: u64,
    /// Stop after this many measured visits instead of after --duration-secs.
    #[arg(long)]
    visits: Option<u64>,
    /// Fee lines per visit (1 to 100).
    #[arg(long, default_value_t = 5)]
    lines: u32,
    /// Share of visits whose patient is insured in another city, in percent.
    #[arg(long, default_value_t = 70)]
    cross_city_percent: u32,
    /// Share of settled visits cancelled again (CancelSettlement), in percent.
    #[arg(long, default_value_t = 5)]
    cancel_percent: u32,
    /// Share of visits that call PreSettle before Settle, in percent.
    #[arg(long, default_value_t = 0)]
    pre_settle_percent: u32,
    /// Share of visits (not cancelled) whose Settle is then reversed by its message id
    /// (ReverseByMessageId), in percent.
    #[arg(long, default_value_t = 5)]
    reverse_percent: u32,
    /// Seed of the random choices (patients, hospitals, prices): the same seed draws the same
    /// visits.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Deadline of each call in seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Skip the end-of-run invariant check.
    #[arg(long)]
    no_check: bool,
    /// Write every Settle, CancelSettlement and ReverseByMessageId sent to this file, one JSON
    /// line each, with its first answer (the file is emptied first).
    #[arg(long)]
    call_log: Option<PathBuf>,
    /// Send no new visits: replay the calls of this call log whose answer was lost, and every
    /// --replay-ok-every-th answered one, check every replay's answer is consistent, then run
    /// the invariant check of the logged run. Exit code 1 on an inconsistency or a break.
    #[arg(long, conflicts_with_all = ["call_log", "rate", "visits", "warmup_visits"])]
    replay: Option<PathBuf>,
    /// With --replay: replay every n-th call answered OK too (0: none).
    #[arg(long, default_value_t = 10)]
    replay_ok_every: u64,
    /// Print the report as JSON on standard output (the progress bar still goes to stderr).
    #[arg(long)]
    json: bool,
    /// Directory of the seed files: network.toml (the endpoints), persons, institutions and
    /// catalog items (what the visits are drawn from).
    #[arg(long, default_value_os_t = crate::default_seeds())]
    seeds: PathBuf,
    /// The network's credentials file, with a key for every hospital's HIS and for the bureaus
    /// the end-of-run check reads as: what `yitong dev` writes under its data directory.
    #[arg(
        long,
        env = "YITONG_CREDENTIALS",
        default_value = "data/credentials.toml"
    )]
    credentials: PathBuf,
}

/// How long a closed-loop client waits after a failed visit before its next one, so a network
/// that is down (being restarted) is not spun against.
const FAILED_VISIT_PAUSE: Duration = Duration::from_millis(100);

/// Everything the client tasks share.
struct Shared {
    population: Arc<Population>,
    clients: HashMap<PoolCode, SettlementServiceClient<Channel>>,
    mix: Mix,
    stats: Stats,
    run_tag: String,
    /// Settlement ids the run got back, with what it knows of their state.
    known: std::sync::Mutex<HashMap<String, Known>>,
    call_log: Option<Arc<CallLog>>,
    /// Set on Ctrl-C or SIGTERM: start no more visits.
    stopping: Arc<AtomicBool>,
}

impl Shared {
    /// Runs one visit and records its outcome; whether it settled.
    async fn visit(&self, plan: Plan, due: Instant) -> bool {
        let mut client = self.clients[&plan.treatment()].clone();
        let outcome = workload::run_visit(
            &mut client,
            &self.population,
            &plan,
            &self.run_tag,
            &self.mix,
            &self.stats,
            self.call_log.as_deref(),
        )
        .await;
        match outcome {
            workload::Outcome::Settled {
                settlement_id,
                fund_paid,
                cancel,
            } => {
                self.stats
                    .visit_settled(due.elapsed(), plan.cross_city(), fund_paid);
                let known = match cancel {
                    None => Known::Settled,
                    Some(true) => Known::Cancelled,
                    Some(false) => Known::Either,
                };
                self.known
                    .lock()
                    .expect("known lock")
                    .insert(settlement_id, known);
                true
            }
            workload::Outcome::Failed => {
                self.stats.visit_failed();
                false
            }
        }
    }
}

/// A channel to `url` presenting `caller`'s key from `credentials`.
async fn as_caller(
    credentials: &yitong_auth::Credentials,
    caller: &Caller,
    url: &str,
) -> anyhow::Result<crate::client::Channel> {
    let client = crate::client::ClientArgs {
        api_key: Some(
            credentials
                .key(caller)
                .with_context(|| format!("the credentials hold no key for {caller}"))?
                .into(),
        ),
        ca: None,
        cert: None,
        key: None,
    };
    client.connect(url, Duration::from_secs(10)).await
}

async fn connect(url: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(url.to_owned())
        .with_context(|| format!("bad endpoint {url}"))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot reach {url}"))
}

/// The network as the bench reaches it: HIS clients, bureau clients and the clearing house.
struct Reached {
    cities: Vec<PoolCode>,
    credentials: yitong_auth::Credentials,
    population: Arc<Population>,
    /// SettlementService of each city, called as each hospital's HIS.
    clients: HashMap<PoolCode, SettlementServiceClient<Channel>>,
    /// SettlementService of each city, as that city's bureau: the check lists settlements.
    bureau_clients: HashMap<PoolCode, SettlementServiceClient<crate::client::Channel>>,
    /// The ledger, as the clearing house's staff, who read every balance and verify the journal.
    ledger: LedgerServiceClient<crate::client::Channel>,
    /// A connection of its own to each city's settlement server, for health checks.
    health: Vec<Channel>,
}

async fn reach(args: &BenchArgs, lines: u32) -> anyhow::Result<Reached> {
    let network = Network::load(&args.seeds.join("network.toml"))?;
    let cities: Vec<PoolCode> = network.enabled_pools().map(|city| city.code).collect();
    let credentials = crate::client::load_credentials(&args.credentials)?;
    let mut population = Population::load(&args.seeds, cities.clone(), lines)?;
    population.authorize(&credentials)?;
    let mut clients = HashMap::new();
    let mut bureau_clients = HashMap::new();
    let mut health = Vec::new();
    for city in network.enabled_pools() {
        health.push(connect(&city.settlement).await?);
        clients.insert(
            city.code,
            SettlementServiceClient::new(connect(&city.settlement).await?),
        );
        let bureau = Caller::Bureau(Owner::Pool(city.code));
        bureau_clients.insert(
            city.code,
            SettlementServiceClient::new(
                as_caller(&credentials, &bureau, &city.settlement)
                    .await?
                    .addressed_to(Some(city.code)),
            ),
        );
    }
    let house = Caller::Bureau(Owner::ClearingHouse);
    let ledger = LedgerServiceClient::new(
        as_caller(&credentials, &house, &network.clearing_house.ledger).await?,
    );
    Ok(Reached {
        cities,
        credentials,
        population: Arc::new(population),
        clients,
        bureau_clients,
        ledger,
        health,
    })
}

/// Sets `stopping` on the first Ctrl-C or SIGTERM; exits on the second.
fn stop_on_signal(stopping: Arc<AtomicBool>) {
    tokio::spawn(async move {
        crate::config::shutdown_signal().await;
        eprintln!("stopping the load: the visits running finish, then the report and check");
        stopping.store(true, Ordering::Relaxed);
        crate::config::shutdown_signal().await;
        std::process::exit(130);
    });
}

pub async fn run(args: BenchArgs) -> anyhow::Result<Outcome> {
    if args.lines == 0 || args.lines > LINES_PER_VISIT_MAX {
        bail!("--lines must be 1 to {LINES_PER_VISIT_MAX}");
    }
    if args.cross_city_percent > 100
        || args.cancel_percent > 100
        || args.pre_settle_percent > 100
        || args.reverse_percent > 100
    {
        bail!("percentages must be 0 to 100");
    }
    if args.clients == 0 || args.rate == Some(0) || args.max_in_flight == 0 {
        bail!("--clients, --rate and --max-in-flight must be above zero");
    }
    if let Some(path) = &args.replay {
        return run_replay(&args, path).await;
    }
    let Reached {
        cities,
        population,
        clients,
        bureau_clients,
        mut ledger,
        health,
        ..
    } = reach(&args, args.lines).await?;
    let before = check::snapshot(&mut ledger, &cities).await?;
    let from_date = yitong_core::today().to_string();
    // Message ids are "<tag>-<visit>-<step>": unique per run, and how the check finds the run's
    // settlements among older ones.
    let run_tag = format!(
        "BENCH{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    );
    let call_log = match &args.call_log {
        Some(path) => Some(Arc::new(CallLog::create(
            path,
            RunHeader {
                run_tag: run_tag.clone(),
                from_date: from_date.clone(),
                before: before.clone(),
            },
        )?)),
        None => None,
    };
    let stopping = Arc::new(AtomicBool::new(false));
    stop_on_signal(stopping.clone());
    let shared = Arc::new(Shared {
        population: population.clone(),
        clients: clients.clone(),
        mix: Mix {
            lines: args.lines,
            cross_city_percent: args.cross_city_percent,
            cancel_percent: args.cancel_percent,
            pre_settle_percent: args.pre_settle_percent,
            reverse_percent: args.reverse_percent,
            timeout: Duration::from_secs(args.timeout_secs),
        },
        stats: Stats::default(),
        run_tag: run_tag.clone(),
        known: std::sync::Mutex::new(HashMap::new()),
        call_log: call_log.clone(),
        stopping: stopping.clone(),
    });
    let rng = Arc::new(std::sync::Mutex::new(StdRng::seed_from_u64(args.seed)));
    let numbers = Arc::new(AtomicU64::new(0));

    if args.warmup_visits > 0 {
        eprintln!("warming up: {} visits", args.warmup_visits);
        // The warm-up uses its own stats, so the measured figures hold only the measured run.
        let warm = Arc::new(Shared {
            population,
            clients: clients.clone(),
            mix: shared.mix,
            stats: Stats::default(),
            run_tag: run_tag.clone(),
            known: std::sync::Mutex::new(HashMap::new()),
            call_log: call_log.clone(),
            stopping: stopping.clone(),
        });
        closed_loop(
            &warm,
            &rng,
            &numbers,
            args.clients,
            None,
            Some(args.warmup_visits),
        )
        .await;
        let warm_known = std::mem::take(&mut *warm.known.lock().expect("known lock"));
        shared.known.lock().expect("known lock").extend(warm_known);
    }

    let duration = Duration::from_secs(args.duration_secs);
    let probing = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(health::probe(health, probing.clone()));
    let started = Instant::now();
    let open_loop = match args.rate {
        None => {
            closed_loop(
                &shared,
                &rng,
                &numbers,
                args.clients,
                Some(duration),
                args.visits,
            )
            .await;
            None
        }
        Some(rate) => {
            let (offered, dropped) =
                open_loop(&shared, &rng, &numbers, rate, args.max_in_flight, duration).await;
            Some((rate, offered, dropped))
        }
    };
    let elapsed = started.elapsed();
    probing.store(true, Ordering::Relaxed);
    let health = probe.await.expect("the health probe ends without panic");
    if let Some(call_log) = &call_log {
        call_log.finish()?;
    }
    let mut figures = shared.stats.report(elapsed);
    figures.open_loop = open_loop.map(|(rate, offered, dropped)| OpenLoop {
        target_rate: rate,
        offered,
        offered_per_second: per_second(offered, elapsed),
        dropped,
        accepted_per_second: figures.visits_per_second,
    });
    figures.health = Some(health);

    let check = if args.no_check {
        None
    } else {
        eprintln!("checking the ledger against the run's settlements");
        let institutions = shared.population.hospitals();
        let known = std::mem::take(&mut *shared.known.lock().expect("known lock"));
        Some(
            check::check(CheckInput {
                ledger,
                settlement: bureau_clients,
                cities: &cities,
                institutions,
                run_tag: &run_tag,
                from_date,
                to_date: yitong_core::today().to_string(),
                before,
                known,
            })
            .await?,
        )
    };
    print_report(&args, &run_tag, &figures, check.as_ref())?;
    match check {
        Some(report) if !report.passed => Ok(Outcome::Findings),
        _ => Ok(Outcome::Clean),
    }
}

fn progress(length: Option<u64>, unit: &str) -> ProgressBar {
    let bar = match length {
        Some(length) => ProgressBar::new(length),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {unit} {{msg}}"
        ))
        .expect("valid progress template"),
    );
    bar
}

/// `clients` tasks, each running one visit after another, until `duration` has passed or
/// `visits` visits have started.
async fn closed_loop(
    shared: &Arc<Shared>,
    rng: &Arc<std::sync::Mutex<StdRng>>,
    numbers: &Arc<AtomicU64>,
    clients: u32,
    duration: Option<Duration>,
    visits: Option<u64>,
) {
    let started = Instant::now();
    let bar = match (visits, duration) {
        (Some(visits), _) => progress(Some(visits), "visits"),
        (None, Some(duration)) => progress(Some(duration.as_secs()), "s"),
        (None, None) => progress(None, "visits"),
    };
    let budget = Arc::new(AtomicU64::new(visits.unwrap_or(u64::MAX)));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (shared, rng, numbers, budget, bar) = (
            shared.clone(),
            rng.clone(),
            numbers.clone(),
            budget.clone(),
            bar.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                if duration.is_some_and(|duration| started.elapsed() >= duration)
                    || shared.stopping.load(Ordering::Relaxed)
                {
                    break;
                }
                // Take one visit from the budget; stop when it is spent.
                if budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                        left.checked_sub(1)
                    })
                    .is_err()
                {
                    break;
                }
                let plan = draw(&shared, &rng, &numbers);
                if !shared.visit(plan, Instant::now()).await {
                    tokio::time::sleep(FAILED_VISIT_PAUSE).await;
                }
                if visits.is_some() {
                    bar.inc(1);
                }
            }
        }));
    }
    let ticker = {
        let (bar, shared) = (bar.clone(), shared.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if visits.is_none() {
                    bar.set_position(started.elapsed().as_secs());
                }
                bar.set_message(format!(
                    "{} settled, {} failed, {}/s",
                    shared.stats.settled(),
                    shared.stats.failed(),
                    per_second(shared.stats.settled(), started.elapsed())
                ));
            }
        })
    };
    for task in tasks {
        task.await.expect("client task ends without panic");
    }
    ticker.abort();
    bar.finish_and_clear();
}

fn draw(shared: &Shared, rng: &std::sync::Mutex<StdRng>, numbers: &AtomicU64) -> Plan {
    let number = numbers.fetch_add(1, Ordering::Relaxed);
    let mut rng = rng.lock().expect("rng lock");
    Plan::draw(&shared.population, &shared.mix, number, &mut rng)
}

/// Visits arriving `rate` per second for `duration`, each in its own task; an arrival finding
/// `max_in_flight` visits running is dropped. Returns (offered, dropped).
async fn open_loop(
    shared: &Arc<Shared>,
    rng: &Arc<std::sync::Mutex<StdRng>>,
    numbers: &Arc<AtomicU64>,
    rate: u32,
    max_in_flight: u32,
    duration: Duration,
) -> (u64, u64) {
    let bar = progress(Some(duration.as_secs()), "s");
    let in_flight = Arc::new(Semaphore::new(max_in_flight as usize));
    let started = Instant::now();
    let interval = Duration::from_secs(1) / rate;
    let (mut offered, mut dropped) = (0u64, 0u64);
    let mut tasks = tokio::task::JoinSet::new();
    let mut due = started;
    while due < started + duration && !shared.stopping.load(Ordering::Relaxed) {
        tokio::time::sleep_until(due.into()).await;
        offered += 1;
        match in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let plan = draw(shared, rng, numbers);
                let shared = shared.clone();
                tasks.spawn(async move {
                    shared.visit(plan, due).await;
                    drop(permit);
                });
            }
            Err(_) => dropped += 1,
        }
        if offered.is_multiple_of(u64::from(rate.div_ceil(2)).max(1)) {
            bar.set_position(started.elapsed().as_secs());
            bar.set_message(format!(
                "offered {offered}, dropped {dropped}, {} settled, {} failed",
                shared.stats.settled(),
                shared.stats.failed()
            ));
        }
        // Arrivals keep to the schedule: a late wake-up sends the missed arrivals at once.
        due += interval;
        while let Some(finished) = tasks.try_join_next() {
            finished.expect("visit task ends without panic");
        }
    }
    while let Some(finished) = tasks.join_next().await {
        finished.expect("visit task ends without panic");
    }
    bar.finish_and_clear();
    (offered, dropped)
}

fn print_report(
    args: &BenchArgs,
    run_tag: &str,
    figures: &Figures,
    check: Option<&CheckReport>,
) -> anyhow::Result<()> {
    if args.json {
        let report = serde_json::json!({
            "run_tag": run_tag,
            "mode": if args.rate.is_some() { "open" } else { "closed" },
            "clients": args.rate.is_none().then_some(args.clients),
            "lines": args.lines,
            "cross_city_percent": args.cross_city_percent,
            "cancel_percent": args.cancel_percent,
            "pre_settle_percent": args.pre_settle_percent,
            "figures": figures,
            "check": check,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "run {run_tag}: {} visits settled, {} failed in {:.1} s: {} visits/s",
        figures.visits_settled,
        figures.visits_failed,
        Duration::from_millis(figures.elapsed_ms).as_secs_f64(),
        figures.visits_per_second
    );
    if let Some(open) = &figures.open_loop {
        println!(
            "open loop at {}/s: offered {} ({}/s), dropped {}, accepted {}/s",
            open.target_rate,
            open.offered,
            open.offered_per_second,
            open.dropped,
            open.accepted_per_second
        );
    }
    if let Some(health) = &figures.health {
        println!(
            "health checks: {}, slowest {:.1} ms, {} not SERVING within {} s",
            health.checks,
            health.slowest_ms,
            health.failed,
            health::ANSWER_MAX.as_secs()
        );
    }
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::NOTHING)
        .set_header(["latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"]);
    for latency in figures.calls.iter().chain(&figures.visit) {
        table.add_row([
            latency.name.to_owned(),
            latency.count.to_string(),
            format!("{:.2}", latency.p50_ms),
            format!("{:.2}", latency.p90_ms),
            format!("{:.2}", latency.p99_ms),
            format!("{:.2}", latency.p999_ms),
            format!("{:.2}", latency.max_ms),
        ]);
    }
    println!("{table}");
    let shares = &figures.fund_pay;
    println!(
        "fund pay in {} of {} settled visits ({}%); cross-city: {} of {} ({}%)",
        shares.visits_with_fund_pay,
        figures.visits_settled,
        percent(shares.visits_with_fund_pay, figures.visits_settled),
        shares.cross_city_with_fund_pay,
        shares.cross_city_visits,
        percent(shares.cross_city_with_fund_pay, shares.cross_city_visits),
    );
    if figures.failures.is_empty() {
        println!("errors: none");
    } else {
        println!("errors by status code:");
        for failure in &figures.failures {
            println!("  {} {}: {}", failure.rpc, failure.code, failure.count);
        }
    }
    print_check(check);
    Ok(())
}

/// `part` of `whole` in whole percent, rounded down; 0 of nothing is 0.
fn percent(part: u64, whole: u64) -> u64 {
    (part * 100).checked_div(whole).unwrap_or(0)
}

/// `--replay`: resends the lost calls of a call log, then checks the logged run.
async fn run_replay(args: &BenchArgs, path: &std::path::Path) -> anyhow::Result<Outcome> {
    let (header, calls) = calls::read(path)?;
    let Reached {
        cities,
        credentials,
        population,
        clients,
        bureau_clients,
        ledger,
        ..
    } = reach(args, 1).await?;
    let replayer = Replayer {
        clients,
        credentials,
        timeout: Duration::from_secs(args.timeout_secs),
    };
    eprintln!(
        "replaying the call log of run {} ({} calls)",
        header.run_tag,
        calls.len()
    );
    let (report, known) = replay::replay(&replayer, &calls, args.replay_ok_every).await?;
    let check = if args.no_check {
        None
    } else {
        eprintln!("checking the ledger against the run's settlements");
        Some(
            check::check(CheckInput {
                ledger,
                settlement: bureau_clients,
                cities: &cities,
                institutions: population.hospitals(),
                run_tag: &header.run_tag,
                from_date: header.from_date.clone(),
                to_date: yitong_core::today().to_string(),
                before: header.before.clone(),
                known,
            })
            .await?,
        )
    };
    print_replay(args, &header.run_tag, &report, check.as_ref())?;
    let consistent = report.inconsistencies.is_empty();
    match check {
        Some(check) if !check.passed => Ok(Outcome::Findings),
        _ if !consistent => Ok(Outcome::Findings),
        _ => Ok(Outcome::Clean),
    }
}

fn print_replay(
    args: &BenchArgs,
    run_tag: &str,
    report: &ReplayReport,
    check: Option<&CheckReport>,
) -> anyhow::Result<()> {
    if args.json {
        let report = serde_json::json!({
            "run_tag": run_tag,
            "replay": report,
            "check": check,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "replay of run {run_tag}: {} calls logged, {} settles acknowledged",
        report.calls, report.settles_acknowledged
    );
    println!(
        "lost answers replayed: {} ({}), answered {} and refused {} (voided or dead); {} OK \
         answers replayed to compare; {} sends repeated after ABORTED or UNAVAILABLE",
        report.lost_replayed,
        report
            .lost
            .iter()
            .map(|(rpc, count)| format!("{rpc} {count}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.lost_answered,
        report.lost_refused,
        report.ok_replayed,
        report.retries
    );
    println!("inconsistencies: {}", report.inconsistencies.len());
    for inconsistency in &report.inconsistencies {
        println!("  {inconsistency}");
    }
    print_check(check);
    Ok(())
}

fn print_check(check: Option<&CheckReport>) {
    match check {
        None => println!("invariant check: skipped"),
        Some(report) => {
            println!(
                "invariant check: {} ({} settlements of this run listed, {} settled, {} \
             cancelled; {} ledger accounts compared; {} journal entries verified)",
                if report.passed { "passed" } else { "FAILED" },
                report.settlements_listed,
                report.settled,
                report.cancelled,
                report.accounts_checked,
                report.journal_entries_verified
            );
            for problem in &report.problems {
                println!("  {problem}");
            }
        }
    }
}
