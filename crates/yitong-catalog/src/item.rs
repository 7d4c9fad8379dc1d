//! Catalog items, the changes that publish them, and how a code is classified on a date.

use std::fmt;

use yitong_core::{Amount, Date, Invalid};
use yitong_proto::catalog::v1 as pb;

use crate::Ratio;

/// A national catalog code (national med_list_codg): 1 to 50 letters, digits and '-'.
///
/// The national codes start with 'X' (Western medicines), 'Z' (Chinese patent medicines), 'T'
/// (herbal pieces) or 'C' (consumables), and medical service codes are digits; the catalog does
/// not rely on the prefix, so only the character set and length are checked.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct ItemCode(String);

impl ItemCode {
    pub const LEN_MAX: usize = 50;

    pub fn parse(text: &str) -> Result<Self, Invalid> {
        let ok = !text.is_empty()
            && text.len() <= Self::LEN_MAX
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(Invalid::new(
                "",
                "must be a national catalog code: 1 to 50 letters, digits or '-'",
            ));
        }
        Ok(ItemCode(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What kind of thing an item is; the numbers are the wire's and the store's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ItemKind {
    Drug = 1,
    MedicalService = 2,
    Consumable = 3,
}

impl ItemKind {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Drug),
            2 => Some(Self::MedicalService),
            3 => Some(Self::Consumable),
            _ => None,
        }
    }

    fn from_wire(value: i32) -> Result<Self, Invalid> {
        Self::from_code(i64::from(value)).ok_or_else(|| {
            Invalid::new(
                "",
                "must be ITEM_KIND_DRUG, ITEM_KIND_MEDICAL_SERVICE or ITEM_KIND_CONSUMABLE",
            )
        })
    }
}

/// Catalog grade (national chrgitm_lv): A fully in scope, B after the self-pay share, C self-paid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Grade {
    A = 1,
    B = 2,
    C = 3,
}

impl Grade {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::A),
            2 => Some(Self::B),
            3 => Some(Self::C),
            _ => None,
        }
    }

    fn from_wire(value: i32) -> Result<Self, Invalid> {
        Self::from_code(i64::from(value))
            .ok_or_else(|| Invalid::new("", "must be ITEM_GRADE_A, ITEM_GRADE_B or ITEM_GRADE_C"))
    }
}

/// The parts of an item's classification, before the rules that tie them together are checked.
#[derive(Debug, Clone)]
pub struct ItemParts {
    pub code: ItemCode,
    pub name: String,
    pub kind: ItemKind,
    pub grade: Grade,
    /// The grade-B self-pay ratio; zero for grades A and C.
    pub self_pay_ratio: Ratio,
    /// Price cap per unit; `None` when uncapped.
    pub price_cap: Option<Amount>,
    pub valid_from: Date,
    /// Last valid day; `None` until further notice.
    pub valid_until: Option<Date>,
}

/// One classification of an item in a city's catalog, valid from `valid_from` to `valid_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub(crate) code: ItemCode,
    pub(crate) name: String,
    pub(crate) kind: ItemKind,
    pub(crate) grade: Grade,
    pub(crate) self_pay_ratio: Ratio,
    pub(crate) price_cap: Option<Amount>,
    pub(crate) valid_from: Date,
    pub(crate) valid_until: Option<Date>,
}

impl Item {
    /// Characters an item's name may have.
    pub const NAME_CHARS_MAX: usize = 200;

    /// Checks the rules across fields. Violations name the field as the wire and the seed files
    /// do ("self_pay_ratio"), for the caller to place under its own path.
    pub fn new(parts: ItemParts) -> Result<Item, Invalid> {
        let name_chars = parts.name.chars().count();
        if name_chars == 0 || name_chars > Self::NAME_CHARS_MAX || parts.name.trim() != parts.name {
            return Err(Invalid::new(
                "name",
                "must be 1 to 200 characters without leading or trailing spaces",
            ));
        }
        if parts.grade != Grade::B && !parts.self_pay_ratio.is_zero() {
            return Err(Invalid::new(
                "self_pay_ratio",
                "must be 0 for grades A and C; only grade B has a self-pay ratio",
            ));
        }
        if parts.price_cap.is_some_and(Amount::is_negative) {
            return Err(Invalid::new("price_cap", "must not be negative"));
        }
        if parts
            .valid_until
            .is_some_and(|until| until < parts.valid_from)
        {
            return Err(Invalid::new("valid_until", "must not be before valid_from"));
        }
        Ok(Item {
            code: parts.code,
            name: parts.name,
            kind: parts.kind,
            grade: parts.grade,
            self_pay_ratio: parts.self_pay_ratio,
            price_cap: parts.price_cap,
            valid_from: parts.valid_from,
            valid_until: parts.valid_until,
        })
    }

    pub fn code(&self) -> &ItemCode {
        &self.code
    }

    /// Whether this classification holds on `date`.
    fn covers(&self, date: Date) -> bool {
        self.valid_from <= date && self.valid_until.is_none_or(|until| date <= until)
    }

    pub(crate) fn to_wire(&self, version: u64) -> pb::CatalogItem {
        pb::CatalogItem {
            code: self.code.to_string(),
            name: self.name.clone(),
            kind: self.kind as i32,
            grade: self.grade as i32,
            self_pay_ratio: self.self_pay_ratio.to_string(),
            price_cap: self
                .price_cap
                .map(|cap| cap.to_string())
                .unwrap_or_default(),
            valid_from: self.valid_from.to_string(),
            valid_until: self
                .valid_until
                .map(|until| until.to_string())
                .unwrap_or_default(),
            version,
        }
    }
}

impl TryFrom<pb::CatalogItem> for Item {
    type Error = Invalid;

    /// Reads an item of a change set; `version` is the service's to assign and is ignored.
    fn try_from(item: pb::CatalogItem) -> Result<Self, Invalid> {
        let date = |text: &str, field: &str| {
            yitong_core::parse_date(text).map_err(|invalid| invalid.at(field))
        };
        Item::new(ItemParts {
            code: ItemCode::parse(&item.code).map_err(|invalid| invalid.at("code"))?,
            name: item.name,
            kind: ItemKind::from_wire(item.kind).map_err(|invalid| invalid.at("kind"))?,
            grade: Grade::from_wire(item.grade).map_err(|invalid| invalid.at("grade"))?,
            self_pay_ratio: Ratio::parse(&item.self_pay_ratio)
                .map_err(|invalid| invalid.at("self_pay_ratio"))?,
            price_cap: match item.price_cap.as_str() {
                "" => None,
                text => Some(Amount::parse(text).map_err(|invalid| invalid.at("price_cap"))?),
            },
            valid_from: date(&item.valid_from, "valid_from")?,
            valid_until: match item.valid_until.as_str() {
                "" => None,
                text => Some(date(text, "valid_until")?),
            },
        })
    }
}

/// What one change of a change set does; the numbers are the wire's and the store's.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ChangeKind {
    Added = 1,
    Changed = 2,
    Withdrawn = 3,
}

impl ChangeKind {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Added),
            2 => Some(Self::Changed),
            3 => Some(Self::Withdrawn),
            _ => None,
        }
    }
}

/// One published change of one code, as stored and as downloaded.
///
/// For an addition or a change, `item` is the new classification and `effective_date` its
/// `valid_from`. For a withdrawal, `item` is the classification that ends, its `valid_until`
/// set to the day before `effective_date`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub(crate) version: u64,
    pub(crate) kind: ChangeKind,
    pub(crate) effective_date: Date,
    pub(crate) item: Item,
}

impl Change {
    pub(crate) fn to_wire(&self) -> pb::CatalogChange {
        pb::CatalogChange {
            version: self.version,
            kind: self.kind as i32,
            effective_date: self.effective_date.to_string(),
            item: Some(self.item.to_wire(self.version)),
        }
    }
}

/// How a code fares on a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Covered: the classification, its last day as it stands (its own `valid_until`, or the
    /// day before the next change, whichever is earlier), and the version that published it.
    InCatalog {
        item: Item,
        version: u64,
    },
    NotInCatalog,
    NotValidAtDate,
}

/// Classifies a code on `date` from its changes, ordered by version.
///
/// A publication only appends to a code's history (every change takes effect after the one
/// before it), so the change in force on a date is the last one effective on or before it.
pub(crate) fn classify(history: &[Change], date: Date) -> Outcome {
    debug_assert!(
        history
            .windows(2)
            .all(|pair| pair[0].version < pair[1].version
                && pair[0].effective_date < pair[1].effective_date),
        "a code's history is ordered by version and by effective date alike"
    );
    if history.is_empty() {
        return Outcome::NotInCatalog;
    }
    let in_force = history
        .iter()
        .rposition(|change| change.effective_date <= date);
    let Some(index) = in_force else {
        return Outcome::NotValidAtDate;
    };
    let change = &history[index];
    if change.kind == ChangeKind::Withdrawn || !change.item.covers(date) {
        return Outcome::NotValidAtDate;
    }
    let mut item = change.item.clone();
    if let Some(next) = history.get(index + 1) {
        let last_day = next
            .effective_date
            .pred_opt()
            .expect("a change takes effect after the first day of the calendar");
        item.valid_until = Some(
            item.valid_until
                .map_or(last_day, |until| until.min(last_day)),
        );
    }
    Outcome::InCatalog {
        item,
        version: change.version,
    }
}

/// What the latest change of a code leaves behind on a later date: the classification in
/// force then, if any. Publication rules are judged on it.
pub(crate) fn covering_after_latest(latest: Option<&Change>, date: Date) -> Option<&Item> {
    let latest = latest?;
    debug_assert!(latest.effective_date < date);
    (latest.kind != ChangeKind::Withdrawn && latest.item.covers(date)).then_some(&latest.item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Date {
        yitong_core::parse_date(text).unwrap()
    }

    fn item(grade: Grade, from: &str, until: Option<&str>) -> Item {
        Item::new(ItemParts {
            code: ItemCode::parse("XA01ABD075A002010100483").unwrap(),
            name: "阿莫西林胶囊".into(),
            kind: ItemKind::Drug,
            grade,
            self_pay_ratio: Ratio::ZERO,
            price_cap: None,
            valid_from: day(from),
            valid_until: until.map(day),
        })
        .unwrap()
    }

    fn change(version: u64, kind: ChangeKind, effective: &str, item: Item) -> Change {
        Change {
            version,
            kind,
            effective_date: day(effective),
            item,
        }
    }

    // Proves how a code's history answers a date: before, during and after each change.
    #[test]
    fn classify_table() {
        let history = [
            change(
                1,
                ChangeKind::Added,
                "2024-01-01",
                item(Grade::A, "2024-01-01", None),
            ),
            change(
                4,
                ChangeKind::Changed,
                "2026-07-01",
                item(Grade::C, "2026-07-01", Some("2026-12-31")),
            ),
            change(
                6,
                ChangeKind::Withdrawn,
                "2026-10-01",
                item(Grade::C, "2026-07-01", Some("2026-09-30")),
            ),
        ];
        let cases = [
            ("2023-12-31", None),
            ("2024-01-01", Some((Grade::A, 1, Some("2026-06-30")))),
            ("2026-06-30", Some((Grade::A, 1, Some("2026-06-30")))),
            ("2026-07-01", Some((Grade::C, 4, Some("2026-09-30")))),
            ("2026-09-30", Some((Grade::C, 4, Some("2026-09-30")))),
            ("2026-10-01", None),
            ("2030-01-01", None),
        ];
        for (date, expected) in cases {
            let answer = match classify(&history, day(date)) {
                Outcome::InCatalog { item, version } => Some((
                    item.grade,
                    version,
                    item.valid_until.map(|until| until.to_string()),
                )),
                Outcome::NotValidAtDate => None,
                Outcome::NotInCatalog => panic!("the code is listed"),
            };
            let expected =
                expected.map(|(grade, version, until)| (grade, version, until.map(str::to_owned)));
            assert_eq!(answer, expected, "{date}");
        }
        assert_eq!(classify(&[], day("2026-01-01")), Outcome::NotInCatalog);
        // A classification that lapses on its own leaves the code not valid after its last day.
        let lapsing = [change(
            1,
            ChangeKind::Added,
            "2024-01-01",
            item(Grade::A, "2024-01-01", Some("2025-12-31")),
        )];
        assert_eq!(
            classify(&lapsing, day("2026-01-01")),
            Outcome::NotValidAtDate
        );
    }

    // Proves the rules an item's fields must keep together.
    #[test]
    fn item_rules() {
        let parts = |grade, ratio: &str, until: Option<&str>| ItemParts {
            code: ItemCode::parse("001102000010000").unwrap(),
            name: "普通门诊诊查费".into(),
            kind: ItemKind::MedicalService,
            grade,
            self_pay_ratio: Ratio::parse(ratio).unwrap(),
            price_cap: Some(Amount::from_fen(1_000)),
            valid_from: day("2026-01-01"),
            valid_until: until.map(day),
        };
        assert!(Item::new(parts(Grade::B, "0.10", None)).is_ok());
        assert!(Item::new(parts(Grade::A, "0", Some("2026-01-01"))).is_ok());
        let field = |parts| Item::new(parts).unwrap_err().field().to_owned();
        assert_eq!(field(parts(Grade::A, "0.10", None)), "self_pay_ratio");
        assert_eq!(field(parts(Grade::C, "0.10", None)), "self_pay_ratio");
        assert_eq!(
            field(parts(Grade::B, "0.10", Some("2025-12-31"))),
            "valid_until"
        );
        let mut blank = parts(Grade::A, "0", None);
        blank.name = String::new();
        assert_eq!(field(blank), "name");
        for bad in ["", "X A", "X/1", &"X".repeat(51)] {
            assert!(ItemCode::parse(bad).is_err(), "{bad:?}");
        }
    }
}
