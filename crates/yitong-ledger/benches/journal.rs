//! Micro-benchmark of the journal's hash chain: `Entry::compute_hash` (SHA-256 over the previous
//! hash and the canonical encoding of 38 columns) for a posted SETTLEMENT entry, the hash every
//! append computes once per entry and VerifyJournal recomputes for every entry.
//! `cargo bench -p yitong-ledger --bench journal`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use yitong_ledger::journal::{Entry, Event, GENESIS, TransferColumns};

/// A cross-city settlement as the treatment city books it: Zibo's advances debited, Jinan's
/// obligation to Zibo credited.
fn settlement_transfer() -> TransferColumns {
    TransferColumns {
        transfer_id: "0190f0c2-6d3e-7a4b-9c1d-2e3f4a5b6c7d".into(),
        debit_account_id: "370300.advances".into(),
        credit_account_id: "370100->370300.obligation".into(),
        amount_fen: 245_180,
        code: 3,
        flags: 0,
        pending_timeout_seconds: 0,
        operator_id: "op1".into(),
        settlement_id: "J3703002611250000007".into(),
        settlement_message_id: "H37030000001202611251030000001".into(),
        treatment_city: "370300".into(),
        insured_city: "370100".into(),
        institution_code: "H37030000001".into(),
        visit_id: "V3703002611250000007".into(),
        person_no: "3701000000000042".into(),
        insurance_type: 310,
        clearing_type: 1,
        settlement_date: "2026-11-25".into(),
        total_amount_fen: 305_200,
        fund_pay_fen: 200_000,
        account_pay_fen: 45_180,
        cash_pay_fen: 60_020,
        cancellation: 0,
        original_settlement_id: String::new(),
        fund_payments: String::new(),
        business_date: "2026-11-25".into(),
        clearing_period: "2026-11".into(),
        created_at_ms: 1_795_000_000_000,
        expires_at_ms: 0,
    }
}

fn benches(c: &mut Criterion) {
    let entry = Entry::new(
        1,
        Event::Created,
        settlement_transfer(),
        1_795_000_000_001,
        "H37030000001202611251030000001".into(),
        String::new(),
        &GENESIS,
    );
    let mut group = c.benchmark_group("journal");
    group.throughput(Throughput::Elements(1));
    group.bench_function("Entry::compute_hash, settlement entry", |b| {
        b.iter(|| black_box(&entry).compute_hash(black_box(&GENESIS)))
    });
    group.bench_function("Entry::new, settlement entry (legs, checks, hash)", |b| {
        b.iter(|| {
            Entry::new(
                2,
                Event::Created,
                black_box(settlement_transfer()),
                1_795_000_000_002,
                "H37030000001202611251030000002".into(),
                String::new(),
                black_box(&GENESIS),
            )
        })
    });
    group.finish();
}

criterion_group!(journal, benches);
criterion_main!(journal);
