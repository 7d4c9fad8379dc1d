//! Outpatient chronic and special diseases (门诊慢特病) at the insured city: its disease policy
//! (a deductible, ratio and annual quota per disease and insurance type, seeded from
//! `seeds/disease_policies.csv`), its persons' certifications (认定, the bureau's
//! CertificationService, national 2503 / 2504 / 5301), and the policy a medical type 14 claim
//! prices under: the disease's, for a person certified for it at the institution on the date.
//!
//! Certifications live in the insured city's settlement store beside the running totals they
//! open. A person's certifications are changed under the person's `benefit_years` row of the
//! year of the call (the lock every Reserve of the person takes), so two racing Certify calls
//! cannot both pass the overlap check. A Reserve reads the certification in force once, in its
//! transaction.

use prost::Message;
use tonic::{Request, Response, Status};
use yitong_core::{Date, InstitutionCode, Invalid, MessageId, Owner, PersonNo, parse_date};
use yitong_proto::settlement::v1 as pb;
use yitong_rpc::{Caller, invalid_argument};
use yitong_store::now_ms;
use yitong_store::replies::{self, Claim, Scope};
use yitong_store::sqlx::{self, AnyConnection, Row};

use super::claim::{self, Asked};
use super::dated::Dated;
use super::{BenefitError, BenefitNode};
use crate::split::{InsuranceType, Policy};

/// A person's certifications are few; a query answers at most this many, newest first.
pub const CERTIFICATIONS_PER_QUERY_MAX: i64 = 100;
/// Most designated institutions one certification lists.
pub const INSTITUTIONS_PER_CERTIFICATION_MAX: usize = 10;
/// Longest disease code, in characters (national opsp_dise_code is at most 30).
pub const DISEASE_CODE_CHARS_MAX: usize = 30;

/// Checks a disease code's shape: 1 to 30 ASCII letters and digits ("M03900"). Whether the
/// insured city covers it is its policy's to say.
pub fn parse_disease_code(text: &str, field: &str) -> Result<String, Invalid> {
    let ok = !text.is_empty()
        && text.len() <= DISEASE_CODE_CHARS_MAX
        && text.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok {
        return Err(Invalid::new(
            field,
            format!(
                "must be a disease code of 1 to {DISEASE_CODE_CHARS_MAX} letters and digits, such as M03900"
            ),
        ));
    }
    Ok(text.to_owned())
}

/// One row of an insured city's disease policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiseasePolicy {
    pub disease_code: String,
    pub disease_name: String,
    pub insurance_type: InsuranceType,
    /// The disease's yearly deductible, ratio and annual quota (as the policy's annual cap).
    pub policy: Policy,
}

impl DiseasePolicy {
    /// The policy id a split priced under it records: the disease and the insurance type.
    pub fn policy_id(&self) -> String {
        format!(
            "{}-{}",
            self.disease_code,
            claim::insurance_type_code(self.insurance_type)
        )
    }
}

fn insurance_code(insurance_type: InsuranceType) -> i64 {
    match insurance_type {
        InsuranceType::Employee => 310,
        InsuranceType::Resident => 390,
    }
}

fn policy_of_row(row: &sqlx::any::AnyRow) -> Result<DiseasePolicy, BenefitError> {
    let code: String = row.try_get("disease_code")?;
    let corrupt = || BenefitError::Corrupt(format!("disease policy of {code}"));
    let insurance_type = match row.try_get::<i64, _>("insurance_type")? {
        310 => InsuranceType::Employee,
        390 => InsuranceType::Resident,
        _ => return Err(corrupt()),
    };
    let ratio: String = row.try_get("ratio")?;
    let policy = Policy::new(
        yitong_core::Amount::from_fen(row.try_get("deductible_fen")?),
        claim::ratio(&ratio, "ratio").map_err(|_| corrupt())?,
        yitong_core::Amount::from_fen(row.try_get("annual_quota_fen")?),
    )
    .map_err(|_| corrupt())?;
    Ok(DiseasePolicy {
        disease_code: code.clone(),
        disease_name: row.try_get("disease_name")?,
        insurance_type,
        policy,
    })
}

/// The insured city's policy for a disease and insurance type; `None` when it does not cover
/// the disease.
pub(super) async fn policy_for(
    conn: &mut AnyConnection,
    disease_code: &str,
    insurance_type: InsuranceType,
) -> Result<Option<DiseasePolicy>, BenefitError> {
    let row = sqlx::query(
        "SELECT disease_code, insurance_type, disease_name, deductible_fen, ratio, annual_quota_fen \
         FROM disease_policies WHERE disease_code = $1 AND insurance_type = $2",
    )
    .bind(disease_code)
    .bind(insurance_code(insurance_type))
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(policy_of_row).transpose()
}

/// Every disease the insured city covers for an insurance type, by code.
pub(super) async fn policies_for(
    conn: &mut AnyConnection,
    insurance_type: InsuranceType,
) -> Result<Vec<DiseasePolicy>, BenefitError> {
    let rows = sqlx::query(
        "SELECT disease_code, insurance_type, disease_name, deductible_fen, ratio, annual_quota_fen \
         FROM disease_policies WHERE insurance_type = $1 ORDER BY disease_code",
    )
    .bind(insurance_code(insurance_type))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(policy_of_row).collect()
}

/// Seeds an insured city's disease policy into its empty settlement store (`seeds/`): the rows
/// written.
pub async fn seed_disease_policies(
    store: &yitong_store::Store,
    policies: &[DiseasePolicy],
) -> Result<usize, sqlx::Error> {
    let mut tx = store.begin_write().await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM disease_policies")
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 {
        tx.rollback().await?;
        return Ok(0);
    }
    for row in policies {
        sqlx::query(
            "INSERT INTO disease_policies (disease_code, insurance_type, disease_name, \
             deductible_fen, ratio, annual_quota_fen, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&row.disease_code)
        .bind(insurance_code(row.insurance_type))
        .bind(&row.disease_name)
        .bind(row.policy.deductible().fen())
        .bind(row.policy.reimbursement_ratio().value().to_string())
        .bind(row.policy.annual_cap().fen())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(policies.len())
}

/// One stored certification.
#[derive(Debug, Clone)]
pub struct CertificationRow {
    pub certification_id: String,
    pub person_no: String,
    pub disease_code: String,
    pub valid_from: String,
    /// Empty for open-ended.
    pub valid_until: String,
    /// Empty for any networked institution.
    pub institution_codes: Vec<String>,
    pub cancelled: bool,
    pub message_id: String,
    pub cancel_message_id: String,
    pub certified_at_ms: i64,
    pub cancelled_at_ms: Option<i64>,
}

impl CertificationRow {
    /// Whether the certification covers a visit at `institution`.
    fn covers(&self, institution: &InstitutionCode) -> bool {
        self.institution_codes.is_empty()
            || self
                .institution_codes
                .iter()
                .any(|code| code == institution.as_str())
    }
}

/// The columns of `certifications`, in the order every query here names them.
macro_rules! columns {
    () => {
        "certification_id, person_no, disease_code, valid_from, valid_until, institution_codes, \
         status, message_id, cancel_message_id, certified_at_ms, cancelled_at_ms"
    };
}

/// Certifications as dated standings toward a disease.
const CERTIFICATIONS: Dated = Dated {
    table: "certifications",
    id_column: "certification_id",
    subject_column: "disease_code",
    live: "certified",
    columns: columns!(),
    serials: "certification_serials",
};

fn row_of(row: &sqlx::any::AnyRow) -> Result<CertificationRow, BenefitError> {
    let status: String = row.try_get("status")?;
    let institutions: String = row.try_get("institution_codes")?;
    Ok(CertificationRow {
        certification_id: row.try_get("certification_id")?,
        person_no: row.try_get("person_no")?,
        disease_code: row.try_get("disease_code")?,
        valid_from: row.try_get("valid_from")?,
        valid_until: row.try_get("valid_until")?,
        institution_codes: institutions
            .split(',')
            .filter(|code| !code.is_empty())
            .map(str::to_owned)
            .collect(),
        cancelled: status == "cancelled",
        message_id: row.try_get("message_id")?,
        cancel_message_id: row.try_get("cancel_message_id")?,
        certified_at_ms: row.try_get("certified_at_ms")?,
        cancelled_at_ms: row.try_get("cancelled_at_ms")?,
    })
}

async fn certifications_of(
    conn: &mut AnyConnection,
    person_no: &str,
) -> Result<Vec<CertificationRow>, BenefitError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM certifications WHERE person_no = $1 \
         ORDER BY certified_at_ms DESC, certification_id DESC LIMIT $2"
    ))
    .bind(person_no)
    .bind(CERTIFICATIONS_PER_QUERY_MAX)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(row_of).collect()
}

async fn certification(
    conn: &mut AnyConnection,
    certification_id: &str,
) -> Result<Option<CertificationRow>, BenefitError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM certifications WHERE certification_id = $1"
    ))
    .bind(certification_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(row_of).transpose()
}

/// The person's certification for the disease in force on `date`, whatever its institutions.
async fn in_force_on(
    conn: &mut AnyConnection,
    person_no: &str,
    disease_code: &str,
    date: Date,
) -> Result<Vec<CertificationRow>, BenefitError> {
    CERTIFICATIONS
        .in_force_on(conn, person_no, disease_code, date)
        .await?
        .iter()
        .map(row_of)
        .collect()
}

/// The person's certification for the disease in force on the date at the institution.
pub(super) async fn in_force(
    conn: &mut AnyConnection,
    asked: &Asked,
    disease_code: &str,
) -> Result<Option<CertificationRow>, BenefitError> {
    Ok(in_force_on(
        conn,
        asked.person_no.as_str(),
        disease_code,
        asked.service_date,
    )
    .await?
    .into_iter()
    .find(|row| row.covers(&asked.institution_code)))
}

/// The disease policy a medical type 14 claim prices under: refused DISEASE_NOT_COVERED when
/// the insured city has no policy for the disease, NOT_CERTIFIED when the person holds no
/// certification for it in force on the date at the institution.
pub(super) async fn priced_policy(
    conn: &mut AnyConnection,
    asked: &Asked,
    disease_code: &str,
) -> Result<DiseasePolicy, BenefitError> {
    let policy = policy_for(conn, disease_code, asked.insurance_type)
        .await?
        .ok_or_else(|| not_covered(disease_code))?;
    if in_force(conn, asked, disease_code).await?.is_none() {
        return Err(BenefitError::refused(
            "NOT_CERTIFIED",
            format!(
                "the person is not certified for disease {disease_code} at institution {} on {}",
                asked.institution_code, asked.service_date
            ),
        ));
    }
    Ok(policy)
}

fn not_covered(disease_code: &str) -> BenefitError {
    BenefitError::refused(
        "DISEASE_NOT_COVERED",
        format!("the insured city's disease policy does not cover disease {disease_code}"),
    )
}

pub(super) fn certification_wire(row: &CertificationRow, disease_name: &str) -> pb::Certification {
    pb::Certification {
        certification_id: row.certification_id.clone(),
        person_no: row.person_no.clone(),
        disease_code: row.disease_code.clone(),
        disease_name: disease_name.to_owned(),
        valid_from: row.valid_from.clone(),
        valid_until: row.valid_until.clone(),
        institution_codes: row.institution_codes.clone(),
        status: match row.cancelled {
            true => pb::CertificationStatus::Cancelled,
            false => pb::CertificationStatus::Certified,
        } as i32,
        message_id: row.message_id.clone(),
        cancel_message_id: row.cancel_message_id.clone(),
        certified_at: Some(yitong_rpc::timestamp_of_ms(row.certified_at_ms)),
        cancelled_at: row.cancelled_at_ms.map(yitong_rpc::timestamp_of_ms),
    }
}

/// The name of a disease as the city's policy gives it (the same for both insurance types).
async fn disease_name(conn: &mut AnyConnection, code: &str) -> Result<String, BenefitError> {
    let name: Option<String> = sqlx::query_scalar(
        "SELECT disease_name FROM disease_policies WHERE disease_code = $1 LIMIT 1",
    )
    .bind(code)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(name.unwrap_or_default())
}

/// A Certify, checked.
struct NewCertification {
    person_no: PersonNo,
    disease_code: String,
    valid_from: Date,
    valid_until: Option<Date>,
    institution_codes: Vec<String>,
}

fn message_id(text: &str) -> Result<MessageId, Invalid> {
    MessageId::parse(text).map_err(|invalid| invalid.at("message_id"))
}

fn person_no(text: &str) -> Result<PersonNo, Invalid> {
    PersonNo::parse(text).map_err(|invalid| invalid.at("person_no"))
}

impl BenefitNode {
    fn new_certification(&self, request: &pb::CertifyRequest) -> Result<NewCertification, Invalid> {
        let person_no = person_no(&request.person_no)?;
        if person_no.insured_city() != self.city {
            return Err(Invalid::new(
                "person_no",
                format!("is not insured by city {}", self.city),
            ));
        }
        let disease_code = parse_disease_code(&request.disease_code, "disease_code")?;
        let valid_from =
            parse_date(&request.valid_from).map_err(|invalid| invalid.at("valid_from"))?;
        let valid_until = match request.valid_until.as_str() {
            "" => None,
            text => Some(parse_date(text).map_err(|invalid| invalid.at("valid_until"))?),
        };
        if valid_until.is_some_and(|until| until < valid_from) {
            return Err(Invalid::new("valid_until", "must not be before valid_from"));
        }
        if request.institution_codes.len() > INSTITUTIONS_PER_CERTIFICATION_MAX {
            return Err(Invalid::new(
                "institution_codes",
                format!("at most {INSTITUTIONS_PER_CERTIFICATION_MAX} institutions"),
            ));
        }
        let mut institution_codes = Vec::new();
        for (index, code) in request.institution_codes.iter().enumerate() {
            let code = InstitutionCode::parse(code)
                .map_err(|invalid| invalid.at(format!("institution_codes[{index}]")))?;
            if !self
                .network
                .pool(code.city())
                .is_some_and(|city| city.enabled)
            {
                return Err(Invalid::new(
                    format!("institution_codes[{index}]"),
                    "must be an institution of an enabled city of the settlement network",
                ));
            }
            if institution_codes.contains(&code.to_string()) {
                return Err(Invalid::new(
                    format!("institution_codes[{index}]"),
                    "is listed twice",
                ));
            }
            institution_codes.push(code.to_string());
        }
        Ok(NewCertification {
            person_no,
            disease_code,
            valid_from,
            valid_until,
            institution_codes,
        })
    }

    /// Locks the person's certifications: their `benefit_years` row of this year, which every
    /// Reserve of the person takes too.
    async fn lock_person(conn: &mut AnyConnection, person_no: &str) -> Result<(), BenefitError> {
        use chrono::Datelike;
        super::repo::lock_year(conn, person_no, i64::from(yitong_core::today().year())).await
    }

    async fn certify(
        &self,
        caller: &Caller,
        message_id: &MessageId,
        new: NewCertification,
        digest: &str,
    ) -> Result<pb::Certification, BenefitError> {
        let scope_key = caller.to_string();
        let scope = Scope::Institution(&scope_key);
        let mut tx = self.store.begin_write().await?;
        Self::lock_person(&mut tx, new.person_no.as_str()).await?;
        match replies::claim_in(&mut tx, scope, message_id.as_str(), "Certify", digest)
            .await
            .map_err(super::filing::reply_error)?
        {
            Claim::Replay(reply) => return decode_certification(&reply),
            Claim::Fresh => {}
        }
        let name = disease_name(&mut tx, &new.disease_code).await?;
        if name.is_empty()
            && sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM disease_policies WHERE disease_code = $1",
            )
            .bind(&new.disease_code)
            .fetch_one(&mut *tx)
            .await?
                == 0
        {
            return Err(not_covered(&new.disease_code));
        }
        let from = new.valid_from.to_string();
        let until = new
            .valid_until
            .map(|date| date.to_string())
            .unwrap_or_default();
        let overlapping = CERTIFICATIONS
            .overlapping(
                &mut tx,
                new.person_no.as_str(),
                &new.disease_code,
                &from,
                &until,
            )
            .await?;
        if let Some(existing) = overlapping {
            return Err(BenefitError::refused(
                "CERTIFICATION_OVERLAPS",
                format!(
                    "certification {existing} of the person for disease {} overlaps these dates",
                    new.disease_code
                ),
            ));
        }
        let serial = CERTIFICATIONS.next_serial(&mut tx).await?;
        let row = CertificationRow {
            certification_id: format!("C{}{serial:08}", self.city),
            person_no: new.person_no.to_string(),
            disease_code: new.disease_code,
            valid_from: from,
            valid_until: until,
            institution_codes: new.institution_codes,
            cancelled: false,
            message_id: message_id.to_string(),
            cancel_message_id: String::new(),
            certified_at_ms: now_ms(),
            cancelled_at_ms: None,
        };
        sqlx::query(concat!(
            "INSERT INTO certifications (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, 'certified', $7, '', $8, NULL)"
        ))
        .bind(&row.certification_id)
        .bind(&row.person_no)
        .bind(&row.disease_code)
        .bind(&row.valid_from)
        .bind(&row.valid_until)
        .bind(row.institution_codes.join(","))
        .bind(&row.message_id)
        .bind(row.certified_at_ms)
        .execute(&mut *tx)
        .await?;
        let wire = certification_wire(&row, &name);
        replies::record_in(&mut tx, scope, message_id.as_str(), &wire.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(wire)
    }

    async fn cancel_certification(
        &self,
        caller: &Caller,
        message_id: &MessageId,
        certification_id: &str,
        digest: &str,
    ) -> Result<pb::Certification, BenefitError> {
        let scope_key = caller.to_string();
        let scope = Scope::Institution(&scope_key);
        let mut conn = self.store.pool().acquire().await?;
        let found = certification(&mut conn, certification_id).await?;
        drop(conn);
        let found = found
            .ok_or_else(|| BenefitError::NotFound(format!("certification {certification_id}")))?;
        let mut tx = self.store.begin_write().await?;
        Self::lock_person(&mut tx, &found.person_no).await?;
        match replies::claim_in(
            &mut tx,
            scope,
            message_id.as_str(),
            "CancelCertification",
            digest,
        )
        .await
        .map_err(super::filing::reply_error)?
        {
            Claim::Replay(reply) => return decode_certification(&reply),
            Claim::Fresh => {}
        }
        let mut row = certification(&mut tx, certification_id)
            .await?
            .ok_or_else(|| {
                BenefitError::Corrupt(format!("certification {certification_id} went away"))
            })?;
        if row.cancelled {
            return Err(BenefitError::refused(
                "CERTIFICATION_CANCELLED",
                format!("certification {certification_id} is already cancelled"),
            ));
        }
        let now = now_ms();
        CERTIFICATIONS
            .cancel(&mut tx, certification_id, message_id.as_str(), now)
            .await?;
        row.cancelled = true;
        row.cancel_message_id = message_id.to_string();
        row.cancelled_at_ms = Some(now);
        let name = disease_name(&mut tx, &row.disease_code).await?;
        let wire = certification_wire(&row, &name);
        replies::record_in(&mut tx, scope, message_id.as_str(), &wire.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(wire)
    }

    /// A person's certifications, newest first, with their diseases' names.
    pub(super) async fn certifications_wire(
        &self,
        person_no: &str,
    ) -> Result<Vec<pb::Certification>, BenefitError> {
        let mut conn = self.store.pool().acquire().await?;
        let rows = certifications_of(&mut conn, person_no).await?;
        let mut wire = Vec::with_capacity(rows.len());
        for row in &rows {
            let name = disease_name(&mut conn, &row.disease_code).await?;
            wire.push(certification_wire(row, &name));
        }
        Ok(wire)
    }
}

fn decode_certification(reply: &[u8]) -> Result<pb::Certification, BenefitError> {
    pb::Certification::decode(reply)
        .map_err(|_| BenefitError::Corrupt("a certification reply".into()))
}

fn digest<M: Message>(request: &M) -> String {
    replies::digest(&request.encode_to_vec())
}

#[tonic::async_trait]
impl pb::certification_service_server::CertificationService for BenefitNode {
    async fn certify(
        &self,
        request: Request<pb::CertifyRequest>,
    ) -> Result<Response<pb::CertifyResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require_bureau(Owner::Pool(self.city))?;
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let new = self.new_certification(&request).map_err(invalid_argument)?;
        let certification =
            BenefitNode::certify(self, &caller, &message_id, new, &digest(&request)).await?;
        Ok(Response::new(pb::CertifyResponse {
            certification: Some(certification),
        }))
    }

    async fn cancel_certification(
        &self,
        request: Request<pb::CancelCertificationRequest>,
    ) -> Result<Response<pb::CancelCertificationResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require_bureau(Owner::Pool(self.city))?;
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let certification_id = super::parse_id(&request.certification_id, "certification_id")
            .map_err(invalid_argument)?;
        let certification = BenefitNode::cancel_certification(
            self,
            &caller,
            &message_id,
            &certification_id,
            &digest(&request),
        )
        .await?;
        Ok(Response::new(pb::CancelCertificationResponse {
            certification: Some(certification),
        }))
    }

    async fn list_certifications(
        &self,
        request: Request<pb::ListCertificationsRequest>,
    ) -> Result<Response<pb::ListCertificationsResponse>, Status> {
        let request = request.into_inner();
        let person_no = person_no(&request.person_no).map_err(invalid_argument)?;
        if person_no.insured_city() != self.city {
            return Err(invalid_argument(Invalid::new(
                "person_no",
                format!("is not insured by city {}", self.city),
            )));
        }
        let certifications = self.certifications_wire(person_no.as_str()).await?;
        Ok(Response::new(pb::ListCertificationsResponse {
            certifications,
        }))
    }
}
