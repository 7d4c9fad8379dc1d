//! The end-of-run invariant check: the settlements this run made, as their treatment cities list
//! them, agree with the clearing house's ledger to the fen (design.md invariant 2), every split
//! adds up, nothing is left pending, and the journal's hash chain is intact (invariant 5).
//!
//! The ledger's balances are read before and after the run, and the difference is compared with
//! the run's own settlements (their message ids carry the run's tag), so the check holds on a
//! network that already had traffic, as long as nothing else settles while the bench runs.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::client::Channel;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use yitong_core::{Amount, PoolCode};
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::ledger::v1::{GetBalancesRequest, VerifyJournalRequest};
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_proto::settlement::v1::{
    ListSettlementsRequest, Settlement, SettlementSplit, SettlementStatus,
};

/// Settlements per ListSettlements page (the service's maximum).
const PAGE_SIZE: u32 = 200;
/// How long the check waits for completions still being retried to post.
const PENDING_WAIT_MAX: Duration = Duration::from_secs(30);

/// Posted balance and pending sums of one account, in fen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sums {
    balance: i64,
    debits_pending: i64,
    credits_pending: i64,
}

/// The ledger's settlement accounts at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    accounts: BTreeMap<String, Sums>,
}

/// The advances and pool of every city, and the obligation of every ordered pair.
fn settlement_accounts(cities: &[PoolCode]) -> Vec<String> {
    let mut ids = Vec::new();
    for treatment in cities {
        ids.push(format!("{treatment}.advances"));
        ids.push(format!("{treatment}.pool"));
        for insured in cities.iter().filter(|insured| *insured != treatment) {
            ids.push(format!("{insured}->{treatment}.obligation"));
        }
    }
    ids
}

/// Deadline of each call of the check. VerifyJournal reads the whole journal, which takes
/// minutes at millions of entries: generous, but never unbounded.
const CHECK_CALL_TIMEOUT: Duration = Duration::from_secs(600);

fn fen(text: &str) -> anyhow::Result<i64> {
    Ok(Amount::parse_signed(text)
        .map_err(|_| anyhow::anyhow!("not an amount: {text:?}"))?
        .fen())
}

pub async fn snapshot(
    ledger: &mut LedgerServiceClient<Channel>,
    cities: &[PoolCode],
) -> anyhow::Result<Snapshot> {
    let reply = ledger
        .get_balances(crate::output::request(
            GetBalancesRequest {
                account_ids: settlement_accounts(cities),
                cities: vec![],
            },
            CHECK_CALL_TIMEOUT,
        ))
        .await
        .context("the ledger refused GetBalances")?
        .into_inner();
    let mut accounts = BTreeMap::new();
    for account in reply.accounts {
        let sums = Sums {
            balance: fen(&account.balance)?,
            debits_pending: fen(&account.debits_pending)?,
            credits_pending: fen(&account.credits_pending)?,
        };
        accounts.insert(account.id, sums);
    }
    Ok(Snapshot { accounts })
}

/// What the check found.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub passed: bool,
    /// Settlements of this run found at the treatment cities.
    pub settlements_listed: u64,
    /// Of those, still in force.
    pub settled: u64,
    /// Of those, cancelled.
    pub cancelled: u64,
    /// Ledger accounts compared.
    pub accounts_checked: usize,
    /// Journal entries whose hash chain was verified.
    pub journal_entries_verified: u64,
    /// Every disagreement, in words; empty when the check passed.
    pub problems: Vec<String>,
}

/// What the bench itself saw become of a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    Settled,
    Cancelled,
    /// A CancelSettlement failed: the settlement may be in either state.
    Either,
}

/// Everything the check needs.
pub struct CheckInput<'a> {
    pub ledger: LedgerServiceClient<Channel>,
    pub settlement: HashMap<PoolCode, SettlementServiceClient<Channel>>,
    pub cities: &'a [PoolCode],
    /// Every institution the run may have settled at, by city.
    pub institutions: Vec<(PoolCode, String)>,
    pub run_tag: &'a str,
    /// First and last settlement dates of the run ("YYYY-MM-DD", UTC+8).
    pub from_date: String,
    pub to_date: String,
    pub before: Snapshot,
    /// Settlement ids the bench got back, with what it knows of them.
    pub known: HashMap<String, Known>,
}

pub async fn check(mut input: CheckInput<'_>) -> anyhow::Result<CheckReport> {
    let mut problems = Vec::new();
    let prefix = format!("{}-", input.run_tag);
    let mut listed: Vec<Settlement> = Vec::new();
    for (city, institution) in &input.institutions {
        let client = input
            .settlement
            .get_mut(city)
            .context("no client for a city")?;
        let mut page_token = String::new();
        loop {
            let reply = client
                .list_settlements(crate::output::request(
                    ListSettlementsRequest {
                        institution_code: institution.clone(),
                        from_date: input.from_date.clone(),
                        to_date: input.to_date.clone(),
                        status: SettlementStatus::Unspecified as i32,
                        page_size: PAGE_SIZE,
                        page_token: page_token.clone(),
                    },
                    CHECK_CALL_TIMEOUT,
                ))
                .await
                .with_context(|| format!("ListSettlements refused for {institution}"))?
                .into_inner();
            listed.extend(
                reply
                    .settlements
                    .into_iter()
                    .filter(|settlement| settlement.message_id.starts_with(&prefix)),
            );
            if reply.next_page_token.is_empty() {
                break;
            }
            page_token = reply.next_page_token;
        }
    }

    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    let (mut settled, mut cancelled) = (0, 0);
    let mut seen: HashMap<&str, SettlementStatus> = HashMap::new();
    for settlement in &listed {
        let Some(split) = &settlement.split else {
            problems.push(format!("{} has no split", settlement.settlement_id));
            continue;
        };
        split_adds_up(&settlement.settlement_id, split, &mut problems)?;
        let status =
            SettlementStatus::try_from(settlement.status).unwrap_or(SettlementStatus::Unspecified);
        seen.insert(&settlement.settlement_id, status);
        match status {
            SettlementStatus::Settled => {
                settled += 1;
                let pay = fen(&split.fund_pay)? + fen(&split.account_pay)?;
                let (treatment, insured) = (&settlement.treatment_city, &settlement.insured_city);
                *expected.entry(format!("{treatment}.advances")).or_default() += pay;
                let payer = if treatment == insured {
                    format!("{treatment}.pool")
                } else {
                    format!("{insured}->{treatment}.obligation")
                };
                *expected.entry(payer).or_default() += pay;
            }
            SettlementStatus::Cancelled => {
                cancelled += 1;
                let Some(reversal) = settlement
                    .cancellation
                    .as_ref()
                    .and_then(|cancellation| cancellation.split.as_ref())
                else {
                    problems.push(format!(
                        "{} is cancelled without a reversing split",
                        settlement.settlement_id
                    ));
                    continue;
                };
                for (field, original, reversed) in [
                    ("fund_pay", &split.fund_pay, &reversal.fund_pay),
                    ("account_pay", &split.account_pay, &reversal.account_pay),
                    ("total_amount", &split.total_amount, &reversal.total_amount),
                ] {
                    if fen(original)? != -fen(reversed)? {
                        problems.push(format!(
                            "{}: the cancellation's {field} {reversed} does not reverse {original}",
                            settlement.settlement_id
                        ));
                    }
                }
            }
            SettlementStatus::Unspecified => problems.push(format!(
                "{} has an unknown status {}",
                settlement.settlement_id, settlement.status
            )),
        }
    }
    for (settlement_id, known) in &input.known {
        let want = match known {
            Known::Settled => Some(SettlementStatus::Settled),
            Known::Cancelled => Some(SettlementStatus::Cancelled),
            Known::Either => None,
        };
        match (seen.get(settlement_id.as_str()), want) {
            (None, _) => problems.push(format!(
                "{settlement_id} was settled but its treatment city does not list it"
            )),
            (Some(found), Some(want)) if *found != want => problems.push(format!(
                "{settlement_id} should be {want:?} but is listed as {found:?}"
            )),
            _ => {}
        }
    }

    // Completion of a recorded settlement may still be retrying: wait for pending sums to drain.
    let waited_since = std::time::Instant::now();
    let after = loop {
        let after = snapshot(&mut input.ledger, input.cities).await?;
        let drained = after.accounts.iter().all(|(id, sums)| {
            let before = input.before.accounts.get(id).copied().unwrap_or_default();
            sums.debits_pending == before.debits_pending
                && sums.credits_pending == before.credits_pending
        });
        if drained || waited_since.elapsed() > PENDING_WAIT_MAX {
            break after;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (id, sums) in &after.accounts {
        let before = input.before.accounts.get(id).copied().unwrap_or_default();
        let want = expected.get(id).copied().unwrap_or(0);
        let moved = sums.balance - before.balance;
        if moved != want {
            problems.push(format!(
                "{id}: the ledger's posted balance moved {} during the run, the settlements say {}",
                Amount::from_fen(moved),
                Amount::from_fen(want)
            ));
        }
        if sums.debits_pending != before.debits_pending
            || sums.credits_pending != before.credits_pending
        {
            problems.push(format!(
                "{id}: pending sums changed during the run (debits {} -> {}, credits {} -> {})",
                Amount::from_fen(before.debits_pending),
                Amount::from_fen(sums.debits_pending),
                Amount::from_fen(before.credits_pending),
                Amount::from_fen(sums.credits_pending)
            ));
        }
    }
    for id in expected.keys() {
        if !after.accounts.contains_key(id) {
            problems.push(format!("the ledger does not report account {id}"));
        }
    }

    let verified = input
        .ledger
        .verify_journal(crate::output::request(
            VerifyJournalRequest { up_to_sequence: 0 },
            CHECK_CALL_TIMEOUT,
        ))
        .await
        .context("the ledger refused VerifyJournal")?
        .into_inner();
    if !verified.intact {
        problems.push(format!(
            "the journal is altered at entry {}: {}",
            verified.first_altered_sequence, verified.detail
        ));
    }

    Ok(CheckReport {
        passed: problems.is_empty(),
        settlements_listed: u64::try_from(listed.len()).unwrap_or(u64::MAX),
        settled,
        cancelled,
        accounts_checked: after.accounts.len(),
        journal_entries_verified: verified.entries_checked,
        problems,
    })
}

/// total = full self-pay + over-cap self-pay + pre-self-pay + in-scope;
/// person share = total - fund pay = account pay + cash pay.
fn split_adds_up(
    settlement_id: &str,
    split: &SettlementSplit,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let total = fen(&split.total_amount)?;
    let parts = fen(&split.full_self_pay)?
        + fen(&split.over_cap_self_pay)?
        + fen(&split.pre_self_pay)?
        + fen(&split.in_scope_amount)?;
    if parts != total {
        problems.push(format!(
            "{settlement_id}: the split's parts add up to {}, not the total {}",
            Amount::from_fen(parts),
            split.total_amount
        ));
    }
    let share = fen(&split.person_share)?;
    if share != total - fen(&split.fund_pay)? {
        problems.push(format!(
            "{settlement_id}: person share {share} is not total less fund pay"
        ));
    }
    if share != fen(&split.account_pay)? + fen(&split.cash_pay)? {
        problems.push(format!(
            "{settlement_id}: person share is not account pay plus cash pay"
        ));
    }
    Ok(())
}
