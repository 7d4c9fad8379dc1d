//! Settlement search (by settlement id, message id, institution and dates, person), one
//! settlement with its trace link, and a city's settlements in doubt.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use yitong_core::{InstitutionCode, Owner, PoolCode, Service};
use yitong_proto::catalog::v1::ListInstitutionsRequest;
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_proto::settlement::v1::get_settlement_request::Key;
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_proto::settlement::v1::{
    GetSettlementRequest, ListSettlementsRequest, Settlement, SettlementStatus,
};
use yitong_rpc::Caller;

use crate::Shared;
use crate::pages::{Signed, city_name, request};
use crate::staff::Role;
use crate::text::{self, Lang};

/// Settlements a search lists at most.
const SEARCH_ROWS_MAX: usize = 500;
/// Settlements per page asked of the settlement service: its maximum.
const SETTLEMENTS_PAGE: u32 = 200;
/// Institutions per page asked of the catalog: its maximum.
const INSTITUTIONS_PAGE: u32 = 200;

#[derive(Debug, Default, serde::Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    institution: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    person: Option<String>,
}

/// The city a settlement id names: "T370300..." or "C370300...".
fn city_of_settlement(id: &str) -> Option<PoolCode> {
    id.get(1..7)?.parse().ok()
}

/// The treatment city whose settlement service a staff member asks: its own for a bureau or an
/// institution (another city's records are not theirs to see, whatever the URL names); for an
/// operator the city the id or the institution names.
fn city_to_ask(signed: &Signed, named: Option<PoolCode>) -> Result<PoolCode, Response> {
    match signed.caller() {
        Caller::Bureau(Owner::Pool(city)) => Ok(*city),
        Caller::Institution(code) => Ok(code.city()),
        Caller::Operator(_) => {
            named.ok_or_else(|| signed.fail(StatusCode::NOT_FOUND, signed.lang.t("not_found")))
        }
        _ => Err(signed.fail(StatusCode::FORBIDDEN, signed.lang.t("forbidden"))),
    }
}

/// The institution code a lookup carries: an institution's own; for others the one named.
fn institution_for(signed: &Signed, named: &str) -> String {
    match signed.caller() {
        Caller::Institution(code) => code.as_str().to_owned(),
        _ => named.to_owned(),
    }
}

fn settlements_client(
    console: &Shared,
    signed: &Signed,
    city: PoolCode,
) -> Result<SettlementServiceClient<crate::GrpcChannel>, Response> {
    Ok(SettlementServiceClient::new(signed.channel(
        console,
        Owner::Pool(city),
        Service::Settlement,
    )?))
}

/// A settlement by its id or message id, asked of `city`'s settlement service. The service
/// answers only under the institution that made it: a finance office names its own, a lookup
/// that names one uses it, and otherwise each institution of the city is tried in turn (a
/// drill-down from a ledger row, which does not say whose it is) until one is answered, or the
/// service says there is no such settlement at all.
async fn find_settlement(
    console: &Shared,
    signed: &Signed,
    city: PoolCode,
    key: Key,
    institution: &str,
) -> Result<Option<Settlement>, Response> {
    let mut client = settlements_client(console, signed, city)?;
    let institutions: Vec<String> = if !institution.is_empty() {
        vec![institution.to_owned()]
    } else {
        institutions_of(console, signed, city)
            .await
            .map_err(|status| signed.refused(&status))?
    };
    for code in institutions {
        match client
            .get_settlement(request(GetSettlementRequest {
                key: Some(key.clone()),
                institution_code: code,
            }))
            .await
        {
            Ok(reply) => return Ok(reply.into_inner().settlement),
            Err(status)
                if status.code() == tonic::Code::NotFound
                    && matches!(key, Key::SettlementId(_)) =>
            {
                return Ok(None);
            }
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::NotFound | tonic::Code::PermissionDenied
                ) => {}
            Err(status) => return Err(signed.refused(&status)),
        }
    }
    Ok(None)
}

/// The codes of a city's institutions, every page.
async fn institutions_of(
    console: &Shared,
    signed: &Signed,
    city: PoolCode,
) -> Result<Vec<String>, tonic::Status> {
    let channel = console
        .connect
        .channel(signed.caller(), Owner::Pool(city), Service::Catalog)
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let mut catalog = CatalogServiceClient::new(channel);
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
            .await?
            .into_inner();
        codes.extend(
            reply
                .institutions
                .into_iter()
                .map(|institution| institution.code),
        );
        if reply.next_page_token.is_empty() {
            return Ok(codes);
        }
        page_token = reply.next_page_token;
    }
}

fn search_form(signed: &Signed, query: &SearchQuery) -> Markup {
    let lang = signed.lang;
    let value = |field: &Option<String>| field.clone().unwrap_or_default();
    html! {
        form.bar method="get" action="/settlements" {
            label for="q" { (lang.t("settlement_id")) " / " (lang.t("message_id")) }
            input #q type="search" name="q" value=(value(&query.q));
            @if signed.role() != Role::Finance {
                label for="institution" { (lang.t("institution")) }
                input #institution type="text" name="institution" value=(value(&query.institution));
            }
            label for="from" { (lang.t("from")) }
            input #from type="date" name="from" value=(value(&query.from));
            label for="to" { (lang.t("to")) }
            input #to type="date" name="to" value=(value(&query.to));
            label for="person" { (lang.t("person")) }
            input #person type="text" name="person" value=(value(&query.person));
            button type="submit" { (lang.t("show")) }
        }
    }
}

pub async fn search(
    State(console): State<Shared>,
    signed: Signed,
    Query(query): Query<SearchQuery>,
) -> Response {
    if let Err(refusal) = signed.require(&[Role::Bureau, Role::Finance, Role::Operator]) {
        return refusal;
    }
    let lang = signed.lang;
    let q = query.q.clone().unwrap_or_default().trim().to_owned();
    let named_institution = institution_for(
        &signed,
        query.institution.as_deref().unwrap_or_default().trim(),
    );
    let mut found: Vec<Settlement> = Vec::new();
    if !q.is_empty() {
        let by_id = city_of_settlement(&q).is_some();
        let named_city = if by_id {
            city_of_settlement(&q)
        } else {
            InstitutionCode::parse(&named_institution)
                .ok()
                .map(|code| code.city())
        };
        let city = match city_to_ask(&signed, named_city) {
            Ok(city) => city,
            Err(refusal) => return refusal,
        };
        let key = if by_id {
            Key::SettlementId(q.clone())
        } else {
            Key::MessageId(q.clone())
        };
        match find_settlement(&console, &signed, city, key, &named_institution).await {
            Ok(settlement) => found.extend(settlement),
            Err(refusal) => return refusal,
        }
    } else if !named_institution.is_empty() {
        let named_city = InstitutionCode::parse(&named_institution)
            .ok()
            .map(|code| code.city());
        let city = match city_to_ask(&signed, named_city) {
            Ok(city) => city,
            Err(refusal) => return refusal,
        };
        let mut client = match settlements_client(&console, &signed, city) {
            Ok(client) => client,
            Err(refusal) => return refusal,
        };
        let today = text::today().format("%Y-%m-%d").to_string();
        let to = query
            .to
            .clone()
            .filter(|to| !to.is_empty())
            .unwrap_or_else(|| today.clone());
        let from = query
            .from
            .clone()
            .filter(|from| !from.is_empty())
            .unwrap_or_else(|| to.clone());
        let mut page_token = String::new();
        loop {
            let reply = match client
                .list_settlements(request(ListSettlementsRequest {
                    institution_code: named_institution.clone(),
                    from_date: from.clone(),
                    to_date: to.clone(),
                    page_size: SETTLEMENTS_PAGE,
                    page_token,
                    ..Default::default()
                }))
                .await
            {
                Ok(reply) => reply.into_inner(),
                Err(status) => return signed.refused(&status),
            };
            found.extend(reply.settlements);
            if reply.next_page_token.is_empty() || found.len() >= SEARCH_ROWS_MAX {
                break;
            }
            page_token = reply.next_page_token;
        }
    }
    if let Some(person) = query
        .person
        .as_deref()
        .map(str::trim)
        .filter(|person| !person.is_empty())
    {
        found.retain(|settlement| settlement.person_no == person);
    }
    found.truncate(SEARCH_ROWS_MAX);
    let body = html! {
        (search_form(&signed, &query))
        (settlement_table(&console, &found, lang))
    };
    signed.page(lang.t("search"), body).into_response()
}

fn settlement_table(console: &Shared, settlements: &[Settlement], lang: Lang) -> Markup {
    html! {
        table #settlements {
            thead { tr {
                th scope="col" { (lang.t("settlement_id")) }
                th scope="col" { (lang.t("institution")) }
                th scope="col" { (lang.t("insured_city")) }
                th scope="col" { (lang.t("person")) }
                th scope="col" { (lang.t("settled_at")) }
                th scope="col" { (lang.t("total_amount")) }
                th scope="col" { (lang.t("fund_pay")) }
                th scope="col" { (lang.t("status")) }
            } }
            tbody {
                @for settlement in settlements {
                    @let split = settlement.split.clone().unwrap_or_default();
                    tr {
                        td { a href=(format!("/settlements/{}?institution={}", settlement.settlement_id, settlement.institution_code)) { (settlement.settlement_id) } }
                        td { (settlement.institution_code) }
                        td { (city_name(console, &settlement.insured_city, lang)) }
                        td { (settlement.person_no) }
                        td { (text::cst(settlement.settled_at.as_ref())) }
                        td.num { (text::yuan(&split.total_amount)) }
                        td.num { (text::yuan(&split.fund_pay)) }
                        td { (status_word(settlement, lang)) }
                    }
                }
            }
        }
    }
}

fn status_word(settlement: &Settlement, lang: Lang) -> &'static str {
    if settlement.status() == SettlementStatus::Cancelled {
        lang.t("cancellation")
    } else if settlement.completed_at.is_none() {
        lang.t("in_doubt")
    } else {
        lang.t("completed")
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    institution: Option<String>,
}

/// One settlement, every field the caller may see, and its trace.
pub async fn show(
    State(console): State<Shared>,
    signed: Signed,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Response {
    if let Err(refusal) = signed.require(&[Role::Bureau, Role::Finance, Role::Operator]) {
        return refusal;
    }
    let lang = signed.lang;
    let city = match city_to_ask(&signed, city_of_settlement(&id)) {
        Ok(city) => city,
        Err(refusal) => return refusal,
    };
    let institution = institution_for(&signed, query.institution.as_deref().unwrap_or_default());
    let settlement = match find_settlement(
        &console,
        &signed,
        city,
        Key::SettlementId(id.clone()),
        &institution,
    )
    .await
    {
        Ok(Some(settlement)) => settlement,
        Ok(None) => return signed.fail(StatusCode::NOT_FOUND, lang.t("not_found")),
        Err(refusal) => return refusal,
    };
    let split = settlement.split.clone().unwrap_or_default();
    let trace = (!settlement.trace_id.is_empty()).then(|| {
        console
            .trace_url_template
            .replace("{trace_id}", &settlement.trace_id)
    });
    let rows: [(&str, String); 16] = [
        ("settlement_id", settlement.settlement_id.clone()),
        ("message_id", settlement.message_id.clone()),
        ("visit", settlement.visit_id.clone()),
        ("person", settlement.person_no.clone()),
        ("institution", settlement.institution_code.clone()),
        (
            "treatment_city",
            city_name(&console, &settlement.treatment_city, lang),
        ),
        (
            "insured_city",
            city_name(&console, &settlement.insured_city, lang),
        ),
        ("date", settlement.settlement_date.clone()),
        ("settled_at", text::cst(settlement.settled_at.as_ref())),
        ("completed", text::cst(settlement.completed_at.as_ref())),
        ("total_amount", text::yuan(&split.total_amount)),
        ("fund_pay", text::yuan(&split.fund_pay)),
        ("account_pay", text::yuan(&split.account_pay)),
        ("cash_pay", text::yuan(&split.cash_pay)),
        ("status", status_word(&settlement, lang).to_owned()),
        (
            "cancellation",
            settlement
                .cancellation
                .as_ref()
                .map(|c| c.cancellation_id.clone())
                .unwrap_or_default(),
        ),
    ];
    let body = html! {
        table #settlement {
            tbody {
                @for (key, value) in &rows {
                    tr { th scope="row" { (lang.t(key)) } td { (value) } }
                }
                tr {
                    th scope="row" { (lang.t("trace")) }
                    td { @if let Some(url) = &trace { a #trace href=(url) { (settlement.trace_id) } } @else { (lang.t("none")) } }
                }
            }
        }
    };
    signed.page(&settlement.settlement_id, body).into_response()
}

/// The settlements of `city` settled from `from` to `to` and not completed (in doubt), every
/// institution's, for the overview and the operators' page.
pub(crate) async fn in_doubt_at(
    console: &Shared,
    signed: &Signed,
    city: PoolCode,
    from: &str,
    to: &str,
) -> Result<Vec<Settlement>, String> {
    let owner = Owner::Pool(city);
    let institutions = institutions_of(console, signed, city)
        .await
        .map_err(|status| status.message().to_owned())?;
    let channel = console
        .connect
        .channel(signed.caller(), owner, Service::Settlement)
        .map_err(|error| error.to_string())?;
    let mut client = SettlementServiceClient::new(channel);
    let mut found = Vec::new();
    for institution in institutions {
        let mut page_token = String::new();
        loop {
            let reply = client
                .list_settlements(request(ListSettlementsRequest {
                    institution_code: institution.clone(),
                    from_date: from.to_owned(),
                    to_date: to.to_owned(),
                    status: SettlementStatus::Settled as i32,
                    page_size: SETTLEMENTS_PAGE,
                    page_token,
                }))
                .await
                .map_err(|status| status.message().to_owned())?
                .into_inner();
            found.extend(
                reply
                    .settlements
                    .into_iter()
                    .filter(|settlement| settlement.completed_at.is_none()),
            );
            if reply.next_page_token.is_empty() || found.len() >= SEARCH_ROWS_MAX {
                break;
            }
            page_token = reply.next_page_token;
        }
    }
    Ok(found)
}
