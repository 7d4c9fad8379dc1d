//! The catalog service as hospitals and bureaus use it: classifying fee lines with the treatment
//! city's catalog at a date, keeping an HIS copy current by versioned downloads, publishing
//! change sets, effective-dated policies, and the designated institutions of every city.

use tonic::Code;
use yitong_core::{Date, today};
use yitong_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use yitong_proto::catalog::v1::{
    CatalogChangeKind, CatalogItem, DownloadCatalogRequest, DownloadCatalogResponse,
    GetInstitutionRequest, GetPolicyRequest, HospitalLevel, InstitutionKind, ItemClassification,
    ItemGrade, ItemKind, ListInstitutionsRequest, LookupItemsRequest, LookupOutcome, Policy,
    PublishCatalogVersionRequest, UpsertPolicyRequest, WithdrawnItem,
};
use yitong_proto::identity::v1::{InsuranceType, PersonType};
use yitong_sandbox::Channel;
use yitong_sandbox::{JINAN, PILOT_CITIES, ZIBO, network_test};

use crate::support::{assert_invalid, assert_refused};

/// Fixtures of `seeds/catalog_items.csv` whose terms differ between the cities on purpose.
pub(crate) const ATORVASTATIN: &str = "XC10AAA001A001000100101";
const LIANHUA_QINGWEN: &str = "ZA01AAA001A002000100101";
const CT_HEAD: &str = "002103000010000";
const IV_CANNULA: &str = "C0204010010001022101";
/// Listed everywhere from 2024 to the end of 2025 only.
const AMOXICILLIN_OLD: &str = "XJ01CAA002A002000100101";
/// Listed in Jinan only.
const DONEPEZIL: &str = "XN06DAA003A001000100101";
/// Shaped like a national code, in no catalog.
const UNKNOWN: &str = "XA10BKA999A001000100101";

/// `days` days after today (before, when negative), as the wire writes dates.
pub(crate) fn from_today(days: i64) -> String {
    let mut date: Date = today();
    for _ in 0..days.unsigned_abs() {
        date = if days > 0 {
            date.succ_opt()
        } else {
            date.pred_opt()
        }
        .expect("within the calendar");
    }
    date.to_string()
}

fn lookup(codes: &[&str], service_date: &str) -> LookupItemsRequest {
    LookupItemsRequest {
        codes: codes.iter().map(|code| (*code).to_owned()).collect(),
        service_date: service_date.to_owned(),
        institution_code: "H37030000001".to_owned(),
    }
}

/// Classifies `codes` in `city` on `date`.
async fn classify(
    client: &mut CatalogServiceClient<Channel>,
    codes: &[&str],
    date: &str,
) -> Vec<ItemClassification> {
    client
        .lookup_items(lookup(codes, date))
        .await
        .expect("lookup answers")
        .into_inner()
        .items
}

/// The catalog version a city's node answers at.
async fn catalog_version(client: &mut CatalogServiceClient<Channel>) -> u64 {
    client
        .lookup_items(lookup(&[UNKNOWN], ""))
        .await
        .expect("lookup answers")
        .into_inner()
        .catalog_version
}

/// Every page of a download, in order.
async fn download(
    client: &mut CatalogServiceClient<Channel>,
    since_version: u64,
    page_size: u32,
) -> Vec<DownloadCatalogResponse> {
    let mut stream = client
        .download_catalog(DownloadCatalogRequest {
            since_version,
            page_size,
        })
        .await
        .expect("download starts")
        .into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await.expect("page arrives") {
        pages.push(page);
    }
    pages
}

pub(crate) fn drug(
    code: &str,
    name: &str,
    grade: ItemGrade,
    ratio: &str,
    cap: &str,
    from: &str,
) -> CatalogItem {
    CatalogItem {
        code: code.to_owned(),
        name: name.to_owned(),
        kind: ItemKind::Drug as i32,
        grade: grade as i32,
        self_pay_ratio: ratio.to_owned(),
        price_cap: cap.to_owned(),
        valid_from: from.to_owned(),
        valid_until: String::new(),
        version: 0,
    }
}

pub(crate) fn publication(
    message_id: &str,
    added: Vec<CatalogItem>,
) -> PublishCatalogVersionRequest {
    PublishCatalogVersionRequest {
        message_id: message_id.to_owned(),
        added,
        note: "test publication".to_owned(),
        operator_id: "bureau-op-1".to_owned(),
        ..Default::default()
    }
}

/// Rows of `seeds/catalog_items.csv` for `city`.
fn seeded_item_count(city: &str) -> usize {
    std::fs::read_to_string(yitong_sandbox::seeds_dir().join("catalog_items.csv"))
        .expect("catalog_items.csv")
        .lines()
        .filter(|line| line.starts_with(&format!("{city},")))
        .count()
}

fn policy_request(insured_city: &str, date: &str) -> GetPolicyRequest {
    GetPolicyRequest {
        insured_city: insured_city.to_owned(),
        insurance_type: InsuranceType::Employee as i32,
        person_type: PersonType::InService as i32,
        hospital_level: HospitalLevel::HospitalLevel3 as i32,
        date: date.to_owned(),
    }
}

async fn policy_on(
    client: &mut CatalogServiceClient<Channel>,
    insured_city: &str,
    date: &str,
) -> Policy {
    client
        .get_policy(policy_request(insured_city, date))
        .await
        .expect("a policy is in force")
        .into_inner()
        .policy
        .expect("policy")
}

pub(crate) fn new_policy_version(
    message_id: &str,
    effective_from: &str,
    ratio: &str,
) -> UpsertPolicyRequest {
    UpsertPolicyRequest {
        message_id: message_id.to_owned(),
        policy: Some(Policy {
            insured_city: JINAN.to_owned(),
            insurance_type: InsuranceType::Employee as i32,
            person_type: PersonType::InService as i32,
            hospital_level: HospitalLevel::HospitalLevel3 as i32,
            deductible: "700.00".to_owned(),
            reimbursement_ratio: ratio.to_owned(),
            annual_cap: "4500.00".to_owned(),
            effective_from: effective_from.to_owned(),
            ..Default::default()
        }),
        reason: "level-3 ratio raised".to_owned(),
        operator_id: "jinan-op-7".to_owned(),
    }
}

network_test! {
    /// Proves the treatment city's catalog decides: the same codes on the same day get each
    /// city's own grade, self-pay ratio and price cap, a code one city never listed is "not in
    /// catalog" there, and an item dropped at the end of 2025 is still answered for 2025.
    async fn each_city_classifies_with_its_own_catalog(net) {
        let expected = [
            (JINAN, ItemGrade::B, "0.10", "25.00"),
            (ZIBO, ItemGrade::A, "0.00", "23.50"),
            ("370500", ItemGrade::B, "0.05", "24.80"),
            ("371600", ItemGrade::B, "0.15", "22.90"),
        ];
        for (city, grade, ratio, cap) in expected {
            let mut catalog = net.catalog(city);
            let reply = catalog.lookup_items(lookup(&[ATORVASTATIN, CT_HEAD, IV_CANNULA, DONEPEZIL, UNKNOWN], "")).await.expect("answers").into_inner();
            assert_eq!(reply.city, city);
            assert_eq!(reply.catalog_version, 1, "the seed catalog is version 1");
            let item = reply.items[0].item.as_ref().expect("atorvastatin is listed everywhere");
            assert_eq!((ItemGrade::try_from(item.grade).unwrap(), item.self_pay_ratio.as_str(), item.price_cap.as_str()), (grade, ratio, cap), "{city}");
            assert_eq!(item.version, 1);
            let donepezil = LookupOutcome::try_from(reply.items[3].outcome).unwrap();
            assert_eq!(donepezil, if city == JINAN { LookupOutcome::InCatalog } else { LookupOutcome::NotInCatalog }, "{city}");
            assert_eq!(reply.items[4].outcome, LookupOutcome::NotInCatalog as i32);
            assert!(reply.items[4].item.is_none());
        }
        let zibo_cannula = classify(&mut net.catalog(ZIBO), &[IV_CANNULA], "").await.remove(0).item.expect("listed as grade C");
        assert_eq!((zibo_cannula.grade, zibo_cannula.price_cap.as_str()), (ItemGrade::C as i32, ""));

        let mut jinan = net.catalog(JINAN);
        let today = classify(&mut jinan, &[AMOXICILLIN_OLD], "").await.remove(0);
        assert_eq!(today.outcome, LookupOutcome::NotValidAtDate as i32);
        assert!(today.item.is_none());
        let in_2025 = classify(&mut jinan, &[AMOXICILLIN_OLD], "2025-06-30").await.remove(0);
        assert_eq!(in_2025.outcome, LookupOutcome::InCatalog as i32);
        assert_eq!(in_2025.item.expect("item").valid_until, "2025-12-31");
        let before = classify(&mut jinan, &[ATORVASTATIN], "2023-12-31").await.remove(0);
        assert_eq!(before.outcome, LookupOutcome::NotValidAtDate as i32, "listed from 2024-01-01");
    }
}

network_test! {
    /// Proves the national download pattern: a download from version 0 streams the whole seed
    /// catalog in bounded pages; after a publication, a download from the old version streams
    /// exactly the change set; a client already current gets one empty final page; and lookups
    /// dated before the change give the old classification, dated after it the new one.
    async fn download_publish_and_download_again(net) {
        let mut zibo = net.catalog(ZIBO);
        let pages = download(&mut zibo, 0, 1_000).await;
        let seeded = seeded_item_count(ZIBO);
        assert_eq!(pages.len(), seeded.div_ceil(1_000));
        for (index, page) in pages.iter().enumerate() {
            assert_eq!(page.page_number as usize, index + 1);
            assert_eq!(page.target_version, 1);
            assert_eq!(page.last_page, index + 1 == pages.len());
            assert!(page.changes.len() <= 1_000);
        }
        let changes: Vec<_> = pages.iter().flat_map(|page| &page.changes).collect();
        assert_eq!(changes.len(), seeded);
        assert!(changes.iter().all(|change| change.version == 1 && change.kind == CatalogChangeKind::Added as i32));
        let codes: Vec<&str> = changes.iter().map(|change| change.item.as_ref().expect("item").code.as_str()).collect();
        assert!(codes.windows(2).all(|pair| pair[0] < pair[1]), "within a version, by code");

        let effective = from_today(30);
        let last_old_day = from_today(29);
        let new_code = "XA10BKA901A001000100101";
        let mut change_set = publication("ZB-CAT-20261125-1", vec![drug(new_code, "恩格列净片 10mg*10片", ItemGrade::B, "0.05", "38.00", &effective)]);
        change_set.changed.push(drug(ATORVASTATIN, "阿托伐他汀钙片 20mg*7片", ItemGrade::B, "0.05", "20.00", &effective));
        change_set.withdrawn.push(WithdrawnItem { code: LIANHUA_QINGWEN.to_owned(), effective_date: effective.clone() });
        let published = zibo.publish_catalog_version(change_set).await.expect("publishes").into_inner();
        assert_eq!((published.version, published.added_count, published.changed_count, published.withdrawn_count), (2, 1, 1, 1));
        assert!(published.published_at.is_some());

        // Pages of two: the three changes arrive as two pages, by code.
        let pages = download(&mut zibo, 1, 2).await;
        assert_eq!(pages.iter().map(|page| (page.page_number, page.changes.len(), page.last_page, page.target_version)).collect::<Vec<_>>(), [(1, 2, false, 2), (2, 1, true, 2)]);
        let changes: Vec<_> = pages.iter().flat_map(|page| &page.changes).collect();
        let summary: Vec<(i32, &str, &str)> = changes.iter().map(|change| (change.kind, change.item.as_ref().expect("item").code.as_str(), change.effective_date.as_str())).collect();
        assert_eq!(summary, [
            (CatalogChangeKind::Added as i32, new_code, effective.as_str()),
            (CatalogChangeKind::Changed as i32, ATORVASTATIN, effective.as_str()),
            (CatalogChangeKind::Withdrawn as i32, LIANHUA_QINGWEN, effective.as_str()),
        ]);
        assert!(changes.iter().all(|change| change.version == 2));
        let withdrawn = changes[2].item.as_ref().expect("the classification that ends");
        assert_eq!((withdrawn.grade, withdrawn.self_pay_ratio.as_str(), withdrawn.valid_until.as_str()), (ItemGrade::B as i32, "0.05", last_old_day.as_str()));

        let current = download(&mut zibo, 2, 10).await;
        assert_eq!(current.len(), 1);
        assert!(current[0].changes.is_empty() && current[0].last_page && current[0].target_version == 2);

        let codes = [ATORVASTATIN, new_code, LIANHUA_QINGWEN, UNKNOWN, ATORVASTATIN];
        let before = classify(&mut zibo, &codes, &last_old_day).await;
        let outcomes = |answers: &[ItemClassification]| answers.iter().map(|answer| LookupOutcome::try_from(answer.outcome).unwrap()).collect::<Vec<_>>();
        assert_eq!(outcomes(&before), [LookupOutcome::InCatalog, LookupOutcome::NotValidAtDate, LookupOutcome::InCatalog, LookupOutcome::NotInCatalog, LookupOutcome::InCatalog]);
        let old = before[0].item.as_ref().expect("old classification");
        assert_eq!((old.grade, old.price_cap.as_str(), old.version, old.valid_until.as_str()), (ItemGrade::A as i32, "23.50", 1, last_old_day.as_str()));
        assert_eq!(before[0], before[4], "a repeated code gets the same answer in its place");

        let after = classify(&mut zibo, &codes, &effective).await;
        assert_eq!(outcomes(&after), [LookupOutcome::InCatalog, LookupOutcome::InCatalog, LookupOutcome::NotValidAtDate, LookupOutcome::NotInCatalog, LookupOutcome::InCatalog]);
        let new = after[0].item.as_ref().expect("new classification");
        assert_eq!((new.grade, new.self_pay_ratio.as_str(), new.price_cap.as_str(), new.version, new.valid_from.as_str(), new.valid_until.as_str()), (ItemGrade::B as i32, "0.05", "20.00", 2, effective.as_str(), ""));
        assert_eq!(after[1].item.as_ref().expect("added").name, "恩格列净片 10mg*10片");

        // Another city's catalog is untouched by Zibo's publication.
        assert_eq!(catalog_version(&mut net.catalog(JINAN)).await, 1);
    }
}

network_test! {
    /// Proves that bad input to every catalog RPC is refused with INVALID_ARGUMENT (or
    /// OUT_OF_RANGE for a version not reached) naming the field, and that nothing is stored:
    /// the catalog version, the items and the policy stay as they were, and the message id of a
    /// refused publication can still be used.
    async fn bad_input_names_the_field_and_stores_nothing(net) {
        let mut zibo = net.catalog(ZIBO);

        assert_invalid(&zibo.lookup_items(lookup(&[], "")).await.unwrap_err(), "codes");
        let too_many = vec![ATORVASTATIN; 101];
        assert_invalid(&zibo.lookup_items(lookup(&too_many, "")).await.unwrap_err(), "codes");
        assert!(zibo.lookup_items(lookup(&too_many[..100], "")).await.is_ok(), "100 codes is the limit");
        assert_invalid(&zibo.lookup_items(lookup(&[ATORVASTATIN, "X Y"], "")).await.unwrap_err(), "codes[1]");
        assert_invalid(&zibo.lookup_items(lookup(&[ATORVASTATIN], "2026-02-30")).await.unwrap_err(), "service_date");
        let mut stranger = lookup(&[ATORVASTATIN], "");
        stranger.institution_code = "H3703000001".to_owned();
        assert_invalid(&zibo.lookup_items(stranger).await.unwrap_err(), "institution_code");

        for page_size in [0, 1_001] {
            let status = zibo.download_catalog(DownloadCatalogRequest { since_version: 0, page_size }).await.unwrap_err();
            assert_invalid(&status, "page_size");
        }
        let ahead = zibo.download_catalog(DownloadCatalogRequest { since_version: 2, page_size: 10 }).await.unwrap_err();
        assert_eq!(ahead.code(), Code::OutOfRange, "{ahead:?}");
        assert_eq!(tonic_types::StatusExt::get_details_bad_request(&ahead).expect("field").field_violations[0].field, "since_version");

        let item = |ratio: &str, cap: &str, from: &str, until: &str| CatalogItem {
            valid_until: until.to_owned(),
            ..drug(UNKNOWN, "恩格列净片 25mg*10片", ItemGrade::B, ratio, cap, from)
        };
        let later = from_today(10);
        let refused = [
            (publication("ZB-BAD-1", vec![]), "added"),
            (publication("ZB-BAD-1", vec![item("1.5", "1.00", &later, "")]), "added[0].self_pay_ratio"),
            (publication("ZB-BAD-1", vec![item("1.0001", "1.00", &later, "")]), "added[0].self_pay_ratio"),
            (publication("ZB-BAD-1", vec![item("0.10", "-1.00", &later, "")]), "added[0].price_cap"),
            (publication("ZB-BAD-1", vec![item("0.10", "1.00", "2027-13-01", "")]), "added[0].valid_from"),
            (publication("ZB-BAD-1", vec![item("0.10", "1.00", &later, &from_today(9))]), "added[0].valid_until"),
            (publication("ZB-BAD-1", vec![item("0.10", "1.00", &from_today(-1), "")]), "added[0].valid_from"),
            (publication("ZB-BAD-1", vec![item("0.10", "1.00", &later, ""), item("0.10", "1.00", &later, "")]), "added[1].code"),
            (PublishCatalogVersionRequest { operator_id: String::new(), ..publication("ZB-BAD-1", vec![item("0.10", "1.00", &later, "")]) }, "operator_id"),
            (PublishCatalogVersionRequest { message_id: String::new(), ..publication("ZB-BAD-1", vec![item("0.10", "1.00", &later, "")]) }, "message_id"),
        ];
        for (request, field) in refused {
            assert_invalid(&zibo.publish_catalog_version(request).await.unwrap_err(), field);
        }
        let crowd = (0..5_001).map(|n| drug(&format!("XTEST{n:05}"), "试验药品", ItemGrade::A, "0", "", &later)).collect();
        assert_invalid(&zibo.publish_catalog_version(publication("ZB-BAD-1", crowd)).await.unwrap_err(), "added");
        let mut withdrawal = publication("ZB-BAD-1", vec![]);
        withdrawal.withdrawn.push(WithdrawnItem { code: ATORVASTATIN.to_owned(), effective_date: "2027-02-29".to_owned() });
        assert_invalid(&zibo.publish_catalog_version(withdrawal).await.unwrap_err(), "withdrawn[0].effective_date");

        assert_eq!(catalog_version(&mut zibo).await, 1, "no refused publication bumped the version");
        assert_eq!(classify(&mut zibo, &[UNKNOWN], &later).await[0].outcome, LookupOutcome::NotInCatalog as i32);
        assert_eq!(download(&mut zibo, 1, 10).await[0].changes.len(), 0);
        let published = zibo.publish_catalog_version(publication("ZB-BAD-1", vec![item("0.10", "1.00", &later, "")])).await.expect("a refused request leaves its message id free");
        assert_eq!(published.into_inner().version, 2);

        let mut jinan = net.catalog(JINAN);
        let before = policy_on(&mut jinan, JINAN, "").await;
        let effective = from_today(30);
        let bad_policies = [
            (|p: &mut Policy| p.reimbursement_ratio = "1.01".into()) as fn(&mut Policy),
            |p| p.reimbursement_ratio = "0.7x".into(),
            |p| p.deductible = "-5.00".into(),
            |p| p.annual_cap = "-1.00".into(),
            |p| p.effective_from = "2027-02-30".into(),
            |p| p.insured_city = ZIBO.into(),
            |p| p.insurance_type = 0,
            |p| p.hospital_level = 4,
        ];
        let fields = ["policy.reimbursement_ratio", "policy.reimbursement_ratio", "policy.deductible", "policy.annual_cap", "policy.effective_from", "policy.insured_city", "policy.insurance_type", "policy.hospital_level"];
        for (spoil, field) in bad_policies.into_iter().zip(fields) {
            let mut request = new_policy_version("JN-POL-BAD", &effective, "0.65");
            spoil(request.policy.as_mut().expect("policy"));
            assert_invalid(&jinan.upsert_policy(request).await.unwrap_err(), field);
        }
        let past = new_policy_version("JN-POL-BAD", &from_today(-1), "0.65");
        assert_invalid(&jinan.upsert_policy(past).await.unwrap_err(), "policy.effective_from");
        let no_reason = UpsertPolicyRequest { reason: String::new(), ..new_policy_version("JN-POL-BAD", &effective, "0.65") };
        assert_invalid(&jinan.upsert_policy(no_reason).await.unwrap_err(), "reason");
        let no_policy = UpsertPolicyRequest { policy: None, ..new_policy_version("JN-POL-BAD", &effective, "0.65") };
        assert_invalid(&jinan.upsert_policy(no_policy).await.unwrap_err(), "policy");
        assert_eq!(policy_on(&mut jinan, JINAN, "").await, before, "the policy in force is unchanged");
        assert_eq!(policy_on(&mut jinan, JINAN, &effective).await, before, "no version was added");

        assert_invalid(&jinan.get_policy(policy_request(JINAN, "2026-13-01")).await.unwrap_err(), "date");
        assert_invalid(&jinan.get_policy(policy_request("379800", "")).await.unwrap_err(), "insured_city");
        assert_invalid(&jinan.get_policy(policy_request("37010", "")).await.unwrap_err(), "insured_city");
        let unspecified = GetPolicyRequest { person_type: 0, ..policy_request(JINAN, "") };
        assert_invalid(&jinan.get_policy(unspecified).await.unwrap_err(), "person_type");

        assert_invalid(&jinan.get_institution(GetInstitutionRequest { code: "H370100001".into() }).await.unwrap_err(), "code");
        let listing = |page_size| ListInstitutionsRequest { page_size, ..Default::default() };
        for page_size in [0, 201] {
            assert_invalid(&jinan.list_institutions(listing(page_size)).await.unwrap_err(), "page_size");
        }
        assert_invalid(&jinan.list_institutions(ListInstitutionsRequest { page_token: "not-a-token".into(), ..listing(5) }).await.unwrap_err(), "page_token");
        assert_invalid(&jinan.list_institutions(ListInstitutionsRequest { networked_on: "2026-1-1".into(), ..listing(5) }).await.unwrap_err(), "networked_on");
        assert_invalid(&jinan.list_institutions(ListInstitutionsRequest { kind: 7, ..listing(5) }).await.unwrap_err(), "kind");
    }
}

network_test! {
    /// Proves the publication rules that depend on the catalog as it stands are refused with
    /// FAILED_PRECONDITION saying which rule, and change nothing: adding a listed code, changing
    /// or withdrawing an unlisted one, and a change not after the code's latest.
    async fn publication_rules_are_refused_by_name(net) {
        let mut dongying = net.catalog("370500");
        let later = from_today(20);
        let added = publication("DY-CAT-1", vec![drug(CT_HEAD, "X线计算机体层(CT)平扫 头颅", ItemGrade::A, "0", "140.00", &later)]);
        assert_refused(&dongying.publish_catalog_version(added).await.unwrap_err(), "ITEM_ALREADY_LISTED");
        let mut changed = publication("DY-CAT-1", vec![]);
        changed.changed.push(drug(UNKNOWN, "未列入目录的药品", ItemGrade::A, "0", "", &later));
        assert_refused(&dongying.publish_catalog_version(changed).await.unwrap_err(), "ITEM_NOT_LISTED");
        let mut withdrawn = publication("DY-CAT-1", vec![]);
        withdrawn.withdrawn.push(WithdrawnItem { code: AMOXICILLIN_OLD.to_owned(), effective_date: later.clone() });
        assert_refused(&dongying.publish_catalog_version(withdrawn).await.unwrap_err(), "ITEM_NOT_LISTED");

        // One good change first, then a change dated before it.
        let mut first = publication("DY-CAT-2", vec![]);
        first.changed.push(drug(ATORVASTATIN, "阿托伐他汀钙片 20mg*7片", ItemGrade::A, "0", "24.00", &later));
        assert_eq!(dongying.publish_catalog_version(first).await.expect("publishes").into_inner().version, 2);
        let mut earlier = publication("DY-CAT-3", vec![]);
        earlier.changed.push(drug(ATORVASTATIN, "阿托伐他汀钙片 20mg*7片", ItemGrade::C, "0", "", &from_today(10)));
        // The refusal undoes the whole set, including the good addition beside it.
        earlier.added.push(drug(UNKNOWN, "恩格列净片 25mg*10片", ItemGrade::A, "0", "", &later));
        let status = dongying.publish_catalog_version(earlier).await.unwrap_err();
        assert_refused(&status, "ITEM_CHANGE_NOT_AFTER_LATEST");
        let violation = &tonic_types::StatusExt::get_details_precondition_failure(&status).expect("which field").violations[0];
        assert_eq!(violation.subject, "changed[0].valid_from");
        assert_eq!(catalog_version(&mut dongying).await, 2);
        assert_eq!(classify(&mut dongying, &[UNKNOWN], &later).await[0].outcome, LookupOutcome::NotInCatalog as i32);
    }
}

network_test! {
    /// Proves policies are effective-dated versions: GetPolicy answers each date with the
    /// version in force then, UpsertPolicy adds a version that takes over from its date and
    /// ends the one before without rewriting it, a version not after the latest is refused,
    /// and another city's node answers with the insured city's policy.
    async fn policy_versions_answer_by_date(net) {
        let mut jinan = net.catalog(JINAN);
        let current = policy_on(&mut jinan, JINAN, "").await;
        assert_eq!(current.policy_id, "370100-310-1-3-2026-01-01");
        assert_eq!((current.deductible.as_str(), current.reimbursement_ratio.as_str(), current.annual_cap.as_str()), ("700.00", "0.60", "4000.00"));
        assert_eq!((current.effective_from.as_str(), current.effective_until.as_str()), ("2026-01-01", ""));
        let in_2025 = policy_on(&mut jinan, JINAN, "2025-06-30").await;
        assert_eq!((in_2025.policy_id.as_str(), in_2025.reimbursement_ratio.as_str(), in_2025.effective_until.as_str()), ("370100-310-1-3-2025-01-01", "0.55", "2025-12-31"));
        let none = jinan.get_policy(policy_request(JINAN, "2024-12-31")).await.unwrap_err();
        assert_eq!(none.code(), Code::NotFound);

        let effective = from_today(30);
        let last_old_day = from_today(29);
        let reply = jinan.upsert_policy(new_policy_version("JN-POL-1", &effective, "0.65")).await.expect("recorded").into_inner();
        let recorded = reply.policy.expect("policy");
        assert_eq!(recorded.policy_id, format!("370100-310-1-3-{effective}"));
        assert_eq!((recorded.reimbursement_ratio.as_str(), recorded.annual_cap.as_str(), recorded.effective_until.as_str()), ("0.65", "4500.00", ""));
        assert!(recorded.recorded_at.is_some());
        let superseded = reply.superseded.expect("the 2026 version is superseded");
        assert_eq!((superseded.policy_id.as_str(), superseded.effective_until.as_str()), ("370100-310-1-3-2026-01-01", last_old_day.as_str()));

        let today = policy_on(&mut jinan, JINAN, "").await;
        assert_eq!((today.policy_id.as_str(), today.reimbursement_ratio.as_str(), today.effective_until.as_str()), ("370100-310-1-3-2026-01-01", "0.60", last_old_day.as_str()));
        assert_eq!(policy_on(&mut jinan, JINAN, &last_old_day).await.policy_id, current.policy_id);
        assert_eq!(policy_on(&mut jinan, JINAN, &effective).await, recorded);
        assert_eq!(policy_on(&mut jinan, JINAN, "2099-12-31").await, recorded);
        assert_eq!(policy_on(&mut jinan, JINAN, "2025-06-30").await, in_2025, "older versions are untouched");

        let between = jinan.upsert_policy(new_policy_version("JN-POL-2", &from_today(10), "0.70")).await.unwrap_err();
        assert_refused(&between, "POLICY_NOT_AFTER_LATEST");
        let same_day = jinan.upsert_policy(new_policy_version("JN-POL-2", &effective, "0.70")).await.unwrap_err();
        assert_refused(&same_day, "POLICY_NOT_AFTER_LATEST");
        assert_eq!(policy_on(&mut jinan, JINAN, &effective).await, recorded);

        // Any city's node answers for Jinan's policy, from Jinan; cities differ.
        for city in PILOT_CITIES {
            assert_eq!(policy_on(&mut net.catalog(city), JINAN, &effective).await, recorded, "asked at {city}");
        }
        let zibo_policy = policy_on(&mut net.catalog(JINAN), ZIBO, "").await;
        assert_eq!((zibo_policy.insured_city.as_str(), zibo_policy.reimbursement_ratio.as_str()), (ZIBO, "0.55"));
        let disabled = jinan.get_policy(policy_request("370900", "")).await.unwrap_err();
        assert_refused(&disabled, "CITY_NOT_ENABLED");
    }
}

network_test! {
    /// Proves one message id has at most one effect: replaying a publication or a policy
    /// version returns the first answer and changes nothing; the same id with other content,
    /// or for the other RPC, is ALREADY_EXISTS and changes nothing.
    async fn message_ids_make_bureau_writes_idempotent(net) {
        let mut binzhou = net.catalog("371600");
        let later = from_today(15);
        let first_set = publication("BZ-CAT-1", vec![drug(UNKNOWN, "恩格列净片 25mg*10片", ItemGrade::B, "0.20", "45.00", &later)]);
        let first = binzhou.publish_catalog_version(first_set.clone()).await.expect("publishes").into_inner();
        assert_eq!(first.version, 2);
        let replay = binzhou.publish_catalog_version(first_set.clone()).await.expect("replay answers").into_inner();
        assert_eq!(replay, first, "the first answer, published_at included");
        assert_eq!(catalog_version(&mut binzhou).await, 2);

        let mut other = first_set.clone();
        other.added[0].price_cap = "99.00".into();
        let status = binzhou.publish_catalog_version(other).await.unwrap_err();
        assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
        assert_eq!(catalog_version(&mut binzhou).await, 2);
        let item = classify(&mut binzhou, &[UNKNOWN], &later).await.remove(0).item.expect("listed");
        assert_eq!(item.price_cap, "45.00");

        let mut jinan = net.catalog(JINAN);
        let effective = from_today(40);
        let upsert = new_policy_version("JN-POL-9", &effective, "0.65");
        let recorded = jinan.upsert_policy(upsert.clone()).await.expect("recorded").into_inner();
        assert_eq!(jinan.upsert_policy(upsert.clone()).await.expect("replay answers").into_inner(), recorded);
        let other = new_policy_version("JN-POL-9", &effective, "0.75");
        assert_eq!(jinan.upsert_policy(other).await.unwrap_err().code(), Code::AlreadyExists);
        let later_version = new_policy_version("JN-POL-9", &from_today(60), "0.65");
        assert_eq!(jinan.upsert_policy(later_version).await.unwrap_err().code(), Code::AlreadyExists);
        assert_eq!(policy_on(&mut jinan, JINAN, "2099-01-01").await, recorded.policy.expect("policy"));

        let mut crossed = publication("JN-POL-9", vec![drug(UNKNOWN, "恩格列净片 25mg*10片", ItemGrade::A, "0", "", &later)]);
        crossed.note = "message id of a policy version".into();
        assert_eq!(jinan.publish_catalog_version(crossed).await.unwrap_err().code(), Code::AlreadyExists);
        assert_eq!(catalog_version(&mut jinan).await, 1);
    }
}

network_test! {
    /// Proves the designated institutions of every city are answered by the city that
    /// designates them: one by code and whole lists by page, with filters, from any city's node.
    async fn institutions_are_answered_by_their_city(net) {
        let mut zibo = net.catalog(ZIBO);
        let local = zibo.get_institution(GetInstitutionRequest { code: "H37030000001".into() }).await.expect("found").into_inner().institution.expect("institution");
        assert_eq!((local.name.as_str(), local.city.as_str(), local.level), ("淄博市中心医院", ZIBO, HospitalLevel::HospitalLevel3 as i32));
        let routed = zibo.get_institution(GetInstitutionRequest { code: "P37010000001".into() }).await.expect("found in Jinan").into_inner().institution.expect("institution");
        assert_eq!((routed.name.as_str(), routed.city.as_str(), routed.kind, routed.level, routed.cross_city_since.as_str()), ("济南市漱玉平民大药房", JINAN, InstitutionKind::Pharmacy as i32, HospitalLevel::HospitalLevel1 as i32, "2025-01-01"));
        let missing = zibo.get_institution(GetInstitutionRequest { code: "H37010000999".into() }).await.unwrap_err();
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        assert_refused(&zibo.get_institution(GetInstitutionRequest { code: "H37090000001".into() }).await.unwrap_err(), "CITY_NOT_ENABLED");

        let seeded: Vec<String> = std::fs::read_to_string(yitong_sandbox::seeds_dir().join("institutions.csv")).expect("institutions.csv")
            .lines()
            .filter_map(|line| line.split(',').next().filter(|code| code.get(1..7) == Some(JINAN)).map(str::to_owned))
            .collect();
        let list = |page_token: String| ListInstitutionsRequest { city: JINAN.into(), page_size: 5, page_token, ..Default::default() };
        let mut listed = Vec::new();
        let mut token = String::new();
        for page in 1.. {
            let reply = zibo.list_institutions(list(token)).await.expect("a page").into_inner();
            assert!(reply.institutions.len() <= 5);
            listed.extend(reply.institutions.iter().map(|institution| institution.code.clone()));
            token = reply.next_page_token;
            if token.is_empty() {
                break;
            }
            assert!(page < 10, "the listing ends");
        }
        let mut expected = seeded.clone();
        expected.sort();
        assert_eq!(listed, expected);

        let filtered = |kind: InstitutionKind, level: HospitalLevel, networked_on: &str| ListInstitutionsRequest {
            city: JINAN.into(),
            kind: kind as i32,
            level: level as i32,
            networked_only: !networked_on.is_empty(),
            networked_on: networked_on.into(),
            page_size: 200,
            page_token: String::new(),
        };
        let codes = |reply: yitong_proto::catalog::v1::ListInstitutionsResponse| reply.institutions.into_iter().map(|institution| institution.code).collect::<Vec<_>>();
        let pharmacies = codes(zibo.list_institutions(filtered(InstitutionKind::Pharmacy, HospitalLevel::Unspecified, "")).await.expect("answers").into_inner());
        assert_eq!(pharmacies, ["P37010000001"]);
        let level_3 = codes(net.catalog(JINAN).list_institutions(filtered(InstitutionKind::Unspecified, HospitalLevel::HospitalLevel3, "")).await.expect("answers").into_inner());
        assert_eq!(level_3, ["H37010000001", "H37010000002", "H37010000003", "H37010000004"]);
        let networked_2024 = codes(zibo.list_institutions(filtered(InstitutionKind::Unspecified, HospitalLevel::HospitalLevel1, "2024-06-30")).await.expect("answers").into_inner());
        assert_eq!(networked_2024, ["H37010000009", "H37010000010"], "the pharmacy joined in 2025; one health centre never did");

        let first = zibo.list_institutions(list(String::new())).await.expect("a page").into_inner();
        let other_filters = ListInstitutionsRequest { kind: InstitutionKind::Hospital as i32, ..list(first.next_page_token) };
        assert_invalid(&zibo.list_institutions(other_filters).await.unwrap_err(), "page_token");
    }
}
