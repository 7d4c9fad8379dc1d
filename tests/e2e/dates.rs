//! The dates an HIS sends, held to what a hospital would expect (issue 17, acceptance 4): a visit
//! begins neither in the future nor before the look-back, a fee line lies within its visit, and
//! a Timestamp the type cannot hold is named out of range, not missing. Each refusal is
//! INVALID_ARGUMENT naming the field, and stores nothing: the refused message id is free after.

use prost_types::Timestamp;
use yitong_proto::settlement::v1::FeeLine;
use yitong_proto::settlement::v1::settlement_service_server::SettlementService;
use yitong_sandbox::{BINZHOU, JINAN, ZIBO, network_test};
use yitong_settlement::treatment::TreatmentOptions;

use crate::settlement::{
    his_request, hospital, line, own_node, register_request, upload_request, visit_lines,
};
use crate::support::assert_invalid;

const DAY_SECONDS: i64 = 86_400;

/// Seconds since the Unix epoch now.
fn now_seconds() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    i64::try_from(elapsed.as_secs()).expect("seconds fit")
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// 0000-01-01T00:00:00Z, a year before the first a Timestamp may hold.
const YEAR_ZERO: i64 = -62_167_219_200;
/// 9999-12-31T00:00:00Z, within what a Timestamp may hold.
const YEAR_9999: i64 = 253_402_214_400;

/// Asserts `status` refuses `field` with a reason that says `reason`.
fn assert_refused_as(status: &tonic::Status, field: &str, reason: &str) {
    assert_invalid(status, field);
    assert!(
        status.message().contains(reason),
        "{field}: expected \"{reason}\", got {status:?}"
    );
}

network_test! {
    /// Proves RegisterVisit refuses a visit that began in the future (tomorrow, 9999-12-31),
    /// before the look-back (800 days ago; a year by default), or at an instant a Timestamp
    /// cannot hold (0000-01-01, seconds past i64's range of milliseconds, negative nanos),
    /// each naming `began_at` and saying which; that an absent `began_at` is still "required";
    /// and that a visit begun 364 days ago registers, under the message id every refusal left
    /// free.
    async fn a_visit_begins_within_the_look_back_and_not_in_the_future(net) {
        let mut his = net.his_settlement(&hospital(ZIBO));
        let now = now_seconds();
        let cases = [
            (at(now + DAY_SECONDS), "must not be in the future"),
            (at(YEAR_9999), "must not be in the future"),
            (at(now - 800 * DAY_SECONDS), "must be within the last 365 days"),
            (at(YEAR_ZERO), "is out of range"),
            (at(i64::MAX), "is out of range"),
            (Some(Timestamp { seconds: now, nanos: -1 }), "is out of range"),
            (None, "is required"),
        ];
        for (began_at, reason) in cases {
            let mut request = register_request("R-dates", ZIBO, JINAN, 1);
            request.began_at = began_at;
            let status = his.register_visit(request).await.unwrap_err();
            assert_refused_as(&status, "began_at", reason);
        }
        let mut request = register_request("R-dates", ZIBO, JINAN, 1);
        request.began_at = at(now - 364 * DAY_SECONDS);
        let visit = his
            .register_visit(request)
            .await
            .expect("a visit within the look-back registers, under the refused message id")
            .into_inner()
            .visit
            .expect("visit");
        assert_eq!(visit.began_at, at(now - 364 * DAY_SECONDS));
    }
}

network_test! {
    /// Proves the look-back is the node's setting (`TreatmentOptions::visit_look_back_days`):
    /// with 30 days, a visit begun 31 days ago is refused and one begun 29 days ago registers.
    async fn the_look_back_is_a_setting(net) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let node = own_node(net, dir.path()).await.with_options(TreatmentOptions {
            visit_look_back_days: 30,
            pending_grace_ms: 0,
            ..TreatmentOptions::default()
        });
        let now = now_seconds();
        let mut request = register_request("R-look-back", BINZHOU, JINAN, 1);
        request.began_at = at(now - 31 * DAY_SECONDS);
        let status = node.register_visit(his_request(request.clone())).await.unwrap_err();
        assert_refused_as(&status, "began_at", "must be within the last 30 days");
        request.began_at = at(now - 29 * DAY_SECONDS);
        node.register_visit(his_request(request))
            .await
            .expect("a visit begun 29 days ago registers");
    }
}

network_test! {
    /// Proves UploadFeeLines refuses a line dated in the future (400 days ahead, 9999-12-31),
    /// before its visit began (a minute before), or at an instant a Timestamp cannot hold
    /// (0000-01-01), naming the line's `occurred_at` (the second line's too); and that lines
    /// within the visit are classified and stored under the message id the refusals left free,
    /// none of the refused ones with them.
    async fn fee_lines_lie_within_their_visit(net) {
        let mut his = net.his_settlement(&hospital(ZIBO));
        let now = now_seconds();
        let registered = register_request("R-lines", ZIBO, JINAN, 2);
        let began = registered.began_at.expect("the fixture's visit began a minute ago").seconds;
        let visit = his.register_visit(registered).await.expect("registered").into_inner().visit.expect("visit");

        let dated = |serial: &str, occurred_at: Option<Timestamp>| FeeLine {
            occurred_at,
            ..line(serial, "001102000010000", "1", "20.00", "20.00")
        };
        let cases = [
            (at(now + 400 * DAY_SECONDS), "must not be in the future"),
            (at(YEAR_9999), "must not be in the future"),
            (at(began - 60), "must not be before the visit began"),
            (at(YEAR_ZERO), "is out of range"),
        ];
        for (occurred_at, reason) in cases {
            let lines = vec![dated("1", at(began)), dated("2", occurred_at)];
            let status = his.upload_fee_lines(upload_request("U-lines", &visit, lines)).await.unwrap_err();
            assert_refused_as(&status, "lines[1].occurred_at", reason);
        }

        let mut lines = visit_lines();
        lines[0].occurred_at = at(began);
        lines[1].occurred_at = at(now);
        let uploaded = his
            .upload_fee_lines(upload_request("U-lines", &visit, lines))
            .await
            .expect("lines within the visit are stored, under the refused message id")
            .into_inner();
        assert_eq!(uploaded.lines.len(), 3);
        let visit = uploaded.visit.expect("visit");
        assert_eq!(visit.fee_line_count, 3, "no refused line was stored");
        assert_eq!(visit.fee_total, "3052.00");
    }
}
