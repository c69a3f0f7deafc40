//! What ldirectord does when a block ends: resolve the block's fallback, then the virtual
//! address, then the reals, and build the id its duplicate check compares.

use std::net::{IpAddr, SocketAddr};

use crate::block::{BlockProtocol, Target, VirtualBlock};
use crate::diagnostics::Diagnostic;
use crate::fallback;
use crate::lookup::{self, split_host_port};
use crate::model::{Fallback, Family, Protocol, VirtualAddress};
use crate::parse::Reader;
use crate::quirk;
use crate::real::{self, ParsedReal};
use crate::service::Service;
use crate::value::{digits_value, text};

/// A block after resolution; global settings are applied later, once the whole file is read.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedVirtual {
    pub block: VirtualBlock,
    pub id: String,
    pub address: VirtualAddress,
    pub service: Service,
    pub reals: Vec<ParsedReal>,
    pub fallback: Option<Fallback>,
}

pub(crate) fn resolve(
    reader: &mut Reader<'_>,
    block: VirtualBlock,
) -> Result<ResolvedVirtual, Diagnostic> {
    let fallback = match &block.fallback {
        Some(parsed) => {
            Some(fallback::resolve(reader, parsed, block.protocol.as_str(), block.family)?.0)
        }
        None => None,
    };

    let (address, id, port_text) = match &block.target {
        Target::Socket { ip_port } => {
            let invalid = || Diagnostic::error(block.line, "invalid address for virtual service");
            // `ld_gethostservbyname`, then the split on the resolved text.
            let (host, port) = split_host_port(ip_port);
            let host = reader
                .resolve_host(host, block.family, block.line)
                .ok_or_else(invalid)?;
            let port = port
                .and_then(|p| lookup::port(reader.env, p, block.protocol.as_str()))
                .ok_or_else(invalid)?;
            let protocol = match block.protocol {
                BlockProtocol::Udp => Protocol::Udp,
                _ => Protocol::Tcp,
            };
            if port.text.len() > 1 && port.text.starts_with('0') {
                reader.warn(quirk::leading_zeros(block.line, "port", &port.text));
            }
            let id = format!("{}:{}:{}", block.protocol.as_str(), host.text, port.text);
            let address = VirtualAddress::Socket {
                protocol,
                address: SocketAddr::new(host.address, port.number),
            };
            (address, id, Some(port.text))
        }
        Target::Fwmark { digits } => {
            let value = digits_value(digits);
            let mark = u32::try_from(value).unwrap_or_else(|_| {
                reader.warn(quirk::too_large(
                    block.line,
                    "firewall mark",
                    digits,
                    u64::from(u32::MAX),
                ));
                u32::MAX
            });
            if mark == 0 {
                reader.warn(quirk::zero_fwmark(block.line));
            } else if digits.starts_with(b"0") {
                reader.warn(quirk::leading_zeros(
                    block.line,
                    "firewall mark",
                    &text(digits),
                ));
            }
            let six = if block.family == Family::Inet6 {
                "6"
            } else {
                ""
            };
            let id = format!("fwm{six}:{}", text(digits));
            (
                VirtualAddress::Fwmark {
                    mark,
                    family: block.family,
                },
                id,
                None,
            )
        }
    };
    let service = match (block.service, &port_text) {
        (Some(service), _) => service,
        (None, Some(port)) => Service::from_port_text(port),
        (None, None) => Service::None,
    };

    let reals = real::resolve_all(reader, &block.reals, block.family)?;
    debug_assert!(reals.iter().all(|r| matches!(
        (r.address, block.family),
        (IpAddr::V4(_), Family::Inet) | (IpAddr::V6(_), Family::Inet6)
    )));
    Ok(ResolvedVirtual {
        block,
        id,
        address,
        service,
        reals,
        fallback,
    })
}
