//! Every refusal and failure label of the data path, from one closed set:
//! the metric label, the log field, the `x-causeway-refusal` header; where
//! each comes from and whether a retry may help. Nothing a peer or a
//! caller sends becomes a label but through [`Reason::from_label`].

use http::StatusCode;

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The caller: a request the gateway cannot carry.
    Downstream,
    /// A local service's endpoints.
    Upstream,
    /// The peer gateway or the tunnel to it.
    Peer,
    /// Routing and authorization: this gateway's or the peer's rules.
    Policy,
    /// This gateway itself (draining, overloaded).
    Internal,
}

macro_rules! reasons {
    ($($variant:ident => $label:literal, $origin:ident, $status:ident, $retry:literal;)+) => {
        /// Every refusal and failure label, from a closed set.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($variant,)+
        }

        impl Reason {
            /// Every reason, for tests and docs.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)+];

            /// The label: metrics, logs, `x-causeway-refusal`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $label,)+ }
            }

            pub fn origin(self) -> Origin {
                match self { $(Self::$variant => Origin::$origin,)+ }
            }

            /// The status of the answer the gateway gives itself.
            pub fn status(self) -> StatusCode {
                match self { $(Self::$variant => StatusCode::$status,)+ }
            }

            /// Whether the same call, sent again (to another endpoint or
            /// peer gateway), may succeed: nothing reached a service, or it
            /// answered that it was unavailable. Refusals by policy never.
            pub fn may_retry(self) -> bool {
                match self { $(Self::$variant => $retry,)+ }
            }

            /// The reason a label names, if it is one (a peer's refusal
            /// header is read through this: a closed set on both sides).
            pub fn from_label(label: &[u8]) -> Option<Self> {
                match label { $(l if l == $label.as_bytes() => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

reasons! {
    // Routing and policy, at this gateway.
    NoRoute => "no_route", Policy, NOT_FOUND, false;
    Denied => "denied", Policy, FORBIDDEN, false;
    // Inbound checks on a peer's stream.
    NotAPeerGateway => "not_a_peer_gateway", Policy, FORBIDDEN, false;
    ForeignCaller => "foreign_caller", Policy, FORBIDDEN, false;
    UnknownService => "unknown_service", Policy, FORBIDDEN, false;
    // The caller's request.
    HeadTooLarge => "head_too_large", Downstream, REQUEST_HEADER_FIELDS_TOO_LARGE, false;
    BadRequest => "bad_request", Downstream, BAD_REQUEST, false;
    // Local endpoints.
    Unavailable => "unavailable", Upstream, SERVICE_UNAVAILABLE, true;
    Timeout => "timeout", Upstream, GATEWAY_TIMEOUT, false;
    UpstreamError => "upstream_error", Upstream, BAD_GATEWAY, false;
    // Dialling a peer.
    UnknownPeer => "unknown_peer", Internal, SERVICE_UNAVAILABLE, false;
    PeerUnreachable => "peer_unreachable", Peer, SERVICE_UNAVAILABLE, true;
    PeerBackoff => "peer_backoff", Peer, SERVICE_UNAVAILABLE, true;
    PeerStream => "peer_stream", Peer, SERVICE_UNAVAILABLE, true;
    // A peer's stream reset, or its connection lost.
    PeerConnectionLost => "peer_connection_lost", Peer, SERVICE_UNAVAILABLE, true;
    PeerRefused => "peer_refused", Policy, FORBIDDEN, false;
    PeerUnavailable => "peer_unavailable", Peer, SERVICE_UNAVAILABLE, true;
    PeerDraining => "peer_draining", Peer, SERVICE_UNAVAILABLE, true;
    PeerOverloaded => "peer_overloaded", Peer, SERVICE_UNAVAILABLE, true;
    PeerHeaderInvalid => "peer_header_invalid", Peer, BAD_GATEWAY, false;
    PeerVersionUnsupported => "peer_version_unsupported", Peer, BAD_GATEWAY, false;
    PeerTimeout => "peer_timeout", Peer, GATEWAY_TIMEOUT, false;
    PeerError => "peer_error", Peer, BAD_GATEWAY, false;
    // A peer's answer naming its reason (x-causeway-refusal).
    PeerDenied => "peer_denied", Policy, FORBIDDEN, false;
    PeerForeignCaller => "peer_foreign_caller", Policy, FORBIDDEN, false;
    PeerUnknownService => "peer_unknown_service", Policy, FORBIDDEN, false;
    PeerNotAPeerGateway => "peer_not_a_peer_gateway", Policy, FORBIDDEN, false;
    PeerNoRoute => "peer_no_route", Policy, NOT_FOUND, false;
    PeerUpstreamError => "peer_upstream_error", Peer, BAD_GATEWAY, false;
    PeerOther => "peer_other", Peer, BAD_GATEWAY, false;
    // A peer's stream that this gateway refused or could not read.
    BadMagic => "bad_magic", Peer, BAD_REQUEST, false;
    UnsupportedVersion => "unsupported_version", Peer, BAD_REQUEST, false;
    TooLarge => "too_large", Peer, BAD_REQUEST, false;
    Empty => "empty", Peer, BAD_REQUEST, false;
    Truncated => "truncated", Peer, BAD_REQUEST, false;
    Undecodable => "undecodable", Peer, BAD_REQUEST, false;
    InvalidField => "invalid_field", Peer, BAD_REQUEST, false;
    HeaderIo => "io", Peer, BAD_REQUEST, false;
    HeaderTimeout => "header_timeout", Peer, REQUEST_TIMEOUT, false;
    InvalidFrame => "invalid_frame", Peer, BAD_REQUEST, false;
    StreamReset => "reset", Peer, BAD_GATEWAY, false;
    // This gateway.
    Overloaded => "overloaded", Internal, SERVICE_UNAVAILABLE, true;
    Draining => "draining", Internal, SERVICE_UNAVAILABLE, true;
}

impl Reason {
    /// The label of the outbound result when the peer gateway answered
    /// itself with `reason` (its `x-causeway-refusal`).
    pub fn from_peer(label: &[u8]) -> Self {
        match Self::from_label(label) {
            Some(Self::Denied) => Self::PeerDenied,
            Some(Self::ForeignCaller) => Self::PeerForeignCaller,
            Some(Self::UnknownService) => Self::PeerUnknownService,
            Some(Self::NotAPeerGateway) => Self::PeerNotAPeerGateway,
            Some(Self::NoRoute) => Self::PeerNoRoute,
            Some(Self::Unavailable) => Self::PeerUnavailable,
            Some(Self::Timeout) => Self::PeerTimeout,
            Some(Self::UpstreamError) => Self::PeerUpstreamError,
            _ => Self::PeerOther,
        }
    }

    /// The gRPC status a gRPC caller gets for an answer of this reason
    /// (grpc/doc/statuscodes.md).
    pub fn grpc_status(self) -> u8 {
        match self.status() {
            StatusCode::FORBIDDEN => 7,                       // PERMISSION_DENIED
            StatusCode::NOT_FOUND => 12,                      // UNIMPLEMENTED
            StatusCode::GATEWAY_TIMEOUT => 4,                 // DEADLINE_EXCEEDED
            StatusCode::SERVICE_UNAVAILABLE => 14,            // UNAVAILABLE
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => 8, // RESOURCE_EXHAUSTED
            StatusCode::BAD_REQUEST => 13,                    // INTERNAL
            _ => 14,                                          // UNAVAILABLE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_read_back() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "{} twice", r.as_str());
            assert_eq!(Reason::from_label(r.as_str().as_bytes()), Some(*r));
        }
        assert_eq!(Reason::from_peer(b"denied"), Reason::PeerDenied);
        assert_eq!(Reason::from_peer(b"<script>"), Reason::PeerOther);
    }
}
