//! Generates `seeds/persons.csv`: insured persons for every city of the network file (ten
//! thousand per pilot city, two thousand per city of the circle that joins later), the same
//! every time for the same seed and network file.
//!
//! Cities are written in the network file's order from one random stream, so a city appended
//! to the file leaves every earlier city's rows as they were.
//!
//! The first eight persons of each city are fixtures the tests name by position (their card is
//! that city's card of the same serial):
//! 1 employee in service, 2 employee retired, 3 resident, 4 resident retired,
//! 5 employee suspended since 2026-03-01, 6 employee whose card is lost,
//! 7 resident terminated since 2025-12-31, 8 employee whose citizen ID ends in X.
//! The rest follow a plausible mix: about 62% employees (28% of them retired), 38% residents
//! (children included), 2% suspended, 0.7% terminated, 1.2% holding a lost card.

use std::collections::HashSet;
use std::io;
use std::path::Path;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use yitong_core::{CitizenId, Network, PoolCode};

/// Persons generated per pilot city.
pub const PERSONS_PER_CITY: usize = 10_000;
/// Persons generated per city of the circle that joins after the pilot: enough for every test
/// and demonstration, and a lighter file.
pub const PERSONS_PER_JOINING_CITY: usize = 2_000;

/// How the persons of one city are made: how many, and the districts they were mostly born in.
struct CityPersons {
    code: &'static str,
    persons: usize,
    districts: &'static [&'static str],
}

/// Every pool of the circle the generator knows: the four pilot cities' pools, then Tai'an's,
/// Liaocheng's and Dezhou's, then two second pools (illustrative): the Shengli Oilfield's,
/// hosted by Dongying, and the provincial-level pool hosted by Jinan.
const CITIES: [CityPersons; 9] = [
    CityPersons {
        code: "370100",
        persons: PERSONS_PER_CITY,
        districts: &[
            "370102", "370103", "370104", "370105", "370112", "370113", "370114", "370115",
            "370116", "370124", "370126",
        ],
    },
    CityPersons {
        code: "370300",
        persons: PERSONS_PER_CITY,
        districts: &[
            "370302", "370303", "370304", "370305", "370306", "370321", "370322", "370323",
        ],
    },
    CityPersons {
        code: "370500",
        persons: PERSONS_PER_CITY,
        districts: &["370502", "370503", "370505", "370522", "370523"],
    },
    CityPersons {
        code: "371600",
        persons: PERSONS_PER_CITY,
        districts: &[
            "371602", "371603", "371621", "371622", "371623", "371625", "371681",
        ],
    },
    CityPersons {
        code: "370900",
        persons: PERSONS_PER_JOINING_CITY,
        districts: &["370902", "370911", "370921", "370923", "370982", "370983"],
    },
    CityPersons {
        code: "371500",
        persons: PERSONS_PER_JOINING_CITY,
        districts: &[
            "371502", "371503", "371521", "371522", "371524", "371525", "371526", "371581",
        ],
    },
    CityPersons {
        code: "371400",
        persons: PERSONS_PER_JOINING_CITY,
        districts: &[
            "371402", "371403", "371422", "371423", "371424", "371425", "371426", "371427",
            "371428", "371481", "371482",
        ],
    },
    CityPersons {
        code: "370590",
        persons: PERSONS_PER_JOINING_CITY,
        // The Oilfield's people live in Dongying's districts.
        districts: &["370502", "370503", "370522"],
    },
    CityPersons {
        code: "379900",
        persons: PERSONS_PER_JOINING_CITY,
        // Provincial staff and retirees, in Jinan's central districts.
        districts: &["370102", "370103", "370104", "370105", "370112"],
    },
];

/// How a city of the network file has its persons made; a city the generator does not know is
/// an error naming it.
fn city_persons(code: PoolCode) -> io::Result<&'static CityPersons> {
    let text = code.to_string();
    CITIES
        .iter()
        .find(|city| city.code == text)
        .ok_or_else(|| crate::generate::unknown_city(code))
}

/// Districts elsewhere, for people who moved to the city (Qingdao, Yantai, Weifang, Linyi,
/// Zhengzhou, Shijiazhuang, Nanjing).
const ELSEWHERE: [&str; 7] = [
    "370202", "370602", "370702", "371302", "410102", "130102", "320102",
];

const SURNAMES: [&str; 40] = [
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林",
    "何", "郭", "马", "罗", "梁", "宋", "郑", "谢", "韩", "唐", "冯", "于", "董", "萧", "程", "曹",
    "袁", "邓", "许", "傅", "沈", "曾", "彭", "吕",
];
const GIVEN: [&str; 40] = [
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "桂兰", "建华", "志强", "海燕", "玉兰", "建国", "晓东", "雪", "婷", "浩", "宇",
    "欣怡", "子涵", "梓萱", "俊杰", "红梅", "国庆", "淑珍", "文", "鹏", "飞", "琳",
];

/// What kind of person a row describes.
#[derive(Clone, Copy)]
struct Profile {
    employee: bool,
    retired: bool,
    status: &'static str,
    status_since: Option<&'static str>,
    card_status: &'static str,
    /// The citizen ID must end in the X check digit.
    x_check_digit: bool,
}

const FIXTURES: [Profile; 8] = [
    Profile {
        employee: true,
        retired: false,
        status: "active",
        status_since: None,
        card_status: "active",
        x_check_digit: false,
    },
    Profile {
        employee: true,
        retired: true,
        status: "active",
        status_since: None,
        card_status: "active",
        x_check_digit: false,
    },
    Profile {
        employee: false,
        retired: false,
        status: "active",
        status_since: None,
        card_status: "active",
        x_check_digit: false,
    },
    Profile {
        employee: false,
        retired: true,
        status: "active",
        status_since: None,
        card_status: "active",
        x_check_digit: false,
    },
    Profile {
        employee: true,
        retired: false,
        status: "suspended",
        status_since: Some("2026-03-01"),
        card_status: "active",
        x_check_digit: false,
    },
    Profile {
        employee: true,
        retired: false,
        status: "active",
        status_since: None,
        card_status: "lost",
        x_check_digit: false,
    },
    Profile {
        employee: false,
        retired: false,
        status: "terminated",
        status_since: Some("2025-12-31"),
        card_status: "active",
        x_check_digit: false,
    },
    Profile {
        employee: true,
        retired: false,
        status: "active",
        status_since: None,
        card_status: "active",
        x_check_digit: true,
    },
];

/// Writes `persons.csv` into `dir`, for every city of `network` in its order.
pub fn write_persons(dir: &Path, network: &Network, seed: u64) -> io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut writer = csv::Writer::from_path(dir.join("persons.csv"))?;
    writer.write_record([
        "insured_city",
        "citizen_id",
        "name",
        "sex",
        "insurance_type",
        "person_type",
        "insured_since",
        "account_balance",
        "status",
        "status_since",
        "card_status",
    ])?;
    let mut taken = HashSet::new();
    for city in &network.pools {
        let CityPersons {
            code,
            persons,
            districts,
        } = city_persons(city.code)?;
        for index in 0..*persons {
            let profile = FIXTURES
                .get(index)
                .copied()
                .unwrap_or_else(|| random_profile(&mut rng));
            let row = person_row(&mut rng, code, districts, profile, &mut taken);
            writer.write_record(&row)?;
        }
    }
    writer.flush()
}

fn random_profile(rng: &mut ChaCha8Rng) -> Profile {
    let employee = rng.random_bool(0.62);
    let retired = rng.random_bool(if employee { 0.28 } else { 0.25 });
    let roll: f64 = rng.random();
    let (status, status_since) = if roll < 0.02 {
        (
            "suspended",
            Some(
                *["2025-07-01", "2026-01-01", "2026-06-01"]
                    .choose(rng)
                    .expect("not empty"),
            ),
        )
    } else if roll < 0.027 {
        (
            "terminated",
            Some(*["2024-12-31", "2025-12-31"].choose(rng).expect("not empty")),
        )
    } else {
        ("active", None)
    };
    let card_status = if rng.random_bool(0.012) {
        "lost"
    } else {
        "active"
    };
    Profile {
        employee,
        retired,
        status,
        status_since,
        card_status,
        x_check_digit: false,
    }
}

fn person_row(
    rng: &mut ChaCha8Rng,
    city: &str,
    districts: &[&str],
    profile: Profile,
    taken: &mut HashSet<String>,
) -> Vec<String> {
    let birth_year: i32 = match (profile.employee, profile.retired) {
        (_, true) => rng.random_range(1938..=1965),
        (true, false) => rng.random_range(1966..=2004),
        (false, false) => rng.random_range(1966..=2024),
    };
    let (month, day) = (rng.random_range(1..=12u32), rng.random_range(1..=28u32));
    let region = if rng.random_bool(0.9) {
        districts.choose(rng)
    } else {
        ELSEWHERE.choose(rng)
    }
    .expect("not empty");
    let (citizen_id, male) = loop {
        let sequence: u32 = rng.random_range(0..1000);
        let body = format!("{region}{birth_year:04}{month:02}{day:02}{sequence:03}");
        let id = format!("{body}{}", CitizenId::check_character(&body) as char);
        if (profile.x_check_digit && !id.ends_with('X')) || taken.contains(&id) {
            continue;
        }
        break (id, sequence % 2 == 1);
    };
    debug_assert!(CitizenId::parse(&citizen_id).is_ok());
    taken.insert(citizen_id.clone());
    let name = format!(
        "{}{}",
        SURNAMES.choose(rng).expect("not empty"),
        GIVEN.choose(rng).expect("not empty")
    );
    // Employees are insured from their first job, residents from birth or from 1998 on.
    let first_year = if profile.employee {
        (birth_year + 20).max(1998)
    } else {
        birth_year.max(1998)
    };
    let insured_since = format!(
        "{}-{:02}-01",
        rng.random_range(first_year..=2025.max(first_year)),
        rng.random_range(1..=12u32)
    );
    // Nobody is insured before they are born (ISO dates compare as text).
    let birth_date = format!("{birth_year:04}-{month:02}-{day:02}");
    let insured_since = insured_since.max(birth_date);
    let balance = if profile.employee {
        let yuan: u32 = if profile.retired {
            rng.random_range(2_000..80_000)
        } else {
            rng.random_range(0..50_000)
        };
        format!("{yuan}.{:02}", rng.random_range(0..100u32))
    } else {
        "0.00".to_owned()
    };
    // A status cannot change before the insurance starts; ISO dates compare as text.
    let status_since = match profile.status_since {
        Some(since) if since > insured_since.as_str() => since.to_owned(),
        _ => insured_since.clone(),
    };
    vec![
        city.to_owned(),
        citizen_id,
        name,
        if male { "male" } else { "female" }.to_owned(),
        if profile.employee { "310" } else { "390" }.to_owned(),
        if profile.retired {
            "retired"
        } else {
            "in_service"
        }
        .to_owned(),
        insured_since,
        balance,
        profile.status.to_owned(),
        status_since,
        profile.card_status.to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the persons generator is deterministic, that the committed seeds/persons.csv is its
    // output for the default seed, and that every row reads back as a valid seed person.
    #[test]
    fn deterministic_and_committed() {
        let dir = std::env::temp_dir().join(format!("yitong-persons-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_persons(
            &dir,
            &crate::generate::tests::committed_network(),
            20_261_125,
        )
        .unwrap();
        let generated = std::fs::read(dir.join("persons.csv")).unwrap();
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../seeds/persons.csv");
        assert!(
            generated == std::fs::read(committed).unwrap(),
            "seeds/persons.csv differs from the generator's output: run `yitong seed generate`"
        );
        let persons =
            crate::read::read_persons(&dir.join("persons.csv")).expect("persons read back");
        assert_eq!(
            persons.len(),
            CITIES.iter().map(|city| city.persons).sum::<usize>()
        );
        for city in &CITIES {
            let code = PoolCode::parse(city.code).unwrap();
            let of_city = persons
                .iter()
                .filter(|(insured, _)| *insured == code)
                .count();
            assert_eq!(of_city, city.persons, "{}", city.code);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
