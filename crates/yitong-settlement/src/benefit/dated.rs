//! A person's dated standings at the insured city: the filings toward a treatment city and the
//! certifications for a disease are both rows of a person and a subject (the treatment city, the
//! disease), live under one status word until cancelled, and in force from `valid_from` to
//! `valid_until` inclusive (empty: open-ended), dates as "YYYY-MM-DD" text, which orders as the
//! dates do. This module holds what the two share: which rows stand on a date, whether new dates
//! overlap a live row, the next serial of an id, and the cancellation of a row. What a standing
//! means (a filing's kind, a certification's institutions) stays with each.

use yitong_core::Date;
use yitong_store::sqlx::{self, AnyConnection, AssertSqlSafe, any::AnyRow};

use super::BenefitError;

/// One kind of dated standing, as its table stores it.
pub(super) struct Dated {
    /// The table: `filings`, `certifications`.
    pub table: &'static str,
    /// Its id column: `filing_id`, `certification_id`.
    pub id_column: &'static str,
    /// The column of what the standing is toward: `treatment_city`, `disease_code`.
    pub subject_column: &'static str,
    /// The status word of a live row: `filed`, `certified`.
    pub live: &'static str,
    /// The columns a read returns, in the order the kind's `row_of` reads them by name.
    pub columns: &'static str,
    /// The one-row table of the next serial: `filing_serials`, `certification_serials`.
    pub serials: &'static str,
}

impl Dated {
    /// The person's live rows toward `subject` in force on `date`, in no particular order.
    pub(super) async fn in_force_on(
        &self,
        conn: &mut AnyConnection,
        person_no: &str,
        subject: &str,
        date: Date,
    ) -> Result<Vec<AnyRow>, BenefitError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE person_no = $1 AND {} = $2 AND status = '{}' \
             AND valid_from <= $3 AND (valid_until = '' OR valid_until >= $3)",
            self.columns, self.table, self.subject_column, self.live
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(person_no)
            .bind(subject)
            .bind(date.to_string())
            .fetch_all(&mut *conn)
            .await?)
    }

    /// The id of a live row of the person toward `subject` whose dates overlap `from` to
    /// `until` (empty: open-ended), if any: two overlap unless one ends before the other begins.
    pub(super) async fn overlapping(
        &self,
        conn: &mut AnyConnection,
        person_no: &str,
        subject: &str,
        from: &str,
        until: &str,
    ) -> Result<Option<String>, BenefitError> {
        let sql = format!(
            "SELECT {} FROM {} WHERE person_no = $1 AND {} = $2 \
             AND status = '{}' AND (valid_until = '' OR valid_until >= $3) \
             AND ($4 = '' OR valid_from <= $4) LIMIT 1",
            self.id_column, self.table, self.subject_column, self.live
        );
        Ok(sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(person_no)
            .bind(subject)
            .bind(from)
            .bind(until)
            .fetch_optional(&mut *conn)
            .await?)
    }

    /// Takes the next serial of a new row's id.
    pub(super) async fn next_serial(&self, conn: &mut AnyConnection) -> Result<i64, BenefitError> {
        let sql = format!(
            "UPDATE {} SET next = next + 1 WHERE id = 1 RETURNING next - 1",
            self.serials
        );
        Ok(sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *conn)
            .await?)
    }

    /// Marks the row cancelled by `message_id` at `now_ms`.
    pub(super) async fn cancel(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        message_id: &str,
        now_ms: i64,
    ) -> Result<(), BenefitError> {
        let sql = format!(
            "UPDATE {} SET status = 'cancelled', cancel_message_id = $2, cancelled_at_ms = $3 \
             WHERE {} = $1",
            self.table, self.id_column
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(message_id)
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
