//! Which address a request comes from. Behind a TLS proxy every request's TCP peer is the proxy,
//! so per-address limits would lump all students together; the proxy names the real client in
//! `Forwarded` (RFC 7239) or `X-Forwarded-For`. Those headers are anyone's to write, so they
//! are believed only when the peer is a proxy the operator named (`TRUSTED_PROXIES`), and only
//! as far back as the chain stays within trusted proxies.

use std::net::IpAddr;

use axum::http::{header, HeaderMap};

/// One address, or a network in CIDR form (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn parse(text: &str) -> Result<IpRange, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR network"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| format!("{text:?}: the prefix must be 0 to {bits}"))?,
        };
        Ok(IpRange { network, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let keep = |bits: u32, value: u128| {
            let shift = bits - u32::from(self.prefix);
            if shift >= 128 {
                0
            } else {
                value >> shift
            }
        };
        // An IPv4 client seen through an IPv6 socket (`::ffff:192.0.2.1`) is that IPv4 client.
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                keep(32, u128::from(u32::from(net))) == keep(32, u128::from(u32::from(ip)))
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                keep(128, u128::from(net)) == keep(128, u128::from(ip))
            }
            _ => false,
        }
    }
}

/// The proxies whose forwarding headers are believed; none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpRange>);

impl TrustedProxies {
    /// A comma-separated list of addresses and CIDR networks.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        list.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(IpRange::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    /// The client's address: the TCP peer, or, when the peer is a trusted proxy, the nearest
    /// address in the forwarding chain that is not one. A chain that cannot be read counts as
    /// coming from the last trusted proxy in it, never from an address someone wrote.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let chain = forwarded_chain(headers);
        let mut client = peer;
        for hop in chain.iter().rev() {
            let Some(ip) = hop.map(|ip| ip.to_canonical()) else {
                return client;
            };
            client = ip;
            if !self.trusts(ip) {
                return ip;
            }
        }
        client
    }
}

/// The `for` addresses of `Forwarded` (when present) or else `X-Forwarded-For`, client first;
/// `None` for a hop that names no address (`unknown`, an obfuscated name, garbage).
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect::<Vec<&str>>()
    };
    let forwarded = values(header::FORWARDED);
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, node)| parse_node(node.trim().trim_matches('"')))
            })
            .collect();
    }
    values(header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .map(|node| parse_node(node))
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse().ok().or_else(|| {
        let (address, port) = node.rsplit_once(':')?;
        port.parse::<u16>().ok()?;
        address.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn ranges_hold_what_their_prefix_covers() {
        let net = IpRange::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        let one = IpRange::parse("2001:db8::1").unwrap();
        assert!(one.contains(ip("2001:db8::1")) && !one.contains(ip("2001:db8::2")));
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0/8", "::/129"] {
            assert!(IpRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_count_only_from_a_trusted_peer() {
        let proxies = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.7")]);
        // A peer nobody trusts cannot name another address.
        assert_eq!(
            proxies.client_ip(ip("198.51.100.2"), &forwarded),
            ip("198.51.100.2")
        );
        assert_eq!(
            proxies.client_ip(ip("127.0.0.1"), &forwarded),
            ip("203.0.113.7")
        );
        // Without the setting, nothing is believed.
        assert_eq!(
            TrustedProxies::default().client_ip(ip("127.0.0.1"), &forwarded),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_chain_is_read_from_the_nearest_hop_back_to_the_first_untrusted_one() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The client wrote a first entry of its own; the proxies appended the real ones.
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.0.0.5")]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.9"), &spoofed),
            ip("203.0.113.7")
        );
        let rfc = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=https, for="[2001:db8:cafe::17]:4711""#,
        )]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.9"), &rfc),
            ip("2001:db8:cafe::17")
        );
        // An unreadable hop stops the walk at the last trusted proxy.
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.9"), &unknown), ip("10.0.0.9"));
        let with_port = headers(&[("x-forwarded-for", "203.0.113.7:5123")]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.9"), &with_port),
            ip("203.0.113.7")
        );
    }
}
