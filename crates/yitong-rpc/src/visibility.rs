//! What each caller sees of the records a read returns: the one rule, and for each reply type
//! that carries a person, which of its fields are personal.
//!
//! Three checks stand between a caller and a record. The permission matrix (`yitong-auth`)
//! says whether the caller's role may make the call at all; the handler's `require_*` checks
//! ([`Caller`]) say whether the request may name what it names; and this module says, record by
//! record, how much of what the read found goes back: all of it, all of it but the person's
//! number and name, or nothing (the record is left out, as an id that is not there would be).
//!
//! [`sight`] is the rule, written once; every read RPC whose records concern particular cities
//! or a person applies it at its service boundary, through [`Visible`], before the reply leaves.
//! ARCHITECTURE.md ("Who may call what") lays the same rule out as a table per read RPC.

use yitong_core::{InstitutionCode, Owner, PoolCode};
use yitong_proto::ledger::v1 as ledger;
use yitong_proto::settlement::v1 as settlement;

use crate::Caller;

/// How much of one record a caller sees.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Sight {
    /// Every field.
    Whole,
    /// Every field but the person's number and name: what a settlement was, never whose.
    WithoutPerson,
    /// Nothing: the record is left out of the reply, and a request naming it is refused.
    Hidden,
}

/// Who a record concerns: the cities party to it (its treatment and insured city, the cities
/// an account belongs to) and the institution that made it, when one did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parties {
    cities: Vec<PoolCode>,
    institution: Option<InstitutionCode>,
}

impl Parties {
    /// A record of one city's own (its statement, its prepaid position).
    pub fn city(city: PoolCode) -> Parties {
        Parties {
            cities: vec![city],
            institution: None,
        }
    }

    /// The parties of a record given as wire text: a malformed city or institution code is
    /// party to nothing, so it widens no one's sight.
    pub fn of<S: AsRef<str>>(cities: &[S], institution: &str) -> Parties {
        Parties {
            cities: cities
                .iter()
                .filter_map(|city| PoolCode::parse(city.as_ref()).ok())
                .collect(),
            institution: InstitutionCode::parse(institution).ok(),
        }
    }

    /// The cities a ledger account id names: its owner ("370100.fund"), or both cities of an
    /// obligation ("370100->370300.obligation": the insured city that owes and the treatment
    /// city that is owed).
    pub fn of_account(account_id: &str) -> Parties {
        let owner = account_id
            .rsplit_once('.')
            .map_or(account_id, |(owner, _)| owner);
        let cities: Vec<&str> = owner.split("->").collect();
        Parties::of(&cities, "")
    }

    fn join(mut self, other: Parties) -> Parties {
        self.cities.extend(other.cities);
        self.institution = self.institution.or(other.institution);
        self
    }

    fn has_city(&self, city: PoolCode) -> bool {
        self.cities.contains(&city)
    }
}

/// The rule: how much of a record with `parties` the `caller` sees.
///
/// | caller | party to the record | not party to it |
/// |---|---|---|
/// | an institution's HIS | whole (it made the record) | hidden |
/// | a city's bureau | whole (its city is treatment or insured city, or owns the account) | hidden |
/// | the clearing house's staff | whole | whole |
/// | a city's node | whole (what the protocol needs: its own city's records) | hidden |
/// | the clearing house's node, anonymous | hidden | hidden |
/// | an operator | without the person | without the person |
///
/// Operators follow a disputed claim across every city it touched, so they see every record,
/// but never whose it is. The clearing house's staff run reconciliation and clearing for every
/// city, over rows that carry the person's number as the national interface does (psn_no).
pub fn sight(caller: &Caller, parties: &Parties) -> Sight {
    let party = match caller {
        Caller::Institution(code) => parties.institution.as_ref() == Some(code),
        Caller::Bureau(Owner::Pool(city)) | Caller::Node(Owner::Pool(city)) => {
            parties.has_city(*city)
        }
        Caller::Bureau(Owner::ClearingHouse) => return Sight::Whole,
        Caller::Operator(_) => return Sight::WithoutPerson,
        Caller::Node(Owner::ClearingHouse) | Caller::Anonymous => return Sight::Hidden,
    };
    if party { Sight::Whole } else { Sight::Hidden }
}

/// A record a read RPC returns, with what it concerns and what of it is personal.
pub trait Visible {
    /// Who the record concerns.
    fn parties(&self) -> Parties;
    /// Blanks the person's number and name wherever the record carries them.
    fn blank_person(&mut self);
}

/// `record` as `caller` may see it; `None` when it may not see it at all.
pub fn seen_by<T: Visible>(caller: &Caller, mut record: T) -> Option<T> {
    match sight(caller, &record.parties()) {
        Sight::Whole => Some(record),
        Sight::WithoutPerson => {
            record.blank_person();
            Some(record)
        }
        Sight::Hidden => None,
    }
}

/// The records of a reply as `caller` may see them: the ones it may not see left out, in order.
pub fn seen_all_by<T: Visible>(caller: &Caller, records: Vec<T>) -> Vec<T> {
    records
        .into_iter()
        .filter_map(|record| seen_by(caller, record))
        .collect()
}

/// A settlement at the treatment city (GetSettlement, ListSettlements): personal are the
/// person's number and name.
impl Visible for settlement::Settlement {
    fn parties(&self) -> Parties {
        Parties::of(
            &[&self.treatment_city, &self.insured_city],
            &self.institution_code,
        )
    }

    fn blank_person(&mut self) {
        self.person_no.clear();
        self.person_name.clear();
    }
}

/// A transfer in the ledger (LookupTransfers): its parties are the cities its accounts name
/// (for a settlement's, the treatment and the insured city), and the institution of its
/// settlement record; personal is the record's person number.
impl Visible for ledger::TransferRecord {
    fn parties(&self) -> Parties {
        let Some(transfer) = &self.transfer else {
            return Parties::default();
        };
        let accounts = Parties::of_account(&transfer.debit_account_id)
            .join(Parties::of_account(&transfer.credit_account_id));
        match &transfer.settlement {
            Some(record) => accounts.join(Parties::of(
                &[&record.treatment_city, &record.insured_city],
                &record.institution_code,
            )),
            None => accounts,
        }
    }

    fn blank_person(&mut self) {
        if let Some(record) = self
            .transfer
            .as_mut()
            .and_then(|transfer| transfer.settlement.as_mut())
        {
            record.person_no.clear();
        }
    }
}

/// A clearing detail (ListClearingDetails): a row between an insured and a treatment city;
/// personal is the person's number.
impl Visible for ledger::ClearingDetail {
    fn parties(&self) -> Parties {
        Parties::of(
            &[&self.treatment_city, &self.insured_city],
            &self.institution_code,
        )
    }

    fn blank_person(&mut self) {
        self.person_no.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(name: &str) -> Caller {
        name.parse().expect("a caller name")
    }

    // The rule, caller by caller, for a Zibo hospital's settlement of a Jinan patient.
    #[test]
    fn each_caller_sees_what_the_rule_says() {
        let parties = Parties::of(&["370300", "370100"], "H37030000001");
        for (name, expected) in [
            ("institution:H37030000001", Sight::Whole),
            ("institution:H37030000002", Sight::Hidden),
            ("institution:H37010000001", Sight::Hidden),
            ("bureau:370300", Sight::Whole),
            ("bureau:370100", Sight::Whole),
            ("bureau:370500", Sight::Hidden),
            ("bureau:clearing", Sight::Whole),
            ("node:370300", Sight::Whole),
            ("node:370100", Sight::Whole),
            ("node:371600", Sight::Hidden),
            ("node:clearing", Sight::Hidden),
            ("operator:dev", Sight::WithoutPerson),
        ] {
            assert_eq!(sight(&caller(name), &parties), expected, "{name}");
        }
        assert_eq!(sight(&Caller::Anonymous, &parties), Sight::Hidden);
    }

    // An account names its owner, or both cities of an obligation; junk names no one.
    #[test]
    fn accounts_name_their_cities() {
        let zibo: PoolCode = "370300".parse().expect("region code");
        let jinan: PoolCode = "370100".parse().expect("region code");
        assert_eq!(Parties::of_account("370300.fund"), Parties::city(zibo));
        let owed = Parties::of_account("370100->370300.obligation");
        assert!(owed.has_city(jinan) && owed.has_city(zibo));
        assert_eq!(Parties::of_account("junk"), Parties::default());
        assert_eq!(Parties::of_account(""), Parties::default());
    }

    // A transfer's person number goes to its cities' bureaus whole, to an operator blank, and
    // to a third city's bureau not at all.
    #[test]
    fn a_transfer_is_redacted_for_each_caller() {
        let record = ledger::TransferRecord {
            transfer: Some(ledger::Transfer {
                debit_account_id: "370300.advances".into(),
                credit_account_id: "370300.pool".into(),
                settlement: Some(ledger::SettlementRecord {
                    treatment_city: "370300".into(),
                    insured_city: "370300".into(),
                    institution_code: "H37030000001".into(),
                    person_no: "3703000000000001".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let person = |record: &ledger::TransferRecord| {
            record
                .transfer
                .as_ref()
                .and_then(|t| t.settlement.as_ref())
                .map(|s| s.person_no.clone())
        };
        let own = seen_by(&caller("bureau:370300"), record.clone()).expect("seen");
        assert_eq!(person(&own).as_deref(), Some("3703000000000001"));
        let operator = seen_by(&caller("operator:dev"), record.clone()).expect("seen");
        assert_eq!(person(&operator).as_deref(), Some(""));
        assert_eq!(seen_by(&caller("bureau:370100"), record.clone()), None);
        assert_eq!(seen_all_by(&caller("node:370100"), vec![record]), vec![]);
    }
}
