//! The clearing house's ledger core, as the settlement nodes and the bureaus use it: transfers
//! pending, posted, voided and expired; idempotent creation; linked chains; balances derived
//! from the journal; and a hash-chained journal that finds the first altered entry.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use tonic::Code;
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::ledger::v1::lookup_transfers_request::Selector;
use yitong_proto::ledger::v1::{
    Account, CreateTransferResult, CreateTransfersRequest, CreateTransfersResponse,
    GetBalancesRequest, GetJournalDigestRequest, GetJournalDigestResponse, LookupTransfersRequest,
    PendingTransferResult, PostPendingTransfersRequest, SettlementRecord, Transfer, TransferCode,
    TransferFlags, TransferIds, TransferRecord, TransferStatus, VerifyJournalRequest,
    VerifyJournalResponse, VoidPendingTransfersRequest,
};
use yitong_sandbox::Channel;
use yitong_sandbox::{BINZHOU, DONGYING, JINAN, PILOT_CITIES, ZIBO, network_test};
use yitong_store::sqlx::{self, AssertSqlSafe};

use crate::support::{assert_invalid, settlement_transfer, transfer_id, yuan};

type Ledger = LedgerServiceClient<Channel>;

/// The n-th transfer id of a test (every test runs on a fresh ledger).
/// A posted deposit into a city's prepaid fund.
fn deposit(n: u32, city: &str, yuan: &str) -> Transfer {
    Transfer {
        id: transfer_id(n),
        debit_account_id: format!("{city}.bank"),
        credit_account_id: format!("{city}.fund"),
        amount: yuan.to_owned(),
        code: TransferCode::Deposit as i32,
        operator_id: "bureau-operator-1".to_owned(),
        ..Default::default()
    }
}

/// A posted SETTLEMENT of settlement `serial` at a `treatment` hospital for a person insured in
/// `insured`: the insured city pays fund pay plus account pay; the patient paid the cash.
fn settlement(
    n: u32,
    serial: u32,
    insured: &str,
    treatment: &str,
    fund: i64,
    account: i64,
) -> Transfer {
    let cash = 1_000;
    settlement_transfer(
        n,
        SettlementRecord {
            settlement_id: format!("T{treatment}{serial:010}"),
            message_id: format!("H{treatment}00001-{serial}"),
            treatment_city: treatment.to_owned(),
            insured_city: insured.to_owned(),
            institution_code: format!("H{treatment}00001"),
            visit_id: format!("S{treatment}260301{serial:07}"),
            person_no: format!("{insured}{serial:010}"),
            insurance_type: 310,
            clearing_type: 11,
            settlement_date: "2026-03-01".to_owned(),
            total_amount: yuan(fund + account + cash),
            fund_pay: yuan(fund),
            account_pay: yuan(account),
            cash_pay: yuan(cash),
            cancellation: false,
            original_settlement_id: String::new(),
            fund_payments: Vec::new(),
        },
    )
}

/// The CANCELLATION of `original`, under transfer id `n`: accounts swapped, amounts negated.
fn cancellation(n: u32, original: &Transfer) -> Transfer {
    let mut transfer = original.clone();
    transfer.id = transfer_id(n);
    transfer.code = TransferCode::Cancellation as i32;
    std::mem::swap(
        &mut transfer.debit_account_id,
        &mut transfer.credit_account_id,
    );
    let record = transfer.settlement.as_mut().expect("a settlement record");
    record.original_settlement_id = record.settlement_id.clone();
    record.settlement_id = format!("C{}", &record.settlement_id[1..]);
    record.cancellation = true;
    for amount in [
        &mut record.total_amount,
        &mut record.fund_pay,
        &mut record.account_pay,
        &mut record.cash_pay,
    ] {
        amount.insert(0, '-');
    }
    transfer
}

fn pending(mut transfer: Transfer, timeout_seconds: u32) -> Transfer {
    transfer.flags = Some(TransferFlags {
        pending: true,
        ..transfer.flags.unwrap_or_default()
    });
    transfer.pending_timeout_seconds = timeout_seconds;
    transfer
}

fn linked(mut transfer: Transfer) -> Transfer {
    transfer.flags = Some(TransferFlags {
        linked: true,
        ..transfer.flags.unwrap_or_default()
    });
    transfer
}

async fn create_reply(
    ledger: &mut Ledger,
    message_id: &str,
    transfers: Vec<Transfer>,
) -> CreateTransfersResponse {
    ledger
        .create_transfers(CreateTransfersRequest {
            message_id: message_id.to_owned(),
            transfers,
        })
        .await
        .unwrap_or_else(|status| panic!("CreateTransfers {message_id}: {status:?}"))
        .into_inner()
}

async fn create(
    ledger: &mut Ledger,
    message_id: &str,
    transfers: Vec<Transfer>,
) -> Vec<CreateTransferResult> {
    create_reply(ledger, message_id, transfers)
        .await
        .results
        .iter()
        .map(|outcome| outcome.result())
        .collect()
}

async fn post(
    ledger: &mut Ledger,
    message_id: &str,
    ids: &[String],
) -> Vec<(PendingTransferResult, u64)> {
    ledger
        .post_pending_transfers(PostPendingTransfersRequest {
            message_id: message_id.to_owned(),
            pending_transfer_ids: ids.to_vec(),
        })
        .await
        .expect("PostPendingTransfers answers")
        .into_inner()
        .results
        .iter()
        .map(|outcome| (outcome.result(), outcome.journal_sequence))
        .collect()
}

async fn void(
    ledger: &mut Ledger,
    message_id: &str,
    ids: &[String],
) -> Vec<(PendingTransferResult, u64)> {
    ledger
        .void_pending_transfers(VoidPendingTransfersRequest {
            message_id: message_id.to_owned(),
            pending_transfer_ids: ids.to_vec(),
            reason: "the settlement failed before the treatment city recorded it".to_owned(),
        })
        .await
        .expect("VoidPendingTransfers answers")
        .into_inner()
        .results
        .iter()
        .map(|outcome| (outcome.result(), outcome.journal_sequence))
        .collect()
}

async fn lookup(ledger: &mut Ledger, transfer_id: &str) -> Option<TransferRecord> {
    ledger
        .lookup_transfers(LookupTransfersRequest {
            selector: Some(Selector::Ids(TransferIds {
                ids: vec![transfer_id.to_owned()],
            })),
        })
        .await
        .expect("LookupTransfers answers")
        .into_inner()
        .transfers
        .pop()
}

async fn status(ledger: &mut Ledger, transfer_id: &str) -> TransferStatus {
    lookup(ledger, transfer_id)
        .await
        .expect("the transfer exists")
        .status()
}

/// Every account of the four pilot cities, by id.
async fn all_balances(ledger: &mut Ledger) -> BTreeMap<String, Account> {
    ledger
        .get_balances(GetBalancesRequest {
            cities: PILOT_CITIES.map(str::to_owned).to_vec(),
            ..Default::default()
        })
        .await
        .expect("GetBalances answers")
        .into_inner()
        .accounts
        .into_iter()
        .map(|account| (account.id.clone(), account))
        .collect()
}

async fn account(ledger: &mut Ledger, account_id: &str) -> Account {
    ledger
        .get_balances(GetBalancesRequest {
            account_ids: vec![account_id.to_owned()],
            ..Default::default()
        })
        .await
        .expect("GetBalances answers")
        .into_inner()
        .accounts
        .pop()
        .expect("one account")
}

/// (debits pending, debits posted, credits pending, credits posted) in yuan.
fn sums(account: &Account) -> [&str; 4] {
    [
        account.debits_pending.as_str(),
        account.debits_posted.as_str(),
        account.credits_pending.as_str(),
        account.credits_posted.as_str(),
    ]
}

async fn digest(ledger: &mut Ledger) -> GetJournalDigestResponse {
    ledger
        .get_journal_digest(GetJournalDigestRequest {})
        .await
        .expect("GetJournalDigest answers")
        .into_inner()
}

async fn verify(ledger: &mut Ledger) -> VerifyJournalResponse {
    ledger
        .verify_journal(VerifyJournalRequest { up_to_sequence: 0 })
        .await
        .expect("VerifyJournal answers")
        .into_inner()
}

/// Yuan text to fen.
fn fen(yuan: &str) -> i64 {
    let (whole, fraction) = yuan.split_once('.').unwrap_or((yuan, "00"));
    let sign = if whole.starts_with('-') { -1 } else { 1 };
    let whole: i64 = whole.trim_start_matches('-').parse().expect("yuan");
    sign * (whole * 100 + fraction.parse::<i64>().expect("fen"))
}

network_test! {
    /// Proves that a pending settlement holds its amount in the pending sums of both accounts,
    /// that posting it moves the amount to the posted sums, one journal entry each, and that a
    /// second post or a void of it is answered ALREADY_POSTED and changes nothing.
    async fn pending_then_posted(net) {
        let mut ledger = net.ledger();
        let transfer = pending(settlement(1, 1, JINAN, ZIBO, 7_000, 1_000), 60);
        let reply = create_reply(&mut ledger, "MSG-1", vec![transfer.clone()]).await;
        assert_eq!(reply.results[0].result(), CreateTransferResult::Ok);
        assert_eq!(reply.results[0].journal_sequence, 1);
        let advances = account(&mut ledger, "370300.advances").await;
        assert_eq!(sums(&advances), ["80.00", "0.00", "0.00", "0.00"]);
        let owed = account(&mut ledger, "370100->370300.obligation").await;
        assert_eq!(sums(&owed), ["0.00", "0.00", "80.00", "0.00"]);
        assert_eq!(owed.balance, "0.00", "only posted amounts count in the balance");
        let record = lookup(&mut ledger, &transfer_id(1)).await.expect("created");
        assert_eq!(record.status(), TransferStatus::Pending);
        assert_eq!(record.transfer.as_ref(), Some(&transfer));
        let created = record.created_at.expect("created_at");
        assert_eq!(record.expires_at.expect("expires_at").seconds, created.seconds + 60);
        assert!(record.resolved_at.is_none());
        assert_eq!(record.clearing_period.map(|p| (p.year, p.month)), Some((2026, 3)));

        assert_eq!(post(&mut ledger, "MSG-2", &[transfer_id(1)]).await, [(PendingTransferResult::Ok, 2)]);
        let advances = account(&mut ledger, "370300.advances").await;
        assert_eq!(sums(&advances), ["0.00", "80.00", "0.00", "0.00"]);
        assert_eq!(advances.balance, "80.00");
        let owed = account(&mut ledger, "370100->370300.obligation").await;
        assert_eq!(sums(&owed), ["0.00", "0.00", "0.00", "80.00"]);
        assert_eq!(owed.balance, "80.00");
        let record = lookup(&mut ledger, &transfer_id(1)).await.expect("created");
        assert_eq!(record.status(), TransferStatus::Posted);
        assert!(record.resolved_at.is_some());

        assert_eq!(post(&mut ledger, "MSG-3", &[transfer_id(1)]).await, [(PendingTransferResult::PendingTransferAlreadyPosted, 0)]);
        assert_eq!(void(&mut ledger, "MSG-4", &[transfer_id(1)]).await, [(PendingTransferResult::PendingTransferAlreadyPosted, 0)]);
        assert_eq!(digest(&mut ledger).await.entry_count, 2);
        assert!(verify(&mut ledger).await.intact);
    }
}

network_test! {
    /// Proves that voiding a pending settlement releases its amount (every sum back to zero),
    /// records the void, and frees the settlement id for a new booking under a new transfer.
    async fn pending_then_voided(net) {
        let mut ledger = net.ledger();
        let first = pending(settlement(1, 7, BINZHOU, DONGYING, 12_345, 0), 60);
        assert_eq!(create(&mut ledger, "MSG-1", vec![first]).await, [CreateTransferResult::Ok]);
        let again = pending(settlement(2, 7, BINZHOU, DONGYING, 12_345, 0), 60);
        assert_eq!(
            create(&mut ledger, "MSG-2", vec![again.clone()]).await,
            [CreateTransferResult::SettlementAlreadyBooked],
            "a second live booking of one settlement would count it twice"
        );
        assert_eq!(void(&mut ledger, "MSG-3", &[transfer_id(1)]).await, [(PendingTransferResult::Ok, 2)]);
        for account_id in ["370500.advances", "371600->370500.obligation"] {
            assert_eq!(sums(&account(&mut ledger, account_id).await), ["0.00"; 4], "{account_id}");
        }
        assert_eq!(status(&mut ledger, &transfer_id(1)).await, TransferStatus::Voided);
        assert_eq!(void(&mut ledger, "MSG-4", &[transfer_id(1)]).await, [(PendingTransferResult::PendingTransferAlreadyVoided, 0)]);
        assert_eq!(create(&mut ledger, "MSG-5", vec![again]).await, [CreateTransferResult::Ok]);
        assert_eq!(digest(&mut ledger).await.entry_count, 3);
    }
}

network_test! {
    /// Proves that posting a voided transfer is refused with PENDING_TRANSFER_ALREADY_VOIDED and
    /// changes nothing: not the journal, not a balance, not the transfer's state.
    async fn a_voided_transfer_posted_is_refused(net) {
        let mut ledger = net.ledger();
        let transfer = pending(settlement(1, 3, ZIBO, JINAN, 50_000, 2_500), 300);
        assert_eq!(create(&mut ledger, "MSG-1", vec![transfer]).await, [CreateTransferResult::Ok]);
        assert_eq!(void(&mut ledger, "MSG-2", &[transfer_id(1)]).await, [(PendingTransferResult::Ok, 2)]);
        let before = (digest(&mut ledger).await, all_balances(&mut ledger).await);

        assert_eq!(
            post(&mut ledger, "MSG-3", &[transfer_id(1)]).await,
            [(PendingTransferResult::PendingTransferAlreadyVoided, 0)]
        );
        let after = (digest(&mut ledger).await, all_balances(&mut ledger).await);
        assert_eq!(before, after);
        assert_eq!(status(&mut ledger, &transfer_id(1)).await, TransferStatus::Voided);
        // Nor does an unknown id or a transfer created posted change anything.
        assert_eq!(create(&mut ledger, "MSG-4", vec![deposit(2, JINAN, "10.00")]).await, [CreateTransferResult::Ok]);
        assert_eq!(
            post(&mut ledger, "MSG-5", &[transfer_id(99), transfer_id(2)]).await,
            [(PendingTransferResult::PendingTransferNotFound, 0), (PendingTransferResult::PendingTransferNotPending, 0)]
        );
        assert_eq!(digest(&mut ledger).await.entry_count, 3);
    }
}

network_test! {
    /// Proves that a pending transfer not posted within its timeout is expired by the ledger (a
    /// journal entry of its own, its amount released), and that neither a post nor a void
    /// revives it.
    async fn pending_transfers_expire(net) {
        let mut ledger = net.ledger();
        let transfer = pending(settlement(1, 9, DONGYING, BINZHOU, 3_000, 0), 1);
        assert_eq!(create(&mut ledger, "MSG-1", vec![transfer]).await, [CreateTransferResult::Ok]);
        let deadline = Instant::now() + Duration::from_secs(15);
        let record = loop {
            let record = lookup(&mut ledger, &transfer_id(1)).await.expect("created");
            if record.status() == TransferStatus::Expired {
                break record;
            }
            assert!(Instant::now() < deadline, "the transfer never expired: {record:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let expires_at = record.expires_at.expect("expires_at");
        assert!(record.resolved_at.expect("resolved_at").seconds >= expires_at.seconds);
        assert_eq!(post(&mut ledger, "MSG-2", &[transfer_id(1)]).await, [(PendingTransferResult::PendingTransferExpired, 0)]);
        assert_eq!(void(&mut ledger, "MSG-3", &[transfer_id(1)]).await, [(PendingTransferResult::PendingTransferExpired, 0)]);
        for account_id in ["371600.advances", "370500->371600.obligation"] {
            assert_eq!(sums(&account(&mut ledger, account_id).await), ["0.00"; 4], "{account_id}");
        }
        assert_eq!(digest(&mut ledger).await.entry_count, 2, "the creation and the expiry");
        let verified = verify(&mut ledger).await;
        assert!(verified.intact, "{verified:?}");
        // The settlement may be booked again, as a settlement that must complete does.
        let retry = settlement(2, 9, DONGYING, BINZHOU, 3_000, 0);
        assert_eq!(create(&mut ledger, "MSG-4", vec![retry]).await, [CreateTransferResult::Ok]);
    }
}

network_test! {
    /// Proves that a crashed ledger sweeps nothing: a pending transfer that falls due while its
    /// server is down stays pending until a server runs again, and is expired then. (A sweeper
    /// that outlived its server kept booking expiries through every outage, and thousands of
    /// them, one per restart, slowed a long torture run on PostgreSQL to a crawl.)
    async fn a_crashed_ledger_sweeps_nothing(net) {
        use yitong_core::{Owner, Service};

        let mut ledger = net.ledger();
        let transfer = pending(settlement(1, 9, DONGYING, BINZHOU, 3_000, 0), 1);
        assert_eq!(create(&mut ledger, "MSG-1", vec![transfer]).await, [CreateTransferResult::Ok]);
        net.abort_server(Owner::ClearingHouse, Service::Ledger);
        // Due after one second; a live sweeper would book it within half a second more.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let store = net.ledger_store().await;
        let events: Vec<String> = sqlx::query_scalar("SELECT event FROM journal ORDER BY sequence")
            .fetch_all(store.pool())
            .await
            .expect("events read");
        store.close().await;
        assert_eq!(events, ["created"], "a server that is down expired a transfer");

        net.restart_server(Owner::ClearingHouse, Service::Ledger).await;
        let mut ledger = net.ledger();
        let deadline = Instant::now() + Duration::from_secs(15);
        while lookup(&mut ledger, &transfer_id(1)).await.expect("created").status() != TransferStatus::Expired {
            assert!(Instant::now() < deadline, "the restarted ledger never expired the transfer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

network_test! {
    /// Proves that the transfer id is the idempotency key: the same transfers again under a new
    /// message id answer EXISTS with the first creation's instant and sequence and book
    /// nothing; the same message id again returns the first reply; the same message id with
    /// other content is ALREADY_EXISTS.
    async fn replays_are_idempotent(net) {
        let mut ledger = net.ledger();
        let transfers = vec![deposit(1, JINAN, "1000.00"), pending(settlement(2, 1, JINAN, ZIBO, 8_000, 0), 60)];
        let first = create_reply(&mut ledger, "MSG-1", transfers.clone()).await;
        assert!(first.results.iter().all(|outcome| outcome.result() == CreateTransferResult::Ok), "{first:?}");
        let head = digest(&mut ledger).await;

        let replayed = create_reply(&mut ledger, "MSG-1", transfers.clone()).await;
        assert_eq!(replayed, first, "a replayed message id returns its first reply");

        let again = create_reply(&mut ledger, "MSG-2", transfers.clone()).await;
        for (outcome, original) in again.results.iter().zip(&first.results) {
            assert_eq!(outcome.result(), CreateTransferResult::Exists);
            assert_eq!(outcome.created_at, original.created_at);
            assert_eq!(outcome.journal_sequence, original.journal_sequence);
        }
        assert_eq!(digest(&mut ledger).await, head, "nothing was booked");

        let status = ledger
            .create_transfers(CreateTransfersRequest { message_id: "MSG-1".into(), transfers: vec![deposit(3, JINAN, "1.00")] })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert!(lookup(&mut ledger, &transfer_id(3)).await.is_none());
        assert_eq!(digest(&mut ledger).await, head);
    }
}

network_test! {
    /// Proves that a transfer id created again with any field different is refused naming the
    /// field (TigerBeetle's exists_with_different_*), and that the first transfer stands.
    async fn a_transfer_id_with_other_content_names_the_field(net) {
        let mut ledger = net.ledger();
        let base = pending(settlement(1, 1, JINAN, ZIBO, 7_000, 1_000), 60);
        assert_eq!(create(&mut ledger, "MSG-0", vec![base.clone()]).await, [CreateTransferResult::Ok]);
        let variant = |edit: &dyn Fn(&mut Transfer)| {
            let mut transfer = base.clone();
            edit(&mut transfer);
            transfer
        };
        let cases = [
            (
                variant(&|t| {
                    t.flags = None;
                    t.pending_timeout_seconds = 0;
                }),
                CreateTransferResult::ExistsWithDifferentFlags,
            ),
            (cancellation(1, &base), CreateTransferResult::ExistsWithDifferentCode),
            (
                pending(settlement(1, 1, JINAN, DONGYING, 7_000, 1_000), 60),
                CreateTransferResult::ExistsWithDifferentDebitAccount,
            ),
            (
                pending(settlement(1, 1, BINZHOU, ZIBO, 7_000, 1_000), 60),
                CreateTransferResult::ExistsWithDifferentCreditAccount,
            ),
            (
                pending(settlement(1, 1, JINAN, ZIBO, 7_000, 1_001), 60),
                CreateTransferResult::ExistsWithDifferentAmount,
            ),
            (variant(&|t| t.pending_timeout_seconds = 120), CreateTransferResult::ExistsWithDifferentPendingTimeout),
            (
                variant(&|t| t.settlement.as_mut().unwrap().visit_id.push('9')),
                CreateTransferResult::ExistsWithDifferentSettlement,
            ),
            (variant(&|t| t.operator_id = "another operator".into()), CreateTransferResult::Exists),
            (base.clone(), CreateTransferResult::Exists),
        ];
        for (index, (transfer, expected)) in cases.into_iter().enumerate() {
            let results = create(&mut ledger, &format!("MSG-{}", index + 1), vec![transfer]).await;
            assert_eq!(results, [expected], "case {index}");
        }
        assert_eq!(digest(&mut ledger).await.entry_count, 1);
        let record = lookup(&mut ledger, &transfer_id(1)).await.expect("created");
        assert_eq!(record.transfer, Some(base));
    }
}

network_test! {
    /// Proves that a linked chain applies all or none: when one transfer of a chain fails (here
    /// an account of Tai'an, a city of the network that is not enabled, and a settlement booked
    /// twice) the others come back LINKED_EVENT_FAILED and nothing of the chain is stored,
    /// while the batch's other chains apply.
    async fn a_linked_chain_applies_all_or_none(net) {
        let mut ledger = net.ledger();
        let before = all_balances(&mut ledger).await;
        let results = create(
            &mut ledger,
            "MSG-1",
            vec![
                linked(deposit(1, JINAN, "100.00")),
                linked(settlement(2, 1, JINAN, ZIBO, 5_000, 0)),
                deposit(3, "370900", "100.00"),
                deposit(4, BINZHOU, "7.00"),
            ],
        )
        .await;
        use CreateTransferResult::*;
        assert_eq!(results, [LinkedEventFailed, LinkedEventFailed, DebitAccountNotFound, Ok]);
        for n in 1..=3 {
            assert!(lookup(&mut ledger, &transfer_id(n)).await.is_none(), "transfer {n} of the failed chain");
        }
        assert_eq!(digest(&mut ledger).await.entry_count, 1);
        let after = all_balances(&mut ledger).await;
        for (account_id, account) in &after {
            if account_id != "371600.bank" && account_id != "371600.fund" {
                assert_eq!(account, &before[account_id], "{account_id}");
            }
        }

        // A chain whose second transfer books the settlement its first one books fails whole.
        let results = create(
            &mut ledger,
            "MSG-2",
            vec![linked(settlement(5, 2, ZIBO, JINAN, 100, 0)), settlement(6, 2, ZIBO, JINAN, 100, 0)],
        )
        .await;
        assert_eq!(results, [LinkedEventFailed, SettlementAlreadyBooked]);
        assert_eq!(digest(&mut ledger).await.entry_count, 1);

        // The first chain, mended, applies whole.
        let results = create(
            &mut ledger,
            "MSG-3",
            vec![linked(deposit(1, JINAN, "100.00")), linked(settlement(2, 1, JINAN, ZIBO, 5_000, 0)), deposit(3, ZIBO, "100.00")],
        )
        .await;
        assert_eq!(results, [Ok, Ok, Ok]);
        assert_eq!(digest(&mut ledger).await.entry_count, 4);
    }
}

network_test! {
    /// Proves that every account's four sums and balance equal what the test computes from the
    /// transfers it made (deposits, a withdrawal, cross-city and same-city settlements, some
    /// posted later, some voided, some still pending, and a cancellation), that debits equal
    /// credits over the whole ledger, and that each city's prepaid position follows.
    async fn balances_equal_the_sums_of_the_transfers(net) {
        let mut ledger = net.ledger();
        // account -> [debits pending, debits posted, credits pending, credits posted] in fen.
        let mut expected: BTreeMap<String, [i64; 4]> = BTreeMap::new();
        let mut book = |transfer: &Transfer, pending: bool| {
            let amount = fen(&transfer.amount);
            let (debit, credit) = if pending { (0, 2) } else { (1, 3) };
            expected.entry(transfer.debit_account_id.clone()).or_default()[debit] += amount;
            expected.entry(transfer.credit_account_id.clone()).or_default()[credit] += amount;
        };
        let mut batch = Vec::new();
        let mut n = 0;
        for (index, city) in PILOT_CITIES.iter().enumerate() {
            n += 1;
            let transfer = deposit(n, city, &format!("{}.00", 10_000 * (index + 1)));
            book(&transfer, false);
            batch.push(transfer);
        }
        n += 1;
        let mut withdrawal = deposit(n, ZIBO, "1234.56");
        withdrawal.code = TransferCode::Withdrawal as i32;
        std::mem::swap(&mut withdrawal.debit_account_id, &mut withdrawal.credit_account_id);
        book(&withdrawal, false);
        batch.push(withdrawal);
        // Every ordered pair, same-city included: posted, pending to post, pending to void,
        // pending left.
        let (mut to_post, mut to_void, mut cancelled) = (Vec::new(), Vec::new(), None);
        let mut serial = 0;
        for insured in PILOT_CITIES {
            for treatment in PILOT_CITIES {
                for fate in 0..4 {
                    n += 1;
                    serial += 1;
                    let fund = 1_000 + i64::from(serial) * 37;
                    let account = if fate == 1 { 250 } else { 0 };
                    let transfer = settlement(n, serial, insured, treatment, fund, account);
                    let transfer = if fate == 0 { transfer } else { pending(transfer, 600) };
                    match fate {
                        0 => book(&transfer, false),
                        1 => {
                            book(&transfer, false);
                            to_post.push(transfer.id.clone());
                        }
                        2 => to_void.push(transfer.id.clone()),
                        _ => book(&transfer, true),
                    }
                    if fate == 0 && cancelled.is_none() && insured != treatment {
                        cancelled = Some(transfer.clone());
                    }
                    batch.push(transfer);
                }
            }
        }
        let results = create(&mut ledger, "MSG-1", batch).await;
        assert!(results.iter().all(|result| *result == CreateTransferResult::Ok), "{results:?}");
        n += 1;
        let cancel = cancellation(n, cancelled.as_ref().expect("a cross-city settlement"));
        book(&cancel, false);
        assert_eq!(create(&mut ledger, "MSG-2", vec![cancel]).await, [CreateTransferResult::Ok]);
        assert!(post(&mut ledger, "MSG-3", &to_post).await.iter().all(|(result, _)| *result == PendingTransferResult::Ok));
        assert!(void(&mut ledger, "MSG-4", &to_void).await.iter().all(|(result, _)| *result == PendingTransferResult::Ok));

        let reply = ledger
            .get_balances(GetBalancesRequest { cities: PILOT_CITIES.map(str::to_owned).to_vec(), ..Default::default() })
            .await
            .expect("GetBalances answers")
            .into_inner();
        assert_eq!(reply.journal_sequence, digest(&mut ledger).await.entry_count);
        assert_eq!(reply.accounts.len(), 4 * (4 + 3), "each city's four accounts and three obligations");
        let mut totals = [0i64; 4];
        for account in &reply.accounts {
            let got = sums(account).map(fen);
            let want = expected.get(&account.id).copied().unwrap_or_default();
            assert_eq!(got, want, "{}", account.id);
            let credit_normal = ["fund", "pool", "obligation"].iter().any(|kind| account.id.ends_with(kind));
            let balance = if credit_normal { want[3] - want[1] } else { want[1] - want[3] };
            assert_eq!(fen(&account.balance), balance, "{}", account.id);
            for (total, sum) in totals.iter_mut().zip(got) {
                *total += sum;
            }
        }
        assert_eq!(totals[0], totals[2], "pending debits equal pending credits over the ledger");
        assert_eq!(totals[1], totals[3], "posted debits equal posted credits over the ledger");
        for prepaid in &reply.prepaid_funds {
            let fund = expected[&format!("{}.fund", prepaid.city)];
            let outstanding: i64 = expected
                .iter()
                .filter(|(id, _)| id.starts_with(&format!("{}->", prepaid.city)))
                .map(|(_, [dp, dpo, cp, cpo])| cp + cpo - dp - dpo)
                .sum();
            assert_eq!(fen(&prepaid.fund_balance), fund[3] - fund[1], "{}", prepaid.city);
            assert_eq!(fen(&prepaid.outstanding), outstanding, "{}", prepaid.city);
            assert_eq!(fen(&prepaid.available), fund[3] - fund[1] - outstanding, "{}", prepaid.city);
        }
        assert_eq!(reply.prepaid_funds.len(), 4);
        let verified = verify(&mut ledger).await;
        assert!(verified.intact, "{verified:?}");
    }
}

network_test! {
    /// Proves that the ledger opens the chart of accounts of every enabled city from the
    /// network file, and knows no account of a city that is not enabled.
    async fn every_enabled_city_has_its_chart_of_accounts(net) {
        let mut ledger = net.ledger();
        let accounts = all_balances(&mut ledger).await;
        for city in PILOT_CITIES {
            for kind in ["bank", "fund", "advances", "pool"] {
                assert!(accounts.contains_key(&format!("{city}.{kind}")), "{city}.{kind}");
            }
            for other in PILOT_CITIES.iter().filter(|other| **other != city) {
                assert!(accounts.contains_key(&format!("{city}->{other}.obligation")));
            }
        }
        let status = ledger
            .get_balances(GetBalancesRequest { cities: vec!["370900".into()], ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        let status = ledger
            .get_balances(GetBalancesRequest { account_ids: vec!["370100->370900.obligation".into()], ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
    }
}

network_test! {
    /// Proves that a settlement and its cancellation are both found by the settlement id, that
    /// a second cancellation is refused, and that settle then cancel leaves every balance as
    /// before.
    async fn lookup_by_settlement_finds_its_cancellation(net) {
        let mut ledger = net.ledger();
        let before = all_balances(&mut ledger).await;
        let settled = settlement(1, 42, ZIBO, BINZHOU, 9_900, 100);
        let cancel = cancellation(2, &settled);
        assert_eq!(create(&mut ledger, "MSG-1", vec![settled.clone()]).await, [CreateTransferResult::Ok]);
        assert_eq!(create(&mut ledger, "MSG-2", vec![cancel.clone()]).await, [CreateTransferResult::Ok]);
        assert_eq!(
            create(&mut ledger, "MSG-3", vec![cancellation(3, &settled)]).await,
            [CreateTransferResult::SettlementAlreadyBooked]
        );
        let settlement_id = settled.settlement.as_ref().unwrap().settlement_id.clone();
        let found = ledger
            .lookup_transfers(LookupTransfersRequest { selector: Some(Selector::SettlementId(settlement_id)) })
            .await
            .expect("LookupTransfers answers")
            .into_inner()
            .transfers;
        let found: Vec<(Option<Transfer>, TransferStatus, u64)> =
            found.into_iter().map(|record| (record.transfer.clone(), record.status(), record.journal_sequence)).collect();
        assert_eq!(found, [(Some(settled), TransferStatus::Posted, 1), (Some(cancel), TransferStatus::Posted, 2)]);
        let after = all_balances(&mut ledger).await;
        for (account_id, account) in &after {
            assert_eq!(account.balance, before[account_id].balance, "{account_id}");
        }
    }
}

network_test! {
    /// Proves that malformed requests are INVALID_ARGUMENT naming the field, and that nothing
    /// of them is stored.
    async fn malformed_requests_name_the_field(net) {
        let mut ledger = net.ledger();
        let mut bad_id = deposit(2, JINAN, "1.00");
        bad_id.id = "not-a-uuid".into();
        let mut clearing = deposit(1, JINAN, "1.00");
        clearing.code = TransferCode::ClearingPayment as i32;
        let mut no_record = settlement(1, 1, JINAN, ZIBO, 100, 0);
        no_record.settlement = None;
        let mut wrong_city = settlement(1, 1, JINAN, ZIBO, 100, 0);
        wrong_city.credit_account_id = "370100->370500.obligation".into();
        let cases: Vec<(&str, Vec<Transfer>, &str)> = vec![
            ("MSG-1", vec![deposit(1, JINAN, "1.00"), bad_id], "transfers[1].id"),
            ("MSG-1", vec![linked(deposit(1, JINAN, "1.00"))], "transfers[0].flags.linked"),
            ("MSG-1", vec![clearing], "transfers[0].code"),
            ("MSG-1", vec![no_record], "transfers[0].settlement"),
            ("MSG-1", vec![wrong_city], "transfers[0].credit_account_id"),
            ("MSG-1", vec![deposit(1, JINAN, "0.00")], "transfers[0].amount"),
            ("MSG-1", vec![pending(deposit(1, JINAN, "1.00"), 3_601)], "transfers[0].pending_timeout_seconds"),
            ("MSG-1", vec![], "transfers"),
            ("", vec![deposit(1, JINAN, "1.00")], "message_id"),
        ];
        for (message_id, transfers, field) in cases {
            let status = ledger
                .create_transfers(CreateTransfersRequest { message_id: message_id.into(), transfers })
                .await
                .unwrap_err();
            assert_invalid(&status, field);
        }
        let status = ledger
            .post_pending_transfers(PostPendingTransfersRequest { message_id: "MSG-2".into(), pending_transfer_ids: vec![transfer_id(1), "x".into()] })
            .await
            .unwrap_err();
        assert_invalid(&status, "pending_transfer_ids[1]");
        let status = ledger.get_balances(GetBalancesRequest::default()).await.unwrap_err();
        assert_invalid(&status, "account_ids");
        let status = ledger
            .get_balances(GetBalancesRequest { account_ids: vec!["370100.cash".into()], ..Default::default() })
            .await
            .unwrap_err();
        assert_invalid(&status, "account_ids[0]");
        let status = ledger.lookup_transfers(LookupTransfersRequest { selector: None }).await.unwrap_err();
        assert_invalid(&status, "selector");
        let status = ledger.verify_journal(VerifyJournalRequest { up_to_sequence: 1 }).await.unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

        let head = digest(&mut ledger).await;
        assert_eq!((head.entry_count, head.head_hash.as_str()), (0, "0".repeat(64).as_str()));
        assert!(head.head_recorded_at.is_none());
        // The refused message id left no trace: it books normally now.
        assert_eq!(create(&mut ledger, "MSG-1", vec![deposit(1, JINAN, "1.00")]).await, [CreateTransferResult::Ok]);
    }
}

network_test! {
    /// Proves that concurrent CreateTransfers from several clients (8 tasks of 50 requests each)
    /// keep the journal one linear chain: 400 entries numbered 1 to 400 without gaps or
    /// repeats, a chain that verifies, and sums that add up.
    async fn concurrent_creates_keep_the_chain_linear(net) {
        const TASKS: u32 = 8;
        const REQUESTS_PER_TASK: u32 = 50;
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            // Each task has a channel of its own, as separate settlement nodes would.
            let mut ledger = net.ledger();
            tasks.spawn(async move {
                let mut sequences = Vec::new();
                for request in 0..REQUESTS_PER_TASK {
                    let n = task * REQUESTS_PER_TASK + request + 1;
                    let city = PILOT_CITIES[(n % 4) as usize];
                    let reply = create_reply(&mut ledger, &format!("MSG-{n}"), vec![deposit(n, city, &format!("{n}.00"))]).await;
                    assert_eq!(reply.results[0].result(), CreateTransferResult::Ok);
                    sequences.push(reply.results[0].journal_sequence);
                }
                sequences
            });
        }
        let mut sequences = HashSet::new();
        while let Some(task) = tasks.join_next().await {
            for sequence in task.expect("task does not panic") {
                assert!(sequences.insert(sequence), "sequence {sequence} given twice");
            }
        }
        let total = u64::from(TASKS * REQUESTS_PER_TASK);
        assert_eq!(sequences, (1..=total).collect::<HashSet<u64>>());
        let mut ledger = net.ledger();
        let head = digest(&mut ledger).await;
        assert_eq!(head.entry_count, total);
        let verified = verify(&mut ledger).await;
        assert!(verified.intact, "{verified:?}");
        assert_eq!((verified.entries_checked, verified.head_hash), (total, head.head_hash));
        let accounts = all_balances(&mut ledger).await;
        for (index, city) in PILOT_CITIES.iter().enumerate() {
            let deposited: i64 = (1..=TASKS * REQUESTS_PER_TASK)
                .filter(|n| (n % 4) as usize == index)
                .map(|n| i64::from(n) * 100)
                .sum();
            assert_eq!(fen(&accounts[&format!("{city}.fund")].credits_posted), deposited, "{city}");
        }
    }
}

/// The `journal` table's columns, and whether each holds text.
const JOURNAL_COLUMNS: [(&str, bool); 40] = [
    ("sequence", false),
    ("event", true),
    ("stage", false),
    ("transfer_id", true),
    ("debit_account_id", true),
    ("credit_account_id", true),
    ("amount_fen", false),
    ("code", false),
    ("flags", false),
    ("pending_timeout_seconds", false),
    ("operator_id", true),
    ("settlement_id", true),
    ("settlement_message_id", true),
    ("treatment_city", true),
    ("insured_city", true),
    ("institution_code", true),
    ("visit_id", true),
    ("person_no", true),
    ("insurance_type", false),
    ("clearing_type", false),
    ("settlement_date", true),
    ("total_amount_fen", false),
    ("fund_pay_fen", false),
    ("account_pay_fen", false),
    ("cash_pay_fen", false),
    ("cancellation", false),
    ("original_settlement_id", true),
    ("business_date", true),
    ("clearing_period", true),
    ("created_at_ms", false),
    ("expires_at_ms", false),
    ("recorded_at_ms", false),
    ("message_id", true),
    ("reason", true),
    ("debit_pending_fen", false),
    ("debit_posted_fen", false),
    ("credit_pending_fen", false),
    ("credit_posted_fen", false),
    ("previous_hash", true),
    ("hash", true),
];

/// Changes one byte of one column of journal entry `sequence` directly in the database and
/// returns the SQL that puts it back. The event, whose CHECK constraint admits only the four
/// events' words, is changed to another event's word instead.
async fn alter_one_byte(
    store: &yitong_store::Store,
    column: &str,
    text: bool,
    sequence: i64,
) -> String {
    if column == "sequence" {
        // Any other number of an entry that exists would collide with the primary key.
        let moved = sequence + 1_000_000;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE journal SET sequence = {moved} WHERE sequence = {sequence}"
        )))
        .execute(store.pool())
        .await
        .expect("alter");
        return format!("UPDATE journal SET sequence = {sequence} WHERE sequence = {moved}");
    }
    let select = format!("SELECT {column} FROM journal WHERE sequence = {sequence}");
    if column == "event" {
        let original: String = sqlx::query_scalar(AssertSqlSafe(select))
            .fetch_one(store.pool())
            .await
            .expect("read");
        let altered = if original == "created" {
            "posted"
        } else {
            "created"
        };
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE journal SET event = $1 WHERE sequence = {sequence}"
        )))
        .bind(altered)
        .execute(store.pool())
        .await
        .expect("alter");
        return format!("UPDATE journal SET event = '{original}' WHERE sequence = {sequence}");
    }
    if text {
        let original: String = sqlx::query_scalar(AssertSqlSafe(select))
            .fetch_one(store.pool())
            .await
            .expect("read");
        let mut altered = original.clone();
        match altered.pop() {
            Some('a') => altered.push('b'),
            Some(_) => altered.push('a'),
            None => altered.push('a'),
        }
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE journal SET {column} = $1 WHERE sequence = {sequence}"
        )))
        .bind(altered)
        .execute(store.pool())
        .await
        .expect("alter");
        format!("UPDATE journal SET {column} = '{original}' WHERE sequence = {sequence}")
    } else {
        let original: i64 = sqlx::query_scalar(AssertSqlSafe(select))
            .fetch_one(store.pool())
            .await
            .expect("read");
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE journal SET {column} = $1 WHERE sequence = {sequence}"
        )))
        .bind(original ^ 1)
        .execute(store.pool())
        .await
        .expect("alter");
        format!("UPDATE journal SET {column} = {original} WHERE sequence = {sequence}")
    }
}

async fn verify_outcome(ledger: &mut Ledger) -> (bool, u64, String) {
    let verified = verify(ledger).await;
    (
        verified.intact,
        verified.first_altered_sequence,
        verified.detail,
    )
}

network_test! {
    /// Proves that altering any single byte of any column of a journal row directly in the
    /// database (its event: to another event) is found by VerifyJournal, which names that entry as the first altered (and
    /// the earlier of two), and that a deleted entry is named as missing. The journal refuses
    /// the UPDATE and DELETE this takes, so the test first disarms its triggers, as an intruder
    /// with the table owner's rights would: the hash chain is what still finds the alteration.
    async fn any_altered_byte_is_found(net) {
        let mut ledger = net.ledger();
        let settled = settlement(3, 5, JINAN, DONGYING, 4_400, 600);
        let results = create(
            &mut ledger,
            "MSG-1",
            vec![deposit(1, JINAN, "500.00"), pending(settlement(2, 4, ZIBO, JINAN, 700, 0), 600), settled.clone(), deposit(4, ZIBO, "9.00")],
        )
        .await;
        assert!(results.iter().all(|result| *result == CreateTransferResult::Ok), "{results:?}");
        assert_eq!(void(&mut ledger, "MSG-2", &[transfer_id(2)]).await, [(PendingTransferResult::Ok, 5)]);
        assert_eq!(create(&mut ledger, "MSG-3", vec![cancellation(6, &settled)]).await, [CreateTransferResult::Ok]);
        assert_eq!(digest(&mut ledger).await.entry_count, 6);
        assert!(verify(&mut ledger).await.intact);
        let head = digest(&mut ledger).await;

        let store = net.ledger_store().await;
        let disarmed = crate::support::disarm_append_only(&store, "journal").await;
        // Entry 3 is the settlement created posted: every column set but the operator and the
        // reason, and no second entry of its transfer to collide with when its stage changes.
        for (column, text) in JOURNAL_COLUMNS {
            let restore = alter_one_byte(&store, column, text, 3).await;
            let (intact, first, detail) = verify_outcome(&mut ledger).await;
            assert!(!intact, "{column} altered went unnoticed");
            assert_eq!(first, 3, "{column}: {detail}");
            let expected_detail = match column {
                "sequence" => "sequence 3 missing",
                "previous_hash" => "previous hash does not match",
                _ => "content does not match its hash",
            };
            assert_eq!(detail, expected_detail, "{column}");
            sqlx::query(AssertSqlSafe(restore)).execute(store.pool()).await.expect("restore");
            assert!(verify(&mut ledger).await.intact, "{column} restored");
        }
        // Entry 5 is the void, with its reason; entry 6 the cancellation.
        for (column, sequence) in [("reason", 5), ("amount_fen", 6)] {
            let restore = alter_one_byte(&store, column, column == "reason", sequence).await;
            assert_eq!(verify(&mut ledger).await.first_altered_sequence, sequence as u64, "{column}");
            sqlx::query(AssertSqlSafe(restore)).execute(store.pool()).await.expect("restore");
        }
        // Two alterations: the earlier is named.
        let _ = alter_one_byte(&store, "fund_pay_fen", false, 6).await;
        let _ = alter_one_byte(&store, "debit_account_id", true, 2).await;
        assert_eq!(verify(&mut ledger).await.first_altered_sequence, 2);
        // A deleted entry is missing.
        sqlx::query("DELETE FROM journal WHERE sequence = 1").execute(store.pool()).await.expect("delete");
        let verified = verify(&mut ledger).await;
        assert_eq!((verified.first_altered_sequence, verified.detail.as_str()), (1, "sequence 1 missing"));
        assert_eq!(digest(&mut ledger).await, head, "the head row was not touched");
        disarmed.rearm(&store).await;
        store.close().await;
    }
}

network_test! {
    /// Proves the journal is append-only in the database itself, not by its hash chain alone:
    /// once two transfers are booked the normal way, an UPDATE and a DELETE of their entries
    /// are refused (on PostgreSQL a TRUNCATE too), the entries stay as they were and the chain
    /// intact, and the next booking still appends.
    async fn the_journal_refuses_updates_and_deletes(net) {
        let mut ledger = net.ledger();
        let results = create(&mut ledger, "MSG-1", vec![deposit(1, JINAN, "500.00"), deposit(2, ZIBO, "9.00")]).await;
        assert!(results.iter().all(|result| *result == CreateTransferResult::Ok), "{results:?}");
        let store = net.ledger_store().await;
        let read = "SELECT sequence, transfer_id, amount_fen, hash FROM journal ORDER BY sequence";
        let before: Vec<(i64, String, i64, String)> = sqlx::query_as(read).fetch_all(store.pool()).await.expect("journal read");
        assert_eq!(before.len(), 2);
        let mut refused = vec![
            ("UPDATE", "UPDATE journal SET amount_fen = amount_fen + 1 WHERE sequence = 1"),
            ("UPDATE", "UPDATE journal SET reason = 'forged'"),
            ("DELETE", "DELETE FROM journal WHERE sequence = 2"),
            ("DELETE", "DELETE FROM journal"),
        ];
        if store.backend() == yitong_store::Backend::Postgres {
            refused.push(("TRUNCATE", "TRUNCATE journal"));
        }
        for (operation, statement) in refused {
            let error = sqlx::query(statement).execute(store.pool()).await.expect_err(statement);
            let expected = format!("journal is append-only: {operation} refused");
            assert!(error.to_string().contains(&expected), "{statement}: {error}");
        }
        let after: Vec<(i64, String, i64, String)> = sqlx::query_as(read).fetch_all(store.pool()).await.expect("journal read");
        assert_eq!(after, before);
        store.close().await;
        assert!(verify(&mut ledger).await.intact);
        assert_eq!(create(&mut ledger, "MSG-2", vec![deposit(3, JINAN, "1.00")]).await, [CreateTransferResult::Ok]);
        assert_eq!(digest(&mut ledger).await.entry_count, 3);
    }
}

network_test! {
    /// Proves that the balances each account row keeps are the sums of the journal's legs:
    /// GetBalances reads them after a deposit, a pending settlement and its post, and changing one
    /// stored sum directly in the database is found by VerifyJournal, which names the account.
    async fn an_altered_stored_balance_is_found(net) {
        let mut ledger = net.ledger();
        let results = create(
            &mut ledger,
            "MSG-1",
            vec![deposit(1, JINAN, "500.00"), pending(settlement(2, 4, ZIBO, JINAN, 700, 0), 600)],
        )
        .await;
        assert!(results.iter().all(|result| *result == CreateTransferResult::Ok), "{results:?}");
        assert!(verify(&mut ledger).await.intact);

        let store = net.ledger_store().await;
        let account = format!("{JINAN}.fund");
        sqlx::query("UPDATE accounts SET credits_posted_fen = credits_posted_fen + 1 WHERE id = $1")
            .bind(&account)
            .execute(store.pool())
            .await
            .expect("alter");
        let verified = verify(&mut ledger).await;
        assert!(!verified.intact, "an altered stored balance went unnoticed");
        assert_eq!(verified.first_altered_sequence, 0, "no entry is altered");
        assert!(verified.detail.contains(&account), "{}", verified.detail);
        sqlx::query("UPDATE accounts SET credits_posted_fen = credits_posted_fen - 1 WHERE id = $1")
            .bind(&account)
            .execute(store.pool())
            .await
            .expect("restore");
        assert!(verify(&mut ledger).await.intact, "restored");
        store.close().await;
    }
}

network_test! {
    /// Proves that bookings arriving together, which the ledger books in groups of one
    /// transaction and one commit, keep what each has alone: 40 settlements created pending
    /// at once are each created once, in one unbroken chain; the same request sent twice at
    /// once is booked once and both senders get its reply; other content under a used message
    /// id is refused ALREADY_EXISTS and books nothing; a post and a void of one pending
    /// transfer racing end with exactly one of them applied.
    async fn bookings_arriving_together_keep_their_own_outcomes(net) {
        let ledger = net.ledger();
        let created: Vec<Transfer> = (1..=40)
            .map(|n| pending(settlement(n, n, JINAN, ZIBO, 1_000 + i64::from(n), 0), 300))
            .collect();
        let mut calls = tokio::task::JoinSet::new();
        for (n, transfer) in created.iter().enumerate() {
            let mut ledger = ledger.clone();
            let transfer = transfer.clone();
            calls.spawn(async move { create(&mut ledger, &format!("MSG-C{n}"), vec![transfer]).await });
        }
        // The first settlement's request once more under its message id, at the same time.
        let mut again = ledger.clone();
        let replay = created[0].clone();
        calls.spawn(async move { create(&mut again, "MSG-C0", vec![replay]).await });
        while let Some(results) = calls.join_next().await {
            assert_eq!(results.expect("a call"), [CreateTransferResult::Ok]);
        }
        let mut ledger = ledger.clone();
        assert_eq!(digest(&mut ledger).await.entry_count, 40, "the replay booked nothing");

        // Other content under a used message id, alongside a fresh request.
        let other = deposit(100, JINAN, "5.00");
        let fresh = deposit(101, ZIBO, "6.00");
        let (mut a, mut b) = (ledger.clone(), ledger.clone());
        let (refused, booked) = tokio::join!(
            a.create_transfers(CreateTransfersRequest {
                message_id: "MSG-C1".to_owned(),
                transfers: vec![other],
            }),
            b.create_transfers(CreateTransfersRequest {
                message_id: "MSG-D1".to_owned(),
                transfers: vec![fresh],
            }),
        );
        assert_eq!(refused.expect_err("a reused message id").code(), Code::AlreadyExists);
        assert_eq!(booked.expect("a fresh deposit").into_inner().results[0].result(), CreateTransferResult::Ok);
        assert!(lookup(&mut ledger, &transfer_id(100)).await.is_none(), "the refused deposit booked nothing");

        // A post and a void of each of ten pending transfers, at once.
        let mut races = tokio::task::JoinSet::new();
        for n in 1..=10u32 {
            let (mut a, mut b) = (ledger.clone(), ledger.clone());
            races.spawn(async move {
                let id = [transfer_id(n)];
                let (post_id, void_id) = (format!("MSG-P{n}"), format!("MSG-V{n}"));
                let (posted, voided) = tokio::join!(
                    post(&mut a, &post_id, &id),
                    void(&mut b, &void_id, &id),
                );
                (n, posted[0].0, voided[0].0)
            });
        }
        while let Some(race) = races.join_next().await {
            let (n, posted, voided) = race.expect("a race");
            let applied = [posted, voided].iter().filter(|result| **result == PendingTransferResult::Ok).count();
            assert_eq!(applied, 1, "transfer {n}: posted {posted:?}, voided {voided:?}");
            let expected = match posted {
                PendingTransferResult::Ok => TransferStatus::Posted,
                _ => TransferStatus::Voided,
            };
            assert_eq!(status(&mut ledger, &transfer_id(n)).await, expected);
        }
        assert_eq!(digest(&mut ledger).await.entry_count, 40 + 1 + 10);
        assert!(verify(&mut ledger).await.intact);
        let pending_left: i64 = created[10..].iter().map(|transfer| fen(&transfer.amount)).sum();
        let posted: Vec<i64> = {
            let mut sums = Vec::new();
            for n in 1..=10u32 {
                if status(&mut ledger, &transfer_id(n)).await == TransferStatus::Posted {
                    sums.push(fen(&created[n as usize - 1].amount));
                }
            }
            sums
        };
        let advances = account(&mut ledger, "370300.advances").await;
        assert_eq!(fen(&advances.debits_pending), pending_left);
        assert_eq!(fen(&advances.debits_posted), posted.iter().sum::<i64>());
    }
}

/// The statuses `sql` reads, in its order.
async fn words(store: &yitong_store::Store, sql: &'static str) -> Vec<String> {
    sqlx::query_scalar(sql)
        .fetch_all(store.pool())
        .await
        .expect("statuses read")
}

/// VerifyJournal of a ledger node a test runs itself.
async fn verify_node(node: &yitong_ledger::LedgerNode) -> VerifyJournalResponse {
    use yitong_proto::ledger::v1::ledger_service_server::LedgerService;
    LedgerService::verify_journal(
        node,
        tonic::Request::new(VerifyJournalRequest { up_to_sequence: 0 }),
    )
    .await
    .expect("VerifyJournal answers")
    .into_inner()
}

network_test! {
    /// Proves a journal the ledger wrote while events were stored as numbers (the fixture,
    /// written at commit 0f6019d) verifies after migration 0009 stores them as words, that the
    /// ledger goes on chaining entries of the new form after them (the transfer left pending
    /// resolved, a deposit booked), and that clearing's states read as words after 0010.
    async fn a_journal_written_before_events_were_words_verifies_after(net) {
        use yitong_proto::ledger::v1::ledger_service_server::LedgerService;

        let store = crate::support::store_no_server_runs(net, yitong_core::Service::Ledger).await;
        crate::support::migrate_through(&store, 8).await;
        crate::support::execute_script(&store, include_str!("fixtures/ledger_before_words.sql")).await;
        store.migrate().await.expect("the later migrations run");

        let events: Vec<String> = sqlx::query_scalar("SELECT event FROM journal ORDER BY sequence")
            .fetch_all(store.pool()).await.expect("events read");
        let expected = ["created", "created", "expired", "created", "posted", "created", "voided", "created", "created"];
        assert_eq!(events, expected);
        assert_eq!(words(&store, "SELECT status FROM clearing_confirmations ORDER BY transfer_id").await, ["included", "excluded"]);
        assert_eq!(words(&store, "SELECT status FROM clearing_applications ORDER BY application_id").await, ["cleared", "cancelled", "applied"]);
        assert_eq!(words(&store, "SELECT status FROM clearing_statements ORDER BY city").await, ["confirmed", "issued"]);

        let node = yitong_ledger::LedgerNode::start(store.clone(), std::sync::Arc::new(net.network().clone()))
            .await
            .expect("the ledger starts on the migrated store");
        // Nine entries of the old form, and perhaps already a tenth: the fixture's last transfer
        // was left pending, for an hour from 0f6019d's run, so the ledger's sweeper may have
        // expired it by now.
        let verified = verify_node(&node).await;
        assert!(verified.intact, "{verified:?}");
        // Voiding it books its void (or, once its hour has passed, its expiry, if the sweeper has
        // not yet), an entry of the new form chained to the old ones; one more transfer follows.
        LedgerService::void_pending_transfers(&node, tonic::Request::new(VoidPendingTransfersRequest {
            message_id: "MIGRATED-1".into(),
            pending_transfer_ids: vec![transfer_id(8)],
            reason: "after the migration".into(),
        }))
        .await
        .expect("the void is answered");
        let created = LedgerService::create_transfers(&node, tonic::Request::new(CreateTransfersRequest {
            message_id: "MIGRATED-2".into(),
            transfers: vec![deposit(10, JINAN, "1.00")],
        }))
        .await
        .expect("the deposit is answered")
        .into_inner();
        assert_eq!(created.results[0].result(), CreateTransferResult::Ok);
        let verified = verify_node(&node).await;
        assert!(verified.intact, "{verified:?}");
        assert_eq!(verified.entries_checked, 11);
        let events: Vec<String> = sqlx::query_scalar("SELECT event FROM journal WHERE sequence > 9 ORDER BY sequence")
            .fetch_all(store.pool()).await.expect("the new events read");
        assert!(matches!(events[0].as_str(), "voided" | "expired"), "{events:?}");
        assert_eq!(events[1], "created");
        store.close().await;
    }
}
