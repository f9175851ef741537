// node-postgres (pure JavaScript) through pgcordon: tenants, RLS, a named query (a protocol-level
// prepared statement) reused on several pooled backends, cancel (a plaintext CancelRequest, the
// only kind node-postgres sends), COPY both ways with pg-copy-streams, an error inside a
// transaction, pipeline mode, LISTEN/NOTIFY (pinned), direct TLS, and a refused startup
// parameter. Prints one JSON summary line last; exits non-zero on any failure.
'use strict'

const fs = require('fs')
const { Readable, Writable } = require('stream')
const { pipeline } = require('stream/promises')
const pg = require('pg')
const copyStreams = require('pg-copy-streams')

const DRIVER = 'node-postgres'
const TAG = 'node' // the marker in statement texts
const PREPARED_ROUNDS = 12

function env(name) {
  const value = process.env[name]
  if (!value) {
    console.error(`environment variable ${name} is not set (tests/drivers.rs sets it)`)
    process.exit(2)
  }
  return value
}

const HOST = env('PGC_HOST')
const PORT = Number(env('PGC_PORT'))
const DBNAME = env('PGC_DBNAME')
const USER = env('PGC_USER')
const CA = fs.readFileSync(env('PGC_CA'))
const SCRATCH = env('PGC_SCRATCH')
const TENANTS = {
  A: { id: env('PGC_A_ID'), cert: env('PGC_A_CERT'), key: env('PGC_A_KEY'), rows: 2 },
  B: { id: env('PGC_B_ID'), cert: env('PGC_B_CERT'), key: env('PGC_B_KEY'), rows: 1 },
}
const TITLES = { A: ['tenant A: invoices', 'tenant A: roadmap'], B: ['tenant B: payroll'] }

const WHO_SQL = "SELECT current_setting('app.current_user_id') AS who, count(*)::int AS n FROM documents"
const HOLD_SQL = "SELECT pg_backend_pid() AS pid, current_setting('app.current_user_id') AS who"
const PREPARED_SQL =
  "SELECT pg_backend_pid() AS pid, current_setting('app.current_user_id') AS who, " +
  "current_setting('application_name') AS app, count(*)::int AS n " +
  `FROM documents WHERE title <> $1 /* drv-marker-${TAG} */`
const LOOKUP_SQL =
  'SELECT count(*)::int AS n FROM pg_prepared_statements WHERE NOT from_sql ' +
  `AND strpos(statement, 'drv-marker-' || '${TAG}') > 0`
const sleepSql = (tag) => `SELECT pg_sleep(10) /* ${tag} */`
const activeSleepSql = (tag) =>
  "SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'active' " +
  `AND query = 'SELECT pg_sleep(10) /* ' || '${tag} */'`

const summary = { transactions: 0, mismatches: 0, details: [], backends: new Set(), fields: {} }

function expect(what, got, want) {
  const g = JSON.stringify(got)
  const w = JSON.stringify(want)
  if (g !== w) {
    summary.mismatches += 1
    summary.details.push(`${what}: got ${g}, want ${w}`)
    console.error(`MISMATCH ${what}: got ${g}, want ${w}`)
  }
}

function require_(condition, message) {
  if (!condition) throw new Error(message)
}

function config(tenant, app, extra = {}) {
  const t = TENANTS[tenant]
  return {
    host: HOST,
    port: PORT,
    database: DBNAME,
    user: USER,
    application_name: app,
    connectionTimeoutMillis: 10000,
    ssl: {
      ca: CA,
      cert: fs.readFileSync(t.cert),
      key: fs.readFileSync(t.key),
      rejectUnauthorized: true,
      servername: 'localhost',
    },
    ...extra,
  }
}

async function connect(tenant, app, extra) {
  const client = new pg.Client(config(tenant, app, extra))
  client.on('error', (err) => console.error(`client ${app} error: ${err.message}`))
  await client.connect()
  return client
}

async function who(client, what, tenant) {
  const { rows } = await client.query(WHO_SQL)
  summary.transactions += 1
  expect(`${what} identity`, rows[0].who, TENANTS[tenant].id)
  expect(`${what} visible rows`, rows[0].n, TENANTS[tenant].rows)
}

async function pollCount(what, client, sql, want, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { rows } = await client.query(sql)
    if (rows[0].n === want) return
    require_(Date.now() < deadline, `timed out waiting for ${what} (last ${rows[0].n})`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function isolation(conns) {
  for (const [name, [client, tenant]] of Object.entries(conns)) {
    await who(client, `${name} first query`, tenant)
    const { rows } = await client.query('SELECT title FROM documents ORDER BY title')
    summary.transactions += 1
    expect(`${name} titles`, rows.map((r) => r.title), TITLES[tenant])
  }
}

async function preparedAcrossBackends(a1, holders, b2) {
  for (let i = 0; i < PREPARED_ROUNDS; i++) {
    const held = holders.slice(0, i % 3)
    const holderPids = new Set()
    for (const [name, client, tenant] of held) {
      await client.query('BEGIN')
      const { rows } = await client.query(HOLD_SQL)
      expect(`holder ${name} identity (round ${i})`, rows[0].who, TENANTS[tenant].id)
      holderPids.add(rows[0].pid)
    }
    await a1.query('BEGIN')
    const { rows } = await a1.query({ name: 'drv_prepared', text: PREPARED_SQL, values: [`round ${i}`] })
    const lookup = await a1.query(LOOKUP_SQL)
    await a1.query('COMMIT')
    summary.transactions += 1
    const row = rows[0]
    summary.backends.add(row.pid)
    expect(`prepared identity (round ${i})`, row.who, TENANTS.A.id)
    expect(`prepared application_name (round ${i})`, row.app, 'drv-node-a1')
    expect(`prepared visible rows (round ${i})`, row.n, 2)
    expect(`statement prepared on backend ${row.pid} (round ${i})`, lookup.rows[0].n, 1)
    require_(!holderPids.has(row.pid), `a1 ran on backend ${row.pid} held by another client`)
    for (const [, client] of held) {
      await client.query('COMMIT')
      summary.transactions += 1
    }
    if (i % 4 === 0) {
      // The other tenant uses the same statement name and text on its own connection.
      const b = await b2.query({ name: 'drv_prepared', text: PREPARED_SQL, values: [`b round ${i}`] })
      summary.transactions += 1
      expect(`b2 same statement identity (round ${i})`, b.rows[0].who, TENANTS.B.id)
      expect(`b2 same statement rows (round ${i})`, b.rows[0].n, 1)
      expect(`b2 application_name (round ${i})`, b.rows[0].app, 'drv-node-b2')
    }
  }
  summary.fields.prepared_rounds = PREPARED_ROUNDS
}

async function cancel(client, poller, tenant) {
  const tag = 'node_cancel'
  const query = new pg.Query(sleepSql(tag))
  const outcome = new Promise((resolve) => {
    query.on('error', (err) => resolve({ err, at: Date.now() }))
    query.on('end', () => resolve({ err: null, at: Date.now() }))
  })
  client.query(query)
  await pollCount('the sleep to be active', poller, activeSleepSql(tag), 1)
  const sent = Date.now()
  // node-postgres cancels through a second Client with the same address: it opens a plain TCP
  // connection and writes CancelRequest with the first client's key.
  const canceller = new pg.Client({ host: HOST, port: PORT })
  canceller.cancel(client, query)
  const { err, at } = await outcome
  require_(err !== null, 'the sleep was not cancelled')
  require_(err.code === '57014', `cancel gave ${err.code}: ${err.message}`)
  const took = at - sent
  require_(took < 1000, `cancel took ${took} ms`)
  summary.fields.cancel_plain_ms = took
  await who(client, 'after cancel', tenant)
}

async function copyBothWays(a1, b1) {
  const lines = []
  for (let n = 0; n < 50; n++) lines.push(`${DRIVER}\t${n}\trow ${n}\n`)
  const sink = a1.query(copyStreams.from(`COPY ${SCRATCH} (driver, n, label) FROM STDIN`))
  await pipeline(Readable.from(lines), sink)
  summary.transactions += 1
  require_(sink.rowCount === 50, `COPY FROM reported ${sink.rowCount} rows`)
  const { rows } = await a1.query(
    `SELECT count(*)::int AS n, sum(n)::int AS total FROM ${SCRATCH} WHERE driver = $1`,
    [DRIVER],
  )
  summary.transactions += 1
  require_(rows[0].n === 50 && rows[0].total === 1225, `COPY FROM stored ${JSON.stringify(rows[0])}`)
  summary.fields.copy_in_rows = rows[0].n
  for (const [client, tenant] of [
    [a1, 'A'],
    [b1, 'B'],
  ]) {
    const chunks = []
    const source = client.query(copyStreams.to('COPY documents (title) TO STDOUT'))
    await pipeline(
      source,
      new Writable({
        write(chunk, _enc, done) {
          chunks.push(chunk)
          done()
        },
      }),
    )
    summary.transactions += 1
    const titles = Buffer.concat(chunks).toString().split('\n').filter(Boolean).sort()
    expect(`COPY TO as ${tenant}`, titles, TITLES[tenant])
  }
  summary.fields.copy_out_checked = 2
}

async function errorThenRollback(client) {
  await client.query('BEGIN')
  let err = await client.query('SELECT 1/0').then(() => null, (e) => e)
  require_(err && err.code === '22012', `1/0 gave ${err && err.code}`)
  err = await client.query('SELECT 1').then(() => null, (e) => e)
  require_(err && err.code === '25P02', `after the error: ${err && err.code}`)
  await client.query('ROLLBACK')
  summary.transactions += 1
  await who(client, 'after ROLLBACK', 'A')
  summary.fields.error_rollback = 1
}

async function pipelined() {
  // pipeline: true sends every queued query at once, each with its own Sync.
  const client = await connect('A', 'drv-node-pipeline', { pipeline: true })
  const queries = []
  for (let i = 0; i < 5; i++) {
    queries.push(client.query({ name: 'drv_prepared', text: PREPARED_SQL, values: [`pipeline ${i}`] }))
  }
  queries.push(client.query('BEGIN'))
  for (let n = 0; n < 3; n++) {
    queries.push(
      client.query(`INSERT INTO ${SCRATCH} (driver, n, label) VALUES ($1, $2, $3)`, [
        'node-pipeline',
        n,
        'in a pipelined transaction',
      ]),
    )
  }
  queries.push(client.query(WHO_SQL))
  queries.push(client.query('COMMIT'))
  const failing = client.query('SELECT 1/0').then(() => null, (e) => e)
  queries.push(client.query(`SELECT count(*)::int AS n FROM ${SCRATCH} WHERE driver = 'node-pipeline'`))
  const results = await Promise.all(queries)
  summary.transactions += 8
  for (let i = 0; i < 5; i++) {
    const row = results[i].rows[0]
    summary.backends.add(row.pid)
    expect(`pipeline statement ${i} identity`, row.who, TENANTS.A.id)
    expect(`pipeline statement ${i} rows`, row.n, 2)
  }
  expect('pipelined transaction identity', results[9].rows[0].who, TENANTS.A.id)
  expect('pipelined transaction rows', results[9].rows[0].n, 2)
  const err = await failing
  require_(err && err.code === '22012', `the pipelined 1/0 gave ${err && err.code}`)
  expect('rows stored by the pipelined transaction', results[11].rows[0].n, 3)
  await who(client, 'pipeline after its error', 'A')
  await client.end()
  summary.fields.pipeline_statements = 13
}

async function directTls() {
  const client = await connect('B', 'drv-node-direct', { sslnegotiation: 'direct' })
  require_(client.connection.stream.encrypted === true, 'direct connection without TLS')
  require_(
    client.connection.stream.alpnProtocol === 'postgresql',
    `ALPN ${client.connection.stream.alpnProtocol}`,
  )
  await who(client, 'direct TLS', 'B')
  await client.end()
  summary.fields.direct_tls = 1
}

async function listenPins(a1) {
  // LISTEN pins the client to its backend; a NOTIFY from another client reaches it while idle.
  const listener = await connect('B', 'drv-node-listener')
  const received = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no notification within 5 s')), 5000)
    listener.on('notification', (msg) => {
      clearTimeout(timer)
      resolve(msg)
    })
  })
  await listener.query('LISTEN drv_node_channel')
  const pinned = (await listener.query(HOLD_SQL)).rows[0].pid
  for (let i = 0; i < 3; i++) {
    const { rows } = await a1.query(HOLD_SQL)
    summary.transactions += 1
    require_(rows[0].pid !== pinned, `a1 ran on the listener's pinned backend ${pinned}`)
    const again = (await listener.query(HOLD_SQL)).rows[0]
    summary.transactions += 1
    expect(`listener backend (round ${i})`, again.pid, pinned)
    expect(`listener identity (round ${i})`, again.who, TENANTS.B.id)
  }
  await a1.query("NOTIFY drv_node_channel, 'from tenant A'")
  summary.transactions += 1
  const msg = await received
  expect('notification', [msg.channel, msg.payload], ['drv_node_channel', 'from tenant A'])
  await listener.end()
  summary.fields.listen_notify = 1
}

async function refusedStartupParameter() {
  // node-postgres sends statement_timeout as a startup parameter; pgcordon carries only the
  // session parameters it tracks and refuses the others at startup.
  let err = null
  try {
    const client = await connect('A', 'drv-node-refused', { statement_timeout: 1000 })
    await client.end()
  } catch (e) {
    err = e
  }
  require_(err !== null, 'a statement_timeout startup parameter was accepted')
  require_(err.code === '0A000', `statement_timeout at startup gave ${err.code}: ${err.message}`)
  require_(/statement_timeout/.test(err.message), `message: ${err.message}`)
  summary.fields.refused_startup_parameter = 1
}

async function main() {
  summary.fields.pg = require('pg/package.json').version
  const a1 = await connect('A', 'drv-node-a1')
  const a2 = await connect('A', 'drv-node-a2')
  const b1 = await connect('B', 'drv-node-b1')
  const b2 = await connect('B', 'drv-node-b2')
  await isolation({ a1: [a1, 'A'], a2: [a2, 'A'], b1: [b1, 'B'], b2: [b2, 'B'] })
  await preparedAcrossBackends(
    a1,
    [
      ['a2', a2, 'A'],
      ['b1', b1, 'B'],
    ],
    b2,
  )
  await cancel(a2, b1, 'A')
  await copyBothWays(a1, b1)
  await errorThenRollback(a2)
  await pipelined()
  await listenPins(a1)
  await directTls()
  await refusedStartupParameter()
  for (const c of [a1, a2, b1, b2]) await c.end()
  const line = {
    driver: DRIVER,
    transactions: summary.transactions,
    mismatches: summary.mismatches,
    backends_used: summary.backends.size,
    ...summary.fields,
  }
  if (summary.details.length) line.mismatch_details = summary.details.join('; ').slice(0, 2000)
  console.log(JSON.stringify(line))
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : err)
  process.exit(1)
})
