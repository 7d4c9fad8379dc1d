//! One cross-city visit, traced end to end through the real OTLP protocol.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tracing::Instrument;
use yitong_core::{Owner, PoolCode, Service};
use yitong_proto::identity::v1::identity_service_client::IdentityServiceClient;
use yitong_proto::identity::v1::{
    Credential, GetInsuredPersonRequest, IssueEVoucherRequest, credential::Kind,
};
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_proto::settlement::v1::{GetSettlementRequest, get_settlement_request::Key};
use yitong_sandbox::privacy::citizen_ids_in;
use yitong_sandbox::{BINZHOU, DONGYING, Database, JINAN, Sandbox, ZIBO};

use crate::collector::{Received, collector, display, text};
use crate::visit::{his_channel, settle_visit};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The spans of one trace that are servers of `service` (a suffix of rpc.service) at `owner`.
fn servers<'a>(trace: &'a [Received], owner: &str, service: &str) -> Vec<&'a Received> {
    trace
        .iter()
        .filter(|received| received.span.kind == SpanKind::Server as i32)
        .filter(|received| {
            text(&received.span.attributes, "yitong.owner").as_deref() == Some(owner)
                && text(&received.span.attributes, "rpc.service")
                    .is_some_and(|name| name.ends_with(service))
        })
        .collect()
}

/// Whether `span` descends (through parents in `trace`) from one of the spans `ancestors`.
fn under_any(trace: &[Received], span: &Received, ancestors: &HashSet<&[u8]>) -> bool {
    let mut parent = span.span.parent_span_id.clone();
    while !parent.is_empty() {
        if ancestors.contains(parent.as_slice()) {
            return true;
        }
        parent = trace
            .iter()
            .find(|received| received.span.span_id == parent)
            .map(|received| received.span.parent_span_id.clone())
            .unwrap_or_default();
    }
    false
}

// Proves that a Zibo hospital's visit of a Jinan-insured patient arrives at an OTLP collector as
// one trace: the HIS's own span is the root, every other span's parent is in the trace, and it
// covers the HIS's calls, Zibo's settlement and catalog, Jinan's identity (the issuing city)
// and benefit service (the insured city) and the clearing house's ledger, each server span with
// the RPC conventions' attributes; the settlement keeps the trace id and GetSettlement returns
// it; the statements of the settlement store and the ledger are database spans under their
// server spans; and no attribute or event of any span holds a citizen ID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_city_visit_is_one_trace_across_every_city_it_touched() {
    let collector = collector();
    let net = Sandbox::start(Database::Sqlite)
        .await
        .expect("SQLite always starts");

    let root = tracing::info_span!("his.visit", otel.kind = "client");
    let settlement = settle_visit(&net, "TRACE-1", ZIBO, JINAN, 1)
        .instrument(root.clone())
        .await;
    drop(root);
    let fetched = SettlementServiceClient::new(his_channel(&net, ZIBO, Service::Settlement))
        .get_settlement(GetSettlementRequest {
            key: Some(Key::SettlementId(settlement.settlement_id.clone())),
            institution_code: settlement.institution_code.clone(),
        })
        .await
        .expect("found")
        .into_inner()
        .settlement
        .expect("settlement");
    collector.flush().await;
    let received = collector.received();

    let roots: Vec<&Received> = received
        .iter()
        .filter(|received| received.span.name == "his.visit")
        .collect();
    assert_eq!(roots.len(), 1, "one HIS span");
    let root = roots[0];
    assert!(
        root.span.parent_span_id.is_empty(),
        "the HIS span is the root"
    );
    let trace_id = hex(&root.span.trace_id);
    assert_eq!(
        settlement.trace_id, trace_id,
        "the settlement keeps its trace id"
    );
    assert_eq!(fetched.trace_id, trace_id, "GetSettlement returns it");

    let trace: Vec<Received> = received
        .iter()
        .filter(|received| hex(&received.span.trace_id) == trace_id)
        .cloned()
        .collect();
    let ids: HashSet<&[u8]> = trace
        .iter()
        .map(|received| received.span.span_id.as_slice())
        .collect();
    for received in &trace {
        if received.span.span_id != root.span.span_id {
            assert!(
                ids.contains(received.span.parent_span_id.as_slice()),
                "span {} has its parent in the trace",
                received.span.name
            );
        }
    }

    // The HIS's calls are client spans straight under its own span.
    let his_calls: HashSet<String> = trace
        .iter()
        .filter(|received| received.span.parent_span_id == root.span.span_id)
        .filter(|received| received.span.kind == SpanKind::Client as i32)
        .filter_map(|received| text(&received.span.attributes, "rpc.method"))
        .collect();
    for method in [
        "GetInsuredPerson",
        "RegisterVisit",
        "UploadFeeLines",
        "Settle",
    ] {
        assert!(
            his_calls.contains(method),
            "HIS call {method}: {his_calls:?}"
        );
    }

    let covered = [
        ("treatment city's settlement", ZIBO, "SettlementService"),
        ("treatment city's catalog", ZIBO, "CatalogService"),
        ("issuing city's identity", JINAN, "IdentityService"),
        ("insured city's benefit service", JINAN, "BenefitService"),
        ("clearing house's ledger", "clearing", "LedgerService"),
    ];
    for (what, owner, service) in covered {
        let found = servers(&trace, owner, service);
        assert!(!found.is_empty(), "the trace covers the {what}");
        for server in found {
            let attributes = &server.span.attributes;
            assert_eq!(text(attributes, "rpc.system").as_deref(), Some("grpc"));
            assert_eq!(
                text(attributes, "rpc.grpc.status_code").as_deref(),
                Some("0")
            );
            let method = text(attributes, "rpc.method").expect("rpc.method");
            assert!(
                server.span.name.ends_with(&format!("/{method}")),
                "{}",
                server.span.name
            );
            assert_eq!(server.service_name, "yitong-sandbox");
        }
    }
    // Database spans: the statements of the ledger's and Zibo's settlement store, one span for
    // each server span's, under it, with their operations and no parameter value.
    let statements: Vec<&Received> = trace
        .iter()
        .filter(|received| text(&received.span.attributes, "db.operation.name").is_some())
        .collect();
    for (what, owner, service) in [
        ("Zibo's settlement store", ZIBO, "SettlementService"),
        ("the ledger's store", "clearing", "LedgerService"),
    ] {
        let under: HashSet<&[u8]> = servers(&trace, owner, service)
            .iter()
            .map(|server| server.span.span_id.as_slice())
            .collect();
        let inserts = statements
            .iter()
            .filter(|statement| {
                text(&statement.span.attributes, "db.query.summary")
                    .is_some_and(|summary| summary.contains("INSERT INTO"))
            })
            .filter(|statement| under_any(&trace, statement, &under))
            .count();
        let seen: Vec<(String, Option<String>, Option<String>)> = statements
            .iter()
            .map(|statement| {
                (
                    statement.span.name.clone(),
                    text(&statement.span.attributes, "yitong.db.outcome"),
                    text(&statement.span.attributes, "db.query.summary"),
                )
            })
            .collect();
        assert!(
            inserts > 0,
            "committed transactions that inserted in {what}: {seen:?}"
        );
    }
    for statement in &statements {
        assert_eq!(statement.span.kind, SpanKind::Client as i32);
        let summary = text(&statement.span.attributes, "db.query.summary").unwrap_or_default();
        assert!(!summary.contains('\''), "no literal in {summary}");
    }

    // The Settle at Zibo is served under the HIS's client span for it: the context crossed.
    let by_id: HashMap<&[u8], &Received> = trace
        .iter()
        .map(|received| (received.span.span_id.as_slice(), received))
        .collect();
    let settle = servers(&trace, ZIBO, "SettlementService")
        .into_iter()
        .find(|server| text(&server.span.attributes, "rpc.method").as_deref() == Some("Settle"))
        .expect("Zibo served the Settle");
    let caller = by_id[settle.span.parent_span_id.as_slice()];
    assert_eq!(caller.span.kind, SpanKind::Client as i32);
    assert_eq!(caller.span.parent_span_id, root.span.span_id);

    // Nothing any span carries (attributes, events) holds a citizen ID.
    for received in &received {
        let events = received
            .span
            .events
            .iter()
            .flat_map(|event| &event.attributes);
        for attribute in received.span.attributes.iter().chain(events) {
            let value = attribute.value.as_ref().map(display).unwrap_or_default();
            assert!(
                citizen_ids_in(&value).is_empty(),
                "attribute {} of span {} holds a citizen ID",
                attribute.key,
                received.span.name
            );
        }
    }
    net.shut_down().await;
}

/// An integer attribute's value; `None` when absent or of another type.
fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| attribute.value.as_ref())
        .and_then(|value| match value.value {
            Some(Value::IntValue(number)) => Some(number),
            _ => None,
        })
}

/// The spans of the trace whose root is the one span named `root`, checked to be one tree:
/// every span but the root has its parent in the trace.
fn one_trace(received: &[Received], root: &str) -> (Received, Vec<Received>) {
    let roots: Vec<&Received> = received
        .iter()
        .filter(|received| received.span.name == root)
        .collect();
    assert_eq!(roots.len(), 1, "one span {root}");
    let root = roots[0].clone();
    assert!(root.span.parent_span_id.is_empty(), "{root:?} is a root");
    let trace: Vec<Received> = received
        .iter()
        .filter(|received| received.span.trace_id == root.span.trace_id)
        .cloned()
        .collect();
    let ids: HashSet<&[u8]> = trace
        .iter()
        .map(|received| received.span.span_id.as_slice())
        .collect();
    for received in &trace {
        if received.span.span_id != root.span.span_id {
            assert!(
                ids.contains(received.span.parent_span_id.as_slice()),
                "span {} of {root:?} has its parent in the trace",
                received.span.name
            );
        }
    }
    (root, trace)
}

/// The port of a sandbox endpoint, "http://127.0.0.1:7121".
fn port_of(endpoint: &str) -> i64 {
    endpoint
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("an endpoint with a port")
}

// Proves a lookup by citizen ID and one by e-voucher at Zibo of a Jinan-insured person each
// arrive as one trace under the HIS's span: Zibo's GetInsuredPerson, its calls to every other
// city (the citizen ID's fan-out runs in tasks of their own) and their servers. Binzhou's
// identity node takes connections and never answers, so the fan-out call to it is abandoned
// when Jinan answers: its client span ends CANCELLED, and every other call with its status
// (Dongying's too may be abandoned, when its NOT_FOUND comes after Jinan's answer).
// Client spans name their peer (`server.address`, an integer `server.port`); server spans name
// themselves and their peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_by_citizen_id_and_e_voucher_stay_in_the_his_trace() {
    let collector = collector();
    let net = Sandbox::start(Database::Sqlite)
        .await
        .expect("SQLite always starts");
    let binzhou = Owner::Pool(PoolCode::parse(BINZHOU).expect("region code"));
    let binzhou_identity = net.endpoint(binzhou, Service::Identity);
    net.abort_server(binzhou, Service::Identity);
    let address = binzhou_identity.trim_start_matches("http://").to_owned();
    // The aborted server lets go of its address as its task is dropped.
    let mut tries = 0;
    let silent = loop {
        match tokio::net::TcpListener::bind(&address).await {
            Ok(listener) => break listener,
            Err(error) => {
                tries += 1;
                assert!(tries < 100, "cannot take over {address}: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    let silence = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });

    let citizen_id = {
        let persons = std::fs::read_to_string(yitong_sandbox::seeds_dir().join("persons.csv"))
            .expect("persons.csv");
        persons
            .lines()
            .find(|line| line.starts_with(JINAN))
            .and_then(|line| line.split(',').nth(1))
            .expect("a Jinan person")
            .to_owned()
    };
    let lookup = |kind: Kind| GetInsuredPersonRequest {
        credential: Some(Credential { kind: Some(kind) }),
        institution_code: format!("H{ZIBO}00001"),
        ..Default::default()
    };
    let mut his = IdentityServiceClient::new(his_channel(&net, ZIBO, Service::Identity));
    let by_id = his
        .get_insured_person(lookup(Kind::CitizenId(citizen_id)))
        .instrument(tracing::info_span!(
            "his.lookup.citizen_id",
            otel.kind = "client"
        ))
        .await
        .expect("found by citizen ID")
        .into_inner();
    assert_eq!(by_id.person.expect("a person").insured_city, JINAN);
    let voucher = net
        .identity(JINAN)
        .issue_e_voucher(IssueEVoucherRequest {
            credential: Some(Credential {
                kind: Some(Kind::CardNumber(
                    yitong_core::CardNumber::new(PoolCode::parse(JINAN).expect("code"), 1)
                        .to_string(),
                )),
            }),
            ttl_seconds: 0,
        })
        .await
        .expect("voucher issued")
        .into_inner();
    let by_voucher = his
        .get_insured_person(lookup(Kind::EVoucherToken(voucher.token)))
        .instrument(tracing::info_span!(
            "his.lookup.e_voucher",
            otel.kind = "client"
        ))
        .await
        .expect("found by e-voucher")
        .into_inner();
    assert_eq!(by_voucher.person.expect("a person").insured_city, JINAN);
    // An abandoned call's span ends as its task is dropped, which may be after the lookup has
    // answered and after a flush: flush until a call to each city asked is there (5 s at most;
    // the checks below say which is missing if one never comes).
    let asked_ports: Vec<i64> = [JINAN, DONGYING, BINZHOU]
        .iter()
        .map(|city| {
            let owner = Owner::Pool(PoolCode::parse(city).expect("code"));
            port_of(&net.endpoint(owner, Service::Identity))
        })
        .collect();
    let mut received = Vec::new();
    for _ in 0..50 {
        collector.flush().await;
        received = collector.received();
        let every_call_ended = asked_ports.iter().all(|port| {
            received.iter().any(|received| {
                received.span.kind == SpanKind::Client as i32
                    && int(&received.span.attributes, "server.port") == Some(*port)
            })
        });
        if every_call_ended {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    for (root, asked) in [
        ("his.lookup.citizen_id", &[JINAN, DONGYING, BINZHOU][..]),
        ("his.lookup.e_voucher", &[JINAN][..]),
    ] {
        let (root, trace) = one_trace(&received, root);
        // Zibo's server span is under the HIS's client span, under the HIS's own.
        let zibo = servers(&trace, ZIBO, "IdentityService");
        assert_eq!(zibo.len(), 1, "{:?}: Zibo served once", root.span.name);
        let zibo: HashSet<&[u8]> = zibo
            .iter()
            .map(|server| server.span.span_id.as_slice())
            .collect();
        let roots: HashSet<&[u8]> = [root.span.span_id.as_slice()].into_iter().collect();
        for received in &trace {
            if received.span.span_id != root.span.span_id {
                assert!(under_any(&trace, received, &roots));
            }
        }
        // Zibo's calls to the other cities, each under Zibo's server span, with its peer named.
        let calls: Vec<&Received> = trace
            .iter()
            .filter(|received| received.span.kind == SpanKind::Client as i32)
            .filter(|received| under_any(&trace, received, &zibo))
            .collect();
        for city in asked {
            let owner = Owner::Pool(PoolCode::parse(city).expect("code"));
            let port = port_of(&net.endpoint(owner, Service::Identity));
            let call = calls
                .iter()
                .find(|call| int(&call.span.attributes, "server.port") == Some(port))
                .unwrap_or_else(|| panic!("{:?}: a call to {city}", root.span.name));
            assert_eq!(
                text(&call.span.attributes, "server.address").as_deref(),
                Some("127.0.0.1")
            );
            let code = int(&call.span.attributes, "rpc.grpc.status_code");
            if *city == BINZHOU {
                assert_eq!(
                    code,
                    Some(1),
                    "the abandoned call to Binzhou ends CANCELLED"
                );
            } else if *city != JINAN && code == Some(1) {
                // Dongying's NOT_FOUND may come after Jinan's answer: then that call was
                // abandoned too, and ends CANCELLED like Binzhou's.
            } else {
                assert!(code.is_some(), "the call to {city} ends with its status");
                let served = servers(&trace, city, "IdentityService");
                assert!(
                    served
                        .iter()
                        .any(|server| server.span.parent_span_id == call.span.span_id),
                    "{:?}: {city} served the call in the trace",
                    root.span.name
                );
            }
        }
        // Every server span names itself and its peer.
        for server in trace
            .iter()
            .filter(|received| received.span.kind == SpanKind::Server as i32)
        {
            let attributes = &server.span.attributes;
            assert!(int(attributes, "server.port").is_some_and(|port| port > 0));
            assert_eq!(
                text(attributes, "server.address").as_deref(),
                Some("127.0.0.1")
            );
            assert!(int(attributes, "network.peer.port").is_some_and(|port| port > 0));
        }
    }
    silence.abort();
    net.shut_down().await;
}
