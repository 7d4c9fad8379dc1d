//! Cross-city filing (异地就医备案) as the split applies it: the insured city's filing policy
//! toward a treatment city, the filing in force on the service date, and what the two make of
//! the policy's ratio. Pure: the benefit service reads the policy and the filing, this decides.
//!
//! The rule (ARCHITECTURE.md, "Cross-city filing"):
//! - a waived pair (filing not required, the circle's 同城化) pays as the policy says, filed or
//!   not;
//! - where filing is required, a long-term filing, a referral and an emergency (deemed filed,
//!   医保发〔2022〕22号) pay as the policy says; an other-temporary-trip filing pays the ratio less
//!   the policy's `temporary_cut_points`; no filing gets the policy's `unfiled` answer: refused,
//!   or the ratio less `unfiled_cut_points`.
//!
//! A cut is in whole percentage points off the ratio, floored at zero, so it is exact.

use super::Policy;

/// Percentage points a cut may take at most.
pub const CUT_POINTS_MAX: u32 = 100;

/// The kind of a filing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilingKind {
    /// 异地安置退休人员.
    ResettledRetiree,
    /// 异地长期居住人员.
    LongTermResident,
    /// 常驻异地工作人员.
    PostedStaff,
    /// 异地转诊人员.
    Referral,
    /// 异地急诊抢救人员.
    Emergency,
    /// 其他临时外出就医人员.
    OtherTemporary,
}

impl FilingKind {
    pub const ALL: [FilingKind; 6] = [
        FilingKind::ResettledRetiree,
        FilingKind::LongTermResident,
        FilingKind::PostedStaff,
        FilingKind::Referral,
        FilingKind::Emergency,
        FilingKind::OtherTemporary,
    ];

    /// Long-term kinds may be open-ended; temporary kinds need an end date.
    pub fn is_long_term(self) -> bool {
        matches!(
            self,
            FilingKind::ResettledRetiree | FilingKind::LongTermResident | FilingKind::PostedStaff
        )
    }

    /// The word stored for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            FilingKind::ResettledRetiree => "resettled_retiree",
            FilingKind::LongTermResident => "long_term_resident",
            FilingKind::PostedStaff => "posted_staff",
            FilingKind::Referral => "referral",
            FilingKind::Emergency => "emergency",
            FilingKind::OtherTemporary => "other_temporary",
        }
    }

    /// The kind a stored word names.
    pub fn of_word(text: &str) -> Option<FilingKind> {
        FilingKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// What an unfiled visit gets where filing is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfiled {
    /// The visit is refused (NOT_FILED).
    Refused,
    /// The visit settles with the ratio cut by these points.
    RatioCut(u32),
}

/// The insured city's filing policy toward one treatment city.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilingPolicy {
    filing_required: bool,
    unfiled: Unfiled,
    temporary_cut_points: u32,
}

/// A cut of more than 100 points.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 0 to {CUT_POINTS_MAX} percentage points")]
pub struct CutOutOfRange;

impl FilingPolicy {
    /// A waived pair: no filing asked, nothing cut.
    pub const WAIVED: FilingPolicy = FilingPolicy {
        filing_required: false,
        unfiled: Unfiled::RatioCut(0),
        temporary_cut_points: 0,
    };

    pub fn new(
        filing_required: bool,
        unfiled: Unfiled,
        temporary_cut_points: u32,
    ) -> Result<FilingPolicy, CutOutOfRange> {
        let unfiled_points = match unfiled {
            Unfiled::Refused => 0,
            Unfiled::RatioCut(points) => points,
        };
        if unfiled_points > CUT_POINTS_MAX || temporary_cut_points > CUT_POINTS_MAX {
            return Err(CutOutOfRange);
        }
        Ok(FilingPolicy {
            filing_required,
            unfiled,
            temporary_cut_points,
        })
    }

    pub fn filing_required(&self) -> bool {
        self.filing_required
    }

    pub fn unfiled(&self) -> Unfiled {
        self.unfiled
    }

    pub fn temporary_cut_points(&self) -> u32 {
        self.temporary_cut_points
    }

    /// What a visit gets under this policy with `filed` the kind of the filing in force on the
    /// service date (`None`: no filing).
    pub fn standing(&self, filed: Option<FilingKind>) -> Standing {
        if !self.filing_required {
            return Standing::Paid { cut_points: 0 };
        }
        match filed {
            Some(FilingKind::OtherTemporary) => Standing::Paid {
                cut_points: self.temporary_cut_points,
            },
            Some(_) => Standing::Paid { cut_points: 0 },
            None => match self.unfiled {
                Unfiled::Refused => Standing::Refused,
                Unfiled::RatioCut(points) => Standing::Paid { cut_points: points },
            },
        }
    }
}

/// What a visit gets for its filing standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Paid, the ratio less `cut_points`.
    Paid { cut_points: u32 },
    /// Refused for want of a filing.
    Refused,
}

impl Standing {
    /// The policy a visit of this standing is priced under; `None` when refused.
    pub fn policy(self, policy: &Policy) -> Option<Policy> {
        match self {
            Standing::Paid { cut_points } => Some(policy.with_ratio_cut(cut_points)),
            Standing::Refused => None,
        }
    }

    pub fn cut_points(self) -> u32 {
        match self {
            Standing::Paid { cut_points } => cut_points,
            Standing::Refused => 0,
        }
    }
}
