//! Adapters to the other nodes a Settle needs: this city's identity (the person behind a
//! credential) and catalog (each fee line classified), and the insured city's benefit service.

use std::str::FromStr;

use yitong_core::{Date, InstitutionCode, Invalid, PersonNo, PoolCode};
use yitong_proto::catalog::v1::{ItemGrade, LookupItemsRequest, LookupOutcome};
use yitong_proto::identity::v1::{Credential, GetInsuredPersonRequest, InsuredPerson};
use yitong_proto::settlement::v1 as pb;
use yitong_proto::settlement::v1::benefit_service_client::BenefitServiceClient;
use yitong_proto::settlement::v1::certification_service_client::CertificationServiceClient;
use yitong_proto::settlement::v1::filing_service_client::FilingServiceClient;
use yitong_rpc::PeerChannel;

use super::request::{self};
use super::{SettlementNode, TreatmentError, fen};
use crate::split::{self, CatalogEntry, ClassifiedLine, Grade, Ratio};

impl SettlementNode {
    /// The person behind a credential, through this city's identity (which asks the issuing
    /// city); its refusals (lost card, suspended person) reach the HIS unchanged.
    pub(super) async fn person(
        &self,
        credential: &Credential,
        date: Date,
        institution: &InstitutionCode,
        operator_id: &str,
    ) -> Result<InsuredPerson, TreatmentError> {
        let request = GetInsuredPersonRequest {
            credential: Some(credential.clone()),
            service_date: date.to_string(),
            institution_code: institution.to_string(),
            operator_id: operator_id.to_owned(),
        };
        let reply = self
            .identity
            .clone()
            .get_insured_person(request)
            .await
            .map_err(|status| TreatmentError::remote("identity", status))?;
        reply
            .into_inner()
            .person
            .ok_or_else(|| TreatmentError::Peer("identity answered without a person".into()))
    }

    /// Checks the credential is usable and is the person's, with the person's insurance type.
    pub(super) async fn check_person(
        &self,
        credential: &Credential,
        person_no: &PersonNo,
        insurance_type: split::InsuranceType,
        date: Date,
        institution: &InstitutionCode,
        operator_id: &str,
    ) -> Result<InsuredPerson, TreatmentError> {
        let person = self
            .person(credential, date, institution, operator_id)
            .await?;
        if person.person_no != person_no.as_str() {
            return Err(
                Invalid::new("person_no", "is not the person the credential identifies").into(),
            );
        }
        if person.insurance_type != request::insurance_type_to_wire(insurance_type) {
            return Err(
                Invalid::new("insurance_type", "is not the person's insurance type").into(),
            );
        }
        Ok(person)
    }

    pub(super) fn benefit(
        &self,
        city: PoolCode,
    ) -> Result<BenefitServiceClient<PeerChannel>, TreatmentError> {
        self.benefits.get(&city).cloned().ok_or_else(|| {
            TreatmentError::refused(
                "CITY_NOT_ENABLED",
                format!("city {city} does not take part in cross-city settlement"),
            )
        })
    }

    pub(super) fn certification(
        &self,
        city: PoolCode,
    ) -> Result<CertificationServiceClient<PeerChannel>, TreatmentError> {
        self.certifications.get(&city).cloned().ok_or_else(|| {
            TreatmentError::refused(
                "CITY_NOT_ENABLED",
                format!("city {city} does not take part in cross-city settlement"),
            )
        })
    }

    pub(super) fn filing(
        &self,
        city: PoolCode,
    ) -> Result<FilingServiceClient<PeerChannel>, TreatmentError> {
        self.filings.get(&city).cloned().ok_or_else(|| {
            TreatmentError::refused(
                "CITY_NOT_ENABLED",
                format!("city {city} does not take part in cross-city settlement"),
            )
        })
    }

    /// Classifies lines with this city's catalog at each line's date, one lookup per date.
    pub(super) async fn classify(
        &self,
        lines: &[request::UploadedLine],
        visit_date: Date,
        institution: &InstitutionCode,
    ) -> Result<Vec<(ClassifiedLine, pb::ClassifiedFeeLine)>, TreatmentError> {
        let dates: Vec<Date> = lines
            .iter()
            .map(|line| {
                line.occurred_at_ms
                    .map(request::date_of_ms)
                    .unwrap_or(visit_date)
            })
            .collect();
        let mut answers: Vec<Option<yitong_proto::catalog::v1::ItemClassification>> =
            vec![None; lines.len()];
        let mut distinct = dates.clone();
        distinct.sort();
        distinct.dedup();
        for date in distinct {
            let indexes: Vec<usize> = (0..lines.len())
                .filter(|index| dates[*index] == date)
                .collect();
            let lookup = LookupItemsRequest {
                codes: indexes
                    .iter()
                    .map(|index| lines[*index].item_code.clone())
                    .collect(),
                service_date: date.to_string(),
                institution_code: institution.to_string(),
            };
            let reply = self
                .catalog
                .clone()
                .lookup_items(lookup)
                .await
                .map_err(|status| TreatmentError::remote("catalog", status))?
                .into_inner();
            if reply.items.len() != indexes.len() {
                return Err(TreatmentError::Peer(
                    "catalog answered a different number of codes".into(),
                ));
            }
            for (index, item) in indexes.into_iter().zip(reply.items) {
                answers[index] = Some(item);
            }
        }
        lines
            .iter()
            .zip(answers)
            .map(|(line, answer)| {
                let answer = answer
                    .ok_or_else(|| TreatmentError::Peer("catalog left a code unanswered".into()))?;
                classified_line(line, answer)
            })
            .collect()
    }
}

/// A catalog answer as the split's catalog entry: `None` for a code not covered on the date.
fn catalog_entry(
    answer: &yitong_proto::catalog::v1::ItemClassification,
) -> Result<Option<CatalogEntry>, TreatmentError> {
    if answer.outcome != LookupOutcome::InCatalog as i32 {
        return Ok(None);
    }
    let item = answer.item.as_ref().ok_or_else(|| {
        TreatmentError::Peer("catalog answered IN_CATALOG without the item".into())
    })?;
    let ratio = rust_decimal::Decimal::from_str(&item.self_pay_ratio)
        .ok()
        .and_then(|value| Ratio::new(value).ok())
        .ok_or_else(|| {
            TreatmentError::Peer(format!("catalog sent a malformed ratio for {}", item.code))
        })?;
    let grade = match ItemGrade::try_from(item.grade) {
        Ok(ItemGrade::A) => Grade::A,
        Ok(ItemGrade::B) => Grade::B {
            self_pay_ratio: ratio,
        },
        Ok(ItemGrade::C) => Grade::C,
        _ => {
            return Err(TreatmentError::Peer(format!(
                "catalog sent no grade for {}",
                item.code
            )));
        }
    };
    let cap = match item.price_cap.as_str() {
        "" => None,
        text => Some(fen(text, "price cap")?),
    };
    Ok(Some(CatalogEntry::new(grade, cap)?))
}

fn classified_line(
    line: &request::UploadedLine,
    answer: yitong_proto::catalog::v1::ItemClassification,
) -> Result<(ClassifiedLine, pb::ClassifiedFeeLine), TreatmentError> {
    let entry = catalog_entry(&answer)?;
    let parts = ClassifiedLine::classify(line.line, entry);
    let item = answer.item.filter(|_| entry.is_some());
    let wire = pb::ClassifiedFeeLine {
        serial: line.serial.clone(),
        item_code: line.item_code.clone(),
        outcome: answer.outcome,
        item_name: item
            .as_ref()
            .map(|item| item.name.clone())
            .unwrap_or_default(),
        grade: item.as_ref().map(|item| item.grade).unwrap_or_default(),
        self_pay_ratio: entry
            .map(|entry| entry.self_pay_ratio())
            .unwrap_or(Ratio::ZERO)
            .value()
            .to_string(),
        price_cap: entry
            .and_then(|entry| entry.price_cap())
            .map(|cap| cap.to_string())
            .unwrap_or_default(),
        amount: parts.amount().to_string(),
        full_self_pay: parts.full_self_pay().to_string(),
        over_cap_amount: parts.over_cap_self_pay().to_string(),
        pre_self_pay: parts.pre_self_pay().to_string(),
        in_scope_amount: parts.in_scope_amount().to_string(),
    };
    Ok((parts, wire))
}
