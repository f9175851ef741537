"""psycopg 3 (libpq from the binary wheel) through pgcordon: tenants, RLS, a driver-level
prepared statement (prepare_threshold=0) reused on several pooled backends, cancel in plaintext
(cancel) and over TLS (cancel_safe), COPY both ways, an error inside a transaction, pipeline mode,
session state (a tracked SET followed, an untracked SET, a temporary table and LISTEN pinned) and
direct TLS (sslnegotiation=direct).

Usage: psycopg_scenario.py [SECTION ...] (all sections when none is named). Prints one JSON
summary line last; exits non-zero on any failure."""

import sys
import threading
import time

import psycopg
from psycopg import errors, pq

from common import (
    CA, DBNAME, HOST, PORT, PREPARED_ROUNDS, SCRATCH, TENANTS, TITLES, USER, WHO_SQL, HOLD_SQL,
    Summary, active_sleep_sql, poll, prepared_lookup_sql, prepared_sql, require, sleep_sql,
)

DRIVER = "psycopg"
S = Summary(DRIVER)


def connect(tenant, app, **extra):
    t = TENANTS[tenant]
    return psycopg.connect(
        host=HOST,
        port=PORT,
        dbname=DBNAME,
        user=USER,
        sslmode="verify-full",
        sslrootcert=CA,
        sslcert=t["cert"],
        sslkey=t["key"],
        application_name=app,
        connect_timeout=10,
        autocommit=True,
        **extra,
    )


def who(conn, what, tenant):
    S.who(what, conn.execute(WHO_SQL).fetchone(), tenant)
    S.transactions += 1


def isolation(conns):
    for name, (conn, tenant) in conns.items():
        who(conn, f"{name} first query", tenant)
        titles = [r[0] for r in conn.execute("SELECT title FROM documents ORDER BY title")]
        S.transactions += 1
        S.expect(f"{name} titles", titles, TITLES[tenant])


def prepared_across_backends(a1, holders, b2):
    sql = prepared_sql(DRIVER, "%s")
    lookup = prepared_lookup_sql(DRIVER)
    for i in range(PREPARED_ROUNDS):
        # Hold 0, 1 or 2 backends in other clients' open transactions: the pool hands out the
        # most recently used session first, so a1 moves to another backend each time.
        held = holders[: i % 3]
        holder_pids = set()
        for name, conn, tenant in held:
            conn.execute("BEGIN")
            pid, ident = conn.execute(HOLD_SQL).fetchone()
            S.expect(f"holder {name} identity (round {i})", ident, TENANTS[tenant]["id"])
            holder_pids.add(pid)
        with a1.transaction():
            pid, ident, app, count = a1.execute(sql, (f"round {i}",)).fetchone()
            on_backend = a1.execute(lookup).fetchone()[0]
        S.transactions += 1
        S.backends.add(pid)
        S.expect(f"prepared identity (round {i})", ident, TENANTS["A"]["id"])
        S.expect(f"prepared application_name (round {i})", app, "drv-psycopg-a1")
        S.expect(f"prepared visible rows (round {i})", count, 2)
        S.expect(f"statement prepared on backend {pid} (round {i})", on_backend, 1)
        require(pid not in holder_pids, f"a1 ran on backend {pid} held by another client")
        for name, conn, tenant in held:
            conn.execute("COMMIT")
            S.transactions += 1
        # The other tenant prepares the same text: it must see its own identity and rows.
        if i % 4 == 0:
            _, ident, app, count = b2.execute(sql, (f"b round {i}",)).fetchone()
            S.transactions += 1
            S.expect(f"b2 same statement identity (round {i})", ident, TENANTS["B"]["id"])
            S.expect(f"b2 same statement rows (round {i})", count, 1)
            S.expect(f"b2 application_name (round {i})", app, "drv-psycopg-b2")
    S.fields["prepared_rounds"] = PREPARED_ROUNDS


def cancel(conn, poller, method, tag):
    outcome = {}

    def run():
        try:
            conn.execute(sleep_sql(tag))
            outcome["error"] = None
        except Exception as e:  # noqa: BLE001 - the type is checked below
            outcome["error"] = e
        outcome["done"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    poll(f"{tag} sleep to be active", lambda: poller.execute(active_sleep_sql(tag)).fetchone()[0] == 1)
    sent = time.monotonic()
    getattr(conn, method)()
    thread.join(15)
    require(not thread.is_alive(), f"{tag}: the sleep did not return")
    err = outcome["error"]
    require(isinstance(err, errors.QueryCanceled), f"{tag}: expected QueryCanceled, got {err!r}")
    require(err.sqlstate == "57014", f"{tag}: SQLSTATE {err.sqlstate}")
    took = outcome["done"] - sent
    require(took < 1.0, f"{tag}: cancel took {took:.3f}s")
    S.fields[f"{tag}_ms"] = int(took * 1000)
    who(conn, f"after {tag}", "A")


def copy_both_ways(a1, b1):
    with a1.cursor() as cur:
        with cur.copy(f"COPY {SCRATCH} (driver, n, label) FROM STDIN") as cp:
            for n in range(50):
                cp.write_row((DRIVER, n, f"row {n}"))
        require(cur.rowcount == 50, f"COPY FROM reported {cur.rowcount} rows")
    S.transactions += 1
    count, total = a1.execute(
        f"SELECT count(*), sum(n) FROM {SCRATCH} WHERE driver = %s", (DRIVER,)
    ).fetchone()
    S.transactions += 1
    require((count, total) == (50, 1225), f"COPY FROM stored {count} rows, sum {total}")
    S.fields["copy_in_rows"] = count
    for conn, tenant in ((a1, "A"), (b1, "B")):
        with conn.cursor() as cur:
            with cur.copy("COPY documents (title) TO STDOUT") as cp:
                titles = sorted(row[0] for row in cp.rows())
        S.transactions += 1
        S.expect(f"COPY TO as {tenant}", titles, TITLES[tenant])
    S.fields["copy_out_checked"] = 2


def error_then_rollback(conn):
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT 1/0")
        raise AssertionError("1/0 succeeded")
    except errors.DivisionByZero as e:
        require(e.sqlstate == "22012", f"1/0 gave {e.sqlstate}")
    try:
        conn.execute("SELECT 1")
        raise AssertionError("a statement after an error succeeded in the aborted transaction")
    except errors.InFailedSqlTransaction as e:
        require(e.sqlstate == "25P02", f"after error: {e.sqlstate}")
    require(conn.info.transaction_status == pq.TransactionStatus.INERROR, "not INERROR")
    conn.execute("ROLLBACK")
    S.transactions += 1
    require(conn.info.transaction_status == pq.TransactionStatus.IDLE, "not IDLE after ROLLBACK")
    who(conn, "after ROLLBACK", "A")
    S.fields["error_rollback"] = 1


def pipeline(a1):
    sql = prepared_sql(DRIVER, "%s")
    with a1.pipeline() as p:
        curs = [a1.execute(sql, (f"pipeline {i}",)) for i in range(5)]
        with a1.transaction():
            for n in range(3):
                a1.execute(
                    f"INSERT INTO {SCRATCH} (driver, n, label) VALUES (%s, %s, %s)",
                    ("psycopg-pipeline", n, "in a pipelined transaction"),
                )
            inside = a1.execute(WHO_SQL)
        p.sync()
        rows = [c.fetchone() for c in curs]
        inside_row = inside.fetchone()
    S.transactions += 6
    for i, (pid, ident, app, count) in enumerate(rows):
        S.backends.add(pid)
        S.expect(f"pipeline statement {i} identity", ident, TENANTS["A"]["id"])
        S.expect(f"pipeline statement {i} rows", count, 2)
    S.who("pipelined transaction", inside_row, "A")
    stored = a1.execute(
        f"SELECT count(*) FROM {SCRATCH} WHERE driver = 'psycopg-pipeline'"
    ).fetchone()[0]
    S.transactions += 1
    require(stored == 3, f"pipelined transaction stored {stored} rows")

    # An error inside a pipeline: the rest up to the sync is skipped, the connection recovers.
    try:
        with a1.pipeline():
            a1.execute("SELECT 1/0")
            after = a1.execute(WHO_SQL)
        raise AssertionError("the pipelined 1/0 did not raise")
    except errors.DivisionByZero:
        pass
    try:
        after.fetchone()
        raise AssertionError("a statement after the pipelined error returned rows")
    except psycopg.ProgrammingError:
        pass  # no result: it was skipped
    who(a1, "after the pipeline error", "A")
    S.fields["pipeline_statements"] = 11


def session_state(a1, a2, b1):
    """Tracked settings follow the client once committed; untracked settings, temporary tables
    and LISTEN pin the client to its backend until it disconnects."""
    zone = "Asia/Kathmandu"
    a2.execute(f"SET TimeZone = '{zone}'")  # autocommit: committed at once
    S.transactions += 1
    a2.execute("BEGIN")
    a2.execute("SET TimeZone = 'UTC'")
    a2.execute("ROLLBACK")  # undone: must not follow the client
    S.transactions += 1
    pids = set()
    for i in range(4):
        held = i % 2 == 1
        if held:  # b1 takes the most recently used backend, so a2 moves
            b1.execute("BEGIN")
            b1.execute(HOLD_SQL)
        pid, tz, ident = a2.execute(
            "SELECT pg_backend_pid(), current_setting('TimeZone'), "
            "current_setting('app.current_user_id')"
        ).fetchone()
        S.transactions += 1
        if held:
            b1.execute("COMMIT")
            S.transactions += 1
        pids.add(pid)
        S.expect(f"TimeZone after a committed SET (round {i})", tz, zone)
        S.expect(f"identity after SET (round {i})", ident, TENANTS["A"]["id"])
    require(len(pids) >= 2, f"a tracked SET kept a2 on backend {pids}: it should not pin")

    s1 = connect("A", "drv-psycopg-s1")
    s1.execute("SET statement_timeout = '7s'")  # untracked: pins
    s1.execute("CREATE TEMP TABLE drv_tmp (n int)")
    s1.execute("INSERT INTO drv_tmp VALUES (1), (2)")
    pinned = s1.execute("SELECT pg_backend_pid()").fetchone()[0]
    s2 = connect("B", "drv-psycopg-s2")
    s2.execute("LISTEN drv_channel")
    listener = s2.execute("SELECT pg_backend_pid()").fetchone()[0]
    S.transactions += 6
    for i in range(3):
        # Other clients run meanwhile; none of them may get a pinned backend.
        for name, conn, tenant in (("a1", a1, "A"), ("b1", b1, "B")):
            pid, ident = conn.execute(HOLD_SQL).fetchone()
            S.transactions += 1
            S.expect(f"{name} identity beside pinned clients (round {i})", ident, TENANTS[tenant]["id"])
            require(pid not in (pinned, listener), f"{name} ran on pinned backend {pid}")
        pid, timeout, rows, ident = s1.execute(
            "SELECT pg_backend_pid(), current_setting('statement_timeout'), "
            "(SELECT count(*) FROM drv_tmp), current_setting('app.current_user_id')"
        ).fetchone()
        S.transactions += 1
        S.expect(f"pinned backend (round {i})", pid, pinned)
        S.expect(f"pinned statement_timeout (round {i})", timeout, "7s")
        S.expect(f"temporary table rows (round {i})", rows, 2)
        S.expect(f"pinned identity (round {i})", ident, TENANTS["A"]["id"])
    a1.execute("NOTIFY drv_channel, 'from tenant A'")
    S.transactions += 1
    got = [(n.channel, n.payload) for n in s2.notifies(timeout=5.0, stop_after=1)]
    S.expect("notification received by the pinned listener", got, [("drv_channel", "from tenant A")])
    s1.close()
    s2.close()
    S.fields["session_state"] = 1


def direct_tls():
    require(pq.version() >= 170000, f"libpq {pq.version()} cannot negotiate direct TLS")
    with connect("B", "drv-psycopg-direct", sslnegotiation="direct") as conn:
        require(conn.pgconn.ssl_in_use, "direct connection without TLS")
        who(conn, "direct TLS", "B")
    S.fields["direct_tls"] = 1


SECTIONS = ["isolation", "prepared", "cancel_plain", "cancel_tls", "copy", "error", "pipeline",
            "session_state", "direct_tls"]


def main(sections):
    unknown = set(sections) - set(SECTIONS)
    require(not unknown, f"unknown sections {sorted(unknown)}; known: {SECTIONS}")
    S.fields["libpq"] = pq.version()
    S.fields["psycopg"] = psycopg.__version__
    S.fields["sections"] = ",".join(sections)
    a1 = connect("A", "drv-psycopg-a1", prepare_threshold=0)
    a2 = connect("A", "drv-psycopg-a2")
    b1 = connect("B", "drv-psycopg-b1")
    b2 = connect("B", "drv-psycopg-b2", prepare_threshold=0)
    steps = {
        "isolation": lambda: isolation(
            {"a1": (a1, "A"), "a2": (a2, "A"), "b1": (b1, "B"), "b2": (b2, "B")}
        ),
        "prepared": lambda: prepared_across_backends(a1, [("a2", a2, "A"), ("b1", b1, "B")], b2),
        # libpq's PQcancel: a plaintext CancelRequest on a new connection.
        "cancel_plain": lambda: cancel(a2, b1, "cancel", "cancel_plain"),
        # libpq 17+ PQcancelBlocking: the CancelRequest over TLS, with the client certificate.
        "cancel_tls": lambda: cancel(a2, b1, "cancel_safe", "cancel_tls"),
        "copy": lambda: copy_both_ways(a1, b1),
        "error": lambda: error_then_rollback(a2),
        "pipeline": lambda: pipeline(a1),
        "session_state": lambda: session_state(a1, a2, b1),
        "direct_tls": direct_tls,
    }
    for name in SECTIONS:
        if name in sections:
            steps[name]()
    for c in (a1, a2, b1, b2):
        c.close()
    S.emit()


if __name__ == "__main__":
    main(sys.argv[1:] or SECTIONS)
