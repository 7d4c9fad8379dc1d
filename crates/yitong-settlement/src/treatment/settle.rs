//! The cross-city Settle, its cancellation and reversal, as steps a crash can fall between, and
//! the recovery sweep that resolves whatever a crash left in doubt.
//!
//! One Settle (or cancellation) moves its settlement id through these phases, each written by
//! exactly one step:
//!
//! 1. [`SettlementNode::step_intent`]: in one local write transaction, claim the HIS's message id
//!    and write the INTENT (phase PENDING) under a new settlement id, with the claim to reserve.
//! 2. [`SettlementNode::step_reserve`]: the insured city's BenefitService.Reserve (idempotent per
//!    settlement id; a replay returns the reservation as it stands).
//! 3. [`SettlementNode::step_book`]: the ledger's pending SETTLEMENT (or CANCELLATION) transfer,
//!    under a UUID derived from the settlement id, so a retry creates nothing twice.
//! 4. [`SettlementNode::step_record`]: in one local write transaction, the binding split, the
//!    visit's new state and the HIS's reply (phase RECORDED). From here the settlement exists.
//! 5. [`SettlementNode::step_complete`]: post the reservation and the transfer (phase COMPLETED).
//!
//! A failure before step 4 voids the reservation (a Void of an id never reserved tombstones it)
//! and the pending transfer, and the intent becomes VOIDED: [`SettlementNode::void_intent`].
//! After step 4, completion is retried until done. The sweep ([`SettlementNode::recover`]) voids
//! PENDING intents older than a grace period and completes RECORDED ones, so a node that crashed
//! anywhere resumes correctly when it starts again. A crash test aborts between any two steps
//! (each is one call here) and runs `recover`: every settlement then ends complete in all three
//! places or voided in all three.

use prost::Message;
use sha2::{Digest, Sha256};
use yitong_core::{Amount, CityCode, Invalid, MessageId};
use yitong_proto::ledger::v1::{
    self as ledger, ClearingType, CreateTransferResult, PendingTransferResult, TransferCode,
    TransferFlags,
};
use yitong_proto::settlement::v1 as pb;
use yitong_store::now_ms;
use yitong_store::replies::{self, Claim, ReplyError};

use super::repo::{self, KIND_CANCELLATION, KIND_SETTLEMENT, SettlementRow};
use super::request::{CancelInput, ReverseInput, SettleInput};
use super::{
    COMPLETED, PENDING, RECORDED, SettlementNode, TreatmentError, VOIDED, decode, decode_reply,
    encode, fen, timestamp,
};

/// The fund pay of a recorded settlement, in fen (its split is written by this node, so it
/// parses; zero otherwise).
fn fund_pay_fen(settlement: &pb::Settlement) -> u64 {
    settlement
        .split
        .as_ref()
        .and_then(|split| yitong_core::Amount::parse(&split.fund_pay).ok())
        .map_or(0, |amount| u64::try_from(amount.fen()).unwrap_or(0))
}

/// A settlement id whose intent is written (phase PENDING): what steps 2 to 4 work on.
#[derive(Debug, Clone)]
pub struct Intent {
    row: SettlementRow,
    reserve: pb::ReserveRequest,
    /// The settlement as the HIS will see it, less what steps 2 and 4 fill in.
    draft: pb::Settlement,
}

impl Intent {
    pub fn settlement_id(&self) -> &str {
        &self.row.settlement_id
    }
}

/// How step 1 of a Settle ended.
#[derive(Debug)]
pub enum Started {
    /// The message id was answered before: the first answer.
    Answered(Box<pb::SettleResponse>),
    /// A new intent, to drive through steps 2 to 5.
    Intent(Box<Intent>),
}

/// What one recovery sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// PENDING intents voided at the insured city, in the ledger and here.
    pub voided: u64,
    /// RECORDED settlements posted at the insured city and in the ledger.
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
/// transfer. `posted` is the fallback when the pending transfer expired before completion.
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

fn benefit_error(status: tonic::Status) -> TreatmentError {
    TreatmentError::remote("insured city's benefit service", status)
}

fn city(text: &str) -> Result<CityCode, TreatmentError> {
    CityCode::parse(text).map_err(|_| TreatmentError::Corrupt(format!("city {text:?}")))
}

impl SettlementNode {
    fn accounts(&self, insured: &str) -> (String, String) {
        let advances = format!("{}.advances", self.city);
        let payer = if insured == self.city.to_string() {
            format!("{}.pool", self.city)
        } else {
            format!("{insured}->{}.obligation", self.city)
        };
        (advances, payer)
    }

    /// Looks at what a Settle's message id has done before, inside `tx`: `None` when fresh and
    /// now claimed. A dead id, a Settle still in flight or one that failed are refused.
    async fn claim_settle(
        &self,
        tx: &mut yitong_store::sqlx::AnyConnection,
        message_id: &MessageId,
        digest: &str,
    ) -> Result<Option<pb::SettleResponse>, TreatmentError> {
        let dead = || {
            TreatmentError::refused(
                "MESSAGE_ID_DEAD",
                format!(
                    "message id {message_id} was reversed: settle again under a new message id"
                ),
            )
        };
        if repo::is_dead(tx, message_id.as_str()).await? {
            return Err(dead());
        }
        match replies::claim(tx, message_id.as_str(), "Settle", digest).await {
            Ok(Claim::Fresh) => Ok(None),
            Ok(Claim::Replay(bytes)) if !bytes.is_empty() => Ok(Some(decode_reply(&bytes)?)),
            Ok(Claim::Replay(_)) => {
                match repo::settlement_by_message(tx, message_id.as_str()).await? {
                    Some(row) if row.phase == VOIDED => Err(TreatmentError::refused(
                        "SETTLEMENT_VOIDED",
                        format!(
                            "the settle under message id {message_id} failed and was voided: settle again under a new message id"
                        ),
                    )),
                    _ => Err(TreatmentError::refused(
                        "SETTLEMENT_IN_PROGRESS",
                        format!("the settle under message id {message_id} is in progress"),
                    )),
                }
            }
            Err(ReplyError::Conflict(_)) if repo::is_dead(tx, message_id.as_str()).await? => {
                Err(dead())
            }
            Err(error) => Err(error.into()),
        }
    }

    pub(super) async fn settle(
        &self,
        input: SettleInput,
        digest: &str,
    ) -> Result<pb::SettleResponse, TreatmentError> {
        // A message id seen before is answered (or refused) before anything else is asked; a
        // fresh one is read, not claimed, here: the intent claims it.
        let message_id = &input.scope.message_id;
        let mut seen = !matches!(self.peek(message_id, "Settle", digest).await, Ok(None));
        if !seen {
            let mut conn = self.store.pool().acquire().await?;
            seen = repo::is_dead(&mut conn, message_id.as_str()).await?;
        }
        if seen {
            let mut tx = self.store.begin_write().await?;
            if let Some(answer) = self
                .claim_settle(&mut tx, &input.scope.message_id, digest)
                .await?
            {
                return Ok(answer);
            }
            tx.rollback().await?;
        }
        self.prepare(&input).await?;
        let intent = match self.intend(&input, digest).await? {
            Started::Answered(answer) => return Ok(*answer),
            Started::Intent(intent) => intent,
        };
        let insured_city = intent.row.insured_city.clone();
        let settlement = match self.drive(&intent).await {
            Ok(settlement) => settlement,
            Err(error) => {
                self.observe(&insured_city, "refused", 0);
                return Err(error);
            }
        };
        self.observe(&insured_city, "settled", fund_pay_fen(&settlement));
        // The HIS is answered with the record as it stands: completed now, or as recorded
        // when completion is left to the sweep.
        let settlement = match self.finish_completion(intent.settlement_id()).await {
            Some(completed) => completed,
            None => {
                let mut conn = self.store.pool().acquire().await?;
                let row = repo::settlement(&mut conn, intent.settlement_id())
                    .await?
                    .ok_or_else(|| {
                        TreatmentError::Corrupt("a recorded settlement vanished".into())
                    })?;
                decode(&row.record, "settlement record")?
            }
        };
        Ok(pb::SettleResponse {
            settlement: Some(settlement),
        })
    }

    /// Counts one outcome of a Settle or a cancellation in the process's metrics.
    fn observe(&self, insured_city: &str, outcome: &str, fund_pay_fen: u64) {
        yitong_telemetry::metrics().observe_settlement(
            &self.city.to_string(),
            insured_city,
            outcome,
            fund_pay_fen,
        );
    }

    /// Steps 2 to 4; any failure voids the intent and is returned.
    async fn drive(&self, intent: &Intent) -> Result<pb::Settlement, TreatmentError> {
        let attempt = async {
            let reservation = self.step_reserve(intent).await?;
            let transfer = self.step_book(intent, &reservation).await?;
            self.step_record(intent, &reservation, &transfer).await
        };
        match attempt.await {
            Ok(settlement) => Ok(settlement),
            Err(error) => {
                if let Err(void_error) = self
                    .void_intent(
                        intent.settlement_id(),
                        "settle failed before it was recorded",
                    )
                    .await
                {
                    tracing::warn!(settlement_id = %intent.settlement_id(), error = %yitong_core::cause_chain(&void_error), "void after a failed settle did not finish; the sweep will");
                }
                Err(error)
            }
        }
    }

    /// Step 5 for a settlement just recorded: done now when the peers answer, else left to the
    /// sweep. The HIS is answered from the record either way: the settlement's record as
    /// completed by this call, when it completed a settlement.
    async fn finish_completion(&self, settlement_id: &str) -> Option<pb::Settlement> {
        match self.complete(settlement_id).await {
            Ok(completed) => completed,
            Err(error) => {
                tracing::warn!(settlement_id, error = %yitong_core::cause_chain(&error), "completion failed; the recovery sweep retries it");
                if let Ok(mut conn) = self.store.pool().acquire().await {
                    let _ =
                        repo::set_last_error(&mut conn, settlement_id, &error.to_string()).await;
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
        let input = SettleInput::try_from(request)?;
        self.prepare(&input).await?;
        self.intend(&input, &super::digest(request)).await
    }

    async fn intend(&self, input: &SettleInput, digest: &str) -> Result<Started, TreatmentError> {
        let scope = &input.scope;
        let mut tx = self.store.begin_write().await?;
        if let Some(answer) = self
            .claim_settle(&mut tx, &scope.message_id, digest)
            .await?
        {
            return Ok(Started::Answered(Box::new(answer)));
        }
        let visit = Self::check_visit(repo::lock_visit(&mut tx, &scope.visit_id).await?, scope)?;
        Self::check_open(&visit)?;
        Self::check_not_in_flight(&mut tx, &visit.visit_id).await?;
        // The lines are read again under the visit's lock: what was checked outside may have
        // changed since, and the claim must be exactly what the visit holds now.
        let lines = repo::live_lines(&mut tx, &visit.visit_id).await?;
        let claim = Self::claim_of(&visit.visit_id, &lines, input.total_amount)?;
        let today = yitong_core::today();
        let prefix = format!("J{}{}", self.city, today.format("%y%m%d"));
        let serial = repo::next_serial(&mut tx, &prefix).await?;
        let settlement_id = format!("{prefix}{serial:07}");
        let reserve = pb::ReserveRequest {
            message_id: scope.message_id.to_string(),
            settlement_id: settlement_id.clone(),
            kind: pb::ReservationKind::Settlement as i32,
            original_settlement_id: String::new(),
            claim: Some(self.benefit_claim(&visit, &claim, today, input.use_personal_account)),
            timeout_seconds: self.options.reservation_timeout_seconds,
        };
        let registered: pb::Visit = decode(&visit.registered, "registered visit")?;
        let clearing_type = match pb::MedicalType::try_from(registered.medical_type) {
            Ok(pb::MedicalType::Pharmacy) => ClearingType::Pharmacy,
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
        };
        let row = SettlementRow {
            settlement_id,
            kind: KIND_SETTLEMENT,
            original_settlement_id: None,
            visit_id: visit.visit_id.clone(),
            institution_code: visit.institution_code.clone(),
            insured_city: visit.insured_city.clone(),
            person_no: visit.person_no.clone(),
            message_id: scope.message_id.to_string(),
            phase: PENDING,
            reserve_request: encode(&reserve),
            settlement_date: today.to_string(),
            record: encode(&draft),
            created_at_ms: now_ms(),
            ..SettlementRow::default()
        };
        repo::insert_intent(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(Started::Intent(Box::new(Intent {
            row,
            reserve,
            draft,
        })))
    }

    /// Step 2: the insured city holds the benefit change (or its reversal).
    pub async fn step_reserve(&self, intent: &Intent) -> Result<pb::Reservation, TreatmentError> {
        let mut benefit = self.benefit(city(&intent.row.insured_city)?)?;
        let reply = benefit
            .reserve(intent.reserve.clone())
            .await
            .map_err(benefit_error)?;
        let reservation = reply
            .into_inner()
            .reservation
            .ok_or_else(|| TreatmentError::Peer("benefit answered without a reservation".into()))?;
        match pb::ReservationStatus::try_from(reservation.status) {
            Ok(pb::ReservationStatus::Reserved) => Ok(reservation),
            _ => Err(TreatmentError::Peer(format!(
                "reservation {} is not held",
                intent.settlement_id()
            ))),
        }
    }

    /// The pending ledger transfer of an intent, from its reservation's binding split.
    fn transfer(
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
        let cancellation = intent.row.kind == KIND_CANCELLATION;
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

    /// Step 3: the ledger records the pending transfer.
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

    async fn create(
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
            other => Err(TreatmentError::Peer(format!(
                "ledger did not create transfer {id}: {other:?}"
            ))),
        }
    }

    /// Step 4: the settlement (or cancellation) is recorded here, binding, with the HIS's reply.
    pub async fn step_record(
        &self,
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
        let mut tx = self.store.begin_write().await?;
        let visit = repo::lock_visit(&mut tx, &row.visit_id)
            .await?
            .ok_or_else(|| TreatmentError::Corrupt(format!("visit {} vanished", row.visit_id)))?;
        let reply = match row.kind {
            KIND_SETTLEMENT => {
                if visit.status != repo::VISIT_OPEN {
                    return Err(voided());
                }
                settlement.split = Some(split);
                settlement.settled_at = Some(timestamp(now));
                repo::set_visit_status(
                    &mut tx,
                    &row.visit_id,
                    repo::VISIT_SETTLED,
                    Some(&row.settlement_id),
                )
                .await?;
                pb::SettleResponse {
                    settlement: Some(settlement.clone()),
                }
                .encode_to_vec()
            }
            _ => {
                let original = row.original_settlement_id.clone().ok_or_else(|| {
                    TreatmentError::Corrupt("a cancellation without its original".into())
                })?;
                let cancellation = settlement.cancellation.as_mut().ok_or_else(|| {
                    TreatmentError::Corrupt("a cancellation draft without its cancellation".into())
                })?;
                cancellation.split = Some(split);
                cancellation.cancelled_at = Some(timestamp(now));
                let kind = cancellation.kind;
                repo::set_cancelled_by(&mut tx, &original, &row.settlement_id).await?;
                repo::set_record(&mut tx, &original, &encode(&settlement)).await?;
                repo::set_visit_status(&mut tx, &row.visit_id, repo::VISIT_OPEN, None).await?;
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
        if !repo::record(&mut tx, &row).await? {
            return Err(voided());
        }
        replies::record(&mut tx, &row.message_id, &reply).await?;
        tx.commit().await?;
        Ok(settlement)
    }

    /// Step 5: posts the reservation and the transfer; the settlement is then complete in all
    /// three places. Safe to repeat: every call in it is idempotent.
    pub async fn step_complete(&self, settlement_id: &str) -> Result<(), TreatmentError> {
        self.complete(settlement_id).await.map(|_| ())
    }

    /// Step 5; returns the record of a settlement (not a cancellation) it completed.
    async fn complete(
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
            COMPLETED => return Ok(None),
            RECORDED => {}
            _ => {
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
            )) => {}
            // The pending transfer is gone (expired, or voided by a racing void): the
            // settlement is recorded and must be paid, so book it again, posted.
            Some(Ok(
                PendingTransferResult::PendingTransferExpired
                | PendingTransferResult::PendingTransferAlreadyVoided
                | PendingTransferResult::PendingTransferNotFound,
            )) => {
                let mut transfer: ledger::Transfer = decode(&row.transfer, "recorded transfer")?;
                transfer.id = transfer_id(settlement_id, POSTED_ROLE);
                transfer.flags = Some(TransferFlags {
                    linked: false,
                    pending: false,
                });
                transfer.pending_timeout_seconds = 0;
                tracing::warn!(
                    settlement_id,
                    "pending transfer lapsed before completion; booking it posted"
                );
                self.create(format!("{settlement_id}-repost"), transfer)
                    .await?;
            }
            other => {
                return Err(TreatmentError::Peer(format!(
                    "ledger did not post transfer {pending}: {other:?}"
                )));
            }
        }
        let now = now_ms();
        let mut tx = self.store.begin_write().await?;
        let mut completed = None;
        if repo::complete(&mut tx, settlement_id, now).await? && row.kind == KIND_SETTLEMENT {
            // The HIS's answer says when completion happened; a replay of its Settle says the
            // same, so the recorded reply is brought up to date with the record.
            let mut settlement: pb::Settlement = decode(&row.record, "settlement record")?;
            settlement.completed_at = Some(timestamp(now));
            repo::set_record(&mut tx, settlement_id, &encode(&settlement)).await?;
            let reply = pb::SettleResponse {
                settlement: Some(settlement.clone()),
            };
            replies::record(&mut tx, &row.message_id, &reply.encode_to_vec()).await?;
            completed = Some(settlement);
        }
        tx.commit().await?;
        Ok(completed)
    }

    /// Undoes an intent that was never recorded: voids the reservation (tombstoning an id never
    /// reserved) and the pending transfer, then marks it VOIDED. Idempotent.
    pub async fn void_intent(
        &self,
        settlement_id: &str,
        reason: &str,
    ) -> Result<(), TreatmentError> {
        let row = {
            let mut conn = self.store.pool().acquire().await?;
            repo::settlement(&mut conn, settlement_id)
                .await?
                .ok_or_else(|| TreatmentError::NotFound {
                    what: "settlement",
                    id: settlement_id.to_owned(),
                })?
        };
        // A VOIDED intent is voided again at the peers: a Settle still in flight when a reversal
        // voided it may have reserved or booked since, and every void is idempotent.
        if !matches!(row.phase, PENDING | VOIDED) {
            return Err(TreatmentError::Corrupt(format!(
                "settlement {settlement_id} is recorded and cannot be voided"
            )));
        }
        let void = pb::VoidRequest {
            message_id: format!("{settlement_id}-void"),
            settlement_id: settlement_id.to_owned(),
            reason: reason.to_owned(),
        };
        self.benefit(city(&row.insured_city)?)?
            .void(void)
            .await
            .map_err(benefit_error)?;
        let pending = transfer_id(settlement_id, PENDING_ROLE);
        let request = ledger::VoidPendingTransfersRequest {
            message_id: format!("{settlement_id}-void"),
            pending_transfer_ids: vec![pending.clone()],
            reason: reason.to_owned(),
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
        repo::move_phase(&mut tx, settlement_id, PENDING, VOIDED).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Resolves every settlement left in doubt: PENDING intents older than the grace period are
    /// voided in all three places, RECORDED ones are completed. Run at start-up and periodically.
    pub async fn recover(&self) -> Result<RecoveryReport, TreatmentError> {
        let now = now_ms();
        let (pending, recorded) = {
            let mut conn = self.store.pool().acquire().await?;
            let pending = repo::in_phase(
                &mut conn,
                PENDING,
                now - self.options.pending_grace_ms,
                self.options.sweep_batch_max,
            )
            .await?;
            let recorded =
                repo::in_phase(&mut conn, RECORDED, i64::MAX, self.options.sweep_batch_max).await?;
            (pending, recorded)
        };
        let mut report = RecoveryReport::default();
        for row in pending {
            match self
                .void_intent(
                    &row.settlement_id,
                    "left pending; voided by the recovery sweep",
                )
                .await
            {
                Ok(()) => report.voided += 1,
                Err(error) => {
                    report.left += 1;
                    tracing::warn!(settlement_id = %row.settlement_id, error = %yitong_core::cause_chain(&error), "recovery could not void");
                    let mut conn = self.store.pool().acquire().await?;
                    repo::set_last_error(&mut conn, &row.settlement_id, &error.to_string()).await?;
                }
            }
        }
        for row in recorded {
            match self.step_complete(&row.settlement_id).await {
                Ok(()) => report.completed += 1,
                Err(error) => {
                    report.left += 1;
                    tracing::warn!(settlement_id = %row.settlement_id, error = %yitong_core::cause_chain(&error), "recovery could not complete");
                    let mut conn = self.store.pool().acquire().await?;
                    repo::set_last_error(&mut conn, &row.settlement_id, &error.to_string()).await?;
                }
            }
        }
        // What the sweep could not resolve stays in doubt until a later sweep does.
        yitong_telemetry::metrics()
            .settlements_in_doubt
            .get_or_create(&yitong_telemetry::CityLabels {
                city: self.city.to_string(),
            })
            .set(i64::try_from(report.left).unwrap_or(i64::MAX));
        Ok(report)
    }

    // ---- Cancellation and reversal -------------------------------------------------------

    pub(super) async fn cancel_settlement(
        &self,
        input: CancelInput,
        digest: &str,
    ) -> Result<pb::CancelSettlementResponse, TreatmentError> {
        if let Some(reply) = self
            .peek(&input.message_id, "CancelSettlement", digest)
            .await?
        {
            return decode_reply(&reply);
        }
        let original = {
            let mut conn = self.store.pool().acquire().await?;
            repo::settlement(&mut conn, &input.settlement_id).await?
        };
        let original = original
            .filter(|row| row.kind == KIND_SETTLEMENT && matches!(row.phase, RECORDED | COMPLETED))
            .ok_or_else(|| TreatmentError::NotFound {
                what: "settlement",
                id: input.settlement_id.clone(),
            })?;
        if original.institution_code != input.institution.as_str() {
            return Err(TreatmentError::NotYours {
                what: "settlement",
                id: original.settlement_id,
            });
        }
        if original.visit_id != input.visit_id {
            return Err(Invalid::new("visit_id", "is not the settlement's visit").into());
        }
        if original.person_no != input.person_no.as_str() {
            return Err(Invalid::new("person_no", "is not the settlement's person").into());
        }
        let request = CancelRequest {
            message_id: input.message_id.clone(),
            rpc: "CancelSettlement",
            digest: digest.to_owned(),
            kind: pb::CancellationKind::CancelSettlement,
            reason: input.reason.clone(),
            operator_id: input.operator_id.clone(),
        };
        match self.cancel(&original, request).await? {
            Cancelled::Replay(bytes) => decode_reply(&bytes),
            Cancelled::Done(settlement) => {
                self.observe(&original.insured_city, "cancelled", 0);
                Ok(pb::CancelSettlementResponse {
                    settlement: Some(*settlement),
                })
            }
        }
    }

    /// Cancels a recorded settlement with new entries everywhere: an intent for a cancellation
    /// id, the insured city's CANCELLATION reservation, the ledger's mirror transfer, the record
    /// here, then both posted. The same steps as a Settle.
    async fn cancel(
        &self,
        original: &SettlementRow,
        request: CancelRequest,
    ) -> Result<Cancelled, TreatmentError> {
        // The insured city reverses only a posted settlement: finish the original first.
        if original.phase == RECORDED {
            self.step_complete(&original.settlement_id).await?;
        }
        let intent = {
            let mut tx = self.store.begin_write().await?;
            match replies::claim(
                &mut tx,
                request.message_id.as_str(),
                request.rpc,
                &request.digest,
            )
            .await?
            {
                Claim::Replay(bytes) => return Ok(Cancelled::Replay(bytes)),
                Claim::Fresh => {}
            }
            let original = repo::lock_settlement(&mut tx, &original.settlement_id)
                .await?
                .ok_or_else(|| TreatmentError::Corrupt("a settlement vanished".into()))?;
            if let Some(by) = &original.cancelled_by {
                return Err(TreatmentError::refused(
                    "ALREADY_CANCELLED",
                    format!(
                        "settlement {} is already cancelled by {by}",
                        original.settlement_id
                    ),
                ));
            }
            Self::check_not_in_flight(&mut tx, &original.visit_id).await?;
            if original.phase != COMPLETED {
                return Err(TreatmentError::Unavailable {
                    service: "completion of the original settlement",
                    status: tonic::Status::unavailable("not complete"),
                });
            }
            let today = yitong_core::today();
            let prefix = format!("J{}{}", self.city, today.format("%y%m%d"));
            let serial = repo::next_serial(&mut tx, &prefix).await?;
            let cancellation_id = format!("{prefix}{serial:07}");
            let reserve = pb::ReserveRequest {
                message_id: request.message_id.to_string(),
                settlement_id: cancellation_id.clone(),
                kind: pb::ReservationKind::Cancellation as i32,
                original_settlement_id: original.settlement_id.clone(),
                claim: None,
                timeout_seconds: self.options.reservation_timeout_seconds,
            };
            let mut draft: pb::Settlement = decode(&original.record, "settlement record")?;
            draft.status = pb::SettlementStatus::Cancelled as i32;
            draft.cancellation = Some(pb::Cancellation {
                cancellation_id: cancellation_id.clone(),
                kind: request.kind as i32,
                message_id: request.message_id.to_string(),
                cancelled_at: None,
                cancellation_date: today.to_string(),
                reason: request.reason.clone(),
                operator_id: request.operator_id.clone(),
                split: None,
            });
            let row = SettlementRow {
                settlement_id: cancellation_id,
                kind: KIND_CANCELLATION,
                original_settlement_id: Some(original.settlement_id.clone()),
                visit_id: original.visit_id.clone(),
                institution_code: original.institution_code.clone(),
                insured_city: original.insured_city.clone(),
                person_no: original.person_no.clone(),
                message_id: request.message_id.to_string(),
                phase: PENDING,
                reserve_request: encode(&reserve),
                settlement_date: today.to_string(),
                record: encode(&draft),
                created_at_ms: now_ms(),
                ..SettlementRow::default()
            };
            repo::insert_intent(&mut tx, &row).await?;
            tx.commit().await?;
            Intent {
                row,
                reserve,
                draft,
            }
        };
        let settlement = self.drive(&intent).await?;
        self.finish_completion(intent.settlement_id()).await;
        Ok(Cancelled::Done(Box::new(settlement)))
    }

    pub(super) async fn reverse(
        &self,
        input: ReverseInput,
        digest: &str,
    ) -> Result<pb::ReverseByMessageIdResponse, TreatmentError> {
        const RPC: &str = "ReverseByMessageId";
        if let Some(reply) = self.peek(&input.message_id, RPC, digest).await? {
            return decode_reply(&reply);
        }
        let original = {
            let mut conn = self.store.pool().acquire().await?;
            repo::settlement_by_message(&mut conn, input.original_message_id.as_str()).await?
        };
        if let Some(row) = &original {
            if row.kind != KIND_SETTLEMENT {
                return Err(Invalid::new(
                    "original_message_id",
                    "is not the message id of a Settle",
                )
                .into());
            }
            if row.institution_code != input.institution.as_str() {
                return Err(TreatmentError::NotYours {
                    what: "settle under message id",
                    id: input.original_message_id.to_string(),
                });
            }
        }
        match original {
            Some(row) if matches!(row.phase, RECORDED | COMPLETED) => {
                if row.cancelled_by.is_some() {
                    // Already cancelled: say so, and remember the answer under this message id.
                    let tx = match self.begin(&input.message_id, RPC, digest).await? {
                        super::Begun::Replay(reply) => return decode_reply(&reply),
                        super::Begun::Fresh(tx) => tx,
                    };
                    let settlement = decode(&row.record, "settlement record")?;
                    let reply = pb::ReverseByMessageIdResponse {
                        outcome: pb::ReversalOutcome::Cancelled as i32,
                        settlement: Some(settlement),
                    };
                    return self.finish(tx, &input.message_id, reply).await;
                }
                let request = CancelRequest {
                    message_id: input.message_id.clone(),
                    rpc: RPC,
                    digest: digest.to_owned(),
                    kind: pb::CancellationKind::Reversal,
                    reason: input.reason.clone(),
                    operator_id: input.operator_id.clone(),
                };
                match self.cancel(&row, request).await? {
                    Cancelled::Replay(bytes) => decode_reply(&bytes),
                    Cancelled::Done(settlement) => Ok(pb::ReverseByMessageIdResponse {
                        outcome: pb::ReversalOutcome::Cancelled as i32,
                        settlement: Some(*settlement),
                    }),
                }
            }
            Some(row) if row.phase == PENDING => {
                // The Settle is in flight or was cut off: it has not taken effect, so it is
                // voided everywhere before its message id dies.
                self.void_intent(&row.settlement_id, "reversed by message id")
                    .await?;
                self.mark_dead(&input, digest).await
            }
            _ => self.mark_dead(&input, digest).await,
        }
    }

    /// Marks a Settle's message id dead, so a Settle arriving late with it is refused. The id is
    /// claimed in `message_replies` too: a Settle racing this one queues on the same row.
    async fn mark_dead(
        &self,
        input: &ReverseInput,
        digest: &str,
    ) -> Result<pb::ReverseByMessageIdResponse, TreatmentError> {
        let mut tx = match self
            .begin(&input.message_id, "ReverseByMessageId", digest)
            .await?
        {
            super::Begun::Replay(reply) => return decode_reply(&reply),
            super::Begun::Fresh(tx) => tx,
        };
        let original = input.original_message_id.as_str();
        match replies::claim(&mut tx, original, "Settle", "dead").await {
            Ok(_) | Err(ReplyError::Conflict(_)) => {}
            Err(error) => return Err(error.into()),
        }
        let found = repo::settlement_by_message(&mut tx, original).await?;
        if found.is_some_and(|row| row.phase != VOIDED) {
            return Err(TreatmentError::refused(
                "SETTLEMENT_IN_PROGRESS",
                format!(
                    "the settle under message id {original} is in progress: reverse again shortly"
                ),
            ));
        }
        repo::mark_dead(&mut tx, original, input.institution.as_str()).await?;
        let reply = pb::ReverseByMessageIdResponse {
            outcome: pb::ReversalOutcome::MessageIdDead as i32,
            settlement: None,
        };
        self.finish(tx, &input.message_id, reply).await
    }
}

/// What a cancellation needs besides the settlement it cancels.
#[derive(Debug)]
struct CancelRequest {
    message_id: MessageId,
    rpc: &'static str,
    digest: String,
    kind: pb::CancellationKind,
    reason: String,
    operator_id: String,
}

/// How a cancellation ended: the first answer to its message id, or the settlement cancelled.
enum Cancelled {
    Replay(Vec<u8>),
    Done(Box<pb::Settlement>),
}
