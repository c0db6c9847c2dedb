#![allow(clippy::unwrap_used, reason = "tests")]

//! The stream header is a trust boundary: any bytes a peer sends must give a
//! header or a typed refusal, never a panic, and what we write reads back.

use std::time::{Duration, UNIX_EPOCH};

use causeway_gateway::service::ServiceName;
use causeway_gateway::transport::header::{
    DEFAULT_MAX_HEADER_LEN, Protocol, RequestHead, StreamHeader,
};
use causeway_trust::SpiffeId;
use proptest::prelude::*;

fn header() -> impl Strategy<Value = StreamHeader> {
    (
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
        1u16..,
        "[a-z0-9.-]{1,30}",
        prop::collection::vec("[a-zA-Z0-9][a-zA-Z0-9._-]{0,9}", 1..4),
        prop::option::of((
            "[0-9a-f]{31}[1-9a-f]",
            "[0-9a-f]{15}[1-9a-f]",
            "[0-9a-f]{2}",
        )),
        prop::option::of(1u64..=4_000_000_000_000),
        "[ -~]{0,128}",
        any::<bool>(),
    )
        .prop_map(
            |(svc, port, td, segs, trace, deadline, rid, http)| StreamHeader {
                service: ServiceName::new(&svc).unwrap(),
                port,
                caller: SpiffeId::new(&format!("spiffe://{td}/{}", segs.join("/"))).unwrap(),
                traceparent: trace.map(|(t, p, f)| format!("00-{t}-{p}-{f}")),
                tracestate: None,
                deadline: deadline.map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
                request_id: rid,
                protocol: if http { Protocol::Http } else { Protocol::Tcp },
                request: http.then(|| RequestHead {
                    method: http::Method::GET,
                    path: http::uri::PathAndQuery::from_static("/"),
                    headers: http::HeaderMap::new(),
                    end_stream: true,
                    upgrade: false,
                }),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn what_we_write_reads_back(h in header(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut wire = h.encode();
        let header_len = wire.len();
        wire.extend_from_slice(&payload);
        let (back, used) = StreamHeader::decode(&wire, DEFAULT_MAX_HEADER_LEN).unwrap();
        prop_assert_eq!(back, h);
        prop_assert_eq!(used, header_len);
    }

    #[test]
    fn any_bytes_give_a_header_or_a_refusal(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = StreamHeader::decode(&bytes, DEFAULT_MAX_HEADER_LEN);
    }

    #[test]
    fn any_body_behind_a_valid_prefix_gives_a_header_or_a_refusal(body in prop::collection::vec(any::<u8>(), 1..256)) {
        let mut wire = vec![0xCA, 0x57, 1];
        wire.extend_from_slice(&(body.len() as u16).to_be_bytes());
        wire.extend_from_slice(&body);
        if let Err(e) = StreamHeader::decode(&wire, DEFAULT_MAX_HEADER_LEN) {
            prop_assert!(!e.reason().as_str().is_empty());
        }
    }

    #[test]
    fn every_cut_of_a_valid_header_is_truncated(h in header(), cut in any::<prop::sample::Index>()) {
        let wire = h.encode();
        let at = cut.index(wire.len());
        let e = StreamHeader::decode(&wire[..at], DEFAULT_MAX_HEADER_LEN).unwrap_err();
        prop_assert_eq!(e.reason().as_str(), "truncated");
    }
}
