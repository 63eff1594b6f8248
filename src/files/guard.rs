//! Where downloads may go. A dump is other people's data: a URL in it must not make this
//! tool read the machine's own services or the cloud's metadata endpoint. Every address a
//! name resolves to is checked, and the connection goes to a checked address only (the
//! resolver below is the one reqwest connects through), so a name that resolves to a
//! public address once and to a private one the next time cannot slip past.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why an address is refused, or `None` when downloads may go there.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        // 169.254.169.254 is the metadata endpoint of AWS, GCP, Azure and others.
        Some("a link-local address (cloud metadata endpoints among them)")
    } else if a == 100 && (64..128).contains(&b) {
        // 100.100.100.200 is Alibaba Cloud's metadata endpoint.
        Some("a carrier-grade NAT address (100.64.0.0/10)")
    } else if a == 0 || ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("a broadcast, multicast or reserved address")
    } else if a == 192 && b == 0 && c == 0 {
        Some("an IETF protocol address (192.0.0.0/24)")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("a benchmarking address (198.18.0.0/15)")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16)
    // reach the IPv4 address they carry.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refused_v4(v4);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return refused_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return refused_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if s[0] & 0xfe00 == 0xfc00 {
        // fd00:ec2::254 is AWS's IPv6 metadata endpoint.
        Some("a unique-local address (fc00::/7, cloud metadata endpoints among them)")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("a link-local address (fe80::/10)")
    } else if s[0] & 0xff00 == 0xff00 {
        Some("a multicast address")
    } else if s[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated) ::a.b.c.d.
        refused_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ))
    } else {
        None
    }
}

/// The error a refused name resolves to; found again in reqwest's error chain.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Whether an error (reqwest's, with its sources) is a refusal of the guard: its reason.
pub fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.0.clone());
        }
        next = err.source();
    }
    None
}

/// reqwest's resolver for downloads: the system's, keeping only addresses the guard
/// allows (all of them with `allow_private`).
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?
                .collect();
            let (allowed, refused_addrs): (Vec<SocketAddr>, Vec<SocketAddr>) = found
                .into_iter()
                .partition(|a| allow_private || refused(a.ip()).is_none());
            if allowed.is_empty() {
                let why = refused_addrs
                    .first()
                    .and_then(|a| refused(a.ip()))
                    .unwrap_or("no address");
                return Err(Box::new(Refused(format!(
                    "{host} resolves to {why}, which downloads may not reach (`files: {{allow_private_hosts: true}}` allows it)"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The resolver, shared.
pub fn resolver(allow_private: bool) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver { allow_private })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        for s in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::127.0.0.1",
        ] {
            assert!(refused(ip(s)).is_some(), "{s} must be refused");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "fec0::1",
        ] {
            assert_eq!(refused(ip(s)), None, "{s} must be allowed");
        }
    }

    #[test]
    fn reasons_name_the_kind_of_address() {
        assert!(refused(ip("169.254.169.254")).unwrap().contains("metadata"));
        assert!(
            refused(ip("fd00:ec2::254"))
                .unwrap()
                .contains("unique-local")
        );
        assert!(
            refused(ip("::ffff:192.168.0.1"))
                .unwrap()
                .contains("private")
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_private_addresses_unless_allowed() {
        use reqwest::dns::Resolve;
        let name = |s: &str| s.parse::<reqwest::dns::Name>().unwrap();
        let err = match resolver(false).resolve(name("localhost")).await {
            Err(e) => e,
            Ok(_) => panic!("localhost must be refused"),
        };
        let reason = refusal(err.as_ref()).expect("a refusal");
        assert!(reason.contains("loopback"), "{reason}");
        let addrs: Vec<SocketAddr> = match resolver(true).resolve(name("localhost")).await {
            Ok(a) => a.collect(),
            Err(e) => panic!("{e}"),
        };
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
