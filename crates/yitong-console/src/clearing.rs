//! The monthly clearing (national 3260-3262, 3203): a treatment city's bureau lists its extract,
//! includes or excludes rows one by one or in bulk with a reason, rolls back and applies; the
//! clearing house closes the month; each city reads its statement and confirms it. The extract
//! exports to Excel and CSV.

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Datelike;
use maud::{Markup, html};
use yitong_core::Owner;
use yitong_proto::ledger::v1::{
    ApplyClearingRequest, CityPairObligation, ClearingDetail, ClearingPeriod, ClearingStatement,
    ClearingTotals, CloseClearingPeriodRequest, ConfirmClearingDetailsRequest,
    ConfirmClearingStatementRequest, ConfirmationStatus, DetailDecision,
    GetClearingStatementRequest, ListClearingDetailsRequest, RollbackClearingConfirmationRequest,
    StatementStatus,
};
use yitong_rpc::Caller;

use crate::Shared;
use crate::export::{ClearingSheet, clearing_csv, clearing_xlsx, sums};
use crate::pages::{FORM_BYTES_MAX, Fields, Signed, city_name, message_id, request};
use crate::staff::Role;
use crate::text::{self, Lang};

/// Rows per page on screen: the national extract's page.
const PAGE_ROWS: u32 = 100;
/// Rows per call when the console reads a whole extract (bulk decisions, apply, export).
const READ_PAGE_ROWS: u32 = 1_000;
/// Decisions per ConfirmClearingDetails call: its maximum.
const DECISIONS_PER_CALL_MAX: usize = 1_000;
/// Rows an export or a bulk decision covers at most.
pub const EXTRACT_ROWS_MAX: usize = 500_000;
/// Longest exclusion or rollback reason the services take.
const REASON_CHARS_MAX: usize = 200;

#[derive(Debug, Default, serde::Deserialize)]
pub struct PeriodQuery {
    #[serde(default)]
    year: Option<u32>,
    #[serde(default)]
    month: Option<u32>,
    /// The city whose extract or statement the clearing house looks at; a city's bureau may
    /// only name its own.
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    confirmation: Option<String>,
    #[serde(default)]
    page_token: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

/// The month before this one (China Standard Time): the one a bureau clears.
fn last_month() -> (u32, u32) {
    let today = text::today();
    match today.month() {
        1 => (u32::try_from(today.year() - 1).unwrap_or(0), 12),
        month => (u32::try_from(today.year()).unwrap_or(0), month - 1),
    }
}

fn period_of(year: Option<u32>, month: Option<u32>) -> ClearingPeriod {
    let (default_year, default_month) = last_month();
    ClearingPeriod {
        year: year.unwrap_or(default_year),
        month: month.unwrap_or(default_month),
    }
}

/// The city a request is about, for bureaus and the clearing house only: a city's bureau its
/// own (naming another is refused, whatever the URL says), the clearing house the one it names
/// or the first enabled city.
fn city_for(console: &Shared, signed: &Signed, named: Option<&str>) -> Result<String, Response> {
    signed.require(&[Role::Bureau, Role::ClearingHouse])?;
    match signed.caller() {
        Caller::Bureau(Owner::Pool(own)) => {
            let own = own.to_string();
            match named {
                Some(named) if !named.is_empty() && named != own => {
                    Err(signed.fail(StatusCode::FORBIDDEN, signed.lang.t("forbidden")))
                }
                _ => Ok(own),
            }
        }
        Caller::Bureau(Owner::ClearingHouse) => match named {
            Some(named) if !named.is_empty() => {
                if console
                    .network
                    .enabled_pools()
                    .any(|city| city.code.to_string() == named)
                {
                    Ok(named.to_owned())
                } else {
                    Err(signed.fail(StatusCode::NOT_FOUND, signed.lang.t("not_found")))
                }
            }
            _ => Ok(console
                .network
                .enabled_pools()
                .next()
                .map(|city| city.code.to_string())
                .unwrap_or_default()),
        },
        _ => Err(signed.fail(StatusCode::FORBIDDEN, signed.lang.t("forbidden"))),
    }
}

fn confirmation_of(text: Option<&str>) -> ConfirmationStatus {
    match text {
        Some("unconfirmed") => ConfirmationStatus::Unconfirmed,
        Some("included") => ConfirmationStatus::Included,
        Some("excluded") => ConfirmationStatus::Excluded,
        _ => ConfirmationStatus::Unspecified,
    }
}

/// Every row of a city's extract in a state, read a thousand at a time.
async fn all_rows(
    console: &Shared,
    signed: &Signed,
    period: ClearingPeriod,
    city: &str,
    confirmation: ConfirmationStatus,
) -> Result<Vec<ClearingDetail>, Response> {
    let mut ledger = signed.ledger(console)?;
    let mut rows = Vec::new();
    let mut page_token = String::new();
    loop {
        let reply = ledger
            .list_clearing_details(request(ListClearingDetailsRequest {
                period: Some(period),
                treatment_city: city.to_owned(),
                insured_city: String::new(),
                confirmation: confirmation as i32,
                page_size: READ_PAGE_ROWS,
                page_token,
            }))
            .await
            .map_err(|status| signed.refused(&status))?
            .into_inner();
        rows.extend(reply.details);
        if rows.len() > EXTRACT_ROWS_MAX {
            return Err(signed.fail(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("more than {EXTRACT_ROWS_MAX} rows; use yitong clearing"),
            ));
        }
        if reply.next_page_token.is_empty() {
            return Ok(rows);
        }
        page_token = reply.next_page_token;
    }
}

fn period_form(
    signed: &Signed,
    action: &str,
    period: ClearingPeriod,
    city: &str,
    extra: Markup,
) -> Markup {
    let lang = signed.lang;
    html! {
        form.bar method="get" action=(action) {
            label for="year" { (lang.t("year")) }
            input #year type="number" name="year" value=(period.year) min="2000" max="2100";
            label for="month" { (lang.t("month")) }
            input #month type="number" name="month" value=(period.month) min="1" max="12";
            @if signed.role() == Role::ClearingHouse {
                label for="city" { (lang.t("city")) }
                input #city type="text" name="city" value=(city) inputmode="numeric";
            }
            (extra)
            button type="submit" { (lang.t("show")) }
        }
    }
}

/// The extract of one city for a month, a page at a time, with the decisions and exports.
pub async fn page(
    State(console): State<Shared>,
    signed: Signed,
    Query(query): Query<PeriodQuery>,
) -> Response {
    let city = match city_for(&console, &signed, query.city.as_deref()) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let period = period_of(query.year, query.month);
    let confirmation = confirmation_of(query.confirmation.as_deref());
    let mut ledger = match signed.ledger(&console) {
        Ok(ledger) => ledger,
        Err(refusal) => return refusal,
    };
    let reply = match ledger
        .list_clearing_details(request(ListClearingDetailsRequest {
            period: Some(period),
            treatment_city: city.clone(),
            insured_city: String::new(),
            confirmation: confirmation as i32,
            page_size: PAGE_ROWS,
            page_token: query.page_token.clone().unwrap_or_default(),
        }))
        .await
    {
        Ok(reply) => reply.into_inner(),
        Err(status) => return signed.refused(&status),
    };
    let lang = signed.lang;
    let csrf = &signed.session.csrf;
    let is_bureau = signed.role() == Role::Bureau;
    let hidden = html! {
        input type="hidden" name="csrf" value=(csrf);
        input type="hidden" name="year" value=(period.year);
        input type="hidden" name="month" value=(period.month);
    };
    let filter = html! {
        label for="confirmation" { (lang.t("status")) }
        select #confirmation name="confirmation" {
            @for (value, key) in [("", "all"), ("unconfirmed", "unconfirmed"), ("included", "included"), ("excluded", "excluded")] {
                option value=(value) selected[query.confirmation.as_deref().unwrap_or("") == value] { (lang.t(key)) }
            }
        }
    };
    let export_link = |format: &str| {
        format!(
            "/clearing/export?year={}&month={}&city={}&format={format}",
            period.year, period.month, city
        )
    };
    let body = html! {
        (period_form(&signed, "/clearing", period, &city, filter))
        p {
            (city_name(&console, &city, lang)) " · " (period.year) "-" (format!("{:02}", period.month))
            " · " (lang.t("rows")) ": " span #total-rows { (reply.total_rows) }
        }
        p.exports {
            a href=(export_link("xlsx")) { (lang.t("export_xlsx")) }
            " · "
            a href=(export_link("csv")) { (lang.t("export_csv")) }
        }
        form method="post" action="/clearing/decide" {
            (hidden)
            table #extract {
                thead { tr {
                    @if is_bureau { th scope="col" { span.visually-hidden { (lang.t("confirm")) } } }
                    th scope="col" { (lang.t("settlement_id")) }
                    th scope="col" { (lang.t("insured_city")) }
                    th scope="col" { (lang.t("institution")) }
                    th scope="col" { (lang.t("date")) }
                    th scope="col" { (lang.t("total_amount")) }
                    th scope="col" { (lang.t("insured_city_pay")) }
                    th scope="col" { (lang.t("clearing_type")) }
                    th scope="col" { (lang.t("fund_payments")) }
                    th scope="col" { (lang.t("status")) }
                    th scope="col" { (lang.t("reason")) }
                    th scope="col" { (lang.t("confirmed_at")) }
                    th scope="col" { (lang.t("confirmed_by")) }
                } }
                tbody {
                    @for detail in &reply.details {
                        tr {
                            @if is_bureau {
                                td {
                                    input type="checkbox" name="id" value=(detail.settlement_id)
                                        id=(format!("row-{}", detail.settlement_id))
                                        aria-label=(detail.settlement_id);
                                }
                            }
                            td { a href=(format!("/settlements/{}", detail.settlement_id)) { (detail.settlement_id) } }
                            td { (city_name(&console, &detail.insured_city, lang)) }
                            td { (detail.institution_code) }
                            td { (detail.settlement_date) }
                            td.num { (text::yuan(&detail.total_amount)) }
                            td.num { (text::yuan(&detail.insured_city_pay)) }
                            td { (detail.clearing_type) }
                            td { (crate::export::fund_payments_text(detail)) }
                            td { (status_word(detail.confirmation(), lang)) }
                            td { (detail.exclusion_reason) }
                            td { (text::cst(detail.confirmed_at.as_ref())) }
                            td { (detail.confirmed_by) }
                        }
                    }
                }
            }
            @if is_bureau {
                fieldset {
                    legend { (lang.t("confirm")) }
                    label for="reason" { (lang.t("reason")) }
                    input #reason type="text" name="reason" maxlength="200";
                    label for="scope" { (lang.t("rows")) }
                    select #scope name="scope" {
                        option value="selected" { "☑" }
                        option value="all" { (lang.t("all")) " (" (lang.t("unconfirmed")) ")" }
                    }
                    button type="submit" name="decision" value="include" { (lang.t("include")) }
                    button type="submit" name="decision" value="exclude" { (lang.t("exclude")) }
                    button type="submit" name="decision" value="rollback" formaction="/clearing/rollback" { (lang.t("rollback")) }
                }
            }
        }
        @if !reply.next_page_token.is_empty() {
            p { a href=(format!("/clearing?year={}&month={}&city={}&confirmation={}&page_token={}",
                period.year, period.month, city, query.confirmation.as_deref().unwrap_or(""), reply.next_page_token)) { "→" } }
        }
        @if is_bureau {
            form.card method="post" action="/clearing/apply" {
                (hidden)
                button type="submit" { (lang.t("apply")) }
            }
        }
        @if signed.role() == Role::ClearingHouse {
            form.card method="post" action="/clearing/close" {
                (hidden)
                button type="submit" { (lang.t("close")) }
            }
        }
    };
    signed.page(lang.t("clearing"), body).into_response()
}

fn status_word(status: ConfirmationStatus, lang: Lang) -> &'static str {
    lang.t(match status {
        ConfirmationStatus::Included => "included",
        ConfirmationStatus::Excluded => "excluded",
        _ => "unconfirmed",
    })
}

/// The month of a form, refused unless it is a real month.
fn form_period(fields: &Fields) -> Option<ClearingPeriod> {
    let year: u32 = fields.get("year")?.parse().ok()?;
    let month: u32 = fields.get("month")?.parse().ok()?;
    ((2000..=2100).contains(&year) && (1..=12).contains(&month))
        .then_some(ClearingPeriod { year, month })
}

/// Where to go after a change: the extract of the month, with what happened.
fn back_to(period: ClearingPeriod) -> Response {
    Redirect::to(&format!(
        "/clearing?year={}&month={}",
        period.year, period.month
    ))
    .into_response()
}

/// Parses a POST form, checks its CSRF token, the role, and the month.
fn change_form(
    signed: &Signed,
    body: &[u8],
    roles: &[Role],
) -> Result<(Fields, ClearingPeriod), Response> {
    let fields = Fields::parse(&body[..body.len().min(FORM_BYTES_MAX)]);
    signed.check_csrf(&fields)?;
    signed.require(roles)?;
    let period = form_period(&fields)
        .ok_or_else(|| signed.fail(StatusCode::UNPROCESSABLE_ENTITY, signed.lang.t("month")))?;
    Ok((fields, period))
}

/// The bureau's own city: every clearing change is made for it alone.
fn own_city(signed: &Signed) -> Result<String, Response> {
    match signed.caller() {
        Caller::Bureau(Owner::Pool(city)) => Ok(city.to_string()),
        _ => Err(signed.fail(StatusCode::FORBIDDEN, signed.lang.t("forbidden"))),
    }
}

/// Includes or excludes the selected rows, or every unconfirmed row, with a reason.
pub async fn decide(
    State(console): State<Shared>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    let (fields, period) = match change_form(&signed, &body, &[Role::Bureau]) {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let city = match own_city(&signed) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let decision = match fields.get("decision") {
        Some("include") => ConfirmationStatus::Included,
        Some("exclude") => ConfirmationStatus::Excluded,
        _ => return signed.fail(StatusCode::UNPROCESSABLE_ENTITY, signed.lang.t("confirm")),
    };
    let reason: String = fields
        .get("reason")
        .unwrap_or_default()
        .trim()
        .chars()
        .take(REASON_CHARS_MAX)
        .collect();
    let ids = if fields.get("scope") == Some("all") {
        match all_rows(
            &console,
            &signed,
            period,
            &city,
            ConfirmationStatus::Unconfirmed,
        )
        .await
        {
            Ok(rows) => rows.into_iter().map(|row| row.settlement_id).collect(),
            Err(refusal) => return refusal,
        }
    } else {
        fields.all("id")
    };
    let mut ledger = match signed.ledger(&console) {
        Ok(ledger) => ledger,
        Err(refusal) => return refusal,
    };
    for chunk in ids.chunks(DECISIONS_PER_CALL_MAX) {
        let id = message_id();
        let decisions = chunk
            .iter()
            .map(|settlement_id| DetailDecision {
                settlement_id: settlement_id.clone(),
                decision: decision as i32,
                reason: if decision == ConfirmationStatus::Excluded {
                    reason.clone()
                } else {
                    String::new()
                },
            })
            .collect();
        let outcome = ledger
            .confirm_clearing_details(request(ConfirmClearingDetailsRequest {
                message_id: id.clone(),
                period: Some(period),
                treatment_city: city.clone(),
                decisions,
                operator_id: signed.staff().username.clone(),
            }))
            .await;
        signed
            .record(
                &console,
                "ConfirmClearingDetails",
                &id,
                if outcome.is_ok() { "done" } else { "refused" },
            )
            .await;
        if let Err(status) = outcome {
            return signed.refused(&status);
        }
    }
    back_to(period)
}

/// Returns the selected rows (or every confirmed row) to unconfirmed, with a reason.
pub async fn rollback(
    State(console): State<Shared>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    let (fields, period) = match change_form(&signed, &body, &[Role::Bureau]) {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let city = match own_city(&signed) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let reason: String = fields
        .get("reason")
        .unwrap_or_default()
        .trim()
        .chars()
        .take(REASON_CHARS_MAX)
        .collect();
    let ids = if fields.get("scope") == Some("all") {
        Vec::new()
    } else {
        fields.all("id")
    };
    let mut ledger = match signed.ledger(&console) {
        Ok(ledger) => ledger,
        Err(refusal) => return refusal,
    };
    let id = message_id();
    let outcome = ledger
        .rollback_clearing_confirmation(request(RollbackClearingConfirmationRequest {
            message_id: id.clone(),
            period: Some(period),
            treatment_city: city,
            settlement_ids: ids,
            reason,
            operator_id: signed.staff().username.clone(),
        }))
        .await;
    signed
        .record(
            &console,
            "RollbackClearingConfirmation",
            &id,
            if outcome.is_ok() { "done" } else { "refused" },
        )
        .await;
    match outcome {
        Ok(_) => back_to(period),
        Err(status) => signed.refused(&status),
    }
}

/// Applies for clearing (3203) with the totals of the rows the bureau included, which the
/// ledger must agree with.
pub async fn apply(
    State(console): State<Shared>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    let (_, period) = match change_form(&signed, &body, &[Role::Bureau]) {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let city = match own_city(&signed) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let included = match all_rows(
        &console,
        &signed,
        period,
        &city,
        ConfirmationStatus::Included,
    )
    .await
    {
        Ok(rows) => rows,
        Err(refusal) => return refusal,
    };
    let [total, insured_city_pay, fund_pay, account_pay] = sums(&included);
    let mut ledger = match signed.ledger(&console) {
        Ok(ledger) => ledger,
        Err(refusal) => return refusal,
    };
    let id = message_id();
    let outcome = ledger
        .apply_clearing(request(ApplyClearingRequest {
            message_id: id.clone(),
            period: Some(period),
            treatment_city: city,
            totals: Some(ClearingTotals {
                count: included.len() as u64,
                total_amount: text::fen_to_yuan(total),
                insured_city_pay: text::fen_to_yuan(insured_city_pay),
                fund_pay: text::fen_to_yuan(fund_pay),
                account_pay: text::fen_to_yuan(account_pay),
            }),
            operator_id: signed.staff().username.clone(),
        }))
        .await;
    signed
        .record(
            &console,
            "ApplyClearing",
            &id,
            if outcome.is_ok() { "done" } else { "refused" },
        )
        .await;
    match outcome {
        Ok(reply) => {
            let application = reply.into_inner().application.unwrap_or_default();
            let lang = signed.lang;
            let body = html! {
                p.result.pass #result { (lang.t("applied")) ": " (application.application_id) }
                p { (lang.t("rows")) ": " (included.len()) " · " (lang.t("insured_city_pay")) ": " (text::fen_to_yuan(insured_city_pay)) }
                p { a href=(format!("/clearing?year={}&month={}", period.year, period.month)) { (lang.t("clearing")) } }
            };
            signed.page(lang.t("apply"), body).into_response()
        }
        Err(status) => signed.refused(&status),
    }
}

/// The clearing house closes the month: net positions, payment instructions, statements.
pub async fn close(
    State(console): State<Shared>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    let (_, period) = match change_form(&signed, &body, &[Role::ClearingHouse]) {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let mut ledger = match signed.ledger(&console) {
        Ok(ledger) => ledger,
        Err(refusal) => return refusal,
    };
    let id = message_id();
    let mut call = request(CloseClearingPeriodRequest {
        message_id: id.clone(),
        period: Some(period),
        operator_id: signed.staff().username.clone(),
    });
    // A close books the month's clearing transfers; it is given longer than other calls.
    call.set_timeout(std::time::Duration::from_secs(600));
    let outcome = ledger.close_clearing_period(call).await;
    signed
        .record(
            &console,
            "CloseClearingPeriod",
            &id,
            if outcome.is_ok() { "done" } else { "refused" },
        )
        .await;
    let closed = match outcome {
        Ok(reply) => reply.into_inner(),
        Err(status) => return signed.refused(&status),
    };
    let lang = signed.lang;
    let body = html! {
        p.result.pass #result { (lang.t("closed")) " · " (lang.t("journal_head")) ": " code { (closed.journal_head_hash) } }
        h2 { (lang.t("net_position")) }
        table #net-positions {
            thead { tr {
                th scope="col" { (lang.t("city")) }
                th scope="col" { (lang.t("receivable")) }
                th scope="col" { (lang.t("payable")) }
                th scope="col" { (lang.t("net_position")) }
            } }
            tbody {
                @for position in &closed.net_positions {
                    tr {
                        td { a href=(format!("/statement?year={}&month={}&city={}", period.year, period.month, position.city)) { (city_name(&console, &position.city, lang)) } }
                        td.num { (text::yuan(&position.receivable)) }
                        td.num { (text::yuan(&position.payable)) }
                        td.num { (text::yuan(&position.net)) }
                    }
                }
            }
        }
        (payments_table(&console, &closed.payment_instructions, lang))
        (flows_chart(&closed.payment_instructions, lang))
    };
    signed.page(lang.t("close"), body).into_response()
}

fn payments_table(
    console: &Shared,
    payments: &[yitong_proto::ledger::v1::PaymentInstruction],
    lang: Lang,
) -> Markup {
    html! {
        h2 { (lang.t("payments")) }
        table.payments {
            thead { tr {
                th scope="col" { (lang.t("payer")) }
                th scope="col" { (lang.t("payee")) }
                th scope="col" { (lang.t("amount")) }
            } }
            tbody {
                @for payment in payments {
                    tr {
                        td { (city_name(console, &payment.payer_city, lang)) }
                        td { (city_name(console, &payment.payee_city, lang)) }
                        td.num { (text::yuan(&payment.amount)) }
                    }
                }
            }
        }
    }
}

/// The payment instructions as arrows between the cities: a server-drawn SVG.
fn flows_chart(payments: &[yitong_proto::ledger::v1::PaymentInstruction], lang: Lang) -> Markup {
    let mut cities: Vec<&str> = payments
        .iter()
        .flat_map(|payment| [payment.payer_city.as_str(), payment.payee_city.as_str()])
        .collect();
    cities.sort_unstable();
    cities.dedup();
    let x_of = |city: &str| -> i64 {
        let index = cities.iter().position(|c| *c == city).unwrap_or(0);
        40 + 140 * i64::try_from(index).unwrap_or(0)
    };
    let width = 40 + 140 * i64::try_from(cities.len()).unwrap_or(0);
    let height = 60 + 30 * i64::try_from(payments.len()).unwrap_or(0);
    html! {
        figure {
            svg role="img" aria-label=(lang.t("payments")) width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) {
                @for city in &cities {
                    text x=(x_of(city) - 20) y="20" font-size="12" { (city) }
                    line x1=(x_of(city)) x2=(x_of(city)) y1="28" y2=(height - 5) stroke="#888" {}
                }
                @for (index, payment) in payments.iter().enumerate() {
                    @let y = 45 + 30 * i64::try_from(index).unwrap_or(0);
                    @let from = x_of(&payment.payer_city);
                    @let to = x_of(&payment.payee_city);
                    line x1=(from) x2=(to) y1=(y) y2=(y) stroke="#1f4e8c" stroke-width="3" {}
                    circle cx=(to) cy=(y) r="5" fill="#1f4e8c" {}
                    text x=((from + to) / 2 - 30) y=(y - 5) font-size="11" { (text::yuan(&payment.amount)) }
                }
            }
            figcaption { (lang.t("payments")) }
        }
    }
}

/// A city's statement for a month, with the confirmation of the city's bureau.
pub async fn statement(
    State(console): State<Shared>,
    signed: Signed,
    Query(query): Query<PeriodQuery>,
) -> Response {
    let city = match city_for(&console, &signed, query.city.as_deref()) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let period = period_of(query.year, query.month);
    let lang = signed.lang;
    let mut ledger = match signed.ledger(&console) {
        Ok(ledger) => ledger,
        Err(refusal) => return refusal,
    };
    let found = ledger
        .get_clearing_statement(request(GetClearingStatementRequest {
            city: city.clone(),
            period: Some(period),
        }))
        .await;
    let choose = period_form(&signed, "/statement", period, &city, html! {});
    let statement = match found {
        Ok(reply) => reply.into_inner().statement.unwrap_or_default(),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            let body = html! { (choose) p #result { (status.message()) } };
            return signed.page(lang.t("statement"), body).into_response();
        }
        Err(status) => return signed.refused(&status),
    };
    let net = statement.net_position.clone().unwrap_or_default();
    let confirmed = statement.status() == StatementStatus::Confirmed;
    let body = html! {
        (choose)
        p #result.result.(if confirmed { "pass" } else { "open" }) {
            (city_name(&console, &city, lang)) " · " (period.year) "-" (format!("{:02}", period.month)) " · "
            (if confirmed { lang.t("confirmed") } else { lang.t("issued") })
        }
        table #statement {
            tbody {
                tr { th scope="row" { (lang.t("receivable")) } td.num { (text::yuan(&net.receivable)) } }
                tr { th scope="row" { (lang.t("payable")) } td.num { (text::yuan(&net.payable)) } }
                tr { th scope="row" { (lang.t("net_position")) } td.num #net { (text::yuan(&net.net)) } }
                tr { th scope="row" { (lang.t("fund_before")) } td.num { (text::yuan(&statement.fund_balance_before)) } }
                tr { th scope="row" { (lang.t("fund_after")) } td.num { (text::yuan(&statement.fund_balance_after)) } }
                tr { th scope="row" { (lang.t("threshold")) } td.num { (text::yuan(&statement.low_balance_threshold)) } }
                tr { th scope="row" { (lang.t("top_up_due")) } td.num #top-up { (text::yuan(&statement.top_up_due)) } }
                tr { th scope="row" { (lang.t("issued_at")) } td { (text::cst(statement.issued_at.as_ref())) } }
                tr { th scope="row" { (lang.t("confirmed_at")) } td #confirmed-at { (text::cst(statement.confirmed_at.as_ref())) } }
                tr { th scope="row" { (lang.t("confirmed_by")) } td #confirmed-by { (statement.confirmed_by) } }
            }
        }
        (breakdown_tables(&console, &statement, lang))
        (payments_table(&console, &statement.payments, lang))
        @if signed.role() == Role::Bureau && !confirmed {
            form.card method="post" action="/statement/confirm" {
                input type="hidden" name="csrf" value=(signed.session.csrf);
                input type="hidden" name="year" value=(period.year);
                input type="hidden" name="month" value=(period.month);
                button type="submit" { (lang.t("confirm")) }
            }
        }
    };
    signed.page(lang.t("statement"), body).into_response()
}

/// The statement's obligations broken down: each pair's included rows by clearing type
/// (national clr_type) and its fund pay by fund type and disease (setldetail), receivables
/// first, then payables. A statement issued before the breakdown existed has no lines.
fn breakdown_tables(console: &Shared, statement: &ClearingStatement, lang: Lang) -> Markup {
    let sides = [
        ("receivable", &statement.receivables, true),
        ("payable", &statement.payables, false),
    ];
    let other = |obligation: &CityPairObligation, receivable: bool| {
        if receivable {
            obligation.insured_city.clone()
        } else {
            obligation.treatment_city.clone()
        }
    };
    html! {
        h2 { (lang.t("by_clearing_type")) }
        table #statement-clearing-types {
            thead { tr {
                th scope="col" { (lang.t("status")) }
                th scope="col" { (lang.t("other_city")) }
                th scope="col" { (lang.t("clearing_type")) }
                th scope="col" { (lang.t("rows")) }
                th scope="col" { (lang.t("total_amount")) }
                th scope="col" { (lang.t("fund_pay")) }
                th scope="col" { (lang.t("account_pay")) }
            } }
            tbody {
                @for (word, obligations, receivable) in sides {
                    @for obligation in obligations.iter() {
                        @for line in &obligation.clearing_types {
                            tr {
                                td { (lang.t(word)) }
                                td { (city_name(console, &other(obligation, receivable), lang)) }
                                td { (line.clearing_type) }
                                td.num { (line.count) }
                                td.num { (text::yuan(&line.total_amount)) }
                                td.num { (text::yuan(&line.fund_pay)) }
                                td.num { (text::yuan(&line.account_pay)) }
                            }
                        }
                    }
                }
            }
        }
        h2 { (lang.t("by_fund_type")) }
        table #statement-fund-types {
            thead { tr {
                th scope="col" { (lang.t("status")) }
                th scope="col" { (lang.t("other_city")) }
                th scope="col" { (lang.t("fund_pay_type")) }
                th scope="col" { (lang.t("disease")) }
                th scope="col" { (lang.t("fund_pay")) }
            } }
            tbody {
                @for (word, obligations, receivable) in sides {
                    @for obligation in obligations.iter() {
                        @for line in &obligation.fund_types {
                            tr {
                                td { (lang.t(word)) }
                                td { (city_name(console, &other(obligation, receivable), lang)) }
                                td { (line.fund_pay_type) }
                                td { (line.disease_code) }
                                td.num { (text::yuan(&line.amount)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The city's bureau confirms its statement.
pub async fn confirm_statement(
    State(console): State<Shared>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    let (_, period) = match change_form(&signed, &body, &[Role::Bureau]) {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let city = match own_city(&signed) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let mut ledger = match signed.ledger(&console) {
        Ok(ledger) => ledger,
        Err(refusal) => return refusal,
    };
    let id = message_id();
    let outcome = ledger
        .confirm_clearing_statement(request(ConfirmClearingStatementRequest {
            message_id: id.clone(),
            city,
            period: Some(period),
            operator_id: signed.staff().username.clone(),
        }))
        .await;
    signed
        .record(
            &console,
            "ConfirmClearingStatement",
            &id,
            if outcome.is_ok() { "done" } else { "refused" },
        )
        .await;
    match outcome {
        Ok(_) => Redirect::to(&format!(
            "/statement?year={}&month={}",
            period.year, period.month
        ))
        .into_response(),
        Err(status) => signed.refused(&status),
    }
}

/// The whole extract of a city for a month, as xlsx or CSV.
pub async fn export(
    State(console): State<Shared>,
    signed: Signed,
    Query(query): Query<PeriodQuery>,
) -> Response {
    let city = match city_for(&console, &signed, query.city.as_deref()) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let period = period_of(query.year, query.month);
    let details = match all_rows(
        &console,
        &signed,
        period,
        &city,
        confirmation_of(query.confirmation.as_deref()),
    )
    .await
    {
        Ok(rows) => rows,
        Err(refusal) => return refusal,
    };
    let name = format!("clearing-{city}-{}-{:02}", period.year, period.month);
    let sheet = ClearingSheet {
        title: name.clone(),
        details,
    };
    let (bytes, content_type, extension) = match query.format.as_deref() {
        Some("csv") => match clearing_csv(&sheet, signed.lang) {
            Ok(bytes) => (bytes, "text/csv; charset=utf-8", "csv"),
            Err(error) => {
                return signed.fail(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string());
            }
        },
        _ => match clearing_xlsx(&sheet, signed.lang) {
            Ok(bytes) => (
                bytes,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "xlsx",
            ),
            Err(error) => {
                return signed.fail(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string());
            }
        },
    };
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.{extension}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}
