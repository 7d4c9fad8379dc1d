//! Balances: an account's four sums, and a city's prepaid position.
//!
//! An account's debits are the sums of the debit legs of the entries that debit it; its
//! credits, of the credit legs of the entries that credit it. The appender adds each entry's
//! legs to its two accounts' stored sums in the transaction that inserts it, so a balance is
//! one row to read. VerifyJournal sums the journal again and compares: each entry balances, so
//! over any set of entries the debit legs sum to the credit legs, and sums that do not balance,
//! or differ from the stored ones, mean a row was altered (the pairing of the assertion made
//! before writing).

use yitong_core::Amount;
use yitong_proto::ledger::v1 as pb;

use crate::account::{AccountId, Side};
use crate::journal::Legs;

/// An account's sums, in fen.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Balance {
    pub debits_pending_fen: i64,
    pub debits_posted_fen: i64,
    pub credits_pending_fen: i64,
    pub credits_posted_fen: i64,
}

/// Sums that cannot come from balanced, well-formed entries.
#[derive(Debug, thiserror::Error)]
#[error("the journal entries of account {account} do not add up: {what}")]
pub struct Unbalanced {
    pub account: String,
    pub what: &'static str,
}

impl Balance {
    /// An account's balance from the legs summed over the entries that debit it (`debiting`)
    /// and over those that credit it (`crediting`); `None` when there are none.
    pub fn from_sums(
        account: &str,
        debiting: Option<Legs>,
        crediting: Option<Legs>,
    ) -> Result<Balance, Unbalanced> {
        let (debiting, crediting) = (debiting.unwrap_or_default(), crediting.unwrap_or_default());
        let unbalanced = |what| Unbalanced {
            account: account.to_owned(),
            what,
        };
        if !debiting.balanced() {
            return Err(unbalanced("the entries debiting it do not balance"));
        }
        if !crediting.balanced() {
            return Err(unbalanced("the entries crediting it do not balance"));
        }
        let balance = Balance {
            debits_pending_fen: debiting.debit_pending_fen,
            debits_posted_fen: debiting.debit_posted_fen,
            credits_pending_fen: crediting.credit_pending_fen,
            credits_posted_fen: crediting.credit_posted_fen,
        };
        // A pending amount is held once and released once, so no sum goes below zero.
        if balance.debits_pending_fen < 0 || balance.credits_pending_fen < 0 {
            return Err(unbalanced("more released than was held pending"));
        }
        Ok(balance)
    }

    /// Posted balance on the `normal` side: what the account holds (credit-normal) or is owed
    /// (debit-normal); may be negative.
    pub fn posted(&self, normal: Side) -> i64 {
        match normal {
            Side::Credit => self.credits_posted_fen - self.debits_posted_fen,
            Side::Debit => self.debits_posted_fen - self.credits_posted_fen,
        }
    }

    /// Balance on the `normal` side counting pending amounts as if posted.
    pub fn with_pending(&self, normal: Side) -> i64 {
        let credits = self.credits_posted_fen + self.credits_pending_fen;
        let debits = self.debits_posted_fen + self.debits_pending_fen;
        match normal {
            Side::Credit => credits - debits,
            Side::Debit => debits - credits,
        }
    }

    pub fn to_wire(&self, account: AccountId) -> pb::Account {
        let yuan = |fen| Amount::from_fen(fen).to_string();
        pb::Account {
            id: account.to_string(),
            kind: account.kind().to_wire() as i32,
            city: account.city().to_string(),
            counterparty_city: account
                .counterparty()
                .map(|city| city.to_string())
                .unwrap_or_default(),
            debits_pending: yuan(self.debits_pending_fen),
            debits_posted: yuan(self.debits_posted_fen),
            credits_pending: yuan(self.credits_pending_fen),
            credits_posted: yuan(self.credits_posted_fen),
            balance: yuan(self.posted(account.kind().normal_side())),
        }
    }
}

/// A city's prepaid position: its fund's posted balance less what it owes on its obligations,
/// pending and posted, not yet cleared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Prepaid {
    pub fund_balance_fen: i64,
    pub outstanding_fen: i64,
    pub threshold_fen: i64,
}

impl Prepaid {
    /// From the city's fund and its obligation accounts (those where it is the insured city).
    pub fn new(fund: &Balance, obligations: &[Balance], threshold_fen: i64) -> Prepaid {
        Prepaid {
            fund_balance_fen: fund.posted(Side::Credit),
            outstanding_fen: obligations
                .iter()
                .map(|obligation| obligation.with_pending(Side::Credit))
                .sum(),
            threshold_fen,
        }
    }

    pub fn available_fen(&self) -> i64 {
        self.fund_balance_fen - self.outstanding_fen
    }

    pub fn below_threshold(&self) -> bool {
        self.available_fen() < self.threshold_fen
    }

    /// Whether the entries between `before` and this position took the city below its
    /// threshold: the moment the ledger warns. Staying below, or going below and back up, is
    /// not a new fall.
    pub fn fell_below(&self, before: &Prepaid) -> bool {
        self.below_threshold() && !before.below_threshold()
    }

    pub fn to_wire(&self, city: &str) -> pb::PrepaidFund {
        let yuan = |fen| Amount::from_fen(fen).to_string();
        pb::PrepaidFund {
            city: city.to_owned(),
            fund_balance: yuan(self.fund_balance_fen),
            outstanding: yuan(self.outstanding_fen),
            available: yuan(self.available_fen()),
            low_balance_threshold: yuan(self.threshold_fen),
            below_threshold: self.below_threshold(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Event;

    /// Sums the legs of `events` (each an event and an amount of a transfer created pending
    /// or not), as the journal's SUM does.
    fn sum(events: &[(Event, i64, bool)]) -> Legs {
        events
            .iter()
            .fold(Legs::default(), |total, &(event, amount, pending)| {
                let legs = Legs::of(event, amount, pending);
                Legs {
                    debit_pending_fen: total.debit_pending_fen + legs.debit_pending_fen,
                    debit_posted_fen: total.debit_posted_fen + legs.debit_posted_fen,
                    credit_pending_fen: total.credit_pending_fen + legs.credit_pending_fen,
                    credit_posted_fen: total.credit_posted_fen + legs.credit_posted_fen,
                }
            })
    }

    // Proves the balance arithmetic over a fund's life: deposits posted, a settlement pending
    // then posted, another pending then voided, one still pending, a withdrawal.
    #[test]
    fn a_fund_through_its_events() {
        use Event::*;
        // Entries crediting 370100.fund: two deposits.
        let crediting = sum(&[(Created, 100_000, false), (Created, 50_000, false)]);
        // Entries debiting 370100.fund: a withdrawal, and pending amounts (say clearing) held,
        // posted, voided and still held.
        let debiting = sum(&[
            (Created, 20_000, false),
            (Created, 7_000, true),
            (Posted, 7_000, true),
            (Created, 3_000, true),
            (Voided, 3_000, true),
            (Created, 1_100, true),
        ]);
        let fund = Balance::from_sums("370100.fund", Some(debiting), Some(crediting)).unwrap();
        assert_eq!(
            fund,
            Balance {
                debits_pending_fen: 1_100,
                debits_posted_fen: 27_000,
                credits_pending_fen: 0,
                credits_posted_fen: 150_000,
            }
        );
        assert_eq!(fund.posted(Side::Credit), 123_000);
        assert_eq!(fund.posted(Side::Debit), -123_000);
        assert_eq!(fund.with_pending(Side::Credit), 121_900);
        assert_eq!(
            fund.to_wire(AccountId::parse("370100.fund").unwrap())
                .balance,
            "1230.00"
        );
    }

    // Proves that sums which cannot come from balanced entries are refused as read.
    #[test]
    fn unbalanced_sums_are_refused() {
        let mut altered = sum(&[(Event::Created, 500, false)]);
        altered.credit_posted_fen += 1;
        assert!(Balance::from_sums("370100.fund", Some(altered), None).is_err());
        assert!(Balance::from_sums("370100.fund", None, Some(altered)).is_err());
        let over_released = sum(&[(Event::Voided, 500, true)]);
        assert!(Balance::from_sums("370100.fund", Some(over_released), None).is_err());
        assert_eq!(
            Balance::from_sums("370100.fund", None, None).unwrap(),
            Balance::default()
        );
    }

    // Proves the prepaid position: the fund less what the city owes, pending included, and the
    // threshold test.
    #[test]
    fn prepaid_position() {
        let fund = Balance {
            credits_posted_fen: 100_000,
            ..Balance::default()
        };
        let owed_to_zibo = Balance {
            credits_posted_fen: 60_000,
            credits_pending_fen: 10_000,
            debits_pending_fen: 5_000,
            ..Balance::default()
        };
        let owed_to_binzhou = Balance {
            credits_posted_fen: 50_000,
            debits_posted_fen: 20_000,
            ..Balance::default()
        };
        let prepaid = Prepaid::new(&fund, &[owed_to_zibo, owed_to_binzhou], 0);
        assert_eq!(prepaid.outstanding_fen, 65_000 + 30_000);
        assert_eq!(prepaid.available_fen(), 5_000);
        assert!(!prepaid.below_threshold());
        assert!(Prepaid::new(&fund, &[owed_to_zibo, owed_to_binzhou], 5_001).below_threshold());
        assert_eq!(prepaid.to_wire("370100").available, "50.00");
    }

    // Proves the warning fires once, when a position crosses its threshold downwards, and
    // not while it stays below or when it climbs back.
    #[test]
    fn a_fall_below_the_threshold_is_noticed_once() {
        let at = |available_fen| Prepaid {
            fund_balance_fen: available_fen,
            outstanding_fen: 0,
            threshold_fen: 50_000_000,
        };
        assert!(at(49_999_999).fell_below(&at(50_000_000)));
        assert!(at(-1).fell_below(&at(60_000_000)));
        assert!(!at(-1).fell_below(&at(49_999_999)), "already below");
        assert!(!at(50_000_000).fell_below(&at(-1)), "a top-up is no fall");
        assert!(
            !at(50_000_000).fell_below(&at(60_000_000)),
            "at the threshold is not below"
        );
    }
}
