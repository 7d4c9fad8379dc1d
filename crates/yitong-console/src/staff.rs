//! Staff accounts and the console's own record of what they did: Argon2id password hashes,
//! the caller of the services each account acts as, and an append-only log of actions.
//!
//! The console keeps one small store of its own (a SQLite file `<data>/console/console.db`, or
//! a PostgreSQL schema), never another service's tables.

use std::str::FromStr;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, AssertSqlSafe, Connection, Executor, Row};
use yitong_core::Owner;
use yitong_rpc::Caller;
use yitong_store::Location;

/// Connections of the console's pool: sign-ins and action rows are small and rare.
const POOL_CONNECTIONS_MAX: u32 = 2;
/// How long a request waits for a connection before it fails.
const POOL_ACQUIRE_TIMEOUT_MS: u64 = 5_000;
/// Longest user name: it is also the `operator_id` (national opter) of every call the staff
/// member makes, which the services hold to 64 characters.
pub const USERNAME_CHARS_MAX: usize = 32;
/// Shortest password accepted by `yitong console user add`.
pub const PASSWORD_CHARS_MIN: usize = 12;
/// Longest password hashed: bounds the work a sign-in attempt can ask for.
pub const PASSWORD_CHARS_MAX: usize = 256;

/// What a staff member does in the console, from the caller the account acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A city's medical insurance bureau: reconciles, confirms and applies its clearing,
    /// confirms its statement.
    Bureau,
    /// The clearing house's staff: closes the month, sees every city's figures.
    ClearingHouse,
    /// A designated institution's finance office: reconciles its own day.
    Finance,
    /// An operator: watches settlements in doubt and follows traces; changes nothing.
    Operator,
}

/// A staff member, signed in or about to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staff {
    pub username: String,
    pub display_name: String,
    /// The caller of the services the account acts as; its credential is the console's.
    pub acts_as: Caller,
}

impl Staff {
    pub fn role(&self) -> Role {
        match &self.acts_as {
            Caller::Bureau(Owner::ClearingHouse) => Role::ClearingHouse,
            Caller::Bureau(Owner::Pool(_)) => Role::Bureau,
            Caller::Institution(_) => Role::Finance,
            _ => Role::Operator,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StaffError {
    #[error("user name must be 1 to {USERNAME_CHARS_MAX} characters of a-z, 0-9, '.', '_' or '-'")]
    BadUsername,
    #[error("password must be {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters")]
    BadPassword,
    #[error("a staff account acts as a bureau, an institution or an operator, not {0}")]
    BadCaller(String),
    #[error("user {0} already exists")]
    Exists(String),
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Checks a user name: lowercase letters, digits and `._-`, at most [`USERNAME_CHARS_MAX`].
pub fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= USERNAME_CHARS_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// The console's store.
#[derive(Debug, Clone)]
pub struct StaffStore {
    pool: AnyPool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/console");

impl StaffStore {
    /// Opens and migrates the store: `<dir>/console/console.db` on SQLite, schema `schema` on
    /// PostgreSQL (`console` for `yitong console`; tests give each run its own).
    pub async fn open(location: &Location, schema: &str) -> Result<StaffStore, StaffError> {
        sqlx::any::install_default_drivers();
        assert!(
            schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "schema names are ours"
        );
        let options = AnyPoolOptions::new()
            .max_connections(POOL_CONNECTIONS_MAX)
            .acquire_timeout(Duration::from_millis(POOL_ACQUIRE_TIMEOUT_MS));
        let pool = match location {
            Location::Sqlite { dir } => {
                let dir = dir.join("console");
                std::fs::create_dir_all(&dir).map_err(sqlx::Error::Io)?;
                let url = format!("sqlite://{}?mode=rwc", dir.join("console.db").display());
                options
                    .after_connect(|connection, _| {
                        Box::pin(async move {
                            connection.execute("PRAGMA journal_mode = WAL").await?;
                            connection.execute("PRAGMA busy_timeout = 5000").await?;
                            Ok(())
                        })
                    })
                    .connect_with(AnyConnectOptions::from_str(&url)?)
                    .await?
            }
            Location::Postgres { url } => {
                let connect = AnyConnectOptions::from_str(url)?;
                let mut setup = sqlx::AnyConnection::connect_with(&connect).await?;
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}"
                )))
                .execute(&mut setup)
                .await?;
                setup.close().await?;
                let search_path = format!("SET search_path TO {schema}");
                options
                    .after_connect(move |connection, _| {
                        let search_path = search_path.clone();
                        Box::pin(async move {
                            sqlx::raw_sql(AssertSqlSafe(search_path))
                                .execute(&mut *connection)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(connect)
                    .await?
            }
        };
        MIGRATOR.run(&pool).await?;
        Ok(StaffStore { pool })
    }

    /// Adds an account acting as `acts_as`. Refuses a node or an anonymous caller: nodes move
    /// money, and staff never act as one.
    pub async fn add(
        &self,
        username: &str,
        display_name: &str,
        password: &str,
        acts_as: &Caller,
    ) -> Result<(), StaffError> {
        if !valid_username(username) {
            return Err(StaffError::BadUsername);
        }
        let length = password.chars().count();
        if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&length) {
            return Err(StaffError::BadPassword);
        }
        if matches!(acts_as, Caller::Node(_) | Caller::Anonymous) {
            return Err(StaffError::BadCaller(acts_as.to_string()));
        }
        let salt = SaltString::generate(&mut OsRng);
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|error| StaffError::Hash(error.to_string()))?
            .to_string();
        let inserted = sqlx::query(
            "INSERT INTO console_staff (username, password_hash, acts_as, display_name, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING",
        )
        .bind(username)
        .bind(hash)
        .bind(acts_as.to_string())
        .bind(display_name)
        .bind(yitong_store::now_ms())
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StaffError::Exists(username.to_owned()));
        }
        Ok(())
    }

    /// The account when the password is its own; `None` for an unknown user or a wrong
    /// password alike (the page says the same for both). An unknown user still costs one
    /// hash, so timing does not tell which it was.
    pub async fn verify(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Staff>, StaffError> {
        if !valid_username(username) || password.chars().count() > PASSWORD_CHARS_MAX {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT password_hash, acts_as, display_name FROM console_staff WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            let salt = SaltString::generate(&mut OsRng);
            let _ = Argon2::default().hash_password(password.as_bytes(), &salt);
            return Ok(None);
        };
        let hash: String = row.try_get(0)?;
        let acts_as: String = row.try_get(1)?;
        let display_name: String = row.try_get(2)?;
        let parsed =
            PasswordHash::new(&hash).map_err(|error| StaffError::Hash(error.to_string()))?;
        if Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_err()
        {
            return Ok(None);
        }
        let acts_as = Caller::from_str(&acts_as).map_err(|_| StaffError::BadCaller(acts_as))?;
        Ok(Some(Staff {
            username: username.to_owned(),
            display_name,
            acts_as,
        }))
    }

    /// Records a state change the console asked a service for, and how it ended.
    pub async fn record_action(
        &self,
        staff: &Staff,
        rpc: &str,
        message_id: &str,
        outcome: &str,
    ) -> Result<(), StaffError> {
        sqlx::query(
            "INSERT INTO console_actions (action_id, recorded_at_ms, username, acts_as, rpc, message_id, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(yitong_store::now_ms())
        .bind(&staff.username)
        .bind(staff.acts_as.to_string())
        .bind(rpc)
        .bind(message_id)
        .bind(outcome)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The actions recorded, oldest first, at most `limit`: (username, rpc, message id, outcome).
    pub async fn actions(
        &self,
        limit: i64,
    ) -> Result<Vec<(String, String, String, String)>, StaffError> {
        let rows = sqlx::query(
            "SELECT username, rpc, message_id, outcome FROM console_actions ORDER BY action_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get(0)?,
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get(3)?,
                ))
            })
            .collect()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
