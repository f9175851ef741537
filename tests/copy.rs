//! COPY through pgcordon under transaction pooling: 100 MB streams both ways in text and
//! binary with the proxy's memory bounded, CopyFail from the client, and an error in the
//! middle of a COPY FROM STDIN; the connection stays usable after each.
//!
//! The proxy runs in this process, so its memory is the process's: the client side generates
//! and checks rows on the fly, never holding a whole stream, and the resident set is sampled
//! while the streams run.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use pgcordon_devkit::stack::APP_ROLE;
use pgcordon_e2e::hostile::rss_kib;
use pgcordon_e2e::{sqlstate, Harness, Tenant, POOL_TX};
use tokio::sync::watch;

/// Size of each stream.
const STREAM_BYTES: usize = 100 * 1024 * 1024;
/// Payload bytes of a binary row.
const PAYLOAD: usize = 90;
/// Rows per chunk sent to the sink.
const ROWS_PER_CHUNK: usize = 512;
/// How much the process may grow while a 100 MB stream passes. The proxy reads and forwards
/// messages as they come, with buffers in kilobytes; a proxy that gathered a stream would grow
/// by the stream's size.
const GROWTH_LIMIT_KIB: u64 = 32 * 1024;

/// Samples the resident set every 50 ms until told to stop; returns the peak.
fn watch_rss() -> (watch::Sender<bool>, tokio::task::JoinHandle<u64>) {
    let (stop, mut stopped) = watch::channel(false);
    let peak = tokio::spawn(async move {
        let mut peak = rss_kib();
        loop {
            peak = peak.max(rss_kib());
            tokio::select! {
                _ = stopped.changed() => return peak.max(rss_kib()),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });
    (stop, peak)
}

/// A text row of exactly 100 bytes, as COPY TO STDOUT writes it back: the id in decimal, a
/// tab, a payload padded to the row length, a newline.
fn text_row(id: u64, out: &mut BytesMut) {
    let id_text = id.to_string();
    out.put_slice(id_text.as_bytes());
    out.put_u8(b'\t');
    let fill = b'a' + (id % 26) as u8;
    out.put_bytes(fill, 100 - id_text.len() - 2);
    out.put_u8(b'\n');
}

/// Binary COPY rows (int8, text) after the 19-byte header.
fn binary_row(id: u64, out: &mut BytesMut) {
    out.put_i16(2);
    out.put_i32(8);
    out.put_i64(id as i64);
    out.put_i32(PAYLOAD as i32);
    out.put_bytes(b'a' + (id % 26) as u8, PAYLOAD);
}

const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

async fn setup() -> (Harness, tokio_postgres::Client) {
    let h = Harness::start(POOL_TX).await;
    h.admin(&format!(
        "CREATE TABLE copy_sink (id bigint NOT NULL, payload text NOT NULL); \
         GRANT SELECT, INSERT, DELETE, TRUNCATE ON copy_sink TO {APP_ROLE};"
    ));
    let client = h.connect(Tenant::A).await;
    (h, client)
}

/// Streams `rows` rows into copy_sink with `row` as the encoder; returns rows and bytes sent.
async fn copy_in(
    client: &tokio_postgres::Client,
    sql: &str,
    header: &[u8],
    rows: u64,
    row: fn(u64, &mut BytesMut),
    trailer: &[u8],
) -> Result<u64, tokio_postgres::Error> {
    let sink = client.copy_in::<_, Bytes>(sql).await?;
    futures_util::pin_mut!(sink);
    let mut chunk = BytesMut::with_capacity(64 * 1024);
    chunk.put_slice(header);
    for id in 0..rows {
        row(id, &mut chunk);
        if (id + 1) % ROWS_PER_CHUNK as u64 == 0 {
            sink.send(chunk.split().freeze()).await?;
        }
    }
    chunk.put_slice(trailer);
    sink.send(chunk.freeze()).await?;
    sink.as_mut().finish().await
}

/// Text COPY FROM STDIN of `rows` rows made by `row`.
async fn copy_text(
    client: &tokio_postgres::Client,
    rows: u64,
    row: fn(u64, &mut BytesMut),
) -> Result<u64, tokio_postgres::Error> {
    copy_in(client, "COPY copy_sink FROM STDIN", b"", rows, row, b"").await
}

async fn rows_in_sink(client: &tokio_postgres::Client, when: &str) -> i64 {
    client
        .query_one("SELECT count(*) FROM copy_sink", &[])
        .await
        .unwrap_or_else(|e| panic!("count rows {when}: {e}"))
        .get(0)
}

/// Reads a COPY TO STDOUT stream, checking every text row; returns (rows, bytes).
async fn copy_out_text(client: &tokio_postgres::Client) -> (u64, usize) {
    let stream = client
        .copy_out("COPY (SELECT id, payload FROM copy_sink ORDER BY id) TO STDOUT")
        .await
        .expect("copy out");
    futures_util::pin_mut!(stream);
    let (mut rows, mut bytes, mut pending) = (0u64, 0usize, BytesMut::new());
    let mut expected = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.expect("copy data");
        bytes += chunk.len();
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line = pending.split_to(end + 1);
            expected.clear();
            text_row(rows, &mut expected);
            assert_eq!(&line[..], &expected[..], "row {rows} came back unchanged");
            rows += 1;
        }
    }
    assert!(pending.is_empty(), "the stream ended inside a row");
    (rows, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabyte_copies_both_ways_with_bounded_memory() {
    let (_h, client) = setup().await;
    let rows = (STREAM_BYTES / 100) as u64;
    let before = rss_kib();

    // Text COPY FROM STDIN.
    let (stop, peak) = watch_rss();
    let copied = copy_text(&client, rows, text_row)
        .await
        .expect("text copy in");
    stop.send(true).expect("stop sampling");
    let peak_in = peak.await.expect("sampler");
    assert_eq!(copied, rows);

    // Text COPY TO STDOUT of the same rows, each checked.
    let (stop, peak) = watch_rss();
    let (read, bytes) = copy_out_text(&client).await;
    stop.send(true).expect("stop sampling");
    let peak_out = peak.await.expect("sampler");
    assert_eq!(read, rows);
    assert_eq!(bytes, STREAM_BYTES);

    // Binary both ways: the same rows again, then read back in binary and counted.
    client
        .batch_execute("TRUNCATE copy_sink")
        .await
        .expect("truncate");
    let (stop, peak) = watch_rss();
    let copied = copy_in(
        &client,
        "COPY copy_sink FROM STDIN (FORMAT binary)",
        BINARY_HEADER,
        rows,
        binary_row,
        &(-1i16).to_be_bytes(),
    )
    .await
    .expect("binary copy in");
    assert_eq!(copied, rows);
    let stream = client
        .copy_out("COPY copy_sink TO STDOUT (FORMAT binary)")
        .await
        .expect("binary copy out");
    futures_util::pin_mut!(stream);
    let mut binary_bytes = 0usize;
    while let Some(chunk) = stream.next().await {
        binary_bytes += chunk.expect("binary copy data").len();
    }
    stop.send(true).expect("stop sampling");
    let peak_binary = peak.await.expect("sampler");
    // Header, trailer, and per row: field count, two lengths, 8 + PAYLOAD bytes of data.
    let per_row = 2 + 4 + 8 + 4 + PAYLOAD;
    assert_eq!(
        binary_bytes,
        BINARY_HEADER.len() + 2 + per_row * rows as usize
    );

    for (what, peak) in [
        ("text in", peak_in),
        ("text out", peak_out),
        ("binary", peak_binary),
    ] {
        let grew = peak.saturating_sub(before);
        assert!(
            grew < GROWTH_LIMIT_KIB,
            "{what}: the process grew by {grew} KiB while 100 MB streamed"
        );
    }
    let count = rows_in_sink(&client, "count").await;
    assert_eq!(count as u64, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_fail_and_an_error_mid_copy_leave_the_connection_usable() {
    let (h, client) = setup().await;

    // CopyFail: the client gives up in the middle (tokio-postgres sends CopyFail when the sink
    // is dropped unfinished); nothing is inserted.
    {
        let sink = client
            .copy_in::<_, Bytes>("COPY copy_sink FROM STDIN")
            .await
            .expect("copy in");
        futures_util::pin_mut!(sink);
        let mut chunk = BytesMut::new();
        for id in 0..1000 {
            text_row(id, &mut chunk);
        }
        sink.send(chunk.freeze()).await.expect("send rows");
    }
    let count = rows_in_sink(&client, "the connection works after CopyFail").await;
    assert_eq!(count, 0, "an abandoned COPY inserts nothing");

    // A malformed row in the middle: the server's error reaches the client, the COPY is void.
    fn bad_row(id: u64, out: &mut BytesMut) {
        if id == 5000 {
            out.put_slice(b"not-a-number\tx\n");
        } else {
            text_row(id, out);
        }
    }
    let err = copy_text(&client, 20_000, bad_row)
        .await
        .expect_err("a bad row fails the COPY");
    assert_eq!(sqlstate(&err).as_deref(), Some("22P02"), "{err}");

    // Inside an explicit transaction: the error aborts it until ROLLBACK.
    client.batch_execute("BEGIN").await.expect("begin");
    let copied = copy_text(&client, 10, bad_row)
        .await
        .expect("ten good rows copy");
    assert_eq!(copied, 10);
    let err = copy_text(&client, 6000, bad_row)
        .await
        .expect_err("bad row");
    assert_eq!(sqlstate(&err).as_deref(), Some("22P02"));
    let aborted = client.simple_query("SELECT 1").await.expect_err("aborted");
    assert_eq!(sqlstate(&aborted).as_deref(), Some("25P02"));
    client.batch_execute("ROLLBACK").await.expect("rollback");

    let count = rows_in_sink(&client, "usable after the errors").await;
    assert_eq!(count, 0, "failed and rolled-back COPYs leave nothing");
    let who: String = client
        .query_one("SELECT current_setting('app.current_user_id')", &[])
        .await
        .expect("identity")
        .get(0);
    assert_eq!(who, Tenant::A.id());
    drop(h);
}
