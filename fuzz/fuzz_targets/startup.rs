//! The untrusted first packet of a connection (`pgcordon_wire::decode_startup`, as the
//! handshake calls it on plain and TLS streams). Checks, besides "no panic": only a complete
//! packet is taken off the buffer and nothing behind it; a packet is never longer than the
//! 10,000-byte cap; each kind of packet holds exactly the bytes it was decoded from (a
//! StartupMessage's parameters encode back to them); while a packet is incomplete its length
//! lies in 8..=10,000 and above what is buffered (the handshake reads `length - buffered`
//! bytes next and relies on that); and a packet fed one byte at a time is decided at its
//! last byte, the same way.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgcordon_wire::{decode_startup, FirstPacket, MAX_STARTUP_PACKET};

fn declared(data: &[u8]) -> i32 {
    i32::from_be_bytes([data[0], data[1], data[2], data[3]])
}

/// The packet's bytes after the length and the code must be exactly what it decoded to.
fn check_packet(packet: &FirstPacket, body: &[u8]) {
    match packet {
        FirstPacket::SslRequest | FirstPacket::GssEncRequest => assert!(body.is_empty()),
        FirstPacket::CancelRequest {
            process_id,
            secret_key,
        } => {
            assert_eq!(body.len(), 4 + secret_key.len());
            assert_eq!(process_id.to_be_bytes(), body[..4]);
            assert_eq!(&body[4..], &secret_key[..]);
        }
        FirstPacket::Startup { params, .. } => {
            let mut encoded = Vec::new();
            for (name, value) in &params.pairs {
                assert!(!name.is_empty());
                assert!(!name.contains('\0') && !value.contains('\0'));
                encoded.extend_from_slice(name.as_bytes());
                encoded.push(0);
                encoded.extend_from_slice(value.as_bytes());
                encoded.push(0);
            }
            encoded.push(0);
            assert_eq!(body, &encoded[..]);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let result = decode_startup(&mut buf);

    match &result {
        Ok(Some(packet)) => {
            let used = data.len() - buf.len();
            assert!((8..=MAX_STARTUP_PACKET).contains(&used));
            assert_eq!(declared(data) as usize, used);
            assert_eq!(&buf[..], &data[used..], "bytes behind the packet must stay");
            check_packet(packet, &data[8..used]);
        }
        Ok(None) => {
            assert_eq!(&buf[..], data, "an incomplete packet must stay buffered");
            if data.len() >= 4 {
                let len = declared(data);
                assert!((8..=MAX_STARTUP_PACKET as i32).contains(&len));
                assert!(len as usize > data.len());
            }
        }
        // A refused packet ends the connection; what is left in the buffer does not matter.
        Err(_) => {}
    }

    // Byte by byte: the first decision taken must match the one on the whole input, and a
    // packet must be taken the moment its last byte arrives.
    let mut trickle = BytesMut::new();
    let mut seen = Ok(None);
    for byte in data {
        trickle.extend_from_slice(&[*byte]);
        seen = decode_startup(&mut trickle);
        if !matches!(seen, Ok(None)) {
            break;
        }
    }
    assert_eq!(seen, result);
    if let Ok(Some(_)) = seen {
        assert!(trickle.is_empty());
    }
});
