//! The reads an HIS makes about a person before and around a visit: the benefit check (national
//! 2001), every reason a visit would be refused, and the person's running totals (5206) as the
//! insured city holds them. Both only read: nothing is stored, no message id is claimed.

use tonic_types::StatusExt;
use yitong_core::{Amount, Date, InstitutionCode, Invalid, PoolCode};
use yitong_proto::catalog::v1::{GetInstitutionRequest, Institution};
use yitong_proto::identity::v1::{Credential, InsuredPerson, credential::Kind};
use yitong_proto::settlement::v1 as pb;
use yitong_proto::settlement::v1::BenefitRefusalReason as Reason;

use super::request::{self, PersonQuery};
use super::{SettlementNode, TreatmentError};

/// The refusal a peer's FAILED_PRECONDITION stands for, by its google.rpc.ErrorInfo reason;
/// `None` for any other answer, which the check passes on as it came.
fn refusal_of(error: &TreatmentError) -> Option<pb::BenefitRefusal> {
    let TreatmentError::Remote { status, .. } = error else {
        return None;
    };
    if status.code() != tonic::Code::FailedPrecondition {
        return None;
    }
    let info = status.get_error_details().error_info()?.clone();
    let reason = match info.reason.as_str() {
        "CARD_LOST" => Reason::CardLost,
        "CARD_CANCELLED" => Reason::CardCancelled,
        "INSURANCE_SUSPENDED" => Reason::InsuranceSuspended,
        "INSURANCE_TERMINATED" => Reason::InsuranceTerminated,
        "NOT_INSURED_ON_DATE" => Reason::NotInsuredOnDate,
        "CITY_NOT_ENABLED" => Reason::CityNotEnabled,
        "NOT_FILED" => Reason::NotFiled,
        "NOT_CERTIFIED" | "DISEASE_NOT_COVERED" => Reason::NotCertified,
        _ => return None,
    };
    Some(refusal(reason, status.message()))
}

fn refusal(reason: Reason, message: impl Into<String>) -> pb::BenefitRefusal {
    pb::BenefitRefusal {
        reason: reason as i32,
        message: message.into(),
    }
}

/// Whether a refusal is of the card presented rather than of the person behind it.
fn of_the_card(refusal: &pb::BenefitRefusal) -> bool {
    refusal.reason == Reason::CardLost as i32 || refusal.reason == Reason::CardCancelled as i32
}

impl SettlementNode {
    /// An institution of this city, as this city's catalog registers it.
    pub(super) async fn institution(
        &self,
        code: &InstitutionCode,
    ) -> Result<Institution, TreatmentError> {
        let institution = self
            .catalog
            .clone()
            .get_institution(GetInstitutionRequest {
                code: code.to_string(),
            })
            .await
            .map_err(|status| TreatmentError::remote("catalog", status))?
            .into_inner()
            .institution
            .ok_or_else(|| {
                TreatmentError::Peer("catalog answered without an institution".into())
            })?;
        if institution.city != self.city.to_string() {
            return Err(Invalid::new(
                "institution_code",
                format!("must be an institution of city {}", self.city),
            )
            .into());
        }
        Ok(institution)
    }

    /// Refuses a query that names an institution of another city, and bounds its date.
    fn query_date(&self, query: &PersonQuery) -> Result<Date, TreatmentError> {
        if query.institution.city() != self.city {
            return Err(Invalid::new(
                "institution_code",
                format!("must be an institution of city {}", self.city),
            )
            .into());
        }
        Ok(query.check_date(self.options.visit_look_back_days, yitong_core::today())?)
    }

    /// The query's date, once the person behind its credential is checked as at the counter.
    async fn person_checked_on(&self, query: &PersonQuery) -> Result<Date, TreatmentError> {
        let date = self.query_date(query)?;
        self.check_person(
            &query.credential,
            &query.person_no,
            query.insurance_type,
            date,
            &query.institution,
            &query.operator_id,
        )
        .await?;
        Ok(date)
    }

    /// The person's running totals from the insured city's BenefitService, and their filing
    /// standing for this city.
    async fn totals(
        &self,
        query: &PersonQuery,
        insured_city: PoolCode,
        institution: &Institution,
        date: Date,
    ) -> Result<
        (
            pb::RunningTotals,
            pb::FilingStanding,
            Option<pb::Certification>,
        ),
        TreatmentError,
    > {
        let request = pb::GetTotalsRequest {
            person_no: query.person_no.to_string(),
            service_date: date.to_string(),
            insurance_type: request::insurance_type_to_wire(query.insurance_type),
            hospital_level: institution.level,
            treatment_city: self.city.to_string(),
            institution_code: query.institution.to_string(),
            disease_code: query.disease_code.clone().unwrap_or_default(),
        };
        let answer = self
            .benefit(insured_city)?
            .get_totals(request)
            .await
            .map_err(|status| TreatmentError::remote("benefit", status))?
            .into_inner();
        let totals = answer
            .totals
            .ok_or_else(|| TreatmentError::Peer("benefit answered without totals".into()))?;
        let filing = answer
            .filing
            .ok_or_else(|| TreatmentError::Peer("benefit answered without a filing".into()))?;
        Ok((totals, filing, answer.certification))
    }

    /// The benefit check: every reason RegisterVisit or Settle would refuse the visit, and an
    /// exhausted annual cap, each checked on its own so one refusal hides no other. A card
    /// refused (lost, replaced) says nothing of the person, so the person's own insurance is
    /// then read by the person number. national: 2001.
    pub(super) async fn check_benefit(
        &self,
        query: PersonQuery,
    ) -> Result<pb::CheckBenefitResponse, TreatmentError> {
        let date = self.query_date(&query)?;
        let mut refusals = Vec::new();
        let mut person = match self
            .person(
                &query.credential,
                date,
                &query.institution,
                &query.operator_id,
            )
            .await
        {
            Ok(person) => Some(person),
            Err(error) => {
                refusals.push(refusal_of(&error).ok_or(error)?);
                None
            }
        };
        if person.is_none() && refusals.iter().all(of_the_card) {
            let by_number = Credential {
                kind: Some(Kind::PersonNo(query.person_no.to_string())),
            };
            person = match self
                .person(&by_number, date, &query.institution, &query.operator_id)
                .await
            {
                Ok(person) => Some(person),
                Err(error) => {
                    refusals.push(refusal_of(&error).ok_or(error)?);
                    None
                }
            };
        }
        if let Some(person) = &person {
            Self::check_is_the_person(person, &query)?;
        }
        let institution = self.institution(&query.institution).await?;
        let insured_city = query.person_no.insured_city();
        if insured_city != self.city && !networked(&institution, date) {
            refusals.push(refusal(
                Reason::InstitutionNotNetworked,
                format!(
                    "institution {} is not networked for cross-city settlement on {date}",
                    institution.code
                ),
            ));
        }
        let enabled = self.benefits.contains_key(&insured_city);
        if !enabled
            && !refusals
                .iter()
                .any(|r| r.reason == Reason::CityNotEnabled as i32)
        {
            refusals.push(refusal(
                Reason::CityNotEnabled,
                format!("city {insured_city} does not take part in cross-city settlement"),
            ));
        }
        let answer = match person.is_some() && enabled {
            true => Some(
                self.totals(&query, insured_city, &institution, date)
                    .await?,
            ),
            false => None,
        };
        if let Some((totals, _, certification)) = &answer
            && let Some(code) = &query.disease_code
        {
            refusals.extend(Self::disease_refusals(
                totals,
                certification.as_ref(),
                code,
                date,
            ));
        }
        if let Some((_, filing, _)) = &answer
            && filing.refused
        {
            refusals.push(refusal(
                Reason::NotFiled,
                format!(
                    "city {insured_city} requires a cross-city filing for {} and the person has none in force on {date}",
                    self.city
                ),
            ));
        }
        let totals = answer.map(|(totals, ..)| totals);
        if let Some(totals) = &totals
            && Amount::parse(&totals.annual_cap_left)
                .map_err(|_| TreatmentError::Peer("benefit sent a malformed cap left".into()))?
                == Amount::ZERO
        {
            refusals.push(refusal(
                Reason::AnnualCapExhausted,
                format!(
                    "the fund has paid the annual cap of {} for {}",
                    totals.annual_cap, totals.benefit_year
                ),
            ));
        }
        Ok(pb::CheckBenefitResponse {
            entitled: refusals.is_empty(),
            refusals,
            insured_city: insured_city.to_string(),
            totals,
        })
    }

    /// The person's running totals at the insured city, for a usable credential of theirs.
    /// national: 5206.
    pub(super) async fn running_totals(
        &self,
        query: PersonQuery,
    ) -> Result<pb::GetRunningTotalsResponse, TreatmentError> {
        let date = self.person_checked_on(&query).await?;
        let institution = self.institution(&query.institution).await?;
        let insured_city = query.person_no.insured_city();
        let (totals, ..) = self
            .totals(&query, insured_city, &institution, date)
            .await?;
        Ok(pb::GetRunningTotalsResponse {
            totals: Some(totals),
        })
    }

    /// The person's filings as the insured city keeps them, and their standing for this city
    /// on the date. national: 5304-style filing query.
    pub(super) async fn query_filings(
        &self,
        query: PersonQuery,
    ) -> Result<pb::QueryFilingsResponse, TreatmentError> {
        let date = self.person_checked_on(&query).await?;
        let institution = self.institution(&query.institution).await?;
        let insured_city = query.person_no.insured_city();
        let (_, standing, _) = self
            .totals(&query, insured_city, &institution, date)
            .await?;
        let filings = self
            .filing(insured_city)?
            .list_filings(pb::ListFilingsRequest {
                person_no: query.person_no.to_string(),
            })
            .await
            .map_err(|status| TreatmentError::remote("filing", status))?
            .into_inner()
            .filings;
        Ok(pb::QueryFilingsResponse {
            filings,
            standing: Some(standing),
        })
    }

    /// The person's certifications for chronic and special diseases as the insured city keeps
    /// them. national: 5301.
    pub(super) async fn query_certifications(
        &self,
        query: PersonQuery,
    ) -> Result<pb::QueryCertificationsResponse, TreatmentError> {
        self.person_checked_on(&query).await?;
        let insured_city = query.person_no.insured_city();
        let certifications = self
            .certification(insured_city)?
            .list_certifications(pb::ListCertificationsRequest {
                person_no: query.person_no.to_string(),
            })
            .await
            .map_err(|status| TreatmentError::remote("certification", status))?
            .into_inner()
            .certifications;
        Ok(pb::QueryCertificationsResponse { certifications })
    }

    /// What a medical type 14 visit for `code` meets at the insured city: no certification in
    /// force here on the date (or a disease its policy does not cover), and a quota paid out.
    fn disease_refusals(
        totals: &pb::RunningTotals,
        certification: Option<&pb::Certification>,
        code: &str,
        date: Date,
    ) -> Vec<pb::BenefitRefusal> {
        let Some(disease) = totals.diseases.iter().find(|d| d.disease_code == code) else {
            return vec![refusal(
                Reason::NotCertified,
                format!("the insured city's disease policy does not cover disease {code}"),
            )];
        };
        let mut refusals = Vec::new();
        if certification.is_none() {
            refusals.push(refusal(
                Reason::NotCertified,
                format!(
                    "the person is not certified for disease {code} at this institution on {date}"
                ),
            ));
        }
        if disease.quota_left == Amount::ZERO.to_string() {
            refusals.push(refusal(
                Reason::DiseaseQuotaExhausted,
                format!(
                    "the fund has paid the annual quota of {} for disease {code}",
                    disease.annual_quota
                ),
            ));
        }
        refusals
    }

    /// The person found is the one asked about, under the insurance asked for.
    fn check_is_the_person(
        person: &InsuredPerson,
        query: &PersonQuery,
    ) -> Result<(), TreatmentError> {
        if person.person_no != query.person_no.as_str() {
            return Err(
                Invalid::new("person_no", "is not the person the credential identifies").into(),
            );
        }
        if person.insurance_type != request::insurance_type_to_wire(query.insurance_type) {
            return Err(
                Invalid::new("insurance_type", "is not the person's insurance type").into(),
            );
        }
        Ok(())
    }
}

/// Whether an institution is networked for cross-city settlement on `date`.
pub(super) fn networked(institution: &Institution, date: Date) -> bool {
    !institution.cross_city_since.is_empty()
        && institution.cross_city_since.as_str() <= date.to_string().as_str()
}
