//! The insured city's cross-city filings (异地就医备案) and its filing policy toward each
//! treatment city: the bureau's FilingService, and the standing Quote, Reserve and GetTotals
//! price a claim under (`crate::split::filing` decides what it makes of the ratio).
//!
//! Filings live in the insured city's settlement store, beside the running totals they change.
//! A person's filings are changed under the person's row in `filing_persons`, so two racing
//! FileFilings cannot both pass the overlap check. A Reserve reads the filing in force once, in
//! its transaction; a filing filed or cancelled at the same moment applies to the settlements
//! that read it after (the torture harness races them, TORTURE.md).

use prost::Message;
use tonic::{Request, Response, Status};
use yitong_core::{Date, Invalid, MessageId, Owner, PersonNo, PoolCode, parse_date};
use yitong_proto::settlement::v1 as pb;
use yitong_rpc::{Caller, invalid_argument};
use yitong_store::now_ms;
use yitong_store::replies::{self, Claim, ReplyError, Scope};
use yitong_store::sqlx::{self, AnyConnection, Row};

use super::dated::Dated;
use super::{BenefitError, BenefitNode};
use crate::split::filing::{FilingKind, FilingPolicy, Standing, Unfiled};

/// A person's filings are few; a query answers at most this many, newest first.
pub const FILINGS_PER_QUERY_MAX: i64 = 100;

/// One stored filing.
#[derive(Debug, Clone)]
pub struct FilingRow {
    pub filing_id: String,
    pub person_no: String,
    pub kind: FilingKind,
    pub treatment_city: String,
    pub valid_from: String,
    /// Empty for open-ended.
    pub valid_until: String,
    pub cancelled: bool,
    pub message_id: String,
    pub cancel_message_id: String,
    pub filed_at_ms: i64,
    pub cancelled_at_ms: Option<i64>,
}

/// The columns of `filings`, in the order every query here names them.
macro_rules! columns {
    () => {
        "filing_id, person_no, kind, treatment_city, valid_from, valid_until, status, \
         message_id, cancel_message_id, filed_at_ms, cancelled_at_ms"
    };
}

/// Filings as dated standings toward a treatment city.
const FILINGS: Dated = Dated {
    table: "filings",
    id_column: "filing_id",
    subject_column: "treatment_city",
    live: "filed",
    columns: columns!(),
    serials: "filing_serials",
};

fn row_of(row: &sqlx::any::AnyRow) -> Result<FilingRow, BenefitError> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    Ok(FilingRow {
        filing_id: row.try_get("filing_id")?,
        person_no: row.try_get("person_no")?,
        kind: FilingKind::of_word(&kind)
            .ok_or_else(|| BenefitError::Corrupt(format!("filing kind {kind:?}")))?,
        treatment_city: row.try_get("treatment_city")?,
        valid_from: row.try_get("valid_from")?,
        valid_until: row.try_get("valid_until")?,
        cancelled: status == "cancelled",
        message_id: row.try_get("message_id")?,
        cancel_message_id: row.try_get("cancel_message_id")?,
        filed_at_ms: row.try_get("filed_at_ms")?,
        cancelled_at_ms: row.try_get("cancelled_at_ms")?,
    })
}

/// The person's filings, newest first.
async fn filings_of(
    conn: &mut AnyConnection,
    person_no: &str,
) -> Result<Vec<FilingRow>, BenefitError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM filings WHERE person_no = $1 ORDER BY filed_at_ms DESC, filing_id DESC LIMIT $2"
    ))
    .bind(person_no)
    .bind(FILINGS_PER_QUERY_MAX)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(row_of).collect()
}

async fn filing(
    conn: &mut AnyConnection,
    filing_id: &str,
) -> Result<Option<FilingRow>, BenefitError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM filings WHERE filing_id = $1"
    ))
    .bind(filing_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(row_of).transpose()
}

/// The filed filing of the person for the treatment city in force on `date`; of several (a
/// long-term and a temporary may both be), the long-term one, which is never cut.
pub(super) async fn in_force(
    conn: &mut AnyConnection,
    person_no: &str,
    treatment_city: PoolCode,
    date: Date,
) -> Result<Option<FilingRow>, BenefitError> {
    let rows = FILINGS
        .in_force_on(conn, person_no, &treatment_city.to_string(), date)
        .await?;
    let mut found: Vec<FilingRow> = rows.iter().map(row_of).collect::<Result<_, _>>()?;
    found.sort_by_key(|row| {
        (
            !row.kind.is_long_term(),
            row.kind == FilingKind::OtherTemporary,
        )
    });
    Ok(found.into_iter().next())
}

/// The insured city's filing policy toward `treatment_city`; waived when none is set, and
/// always for the city itself.
pub(super) async fn policy_toward(
    conn: &mut AnyConnection,
    own: PoolCode,
    treatment_city: PoolCode,
) -> Result<FilingPolicy, BenefitError> {
    if treatment_city == own {
        return Ok(FilingPolicy::WAIVED);
    }
    let row = sqlx::query(
        "SELECT filing_required, unfiled, unfiled_cut_points, temporary_cut_points \
         FROM filing_policies WHERE treatment_city = $1",
    )
    .bind(treatment_city.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(FilingPolicy::WAIVED);
    };
    let corrupt = || BenefitError::Corrupt(format!("filing policy toward {treatment_city}"));
    let required: i64 = row.try_get("filing_required")?;
    let unfiled: String = row.try_get("unfiled")?;
    let unfiled_points: i64 = row.try_get("unfiled_cut_points")?;
    let temporary_points: i64 = row.try_get("temporary_cut_points")?;
    let points = |value: i64| u32::try_from(value).map_err(|_| corrupt());
    let unfiled = match unfiled.as_str() {
        "refused" => Unfiled::Refused,
        "ratio_cut" => Unfiled::RatioCut(points(unfiled_points)?),
        _ => return Err(corrupt()),
    };
    FilingPolicy::new(required == 1, unfiled, points(temporary_points)?).map_err(|_| corrupt())
}

/// Writes the policy toward a treatment city, replacing any.
pub async fn set_policy(
    conn: &mut AnyConnection,
    treatment_city: PoolCode,
    policy: &FilingPolicy,
) -> Result<(), sqlx::Error> {
    let (unfiled, unfiled_points) = match policy.unfiled() {
        Unfiled::Refused => ("refused", 0),
        Unfiled::RatioCut(points) => ("ratio_cut", points),
    };
    sqlx::query(
        "INSERT INTO filing_policies (treatment_city, filing_required, unfiled, \
         unfiled_cut_points, temporary_cut_points, updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (treatment_city) DO UPDATE SET filing_required = excluded.filing_required, \
         unfiled = excluded.unfiled, unfiled_cut_points = excluded.unfiled_cut_points, \
         temporary_cut_points = excluded.temporary_cut_points, updated_at_ms = excluded.updated_at_ms",
    )
    .bind(treatment_city.to_string())
    .bind(i64::from(policy.filing_required()))
    .bind(unfiled)
    .bind(i64::from(unfiled_points))
    .bind(i64::from(policy.temporary_cut_points()))
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Seeds an insured city's filing policies into its empty settlement store (`seeds/`): the
/// rows written.
pub async fn seed_filing_policies(
    store: &yitong_store::Store,
    policies: &[(PoolCode, FilingPolicy)],
) -> Result<usize, sqlx::Error> {
    let mut tx = store.begin_write().await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM filing_policies")
        .fetch_one(&mut *tx)
        .await?;
    if existing > 0 {
        tx.rollback().await?;
        return Ok(0);
    }
    for (treatment_city, policy) in policies {
        set_policy(&mut tx, *treatment_city, policy).await?;
    }
    tx.commit().await?;
    Ok(policies.len())
}

/// The person's standing for a treatment city on a date: the policy, the filing in force, and
/// what the two give.
pub(super) struct StandingFound {
    pub policy: FilingPolicy,
    pub filing: Option<FilingRow>,
    pub standing: Standing,
}

pub(super) async fn standing(
    conn: &mut AnyConnection,
    own: PoolCode,
    person_no: &str,
    treatment_city: PoolCode,
    date: Date,
) -> Result<StandingFound, BenefitError> {
    let policy = policy_toward(conn, own, treatment_city).await?;
    let filing = match policy.filing_required() {
        true => in_force(conn, person_no, treatment_city, date).await?,
        false => None,
    };
    let standing = policy.standing(filing.as_ref().map(|row| row.kind));
    Ok(StandingFound {
        policy,
        filing,
        standing,
    })
}

/// The refusal of a visit with no filing where the policy refuses one.
pub(super) fn not_filed(treatment_city: PoolCode, date: Date) -> BenefitError {
    BenefitError::refused(
        "NOT_FILED",
        format!(
            "the insured city requires a cross-city filing for {treatment_city} and none is in force on {date}"
        ),
    )
}

pub(super) fn standing_wire(standing: &StandingFound) -> pb::FilingStanding {
    pb::FilingStanding {
        filing: standing.filing.as_ref().map(filing_wire),
        filing_required: standing.policy.filing_required(),
        refused: standing.standing == Standing::Refused,
        ratio_cut_points: standing.standing.cut_points(),
    }
}

fn kind_wire(kind: FilingKind) -> pb::FilingKind {
    match kind {
        FilingKind::ResettledRetiree => pb::FilingKind::ResettledRetiree,
        FilingKind::LongTermResident => pb::FilingKind::LongTermResident,
        FilingKind::PostedStaff => pb::FilingKind::PostedStaff,
        FilingKind::Referral => pb::FilingKind::Referral,
        FilingKind::Emergency => pb::FilingKind::Emergency,
        FilingKind::OtherTemporary => pb::FilingKind::OtherTemporary,
    }
}

fn kind_of_wire(code: i32) -> Result<FilingKind, Invalid> {
    Ok(match pb::FilingKind::try_from(code) {
        Ok(pb::FilingKind::ResettledRetiree) => FilingKind::ResettledRetiree,
        Ok(pb::FilingKind::LongTermResident) => FilingKind::LongTermResident,
        Ok(pb::FilingKind::PostedStaff) => FilingKind::PostedStaff,
        Ok(pb::FilingKind::Referral) => FilingKind::Referral,
        Ok(pb::FilingKind::Emergency) => FilingKind::Emergency,
        Ok(pb::FilingKind::OtherTemporary) => FilingKind::OtherTemporary,
        _ => {
            return Err(Invalid::new(
                "kind",
                "must be a FILING_KIND other than UNSPECIFIED",
            ));
        }
    })
}

pub(super) fn filing_wire(row: &FilingRow) -> pb::Filing {
    pb::Filing {
        filing_id: row.filing_id.clone(),
        person_no: row.person_no.clone(),
        kind: kind_wire(row.kind) as i32,
        treatment_city: row.treatment_city.clone(),
        valid_from: row.valid_from.clone(),
        valid_until: row.valid_until.clone(),
        status: match row.cancelled {
            true => pb::FilingStatus::Cancelled,
            false => pb::FilingStatus::Filed,
        } as i32,
        message_id: row.message_id.clone(),
        cancel_message_id: row.cancel_message_id.clone(),
        filed_at: Some(yitong_rpc::timestamp_of_ms(row.filed_at_ms)),
        cancelled_at: row.cancelled_at_ms.map(yitong_rpc::timestamp_of_ms),
    }
}

fn policy_wire(treatment_city: PoolCode, policy: &FilingPolicy) -> pb::FilingPolicy {
    let (unfiled, unfiled_cut_points) = match policy.unfiled() {
        Unfiled::Refused => (pb::UnfiledVisit::Refused, 0),
        Unfiled::RatioCut(points) => (pb::UnfiledVisit::RatioCut, points),
    };
    pb::FilingPolicy {
        treatment_city: treatment_city.to_string(),
        filing_required: policy.filing_required(),
        unfiled: unfiled as i32,
        unfiled_cut_points,
        temporary_cut_points: policy.temporary_cut_points(),
    }
}

/// A FileFiling, checked.
struct NewFiling {
    person_no: PersonNo,
    kind: FilingKind,
    treatment_city: PoolCode,
    valid_from: Date,
    valid_until: Option<Date>,
}

fn message_id(text: &str) -> Result<MessageId, Invalid> {
    MessageId::parse(text).map_err(|invalid| invalid.at("message_id"))
}

fn person_no(text: &str) -> Result<PersonNo, Invalid> {
    PersonNo::parse(text).map_err(|invalid| invalid.at("person_no"))
}

fn city(text: &str, field: &str) -> Result<PoolCode, Invalid> {
    PoolCode::parse(text).map_err(|invalid| invalid.at(field))
}

fn points(value: u32, field: &str) -> Result<u32, Invalid> {
    if value > crate::split::filing::CUT_POINTS_MAX {
        return Err(Invalid::new(field, "must be 0 to 100 percentage points"));
    }
    Ok(value)
}

impl BenefitNode {
    fn new_filing(&self, request: &pb::FileFilingRequest) -> Result<NewFiling, Invalid> {
        let person_no = person_no(&request.person_no)?;
        if person_no.insured_city() != self.city {
            return Err(Invalid::new(
                "person_no",
                format!("is not insured by city {}", self.city),
            ));
        }
        let kind = kind_of_wire(request.kind)?;
        let treatment_city = city(&request.treatment_city, "treatment_city")?;
        if treatment_city == self.city
            || !self
                .network
                .pool(treatment_city)
                .is_some_and(|city| city.enabled)
        {
            return Err(Invalid::new(
                "treatment_city",
                "must be another enabled city of the settlement network",
            ));
        }
        let valid_from =
            parse_date(&request.valid_from).map_err(|invalid| invalid.at("valid_from"))?;
        let valid_until = match request.valid_until.as_str() {
            "" if kind.is_long_term() => None,
            "" => {
                return Err(Invalid::new(
                    "valid_until",
                    "is required for a temporary filing",
                ));
            }
            text => Some(parse_date(text).map_err(|invalid| invalid.at("valid_until"))?),
        };
        if valid_until.is_some_and(|until| until < valid_from) {
            return Err(Invalid::new("valid_until", "must not be before valid_from"));
        }
        Ok(NewFiling {
            person_no,
            kind,
            treatment_city,
            valid_from,
            valid_until,
        })
    }

    async fn file(
        &self,
        caller: &Caller,
        message_id: &MessageId,
        filing: NewFiling,
        digest: &str,
    ) -> Result<pb::Filing, BenefitError> {
        let scope_key = caller.to_string();
        let scope = Scope::Institution(&scope_key);
        let mut tx = self.store.begin_write().await?;
        sqlx::query(
            "INSERT INTO filing_persons (person_no, filings) VALUES ($1, 0) \
             ON CONFLICT (person_no) DO UPDATE SET filings = filing_persons.filings",
        )
        .bind(filing.person_no.as_str())
        .execute(&mut *tx)
        .await?;
        match replies::claim_in(&mut tx, scope, message_id.as_str(), "FileFiling", digest)
            .await
            .map_err(reply_error)?
        {
            Claim::Replay(reply) => return decode_filing(&reply),
            Claim::Fresh => {}
        }
        let from = filing.valid_from.to_string();
        let until = filing
            .valid_until
            .map(|date| date.to_string())
            .unwrap_or_default();
        let overlapping = FILINGS
            .overlapping(
                &mut tx,
                filing.person_no.as_str(),
                &filing.treatment_city.to_string(),
                &from,
                &until,
            )
            .await?;
        if let Some(existing) = overlapping {
            return Err(BenefitError::refused(
                "FILING_OVERLAPS",
                format!(
                    "filing {existing} of the person for {} overlaps these dates",
                    filing.treatment_city
                ),
            ));
        }
        let serial = FILINGS.next_serial(&mut tx).await?;
        let row = FilingRow {
            filing_id: format!("F{}{serial:08}", self.city),
            person_no: filing.person_no.to_string(),
            kind: filing.kind,
            treatment_city: filing.treatment_city.to_string(),
            valid_from: from,
            valid_until: until,
            cancelled: false,
            message_id: message_id.to_string(),
            cancel_message_id: String::new(),
            filed_at_ms: now_ms(),
            cancelled_at_ms: None,
        };
        sqlx::query(concat!(
            "INSERT INTO filings (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, 'filed', $7, '', $8, NULL)"
        ))
        .bind(&row.filing_id)
        .bind(&row.person_no)
        .bind(row.kind.as_str())
        .bind(&row.treatment_city)
        .bind(&row.valid_from)
        .bind(&row.valid_until)
        .bind(&row.message_id)
        .bind(row.filed_at_ms)
        .execute(&mut *tx)
        .await?;
        let wire = filing_wire(&row);
        replies::record_in(&mut tx, scope, message_id.as_str(), &wire.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(wire)
    }

    async fn cancel(
        &self,
        caller: &Caller,
        message_id: &MessageId,
        filing_id: &str,
        digest: &str,
    ) -> Result<pb::Filing, BenefitError> {
        let scope_key = caller.to_string();
        let scope = Scope::Institution(&scope_key);
        let mut conn = self.store.pool().acquire().await?;
        let found = filing(&mut conn, filing_id).await?;
        drop(conn);
        let found = found.ok_or_else(|| BenefitError::NotFound(format!("filing {filing_id}")))?;
        let mut tx = self.store.begin_write().await?;
        sqlx::query("UPDATE filing_persons SET filings = filings + 0 WHERE person_no = $1")
            .bind(&found.person_no)
            .execute(&mut *tx)
            .await?;
        match replies::claim_in(&mut tx, scope, message_id.as_str(), "CancelFiling", digest)
            .await
            .map_err(reply_error)?
        {
            Claim::Replay(reply) => return decode_filing(&reply),
            Claim::Fresh => {}
        }
        let mut row = filing(&mut tx, filing_id)
            .await?
            .ok_or_else(|| BenefitError::Corrupt(format!("filing {filing_id} went away")))?;
        if row.cancelled {
            return Err(BenefitError::refused(
                "FILING_CANCELLED",
                format!("filing {filing_id} is already cancelled"),
            ));
        }
        let now = now_ms();
        FILINGS
            .cancel(&mut tx, filing_id, message_id.as_str(), now)
            .await?;
        row.cancelled = true;
        row.cancel_message_id = message_id.to_string();
        row.cancelled_at_ms = Some(now);
        let wire = filing_wire(&row);
        replies::record_in(&mut tx, scope, message_id.as_str(), &wire.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(wire)
    }
}

pub(super) fn reply_error(error: ReplyError) -> BenefitError {
    match error {
        ReplyError::Conflict(id) => BenefitError::Conflict(format!("message id {id}")),
        ReplyError::Store(store) => BenefitError::Store(store),
        ReplyError::Corrupt(id) => BenefitError::Corrupt(format!("reply to {id}")),
    }
}

fn decode_filing(reply: &[u8]) -> Result<pb::Filing, BenefitError> {
    pb::Filing::decode(reply).map_err(|_| BenefitError::Corrupt("a filing reply".into()))
}

fn digest<M: Message>(request: &M) -> String {
    replies::digest(&request.encode_to_vec())
}

#[tonic::async_trait]
impl pb::filing_service_server::FilingService for BenefitNode {
    async fn file_filing(
        &self,
        request: Request<pb::FileFilingRequest>,
    ) -> Result<Response<pb::FileFilingResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require_bureau(Owner::Pool(self.city))?;
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let filing = self.new_filing(&request).map_err(invalid_argument)?;
        let filing = self
            .file(&caller, &message_id, filing, &digest(&request))
            .await?;
        Ok(Response::new(pb::FileFilingResponse {
            filing: Some(filing),
        }))
    }

    async fn cancel_filing(
        &self,
        request: Request<pb::CancelFilingRequest>,
    ) -> Result<Response<pb::CancelFilingResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require_bureau(Owner::Pool(self.city))?;
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let filing_id =
            super::parse_id(&request.filing_id, "filing_id").map_err(invalid_argument)?;
        let filing = self
            .cancel(&caller, &message_id, &filing_id, &digest(&request))
            .await?;
        Ok(Response::new(pb::CancelFilingResponse {
            filing: Some(filing),
        }))
    }

    async fn list_filings(
        &self,
        request: Request<pb::ListFilingsRequest>,
    ) -> Result<Response<pb::ListFilingsResponse>, Status> {
        let request = request.into_inner();
        let person_no = person_no(&request.person_no).map_err(invalid_argument)?;
        if person_no.insured_city() != self.city {
            return Err(invalid_argument(Invalid::new(
                "person_no",
                format!("is not insured by city {}", self.city),
            )));
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(BenefitError::from)?;
        let filings = filings_of(&mut conn, person_no.as_str()).await?;
        Ok(Response::new(pb::ListFilingsResponse {
            filings: filings.iter().map(filing_wire).collect(),
        }))
    }

    async fn set_filing_policy(
        &self,
        request: Request<pb::SetFilingPolicyRequest>,
    ) -> Result<Response<pb::SetFilingPolicyResponse>, Status> {
        let caller = Caller::of(&request);
        caller.require_bureau(Owner::Pool(self.city))?;
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let wire = request
            .policy
            .clone()
            .ok_or_else(|| invalid_argument(Invalid::new("policy", "is required")))?;
        let treatment_city =
            city(&wire.treatment_city, "policy.treatment_city").map_err(invalid_argument)?;
        if treatment_city == self.city || self.network.pool(treatment_city).is_none() {
            return Err(invalid_argument(Invalid::new(
                "policy.treatment_city",
                "must be another city of the settlement network",
            )));
        }
        let unfiled = match pb::UnfiledVisit::try_from(wire.unfiled) {
            Ok(pb::UnfiledVisit::Refused) if wire.unfiled_cut_points == 0 => Unfiled::Refused,
            Ok(pb::UnfiledVisit::Refused) => {
                return Err(invalid_argument(Invalid::new(
                    "policy.unfiled_cut_points",
                    "must be 0 when an unfiled visit is refused",
                )));
            }
            Ok(pb::UnfiledVisit::RatioCut) => Unfiled::RatioCut(
                points(wire.unfiled_cut_points, "policy.unfiled_cut_points")
                    .map_err(invalid_argument)?,
            ),
            _ => {
                return Err(invalid_argument(Invalid::new(
                    "policy.unfiled",
                    "must be UNFILED_VISIT_REFUSED or UNFILED_VISIT_RATIO_CUT",
                )));
            }
        };
        let temporary = points(wire.temporary_cut_points, "policy.temporary_cut_points")
            .map_err(invalid_argument)?;
        let policy = FilingPolicy::new(wire.filing_required, unfiled, temporary)
            .expect("cuts checked above");
        let scope_key = caller.to_string();
        let scope = Scope::Institution(&scope_key);
        let mut tx = self.store.begin_write().await.map_err(BenefitError::from)?;
        match replies::claim_in(
            &mut tx,
            scope,
            message_id.as_str(),
            "SetFilingPolicy",
            &digest(&request),
        )
        .await
        .map_err(reply_error)?
        {
            Claim::Replay(reply) => {
                let policy = pb::FilingPolicy::decode(reply.as_slice())
                    .map_err(|_| BenefitError::Corrupt("a filing policy reply".into()))?;
                return Ok(Response::new(pb::SetFilingPolicyResponse {
                    policy: Some(policy),
                }));
            }
            Claim::Fresh => {}
        }
        set_policy(&mut tx, treatment_city, &policy)
            .await
            .map_err(BenefitError::from)?;
        let wire = policy_wire(treatment_city, &policy);
        replies::record_in(&mut tx, scope, message_id.as_str(), &wire.encode_to_vec())
            .await
            .map_err(BenefitError::from)?;
        tx.commit().await.map_err(BenefitError::from)?;
        Ok(Response::new(pb::SetFilingPolicyResponse {
            policy: Some(wire),
        }))
    }

    async fn get_filing_policy(
        &self,
        request: Request<pb::GetFilingPolicyRequest>,
    ) -> Result<Response<pb::GetFilingPolicyResponse>, Status> {
        let request = request.into_inner();
        let treatment_city =
            city(&request.treatment_city, "treatment_city").map_err(invalid_argument)?;
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(BenefitError::from)?;
        let policy = policy_toward(&mut conn, self.city, treatment_city).await?;
        Ok(Response::new(pb::GetFilingPolicyResponse {
            policy: Some(policy_wire(treatment_city, &policy)),
        }))
    }
}
