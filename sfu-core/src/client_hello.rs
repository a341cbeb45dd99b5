//! Reassembles the peer's first DTLS ClientHello to read its `use_srtp` offer (RFC 5764 §4.1.1).
//!
//! Why this exists: `rtc-dtls` picks the SRTP profile in the *client's* order, and Chrome lists
//! AES-CM before AEAD AES-128-GCM. The server's preference must decide (GCM is about four times
//! cheaper here), so the transport reads the offer first and then starts `rtc-dtls` with only
//! the profile it chose. Chrome's ClientHello (~1.4 KB with a post-quantum key share) arrives
//! fragmented across datagrams, and its extension order is randomised, so the whole message
//! is reassembled before it is read. Memory is bounded; the datagrams themselves are kept by
//! the caller and replayed into the DTLS state machine unchanged.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

/// Largest ClientHello we reassemble.
pub const MAX_CLIENT_HELLO: usize = 8 * 1024;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_USE_SRTP: u16 = 14;

/// What reading a datagram told us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHelloProgress {
    /// More fragments are needed.
    Incomplete,
    /// The ClientHello is complete: its offered SRTP profile ids, in the client's order.
    Complete(Vec<u16>),
}

/// Why the datagram could not be part of a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientHelloError {
    /// Not a DTLS handshake record carrying a ClientHello fragment.
    #[error("not a ClientHello fragment")]
    NotClientHello,
    /// Lengths or offsets do not add up, or the message is larger than allowed.
    #[error("malformed ClientHello")]
    Malformed,
}

/// Collects ClientHello fragments (message_seq 0) until the message is whole.
#[derive(Debug, Default)]
pub struct ClientHelloAssembler {
    message: Vec<u8>,
    covered: Vec<bool>,
    missing: usize,
    length: Option<usize>,
}

fn be24(b: &[u8]) -> Option<usize> {
    match b {
        [a, b, c, ..] => Some((usize::from(*a) << 16) | (usize::from(*b) << 8) | usize::from(*c)),
        _ => None,
    }
}

impl ClientHelloAssembler {
    /// Reads every handshake record of `datagram`.
    pub fn push(&mut self, datagram: &[u8]) -> Result<ClientHelloProgress, ClientHelloError> {
        let mut rest = datagram;
        let mut any = false;
        while !rest.is_empty() {
            let record = rest.get(..13).ok_or(ClientHelloError::Malformed)?;
            let content_type = record.first().copied().unwrap_or(0);
            let epoch = u16::from_be_bytes([
                record.get(3).copied().unwrap_or(1),
                record.get(4).copied().unwrap_or(1),
            ]);
            let len = usize::from(u16::from_be_bytes([
                record.get(11).copied().unwrap_or(0),
                record.get(12).copied().unwrap_or(0),
            ]));
            let body = rest.get(13..13 + len).ok_or(ClientHelloError::Malformed)?;
            rest = rest.get(13 + len..).unwrap_or(&[]);
            if content_type != CONTENT_HANDSHAKE || epoch != 0 {
                continue;
            }
            self.push_fragment(body)?;
            any = true;
        }
        if !any {
            return Err(ClientHelloError::NotClientHello);
        }
        if self.length.is_some() && self.missing == 0 {
            return parse_use_srtp(&self.message).map(ClientHelloProgress::Complete);
        }
        Ok(ClientHelloProgress::Incomplete)
    }

    fn push_fragment(&mut self, fragment: &[u8]) -> Result<(), ClientHelloError> {
        let head = fragment.get(..12).ok_or(ClientHelloError::Malformed)?;
        if head.first() != Some(&HANDSHAKE_CLIENT_HELLO) {
            return Err(ClientHelloError::NotClientHello);
        }
        let total = be24(head.get(1..4).unwrap_or(&[])).ok_or(ClientHelloError::Malformed)?;
        let offset = be24(head.get(6..9).unwrap_or(&[])).ok_or(ClientHelloError::Malformed)?;
        let frag_len = be24(head.get(9..12).unwrap_or(&[])).ok_or(ClientHelloError::Malformed)?;
        let data = fragment
            .get(12..12 + frag_len)
            .ok_or(ClientHelloError::Malformed)?;
        if total > MAX_CLIENT_HELLO || offset + frag_len > total {
            return Err(ClientHelloError::Malformed);
        }
        match self.length {
            None => {
                self.length = Some(total);
                self.message = vec![0; total];
                self.covered = vec![false; total];
                self.missing = total;
            }
            Some(l) if l != total => return Err(ClientHelloError::Malformed),
            Some(_) => {}
        }
        let dst = self
            .message
            .get_mut(offset..offset + frag_len)
            .ok_or(ClientHelloError::Malformed)?;
        dst.copy_from_slice(data);
        for c in self
            .covered
            .get_mut(offset..offset + frag_len)
            .into_iter()
            .flatten()
        {
            if !*c {
                *c = true;
                self.missing -= 1;
            }
        }
        Ok(())
    }
}

/// A big-endian u16 at `at`, if `b` is long enough.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    let bytes: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
    Some(u16::from_be_bytes(bytes))
}

/// Reads the `use_srtp` profile list out of a whole ClientHello body.
fn parse_use_srtp(body: &[u8]) -> Result<Vec<u16>, ClientHelloError> {
    let bad = ClientHelloError::Malformed;
    // client_version(2) random(32)
    let mut at = 34usize;
    let session_len = usize::from(*body.get(at).ok_or(bad)?);
    at += 1 + session_len;
    let cookie_len = usize::from(*body.get(at).ok_or(bad)?);
    at += 1 + cookie_len;
    at += 2 + usize::from(be16(body, at).ok_or(bad)?);
    let compression_len = usize::from(*body.get(at).ok_or(bad)?);
    at += 1 + compression_len;
    let Some(ext_len) = be16(body, at) else {
        return Ok(Vec::new()); // no extensions at all
    };
    let ext_len = usize::from(ext_len);
    let mut exts = body.get(at + 2..at + 2 + ext_len).ok_or(bad)?;
    while let (Some(ty), Some(len)) = (be16(exts, 0), be16(exts, 2)) {
        let len = usize::from(len);
        let data = exts.get(4..4 + len).ok_or(bad)?;
        exts = exts.get(4 + len..).unwrap_or(&[]);
        if ty == EXTENSION_USE_SRTP {
            let list_len = usize::from(be16(data, 0).ok_or(bad)?);
            let list = data.get(2..2 + list_len).ok_or(bad)?;
            return Ok(list.chunks_exact(2).filter_map(|p| be16(p, 0)).collect());
        }
    }
    Ok(Vec::new())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A ClientHello body offering `profiles`, padded with a large dummy extension so it can be
    /// split like Chrome's.
    fn client_hello_body(profiles: &[u16]) -> Vec<u8> {
        let mut b = vec![0xfe, 0xfd];
        b.extend_from_slice(&[7; 32]);
        b.push(0); // session id
        b.push(0); // cookie
        b.extend_from_slice(&[0, 2, 0xc0, 0x2b]);
        b.extend_from_slice(&[1, 0]);
        let mut exts = Vec::new();
        exts.extend_from_slice(&[0x11, 0xec, 0x04, 0xb0]); // a 1200-byte key share stand-in
        exts.extend_from_slice(&[0xaa; 1200]);
        exts.extend_from_slice(&EXTENSION_USE_SRTP.to_be_bytes());
        exts.extend_from_slice(&((profiles.len() * 2 + 3) as u16).to_be_bytes());
        exts.extend_from_slice(&((profiles.len() * 2) as u16).to_be_bytes());
        for p in profiles {
            exts.extend_from_slice(&p.to_be_bytes());
        }
        exts.push(0); // mki
        b.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        b.extend_from_slice(&exts);
        b
    }

    fn record(body: &[u8], offset: usize, len: usize) -> Vec<u8> {
        let total = body.len();
        let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
        hs.extend_from_slice(&(total as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&[0, 0]);
        hs.extend_from_slice(&(offset as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&body[offset..offset + len]);
        let mut r = vec![CONTENT_HANDSHAKE, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        r.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        r.extend_from_slice(&hs);
        r
    }

    #[test]
    fn reassembles_fragmented_hello_in_any_order() {
        let body = client_hello_body(&[0x0001, 0x0007]);
        let first = record(&body, 0, 700);
        let second = record(&body, 700, body.len() - 700);
        for order in [[&first, &second], [&second, &first]] {
            let mut a = ClientHelloAssembler::default();
            assert_eq!(a.push(order[0]).unwrap(), ClientHelloProgress::Incomplete);
            assert_eq!(
                a.push(order[1]).unwrap(),
                ClientHelloProgress::Complete(vec![1, 7])
            );
        }
    }

    #[test]
    fn duplicate_fragments_do_not_complete_early() {
        let body = client_hello_body(&[0x0007]);
        let first = record(&body, 0, 700);
        let mut a = ClientHelloAssembler::default();
        assert_eq!(a.push(&first).unwrap(), ClientHelloProgress::Incomplete);
        assert_eq!(a.push(&first).unwrap(), ClientHelloProgress::Incomplete);
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        let body = client_hello_body(&[0x0007]);
        let valid = record(&body, 0, body.len());
        for len in 0..valid.len() {
            let mut a = ClientHelloAssembler::default();
            let _ = a.push(&valid[..len]);
        }
        let mut a = ClientHelloAssembler::default();
        assert_eq!(
            a.push(&[23, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ClientHelloError::NotClientHello)
        );
        let mut huge = valid.clone();
        huge[14] = 0xff; // total length byte
        assert!(ClientHelloAssembler::default().push(&huge).is_err());
    }
}
