//! The permission matrix: which roles may call which RPC, seen from the server that answers.
//!
//! This is the first of two checks. The server layer refuses a call here before any handler
//! runs when the caller's role may never make it (an HIS calling the ledger's CreateTransfers,
//! a bureau of Zibo calling Jinan's identity service). The handler then checks the request's
//! own fields against the caller with [`yitong_rpc::Caller`]'s `require_*` methods: the
//! institution code is the caller's, the treatment city is the bureau's, and so on. What the
//! matrix cannot know from the path alone, the handler knows from the request. What a read
//! then returns, record by record, is the third check: `yitong_rpc::visibility`.

use yitong_core::Owner;
use yitong_rpc::Caller;

/// One way to be allowed an RPC.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Grant {
    /// An HIS of an institution of the serving city (an HIS talks only to its own city's node).
    CityInstitution,
    /// An HIS of any institution: the clearing house reconciles every city's institutions.
    AnyInstitution,
    /// The bureau of the serving owner.
    OwnBureau,
    /// The bureau of any city, or the clearing house's own staff: the ledger serves them all,
    /// and its handlers check the city the request names.
    AnyBureau,
    /// A node of the serving owner itself (a city's benefit service calling its identity).
    OwnNode,
    /// A node of any city: the treatment city's node calling the insured city's, and every
    /// city's node calling the clearing house.
    CityNode,
    /// An operator: reads only.
    Operator,
}

use Grant::*;

const IDENTITY: &str = "yitong.identity.v1.IdentityService";
const CATALOG: &str = "yitong.catalog.v1.CatalogService";
const SETTLEMENT: &str = "yitong.settlement.v1.SettlementService";
const BENEFIT: &str = "yitong.settlement.v1.BenefitService";
const FILING: &str = "yitong.settlement.v1.FilingService";
const CERTIFICATION: &str = "yitong.settlement.v1.CertificationService";
const LEDGER: &str = "yitong.ledger.v1.LedgerService";
const AUDIT: &str = "yitong.audit.v1.AuditService";

const HIS_AT_THE_COUNTER: &[Grant] = &[CityInstitution];
const REFERENCE_READS: &[Grant] = &[CityInstitution, OwnBureau, CityNode, Operator];
const BUREAU_WRITES: &[Grant] = &[OwnBureau];
const NODES_ONLY: &[Grant] = &[CityNode];
const LEDGER_READS: &[Grant] = &[AnyBureau, CityNode, Operator];
const RECONCILIATION: &[Grant] = &[AnyInstitution, AnyBureau];
const CLEARING_BY_CITY: &[Grant] = &[AnyBureau];

/// Every RPC of the product, by service and method, with who may call it.
pub const MATRIX: &[(&str, &str, &[Grant])] = &[
    (
        IDENTITY,
        "GetInsuredPerson",
        &[CityInstitution, OwnBureau, CityNode],
    ),
    (IDENTITY, "IssueCard", BUREAU_WRITES),
    (IDENTITY, "ReportCardLost", BUREAU_WRITES),
    (IDENTITY, "ReissueCard", BUREAU_WRITES),
    (IDENTITY, "SetInsuranceStatus", BUREAU_WRITES),
    // Scan codes are issued by the insured city alone: its app platform, for the person's
    // own app, under the bureau's credential, at the city's own node. No node forwards it.
    (IDENTITY, "IssueEVoucher", BUREAU_WRITES),
    (IDENTITY, "MoveAccount", &[OwnNode]),
    (CATALOG, "LookupItems", REFERENCE_READS),
    (CATALOG, "DownloadCatalog", REFERENCE_READS),
    (CATALOG, "PublishCatalogVersion", BUREAU_WRITES),
    (CATALOG, "GetPolicy", REFERENCE_READS),
    (CATALOG, "UpsertPolicy", BUREAU_WRITES),
    (CATALOG, "GetInstitution", REFERENCE_READS),
    (CATALOG, "ListInstitutions", REFERENCE_READS),
    (CATALOG, "ListDiseases", REFERENCE_READS),
    (SETTLEMENT, "RegisterVisit", HIS_AT_THE_COUNTER),
    (SETTLEMENT, "CancelVisit", HIS_AT_THE_COUNTER),
    (SETTLEMENT, "UploadFeeLines", HIS_AT_THE_COUNTER),
    (SETTLEMENT, "CancelFeeLines", HIS_AT_THE_COUNTER),
    (SETTLEMENT, "PreSettle", HIS_AT_THE_COUNTER),
    (SETTLEMENT, "Settle", HIS_AT_THE_COUNTER),
    (SETTLEMENT, "CancelSettlement", HIS_AT_THE_COUNTER),
    (SETTLEMENT, "ReverseByMessageId", HIS_AT_THE_COUNTER),
    // Operators see settlement metadata; the handler blanks the person's number and name.
    (
        SETTLEMENT,
        "GetSettlement",
        &[CityInstitution, OwnBureau, Operator],
    ),
    (
        SETTLEMENT,
        "ListSettlements",
        &[CityInstitution, OwnBureau, Operator],
    ),
    // The benefit check (2001) and the running totals (5206): reads at the counter.
    (SETTLEMENT, "CheckBenefit", HIS_AT_THE_COUNTER),
    (SETTLEMENT, "GetRunningTotals", HIS_AT_THE_COUNTER),
    // The 5304-style filing query: the treatment city's node asks the insured city's.
    (SETTLEMENT, "QueryFilings", HIS_AT_THE_COUNTER),
    // The 5301 certification query: the treatment city's node asks the insured city's.
    (SETTLEMENT, "QueryCertifications", HIS_AT_THE_COUNTER),
    (BENEFIT, "Quote", NODES_ONLY),
    (BENEFIT, "Reserve", NODES_ONLY),
    (BENEFIT, "Post", NODES_ONLY),
    (BENEFIT, "Void", NODES_ONLY),
    (BENEFIT, "GetTotals", NODES_ONLY),
    // The insured city's cross-city filings: its bureau writes, its bureau and the treatment
    // cities' nodes read.
    (FILING, "FileFiling", BUREAU_WRITES),
    (FILING, "CancelFiling", BUREAU_WRITES),
    (FILING, "ListFilings", &[OwnBureau, CityNode]),
    (FILING, "SetFilingPolicy", BUREAU_WRITES),
    (FILING, "GetFilingPolicy", &[OwnBureau, CityNode]),
    // The insured city's chronic-disease certifications (2503 / 2504 / 5301): as filings.
    (CERTIFICATION, "Certify", BUREAU_WRITES),
    (CERTIFICATION, "CancelCertification", BUREAU_WRITES),
    (CERTIFICATION, "ListCertifications", &[OwnBureau, CityNode]),
    (LEDGER, "CreateTransfers", NODES_ONLY),
    (LEDGER, "PostPendingTransfers", NODES_ONLY),
    (LEDGER, "VoidPendingTransfers", NODES_ONLY),
    (LEDGER, "LookupTransfers", LEDGER_READS),
    (LEDGER, "GetBalances", LEDGER_READS),
    (LEDGER, "GetJournalDigest", LEDGER_READS),
    (LEDGER, "VerifyJournal", LEDGER_READS),
    (LEDGER, "ReconcileTotals", RECONCILIATION),
    (LEDGER, "ReconcileDetails", RECONCILIATION),
    (LEDGER, "ListClearingDetails", CLEARING_BY_CITY),
    (LEDGER, "ConfirmClearingDetails", CLEARING_BY_CITY),
    (LEDGER, "RollbackClearingConfirmation", CLEARING_BY_CITY),
    (LEDGER, "ApplyClearing", CLEARING_BY_CITY),
    (LEDGER, "CancelClearingApplication", CLEARING_BY_CITY),
    (LEDGER, "CloseClearingPeriod", &[OwnBureau]),
    (LEDGER, "GetClearingStatement", &[AnyBureau, Operator]),
    (LEDGER, "ConfirmClearingStatement", CLEARING_BY_CITY),
    // The overview's days: a bureau names its own city, the handler checks it.
    (LEDGER, "GetDailyActivity", &[AnyBureau, Operator]),
    (AUDIT, "ListAuditEntries", &[AnyBureau]),
];

/// Services every caller may reach, anonymous included: probes and schema discovery.
const OPEN_PREFIXES: [&str; 2] = ["/grpc.health.", "/grpc.reflection."];

/// What the matrix says of one call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Allowed,
    /// The caller may not make this call; anonymous callers are told to authenticate.
    Refused,
    /// Not one of the product's RPCs: left to the router, which answers UNIMPLEMENTED.
    Unknown,
}

impl Grant {
    /// How the protos' `Callers:` lines and ARCHITECTURE.md's table name the grant. "Own" is
    /// the owner of the server that answers.
    pub fn phrase(self) -> &'static str {
        match self {
            CityInstitution => "own city's HIS",
            AnyInstitution => "any city's HIS",
            OwnBureau => "own bureau",
            AnyBureau => "any bureau",
            OwnNode => "own node",
            CityNode => "any city's node",
            Operator => "operator",
        }
    }

    fn admits(self, server: Owner, caller: &Caller) -> bool {
        match (self, caller) {
            (CityInstitution, Caller::Institution(code)) => server == Owner::Pool(code.city()),
            (AnyInstitution, Caller::Institution(_)) => true,
            (OwnBureau, Caller::Bureau(owner)) => *owner == server,
            (AnyBureau, Caller::Bureau(_)) => true,
            (OwnNode, Caller::Node(owner)) => *owner == server,
            (CityNode, Caller::Node(owner)) => matches!(owner, Owner::Pool(_)),
            (Operator, Caller::Operator(_)) => true,
            _ => false,
        }
    }
}

/// The grants of the RPC at `path` ("/yitong.ledger.v1.LedgerService/GetBalances").
pub fn grants(path: &str) -> Option<&'static [Grant]> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    MATRIX
        .iter()
        .find(|(s, m, _)| *s == service && *m == method)
        .map(|(_, _, grants)| *grants)
}

/// Whether `caller` may call `path` on a server run by `server`.
pub fn verdict(server: Owner, path: &str, caller: &Caller) -> Verdict {
    if OPEN_PREFIXES.iter().any(|prefix| path.starts_with(prefix)) {
        return Verdict::Allowed;
    }
    match grants(path) {
        None => Verdict::Unknown,
        Some(grants) if grants.iter().any(|grant| grant.admits(server, caller)) => Verdict::Allowed,
        Some(_) => Verdict::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The matrix names every RPC once, and every RPC admits someone.
    #[test]
    fn every_rpc_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for (service, method, grants) in MATRIX {
            assert!(seen.insert((service, method)), "{service}/{method} twice");
            assert!(!grants.is_empty(), "{service}/{method} admits no one");
        }
        assert_eq!(MATRIX.len(), 61);
    }

    // Owners matter: Zibo's bureau may not write Jinan's cards, an HIS may not call the
    // benefit service, and only the clearing house's staff may close a month.
    #[test]
    fn the_serving_owner_is_part_of_every_grant() {
        let jinan: Owner = Owner::Pool("370100".parse().unwrap());
        let zibo_bureau: Caller = "bureau:370300".parse().unwrap();
        let jinan_bureau: Caller = "bureau:370100".parse().unwrap();
        let issue = "/yitong.identity.v1.IdentityService/IssueCard";
        assert_eq!(verdict(jinan, issue, &zibo_bureau), Verdict::Refused);
        assert_eq!(verdict(jinan, issue, &jinan_bureau), Verdict::Allowed);
        let his: Caller = "institution:H37010000001".parse().unwrap();
        let reserve = "/yitong.settlement.v1.BenefitService/Reserve";
        assert_eq!(verdict(jinan, reserve, &his), Verdict::Refused);
        let close = "/yitong.ledger.v1.LedgerService/CloseClearingPeriod";
        assert_eq!(
            verdict(Owner::ClearingHouse, close, &jinan_bureau),
            Verdict::Refused
        );
        let house: Caller = "bureau:clearing".parse().unwrap();
        assert_eq!(
            verdict(Owner::ClearingHouse, close, &house),
            Verdict::Allowed
        );
        assert_eq!(
            verdict(jinan, "/grpc.health.v1.Health/Check", &Caller::Anonymous),
            Verdict::Allowed
        );
        assert_eq!(verdict(jinan, "/x.Y/Z", &his), Verdict::Unknown);
    }

    /// The grants of every RPC as `text` names them, keyed "Service/Method" (the package left
    /// out), from the matrix.
    fn matrix_as_phrases() -> std::collections::BTreeMap<String, Vec<String>> {
        MATRIX
            .iter()
            .map(|(service, method, grants)| {
                let service = service.rsplit('.').next().expect("a service name");
                let phrases = grants.iter().map(|grant| grant.phrase().to_owned());
                (format!("{service}/{method}"), phrases.collect())
            })
            .collect()
    }

    fn phrases(list: &str) -> Vec<String> {
        list.trim()
            .trim_end_matches('.')
            .split(", ")
            .map(str::to_owned)
            .collect()
    }

    fn repository_file(path: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path);
        std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"))
    }

    // Every rpc of every proto file says who may call it on a `Callers:` line of its comment,
    // and says what the matrix says: no rpc without one, none the matrix lacks, no grant
    // missing or added.
    #[test]
    fn the_protos_say_who_may_call_each_rpc_as_the_matrix_does() {
        let mut documented = std::collections::BTreeMap::new();
        for package in ["audit", "catalog", "identity", "ledger", "settlement"] {
            let text = repository_file(&format!("proto/yitong/{package}/v1/{package}.proto"));
            let (mut service, mut callers) = (None, None);
            for line in text.lines().map(str::trim) {
                if let Some(rest) = line.strip_prefix("service ") {
                    service = rest.split_whitespace().next();
                } else if let Some(list) = line.strip_prefix("// Callers:") {
                    assert!(
                        callers.is_none(),
                        "two Callers: lines before one rpc in {package}"
                    );
                    callers = Some(phrases(list));
                } else if let Some(rest) = line.strip_prefix("rpc ") {
                    let method = rest.split('(').next().expect("rpc Name(...)");
                    let rpc = format!("{}/{method}", service.expect("an rpc inside a service"));
                    let callers = callers
                        .take()
                        .unwrap_or_else(|| panic!("{rpc} has no Callers: line"));
                    assert!(
                        documented.insert(rpc.clone(), callers).is_none(),
                        "{rpc} twice"
                    );
                } else if !line.starts_with("//") {
                    assert!(
                        callers.is_none(),
                        "a Callers: line not above an rpc in {package}"
                    );
                }
            }
        }
        assert_eq!(documented, matrix_as_phrases());
    }

    // ARCHITECTURE.md's "Who may call what" table lists every RPC with the matrix's grants.
    #[test]
    fn the_architecture_table_says_what_the_matrix_does() {
        let text = repository_file("ARCHITECTURE.md");
        let table: std::collections::BTreeMap<String, Vec<String>> = text
            .lines()
            .filter_map(|line| {
                let row = line.strip_prefix("| `")?;
                let (rpc, rest) = row.split_once("` | ")?;
                let callers = rest.strip_suffix(" |")?;
                rpc.contains("Service/")
                    .then(|| (rpc.to_owned(), phrases(callers)))
            })
            .collect();
        assert_eq!(table, matrix_as_phrases());
    }
}
