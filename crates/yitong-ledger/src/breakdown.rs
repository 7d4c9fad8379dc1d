//! The breakdown of a set of settlement rows by clearing type (national clr_type) and of their
//! fund pay by fund type and disease (setldetail fund_pay_type), as daily reconciliation (3201)
//! and the monthly clearing statement carry it.
//!
//! # Where the lines come from
//!
//! Nothing is stored for them: each is a GROUP BY over what the journal already holds with
//! every settlement record, read with the totals it breaks down. Clearing-type lines group by
//! the record's `clearing_type`. Fund lines group by the record's insurance type and its stored
//! breakdown text (`fund_payments`, [`crate::transfer::fund_payments_text`]): the ordinary rows,
//! whose text is empty, collapse into one group per insurance type and count as that type's
//! pooling fund (what migration 0013 says the empty text means, so rows booked before it
//! reconcile unchanged); rows that spell out a chronic disease's quota group by their text, which
//! is parsed once per group and multiplied by its row count. The groups are folded one at a time
//! as the database streams them, so the memory held is the lines, never the rows.
//!
//! Both sides are checked: the lines the ledger reads must sum to the totals it read (else the
//! journal is corrupt), and a submitter's lines must sum to its own totals (else its request is
//! invalid).

use std::collections::BTreeMap;

use yitong_core::{Amount, Invalid};
use yitong_proto::ledger::v1 as pb;

use crate::LedgerError;
use crate::reconcile::Totals;
use crate::transfer::{parse_fund_payments_text, pool_fund_type};

/// Most lines of each breakdown a submitter may send.
pub const LINES_MAX: usize = 64;
/// Longest fund type code, in characters (the national codes have six digits).
const FUND_PAY_TYPE_CHARS_MAX: usize = 16;
/// Longest disease code, in characters, as a settlement record allows.
const DISEASE_CODE_CHARS_MAX: usize = 32;

/// A fund line's key: (national fund_pay_type, disease code; empty for the ordinary cap).
pub(crate) type FundKey = (String, String);

/// The lines of a set of rows: totals per clearing type, net fund pay per fund type and disease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Breakdown {
    /// national clr_type -> the totals of its rows; a type without rows has no entry.
    pub clearing: BTreeMap<i64, Totals>,
    /// Net fund pay in fen; a line that nets to zero is dropped by [`Breakdown::settled`].
    pub funds: BTreeMap<FundKey, i64>,
}

impl Breakdown {
    /// Adds one group of rows of the same insurance type and stored breakdown text: `rows` rows
    /// whose fund pay sums to `fund_fen`.
    pub(crate) fn add_fund_group(
        &mut self,
        insurance_type: i64,
        text: &str,
        rows: i64,
        fund_fen: i64,
    ) -> Result<(), LedgerError> {
        let corrupt = || {
            LedgerError::Corrupt(format!(
                "a stored fund breakdown does not read ({insurance_type}, {text:?})"
            ))
        };
        let lines = parse_fund_payments_text(text).ok_or_else(corrupt)?;
        if lines.is_empty() {
            if fund_fen != 0 {
                let pool = pool_fund_type(insurance_type).ok_or_else(corrupt)?;
                *self
                    .funds
                    .entry((pool.to_owned(), String::new()))
                    .or_default() += fund_fen;
            }
            return Ok(());
        }
        // Every row of the group holds the same lines, so the group's fund pay is the lines'
        // sum times its rows: the pairing of the check made when each record was booked.
        let mut per_row = 0_i64;
        for line in &lines {
            let amount = line.amount.fen().checked_mul(rows).ok_or_else(corrupt)?;
            *self
                .funds
                .entry((line.fund_pay_type.clone(), line.disease_code.clone()))
                .or_default() += amount;
            per_row += line.amount.fen();
        }
        if per_row.checked_mul(rows) != Some(fund_fen) {
            return Err(corrupt());
        }
        Ok(())
    }

    /// Drops the fund lines that net to zero (a settlement and its cancellation), which read
    /// the same as a line never there.
    pub(crate) fn settled(mut self) -> Breakdown {
        self.funds.retain(|_, fen| *fen != 0);
        self
    }

    /// Whether the lines sum exactly to `totals`: every figure for the clearing types, fund pay
    /// for the fund lines.
    pub(crate) fn sums_to(&self, totals: &Totals) -> bool {
        let clearing = self
            .clearing
            .values()
            .fold(Totals::default(), |sum, line| sum.plus(line));
        clearing == *totals && self.funds.values().sum::<i64>() == totals.fund_fen
    }

    pub(crate) fn clearing_wire(&self) -> Vec<pb::ClearingTypeTotals> {
        self.clearing
            .iter()
            .map(|(clearing_type, totals)| {
                let wire = totals.to_wire();
                pb::ClearingTypeTotals {
                    clearing_type: i32::try_from(*clearing_type).unwrap_or_default(),
                    count: wire.count,
                    total_amount: wire.total_amount,
                    fund_pay: wire.fund_pay,
                    account_pay: wire.account_pay,
                    cash_pay: wire.cash_pay,
                }
            })
            .collect()
    }

    pub(crate) fn funds_wire(&self) -> Vec<pb::FundTypeTotal> {
        self.funds
            .iter()
            .map(|((fund_pay_type, disease_code), fen)| pb::FundTypeTotal {
                fund_pay_type: fund_pay_type.clone(),
                disease_code: disease_code.clone(),
                amount: Amount::from_fen(*fen).to_string(),
            })
            .collect()
    }
}

/// The breakdowns a submitter sent with its totals; `None` for one it left empty (not
/// compared).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Submitted {
    pub clearing: Option<BTreeMap<i64, Totals>>,
    pub funds: Option<BTreeMap<FundKey, i64>>,
}

impl Submitted {
    /// Parses and checks the submitted lines against the submitted `totals`. Field paths are
    /// the request's ("totals.clearing_types[2].fund_pay").
    pub(crate) fn parse(
        wire: &pb::ReconciliationTotals,
        totals: &Totals,
    ) -> Result<Submitted, Invalid> {
        for (name, len) in [
            ("clearing_types", wire.clearing_types.len()),
            ("fund_types", wire.fund_types.len()),
        ] {
            if len > LINES_MAX {
                return Err(Invalid::new(
                    format!("totals.{name}"),
                    format!("must hold at most {LINES_MAX} lines"),
                ));
            }
        }
        let amount = |text: &str, field: String| {
            Amount::parse_signed(text)
                .map(Amount::fen)
                .map_err(|invalid| invalid.at(field))
        };
        let mut clearing = BTreeMap::new();
        for (index, line) in wire.clearing_types.iter().enumerate() {
            let field = |name: &str| format!("totals.clearing_types[{index}].{name}");
            let clearing_type = match line.clearing_type {
                11 | 14 | 41 => i64::from(line.clearing_type),
                _ => {
                    return Err(Invalid::new(
                        field("clearing_type"),
                        "must be OUTPATIENT (11), CHRONIC_DISEASE (14) or PHARMACY (41)",
                    ));
                }
            };
            let totals = Totals {
                count: line.count,
                total_fen: amount(&line.total_amount, field("total_amount"))?,
                fund_fen: amount(&line.fund_pay, field("fund_pay"))?,
                account_fen: amount(&line.account_pay, field("account_pay"))?,
                cash_fen: amount(&line.cash_pay, field("cash_pay"))?,
            };
            if clearing.insert(clearing_type, totals).is_some() {
                return Err(Invalid::new(
                    field("clearing_type"),
                    "repeats an earlier line's clearing type",
                ));
            }
        }
        let mut funds = BTreeMap::new();
        for (index, line) in wire.fund_types.iter().enumerate() {
            let field = |name: &str| format!("totals.fund_types[{index}].{name}");
            let code_ok = |text: &str, max: usize| {
                text.chars().count() <= max
                    && text
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'.')
            };
            if line.fund_pay_type.is_empty()
                || !code_ok(&line.fund_pay_type, FUND_PAY_TYPE_CHARS_MAX)
            {
                return Err(Invalid::new(
                    field("fund_pay_type"),
                    format!(
                        "must be 1 to {FUND_PAY_TYPE_CHARS_MAX} ASCII letters, digits and dots"
                    ),
                ));
            }
            if !code_ok(&line.disease_code, DISEASE_CODE_CHARS_MAX) {
                return Err(Invalid::new(
                    field("disease_code"),
                    format!(
                        "must be empty or at most {DISEASE_CODE_CHARS_MAX} ASCII letters, \
                         digits and dots"
                    ),
                ));
            }
            let fen = amount(&line.amount, field("amount"))?;
            let key = (line.fund_pay_type.clone(), line.disease_code.clone());
            if funds.insert(key, fen).is_some() {
                return Err(Invalid::new(
                    field("disease_code"),
                    "repeats an earlier line's fund type and disease",
                ));
            }
        }
        let submitted = Submitted {
            clearing: (!clearing.is_empty()).then_some(clearing),
            funds: (!funds.is_empty()).then_some(funds),
        };
        if let Some(clearing) = &submitted.clearing {
            let sum = clearing
                .values()
                .fold(Totals::default(), |sum, line| sum.plus(line));
            if sum != *totals {
                return Err(Invalid::new(
                    "totals.clearing_types",
                    "must sum exactly to the totals, figure by figure",
                ));
            }
        }
        if let Some(funds) = &submitted.funds
            && funds.values().sum::<i64>() != totals.fund_fen
        {
            return Err(Invalid::new(
                "totals.fund_types",
                "must sum exactly to totals.fund_pay",
            ));
        }
        Ok(submitted)
    }

    /// The submitted lines on the wire, as received.
    pub(crate) fn to_breakdown(&self) -> Breakdown {
        Breakdown {
            clearing: self.clearing.clone().unwrap_or_default(),
            funds: self.funds.clone().unwrap_or_default(),
        }
    }

    /// The lines in which the submission differs from the ledger's `ledger`, clearing types
    /// first, then fund lines, each in its key's order; a line one side lacks reads as zero
    /// there. A breakdown the submitter left empty is not compared.
    pub(crate) fn line_breaks(&self, ledger: &Breakdown) -> Vec<pb::ReconciliationLineBreak> {
        let mut breaks = Vec::new();
        if let Some(clearing) = &self.clearing {
            let types: std::collections::BTreeSet<i64> = clearing
                .keys()
                .chain(ledger.clearing.keys())
                .copied()
                .collect();
            for clearing_type in types {
                let submitted = clearing.get(&clearing_type).copied().unwrap_or_default();
                let theirs = ledger
                    .clearing
                    .get(&clearing_type)
                    .copied()
                    .unwrap_or_default();
                let figures = submitted.differences(&theirs);
                if !figures.is_empty() {
                    breaks.push(pb::ReconciliationLineBreak {
                        clearing_type: i32::try_from(clearing_type).unwrap_or_default(),
                        mismatched_figures: figures.into_iter().map(|f| f as i32).collect(),
                        ..Default::default()
                    });
                }
            }
        }
        if let Some(funds) = &self.funds {
            let keys: std::collections::BTreeSet<&FundKey> =
                funds.keys().chain(ledger.funds.keys()).collect();
            for key in keys {
                let submitted = funds.get(key).copied().unwrap_or_default();
                let theirs = ledger.funds.get(key).copied().unwrap_or_default();
                if submitted != theirs {
                    breaks.push(pb::ReconciliationLineBreak {
                        fund_pay_type: key.0.clone(),
                        disease_code: key.1.clone(),
                        mismatched_figures: vec![pb::ReconciliationFigure::FundPay as i32],
                        ..Default::default()
                    });
                }
            }
        }
        breaks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(count: u64, fund_fen: i64, cash_fen: i64) -> Totals {
        Totals {
            count,
            total_fen: fund_fen + cash_fen,
            fund_fen,
            account_fen: 0,
            cash_fen,
        }
    }

    // Proves the fund lines of stored groups: an empty text is the pooling fund of its
    // insurance type, a spelled-out text counts once per row, lines netting to zero go, and a
    // group whose fund pay disagrees with its text is corrupt.
    #[test]
    fn fund_groups_fold_into_lines() {
        let mut breakdown = Breakdown::default();
        breakdown.add_fund_group(310, "", 3, 9_000).unwrap();
        breakdown.add_fund_group(390, "", 1, 0).unwrap();
        breakdown
            .add_fund_group(310, "310100/I10/700;310100/M1/300", 2, 2_000)
            .unwrap();
        breakdown
            .add_fund_group(390, "390100/E11/-500", 1, -500)
            .unwrap();
        breakdown
            .add_fund_group(390, "390100/E11/500", 1, 500)
            .unwrap();
        let breakdown = breakdown.settled();
        let lines: Vec<(&str, &str, i64)> = breakdown
            .funds
            .iter()
            .map(|((fund, disease), fen)| (fund.as_str(), disease.as_str(), *fen))
            .collect();
        assert_eq!(
            lines,
            [
                ("310100", "", 9_000),
                ("310100", "I10", 1_400),
                ("310100", "M1", 600)
            ]
        );
        assert!(matches!(
            Breakdown::default().add_fund_group(310, "310100/I10/700", 2, 1_000),
            Err(LedgerError::Corrupt(_))
        ));
        assert!(matches!(
            Breakdown::default().add_fund_group(311, "", 1, 100),
            Err(LedgerError::Corrupt(_))
        ));
    }

    fn wire_totals(edit: impl FnOnce(&mut pb::ReconciliationTotals)) -> pb::ReconciliationTotals {
        let mut wire = pb::ReconciliationTotals {
            count: 3,
            total_amount: "100.00".into(),
            fund_pay: "70.00".into(),
            account_pay: "0.00".into(),
            cash_pay: "30.00".into(),
            clearing_types: vec![
                pb::ClearingTypeTotals {
                    clearing_type: 11,
                    count: 2,
                    total_amount: "60.00".into(),
                    fund_pay: "40.00".into(),
                    account_pay: "0.00".into(),
                    cash_pay: "20.00".into(),
                },
                pb::ClearingTypeTotals {
                    clearing_type: 14,
                    count: 1,
                    total_amount: "40.00".into(),
                    fund_pay: "30.00".into(),
                    account_pay: "0.00".into(),
                    cash_pay: "10.00".into(),
                },
            ],
            fund_types: vec![
                pb::FundTypeTotal {
                    fund_pay_type: "310100".into(),
                    disease_code: String::new(),
                    amount: "40.00".into(),
                },
                pb::FundTypeTotal {
                    fund_pay_type: "310100".into(),
                    disease_code: "I10".into(),
                    amount: "30.00".into(),
                },
            ],
        };
        edit(&mut wire);
        wire
    }

    fn parse(wire: &pb::ReconciliationTotals) -> Result<Submitted, Invalid> {
        let totals = Totals::parse(Some(wire)).expect("the totals parse");
        Submitted::parse(wire, &totals)
    }

    // Proves a submission's lines are checked: they must sum to its totals, name a clearing type,
    // not repeat; empty lists are "not broken down".
    #[test]
    fn submitted_lines_are_checked() {
        let submitted = parse(&wire_totals(|_| {})).expect("valid lines");
        assert_eq!(submitted.clearing.as_ref().map(BTreeMap::len), Some(2));
        assert_eq!(submitted.funds.as_ref().map(BTreeMap::len), Some(2));
        let bare = parse(&wire_totals(|w| {
            w.clearing_types.clear();
            w.fund_types.clear();
        }))
        .unwrap();
        assert_eq!(bare, Submitted::default());
        let field = |edit: fn(&mut pb::ReconciliationTotals)| {
            parse(&wire_totals(edit)).unwrap_err().field().to_owned()
        };
        assert_eq!(
            field(|w| w.clearing_types[1].cash_pay = "9.99".into()),
            "totals.clearing_types"
        );
        assert_eq!(
            field(|w| w.fund_types[1].amount = "29.99".into()),
            "totals.fund_types"
        );
        assert_eq!(
            field(|w| w.clearing_types[1].clearing_type = 21),
            "totals.clearing_types[1].clearing_type"
        );
        assert_eq!(
            field(|w| w.clearing_types[1].clearing_type = 11),
            "totals.clearing_types[1].clearing_type"
        );
        assert_eq!(
            field(|w| w.fund_types[1].disease_code = String::new()),
            "totals.fund_types[1].disease_code"
        );
        assert_eq!(
            field(|w| w.fund_types[0].fund_pay_type = String::new()),
            "totals.fund_types[0].fund_pay_type"
        );
        assert_eq!(
            field(|w| w.fund_types[0].amount = "x".into()),
            "totals.fund_types[0].amount"
        );
    }

    // Proves a break is named by its line, a line only one side holds reads as zero on the
    // other, and a breakdown left out is not compared.
    #[test]
    fn breaks_are_named_by_line() {
        let submitted = parse(&wire_totals(|_| {})).unwrap();
        let mut ledger = submitted.to_breakdown();
        assert!(submitted.line_breaks(&ledger).is_empty());
        ledger.clearing.insert(41, totals(1, 0, 0));
        ledger
            .funds
            .remove(&("310100".to_owned(), "I10".to_owned()));
        ledger.funds.insert(("310100".into(), "E11".into()), 3_000);
        let breaks = submitted.line_breaks(&ledger);
        let named: Vec<(i32, &str, &str, Vec<i32>)> = breaks
            .iter()
            .map(|b| {
                (
                    b.clearing_type,
                    b.fund_pay_type.as_str(),
                    b.disease_code.as_str(),
                    b.mismatched_figures.clone(),
                )
            })
            .collect();
        let count = pb::ReconciliationFigure::Count as i32;
        let fund = pb::ReconciliationFigure::FundPay as i32;
        assert_eq!(
            named,
            [
                (41, "", "", vec![count]),
                (0, "310100", "E11", vec![fund]),
                (0, "310100", "I10", vec![fund]),
            ]
        );
        assert!(Submitted::default().line_breaks(&ledger).is_empty());
        let sent = Totals::parse(Some(&wire_totals(|_| {}))).unwrap();
        assert!(submitted.to_breakdown().sums_to(&sent));
        assert!(!ledger.sums_to(&sent));
    }
}
