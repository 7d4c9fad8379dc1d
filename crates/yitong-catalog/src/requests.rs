//! Requests parsed at the edge: each wire request becomes a domain value or is refused with the
//! path of the first field at fault, before anything touches storage.

use std::collections::HashSet;

use yitong_core::{Amount, Date, InstitutionCode, Invalid, MessageId, PoolCode};
use yitong_proto::catalog::v1 as pb;

use crate::catalog::{ChangeSet, Withdrawal};
use crate::institutions::{Filters, PageToken};
use crate::policies::NewPolicy;
use crate::policy::{PolicyKey, PolicyTerms, PolicyVersion};
use crate::{Item, ItemCode, Ratio};

/// Codes one LookupItems call may classify.
pub const CODES_PER_LOOKUP_MAX: usize = 100;
/// Changes one DownloadCatalog page may hold.
pub const CHANGES_PER_PAGE_MAX: u32 = 1_000;
/// Changes one PublishCatalogVersion may hold in all.
pub const CHANGES_PER_PUBLISH_MAX: usize = ChangeSet::CHANGES_MAX;
/// Institutions one ListInstitutions page may hold.
pub const INSTITUTIONS_PER_PAGE_MAX: u32 = 200;
/// Characters of a publication's note.
const NOTE_CHARS_MAX: usize = 200;
/// Characters of a policy change's reason.
const REASON_CHARS_MAX: usize = 200;
/// Characters of a bureau operator's id.
const OPERATOR_ID_CHARS_MAX: usize = 64;

/// A date field where empty means today.
fn date_or_today(text: &str, field: &str) -> Result<Date, Invalid> {
    match text {
        "" => Ok(yitong_core::today()),
        text => yitong_core::parse_date(text).map_err(|invalid| invalid.at(field)),
    }
}

/// A region code field where empty means this node's city (`None`).
fn optional_city(text: &str, field: &str) -> Result<Option<PoolCode>, Invalid> {
    match text {
        "" => Ok(None),
        text => PoolCode::parse(text)
            .map(Some)
            .map_err(|invalid| invalid.at(field)),
    }
}

/// Refuses a text outside `min..=max` characters.
fn text_length(text: &str, field: &str, min: usize, max: usize) -> Result<(), Invalid> {
    let chars = text.chars().count();
    if chars < min || chars > max {
        return Err(Invalid::new(
            field,
            format!("must be {min} to {max} characters"),
        ));
    }
    Ok(())
}

fn page_size(value: u32, max: u32) -> Result<usize, Invalid> {
    if value == 0 || value > max {
        return Err(Invalid::new(
            "page_size",
            format!("must be 1 to {max}; there is no default"),
        ));
    }
    Ok(value as usize)
}

/// A parsed LookupItems request.
#[derive(Debug)]
pub(crate) struct Lookup {
    /// The codes as asked, repeats kept: each occurrence gets its answer.
    pub(crate) codes: Vec<ItemCode>,
    pub(crate) date: Date,
    /// Who asked, for the log; optional.
    pub(crate) institution: Option<InstitutionCode>,
}

impl TryFrom<pb::LookupItemsRequest> for Lookup {
    type Error = Invalid;

    fn try_from(request: pb::LookupItemsRequest) -> Result<Self, Invalid> {
        if request.codes.is_empty() || request.codes.len() > CODES_PER_LOOKUP_MAX {
            return Err(Invalid::new(
                "codes",
                format!(
                    "must hold 1 to {CODES_PER_LOOKUP_MAX} codes, found {}",
                    request.codes.len()
                ),
            ));
        }
        let codes = request
            .codes
            .iter()
            .enumerate()
            .map(|(index, code)| {
                ItemCode::parse(code).map_err(|invalid| invalid.at(format!("codes[{index}]")))
            })
            .collect::<Result<_, _>>()?;
        let institution = match request.institution_code.as_str() {
            "" => None,
            text => Some(
                InstitutionCode::parse(text).map_err(|invalid| invalid.at("institution_code"))?,
            ),
        };
        Ok(Lookup {
            codes,
            date: date_or_today(&request.service_date, "service_date")?,
            institution,
        })
    }
}

/// A parsed DownloadCatalog request.
#[derive(Debug)]
pub(crate) struct Download {
    pub(crate) since_version: u64,
    pub(crate) page_size: usize,
}

impl TryFrom<pb::DownloadCatalogRequest> for Download {
    type Error = Invalid;

    fn try_from(request: pb::DownloadCatalogRequest) -> Result<Self, Invalid> {
        Ok(Download {
            since_version: request.since_version,
            page_size: page_size(request.page_size, CHANGES_PER_PAGE_MAX)?,
        })
    }
}

impl TryFrom<pb::PublishCatalogVersionRequest> for ChangeSet {
    type Error = Invalid;

    /// Checks everything a change set can be judged on alone: each item's fields, the size of
    /// the set and that it names each code once. What depends on the clock and on the catalog
    /// as it stands is judged when it is applied.
    fn try_from(request: pb::PublishCatalogVersionRequest) -> Result<Self, Invalid> {
        let message_id =
            MessageId::parse(&request.message_id).map_err(|invalid| invalid.at("message_id"))?;
        let total = request.added.len() + request.changed.len() + request.withdrawn.len();
        if total == 0 || total > CHANGES_PER_PUBLISH_MAX {
            return Err(Invalid::new(
                "added",
                format!(
                    "a change set holds 1 to {CHANGES_PER_PUBLISH_MAX} changes in added, changed and withdrawn together, found {total}"
                ),
            ));
        }
        text_length(&request.note, "note", 0, NOTE_CHARS_MAX)?;
        text_length(
            &request.operator_id,
            "operator_id",
            1,
            OPERATOR_ID_CHARS_MAX,
        )?;

        let mut seen: HashSet<ItemCode> = HashSet::with_capacity(total);
        let mut once = |code: &ItemCode, path: String| {
            if seen.insert(code.clone()) {
                Ok(())
            } else {
                Err(Invalid::new(
                    format!("{path}.code"),
                    "names a code another change of this set already names",
                ))
            }
        };
        let mut items = |list: Vec<pb::CatalogItem>, name: &str| -> Result<Vec<Item>, Invalid> {
            list.into_iter()
                .enumerate()
                .map(|(index, item)| {
                    let path = format!("{name}[{index}]");
                    let item = Item::try_from(item).map_err(|invalid| invalid.within(&path))?;
                    once(&item.code, path)?;
                    Ok(item)
                })
                .collect()
        };
        let added = items(request.added, "added")?;
        let changed = items(request.changed, "changed")?;
        let withdrawn = request
            .withdrawn
            .into_iter()
            .enumerate()
            .map(|(index, withdrawal)| {
                let path = format!("withdrawn[{index}]");
                let code = ItemCode::parse(&withdrawal.code)
                    .map_err(|invalid| invalid.at(format!("{path}.code")))?;
                let effective_date = yitong_core::parse_date(&withdrawal.effective_date)
                    .map_err(|invalid| invalid.at(format!("{path}.effective_date")))?;
                once(&code, path)?;
                Ok(Withdrawal {
                    code,
                    effective_date,
                })
            })
            .collect::<Result<_, Invalid>>()?;
        Ok(ChangeSet {
            message_id,
            added,
            changed,
            withdrawn,
            note: request.note,
            operator_id: request.operator_id,
        })
    }
}

/// A parsed GetPolicy request.
#[derive(Debug)]
pub(crate) struct PolicyQuery {
    /// `None` for this node's city.
    pub(crate) city: Option<PoolCode>,
    pub(crate) key: PolicyKey,
    pub(crate) date: Date,
}

impl TryFrom<&pb::GetPolicyRequest> for PolicyQuery {
    type Error = Invalid;

    fn try_from(request: &pb::GetPolicyRequest) -> Result<Self, Invalid> {
        Ok(PolicyQuery {
            city: optional_city(&request.insured_city, "insured_city")?,
            key: PolicyKey::from_wire(
                request.insurance_type,
                request.person_type,
                request.hospital_level,
            )?,
            date: date_or_today(&request.date, "date")?,
        })
    }
}

/// A parsed UpsertPolicy request and the city it names.
#[derive(Debug)]
pub(crate) struct PolicyUpsert {
    pub(crate) city: PoolCode,
    pub(crate) policy: NewPolicy,
}

impl TryFrom<pb::UpsertPolicyRequest> for PolicyUpsert {
    type Error = Invalid;

    fn try_from(request: pb::UpsertPolicyRequest) -> Result<Self, Invalid> {
        let message_id =
            MessageId::parse(&request.message_id).map_err(|invalid| invalid.at("message_id"))?;
        let policy = request
            .policy
            .ok_or_else(|| Invalid::new("policy", "the new version is required"))?;
        fn in_policy(field: &'static str) -> impl Fn(Invalid) -> Invalid {
            move |invalid| invalid.at(format!("policy.{field}"))
        }
        let city = PoolCode::parse(&policy.insured_city).map_err(in_policy("insured_city"))?;
        let key = PolicyKey::from_wire(
            policy.insurance_type,
            policy.person_type,
            policy.hospital_level,
        )
        .map_err(|invalid| invalid.within("policy"))?;
        let terms = PolicyTerms::new(
            Amount::parse(&policy.deductible).map_err(in_policy("deductible"))?,
            Ratio::parse(&policy.reimbursement_ratio).map_err(in_policy("reimbursement_ratio"))?,
            Amount::parse(&policy.annual_cap).map_err(in_policy("annual_cap"))?,
        )
        .map_err(|invalid| invalid.within("policy"))?;
        let effective_from =
            yitong_core::parse_date(&policy.effective_from).map_err(in_policy("effective_from"))?;
        text_length(&request.reason, "reason", 1, REASON_CHARS_MAX)?;
        text_length(
            &request.operator_id,
            "operator_id",
            1,
            OPERATOR_ID_CHARS_MAX,
        )?;
        Ok(PolicyUpsert {
            city,
            policy: NewPolicy {
                message_id,
                version: PolicyVersion {
                    key,
                    terms,
                    effective_from,
                },
                reason: request.reason,
                operator_id: request.operator_id,
            },
        })
    }
}

/// A parsed ListInstitutions request.
#[derive(Debug)]
pub(crate) struct Listing {
    /// `None` for this node's city.
    pub(crate) city: Option<PoolCode>,
    pub(crate) filters: Filters,
    pub(crate) token: Option<PageToken>,
    pub(crate) page_size: usize,
}

impl TryFrom<&pb::ListInstitutionsRequest> for Listing {
    type Error = Invalid;

    fn try_from(request: &pb::ListInstitutionsRequest) -> Result<Self, Invalid> {
        let city = optional_city(&request.city, "city")?;
        let kind = match pb::InstitutionKind::try_from(request.kind) {
            Ok(kind) => kind as i64,
            Err(_) => {
                return Err(Invalid::new(
                    "kind",
                    "must be unspecified, INSTITUTION_KIND_HOSPITAL or INSTITUTION_KIND_PHARMACY",
                ));
            }
        };
        let level = match pb::HospitalLevel::try_from(request.level) {
            Ok(level) => level as i64,
            Err(_) => {
                return Err(Invalid::new(
                    "level",
                    "must be unspecified or HOSPITAL_LEVEL_1, _2 or _3",
                ));
            }
        };
        // Checked even when networked_only is false, so a mistyped date is never ignored.
        let networked_on = date_or_today(&request.networked_on, "networked_on")?;
        let page_size = page_size(request.page_size, INSTITUTIONS_PER_PAGE_MAX)?;
        let fingerprint = PageToken::fingerprint(&format!(
            "{}|{kind}|{level}|{}|{}",
            request.city, request.networked_only, request.networked_on
        ));
        let filters = Filters {
            kind,
            level,
            networked_on: request.networked_only.then_some(networked_on),
            fingerprint,
        };
        let token = PageToken::parse(&request.page_token, &filters)?;
        Ok(Listing {
            city,
            filters,
            token,
            page_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(code: &str) -> pb::CatalogItem {
        pb::CatalogItem {
            code: code.into(),
            name: "阿莫西林胶囊 0.25g".into(),
            kind: pb::ItemKind::Drug as i32,
            grade: pb::ItemGrade::B as i32,
            self_pay_ratio: "0.10".into(),
            price_cap: "12.50".into(),
            valid_from: "2030-01-01".into(),
            valid_until: String::new(),
            version: 0,
        }
    }

    fn publish(added: Vec<pb::CatalogItem>) -> pb::PublishCatalogVersionRequest {
        pb::PublishCatalogVersionRequest {
            message_id: "bureau-1".into(),
            added,
            operator_id: "op-1".into(),
            ..Default::default()
        }
    }

    fn field_of(request: pb::PublishCatalogVersionRequest) -> String {
        ChangeSet::try_from(request).unwrap_err().field().to_owned()
    }

    // Proves each malformed part of a change set is refused under its own path.
    #[test]
    fn change_set_paths() {
        assert!(ChangeSet::try_from(publish(vec![item("X1")])).is_ok());
        assert_eq!(field_of(publish(vec![])), "added");
        let mut ratio = item("X2");
        ratio.self_pay_ratio = "1.5".into();
        assert_eq!(
            field_of(publish(vec![item("X1"), ratio])),
            "added[1].self_pay_ratio"
        );
        let mut cap = item("X2");
        cap.price_cap = "-1.00".into();
        assert_eq!(field_of(publish(vec![cap])), "added[0].price_cap");
        let mut reversed = item("X2");
        reversed.valid_until = "2029-12-31".into();
        assert_eq!(field_of(publish(vec![reversed])), "added[0].valid_until");
        let mut kind = item("X2");
        kind.kind = 0;
        assert_eq!(field_of(publish(vec![kind])), "added[0].kind");
        assert_eq!(
            field_of(publish(vec![item("X1"), item("X1")])),
            "added[1].code"
        );
        let mut twice = publish(vec![item("X1")]);
        twice.withdrawn.push(pb::WithdrawnItem {
            code: "X1".into(),
            effective_date: "2030-02-01".into(),
        });
        assert_eq!(field_of(twice), "withdrawn[0].code");
        let mut bad_date = publish(vec![]);
        bad_date.withdrawn.push(pb::WithdrawnItem {
            code: "X1".into(),
            effective_date: "2030-02-30".into(),
        });
        assert_eq!(field_of(bad_date), "withdrawn[0].effective_date");
        let mut anonymous = publish(vec![item("X1")]);
        anonymous.operator_id = String::new();
        assert_eq!(field_of(anonymous), "operator_id");
        let too_many = (0..=CHANGES_PER_PUBLISH_MAX)
            .map(|n| item(&format!("X{n}")))
            .collect();
        assert_eq!(field_of(publish(too_many)), "added");
    }

    // Proves the lookup and page limits, at and beyond their bounds.
    #[test]
    fn limits() {
        let lookup = |n: usize| pb::LookupItemsRequest {
            codes: vec!["X1".into(); n],
            ..Default::default()
        };
        assert!(Lookup::try_from(lookup(CODES_PER_LOOKUP_MAX)).is_ok());
        assert_eq!(Lookup::try_from(lookup(0)).unwrap_err().field(), "codes");
        assert_eq!(
            Lookup::try_from(lookup(CODES_PER_LOOKUP_MAX + 1))
                .unwrap_err()
                .field(),
            "codes"
        );
        let download = |page_size| pb::DownloadCatalogRequest {
            since_version: 0,
            page_size,
        };
        assert!(Download::try_from(download(CHANGES_PER_PAGE_MAX)).is_ok());
        for bad in [0, CHANGES_PER_PAGE_MAX + 1] {
            assert_eq!(
                Download::try_from(download(bad)).unwrap_err().field(),
                "page_size"
            );
        }
    }
}
