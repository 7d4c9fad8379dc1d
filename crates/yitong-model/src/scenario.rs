//! The bounded worlds the model checks: who is insured where, which Settles the hospitals send,
//! the cancellations or reversals of them, and which faults the network and the nodes may
//! commit.

/// Jinan's region code: the treatment city of every scenario.
pub const JINAN: u32 = 370_100;
/// Zibo's region code: the insured city of the person treated away from home.
pub const ZIBO: u32 = 370_300;

/// What one settlement asks the fund to pay, in fen, before the annual cap applies.
pub const FUND_PAY_FEN: i64 = 30_000;
/// What one settlement asks the personal account to pay, in fen, before the balance applies.
pub const ACCOUNT_PAY_FEN: i64 = 5_000;
/// The annual cap of every person in the scenarios, in fen.
pub const ANNUAL_CAP_FEN: i64 = 1_500_000;

/// An insured person and the state of their year when the scenario starts.
#[derive(Clone, Debug)]
pub struct Person {
    pub name: &'static str,
    /// The city whose benefit service holds the person's yearly totals and personal account.
    pub insured_city: u32,
    /// The personal-account balance, in fen.
    pub balance_fen: i64,
    pub annual_cap_fen: i64,
    /// The fund pay already posted this year, in fen: the cap's room is the difference.
    pub fund_posted_fen: i64,
}

impl Person {
    /// A person whose balance covers exactly one settlement's account pay and whose cap has room
    /// for exactly one settlement's fund pay: two concurrent settlements must share them.
    pub fn room_for_one(name: &'static str, insured_city: u32) -> Self {
        Self {
            name,
            insured_city,
            balance_fen: ACCOUNT_PAY_FEN,
            annual_cap_fen: ANNUAL_CAP_FEN,
            fund_posted_fen: ANNUAL_CAP_FEN - FUND_PAY_FEN,
        }
    }
}

/// One Settle an HIS sends (and may replay) under its own message id.
#[derive(Clone, Debug)]
pub struct SettleRequest {
    /// Index into [`Scenario::persons`].
    pub person: usize,
    pub treatment_city: u32,
    /// Two Settles of one person come from two hospitals, so nothing orders them.
    pub hospital: &'static str,
    pub fund_pay_fen: i64,
    pub account_pay_fen: i64,
}

/// A request that undoes a settlement, under its own message id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undo {
    /// CancelSettlement (2208) of the settlement the HIS got OK for under Settle `settle`.
    Cancel { settle: usize },
    /// ReverseByMessageId (2601) of Settle `settle`, sent whenever the HIS likes, answered or not.
    Reverse { settle: usize },
}

impl Undo {
    /// The Settle request whose settlement this undoes.
    pub fn settle(self) -> usize {
        match self {
            Undo::Cancel { settle } | Undo::Reverse { settle } => settle,
        }
    }
}

/// The faults the checker may inject. Every scenario of the test suite turns on all the faults
/// it can afford; the bigger scenarios turn off the ones that only multiply interleavings
/// another scenario already covers.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// A request to the insured city or the ledger, or its reply, may be lost.
    pub loss: bool,
    /// A request may be held back and delivered later, after anything else (delay, reordering
    /// and duplication: the call itself times out while a copy stays in the network).
    pub delay: bool,
    /// A request handler or the sweep at the treatment city, or a Reserve half done at the
    /// insured city, may vanish between two steps; what was committed stays.
    pub crash: bool,
    /// The HIS may replay any request under the same message id.
    pub replay: bool,
    /// The ledger may expire a pending transfer.
    pub ledger_expiry: bool,
    /// The sweep may void an intent whose request handler is alive but slower than the grace
    /// period, not only one whose handler crashed.
    pub slow_past_grace: bool,
}

impl Faults {
    pub const ALL: Faults = Faults {
        loss: true,
        delay: true,
        crash: true,
        replay: true,
        ledger_expiry: true,
        slow_past_grace: true,
    };
}

/// A bounded world: the persons, the Settles, the undos, and the faults.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub persons: Vec<Person>,
    pub settles: Vec<SettleRequest>,
    /// The undos, each under its own message id. The HIS sends the first when it likes (a
    /// cancellation once it was told OK for the settlement); it sends each later one, a retry
    /// under a new message id, once the one before has written its intent and its call has
    /// ended without OK.
    pub undos: Vec<Undo>,
    /// The requests (Settles by index, then undos) whose handlers run the protocol before issue
    /// 21, as a node not yet upgraded does, or left their rows in the store when it stopped:
    /// they book the transfer pending before the record and post it at completion. The
    /// upgraded node's sweep and undos carry such a row on by the transfer its record stored.
    pub legacy_requests: Vec<usize>,
    pub faults: Faults,
}

impl Scenario {
    /// Li is insured in Zibo and treated in Jinan; Wang is insured and treated in Jinan.
    fn li() -> Person {
        Person::room_for_one("li", ZIBO)
    }

    fn wang() -> Person {
        Person::room_for_one("wang", JINAN)
    }

    fn settle(person: usize, hospital: &'static str) -> SettleRequest {
        SettleRequest {
            person,
            treatment_city: JINAN,
            hospital,
            fund_pay_fen: FUND_PAY_FEN,
            account_pay_fen: ACCOUNT_PAY_FEN,
        }
    }

    /// One cross-city Settle under every fault, and nothing else.
    pub fn one_settle() -> Self {
        Self {
            name: "one cross-city settle",
            persons: vec![Self::li()],
            settles: vec![Self::settle(0, "qilu hospital")],
            undos: Vec::new(),
            legacy_requests: Vec::new(),
            faults: Faults::ALL,
        }
    }

    /// One cross-city Settle of the protocol before issue 21 (a node not yet upgraded books the
    /// transfer pending before it records, and posts it at completion), racing the upgraded
    /// node's sweep, under every fault: the rows such a node leaves in the store, and the
    /// rolling upgrade, stay safe. Its ledger expiry and rebook are only reachable here.
    pub fn one_legacy_settle() -> Self {
        Self {
            name: "one cross-city settle of the protocol before issue 21",
            legacy_requests: vec![0],
            ..Self::one_settle()
        }
    }

    /// One same-city Settle of the protocol before issue 21 and a ReverseByMessageId of it at an
    /// upgraded node, racing it, under every fault: the reversal's void must reach the pending
    /// transfer such a Settle books before it records.
    pub fn legacy_settle_and_reverse() -> Self {
        Self {
            name: "one same-city settle of the protocol before issue 21 and its reversal",
            legacy_requests: vec![0],
            ..Self::settle_and_reverse()
        }
    }

    /// One same-city Settle and a ReverseByMessageId of it, racing it, under every fault.
    pub fn settle_and_reverse() -> Self {
        Self {
            name: "one same-city settle and its reversal",
            persons: vec![Self::wang()],
            settles: vec![Self::settle(0, "provincial hospital")],
            undos: vec![Undo::Reverse { settle: 0 }],
            legacy_requests: Vec::new(),
            faults: Faults::ALL,
        }
    }

    /// One cross-city Settle and a CancelSettlement of it once the HIS has its OK.
    pub fn settle_and_cancel() -> Self {
        Self {
            name: "one cross-city settle and its cancellation",
            persons: vec![Self::li()],
            settles: vec![Self::settle(0, "qilu hospital")],
            undos: vec![Undo::Cancel { settle: 0 }],
            legacy_requests: Vec::new(),
            faults: Faults::ALL,
        }
    }

    /// One cross-city Settle and two CancelSettlements of it under two message ids: the first
    /// may fail after it booked its transfer at the ledger, its void decided but not carried,
    /// and the HIS then retries under a new message id. The ledger books one live cancellation
    /// per settlement, so the retry must not book while the first's transfer is live. Only a
    /// legacy cancellation books before it records, so the first is one: written by a node not
    /// yet upgraded (or left by it), retried at an upgraded one. Every
    /// fault but replays, which only tell the HIS a cancellation's answer again and which the
    /// one-cancellation scenario covers: losses and the sweep's race with a live handler make
    /// the first fail with its booking live, crashes and expiry leave it live or not, and
    /// delays bring a booking or a void of the first in after the second has started. With
    /// replays this scenario has 2.1 million states (about 85 s in a debug build). An HIS
    /// that retries while the first call still runs (it timed out) races the two handlers:
    /// checked once and held, at 196 thousand states without delays and 2.5 million (about
    /// 100 s) without replays, too many for the test.
    pub fn settle_and_two_cancels() -> Self {
        Self {
            name: "one cross-city settle and two cancellations of it",
            undos: vec![Undo::Cancel { settle: 0 }, Undo::Cancel { settle: 0 }],
            legacy_requests: vec![1],
            faults: Faults {
                replay: false,
                ..Faults::ALL
            },
            ..Self::settle_and_cancel()
        }
    }

    /// Two concurrent Settles of one person from two hospitals, sharing room for one
    /// settlement's fund pay and one settlement's account pay. Delayed copies are left to the
    /// one-settle scenarios: a late request acts on its own settlement id only, just as a
    /// delivered request whose reply was lost does, while the two Settles meet only at the
    /// person's lock. With them this scenario has 9.3 million states (about five minutes).
    pub fn two_concurrent_settles() -> Self {
        Self {
            name: "two concurrent cross-city settles of one person",
            persons: vec![Self::li()],
            settles: vec![
                Self::settle(0, "qilu hospital"),
                Self::settle(0, "provincial hospital"),
            ],
            undos: Vec::new(),
            legacy_requests: Vec::new(),
            faults: Faults {
                delay: false,
                ..Faults::ALL
            },
        }
    }

    /// Li's two concurrent Settles and a reversal of the first, racing both. Only losses and
    /// crashes: the other faults act on one settlement id at a time (or, for replays, only
    /// on what the HIS is told) and the scenarios above cover them.
    pub fn two_settles_and_reverse() -> Self {
        Self {
            name: "two concurrent cross-city settles of one person and a reversal",
            undos: vec![Undo::Reverse { settle: 0 }],
            faults: Faults {
                loss: true,
                delay: false,
                crash: true,
                replay: false,
                ledger_expiry: false,
                slow_past_grace: false,
            },
            ..Self::two_concurrent_settles()
        }
    }

    /// The whole bounded network: Li's two concurrent Settles in Jinan and a reversal of the
    /// first, and Wang's same-city Settle, under every fault. Too big to exhaust in a debug
    /// build; the test explores it to a depth bound.
    pub fn network() -> Self {
        Self {
            name: "two persons, two cities, three settles and a reversal",
            persons: vec![Self::li(), Self::wang()],
            settles: vec![
                Self::settle(0, "qilu hospital"),
                Self::settle(0, "provincial hospital"),
                Self::settle(1, "provincial hospital"),
            ],
            undos: vec![Undo::Reverse { settle: 0 }],
            legacy_requests: Vec::new(),
            faults: Faults::ALL,
        }
    }
}
