//! Who sent a request: the socket peer, or, when that peer is a trusted proxy (the ingress in
//! front of the service), the client address the proxies report in `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is believed only from the configured proxies, and only as far as it was
//! written by them: each proxy appends the address it received the request from, so the list is
//! read from the right, skipping trusted proxies, and the first address that is not one is the
//! client. Whatever a client writes into the header itself sits to the left of that and is never
//! read. (actix-web's `realip_remote_addr` takes the leftmost value, which any client can set.)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use actix_web::HttpRequest;
use ipnet::IpNet;

const FORWARDED_FOR: &str = "x-forwarded-for";

/// The proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A `TRUSTED_PROXIES` entry is neither an address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or a CIDR block (10.0.0.0/8, fd00::/8)")]
pub struct InvalidProxy(String);

impl TrustedProxies {
    /// No proxy is trusted: the client is always the socket peer.
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether any proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of `req`: see the module documentation. A request without a peer address
    /// (only in tests) is `0.0.0.0`.
    pub fn client(&self, req: &HttpRequest) -> IpAddr {
        let Some(peer) = req.peer_addr().map(|a| canonical(a.ip())) else {
            return IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        };
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = req
            .headers()
            .get_all(FORWARDED_FOR)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // A hop that does not parse was not written by a proxy we trust: stop at the last
            // address one of them vouched for.
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

impl FromStr for TrustedProxies {
    type Err = InvalidProxy;

    /// Comma-separated addresses (`10.1.2.3`) and CIDR blocks (`10.0.0.0/8`).
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| InvalidProxy(entry.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

/// One `X-Forwarded-For` hop: an address, possibly with a port (`1.2.3.4:5678`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// IPv4 addresses reach a dual-stack socket as `::ffff:a.b.c.d`; compare them as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use proptest::prelude::*;

    use super::*;

    fn request(peer: &str, forwarded: &[&str]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().unwrap());
        for value in forwarded {
            req = req.append_header((FORWARDED_FOR, *value));
        }
        req.to_http_request()
    }

    fn proxies(list: &str) -> TrustedProxies {
        list.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let req = request("203.0.113.7:5000", &["198.51.100.1"]);
        assert_eq!(
            TrustedProxies::none().client(&req),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_first_untrusted_hop_from_the_right_is_the_client() {
        let trusted = proxies("10.0.0.0/8, 192.168.1.1");
        // The client forged a leftmost value; the ingress appended the real address.
        let req = request("10.0.0.5:40000", &["6.6.6.6, 203.0.113.7", "192.168.1.1"]);
        assert_eq!(
            trusted.client(&req),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is never read.
        let req = request("203.0.113.9:1", &["10.0.0.1"]);
        assert_eq!(
            trusted.client(&req),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // No header: the proxy itself.
        let req = request("10.0.0.5:40000", &[]);
        assert_eq!(trusted.client(&req), "10.0.0.5".parse::<IpAddr>().unwrap());
        // Garbage to the right of a trusted hop: stop at what a proxy vouched for.
        let req = request("10.0.0.5:40000", &["203.0.113.7, not-an-ip"]);
        assert_eq!(trusted.client(&req), "10.0.0.5".parse::<IpAddr>().unwrap());
        // Ports and IPv4-mapped IPv6 peers.
        let req = request("[::ffff:10.0.0.5]:40000", &["203.0.113.7:5678"]);
        assert_eq!(
            trusted.client(&req),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn proxy_lists_accept_addresses_and_blocks_and_refuse_anything_else() {
        assert_eq!(proxies(" , ").0.len(), 0);
        assert_eq!(proxies("10.0.0.0/8,fd00::/8, 127.0.0.1").0.len(), 3);
        for bad in ["10.0.0.0/33", "ingress", "10.0.0.1/8/8", "::1/200"] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_header_yields_an_address_the_proxies_or_the_peer_vouch_for(
            header in "[0-9a-f.:, \\[\\]x-]{0,80}",
        ) {
            let trusted = proxies("10.0.0.0/8");
            let req = request("10.0.0.5:1", &[&header]);
            let client = trusted.client(&req);
            // Either the peer or something that parsed out of the header.
            prop_assert!(
                client == "10.0.0.5".parse::<IpAddr>().unwrap()
                    || header.split(',').any(|hop| parse_hop(hop) == Some(client))
            );
        }

        #[test]
        fn proxy_lists_never_panic(list in "\\PC{0,64}") {
            let _ = list.parse::<TrustedProxies>();
        }
    }
}
