//! End-to-end tests: every one starts the whole network in the sandbox, talks gRPC to it like an
//! HIS, a bureau or an operator would, and runs on SQLite and on PostgreSQL.

mod bureau;
mod foundation;
mod identity;
mod support;
