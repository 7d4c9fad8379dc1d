//! One outpatient visit as an HIS runs it: identify the patient, register the visit, upload the
//! fee lines, settle.

use yitong_core::{CardNumber, Owner, PoolCode, Service};
use yitong_proto::identity::v1::identity_service_client::IdentityServiceClient;
use yitong_proto::identity::v1::{Credential, GetInsuredPersonRequest, credential::Kind};
use yitong_proto::settlement::v1::settlement_service_client::SettlementServiceClient;
use yitong_proto::settlement::v1::{
    FeeLine, MedicalType, RegisterVisitRequest, SettleRequest, Settlement, UploadFeeLinesRequest,
};
use yitong_sandbox::Channel;
use yitong_sandbox::Sandbox;
use yitong_telemetry::grpc::Traced;

/// The HIS's channel to a node of its city: traced, as an HIS with its own tracing would be.
pub type HisChannel = Traced<Channel>;

/// The channel of the city's level-3 hospital (H<city>00001), the HIS these tests play.
pub fn his_channel(net: &Sandbox, city: &str, service: Service) -> HisChannel {
    let owner = Owner::Pool(PoolCode::parse(city).expect("region code"));
    let endpoint = net
        .endpoint(owner, service)
        .parse()
        .expect("the sandbox's endpoints are URIs");
    Traced::new(
        net.his(&format!("H{city}00001")).channel(owner, service),
        &endpoint,
    )
}

pub fn card(city: &str, n: u32) -> Option<Credential> {
    let number = CardNumber::new(PoolCode::parse(city).expect("region code"), n).to_string();
    Some(Credential {
        kind: Some(Kind::CardNumber(number)),
    })
}

fn line(serial: &str, code: &str, quantity: &str, unit_price: &str, amount: &str) -> FeeLine {
    FeeLine {
        serial: serial.into(),
        item_code: code.into(),
        quantity: quantity.into(),
        unit_price: unit_price.into(),
        amount: amount.into(),
        ..Default::default()
    }
}

/// Settles one visit of the `n`-th seeded person of `insured` (an employee for n = 1 or 2) at
/// `treatment`'s level-3 hospital, every call tagged with `tag`; returns the settlement.
pub async fn settle_visit(
    net: &Sandbox,
    tag: &str,
    treatment: &str,
    insured: &str,
    n: u32,
) -> Settlement {
    let mut identity = IdentityServiceClient::new(his_channel(net, treatment, Service::Identity));
    let person = identity
        .get_insured_person(GetInsuredPersonRequest {
            credential: card(insured, n),
            institution_code: format!("H{treatment}00001"),
            ..Default::default()
        })
        .await
        .expect("the person is found")
        .into_inner();
    let mut his = SettlementServiceClient::new(his_channel(net, treatment, Service::Settlement));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let visit = his
        .register_visit(RegisterVisitRequest {
            message_id: format!("R-{tag}"),
            person_no: format!("{insured}{n:010}"),
            credential: card(insured, n),
            insurance_type: person.person.map_or(0, |person| person.insurance_type),
            institution_code: format!("H{treatment}00001"),
            medical_type: MedicalType::Outpatient as i32,
            began_at: Some(prost_types::Timestamp {
                seconds: i64::try_from(now).expect("clock") - 60,
                nanos: 0,
            }),
            department_code: "0301".into(),
            department_name: "内科".into(),
            doctor_code: "D001".into(),
            doctor_name: "王医生".into(),
            his_visit_no: format!("HIS-{tag}"),
            diagnoses: vec![],
            operator_id: "op1".into(),
            disease_code: String::new(),
        })
        .await
        .expect("registered")
        .into_inner()
        .visit
        .expect("visit");
    let lines = vec![
        line("1", "001102000010000", "1", "20.00", "20.00"),
        line("2", "002103000010000", "20", "150.00", "3000.00"),
        line("3", "ZA01AAA001A002000100101", "2", "16.00", "32.00"),
    ];
    his.upload_fee_lines(UploadFeeLinesRequest {
        message_id: format!("U-{tag}"),
        visit_id: visit.visit_id.clone(),
        person_no: visit.person_no.clone(),
        institution_code: visit.institution_code.clone(),
        lines,
        operator_id: "op1".into(),
    })
    .await
    .expect("uploaded");
    his.settle(SettleRequest {
        message_id: format!("S-{tag}"),
        visit_id: visit.visit_id.clone(),
        person_no: visit.person_no.clone(),
        credential: card(insured, n),
        insurance_type: visit.insurance_type,
        total_amount: "3052.00".into(),
        use_personal_account: false,
        institution_code: visit.institution_code.clone(),
        operator_id: "op1".into(),
    })
    .await
    .expect("settled")
    .into_inner()
    .settlement
    .expect("settlement")
}
