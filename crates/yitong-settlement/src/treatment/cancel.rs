//! Cancellation (2208) and reversal by message id (2601) of a settlement: the same steps as a
//! Settle, for a cancellation id; and the death of a Settle's message id that never took effect.

use tokio::time::Instant;
use yitong_core::{Invalid, MessageId};
use yitong_proto::settlement::v1 as pb;
use yitong_store::now_ms;
use yitong_store::replies::{self, Claim, ReplyError, Scope};
use yitong_store::sqlx::AnyConnection;

use super::repo::{self, Kind, Phase, SettlementRow};
use super::request::{CancelInput, ReverseInput};
use super::settle::{Intent, Started, VOID_REVERSED, VoidDecision};
use super::writes::Work;
use super::{SettlementNode, TreatmentError, decode, decode_reply, encode};

impl SettlementNode {
    pub(super) async fn cancel_settlement(
        &self,
        input: CancelInput,
        digest: &str,
        deadline: Instant,
    ) -> Result<pb::CancelSettlementResponse, TreatmentError> {
        const RPC: &str = "CancelSettlement";
        let institution = &input.institution;
        if let Some(reply) = self
            .first_answer(institution, &input.message_id, RPC, digest, deadline)
            .await?
        {
            return decode_reply(&reply);
        }
        let original = self.original_of(&input).await?;
        let request = CancelRequest::of(&input, digest);
        match self.cancel(&original, &request).await? {
            Cancelled::Seen => {
                self.answer_of_claimed(institution, &input.message_id, RPC, digest, deadline)
                    .await
            }
            Cancelled::Done(settlement) => {
                self.observe(
                    &original.insured_city,
                    "cancelled",
                    super::settle::fund_returned_fen(&settlement),
                );
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
        request: &CancelRequest,
    ) -> Result<Cancelled, TreatmentError> {
        // The insured city reverses only a posted settlement: finish the original first.
        if original.phase == Phase::Recorded {
            self.step_complete(&original.settlement_id).await?;
        }
        let intent = match self.intend_cancel(original, request).await? {
            Some(intent) => intent,
            None => return Ok(Cancelled::Seen),
        };
        let settlement = self.drive(&intent).await?;
        let settlement = self
            .finish_completion(intent.settlement_id())
            .await
            .map_or(settlement, |completed| completed);
        Ok(Cancelled::Done(Box::new(settlement)))
    }

    /// Step 1 of a CancelSettlement, from the wire request: for tests and crash drills that
    /// drive the steps one by one. Checks the request and the settlement it cancels, which must
    /// be complete.
    pub async fn step_cancel_intent(
        &self,
        request: &pb::CancelSettlementRequest,
    ) -> Result<Started, TreatmentError> {
        let input = CancelInput::try_from(request)?;
        let original = self.original_of(&input).await?;
        let request = CancelRequest::of(&input, &super::digest(request));
        Ok(match self.intend_cancel(&original, &request).await? {
            Some(intent) => Started::Intent(Box::new(intent)),
            None => Started::Seen,
        })
    }

    /// The recorded settlement a CancelSettlement names, if it is the caller's and matches the
    /// visit and person the request gives.
    async fn original_of(&self, input: &CancelInput) -> Result<SettlementRow, TreatmentError> {
        let original = {
            let mut conn = self.store.pool().acquire().await?;
            repo::settlement(&mut conn, &input.settlement_id).await?
        };
        let original = original
            .filter(|row| row.kind == Kind::Settlement && row.phase.is_recorded())
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
        Ok(original)
    }

    /// Step 1 of a cancellation: claims its message id and writes its intent, for a cancelled
    /// settlement that is complete and not cancelled already. `None` when another call claimed
    /// the message id first.
    async fn intend_cancel(
        &self,
        original: &SettlementRow,
        request: &CancelRequest,
    ) -> Result<Option<Intent>, TreatmentError> {
        // An earlier undo of this visit whose void is decided but not yet carried still holds
        // its cancellation's booking at the ledger: carry it first.
        self.carry_voids_of_visit(&original.visit_id).await;
        let work = Work::CancelIntent {
            original: Box::new(original.clone()),
            request: Box::new(request.clone()),
        };
        Ok(match self.write(work).await?.started()? {
            Started::Intent(intent) => Some(*intent),
            Started::Seen => None,
        })
    }

    /// Step 1's one transaction for a cancellation, in the caller's (a group's): claims its
    /// message id, locks the settlement it cancels and writes its intent. `None` when another
    /// call claimed the message id first.
    pub(super) async fn intend_cancel_locked(
        &self,
        tx: &mut AnyConnection,
        original: &SettlementRow,
        request: &CancelRequest,
    ) -> Result<Option<Intent>, TreatmentError> {
        // Among the asking institution's message ids: `original_of` checked that the
        // settlement it cancels is that institution's.
        match replies::claim_in(
            tx,
            Scope::Institution(&original.institution_code),
            request.message_id.as_str(),
            request.rpc,
            &request.digest,
        )
        .await?
        {
            Claim::Replay(_) => return Ok(None),
            Claim::Fresh => {}
        }
        let original = repo::lock_settlement(tx, &original.settlement_id)
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
        Self::check_not_in_flight(tx, &original.visit_id).await?;
        if original.phase != Phase::Completed {
            return Err(TreatmentError::Unavailable {
                service: "completion of the original settlement",
                status: tonic::Status::unavailable("not complete"),
            });
        }
        let (cancellation_id, today) = self.new_settlement_id(tx).await?;
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
            kind: Kind::Cancellation,
            original_settlement_id: Some(original.settlement_id.clone()),
            visit_id: original.visit_id.clone(),
            institution_code: original.institution_code.clone(),
            insured_city: original.insured_city.clone(),
            person_no: original.person_no.clone(),
            message_id: request.message_id.to_string(),
            phase: Phase::Pending,
            reserve_request: encode(&reserve),
            settlement_date: today.to_string(),
            record: encode(&draft),
            created_at_ms: now_ms(),
            ..SettlementRow::default()
        };
        self.write_intent(tx, &row).await?;
        Ok(Some(Intent {
            row,
            reserve,
            draft,
        }))
    }

    /// ReverseByMessageId: a Settle recorded under the message id is cancelled; one still in
    /// flight is voided (unless it records first, then it is cancelled); an id never settled
    /// dies, so a Settle arriving late with it is refused.
    pub(super) async fn reverse(
        &self,
        input: ReverseInput,
        digest: &str,
        deadline: Instant,
    ) -> Result<pb::ReverseByMessageIdResponse, TreatmentError> {
        const RPC: &str = "ReverseByMessageId";
        // Each round reads the Settle's state afresh; a round ends early only when the Settle
        // moved on under it (recorded while a void was being decided, or claimed its id while
        // it was being marked dead), which can happen once each.
        let institution = &input.institution;
        for _ in 0..REVERSE_ROUNDS_MAX {
            if let Some(reply) = self
                .first_answer(institution, &input.message_id, RPC, digest, deadline)
                .await?
            {
                return decode_reply(&reply);
            }
            // The original is looked up among the institution's own message ids: another
            // institution's Settle under the same id is none of its business, and is neither
            // found nor touched (the id dies for this institution alone).
            let original = {
                let mut conn = self.store.pool().acquire().await?;
                let original = input.original_message_id.as_str();
                repo::settlement_by_message(&mut conn, institution.as_str(), original).await?
            };
            if let Some(row) = &original {
                if row.kind != Kind::Settlement {
                    return Err(Invalid::new(
                        "original_message_id",
                        "is not the message id of a Settle",
                    )
                    .into());
                }
                assert_eq!(
                    row.institution_code,
                    institution.as_str(),
                    "a settlement found under an institution's message id is the institution's"
                );
            }
            let reversed = match original {
                Some(row) if row.phase.is_recorded() => {
                    self.reverse_recorded(&row, &input, digest).await?
                }
                Some(row) if row.phase == Phase::Pending => {
                    // The Settle is in flight or was cut off: it has not taken effect, so its
                    // void is decided before its message id dies, unless it records first.
                    match self.decide_void(&row.settlement_id, VOID_REVERSED).await? {
                        VoidDecision::Recorded => Reversed::Again,
                        VoidDecision::Void(row) => {
                            if let Err(error) = self.carry_void(&row).await {
                                // Decided is enough for the answer: the sweep carries it.
                                tracing::warn!(settlement_id = %row.settlement_id, error = %yitong_core::cause_chain(&error), "void of a reversed settle did not finish; the sweep will");
                                self.attempt_failed(&row.settlement_id, row.attempts, &error)
                                    .await?;
                            }
                            self.mark_dead(&input, digest).await?
                        }
                    }
                }
                _ => self.mark_dead(&input, digest).await?,
            };
            match reversed {
                Reversed::Answer(reply) => return Ok(*reply),
                Reversed::Seen => {
                    return self
                        .answer_of_claimed(institution, &input.message_id, RPC, digest, deadline)
                        .await;
                }
                Reversed::Again => continue,
            }
        }
        Err(TreatmentError::InProgress(format!(
            "the settle under message id {} is still moving: reverse again shortly",
            input.original_message_id
        )))
    }

    /// Reverses a recorded Settle: cancels it, or says it is cancelled already.
    async fn reverse_recorded(
        &self,
        row: &SettlementRow,
        input: &ReverseInput,
        digest: &str,
    ) -> Result<Reversed, TreatmentError> {
        const RPC: &str = "ReverseByMessageId";
        if row.cancelled_by.is_some() {
            // Already cancelled: say so, and remember the answer under this message id.
            let tx = match self
                .begin(&input.institution, &input.message_id, RPC, digest)
                .await?
            {
                super::Begun::Replay(_) => return Ok(Reversed::Seen),
                super::Begun::Fresh(tx) => tx,
            };
            let settlement = decode(&row.record, "settlement record")?;
            let reply = pb::ReverseByMessageIdResponse {
                outcome: pb::ReversalOutcome::Cancelled as i32,
                settlement: Some(settlement),
            };
            return Ok(Reversed::Answer(Box::new(
                self.finish(tx, &input.institution, &input.message_id, reply)
                    .await?,
            )));
        }
        let request = CancelRequest {
            message_id: input.message_id.clone(),
            rpc: RPC,
            digest: digest.to_owned(),
            kind: pb::CancellationKind::Reversal,
            reason: input.reason.clone(),
            operator_id: input.operator_id.clone(),
        };
        Ok(match self.cancel(row, &request).await? {
            Cancelled::Seen => Reversed::Seen,
            Cancelled::Done(settlement) => {
                Reversed::Answer(Box::new(pb::ReverseByMessageIdResponse {
                    outcome: pb::ReversalOutcome::Cancelled as i32,
                    settlement: Some(*settlement),
                }))
            }
        })
    }

    /// Marks the institution's Settle message id dead, so a Settle of the institution arriving
    /// late with it is refused (another institution's use of the id is untouched). The id is
    /// claimed in `message_replies` too: a Settle racing this one queues on the same row, and
    /// one that claimed it first sends the reversal round again.
    async fn mark_dead(
        &self,
        input: &ReverseInput,
        digest: &str,
    ) -> Result<Reversed, TreatmentError> {
        let institution = &input.institution;
        let mut tx = match self
            .begin(institution, &input.message_id, "ReverseByMessageId", digest)
            .await?
        {
            super::Begun::Replay(_) => return Ok(Reversed::Seen),
            super::Begun::Fresh(tx) => tx,
        };
        let original = input.original_message_id.as_str();
        let scope = Scope::Institution(institution.as_str());
        match replies::claim_in(&mut tx, scope, original, "Settle", DEAD_DIGEST).await {
            Ok(_) | Err(ReplyError::Conflict(_)) => {}
            Err(error) => return Err(error.into()),
        }
        let found = repo::settlement_by_message(&mut tx, institution.as_str(), original).await?;
        if found.is_some_and(|row| !row.phase.is_void()) {
            // A Settle claimed the id first: this round's claims roll back, the next round
            // finds its intent.
            tx.rollback().await?;
            return Ok(Reversed::Again);
        }
        repo::mark_dead(&mut tx, institution.as_str(), original).await?;
        let reply = pb::ReverseByMessageIdResponse {
            outcome: pb::ReversalOutcome::MessageIdDead as i32,
            settlement: None,
        };
        Ok(Reversed::Answer(Box::new(
            self.finish(tx, institution, &input.message_id, reply)
                .await?,
        )))
    }
}

/// The digest under which a dead Settle message id is claimed: no Settle request has it.
const DEAD_DIGEST: &str = "dead";
/// Most rounds of one ReverseByMessageId: see [`SettlementNode::reverse`].
const REVERSE_ROUNDS_MAX: usize = 4;

/// What a cancellation needs besides the settlement it cancels.
#[derive(Debug, Clone)]
pub(super) struct CancelRequest {
    message_id: MessageId,
    rpc: &'static str,
    digest: String,
    kind: pb::CancellationKind,
    reason: String,
    operator_id: String,
}

impl CancelRequest {
    /// A CancelSettlement's, with its request's digest.
    fn of(input: &CancelInput, digest: &str) -> CancelRequest {
        CancelRequest {
            message_id: input.message_id.clone(),
            rpc: "CancelSettlement",
            digest: digest.to_owned(),
            kind: pb::CancellationKind::CancelSettlement,
            reason: input.reason.clone(),
            operator_id: input.operator_id.clone(),
        }
    }
}

/// How a cancellation ended: the settlement cancelled, or its message id claimed by another
/// call, whose answer is the one to give.
enum Cancelled {
    Seen,
    Done(Box<pb::Settlement>),
}

/// How one round of a reversal ended.
enum Reversed {
    Answer(Box<pb::ReverseByMessageIdResponse>),
    /// Its message id was claimed by another call: that call's answer is the one to give.
    Seen,
    /// The Settle moved on under it: read it again.
    Again,
}
