//! Why packets were dropped, counted per reason.
//!
//! Every datagram the worker refuses increments exactly one [`DropReason`] counter, so that
//! an operator (and the malformed-input tests) can see what arrived and why it went nowhere.
//! This module only counts; it never decides.

use std::fmt;

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// The reason a datagram or packet was dropped.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DropReason {
            $(#[doc = $doc] $variant,)*
        }

        impl DropReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];

            /// The reason's metric-friendly name.
            pub fn name(self) -> &'static str {
                match self {
                    $(DropReason::$variant => $name,)*
                }
            }
        }
    };
}

drop_reasons! {
    Oversize => "oversize", "A datagram over 1500 bytes, dropped before parsing.";
    Empty => "empty", "A zero-length datagram.";
    UnknownProtocol => "unknown_protocol", "First byte outside the STUN, DTLS and RTP ranges of RFC 7983.";
    StunMalformed => "stun_malformed", "A STUN message that does not parse.";
    StunNotBindingRequest => "stun_not_binding_request", "A STUN message other than a binding request.";
    StunUnknownUfrag => "stun_unknown_ufrag", "A binding request for a ufrag no transport owns.";
    StunBadIntegrity => "stun_bad_integrity", "A binding request without valid MESSAGE-INTEGRITY.";
    StunBadFingerprint => "stun_bad_fingerprint", "A binding request without a valid FINGERPRINT.";
    StunRoleConflict => "stun_role_conflict", "A binding request from a peer that is not controlling.";
    DtlsWrongSource => "dtls_wrong_source", "DTLS from an address ICE has not validated.";
    DtlsMalformed => "dtls_malformed", "A DTLS record the session refused.";
    RtpWrongSource => "rtp_wrong_source", "RTP or RTCP from an address ICE has not validated.";
    SrtpNotReady => "srtp_not_ready", "RTP or RTCP before DTLS has produced keys.";
    RtpMalformed => "rtp_malformed", "An RTP packet that does not parse.";
    RtcpMalformed => "rtcp_malformed", "An RTCP packet that does not parse.";
    SrtpAuthFail => "srtp_auth_fail", "SRTP or SRTCP that failed authentication.";
    SrtpReplay => "srtp_replay", "SRTP or SRTCP replayed or older than the window.";
    SrtpTooManyStreams => "srtp_too_many_streams", "An authenticated SSRC beyond the per-session limit.";
    RtpUnknownSsrc => "rtp_unknown_ssrc", "RTP for an SSRC, mid or rid the publisher did not declare.";
    RtpUnknownPayloadType => "rtp_unknown_payload_type", "RTP with a payload type the producer did not declare.";
    RtxDuplicate => "rtx_duplicate", "A retransmission of a packet that was not missing.";
    RtpPadding => "rtp_padding", "A padding-only packet (bandwidth probe) with nothing to forward.";
    TransportClosed => "transport_closed", "Input for a transport that has failed or closed.";
    PipeUnknownProducer => "pipe_unknown_producer", "A piped message for a producer this worker has no pipe for (closed meanwhile).";
    PipeMalformed => "pipe_malformed", "A piped packet whose stream or payload range does not fit its producer.";
    PipeBackpressure => "pipe_backpressure", "A piped packet dropped because the receiving worker fell behind.";
}

/// Counters for every [`DropReason`].
#[derive(Clone, Default)]
pub struct DropCounters {
    counts: [u64; 32],
}

impl DropCounters {
    /// Counts one drop.
    pub fn count(&mut self, reason: DropReason) {
        if let Some(c) = self.counts.get_mut(reason as usize) {
            *c += 1;
        }
    }

    /// The count for one reason.
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts.get(reason as usize).copied().unwrap_or(0)
    }

    /// The sum over all reasons.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(reason, count)` for every reason with a non-zero count.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, c)| *c > 0)
    }
}

impl fmt::Debug for DropCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.nonzero().map(|(r, c)| (r.name(), c)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_counter() {
        assert!(DropReason::ALL.len() <= 32);
        let mut c = DropCounters::default();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            for _ in 0..=i {
                c.count(*r);
            }
        }
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(c.get(*r), i as u64 + 1, "{}", r.name());
        }
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
