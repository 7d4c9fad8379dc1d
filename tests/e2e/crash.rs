//! Crashes in the middle of a cross-city Settle: the treatment node cut off at every step
//! boundary and restarted, and separately the insured node aborted at every boundary and
//! restarted. After recovery each settlement is complete in all three places (treatment record,
//! insured reservation, ledger transfer) or voided in all three: none lost, none doubled.

use yitong_core::{Owner, Service};
use yitong_proto::ledger::v1::{
    LookupTransfersRequest, TransferStatus, lookup_transfers_request::Selector,
};
use yitong_proto::settlement::v1::settlement_service_server::SettlementService;
use yitong_proto::settlement::v1::{
    GetSettlementRequest, PostRequest, ReservationStatus, Settlement, Visit, VoidRequest,
    get_settlement_request::Key,
};
use yitong_sandbox::{BINZHOU, JINAN, Sandbox, network_test};
use yitong_settlement::SettlementNode;
use yitong_settlement::benefit::BenefitNode;
use yitong_settlement::treatment::Started;

use crate::protocol::open_own_visit;
use crate::settlement::{assert_ledger_agrees, hospital, own_node, settle_request};
use crate::support::assert_refused;

/// Which protocol drives the Settle: the current one (intent, reserve, record, complete), or the
/// one before issue 21 (intent, reserve, pending booking, record, complete), whose rows a node
/// not yet upgraded leaves for an upgraded one to carry on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Protocol {
    Current,
    BeforeIssue21,
}

impl Protocol {
    /// How many steps a Settle takes.
    fn steps(self) -> usize {
        match self {
            Protocol::Current => 4,
            Protocol::BeforeIssue21 => 5,
        }
    }

    /// The step that records: the point of no return.
    fn record_step(self) -> usize {
        self.steps() - 1
    }
}

/// Runs the first `steps` steps of a Settle under `protocol`, each asserted to succeed (every
/// peer is up), and returns the settlement id of the intent.
async fn settle_partly(
    node: &SettlementNode,
    message_id: &str,
    visit: &Visit,
    n: u32,
    steps: usize,
    protocol: Protocol,
) -> String {
    let Started::Intent(intent) = node
        .step_intent(&settle_request(message_id, visit, n, true))
        .await
        .expect("intent")
    else {
        panic!("a fresh message id starts an intent");
    };
    let id = intent.settlement_id().to_owned();
    if steps < 2 {
        return id;
    }
    let reservation = node.step_reserve(&intent).await.expect("step 2: reserved");
    if steps < 3 {
        return id;
    }
    let transfer = match protocol {
        Protocol::Current => node.booking(&intent, &reservation).expect("transfer"),
        Protocol::BeforeIssue21 => {
            let pending = node
                .step_book(&intent, &reservation)
                .await
                .expect("step 3: booked pending");
            if steps < 4 {
                return id;
            }
            pending
        }
    };
    node.step_record(&intent, &reservation, &transfer)
        .await
        .expect("recorded");
    id
}

/// Asserts one settlement is complete everywhere, and returns its record.
async fn assert_complete_everywhere(net: &Sandbox, node: &SettlementNode, id: &str) -> Settlement {
    let get = GetSettlementRequest {
        key: Some(Key::SettlementId(id.to_owned())),
        institution_code: hospital(BINZHOU),
    };
    let settlement = node
        .get_settlement(crate::settlement::his_request(get))
        .await
        .expect("recorded")
        .into_inner()
        .settlement
        .expect("settlement");
    assert!(
        settlement.completed_at.is_some(),
        "{id} completed at the treatment city"
    );
    let post = PostRequest {
        message_id: format!("check-{id}"),
        settlement_id: id.to_owned(),
    };
    let reservation = net
        .benefit(JINAN)
        .post(post)
        .await
        .expect("reserved")
        .into_inner()
        .reservation
        .expect("reservation");
    assert_eq!(
        reservation.status,
        ReservationStatus::Posted as i32,
        "{id} posted at the insured city"
    );
    let transfers = transfers(net, id).await;
    assert_eq!(transfers.len(), 1, "{id}: one transfer, none doubled");
    assert_eq!(
        transfers[0],
        TransferStatus::Posted as i32,
        "{id} posted in the ledger"
    );
    settlement
}

/// Asserts one settlement is absent everywhere: voided here, at the insured city and in the ledger.
async fn assert_voided_everywhere(
    net: &Sandbox,
    node: &SettlementNode,
    id: &str,
    message_id: &str,
    visit: &Visit,
    n: u32,
) {
    // A replay of the voided Settle is refused as such, not settled again.
    let status = node
        .settle(crate::settlement::his_request(settle_request(
            message_id, visit, n, true,
        )))
        .await
        .unwrap_err();
    assert_refused(&status, "SETTLEMENT_VOIDED");
    let void = VoidRequest {
        message_id: format!("check-{id}"),
        settlement_id: id.to_owned(),
        reason: "check".into(),
    };
    let reservation = net
        .benefit(JINAN)
        .void(void)
        .await
        .expect("voidable")
        .into_inner()
        .reservation
        .expect("reservation");
    assert_eq!(
        reservation.status,
        ReservationStatus::Voided as i32,
        "{id} voided at the insured city"
    );
    for status in transfers(net, id).await {
        assert_eq!(
            status,
            TransferStatus::Voided as i32,
            "{id} voided in the ledger"
        );
    }
}

async fn transfers(net: &Sandbox, id: &str) -> Vec<i32> {
    let lookup = LookupTransfersRequest {
        selector: Some(Selector::SettlementId(id.to_owned())),
    };
    net.ledger()
        .lookup_transfers(lookup)
        .await
        .expect("looked up")
        .into_inner()
        .transfers
        .iter()
        .map(|transfer| transfer.status)
        .collect()
}

network_test! {
    /// Proves the treatment node survives a crash at every step boundary of a Settle: cut off
    /// after 1, 2 or 3 of its 4 steps and restarted on the same store, its recovery voids in
    /// all three places what was not recorded and completes in all three what was. The same
    /// for a Settle of the protocol before issue 21 (cut off after 1 to 4 of its 5 steps, the
    /// transfer booked pending at the third): the rows a node not yet upgraded leaves are
    /// carried on by an upgraded one.
    async fn treatment_node_crashes_at_every_boundary(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut completed = Vec::new();
        for protocol in [Protocol::Current, Protocol::BeforeIssue21] {
            for steps in 1..protocol.steps() {
                let tag = match protocol {
                    Protocol::Current => format!("T{steps}"),
                    Protocol::BeforeIssue21 => format!("TL{steps}"),
                };
                let (id, visit) = {
                    let node = own_node(net, dir.path()).await;
                    let visit = open_own_visit(&node, &tag, JINAN, 1).await;
                    let id = settle_partly(&node, &format!("S-{tag}"), &visit, 1, steps, protocol).await;
                    // The process dies here: nothing more runs, nothing is cleaned up.
                    drop(node);
                    (id, visit)
                };
                let restarted = own_node(net, dir.path()).await;
                let report = restarted.recover().await.expect("swept");
                assert_eq!(report.left, 0, "{protocol:?}, after {steps} steps: {report:?}");
                if steps >= protocol.record_step() {
                    completed.push(assert_complete_everywhere(net, &restarted, &id).await);
                } else {
                    assert_voided_everywhere(net, &restarted, &id, &format!("S-{tag}"), &visit, 1).await;
                }
                restarted.store().close().await;
            }
        }
        assert_ledger_agrees(net, &completed).await;
    }
}

network_test! {
    /// Proves a Settle survives the insured node's crash at every step boundary: Jinan's
    /// settlement server (which holds the benefit service) is aborted after 1, 2 or 3 steps,
    /// the Settle runs on against it, the server is restarted, and the treatment node's recovery
    /// leaves the settlement complete or voided in all three places.
    async fn insured_node_crashes_at_every_boundary(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let node = own_node(net, dir.path()).await;
        let insured = Owner::Pool(yitong_core::PoolCode::parse(JINAN).expect("city"));
        let mut completed = Vec::new();
        for steps in 1..Protocol::Current.steps() {
            let tag = format!("I{steps}");
            let visit = open_own_visit(&node, &tag, JINAN, 2).await;
            let Started::Intent(intent) = node.step_intent(&settle_request(&format!("S-{tag}"), &visit, 2, true)).await.expect("intent") else {
                panic!("a fresh message id starts an intent");
            };
            let id = intent.settlement_id().to_owned();
            let mut reservation = None;
            for step in 2..=Protocol::Current.steps() {
                if step == steps + 1 {
                    net.abort_server(insured, Service::Settlement);
                }
                let done = match step {
                    2 => node.step_reserve(&intent).await.map(|held| reservation = Some(held)).is_ok(),
                    3 => match &reservation {
                        Some(held) => {
                            let transfer = node.booking(&intent, held).expect("transfer");
                            node.step_record(&intent, held, &transfer).await.is_ok()
                        }
                        None => false,
                    },
                    _ => node.step_complete(&id).await.is_ok(),
                };
                // Every step before the crash succeeds. After it, a step may still go through: an
                // aborted server's open connections can finish a call in flight.
                assert!(done || step > steps, "insured node down after {steps} steps: step {step} failed before the crash");
                if !done {
                    break;
                }
            }
            net.restart_server(insured, Service::Settlement).await;
            let report = node.recover().await.expect("swept");
            assert_eq!(report.left, 0, "insured node down after {steps} steps: {report:?}");
            if steps >= 2 {
                // Reserved before the crash: the record and the posts follow once it is back.
                completed.push(assert_complete_everywhere(net, &node, &id).await);
            } else {
                assert_voided_everywhere(net, &node, &id, &format!("S-{tag}"), &visit, 2).await;
            }
        }
        assert_ledger_agrees(net, &completed).await;
        node.store().close().await;
    }
}

/// Each reservation of `ids` as Jinan's store holds it: (settlement id, status, account moved),
/// in id order; an id not held is absent.
async fn held(net: &Sandbox, ids: &[&str]) -> Vec<(String, String, i64)> {
    use yitong_store::sqlx;
    let owner = Owner::Pool(yitong_core::PoolCode::parse(JINAN).expect("city"));
    let store = net.store(owner, Service::Settlement).await;
    let mut held = Vec::new();
    for id in ids {
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "SELECT settlement_id, status, account_moved FROM reservations WHERE settlement_id = $1",
        )
        .bind(*id)
        .fetch_optional(store.pool())
        .await
        .expect("reservations read");
        held.extend(row);
    }
    store.close().await;
    held
}

network_test! {
    /// Proves a crash inside a group commit at the insured city loses the whole group and
    /// half-writes none of it: a group of a Post (whose personal-account movement identity
    /// made before the crash) and two Reserves, one of the same person, is booked in its
    /// transaction and the instance dies before the commit; nothing of it is in the store.
    /// Booked again by a restarted instance, every request takes effect once (the account moved
    /// once, the second Reserve seeing the Post and the first), and the whole group sent once
    /// more is answered as replays, changing nothing.
    async fn a_crash_before_a_groups_commit_loses_the_whole_group(net) {
        use crate::benefit::{balance, claim, fen, jinan_instance, reserve, zibo_caller};
        let zibo = zibo_caller();
        let opening = balance(net).await;
        let node = jinan_instance(net).await;
        let first = node.prepare_reserve(&zibo, reserve("C0", claim("300.00", true))).await.expect("prepared");
        let staged = zibo.clone().scope(node.stage(&[first])).await.expect("staged");
        let c0 = node.commit(staged).await.expect("committed").remove(0).expect("C0 held");
        let c0_account = fen(&c0.split.expect("split").account_pay);
        assert!(c0_account > 0, "the employee's share is paid from the account");
        let mut other = claim("500.00", false);
        other.person_no = "3701000000000002".into();
        let group = |node: &BenefitNode| {
            let node = node.clone();
            let zibo = zibo.clone();
            let other = other.clone();
            async move {
                vec![
                    node.prepare_post(PostRequest { message_id: "P-C0".into(), settlement_id: "C0".into() }).await.expect("prepared"),
                    node.prepare_reserve(&zibo, reserve("C1", claim("300.00", true))).await.expect("prepared"),
                    node.prepare_reserve(&zibo, reserve("C2", other)).await.expect("prepared"),
                ]
            }
        };

        let writes = group(&node).await;
        let staged = zibo.clone().scope(node.stage(&writes)).await.expect("staged");
        assert_eq!(balance(net).await, opening - c0_account, "identity moved the account inside the group");
        // The instance dies here, its group booked and not committed: nothing more runs.
        drop(staged);
        node.store().close().await;
        drop(node);
        assert_eq!(
            held(net, &["C0", "C1", "C2"]).await,
            [("C0".to_owned(), "reserved".to_owned(), 0)],
            "the crash lost the whole group: C0 still reserved, C1 and C2 never held"
        );

        let restarted = jinan_instance(net).await;
        let writes = group(&restarted).await;
        let staged = zibo.clone().scope(restarted.stage(&writes)).await.expect("staged");
        let answers: Vec<_> = restarted.commit(staged).await.expect("committed").into_iter().map(|answer| answer.expect("booked")).collect();
        assert_eq!(answers[0].status, ReservationStatus::Posted as i32);
        let c1 = answers[1].split.clone().expect("split");
        assert_eq!(balance(net).await, opening - c0_account, "the account moved once");
        assert_eq!(fen(&c1.account_balance), opening - c0_account - fen(&c1.account_pay), "C1 sees C0 posted");
        assert_eq!(
            held(net, &["C0", "C1", "C2"]).await,
            [("C0".to_owned(), "posted".to_owned(), 1), ("C1".to_owned(), "reserved".to_owned(), 0), ("C2".to_owned(), "reserved".to_owned(), 0)],
        );

        // The treatment city's retries of the whole group are replays.
        let writes = group(&restarted).await;
        let staged = zibo.clone().scope(restarted.stage(&writes)).await.expect("staged");
        let replayed: Vec<_> = restarted.commit(staged).await.expect("committed").into_iter().map(|answer| answer.expect("replayed")).collect();
        assert_eq!(replayed, answers);
        assert_eq!(balance(net).await, opening - c0_account);
        restarted.store().close().await;
    }
}

network_test! {
    /// Proves a crash inside a group commit at the treatment city loses the whole group and
    /// half-writes none of it: a group of two Settles' intents is booked on the city's own
    /// store and the node dies before the commit; neither message id then has a settlement,
    /// and sent again to a restarted node both settle and complete everywhere.
    async fn a_crash_before_a_treatment_groups_commit_loses_its_intents(net) {
        crate::settlement::binzhou_hospital().scope(intents_lost(net)).await;
    }
}

/// The steps of `a_crash_before_a_treatment_groups_commit_loses_its_intents`, run as Binzhou's
/// hospital.
async fn intents_lost(net: &Sandbox) {
    use crate::settlement::{city_node, his_request};
    let node = city_node(net).await;
    let x = open_own_visit(&node, "CX", JINAN, 1).await;
    let y = open_own_visit(&node, "CY", JINAN, 2).await;
    let writes = vec![
        node.prepare_intent(&settle_request("S-CX", &x, 1, true))
            .await
            .expect("prepared"),
        node.prepare_intent(&settle_request("S-CY", &y, 2, true))
            .await
            .expect("prepared"),
    ];
    let staged = node.stage(&writes).await.expect("staged");
    // The node dies here, its group booked and not committed: nothing more runs.
    drop(staged);
    node.store().close().await;
    drop(node);

    let restarted = city_node(net).await;
    for message_id in ["S-CX", "S-CY"] {
        let get = GetSettlementRequest {
            key: Some(Key::MessageId(message_id.to_owned())),
            institution_code: hospital(BINZHOU),
        };
        let status = restarted
            .get_settlement(his_request(get))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::NotFound,
            "{message_id}: the crash lost its intent: {status:?}"
        );
    }
    settle_everywhere(net, &restarted, &[("S-CX", &x, 1), ("S-CY", &y, 2)]).await;
    restarted.store().close().await;
}

/// Settles each (message id, visit, person) at `node` as Binzhou's hospital, asserts each
/// complete everywhere, and the ledger in agreement with them.
async fn settle_everywhere(net: &Sandbox, node: &SettlementNode, settles: &[(&str, &Visit, u32)]) {
    let mut live = Vec::new();
    for (message_id, visit, n) in settles {
        let settled = node
            .settle(crate::settlement::his_request(settle_request(
                message_id, visit, *n, true,
            )))
            .await
            .expect("settled")
            .into_inner()
            .settlement
            .expect("settlement");
        live.push(assert_complete_everywhere(net, node, &settled.settlement_id).await);
    }
    assert_ledger_agrees(net, &live).await;
}

network_test! {
    /// Proves a crash inside a group commit of records at the treatment city records none of
    /// them: two intents are written and reserved, their records booked in one group, and the
    /// node dies before the commit. Both stay intents, the recovery sweep voids them in all
    /// three places, and the visits then settle under new message ids.
    async fn a_crash_before_a_treatment_groups_commit_records_nothing(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let node = own_node(net, dir.path()).await;
        let z = open_own_visit(&node, "CZ", JINAN, 1).await;
        let w = open_own_visit(&node, "CW", JINAN, 2).await;
        let mut records = Vec::new();
        let mut ids = Vec::new();
        for (message_id, visit, n) in [("S-CZ", &z, 1), ("S-CW", &w, 2)] {
            let Started::Intent(intent) = node.step_intent(&settle_request(message_id, visit, n, true)).await.expect("intent") else {
                panic!("a fresh message id starts an intent");
            };
            let reservation = node.step_reserve(&intent).await.expect("reserved");
            let transfer = node.booking(&intent, &reservation).expect("transfer");
            records.push(node.prepare_record(&intent, &reservation, &transfer));
            ids.push(intent.settlement_id().to_owned());
        }
        let staged = node.stage(&records).await.expect("staged");
        // The node dies here, its group booked and not committed: nothing more runs.
        drop(staged);
        node.store().close().await;
        drop(node);

        let restarted = own_node(net, dir.path()).await;
        let report = restarted.recover().await.expect("swept");
        assert_eq!((report.voided, report.completed, report.left), (2, 0, 0), "both were left intents");
        assert_voided_everywhere(net, &restarted, &ids[0], "S-CZ", &z, 1).await;
        assert_voided_everywhere(net, &restarted, &ids[1], "S-CW", &w, 2).await;
        settle_everywhere(net, &restarted, &[("S-CZ2", &z, 1), ("S-CW2", &w, 2)]).await;
        restarted.store().close().await;
    }
}
