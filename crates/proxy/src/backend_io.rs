//! I/O helpers for backend sessions: writing while draining, and the few simple queries pgcordon
//! runs itself (learning server defaults, resetting a session before it returns to the pool).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use bytes::BytesMut;
use pgcordon_pool::PooledBackend;
use pgcordon_wire::decode_frame;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Backend output buffered while a write is in progress, beyond which pgcordon stops reading
/// until the client has taken some of it (backpressure instead of unbounded memory).
const MAX_BUFFERED_DURING_WRITE: usize = 4 << 20;

/// Largest backend message pgcordon accepts. PostgreSQL's own limit for a single field is 1 GiB.
pub const MAX_BACKEND_MESSAGE: usize = (1 << 30) + 1024;

/// Writes `data` to `stream` and flushes it, reading whatever the server sends meanwhile into
/// `read_buf`. Reading while writing prevents the deadlock where the server blocks on sending us
/// results while we block on sending it more input.
///
/// # Errors
/// The first I/O error, or end of stream while writing.
pub async fn write_draining<S>(
    stream: &mut S,
    data: &[u8],
    read_buf: &mut BytesMut,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut written = 0;
    let mut eof = false;
    poll_fn(|cx| {
        loop {
            if written < data.len() {
                match Pin::new(&mut *stream).poll_write(cx, &data[written..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => {
                        written += n;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            } else {
                match Pin::new(&mut *stream).poll_flush(cx) {
                    Poll::Ready(result) => return Poll::Ready(result),
                    Poll::Pending => {}
                }
            }
            // Blocked on writing: take in what the server has to say meanwhile.
            if eof || read_buf.len() >= MAX_BUFFERED_DURING_WRITE {
                return Poll::Pending;
            }
            read_buf.reserve(8192);
            let spare = read_buf.spare_capacity_mut();
            let mut rb = ReadBuf::uninit(spare);
            match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        eof = true;
                        return Poll::Pending;
                    }
                    // SAFETY: poll_read initialised the first `n` bytes of the spare capacity.
                    unsafe { read_buf.set_len(read_buf.len() + n) };
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await
}

/// Runs one simple query on an idle backend and returns the first row's text values.
/// Any error, or anything other than an idle ReadyForQuery at the end, is an error.
///
/// # Errors
/// I/O errors and server errors (with their SQLSTATE and message).
pub async fn simple_query(
    backend: &mut PooledBackend,
    sql: &str,
) -> Result<Vec<Option<String>>, std::io::Error> {
    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut out)?;
    backend.backend.stream.write_all(&out).await?;
    backend.backend.stream.flush().await?;

    let mut first_row = None;
    let mut failure = None;
    loop {
        let b = &mut backend.backend;
        let msg = loop {
            match decode_frame(&mut b.read_buf, MAX_BACKEND_MESSAGE) {
                Ok(Some(msg)) => break msg,
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e)),
            }
            if tokio::io::AsyncReadExt::read_buf(&mut b.stream, &mut b.read_buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        };
        match msg.tag {
            b'D' if first_row.is_none() => first_row = Some(data_row(msg.body())),
            b'E' => {
                let f = pgcordon_wire::inspect::error_fields(msg.body());
                failure = Some(format!(
                    "{} {}",
                    f.code.unwrap_or_default(),
                    f.message.unwrap_or_default()
                ));
            }
            b'S' => record_parameter(&mut backend.params, msg.body()),
            b'Z' => {
                let idle = msg.body() == b"I";
                return match (failure, idle) {
                    (Some(f), _) => Err(std::io::Error::other(f)),
                    (None, false) => Err(std::io::Error::other("session not idle after query")),
                    (None, true) => Ok(first_row.unwrap_or_default()),
                };
            }
            _ => {}
        }
    }
}

/// Records a ParameterStatus body into `params`.
pub fn record_parameter(params: &mut std::collections::BTreeMap<String, String>, body: &[u8]) {
    let mut parts = body.split(|b| *b == 0);
    let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
        return;
    };
    params.insert(
        String::from_utf8_lossy(name).into_owned(),
        String::from_utf8_lossy(value).into_owned(),
    );
}

fn data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut values = Vec::new();
    let Some(count) = body.get(..2) else {
        return values;
    };
    let count = u16::from_be_bytes([count[0], count[1]]);
    let mut rest = &body[2..];
    for _ in 0..count {
        let Some(len) = rest.get(..4) else { break };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        rest = &rest[4..];
        if len < 0 {
            values.push(None);
            continue;
        }
        let Some(value) = rest.get(..len as usize) else {
            break;
        };
        values.push(Some(String::from_utf8_lossy(value).into_owned()));
        rest = &rest[len as usize..];
    }
    values
}
