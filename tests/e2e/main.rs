//! End-to-end tests: every one starts the whole network in the sandbox, talks gRPC to it like an
//! HIS, a bureau or an operator would, and runs on SQLite and on PostgreSQL.

mod benefit;
mod breakdown;
mod browser;
mod bureau;
mod catalog;
mod check;
mod circle;
mod cli;
mod console;
mod crash;
mod dates;
mod dev;
mod disease;
mod filing;
mod foundation;
mod hostile;
mod identity;
mod ledger;
mod month;
mod permissions;
mod pools;
mod properties;
mod protocol;
mod reconciliation;
mod reference;
mod settlement;
mod support;
mod tls;
mod torture;
mod visibility;
