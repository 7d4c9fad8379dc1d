//! `yitong-fuzz [--cases N] [--seed S] [TARGET-SUBSTRING...]`: runs every fuzz target (or those
//! whose name contains one of the arguments) for N inputs each and prints what they did.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut cases: u32 = 10_000;
    let mut seed: u64 = 1;
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let number =
            |value: Option<String>| value.and_then(|value| value.replace('_', "").parse().ok());
        match arg.as_str() {
            "--cases" => match number(args.next()) {
                Some(value) => cases = value,
                None => return usage(),
            },
            "--seed" => match number(args.next()) {
                Some(value) => seed = u64::from(value),
                None => return usage(),
            },
            _ if arg.starts_with('-') => return usage(),
            _ => filters.push(arg),
        }
    }
    let (runtime, harness, schema, _dir) = yitong_fuzz::start();
    let mut failed = false;
    let started = std::time::Instant::now();
    for target in yitong_fuzz::targets::all() {
        if !filters.is_empty()
            && !filters
                .iter()
                .any(|filter| target.name.contains(filter.as_str()))
        {
            continue;
        }
        match yitong_fuzz::run(&runtime, &harness, &schema, &target, cases, seed) {
            Ok(report) => {
                let seconds = report.elapsed.as_secs_f64();
                let per_second =
                    u128::from(report.cases) * 1_000 / report.elapsed.as_millis().max(1);
                let outcomes: Vec<String> = report
                    .outcomes
                    .iter()
                    .map(|(name, count)| format!("{name}={count}"))
                    .collect();
                println!(
                    "{:<40} {:>9} cases {:>8.1} s {:>8}/s  {}",
                    report.target,
                    report.cases,
                    seconds,
                    per_second,
                    outcomes.join(" ")
                );
            }
            Err(error) => {
                println!("FAILED {error}");
                failed = true;
            }
        }
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: yitong-fuzz [--cases N] [--seed S] [TARGET-SUBSTRING...]");
    ExitCode::from(2)
}
