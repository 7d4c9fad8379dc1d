//! Identifying insured persons across cities (the national 1101).

use tonic::Code;
use yitong_proto::identity::v1::{
    Credential, GetInsuredPersonRequest, InsuranceType, credential::Kind,
};
use yitong_sandbox::{BINZHOU, DONGYING, JINAN, PILOT_CITIES, ZIBO, network_test};

use crate::support::{
    assert_invalid, assert_no_citizen_id, assert_refused, seeded_card, seeded_citizen_id,
};

fn by_card(card: &str) -> GetInsuredPersonRequest {
    GetInsuredPersonRequest {
        credential: Some(Credential {
            kind: Some(Kind::CardNumber(card.to_owned())),
        }),
        ..Default::default()
    }
}

fn by_citizen_id(citizen_id: &str) -> GetInsuredPersonRequest {
    GetInsuredPersonRequest {
        credential: Some(Credential {
            kind: Some(Kind::CitizenId(citizen_id.to_owned())),
        }),
        ..Default::default()
    }
}

network_test! {
    /// Proves the first cross-city flow: a Zibo hospital asks Zibo's node about a Jinan card, the
    /// node asks Jinan, and the Jinan person comes back with insured city 370100 and a masked ID.
    async fn zibo_identifies_a_jinan_card(net) {
        let card = seeded_card(JINAN, 1);
        let reply = net.identity(ZIBO).get_insured_person(by_card(&card)).await.expect("Jinan card is found at Zibo");
        let person = reply.into_inner().person.expect("person");
        assert_eq!(person.insured_city, JINAN);
        assert_eq!(person.card_number, card);
        assert_eq!(person.person_no, "3701000000000001");
        assert_eq!(person.insurance_type, InsuranceType::Employee as i32);
        let full = seeded_citizen_id(JINAN, 1);
        assert_eq!(person.citizen_id_masked, format!("{}********{}", &full[..6], &full[14..]));
        assert_no_citizen_id(&format!("{person:?}"));
    }
}

network_test! {
    /// Proves that every pilot city identifies every other pilot city's cards.
    async fn every_city_identifies_every_city(net) {
        for asked in PILOT_CITIES {
            for insured in PILOT_CITIES {
                let reply = net.identity(asked).get_insured_person(by_card(&seeded_card(insured, 3))).await;
                let person = reply.unwrap_or_else(|status| panic!("{insured} card at {asked}: {status:?}")).into_inner().person.expect("person");
                assert_eq!(person.insured_city, insured);
            }
        }
    }
}

network_test! {
    /// Proves that a well-formed card number nobody issued is NOT_FOUND, asked locally or
    /// across cities.
    async fn unknown_card_is_not_found(net) {
        for asked in [JINAN, ZIBO] {
            let status = net.identity(asked).get_insured_person(by_card(&seeded_card(JINAN, 99_999_999))).await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "{status:?}");
        }
    }
}

network_test! {
    /// Proves that malformed input is INVALID_ARGUMENT naming the field, before any routing.
    async fn malformed_lookups_name_the_field(net) {
        let mut zibo = net.identity(ZIBO);
        let mut wrong_check_digit = seeded_card(JINAN, 1);
        let last = wrong_check_digit.pop().unwrap();
        wrong_check_digit.push(if last == '9' { '0' } else { char::from(last as u8 + 1) });
        for card in [wrong_check_digit.as_str(), "37010000000012", "37010000000012A", "", "379900000000019"] {
            let status = zibo.get_insured_person(by_card(card)).await.unwrap_err();
            assert_invalid(&status, "credential.card_number");
        }
        let status = zibo.get_insured_person(by_citizen_id("110105194912310021")).await.unwrap_err();
        assert_invalid(&status, "credential.citizen_id");
        let status = zibo.get_insured_person(GetInsuredPersonRequest::default()).await.unwrap_err();
        assert_invalid(&status, "credential");
        let mut request = by_card(&seeded_card(JINAN, 1));
        request.service_date = "2026-02-30".into();
        assert_invalid(&zibo.get_insured_person(request).await.unwrap_err(), "service_date");
    }
}

network_test! {
    /// Proves that a lost card is refused in all four cities, saying why.
    async fn lost_card_is_refused_everywhere(net) {
        let lost = seeded_card(BINZHOU, 6);
        for asked in PILOT_CITIES {
            let status = net.identity(asked).get_insured_person(by_card(&lost)).await.unwrap_err();
            assert_refused(&status, "CARD_LOST");
            assert_no_citizen_id(status.message());
        }
    }
}

network_test! {
    /// Proves that suspended and terminated persons are refused, saying why.
    async fn persons_without_entitlement_are_refused(net) {
        let status = net.identity(DONGYING).get_insured_person(by_card(&seeded_card(JINAN, 5))).await.unwrap_err();
        assert_refused(&status, "INSURANCE_SUSPENDED");
        let status = net.identity(DONGYING).get_insured_person(by_card(&seeded_card(JINAN, 7))).await.unwrap_err();
        assert_refused(&status, "INSURANCE_TERMINATED");
        // Before the suspension took effect (2026-03-01) the same person was entitled.
        let mut earlier = by_card(&seeded_card(JINAN, 5));
        earlier.service_date = "2026-02-28".into();
        net.identity(DONGYING).get_insured_person(earlier).await.expect("entitled before the suspension");
    }
}

network_test! {
    /// Proves that a Dongying hospital identifies a Binzhou patient by citizen ID, though the ID
    /// says nothing of where the person is insured.
    async fn citizen_id_is_found_in_the_insuring_city(net) {
        let citizen_id = seeded_citizen_id(BINZHOU, 8);
        assert!(citizen_id.ends_with('X'), "the seed covers the X check digit");
        let person = net.identity(DONGYING).get_insured_person(by_citizen_id(&citizen_id)).await.expect("found").into_inner().person.expect("person");
        assert_eq!(person.insured_city, BINZHOU);
        assert_eq!(person.card_number, seeded_card(BINZHOU, 8));
        assert_no_citizen_id(&format!("{person:?}"));
        let stranger = net.identity(DONGYING).get_insured_person(by_citizen_id("11010519491231002X")).await.unwrap_err();
        assert_eq!(stranger.code(), Code::NotFound);
    }
}

network_test! {
    /// Proves that a card of a city defined but not yet enabled (Tai'an) is refused as such.
    async fn card_of_a_city_not_enabled_is_refused(net) {
        let status = net.identity(ZIBO).get_insured_person(by_card(&seeded_card("370900", 1))).await.unwrap_err();
        assert_refused(&status, "CITY_NOT_ENABLED");
    }
}
