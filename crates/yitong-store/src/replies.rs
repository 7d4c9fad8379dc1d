//! One effect per message id: the first reply to a state-changing request is kept, so a replay
//! returns it and the same id with other content is refused.
//!
//! Every service's store has a `message_replies` table. A handler, inside the write transaction
//! that makes its change:
//!
//! 1. [`claim`]s the message id first. A fresh id is inserted at once, so a concurrent request
//!    with the same id waits on it (PostgreSQL) or on the write lock (SQLite) and then finds it.
//!    The claim writes the change's audit row beside it ([`crate::audit`]).
//! 2. makes its change;
//! 3. [`record`]s the reply and commits.
//!
//! A refusal rolls the transaction back, claim and audit row included: a refused request leaves
//! no trace, and the same message id may be used again. A change that commits its claim before
//! its reply (a settlement records its intent first, so that a crash can be recovered) is
//! audited from that first commit, whether it then completes or is voided.
//!
//! Whose message ids a table holds is its [`Scope`]. Most stores keep one namespace, the
//! store's: their message ids come from the store's own few callers. The settlement store keeps
//! one per designated institution: an HIS's message id is the national msgid, which the
//! institution makes itself (fixmedins_code, the time and a serial), so two institutions of one
//! city may send the same id, and each has it to itself (settlement migration 0008).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::now_ms;

/// What a message id has done before.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Never seen: the caller goes on and records its reply.
    Fresh,
    /// Seen with the same request: the encoded first reply, to return as it is.
    Replay(Vec<u8>),
}

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// The message id was used before for another request (or another RPC).
    #[error("message id {0} was already used for a different request")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] sqlx::Error),
    #[error("the stored reply to message id {0} is not base64")]
    Corrupt(String),
}

/// SHA-256 (hex) of a request's encoding; two requests are "the same" when their digests match.
pub fn digest(request: &[u8]) -> String {
    hex::encode(Sha256::digest(request))
}

/// Whose message ids a `message_replies` table holds, and so which rows a claim is among.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// One namespace for the whole store: the table is keyed by message id alone.
    Store,
    /// The message ids of one designated institution (its code, the national fixmedins_code):
    /// the table is keyed by (institution_code, message_id), and another institution's use of
    /// the same id is neither seen nor refused.
    Institution(&'a str),
}

/// Claims `message_id` for a request of `rpc` with `digest`, inside the caller's transaction,
/// in a store with one namespace ([`Scope::Store`]).
pub async fn claim(
    connection: &mut AnyConnection,
    message_id: &str,
    rpc: &str,
    digest: &str,
) -> Result<Claim, ReplyError> {
    claim_in(connection, Scope::Store, message_id, rpc, digest).await
}

/// Claims `message_id` among the ids of `scope` for a request of `rpc` with `digest`, inside
/// the caller's transaction.
pub async fn claim_in(
    connection: &mut AnyConnection,
    scope: Scope<'_>,
    message_id: &str,
    rpc: &str,
    digest: &str,
) -> Result<Claim, ReplyError> {
    let inserted = match scope {
        Scope::Store => sqlx::query(
            "INSERT INTO message_replies (message_id, rpc, request_digest, reply, created_at_ms) \
                 VALUES ($1, $2, $3, '', $4) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(message_id)
        .bind(rpc)
        .bind(digest)
        .bind(now_ms())
        .execute(&mut *connection)
        .await?,
        Scope::Institution(institution) => {
            sqlx::query(
                "INSERT INTO message_replies \
                 (institution_code, message_id, rpc, request_digest, reply, created_at_ms) \
                 VALUES ($1, $2, $3, $4, '', $5) \
                 ON CONFLICT (institution_code, message_id) DO NOTHING",
            )
            .bind(institution)
            .bind(message_id)
            .bind(rpc)
            .bind(digest)
            .bind(now_ms())
            .execute(&mut *connection)
            .await?
        }
    }
    .rows_affected();
    if inserted == 1 {
        crate::audit::record(connection, rpc, message_id).await?;
        return Ok(Claim::Fresh);
    }
    match peek_in(connection, scope, message_id, rpc, digest).await? {
        Some(reply) => Ok(Claim::Replay(reply)),
        // The conflicting row is this transaction's to see: it cannot have gone.
        None => Err(ReplyError::Corrupt(message_id.to_owned())),
    }
}

/// What a message id has done before, read without claiming it: `None` when never seen. For
/// requests that call other nodes before they open their write transaction, so that a replay
/// is answered as it was (and other content under the id refused) without a write; the
/// request still [`claim`]s the id in its transaction, where a concurrent use is settled.
pub async fn peek(
    connection: &mut AnyConnection,
    message_id: &str,
    rpc: &str,
    digest: &str,
) -> Result<Option<Vec<u8>>, ReplyError> {
    peek_in(connection, Scope::Store, message_id, rpc, digest).await
}

/// [`peek`] among the ids of `scope`: another scope's use of the id is `None`, as for an id
/// never used.
pub async fn peek_in(
    connection: &mut AnyConnection,
    scope: Scope<'_>,
    message_id: &str,
    rpc: &str,
    digest: &str,
) -> Result<Option<Vec<u8>>, ReplyError> {
    let first: Option<(String, String, String)> = match scope {
        Scope::Store => {
            sqlx::query_as(
                "SELECT rpc, request_digest, reply FROM message_replies WHERE message_id = $1",
            )
            .bind(message_id)
            .fetch_optional(&mut *connection)
            .await?
        }
        Scope::Institution(institution) => {
            sqlx::query_as(
                "SELECT rpc, request_digest, reply FROM message_replies \
                 WHERE institution_code = $1 AND message_id = $2",
            )
            .bind(institution)
            .bind(message_id)
            .fetch_optional(&mut *connection)
            .await?
        }
    };
    let Some((first_rpc, first_digest, reply)) = first else {
        return Ok(None);
    };
    if first_rpc != rpc || first_digest != digest {
        return Err(ReplyError::Conflict(message_id.to_owned()));
    }
    BASE64
        .decode(reply)
        .map(Some)
        .map_err(|_| ReplyError::Corrupt(message_id.to_owned()))
}

/// Records the reply to a claimed message id, in the same transaction as the change it made (a
/// settlement's reply is brought up to date once more when it completes), in a store with one
/// namespace ([`Scope::Store`]).
pub async fn record(
    connection: &mut AnyConnection,
    message_id: &str,
    reply: &[u8],
) -> Result<(), sqlx::Error> {
    record_in(connection, Scope::Store, message_id, reply).await
}

/// [`record`] for a message id claimed among the ids of `scope`.
pub async fn record_in(
    connection: &mut AnyConnection,
    scope: Scope<'_>,
    message_id: &str,
    reply: &[u8],
) -> Result<(), sqlx::Error> {
    let reply = BASE64.encode(reply);
    let updated = match scope {
        Scope::Store => {
            sqlx::query("UPDATE message_replies SET reply = $2 WHERE message_id = $1")
                .bind(message_id)
                .bind(reply)
                .execute(&mut *connection)
                .await?
        }
        Scope::Institution(institution) => {
            sqlx::query(
                "UPDATE message_replies SET reply = $3 \
                 WHERE institution_code = $1 AND message_id = $2",
            )
            .bind(institution)
            .bind(message_id)
            .bind(reply)
            .execute(&mut *connection)
            .await?
        }
    }
    .rows_affected();
    assert_eq!(
        updated, 1,
        "a reply is recorded only for a message id claimed in this transaction"
    );
    Ok(())
}
