//! One cross-city visit, traced end to end through the real OTLP protocol.

use std::collections::{HashMap, HashSet};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use tracing::Instrument;
use yitong_core::Service;
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_proto::settlement::v1::{GetSettlementRequest, get_settlement_request::Key};
use yitong_sandbox::privacy::citizen_ids_in;
use yitong_sandbox::{Database, JINAN, Sandbox, ZIBO};

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
