//! The reads an HIS makes about a person at the counter: the benefit check before a visit
//! (national 2001), with every reason it would be refused, and the person's running totals
//! (5206) as the insured city holds them.

use tonic::Code;
use yitong_proto::identity::v1::{Credential, InsuranceType, credential::Kind};
use yitong_proto::settlement::v1::{
    BenefitRefusalReason as Reason, CheckBenefitRequest, CheckBenefitResponse,
    GetRunningTotalsRequest, GetTotalsRequest, MedicalType, RunningTotals,
};
use yitong_sandbox::{DONGYING, JINAN, Sandbox, ZIBO, network_test};

use crate::settlement::{
    cancel_request, card, fen, hospital, line, register_request, settle_request, upload_request,
};
use crate::support::{assert_invalid, assert_refused, seeded_card};

/// Zibo's township health centre, a level-1 hospital not networked for cross-city settlement.
const TOWNSHIP: &str = "H37030000011";

/// The `n`-th seeded person of a city, with their card, and the insurance type the seeds give
/// them (1, 2, 5, 6 and 8 employees; 3, 4 and 7 residents).
fn check_request(institution: &str, city: &str, n: u32) -> CheckBenefitRequest {
    let insurance_type = match n {
        1 | 2 | 5 | 6 | 8 => InsuranceType::Employee,
        _ => InsuranceType::Resident,
    };
    CheckBenefitRequest {
        message_id: format!("CB-{institution}-{city}-{n}"),
        person_no: format!("{city}{n:010}"),
        credential: card(city, n),
        insurance_type: insurance_type as i32,
        institution_code: institution.into(),
        medical_type: MedicalType::Outpatient as i32,
        service_date: String::new(),
        operator_id: "op1".into(),
        disease_code: String::new(),
    }
}

async fn check(net: &Sandbox, request: CheckBenefitRequest) -> CheckBenefitResponse {
    net.his_settlement(&request.institution_code.clone())
        .check_benefit(request)
        .await
        .expect("checked")
        .into_inner()
}

fn reasons(reply: &CheckBenefitResponse) -> Vec<Reason> {
    reply
        .refusals
        .iter()
        .map(|refusal| Reason::try_from(refusal.reason).expect("a known reason"))
        .collect()
}

async fn running_totals(net: &Sandbox, city: &str, n: u32) -> RunningTotals {
    let request = GetRunningTotalsRequest {
        message_id: format!("RT-{city}-{n}"),
        person_no: format!("{city}{n:010}"),
        credential: card(city, n),
        insurance_type: InsuranceType::Employee as i32,
        institution_code: hospital(ZIBO),
        service_date: String::new(),
        operator_id: "op1".into(),
    };
    net.his_settlement(&hospital(ZIBO))
        .get_running_totals(request)
        .await
        .expect("totals")
        .into_inner()
        .totals
        .expect("totals")
}

network_test! {
    /// Proves the benefit check answers every refusal reason the network can give, several at
    /// once where they hold together, and stores nothing: an entitled person is entitled with
    /// their totals; a lost card at a hospital not networked gives both reasons, and the
    /// person's own suspension beside a lost card is still found; suspended and terminated
    /// persons, a city not enabled; the annual cap exhausted by a real settlement, and given
    /// back by its cancellation.
    async fn the_benefit_check_names_every_reason(net) {
        let entitled = check(net, check_request(&hospital(ZIBO), JINAN, 1)).await;
        assert!(entitled.entitled, "{entitled:?}");
        assert!(entitled.refusals.is_empty());
        assert_eq!(entitled.insured_city, JINAN);
        let totals = entitled.totals.expect("an entitled person's totals");
        assert_eq!((totals.person_no.as_str(), totals.insured_city.as_str()), ("3701000000000001", JINAN));
        assert_eq!(fen(&totals.annual_cap_left), fen(&totals.annual_cap) - fen(&totals.fund_paid));

        // A lost card (Jinan's 6th) at the township centre: the card and the institution.
        let lost = check(net, check_request(TOWNSHIP, JINAN, 6)).await;
        assert!(!lost.entitled);
        assert_eq!(reasons(&lost), [Reason::CardLost, Reason::InstitutionNotNetworked]);
        assert!(lost.totals.is_some(), "the person behind a lost card is read by number");
        // The same centre serves its own city's insured without the network.
        let local = check(net, check_request(TOWNSHIP, ZIBO, 1)).await;
        assert!(local.entitled, "{local:?}");

        // Suspended (Jinan's 5th) and terminated (Jinan's 7th) persons; no totals for them.
        let suspended = check(net, check_request(TOWNSHIP, JINAN, 5)).await;
        assert_eq!(reasons(&suspended), [Reason::InsuranceSuspended, Reason::InstitutionNotNetworked]);
        assert!(suspended.totals.is_none());
        let terminated = check(net, check_request(&hospital(ZIBO), JINAN, 7)).await;
        assert_eq!(reasons(&terminated), [Reason::InsuranceTerminated]);
        assert!(!terminated.refusals[0].message.is_empty(), "each reason says why in words");

        // A card of Tai'an, defined in the circle but not enabled.
        let mut taian = check_request(&hospital(ZIBO), "370900", 1);
        taian.credential = Some(Credential { kind: Some(Kind::CardNumber(seeded_card("370900", 1))) });
        let not_enabled = check(net, taian).await;
        assert_eq!(reasons(&not_enabled), [Reason::CityNotEnabled]);

        // A visit whose fund pay reaches the annual cap: the next check says so.
        let mut his = net.his_settlement(&hospital(ZIBO));
        let visit = his.register_visit(register_request("R-cap", ZIBO, JINAN, 2)).await.expect("registered").into_inner().visit.expect("visit");
        let lines = vec![line("1", "002103000010000", "5000", "150.00", "750000.00")];
        his.upload_fee_lines(upload_request("U-cap", &visit, lines)).await.expect("uploaded");
        let mut settle = settle_request("S-cap", &visit, 2, false);
        settle.total_amount = "750000.00".into();
        let settled = his.settle(settle).await.expect("settled").into_inner().settlement.expect("settlement");
        let split = settled.split.clone().expect("split");
        assert_eq!(split.annual_cap_left, "0.00", "the visit takes the whole cap");
        let exhausted = check(net, check_request(&hospital(ZIBO), JINAN, 2)).await;
        assert_eq!(reasons(&exhausted), [Reason::AnnualCapExhausted]);
        let totals = exhausted.totals.expect("totals");
        assert_eq!(totals.fund_paid, totals.annual_cap);
        assert_eq!(totals.fund_paid, split.fund_pay, "the only settlement of the year");
        assert_eq!(totals.annual_cap_left, "0.00");

        his.cancel_settlement(cancel_request("C-cap", &settled)).await.expect("cancelled");
        let again = check(net, check_request(&hospital(ZIBO), JINAN, 2)).await;
        assert!(again.entitled, "the cancellation gives the cap back: {again:?}");
    }
}

network_test! {
    /// Proves the running totals (5206) follow the person's settlements as the insured city
    /// holds them: a settlement adds its deductible and fund pay, its cancellation takes them
    /// back; a lost card is refused as RegisterVisit refuses it; a node asks only for its own
    /// city's institutions; bad input names its field.
    async fn running_totals_follow_settlements(net) {
        let before = running_totals(net, DONGYING, 1).await;
        assert_eq!(before.insured_city, DONGYING);
        assert_eq!(fen(&before.deductible_used) + fen(&before.deductible_left), fen(&before.deductible));

        let mut his = net.his_settlement(&hospital(ZIBO));
        let visit = his.register_visit(register_request("R-tot", ZIBO, DONGYING, 1)).await.expect("registered").into_inner().visit.expect("visit");
        his.upload_fee_lines(upload_request("U-tot", &visit, crate::settlement::visit_lines())).await.expect("uploaded");
        let settled = his.settle(settle_request("S-tot", &visit, 1, false)).await.expect("settled").into_inner().settlement.expect("settlement");
        let split = settled.split.clone().expect("split");
        let after = running_totals(net, DONGYING, 1).await;
        assert_eq!(fen(&after.deductible_used), fen(&before.deductible_used) + fen(&split.deductible_applied));
        assert_eq!(fen(&after.fund_paid), fen(&before.fund_paid) + fen(&split.fund_pay));
        assert_eq!(after.annual_cap_left, split.annual_cap_left, "the totals are the split's after");
        assert_eq!(after.deductible_left, split.deductible_left);
        assert_eq!(after.policy_id, split.policy_id);

        his.cancel_settlement(cancel_request("C-tot", &settled)).await.expect("cancelled");
        let undone = running_totals(net, DONGYING, 1).await;
        assert_eq!((undone.deductible_used, undone.fund_paid), (before.deductible_used, before.fund_paid));

        // A lost card is refused, as at registration.
        let mut lost = GetRunningTotalsRequest {
            message_id: "RT-lost".into(),
            person_no: format!("{JINAN}{:010}", 6),
            credential: card(JINAN, 6),
            insurance_type: InsuranceType::Employee as i32,
            institution_code: hospital(ZIBO),
            service_date: String::new(),
            operator_id: "op1".into(),
        };
        let status = his.get_running_totals(lost.clone()).await.unwrap_err();
        assert_refused(&status, "CARD_LOST");
        lost.service_date = "2026-13-01".into();
        let status = his.get_running_totals(lost.clone()).await.unwrap_err();
        assert_invalid(&status, "service_date");
        let mut unknown_type = check_request(&hospital(ZIBO), JINAN, 1);
        unknown_type.medical_type = 0;
        let status = his.check_benefit(unknown_type).await.unwrap_err();
        assert_invalid(&status, "medical_type");

        // Jinan's benefit service answers Zibo's node for Zibo's institutions only.
        let ask = GetTotalsRequest {
            person_no: format!("{JINAN}{:010}", 1),
            service_date: yitong_core::today().to_string(),
            insurance_type: InsuranceType::Employee as i32,
            hospital_level: 3,
            treatment_city: ZIBO.into(),
            institution_code: hospital(ZIBO),
            disease_code: String::new(),
        };
        net.node(ZIBO).benefit(JINAN).get_totals(ask.clone()).await.expect("Zibo's node, for a Zibo hospital");
        let as_dongying = GetTotalsRequest { treatment_city: DONGYING.into(), institution_code: hospital(DONGYING), ..ask };
        let status = net.node(ZIBO).benefit(JINAN).get_totals(as_dongying).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }
}
