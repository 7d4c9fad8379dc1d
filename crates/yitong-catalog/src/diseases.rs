//! The national catalog of outpatient chronic and special diseases (national 1309) as this
//! city's catalog serves it: `ListDiseases`. Which of them a city's insured persons are covered
//! for, and on what terms, is the insured city's disease policy (the settlement service's).

use yitong_store::Store;
use yitong_store::sqlx;

use crate::CatalogError;

/// The catalog is small (the diseases settled across provinces); a reply holds at most this many.
pub const DISEASES_PER_REPLY_MAX: i64 = 1000;

/// Seeds the disease catalog into an empty catalog store (`seeds/diseases.csv`): the rows
/// written.
pub async fn seed_diseases(
    store: &Store,
    diseases: &[(String, String)],
) -> Result<usize, sqlx::Error> {
    let mut tx = store.begin_write().await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM diseases")
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 {
        tx.rollback().await?;
        return Ok(0);
    }
    for (code, name) in diseases {
        sqlx::query("INSERT INTO diseases (disease_code, name) VALUES ($1, $2)")
            .bind(code)
            .bind(name)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(diseases.len())
}

/// Every disease of the catalog, by code.
pub(crate) async fn list(store: &Store) -> Result<Vec<(String, String)>, CatalogError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT disease_code, name FROM diseases ORDER BY disease_code LIMIT $1")
            .bind(DISEASES_PER_REPLY_MAX)
            .fetch_all(store.pool())
            .await?;
    Ok(rows)
}
