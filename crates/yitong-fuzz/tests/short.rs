//! A short round of every fuzz target, for `cargo test --workspace`; FUZZING.md has the long
//! runs.

// Proves that none of the 45 RPCs' handlers panics or answers INTERNAL, UNKNOWN or DATA_LOSS
// on a few hundred hostile inputs each (valid-looking messages with one value wrong, arbitrary
// values, random bytes, and for the request stream bad frame headers), and that every target
// reaches past decoding: a target whose every input were undecodable would prove nothing.
#[test]
fn every_rpc_survives_hostile_requests() {
    let cases = std::env::var("YITONG_FUZZ_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(200);
    let (runtime, harness, schema, _dir) = yitong_fuzz::start();
    let targets = yitong_fuzz::targets::all();
    assert_eq!(targets.len(), 60, "one target per RPC");
    let mut failures = Vec::new();
    for target in &targets {
        match yitong_fuzz::run(&runtime, &harness, &schema, target, cases, 7) {
            Ok(report) => {
                let decoded: u64 = report
                    .outcomes
                    .iter()
                    .filter(|(name, _)| *name != "undecodable")
                    .map(|(_, count)| count)
                    .sum();
                assert!(decoded > 0, "{}: no input reached the handler", target.name);
            }
            Err(error) => failures.push(error),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
