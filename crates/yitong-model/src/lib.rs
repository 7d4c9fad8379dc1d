//! An exhaustive model check of the cross-city settlement protocol (ARCHITECTURE.md, "One
//! cross-city Settle"), with [stateright](https://docs.rs/stateright).
//!
//! # The state machine
//!
//! Three parties per settlement id, each a plain Rust value with exact integer amounts (`i64`
//! fen), in [`state::State`]:
//!
//! - the treatment city: a row per settlement id, Pending -> Recorded -> Completed or
//!   Pending -> Voiding -> Voided, with `cancelled` set when a cancellation of it records; a
//!   claim per message id (absent, claimed, dead); and a slot per handler: each Settle's
//!   request handler, each undo's (cancel or reverse) and the recovery sweep's. A handler runs
//!   `step_intent`, `step_reserve`, `step_record` and `step_complete` (Post at the insured city,
//!   then the ledger's one booking, posted at once) as separate actions; a failure before
//!   Recorded (a refused call among them) decides the void
//!   (Pending -> Voiding) and then voids at the insured city and the ledger; a failure after
//!   Recorded leaves completion to the sweep. A cancellation's intent is refused
//!   SETTLEMENT_IN_PROGRESS, storing nothing, while another cancellation of the settlement is
//!   pending or voiding; before it, the undo carries such a decided void itself
//!   (`carry_voids_of_visit`).
//!   The sweep picks any row: it voids a Pending one whose handler is gone (or, with
//!   `slow_past_grace`, slower than the grace), finishes a Voiding one, completes a Recorded one.
//!   A request of the protocol before issue 21 (`Scenario::legacy_requests`: a node not yet
//!   upgraded, or the rows it left) books its transfer pending between Reserve and the record
//!   (`step_book`) and posts it at completion; every actor completes such a row its way, as the
//!   transfer its record stored says, and the void path still voids at the ledger for it.
//! - the insured city: a reservation per settlement id (absent, Reserved, Posted, Voided,
//!   Tombstone) with the fund pay and account pay it holds, and per person the balance and the
//!   fund pay posted this year. Reserve, under the person's lock, holds
//!   `min(asked, cap - posted - held)` of fund pay and `min(asked, balance - held)` of account
//!   pay; Post moves them; a cancellation holds nothing and gives back at Post.
//! - the ledger: a transfer per settlement id (absent, Pending, Posted, Voided, Expired,
//!   PostedByRebook, Tombstone). The fixed protocol only ever books it posted, after the
//!   record; only a legacy id's is ever pending. It books one live (pending or posted) cancellation per
//!   settlement: a booking of a cancellation while another cancellation of the same settlement
//!   is live is refused SETTLEMENT_ALREADY_BOOKED.
//!
//! The network holds the requests that are delayed (a bit per id and kind); the HIS's side is
//! what it has been told per message id.
//!
//! What the model leaves out, and why that loses no behaviour:
//!
//! - A call to a peer is one action: delivered and answered, delivered with its reply lost,
//!   lost, or delayed (held in the network and delivered later, after anything else, if
//!   ever). Nothing the caller does between sending and hearing back is visible, so the moment
//!   of delivery can be any point of the interleaving and splitting the call adds nothing.
//! - A delayed request is delivered at most once with effect: every request is idempotent and
//!   a settlement id only moves forward, so a second copy changes nothing.
//! - A node crash is modelled per handler (its handlers vanish one after another, and nothing
//!   can observe the order); durable state stays. The insured city's and the ledger's handlers
//!   are one transaction each, so their crash is a lost request or reply; the one exception,
//!   the `BalanceBeforeLock` Reserve, has its two halves and its own crash.
//! - The HIS is told every answer a handler gives: an answer lost on the way only means the
//!   HIS knows less, and property 1 then covers more. It learns the rest by replaying.
//! - Cities are labels: what a city's node does is the same whichever person it serves, and
//!   two persons share no row, reservation, transfer or lock.
//!
//! # Bounds
//!
//! Li is insured in Zibo and treated in Jinan; Wang is insured and treated in Jinan. Each has
//! a balance that covers exactly one settlement's account pay and cap room for exactly one
//! settlement's fund pay. The scenarios ([`scenario::Scenario`]) checked exhaustively by
//! `cargo test` are one Settle; one Settle and its reversal; one Settle and its cancellation;
//! one Settle and two cancellations of it (the second the HIS's retry under a new message id,
//! once the first's call ended without OK; the first a legacy one, since only those book before
//! they record); two concurrent Settles of Li from two hospitals; those two with a reversal of
//! the first; and, for the upgrade, one legacy Settle and one legacy Settle with a reversal.
//! The whole network (Li's two Settles and a reversal, Wang's Settle, every fault) is checked to
//! a depth bound. Each scenario says which faults it turns on and why.
//!
//! # Properties
//!
//! Properties 1 and 2 speak of the end, once faults stop: they are checked at every quiet
//! state (no handler alive, nothing in the network) on the state the sweep reaches when it then
//! runs to a fixpoint with every call answered ([`model::SettlementModel::settled`]).
//!
//! 1. [`model::ACKNOWLEDGED_SETTLES_COMPLETE`]: the HIS is told OK only for a recorded
//!    settlement, and every settlement it was told OK for ends Completed at the treatment
//!    city, Posted at the insured city and posted (or rebooked) at the ledger.
//! 2. [`model::NOTHING_STAYS_IN_DOUBT`]: nothing ends Pending, Voiding or Recorded at the
//!    treatment city, Reserved at the insured city or Pending at the ledger.
//! 3. [`model::THE_PARTIES_AGREE`]: in every state, Completed means Posted at both peers,
//!    Recorded means held at the insured city and, at the ledger, nothing or posted (a legacy
//!    id: booked, pending or posted), a posted reservation
//!    or transfer means a recorded settlement, Voided means released at both peers, and the
//!    ledger is never asked to post a voided transfer.
//! 4. [`model::MONEY_STAYS_IN_BOUNDS`]: no balance below zero, no posted fund pay above the
//!    cap, and no Post of a recorded settlement refused by the insured city.
//! 5. [`model::ONE_EFFECT_PER_MESSAGE_ID`]: at most one recorded settlement per Settle message
//!    id, and never OK and failed told under one message id.
//! 6. [`model::ONE_LIVE_BOOKING_PER_SETTLEMENT`]: the ledger never refuses a booking
//!    SETTLEMENT_ALREADY_BOOKED, which the treatment city could only answer INTERNAL: no
//!    cancellation books while another cancellation of the same settlement is live there.
//!
//! Sanity properties (`sometimes`) show each scenario reaches a completed settlement, a voided
//! one and, with an undo, a completed cancellation, and with two cancellations of a settlement
//! the second completed after the first was booked and voided, so the properties above are
//! not vacuous.
//!
//! # Variants
//!
//! [`model::Variant`] is the fixed protocol or one of the bugs the check must catch. Each test
//! asserts the first property below; an exhaustive run of the variant breaks the others listed.
//!
//! - `VoidAfterPeers`: property 1 (also 2, 3 and 4). The void path voids the peers and then
//!   ignores that Pending -> Voided failed: the HIS is told OK, the reservation is voided, the
//!   settlement stays Recorded forever.
//! - `BalanceBeforeLock`: property 4 (also 1 and 2). Two Reserves hold the whole balance and
//!   the second Post is refused.
//! - `LedgerForgetsVoid`: property 2 (also 3), in the legacy one-Settle scenario. A late Create
//!   books a transfer nothing resolves. The fixed protocol sends the ledger nothing before the
//!   record, so nothing of it can be overtaken by a void: it keeps every property with this
//!   ledger; the ledger keeps its memory of voids for the legacy rows.
//! - `ReservationExpires`: property 4 (also 1 and 2). Another settlement takes the expired
//!   reservation's room and the recorded one can never post.
//! - `ReplayStartsAgain`: property 5 only. A replay writes a second intent while the first is
//!   in flight, and both record; it shows property 5 can fail.
//! - `VoidingNotInFlight`: property 6 only, in the two-cancellation scenario, whose first
//!   cancellation is a legacy one (the path the torture harness found, before issue 21). The first cancellation's booking reply is lost, its void is
//!   decided and does not reach the ledger; the retry counts only pending rows as in flight,
//!   books, and the ledger refuses it as already booked.
//! - `BookedBeforeRecord`: property 2, in the one-Settle scenario. The one booking, posted, made
//!   right after Reserve instead of after the record: a crash before the record leaves the
//!   void decided and a transfer the ledger has posted, which no void takes back.
//!
//! # Running it
//!
//! `cargo test -p yitong-model` checks every scenario and variant (about 20 s of CPU in a
//! debug build, 15 s on two cores; the largest exhaustive scenario, two Settles and a reversal,
//! is 379 thousand states and 6 s of it); `-- --nocapture` prints the state counts and each
//! counterexample step by step.
//! `YITONG_MODEL_DEPTH` sets the depth to which the whole network is explored: 13 without it
//! (489 thousand states), 0 for every reachable state (far beyond a test's budget). Each step
//! deeper costs about two and a half times the last.
//!
//! ```text
//! YITONG_MODEL_DEPTH=16 cargo test -p yitong-model --release fixed_protocol_network_to_depth -- --nocapture
//! ```

pub mod check;
pub mod model;
pub mod scenario;
pub mod state;
