//! The designated institutions registry (定点医疗机构) of one city.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use yitong_core::{Date, InstitutionCode, Invalid, PoolCode};
use yitong_proto::catalog::v1 as pb;
use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe};
use yitong_store::{Store, multi_row_insert};

use crate::CatalogError;

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
    city: PoolCode,
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

type InstitutionRow = (String, String, String, i64, i64, Option<String>);

const INSTITUTION_COLUMNS: &str = "institution_code, name, city, kind, level, networked_since";

fn institution_to_wire(row: InstitutionRow) -> pb::Institution {
    let (code, name, city, kind, level, networked_since) = row;
    pb::Institution {
        code,
        name,
        city,
        kind: i32::try_from(kind).unwrap_or_default(),
        level: i32::try_from(level).unwrap_or_default(),
        cross_city_since: networked_since.unwrap_or_default(),
    }
}

/// One institution of this city's registry.
pub(crate) async fn institution(
    conn: &mut AnyConnection,
    code: &InstitutionCode,
) -> Result<Option<pb::Institution>, CatalogError> {
    let sql = format!("SELECT {INSTITUTION_COLUMNS} FROM institutions WHERE institution_code = $1");
    let row: Option<InstitutionRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(code.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(institution_to_wire))
}

/// The filters of a ListInstitutions request, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Filters {
    /// 0 for every kind, else the national fixmedins_type.
    pub(crate) kind: i64,
    /// 0 for every level.
    pub(crate) level: i64,
    /// Only institutions networked for cross-city settlement on this date.
    pub(crate) networked_on: Option<Date>,
    /// A digest of the filters as asked, which a page token carries so that it is refused
    /// with other filters.
    pub(crate) fingerprint: String,
}

/// Where a listing continues: after the last code of the previous page.
#[derive(Debug, Clone)]
pub(crate) struct PageToken {
    fingerprint: String,
    after_code: String,
}

impl PageToken {
    /// Characters of the filter digest a token carries: enough to tell filters apart.
    const FINGERPRINT_CHARS: usize = 16;

    pub(crate) fn fingerprint(filters_as_asked: &str) -> String {
        let mut digest = yitong_store::replies::digest(filters_as_asked.as_bytes());
        digest.truncate(Self::FINGERPRINT_CHARS);
        digest
    }

    pub(crate) fn parse(text: &str, filters: &Filters) -> Result<Option<Self>, Invalid> {
        if text.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            Invalid::new(
                "page_token",
                "must be the next_page_token of a previous reply with the same filters",
            )
        };
        let decoded = BASE64.decode(text).map_err(|_| invalid())?;
        let decoded = String::from_utf8(decoded).map_err(|_| invalid())?;
        let (fingerprint, after_code) = decoded.split_once(':').ok_or_else(invalid)?;
        if fingerprint != filters.fingerprint || InstitutionCode::parse(after_code).is_err() {
            return Err(invalid());
        }
        Ok(Some(PageToken {
            fingerprint: fingerprint.to_owned(),
            after_code: after_code.to_owned(),
        }))
    }

    fn encode(&self) -> String {
        BASE64.encode(format!("{}:{}", self.fingerprint, self.after_code))
    }
}

/// One page of this city's institutions matching `filters`, by code, and the next page's token.
pub(crate) async fn list(
    conn: &mut AnyConnection,
    city: PoolCode,
    filters: &Filters,
    token: Option<&PageToken>,
    page_size: usize,
) -> Result<(Vec<pb::Institution>, String), CatalogError> {
    let sql = format!(
        "SELECT {INSTITUTION_COLUMNS} FROM institutions \
         WHERE city = $1 AND ($2 = 0 OR kind = $2) AND ($3 = 0 OR level = $3) \
         AND ($4 = 0 OR (networked_since IS NOT NULL AND networked_since <= $5)) \
         AND institution_code > $6 \
         ORDER BY institution_code LIMIT $7"
    );
    let mut rows: Vec<InstitutionRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(city.to_string())
        .bind(filters.kind)
        .bind(filters.level)
        .bind(i64::from(filters.networked_on.is_some()))
        .bind(
            filters
                .networked_on
                .map(|date| date.to_string())
                .unwrap_or_default(),
        )
        .bind(
            token
                .map(|token| token.after_code.clone())
                .unwrap_or_default(),
        )
        // One row more than a page tells whether another page follows.
        .bind(i64::try_from(page_size + 1).expect("page sizes are small"))
        .fetch_all(&mut *conn)
        .await?;
    let next_page_token = if rows.len() > page_size {
        rows.truncate(page_size);
        PageToken {
            fingerprint: filters.fingerprint.clone(),
            after_code: rows.last().expect("a full page").0.clone(),
        }
        .encode()
    } else {
        String::new()
    };
    Ok((
        rows.into_iter().map(institution_to_wire).collect(),
        next_page_token,
    ))
}
