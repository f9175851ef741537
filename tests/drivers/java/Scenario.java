// pgjdbc (Debian's libpostgresql-jdbc-java) through pgcordon: tenants, RLS, a server-prepared
// statement (prepareThreshold=1) reused on several pooled backends, the session parameters pgjdbc
// sets (TimeZone and ApplicationName at startup, then SET extra_float_digits = 3) on each
// backend, Statement.cancel (a plaintext CancelRequest), COPY both ways with CopyManager, a
// batch, and an error inside a transaction. Prints one JSON summary line last; exits non-zero on
// any failure.
//
// tests/drivers.rs compiles this file with javac against /usr/share/java/postgresql.jar into a
// temporary directory and runs it with -Duser.timezone set. Usage: Scenario [SECTION ...] (all
// sections when none is named).

import java.io.StringReader;
import java.io.StringWriter;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TimeZone;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PSQLException;

public class Scenario {
    static final String DRIVER = "pgjdbc";
    static final int PREPARED_ROUNDS = 12;
    static final String WHO_SQL =
            "SELECT current_setting('app.current_user_id'), count(*) FROM documents";
    static final String HOLD_SQL =
            "SELECT pg_backend_pid(), current_setting('app.current_user_id')";
    static final String PREPARED_SQL =
            "SELECT pg_backend_pid(), current_setting('app.current_user_id'), "
                    + "current_setting('application_name'), count(*), "
                    + "current_setting('TimeZone'), current_setting('extra_float_digits') "
                    + "FROM documents WHERE title <> ? /* drv-marker-jdbc */";
    static final String LOOKUP_SQL =
            "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql "
                    + "AND strpos(statement, 'drv-marker-' || 'jdbc') > 0";

    static String env(String name) {
        String value = System.getenv(name);
        if (value == null || value.isEmpty()) {
            System.err.println("environment variable " + name + " is not set (tests/drivers.rs sets it)");
            System.exit(2);
        }
        return value;
    }

    static final String HOST = env("PGC_HOST");
    static final String PORT = env("PGC_PORT");
    static final String DBNAME = env("PGC_DBNAME");
    static final String USER = env("PGC_USER");
    static final String CA = env("PGC_CA");
    static final String SCRATCH = env("PGC_SCRATCH");
    static final List<String> SECTIONS =
            List.of("isolation", "prepared", "cancel", "copy", "batch", "error");
    static final Map<String, String[]> TENANTS = new LinkedHashMap<>();
    static final Map<String, Integer> ROWS = Map.of("A", 2, "B", 1);
    static final Map<String, List<String>> TITLES = Map.of(
            "A", List.of("tenant A: invoices", "tenant A: roadmap"),
            "B", List.of("tenant B: payroll"));

    static {
        // id, certificate, PKCS-8 DER key
        TENANTS.put("A", new String[] {env("PGC_A_ID"), env("PGC_A_CERT"), env("PGC_A_KEY_DER")});
        TENANTS.put("B", new String[] {env("PGC_B_ID"), env("PGC_B_CERT"), env("PGC_B_KEY_DER")});
    }

    static int transactions = 0;
    static int mismatches = 0;
    static final List<String> details = new ArrayList<>();
    static final Set<Integer> backends = new HashSet<>();
    static final Map<String, Object> fields = new LinkedHashMap<>();

    static void expect(String what, Object got, Object want) {
        if (!String.valueOf(got).equals(String.valueOf(want))) {
            mismatches++;
            String line = what + ": got " + got + ", want " + want;
            details.add(line);
            System.err.println("MISMATCH " + line);
        }
    }

    static void require(boolean condition, String message) {
        if (!condition) {
            throw new AssertionError(message);
        }
    }

    static Connection connect(String tenant, String app) throws SQLException {
        String[] t = TENANTS.get(tenant);
        String url = "jdbc:postgresql://" + HOST + ":" + PORT + "/" + DBNAME
                + "?user=" + USER
                + "&sslmode=verify-full&sslrootcert=" + CA
                + "&sslcert=" + t[1] + "&sslkey=" + t[2]
                + "&prepareThreshold=1&ApplicationName=" + app
                + "&connectTimeout=10";
        return DriverManager.getConnection(url);
    }

    static void who(Connection c, String what, String tenant) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(WHO_SQL)) {
            require(rs.next(), what + ": no row");
            expect(what + " identity", rs.getString(1), TENANTS.get(tenant)[0]);
            expect(what + " visible rows", rs.getLong(2), ROWS.get(tenant));
        }
        if (!c.getAutoCommit()) {
            c.commit();
        }
        transactions++;
    }

    static List<String> titles(Connection c) throws SQLException {
        List<String> out = new ArrayList<>();
        try (Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT title FROM documents ORDER BY title")) {
            while (rs.next()) {
                out.add(rs.getString(1));
            }
        }
        transactions++;
        return out;
    }

    static int[] hold(Connection c, String name, String tenant, int round) throws SQLException {
        c.setAutoCommit(false); // pgjdbc sends BEGIN with the next statement
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(HOLD_SQL)) {
            require(rs.next(), "holder: no row");
            expect("holder " + name + " identity (round " + round + ")", rs.getString(2),
                    TENANTS.get(tenant)[0]);
            return new int[] {rs.getInt(1)};
        }
    }

    static void preparedAcrossBackends(Connection a1, List<Object[]> holders, Connection b2,
            String zone) throws SQLException {
        a1.setAutoCommit(false);
        try (PreparedStatement ps = a1.prepareStatement(PREPARED_SQL);
                PreparedStatement lookup = a1.prepareStatement(LOOKUP_SQL);
                PreparedStatement bps = b2.prepareStatement(PREPARED_SQL)) {
            for (int i = 0; i < PREPARED_ROUNDS; i++) {
                List<Object[]> held = holders.subList(0, i % 3);
                Set<Integer> holderPids = new HashSet<>();
                for (Object[] h : held) {
                    holderPids.add(hold((Connection) h[1], (String) h[0], (String) h[2], i)[0]);
                }
                ps.setString(1, "round " + i);
                int pid;
                try (ResultSet rs = ps.executeQuery()) {
                    require(rs.next(), "prepared: no row");
                    pid = rs.getInt(1);
                    expect("prepared identity (round " + i + ")", rs.getString(2), TENANTS.get("A")[0]);
                    expect("prepared application_name (round " + i + ")", rs.getString(3), "drv-jdbc-a1");
                    expect("prepared visible rows (round " + i + ")", rs.getLong(4), 2);
                    expect("TimeZone (round " + i + ")", rs.getString(5), zone);
                    expect("extra_float_digits (round " + i + ")", rs.getString(6), "3");
                }
                try (ResultSet rs = lookup.executeQuery()) {
                    require(rs.next(), "lookup: no row");
                    expect("statement prepared on backend " + pid + " (round " + i + ")", rs.getLong(1), 1);
                }
                a1.commit();
                transactions++;
                backends.add(pid);
                require(ps.unwrap(PGStatement.class).isUseServerPrepare(),
                        "pgjdbc did not use a server-prepared statement");
                require(!holderPids.contains(pid), "a1 ran on backend " + pid + " held by another client");
                for (Object[] h : held) {
                    Connection c = (Connection) h[1];
                    c.commit();
                    c.setAutoCommit(true);
                    transactions++;
                }
                if (i % 4 == 0) {
                    bps.setString(1, "b round " + i);
                    try (ResultSet rs = bps.executeQuery()) {
                        require(rs.next(), "b2: no row");
                        expect("b2 same statement identity (round " + i + ")", rs.getString(2),
                                TENANTS.get("B")[0]);
                        expect("b2 same statement rows (round " + i + ")", rs.getLong(4), 1);
                        expect("b2 application_name (round " + i + ")", rs.getString(3), "drv-jdbc-b2");
                    }
                    transactions++;
                }
            }
        }
        a1.setAutoCommit(true);
        fields.put("prepared_rounds", PREPARED_ROUNDS);
    }

    static String activeSleepSql(String tag) {
        return "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                + "AND query = 'SELECT pg_sleep(10) /* ' || '" + tag + " */'";
    }

    static void pollActive(Connection poller, String tag) throws Exception {
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (true) {
            try (Statement s = poller.createStatement(); ResultSet rs = s.executeQuery(activeSleepSql(tag))) {
                rs.next();
                if (rs.getLong(1) == 1) {
                    return;
                }
            }
            require(System.nanoTime() < deadline, "timed out waiting for the sleep to be active");
            Thread.sleep(20);
        }
    }

    static void cancel(Connection c, Connection poller) throws Exception {
        String tag = "jdbc_cancel";
        Statement s = c.createStatement();
        AtomicReference<Throwable> error = new AtomicReference<>();
        AtomicLong done = new AtomicLong();
        Thread runner = new Thread(() -> {
            try {
                s.execute("SELECT pg_sleep(10) /* " + tag + " */");
            } catch (Throwable e) {
                error.set(e);
            }
            done.set(System.nanoTime());
        });
        runner.start();
        pollActive(poller, tag);
        long sent = System.nanoTime();
        s.cancel();
        runner.join(15_000);
        require(!runner.isAlive(), "the sleep did not return");
        Throwable e = error.get();
        require(e instanceof SQLException, "expected an SQLException, got " + e);
        require("57014".equals(((SQLException) e).getSQLState()),
                "cancel gave " + ((SQLException) e).getSQLState() + ": " + e);
        long tookMs = (done.get() - sent) / 1_000_000;
        require(tookMs < 1000, "cancel took " + tookMs + " ms");
        fields.put("cancel_plain_ms", tookMs);
        s.close();
        who(c, "after cancel", "A");
    }

    static void copyBothWays(Connection a1, Connection b1) throws Exception {
        StringBuilder data = new StringBuilder();
        for (int n = 0; n < 50; n++) {
            data.append(DRIVER).append('\t').append(n).append("\trow ").append(n).append('\n');
        }
        CopyManager copy = a1.unwrap(PGConnection.class).getCopyAPI();
        long copied = copy.copyIn("COPY " + SCRATCH + " (driver, n, label) FROM STDIN",
                new StringReader(data.toString()));
        transactions++;
        require(copied == 50, "COPY FROM reported " + copied + " rows");
        try (PreparedStatement ps = a1.prepareStatement(
                "SELECT count(*), sum(n) FROM " + SCRATCH + " WHERE driver = ?")) {
            ps.setString(1, DRIVER);
            try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                require(rs.getLong(1) == 50 && rs.getLong(2) == 1225,
                        "COPY FROM stored " + rs.getLong(1) + " rows, sum " + rs.getLong(2));
                fields.put("copy_in_rows", rs.getLong(1));
            }
        }
        transactions++;
        for (Object[] pair : new Object[][] {{a1, "A"}, {b1, "B"}}) {
            Connection c = (Connection) pair[0];
            String tenant = (String) pair[1];
            StringWriter out = new StringWriter();
            c.unwrap(PGConnection.class).getCopyAPI().copyOut("COPY documents (title) TO STDOUT", out);
            transactions++;
            List<String> got = new ArrayList<>(Arrays.asList(out.toString().split("\n")));
            got.removeIf(String::isEmpty);
            Collections.sort(got);
            expect("COPY TO as " + tenant, got, TITLES.get(tenant));
        }
        fields.put("copy_out_checked", 2);
    }

    static void batch(Connection a1) throws SQLException {
        a1.setAutoCommit(false);
        try (PreparedStatement ps = a1.prepareStatement(
                "INSERT INTO " + SCRATCH + " (driver, n, label) VALUES (?, ?, ?)")) {
            for (int n = 0; n < 20; n++) {
                ps.setString(1, "pgjdbc-batch");
                ps.setInt(2, n);
                ps.setString(3, "row " + n);
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            require(counts.length == 20, "batch returned " + counts.length + " counts");
        }
        a1.commit();
        a1.setAutoCommit(true);
        transactions++;
        try (Statement s = a1.createStatement();
                ResultSet rs = s.executeQuery("SELECT count(*), sum(n) FROM " + SCRATCH
                        + " WHERE driver = 'pgjdbc-batch'")) {
            rs.next();
            require(rs.getLong(1) == 20 && rs.getLong(2) == 190,
                    "batch stored " + rs.getLong(1) + " rows, sum " + rs.getLong(2));
            fields.put("batch_rows", rs.getLong(1));
        }
        transactions++;
    }

    static void errorThenRollback(Connection c) throws SQLException {
        c.setAutoCommit(false);
        try (Statement s = c.createStatement()) {
            try {
                s.executeQuery("SELECT 1/0");
                throw new AssertionError("1/0 succeeded");
            } catch (PSQLException e) {
                require("22012".equals(e.getSQLState()), "1/0 gave " + e.getSQLState());
            }
            try {
                s.executeQuery("SELECT 1");
                throw new AssertionError("a statement after an error succeeded in the aborted transaction");
            } catch (PSQLException e) {
                require("25P02".equals(e.getSQLState()), "after the error: " + e.getSQLState());
            }
        }
        c.rollback();
        c.setAutoCommit(true);
        transactions++;
        who(c, "after ROLLBACK", "A");
        fields.put("error_rollback", 1);
    }

    static String json(Object value) {
        if (value instanceof Number) {
            return value.toString();
        }
        String s = String.valueOf(value);
        StringBuilder out = new StringBuilder("\"");
        for (char ch : s.toCharArray()) {
            if (ch == '"' || ch == '\\') {
                out.append('\\').append(ch);
            } else if (ch < 0x20) {
                out.append(String.format("\\u%04x", (int) ch));
            } else {
                out.append(ch);
            }
        }
        return out.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        List<String> sections = args.length == 0 ? SECTIONS : List.of(args);
        for (String section : sections) {
            require(SECTIONS.contains(section), "unknown section " + section + "; known: " + SECTIONS);
        }
        String zone = TimeZone.getDefault().getID();
        fields.put("pgjdbc", org.postgresql.util.DriverInfo.DRIVER_VERSION);
        fields.put("timezone", zone);
        fields.put("sections", String.join(",", sections));
        Connection a1 = connect("A", "drv-jdbc-a1");
        Connection a2 = connect("A", "drv-jdbc-a2");
        Connection b1 = connect("B", "drv-jdbc-b1");
        Connection b2 = connect("B", "drv-jdbc-b2");
        if (sections.contains("isolation")) {
            Map<String, Object[]> all = new LinkedHashMap<>();
            all.put("a1", new Object[] {a1, "A"});
            all.put("a2", new Object[] {a2, "A"});
            all.put("b1", new Object[] {b1, "B"});
            all.put("b2", new Object[] {b2, "B"});
            for (Map.Entry<String, Object[]> e : all.entrySet()) {
                Connection c = (Connection) e.getValue()[0];
                String tenant = (String) e.getValue()[1];
                who(c, e.getKey() + " first query", tenant);
                expect(e.getKey() + " titles", titles(c), TITLES.get(tenant));
            }
        }
        if (sections.contains("prepared")) {
            List<Object[]> holders = new ArrayList<>();
            holders.add(new Object[] {"a2", a2, "A"});
            holders.add(new Object[] {"b1", b1, "B"});
            preparedAcrossBackends(a1, holders, b2, zone);
        }
        if (sections.contains("cancel")) {
            cancel(a2, b1);
        }
        if (sections.contains("copy")) {
            copyBothWays(a1, b1);
        }
        if (sections.contains("batch")) {
            batch(a1);
        }
        if (sections.contains("error")) {
            errorThenRollback(a2);
        }
        for (Connection c : List.of(a1, a2, b1, b2)) {
            c.close();
        }
        StringBuilder line = new StringBuilder("{");
        line.append("\"driver\": ").append(json(DRIVER));
        line.append(", \"transactions\": ").append(transactions);
        line.append(", \"mismatches\": ").append(mismatches);
        line.append(", \"backends_used\": ").append(backends.size());
        for (Map.Entry<String, Object> f : fields.entrySet()) {
            line.append(", ").append(json(f.getKey())).append(": ").append(json(f.getValue()));
        }
        if (!details.isEmpty()) {
            String d = String.join("; ", details);
            line.append(", \"mismatch_details\": ").append(json(d.length() > 2000 ? d.substring(0, 2000) : d));
        }
        System.out.println(line.append("}"));
    }
}
