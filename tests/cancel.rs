//! Cancel requests reach the backend session serving the client, in plaintext (libpq before 17,
//! most drivers) and over TLS (libpq 17+); the statement fails with 57014 and the connection
//! stays usable.

use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use pgcordon_e2e::{sqlstate, Harness, Tenant, POOL_TX};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Cancels a running sleep over TLS with tokio-postgres (libpq 17+ behaviour).
async fn cancel_sleep_over_tls(h: &Harness) {
    let client = h.connect(Tenant::A).await;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let result = client.simple_query("SELECT pg_sleep(20)").await;
        (client, result)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    let tls =
        tokio_postgres_rustls::MakeRustlsConnect::new(h.client_tls(h.tenant_files(Tenant::A)));
    token.cancel_query(tls).await.expect("cancel over TLS");
    let (client, result) = sleeper.await.unwrap();
    let err = result.expect_err("the sleep must be cancelled");
    assert_eq!(sqlstate(&err).as_deref(), Some("57014"), "{err}");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        sent.elapsed()
    );

    let who = client
        .query_typed_one("SELECT current_setting('app.current_user_id')", &[])
        .await
        .unwrap();
    assert_eq!(
        who.get::<_, String>(0),
        Tenant::A.id(),
        "the connection stays usable"
    );
}

/// A minimal mTLS protocol client: enough to learn the cancel key and read raw responses.
struct RawClient {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: BytesMut,
    key: (i32, i32),
}

impl RawClient {
    async fn connect(h: &Harness, tenant: Tenant) -> RawClient {
        let mut tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.unwrap(); // SSLRequest
        assert_eq!(tcp.read_u8().await.unwrap(), b'S');
        let tls = std::sync::Arc::new(h.client_tls(h.tenant_files(tenant)));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .unwrap();
        let mut client = RawClient {
            stream,
            buf: BytesMut::new(),
            key: (0, 0),
        };
        let mut startup = BytesMut::new();
        postgres_protocol::message::frontend::startup_message(
            [("user", "api"), ("database", "app")],
            &mut startup,
        )
        .unwrap();
        client.stream.write_all(&startup).await.unwrap();
        loop {
            let (tag, body) = client.next().await;
            match tag {
                b'K' => client.key = ((&body[..4]).get_i32(), (&body[4..8]).get_i32()),
                b'Z' => return client,
                b'E' => panic!("startup refused: {}", String::from_utf8_lossy(&body)),
                _ => {}
            }
        }
    }

    async fn query(&mut self, sql: &str) {
        let mut out = BytesMut::new();
        postgres_protocol::message::frontend::query(sql, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn next(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 5 {
                let len = (&self.buf[1..5]).get_i32() as usize;
                if self.buf.len() > len {
                    let msg = self.buf.split_to(len + 1);
                    return (msg[0], msg[5..].to_vec());
                }
            }
            assert!(
                self.stream.read_buf(&mut self.buf).await.unwrap() > 0,
                "closed"
            );
        }
    }

    /// Reads to ReadyForQuery; returns the SQLSTATE of an error, if any.
    async fn until_ready(&mut self) -> Option<String> {
        let mut code = None;
        loop {
            let (tag, body) = self.next().await;
            if tag == b'E' {
                let f = pgcordon_wire::inspect::error_fields(&body);
                code = f.code;
            }
            if tag == b'Z' {
                return code;
            }
        }
    }
}

/// Sends a CancelRequest in plaintext on a new connection, as libpq before 17 does.
async fn plaintext_cancel(h: &Harness, key: (i32, i32)) {
    let mut tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let mut packet = vec![0, 0, 0, 16, 4, 210, 22, 46];
    packet.extend_from_slice(&key.0.to_be_bytes());
    packet.extend_from_slice(&key.1.to_be_bytes());
    tcp.write_all(&packet).await.unwrap();
    // pgcordon answers nothing and closes once it has forwarded the request.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "a cancel request gets no answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_cancel_reaches_the_serving_backend() {
    let h = Harness::start(POOL_TX).await;
    let mut client = RawClient::connect(&h, Tenant::A).await;
    client.query("SELECT pg_sleep(20)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = Instant::now();
    plaintext_cancel(&h, client.key).await;
    assert_eq!(client.until_ready().await.as_deref(), Some("57014"));
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        sent.elapsed()
    );
    client.query("SELECT 1").await;
    assert_eq!(
        client.until_ready().await,
        None,
        "the connection stays usable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_over_tls_reaches_the_serving_backend() {
    let h = Harness::start(POOL_TX).await;
    cancel_sleep_over_tls(&h).await;
}

/// libpq 17+ (`PQcancelBlocking`) takes the end of a TLS cancel connection as the
/// acknowledgement and reports an error when that end is not a TLS close_notify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_over_tls_is_acknowledged_with_close_notify() {
    let h = Harness::start(POOL_TX).await;
    let mut client = RawClient::connect(&h, Tenant::A).await;
    client.query("SELECT pg_sleep(20)").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.unwrap(); // SSLRequest
    assert_eq!(tcp.read_u8().await.unwrap(), b'S');
    let tls = std::sync::Arc::new(h.client_tls(h.tenant_files(Tenant::A)));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let mut packet = vec![0, 0, 0, 16, 4, 210, 22, 46];
    packet.extend_from_slice(&client.key.0.to_be_bytes());
    packet.extend_from_slice(&client.key.1.to_be_bytes());
    stream.write_all(&packet).await.unwrap();
    stream.flush().await.unwrap();

    // rustls reports an end of stream without close_notify as an UnexpectedEof error.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("pgcordon closes the cancel connection");
    read.expect("the cancel connection ends with close_notify");
    assert!(rest.is_empty(), "a cancel request gets no answer");
    assert_eq!(client.until_ready().await.as_deref(), Some("57014"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_for_an_idle_client_or_a_wrong_key_cancels_nothing() {
    let h = Harness::start(POOL_TX).await;
    let idle = RawClient::connect(&h, Tenant::A).await;
    let mut busy = RawClient::connect(&h, Tenant::B).await;
    busy.query("SELECT pg_sleep(0.5)").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    // The idle client's key, and a key that matches nothing: neither touches `busy`.
    plaintext_cancel(&h, idle.key).await;
    plaintext_cancel(&h, (busy.key.0, busy.key.1.wrapping_add(1))).await;
    assert_eq!(busy.until_ready().await, None, "not cancelled");
    assert!(started.elapsed() >= Duration::from_millis(300));
}
