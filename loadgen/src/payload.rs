//! The synthetic media payload: who sent it, its place in the publisher's stream, when it was
//! sent, and a checksum over the rest, so a subscriber can check every packet's identity and,
//! on a sample, its integrity.
//!
//! Owns the byte layout only; it must not do I/O or read clocks (the send time is a parameter).
//!
//! Layout (big-endian), after a 1-byte VP8 payload descriptor (`S=1`, partition 0) and a
//! 3-byte VP8 frame tag (an inter frame), so the SFU's VP8 inspection sees a well-formed packet:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | VP8 descriptor + frame tag `10 01 00 00` |
//! | 4 | 4 | magic `LGEN` |
//! | 8 | 4 | publisher index |
//! | 12 | 8 | publisher's packet counter (from 0, no wrap) |
//! | 20 | 8 | send time, ns since the run's epoch |
//! | 28 | 4 | CRC-32 of bytes 32.. |
//! | 32 | .. | filler derived from (publisher, counter) |

/// Smallest payload that holds the fields.
pub const MIN_PAYLOAD: usize = 32;
const MAGIC: [u8; 4] = *b"LGEN";
const PREFIX: [u8; 4] = [0x10, 0x01, 0x00, 0x00];

/// What a received payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadInfo {
    /// The publisher's index in the run.
    pub publisher: u32,
    /// The publisher's packet counter.
    pub counter: u64,
    /// Send time in ns since the run's epoch.
    pub sent_ns: u64,
}

/// Why a payload is not one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Shorter than [`MIN_PAYLOAD`] or without the magic.
    #[error("not a load-generator payload")]
    Foreign,
    /// The checksum does not match the bytes.
    #[error("payload checksum mismatch")]
    Corrupt,
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Writes a payload of `out.len()` bytes (at least [`MIN_PAYLOAD`]; shorter buffers get only
/// what fits and fail [`verify`]).
pub fn write(out: &mut [u8], publisher: u32, counter: u64, sent_ns: u64) {
    let mut header = [0u8; MIN_PAYLOAD];
    header[0..4].copy_from_slice(&PREFIX);
    header[4..8].copy_from_slice(&MAGIC);
    header[8..12].copy_from_slice(&publisher.to_be_bytes());
    header[12..20].copy_from_slice(&counter.to_be_bytes());
    header[20..28].copy_from_slice(&sent_ns.to_be_bytes());
    // The filler changes with every packet, so a payload delivered to the wrong stream or
    // spliced from two packets fails the checksum.
    let seed = (counter as u8) ^ (publisher as u8).rotate_left(3);
    if let Some(filler) = out.get_mut(MIN_PAYLOAD..) {
        for (i, b) in filler.iter_mut().enumerate() {
            *b = seed.wrapping_add((i as u8).wrapping_mul(31));
        }
        let crc = crc32fast::hash(filler);
        header[28..32].copy_from_slice(&crc.to_be_bytes());
    }
    let n = out.len().min(MIN_PAYLOAD);
    if let (Some(dst), Some(src)) = (out.get_mut(..n), header.get(..n)) {
        dst.copy_from_slice(src);
    }
}

/// Reads the fields without checking the checksum (cheap: for every packet).
pub fn read(payload: &[u8]) -> Result<PayloadInfo, PayloadError> {
    if payload.len() < MIN_PAYLOAD || payload.get(4..8) != Some(&MAGIC[..]) {
        return Err(PayloadError::Foreign);
    }
    match (
        read_u32(payload, 8),
        read_u64(payload, 12),
        read_u64(payload, 20),
    ) {
        (Some(publisher), Some(counter), Some(sent_ns)) => Ok(PayloadInfo {
            publisher,
            counter,
            sent_ns,
        }),
        _ => Err(PayloadError::Foreign),
    }
}

/// Reads the fields and checks the checksum (for a sample of packets).
pub fn verify(payload: &[u8]) -> Result<PayloadInfo, PayloadError> {
    let info = read(payload)?;
    let stored = read_u32(payload, 28).ok_or(PayloadError::Foreign)?;
    let filler = payload.get(MIN_PAYLOAD..).ok_or(PayloadError::Foreign)?;
    if crc32fast::hash(filler) != stored {
        return Err(PayloadError::Corrupt);
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let mut p = vec![0u8; 1200];
        write(&mut p, 7, 123_456_789_012, 42);
        let info = verify(&p).unwrap();
        assert_eq!(
            info,
            PayloadInfo {
                publisher: 7,
                counter: 123_456_789_012,
                sent_ns: 42
            }
        );
        for at in [40, 600, 1199] {
            let mut bad = p.clone();
            bad[at] ^= 0x01;
            assert_eq!(verify(&bad), Err(PayloadError::Corrupt), "flip at {at}");
            assert_eq!(read(&bad), Ok(info), "the cheap read does not look");
        }
        assert_eq!(read(&p[..20]), Err(PayloadError::Foreign));
        let mut foreign = p.clone();
        foreign[5] = b'X';
        assert_eq!(read(&foreign), Err(PayloadError::Foreign));
    }
}
