//! The process's Prometheus metrics: one registry per process, labelled by owner (a city or
//! the clearing house), so `yitong dev` and the sandbox, which run every node in one process,
//! still tell the cities apart.
//!
//! Money is counted in integer fen. Only RPC durations are floating point (seconds), as the
//! Prometheus convention wants.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// One RPC served: who served it, which method, and the gRPC status code it ended with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// "370300" or "clearing".
    pub owner: String,
    /// The fully qualified gRPC service, "yitong.settlement.v1.SettlementService".
    pub service: String,
    pub method: String,
    /// The gRPC status name, "OK" or "FAILED_PRECONDITION".
    pub code: String,
}

/// One RPC's duration, without the code (so a histogram per method, not per outcome).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub owner: String,
    pub service: String,
    pub method: String,
}

/// A settlement's pair of pools and what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SettlementLabels {
    #[prometheus(flatten)]
    pub pair: PairLabels,
    /// "settled", "refused" (the Settle failed before it was recorded), "cancelled".
    pub outcome: String,
}

/// A Settle refused at the treatment city: its pair of pools and why ([`refusal_reasons`]).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    #[prometheus(flatten)]
    pub pair: PairLabels,
    /// A business refusal's own reason, as its google.rpc.ErrorInfo names it to the HIS
    /// ([`BUSINESS_REFUSALS`]: "INSURANCE_SUSPENDED", "CARD_LOST", "NOT_FILED",
    /// "VISIT_SETTLED", ...), or else the class of the status it was answered with:
    /// "FAILED_PRECONDITION" (a business refusal of no listed reason), "NOT_FOUND",
    /// "INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAVAILABLE" (a peer or the store could not
    /// answer) or "INTERNAL".
    pub reason: String,
}

/// The outcomes of `yitong_settlements_total`.
pub const SETTLEMENT_OUTCOMES: [&str; 3] = ["settled", "refused", "cancelled"];

/// The business reasons a Settle is refused with (google.rpc.ErrorInfo), by whoever refuses
/// it: the credential and the person at the issuing city's identity, the benefit at the insured
/// city, the visit at the treatment city. Each is a reason of
/// `yitong_settlement_refusals_total` of its own; any other business refusal counts as
/// "FAILED_PRECONDITION", so a peer cannot grow the label set.
pub const BUSINESS_REFUSALS: [&str; 20] = [
    // The credential and the person (identity).
    "CARD_LOST",
    "CARD_CANCELLED",
    "E_VOUCHER_EXPIRED",
    "INSURANCE_SUSPENDED",
    "INSURANCE_TERMINATED",
    "NOT_INSURED_ON_DATE",
    "CITY_NOT_ENABLED",
    "ACCOUNT_INSUFFICIENT",
    // The benefit (the insured city).
    "INSTITUTION_NOT_NETWORKED",
    "NOT_FILED",
    "NOT_CERTIFIED",
    "DISEASE_NOT_COVERED",
    "RESERVATION_VOIDED",
    "VOIDED_BEFORE_RESERVED",
    // The visit (the treatment city).
    "NO_FEE_LINES",
    "TOO_MANY_LINES",
    "VISIT_SETTLED",
    "VISIT_CANCELLED",
    "MESSAGE_ID_DEAD",
    "SETTLEMENT_VOIDED",
];

/// The status classes a refused Settle is counted under when it has no reason of
/// [`BUSINESS_REFUSALS`].
pub const REFUSAL_CLASSES: [&str; 6] = [
    "FAILED_PRECONDITION",
    "NOT_FOUND",
    "INVALID_ARGUMENT",
    "PERMISSION_DENIED",
    "UNAVAILABLE",
    "INTERNAL",
];

/// Every reason of `yitong_settlement_refusals_total`: the business reasons, then the classes.
pub fn refusal_reasons() -> impl Iterator<Item = &'static str> {
    BUSINESS_REFUSALS.into_iter().chain(REFUSAL_CLASSES)
}

/// The reason a business refusal is counted under: its own when listed, else its class.
pub fn business_refusal(reason: &str) -> &'static str {
    BUSINESS_REFUSALS
        .into_iter()
        .find(|listed| *listed == reason)
        .unwrap_or("FAILED_PRECONDITION")
}

/// The classes of `yitong_reconciliation_breaks_total`.
pub const BREAK_CLASSES: [&str; 6] = [
    "missing_in_ledger",
    "missing_in_submission",
    "duplicate",
    "amount_mismatch",
    "timing",
    "totals",
];

/// The scopes of `yitong_reconciliation_breaks_total` whose subject is a city.
pub const CITY_BREAK_SCOPES: [&str; 2] = ["treatment_city", "insured_city"];

/// A settlement's treatment and insured pools, each beside the city that hosts it: a query sums
/// a city's pools by `*_city` or tells them apart by `*_pool` (a city's own pool has the city's
/// code in both).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PairLabels {
    /// The treatment pool's host city (`yitong_core::CityCode`).
    pub treatment_city: String,
    /// The treatment pool (`yitong_core::PoolCode`). national: mdtrtarea_admvs.
    pub treatment_pool: String,
    /// The insured pool's host city.
    pub insured_city: String,
    /// The insured pool. national: insuplc_admdvs.
    pub insured_pool: String,
}

/// A pool and its host city, as the pair labels take them.
#[derive(Clone, Copy, Debug)]
pub struct PoolOf<'a> {
    pub city: &'a str,
    pub pool: &'a str,
}

impl PairLabels {
    pub fn new(treatment: PoolOf<'_>, insured: PoolOf<'_>) -> PairLabels {
        PairLabels {
            treatment_city: treatment.city.to_owned(),
            treatment_pool: treatment.pool.to_owned(),
            insured_city: insured.city.to_owned(),
            insured_pool: insured.pool.to_owned(),
        }
    }
}

/// A pool, and the city that hosts it: a city's two pools are two series a query can sum by
/// `city` or tell apart by `pool`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    /// The host city's code (`yitong_core::CityCode`).
    pub city: String,
    /// The pool's code (`yitong_core::PoolCode`); the city's own pool has the city's code.
    pub pool: String,
}

/// One queue of a group commit: the ledger's bookings, a benefit service's Reserves and Posts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabels {
    /// Whose queue: a pool's code, or `clearing`.
    pub owner: String,
    /// Which queue of the owner's (`benefit`, `treatment`, `ledger`).
    pub queue: String,
}

/// Reconciliation breaks of one class found for one submitter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreakLabels {
    /// Whose records were reconciled: "institution", "treatment_city" or "insured_city".
    pub scope: String,
    /// The institution code or city code.
    pub subject: String,
    /// "missing_in_ledger", "missing_in_submission", "duplicate", "amount_mismatch", "timing",
    /// or "totals" for a totals reconciliation that did not match.
    pub class: String,
}

/// Every metric a Yitong process exposes.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub rpc_requests: Family<RpcLabels, Counter>,
    pub rpc_duration: Family<MethodLabels, Histogram>,
    pub settlements: Family<SettlementLabels, Counter>,
    pub settlement_refusals: Family<RefusalLabels, Counter>,
    pub fund_paid_fen: Family<PairLabels, Counter>,
    pub fund_returned_fen: Family<PairLabels, Counter>,
    pub settlements_in_doubt: Family<PoolLabels, Gauge>,
    pub reconciliation_breaks: Family<BreakLabels, Counter>,
    pub prepaid_available_fen: Family<PoolLabels, Gauge>,
    pub prepaid_below_threshold: Family<PoolLabels, Gauge>,
    /// Groups committed: with `group_requests`, the mean group size.
    pub group_commits: Family<GroupLabels, Counter>,
    /// Requests answered by committed groups.
    pub group_requests: Family<GroupLabels, Counter>,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn duration_histogram() -> Histogram {
    // 0.5 ms to about 16 s, doubling.
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("yitong");
        let metrics = Metrics {
            rpc_requests: Family::default(),
            rpc_duration: Family::new_with_constructor(duration_histogram),
            settlements: Family::default(),
            settlement_refusals: Family::default(),
            fund_paid_fen: Family::default(),
            fund_returned_fen: Family::default(),
            settlements_in_doubt: Family::default(),
            reconciliation_breaks: Family::default(),
            prepaid_available_fen: Family::default(),
            prepaid_below_threshold: Family::default(),
            group_commits: Family::default(),
            group_requests: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "rpc_requests",
            "gRPC calls served, by owner, method and status code",
            metrics.rpc_requests.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "time to serve one gRPC call, by owner and method",
            metrics.rpc_duration.clone(),
        );
        registry.register(
            "settlements",
            "settles, refusals and cancellations at the treatment pool, by pair of pools (each with its host city) and outcome",
            metrics.settlements.clone(),
        );
        registry.register(
            "settlement_refusals",
            "settles refused at the treatment city (counted as outcome refused too), by pair of pools and reason (the ErrorInfo reason the HIS got, or the status class)",
            metrics.settlement_refusals.clone(),
        );
        registry.register(
            "fund_paid_fen",
            "fund pay of settlements recorded at the treatment city, in fen, by pair of pools (cancellations do not subtract: the net is this less yitong_fund_returned_fen_total)",
            metrics.fund_paid_fen.clone(),
        );
        registry.register(
            "fund_returned_fen",
            "fund pay given back by cancellations recorded at the treatment city, in fen, by pair of pools",
            metrics.fund_returned_fen.clone(),
        );
        registry.register(
            "settlements_in_doubt",
            "settlements the treatment city's recovery sweep found pending or recorded but not completed",
            metrics.settlements_in_doubt.clone(),
        );
        registry.register(
            "reconciliation_breaks",
            "breaks found by detail and totals reconciliation, by submitter and class",
            metrics.reconciliation_breaks.clone(),
        );
        registry.register(
            "prepaid_available_fen",
            "a city's available prepaid fund at the clearing house, in fen, as of the last transfers created that moved it (a void or expiry of a pending one shows at the next)",
            metrics.prepaid_available_fen.clone(),
        );
        registry.register(
            "prepaid_below_threshold",
            "1 while a city's available prepaid fund is below its low-balance threshold",
            metrics.prepaid_below_threshold.clone(),
        );
        registry.register(
            "group_commits",
            "transactions committed by a group commit, by owner and queue",
            metrics.group_commits.clone(),
        );
        registry.register(
            "group_requests",
            "requests answered by a group commit's committed transactions, by owner and queue: divided by yitong_group_commits_total, the mean group size",
            metrics.group_requests.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The exposition in the OpenMetrics 1.0 text format, which Prometheus asks for first.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// The exposition in Prometheus' classic text format (0.0.4), for scrapers that do not ask
    /// for OpenMetrics and for `promtool check metrics`.
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode())
    }

    /// One served RPC.
    pub fn observe_rpc(&self, method: MethodLabels, code: &str, elapsed: Duration) {
        self.rpc_requests
            .get_or_create(&RpcLabels {
                owner: method.owner.clone(),
                service: method.service.clone(),
                method: method.method.clone(),
                code: code.to_owned(),
            })
            .inc();
        self.rpc_duration
            .get_or_create(&method)
            .observe(elapsed.as_secs_f64());
    }

    /// One settlement outcome at the treatment city, with the fund pay it moved: paid by a
    /// settled one, given back by a cancelled one (zero for a refusal).
    pub fn observe_settlement(&self, pair: &PairLabels, outcome: &str, fund_pay_fen: u64) {
        self.settlements
            .get_or_create(&SettlementLabels {
                pair: pair.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
        let fund = match outcome {
            "settled" => &self.fund_paid_fen,
            "cancelled" => &self.fund_returned_fen,
            _ => return,
        };
        if fund_pay_fen > 0 {
            fund.get_or_create(pair).inc_by(fund_pay_fen);
        }
    }

    /// One refused Settle at the treatment city: outcome "refused", and its reason (one of
    /// [`refusal_reasons`]).
    pub fn observe_refusal(&self, pair: &PairLabels, reason: &str) {
        debug_assert!(
            refusal_reasons().any(|listed| listed == reason),
            "reason {reason}"
        );
        self.observe_settlement(pair, "refused", 0);
        self.settlement_refusals
            .get_or_create(&RefusalLabels {
                pair: pair.clone(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Creates, at zero, every series a treatment city's settlement node will count, so each
    /// is there from start-up: a panel has a line before the first settlement, and `rate()`
    /// sees the first increment.
    pub fn start_treatment_city<'a>(
        &self,
        treatment: PoolOf<'_>,
        insured_pools: impl IntoIterator<Item = PoolOf<'a>>,
    ) {
        for insured in insured_pools {
            let pair = PairLabels::new(treatment, insured);
            for outcome in SETTLEMENT_OUTCOMES {
                let _ = self.settlements.get_or_create(&SettlementLabels {
                    pair: pair.clone(),
                    outcome: outcome.to_owned(),
                });
            }
            for reason in refusal_reasons() {
                let _ = self.settlement_refusals.get_or_create(&RefusalLabels {
                    pair: pair.clone(),
                    reason: reason.to_owned(),
                });
            }
            let _ = self.fund_paid_fen.get_or_create(&pair);
            let _ = self.fund_returned_fen.get_or_create(&pair);
        }
        let _ = self.settlements_in_doubt.get_or_create(&PoolLabels {
            city: treatment.city.to_owned(),
            pool: treatment.pool.to_owned(),
        });
    }

    /// Creates, at zero, the reconciliation breaks of every class for each city as treatment
    /// and as insured city (an institution's appear with its first break: the clearing house
    /// does not list institutions).
    pub fn start_reconciliation<'a>(&self, cities: impl IntoIterator<Item = &'a str>) {
        for city in cities {
            for scope in CITY_BREAK_SCOPES {
                for class in BREAK_CLASSES {
                    let _ = self.reconciliation_breaks.get_or_create(&BreakLabels {
                        scope: scope.to_owned(),
                        subject: city.to_owned(),
                        class: class.to_owned(),
                    });
                }
            }
        }
    }

    /// Creates the call counter (code OK) and the duration histogram of every method a server
    /// of `owner` serves for `service` ("yitong.settlement.v1.SettlementService"), at zero.
    /// The other codes appear with their first call.
    pub fn start_service<'a>(
        &self,
        owner: &str,
        service: &str,
        methods: impl IntoIterator<Item = &'a str>,
    ) {
        for method in methods {
            let labels = MethodLabels {
                owner: owner.to_owned(),
                service: service.to_owned(),
                method: method.to_owned(),
            };
            let _ = self.rpc_requests.get_or_create(&RpcLabels {
                owner: owner.to_owned(),
                service: service.to_owned(),
                method: method.to_owned(),
                code: "OK".to_owned(),
            });
            let _ = self.rpc_duration.get_or_create(&labels);
        }
    }
}

/// OpenMetrics text to Prometheus' 0.0.4 text, for the metric types this registry holds
/// (counters, gauges, histograms): the two differ only in that OpenMetrics names a counter's
/// family without the `_total` its samples carry, and ends with `# EOF`.
fn to_prometheus_text(openmetrics: &str) -> String {
    let lines: Vec<&str> = openmetrics.lines().collect();
    let counters: std::collections::HashSet<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in lines {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(renamed) => text.push_str(&renamed),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the classic text names counter families as their samples are named and drops the
    // OpenMetrics end marker, leaving gauges and histograms as they were.
    #[test]
    fn classic_text_names_counters_with_total() {
        let openmetrics = "# HELP a_calls calls.\n# TYPE a_calls counter\na_calls_total{x=\"1\"} 2\n\
            # HELP a_level level.\n# TYPE a_level gauge\na_level 3\n# EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP a_calls_total calls.\n# TYPE a_calls_total counter\na_calls_total{x=\"1\"} 2\n\
             # HELP a_level level.\n# TYPE a_level gauge\na_level 3\n"
        );
    }
}
