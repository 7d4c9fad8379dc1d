//! Who is calling: the authenticated party behind a request, and the permission checks that
//! every handler makes against the request's own fields.
//!
//! The server layer (`yitong-auth`) authenticates each call and hands the handler a [`Caller`]
//! in the request's extensions; it also runs the handler inside [`Caller::scope`], so the
//! audit trail, written in the handler's own transaction, knows who made the change without
//! every function passing it down.

use std::fmt;
use std::str::FromStr;

use yitong_core::{InstitutionCode, Owner, PoolCode};

/// The party a call is authenticated as.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Caller {
    /// A designated institution's hospital system (HIS): acts only for that institution.
    Institution(InstitutionCode),
    /// A city's medical insurance bureau, or the clearing house's own staff (the provincial
    /// platform, `Owner::ClearingHouse`): acts only for that owner.
    Bureau(Owner),
    /// A node of the network: a city's services, or the clearing house. Only nodes call the
    /// benefit service and move money in the ledger.
    Node(Owner),
    /// An operator, by name: reads metrics, traces and settlement metadata, changes nothing.
    Operator(String),
    /// No credential was presented.
    Anonymous,
}

/// The role of a caller, without whom it is: what the permission matrix is written in.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Role {
    Institution,
    Bureau,
    Node,
    Operator,
    Anonymous,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Institution => "institution",
            Role::Bureau => "bureau",
            Role::Node => "node",
            Role::Operator => "operator",
            Role::Anonymous => "anonymous",
        }
    }
}

/// Why a caller may not do what it asked; PERMISSION_DENIED on the wire, never a hint of
/// whether the thing asked for exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{caller} may not {action}")]
pub struct Denied {
    pub caller: String,
    pub action: String,
    /// The path of the request field whose value the caller may not give
    /// (`claim.treatment_city`), when one field is to blame; the status then names it in a
    /// `google.rpc.ErrorInfo` (reason `NOT_THE_CALLERS`, metadata `field`).
    pub field: Option<String>,
}

impl From<Denied> for tonic::Status {
    fn from(denied: Denied) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};
        let message = denied.to_string();
        match denied.field {
            None => tonic::Status::permission_denied(message),
            Some(field) => {
                let metadata = std::collections::HashMap::from([("field".to_owned(), field)]);
                let details = ErrorDetails::with_error_info("NOT_THE_CALLERS", "yitong", metadata);
                tonic::Status::with_error_details(tonic::Code::PermissionDenied, message, details)
            }
        }
    }
}

tokio::task_local! {
    static CURRENT: Caller;
}

impl Caller {
    pub fn role(&self) -> Role {
        match self {
            Caller::Institution(_) => Role::Institution,
            Caller::Bureau(_) => Role::Bureau,
            Caller::Node(_) => Role::Node,
            Caller::Operator(_) => Role::Operator,
            Caller::Anonymous => Role::Anonymous,
        }
    }

    /// The city the caller belongs to, if any: an institution's treatment city, a bureau's or a
    /// node's city.
    pub fn city(&self) -> Option<PoolCode> {
        match self {
            Caller::Institution(code) => Some(code.city()),
            Caller::Bureau(Owner::Pool(city)) | Caller::Node(Owner::Pool(city)) => Some(*city),
            _ => None,
        }
    }

    /// The caller of a request, as the server layer authenticated it. A request that did not
    /// pass the layer (which a server never serves) is anonymous, so every check fails closed.
    pub fn of<T>(request: &tonic::Request<T>) -> Caller {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous)
    }

    /// The caller of the request being handled on this task, or `Anonymous` outside a request
    /// (the recovery and expiry sweeps; see [`Caller::current_or_system`]).
    pub fn current() -> Option<Caller> {
        CURRENT.try_with(Caller::clone).ok()
    }

    /// Runs `future` as `self`'s request: [`Caller::current`] answers `self` inside it.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    fn denied(&self, action: impl fmt::Display) -> Denied {
        Denied {
            caller: self.to_string(),
            action: action.to_string(),
            field: None,
        }
    }

    /// Refuses unless the caller is the HIS of the institution a request names by its code,
    /// before the request is read any further: a caller learns nothing of a request it may not
    /// make, not even whether it was well formed.
    pub fn require_institution_code(&self, code: &str) -> Result<(), Denied> {
        match self {
            Caller::Institution(own) if own.as_str() == code => Ok(()),
            _ => Err(self.denied(format_args!("act for institution {code:?}"))),
        }
    }

    /// Refuses unless `city`, which the request gives in `field`, is the caller's own city: a
    /// node acts for its own city only, never as another (a treatment city of a claim, the city
    /// of an institution it asks for). Checked once the field has parsed, so a malformed value
    /// is still INVALID_ARGUMENT; the refusal names the field.
    pub fn require_own_city(&self, field: &str, city: PoolCode) -> Result<(), Denied> {
        if self.city() == Some(city) {
            return Ok(());
        }
        Err(Denied {
            field: Some(field.to_owned()),
            ..self.denied(format_args!("act as city {city} ({field})"))
        })
    }

    /// Refuses unless the caller is `owner`'s bureau.
    pub fn require_bureau(&self, owner: Owner) -> Result<(), Denied> {
        match self {
            Caller::Bureau(own) if *own == owner => Ok(()),
            _ => Err(self.denied(format_args!("act as the bureau of {owner}"))),
        }
    }
}

impl fmt::Display for Caller {
    /// The canonical name of a caller, as written in key files, certificates and the audit
    /// trail: `institution:H37030000001`, `bureau:370100`, `node:clearing`, `operator:wang`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Institution(code) => write!(f, "institution:{code}"),
            Caller::Bureau(owner) => write!(f, "bureau:{owner}"),
            Caller::Node(owner) => write!(f, "node:{owner}"),
            Caller::Operator(name) => write!(f, "operator:{name}"),
            Caller::Anonymous => f.write_str("anonymous"),
        }
    }
}

/// A caller name that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a caller (institution:<code>, bureau:<city|clearing>, node:<city|clearing>, operator:<name>)"
)]
pub struct BadCaller(pub String);

impl FromStr for Caller {
    type Err = BadCaller;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadCaller(text.to_owned());
        let owner = |rest: &str| -> Result<Owner, BadCaller> {
            if rest == "clearing" {
                Ok(Owner::ClearingHouse)
            } else {
                PoolCode::parse(rest).map(Owner::Pool).map_err(|_| bad())
            }
        };
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        match kind {
            "institution" => InstitutionCode::parse(rest)
                .map(Caller::Institution)
                .map_err(|_| bad()),
            "bureau" => owner(rest).map(Caller::Bureau),
            "node" => owner(rest).map(Caller::Node),
            "operator"
                if !rest.is_empty()
                    && rest.len() <= 64
                    && rest
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                Ok(Caller::Operator(rest.to_owned()))
            }
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every caller's name reads back as the same caller, and junk is refused.
    #[test]
    fn names_round_trip() {
        for name in [
            "institution:H37030000001",
            "bureau:370100",
            "bureau:clearing",
            "node:371600",
            "node:370590",
            "node:clearing",
            "operator:wang.li",
        ] {
            let caller: Caller = name.parse().unwrap();
            assert_eq!(caller.to_string(), name);
        }
        for bad in [
            "",
            "anonymous",
            "node:",
            "node:099999",
            "institution:X1",
            "operator:",
            "operator:a b",
            "root:1",
        ] {
            assert!(bad.parse::<Caller>().is_err(), "{bad} parsed");
        }
    }

    // An institution acts for itself only; a bureau for its own owner only.
    #[test]
    fn checks_compare_with_the_request() {
        let his = Caller::Institution(InstitutionCode::parse("H37030000001").unwrap());
        assert!(his.require_institution_code("H37030000002").is_err());
        assert!(his.require_institution_code("H37030000001").is_ok());
        assert!(Caller::Anonymous.require_institution_code("").is_err());
        let zibo = PoolCode::parse("370300").unwrap();
        let jinan = PoolCode::parse("370100").unwrap();
        let bureau = Caller::Bureau(Owner::Pool(zibo));
        assert!(bureau.require_bureau(Owner::Pool(zibo)).is_ok());
        assert!(bureau.require_bureau(Owner::Pool(jinan)).is_err());
        assert!(his.require_bureau(Owner::Pool(zibo)).is_err());
    }

    // A node gives only its own city in a field that must be the caller's, and the refusal
    // names the field.
    #[test]
    fn a_node_acts_as_its_own_city_only() {
        let jinan = PoolCode::parse("370100").unwrap();
        let dongying = PoolCode::parse("370500").unwrap();
        let node: Caller = "node:370100".parse().unwrap();
        assert!(node.require_own_city("claim.treatment_city", jinan).is_ok());
        let denied = node
            .require_own_city("claim.treatment_city", dongying)
            .unwrap_err();
        assert_eq!(denied.field.as_deref(), Some("claim.treatment_city"));
        let status = tonic::Status::from(denied);
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status.message().contains("claim.treatment_city"),
            "{status:?}"
        );
        let operator: Caller = "operator:dev".parse().unwrap();
        assert!(
            operator
                .require_own_city("claim.treatment_city", jinan)
                .is_err()
        );
    }
}
