"""asyncpg through pgcordon: tenants, RLS, an explicit prepared statement reused on several pooled
backends (asyncpg names every statement it prepares), executemany, binary COPY in
(copy_records_to_table) and COPY out (copy_from_query, copy_from_table), a query timeout and a
task cancellation that both send a CancelRequest over TLS, an error inside a transaction, startup
server_settings replayed on every backend, and direct TLS. Prints one JSON summary line last;
exits non-zero on any failure."""

import asyncio
import io
import ssl
import time

import asyncpg

from common import (
    CA, DBNAME, HOST, PORT, PREPARED_ROUNDS, SCRATCH, TENANTS, TITLES, USER, WHO_SQL, HOLD_SQL,
    Summary, active_sleep_sql, prepared_lookup_sql, prepared_sql, require, sleep_sql,
)

DRIVER = "asyncpg"
S = Summary(DRIVER)
# A zone no server default uses, so a backend that missed the replay shows it.
ZONE = "Pacific/Chatham"


def tls_context(tenant, alpn=True):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=CA)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(TENANTS[tenant]["cert"], TENANTS[tenant]["key"])
    if alpn:
        # asyncpg offers ALPN only on contexts it builds itself; direct TLS needs it.
        ctx.set_alpn_protocols(["postgresql"])
    return ctx


async def connect(tenant, app, alpn=True, **extra):
    return await asyncpg.connect(
        host=HOST,
        port=PORT,
        user=USER,
        database=DBNAME,
        ssl=tls_context(tenant, alpn),
        server_settings={"application_name": app, "TimeZone": ZONE},
        timeout=10,
        **extra,
    )


async def who(conn, what, tenant):
    S.who(what, tuple(await conn.fetchrow(WHO_SQL)), tenant)
    S.transactions += 1


async def poll_sql(what, conn, sql, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        got = await conn.fetchval(sql)
        if got == want:
            return
        require(time.monotonic() < deadline, f"timed out waiting for {what} (last {got!r})")
        await asyncio.sleep(0.02)


async def isolation(conns):
    for name, (conn, tenant) in conns.items():
        await who(conn, f"{name} first query", tenant)
        titles = [r[0] for r in await conn.fetch("SELECT title FROM documents ORDER BY title")]
        S.transactions += 1
        S.expect(f"{name} titles", titles, TITLES[tenant])


async def prepared_across_backends(a1, holders, b2):
    stmt = await a1.prepare(prepared_sql(DRIVER, "$1"))
    lookup = prepared_lookup_sql(DRIVER)
    for i in range(PREPARED_ROUNDS):
        held = holders[: i % 3]
        holder_pids = set()
        for name, conn, tenant in held:
            await conn.execute("BEGIN")
            pid, ident = await conn.fetchrow(HOLD_SQL)
            S.expect(f"holder {name} identity (round {i})", ident, TENANTS[tenant]["id"])
            holder_pids.add(pid)
        async with a1.transaction():
            pid, ident, app, count = await stmt.fetchrow(f"round {i}")
            on_backend = await a1.fetchval(lookup)
            zone = await a1.fetchval("SELECT current_setting('TimeZone')")
        S.transactions += 1
        S.backends.add(pid)
        S.expect(f"prepared identity (round {i})", ident, TENANTS["A"]["id"])
        S.expect(f"prepared application_name (round {i})", app, "drv-asyncpg-a1")
        S.expect(f"TimeZone (round {i})", zone, ZONE)
        S.expect(f"prepared visible rows (round {i})", count, 2)
        S.expect(f"statement prepared on backend {pid} (round {i})", on_backend, 1)
        require(pid not in holder_pids, f"a1 ran on backend {pid} held by another client")
        for name, conn, tenant in held:
            await conn.execute("COMMIT")
            S.transactions += 1
        if i % 4 == 0:
            _, ident, app, count = await b2.fetchrow(prepared_sql(DRIVER, "$1"), f"b round {i}")
            S.transactions += 1
            S.expect(f"b2 same statement identity (round {i})", ident, TENANTS["B"]["id"])
            S.expect(f"b2 same statement rows (round {i})", count, 1)
            S.expect(f"b2 application_name (round {i})", app, "drv-asyncpg-b2")
    S.fields["prepared_rounds"] = PREPARED_ROUNDS


async def executemany(a1):
    rows = [("asyncpg-many", n, f"row {n}") for n in range(20)]
    await a1.executemany(f"INSERT INTO {SCRATCH} (driver, n, label) VALUES ($1, $2, $3)", rows)
    S.transactions += 1
    count, total = await a1.fetchrow(
        f"SELECT count(*), sum(n) FROM {SCRATCH} WHERE driver = 'asyncpg-many'"
    )
    S.transactions += 1
    require((count, total) == (20, 190), f"executemany stored {count} rows, sum {total}")
    S.fields["executemany_rows"] = count


async def copy_both_ways(a1, b1):
    records = [(DRIVER, n, f"row {n}") for n in range(50)]
    status = await a1.copy_records_to_table(
        SCRATCH, records=records, columns=["driver", "n", "label"]
    )
    S.transactions += 1
    require(status == "COPY 50", f"copy_records_to_table returned {status!r}")
    count, total = await a1.fetchrow(
        f"SELECT count(*), sum(n) FROM {SCRATCH} WHERE driver = $1", DRIVER
    )
    S.transactions += 1
    require((count, total) == (50, 1225), f"COPY FROM stored {count} rows, sum {total}")
    S.fields["copy_in_rows"] = count
    for conn, tenant in ((a1, "A"), (b1, "B")):
        out = io.BytesIO()
        await conn.copy_from_query("SELECT title FROM documents ORDER BY title", output=out)
        S.transactions += 1
        S.expect(f"copy_from_query as {tenant}", out.getvalue().decode().splitlines(), TITLES[tenant])
        out = io.BytesIO()
        await conn.copy_from_table("documents", columns=["title"], output=out)
        S.transactions += 1
        S.expect(
            f"copy_from_table as {tenant}", sorted(out.getvalue().decode().splitlines()), TITLES[tenant]
        )
    S.fields["copy_out_checked"] = 4


async def timeout_cancels(conn, poller):
    """asyncpg sends a CancelRequest (over TLS, with the connection's SSL context) when a query
    times out, and waits for the server's answer before the connection is used again. It
    reports TimeoutError, not the 57014 it consumed, so the check is on the server side."""
    tag = "asyncpg_timeout"
    started = time.monotonic()
    try:
        await conn.fetchval(sleep_sql(tag), timeout=0.5)
        raise AssertionError("the sleep outlived its timeout")
    except asyncio.TimeoutError:
        pass
    timed_out = time.monotonic()
    require(timed_out - started < 1.5, f"timeout raised after {timed_out - started:.3f}s")
    await who(conn, "after the timeout", "A")
    usable = time.monotonic() - timed_out
    require(usable < 1.0, f"connection usable {usable:.3f}s after the timeout")
    active = await poller.fetchval(active_sleep_sql(tag))
    require(active == 0, f"{active} timed-out sleep(s) still running")
    S.fields["timeout_cancel_ms"] = int(usable * 1000)


async def task_cancel(conn, poller):
    tag = "asyncpg_task_cancel"
    task = asyncio.ensure_future(conn.fetchval(sleep_sql(tag)))
    await poll_sql("the sleep to be active", poller, active_sleep_sql(tag), 1)
    sent = time.monotonic()
    task.cancel()
    try:
        await task
        raise AssertionError("the cancelled sleep returned")
    except asyncio.CancelledError:
        pass
    await who(conn, "after task cancel", "A")
    took = time.monotonic() - sent
    require(took < 1.0, f"cancel + next query took {took:.3f}s")
    active = await poller.fetchval(active_sleep_sql(tag))
    require(active == 0, f"{active} cancelled sleep(s) still running")
    S.fields["task_cancel_ms"] = int(took * 1000)


async def error_then_rollback(conn):
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.fetchval("SELECT 1/0")
        raise AssertionError("1/0 succeeded")
    except asyncpg.DivisionByZeroError as e:
        require(e.sqlstate == "22012", f"1/0 gave {e.sqlstate}")
    try:
        await conn.fetchval("SELECT 1")
        raise AssertionError("a statement after an error succeeded in the aborted transaction")
    except asyncpg.InFailedSQLTransactionError as e:
        require(e.sqlstate == "25P02", f"after error: {e.sqlstate}")
    await tx.rollback()
    S.transactions += 1
    require(not conn.is_in_transaction(), "still in a transaction after ROLLBACK")
    await who(conn, "after ROLLBACK", "A")
    S.fields["error_rollback"] = 1


async def direct_tls():
    # Without ALPN "postgresql" a direct TLS connection is refused, as PostgreSQL 17 does.
    try:
        conn = await connect("B", "drv-asyncpg-direct", alpn=False, direct_tls=True)
        await conn.close()
        raise AssertionError("direct TLS without ALPN was accepted")
    except (asyncpg.ConnectionDoesNotExistError, ConnectionError):
        pass
    conn = await connect("B", "drv-asyncpg-direct", direct_tls=True)
    try:
        await who(conn, "direct TLS", "B")
    finally:
        await conn.close()
    S.fields["direct_tls"] = 1


async def main():
    S.fields["asyncpg"] = asyncpg.__version__
    a1 = await connect("A", "drv-asyncpg-a1")
    a2 = await connect("A", "drv-asyncpg-a2")
    b1 = await connect("B", "drv-asyncpg-b1")
    b2 = await connect("B", "drv-asyncpg-b2")
    await isolation({"a1": (a1, "A"), "a2": (a2, "A"), "b1": (b1, "B"), "b2": (b2, "B")})
    await prepared_across_backends(a1, [("a2", a2, "A"), ("b1", b1, "B")], b2)
    await executemany(a1)
    await copy_both_ways(a1, b1)
    await timeout_cancels(a2, b1)
    await task_cancel(a2, b1)
    await error_then_rollback(a2)
    await direct_tls()
    for c in (a1, a2, b1, b2):
        await c.close()
    S.emit()


if __name__ == "__main__":
    asyncio.run(main())
