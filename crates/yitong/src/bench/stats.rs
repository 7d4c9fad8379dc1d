//! What a bench run measures: latency histograms per RPC and per visit, visits settled and
//! failed, and failures by RPC and status code; and the report drawn from them.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The calls a visit makes, in the order it makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rpc {
    RegisterVisit,
    UploadFeeLines,
    PreSettle,
    Settle,
    CancelSettlement,
    ReverseByMessageId,
}

impl Rpc {
    const ALL: [Rpc; 6] = [
        Rpc::RegisterVisit,
        Rpc::UploadFeeLines,
        Rpc::PreSettle,
        Rpc::Settle,
        Rpc::CancelSettlement,
        Rpc::ReverseByMessageId,
    ];

    fn name(self) -> &'static str {
        match self {
            Rpc::RegisterVisit => "RegisterVisit",
            Rpc::UploadFeeLines => "UploadFeeLines",
            Rpc::PreSettle => "PreSettle",
            Rpc::Settle => "Settle",
            Rpc::CancelSettlement => "CancelSettlement",
            Rpc::ReverseByMessageId => "ReverseByMessageId",
        }
    }
}

/// Latencies are kept in microseconds, from 1 µs to 10 minutes, to three significant digits.
const LATENCY_MAX_US: u64 = 600_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("valid histogram bounds")
}

#[derive(Debug)]
struct Recorded {
    /// One per `Rpc::ALL`, same order.
    calls: Vec<Histogram<u64>>,
    /// Whole visits, from the moment the visit was due (open loop) or began (closed loop) to
    /// its last reply: an open-loop visit delayed by a saturated system counts its wait.
    visits: Histogram<u64>,
    /// Failed calls by RPC and gRPC status code.
    failures: BTreeMap<(Rpc, String), u64>,
}

/// Shared by every client task; each record takes a short lock.
#[derive(Debug)]
pub struct Stats {
    recorded: Mutex<Recorded>,
    visits_settled: AtomicU64,
    visits_failed: AtomicU64,
    visits_with_fund_pay: AtomicU64,
    cross_city_visits: AtomicU64,
    cross_city_with_fund_pay: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            recorded: Mutex::new(Recorded {
                calls: Rpc::ALL.iter().map(|_| histogram()).collect(),
                visits: histogram(),
                failures: BTreeMap::new(),
            }),
            visits_settled: AtomicU64::new(0),
            visits_failed: AtomicU64::new(0),
            visits_with_fund_pay: AtomicU64::new(0),
            cross_city_visits: AtomicU64::new(0),
            cross_city_with_fund_pay: AtomicU64::new(0),
        }
    }
}

fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, LATENCY_MAX_US)
}

impl Stats {
    pub fn record(&self, rpc: Rpc, elapsed: Duration) {
        let index = Rpc::ALL.iter().position(|r| *r == rpc).expect("known rpc");
        let mut recorded = self.recorded.lock().expect("stats lock");
        recorded.calls[index].saturating_record(micros(elapsed));
    }

    pub fn fail(&self, rpc: Rpc, code: tonic::Code) {
        let mut recorded = self.recorded.lock().expect("stats lock");
        *recorded
            .failures
            .entry((rpc, format!("{code:?}")))
            .or_default() += 1;
    }

    /// A settled visit: how long it took, whether across cities, whether the fund paid.
    pub fn visit_settled(&self, elapsed: Duration, cross_city: bool, fund_paid: bool) {
        self.visits_settled.fetch_add(1, Ordering::Relaxed);
        let count = |counter: &AtomicU64, when: bool| {
            if when {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        };
        count(&self.visits_with_fund_pay, fund_paid);
        count(&self.cross_city_visits, cross_city);
        count(&self.cross_city_with_fund_pay, cross_city && fund_paid);
        let mut recorded = self.recorded.lock().expect("stats lock");
        recorded.visits.saturating_record(micros(elapsed));
    }

    pub fn visit_failed(&self) {
        self.visits_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn settled(&self) -> u64 {
        self.visits_settled.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.visits_failed.load(Ordering::Relaxed)
    }

    /// The figures of the run, `elapsed` being the measured time.
    pub fn report(&self, elapsed: Duration) -> Figures {
        let recorded = self.recorded.lock().expect("stats lock");
        let calls = Rpc::ALL
            .iter()
            .zip(&recorded.calls)
            .filter(|(_, histogram)| !histogram.is_empty())
            .map(|(rpc, histogram)| Latency::of(rpc.name(), histogram))
            .collect();
        let failures = recorded
            .failures
            .iter()
            .map(|((rpc, code), count)| Failure {
                rpc: rpc.name(),
                code: code.clone(),
                count: *count,
            })
            .collect();
        Figures {
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            visits_settled: self.settled(),
            visits_failed: self.failed(),
            visits_per_second: per_second(self.settled(), elapsed),
            visit: (!recorded.visits.is_empty()).then(|| Latency::of("visit", &recorded.visits)),
            calls,
            failures,
            fund_pay: FundPayShare {
                visits_with_fund_pay: self.visits_with_fund_pay.load(Ordering::Relaxed),
                cross_city_visits: self.cross_city_visits.load(Ordering::Relaxed),
                cross_city_with_fund_pay: self.cross_city_with_fund_pay.load(Ordering::Relaxed),
            },
            open_loop: None,
            health: None,
        }
    }
}

/// Events per second over `elapsed`, for display.
// Display only: a rate printed for people, never money.
#[allow(clippy::float_arithmetic)]
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    (count as f64 / seconds * 10.0).round() / 10.0
}

/// Latency percentiles of one RPC (or of whole visits), in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub name: &'static str,
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    // Display only: microseconds shown as milliseconds with three decimals.
    #[allow(clippy::float_arithmetic)]
    fn of(name: &'static str, histogram: &Histogram<u64>) -> Latency {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            name,
            count: histogram.len(),
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p90_ms: ms(histogram.value_at_quantile(0.90)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Failure {
    pub rpc: &'static str,
    pub code: String,
    pub count: u64,
}

/// Offered against accepted load of an open-loop run.
#[derive(Debug, Serialize)]
pub struct OpenLoop {
    /// The arrival rate asked for, visits per second.
    pub target_rate: u32,
    /// Visits that arrived (were due) during the run.
    pub offered: u64,
    pub offered_per_second: f64,
    /// Visits that arrived while `max_in_flight` visits were already running, and were dropped
    /// without a call: the system was not keeping up.
    pub dropped: u64,
    /// Visits settled, per second.
    pub accepted_per_second: f64,
}

/// Settled visits with fund pay, of all and of the cross-city ones.
#[derive(Debug, Serialize)]
pub struct FundPayShare {
    pub visits_with_fund_pay: u64,
    pub cross_city_visits: u64,
    pub cross_city_with_fund_pay: u64,
}

/// Everything `yitong bench` reports.
#[derive(Debug, Serialize)]
pub struct Figures {
    pub elapsed_ms: u64,
    pub visits_settled: u64,
    pub visits_failed: u64,
    pub visits_per_second: f64,
    pub visit: Option<Latency>,
    pub calls: Vec<Latency>,
    pub failures: Vec<Failure>,
    /// How many settled visits the fund paid part of: the benefit path's share of the load.
    pub fund_pay: FundPayShare,
    pub open_loop: Option<OpenLoop>,
    /// Health checks of the settlement servers made during the load.
    pub health: Option<super::health::HealthFigures>,
}
