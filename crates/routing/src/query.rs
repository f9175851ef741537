//! One simple-protocol query on an idle upstream session, for the few values routing reads
//! itself: recovery state and WAL positions.
//!
//! Owns sending a Query message and reading the answer up to ReadyForQuery ("Simple Query" in
//! the protocol chapter of the PostgreSQL documentation), keeping the text values of the first
//! row. It does not forward anything to clients and accepts only the messages a plain SELECT
//! can produce; anything else means the session is not what we think, and is an error.

use bytes::BytesMut;
use pgcordon_upstream::Backend;
use pgcordon_wire::decode_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::CheckError;
use crate::lsn::Lsn;

/// Largest server message accepted in an answer. The values read here are a few bytes; an error
/// with a long detail still fits, and a larger frame means the session is confused.
const MAX_ANSWER_MESSAGE: usize = 1 << 20;

/// Runs `sql` on the idle session `backend` and returns the text values of the first row (empty
/// when there was none). The session is idle again when this returns `Ok`.
///
/// # Errors
/// I/O failures, a server ErrorResponse, a message a SELECT cannot produce, or a session that is
/// not idle at the end; each names `target`.
pub(crate) async fn first_row(
    backend: &mut Backend,
    sql: &str,
    target: &str,
) -> Result<Vec<Option<String>>, CheckError> {
    let io = |source| CheckError::Io {
        target: target.to_owned(),
        source,
    };
    let protocol = |detail: String| CheckError::Protocol {
        target: target.to_owned(),
        detail,
    };

    let mut out = BytesMut::new();
    postgres_protocol::message::frontend::query(sql, &mut out).map_err(io)?;
    backend.stream.write_all(&out).await.map_err(io)?;
    backend.stream.flush().await.map_err(io)?;

    let mut row = None;
    let mut server_error = None;
    loop {
        let message = match decode_frame(&mut backend.read_buf, MAX_ANSWER_MESSAGE) {
            Ok(Some(message)) => message,
            Ok(None) => {
                let read = backend.stream.read_buf(&mut backend.read_buf).await;
                if read.map_err(io)? == 0 {
                    return Err(protocol("the server closed the session".into()));
                }
                continue;
            }
            Err(e) => return Err(protocol(e.to_string())),
        };

        match message.tag {
            b'D' if row.is_none() => {
                let values =
                    data_row(message.body()).ok_or_else(|| protocol("malformed DataRow".into()))?;
                row = Some(values);
            }
            b'E' => {
                let fields = pgcordon_wire::inspect::error_fields(message.body());
                server_error = Some(CheckError::Server {
                    target: target.to_owned(),
                    code: fields.code.unwrap_or_else(|| "XX000".into()),
                    message: fields.message.unwrap_or_default(),
                });
            }
            // Row description, further rows, completion, empty query, notices, parameter
            // changes and notifications carry nothing routing needs.
            b'T' | b'D' | b'C' | b'I' | b'N' | b'S' | b'A' => {}
            b'Z' => {
                if let Some(error) = server_error {
                    return Err(error);
                }
                if message.body() != b"I" {
                    return Err(protocol("the session is not idle after the query".into()));
                }
                return Ok(row.unwrap_or_default());
            }
            other => {
                let detail = format!("unexpected message {:?} in a query answer", other as char);
                return Err(protocol(detail));
            }
        }
    }
}

/// The primary's current WAL write position, read with `pg_current_wal_lsn()` on an idle
/// session of the primary.
///
/// For read-your-writes, run it on the session that has just committed a client's write, after
/// that client's ReadyForQuery has been forwarded and before the session returns to the pool:
/// the client's reply is not delayed, and the position is at or after the commit record (a
/// commit is written before it is acknowledged). Record the result in
/// [`WriteLsns`](crate::WriteLsns).
///
/// # Errors
/// As [`first_row`]; on a server in recovery the server refuses (SQLSTATE 55000).
pub async fn current_wal_lsn(backend: &mut Backend, target: &str) -> Result<Lsn, CheckError> {
    let row = first_row(backend, "SELECT pg_current_wal_lsn()", target).await?;
    let text = row.first().and_then(|v| v.as_deref()).ok_or_else(|| {
        let detail = "pg_current_wal_lsn() returned no value".to_owned();
        CheckError::Protocol {
            target: target.to_owned(),
            detail,
        }
    })?;
    text.parse().map_err(|e: crate::lsn::LsnParseError| {
        let detail = e.to_string();
        CheckError::Protocol {
            target: target.to_owned(),
            detail,
        }
    })
}

/// The text values of a DataRow body (`None` for SQL NULL), or `None` when the body is
/// truncated or its counts do not add up.
fn data_row(body: &[u8]) -> Option<Vec<Option<String>>> {
    let (count, mut rest) = body.split_first_chunk::<2>()?;
    let count = u16::from_be_bytes(*count);
    let mut values = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = i32::from_be_bytes(*len);
        rest = tail;
        // A length of -1 is NULL; other negative lengths are malformed.
        let Ok(len) = usize::try_from(len) else {
            if len != -1 {
                return None;
            }
            values.push(None);
            continue;
        };
        if rest.len() < len {
            return None;
        }
        let (value, tail) = rest.split_at(len);
        values.push(Some(String::from_utf8_lossy(value).into_owned()));
        rest = tail;
    }
    rest.is_empty().then_some(values)
}

#[cfg(test)]
mod tests {
    use super::data_row;

    fn encode(values: &[Option<&str>]) -> Vec<u8> {
        let mut body = (values.len() as u16).to_be_bytes().to_vec();
        for value in values {
            match value {
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(v.as_bytes());
                }
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        body
    }

    #[test]
    fn reads_values_and_nulls() {
        let body = encode(&[Some("t"), None, Some("0/3000060"), Some("")]);
        let row = data_row(&body).unwrap();
        assert_eq!(
            row,
            vec![
                Some("t".to_owned()),
                None,
                Some("0/3000060".to_owned()),
                Some(String::new())
            ]
        );
    }

    #[test]
    fn refuses_truncated_or_inconsistent_rows() {
        let body = encode(&[Some("abc"), Some("def")]);
        for cut in 0..body.len() {
            assert_eq!(data_row(&body[..cut]), None, "cut at {cut}");
        }
        let mut extra = body.clone();
        extra.push(0);
        assert_eq!(data_row(&extra), None);
        let mut negative = encode(&[Some("x")]);
        negative[2..6].copy_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(data_row(&negative), None);
    }
}
