//! The HIS's requests, parsed at the edge into checked values: nothing below this module sees a
//! wire type it has not checked.

use std::str::FromStr;

use rust_decimal::Decimal;
use yitong_core::{Amount, Date, InstitutionCode, Invalid, MessageId, PersonNo};
use yitong_proto::identity::v1::Credential;
use yitong_proto::settlement::v1 as pb;
use yitong_rpc::ms_of_timestamp;

use yitong_proto::identity::v1::InsuranceType as WireInsuranceType;

use crate::benefit::parse_id;
use crate::split::{FeeLine, InsuranceType, UnitPrice};

/// Most fee lines in one UploadFeeLines request.
pub const LINES_PER_REQUEST_MAX: usize = 100;
/// Most live fee lines one visit may hold.
pub const LINES_PER_VISIT_MAX: usize = 500;
/// Most diagnoses given at registration.
pub const DIAGNOSES_MAX: usize = 20;
/// Longest line serial, in characters.
pub const SERIAL_CHARS_MAX: usize = 30;
/// Longest national item code, in characters.
pub const ITEM_CODE_CHARS_MAX: usize = 50;
/// Longest free text (names, reasons), in characters.
pub const TEXT_CHARS_MAX: usize = 200;
/// Longest code-like text (department, doctor, operator, HIS numbers), in characters.
pub const CODE_CHARS_MAX: usize = 64;
/// Most settlements on one ListSettlements page.
pub const PAGE_SIZE_MAX: u32 = 200;
/// Longest date range of one ListSettlements, in days after `from_date`.
pub const LIST_RANGE_DAYS_MAX: i64 = 31;
/// How far ahead of the node's clock an instant from the HIS (a visit's start, a fee line's
/// time) may be, in milliseconds: an HIS clock a little fast is not the HIS's fault. Anything
/// later is refused as in the future.
pub const CLOCK_SKEW_ALLOWANCE_MS: i64 = 60_000;

pub use yitong_core::date_of_ms;

pub fn insurance_type_from_wire(code: i32, field: &str) -> Result<InsuranceType, Invalid> {
    match WireInsuranceType::try_from(code) {
        Ok(WireInsuranceType::Employee) => Ok(InsuranceType::Employee),
        Ok(WireInsuranceType::Resident) => Ok(InsuranceType::Resident),
        _ => Err(Invalid::new(
            field,
            "must be INSURANCE_TYPE_EMPLOYEE or INSURANCE_TYPE_RESIDENT",
        )),
    }
}

pub fn insurance_type_to_wire(insurance_type: InsuranceType) -> i32 {
    match insurance_type {
        InsuranceType::Employee => WireInsuranceType::Employee as i32,
        InsuranceType::Resident => WireInsuranceType::Resident as i32,
    }
}

pub fn message_id(text: &str) -> Result<MessageId, Invalid> {
    MessageId::parse(text).map_err(|invalid| invalid.at("message_id"))
}

fn person_no(text: &str) -> Result<PersonNo, Invalid> {
    PersonNo::parse(text).map_err(|invalid| invalid.at("person_no"))
}

fn institution(text: &str) -> Result<InstitutionCode, Invalid> {
    InstitutionCode::parse(text).map_err(|invalid| invalid.at("institution_code"))
}

fn text(value: &str, field: &str, min: usize, max: usize) -> Result<String, Invalid> {
    let count = value.chars().count();
    if count < min || count > max || value.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            format!("must be {min} to {max} printable characters"),
        ));
    }
    Ok(value.to_owned())
}

fn credential(value: Option<Credential>) -> Result<Credential, Invalid> {
    value
        .filter(|credential| credential.kind.is_some())
        .ok_or_else(|| {
            Invalid::new(
                "credential",
                "a card number, citizen ID or e-voucher token is required",
            )
        })
}

/// An instant the HIS sent for `field`: required, a Timestamp in range
/// (`yitong_rpc::ms_of_timestamp`) and not in the future beyond [`CLOCK_SKEW_ALLOWANCE_MS`].
fn past_instant_ms(value: Option<&prost_types::Timestamp>, field: &str) -> Result<i64, Invalid> {
    let ms = value
        .ok_or_else(|| Invalid::new(field, "is required"))
        .and_then(|value| ms_of_timestamp(value).map_err(|invalid| invalid.at(field)))?;
    if ms > yitong_store::now_ms() + CLOCK_SKEW_ALLOWANCE_MS {
        return Err(Invalid::new(field, "must not be in the future"));
    }
    Ok(ms)
}

/// An instant as an HIS reads it: its date and time in China Standard Time.
pub fn china_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&yitong_core::china())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Refuses a visit that began before the look-back: its date (China Standard Time) must be
/// `look_back_days` before `today` or later. The future was refused when the request was
/// parsed.
pub fn check_look_back(began_at_ms: i64, look_back_days: u32, today: Date) -> Result<(), Invalid> {
    // A look-back past the calendar's start bounds nothing.
    let earliest = today
        .checked_sub_days(chrono::Days::new(u64::from(look_back_days)))
        .unwrap_or(Date::MIN);
    if date_of_ms(began_at_ms) < earliest {
        return Err(Invalid::new(
            "began_at",
            format!(
                "must be within the last {look_back_days} days: on or after {earliest} \
                 (China Standard Time)"
            ),
        ));
    }
    Ok(())
}

/// Refuses uploaded lines that arose before their visit began: every line lies within its
/// visit, from its start to now.
pub fn check_within_visit(lines: &[UploadedLine], began_at_ms: i64) -> Result<(), Invalid> {
    for (index, line) in lines.iter().enumerate() {
        if line.occurred_at_ms.is_some_and(|at| at < began_at_ms) {
            return Err(Invalid::new(
                format!("lines[{index}].occurred_at"),
                format!(
                    "must not be before the visit began, {}",
                    china_time(began_at_ms)
                ),
            ));
        }
    }
    Ok(())
}

/// A visit's medical type and disease, checked together: a chronic-disease visit (14) names its
/// disease, any other names none.
fn visit_kind(
    medical_type: i32,
    disease_code: &str,
) -> Result<(pb::MedicalType, Option<String>), Invalid> {
    let kind = match pb::MedicalType::try_from(medical_type) {
        Ok(
            kind @ (pb::MedicalType::Outpatient
            | pb::MedicalType::ChronicDisease
            | pb::MedicalType::Pharmacy),
        ) => kind,
        _ => {
            return Err(Invalid::new(
                "medical_type",
                "must be MEDICAL_TYPE_OUTPATIENT, MEDICAL_TYPE_CHRONIC_DISEASE or MEDICAL_TYPE_PHARMACY",
            ));
        }
    };
    match (kind, disease_code) {
        (pb::MedicalType::ChronicDisease, "") => Err(Invalid::new(
            "disease_code",
            "is required for a MEDICAL_TYPE_CHRONIC_DISEASE visit",
        )),
        (pb::MedicalType::ChronicDisease, code) => Ok((
            kind,
            Some(crate::benefit::parse_disease_code(code, "disease_code")?),
        )),
        (_, "") => Ok((kind, None)),
        (_, _) => Err(Invalid::new(
            "disease_code",
            "must be empty unless the visit is MEDICAL_TYPE_CHRONIC_DISEASE",
        )),
    }
}

/// A RegisterVisit, checked.
#[derive(Debug, Clone)]
pub struct Registration {
    pub message_id: MessageId,
    pub person_no: PersonNo,
    pub credential: Credential,
    pub insurance_type: InsuranceType,
    pub institution: InstitutionCode,
    pub medical_type: pb::MedicalType,
    /// The disease of a medical type 14 visit; `None` for any other.
    pub disease_code: Option<String>,
    pub began_at_ms: i64,
    pub request: pb::RegisterVisitRequest,
}

impl TryFrom<pb::RegisterVisitRequest> for Registration {
    type Error = Invalid;

    fn try_from(request: pb::RegisterVisitRequest) -> Result<Self, Invalid> {
        let (medical_type, disease_code) = visit_kind(request.medical_type, &request.disease_code)?;
        let began_at_ms = past_instant_ms(request.began_at.as_ref(), "began_at")?;
        text(
            &request.department_code,
            "department_code",
            0,
            CODE_CHARS_MAX,
        )?;
        text(
            &request.department_name,
            "department_name",
            0,
            TEXT_CHARS_MAX,
        )?;
        text(&request.doctor_code, "doctor_code", 0, CODE_CHARS_MAX)?;
        text(&request.doctor_name, "doctor_name", 0, TEXT_CHARS_MAX)?;
        text(&request.his_visit_no, "his_visit_no", 0, CODE_CHARS_MAX)?;
        text(&request.operator_id, "operator_id", 0, CODE_CHARS_MAX)?;
        if request.diagnoses.len() > DIAGNOSES_MAX {
            return Err(Invalid::new(
                "diagnoses",
                format!("at most {DIAGNOSES_MAX} diagnoses"),
            ));
        }
        for (index, diagnosis) in request.diagnoses.iter().enumerate() {
            text(
                &diagnosis.code,
                &format!("diagnoses[{index}].code"),
                1,
                CODE_CHARS_MAX,
            )?;
            text(
                &diagnosis.name,
                &format!("diagnoses[{index}].name"),
                0,
                TEXT_CHARS_MAX,
            )?;
        }
        Ok(Registration {
            message_id: message_id(&request.message_id)?,
            person_no: person_no(&request.person_no)?,
            credential: credential(request.credential.clone())?,
            insurance_type: insurance_type_from_wire(request.insurance_type, "insurance_type")?,
            institution: institution(&request.institution_code)?,
            medical_type,
            disease_code,
            began_at_ms,
            request,
        })
    }
}

/// The part every visit-scoped request shares: which visit, whose, asked by whom.
#[derive(Debug, Clone)]
pub struct VisitScope {
    pub message_id: MessageId,
    pub visit_id: String,
    pub person_no: PersonNo,
    pub institution: InstitutionCode,
}

impl VisitScope {
    fn parse(
        message: &str,
        visit_id: &str,
        person: &str,
        institution_code: &str,
        operator_id: &str,
    ) -> Result<Self, Invalid> {
        text(operator_id, "operator_id", 0, CODE_CHARS_MAX)?;
        Ok(VisitScope {
            message_id: message_id(message)?,
            visit_id: parse_id(visit_id, "visit_id")?,
            person_no: person_no(person)?,
            institution: institution(institution_code)?,
        })
    }
}

impl TryFrom<&pb::CancelVisitRequest> for VisitScope {
    type Error = Invalid;

    fn try_from(request: &pb::CancelVisitRequest) -> Result<Self, Invalid> {
        text(&request.reason, "reason", 0, TEXT_CHARS_MAX)?;
        VisitScope::parse(
            &request.message_id,
            &request.visit_id,
            &request.person_no,
            &request.institution_code,
            &request.operator_id,
        )
    }
}

/// One uploaded fee line, checked: its amount is quantity x unit price to the fen.
#[derive(Debug, Clone)]
pub struct UploadedLine {
    pub serial: String,
    pub item_code: String,
    pub line: FeeLine,
    /// When the fee arose; `None` means the visit's start.
    pub occurred_at_ms: Option<i64>,
}

/// An UploadFeeLines, checked.
#[derive(Debug, Clone)]
pub struct Upload {
    pub scope: VisitScope,
    pub lines: Vec<UploadedLine>,
}

fn quantity(value: &str, field: &str) -> Result<Decimal, Invalid> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let well_formed = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().filter(|b| *b == b'.').count() <= 1
        && !digits.starts_with('.')
        && !digits.ends_with('.');
    if !well_formed {
        return Err(Invalid::new(
            field,
            "must be a decimal quantity such as 2 or 0.5",
        ));
    }
    Decimal::from_str(value)
        .map_err(|_| Invalid::new(field, "must be a decimal quantity such as 2 or 0.5"))
}

impl TryFrom<&pb::UploadFeeLinesRequest> for Upload {
    type Error = Invalid;

    fn try_from(request: &pb::UploadFeeLinesRequest) -> Result<Self, Invalid> {
        let scope = VisitScope::parse(
            &request.message_id,
            &request.visit_id,
            &request.person_no,
            &request.institution_code,
            &request.operator_id,
        )?;
        if request.lines.is_empty() || request.lines.len() > LINES_PER_REQUEST_MAX {
            return Err(Invalid::new(
                "lines",
                format!("must hold 1 to {LINES_PER_REQUEST_MAX} lines"),
            ));
        }
        let mut lines: Vec<UploadedLine> = Vec::with_capacity(request.lines.len());
        for (index, wire) in request.lines.iter().enumerate() {
            let at = |field: &str| format!("lines[{index}].{field}");
            let serial = text(&wire.serial, &at("serial"), 1, SERIAL_CHARS_MAX)?;
            if lines.iter().any(|line| line.serial == serial) {
                return Err(Invalid::new(at("serial"), "appears twice in the request"));
            }
            let code_ok = !wire.item_code.is_empty()
                && wire.item_code.len() <= ITEM_CODE_CHARS_MAX
                && wire
                    .item_code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !code_ok {
                return Err(Invalid::new(
                    at("item_code"),
                    format!("must be 1 to {ITEM_CODE_CHARS_MAX} letters, digits or '-'"),
                ));
            }
            text(
                &wire.institution_item_code,
                &at("institution_item_code"),
                0,
                CODE_CHARS_MAX,
            )?;
            text(
                &wire.prescription_no,
                &at("prescription_no"),
                0,
                CODE_CHARS_MAX,
            )?;
            let quantity = quantity(&wire.quantity, &at("quantity"))?;
            let unit_price = UnitPrice::parse(&wire.unit_price).map_err(|error| {
                let error = error.within(&at("unit_price"));
                Invalid::new(error.field(), error.to_string())
            })?;
            let amount = Amount::parse(&wire.amount).map_err(|invalid| invalid.at(at("amount")))?;
            let line = FeeLine::new(quantity, unit_price, amount)
                .map_err(|error| Invalid::new(at(error.field()), error.to_string()))?;
            let occurred_at_ms = match &wire.occurred_at {
                None => None,
                Some(at_time) => Some(past_instant_ms(Some(at_time), &at("occurred_at"))?),
            };
            lines.push(UploadedLine {
                serial,
                item_code: wire.item_code.clone(),
                line,
                occurred_at_ms,
            });
        }
        Ok(Upload { scope, lines })
    }
}

/// Which lines a CancelFeeLines cancels.
#[derive(Debug, Clone)]
pub enum LineSelection {
    All,
    Serials(Vec<String>),
}

/// A CancelFeeLines, checked.
#[derive(Debug, Clone)]
pub struct LineCancellation {
    pub scope: VisitScope,
    pub selection: LineSelection,
}

impl TryFrom<&pb::CancelFeeLinesRequest> for LineCancellation {
    type Error = Invalid;

    fn try_from(request: &pb::CancelFeeLinesRequest) -> Result<Self, Invalid> {
        let scope = VisitScope::parse(
            &request.message_id,
            &request.visit_id,
            &request.person_no,
            &request.institution_code,
            &request.operator_id,
        )?;
        let selection = match (request.all_lines, request.serials.len()) {
            (true, 0) => LineSelection::All,
            (true, _) => return Err(Invalid::new("serials", "must be empty with all_lines")),
            (false, 1..=LINES_PER_VISIT_MAX) => {
                for (index, serial) in request.serials.iter().enumerate() {
                    text(serial, &format!("serials[{index}]"), 1, SERIAL_CHARS_MAX)?;
                }
                LineSelection::Serials(request.serials.clone())
            }
            (false, _) => {
                return Err(Invalid::new(
                    "serials",
                    format!("must hold 1 to {LINES_PER_VISIT_MAX} serials, or set all_lines"),
                ));
            }
        };
        Ok(LineCancellation { scope, selection })
    }
}

/// A PreSettle or Settle, checked; they carry the same fields.
#[derive(Debug, Clone)]
pub struct SettleInput {
    pub scope: VisitScope,
    pub credential: Credential,
    pub insurance_type: InsuranceType,
    pub total_amount: Amount,
    pub use_personal_account: bool,
    pub operator_id: String,
}

impl SettleInput {
    #[allow(clippy::too_many_arguments)]
    fn parse(
        message: &str,
        visit_id: &str,
        person: &str,
        credential_value: Option<Credential>,
        insurance_type: i32,
        total_amount: &str,
        use_personal_account: bool,
        institution_code: &str,
        operator_id: &str,
    ) -> Result<Self, Invalid> {
        Ok(SettleInput {
            scope: VisitScope::parse(message, visit_id, person, institution_code, operator_id)?,
            credential: credential(credential_value)?,
            insurance_type: insurance_type_from_wire(insurance_type, "insurance_type")?,
            total_amount: Amount::parse(total_amount)
                .map_err(|invalid| invalid.at("total_amount"))?,
            use_personal_account,
            operator_id: operator_id.to_owned(),
        })
    }
}

impl TryFrom<&pb::PreSettleRequest> for SettleInput {
    type Error = Invalid;

    fn try_from(r: &pb::PreSettleRequest) -> Result<Self, Invalid> {
        SettleInput::parse(
            &r.message_id,
            &r.visit_id,
            &r.person_no,
            r.credential.clone(),
            r.insurance_type,
            &r.total_amount,
            r.use_personal_account,
            &r.institution_code,
            &r.operator_id,
        )
    }
}

impl TryFrom<&pb::SettleRequest> for SettleInput {
    type Error = Invalid;

    fn try_from(r: &pb::SettleRequest) -> Result<Self, Invalid> {
        SettleInput::parse(
            &r.message_id,
            &r.visit_id,
            &r.person_no,
            r.credential.clone(),
            r.insurance_type,
            &r.total_amount,
            r.use_personal_account,
            &r.institution_code,
            &r.operator_id,
        )
    }
}

/// A CancelSettlement, checked.
#[derive(Debug, Clone)]
pub struct CancelInput {
    pub message_id: MessageId,
    pub settlement_id: String,
    pub visit_id: String,
    pub person_no: PersonNo,
    pub institution: InstitutionCode,
    pub reason: String,
    pub operator_id: String,
}

impl TryFrom<&pb::CancelSettlementRequest> for CancelInput {
    type Error = Invalid;

    fn try_from(r: &pb::CancelSettlementRequest) -> Result<Self, Invalid> {
        Ok(CancelInput {
            message_id: message_id(&r.message_id)?,
            settlement_id: parse_id(&r.settlement_id, "settlement_id")?,
            visit_id: parse_id(&r.visit_id, "visit_id")?,
            person_no: person_no(&r.person_no)?,
            institution: institution(&r.institution_code)?,
            reason: text(&r.reason, "reason", 1, TEXT_CHARS_MAX)?,
            operator_id: text(&r.operator_id, "operator_id", 0, CODE_CHARS_MAX)?,
        })
    }
}

/// A ReverseByMessageId, checked.
#[derive(Debug, Clone)]
pub struct ReverseInput {
    pub message_id: MessageId,
    pub original_message_id: MessageId,
    pub institution: InstitutionCode,
    pub reason: String,
    pub operator_id: String,
}

impl TryFrom<&pb::ReverseByMessageIdRequest> for ReverseInput {
    type Error = Invalid;

    fn try_from(r: &pb::ReverseByMessageIdRequest) -> Result<Self, Invalid> {
        if r.original_transaction != pb::ReversibleTransaction::Settle as i32 {
            return Err(Invalid::new(
                "original_transaction",
                "must be REVERSIBLE_TRANSACTION_SETTLE",
            ));
        }
        let original_message_id = MessageId::parse(&r.original_message_id)
            .map_err(|invalid| invalid.at("original_message_id"))?;
        let message_id = message_id(&r.message_id)?;
        if original_message_id == message_id {
            return Err(Invalid::new(
                "message_id",
                "must differ from original_message_id",
            ));
        }
        Ok(ReverseInput {
            message_id,
            original_message_id,
            institution: institution(&r.institution_code)?,
            reason: text(&r.reason, "reason", 0, TEXT_CHARS_MAX)?,
            operator_id: text(&r.operator_id, "operator_id", 0, CODE_CHARS_MAX)?,
        })
    }
}

/// Which settlement a GetSettlement asks for.
#[derive(Debug, Clone)]
pub enum SettlementKey {
    Id(String),
    MessageId(MessageId),
}

/// A GetSettlement, checked.
#[derive(Debug, Clone)]
pub struct GetInput {
    pub key: SettlementKey,
    pub institution: InstitutionCode,
}

impl TryFrom<&pb::GetSettlementRequest> for GetInput {
    type Error = Invalid;

    fn try_from(r: &pb::GetSettlementRequest) -> Result<Self, Invalid> {
        let key = match &r.key {
            Some(pb::get_settlement_request::Key::SettlementId(id)) => {
                SettlementKey::Id(parse_id(id, "settlement_id")?)
            }
            Some(pb::get_settlement_request::Key::MessageId(id)) => SettlementKey::MessageId(
                MessageId::parse(id).map_err(|invalid| invalid.at("message_id"))?,
            ),
            None => {
                return Err(Invalid::new(
                    "key",
                    "a settlement id or a message id is required",
                ));
            }
        };
        Ok(GetInput {
            key,
            institution: institution(&r.institution_code)?,
        })
    }
}

/// A ListSettlements, checked.
#[derive(Debug, Clone)]
pub struct ListInput {
    pub institution: InstitutionCode,
    pub from_date: Date,
    pub to_date: Date,
    /// `None` for every state, else whether cancelled.
    pub cancelled: Option<bool>,
    pub page_size: u32,
    /// Where the previous page ended: settlement time and id.
    pub after: Option<(i64, String)>,
}

impl TryFrom<&pb::ListSettlementsRequest> for ListInput {
    type Error = Invalid;

    fn try_from(r: &pb::ListSettlementsRequest) -> Result<Self, Invalid> {
        let from_date =
            yitong_core::parse_date(&r.from_date).map_err(|invalid| invalid.at("from_date"))?;
        let to_date =
            yitong_core::parse_date(&r.to_date).map_err(|invalid| invalid.at("to_date"))?;
        let days = (to_date - from_date).num_days();
        if !(0..=LIST_RANGE_DAYS_MAX).contains(&days) {
            return Err(Invalid::new(
                "to_date",
                format!("must be from from_date to {LIST_RANGE_DAYS_MAX} days after it"),
            ));
        }
        let cancelled = match pb::SettlementStatus::try_from(r.status) {
            Ok(pb::SettlementStatus::Unspecified) => None,
            Ok(pb::SettlementStatus::Settled) => Some(false),
            Ok(pb::SettlementStatus::Cancelled) => Some(true),
            Err(_) => return Err(Invalid::new("status", "must be a SettlementStatus")),
        };
        if r.page_size == 0 || r.page_size > PAGE_SIZE_MAX {
            return Err(Invalid::new(
                "page_size",
                format!("must be 1 to {PAGE_SIZE_MAX}"),
            ));
        }
        let after =
            match r.page_token.as_str() {
                "" => None,
                token => Some(parse_token(token).ok_or_else(|| {
                    Invalid::new("page_token", "is not a token this service issued")
                })?),
            };
        Ok(ListInput {
            institution: institution(&r.institution_code)?,
            from_date,
            to_date,
            cancelled,
            page_size: r.page_size,
            after,
        })
    }
}

/// A page token: where the page ended, "<settled_at_ms>.<settlement_id>". Opaque to the HIS.
pub fn page_token(settled_at_ms: i64, settlement_id: &str) -> String {
    format!("{settled_at_ms}.{settlement_id}")
}

fn parse_token(token: &str) -> Option<(i64, String)> {
    let (ms, id) = token.split_once('.')?;
    let id = parse_id(id, "page_token").ok()?;
    Some((ms.parse().ok()?, id))
}

/// A CheckBenefit or GetRunningTotals, checked: who asks about whom, for which date. The date
/// is bounded when the node knows today and its look-back (`PersonQuery::check_date`).
#[derive(Debug, Clone)]
pub struct PersonQuery {
    pub person_no: PersonNo,
    pub credential: Credential,
    pub insurance_type: InsuranceType,
    pub institution: InstitutionCode,
    /// The date asked about; `None` means today.
    pub service_date: Option<Date>,
    pub operator_id: String,
    /// The disease of a medical type 14 visit a CheckBenefit asks about; `None` otherwise.
    pub disease_code: Option<String>,
}

impl PersonQuery {
    #[allow(clippy::too_many_arguments)]
    fn parse(
        message: &str,
        person: &str,
        credential_value: Option<Credential>,
        insurance_type: i32,
        institution_code: &str,
        service_date: &str,
        operator_id: &str,
    ) -> Result<Self, Invalid> {
        message_id(message)?;
        text(operator_id, "operator_id", 0, CODE_CHARS_MAX)?;
        let service_date = match service_date {
            "" => None,
            text => {
                Some(yitong_core::parse_date(text).map_err(|invalid| invalid.at("service_date"))?)
            }
        };
        Ok(PersonQuery {
            person_no: person_no(person)?,
            credential: credential(credential_value)?,
            insurance_type: insurance_type_from_wire(insurance_type, "insurance_type")?,
            institution: institution(institution_code)?,
            service_date,
            operator_id: operator_id.to_owned(),
            disease_code: None,
        })
    }

    /// The date asked about, today when none was given: not after `today`, and within the
    /// look-back a visit's start is held to (RegisterVisit's `began_at`).
    pub fn check_date(&self, look_back_days: u32, today: Date) -> Result<Date, Invalid> {
        let Some(date) = self.service_date else {
            return Ok(today);
        };
        if date > today {
            return Err(Invalid::new(
                "service_date",
                format!("must not be after today, {today} (China Standard Time)"),
            ));
        }
        let earliest = today
            .checked_sub_days(chrono::Days::new(u64::from(look_back_days)))
            .unwrap_or(Date::MIN);
        if date < earliest {
            return Err(Invalid::new(
                "service_date",
                format!("must be within the last {look_back_days} days: on or after {earliest}"),
            ));
        }
        Ok(date)
    }
}

/// A CheckBenefit, checked: its medical type must be one RegisterVisit takes; the rest is the
/// query.
impl TryFrom<&pb::CheckBenefitRequest> for PersonQuery {
    type Error = Invalid;

    fn try_from(r: &pb::CheckBenefitRequest) -> Result<Self, Invalid> {
        let (_, disease_code) = visit_kind(r.medical_type, &r.disease_code)?;
        let query = PersonQuery::parse(
            &r.message_id,
            &r.person_no,
            r.credential.clone(),
            r.insurance_type,
            &r.institution_code,
            &r.service_date,
            &r.operator_id,
        )?;
        Ok(PersonQuery {
            disease_code,
            ..query
        })
    }
}

impl TryFrom<&pb::GetRunningTotalsRequest> for PersonQuery {
    type Error = Invalid;

    fn try_from(r: &pb::GetRunningTotalsRequest) -> Result<Self, Invalid> {
        PersonQuery::parse(
            &r.message_id,
            &r.person_no,
            r.credential.clone(),
            r.insurance_type,
            &r.institution_code,
            &r.service_date,
            &r.operator_id,
        )
    }
}

impl TryFrom<&pb::QueryCertificationsRequest> for PersonQuery {
    type Error = Invalid;

    fn try_from(r: &pb::QueryCertificationsRequest) -> Result<Self, Invalid> {
        PersonQuery::parse(
            &r.message_id,
            &r.person_no,
            r.credential.clone(),
            r.insurance_type,
            &r.institution_code,
            &r.service_date,
            &r.operator_id,
        )
    }
}

impl TryFrom<&pb::QueryFilingsRequest> for PersonQuery {
    type Error = Invalid;

    fn try_from(r: &pb::QueryFilingsRequest) -> Result<Self, Invalid> {
        PersonQuery::parse(
            &r.message_id,
            &r.person_no,
            r.credential.clone(),
            r.insurance_type,
            &r.institution_code,
            &r.service_date,
            &r.operator_id,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds of `date` at `hour`:00 China Standard Time.
    fn china_ms(date: &str, hour: u32) -> i64 {
        yitong_core::parse_date(date)
            .expect("date")
            .and_hms_opt(hour, 0, 0)
            .expect("time")
            .and_local_timezone(yitong_core::china())
            .single()
            .expect("one instant")
            .timestamp_millis()
    }

    // Proves the look-back counts calendar days in China Standard Time: with 365 days from
    // 2026-12-05, a visit begun at 00:00 on 2025-12-05 (16:00 the day before in UTC) is in, and
    // one begun a millisecond earlier is refused, naming the first day allowed.
    #[test]
    fn the_look_back_counts_china_days() {
        let today = yitong_core::parse_date("2026-12-05").expect("date");
        let first = china_ms("2025-12-05", 0);
        assert_eq!(check_look_back(first, 365, today), Ok(()));
        let refused = check_look_back(first - 1, 365, today).expect_err("a day too early");
        assert_eq!(
            refused.to_string(),
            "began_at: must be within the last 365 days: on or after 2025-12-05 (China Standard Time)"
        );
        assert_eq!(
            check_look_back(china_ms("2026-12-05", 23), 0, today),
            Ok(())
        );
        assert!(check_look_back(china_ms("2026-12-04", 23), 0, today).is_err());
        assert_eq!(check_look_back(i64::MIN / 2, u32::MAX, today), Ok(()));
    }

    // Proves a line is refused when it arose before its visit began, by its index, and that a
    // line at the visit's start, later, or undated (the visit's start) is within it.
    #[test]
    fn lines_lie_within_their_visit() {
        let began = china_ms("2026-12-05", 9);
        let line = |occurred_at_ms| UploadedLine {
            serial: "1".into(),
            item_code: "001102000010000".into(),
            line: FeeLine::new(Decimal::ONE, Amount::from_fen(100), Amount::from_fen(100))
                .expect("a line"),
            occurred_at_ms,
        };
        let within = [line(None), line(Some(began)), line(Some(began + 3_600_000))];
        assert_eq!(check_within_visit(&within, began), Ok(()));
        let before = [line(Some(began)), line(Some(began - 1))];
        let refused = check_within_visit(&before, began).expect_err("a line before the visit");
        assert_eq!(
            refused.to_string(),
            "lines[1].occurred_at: must not be before the visit began, 2026-12-05T09:00:00+08:00"
        );
    }

    /// Proves the date a benefit check or a running-totals read asks about: today when none is
    /// given, never after today, and within the look-back a visit's start is held to.
    #[test]
    fn a_person_query_s_date_is_bounded() {
        let today = yitong_core::parse_date("2026-12-05").unwrap();
        let query = |date: &str| PersonQuery {
            person_no: PersonNo::parse("3701000000000001").unwrap(),
            credential: Credential::default(),
            insurance_type: InsuranceType::Employee,
            institution: InstitutionCode::parse("H37030000001").unwrap(),
            service_date: (!date.is_empty()).then(|| yitong_core::parse_date(date).unwrap()),
            operator_id: String::new(),
            disease_code: None,
        };
        assert_eq!(query("").check_date(365, today), Ok(today));
        assert_eq!(query("2026-12-05").check_date(0, today), Ok(today));
        assert_eq!(
            query("2025-12-05")
                .check_date(365, today)
                .map(|d| d.to_string()),
            Ok("2025-12-05".to_owned())
        );
        for (date, look_back) in [("2026-12-06", 365), ("2025-12-04", 365), ("2026-12-04", 0)] {
            let refused = query(date).check_date(look_back, today).unwrap_err();
            assert_eq!(refused.field(), "service_date", "{date}");
        }
    }
}
