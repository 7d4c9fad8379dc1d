//! Storage for every Yitong service: one code path over PostgreSQL and SQLite.
//!
//! Each running service of each owner (a city, or the clearing house) has a [`Store`] of its
//! own: on PostgreSQL a schema named `<service>_<owner>` ("identity_370100"), on SQLite a file
//! `<dir>/<owner>/<service>.db`. Services write SQL with `$1` placeholders, integer fen, TEXT
//! dates and BIGINT millisecond timestamps, which both databases run unchanged; the few
//! differences (how a writing transaction begins, how a pool is prepared, which file of a
//! migration written per database runs) stay in this crate.
//!
//! Architecture invariant: no service reads or writes another service's store; they talk gRPC.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, AssertSqlSafe, Connection, Executor, Transaction};
use yitong_core::{Owner, Service};

pub mod audit;
pub mod replies;

pub use sqlx;

/// The migrations of one service. Almost all are portable SQL, run unchanged on both databases
/// (`migrations/<service>/`); the few statements the two cannot share (triggers) are one file
/// per database under the same version and description (`migrations/<service>/postgres/`,
/// `migrations/<service>/sqlite/`), and a store runs its own database's file in that place.
struct Migrations {
    portable: Migrator,
    postgres: Migrator,
    sqlite: Migrator,
}

static IDENTITY: Migrations = Migrations {
    portable: sqlx::migrate!("../../migrations/identity"),
    postgres: sqlx::migrate!("../../migrations/identity/postgres"),
    sqlite: sqlx::migrate!("../../migrations/identity/sqlite"),
};
static CATALOG: Migrations = Migrations {
    portable: sqlx::migrate!("../../migrations/catalog"),
    postgres: sqlx::migrate!("../../migrations/catalog/postgres"),
    sqlite: sqlx::migrate!("../../migrations/catalog/sqlite"),
};
static SETTLEMENT: Migrations = Migrations {
    portable: sqlx::migrate!("../../migrations/settlement"),
    postgres: sqlx::migrate!("../../migrations/settlement/postgres"),
    sqlite: sqlx::migrate!("../../migrations/settlement/sqlite"),
};
static LEDGER: Migrations = Migrations {
    portable: sqlx::migrate!("../../migrations/ledger"),
    postgres: sqlx::migrate!("../../migrations/ledger/postgres"),
    sqlite: sqlx::migrate!("../../migrations/ledger/sqlite"),
};

impl Migrations {
    fn of(service: Service) -> &'static Migrations {
        match service {
            Service::Identity => &IDENTITY,
            Service::Catalog => &CATALOG,
            Service::Settlement => &SETTLEMENT,
            Service::Ledger => &LEDGER,
        }
    }

    /// The portable migrations and `backend`'s own, in version order.
    fn for_backend(&self, backend: Backend) -> Migrator {
        let own = match backend {
            Backend::Postgres => &self.postgres,
            Backend::Sqlite => &self.sqlite,
        };
        let migrator =
            Migrator::with_migrations(self.portable.iter().chain(own.iter()).cloned().collect());
        assert!(
            migrator
                .migrations
                .windows(2)
                .all(|pair| pair[0].version < pair[1].version),
            "a migration version is taken twice"
        );
        migrator
    }
}

/// Where the databases live.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// Embedded SQLite, one file per service and owner below this directory.
    Sqlite { dir: PathBuf },
    /// A PostgreSQL database (`postgres://...`), one schema per service and owner. The URL
    /// may hold a password: `Debug` masks it ([`redact_url`]).
    Postgres { url: String },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite { dir } => f.debug_struct("Sqlite").field("dir", dir).finish(),
            Location::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &redact_url(url))
                .finish(),
        }
    }
}

/// A database URL fit to print: its password, if it has one, replaced by `***`. Text that
/// does not parse as a URL is replaced whole, since where its password is cannot be told.
pub fn redact_url(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only URLs that cannot have one ("mailto:") refuse a password.
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(a URL that does not parse)".to_owned(),
    }
}

impl Location {
    /// A `postgres://` or `postgresql://` URL means PostgreSQL; anything else is a directory
    /// for SQLite files.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres {
                url: text.to_owned(),
            }
        } else {
            Location::Sqlite {
                dir: PathBuf::from(text.strip_prefix("sqlite://").unwrap_or(text)),
            }
        }
    }
}

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Limits of a store's connection pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub connections_max: u32,
    /// Connections opened when the store opens and kept open (at most `connections_max`): the
    /// test sandbox opens all of them up front on PostgreSQL, so a server short of
    /// connections fails a sandbox at its start, never in the middle of a test. Zero opens
    /// them as they are needed.
    pub connections_min: u32,
    pub acquire_timeout_ms: u64,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            connections_max: 8,
            connections_min: 0,
            acquire_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the {store} store")]
    Open { store: String, source: sqlx::Error },
    #[error("cannot create the directory for the {store} store")]
    Directory {
        store: String,
        source: std::io::Error,
    },
    #[error("cannot migrate the {store} store")]
    Migrate {
        store: String,
        source: sqlx::migrate::MigrateError,
    },
}

/// The database of one service of one owner.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// "identity_370100": the PostgreSQL schema, and the name used in logs.
    name: String,
    service: Service,
}

/// How long SQLite waits for a writer lock before it reports the database busy.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

impl Store {
    /// Opens (creating when missing) the store of `service` run by `owner`. Does not migrate.
    pub async fn open(
        location: &Location,
        service: Service,
        owner: Owner,
        limits: PoolLimits,
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let name = format!("{service}_{owner}");
        let open_error = |source| StoreError::Open {
            store: name.clone(),
            source,
        };
        let pool_options = AnyPoolOptions::new()
            .max_connections(limits.connections_max)
            .min_connections(limits.connections_min.min(limits.connections_max))
            .acquire_timeout(Duration::from_millis(limits.acquire_timeout_ms))
            // No idle timeout and no lifetime: sqlx 0.9.0's maintenance task, which they start,
            // loops `0..num_idle()` without yielding, and `num_idle` (an atomic that `release`
            // raises after pushing the connection, which another task may already have popped
            // and counted down) can read as usize::MAX under churn: the loop then holds its
            // tokio worker for good. Seen as a test runtime that never shut down, its worker
            // spinning in `spawn_maintenance_tasks` (sqlx issue #3645, fixed upstream by PR
            // #4289, not in 0.9.0). A store's pool is small and bounded; a connection the server
            // closed is found by the test before each acquire.
            .idle_timeout(None)
            .max_lifetime(None);
        let (pool, backend) = match location {
            Location::Sqlite { dir } => {
                let owner_dir = dir.join(owner.to_string());
                std::fs::create_dir_all(&owner_dir).map_err(|source| StoreError::Directory {
                    store: name.clone(),
                    source,
                })?;
                let file = owner_dir.join(format!("{service}.db"));
                let options =
                    AnyConnectOptions::from_str(&format!("sqlite://{}?mode=rwc", file.display()))
                        .map_err(open_error)?;
                let pool = pool_options
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            // WAL lets readers run beside the one writer; synchronous=FULL keeps
                            // every committed settlement across a power cut.
                            connection.execute("PRAGMA journal_mode = WAL").await?;
                            connection.execute("PRAGMA synchronous = FULL").await?;
                            sqlx::raw_sql(AssertSqlSafe(format!(
                                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
                            )))
                            .execute(&mut *connection)
                            .await?;
                            connection.execute("PRAGMA foreign_keys = ON").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(open_error)?;
                (pool, Backend::Sqlite)
            }
            Location::Postgres { url } => {
                let options = AnyConnectOptions::from_str(url).map_err(open_error)?;
                // The schema must exist before a connection can make it its search path.
                let mut setup = sqlx::AnyConnection::connect_with(&options)
                    .await
                    .map_err(open_error)?;
                // The name is ours ("identity_370100"), never a caller's.
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {name}")))
                    .execute(&mut setup)
                    .await
                    .map_err(open_error)?;
                // `COLLATE "binary"` means byte order in our SQL, as SQLite's built-in BINARY
                // does; PostgreSQL's default collation follows the locale, so every schema gets
                // a "binary" collation that is "C", which indexes can be built in.
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "CREATE COLLATION IF NOT EXISTS {name}.\"binary\" (provider = libc, locale = 'C')"
                )))
                .execute(&mut setup)
                .await
                .map_err(open_error)?;
                setup.close().await.map_err(open_error)?;
                let search_path = format!("SET search_path TO {name}");
                let pool = pool_options
                    .after_connect(move |connection, _| {
                        let search_path = search_path.clone();
                        Box::pin(async move {
                            sqlx::raw_sql(AssertSqlSafe(search_path))
                                .execute(&mut *connection)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .map_err(open_error)?;
                (pool, Backend::Postgres)
            }
        };
        Ok(Store {
            pool,
            backend,
            name,
            service,
        })
    }

    /// Applies the service's migrations that have not run yet.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator()
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                store: self.name.clone(),
                source,
            })?;
        tracing::debug!(store = %self.name, "migrated");
        Ok(())
    }

    /// Every migration of this store's service, as this store's database runs them.
    pub fn migrator(&self) -> Migrator {
        Migrations::of(self.service).for_backend(self.backend)
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so two writers queue on the busy timeout instead of one failing
    /// when it upgrades a read lock; on PostgreSQL rows are locked by the statements themselves.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes every connection; waits for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Milliseconds since the Unix epoch, the form every timestamp column takes.
/// True when a statement failed only because other writers held what it needed: SQLite busy
/// or locked past its busy timeout, PostgreSQL's serialization failure, deadlock or lock
/// timeout. An operating condition, not a fault: the same request succeeds when sent again, so
/// services answer it UNAVAILABLE, never INTERNAL.
pub fn is_contention(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(database) = error else {
        return false;
    };
    matches!(
        database.code().as_deref(),
        // SQLite: SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_TIMEOUT.
        Some("5" | "6" | "517" | "773")
            // PostgreSQL: serialization_failure, deadlock_detected, lock_not_available.
            | Some("40001" | "40P01" | "55P03")
    )
}

pub fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(elapsed.as_millis()).expect("milliseconds fit in i64 until the year 292 million")
}

/// "INSERT INTO <target> VALUES ($1, $2), ($3, $4)" for `rows` rows of `columns` values.
pub fn multi_row_insert(target: &str, columns: usize, rows: usize) -> String {
    let tuples: Vec<String> = (0..rows)
        .map(|row| {
            let placeholders: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", placeholders.join(", "))
        })
        .collect();
    format!("INSERT INTO {target} VALUES {}", tuples.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves every service's migrations are numbered from 1 without gaps on both databases,
    /// and that a version with a file per database has one for each, described alike: a store
    /// on either database runs the same steps in the same order.
    #[test]
    fn each_database_runs_every_version_once() {
        for service in Service::ALL {
            let migrations = Migrations::of(service);
            let versions = |backend| -> Vec<i64> {
                migrations
                    .for_backend(backend)
                    .iter()
                    .map(|migration| migration.version)
                    .collect()
            };
            for backend in [Backend::Postgres, Backend::Sqlite] {
                let expected: Vec<i64> = (1..).take(versions(backend).len()).collect();
                assert_eq!(versions(backend), expected, "{service} on {backend:?}");
            }
            let described = |migrator: &Migrator| -> Vec<(i64, String)> {
                migrator
                    .iter()
                    .map(|migration| (migration.version, migration.description.to_string()))
                    .collect()
            };
            assert_eq!(
                described(&migrations.postgres),
                described(&migrations.sqlite),
                "{service}: a per-database migration lacks its twin"
            );
        }
    }
}
