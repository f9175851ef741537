"""What the Python driver scenarios share: the connection material tests/drivers.rs passes in
the environment, the SQL every driver runs, and the summary line the Rust test parses."""

import json
import os
import sys
import time

ENV = os.environ


def env(name):
    value = ENV.get(name)
    if not value:
        sys.exit(f"environment variable {name} is not set (tests/drivers.rs sets it)")
    return value


HOST = env("PGC_HOST")
PORT = int(env("PGC_PORT"))
DBNAME = env("PGC_DBNAME")
USER = env("PGC_USER")
CA = env("PGC_CA")
SCRATCH = env("PGC_SCRATCH")
TENANTS = {
    "A": {"id": env("PGC_A_ID"), "cert": env("PGC_A_CERT"), "key": env("PGC_A_KEY"), "rows": 2},
    "B": {"id": env("PGC_B_ID"), "cert": env("PGC_B_CERT"), "key": env("PGC_B_KEY"), "rows": 1},
}
TITLES = {
    "A": ["tenant A: invoices", "tenant A: roadmap"],
    "B": ["tenant B: payroll"],
}

# How many transactions reuse the driver-level prepared statement.
PREPARED_ROUNDS = 12
# The statement text carries a marker so pg_prepared_statements can find it on each backend;
# the lookup builds the marker by concatenation so its own text never matches.
MARKER = "drv-marker-{driver}"


def prepared_sql(driver, placeholder):
    return (
        "SELECT pg_backend_pid(), current_setting('app.current_user_id'), "
        "current_setting('application_name'), count(*) "
        f"FROM documents WHERE title <> {placeholder} /* {MARKER.format(driver=driver)} */"
    )


def prepared_lookup_sql(driver):
    return (
        "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql "
        f"AND strpos(statement, 'drv-marker-' || '{driver}') > 0"
    )


WHO_SQL = "SELECT current_setting('app.current_user_id'), count(*) FROM documents"
HOLD_SQL = "SELECT pg_backend_pid(), current_setting('app.current_user_id')"


def sleep_sql(tag):
    return f"SELECT pg_sleep(10) /* {tag} */"


def active_sleep_sql(tag):
    # Counts the backends running that exact statement; the text differs from sleep_sql's.
    return (
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
        f"AND query = 'SELECT pg_sleep(10) /* ' || '{tag} */'"
    )


class Summary:
    """Counts what ran; identity and isolation mismatches are counted, not raised, so the
    summary line says how many there were. Anything else raises and fails the script."""

    def __init__(self, driver):
        self.driver = driver
        self.transactions = 0
        self.mismatches = 0
        self.details = []
        self.backends = set()
        self.fields = {}

    def expect(self, what, got, want):
        if got != want:
            self.mismatches += 1
            self.details.append(f"{what}: got {got!r}, want {want!r}")
            print(f"MISMATCH {what}: got {got!r}, want {want!r}", file=sys.stderr)

    def who(self, what, row, tenant):
        """row = (identity, count) from WHO_SQL."""
        self.expect(f"{what} identity", row[0], TENANTS[tenant]["id"])
        self.expect(f"{what} visible rows", int(row[1]), TENANTS[tenant]["rows"])

    def emit(self):
        line = {
            "driver": self.driver,
            "transactions": self.transactions,
            "mismatches": self.mismatches,
            "backends_used": len(self.backends),
        }
        line.update(self.fields)
        if self.details:
            line["mismatch_details"] = "; ".join(self.details)[:2000]
        print(json.dumps(line), flush=True)


def require(condition, message):
    if not condition:
        raise AssertionError(message)


def poll(what, fn, timeout=5.0):
    """Calls fn until it returns true; raises after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if fn():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
