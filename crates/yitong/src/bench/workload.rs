//! What one simulated HIS does: the seeded persons and hospitals it draws from, the fee lines it
//! bills, and one outpatient visit settled (RegisterVisit, UploadFeeLines, optionally PreSettle,
//! Settle, and now and then CancelSettlement or ReverseByMessageId), each call timed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use rand::rngs::StdRng;
use serde::Deserialize;
use tonic::Request;
use tonic::transport::Channel;
use yitong_core::{Amount, CardNumber, PoolCode};
use yitong_proto::identity::v1::{Credential, InsuranceType, credential::Kind};
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_proto::settlement::v1::{
    FeeLine, MedicalType, PreSettleRequest, RegisterVisitRequest, ReversalOutcome,
    UploadFeeLinesRequest,
};

use super::calls::{Answer, Call, CallLog, Sent};
use super::stats::{Rpc, Stats};

/// Fixture persons (1 to 8 of every city) are kept for the end-to-end tests; the bench draws
/// from the generated ones.
const FIRST_GENERATED_PERSON: usize = 9;

/// The most fee lines one UploadFeeLines may carry (the service's own limit).
pub const LINES_PER_VISIT_MAX: u32 = 100;

/// The share of each city's patients who are its regulars (chronic patients back every few
/// weeks): one in a hundred.
const REGULARS_PER_HUNDRED: usize = 1;

/// The share of visits made by regulars, in percent: with half the visits theirs, a regular
/// passes the deductible within one run and the fund pays, as it does for the patients who
/// come most often.
const REGULAR_VISITS_PERCENT: u32 = 50;

/// A line's unit price is its price cap in the treatment city times a percentage drawn from
/// this range: most lines are at or under the cap, as hospitals charge, and about one in five
/// passes it by a little.
const PRICE_OF_CAP_PERCENT: std::ops::RangeInclusive<i64> = 85..=105;

/// A seeded person the bench may treat: active insurance, active card.
#[derive(Debug, Clone)]
struct Patient {
    /// 1-based position among the city's seeded persons: the card serial and person number.
    serial: u32,
    insurance_type: InsuranceType,
}

/// Everything the visits are drawn from, read once from the seed files.
#[derive(Debug)]
pub struct Population {
    /// The enabled cities, in network-file order.
    pub cities: Vec<PoolCode>,
    patients: HashMap<PoolCode, Vec<Patient>>,
    /// Networked hospitals of each city (cross-city visits need a networked institution).
    hospitals: HashMap<PoolCode, Vec<String>>,
    /// Each hospital's `authorization` metadata: its HIS's API key ([`Population::authorize`]).
    authorizations: HashMap<String, http::HeaderValue>,
    /// Items every enabled city's catalog holds without an end date and with a price cap, so
    /// a line is classified and priced in any treatment city.
    items: Vec<Item>,
}

/// A catalog item the visits may bill, with its price cap in each enabled city.
#[derive(Debug)]
struct Item {
    code: String,
    /// Drugs are dispensed one to three packs at a time; a service is performed once.
    drug: bool,
    cap_fen: HashMap<PoolCode, i64>,
}

#[derive(Debug, Deserialize)]
struct PersonRow {
    insured_city: String,
    insurance_type: String,
    status: String,
    card_status: String,
}

#[derive(Debug, Deserialize)]
struct InstitutionRow {
    code: String,
    kind: String,
    networked_since: String,
}

#[derive(Debug, Deserialize)]
struct ItemRow {
    city: String,
    code: String,
    kind: String,
    price_cap: String,
    valid_until: String,
}

impl Population {
    /// Reads `persons.csv`, `institutions.csv` and `catalog_items.csv` under `seeds`.
    pub fn load(seeds: &Path, cities: Vec<PoolCode>, lines: u32) -> anyhow::Result<Self> {
        let mut patients: HashMap<PoolCode, Vec<Patient>> = HashMap::new();
        let mut position: HashMap<PoolCode, usize> = HashMap::new();
        for row in read_csv::<PersonRow>(&seeds.join("persons.csv"))? {
            let city = PoolCode::parse(&row.insured_city)
                .map_err(|_| anyhow::anyhow!("bad insured_city {}", row.insured_city))?;
            let serial = position.entry(city).or_default();
            *serial += 1;
            if *serial < FIRST_GENERATED_PERSON
                || row.status != "active"
                || row.card_status != "active"
            {
                continue;
            }
            let insurance_type = match row.insurance_type.as_str() {
                "310" => InsuranceType::Employee,
                "390" => InsuranceType::Resident,
                other => bail!("unknown insurance type {other} in persons.csv"),
            };
            patients.entry(city).or_default().push(Patient {
                serial: u32::try_from(*serial).context("too many persons")?,
                insurance_type,
            });
        }
        let mut hospitals: HashMap<PoolCode, Vec<String>> = HashMap::new();
        for row in read_csv::<InstitutionRow>(&seeds.join("institutions.csv"))? {
            if row.kind != "hospital" || row.networked_since.is_empty() {
                continue;
            }
            let Some(city) = row
                .code
                .get(1..7)
                .and_then(|code| PoolCode::parse(code).ok())
            else {
                bail!("bad institution code {}", row.code);
            };
            hospitals.entry(city).or_default().push(row.code);
        }
        // The seed files hold every city of the network file, enabled or not: only the running
        // cities' hospitals are drawn from (and hold keys).
        hospitals.retain(|city, _| cities.contains(city));
        // Items by code: whether a drug, and the cap of each city that holds it open-ended.
        let mut held: BTreeMap<String, (bool, HashMap<PoolCode, i64>)> = BTreeMap::new();
        for row in read_csv::<ItemRow>(&seeds.join("catalog_items.csv"))? {
            if !row.valid_until.is_empty() || row.price_cap.is_empty() {
                continue;
            }
            let city = PoolCode::parse(&row.city)
                .map_err(|_| anyhow::anyhow!("bad city {} in catalog_items.csv", row.city))?;
            let cap = Amount::parse(&row.price_cap)
                .map_err(|_| anyhow::anyhow!("bad price_cap {} of {}", row.price_cap, row.code))?;
            let (_, caps) = held
                .entry(row.code)
                .or_insert_with(|| (row.kind == "drug", HashMap::new()));
            caps.insert(city, cap.fen());
        }
        let items: Vec<Item> = held
            .into_iter()
            .filter(|(_, (_, caps))| {
                cities
                    .iter()
                    .all(|city| caps.get(city).is_some_and(|cap| *cap > 0))
            })
            .map(|(code, (drug, cap_fen))| Item {
                code,
                drug,
                cap_fen,
            })
            .collect();
        if items.len() < lines as usize {
            bail!(
                "the catalogs share only {} capped item codes, fewer than --lines {lines}",
                items.len()
            );
        }
        for city in &cities {
            if patients.get(city).is_none_or(Vec::is_empty) {
                bail!("no active seeded person in {city}");
            }
            if hospitals.get(city).is_none_or(Vec::is_empty) {
                bail!("no networked hospital in {city}");
            }
        }
        Ok(Population {
            cities,
            patients,
            hospitals,
            authorizations: HashMap::new(),
            items,
        })
    }

    /// Gives every hospital its HIS's API key from `credentials`; a hospital without one is an
    /// error, since its every call would be refused.
    pub fn authorize(&mut self, credentials: &yitong_auth::Credentials) -> anyhow::Result<()> {
        for code in self.hospitals.values().flatten() {
            let caller = yitong_rpc::Caller::Institution(
                yitong_core::InstitutionCode::parse(code)
                    .map_err(|_| anyhow::anyhow!("bad institution code {code}"))?,
            );
            let authorization = crate::client::authorization_of(credentials, &caller)?;
            self.authorizations.insert(code.clone(), authorization);
        }
        Ok(())
    }
}

impl Population {
    /// Every hospital visits may be drawn at, with its city.
    pub fn hospitals(&self) -> Vec<(PoolCode, String)> {
        self.cities
            .iter()
            .flat_map(|city| {
                self.hospitals[city]
                    .iter()
                    .map(move |code| (*city, code.clone()))
            })
            .collect()
    }
}

fn read_csv<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    reader
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .with_context(|| format!("bad row in {}", path.display()))
}

/// The shape of the load, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Fee lines per visit.
    pub lines: u32,
    /// Percentage of visits whose patient is insured in another city than the treatment city.
    pub cross_city_percent: u32,
    /// Percentage of settled visits then cancelled with CancelSettlement.
    pub cancel_percent: u32,
    /// Percentage of visits that ask PreSettle before Settle.
    pub pre_settle_percent: u32,
    /// Percentage of visits (not cancelled) whose Settle the HIS then reverses with
    /// ReverseByMessageId, whether or not it got the Settle's answer.
    pub reverse_percent: u32,
    /// Deadline of every call.
    pub timeout: Duration,
}

/// One visit, drawn before it starts.
#[derive(Debug)]
pub struct Plan {
    /// Sequence number of the visit in the run; part of every message id.
    pub number: u64,
    treatment: PoolCode,
    insured: PoolCode,
    patient: Patient,
    hospital: String,
    /// The hospital's API key, as its HIS presents it.
    authorization: Option<http::HeaderValue>,
    pre_settle: bool,
    cancel: bool,
    reverse: bool,
    lines: Vec<PlannedLine>,
}

/// One fee line of a planned visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlannedLine {
    /// Index into [`Population::items`].
    item: usize,
    quantity: i64,
    unit_price_fen: i64,
}

impl PlannedLine {
    fn amount_fen(&self) -> i64 {
        self.quantity * self.unit_price_fen
    }
}

impl Plan {
    pub fn draw(population: &Population, mix: &Mix, number: u64, rng: &mut StdRng) -> Plan {
        let cities = &population.cities;
        let treatment = cities[rng.random_range(0..cities.len())];
        let insured = if cities.len() > 1 && rng.random_range(0..100) < mix.cross_city_percent {
            let others: Vec<PoolCode> = cities
                .iter()
                .copied()
                .filter(|city| *city != treatment)
                .collect();
            others[rng.random_range(0..others.len())]
        } else {
            treatment
        };
        let patients = &population.patients[&insured];
        let regulars = (patients.len() * REGULARS_PER_HUNDRED / 100).max(1);
        let patient = if rng.random_range(0..100) < REGULAR_VISITS_PERCENT {
            patients[rng.random_range(0..regulars)].clone()
        } else {
            patients[rng.random_range(0..patients.len())].clone()
        };
        let hospitals = &population.hospitals[&treatment];
        let hospital = hospitals[rng.random_range(0..hospitals.len())].clone();
        let lines = rand::seq::index::sample(rng, population.items.len(), mix.lines as usize)
            .into_iter()
            .map(|item| {
                let drawn = &population.items[item];
                PlannedLine {
                    item,
                    quantity: if drawn.drug {
                        rng.random_range(1..=3)
                    } else {
                        1
                    },
                    unit_price_fen: drawn.cap_fen[&treatment]
                        * rng.random_range(PRICE_OF_CAP_PERCENT)
                        / 100,
                }
            })
            .collect();
        Plan {
            number,
            treatment,
            insured,
            patient,
            authorization: population.authorizations.get(&hospital).cloned(),
            hospital,
            pre_settle: rng.random_range(0..100) < mix.pre_settle_percent,
            cancel: rng.random_range(0..100) < mix.cancel_percent,
            lines,
            reverse: rng.random_range(0..100) < mix.reverse_percent,
        }
    }

    pub fn treatment(&self) -> PoolCode {
        self.treatment
    }

    /// Whether the patient is insured in another city than the treatment city.
    pub fn cross_city(&self) -> bool {
        self.treatment != self.insured
    }
}

/// What became of one visit.
#[derive(Debug)]
pub enum Outcome {
    /// Settled, and cancelled when the plan said so.
    Settled {
        settlement_id: String,
        /// Whether the Settle's split had any fund pay.
        fund_paid: bool,
        /// None when the plan kept the settlement; else whether CancelSettlement (or
        /// ReverseByMessageId) cancelled it.
        cancel: Option<bool>,
    },
    /// A call failed (recorded in the stats); the visit went no further.
    Failed,
}

/// Runs one visit through the treatment city's SettlementService, recording every call, and
/// writing its Settle, CancelSettlement and ReverseByMessageId to the call log if there is one.
pub async fn run_visit(
    client: &mut SettlementServiceClient<Channel>,
    population: &Population,
    plan: &Plan,
    run_tag: &str,
    mix: &Mix,
    stats: &Stats,
    log: Option<&CallLog>,
) -> Outcome {
    let message = |step: &str| format!("{run_tag}-{}-{step}", plan.number);
    let person_no = format!("{}{:010}", plan.insured, plan.patient.serial);
    let credential = Some(Credential {
        kind: Some(Kind::CardNumber(
            CardNumber::new(plan.insured, plan.patient.serial).to_string(),
        )),
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let register = RegisterVisitRequest {
        message_id: message("R"),
        person_no: person_no.clone(),
        credential: credential.clone(),
        insurance_type: plan.patient.insurance_type as i32,
        institution_code: plan.hospital.clone(),
        medical_type: MedicalType::Outpatient as i32,
        began_at: Some(prost_types::Timestamp {
            seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX) - 60,
            nanos: 0,
        }),
        department_code: "0301".into(),
        department_name: "内科".into(),
        doctor_code: "D001".into(),
        doctor_name: "王医生".into(),
        his_visit_no: format!("HIS-{run_tag}-{}", plan.number),
        diagnoses: vec![],
        operator_id: "bench".into(),
        disease_code: String::new(),
    };
    let Some(visit) = timed(
        stats,
        Rpc::RegisterVisit,
        client.register_visit(request(register, mix, plan)),
    )
    .await
    .and_then(|reply| reply.visit) else {
        return Outcome::Failed;
    };
    let lines: Vec<FeeLine> = plan
        .lines
        .iter()
        .enumerate()
        .map(|(index, line)| FeeLine {
            serial: (index + 1).to_string(),
            item_code: population.items[line.item].code.clone(),
            quantity: line.quantity.to_string(),
            unit_price: Amount::from_fen(line.unit_price_fen).to_string(),
            amount: Amount::from_fen(line.amount_fen()).to_string(),
            ..Default::default()
        })
        .collect();
    let total = Amount::from_fen(plan.lines.iter().map(PlannedLine::amount_fen).sum()).to_string();
    let upload = UploadFeeLinesRequest {
        message_id: message("U"),
        visit_id: visit.visit_id.clone(),
        person_no: person_no.clone(),
        institution_code: plan.hospital.clone(),
        lines,
        operator_id: "bench".into(),
    };
    if timed(
        stats,
        Rpc::UploadFeeLines,
        client.upload_fee_lines(request(upload, mix, plan)),
    )
    .await
    .is_none()
    {
        return Outcome::Failed;
    }
    let use_personal_account = plan.patient.insurance_type == InsuranceType::Employee;
    if plan.pre_settle {
        let pre_settle = PreSettleRequest {
            message_id: message("P"),
            visit_id: visit.visit_id.clone(),
            person_no: person_no.clone(),
            credential: credential.clone(),
            insurance_type: plan.patient.insurance_type as i32,
            total_amount: total.clone(),
            use_personal_account,
            institution_code: plan.hospital.clone(),
            operator_id: "bench".into(),
        };
        if timed(
            stats,
            Rpc::PreSettle,
            client.pre_settle(request(pre_settle, mix, plan)),
        )
        .await
        .is_none()
        {
            return Outcome::Failed;
        }
    }
    let settle = Sent::Settle {
        message_id: message("S"),
        visit_id: visit.visit_id.clone(),
        person_no: person_no.clone(),
        card_number: CardNumber::new(plan.insured, plan.patient.serial).to_string(),
        insurance_type: plan.patient.insurance_type as i32,
        total_amount: total,
        use_personal_account,
        institution_code: plan.hospital.clone(),
    };
    let settle_request = settle.settle_request().expect("a Settle");
    let settlement = logged(
        stats,
        log,
        Rpc::Settle,
        &settle,
        Answer::of_settle,
        client.settle(request(settle_request, mix, plan)),
    )
    .await
    .and_then(|reply| reply.settlement);
    // An HIS reverses a Settle by its message id, answered or not (2601 is for the Settle that
    // timed out); a cancellation needs the settlement id, so only an answered one.
    if plan.reverse && !plan.cancel {
        let reverse = Sent::ReverseByMessageId {
            message_id: message("V"),
            original_message_id: settle.message_id().to_owned(),
            institution_code: plan.hospital.clone(),
            reason: "bench reversal".into(),
        };
        let reverse_request = reverse.reverse_request().expect("a reversal");
        let reversed = logged(
            stats,
            log,
            Rpc::ReverseByMessageId,
            &reverse,
            Answer::of_reverse,
            client.reverse_by_message_id(request(reverse_request, mix, plan)),
        )
        .await
        .is_some_and(|reply| reply.outcome == ReversalOutcome::Cancelled as i32);
        return match settlement {
            Some(settlement) => Outcome::Settled {
                fund_paid: fund_paid(&settlement),
                settlement_id: settlement.settlement_id,
                cancel: Some(reversed),
            },
            None => Outcome::Failed,
        };
    }
    let Some(settlement) = settlement else {
        return Outcome::Failed;
    };
    let fund_paid = fund_paid(&settlement);
    if !plan.cancel {
        return Outcome::Settled {
            settlement_id: settlement.settlement_id,
            fund_paid,
            cancel: None,
        };
    }
    let cancel = Sent::CancelSettlement {
        message_id: message("C"),
        settlement_id: settlement.settlement_id.clone(),
        visit_id: visit.visit_id,
        person_no,
        institution_code: plan.hospital.clone(),
        reason: "bench cancellation".into(),
    };
    let cancel_request = cancel.cancel_request().expect("a cancellation");
    let cancelled = logged(
        stats,
        log,
        Rpc::CancelSettlement,
        &cancel,
        Answer::of_cancel,
        client.cancel_settlement(request(cancel_request, mix, plan)),
    )
    .await
    .is_some();
    Outcome::Settled {
        settlement_id: settlement.settlement_id,
        fund_paid,
        cancel: Some(cancelled),
    }
}

/// Whether a settlement's split has any fund pay.
fn fund_paid(settlement: &yitong_proto::settlement::v1::Settlement) -> bool {
    settlement
        .split
        .as_ref()
        .and_then(|split| Amount::parse(&split.fund_pay).ok())
        .is_some_and(|fund_pay| fund_pay > Amount::ZERO)
}

fn request<T>(message: T, mix: &Mix, plan: &Plan) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(mix.timeout);
    if let Some(authorization) = &plan.authorization {
        request.metadata_mut().insert(
            "authorization",
            tonic::metadata::AsciiMetadataValue::try_from(authorization.as_bytes())
                .expect("a header value is ASCII metadata"),
        );
    }
    request
}

/// Awaits one call, records its latency (successful calls) or its status code (failures).
async fn timed<T>(
    stats: &Stats,
    rpc: Rpc,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Option<T> {
    let started = Instant::now();
    match call.await {
        Ok(reply) => {
            stats.record(rpc, started.elapsed());
            Some(reply.into_inner())
        }
        Err(status) => {
            stats.fail(rpc, status.code());
            None
        }
    }
}

/// [`timed`], and the call with its answer (summed up by `answer`) written to the call log.
async fn logged<T>(
    stats: &Stats,
    log: Option<&CallLog>,
    rpc: Rpc,
    sent: &Sent,
    answer: fn(&T) -> Answer,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Option<T> {
    let started = Instant::now();
    let result = call.await;
    match &result {
        Ok(_) => stats.record(rpc, started.elapsed()),
        Err(status) => stats.fail(rpc, status.code()),
    }
    if let Some(log) = log {
        log.call(Call {
            sent: sent.clone(),
            code: format!(
                "{:?}",
                result
                    .as_ref()
                    .map_or_else(|status| status.code(), |_| tonic::Code::Ok)
            ),
            answer: result.as_ref().ok().map(|reply| answer(reply.get_ref())),
        });
    }
    result.ok().map(tonic::Response::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn city(code: &str) -> PoolCode {
        PoolCode::parse(code).expect("a city code")
    }

    /// Two cities, a hundred patients each, two drugs and two services with different caps in
    /// each city.
    fn population() -> Population {
        let (jinan, zibo) = (city("370100"), city("370300"));
        let patients = (1..=100)
            .map(|serial| Patient {
                serial,
                insurance_type: InsuranceType::Resident,
            })
            .collect::<Vec<_>>();
        let item = |code: &str, drug: bool, jinan_cap: i64, zibo_cap: i64| Item {
            code: code.into(),
            drug,
            cap_fen: HashMap::from([(jinan, jinan_cap), (zibo, zibo_cap)]),
        };
        Population {
            cities: vec![jinan, zibo],
            patients: HashMap::from([(jinan, patients.clone()), (zibo, patients)]),
            hospitals: HashMap::from([
                (jinan, vec!["H37010000001".into()]),
                (zibo, vec!["H37030000001".into()]),
            ]),
            authorizations: HashMap::new(),
            items: vec![
                item("D1", true, 2_500, 2_300),
                item("D2", true, 101, 99),
                item("S1", false, 1_500, 1_800),
                item("S2", false, 40_000, 38_000),
            ],
        }
    }

    fn mix(lines: u32) -> Mix {
        Mix {
            lines,
            cross_city_percent: 70,
            cancel_percent: 0,
            pre_settle_percent: 0,
            reverse_percent: 0,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn lines_are_priced_around_the_treatment_city_s_caps() {
        let population = population();
        let mut rng = StdRng::seed_from_u64(7);
        let (mut over_cap, mut lines) = (0, 0);
        for number in 0..2_000 {
            let plan = Plan::draw(&population, &mix(3), number, &mut rng);
            let mut items: Vec<usize> = plan.lines.iter().map(|line| line.item).collect();
            items.sort_unstable();
            items.dedup();
            assert_eq!(items.len(), 3, "a visit bills distinct items");
            for line in &plan.lines {
                let item = &population.items[line.item];
                let cap = item.cap_fen[&plan.treatment];
                assert!(
                    line.unit_price_fen >= cap * 85 / 100 && line.unit_price_fen <= cap * 105 / 100,
                    "{} priced {} against a cap of {cap}",
                    item.code,
                    line.unit_price_fen
                );
                if item.drug {
                    assert!((1..=3).contains(&line.quantity));
                } else {
                    assert_eq!(line.quantity, 1, "a service is performed once");
                }
                lines += 1;
                over_cap += i32::from(line.unit_price_fen > cap);
            }
        }
        // One line in four draws 101..=105 percent of its cap (5 of 21 percentages).
        assert!(
            (lines / 6..lines / 3).contains(&over_cap),
            "{over_cap} of {lines} lines over their caps"
        );
    }

    #[test]
    fn regulars_make_half_the_visits() {
        let population = population();
        let mut rng = StdRng::seed_from_u64(11);
        let visits = 4_000;
        let by_regular = (0..visits)
            .filter(|number| {
                Plan::draw(&population, &mix(1), *number, &mut rng)
                    .patient
                    .serial
                    == 1
            })
            .count();
        // A hundred patients a city: one regular, who makes about half the visits (plus a
        // hundredth of the other half).
        assert!(
            (1_800..2_300).contains(&by_regular),
            "the regular made {by_regular} of {visits} visits"
        );
    }
}
