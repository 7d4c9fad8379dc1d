//! Cross-city filing (异地就医备案): the insured city's bureau files and cancels its insured
//! persons' filings and sets its filing policy toward each treatment city, as data; a visit
//! elsewhere settles under the filing in force on its date, the benefit check names a missing
//! one, and the HIS reads the person's filings (5304-style).

use rust_decimal::Decimal;
use std::str::FromStr;
use tonic::Code;
use yitong_proto::identity::v1::InsuranceType;
use yitong_proto::settlement::v1::{
    BenefitRefusalReason as Reason, CancelFilingRequest, CheckBenefitRequest, FileFilingRequest,
    Filing, FilingKind, FilingPolicy, FilingStatus, GetFilingPolicyRequest, ListFilingsRequest,
    MedicalType, QueryFilingsRequest, SetFilingPolicyRequest, Settlement, UnfiledVisit,
};
use yitong_sandbox::{DONGYING, JINAN, Sandbox, ZIBO, network_test};

use crate::settlement::{
    cancel_request, card, hospital, register_request, settle_request, upload_request, visit_lines,
};
use crate::support::{assert_invalid, assert_refused};

fn ratio(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a ratio")
}

/// Today (China Standard Time) moved by `days`, "YYYY-MM-DD".
fn today_plus(days: i64) -> String {
    let mut date = yitong_core::today();
    for _ in 0..days.unsigned_abs() {
        date = match days > 0 {
            true => date.succ_opt(),
            false => date.pred_opt(),
        }
        .expect("a date near today");
    }
    date.to_string()
}

/// Registers, bills and settles a visit of `insured`'s `n`-th person at `treatment`'s hospital.
pub(crate) async fn settle(
    net: &Sandbox,
    tag: &str,
    treatment: &str,
    insured: &str,
    n: u32,
) -> Result<Settlement, tonic::Status> {
    let mut his = net.his_settlement(&hospital(treatment));
    let visit = his
        .register_visit(register_request(&format!("R-{tag}"), treatment, insured, n))
        .await
        .expect("registered")
        .into_inner()
        .visit
        .expect("visit");
    his.upload_fee_lines(upload_request(&format!("U-{tag}"), &visit, visit_lines()))
        .await
        .expect("uploaded");
    his.settle(settle_request(&format!("S-{tag}"), &visit, n, false))
        .await
        .map(|reply| reply.into_inner().settlement.expect("settlement"))
}

async fn cancel(net: &Sandbox, tag: &str, treatment: &str, settled: &Settlement) {
    net.his_settlement(&hospital(treatment))
        .cancel_settlement(cancel_request(&format!("C-{tag}"), settled))
        .await
        .expect("cancelled");
}

fn pool_ratio(settled: &Settlement) -> Decimal {
    ratio(&settled.split.as_ref().expect("split").pool_ratio)
}

fn cut_points(settled: &Settlement) -> u32 {
    settled
        .split
        .as_ref()
        .expect("split")
        .filing
        .as_ref()
        .expect("the filing standing")
        .ratio_cut_points
}

fn file_request(
    message_id: &str,
    n: u32,
    kind: FilingKind,
    from: &str,
    until: &str,
) -> FileFilingRequest {
    FileFilingRequest {
        message_id: message_id.into(),
        person_no: format!("{JINAN}{n:010}"),
        kind: kind as i32,
        treatment_city: ZIBO.into(),
        valid_from: from.into(),
        valid_until: until.into(),
    }
}

async fn file(net: &Sandbox, request: FileFilingRequest) -> Filing {
    net.bureau(JINAN)
        .filing(JINAN)
        .file_filing(request)
        .await
        .expect("filed")
        .into_inner()
        .filing
        .expect("filing")
}

async fn set_policy(
    net: &Sandbox,
    message_id: &str,
    unfiled: UnfiledVisit,
    unfiled_cut_points: u32,
    temporary_cut_points: u32,
) {
    let policy = FilingPolicy {
        treatment_city: ZIBO.into(),
        filing_required: true,
        unfiled: unfiled as i32,
        unfiled_cut_points,
        temporary_cut_points,
    };
    let request = SetFilingPolicyRequest {
        message_id: message_id.into(),
        policy: Some(policy.clone()),
    };
    let set = net
        .bureau(JINAN)
        .filing(JINAN)
        .set_filing_policy(request)
        .await
        .expect("set")
        .into_inner()
        .policy;
    assert_eq!(set, Some(policy));
}

fn check_request(n: u32) -> CheckBenefitRequest {
    CheckBenefitRequest {
        message_id: format!("CB-filing-{n}"),
        person_no: format!("{JINAN}{n:010}"),
        credential: card(JINAN, n),
        insurance_type: InsuranceType::Employee as i32,
        institution_code: hospital(ZIBO),
        medical_type: MedicalType::Outpatient as i32,
        service_date: String::new(),
        operator_id: "op1".into(),
        disease_code: String::new(),
    }
}

async fn check_reasons(net: &Sandbox, n: u32) -> Vec<Reason> {
    let reply = net
        .his_settlement(&hospital(ZIBO))
        .check_benefit(check_request(n))
        .await
        .expect("checked")
        .into_inner();
    reply
        .refusals
        .iter()
        .map(|refusal| Reason::try_from(refusal.reason).expect("a known reason"))
        .collect()
}

network_test! {
    /// Proves the insured city's filing policy, set as data by its bureau, decides what a visit
    /// in another city gets: the seeded circle waives filing (a visit settles as it always has);
    /// where Jinan requires filing for Zibo and refuses the unfiled, a visit without a filing is
    /// refused NOT_FILED at Settle and by the benefit check and stores nothing; under an
    /// other-temporary-trip filing it settles at the ratio less the policy's cut; under a
    /// long-term filing at the full ratio; once the filing is cancelled the refusal is back; a
    /// policy that cuts instead of refusing settles the unfiled at the lower ratio. A waived
    /// pair (Jinan's person in Dongying) is untouched throughout.
    async fn filing_decides_what_a_visit_elsewhere_gets(net) {
        // The seeded circle waives filing: today's settlement, at the policy's full ratio.
        let seeded = net.node(ZIBO).filing(JINAN).get_filing_policy(GetFilingPolicyRequest { treatment_city: ZIBO.into() }).await.expect("read").into_inner().policy.expect("policy");
        assert!(!seeded.filing_required, "the circle waives filing for one another");
        let waived = settle(net, "waived", ZIBO, JINAN, 1).await.expect("a waived pair settles");
        let full = pool_ratio(&waived);
        assert_eq!(cut_points(&waived), 0);
        assert!(!waived.split.as_ref().unwrap().filing.as_ref().unwrap().filing_required);
        cancel(net, "waived", ZIBO, &waived).await;

        // Jinan requires filing for Zibo and refuses unfiled visits; temporary trips lose 10 points.
        set_policy(net, "FP-1", UnfiledVisit::Refused, 0, 10).await;
        assert_eq!(check_reasons(net, 1).await, [Reason::NotFiled]);
        let refused = settle(net, "unfiled", ZIBO, JINAN, 1).await.unwrap_err();
        assert_refused(&refused, "NOT_FILED");
        // The same person in Dongying, a pair still waived, settles at Jinan's own full terms.
        let elsewhere = settle(net, "dongying", DONGYING, JINAN, 1).await.expect("waived pair");
        assert_eq!(cut_points(&elsewhere), 0);
        cancel(net, "dongying", DONGYING, &elsewhere).await;

        // An other-temporary trip, filed by Jinan's bureau: the lower ratio.
        let trip = file(net, file_request("FF-trip", 1, FilingKind::OtherTemporary, &today_plus(-3), &today_plus(10))).await;
        assert_eq!(trip.status, FilingStatus::Filed as i32);
        assert!(trip.filing_id.starts_with("F370100"), "{trip:?}");
        // A replay answers the same; the id with other content is ALREADY_EXISTS; an overlapping
        // filing is a business refusal; none of them stores anything.
        let replay = file(net, file_request("FF-trip", 1, FilingKind::OtherTemporary, &today_plus(-3), &today_plus(10))).await;
        assert_eq!(replay, trip);
        let other = net.bureau(JINAN).filing(JINAN).file_filing(file_request("FF-trip", 1, FilingKind::Referral, &today_plus(-3), &today_plus(10))).await.unwrap_err();
        assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
        let overlap = net.bureau(JINAN).filing(JINAN).file_filing(file_request("FF-overlap", 1, FilingKind::ResettledRetiree, &today_plus(5), "")).await.unwrap_err();
        assert_refused(&overlap, "FILING_OVERLAPS");
        assert!(check_reasons(net, 1).await.is_empty(), "the trip is in force today");
        let temporary = settle(net, "trip", ZIBO, JINAN, 1).await.expect("a filed trip settles");
        assert_eq!(cut_points(&temporary), 10);
        assert_eq!(pool_ratio(&temporary), full - ratio("0.10"), "the ratio less 10 points");
        let standing = temporary.split.as_ref().unwrap().filing.clone().unwrap();
        assert_eq!(standing.filing.map(|filing| filing.filing_id), Some(trip.filing_id.clone()));
        cancel(net, "trip", ZIBO, &temporary).await;

        // The HIS reads the filings and the standing (5304-style), for the person in front of it.
        let query = QueryFilingsRequest {
            message_id: "QF-1".into(),
            person_no: format!("{JINAN}{:010}", 1),
            credential: card(JINAN, 1),
            insurance_type: InsuranceType::Employee as i32,
            institution_code: hospital(ZIBO),
            service_date: String::new(),
            operator_id: "op1".into(),
        };
        let read = net.his_settlement(&hospital(ZIBO)).query_filings(query.clone()).await.expect("queried").into_inner();
        assert_eq!(read.filings, std::slice::from_ref(&trip));
        assert_eq!(read.standing.expect("standing").ratio_cut_points, 10);

        // Cancelled, the trip no longer counts: refused again. Cancelling twice is refused.
        let cancelled = net.bureau(JINAN).filing(JINAN).cancel_filing(CancelFilingRequest { message_id: "CF-trip".into(), filing_id: trip.filing_id.clone() }).await.expect("cancelled").into_inner().filing.expect("filing");
        assert_eq!(cancelled.status, FilingStatus::Cancelled as i32);
        let twice = net.bureau(JINAN).filing(JINAN).cancel_filing(CancelFilingRequest { message_id: "CF-trip-2".into(), filing_id: trip.filing_id.clone() }).await.unwrap_err();
        assert_refused(&twice, "FILING_CANCELLED");
        assert_eq!(check_reasons(net, 1).await, [Reason::NotFiled]);

        // A long-term filing (resettled retiree), open-ended, now fits: the full ratio.
        file(net, file_request("FF-retiree", 1, FilingKind::ResettledRetiree, &today_plus(-1), "")).await;
        let resettled = settle(net, "retiree", ZIBO, JINAN, 1).await.expect("a long-term filing settles");
        assert_eq!((pool_ratio(&resettled), cut_points(&resettled)), (full, 0));
        cancel(net, "retiree", ZIBO, &resettled).await;

        // A policy that cuts the unfiled by 20 points instead: Jinan's 2nd, never filed, settles lower.
        let full_2 = {
            let before = settle(net, "p2-before", DONGYING, JINAN, 2).await.expect("waived pair");
            cancel(net, "p2-before", DONGYING, &before).await;
            pool_ratio(&before)
        };
        set_policy(net, "FP-2", UnfiledVisit::RatioCut, 20, 10).await;
        let unfiled = settle(net, "p2-unfiled", ZIBO, JINAN, 2).await.expect("an unfiled visit settles, cut");
        assert_eq!(cut_points(&unfiled), 20);
        let expected = (full_2 - ratio("0.20")).max(Decimal::ZERO);
        assert_eq!(pool_ratio(&unfiled), expected);
        assert!(check_reasons(net, 2).await.is_empty(), "a cut is no refusal");
    }
}

network_test! {
    /// Proves the bureau's filing requests are checked at the edge and kept to the bureau of the
    /// person's own insured city: bad fields are INVALID_ARGUMENT naming them, another city's
    /// bureau and an HIS are refused, and the treatment city's node may read the filings.
    async fn filing_requests_are_checked(net) {
        let mut bureau = net.bureau(JINAN).filing(JINAN);
        let no_end = bureau.file_filing(file_request("FF-bad-1", 1, FilingKind::OtherTemporary, &today_plus(0), "")).await.unwrap_err();
        assert_invalid(&no_end, "valid_until");
        let backwards = bureau.file_filing(file_request("FF-bad-2", 1, FilingKind::Referral, &today_plus(5), &today_plus(1))).await.unwrap_err();
        assert_invalid(&backwards, "valid_until");
        let mut own_city = file_request("FF-bad-3", 1, FilingKind::Referral, &today_plus(0), &today_plus(1));
        own_city.treatment_city = JINAN.into();
        assert_invalid(&bureau.file_filing(own_city).await.unwrap_err(), "treatment_city");
        let mut other_person = file_request("FF-bad-4", 1, FilingKind::Referral, &today_plus(0), &today_plus(1));
        other_person.person_no = format!("{ZIBO}{:010}", 1);
        assert_invalid(&bureau.file_filing(other_person).await.unwrap_err(), "person_no");
        let unknown_kind = FileFilingRequest { kind: 0, ..file_request("FF-bad-5", 1, FilingKind::Referral, &today_plus(0), &today_plus(1)) };
        assert_invalid(&bureau.file_filing(unknown_kind).await.unwrap_err(), "kind");
        let too_much = SetFilingPolicyRequest {
            message_id: "FP-bad".into(),
            policy: Some(FilingPolicy { treatment_city: ZIBO.into(), filing_required: true, unfiled: UnfiledVisit::RatioCut as i32, unfiled_cut_points: 101, temporary_cut_points: 0 }),
        };
        assert_invalid(&bureau.set_filing_policy(too_much).await.unwrap_err(), "policy.unfiled_cut_points");

        // Zibo's bureau may not file for Jinan's insured; an HIS may not file at all.
        let status = net.bureau(ZIBO).filing(JINAN).file_filing(file_request("FF-zibo", 1, FilingKind::Referral, &today_plus(0), &today_plus(1))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        let status = net.his(&hospital(JINAN)).filing(JINAN).file_filing(file_request("FF-his", 1, FilingKind::Referral, &today_plus(0), &today_plus(1))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

        // Nothing was stored by the refusals; a good filing is read back by the bureau and by a node.
        let filed = file(net, file_request("FF-good", 1, FilingKind::Emergency, &today_plus(-1), &today_plus(0))).await;
        let listed = net.node(ZIBO).filing(JINAN).list_filings(ListFilingsRequest { person_no: filed.person_no.clone() }).await.expect("listed").into_inner().filings;
        assert_eq!(listed, [filed]);
    }
}
