//! The fund pay of a split itemised by fund type, as the national 2207 reply's setldetail lists
//! it: one line per fund that pays, each with its national `fund_pay_type`, summing exactly to
//! the split's fund pay. Pure, like the rest of `split`.
//!
//! Today every split is paid by one fund, the basic pooling fund of the person's insurance type
//! (employees' 310100, residents' 390100); a chronic-disease visit draws the same fund against
//! the disease's own annual quota, which its line names. The line list is the shape a second
//! fund (a serious-illness fund, medical assistance) joins without changing the wire.

use yitong_core::Amount;

use super::{InsuranceType, Split, plus};

/// A fund as the national fund type code table (fund_pay_type) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FundType {
    /// 职工基本医疗保险统筹基金, national 310100.
    EmployeePool,
    /// 城乡居民基本医疗保险基金, national 390100.
    ResidentPool,
}

impl FundType {
    /// The basic fund that pays for a person of `insurance_type`.
    pub fn pool_of(insurance_type: InsuranceType) -> FundType {
        match insurance_type {
            InsuranceType::Employee => FundType::EmployeePool,
            InsuranceType::Resident => FundType::ResidentPool,
        }
    }

    /// national: fund_pay_type.
    pub fn code(self) -> &'static str {
        match self {
            FundType::EmployeePool => "310100",
            FundType::ResidentPool => "390100",
        }
    }

    /// national: fund_pay_type_name.
    pub fn name(self) -> &'static str {
        match self {
            FundType::EmployeePool => "职工基本医疗保险统筹基金",
            FundType::ResidentPool => "城乡居民基本医疗保险基金",
        }
    }
}

/// One fund's part of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundPayment {
    pub fund_type: FundType,
    /// The disease whose annual quota the payment draws on; `None` for the ordinary annual cap.
    pub disease_code: Option<String>,
    /// The in-scope amount the fund priced.
    pub in_scope_amount: Amount,
    /// What the fund pays; negative in a cancellation.
    pub amount: Amount,
}

impl Split {
    /// The fund pay by fund type (national setldetail): a line per fund that pays, summing
    /// exactly to [`Split::fund_pay`]. `disease_code` names the quota a chronic-disease split
    /// was priced against (empty for none).
    pub fn itemised(&self, insurance_type: InsuranceType, disease_code: &str) -> Vec<FundPayment> {
        let lines: Vec<FundPayment> = match self.fund_pay() == Amount::ZERO {
            true => Vec::new(),
            false => vec![FundPayment {
                fund_type: FundType::pool_of(insurance_type),
                disease_code: (!disease_code.is_empty()).then(|| disease_code.to_owned()),
                in_scope_amount: self.in_scope_amount(),
                amount: self.fund_pay(),
            }],
        };
        assert_eq!(
            lines
                .iter()
                .map(|line| line.amount)
                .fold(Amount::ZERO, plus),
            self.fund_pay(),
            "the fund lines add up to the fund pay"
        );
        lines
    }
}
