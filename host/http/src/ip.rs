//! Which destination addresses a plugin may never reach.
//!
//! Only globally routable unicast addresses pass. Everything else (loopback, private, link-local,
//! CGNAT, unspecified, multicast, broadcast, documentation, benchmarking, reserved, unique-local,
//! cloud metadata endpoints) is refused, and so are the IPv6 forms that carry an IPv4 address
//! (IPv4-mapped, IPv4-compatible, NAT64, 6to4) when the address inside is refused. IPv6 outside
//! `2000::/3` is never global unicast, so it is refused as a whole rather than range by range.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// `169.254.169.254`, `fd00:ec2::254`: cloud instance metadata (credentials live there).
    Metadata,
    Unspecified,
    Loopback,
    /// RFC 1918.
    Private,
    /// `100.64.0.0/10`, RFC 6598.
    Cgnat,
    LinkLocal,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// `fc00::/7`.
    UniqueLocal,
    /// Deprecated `fec0::/10`.
    SiteLocal,
    /// `0.0.0.0/8`, `240.0.0.0/4`, IETF protocol assignments, non-global IPv6 space and the like.
    Reserved,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Metadata => "cloud metadata",
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::Cgnat => "carrier-grade NAT",
            Self::LinkLocal => "link-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Benchmarking => "benchmarking",
            Self::UniqueLocal => "unique-local",
            Self::SiteLocal => "site-local",
            Self::Reserved => "reserved",
        })
    }
}

/// How an IPv4 address was wrapped in an IPv6 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d`.
    Mapped,
    /// `::a.b.c.d` (deprecated).
    Compatible,
    /// `64:ff9b::a.b.c.d`.
    Nat64,
    /// `2002:aabb:ccdd::/48`.
    SixToFour,
}

/// A refused address: its class, and the IPv6 wrapping it arrived in, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prohibited {
    pub class: AddressClass,
    pub via: Option<Embedding>,
}

impl fmt::Display for Prohibited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            None => write!(f, "{}", self.class),
            Some(Embedding::Mapped) => write!(f, "IPv4-mapped {}", self.class),
            Some(Embedding::Compatible) => write!(f, "IPv4-compatible {}", self.class),
            Some(Embedding::Nat64) => write!(f, "NAT64 {}", self.class),
            Some(Embedding::SixToFour) => write!(f, "6to4 {}", self.class),
        }
    }
}

/// Why `ip` may not be reached, or `None` for a global unicast address.
pub fn prohibited(ip: IpAddr) -> Option<Prohibited> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4).map(|class| Prohibited { class, via: None }),
        IpAddr::V6(v6) => v6_prohibited(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn v4_class(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass as C;
    // Most specific first: the metadata address sits inside link-local, broadcast inside 240/4.
    const TABLE: &[([u8; 4], u32, AddressClass)] = &[
        ([169, 254, 169, 254], 32, C::Metadata),
        ([0, 0, 0, 0], 32, C::Unspecified),
        ([255, 255, 255, 255], 32, C::Broadcast),
        ([0, 0, 0, 0], 8, C::Reserved),
        ([10, 0, 0, 0], 8, C::Private),
        ([100, 64, 0, 0], 10, C::Cgnat),
        ([127, 0, 0, 0], 8, C::Loopback),
        ([169, 254, 0, 0], 16, C::LinkLocal),
        ([172, 16, 0, 0], 12, C::Private),
        ([192, 0, 0, 0], 24, C::Reserved),
        ([192, 0, 2, 0], 24, C::Documentation),
        ([192, 88, 99, 0], 24, C::Reserved),
        ([192, 168, 0, 0], 16, C::Private),
        ([198, 18, 0, 0], 15, C::Benchmarking),
        ([198, 51, 100, 0], 24, C::Documentation),
        ([203, 0, 113, 0], 24, C::Documentation),
        ([224, 0, 0, 0], 4, C::Multicast),
        ([240, 0, 0, 0], 4, C::Reserved),
    ];
    TABLE
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, class)| *class)
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

fn v6_prohibited(ip: Ipv6Addr) -> Option<Prohibited> {
    use AddressClass as C;
    let plain = |class| Some(Prohibited { class, via: None });
    let bits = u128::from(ip);
    let low_v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let embedded = |via: Embedding, v4: Ipv4Addr| {
        // Even a global IPv4 address inside a transition form is allowed only in the mapped form,
        // which the kernel routes as plain IPv4; the others depend on translators we don't control.
        match (v4_class(v4), via) {
            (Some(class), _) => Some(Prohibited {
                class,
                via: Some(via),
            }),
            (None, Embedding::Mapped) => None,
            (None, _) => Some(Prohibited {
                class: C::Reserved,
                via: Some(via),
            }),
        }
    };
    if ip == Ipv6Addr::UNSPECIFIED {
        return plain(C::Unspecified);
    }
    if ip == Ipv6Addr::LOCALHOST {
        return plain(C::Loopback);
    }
    if ip == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254) {
        return plain(C::Metadata);
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return embedded(Embedding::Mapped, v4);
    }
    if bits >> 32 == 0 {
        return embedded(Embedding::Compatible, low_v4);
    }
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return embedded(Embedding::Nat64, low_v4);
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        let v4 = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return embedded(Embedding::SixToFour, v4);
    }
    let table: [(Ipv6Addr, u32, AddressClass); 8] = [
        (
            Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
            7,
            C::UniqueLocal,
        ),
        (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, C::LinkLocal),
        (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, C::SiteLocal),
        (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, C::Multicast),
        (
            Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
            32,
            C::Documentation,
        ),
        (
            Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
            20,
            C::Documentation,
        ),
        (
            Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0),
            48,
            C::Benchmarking,
        ),
        // IETF protocol assignments, including Teredo (2001::/32), which hides an IPv4 address.
        (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, C::Reserved),
    ];
    if let Some((_, _, class)) = table
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        return plain(*class);
    }
    // Global unicast is 2000::/3; the rest (100::/64 discard, 64:ff9b:1::/48 local NAT64, …) is not.
    if !in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        return plain(C::Reserved);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass as C;

    fn class(text: &str) -> Option<AddressClass> {
        prohibited(text.parse().unwrap()).map(|p| p.class)
    }

    #[test]
    fn ipv4_ranges_and_their_edges() {
        let cases: &[(&str, Option<AddressClass>)] = &[
            ("0.0.0.0", Some(C::Unspecified)),
            ("0.1.2.3", Some(C::Reserved)),
            ("0.255.255.255", Some(C::Reserved)),
            ("1.0.0.0", None),
            ("9.255.255.255", None),
            ("10.0.0.0", Some(C::Private)),
            ("10.0.0.1", Some(C::Private)),
            ("10.255.255.255", Some(C::Private)),
            ("11.0.0.0", None),
            ("100.63.255.255", None),
            ("100.64.0.0", Some(C::Cgnat)),
            ("100.127.255.255", Some(C::Cgnat)),
            ("100.128.0.0", None),
            ("126.255.255.255", None),
            ("127.0.0.1", Some(C::Loopback)),
            ("127.255.255.254", Some(C::Loopback)),
            ("128.0.0.0", None),
            ("169.253.255.255", None),
            ("169.254.0.1", Some(C::LinkLocal)),
            ("169.254.169.254", Some(C::Metadata)),
            ("169.254.169.253", Some(C::LinkLocal)),
            ("169.254.255.255", Some(C::LinkLocal)),
            ("169.255.0.0", None),
            ("172.15.255.255", None),
            ("172.16.0.0", Some(C::Private)),
            ("172.31.255.255", Some(C::Private)),
            ("172.32.0.0", None),
            ("192.0.0.8", Some(C::Reserved)),
            ("192.0.1.0", None),
            ("192.0.2.1", Some(C::Documentation)),
            ("192.88.99.1", Some(C::Reserved)),
            ("192.167.255.255", None),
            ("192.168.0.0", Some(C::Private)),
            ("192.168.255.255", Some(C::Private)),
            ("192.169.0.0", None),
            ("198.17.255.255", None),
            ("198.18.0.0", Some(C::Benchmarking)),
            ("198.19.255.255", Some(C::Benchmarking)),
            ("198.20.0.0", None),
            ("198.51.100.7", Some(C::Documentation)),
            ("203.0.113.9", Some(C::Documentation)),
            ("203.0.114.0", None),
            ("223.255.255.255", None),
            ("224.0.0.1", Some(C::Multicast)),
            ("239.255.255.255", Some(C::Multicast)),
            ("240.0.0.0", Some(C::Reserved)),
            ("255.255.255.254", Some(C::Reserved)),
            ("255.255.255.255", Some(C::Broadcast)),
            ("8.8.8.8", None),
            ("20.50.2.1", None),
            ("52.239.1.1", None),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), *want, "{ip}");
        }
    }

    #[test]
    fn ipv6_ranges_and_their_edges() {
        let cases: &[(&str, Option<AddressClass>)] = &[
            ("::", Some(C::Unspecified)),
            ("::1", Some(C::Loopback)),
            ("fd00:ec2::254", Some(C::Metadata)),
            ("fd00:ec2::253", Some(C::UniqueLocal)),
            ("fc00::1", Some(C::UniqueLocal)),
            ("fdff:ffff::1", Some(C::UniqueLocal)),
            ("fe80::1", Some(C::LinkLocal)),
            ("febf::1", Some(C::LinkLocal)),
            ("fec0::1", Some(C::SiteLocal)),
            ("ff02::1", Some(C::Multicast)),
            ("2001:db8::1", Some(C::Documentation)),
            ("3fff::1", Some(C::Documentation)),
            ("3fff:1000::1", None),
            ("2001:2::1", Some(C::Benchmarking)),
            ("2001::1", Some(C::Reserved)),
            ("2001:1ff::1", Some(C::Reserved)),
            ("2001:200::1", None),
            ("100::1", Some(C::Reserved)),
            ("64:ff9b:1::1", Some(C::Reserved)),
            ("1fff:ffff::1", Some(C::Reserved)),
            ("4000::1", Some(C::Reserved)),
            ("2606:4700::1111", None),
            ("2603:1030::1", None),
            ("3ffe::1", None),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), *want, "{ip}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_by_the_ipv4_address() {
        let p = |t: &str| prohibited(t.parse().unwrap());
        let via = |class, via| {
            Some(Prohibited {
                class,
                via: Some(via),
            })
        };
        assert_eq!(p("::ffff:127.0.0.1"), via(C::Loopback, Embedding::Mapped));
        assert_eq!(
            p("::ffff:169.254.169.254"),
            via(C::Metadata, Embedding::Mapped)
        );
        assert_eq!(p("::ffff:10.0.0.1"), via(C::Private, Embedding::Mapped));
        assert_eq!(p("::ffff:0.0.0.0"), via(C::Unspecified, Embedding::Mapped));
        assert_eq!(
            p("::ffff:8.8.8.8"),
            None,
            "a mapped global address is plain IPv4"
        );
        assert_eq!(p("::127.0.0.1"), via(C::Loopback, Embedding::Compatible));
        assert_eq!(p("::8.8.8.8"), via(C::Reserved, Embedding::Compatible));
        assert_eq!(p("64:ff9b::7f00:1"), via(C::Loopback, Embedding::Nat64));
        assert_eq!(p("64:ff9b::a9fe:a9fe"), via(C::Metadata, Embedding::Nat64));
        assert_eq!(p("64:ff9b::808:808"), via(C::Reserved, Embedding::Nat64));
        assert_eq!(p("2002:7f00:1::1"), via(C::Loopback, Embedding::SixToFour));
        assert_eq!(p("2002:c0a8:101::1"), via(C::Private, Embedding::SixToFour));
        assert_eq!(p("2002:808:808::1"), via(C::Reserved, Embedding::SixToFour));
    }

    #[test]
    fn display_names_the_class_and_the_wrapping() {
        let p = prohibited("::ffff:127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(p.to_string(), "IPv4-mapped loopback");
        let p = prohibited("169.254.169.254".parse().unwrap()).unwrap();
        assert_eq!(p.to_string(), "cloud metadata");
    }

    #[test]
    fn every_ipv4_slash8_is_classified_consistently_with_std() {
        // Cross-check against std's stable predicates on one address per /8 and the edges.
        for first in 0..=255u8 {
            for ip in [
                Ipv4Addr::new(first, 0, 0, 1),
                Ipv4Addr::new(first, 255, 255, 254),
            ] {
                let std_says_local = ip.is_private()
                    || ip.is_loopback()
                    || ip.is_link_local()
                    || ip.is_multicast()
                    || ip.is_documentation()
                    || ip.is_broadcast()
                    || ip.is_unspecified();
                if std_says_local {
                    assert!(v4_class(ip).is_some(), "{ip} is local per std but allowed");
                }
            }
        }
    }
}
