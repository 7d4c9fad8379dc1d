//! The IdentityService handlers of one city's node.

use std::sync::Arc;

use tonic::{Code, Request, Response, Status};
use yitong_core::{CallLimits, CardNumber, CitizenId, CityCode, Date, Invalid, Network};
use yitong_proto::identity::v1 as pb;
use yitong_proto::identity::v1::credential::Kind;
use yitong_store::Store;

use crate::person::{CardStatus, InsuranceStatus, Person};
use crate::routing::{FORWARDED, Peers};
use crate::{IdentityError, PiiKeys, repo};

/// The identity service of one city.
#[derive(Debug, Clone)]
pub struct IdentityNode {
    city: CityCode,
    store: Store,
    keys: PiiKeys,
    network: Arc<Network>,
    peers: Peers,
}

/// A credential presented at the counter, parsed.
#[derive(Debug)]
enum Credential {
    Card(CardNumber),
    CitizenId(CitizenId),
    EVoucher,
}

impl TryFrom<Option<pb::Credential>> for Credential {
    type Error = Invalid;

    fn try_from(credential: Option<pb::Credential>) -> Result<Self, Invalid> {
        let kind = credential
            .and_then(|credential| credential.kind)
            .ok_or_else(|| {
                Invalid::new(
                    "credential",
                    "a card number, citizen ID or e-voucher token is required",
                )
            })?;
        match kind {
            Kind::CardNumber(text) => CardNumber::parse(&text)
                .map(Credential::Card)
                .map_err(|invalid| invalid.at("credential.card_number")),
            Kind::CitizenId(text) => CitizenId::parse(&text)
                .map(Credential::CitizenId)
                .map_err(|invalid| invalid.at("credential.citizen_id")),
            Kind::EVoucherToken(token) if token.is_empty() || token.len() > 1024 => Err(
                Invalid::new("credential.e_voucher_token", "must be 1 to 1024 characters"),
            ),
            Kind::EVoucherToken(_) => Ok(Credential::EVoucher),
        }
    }
}

/// A parsed GetInsuredPerson request.
#[derive(Debug)]
struct Lookup {
    credential: Credential,
    date: Date,
}

impl TryFrom<pb::GetInsuredPersonRequest> for Lookup {
    type Error = Invalid;

    fn try_from(request: pb::GetInsuredPersonRequest) -> Result<Self, Invalid> {
        let credential = Credential::try_from(request.credential)?;
        let date = match request.service_date.as_str() {
            "" => yitong_core::today(),
            text => yitong_core::parse_date(text).map_err(|invalid| invalid.at("service_date"))?,
        };
        Ok(Lookup { credential, date })
    }
}

impl IdentityNode {
    pub fn new(
        city: CityCode,
        store: Store,
        keys: PiiKeys,
        network: Arc<Network>,
        limits: CallLimits,
    ) -> Result<Self, tonic::transport::Error> {
        let peers = Peers::new(&network, city, limits)?;
        Ok(IdentityNode {
            city,
            store,
            keys,
            network,
            peers,
        })
    }

    /// Answers a lookup, locally for this city's credentials and from the issuing city for the
    /// others. A forwarded lookup is answered from local records only.
    async fn look_up(
        &self,
        lookup: Lookup,
        forwarded: bool,
    ) -> Result<pb::InsuredPerson, IdentityError> {
        match lookup.credential {
            Credential::Card(card) => {
                let issuer = card.issuer();
                if issuer == self.city {
                    return self
                        .local_by_card(&card, lookup.date)
                        .await
                        .map(|person| person.to_wire());
                }
                if forwarded {
                    return Err(IdentityError::NotFound("card number"));
                }
                self.check_city(issuer, "credential.card_number")?;
                let request = pb::GetInsuredPersonRequest {
                    credential: Some(pb::Credential {
                        kind: Some(Kind::CardNumber(card.to_string())),
                    }),
                    service_date: lookup.date.to_string(),
                    ..Default::default()
                };
                self.ask(issuer, request).await
            }
            Credential::CitizenId(id) => {
                let local =
                    repo::person_by_citizen_id(&self.store, &self.keys, &id, lookup.date).await?;
                match local {
                    Some(person) => entitled(person, lookup.date).map(|person| person.to_wire()),
                    None if forwarded => Err(IdentityError::NotFound("citizen ID")),
                    None => self.ask_every_city(&id, lookup.date).await,
                }
            }
            Credential::EVoucher => Err(IdentityError::Unimplemented(
                "lookup by e-voucher token is not built yet",
            )),
        }
    }

    async fn local_by_card(&self, card: &CardNumber, date: Date) -> Result<Person, IdentityError> {
        let (person, card_status) = repo::person_by_card(&self.store, card, date)
            .await?
            .ok_or(IdentityError::NotFound("card number"))?;
        match card_status {
            CardStatus::Active => entitled(person, date),
            CardStatus::Lost => Err(IdentityError::CardLost(card.clone())),
            CardStatus::Cancelled => Err(IdentityError::CardCancelled(card.clone())),
        }
    }

    /// A citizen ID says where a person was born, not where they are insured: ask every other
    /// enabled city at once and take the one that knows them.
    async fn ask_every_city(
        &self,
        id: &CitizenId,
        date: Date,
    ) -> Result<pb::InsuredPerson, IdentityError> {
        let request = pb::GetInsuredPersonRequest {
            credential: Some(pb::Credential {
                kind: Some(Kind::CitizenId(id.expose().to_owned())),
            }),
            service_date: date.to_string(),
            ..Default::default()
        };
        let mut asks = tokio::task::JoinSet::new();
        for city in self.peers.cities() {
            let node = self.clone();
            let request = request.clone();
            asks.spawn(async move { node.ask(city, request).await });
        }
        let mut unreachable = None;
        while let Some(answer) = asks.join_next().await {
            match answer.expect("lookup task does not panic") {
                Ok(person) => return Ok(person),
                Err(IdentityError::Remote { status, .. }) if status.code() == Code::NotFound => {}
                Err(error @ IdentityError::Unavailable { .. }) => unreachable = Some(error),
                Err(refusal) => return Err(refusal),
            }
        }
        Err(unreachable.unwrap_or(IdentityError::NotFound("citizen ID")))
    }

    /// Forwards a lookup to another city's node; its answer reaches the HIS as it came.
    async fn ask(
        &self,
        city: CityCode,
        request: pb::GetInsuredPersonRequest,
    ) -> Result<pb::InsuredPerson, IdentityError> {
        let mut client = self
            .peers
            .client(city)
            .ok_or(IdentityError::CityNotEnabled(city))?;
        let mut request = Request::new(request);
        request
            .metadata_mut()
            .insert(FORWARDED, "1".parse().expect("ascii metadata"));
        let reply = client.get_insured_person(request).await.map_err(|status| match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                tracing::warn!(city = %city, code = ?status.code(), "issuing city did not answer");
                IdentityError::Unavailable { city, status }
            }
            _ => IdentityError::Remote { city, status },
        })?;
        let person = reply.into_inner().person.ok_or_else(|| {
            IdentityError::Corrupt(format!("city {city} answered without a person"))
        })?;
        if person.insured_city != city.to_string() {
            return Err(IdentityError::Corrupt(format!(
                "city {city} answered for a person insured in {}",
                person.insured_city
            )));
        }
        Ok(person)
    }

    /// Refuses a city outside the network (a malformed request) or not enabled (a refusal).
    fn check_city(&self, city: CityCode, field: &str) -> Result<(), IdentityError> {
        match self.network.city(city) {
            None => Err(Invalid::new(field, format!("no city {city} in the network")).into()),
            Some(city) if !city.enabled => Err(IdentityError::CityNotEnabled(city.code)),
            Some(_) => Ok(()),
        }
    }
}

/// Refuses a person who is not entitled to benefits on `date`.
fn entitled(person: Person, date: Date) -> Result<Person, IdentityError> {
    match person.status {
        Some((InsuranceStatus::Active, _)) => Ok(person),
        Some((status, since)) => Err(IdentityError::NotEntitled {
            person_no: person.person_no,
            status,
            since,
        }),
        None => Err(IdentityError::NotInsuredOn {
            person_no: person.person_no,
            date,
        }),
    }
}

#[tonic::async_trait]
impl pb::identity_service_server::IdentityService for IdentityNode {
    async fn get_insured_person(
        &self,
        request: Request<pb::GetInsuredPersonRequest>,
    ) -> Result<Response<pb::GetInsuredPersonResponse>, Status> {
        let forwarded = request.metadata().contains_key(FORWARDED);
        let lookup = Lookup::try_from(request.into_inner())?;
        let person = self.look_up(lookup, forwarded).await?;
        Ok(Response::new(pb::GetInsuredPersonResponse {
            person: Some(person),
        }))
    }
}
