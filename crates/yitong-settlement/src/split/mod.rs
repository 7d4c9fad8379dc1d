//! The benefit arithmetic of one settlement: fee lines classified by the treatment city's catalog,
//! then split under the insured city's policy and the person's running totals. Pure: no database,
//! no gRPC, no clock.
//!
//! # Rounding, written down once
//!
//! Money is exact integer fen ([`Amount`]); ratios and quantities are [`Decimal`]s with at most
//! four fraction digits, and a unit price ([`UnitPrice`]) is exact yuan with at most six, as the
//! national interface sends per-tablet prices (pric, numeric(16,6)); no figure ever passes
//! through a float. Exactly four products are rounded, each to the fen, half away from zero
//! (rounding half up on magnitudes, [`RoundingStrategy::MidpointAwayFromZero`]: 1.525 yuan
//! becomes 1.53, not the banker's 1.52), each once, where it is formed:
//!
//! 1. per fee line, its amount: quantity x unit price, the price exact to six fraction digits
//!    (the HIS must send exactly this);
//! 2. per fee line, its over-cap part: (unit price - price cap) x quantity, where the price is
//!    above the cap compared exactly (0.123457 is above a cap of 0.12);
//! 3. per fee line, its pre-self-pay part: (amount - over-cap part) x grade-B self-pay ratio;
//! 4. per settlement, the fund pay before the cap: (in-scope - deductible applied) x
//!    reimbursement ratio.
//!
//! Every other figure is an exact sum, difference or minimum of those, so the parts of a line
//! always add up to its amount and the parts of a split always add up to its total. A
//! cancellation negates the original's figures and rounds nothing, so settle-then-cancel gives
//! every running total back to the fen. The proto header of `yitong.settlement.v1` states the
//! same rule for HIS vendors.
//!
//! Rounding is monotone, so the rounded parts keep the order of the exact ones: the over-cap
//! part never exceeds the amount, and the pre-self-pay part never exceeds what is within the cap.
//! No part is ever negative.
//!
//! # Limits
//!
//! Amounts are at most [`AMOUNT_FEN_MAX`] (the national numeric(16,2)), unit prices too,
//! quantities below 10^12 (numeric(16,4)), and a settlement has at most
//! [`LINES_PER_SETTLEMENT_MAX`] lines. Within these every sum fits an `i64` and every product
//! that is not refused as too large fits a `Decimal` exactly (a price in fen carries four fraction
//! digits and a quantity four, so a product up to [`AMOUNT_FEN_MAX`] has at most 10^24 in its
//! mantissa, against 2^96), so the arithmetic below asserts rather than checks for overflow.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use yitong_core::Amount;

pub mod filing;
pub mod fund;
#[cfg(test)]
mod tests;

/// Largest amount accepted anywhere in a split, in fen: the national numeric(16,2).
pub const AMOUNT_FEN_MAX: i64 = 9_999_999_999_999_999;

/// Most fee lines one settlement may hold (the proto's live lines per visit).
pub const LINES_PER_SETTLEMENT_MAX: usize = 500;

/// Quantities and ratios carry at most this many fraction digits (numeric(16,4)).
const FRACTION_DIGITS_MAX: u32 = 4;

/// Quantities stay below 10^12: the twelve integer digits of numeric(16,4).
const QUANTITY_LIMIT: i64 = 1_000_000_000_000;

/// An input the arithmetic refuses, naming the offending field by its path in the request
/// (`lines[2].amount`), so the service can answer INVALID_ARGUMENT with it.
///
/// Constructors name the field as their own parameter ("amount"); the caller nests it under its
/// place in the request with [`SplitError::within`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("{field}: must be above zero")]
    NotPositive { field: String },
    #[error("{field}: must not be negative")]
    Negative { field: String },
    #[error("{field}: must be at most {max}")]
    TooLarge { field: String, max: String },
    #[error("{field}: must have at most four fraction digits")]
    TooManyFractionDigits { field: String },
    /// A unit price that is not yuan with at most six fraction digits.
    #[error("{field}: must be a yuan price above zero with at most six decimals, such as 0.123456")]
    MalformedPrice { field: String },
    #[error("{field}: must be between 0 and 1")]
    RatioOutOfRange { field: String },
    /// The line amount is not the rounded product; `expected` is what it should be.
    #[error("{field}: must be quantity x unit price rounded to the fen, {expected}")]
    AmountMismatch { field: String, expected: Amount },
    /// Quantity x unit price is above [`AMOUNT_FEN_MAX`], so no amount can match it.
    #[error("{field}: quantity x unit price is above the largest amount")]
    ProductTooLarge { field: String },
    #[error("{field}: the parts add up to {parts}, not to {total}")]
    PartsDoNotAddUp {
        field: String,
        parts: Amount,
        total: Amount,
    },
    #[error("{field}: {count} lines; a settlement has 1 to {LINES_PER_SETTLEMENT_MAX}")]
    LineCount { field: String, count: usize },
    /// Applying a split (usually a reversal) would take a running total below zero: the totals
    /// given do not contain the settlement being reversed.
    #[error("{field}: would fall below zero")]
    BelowZero { field: String },
}

impl SplitError {
    /// The path of the offending field.
    pub fn field(&self) -> &str {
        match self {
            Self::NotPositive { field }
            | Self::Negative { field }
            | Self::TooLarge { field, .. }
            | Self::TooManyFractionDigits { field }
            | Self::MalformedPrice { field }
            | Self::RatioOutOfRange { field }
            | Self::AmountMismatch { field, .. }
            | Self::ProductTooLarge { field }
            | Self::PartsDoNotAddUp { field, .. }
            | Self::LineCount { field, .. }
            | Self::BelowZero { field } => field,
        }
    }

    /// Nests the field under its parent: `lines[2]` + `amount` gives `lines[2].amount`.
    pub fn within(mut self, parent: &str) -> Self {
        let field = self.field_mut();
        *field = if field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{field}")
        };
        self
    }

    fn field_mut(&mut self) -> &mut String {
        match self {
            Self::NotPositive { field }
            | Self::Negative { field }
            | Self::TooLarge { field, .. }
            | Self::TooManyFractionDigits { field }
            | Self::MalformedPrice { field }
            | Self::RatioOutOfRange { field }
            | Self::AmountMismatch { field, .. }
            | Self::ProductTooLarge { field }
            | Self::PartsDoNotAddUp { field, .. }
            | Self::LineCount { field, .. }
            | Self::BelowZero { field } => field,
        }
    }
}

/// A share from 0 to 1 with at most four fraction digits: a grade-B self-pay ratio or a
/// reimbursement ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio(Decimal);

impl Ratio {
    pub const ZERO: Ratio = Ratio(Decimal::ZERO);

    /// Refuses values outside [0, 1] and more than four fraction digits. The error names no
    /// field; the caller nests it under its own ("self_pay_ratio").
    pub fn new(value: Decimal) -> Result<Ratio, SplitError> {
        let value = value.normalize();
        if value.scale() > FRACTION_DIGITS_MAX {
            return Err(SplitError::TooManyFractionDigits {
                field: String::new(),
            });
        }
        if value < Decimal::ZERO || value > Decimal::ONE {
            return Err(SplitError::RatioOutOfRange {
                field: String::new(),
            });
        }
        Ok(Ratio(value))
    }

    pub fn value(self) -> Decimal {
        self.0
    }
}

/// Catalog grade of an item in the treatment city's catalog. Only grade B carries a self-pay
/// ratio, so an A or C item with a ratio cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grade {
    /// 甲类: fully within the policy scope (up to the price cap).
    A,
    /// 乙类: the patient first pays `self_pay_ratio` of the amount within the price cap.
    B { self_pay_ratio: Ratio },
    /// 丙类: fully self-paid.
    C,
}

/// How the treatment city's catalog lists an item on the line's date. A code the catalog does
/// not cover is `None` wherever an `Option<CatalogEntry>` is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    grade: Grade,
    /// Per-unit price cap (限价); the part of a unit price above it is self-paid.
    price_cap: Option<Amount>,
}

impl CatalogEntry {
    pub fn new(grade: Grade, price_cap: Option<Amount>) -> Result<CatalogEntry, SplitError> {
        if let Some(cap) = price_cap {
            check_amount(cap, "price_cap")?;
        }
        Ok(CatalogEntry { grade, price_cap })
    }

    pub fn grade(&self) -> Grade {
        self.grade
    }

    pub fn price_cap(&self) -> Option<Amount> {
        self.price_cap
    }

    /// The grade-B self-pay ratio; zero for grades A and C (the national selfpay_prop).
    pub fn self_pay_ratio(&self) -> Ratio {
        match self.grade {
            Grade::B { self_pay_ratio } => self_pay_ratio,
            Grade::A | Grade::C => Ratio::ZERO,
        }
    }
}

/// Unit prices carry at most this many fraction digits of the yuan (national pric,
/// numeric(16,6)).
const PRICE_FRACTION_DIGITS_MAX: u32 = 6;

/// A unit price as the national interface sends it: yuan above zero with at most six fraction
/// digits (a tablet at 0.123456), at most [`AMOUNT_FEN_MAX`] fen. Kept exact, in fen with at
/// most four fraction digits, until a product with a quantity is rounded to the fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UnitPrice(Decimal);

impl UnitPrice {
    /// Parses the wire's yuan string: digits, optionally a point and one to six digits; no
    /// sign, exponent or separator. The error names no field; the caller nests it.
    pub fn parse(text: &str) -> Result<UnitPrice, SplitError> {
        let malformed = || SplitError::MalformedPrice {
            field: String::new(),
        };
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        let fraction_ok = match text.contains('.') {
            true => (1..=PRICE_FRACTION_DIGITS_MAX as usize).contains(&fraction.len()),
            false => true,
        };
        if whole.is_empty()
            || whole.len() > 14
            || !digits(whole)
            || !digits(fraction)
            || !fraction_ok
        {
            return Err(malformed());
        }
        let yuan = Decimal::from_str_exact(text).map_err(|_| malformed())?;
        UnitPrice::from_yuan(yuan)
    }

    /// A price in yuan: above zero, at most six fraction digits, at most [`AMOUNT_FEN_MAX`] fen.
    pub fn from_yuan(yuan: Decimal) -> Result<UnitPrice, SplitError> {
        let yuan = yuan.normalize();
        if yuan.scale() > PRICE_FRACTION_DIGITS_MAX {
            return Err(SplitError::MalformedPrice {
                field: String::new(),
            });
        }
        if yuan <= Decimal::ZERO {
            return Err(SplitError::NotPositive {
                field: String::new(),
            });
        }
        let fen = yuan * Decimal::ONE_HUNDRED;
        if fen > Decimal::from(AMOUNT_FEN_MAX) {
            return Err(SplitError::TooLarge {
                field: String::new(),
                max: Amount::from_fen(AMOUNT_FEN_MAX).to_string(),
            });
        }
        Ok(UnitPrice(fen))
    }

    /// The price in fen, exact (at most four fraction digits).
    pub fn fen(self) -> Decimal {
        self.0
    }

    /// Whether the price is above a per-unit cap, compared exactly.
    pub fn is_above(self, cap: Amount) -> bool {
        self.0 > Decimal::from(cap.fen())
    }
}

/// A whole-fen price, as the catalog and older HIS versions write it.
impl From<Amount> for UnitPrice {
    fn from(amount: Amount) -> UnitPrice {
        UnitPrice(Decimal::from(amount.fen()))
    }
}

impl std::fmt::Display for UnitPrice {
    /// Yuan with at least two fraction digits and no trailing zeros beyond them: "0.123456",
    /// "3.50".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yuan = (self.0 / Decimal::ONE_HUNDRED).normalize();
        match yuan.scale() {
            0..=2 => write!(f, "{:.2}", yuan),
            _ => write!(f, "{yuan}"),
        }
    }
}

/// A fee line as the HIS uploads it, its amount checked against quantity x unit price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeLine {
    quantity: Decimal,
    unit_price: UnitPrice,
    amount: Amount,
}

impl FeeLine {
    /// Field names are the proto's `FeeLine` fields; nest them with
    /// [`SplitError::within`]`("lines[2]")`.
    pub fn new(
        quantity: Decimal,
        unit_price: impl Into<UnitPrice>,
        amount: Amount,
    ) -> Result<FeeLine, SplitError> {
        let unit_price = unit_price.into();
        let quantity = quantity.normalize();
        if quantity <= Decimal::ZERO {
            return Err(SplitError::NotPositive {
                field: "quantity".into(),
            });
        }
        if quantity.scale() > FRACTION_DIGITS_MAX {
            return Err(SplitError::TooManyFractionDigits {
                field: "quantity".into(),
            });
        }
        if quantity >= Decimal::from(QUANTITY_LIMIT) {
            return Err(SplitError::TooLarge {
                field: "quantity".into(),
                max: "999999999999.9999".into(),
            });
        }
        if unit_price.fen() <= Decimal::ZERO {
            return Err(SplitError::NotPositive {
                field: "unit_price".into(),
            });
        }
        if unit_price.fen() > Decimal::from(AMOUNT_FEN_MAX) {
            return Err(SplitError::TooLarge {
                field: "unit_price".into(),
                max: Amount::from_fen(AMOUNT_FEN_MAX).to_string(),
            });
        }
        check_amount(amount, "amount")?;
        let Some(expected) = line_amount(quantity, unit_price) else {
            return Err(SplitError::ProductTooLarge {
                field: "amount".into(),
            });
        };
        if amount != expected {
            return Err(SplitError::AmountMismatch {
                field: "amount".into(),
                expected,
            });
        }
        Ok(FeeLine {
            quantity,
            unit_price,
            amount,
        })
    }

    pub fn quantity(&self) -> Decimal {
        self.quantity
    }

    pub fn unit_price(&self) -> UnitPrice {
        self.unit_price
    }

    pub fn amount(&self) -> Amount {
        self.amount
    }
}

/// The amount a line of `quantity` units at `unit_price` must carry: the product rounded to the
/// fen (rounding rule 1), or `None` when it is above [`AMOUNT_FEN_MAX`].
///
/// For a product within the limit the multiplication is exact. `Decimal` rounds silently only
/// when a product's mantissa passes 2^96, that is above about 10^24 fen, which is refused here
/// whatever the rounding.
pub fn line_amount(quantity: Decimal, unit_price: impl Into<UnitPrice>) -> Option<Amount> {
    let product = quantity.checked_mul(unit_price.into().fen())?;
    let fen = round_to_fen(product);
    (fen.abs() <= Decimal::from(AMOUNT_FEN_MAX)).then(|| to_amount(fen))
}

/// A fee line classified by the treatment city's catalog. For every line:
/// amount = full self-pay + over-cap self-pay + pre-self-pay + in-scope amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifiedLine {
    line: FeeLine,
    entry: Option<CatalogEntry>,
    full_self_pay: Amount,
    over_cap_self_pay: Amount,
    pre_self_pay: Amount,
    in_scope_amount: Amount,
}

impl ClassifiedLine {
    /// Classifies `line` by `entry`, the treatment city's catalog entry for its code (`None`
    /// when the catalog does not cover the code on the line's date).
    pub fn classify(line: FeeLine, entry: Option<CatalogEntry>) -> ClassifiedLine {
        let amount = line.amount;
        let classified =
            |full_self_pay, over_cap_self_pay, pre_self_pay, in_scope_amount| ClassifiedLine {
                line,
                entry,
                full_self_pay,
                over_cap_self_pay,
                pre_self_pay,
                in_scope_amount,
            };
        let Some(covered) = entry.filter(|entry| entry.grade != Grade::C) else {
            // Grade C or not covered: the whole line is the patient's, price cap or not.
            return classified(amount, Amount::ZERO, Amount::ZERO, Amount::ZERO);
        };
        let over_cap_self_pay = match covered.price_cap {
            Some(cap) if line.unit_price.is_above(cap) => {
                let over_per_unit = line.unit_price.fen() - Decimal::from(cap.fen());
                to_amount(round_to_fen(over_per_unit * line.quantity))
            }
            _ => Amount::ZERO,
        };
        // Rounding is monotone and cap >= 0, so round((price - cap) x q) <= round(price x q).
        let within_cap = minus(amount, over_cap_self_pay);
        assert!(
            !within_cap.is_negative(),
            "over-cap part above the line amount"
        );
        let pre_self_pay = times(within_cap, covered.self_pay_ratio().value());
        let in_scope_amount = minus(within_cap, pre_self_pay);
        assert!(
            !in_scope_amount.is_negative(),
            "pre-self-pay above the amount within the cap"
        );
        classified(
            Amount::ZERO,
            over_cap_self_pay,
            pre_self_pay,
            in_scope_amount,
        )
    }

    pub fn line(&self) -> &FeeLine {
        &self.line
    }

    /// The catalog entry applied; `None` when the code is not covered.
    pub fn entry(&self) -> Option<&CatalogEntry> {
        self.entry.as_ref()
    }

    pub fn amount(&self) -> Amount {
        self.line.amount
    }

    /// national: fulamt_ownpay_amt.
    pub fn full_self_pay(&self) -> Amount {
        self.full_self_pay
    }

    /// national: overlmt_amt.
    pub fn over_cap_self_pay(&self) -> Amount {
        self.over_cap_self_pay
    }

    /// national: preselfpay_amt.
    pub fn pre_self_pay(&self) -> Amount {
        self.pre_self_pay
    }

    /// national: inscp_scp_amt.
    pub fn in_scope_amount(&self) -> Amount {
        self.in_scope_amount
    }
}

/// The treatment city's half of a split: what the catalog decided, before the insured city's
/// policy (the proto's `ClaimAmounts`). total = full self-pay + over-cap self-pay + pre-self-pay +
/// in-scope amount. Negative only inside the reversal of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    total_amount: Amount,
    full_self_pay: Amount,
    over_cap_self_pay: Amount,
    pre_self_pay: Amount,
    in_scope_amount: Amount,
}

impl Claim {
    /// Sums a visit's classified lines: 1 to [`LINES_PER_SETTLEMENT_MAX`] of them, the total
    /// at most [`AMOUNT_FEN_MAX`].
    pub fn from_lines(lines: &[ClassifiedLine]) -> Result<Claim, SplitError> {
        if lines.is_empty() || lines.len() > LINES_PER_SETTLEMENT_MAX {
            return Err(SplitError::LineCount {
                field: "lines".into(),
                count: lines.len(),
            });
        }
        let sum =
            |part: fn(&ClassifiedLine) -> Amount| lines.iter().map(part).fold(Amount::ZERO, plus);
        let claim = Claim {
            total_amount: sum(ClassifiedLine::amount),
            full_self_pay: sum(ClassifiedLine::full_self_pay),
            over_cap_self_pay: sum(ClassifiedLine::over_cap_self_pay),
            pre_self_pay: sum(ClassifiedLine::pre_self_pay),
            in_scope_amount: sum(ClassifiedLine::in_scope_amount),
        };
        check_amount(claim.total_amount, "lines")?;
        assert_eq!(
            claim.parts(),
            claim.total_amount,
            "line parts do not add up"
        );
        Ok(claim)
    }

    /// The claim as it crosses to the insured city; field names are the proto's `ClaimAmounts`.
    pub fn new(
        total_amount: Amount,
        full_self_pay: Amount,
        over_cap_self_pay: Amount,
        pre_self_pay: Amount,
        in_scope_amount: Amount,
    ) -> Result<Claim, SplitError> {
        check_amount(total_amount, "total_amount")?;
        check_amount(full_self_pay, "full_self_pay")?;
        check_amount(over_cap_self_pay, "over_cap_self_pay")?;
        check_amount(pre_self_pay, "pre_self_pay")?;
        check_amount(in_scope_amount, "in_scope_amount")?;
        let claim = Claim {
            total_amount,
            full_self_pay,
            over_cap_self_pay,
            pre_self_pay,
            in_scope_amount,
        };
        if claim.parts() != total_amount {
            return Err(SplitError::PartsDoNotAddUp {
                field: "total_amount".into(),
                parts: claim.parts(),
                total: total_amount,
            });
        }
        Ok(claim)
    }

    fn parts(&self) -> Amount {
        [
            self.full_self_pay,
            self.over_cap_self_pay,
            self.pre_self_pay,
            self.in_scope_amount,
        ]
        .into_iter()
        .fold(Amount::ZERO, plus)
    }

    fn negated(&self) -> Claim {
        Claim {
            total_amount: negate(self.total_amount),
            full_self_pay: negate(self.full_self_pay),
            over_cap_self_pay: negate(self.over_cap_self_pay),
            pre_self_pay: negate(self.pre_self_pay),
            in_scope_amount: negate(self.in_scope_amount),
        }
    }

    /// national: medfee_sumamt.
    pub fn total_amount(&self) -> Amount {
        self.total_amount
    }

    /// national: fulamt_ownpay_amt.
    pub fn full_self_pay(&self) -> Amount {
        self.full_self_pay
    }

    /// national: overlmt_selfpay.
    pub fn over_cap_self_pay(&self) -> Amount {
        self.over_cap_self_pay
    }

    /// national: preselfpay_amt.
    pub fn pre_self_pay(&self) -> Amount {
        self.pre_self_pay
    }

    /// national: inscp_scp_amt.
    pub fn in_scope_amount(&self) -> Amount {
        self.in_scope_amount
    }
}

/// Insurance type (national insutype). Only employees have a personal account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsuranceType {
    /// 310, employee basic medical insurance: has a personal account.
    Employee,
    /// 390, urban and rural resident basic medical insurance: no personal account.
    Resident,
}

/// The insured city's policy row for the person's insurance type, person type and the treating
/// institution's level. The deductible and the cap are yearly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    deductible: Amount,
    reimbursement_ratio: Ratio,
    annual_cap: Amount,
}

impl Policy {
    /// Field names are the proto's catalog `Policy` fields.
    pub fn new(
        deductible: Amount,
        reimbursement_ratio: Ratio,
        annual_cap: Amount,
    ) -> Result<Policy, SplitError> {
        check_amount(deductible, "deductible")?;
        check_amount(annual_cap, "annual_cap")?;
        Ok(Policy {
            deductible,
            reimbursement_ratio,
            annual_cap,
        })
    }

    /// 起付线, yearly.
    pub fn deductible(&self) -> Amount {
        self.deductible
    }

    /// The share of the in-scope amount above the deductible the pooling fund pays.
    pub fn reimbursement_ratio(&self) -> Ratio {
        self.reimbursement_ratio
    }

    /// 年度最高支付限额: the most the pooling fund pays for the person in a year.
    pub fn annual_cap(&self) -> Amount {
        self.annual_cap
    }

    /// The same policy with its ratio lowered by `points` percentage points, never below zero.
    /// Exact: a ratio has at most four fraction digits and a point is 0.01.
    pub fn with_ratio_cut(&self, points: u32) -> Policy {
        let cut = Decimal::new(i64::from(points), 2);
        let ratio = (self.reimbursement_ratio.value() - cut).max(Decimal::ZERO);
        Policy {
            reimbursement_ratio: Ratio::new(ratio)
                .expect("a ratio lowered by whole points stays within [0, 1] and four digits"),
            ..*self
        }
    }
}

/// A person's running totals for the benefit year at the insured city, with the personal
/// account balance: what a settlement reads before and leaves after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningTotals {
    /// In-scope amounts the person has paid towards this year's deductible.
    deductible_used: Amount,
    /// What the pooling fund has paid for the person this year.
    fund_paid: Amount,
    /// The personal account balance; zero for residents.
    account_balance: Amount,
}

impl RunningTotals {
    pub fn new(
        deductible_used: Amount,
        fund_paid: Amount,
        account_balance: Amount,
    ) -> Result<RunningTotals, SplitError> {
        check_amount(deductible_used, "deductible_used")?;
        check_amount(fund_paid, "fund_paid")?;
        check_amount(account_balance, "account_balance")?;
        Ok(RunningTotals {
            deductible_used,
            fund_paid,
            account_balance,
        })
    }

    pub fn deductible_used(&self) -> Amount {
        self.deductible_used
    }

    pub fn fund_paid(&self) -> Amount {
        self.fund_paid
    }

    pub fn account_balance(&self) -> Amount {
        self.account_balance
    }

    /// Deductible still to pay this year. Never negative: a new policy version may lower the
    /// deductible below what the person has already used.
    pub fn deductible_left(&self, policy: &Policy) -> Amount {
        minus(policy.deductible, self.deductible_used).max(Amount::ZERO)
    }

    /// What the pooling fund may still pay this year. Never negative: a new policy version may
    /// lower the cap below what the fund has already paid.
    pub fn annual_cap_left(&self, policy: &Policy) -> Amount {
        minus(policy.annual_cap, self.fund_paid).max(Amount::ZERO)
    }

    /// These totals with `split` applied: its deductible added to the deductible used, its fund
    /// pay to the fund paid, its account pay taken from the balance. A reversal (negative
    /// amounts) gives them back. Refused when a total would fall below zero, which means the
    /// totals do not contain the settlement being reversed.
    pub fn apply(&self, split: &Split) -> Result<RunningTotals, SplitError> {
        let total = |before: Amount, change: Amount, field: &str| {
            let after = plus(before, change);
            if after.is_negative() {
                return Err(SplitError::BelowZero {
                    field: field.into(),
                });
            }
            check_amount(after, field)
        };
        Ok(RunningTotals {
            deductible_used: total(
                self.deductible_used,
                split.deductible_applied,
                "deductible_used",
            )?,
            fund_paid: total(self.fund_paid, split.fund_pay, "fund_paid")?,
            account_balance: total(
                self.account_balance,
                negate(split.account_pay),
                "account_balance",
            )?,
        })
    }
}

/// The split of one settlement (or, negated, of its cancellation) under the insured city's
/// policy, with the person's running totals after it. The proto's `SettlementSplit`.
///
/// Only the deductible applied, the fund pay and the account pay are stored; the person's share
/// and the cash pay are derived from them, so the split adds up by construction:
/// total = fund pay + account pay + cash pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    claim: Claim,
    /// Kept so the running totals after can be stated as what is left under this policy.
    policy: Policy,
    deductible_applied: Amount,
    fund_pay: Amount,
    account_pay: Amount,
    /// The person's running totals after this split is applied.
    totals_after: RunningTotals,
}

impl Split {
    /// Splits `claim` under `policy`, given the person's running totals before this settlement.
    ///
    /// The personal account pays the person's share, while the balance lasts, only for an
    /// employee whose HIS asks for it (national acct_used_flag); residents have no account.
    pub fn compute(
        claim: &Claim,
        policy: &Policy,
        before: &RunningTotals,
        insurance_type: InsuranceType,
        use_personal_account: bool,
    ) -> Split {
        let deductible_applied = claim.in_scope_amount.min(before.deductible_left(policy));
        let reimbursable = minus(claim.in_scope_amount, deductible_applied);
        let fund_pay = times(reimbursable, policy.reimbursement_ratio.value())
            .min(before.annual_cap_left(policy));
        let person_share = minus(claim.total_amount, fund_pay);
        let account_pay = match insurance_type {
            InsuranceType::Employee if use_personal_account => {
                person_share.min(before.account_balance)
            }
            InsuranceType::Employee | InsuranceType::Resident => Amount::ZERO,
        };
        let mut split = Split {
            claim: *claim,
            policy: *policy,
            deductible_applied,
            fund_pay,
            account_pay,
            totals_after: *before,
        };
        split.totals_after = before
            .apply(&split)
            .expect("a split never takes the totals it was computed from below zero");
        split
    }

    /// The cancellation of this split: every amount negated, nothing rounded again, with the
    /// running totals after applying it to `now` (the person's totals when the cancellation is
    /// made, which may include later settlements). Refused when `now` does not contain this
    /// split (a total would fall below zero).
    pub fn reversal(&self, now: &RunningTotals) -> Result<Split, SplitError> {
        let mut reversal = Split {
            claim: self.claim.negated(),
            policy: self.policy,
            deductible_applied: negate(self.deductible_applied),
            fund_pay: negate(self.fund_pay),
            account_pay: negate(self.account_pay),
            totals_after: *now,
        };
        reversal.totals_after = now.apply(&reversal)?;
        Ok(reversal)
    }

    /// The treatment city's half.
    pub fn claim(&self) -> &Claim {
        &self.claim
    }

    /// The policy row applied.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// national: medfee_sumamt.
    pub fn total_amount(&self) -> Amount {
        self.claim.total_amount
    }

    /// national: fulamt_ownpay_amt.
    pub fn full_self_pay(&self) -> Amount {
        self.claim.full_self_pay
    }

    /// national: overlmt_selfpay.
    pub fn over_cap_self_pay(&self) -> Amount {
        self.claim.over_cap_self_pay
    }

    /// national: preselfpay_amt.
    pub fn pre_self_pay(&self) -> Amount {
        self.claim.pre_self_pay
    }

    /// national: inscp_scp_amt.
    pub fn in_scope_amount(&self) -> Amount {
        self.claim.in_scope_amount
    }

    /// national: act_pay_dedc.
    pub fn deductible_applied(&self) -> Amount {
        self.deductible_applied
    }

    /// The reimbursement ratio applied. national: pool_prop_selfpay.
    pub fn pool_ratio(&self) -> Ratio {
        self.policy.reimbursement_ratio
    }

    /// Paid by the pooling fund, the pilot's only fund. national: hifp_pay and fund_pay_sumamt.
    pub fn fund_pay(&self) -> Amount {
        self.fund_pay
    }

    /// total - fund pay. national: psn_part_amt.
    pub fn person_share(&self) -> Amount {
        minus(self.claim.total_amount, self.fund_pay)
    }

    /// national: acct_pay.
    pub fn account_pay(&self) -> Amount {
        self.account_pay
    }

    /// person's share - account pay. national: psn_cash_pay.
    pub fn cash_pay(&self) -> Amount {
        minus(self.person_share(), self.account_pay)
    }

    /// The person's running totals after this split.
    pub fn totals_after(&self) -> &RunningTotals {
        &self.totals_after
    }

    /// Personal account balance after. national: balc.
    pub fn account_balance(&self) -> Amount {
        self.totals_after.account_balance
    }

    /// Deductible still to pay this year, after this split.
    pub fn deductible_left(&self) -> Amount {
        self.totals_after.deductible_left(&self.policy)
    }

    /// What the pooling fund may still pay this year, after this split.
    pub fn annual_cap_left(&self) -> Amount {
        self.totals_after.annual_cap_left(&self.policy)
    }
}

/// Refuses an amount below zero or above [`AMOUNT_FEN_MAX`], naming `field`.
fn check_amount(amount: Amount, field: &str) -> Result<Amount, SplitError> {
    if amount.is_negative() {
        return Err(SplitError::Negative {
            field: field.into(),
        });
    }
    if amount.fen() > AMOUNT_FEN_MAX {
        return Err(SplitError::TooLarge {
            field: field.into(),
            max: Amount::from_fen(AMOUNT_FEN_MAX).to_string(),
        });
    }
    Ok(amount)
}

/// The one rounding rule: a figure in fen to a whole fen, half away from zero.
fn round_to_fen(fen: Decimal) -> Decimal {
    fen.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
}

/// `amount` x `factor` (a ratio or a quantity), rounded to the fen by the one rule.
fn times(amount: Amount, factor: Decimal) -> Amount {
    to_amount(round_to_fen(Decimal::from(amount.fen()) * factor))
}

fn to_amount(whole_fen: Decimal) -> Amount {
    Amount::from_fen(whole_fen.to_i64().expect("bounded amounts fit in i64"))
}

// Sums and differences of amounts bounded by AMOUNT_FEN_MAX (10^16) and at most 500 lines stay far
// below i64::MAX (9.2 x 10^18), so overflow here is a programmer error.

fn plus(a: Amount, b: Amount) -> Amount {
    a.checked_add(b).expect("bounded amounts never overflow")
}

fn minus(a: Amount, b: Amount) -> Amount {
    a.checked_sub(b).expect("bounded amounts never overflow")
}

fn negate(a: Amount) -> Amount {
    minus(Amount::ZERO, a)
}
