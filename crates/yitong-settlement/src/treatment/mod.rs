//! The HIS-facing SettlementService of the treatment city: visits, fee lines classified with this
//! city's catalog, pre-settlement, and the cross-city settle, cancel and reverse (`settle`).
//!
//! Every state-changing request claims its message id in the same write transaction as its
//! change (`yitong_store::replies`), so a replay returns the first answer. Calls to other nodes
//! (this city's identity and catalog, the insured city's benefit service, the clearing house's
//! ledger) are made outside any transaction and each carries a deadline and this node's
//! credential (`PeerAccess`).
//!
//! The server layer has authenticated the caller as an institution of this city; each handler
//! then checks that the request's `institution_code` is the caller's own, so an institution
//! acts only on its own visits and settlements (PERMISSION_DENIED otherwise).

mod error;
mod repo;
mod request;
mod settle;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use yitong_core::PeerChannel;
use yitong_core::{
    Amount, Caller, CityCode, Date, InstitutionCode, Invalid, MessageId, Network, Owner,
    PeerAccess, PersonNo, Role, peer_channel,
};
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_proto::catalog::v1::{
    GetInstitutionRequest, ItemGrade, LookupItemsRequest, LookupOutcome,
};
use yitong_proto::identity::v1::identity_service_client::IdentityServiceClient;
use yitong_proto::identity::v1::{Credential, GetInsuredPersonRequest, InsuredPerson};
use yitong_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use yitong_proto::settlement::v1 as pb;
use yitong_proto::settlement::v1::benefit_service_client::BenefitServiceClient;
use yitong_store::replies::{self, Claim};
use yitong_store::sqlx::{Any, Transaction};
use yitong_store::{Store, now_ms};

pub use error::TreatmentError;
pub use repo::{Kind, Phase};
use repo::{LineRow, VisitRow};
use request::{LineSelection, Registration, SettleInput, Upload, VisitScope};
pub use settle::{Intent, RecoveryReport, SWEEP_BACKOFF_MAX_MS, Started, transfer_id};

use crate::split::{self, CatalogEntry, ClassifiedLine, Grade, Ratio};

/// Timing of the settle protocol and of its recovery sweep.
#[derive(Debug, Clone, Copy)]
pub struct TreatmentOptions {
    /// How long the insured city holds a reservation for a Settle, in seconds (1 to 600).
    pub reservation_timeout_seconds: u32,
    /// How long the ledger holds a pending transfer, in seconds (1 to 3600). Longer than any
    /// completion should take: a transfer that expires anyway is booked again, posted.
    pub transfer_timeout_seconds: u32,
    /// How old a PENDING intent must be before the sweep voids it, in milliseconds: longer than
    /// a Settle in flight can take (three peer calls under their deadlines), so the sweep never
    /// voids one a live request is still driving.
    pub pending_grace_ms: i64,
    /// Time between two recovery sweeps, in milliseconds.
    pub sweep_interval_ms: u64,
    /// Most settlements one sweep resolves per phase; the rest wait for the next sweep.
    pub sweep_batch_max: i64,
    /// Longest a replay waits for the first call under its message id to finish, in
    /// milliseconds, within the caller's own deadline; then it answers ABORTED.
    pub replay_wait_ms: u64,
}

impl Default for TreatmentOptions {
    fn default() -> Self {
        TreatmentOptions {
            reservation_timeout_seconds: 60,
            transfer_timeout_seconds: 3_600,
            pending_grace_ms: 30_000,
            sweep_interval_ms: 5_000,
            sweep_batch_max: 100,
            replay_wait_ms: 5_000,
        }
    }
}

/// The settlement service of one city, as the treatment city of the visits it settles.
#[derive(Debug, Clone)]
pub struct SettlementNode {
    city: CityCode,
    store: Store,
    identity: IdentityServiceClient<PeerChannel>,
    catalog: CatalogServiceClient<PeerChannel>,
    /// The BenefitService of every enabled city, this one included (same-city visits).
    benefits: Arc<HashMap<CityCode, BenefitServiceClient<PeerChannel>>>,
    ledger: LedgerServiceClient<PeerChannel>,
    options: TreatmentOptions,
}

/// A write request's message id has either been answered before or starts a transaction.
enum Begun {
    Replay(Vec<u8>),
    Fresh(Transaction<'static, Any>),
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn encode<M: Message>(message: &M) -> String {
    BASE64.encode(message.encode_to_vec())
}

fn decode<M: Message + Default>(text: &str, what: &str) -> Result<M, TreatmentError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| TreatmentError::Corrupt(format!("{what} is not base64")))?;
    M::decode(bytes.as_slice())
        .map_err(|_| TreatmentError::Corrupt(format!("{what} does not decode")))
}

fn fen(text: &str, what: &str) -> Result<Amount, TreatmentError> {
    Amount::parse_signed(text)
        .map_err(|_| TreatmentError::Peer(format!("{what} is not an amount: {text:?}")))
}

impl SettlementNode {
    /// Clients to this city's identity and catalog, to every enabled city's benefit service
    /// (the settlement endpoint of each city serves it) and to the clearing house's ledger,
    /// every one with the network's call deadlines. Nothing connects until first used.
    pub fn new(
        city: CityCode,
        store: Store,
        network: Arc<Network>,
        access: &PeerAccess,
    ) -> Result<Self, tonic::transport::Error> {
        let own = network
            .city(city)
            .expect("a node runs for a city of its network");
        let identity = IdentityServiceClient::new(peer_channel(&own.identity, access)?);
        let catalog = CatalogServiceClient::new(peer_channel(&own.catalog, access)?);
        let mut benefits = HashMap::new();
        for peer in network.enabled_cities() {
            benefits.insert(
                peer.code,
                BenefitServiceClient::new(peer_channel(&peer.settlement, access)?),
            );
        }
        let ledger =
            LedgerServiceClient::new(peer_channel(&network.clearing_house.ledger, access)?);
        Ok(SettlementNode {
            city,
            store,
            identity,
            catalog,
            benefits: Arc::new(benefits),
            ledger,
            options: TreatmentOptions::default(),
        })
    }

    /// The same node with other protocol timings.
    pub fn with_options(mut self, options: TreatmentOptions) -> Self {
        self.options = options;
        self
    }

    pub fn city(&self) -> CityCode {
        self.city
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs the recovery sweep now and then every `sweep_interval_ms` until `shutdown` is
    /// cancelled. A sweep that fails is logged and tried again at the next tick.
    pub fn spawn_recovery(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let node = self.clone();
        tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval(Duration::from_millis(node.options.sweep_interval_ms.max(1)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                match node.recover().await {
                    Ok(report) if report.is_empty() => {}
                    Ok(report) => {
                        tracing::info!(city = %node.city, voided = report.voided, completed = report.completed, left = report.left, "recovery sweep")
                    }
                    Err(error) => {
                        tracing::warn!(city = %node.city, error = %yitong_core::cause_chain(&error), "recovery sweep failed")
                    }
                }
            }
        })
    }

    // ---- Message ids ---------------------------------------------------------------------

    /// Claims a message id inside a new write transaction, or returns its first reply.
    async fn begin(
        &self,
        message_id: &MessageId,
        rpc: &str,
        digest: &str,
    ) -> Result<Begun, TreatmentError> {
        let mut tx = self.store.begin_write().await?;
        match replies::claim(&mut tx, message_id.as_str(), rpc, digest).await? {
            Claim::Fresh => Ok(Begun::Fresh(tx)),
            Claim::Replay(bytes) => Ok(Begun::Replay(bytes)),
        }
    }

    /// The first reply to a message id, without claiming it: requests that call other nodes
    /// before they write look here first, so a replay is answered as it was.
    async fn peek(
        &self,
        message_id: &MessageId,
        rpc: &str,
        digest: &str,
    ) -> Result<Option<Vec<u8>>, TreatmentError> {
        let mut conn = self.store.pool().acquire().await?;
        Ok(replies::peek(&mut conn, message_id.as_str(), rpc, digest).await?)
    }

    async fn finish<R: Message>(
        &self,
        mut tx: Transaction<'static, Any>,
        message_id: &MessageId,
        reply: R,
    ) -> Result<R, TreatmentError> {
        replies::record(&mut tx, message_id.as_str(), &reply.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(reply)
    }

    // ---- Other nodes ---------------------------------------------------------------------

    /// The person behind a credential, through this city's identity (which asks the issuing
    /// city); its refusals (lost card, suspended person) reach the HIS unchanged.
    async fn person(
        &self,
        credential: &Credential,
        date: Date,
        institution: &InstitutionCode,
        operator_id: &str,
    ) -> Result<InsuredPerson, TreatmentError> {
        let request = GetInsuredPersonRequest {
            credential: Some(credential.clone()),
            service_date: date.to_string(),
            institution_code: institution.to_string(),
            operator_id: operator_id.to_owned(),
        };
        let reply = self
            .identity
            .clone()
            .get_insured_person(request)
            .await
            .map_err(|status| TreatmentError::remote("identity", status))?;
        reply
            .into_inner()
            .person
            .ok_or_else(|| TreatmentError::Peer("identity answered without a person".into()))
    }

    /// Checks the credential is usable and is the person's, with the person's insurance type.
    async fn check_person(
        &self,
        credential: &Credential,
        person_no: &PersonNo,
        insurance_type: split::InsuranceType,
        date: Date,
        institution: &InstitutionCode,
        operator_id: &str,
    ) -> Result<InsuredPerson, TreatmentError> {
        let person = self
            .person(credential, date, institution, operator_id)
            .await?;
        if person.person_no != person_no.as_str() {
            return Err(
                Invalid::new("person_no", "is not the person the credential identifies").into(),
            );
        }
        if person.insurance_type != request::insurance_type_to_wire(insurance_type) {
            return Err(
                Invalid::new("insurance_type", "is not the person's insurance type").into(),
            );
        }
        Ok(person)
    }

    fn benefit(&self, city: CityCode) -> Result<BenefitServiceClient<PeerChannel>, TreatmentError> {
        self.benefits.get(&city).cloned().ok_or_else(|| {
            TreatmentError::refused(
                "CITY_NOT_ENABLED",
                format!("city {city} does not take part in cross-city settlement"),
            )
        })
    }

    /// Classifies lines with this city's catalog at each line's date, one lookup per date.
    async fn classify(
        &self,
        lines: &[request::UploadedLine],
        visit_date: Date,
        institution: &InstitutionCode,
    ) -> Result<Vec<(ClassifiedLine, pb::ClassifiedFeeLine)>, TreatmentError> {
        let dates: Vec<Date> = lines
            .iter()
            .map(|line| {
                line.occurred_at_ms
                    .map(request::date_of_ms)
                    .unwrap_or(visit_date)
            })
            .collect();
        let mut answers: Vec<Option<yitong_proto::catalog::v1::ItemClassification>> =
            vec![None; lines.len()];
        let mut distinct = dates.clone();
        distinct.sort();
        distinct.dedup();
        for date in distinct {
            let indexes: Vec<usize> = (0..lines.len())
                .filter(|index| dates[*index] == date)
                .collect();
            let lookup = LookupItemsRequest {
                codes: indexes
                    .iter()
                    .map(|index| lines[*index].item_code.clone())
                    .collect(),
                service_date: date.to_string(),
                institution_code: institution.to_string(),
            };
            let reply = self
                .catalog
                .clone()
                .lookup_items(lookup)
                .await
                .map_err(|status| TreatmentError::remote("catalog", status))?
                .into_inner();
            if reply.items.len() != indexes.len() {
                return Err(TreatmentError::Peer(
                    "catalog answered a different number of codes".into(),
                ));
            }
            for (index, item) in indexes.into_iter().zip(reply.items) {
                answers[index] = Some(item);
            }
        }
        lines
            .iter()
            .zip(answers)
            .map(|(line, answer)| {
                let answer = answer
                    .ok_or_else(|| TreatmentError::Peer("catalog left a code unanswered".into()))?;
                classified_line(line, answer)
            })
            .collect()
    }

    // ---- Visits and lines ----------------------------------------------------------------

    async fn visit_wire(
        &self,
        conn: &mut yitong_store::sqlx::AnyConnection,
        row: &VisitRow,
    ) -> Result<pb::Visit, TreatmentError> {
        let mut visit: pb::Visit = decode(&row.registered, "registered visit")?;
        let (count, total) = repo::line_totals(conn, &row.visit_id).await?;
        visit.status = row.status as i32;
        visit.fee_line_count = u32::try_from(count).unwrap_or_default();
        visit.fee_total = Amount::from_fen(total).to_string();
        visit.settlement_id = row.settlement_id.clone().unwrap_or_default();
        Ok(visit)
    }

    /// Reads a visit and checks it is the asking institution's and the named person's.
    fn check_visit(row: Option<VisitRow>, scope: &VisitScope) -> Result<VisitRow, TreatmentError> {
        let row = row.ok_or_else(|| TreatmentError::NotFound {
            what: "visit",
            id: scope.visit_id.clone(),
        })?;
        if row.institution_code != scope.institution.as_str() {
            return Err(TreatmentError::NotYours {
                what: "visit",
                id: row.visit_id,
            });
        }
        if row.person_no != scope.person_no.as_str() {
            return Err(Invalid::new("person_no", "is not the visit's person").into());
        }
        Ok(row)
    }

    /// Refuses a change to a visit that is not open.
    fn check_open(row: &VisitRow) -> Result<(), TreatmentError> {
        match row.status {
            repo::VISIT_OPEN => Ok(()),
            repo::VISIT_SETTLED => Err(TreatmentError::refused(
                "VISIT_SETTLED",
                format!(
                    "visit {} is settled: cancel the settlement first",
                    row.visit_id
                ),
            )),
            _ => Err(TreatmentError::refused(
                "VISIT_CANCELLED",
                format!("visit {} is cancelled", row.visit_id),
            )),
        }
    }

    /// Refuses a change while a Settle or cancellation of the visit is in flight.
    async fn check_not_in_flight(
        conn: &mut yitong_store::sqlx::AnyConnection,
        visit_id: &str,
    ) -> Result<(), TreatmentError> {
        match repo::in_flight(conn, visit_id).await? {
            None => Ok(()),
            Some(id) => Err(TreatmentError::refused(
                "SETTLEMENT_IN_PROGRESS",
                format!("settlement {id} of visit {visit_id} is in progress"),
            )),
        }
    }

    async fn register_visit(
        &self,
        registration: Registration,
        digest: &str,
    ) -> Result<pb::RegisterVisitResponse, TreatmentError> {
        if registration.institution.city() != self.city {
            return Err(Invalid::new(
                "institution_code",
                format!("must be an institution of city {}", self.city),
            )
            .into());
        }
        if let Some(reply) = self
            .peek(&registration.message_id, "RegisterVisit", digest)
            .await?
        {
            return decode_reply(&reply);
        }
        let date = request::date_of_ms(registration.began_at_ms);
        let operator_id = &registration.request.operator_id;
        let person = self
            .check_person(
                &registration.credential,
                &registration.person_no,
                registration.insurance_type,
                date,
                &registration.institution,
                operator_id,
            )
            .await?;
        let institution = self
            .catalog
            .clone()
            .get_institution(GetInstitutionRequest {
                code: registration.institution.to_string(),
            })
            .await
            .map_err(|status| TreatmentError::remote("catalog", status))?
            .into_inner()
            .institution
            .ok_or_else(|| {
                TreatmentError::Peer("catalog answered without an institution".into())
            })?;
        if institution.city != self.city.to_string() {
            return Err(Invalid::new(
                "institution_code",
                format!("must be an institution of city {}", self.city),
            )
            .into());
        }
        let insured_city = registration.person_no.insured_city();
        let networked = !institution.cross_city_since.is_empty()
            && institution.cross_city_since.as_str() <= date.to_string().as_str();
        if insured_city != self.city && !networked {
            return Err(TreatmentError::refused(
                "INSTITUTION_NOT_NETWORKED",
                format!(
                    "institution {} is not networked for cross-city settlement on {date}",
                    institution.code
                ),
            ));
        }
        self.benefit(insured_city)?;

        let mut tx = match self
            .begin(&registration.message_id, "RegisterVisit", digest)
            .await?
        {
            Begun::Replay(reply) => return decode_reply(&reply),
            Begun::Fresh(tx) => tx,
        };
        let today = yitong_core::today();
        let prefix = format!("S{}{}", self.city, today.format("%y%m%d"));
        let serial = repo::next_serial(&mut tx, &prefix).await?;
        let visit_id = format!("{prefix}{serial:07}");
        let now = now_ms();
        let wire = &registration.request;
        let visit = pb::Visit {
            visit_id: visit_id.clone(),
            person_no: person.person_no.clone(),
            person_name: person.name.clone(),
            insurance_type: person.insurance_type,
            person_type: person.person_type,
            insured_city: insured_city.to_string(),
            treatment_city: self.city.to_string(),
            institution_code: registration.institution.to_string(),
            hospital_level: institution.level,
            medical_type: registration.medical_type as i32,
            began_at: wire.began_at,
            department_code: wire.department_code.clone(),
            department_name: wire.department_name.clone(),
            doctor_code: wire.doctor_code.clone(),
            doctor_name: wire.doctor_name.clone(),
            his_visit_no: wire.his_visit_no.clone(),
            diagnoses: wire.diagnoses.clone(),
            status: pb::VisitStatus::Open as i32,
            fee_line_count: 0,
            fee_total: Amount::ZERO.to_string(),
            settlement_id: String::new(),
            message_id: registration.message_id.to_string(),
            registered_at: Some(timestamp(now)),
        };
        let row = VisitRow {
            visit_id,
            institution_code: registration.institution.to_string(),
            person_no: person.person_no,
            insured_city: insured_city.to_string(),
            insurance_type: i64::from(person.insurance_type),
            hospital_level: i64::from(institution.level),
            service_date: date.to_string(),
            status: repo::VISIT_OPEN,
            settlement_id: None,
            registered: encode(&visit),
            registered_at_ms: now,
        };
        repo::insert_visit(&mut tx, &row).await?;
        self.finish(
            tx,
            &registration.message_id,
            pb::RegisterVisitResponse { visit: Some(visit) },
        )
        .await
    }

    async fn cancel_visit(
        &self,
        scope: VisitScope,
        digest: &str,
    ) -> Result<pb::CancelVisitResponse, TreatmentError> {
        let mut tx = match self.begin(&scope.message_id, "CancelVisit", digest).await? {
            Begun::Replay(reply) => return decode_reply(&reply),
            Begun::Fresh(tx) => tx,
        };
        let mut row = Self::check_visit(repo::lock_visit(&mut tx, &scope.visit_id).await?, &scope)?;
        Self::check_open(&row)?;
        Self::check_not_in_flight(&mut tx, &row.visit_id).await?;
        repo::set_visit_status(&mut tx, &row.visit_id, repo::VISIT_CANCELLED, None).await?;
        row.status = repo::VISIT_CANCELLED;
        let visit = self.visit_wire(&mut tx, &row).await?;
        self.finish(
            tx,
            &scope.message_id,
            pb::CancelVisitResponse { visit: Some(visit) },
        )
        .await
    }

    async fn upload_lines(
        &self,
        upload: Upload,
        digest: &str,
    ) -> Result<pb::UploadFeeLinesResponse, TreatmentError> {
        let scope = &upload.scope;
        if let Some(reply) = self
            .peek(&scope.message_id, "UploadFeeLines", digest)
            .await?
        {
            return decode_reply(&reply);
        }
        let row = {
            let mut conn = self.store.pool().acquire().await?;
            Self::check_visit(repo::visit(&mut conn, &scope.visit_id).await?, scope)?
        };
        Self::check_open(&row)?;
        let visit_date = yitong_core::parse_date(&row.service_date)
            .map_err(|_| TreatmentError::Corrupt(format!("date of visit {}", row.visit_id)))?;
        let classified = self
            .classify(&upload.lines, visit_date, &scope.institution)
            .await?;

        let mut tx = match self
            .begin(&scope.message_id, "UploadFeeLines", digest)
            .await?
        {
            Begun::Replay(reply) => return decode_reply(&reply),
            Begun::Fresh(tx) => tx,
        };
        let row = Self::check_visit(repo::lock_visit(&mut tx, &scope.visit_id).await?, scope)?;
        Self::check_open(&row)?;
        Self::check_not_in_flight(&mut tx, &row.visit_id).await?;
        let used = repo::used_serials(&mut tx, &row.visit_id).await?;
        for line in &upload.lines {
            if used.iter().any(|(serial, _)| *serial == line.serial) {
                return Err(TreatmentError::AlreadyExists {
                    what: "fee line serial",
                    id: format!("{} in visit {}", line.serial, row.visit_id),
                });
            }
        }
        let live = used.iter().filter(|(_, live)| *live).count();
        if live + upload.lines.len() > request::LINES_PER_VISIT_MAX {
            return Err(TreatmentError::refused(
                "TOO_MANY_LINES",
                format!(
                    "visit {} would hold {} live lines; at most {}",
                    row.visit_id,
                    live + upload.lines.len(),
                    request::LINES_PER_VISIT_MAX
                ),
            ));
        }
        let first_position = i64::try_from(used.len()).unwrap_or(i64::MAX);
        let mut reply_lines = Vec::with_capacity(classified.len());
        let mut stored = Vec::with_capacity(classified.len());
        for (line, (parts, wire)) in upload.lines.iter().zip(classified) {
            stored.push(LineRow {
                serial: line.serial.clone(),
                amount_fen: parts.amount().fen(),
                full_self_pay_fen: parts.full_self_pay().fen(),
                over_cap_fen: parts.over_cap_self_pay().fen(),
                pre_self_pay_fen: parts.pre_self_pay().fen(),
                in_scope_fen: parts.in_scope_amount().fen(),
                classified: encode(&wire),
            });
            reply_lines.push(wire);
        }
        repo::insert_lines(&mut tx, &row.visit_id, first_position, &stored).await?;
        let visit = self.visit_wire(&mut tx, &row).await?;
        self.finish(
            tx,
            &scope.message_id,
            pb::UploadFeeLinesResponse {
                lines: reply_lines,
                visit: Some(visit),
            },
        )
        .await
    }

    async fn cancel_lines(
        &self,
        cancellation: request::LineCancellation,
        digest: &str,
    ) -> Result<pb::CancelFeeLinesResponse, TreatmentError> {
        let scope = &cancellation.scope;
        let mut tx = match self
            .begin(&scope.message_id, "CancelFeeLines", digest)
            .await?
        {
            Begun::Replay(reply) => return decode_reply(&reply),
            Begun::Fresh(tx) => tx,
        };
        let row = Self::check_visit(repo::lock_visit(&mut tx, &scope.visit_id).await?, scope)?;
        Self::check_open(&row)?;
        Self::check_not_in_flight(&mut tx, &row.visit_id).await?;
        let used = repo::used_serials(&mut tx, &row.visit_id).await?;
        let serials = match cancellation.selection {
            LineSelection::All => used
                .iter()
                .filter(|(_, live)| *live)
                .map(|(serial, _)| serial.clone())
                .collect(),
            LineSelection::Serials(serials) => {
                for (index, serial) in serials.iter().enumerate() {
                    if !used.iter().any(|(used, live)| used == serial && *live) {
                        return Err(TreatmentError::NotFound {
                            what: "live fee line",
                            id: format!("{serial} (serials[{index}]) in visit {}", row.visit_id),
                        });
                    }
                }
                let mut distinct = serials;
                distinct.dedup();
                distinct
            }
        };
        for serial in &serials {
            repo::cancel_line(&mut tx, &row.visit_id, serial).await?;
        }
        let visit = self.visit_wire(&mut tx, &row).await?;
        self.finish(
            tx,
            &scope.message_id,
            pb::CancelFeeLinesResponse {
                cancelled_serials: serials,
                visit: Some(visit),
            },
        )
        .await
    }

    /// The treatment city's half of the split from the visit's live lines, checked against the
    /// HIS's total so both sides agree on which lines count.
    fn claim_of(
        visit_id: &str,
        lines: &[LineRow],
        total: Amount,
    ) -> Result<split::Claim, TreatmentError> {
        if lines.is_empty() {
            return Err(TreatmentError::refused(
                "NO_FEE_LINES",
                format!("visit {visit_id} has no live fee lines"),
            ));
        }
        let sum = |part: fn(&LineRow) -> i64| Amount::from_fen(lines.iter().map(part).sum());
        let claim = split::Claim::new(
            sum(|line| line.amount_fen),
            sum(|line| line.full_self_pay_fen),
            sum(|line| line.over_cap_fen),
            sum(|line| line.pre_self_pay_fen),
            sum(|line| line.in_scope_fen),
        )
        .map_err(|_| TreatmentError::Corrupt(format!("lines of visit {visit_id} do not add up")))?;
        if claim.total_amount() != total {
            return Err(Invalid::new(
                "total_amount",
                format!("must equal the live lines' total, {}", claim.total_amount()),
            )
            .into());
        }
        Ok(claim)
    }

    fn benefit_claim(
        &self,
        visit: &VisitRow,
        claim: &split::Claim,
        service_date: Date,
        use_personal_account: bool,
    ) -> pb::BenefitClaim {
        pb::BenefitClaim {
            person_no: visit.person_no.clone(),
            service_date: service_date.to_string(),
            insurance_type: i32::try_from(visit.insurance_type).unwrap_or_default(),
            hospital_level: i32::try_from(visit.hospital_level).unwrap_or_default(),
            treatment_city: self.city.to_string(),
            institution_code: visit.institution_code.clone(),
            visit_id: visit.visit_id.clone(),
            amounts: Some(pb::ClaimAmounts {
                total_amount: claim.total_amount().to_string(),
                full_self_pay: claim.full_self_pay().to_string(),
                over_cap_self_pay: claim.over_cap_self_pay().to_string(),
                pre_self_pay: claim.pre_self_pay().to_string(),
                in_scope_amount: claim.in_scope_amount().to_string(),
            }),
            use_personal_account,
        }
    }

    /// Reads the visit and its lines for a PreSettle or Settle, checks the request against
    /// them and the credential with identity, and builds the claim for the insured city.
    async fn prepare(
        &self,
        input: &SettleInput,
    ) -> Result<(VisitRow, pb::BenefitClaim), TreatmentError> {
        let scope = &input.scope;
        let (row, lines) = {
            let mut conn = self.store.pool().acquire().await?;
            let row = Self::check_visit(repo::visit(&mut conn, &scope.visit_id).await?, scope)?;
            let lines = repo::live_lines(&mut conn, &row.visit_id).await?;
            (row, lines)
        };
        Self::check_open(&row)?;
        if row.insurance_type != i64::from(request::insurance_type_to_wire(input.insurance_type)) {
            return Err(Invalid::new("insurance_type", "is not the visit's insurance type").into());
        }
        let claim = Self::claim_of(&row.visit_id, &lines, input.total_amount)?;
        let today = yitong_core::today();
        self.check_person(
            &input.credential,
            &scope.person_no,
            input.insurance_type,
            today,
            &scope.institution,
            &input.operator_id,
        )
        .await?;
        let benefit_claim = self.benefit_claim(&row, &claim, today, input.use_personal_account);
        Ok((row, benefit_claim))
    }

    async fn pre_settle(
        &self,
        input: SettleInput,
    ) -> Result<pb::PreSettleResponse, TreatmentError> {
        let (row, claim) = self.prepare(&input).await?;
        let insured = CityCode::parse(&row.insured_city).map_err(|_| {
            TreatmentError::Corrupt(format!("insured city of visit {}", row.visit_id))
        })?;
        let quote = self
            .benefit(insured)?
            .quote(pb::QuoteRequest { claim: Some(claim) })
            .await
            .map_err(|status| TreatmentError::remote("insured city's benefit service", status))?;
        let split = quote
            .into_inner()
            .split
            .ok_or_else(|| TreatmentError::Peer("benefit answered without a split".into()))?;
        let mut conn = self.store.pool().acquire().await?;
        let visit = self.visit_wire(&mut conn, &row).await?;
        Ok(pb::PreSettleResponse {
            split: Some(split),
            visit: Some(visit),
        })
    }

    // ---- Reads ---------------------------------------------------------------------------

    async fn get_settlement(
        &self,
        input: request::GetInput,
    ) -> Result<pb::Settlement, TreatmentError> {
        let mut conn = self.store.pool().acquire().await?;
        let (row, id) = match &input.key {
            request::SettlementKey::Id(id) => (repo::settlement(&mut conn, id).await?, id.clone()),
            request::SettlementKey::MessageId(id) => (
                repo::settlement_by_message(&mut conn, id.as_str()).await?,
                id.to_string(),
            ),
        };
        // Intents never recorded, and cancellations (which their originals carry), are no
        // settlement the HIS can see.
        let row = row
            .filter(|row| row.kind == Kind::Settlement && row.phase.is_recorded())
            .ok_or_else(|| TreatmentError::NotFound {
                what: "settlement",
                id: id.clone(),
            })?;
        if row.institution_code != input.institution.as_str() {
            return Err(TreatmentError::NotYours {
                what: "settlement",
                id,
            });
        }
        decode(&row.record, "settlement record")
    }

    async fn list_settlements(
        &self,
        input: request::ListInput,
    ) -> Result<pb::ListSettlementsResponse, TreatmentError> {
        let mut conn = self.store.pool().acquire().await?;
        let limit = i64::from(input.page_size) + 1;
        let mut rows = repo::list(
            &mut conn,
            input.institution.as_str(),
            &input.from_date.to_string(),
            &input.to_date.to_string(),
            input.cancelled,
            input.after,
            limit,
        )
        .await?;
        let more = rows.len() > input.page_size as usize;
        rows.truncate(input.page_size as usize);
        let next_page_token = match (more, rows.last()) {
            (true, Some(last)) => {
                request::page_token(last.settled_at_ms.unwrap_or_default(), &last.settlement_id)
            }
            _ => String::new(),
        };
        let settlements = rows
            .iter()
            .map(|row| decode(&row.record, "settlement record"))
            .collect::<Result<_, _>>()?;
        Ok(pb::ListSettlementsResponse {
            settlements,
            next_page_token,
        })
    }
}

fn decode_reply<R: Message + Default>(bytes: &[u8]) -> Result<R, TreatmentError> {
    R::decode(bytes).map_err(|_| TreatmentError::Corrupt("a recorded reply does not decode".into()))
}

/// A catalog answer as the split's catalog entry: `None` for a code not covered on the date.
fn catalog_entry(
    answer: &yitong_proto::catalog::v1::ItemClassification,
) -> Result<Option<CatalogEntry>, TreatmentError> {
    if answer.outcome != LookupOutcome::InCatalog as i32 {
        return Ok(None);
    }
    let item = answer.item.as_ref().ok_or_else(|| {
        TreatmentError::Peer("catalog answered IN_CATALOG without the item".into())
    })?;
    let ratio = rust_decimal::Decimal::from_str(&item.self_pay_ratio)
        .ok()
        .and_then(|value| Ratio::new(value).ok())
        .ok_or_else(|| {
            TreatmentError::Peer(format!("catalog sent a malformed ratio for {}", item.code))
        })?;
    let grade = match ItemGrade::try_from(item.grade) {
        Ok(ItemGrade::A) => Grade::A,
        Ok(ItemGrade::B) => Grade::B {
            self_pay_ratio: ratio,
        },
        Ok(ItemGrade::C) => Grade::C,
        _ => {
            return Err(TreatmentError::Peer(format!(
                "catalog sent no grade for {}",
                item.code
            )));
        }
    };
    let cap = match item.price_cap.as_str() {
        "" => None,
        text => Some(fen(text, "price cap")?),
    };
    Ok(Some(CatalogEntry::new(grade, cap)?))
}

fn classified_line(
    line: &request::UploadedLine,
    answer: yitong_proto::catalog::v1::ItemClassification,
) -> Result<(ClassifiedLine, pb::ClassifiedFeeLine), TreatmentError> {
    let entry = catalog_entry(&answer)?;
    let parts = ClassifiedLine::classify(line.line, entry);
    let item = answer.item.filter(|_| entry.is_some());
    let wire = pb::ClassifiedFeeLine {
        serial: line.serial.clone(),
        item_code: line.item_code.clone(),
        outcome: answer.outcome,
        item_name: item
            .as_ref()
            .map(|item| item.name.clone())
            .unwrap_or_default(),
        grade: item.as_ref().map(|item| item.grade).unwrap_or_default(),
        self_pay_ratio: entry
            .map(|entry| entry.self_pay_ratio())
            .unwrap_or(Ratio::ZERO)
            .value()
            .to_string(),
        price_cap: entry
            .and_then(|entry| entry.price_cap())
            .map(|cap| cap.to_string())
            .unwrap_or_default(),
        amount: parts.amount().to_string(),
        full_self_pay: parts.full_self_pay().to_string(),
        over_cap_amount: parts.over_cap_self_pay().to_string(),
        pre_self_pay: parts.pre_self_pay().to_string(),
        in_scope_amount: parts.in_scope_amount().to_string(),
    };
    Ok((parts, wire))
}

/// An operator sees what a settlement was, never whose: the person's number and name are
/// blanked.
fn without_personal_data(settlement: &mut pb::Settlement) {
    settlement.person_no.clear();
    settlement.person_name.clear();
}

impl SettlementNode {
    /// Who may read an institution's settlements: the institution itself, this city's bureau,
    /// and operators (without personal data).
    fn require_reader(
        &self,
        caller: &Caller,
        institution: &str,
    ) -> Result<(), yitong_core::Denied> {
        match caller {
            Caller::Bureau(_) => caller.require_bureau(Owner::City(self.city)),
            Caller::Operator(_) => Ok(()),
            _ => caller.require_institution_code(institution),
        }
    }
}

impl SettlementNode {
    /// Until when a replay may wait for its first call: `replay_wait_ms` from now, or less when
    /// the caller's own deadline (`grpc-timeout`) ends sooner, keeping a tenth of it to answer.
    fn replay_deadline(&self, metadata: &tonic::metadata::MetadataMap) -> tokio::time::Instant {
        let own = Duration::from_millis(self.options.replay_wait_ms);
        let callers = metadata
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(grpc_timeout)
            .map(|timeout| timeout - timeout / 10);
        tokio::time::Instant::now() + callers.map_or(own, |callers| callers.min(own))
    }
}

/// A `grpc-timeout` header's duration: at most eight digits and a unit (gRPC over HTTP/2).
fn grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.checked_mul(3_600)?),
        "M" => Duration::from_secs(value.checked_mul(60)?),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

fn digest<M: Message>(request: &M) -> String {
    replies::digest(&request.encode_to_vec())
}

#[tonic::async_trait]
impl pb::settlement_service_server::SettlementService for SettlementNode {
    async fn register_visit(
        &self,
        request: Request<pb::RegisterVisitRequest>,
    ) -> Result<Response<pb::RegisterVisitResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let request = request.into_inner();
        let digest = digest(&request);
        let registration = Registration::try_from(request)?;
        Ok(Response::new(
            SettlementNode::register_visit(self, registration, &digest).await?,
        ))
    }

    async fn cancel_visit(
        &self,
        request: Request<pb::CancelVisitRequest>,
    ) -> Result<Response<pb::CancelVisitResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let request = request.into_inner();
        let scope = VisitScope::try_from(&request)?;
        Ok(Response::new(
            SettlementNode::cancel_visit(self, scope, &digest(&request)).await?,
        ))
    }

    async fn upload_fee_lines(
        &self,
        request: Request<pb::UploadFeeLinesRequest>,
    ) -> Result<Response<pb::UploadFeeLinesResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let request = request.into_inner();
        let upload = Upload::try_from(&request)?;
        Ok(Response::new(
            self.upload_lines(upload, &digest(&request)).await?,
        ))
    }

    async fn cancel_fee_lines(
        &self,
        request: Request<pb::CancelFeeLinesRequest>,
    ) -> Result<Response<pb::CancelFeeLinesResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let request = request.into_inner();
        let cancellation = request::LineCancellation::try_from(&request)?;
        Ok(Response::new(
            self.cancel_lines(cancellation, &digest(&request)).await?,
        ))
    }

    async fn pre_settle(
        &self,
        request: Request<pb::PreSettleRequest>,
    ) -> Result<Response<pb::PreSettleResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let input = SettleInput::try_from(&request.into_inner())?;
        Ok(Response::new(
            SettlementNode::pre_settle(self, input).await?,
        ))
    }

    async fn settle(
        &self,
        request: Request<pb::SettleRequest>,
    ) -> Result<Response<pb::SettleResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let deadline = self.replay_deadline(request.metadata());
        let request = request.into_inner();
        let input = SettleInput::try_from(&request)?;
        Ok(Response::new(
            SettlementNode::settle(self, input, &digest(&request), deadline).await?,
        ))
    }

    async fn cancel_settlement(
        &self,
        request: Request<pb::CancelSettlementRequest>,
    ) -> Result<Response<pb::CancelSettlementResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let deadline = self.replay_deadline(request.metadata());
        let request = request.into_inner();
        let input = request::CancelInput::try_from(&request)?;
        Ok(Response::new(
            SettlementNode::cancel_settlement(self, input, &digest(&request), deadline).await?,
        ))
    }

    async fn reverse_by_message_id(
        &self,
        request: Request<pb::ReverseByMessageIdRequest>,
    ) -> Result<Response<pb::ReverseByMessageIdResponse>, Status> {
        Caller::of(&request).require_institution_code(&request.get_ref().institution_code)?;
        let deadline = self.replay_deadline(request.metadata());
        let request = request.into_inner();
        let input = request::ReverseInput::try_from(&request)?;
        Ok(Response::new(
            SettlementNode::reverse(self, input, &digest(&request), deadline).await?,
        ))
    }

    async fn get_settlement(
        &self,
        request: Request<pb::GetSettlementRequest>,
    ) -> Result<Response<pb::GetSettlementResponse>, Status> {
        let caller = Caller::of(&request);
        self.require_reader(&caller, &request.get_ref().institution_code)?;
        let input = request::GetInput::try_from(&request.into_inner())?;
        let mut settlement = SettlementNode::get_settlement(self, input).await?;
        if caller.role() == Role::Operator {
            without_personal_data(&mut settlement);
        }
        Ok(Response::new(pb::GetSettlementResponse {
            settlement: Some(settlement),
        }))
    }

    async fn list_settlements(
        &self,
        request: Request<pb::ListSettlementsRequest>,
    ) -> Result<Response<pb::ListSettlementsResponse>, Status> {
        let caller = Caller::of(&request);
        self.require_reader(&caller, &request.get_ref().institution_code)?;
        let input = request::ListInput::try_from(&request.into_inner())?;
        let mut page = SettlementNode::list_settlements(self, input).await?;
        if caller.role() == Role::Operator {
            page.settlements.iter_mut().for_each(without_personal_data);
        }
        Ok(Response::new(page))
    }
}
