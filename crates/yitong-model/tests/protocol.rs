//! The model check of the settlement protocol: the fixed protocol keeps every property in every
//! scenario, and each known bug is caught by the property it breaks.

use yitong_model::check::{Options, Report, check, property_names};
use yitong_model::model::{
    ACKNOWLEDGED_SETTLES_COMPLETE, MONEY_STAYS_IN_BOUNDS, NOTHING_STAYS_IN_DOUBT,
    ONE_EFFECT_PER_MESSAGE_ID, ONE_LIVE_BOOKING_PER_SETTLEMENT, SettlementModel, Variant,
};
use yitong_model::scenario::Scenario;

/// How deep the two-person network is explored when `YITONG_MODEL_DEPTH` is not set: a few
/// seconds in a debug build.
const NETWORK_DEPTH_DEFAULT: usize = 13;

/// Checks the fixed protocol over `scenario` and fails with the counterexample of any property
/// that does not hold. An exhaustive run must also reach an example of every `sometimes`
/// property, which shows the scenario exercises completion, voiding and cancellation at all.
fn assert_fixed_protocol_holds(scenario: Scenario, depth_max: Option<usize>) -> Report {
    let model = SettlementModel::new(scenario, Variant::Correct);
    let (always, sometimes) = property_names(&model);
    // One checker thread: cargo runs the tests side by side, and a single thread searches in
    // strict breadth-first order, so a counterexample is as short as they come.
    let options = Options {
        depth_max,
        stop_at: None,
        threads: 1,
    };
    let report = check(model, &options);
    println!("{report}");
    for name in always {
        if let Some(path) = report.discoveries.get(name) {
            panic!("{report}\nproperty \"{name}\" fails:\n{path}");
        }
    }
    if depth_max.is_none() {
        for name in sometimes {
            assert!(
                report.discoveries.contains_key(name),
                "{report}\nno run reaches \"{name}\": the scenario does not exercise it"
            );
        }
    }
    report
}

/// Checks a broken variant over `scenario` and fails unless the checker finds a counterexample
/// to `property`, which it prints.
fn assert_caught(scenario: Scenario, variant: Variant, property: &'static str) -> Report {
    let model = SettlementModel::new(scenario, variant);
    let options = Options {
        depth_max: None,
        stop_at: Some(property),
        threads: 1,
    };
    let report = check(model, &options);
    let Some(path) = report.discoveries.get(property) else {
        panic!("{report}\nno counterexample to \"{property}\": the checker misses the bug");
    };
    println!("{report}\ncounterexample to \"{property}\":\n{path}");
    report
}

#[test]
fn fixed_protocol_one_settle() {
    // Proves a lone cross-city Settle ends complete or voided in all three places under every
    // fault: lost, delayed and duplicated calls, crashes, replays, ledger expiry.
    assert_fixed_protocol_holds(Scenario::one_settle(), None);
}

#[test]
fn fixed_protocol_one_legacy_settle() {
    // Proves a Settle of the protocol before issue 21 (transfer booked pending before the
    // record, posted at completion), as a node not yet upgraded drives it or left it in the
    // store, still ends complete or voided in all three places when the upgraded node's sweep
    // carries it on, under every fault, the ledger's expiry and rebook included.
    assert_fixed_protocol_holds(Scenario::one_legacy_settle(), None);
}

#[test]
fn fixed_protocol_settle_and_reverse() {
    // Proves a reversal racing its Settle at every step either voids it before it is recorded
    // or cancels it after, and never leaves the HIS told OK for a settlement that is undone
    // behind its back; a reversal that finds nothing kills the message id.
    assert_fixed_protocol_holds(Scenario::settle_and_reverse(), None);
}

#[test]
fn fixed_protocol_legacy_settle_and_reverse() {
    // Proves a reversal at an upgraded node racing a Settle of the protocol before issue 21
    // voids it everywhere, its pending transfer in the ledger included, or cancels it after.
    assert_fixed_protocol_holds(Scenario::legacy_settle_and_reverse(), None);
}

#[test]
fn fixed_protocol_settle_and_cancel() {
    // Proves a cancellation runs the same steps as a settlement and gives back exactly what
    // the settlement took, under every fault.
    assert_fixed_protocol_holds(Scenario::settle_and_cancel(), None);
}

#[test]
fn fixed_protocol_settle_and_two_cancels() {
    // Proves a cancellation retried under a new message id after the first failed never books
    // while the first's transfer is live at the ledger: a void decided but not carried holds
    // the visit, the retry carries it first and is refused SETTLEMENT_IN_PROGRESS while it
    // cannot; and that the retry then goes through and gives back exactly once.
    assert_fixed_protocol_holds(Scenario::settle_and_two_cancels(), None);
}

#[test]
fn fixed_protocol_two_concurrent_settles() {
    // Proves two Settles of one person racing for room for one never overdraw the account or
    // pass the cap, and that each recorded settlement can always post.
    assert_fixed_protocol_holds(Scenario::two_concurrent_settles(), None);
}

#[test]
fn fixed_protocol_two_settles_and_reverse() {
    // Proves a reversal of one of two racing Settles gives back only what that one took.
    assert_fixed_protocol_holds(Scenario::two_settles_and_reverse(), None);
}

#[test]
fn fixed_protocol_network_to_depth() {
    // Proves the properties on every path of the whole bounded network (two persons, two
    // cities, three Settles, a reversal, every fault) up to the depth `YITONG_MODEL_DEPTH`
    // names, NETWORK_DEPTH_DEFAULT without it, and on every reachable state with 0.
    let depth_max = match std::env::var("YITONG_MODEL_DEPTH") {
        Ok(depth) => {
            let depth: usize = depth
                .parse()
                .unwrap_or_else(|_| panic!("YITONG_MODEL_DEPTH is not a number: {depth:?}"));
            (depth > 0).then_some(depth)
        }
        Err(_) => Some(NETWORK_DEPTH_DEFAULT),
    };
    assert_fixed_protocol_holds(Scenario::network(), depth_max);
}

#[test]
fn void_after_peers_acknowledges_a_settle_it_cannot_complete() {
    // Proves the checker catches the void path that tells the peers first: a reversal voids
    // the reservation and the transfer, the Settle records in between and tells the HIS OK,
    // and the settlement stays recorded forever. The sweep is kept from racing live handlers
    // here so the counterexample is the reversal's race.
    let mut scenario = Scenario::settle_and_reverse();
    scenario.faults.slow_past_grace = false;
    assert_caught(
        scenario,
        Variant::VoidAfterPeers,
        ACKNOWLEDGED_SETTLES_COMPLETE,
    );
    // The sweep voiding an intent whose handler is slower than the grace races the same way.
    assert_caught(
        Scenario::one_settle(),
        Variant::VoidAfterPeers,
        ACKNOWLEDGED_SETTLES_COMPLETE,
    );
}

#[test]
fn balance_before_lock_overdraws_the_account() {
    // Proves the checker catches a Reserve that reads the balance before the person's lock:
    // two settlements both hold the whole balance and the second Post is refused.
    assert_caught(
        Scenario::two_concurrent_settles(),
        Variant::BalanceBeforeLock,
        MONEY_STAYS_IN_BOUNDS,
    );
}

#[test]
fn ledger_forgets_void_leaves_a_pending_transfer() {
    // Proves the checker catches a ledger that does not remember a void of an unknown
    // transfer: the delayed Create books a pending transfer nothing will ever resolve. Only a
    // legacy Settle books before its record: the fixed protocol sends the ledger nothing a
    // void could overtake.
    assert_caught(
        Scenario::one_legacy_settle(),
        Variant::LedgerForgetsVoid,
        NOTHING_STAYS_IN_DOUBT,
    );
}

#[test]
fn reservation_expires_refuses_a_recorded_post() {
    // Proves the checker catches a reservation that stops holding its room: another
    // settlement takes the room and the recorded one can never post.
    assert_caught(
        Scenario::two_concurrent_settles(),
        Variant::ReservationExpires,
        MONEY_STAYS_IN_BOUNDS,
    );
}

#[test]
fn replay_starts_again_records_twice() {
    // Proves property 5 can fail: a replay that writes a fresh intent while the first attempt
    // is in flight records two settlements under one message id.
    assert_caught(
        Scenario::one_settle(),
        Variant::ReplayStartsAgain,
        ONE_EFFECT_PER_MESSAGE_ID,
    );
}

#[test]
fn voiding_not_in_flight_books_a_second_cancellation() {
    // Proves the checker catches the in-flight check that counts only pending rows (the bug
    // the torture harness found): the first cancellation books, its void is decided but does
    // not reach the ledger, the HIS retries under a new message id, and the ledger refuses the
    // second booking SETTLEMENT_ALREADY_BOOKED.
    assert_caught(
        Scenario::settle_and_two_cancels(),
        Variant::VoidingNotInFlight,
        ONE_LIVE_BOOKING_PER_SETTLEMENT,
    );
}

#[test]
fn booked_before_record_leaves_a_void_it_cannot_carry() {
    // Proves the checker catches the one ledger booking made too early: booked posted right
    // after Reserve, before the record, a failure then decides the void of a settlement whose
    // transfer the ledger has posted; the ledger refuses the void and the settlement stays
    // voiding, in doubt, for good.
    assert_caught(
        Scenario::one_settle(),
        Variant::BookedBeforeRecord,
        NOTHING_STAYS_IN_DOUBT,
    );
}
