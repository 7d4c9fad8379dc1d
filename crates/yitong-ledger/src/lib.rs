//! The clearing house's ledger: the double-entry journal every cross-city claim lands in, daily
//! reconciliation and monthly clearing between the cities.
//!
//! The ledger core is built: accounts opened from the network file ([`account`]), transfers
//! created pending or posted, posted, voided and expired ([`transfer`], `book`), balances kept
//! with the journal ([`balance`]), and the hash-chained journal itself ([`journal`]), appended
//! to one transaction at a time behind its head row (`append`); the bookings of concurrent requests
//! share one such transaction and one commit (`group`). Daily reconciliation (`reconcile`)
//! compares a submitter's totals and rows with the settlement records the journal carries;
//! monthly clearing (`clearing`) confirms, nets and books a month's cross-city rows, counted as they
//! change (`tally`), by the clearing calendar ([`period`]), which every one of them reads and
//! none of them keeps.
//!
//! Architecture invariant: only the ledger writes journal entries, and it only ever inserts
//! them; every entry balances and is chained to the one before.

pub mod account;
mod activity;
mod append;
pub mod balance;
mod book;
mod breakdown;
mod clearing;
mod error;
mod group;
pub mod journal;
pub mod period;
mod reconcile;
mod repo;
mod service;
mod tally;
pub mod transfer;

pub use append::insert as insert_entries;
pub use book::columns as transfer_columns;
pub use error::LedgerError;
pub use period::Period;
pub use service::LedgerNode;
