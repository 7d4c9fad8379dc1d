//! Exports of a clearing extract to Excel (xlsx, with rust_xlsxwriter) and CSV: one row per
//! clearing detail, amounts in yuan with two decimals, and a last row of sums computed in fen;
//! each row ends with its clearing type (national clr_type) and its fund pay by fund type
//! (setldetail, "310100/M03900:30.00;310100:12.00").

use std::fmt::Write as _;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use yitong_proto::ledger::v1::{ClearingDetail, ConfirmationStatus};

use crate::text::{self, Lang};

/// A clearing extract ready to export: the rows in the ledger's order.
#[derive(Debug, Clone)]
pub struct ClearingSheet {
    pub title: String,
    pub details: Vec<ClearingDetail>,
}

/// The columns, by word key; the amount columns are the ones summed.
const COLUMNS: [&str; 15] = [
    "settlement_id",
    "visit",
    "person",
    "insured_city",
    "treatment_city",
    "institution",
    "date",
    "total_amount",
    "insured_city_pay",
    "fund_pay",
    "account_pay",
    "status",
    "reason",
    "clearing_type",
    "fund_payments",
];

/// Index of the first amount column; the four amount columns follow one another.
const FIRST_AMOUNT: usize = 7;

fn status_word(detail: &ClearingDetail, lang: Lang) -> &'static str {
    lang.t(match detail.confirmation() {
        ConfirmationStatus::Included => "included",
        ConfirmationStatus::Excluded => "excluded",
        _ => "unconfirmed",
    })
}

fn amounts(detail: &ClearingDetail) -> [i64; 4] {
    [
        text::fen(&detail.total_amount),
        text::fen(&detail.insured_city_pay),
        text::fen(&detail.fund_pay),
        text::fen(&detail.account_pay),
    ]
}

/// The sums of the four amount columns, in fen.
pub fn sums(details: &[ClearingDetail]) -> [i64; 4] {
    details.iter().fold([0; 4], |mut sums, detail| {
        for (sum, amount) in sums.iter_mut().zip(amounts(detail)) {
            *sum += amount;
        }
        sums
    })
}

fn texts(detail: &ClearingDetail) -> [String; 7] {
    [
        detail.settlement_id.clone(),
        detail.visit_id.clone(),
        detail.person_no.clone(),
        detail.insured_city.clone(),
        detail.treatment_city.clone(),
        detail.institution_code.clone(),
        detail.settlement_date.clone(),
    ]
}

/// A detail's fund lines in one cell: "fund type/disease:amount" joined by ";", the disease
/// left out for the ordinary annual cap.
pub fn fund_payments_text(detail: &ClearingDetail) -> String {
    let mut cell = String::new();
    for (index, line) in detail.fund_payments.iter().enumerate() {
        if index > 0 {
            cell.push(';');
        }
        cell.push_str(&line.fund_pay_type);
        if !line.disease_code.is_empty() {
            let _ = write!(cell, "/{}", line.disease_code);
        }
        let _ = write!(cell, ":{}", line.amount);
    }
    cell
}

/// Fen as the yuan number a spreadsheet cell holds. The conversion is exact to the cent for
/// every amount the wire can carry (16 significant digits); the sums are computed in fen.
fn cell_yuan(fen: i64) -> f64 {
    Decimal::new(fen, 2).to_f64().unwrap_or_default()
}

/// The extract as an xlsx workbook: a header row, a row per detail, and a sums row.
pub fn clearing_xlsx(sheet: &ClearingSheet, lang: Lang) -> Result<Vec<u8>, XlsxError> {
    let mut workbook = Workbook::new();
    let worksheet = workbook.add_worksheet();
    worksheet.set_name("clearing")?;
    let bold = Format::new().set_bold();
    let money = Format::new().set_num_format("0.00");
    let bold_money = Format::new().set_bold().set_num_format("0.00");
    for (column, key) in COLUMNS.iter().enumerate() {
        worksheet.write_string_with_format(0, column as u16, lang.t(key), &bold)?;
    }
    let mut row: u32 = 1;
    for detail in &sheet.details {
        for (column, value) in texts(detail).iter().enumerate() {
            worksheet.write_string(row, column as u16, value)?;
        }
        for (offset, fen) in amounts(detail).into_iter().enumerate() {
            worksheet.write_number_with_format(
                row,
                (FIRST_AMOUNT + offset) as u16,
                cell_yuan(fen),
                &money,
            )?;
        }
        worksheet.write_string(row, 11, status_word(detail, lang))?;
        worksheet.write_string(row, 12, &detail.exclusion_reason)?;
        // A code, as the national files write it, not a number to sum.
        worksheet.write_string(row, 13, detail.clearing_type.to_string())?;
        worksheet.write_string(row, 14, fund_payments_text(detail))?;
        row += 1;
    }
    worksheet.write_string_with_format(row, 0, lang.t("all"), &bold)?;
    for (offset, fen) in sums(&sheet.details).into_iter().enumerate() {
        worksheet.write_number_with_format(
            row,
            (FIRST_AMOUNT + offset) as u16,
            cell_yuan(fen),
            &bold_money,
        )?;
    }
    worksheet.set_column_width(0, 24)?;
    workbook.save_to_buffer()
}

/// The extract as CSV, with the same columns and sums row.
pub fn clearing_csv(sheet: &ClearingSheet, lang: Lang) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(COLUMNS.iter().map(|key| lang.t(key)))?;
    for detail in &sheet.details {
        let mut record: Vec<String> = texts(detail).to_vec();
        record.extend(amounts(detail).into_iter().map(text::fen_to_yuan));
        record.push(status_word(detail, lang).to_owned());
        record.push(detail.exclusion_reason.clone());
        record.push(detail.clearing_type.to_string());
        record.push(fund_payments_text(detail));
        writer.write_record(&record)?;
    }
    let mut last = vec![lang.t("all").to_owned()];
    last.extend(std::iter::repeat_n(String::new(), FIRST_AMOUNT - 1));
    last.extend(sums(&sheet.details).into_iter().map(text::fen_to_yuan));
    last.extend(std::iter::repeat_n(String::new(), 4));
    writer.write_record(&last)?;
    writer
        .into_inner()
        .map_err(|error| csv::Error::from(error.into_error()))
}
