//! The overview, the landing page of bureau, clearing-house and operator staff: today's and the
//! month's settlements by pair of cities, cancellations, settlements in doubt, the prepaid fund
//! against its threshold over the month, the reconciliation calendar and the volume per day and
//! pair. Every figure comes from the ledger's GetDailyActivity and GetBalances, asked with the
//! staff member's caller, so a city's bureau sees the pairs of its own city and the clearing
//! house every pair; a bureau's settlements in doubt are listed from its own settlement service.
//! Charts are SVG drawn on the server, in integer arithmetic, so the page needs no script.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use maud::{Markup, html};
use yitong_core::{Owner, PoolCode};
use yitong_proto::ledger::v1::{
    FundDay, GetBalancesRequest, GetDailyActivityRequest, PairDay, PrepaidFund, ReconciliationDay,
    ReconciliationResult,
};
use yitong_proto::settlement::v1::Settlement;
use yitong_rpc::Caller;

use crate::Shared;
use crate::pages::{Signed, city_name, request};
use crate::staff::Role;
use crate::text::{self, Lang};

/// Colours of the chart's series, dark enough to read on white.
const PALETTE: [&str; 8] = [
    "#1f4e8c", "#b3261e", "#1f6f43", "#7a4b00", "#5b2a86", "#00666b", "#8c1f5a", "#3d3d3d",
];
/// Chart geometry, in SVG units.
const CHART_WIDTH: i64 = 640;
const CHART_HEIGHT: i64 = 220;
const CHART_LEFT: i64 = 90;
const CHART_RIGHT: i64 = 20;
const CHART_TOP: i64 = 15;
const CHART_BOTTOM: i64 = 30;

#[derive(Debug, Default, serde::Deserialize)]
pub struct OverviewQuery {
    /// The month shown, "YYYY-MM"; this month when absent.
    #[serde(default)]
    month: Option<String>,
}

/// The first and last day of the month `text` names ("YYYY-MM"), or of this month.
fn month_of(text: Option<&str>) -> Option<(NaiveDate, NaiveDate)> {
    let first = match text.filter(|text| !text.is_empty()) {
        Some(text) => NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d").ok()?,
        None => text::today().with_day(1)?,
    };
    let next = first.checked_add_months(chrono::Months::new(1))?;
    Some((first, next.pred_opt()?))
}

fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// The cities whose figures a staff member sees: a bureau its own, the clearing house and
/// operators every enabled city.
fn cities_of(console: &Shared, caller: &Caller) -> Vec<PoolCode> {
    match caller.city() {
        Some(city) => vec![city],
        None => console
            .network
            .enabled_pools()
            .map(|city| city.code)
            .collect(),
    }
}

/// The totals of a set of pair-days.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    settlements: u64,
    cancellations: u64,
    pending: u64,
    total_fen: i64,
    fund_fen: i64,
}

impl Sums {
    fn add(&mut self, day: &PairDay) {
        self.settlements += day.settlements;
        self.cancellations += day.cancellations;
        self.pending += day.pending;
        self.total_fen += text::fen(&day.total_amount);
        self.fund_fen += text::fen(&day.fund_pay);
    }

    fn absorb(&mut self, other: &Sums) {
        self.settlements += other.settlements;
        self.cancellations += other.cancellations;
        self.pending += other.pending;
        self.total_fen += other.total_fen;
        self.fund_fen += other.fund_fen;
    }
}

/// The pairs' sums by (treatment host city, insured host city): each city's pools summed, a
/// visit between two pools of one city on the city's own diagonal. A code the network does not
/// hold stays as it is.
fn by_host_city(
    console: &Shared,
    sums: &BTreeMap<(String, String), Sums>,
) -> BTreeMap<(String, String), Sums> {
    let host = |pool: &str| -> String {
        pool.parse()
            .ok()
            .and_then(|code| console.network.city_of(code))
            .map_or_else(|| pool.to_owned(), |city| city.to_string())
    };
    let mut cities: BTreeMap<(String, String), Sums> = BTreeMap::new();
    for ((treatment, insured), sum) in sums {
        cities
            .entry((host(treatment), host(insured)))
            .or_default()
            .absorb(sum);
    }
    cities
}

/// The host cities of the enabled pools, when one of them hosts more than one (otherwise the
/// cities' matrix would repeat the pools').
fn cities_with_pools(console: &Shared) -> Option<Vec<String>> {
    let mut cities: Vec<String> = Vec::new();
    let mut several = false;
    for pool in console.network.enabled_pools() {
        let city = pool.city.to_string();
        if cities.contains(&city) {
            several = true;
        } else {
            cities.push(city);
        }
    }
    several.then_some(cities)
}

/// Sums by (treatment city, insured city) of the pair-days `keep` admits.
fn by_pair(pairs: &[PairDay], keep: impl Fn(&PairDay) -> bool) -> BTreeMap<(String, String), Sums> {
    let mut sums: BTreeMap<(String, String), Sums> = BTreeMap::new();
    for day in pairs.iter().filter(|day| keep(day)) {
        sums.entry((day.treatment_city.clone(), day.insured_city.clone()))
            .or_default()
            .add(day);
    }
    sums
}

pub async fn page(
    State(console): State<Shared>,
    signed: Signed,
    Query(query): Query<OverviewQuery>,
) -> Response {
    let lang = signed.lang;
    if signed.role() == Role::Finance {
        let body = html! {
            p { (lang.t("today")) ": " (date_text(text::today())) }
            p { a href="/reconcile" { (lang.t("reconcile")) } " · " a href="/settlements" { (lang.t("search")) } }
        };
        return signed.page(lang.t("overview"), body).into_response();
    }
    let Some((first, last)) = month_of(query.month.as_deref()) else {
        return signed.fail(StatusCode::BAD_REQUEST, lang.t("bad_month"));
    };
    let cities = cities_of(&console, signed.caller());
    let city_texts: Vec<String> = cities.iter().map(ToString::to_string).collect();
    let mut ledger = match signed.ledger(&console) {
        Ok(ledger) => ledger,
        Err(refusal) => return refusal,
    };
    let activity = match ledger
        .get_daily_activity(request(GetDailyActivityRequest {
            from_date: date_text(first),
            to_date: date_text(last),
            cities: city_texts.clone(),
        }))
        .await
    {
        Ok(reply) => reply.into_inner(),
        Err(status) => return signed.refused(&status),
    };
    let funds_now = match ledger
        .get_balances(request(GetBalancesRequest {
            account_ids: Vec::new(),
            cities: city_texts,
        }))
        .await
    {
        Ok(reply) => reply.into_inner().prepaid_funds,
        Err(status) => return signed.refused(&status),
    };
    // A bureau's own settlements in doubt, from its settlement service: those the ledger may
    // not even have heard of yet (a node that could not reach it).
    let in_doubt: Result<Vec<Settlement>, String> = match signed.caller() {
        Caller::Bureau(Owner::Pool(city)) => {
            crate::search::in_doubt_at(
                &console,
                &signed,
                *city,
                &date_text(first),
                &date_text(last.min(text::today()).max(first)),
            )
            .await
        }
        _ => Ok(Vec::new()),
    };
    let today = date_text(text::today());
    let today_sums = by_pair(&activity.pairs, |day| day.date == today);
    let month_sums = by_pair(&activity.pairs, |_| true);
    let matrix_cities: Vec<String> = console
        .network
        .enabled_pools()
        .map(|city| city.code.to_string())
        .collect();
    // The clearing house and operators see every pool: a city hosting several is summed too.
    let host_cities = match signed.caller() {
        Caller::Bureau(Owner::Pool(_)) => None,
        _ => cities_with_pools(&console),
    };
    let previous = first.pred_opt().map(|day| day.format("%Y-%m").to_string());
    let next = last.succ_opt().map(|day| day.format("%Y-%m").to_string());
    let month_label = first.format("%Y-%m").to_string();
    let body = html! {
        p.bar {
            (lang.t("today")) ": " (today) " · " (lang.t("month")) ": " strong { (month_label) }
            @if let Some(previous) = &previous { " · " a href=(format!("/?month={previous}")) { (lang.t("previous_month")) } }
            @if let Some(next) = &next { " · " a href=(format!("/?month={next}")) { (lang.t("next_month")) } }
        }
        h2 { (lang.t("totals")) }
        (totals_table(&today_sums, &month_sums, lang))
        h2 { (lang.t("matrix_today")) }
        (matrix(&console, "matrix-today", &matrix_cities, &today_sums, lang))
        h2 { (lang.t("matrix_month")) }
        (matrix(&console, "matrix-month", &matrix_cities, &month_sums, lang))
        @if let Some(host_cities) = &host_cities {
            h2 { (lang.t("matrix_month_cities")) }
            (matrix(&console, "matrix-month-cities", host_cities, &by_host_city(&console, &month_sums), lang))
        }
        h2 { (lang.t("volume_per_day")) }
        (volume_chart(&console, &activity.pairs, first, last, lang))
        h2 { (lang.t("prepaid")) }
        (funds_table(&console, &funds_now, lang))
        (fund_chart(&console, &activity.funds, first, last, lang))
        h2 { (lang.t("calendar")) }
        (calendar(&console, &activity.reconciliations, first, lang))
        h2 { (lang.t("in_doubt")) }
        p { (lang.t("pending_in_ledger")) ": " strong #pending-in-ledger { (month_sums.values().map(|sums| sums.pending).sum::<u64>()) } }
        @match &in_doubt {
            Ok(found) if !found.is_empty() => {
                table #in-doubt {
                    thead { tr {
                        th scope="col" { (lang.t("settlement_id")) }
                        th scope="col" { (lang.t("institution")) }
                        th scope="col" { (lang.t("insured_city")) }
                        th scope="col" { (lang.t("settled_at")) }
                    } }
                    tbody {
                        @for settlement in found {
                            tr {
                                td { a href=(format!("/settlements/{}?institution={}", settlement.settlement_id, settlement.institution_code)) { (settlement.settlement_id) } }
                                td { (settlement.institution_code) }
                                td { (city_name(&console, &settlement.insured_city, lang)) }
                                td { (text::cst(settlement.settled_at.as_ref())) }
                            }
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(error) => p.error role="alert" { (lang.t("refused")) ": " (error) },
        }
    };
    signed.page(lang.t("overview"), body).into_response()
}

/// Today's and the month's totals over every pair shown.
fn totals_table(
    today: &BTreeMap<(String, String), Sums>,
    month: &BTreeMap<(String, String), Sums>,
    lang: Lang,
) -> Markup {
    let total = |sums: &BTreeMap<(String, String), Sums>| {
        let mut all = Sums::default();
        for sum in sums.values() {
            all.absorb(sum);
        }
        all
    };
    let rows = [("today", total(today)), ("this_month", total(month))];
    html! {
        table #totals {
            thead { tr {
                th scope="col" { }
                th scope="col" { (lang.t("settlements")) }
                th scope="col" { (lang.t("cancellations")) }
                th scope="col" { (lang.t("total_amount")) }
                th scope="col" { (lang.t("fund_pay")) }
                th scope="col" { (lang.t("pending_in_ledger")) }
            } }
            tbody {
                @for (key, sums) in rows {
                    tr {
                        th scope="row" { (lang.t(key)) }
                        td.num { (sums.settlements) }
                        td.num { (sums.cancellations) }
                        td.num { (text::fen_to_yuan(sums.total_fen)) }
                        td.num { (text::fen_to_yuan(sums.fund_fen)) }
                        td.num { (sums.pending) }
                    }
                }
            }
        }
    }
}

/// Treatment city (rows) × insured city (columns): rows posted, net total and fund pay; a pair
/// the staff member may not see, or without rows, is a dash.
fn matrix(
    console: &Shared,
    id: &str,
    cities: &[String],
    sums: &BTreeMap<(String, String), Sums>,
    lang: Lang,
) -> Markup {
    html! {
        table id=(id) {
            caption { (lang.t("treatment_city")) " × " (lang.t("insured_city")) " — " (lang.t("matrix_cell")) }
            thead { tr {
                th scope="col" { (lang.t("treatment_city")) " \\ " (lang.t("insured_city")) }
                @for insured in cities { th scope="col" { (city_name(console, insured, lang)) } }
            } }
            tbody {
                @for treatment in cities {
                    tr {
                        th scope="row" { (city_name(console, treatment, lang)) }
                        @for insured in cities {
                            @match sums.get(&(treatment.clone(), insured.clone())) {
                                Some(sum) => td.num data-pair=(format!("{treatment}-{insured}")) {
                                    (sum.settlements + sum.cancellations) br;
                                    (text::fen_to_yuan(sum.total_fen)) br;
                                    (text::fen_to_yuan(sum.fund_fen))
                                },
                                None => td.num { "—" },
                            }
                        }
                    }
                }
            }
        }
    }
}

fn funds_table(console: &Shared, funds: &[PrepaidFund], lang: Lang) -> Markup {
    html! {
        table #funds {
            thead { tr {
                th scope="col" { (lang.t("city")) }
                th scope="col" { (lang.t("available")) }
                th scope="col" { (lang.t("threshold")) }
                th scope="col" { (lang.t("status")) }
            } }
            tbody {
                @for fund in funds {
                    tr {
                        td { (city_name(console, &fund.city, lang)) }
                        td.num { (text::yuan(&fund.available)) }
                        td.num { (text::yuan(&fund.low_balance_threshold)) }
                        td { @if fund.below_threshold { strong { (lang.t("below_threshold")) } } @else { "✓" } }
                    }
                }
            }
        }
    }
}

/// One line of a chart.
struct Series {
    /// What the legend calls it.
    name: String,
    /// One value per day from the first; fewer when the month is not over.
    values: Vec<i64>,
}

/// A line per series over the `days` of the month, an optional dashed threshold, the y axis
/// labelled at zero (and the lowest value, when negative) and at the top with `label`.
fn line_chart(
    id: &str,
    title: &str,
    series: &[Series],
    days: i64,
    threshold: Option<i64>,
    label: impl Fn(i64) -> String,
) -> Markup {
    let values = series
        .iter()
        .flat_map(|series| series.values.iter().copied())
        .chain(threshold);
    let top = values.clone().max().unwrap_or(0).max(1);
    let bottom = values.min().unwrap_or(0).min(0);
    let span = (top - bottom).max(1);
    let plot_width = CHART_WIDTH - CHART_LEFT - CHART_RIGHT;
    let plot_height = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM;
    let x = move |day: i64| CHART_LEFT + day * plot_width / (days - 1).max(1);
    let y = move |value: i64| {
        CHART_TOP + plot_height
            - i64::try_from(i128::from(value - bottom) * i128::from(plot_height) / i128::from(span))
                .unwrap_or(0)
    };
    let legend_height = 18 * i64::try_from(series.len()).unwrap_or(0);
    let height = CHART_HEIGHT + legend_height;
    html! {
        figure {
            svg id=(id) role="img" aria-label=(title) width=(CHART_WIDTH) height=(height) viewBox=(format!("0 0 {CHART_WIDTH} {height}")) {
                line x1=(CHART_LEFT) x2=(CHART_LEFT) y1=(CHART_TOP) y2=(CHART_TOP + plot_height) stroke="#555" {}
                line x1=(CHART_LEFT) x2=(CHART_WIDTH - CHART_RIGHT) y1=(y(0)) y2=(y(0)) stroke="#555" {}
                text x=(CHART_LEFT - 6) y=(y(top) + 4) font-size="11" text-anchor="end" { (label(top)) }
                text x=(CHART_LEFT - 6) y=(y(0) + 4) font-size="11" text-anchor="end" { (label(0)) }
                @if bottom < 0 {
                    text x=(CHART_LEFT - 6) y=(y(bottom) + 4) font-size="11" text-anchor="end" { (label(bottom)) }
                }
                @for day in [0, days / 2, days - 1] {
                    text x=(x(day)) y=(CHART_HEIGHT - 10) font-size="11" text-anchor="middle" { (day + 1) }
                }
                @if let Some(threshold) = threshold {
                    line x1=(CHART_LEFT) x2=(CHART_WIDTH - CHART_RIGHT) y1=(y(threshold)) y2=(y(threshold)) stroke="#b3261e" stroke-dasharray="6 4" {}
                }
                @for (index, series) in series.iter().enumerate() {
                    @let colour = PALETTE[index % PALETTE.len()];
                    @let points = series.values.iter().enumerate().map(|(day, value)| format!("{},{}", x(i64::try_from(day).unwrap_or(0)), y(*value))).collect::<Vec<_>>().join(" ");
                    polyline points=(points) fill="none" stroke=(colour) stroke-width="2" {}
                    @let legend_y = CHART_HEIGHT + 18 * i64::try_from(index).unwrap_or(0);
                    rect x=(CHART_LEFT) y=(legend_y) width="12" height="12" fill=(colour) {}
                    text x=(CHART_LEFT + 18) y=(legend_y + 11) font-size="12" { (series.name) }
                }
            }
            figcaption { (title) }
        }
    }
}

/// Rows (settlements and cancellations, posted) per day per pair.
fn volume_chart(
    console: &Shared,
    pairs: &[PairDay],
    first: NaiveDate,
    last: NaiveDate,
    lang: Lang,
) -> Markup {
    let days = (last - first).num_days() + 1;
    let mut by_pair: BTreeMap<(String, String), Vec<i64>> = BTreeMap::new();
    for day in pairs {
        let Ok(date) = NaiveDate::parse_from_str(&day.date, "%Y-%m-%d") else {
            continue;
        };
        let index = usize::try_from((date - first).num_days()).unwrap_or(0);
        let values = by_pair
            .entry((day.treatment_city.clone(), day.insured_city.clone()))
            .or_insert_with(|| vec![0; usize::try_from(days).unwrap_or(0)]);
        if let Some(value) = values.get_mut(index) {
            *value += i64::try_from(day.settlements + day.cancellations).unwrap_or(i64::MAX);
        }
    }
    if by_pair.is_empty() {
        return html! { p { (lang.t("none")) } };
    }
    let series: Vec<Series> = by_pair
        .into_iter()
        .map(|((treatment, insured), values)| Series {
            name: format!(
                "{} → {}",
                city_name(console, &insured, lang),
                city_name(console, &treatment, lang)
            ),
            values,
        })
        .collect();
    line_chart(
        "volume-chart",
        lang.t("volume_per_day"),
        &series,
        days,
        None,
        |value| value.to_string(),
    )
}

/// Each city's available prepaid fund at the end of each day, against its threshold.
fn fund_chart(
    console: &Shared,
    funds: &[FundDay],
    first: NaiveDate,
    last: NaiveDate,
    lang: Lang,
) -> Markup {
    let days = (last - first).num_days() + 1;
    let mut by_city: BTreeMap<String, (Vec<i64>, i64)> = BTreeMap::new();
    for day in funds {
        let entry = by_city
            .entry(day.city.clone())
            .or_insert_with(|| (Vec::new(), text::fen(&day.low_balance_threshold)));
        entry.0.push(text::fen(&day.available));
    }
    html! {
        @for (city, (values, threshold)) in &by_city {
            @let title = format!("{} {} — {}", lang.t("prepaid_over_month"), city_name(console, city, lang), lang.t("threshold"));
            (line_chart(&format!("fund-chart-{city}"), &title, &[Series { name: city_name(console, city, lang), values: values.clone() }], days, Some(*threshold), text::fen_to_yuan))
        }
    }
}

/// A month per city, week by week: each day reconciled clean, with breaks, or not reconciled.
fn calendar(console: &Shared, days: &[ReconciliationDay], first: NaiveDate, lang: Lang) -> Markup {
    let mut by_city: BTreeMap<&str, Vec<&ReconciliationDay>> = BTreeMap::new();
    for day in days {
        by_city.entry(day.city.as_str()).or_default().push(day);
    }
    let lead = usize::try_from(first.weekday().num_days_from_monday()).unwrap_or(0);
    let weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    html! {
        @for (city, days) in &by_city {
            table.calendar id=(format!("calendar-{city}")) {
                caption { (lang.t("calendar")) " — " (city_name(console, city, lang)) }
                thead { tr { @for weekday in weekdays { th scope="col" { (lang.t(weekday)) } } } }
                tbody {
                    @let cells: Vec<Option<&ReconciliationDay>> = std::iter::repeat_n(None, lead).chain(days.iter().copied().map(Some)).collect();
                    @for week in cells.chunks(7) {
                        tr {
                            @for cell in week {
                                @match cell {
                                    None => td {},
                                    Some(day) => {
                                        @let (class, word) = day_state(day);
                                        td class=(class) data-date=(day.date) {
                                            (day.date.get(8..).unwrap_or_default()) br;
                                            @if day.runs > 0 {
                                                a href=(format!("/reconcile?date={}", day.date)) { (lang.t(word)) }
                                            } @else { (lang.t(word)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn day_state(day: &ReconciliationDay) -> (&'static str, &'static str) {
    if day.runs == 0 {
        ("day-none", "not_reconciled")
    } else if day.last_result == ReconciliationResult::Matched as i32 {
        ("day-clean", "matched")
    } else {
        ("day-breaks", "mismatched")
    }
}
