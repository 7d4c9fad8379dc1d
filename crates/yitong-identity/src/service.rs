//! The IdentityService handlers of one city's node.

use std::sync::Arc;

use prost::Message;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;
use yitong_core::{
    Amount, CardNumber, CitizenId, Date, InstitutionCode, Invalid, MessageId, Network, PersonNo,
    PoolCode,
};
use yitong_proto::identity::v1 as pb;
use yitong_proto::identity::v1::credential::Kind;
use yitong_rpc::{Caller, PeerAccess, PeerFault, invalid_argument};
use yitong_store::replies::{self, Claim};
use yitong_store::sqlx::{Any, AnyConnection, Transaction};
use yitong_store::{Store, now_ms};

use crate::evoucher::{
    TTL_SECONDS_DEFAULT, TTL_SECONDS_MAX, VoucherError, VoucherKeys, VoucherSigner,
};
use crate::person::{CardStatus, Enrolment, InsuranceStatus, Person};
use crate::routing::{FORWARDED, Peers};
use crate::{IdentityError, PiiKeys, repo};

/// The identity service of one city.
#[derive(Debug, Clone)]
pub struct IdentityNode {
    city: PoolCode,
    store: Store,
    keys: PiiKeys,
    signer: VoucherSigner,
    voucher_keys: VoucherKeys,
    network: Arc<Network>,
    peers: Peers,
}

/// Why an identity node cannot start.
#[derive(Debug, thiserror::Error)]
pub enum IdentityStartError {
    #[error(transparent)]
    PublicKey(#[from] crate::evoucher::BadPublicKey),
    #[error("cannot prepare the clients to other cities")]
    Peers(#[from] tonic::transport::Error),
}

/// A credential presented at the counter, parsed. Tokens are kept as text until verified.
#[derive(Debug)]
enum Credential {
    Card(CardNumber),
    CitizenId(CitizenId),
    EVoucher(String),
    PersonNo(PersonNo),
}

/// Longest token accepted, in bytes; ours are about 150.
const TOKEN_BYTES_MAX: usize = 1024;

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
            Kind::EVoucherToken(token) if token.is_empty() || token.len() > TOKEN_BYTES_MAX => {
                Err(Invalid::new(
                    "credential.e_voucher_token",
                    format!("must be 1 to {TOKEN_BYTES_MAX} characters"),
                ))
            }
            Kind::EVoucherToken(token) => Ok(Credential::EVoucher(token)),
            Kind::PersonNo(text) => PersonNo::parse(&text)
                .map(Credential::PersonNo)
                .map_err(|invalid| invalid.at("credential.person_no")),
        }
    }
}

impl Credential {
    fn to_wire(&self) -> pb::Credential {
        let kind = match self {
            Credential::Card(card) => Kind::CardNumber(card.to_string()),
            Credential::CitizenId(id) => Kind::CitizenId(id.expose().to_owned()),
            Credential::EVoucher(token) => Kind::EVoucherToken(token.clone()),
            Credential::PersonNo(person_no) => Kind::PersonNo(person_no.to_string()),
        };
        pb::Credential { kind: Some(kind) }
    }
}

fn optional_date(text: &str, field: &str) -> Result<Date, Invalid> {
    match text {
        "" => Ok(yitong_core::today()),
        text => yitong_core::parse_date(text).map_err(|invalid| invalid.at(field)),
    }
}

fn message_id(text: &str) -> Result<MessageId, Invalid> {
    MessageId::parse(text).map_err(|invalid| invalid.at("message_id"))
}

fn card_number(text: &str) -> Result<CardNumber, Invalid> {
    CardNumber::parse(text).map_err(|invalid| invalid.at("card_number"))
}

/// A write request's message id has either been answered before or starts a transaction.
enum Begun<R> {
    Replay(R),
    Fresh(Transaction<'static, Any>),
}

impl IdentityNode {
    /// The store this node keeps its records in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn new(
        city: PoolCode,
        store: Store,
        keys: PiiKeys,
        signer: VoucherSigner,
        network: Arc<Network>,
        access: &PeerAccess,
    ) -> Result<Self, IdentityStartError> {
        let voucher_keys = VoucherKeys::from_network(&network)?;
        let peers = Peers::new(&network, city, access)?;
        Ok(IdentityNode {
            city,
            store,
            keys,
            signer,
            voucher_keys,
            network,
            peers,
        })
    }

    // ---- Lookups -------------------------------------------------------------------------

    /// Answers a lookup, locally for this city's credentials and from the issuing city for the
    /// others. A forwarded lookup is answered from local records only. No answer is cached: a
    /// card reported lost is refused everywhere from the next lookup on.
    async fn look_up(
        &self,
        credential: Credential,
        date: Date,
        forwarded: bool,
    ) -> Result<pb::InsuredPerson, IdentityError> {
        let issuer = match &credential {
            Credential::Card(card) => card.issuer(),
            Credential::PersonNo(person_no) => person_no.insured_city(),
            Credential::EVoucher(token) => self.verify_voucher(token)?.0,
            Credential::CitizenId(id) => {
                let mut conn = self.store.pool().acquire().await?;
                let local = repo::person_by_citizen_id(&mut conn, &self.keys, id, date).await?;
                return match local {
                    Some(person) => entitled(person, date).map(|person| person.to_wire()),
                    None if forwarded => Err(IdentityError::NotFound("citizen ID")),
                    None => self.look_up_everywhere(id, date).await,
                };
            }
        };
        if issuer == self.city {
            return self
                .local(&credential, date)
                .await
                .map(|person| person.to_wire());
        }
        if forwarded {
            return Err(IdentityError::NotFound("credential"));
        }
        self.check_city(issuer, credential_field(&credential))?;
        let request = pb::GetInsuredPersonRequest {
            credential: Some(credential.to_wire()),
            service_date: date.to_string(),
            ..Default::default()
        };
        self.ask_lookup(issuer, request).await
    }

    /// A credential of this city's, with every refusal a counter needs.
    async fn local(&self, credential: &Credential, date: Date) -> Result<Person, IdentityError> {
        let mut conn = self.store.pool().acquire().await?;
        match credential {
            Credential::Card(card) => {
                let (person, card_status) = repo::person_by_card(&mut conn, card, date)
                    .await?
                    .ok_or(IdentityError::NotFound("card number"))?;
                match card_status {
                    CardStatus::Active => entitled(person, date),
                    CardStatus::Lost => Err(IdentityError::CardLost(card.clone())),
                    CardStatus::Cancelled => Err(IdentityError::CardCancelled(card.clone())),
                }
            }
            Credential::EVoucher(token) => {
                let (_, person_no) = self.verify_voucher(token)?;
                let person = repo::person_by_no(&mut conn, &person_no, date)
                    .await?
                    .ok_or(IdentityError::NotFound("e-voucher"))?;
                entitled(person, date)
            }
            Credential::CitizenId(id) => {
                let person = repo::person_by_citizen_id(&mut conn, &self.keys, id, date)
                    .await?
                    .ok_or(IdentityError::NotFound("citizen ID"))?;
                entitled(person, date)
            }
            Credential::PersonNo(person_no) => {
                let person = repo::person_by_no(&mut conn, person_no, date)
                    .await?
                    .ok_or(IdentityError::NotFound("person number"))?;
                entitled(person, date)
            }
        }
    }

    /// Checks an e-voucher's signature with its issuer's public key, without calling the issuer.
    fn verify_voucher(&self, token: &str) -> Result<(PoolCode, PersonNo), IdentityError> {
        match self.voucher_keys.verify(token, now_ms() / 1000) {
            Ok(voucher) => Ok((voucher.issuer, voucher.person_no)),
            Err(VoucherError::Expired) => Err(IdentityError::EVoucherExpired),
            Err(VoucherError::Malformed(invalid)) => {
                Err(invalid.at("credential.e_voucher_token").into())
            }
        }
    }

    /// A citizen ID says where a person was born, not where they are insured: ask every other
    /// enabled city at once. A city that knows the person answers; a refusal (say, insurance
    /// terminated in a city the person left) counts only when no city knows them as entitled.
    async fn look_up_everywhere(
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
        // Each ask runs in a task of its own, under this call's span, so the calls to the
        // other cities are in the HIS's trace; the asks still running when one city answers
        // are dropped with the set, and their client spans end CANCELLED.
        let mut asks = tokio::task::JoinSet::new();
        for city in self.peers.cities() {
            let node = self.clone();
            let request = request.clone();
            asks.spawn(async move { node.ask_lookup(city, request).await }.in_current_span());
        }
        let (mut refusal, mut unreachable) = (None, None);
        while let Some(answer) = asks.join_next().await {
            match answer.expect("lookup task does not panic") {
                Ok(person) => return Ok(person),
                Err(IdentityError::Remote { status, .. }) if status.code() == Code::NotFound => {}
                Err(error @ IdentityError::Unavailable { .. }) => unreachable = Some(error),
                Err(error) => refusal = Some(error),
            }
        }
        Err(refusal
            .or(unreachable)
            .unwrap_or(IdentityError::NotFound("citizen ID")))
    }

    /// Forwards a lookup to another city's node; its answer reaches the HIS as it came.
    async fn ask_lookup(
        &self,
        city: PoolCode,
        request: pb::GetInsuredPersonRequest,
    ) -> Result<pb::InsuredPerson, IdentityError> {
        let mut client = self
            .peers
            .client(city)
            .ok_or(IdentityError::CityNotEnabled(city))?;
        let reply = client
            .get_insured_person(forwarded(request))
            .await
            .map_err(|status| remote_error(city, status))?;
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
    fn check_city(&self, city: PoolCode, field: &str) -> Result<(), IdentityError> {
        match self.network.pool(city) {
            None => Err(Invalid::new(field, format!("no city {city} in the network")).into()),
            Some(city) if !city.enabled => Err(IdentityError::CityNotEnabled(city.code)),
            Some(_) => Ok(()),
        }
    }

    // ---- E-vouchers ----------------------------------------------------------------------

    /// Signs a scan code for a person this city insures. Only the insured city issues them
    /// (its bureau's app platform, for the person's own app): a card numbered or a person
    /// number prefixed by another city is refused NOT_ISSUED_HERE, and a citizen ID this city
    /// does not insure is NOT_FOUND, without asking any other city, so no city learns through
    /// this call where another city's person is insured.
    async fn issue_voucher(
        &self,
        credential: Credential,
        ttl_seconds: u32,
    ) -> Result<pb::IssueEVoucherResponse, IdentityError> {
        let elsewhere = match &credential {
            Credential::Card(card) => {
                (card.issuer() != self.city).then(|| (format!("card {card}"), card.issuer()))
            }
            Credential::PersonNo(person_no) => (person_no.insured_city() != self.city)
                .then(|| (format!("person {person_no}"), person_no.insured_city())),
            Credential::CitizenId(_) => None,
            Credential::EVoucher(_) => unreachable!("refused when parsed"),
        };
        if let Some((what, owner)) = elsewhere {
            return Err(IdentityError::NotOurs { what, owner });
        }
        // The insured city signs only for a person entitled today, holding the credential.
        let person = self.local(&credential, yitong_core::today()).await?;
        let (token, expires_at) =
            self.signer
                .issue(&person.person_no, now_ms() / 1000, ttl_seconds);
        Ok(pb::IssueEVoucherResponse {
            token,
            expires_at: Some(prost_types_timestamp(expires_at * 1000)),
            issuer_city: self.city.to_string(),
        })
    }

    // ---- Bureau changes ------------------------------------------------------------------

    /// Claims a message id inside a new write transaction, or returns its first reply.
    async fn begin<R: Message + Default>(
        &self,
        message_id: &MessageId,
        rpc: &str,
        request_digest: &str,
    ) -> Result<Begun<R>, IdentityError> {
        let mut tx = self.store.begin_write().await?;
        match replies::claim(&mut tx, message_id.as_str(), rpc, request_digest).await? {
            Claim::Fresh => Ok(Begun::Fresh(tx)),
            Claim::Replay(bytes) => {
                let reply = R::decode(bytes.as_slice()).map_err(|_| {
                    IdentityError::Corrupt(format!("reply to message id {message_id}"))
                })?;
                Ok(Begun::Replay(reply))
            }
        }
    }

    /// Records the reply with the change and commits both.
    async fn finish<R: Message>(
        &self,
        mut tx: Transaction<'static, Any>,
        message_id: &MessageId,
        reply: R,
    ) -> Result<R, IdentityError> {
        replies::record(&mut tx, message_id.as_str(), &reply.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(reply)
    }

    async fn issue_card(
        &self,
        conn: &mut AnyConnection,
        enrolment: Enrolment,
    ) -> Result<pb::IssueCardResponse, IdentityError> {
        let today = yitong_core::today();
        let existing =
            repo::person_by_citizen_id(conn, &self.keys, &enrolment.citizen_id, today).await?;
        let person_no = match existing {
            Some(person) => {
                if let Some(field) = enrolment.differs_from(&person) {
                    return Err(IdentityError::ParticularsDiffer(field));
                }
                if let Some(card) = person.active_card {
                    return Err(IdentityError::AlreadyHoldsCard(card));
                }
                person.person_no
            }
            None => {
                let person_no =
                    PersonNo::new(self.city, serial(repo::next_serial(conn, "person").await?)?);
                repo::insert_person(conn, &self.keys, &person_no, &enrolment).await?;
                person_no
            }
        };
        let card = self.new_card(conn, &person_no).await?;
        let person = self.reread(conn, &person_no, today).await?;
        Ok(pb::IssueCardResponse {
            card_number: card.to_string(),
            person: Some(person.to_wire()),
        })
    }

    async fn new_card(
        &self,
        conn: &mut AnyConnection,
        person_no: &PersonNo,
    ) -> Result<CardNumber, IdentityError> {
        let serial = u32::try_from(repo::next_serial(conn, "card").await?)
            .map_err(|_| IdentityError::Corrupt("card serials exhausted".into()))?;
        let card = CardNumber::new(self.city, serial);
        repo::insert_card(conn, &card, person_no).await?;
        Ok(card)
    }

    async fn reread(
        &self,
        conn: &mut AnyConnection,
        person_no: &PersonNo,
        date: Date,
    ) -> Result<Person, IdentityError> {
        repo::person_by_no(conn, person_no, date)
            .await?
            .ok_or_else(|| IdentityError::Corrupt(format!("person {person_no} vanished")))
    }

    /// The holder of a card this city issued; another city's card is refused.
    async fn our_card(
        &self,
        conn: &mut AnyConnection,
        card: &CardNumber,
    ) -> Result<(PersonNo, CardStatus), IdentityError> {
        if card.issuer() != self.city {
            return Err(IdentityError::NotOurs {
                what: format!("card {card}"),
                owner: card.issuer(),
            });
        }
        repo::card_row(conn, card)
            .await?
            .ok_or(IdentityError::NotFound("card number"))
    }

    async fn report_lost(
        &self,
        conn: &mut AnyConnection,
        card: &CardNumber,
    ) -> Result<pb::ReportCardLostResponse, IdentityError> {
        match self.our_card(conn, card).await?.1 {
            CardStatus::Active => {}
            CardStatus::Lost => return Err(IdentityError::CardLost(card.clone())),
            CardStatus::Cancelled => return Err(IdentityError::CardCancelled(card.clone())),
        }
        let at_ms = repo::set_card_status(conn, card, CardStatus::Lost, None).await?;
        Ok(pb::ReportCardLostResponse {
            status: pb::CardStatus::Lost as i32,
            reported_at: Some(prost_types_timestamp(at_ms)),
        })
    }

    async fn reissue(
        &self,
        conn: &mut AnyConnection,
        card: &CardNumber,
    ) -> Result<pb::ReissueCardResponse, IdentityError> {
        let (person_no, status) = self.our_card(conn, card).await?;
        if status == CardStatus::Cancelled {
            return Err(IdentityError::CardCancelled(card.clone()));
        }
        let new_card = self.new_card(conn, &person_no).await?;
        repo::set_card_status(conn, card, CardStatus::Cancelled, Some(&new_card)).await?;
        let person = self.reread(conn, &person_no, yitong_core::today()).await?;
        Ok(pb::ReissueCardResponse {
            new_card_number: new_card.to_string(),
            person: Some(person.to_wire()),
        })
    }

    async fn move_account(
        &self,
        conn: &mut AnyConnection,
        movement: Movement,
    ) -> Result<pb::MoveAccountResponse, IdentityError> {
        if movement.person_no.insured_city() != self.city {
            return Err(IdentityError::NotOurs {
                what: format!("person {}", movement.person_no),
                owner: movement.person_no.insured_city(),
            });
        }
        let reply = |balance_after: Amount, at_ms: i64| pb::MoveAccountResponse {
            balance_after: balance_after.to_string(),
            moved_at: Some(prost_types_timestamp(at_ms)),
        };
        // One movement per settlement, whatever message carries it.
        if let Some((person_no, amount, balance_after, at_ms)) =
            repo::account_movement(conn, &movement.settlement_id).await?
        {
            if person_no != movement.person_no || amount != movement.amount {
                return Err(IdentityError::MessageConflict(format!(
                    "for settlement {}",
                    movement.settlement_id
                )));
            }
            return Ok(reply(balance_after, at_ms));
        }
        let (balance_after, at_ms) = repo::move_account(
            conn,
            &movement.settlement_id,
            &movement.person_no,
            movement.amount,
        )
        .await?;
        Ok(reply(balance_after, at_ms))
    }

    async fn set_status(
        &self,
        conn: &mut AnyConnection,
        change: StatusChange,
    ) -> Result<pb::SetInsuranceStatusResponse, IdentityError> {
        if change.person_no.insured_city() != self.city {
            return Err(IdentityError::NotOurs {
                what: format!("person {}", change.person_no),
                owner: change.person_no.insured_city(),
            });
        }
        let person = repo::person_by_no(conn, &change.person_no, change.effective_date)
            .await?
            .ok_or(IdentityError::NotFound("person number"))?;
        if change.effective_date < person.insured_since {
            return Err(
                Invalid::new("effective_date", "is before the person's insurance starts").into(),
            );
        }
        repo::insert_status_change(
            conn,
            &change.person_no,
            change.status,
            change.effective_date,
            &change.reason,
        )
        .await?;
        let person = self
            .reread(conn, &change.person_no, change.effective_date)
            .await?;
        Ok(pb::SetInsuranceStatusResponse {
            person: Some(person.to_wire()),
        })
    }
}

/// A parsed MoveAccount request.
#[derive(Debug)]
struct Movement {
    settlement_id: String,
    person_no: PersonNo,
    amount: Amount,
}

/// Longest settlement id accepted, in bytes.
const SETTLEMENT_ID_BYTES_MAX: usize = 64;

impl TryFrom<&pb::MoveAccountRequest> for Movement {
    type Error = Invalid;

    fn try_from(request: &pb::MoveAccountRequest) -> Result<Self, Invalid> {
        let settlement_id = request.settlement_id.clone();
        let well_formed = !settlement_id.is_empty()
            && settlement_id.len() <= SETTLEMENT_ID_BYTES_MAX
            && settlement_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(Invalid::new(
                "settlement_id",
                "must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        let person_no =
            PersonNo::parse(&request.person_no).map_err(|invalid| invalid.at("person_no"))?;
        let amount =
            Amount::parse_signed(&request.amount).map_err(|invalid| invalid.at("amount"))?;
        if amount == Amount::ZERO {
            return Err(Invalid::new("amount", "must not be zero"));
        }
        Ok(Movement {
            settlement_id,
            person_no,
            amount,
        })
    }
}

/// A parsed SetInsuranceStatus request.
#[derive(Debug)]
struct StatusChange {
    person_no: PersonNo,
    status: InsuranceStatus,
    effective_date: Date,
    reason: String,
}

/// Longest reason accepted, in characters.
const REASON_CHARS_MAX: usize = 200;

impl TryFrom<&pb::SetInsuranceStatusRequest> for StatusChange {
    type Error = Invalid;

    fn try_from(request: &pb::SetInsuranceStatusRequest) -> Result<Self, Invalid> {
        let person_no =
            PersonNo::parse(&request.person_no).map_err(|invalid| invalid.at("person_no"))?;
        let status = match pb::InsuranceStatus::try_from(request.status) {
            Ok(pb::InsuranceStatus::Active) => InsuranceStatus::Active,
            Ok(pb::InsuranceStatus::Suspended) => InsuranceStatus::Suspended,
            Ok(pb::InsuranceStatus::Terminated) => InsuranceStatus::Terminated,
            _ => {
                return Err(Invalid::new(
                    "status",
                    "must be ACTIVE, SUSPENDED or TERMINATED",
                ));
            }
        };
        let effective_date = yitong_core::parse_date(&request.effective_date)
            .map_err(|invalid| invalid.at("effective_date"))?;
        let reason = request.reason.trim().to_owned();
        if reason.is_empty() || reason.chars().count() > REASON_CHARS_MAX {
            return Err(Invalid::new(
                "reason",
                format!("must be 1 to {REASON_CHARS_MAX} characters"),
            ));
        }
        Ok(StatusChange {
            person_no,
            status,
            effective_date,
            reason,
        })
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

fn credential_field(credential: &Credential) -> &'static str {
    match credential {
        Credential::Card(_) => "credential.card_number",
        Credential::CitizenId(_) => "credential.citizen_id",
        Credential::EVoucher(_) => "credential.e_voucher_token",
        Credential::PersonNo(_) => "credential.person_no",
    }
}

/// Marks a request as forwarded by a node, so the receiver answers from its own records.
fn forwarded<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert(FORWARDED, "1".parse().expect("ascii metadata"));
    request
}

/// What the issuing city's answer to a forwarded request means here. Every field of a
/// forwarded request is the caller's own, sent on unchanged, so an INVALID_ARGUMENT naming one
/// of them is the caller's to read; a stream that broke under the call is the issuing city's
/// unavailability, not its failure.
fn remote_error(city: PoolCode, status: Status) -> IdentityError {
    const FORWARDED_FIELDS: [&str; 5] = [
        "credential",
        "service_date",
        "institution_code",
        "operator_id",
        "ttl_seconds",
    ];
    match PeerFault::of(&status, &FORWARDED_FIELDS) {
        PeerFault::Unavailable => {
            tracing::warn!(city = %city, code = ?status.code(), message = status.message(), "issuing city did not answer");
            IdentityError::Unavailable { city, status }
        }
        PeerFault::Refused => IdentityError::Remote { city, status },
        PeerFault::Internal => IdentityError::Peer {
            city,
            detail: format!("{:?}: {}", status.code(), status.message()),
        },
    }
}

fn serial(value: i64) -> Result<u64, IdentityError> {
    u64::try_from(value).map_err(|_| IdentityError::Corrupt("negative serial".into()))
}

fn prost_types_timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

#[tonic::async_trait]
impl pb::identity_service_server::IdentityService for IdentityNode {
    async fn get_insured_person(
        &self,
        request: Request<pb::GetInsuredPersonRequest>,
    ) -> Result<Response<pb::GetInsuredPersonResponse>, Status> {
        let is_forwarded = request.metadata().contains_key(FORWARDED);
        let caller = Caller::of(&request);
        let request = request.into_inner();
        // An HIS looks people up for its own institution only; the institution it names is
        // what the person's insured city sees.
        if let Caller::Institution(own) = &caller
            && request.institution_code != own.as_str()
        {
            return Err(Status::permission_denied(format!(
                "{caller} may not look up persons for institution {:?}",
                request.institution_code
            )));
        }
        // A node (forwarding its HIS's lookup) and a bureau ask for an institution of their own
        // city only: a node may not ask as another city's hospital.
        if matches!(caller, Caller::Node(_) | Caller::Bureau(_))
            && let Ok(code) = InstitutionCode::parse(&request.institution_code)
        {
            caller.require_own_city("institution_code", code.city())?;
        }
        let credential = Credential::try_from(request.credential).map_err(invalid_argument)?;
        let date =
            optional_date(&request.service_date, "service_date").map_err(invalid_argument)?;
        let person = self.look_up(credential, date, is_forwarded).await?;
        Ok(Response::new(pb::GetInsuredPersonResponse {
            person: Some(person),
        }))
    }

    async fn issue_card(
        &self,
        request: Request<pb::IssueCardRequest>,
    ) -> Result<Response<pb::IssueCardResponse>, Status> {
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let digest = self.keys.request_digest(&request.encode_to_vec());
        let enrolment = Enrolment::try_from(request.person).map_err(invalid_argument)?;
        let mut tx = match self.begin(&message_id, "IssueCard", &digest).await? {
            Begun::Replay(reply) => return Ok(Response::new(reply)),
            Begun::Fresh(tx) => tx,
        };
        let reply = IdentityNode::issue_card(self, &mut tx, enrolment).await?;
        Ok(Response::new(self.finish(tx, &message_id, reply).await?))
    }

    async fn report_card_lost(
        &self,
        request: Request<pb::ReportCardLostRequest>,
    ) -> Result<Response<pb::ReportCardLostResponse>, Status> {
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let card = card_number(&request.card_number).map_err(invalid_argument)?;
        let digest = self.keys.request_digest(&request.encode_to_vec());
        let mut tx = match self.begin(&message_id, "ReportCardLost", &digest).await? {
            Begun::Replay(reply) => return Ok(Response::new(reply)),
            Begun::Fresh(tx) => tx,
        };
        let reply = self.report_lost(&mut tx, &card).await?;
        Ok(Response::new(self.finish(tx, &message_id, reply).await?))
    }

    async fn reissue_card(
        &self,
        request: Request<pb::ReissueCardRequest>,
    ) -> Result<Response<pb::ReissueCardResponse>, Status> {
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let card = card_number(&request.card_number).map_err(invalid_argument)?;
        let digest = self.keys.request_digest(&request.encode_to_vec());
        let mut tx = match self.begin(&message_id, "ReissueCard", &digest).await? {
            Begun::Replay(reply) => return Ok(Response::new(reply)),
            Begun::Fresh(tx) => tx,
        };
        let reply = self.reissue(&mut tx, &card).await?;
        Ok(Response::new(self.finish(tx, &message_id, reply).await?))
    }

    async fn set_insurance_status(
        &self,
        request: Request<pb::SetInsuranceStatusRequest>,
    ) -> Result<Response<pb::SetInsuranceStatusResponse>, Status> {
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let change = StatusChange::try_from(&request).map_err(invalid_argument)?;
        let digest = self.keys.request_digest(&request.encode_to_vec());
        let mut tx = match self
            .begin(&message_id, "SetInsuranceStatus", &digest)
            .await?
        {
            Begun::Replay(reply) => return Ok(Response::new(reply)),
            Begun::Fresh(tx) => tx,
        };
        let reply = self.set_status(&mut tx, change).await?;
        Ok(Response::new(self.finish(tx, &message_id, reply).await?))
    }

    async fn move_account(
        &self,
        request: Request<pb::MoveAccountRequest>,
    ) -> Result<Response<pb::MoveAccountResponse>, Status> {
        let request = request.into_inner();
        let message_id = message_id(&request.message_id).map_err(invalid_argument)?;
        let movement = Movement::try_from(&request).map_err(invalid_argument)?;
        let digest = self.keys.request_digest(&request.encode_to_vec());
        let mut tx = match self.begin(&message_id, "MoveAccount", &digest).await? {
            Begun::Replay(reply) => return Ok(Response::new(reply)),
            Begun::Fresh(tx) => tx,
        };
        let reply = IdentityNode::move_account(self, &mut tx, movement).await?;
        Ok(Response::new(self.finish(tx, &message_id, reply).await?))
    }

    async fn issue_e_voucher(
        &self,
        request: Request<pb::IssueEVoucherRequest>,
    ) -> Result<Response<pb::IssueEVoucherResponse>, Status> {
        let request = request.into_inner();
        let credential = Credential::try_from(request.credential).map_err(invalid_argument)?;
        if matches!(credential, Credential::EVoucher(_)) {
            return Err(invalid_argument(Invalid::new(
                "credential.e_voucher_token",
                "an e-voucher is issued against a card number or citizen ID",
            )));
        }
        let ttl_seconds = match request.ttl_seconds {
            0 => TTL_SECONDS_DEFAULT,
            ttl if ttl <= TTL_SECONDS_MAX => ttl,
            _ => {
                return Err(invalid_argument(Invalid::new(
                    "ttl_seconds",
                    format!("must be 0 (default {TTL_SECONDS_DEFAULT}) to {TTL_SECONDS_MAX}"),
                )));
            }
        };
        Ok(Response::new(
            self.issue_voucher(credential, ttl_seconds).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An h2 error under the client's own error, as hyper's "http2 error" carries it.
    #[derive(Debug)]
    struct Broken(h2::Error);

    impl std::fmt::Display for Broken {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("http2 error")
        }
    }

    impl std::error::Error for Broken {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Proves the issuing city's answers reach the caller as they should: a stream broken
    /// under the call is UNAVAILABLE (it was INTERNAL, passed on as if the issuer had failed),
    /// a refusal passes unchanged, and the issuer's own failure or a permission this node
    /// should have had is INTERNAL without the issuer's words.
    #[test]
    fn the_issuing_city_s_answers_mean_what_they_say() {
        let jinan = PoolCode::parse("370100").expect("city");
        let mut broken = Status::internal("h2 protocol error: http2 error");
        broken.set_source(std::sync::Arc::new(Broken(h2::Error::from(
            h2::Reason::PROTOCOL_ERROR,
        ))));
        let answered = |status| Status::from(remote_error(jinan, status));
        assert_eq!(answered(broken).code(), Code::Unavailable);
        let lost = answered(Status::failed_precondition(
            "card 370100000000018 is reported lost",
        ));
        assert_eq!(
            (lost.code(), lost.message()),
            (
                Code::FailedPrecondition,
                "card 370100000000018 is reported lost"
            )
        );
        for status in [
            Status::internal("relation persons does not exist"),
            Status::permission_denied("node key of 370300 may not ask"),
        ] {
            let failed = answered(status);
            assert_eq!(
                (failed.code(), failed.message()),
                (Code::Internal, "internal error")
            );
        }
    }
}
