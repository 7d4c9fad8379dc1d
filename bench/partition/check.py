#!/usr/bin/env python3
"""The partition drill's store check: reads every SQLite store of a network run by `yitong serve`
under one data directory (<data>/<city>/{identity,settlement}.db, <data>/clearing/ledger.db) and
reports, as one JSON document on standard output, everything still in doubt and every
disagreement between the three parties of a settlement. Exit status 0 when it finds nothing,
1 when it finds something, 2 when it cannot read the stores.

In doubt ("money stranded"), with --pending-only this alone:
  - a treatment city's settlement still `pending`, `recorded` or `voiding`;
  - an insured city's reservation still `reserved`;
  - a posted reservation whose personal-account pay has not moved yet;
  - a ledger transfer created pending and never posted, voided or expired;
  - a ledger account whose pending sums are not back to zero.

Agreement, for every settlement id any party holds:
  - completed at the treatment city <=> posted at the insured city <=> posted in the ledger,
    with the same total, fund pay and account pay in all three;
  - voided at the treatment city => voided or never held at the insured city, nothing posted
    or pending in the ledger;
  - a posted reservation's account pay moved once, by its amount, in the insured city's
    identity store (account_movements), and no movement without a posted reservation;
  - bench/pgbench/check.sql, the PostgreSQL accumulator check, run unchanged on SQLite with the
    stores attached under PostgreSQL's schema names: yearly totals against posted reservations,
    the annual cap, and the ledger's posted obligations against the insured cities' posts.
"""

import argparse
import json
import sqlite3
import sys
from pathlib import Path

SETTLEMENT_OPEN = ("pending", "recorded", "voiding")
RESERVED, POSTED, VOIDED = "reserved", "posted", "voided"
# Journal events, as stored; flags bit 2 (value 2) pending.
CREATED, POSTED_EVENT, VOIDED_EVENT, EXPIRED_EVENT = "created", "posted", "voided", "expired"
PENDING_FLAG = 2
# Findings listed in full up to this many per class; the count is always exact.
LISTED_MAX = 20


def connect(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise FileNotFoundError(path)
    # Read-only: the drill may run this while the nodes still write (WAL lets it read beside
    # them), and must never change a store it checks.
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    connection.row_factory = sqlite3.Row
    return connection


class Findings:
    def __init__(self):
        self.by_class = {}

    def add(self, what: str, detail: str):
        self.by_class.setdefault(what, []).append(detail)

    def report(self) -> dict:
        return {
            what: {"count": len(details), "listed": details[:LISTED_MAX]}
            for what, details in sorted(self.by_class.items())
        }


def ledger_states(ledger: sqlite3.Connection) -> dict:
    """Each settlement id of the journal: its transfers, each with its creation and resolution."""
    transfers = {}
    for row in ledger.execute(
        "SELECT transfer_id, event, stage, flags, settlement_id, treatment_city, insured_city, "
        "total_amount_fen, fund_pay_fen, account_pay_fen FROM journal "
        "WHERE settlement_id <> '' ORDER BY sequence"
    ):
        transfer = transfers.setdefault(row["transfer_id"], {"created": None, "resolved": None})
        if row["stage"] == 0:
            transfer["created"] = dict(row)
        else:
            transfer["resolved"] = row["event"]
    by_settlement = {}
    for transfer_id, transfer in transfers.items():
        created = transfer["created"]
        if created is None:
            continue
        if not created["flags"] & PENDING_FLAG:
            state = "posted"
        elif transfer["resolved"] is None:
            state = "pending"
        else:
            state = {POSTED_EVENT: "posted", VOIDED_EVENT: "voided", EXPIRED_EVENT: "expired"}[
                transfer["resolved"]
            ]
        by_settlement.setdefault(created["settlement_id"], []).append(
            {"transfer_id": transfer_id, "state": state, **created}
        )
    return by_settlement


def check(data: Path, cities: list, pending_only: bool, check_sql: Path) -> dict:
    findings = Findings()
    counts = {}
    settlement = {city: connect(data / city / "settlement.db") for city in cities}
    ledger = connect(data / "clearing" / "ledger.db")

    # --- In doubt ------------------------------------------------------------------------
    for city, db in settlement.items():
        for row in db.execute(
            "SELECT settlement_id, kind, phase, insured_city, attempts, last_error FROM settlements "
            "WHERE phase IN (?, ?, ?) ORDER BY created_at_ms",
            SETTLEMENT_OPEN,
        ):
            findings.add(
                f"settlement {row['phase']}",
                f"{city} {row['kind']} {row['settlement_id']} (insured {row['insured_city']}, "
                f"{row['attempts']} failed sweep attempts, last error: {row['last_error']!r})",
            )
        for row in db.execute(
            "SELECT settlement_id, kind, treatment_city, fund_pay_fen, account_pay_fen "
            "FROM reservations WHERE status = ?",
            (RESERVED,),
        ):
            findings.add(
                "reservation reserved",
                f"{city} {row['settlement_id']} (treatment {row['treatment_city']}, fund "
                f"{row['fund_pay_fen']}, account {row['account_pay_fen']})",
            )
        for row in db.execute(
            "SELECT settlement_id, account_pay_fen FROM reservations "
            "WHERE status = ? AND account_pay_fen <> 0 AND account_moved = 0",
            (POSTED,),
        ):
            findings.add(
                "account movement owed",
                f"{city} {row['settlement_id']} (account pay {row['account_pay_fen']})",
            )
    for row in ledger.execute(
        "SELECT j.transfer_id, j.settlement_id, j.amount_fen FROM journal j "
        "WHERE j.event = ? AND (j.flags & ?) <> 0 AND NOT EXISTS "
        "(SELECT 1 FROM journal r WHERE r.transfer_id = j.transfer_id AND r.stage = 1)",
        (CREATED, PENDING_FLAG),
    ):
        findings.add(
            "ledger transfer pending",
            f"{row['transfer_id']} of settlement {row['settlement_id']} ({row['amount_fen']} fen)",
        )
    for row in ledger.execute(
        "SELECT id, debits_pending_fen, credits_pending_fen FROM accounts "
        "WHERE debits_pending_fen <> 0 OR credits_pending_fen <> 0"
    ):
        findings.add(
            "ledger account pending",
            f"{row['id']} debits pending {row['debits_pending_fen']}, credits pending "
            f"{row['credits_pending_fen']}",
        )

    # Figures of what the stores hold, for the summary.
    for city, db in settlement.items():
        for row in db.execute(
            "SELECT kind, phase, void_reason, COUNT(*) AS n FROM settlements GROUP BY 1, 2, 3"
        ):
            key = f"{row['kind']} {row['phase']}" + (
                f" ({row['void_reason']})" if row["void_reason"] else ""
            )
            counts[key] = counts.get(key, 0) + row["n"]
    counts["ledger journal entries"] = ledger.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
    counts["ledger voids before booking"] = ledger.execute(
        "SELECT COUNT(*) FROM voided_before_booked"
    ).fetchone()[0]
    # A transfer booked and then voided: the booking reached the ledger, the treatment city
    # did not record (its answer lost or late, or a later step failed).
    counts["ledger transfers booked then voided"] = ledger.execute(
        "SELECT COUNT(*) FROM journal WHERE event = ?", (VOIDED_EVENT,)
    ).fetchone()[0]
    for city, db in settlement.items():
        for what, condition in (
            ("reservations held then voided", "kind <> 'tombstone' AND status = 'voided'"),
            ("reservations voided before held", "kind = 'tombstone'"),
        ):
            counts[what] = counts.get(what, 0) + db.execute(
                f"SELECT COUNT(*) FROM reservations WHERE {condition}"
            ).fetchone()[0]

    if not pending_only:
        agreement(data, cities, settlement, ledger, findings, counts)
        accumulators(data, cities, check_sql, findings)
    return {"passed": not findings.by_class, "findings": findings.report(), "counts": counts}


def agreement(data, cities, settlement, ledger, findings, counts):
    treatment = {}
    for city, db in settlement.items():
        for row in db.execute(
            "SELECT settlement_id, kind, phase, insured_city, total_fen, fund_pay_fen, "
            "account_pay_fen FROM settlements"
        ):
            treatment[row["settlement_id"]] = {"city": city, **dict(row)}
    reservations = {}
    for city, db in settlement.items():
        for row in db.execute(
            "SELECT settlement_id, kind, status, treatment_city, total_fen, fund_pay_fen, "
            "account_pay_fen, account_moved FROM reservations"
        ):
            reservations[row["settlement_id"]] = {"city": city, **dict(row)}
    movements = {}
    for city in cities:
        identity = connect(data / city / "identity.db")
        for row in identity.execute("SELECT settlement_id, amount_fen FROM account_movements"):
            movements[row["settlement_id"]] = {"city": city, "amount_fen": row["amount_fen"]}
        identity.close()
    transfers = ledger_states(ledger)

    def amounts(row):
        return (row["total_fen"], row["fund_pay_fen"], row["account_pay_fen"])

    def reserved_amounts(reservation):
        # A reservation keeps the claim's total as the treatment city sent it, positive for a
        # cancellation too; what it holds (fund and account pay) is negative for a cancellation.
        total = reservation["total_fen"] if reservation["kind"] != "cancellation" else -reservation["total_fen"]
        return (total, reservation["fund_pay_fen"], reservation["account_pay_fen"])

    def ledger_amounts(transfer):
        return (transfer["total_amount_fen"], transfer["fund_pay_fen"], transfer["account_pay_fen"])

    agreed = 0
    for settlement_id, row in treatment.items():
        reservation = reservations.get(settlement_id)
        booked = transfers.get(settlement_id, [])
        posted = [t for t in booked if t["state"] == "posted"]
        pending = [t for t in booked if t["state"] == "pending"]
        where = f"{row['city']} {row['kind']} {settlement_id}"
        if reservation is not None and reservation["city"] != row["insured_city"]:
            findings.add("insured city differs", f"{where}: reservation held by {reservation['city']}")
        before = sum(len(details) for details in findings.by_class.values())
        if row["phase"] == "completed":
            if reservation is None or reservation["status"] != POSTED:
                status = None if reservation is None else reservation["status"]
                findings.add("completed, not posted at the insured city", f"{where}: reservation status {status}")
            elif reserved_amounts(reservation) != amounts(row):
                findings.add("amounts differ (insured city)", f"{where}: {amounts(row)} vs {reserved_amounts(reservation)}")
            if len(posted) != 1 or pending:
                findings.add("completed, not posted once in the ledger", f"{where}: transfers {[t['state'] for t in booked]}")
            elif ledger_amounts(posted[0]) != amounts(row):
                findings.add("amounts differ (ledger)", f"{where}: {amounts(row)} vs {ledger_amounts(posted[0])}")
        elif row["phase"] == "voided":
            if reservation is not None and reservation["status"] != VOIDED:
                findings.add("voided, held at the insured city", f"{where}: reservation status {reservation['status']}")
            if posted or pending:
                findings.add("voided, booked in the ledger", f"{where}: transfers {[t['state'] for t in booked]}")
        else:
            # In doubt: counted above; it cannot agree yet.
            continue
        if sum(len(details) for details in findings.by_class.values()) == before:
            agreed += 1
    for settlement_id, reservation in reservations.items():
        row = treatment.get(settlement_id)
        if reservation["status"] == POSTED and (row is None or row["phase"] != "completed"):
            findings.add("posted at the insured city, not completed", f"{reservation['city']} {settlement_id}: treatment {None if row is None else row['phase']}")
        if reservation["status"] == POSTED and reservation["account_pay_fen"] != 0:
            moved = movements.get(settlement_id)
            if moved is None or moved["amount_fen"] != -reservation["account_pay_fen"] or moved["city"] != reservation["city"]:
                findings.add("account movement differs", f"{reservation['city']} {settlement_id}: account pay {reservation['account_pay_fen']}, movement {moved}")
    for settlement_id, moved in movements.items():
        reservation = reservations.get(settlement_id)
        if reservation is None or reservation["status"] != POSTED:
            findings.add("account moved without a posted reservation", f"{moved['city']} {settlement_id}: {moved['amount_fen']}")
    for settlement_id, booked in transfers.items():
        row = treatment.get(settlement_id)
        if any(t["state"] == "posted" for t in booked) and (row is None or row["phase"] != "completed"):
            findings.add("posted in the ledger, not completed", f"{settlement_id}: treatment {None if row is None else row['phase']}")
    counts["ids checked in three places"] = len(treatment)
    counts["ids agreeing"] = agreed
    counts["account movements"] = len(movements)


def accumulators(data, cities, check_sql, findings):
    """bench/pgbench/check.sql as it is: the stores attached under PostgreSQL's schema names."""
    # URIs on, so the attached stores open read-only too.
    connection = sqlite3.connect("file::memory:", uri=True)
    for city in cities:
        connection.execute(
            "ATTACH DATABASE ? AS ?", (f"file:{data / city / 'settlement.db'}?mode=ro", f"settlement_{city}")
        )
    connection.execute("ATTACH DATABASE ? AS ledger_clearing", (f"file:{data / 'clearing' / 'ledger.db'}?mode=ro",))
    for row in connection.execute(check_sql.read_text()):
        findings.add(f"check.sql {row[0]}", f"{row[1]}: {row[2]}")
    connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the data directory of the stores")
    parser.add_argument("--cities", default="370100,370300,370500,371600")
    parser.add_argument("--pending-only", action="store_true", help="only what is still in doubt")
    parser.add_argument(
        "--check-sql",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "pgbench" / "check.sql",
    )
    args = parser.parse_args()
    try:
        report = check(args.data, args.cities.split(","), args.pending_only, args.check_sql)
    except (sqlite3.Error, FileNotFoundError) as error:
        print(json.dumps({"error": str(error)}))
        return 2
    print(json.dumps(report, indent=1))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
