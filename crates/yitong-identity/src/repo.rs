//! The identity store's queries. Portable SQL; see `migrations/identity/`.

use yitong_core::{Amount, CardNumber, CitizenId, Date, PersonNo, PoolCode};
use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe, Row, any::AnyRow};
use yitong_store::{Store, multi_row_insert, now_ms};

use crate::person::{CardStatus, Enrolment, InsuranceStatus, Person};
use crate::{IdentityError, PiiKeys};

const PERSON_COLUMNS: &str = "p.person_no, p.citizen_id_masked, p.name, p.sex, p.birth_date, p.insurance_type, \
     p.person_type, p.insured_since, p.account_balance_fen, \
     (SELECT c.card_no FROM cards c WHERE c.person_no = p.person_no AND c.status = 1) AS active_card, \
     (SELECT s.status FROM insurance_status_changes s WHERE s.person_no = p.person_no AND s.effective_date <= $2 \
        ORDER BY s.effective_date DESC, s.recorded_at_ms DESC LIMIT 1) AS status, \
     (SELECT s.effective_date FROM insurance_status_changes s WHERE s.person_no = p.person_no AND s.effective_date <= $2 \
        ORDER BY s.effective_date DESC, s.recorded_at_ms DESC LIMIT 1) AS status_since";

/// The person holding a card (in any status) and the card's status.
pub(crate) async fn person_by_card(
    conn: &mut AnyConnection,
    card: &CardNumber,
    date: Date,
) -> Result<Option<(Person, CardStatus)>, IdentityError> {
    let Some((person_no, card_status)) = card_row(conn, card).await? else {
        return Ok(None);
    };
    let person = person_by_no(conn, &person_no, date)
        .await?
        .ok_or_else(|| IdentityError::Corrupt(format!("card {card} names a missing person")))?;
    Ok(Some((person, card_status)))
}

/// A card's holder and status.
pub(crate) async fn card_row(
    conn: &mut AnyConnection,
    card: &CardNumber,
) -> Result<Option<(PersonNo, CardStatus)>, IdentityError> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT person_no, status FROM cards WHERE card_no = $1")
            .bind(card.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let Some((person_no, status)) = row else {
        return Ok(None);
    };
    let status = CardStatus::from_code(status)
        .ok_or_else(|| IdentityError::Corrupt(format!("card {card} has an unknown status")))?;
    let person_no = PersonNo::parse(&person_no)
        .map_err(|_| IdentityError::Corrupt(format!("card {card} names a malformed person")))?;
    Ok(Some((person_no, status)))
}

/// A person by person number, with their status at `date`.
pub(crate) async fn person_by_no(
    conn: &mut AnyConnection,
    person_no: &PersonNo,
    date: Date,
) -> Result<Option<Person>, IdentityError> {
    let sql = format!("SELECT {PERSON_COLUMNS} FROM persons p WHERE p.person_no = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(person_no.as_str())
        .bind(date.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| person_from_row(&row)).transpose()
}

/// A person by citizen ID, found through its keyed hash.
pub(crate) async fn person_by_citizen_id(
    conn: &mut AnyConnection,
    keys: &PiiKeys,
    id: &CitizenId,
    date: Date,
) -> Result<Option<Person>, IdentityError> {
    let sql = format!("SELECT {PERSON_COLUMNS} FROM persons p WHERE p.citizen_id_hash = $1");
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(keys.lookup_hash(id))
        .bind(date.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|row| person_from_row(&row)).transpose()
}

/// The next serial of a kind ('card', 'person'); inside a write transaction, so never reused.
pub(crate) async fn next_serial(
    conn: &mut AnyConnection,
    kind: &str,
) -> Result<i64, IdentityError> {
    let value: i64 =
        sqlx::query_scalar("UPDATE serials SET value = value + 1 WHERE kind = $1 RETURNING value")
            .bind(kind)
            .fetch_one(&mut *conn)
            .await?;
    Ok(value)
}

/// Enrols a new person, active from the day their insurance starts.
pub(crate) async fn insert_person(
    conn: &mut AnyConnection,
    keys: &PiiKeys,
    person_no: &PersonNo,
    enrolment: &Enrolment,
) -> Result<(), IdentityError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO persons (person_no, citizen_id_hash, citizen_id_sealed, citizen_id_masked, name, sex, birth_date, \
         insurance_type, person_type, insured_since, account_balance_fen, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(person_no.as_str())
    .bind(keys.lookup_hash(&enrolment.citizen_id))
    .bind(keys.seal(&enrolment.citizen_id))
    .bind(enrolment.citizen_id.masked())
    .bind(enrolment.name.clone())
    .bind(enrolment.sex)
    .bind(enrolment.citizen_id.birth_date().to_string())
    .bind(enrolment.insurance_type)
    .bind(enrolment.person_type)
    .bind(enrolment.insured_since.to_string())
    .bind(enrolment.account_balance.fen())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    insert_status_change(
        conn,
        person_no,
        InsuranceStatus::Active,
        enrolment.insured_since,
        "enrolment",
    )
    .await
}

/// Adds a status change; history is only ever added to.
pub(crate) async fn insert_status_change(
    conn: &mut AnyConnection,
    person_no: &PersonNo,
    status: InsuranceStatus,
    effective: Date,
    reason: &str,
) -> Result<(), IdentityError> {
    sqlx::query(
        "INSERT INTO insurance_status_changes (change_id, person_no, status, effective_date, reason, recorded_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(person_no.as_str())
    .bind(status as i64)
    .bind(effective.to_string())
    .bind(reason)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The movement recorded for a settlement: holder, amount, balance after, when.
pub(crate) async fn account_movement(
    conn: &mut AnyConnection,
    settlement_id: &str,
) -> Result<Option<(PersonNo, Amount, Amount, i64)>, IdentityError> {
    let row: Option<(String, i64, i64, i64)> =
        sqlx::query_as("SELECT person_no, amount_fen, balance_after_fen, recorded_at_ms FROM account_movements WHERE settlement_id = $1")
            .bind(settlement_id)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|(person_no, amount, balance_after, at_ms)| {
        let person_no = PersonNo::parse(&person_no).map_err(|_| {
            IdentityError::Corrupt(format!("movement of settlement {settlement_id}"))
        })?;
        Ok((
            person_no,
            Amount::from_fen(amount),
            Amount::from_fen(balance_after),
            at_ms,
        ))
    })
    .transpose()
}

/// Applies a movement to a personal account, refusing one that would leave it below zero.
/// The conditional UPDATE both locks the person's row and checks the balance in one statement.
pub(crate) async fn move_account(
    conn: &mut AnyConnection,
    settlement_id: &str,
    person_no: &PersonNo,
    amount: Amount,
) -> Result<(Amount, i64), IdentityError> {
    let balance_after: Option<i64> = sqlx::query_scalar(
        "UPDATE persons SET account_balance_fen = account_balance_fen + $2 \
         WHERE person_no = $1 AND account_balance_fen + $2 >= 0 RETURNING account_balance_fen",
    )
    .bind(person_no.as_str())
    .bind(amount.fen())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(balance_after) = balance_after else {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT account_balance_fen FROM persons WHERE person_no = $1")
                .bind(person_no.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        return Err(match exists {
            Some(_) => IdentityError::AccountInsufficient(person_no.clone()),
            None => IdentityError::NotFound("person number"),
        });
    };
    let now = now_ms();
    sqlx::query("INSERT INTO account_movements (settlement_id, person_no, amount_fen, balance_after_fen, recorded_at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(settlement_id)
        .bind(person_no.as_str())
        .bind(amount.fen())
        .bind(balance_after)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok((Amount::from_fen(balance_after), now))
}

/// Issues an active card to a person.
pub(crate) async fn insert_card(
    conn: &mut AnyConnection,
    card: &CardNumber,
    person_no: &PersonNo,
) -> Result<(), IdentityError> {
    let now = now_ms();
    sqlx::query("INSERT INTO cards (card_no, person_no, status, issued_at_ms, status_changed_at_ms) VALUES ($1, $2, 1, $3, $3)")
        .bind(card.as_str())
        .bind(person_no.as_str())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves a card to `status`, noting its replacement when reissued; returns when it happened.
pub(crate) async fn set_card_status(
    conn: &mut AnyConnection,
    card: &CardNumber,
    status: CardStatus,
    replaced_by: Option<&CardNumber>,
) -> Result<i64, IdentityError> {
    let now = now_ms();
    sqlx::query("UPDATE cards SET status = $2, status_changed_at_ms = $3, replaced_by = $4 WHERE card_no = $1")
        .bind(card.as_str())
        .bind(status as i64)
        .bind(now)
        .bind(replaced_by.map(|card| card.to_string()))
        .execute(&mut *conn)
        .await?;
    Ok(now)
}

fn person_from_row(row: &AnyRow) -> Result<Person, IdentityError> {
    let corrupt = |what: &str| IdentityError::Corrupt(format!("person row has a malformed {what}"));
    let date = |column: &str| -> Result<Date, IdentityError> {
        let text: String = row.try_get(column)?;
        yitong_core::parse_date(&text).map_err(|_| corrupt(column))
    };
    let status = match row.try_get::<Option<i64>, _>("status")? {
        Some(code) => {
            let status = InsuranceStatus::from_code(code).ok_or_else(|| corrupt("status"))?;
            let since: String = row.try_get("status_since")?;
            Some((
                status,
                yitong_core::parse_date(&since).map_err(|_| corrupt("status date"))?,
            ))
        }
        None => None,
    };
    let active_card = match row.try_get::<Option<String>, _>("active_card")? {
        Some(text) => Some(CardNumber::parse(&text).map_err(|_| corrupt("card number"))?),
        None => None,
    };
    Ok(Person {
        person_no: PersonNo::parse(&row.try_get::<String, _>("person_no")?)
            .map_err(|_| corrupt("person number"))?,
        citizen_id_masked: row.try_get("citizen_id_masked")?,
        name: row.try_get("name")?,
        sex: row.try_get("sex")?,
        birth_date: date("birth_date")?,
        insurance_type: row.try_get("insurance_type")?,
        person_type: row.try_get("person_type")?,
        insured_since: date("insured_since")?,
        account_balance: Amount::from_fen(row.try_get("account_balance_fen")?),
        status,
        active_card,
    })
}

/// One person of a seed file, as a bureau's enrolment records them.
#[derive(Debug, Clone)]
pub struct SeedPerson {
    pub citizen_id: CitizenId,
    pub name: String,
    /// national gend: 1 male, 2 female.
    pub sex: i64,
    /// national insutype: 310 employee, 390 resident.
    pub insurance_type: i64,
    /// 1 in service, 2 retired.
    pub person_type: i64,
    pub insured_since: Date,
    pub account_balance: Amount,
    pub status: InsuranceStatus,
    /// Day the status took effect (the insured-since day for active persons).
    pub status_since: Date,
    pub card_status: CardStatus,
}

/// Rows a multi-row INSERT carries; well inside both databases' bind-parameter limits.
const SEED_ROWS_PER_STATEMENT: usize = 200;

/// Enrols seed persons in one transaction, numbering persons and cards 1, 2, 3... in order.
/// Refuses to run on a store that already has persons, so a restart never seeds twice.
pub async fn seed_persons(
    store: &Store,
    keys: &PiiKeys,
    city: PoolCode,
    persons: &[SeedPerson],
) -> Result<usize, IdentityError> {
    let mut tx = store.begin_write().await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM persons")
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 {
        return Ok(0);
    }
    let now = now_ms();
    let today = yitong_core::today().to_string();
    for (chunk_index, chunk) in persons.chunks(SEED_ROWS_PER_STATEMENT).enumerate() {
        let first_serial = chunk_index * SEED_ROWS_PER_STATEMENT + 1;
        let numbered = || {
            chunk
                .iter()
                .enumerate()
                .map(|(i, person)| (first_serial + i, person))
        };

        let sql = multi_row_insert(
            "persons (person_no, citizen_id_hash, citizen_id_sealed, citizen_id_masked, name, sex, birth_date, insurance_type, person_type, insured_since, account_balance_fen, created_at_ms)",
            12,
            chunk.len(),
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for (serial, person) in numbered() {
            insert = insert
                .bind(PersonNo::new(city, serial as u64).to_string())
                .bind(keys.lookup_hash(&person.citizen_id))
                .bind(keys.seal(&person.citizen_id))
                .bind(person.citizen_id.masked())
                .bind(person.name.clone())
                .bind(person.sex)
                .bind(person.citizen_id.birth_date().to_string())
                .bind(person.insurance_type)
                .bind(person.person_type)
                .bind(person.insured_since.to_string())
                .bind(person.account_balance.fen())
                .bind(now);
        }
        insert.execute(&mut *tx).await?;

        let sql = multi_row_insert(
            "cards (card_no, person_no, status, issued_at_ms, status_changed_at_ms)",
            5,
            chunk.len(),
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for (serial, person) in numbered() {
            insert = insert
                .bind(CardNumber::new(city, serial as u32).to_string())
                .bind(PersonNo::new(city, serial as u64).to_string())
                .bind(person.card_status as i64)
                .bind(now)
                .bind(now);
        }
        insert.execute(&mut *tx).await?;

        // Every person's history opens with enrolment; a later status adds a second change.
        let changes: Vec<(usize, InsuranceStatus, Date, &str)> = numbered()
            .flat_map(|(serial, person)| {
                let enrolment = (
                    serial,
                    InsuranceStatus::Active,
                    person.insured_since,
                    "enrolment",
                );
                let later = (person.status != InsuranceStatus::Active).then_some((
                    serial,
                    person.status,
                    person.status_since,
                    "seed",
                ));
                std::iter::once(enrolment).chain(later)
            })
            .collect();
        let sql = multi_row_insert(
            "insurance_status_changes (change_id, person_no, status, effective_date, reason, recorded_at_ms)",
            6,
            changes.len(),
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for (serial, status, since, reason) in changes {
            insert = insert
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(PersonNo::new(city, serial as u64).to_string())
                .bind(status as i64)
                .bind(since.to_string())
                .bind(reason)
                .bind(now);
        }
        insert.execute(&mut *tx).await?;
    }
    let count = persons.len() as i64;
    sqlx::query("UPDATE serials SET value = $1 WHERE kind IN ('card', 'person')")
        .bind(count)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(city = %city, persons = count, seeded_on = %today, "seeded insured persons");
    Ok(persons.len())
}
