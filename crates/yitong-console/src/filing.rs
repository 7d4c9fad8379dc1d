//! A bureau's cross-city filings (异地就医备案) of its own insured persons: a person's filings
//! listed, a filing filed and one cancelled, through the FilingService of the bureau's own city
//! (served beside its benefit service), with the bureau's credential. The city is never taken
//! from the request: a bureau can only ever reach its own city's filings, whatever a URL or a
//! form names, and the service refuses a person or filing that is not the city's.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use yitong_core::{Owner, PoolCode, Service};
use yitong_proto::settlement::v1::filing_service_client::FilingServiceClient;
use yitong_proto::settlement::v1::{
    CancelFilingRequest, FileFilingRequest, Filing, FilingKind, FilingStatus, ListFilingsRequest,
};
use yitong_rpc::Caller;

use crate::Shared;
use crate::pages::{FORM_BYTES_MAX, Fields, Signed, city_name, message_id, request};
use crate::text;

/// The kinds a bureau may file, with the words that name them.
const KINDS: [(FilingKind, &str); 6] = [
    (FilingKind::ResettledRetiree, "kind_resettled_retiree"),
    (FilingKind::LongTermResident, "kind_long_term_resident"),
    (FilingKind::PostedStaff, "kind_posted_staff"),
    (FilingKind::Referral, "kind_referral"),
    (FilingKind::Emergency, "kind_emergency"),
    (FilingKind::OtherTemporary, "kind_other_temporary"),
];

#[derive(Debug, Default, serde::Deserialize)]
pub struct PersonQuery {
    #[serde(default)]
    person: Option<String>,
}

/// The bureau's own city; anyone else may not see filings here.
fn own_city(signed: &Signed) -> Result<PoolCode, Response> {
    match signed.caller() {
        Caller::Bureau(Owner::Pool(city)) => Ok(*city),
        _ => Err(signed.fail(StatusCode::FORBIDDEN, signed.lang.t("forbidden"))),
    }
}

fn client(
    console: &Shared,
    signed: &Signed,
    city: PoolCode,
) -> Result<FilingServiceClient<crate::GrpcChannel>, Response> {
    Ok(FilingServiceClient::new(signed.channel(
        console,
        Owner::Pool(city),
        Service::Settlement,
    )?))
}

fn kind_word(kind: i32) -> &'static str {
    KINDS
        .iter()
        .find(|(known, _)| *known as i32 == kind)
        .map_or("none", |(_, word)| *word)
}

/// The page: the person's filings (when a person is named) and the form to file one.
pub async fn page(
    State(console): State<Shared>,
    signed: Signed,
    Query(query): Query<PersonQuery>,
) -> Response {
    let city = match own_city(&signed) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let person = query.person.unwrap_or_default().trim().to_owned();
    show(&console, &signed, city, &person, None).await
}

/// Lists `person`'s filings under the forms, with `notice` (what was just done) above.
async fn show(
    console: &Shared,
    signed: &Signed,
    city: PoolCode,
    person: &str,
    notice: Option<&Filing>,
) -> Response {
    let lang = signed.lang;
    let mut filings = Vec::new();
    if !person.is_empty() {
        let mut filing = match client(console, signed, city) {
            Ok(client) => client,
            Err(refusal) => return refusal,
        };
        match filing
            .list_filings(request(ListFilingsRequest {
                person_no: person.to_owned(),
            }))
            .await
        {
            Ok(reply) => filings = reply.into_inner().filings,
            Err(status) => return signed.refused(&status),
        }
    }
    let body = html! {
        @if let Some(done) = notice {
            p.result.pass role="status" { (lang.t("done")) ": " (done.filing_id) }
        }
        form.bar method="get" action="/filings" {
            label for="person" { (lang.t("person")) }
            input #person type="text" name="person" value=(person) required;
            button type="submit" { (lang.t("show")) }
        }
        @if !person.is_empty() {
            h2 { (lang.t("filings")) " — " (person) }
            (filing_table(console, signed, person, &filings))
        }
        h2 { (lang.t("file_filing")) }
        (file_form(console, signed, city, person))
    };
    signed.page(lang.t("filings"), body).into_response()
}

fn filing_table(console: &Shared, signed: &Signed, person: &str, filings: &[Filing]) -> Markup {
    let lang = signed.lang;
    html! {
        table #filings {
            thead { tr {
                th scope="col" { (lang.t("filing_id")) }
                th scope="col" { (lang.t("filing_kind")) }
                th scope="col" { (lang.t("treatment_city")) }
                th scope="col" { (lang.t("valid_from")) }
                th scope="col" { (lang.t("valid_until")) }
                th scope="col" { (lang.t("status")) }
                th scope="col" { (lang.t("filed_at")) }
                th scope="col" { (lang.t("cancel_filing")) }
            } }
            tbody {
                @for filing in filings {
                    tr {
                        td { (filing.filing_id) }
                        td { (lang.t(kind_word(filing.kind))) }
                        td { (city_name(console, &filing.treatment_city, lang)) }
                        td { (filing.valid_from) }
                        td { @if filing.valid_until.is_empty() { (lang.t("open_ended")) } @else { (filing.valid_until) } }
                        @if filing.status == FilingStatus::Cancelled as i32 {
                            td { (lang.t("filing_cancelled")) " " (text::cst(filing.cancelled_at.as_ref())) }
                            td { (text::cst(filing.filed_at.as_ref())) }
                            td {}
                        } @else {
                            td { (lang.t("filing_filed")) }
                            td { (text::cst(filing.filed_at.as_ref())) }
                            td {
                                form.inline method="post" action="/filings/cancel" {
                                    input type="hidden" name="csrf" value=(signed.session.csrf);
                                    input type="hidden" name="person" value=(person);
                                    input type="hidden" name="filing_id" value=(filing.filing_id);
                                    button type="submit" aria-label=(format!("{} {}", lang.t("cancel_filing"), filing.filing_id)) { (lang.t("cancel_filing")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn file_form(console: &Shared, signed: &Signed, city: PoolCode, person: &str) -> Markup {
    let lang = signed.lang;
    let today = text::today().format("%Y-%m-%d").to_string();
    html! {
        form.card method="post" action="/filings/file" {
            input type="hidden" name="csrf" value=(signed.session.csrf);
            label for="file-person" { (lang.t("person")) }
            input #file-person type="text" name="person" value=(person) required;
            label for="kind" { (lang.t("filing_kind")) }
            select #kind name="kind" {
                @for (kind, word) in KINDS {
                    option value=(kind as i32) { (lang.t(word)) }
                }
            }
            label for="treatment_city" { (lang.t("treatment_city")) }
            select #treatment_city name="treatment_city" {
                @for other in console.network.enabled_pools().filter(|other| other.code != city) {
                    option value=(other.code.to_string()) { (city_name(console, &other.code.to_string(), lang)) }
                }
            }
            label for="valid_from" { (lang.t("valid_from")) }
            input #valid_from type="date" name="valid_from" value=(today) required;
            label for="valid_until" { (lang.t("valid_until")) }
            input #valid_until type="date" name="valid_until";
            button type="submit" { (lang.t("file_filing")) }
        }
    }
}

/// Files a filing for one of the city's insured persons.
pub async fn file(
    State(console): State<Shared>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    let fields = Fields::parse(&body[..body.len().min(FORM_BYTES_MAX)]);
    if let Err(refusal) = signed.check_csrf(&fields) {
        return refusal;
    }
    let city = match own_city(&signed) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let field = |name: &str| fields.get(name).unwrap_or_default().trim().to_owned();
    let person = field("person");
    let Ok(kind) = field("kind").parse::<i32>() else {
        return signed.fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            signed.lang.t("filing_kind"),
        );
    };
    let mut client = match client(&console, &signed, city) {
        Ok(client) => client,
        Err(refusal) => return refusal,
    };
    let id = message_id();
    let outcome = client
        .file_filing(request(FileFilingRequest {
            message_id: id.clone(),
            person_no: person.clone(),
            kind,
            treatment_city: field("treatment_city"),
            valid_from: field("valid_from"),
            valid_until: field("valid_until"),
        }))
        .await;
    signed
        .record(
            &console,
            "FileFiling",
            &id,
            if outcome.is_ok() { "done" } else { "refused" },
        )
        .await;
    match outcome {
        Ok(reply) => {
            let filing = reply.into_inner().filing;
            show(&console, &signed, city, &person, filing.as_ref()).await
        }
        Err(status) => signed.refused(&status),
    }
}

/// Cancels a filed filing of the city.
pub async fn cancel(
    State(console): State<Shared>,
    signed: Signed,
    body: axum::body::Bytes,
) -> Response {
    let fields = Fields::parse(&body[..body.len().min(FORM_BYTES_MAX)]);
    if let Err(refusal) = signed.check_csrf(&fields) {
        return refusal;
    }
    let city = match own_city(&signed) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let person = fields.get("person").unwrap_or_default().trim().to_owned();
    let mut client = match client(&console, &signed, city) {
        Ok(client) => client,
        Err(refusal) => return refusal,
    };
    let id = message_id();
    let outcome = client
        .cancel_filing(request(CancelFilingRequest {
            message_id: id.clone(),
            filing_id: fields
                .get("filing_id")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }))
        .await;
    signed
        .record(
            &console,
            "CancelFiling",
            &id,
            if outcome.is_ok() { "done" } else { "refused" },
        )
        .await;
    match outcome {
        Ok(reply) => {
            let filing = reply.into_inner().filing;
            show(&console, &signed, city, &person, filing.as_ref()).await
        }
        Err(status) => signed.refused(&status),
    }
}
