//! Label sets, named as node_exporter's IPVS collector names them (`local_address`,
//! `local_port`, `remote_address`, `remote_port`, `proto`, `local_mark`), so that dashboards
//! written for it read xdirectord's series too.

use std::net::IpAddr;

use crate::table::{ServiceKey, protocol_name};

/// A label set: names and values, in order.
pub type Labels = Vec<(&'static str, String)>;

/// A virtual service's labels. An address service has an empty `local_mark`; a firewall-mark
/// service has `proto="FWM"`, the mark in decimal, and an empty address with port 0, as
/// `/proc/net/ip_vs` (which node_exporter reads) has no address for it.
pub fn service(key: &ServiceKey) -> Labels {
    match *key {
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        } => vec![
            ("local_address", addr.to_string()),
            ("local_port", port.to_string()),
            ("proto", protocol_name(protocol).to_string()),
            ("local_mark", String::new()),
        ],
        ServiceKey::Fwmark { mark, .. } => vec![
            ("local_address", String::new()),
            ("local_port", "0".to_string()),
            ("proto", "FWM".to_string()),
            ("local_mark", mark.to_string()),
        ],
    }
}

/// A real's labels: its virtual's, then its address and port in the data plane.
pub fn real(key: &ServiceKey, addr: IpAddr, port: u16) -> Labels {
    let mut labels = service(key);
    labels.push(("remote_address", addr.to_string()));
    labels.push(("remote_port", port.to_string()));
    labels
}

/// `labels` with one more.
pub fn with(mut labels: Labels, name: &'static str, value: impl Into<String>) -> Labels {
    labels.push((name, value.into()));
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Protocol;

    fn text(labels: &Labels) -> String {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn address_services_name_address_port_and_protocol() {
        let v6 = ServiceKey::Inet {
            protocol: Protocol::Udp,
            addr: "fd00:200::100".parse().unwrap(),
            port: 53,
        };
        assert_eq!(
            text(&real(&v6, "fd00:200::11".parse().unwrap(), 53)),
            "local_address=fd00:200::100,local_port=53,proto=UDP,local_mark=,\
             remote_address=fd00:200::11,remote_port=53"
        );
        let v4 = ServiceKey::Inet {
            protocol: Protocol::Tcp,
            addr: "10.200.0.100".parse().unwrap(),
            port: 80,
        };
        assert_eq!(
            text(&service(&v4)),
            "local_address=10.200.0.100,local_port=80,proto=TCP,local_mark="
        );
    }

    #[test]
    fn firewall_marks_have_the_mark_and_no_address() {
        let key = ServiceKey::Fwmark {
            mark: 42,
            ipv6: false,
        };
        assert_eq!(
            text(&with(service(&key), "check", "http")),
            "local_address=,local_port=0,proto=FWM,local_mark=42,check=http"
        );
    }
}
