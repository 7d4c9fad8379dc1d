//! The designated institutions registry (定点医疗机构) of one city.

use yitong_core::{CityCode, Date, InstitutionCode};
use yitong_store::sqlx::{self, AssertSqlSafe};
use yitong_store::{Store, multi_row_insert};

/// One designated institution of a seed file.
#[derive(Debug, Clone)]
pub struct SeedInstitution {
    pub code: InstitutionCode,
    pub name: String,
    /// 1 hospital, 2 pharmacy.
    pub kind: i64,
    /// Hospital level 1 to 3.
    pub level: i64,
    /// First day it settles cross-city claims; `None` when it does not.
    pub networked_since: Option<Date>,
}

/// Loads the institutions of `city` into an empty registry; does nothing when it has rows.
pub async fn seed_institutions(
    store: &Store,
    city: CityCode,
    institutions: &[SeedInstitution],
) -> Result<usize, sqlx::Error> {
    let mut tx = store.begin_write().await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM institutions")
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 || institutions.is_empty() {
        return Ok(0);
    }
    let sql = multi_row_insert(
        "institutions (institution_code, name, city, kind, level, networked_since)",
        6,
        institutions.len(),
    );
    let mut insert = sqlx::query(AssertSqlSafe(sql));
    for institution in institutions {
        assert_eq!(
            institution.code.city(),
            city,
            "seed files keep each city's institutions apart"
        );
        insert = insert
            .bind(institution.code.to_string())
            .bind(institution.name.clone())
            .bind(city.to_string())
            .bind(institution.kind)
            .bind(institution.level)
            .bind(institution.networked_since.map(|date| date.to_string()));
    }
    insert.execute(&mut *tx).await?;
    tx.commit().await?;
    tracing::info!(city = %city, institutions = institutions.len(), "seeded designated institutions");
    Ok(institutions.len())
}
