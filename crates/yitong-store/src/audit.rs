//! The audit trail: who changed what, when, under which message id.
//!
//! A row is written in the same transaction as the change it records, so both commit or
//! neither does: a refused request leaves no row, a replay (which changes nothing) adds none.
//! [`crate::replies::claim`] writes it for every message id it claims fresh; the few changes
//! keyed otherwise (the benefit service's reservations, detail reconciliation runs) call
//! [`record`] themselves.
//! Who the caller is comes from the request's task ([`Caller::current`]); a change outside
//! any request (a service's own sweep) is recorded as `system`.

use sqlx::{AnyConnection, Row};
use yitong_rpc::Caller;

use crate::now_ms;

/// The actor of changes made outside any request.
pub const SYSTEM: &str = "system";

/// One row of the trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub audit_id: String,
    pub recorded_at_ms: i64,
    pub actor: String,
    pub actor_city: String,
    pub rpc: String,
    pub message_id: String,
}

fn actor() -> (String, String) {
    match Caller::current() {
        Some(caller) => (
            caller.to_string(),
            caller
                .city()
                .map(|city| city.to_string())
                .unwrap_or_default(),
        ),
        None => (SYSTEM.to_owned(), String::new()),
    }
}

/// Records a change by the current caller, inside the change's transaction.
pub async fn record(
    connection: &mut AnyConnection,
    rpc: &str,
    message_id: &str,
) -> Result<(), sqlx::Error> {
    let (actor, actor_city) = actor();
    sqlx::query(
        "INSERT INTO audit_trail (audit_id, recorded_at_ms, actor, actor_city, rpc, message_id) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(now_ms())
    .bind(actor)
    .bind(actor_city)
    .bind(rpc)
    .bind(message_id)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Rows a page of the trail holds at most.
pub const PAGE_ROWS_MAX: u32 = 1_000;

/// The trail in recording order after `after` (an audit id; empty for the start), at most
/// `limit` rows, only rows of `actor_city` when given.
pub async fn list(
    connection: &mut AnyConnection,
    actor_city: Option<&str>,
    after: &str,
    limit: u32,
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT audit_id, recorded_at_ms, actor, actor_city, rpc, message_id FROM audit_trail \
         WHERE audit_id > $1 AND ($2 = '*' OR actor_city = $2) ORDER BY audit_id LIMIT $3",
    )
    .bind(after)
    .bind(actor_city.unwrap_or("*"))
    .bind(i64::from(limit.min(PAGE_ROWS_MAX)))
    .fetch_all(&mut *connection)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditEntry {
                audit_id: row.try_get(0)?,
                recorded_at_ms: row.try_get(1)?,
                actor: row.try_get(2)?,
                actor_city: row.try_get(3)?,
                rpc: row.try_get(4)?,
                message_id: row.try_get(5)?,
            })
        })
        .collect()
}
