//! Micro benchmarks of message framing and the body readers the proxy calls per message.
//!
//! Two batches stand for one extended-protocol round trip: what a driver sends for a one-shot
//! parameterised query plus a simple Query, and what the server answers (ParseComplete,
//! BindComplete, RowDescription, twenty DataRows, CommandComplete, ReadyForQuery). Each batch is
//! framed three ways over the same bytes:
//!
//! - `split_freeze` (the baseline): `BytesMut::split_to(len).freeze()` at lengths known in
//!   advance, so no header is read and nothing is checked; the floor for any framing that keeps
//!   bodies as `Bytes`;
//! - `decode_frame`: `pgcordon_wire::decode_frame` until it asks for more bytes, as the
//!   session loops do;
//! - `decode_and_inspect`: the same, plus the `inspect` reader the session applies to each tag.
//!
//! The `inspect` group times each reader alone on a typical body. See docs/benchmarks-micro.md.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pgcordon_wire::{decode_frame, inspect};

/// The default `limits.max_frame_bytes` (16 MiB), the limit the client loop passes.
const MAX_FRAME: usize = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Building messages

/// A batch of encoded messages and the total length (tag included) of each one.
struct Batch {
    bytes: Vec<u8>,
    lengths: Vec<usize>,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            bytes: Vec::new(),
            lengths: Vec::new(),
        }
    }

    fn push(&mut self, tag: u8, body: &[u8]) {
        let len = i32::try_from(body.len() + 4).expect("bench bodies are small");
        self.bytes.push(tag);
        self.bytes.extend_from_slice(&len.to_be_bytes());
        self.bytes.extend_from_slice(body);
        self.lengths.push(body.len() + 5);
    }

    fn count(&self) -> u64 {
        self.lengths.len() as u64
    }
}

/// A body assembled field by field, in the protocol's big-endian encodings.
#[derive(Default)]
struct Body(Vec<u8>);

impl Body {
    fn cstr(mut self, text: &str) -> Body {
        self.0.extend_from_slice(text.as_bytes());
        self.0.push(0);
        self
    }

    fn i16(mut self, value: i16) -> Body {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    fn i32(mut self, value: i32) -> Body {
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }

    fn byte(mut self, value: u8) -> Body {
        self.0.push(value);
        self
    }

    /// A length-prefixed value, as in Bind parameters and DataRow columns.
    fn value(self, value: &[u8]) -> Body {
        let len = i32::try_from(value.len()).expect("bench values are small");
        let mut body = self.i32(len);
        body.0.extend_from_slice(value);
        body
    }
}

const SELECT_BY_ID: &str =
    "SELECT id, email, created_at FROM accounts WHERE tenant_id = $1 AND id = $2";

/// Parse, Bind, Describe, Execute and Sync of a two-parameter query, then a simple Query.
fn client_batch() -> Batch {
    let mut batch = Batch::new();
    let parse = Body::default()
        .cstr("")
        .cstr(SELECT_BY_ID)
        .i16(2)
        .i32(2950) // uuid
        .i32(20); // int8
    batch.push(b'P', &parse.0);
    let bind = Body::default()
        .cstr("")
        .cstr("")
        .i16(1)
        .i16(1) // every parameter binary
        .i16(2)
        .value(&[0x5a; 16])
        .value(&42i64.to_be_bytes())
        .i16(1)
        .i16(1); // every result column binary
    batch.push(b'B', &bind.0);
    batch.push(b'D', &Body::default().byte(b'P').cstr("").0);
    batch.push(b'E', &Body::default().cstr("").i32(0).0);
    batch.push(b'S', &[]);
    let query = Body::default()
        .cstr("SELECT count(*) FROM orders WHERE placed_at > now() - '1 day'::interval");
    batch.push(b'Q', &query.0);
    batch
}

/// Twenty rows of the query above, framed as the server sends them.
const ROWS: usize = 20;

fn server_batch() -> Batch {
    let mut batch = Batch::new();
    batch.push(b'1', &[]);
    batch.push(b'2', &[]);
    let mut row_description = Body::default().i16(3);
    for (name, type_oid, size) in [("id", 20, 8), ("email", 25, -1), ("created_at", 1184, 8)] {
        row_description = row_description
            .cstr(name)
            .i32(16_402) // table OID
            .i16(1) // column number
            .i32(type_oid)
            .i16(size)
            .i32(-1) // type modifier
            .i16(1); // binary
    }
    batch.push(b'T', &row_description.0);
    for i in 0..ROWS {
        let email = format!("user{i:04}@tenant-a.example.org");
        let row = Body::default()
            .i16(3)
            .value(&(i as i64).to_be_bytes())
            .value(email.as_bytes())
            .value(&(789_000_000_000_000i64 + i as i64).to_be_bytes());
        batch.push(b'D', &row.0);
    }
    batch.push(b'C', &Body::default().cstr(&format!("SELECT {ROWS}")).0);
    batch.push(b'Z', b"I");
    batch
}

/// A unique-violation ErrorResponse with the fields PostgreSQL 15 sends for it.
fn error_body() -> Vec<u8> {
    Body::default()
        .byte(b'S')
        .cstr("ERROR")
        .byte(b'V')
        .cstr("ERROR")
        .byte(b'C')
        .cstr("23505")
        .byte(b'M')
        .cstr("duplicate key value violates unique constraint \"accounts_email_key\"")
        .byte(b'D')
        .cstr("Key (email)=(user0001@tenant-a.example.org) already exists.")
        .byte(b's')
        .cstr("public")
        .byte(b't')
        .cstr("accounts")
        .byte(b'n')
        .cstr("accounts_email_key")
        .byte(b'F')
        .cstr("nbtinsert.c")
        .byte(b'L')
        .cstr("664")
        .byte(b'R')
        .cstr("_bt_check_unique")
        .byte(0)
        .0
}

// ---------------------------------------------------------------------------------------------
// Framing

/// What the session reads from each client message before acting on it.
fn inspect_client(tag: u8, body: &[u8]) -> usize {
    match tag {
        b'Q' => inspect::query_text(body).map_or(0, <[u8]>::len),
        b'P' => inspect::parse_head(body).map_or(0, |(name, text)| name.len() + text.len()),
        b'B' => inspect::bind_head(body).map_or(0, |(portal, name)| portal.len() + name.len()),
        b'D' | b'C' => {
            inspect::target_of(body).map_or(0, |(kind, name)| kind as usize + name.len())
        }
        _ => 0,
    }
}

/// What the session reads from each server message before forwarding it.
fn inspect_server(tag: u8, body: &[u8]) -> usize {
    match tag {
        b'Z' => inspect::ready_status(body).map_or(0, usize::from),
        b'C' => usize::from(body.starts_with(b"ROLLBACK")),
        b'E' => inspect::error_fields(body).code.map_or(0, |c| c.len()),
        _ => 0,
    }
}

fn bench_batch(c: &mut Criterion, name: &str, batch: &Batch, inspect_one: fn(u8, &[u8]) -> usize) {
    let mut group = c.benchmark_group(format!("framing/{name}"));
    group.throughput(Throughput::Elements(batch.count()));
    let fresh = || BytesMut::from(&batch.bytes[..]);

    group.bench_function("split_freeze", |b| {
        b.iter_batched(
            fresh,
            |mut buf| {
                for &len in &batch.lengths {
                    black_box(buf.split_to(len).freeze());
                }
            },
            BatchSize::SmallInput,
        )
    });

    group.bench_function("decode_frame", |b| {
        b.iter_batched(
            fresh,
            |mut buf| {
                while let Some(msg) = decode_frame(&mut buf, MAX_FRAME).expect("valid batch") {
                    black_box(msg);
                }
            },
            BatchSize::SmallInput,
        )
    });

    group.bench_function("decode_and_inspect", |b| {
        b.iter_batched(
            fresh,
            |mut buf| {
                let mut seen = 0;
                while let Some(msg) = decode_frame(&mut buf, MAX_FRAME).expect("valid batch") {
                    seen += inspect_one(msg.tag, msg.body());
                    black_box(msg);
                }
                seen
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn framing(c: &mut Criterion) {
    let client = client_batch();
    let server = server_batch();
    eprintln!(
        "framing: client batch {} messages / {} bytes, server batch {} messages / {} bytes",
        client.count(),
        client.bytes.len(),
        server.count(),
        server.bytes.len()
    );
    bench_batch(c, "client", &client, inspect_client);
    bench_batch(c, "server", &server, inspect_server);
}

// ---------------------------------------------------------------------------------------------
// Readers

/// The body of the first message with `tag` in `batch`.
fn body_of(batch: &Batch, tag: u8) -> Vec<u8> {
    let mut at = 0;
    for &len in &batch.lengths {
        if batch.bytes[at] == tag {
            return batch.bytes[at + 5..at + len].to_vec();
        }
        at += len;
    }
    panic!("no message {:?} in the batch", tag as char);
}

fn readers(c: &mut Criterion) {
    let client = client_batch();
    let server = server_batch();
    let query = body_of(&client, b'Q');
    let parse = body_of(&client, b'P');
    let bind = body_of(&client, b'B');
    let describe = body_of(&client, b'D');
    let ready = body_of(&server, b'Z');
    let complete = body_of(&server, b'C');
    let error = error_body();

    let mut group = c.benchmark_group("inspect");
    group.bench_function("query_text", |b| {
        b.iter(|| inspect::query_text(black_box(&query)))
    });
    group.bench_function("parse_head", |b| {
        b.iter(|| inspect::parse_head(black_box(&parse)))
    });
    group.bench_function("bind_head", |b| {
        b.iter(|| inspect::bind_head(black_box(&bind)))
    });
    group.bench_function("target_of", |b| {
        b.iter(|| inspect::target_of(black_box(&describe)))
    });
    group.bench_function("ready_status", |b| {
        b.iter(|| inspect::ready_status(black_box(&ready)))
    });
    group.bench_function("command_tag", |b| {
        b.iter(|| inspect::command_tag(black_box(&complete)))
    });
    group.bench_function("error_fields", |b| {
        b.iter(|| inspect::error_fields(black_box(&error)))
    });
    group.finish();
}

criterion_group!(benches, framing, readers);
criterion_main!(benches);
