//! Outpatient chronic and special diseases (门诊慢特病, medical type 14): the insured city's
//! bureau certifies its insured persons for a disease (2503) and cancels it (2504); a visit in
//! another city names its disease, settles under the insured city's disease policy against the
//! disease's own annual quota, kept apart from the ordinary totals, with its fund itemised
//! (setldetail) and its clearing type 14; an uncertified person is refused with the reason, at
//! Settle and by the benefit check; the HIS reads the certifications (5301).

use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;
use tonic::Code;
use yitong_core::Amount;
use yitong_proto::catalog::v1::ListDiseasesRequest;
use yitong_proto::identity::v1::InsuranceType;
use yitong_proto::ledger::v1::lookup_transfers_request::Selector;
use yitong_proto::ledger::v1::{
    ClearingType, LookupTransfersRequest, ReconcileTotalsRequest, ReconcileTotalsResponse,
    ReconciliationResult, ReconciliationScope, ReconciliationTotals, reconciliation_scope::Subject,
};
use yitong_proto::settlement::v1::{
    BenefitRefusalReason as Reason, CancelCertificationRequest, Certification, CertificationStatus,
    CertifyRequest, CheckBenefitRequest, DiseaseTotals, GetRunningTotalsRequest, MedicalType,
    QueryCertificationsRequest, Settlement, Visit,
};
use yitong_sandbox::{JINAN, Sandbox, ZIBO, network_test};

use crate::settlement::{
    cancel_request, card, fen, hospital, register_request, settle_request, upload_request,
    visit_lines,
};
use crate::support::{assert_invalid, assert_refused};

/// Zibo's bureau reconciles its day's settlements of one clearing type (3201; every type when
/// unspecified) against the ledger, submitting `submitted`: the ledger's answer.
pub(crate) async fn reconcile_zibo_day(
    net: &Sandbox,
    message_id: &str,
    clearing_type: ClearingType,
    submitted: ReconciliationTotals,
) -> Result<ReconcileTotalsResponse, tonic::Status> {
    let today = yitong_core::today().to_string();
    net.bureau(ZIBO)
        .ledger()
        .reconcile_totals(ReconcileTotalsRequest {
            message_id: message_id.into(),
            scope: Some(ReconciliationScope {
                subject: Some(Subject::TreatmentCity(ZIBO.into())),
            }),
            insurance_type: 0,
            clearing_type: clearing_type as i32,
            from_date: today.clone(),
            to_date: today,
            totals: Some(submitted),
            operator_id: "zibo-bureau-1".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// [`reconcile_zibo_day`], answered: the result and the ledger's own totals.
async fn reconcile(
    net: &Sandbox,
    message_id: &str,
    clearing_type: ClearingType,
    submitted: ReconciliationTotals,
) -> (ReconciliationResult, ReconciliationTotals) {
    let reply = reconcile_zibo_day(net, message_id, clearing_type, submitted)
        .await
        .expect("reconciled");
    (
        ReconciliationResult::try_from(reply.result).expect("a result"),
        reply.ledger.expect("the ledger's totals"),
    )
}

/// Hypertension, in the national catalog of diseases settled across provinces.
pub(crate) const HYPERTENSION: &str = "M03900";
/// Jinan's illustrative policy for hypertension, employees (`seeds/disease_policies.csv`).
const HYPERTENSION_RATIO: &str = "0.70";
const HYPERTENSION_QUOTA: &str = "600.00";

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

pub(crate) fn certify_request(
    message_id: &str,
    n: u32,
    disease: &str,
    institutions: &[String],
) -> CertifyRequest {
    CertifyRequest {
        message_id: message_id.into(),
        person_no: format!("{JINAN}{n:010}"),
        disease_code: disease.into(),
        valid_from: today_plus(-3),
        valid_until: String::new(),
        institution_codes: institutions.to_vec(),
    }
}

pub(crate) async fn certify(net: &Sandbox, request: CertifyRequest) -> Certification {
    net.bureau(JINAN)
        .certification(JINAN)
        .certify(request)
        .await
        .expect("certified")
        .into_inner()
        .certification
        .expect("certification")
}

/// Registers Jinan's `n`-th person's chronic-disease visit for `disease` at Zibo's hospital and
/// uploads its lines.
pub(crate) async fn disease_visit(net: &Sandbox, tag: &str, n: u32, disease: &str) -> Visit {
    let mut his = net.his_settlement(&hospital(ZIBO));
    let mut register = register_request(&format!("R-{tag}"), ZIBO, JINAN, n);
    register.medical_type = MedicalType::ChronicDisease as i32;
    register.disease_code = disease.into();
    let visit = his
        .register_visit(register)
        .await
        .expect("registered")
        .into_inner()
        .visit
        .expect("visit");
    assert_eq!(visit.disease_code, disease);
    his.upload_fee_lines(upload_request(&format!("U-{tag}"), &visit, visit_lines()))
        .await
        .expect("uploaded");
    visit
}

pub(crate) async fn settle(
    net: &Sandbox,
    message_id: &str,
    visit: &Visit,
    n: u32,
) -> Result<Settlement, tonic::Status> {
    net.his_settlement(&hospital(ZIBO))
        .settle(settle_request(message_id, visit, n, false))
        .await
        .map(|reply| reply.into_inner().settlement.expect("settlement"))
}

fn check_request(n: u32, disease: &str) -> CheckBenefitRequest {
    CheckBenefitRequest {
        message_id: format!("CB-disease-{n}"),
        person_no: format!("{JINAN}{n:010}"),
        credential: card(JINAN, n),
        insurance_type: InsuranceType::Employee as i32,
        institution_code: hospital(ZIBO),
        medical_type: MedicalType::ChronicDisease as i32,
        service_date: String::new(),
        operator_id: "op1".into(),
        disease_code: disease.into(),
    }
}

pub(crate) async fn check_reasons(net: &Sandbox, n: u32, disease: &str) -> Vec<Reason> {
    net.his_settlement(&hospital(ZIBO))
        .check_benefit(check_request(n, disease))
        .await
        .expect("checked")
        .into_inner()
        .refusals
        .iter()
        .map(|refusal| Reason::try_from(refusal.reason).expect("a known reason"))
        .collect()
}

/// The person's running totals as Zibo's HIS reads them (5206), and their hypertension line.
async fn totals(net: &Sandbox, n: u32) -> (String, DiseaseTotals) {
    let request = GetRunningTotalsRequest {
        message_id: format!("RT-disease-{n}"),
        person_no: format!("{JINAN}{n:010}"),
        credential: card(JINAN, n),
        insurance_type: InsuranceType::Employee as i32,
        institution_code: hospital(ZIBO),
        service_date: String::new(),
        operator_id: "op1".into(),
    };
    let totals = net
        .his_settlement(&hospital(ZIBO))
        .get_running_totals(request)
        .await
        .expect("totals")
        .into_inner()
        .totals
        .expect("totals");
    assert_eq!(
        totals.diseases.len(),
        5,
        "the five diseases of Jinan's policy: {totals:?}"
    );
    let line = totals
        .diseases
        .iter()
        .find(|line| line.disease_code == HYPERTENSION)
        .cloned()
        .expect("hypertension");
    (totals.fund_paid, line)
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a decimal")
}

network_test! {
    /// Proves a chronic-disease visit of a Jinan person at a Zibo hospital: uncertified, the
    /// benefit check names NOT_CERTIFIED and Settle is refused NOT_CERTIFIED storing nothing;
    /// once Jinan's bureau certifies the person for hypertension at that hospital, the check is
    /// clean and the visit settles under Jinan's hypertension policy (its ratio, its annual
    /// quota), clearing type 14, the fund itemised in one 310100 line that names the disease and
    /// sums to the fund pay; the day's reconciliation (3201) of clearing type 14 matches it and
    /// that of type 11 holds none; the disease's quota moves and the ordinary totals do not; a
    /// cancellation gives the quota back.
    async fn a_certified_disease_visit_settles_elsewhere_against_its_quota(net) {
        // The disease catalog (1309), as the treatment city's catalog serves it to the HIS.
        let catalog = net.his(&hospital(ZIBO)).catalog(ZIBO).list_diseases(ListDiseasesRequest {}).await.expect("listed").into_inner().diseases;
        let codes: Vec<&str> = catalog.iter().map(|disease| disease.code.as_str()).collect();
        assert_eq!(codes, ["M00500", "M01600", "M03900", "M07801", "M08300"]);
        assert_eq!(catalog[2].name, "高血压");
        assert_eq!(check_reasons(net, 1, HYPERTENSION).await, [Reason::NotCertified]);
        let visit = disease_visit(net, "d1", 1, HYPERTENSION).await;
        let refused = settle(net, "S-d1-uncertified", &visit, 1).await.unwrap_err();
        assert_refused(&refused, "NOT_CERTIFIED");
        let (ordinary_before, line) = totals(net, 1).await;
        assert!(!line.certified);
        assert_eq!((line.quota_used.as_str(), line.annual_quota.as_str()), ("0.00", HYPERTENSION_QUOTA));

        let certified = certify(net, certify_request("CT-1", 1, HYPERTENSION, &[hospital(ZIBO)])).await;
        assert!(certified.certification_id.starts_with("C370100"), "{certified:?}");
        assert_eq!(certified.disease_name, "高血压");
        assert_eq!(certified.status, CertificationStatus::Certified as i32);
        assert!(check_reasons(net, 1, HYPERTENSION).await.is_empty());

        let settled = settle(net, "S-d1", &visit, 1).await.expect("a certified visit settles");
        assert_eq!(settled.medical_type, MedicalType::ChronicDisease as i32);
        assert_eq!(settled.clearing_type, ClearingType::ChronicDisease as i32);
        let split = settled.split.clone().expect("split");
        assert_eq!(split.disease_code, HYPERTENSION);
        assert_eq!(decimal(&split.pool_ratio), decimal(HYPERTENSION_RATIO));
        // Jinan's hypertension policy has no deductible: the fund pays the in-scope amount at
        // the ratio, rounded once, within the quota.
        let in_scope = decimal(&split.in_scope_amount);
        let uncapped = (in_scope * decimal(HYPERTENSION_RATIO)).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        let fund = uncapped.min(decimal(HYPERTENSION_QUOTA));
        assert_eq!(decimal(&split.fund_pay), fund, "{split:?}");
        assert_eq!(split.deductible_applied, "0.00");
        assert_eq!(split.fund_payments.len(), 1, "{split:?}");
        let payment = &split.fund_payments[0];
        assert_eq!((payment.fund_pay_type.as_str(), payment.disease_code.as_str()), ("310100", HYPERTENSION));
        assert_eq!(payment.amount, split.fund_pay);
        assert_eq!(fen(&split.annual_cap_left), fen(HYPERTENSION_QUOTA) - fen(&split.fund_pay));

        // The day's reconciliation by clearing type (3201): the visit is clearing type 14, with
        // its fund pay; none of Zibo's settlements today is an ordinary outpatient one.
        let submitted = ReconciliationTotals {
            count: 1,
            total_amount: split.total_amount.clone(),
            fund_pay: split.fund_pay.clone(),
            account_pay: split.account_pay.clone(),
            cash_pay: split.cash_pay.clone(),
            ..Default::default()
        };
        let (result, ledger) = reconcile(net, "RT-14", ClearingType::ChronicDisease, submitted.clone()).await;
        assert_eq!(result, ReconciliationResult::Matched);
        // The ledger's lines: clearing type 14 alone, the fund pay on hypertension's quota.
        assert_eq!(ledger.clearing_types.len(), 1, "{ledger:?}");
        assert_eq!(ledger.clearing_types[0].clearing_type, ClearingType::ChronicDisease as i32);
        let funds: Vec<(&str, &str, &str)> = ledger.fund_types.iter().map(|l| (l.fund_pay_type.as_str(), l.disease_code.as_str(), l.amount.as_str())).collect();
        assert_eq!(funds, [("310100", HYPERTENSION, split.fund_pay.as_str())]);
        assert_eq!(ReconciliationTotals { clearing_types: vec![], fund_types: vec![], ..ledger }, submitted);
        let (_, ordinary) = reconcile(net, "RT-11", ClearingType::Outpatient, ReconciliationTotals {
            count: 0,
            total_amount: "0.00".into(),
            fund_pay: "0.00".into(),
            account_pay: "0.00".into(),
            cash_pay: "0.00".into(),
            ..Default::default()
        }).await;
        assert_eq!(ordinary.count, 0, "{ordinary:?}");

        let (ordinary_after, line) = totals(net, 1).await;
        assert!(line.certified);
        assert_eq!(line.quota_used, split.fund_pay, "the quota moved");
        assert_eq!(line.quota_left, split.annual_cap_left);
        assert_eq!(ordinary_after, ordinary_before, "the ordinary totals did not");

        net.his_settlement(&hospital(ZIBO))
            .cancel_settlement(cancel_request("C-d1", &settled))
            .await
            .expect("cancelled");
        let (_, line) = totals(net, 1).await;
        assert_eq!(line.quota_used, Amount::ZERO.to_string(), "the cancellation gave the quota back");

        // The ledger booked the fund itemised with each record: the settlement's line on the
        // disease's quota, and the cancellation's mirrored (negated) line.
        let booked = net
            .ledger()
            .lookup_transfers(LookupTransfersRequest { selector: Some(Selector::SettlementId(settled.settlement_id.clone())) })
            .await
            .expect("LookupTransfers answers")
            .into_inner()
            .transfers;
        let lines: Vec<(bool, String, String, String)> = booked
            .iter()
            .filter_map(|record| record.transfer.as_ref()?.settlement.clone())
            .flat_map(|record| {
                record.fund_payments.into_iter().map(move |line| (record.cancellation, line.fund_pay_type, line.disease_code, line.amount))
            })
            .collect();
        let negated = format!("-{}", split.fund_pay);
        assert_eq!(
            lines,
            [
                (false, "310100".to_owned(), HYPERTENSION.to_owned(), split.fund_pay.clone()),
                (true, "310100".to_owned(), HYPERTENSION.to_owned(), negated),
            ]
        );
    }
}

network_test! {
    /// Proves certifications are the insured city's bureau's, checked at the edge, and read by
    /// the HIS: bad fields are INVALID_ARGUMENT naming them, a disease the city does not cover is
    /// DISEASE_NOT_COVERED, overlapping dates CERTIFICATION_OVERLAPS, a replay answers the same
    /// and the id with other content is ALREADY_EXISTS; a certification for another institution
    /// does not cover this one; QueryCertifications (5301) lists them for the person at the
    /// counter; once cancelled the check names NOT_CERTIFIED again; a chronic-disease visit must
    /// name its disease and an ordinary one must not.
    async fn certifications_are_kept_by_the_insured_city(net) {
        let mut bureau = net.bureau(JINAN).certification(JINAN);
        assert_invalid(&bureau.certify(certify_request("CT-bad-1", 2, "", &[])).await.unwrap_err(), "disease_code");
        assert_invalid(&bureau.certify(certify_request("CT-bad-2", 2, "M03-900", &[])).await.unwrap_err(), "disease_code");
        assert_invalid(&bureau.certify(certify_request("CT-bad-3", 2, HYPERTENSION, &["X1".into()])).await.unwrap_err(), "institution_codes[0]");
        let mut other_person = certify_request("CT-bad-4", 2, HYPERTENSION, &[]);
        other_person.person_no = format!("{ZIBO}{:010}", 2);
        assert_invalid(&bureau.certify(other_person).await.unwrap_err(), "person_no");
        let mut backwards = certify_request("CT-bad-5", 2, HYPERTENSION, &[]);
        backwards.valid_until = today_plus(-10);
        assert_invalid(&bureau.certify(backwards).await.unwrap_err(), "valid_until");
        assert_refused(&bureau.certify(certify_request("CT-bad-6", 2, "M99999", &[])).await.unwrap_err(), "DISEASE_NOT_COVERED");
        let status = net.bureau(ZIBO).certification(JINAN).certify(certify_request("CT-zibo", 2, HYPERTENSION, &[])).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

        // Certified for dialysis at Jinan's hospital only: not at Zibo's.
        let elsewhere = certify(net, certify_request("CT-2", 2, "M07801", &[hospital(JINAN)])).await;
        assert_eq!(certify(net, certify_request("CT-2", 2, "M07801", &[hospital(JINAN)])).await, elsewhere);
        let other = bureau.certify(certify_request("CT-2", 2, "M01600", &[])).await.unwrap_err();
        assert_eq!(other.code(), Code::AlreadyExists, "{other:?}");
        let overlap = bureau.certify(certify_request("CT-3", 2, "M07801", &[])).await.unwrap_err();
        assert_refused(&overlap, "CERTIFICATION_OVERLAPS");
        assert_eq!(check_reasons(net, 2, "M07801").await, [Reason::NotCertified]);
        let visit = disease_visit(net, "d2", 2, "M07801").await;
        assert_refused(&settle(net, "S-d2", &visit, 2).await.unwrap_err(), "NOT_CERTIFIED");

        // Any networked institution: certified at Zibo's too.
        let anywhere = certify(net, certify_request("CT-4", 2, "M08300", &[])).await;
        assert!(check_reasons(net, 2, "M08300").await.is_empty());

        let query = QueryCertificationsRequest {
            message_id: "QC-2".into(),
            person_no: format!("{JINAN}{:010}", 2),
            credential: card(JINAN, 2),
            insurance_type: InsuranceType::Employee as i32,
            institution_code: hospital(ZIBO),
            service_date: String::new(),
            operator_id: "op1".into(),
        };
        let listed = net.his_settlement(&hospital(ZIBO)).query_certifications(query).await.expect("queried").into_inner().certifications;
        assert_eq!(listed, [anywhere.clone(), elsewhere]);

        let cancelled = bureau.cancel_certification(CancelCertificationRequest { message_id: "CC-4".into(), certification_id: anywhere.certification_id.clone() }).await.expect("cancelled").into_inner().certification.expect("certification");
        assert_eq!(cancelled.status, CertificationStatus::Cancelled as i32);
        let twice = bureau.cancel_certification(CancelCertificationRequest { message_id: "CC-4b".into(), certification_id: anywhere.certification_id.clone() }).await.unwrap_err();
        assert_refused(&twice, "CERTIFICATION_CANCELLED");
        assert_eq!(check_reasons(net, 2, "M08300").await, [Reason::NotCertified]);

        // The visit's medical type and disease go together.
        let mut his = net.his_settlement(&hospital(ZIBO));
        let mut no_disease = register_request("R-bad-1", ZIBO, JINAN, 2);
        no_disease.medical_type = MedicalType::ChronicDisease as i32;
        assert_invalid(&his.register_visit(no_disease).await.unwrap_err(), "disease_code");
        let mut ordinary_with_disease = register_request("R-bad-2", ZIBO, JINAN, 2);
        ordinary_with_disease.disease_code = HYPERTENSION.into();
        assert_invalid(&his.register_visit(ordinary_with_disease).await.unwrap_err(), "disease_code");
        let mut check = check_request(2, "");
        check.message_id = "CB-bad".into();
        assert_invalid(&his.check_benefit(check).await.unwrap_err(), "disease_code");
    }
}
