//! Generates `seeds/catalog_items.csv` and `seeds/policies.csv` for every city of the network
//! file, the same every time for the same seed and network file.
//!
//! Items start from one national list (Western and Chinese patent medicines, herbal pieces,
//! medical services, consumables) with codes shaped like the national ones. Each city then
//! lists most of it with its own grade-B self-pay ratios, its own price level for the caps and a
//! few grades of its own, the way each bureau adapts the national catalog; so the treatment
//! city's catalog visibly changes what a patient pays. A handful of fixtures come first, with
//! hand-picked differences between the cities that tests and demonstrations name by code.
//!
//! Policies are a fixed table (no randomness): per insured city, insurance type, person type
//! and hospital level, a 2025 version and the 2026 version that replaced it. All figures are
//! illustrative; `seeds/README.md` says so and describes every column.
//!
//! Cities are written in the network file's order, from one random stream after the national
//! list, so a city appended to the file leaves every earlier city's rows as they were.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use yitong_core::{Network, PoolCode};

/// Fewest items the generator lists in each city's catalog.
pub const CATALOG_ITEMS_PER_CITY_MIN: usize = 2_000;

/// How one city adapts the national list.
struct CityProfile {
    code: &'static str,
    /// Grade-B self-pay ratio in basis points for drugs, medical services and consumables.
    grade_b_ratio_bp: [i64; 3],
    /// Price level of the city's caps relative to the national reference, in basis points.
    price_level_bp: i64,
    /// Chance in basis points that the city grades an item differently from the national list.
    regrade_bp: u32,
    /// Chance in basis points that the city does not list an item at all.
    unlisted_bp: u32,
}

/// Every pool of the circle the generator knows: the four pilot cities' pools, then Tai'an's,
/// Liaocheng's and Dezhou's, then two second pools (illustrative): the Shengli Oilfield's,
/// hosted by Dongying, whose list differs from Dongying's in grades, ratios and caps, and the
/// provincial-level pool hosted by Jinan. A fixture's terms and a pool's policy are in this
/// order too.
const CITIES: [CityProfile; 9] = [
    CityProfile {
        code: "370100",
        grade_b_ratio_bp: [1_000, 1_000, 2_000],
        price_level_bp: 10_000,
        regrade_bp: 300,
        unlisted_bp: 300,
    },
    CityProfile {
        code: "370300",
        grade_b_ratio_bp: [500, 1_000, 1_500],
        price_level_bp: 9_600,
        regrade_bp: 500,
        unlisted_bp: 400,
    },
    CityProfile {
        code: "370500",
        grade_b_ratio_bp: [1_000, 500, 3_000],
        price_level_bp: 9_800,
        regrade_bp: 400,
        unlisted_bp: 500,
    },
    CityProfile {
        code: "371600",
        grade_b_ratio_bp: [1_500, 2_000, 2_000],
        price_level_bp: 9_400,
        regrade_bp: 600,
        unlisted_bp: 400,
    },
    CityProfile {
        code: "370900",
        grade_b_ratio_bp: [1_000, 1_500, 2_000],
        price_level_bp: 9_500,
        regrade_bp: 400,
        unlisted_bp: 400,
    },
    CityProfile {
        code: "371500",
        grade_b_ratio_bp: [1_500, 1_000, 2_500],
        price_level_bp: 9_300,
        regrade_bp: 500,
        unlisted_bp: 500,
    },
    CityProfile {
        code: "371400",
        grade_b_ratio_bp: [1_000, 1_500, 2_000],
        price_level_bp: 9_400,
        regrade_bp: 500,
        unlisted_bp: 400,
    },
    CityProfile {
        code: "370590",
        grade_b_ratio_bp: [500, 1_000, 2_000],
        price_level_bp: 10_200,
        regrade_bp: 500,
        unlisted_bp: 600,
    },
    CityProfile {
        code: "379900",
        grade_b_ratio_bp: [1_000, 1_000, 2_000],
        price_level_bp: 10_100,
        regrade_bp: 300,
        unlisted_bp: 300,
    },
];

/// The index in [`CITIES`] of a city of the network file; a city the generator does not know
/// is an error naming it.
fn city_index(code: PoolCode) -> io::Result<usize> {
    let text = code.to_string();
    CITIES
        .iter()
        .position(|city| city.code == text)
        .ok_or_else(|| crate::generate::unknown_city(code))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Drug,
    MedicalService,
    Consumable,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Drug => "drug",
            Kind::MedicalService => "medical_service",
            Kind::Consumable => "consumable",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Grade {
    A,
    B,
    C,
}

impl Grade {
    fn word(self) -> &'static str {
        match self {
            Grade::A => "A",
            Grade::B => "B",
            Grade::C => "C",
        }
    }
}

/// An item of the national list, before a city adapts it.
struct NationalItem {
    code: String,
    name: String,
    kind: Kind,
    grade: Grade,
    /// Reference price cap in fen; `None` when the item is uncapped.
    cap_fen: Option<i64>,
    valid_from: &'static str,
    valid_until: Option<&'static str>,
}

/// One city's row of a fixture: grade, self-pay ratio in basis points, cap in fen.
type FixtureTerms = (Grade, i64, Option<i64>);

/// An item every city lists on hand-picked terms; `None` where the city does not list it.
struct Fixture {
    code: &'static str,
    name: &'static str,
    kind: Kind,
    valid_from: &'static str,
    valid_until: Option<&'static str>,
    /// Jinan, Zibo, Dongying, Binzhou, Tai'an, Liaocheng, Dezhou, the Shengli Oilfield, the
    /// provincial pool (the order of [`CITIES`]).
    cities: [Option<FixtureTerms>; 9],
}

/// Items the tests and the README name. Their differences between pools are deliberate, and
/// the Shengli Oilfield's differ from Dongying's, the city that hosts it: the consultation and
/// the CT are capped higher, atorvastatin is grade A, the CT grade B at 20%, the cannula not
/// covered.
const FIXTURES: [Fixture; 7] = [
    Fixture {
        code: "001102000010000",
        name: "普通门诊诊查费",
        kind: Kind::MedicalService,
        valid_from: "2024-01-01",
        valid_until: None,
        cities: [
            Some((Grade::A, 0, Some(1_500))),
            Some((Grade::A, 0, Some(1_200))),
            Some((Grade::A, 0, Some(1_300))),
            Some((Grade::A, 0, Some(1_100))),
            Some((Grade::A, 0, Some(1_250))),
            Some((Grade::A, 0, Some(1_150))),
            Some((Grade::A, 0, Some(1_200))),
            Some((Grade::A, 0, Some(1_400))),
            Some((Grade::A, 0, Some(1_500))),
        ],
    },
    Fixture {
        code: "XC10AAA001A001000100101",
        name: "阿托伐他汀钙片 20mg*7片",
        kind: Kind::Drug,
        valid_from: "2024-01-01",
        valid_until: None,
        cities: [
            Some((Grade::B, 1_000, Some(2_500))),
            Some((Grade::A, 0, Some(2_350))),
            Some((Grade::B, 500, Some(2_480))),
            Some((Grade::B, 1_500, Some(2_290))),
            Some((Grade::B, 1_000, Some(2_400))),
            Some((Grade::A, 0, Some(2_300))),
            Some((Grade::B, 1_500, Some(2_380))),
            Some((Grade::A, 0, Some(2_450))),
            Some((Grade::B, 1_000, Some(2_500))),
        ],
    },
    Fixture {
        code: "002103000010000",
        name: "X线计算机体层(CT)平扫 头颅",
        kind: Kind::MedicalService,
        valid_from: "2024-01-01",
        valid_until: None,
        cities: [
            Some((Grade::B, 1_000, Some(15_000))),
            Some((Grade::B, 1_000, Some(14_000))),
            Some((Grade::A, 0, Some(14_500))),
            Some((Grade::B, 2_000, Some(13_500))),
            Some((Grade::B, 1_000, Some(14_200))),
            Some((Grade::B, 1_500, Some(13_800))),
            Some((Grade::A, 0, Some(14_000))),
            Some((Grade::B, 2_000, Some(15_500))),
            Some((Grade::B, 1_000, Some(15_000))),
        ],
    },
    Fixture {
        code: "C0204010010001022101",
        name: "一次性使用静脉留置针 22G",
        kind: Kind::Consumable,
        valid_from: "2024-01-01",
        valid_until: None,
        cities: [
            Some((Grade::B, 2_000, Some(1_800))),
            Some((Grade::C, 0, None)),
            Some((Grade::B, 3_000, Some(1_750))),
            Some((Grade::B, 2_000, Some(1_680))),
            Some((Grade::B, 2_000, Some(1_720))),
            Some((Grade::B, 2_500, Some(1_650))),
            Some((Grade::C, 0, None)),
            Some((Grade::C, 0, None)),
            Some((Grade::B, 2_000, Some(1_800))),
        ],
    },
    Fixture {
        code: "ZA01AAA001A002000100101",
        name: "连花清瘟胶囊 0.35g*24粒",
        kind: Kind::Drug,
        valid_from: "2024-01-01",
        valid_until: None,
        cities: [
            Some((Grade::B, 1_000, Some(1_580))),
            Some((Grade::B, 500, Some(1_520))),
            Some((Grade::B, 1_000, Some(1_550))),
            Some((Grade::C, 0, None)),
            Some((Grade::B, 1_000, Some(1_530))),
            Some((Grade::C, 0, None)),
            Some((Grade::B, 500, Some(1_500))),
            Some((Grade::B, 1_500, Some(1_600))),
            Some((Grade::B, 1_000, Some(1_580))),
        ],
    },
    Fixture {
        code: "XJ01CAA002A002000100101",
        name: "阿莫西林胶囊 0.125g*36粒",
        kind: Kind::Drug,
        valid_from: "2024-01-01",
        valid_until: Some("2025-12-31"),
        cities: [
            Some((Grade::A, 0, Some(980))),
            Some((Grade::A, 0, Some(950))),
            Some((Grade::A, 0, Some(960))),
            Some((Grade::A, 0, Some(920))),
            Some((Grade::A, 0, Some(940))),
            Some((Grade::A, 0, Some(930))),
            Some((Grade::A, 0, Some(950))),
            Some((Grade::A, 0, Some(970))),
            Some((Grade::A, 0, Some(980))),
        ],
    },
    Fixture {
        code: "XN06DAA003A001000100101",
        name: "多奈哌齐片 5mg*14片",
        kind: Kind::Drug,
        valid_from: "2025-01-01",
        valid_until: None,
        cities: [
            Some((Grade::B, 1_000, Some(4_200))),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ],
    },
];

/// Writes `catalog_items.csv` and `policies.csv` into `dir`, for every city of `network` in its
/// order.
pub fn write_catalog_seeds(dir: &Path, network: &Network, seed: u64) -> io::Result<()> {
    let cities = network
        .pools
        .iter()
        .map(|city| city_index(city.code))
        .collect::<io::Result<Vec<usize>>>()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let national = national_items(&mut rng);
    write_items(dir, &cities, &national, &mut rng)?;
    write_policies(dir, &cities)
}

/// `cities` are indexes in [`CITIES`], in the order of the network file.
fn write_items(
    dir: &Path,
    cities: &[usize],
    national: &[NationalItem],
    rng: &mut ChaCha8Rng,
) -> io::Result<()> {
    let mut writer = csv::Writer::from_path(dir.join("catalog_items.csv"))?;
    writer.write_record([
        "city",
        "code",
        "name",
        "kind",
        "grade",
        "self_pay_ratio",
        "price_cap",
        "valid_from",
        "valid_until",
    ])?;
    for &city_index in cities {
        let city = &CITIES[city_index];
        let mut listed = 0;
        for fixture in &FIXTURES {
            let Some((grade, ratio_bp, cap_fen)) = fixture.cities[city_index] else {
                continue;
            };
            writer.write_record([
                city.code,
                fixture.code,
                fixture.name,
                fixture.kind.word(),
                grade.word(),
                &ratio(ratio_bp),
                &cap_fen.map(yuan).unwrap_or_default(),
                fixture.valid_from,
                fixture.valid_until.unwrap_or_default(),
            ])?;
            listed += 1;
        }
        for item in national {
            if rng.random_ratio(city.unlisted_bp, 10_000) {
                continue;
            }
            let grade = if rng.random_ratio(city.regrade_bp, 10_000) {
                regrade(item.grade, rng)
            } else {
                item.grade
            };
            let ratio_bp = match grade {
                Grade::B => {
                    let base = city.grade_b_ratio_bp[item.kind.index()];
                    // A few items carry a ratio of their own, five points either side.
                    match rng.random_range(0..20) {
                        0 => (base - 500).max(500),
                        1 => base + 500,
                        _ => base,
                    }
                }
                Grade::A | Grade::C => 0,
            };
            let cap_fen = item.cap_fen.map(|cap| {
                let jitter_bp = rng.random_range(9_700..=10_300);
                round_cap(cap * city.price_level_bp / 10_000 * jitter_bp / 10_000)
            });
            writer.write_record([
                city.code,
                &item.code,
                &item.name,
                item.kind.word(),
                grade.word(),
                &ratio(ratio_bp),
                &cap_fen.map(yuan).unwrap_or_default(),
                item.valid_from,
                item.valid_until.unwrap_or_default(),
            ])?;
            listed += 1;
        }
        assert!(
            listed >= CATALOG_ITEMS_PER_CITY_MIN,
            "city {} lists only {listed} items",
            city.code
        );
    }
    writer.flush()
}

/// A city's own grade for an item: grade A may need a self-paid share, grade B may be fully
/// covered or left out, grade C may be taken in.
fn regrade(grade: Grade, rng: &mut ChaCha8Rng) -> Grade {
    match grade {
        Grade::A | Grade::C => Grade::B,
        Grade::B if rng.random_ratio(1, 2) => Grade::A,
        Grade::B => Grade::C,
    }
}

/// Caps of ten yuan and more are set to the ten fen, below that to the fen.
fn round_cap(fen: i64) -> i64 {
    if fen >= 1_000 {
        (fen + 5) / 10 * 10
    } else {
        fen.max(1)
    }
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// A ratio as the wire writes it: "0", "0.05", "0.10", "0.105", "1".
fn ratio(basis_points: i64) -> String {
    assert!(
        (0..=10_000).contains(&basis_points),
        "a ratio is between 0 and 1"
    );
    match basis_points {
        0 => return "0".to_owned(),
        10_000 => return "1".to_owned(),
        _ => {}
    }
    let text = format!("0.{basis_points:04}");
    let trimmed = text.trim_end_matches('0');
    if trimmed.len() < 4 {
        format!("{trimmed:0<4}")
    } else {
        trimmed.to_owned()
    }
}

/// The validity of a national item: most since the 2024 catalog, some added in 2025 or 2026,
/// a few dropped at the end of 2025 (still answered for earlier dates).
fn validity(rng: &mut ChaCha8Rng) -> (&'static str, Option<&'static str>) {
    match rng.random_range(0..1_000) {
        0..15 => ("2024-01-01", Some("2025-12-31")),
        15..95 => ("2025-01-01", None),
        95..115 => ("2026-01-01", None),
        _ => ("2024-01-01", None),
    }
}

/// Picks a grade by weights in percent for A and B; C takes the rest.
fn grade_by(rng: &mut ChaCha8Rng, a_percent: u32, b_percent: u32) -> Grade {
    let draw = rng.random_range(0..100);
    if draw < a_percent {
        Grade::A
    } else if draw < a_percent + b_percent {
        Grade::B
    } else {
        Grade::C
    }
}

fn national_items(rng: &mut ChaCha8Rng) -> Vec<NationalItem> {
    let mut items = Vec::new();
    western_medicines(rng, &mut items);
    chinese_patent_medicines(rng, &mut items);
    herbal_pieces(rng, &mut items);
    medical_services(rng, &mut items);
    consumables(rng, &mut items);
    let fixtures: BTreeSet<&str> = FIXTURES.iter().map(|fixture| fixture.code).collect();
    let mut codes = BTreeSet::new();
    items.retain(|item| !fixtures.contains(item.code.as_str()));
    for item in &items {
        assert!(
            codes.insert(item.code.clone()),
            "code {} generated twice",
            item.code
        );
    }
    items
}

/// Dosage forms: name, national form code, unit of the pack, pack sizes.
const FORMS: [(&str, &str, &str, &[u32]); 12] = [
    ("片", "A001", "片", &[7, 14, 24, 28, 30, 48, 100]),
    ("胶囊", "A002", "粒", &[12, 24, 36, 48]),
    ("缓释片", "A003", "片", &[7, 14, 28]),
    ("肠溶片", "A004", "片", &[14, 30, 100]),
    ("分散片", "A005", "片", &[12, 24]),
    ("颗粒", "A006", "袋", &[6, 10, 12]),
    ("口服溶液", "A007", "支", &[6, 10]),
    ("注射液", "B001", "支", &[1, 5, 10]),
    ("注射用无菌粉末", "B002", "瓶", &[1, 10]),
    ("滴眼液", "C001", "支", &[1]),
    ("软膏", "D001", "支", &[1]),
    ("吸入气雾剂", "E001", "瓶", &[1]),
];

/// Price band in yuan (or fen, where a table says so): lowest and highest.
type Band = (i64, i64);

type Western = (
    &'static str,
    &'static str,
    &'static [usize],
    &'static [&'static str],
    Band,
);

/// Western medicines: ATC level-4 class, generic name, form indices into [`FORMS`], strengths,
/// and the price band of one pack in yuan.
const WESTERN: [Western; 84] = [
    (
        "A02BC",
        "奥美拉唑",
        &[4, 1, 8],
        &["10mg", "20mg", "40mg"],
        (5, 60),
    ),
    ("A02BC", "泮托拉唑", &[4, 8], &["20mg", "40mg"], (8, 80)),
    ("A02BC", "雷贝拉唑", &[4], &["10mg", "20mg"], (10, 70)),
    ("A02BA", "法莫替丁", &[0, 8], &["20mg"], (3, 30)),
    ("A03FA", "多潘立酮", &[0], &["10mg"], (5, 30)),
    ("A03FA", "莫沙必利", &[0, 4], &["5mg"], (10, 40)),
    ("A06AD", "乳果糖", &[6], &["15ml:10g"], (20, 60)),
    ("A07DA", "洛哌丁胺", &[1], &["2mg"], (8, 25)),
    ("A07FA", "双歧杆菌三联活菌", &[1], &["210mg"], (15, 45)),
    ("A10BA", "二甲双胍", &[0, 2], &["0.25g", "0.5g"], (3, 40)),
    ("A10BB", "格列美脲", &[0], &["1mg", "2mg"], (5, 50)),
    ("A10BB", "格列齐特", &[2], &["30mg"], (10, 45)),
    ("A10BF", "阿卡波糖", &[0], &["50mg", "100mg"], (10, 70)),
    ("A10BH", "西格列汀", &[0], &["100mg"], (20, 120)),
    ("A10AB", "门冬胰岛素", &[7], &["3ml:300单位"], (40, 90)),
    ("A10AE", "甘精胰岛素", &[7], &["3ml:300单位"], (60, 200)),
    ("B01AC", "阿司匹林", &[3], &["25mg", "100mg"], (2, 20)),
    ("B01AC", "氯吡格雷", &[0], &["25mg", "75mg"], (5, 120)),
    ("B01AA", "华法林", &[0], &["2.5mg", "3mg"], (5, 30)),
    ("B01AF", "利伐沙班", &[0], &["10mg", "20mg"], (10, 200)),
    ("B03AA", "琥珀酸亚铁", &[0], &["0.1g"], (5, 25)),
    ("B03BA", "甲钴胺", &[0, 7], &["0.5mg"], (8, 45)),
    ("C01DA", "硝酸甘油", &[0, 7], &["0.5mg", "1ml:5mg"], (3, 30)),
    (
        "C01DA",
        "单硝酸异山梨酯",
        &[2, 0],
        &["20mg", "40mg"],
        (8, 50),
    ),
    ("C03CA", "呋塞米", &[0, 7], &["20mg"], (2, 15)),
    ("C03AA", "氢氯噻嗪", &[0], &["25mg"], (2, 10)),
    ("C07AB", "美托洛尔", &[0, 2], &["25mg", "47.5mg"], (5, 45)),
    ("C07AB", "比索洛尔", &[0], &["2.5mg", "5mg"], (8, 40)),
    ("C08CA", "氨氯地平", &[0], &["5mg"], (3, 40)),
    (
        "C08CA",
        "硝苯地平",
        &[2],
        &["10mg", "20mg", "30mg"],
        (5, 60),
    ),
    ("C08CA", "非洛地平", &[2], &["2.5mg", "5mg"], (10, 50)),
    ("C09AA", "依那普利", &[0], &["5mg", "10mg"], (3, 30)),
    ("C09AA", "贝那普利", &[0], &["10mg"], (10, 45)),
    ("C09CA", "缬沙坦", &[1, 0], &["80mg", "160mg"], (8, 55)),
    ("C09CA", "厄贝沙坦", &[0], &["75mg", "150mg"], (5, 45)),
    ("C09CA", "氯沙坦", &[0], &["50mg", "100mg"], (8, 50)),
    ("C09CA", "替米沙坦", &[0], &["40mg", "80mg"], (8, 45)),
    (
        "C10AA",
        "阿托伐他汀钙",
        &[0],
        &["10mg", "20mg", "40mg"],
        (5, 60),
    ),
    (
        "C10AA",
        "瑞舒伐他汀钙",
        &[0],
        &["5mg", "10mg", "20mg"],
        (5, 60),
    ),
    ("C10AA", "辛伐他汀", &[0], &["20mg"], (5, 30)),
    ("C10AB", "非诺贝特", &[1], &["0.2g"], (10, 45)),
    ("D06AX", "莫匹罗星", &[10], &["5g:0.1g"], (10, 25)),
    ("D07AC", "糠酸莫米松", &[10], &["5g:5mg"], (10, 30)),
    ("G04CA", "坦索罗辛", &[1], &["0.2mg"], (15, 60)),
    ("G04CB", "非那雄胺", &[0], &["5mg"], (10, 70)),
    ("H02AB", "泼尼松", &[0], &["5mg"], (2, 10)),
    (
        "H02AB",
        "地塞米松",
        &[0, 7],
        &["0.75mg", "1ml:5mg"],
        (1, 10),
    ),
    ("H02AB", "甲泼尼龙", &[0, 8], &["4mg", "40mg"], (10, 60)),
    ("H03AA", "左甲状腺素钠", &[0], &["50μg", "100μg"], (10, 40)),
    (
        "J01CA",
        "阿莫西林",
        &[1, 4, 11],
        &["0.25g", "0.5g"],
        (3, 25),
    ),
    (
        "J01CR",
        "阿莫西林克拉维酸钾",
        &[0, 11],
        &["0.375g", "0.457g"],
        (10, 50),
    ),
    ("J01DB", "头孢氨苄", &[1], &["0.25g"], (3, 20)),
    ("J01DC", "头孢呋辛酯", &[0], &["0.125g", "0.25g"], (5, 40)),
    (
        "J01DD",
        "头孢曲松钠",
        &[8],
        &["0.5g", "1.0g", "2.0g"],
        (2, 60),
    ),
    ("J01DD", "头孢克肟", &[4, 1], &["0.1g"], (8, 45)),
    ("J01FA", "阿奇霉素", &[0, 1, 8], &["0.25g", "0.5g"], (5, 50)),
    ("J01FA", "克拉霉素", &[0], &["0.25g"], (8, 40)),
    ("J01MA", "左氧氟沙星", &[0, 7], &["0.5g", "0.1g"], (5, 45)),
    ("J01MA", "莫西沙星", &[0], &["0.4g"], (10, 80)),
    ("J01XD", "甲硝唑", &[0, 7], &["0.2g", "100ml:0.5g"], (2, 20)),
    (
        "J05AB",
        "阿昔洛韦",
        &[0, 10],
        &["0.1g", "10g:0.3g"],
        (3, 25),
    ),
    ("J05AH", "奥司他韦", &[1, 5], &["75mg", "15mg"], (20, 120)),
    ("M01AE", "布洛芬", &[1, 2, 6], &["0.2g", "0.3g"], (5, 30)),
    ("M01AB", "双氯芬酸钠", &[3, 2], &["25mg", "75mg"], (3, 30)),
    ("M01AH", "塞来昔布", &[1], &["0.2g"], (10, 80)),
    ("M04AA", "别嘌醇", &[0, 2], &["0.1g", "0.25g"], (3, 30)),
    ("M04AC", "秋水仙碱", &[0], &["0.5mg"], (5, 25)),
    (
        "N02BE",
        "对乙酰氨基酚",
        &[0, 6],
        &["0.5g", "100ml:2.4g"],
        (2, 20),
    ),
    ("N02AX", "曲马多", &[2], &["0.1g"], (10, 40)),
    ("N03AX", "加巴喷丁", &[1], &["0.1g", "0.3g"], (10, 60)),
    ("N03AF", "卡马西平", &[0], &["0.1g", "0.2g"], (5, 30)),
    ("N05BA", "地西泮", &[0, 7], &["2.5mg", "2ml:10mg"], (1, 10)),
    ("N05CF", "佐匹克隆", &[0], &["3.75mg", "7.5mg"], (5, 30)),
    ("N05CD", "艾司唑仑", &[0], &["1mg"], (2, 15)),
    ("N06AB", "舍曲林", &[0], &["50mg"], (10, 80)),
    ("N06AB", "帕罗西汀", &[0], &["20mg"], (10, 70)),
    ("R03AC", "沙丁胺醇", &[11], &["100μg*200揿"], (15, 40)),
    ("R03BA", "布地奈德", &[11], &["200μg*100揿"], (40, 120)),
    ("R03DC", "孟鲁司特钠", &[0, 5], &["10mg", "4mg"], (20, 90)),
    (
        "R05CB",
        "氨溴索",
        &[0, 6, 7],
        &["30mg", "2ml:15mg"],
        (3, 30),
    ),
    ("R05CB", "乙酰半胱氨酸", &[5], &["0.2g"], (10, 40)),
    ("R06AE", "西替利嗪", &[0], &["10mg"], (5, 30)),
    ("R06AX", "氯雷他定", &[0], &["10mg"], (5, 30)),
    ("S01AE", "左氧氟沙星", &[9], &["5ml:24.4mg"], (10, 30)),
];

/// Fictional manufacturers; the codes' last five digits name one.
const MANUFACTURERS: usize = 60;

fn western_medicines(rng: &mut ChaCha8Rng, items: &mut Vec<NationalItem>) {
    for (generic_index, (class, generic, forms, strengths, (low, high))) in
        WESTERN.iter().enumerate()
    {
        // The generic-name code: a letter and three digits, unique per generic.
        let generic_code = format!("D{:03}", generic_index + 1);
        let grade = grade_by(rng, 40, 52);
        for &form_index in *forms {
            let (form, form_code, unit, packs) = FORMS[form_index];
            for (strength_index, strength) in strengths.iter().enumerate() {
                let pack = *packs.choose(rng).expect("every form has pack sizes");
                let spec_code = format!("{:02}{:02}", strength_index + 1, pack % 100);
                let makers = rng.random_range(4..=8);
                for manufacturer in pick_manufacturers(rng, makers) {
                    let (valid_from, valid_until) = validity(rng);
                    let capped = rng.random_ratio(7, 10);
                    items.push(NationalItem {
                        code: format!(
                            "X{class}{generic_code}{form_code}{spec_code}{manufacturer:05}"
                        ),
                        name: format!("{generic}{form} {strength}*{pack}{unit}"),
                        kind: Kind::Drug,
                        grade,
                        cap_fen: capped.then(|| rng.random_range(low * 100..=high * 100)),
                        valid_from,
                        valid_until,
                    });
                }
            }
        }
    }
}

/// `count` distinct manufacturer numbers, in increasing order.
fn pick_manufacturers(rng: &mut ChaCha8Rng, count: usize) -> Vec<usize> {
    let mut chosen = BTreeSet::new();
    while chosen.len() < count {
        chosen.insert(rng.random_range(1..=MANUFACTURERS) * 17 + 100);
    }
    chosen.into_iter().collect()
}

type ChinesePatent = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [u32],
    Band,
);

/// Chinese patent medicines: national class, name with its form, strength, pack unit, packs,
/// price band in yuan.
const CHINESE_PATENT: [ChinesePatent; 40] = [
    ("A01AA", "感冒清热颗粒", "12g", "袋", &[10], (10, 25)),
    ("A01BA", "银翘解毒片", "0.3g", "片", &[24, 36], (5, 15)),
    ("A01BA", "双黄连口服液", "10ml", "支", &[10], (15, 35)),
    ("A03AA", "板蓝根颗粒", "10g", "袋", &[20], (8, 20)),
    ("A03AA", "蒲地蓝消炎口服液", "10ml", "支", &[10], (25, 50)),
    ("A03BA", "清开灵颗粒", "3g", "袋", &[10], (10, 30)),
    ("A03BA", "牛黄解毒片", "0.3g", "片", &[24], (3, 10)),
    ("A03BB", "黄连上清片", "0.3g", "片", &[24], (5, 15)),
    ("A04AA", "藿香正气水", "10ml", "支", &[10], (8, 20)),
    ("A05AA", "小柴胡颗粒", "10g", "袋", &[10], (10, 25)),
    ("A06AA", "三九胃泰颗粒", "20g", "袋", &[6], (12, 25)),
    ("A06AB", "香砂养胃丸", "9g", "袋", &[10], (10, 25)),
    ("A07AA", "急支糖浆", "100ml", "瓶", &[1], (10, 25)),
    ("A07AB", "川贝枇杷膏", "150ml", "瓶", &[1], (15, 40)),
    ("A08AA", "六味地黄丸", "0.2g", "丸", &[120, 200], (8, 30)),
    ("A08AA", "金匮肾气丸", "0.2g", "丸", &[120], (15, 35)),
    ("A08BA", "补中益气丸", "6g", "袋", &[10], (10, 30)),
    ("A08BB", "参苓白术散", "6g", "袋", &[10], (10, 30)),
    ("A09AA", "逍遥丸", "9g", "袋", &[10], (8, 25)),
    ("A10AA", "复方丹参滴丸", "27mg", "丸", &[180], (20, 45)),
    ("A10AA", "速效救心丸", "40mg", "丸", &[60, 180], (15, 45)),
    ("A10AB", "麝香保心丸", "22.5mg", "丸", &[42], (25, 50)),
    ("A10AB", "通心络胶囊", "0.26g", "粒", &[30, 40], (25, 60)),
    ("A10BA", "脑心通胶囊", "0.4g", "粒", &[48], (25, 60)),
    ("A10BA", "血塞通软胶囊", "0.33g", "粒", &[24], (20, 50)),
    ("A10BB", "稳心颗粒", "9g", "袋", &[9], (20, 45)),
    ("A10BB", "银杏叶片", "19.2mg", "片", &[24, 48], (10, 40)),
    ("A10CA", "养血清脑颗粒", "4g", "袋", &[15], (25, 55)),
    ("A10CA", "正天丸", "6g", "袋", &[10], (15, 35)),
    ("A11AA", "消渴丸", "2.5g", "丸", &[120], (15, 35)),
    ("A12AA", "护肝片", "0.35g", "片", &[36, 100], (10, 30)),
    ("B01AA", "云南白药胶囊", "0.25g", "粒", &[16, 32], (20, 45)),
    ("B02AA", "马应龙麝香痔疮膏", "10g", "支", &[1], (10, 25)),
    ("C01AA", "平消胶囊", "0.23g", "粒", &[100], (30, 80)),
    ("D01AA", "乌鸡白凤丸", "9g", "丸", &[10], (15, 40)),
    ("D01AB", "益母草颗粒", "15g", "袋", &[10], (10, 25)),
    ("E01AA", "小儿豉翘清热颗粒", "2g", "袋", &[6], (15, 35)),
    ("F01AA", "丹参注射液", "10ml", "支", &[5, 10], (10, 40)),
    ("F01AA", "血栓通注射液", "5ml:0.175g", "支", &[5], (20, 70)),
    ("F02AA", "舒血宁注射液", "5ml", "支", &[5], (15, 50)),
];

fn chinese_patent_medicines(rng: &mut ChaCha8Rng, items: &mut Vec<NationalItem>) {
    for (index, (class, name, strength, unit, packs, (low, high))) in
        CHINESE_PATENT.iter().enumerate()
    {
        let generic_code = format!("Y{:03}", index + 1);
        let form_code = if name.ends_with("注射液") {
            "B001"
        } else {
            "A009"
        };
        let grade = grade_by(rng, 30, 60);
        for (pack_index, pack) in packs.iter().enumerate() {
            let spec_code = format!("{:02}{:02}", pack_index + 1, pack % 100);
            let makers = rng.random_range(3..=7);
            for manufacturer in pick_manufacturers(rng, makers) {
                let (valid_from, valid_until) = validity(rng);
                items.push(NationalItem {
                    code: format!("Z{class}{generic_code}{form_code}{spec_code}{manufacturer:05}"),
                    name: format!("{name} {strength}*{pack}{unit}"),
                    kind: Kind::Drug,
                    grade,
                    cap_fen: rng
                        .random_ratio(6, 10)
                        .then(|| rng.random_range(low * 100..=high * 100)),
                    valid_from,
                    valid_until,
                });
            }
        }
    }
}

type Herb = (&'static str, &'static [&'static str], Band, bool);

/// Herbal pieces: name, processed forms (生 is the plain slice), price band per 10 g in fen,
/// and whether the national list leaves it out (precious tonics are self-paid).
const HERBS: [Herb; 52] = [
    ("黄芪", &["", "蜜"], (40, 120), false),
    ("当归", &["", "酒"], (60, 200), false),
    ("党参", &["", "炒"], (50, 150), false),
    ("白术", &["", "麸炒"], (40, 120), false),
    ("茯苓", &[""], (30, 80), false),
    ("甘草", &["", "炙"], (20, 60), false),
    ("川芎", &["", "酒"], (30, 100), false),
    ("白芍", &["", "炒"], (30, 90), false),
    ("熟地黄", &[""], (30, 80), false),
    ("生地黄", &[""], (30, 80), false),
    ("枸杞子", &[""], (50, 150), false),
    ("金银花", &[""], (100, 400), false),
    ("连翘", &[""], (60, 200), false),
    ("板蓝根", &[""], (20, 60), false),
    ("陈皮", &[""], (20, 80), false),
    ("半夏", &["法", "姜", "清"], (80, 300), false),
    ("桔梗", &[""], (30, 90), false),
    ("柴胡", &["", "醋"], (80, 250), false),
    ("黄芩", &["", "酒"], (30, 100), false),
    ("黄连", &["", "酒", "姜"], (150, 450), false),
    ("丹参", &["", "酒"], (20, 70), false),
    ("三七粉", &[""], (300, 900), false),
    ("山药", &["", "麸炒"], (30, 90), false),
    ("薏苡仁", &["", "麸炒"], (20, 60), false),
    ("菊花", &[""], (40, 150), false),
    ("麦冬", &[""], (80, 250), false),
    ("五味子", &["", "醋"], (80, 250), false),
    ("酸枣仁", &["", "炒"], (200, 600), false),
    ("山楂", &["", "炒", "焦"], (10, 40), false),
    ("决明子", &["", "炒"], (10, 40), false),
    ("蒲公英", &[""], (10, 40), false),
    ("桂枝", &[""], (10, 40), false),
    ("麻黄", &["", "蜜"], (20, 60), false),
    ("杏仁", &["苦", "炒苦"], (30, 100), false),
    ("厚朴", &["", "姜"], (30, 100), false),
    ("枳壳", &["", "麸炒"], (20, 70), false),
    ("木香", &[""], (30, 100), false),
    ("砂仁", &[""], (200, 600), false),
    ("藿香", &["广"], (20, 60), false),
    ("泽泻", &["", "盐"], (20, 60), false),
    ("牛膝", &["", "酒"], (30, 100), false),
    ("杜仲", &["", "盐"], (30, 100), false),
    ("续断", &["", "酒"], (30, 100), false),
    ("天麻", &[""], (200, 700), false),
    ("川贝母", &[""], (800, 2_500), false),
    ("阿胶", &[""], (1_500, 4_000), true),
    ("人参", &["", "红"], (800, 3_000), true),
    ("西洋参", &[""], (600, 2_000), true),
    ("冬虫夏草", &[""], (20_000, 60_000), true),
    ("鹿茸", &[""], (3_000, 9_000), true),
    ("紫河车", &[""], (500, 1_500), true),
    ("龟甲胶", &[""], (1_000, 3_000), true),
];

fn herbal_pieces(rng: &mut ChaCha8Rng, items: &mut Vec<NationalItem>) {
    for (herb_index, (herb, processings, (low, high), excluded)) in HERBS.iter().enumerate() {
        for (processing_index, processing) in processings.iter().enumerate() {
            let (valid_from, valid_until) = validity(rng);
            let grade = if *excluded {
                Grade::C
            } else {
                grade_by(rng, 85, 10)
            };
            let name = if processing.is_empty() {
                format!("{herb}(饮片) 每10g")
            } else {
                format!("{processing}{herb}(饮片) 每10g")
            };
            // Each piece comes in several national specifications (whole, sliced, fine
            // powder); the city lists each at its own price.
            for spec in 1..=4 {
                items.push(NationalItem {
                    code: format!(
                        "T{:03}{:03}{:03}",
                        herb_index / 10 + 1,
                        herb_index + 1,
                        processing_index * 10 + spec
                    ),
                    name: match spec {
                        1 => name.clone(),
                        2 => name.replace("(饮片)", "(饮片 切片)"),
                        3 => name.replace("(饮片)", "(饮片 切段)"),
                        _ => name.replace("(饮片)", "(配方颗粒)"),
                    },
                    kind: Kind::Drug,
                    grade,
                    cap_fen: Some(rng.random_range(*low..=*high)),
                    valid_from,
                    valid_until,
                });
            }
        }
    }
}

/// Body parts each imaging study below is listed for.
const BODY_PARTS: [&str; 16] = [
    "头颅",
    "颈部",
    "胸部",
    "上腹部",
    "下腹部",
    "盆腔",
    "颈椎",
    "胸椎",
    "腰椎",
    "肩关节",
    "膝关节",
    "髋关节",
    "踝关节",
    "腕关节",
    "鼻窦",
    "眼眶",
];

/// Imaging studies: six-digit category, name, national grade, price band in yuan.
const IMAGING: [(&str, &str, Grade, Band); 6] = [
    ("210102", "数字化X线摄影(DR)", Grade::A, (40, 120)),
    ("210300", "X线计算机体层(CT)平扫", Grade::B, (120, 260)),
    ("210301", "X线计算机体层(CT)增强扫描", Grade::B, (250, 420)),
    ("210200", "磁共振(MR)平扫", Grade::B, (380, 700)),
    ("210201", "磁共振(MR)增强扫描", Grade::B, (600, 1_000)),
    ("220201", "彩色多普勒超声检查", Grade::A, (60, 160)),
];

type Services = (&'static str, Grade, Band, &'static [&'static str]);

/// Other medical services: six-digit category, national grade, price band in yuan, names.
const SERVICES: [Services; 12] = [
    (
        "110200",
        Grade::A,
        (5, 50),
        &[
            "副主任医师诊查费",
            "主任医师诊查费",
            "急诊诊查费",
            "门急诊留观诊查费",
            "全科医生诊查费",
            "中医辨证论治",
            "药学门诊服务费",
        ],
    ),
    (
        "120400",
        Grade::A,
        (3, 30),
        &[
            "肌肉注射",
            "静脉注射",
            "静脉输液",
            "小儿头皮静脉输液",
            "静脉输液(第二组起)",
            "皮下注射",
            "皮内注射",
            "静脉采血",
            "动脉采血",
            "雾化吸入",
            "氧气吸入",
            "鼻饲管置管",
            "导尿",
            "灌肠",
            "清洁灌肠",
            "大换药",
            "中换药",
            "小换药",
            "拆线",
            "清创缝合(小)",
        ],
    ),
    (
        "250101",
        Grade::A,
        (3, 40),
        &[
            "血细胞分析",
            "网织红细胞计数",
            "红细胞沉降率测定",
            "血型鉴定(ABO)",
            "凝血酶原时间测定",
            "活化部分凝血活酶时间测定",
            "纤维蛋白原测定",
            "D-二聚体测定",
        ],
    ),
    (
        "250102",
        Grade::A,
        (2, 30),
        &[
            "尿液分析",
            "尿沉渣定量",
            "尿微量白蛋白测定",
            "粪便常规",
            "粪便隐血试验",
            "尿妊娠试验",
        ],
    ),
    (
        "250301",
        Grade::A,
        (3, 40),
        &[
            "葡萄糖测定",
            "糖化血红蛋白测定",
            "总胆固醇测定",
            "甘油三酯测定",
            "高密度脂蛋白胆固醇测定",
            "低密度脂蛋白胆固醇测定",
            "丙氨酸氨基转移酶测定",
            "天门冬氨酸氨基转移酶测定",
            "总胆红素测定",
            "直接胆红素测定",
            "总蛋白测定",
            "白蛋白测定",
            "肌酐测定",
            "尿素测定",
            "尿酸测定",
            "钾测定",
            "钠测定",
            "氯测定",
            "钙测定",
            "肌酸激酶测定",
            "乳酸脱氢酶测定",
            "淀粉酶测定",
        ],
    ),
    (
        "250401",
        Grade::A,
        (10, 120),
        &[
            "C反应蛋白测定",
            "降钙素原测定",
            "乙型肝炎表面抗原测定",
            "乙型肝炎表面抗体测定",
            "丙型肝炎抗体测定",
            "人类免疫缺陷病毒抗体测定",
            "梅毒螺旋体特异抗体测定",
            "甲胎蛋白测定",
            "癌胚抗原测定",
            "前列腺特异性抗原测定",
            "促甲状腺激素测定",
            "游离甲状腺素测定",
            "肌钙蛋白I测定",
            "B型钠尿肽前体测定",
            "新型冠状病毒核酸检测",
            "甲型流感病毒抗原检测",
        ],
    ),
    (
        "310701",
        Grade::A,
        (10, 200),
        &[
            "常规心电图检查",
            "动态心电图",
            "动态血压监测",
            "心电图运动试验",
            "平板运动试验",
        ],
    ),
    (
        "310601",
        Grade::A,
        (20, 200),
        &[
            "肺通气功能检查",
            "支气管舒张试验",
            "呼气一氧化氮测定",
            "睡眠呼吸监测",
        ],
    ),
    (
        "310901",
        Grade::B,
        (150, 600),
        &[
            "电子胃镜检查",
            "电子结肠镜检查",
            "无痛胃镜检查",
            "胶囊内镜检查",
            "电子支气管镜检查",
        ],
    ),
    (
        "340200",
        Grade::A,
        (10, 60),
        &[
            "运动疗法",
            "偏瘫肢体综合训练",
            "作业疗法",
            "言语训练",
            "吞咽功能障碍训练",
            "中频脉冲电治疗",
            "超短波治疗",
            "红外线治疗",
            "牵引",
            "手法治疗",
        ],
    ),
    (
        "430000",
        Grade::A,
        (10, 60),
        &[
            "普通针刺",
            "温针",
            "电针",
            "艾灸",
            "拔罐",
            "刮痧",
            "推拿治疗",
            "穴位贴敷治疗",
            "中药熏洗治疗",
            "耳穴压豆",
            "小针刀治疗",
            "中药塌渍治疗",
        ],
    ),
    (
        "120100",
        Grade::C,
        (20, 300),
        &[
            "特需门诊诊查费",
            "知名专家诊查费",
            "健康体检一般检查",
            "美容咨询",
            "医疗证明书",
        ],
    ),
];

fn medical_services(rng: &mut ChaCha8Rng, items: &mut Vec<NationalItem>) {
    let mut service = |category: &str,
                       serial: usize,
                       name: String,
                       grade: Grade,
                       (low, high): (i64, i64),
                       rng: &mut ChaCha8Rng| {
        let (valid_from, valid_until) = validity(rng);
        items.push(NationalItem {
            code: format!("00{category}{serial:03}0000"),
            name,
            kind: Kind::MedicalService,
            grade,
            cap_fen: Some(rng.random_range(low * 100..=high * 100)),
            valid_from,
            valid_until,
        });
    };
    for (category, study, grade, band) in IMAGING {
        for (index, part) in BODY_PARTS.iter().enumerate() {
            // The CT of the head is also a fixture; the fixture's row replaces this one.
            service(
                category,
                index + 1,
                format!("{study} {part}"),
                grade,
                band,
                rng,
            );
        }
    }
    for (category, grade, band, names) in SERVICES {
        // Serial 1 of the consultations is the fixture 普通门诊诊查费.
        let first = if category == "110200" { 2 } else { 1 };
        for (index, name) in names.iter().enumerate() {
            let grade = if rng.random_ratio(1, 10) {
                regrade(grade, rng)
            } else {
                grade
            };
            // Consultations and nursing procedures carry a separate item for children under
            // six, who are charged a supplement.
            let tiers: &[&str] = if matches!(category, "110200" | "120400") {
                &["", "(6岁以下儿童)"]
            } else {
                &[""]
            };
            for (tier, suffix) in tiers.iter().enumerate() {
                service(
                    category,
                    first + index * tiers.len() + tier,
                    format!("{name}{suffix}"),
                    grade,
                    band,
                    rng,
                );
            }
        }
    }
}

type Consumable = (
    &'static str,
    &'static str,
    &'static [&'static str],
    Grade,
    Band,
);

/// Consumables: category code (six digits), name, specifications, national grade, price band in
/// yuan.
const CONSUMABLES: [Consumable; 30] = [
    (
        "020101",
        "一次性使用无菌注射器",
        &["1ml", "2ml", "5ml", "10ml", "20ml", "50ml"],
        Grade::B,
        (1, 5),
    ),
    (
        "020102",
        "一次性使用输液器 带针",
        &["0.55mm", "0.7mm"],
        Grade::B,
        (2, 8),
    ),
    (
        "020103",
        "一次性使用精密过滤输液器",
        &["0.55mm", "0.7mm"],
        Grade::B,
        (8, 25),
    ),
    (
        "020401",
        "一次性使用静脉留置针",
        &["18G", "20G", "24G"],
        Grade::B,
        (10, 25),
    ),
    (
        "020402",
        "一次性使用采血针",
        &["21G", "23G"],
        Grade::A,
        (1, 3),
    ),
    (
        "020403",
        "一次性使用真空采血管",
        &["2ml", "5ml"],
        Grade::A,
        (1, 3),
    ),
    (
        "030101",
        "医用外科口罩",
        &["17.5cm*9.5cm"],
        Grade::C,
        (1, 2),
    ),
    (
        "030201",
        "医用脱脂纱布块",
        &["5cm*7cm-8层", "8cm*10cm-8层"],
        Grade::A,
        (1, 4),
    ),
    ("030202", "医用棉签", &["10cm"], Grade::C, (1, 3)),
    (
        "030301",
        "伤口敷贴",
        &["6cm*7cm", "9cm*10cm", "9cm*25cm"],
        Grade::B,
        (2, 12),
    ),
    (
        "030302",
        "医用透气胶带",
        &["1.25cm*9.1m", "2.5cm*9.1m"],
        Grade::C,
        (3, 10),
    ),
    (
        "030401",
        "医用弹力绷带",
        &["7.5cm*4.5m", "10cm*4.5m"],
        Grade::B,
        (5, 20),
    ),
    (
        "030402",
        "石膏绷带",
        &["10cm*3m", "15cm*3m"],
        Grade::B,
        (5, 25),
    ),
    (
        "040101",
        "一次性使用导尿包",
        &["12Fr", "14Fr", "16Fr", "18Fr"],
        Grade::B,
        (15, 45),
    ),
    (
        "040102",
        "一次性使用吸痰管",
        &["10Fr", "12Fr", "14Fr"],
        Grade::B,
        (2, 8),
    ),
    (
        "040103",
        "一次性使用胃管",
        &["14Fr", "16Fr"],
        Grade::B,
        (5, 20),
    ),
    (
        "040104",
        "一次性使用鼻氧管",
        &["成人", "儿童"],
        Grade::B,
        (2, 8),
    ),
    (
        "040105",
        "一次性使用雾化面罩",
        &["成人", "儿童"],
        Grade::B,
        (8, 25),
    ),
    ("050101", "血糖试纸", &["25片", "50片"], Grade::B, (40, 120)),
    (
        "050102",
        "胰岛素笔用针头",
        &["4mm", "5mm", "8mm"],
        Grade::B,
        (1, 3),
    ),
    (
        "060101",
        "可吸收缝合线",
        &["2-0", "3-0", "4-0"],
        Grade::B,
        (30, 120),
    ),
    (
        "060102",
        "可吸收止血纱布",
        &["5cm*7.5cm", "10cm*20cm"],
        Grade::B,
        (80, 400),
    ),
    (
        "060201",
        "一次性使用造口袋",
        &["一件式", "两件式"],
        Grade::B,
        (20, 60),
    ),
    (
        "070101",
        "冠状动脉药物洗脱支架",
        &["2.5mm*18mm", "3.0mm*24mm", "3.5mm*30mm"],
        Grade::B,
        (600, 900),
    ),
    (
        "070201",
        "人工晶状体",
        &["折叠式", "非球面"],
        Grade::B,
        (1_500, 6_000),
    ),
    (
        "070301",
        "骨科锁定接骨板",
        &["5孔", "7孔", "9孔"],
        Grade::B,
        (2_000, 9_000),
    ),
    (
        "070302",
        "骨科松质骨螺钉",
        &["4.0mm", "6.5mm"],
        Grade::B,
        (100, 600),
    ),
    ("080101", "医用冷敷贴", &["6cm*10cm"], Grade::C, (10, 40)),
    ("080102", "医用护腰", &["M", "L", "XL"], Grade::C, (50, 200)),
    (
        "080103",
        "一次性使用腹腔镜穿刺器",
        &["5mm", "10mm", "12mm"],
        Grade::B,
        (200, 900),
    ),
];

fn consumables(rng: &mut ChaCha8Rng, items: &mut Vec<NationalItem>) {
    for (category, name, specs, grade, (low, high)) in CONSUMABLES {
        for (spec_index, spec) in specs.iter().enumerate() {
            let makers = rng.random_range(2..=5);
            for manufacturer in pick_manufacturers(rng, makers) {
                let (valid_from, valid_until) = validity(rng);
                // Category (6), general name and material (7), specification (3), enterprise (3).
                items.push(NationalItem {
                    code: format!(
                        "C{category}0010001{:03}{:03}",
                        spec_index + 1,
                        manufacturer % 1_000
                    ),
                    name: format!("{name} {spec}"),
                    kind: Kind::Consumable,
                    grade,
                    cap_fen: rng
                        .random_ratio(8, 10)
                        .then(|| rng.random_range(low * 100..=high * 100)),
                    valid_from,
                    valid_until,
                });
            }
        }
    }
}

/// One insured city's ordinary outpatient terms, all amounts in yuan, ratios in basis points:
/// per insurance type (employee, resident) and person type (in service, retired), the yearly
/// deductible, the reimbursement ratio at levels 1, 2 and 3, and the yearly cap.
struct CityPolicy {
    code: &'static str,
    /// [employee in service, employee retired, resident in service, resident retired]
    terms: [(i64, [i64; 3], i64); 4],
}

/// The 2026 terms. The 2025 versions had caps 500 yuan lower for employees and 100 yuan lower
/// for residents, and ratios five points lower at level 3.
const POLICIES_2026: [CityPolicy; 9] = [
    CityPolicy {
        code: "370100",
        terms: [
            (700, [8_000, 7_000, 6_000], 4_000),
            (500, [8_500, 7_500, 6_500], 5_000),
            (200, [6_000, 5_000, 4_000], 600),
            (200, [6_500, 5_500, 4_500], 800),
        ],
    },
    CityPolicy {
        code: "370300",
        terms: [
            (800, [7_500, 6_500, 5_500], 3_500),
            (600, [8_000, 7_000, 6_000], 4_500),
            (300, [5_500, 4_500, 3_500], 500),
            (300, [6_000, 5_000, 4_000], 700),
        ],
    },
    CityPolicy {
        code: "370500",
        terms: [
            (600, [8_000, 7_000, 6_000], 5_000),
            (400, [8_500, 7_500, 6_500], 6_000),
            (100, [6_000, 5_000, 4_000], 800),
            (100, [6_500, 5_500, 4_500], 1_000),
        ],
    },
    CityPolicy {
        code: "371600",
        terms: [
            (800, [7_000, 6_000, 5_000], 3_000),
            (600, [7_500, 6_500, 5_500], 4_000),
            (200, [5_000, 4_000, 3_000], 400),
            (200, [5_500, 4_500, 3_500], 600),
        ],
    },
    CityPolicy {
        code: "370900",
        terms: [
            (700, [7_500, 6_500, 5_500], 3_500),
            (500, [8_000, 7_000, 6_000], 4_500),
            (200, [5_500, 4_500, 3_500], 500),
            (200, [6_000, 5_000, 4_000], 700),
        ],
    },
    CityPolicy {
        code: "371500",
        terms: [
            (800, [7_000, 6_000, 5_000], 3_000),
            (600, [7_500, 6_500, 5_500], 4_000),
            (300, [5_000, 4_000, 3_000], 400),
            (300, [5_500, 4_500, 3_500], 600),
        ],
    },
    CityPolicy {
        code: "371400",
        terms: [
            (800, [7_500, 6_500, 5_500], 3_000),
            (600, [8_000, 7_000, 6_000], 4_000),
            (200, [5_500, 4_500, 3_500], 500),
            (200, [6_000, 5_000, 4_000], 700),
        ],
    },
    // The Shengli Oilfield's pool: a lower deductible and higher ratios than Dongying's.
    CityPolicy {
        code: "370590",
        terms: [
            (500, [8_500, 7_500, 6_500], 5_000),
            (300, [9_000, 8_000, 7_000], 6_000),
            (100, [6_500, 5_500, 4_500], 800),
            (100, [7_000, 6_000, 5_000], 1_000),
        ],
    },
    CityPolicy {
        code: "379900",
        terms: [
            (800, [8_000, 7_000, 6_000], 5_000),
            (600, [8_500, 7_500, 6_500], 6_000),
            (200, [6_000, 5_000, 4_000], 600),
            (200, [6_500, 5_500, 4_500], 800),
        ],
    },
];

/// `cities` are indexes in [`CITIES`] (and so in [`POLICIES_2026`]), in the network file's order.
fn write_policies(dir: &Path, cities: &[usize]) -> io::Result<()> {
    let mut writer = csv::Writer::from_path(dir.join("policies.csv"))?;
    writer.write_record([
        "insured_city",
        "insurance_type",
        "person_type",
        "hospital_level",
        "deductible",
        "reimbursement_ratio",
        "annual_cap",
        "effective_from",
    ])?;
    let kinds = [
        ("310", "in_service"),
        ("310", "retired"),
        ("390", "in_service"),
        ("390", "retired"),
    ];
    for &city_index in cities {
        let city = &POLICIES_2026[city_index];
        assert_eq!(city.code, CITIES[city_index].code, "one order of cities");
        for ((insurance_type, person_type), (deductible, ratios, cap)) in
            kinds.iter().zip(city.terms)
        {
            for (level, ratio_bp) in ratios.iter().enumerate() {
                let earlier_cap = if *insurance_type == "310" {
                    cap - 500
                } else {
                    cap - 100
                };
                let earlier_ratio = if level == 2 {
                    ratio_bp - 500
                } else {
                    *ratio_bp
                };
                for (effective_from, cap, ratio_bp) in [
                    ("2025-01-01", earlier_cap, earlier_ratio),
                    ("2026-01-01", cap, *ratio_bp),
                ] {
                    writer.write_record([
                        city.code,
                        insurance_type,
                        person_type,
                        &(level + 1).to_string(),
                        &yuan(deductible * 100),
                        &ratio(ratio_bp),
                        &yuan(cap * 100),
                        effective_from,
                    ])?;
                }
            }
        }
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the generator is deterministic, that the committed seed files are its output for
    // the seed `yitong seed generate` uses by default, and that they read back as valid seeds
    // with at least 2,000 items in every city of the circle.
    #[test]
    fn deterministic_and_committed() {
        let first = tempfile_dir("first");
        let second = tempfile_dir("second");
        let network = crate::generate::tests::committed_network();
        write_catalog_seeds(&first, &network, 20_261_125).unwrap();
        write_catalog_seeds(&second, &network, 20_261_125).unwrap();
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seeds");
        for file in ["catalog_items.csv", "policies.csv"] {
            let generated = std::fs::read(first.join(file)).unwrap();
            assert_eq!(
                generated,
                std::fs::read(second.join(file)).unwrap(),
                "{file}"
            );
            assert!(
                generated == std::fs::read(committed.join(file)).unwrap(),
                "seeds/{file} differs from the generator's output: run `yitong seed generate`"
            );
        }
        let other = tempfile_dir("other");
        write_catalog_seeds(&other, &network, 7).unwrap();
        assert_ne!(
            std::fs::read(first.join("catalog_items.csv")).unwrap(),
            std::fs::read(other.join("catalog_items.csv")).unwrap()
        );

        let items = crate::catalog::load_items(&first).expect("items read back");
        let policies = crate::catalog::load_policies(&first).expect("policies read back");
        for city in CITIES {
            let code = yitong_core::PoolCode::parse(city.code).unwrap();
            let listed = items
                .iter()
                .filter(|(item_city, _)| *item_city == code)
                .count();
            assert!(
                listed >= CATALOG_ITEMS_PER_CITY_MIN,
                "{}: {listed}",
                city.code
            );
            let versions = policies
                .iter()
                .filter(|(policy_city, _)| *policy_city == code)
                .count();
            assert_eq!(versions, 2 * 2 * 3 * 2, "{}", city.code);
        }
        for dir in [first, second, other] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    // Proves ratios are written as the wire writes them.
    #[test]
    fn ratio_text() {
        for (points, text) in [
            (0, "0"),
            (500, "0.05"),
            (1_000, "0.10"),
            (1_050, "0.105"),
            (8_500, "0.85"),
        ] {
            assert_eq!(ratio(points), text);
        }
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "yitong-catalog-seeds-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
