//! A STUN server on UDP (RFC 5389 Binding only): tells each browser the address its request came
//! from, so that peers learn their public address from the relay itself instead of a third
//! party. The messages are decoded and encoded by `stun_codec`; anything that is not a valid
//! Binding request is dropped without an answer.

use std::{net::SocketAddr, sync::atomic::Ordering, sync::Arc, time::Duration};

use bytecodec::{DecodeExt, EncodeExt};
use stun_codec::{
    rfc5389::{
        attributes::{Fingerprint, XorMappedAddress},
        methods::BINDING,
        Attribute,
    },
    Message, MessageClass, MessageDecoder, MessageEncoder,
};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::Relay;

/// Datagrams longer than this are cut, and so do not decode: a Binding request is 20 to ~100
/// bytes.
const MAX_DATAGRAM: usize = 2048;

/// How long the loop rests after a failed read, so that a socket that keeps failing cannot spin.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// The answer to one datagram from `from`: a Binding success response carrying `from` as
/// XOR-MAPPED-ADDRESS, with a FINGERPRINT. `None` for anything but a Binding request (including
/// garbage, responses and indications).
pub fn answer(datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let request = MessageDecoder::<Attribute>::new()
        .decode_from_bytes(datagram)
        .ok()?
        .ok()?;
    if request.class() != MessageClass::Request || request.method() != BINDING {
        return None;
    }
    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; the browser wants a.b.c.d.
    let from = SocketAddr::new(from.ip().to_canonical(), from.port());
    let mut response = Message::<Attribute>::new(
        MessageClass::SuccessResponse,
        BINDING,
        request.transaction_id(),
    );
    response.add_attribute(XorMappedAddress::new(from));
    let fingerprint = Fingerprint::new(&response).ok()?;
    response.add_attribute(fingerprint);
    MessageEncoder::new().encode_into_bytes(response).ok()
}

/// Answers Binding requests on `socket` until `shutdown` is cancelled. Read and write errors
/// (an ICMP "port unreachable" surfaces as one) are logged and the loop goes on.
pub(crate) async fn serve(socket: UdpSocket, relay: Arc<Relay>, shutdown: CancellationToken) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, from) = match received {
            Ok(received) => received,
            Err(err) => {
                tracing::debug!(%err, "STUN read failed");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let Some(reply) = answer(&buf[..len], from) else {
            tracing::trace!(%from, len, "ignored a datagram that is not a STUN Binding request");
            continue;
        };
        relay.metrics.stun_requests.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = socket.send_to(&reply, from).await {
            tracing::debug!(%from, %err, "STUN answer not sent");
        }
    }
}

#[cfg(test)]
mod tests {
    use stun_codec::TransactionId;

    use super::*;

    fn binding(class: MessageClass) -> Vec<u8> {
        let message = Message::<Attribute>::new(class, BINDING, TransactionId::new([7; 12]));
        MessageEncoder::new()
            .encode_into_bytes(message)
            .expect("encodes")
    }

    #[test]
    fn a_binding_request_learns_its_address() {
        let from: SocketAddr = "[::ffff:203.0.113.5]:40000".parse().expect("address");
        let reply = answer(&binding(MessageClass::Request), from).expect("answered");
        let response = MessageDecoder::<Attribute>::new()
            .decode_from_bytes(&reply)
            .expect("decodes")
            .expect("whole, with a valid fingerprint");
        assert_eq!(response.class(), MessageClass::SuccessResponse);
        assert_eq!(response.transaction_id(), TransactionId::new([7; 12]));
        let mapped = response
            .get_attribute::<XorMappedAddress>()
            .expect("has XOR-MAPPED-ADDRESS");
        assert_eq!(
            mapped.address(),
            "203.0.113.5:40000".parse::<SocketAddr>().expect("address")
        );
        assert!(response.get_attribute::<Fingerprint>().is_some());
    }

    #[test]
    fn anything_else_is_ignored() {
        let from: SocketAddr = "192.0.2.1:5000".parse().expect("address");
        assert!(answer(&binding(MessageClass::Indication), from).is_none());
        assert!(answer(&binding(MessageClass::SuccessResponse), from).is_none());
        assert!(answer(b"", from).is_none());
        assert!(answer(b"GET / HTTP/1.1\r\n\r\n", from).is_none());
        let request = binding(MessageClass::Request);
        for cut in 0..request.len() {
            assert!(answer(&request[..cut], from).is_none(), "cut at {cut}");
        }
        // A header that promises more attributes than there are bytes.
        let mut lying = request.clone();
        lying[3] = 200;
        assert!(answer(&lying, from).is_none());
        // Deterministic junk of many lengths, some with the magic cookie in place.
        let mut state = 0x2545_f491_u32;
        for len in 0..300 {
            let mut junk: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state.to_le_bytes()[0]
                })
                .collect();
            if len >= 20 {
                junk[..2].copy_from_slice(&[0, 1]);
                junk[4..8].copy_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            }
            let _ = answer(&junk, from);
        }
    }
}
