//! The insured city's benefit service: prices claims under its policy and the person's running
//! totals, and holds, posts and voids the change each settlement makes to them.
//!
//! Calls to this city's identity (the person's type, status and live account balance) and catalog
//! (the policy) are made before a transaction opens; inside it, the person's yearly totals are
//! locked, so settlements racing in several cities queue on that row and can never take the fund
//! past the cap or apply the deductible twice.

mod claim;
mod dated;
mod disease;
mod error;
mod filing;
mod repo;
mod writes;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::Datelike;
use prost::Message;
use tonic::{Request, Response, Status};
use yitong_core::{Amount, Date, Invalid, MessageId, Network, PoolCode};
use yitong_proto::catalog::v1::GetPolicyRequest;
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_proto::identity::v1::identity_service_client::IdentityServiceClient;
use yitong_proto::identity::v1::{
    Credential, GetInsuredPersonRequest, InsuredPerson, MoveAccountRequest, credential::Kind,
};
use yitong_proto::settlement::v1 as pb;
use yitong_rpc::{Caller, Denied, PeerAccess, PeerChannel, invalid_argument, peer_channel};
use yitong_store::{Store, audit, now_ms};

pub use crate::group::GROUP_REQUESTS_MAX;
pub use claim::{Asked, BenefitClaim, parse_id};
pub use disease::{DiseasePolicy, parse_disease_code, seed_disease_policies};
pub use error::BenefitError;
pub use filing::{seed_filing_policies, set_policy as set_filing_policy};
use repo::{ReservationKind, ReservationRow, ReservationStatus};
use writes::{Hold, Prepared, Work, Writes};
pub use writes::{Staged, Write};

use crate::split::{self, InsuranceType, Policy, RunningTotals, Split};

/// Longest and default hold of a reservation, in seconds.
const TIMEOUT_SECONDS_MAX: u32 = 600;
const TIMEOUT_SECONDS_DEFAULT: u32 = 60;
/// Longest void reason, in characters.
const REASON_CHARS_MAX: usize = 200;

/// The benefit service of one city, as the insured city of the persons it insures.
#[derive(Debug, Clone)]
pub struct BenefitNode {
    city: PoolCode,
    store: Store,
    network: Arc<Network>,
    identity: IdentityServiceClient<PeerChannel>,
    catalog: CatalogServiceClient<PeerChannel>,
    /// The queue of the group commit that books Reserves and Posts ([`writes`]), started by
    /// the first of them; shared by every clone of the node.
    writes: Writes,
}

/// The person and the policy a claim is priced under.
#[derive(Debug)]
pub(crate) struct Context {
    policy: Policy,
    policy_id: String,
    account_balance: Amount,
}

use yitong_rpc::timestamp_of_ms as timestamp;

fn fen(amount: Amount) -> i64 {
    amount.fen()
}

impl BenefitNode {
    /// The benefit service shares its city's settlement store, and reads persons and policies
    /// from its own city's identity and catalog services.
    pub fn new(
        city: PoolCode,
        store: Store,
        network: Arc<Network>,
        access: &PeerAccess,
    ) -> Result<Self, tonic::transport::Error> {
        let own = network
            .pool(city)
            .expect("a node runs for a city of its network");
        let identity = IdentityServiceClient::new(peer_channel(&own.identity, Some(city), access)?);
        let catalog = CatalogServiceClient::new(peer_channel(&own.catalog, Some(city), access)?);
        let node = BenefitNode {
            city,
            store,
            network,
            identity,
            catalog,
            writes: Writes::default(),
        };
        node.start_group_metrics();
        Ok(node)
    }

    pub fn city(&self) -> PoolCode {
        self.city
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the person (refused unless entitled on the service date) and the policy for them.
    async fn context(&self, claim: &BenefitClaim) -> Result<Context, BenefitError> {
        self.context_of(&Asked::of_claim(claim), "claim.").await
    }

    /// Reads the person and the policy for what `asked` names; field paths in refusals start
    /// with `prefix` ("claim." in a claim, nothing in a GetTotals).
    async fn context_of(&self, asked: &Asked, prefix: &str) -> Result<Context, BenefitError> {
        if asked.person_no.insured_city() != self.city {
            return Err(Invalid::new(
                format!("{prefix}person_no"),
                format!("is not insured by city {}", self.city),
            )
            .into());
        }
        if !self
            .network
            .pool(asked.treatment_city)
            .is_some_and(|city| city.enabled)
        {
            return Err(Invalid::new(
                format!("{prefix}treatment_city"),
                "is not a city of the settlement network",
            )
            .into());
        }
        let person = self
            .insured_person(asked.person_no.as_str(), asked.service_date)
            .await?;
        if person.insurance_type != claim::insurance_type_code(asked.insurance_type) {
            return Err(Invalid::new(
                format!("{prefix}insurance_type"),
                "is not the person's insurance type",
            )
            .into());
        }
        let account_balance = Amount::parse(&person.account_balance)
            .map_err(|_| BenefitError::Peer("identity sent a malformed balance".into()))?;
        let request = GetPolicyRequest {
            insured_city: String::new(),
            insurance_type: person.insurance_type,
            person_type: person.person_type,
            hospital_level: asked.hospital_level as i32,
            date: asked.service_date.to_string(),
        };
        let policy = self
            .catalog
            .clone()
            .get_policy(request)
            .await
            .map_err(|status| BenefitError::upstream("catalog", status))?;
        let policy = policy
            .into_inner()
            .policy
            .ok_or_else(|| BenefitError::Peer("catalog answered without a policy".into()))?;
        let corrupt = |what: &str| BenefitError::Peer(format!("catalog sent a malformed {what}"));
        let policy_value = Policy::new(
            Amount::parse(&policy.deductible).map_err(|_| corrupt("deductible"))?,
            claim::ratio(&policy.reimbursement_ratio, "policy").map_err(|_| corrupt("ratio"))?,
            Amount::parse(&policy.annual_cap).map_err(|_| corrupt("annual cap"))?,
        )?;
        Ok(Context {
            policy: policy_value,
            policy_id: policy.policy_id,
            account_balance,
        })
    }

    /// The person's personal-account balance as identity keeps it now. Read under the person's
    /// lock by Reserve, while every Post of the person moves the account under the same lock, so
    /// the balance and the held reservations are read at one instant and no two settlements
    /// can both take the same money.
    async fn live_balance(&self, person_no: &str, date: Date) -> Result<Amount, BenefitError> {
        let person = self.insured_person(person_no, date).await?;
        Amount::parse(&person.account_balance)
            .map_err(|_| BenefitError::Peer("identity sent a malformed balance".into()))
    }

    /// The person as this city's identity knows them on `date` (refused unless entitled).
    async fn insured_person(
        &self,
        person_no: &str,
        date: Date,
    ) -> Result<InsuredPerson, BenefitError> {
        let lookup = GetInsuredPersonRequest {
            credential: Some(Credential {
                kind: Some(Kind::PersonNo(person_no.to_owned())),
            }),
            service_date: date.to_string(),
            ..Default::default()
        };
        self.identity
            .clone()
            .get_insured_person(lookup)
            .await
            .map_err(|status| BenefitError::upstream("identity", status))?
            .into_inner()
            .person
            .ok_or_else(|| BenefitError::Peer("identity answered without a person".into()))
    }

    /// The running totals a new settlement starts from: posted plus held, and the account
    /// balance less what held settlements will take from it.
    fn before(used: repo::Used, balance: Amount) -> Result<RunningTotals, BenefitError> {
        let available = Amount::from_fen((balance.fen() - used.account_held_fen).max(0));
        Ok(RunningTotals::new(
            Amount::from_fen(used.deductible_fen),
            Amount::from_fen(used.fund_fen),
            available,
        )?)
    }

    fn split_wire(
        split: &Split,
        year: i64,
        policy_id: &str,
        filing: Option<pb::FilingStanding>,
        insurance_type: InsuranceType,
        disease_code: &str,
    ) -> pb::SettlementSplit {
        let fund_payments = split
            .itemised(insurance_type, disease_code)
            .into_iter()
            .map(|line| pb::FundPayment {
                fund_pay_type: line.fund_type.code().to_owned(),
                fund_pay_type_name: line.fund_type.name().to_owned(),
                disease_code: line.disease_code.unwrap_or_default(),
                in_scope_amount: line.in_scope_amount.to_string(),
                amount: line.amount.to_string(),
            })
            .collect();
        pb::SettlementSplit {
            total_amount: split.total_amount().to_string(),
            full_self_pay: split.full_self_pay().to_string(),
            over_cap_self_pay: split.over_cap_self_pay().to_string(),
            pre_self_pay: split.pre_self_pay().to_string(),
            in_scope_amount: split.in_scope_amount().to_string(),
            deductible_applied: split.deductible_applied().to_string(),
            pool_fund_pay: split.fund_pay().to_string(),
            pool_ratio: split.pool_ratio().value().to_string(),
            fund_pay: split.fund_pay().to_string(),
            person_share: split.person_share().to_string(),
            account_pay: split.account_pay().to_string(),
            cash_pay: split.cash_pay().to_string(),
            account_balance: split.account_balance().to_string(),
            deductible_left: split.deductible_left().to_string(),
            annual_cap_left: split.annual_cap_left().to_string(),
            benefit_year: u32::try_from(year).unwrap_or_default(),
            policy_id: policy_id.to_owned(),
            filing,
            disease_code: disease_code.to_owned(),
            fund_payments,
        }
    }

    /// The policy a claim prices under before any filing cut, and its id: the disease's for a
    /// medical type 14 claim (refused unless the person is certified), else the ordinary one.
    async fn base_policy(
        conn: &mut yitong_store::sqlx::AnyConnection,
        asked: &Asked,
        context: &Context,
    ) -> Result<(Policy, String), BenefitError> {
        match &asked.disease_code {
            None => Ok((context.policy, context.policy_id.clone())),
            Some(code) => {
                let disease = disease::priced_policy(conn, asked, code).await?;
                Ok((disease.policy, disease.policy_id()))
            }
        }
    }

    /// The filing standing of the person for the claim's treatment city on its service date,
    /// and the policy it prices under: the policy's ratio less the standing's cut. Refused
    /// (NOT_FILED) when the insured city's filing policy refuses the visit.
    async fn filed_policy(
        &self,
        conn: &mut yitong_store::sqlx::AnyConnection,
        asked: &Asked,
        policy: &Policy,
    ) -> Result<(filing::StandingFound, Policy), BenefitError> {
        let found = filing::standing(
            conn,
            self.city,
            asked.person_no.as_str(),
            asked.treatment_city,
            asked.service_date,
        )
        .await?;
        let policy = found
            .standing
            .policy(policy)
            .ok_or_else(|| filing::not_filed(asked.treatment_city, asked.service_date))?;
        Ok((found, policy))
    }

    async fn quote(&self, claim: BenefitClaim) -> Result<pb::SettlementSplit, BenefitError> {
        let context = self.context(&claim).await?;
        let year = i64::from(claim.service_date.year());
        let mut conn = self.store.pool().acquire().await?;
        let asked = Asked::of_claim(&claim);
        let (base, policy_id) = Self::base_policy(&mut conn, &asked, &context).await?;
        let (standing, policy) = self.filed_policy(&mut conn, &asked, &base).await?;
        let disease = claim.disease_code.as_deref().unwrap_or_default();
        let used = repo::used(&mut conn, claim.person_no.as_str(), year, disease, "").await?;
        let before = Self::before(used, context.account_balance)?;
        let split = Split::compute(
            &claim.amounts,
            &policy,
            &before,
            claim.insurance_type,
            claim.use_personal_account,
        );
        Ok(Self::split_wire(
            &split,
            year,
            &policy_id,
            Some(filing::standing_wire(&standing)),
            claim.insurance_type,
            disease,
        ))
    }

    /// The person's running totals for the year of the date, live reservations counted as used
    /// (as a Quote counts them), and what the policy at the level leaves. national: 5206.
    async fn totals(
        &self,
        asked: Asked,
    ) -> Result<
        (
            pb::RunningTotals,
            pb::FilingStanding,
            Option<pb::Certification>,
        ),
        BenefitError,
    > {
        let context = self.context_of(&asked, "").await?;
        let year = i64::from(asked.service_date.year());
        let mut conn = self.store.pool().acquire().await?;
        let standing = filing::standing(
            &mut conn,
            self.city,
            asked.person_no.as_str(),
            asked.treatment_city,
            asked.service_date,
        )
        .await?;
        let used = repo::used(&mut conn, asked.person_no.as_str(), year, "", "").await?;
        let totals = Self::before(used, context.account_balance)?;
        let mut diseases = Vec::new();
        for disease in disease::policies_for(&mut conn, asked.insurance_type).await? {
            let used = repo::used(
                &mut conn,
                asked.person_no.as_str(),
                year,
                &disease.disease_code,
                "",
            )
            .await?;
            let held = Self::before(used, Amount::ZERO)?;
            let certified = disease::in_force(&mut conn, &asked, &disease.disease_code)
                .await?
                .is_some();
            diseases.push(pb::DiseaseTotals {
                disease_code: disease.disease_code.clone(),
                deductible_used: held.deductible_used().to_string(),
                quota_used: held.fund_paid().to_string(),
                deductible: disease.policy.deductible().to_string(),
                ratio: disease.policy.reimbursement_ratio().value().to_string(),
                annual_quota: disease.policy.annual_cap().to_string(),
                quota_left: held.annual_cap_left(&disease.policy).to_string(),
                certified,
            });
        }
        let certification = match &asked.disease_code {
            None => None,
            Some(code) => match disease::in_force(&mut conn, &asked, code).await? {
                Some(row) => {
                    let name = disease::policy_for(&mut conn, code, asked.insurance_type)
                        .await?
                        .map(|policy| policy.disease_name)
                        .unwrap_or_default();
                    Some(disease::certification_wire(&row, &name))
                }
                None => None,
            },
        };
        let totals = pb::RunningTotals {
            person_no: asked.person_no.to_string(),
            insured_city: self.city.to_string(),
            benefit_year: u32::try_from(year).unwrap_or_default(),
            deductible_used: totals.deductible_used().to_string(),
            fund_paid: totals.fund_paid().to_string(),
            deductible: context.policy.deductible().to_string(),
            deductible_left: totals.deductible_left(&context.policy).to_string(),
            annual_cap: context.policy.annual_cap().to_string(),
            annual_cap_left: totals.annual_cap_left(&context.policy).to_string(),
            account_balance: totals.account_balance().to_string(),
            policy_id: context.policy_id,
            diseases,
        };
        Ok((totals, filing::standing_wire(&standing), certification))
    }

    /// Holds a new settlement's benefit: reads the person and the policy, then books the hold
    /// in a group.
    async fn reserve_settlement(
        &self,
        message_id: MessageId,
        settlement_id: String,
        claim: BenefitClaim,
        timeout_seconds: u32,
        digest: String,
    ) -> Result<Write, BenefitError> {
        let context = self.context(&claim).await?;
        Ok(Write(Prepared::Book(Work::Reserve(Hold {
            message_id,
            settlement_id,
            claim,
            context,
            timeout_seconds,
            digest,
        }))))
    }

    /// The hold of a new settlement, under the person's lock, in a group's transaction.
    async fn reserve_settlement_locked(
        &self,
        tx: &mut yitong_store::sqlx::AnyConnection,
        hold: &Hold,
    ) -> Result<ReservationRow, BenefitError> {
        let Hold {
            message_id,
            settlement_id,
            claim,
            context,
            timeout_seconds,
            digest,
        } = hold;
        let (settlement_id, timeout_seconds) = (settlement_id.as_str(), *timeout_seconds);
        let year = i64::from(claim.service_date.year());
        repo::lock_year(tx, claim.person_no.as_str(), year).await?;
        if let Some(existing) = repo::reservation(tx, settlement_id).await? {
            return Self::replayed(existing, digest);
        }
        let asked = Asked::of_claim(claim);
        let (base, policy_id) = Self::base_policy(tx, &asked, context).await?;
        let (standing, policy) = self.filed_policy(tx, &asked, &base).await?;
        let disease = claim.disease_code.clone().unwrap_or_default();
        let used = repo::used(tx, claim.person_no.as_str(), year, &disease, settlement_id).await?;
        let balance = match claim.use_personal_account {
            // Read under the person's lock: see `live_balance`.
            true => {
                self.live_balance(claim.person_no.as_str(), claim.service_date)
                    .await?
            }
            false => context.account_balance,
        };
        let before = Self::before(used, balance)?;
        let split = Split::compute(
            &claim.amounts,
            &policy,
            &before,
            claim.insurance_type,
            claim.use_personal_account,
        );
        let now = now_ms();
        let row = ReservationRow {
            settlement_id: settlement_id.to_owned(),
            kind: ReservationKind::Settlement,
            status: ReservationStatus::Reserved,
            person_no: claim.person_no.to_string(),
            benefit_year: year,
            treatment_city: claim.treatment_city.to_string(),
            institution_code: claim.institution_code.to_string(),
            visit_id: claim.visit_id.clone(),
            message_id: message_id.to_string(),
            request_digest: digest.to_owned(),
            total_fen: fen(claim.amounts.total_amount()),
            full_self_pay_fen: fen(claim.amounts.full_self_pay()),
            over_cap_self_pay_fen: fen(claim.amounts.over_cap_self_pay()),
            pre_self_pay_fen: fen(claim.amounts.pre_self_pay()),
            in_scope_fen: fen(claim.amounts.in_scope_amount()),
            policy_id: policy_id.clone(),
            policy_deductible_fen: fen(policy.deductible()),
            policy_ratio: policy.reimbursement_ratio().value().to_string(),
            policy_annual_cap_fen: fen(policy.annual_cap()),
            insurance_type: i64::from(claim::insurance_type_code(claim.insurance_type)),
            use_personal_account: i64::from(claim.use_personal_account),
            before_deductible_used_fen: fen(before.deductible_used()),
            before_fund_paid_fen: fen(before.fund_paid()),
            before_balance_fen: fen(before.account_balance()),
            deductible_applied_fen: fen(split.deductible_applied()),
            fund_pay_fen: fen(split.fund_pay()),
            account_pay_fen: fen(split.account_pay()),
            split: BASE64.encode(
                Self::split_wire(
                    &split,
                    year,
                    &policy_id,
                    Some(filing::standing_wire(&standing)),
                    claim.insurance_type,
                    &disease,
                )
                .encode_to_vec(),
            ),
            reserved_at_ms: now,
            expires_at_ms: now + i64::from(timeout_seconds) * 1000,
            disease_code: disease.clone(),
            ..ReservationRow::default()
        };
        if !repo::insert_reservation(tx, &row).await? {
            return Self::raced(tx, settlement_id, &row.request_digest).await;
        }
        audit::record(tx, "Reserve", message_id.as_str()).await?;
        Ok(row)
    }

    /// A Reserve whose insert met a row of its settlement id that a racing Void (which does not
    /// take the person's lock for an id it has never seen) inserted and committed first:
    /// answered as a replay would be. The insert waited for that commit, so a read of the same
    /// transaction sees the row (on SQLite no other writer runs beside a transaction).
    async fn raced(
        tx: &mut yitong_store::sqlx::AnyConnection,
        settlement_id: &str,
        digest: &str,
    ) -> Result<ReservationRow, BenefitError> {
        let existing = repo::reservation(tx, settlement_id).await?.ok_or_else(|| {
            BenefitError::Corrupt(format!("reservation {settlement_id} vanished"))
        })?;
        Self::replayed(existing, digest)
    }

    /// A Reserve checked and read as far as it can be before its group (the person and the
    /// policy, or the original a cancellation reverses), by `caller`.
    pub async fn prepare_reserve(
        &self,
        caller: &Caller,
        request: pb::ReserveRequest,
    ) -> Result<Write, Status> {
        let digest = reserve_digest(&request);
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let settlement_id =
            parse_id(&request.settlement_id, "settlement_id").map_err(invalid_argument)?;
        let timeout_seconds = match request.timeout_seconds {
            0 => TIMEOUT_SECONDS_DEFAULT,
            seconds if seconds <= TIMEOUT_SECONDS_MAX => seconds,
            _ => {
                return Err(invalid_argument(Invalid::new(
                    "timeout_seconds",
                    format!(
                        "must be 0 (default {TIMEOUT_SECONDS_DEFAULT}) to {TIMEOUT_SECONDS_MAX}"
                    ),
                )));
            }
        };
        let write = match pb::ReservationKind::try_from(request.kind) {
            Ok(pb::ReservationKind::Settlement) => {
                if !request.original_settlement_id.is_empty() {
                    return Err(invalid_argument(Invalid::new(
                        "original_settlement_id",
                        "must be empty for a settlement",
                    )));
                }
                let claim = BenefitClaim::try_from(request.claim).map_err(invalid_argument)?;
                require_treating_node(caller, &claim)?;
                self.reserve_settlement(message_id, settlement_id, claim, timeout_seconds, digest)
                    .await?
            }
            Ok(pb::ReservationKind::Cancellation) => {
                if request.claim.is_some() {
                    return Err(invalid_argument(Invalid::new(
                        "claim",
                        "must be absent for a cancellation: the original is reversed exactly",
                    )));
                }
                let original = parse_id(&request.original_settlement_id, "original_settlement_id")
                    .map_err(invalid_argument)?;
                self.reserve_cancellation(
                    message_id,
                    settlement_id,
                    &original,
                    timeout_seconds,
                    digest,
                )
                .await?
            }
            _ => {
                return Err(invalid_argument(Invalid::new(
                    "kind",
                    "must be RESERVATION_KIND_SETTLEMENT or RESERVATION_KIND_CANCELLATION",
                )));
            }
        };
        Ok(write)
    }

    /// A Post checked and its reservation found before its group.
    pub async fn prepare_post(&self, request: pb::PostRequest) -> Result<Write, Status> {
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let settlement_id =
            parse_id(&request.settlement_id, "settlement_id").map_err(invalid_argument)?;
        Ok(BenefitNode::post(self, message_id, &settlement_id).await?)
    }

    /// The split a stored settlement reservation was computed with, recomputed exactly.
    fn original_split(row: &ReservationRow) -> Result<Split, BenefitError> {
        let corrupt = |what: &str| {
            BenefitError::Corrupt(format!(
                "reservation {} has a malformed {what}",
                row.settlement_id
            ))
        };
        let claim = split::Claim::new(
            Amount::from_fen(row.total_fen),
            Amount::from_fen(row.full_self_pay_fen),
            Amount::from_fen(row.over_cap_self_pay_fen),
            Amount::from_fen(row.pre_self_pay_fen),
            Amount::from_fen(row.in_scope_fen),
        )
        .map_err(|_| corrupt("claim"))?;
        let ratio =
            claim::ratio(&row.policy_ratio, "policy_ratio").map_err(|_| corrupt("ratio"))?;
        let policy = Policy::new(
            Amount::from_fen(row.policy_deductible_fen),
            ratio,
            Amount::from_fen(row.policy_annual_cap_fen),
        )
        .map_err(|_| corrupt("policy"))?;
        let before = RunningTotals::new(
            Amount::from_fen(row.before_deductible_used_fen),
            Amount::from_fen(row.before_fund_paid_fen),
            Amount::from_fen(row.before_balance_fen),
        )
        .map_err(|_| corrupt("totals"))?;
        let insurance_type = claim::insurance_type(
            i32::try_from(row.insurance_type).unwrap_or_default(),
            "insurance_type",
        )
        .map_err(|_| corrupt("insurance type"))?;
        let split = Split::compute(
            &claim,
            &policy,
            &before,
            insurance_type,
            row.use_personal_account == 1,
        );
        let stored = (
            row.deductible_applied_fen,
            row.fund_pay_fen,
            row.account_pay_fen,
        );
        if (
            fen(split.deductible_applied()),
            fen(split.fund_pay()),
            fen(split.account_pay()),
        ) != stored
        {
            return Err(corrupt("split that does not recompute"));
        }
        Ok(split)
    }

    /// Holds the exact reversal of a posted settlement's benefit: finds the original, then
    /// books the hold in a group.
    async fn reserve_cancellation(
        &self,
        message_id: MessageId,
        settlement_id: String,
        original_id: &str,
        timeout_seconds: u32,
        digest: String,
    ) -> Result<Write, BenefitError> {
        let mut conn = self.store.pool().acquire().await?;
        let original = repo::reservation(&mut conn, original_id).await?;
        drop(conn);
        let original = original
            .filter(|original| original.kind == ReservationKind::Settlement)
            .ok_or_else(|| BenefitError::NotFound(original_id.to_owned()))?;
        Ok(Write(Prepared::Book(Work::Cancel {
            message_id,
            settlement_id,
            original,
            timeout_seconds,
            digest,
        })))
    }

    /// The hold of a cancellation, under the person's lock, in a group's transaction.
    async fn reserve_cancellation_locked(
        &self,
        tx: &mut yitong_store::sqlx::AnyConnection,
        message_id: &MessageId,
        settlement_id: &str,
        found: &ReservationRow,
        timeout_seconds: u32,
        digest: &str,
    ) -> Result<ReservationRow, BenefitError> {
        let original_id = found.settlement_id.as_str();
        repo::lock_year(tx, &found.person_no, found.benefit_year).await?;
        if let Some(existing) = repo::reservation(tx, settlement_id).await? {
            return Self::replayed(existing, digest);
        }
        let original = repo::reservation(tx, original_id)
            .await?
            .ok_or_else(|| BenefitError::NotFound(original_id.to_owned()))?;
        if original.status != ReservationStatus::Posted {
            return Err(BenefitError::refused(
                "SETTLEMENT_NOT_POSTED",
                format!("settlement {original_id} is not posted"),
            ));
        }
        if let Some(by) = &original.reversed_by {
            return Err(BenefitError::refused(
                "ALREADY_CANCELLED",
                format!("settlement {original_id} is already cancelled by {by}"),
            ));
        }
        let (deductible_used, fund_paid) = repo::posted(
            tx,
            &original.person_no,
            original.benefit_year,
            &original.disease_code,
        )
        .await?;
        // The balance the reversal starts from is the person's now, as a new settlement would
        // see it (less what held settlements will take), not the one the original saw: the
        // answer's balance is then the person's balance once the refund is posted.
        let balance_now = match original.account_pay_fen {
            0 => Amount::ZERO,
            _ => {
                let used = repo::used(
                    tx,
                    &original.person_no,
                    original.benefit_year,
                    &original.disease_code,
                    "",
                )
                .await?;
                let reserved_on = yitong_core::date_of_ms(original.reserved_at_ms);
                let live = self.live_balance(&original.person_no, reserved_on).await?;
                Amount::from_fen((live.fen() - used.account_held_fen).max(0))
            }
        };
        let now_totals = RunningTotals::new(
            Amount::from_fen(deductible_used),
            Amount::from_fen(fund_paid),
            balance_now,
        )?;
        let original_split = Self::original_split(&original)?;
        let reversal = original_split.reversal(&now_totals)?;
        let insurance_type = claim::insurance_type(
            i32::try_from(original.insurance_type).unwrap_or_default(),
            "insurance_type",
        )
        .map_err(|_| BenefitError::Corrupt(format!("insurance type of {original_id}")))?;
        let now = now_ms();
        let row = ReservationRow {
            settlement_id: settlement_id.to_owned(),
            kind: ReservationKind::Cancellation,
            original_settlement_id: Some(original_id.to_owned()),
            status: ReservationStatus::Reserved,
            message_id: message_id.to_string(),
            request_digest: digest.to_owned(),
            deductible_applied_fen: fen(reversal.deductible_applied()),
            fund_pay_fen: fen(reversal.fund_pay()),
            account_pay_fen: fen(reversal.account_pay()),
            split: BASE64.encode(
                Self::split_wire(
                    &reversal,
                    original.benefit_year,
                    &original.policy_id,
                    Self::stored_split(&original)?.filing,
                    insurance_type,
                    &original.disease_code,
                )
                .encode_to_vec(),
            ),
            reserved_at_ms: now,
            expires_at_ms: now + i64::from(timeout_seconds) * 1000,
            resolved_at_ms: None,
            reversed_by: None,
            void_reason: String::new(),
            account_moved: 0,
            // The claim, policy and totals-before columns stay the original's: the reversal is
            // defined by them, and its own figures are the negated ones above.
            ..original.clone()
        };
        if !repo::insert_reservation(tx, &row).await? {
            return Self::raced(tx, settlement_id, &row.request_digest).await;
        }
        repo::set_reversed_by(tx, original_id, Some(settlement_id)).await?;
        audit::record(tx, "Reserve", message_id.as_str()).await?;
        Ok(row)
    }

    /// A second Reserve for a settlement id: the same request gets the reservation as it stands,
    /// another request is refused, an id voided before it was reserved stays voided.
    fn replayed(existing: ReservationRow, digest: &str) -> Result<ReservationRow, BenefitError> {
        if existing.kind == ReservationKind::Tombstone {
            return Err(BenefitError::refused(
                "VOIDED_BEFORE_RESERVED",
                format!(
                    "settlement {} was voided before it was reserved",
                    existing.settlement_id
                ),
            ));
        }
        if existing.request_digest != digest {
            return Err(BenefitError::Conflict(existing.settlement_id));
        }
        Ok(existing)
    }

    /// Posts a reservation: finds it, answers at once if it is posted and its account moved,
    /// else books the post in a group.
    async fn post(
        &self,
        message_id: MessageId,
        settlement_id: &str,
    ) -> Result<Write, BenefitError> {
        let mut conn = self.store.pool().acquire().await?;
        let found = repo::reservation(&mut conn, settlement_id).await?;
        drop(conn);
        let found = found
            .filter(|row| row.kind != ReservationKind::Tombstone)
            .ok_or_else(|| BenefitError::NotFound(settlement_id.to_owned()))?;
        if found.status == ReservationStatus::Posted
            && (found.account_pay_fen == 0 || found.account_moved == 1)
        {
            return Ok(Write(Prepared::Done(found)));
        }
        Ok(Write(Prepared::Book(Work::Post { message_id, found })))
    }

    /// The post of a reservation, under the person's lock, in a group's transaction.
    async fn post_locked(
        &self,
        tx: &mut yitong_store::sqlx::AnyConnection,
        message_id: &MessageId,
        found: &ReservationRow,
    ) -> Result<ReservationRow, BenefitError> {
        let settlement_id = found.settlement_id.as_str();
        repo::lock_year(tx, &found.person_no, found.benefit_year).await?;
        let mut row = repo::reservation(tx, settlement_id)
            .await?
            .ok_or_else(|| BenefitError::NotFound(settlement_id.to_owned()))?;
        match row.status {
            ReservationStatus::Voided => {
                return Err(BenefitError::refused(
                    "RESERVATION_VOIDED",
                    format!("reservation {settlement_id} is voided"),
                ));
            }
            // Held until the treatment city decides, past its timeout too: its room was never
            // given to another settlement, so the post always fits.
            ReservationStatus::Reserved => {
                row.posted_at(repo::post(tx, &row).await?);
                audit::record(tx, "Post", message_id.as_str()).await?;
            }
            ReservationStatus::Posted => {}
        }
        // The account moves under the person's lock, in the transaction that posts: a Reserve
        // of the same person reads the balance either before both or after both.
        if self.move_account(&row).await? {
            repo::mark_account_moved(tx, &row.settlement_id).await?;
            row.account_moved = 1;
        }
        Ok(row)
    }

    /// Takes a posted reservation's account pay from (or refunds it to) the personal account,
    /// once: identity keeps one movement per settlement id, so a retried Post moves nothing twice.
    /// True when the account has moved by this call.
    async fn move_account(&self, row: &ReservationRow) -> Result<bool, BenefitError> {
        if row.status != ReservationStatus::Posted
            || row.account_pay_fen == 0
            || row.account_moved == 1
        {
            return Ok(false);
        }
        let request = MoveAccountRequest {
            message_id: format!("{}-account", row.settlement_id),
            settlement_id: row.settlement_id.clone(),
            person_no: row.person_no.clone(),
            amount: Amount::from_fen(-row.account_pay_fen).to_string(),
        };
        self.identity
            .clone()
            .move_account(request)
            .await
            .map_err(|status| BenefitError::upstream("identity", status))?;
        Ok(true)
    }

    async fn void(
        &self,
        message_id: &MessageId,
        settlement_id: &str,
        reason: &str,
    ) -> Result<ReservationRow, BenefitError> {
        let mut conn = self.store.pool().acquire().await?;
        let found = repo::reservation(&mut conn, settlement_id).await?;
        drop(conn);
        let mut tx = self.store.begin_write().await?;
        if let Some(found) = &found {
            repo::lock_year(&mut tx, &found.person_no, found.benefit_year).await?;
        }
        let held = repo::reservation(&mut tx, settlement_id).await?;
        if found.is_none() && held.is_some() {
            // Reserved since the first look, and not locked: look again, under the lock.
            tx.rollback().await?;
            return Box::pin(self.void(message_id, settlement_id, reason)).await;
        }
        match held {
            None => {
                // Voided before it was ever reserved: remember it, so a Reserve delayed in the
                // network cannot bring it back.
                let now = now_ms();
                let tombstone = ReservationRow {
                    settlement_id: settlement_id.to_owned(),
                    kind: ReservationKind::Tombstone,
                    status: ReservationStatus::Voided,
                    message_id: message_id.to_string(),
                    policy_ratio: "0".into(),
                    reserved_at_ms: now,
                    expires_at_ms: now,
                    resolved_at_ms: Some(now),
                    void_reason: reason.to_owned(),
                    ..ReservationRow::default()
                };
                if !repo::insert_reservation(&mut tx, &tombstone).await? {
                    // A Reserve inserted the id first: void what it holds, under its lock.
                    tx.rollback().await?;
                    return Box::pin(self.void(message_id, settlement_id, reason)).await;
                }
                audit::record(&mut tx, "Void", message_id.as_str()).await?;
            }
            Some(row) if row.status == ReservationStatus::Posted => {
                return Err(BenefitError::refused(
                    "RESERVATION_POSTED",
                    format!("reservation {settlement_id} is posted: cancel the settlement instead"),
                ));
            }
            Some(row) if row.status == ReservationStatus::Reserved => {
                let voided = repo::void(&mut tx, settlement_id, reason).await?;
                assert!(
                    voided,
                    "a reservation read under the person's lock is still reserved"
                );
                if let Some(original) = &row.original_settlement_id {
                    repo::set_reversed_by(&mut tx, original, None).await?;
                }
                audit::record(&mut tx, "Void", message_id.as_str()).await?;
            }
            Some(_) => {}
        }
        tx.commit().await?;
        let mut conn = self.store.pool().acquire().await?;
        repo::reservation(&mut conn, settlement_id)
            .await?
            .ok_or_else(|| BenefitError::NotFound(settlement_id.to_owned()))
    }

    /// The split a reservation stored, as it answered it.
    fn stored_split(row: &ReservationRow) -> Result<pb::SettlementSplit, BenefitError> {
        let corrupt = || BenefitError::Corrupt(format!("split of {}", row.settlement_id));
        let bytes = BASE64.decode(&row.split).map_err(|_| corrupt())?;
        pb::SettlementSplit::decode(bytes.as_slice()).map_err(|_| corrupt())
    }

    fn reservation_wire(&self, row: &ReservationRow) -> Result<pb::Reservation, BenefitError> {
        let now = now_ms();
        let (status, resolved_at) = match row.status {
            ReservationStatus::Reserved if row.expires_at_ms <= now => {
                (pb::ReservationStatus::Expired, Some(row.expires_at_ms))
            }
            ReservationStatus::Reserved => (pb::ReservationStatus::Reserved, None),
            ReservationStatus::Posted => (pb::ReservationStatus::Posted, row.resolved_at_ms),
            ReservationStatus::Voided => (pb::ReservationStatus::Voided, row.resolved_at_ms),
        };
        let kind = match row.kind {
            ReservationKind::Settlement => pb::ReservationKind::Settlement,
            ReservationKind::Cancellation => pb::ReservationKind::Cancellation,
            ReservationKind::Tombstone => pb::ReservationKind::Unspecified,
        };
        let split = match row.kind {
            ReservationKind::Tombstone => None,
            ReservationKind::Settlement | ReservationKind::Cancellation => {
                let bytes = BASE64.decode(&row.split).map_err(|_| {
                    BenefitError::Corrupt(format!("split of {}", row.settlement_id))
                })?;
                Some(pb::SettlementSplit::decode(bytes.as_slice()).map_err(|_| {
                    BenefitError::Corrupt(format!("split of {}", row.settlement_id))
                })?)
            }
        };
        Ok(pb::Reservation {
            settlement_id: row.settlement_id.clone(),
            kind: kind as i32,
            original_settlement_id: row.original_settlement_id.clone().unwrap_or_default(),
            status: status as i32,
            person_no: row.person_no.clone(),
            insured_city: self.city.to_string(),
            treatment_city: row.treatment_city.clone(),
            institution_code: row.institution_code.clone(),
            visit_id: row.visit_id.clone(),
            split,
            message_id: row.message_id.clone(),
            reserved_at: Some(timestamp(row.reserved_at_ms)),
            expires_at: Some(timestamp(row.expires_at_ms)),
            resolved_at: resolved_at.map(timestamp),
            void_reason: row.void_reason.clone(),
        })
    }
}

fn message_id(text: &str) -> Result<MessageId, Invalid> {
    MessageId::parse(text).map_err(|invalid| invalid.at("message_id"))
}

/// A claim is priced or held only for the node of its treatment city: a node may not ask as
/// another city, nor for another city's institution (the proto's "it must be the calling
/// node's"). PERMISSION_DENIED names the field.
fn require_treating_node(caller: &Caller, claim: &BenefitClaim) -> Result<(), Denied> {
    caller.require_own_city("claim.treatment_city", claim.treatment_city)?;
    caller.require_own_city("claim.institution_code", claim.institution_code.city())
}

/// The digest a Reserve replay must match: the request's content, its timeout aside.
fn reserve_digest(request: &pb::ReserveRequest) -> String {
    let content = pb::ReserveRequest {
        timeout_seconds: 0,
        ..request.clone()
    };
    yitong_store::replies::digest(&content.encode_to_vec())
}

#[tonic::async_trait]
impl pb::benefit_service_server::BenefitService for BenefitNode {
    async fn quote(
        &self,
        request: Request<pb::QuoteRequest>,
    ) -> Result<Response<pb::QuoteResponse>, Status> {
        let caller = Caller::of(&request);
        let claim = BenefitClaim::try_from(request.into_inner().claim).map_err(invalid_argument)?;
        require_treating_node(&caller, &claim)?;
        let split = BenefitNode::quote(self, claim).await?;
        Ok(Response::new(pb::QuoteResponse { split: Some(split) }))
    }

    async fn get_totals(
        &self,
        request: Request<pb::GetTotalsRequest>,
    ) -> Result<Response<pb::GetTotalsResponse>, Status> {
        let caller = Caller::of(&request);
        let asked = Asked::try_from(request.into_inner()).map_err(invalid_argument)?;
        caller.require_own_city("treatment_city", asked.treatment_city)?;
        caller.require_own_city("institution_code", asked.institution_code.city())?;
        let (totals, filing, certification) = BenefitNode::totals(self, asked).await?;
        Ok(Response::new(pb::GetTotalsResponse {
            totals: Some(totals),
            filing: Some(filing),
            certification,
        }))
    }

    async fn reserve(
        &self,
        request: Request<pb::ReserveRequest>,
    ) -> Result<Response<pb::ReserveResponse>, Status> {
        let caller = Caller::of(&request);
        let write = self.prepare_reserve(&caller, request.into_inner()).await?;
        let row = self.write(write).await?;
        Ok(Response::new(pb::ReserveResponse {
            reservation: Some(self.reservation_wire(&row)?),
        }))
    }

    async fn post(
        &self,
        request: Request<pb::PostRequest>,
    ) -> Result<Response<pb::PostResponse>, Status> {
        let write = self.prepare_post(request.into_inner()).await?;
        let row = self.write(write).await?;
        Ok(Response::new(pb::PostResponse {
            reservation: Some(self.reservation_wire(&row)?),
        }))
    }

    async fn void(
        &self,
        request: Request<pb::VoidRequest>,
    ) -> Result<Response<pb::VoidResponse>, Status> {
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let settlement_id =
            parse_id(&request.settlement_id, "settlement_id").map_err(invalid_argument)?;
        if request.reason.chars().count() > REASON_CHARS_MAX {
            return Err(invalid_argument(Invalid::new(
                "reason",
                format!("must be at most {REASON_CHARS_MAX} characters"),
            )));
        }
        let row = BenefitNode::void(self, &message_id, &settlement_id, &request.reason).await?;
        Ok(Response::new(pb::VoidResponse {
            reservation: Some(self.reservation_wire(&row)?),
        }))
    }
}
