//! Daily reconciliation without typing totals (national 3202): a bureau's own figures are its
//! city's settlement records, an institution's its own, read from the treatment city's
//! settlement service and compared row by row with the ledger; or an institution's finance
//! office uploads its HIS's detail file. Every break is listed by class, each linked to the
//! settlement and its trace. The day's totals are then compared too (national 3201), broken down
//! by clearing type and by fund type: a bureau's own breakdown from its settlement records (an
//! uploaded detail file carries none, so only the ledger's lines are shown), every differing
//! line named.

use std::collections::BTreeMap;

use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use tokio_stream::StreamExt;
use yitong_core::{Owner, Service};
use yitong_proto::catalog::v1::ListInstitutionsRequest;
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_proto::ledger::v1::reconcile_details_request::Item as Sent;
use yitong_proto::ledger::v1::reconcile_details_response::Item as Received;
use yitong_proto::ledger::v1::reconciliation_scope::Subject;
use yitong_proto::ledger::v1::{
    ClearingTypeTotals, DetailResult, DetailRow, DetailRowBatch, DetailRowResult, FundTypeTotal,
    ReconcileDetailsHeader, ReconcileDetailsRequest, ReconcileDetailsSummary,
    ReconcileTotalsRequest, ReconcileTotalsResponse, ReconciliationResult, ReconciliationScope,
    ReconciliationTotals,
};
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_proto::settlement::v1::{FundPayment, ListSettlementsRequest, Settlement};
use yitong_rpc::Caller;

use crate::Shared;
use crate::pages::{FORM_BYTES_MAX, Fields, Signed, message_id, request};
use crate::staff::Role;
use crate::text::{self, Lang};

/// Rows per batch sent to the ledger: its maximum.
const BATCH_ROWS_MAX: usize = 1_000;
/// Settlements per page asked of the settlement service: its maximum.
const SETTLEMENTS_PAGE: u32 = 200;
/// Institutions per page asked of the catalog.
const INSTITUTIONS_PAGE: u32 = 200;
/// Rows a day reconciled in the console holds at most; a bigger day is for
/// `yitong reconcile details`, which streams from a file.
pub const DAY_ROWS_MAX: usize = 200_000;
/// Largest detail file uploaded.
pub const UPLOAD_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Breaks a page lists; the summary counts them all.
const BREAKS_SHOWN_MAX: usize = 2_000;

#[derive(Debug, serde::Deserialize)]
pub struct DayQuery {
    #[serde(default)]
    date: Option<String>,
}

/// The form: a date, and for a finance office the upload too.
pub async fn page(signed: Signed, Query(query): Query<DayQuery>) -> Response {
    if let Err(refusal) = signed.require(&[Role::Bureau, Role::Finance]) {
        return refusal;
    }
    let date = query
        .date
        .unwrap_or_else(|| text::today().format("%Y-%m-%d").to_string());
    signed
        .page(signed.lang.t("reconcile"), form(&signed, &date))
        .into_response()
}

fn form(signed: &Signed, date: &str) -> Markup {
    let lang = signed.lang;
    html! {
        form.card method="post" action="/reconcile" {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            label for="date" { (lang.t("date")) }
            input #date type="date" name="date" value=(date) required;
            button type="submit" { (lang.t("run")) }
        }
        @if signed.role() == Role::Finance {
            form.card method="post" action="/reconcile/upload" enctype="multipart/form-data" {
                input type="hidden" name="csrf" value=(signed.session.csrf);
                label for="upload-date" { (lang.t("date")) }
                input #upload-date type="date" name="date" value=(date) required;
                label for="file" { (lang.t("upload")) }
                input #file type="file" name="file" accept=".csv,text/csv" required;
                button type="submit" { (lang.t("run")) }
            }
        }
    }
}

/// Whose records a staff member reconciles: a bureau its city as treatment city, a finance
/// office its institution.
fn scope_of(caller: &Caller) -> Option<Subject> {
    match caller {
        Caller::Bureau(Owner::Pool(city)) => Some(Subject::TreatmentCity(city.to_string())),
        Caller::Institution(code) => Some(Subject::InstitutionCode(code.as_str().to_owned())),
        _ => None,
    }
}

fn valid_date(date: &str) -> bool {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
}

/// Reconciles a day from the settlement records.
pub async fn run(
    State(console): State<Shared>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    let fields = Fields::parse(&body[..body.len().min(FORM_BYTES_MAX)]);
    if let Err(refusal) = signed.check_csrf(&fields) {
        return refusal;
    }
    if let Err(refusal) = signed.require(&[Role::Bureau, Role::Finance]) {
        return refusal;
    }
    let date = fields.get("date").unwrap_or_default().to_owned();
    if !valid_date(&date) {
        return signed.fail(StatusCode::UNPROCESSABLE_ENTITY, signed.lang.t("date"));
    }
    let (rows, totals) = match own_rows(&console, &signed, &date).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    compare(&console, &signed, &date, rows, totals).await
}

/// Sums in fen per clearing type (count, total, fund, account, cash) and per (fund type,
/// disease), as the ledger breaks down its totals.
#[derive(Debug, Default)]
struct Lines {
    clearing: BTreeMap<i32, [i64; 5]>,
    funds: BTreeMap<(String, String), i64>,
}

impl Lines {
    fn add(&mut self, clearing_type: i32, row: &DetailRow, fund_payments: &[FundPayment]) {
        let line = self.clearing.entry(clearing_type).or_default();
        for (sum, amount) in line.iter_mut().zip(figures(row)) {
            *sum += amount;
        }
        for payment in fund_payments {
            *self
                .funds
                .entry((payment.fund_pay_type.clone(), payment.disease_code.clone()))
                .or_default() += text::fen(&payment.amount);
        }
    }

    fn wire(self) -> (Vec<ClearingTypeTotals>, Vec<FundTypeTotal>) {
        let clearing = self
            .clearing
            .into_iter()
            .map(
                |(clearing_type, [count, total, fund, account, cash])| ClearingTypeTotals {
                    clearing_type,
                    count: u64::try_from(count).unwrap_or_default(),
                    total_amount: text::fen_to_yuan(total),
                    fund_pay: text::fen_to_yuan(fund),
                    account_pay: text::fen_to_yuan(account),
                    cash_pay: text::fen_to_yuan(cash),
                },
            )
            .collect();
        let funds = self
            .funds
            .into_iter()
            .filter(|(_, fen)| *fen != 0)
            .map(|((fund_pay_type, disease_code), fen)| FundTypeTotal {
                fund_pay_type,
                disease_code,
                amount: text::fen_to_yuan(fen),
            })
            .collect();
        (clearing, funds)
    }
}

/// A row's count (one) and amounts in fen.
fn figures(row: &DetailRow) -> [i64; 5] {
    [
        1,
        text::fen(&row.total_amount),
        text::fen(&row.fund_pay),
        text::fen(&row.account_pay),
        text::fen(&row.cash_pay),
    ]
}

/// The totals of `rows`, without a breakdown.
fn totals_of(rows: &[DetailRow]) -> ReconciliationTotals {
    let sums = rows.iter().fold([0_i64; 5], |mut sums, row| {
        for (sum, amount) in sums.iter_mut().zip(figures(row)) {
            *sum += amount;
        }
        sums
    });
    ReconciliationTotals {
        count: u64::try_from(sums[0]).unwrap_or_default(),
        total_amount: text::fen_to_yuan(sums[1]),
        fund_pay: text::fen_to_yuan(sums[2]),
        account_pay: text::fen_to_yuan(sums[3]),
        cash_pay: text::fen_to_yuan(sums[4]),
        ..Default::default()
    }
}

/// The staff member's own rows of `date`: each settlement settled that day, and each
/// cancellation booked that day as a row of its own with the amounts negated, as the ledger
/// books them.
async fn own_rows(
    console: &Shared,
    signed: &Signed,
    date: &str,
) -> Result<(Vec<DetailRow>, ReconciliationTotals), Response> {
    let city = signed
        .caller()
        .city()
        .expect("bureaus and institutions have a city");
    let owner = Owner::Pool(city);
    let institutions: Vec<String> = match signed.caller() {
        Caller::Institution(code) => vec![code.as_str().to_owned()],
        _ => {
            let mut catalog =
                CatalogServiceClient::new(signed.channel(console, owner, Service::Catalog)?);
            let mut codes = Vec::new();
            let mut page_token = String::new();
            loop {
                let reply = catalog
                    .list_institutions(request(ListInstitutionsRequest {
                        city: city.to_string(),
                        page_size: INSTITUTIONS_PAGE,
                        page_token,
                        ..Default::default()
                    }))
                    .await
                    .map_err(|status| signed.refused(&status))?
                    .into_inner();
                codes.extend(
                    reply
                        .institutions
                        .into_iter()
                        .map(|institution| institution.code),
                );
                if reply.next_page_token.is_empty() {
                    break;
                }
                page_token = reply.next_page_token;
            }
            codes
        }
    };
    let mut settlements =
        SettlementServiceClient::new(signed.channel(console, owner, Service::Settlement)?);
    let mut rows = Vec::new();
    let mut lines = Lines::default();
    for institution in institutions {
        let mut page_token = String::new();
        loop {
            let reply = settlements
                .list_settlements(request(ListSettlementsRequest {
                    institution_code: institution.clone(),
                    from_date: earliest_settlement_date(date),
                    to_date: date.to_owned(),
                    page_size: SETTLEMENTS_PAGE,
                    page_token,
                    ..Default::default()
                }))
                .await
                .map_err(|status| signed.refused(&status))?
                .into_inner();
            for settlement in &reply.settlements {
                for row in rows_of(settlement, date) {
                    let split = match (&settlement.cancellation, row.cancellation) {
                        (Some(cancellation), true) => cancellation.split.as_ref(),
                        _ => settlement.split.as_ref(),
                    };
                    let payments = split.map_or(&[][..], |split| &split.fund_payments[..]);
                    lines.add(settlement.clearing_type, &row, payments);
                    rows.push(row);
                }
            }
            if rows.len() > DAY_ROWS_MAX {
                return Err(signed.fail(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &format!("more than {DAY_ROWS_MAX} rows; use yitong reconcile details"),
                ));
            }
            if reply.next_page_token.is_empty() {
                break;
            }
            page_token = reply.next_page_token;
        }
    }
    rows.sort_by(|a, b| a.settlement_id.as_bytes().cmp(b.settlement_id.as_bytes()));
    let (clearing_types, fund_types) = lines.wire();
    let totals = ReconciliationTotals {
        clearing_types,
        fund_types,
        ..totals_of(&rows)
    };
    Ok((rows, totals))
}

/// A cancellation booked on `date` may cancel a settlement of up to a month before (the
/// listing is by settlement date, at most 31 days).
fn earliest_settlement_date(date: &str) -> String {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.checked_sub_days(chrono::Days::new(31)))
        .map(|day| day.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| date.to_owned())
}

/// The rows a settlement record gives on `date`.
pub fn rows_of(settlement: &Settlement, date: &str) -> Vec<DetailRow> {
    let mut rows = Vec::new();
    let split = settlement.split.clone().unwrap_or_default();
    if settlement.settlement_date == date {
        rows.push(DetailRow {
            settlement_id: settlement.settlement_id.clone(),
            visit_id: settlement.visit_id.clone(),
            person_no: settlement.person_no.clone(),
            settlement_date: settlement.settlement_date.clone(),
            total_amount: split.total_amount.clone(),
            fund_pay: split.fund_pay.clone(),
            account_pay: split.account_pay.clone(),
            cash_pay: split.cash_pay.clone(),
            cancellation: false,
            message_id: settlement.message_id.clone(),
        });
    }
    if let Some(cancellation) = &settlement.cancellation
        && cancellation.cancellation_date == date
    {
        let reversing = cancellation.split.clone().unwrap_or_default();
        rows.push(DetailRow {
            settlement_id: cancellation.cancellation_id.clone(),
            visit_id: settlement.visit_id.clone(),
            person_no: settlement.person_no.clone(),
            settlement_date: cancellation.cancellation_date.clone(),
            total_amount: reversing.total_amount,
            fund_pay: reversing.fund_pay,
            account_pay: reversing.account_pay,
            cash_pay: reversing.cash_pay,
            cancellation: true,
            message_id: cancellation.message_id.clone(),
        });
    }
    rows
}

/// One row of an HIS detail file, as `yitong reconcile details` reads it.
#[derive(Debug, serde::Deserialize)]
struct CsvRow {
    settlement_id: String,
    visit_id: String,
    person_no: String,
    settlement_date: String,
    total_amount: String,
    fund_pay: String,
    account_pay: String,
    cash_pay: String,
    cancellation: String,
    #[serde(default)]
    message_id: String,
}

/// Reads an HIS detail file: the header of `yitong reconcile details`, in any row order.
pub fn parse_detail_file(bytes: &[u8]) -> Result<Vec<DetailRow>, String> {
    let mut reader = csv::Reader::from_reader(bytes);
    let mut rows = Vec::new();
    for (index, record) in reader.deserialize::<CsvRow>().enumerate() {
        let line = index + 2;
        let row = record.map_err(|error| format!("line {line}: {error}"))?;
        let cancellation = match row.cancellation.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "y" | "yes" => true,
            "false" | "0" | "n" | "no" | "" => false,
            other => {
                return Err(format!(
                    "line {line}: cancellation must be true or false, not {other:?}"
                ));
            }
        };
        rows.push(DetailRow {
            settlement_id: row.settlement_id,
            visit_id: row.visit_id,
            person_no: row.person_no,
            settlement_date: row.settlement_date,
            total_amount: row.total_amount,
            fund_pay: row.fund_pay,
            account_pay: row.account_pay,
            cash_pay: row.cash_pay,
            cancellation,
            message_id: row.message_id,
        });
        if rows.len() > DAY_ROWS_MAX {
            return Err(format!("more than {DAY_ROWS_MAX} rows"));
        }
    }
    rows.sort_by(|a, b| a.settlement_id.as_bytes().cmp(b.settlement_id.as_bytes()));
    Ok(rows)
}

/// Reconciles a day from an uploaded HIS detail file (a finance office).
pub async fn upload(
    State(console): State<Shared>,
    signed: Signed,
    mut multipart: Multipart,
) -> Response {
    let mut fields = Fields::default();
    let mut file: Option<Vec<u8>> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(error) => return signed.fail(StatusCode::BAD_REQUEST, &error.body_text()),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let bytes = match field.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return signed.fail(StatusCode::BAD_REQUEST, &error.body_text()),
        };
        if name == "file" {
            file = Some(bytes.to_vec());
        } else if bytes.len() <= FORM_BYTES_MAX {
            fields
                .0
                .push((name, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    if let Err(refusal) = signed.check_csrf(&fields) {
        return refusal;
    }
    if let Err(refusal) = signed.require(&[Role::Finance]) {
        return refusal;
    }
    let date = fields.get("date").unwrap_or_default().to_owned();
    if !valid_date(&date) {
        return signed.fail(StatusCode::UNPROCESSABLE_ENTITY, signed.lang.t("date"));
    }
    let Some(file) = file else {
        return signed.fail(StatusCode::UNPROCESSABLE_ENTITY, signed.lang.t("file"));
    };
    let rows = match parse_detail_file(&file) {
        Ok(rows) => rows,
        Err(message) => return signed.fail(StatusCode::UNPROCESSABLE_ENTITY, &message),
    };
    let totals = totals_of(&rows);
    compare(&console, &signed, &date, rows, totals).await
}

/// Streams `rows` to the ledger's ReconcileDetails for the staff member's scope and `date`,
/// then submits `totals` (with the breakdown they carry) to ReconcileTotals, and shows the
/// summary, the breaks and the totals by clearing type and fund type.
async fn compare(
    console: &Shared,
    signed: &Signed,
    date: &str,
    rows: Vec<DetailRow>,
    totals: ReconciliationTotals,
) -> Response {
    let Some(subject) = scope_of(signed.caller()) else {
        return signed.fail(StatusCode::FORBIDDEN, signed.lang.t("forbidden"));
    };
    let mut ledger = match signed.ledger(console) {
        Ok(ledger) => ledger,
        Err(refusal) => return refusal,
    };
    let run_id = message_id();
    let mut messages = vec![ReconcileDetailsRequest {
        item: Some(Sent::Header(ReconcileDetailsHeader {
            message_id: run_id.clone(),
            scope: Some(ReconciliationScope {
                subject: Some(subject),
            }),
            from_date: date.to_owned(),
            to_date: date.to_owned(),
            breaks_only: true,
            operator_id: signed.staff().username.clone(),
            ..Default::default()
        })),
    }];
    for chunk in rows.chunks(BATCH_ROWS_MAX) {
        messages.push(ReconcileDetailsRequest {
            item: Some(Sent::Rows(DetailRowBatch {
                rows: chunk.to_vec(),
            })),
        });
    }
    let stream = tokio_stream::iter(messages);
    let mut replies = match ledger.reconcile_details(stream).await {
        Ok(reply) => reply.into_inner(),
        Err(status) => {
            signed
                .record(console, "ReconcileDetails", &run_id, "refused")
                .await;
            return signed.refused(&status);
        }
    };
    let mut breaks: Vec<DetailRowResult> = Vec::new();
    let mut summary: Option<ReconcileDetailsSummary> = None;
    while let Some(item) = replies.next().await {
        match item {
            Ok(reply) => match reply.item {
                Some(Received::Row(row))
                    if row.result() != DetailResult::Matched && breaks.len() < BREAKS_SHOWN_MAX =>
                {
                    breaks.push(row);
                }
                Some(Received::Summary(found)) => summary = Some(found),
                _ => {}
            },
            Err(status) => {
                signed
                    .record(console, "ReconcileDetails", &run_id, "refused")
                    .await;
                return signed.refused(&status);
            }
        }
    }
    let Some(summary) = summary else {
        return signed.fail(
            StatusCode::BAD_GATEWAY,
            "the ledger ended the run without a summary",
        );
    };
    let outcome = if summary.result() == ReconciliationResult::Matched {
        "matched"
    } else {
        "mismatched"
    };
    signed
        .record(console, "ReconcileDetails", &run_id, outcome)
        .await;
    let totals_id = message_id();
    let totals_reply = match ledger
        .reconcile_totals(request(ReconcileTotalsRequest {
            message_id: totals_id.clone(),
            scope: Some(ReconciliationScope {
                subject: scope_of(signed.caller()),
            }),
            from_date: date.to_owned(),
            to_date: date.to_owned(),
            totals: Some(totals),
            operator_id: signed.staff().username.clone(),
            ..Default::default()
        }))
        .await
    {
        Ok(reply) => reply.into_inner(),
        Err(status) => {
            signed
                .record(console, "ReconcileTotals", &totals_id, "refused")
                .await;
            return signed.refused(&status);
        }
    };
    let outcome = if totals_reply.result() == ReconciliationResult::Matched {
        "matched"
    } else {
        "mismatched"
    };
    signed
        .record(console, "ReconcileTotals", &totals_id, outcome)
        .await;
    let body = results(signed, date, &summary, &breaks, &totals_reply);
    signed
        .page(signed.lang.t("reconcile"), body)
        .into_response()
}

/// The word for a break class.
pub fn class_word(result: DetailResult, lang: Lang) -> &'static str {
    lang.t(match result {
        DetailResult::MissingInLedger => "missing_in_ledger",
        DetailResult::MissingInSubmission => "missing_in_submission",
        DetailResult::Duplicate => "duplicate",
        DetailResult::AmountMismatch => "amount_mismatch",
        DetailResult::Timing => "timing",
        DetailResult::Matched | DetailResult::Unspecified => "matched",
    })
}

fn results(
    signed: &Signed,
    date: &str,
    summary: &ReconcileDetailsSummary,
    breaks: &[DetailRowResult],
    totals: &ReconcileTotalsResponse,
) -> Markup {
    let lang = signed.lang;
    let matched = summary.result() == ReconciliationResult::Matched;
    let counts = [
        ("missing_in_ledger", summary.missing_in_ledger),
        ("missing_in_submission", summary.missing_in_submission),
        ("duplicate", summary.duplicate),
        ("amount_mismatch", summary.amount_mismatch),
        ("timing", summary.timing),
    ];
    html! {
        p.result.(if matched { "pass" } else { "fail" }) #result {
            (date) " · " (if matched { lang.t("matched") } else { lang.t("mismatched") })
        }
        table {
            caption { (lang.t("rows")) }
            tbody {
                tr { th scope="row" { (lang.t("rows_submitted")) } td.num { (summary.rows_submitted) } }
                tr { th scope="row" { (lang.t("rows_in_ledger")) } td.num { (summary.rows_in_ledger) } }
                tr { th scope="row" { (lang.t("matched")) } td.num { (summary.matched) } }
                @for (key, count) in counts {
                    tr { th scope="row" { (lang.t(key)) } td.num { (count) } }
                }
            }
        }
        @if !breaks.is_empty() {
            h2 { (lang.t("breaks")) }
            table #breaks {
                thead { tr {
                    th scope="col" { (lang.t("class")) }
                    th scope="col" { (lang.t("settlement_id")) }
                    th scope="col" { (lang.t("total_amount")) " (" (lang.t("ours")) ")" }
                    th scope="col" { (lang.t("total_amount")) " (" (lang.t("ledger_side")) ")" }
                    th scope="col" { (lang.t("fund_pay")) " (" (lang.t("ours")) ")" }
                    th scope="col" { (lang.t("fund_pay")) " (" (lang.t("ledger_side")) ")" }
                } }
                tbody {
                    @for row in breaks {
                        @let ours = row.submitted.clone().unwrap_or_default();
                        @let theirs = row.ledger.clone().unwrap_or_default();
                        tr {
                            td { (class_word(row.result(), lang)) }
                            td { a href=(format!("/settlements/{}", row.settlement_id)) { (row.settlement_id) } }
                            td.num { (text::yuan(&ours.total_amount)) }
                            td.num { (text::yuan(&theirs.total_amount)) }
                            td.num { (text::yuan(&ours.fund_pay)) }
                            td.num { (text::yuan(&theirs.fund_pay)) }
                        }
                    }
                }
            }
        }
        (breakdown(signed.lang, totals))
        (form(signed, date))
    }
}

/// The day's totals by clearing type and by fund type, ours beside the ledger's, each
/// differing line marked; ours are blank when the submission carried no breakdown of the kind.
fn breakdown(lang: Lang, reply: &ReconcileTotalsResponse) -> Markup {
    let ours = reply.submitted.clone().unwrap_or_default();
    let theirs = reply.ledger.clone().unwrap_or_default();
    let mut types: Vec<i32> = ours
        .clearing_types
        .iter()
        .chain(&theirs.clearing_types)
        .map(|line| line.clearing_type)
        .collect();
    types.sort_unstable();
    types.dedup();
    let mut funds: Vec<(String, String)> = ours
        .fund_types
        .iter()
        .chain(&theirs.fund_types)
        .map(|line| (line.fund_pay_type.clone(), line.disease_code.clone()))
        .collect();
    funds.sort();
    funds.dedup();
    let clearing_line = |lines: &[ClearingTypeTotals], clearing_type: i32| {
        lines
            .iter()
            .find(|line| line.clearing_type == clearing_type)
            .cloned()
    };
    let fund_amount = |lines: &[FundTypeTotal], key: &(String, String)| {
        lines
            .iter()
            .find(|line| line.fund_pay_type == key.0 && line.disease_code == key.1)
            .map_or_else(|| "0.00".to_owned(), |line| line.amount.clone())
    };
    let type_broken = |clearing_type: i32| {
        reply
            .mismatched_lines
            .iter()
            .any(|line| line.fund_pay_type.is_empty() && line.clearing_type == clearing_type)
    };
    let fund_broken = |key: &(String, String)| {
        reply
            .mismatched_lines
            .iter()
            .any(|line| line.fund_pay_type == key.0 && line.disease_code == key.1)
    };
    let word = |broken: bool| lang.t(if broken { "mismatched" } else { "matched" });
    html! {
        h2 { (lang.t("by_clearing_type")) }
        table #by-clearing-type {
            thead { tr {
                th scope="col" { (lang.t("clearing_type")) }
                th scope="col" { (lang.t("rows")) " (" (lang.t("ours")) ")" }
                th scope="col" { (lang.t("rows")) " (" (lang.t("ledger_side")) ")" }
                th scope="col" { (lang.t("fund_pay")) " (" (lang.t("ours")) ")" }
                th scope="col" { (lang.t("fund_pay")) " (" (lang.t("ledger_side")) ")" }
                th scope="col" { (lang.t("status")) }
            } }
            tbody {
                @for clearing_type in types {
                    @let mine = clearing_line(&ours.clearing_types, clearing_type);
                    @let ledger = clearing_line(&theirs.clearing_types, clearing_type).unwrap_or_default();
                    tr {
                        td { (clearing_type) }
                        td.num { (mine.as_ref().map(|line| line.count.to_string()).unwrap_or_default()) }
                        td.num { (ledger.count) }
                        td.num { (mine.as_ref().map(|line| text::yuan(&line.fund_pay)).unwrap_or_default()) }
                        td.num { (text::yuan(&ledger.fund_pay)) }
                        td { @if !ours.clearing_types.is_empty() { (word(type_broken(clearing_type))) } }
                    }
                }
            }
        }
        h2 { (lang.t("by_fund_type")) }
        table #by-fund-type {
            thead { tr {
                th scope="col" { (lang.t("fund_pay_type")) }
                th scope="col" { (lang.t("disease")) }
                th scope="col" { (lang.t("fund_pay")) " (" (lang.t("ours")) ")" }
                th scope="col" { (lang.t("fund_pay")) " (" (lang.t("ledger_side")) ")" }
                th scope="col" { (lang.t("status")) }
            } }
            tbody {
                @for key in &funds {
                    tr {
                        td { (key.0) }
                        td { (key.1) }
                        td.num { @if !ours.fund_types.is_empty() { (text::yuan(&fund_amount(&ours.fund_types, key))) } }
                        td.num { (text::yuan(&fund_amount(&theirs.fund_types, key))) }
                        td { @if !ours.fund_types.is_empty() { (word(fund_broken(key))) } }
                    }
                }
            }
        }
    }
}
