//! ldirectord's `service` names and the well-known ports it ties them to.

use serde::{Deserialize, Serialize};

/// What a negotiate check speaks (`service`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Dns,
    Ftp,
    Http,
    Https,
    HttpProxy,
    Imap,
    Imaps,
    Ldap,
    Ldaps,
    Nntp,
    Mysql,
    None,
    Oracle,
    Pop,
    Pops,
    Radius,
    Pgsql,
    Sip,
    Smtp,
    Submission,
    Simpletcp,
}

impl Service {
    /// Every service, in the order of ldirectord's `service` branch.
    pub const ALL: [Service; 21] = [
        Service::Dns,
        Service::Ftp,
        Service::Http,
        Service::Https,
        Service::HttpProxy,
        Service::Imap,
        Service::Imaps,
        Service::Ldap,
        Service::Ldaps,
        Service::Nntp,
        Service::Mysql,
        Service::None,
        Service::Oracle,
        Service::Pop,
        Service::Pops,
        Service::Radius,
        Service::Pgsql,
        Service::Sip,
        Service::Smtp,
        Service::Submission,
        Service::Simpletcp,
    ];

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Dns => "dns",
            Service::Ftp => "ftp",
            Service::Http => "http",
            Service::Https => "https",
            Service::HttpProxy => "http_proxy",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
            Service::Ldap => "ldap",
            Service::Ldaps => "ldaps",
            Service::Nntp => "nntp",
            Service::Mysql => "mysql",
            Service::None => "none",
            Service::Oracle => "oracle",
            Service::Pop => "pop",
            Service::Pops => "pops",
            Service::Radius => "radius",
            Service::Pgsql => "pgsql",
            Service::Sip => "sip",
            Service::Smtp => "smtp",
            Service::Submission => "submission",
            Service::Simpletcp => "simpletcp",
        }
    }

    pub fn from_name(name: &[u8]) -> Option<Service> {
        Service::ALL
            .into_iter()
            .find(|s| s.as_str().as_bytes() == name)
    }

    /// ldirectord's `ld_service_to_port`: the port a check uses when neither `checkport` nor
    /// the real's port says otherwise.
    pub fn well_known_port(self) -> Option<u16> {
        PORTS.iter().find(|(_, s)| *s == self).map(|(p, _)| *p)
    }

    /// ldirectord's `ld_port_to_service`. It compares with Perl's `eq`, i.e. as strings, so a
    /// port written with leading zeros (`080`) maps to `none`.
    pub fn from_port_text(port: &str) -> Service {
        PORTS
            .iter()
            .find(|(p, _)| p.to_string() == port)
            .map_or(Service::None, |(_, s)| *s)
    }
}

const PORTS: [(u16, Service); 19] = [
    (21, Service::Ftp),
    (25, Service::Smtp),
    (53, Service::Dns),
    (80, Service::Http),
    (110, Service::Pop),
    (119, Service::Nntp),
    (143, Service::Imap),
    (389, Service::Ldap),
    (443, Service::Https),
    (587, Service::Submission),
    (636, Service::Ldaps),
    (993, Service::Imaps),
    (995, Service::Pops),
    (1521, Service::Oracle),
    (1812, Service::Radius),
    (3128, Service::HttpProxy),
    (3306, Service::Mysql),
    (5060, Service::Sip),
    (5432, Service::Pgsql),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_both_ways() {
        for (port, service) in PORTS {
            assert_eq!(service.well_known_port(), Some(port));
            assert_eq!(Service::from_port_text(&port.to_string()), service);
        }
        assert_eq!(Service::None.well_known_port(), None);
        assert_eq!(Service::Simpletcp.well_known_port(), None);
        assert_eq!(Service::from_port_text("8080"), Service::None);
    }

    #[test]
    fn leading_zeros_are_not_the_port() {
        assert_eq!(Service::from_port_text("080"), Service::None);
    }

    #[test]
    fn names_round_trip() {
        for s in Service::ALL {
            assert_eq!(Service::from_name(s.as_str().as_bytes()), Some(s));
        }
        assert_eq!(Service::from_name(b"HTTP"), None);
    }
}
