//! States stored as their words: reading a word column back into its enum.

use yitong_store::sqlx::{self, Row, any::AnyRow};

/// The enum value of the word in `column`; a word none of the enum's is a decode error naming
/// the column and the word, never a default.
pub(crate) fn decode_column<T>(
    row: &AnyRow,
    column: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: format!("unknown {column} {text:?}").into(),
    })
}
