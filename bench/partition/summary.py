#!/usr/bin/env python3
"""Prints the partition drill's summary from its working directory (bench/partition/run calls
it) and writes the same figures to summary.json there."""

import datetime
import json
import subprocess
import sys
from pathlib import Path


def log_messages(path: Path):
    """The JSON log lines of one node: (message, fields)."""
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        fields = entry.get("fields", {})
        at = instant(entry["timestamp"]) if "timestamp" in entry else None
        yield entry.get("message", fields.get("message", "")), fields, at


def instant(text: str) -> datetime.datetime:
    """A UTC timestamp of the logs ("...Z") or of faults.tsv (no zone, nanoseconds)."""
    text = text.rstrip("Z")
    whole, _, fraction = text.partition(".")
    return datetime.datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}")


def sweeps(logs: Path, healed: datetime.datetime) -> dict:
    """What the settlement nodes' recovery sweeps logged: reports of work and failed attempts,
    over the whole run and after the last heal."""
    figures = {"reports": 0, "voided": 0, "completed": 0, "could_not_void": 0, "could_not_complete": 0,
               "after_heal": {}}
    for path in sorted(logs.glob("*-settlement.log")):
        city = path.name.split("-")[0]
        after = {"reports": 0, "failed": 0, "last_secs": None}
        for message, fields, at in log_messages(path):
            later = at is not None and at > healed
            if message == "recovery sweep":
                figures["reports"] += 1
                figures["voided"] += int(fields.get("voided", 0))
                figures["completed"] += int(fields.get("completed", 0))
                if later:
                    after["reports"] += 1
                    after["last_secs"] = round((at - healed).total_seconds(), 1)
            elif message in ("recovery could not void", "recovery could not complete"):
                figures["could_not_void" if message.endswith("void") else "could_not_complete"] += 1
                if later:
                    after["failed"] += 1
        figures["after_heal"][city] = after
    return figures


def findings_text(report: dict) -> list:
    lines = []
    for what, found in report.get("findings", {}).items():
        lines.append(f"  {what}: {found['count']}")
        lines.extend(f"    {detail}" for detail in found["listed"])
    if "error" in report:
        lines.append(f"  error: {report['error']}")
    return lines


def main():
    work = Path(sys.argv[1])
    (load_secs, settled_after, sweep_wait_secs, check_live, check_final, panics, delay_rate, seed,
     clients, his_timeout_secs) = sys.argv[2:12]
    root = Path(__file__).resolve().parent.parent.parent
    commit = subprocess.run(
        ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=7"],
        capture_output=True, text=True,
    ).stdout.strip()
    bench = json.loads((work / "bench.json").read_text())
    replay = json.loads((work / "replay.json").read_text())
    live = json.loads((work / "check-live.json").read_text() or "{}")
    final = json.loads((work / "check-final.json").read_text() or "{}")
    faults = [
        dict(zip(["n", "kind", "what", "secs", "packets", "queue_max_bytes", "calls", "healed_at", "back_secs"],
                 line.split("\t")))
        for line in (work / "faults.tsv").read_text().splitlines()
    ]
    swept = sweeps(work / "logs", instant(faults[-1]["healed_at"]))
    figures = bench["figures"]
    found = replay["replay"]
    check = replay.get("check") or {}
    rate_bits = float(delay_rate.lower().replace("kbit", "e3").replace("mbit", "e6").replace("bit", ""))

    print("== result")
    print(f"date, commit:                  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {commit}")
    print("network:                       13 yitong serve processes on SQLite, 6 network namespaces on a bridge")
    print(f"load:                          {clients} HIS clients, {his_timeout_secs} s deadline per call; seed {seed}")
    print(f"faults under load ({load_secs} s):")
    for fault in faults:
        extra = ""
        if fault["kind"] == "delay":
            queued = int(fault["queue_max_bytes"])
            extra = f", queue up to {queued} bytes = {queued * 8 / rate_bits:.0f} s behind {delay_rate}/s"
        back = f"{fault['back_secs']} s" if fault["back_secs"] != "-" else "NOT within the wait"
        print(f"  {fault['n']:>2}. {fault['what']}, {fault['secs']} s: {fault['packets']} packets matched{extra}; "
              f"{fault['calls']} calls logged meanwhile; every city settling again {back} after the heal")
    print(f"visits:                        {figures['visits_settled']} visits settled, {figures['visits_failed']} failed, "
          f"{figures['elapsed_ms'] / 1000:.1f} s")
    print("errors by status code:         "
          + (", ".join(f"{f['rpc']} {f['code']} {f['count']}" for f in figures["failures"]) or "none"))
    print(f"recovery sweeps (all nodes):   {swept['reports']} reports of work: {swept['voided']} voided, "
          f"{swept['completed']} completed; {swept['could_not_void']} voids and "
          f"{swept['could_not_complete']} completions failed and were retried")
    print("after the last heal:           " + "; ".join(
        f"{city} {after['reports']} sweep reports, the last {after['last_secs']} s after it, "
        f"{after['failed']} attempts failed" for city, after in swept["after_heal"].items()))
    print("nothing in doubt:              "
          + (f"{settled_after} s after the last heal" if settled_after else f"NOT within {sweep_wait_secs} s"))
    counts = final.get("counts") or live.get("counts") or {}
    print("settlements by phase:          " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())
                                                      if k.startswith(("settlement ", "cancellation "))))
    print(f"ledger:                        {counts.get('ledger journal entries')} journal entries; "
          f"{counts.get('ledger transfers booked then voided')} transfers booked then voided, "
          f"{counts.get('ledger voids before booking')} voids before booking")
    print(f"insured cities:                {counts.get('reservations held then voided')} reservations held then voided, "
          f"{counts.get('reservations voided before held')} voided before held")
    print(f"store check, nodes running:    {'passed' if check_live == '0' else 'FAILED'} "
          f"({live.get('counts', {}).get('ids agreeing')} of "
          f"{live.get('counts', {}).get('ids checked in three places')} settlement ids agree in three places)")
    for line in findings_text(live):
        print(line)
    lost = ", ".join(f"{rpc} {count}" for rpc, count in found["lost"].items()) or "none"
    print(f"calls logged:                  {found['calls']}")
    print(f"settles acknowledged:          {found['settles_acknowledged']}")
    print(f"lost answers replayed:         {found['lost_replayed']} ({lost}): {found['lost_answered']} answered OK, "
          f"{found['lost_refused']} refused FAILED_PRECONDITION")
    print(f"OK answers replayed, compared: {found['ok_replayed']}")
    print(f"replay sends repeated:         {found['retries']} (ABORTED, UNAVAILABLE, DEADLINE_EXCEEDED)")
    print(f"inconsistencies:               {len(found['inconsistencies'])}")
    for inconsistency in found["inconsistencies"][:20]:
        print(f"  {inconsistency}")
    print(f"ledger check:                  {'passed' if check.get('passed') else 'FAILED'} "
          f"({check.get('settlements_listed')} settlements listed, {check.get('settled')} settled, "
          f"{check.get('cancelled')} cancelled; {check.get('journal_entries_verified')} journal entries verified)")
    for problem in check.get("problems", [])[:20]:
        print(f"  {problem}")
    print(f"store check, nodes stopped:    {'passed' if check_final == '0' else 'FAILED'} "
          f"({counts.get('ids agreeing')} of {counts.get('ids checked in three places')} "
          f"agree; {counts.get('account movements')} account movements)")
    for line in findings_text(final):
        print(line)
    print(f"panics in node logs:           {panics}")

    (work / "summary.json").write_text(json.dumps({
        "commit": commit, "seed": seed, "clients": int(clients), "his_timeout_secs": int(his_timeout_secs), "load_secs": int(load_secs), "faults": faults,
        "bench": figures, "sweeps": swept, "settled_after_secs": settled_after or None,
        "check_live": live, "replay": found, "ledger_check": check, "check_final": final,
        "panics": int(panics),
    }, indent=1))


if __name__ == "__main__":
    main()
