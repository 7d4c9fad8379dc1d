//! Small helpers the end-to-end tests share.

use tonic_types::StatusExt;
use yitong_core::{CardNumber, CityCode};

/// The card number of the `serial`-th seeded person of `city` (seeds number cards in file order).
pub fn seeded_card(city: &str, serial: u32) -> String {
    CardNumber::new(CityCode::parse(city).expect("region code"), serial).to_string()
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
    let taian = CityCode::parse("370900").expect("Tai'an's region code");
    net.store(yitong_core::Owner::City(taian), service).await
}

/// Applies the migrations of `migrations/<service>/` numbered up to `version`, as a release
/// that had only those left the store; `Store::migrate` applies the rest.
pub async fn migrate_through(store: &yitong_store::Store, service: &str, version: i64) {
    use yitong_store::sqlx::migrate::Migrator;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(service);
    let mut migrator = Migrator::new(dir).await.expect("the migrations read");
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
