//! Small helpers the end-to-end tests share.

use tonic_types::StatusExt;
use yitong_core::{CardNumber, PoolCode};

/// The card number of the `serial`-th seeded person of `city` (seeds number cards in file order).
pub fn seeded_card(city: &str, serial: u32) -> String {
    CardNumber::new(PoolCode::parse(city).expect("region code"), serial).to_string()
}

/// Asserts an INVALID_ARGUMENT naming `field` in its google.rpc.BadRequest detail.
pub fn assert_invalid(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let bad_request = status
        .get_details_bad_request()
        .unwrap_or_else(|| panic!("no BadRequest detail in {status:?}"));
    let fields: Vec<&str> = bad_request
        .field_violations
        .iter()
        .map(|violation| violation.field.as_str())
        .collect();
    assert_eq!(fields, [field], "{status:?}");
}

/// Asserts a FAILED_PRECONDITION whose google.rpc.ErrorInfo gives `reason`.
pub fn assert_refused(status: &tonic::Status, reason: &str) {
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let info = status
        .get_details_error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo detail in {status:?}"));
    assert_eq!(info.reason, reason, "{status:?}");
}

/// Asserts that no text holds any seeded citizen ID in full.
pub fn assert_no_citizen_id(text: &str) {
    let persons = std::fs::read_to_string(yitong_sandbox::seeds_dir().join("persons.csv"))
        .expect("persons.csv");
    for line in persons.lines().skip(1) {
        let citizen_id = line.split(',').nth(1).expect("citizen_id column");
        assert!(
            !text.contains(citizen_id),
            "a full citizen ID leaked: {text}"
        );
        assert!(
            !text.contains(&citizen_id[6..14]),
            "a citizen ID's birth-date digits leaked: {text}"
        );
    }
}

/// The citizen ID of the `serial`-th seeded person of `city`, read from `seeds/persons.csv`.
pub fn seeded_citizen_id(city: &str, serial: usize) -> String {
    let persons = std::fs::read_to_string(yitong_sandbox::seeds_dir().join("persons.csv"))
        .expect("persons.csv");
    persons
        .lines()
        .skip(1)
        .filter(|line| line.starts_with(city))
        .nth(serial - 1)
        .and_then(|line| line.split(',').nth(1))
        .expect("seeded person exists")
        .to_owned()
}

// ---- Ledger traffic -----------------------------------------------------------------------

use yitong_proto::ledger::v1::{SettlementRecord, Transfer, TransferCode};

/// The id of the `n`-th transfer a test books: a UUID whose last group is `n`.
pub fn transfer_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Fen as the wire writes yuan, sign included: -705 -> "-7.05".
pub fn yuan(fen: i64) -> String {
    yitong_core::Amount::from_fen(fen).to_string()
}

/// The posted SETTLEMENT transfer that books `record`, as a treatment city's node books it: the
/// treatment city's advances debited, the insured city's obligation to it (or, same-city, the
/// treatment city's pool) credited, for what the patient did not pay at the counter (fund pay
/// plus account pay).
pub fn settlement_transfer(n: u32, record: SettlementRecord) -> Transfer {
    let (treatment, insured) = (&record.treatment_city, &record.insured_city);
    let payer = if insured == treatment {
        format!("{treatment}.pool")
    } else {
        format!("{insured}->{treatment}.obligation")
    };
    let fen = |text: &str| {
        yitong_core::Amount::parse_signed(text)
            .expect("a yuan amount")
            .fen()
    };
    Transfer {
        id: transfer_id(n),
        debit_account_id: format!("{treatment}.advances"),
        credit_account_id: payer,
        amount: yuan(fen(&record.fund_pay) + fen(&record.account_pay)),
        code: TransferCode::Settlement as i32,
        settlement: Some(record),
        ..Default::default()
    }
}

// ---- Stores as an older release left them -----------------------------------------------------

/// A store of `service` for Tai'an, a city the sandbox's network does not run, so that no server
/// has migrated it: a test brings it up to an older schema itself. Close it when done.
pub async fn store_no_server_runs(
    net: &yitong_sandbox::Sandbox,
    service: yitong_core::Service,
) -> yitong_store::Store {
    let taian = PoolCode::parse("370900").expect("Tai'an's region code");
    net.store(yitong_core::Owner::Pool(taian), service).await
}

/// Applies the store's migrations numbered up to `version` (those of `migrations/<service>/`,
/// with its database's own where there is one), as a release that had only those left the
/// store; `Store::migrate` applies the rest.
pub async fn migrate_through(store: &yitong_store::Store, version: i64) {
    let mut migrator = store.migrator();
    let older: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|migration| migration.version <= version)
        .cloned()
        .collect();
    assert_eq!(
        older.len(),
        usize::try_from(version).expect("a version"),
        "numbered from 1"
    );
    migrator.migrations = older.into();
    migrator
        .run(store.pool())
        .await
        .expect("the older migrations run");
}

/// Runs each statement of `sql` (statements end with ";" and a line break).
pub async fn execute_script(store: &yitong_store::Store, sql: &str) {
    for statement in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
        if statement
            .lines()
            .all(|line| line.trim_start().starts_with("--"))
        {
            continue;
        }
        yitong_store::sqlx::query(yitong_store::sqlx::AssertSqlSafe(statement.to_owned()))
            .execute(store.pool())
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
}

// ---- Append-only tables, as an intruder gets past them ------------------------------------------

/// What [`disarm_append_only`] took away from a table, to put back.
#[must_use = "rearm the table when the alteration is done"]
pub struct Disarmed {
    /// The statements that restore the table's triggers as they were.
    restore: Vec<String>,
}

impl Disarmed {
    /// Puts the table's append-only triggers back.
    pub async fn rearm(self, store: &yitong_store::Store) {
        for statement in self.restore {
            yitong_store::sqlx::query(yitong_store::sqlx::AssertSqlSafe(statement))
                .execute(store.pool())
                .await
                .expect("the triggers are restored");
        }
    }
}

/// Takes away the triggers that keep `table` append-only (migrations/<service>/postgres and
/// sqlite), as an intruder with the table owner's rights would: PostgreSQL's `ALTER TABLE ...
/// DISABLE TRIGGER`, SQLite's `DROP TRIGGER`. Only tests that alter stored rows behind the
/// services' back, to prove the alteration is found, do this. Panics when the table has no
/// triggers, so that such a test notices the protection it gets past has gone.
pub async fn disarm_append_only(store: &yitong_store::Store, table: &str) -> Disarmed {
    use yitong_store::sqlx::{self, AssertSqlSafe};
    let execute = |statement: String| async move {
        sqlx::query(AssertSqlSafe(statement.clone()))
            .execute(store.pool())
            .await
            .unwrap_or_else(|error| panic!("{statement}: {error}"));
    };
    match store.backend() {
        yitong_store::Backend::Postgres => {
            let (count,): (i64,) = sqlx::query_as(AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal"
            )))
            .fetch_one(store.pool())
            .await
            .expect("triggers counted");
            assert!(count > 0, "{table} has no triggers to disarm");
            execute(format!("ALTER TABLE {table} DISABLE TRIGGER USER")).await;
            Disarmed {
                restore: vec![format!("ALTER TABLE {table} ENABLE TRIGGER USER")],
            }
        }
        yitong_store::Backend::Sqlite => {
            let triggers: Vec<(String, String)> = sqlx::query_as(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = $1 ORDER BY name",
            )
            .bind(table)
            .fetch_all(store.pool())
            .await
            .expect("triggers listed");
            assert!(!triggers.is_empty(), "{table} has no triggers to disarm");
            for (name, _) in &triggers {
                execute(format!("DROP TRIGGER {name}")).await;
            }
            Disarmed {
                restore: triggers.into_iter().map(|(_, sql)| sql).collect(),
            }
        }
    }
}
