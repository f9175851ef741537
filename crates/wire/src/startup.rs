//! The untagged first packets of a connection: SSLRequest, GSSENCRequest, CancelRequest and the
//! StartupMessage. They come from unauthenticated peers, so every length is checked before use.

use bytes::{Buf, BytesMut};

/// PostgreSQL refuses startup packets over 10,000 bytes (`MAX_STARTUP_PACKET_LENGTH`); so do we,
/// which bounds what an unauthenticated peer can make us buffer.
pub const MAX_STARTUP_PACKET: usize = 10_000;

const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;
const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Protocol 3.0, the only major version in use.
pub const PROTOCOL_3_0: i32 = 196_608;

/// Parameters of a StartupMessage, in the order the client sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupParams {
    pub pairs: Vec<(String, String)>,
}

impl StartupParams {
    /// The value of a parameter, if the client sent it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a client sent as its first (or, after SSLRequest and TLS, next) packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstPacket {
    SslRequest,
    GssEncRequest,
    CancelRequest {
        process_id: i32,
        secret_key: Vec<u8>,
    },
    Startup {
        major: u16,
        minor: u16,
        params: StartupParams,
    },
}

/// Why a first packet was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartupError {
    #[error("invalid startup packet length {0}")]
    InvalidLength(i64),
    #[error("startup packet of {0} bytes is over the limit of {MAX_STARTUP_PACKET} bytes")]
    TooLarge(usize),
    #[error("unsupported frontend protocol {major}.{minor}")]
    UnsupportedProtocol { major: u16, minor: u16 },
    #[error("invalid startup packet layout: {0}")]
    Layout(&'static str),
    #[error("startup parameter is not valid UTF-8")]
    NotUtf8,
}

/// Takes one first packet off the front of `buf`, or `None` when more bytes are needed.
///
/// # Errors
/// Lengths outside 8..=10,000, an unknown request code or protocol, a malformed parameter list.
pub fn decode_startup(buf: &mut BytesMut) -> Result<Option<FirstPacket>, StartupError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(StartupError::InvalidLength(len as i64));
    }
    let len = len as usize;
    if len > MAX_STARTUP_PACKET {
        return Err(StartupError::TooLarge(len));
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut packet = buf.split_to(len);
    packet.advance(4);
    let code = packet.get_i32();
    let parsed = match code {
        SSL_REQUEST_CODE if packet.is_empty() => FirstPacket::SslRequest,
        GSSENC_REQUEST_CODE if packet.is_empty() => FirstPacket::GssEncRequest,
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            return Err(StartupError::Layout("trailing bytes"))
        }
        CANCEL_REQUEST_CODE => decode_cancel(&packet)?,
        _ => decode_startup_message(code, &packet)?,
    };
    Ok(Some(parsed))
}

fn decode_cancel(body: &[u8]) -> Result<FirstPacket, StartupError> {
    // Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.
    if body.len() < 8 || body.len() > 4 + 256 {
        return Err(StartupError::Layout("cancel request length"));
    }
    let process_id = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
    Ok(FirstPacket::CancelRequest {
        process_id,
        secret_key: body[4..].to_vec(),
    })
}

fn decode_startup_message(code: i32, body: &[u8]) -> Result<FirstPacket, StartupError> {
    let major = (code >> 16) as u16;
    let minor = (code & 0xffff) as u16;
    if major != 3 {
        return Err(StartupError::UnsupportedProtocol { major, minor });
    }

    // name\0value\0 ... \0: strip the list terminator, then the last value's terminator.
    let Some((&0, list)) = body.split_last() else {
        return Err(StartupError::Layout("parameter list is not terminated"));
    };
    let mut pairs = Vec::new();
    if !list.is_empty() {
        let Some((&0, list)) = list.split_last() else {
            return Err(StartupError::Layout("parameter value is not terminated"));
        };
        let mut fields = list.split(|b| *b == 0);
        while let Some(name) = fields.next() {
            if name.is_empty() {
                return Err(StartupError::Layout("empty parameter name"));
            }
            let Some(value) = fields.next() else {
                return Err(StartupError::Layout("parameter without a value"));
            };
            let name = std::str::from_utf8(name).map_err(|_| StartupError::NotUtf8)?;
            let value = std::str::from_utf8(value).map_err(|_| StartupError::NotUtf8)?;
            pairs.push((name.to_owned(), value.to_owned()));
        }
    }
    Ok(FirstPacket::Startup {
        major,
        minor,
        params: StartupParams { pairs },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, body: &[u8]) -> BytesMut {
        let mut v = BytesMut::new();
        v.extend_from_slice(&((body.len() + 8) as i32).to_be_bytes());
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn decodes_each_request_kind() {
        let mut buf = packet(SSL_REQUEST_CODE, b"");
        assert_eq!(
            decode_startup(&mut buf).unwrap(),
            Some(FirstPacket::SslRequest)
        );
        let mut buf = packet(GSSENC_REQUEST_CODE, b"");
        assert_eq!(
            decode_startup(&mut buf).unwrap(),
            Some(FirstPacket::GssEncRequest)
        );
        let mut buf = packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 1, 2, 3, 4]);
        assert_eq!(
            decode_startup(&mut buf).unwrap(),
            Some(FirstPacket::CancelRequest {
                process_id: 7,
                secret_key: vec![1, 2, 3, 4]
            })
        );
        let mut buf = packet(PROTOCOL_3_0, b"user\0alice\0database\0app\0\0");
        let Some(FirstPacket::Startup {
            major: 3,
            minor: 0,
            params,
        }) = decode_startup(&mut buf).unwrap()
        else {
            panic!("not a startup message");
        };
        assert_eq!(params.get("user"), Some("alice"));
        assert_eq!(params.get("database"), Some("app"));
        assert_eq!(params.get("options"), None);
    }

    #[test]
    fn waits_for_a_complete_packet() {
        let full = packet(PROTOCOL_3_0, b"user\0a\0\0");
        let mut buf = BytesMut::from(&full[..full.len() - 1]);
        assert_eq!(decode_startup(&mut buf).unwrap(), None);
        buf.extend_from_slice(&full[full.len() - 1..]);
        assert!(decode_startup(&mut buf).unwrap().is_some());
    }

    #[test]
    fn refuses_bad_lengths_protocols_and_layouts() {
        let mut buf = BytesMut::from(&(4i32).to_be_bytes()[..]);
        assert_eq!(
            decode_startup(&mut buf),
            Err(StartupError::InvalidLength(4))
        );
        let mut buf = BytesMut::from(&(-5i32).to_be_bytes()[..]);
        assert_eq!(
            decode_startup(&mut buf),
            Err(StartupError::InvalidLength(-5))
        );
        let mut buf = BytesMut::from(&(20_000i32).to_be_bytes()[..]);
        assert_eq!(
            decode_startup(&mut buf),
            Err(StartupError::TooLarge(20_000))
        );
        let mut buf = packet(2 << 16, b"\0");
        assert!(matches!(
            decode_startup(&mut buf),
            Err(StartupError::UnsupportedProtocol { .. })
        ));
        let mut buf = packet(PROTOCOL_3_0, b"user\0alice");
        assert!(matches!(
            decode_startup(&mut buf),
            Err(StartupError::Layout(_))
        ));
        let mut buf = packet(PROTOCOL_3_0, b"user\0\0");
        assert!(matches!(
            decode_startup(&mut buf),
            Err(StartupError::Layout(_))
        ));
        let mut buf = packet(PROTOCOL_3_0, b"user\0\xff\xfe\0\0");
        assert_eq!(decode_startup(&mut buf), Err(StartupError::NotUtf8));
        let mut buf = packet(SSL_REQUEST_CODE, b"xx");
        assert!(matches!(
            decode_startup(&mut buf),
            Err(StartupError::Layout(_))
        ));
    }

    #[test]
    fn accepts_an_empty_parameter_list_and_protocol_3_2() {
        let mut buf = packet(PROTOCOL_3_0 + 2, b"\0");
        let Some(FirstPacket::Startup {
            minor: 2, params, ..
        }) = decode_startup(&mut buf).unwrap()
        else {
            panic!("not a startup message");
        };
        assert!(params.pairs.is_empty());
    }
}
