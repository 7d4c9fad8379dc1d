//! Settlement of outpatient visits: the HIS-facing SettlementService at the treatment city
//! (`treatment`) and the BenefitService that decides, at the insured city, what the fund pays
//! (`benefit`), over the pure split arithmetic (`split`).

pub mod benefit;
pub mod group;
pub mod split;
mod stored;
pub mod treatment;

pub use benefit::BenefitNode;
pub use treatment::SettlementNode;
