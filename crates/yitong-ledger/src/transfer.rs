//! A transfer as a caller creates it, parsed and checked against the chart of accounts before
//! the ledger's state is looked at.
//!
//! Everything here is malformed-whatever-the-ledger-holds input: a bad UUID or amount, equal
//! accounts, accounts that do not fit the code, a settlement record whose cities are not the
//! accounts' cities, an open chain. It refuses the whole batch with INVALID_ARGUMENT naming the
//! field. What depends on the ledger's state (an unknown account, a transfer that exists, a
//! settlement booked twice) is a per-transfer result, decided in the write transaction.

use std::fmt;

use yitong_core::{Amount, Date, InstitutionCode, Invalid, MessageId, PersonNo, PoolCode};
use yitong_proto::ledger::v1 as pb;

use crate::account::AccountId;

/// Most transfers in one CreateTransfers request.
pub const TRANSFERS_PER_BATCH_MAX: usize = 1_000;
/// Most ids in one PostPendingTransfers or VoidPendingTransfers request.
pub const PENDING_IDS_PER_REQUEST_MAX: usize = 1_000;
/// Longest a pending transfer may wait for its post or void, in seconds.
pub const PENDING_TIMEOUT_SECONDS_MAX: u32 = 3_600;
/// Longest operator id, settlement id or visit id, in characters.
pub const IDENTIFIER_CHARS_MAX: usize = 64;

/// Most lines of a settlement record's fund breakdown (national setldetail).
pub const FUND_PAYMENTS_MAX: usize = 16;
/// Longest disease code of a fund line, in characters.
pub const DISEASE_CODE_CHARS_MAX: usize = 20;

/// Bit of the stored `flags` column: the transfer was linked to the next one of its batch.
pub const FLAG_LINKED: i64 = 1;
/// Bit of the stored `flags` column: the transfer was created pending.
pub const FLAG_PENDING: i64 = 2;

/// A transfer id: a UUID in its canonical text form (lowercase, hyphenated).
///
/// Only one spelling is accepted, because the id is the idempotency key: two spellings of one
/// UUID must not be two transfers.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TransferId(String);

impl TransferId {
    pub fn parse(text: &str) -> Result<TransferId, Invalid> {
        let canonical = uuid::Uuid::try_parse(text)
            .map(|uuid| uuid.hyphenated().to_string() == text)
            .unwrap_or(false);
        if !canonical {
            return Err(Invalid::new(
                "",
                "must be a UUID in canonical form: 36 lowercase hex digits and hyphens",
            ));
        }
        Ok(TransferId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why money moves. The numbers are the wire's and the stored `code` column's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TransferCode {
    Deposit = 1,
    Withdrawal = 2,
    Settlement = 3,
    Cancellation = 4,
    ClearingObligation = 5,
    ClearingFunds = 6,
    ClearingPayment = 7,
}

impl TransferCode {
    pub fn from_number(number: i64) -> Option<TransferCode> {
        Some(match number {
            1 => TransferCode::Deposit,
            2 => TransferCode::Withdrawal,
            3 => TransferCode::Settlement,
            4 => TransferCode::Cancellation,
            5 => TransferCode::ClearingObligation,
            6 => TransferCode::ClearingFunds,
            7 => TransferCode::ClearingPayment,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            TransferCode::Deposit => "DEPOSIT",
            TransferCode::Withdrawal => "WITHDRAWAL",
            TransferCode::Settlement => "SETTLEMENT",
            TransferCode::Cancellation => "CANCELLATION",
            TransferCode::ClearingObligation => "CLEARING_OBLIGATION",
            TransferCode::ClearingFunds => "CLEARING_FUNDS",
            TransferCode::ClearingPayment => "CLEARING_PAYMENT",
        }
    }

    /// Whether the transfer carries a settlement record and is cleared between cities.
    pub fn is_settlement(self) -> bool {
        matches!(self, TransferCode::Settlement | TransferCode::Cancellation)
    }
}

/// A transfer as created, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: AccountId,
    pub credit: AccountId,
    /// What the insured city pays for a SETTLEMENT or CANCELLATION (may be zero); above zero
    /// for the other codes.
    pub amount: Amount,
    pub code: TransferCode,
    pub linked: bool,
    pub pending: bool,
    /// 1 to [`PENDING_TIMEOUT_SECONDS_MAX`] when pending, 0 when created posted.
    pub pending_timeout_seconds: u32,
    /// Present exactly for SETTLEMENT and CANCELLATION.
    pub settlement: Option<SettlementRecord>,
    /// The bureau operator behind a DEPOSIT or WITHDRAWAL; empty when a node acts.
    pub operator_id: String,
}

impl Transfer {
    /// The stored `flags` column.
    pub fn flags(&self) -> i64 {
        let mut flags = 0;
        if self.linked {
            flags |= FLAG_LINKED;
        }
        if self.pending {
            flags |= FLAG_PENDING;
        }
        flags
    }
}

/// The settlement behind a SETTLEMENT or CANCELLATION transfer, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementRecord {
    pub settlement_id: String,
    pub message_id: MessageId,
    pub treatment_city: PoolCode,
    pub insured_city: PoolCode,
    pub institution_code: InstitutionCode,
    pub visit_id: String,
    pub person_no: PersonNo,
    /// national insutype: 310 or 390.
    pub insurance_type: i64,
    /// national clr_type: 11 or 41.
    pub clearing_type: i64,
    pub settlement_date: Date,
    /// Negative (or zero) for a cancellation, like the three parts below.
    pub total_amount: Amount,
    pub fund_pay: Amount,
    pub account_pay: Amount,
    pub cash_pay: Amount,
    pub cancellation: bool,
    /// The settlement a cancellation cancels; empty for a settlement.
    pub original_settlement_id: String,
    /// The fund pay by fund type, in (fund type, disease) order, canonical: empty when the whole
    /// fund pay is the insurance type's basic pooling fund against the ordinary annual cap (see
    /// [`SettlementRecord::itemised`]).
    pub fund_payments: Vec<FundPayment>,
}

/// One fund's part of a settlement record: a row of the national setldetail, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FundPayment {
    /// national fund_pay_type: the basic pooling fund of the record's insurance type.
    pub fund_pay_type: String,
    /// The disease whose annual quota the payment draws on; empty for the ordinary annual cap.
    pub disease_code: String,
    /// Negative for a cancellation, like the record's fund pay; never zero.
    pub amount: Amount,
}

/// The basic pooling fund that pays for an insurance type (national insutype 310 or 390), as
/// its national fund_pay_type: 310100 (职工基本医疗保险统筹基金) or 390100 (城乡居民基本医疗保险基金).
pub fn pool_fund_type(insurance_type: i64) -> Option<&'static str> {
    match insurance_type {
        310 => Some("310100"),
        390 => Some("390100"),
        _ => None,
    }
}

/// The stored form of a fund breakdown (the journal's `fund_payments` column): one
/// `fund_pay_type/disease_code/amount_fen` per line, joined by `;`; empty for none.
pub fn fund_payments_text(lines: &[FundPayment]) -> String {
    lines
        .iter()
        .map(|line| {
            format!(
                "{}/{}/{}",
                line.fund_pay_type,
                line.disease_code,
                line.amount.fen()
            )
        })
        .collect::<Vec<_>>()
        .join(";")
}

/// Reads [`fund_payments_text`] back; `None` when the text is not of that form.
pub fn parse_fund_payments_text(text: &str) -> Option<Vec<FundPayment>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(';')
        .map(|line| {
            let mut parts = line.split('/');
            let fund_pay_type = parts.next()?.to_owned();
            let disease_code = parts.next()?.to_owned();
            let amount = Amount::from_fen(parts.next()?.parse().ok()?);
            match parts.next() {
                Some(_) => None,
                None => Some(FundPayment {
                    fund_pay_type,
                    disease_code,
                    amount,
                }),
            }
        })
        .collect()
}

impl SettlementRecord {
    /// What the insured city pays: fund pay plus personal-account pay, as a positive amount for
    /// a cancellation too.
    fn insured_city_pay(&self) -> Option<Amount> {
        let pay = self.fund_pay.checked_add(self.account_pay)?;
        Some(Amount::from_fen(pay.fen().checked_abs()?))
    }

    /// The fund pay by fund type, every line spelled out: the stored lines, or for the empty
    /// canonical form one line of the insurance type's pooling fund (none when fund pay is zero).
    pub fn itemised(&self) -> Vec<FundPayment> {
        itemised(&self.fund_payments, self.insurance_type, self.fund_pay)
    }
}

/// The lines of a stored breakdown spelled out (see [`SettlementRecord::itemised`]).
pub fn itemised(lines: &[FundPayment], insurance_type: i64, fund_pay: Amount) -> Vec<FundPayment> {
    if !lines.is_empty() || fund_pay == Amount::ZERO {
        return lines.to_vec();
    }
    vec![FundPayment {
        fund_pay_type: pool_fund_type(insurance_type)
            .unwrap_or_default()
            .to_owned(),
        disease_code: String::new(),
        amount: fund_pay,
    }]
}

fn disease_code(text: &str, field: &str) -> Result<String, Invalid> {
    let ok = text.chars().count() <= DISEASE_CODE_CHARS_MAX
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'.');
    if !ok {
        return Err(Invalid::new(
            field,
            format!(
                "must be empty or at most {DISEASE_CODE_CHARS_MAX} ASCII letters, digits and dots"
            ),
        ));
    }
    Ok(text.to_owned())
}

/// Checks a record's fund breakdown against its insurance type and fund pay, each amount signed
/// by `signed`, and returns it in canonical form. Field paths are relative to the record.
fn fund_payments(
    lines: &[pb::SettlementFundPayment],
    insurance_type: i64,
    fund_pay: Amount,
    signed: impl Fn(&str, &str) -> Result<Amount, Invalid>,
) -> Result<Vec<FundPayment>, Invalid> {
    if lines.len() > FUND_PAYMENTS_MAX {
        return Err(Invalid::new(
            "fund_payments",
            format!("must hold at most {FUND_PAYMENTS_MAX} lines"),
        ));
    }
    let pool = pool_fund_type(insurance_type).expect("the insurance type is checked first");
    let mut checked: Vec<FundPayment> = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let field = |name: &str| format!("fund_payments[{index}].{name}");
        if line.fund_pay_type != pool {
            return Err(Invalid::new(
                field("fund_pay_type"),
                format!("must be {pool}, the basic pooling fund of the record's insurance type"),
            ));
        }
        let disease_code = disease_code(&line.disease_code, &field("disease_code"))?;
        let amount = signed(&line.amount, &field("amount"))?;
        if amount == Amount::ZERO {
            return Err(Invalid::new(
                field("amount"),
                "must not be zero: a fund that pays nothing has no line",
            ));
        }
        if checked.iter().any(|seen| {
            seen.fund_pay_type == line.fund_pay_type && seen.disease_code == disease_code
        }) {
            return Err(Invalid::new(
                field("disease_code"),
                "repeats an earlier line's fund type and disease",
            ));
        }
        checked.push(FundPayment {
            fund_pay_type: line.fund_pay_type.clone(),
            disease_code,
            amount,
        });
    }
    let sum = checked
        .iter()
        .try_fold(Amount::ZERO, |sum, line| sum.checked_add(line.amount));
    if !checked.is_empty() && sum != Some(fund_pay) {
        return Err(Invalid::new(
            "fund_payments",
            "must sum exactly to fund_pay",
        ));
    }
    checked.sort_by(|a, b| {
        (&a.fund_pay_type, &a.disease_code).cmp(&(&b.fund_pay_type, &b.disease_code))
    });
    // One line of the pooling fund against the ordinary cap is what the empty list means.
    if checked.len() == 1 && checked[0].disease_code.is_empty() {
        checked.clear();
    }
    Ok(checked)
}

fn identifier(text: &str, field: &str) -> Result<String, Invalid> {
    let ok = !text.is_empty()
        && text.chars().count() <= IDENTIFIER_CHARS_MAX
        && text.bytes().all(|byte| byte.is_ascii_graphic());
    if !ok {
        return Err(Invalid::new(
            field,
            format!("must be 1 to {IDENTIFIER_CHARS_MAX} printable ASCII characters"),
        ));
    }
    Ok(text.to_owned())
}

fn city(text: &str, field: &str) -> Result<PoolCode, Invalid> {
    PoolCode::parse(text).map_err(|invalid| invalid.at(field))
}

impl TryFrom<pb::SettlementRecord> for SettlementRecord {
    type Error = Invalid;

    /// Field paths are relative to the record ("fund_pay").
    fn try_from(record: pb::SettlementRecord) -> Result<Self, Invalid> {
        let settlement_id = identifier(&record.settlement_id, "settlement_id")?;
        let message_id =
            MessageId::parse(&record.message_id).map_err(|invalid| invalid.at("message_id"))?;
        let treatment_city = city(&record.treatment_city, "treatment_city")?;
        let insured_city = city(&record.insured_city, "insured_city")?;
        let institution_code = InstitutionCode::parse(&record.institution_code)
            .map_err(|invalid| invalid.at("institution_code"))?;
        if institution_code.city() != treatment_city {
            return Err(Invalid::new(
                "institution_code",
                "must be an institution of the treatment city",
            ));
        }
        let visit_id = identifier(&record.visit_id, "visit_id")?;
        let person_no =
            PersonNo::parse(&record.person_no).map_err(|invalid| invalid.at("person_no"))?;
        if person_no.insured_city() != insured_city {
            return Err(Invalid::new(
                "person_no",
                "must be a person insured by the insured city",
            ));
        }
        let insurance_type = match record.insurance_type {
            310 | 390 => i64::from(record.insurance_type),
            _ => {
                return Err(Invalid::new(
                    "insurance_type",
                    "must be EMPLOYEE (310) or RESIDENT (390)",
                ));
            }
        };
        let clearing_type = match pb::ClearingType::try_from(record.clearing_type) {
            Ok(
                pb::ClearingType::Outpatient
                | pb::ClearingType::ChronicDisease
                | pb::ClearingType::Pharmacy,
            ) => i64::from(record.clearing_type),
            _ => {
                return Err(Invalid::new(
                    "clearing_type",
                    "must be OUTPATIENT (11), CHRONIC_DISEASE (14) or PHARMACY (41)",
                ));
            }
        };
        let settlement_date = yitong_core::parse_date(&record.settlement_date)
            .map_err(|invalid| invalid.at("settlement_date"))?;
        let signed = |text: &str, field: &str| -> Result<Amount, Invalid> {
            let amount = Amount::parse_signed(text).map_err(|invalid| invalid.at(field))?;
            match (record.cancellation, amount.is_negative()) {
                (false, true) => Err(Invalid::new(field, "must not be negative for a settlement")),
                (true, false) if amount != Amount::ZERO => Err(Invalid::new(
                    field,
                    "must be negative (or zero) for a cancellation",
                )),
                _ => Ok(amount),
            }
        };
        let total_amount = signed(&record.total_amount, "total_amount")?;
        let fund_pay = signed(&record.fund_pay, "fund_pay")?;
        let account_pay = signed(&record.account_pay, "account_pay")?;
        let cash_pay = signed(&record.cash_pay, "cash_pay")?;
        let parts = fund_pay
            .checked_add(account_pay)
            .and_then(|sum| sum.checked_add(cash_pay));
        if parts != Some(total_amount) {
            return Err(Invalid::new(
                "total_amount",
                "must equal fund_pay plus account_pay plus cash_pay",
            ));
        }
        let fund_payments = fund_payments(&record.fund_payments, insurance_type, fund_pay, signed)?;
        let original_settlement_id = match (record.cancellation, record.original_settlement_id) {
            (false, original) if original.is_empty() => original,
            (false, _) => {
                return Err(Invalid::new(
                    "original_settlement_id",
                    "must be empty unless the record is a cancellation",
                ));
            }
            (true, original) => {
                let original = identifier(&original, "original_settlement_id")?;
                if original == settlement_id {
                    return Err(Invalid::new(
                        "original_settlement_id",
                        "must differ from the cancellation's own settlement_id",
                    ));
                }
                original
            }
        };
        Ok(SettlementRecord {
            settlement_id,
            message_id,
            treatment_city,
            insured_city,
            institution_code,
            visit_id,
            person_no,
            insurance_type,
            clearing_type,
            settlement_date,
            total_amount,
            fund_pay,
            account_pay,
            cash_pay,
            cancellation: record.cancellation,
            original_settlement_id,
            fund_payments,
        })
    }
}

impl TryFrom<pb::Transfer> for Transfer {
    type Error = Invalid;

    /// Field paths are relative to the transfer ("settlement.fund_pay").
    fn try_from(transfer: pb::Transfer) -> Result<Self, Invalid> {
        let id = TransferId::parse(&transfer.id).map_err(|invalid| invalid.at("id"))?;
        let debit = AccountId::parse(&transfer.debit_account_id)
            .map_err(|invalid| invalid.at("debit_account_id"))?;
        let credit = AccountId::parse(&transfer.credit_account_id)
            .map_err(|invalid| invalid.at("credit_account_id"))?;
        if debit == credit {
            return Err(Invalid::new(
                "credit_account_id",
                "must differ from the debit account",
            ));
        }
        let code = match pb::TransferCode::try_from(transfer.code) {
            Ok(pb::TransferCode::Unspecified) | Err(_) => {
                return Err(Invalid::new(
                    "code",
                    "must be DEPOSIT, WITHDRAWAL, SETTLEMENT or CANCELLATION",
                ));
            }
            Ok(
                pb::TransferCode::ClearingObligation
                | pb::TransferCode::ClearingFunds
                | pb::TransferCode::ClearingPayment,
            ) => {
                return Err(Invalid::new(
                    "code",
                    "CLEARING_* transfers are booked only by CloseClearingPeriod",
                ));
            }
            Ok(code) => TransferCode::from_number(i64::from(code as i32))
                .expect("every wire code has a domain code"),
        };
        let amount = Amount::parse(&transfer.amount).map_err(|invalid| invalid.at("amount"))?;
        if amount == Amount::ZERO && !code.is_settlement() {
            return Err(Invalid::new("amount", "must be above zero"));
        }
        let flags = transfer.flags.unwrap_or_default();
        match (flags.pending, transfer.pending_timeout_seconds) {
            (true, 1..=PENDING_TIMEOUT_SECONDS_MAX) | (false, 0) => {}
            (true, _) => {
                return Err(Invalid::new(
                    "pending_timeout_seconds",
                    format!("must be 1 to {PENDING_TIMEOUT_SECONDS_MAX} for a pending transfer"),
                ));
            }
            (false, _) => {
                return Err(Invalid::new(
                    "pending_timeout_seconds",
                    "must be 0 for a transfer created posted",
                ));
            }
        }
        let settlement = match (code.is_settlement(), transfer.settlement) {
            (true, Some(record)) => Some(
                SettlementRecord::try_from(record)
                    .map_err(|invalid| invalid.within("settlement"))?,
            ),
            (true, None) => {
                return Err(Invalid::new(
                    "settlement",
                    "is required for a SETTLEMENT or CANCELLATION",
                ));
            }
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Invalid::new(
                    "settlement",
                    format!("must be absent for a {}", code.name()),
                ));
            }
        };
        if transfer.operator_id.chars().count() > IDENTIFIER_CHARS_MAX {
            return Err(Invalid::new(
                "operator_id",
                format!("must be at most {IDENTIFIER_CHARS_MAX} characters"),
            ));
        }
        let transfer = Transfer {
            id,
            debit,
            credit,
            amount,
            code,
            linked: flags.linked,
            pending: flags.pending,
            pending_timeout_seconds: transfer.pending_timeout_seconds,
            settlement,
            operator_id: transfer.operator_id,
        };
        check_accounts_fit(&transfer)?;
        Ok(transfer)
    }
}

/// Refuses accounts that the chart of accounts does not allow for the transfer's code, and a
/// settlement record whose cities or amount are not the accounts' own.
fn check_accounts_fit(transfer: &Transfer) -> Result<(), Invalid> {
    use AccountId::*;
    let debit_field = "debit_account_id";
    let credit_field = "credit_account_id";
    match transfer.code {
        TransferCode::Deposit | TransferCode::Withdrawal => {
            let (bank, fund) = match (transfer.code, transfer.debit, transfer.credit) {
                (TransferCode::Deposit, Bank(bank), Fund(fund)) => (bank, fund),
                (TransferCode::Withdrawal, Fund(fund), Bank(bank)) => (bank, fund),
                (TransferCode::Deposit, Bank(_), _) => {
                    return Err(Invalid::new(credit_field, "a DEPOSIT credits <city>.fund"));
                }
                (TransferCode::Deposit, _, _) => {
                    return Err(Invalid::new(debit_field, "a DEPOSIT debits <city>.bank"));
                }
                (_, Fund(_), _) => {
                    return Err(Invalid::new(
                        credit_field,
                        "a WITHDRAWAL credits <city>.bank",
                    ));
                }
                _ => return Err(Invalid::new(debit_field, "a WITHDRAWAL debits <city>.fund")),
            };
            if bank != fund {
                return Err(Invalid::new(
                    credit_field,
                    "must be an account of the same city as the debit account",
                ));
            }
            Ok(())
        }
        TransferCode::Settlement | TransferCode::Cancellation => {
            let record = transfer
                .settlement
                .as_ref()
                .expect("a settlement record is required for these codes");
            let cancelling = transfer.code == TransferCode::Cancellation;
            // The advances side and the payer side: SETTLEMENT debits advances and credits the
            // payer, CANCELLATION mirrors it.
            let (advances, payer, advances_field, payer_field) = if cancelling {
                (transfer.credit, transfer.debit, credit_field, debit_field)
            } else {
                (transfer.debit, transfer.credit, debit_field, credit_field)
            };
            let Advances(treatment) = advances else {
                return Err(Invalid::new(
                    advances_field,
                    "must be <treatment>.advances for a SETTLEMENT or CANCELLATION",
                ));
            };
            let insured = match payer {
                Obligation {
                    insured,
                    treatment: owed,
                } if owed == treatment => insured,
                Pool(city) if city == treatment => city,
                _ => {
                    return Err(Invalid::new(
                        payer_field,
                        "must be <insured>-><treatment>.obligation, or <treatment>.pool for a same-city settlement",
                    ));
                }
            };
            if record.treatment_city != treatment {
                return Err(Invalid::new(
                    "settlement.treatment_city",
                    "must be the city of the advances account",
                ));
            }
            if record.insured_city != insured {
                return Err(Invalid::new(
                    "settlement.insured_city",
                    "must be the insured city the obligation (or pool) account names",
                ));
            }
            if record.cancellation != cancelling {
                return Err(Invalid::new(
                    "settlement.cancellation",
                    "must be set exactly for a CANCELLATION",
                ));
            }
            if record.insured_city_pay() != Some(transfer.amount) {
                return Err(Invalid::new(
                    "amount",
                    "must equal the settlement's fund_pay plus account_pay, as a positive amount",
                ));
            }
            Ok(())
        }
        TransferCode::ClearingObligation
        | TransferCode::ClearingFunds
        | TransferCode::ClearingPayment => {
            unreachable!("refused when the code was parsed")
        }
    }
}

/// Parses a CreateTransfers batch: 1 to [`TRANSFERS_PER_BATCH_MAX`] transfers, the last one not
/// linked. Field paths name the transfer ("transfers[2].amount").
pub fn parse_batch(transfers: &[pb::Transfer]) -> Result<Vec<Transfer>, Invalid> {
    if transfers.is_empty() || transfers.len() > TRANSFERS_PER_BATCH_MAX {
        return Err(Invalid::new(
            "transfers",
            format!("must hold 1 to {TRANSFERS_PER_BATCH_MAX} transfers"),
        ));
    }
    let parsed = transfers
        .iter()
        .enumerate()
        .map(|(index, transfer)| {
            Transfer::try_from(transfer.clone())
                .map_err(|invalid| invalid.within(&format!("transfers[{index}]")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let last = parsed.len() - 1;
    if parsed[last].linked {
        return Err(Invalid::new(
            format!("transfers[{last}].flags.linked"),
            "the last transfer of a batch must not be linked: its chain would stay open",
        ));
    }
    Ok(parsed)
}

/// Parses the ids of a post or void: 1 to [`PENDING_IDS_PER_REQUEST_MAX`] UUIDs.
pub fn parse_pending_ids(ids: &[String]) -> Result<Vec<TransferId>, Invalid> {
    if ids.is_empty() || ids.len() > PENDING_IDS_PER_REQUEST_MAX {
        return Err(Invalid::new(
            "pending_transfer_ids",
            format!("must hold 1 to {PENDING_IDS_PER_REQUEST_MAX} ids"),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(index, id)| {
            TransferId::parse(id)
                .map_err(|invalid| invalid.at(format!("pending_transfer_ids[{index}]")))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid posted SETTLEMENT of 80.00 yuan from Jinan's insured to a Zibo hospital.
    pub(crate) fn settlement() -> pb::Transfer {
        pb::Transfer {
            id: "0195f0a4-0000-7000-8000-000000000001".into(),
            debit_account_id: "370300.advances".into(),
            credit_account_id: "370100->370300.obligation".into(),
            amount: "80.00".into(),
            code: pb::TransferCode::Settlement as i32,
            flags: None,
            pending_timeout_seconds: 0,
            settlement: Some(pb::SettlementRecord {
                settlement_id: "T3703002026030100001".into(),
                message_id: "H37030000007202603011030000001".into(),
                treatment_city: "370300".into(),
                insured_city: "370100".into(),
                institution_code: "H37030000007".into(),
                visit_id: "S3703002603010000001".into(),
                person_no: "3701000000000001".into(),
                insurance_type: 310,
                clearing_type: 11,
                settlement_date: "2026-03-01".into(),
                total_amount: "100.00".into(),
                fund_pay: "70.00".into(),
                account_pay: "10.00".into(),
                cash_pay: "20.00".into(),
                cancellation: false,
                original_settlement_id: String::new(),
                fund_payments: Vec::new(),
            }),
            operator_id: String::new(),
        }
    }

    fn fund_line(
        fund_pay_type: &str,
        disease_code: &str,
        amount: &str,
    ) -> pb::SettlementFundPayment {
        pb::SettlementFundPayment {
            fund_pay_type: fund_pay_type.into(),
            disease_code: disease_code.into(),
            amount: amount.into(),
        }
    }

    /// The settlement's 70.00 of fund pay: 50.00 on the hypertension quota, 20.00 on the
    /// diabetes quota (listed out of order), as a record of two diseases' lines.
    fn itemised_settlement() -> pb::Transfer {
        let mut transfer = settlement();
        transfer.settlement.as_mut().unwrap().fund_payments = vec![
            fund_line("310100", "M03900", "50.00"),
            fund_line("310100", "M01600", "20.00"),
        ];
        transfer
    }

    // Proves a fund breakdown is kept in (fund type, disease) order, stored and read back alike,
    // and that a single line of the pooling fund on the ordinary cap is the empty breakdown.
    #[test]
    fn a_fund_breakdown_is_canonical() {
        let parsed = Transfer::try_from(itemised_settlement()).expect("valid");
        let record = parsed.settlement.unwrap();
        let diseases: Vec<&str> = record
            .fund_payments
            .iter()
            .map(|line| line.disease_code.as_str())
            .collect();
        assert_eq!(diseases, ["M01600", "M03900"]);
        let text = fund_payments_text(&record.fund_payments);
        assert_eq!(text, "310100/M01600/2000;310100/M03900/5000");
        assert_eq!(parse_fund_payments_text(&text), Some(record.fund_payments));
        assert_eq!(parse_fund_payments_text("310100/M01600"), None);
        assert_eq!(parse_fund_payments_text("310100//x"), None);

        let mut pooled = settlement();
        pooled.settlement.as_mut().unwrap().fund_payments = vec![fund_line("310100", "", "70.00")];
        let record = Transfer::try_from(pooled).unwrap().settlement.unwrap();
        assert!(record.fund_payments.is_empty());
        let spelled = record.itemised();
        assert_eq!(spelled.len(), 1);
        assert_eq!(
            (spelled[0].fund_pay_type.as_str(), spelled[0].amount),
            ("310100", Amount::from_fen(7_000))
        );
    }

    // Proves each malformed fund line is refused with its field path, the sum is checked
    // against fund pay, and a cancellation's lines must be negative like its fund pay.
    #[test]
    fn fund_breakdown_lines_are_checked() {
        type Edit = fn(&mut Vec<pb::SettlementFundPayment>);
        let cases: [(Edit, &str); 7] = [
            (
                |lines| lines[1].fund_pay_type = "390100".into(),
                "settlement.fund_payments[1].fund_pay_type",
            ),
            (
                |lines| lines[0].disease_code = "M03/900".into(),
                "settlement.fund_payments[0].disease_code",
            ),
            (
                |lines| lines[1].disease_code = "M03900".into(),
                "settlement.fund_payments[1].disease_code",
            ),
            (
                |lines| lines[0].amount = "-50.00".into(),
                "settlement.fund_payments[0].amount",
            ),
            (
                |lines| lines.push(fund_line("310100", "", "0.00")),
                "settlement.fund_payments[2].amount",
            ),
            (
                |lines| lines[0].amount = "49.99".into(),
                "settlement.fund_payments",
            ),
            (
                |lines| *lines = vec![fund_line("310100", "", "1.00"); FUND_PAYMENTS_MAX + 1],
                "settlement.fund_payments",
            ),
        ];
        for (edit, field) in cases {
            let mut transfer = itemised_settlement();
            edit(&mut transfer.settlement.as_mut().unwrap().fund_payments);
            assert_eq!(refused_at(transfer), field);
        }

        let mut cancellation = cancellation_of(itemised_settlement());
        assert_eq!(
            refused_at(cancellation.clone()),
            "settlement.fund_payments[0].amount",
            "a cancellation's lines are negated"
        );
        let record = cancellation.settlement.as_mut().unwrap();
        for line in &mut record.fund_payments {
            line.amount.insert(0, '-');
        }
        let parsed = Transfer::try_from(cancellation).expect("a mirrored breakdown");
        assert_eq!(
            fund_payments_text(&parsed.settlement.unwrap().fund_payments),
            "310100/M01600/-2000;310100/M03900/-5000"
        );
    }

    fn refused_at(transfer: pb::Transfer) -> String {
        Transfer::try_from(transfer)
            .expect_err("refused")
            .field()
            .to_owned()
    }

    // Proves a well-formed settlement parses, and each malformed field is named.
    #[test]
    fn settlement_fields_are_checked() {
        let parsed = Transfer::try_from(settlement()).expect("valid");
        assert_eq!(parsed.amount, Amount::from_fen(8_000));
        type Edit = fn(&mut pb::Transfer);
        let cases: [(Edit, &str); 14] = [
            (
                |t| t.id = "0195F0A4-0000-7000-8000-000000000001".into(),
                "id",
            ),
            (|t| t.id = "0195f0a400007000800000000000001".into(), "id"),
            (
                |t| t.credit_account_id = "370300.advances".into(),
                "credit_account_id",
            ),
            (
                |t| t.credit_account_id = "370100->370500.obligation".into(),
                "credit_account_id",
            ),
            (
                |t| t.debit_account_id = "370300.fund".into(),
                "debit_account_id",
            ),
            (|t| t.amount = "79.99".into(), "amount"),
            (|t| t.code = 0, "code"),
            (|t| t.code = pb::TransferCode::ClearingFunds as i32, "code"),
            (|t| t.pending_timeout_seconds = 5, "pending_timeout_seconds"),
            (|t| t.settlement = None, "settlement"),
            (
                |t| t.settlement.as_mut().unwrap().cash_pay = "19.99".into(),
                "settlement.total_amount",
            ),
            (
                |t| t.settlement.as_mut().unwrap().person_no = "3703000000000001".into(),
                "settlement.person_no",
            ),
            (
                |t| t.settlement.as_mut().unwrap().institution_code = "H37010000007".into(),
                "settlement.institution_code",
            ),
            (
                |t| t.settlement.as_mut().unwrap().cancellation = true,
                "settlement.total_amount",
            ),
        ];
        for (edit, field) in cases {
            let mut transfer = settlement();
            edit(&mut transfer);
            assert_eq!(refused_at(transfer), field);
        }
    }

    /// The cancellation of `transfer`: its code, accounts swapped, the record's amounts negated.
    fn cancellation_of(mut transfer: pb::Transfer) -> pb::Transfer {
        transfer.code = pb::TransferCode::Cancellation as i32;
        std::mem::swap(
            &mut transfer.debit_account_id,
            &mut transfer.credit_account_id,
        );
        let record = transfer.settlement.as_mut().unwrap();
        record.cancellation = true;
        record.settlement_id = "C3703002026030100001".into();
        record.original_settlement_id = "T3703002026030100001".into();
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

    // Proves a cancellation mirrors the settlement: accounts swapped, amounts negative, the
    // transfer's amount still positive.
    #[test]
    fn cancellation_mirrors_settlement() {
        let transfer = cancellation_of(settlement());
        let parsed = Transfer::try_from(transfer).expect("a valid cancellation");
        assert_eq!(parsed.amount, Amount::from_fen(8_000));
        assert_eq!(
            parsed.settlement.unwrap().fund_pay,
            Amount::from_fen(-7_000)
        );
    }

    // Proves a same-city settlement is paid from the pool and not through an obligation.
    #[test]
    fn same_city_settlement_uses_the_pool() {
        let mut transfer = settlement();
        transfer.credit_account_id = "370300.pool".into();
        let record = transfer.settlement.as_mut().unwrap();
        record.insured_city = "370300".into();
        record.person_no = "3703000000000001".into();
        Transfer::try_from(transfer.clone()).expect("a same-city settlement");
        transfer.credit_account_id = "370100.pool".into();
        assert_eq!(refused_at(transfer), "credit_account_id");
    }

    // Proves deposits and withdrawals move between one city's bank and fund only.
    #[test]
    fn deposits_stay_within_a_city() {
        let deposit = |debit: &str, credit: &str, code: pb::TransferCode| pb::Transfer {
            id: "0195f0a4-0000-7000-8000-000000000002".into(),
            debit_account_id: debit.into(),
            credit_account_id: credit.into(),
            amount: "1000.00".into(),
            code: code as i32,
            ..Default::default()
        };
        use pb::TransferCode::{Deposit, Withdrawal};
        Transfer::try_from(deposit("370100.bank", "370100.fund", Deposit)).expect("deposit");
        Transfer::try_from(deposit("370100.fund", "370100.bank", Withdrawal)).expect("withdrawal");
        for (debit, credit, code, field) in [
            ("370100.bank", "370300.fund", Deposit, "credit_account_id"),
            ("370100.fund", "370100.bank", Deposit, "debit_account_id"),
            ("370100.bank", "370100.pool", Deposit, "credit_account_id"),
            ("370100.bank", "370100.fund", Withdrawal, "debit_account_id"),
        ] {
            assert_eq!(
                refused_at(deposit(debit, credit, code)),
                field,
                "{debit} {credit}"
            );
        }
        let mut zero = deposit("370100.bank", "370100.fund", Deposit);
        zero.amount = "0.00".into();
        assert_eq!(refused_at(zero), "amount");
        let mut with_record = deposit("370100.bank", "370100.fund", Deposit);
        with_record.settlement = settlement().settlement;
        assert_eq!(refused_at(with_record), "settlement");
    }

    // Proves a batch is 1 to 1000 transfers, paths name the transfer, and a chain must close.
    #[test]
    fn batches_are_bounded_and_closed() {
        assert_eq!(parse_batch(&[]).unwrap_err().field(), "transfers");
        let many = vec![settlement(); TRANSFERS_PER_BATCH_MAX + 1];
        assert_eq!(parse_batch(&many).unwrap_err().field(), "transfers");
        let mut bad = settlement();
        bad.amount = "x".into();
        assert_eq!(
            parse_batch(&[settlement(), bad]).unwrap_err().field(),
            "transfers[1].amount"
        );
        let mut linked = settlement();
        linked.flags = Some(pb::TransferFlags {
            linked: true,
            pending: false,
        });
        assert_eq!(
            parse_batch(&[settlement(), linked]).unwrap_err().field(),
            "transfers[1].flags.linked"
        );
    }
}
