//! Reference data in memory: each catalog node holds its catalog and policies, checked against
//! their version heads on every read, so a bureau's change through the catalog's RPCs reaches
//! the very next fee line, PreSettle and Settle, and a date before the change keeps the old terms.

use yitong_proto::catalog::v1::{GetPolicyRequest, HospitalLevel, ItemGrade, LookupItemsRequest};
use yitong_proto::identity::v1::{InsuranceType, PersonType};
use yitong_proto::settlement::v1::{FeeLine, PreSettleRequest, SettleRequest, SettlementSplit};
use yitong_sandbox::{JINAN, ZIBO, network_test};

use crate::catalog::{ATORVASTATIN, drug, from_today, new_policy_version, publication};
use crate::settlement::{card, fen, hospital, line, register_request, upload_request, visit_lines};

fn now_seconds() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    i64::try_from(now).expect("seconds fit")
}

fn at(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

/// A line of one pack of atorvastatin at 24.00 yuan, charged at `seconds`.
fn atorvastatin(serial: &str, seconds: i64) -> FeeLine {
    FeeLine {
        occurred_at: at(seconds),
        ..line(serial, ATORVASTATIN, "1", "24.00", "24.00")
    }
}

fn pre_settle_request(message_id: &str, settle: &SettleRequest) -> PreSettleRequest {
    PreSettleRequest {
        message_id: message_id.into(),
        visit_id: settle.visit_id.clone(),
        person_no: settle.person_no.clone(),
        credential: settle.credential.clone(),
        insurance_type: settle.insurance_type,
        total_amount: settle.total_amount.clone(),
        use_personal_account: settle.use_personal_account,
        institution_code: settle.institution_code.clone(),
        operator_id: "op1".into(),
    }
}

fn settle_request(
    message_id: &str,
    visit: &yitong_proto::settlement::v1::Visit,
    total: &str,
) -> SettleRequest {
    SettleRequest {
        message_id: message_id.into(),
        visit_id: visit.visit_id.clone(),
        person_no: visit.person_no.clone(),
        credential: card(&visit.insured_city, 1),
        insurance_type: visit.insurance_type,
        total_amount: total.into(),
        use_personal_account: false,
        institution_code: visit.institution_code.clone(),
        operator_id: "op1".into(),
    }
}

/// The ratio a split was priced at, without trailing zeros ("0.6" for "0.60").
fn ratio(split: &SettlementSplit) -> &str {
    split.pool_ratio.trim_end_matches('0')
}

network_test! {
    /// Proves a new price cap reaches the next fee line: Zibo's node has classified atorvastatin
    /// under its seeded cap (23.50), Zibo publishes a cap of 20.00 from today, and the next
    /// upload classifies a line of today under the new cap while a line of the day before, in
    /// the same visit, keeps the old one; PreSettle and Settle then price exactly those lines.
    async fn a_new_price_cap_reaches_the_next_fee_line(net) {
        let now = now_seconds();
        let began = now - 36 * 3600;
        let mut his = net.his_settlement(&hospital(ZIBO));
        let mut register = register_request("RF-R", ZIBO, JINAN, 1);
        register.began_at = at(began);
        let visit = his.register_visit(register).await.expect("registered").into_inner().visit.expect("visit");
        let first = his.upload_fee_lines(upload_request("RF-U1", &visit, vec![atorvastatin("1", now - 60)])).await.expect("uploaded").into_inner();
        assert_eq!((first.lines[0].price_cap.as_str(), first.lines[0].over_cap_amount.as_str()), ("23.50", "0.50"));

        let mut lowered = publication("RF-CAT", vec![]);
        lowered.changed.push(drug(ATORVASTATIN, "阿托伐他汀钙片 20mg*7片", ItemGrade::A, "0", "20.00", &from_today(0)));
        let published = net.catalog(ZIBO).publish_catalog_version(lowered).await.expect("published").into_inner();
        assert_eq!(published.version, 2);

        let second = his.upload_fee_lines(upload_request("RF-U2", &visit, vec![atorvastatin("2", now - 30), atorvastatin("3", began)])).await.expect("uploaded").into_inner();
        let caps: Vec<(&str, &str)> = second.lines.iter().map(|line| (line.price_cap.as_str(), line.over_cap_amount.as_str())).collect();
        assert_eq!(caps, [("20.00", "4.00"), ("23.50", "0.50")], "today's line under the new cap, the day before's under the old");

        // The catalog answers the same way to anyone asking it directly.
        let answer = |date: String| LookupItemsRequest { codes: vec![ATORVASTATIN.into()], service_date: date, institution_code: hospital(ZIBO) };
        let today = net.catalog(ZIBO).lookup_items(answer(from_today(0))).await.expect("looked up").into_inner();
        let item = today.items[0].item.as_ref().expect("listed");
        assert_eq!((today.catalog_version, item.price_cap.as_str(), item.version), (2, "20.00", 2));
        let yesterday = net.catalog(ZIBO).lookup_items(answer(from_today(-1))).await.expect("looked up").into_inner();
        let item = yesterday.items[0].item.as_ref().expect("listed");
        assert_eq!((item.price_cap.as_str(), item.valid_until.as_str()), ("23.50", from_today(-1).as_str()));

        let settle = settle_request("RF-S", &visit, "72.00");
        let quoted = his.pre_settle(pre_settle_request("RF-P", &settle)).await.expect("pre-settled").into_inner().split.expect("split");
        assert_eq!(fen(&quoted.over_cap_self_pay), 500, "0.50 + 4.00 + 0.50 over the caps");
        let settled = his.settle(settle).await.expect("settled").into_inner().settlement.expect("settlement");
        assert_eq!(settled.split.as_ref(), Some(&quoted));
    }
}

network_test! {
    /// Proves a new policy version reaches the next PreSettle and Settle: Jinan's node has
    /// priced a Zibo visit of a Jinan employee under its 2026 policy (ratio 0.60), Jinan's
    /// bureau records a version from today (0.65), and the next PreSettle and the Settle price
    /// under it, while the policy of yesterday still reads as the 2026 version ending then.
    async fn a_new_policy_version_reaches_the_next_settle(net) {
        let mut his = net.his_settlement(&hospital(ZIBO));
        let visit = his.register_visit(register_request("RP-R", ZIBO, JINAN, 1)).await.expect("registered").into_inner().visit.expect("visit");
        his.upload_fee_lines(upload_request("RP-U", &visit, visit_lines())).await.expect("uploaded");
        let settle = settle_request("RP-S", &visit, "3052.00");
        let before = his.pre_settle(pre_settle_request("RP-P1", &settle)).await.expect("pre-settled").into_inner().split.expect("split");
        assert_eq!((before.policy_id.as_str(), ratio(&before)), ("370100-310-1-3-2026-01-01", "0.6"));

        let today = from_today(0);
        net.catalog(JINAN).upsert_policy(new_policy_version("RP-POL", &today, "0.65")).await.expect("recorded");

        let after = his.pre_settle(pre_settle_request("RP-P2", &settle)).await.expect("pre-settled").into_inner().split.expect("split");
        assert_eq!((after.policy_id.as_str(), ratio(&after)), (format!("370100-310-1-3-{today}").as_str(), "0.65"));
        assert!(fen(&after.fund_pay) > fen(&before.fund_pay), "a higher ratio pays more: {before:?} then {after:?}");
        let settled = his.settle(settle).await.expect("settled").into_inner().settlement.expect("settlement");
        assert_eq!(settled.split.as_ref(), Some(&after));

        let policy_of = |date: String| GetPolicyRequest {
            insured_city: JINAN.into(),
            insurance_type: InsuranceType::Employee as i32,
            person_type: PersonType::InService as i32,
            hospital_level: HospitalLevel::HospitalLevel3 as i32,
            date,
        };
        let yesterday = net.catalog(JINAN).get_policy(policy_of(from_today(-1))).await.expect("in force").into_inner().policy.expect("policy");
        assert_eq!((yesterday.policy_id.as_str(), yesterday.effective_until.as_str()), ("370100-310-1-3-2026-01-01", from_today(-1).as_str()));
        // Asked at another city's node, which asks Jinan's.
        let from_zibo = net.catalog(ZIBO).get_policy(policy_of(today.clone())).await.expect("in force").into_inner().policy.expect("policy");
        assert_eq!(from_zibo.policy_id, format!("370100-310-1-3-{today}"));
    }
}
