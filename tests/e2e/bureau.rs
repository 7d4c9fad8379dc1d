//! A city bureau's identity work: enrolment and cards, loss and reissue, insurance status, and
//! e-vouchers (scan codes) used across cities.

use tonic::Code;
use yitong_core::CitizenId;
use yitong_proto::identity::v1::{
    CardStatus, Credential, GetInsuredPersonRequest, InsuranceStatus, InsuranceType,
    IssueCardRequest, IssueEVoucherRequest, MoveAccountRequest, PersonEnrolment, PersonType,
    ReissueCardRequest, ReportCardLostRequest, SetInsuranceStatusRequest, Sex, credential::Kind,
};
use yitong_sandbox::{BINZHOU, DONGYING, JINAN, PILOT_CITIES, Sandbox, ZIBO, network_test};

use crate::support::{
    assert_invalid, assert_no_citizen_id, assert_refused, seeded_card, seeded_citizen_id,
};

fn by(kind: Kind) -> GetInsuredPersonRequest {
    GetInsuredPersonRequest {
        credential: Some(Credential { kind: Some(kind) }),
        ..Default::default()
    }
}

fn card(card: &str) -> Kind {
    Kind::CardNumber(card.to_owned())
}

/// A valid citizen ID for a person born on `birth` (YYYYMMDD) in district `region`.
fn citizen_id(region: &str, birth: &str, sequence: u32) -> String {
    let body = format!("{region}{birth}{sequence:03}");
    format!("{body}{}", CitizenId::check_character(&body) as char)
}

fn enrolment(citizen_id: &str) -> PersonEnrolment {
    PersonEnrolment {
        citizen_id: citizen_id.to_owned(),
        name: "韩梅梅".to_owned(),
        sex: Sex::Female as i32,
        birth_date: format!(
            "{}-{}-{}",
            &citizen_id[6..10],
            &citizen_id[10..12],
            &citizen_id[12..14]
        ),
        insurance_type: InsuranceType::Employee as i32,
        person_type: PersonType::InService as i32,
        insured_since: "2020-07-01".to_owned(),
        account_balance: "1200.00".to_owned(),
    }
}

async fn issue(
    net: &Sandbox,
    city: &str,
    message_id: &str,
    person: PersonEnrolment,
) -> Result<String, tonic::Status> {
    let request = IssueCardRequest {
        message_id: message_id.to_owned(),
        person: Some(person),
        operator_id: "bureau-1".to_owned(),
    };
    net.identity(city)
        .issue_card(request)
        .await
        .map(|reply| reply.into_inner().card_number)
}

async fn found_everywhere(net: &Sandbox, kind: Kind, insured: &str) {
    for asked in PILOT_CITIES {
        let reply = net
            .identity(asked)
            .get_insured_person(by(kind.clone()))
            .await;
        let person = reply
            .unwrap_or_else(|status| panic!("asked at {asked}: {status:?}"))
            .into_inner()
            .person
            .expect("person");
        assert_eq!(person.insured_city, insured, "asked at {asked}");
    }
}

network_test! {
    /// Proves that a Dongying hospital identifies a Binzhou patient by card, by citizen ID and by
    /// the scan code Binzhou signed, and that the three agree.
    async fn dongying_identifies_a_binzhou_patient_three_ways(net) {
        let mut dongying = net.identity(DONGYING);
        let by_card = dongying.get_insured_person(by(card(&seeded_card(BINZHOU, 1)))).await.expect("by card").into_inner().person;
        let by_id = dongying.get_insured_person(by(Kind::CitizenId(seeded_citizen_id(BINZHOU, 1)))).await.expect("by citizen ID").into_inner().person;
        // The patient's app asks the insured city for a code; Binzhou signs it.
        let voucher = net.identity(BINZHOU)
            .issue_e_voucher(IssueEVoucherRequest { credential: Some(Credential { kind: Some(card(&seeded_card(BINZHOU, 1))) }), ttl_seconds: 0 })
            .await
            .expect("voucher issued")
            .into_inner();
        assert_eq!(voucher.issuer_city, BINZHOU);
        assert_no_citizen_id(&voucher.token);
        let by_code = dongying.get_insured_person(by(Kind::EVoucherToken(voucher.token.clone()))).await.expect("by scan code").into_inner().person;
        assert_eq!(by_card, by_id);
        assert_eq!(by_card, by_code);
        assert_eq!(by_card.expect("person").insured_city, BINZHOU);

        // A code asked for by citizen ID is the same person's, found in every city.
        let by_citizen_id = net.identity(BINZHOU)
            .issue_e_voucher(IssueEVoucherRequest { credential: Some(Credential { kind: Some(Kind::CitizenId(seeded_citizen_id(BINZHOU, 2))) }), ttl_seconds: 60 })
            .await
            .expect("voucher issued by citizen ID")
            .into_inner();
        assert_eq!(by_citizen_id.issuer_city, BINZHOU);
        found_everywhere(net, Kind::EVoucherToken(by_citizen_id.token), BINZHOU).await;
    }
}

fn voucher_for(kind: Kind) -> IssueEVoucherRequest {
    IssueEVoucherRequest {
        credential: Some(Credential { kind: Some(kind) }),
        ttl_seconds: 0,
    }
}

network_test! {
    /// Proves that only the insured city issues scan codes, at its own node and under its
    /// bureau's credential: another city's bureau is refused for a Binzhou card
    /// (NOT_ISSUED_HERE) and finds no Binzhou citizen ID (no city is asked), a node key and an
    /// HIS are denied, and Binzhou's bureau may not issue at another city's node.
    async fn only_the_insured_city_issues_scan_codes(net) {
        let status = net.identity(DONGYING).issue_e_voucher(voucher_for(card(&seeded_card(BINZHOU, 1)))).await.unwrap_err();
        assert_refused(&status, "NOT_ISSUED_HERE");
        let status = net.identity(DONGYING).issue_e_voucher(voucher_for(Kind::CitizenId(seeded_citizen_id(BINZHOU, 2)))).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        let status = net.identity(DONGYING).issue_e_voucher(voucher_for(Kind::PersonNo(format!("{BINZHOU}0000000001")))).await.unwrap_err();
        assert_refused(&status, "NOT_ISSUED_HERE");

        // Binzhou's own node, another city's node, an HIS of Binzhou and the operator are
        // all denied at Binzhou's node; Binzhou's bureau is denied at Dongying's.
        for caller in [
            format!("node:{BINZHOU}"),
            format!("node:{DONGYING}"),
            "institution:H37160000001".to_owned(),
            "operator:dev".to_owned(),
        ] {
            let status = net.as_caller(&caller).identity(BINZHOU).issue_e_voucher(voucher_for(card(&seeded_card(BINZHOU, 1)))).await.unwrap_err();
            assert_eq!(status.code(), Code::PermissionDenied, "{caller}: {status:?}");
        }
        let status = net.bureau(BINZHOU).identity(DONGYING).issue_e_voucher(voucher_for(card(&seeded_card(BINZHOU, 1)))).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

        // Binzhou's bureau, at Binzhou's node, issues it.
        let voucher = net.identity(BINZHOU).issue_e_voucher(voucher_for(card(&seeded_card(BINZHOU, 1)))).await.expect("issued by the insured city").into_inner();
        assert_eq!(voucher.issuer_city, BINZHOU);
    }
}

network_test! {
    /// Proves that a forged or altered scan code is refused as malformed, naming the field.
    async fn forged_scan_codes_are_refused(net) {
        let voucher = net.identity(JINAN)
            .issue_e_voucher(IssueEVoucherRequest { credential: Some(Credential { kind: Some(card(&seeded_card(JINAN, 1))) }), ttl_seconds: 0 })
            .await
            .expect("voucher issued")
            .into_inner();
        let (payload, signature) = voucher.token.split_once('.').expect("payload.signature");
        let mut flipped = signature.as_bytes().to_vec();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let forged = format!("{payload}.{}", String::from_utf8(flipped).unwrap());
        for token in [forged.as_str(), "not-a-token", payload] {
            let status = net.identity(ZIBO).get_insured_person(by(Kind::EVoucherToken(token.to_owned()))).await.unwrap_err();
            assert_invalid(&status, "credential.e_voucher_token");
        }
        let status = net.identity(JINAN)
            .issue_e_voucher(IssueEVoucherRequest { credential: Some(Credential { kind: Some(card(&seeded_card(JINAN, 1))) }), ttl_seconds: 601 })
            .await
            .unwrap_err();
        assert_invalid(&status, "ttl_seconds");
        // A suspended person gets no scan code.
        let status = net.identity(JINAN)
            .issue_e_voucher(IssueEVoucherRequest { credential: Some(Credential { kind: Some(card(&seeded_card(JINAN, 5))) }), ttl_seconds: 0 })
            .await
            .unwrap_err();
        assert_refused(&status, "INSURANCE_SUSPENDED");
    }
}

network_test! {
    /// Proves the lost-card workflow: after Binzhou's bureau reports a card lost, all four cities
    /// refuse it at once; the reissued card works everywhere and the old one stays refused.
    async fn lost_card_is_refused_everywhere_and_the_reissued_card_works(net) {
        let old = seeded_card(BINZHOU, 2);
        found_everywhere(net, card(&old), BINZHOU).await;
        let reported = net.identity(BINZHOU)
            .report_card_lost(ReportCardLostRequest { message_id: "BZ-LOST-1".into(), card_number: old.clone(), operator_id: "bureau-1".into() })
            .await
            .expect("reported")
            .into_inner();
        assert_eq!(reported.status, CardStatus::Lost as i32);
        for asked in PILOT_CITIES {
            let status = net.identity(asked).get_insured_person(by(card(&old))).await.unwrap_err();
            assert_refused(&status, "CARD_LOST");
        }
        let reissued = net.identity(BINZHOU)
            .reissue_card(ReissueCardRequest { message_id: "BZ-REISSUE-1".into(), card_number: old.clone(), operator_id: "bureau-1".into() })
            .await
            .expect("reissued")
            .into_inner();
        let person = reissued.person.expect("person");
        assert_eq!(person.card_number, reissued.new_card_number);
        assert_eq!(person.person_no, "3716000000000002", "the person is kept");
        found_everywhere(net, card(&reissued.new_card_number), BINZHOU).await;
        for asked in PILOT_CITIES {
            let status = net.identity(asked).get_insured_person(by(card(&old))).await.unwrap_err();
            assert_refused(&status, "CARD_CANCELLED");
        }
        // A replay of the reissue returns the first answer and issues no third card.
        let replay = net.identity(BINZHOU)
            .reissue_card(ReissueCardRequest { message_id: "BZ-REISSUE-1".into(), card_number: old.clone(), operator_id: "bureau-1".into() })
            .await
            .expect("replayed")
            .into_inner();
        assert_eq!(replay.new_card_number, reissued.new_card_number);
        // Another city's bureau cannot report a Binzhou card lost.
        let status = net.identity(ZIBO)
            .report_card_lost(ReportCardLostRequest { message_id: "ZB-LOST-1".into(), card_number: reissued.new_card_number, operator_id: "bureau-9".into() })
            .await
            .unwrap_err();
        assert_refused(&status, "NOT_ISSUED_HERE");
    }
}

network_test! {
    /// Proves enrolment: a new person gets a card every city honours; a replay returns the first
    /// answer; the same message id with other content is ALREADY_EXISTS and changes nothing; a
    /// second card for an enrolled person is refused.
    async fn enrolment_issues_one_card_per_message(net) {
        let newcomer = citizen_id("370303", "19880412", 246);
        let first = issue(net, ZIBO, "ZB-ENROL-1", enrolment(&newcomer)).await.expect("enrolled");
        found_everywhere(net, card(&first), ZIBO).await;
        found_everywhere(net, Kind::CitizenId(newcomer.clone()), ZIBO).await;
        assert_eq!(issue(net, ZIBO, "ZB-ENROL-1", enrolment(&newcomer)).await.expect("replay"), first);

        let mut other = enrolment(&newcomer);
        other.name = "李雷".into();
        let status = issue(net, ZIBO, "ZB-ENROL-1", other).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        let person = net.identity(ZIBO).get_insured_person(by(card(&first))).await.expect("unchanged").into_inner().person.expect("person");
        assert_eq!(person.name, "韩梅梅");

        let status = issue(net, ZIBO, "ZB-ENROL-2", enrolment(&newcomer)).await.unwrap_err();
        assert_refused(&status, "ALREADY_HOLDS_CARD");
        assert_no_citizen_id(status.message());
    }
}

network_test! {
    /// Proves that malformed enrolments are INVALID_ARGUMENT naming the field, and store nothing:
    /// the next valid enrolment still gets the very next card number.
    async fn malformed_enrolments_store_nothing(net) {
        let valid = citizen_id("371602", "19750101", 135);
        let mut wrong_check = valid.clone();
        let last = wrong_check.pop().unwrap();
        wrong_check.push(if last == '1' { '2' } else { '1' });
        let cases: Vec<(&str, PersonEnrolment)> = vec![
            ("person.citizen_id", enrolment(&wrong_check)),
            ("person.name", PersonEnrolment { name: " ".into(), ..enrolment(&valid) }),
            ("person.sex", PersonEnrolment { sex: 0, ..enrolment(&valid) }),
            ("person.birth_date", PersonEnrolment { birth_date: "1975-01-02".into(), ..enrolment(&valid) }),
            ("person.insurance_type", PersonEnrolment { insurance_type: 0, ..enrolment(&valid) }),
            ("person.account_balance", PersonEnrolment { account_balance: "-1.00".into(), ..enrolment(&valid) }),
            ("person.account_balance", PersonEnrolment { insurance_type: InsuranceType::Resident as i32, ..enrolment(&valid) }),
            ("person.insured_since", PersonEnrolment { insured_since: "2020-13-01".into(), ..enrolment(&valid) }),
        ];
        for (field, person) in cases {
            let status = issue(net, BINZHOU, "BZ-BAD-1", person).await.unwrap_err();
            assert_invalid(&status, field);
        }
        let status = issue(net, BINZHOU, "", enrolment(&valid)).await.unwrap_err();
        assert_invalid(&status, "message_id");
        // Binzhou seeded its persons' cards first; the next card follows them directly.
        let seeded = std::fs::read_to_string(yitong_sandbox::seeds_dir().join("persons.csv")).unwrap();
        let binzhou_cards = seeded.lines().filter(|line| line.starts_with(BINZHOU)).count() as u32;
        let card = issue(net, BINZHOU, "BZ-BAD-1", enrolment(&valid)).await.expect("the refused message id is free");
        assert_eq!(card, seeded_card(BINZHOU, binzhou_cards + 1));
    }
}

network_test! {
    /// Proves that a bureau's status change takes effect from its date, in every city.
    async fn insurance_status_changes_take_effect_from_their_date(net) {
        let person_no = "3703000000000003";
        let change = |message_id: &str, status: InsuranceStatus, date: &str| SetInsuranceStatusRequest {
            message_id: message_id.into(),
            person_no: person_no.into(),
            status: status as i32,
            effective_date: date.into(),
            reason: "contributions unpaid".into(),
            operator_id: "bureau-2".into(),
        };
        let reply = net.identity(ZIBO).set_insurance_status(change("ZB-SUSPEND-1", InsuranceStatus::Suspended, "2026-01-01")).await.expect("suspended").into_inner();
        assert_eq!(reply.person.expect("person").insurance_status, InsuranceStatus::Suspended as i32);
        for asked in PILOT_CITIES {
            let status = net.identity(asked).get_insured_person(by(card(&seeded_card(ZIBO, 3)))).await.unwrap_err();
            assert_refused(&status, "INSURANCE_SUSPENDED");
        }
        let before = GetInsuredPersonRequest { service_date: "2025-12-31".into(), ..by(card(&seeded_card(ZIBO, 3))) };
        net.identity(JINAN).get_insured_person(before).await.expect("entitled before the suspension");
        net.identity(ZIBO).set_insurance_status(change("ZB-RESUME-1", InsuranceStatus::Active, "2026-02-01")).await.expect("resumed");
        found_everywhere(net, card(&seeded_card(ZIBO, 3)), ZIBO).await;

        let status = net.identity(ZIBO).set_insurance_status(change("ZB-BAD-1", InsuranceStatus::Unspecified, "2026-02-01")).await.unwrap_err();
        assert_invalid(&status, "status");
        let status = net.identity(ZIBO).set_insurance_status(SetInsuranceStatusRequest { reason: String::new(), ..change("ZB-BAD-2", InsuranceStatus::Suspended, "2026-02-01") }).await.unwrap_err();
        assert_invalid(&status, "reason");
        let status = net.identity(JINAN).set_insurance_status(change("JN-1", InsuranceStatus::Suspended, "2026-02-01")).await.unwrap_err();
        assert_refused(&status, "NOT_ISSUED_HERE");
    }
}

network_test! {
    /// Proves the personal account has one owner: a movement is applied once per settlement
    /// whatever message carries it, every city's lookup shows the live balance, and an account
    /// is never overdrawn.
    async fn personal_account_moves_once_per_settlement(net) {
        let person_no = "3705000000000001";
        let lookup = || by(Kind::PersonNo(person_no.to_owned()));
        let before = net.identity(ZIBO).get_insured_person(lookup()).await.expect("found").into_inner().person.expect("person");
        let balance = |text: &str| yitong_core::Amount::parse(text).expect("amount").fen();
        let movement = |message_id: &str, amount: &str| MoveAccountRequest {
            message_id: message_id.into(),
            settlement_id: "J37050026112500000001".into(),
            person_no: person_no.into(),
            amount: amount.into(),
        };
        let moved = net.node(DONGYING).identity(DONGYING).move_account(movement("DY-ACCT-1", "-12.34")).await.expect("moved").into_inner();
        assert_eq!(balance(&moved.balance_after), balance(&before.account_balance) - 1234);
        // The same settlement under another message id: the first movement, not a second one.
        let again = net.node(DONGYING).identity(DONGYING).move_account(movement("DY-ACCT-2", "-12.34")).await.expect("replayed").into_inner();
        assert_eq!(again.balance_after, moved.balance_after);
        let status = net.node(DONGYING).identity(DONGYING).move_account(movement("DY-ACCT-3", "-99.00")).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        for asked in PILOT_CITIES {
            let person = net.identity(asked).get_insured_person(lookup()).await.expect("found").into_inner().person.expect("person");
            assert_eq!(person.account_balance, moved.balance_after, "live balance at {asked}");
        }
        let overdraw = MoveAccountRequest { settlement_id: "J37050026112500000002".into(), amount: "-99999999.00".into(), ..movement("DY-ACCT-4", "") };
        assert_refused(&net.node(DONGYING).identity(DONGYING).move_account(overdraw).await.unwrap_err(), "ACCOUNT_INSUFFICIENT");
        let zero = MoveAccountRequest { settlement_id: "J37050026112500000003".into(), ..movement("DY-ACCT-5", "0.00") };
        assert_invalid(&net.node(DONGYING).identity(DONGYING).move_account(zero).await.unwrap_err(), "amount");
    }
}
