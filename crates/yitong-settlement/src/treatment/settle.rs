//! The cross-city Settle, its cancellation and reversal, as steps a crash can fall between, and
//! the recovery sweep that resolves whatever a crash left in doubt.
//!
//! The treatment city coordinates; the insured city's reservation and the ledger's transfer
//! follow its decision. One Settle (or cancellation) moves its settlement id through the phases
//! of [`Phase`], each move written by exactly one step:
//!
//! 1. [`SettlementNode::step_intent`]: in one local write transaction, claim the HIS's message id
//!    and write the intent (`pending`) under a new settlement id, with the claim to reserve.
//! 2. [`SettlementNode::step_reserve`]: the insured city's BenefitService.Reserve (idempotent per
//!    settlement id; a replay returns the reservation as it stands).
//! 3. [`SettlementNode::step_record`]: in one local write transaction, `pending` becomes
//!    `recorded` with the binding split, the ledger transfer it will book
//!    ([`SettlementNode::booking`]), the visit's new state and the HIS's reply. From here the
//!    settlement exists.
//! 4. [`SettlementNode::step_complete`]: post the reservation, then book the SETTLEMENT (or
//!    CANCELLATION) transfer in the ledger, posted at once, under a UUID derived from the
//!    settlement id, so a retry creates nothing twice (`completed`).
//!
//! The local transactions of steps 1, 3 and 4 are booked by the node's group commit
//! (`writes`): each step queues its transaction, as a unit of work that reads again under its
//! locks everything it decides on, and is answered once the group holding it commits, with the
//! outcome it would have had alone.
//!
//! The ledger hears of a settlement once, after its point of no return: nothing is held there
//! that a void would have to release, and a recorded settlement is never voided. Nodes before
//! issue 21 booked the transfer pending between steps 2 and 3 and posted it at completion
//! ([`SettlementNode::step_book`]); their rows say so in the transfer they recorded, and
//! completion posts them as they were booked. Their posted fallback, when the pending transfer
//! expired, is the very request step 4 sends, so old and new nodes of one city (a rolling
//! upgrade) complete each other's rows alike. The model (`crates/yitong-model`) checks both.
//!
//! A failure before step 4 voids the intent ([`SettlementNode::void_intent`]): first the void
//! is decided here (`pending` becomes `voiding`, with its reason, in one local transaction),
//! then the reservation and the transfer are voided (each peer remembers a void of an id it
//! never saw, so a Reserve or a booking delayed in the network cannot bring it back), then the
//! intent is `voided`. Step 4 and the void decision are conditional moves out of `pending`:
//! exactly one wins, so a reversal racing its own Settle either voids it before it records or
//! finds it recorded and cancels it. After step 4, completion is retried until done; the insured
//! city holds a reservation until it is posted or voided, so a late post always fits.
//!
//! The sweep ([`SettlementNode::recover`]) voids intents left `pending` past a grace period,
//! carries decided voids to the peers and completes recorded settlements; each failure pushes
//! its row back, so a row that keeps failing never holds up the rest. A crash test aborts
//! between any two steps (each is one call here) and runs `recover`: every settlement then ends
//! complete in all three places or voided in all three.
//!
//! A replay of Settle, CancelSettlement or ReverseByMessageId gets the first call's answer; while
//! the first call is still running it waits for it within its deadline and otherwise answers
//! ABORTED (send the same message id again), never OK without the answer.

use prost::Message;
use sha2::{Digest, Sha256};
use yitong_core::{Amount, InstitutionCode, MessageId, PoolCode};
use yitong_proto::ledger::v1::{
    self as ledger, ClearingType, CreateTransferResult, PendingTransferResult, TransferCode,
    TransferFlags,
};
use yitong_proto::settlement::v1 as pb;
use yitong_store::now_ms;
use yitong_store::replies::{self, Claim, ReplyError, Scope};
use yitong_store::sqlx::AnyConnection;

use std::time::Duration;

use tokio::time::Instant;

use super::repo::{self, Kind, Phase, SettlementRow};
use super::request::SettleInput;
use super::writes::Work;
use super::{SettlementNode, TreatmentError, decode, decode_reply, encode, fen, timestamp};

/// The fund pay of a recorded settlement, in fen (its split is written by this node, so it
/// parses; zero otherwise).
fn fund_pay_fen(settlement: &pb::Settlement) -> u64 {
    settlement
        .split
        .as_ref()
        .and_then(|split| yitong_core::Amount::parse(&split.fund_pay).ok())
        .map_or(0, |amount| u64::try_from(amount.fen()).unwrap_or(0))
}

/// The fund pay a cancellation gave back, in fen: its split's fund pay, whichever sign it
/// is written with.
pub(super) fn fund_returned_fen(cancellation: &pb::Settlement) -> u64 {
    cancellation
        .split
        .as_ref()
        .and_then(|split| yitong_core::Amount::parse_signed(&split.fund_pay).ok())
        .map_or(0, |amount| amount.fen().unsigned_abs())
}

/// A settlement id whose intent is written (phase `pending`): what steps 2 to 4 work on.
#[derive(Debug, Clone)]
pub struct Intent {
    pub(super) row: SettlementRow,
    pub(super) reserve: pb::ReserveRequest,
    /// The settlement as the HIS will see it, less what steps 2 and 4 fill in.
    pub(super) draft: pb::Settlement,
}

impl Intent {
    pub fn settlement_id(&self) -> &str {
        &self.row.settlement_id
    }

    pub fn visit_id(&self) -> &str {
        &self.row.visit_id
    }
}

/// How step 1 of a Settle ended.
#[derive(Debug)]
pub enum Started {
    /// A new intent, to drive through steps 2 to 5.
    Intent(Box<Intent>),
    /// Another call claimed the message id first (it may still be in flight): its answer,
    /// once there, is this call's.
    Seen,
}

/// What one recovery sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Intents voided at the insured city, in the ledger and here.
    pub voided: u64,
    /// Recorded settlements posted at the insured city and in the ledger.
    pub completed: u64,
    /// Settlements still in doubt (a peer unreachable, a refusal); the next sweep tries again.
    pub left: u64,
}

impl RecoveryReport {
    pub fn is_empty(&self) -> bool {
        *self == RecoveryReport::default()
    }
}

/// The ledger transfer ids of a settlement id: UUIDs (version 8, custom) made from SHA-256 of
/// the settlement id and the transfer's role, so every retry and every node names the same
/// transfer. `posted` is the one booking of step 4 (and, for a settlement of a node before
/// issue 21, the fallback when its pending transfer expired before completion); `pending` is
/// such a node's booking before the record.
pub fn transfer_id(settlement_id: &str, role: &str) -> String {
    let hash = Sha256::digest(format!("yitong.settlement/{settlement_id}/{role}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

const PENDING_ROLE: &str = "pending";
const POSTED_ROLE: &str = "posted";

fn ledger_error(status: tonic::Status) -> TreatmentError {
    match TreatmentError::remote("ledger", status) {
        TreatmentError::Remote { status, .. } => {
            TreatmentError::Peer(format!("ledger refused: {}", status.message()))
        }
        other => other,
    }
}

/// The machine-readable reason of a peer's refusal (google.rpc.ErrorInfo), if it gave one.
fn error_reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason)
}

fn benefit_error(status: tonic::Status) -> TreatmentError {
    TreatmentError::remote("insured city's benefit service", status)
}

fn city(text: &str) -> Result<PoolCode, TreatmentError> {
    PoolCode::parse(text).map_err(|_| TreatmentError::Corrupt(format!("city {text:?}")))
}

impl SettlementNode {
    pub(super) fn accounts(&self, insured: &str) -> (String, String) {
        let advances = format!("{}.advances", self.city);
        let payer = if insured == self.city.to_string() {
            format!("{}.pool", self.city)
        } else {
            format!("{insured}->{}.obligation", self.city)
        };
        (advances, payer)
    }

    /// The first answer to an institution's Settle, CancelSettlement or ReverseByMessageId
    /// message id, read without claiming it: `None` when the id is fresh. A first call still in
    /// flight is waited for until `deadline`, then answered ABORTED (retry the same message
    /// id); one whose intent was voided is refused as voided, whoever replays it.
    pub(super) async fn first_answer(
        &self,
        institution: &InstitutionCode,
        message_id: &MessageId,
        rpc: &str,
        digest: &str,
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, TreatmentError> {
        let scope = super::scope(institution);
        loop {
            let mut conn = self.store.pool().acquire().await?;
            let Some(reply) =
                replies::peek_in(&mut conn, scope, message_id.as_str(), rpc, digest).await?
            else {
                return Ok(None);
            };
            if !reply.is_empty() {
                return Ok(Some(reply));
            }
            // Claimed and not answered: the intent under the id says how the first call went.
            let intent =
                repo::settlement_by_message(&mut conn, institution.as_str(), message_id.as_str())
                    .await?;
            drop(conn);
            if let Some(intent) = intent.filter(|intent| intent.phase.is_void()) {
                return Err(voided_refusal(&intent));
            }
            if Instant::now() + REPLAY_POLL >= deadline {
                return Err(TreatmentError::InProgress(format!(
                    "the first call under message id {message_id} is still in progress: send it again shortly"
                )));
            }
            tokio::time::sleep(REPLAY_POLL).await;
        }
    }

    /// The answer to a message id another call claimed first (and may still be running): its
    /// first answer, waited for as [`Self::first_answer`] waits.
    pub(super) async fn answer_of_claimed<R: Message + Default>(
        &self,
        institution: &InstitutionCode,
        message_id: &MessageId,
        rpc: &str,
        digest: &str,
        deadline: Instant,
    ) -> Result<R, TreatmentError> {
        let reply = self
            .first_answer(institution, message_id, rpc, digest, deadline)
            .await?
            .ok_or_else(|| TreatmentError::Corrupt("a claimed message id vanished".into()))?;
        decode_reply(&reply)
    }

    /// A new settlement (or cancellation) id of this city for today, handed out inside the
    /// caller's write transaction: `J`, the city, the date and a serial of the day.
    pub(super) async fn new_settlement_id(
        &self,
        tx: &mut AnyConnection,
    ) -> Result<(String, yitong_core::Date), TreatmentError> {
        let today = yitong_core::today();
        let prefix = self.settlement_prefix(today);
        let serial = repo::next_serial(tx, &prefix).await?;
        Ok((format!("{prefix}{serial:07}"), today))
    }

    /// The prefix of this city's settlement (and cancellation) ids of `day`, under which
    /// `id_serials` counts them.
    pub(super) fn settlement_prefix(&self, day: yitong_core::Date) -> String {
        format!("J{}{}", self.city, day.format("%y%m%d"))
    }

    /// Writes an intent inside the caller's write transaction; the sweep first looks at it once
    /// its grace period is over.
    pub(super) async fn write_intent(
        &self,
        tx: &mut AnyConnection,
        row: &SettlementRow,
    ) -> Result<(), TreatmentError> {
        repo::insert_intent(tx, row, row.created_at_ms + self.options.pending_grace_ms).await
    }

    /// Claims an institution's Settle message id inside `tx`: `Fresh` when claimed now. A dead
    /// id is refused; one claimed by another call is `Seen`, for [`Self::first_answer`].
    async fn claim_settle(
        &self,
        tx: &mut AnyConnection,
        institution: &InstitutionCode,
        message_id: &MessageId,
        digest: &str,
    ) -> Result<Claimed, TreatmentError> {
        let (code, id) = (institution.as_str(), message_id.as_str());
        if repo::is_dead(tx, code, id).await? {
            return Err(dead_refusal(message_id));
        }
        match replies::claim_in(tx, super::scope(institution), id, "Settle", digest).await {
            Ok(Claim::Fresh) => Ok(Claimed::Fresh),
            Ok(Claim::Replay(_)) => Ok(Claimed::Seen),
            Err(ReplyError::Conflict(_)) if repo::is_dead(tx, code, id).await? => {
                Err(dead_refusal(message_id))
            }
            Err(error) => Err(error.into()),
        }
    }

    pub(super) async fn settle(
        &self,
        input: SettleInput,
        digest: &str,
        deadline: Instant,
    ) -> Result<pb::SettleResponse, TreatmentError> {
        // A message id seen before is answered (or refused) before anything else is asked; a
        // fresh one is read, not claimed, here: the intent claims it.
        let message_id = &input.scope.message_id;
        let institution = &input.scope.institution;
        // A reversal kills an id by claiming it with a digest no Settle has: the claim and the
        // dead mark commit together, so a conflict is a dead id once the mark is read.
        let is_dead = || async {
            let mut conn = self.store.pool().acquire().await?;
            repo::is_dead(&mut conn, institution.as_str(), message_id.as_str()).await
        };
        if is_dead().await? {
            return Err(dead_refusal(message_id));
        }
        match self
            .first_answer(institution, message_id, "Settle", digest, deadline)
            .await
        {
            Ok(Some(reply)) => return decode_reply(&reply),
            Ok(None) => {}
            Err(TreatmentError::MessageConflict(_)) if is_dead().await? => {
                return Err(dead_refusal(message_id));
            }
            Err(error) => return Err(error),
        }
        // A refusal is counted whether it comes before the intent (a suspended person, a
        // visit already settled) or after it (the insured city's refusal), by its reason.
        let refused = |error: TreatmentError, insured_city: &str| {
            if let Some(reason) = error.refusal_reason() {
                yitong_telemetry::metrics().observe_refusal(&self.pair(insured_city), reason);
            }
            error
        };
        let asked_of = input.scope.person_no.insured_city().to_string();
        if let Err(error) = self.prepare(&input).await {
            return Err(refused(error, &asked_of));
        }
        let intent = match self.intend(&input, digest).await {
            Ok(Started::Seen) => {
                // Another call with this message id claimed it first: its answer is ours.
                return self
                    .answer_of_claimed(institution, message_id, "Settle", digest, deadline)
                    .await;
            }
            Ok(Started::Intent(intent)) => intent,
            Err(error) => return Err(refused(error, &asked_of)),
        };
        let insured_city = intent.row.insured_city.clone();
        let settlement = match self.drive(&intent).await {
            Ok(settlement) => settlement,
            Err(error) => return Err(refused(error, &insured_city)),
        };
        self.observe(&insured_city, "settled", fund_pay_fen(&settlement));
        // The HIS is answered with the record as it stands: completed now, or as recorded
        // when completion is left to the sweep.
        // The HIS is answered with the reply recorded under its message id, which a replay
        // returns too: completed by this call, or as recorded when completion is left to the
        // sweep (or was done by another actor, such as a reversal that cancelled it since: the
        // record moves on, the Settle's answer does not).
        if let Some(completed) = self.finish_completion(intent.settlement_id()).await {
            return Ok(pb::SettleResponse {
                settlement: Some(completed),
            });
        }
        let mut conn = self.store.pool().acquire().await?;
        let scope = super::scope(institution);
        match replies::peek_in(&mut conn, scope, message_id.as_str(), "Settle", digest).await? {
            Some(reply) if !reply.is_empty() => decode_reply(&reply),
            _ => Ok(pb::SettleResponse {
                settlement: Some(settlement),
            }),
        }
    }

    /// Counts one outcome of a Settle or a cancellation in the process's metrics.
    pub(super) fn observe(&self, insured_city: &str, outcome: &str, fund_pay_fen: u64) {
        yitong_telemetry::metrics().observe_settlement(
            &self.pair(insured_city),
            outcome,
            fund_pay_fen,
        );
    }

    /// Steps 2 and 3; any failure decides the void of the intent and is returned.
    pub(super) async fn drive(&self, intent: &Intent) -> Result<pb::Settlement, TreatmentError> {
        let attempt = async {
            let reservation = self.step_reserve(intent).await?;
            let transfer = self.booking(intent, &reservation)?;
            self.step_record(intent, &reservation, &transfer).await
        };
        match attempt.await {
            Ok(settlement) => Ok(settlement),
            Err(error) => {
                if let Err(void_error) = self
                    .void_intent(intent.settlement_id(), VOID_SETTLE_FAILED)
                    .await
                {
                    tracing::warn!(settlement_id = %intent.settlement_id(), error = %yitong_core::cause_chain(&void_error), "void after a failed settle did not finish; the sweep will");
                }
                Err(error)
            }
        }
    }

    /// Step 4 for a settlement just recorded: done now when the peers answer, else left to the
    /// sweep. The HIS is answered from the record either way: the settlement's record as
    /// completed by this call, when it completed a settlement.
    pub(super) async fn finish_completion(&self, settlement_id: &str) -> Option<pb::Settlement> {
        match self.complete(settlement_id).await {
            Ok(completed) => completed,
            Err(error) => {
                tracing::warn!(settlement_id, error = %yitong_core::cause_chain(&error), "completion failed; the recovery sweep retries it");
                if let Err(error) = self.attempt_failed(settlement_id, 0, &error).await {
                    tracing::warn!(settlement_id, error = %yitong_core::cause_chain(&error), "could not note the failed completion");
                }
                None
            }
        }
    }

    /// Step 1 of a Settle, from the wire request: for tests and crash drills that drive the
    /// steps one by one. Checks the request, the visit and the credential first.
    pub async fn step_intent(
        &self,
        request: &pb::SettleRequest,
    ) -> Result<Started, TreatmentError> {
        let write = self.prepare_intent(request).await?;
        self.book_write(write).await?.started()
    }

    pub(super) async fn intend(
        &self,
        input: &SettleInput,
        digest: &str,
    ) -> Result<Started, TreatmentError> {
        // An earlier Settle of this visit whose void is decided but not carried still holds
        // the person's benefit at the insured city: carry it first.
        self.carry_voids_of_visit(&input.scope.visit_id).await;
        self.write(Work::Intent {
            input: input.clone(),
            digest: digest.to_owned(),
        })
        .await?
        .started()
    }

    /// Step 1's one transaction, in the caller's (a group's): claims the message id, locks the
    /// visit, reads its lines again and writes the intent under a new settlement id.
    pub(super) async fn intend_locked(
        &self,
        tx: &mut AnyConnection,
        input: &SettleInput,
        digest: &str,
    ) -> Result<Started, TreatmentError> {
        let scope = &input.scope;
        if let Claimed::Seen = self
            .claim_settle(tx, &scope.institution, &scope.message_id, digest)
            .await?
        {
            return Ok(Started::Seen);
        }
        let visit = Self::check_visit(repo::lock_visit(tx, &scope.visit_id).await?, scope)?;
        Self::check_open(&visit)?;
        Self::check_not_in_flight(tx, &visit.visit_id).await?;
        // The lines are read again under the visit's lock: what was checked outside may have
        // changed since, and the claim must be exactly what the visit holds now.
        let lines = repo::live_lines(tx, &visit.visit_id).await?;
        let claim = Self::claim_of(&visit.visit_id, &lines, input.total_amount)?;
        let (settlement_id, today) = self.new_settlement_id(tx).await?;
        let registered: pb::Visit = decode(&visit.registered, "registered visit")?;
        let reserve = pb::ReserveRequest {
            message_id: scope.message_id.to_string(),
            settlement_id: settlement_id.clone(),
            kind: pb::ReservationKind::Settlement as i32,
            original_settlement_id: String::new(),
            claim: Some(self.benefit_claim(
                &visit,
                &claim,
                today,
                input.use_personal_account,
                &registered.disease_code,
            )),
            timeout_seconds: self.options.reservation_timeout_seconds,
        };
        // The clearing type follows the medical type (national clr_type 11, 14, 41).
        let clearing_type = match pb::MedicalType::try_from(registered.medical_type) {
            Ok(pb::MedicalType::Pharmacy) => ClearingType::Pharmacy,
            Ok(pb::MedicalType::ChronicDisease) => ClearingType::ChronicDisease,
            _ => ClearingType::Outpatient,
        };
        let draft = pb::Settlement {
            settlement_id: settlement_id.clone(),
            visit_id: visit.visit_id.clone(),
            person_no: visit.person_no.clone(),
            person_name: registered.person_name.clone(),
            insurance_type: registered.insurance_type,
            person_type: registered.person_type,
            insured_city: visit.insured_city.clone(),
            treatment_city: self.city.to_string(),
            institution_code: visit.institution_code.clone(),
            hospital_level: registered.hospital_level,
            medical_type: registered.medical_type,
            clearing_type: clearing_type as i32,
            clearing_agency: visit.insured_city.clone(),
            split: None,
            use_personal_account: input.use_personal_account,
            status: pb::SettlementStatus::Settled as i32,
            cancellation: None,
            message_id: scope.message_id.to_string(),
            settled_at: None,
            settlement_date: today.to_string(),
            completed_at: None,
            // The Settle's own trace (the HIS's, when it sent a traceparent), so an operator
            // goes from the settlement to every span of every city it touched.
            trace_id: yitong_telemetry::current_trace_id().unwrap_or_default(),
            operator_id: input.operator_id.clone(),
            // Read-time fields, never recorded.
            last_error: String::new(),
            completion_attempts: 0,
        };
        let row = SettlementRow {
            settlement_id,
            kind: Kind::Settlement,
            original_settlement_id: None,
            visit_id: visit.visit_id.clone(),
            institution_code: visit.institution_code.clone(),
            insured_city: visit.insured_city.clone(),
            person_no: visit.person_no.clone(),
            message_id: scope.message_id.to_string(),
            phase: Phase::Pending,
            reserve_request: encode(&reserve),
            settlement_date: today.to_string(),
            record: encode(&draft),
            created_at_ms: now_ms(),
            ..SettlementRow::default()
        };
        self.write_intent(tx, &row).await?;
        Ok(Started::Intent(Box::new(Intent {
            row,
            reserve,
            draft,
        })))
    }

    /// Step 2: the insured city holds the benefit change (or its reversal).
    pub async fn step_reserve(&self, intent: &Intent) -> Result<pb::Reservation, TreatmentError> {
        let mut benefit = self.benefit(city(&intent.row.insured_city)?)?;
        let voided = || {
            TreatmentError::refused(
                "SETTLEMENT_VOIDED",
                format!(
                    "settlement {} was voided before it was reserved",
                    intent.settlement_id()
                ),
            )
        };
        let reply = match benefit.reserve(intent.reserve.clone()).await {
            Ok(reply) => reply,
            // The void of this intent (a reversal, the sweep) reached the insured city first.
            Err(status) if error_reason(&status).as_deref() == Some("VOIDED_BEFORE_RESERVED") => {
                return Err(voided());
            }
            Err(status) => return Err(benefit_error(status)),
        };
        let reservation = reply
            .into_inner()
            .reservation
            .ok_or_else(|| TreatmentError::Peer("benefit answered without a reservation".into()))?;
        match pb::ReservationStatus::try_from(reservation.status) {
            Ok(pb::ReservationStatus::Reserved) => Ok(reservation),
            Ok(pb::ReservationStatus::Voided) => Err(voided()),
            _ => Err(TreatmentError::Peer(format!(
                "reservation {} is not held",
                intent.settlement_id()
            ))),
        }
    }

    /// The ledger transfer step 3 records and step 4 books, posted at once, from the
    /// reservation's binding split.
    pub fn booking(
        &self,
        intent: &Intent,
        reservation: &pb::Reservation,
    ) -> Result<ledger::Transfer, TreatmentError> {
        let pending = self.transfer(intent, reservation)?;
        Ok(posted(&intent.row.settlement_id, pending))
    }

    /// The pending ledger transfer of an intent, from its reservation's binding split, as nodes
    /// before issue 21 booked it before the record.
    pub(super) fn transfer(
        &self,
        intent: &Intent,
        reservation: &pb::Reservation,
    ) -> Result<ledger::Transfer, TreatmentError> {
        let split = reservation
            .split
            .as_ref()
            .ok_or_else(|| TreatmentError::Peer("reservation without a split".into()))?;
        let fund_pay = fen(&split.fund_pay, "fund pay")?;
        let account_pay = fen(&split.account_pay, "account pay")?;
        let cancellation = intent.row.kind == Kind::Cancellation;
        let pay = fund_pay
            .checked_add(account_pay)
            .ok_or_else(|| TreatmentError::Peer("split overflows".into()))?;
        let (advances, payer) = self.accounts(&intent.row.insured_city);
        let (debit, credit, code) = match cancellation {
            false => (advances, payer, TransferCode::Settlement),
            true => (payer, advances, TransferCode::Cancellation),
        };
        let draft = &intent.draft;
        let record = ledger::SettlementRecord {
            settlement_id: intent.row.settlement_id.clone(),
            message_id: intent.row.message_id.clone(),
            treatment_city: self.city.to_string(),
            insured_city: intent.row.insured_city.clone(),
            institution_code: intent.row.institution_code.clone(),
            visit_id: intent.row.visit_id.clone(),
            person_no: intent.row.person_no.clone(),
            insurance_type: draft.insurance_type,
            clearing_type: draft.clearing_type,
            settlement_date: intent.row.settlement_date.clone(),
            total_amount: split.total_amount.clone(),
            fund_pay: fund_pay.to_string(),
            account_pay: account_pay.to_string(),
            cash_pay: split.cash_pay.clone(),
            cancellation,
            original_settlement_id: intent
                .row
                .original_settlement_id
                .clone()
                .unwrap_or_default(),
            // The reservation's itemised fund pay, negated in a cancellation's split as its
            // fund pay is.
            fund_payments: split
                .fund_payments
                .iter()
                .map(|line| ledger::SettlementFundPayment {
                    fund_pay_type: line.fund_pay_type.clone(),
                    disease_code: line.disease_code.clone(),
                    amount: line.amount.clone(),
                })
                .collect(),
        };
        Ok(ledger::Transfer {
            id: transfer_id(&intent.row.settlement_id, PENDING_ROLE),
            debit_account_id: debit,
            credit_account_id: credit,
            amount: Amount::from_fen(pay.fen().abs()).to_string(),
            code: code as i32,
            flags: Some(TransferFlags {
                linked: false,
                pending: true,
            }),
            pending_timeout_seconds: self.options.transfer_timeout_seconds,
            settlement: Some(record),
            operator_id: String::new(),
        })
    }

    /// The step nodes before issue 21 took between Reserve and the record: the ledger records
    /// the pending transfer. No node takes it any more; it stays to make such nodes' rows in
    /// tests (a crash of one, its stored data carried on by an upgraded node), and completion
    /// still posts what it booked.
    pub async fn step_book(
        &self,
        intent: &Intent,
        reservation: &pb::Reservation,
    ) -> Result<ledger::Transfer, TreatmentError> {
        let transfer = self.transfer(intent, reservation)?;
        self.create(format!("{}-book", intent.settlement_id()), transfer.clone())
            .await?;
        Ok(transfer)
    }

    pub(super) async fn create(
        &self,
        message_id: String,
        transfer: ledger::Transfer,
    ) -> Result<(), TreatmentError> {
        let id = transfer.id.clone();
        let request = ledger::CreateTransfersRequest {
            message_id,
            transfers: vec![transfer],
        };
        let reply = self
            .ledger
            .clone()
            .create_transfers(request)
            .await
            .map_err(ledger_error)?
            .into_inner();
        match reply
            .results
            .first()
            .map(|outcome| CreateTransferResult::try_from(outcome.result))
        {
            Some(Ok(CreateTransferResult::Ok | CreateTransferResult::Exists)) => Ok(()),
            // The void of this settlement overtook the booking: it was voided while in flight.
            Some(Ok(CreateTransferResult::VoidedBeforeBooked)) => Err(TreatmentError::refused(
                "SETTLEMENT_VOIDED",
                format!("transfer {id} was voided before it was booked"),
            )),
            other => Err(TreatmentError::Peer(format!(
                "ledger did not create transfer {id}: {other:?}"
            ))),
        }
    }

    /// Step 3: the settlement (or cancellation) is recorded here, binding, with the HIS's reply
    /// and the transfer completion books ([`Self::booking`]; a node before issue 21 recorded
    /// the pending transfer it had booked).
    pub async fn step_record(
        &self,
        intent: &Intent,
        reservation: &pb::Reservation,
        transfer: &ledger::Transfer,
    ) -> Result<pb::Settlement, TreatmentError> {
        self.write(Work::Record {
            intent: Box::new(intent.clone()),
            reservation: Box::new(reservation.clone()),
            transfer: Box::new(transfer.clone()),
        })
        .await?
        .recorded()
    }

    /// Step 3's one transaction, in the caller's (a group's): under the visit's lock, the
    /// intent becomes the record, unless its void was decided first.
    pub(super) async fn record_locked(
        &self,
        tx: &mut AnyConnection,
        intent: &Intent,
        reservation: &pb::Reservation,
        transfer: &ledger::Transfer,
    ) -> Result<pb::Settlement, TreatmentError> {
        let split = reservation
            .split
            .clone()
            .ok_or_else(|| TreatmentError::Peer("reservation without a split".into()))?;
        let now = now_ms();
        let mut row = intent.row.clone();
        row.transfer = encode(transfer);
        row.total_fen = fen(&split.total_amount, "total")?.fen();
        row.fund_pay_fen = fen(&split.fund_pay, "fund pay")?.fen();
        row.account_pay_fen = fen(&split.account_pay, "account pay")?.fen();
        row.settled_at_ms = Some(now);
        let mut settlement = intent.draft.clone();
        let voided = || {
            TreatmentError::refused(
                "SETTLEMENT_VOIDED",
                format!(
                    "settlement {} was voided before it was recorded",
                    row.settlement_id
                ),
            )
        };
        let visit = repo::lock_visit(tx, &row.visit_id)
            .await?
            .ok_or_else(|| TreatmentError::Corrupt(format!("visit {} vanished", row.visit_id)))?;
        let reply = match row.kind {
            Kind::Settlement => {
                if visit.status != repo::VisitStatus::Open {
                    return Err(voided());
                }
                settlement.split = Some(split);
                settlement.settled_at = Some(timestamp(now));
                repo::set_visit_status(
                    tx,
                    &row.visit_id,
                    repo::VisitStatus::Settled,
                    Some(&row.settlement_id),
                )
                .await?;
                pb::SettleResponse {
                    settlement: Some(settlement.clone()),
                }
                .encode_to_vec()
            }
            Kind::Cancellation => {
                let original = row.original_settlement_id.clone().ok_or_else(|| {
                    TreatmentError::Corrupt("a cancellation without its original".into())
                })?;
                let cancellation = settlement.cancellation.as_mut().ok_or_else(|| {
                    TreatmentError::Corrupt("a cancellation draft without its cancellation".into())
                })?;
                cancellation.split = Some(split);
                cancellation.cancelled_at = Some(timestamp(now));
                let kind = cancellation.kind;
                repo::set_cancelled_by(tx, &original, &row.settlement_id).await?;
                repo::set_record(tx, &original, &encode(&settlement)).await?;
                repo::set_visit_status(tx, &row.visit_id, repo::VisitStatus::Open, None).await?;
                if kind == pb::CancellationKind::Reversal as i32 {
                    let outcome = pb::ReversalOutcome::Cancelled as i32;
                    pb::ReverseByMessageIdResponse {
                        outcome,
                        settlement: Some(settlement.clone()),
                    }
                    .encode_to_vec()
                } else {
                    pb::CancelSettlementResponse {
                        settlement: Some(settlement.clone()),
                    }
                    .encode_to_vec()
                }
            }
        };
        row.record = encode(&settlement);
        if !repo::record(tx, &row, now).await? {
            return Err(voided());
        }
        let scope = Scope::Institution(&row.institution_code);
        replies::record_in(tx, scope, &row.message_id, &reply).await?;
        Ok(settlement)
    }

    /// Step 4: posts the reservation and books the transfer posted (or posts the pending one a
    /// node before issue 21 booked); the settlement is then complete in all three places. Safe
    /// to repeat: every call in it is idempotent.
    pub async fn step_complete(&self, settlement_id: &str) -> Result<(), TreatmentError> {
        self.complete(settlement_id).await.map(|_| ())
    }

    /// Step 4; returns the record of a settlement (not a cancellation) it completed.
    pub(super) async fn complete(
        &self,
        settlement_id: &str,
    ) -> Result<Option<pb::Settlement>, TreatmentError> {
        let row = {
            let mut conn = self.store.pool().acquire().await?;
            repo::settlement(&mut conn, settlement_id)
                .await?
                .ok_or_else(|| TreatmentError::NotFound {
                    what: "settlement",
                    id: settlement_id.to_owned(),
                })?
        };
        match row.phase {
            Phase::Completed => return Ok(None),
            Phase::Recorded => {}
            Phase::Pending | Phase::Voiding | Phase::Voided => {
                return Err(TreatmentError::Corrupt(format!(
                    "settlement {settlement_id} is not recorded"
                )));
            }
        }
        let post = pb::PostRequest {
            message_id: format!("{settlement_id}-post"),
            settlement_id: settlement_id.to_owned(),
        };
        self.benefit(city(&row.insured_city)?)?
            .post(post)
            .await
            .map_err(benefit_error)?;
        let transfer: ledger::Transfer = decode(&row.transfer, "recorded transfer")?;
        if transfer.flags.as_ref().is_some_and(|flags| flags.pending) {
            self.post_pending(settlement_id, transfer).await?;
        } else {
            self.book_posted(settlement_id, transfer).await?;
        }
        self.write(Work::Complete { row: Box::new(row) })
            .await?
            .completed()
    }

    /// Step 4's last transaction, in the caller's (a group's): the settlement is `completed`,
    /// and a settlement's reply (not a cancellation's) says when. Returns the record of a
    /// settlement it completed; `None` when another actor completed it first.
    pub(super) async fn complete_locked(
        &self,
        tx: &mut AnyConnection,
        row: &SettlementRow,
    ) -> Result<Option<pb::Settlement>, TreatmentError> {
        let settlement_id = row.settlement_id.as_str();
        let now = now_ms();
        let mut completed = None;
        if repo::complete(tx, settlement_id, now).await? && row.kind == Kind::Settlement {
            // The HIS's answer says when completion happened; a replay of its Settle says the
            // same, so the recorded reply is brought up to date with the record.
            let mut settlement: pb::Settlement = decode(&row.record, "settlement record")?;
            settlement.completed_at = Some(timestamp(now));
            repo::set_record(tx, settlement_id, &encode(&settlement)).await?;
            let reply = pb::SettleResponse {
                settlement: Some(settlement.clone()),
            };
            let scope = Scope::Institution(&row.institution_code);
            replies::record_in(tx, scope, &row.message_id, &reply.encode_to_vec()).await?;
            completed = Some(settlement);
        }
        Ok(completed)
    }

    /// Books a recorded settlement's transfer in the ledger, posted at once: step 4's one
    /// booking, and the fallback of a pending transfer that lapsed. One request for both, under
    /// one message id, so whoever sends it (this node, a node before issue 21 completing the
    /// same row, a retry) sends the same and the ledger books it once.
    async fn book_posted(
        &self,
        settlement_id: &str,
        transfer: ledger::Transfer,
    ) -> Result<(), TreatmentError> {
        self.create(
            format!("{settlement_id}-repost"),
            posted(settlement_id, transfer),
        )
        .await
    }

    /// Posts the pending transfer a node before issue 21 booked for a settlement it recorded;
    /// when that transfer is gone (expired, or voided by a racing void) the settlement is
    /// recorded and must be paid, so it is booked again, posted.
    async fn post_pending(
        &self,
        settlement_id: &str,
        transfer: ledger::Transfer,
    ) -> Result<(), TreatmentError> {
        let pending = transfer_id(settlement_id, PENDING_ROLE);
        let request = ledger::PostPendingTransfersRequest {
            message_id: format!("{settlement_id}-post"),
            pending_transfer_ids: vec![pending.clone()],
        };
        let reply = self
            .ledger
            .clone()
            .post_pending_transfers(request)
            .await
            .map_err(ledger_error)?
            .into_inner();
        match reply
            .results
            .first()
            .map(|outcome| PendingTransferResult::try_from(outcome.result))
        {
            Some(Ok(
                PendingTransferResult::Ok | PendingTransferResult::PendingTransferAlreadyPosted,
            )) => Ok(()),
            Some(Ok(
                PendingTransferResult::PendingTransferExpired
                | PendingTransferResult::PendingTransferAlreadyVoided
                | PendingTransferResult::PendingTransferNotFound,
            )) => {
                tracing::warn!(
                    settlement_id,
                    "pending transfer lapsed before completion; booking it posted"
                );
                self.book_posted(settlement_id, transfer).await
            }
            other => Err(TreatmentError::Peer(format!(
                "ledger did not post transfer {pending}: {other:?}"
            ))),
        }
    }

    /// Undoes an intent that was never recorded: decides its void here first (`pending` to
    /// `voiding`, which a racing record cannot also win), then voids the reservation
    /// (tombstoning an id never reserved) and the pending transfer (the ledger tombstones an id
    /// never booked), then marks it `voided`. Idempotent; refused once the intent is recorded.
    pub async fn void_intent(
        &self,
        settlement_id: &str,
        reason: &str,
    ) -> Result<(), TreatmentError> {
        match self.decide_void(settlement_id, reason).await? {
            VoidDecision::Recorded => Err(TreatmentError::refused(
                "SETTLEMENT_RECORDED",
                format!("settlement {settlement_id} is recorded and cannot be voided"),
            )),
            VoidDecision::Void(row) => self.carry_void(&row).await,
        }
    }

    /// The void decision for an intent: the row as `voiding` (or `voided`, when decided
    /// before), or `Recorded` when a record won.
    pub(super) async fn decide_void(
        &self,
        settlement_id: &str,
        reason: &str,
    ) -> Result<VoidDecision, TreatmentError> {
        let mut tx = self.store.begin_write().await?;
        let row = repo::lock_settlement(&mut tx, settlement_id)
            .await?
            .ok_or_else(|| TreatmentError::NotFound {
                what: "settlement",
                id: settlement_id.to_owned(),
            })?;
        let row = match row.phase {
            Phase::Recorded | Phase::Completed => return Ok(VoidDecision::Recorded),
            Phase::Voiding | Phase::Voided => row,
            Phase::Pending => {
                let decided = repo::decide_void(&mut tx, settlement_id, reason, now_ms()).await?;
                assert!(decided, "a locked pending intent moves to voiding");
                SettlementRow {
                    phase: Phase::Voiding,
                    void_reason: reason.to_owned(),
                    ..row
                }
            }
        };
        tx.commit().await?;
        Ok(VoidDecision::Void(Box::new(row)))
    }

    /// Carries a decided void to the insured city and the ledger, with the reason decided
    /// once, so every attempt sends the same requests whoever sends them.
    pub(super) async fn carry_void(&self, row: &SettlementRow) -> Result<(), TreatmentError> {
        assert!(row.phase.is_void(), "only a decided void is carried");
        let settlement_id = row.settlement_id.as_str();
        let void = pb::VoidRequest {
            message_id: format!("{settlement_id}-void"),
            settlement_id: settlement_id.to_owned(),
            reason: row.void_reason.clone(),
        };
        self.benefit(city(&row.insured_city)?)?
            .void(void)
            .await
            .map_err(benefit_error)?;
        let pending = transfer_id(settlement_id, PENDING_ROLE);
        let request = ledger::VoidPendingTransfersRequest {
            message_id: format!("{settlement_id}-void"),
            pending_transfer_ids: vec![pending.clone()],
            reason: row.void_reason.clone(),
        };
        let reply = self
            .ledger
            .clone()
            .void_pending_transfers(request)
            .await
            .map_err(ledger_error)?
            .into_inner();
        if let Some(Ok(
            PendingTransferResult::PendingTransferAlreadyPosted
            | PendingTransferResult::PendingTransferNotPending,
        )) = reply
            .results
            .first()
            .map(|outcome| PendingTransferResult::try_from(outcome.result))
        {
            return Err(TreatmentError::Corrupt(format!(
                "transfer {pending} of unrecorded settlement {settlement_id} is posted"
            )));
        }
        let mut tx = self.store.begin_write().await?;
        repo::finish_void(&mut tx, settlement_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Carries the decided voids of the visit's intents now, rather than when the sweep next
    /// gets to them: a new Settle or cancellation of the visit waits for them
    /// ([`repo::in_flight`]), and is refused SETTLEMENT_IN_PROGRESS while one cannot be carried.
    pub(super) async fn carry_voids_of_visit(&self, visit_id: &str) {
        let rows = match self.store.pool().acquire().await {
            Ok(mut conn) => repo::voiding_of_visit(&mut conn, visit_id).await,
            Err(error) => Err(error.into()),
        };
        let rows = match rows {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(visit_id, error = %yitong_core::cause_chain(&error), "could not read the visit's voids");
                return;
            }
        };
        for row in rows {
            if let Err(error) = self.carry_void(&row).await {
                tracing::warn!(settlement_id = %row.settlement_id, error = %yitong_core::cause_chain(&error), "a decided void could not be carried; the sweep retries it");
                if let Err(error) = self
                    .attempt_failed(&row.settlement_id, row.attempts, &error)
                    .await
                {
                    tracing::warn!(settlement_id = %row.settlement_id, error = %yitong_core::cause_chain(&error), "could not note the failed void");
                }
            }
        }
    }

    /// Notes a failed attempt at a row in doubt and when the sweep may try it again: the
    /// delay doubles with each failure, up to [`SWEEP_BACKOFF_MAX_MS`].
    pub(super) async fn attempt_failed(
        &self,
        settlement_id: &str,
        attempts: i64,
        error: &TreatmentError,
    ) -> Result<(), TreatmentError> {
        let shift = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
        let delay = (self.options.sweep_interval_ms.max(1) as i64)
            .saturating_mul(1 << shift)
            .min(SWEEP_BACKOFF_MAX_MS);
        let mut conn = self.store.pool().acquire().await?;
        repo::attempt_failed(
            &mut conn,
            settlement_id,
            &error.to_string(),
            now_ms() + delay,
        )
        .await
    }

    /// Resolves every settlement left in doubt whose next attempt is due: pending intents past
    /// their grace period are voided in all three places, decided voids are carried to the
    /// peers, recorded settlements are completed. A row that fails is tried again later, after
    /// the others; what stays in doubt is counted in `yitong_settlements_in_doubt`. Run at
    /// start-up and periodically.
    pub async fn recover(&self) -> Result<RecoveryReport, TreatmentError> {
        let now = now_ms();
        let batch = self.options.sweep_batch_max;
        let (pending, voiding, recorded) = {
            let mut conn = self.store.pool().acquire().await?;
            (
                repo::due(&mut conn, Phase::Pending, now, batch).await?,
                repo::due(&mut conn, Phase::Voiding, now, batch).await?,
                repo::due(&mut conn, Phase::Recorded, now, batch).await?,
            )
        };
        let mut report = RecoveryReport::default();
        for row in pending.into_iter().chain(voiding) {
            let outcome = match row.phase {
                Phase::Pending => self.void_intent(&row.settlement_id, VOID_SWEPT).await,
                _ => self.carry_void(&row).await,
            };
            match outcome {
                Ok(()) => report.voided += 1,
                // A Settle still driving its intent recorded it after all: complete it.
                Err(TreatmentError::Refused {
                    reason: "SETTLEMENT_RECORDED",
                    ..
                }) => {}
                Err(error) => {
                    report.left += 1;
                    tracing::warn!(settlement_id = %row.settlement_id, error = %yitong_core::cause_chain(&error), "recovery could not void");
                    self.attempt_failed(&row.settlement_id, row.attempts, &error)
                        .await?;
                }
            }
        }
        for row in recorded {
            match self.step_complete(&row.settlement_id).await {
                Ok(()) => report.completed += 1,
                Err(error) => {
                    report.left += 1;
                    tracing::warn!(settlement_id = %row.settlement_id, error = %yitong_core::cause_chain(&error), "recovery could not complete");
                    self.attempt_failed(&row.settlement_id, row.attempts, &error)
                        .await?;
                }
            }
        }
        // Everything still in doubt, not only this batch's failures, so an operator sees a
        // backlog the batch limit hides.
        let in_doubt = {
            let mut conn = self.store.pool().acquire().await?;
            repo::in_doubt(&mut conn, now_ms()).await?
        };
        yitong_telemetry::metrics()
            .settlements_in_doubt
            .get_or_create(&yitong_telemetry::PoolLabels {
                city: self.host_city.to_string(),
                pool: self.city.to_string(),
            })
            .set(in_doubt);
        Ok(report)
    }
}

/// The void reasons, one per actor that decides a void: each is decided once per settlement
/// id and then sent unchanged with every void of it.
const VOID_SETTLE_FAILED: &str = "settle failed before it was recorded";
const VOID_SWEPT: &str = "left pending; voided by the recovery sweep";
pub(super) const VOID_REVERSED: &str = "reversed by message id";
/// How often a replay looks again at a first call still in flight.
const REPLAY_POLL: Duration = Duration::from_millis(25);
/// Longest wait of the sweep before it tries a failing row again, in milliseconds.
pub const SWEEP_BACKOFF_MAX_MS: i64 = 60_000;

pub(super) fn dead_refusal(message_id: &MessageId) -> TreatmentError {
    TreatmentError::refused(
        "MESSAGE_ID_DEAD",
        format!("message id {message_id} was reversed: settle again under a new message id"),
    )
}

/// How a first call whose intent was voided is answered to every replay.
pub(super) fn voided_refusal(intent: &SettlementRow) -> TreatmentError {
    match intent.kind {
        Kind::Settlement => TreatmentError::refused(
            "SETTLEMENT_VOIDED",
            format!(
                "the settle under message id {} failed and was voided: settle again under a new message id",
                intent.message_id
            ),
        ),
        Kind::Cancellation => TreatmentError::refused(
            "CANCELLATION_VOIDED",
            format!(
                "the cancellation under message id {} failed and was voided: send it again under a new message id",
                intent.message_id
            ),
        ),
    }
}

/// A settlement's transfer as booked posted at once: the `posted` role's id, no pending flag,
/// no timeout. Everything else is the transfer as built from the reservation, so a pending
/// transfer recorded by a node before issue 21 becomes exactly the request step 4 sends.
fn posted(settlement_id: &str, transfer: ledger::Transfer) -> ledger::Transfer {
    ledger::Transfer {
        id: transfer_id(settlement_id, POSTED_ROLE),
        flags: Some(TransferFlags {
            linked: false,
            pending: false,
        }),
        pending_timeout_seconds: 0,
        ..transfer
    }
}

/// A Settle's claim of its message id.
enum Claimed {
    Fresh,
    /// Another call claimed it first.
    Seen,
}

/// Where a void decision left an intent.
pub(super) enum VoidDecision {
    /// A record won: the intent is a settlement now.
    Recorded,
    /// Decided void (now or before): the row as `voiding` or `voided`.
    Void(Box<SettlementRow>),
}
