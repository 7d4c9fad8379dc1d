//! The policy store: effective-dated versions, read by date and appended to. Portable SQL; see
//! `migrations/catalog/`.

use std::collections::BTreeMap;

use yitong_core::{Amount, Date, Invalid, MessageId, PoolCode};
use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe};
use yitong_store::{Store, multi_row_insert, now_ms};

use crate::policy::{
    HospitalLevel, InsuranceType, PersonType, PolicyKey, PolicyTerms, PolicyVersion, RecordedPolicy,
};
use crate::{CatalogError, Ratio, Refusal};

const POLICY_COLUMNS: &str = "policy_id, insurance_type, person_type, hospital_level, \
     deductible_fen, reimbursement_ratio_bp, annual_cap_fen, effective_from, recorded_at_ms";

type PolicyRow = (String, i64, i64, i64, i64, i64, i64, String, i64);

/// Rows one multi-row INSERT of seed policies carries.
const ROWS_PER_INSERT_MAX: usize = 50;

/// A parsed UpsertPolicy request.
#[derive(Debug, Clone)]
pub(crate) struct NewPolicy {
    pub(crate) message_id: MessageId,
    pub(crate) version: PolicyVersion,
    pub(crate) reason: String,
    pub(crate) operator_id: String,
}

fn policy_from_row(city: PoolCode, row: PolicyRow) -> Result<RecordedPolicy, CatalogError> {
    let (policy_id, insurance_type, person_type, level, deductible, ratio, cap, from, recorded) =
        row;
    let corrupt = |what: &str| CatalogError::Corrupt(format!("policy {policy_id}: {what}"));
    let key = PolicyKey {
        insurance_type: InsuranceType::from_code(insurance_type)
            .ok_or_else(|| corrupt("unknown insurance type"))?,
        person_type: PersonType::from_code(person_type)
            .ok_or_else(|| corrupt("unknown person type"))?,
        hospital_level: HospitalLevel::from_code(level)
            .ok_or_else(|| corrupt("unknown hospital level"))?,
    };
    let terms = PolicyTerms::new(
        Amount::from_fen(deductible),
        Ratio::from_basis_points(ratio).ok_or_else(|| corrupt("ratio out of range"))?,
        Amount::from_fen(cap),
    )
    .map_err(|_| corrupt("negative amount"))?;
    let effective_from = yitong_core::parse_date(&from).map_err(|_| corrupt("malformed date"))?;
    Ok(RecordedPolicy {
        policy_id,
        city,
        version: PolicyVersion {
            key,
            terms,
            effective_from,
        },
        effective_until: None,
        recorded_at_ms: recorded,
    })
}

/// The version of `key` in force on `date`, with its last day when a later version exists.
pub(crate) async fn in_force(
    conn: &mut AnyConnection,
    city: PoolCode,
    key: PolicyKey,
    date: Date,
) -> Result<Option<RecordedPolicy>, CatalogError> {
    let sql = format!(
        "SELECT {POLICY_COLUMNS} FROM policies \
         WHERE insurance_type = $1 AND person_type = $2 AND hospital_level = $3 AND effective_from <= $4 \
         ORDER BY effective_from DESC LIMIT 1"
    );
    let row: Option<PolicyRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(key.insurance_type as i64)
        .bind(key.person_type as i64)
        .bind(key.hospital_level as i64)
        .bind(date.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut policy = policy_from_row(city, row)?;
    policy.effective_until = next_first_day(conn, key, policy.version.effective_from)
        .await?
        .map(|next| {
            next.pred_opt()
                .expect("a later version starts after the first day")
        });
    Ok(Some(policy))
}

/// The key's head: the first day of its latest version (`policy_heads`), which moves forward
/// with every version recorded; `None` for a key with no version.
pub(crate) async fn head(
    conn: &mut AnyConnection,
    key: PolicyKey,
) -> Result<Option<Date>, CatalogError> {
    let head: Option<String> = sqlx::query_scalar(
        "SELECT latest_effective_from FROM policy_heads \
         WHERE insurance_type = $1 AND person_type = $2 AND hospital_level = $3",
    )
    .bind(key.insurance_type as i64)
    .bind(key.person_type as i64)
    .bind(key.hospital_level as i64)
    .fetch_optional(&mut *conn)
    .await?;
    head.map(|text| {
        yitong_core::parse_date(&text)
            .map_err(|_| CatalogError::Corrupt(format!("policy head {text} is malformed")))
    })
    .transpose()
}

/// Up to `limit` versions of `key`, by first day (`cache` holds them).
pub(crate) async fn versions(
    conn: &mut AnyConnection,
    city: PoolCode,
    key: PolicyKey,
    limit: usize,
) -> Result<Vec<RecordedPolicy>, CatalogError> {
    let sql = format!(
        "SELECT {POLICY_COLUMNS} FROM policies \
         WHERE insurance_type = $1 AND person_type = $2 AND hospital_level = $3 \
         ORDER BY effective_from LIMIT $4"
    );
    let rows: Vec<PolicyRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(key.insurance_type as i64)
        .bind(key.person_type as i64)
        .bind(key.hospital_level as i64)
        .bind(i64::try_from(limit).expect("limits are small"))
        .fetch_all(&mut *conn)
        .await?;
    rows.into_iter()
        .map(|row| policy_from_row(city, row))
        .collect()
}

/// The version in force on `date` among a key's `versions` (by first day), with its last day
/// when a later version exists: the rule `in_force` reads from the store.
pub(crate) fn in_force_among(versions: &[RecordedPolicy], date: Date) -> Option<RecordedPolicy> {
    debug_assert!(
        versions
            .windows(2)
            .all(|pair| pair[0].version.effective_from < pair[1].version.effective_from),
        "a key's versions are ordered by first day"
    );
    let index = versions
        .iter()
        .rposition(|policy| policy.version.effective_from <= date)?;
    let mut policy = versions[index].clone();
    policy.effective_until = versions.get(index + 1).map(|next| {
        next.version
            .effective_from
            .pred_opt()
            .expect("a later version starts after the first day")
    });
    Some(policy)
}

/// The first day of the version after the one starting on `from`, if any.
async fn next_first_day(
    conn: &mut AnyConnection,
    key: PolicyKey,
    from: Date,
) -> Result<Option<Date>, CatalogError> {
    let next: Option<String> = sqlx::query_scalar(
        "SELECT MIN(effective_from) FROM policies \
         WHERE insurance_type = $1 AND person_type = $2 AND hospital_level = $3 AND effective_from > $4",
    )
    .bind(key.insurance_type as i64)
    .bind(key.person_type as i64)
    .bind(key.hospital_level as i64)
    .bind(from.to_string())
    .fetch_one(&mut *conn)
    .await?;
    next.map(|text| {
        yitong_core::parse_date(&text)
            .map_err(|_| CatalogError::Corrupt(format!("policy date {text} is malformed")))
    })
    .transpose()
}

/// Records a new version inside the caller's write transaction and returns it with the
/// version it supersedes, now ending the day before it.
///
/// The version must start on or after `today` and after the latest version of its key, so
/// history is never rewritten: a settlement dated before it keeps the version it was priced by.
pub(crate) async fn record(
    conn: &mut AnyConnection,
    city: PoolCode,
    new: &NewPolicy,
    today: Date,
) -> Result<(RecordedPolicy, Option<RecordedPolicy>), CatalogError> {
    let version = new.version;
    if version.effective_from < today {
        return Err(Invalid::new(
            "policy.effective_from",
            format!("must not be before today ({today}): settled claims keep their policy"),
        )
        .into());
    }
    if !advance_head(conn, version.key, version.effective_from).await? {
        let latest: String = sqlx::query_scalar(
            "SELECT latest_effective_from FROM policy_heads \
             WHERE insurance_type = $1 AND person_type = $2 AND hospital_level = $3",
        )
        .bind(version.key.insurance_type as i64)
        .bind(version.key.person_type as i64)
        .bind(version.key.hospital_level as i64)
        .fetch_one(&mut *conn)
        .await?;
        return Err(CatalogError::Refused {
            refusal: Refusal::PolicyNotAfterLatest,
            field: "policy.effective_from".into(),
            message: format!(
                "a version of this policy already takes effect on {latest}; a new one must take effect after it"
            ),
        });
    }
    let superseded = in_force(
        conn,
        city,
        version.key,
        version
            .effective_from
            .pred_opt()
            .expect("a policy starts after the first day of the calendar"),
    )
    .await?;
    let recorded_at_ms = now_ms();
    insert(
        conn,
        city,
        &[version],
        &new.reason,
        &new.operator_id,
        recorded_at_ms,
    )
    .await?;
    let recorded = RecordedPolicy {
        policy_id: version.policy_id(city),
        city,
        version,
        effective_until: None,
        recorded_at_ms,
    };
    let superseded = superseded.map(|mut old| {
        old.effective_until = version.effective_from.pred_opt();
        old
    });
    Ok((recorded, superseded))
}

/// Moves the key's latest first day forward to `from`; false when a version on or after `from`
/// exists. The conditional UPDATE locks the head row, so versions of one key are recorded one
/// at a time and always in date order.
async fn advance_head(
    conn: &mut AnyConnection,
    key: PolicyKey,
    from: Date,
) -> Result<bool, CatalogError> {
    let update = || {
        sqlx::query(
            "UPDATE policy_heads SET latest_effective_from = $4 \
             WHERE insurance_type = $1 AND person_type = $2 AND hospital_level = $3 \
             AND latest_effective_from < $4",
        )
        .bind(key.insurance_type as i64)
        .bind(key.person_type as i64)
        .bind(key.hospital_level as i64)
        .bind(from.to_string())
    };
    if update().execute(&mut *conn).await?.rows_affected() == 1 {
        return Ok(true);
    }
    let inserted = sqlx::query(
        "INSERT INTO policy_heads (insurance_type, person_type, hospital_level, latest_effective_from) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (insurance_type, person_type, hospital_level) DO NOTHING",
    )
    .bind(key.insurance_type as i64)
    .bind(key.person_type as i64)
    .bind(key.hospital_level as i64)
    .bind(from.to_string())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(true);
    }
    // A first version of the key was recorded concurrently: judge against it.
    Ok(update().execute(&mut *conn).await?.rows_affected() == 1)
}

async fn insert(
    conn: &mut AnyConnection,
    city: PoolCode,
    versions: &[PolicyVersion],
    reason: &str,
    operator_id: &str,
    recorded_at_ms: i64,
) -> Result<(), sqlx::Error> {
    for chunk in versions.chunks(ROWS_PER_INSERT_MAX) {
        let sql = multi_row_insert(
            &format!("policies ({POLICY_COLUMNS}, reason, operator_id)"),
            11,
            chunk.len(),
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for version in chunk {
            insert = insert
                .bind(version.policy_id(city))
                .bind(version.key.insurance_type as i64)
                .bind(version.key.person_type as i64)
                .bind(version.key.hospital_level as i64)
                .bind(version.terms.deductible.fen())
                .bind(version.terms.reimbursement_ratio.basis_points())
                .bind(version.terms.annual_cap.fen())
                .bind(version.effective_from.to_string())
                .bind(recorded_at_ms)
                .bind(reason.to_owned())
                .bind(operator_id.to_owned());
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Loads a city's seed policies (any number of versions per key) into an empty store. Does
/// nothing once the store holds a policy.
pub async fn seed_policies(
    store: &Store,
    city: PoolCode,
    versions: &[PolicyVersion],
) -> Result<usize, sqlx::Error> {
    let mut tx = store.begin_write().await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM policies")
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 || versions.is_empty() {
        return Ok(0);
    }
    insert(
        &mut tx,
        city,
        versions,
        "loaded from seed files",
        "seed",
        now_ms(),
    )
    .await?;
    let mut heads: BTreeMap<PolicyKey, Date> = BTreeMap::new();
    for version in versions {
        let head = heads.entry(version.key).or_insert(version.effective_from);
        *head = (*head).max(version.effective_from);
    }
    let sql = multi_row_insert(
        "policy_heads (insurance_type, person_type, hospital_level, latest_effective_from)",
        4,
        heads.len(),
    );
    let mut insert = sqlx::query(AssertSqlSafe(sql));
    for (key, latest) in &heads {
        insert = insert
            .bind(key.insurance_type as i64)
            .bind(key.person_type as i64)
            .bind(key.hospital_level as i64)
            .bind(latest.to_string());
    }
    insert.execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::info!(city = %city, policies = versions.len(), "seeded policies");
    Ok(versions.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(from: &str, ratio_bp: i64) -> RecordedPolicy {
        let key = PolicyKey {
            insurance_type: InsuranceType::Employee,
            person_type: PersonType::InService,
            hospital_level: HospitalLevel::Three,
        };
        let city = PoolCode::parse("370100").expect("pool");
        let version = PolicyVersion {
            key,
            terms: PolicyTerms::new(
                Amount::from_fen(70_000),
                Ratio::from_basis_points(ratio_bp).expect("ratio"),
                Amount::from_fen(400_000),
            )
            .expect("terms"),
            effective_from: yitong_core::parse_date(from).expect("date"),
        };
        RecordedPolicy {
            policy_id: version.policy_id(city),
            city,
            version,
            effective_until: None,
            recorded_at_ms: 0,
        }
    }

    // Proves the rule applied to a node's copy of a key's versions is the store's: the latest
    // version starting on or before the date, ending the day before the next one starts, and
    // none before the first.
    #[test]
    fn the_version_in_force_among_a_key_s_versions() {
        let versions = [version("2025-01-01", 5_500), version("2026-01-01", 6_000)];
        let on = |date: &str| in_force_among(&versions, yitong_core::parse_date(date).unwrap());
        assert!(on("2024-12-31").is_none());
        let first = on("2025-01-01").expect("in force");
        assert_eq!(first.policy_id, "370100-310-1-3-2025-01-01");
        assert_eq!(
            first
                .effective_until
                .map(|date| date.to_string())
                .as_deref(),
            Some("2025-12-31")
        );
        assert_eq!(
            on("2025-12-31").expect("in force").policy_id,
            first.policy_id
        );
        let latest = on("2026-01-01").expect("in force");
        assert_eq!(latest.policy_id, "370100-310-1-3-2026-01-01");
        assert_eq!(latest.effective_until, None);
        assert_eq!(
            on("2099-12-31").expect("in force").policy_id,
            latest.policy_id
        );
        assert!(in_force_among(&[], yitong_core::parse_date("2026-01-01").unwrap()).is_none());
    }
}
