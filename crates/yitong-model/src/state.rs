//! The state of the three parties, the network between them and what the HIS has been told.

use std::fmt;

/// A settlement row's phase at the treatment city.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No intent has been written under this settlement id.
    Absent,
    Pending,
    /// The point of no return: the settlement and the HIS's reply are stored.
    Recorded,
    Completed,
    /// The void is decided and its reason stored; the peers are being told.
    Voiding,
    Voided,
}

impl Phase {
    /// Whether the settlement is past the point of no return.
    pub fn is_recorded(self) -> bool {
        matches!(self, Phase::Recorded | Phase::Completed)
    }

    /// Whether the settlement is neither final nor absent.
    pub fn is_in_doubt(self) -> bool {
        matches!(self, Phase::Pending | Phase::Recorded | Phase::Voiding)
    }
}

/// A settlement row at the treatment city.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Row {
    pub phase: Phase,
    /// Set when a cancellation of this settlement is recorded (`cancelled_by`).
    pub cancelled: bool,
}

/// A message id's claim at the treatment city (`message_replies`, keyed by the sending
/// institution and the id: the model's HIS is one institution, so the id alone names it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Claim {
    Absent,
    /// The id is claimed; the first answer follows from the phase of the row written with it.
    Claimed,
    /// A reversal found no settlement under this id: a later Settle with it is refused.
    Dead,
}

/// A reservation's status at the insured city.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hold {
    Absent,
    Reserved,
    Posted,
    Voided,
    /// A void of an id the insured city had never seen, remembered so a late Reserve is refused.
    Tombstone,
}

/// A reservation at the insured city, keyed by settlement id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reservation {
    pub hold: Hold,
    /// The fund pay held against the annual cap (a cancellation: the fund pay it gives back).
    pub fund_fen: i64,
    /// The account pay held against the balance (a cancellation: the account pay it refunds).
    pub account_fen: i64,
    /// Only in the `ReservationExpires` variant: the hold no longer counts against the cap.
    pub expired: bool,
    /// Set on a settlement's reservation when its cancellation posts.
    pub reversed: bool,
}

impl Reservation {
    pub const ABSENT: Reservation = Reservation {
        hold: Hold::Absent,
        fund_fen: 0,
        account_fen: 0,
        expired: false,
        reversed: false,
    };
}

/// A person's yearly totals and personal account at the insured city.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Account {
    pub balance_fen: i64,
    pub fund_posted_fen: i64,
}

/// A transfer's status at the clearing house's ledger, keyed by settlement id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transfer {
    Absent,
    Pending,
    Posted,
    Voided,
    Expired,
    /// The pending transfer had expired when the treatment city posted it, so it booked a
    /// second transfer, posted at once, instead.
    PostedByRebook,
    /// A void of an id the ledger had never seen, remembered so a late Create is refused.
    Tombstone,
}

impl Transfer {
    pub fn is_posted(self) -> bool {
        matches!(self, Transfer::Posted | Transfer::PostedByRebook)
    }
}

/// A step of a handler at the treatment city: what it does when it next runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Settle or cancellation: claim the message id and write the intent (`step_intent`).
    Intent,
    /// Cancel or reverse: read what the message id or the settlement has come to.
    Look,
    /// Call Reserve at the insured city (`step_reserve`).
    Reserve,
    /// Only in the `BalanceBeforeLock` variant: wait for the insured city to finish a Reserve
    /// that read the balance before it took the lock.
    AwaitReserve,
    /// Legacy only: call CreateTransfer (pending) at the ledger (`step_book`, the step a node of
    /// the protocol before issue 21 took between Reserve and the record).
    Book,
    /// Local: Pending becomes Recorded, or the Settle fails (`step_record`).
    Record,
    /// Call Post at the insured city (`step_complete`, first half).
    PostInsured,
    /// Legacy only: call PostPendingTransfer at the ledger (booking the transfer again, posted,
    /// when the pending one expired).
    PostLedger,
    /// Call CreateTransfer (posted) at the ledger once the insured city posted (`step_complete`,
    /// second half): the transfer's one booking.
    BookPosted,
    /// Local: Recorded becomes Completed.
    Complete,
    /// Local: decide the void, Pending becomes Voiding.
    Decide,
    /// Call Void at the insured city.
    VoidInsured,
    /// Call Void at the ledger.
    VoidLedger,
    /// Local: Voiding becomes Voided (in `VoidAfterPeers`, Pending becomes Voided if it still is).
    FinishVoid,
    /// Cancellation, when its settlement has other cancellations: read which of them has its
    /// void decided, and carry that void (`VoidInsured`, `VoidLedger`, `FinishVoid`) before
    /// the intent (`carry_voids_of_visit`).
    CarryVoids,
}

/// A live handler at the treatment city: a request handler or the sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handler {
    /// The settlement id the next step works on.
    pub id: u8,
    pub step: Step,
}

/// A request to a peer, as a delayed copy of it sits in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MsgKind {
    Reserve,
    PostInsured,
    VoidInsured,
    Create,
    PostLedger,
    VoidLedger,
    BookPosted,
}

impl MsgKind {
    /// How many kinds there are: the bits of one settlement id in [`State::delayed`].
    pub const COUNT: u32 = 7;

    pub const ALL: [MsgKind; 7] = [
        MsgKind::Reserve,
        MsgKind::PostInsured,
        MsgKind::VoidInsured,
        MsgKind::Create,
        MsgKind::PostLedger,
        MsgKind::VoidLedger,
        MsgKind::BookPosted,
    ];
}

/// A request for one settlement id. Every request for one id and kind has the same content
/// whoever sends it, so the id and the kind are the whole message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Msg {
    pub id: u8,
    pub kind: MsgKind,
}

impl Msg {
    /// The message's bit in [`State::delayed`].
    pub fn bit(self) -> u64 {
        1 << (u32::from(self.id) * MsgKind::COUNT + self.kind as u32)
    }
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, to) = match self.kind {
            MsgKind::Reserve => ("Reserve", "insured city"),
            MsgKind::PostInsured => ("Post", "insured city"),
            MsgKind::VoidInsured => ("Void", "insured city"),
            MsgKind::Create => ("CreateTransfer(pending)", "ledger"),
            MsgKind::PostLedger => ("PostPendingTransfer", "ledger"),
            MsgKind::VoidLedger => ("VoidPendingTransfer", "ledger"),
            MsgKind::BookPosted => ("CreateTransfer(posted)", "ledger"),
        };
        write!(f, "{what}(s{}) to the {to}", self.id)
    }
}

/// What the HIS has been answered under one message id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Answers {
    pub ok: bool,
    /// The request failed for good ("voided", "refused").
    pub failed: bool,
}

/// The whole system. Vectors are indexed by settlement id, request, slot or person as their
/// comments say; the model fixes their lengths from the scenario.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Treatment city: one row per settlement id.
    pub rows: Vec<Row>,
    /// Treatment city: one claim per request (the Settles, then the undos).
    pub claims: Vec<Claim>,
    /// Treatment city: one slot per handler the scenario allows (see `Model::slots`).
    pub handlers: Vec<Option<Handler>>,
    /// Insured city: one reservation per settlement id.
    pub reservations: Vec<Reservation>,
    /// Insured city: one account per person.
    pub accounts: Vec<Account>,
    /// Insured city, `BalanceBeforeLock` only: a Reserve that has read this balance (fen)
    /// before taking the person's lock, per settlement id.
    pub reads: Vec<Option<i64>>,
    /// Ledger: one transfer per settlement id.
    pub transfers: Vec<Transfer>,
    /// The network: a bit per delayed request (`Msg::bit`). A copy is delivered at most once
    /// with effect: every request is idempotent, so a second delivery changes nothing.
    pub delayed: u64,
    /// The HIS: the answers per request (the Settles, then the undos).
    pub his: Vec<Answers>,
    /// The insured city refused a Post of a settlement the treatment city had recorded.
    pub post_refused_while_recorded: bool,
    /// The ledger was asked to post a voided transfer.
    pub ledger_posted_voided: bool,
    /// The ledger refused a booking SETTLEMENT_ALREADY_BOOKED: a cancellation of a settlement
    /// another cancellation of which still had a live transfer.
    pub ledger_refused_already_booked: bool,
}
