//! The metrics endpoint, scraped after known traffic and checked with Prometheus' own tooling.

use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic::Code;
use yitong_core::{Amount, Service};
use yitong_proto::ledger::v1::reconciliation_scope::Subject;
use yitong_proto::ledger::v1::{
    GetBalancesRequest, ReconcileTotalsRequest, ReconciliationScope, ReconciliationTotals,
};
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_proto::settlement::v1::{
    CancelSettlementRequest, GetSettlementRequest, SettleRequest, get_settlement_request::Key,
};
use yitong_sandbox::{BINZHOU, DONGYING, Database, JINAN, Sandbox};

use crate::collector::collector;
use crate::visit::{card, his_channel, settle_visit};

/// GET /metrics over HTTP/1.0: the status line and the body.
async fn scrape(address: std::net::SocketAddr) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("the endpoint accepts");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
        .await
        .expect("request sent");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The value of the sample `name{labels}` exactly as written in the exposition.
fn sample(exposition: &str, series: &str) -> Option<String> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|value| value.split(' ').next().unwrap_or_default().to_owned())
    })
}

/// Whether a missing promtool fails the test: under CI, and wherever PostgreSQL is required
/// (as `.ci/run` requires it), the check must run.
pub fn promtool_required() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
        || std::env::var("YITONG_REQUIRE_POSTGRES").is_ok_and(|value| value == "1")
}

/// `promtool check metrics` on the exposition; `None` when promtool is not installed.
async fn promtool_check(exposition: &str) -> Option<(bool, String)> {
    let child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => panic!("cannot run promtool: {error}"),
    };
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(exposition.as_bytes())
        .await
        .expect("promtool reads");
    drop(stdin);
    let output = child.wait_with_output().await.expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success(), said))
}

// Proves the metrics endpoint serves an exposition that `promtool check metrics` accepts, and
// that after known traffic (two Binzhou settlements of Dongying-insured patients, one of them
// cancelled, a second Settle of the settled visit refused before its intent, a GetSettlement
// of an unknown id, a totals reconciliation that does not match) it counts exactly that: RPCs
// by method and code with their durations, settlements by city pair and outcome, the refusal
// by its reason, the fund pay and the fund pay given back in fen, the reconciliation break,
// and the prepaid fund available that the ledger reports. No other test of this binary
// settles for this pair. Every series is there from start-up, at zero before its first use:
// the pairs and reasons nothing touched, a method never called, the prepaid fund of a city
// no transfer moved here, a reconciliation subject never reconciled.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_counts_known_traffic_and_promtool_accepts_it() {
    collector();
    let net = Sandbox::start(Database::Sqlite)
        .await
        .expect("SQLite always starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("bound");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(yitong_telemetry::serve_metrics(listener, async move {
        let _ = stopped.await;
    }));

    // Prepaid funds, read by the ledger at start-up, before any transfer moves them here.
    let (_, at_start) = scrape(address).await;
    assert!(
        sample(
            &at_start,
            &format!(r#"yitong_prepaid_available_fen{{city="{BINZHOU}",pool="{BINZHOU}"}}"#)
        )
        .is_some(),
        "the prepaid gauge is there from start-up:\n{at_start}"
    );

    let first = settle_visit(&net, "METRICS-1", BINZHOU, DONGYING, 1).await;
    let second = settle_visit(&net, "METRICS-2", BINZHOU, DONGYING, 2).await;
    let fund_pay: i64 = [&first, &second]
        .iter()
        .map(|settlement| {
            let split = settlement.split.as_ref().expect("split");
            Amount::parse(&split.fund_pay).expect("fund pay").fen()
        })
        .sum();
    assert!(fund_pay > 0, "the fund paid something");
    let mut his = SettlementServiceClient::new(his_channel(&net, BINZHOU, Service::Settlement));
    his.cancel_settlement(CancelSettlementRequest {
        message_id: "C-METRICS-2".into(),
        settlement_id: second.settlement_id.clone(),
        visit_id: second.visit_id.clone(),
        person_no: second.person_no.clone(),
        institution_code: second.institution_code.clone(),
        reason: "wrong lines".into(),
        operator_id: "op1".into(),
    })
    .await
    .expect("cancelled");
    // The settled visit again, under a new message id: refused before any intent.
    let again = his
        .settle(SettleRequest {
            message_id: "S-METRICS-1-AGAIN".into(),
            visit_id: first.visit_id.clone(),
            person_no: first.person_no.clone(),
            credential: card(DONGYING, 1),
            insurance_type: first.insurance_type,
            total_amount: "3052.00".into(),
            use_personal_account: false,
            institution_code: first.institution_code.clone(),
            operator_id: "op1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    let second_fund_pay = Amount::parse(&second.split.as_ref().expect("split").fund_pay)
        .expect("fund pay")
        .fen();
    let unknown = his
        .get_settlement(GetSettlementRequest {
            key: Some(Key::SettlementId("NO-SUCH-SETTLEMENT".into())),
            institution_code: first.institution_code.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let mut ledger = net.ledger();
    ledger
        .reconcile_totals(ReconcileTotalsRequest {
            message_id: "TOT-METRICS-1".into(),
            scope: Some(ReconciliationScope {
                subject: Some(Subject::TreatmentCity(BINZHOU.into())),
            }),
            from_date: first.settlement_date.clone(),
            to_date: first.settlement_date.clone(),
            // Nothing submitted: the ledger holds the settlements, so the totals differ.
            totals: Some(ReconciliationTotals {
                count: 0,
                total_amount: "0.00".into(),
                fund_pay: "0.00".into(),
                account_pay: "0.00".into(),
                cash_pay: "0.00".into(),
                ..Default::default()
            }),
            operator_id: "binzhou-bureau-1".into(),
            ..Default::default()
        })
        .await
        .expect("answered");
    let balances = ledger
        .get_balances(GetBalancesRequest {
            cities: vec![DONGYING.into()],
            ..Default::default()
        })
        .await
        .expect("balances")
        .into_inner();
    let available = Amount::parse_signed(&balances.prepaid_funds[0].available)
        .expect("available")
        .fen();

    let (status, exposition) = scrape(address).await;
    assert!(status.ends_with("200 OK"), "{status}");

    match promtool_check(&exposition).await {
        Some((passed, said)) => assert!(passed, "promtool check metrics: {said}\n{exposition}"),
        None if promtool_required() => {
            panic!("promtool is required here (CI) but not installed: apt-get install prometheus")
        }
        None => eprintln!(
            "\n*** SKIPPED the promtool check: promtool is not installed (apt-get install prometheus); the values were still checked. ***\n"
        ),
    }

    // A city's own pool has the city's code: each pool is labelled beside its host city.
    let pair = format!(
        r#"treatment_city="{BINZHOU}",treatment_pool="{BINZHOU}",insured_city="{DONGYING}",insured_pool="{DONGYING}""#
    );
    let expected = [
        (
            format!(r#"yitong_settlements_total{{{pair},outcome="settled"}}"#),
            "2".to_owned(),
        ),
        (
            format!(r#"yitong_settlements_total{{{pair},outcome="cancelled"}}"#),
            "1".to_owned(),
        ),
        (
            format!(r#"yitong_settlements_total{{{pair},outcome="refused"}}"#),
            "1".to_owned(),
        ),
        (
            format!(r#"yitong_settlement_refusals_total{{{pair},reason="VISIT_SETTLED"}}"#),
            "1".to_owned(),
        ),
        (
            format!(r#"yitong_settlement_refusals_total{{{pair},reason="FAILED_PRECONDITION"}}"#),
            "0".to_owned(),
        ),
        (
            format!(r#"yitong_settlement_refusals_total{{{pair},reason="INSURANCE_SUSPENDED"}}"#),
            "0".to_owned(),
        ),
        (
            format!(r#"yitong_settlement_refusals_total{{{pair},reason="UNAVAILABLE"}}"#),
            "0".to_owned(),
        ),
        (
            format!(r#"yitong_fund_paid_fen_total{{{pair}}}"#),
            fund_pay.to_string(),
        ),
        (
            format!(r#"yitong_fund_returned_fen_total{{{pair}}}"#),
            second_fund_pay.to_string(),
        ),
        // From start-up, before first use.
        (
            format!(
                r#"yitong_settlements_total{{treatment_city="{JINAN}",treatment_pool="{JINAN}",insured_city="{BINZHOU}",insured_pool="{BINZHOU}",outcome="cancelled"}}"#
            ),
            "0".to_owned(),
        ),
        (
            format!(
                r#"yitong_fund_paid_fen_total{{treatment_city="{JINAN}",treatment_pool="{JINAN}",insured_city="{BINZHOU}",insured_pool="{BINZHOU}"}}"#
            ),
            "0".to_owned(),
        ),
        (
            format!(
                r#"yitong_rpc_requests_total{{owner="{BINZHOU}",service="yitong.identity.v1.IdentityService",method="IssueCard",code="OK"}}"#
            ),
            "0".to_owned(),
        ),
        (
            format!(
                r#"yitong_rpc_duration_seconds_count{{owner="{BINZHOU}",service="yitong.identity.v1.IdentityService",method="IssueCard"}}"#
            ),
            "0".to_owned(),
        ),
        (
            format!(
                r#"yitong_reconciliation_breaks_total{{scope="insured_city",subject="{JINAN}",class="timing"}}"#
            ),
            "0".to_owned(),
        ),
        (
            format!(
                r#"yitong_rpc_requests_total{{owner="{BINZHOU}",service="yitong.settlement.v1.SettlementService",method="Settle",code="OK"}}"#
            ),
            "2".to_owned(),
        ),
        (
            format!(
                r#"yitong_rpc_requests_total{{owner="{BINZHOU}",service="yitong.settlement.v1.SettlementService",method="GetSettlement",code="NOT_FOUND"}}"#
            ),
            "1".to_owned(),
        ),
        (
            format!(
                r#"yitong_rpc_duration_seconds_count{{owner="{BINZHOU}",service="yitong.settlement.v1.SettlementService",method="Settle"}}"#
            ),
            // Two settled, one refused.
            "3".to_owned(),
        ),
        (
            format!(
                r#"yitong_reconciliation_breaks_total{{scope="treatment_city",subject="{BINZHOU}",class="totals"}}"#
            ),
            "1".to_owned(),
        ),
        (
            format!(r#"yitong_prepaid_available_fen{{city="{DONGYING}",pool="{DONGYING}"}}"#),
            available.to_string(),
        ),
        (
            format!(r#"yitong_settlements_in_doubt{{city="{BINZHOU}",pool="{BINZHOU}"}}"#),
            "0".to_owned(),
        ),
    ];
    for (series, value) in expected {
        assert_eq!(
            sample(&exposition, &series).as_deref(),
            Some(value.as_str()),
            "{series} in\n{exposition}"
        );
    }

    let _ = stop.send(());
    server.await.expect("the endpoint stops");
    net.shut_down().await;
}
