//! The settlement protocol's defects found from outside, one test each, on both databases: a
//! reversal racing its own Settle, the personal account taken twice by racing Settles, replays
//! answered OK without their answer, voids that could not be sent again, the balance a
//! cancellation reports, a void that overtakes its booking, a peer's status passed to the HIS
//! unchanged, and (found by the torture harness) an undo whose void was not carried. Each test
//! drives the race or the fault the attack found and then holds the three parties to
//! agreement.

use std::time::Duration;

use tonic::Code;
use tonic_types::StatusExt;
use yitong_core::{Owner, PoolCode, Service};
use yitong_proto::identity::v1::{
    Credential, GetInsuredPersonRequest, InsuranceType, credential::Kind,
};
use yitong_proto::ledger::v1::{
    LookupTransfersRequest, TransferStatus, VoidPendingTransfersRequest,
    lookup_transfers_request::Selector,
};
use yitong_proto::settlement::v1::settlement_service_server::SettlementService;
use yitong_proto::settlement::v1::{
    ReversalOutcome, ReverseByMessageIdRequest, ReversibleTransaction, Settlement, Visit,
};
use yitong_rpc::{PeerAccess, bearer};
use yitong_sandbox::{BINZHOU, DONGYING, JINAN, PILOT_CITIES, Sandbox, ZIBO, network_test};
use yitong_settlement::SettlementNode;
use yitong_settlement::treatment::{Started, TreatmentOptions};

use crate::settlement::{
    assert_ledger_agrees, cancel_request, fen, his_request, hospital, own_node, register_request,
    settle_request, upload_request, visit_lines,
};
use crate::support::assert_refused;

/// The reason a refusal carries (google.rpc.ErrorInfo), if any.
fn reason(status: &tonic::Status) -> Option<String> {
    status.get_details_error_info().map(|info| info.reason)
}

/// A fresh visit of the n-th person of `insured` at `treatment`'s hospital, lines uploaded.
async fn open_visit(net: &Sandbox, tag: &str, treatment: &str, insured: &str, n: u32) -> Visit {
    let register = register_request(&format!("R-{tag}"), treatment, insured, n);
    open_registered(net, tag, treatment, register).await
}

/// Registers a visit at `treatment`'s hospital as `register` asks, and uploads its lines.
async fn open_registered(
    net: &Sandbox,
    tag: &str,
    treatment: &str,
    register: yitong_proto::settlement::v1::RegisterVisitRequest,
) -> Visit {
    let mut his = net.his_settlement(&hospital(treatment));
    let visit = his
        .register_visit(register)
        .await
        .expect("registered")
        .into_inner()
        .visit
        .expect("visit");
    his.upload_fee_lines(upload_request(&format!("U-{tag}"), &visit, visit_lines()))
        .await
        .expect("uploaded");
    visit
}

/// The same, at a Binzhou node the test drives itself.
pub(crate) async fn open_own_visit(
    node: &SettlementNode,
    tag: &str,
    insured: &str,
    n: u32,
) -> Visit {
    let visit = node
        .register_visit(his_request(register_request(
            &format!("R-{tag}"),
            BINZHOU,
            insured,
            n,
        )))
        .await
        .expect("registered")
        .into_inner()
        .visit
        .expect("visit");
    node.upload_fee_lines(his_request(upload_request(
        &format!("U-{tag}"),
        &visit,
        visit_lines(),
    )))
    .await
    .expect("uploaded");
    visit
}

/// Runs every city's recovery sweep through a node of its own on the city's store until
/// nothing is left in doubt, then asserts the ledger holds nothing pending and agrees with
/// `live`.
async fn settle_down(net: &Sandbox, live: &[Settlement]) {
    for city in PILOT_CITIES {
        let code = PoolCode::parse(city).expect("city");
        let store = net.store(Owner::Pool(code), Service::Settlement).await;
        let node = SettlementNode::new(
            code,
            store,
            std::sync::Arc::new(net.network().clone()),
            &net.peer_access(Owner::Pool(code)),
        )
        .expect("node")
        .with_options(TreatmentOptions {
            pending_grace_ms: 0,
            ..TreatmentOptions::default()
        });
        let report = node.recover().await.expect("swept");
        assert_eq!(report.left, 0, "{city}: nothing left in doubt: {report:?}");
    }
    assert_ledger_agrees(net, live).await;
}

async fn transfer_statuses(net: &Sandbox, settlement_id: &str) -> Vec<i32> {
    net.ledger()
        .lookup_transfers(LookupTransfersRequest {
            selector: Some(Selector::SettlementId(settlement_id.to_owned())),
        })
        .await
        .expect("looked up")
        .into_inner()
        .transfers
        .iter()
        .map(|transfer| transfer.status)
        .collect()
}

async fn balance_fen(net: &Sandbox, person_no: &str) -> i64 {
    let person = net
        .node(JINAN)
        .identity(JINAN)
        .get_insured_person(GetInsuredPersonRequest {
            credential: Some(Credential {
                kind: Some(Kind::PersonNo(person_no.to_owned())),
            }),
            service_date: yitong_core::today().to_string(),
            ..Default::default()
        })
        .await
        .expect("person")
        .into_inner()
        .person
        .expect("person");
    fen(&person.account_balance)
}

network_test! {
    /// Proves a reversal racing its own Settle never leaves the Settle acknowledged and its
    /// peers voided: in every round the reversal either voids the Settle before it records
    /// (the Settle is refused) or finds it recorded and cancels it; afterwards nothing is in
    /// doubt anywhere and the ledger agrees with what stands.
    async fn a_reversal_racing_its_settle_leaves_nothing_in_doubt(net) {
        let mut live = Vec::new();
        for round in 0..16u64 {
            let tag = format!("race-{round}");
            let treatment = [ZIBO, BINZHOU, DONGYING][round as usize % 3];
            let visit = open_visit(net, &tag, treatment, JINAN, 2).await;
            let mut settler = net.his_settlement(&hospital(treatment));
            let mut reverser = net.his_settlement(&hospital(treatment));
            let settle_id = format!("S-{tag}");
            let settle = settle_request(&settle_id, &visit, 2, false);
            let reverse = ReverseByMessageIdRequest {
                message_id: format!("X-{tag}"),
                original_message_id: settle_id.clone(),
                original_transaction: ReversibleTransaction::Settle as i32,
                institution_code: hospital(treatment),
                reason: "timed out at the counter".into(),
                operator_id: "op1".into(),
            };
            let delay = Duration::from_millis(round * 4);
            let (settled, reversed) = tokio::join!(settler.settle(settle), async {
                tokio::time::sleep(delay).await;
                reverser.reverse_by_message_id(reverse).await
            });
            let reversed = reversed.expect("a reversal is always answered").into_inner();
            match settled {
                Ok(reply) => {
                    // Acknowledged: the reversal must have cancelled it, not voided its peers.
                    let settlement = reply.into_inner().settlement.expect("settlement");
                    assert_eq!(reversed.outcome, ReversalOutcome::Cancelled as i32, "round {round}: an acknowledged settle is cancelled");
                    assert_eq!(reversed.settlement.as_ref().map(|s| &s.settlement_id), Some(&settlement.settlement_id));
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::FailedPrecondition, "round {round}: {status:?}");
                    assert!(matches!(reason(&status).as_deref(), Some("SETTLEMENT_VOIDED" | "MESSAGE_ID_DEAD")), "round {round}: {status:?}");
                    assert_eq!(reversed.outcome, ReversalOutcome::MessageIdDead as i32, "round {round}");
                }
            }
            if round % 4 == 3 {
                // An untouched settle of the same person alongside keeps the ledger honest.
                let visit = open_visit(net, &format!("{tag}-kept"), treatment, JINAN, 2).await;
                let kept = settler.settle(settle_request(&format!("S-{tag}-kept"), &visit, 2, false)).await.expect("settled");
                live.push(kept.into_inner().settlement.expect("settlement"));
            }
        }
        settle_down(net, &live).await;
    }
}

/// Employees of Jinan with small accounts (`seeds/persons.csv`): two or three settlements of a
/// visit's lines empty them.
const SMALL_ACCOUNTS: [u32; 12] = [26, 60, 91, 118, 133, 156, 212, 238, 263, 274, 386, 393];

/// A fresh visit of the n-th Jinan person, an employee, at `treatment`'s hospital.
async fn open_employee_visit(net: &Sandbox, tag: &str, treatment: &str, n: u32) -> Visit {
    let mut register = register_request(&format!("R-{tag}"), treatment, JINAN, n);
    register.insurance_type = InsuranceType::Employee as i32;
    open_registered(net, tag, treatment, register).await
}

network_test! {
    /// Proves racing Settles of one employee at hospitals of every city, each paying from the
    /// personal account, never take more than the balance: for each of several employees with
    /// small accounts, four Settles go out at once; the account pays acknowledged add up to what
    /// left the account, every acknowledged settlement completes, and no balance goes below
    /// zero.
    async fn racing_settles_never_take_the_personal_account_twice(net) {
        let mut settled = Vec::new();
        for person in SMALL_ACCOUNTS {
            let person_no = format!("{JINAN}{person:010}");
            let before = balance_fen(net, &person_no).await;
            let mut visits = Vec::new();
            for treatment in PILOT_CITIES {
                let tag = format!("acct-{person}-{treatment}");
                visits.push((treatment, tag.clone(), open_employee_visit(net, &tag, treatment, person).await));
            }
            let settles: Vec<_> = visits.iter().map(|(treatment, tag, visit)| {
                let mut his = net.his_settlement(&hospital(treatment));
                let request = settle_request(&format!("S-{tag}"), visit, person, true);
                tokio::spawn(async move { his.settle(request).await })
            }).collect();
            let mut mine = Vec::new();
            for settle in settles {
                match settle.await.expect("the settle ran") {
                    Ok(reply) => mine.push(reply.into_inner().settlement.expect("settlement")),
                    Err(status) => assert!(
                        matches!(status.code(), Code::Unavailable | Code::ResourceExhausted),
                        "only a retryable refusal: {status:?}"
                    ),
                }
            }
            // Every acknowledged settlement completes: a post refused for want of money would
            // leave it recorded, in doubt.
            settle_down(net, &[settled.as_slice(), mine.as_slice()].concat()).await;
            let taken: i64 = mine.iter().map(|s| fen(&s.split.as_ref().expect("split").account_pay)).sum();
            let after = balance_fen(net, &person_no).await;
            assert!(after >= 0, "person {person}: balance {after} below zero");
            assert_eq!(before - after, taken, "person {person}: what left the account is what the settlements took");
            assert!(taken > 0, "person {person}: the account paid");
            settled.extend(mine);
        }
    }
}

network_test! {
    /// Proves a replay is never answered OK without the first answer: a Settle replayed while
    /// its first call is still in flight waits for it and is otherwise answered ABORTED (never
    /// FAILED_PRECONDITION), and concurrent replays of CancelSettlement and ReverseByMessageId
    /// each get the cancellation, never an empty reply or an unspecified outcome.
    async fn replays_in_flight_get_the_first_answer_or_a_retry(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let node = own_node(net, dir.path()).await.with_options(TreatmentOptions {
            replay_wait_ms: 200,
            pending_grace_ms: 60_000,
            ..TreatmentOptions::default()
        });
        let visit = open_own_visit(&node, "replay", JINAN, 1).await;
        let request = settle_request("S-replay", &visit, 1, true);
        let Started::Intent(intent) = node.step_intent(&request).await.expect("intent") else {
            panic!("a fresh message id starts an intent");
        };
        // The first call is in flight (its intent written, nothing more): a replay waits, then
        // tells the HIS to send it again.
        let status = node.settle(his_request(request.clone())).await.unwrap_err();
        assert_eq!(status.code(), Code::Aborted, "{status:?}");
        assert_eq!(reason(&status).as_deref(), Some("SETTLEMENT_IN_PROGRESS"));
        let reservation = node.step_reserve(&intent).await.expect("reserved");
        let transfer = node.booking(&intent, &reservation).expect("transfer");
        // Recorded while a replay waits: the replay gets the recorded answer.
        let (replayed, recorded) = tokio::join!(node.settle(his_request(request.clone())), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            node.step_record(&intent, &reservation, &transfer).await
        });
        let recorded = recorded.expect("recorded");
        let replayed = replayed.expect("the replay waited for the record").into_inner().settlement.expect("settlement");
        assert_eq!(replayed.settlement_id, recorded.settlement_id);
        node.step_complete(intent.settlement_id()).await.expect("completed");
        node.store().close().await;

        // Concurrent replays at the sandbox's own nodes: every answer carries the cancellation.
        let mut live = vec![recorded];
        for round in 0..6 {
            let tag = format!("twin-{round}");
            let visit = open_visit(net, &tag, ZIBO, JINAN, 2).await;
            let mut his = net.his_settlement(&hospital(ZIBO));
            let settlement = his.settle(settle_request(&format!("S-{tag}"), &visit, 2, false)).await.expect("settled").into_inner().settlement.expect("settlement");
            let answers = if round % 2 == 0 {
                let cancel = cancel_request(&format!("C-{tag}"), &settlement);
                let (mut a, mut b) = (his.clone(), his.clone());
                let (first, second) = tokio::join!(a.cancel_settlement(cancel.clone()), b.cancel_settlement(cancel));
                [first, second].map(|answer| answer.map(|reply| reply.into_inner().settlement))
            } else {
                let reverse = ReverseByMessageIdRequest {
                    message_id: format!("X-{tag}"),
                    original_message_id: format!("S-{tag}"),
                    original_transaction: ReversibleTransaction::Settle as i32,
                    institution_code: hospital(ZIBO),
                    reason: "counter timed out".into(),
                    operator_id: "op1".into(),
                };
                let (mut a, mut b) = (his.clone(), his.clone());
                let (first, second) = tokio::join!(a.reverse_by_message_id(reverse.clone()), b.reverse_by_message_id(reverse));
                [first, second].map(|answer| {
                    answer.map(|reply| {
                        let reply = reply.into_inner();
                        assert_eq!(reply.outcome, ReversalOutcome::Cancelled as i32, "never an unspecified outcome");
                        reply.settlement
                    })
                })
            };
            let mut cancelled = 0;
            for answer in answers {
                match answer {
                    Ok(Some(cancelled_settlement)) => {
                        assert_eq!(cancelled_settlement.settlement_id, settlement.settlement_id);
                        assert!(cancelled_settlement.cancellation.is_some(), "the answer is the cancellation");
                        cancelled += 1;
                    }
                    Ok(None) => panic!("round {round}: OK without the cancellation"),
                    Err(status) => assert_eq!(status.code(), Code::Aborted, "round {round}: only a retry: {status:?}"),
                }
            }
            assert!(cancelled >= 1, "round {round}: the first call was answered");
            if round == 5 {
                let visit = open_visit(net, "twin-kept", ZIBO, JINAN, 2).await;
                live.push(his.settle(settle_request("S-twin-kept", &visit, 2, false)).await.expect("settled").into_inner().settlement.expect("settlement"));
            }
        }
        settle_down(net, &live).await;
    }
}

network_test! {
    /// Proves a void is the same request whoever sends it, and the sweep gets past rows that
    /// keep failing: a void whose ledger answer was lost is completed by the sweep (the same
    /// message id with the same reason, not ALREADY_EXISTS); and with the insured city of the
    /// oldest intents down, the next sweep still voids the intents behind them.
    async fn voids_are_resent_identically_and_the_sweep_cannot_starve(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options = TreatmentOptions {
            sweep_batch_max: 2,
            pending_grace_ms: 0,
            ..TreatmentOptions::default()
        };
        let node = own_node(net, dir.path()).await.with_options(options);
        // A void cut off after the ledger voided the transfer but before its answer arrived:
        // the node that decided it cannot reach the ledger at all (a closed port), and the
        // void it would have sent reaches the ledger all the same.
        let visit = open_own_visit(&node, "lost", JINAN, 1).await;
        let Started::Intent(intent) = node.step_intent(&settle_request("S-lost", &visit, 1, true)).await.expect("intent") else {
            panic!("a fresh message id starts an intent");
        };
        let reservation = node.step_reserve(&intent).await.expect("reserved");
        // Booked pending, as a node before issue 21 did: its void must reach the ledger too.
        node.step_book(&intent, &reservation).await.expect("booked");
        let id = intent.settlement_id().to_owned();
        let cut_off = node_without(net, &node, |network| network.clearing_house.ledger = CLOSED.into());
        cut_off.void_intent(&id, "settle failed before it was recorded").await.expect_err("the ledger cannot be reached");
        let lost = VoidPendingTransfersRequest {
            message_id: format!("{id}-void"),
            pending_transfer_ids: vec![yitong_settlement::treatment::transfer_id(&id, "pending")],
            reason: "settle failed before it was recorded".into(),
        };
        net.node(BINZHOU).ledger().void_pending_transfers(lost).await.expect("the first void reached the ledger");
        let report = node.recover().await.expect("swept");
        assert_eq!((report.voided, report.left), (1, 0), "{report:?}");
        assert_eq!(transfer_statuses(net, &id).await, [TransferStatus::Voided as i32]);

        // Two intents of Jinan's persons, the oldest, at a node that cannot reach Jinan; then
        // two of Zibo's persons. The first sweep decides Jinan's voids and fails to carry them;
        // the second reaches Zibo's.
        let mut intents = Vec::new();
        for (tag, insured) in [("j1", JINAN), ("j2", JINAN), ("z1", ZIBO), ("z2", ZIBO)] {
            let visit = open_own_visit(&node, tag, insured, 2).await;
            let Started::Intent(intent) = node.step_intent(&settle_request(&format!("S-{tag}"), &visit, 2, false)).await.expect("intent") else {
                panic!("a fresh message id starts an intent");
            };
            intents.push(intent.settlement_id().to_owned());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cut_off = node_without(net, &node, |network| {
            let jinan = network.pools.iter_mut().find(|city| city.code.to_string() == JINAN).expect("Jinan");
            jinan.settlement = CLOSED.into();
        });
        let first = cut_off.recover().await.expect("swept");
        assert_eq!((first.voided, first.left), (0, 2), "the two oldest, Jinan's, fail: {first:?}");
        let second = cut_off.recover().await.expect("swept");
        assert_eq!((second.voided, second.left), (2, 0), "the rows behind the failing ones: {second:?}");
        for (id, phase) in intents.iter().zip(["voiding", "voiding", "voided", "voided"]) {
            let stored: String = yitong_store::sqlx::query_scalar("SELECT phase FROM settlements WHERE settlement_id = $1")
                .bind(id.clone())
                .fetch_one(node.store().pool())
                .await
                .expect("the intent reads");
            assert_eq!(stored, phase, "{id}");
        }
        node.store().close().await;
        settle_down(net, &[]).await;
    }
}

/// An address where nothing listens: a peer that cannot be reached.
const CLOSED: &str = "http://127.0.0.1:9";

/// The same node (its store and options) as it runs on a network changed by `change`: a node
/// cut off from some of its peers.
fn node_without(
    net: &Sandbox,
    node: &SettlementNode,
    change: impl FnOnce(&mut yitong_core::Network),
) -> SettlementNode {
    let mut network = net.network().clone();
    change(&mut network);
    rebuilt(node, network, &net.peer_access(Owner::Pool(node.city())))
}

/// The same node presenting the API key `key` to its peers instead of its own node key.
fn node_presenting(net: &Sandbox, node: &SettlementNode, key: &str) -> SettlementNode {
    let access = PeerAccess {
        authorization: bearer(key).expect("a key is a header value"),
        ..net.peer_access(Owner::Pool(node.city()))
    };
    rebuilt(node, net.network().clone(), &access)
}

/// A node on `node`'s store, reaching the peers `network` names with `access`.
fn rebuilt(
    node: &SettlementNode,
    network: yitong_core::Network,
    access: &PeerAccess,
) -> SettlementNode {
    SettlementNode::new(
        node.city(),
        node.store().clone(),
        std::sync::Arc::new(network),
        access,
    )
    .expect("node")
    .with_options(TreatmentOptions {
        sweep_batch_max: 2,
        pending_grace_ms: 0,
        ..TreatmentOptions::default()
    })
}

network_test! {
    /// Proves a cancellation reports the person's balance once its refund is posted, not the
    /// balance the original settlement saw: after two settlements paid from the account, the
    /// first one's cancellation answers the live balance plus its refund.
    async fn a_cancellation_reports_the_balance_after_it(net) {
        let person = 8;
        let person_no = format!("{JINAN}{person:010}");
        let mut his = net.his_settlement(&hospital(ZIBO));
        let first_visit = open_visit(net, "bal-1", ZIBO, JINAN, person).await;
        let first = his.settle(settle_request("S-bal-1", &first_visit, person, true)).await.expect("settled").into_inner().settlement.expect("settlement");
        let second_visit = open_visit(net, "bal-2", ZIBO, JINAN, person).await;
        let second = his.settle(settle_request("S-bal-2", &second_visit, person, true)).await.expect("settled").into_inner().settlement.expect("settlement");
        assert!(fen(&first.split.as_ref().expect("split").account_pay) > 0);
        let cancelled = his.cancel_settlement(cancel_request("C-bal-1", &first)).await.expect("cancelled").into_inner().settlement.expect("settlement");
        let reported = cancelled.cancellation.as_ref().and_then(|c| c.split.as_ref()).map(|split| fen(&split.account_balance)).expect("split");
        let live = balance_fen(net, &person_no).await;
        assert_eq!(reported, live, "the cancellation reports the balance after its refund");
        settle_down(net, &[second]).await;
    }
}

network_test! {
    /// Proves the ledger remembers a void that overtakes its booking: a Settle voided after its
    /// reservation and before its transfer was booked (the booking delayed in the network) has
    /// its late booking refused, so no pending transfer is left that nothing resolves.
    async fn a_void_that_overtakes_its_booking_is_remembered(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let node = own_node(net, dir.path()).await;
        let visit = open_own_visit(&node, "late", JINAN, 1).await;
        let Started::Intent(intent) = node.step_intent(&settle_request("S-late", &visit, 1, true)).await.expect("intent") else {
            panic!("a fresh message id starts an intent");
        };
        let reservation = node.step_reserve(&intent).await.expect("reserved");
        let id = intent.settlement_id().to_owned();
        node.void_intent(&id, "left pending; voided by the recovery sweep").await.expect("voided");
        // The pending booking of a node before issue 21, delayed in the network.
        let status = node.step_book(&intent, &reservation).await.expect_err("the late booking is refused");
        assert_refused(&tonic::Status::from(status), "SETTLEMENT_VOIDED");
        assert!(transfer_statuses(net, &id).await.is_empty(), "nothing booked for a voided settlement");
        node.store().close().await;
        settle_down(net, &[]).await;
    }
}

/// How a node's own call to a peer went wrong, and what the HIS must get from the Settle it
/// was making.
struct PeerFaultCase {
    tag: &'static str,
    /// The node, on the test node's store, whose peer answers what the HIS must never see.
    node: SettlementNode,
    /// Words of the peer's answer, none of which may reach the HIS.
    peer_said: [&'static str; 2],
    /// Whether the Settle got as far as its intent (its message id then stays the voided
    /// Settle's), or was refused before it (the HIS may send it again and settle).
    intent: bool,
    /// Intents whose void the failing node could not carry to its peers, left to the sweep.
    voided_by_sweep: u64,
}

network_test! {
    /// Proves a peer's answer to the node's own call never reaches the HIS as if it were about
    /// the HIS's request (defect 6): a peer node that refuses the node's Reserve naming its
    /// `yitong-pool` metadata (the network file sends Jinan's claims to Zibo's node), a peer that
    /// does not accept the node's key (a stale secret), and peers that refuse the node
    /// permission (it presents an HIS's key) each leave the HIS an opaque INTERNAL, without the
    /// peer's field path or words. Nothing is left in doubt: the sweep leaves nothing behind,
    /// and the HIS's resend of the same message id gets a definite answer.
    async fn a_peer_s_refusal_of_the_node_reaches_the_his_as_internal(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let node = own_node(net, dir.path()).await;
        let zibo = PoolCode::parse(ZIBO).expect("city");
        let zibo_settlement = net.network().pool(zibo).expect("Zibo").settlement.clone();
        let own_key = net.api_key(&format!("node:{BINZHOU}"));
        let (key_id, _secret) = own_key.rsplit_once('.').expect("yt1.<id>.<secret>");
        let stale_key = format!("{key_id}.{}", "0".repeat(64));
        let his_key = net.api_key(&format!("institution:{}", hospital(BINZHOU)));
        let cases = [
            PeerFaultCase {
                tag: "misrouted",
                node: node_without(net, &node, |network| {
                    let jinan = network.pools.iter_mut().find(|city| city.code.to_string() == JINAN).expect("Jinan");
                    jinan.settlement = zibo_settlement.clone();
                }),
                // Zibo's node serves no pool 370100: it refuses every call the node addresses
                // to Jinan's pool, the Reserve and then the void, so the void is the sweep's.
                peer_said: ["yitong-pool", "which this node does not serve"],
                intent: true,
                voided_by_sweep: 1,
            },
            PeerFaultCase {
                tag: "stale-key",
                node: node_presenting(net, &node, &stale_key),
                peer_said: ["api key", "refused"],
                intent: false,
                voided_by_sweep: 0,
            },
            PeerFaultCase {
                tag: "his-key",
                node: node_presenting(net, &node, &his_key),
                peer_said: ["may not", "institution:"],
                intent: true,
                voided_by_sweep: 1,
            },
        ];
        let mut live = Vec::new();
        for (case, n) in cases.into_iter().zip([3, 4, 2]) {
            let tag = case.tag;
            let visit = open_own_visit(&node, &format!("peer-{tag}"), JINAN, n).await;
            let request = settle_request(&format!("S-peer-{tag}"), &visit, n, false);
            let status = case.node.settle(his_request(request.clone())).await.expect_err("the peer refused the node");
            assert_eq!(status.code(), Code::Internal, "{tag}: {status:?}");
            assert!(status.get_details_bad_request().is_none(), "{tag}: no field path of the peer's: {status:?}");
            for words in case.peer_said {
                assert!(!status.message().contains(words), "{tag}: the peer's words reached the HIS: {status:?}");
            }
            // Whatever the failed Settle left behind, the sweep of a node its peers accept
            // resolves; the HIS's resend then gets a definite answer.
            let report = node.recover().await.expect("swept");
            assert_eq!((report.voided, report.left), (case.voided_by_sweep, 0), "{tag}: nothing left in doubt: {report:?}");
            let resent = node.settle(his_request(request)).await;
            if case.intent {
                assert_refused(&resent.expect_err("the Settle was voided"), "SETTLEMENT_VOIDED");
            } else {
                live.push(resent.expect("nothing was started: the resend settles").into_inner().settlement.expect("settlement"));
            }
        }
        node.store().close().await;
        settle_down(net, &live).await;
    }
}

network_test! {
    /// Proves an undo whose void is decided but not yet carried still holds its visit: a
    /// cancellation booked at the ledger and then voided by a node cut off from the ledger
    /// leaves its booking live there, and the ledger books one live cancellation per
    /// settlement. A second cancellation of the settlement used to be refused by the ledger
    /// (SETTLEMENT_ALREADY_BOOKED, which reached the HIS as INTERNAL); now, while the void
    /// cannot be carried, it is refused SETTLEMENT_IN_PROGRESS with nothing stored, and once it
    /// can, the void is carried first and the cancellation goes through.
    async fn an_undo_whose_void_is_not_carried_holds_its_visit(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let node = own_node(net, dir.path()).await;
        let visit = open_own_visit(&node, "undo", JINAN, 3).await;
        let settled = node.settle(his_request(settle_request("S-undo", &visit, 3, true))).await.expect("settled").into_inner().settlement.expect("settlement");
        let Started::Intent(first) = node.step_cancel_intent(&cancel_request("C-undo-1", &settled)).await.expect("intent") else {
            panic!("a fresh message id starts an intent");
        };
        let reservation = node.step_reserve(&first).await.expect("reserved");
        // A cancellation of a node before issue 21, which booked pending before the record.
        node.step_book(&first, &reservation).await.expect("booked");
        let first_id = first.settlement_id().to_owned();
        let cut_off = node_without(net, &node, |network| network.clearing_house.ledger = CLOSED.into());
        cut_off.void_intent(&first_id, "cancel failed before it was recorded").await.expect_err("the ledger cannot be reached");
        assert_eq!(transfer_statuses(net, &first_id).await, [TransferStatus::Pending as i32]);

        let status = cut_off.cancel_settlement(his_request(cancel_request("C-undo-2", &settled))).await.expect_err("the void cannot be carried");
        assert_refused(&status, "SETTLEMENT_IN_PROGRESS");
        let cancelled = node
            .cancel_settlement(his_request(cancel_request("C-undo-2", &settled)))
            .await
            .expect("the same message id, once the void is carried, cancels")
            .into_inner()
            .settlement
            .expect("settlement");
        assert_eq!(transfer_statuses(net, &first_id).await, [TransferStatus::Voided as i32]);
        let second_id = cancelled.cancellation.as_ref().map(|c| c.cancellation_id.clone()).expect("a cancellation");
        assert_eq!(transfer_statuses(net, &second_id).await, [TransferStatus::Posted as i32]);
        let report = node.recover().await.expect("swept");
        assert_eq!(report.left, 0, "{report:?}");
        node.store().close().await;
        settle_down(net, &[]).await;
    }
}
