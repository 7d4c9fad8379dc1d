//! The catalog store: published changes, versions, and the reads that lookups and downloads
//! make. Portable SQL; see `migrations/catalog/`.

use std::collections::HashMap;

use yitong_core::{Amount, Date, MessageId, PoolCode};
use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe};
use yitong_store::{Store, multi_row_insert, now_ms};

use crate::item::{Change, ChangeKind, Grade, Item, ItemCode, ItemKind, covering_after_latest};
use crate::{CatalogError, Ratio, Refusal};

/// Rows one multi-row INSERT carries (11 values each). Measured on the seed catalog (2,150
/// items a city): larger statements cost SQLite more per row (400 rows: ~300 ms a city; 50
/// rows: ~30 ms), and PostgreSQL gains nothing beyond this.
const ROWS_PER_INSERT_MAX: usize = 50;
/// Codes one `IN (...)` list carries.
const CODES_PER_SELECT_MAX: usize = 500;

const CHANGE_COLUMNS: &str = "code, version, change_kind, effective_date, name, kind, grade, \
     self_pay_ratio_bp, price_cap_fen, valid_from, valid_until";

type ChangeRow = (
    String,
    i64,
    i64,
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    String,
    Option<String>,
);

fn change_from_row(row: ChangeRow) -> Result<Change, CatalogError> {
    let (code, version, change_kind, effective_date, name, kind, grade, ratio, cap, from, until) =
        row;
    let corrupt =
        |what: &str| CatalogError::Corrupt(format!("catalog change {code}@{version}: {what}"));
    let date = |text: &str| yitong_core::parse_date(text).map_err(|_| corrupt("malformed date"));
    let item = Item {
        code: ItemCode::parse(&code).map_err(|_| corrupt("malformed code"))?,
        name,
        kind: ItemKind::from_code(kind).ok_or_else(|| corrupt("unknown kind"))?,
        grade: Grade::from_code(grade).ok_or_else(|| corrupt("unknown grade"))?,
        self_pay_ratio: Ratio::from_basis_points(ratio)
            .ok_or_else(|| corrupt("ratio out of range"))?,
        price_cap: cap.map(Amount::from_fen),
        valid_from: date(&from)?,
        valid_until: until.as_deref().map(date).transpose()?,
    };
    Ok(Change {
        version: u64::try_from(version).map_err(|_| corrupt("negative version"))?,
        kind: ChangeKind::from_code(change_kind).ok_or_else(|| corrupt("unknown change kind"))?,
        effective_date: date(&effective_date)?,
        item,
    })
}

/// The city's current catalog version; 0 before anything is published.
pub(crate) async fn current_version(conn: &mut AnyConnection) -> Result<u64, CatalogError> {
    let version: i64 = sqlx::query_scalar("SELECT version FROM catalog_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    u64::try_from(version).map_err(|_| CatalogError::Corrupt("negative catalog version".into()))
}

/// Every change of each code published up to `version`, by code, each in version order.
///
/// Reading up to a version read before gives a consistent picture without a snapshot: rows of
/// versions up to it are never rewritten, and later publications carry higher versions.
pub(crate) async fn histories(
    conn: &mut AnyConnection,
    codes: &[&ItemCode],
    version: u64,
) -> Result<HashMap<ItemCode, Vec<Change>>, CatalogError> {
    let mut histories: HashMap<ItemCode, Vec<Change>> = HashMap::new();
    for chunk in codes.chunks(CODES_PER_SELECT_MAX) {
        let placeholders: Vec<String> = (2..chunk.len() + 2).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT {CHANGE_COLUMNS} FROM catalog_changes WHERE version <= $1 AND code IN ({}) \
             ORDER BY code, version",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_as::<_, ChangeRow>(AssertSqlSafe(sql)).bind(as_i64(version));
        for code in chunk {
            query = query.bind(code.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            let change = change_from_row(row)?;
            histories
                .entry(change.item.code.clone())
                .or_default()
                .push(change);
        }
    }
    Ok(histories)
}

/// Up to `limit` changes published after `since` and up to `target`, by version then code: what
/// a node's copy of the catalog lacks (`cache`).
pub(crate) async fn changes_after(
    conn: &mut AnyConnection,
    since: u64,
    target: u64,
    limit: usize,
) -> Result<Vec<Change>, CatalogError> {
    let sql = format!(
        "SELECT {CHANGE_COLUMNS} FROM catalog_changes WHERE version > $1 AND version <= $2 \
         ORDER BY version, code LIMIT $3"
    );
    let rows: Vec<ChangeRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(as_i64(since))
        .bind(as_i64(target))
        .bind(i64::try_from(limit).expect("limits are small"))
        .fetch_all(&mut *conn)
        .await?;
    rows.into_iter().map(change_from_row).collect()
}

/// Where a download has got to: the last change sent, or the client's version at the start.
#[derive(Debug, Clone)]
pub(crate) enum Cursor {
    Start { since_version: u64 },
    After { version: u64, code: ItemCode },
}

/// Up to `limit` changes after `cursor` and up to `target`, by version then code.
pub(crate) async fn changes_page(
    store: &Store,
    cursor: &Cursor,
    target: u64,
    limit: usize,
) -> Result<Vec<Change>, CatalogError> {
    let limit = i64::try_from(limit).expect("page sizes are small");
    let rows: Vec<ChangeRow> = match cursor {
        Cursor::Start { since_version } => {
            let sql = format!(
                "SELECT {CHANGE_COLUMNS} FROM catalog_changes WHERE version > $1 AND version <= $2 \
                 ORDER BY version, code LIMIT $3"
            );
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(as_i64(*since_version))
                .bind(as_i64(target))
                .bind(limit)
                .fetch_all(store.pool())
                .await?
        }
        Cursor::After { version, code } => {
            let sql = format!(
                "SELECT {CHANGE_COLUMNS} FROM catalog_changes \
                 WHERE (version > $1 OR (version = $1 AND code > $2)) AND version <= $3 \
                 ORDER BY version, code LIMIT $4"
            );
            sqlx::query_as(AssertSqlSafe(sql))
                .bind(as_i64(*version))
                .bind(code.as_str())
                .bind(as_i64(target))
                .bind(limit)
                .fetch_all(store.pool())
                .await?
        }
    };
    rows.into_iter().map(change_from_row).collect()
}

/// Versions are counted from 1 and stored as BIGINT; they never come near i64::MAX.
fn as_i64(version: u64) -> i64 {
    i64::try_from(version).expect("catalog versions fit in BIGINT")
}

/// An item leaving the catalog from `effective_date`.
#[derive(Debug, Clone)]
pub(crate) struct Withdrawal {
    pub(crate) code: ItemCode,
    pub(crate) effective_date: Date,
}

/// A parsed change set: each code at most once, 1 to [`ChangeSet::CHANGES_MAX`] changes.
#[derive(Debug, Clone)]
pub(crate) struct ChangeSet {
    pub(crate) message_id: MessageId,
    pub(crate) added: Vec<Item>,
    pub(crate) changed: Vec<Item>,
    pub(crate) withdrawn: Vec<Withdrawal>,
    pub(crate) note: String,
    pub(crate) operator_id: String,
}

impl ChangeSet {
    /// Changes one publication may hold in all.
    pub(crate) const CHANGES_MAX: usize = 5_000;
}

/// What a publication did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Published {
    pub(crate) version: u64,
    pub(crate) published_at_ms: i64,
    pub(crate) added: usize,
    pub(crate) changed: usize,
    pub(crate) withdrawn: usize,
}

/// Applies a change set as the next version, inside the caller's write transaction: either all
/// of it is written or, on any refusal, the caller rolls everything back.
///
/// Every change must take effect on or after `today` (a settled claim never changes
/// classification) and after the code's latest change (a code's history only grows at its end,
/// so the change in force on a date is simply the last one effective by then).
pub(crate) async fn publish(
    conn: &mut AnyConnection,
    set: &ChangeSet,
    today: Date,
) -> Result<Published, CatalogError> {
    // Taking the head row first makes concurrent publications wait for this one to finish.
    let version: i64 = sqlx::query_scalar(
        "UPDATE catalog_head SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut *conn)
    .await?;
    let version = u64::try_from(version)
        .map_err(|_| CatalogError::Corrupt("negative catalog version".into()))?;

    let not_before_today = |date: Date, field: String| {
        if date < today {
            Err(CatalogError::Invalid(yitong_core::Invalid::new(
                field,
                format!(
                    "must not be before today ({today}): settled claims keep their classification"
                ),
            )))
        } else {
            Ok(())
        }
    };
    for (index, item) in set.added.iter().enumerate() {
        not_before_today(item.valid_from, format!("added[{index}].valid_from"))?;
    }
    for (index, item) in set.changed.iter().enumerate() {
        not_before_today(item.valid_from, format!("changed[{index}].valid_from"))?;
    }
    for (index, withdrawal) in set.withdrawn.iter().enumerate() {
        not_before_today(
            withdrawal.effective_date,
            format!("withdrawn[{index}].effective_date"),
        )?;
    }

    let codes: Vec<&ItemCode> = set
        .added
        .iter()
        .map(|item| &item.code)
        .chain(set.changed.iter().map(|item| &item.code))
        .chain(set.withdrawn.iter().map(|withdrawal| &withdrawal.code))
        .collect();
    let histories = histories(conn, &codes, version - 1).await?;
    let latest = |code: &ItemCode| histories.get(code).and_then(|history| history.last());
    let after_latest = |code: &ItemCode, date: Date, field: &str| match latest(code) {
        Some(change) if date <= change.effective_date => Err(CatalogError::refused(
            Refusal::ItemChangeNotAfterLatest,
            field.to_owned(),
            code,
            format!(
                "already has a change taking effect on {} (version {}); a new one must take effect after it",
                change.effective_date, change.version
            ),
        )),
        _ => Ok(()),
    };

    let mut changes = Vec::with_capacity(codes.len());
    for (index, item) in set.added.iter().enumerate() {
        let field = format!("added[{index}].valid_from");
        after_latest(&item.code, item.valid_from, &field)?;
        if covering_after_latest(latest(&item.code), item.valid_from).is_some() {
            return Err(CatalogError::refused(
                Refusal::ItemAlreadyListed,
                format!("added[{index}].code"),
                &item.code,
                format!(
                    "is already in the catalog on {}; publish it as changed",
                    item.valid_from
                ),
            ));
        }
        changes.push(Change {
            version,
            kind: ChangeKind::Added,
            effective_date: item.valid_from,
            item: item.clone(),
        });
    }
    for (index, item) in set.changed.iter().enumerate() {
        let field = format!("changed[{index}].valid_from");
        after_latest(&item.code, item.valid_from, &field)?;
        if covering_after_latest(latest(&item.code), item.valid_from).is_none() {
            return Err(CatalogError::refused(
                Refusal::ItemNotListed,
                format!("changed[{index}].code"),
                &item.code,
                format!(
                    "is not in the catalog on {}; publish it as added",
                    item.valid_from
                ),
            ));
        }
        changes.push(Change {
            version,
            kind: ChangeKind::Changed,
            effective_date: item.valid_from,
            item: item.clone(),
        });
    }
    for (index, withdrawal) in set.withdrawn.iter().enumerate() {
        let field = format!("withdrawn[{index}].effective_date");
        let code = &withdrawal.code;
        after_latest(code, withdrawal.effective_date, &field)?;
        let Some(ending) = covering_after_latest(latest(code), withdrawal.effective_date) else {
            return Err(CatalogError::refused(
                Refusal::ItemNotListed,
                format!("withdrawn[{index}].code"),
                code,
                format!("is not in the catalog on {}", withdrawal.effective_date),
            ));
        };
        let mut ending = ending.clone();
        ending.valid_until = Some(
            withdrawal
                .effective_date
                .pred_opt()
                .expect("a withdrawal takes effect after the code's first day"),
        );
        changes.push(Change {
            version,
            kind: ChangeKind::Withdrawn,
            effective_date: withdrawal.effective_date,
            item: ending,
        });
    }

    insert_changes(conn, &changes).await?;
    let published = Published {
        version,
        published_at_ms: now_ms(),
        added: set.added.len(),
        changed: set.changed.len(),
        withdrawn: set.withdrawn.len(),
    };
    insert_version(
        conn,
        &published,
        Some(set.message_id.as_str()),
        &set.note,
        &set.operator_id,
    )
    .await?;
    Ok(published)
}

async fn insert_changes(conn: &mut AnyConnection, changes: &[Change]) -> Result<(), sqlx::Error> {
    for chunk in changes.chunks(ROWS_PER_INSERT_MAX) {
        let sql = multi_row_insert(
            &format!("catalog_changes ({CHANGE_COLUMNS})"),
            11,
            chunk.len(),
        );
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for change in chunk {
            let item = &change.item;
            insert = insert
                .bind(item.code.to_string())
                .bind(as_i64(change.version))
                .bind(change.kind as i64)
                .bind(change.effective_date.to_string())
                .bind(item.name.clone())
                .bind(item.kind as i64)
                .bind(item.grade as i64)
                .bind(item.self_pay_ratio.basis_points())
                .bind(item.price_cap.map(Amount::fen))
                .bind(item.valid_from.to_string())
                .bind(item.valid_until.map(|until| until.to_string()));
        }
        insert.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_version(
    conn: &mut AnyConnection,
    published: &Published,
    message_id: Option<&str>,
    note: &str,
    operator_id: &str,
) -> Result<(), sqlx::Error> {
    let count = |n: usize| i64::try_from(n).expect("change sets are small");
    sqlx::query(
        "INSERT INTO catalog_versions (version, message_id, published_at_ms, note, operator_id, \
         added_count, changed_count, withdrawn_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(as_i64(published.version))
    .bind(message_id)
    .bind(published.published_at_ms)
    .bind(note)
    .bind(operator_id)
    .bind(count(published.added))
    .bind(count(published.changed))
    .bind(count(published.withdrawn))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Loads a city's seed catalog into an empty store as version 1, every item added, so that a
/// download from version 0 hands an HIS the whole catalog. Does nothing once a version exists.
pub async fn seed_items(
    store: &Store,
    city: PoolCode,
    items: &[Item],
) -> Result<usize, sqlx::Error> {
    let mut tx = store.begin_write().await?;
    let version: i64 = sqlx::query_scalar("SELECT version FROM catalog_head WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    if version > 0 || items.is_empty() {
        return Ok(0);
    }
    let changes: Vec<Change> = items
        .iter()
        .map(|item| Change {
            version: 1,
            kind: ChangeKind::Added,
            effective_date: item.valid_from,
            item: item.clone(),
        })
        .collect();
    insert_changes(&mut tx, &changes).await?;
    let published = Published {
        version: 1,
        published_at_ms: now_ms(),
        added: items.len(),
        changed: 0,
        withdrawn: 0,
    };
    insert_version(
        &mut tx,
        &published,
        None,
        "catalog loaded from seed files",
        "seed",
    )
    .await?;
    sqlx::query("UPDATE catalog_head SET version = 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(city = %city, items = items.len(), "seeded catalog items");
    Ok(items.len())
}
