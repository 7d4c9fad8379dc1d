//! Booking: creating transfers (linked chains all or none, the transfer id as idempotency key,
//! one live booking per settlement) and posting or voiding pending ones, inside an open
//! [`Appender`]; and how a transfer the journal knows looks on the wire.

use std::collections::{HashMap, HashSet};

use yitong_core::Amount;
use yitong_proto::ledger::v1 as pb;
use yitong_proto::ledger::v1::CreateTransferResult as Created;
use yitong_proto::ledger::v1::PendingTransferResult as Resolved;

use crate::LedgerError;
use crate::append::Appender;
use crate::journal::{Entry, Event, TransferColumns};
use crate::period::{Period, china_date};
use crate::repo;
use crate::transfer::{FLAG_LINKED, FLAG_PENDING, Transfer, TransferCode, TransferId};

/// A transfer as the journal knows it: its creation and its one resolution, if any.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    pub creation: TransferColumns,
    /// Sequence number of the creation's entry.
    pub created_sequence: i64,
    /// How and when a pending transfer was resolved.
    pub resolution: Option<(Event, i64)>,
}

/// Gathers the entries of some transfers into what is known of each, by transfer id.
pub(crate) fn known_transfers(entries: Vec<Entry>) -> Result<HashMap<String, Known>, LedgerError> {
    let mut known: HashMap<String, Known> = HashMap::new();
    let mut resolutions = Vec::new();
    for entry in entries {
        match Event::parse(&entry.event) {
            Some(Event::Created) => {
                known.insert(
                    entry.transfer.transfer_id.clone(),
                    Known {
                        creation: entry.transfer,
                        created_sequence: entry.sequence,
                        resolution: None,
                    },
                );
            }
            Some(event) => {
                resolutions.push((entry.transfer.transfer_id, event, entry.recorded_at_ms))
            }
            None => {
                return Err(LedgerError::Corrupt(format!(
                    "journal entry {} has an unknown event",
                    entry.sequence
                )));
            }
        }
    }
    for (id, event, at_ms) in resolutions {
        let transfer = known.get_mut(&id).ok_or_else(|| {
            LedgerError::Corrupt(format!("transfer {id} is resolved but was never created"))
        })?;
        transfer.resolution = Some((event, at_ms));
    }
    Ok(known)
}

/// The stored columns of a transfer created at `created_at_ms`, when every clearing period up to
/// `closed_through` (if any) is closed. Public for bulk loaders (the
/// bureau benchmark), so that what they load is what CreateTransfers stores.
pub fn columns(
    transfer: &Transfer,
    created_at_ms: i64,
    closed_through: Option<Period>,
) -> TransferColumns {
    let mut columns = TransferColumns {
        transfer_id: transfer.id.to_string(),
        debit_account_id: transfer.debit.to_string(),
        credit_account_id: transfer.credit.to_string(),
        amount_fen: transfer.amount.fen(),
        code: transfer.code as i64,
        flags: transfer.flags(),
        pending_timeout_seconds: i64::from(transfer.pending_timeout_seconds),
        operator_id: transfer.operator_id.clone(),
        business_date: china_date(created_at_ms).to_string(),
        created_at_ms,
        expires_at_ms: if transfer.pending {
            created_at_ms + i64::from(transfer.pending_timeout_seconds) * 1_000
        } else {
            0
        },
        ..TransferColumns::default()
    };
    if let Some(record) = &transfer.settlement {
        columns.settlement_id = record.settlement_id.clone();
        columns.settlement_message_id = record.message_id.to_string();
        columns.treatment_city = record.treatment_city.to_string();
        columns.insured_city = record.insured_city.to_string();
        columns.institution_code = record.institution_code.to_string();
        columns.visit_id = record.visit_id.clone();
        columns.person_no = record.person_no.to_string();
        columns.insurance_type = record.insurance_type;
        columns.clearing_type = record.clearing_type;
        columns.settlement_date = record.settlement_date.to_string();
        columns.total_amount_fen = record.total_amount.fen();
        columns.fund_pay_fen = record.fund_pay.fen();
        columns.account_pay_fen = record.account_pay.fen();
        columns.cash_pay_fen = record.cash_pay.fen();
        columns.cancellation = i64::from(record.cancellation);
        columns.original_settlement_id = record.original_settlement_id.clone();
        columns.fund_payments = crate::transfer::fund_payments_text(&record.fund_payments);
        columns.business_date = record.settlement_date.to_string();
        // The period is the settlement's month, unless that month is closed: a closed period
        // is frozen, so a late row (a cancellation, most often) counts in the first open month
        // as an adjustment. Periods close in order, so that is the month after the last closed.
        let month = Period::of_date(record.settlement_date);
        columns.clearing_period = match closed_through {
            Some(closed) if month <= closed => closed.next(),
            _ => month,
        }
        .to_string();
    }
    columns
}

/// Compares a transfer created again with the one its id names, field by field in a fixed
/// order, after TigerBeetle's exists / exists_with_different_* results. The code comes right
/// after the flags because it decides which accounts are allowed: a transfer with another code
/// necessarily has other accounts, and the code is the difference worth naming. Who acted
/// (`operator_id`) is audit, not content, and is not compared: the first operator is kept.
fn compare(new: &TransferColumns, old: &TransferColumns) -> Created {
    if new.flags != old.flags {
        Created::ExistsWithDifferentFlags
    } else if new.code != old.code {
        Created::ExistsWithDifferentCode
    } else if new.debit_account_id != old.debit_account_id {
        Created::ExistsWithDifferentDebitAccount
    } else if new.credit_account_id != old.credit_account_id {
        Created::ExistsWithDifferentCreditAccount
    } else if new.amount_fen != old.amount_fen {
        Created::ExistsWithDifferentAmount
    } else if new.pending_timeout_seconds != old.pending_timeout_seconds {
        Created::ExistsWithDifferentPendingTimeout
    } else if new.settlement_key() != old.settlement_key() {
        Created::ExistsWithDifferentSettlement
    } else {
        Created::Exists
    }
}

/// What makes a SETTLEMENT or CANCELLATION count once: the settlement it books, or the
/// settlement it cancels.
type BookingKey = (TransferCode, String);

fn booking_key(transfer: &Transfer) -> Option<BookingKey> {
    let record = transfer.settlement.as_ref()?;
    Some(match transfer.code {
        TransferCode::Cancellation => (
            TransferCode::Cancellation,
            record.original_settlement_id.clone(),
        ),
        code => (code, record.settlement_id.clone()),
    })
}

/// What became of one transfer of a chain, before the chain is known to hold.
enum Decision {
    New,
    /// It exists identically: its creation's instant and sequence number.
    Exists(i64, i64),
    Refused(Created),
}

/// Everything a batch is decided against: the transfers its ids name, the accounts it names,
/// and the live bookings of its settlements, as the journal holds them plus what the batch has
/// booked so far.
struct State {
    known: HashMap<String, Known>,
    /// Ids voided before they were booked: never booked now.
    voided_before_booked: HashSet<String>,
    accounts: HashSet<String>,
    bookings: HashMap<BookingKey, String>,
}

impl State {
    fn decide(&self, transfer: &Transfer, columns: &TransferColumns) -> Decision {
        if let Some(existing) = self.known.get(transfer.id.as_str()) {
            return match compare(columns, &existing.creation) {
                Created::Exists => {
                    Decision::Exists(existing.creation.created_at_ms, existing.created_sequence)
                }
                different => Decision::Refused(different),
            };
        }
        if self.voided_before_booked.contains(transfer.id.as_str()) {
            return Decision::Refused(Created::VoidedBeforeBooked);
        }
        if !self.accounts.contains(&columns.debit_account_id) {
            return Decision::Refused(Created::DebitAccountNotFound);
        }
        if !self.accounts.contains(&columns.credit_account_id) {
            return Decision::Refused(Created::CreditAccountNotFound);
        }
        if booking_key(transfer).is_some_and(|key| self.bookings.contains_key(&key)) {
            return Decision::Refused(Created::SettlementAlreadyBooked);
        }
        Decision::New
    }
}

use yitong_rpc::timestamp_of_ms as timestamp;

fn sequence(value: i64) -> u64 {
    u64::try_from(value).expect("journal sequence numbers are positive")
}

fn index(value: usize) -> u32 {
    u32::try_from(value).expect("batches hold at most a thousand items")
}

/// Creates a batch of transfers, chain by chain, and returns one outcome per transfer.
pub(crate) async fn create_transfers(
    appender: &mut Appender<'_>,
    transfers: &[Transfer],
    message_id: &str,
) -> Result<Vec<pb::CreateTransferOutcome>, LedgerError> {
    let ids: Vec<&str> = transfers.iter().map(|t| t.id.as_str()).collect();
    let known = known_transfers(repo::entries_of_transfers(appender.conn(), &ids).await?)?;
    let voided_before_booked = repo::voided_before_booked(appender.conn(), &ids).await?;
    let mut account_ids: Vec<String> = transfers
        .iter()
        .flat_map(|t| [t.debit.to_string(), t.credit.to_string()])
        .collect();
    account_ids.sort();
    account_ids.dedup();
    let accounts = repo::open_account_ids(appender.conn(), &account_ids)
        .await?
        .into_iter()
        .collect();
    let keys: Vec<BookingKey> = transfers.iter().filter_map(booking_key).collect();
    let settlement_ids: Vec<&str> = keys
        .iter()
        .filter(|(code, _)| *code == TransferCode::Settlement)
        .map(|(_, id)| id.as_str())
        .collect();
    let original_ids: Vec<&str> = keys
        .iter()
        .filter(|(code, _)| *code == TransferCode::Cancellation)
        .map(|(_, id)| id.as_str())
        .collect();
    let mut bookings = HashMap::new();
    for (code, settlement_id, original_id, transfer_id) in
        repo::live_bookings(appender.conn(), &settlement_ids, &original_ids).await?
    {
        let key = match TransferCode::from_number(code) {
            Some(TransferCode::Cancellation) => (TransferCode::Cancellation, original_id),
            _ => (TransferCode::Settlement, settlement_id),
        };
        bookings.insert(key, transfer_id);
    }
    let mut state = State {
        known,
        voided_before_booked,
        accounts,
        bookings,
    };
    // Read under the head lock, which CloseClearingPeriod holds too: no period closes between
    // this read and the entries this batch appends.
    let closed_through = crate::period::closed_through(appender.conn()).await?;

    let now_ms = appender.now_ms();
    let mut outcomes = Vec::with_capacity(transfers.len());
    let mut next_sequence = appender.next_sequence();
    let mut start = 0;
    while start < transfers.len() {
        // A chain runs to the first transfer that is not linked; the parser refused an open one.
        let end = (start..transfers.len())
            .find(|&i| !transfers[i].linked)
            .expect("the last transfer of a batch is not linked");
        let chain = &transfers[start..=end];
        // Decide the chain in order, booking tentatively so that a later transfer of the chain
        // sees an earlier one; undo it all if one fails.
        let mut decided: Vec<(Decision, TransferColumns)> = Vec::with_capacity(chain.len());
        let mut tentative = next_sequence;
        let mut failed = false;
        for transfer in chain {
            let columns = columns(transfer, now_ms, closed_through);
            let decision = state.decide(transfer, &columns);
            match decision {
                Decision::New => {
                    state.known.insert(
                        transfer.id.to_string(),
                        Known {
                            creation: columns.clone(),
                            created_sequence: tentative,
                            resolution: None,
                        },
                    );
                    if let Some(key) = booking_key(transfer) {
                        state.bookings.insert(key, transfer.id.to_string());
                    }
                    tentative += 1;
                }
                Decision::Refused(_) => failed = true,
                Decision::Exists(..) => {}
            }
            decided.push((decision, columns));
            if failed {
                break;
            }
        }
        if failed {
            for ((decision, _), transfer) in decided.iter().zip(chain) {
                if matches!(decision, Decision::New) {
                    state.known.remove(transfer.id.as_str());
                    if let Some(key) = booking_key(transfer) {
                        state.bookings.remove(&key);
                    }
                }
            }
            for (offset, transfer) in chain.iter().enumerate() {
                let result = match decided.get(offset) {
                    Some((Decision::Refused(result), _)) => *result,
                    _ => Created::LinkedEventFailed,
                };
                outcomes.push(pb::CreateTransferOutcome {
                    index: index(start + offset),
                    id: transfer.id.to_string(),
                    result: result as i32,
                    created_at: None,
                    journal_sequence: 0,
                });
            }
        } else {
            for (offset, (decision, columns)) in decided.into_iter().enumerate() {
                let (result, created_at_ms, created_sequence) = match decision {
                    Decision::New => {
                        let appended = appender.append(Event::Created, columns, message_id, "");
                        assert_eq!(appended, next_sequence, "tentative sequence numbers hold");
                        next_sequence += 1;
                        (Created::Ok, now_ms, appended)
                    }
                    Decision::Exists(created_at_ms, created_sequence) => {
                        (Created::Exists, created_at_ms, created_sequence)
                    }
                    Decision::Refused(_) => unreachable!("the chain held"),
                };
                outcomes.push(pb::CreateTransferOutcome {
                    index: index(start + offset),
                    id: chain[offset].id.to_string(),
                    result: result as i32,
                    created_at: Some(timestamp(created_at_ms)),
                    journal_sequence: sequence(created_sequence),
                });
            }
        }
        start = end + 1;
    }
    Ok(outcomes)
}

/// Posts or voids pending transfers, one outcome per id.
pub(crate) async fn resolve_pending(
    appender: &mut Appender<'_>,
    ids: &[TransferId],
    resolution: Event,
    message_id: &str,
    reason: &str,
) -> Result<Vec<pb::PendingTransferOutcome>, LedgerError> {
    assert!(matches!(resolution, Event::Posted | Event::Voided));
    let id_texts: Vec<&str> = ids.iter().map(TransferId::as_str).collect();
    let mut known = known_transfers(repo::entries_of_transfers(appender.conn(), &id_texts).await?)?;
    let now_ms = appender.now_ms();
    let mut outcomes = Vec::with_capacity(ids.len());
    for (position, id) in ids.iter().enumerate() {
        let (result, journal_sequence) = match known.get_mut(id.as_str()) {
            None => {
                // A void may overtake its booking in the network: remember it, so the booking
                // is refused when it arrives instead of leaving a pending transfer behind.
                if resolution == Event::Voided {
                    repo::remember_void_before_booked(
                        appender.conn(),
                        id.as_str(),
                        message_id,
                        reason,
                        now_ms,
                    )
                    .await?;
                }
                (Resolved::PendingTransferNotFound, 0)
            }
            Some(transfer) if !transfer.creation.created_pending() => {
                (Resolved::PendingTransferNotPending, 0)
            }
            Some(transfer) => match transfer.resolution {
                Some((Event::Posted, _)) => (Resolved::PendingTransferAlreadyPosted, 0),
                Some((Event::Voided, _)) => (Resolved::PendingTransferAlreadyVoided, 0),
                Some((_, _)) => (Resolved::PendingTransferExpired, 0),
                // Its timeout passed and the sweep of this transaction stopped at its limit
                // before reaching it: it expires now, and neither a post nor a void revives it.
                None if transfer.creation.expires_at_ms <= now_ms => {
                    appender.expire(transfer.creation.clone());
                    transfer.resolution = Some((Event::Expired, now_ms));
                    (Resolved::PendingTransferExpired, 0)
                }
                None => {
                    let appended =
                        appender.append(resolution, transfer.creation.clone(), message_id, reason);
                    transfer.resolution = Some((resolution, now_ms));
                    (Resolved::Ok, sequence(appended))
                }
            },
        };
        outcomes.push(pb::PendingTransferOutcome {
            index: index(position),
            pending_transfer_id: id.to_string(),
            result: result as i32,
            journal_sequence,
        });
    }
    Ok(outcomes)
}

impl Known {
    /// The state now: the resolution if any, else pending or (created) posted.
    fn status(&self) -> pb::TransferStatus {
        match self.resolution {
            Some((Event::Posted, _)) => pb::TransferStatus::Posted,
            Some((Event::Voided, _)) => pb::TransferStatus::Voided,
            Some((_, _)) => pb::TransferStatus::Expired,
            None if self.creation.created_pending() => pb::TransferStatus::Pending,
            None => pb::TransferStatus::Posted,
        }
    }

    /// The transfer as the wire shows it.
    pub(crate) fn to_wire(&self) -> Result<pb::TransferRecord, LedgerError> {
        let c = &self.creation;
        let corrupt = |what: &str| {
            LedgerError::Corrupt(format!("transfer {} has a malformed {what}", c.transfer_id))
        };
        let int = |value: i64, what: &str| i32::try_from(value).map_err(|_| corrupt(what));
        let code = TransferCode::from_number(c.code).ok_or_else(|| corrupt("code"))?;
        let fund_payments = crate::transfer::parse_fund_payments_text(&c.fund_payments)
            .ok_or_else(|| corrupt("fund breakdown"))?;
        let settlement = code.is_settlement().then(|| pb::SettlementRecord {
            settlement_id: c.settlement_id.clone(),
            message_id: c.settlement_message_id.clone(),
            treatment_city: c.treatment_city.clone(),
            insured_city: c.insured_city.clone(),
            institution_code: c.institution_code.clone(),
            visit_id: c.visit_id.clone(),
            person_no: c.person_no.clone(),
            insurance_type: i32::try_from(c.insurance_type).unwrap_or_default(),
            clearing_type: i32::try_from(c.clearing_type).unwrap_or_default(),
            settlement_date: c.settlement_date.clone(),
            total_amount: Amount::from_fen(c.total_amount_fen).to_string(),
            fund_pay: Amount::from_fen(c.fund_pay_fen).to_string(),
            account_pay: Amount::from_fen(c.account_pay_fen).to_string(),
            cash_pay: Amount::from_fen(c.cash_pay_fen).to_string(),
            cancellation: c.cancellation != 0,
            original_settlement_id: c.original_settlement_id.clone(),
            fund_payments: fund_payments
                .iter()
                .map(|line| pb::SettlementFundPayment {
                    fund_pay_type: line.fund_pay_type.clone(),
                    disease_code: line.disease_code.clone(),
                    amount: line.amount.to_string(),
                })
                .collect(),
        });
        let clearing_period = match c.clearing_period.as_str() {
            "" => None,
            text => Some(
                Period::parse(text)
                    .ok_or_else(|| corrupt("clearing period"))?
                    .to_wire(),
            ),
        };
        Ok(pb::TransferRecord {
            transfer: Some(pb::Transfer {
                id: c.transfer_id.clone(),
                debit_account_id: c.debit_account_id.clone(),
                credit_account_id: c.credit_account_id.clone(),
                amount: Amount::from_fen(c.amount_fen).to_string(),
                code: int(c.code, "code")?,
                // Absent when none is set, as a caller that sets none sends them.
                flags: (c.flags != 0).then_some(pb::TransferFlags {
                    linked: c.flags & FLAG_LINKED != 0,
                    pending: c.flags & FLAG_PENDING != 0,
                }),
                pending_timeout_seconds: u32::try_from(c.pending_timeout_seconds)
                    .map_err(|_| corrupt("pending timeout"))?,
                settlement,
                operator_id: c.operator_id.clone(),
            }),
            status: self.status() as i32,
            created_at: Some(timestamp(c.created_at_ms)),
            expires_at: c.created_pending().then(|| timestamp(c.expires_at_ms)),
            resolved_at: self.resolution.map(|(_, at_ms)| timestamp(at_ms)),
            clearing_period,
            journal_sequence: sequence(self.created_sequence),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(edit: impl FnOnce(&mut pb::Transfer)) -> TransferColumns {
        let mut wire = crate::transfer::tests::settlement();
        edit(&mut wire);
        columns(
            &Transfer::try_from(wire).expect("valid"),
            1_772_000_000_000,
            None,
        )
    }

    // Proves the stored columns of a settlement: its record, its business date and its period.
    #[test]
    fn settlement_columns() {
        let columns = transfer(|_| {});
        assert_eq!(columns.business_date, "2026-03-01");
        assert_eq!(columns.clearing_period, "2026-03");
        assert_eq!(columns.fund_pay_fen, 7_000);
        assert_eq!(columns.expires_at_ms, 0);
    }

    // Proves a deposit counts on the China date of its creation: 16:30 UTC is the next day.
    #[test]
    fn deposits_count_on_the_china_date() {
        let deposit = Transfer::try_from(pb::Transfer {
            id: "0195f0a4-0000-7000-8000-000000000009".into(),
            debit_account_id: "370100.bank".into(),
            credit_account_id: "370100.fund".into(),
            amount: "5.00".into(),
            code: pb::TransferCode::Deposit as i32,
            ..Default::default()
        })
        .unwrap();
        // 2026-03-01T16:30:00Z
        let columns = columns(&deposit, 1_772_382_600_000, None);
        assert_eq!(columns.business_date, "2026-03-02");
        assert_eq!(columns.clearing_period, "");
    }

    // Proves each differing field is named, in the documented order, and an identical
    // transfer is EXISTS whoever acted.
    #[test]
    fn exists_names_the_first_different_field() {
        let base = transfer(|_| {});
        let cases: [(TransferColumns, Created); 7] = [
            (
                transfer(|t| t.operator_id = "someone else".into()),
                Created::Exists,
            ),
            (
                transfer(|t| {
                    t.flags = Some(pb::TransferFlags {
                        linked: false,
                        pending: true,
                    });
                    t.pending_timeout_seconds = 60;
                }),
                Created::ExistsWithDifferentFlags,
            ),
            (
                transfer(|t| {
                    t.code = pb::TransferCode::Cancellation as i32;
                    std::mem::swap(&mut t.debit_account_id, &mut t.credit_account_id);
                    let record = t.settlement.as_mut().unwrap();
                    record.cancellation = true;
                    record.original_settlement_id = "T1".into();
                    for amount in [
                        &mut record.total_amount,
                        &mut record.fund_pay,
                        &mut record.account_pay,
                        &mut record.cash_pay,
                    ] {
                        amount.insert(0, '-');
                    }
                }),
                Created::ExistsWithDifferentCode,
            ),
            (
                transfer(|t| {
                    t.debit_account_id = "370500.advances".into();
                    t.credit_account_id = "370100->370500.obligation".into();
                    let record = t.settlement.as_mut().unwrap();
                    record.treatment_city = "370500".into();
                    record.institution_code = "H37050000001".into();
                }),
                Created::ExistsWithDifferentDebitAccount,
            ),
            (
                transfer(|t| {
                    t.credit_account_id = "371600->370300.obligation".into();
                    let record = t.settlement.as_mut().unwrap();
                    record.insured_city = "371600".into();
                    record.person_no = "3716000000000001".into();
                }),
                Created::ExistsWithDifferentCreditAccount,
            ),
            (
                transfer(|t| {
                    t.amount = "90.00".into();
                    let record = t.settlement.as_mut().unwrap();
                    record.fund_pay = "80.00".into();
                    record.total_amount = "110.00".into();
                }),
                Created::ExistsWithDifferentAmount,
            ),
            (
                transfer(|t| t.settlement.as_mut().unwrap().visit_id = "S2".into()),
                Created::ExistsWithDifferentSettlement,
            ),
        ];
        for (new, expected) in cases {
            assert_eq!(compare(&new, &base), expected);
        }
    }
}
