//! Tests of the benefit arithmetic: a hand-worked table over the four pilot cities and a second
//! pool of Dongying's, the refusals, and properties over generated settlements.

use std::str::FromStr;

use proptest::prelude::*;

use super::*;

const JINAN: &str = "370100";
const ZIBO: &str = "370300";
const DONGYING: &str = "370500";
const BINZHOU: &str = "371600";
const CITIES: [&str; 4] = [JINAN, ZIBO, DONGYING, BINZHOU];
/// A second pool of Dongying (the Shengli Oilfield's, illustrative): its own catalog and
/// policy, a party like any city's pool.
const OILFIELD: &str = "370590";

fn yuan(text: &str) -> Amount {
    Amount::parse_signed(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn ratio(text: &str) -> Ratio {
    Ratio::new(dec(text)).unwrap()
}

/// A grade as the test catalogs write it.
#[derive(Clone, Copy)]
enum G {
    A,
    B(&'static str),
    C,
}

// Illustrative catalogs of the four treatment cities: the same national codes with different
// grades, grade-B self-pay ratios and per-unit price caps, as real city catalogs differ.
//   code  item                  Jinan             Zibo               Dongying          Binzhou
//   X001  amoxicillin capsule   A                 A                  B 10%             A, cap 0.50
//   X002  atorvastatin tablet   B 10%, cap 3.00   B 5%, cap 2.80     A, cap 3.20       B 8%
//   X008  ibuprofen tablet      A                 B 12.5%            B 7.5%            not listed
//   Z003  patent medicine       B 20%             C                  B 15%             B 20%, cap 25.00
//   C004  wound dressing        B 30%, cap 8.00   B 20%              C                 B 25%, cap 7.50
//   S005  CT scan               A, cap 150.00     B 10%, cap 140.00  A, cap 160.00     A
//   S006  consultation          A                 A                  A                 B 10%
//   X007  cosmetic cream        C                 not listed         C                 not listed
const CATALOGS: &[(&str, &str, G, Option<&str>)] = &[
    (JINAN, "X001", G::A, None),
    (JINAN, "X002", G::B("0.10"), Some("3.00")),
    (JINAN, "X008", G::A, None),
    (JINAN, "Z003", G::B("0.20"), None),
    (JINAN, "C004", G::B("0.30"), Some("8.00")),
    (JINAN, "S005", G::A, Some("150.00")),
    (JINAN, "S006", G::A, None),
    (JINAN, "X007", G::C, None),
    (ZIBO, "X001", G::A, None),
    (ZIBO, "X002", G::B("0.05"), Some("2.80")),
    (ZIBO, "X008", G::B("0.1250"), None),
    (ZIBO, "Z003", G::C, None),
    (ZIBO, "C004", G::B("0.20"), None),
    (ZIBO, "S005", G::B("0.10"), Some("140.00")),
    (ZIBO, "S006", G::A, None),
    (DONGYING, "X001", G::B("0.10"), None),
    (DONGYING, "X002", G::A, Some("3.20")),
    (DONGYING, "X008", G::B("0.0750"), None),
    (DONGYING, "Z003", G::B("0.15"), None),
    (DONGYING, "C004", G::C, None),
    (DONGYING, "S005", G::A, Some("160.00")),
    (DONGYING, "S006", G::A, None),
    (DONGYING, "X007", G::C, None),
    (BINZHOU, "X001", G::A, Some("0.50")),
    (BINZHOU, "X002", G::B("0.08"), None),
    (BINZHOU, "Z003", G::B("0.20"), Some("25.00")),
    (BINZHOU, "C004", G::B("0.25"), Some("7.50")),
    (BINZHOU, "S005", G::A, None),
    (BINZHOU, "S006", G::B("0.10"), None),
    // The Oilfield's pool, hosted by Dongying, lists the national codes on its own terms:
    //   X002 B 5%, cap 3.40;  Z003 B 10%;  S005 B 20%, cap 170.00;  S006 A;  X007 not listed.
    (OILFIELD, "X002", G::B("0.05"), Some("3.40")),
    (OILFIELD, "Z003", G::B("0.10"), None),
    (OILFIELD, "S005", G::B("0.20"), Some("170.00")),
    (OILFIELD, "S006", G::A, None),
];

/// The treatment city's catalog entry for a code; `None` when the city does not list it.
fn catalog_entry(city: &str, code: &str) -> Option<CatalogEntry> {
    let &(_, _, grade, cap) = CATALOGS
        .iter()
        .find(|(c, k, _, _)| *c == city && *k == code)?;
    let grade = match grade {
        G::A => Grade::A,
        G::B(r) => Grade::B {
            self_pay_ratio: ratio(r),
        },
        G::C => Grade::C,
    };
    Some(CatalogEntry::new(grade, cap.map(yuan)).unwrap())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Person {
    EmployeeInService,
    EmployeeRetired,
    Resident,
}

// Illustrative policies of the four insured cities at one hospital level, per person:
// yearly deductible, reimbursement ratio, yearly cap.
//              employee in service       employee retired            resident
//   Jinan      200.00  0.70  3000.00     150.00  0.80    4000.00     100.00  0.50  1500.00
//   Zibo       100.00  0.75  2500.00     100.00  0.85    3500.00      50.00  0.55  1200.00
//   Dongying   300.00  0.65  2000.00     200.00  0.75    3000.00       0.00  0.45   800.00
//   Binzhou    150.00  0.60  2200.00     120.00  0.7250  3200.00      80.00  0.50  1000.00
const POLICIES: &[(&str, Person, &str, &str, &str)] = &[
    (
        JINAN,
        Person::EmployeeInService,
        "200.00",
        "0.70",
        "3000.00",
    ),
    (JINAN, Person::EmployeeRetired, "150.00", "0.80", "4000.00"),
    (JINAN, Person::Resident, "100.00", "0.50", "1500.00"),
    (ZIBO, Person::EmployeeInService, "100.00", "0.75", "2500.00"),
    (ZIBO, Person::EmployeeRetired, "100.00", "0.85", "3500.00"),
    (ZIBO, Person::Resident, "50.00", "0.55", "1200.00"),
    (
        DONGYING,
        Person::EmployeeInService,
        "300.00",
        "0.65",
        "2000.00",
    ),
    (
        DONGYING,
        Person::EmployeeRetired,
        "200.00",
        "0.75",
        "3000.00",
    ),
    (DONGYING, Person::Resident, "0.00", "0.45", "800.00"),
    (
        BINZHOU,
        Person::EmployeeInService,
        "150.00",
        "0.60",
        "2200.00",
    ),
    (
        BINZHOU,
        Person::EmployeeRetired,
        "120.00",
        "0.7250",
        "3200.00",
    ),
    (BINZHOU, Person::Resident, "80.00", "0.50", "1000.00"),
    // The Oilfield's pool: employee in service 250.00, 0.80, 2500.00.
    (
        OILFIELD,
        Person::EmployeeInService,
        "250.00",
        "0.80",
        "2500.00",
    ),
];

/// The insured city's policy row for the person, and the person's insurance type.
fn policy(city: &str, person: Person) -> (InsuranceType, Policy) {
    let &(_, _, deductible, reimbursement_ratio, cap) = POLICIES
        .iter()
        .find(|(c, p, ..)| *c == city && *p == person)
        .unwrap();
    let insurance_type = match person {
        Person::EmployeeInService | Person::EmployeeRetired => InsuranceType::Employee,
        Person::Resident => InsuranceType::Resident,
    };
    let policy = Policy::new(yuan(deductible), ratio(reimbursement_ratio), yuan(cap)).unwrap();
    (insurance_type, policy)
}

/// One settlement worked out by hand.
struct Case {
    name: &'static str,
    treated_in: &'static str,
    insured_in: &'static str,
    person: Person,
    /// Fee lines as the HIS sends them: code, quantity, unit price, amount.
    lines: &'static [(&'static str, &'static str, &'static str, &'static str)],
    /// Running totals before: deductible used, fund paid, account balance.
    before: [&'static str; 3],
    use_account: bool,
    /// total, full self-pay, over-cap, pre-self-pay, in-scope, deductible applied, fund pay,
    /// person's share, account pay, cash pay, deductible left, cap left, balance after.
    want: [&'static str; 13],
}

// The basket every city-pair case bills, 295.00 in all. Classified by each treatment city:
//   Jinan:    X002 B 10% cap 3.00: over (3.50-3.00)x10 = 5.00, pre 30.00x0.10 = 3.00, in 27.00
//             Z003 B 20%: pre 60.00x0.20 = 12.00, in 48.00
//             S005 A cap 150.00: over 30.00, in 150.00;  X007 C: full 20.00
//             => full 20.00, over 35.00, pre 15.00, in-scope 225.00
//   Zibo:     X002 B 5% cap 2.80: over 0.70x10 = 7.00, pre 28.00x0.05 = 1.40, in 26.60
//             Z003 C: full 60.00
//             S005 B 10% cap 140.00: over 40.00, pre 14.00, in 126.00;  X007 unlisted: full 20.00
//             => full 80.00, over 47.00, pre 15.40, in-scope 152.60
//   Dongying: X002 A cap 3.20: over 0.30x10 = 3.00, in 32.00
//             Z003 B 15%: pre 9.00, in 51.00
//             S005 A cap 160.00: over 20.00, in 160.00;  X007 C: full 20.00
//             => full 20.00, over 23.00, pre 9.00, in-scope 243.00
//   Binzhou:  X002 B 8%: pre 2.80, in 32.20
//             Z003 B 20% cap 25.00: over 5.00x2 = 10.00, pre 50.00x0.20 = 10.00, in 40.00
//             S005 A: in 180.00;  X007 unlisted: full 20.00
//             => full 20.00, over 10.00, pre 12.80, in-scope 252.20
// The person is an employee in service with 100.00 of the deductible used, 1000.00 paid by the
// fund this year and 100.00 in the account, asked to pay from it. Under each insured city:
//   Jinan deductible left 100.00, cap left 2000.00;  Zibo 0.00, 1500.00;
//   Dongying 200.00, 1000.00;  Binzhou 50.00, 1200.00.
const BASKET: &[(&str, &str, &str, &str)] = &[
    ("X002", "10", "3.50", "35.00"),
    ("Z003", "2", "30.00", "60.00"),
    ("S005", "1", "180.00", "180.00"),
    ("X007", "1", "20.00", "20.00"),
];
const BASKET_BEFORE: [&str; 3] = ["100.00", "1000.00", "100.00"];

#[rustfmt::skip]
const CASES: &[Case] = &[
    // ---- Every ordered pair of the four cities, the basket above. ----
    // in 225.00, deductible 100.00; fund (225.00-100.00)x0.70 = 87.50; share 295.00-87.50 = 207.50
    // = account 100.00 + cash 107.50; cap left 2000.00-87.50 = 1912.50
    Case { name: "pair Jinan treats, Jinan insures", treated_in: JINAN, insured_in: JINAN,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "35.00", "15.00", "225.00", "100.00", "87.50", "207.50", "100.00", "107.50", "0.00", "1912.50", "0.00"] },
    // in 225.00, deductible 0.00; fund 225.00x0.75 = 168.75; share 126.25 = 100.00 + 26.25;
    // cap left 1500.00-168.75 = 1331.25
    Case { name: "pair Jinan treats, Zibo insures", treated_in: JINAN, insured_in: ZIBO,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "35.00", "15.00", "225.00", "0.00", "168.75", "126.25", "100.00", "26.25", "0.00", "1331.25", "0.00"] },
    // in 225.00, deductible min(225.00, 200.00) = 200.00; fund 25.00x0.65 = 16.25;
    // share 278.75 = 100.00 + 178.75; cap left 1000.00-16.25 = 983.75
    Case { name: "pair Jinan treats, Dongying insures", treated_in: JINAN, insured_in: DONGYING,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "35.00", "15.00", "225.00", "200.00", "16.25", "278.75", "100.00", "178.75", "0.00", "983.75", "0.00"] },
    // in 225.00, deductible 50.00; fund 175.00x0.60 = 105.00; share 190.00 = 100.00 + 90.00;
    // cap left 1200.00-105.00 = 1095.00
    Case { name: "pair Jinan treats, Binzhou insures", treated_in: JINAN, insured_in: BINZHOU,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "35.00", "15.00", "225.00", "50.00", "105.00", "190.00", "100.00", "90.00", "0.00", "1095.00", "0.00"] },
    // in 152.60, deductible 100.00; fund 52.60x0.70 = 36.82; share 258.18 = 100.00 + 158.18;
    // cap left 2000.00-36.82 = 1963.18
    Case { name: "pair Zibo treats, Jinan insures", treated_in: ZIBO, insured_in: JINAN,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "100.00", "36.82", "258.18", "100.00", "158.18", "0.00", "1963.18", "0.00"] },
    // in 152.60, deductible 0.00; fund 152.60x0.75 = 114.45; share 180.55 = 100.00 + 80.55;
    // cap left 1500.00-114.45 = 1385.55
    Case { name: "pair Zibo treats, Zibo insures", treated_in: ZIBO, insured_in: ZIBO,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "0.00", "114.45", "180.55", "100.00", "80.55", "0.00", "1385.55", "0.00"] },
    // in 152.60 below the 200.00 left: deductible 152.60, fund 0.00; share 295.00 = 100.00 +
    // 195.00; deductible left 300.00-(100.00+152.60) = 47.40; cap left 1000.00
    Case { name: "pair Zibo treats, Dongying insures", treated_in: ZIBO, insured_in: DONGYING,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "152.60", "0.00", "295.00", "100.00", "195.00", "47.40", "1000.00", "0.00"] },
    // in 152.60, deductible 50.00; fund 102.60x0.60 = 61.56; share 233.44 = 100.00 + 133.44;
    // cap left 1200.00-61.56 = 1138.44
    Case { name: "pair Zibo treats, Binzhou insures", treated_in: ZIBO, insured_in: BINZHOU,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "50.00", "61.56", "233.44", "100.00", "133.44", "0.00", "1138.44", "0.00"] },
    // in 243.00, deductible 100.00; fund 143.00x0.70 = 100.10; share 194.90 = 100.00 + 94.90;
    // cap left 2000.00-100.10 = 1899.90
    Case { name: "pair Dongying treats, Jinan insures", treated_in: DONGYING, insured_in: JINAN,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "23.00", "9.00", "243.00", "100.00", "100.10", "194.90", "100.00", "94.90", "0.00", "1899.90", "0.00"] },
    // in 243.00, deductible 0.00; fund 243.00x0.75 = 182.25; share 112.75 = 100.00 + 12.75;
    // cap left 1500.00-182.25 = 1317.75
    Case { name: "pair Dongying treats, Zibo insures", treated_in: DONGYING, insured_in: ZIBO,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "23.00", "9.00", "243.00", "0.00", "182.25", "112.75", "100.00", "12.75", "0.00", "1317.75", "0.00"] },
    // in 243.00, deductible 200.00; fund 43.00x0.65 = 27.95; share 267.05 = 100.00 + 167.05;
    // cap left 1000.00-27.95 = 972.05
    Case { name: "pair Dongying treats, Dongying insures", treated_in: DONGYING, insured_in: DONGYING,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "23.00", "9.00", "243.00", "200.00", "27.95", "267.05", "100.00", "167.05", "0.00", "972.05", "0.00"] },
    // in 243.00, deductible 50.00; fund 193.00x0.60 = 115.80; share 179.20 = 100.00 + 79.20;
    // cap left 1200.00-115.80 = 1084.20
    Case { name: "pair Dongying treats, Binzhou insures", treated_in: DONGYING, insured_in: BINZHOU,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "23.00", "9.00", "243.00", "50.00", "115.80", "179.20", "100.00", "79.20", "0.00", "1084.20", "0.00"] },
    // in 252.20, deductible 100.00; fund 152.20x0.70 = 106.54; share 188.46 = 100.00 + 88.46;
    // cap left 2000.00-106.54 = 1893.46
    Case { name: "pair Binzhou treats, Jinan insures", treated_in: BINZHOU, insured_in: JINAN,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "10.00", "12.80", "252.20", "100.00", "106.54", "188.46", "100.00", "88.46", "0.00", "1893.46", "0.00"] },
    // in 252.20, deductible 0.00; fund 252.20x0.75 = 189.15; share 105.85 = 100.00 + 5.85;
    // cap left 1500.00-189.15 = 1310.85
    Case { name: "pair Binzhou treats, Zibo insures", treated_in: BINZHOU, insured_in: ZIBO,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "10.00", "12.80", "252.20", "0.00", "189.15", "105.85", "100.00", "5.85", "0.00", "1310.85", "0.00"] },
    // in 252.20, deductible 200.00; fund 52.20x0.65 = 33.93; share 261.07 = 100.00 + 161.07;
    // cap left 1000.00-33.93 = 966.07
    Case { name: "pair Binzhou treats, Dongying insures", treated_in: BINZHOU, insured_in: DONGYING,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "10.00", "12.80", "252.20", "200.00", "33.93", "261.07", "100.00", "161.07", "0.00", "966.07", "0.00"] },
    // in 252.20, deductible 50.00; fund 202.20x0.60 = 121.32; share 173.68 = 100.00 + 73.68;
    // cap left 1200.00-121.32 = 1078.68
    Case { name: "pair Binzhou treats, Binzhou insures", treated_in: BINZHOU, insured_in: BINZHOU,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "10.00", "12.80", "252.20", "50.00", "121.32", "173.68", "100.00", "73.68", "0.00", "1078.68", "0.00"] },

    // ---- Two pools of one city: Dongying's and the Oilfield's. ----
    // The basket at the Oilfield's institution, by the Oilfield's catalog (the treatment pool):
    //   X002 B 5% cap 3.40: over 0.10x10 = 1.00, pre 34.00x0.05 = 1.70, in 32.30
    //   Z003 B 10%: pre 6.00, in 54.00;  S005 B 20% cap 170.00: over 10.00, pre 34.00, in 136.00
    //   X007 unlisted: full 20.00  => full 20.00, over 11.00, pre 41.70, in-scope 222.30
    // under Dongying's policy (the insured pool): deductible left 200.00, applied 200.00;
    // fund 22.30x0.65 = 14.495 -> 14.50; share 280.50 = 100.00 + 180.50; cap left
    // 2000.00-(1000.00+14.50) = 985.50
    Case { name: "pools Oilfield treats, Dongying insures", treated_in: OILFIELD, insured_in: DONGYING,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "11.00", "41.70", "222.30", "200.00", "14.50", "280.50", "100.00", "180.50", "0.00", "985.50", "0.00"] },
    // The basket at Dongying's institution, by Dongying's catalog: in-scope 243.00 (above);
    // under the Oilfield's policy: deductible left 250.00-100.00 = 150.00, applied 150.00;
    // fund 93.00x0.80 = 74.40; share 220.60 = 100.00 + 120.60; cap left
    // 2500.00-(1000.00+74.40) = 1425.60
    Case { name: "pools Dongying treats, Oilfield insures", treated_in: DONGYING, insured_in: OILFIELD,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "23.00", "9.00", "243.00", "150.00", "74.40", "220.60", "100.00", "120.60", "0.00", "1425.60", "0.00"] },
    // The Oilfield's own: its catalog and its policy. in 222.30, deductible 150.00; fund
    // 72.30x0.80 = 57.84; share 237.16 = 100.00 + 137.16; cap left 2500.00-1057.84 = 1442.16
    Case { name: "pools Oilfield treats, Oilfield insures", treated_in: OILFIELD, insured_in: OILFIELD,
        person: Person::EmployeeInService, lines: BASKET, before: BASKET_BEFORE, use_account: true,
        want: ["295.00", "20.00", "11.00", "41.70", "222.30", "150.00", "57.84", "237.16", "100.00", "137.16", "0.00", "1442.16", "0.00"] },

    // ---- Grades, price caps and rounding. ----
    // X001 A: 3 x 12.50 = 37.50 all in scope; a fresh year's 200.00 deductible takes all of it,
    // fund 0.00; share 37.50 from the account; deductible left 200.00-37.50 = 162.50;
    // balance 500.00-37.50 = 462.50
    Case { name: "grade A, fresh year: the deductible takes the whole in-scope amount",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("X001", "3", "12.50", "37.50")], before: ["0.00", "0.00", "500.00"], use_account: true,
        want: ["37.50", "0.00", "0.00", "0.00", "37.50", "37.50", "0.00", "37.50", "37.50", "0.00", "162.50", "3000.00", "462.50"] },
    // X001 A: 4 x 12.50 = 50.00 in scope; deductible used up; fund 50.00x0.70 = 35.00;
    // share 15.00 from the account; cap left 3000.00-(500.00+35.00) = 2465.00; balance 985.00
    Case { name: "grade A, deductible fully used",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("X001", "4", "12.50", "50.00")], before: ["200.00", "500.00", "1000.00"], use_account: true,
        want: ["50.00", "0.00", "0.00", "0.00", "50.00", "0.00", "35.00", "15.00", "15.00", "0.00", "0.00", "2465.00", "985.00"] },
    // S006 A in Zibo: 80.00 in scope; deductible left 100.00-60.00 = 40.00, applied 40.00;
    // fund 40.00x0.75 = 30.00; share 50.00 all cash (account not asked); cap left 2470.00
    Case { name: "deductible partly used and crossed; account not asked",
        treated_in: ZIBO, insured_in: ZIBO, person: Person::EmployeeInService,
        lines: &[("S006", "1", "80.00", "80.00")], before: ["60.00", "0.00", "200.00"], use_account: false,
        want: ["80.00", "0.00", "0.00", "0.00", "80.00", "40.00", "30.00", "50.00", "0.00", "50.00", "0.00", "2470.00", "200.00"] },
    // X008 B 12.5% in Zibo: 2 x 6.10 = 12.20; pre 12.20x0.125 = 1.525 -> 1.53 (half away from
    // zero; the banker's rule would give 1.52); in 10.67; fund 10.67x0.75 = 8.0025 -> 8.00;
    // share 4.20 from the account; balance 50.00-4.20 = 45.80; cap left 2492.00
    Case { name: "grade-B pre-self-pay rounds half away from zero",
        treated_in: ZIBO, insured_in: ZIBO, person: Person::EmployeeInService,
        lines: &[("X008", "2", "6.10", "12.20")], before: ["100.00", "0.00", "50.00"], use_account: true,
        want: ["12.20", "0.00", "0.00", "1.53", "10.67", "0.00", "8.00", "4.20", "4.20", "0.00", "0.00", "2492.00", "45.80"] },
    // S006 A: 100.02 in scope; fund 100.02x0.75 = 75.015 -> 75.02; share 25.00; the account
    // is asked but empty, so all cash; cap left 2500.00-75.02 = 2424.98
    Case { name: "fund pay rounds half away from zero; empty account",
        treated_in: ZIBO, insured_in: ZIBO, person: Person::EmployeeInService,
        lines: &[("S006", "1", "100.02", "100.02")], before: ["100.00", "0.00", "0.00"], use_account: true,
        want: ["100.02", "0.00", "0.00", "0.00", "100.02", "0.00", "75.02", "25.00", "0.00", "25.00", "0.00", "2424.98", "0.00"] },
    // X007 C in Jinan: 45.00 fully self-paid; in scope 0.00, so no deductible and no fund;
    // share 45.00 from the account; balance 55.00; deductible and cap untouched
    Case { name: "grade C is fully self-paid",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("X007", "1", "45.00", "45.00")], before: ["0.00", "0.00", "100.00"], use_account: true,
        want: ["45.00", "45.00", "0.00", "0.00", "0.00", "0.00", "0.00", "45.00", "45.00", "0.00", "200.00", "3000.00", "55.00"] },
    // X007 is not in Binzhou's catalog: 2 x 15.00 = 30.00 fully self-paid; S005 A: 120.00 in
    // scope; resident deductible 80.00 used; fund 120.00x0.50 = 60.00; share 150.00-60.00 =
    // 90.00 in cash although the account is asked (residents have none); cap left 940.00
    Case { name: "code not in the treatment catalog; resident asks for the account",
        treated_in: BINZHOU, insured_in: BINZHOU, person: Person::Resident,
        lines: &[("X007", "2", "15.00", "30.00"), ("S005", "1", "120.00", "120.00")],
        before: ["80.00", "0.00", "300.00"], use_account: true,
        want: ["150.00", "30.00", "0.00", "0.00", "120.00", "0.00", "60.00", "90.00", "0.00", "90.00", "0.00", "940.00", "300.00"] },
    // S005 A cap 150.00 in Jinan at 200.00: over 50.00, in 150.00; retired row: deductible left
    // 150.00-100.00 = 50.00; fund 100.00x0.80 = 80.00; share 120.00 from the account;
    // cap left 4000.00-80.00 = 3920.00; balance 880.00
    Case { name: "grade-A price cap exceeded; retired policy row",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeRetired,
        lines: &[("S005", "1", "200.00", "200.00")], before: ["100.00", "0.00", "1000.00"], use_account: true,
        want: ["200.00", "0.00", "50.00", "0.00", "150.00", "50.00", "80.00", "120.00", "120.00", "0.00", "0.00", "3920.00", "880.00"] },
    // C004 B 30% cap 8.00 in Jinan: 3 x 9.00 = 27.00; over 1.00x3 = 3.00; within 24.00; pre
    // 24.00x0.30 = 7.20; in 16.80; fund 16.80x0.70 = 11.76; share 15.24 cash; cap left 2988.24
    Case { name: "grade-B price cap: pre-self-pay only on the part within the cap",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("C004", "3", "9.00", "27.00")], before: ["200.00", "0.00", "0.00"], use_account: false,
        want: ["27.00", "0.00", "3.00", "7.20", "16.80", "0.00", "11.76", "15.24", "0.00", "15.24", "0.00", "2988.24", "0.00"] },
    // X001 A cap 0.50 in Binzhou: 2.5 x 0.73 = 1.825 -> 1.83; over 0.23x2.5 = 0.575 -> 0.58;
    // in 1.25; fund 1.25x0.60 = 0.75; share 1.08 from the account; balance 8.92;
    // cap left 2199.25
    Case { name: "fractional quantity: amount and over-cap part each round half away from zero",
        treated_in: BINZHOU, insured_in: BINZHOU, person: Person::EmployeeInService,
        lines: &[("X001", "2.5", "0.73", "1.83")], before: ["150.00", "0.00", "10.00"], use_account: true,
        want: ["1.83", "0.00", "0.58", "0.00", "1.25", "0.00", "0.75", "1.08", "1.08", "0.00", "0.00", "2199.25", "8.92"] },
    // X002 A cap 3.20 in Dongying at 3.00 (under the cap): 90.00; S006 A: 20.00; in 110.00;
    // retired row 0.75 (in service would be 0.65): fund 82.50; share 27.50 from the account;
    // cap left 3000.00-(100.00+82.50) = 2817.50; balance 472.50
    Case { name: "retired person uses the retired policy row",
        treated_in: DONGYING, insured_in: DONGYING, person: Person::EmployeeRetired,
        lines: &[("X002", "30", "3.00", "90.00"), ("S006", "1", "20.00", "20.00")],
        before: ["200.00", "100.00", "500.00"], use_account: true,
        want: ["110.00", "0.00", "0.00", "0.00", "110.00", "0.00", "82.50", "27.50", "27.50", "0.00", "0.00", "2817.50", "472.50"] },
    // S005 A: 99.99 in scope; Binzhou retired ratio 0.7250: fund 99.99x0.725 = 72.49275 ->
    // 72.49; share 27.50 cash; cap left 3200.00-72.49 = 3127.51
    Case { name: "four-digit reimbursement ratio, rounded down below the half",
        treated_in: BINZHOU, insured_in: BINZHOU, person: Person::EmployeeRetired,
        lines: &[("S005", "1", "99.99", "99.99")], before: ["120.00", "0.00", "0.00"], use_account: false,
        want: ["99.99", "0.00", "0.00", "0.00", "99.99", "0.00", "72.49", "27.50", "0.00", "27.50", "0.00", "3127.51", "0.00"] },
    // S006 A: 300.00 in scope; 300.00x0.70 = 210.00 but only 3000.00-2900.00 = 100.00 left:
    // fund 100.00; share 200.00 from the account; cap left 0.00; balance 800.00
    Case { name: "cap nearly exhausted: fund pay clipped to the cap left",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("S006", "1", "300.00", "300.00")], before: ["200.00", "2900.00", "1000.00"], use_account: true,
        want: ["300.00", "0.00", "0.00", "0.00", "300.00", "0.00", "100.00", "200.00", "200.00", "0.00", "0.00", "0.00", "800.00"] },
    // S006 A: 2 x 50.00 = 100.00 in scope; cap 2500.00 all paid: fund 0.00; 100.00 cash
    Case { name: "cap exhausted: fund pays nothing",
        treated_in: ZIBO, insured_in: ZIBO, person: Person::EmployeeInService,
        lines: &[("S006", "2", "50.00", "100.00")], before: ["100.00", "2500.00", "0.00"], use_account: false,
        want: ["100.00", "0.00", "0.00", "0.00", "100.00", "0.00", "0.00", "100.00", "0.00", "100.00", "0.00", "0.00", "0.00"] },
    // As above, with 2600.00 already paid against a cap since lowered to 2500.00: the cap left is
    // max(2500.00-2600.00, 0) = 0.00, never negative, and the fund pays 0.00
    Case { name: "fund paid above a lowered cap: cap left is zero, not negative",
        treated_in: ZIBO, insured_in: ZIBO, person: Person::EmployeeInService,
        lines: &[("S006", "2", "50.00", "100.00")], before: ["100.00", "2600.00", "0.00"], use_account: false,
        want: ["100.00", "0.00", "0.00", "0.00", "100.00", "0.00", "0.00", "100.00", "0.00", "100.00", "0.00", "0.00", "0.00"] },
    // S006 A: 400.00 in scope; fund 400.00x0.65 = 260.00; share 140.00: account min(140.00,
    // 50.00) = 50.00, cash 90.00; balance 0.00; cap left 1740.00
    Case { name: "balance smaller than the share: the rest in cash",
        treated_in: DONGYING, insured_in: DONGYING, person: Person::EmployeeInService,
        lines: &[("S006", "1", "400.00", "400.00")], before: ["300.00", "0.00", "50.00"], use_account: true,
        want: ["400.00", "0.00", "0.00", "0.00", "400.00", "0.00", "260.00", "140.00", "50.00", "90.00", "0.00", "1740.00", "0.00"] },
    // S006 A: 33.33 in scope; Dongying residents have no deductible; fund 33.33x0.45 =
    // 14.9985 -> 15.00; share 18.33 cash; cap left 800.00-15.00 = 785.00
    Case { name: "resident with no deductible; fund rounds up",
        treated_in: DONGYING, insured_in: DONGYING, person: Person::Resident,
        lines: &[("S006", "1", "33.33", "33.33")], before: ["0.00", "0.00", "0.00"], use_account: false,
        want: ["33.33", "0.00", "0.00", "0.00", "33.33", "0.00", "15.00", "18.33", "0.00", "18.33", "0.00", "785.00", "0.00"] },
    // Jinan catalog, five lines:
    //   X001 A: 2 x 5.00 = 10.00, in 10.00
    //   X002 B 10% cap 3.00: 7 x 3.33 = 23.31; over 0.33x7 = 2.31; pre 21.00x0.10 = 2.10; in 18.90
    //   Z003 B 20%: 1.5 x 11.11 = 16.665 -> 16.67; pre 3.334 -> 3.33; in 13.34
    //   X007 C: 8.88 full
    //   C004 B 30% cap 8.00 at 7.99: 15.98; pre 4.794 -> 4.79; in 11.19
    // total 74.84 = full 8.88 + over 2.31 + pre 10.22 + in 53.43; deductible left 20.00;
    // fund 33.43x0.70 = 23.401 -> 23.40; share 51.44 = account 30.00 + cash 21.44;
    // cap left 2976.60
    Case { name: "several lines of every kind",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("X001", "2", "5.00", "10.00"), ("X002", "7", "3.33", "23.31"),
            ("Z003", "1.5", "11.11", "16.67"), ("X007", "1", "8.88", "8.88"), ("C004", "2", "7.99", "15.98")],
        before: ["180.00", "0.00", "30.00"], use_account: true,
        want: ["74.84", "8.88", "2.31", "10.22", "53.43", "20.00", "23.40", "51.44", "30.00", "21.44", "0.00", "2976.60", "0.00"] },
    // X001 A: 0.3333 x 10.00 = 3.333 -> 3.33; fund 3.33x0.70 = 2.331 -> 2.33; share 1.00 cash;
    // cap left 2997.67
    Case { name: "quantity with four fraction digits",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("X001", "0.3333", "10.00", "3.33")], before: ["200.00", "0.00", "0.00"], use_account: false,
        want: ["3.33", "0.00", "0.00", "0.00", "3.33", "0.00", "2.33", "1.00", "0.00", "1.00", "0.00", "2997.67", "0.00"] },
    // X001 is grade B 10% in Dongying (grade A in Jinan): 4 x 12.50 = 50.00; pre 5.00; in
    // 45.00; Jinan's policy: fund 45.00x0.70 = 31.50; share 18.50 cash; cap left 2968.50
    Case { name: "the treatment city's grade applies, not the insured city's",
        treated_in: DONGYING, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("X001", "4", "12.50", "50.00")], before: ["200.00", "0.00", "0.00"], use_account: false,
        want: ["50.00", "0.00", "0.00", "5.00", "45.00", "0.00", "31.50", "18.50", "0.00", "18.50", "0.00", "2968.50", "0.00"] },
    // Zibo catalog: S006 A 60.00; C004 B 20%: 5 x 8.00 = 40.00, pre 8.00, in 32.00; in 92.00;
    // Jinan retired: deductible left 150.00-130.00 = 20.00; 72.00x0.80 = 57.60 but cap left
    // 4000.00-3950.00 = 50.00: fund 50.00; share 50.00 from the account; balance 950.00
    Case { name: "retired, deductible partly used and cap nearly exhausted together",
        treated_in: ZIBO, insured_in: JINAN, person: Person::EmployeeRetired,
        lines: &[("S006", "1", "60.00", "60.00"), ("C004", "5", "8.00", "40.00")],
        before: ["130.00", "3950.00", "1000.00"], use_account: true,
        want: ["100.00", "0.00", "0.00", "8.00", "92.00", "20.00", "50.00", "50.00", "50.00", "0.00", "0.00", "0.00", "950.00"] },
    // S006 is grade B 10% in Binzhou: 25.00; pre 2.50; in 22.50; Zibo resident deductible
    // left 50.00-20.00 = 30.00 takes all 22.50: fund 0.00; share 25.00 cash (resident);
    // deductible left 50.00-42.50 = 7.50
    Case { name: "resident insured elsewhere; deductible not reached",
        treated_in: BINZHOU, insured_in: ZIBO, person: Person::Resident,
        lines: &[("S006", "1", "25.00", "25.00")], before: ["20.00", "0.00", "0.00"], use_account: true,
        want: ["25.00", "0.00", "0.00", "2.50", "22.50", "22.50", "0.00", "25.00", "0.00", "25.00", "7.50", "1200.00", "0.00"] },
    // S006 A: 10.00; 150.00 used against a deductible since lowered to 100.00: left
    // max(100.00-150.00, 0) = 0.00; fund 10.00x0.75 = 7.50; share 2.50 cash; cap left 2492.50
    Case { name: "deductible used above a lowered deductible: nothing left, not negative",
        treated_in: ZIBO, insured_in: ZIBO, person: Person::EmployeeInService,
        lines: &[("S006", "1", "10.00", "10.00")], before: ["150.00", "0.00", "0.00"], use_account: false,
        want: ["10.00", "0.00", "0.00", "0.00", "10.00", "0.00", "7.50", "2.50", "0.00", "2.50", "0.00", "2492.50", "0.00"] },
    // S005 A cap 150.00 at exactly 150.00: nothing over the cap; fund 150.00x0.70 = 105.00;
    // share 45.00 cash; cap left 2895.00
    Case { name: "price equal to the cap: nothing over the cap",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("S005", "1", "150.00", "150.00")], before: ["200.00", "0.00", "0.00"], use_account: false,
        want: ["150.00", "0.00", "0.00", "0.00", "150.00", "0.00", "105.00", "45.00", "0.00", "45.00", "0.00", "2895.00", "0.00"] },
    // X008 B 7.5% in Dongying: 3 x 2.35 = 7.05; pre 7.05x0.075 = 0.52875 -> 0.53; in 6.52;
    // fund 6.52x0.65 = 4.238 -> 4.24; share 2.81 from the account; balance 17.19;
    // cap left 1995.76
    // X002 B 10% cap 3.00 in Jinan, a tablet at 3.123456: 60 x 3.123456 = 187.40736 -> 187.41;
    // over the cap (3.123456-3.00) x 60 = 7.40736 -> 7.41; within 180.00; pre 18.00; in
    // 162.00; deductible reached; fund 162.00x0.70 = 113.40; share 74.01 cash; cap left 2886.60
    Case { name: "per-tablet price with six decimals above its cap",
        treated_in: JINAN, insured_in: JINAN, person: Person::EmployeeInService,
        lines: &[("X002", "60", "3.123456", "187.41")], before: ["200.00", "0.00", "0.00"], use_account: false,
        want: ["187.41", "0.00", "7.41", "18.00", "162.00", "0.00", "113.40", "74.01", "0.00", "74.01", "0.00", "2886.60", "0.00"] },
    // X001 A cap 0.50 in Binzhou, 10000 tablets at 0.500001: 5000.01; one millionth of a yuan
    // over the cap per tablet, 0.01 in all; in 5000.00; fund 5000.00x0.60 = 3000.00 above the
    // cap left 2200.00: 2200.00; share 2800.01 cash; cap left 0.00
    Case { name: "a millionth of a yuan over the cap, times ten thousand tablets",
        treated_in: BINZHOU, insured_in: BINZHOU, person: Person::EmployeeInService,
        lines: &[("X001", "10000", "0.500001", "5000.01")], before: ["150.00", "0.00", "0.00"], use_account: false,
        want: ["5000.01", "0.00", "0.01", "0.00", "5000.00", "0.00", "2200.00", "2800.01", "0.00", "2800.01", "0.00", "0.00", "0.00"] },
    Case { name: "four-digit self-pay ratio rounds up above the half",
        treated_in: DONGYING, insured_in: DONGYING, person: Person::EmployeeInService,
        lines: &[("X008", "3", "2.35", "7.05")], before: ["300.00", "0.00", "20.00"], use_account: true,
        want: ["7.05", "0.00", "0.00", "0.53", "6.52", "0.00", "4.24", "2.81", "2.81", "0.00", "0.00", "1995.76", "17.19"] },
];

/// Settles one case: classifies its lines with the treatment city's catalog and splits the
/// claim under the insured city's policy.
fn settle(case: &Case) -> (Split, RunningTotals) {
    let lines: Vec<ClassifiedLine> = case
        .lines
        .iter()
        .map(|&(code, quantity, unit_price, amount)| {
            let unit_price = UnitPrice::parse(unit_price).unwrap();
            let line = FeeLine::new(dec(quantity), unit_price, yuan(amount))
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            ClassifiedLine::classify(line, catalog_entry(case.treated_in, code))
        })
        .collect();
    let claim = Claim::from_lines(&lines).unwrap();
    let (insurance_type, policy) = policy(case.insured_in, case.person);
    let [deductible_used, fund_paid, balance] = case.before.map(yuan);
    let before = RunningTotals::new(deductible_used, fund_paid, balance).unwrap();
    let split = Split::compute(&claim, &policy, &before, insurance_type, case.use_account);
    (split, before)
}

// Proves every hand-worked split to the fen: the treatment city's catalog classifies the lines,
// the insured city's policy and the person's totals split the claim.
#[test]
fn hand_worked_splits() {
    assert!(CASES.len() >= 30, "the table holds {} cases", CASES.len());
    for case in CASES {
        let (split, _) = settle(case);
        let got = [
            split.total_amount(),
            split.full_self_pay(),
            split.over_cap_self_pay(),
            split.pre_self_pay(),
            split.in_scope_amount(),
            split.deductible_applied(),
            split.fund_pay(),
            split.person_share(),
            split.account_pay(),
            split.cash_pay(),
            split.deductible_left(),
            split.annual_cap_left(),
            split.account_balance(),
        ];
        assert_eq!(got, case.want.map(yuan), "{}", case.name);
        // The fund itemised (setldetail): an ordinary visit's fund pay is one line of the
        // person's basic pooling fund against no disease, summing to the hand-worked fund pay
        // (column 7), or no line at all when the fund pays nothing.
        let (insurance_type, _) = policy(case.insured_in, case.person);
        let lines: Vec<(&str, Option<String>, Amount)> = split
            .itemised(insurance_type, "")
            .into_iter()
            .map(|line| (line.fund_type.code(), line.disease_code, line.amount))
            .collect();
        let want_lines = match case.want[6] {
            "0.00" => vec![],
            fund_pay => vec![(pool_code(case.person), None, yuan(fund_pay))],
        };
        assert_eq!(lines, want_lines, "{}: the fund itemised", case.name);
    }
}

/// The national fund type that pays for the person's insurance type, as written by hand.
fn pool_code(person: Person) -> &'static str {
    match person {
        Person::EmployeeInService | Person::EmployeeRetired => "310100",
        Person::Resident => "390100",
    }
}

// Proves the hand-worked table's fund breakdowns cover both pooling funds and a split whose
// fund pays nothing (no line).
#[test]
fn breakdown_table_covers_both_funds_and_none() {
    let has = |code: &str| {
        CASES
            .iter()
            .any(|case| case.want[6] != "0.00" && pool_code(case.person) == code)
    };
    assert!(has("310100") && has("390100"));
    assert!(CASES.iter().any(|case| case.want[6] == "0.00"));
}

/// One settlement of the basket under a filing standing, worked out by hand.
struct FilingCase {
    name: &'static str,
    treated_in: &'static str,
    insured_in: &'static str,
    /// The insured city's filing policy toward the treatment city: filing required, what an
    /// unfiled visit gets, the cut of an other-temporary trip.
    required: bool,
    unfiled: filing::Unfiled,
    temporary_cut_points: u32,
    /// The kind of the filing in force on the service date.
    filed: Option<filing::FilingKind>,
    /// The split's thirteen amounts, as `Case::want`; `None` when the visit is refused.
    want: Option<[&'static str; 13]>,
}

use filing::FilingKind as K;
use filing::Unfiled::{RatioCut, Refused};

// The basket, an employee in service, totals BASKET_BEFORE, paying from the account.
// Jinan treats, Zibo insures: in-scope 225.00, deductible 0.00 left, ratio 0.75, cap left 1500.00:
//   uncut   fund 225.00x0.75 = 168.75, share 126.25 = 100.00 + 26.25, cap left 1331.25
//   cut 10  0.65: fund 146.25, share 148.75 = 100.00 + 48.75, cap left 1353.75
//   cut 20  0.55: fund 123.75, share 171.25 = 100.00 + 71.25, cap left 1376.25
//   cut 80  0.75-0.80 floors at 0.00: fund 0.00, share 295.00 = 100.00 + 195.00, cap left 1500.00
// Zibo treats, Jinan insures: in-scope 152.60, deductible 100.00, reimbursable 52.60, ratio 0.70:
//   cut 15  0.55: fund 52.60x0.55 = 28.93, share 266.07 = 100.00 + 166.07, cap left 1971.07
//   cut 12  0.58: fund 52.60x0.58 = 30.508 -> 30.51 (half away from zero), share 264.49, cap
//           left 1969.49
const JZ_UNCUT: [&str; 13] = [
    "295.00", "20.00", "35.00", "15.00", "225.00", "0.00", "168.75", "126.25", "100.00", "26.25",
    "0.00", "1331.25", "0.00",
];
const JZ_CUT_10: [&str; 13] = [
    "295.00", "20.00", "35.00", "15.00", "225.00", "0.00", "146.25", "148.75", "100.00", "48.75",
    "0.00", "1353.75", "0.00",
];
const JZ_CUT_20: [&str; 13] = [
    "295.00", "20.00", "35.00", "15.00", "225.00", "0.00", "123.75", "171.25", "100.00", "71.25",
    "0.00", "1376.25", "0.00",
];
const JZ_NOTHING: [&str; 13] = [
    "295.00", "20.00", "35.00", "15.00", "225.00", "0.00", "0.00", "295.00", "100.00", "195.00",
    "0.00", "1500.00", "0.00",
];

#[rustfmt::skip]
const FILING_CASES: &[FilingCase] = &[
    // ---- A waived pair (同城化): the policy's ratio, filed or not, whatever the cuts say. ----
    FilingCase { name: "waived, unfiled", treated_in: JINAN, insured_in: ZIBO, required: false,
        unfiled: Refused, temporary_cut_points: 10, filed: None, want: Some(JZ_UNCUT) },
    FilingCase { name: "waived, other temporary trip", treated_in: JINAN, insured_in: ZIBO,
        required: false, unfiled: RatioCut(20), temporary_cut_points: 10,
        filed: Some(K::OtherTemporary), want: Some(JZ_UNCUT) },
    // ---- Filing required: each kind. ----
    FilingCase { name: "required, resettled retiree", treated_in: JINAN, insured_in: ZIBO,
        required: true, unfiled: Refused, temporary_cut_points: 10,
        filed: Some(K::ResettledRetiree), want: Some(JZ_UNCUT) },
    FilingCase { name: "required, long-term resident", treated_in: JINAN, insured_in: ZIBO,
        required: true, unfiled: Refused, temporary_cut_points: 10,
        filed: Some(K::LongTermResident), want: Some(JZ_UNCUT) },
    FilingCase { name: "required, posted staff", treated_in: JINAN, insured_in: ZIBO,
        required: true, unfiled: Refused, temporary_cut_points: 10,
        filed: Some(K::PostedStaff), want: Some(JZ_UNCUT) },
    FilingCase { name: "required, referral is not cut", treated_in: JINAN, insured_in: ZIBO,
        required: true, unfiled: Refused, temporary_cut_points: 10,
        filed: Some(K::Referral), want: Some(JZ_UNCUT) },
    FilingCase { name: "required, emergency is deemed filed and not cut", treated_in: JINAN,
        insured_in: ZIBO, required: true, unfiled: Refused, temporary_cut_points: 10,
        filed: Some(K::Emergency), want: Some(JZ_UNCUT) },
    FilingCase { name: "required, other temporary trip cut 10 points", treated_in: JINAN,
        insured_in: ZIBO, required: true, unfiled: Refused, temporary_cut_points: 10,
        filed: Some(K::OtherTemporary), want: Some(JZ_CUT_10) },
    // ---- Filing required, unfiled: the policy's answer. ----
    FilingCase { name: "required, unfiled, refused", treated_in: JINAN, insured_in: ZIBO,
        required: true, unfiled: Refused, temporary_cut_points: 10, filed: None, want: None },
    FilingCase { name: "required, unfiled, cut 20 points", treated_in: JINAN, insured_in: ZIBO,
        required: true, unfiled: RatioCut(20), temporary_cut_points: 10, filed: None,
        want: Some(JZ_CUT_20) },
    FilingCase { name: "required, unfiled, cut past the ratio floors at zero", treated_in: JINAN,
        insured_in: ZIBO, required: true, unfiled: RatioCut(80), temporary_cut_points: 10,
        filed: None, want: Some(JZ_NOTHING) },
    FilingCase { name: "required, temporary trip cut 100 points pays nothing", treated_in: JINAN,
        insured_in: ZIBO, required: true, unfiled: Refused, temporary_cut_points: 100,
        filed: Some(K::OtherTemporary), want: Some(JZ_NOTHING) },
    // ---- Another pair: deductible applied first, then the cut ratio, rounded once. ----
    FilingCase { name: "Zibo treats Jinan's temporary trip cut 15", treated_in: ZIBO,
        insured_in: JINAN, required: true, unfiled: Refused, temporary_cut_points: 15,
        filed: Some(K::OtherTemporary),
        want: Some(["295.00", "80.00", "47.00", "15.40", "152.60", "100.00", "28.93", "266.07", "100.00", "166.07", "0.00", "1971.07", "0.00"]) },
    FilingCase { name: "Zibo treats Jinan's temporary trip cut 12, rounded", treated_in: ZIBO,
        insured_in: JINAN, required: true, unfiled: Refused, temporary_cut_points: 12,
        filed: Some(K::OtherTemporary),
        want: Some(["295.00", "80.00", "47.00", "15.40", "152.60", "100.00", "30.51", "264.49", "100.00", "164.49", "0.00", "1969.49", "0.00"]) },
];

// Proves every hand-worked filing case to the fen: the standing the filing policy gives the
// filing in force, the policy it prices under (or the refusal), and the split.
#[test]
fn hand_worked_filing_splits() {
    for case in FILING_CASES {
        let base = Case {
            name: case.name,
            treated_in: case.treated_in,
            insured_in: case.insured_in,
            person: Person::EmployeeInService,
            lines: BASKET,
            before: BASKET_BEFORE,
            use_account: true,
            want: [""; 13],
        };
        let (uncut, before) = settle(&base);
        let filing_policy =
            filing::FilingPolicy::new(case.required, case.unfiled, case.temporary_cut_points)
                .unwrap();
        let standing = filing_policy.standing(case.filed);
        let priced = standing.policy(uncut.policy());
        let got = priced.map(|policy| {
            let split = Split::compute(
                uncut.claim(),
                &policy,
                &before,
                InsuranceType::Employee,
                true,
            );
            // Filed or not, cut or not, the fund pay is the employee's pooling fund's line.
            let lines: Vec<(&str, Amount)> = split
                .itemised(InsuranceType::Employee, "")
                .into_iter()
                .map(|line| (line.fund_type.code(), line.amount))
                .collect();
            let want_lines = match case.want.map_or("0.00", |want| want[6]) {
                "0.00" => vec![],
                fund_pay => vec![("310100", yuan(fund_pay))],
            };
            assert_eq!(lines, want_lines, "{}: the fund itemised", case.name);
            [
                split.total_amount(),
                split.full_self_pay(),
                split.over_cap_self_pay(),
                split.pre_self_pay(),
                split.in_scope_amount(),
                split.deductible_applied(),
                split.fund_pay(),
                split.person_share(),
                split.account_pay(),
                split.cash_pay(),
                split.deductible_left(),
                split.annual_cap_left(),
                split.account_balance(),
            ]
        });
        assert_eq!(got, case.want.map(|want| want.map(yuan)), "{}", case.name);
    }
}

/// One chronic or special disease visit (medical type 14) of the basket, worked out by hand:
/// the insured city's disease policy and the person's totals for the disease, apart from the
/// ordinary ones. Whether the person is certified is the benefit service's to refuse before any
/// split (NOT_CERTIFIED, `tests/e2e/disease.rs`); a split is only ever made for a certified one.
struct DiseaseCase {
    name: &'static str,
    /// The national disease code.
    disease: &'static str,
    person: Person,
    /// The disease policy of the insured city (Jinan's in `seeds/disease_policies.csv`):
    /// deductible, ratio, annual quota.
    policy: [&'static str; 3],
    /// The disease's totals before: deductible used, quota used; then the account balance.
    before: [&'static str; 3],
    /// Percentage points a temporary-trip filing takes off the disease's ratio.
    cut_points: u32,
    /// As `Case::want`, the cap columns being the disease's quota.
    want: [&'static str; 13],
}

// Zibo treats the basket of a Jinan person (full 80.00, over 47.00, pre 15.40, in-scope 152.60,
// 295.00 in all), an employee paying 100.00 from the account unless said otherwise.
//   hypertension 0.00 / 0.70 / 600.00: fund 152.60x0.70 = 106.82, share 188.18 = 100.00 + 88.18,
//     quota left 493.18; with 550.00 used the quota leaves 50.00, which the fund pays (share
//     245.00); with 600.00 used nothing (share 295.00).
//   diabetes, a resident, 0.00 / 0.60 / 800.00: fund 91.56, share 203.44 all cash, quota left
//     708.44.
//   tumour radiotherapy 300.00 / 0.85 / 100000.00: nothing used, the deductible takes all of
//     152.60 (147.40 left), the fund pays 0.00; with 200.00 used, 100.00 applied, fund
//     52.60x0.85 = 44.71, share 250.29, quota left 99955.29.
//   dialysis 0.00 / 0.90 / 80000.00: fund 137.34, share 157.66, quota left 79862.66; under a
//     temporary trip cut 15 points (0.75) fund 114.45, share 180.55; cut 12 (0.78) fund
//     152.60x0.78 = 119.028 -> 119.03 (half away from zero), share 175.97, quota left 79880.97.
//   anti-rejection 0.00 / 0.85 / 60000.00: fund 129.71, share 165.29, quota left 59870.29.
#[rustfmt::skip]
const DISEASE_CASES: &[DiseaseCase] = &[
    DiseaseCase { name: "hypertension", disease: "M03900", person: Person::EmployeeInService,
        policy: ["0.00", "0.70", "600.00"], before: ["0.00", "0.00", "100.00"], cut_points: 0,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "0.00", "106.82", "188.18", "100.00", "88.18", "0.00", "493.18", "0.00"] },
    DiseaseCase { name: "hypertension, quota partly reached", disease: "M03900",
        person: Person::EmployeeInService, policy: ["0.00", "0.70", "600.00"],
        before: ["0.00", "550.00", "100.00"], cut_points: 0,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "0.00", "50.00", "245.00", "100.00", "145.00", "0.00", "0.00", "0.00"] },
    DiseaseCase { name: "hypertension, quota fully reached", disease: "M03900",
        person: Person::EmployeeInService, policy: ["0.00", "0.70", "600.00"],
        before: ["0.00", "600.00", "100.00"], cut_points: 0,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "0.00", "0.00", "295.00", "100.00", "195.00", "0.00", "0.00", "0.00"] },
    DiseaseCase { name: "diabetes, a resident", disease: "M01600", person: Person::Resident,
        policy: ["0.00", "0.60", "800.00"], before: ["0.00", "0.00", "0.00"], cut_points: 0,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "0.00", "91.56", "203.44", "0.00", "203.44", "0.00", "708.44", "0.00"] },
    DiseaseCase { name: "tumour radiotherapy, deductible takes it all", disease: "M00500",
        person: Person::EmployeeInService, policy: ["300.00", "0.85", "100000.00"],
        before: ["0.00", "0.00", "100.00"], cut_points: 0,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "152.60", "0.00", "295.00", "100.00", "195.00", "147.40", "100000.00", "0.00"] },
    DiseaseCase { name: "tumour radiotherapy, deductible partly used", disease: "M00500",
        person: Person::EmployeeRetired, policy: ["300.00", "0.85", "100000.00"],
        before: ["200.00", "0.00", "100.00"], cut_points: 0,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "100.00", "44.71", "250.29", "100.00", "150.29", "0.00", "99955.29", "0.00"] },
    DiseaseCase { name: "dialysis", disease: "M07801", person: Person::EmployeeInService,
        policy: ["0.00", "0.90", "80000.00"], before: ["0.00", "0.00", "100.00"], cut_points: 0,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "0.00", "137.34", "157.66", "100.00", "57.66", "0.00", "79862.66", "0.00"] },
    DiseaseCase { name: "dialysis on a temporary trip cut 15", disease: "M07801",
        person: Person::EmployeeInService, policy: ["0.00", "0.90", "80000.00"],
        before: ["0.00", "0.00", "100.00"], cut_points: 15,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "0.00", "114.45", "180.55", "100.00", "80.55", "0.00", "79885.55", "0.00"] },
    DiseaseCase { name: "dialysis on a temporary trip cut 12, rounded", disease: "M07801",
        person: Person::EmployeeInService, policy: ["0.00", "0.90", "80000.00"],
        before: ["0.00", "0.00", "100.00"], cut_points: 12,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "0.00", "119.03", "175.97", "100.00", "75.97", "0.00", "79880.97", "0.00"] },
    DiseaseCase { name: "anti-rejection", disease: "M08300", person: Person::EmployeeInService,
        policy: ["0.00", "0.85", "60000.00"], before: ["0.00", "0.00", "100.00"], cut_points: 0,
        want: ["295.00", "80.00", "47.00", "15.40", "152.60", "0.00", "129.71", "165.29", "100.00", "65.29", "0.00", "59870.29", "0.00"] },
];

// Proves every hand-worked chronic-disease split to the fen, under the disease's policy and the
// disease's own totals, and its fund itemised: one line of the person's basic fund naming the
// disease's quota, summing to the fund pay (none when the fund pays nothing).
#[test]
fn hand_worked_disease_splits() {
    let basket = Case {
        name: "the basket at Zibo",
        treated_in: ZIBO,
        insured_in: JINAN,
        person: Person::EmployeeInService,
        lines: BASKET,
        before: BASKET_BEFORE,
        use_account: true,
        want: [""; 13],
    };
    let (ordinary, _) = settle(&basket);
    for case in DISEASE_CASES {
        let [deductible, reimbursement, quota] = case.policy;
        let policy = Policy::new(yuan(deductible), ratio(reimbursement), yuan(quota))
            .unwrap()
            .with_ratio_cut(case.cut_points);
        let [deductible_used, quota_used, balance] = case.before.map(yuan);
        let before = RunningTotals::new(deductible_used, quota_used, balance).unwrap();
        let insurance_type = match case.person {
            Person::EmployeeInService | Person::EmployeeRetired => InsuranceType::Employee,
            Person::Resident => InsuranceType::Resident,
        };
        let split = Split::compute(ordinary.claim(), &policy, &before, insurance_type, true);
        let got = [
            split.total_amount(),
            split.full_self_pay(),
            split.over_cap_self_pay(),
            split.pre_self_pay(),
            split.in_scope_amount(),
            split.deductible_applied(),
            split.fund_pay(),
            split.person_share(),
            split.account_pay(),
            split.cash_pay(),
            split.deductible_left(),
            split.annual_cap_left(),
            split.account_balance(),
        ];
        assert_eq!(got, case.want.map(yuan), "{}", case.name);
        let lines = split.itemised(insurance_type, case.disease);
        let fund = fund::FundType::pool_of(insurance_type);
        let want_lines = match split.fund_pay() == Amount::ZERO {
            true => vec![],
            false => vec![fund::FundPayment {
                fund_type: fund,
                disease_code: Some(case.disease.to_owned()),
                in_scope_amount: yuan("152.60"),
                amount: split.fund_pay(),
            }],
        };
        assert_eq!(lines, want_lines, "{}", case.name);
        let reversal = split.reversal(split.totals_after()).unwrap();
        let undone = reversal.itemised(insurance_type, case.disease);
        assert_eq!(
            undone
                .iter()
                .map(|line| line.amount)
                .fold(Amount::ZERO, plus),
            negate(split.fund_pay()),
            "{}: the cancellation's lines negate the original's",
            case.name
        );
    }
}

// Proves the disease table covers each of the five diseases the national platform settles
// across provinces, a deductible partly used, a quota reached partly and fully, a filing cut.
#[test]
fn disease_table_covers_the_five_diseases() {
    for code in ["M03900", "M01600", "M00500", "M07801", "M08300"] {
        assert!(
            DISEASE_CASES.iter().any(|case| case.disease == code),
            "{code}"
        );
    }
    let quota_left = |case: &&DiseaseCase| case.want[11] == "0.00";
    assert!(
        DISEASE_CASES
            .iter()
            .filter(quota_left)
            .any(|case| case.want[6] != "0.00")
    );
    assert!(
        DISEASE_CASES
            .iter()
            .filter(quota_left)
            .any(|case| case.want[6] == "0.00")
    );
    assert!(
        DISEASE_CASES
            .iter()
            .any(|case| case.before[0] != "0.00" && case.want[5] != "0.00")
    );
    assert!(DISEASE_CASES.iter().any(|case| case.cut_points > 0));
}

// Proves the fund codes are the national ones: 310100 for employees, 390100 for residents.
#[test]
fn fund_types_are_the_national_codes() {
    assert_eq!(
        fund::FundType::pool_of(InsuranceType::Employee).code(),
        "310100"
    );
    assert_eq!(
        fund::FundType::pool_of(InsuranceType::Resident).code(),
        "390100"
    );
}

// Proves the filing table covers every filing kind, unfiled visits both ways, and a waived pair.
#[test]
fn filing_table_covers_every_kind() {
    for kind in filing::FilingKind::ALL {
        assert!(
            FILING_CASES
                .iter()
                .any(|case| case.required && case.filed == Some(kind)),
            "{kind:?} under a required filing"
        );
    }
    assert!(FILING_CASES.iter().any(|case| !case.required));
    assert!(
        FILING_CASES
            .iter()
            .any(|case| case.required && case.filed.is_none() && case.want.is_none())
    );
    assert!(
        FILING_CASES
            .iter()
            .any(|case| case.required && case.filed.is_none() && case.want.is_some())
    );
}

// Proves a cut never takes a ratio below zero nor leaves four fraction digits, and a cut of more
// than 100 points is refused.
#[test]
fn ratio_cuts_are_exact_and_bounded() {
    let policy = Policy::new(yuan("0.00"), ratio("0.7250"), yuan("100.00")).unwrap();
    assert_eq!(
        policy.with_ratio_cut(10).reimbursement_ratio(),
        ratio("0.6250")
    );
    assert_eq!(policy.with_ratio_cut(73).reimbursement_ratio(), ratio("0"));
    assert_eq!(policy.with_ratio_cut(0), policy);
    assert!(filing::FilingPolicy::new(true, filing::Unfiled::RatioCut(101), 0).is_err());
    assert!(filing::FilingPolicy::new(true, filing::Unfiled::Refused, 101).is_err());
}

// Proves the table settles every ordered pair of the four pilot cities (12 cross-city, 4
// same-city) with the same basket, so each pair's result comes from its own two cities' rules.
#[test]
fn table_covers_every_ordered_city_pair() {
    for treated_in in CITIES {
        for insured_in in CITIES {
            let pairs = CASES.iter().filter(|case| {
                case.treated_in == treated_in
                    && case.insured_in == insured_in
                    && case.lines == BASKET
            });
            assert_eq!(
                pairs.count(),
                1,
                "{treated_in} treats, {insured_in} insures"
            );
        }
    }
}

// Proves the pair cases differ by both pools: the same basket gives 19 distinct splits (the
// four cities' 16 pairs and the three with Dongying's second pool), so a visit between two pools
// of one city takes the treatment pool's catalog and the insured pool's policy, not the city's.
#[test]
fn every_city_pair_splits_differently() {
    let distinct: std::collections::HashSet<_> = CASES
        .iter()
        .filter(|case| case.lines == BASKET)
        .map(|case| {
            let (split, _) = settle(case);
            (split.in_scope_amount().fen(), split.fund_pay().fen())
        })
        .collect();
    assert_eq!(distinct.len(), 19);
}

// Proves the rounding rule is half away from zero at the half fen, not the banker's rule.
#[test]
fn rounding_is_half_away_from_zero() {
    let one_fen = Amount::from_fen(1);
    for (quantity, fen) in [
        ("0.5", 1),
        ("1.5", 2),
        ("2.5", 3),
        ("2.4999", 2),
        ("0.4999", 0),
    ] {
        assert_eq!(
            line_amount(dec(quantity), one_fen),
            Some(Amount::from_fen(fen)),
            "{quantity}"
        );
    }
}

// Proves each refused fee line names its field, nested under the line's place in the request.
#[test]
fn fee_line_refusals_name_the_field() {
    let cases: [(&str, &str, &str, &str); 8] = [
        ("0", "1.00", "0.00", "quantity"),
        ("-1", "1.00", "0.00", "quantity"),
        ("1.00001", "1.00", "1.00", "quantity"),
        ("1000000000000", "0.01", "0.00", "quantity"),
        ("1", "0.00", "0.00", "unit_price"),
        ("1", "1.00", "-1.00", "amount"),
        ("3", "0.33", "1.00", "amount"),
        ("1.5", "11.11", "16.66", "amount"),
    ];
    for (quantity, unit_price, amount, field) in cases {
        let err = FeeLine::new(dec(quantity), yuan(unit_price), yuan(amount))
            .map_err(|e| e.within("lines[2]"))
            .unwrap_err();
        assert_eq!(
            err.field(),
            format!("lines[2].{field}"),
            "{quantity} x {unit_price} = {amount}"
        );
    }
    let err = FeeLine::new(dec("1.5"), yuan("11.11"), yuan("16.66")).unwrap_err();
    assert_eq!(
        err,
        SplitError::AmountMismatch {
            field: "amount".into(),
            expected: yuan("16.67"),
        }
    );
    assert_eq!(
        err.to_string(),
        "amount: must be quantity x unit price rounded to the fen, 16.67"
    );
    // Trailing zeros are not fraction digits: 2.50000 is 2.5.
    assert!(FeeLine::new(dec("2.50000"), yuan("1.00"), yuan("2.50")).is_ok());
}

// Proves unit prices as the national interface sends them: up to six fraction digits, parsed
// exactly and refused otherwise; the line amount is the exact product rounded to the fen once;
// a price is above its cap when it is by a millionth, and the over-cap part is rounded once.
#[test]
fn six_digit_unit_prices() {
    let price = |text: &str| UnitPrice::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(price("0.123456").fen(), dec("12.3456"));
    assert_eq!(price("3").fen(), dec("300"));
    assert_eq!(price("0.123456").to_string(), "0.123456");
    assert_eq!(price("3.5").to_string(), "3.50");
    assert_eq!(UnitPrice::from(yuan("2.35")), price("2.350000"));
    for bad in [
        "",
        ".5",
        "5.",
        "1.1234567",
        "-1.00",
        "+1",
        "1e3",
        "1,000.00",
        " 1",
        "0",
        "0.000000",
        "123456789012345",
    ] {
        assert!(UnitPrice::parse(bad).is_err(), "{bad:?}");
    }
    // 30 tablets at 0.123456 = 3.70368 -> 3.70; 7 at 0.0035 = 0.0245 -> 0.02; 1 at 0.005 -> 0.01.
    for (quantity, unit_price, fen) in [
        ("30", "0.123456", 370),
        ("7", "0.0035", 2),
        ("1", "0.005", 1),
        ("0.5", "0.01", 1),
    ] {
        assert_eq!(
            line_amount(dec(quantity), price(unit_price)),
            Some(Amount::from_fen(fen)),
            "{quantity} x {unit_price}"
        );
    }
    let err = FeeLine::new(dec("30"), price("0.123456"), yuan("3.71")).unwrap_err();
    assert_eq!(
        err,
        SplitError::AmountMismatch {
            field: "amount".into(),
            expected: yuan("3.70")
        }
    );
    let capped = catalog_entry(BINZHOU, "X001");
    let classify = |quantity: &str, unit_price: &str, amount: &str| {
        let line = FeeLine::new(dec(quantity), price(unit_price), yuan(amount)).unwrap();
        ClassifiedLine::classify(line, capped)
    };
    let at_cap = classify("3", "0.500000", "1.50");
    assert_eq!(
        at_cap.over_cap_self_pay(),
        Amount::ZERO,
        "equal to the cap is not above it"
    );
    let just_above = classify("1", "0.500001", "0.50");
    assert_eq!(
        (just_above.over_cap_self_pay(), just_above.in_scope_amount()),
        (Amount::ZERO, yuan("0.50")),
        "above by a millionth, rounded to nothing"
    );
    let many = classify("5000", "0.500001", "2500.01");
    assert_eq!(
        (many.over_cap_self_pay(), many.in_scope_amount()),
        (yuan("0.01"), yuan("2500.00"))
    );
}

// Proves a product above the largest amount is refused as such, not as a mismatch.
#[test]
fn product_above_the_largest_amount_is_refused() {
    let err = FeeLine::new(
        dec("999999999999.9999"),
        Amount::from_fen(AMOUNT_FEN_MAX),
        Amount::from_fen(AMOUNT_FEN_MAX),
    )
    .unwrap_err();
    assert!(matches!(err, SplitError::ProductTooLarge { .. }), "{err:?}");
}

// Proves ratios outside [0, 1] or with five fraction digits are refused, and that a catalog
// entry or policy names its own field for them.
#[test]
fn ratio_refusals() {
    for text in ["-0.01", "1.0001", "0.12345"] {
        let err = Ratio::new(dec(text))
            .map_err(|e| e.within("self_pay_ratio"))
            .unwrap_err();
        assert_eq!(err.field(), "self_pay_ratio", "{text}");
    }
    for text in ["0", "1", "0.7250", "1.0000"] {
        assert!(Ratio::new(dec(text)).is_ok(), "{text}");
    }
    let err = CatalogEntry::new(Grade::A, Some(yuan("-1.00"))).unwrap_err();
    assert_eq!(err.field(), "price_cap");
    let err = Policy::new(yuan("-1.00"), ratio("0.5"), yuan("1.00")).unwrap_err();
    assert_eq!(err.field(), "deductible");
    let err = RunningTotals::new(yuan("0.00"), yuan("-0.01"), yuan("0.00")).unwrap_err();
    assert_eq!(err.field(), "fund_paid");
}

// Proves a claim from the wire must add up, and a claim from lines holds 1 to 500 lines.
#[test]
fn claim_refusals() {
    let err = Claim::new(
        yuan("10.00"),
        yuan("1.00"),
        yuan("2.00"),
        yuan("3.00"),
        yuan("3.99"),
    )
    .unwrap_err();
    assert_eq!(
        err,
        SplitError::PartsDoNotAddUp {
            field: "total_amount".into(),
            parts: yuan("9.99"),
            total: yuan("10.00"),
        }
    );
    assert!(
        Claim::new(
            yuan("10.00"),
            yuan("1.00"),
            yuan("2.00"),
            yuan("3.00"),
            yuan("4.00")
        )
        .is_ok()
    );
    assert_eq!(Claim::from_lines(&[]).unwrap_err().field(), "lines");
    let line = ClassifiedLine::classify(
        FeeLine::new(dec("1"), yuan("1.00"), yuan("1.00")).unwrap(),
        None,
    );
    assert!(Claim::from_lines(&[line; LINES_PER_SETTLEMENT_MAX]).is_ok());
    let err = Claim::from_lines(&[line; LINES_PER_SETTLEMENT_MAX + 1]).unwrap_err();
    assert_eq!(
        err,
        SplitError::LineCount {
            field: "lines".into(),
            count: 501
        }
    );
}

// Proves a cancellation negates every amount, gives the running totals back exactly, and is
// refused against totals that do not contain the settlement.
#[test]
fn cancellation_restores_the_totals() {
    let case = CASES
        .iter()
        .find(|c| c.name == "several lines of every kind")
        .unwrap();
    let (split, before) = settle(case);
    let reversal = split.reversal(split.totals_after()).unwrap();
    assert_eq!(reversal.total_amount(), yuan("-74.84"));
    assert_eq!(reversal.fund_pay(), yuan("-23.40"));
    assert_eq!(reversal.account_pay(), yuan("-30.00"));
    assert_eq!(reversal.cash_pay(), yuan("-21.44"));
    assert_eq!(reversal.deductible_applied(), yuan("-20.00"));
    assert_eq!(reversal.pool_ratio(), split.pool_ratio());
    assert_eq!(reversal.totals_after(), &before);
    assert_eq!(reversal.deductible_left(), yuan("20.00"));
    assert_eq!(reversal.annual_cap_left(), yuan("3000.00"));
    assert_eq!(reversal.account_balance(), yuan("30.00"));
    // Cancelling against the totals from before the settlement would go below zero.
    let err = split.reversal(&before).unwrap_err();
    assert_eq!(
        err,
        SplitError::BelowZero {
            field: "fund_paid".into()
        }
    );
}

// ---- Properties over generated settlements. ----

/// Rounds quantity x price to the fen in plain integers, independently of `Decimal`: the
/// quantity in ten-thousandths, half away from zero (all products here are positive).
fn oracle_fen(quantity_ten_thousandths: i64, price_fen: i64) -> i128 {
    let product = i128::from(quantity_ten_thousandths) * i128::from(price_fen);
    (product + 5_000) / 10_000
}

fn ratios() -> impl Strategy<Value = Ratio> {
    (0i64..=10_000).prop_map(|m| Ratio::new(Decimal::new(m, 4)).unwrap())
}

fn entries() -> impl Strategy<Value = Option<CatalogEntry>> {
    let grade = prop_oneof![
        Just(Grade::A),
        ratios().prop_map(|self_pay_ratio| Grade::B { self_pay_ratio }),
        Just(Grade::C),
    ];
    let entry = (grade, proptest::option::of(0i64..=300_000)).prop_map(|(grade, cap)| {
        Some(CatalogEntry::new(grade, cap.map(Amount::from_fen)).unwrap())
    });
    prop_oneof![1 => Just(None), 4 => entry]
}

/// Rounds quantity x price to the fen in plain integers for a price in millionths of a yuan
/// (ten-thousandths of a fen): the product is in 10^-8 fen, half away from zero.
fn oracle_fen_micro(quantity_ten_thousandths: i64, price_micro_yuan: i64) -> i128 {
    let product = i128::from(quantity_ten_thousandths) * i128::from(price_micro_yuan);
    (product + 50_000_000) / 100_000_000
}

/// A valid fee line: quantity up to 1000 units, unit price up to 3000.00, in whole fen or (one
/// line in two) in millionths of a yuan as per-tablet prices come, its amount the oracle's
/// rounded product.
fn fee_lines() -> impl Strategy<Value = FeeLine> {
    let whole_fen = (1i64..=10_000_000, 1i64..=300_000).prop_map(|(q, price)| {
        let amount = i64::try_from(oracle_fen(q, price)).unwrap();
        FeeLine::new(
            Decimal::new(q, 4),
            Amount::from_fen(price),
            Amount::from_fen(amount),
        )
        .unwrap()
    });
    let micro_yuan = (1i64..=10_000_000, 1i64..=3_000_000_000).prop_map(|(q, price)| {
        let amount = i64::try_from(oracle_fen_micro(q, price)).unwrap();
        let unit_price = UnitPrice::from_yuan(Decimal::new(price, 6)).unwrap();
        FeeLine::new(Decimal::new(q, 4), unit_price, Amount::from_fen(amount)).unwrap()
    });
    prop_oneof![whole_fen, micro_yuan]
}

fn classified_lines() -> impl Strategy<Value = ClassifiedLine> {
    (fee_lines(), entries()).prop_map(|(line, entry)| ClassifiedLine::classify(line, entry))
}

fn policies() -> impl Strategy<Value = Policy> {
    (0i64..=100_000, ratios(), 0i64..=2_000_000).prop_map(|(deductible, ratio, cap)| {
        Policy::new(Amount::from_fen(deductible), ratio, Amount::from_fen(cap)).unwrap()
    })
}

fn running_totals() -> impl Strategy<Value = RunningTotals> {
    (0i64..=150_000, 0i64..=2_500_000, 0i64..=1_000_000).prop_map(|(used, paid, balance)| {
        RunningTotals::new(
            Amount::from_fen(used),
            Amount::from_fen(paid),
            Amount::from_fen(balance),
        )
        .unwrap()
    })
}

fn insurance_types() -> impl Strategy<Value = InsuranceType> {
    prop_oneof![Just(InsuranceType::Employee), Just(InsuranceType::Resident)]
}

/// One settlement's inputs: its claim, the policy, the totals before, the insurance type and
/// whether the account is asked.
fn settlements() -> impl Strategy<Value = (Claim, Policy, RunningTotals, InsuranceType, bool)> {
    (
        proptest::collection::vec(classified_lines(), 1..=8),
        policies(),
        running_totals(),
        insurance_types(),
        any::<bool>(),
    )
        .prop_map(|(lines, policy, before, insurance_type, use_account)| {
            (
                Claim::from_lines(&lines).unwrap(),
                policy,
                before,
                insurance_type,
                use_account,
            )
        })
}

fn sum(amounts: &[Amount]) -> Amount {
    amounts.iter().copied().fold(Amount::ZERO, plus)
}

proptest! {
    // Proves every line's parts are non-negative and add up to its amount exactly.
    #[test]
    fn line_parts_add_up(line in classified_lines()) {
        let parts = [line.full_self_pay(), line.over_cap_self_pay(), line.pre_self_pay(), line.in_scope_amount()];
        prop_assert!(parts.iter().all(|part| !part.is_negative()), "{line:?}");
        prop_assert_eq!(sum(&parts), line.amount());
    }

    // Proves the split always adds up: the parts to the total, and fund + account + cash to the
    // total; and no payment is negative.
    #[test]
    fn split_adds_up((claim, policy, before, insurance_type, use_account) in settlements()) {
        let split = Split::compute(&claim, &policy, &before, insurance_type, use_account);
        // The fund itemised (setldetail) sums exactly to the fund pay, ordinary or disease.
        for disease in ["", "M07801"] {
            let lines = split.itemised(insurance_type, disease);
            prop_assert_eq!(sum(&lines.iter().map(|line| line.amount).collect::<Vec<_>>()), split.fund_pay());
        }
        prop_assert_eq!(
            sum(&[split.full_self_pay(), split.over_cap_self_pay(), split.pre_self_pay(), split.in_scope_amount()]),
            split.total_amount()
        );
        prop_assert_eq!(sum(&[split.fund_pay(), split.account_pay(), split.cash_pay()]), split.total_amount());
        prop_assert_eq!(plus(split.fund_pay(), split.person_share()), split.total_amount());
        for pay in [split.fund_pay(), split.person_share(), split.account_pay(), split.cash_pay()] {
            prop_assert!(!pay.is_negative(), "{split:?}");
        }
    }

    // Proves the fund never pays more than the cap left, never less than zero, and never more
    // than the reimbursement ratio of what is above the deductible.
    #[test]
    fn fund_pay_within_cap_left((claim, policy, before, insurance_type, use_account) in settlements()) {
        let split = Split::compute(&claim, &policy, &before, insurance_type, use_account);
        prop_assert!(!split.fund_pay().is_negative());
        prop_assert!(split.fund_pay() <= before.annual_cap_left(&policy));
        prop_assert!(split.fund_pay() <= minus(split.in_scope_amount(), split.deductible_applied()));
        prop_assert!(split.totals_after().fund_paid() <= policy.annual_cap().max(before.fund_paid()));
    }

    // Proves the deductible applied never exceeds the deductible left nor the in-scope amount.
    #[test]
    fn deductible_within_deductible_left((claim, policy, before, insurance_type, use_account) in settlements()) {
        let split = Split::compute(&claim, &policy, &before, insurance_type, use_account);
        prop_assert!(!split.deductible_applied().is_negative());
        prop_assert!(split.deductible_applied() <= before.deductible_left(&policy));
        prop_assert!(split.deductible_applied() <= split.in_scope_amount());
    }

    // Proves the account pays only for employees who ask, never more than the balance or the
    // share, and the balance after is the balance less the account pay.
    #[test]
    fn account_pay_within_balance((claim, policy, before, insurance_type, use_account) in settlements()) {
        let split = Split::compute(&claim, &policy, &before, insurance_type, use_account);
        if insurance_type == InsuranceType::Resident || !use_account {
            prop_assert_eq!(split.account_pay(), Amount::ZERO);
        }
        prop_assert!(split.account_pay() <= before.account_balance());
        prop_assert!(split.account_pay() <= split.person_share());
        prop_assert_eq!(plus(split.account_balance(), split.account_pay()), before.account_balance());
    }

    // Proves settle then cancel leaves the running totals and the balance exactly as before,
    // with every amount of the cancellation the negation of the settlement's.
    #[test]
    fn settle_then_cancel_restores_totals((claim, policy, before, insurance_type, use_account) in settlements()) {
        let split = Split::compute(&claim, &policy, &before, insurance_type, use_account);
        prop_assert_eq!(&before.apply(&split).unwrap(), split.totals_after());
        let reversal = split.reversal(split.totals_after()).unwrap();
        prop_assert_eq!(reversal.totals_after(), &before);
        prop_assert_eq!(split.totals_after().apply(&reversal).unwrap(), before);
        prop_assert_eq!(reversal.deductible_left(), before.deductible_left(&policy));
        prop_assert_eq!(reversal.annual_cap_left(), before.annual_cap_left(&policy));
        let pairs = [
            (split.total_amount(), reversal.total_amount()),
            (split.full_self_pay(), reversal.full_self_pay()),
            (split.over_cap_self_pay(), reversal.over_cap_self_pay()),
            (split.pre_self_pay(), reversal.pre_self_pay()),
            (split.in_scope_amount(), reversal.in_scope_amount()),
            (split.deductible_applied(), reversal.deductible_applied()),
            (split.fund_pay(), reversal.fund_pay()),
            (split.person_share(), reversal.person_share()),
            (split.account_pay(), reversal.account_pay()),
            (split.cash_pay(), reversal.cash_pay()),
        ];
        for (settled, cancelled) in pairs {
            prop_assert_eq!(negate(settled), cancelled);
        }
    }

    // Proves a settlement cancelled after a later one leaves the totals as if only the later
    // one had been applied: cancellations need not come in order.
    #[test]
    fn cancel_out_of_order(
        (claim, policy, before, insurance_type, use_account) in settlements(),
        (second, ..) in settlements(),
    ) {
        let first = Split::compute(&claim, &policy, &before, insurance_type, use_account);
        let later = Split::compute(&second, &policy, first.totals_after(), insurance_type, use_account);
        let reversal = first.reversal(later.totals_after()).unwrap();
        prop_assert_eq!(reversal.totals_after(), &before.apply(&later).unwrap());
    }

    // Proves a six-digit unit price's line amount is exactly the rounded product, computed
    // independently in integers, and that the line's parts still add up to it.
    #[test]
    fn six_digit_prices_round_once(
        q in 1i64..=100_000_000,
        price in prop_oneof![1i64..=10_000_000, 1i64..=1_000_000_000_000],
        entry in entries(),
    ) {
        let unit_price = UnitPrice::from_yuan(Decimal::new(price, 6)).unwrap();
        let exact = oracle_fen_micro(q, price);
        let amount = Amount::from_fen(i64::try_from(exact).unwrap());
        prop_assert_eq!(line_amount(Decimal::new(q, 4), unit_price), Some(amount));
        let line = ClassifiedLine::classify(FeeLine::new(Decimal::new(q, 4), unit_price, amount).unwrap(), entry);
        let parts = [line.full_self_pay(), line.over_cap_self_pay(), line.pre_self_pay(), line.in_scope_amount()];
        prop_assert!(parts.iter().all(|part| !part.is_negative()), "{line:?}");
        prop_assert_eq!(sum(&parts), amount);
    }

    // Proves amount validation accepts exactly the rounded product, computed independently in
    // integers, and refuses every other amount; products above the largest amount are refused.
    #[test]
    fn amount_validation_accepts_exactly_the_rounded_product(
        q in prop_oneof![1i64..=100_000_000, 1i64..10_000_000_000_000_000],
        price in prop_oneof![1i64..=1_000_000, 1i64..=AMOUNT_FEN_MAX],
        delta in -3i64..=3,
    ) {
        let quantity = Decimal::new(q, 4);
        let unit_price = Amount::from_fen(price);
        let exact = oracle_fen(q, price);
        let near = i64::try_from(exact).unwrap_or(AMOUNT_FEN_MAX).min(AMOUNT_FEN_MAX);
        let amount = Amount::from_fen(near.saturating_add(delta).clamp(0, AMOUNT_FEN_MAX));
        let result = FeeLine::new(quantity, unit_price, amount);
        if exact > i128::from(AMOUNT_FEN_MAX) {
            prop_assert!(matches!(result, Err(SplitError::ProductTooLarge { .. })), "{result:?}");
        } else if i128::from(amount.fen()) == exact {
            prop_assert!(result.is_ok(), "{result:?}");
        } else {
            let expected = Amount::from_fen(i64::try_from(exact).unwrap());
            prop_assert_eq!(result, Err(SplitError::AmountMismatch { field: "amount".into(), expected }));
        }
    }
}
