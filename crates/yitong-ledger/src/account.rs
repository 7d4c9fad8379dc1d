//! The chart of accounts: every account's owner, its kind, and the side its balance grows on.
//!
//! An account id names its owner and its kind ("370100.fund", "370100->370300.obligation"), so
//! the chart needs no numbering of its own and a city joining the network brings its accounts
//! with it: the ledger opens [`chart`] of the enabled cities every time it starts.

use std::fmt;

use yitong_core::{Invalid, PoolCode};
use yitong_proto::ledger::v1 as pb;

/// The side of an account an amount is entered on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Side {
    Debit,
    Credit,
}

/// Kind of account, the part of its id after the last '.'.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AccountKind {
    /// The city fund agency's bank account, seen from the house. Debit-normal.
    Bank,
    /// The city's prepaid fund at the house. Credit-normal.
    Fund,
    /// What the city owes its institutions for settlements. Debit-normal.
    Advances,
    /// The city's pooling fund, payer of same-city settlements. Credit-normal.
    Pool,
    /// What an insured city owes a treatment city. Credit-normal.
    Obligation,
}

impl AccountKind {
    pub const ALL: [AccountKind; 5] = [
        AccountKind::Bank,
        AccountKind::Fund,
        AccountKind::Advances,
        AccountKind::Pool,
        AccountKind::Obligation,
    ];

    /// The word in the account id and in the `accounts.kind` column.
    pub fn word(self) -> &'static str {
        match self {
            AccountKind::Bank => "bank",
            AccountKind::Fund => "fund",
            AccountKind::Advances => "advances",
            AccountKind::Pool => "pool",
            AccountKind::Obligation => "obligation",
        }
    }

    pub fn from_word(word: &str) -> Option<AccountKind> {
        AccountKind::ALL
            .into_iter()
            .find(|kind| kind.word() == word)
    }

    /// The side on which the account's balance is positive.
    pub fn normal_side(self) -> Side {
        match self {
            AccountKind::Bank | AccountKind::Advances => Side::Debit,
            AccountKind::Fund | AccountKind::Pool | AccountKind::Obligation => Side::Credit,
        }
    }

    pub fn to_wire(self) -> pb::AccountKind {
        match self {
            AccountKind::Bank => pb::AccountKind::Bank,
            AccountKind::Fund => pb::AccountKind::Fund,
            AccountKind::Advances => pb::AccountKind::Advances,
            AccountKind::Pool => pb::AccountKind::Pool,
            AccountKind::Obligation => pb::AccountKind::Obligation,
        }
    }
}

/// An account of the chart, parsed from its id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AccountId {
    Bank(PoolCode),
    Fund(PoolCode),
    Advances(PoolCode),
    Pool(PoolCode),
    /// What `insured` owes `treatment`; the two always differ.
    Obligation {
        insured: PoolCode,
        treatment: PoolCode,
    },
}

impl AccountId {
    /// Accepts "<city>.bank", "<city>.fund", "<city>.advances", "<city>.pool" and
    /// "<insured>-><treatment>.obligation" with six-digit region codes.
    pub fn parse(text: &str) -> Result<AccountId, Invalid> {
        let malformed = || {
            Invalid::new(
                "",
                "must be an account of the chart, such as 370100.fund or 370100->370300.obligation",
            )
        };
        let (owner, kind) = text.rsplit_once('.').ok_or_else(malformed)?;
        let kind = AccountKind::from_word(kind).ok_or_else(malformed)?;
        if kind == AccountKind::Obligation {
            let (insured, treatment) = owner.split_once("->").ok_or_else(malformed)?;
            let insured = PoolCode::parse(insured).map_err(|_| malformed())?;
            let treatment = PoolCode::parse(treatment).map_err(|_| malformed())?;
            if insured == treatment {
                return Err(Invalid::new(
                    "",
                    "an obligation names two different cities; a same-city settlement uses <city>.pool",
                ));
            }
            return Ok(AccountId::Obligation { insured, treatment });
        }
        let city = PoolCode::parse(owner).map_err(|_| malformed())?;
        Ok(match kind {
            AccountKind::Bank => AccountId::Bank(city),
            AccountKind::Fund => AccountId::Fund(city),
            AccountKind::Advances => AccountId::Advances(city),
            AccountKind::Pool => AccountId::Pool(city),
            AccountKind::Obligation => unreachable!("handled above"),
        })
    }

    pub fn kind(self) -> AccountKind {
        match self {
            AccountId::Bank(_) => AccountKind::Bank,
            AccountId::Fund(_) => AccountKind::Fund,
            AccountId::Advances(_) => AccountKind::Advances,
            AccountId::Pool(_) => AccountKind::Pool,
            AccountId::Obligation { .. } => AccountKind::Obligation,
        }
    }

    /// The owning city; for an obligation, the insured city that owes.
    pub fn city(self) -> PoolCode {
        match self {
            AccountId::Bank(city)
            | AccountId::Fund(city)
            | AccountId::Advances(city)
            | AccountId::Pool(city) => city,
            AccountId::Obligation { insured, .. } => insured,
        }
    }

    /// For an obligation, the treatment city that is owed.
    pub fn counterparty(self) -> Option<PoolCode> {
        match self {
            AccountId::Obligation { treatment, .. } => Some(treatment),
            _ => None,
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountId::Obligation { insured, treatment } => {
                write!(f, "{insured}->{treatment}.obligation")
            }
            other => write!(f, "{}.{}", other.city(), other.kind().word()),
        }
    }
}

/// Every account of `cities`: bank, fund, advances and pool of each, and an obligation for each
/// ordered pair of different cities.
pub fn chart(cities: &[PoolCode]) -> Vec<AccountId> {
    let mut accounts = Vec::with_capacity(cities.len() * (cities.len() + 3));
    for &city in cities {
        accounts.extend([
            AccountId::Bank(city),
            AccountId::Fund(city),
            AccountId::Advances(city),
            AccountId::Pool(city),
        ]);
        for &treatment in cities.iter().filter(|&&other| other != city) {
            accounts.push(AccountId::Obligation {
                insured: city,
                treatment,
            });
        }
    }
    accounts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city(code: &str) -> PoolCode {
        PoolCode::parse(code).unwrap()
    }

    // Proves which account ids parse, and that parsing and printing are inverse.
    #[test]
    fn parse_table() {
        let good = [
            "370100.bank",
            "370100.fund",
            "370300.advances",
            "371600.pool",
            "370100->370300.obligation",
            // A second pool of a city is an owner like any other.
            "370590.fund",
            "370500->370590.obligation",
        ];
        for text in good {
            let id = AccountId::parse(text).unwrap_or_else(|_| panic!("{text}"));
            assert_eq!(id.to_string(), text);
        }
        let bad = [
            "",
            "370100",
            "370100.cash",
            "070100.fund",
            "370100->370100.obligation",
            "370100.obligation",
            "370100->370300.fund",
            "370100.fund.fund",
            " 370100.fund",
        ];
        for text in bad {
            assert!(AccountId::parse(text).is_err(), "{text:?}");
        }
    }

    // Proves the chart of n cities has four accounts each and n(n-1) obligations, all distinct,
    // and that the obligation names the insured city first.
    #[test]
    fn chart_of_four_cities() {
        let cities = [
            city("370100"),
            city("370300"),
            city("370500"),
            city("371600"),
        ];
        let accounts = chart(&cities);
        assert_eq!(accounts.len(), 4 * 4 + 4 * 3);
        let mut ids: Vec<String> = accounts.iter().map(ToString::to_string).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), accounts.len());
        let owed = AccountId::parse("370100->370300.obligation").unwrap();
        assert_eq!(owed.city(), city("370100"));
        assert_eq!(owed.counterparty(), Some(city("370300")));
        assert!(accounts.contains(&owed));
    }

    // Proves the normal side of each kind, as the chart of accounts states it.
    #[test]
    fn normal_sides() {
        use AccountKind::*;
        for (kind, side) in [
            (Bank, Side::Debit),
            (Advances, Side::Debit),
            (Fund, Side::Credit),
            (Pool, Side::Credit),
            (Obligation, Side::Credit),
        ] {
            assert_eq!(kind.normal_side(), side, "{kind:?}");
        }
    }
}
