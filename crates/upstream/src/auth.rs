//! The authentication exchange with the server, from the first AuthenticationRequest to
//! AuthenticationOk.

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::frontend;

use crate::connect::{ChannelBindingPolicy, Conn, UpstreamError, UpstreamSettings};

// Authentication request codes of the 'R' message.
const AUTH_OK: i32 = 0;
const AUTH_CLEARTEXT: i32 = 3;
const AUTH_MD5: i32 = 5;
const AUTH_SASL: i32 = 10;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;

/// Runs the exchange; returns whether channel binding was used.
pub(crate) async fn authenticate(
    conn: &mut Conn<'_>,
    settings: &UpstreamSettings,
) -> Result<bool, UpstreamError> {
    let (code, data) = next_auth(conn).await?;
    // With channel binding required, only SCRAM-SHA-256-PLUS proves that the server at the
    // end of this TLS session is the one holding the credentials: a server that lets us in
    // without asking (trust) or asks for a password method could be a relay in the middle.
    if settings.channel_binding == ChannelBindingPolicy::Require && code != AUTH_SASL {
        return Err(UpstreamError::ChannelBindingRequired {
            addr: conn.addr.into(),
        });
    }
    match code {
        AUTH_OK => Ok(false),
        AUTH_SASL => scram(conn, settings, &data).await,
        AUTH_MD5 if settings.allow_md5_password => {
            let salt: [u8; 4] = data
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| conn.protocol("MD5 request without salt".into()))?;
            let password = settings.password.read().await?;
            let hash = postgres_protocol::authentication::md5_hash(
                settings.user.as_bytes(),
                password.expose().as_bytes(),
                salt,
            );
            send_password(conn, hash.as_bytes()).await?;
            expect_ok(conn).await.map(|()| false)
        }
        AUTH_CLEARTEXT if settings.allow_cleartext_password => {
            let password = settings.password.read().await?;
            send_password(conn, password.expose().as_bytes()).await?;
            expect_ok(conn).await.map(|()| false)
        }
        AUTH_MD5 => Err(refused(conn, "MD5 password authentication")),
        AUTH_CLEARTEXT => Err(refused(conn, "cleartext password authentication")),
        _ => Err(refused(conn, "an unsupported authentication method")),
    }
}

fn refused(conn: &Conn<'_>, method: &'static str) -> UpstreamError {
    UpstreamError::MethodRefused {
        addr: conn.addr.into(),
        method,
    }
}

async fn scram(
    conn: &mut Conn<'_>,
    settings: &UpstreamSettings,
    mechanisms: &[u8],
) -> Result<bool, UpstreamError> {
    let offered: Vec<&[u8]> = mechanisms
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .collect();
    let plus_offered = offered.contains(&SCRAM_SHA_256_PLUS.as_bytes());
    let plain_offered = offered.contains(&SCRAM_SHA_256.as_bytes());

    let end_point = conn
        .stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| pgcordon_tls::tls_server_end_point(leaf).ok());
    let (mechanism, binding) = match (settings.channel_binding, plus_offered, end_point) {
        (ChannelBindingPolicy::Disable, _, _) if plain_offered => {
            (SCRAM_SHA_256, ChannelBinding::unsupported())
        }
        (ChannelBindingPolicy::Disable, _, _) => {
            return Err(refused(
                conn,
                "only SCRAM-SHA-256-PLUS, but channel binding is disabled",
            ))
        }
        (_, true, Some(hash)) => (
            SCRAM_SHA_256_PLUS,
            ChannelBinding::tls_server_end_point(hash),
        ),
        (ChannelBindingPolicy::Require, _, _) => {
            return Err(UpstreamError::ChannelBindingRequired {
                addr: conn.addr.into(),
            })
        }
        // PLUS offered but the certificate's hash algorithm is unknown: "n". Sending "y" here
        // would tell the server we saw no PLUS offer, which it rightly treats as a downgrade.
        (ChannelBindingPolicy::Prefer, true, None) if plain_offered => {
            (SCRAM_SHA_256, ChannelBinding::unsupported())
        }
        // The server did not offer PLUS over TLS: say we could have bound ("y").
        (ChannelBindingPolicy::Prefer, false, _) if plain_offered => {
            (SCRAM_SHA_256, ChannelBinding::unrequested())
        }
        _ => return Err(refused(conn, "a SASL mechanism other than SCRAM-SHA-256")),
    };

    let password = settings.password.read().await?;
    let mut scram = ScramSha256::new(password.expose().as_bytes(), binding);
    let mut out = BytesMut::new();
    frontend::sasl_initial_response(mechanism, scram.message(), &mut out)
        .map_err(|e| scram_err(conn, e))?;
    conn.send(&out).await?;

    let (code, server_first) = next_auth(conn).await?;
    if code != AUTH_SASL_CONTINUE {
        return Err(conn.protocol(format!("expected SASL continue, got request {code}")));
    }
    // PBKDF2 with 4096 iterations takes milliseconds: keep it off the reactor threads.
    let scram = tokio::task::spawn_blocking(move || scram.update(&server_first).map(|()| scram))
        .await
        .map_err(|e| conn.protocol(format!("SCRAM worker failed: {e}")))?
        .map_err(|e| scram_err(conn, e))?;
    let mut scram = scram;
    out.clear();
    frontend::sasl_response(scram.message(), &mut out).map_err(|e| scram_err(conn, e))?;
    conn.send(&out).await?;

    let (code, server_final) = next_auth(conn).await?;
    if code != AUTH_SASL_FINAL {
        return Err(conn.protocol(format!("expected SASL final, got request {code}")));
    }
    // Verifies the server's signature: a server that does not know the password fails here.
    scram
        .finish(&server_final)
        .map_err(|e| scram_err(conn, e))?;
    expect_ok(conn).await?;
    Ok(mechanism == SCRAM_SHA_256_PLUS)
}

fn scram_err(conn: &Conn<'_>, source: std::io::Error) -> UpstreamError {
    UpstreamError::Scram {
        addr: conn.addr.into(),
        source,
    }
}

async fn send_password(conn: &mut Conn<'_>, password: &[u8]) -> Result<(), UpstreamError> {
    let mut out = BytesMut::new();
    frontend::password_message(password, &mut out).map_err(|e| scram_err(conn, e))?;
    conn.send(&out).await
}

async fn expect_ok(conn: &mut Conn<'_>) -> Result<(), UpstreamError> {
    match next_auth(conn).await? {
        (AUTH_OK, _) => Ok(()),
        (code, _) => Err(conn.protocol(format!("expected AuthenticationOk, got request {code}"))),
    }
}

/// The next authentication request: its code and data. An ErrorResponse becomes an error.
async fn next_auth(conn: &mut Conn<'_>) -> Result<(i32, Vec<u8>), UpstreamError> {
    loop {
        let msg = conn.next().await?;
        let body = msg.body();
        match msg.tag {
            b'R' if body.len() >= 4 => {
                let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                return Ok((code, body[4..].to_vec()));
            }
            b'E' => return Err(conn.server_error(body)),
            b'N' => continue,
            other => {
                return Err(conn.protocol(format!("unexpected {:?} during auth", other as char)))
            }
        }
    }
}
