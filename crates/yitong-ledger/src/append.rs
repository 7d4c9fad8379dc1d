//! Appending to the journal inside one write transaction: the head locked first, due expiries
//! booked, new entries chained to the head, and the head moved on at the end.
//!
//! Appends are serialised by the head row: [`Appender::open`] updates it as its first statement
//! of the transaction, so every other appender (another request, another ledger process, the
//! expiry sweeper) waits for this transaction to end and then chains after what it left. No
//! advisory lock and no notification is involved; the row lock is all PostgreSQL-compatible
//! distributed engines need to offer.
//!
//! Transfers are booked in groups (`crate::group`): one appender, one lock and one commit for
//! every CreateTransfers, PostPendingTransfers and VoidPendingTransfers request queued at the time.

use yitong_store::sqlx::AnyConnection;

use crate::LedgerError;
use crate::journal::{Entry, Event, Head, TransferColumns, from_hex};
use crate::repo;

/// Most expiries booked by one write transaction; the sweeper comes back for the rest.
pub const EXPIRIES_PER_SWEEP_MAX: i64 = 1_000;

/// An append in progress.
pub struct Appender<'c> {
    conn: &'c mut AnyConnection,
    /// The head as locked, before this transaction's entries.
    locked: Head,
    /// The head after the entries appended so far.
    head: Head,
    /// The instant of every entry of this transaction: the clock, but never before the latest
    /// entry or sweep, so instants never go backwards along the chain even when the ledger's
    /// processes disagree about the time.
    now_ms: i64,
    /// Entries not inserted yet.
    unwritten: Vec<Entry>,
    /// Expiries booked by this transaction.
    pub expired: u64,
}

impl<'c> Appender<'c> {
    /// Locks the head and books the expiry of every pending transfer whose timeout has passed,
    /// so that what follows sees them expired.
    pub async fn open(conn: &'c mut AnyConnection) -> Result<Appender<'c>, LedgerError> {
        let locked = repo::lock_head(conn).await?;
        let now_ms = yitong_store::now_ms()
            .max(locked.recorded_at_ms)
            .max(locked.expired_through_ms);
        let mut appender = Appender {
            conn,
            locked,
            head: locked,
            now_ms,
            unwritten: Vec::new(),
            expired: 0,
        };
        appender.expire_due().await?;
        Ok(appender)
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// The sequence number the next entry will take.
    pub fn next_sequence(&self) -> i64 {
        self.head.sequence + 1
    }

    pub fn conn(&mut self) -> &mut AnyConnection {
        self.conn
    }

    /// Books one event of a transfer and returns its sequence number. The entry is inserted by
    /// the next [`Appender::flush`] or [`Appender::close`].
    pub fn append(
        &mut self,
        event: Event,
        transfer: TransferColumns,
        message_id: &str,
        reason: &str,
    ) -> i64 {
        let entry = Entry::new(
            self.head.sequence + 1,
            event,
            transfer,
            self.now_ms,
            message_id.to_owned(),
            reason.to_owned(),
            &self.head.hash,
        );
        self.head.sequence = entry.sequence;
        self.head.hash = from_hex(&entry.hash).expect("a fresh hash is hex");
        self.head.recorded_at_ms = entry.recorded_at_ms;
        self.unwritten.push(entry);
        self.head.sequence
    }

    /// Inserts the entries booked so far, so that the queries that follow see them.
    pub async fn flush(&mut self) -> Result<(), LedgerError> {
        insert(self.conn, &self.unwritten).await?;
        self.unwritten.clear();
        Ok(())
    }

    /// Inserts what is left and moves the head; the caller commits.
    pub async fn close(mut self) -> Result<Head, LedgerError> {
        self.flush().await?;
        if self.head != self.locked {
            repo::write_head(self.conn, &self.locked, &self.head).await?;
        }
        Ok(self.head)
    }

    /// Books an expiry for every pending transfer whose timeout passed since the last sweep, at
    /// most [`EXPIRIES_PER_SWEEP_MAX`] of them.
    async fn expire_due(&mut self) -> Result<(), LedgerError> {
        let due = repo::due_expiries(
            self.conn,
            self.head.expired_through_ms,
            self.now_ms,
            EXPIRIES_PER_SWEEP_MAX,
        )
        .await?;
        let full = i64::try_from(due.len()).unwrap_or(i64::MAX) >= EXPIRIES_PER_SWEEP_MAX;
        // When the sweep stopped at its limit, transfers expiring at the same instant as the
        // last one booked may be left: the next sweep starts just before it.
        let swept_through = match due.last() {
            Some(last) if full => last.transfer.expires_at_ms - 1,
            _ => self.now_ms,
        };
        for creation in due {
            self.append(Event::Expired, creation.transfer, "", "");
            self.expired += 1;
        }
        self.head.expired_through_ms = self.head.expired_through_ms.max(swept_through);
        self.flush().await
    }

    /// Books the expiry of one pending transfer whose timeout has passed but that a sweep left
    /// (it stopped at its limit).
    pub fn expire(&mut self, transfer: TransferColumns) -> i64 {
        self.expired += 1;
        self.append(Event::Expired, transfer, "", "")
    }
}

/// Inserts entries already chained to the head, adding their legs to their accounts' stored
/// sums and counting the clearing details they make ([`crate::tally`]). The appender's only way into the journal table; public for bulk loaders
/// (the bureau benchmark), which build their entries with [`Entry::new`] and move the head
/// themselves.
pub async fn insert(conn: &mut AnyConnection, entries: &[Entry]) -> Result<(), LedgerError> {
    crate::tally::count_new_details(conn, entries).await?;
    repo::add_to_balances(conn, entries).await?;
    repo::insert_entries(conn, entries).await
}
