//! How many PostgreSQL sandboxes a test process runs at once, so the suite runs beside the
//! server's other clients instead of failing halfway with "sorry, too many clients already".
//!
//! A PostgreSQL sandbox holds a known number of connections ([`connections_per_sandbox`]):
//! every store's pool is opened whole when the sandbox starts ([`STORE_CONNECTIONS`] each),
//! plus [`SANDBOX_EXTRA_CONNECTIONS`] for its database's creation and drop, a store a test
//! opens itself and the audit check at shut-down. Before the first PostgreSQL sandbox of the
//! process starts, the server is asked how many connections are free ([`Headroom`]): its
//! `max_connections`, less the slots reserved for superusers, less every client connected now,
//! and, when the sandboxes' role has a `CONNECTION LIMIT`, no more than that limit leaves.
//! The process then runs at most as many PostgreSQL sandboxes at once as that holds (and at
//! most [`POSTGRES_SANDBOXES_MAX`]); a test whose sandbox finds no free slot waits for one. When
//! not even one sandbox fits, the test fails at once and says what it needs ([`Shortage`]).
//!
//! The count is taken once per process: a client that connects later is not seen, and a
//! second test process on the same server (another `cargo test`) measures its own headroom
//! with the first one's sandboxes already counted as clients.

use yitong_core::Network;
use yitong_store::sqlx::{self, AnyConnection};

/// Connections in each store's pool of a PostgreSQL sandbox, all opened when it starts.
pub const STORE_CONNECTIONS: u32 = 3;

/// Connections a sandbox holds beside its stores' pools, at most one of each at a time: the
/// administration connection that creates and drops its database (and a store's set-up
/// connection while the store opens), a store a test opens itself ([`crate::Sandbox::store`]),
/// and the store the audit check opens at shut-down.
pub const SANDBOX_EXTRA_CONNECTIONS: u32 = 3;

/// PostgreSQL sandboxes a process runs at once at most, whatever the headroom: the SQLite
/// variants of the same tests run beside them.
pub const POSTGRES_SANDBOXES_MAX: usize = 4;

/// The stores of a sandbox on `network`: three services per enabled city and the ledger.
pub fn stores_per_sandbox(network: &Network) -> u32 {
    let cities = u32::try_from(network.enabled_pools().count()).expect("a handful of cities");
    cities * 3 + 1
}

/// Every connection one PostgreSQL sandbox on `network` may hold at once.
pub fn connections_per_sandbox(network: &Network) -> u32 {
    stores_per_sandbox(network) * STORE_CONNECTIONS + SANDBOX_EXTRA_CONNECTIONS
}

/// What the server says of its connections, seen by the role the sandboxes connect as.
/// Connections for each store of `network`'s sandbox so that it holds at most `budget`:
/// [`STORE_CONNECTIONS`] when that fits, fewer when not; `None` when not even one each fits.
pub fn store_connections_within(network: &Network, budget: u32) -> Option<u32> {
    let each = budget.saturating_sub(SANDBOX_EXTRA_CONNECTIONS) / stores_per_sandbox(network);
    (each >= 1).then(|| each.min(STORE_CONNECTIONS))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom {
    /// `max_connections`.
    pub max_connections: u32,
    /// `superuser_reserved_connections` plus `reserved_connections` (PostgreSQL 16 on): slots
    /// the sandboxes are not counted on, even when they connect as a superuser.
    pub reserved: u32,
    /// Client connections open now, of every role (the measuring connection included).
    pub in_use: u32,
    /// The role's `CONNECTION LIMIT`, `None` when it has none (or is a superuser, whom
    /// PostgreSQL does not hold to it).
    pub role_limit: Option<u32>,
    /// Client connections of the role open now.
    pub role_in_use: u32,
}

/// Not one sandbox fits: what the failing test says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "PostgreSQL at {url} has {free} connections free for the test sandboxes ({headroom:?}), and \
     one sandbox needs {need} ({stores} stores x {STORE_CONNECTIONS} + \
     {SANDBOX_EXTRA_CONNECTIONS}): close other clients, raise max_connections (or the role's \
     CONNECTION LIMIT), or point DATABASE_URL at another server"
)]
pub struct Shortage {
    pub url: String,
    pub free: u32,
    pub need: u32,
    pub stores: u32,
    pub headroom: Headroom,
}

impl Headroom {
    /// Asks the server through `admin`, a connection of the role the sandboxes use.
    pub async fn measure(admin: &mut AnyConnection) -> Result<Headroom, sqlx::Error> {
        let (max_connections, reserved, in_use, role_limit, role_in_use): (
            i64,
            i64,
            i64,
            i64,
            i64,
        ) = sqlx::query_as(
            "SELECT CAST(current_setting('max_connections') AS BIGINT), \
                CAST(current_setting('superuser_reserved_connections') AS BIGINT) \
                  + COALESCE(CAST(NULLIF(current_setting('reserved_connections', true), '') AS BIGINT), 0), \
                (SELECT COUNT(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), \
                (SELECT CASE WHEN rolsuper THEN -1 ELSE CAST(rolconnlimit AS BIGINT) END \
                   FROM pg_roles WHERE rolname = current_user), \
                (SELECT COUNT(*) FROM pg_stat_activity \
                   WHERE backend_type = 'client backend' AND usename = current_user)",
        )
        .fetch_one(admin)
        .await?;
        let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        Ok(Headroom {
            max_connections: count(max_connections),
            reserved: count(reserved),
            in_use: count(in_use),
            role_limit: (role_limit >= 0).then(|| count(role_limit)),
            role_in_use: count(role_in_use),
        })
    }

    /// Connections a new client of the role may still open.
    pub fn free(&self) -> u32 {
        let server = self
            .max_connections
            .saturating_sub(self.reserved)
            .saturating_sub(self.in_use);
        match self.role_limit {
            Some(limit) => server.min(limit.saturating_sub(self.role_in_use)),
            None => server,
        }
    }

    /// How many sandboxes of `stores` stores may run at once (at least one, at most
    /// [`POSTGRES_SANDBOXES_MAX`]), or why not even one may.
    pub fn sandboxes(&self, stores: u32, url: &str) -> Result<usize, Shortage> {
        let need = stores * STORE_CONNECTIONS + SANDBOX_EXTRA_CONNECTIONS;
        let fit = usize::try_from(self.free() / need).expect("u32 fits in usize");
        if fit == 0 {
            return Err(Shortage {
                url: url.to_owned(),
                free: self.free(),
                need,
                stores,
                headroom: *self,
            });
        }
        Ok(fit.min(POSTGRES_SANDBOXES_MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headroom(in_use: u32, role_limit: Option<u32>, role_in_use: u32) -> Headroom {
        Headroom {
            max_connections: 100,
            reserved: 3,
            in_use,
            role_limit,
            role_in_use,
        }
    }

    // The case of the issue: another client holds 38 of the default 100 connections. 59 are
    // left, one sandbox of 13 stores needs 42: one runs at a time, where two at once failed.
    #[test]
    fn thirty_eight_connections_held_leave_room_for_one_sandbox() {
        let held = headroom(38 + 1, None, 1);
        assert_eq!(held.free(), 58);
        assert_eq!(held.sandboxes(13, "pg"), Ok(1));
        assert_eq!(headroom(1, None, 1).sandboxes(13, "pg"), Ok(2));
        let big = Headroom {
            max_connections: 1_000,
            ..headroom(1, None, 1)
        };
        assert_eq!(big.sandboxes(13, "pg"), Ok(POSTGRES_SANDBOXES_MAX));
    }

    // A role's CONNECTION LIMIT counts as well as the server's, and when not even one sandbox
    // fits the refusal names the numbers.
    // Proves a network of every pool of the seeds (the seven cities' and two second pools: 28
    // stores) narrows its connection pools to the connections it was granted, down to one
    // each, and says when not even that fits.
    #[test]
    fn a_larger_network_narrows_its_pools_to_the_budget() {
        let mut network = Network::load(&crate::seeds_dir().join("network.toml")).unwrap();
        assert_eq!(
            store_connections_within(&network, 42),
            Some(STORE_CONNECTIONS)
        );
        for pool in &mut network.pools {
            pool.enabled = true;
        }
        assert_eq!(stores_per_sandbox(&network), 28);
        assert_eq!(store_connections_within(&network, 87), Some(3));
        assert_eq!(store_connections_within(&network, 86), Some(2));
        assert_eq!(store_connections_within(&network, 59), Some(2));
        assert_eq!(store_connections_within(&network, 58), Some(1));
        assert_eq!(store_connections_within(&network, 31), Some(1));
        assert_eq!(store_connections_within(&network, 30), None);
    }

    #[test]
    fn a_role_limit_counts_and_a_shortage_says_what_is_needed() {
        let limited = headroom(10, Some(50), 9);
        assert_eq!(limited.free(), 41);
        let shortage = limited.sandboxes(13, "postgres://x@h/db").unwrap_err();
        assert_eq!(shortage.need, 42);
        let message = shortage.to_string();
        assert!(message.contains("41 connections free"), "{message}");
        assert!(
            message.contains("needs 42 (13 stores x 3 + 3)"),
            "{message}"
        );
        assert_eq!(
            headroom(97, None, 0).sandboxes(13, "pg").unwrap_err().free,
            0
        );
    }
}
