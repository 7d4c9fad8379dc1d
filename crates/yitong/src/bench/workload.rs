//! What one simulated HIS does: the seeded persons and hospitals it draws from, the fee lines it
//! bills, and one outpatient visit settled (RegisterVisit, UploadFeeLines, optionally PreSettle,
//! Settle, and now and then CancelSettlement or ReverseByMessageId), each call timed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rand::Rng;
use rand::rngs::StdRng;
use serde::Deserialize;
use tonic::Request;
use tonic::transport::Channel;
use yitong_core::{Amount, CardNumber, CityCode};
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
    pub cities: Vec<CityCode>,
    patients: HashMap<CityCode, Vec<Patient>>,
    /// Networked hospitals of each city (cross-city visits need a networked institution).
    hospitals: HashMap<CityCode, Vec<String>>,
    /// Each hospital's `authorization` metadata: its HIS's API key ([`Population::authorize`]).
    authorizations: HashMap<String, http::HeaderValue>,
    /// Item codes every enabled city's catalog holds without an end date, so a line is
    /// classified in any treatment city.
    item_codes: Vec<String>,
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
    valid_until: String,
}

impl Population {
    /// Reads `persons.csv`, `institutions.csv` and `catalog_items.csv` under `seeds`.
    pub fn load(seeds: &Path, cities: Vec<CityCode>, lines: u32) -> anyhow::Result<Self> {
        let mut patients: HashMap<CityCode, Vec<Patient>> = HashMap::new();
        let mut position: HashMap<CityCode, usize> = HashMap::new();
        for row in read_csv::<PersonRow>(&seeds.join("persons.csv"))? {
            let city = CityCode::parse(&row.insured_city)
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
        let mut hospitals: HashMap<CityCode, Vec<String>> = HashMap::new();
        for row in read_csv::<InstitutionRow>(&seeds.join("institutions.csv"))? {
            if row.kind != "hospital" || row.networked_since.is_empty() {
                continue;
            }
            let Some(city) = row
                .code
                .get(1..7)
                .and_then(|code| CityCode::parse(code).ok())
            else {
                bail!("bad institution code {}", row.code);
            };
            hospitals.entry(city).or_default().push(row.code);
        }
        let mut holders: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in read_csv::<ItemRow>(&seeds.join("catalog_items.csv"))? {
            if row.valid_until.is_empty() {
                holders.entry(row.code).or_default().insert(row.city);
            }
        }
        let item_codes: Vec<String> = holders
            .into_iter()
            .filter(|(_, held_by)| {
                cities
                    .iter()
                    .all(|city| held_by.contains(&city.to_string()))
            })
            .map(|(code, _)| code)
            .take(lines as usize)
            .collect();
        if item_codes.len() < lines as usize {
            bail!(
                "the catalogs share only {} item codes, fewer than --lines {lines}",
                item_codes.len()
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
            item_codes,
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
    pub fn hospitals(&self) -> Vec<(CityCode, String)> {
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
    treatment: CityCode,
    insured: CityCode,
    patient: Patient,
    hospital: String,
    /// The hospital's API key, as its HIS presents it.
    authorization: Option<http::HeaderValue>,
    pre_settle: bool,
    cancel: bool,
    reverse: bool,
    /// Unit prices in fen, one per line.
    prices_fen: Vec<i64>,
}

impl Plan {
    pub fn draw(population: &Population, mix: &Mix, number: u64, rng: &mut StdRng) -> Plan {
        let cities = &population.cities;
        let treatment = cities[rng.random_range(0..cities.len())];
        let insured = if cities.len() > 1 && rng.random_range(0..100) < mix.cross_city_percent {
            let others: Vec<CityCode> = cities
                .iter()
                .copied()
                .filter(|city| *city != treatment)
                .collect();
            others[rng.random_range(0..others.len())]
        } else {
            treatment
        };
        let patients = &population.patients[&insured];
        let hospitals = &population.hospitals[&treatment];
        let hospital = hospitals[rng.random_range(0..hospitals.len())].clone();
        Plan {
            number,
            treatment,
            insured,
            patient: patients[rng.random_range(0..patients.len())].clone(),
            authorization: population.authorizations.get(&hospital).cloned(),
            hospital,
            pre_settle: rng.random_range(0..100) < mix.pre_settle_percent,
            cancel: rng.random_range(0..100) < mix.cancel_percent,
            // 50.00 to 800.00 yuan a line: a visit passes most deductibles, so the fund pays, and
            // some lines pass their price caps.
            prices_fen: (0..mix.lines)
                .map(|_| rng.random_range(5_000..=80_000))
                .collect(),
            reverse: rng.random_range(0..100) < mix.reverse_percent,
        }
    }

    pub fn treatment(&self) -> CityCode {
        self.treatment
    }
}

/// What became of one visit.
#[derive(Debug)]
pub enum Outcome {
    /// Settled, and cancelled when the plan said so.
    Settled {
        settlement_id: String,
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
        .prices_fen
        .iter()
        .zip(&population.item_codes)
        .enumerate()
        .map(|(index, (price_fen, code))| {
            let price = Amount::from_fen(*price_fen).to_string();
            FeeLine {
                serial: (index + 1).to_string(),
                item_code: code.clone(),
                quantity: "1".into(),
                unit_price: price.clone(),
                amount: price,
                ..Default::default()
            }
        })
        .collect();
    let total = Amount::from_fen(plan.prices_fen.iter().sum()).to_string();
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
                settlement_id: settlement.settlement_id,
                cancel: Some(reversed),
            },
            None => Outcome::Failed,
        };
    }
    let Some(settlement) = settlement else {
        return Outcome::Failed;
    };
    if !plan.cancel {
        return Outcome::Settled {
            settlement_id: settlement.settlement_id,
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
        cancel: Some(cancelled),
    }
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
