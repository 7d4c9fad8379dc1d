//! The operators' page: every node's health (the gRPC health check of each service of each
//! enabled city and of the ledger, with its latency), the call rates and failures the nodes'
//! Prometheus endpoints count, the settlements in doubt with the recovery sweep's last error,
//! and the links into the trace viewer and Grafana.
//!
//! Call rates come from the nodes' own metrics endpoints (`GET /metrics`, the counter
//! `yitong_rpc_requests_total` by owner, method and status code), which the console is told
//! about (`yitong console --metrics-url`; `yitong dev` passes its own): the servers already
//! count every call there for Prometheus, so asking them again through a new RPC would count
//! the same thing twice. A counter gives totals; the rate is the change since the console's
//! previous scrape, kept in memory, so the first look shows totals only.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use yitong_core::{Owner, PoolCode, Service};
use yitong_proto::settlement::v1::Settlement;
use yitong_rpc::Caller;

use crate::Shared;
use crate::pages::{Signed, city_name};
use crate::staff::Role;
use crate::text;

/// Deadline of one health check.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Deadline of one scrape of a metrics endpoint.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest metrics page read.
const SCRAPE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Days back the page looks for settlements in doubt.
const IN_DOUBT_DAYS: u64 = 2;
/// The counter of calls served, as the classic Prometheus text names its samples.
const CALLS_COUNTER: &str = "yitong_rpc_requests_total";

/// Calls counted per owner at one scrape: (owner, method, code) → count.
type Counts = BTreeMap<(String, String, String), u64>;

/// The previous scrape, for rates.
#[derive(Debug, Default)]
pub struct Scrapes {
    previous: Mutex<Option<(Instant, Counts)>>,
}

/// One node's answer to its health check.
struct Health {
    owner: Owner,
    service: Service,
    outcome: Result<String, String>,
    latency_ms: u64,
}

async fn check(console: Shared, caller: Caller, owner: Owner, service: Service) -> Health {
    let started = Instant::now();
    let outcome = match console.connect.channel(&caller, owner, service) {
        Err(error) => Err(error.to_string()),
        Ok(channel) => {
            let mut health = HealthClient::new(channel);
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request.set_timeout(HEALTH_TIMEOUT);
            match tokio::time::timeout(HEALTH_TIMEOUT, health.check(request)).await {
                Ok(Ok(reply)) => Ok(reply.into_inner().status().as_str_name().to_owned()),
                Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                Err(_) => Err("timed out".to_owned()),
            }
        }
    };
    Health {
        owner,
        service,
        outcome,
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Reads `url` (http://host:port/metrics) and returns the calls counter's samples.
async fn scrape(url: &str) -> Result<Counts, String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("{url} is not a URL"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url} names no host"))?
        .clone();
    let fetch = async {
        let stream = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|error| error.to_string())?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|error| error.to_string())?;
        tokio::spawn(connection);
        let request = http::Request::get(uri.path())
            .header(http::header::HOST, authority.as_str())
            .header(http::header::ACCEPT, "text/plain")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|error| error.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let body = http_body_util::Limited::new(response.into_body(), SCRAPE_BYTES_MAX);
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map_err(|error| error.to_string())?
            .to_bytes();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    let text = tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("{url} timed out"))??;
    Ok(calls_of(&text))
}

/// The samples of the calls counter in a Prometheus text page.
fn calls_of(text: &str) -> Counts {
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(CALLS_COUNTER) else {
            continue;
        };
        let Some((labels, value)) = rest
            .strip_prefix('{')
            .and_then(|rest| rest.rsplit_once('}'))
        else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .find(|(key, _)| key.trim() == name)
                .map(|(_, value)| value.trim().trim_matches('"').to_owned())
                .unwrap_or_default()
        };
        *counts
            .entry((label("owner"), label("method"), label("code")))
            .or_default() += value;
    }
    counts
}

/// One owner's calls: totals, failures, the rate since the previous scrape and the failing
/// (method, code) that rose since then (or, on a first look, every failing one).
#[derive(Debug, Default)]
struct Calls {
    total: u64,
    failed: u64,
    per_minute: Option<u64>,
    failures: Vec<(String, String, u64)>,
}

fn summarise(now: &Counts, previous: Option<(Duration, &Counts)>) -> BTreeMap<String, Calls> {
    let mut owners: BTreeMap<String, Calls> = BTreeMap::new();
    for ((owner, method, code), count) in now {
        let calls = owners.entry(owner.clone()).or_default();
        calls.total += count;
        let before = previous
            .and_then(|(_, counts)| counts.get(&(owner.clone(), method.clone(), code.clone())))
            .copied()
            .unwrap_or(0);
        if code != "OK" {
            calls.failed += count;
            let rose = count.saturating_sub(before);
            let shown = if previous.is_some() { rose } else { *count };
            if shown > 0 {
                calls.failures.push((method.clone(), code.clone(), shown));
            }
        }
    }
    if let Some((elapsed, counts)) = previous {
        let elapsed_ms = u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        for (owner, calls) in &mut owners {
            let before: u64 = counts
                .iter()
                .filter(|((counted, _, _), _)| counted == owner)
                .map(|(_, count)| *count)
                .sum();
            calls.per_minute =
                Some(calls.total.saturating_sub(before).saturating_mul(60_000) / elapsed_ms);
        }
    }
    owners
}

pub async fn page(State(console): State<Shared>, signed: Signed) -> Response {
    if let Err(refusal) = signed.require(&[Role::Operator]) {
        return refusal;
    }
    let lang = signed.lang;
    let cities: Vec<PoolCode> = console
        .network
        .enabled_pools()
        .map(|city| city.code)
        .collect();
    // The checks run together: a node that does not answer costs its timeout once, not once
    // per node after it.
    let mut nodes: Vec<(Owner, Service)> = cities
        .iter()
        .flat_map(|city| {
            [Service::Identity, Service::Catalog, Service::Settlement]
                .map(|service| (Owner::Pool(*city), service))
        })
        .collect();
    nodes.push((Owner::ClearingHouse, Service::Ledger));
    let mut checks = tokio::task::JoinSet::new();
    for (index, (owner, service)) in nodes.iter().enumerate() {
        let (console, caller) = (console.clone(), signed.caller().clone());
        let (owner, service) = (*owner, *service);
        checks.spawn(async move { (index, check(console, caller, owner, service).await) });
    }
    let mut health: Vec<(usize, Health)> = checks.join_all().await;
    health.sort_by_key(|(index, _)| *index);
    let health: Vec<Health> = health.into_iter().map(|(_, health)| health).collect();

    let mut scraped = Counts::new();
    let mut scrape_errors = Vec::new();
    for url in &console.metrics_urls {
        match scrape(url).await {
            Ok(counts) => {
                for (key, count) in counts {
                    *scraped.entry(key).or_default() += count;
                }
            }
            Err(error) => scrape_errors.push(error),
        }
    }
    let calls = {
        let mut previous = console.scrapes.previous.lock().expect("scrapes lock");
        let now = Instant::now();
        let summary = summarise(
            &scraped,
            previous
                .as_ref()
                .map(|(at, counts)| (now.duration_since(*at), counts)),
        );
        if !console.metrics_urls.is_empty() && scrape_errors.is_empty() {
            *previous = Some((now, scraped));
        }
        summary
    };

    let today = text::today();
    let to = today.format("%Y-%m-%d").to_string();
    let from = today
        .checked_sub_days(chrono::Days::new(IN_DOUBT_DAYS))
        .unwrap_or(today)
        .format("%Y-%m-%d")
        .to_string();
    let mut in_doubt: Vec<Settlement> = Vec::new();
    let mut in_doubt_errors: Vec<(PoolCode, String)> = Vec::new();
    for city in &cities {
        match crate::search::in_doubt_at(&console, &signed, *city, &from, &to).await {
            Ok(found) => in_doubt.extend(found),
            Err(error) => in_doubt_errors.push((*city, error)),
        }
    }
    let owner_name = |owner: &Owner| match owner {
        Owner::Pool(city) => city_name(&console, &city.to_string(), lang),
        Owner::ClearingHouse => lang.t("clearing_house").to_owned(),
    };
    // The metrics name an owner by its code, "370300" or "clearing".
    let owner_label = |owner: &str| match owner.parse::<PoolCode>() {
        Ok(city) => owner_name(&Owner::Pool(city)),
        Err(_) if owner == "clearing" => owner_name(&Owner::ClearingHouse),
        Err(_) => owner.to_owned(),
    };
    let body = html! {
        h2 { (lang.t("health")) }
        table #nodes {
            thead { tr {
                th scope="col" { (lang.t("node")) }
                th scope="col" { (lang.t("service")) }
                th scope="col" { (lang.t("status")) }
                th scope="col" { (lang.t("latency_ms")) }
            } }
            tbody {
                @for node in &health {
                    tr {
                        td { (owner_name(&node.owner)) }
                        td { (node.service.to_string()) }
                        @match &node.outcome {
                            Ok(status) => td { (status) },
                            Err(error) => td.error { (error) },
                        }
                        td.num { (node.latency_ms) }
                    }
                }
            }
        }
        h2 { (lang.t("call_rates")) }
        @if console.metrics_urls.is_empty() {
            p { (lang.t("no_metrics")) }
        }
        @for error in &scrape_errors {
            p.error role="alert" { (error) }
        }
        @if !calls.is_empty() {
            table #calls {
                thead { tr {
                    th scope="col" { (lang.t("node")) }
                    th scope="col" { (lang.t("calls_total")) }
                    th scope="col" { (lang.t("calls_failed")) }
                    th scope="col" { (lang.t("calls_per_minute")) }
                    th scope="col" { (lang.t("recent_failures")) }
                } }
                tbody {
                    @for (owner, summary) in &calls {
                        tr {
                            td { (owner_label(owner)) }
                            td.num { (summary.total) }
                            td.num { (summary.failed) }
                            td.num { @if let Some(rate) = summary.per_minute { (rate) } @else { "—" } }
                            td {
                                @for (method, code, count) in &summary.failures {
                                    (method) " " (code) " ×" (count) br;
                                }
                            }
                        }
                    }
                }
            }
        }
        p {
            a href=(console.trace_url_template.replace("{trace_id}", "")) { (lang.t("trace_viewer")) }
            @if !console.grafana_url.is_empty() {
                " · " a href=(console.grafana_url) { "Grafana" }
            }
        }
        h2 { (lang.t("in_doubt")) }
        @for (city, error) in &in_doubt_errors {
            p.error role="alert" { (city_name(&console, &city.to_string(), lang)) ": " (error) }
        }
        table #in-doubt {
            thead { tr {
                th scope="col" { (lang.t("settlement_id")) }
                th scope="col" { (lang.t("institution")) }
                th scope="col" { (lang.t("settled_at")) }
                th scope="col" { (lang.t("attempts")) }
                th scope="col" { (lang.t("last_error")) }
                th scope="col" { (lang.t("trace")) }
            } }
            tbody {
                @for settlement in &in_doubt {
                    tr {
                        td { a href=(format!("/settlements/{}", settlement.settlement_id)) { (settlement.settlement_id) } }
                        td { (settlement.institution_code) }
                        td { (text::cst(settlement.settled_at.as_ref())) }
                        td.num.attempts { (settlement.completion_attempts) }
                        td.last-error { @if settlement.last_error.is_empty() { (lang.t("none")) } @else { (settlement.last_error) } }
                        td {
                            @if settlement.trace_id.is_empty() { (lang.t("none")) }
                            @else { a href=(console.trace_url_template.replace("{trace_id}", &settlement.trace_id)) { (settlement.trace_id) } }
                        }
                    }
                }
            }
        }
    };
    signed.page(lang.t("operator"), body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The calls counter is read from the classic text, summed per owner, and its rate and
    // recent failures come from the change since the previous scrape.
    #[test]
    fn calls_and_rates() {
        let page = "# TYPE yitong_rpc_requests_total counter\n\
            yitong_rpc_requests_total{owner=\"370300\",service=\"s\",method=\"Settle\",code=\"OK\"} 10\n\
            yitong_rpc_requests_total{owner=\"370300\",service=\"s\",method=\"Settle\",code=\"FAILED_PRECONDITION\"} 2\n\
            yitong_rpc_duration_seconds_count{owner=\"370300\"} 12\n";
        let first = calls_of(page);
        assert_eq!(first.len(), 2);
        let summary = summarise(&first, None);
        assert_eq!(summary["370300"].total, 12);
        assert_eq!(summary["370300"].failed, 2);
        assert_eq!(summary["370300"].per_minute, None);
        assert_eq!(
            summary["370300"].failures,
            vec![("Settle".to_owned(), "FAILED_PRECONDITION".to_owned(), 2)]
        );
        let later = calls_of(&page.replace("} 10", "} 40"));
        let summary = summarise(&later, Some((Duration::from_secs(30), &first)));
        assert_eq!(summary["370300"].per_minute, Some(60));
        assert!(summary["370300"].failures.is_empty(), "no new failure");
    }
}
