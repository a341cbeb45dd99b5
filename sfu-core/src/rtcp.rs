//! RTCP compound-packet reading and the few packets the SFU writes (RFC 3550, 4585, 5104).
//!
//! RTCP is terminated per leg: nothing received here is ever forwarded raw. [`RtcpReader`]
//! walks a decrypted compound packet and yields typed views of the parts the SFU acts on
//! (sender/receiver reports, PLI, FIR, generic NACK); everything else is skipped. The writers
//! append to a caller's buffer. This module must not know about transports or streams.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use thiserror::Error;

/// Why a compound RTCP packet was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpParseError {
    /// A header or its declared length runs past the end of the buffer.
    #[error("RTCP packet truncated")]
    Truncated,
    /// Version field is not 2.
    #[error("RTCP version is not 2")]
    BadVersion,
    /// A packet's body is too short for its type.
    #[error("RTCP packet body too short for its type")]
    BadBody,
}

/// A reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceptionReport {
    /// The source this block is about.
    pub ssrc: u32,
    /// Fraction of packets lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed, clamped here to non-negative).
    pub total_lost: u32,
    /// Extended highest sequence number received.
    pub highest_sequence: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received.
    pub last_sender_report: u32,
    /// Delay since that SR in 1/65536 s.
    pub delay_since_last_sender_report: u32,
}

/// One understood part of a compound RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPart<'a> {
    /// A sender report; `reports` holds its reception-report blocks still encoded.
    SenderReport {
        /// Sender SSRC.
        ssrc: u32,
        /// 64-bit NTP timestamp.
        ntp_time: u64,
        /// RTP timestamp matching `ntp_time`.
        rtp_time: u32,
        /// Packets sent.
        packet_count: u32,
        /// Payload octets sent.
        octet_count: u32,
        /// Encoded report blocks (24 bytes each).
        reports: &'a [u8],
    },
    /// A receiver report.
    ReceiverReport {
        /// Reporter SSRC.
        ssrc: u32,
        /// Encoded report blocks (24 bytes each).
        reports: &'a [u8],
    },
    /// Picture loss indication.
    Pli {
        /// Sender of the feedback.
        sender_ssrc: u32,
        /// The media source the keyframe is requested from.
        media_ssrc: u32,
    },
    /// Full intra request; `entries` holds the 8-byte FCI entries.
    Fir {
        /// Sender of the feedback.
        sender_ssrc: u32,
        /// Encoded FCI entries (SSRC + sequence number + reserved).
        entries: &'a [u8],
    },
    /// Generic NACK; `fci` holds the 4-byte (PID, BLP) items.
    Nack {
        /// Sender of the feedback.
        sender_ssrc: u32,
        /// The media source the packets are missing from.
        media_ssrc: u32,
        /// Encoded FCI items.
        fci: &'a [u8],
    },
    /// Any other packet type (SDES, BYE, XR, TWCC, REMB, APP, …), by packet type and format.
    Other {
        /// Packet type.
        packet_type: u8,
        /// Count / format field.
        format: u8,
    },
}

/// Iterates over the parts of a compound packet. Stops with an error at the first malformed
/// header; callers validate the whole packet first with [`validate_compound`].
pub struct RtcpReader<'a> {
    rest: &'a [u8],
}

/// Checks that `buf` is a well-formed compound RTCP packet (each header's length fits).
pub fn validate_compound(buf: &[u8]) -> Result<(), RtcpParseError> {
    if buf.is_empty() {
        return Err(RtcpParseError::Truncated);
    }
    for part in RtcpReader::new(buf) {
        part?;
    }
    Ok(())
}

impl<'a> RtcpReader<'a> {
    /// A reader over a decrypted compound packet.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { rest: buf }
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(s))
}

impl<'a> Iterator for RtcpReader<'a> {
    type Item = Result<RtcpPart<'a>, RtcpParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let result = (|| {
            let head: [u8; 4] = self
                .rest
                .get(..4)
                .and_then(|h| h.try_into().ok())
                .ok_or(RtcpParseError::Truncated)?;
            let [b0, packet_type, len_hi, len_lo] = head;
            if b0 >> 6 != 2 {
                return Err(RtcpParseError::BadVersion);
            }
            let format = b0 & 0x1f;
            let len = 4 * (usize::from(u16::from_be_bytes([len_hi, len_lo])) + 1);
            let packet = self.rest.get(..len).ok_or(RtcpParseError::Truncated)?;
            self.rest = self.rest.get(len..).unwrap_or(&[]);
            let mut body = packet.get(4..).unwrap_or(&[]);
            if b0 & 0x20 != 0 {
                // Padding: the last octet counts padding bytes including itself.
                let pad = usize::from(*body.last().ok_or(RtcpParseError::BadBody)?);
                if pad == 0 || pad > body.len() {
                    return Err(RtcpParseError::BadBody);
                }
                body = body.get(..body.len() - pad).unwrap_or(&[]);
            }
            let bad = RtcpParseError::BadBody;
            let reports = |at: usize| -> Result<&'a [u8], RtcpParseError> {
                body.get(at..at + 24 * usize::from(format)).ok_or(bad)
            };
            Ok(match packet_type {
                200 => RtcpPart::SenderReport {
                    ssrc: be32(body, 0).ok_or(bad)?,
                    ntp_time: (u64::from(be32(body, 4).ok_or(bad)?) << 32)
                        | u64::from(be32(body, 8).ok_or(bad)?),
                    rtp_time: be32(body, 12).ok_or(bad)?,
                    packet_count: be32(body, 16).ok_or(bad)?,
                    octet_count: be32(body, 20).ok_or(bad)?,
                    reports: reports(24)?,
                },
                201 => RtcpPart::ReceiverReport {
                    ssrc: be32(body, 0).ok_or(bad)?,
                    reports: reports(4)?,
                },
                205 if format == 1 => RtcpPart::Nack {
                    sender_ssrc: be32(body, 0).ok_or(bad)?,
                    media_ssrc: be32(body, 4).ok_or(bad)?,
                    fci: body.get(8..).ok_or(bad)?,
                },
                206 if format == 1 => RtcpPart::Pli {
                    sender_ssrc: be32(body, 0).ok_or(bad)?,
                    media_ssrc: be32(body, 4).ok_or(bad)?,
                },
                206 if format == 4 => RtcpPart::Fir {
                    sender_ssrc: be32(body, 0).ok_or(bad)?,
                    entries: body.get(8..).ok_or(bad)?,
                },
                _ => RtcpPart::Other {
                    packet_type,
                    format,
                },
            })
        })();
        if result.is_err() {
            self.rest = &[];
        }
        Some(result)
    }
}

/// Decodes the 24-byte report blocks of an SR or RR.
pub fn reception_reports(blocks: &[u8]) -> impl Iterator<Item = ReceptionReport> + '_ {
    blocks.chunks_exact(24).filter_map(|b| {
        let lost = be32(b, 4)?;
        Some(ReceptionReport {
            ssrc: be32(b, 0)?,
            fraction_lost: (lost >> 24) as u8,
            // 24-bit two's complement; negative (duplicates) counts as no loss.
            total_lost: if lost & 0x0080_0000 != 0 {
                0
            } else {
                lost & 0x00ff_ffff
            },
            highest_sequence: be32(b, 8)?,
            jitter: be32(b, 12)?,
            last_sender_report: be32(b, 16)?,
            delay_since_last_sender_report: be32(b, 20)?,
        })
    })
}

/// The SSRCs a FIR asks keyframes of.
pub fn fir_ssrcs(entries: &[u8]) -> impl Iterator<Item = u32> + '_ {
    entries.chunks_exact(8).filter_map(|e| be32(e, 0))
}

/// The sequence numbers a generic NACK's FCI items name (RFC 4585 §6.2.1).
pub fn nacked_sequences(fci: &[u8]) -> impl Iterator<Item = u16> + '_ {
    fci.chunks_exact(4).flat_map(|item| {
        let pid = u16::from_be_bytes([
            item.first().copied().unwrap_or(0),
            item.get(1).copied().unwrap_or(0),
        ]);
        let blp = u16::from_be_bytes([
            item.get(2).copied().unwrap_or(0),
            item.get(3).copied().unwrap_or(0),
        ]);
        std::iter::once(pid).chain(
            (0..16u16)
                .filter(move |bit| blp & (1 << bit) != 0)
                .map(move |bit| pid.wrapping_add(bit + 1)),
        )
    })
}

fn write_reports(out: &mut Vec<u8>, reports: &[ReceptionReport]) {
    for r in reports {
        out.extend_from_slice(&r.ssrc.to_be_bytes());
        let lost = (u32::from(r.fraction_lost) << 24) | (r.total_lost.min(0x7f_ffff));
        out.extend_from_slice(&lost.to_be_bytes());
        out.extend_from_slice(&r.highest_sequence.to_be_bytes());
        out.extend_from_slice(&r.jitter.to_be_bytes());
        out.extend_from_slice(&r.last_sender_report.to_be_bytes());
        out.extend_from_slice(&r.delay_since_last_sender_report.to_be_bytes());
    }
}

fn header(out: &mut Vec<u8>, count: u8, packet_type: u8, words_after_header: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(packet_type);
    out.extend_from_slice(&(words_after_header as u16).to_be_bytes());
}

/// Appends a sender report with up to 31 report blocks.
pub fn write_sender_report(
    out: &mut Vec<u8>,
    ssrc: u32,
    ntp_time: u64,
    rtp_time: u32,
    packet_count: u32,
    octet_count: u32,
    reports: &[ReceptionReport],
) {
    let reports = reports.get(..reports.len().min(31)).unwrap_or(&[]);
    header(out, reports.len() as u8, 200, 6 + 6 * reports.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&ntp_time.to_be_bytes());
    out.extend_from_slice(&rtp_time.to_be_bytes());
    out.extend_from_slice(&packet_count.to_be_bytes());
    out.extend_from_slice(&octet_count.to_be_bytes());
    write_reports(out, reports);
}

/// Appends a receiver report with up to 31 report blocks.
pub fn write_receiver_report(out: &mut Vec<u8>, ssrc: u32, reports: &[ReceptionReport]) {
    let reports = reports.get(..reports.len().min(31)).unwrap_or(&[]);
    header(out, reports.len() as u8, 201, 1 + 6 * reports.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    write_reports(out, reports);
}

/// Appends a receiver estimated maximum bitrate message (REMB,
/// draft-alvestrand-rmcat-remb-03): `bitrate` in bit/s about the streams `ssrcs` (at most 255).
pub fn write_remb(out: &mut Vec<u8>, sender_ssrc: u32, bitrate: u64, ssrcs: &[u32]) {
    let ssrcs = ssrcs.get(..ssrcs.len().min(255)).unwrap_or(&[]);
    header(out, 15, 206, 4 + ssrcs.len());
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(b"REMB");
    // 6-bit exponent, 18-bit mantissa: the smallest exponent that fits.
    let mut exponent = 0u32;
    let mut mantissa = bitrate;
    while mantissa > 0x3_ffff {
        mantissa >>= 1;
        exponent += 1;
    }
    let value = (u32::from(ssrcs.len() as u8) << 24) | (exponent.min(63) << 18) | mantissa as u32;
    out.extend_from_slice(&value.to_be_bytes());
    for ssrc in ssrcs {
        out.extend_from_slice(&ssrc.to_be_bytes());
    }
}

/// Reads a REMB message (a payload-specific feedback packet, FMT 15, "REMB"): the bitrate in
/// bit/s and the SSRCs it is about.
pub fn parse_remb(packet: &[u8]) -> Option<(u64, Vec<u32>)> {
    if packet.first()? & 0x1f != 15 || *packet.get(1)? != 206 || packet.get(12..16)? != b"REMB" {
        return None;
    }
    let value = u32::from_be_bytes(packet.get(16..20)?.try_into().ok()?);
    let count = (value >> 24) as usize;
    let exponent = (value >> 18) & 0x3f;
    let bitrate = u64::from(value & 0x3_ffff).checked_shl(exponent)?;
    let ssrcs = (0..count)
        .map(|i| {
            let at = 20 + 4 * i;
            Some(u32::from_be_bytes(packet.get(at..at + 4)?.try_into().ok()?))
        })
        .collect::<Option<Vec<u32>>>()?;
    Some((bitrate, ssrcs))
}

/// Appends a picture loss indication.
pub fn write_pli(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32) {
    header(out, 1, 206, 2);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
}

/// Appends a full intra request for one SSRC.
pub fn write_fir(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32, sequence: u8) {
    header(out, 4, 206, 4);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    out.extend_from_slice(&[sequence, 0, 0, 0]);
}

/// Appends a generic NACK for `lost` (sequence numbers, ascending, modulo wrap).
pub fn write_nack(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32, lost: &[u16]) {
    let start = out.len();
    header(out, 1, 205, 0);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    let mut iter = lost.iter().copied().peekable();
    while let Some(pid) = iter.next() {
        let mut blp = 0u16;
        while let Some(&next) = iter.peek() {
            let delta = next.wrapping_sub(pid);
            if delta == 0 || delta > 16 {
                break;
            }
            blp |= 1 << (delta - 1);
            iter.next();
        }
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&blp.to_be_bytes());
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    if let Some(len) = out.get_mut(start + 2..start + 4) {
        len.copy_from_slice(&words.to_be_bytes());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn remb_round_trips_and_validates_as_compound() {
        for bitrate in [0u64, 150_000, 262_143, 262_144, 1_500_000, 30_000_000] {
            let mut out = Vec::new();
            write_receiver_report(&mut out, 7, &[]);
            let at = out.len();
            write_remb(&mut out, 7, bitrate, &[0x1111, 0x2222]);
            assert!(validate_compound(&out).is_ok());
            let (read, ssrcs) = parse_remb(&out[at..]).unwrap();
            // The mantissa keeps 18 bits: within 2^-17 of the value.
            assert!(
                read <= bitrate && bitrate - read <= bitrate >> 17,
                "{bitrate} -> {read}"
            );
            assert_eq!(ssrcs, vec![0x1111, 0x2222]);
        }
        assert_eq!(
            parse_remb(&[
                0x8f, 206, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, b'X', b'E', b'M', b'B'
            ]),
            None
        );
    }

    #[test]
    fn round_trips_the_packets_we_write() {
        let report = ReceptionReport {
            ssrc: 7,
            fraction_lost: 12,
            total_lost: 345,
            highest_sequence: 70_000,
            jitter: 9,
            last_sender_report: 0xabcd,
            delay_since_last_sender_report: 0x1234,
        };
        let mut buf = Vec::new();
        write_sender_report(&mut buf, 1, 0x1122_3344_5566_7788, 99, 10, 1000, &[report]);
        write_receiver_report(&mut buf, 2, &[report, report]);
        write_pli(&mut buf, 3, 4);
        write_fir(&mut buf, 5, 6, 9);
        write_nack(&mut buf, 7, 8, &[100, 101, 116, 117, 200]);
        validate_compound(&buf).unwrap();
        let parts: Vec<_> = RtcpReader::new(&buf).map(Result::unwrap).collect();
        assert_eq!(parts.len(), 5);
        match &parts[0] {
            RtcpPart::SenderReport {
                ssrc,
                ntp_time,
                rtp_time,
                packet_count,
                octet_count,
                reports,
            } => {
                assert_eq!(
                    (*ssrc, *ntp_time, *rtp_time, *packet_count, *octet_count),
                    (1, 0x1122_3344_5566_7788, 99, 10, 1000)
                );
                assert_eq!(reception_reports(reports).collect::<Vec<_>>(), vec![report]);
            }
            other => panic!("{other:?}"),
        }
        match &parts[1] {
            RtcpPart::ReceiverReport { ssrc, reports } => {
                assert_eq!(*ssrc, 2);
                assert_eq!(reception_reports(reports).count(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parts[2],
            RtcpPart::Pli {
                sender_ssrc: 3,
                media_ssrc: 4
            }
        );
        match &parts[3] {
            RtcpPart::Fir {
                sender_ssrc,
                entries,
            } => {
                assert_eq!(*sender_ssrc, 5);
                assert_eq!(fir_ssrcs(entries).collect::<Vec<_>>(), vec![6]);
            }
            other => panic!("{other:?}"),
        }
        match &parts[4] {
            RtcpPart::Nack {
                media_ssrc, fci, ..
            } => {
                assert_eq!(*media_ssrc, 8);
                assert_eq!(
                    nacked_sequences(fci).collect::<Vec<_>>(),
                    vec![100, 101, 116, 117, 200]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nack_across_wrap() {
        let mut buf = Vec::new();
        write_nack(&mut buf, 1, 2, &[65534, 65535, 0, 3]);
        let RtcpPart::Nack { fci, .. } = RtcpReader::new(&buf).next().unwrap().unwrap() else {
            panic!()
        };
        assert_eq!(fci.len(), 4, "one FCI item covers all four");
        assert_eq!(
            nacked_sequences(fci).collect::<Vec<_>>(),
            vec![65534, 65535, 0, 3]
        );
    }

    #[test]
    fn malformed_compound_is_rejected_without_panic() {
        let mut valid = Vec::new();
        write_receiver_report(&mut valid, 2, &[ReceptionReport::default()]);
        write_pli(&mut valid, 3, 4);
        for len in 0..valid.len() {
            if len == 32 {
                continue; // exactly the RR alone is valid
            }
            assert!(validate_compound(&valid[..len]).is_err(), "len {len}");
        }
        let mut seed = 99u32;
        for len in 0..=1500usize {
            for fill in 0..3 {
                let buf: Vec<u8> = (0..len)
                    .map(|i| match fill {
                        0 => 0,
                        1 => 0xff,
                        _ => {
                            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                            if i == 0 {
                                0x80 | (seed >> 16) as u8 & 0x3f
                            } else {
                                (seed >> 16) as u8
                            }
                        }
                    })
                    .collect();
                let _ = validate_compound(&buf);
                for part in RtcpReader::new(&buf).flatten() {
                    if let RtcpPart::SenderReport { reports, .. }
                    | RtcpPart::ReceiverReport { reports, .. } = part
                    {
                        let _ = reception_reports(reports).count();
                    }
                }
            }
        }
    }
}
