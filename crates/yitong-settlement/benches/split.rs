//! Micro-benchmarks of the benefit arithmetic (`yitong_settlement::split`): classifying a
//! visit's fee lines with the treatment city's catalog, summing them into a claim, and
//! splitting the claim under the insured city's policy, as one Settle does.
//! `cargo bench -p yitong-settlement --bench split`.

use std::hint::black_box;
use std::str::FromStr;

use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;
use yitong_core::Amount;
use yitong_settlement::split::{
    CatalogEntry, Claim, ClassifiedLine, FeeLine, Grade, InsuranceType, Policy, Ratio,
    RunningTotals, Split,
};

fn ratio(text: &str) -> Ratio {
    Ratio::new(Decimal::from_str(text).expect("a decimal")).expect("a ratio")
}

/// Five lines like the bench's visit: a consultation over its cap, a grade-B drug, a CT scan,
/// a grade-C consumable and a drug the catalog does not cover.
fn visit() -> Vec<(FeeLine, Option<CatalogEntry>)> {
    let line = |quantity: &str, unit_price_fen: i64| {
        let quantity = Decimal::from_str(quantity).expect("a decimal");
        let unit_price = Amount::from_fen(unit_price_fen);
        let amount = yitong_settlement::split::line_amount(quantity, unit_price).expect("fits");
        FeeLine::new(quantity, unit_price, amount).expect("a valid line")
    };
    let entry = |grade, cap: Option<i64>| {
        Some(CatalogEntry::new(grade, cap.map(Amount::from_fen)).expect("a valid entry"))
    };
    vec![
        (line("1", 2_000), entry(Grade::A, Some(1_500))),
        (
            line("2.5", 1_633),
            entry(
                Grade::B {
                    self_pay_ratio: ratio("0.10"),
                },
                Some(2_500),
            ),
        ),
        (
            line("20", 15_000),
            entry(
                Grade::B {
                    self_pay_ratio: ratio("0.125"),
                },
                Some(14_000),
            ),
        ),
        (line("3", 1_800), entry(Grade::C, None)),
        (line("1", 3_200), None),
    ]
}

fn benches(c: &mut Criterion) {
    let lines = visit();
    let policy = Policy::new(
        Amount::from_fen(70_000),
        ratio("0.85"),
        Amount::from_fen(400_000),
    )
    .expect("policy");
    let before = RunningTotals::new(
        Amount::from_fen(30_000),
        Amount::from_fen(120_000),
        Amount::from_fen(50_000),
    )
    .expect("totals");

    c.bench_function("classify 5 lines", |b| {
        b.iter(|| {
            black_box(&lines)
                .iter()
                .map(|(line, entry)| ClassifiedLine::classify(*line, *entry))
                .collect::<Vec<_>>()
        })
    });

    let classified: Vec<ClassifiedLine> = lines
        .iter()
        .map(|(line, entry)| ClassifiedLine::classify(*line, *entry))
        .collect();
    let claim = Claim::from_lines(&classified).expect("a claim");
    c.bench_function("claim from 5 lines", |b| {
        b.iter(|| Claim::from_lines(black_box(&classified)))
    });
    c.bench_function("split a claim (employee, personal account)", |b| {
        b.iter(|| {
            Split::compute(
                black_box(&claim),
                black_box(&policy),
                black_box(&before),
                InsuranceType::Employee,
                true,
            )
        })
    });
    c.bench_function("settle 5 lines: classify, claim, split", |b| {
        b.iter(|| {
            let classified: Vec<ClassifiedLine> = black_box(&lines)
                .iter()
                .map(|(line, entry)| ClassifiedLine::classify(*line, *entry))
                .collect();
            let claim = Claim::from_lines(&classified).expect("a claim");
            Split::compute(&claim, &policy, &before, InsuranceType::Resident, false)
        })
    });
}

criterion_group!(split, benches);
criterion_main!(split);
