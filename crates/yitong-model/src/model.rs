//! The settlement protocol as a stateright model: the actions of the HIS, the treatment city's
//! handlers and sweep, the insured city, the ledger and the network, and the six properties.

use std::fmt::Write as _;

use stateright::{Model, Property};

use crate::scenario::{Scenario, Undo};
use crate::state::{
    Account, Answers, Claim, Handler, Hold, Msg, MsgKind, Phase, Reservation, Row, State, Step,
    Transfer,
};

/// Property 1: the HIS is told OK only for a recorded settlement, and once the network is
/// quiet and the sweep has run to a fixpoint, every settlement it was told OK for is complete
/// at the treatment city, the insured city and the ledger.
pub const ACKNOWLEDGED_SETTLES_COMPLETE: &str = "acknowledged settles complete";
/// Property 2: once the network is quiet and the sweep has run to a fixpoint, nothing is
/// pending, voiding or recorded at the treatment city, reserved at the insured city or pending
/// at the ledger.
pub const NOTHING_STAYS_IN_DOUBT: &str = "nothing stays in doubt";
/// Property 3: the three parties never contradict one another about a settlement id.
pub const THE_PARTIES_AGREE: &str = "the three parties agree";
/// Property 4: no account is overdrawn, no posted fund pay passes the cap, and the insured city
/// never refuses the Post of a recorded settlement.
pub const MONEY_STAYS_IN_BOUNDS: &str = "money stays in bounds";
/// Property 5: at most one settlement is recorded per Settle message id, and the HIS is never
/// told OK and failed under one message id.
pub const ONE_EFFECT_PER_MESSAGE_ID: &str = "one effect per message id";
/// Property 6: the ledger never refuses a booking SETTLEMENT_ALREADY_BOOKED: the treatment
/// city never books a cancellation of a settlement while another cancellation of it has a live
/// transfer. The refusal can only fail the cancellation, and the HIS would hear INTERNAL.
pub const ONE_LIVE_BOOKING_PER_SETTLEMENT: &str = "one live booking per settlement";

/// Sanity: some reachable state has a settlement the HIS was told OK for complete everywhere.
pub const SOME_SETTLE_COMPLETES: &str = "some settle completes";
/// Sanity: some reachable state has a settlement voided everywhere.
pub const SOME_SETTLE_IS_VOIDED: &str = "some settle is voided";
/// Sanity: some reachable state has a cancellation complete everywhere (with an undo).
pub const SOME_CANCELLATION_COMPLETES: &str = "some cancellation completes";
/// Sanity: some reachable state has a cancellation complete everywhere while another
/// cancellation of the same settlement was booked at the ledger and is voided everywhere (with
/// two cancellations of a settlement): the HIS's retry goes through.
pub const SOME_RETRIED_CANCELLATION_COMPLETES: &str = "some retried cancellation completes";

/// The protocol checked: the fixed one, or one of the bugs the checker must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The fixed protocol as it is being implemented.
    Correct,
    /// The void path voids at the insured city and the ledger first and then moves the row
    /// Pending -> Voided, ignoring that the move failed because the Settle recorded meanwhile.
    VoidAfterPeers,
    /// Reserve reads the personal-account balance before it takes the person's lock.
    BalanceBeforeLock,
    /// The ledger answers a void of a transfer it has never seen without remembering it.
    LedgerForgetsVoid,
    /// A reservation stops counting against the cap after a timeout, and a late Post is
    /// refused when the room is gone.
    ReservationExpires,
    /// A replay of a Settle whose first attempt is still in flight writes a second intent
    /// instead of answering "retry later": no claim of the message id is looked at.
    ReplayStartsAgain,
    /// A cancellation's in-flight check counts only the visit's pending rows, not the voiding
    /// ones (void decided, not carried), and nothing carries their voids first: a second
    /// cancellation books while the first's transfer is still live at the ledger.
    VoidingNotInFlight,
    /// The ledger's one booking, posted, is made right after Reserve, before the record: a
    /// failure before the point of no return then voids a settlement whose transfer the ledger
    /// has already posted, and no void can take it back.
    BookedBeforeRecord,
}

/// The fate of a handler's step. A call to a peer is delivered and answered in one action:
/// the moment of delivery can be any point of the interleaving, and nothing a handler does
/// between sending and hearing back is visible, so splitting the call adds no behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A local transaction at the treatment city.
    Local,
    /// The call was delivered and its reply came back.
    Replied,
    /// The call was delivered, took effect, and its reply was lost: the caller times out.
    ReplyLost,
    /// The call was lost before it reached the peer: the caller times out.
    Lost,
    /// The call is held in the network and delivered later, if ever: the caller times out.
    Delayed,
}

/// One step of the whole system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The HIS sends or replays request `0` (a Settle by index, or an undo after the Settles).
    HisSends(u8),
    /// The handler in slot `slot` runs its next step.
    Run { slot: u8, outcome: Outcome },
    /// The handler in this slot vanishes: its node crashed between two steps.
    Crash(u8),
    /// The sweep picks this settlement id.
    Sweep(u8),
    /// `BalanceBeforeLock` only: the insured city takes the person's lock and holds the
    /// reservation of this id with the balance it read before.
    LockAndReserve(u8),
    /// `BalanceBeforeLock` only: the insured city crashes in the middle of this Reserve.
    AbandonRead(u8),
    /// The network delivers a delayed request.
    Deliver(Msg),
    /// The network loses a delayed request for good.
    Drop(Msg),
    /// The ledger expires a pending transfer.
    ExpireTransfer(u8),
    /// `ReservationExpires` only: a reservation stops counting against the cap.
    ExpireReservation(u8),
}

/// A peer's answer to a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Ok,
    Refused,
    /// `BalanceBeforeLock` only: the Reserve has read the balance and waits for the lock.
    Reading,
}

/// What a settlement id stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdKind {
    /// A settlement written by Settle request `request`, attempt `attempt` (always 0 unless
    /// the variant lets a replay write a second intent).
    Settle { request: usize, attempt: usize },
    /// The cancellation of settlement `target` written by undo `undo`.
    Cancellation { target: usize, undo: usize },
}

#[derive(Clone, Copy, Debug)]
struct IdInfo {
    kind: IdKind,
    person: usize,
    fund_fen: i64,
    account_fen: i64,
    /// Written by a node of the protocol before issue 21, which books the transfer pending
    /// before the record and posts it at completion; every other actor follows the transfer the
    /// record stored ([`Scenario::legacy_requests`]).
    legacy: bool,
}

/// Who runs in a handler slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Settle {
        request: usize,
        attempt: usize,
    },
    /// The handler of undo `0` (by its index in [`Scenario::undos`]).
    Undo(usize),
    Sweep,
}

/// The protocol over one scenario.
#[derive(Clone, Debug)]
pub struct SettlementModel {
    scenario: Scenario,
    variant: Variant,
    ids: Vec<IdInfo>,
    /// Per Settle request, its settlement ids in attempt order.
    settle_ids: Vec<Vec<usize>>,
    /// Per undo, its cancellation's settlement id.
    cancellations: Vec<usize>,
    slots: Vec<Origin>,
}

impl SettlementModel {
    /// Builds the model of `scenario` under `variant`.
    ///
    /// # Panics
    ///
    /// When the scenario does not fit the model's bounds: more than nine settlement ids (the
    /// network is a 64-bit set, seven messages per id), an undo of a Settle that does not
    /// exist, or `ReplayStartsAgain` with an undo (a cancellation targets the first attempt).
    pub fn new(scenario: Scenario, variant: Variant) -> Self {
        let attempts = if variant == Variant::ReplayStartsAgain {
            2
        } else {
            1
        };
        assert!(
            variant != Variant::ReplayStartsAgain || scenario.undos.is_empty(),
            "the replay variant is checked without an undo"
        );
        let mut ids = Vec::new();
        let mut settle_ids = Vec::new();
        let mut slots = Vec::new();
        for (request, settle) in scenario.settles.iter().enumerate() {
            assert!(
                settle.person < scenario.persons.len(),
                "settle of an unknown person"
            );
            let mut attempt_ids = Vec::new();
            for attempt in 0..attempts {
                attempt_ids.push(ids.len());
                ids.push(IdInfo {
                    kind: IdKind::Settle { request, attempt },
                    person: settle.person,
                    fund_fen: settle.fund_pay_fen,
                    account_fen: settle.account_pay_fen,
                    legacy: scenario.legacy_requests.contains(&request),
                });
                slots.push(Origin::Settle { request, attempt });
            }
            settle_ids.push(attempt_ids);
        }
        let mut cancellations = Vec::new();
        for (undo, request) in scenario.undos.iter().enumerate() {
            let target = *settle_ids
                .get(request.settle())
                .and_then(|attempts| attempts.first())
                .expect("undo of an unknown settle");
            let target_info = ids[target];
            cancellations.push(ids.len());
            ids.push(IdInfo {
                kind: IdKind::Cancellation { target, undo },
                legacy: scenario
                    .legacy_requests
                    .contains(&(scenario.settles.len() + undo)),
                ..target_info
            });
            slots.push(Origin::Undo(undo));
        }
        slots.push(Origin::Sweep);
        assert!(
            ids.len() <= 9,
            "at most nine settlement ids fit the network bit set"
        );
        Self {
            scenario,
            variant,
            ids,
            settle_ids,
            cancellations,
            slots,
        }
    }

    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Undo `undo`'s request index: the undos come after the Settles.
    fn undo_request(&self, undo: usize) -> usize {
        self.scenario.settles.len() + undo
    }

    /// The undo a request index names, if it is not a Settle's.
    fn undo_of_request(&self, request: usize) -> Option<usize> {
        request.checked_sub(self.scenario.settles.len())
    }

    fn requests(&self) -> usize {
        self.scenario.settles.len() + self.scenario.undos.len()
    }

    fn sweep_slot(&self) -> usize {
        self.slots.len() - 1
    }

    fn undo_slot(&self, undo: usize) -> usize {
        self.slot_of(Origin::Undo(undo))
    }

    fn slot_of(&self, origin: Origin) -> usize {
        self.slots
            .iter()
            .position(|o| *o == origin)
            .expect("every origin has a slot")
    }

    /// The id of the settlement undo `undo` cancels.
    fn undo_target(&self, undo: usize) -> usize {
        self.settle_ids[self.scenario.undos[undo].settle()][0]
    }

    fn cancellation_id(&self, undo: usize) -> usize {
        self.cancellations[undo]
    }

    /// The cancellations of settlement `target` other than undo `undo`'s: the rows of its
    /// visit that may be in flight when the undo writes its intent.
    fn other_cancellations(&self, undo: usize, target: usize) -> impl Iterator<Item = usize> {
        let own = self.cancellation_id(undo);
        self.cancellations.iter().copied().filter(move |&c| {
            c != own
                && matches!(self.ids[c].kind, IdKind::Cancellation { target: t, .. } if t == target)
        })
    }

    /// The settlement ids whose outcome a request's answer reports.
    fn request_ids(&self, request: usize) -> &[usize] {
        match self.settle_ids.get(request) {
            Some(ids) => ids,
            None => std::slice::from_ref(&self.cancellations[request - self.settle_ids.len()]),
        }
    }

    fn void_start(&self) -> Step {
        match self.variant {
            Variant::VoidAfterPeers => Step::VoidInsured,
            _ => Step::Decide,
        }
    }

    fn is_call(step: Step) -> bool {
        matches!(
            step,
            Step::Reserve
                | Step::Book
                | Step::BookPosted
                | Step::PostInsured
                | Step::PostLedger
                | Step::VoidInsured
                | Step::VoidLedger
        )
    }

    /// Whether a handler other than the sweep is working on this id.
    fn is_driven(&self, st: &State, id: usize) -> bool {
        st.handlers.iter().zip(&self.slots).any(|(h, origin)| {
            *origin != Origin::Sweep && h.is_some_and(|h| usize::from(h.id) == id)
        })
    }

    fn sweep_can_pick(&self, st: &State, id: usize) -> bool {
        match st.rows[id].phase {
            Phase::Pending => self.scenario.faults.slow_past_grace || !self.is_driven(st, id),
            Phase::Voiding | Phase::Recorded => true,
            Phase::Absent | Phase::Completed | Phase::Voided => false,
        }
    }

    /// What the HIS's send of `request` would do, if anything.
    fn his_send(&self, st: &State, request: usize) -> Option<HisSend> {
        if let Some(undo) = self.undo_of_request(request) {
            let slot = self.undo_slot(undo);
            if st.claims[request] == Claim::Absent {
                let knows = match self.scenario.undos[undo] {
                    // The HIS cancels a settlement it was told OK for.
                    Undo::Cancel { settle } => st.his[settle].ok,
                    // The HIS reverses a Settle whose outcome it may not know.
                    Undo::Reverse { .. } => true,
                };
                // A later undo retries the one before under a new message id, once that one
                // has written its intent and its call ended without OK.
                let retries = undo.checked_sub(1).is_none_or(|before| {
                    let request = self.undo_request(before);
                    st.claims[request] == Claim::Claimed
                        && st.handlers[self.undo_slot(before)].is_none()
                        && !st.his[request].ok
                });
                return (knows && retries && st.handlers[slot].is_none())
                    .then_some(HisSend::Spawn(slot));
            }
            let c = self.cancellation_id(undo);
            let replay_tells_ok = st.rows[c].phase.is_recorded() && !st.his[request].ok;
            return (self.scenario.faults.replay && replay_tells_ok).then_some(HisSend::Replay);
        }
        let attempts = &self.settle_ids[request];
        let live = (0..attempts.len()).any(|attempt| {
            st.handlers[self.slot_of(Origin::Settle { request, attempt })].is_some()
        });
        match st.claims[request] {
            Claim::Absent if !live => {
                return Some(HisSend::Spawn(self.slot_of(Origin::Settle {
                    request,
                    attempt: 0,
                })));
            }
            // A Settle under a dead message id is refused; the HIS hears it once.
            Claim::Dead if !live && !st.his[request].failed => {
                return Some(HisSend::Spawn(self.slot_of(Origin::Settle {
                    request,
                    attempt: 0,
                })));
            }
            Claim::Absent | Claim::Dead => return None,
            Claim::Claimed => {}
        }
        if !self.scenario.faults.replay {
            return None;
        }
        if self.variant == Variant::ReplayStartsAgain {
            let second = attempts[1];
            let slot = self.slot_of(Origin::Settle {
                request,
                attempt: 1,
            });
            if st.rows[attempts[0]].phase == Phase::Pending
                && st.rows[second].phase == Phase::Absent
                && st.handlers[slot].is_none()
            {
                return Some(HisSend::Spawn(slot));
            }
        }
        let told = answers_or(st.his[request], self.settle_answer(st, request));
        (told != st.his[request]).then_some(HisSend::Replay)
    }

    /// The answers a replay of Settle `request` adds: its first answer, read from its row.
    fn settle_answer(&self, st: &State, request: usize) -> Answers {
        let ids = &self.settle_ids[request];
        Answers {
            ok: ids.iter().any(|&id| st.rows[id].phase.is_recorded()),
            failed: !ids.iter().any(|&id| st.rows[id].phase.is_recorded())
                && matches!(st.rows[ids[0]].phase, Phase::Voiding | Phase::Voided),
        }
    }

    fn go(st: &mut State, slot: usize, id: usize, step: Step) {
        st.handlers[slot] = Some(Handler {
            id: u8::try_from(id).expect("ids fit in u8"),
            step,
        });
    }

    fn finish(st: &mut State, slot: usize) {
        st.handlers[slot] = None;
    }

    /// Applies an action to the state.
    fn apply(&self, st: &mut State, action: Action) {
        match action {
            Action::HisSends(request) => {
                let request = usize::from(request);
                match self.his_send(st, request) {
                    Some(HisSend::Spawn(slot)) => {
                        let (id, step) = match self.slots[slot] {
                            Origin::Settle { request, attempt } => {
                                (self.settle_ids[request][attempt], Step::Intent)
                            }
                            Origin::Undo(undo) => (self.undo_target(undo), Step::Look),
                            Origin::Sweep => unreachable!("the HIS does not start the sweep"),
                        };
                        Self::go(st, slot, id, step);
                    }
                    Some(HisSend::Replay) if self.undo_of_request(request).is_some() => {
                        st.his[request].ok = true;
                    }
                    Some(HisSend::Replay) => {
                        let answers = self.settle_answer(st, request);
                        st.his[request] = answers_or(st.his[request], answers);
                    }
                    None => {}
                }
            }
            Action::Run { slot, outcome } => self.run(st, usize::from(slot), outcome),
            Action::Crash(slot) => Self::finish(st, usize::from(slot)),
            Action::Sweep(id) => {
                let id = usize::from(id);
                let step = match st.rows[id].phase {
                    Phase::Pending => self.void_start(),
                    Phase::Voiding => Step::VoidInsured,
                    _ => Step::PostInsured,
                };
                Self::go(st, self.sweep_slot(), id, step);
            }
            Action::LockAndReserve(id) => {
                let id = usize::from(id);
                let balance_fen = st.reads[id].take().expect("a read to finish");
                let reply = match st.reservations[id].hold {
                    Hold::Absent => self.hold(st, id, balance_fen),
                    Hold::Reserved | Hold::Posted => Reply::Ok,
                    Hold::Voided | Hold::Tombstone => Reply::Refused,
                };
                // Whoever still waits for this Reserve hears the reply.
                for slot in 0..self.slots.len() {
                    if let Some(h) = st.handlers[slot]
                        && h.step == Step::AwaitReserve
                        && usize::from(h.id) == id
                    {
                        match reply {
                            Reply::Ok => Self::go(st, slot, id, self.after_reserve(id)),
                            _ => self.fail_before_record(st, slot),
                        }
                    }
                }
            }
            Action::AbandonRead(id) => st.reads[usize::from(id)] = None,
            Action::Deliver(msg) => {
                st.delayed &= !msg.bit();
                self.deliver(st, msg);
            }
            Action::Drop(msg) => st.delayed &= !msg.bit(),
            Action::ExpireTransfer(id) => st.transfers[usize::from(id)] = Transfer::Expired,
            Action::ExpireReservation(id) => st.reservations[usize::from(id)].expired = true,
        }
    }

    /// Runs the next step of the handler in `slot`.
    fn run(&self, st: &mut State, slot: usize, outcome: Outcome) {
        let h = st.handlers[slot].expect("a live handler runs");
        let id = usize::from(h.id);
        let msg = |kind| Msg { id: h.id, kind };
        match h.step {
            Step::Intent => self.intent(st, slot, id),
            Step::Look => self.look(st, slot),
            Step::Reserve => match self.call(st, msg(MsgKind::Reserve), outcome) {
                Some(Reply::Ok) => Self::go(st, slot, id, self.after_reserve(id)),
                Some(Reply::Reading) => Self::go(st, slot, id, Step::AwaitReserve),
                _ => self.fail_before_record(st, slot),
            },
            // Running this step means giving up waiting: the deadline passed.
            Step::AwaitReserve => self.fail_before_record(st, slot),
            // A refusal (a void overtook the booking, or SETTLEMENT_ALREADY_BOOKED) is a peer's
            // failure like a lost call: the void is decided and the HIS hears a failure.
            Step::Book => match self.call(st, msg(MsgKind::Create), outcome) {
                Some(Reply::Ok) => Self::go(st, slot, id, Step::Record),
                _ => self.fail_before_record(st, slot),
            },
            Step::Record => {
                if st.rows[id].phase == Phase::Pending {
                    st.rows[id].phase = Phase::Recorded;
                    if let IdKind::Cancellation { target, .. } = self.ids[id].kind {
                        st.rows[target].cancelled = true;
                    }
                    Self::go(st, slot, id, Step::PostInsured);
                } else {
                    // The void was decided first: the Settle fails and says so.
                    self.answer_failed(st, slot);
                    Self::finish(st, slot);
                }
            }
            Step::PostInsured => match self.call(st, msg(MsgKind::PostInsured), outcome) {
                Some(Reply::Ok) if self.ids[id].legacy => Self::go(st, slot, id, Step::PostLedger),
                Some(Reply::Ok) => Self::go(st, slot, id, Step::BookPosted),
                _ => self.fail_after_record(st, slot),
            },
            // After the record (the fixed protocol), or before it (`BookedBeforeRecord`): only
            // this handler records its id, so the phase says which.
            Step::BookPosted => {
                let recorded = st.rows[id].phase.is_recorded();
                match (self.call(st, msg(MsgKind::BookPosted), outcome), recorded) {
                    (Some(Reply::Ok), true) => Self::go(st, slot, id, Step::Complete),
                    (Some(Reply::Ok), false) => Self::go(st, slot, id, Step::Record),
                    (_, true) => self.fail_after_record(st, slot),
                    (_, false) => self.fail_before_record(st, slot),
                }
            }
            Step::PostLedger => match self.call(st, msg(MsgKind::PostLedger), outcome) {
                Some(Reply::Ok) => Self::go(st, slot, id, Step::Complete),
                _ => self.fail_after_record(st, slot),
            },
            Step::Complete => self.complete(st, slot, id),
            Step::Decide => self.decide(st, slot, id),
            Step::VoidInsured => match self.call(st, msg(MsgKind::VoidInsured), outcome) {
                Some(Reply::Ok) => Self::go(st, slot, id, Step::VoidLedger),
                // The void stays decided; the sweep tries again later.
                _ => self.void_ends(st, slot),
            },
            Step::VoidLedger => match self.call(st, msg(MsgKind::VoidLedger), outcome) {
                Some(Reply::Ok) => Self::go(st, slot, id, Step::FinishVoid),
                _ => self.void_ends(st, slot),
            },
            Step::FinishVoid => {
                match (self.variant, st.rows[id].phase) {
                    (Variant::VoidAfterPeers, Phase::Pending) | (_, Phase::Voiding) => {
                        st.rows[id].phase = Phase::Voided;
                        if self.carrying(st, slot).is_none() {
                            self.answer_failed(st, slot);
                            self.claim_undo(st, slot);
                        }
                    }
                    // Voided: another handler finished the void first. In `VoidAfterPeers`
                    // also Recorded: the move failed because the Settle recorded in between,
                    // and nobody looks.
                    _ => {}
                }
                self.void_ends(st, slot);
            }
            Step::CarryVoids => self.carry_voids(st, slot),
        }
    }

    /// What follows a held reservation: the pending booking of a legacy id, the record in the
    /// fixed protocol, the posted booking in `BookedBeforeRecord`.
    fn after_reserve(&self, id: usize) -> Step {
        if self.ids[id].legacy {
            Step::Book
        } else if self.variant == Variant::BookedBeforeRecord {
            Step::BookPosted
        } else {
            Step::Record
        }
    }

    /// The undo whose handler in `slot` is carrying the decided void of another cancellation
    /// of its settlement, if it is.
    fn carrying(&self, st: &State, slot: usize) -> Option<usize> {
        let Origin::Undo(undo) = self.slots[slot] else {
            return None;
        };
        let id = usize::from(st.handlers[slot]?.id);
        let target = self.undo_target(undo);
        self.other_cancellations(undo, target)
            .any(|other| other == id)
            .then_some(undo)
    }

    /// A void's steps end, carried or not: a request handler or the sweep is done (the sweep
    /// carries a void still decided later); an undo that was carrying another cancellation's
    /// void goes on to its own intent, which refuses while that void is still decided.
    fn void_ends(&self, st: &mut State, slot: usize) {
        match self.carrying(st, slot) {
            Some(undo) => Self::go(st, slot, self.cancellation_id(undo), Step::Intent),
            None => Self::finish(st, slot),
        }
    }

    /// The way to an undo's intent once its settlement is complete: in the fixed protocol,
    /// when the settlement has other cancellations, through `carry_voids_of_visit`.
    fn intend(&self, st: &mut State, slot: usize, undo: usize) {
        let c = self.cancellation_id(undo);
        let carries = self.variant != Variant::VoidingNotInFlight
            && self
                .other_cancellations(undo, self.undo_target(undo))
                .next()
                .is_some();
        let step = if carries {
            Step::CarryVoids
        } else {
            Step::Intent
        };
        Self::go(st, slot, c, step);
    }

    /// `carry_voids_of_visit`, one local read: the first other cancellation of the settlement
    /// whose void is decided (a settlement has at most two cancellations in the scenarios, so
    /// at most one other), whose void the undo then carries itself before its intent.
    fn carry_voids(&self, st: &mut State, slot: usize) {
        let Origin::Undo(undo) = self.slots[slot] else {
            unreachable!("only an undo carries the voids of its visit");
        };
        let voiding = self
            .other_cancellations(undo, self.undo_target(undo))
            .find(|&other| st.rows[other].phase == Phase::Voiding);
        match voiding {
            Some(other) => Self::go(st, slot, other, Step::VoidInsured),
            None => Self::go(st, slot, self.cancellation_id(undo), Step::Intent),
        }
    }

    /// `step_intent`: claim the message id and write the intent, in one local transaction.
    fn intent(&self, st: &mut State, slot: usize, id: usize) {
        match self.slots[slot] {
            Origin::Settle { request, .. } => {
                match st.claims[request] {
                    Claim::Dead => {
                        st.his[request].failed = true;
                        return Self::finish(st, slot);
                    }
                    Claim::Claimed if self.variant != Variant::ReplayStartsAgain => {
                        let answers = self.settle_answer(st, request);
                        st.his[request] = answers_or(st.his[request], answers);
                        return Self::finish(st, slot);
                    }
                    Claim::Claimed | Claim::Absent => {}
                }
                st.claims[request] = Claim::Claimed;
                st.rows[id].phase = Phase::Pending;
                Self::go(st, slot, id, Step::Reserve);
            }
            Origin::Undo(undo) => {
                let request = self.undo_request(undo);
                let target = self.undo_target(undo);
                let c = self.cancellation_id(undo);
                let cancellable =
                    st.rows[target].phase == Phase::Completed && !st.rows[target].cancelled;
                if st.claims[request] != Claim::Absent || !cancellable {
                    return Self::finish(st, slot);
                }
                // `repo::in_flight`: while another cancellation of the visit is pending, or
                // voiding (its void decided but not carried, its transfer maybe still booked at
                // the ledger), the undo is refused SETTLEMENT_IN_PROGRESS and stores nothing;
                // the HIS may send it again. `VoidingNotInFlight` counts pending ones only.
                let in_flight = self.other_cancellations(undo, target).any(|other| {
                    match st.rows[other].phase {
                        Phase::Pending => true,
                        Phase::Voiding => self.variant != Variant::VoidingNotInFlight,
                        _ => false,
                    }
                });
                if in_flight {
                    return Self::finish(st, slot);
                }
                st.claims[request] = Claim::Claimed;
                st.rows[c].phase = Phase::Pending;
                Self::go(st, slot, c, Step::Reserve);
            }
            Origin::Sweep => unreachable!("the sweep writes no intent"),
        }
    }

    /// The undo's first look, one local read (and, when it reverses an unknown message id,
    /// one local write).
    fn look(&self, st: &mut State, slot: usize) {
        let Origin::Undo(undo) = self.slots[slot] else {
            unreachable!("only an undo looks");
        };
        let request = self.undo_request(undo);
        let target = self.undo_target(undo);
        if st.claims[request] != Claim::Absent || st.rows[target].cancelled {
            return Self::finish(st, slot);
        }
        if let Undo::Reverse { settle } = self.scenario.undos[undo] {
            match st.claims[settle] {
                Claim::Absent => {
                    // Nothing was settled under the message id: it is dead from now on.
                    st.claims[settle] = Claim::Dead;
                    st.claims[request] = Claim::Claimed;
                    return Self::finish(st, slot);
                }
                Claim::Dead => {
                    st.claims[request] = Claim::Claimed;
                    return Self::finish(st, slot);
                }
                Claim::Claimed => {}
            }
            match st.rows[target].phase {
                Phase::Pending => return Self::go(st, slot, target, self.void_start()),
                Phase::Voiding | Phase::Voided => {
                    st.claims[request] = Claim::Claimed;
                    return Self::finish(st, slot);
                }
                _ => {}
            }
        }
        match st.rows[target].phase {
            Phase::Completed => self.intend(st, slot, undo),
            // Finish the settlement first: a cancellation needs it posted.
            Phase::Recorded => Self::go(st, slot, target, Step::PostInsured),
            _ => Self::finish(st, slot),
        }
    }

    /// The local transaction Recorded -> Completed.
    fn complete(&self, st: &mut State, slot: usize, id: usize) {
        if st.rows[id].phase == Phase::Recorded {
            st.rows[id].phase = Phase::Completed;
        }
        if st.rows[id].phase != Phase::Completed {
            return Self::finish(st, slot);
        }
        match self.slots[slot] {
            Origin::Settle { request, .. } => st.his[request].ok = true,
            Origin::Undo(undo) if id == self.undo_target(undo) => {
                return self.intend(st, slot, undo);
            }
            Origin::Undo(undo) => st.his[self.undo_request(undo)].ok = true,
            Origin::Sweep => {}
        }
        Self::finish(st, slot);
    }

    /// The void decision, Pending -> Voiding, in one local transaction.
    fn decide(&self, st: &mut State, slot: usize, id: usize) {
        match st.rows[id].phase {
            Phase::Pending => {
                st.rows[id].phase = Phase::Voiding;
                self.answer_failed(st, slot);
                self.claim_undo(st, slot);
                Self::go(st, slot, id, Step::VoidInsured);
            }
            Phase::Voiding => Self::go(st, slot, id, Step::VoidInsured),
            // The Settle recorded in between: the void is off, completion (and for a reversal,
            // then the cancellation) is on.
            Phase::Recorded | Phase::Completed => Self::go(st, slot, id, Step::PostInsured),
            Phase::Absent | Phase::Voided => Self::finish(st, slot),
        }
    }

    /// A call failed before the point of no return: void.
    fn fail_before_record(&self, st: &mut State, slot: usize) {
        let h = st.handlers[slot].expect("a live handler fails");
        Self::go(st, slot, usize::from(h.id), self.void_start());
    }

    /// A call failed after the point of no return: the sweep completes the settlement later;
    /// a request handler answers with what is recorded.
    fn fail_after_record(&self, st: &mut State, slot: usize) {
        let h = st.handlers[slot].expect("a live handler fails");
        let id = usize::from(h.id);
        if st.rows[id].phase.is_recorded() {
            match self.slots[slot] {
                Origin::Settle { request, .. } => st.his[request].ok = true,
                Origin::Undo(undo) if id == self.cancellation_id(undo) => {
                    st.his[self.undo_request(undo)].ok = true;
                }
                Origin::Undo(_) | Origin::Sweep => {}
            }
        }
        Self::finish(st, slot);
    }

    fn answer_failed(&self, st: &mut State, slot: usize) {
        if let Origin::Settle { request, .. } = self.slots[slot] {
            st.his[request].failed = true;
        }
    }

    fn claim_undo(&self, st: &mut State, slot: usize) {
        if let Origin::Undo(undo) = self.slots[slot] {
            st.claims[self.undo_request(undo)] = Claim::Claimed;
        }
    }

    /// Sends a request to a peer; returns the reply if it comes back.
    fn call(&self, st: &mut State, msg: Msg, outcome: Outcome) -> Option<Reply> {
        match outcome {
            Outcome::Replied => Some(self.deliver(st, msg)),
            Outcome::ReplyLost => {
                self.deliver(st, msg);
                None
            }
            Outcome::Delayed => {
                st.delayed |= msg.bit();
                None
            }
            Outcome::Lost | Outcome::Local => None,
        }
    }

    /// A request arrives at its peer.
    fn deliver(&self, st: &mut State, msg: Msg) -> Reply {
        let id = usize::from(msg.id);
        match msg.kind {
            MsgKind::Reserve => self.insured_reserve(st, id),
            MsgKind::PostInsured => self.insured_post(st, id),
            MsgKind::VoidInsured => Self::insured_void(st, id),
            MsgKind::Create => self.ledger_create(st, id),
            MsgKind::PostLedger => self.ledger_post(st, id),
            MsgKind::VoidLedger => self.ledger_void(st, id),
            MsgKind::BookPosted => self.ledger_book_posted(st, id),
        }
    }

    fn insured_reserve(&self, st: &mut State, id: usize) -> Reply {
        match st.reservations[id].hold {
            Hold::Reserved | Hold::Posted => Reply::Ok,
            Hold::Voided | Hold::Tombstone => Reply::Refused,
            Hold::Absent => {
                let person = self.ids[id].person;
                let balance_fen = st.accounts[person].balance_fen;
                let is_settle = matches!(self.ids[id].kind, IdKind::Settle { .. });
                if self.variant == Variant::BalanceBeforeLock && is_settle {
                    // The bug: the balance is read now, the lock is taken later.
                    st.reads[id].get_or_insert(balance_fen);
                    return Reply::Reading;
                }
                self.hold(st, id, balance_fen)
            }
        }
    }

    /// Under the person's lock: hold a settlement's fund pay against the cap (posted totals and
    /// every live reservation) and its account pay against `balance_fen` less every live
    /// reservation's account pay; or hold a cancellation of a posted settlement.
    fn hold(&self, st: &mut State, id: usize, balance_fen: i64) -> Reply {
        let info = self.ids[id];
        match info.kind {
            IdKind::Settle { .. } => {
                let account = st.accounts[info.person];
                let cap_fen = self.scenario.persons[info.person].annual_cap_fen;
                let (fund_held_fen, account_held_fen) = self.held(st, info.person);
                let fund_fen = info
                    .fund_fen
                    .min(cap_fen - account.fund_posted_fen - fund_held_fen)
                    .max(0);
                let account_fen = info.account_fen.min(balance_fen - account_held_fen).max(0);
                st.reservations[id] = Reservation {
                    hold: Hold::Reserved,
                    fund_fen,
                    account_fen,
                    ..Reservation::ABSENT
                };
                Reply::Ok
            }
            IdKind::Cancellation { target, .. } => {
                let settled = st.reservations[target];
                if settled.hold != Hold::Posted || settled.reversed {
                    return Reply::Refused;
                }
                // A cancellation frees room only once posted, so it holds nothing now.
                st.reservations[id] = Reservation {
                    hold: Hold::Reserved,
                    fund_fen: settled.fund_fen,
                    account_fen: settled.account_fen,
                    ..Reservation::ABSENT
                };
                Reply::Ok
            }
        }
    }

    /// The fund pay and account pay a person's live settlement reservations hold.
    fn held(&self, st: &State, person: usize) -> (i64, i64) {
        let mut fund_fen = 0;
        let mut account_fen = 0;
        for (info, reservation) in self.ids.iter().zip(&st.reservations) {
            let live = reservation.hold == Hold::Reserved
                && info.person == person
                && matches!(info.kind, IdKind::Settle { .. });
            if live {
                if !reservation.expired {
                    fund_fen += reservation.fund_fen;
                }
                account_fen += reservation.account_fen;
            }
        }
        (fund_fen, account_fen)
    }

    fn insured_post(&self, st: &mut State, id: usize) -> Reply {
        let reservation = st.reservations[id];
        let info = self.ids[id];
        let refused = match reservation.hold {
            Hold::Posted => return Reply::Ok,
            Hold::Reserved => match info.kind {
                IdKind::Settle { .. } => {
                    let account = st.accounts[info.person];
                    let cap_fen = self.scenario.persons[info.person].annual_cap_fen;
                    // Identity refuses to overdraw the account; the totals refuse to pass the
                    // cap. The fixed protocol's holds mean neither ever happens.
                    account.balance_fen < reservation.account_fen
                        || account.fund_posted_fen + reservation.fund_fen > cap_fen
                }
                IdKind::Cancellation { .. } => false,
            },
            Hold::Absent | Hold::Voided | Hold::Tombstone => true,
        };
        if refused {
            if st.rows[id].phase == Phase::Recorded {
                st.post_refused_while_recorded = true;
            }
            return Reply::Refused;
        }
        let account = &mut st.accounts[info.person];
        match info.kind {
            IdKind::Settle { .. } => {
                account.balance_fen -= reservation.account_fen;
                account.fund_posted_fen += reservation.fund_fen;
            }
            IdKind::Cancellation { target, .. } => {
                account.balance_fen += reservation.account_fen;
                account.fund_posted_fen -= reservation.fund_fen;
                st.reservations[target].reversed = true;
            }
        }
        st.reservations[id].hold = Hold::Posted;
        Reply::Ok
    }

    fn insured_void(st: &mut State, id: usize) -> Reply {
        let reservation = &mut st.reservations[id];
        match reservation.hold {
            Hold::Absent => reservation.hold = Hold::Tombstone,
            Hold::Reserved => reservation.hold = Hold::Voided,
            Hold::Voided | Hold::Tombstone => {}
            Hold::Posted => return Reply::Refused,
        }
        Reply::Ok
    }

    fn ledger_create(&self, st: &mut State, id: usize) -> Reply {
        match st.transfers[id] {
            Transfer::Absent if self.already_booked(st, id) => {
                st.ledger_refused_already_booked = true;
                return Reply::Refused;
            }
            Transfer::Absent => st.transfers[id] = Transfer::Pending,
            Transfer::Pending | Transfer::Posted | Transfer::Expired | Transfer::PostedByRebook => {
            }
            Transfer::Voided | Transfer::Tombstone => return Reply::Refused,
        }
        Reply::Ok
    }

    /// The ledger's booking key (`book.rs`, `State::decide`): it books one live transfer per
    /// settlement and one live cancellation per original settlement, and refuses a new booking
    /// SETTLEMENT_ALREADY_BOOKED while another cancellation of the same settlement has a
    /// pending or posted transfer (not voided, expired or tombstoned). A settlement id has one
    /// transfer in the model (a rebook replaces an expired one), so only cancellations meet.
    fn already_booked(&self, st: &State, id: usize) -> bool {
        let IdKind::Cancellation { target, .. } = self.ids[id].kind else {
            return false;
        };
        self.ids.iter().enumerate().any(|(other, info)| {
            other != id
                && matches!(info.kind, IdKind::Cancellation { target: t, .. } if t == target)
                && (st.transfers[other] == Transfer::Pending || st.transfers[other].is_posted())
        })
    }

    fn ledger_post(&self, st: &mut State, id: usize) -> Reply {
        match st.transfers[id] {
            Transfer::Pending => st.transfers[id] = Transfer::Posted,
            // The treatment city books a second transfer, posted, in the expired one's place:
            // a booking like any other, under the same key.
            Transfer::Expired if self.already_booked(st, id) => {
                st.ledger_refused_already_booked = true;
                return Reply::Refused;
            }
            Transfer::Expired => st.transfers[id] = Transfer::PostedByRebook,
            Transfer::Posted | Transfer::PostedByRebook => {}
            Transfer::Voided => {
                st.ledger_posted_voided = true;
                return Reply::Refused;
            }
            Transfer::Absent | Transfer::Tombstone => return Reply::Refused,
        }
        Reply::Ok
    }

    /// CreateTransfers of the settlement's transfer posted at once (`<id>-repost`, the transfer
    /// id of the `posted` role): the one booking of the fixed protocol, made once the insured
    /// city has posted. The same request as a legacy id's rebook after expiry.
    fn ledger_book_posted(&self, st: &mut State, id: usize) -> Reply {
        match st.transfers[id] {
            Transfer::Absent if self.already_booked(st, id) => {
                st.ledger_refused_already_booked = true;
                return Reply::Refused;
            }
            Transfer::Absent => st.transfers[id] = Transfer::Posted,
            // Not live: the booking under the `posted` role stands beside it.
            Transfer::Expired => st.transfers[id] = Transfer::PostedByRebook,
            Transfer::Posted | Transfer::PostedByRebook => {}
            // A live pending transfer of the same settlement under the `pending` role.
            Transfer::Pending => {
                st.ledger_refused_already_booked = true;
                return Reply::Refused;
            }
            // The settlement's void reached the ledger: it is being asked to pay a settlement
            // that was voided.
            Transfer::Voided | Transfer::Tombstone => {
                st.ledger_posted_voided = true;
                return Reply::Refused;
            }
        }
        Reply::Ok
    }

    fn ledger_void(&self, st: &mut State, id: usize) -> Reply {
        match st.transfers[id] {
            Transfer::Absent if self.variant == Variant::LedgerForgetsVoid => {}
            Transfer::Absent => st.transfers[id] = Transfer::Tombstone,
            Transfer::Pending => st.transfers[id] = Transfer::Voided,
            Transfer::Voided | Transfer::Tombstone | Transfer::Expired => {}
            Transfer::Posted | Transfer::PostedByRebook => return Reply::Refused,
        }
        Reply::Ok
    }

    /// Whether nothing is under way: no handler, no half-done Reserve, nothing in the network.
    fn is_quiet(st: &State) -> bool {
        st.delayed == 0
            && st.handlers.iter().all(Option::is_none)
            && st.reads.iter().all(Option::is_none)
    }

    /// The state after the sweep has run to a fixpoint with no faults left: every call
    /// delivered and answered, no crash. Used at quiet states only.
    pub fn settled(&self, st: &State) -> State {
        let mut st = st.clone();
        let slot = self.sweep_slot();
        let passes_max = 2 + 3 * self.ids.len();
        for _ in 0..passes_max {
            let before = st.clone();
            for id in 0..self.ids.len() {
                if !self.sweep_can_pick(&st, id) {
                    continue;
                }
                self.apply(
                    &mut st,
                    Action::Sweep(u8::try_from(id).expect("ids fit in u8")),
                );
                while let Some(h) = st.handlers[slot] {
                    let outcome = if Self::is_call(h.step) {
                        Outcome::Replied
                    } else {
                        Outcome::Local
                    };
                    self.run(&mut st, slot, outcome);
                }
            }
            if st == before {
                return st;
            }
        }
        panic!("the sweep did not reach a fixpoint in {passes_max} passes");
    }

    fn initial(&self) -> State {
        let ids = self.ids.len();
        State {
            rows: vec![
                Row {
                    phase: Phase::Absent,
                    cancelled: false,
                };
                ids
            ],
            claims: vec![Claim::Absent; self.requests()],
            handlers: vec![None; self.slots.len()],
            reservations: vec![Reservation::ABSENT; ids],
            accounts: self
                .scenario
                .persons
                .iter()
                .map(|p| Account {
                    balance_fen: p.balance_fen,
                    fund_posted_fen: p.fund_posted_fen,
                })
                .collect(),
            reads: vec![None; ids],
            transfers: vec![Transfer::Absent; ids],
            delayed: 0,
            his: vec![Answers::default(); self.requests()],
            post_refused_while_recorded: false,
            ledger_posted_voided: false,
            ledger_refused_already_booked: false,
        }
    }

    /// Whether settlement `id` is complete in all three places.
    fn is_complete_everywhere(st: &State, id: usize) -> bool {
        st.rows[id].phase == Phase::Completed
            && st.reservations[id].hold == Hold::Posted
            && st.transfers[id].is_posted()
    }

    fn acknowledged_settles_complete(&self, st: &State) -> bool {
        // Never OK without the answer: OK only for a recorded settlement.
        let told_ok_wrongly = (0..self.requests()).any(|request| {
            st.his[request].ok
                && !self
                    .request_ids(request)
                    .iter()
                    .any(|&id| st.rows[id].phase.is_recorded())
        });
        if told_ok_wrongly {
            return false;
        }
        if !Self::is_quiet(st) {
            return true;
        }
        let settled = self.settled(st);
        (0..self.requests()).all(|request| {
            !st.his[request].ok
                || self
                    .request_ids(request)
                    .iter()
                    .filter(|&&id| settled.rows[id].phase.is_recorded())
                    .all(|&id| Self::is_complete_everywhere(&settled, id))
        })
    }

    fn nothing_stays_in_doubt(&self, st: &State) -> bool {
        if !Self::is_quiet(st) {
            return true;
        }
        let settled = self.settled(st);
        settled.rows.iter().all(|row| !row.phase.is_in_doubt())
            && settled
                .reservations
                .iter()
                .all(|r| r.hold != Hold::Reserved)
            && settled.transfers.iter().all(|t| *t != Transfer::Pending)
    }

    fn the_parties_agree(&self, st: &State) -> bool {
        let agree = |id: usize| {
            let phase = st.rows[id].phase;
            let hold = st.reservations[id].hold;
            let transfer = st.transfers[id];
            let held = matches!(hold, Hold::Reserved | Hold::Posted);
            let booked =
                matches!(transfer, Transfer::Pending | Transfer::Expired) || transfer.is_posted();
            let released = matches!(hold, Hold::Absent | Hold::Tombstone | Hold::Voided);
            let unbooked = matches!(
                transfer,
                Transfer::Absent | Transfer::Tombstone | Transfer::Voided | Transfer::Expired
            );
            let ok = match phase {
                Phase::Completed => hold == Hold::Posted && transfer.is_posted(),
                // A legacy id books pending before it records; the fixed protocol books once,
                // posted, after the insured city posts.
                Phase::Recorded if self.ids[id].legacy => held && booked,
                Phase::Recorded => held && (transfer == Transfer::Absent || transfer.is_posted()),
                Phase::Voided => released && unbooked,
                Phase::Absent | Phase::Pending | Phase::Voiding => true,
            };
            ok && (hold != Hold::Posted || phase.is_recorded())
                && (!transfer.is_posted() || phase.is_recorded())
        };
        !st.ledger_posted_voided && (0..st.rows.len()).all(agree)
    }

    fn money_stays_in_bounds(&self, st: &State) -> bool {
        !st.post_refused_while_recorded
            && st
                .accounts
                .iter()
                .zip(&self.scenario.persons)
                .all(|(a, p)| a.balance_fen >= 0 && a.fund_posted_fen <= p.annual_cap_fen)
    }

    fn one_effect_per_message_id(&self, st: &State) -> bool {
        let one_recorded = self.settle_ids.iter().all(|ids| {
            ids.iter()
                .filter(|&&id| st.rows[id].phase.is_recorded())
                .count()
                <= 1
        });
        one_recorded && st.his.iter().all(|a| !(a.ok && a.failed))
    }

    /// Describes one action taken from `st`, for a counterexample.
    pub fn describe(&self, st: &State, action: Action) -> String {
        let who = |slot: usize| match self.slots[slot] {
            Origin::Settle {
                request,
                attempt: 0,
            } => format!("Settle m{request}"),
            Origin::Settle { request, attempt } => format!("Settle m{request} (replay {attempt})"),
            Origin::Undo(undo) => {
                let request = self.undo_request(undo);
                match self.scenario.undos[undo] {
                    Undo::Cancel { settle } => format!("CancelSettlement m{request} of m{settle}"),
                    Undo::Reverse { settle } => {
                        format!("ReverseByMessageId(m{settle}) m{request}")
                    }
                }
            }
            Origin::Sweep => "sweep".to_owned(),
        };
        match action {
            Action::HisSends(request) => {
                let request = usize::from(request);
                let what = match self.scenario.settles.get(request) {
                    Some(settle) => format!(
                        "Settle m{request} ({} at {})",
                        self.scenario.persons[settle.person].name, settle.hospital
                    ),
                    None => who(self.undo_slot(request - self.scenario.settles.len())),
                };
                match (self.his_send(st, request), st.claims[request]) {
                    (Some(HisSend::Spawn(_)), Claim::Absent) => format!("HIS sends {what}"),
                    (Some(HisSend::Spawn(_)), _) => format!("HIS replays {what}"),
                    _ => format!("HIS replays {what} and is told its first answer"),
                }
            }
            Action::Run { slot, outcome } => {
                let slot = usize::from(slot);
                let h = st.handlers[slot].expect("a live handler runs");
                let step = match h.step {
                    Step::Intent => "claims its message id and writes the intent",
                    Step::Look => "looks up what it undoes",
                    Step::Reserve => "calls Reserve at the insured city",
                    Step::AwaitReserve => "gives up waiting for Reserve",
                    Step::Book => "calls CreateTransfer(pending) at the ledger",
                    Step::BookPosted => "calls CreateTransfer(posted) at the ledger",
                    Step::Record => "records (Pending -> Recorded)",
                    Step::PostInsured => "calls Post at the insured city",
                    Step::PostLedger => "calls PostPendingTransfer at the ledger",
                    Step::Complete => "completes (Recorded -> Completed)",
                    Step::Decide => "decides the void (Pending -> Voiding)",
                    Step::VoidInsured => "calls Void at the insured city",
                    Step::VoidLedger => "calls VoidPendingTransfer at the ledger",
                    Step::CarryVoids => "reads the decided voids of its visit to carry them",
                    Step::FinishVoid => match self.variant {
                        Variant::VoidAfterPeers => "moves Pending -> Voided",
                        _ => "finishes the void (Voiding -> Voided)",
                    },
                };
                let fate = match outcome {
                    Outcome::Local => "",
                    Outcome::Replied => ": replied",
                    Outcome::ReplyLost => ": delivered, reply lost",
                    Outcome::Lost => ": request lost",
                    Outcome::Delayed => ": request delayed",
                };
                format!("{} {step} for s{}{fate}", who(slot), h.id)
            }
            Action::Crash(slot) => format!("{} crashes", who(usize::from(slot))),
            Action::Sweep(id) => {
                format!("sweep picks s{id} ({:?})", st.rows[usize::from(id)].phase)
            }
            Action::LockAndReserve(id) => format!(
                "insured city takes the lock and holds s{id} with the balance it read before ({} fen)",
                st.reads[usize::from(id)].unwrap_or_default()
            ),
            Action::AbandonRead(id) => {
                format!("insured city crashes in the middle of Reserve(s{id})")
            }
            Action::Deliver(msg) => format!("network delivers a delayed {msg}"),
            Action::Drop(msg) => format!("network loses a delayed {msg}"),
            Action::ExpireTransfer(id) => format!("ledger expires the pending transfer of s{id}"),
            Action::ExpireReservation(id) => {
                format!("insured city lets the reservation of s{id} expire")
            }
        }
    }

    /// Describes a state: each settlement id at the three parties, the accounts, the HIS.
    pub fn summarize(&self, st: &State) -> String {
        let mut out = String::new();
        for (id, info) in self.ids.iter().enumerate() {
            let what = match info.kind {
                IdKind::Settle {
                    request,
                    attempt: 0,
                } => format!("Settle m{request}"),
                IdKind::Settle { request, attempt } => {
                    format!("Settle m{request} replay {attempt}")
                }
                IdKind::Cancellation { target, undo } => {
                    format!("cancellation of s{target} by m{}", self.undo_request(undo))
                }
            };
            let r = st.reservations[id];
            let _ = writeln!(
                out,
                "  s{id} ({what}): treatment {:?}{}, insured {:?} (fund {} fen, account {} fen{}), ledger {:?}",
                st.rows[id].phase,
                if st.rows[id].cancelled {
                    " cancelled"
                } else {
                    ""
                },
                r.hold,
                r.fund_fen,
                r.account_fen,
                if r.expired { ", expired" } else { "" },
                st.transfers[id],
            );
        }
        for (account, person) in st.accounts.iter().zip(&self.scenario.persons) {
            let _ = writeln!(
                out,
                "  {}: balance {} fen, fund posted {} of {} fen",
                person.name, account.balance_fen, account.fund_posted_fen, person.annual_cap_fen
            );
        }
        for (request, answers) in st.his.iter().enumerate() {
            let _ = writeln!(
                out,
                "  HIS request {request}: ok {}, failed {}",
                answers.ok, answers.failed
            );
        }
        if st.post_refused_while_recorded {
            out.push_str("  the insured city refused a Post of a recorded settlement\n");
        }
        if st.ledger_posted_voided {
            out.push_str("  the ledger was asked to post a voided transfer\n");
        }
        if st.ledger_refused_already_booked {
            out.push_str("  the ledger refused a booking SETTLEMENT_ALREADY_BOOKED\n");
        }
        out
    }

    /// A path as numbered steps, then its last state and, when the last state is quiet, the
    /// state after the fault-free sweep. Each step pairs a state with the action taken from it;
    /// the last has none.
    pub fn explain(&self, steps: &[(State, Option<Action>)]) -> String {
        let mut out = String::new();
        let mut n = 0;
        for (st, action) in steps {
            if let Some(action) = action {
                n += 1;
                let _ = writeln!(out, "{n:3}. {}", self.describe(st, *action));
            }
        }
        let last = &steps.last().expect("a path has a last state").0;
        let _ = write!(out, "last state:\n{}", self.summarize(last));
        if Self::is_quiet(last) {
            let _ = write!(
                out,
                "after the sweep runs to a fixpoint with no faults:\n{}",
                self.summarize(&self.settled(last))
            );
        }
        out
    }
}

/// What an HIS send does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HisSend {
    /// A request handler starts in this slot.
    Spawn(usize),
    /// The treatment city answers from the claim.
    Replay,
}

fn answers_or(a: Answers, b: Answers) -> Answers {
    Answers {
        ok: a.ok || b.ok,
        failed: a.failed || b.failed,
    }
}

impl Model for SettlementModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![self.initial()]
    }

    fn actions(&self, st: &State, actions: &mut Vec<Action>) {
        let faults = self.scenario.faults;
        let small = |n: usize| u8::try_from(n).expect("indexes fit in u8");
        for request in 0..self.requests() {
            if self.his_send(st, request).is_some() {
                actions.push(Action::HisSends(small(request)));
            }
        }
        for (slot, handler) in st.handlers.iter().enumerate() {
            let Some(h) = handler else { continue };
            let slot = small(slot);
            if Self::is_call(h.step) {
                actions.push(Action::Run {
                    slot,
                    outcome: Outcome::Replied,
                });
                if faults.loss {
                    for outcome in [Outcome::ReplyLost, Outcome::Lost] {
                        actions.push(Action::Run { slot, outcome });
                    }
                }
                if faults.delay {
                    actions.push(Action::Run {
                        slot,
                        outcome: Outcome::Delayed,
                    });
                }
            } else {
                actions.push(Action::Run {
                    slot,
                    outcome: Outcome::Local,
                });
            }
            if faults.crash {
                actions.push(Action::Crash(slot));
            }
        }
        if st.handlers[self.sweep_slot()].is_none() {
            for id in 0..self.ids.len() {
                if self.sweep_can_pick(st, id) {
                    actions.push(Action::Sweep(small(id)));
                }
            }
        }
        for (id, read) in st.reads.iter().enumerate() {
            if read.is_some() {
                actions.push(Action::LockAndReserve(small(id)));
                if faults.crash {
                    actions.push(Action::AbandonRead(small(id)));
                }
            }
        }
        for id in 0..self.ids.len() {
            for kind in MsgKind::ALL {
                let msg = Msg {
                    id: small(id),
                    kind,
                };
                if st.delayed & msg.bit() != 0 {
                    actions.push(Action::Deliver(msg));
                    actions.push(Action::Drop(msg));
                }
            }
            if faults.ledger_expiry && st.transfers[id] == Transfer::Pending {
                actions.push(Action::ExpireTransfer(small(id)));
            }
            let reservation = st.reservations[id];
            if self.variant == Variant::ReservationExpires
                && reservation.hold == Hold::Reserved
                && !reservation.expired
                && matches!(self.ids[id].kind, IdKind::Settle { .. })
            {
                actions.push(Action::ExpireReservation(small(id)));
            }
        }
    }

    fn next_state(&self, st: &State, action: Action) -> Option<State> {
        let mut next = st.clone();
        self.apply(&mut next, action);
        Some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut properties = vec![
            Property::always(ACKNOWLEDGED_SETTLES_COMPLETE, |m: &Self, st: &State| {
                m.acknowledged_settles_complete(st)
            }),
            Property::always(NOTHING_STAYS_IN_DOUBT, |m: &Self, st: &State| {
                m.nothing_stays_in_doubt(st)
            }),
            Property::always(THE_PARTIES_AGREE, |m: &Self, st: &State| {
                m.the_parties_agree(st)
            }),
            Property::always(MONEY_STAYS_IN_BOUNDS, |m: &Self, st: &State| {
                m.money_stays_in_bounds(st)
            }),
            Property::always(ONE_EFFECT_PER_MESSAGE_ID, |m: &Self, st: &State| {
                m.one_effect_per_message_id(st)
            }),
            Property::always(ONE_LIVE_BOOKING_PER_SETTLEMENT, |_: &Self, st: &State| {
                !st.ledger_refused_already_booked
            }),
            Property::sometimes(SOME_SETTLE_COMPLETES, |m: &Self, st: &State| {
                (0..m.scenario.settles.len()).any(|request| {
                    st.his[request].ok
                        && m.settle_ids[request]
                            .iter()
                            .any(|&id| Self::is_complete_everywhere(st, id))
                })
            }),
            Property::sometimes(SOME_SETTLE_IS_VOIDED, |_: &Self, st: &State| {
                (0..st.rows.len()).any(|id| {
                    st.rows[id].phase == Phase::Voided
                        && matches!(st.reservations[id].hold, Hold::Voided | Hold::Tombstone)
                        && matches!(st.transfers[id], Transfer::Voided | Transfer::Tombstone)
                })
            }),
        ];
        if !self.cancellations.is_empty() {
            properties.push(Property::sometimes(
                SOME_CANCELLATION_COMPLETES,
                |m: &Self, st: &State| {
                    m.cancellations
                        .iter()
                        .any(|&c| Self::is_complete_everywhere(st, c))
                },
            ));
        }
        let retried = (0..self.cancellations.len()).any(|undo| {
            self.other_cancellations(undo, self.undo_target(undo))
                .next()
                .is_some()
        });
        if retried {
            properties.push(Property::sometimes(
                SOME_RETRIED_CANCELLATION_COMPLETES,
                |m: &Self, st: &State| {
                    (0..m.cancellations.len()).any(|undo| {
                        Self::is_complete_everywhere(st, m.cancellation_id(undo))
                            && m.other_cancellations(undo, m.undo_target(undo))
                                .any(|other| {
                                    st.rows[other].phase == Phase::Voided
                                        && st.reservations[other].hold == Hold::Voided
                                        && st.transfers[other] == Transfer::Voided
                                })
                    })
                },
            ));
        }
        properties
    }
}
