//! The journal: one entry per event of a transfer, each balanced and hash-chained to the one
//! before, and the canonical encoding its hashes cover.
//!
//! # Entries
//!
//! Every event is one entry, numbered from 1 without gaps: a transfer created (pending or
//! posted), a pending transfer posted, voided, or expired by the ledger. An entry carries the
//! whole transfer as created (so that reconciliation and clearing read one row, never a join),
//! and the four amounts it moves ([`Legs`]): what it adds to the pending and posted sums on the
//! debit account and on the credit account. Balances are sums of legs; nothing in the journal is
//! ever updated or deleted.
//!
//! # The canonical encoding
//!
//! The hash of entry `n` is
//!
//! ```text
//! hash(n) = SHA-256( "yitong.ledger.journal.v1"      24 ASCII bytes, no terminator
//!                  || hash(n - 1)                   32 bytes; 32 zero bytes for entry 1
//!                  || field(1) || ... || field(38)  the columns below, in this order
//!                  || field(39)                     `fund_payments`, only when not empty )
//! ```
//!
//! where an integer field is its value as 8 bytes big-endian two's complement, and a text field
//! is its length in bytes as 8 bytes big-endian followed by its UTF-8 bytes. The fields are the
//! `journal` table's columns, in [`COLUMNS`] order, as stored, but for one: `event`, stored as
//! its word, is encoded as an integer field, its number ([`Event::number`]: `created` 1,
//! `posted` 2, `voided` 3, `expired` 4). Those are the numbers the column held until
//! `migrations/ledger/0009_journal_event_words.sql` made it words, so an entry hashes alike in
//! either form, and a journal written before the migration verifies after it. The lengths make
//! the encoding injective: no two different entries encode alike. (A word that is no event's,
//! which only an alteration can store, encodes as 0, so its hash no longer matches.) The
//! fields: `sequence`, `event`, `stage`,
//! `transfer_id`, `debit_account_id`, `credit_account_id`, `amount_fen`, `code`, `flags`,
//! `pending_timeout_seconds`, `operator_id`, `settlement_id`, `settlement_message_id`,
//! `treatment_city`, `insured_city`, `institution_code`, `visit_id`, `person_no`,
//! `insurance_type`, `clearing_type`, `settlement_date`, `total_amount_fen`, `fund_pay_fen`,
//! `account_pay_fen`, `cash_pay_fen`, `cancellation`, `original_settlement_id`,
//! `business_date`, `clearing_period`, `created_at_ms`, `expires_at_ms`, `recorded_at_ms`,
//! `message_id`, `reason`, `debit_pending_fen`, `debit_posted_fen`, `credit_pending_fen`,
//! `credit_posted_fen`, and, only when it is not empty, `fund_payments` (the settlement's fund
//! pay by fund type, [`crate::transfer::fund_payments_text`]). That column came with
//! `migrations/ledger/0013_settlement_fund_payments.sql`, empty in every older row, so an entry
//! without a breakdown (every entry written before it, and every ordinary settlement after it)
//! hashes exactly as before, and an old journal verifies unchanged. The encoding stays
//! injective: the first 38 fields are self-delimiting, and the 39th is there or not. The two
//! remaining columns are the chain itself: `previous_hash` (must
//! equal hash(n - 1)) and `hash`, both lowercase hex. Every column of a row is therefore either
//! covered by its hash or checked against its neighbour's, so changing any byte of any row is
//! found by [`Verifier`]; so is a missing row, by the gap in the numbering.
//!
//! The encoding is over stored column values, not domain types, so an auditor can recompute the
//! chain from a database dump alone, and an altered row is still read (and reported) rather than
//! refused when parsed.

use sha2::{Digest, Sha256};

use crate::transfer::FLAG_PENDING;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The hash before the first entry, and the head of an empty journal.
pub const GENESIS: Hash = [0; 32];

/// Prefix of every hashed encoding, naming its version.
const DOMAIN_TAG: &[u8; 24] = b"yitong.ledger.journal.v1";

/// What happened to a transfer; stored in the `event` column as its word.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// Created, pending or posted.
    Created,
    /// A pending transfer posted.
    Posted,
    /// A pending transfer voided by a VoidPendingTransfers call.
    Voided,
    /// A pending transfer voided by the ledger when its timeout passed.
    Expired,
}

impl Event {
    pub const ALL: [Event; 4] = [Event::Created, Event::Posted, Event::Voided, Event::Expired];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Created => "created",
            Event::Posted => "posted",
            Event::Voided => "voided",
            Event::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|event| event.as_str() == text)
    }

    /// What the hash covers of the event (see the module docs): the number the `event` column
    /// held before it held words. Never change one.
    pub fn number(self) -> i64 {
        match self {
            Event::Created => 1,
            Event::Posted => 2,
            Event::Voided => 3,
            Event::Expired => 4,
        }
    }

    /// 0 for the creation, 1 for the one resolution a pending transfer may have; the journal's
    /// unique index on (transfer_id, stage) holds every transfer to one of each.
    pub fn stage(self) -> i64 {
        match self {
            Event::Created => 0,
            Event::Posted | Event::Voided | Event::Expired => 1,
        }
    }
}

/// What one entry adds to the pending and posted sums of its debit and its credit account, in
/// fen. An entry balances when both sides move alike.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Legs {
    pub debit_pending_fen: i64,
    pub debit_posted_fen: i64,
    pub credit_pending_fen: i64,
    pub credit_posted_fen: i64,
}

impl Legs {
    /// The legs of `event` for a transfer of `amount_fen`: creating holds the amount pending or
    /// books it posted; posting moves it from pending to posted; voiding or expiring releases it.
    pub fn of(event: Event, amount_fen: i64, created_pending: bool) -> Legs {
        let (pending, posted) = match (event, created_pending) {
            (Event::Created, true) => (amount_fen, 0),
            (Event::Created, false) => (0, amount_fen),
            (Event::Posted, true) => (-amount_fen, amount_fen),
            (Event::Voided | Event::Expired, true) => (-amount_fen, 0),
            (event, false) => panic!("{event:?} of a transfer created posted"),
        };
        Legs {
            debit_pending_fen: pending,
            debit_posted_fen: posted,
            credit_pending_fen: pending,
            credit_posted_fen: posted,
        }
    }

    /// Debits equal credits, pending and posted alike.
    pub fn balanced(&self) -> bool {
        self.debit_pending_fen == self.credit_pending_fen
            && self.debit_posted_fen == self.credit_posted_fen
    }
}

/// A transfer as every entry of it carries it: the caller's content and what the ledger
/// derived when it was created. Stored column values, not domain types (see the module docs).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct TransferColumns {
    pub transfer_id: String,
    pub debit_account_id: String,
    pub credit_account_id: String,
    pub amount_fen: i64,
    /// The transfer code's number.
    pub code: i64,
    /// [`crate::transfer::FLAG_LINKED`] and [`FLAG_PENDING`].
    pub flags: i64,
    pub pending_timeout_seconds: i64,
    pub operator_id: String,
    // The settlement record; empty texts and zeros for codes without one.
    pub settlement_id: String,
    pub settlement_message_id: String,
    pub treatment_city: String,
    pub insured_city: String,
    pub institution_code: String,
    pub visit_id: String,
    pub person_no: String,
    pub insurance_type: i64,
    pub clearing_type: i64,
    pub settlement_date: String,
    pub total_amount_fen: i64,
    pub fund_pay_fen: i64,
    pub account_pay_fen: i64,
    pub cash_pay_fen: i64,
    /// 1 for a cancellation, else 0.
    pub cancellation: i64,
    pub original_settlement_id: String,
    /// The fund pay by fund type ([`crate::transfer::fund_payments_text`]); empty when it is
    /// all the basic pooling fund, and for codes without a settlement record.
    pub fund_payments: String,
    /// The day the transfer counts on, "YYYY-MM-DD": the settlement date, or the China date of
    /// creation for the codes without a settlement.
    pub business_date: String,
    /// "YYYY-MM" of the clearing period it counts in; empty for codes that are not cleared.
    pub clearing_period: String,
    pub created_at_ms: i64,
    /// When a pending transfer expires; 0 for one created posted.
    pub expires_at_ms: i64,
}

impl TransferColumns {
    pub fn created_pending(&self) -> bool {
        self.flags & FLAG_PENDING != 0
    }

    /// The settlement record's columns, for comparing two records whole.
    pub fn settlement_key(&self) -> ([&str; 10], [i64; 7]) {
        (
            [
                &self.settlement_id,
                &self.settlement_message_id,
                &self.treatment_city,
                &self.insured_city,
                &self.institution_code,
                &self.visit_id,
                &self.person_no,
                &self.settlement_date,
                &self.original_settlement_id,
                &self.fund_payments,
            ],
            [
                self.insurance_type,
                self.clearing_type,
                self.total_amount_fen,
                self.fund_pay_fen,
                self.account_pay_fen,
                self.cash_pay_fen,
                self.cancellation,
            ],
        )
    }
}

/// One stored column value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Value<'a> {
    Int(i64),
    Text(&'a str),
}

/// The `journal` table's columns in encoding order, the chain's two columns last.
pub const COLUMNS: &str = "sequence, event, stage, transfer_id, debit_account_id, credit_account_id, \
     amount_fen, code, flags, pending_timeout_seconds, operator_id, settlement_id, \
     settlement_message_id, treatment_city, insured_city, institution_code, visit_id, person_no, \
     insurance_type, clearing_type, settlement_date, total_amount_fen, fund_pay_fen, \
     account_pay_fen, cash_pay_fen, cancellation, original_settlement_id, business_date, \
     clearing_period, created_at_ms, expires_at_ms, recorded_at_ms, message_id, reason, \
     debit_pending_fen, debit_posted_fen, credit_pending_fen, credit_posted_fen, \
     fund_payments, previous_hash, hash";

/// Number of columns, and of values bound per inserted row.
pub const COLUMN_COUNT: usize = 41;

/// Where `fund_payments` is in [`COLUMNS`]: hashed only when not empty (see the module docs).
const FUND_PAYMENTS_COLUMN: usize = 38;

/// Columns the hash covers: all but `previous_hash` and `hash`.
const HASHED_COLUMN_COUNT: usize = COLUMN_COUNT - 2;

/// Where `event` is in [`COLUMNS`].
const EVENT_COLUMN: usize = 1;

/// One journal entry as stored.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub sequence: i64,
    /// [`Event`]'s word as stored; kept raw so that an altered value is reported, not refused.
    pub event: String,
    /// [`Event::stage`] of the event.
    pub stage: i64,
    pub transfer: TransferColumns,
    pub recorded_at_ms: i64,
    /// The msgid of the request behind the entry; empty for an expiry, which the ledger makes.
    pub message_id: String,
    /// Why a transfer was voided, as the caller said; empty otherwise.
    pub reason: String,
    pub legs: Legs,
    /// Lowercase hex of the previous entry's hash.
    pub previous_hash: String,
    /// Lowercase hex of this entry's hash.
    pub hash: String,
}

impl Entry {
    /// A new entry after `previous`, with its legs and hash. Asserts that it balances: an entry
    /// that does not is a bug in the ledger, and must never be written.
    pub fn new(
        sequence: i64,
        event: Event,
        transfer: TransferColumns,
        recorded_at_ms: i64,
        message_id: String,
        reason: String,
        previous: &Hash,
    ) -> Entry {
        assert!(sequence >= 1, "journal sequence numbers start at 1");
        let legs = Legs::of(event, transfer.amount_fen, transfer.created_pending());
        let mut entry = Entry {
            sequence,
            event: event.as_str().to_owned(),
            stage: event.stage(),
            transfer,
            recorded_at_ms,
            message_id,
            reason,
            legs,
            previous_hash: to_hex(previous),
            hash: String::new(),
        };
        assert!(
            entry.legs.balanced(),
            "journal entry {sequence} does not balance: {:?}",
            entry.legs
        );
        assert!(
            entry.consistent(),
            "journal entry {sequence} is inconsistent"
        );
        entry.hash = to_hex(&entry.compute_hash(previous));
        entry
    }

    /// Every column value as stored, in [`COLUMNS`] order.
    pub fn values(&self) -> [Value<'_>; COLUMN_COUNT] {
        use Value::{Int, Text};
        let t = &self.transfer;
        [
            Int(self.sequence),
            Text(&self.event),
            Int(self.stage),
            Text(&t.transfer_id),
            Text(&t.debit_account_id),
            Text(&t.credit_account_id),
            Int(t.amount_fen),
            Int(t.code),
            Int(t.flags),
            Int(t.pending_timeout_seconds),
            Text(&t.operator_id),
            Text(&t.settlement_id),
            Text(&t.settlement_message_id),
            Text(&t.treatment_city),
            Text(&t.insured_city),
            Text(&t.institution_code),
            Text(&t.visit_id),
            Text(&t.person_no),
            Int(t.insurance_type),
            Int(t.clearing_type),
            Text(&t.settlement_date),
            Int(t.total_amount_fen),
            Int(t.fund_pay_fen),
            Int(t.account_pay_fen),
            Int(t.cash_pay_fen),
            Int(t.cancellation),
            Text(&t.original_settlement_id),
            Text(&t.business_date),
            Text(&t.clearing_period),
            Int(t.created_at_ms),
            Int(t.expires_at_ms),
            Int(self.recorded_at_ms),
            Text(&self.message_id),
            Text(&self.reason),
            Int(self.legs.debit_pending_fen),
            Int(self.legs.debit_posted_fen),
            Int(self.legs.credit_pending_fen),
            Int(self.legs.credit_posted_fen),
            Text(&t.fund_payments),
            Text(&self.previous_hash),
            Text(&self.hash),
        ]
    }

    /// The values the hash covers, in [`COLUMNS`] order: every column as stored but the chain's
    /// two, and the event as its number (see the module docs).
    fn hashed_values(&self) -> [Value<'_>; HASHED_COLUMN_COUNT] {
        let values = self.values();
        let mut hashed = [Value::Int(0); HASHED_COLUMN_COUNT];
        hashed.copy_from_slice(&values[..HASHED_COLUMN_COUNT]);
        hashed[EVENT_COLUMN] = Value::Int(Event::parse(&self.event).map_or(0, Event::number));
        hashed
    }

    /// SHA-256 of the canonical encoding after `previous` (see the module docs).
    pub fn compute_hash(&self, previous: &Hash) -> Hash {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN_TAG);
        hasher.update(previous);
        for (column, value) in self.hashed_values().iter().enumerate() {
            if column == FUND_PAYMENTS_COLUMN && *value == Value::Text("") {
                continue;
            }
            match value {
                Value::Int(number) => hasher.update(number.to_be_bytes()),
                Value::Text(text) => {
                    let length = u64::try_from(text.len()).expect("a length fits in 64 bits");
                    hasher.update(length.to_be_bytes());
                    hasher.update(text.as_bytes());
                }
            }
        }
        hasher.finalize().into()
    }

    /// The event is known, its stage is the event's, and its legs are what the event moves for
    /// the transfer's amount.
    fn consistent(&self) -> bool {
        let Some(event) = Event::parse(&self.event) else {
            return false;
        };
        if event != Event::Created && !self.transfer.created_pending() {
            return false;
        }
        self.stage == event.stage()
            && self.legs
                == Legs::of(
                    event,
                    self.transfer.amount_fen,
                    self.transfer.created_pending(),
                )
    }
}

/// The head of the chain: the latest entry, and how far expiries have been swept.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Head {
    /// Sequence number of the latest entry; 0 for an empty journal.
    pub sequence: i64,
    /// Hash of the latest entry; [`GENESIS`] for an empty journal.
    pub hash: Hash,
    /// When the latest entry was recorded; 0 for an empty journal.
    pub recorded_at_ms: i64,
    /// Every pending transfer expiring at or before this instant has been resolved (posted,
    /// voided or expired), so an expiry sweep starts after it.
    pub expired_through_ms: i64,
}

/// The first entry found altered, and how.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Altered {
    pub sequence: i64,
    pub detail: String,
}

/// Walks the chain from entry 1, one entry at a time in sequence order, so that a journal of
/// any length is verified in bounded memory.
#[derive(Debug)]
pub struct Verifier {
    next_sequence: i64,
    previous: Hash,
    /// Entries examined so far, the failing one included.
    pub checked: u64,
    /// The recomputed hash of the last entry examined.
    pub last_hash: Hash,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            next_sequence: 1,
            previous: GENESIS,
            checked: 0,
            last_hash: GENESIS,
        }
    }
}

impl Verifier {
    /// Checks the next entry read. Entries come in ascending sequence order; a number skipped is
    /// a missing entry (deleted, or its `sequence` altered).
    pub fn check(&mut self, entry: &Entry) -> Result<(), Altered> {
        let sequence = self.next_sequence;
        let altered = |detail: &str| Altered {
            sequence,
            detail: detail.to_owned(),
        };
        if entry.sequence != sequence {
            return Err(altered(&format!("sequence {sequence} missing")));
        }
        self.checked += 1;
        let computed = entry.compute_hash(&self.previous);
        self.last_hash = computed;
        if entry.previous_hash != to_hex(&self.previous) {
            return Err(altered("previous hash does not match"));
        }
        if entry.hash != to_hex(&computed) {
            return Err(altered("content does not match its hash"));
        }
        // Reached only by an entry whose hash matches: written so by a faulty ledger, or
        // forged with every later hash recomputed.
        if !entry.legs.balanced() {
            return Err(altered("entry does not balance"));
        }
        if !entry.consistent() {
            return Err(altered("amounts do not match the event"));
        }
        self.previous = computed;
        self.next_sequence += 1;
        Ok(())
    }

    /// After the last entry up to `expected_last`: every number up to it was seen.
    pub fn finish(&self, expected_last: i64) -> Result<(), Altered> {
        if self.next_sequence <= expected_last {
            return Err(Altered {
                sequence: self.next_sequence,
                detail: format!("sequence {} missing", self.next_sequence),
            });
        }
        Ok(())
    }
}

/// Lowercase hex.
pub fn to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// Parses 64 lowercase hex digits.
pub fn from_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut hash = GENESIS;
    for (index, byte) in hash.iter_mut().enumerate() {
        let pair = text.get(index * 2..index * 2 + 2)?;
        if pair.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(id: u32, amount_fen: i64, pending: bool) -> TransferColumns {
        TransferColumns {
            transfer_id: format!("0195f0a4-0000-7000-8000-{id:012}"),
            debit_account_id: "370100.bank".into(),
            credit_account_id: "370100.fund".into(),
            amount_fen,
            code: 1,
            flags: if pending { FLAG_PENDING } else { 0 },
            pending_timeout_seconds: if pending { 60 } else { 0 },
            business_date: "2026-03-01".into(),
            created_at_ms: 1_772_000_000_000,
            expires_at_ms: if pending { 1_772_000_060_000 } else { 0 },
            ..TransferColumns::default()
        }
    }

    /// A chain of `count` entries: transfers created pending, every other one then posted.
    fn chain(count: i64) -> Vec<Entry> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut previous = GENESIS;
        for sequence in 1..=count {
            let id = u32::try_from((sequence + 1) / 2).unwrap();
            let event = if sequence % 2 == 1 {
                Event::Created
            } else {
                Event::Posted
            };
            let entry = Entry::new(
                sequence,
                event,
                transfer(id, 100 * sequence, true),
                1_772_000_000_000 + sequence,
                format!("msg-{sequence}"),
                String::new(),
                &previous,
            );
            previous = from_hex(&entry.hash).unwrap();
            entries.push(entry);
        }
        entries
    }

    fn verify(entries: &[Entry], expected_last: i64) -> Result<u64, Altered> {
        let mut verifier = Verifier::default();
        for entry in entries {
            verifier.check(entry)?;
        }
        verifier.finish(expected_last)?;
        Ok(verifier.checked)
    }

    // Proves that an untouched chain verifies, and that its hashes depend on the order.
    #[test]
    fn intact_chain_verifies() {
        let entries = chain(10);
        assert_eq!(verify(&entries, 10), Ok(10));
        assert_ne!(entries[0].hash, entries[1].hash);
        assert_eq!(entries[0].previous_hash, to_hex(&GENESIS));
        assert_eq!(entries[1].previous_hash, entries[0].hash);
    }

    // Proves that changing any one column of any one entry names that entry first, and a
    // second alteration further on does not hide the first.
    #[test]
    fn any_altered_column_names_its_entry() {
        let entries = chain(8);
        for column in 0..COLUMN_COUNT {
            let mut altered = entries.clone();
            alter(&mut altered[4], column);
            alter(&mut altered[6], column);
            let failure = verify(&altered, 8).expect_err("an alteration is found");
            assert_eq!(failure.sequence, 5, "column {column}: {failure:?}");
        }
    }

    /// Changes one column of `entry` by the least amount: one bit of a number, one character
    /// of a text.
    fn alter(entry: &mut Entry, column: usize) {
        let t = &mut entry.transfer;
        let text = |text: &mut String| {
            if text.pop().is_some_and(|last| last == 'a') {
                text.push('b');
            } else {
                text.push('a');
            }
        };
        match column {
            0 => entry.sequence += 100,
            1 => text(&mut entry.event),
            2 => entry.stage ^= 1,
            3 => text(&mut t.transfer_id),
            4 => text(&mut t.debit_account_id),
            5 => text(&mut t.credit_account_id),
            6 => t.amount_fen ^= 1,
            7 => t.code ^= 1,
            8 => t.flags ^= 1,
            9 => t.pending_timeout_seconds ^= 1,
            10 => text(&mut t.operator_id),
            11 => text(&mut t.settlement_id),
            12 => text(&mut t.settlement_message_id),
            13 => text(&mut t.treatment_city),
            14 => text(&mut t.insured_city),
            15 => text(&mut t.institution_code),
            16 => text(&mut t.visit_id),
            17 => text(&mut t.person_no),
            18 => t.insurance_type ^= 1,
            19 => t.clearing_type ^= 1,
            20 => text(&mut t.settlement_date),
            21 => t.total_amount_fen ^= 1,
            22 => t.fund_pay_fen ^= 1,
            23 => t.account_pay_fen ^= 1,
            24 => t.cash_pay_fen ^= 1,
            25 => t.cancellation ^= 1,
            26 => text(&mut t.original_settlement_id),
            27 => text(&mut t.business_date),
            28 => text(&mut t.clearing_period),
            29 => t.created_at_ms ^= 1,
            30 => t.expires_at_ms ^= 1,
            31 => entry.recorded_at_ms ^= 1,
            32 => text(&mut entry.message_id),
            33 => text(&mut entry.reason),
            34 => entry.legs.debit_pending_fen ^= 1,
            35 => entry.legs.debit_posted_fen ^= 1,
            36 => entry.legs.credit_pending_fen ^= 1,
            37 => entry.legs.credit_posted_fen ^= 1,
            38 => text(&mut t.fund_payments),
            39 => text(&mut entry.previous_hash),
            40 => text(&mut entry.hash),
            _ => unreachable!("{COLUMN_COUNT} columns"),
        }
    }

    // Proves that a deleted entry, in the middle or at the end, is named as missing.
    #[test]
    fn missing_entries_are_named() {
        let mut entries = chain(6);
        entries.remove(2);
        let failure = verify(&entries, 6).unwrap_err();
        assert_eq!(
            (failure.sequence, failure.detail.as_str()),
            (3, "sequence 3 missing")
        );
        let mut entries = chain(6);
        entries.pop();
        assert_eq!(verify(&entries, 6).unwrap_err().sequence, 6);
    }

    // Proves that an entry forged with a correct hash but unbalanced legs is still refused.
    #[test]
    fn a_forged_unbalanced_entry_is_found() {
        let mut entries = chain(3);
        entries[2].legs.credit_posted_fen += 1;
        let previous = from_hex(&entries[1].hash).unwrap();
        entries[2].hash = to_hex(&entries[2].compute_hash(&previous));
        let failure = verify(&entries, 3).unwrap_err();
        assert_eq!(
            (failure.sequence, failure.detail.as_str()),
            (3, "entry does not balance")
        );
    }

    // Proves the encoding pins the documented layout: a known entry hashes to a known value,
    // so a change of field order or width cannot pass unnoticed.
    #[test]
    fn encoding_is_stable() {
        let entry = Entry::new(
            1,
            Event::Created,
            transfer(1, 12_345, false),
            1_772_000_000_001,
            "msg-1".into(),
            String::new(),
            &GENESIS,
        );
        let mut expected = Sha256::new();
        expected.update(b"yitong.ledger.journal.v1");
        expected.update([0u8; 32]);
        let mut values = entry.values();
        assert_eq!(values[1], Value::Text("created"), "stored as its word");
        values[1] = Value::Int(1);
        for value in &values[..38] {
            match value {
                Value::Int(number) => expected.update(number.to_be_bytes()),
                Value::Text(text) => {
                    expected.update((text.len() as u64).to_be_bytes());
                    expected.update(text.as_bytes());
                }
            }
        }
        let expected: Hash = expected.finalize().into();
        assert_eq!(entry.hash, to_hex(&expected));
        let names: Vec<&str> = COLUMNS.split(',').map(str::trim).collect();
        assert_eq!(names.len(), COLUMN_COUNT);
        assert_eq!(&names[38..], ["fund_payments", "previous_hash", "hash"]);
    }

    // Proves a fund breakdown is the 39th field of the encoding, after the 38 an entry without
    // one has, so an entry without one hashes as it always did.
    #[test]
    fn a_fund_breakdown_is_hashed_after_the_other_fields() {
        let mut transfer = transfer(1, 12_345, false);
        transfer.fund_payments = "310100/M03900/12345".into();
        let entry = Entry::new(
            1,
            Event::Created,
            transfer,
            1_772_000_000_001,
            "msg-1".into(),
            String::new(),
            &GENESIS,
        );
        let mut expected = Sha256::new();
        expected.update(b"yitong.ledger.journal.v1");
        expected.update([0u8; 32]);
        let mut values = entry.values();
        values[1] = Value::Int(1);
        for value in &values[..39] {
            match value {
                Value::Int(number) => expected.update(number.to_be_bytes()),
                Value::Text(text) => {
                    expected.update((text.len() as u64).to_be_bytes());
                    expected.update(text.as_bytes());
                }
            }
        }
        let expected: Hash = expected.finalize().into();
        assert_eq!(entry.hash, to_hex(&expected));
        let mut without = entry.clone();
        without.transfer.fund_payments.clear();
        assert_ne!(without.compute_hash(&GENESIS), expected);
    }

    // Proves an entry hashes to the very value the ledger computed when `event` was stored as a
    // number: the hash below is what it computed, at commit 0f6019d, for this entry (then
    // `event` 2). So a journal written before migration 0009 verifies after it.
    #[test]
    fn an_entry_hashes_as_before_events_were_words() {
        let entry = Entry::new(
            1,
            Event::Posted,
            transfer(1, 12_345, true),
            1_772_000_000_001,
            "msg-1".into(),
            String::new(),
            &GENESIS,
        );
        assert_eq!(entry.event, "posted");
        assert_eq!(
            entry.hash,
            "ff5700ddd7074c5c4ac8affcb3849e629c6afb539691c556f57c151730fbc6d0"
        );
        let numbers: Vec<i64> = Event::ALL.into_iter().map(Event::number).collect();
        assert_eq!(numbers, [1, 2, 3, 4], "the numbers the column held");
        for event in Event::ALL {
            assert_eq!(Event::parse(event.as_str()), Some(event));
        }
    }

    // Proves an entry whose event is no event's word (which the CHECK constraint keeps out, and
    // a tamperer could put in) is found, and named as altered, not refused when read.
    #[test]
    fn an_unknown_event_word_is_found() {
        let mut entries = chain(3);
        entries[1].event = "reposted".into();
        let failure = verify(&entries, 3).unwrap_err();
        assert_eq!(
            (failure.sequence, failure.detail.as_str()),
            (2, "content does not match its hash")
        );
        let previous = from_hex(&entries[0].hash).unwrap();
        entries[1].hash = to_hex(&entries[1].compute_hash(&previous));
        let failure = verify(&entries[..2], 2).unwrap_err();
        assert_eq!(
            (failure.sequence, failure.detail.as_str()),
            (2, "amounts do not match the event")
        );
    }

    // Proves the legs of each event, and that pending then posted books what a transfer
    // created posted books, while pending then voided books nothing.
    #[test]
    fn legs_add_up() {
        let add = |a: Legs, b: Legs| Legs {
            debit_pending_fen: a.debit_pending_fen + b.debit_pending_fen,
            debit_posted_fen: a.debit_posted_fen + b.debit_posted_fen,
            credit_pending_fen: a.credit_pending_fen + b.credit_pending_fen,
            credit_posted_fen: a.credit_posted_fen + b.credit_posted_fen,
        };
        let held = Legs::of(Event::Created, 500, true);
        assert_eq!((held.debit_pending_fen, held.debit_posted_fen), (500, 0));
        assert_eq!(
            add(held, Legs::of(Event::Posted, 500, true)),
            Legs::of(Event::Created, 500, false)
        );
        for release in [Event::Voided, Event::Expired] {
            assert_eq!(add(held, Legs::of(release, 500, true)), Legs::default());
        }
        for event in [Event::Created, Event::Posted, Event::Voided, Event::Expired] {
            assert!(Legs::of(event, 500, true).balanced(), "{event:?}");
        }
    }

    // Proves hex round-trips and refuses what is not 64 lowercase hex digits.
    #[test]
    fn hex_round_trips() {
        let hash: Hash = Sha256::digest(b"x").into();
        assert_eq!(from_hex(&to_hex(&hash)), Some(hash));
        assert_eq!(from_hex(&to_hex(&hash).to_uppercase()), None);
        assert_eq!(from_hex("00"), None);
        assert_eq!(to_hex(&GENESIS), "0".repeat(64));
    }
}
