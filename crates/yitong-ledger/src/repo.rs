//! The ledger store's queries. Portable SQL; see `migrations/ledger/`.
//!
//! Lists of ids become `IN ($1, $2, ...)` with one placeholder per id; every caller bounds its
//! lists (at most [`crate::transfer::TRANSFERS_PER_BATCH_MAX`] ids), well inside both engines'
//! limits on bound values.

use std::collections::{BTreeMap, HashMap, HashSet};

use yitong_store::multi_row_insert;
use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe, Row, any::AnyRow};

use crate::LedgerError;
use crate::account::AccountId;
use crate::balance::Balance;
use crate::journal::{
    COLUMN_COUNT, COLUMNS, Entry, Event, Head, Legs, TransferColumns, Value, from_hex,
};

/// Rows per INSERT: 40 values each, so 100 rows bind 4,000 values, far below SQLite's and
/// PostgreSQL's limits.
const ENTRIES_PER_INSERT_MAX: usize = 100;

/// Joins each journal creation `c` to its resolution `r` (the post, void or expiry of a pending
/// transfer), if any. A join, not an EXISTS: PostgreSQL planned the EXISTS as a hash of every
/// resolution in the journal, built again for every query.
pub(crate) const RESOLUTION_JOIN: &str =
    "LEFT JOIN journal r ON r.transfer_id = c.transfer_id AND r.stage = 1";

/// The condition that creation `c`, joined to `r` by [`RESOLUTION_JOIN`], is posted: created
/// posted, or posted from pending (by the journal entry `snapshot`, a placeholder, when given).
/// The event is the enum's word, written into the SQL: a fragment has no placeholder of its own.
pub(crate) fn posted(snapshot: Option<&str>) -> String {
    let posted = Event::Posted.as_str();
    match snapshot {
        Some(snapshot) => {
            format!("(c.expires_at_ms = 0 OR (r.event = '{posted}' AND r.sequence <= {snapshot}))")
        }
        None => format!("(c.expires_at_ms = 0 OR r.event = '{posted}')"),
    }
}

/// The SQL list of the events that release a pending transfer without posting it, the enum's
/// words written into the SQL: `('voided', 'expired')`.
pub(crate) fn released() -> String {
    format!(
        "('{}', '{}')",
        Event::Voided.as_str(),
        Event::Expired.as_str()
    )
}

/// "$first, $first+1, ..." for `count` values.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|index| format!("${index}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens every account of `accounts` that is not open yet; opening twice changes nothing.
pub(crate) async fn open_accounts(
    conn: &mut AnyConnection,
    accounts: &[AccountId],
    now_ms: i64,
) -> Result<u64, LedgerError> {
    let mut opened = 0;
    for account in accounts {
        opened += sqlx::query(
            "INSERT INTO accounts (id, kind, city, counterparty_city, opened_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(account.to_string())
        .bind(account.kind().word())
        .bind(account.city().to_string())
        .bind(
            account
                .counterparty()
                .map(|city| city.to_string())
                .unwrap_or_default(),
        )
        .bind(now_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(opened)
}

/// Which of `ids` are open accounts.
pub(crate) async fn open_account_ids(
    conn: &mut AnyConnection,
    ids: &[String],
) -> Result<Vec<String>, LedgerError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id FROM accounts WHERE id IN ({})",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query_scalar(AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id.as_str());
    }
    Ok(query.fetch_all(&mut *conn).await?)
}

/// Every account a city owns, or owes on as the insured city of an obligation, by id.
pub(crate) async fn accounts_of_city(
    conn: &mut AnyConnection,
    city: &str,
) -> Result<Vec<String>, LedgerError> {
    Ok(
        sqlx::query_scalar("SELECT id FROM accounts WHERE city = $1 ORDER BY id")
            .bind(city)
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// Adds what `entries` move to their accounts' stored sums: the debit legs to the account each
/// debits, the credit legs to the account each credits. Inside the write transaction that
/// inserts them, so the sums are always those of the journal up to its head.
pub(crate) async fn add_to_balances(
    conn: &mut AnyConnection,
    entries: &[Entry],
) -> Result<(), LedgerError> {
    let mut moved: BTreeMap<&str, Balance> = BTreeMap::new();
    for entry in entries {
        let debited = moved
            .entry(entry.transfer.debit_account_id.as_str())
            .or_default();
        debited.debits_pending_fen += entry.legs.debit_pending_fen;
        debited.debits_posted_fen += entry.legs.debit_posted_fen;
        let credited = moved
            .entry(entry.transfer.credit_account_id.as_str())
            .or_default();
        credited.credits_pending_fen += entry.legs.credit_pending_fen;
        credited.credits_posted_fen += entry.legs.credit_posted_fen;
    }
    for (account, change) in moved {
        let updated = sqlx::query(
            "UPDATE accounts SET debits_pending_fen = debits_pending_fen + $1, \
             debits_posted_fen = debits_posted_fen + $2, \
             credits_pending_fen = credits_pending_fen + $3, \
             credits_posted_fen = credits_posted_fen + $4 WHERE id = $5",
        )
        .bind(change.debits_pending_fen)
        .bind(change.debits_posted_fen)
        .bind(change.credits_pending_fen)
        .bind(change.credits_posted_fen)
        .bind(account)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        assert_eq!(updated, 1, "entries move open accounts only: {account}");
    }
    Ok(())
}

/// The stored sums of `accounts` (every open one when empty), with the sequence number of the
/// journal entry they stand at, read together in one statement. An account never moved has
/// zero sums; one not open is absent.
pub(crate) async fn balances(
    conn: &mut AnyConnection,
    accounts: &[String],
) -> Result<(HashMap<String, Balance>, i64), LedgerError> {
    let mut sql = "SELECT h.sequence, a.id, a.debits_pending_fen, a.debits_posted_fen, \
         a.credits_pending_fen, a.credits_posted_fen \
         FROM journal_head h LEFT JOIN accounts a ON 1 = 1"
        .to_owned();
    if !accounts.is_empty() {
        sql.push_str(&format!(
            " AND a.id IN ({})",
            placeholders(1, accounts.len())
        ));
    }
    sql.push_str(" WHERE h.id = 1");
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for account in accounts {
        query = query.bind(account.as_str());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    let mut head_sequence = 0;
    let mut balances = HashMap::with_capacity(rows.len());
    for row in rows {
        head_sequence = row.try_get(0)?;
        let Some(id) = row.try_get::<Option<String>, _>(1)? else {
            continue;
        };
        balances.insert(
            id,
            Balance {
                debits_pending_fen: row.try_get(2)?,
                debits_posted_fen: row.try_get(3)?,
                credits_pending_fen: row.try_get(4)?,
                credits_posted_fen: row.try_get(5)?,
            },
        );
    }
    Ok((balances, head_sequence))
}

fn head_from_row(row: &AnyRow) -> Result<Head, LedgerError> {
    let hash: String = row.try_get(1)?;
    Ok(Head {
        sequence: row.try_get(0)?,
        hash: from_hex(&hash)
            .ok_or_else(|| LedgerError::Corrupt("the journal head's hash is not hex".into()))?,
        recorded_at_ms: row.try_get(2)?,
        expired_through_ms: row.try_get(3)?,
    })
}

/// Takes the head row's lock for the rest of the write transaction and returns the head. On
/// PostgreSQL a second appender waits here until the first commits, then reads the head the
/// first left; on SQLite `BEGIN IMMEDIATE` has already queued it.
pub(crate) async fn lock_head(conn: &mut AnyConnection) -> Result<Head, LedgerError> {
    let row = sqlx::query(
        "UPDATE journal_head SET sequence = sequence WHERE id = 1 \
         RETURNING sequence, hash, recorded_at_ms, expired_through_ms",
    )
    .fetch_one(&mut *conn)
    .await?;
    head_from_row(&row)
}

/// The head as last committed, for readers.
pub(crate) async fn read_head(conn: &mut AnyConnection) -> Result<Head, LedgerError> {
    let row = sqlx::query(
        "SELECT sequence, hash, recorded_at_ms, expired_through_ms FROM journal_head WHERE id = 1",
    )
    .fetch_one(&mut *conn)
    .await?;
    head_from_row(&row)
}

/// Moves the head from `locked` (read by [`lock_head`] in this transaction) to `head`.
pub(crate) async fn write_head(
    conn: &mut AnyConnection,
    locked: &Head,
    head: &Head,
) -> Result<(), LedgerError> {
    let updated = sqlx::query(
        "UPDATE journal_head SET sequence = $1, hash = $2, recorded_at_ms = $3, \
         expired_through_ms = $4 WHERE id = 1 AND sequence = $5",
    )
    .bind(head.sequence)
    .bind(crate::journal::to_hex(&head.hash))
    .bind(head.recorded_at_ms)
    .bind(head.expired_through_ms)
    .bind(locked.sequence)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    assert_eq!(
        updated, 1,
        "the journal head moved while this transaction held its lock"
    );
    Ok(())
}

/// Appends entries, in chunks.
pub(crate) async fn insert_entries(
    conn: &mut AnyConnection,
    entries: &[Entry],
) -> Result<(), LedgerError> {
    for chunk in entries.chunks(ENTRIES_PER_INSERT_MAX) {
        let sql = multi_row_insert(&format!("journal ({COLUMNS})"), COLUMN_COUNT, chunk.len());
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for entry in chunk {
            for value in entry.values() {
                query = match value {
                    Value::Int(number) => query.bind(number),
                    Value::Text(text) => query.bind(text.to_owned()),
                };
            }
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Reads an entry from a row of `SELECT {COLUMNS}`.
fn entry_from_row(row: &AnyRow) -> Result<Entry, sqlx::Error> {
    let int = |index: usize| row.try_get::<i64, _>(index);
    let text = |index: usize| row.try_get::<String, _>(index);
    Ok(Entry {
        sequence: int(0)?,
        event: text(1)?,
        stage: int(2)?,
        transfer: TransferColumns {
            transfer_id: text(3)?,
            debit_account_id: text(4)?,
            credit_account_id: text(5)?,
            amount_fen: int(6)?,
            code: int(7)?,
            flags: int(8)?,
            pending_timeout_seconds: int(9)?,
            operator_id: text(10)?,
            settlement_id: text(11)?,
            settlement_message_id: text(12)?,
            treatment_city: text(13)?,
            insured_city: text(14)?,
            institution_code: text(15)?,
            visit_id: text(16)?,
            person_no: text(17)?,
            insurance_type: int(18)?,
            clearing_type: int(19)?,
            settlement_date: text(20)?,
            total_amount_fen: int(21)?,
            fund_pay_fen: int(22)?,
            account_pay_fen: int(23)?,
            cash_pay_fen: int(24)?,
            cancellation: int(25)?,
            original_settlement_id: text(26)?,
            business_date: text(27)?,
            clearing_period: text(28)?,
            created_at_ms: int(29)?,
            expires_at_ms: int(30)?,
            fund_payments: text(38)?,
        },
        recorded_at_ms: int(31)?,
        message_id: text(32)?,
        reason: text(33)?,
        legs: Legs {
            debit_pending_fen: int(34)?,
            debit_posted_fen: int(35)?,
            credit_pending_fen: int(36)?,
            credit_posted_fen: int(37)?,
        },
        previous_hash: text(39)?,
        hash: text(40)?,
    })
}

async fn fetch_entries(
    conn: &mut AnyConnection,
    sql: String,
    binds: &[&str],
) -> Result<Vec<Entry>, LedgerError> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for bind in binds {
        query = query.bind(bind.to_string());
    }
    let rows = query.fetch_all(&mut *conn).await?;
    Ok(rows
        .iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Every entry of the transfers `ids`, in journal order.
pub(crate) async fn entries_of_transfers(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<Vec<Entry>, LedgerError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM journal WHERE transfer_id IN ({}) ORDER BY sequence",
        placeholders(1, ids.len())
    );
    fetch_entries(conn, sql, ids).await
}

/// Which of `ids` were voided before they were booked.
pub(crate) async fn voided_before_booked(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<HashSet<String>, LedgerError> {
    if ids.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "SELECT transfer_id FROM voided_before_booked WHERE transfer_id IN ({})",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
    for id in ids {
        query = query.bind(id.to_string());
    }
    Ok(query.fetch_all(&mut *conn).await?.into_iter().collect())
}

/// Remembers a void of a transfer id never booked (the first void's message id and reason).
pub(crate) async fn remember_void_before_booked(
    conn: &mut AnyConnection,
    transfer_id: &str,
    message_id: &str,
    reason: &str,
    at_ms: i64,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO voided_before_booked (transfer_id, message_id, reason, voided_at_ms) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (transfer_id) DO NOTHING",
    )
    .bind(transfer_id)
    .bind(message_id)
    .bind(reason)
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Every entry of the transfers booked for a settlement id, as the settlement or as the
/// cancellation of it (or as the cancellation whose own id it is), in journal order.
pub(crate) async fn entries_of_settlement(
    conn: &mut AnyConnection,
    settlement_id: &str,
) -> Result<Vec<Entry>, LedgerError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM journal WHERE transfer_id IN \
         (SELECT transfer_id FROM journal WHERE stage = 0 \
          AND (settlement_id = $1 OR original_settlement_id = $1)) \
         ORDER BY sequence"
    );
    fetch_entries(conn, sql, &[settlement_id]).await
}

/// A live (pending or posted) booking of a settlement: (code, settlement id, original
/// settlement id, transfer id).
pub(crate) type Booking = (i64, String, String, String);

/// The live SETTLEMENT transfers of `settlement_ids` and live CANCELLATION transfers of
/// `original_ids`: created, and neither voided nor expired.
pub(crate) async fn live_bookings(
    conn: &mut AnyConnection,
    settlement_ids: &[&str],
    original_ids: &[&str],
) -> Result<Vec<Booking>, LedgerError> {
    if settlement_ids.is_empty() && original_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Only the lists given become conditions: an empty IN list is not portable SQL, and a
    // stand-in such as IN ('') would match every row that is not a cancellation (their
    // original settlement id is ''), a scan of the journal growing with it.
    let mut branches = Vec::new();
    if !settlement_ids.is_empty() {
        branches.push(format!(
            "(c.code = 3 AND c.settlement_id IN ({}))",
            placeholders(1, settlement_ids.len())
        ));
    }
    if !original_ids.is_empty() {
        branches.push(format!(
            "(c.code = 4 AND c.original_settlement_id IN ({}))",
            placeholders(1 + settlement_ids.len(), original_ids.len())
        ));
    }
    let sql = format!(
        "SELECT c.code, c.settlement_id, c.original_settlement_id, c.transfer_id FROM journal c \
         WHERE c.stage = 0 AND ({}) \
         AND NOT EXISTS (SELECT 1 FROM journal r WHERE r.transfer_id = c.transfer_id \
                         AND r.stage = 1 AND r.event IN {})",
        branches.join(" OR "),
        released(),
    );
    let mut query = sqlx::query_as(AssertSqlSafe(sql));
    for id in settlement_ids.iter().chain(original_ids) {
        query = query.bind(id.to_string());
    }
    Ok(query.fetch_all(&mut *conn).await?)
}

/// Creations of pending transfers expiring in (`after_ms`, `through_ms`] that have not been
/// resolved, soonest first, at most `limit`.
pub(crate) async fn due_expiries(
    conn: &mut AnyConnection,
    after_ms: i64,
    through_ms: i64,
    limit: i64,
) -> Result<Vec<Entry>, LedgerError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM journal c WHERE c.stage = 0 \
         AND c.expires_at_ms > $1 AND c.expires_at_ms <= $2 \
         AND NOT EXISTS (SELECT 1 FROM journal r WHERE r.transfer_id = c.transfer_id AND r.stage = 1) \
         ORDER BY c.expires_at_ms, c.sequence LIMIT $3"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(after_ms)
        .bind(through_ms)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}

/// Whether any pending transfer expires in (the head's sweep mark, `through_ms`]: a cheap read
/// that spares the expiry sweeper a write transaction when there is nothing to do.
pub(crate) async fn expiry_due(
    conn: &mut AnyConnection,
    through_ms: i64,
) -> Result<bool, LedgerError> {
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT c.sequence FROM journal c, journal_head h WHERE h.id = 1 AND c.stage = 0 \
         AND c.expires_at_ms > h.expired_through_ms AND c.expires_at_ms <= $1 LIMIT 1",
    )
    .bind(through_ms)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(due.is_some())
}

/// Entries after `after` up to `up_to`, in sequence order, at most `limit`.
pub(crate) async fn entries_after(
    conn: &mut AnyConnection,
    after: i64,
    up_to: i64,
    limit: i64,
) -> Result<Vec<Entry>, LedgerError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM journal WHERE sequence > $1 AND sequence <= $2 \
         ORDER BY sequence LIMIT $3"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(after)
        .bind(up_to)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>, _>>()?)
}
