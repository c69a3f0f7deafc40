//! The typed configuration: what an ldirectord file means once ldirectord has read it.
//!
//! Plain data, no I/O and nothing about backends. Every value is the one ldirectord would use
//! after `read_config` and `ld_setup`: names resolved once, defaults applied, per-virtual
//! settings falling back on the global ones. Field names follow the directive names, so a
//! reader of the configuration file can find them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::diagnostics::Diagnostic;
use crate::service::Service;

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// The file that was read, spelled as ldirectord spells it in messages (`$CONFIG`).
    pub path: PathBuf,
    /// ldirectord's `CFGNAME`: names the pid file (`/var/run/ldirectord.<name>.pid`) and our
    /// pin directory (`/sys/fs/bpf/xdirectord/<name>/`).
    pub name: String,
    pub global: GlobalSettings,
    /// In file order.
    pub virtuals: Vec<VirtualService>,
    /// Every warning, in the order ldirectord would print them (ours interleaved).
    pub warnings: Vec<Diagnostic>,
}

/// Global directives with ldirectord's defaults (`set_defaults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalSettings {
    /// `checktimeout`, seconds, as written; `None` when unset (ldirectord's -1).
    pub checktimeout: Option<u32>,
    /// `negotiatetimeout`, seconds, as written; `None` when unset.
    pub negotiatetimeout: Option<u32>,
    /// `checkinterval`, seconds (default 10).
    pub checkinterval: u32,
    /// `checkcount` (default 1; deprecated, only ping uses it).
    pub checkcount: u32,
    /// `failurecount` (default 1).
    pub failurecount: u32,
    /// `fallback`: applies to IPv4 virtuals that have none of their own.
    pub fallback: Option<GlobalFallback>,
    /// `fallback6`: applies to IPv6 virtuals that have none of their own.
    pub fallback6: Option<GlobalFallback>,
    /// `fallbackcommand`, raw (quotes are kept and reach the shell).
    pub fallbackcommand: Option<String>,
    /// `autoreload` (default no).
    pub autoreload: bool,
    /// `callback = "path"`.
    pub callback: Option<String>,
    /// `logfile` (default `/var/log/ldirectord.log`).
    pub logfile: LogTarget,
    /// `execute = <config>`: further instances, first appearance order, no duplicates.
    pub execute: Vec<String>,
    /// `fork` (default no).
    pub fork: bool,
    /// `supervised` (default no; a bare `supervised` means yes).
    pub supervised: bool,
    /// `quiescent` (default **no**: the man page's "yes" is wrong).
    pub quiescent: bool,
    /// `readdquiescent` (default no).
    pub readdquiescent: bool,
    /// `emailalert`: comma-separated addresses; `None` when unset (ldirectord's "").
    pub emailalert: Option<String>,
    /// `emailalertfreq`, seconds between repeats; 0 = never repeat.
    pub emailalertfreq: u32,
    /// `emailalertstatus` (default all).
    pub emailalertstatus: EmailAlertStatus,
    /// `emailalertfrom`, raw.
    pub emailalertfrom: Option<String>,
    /// `smtp`: server name or address; `None` = use the local mailer.
    pub smtp: Option<String>,
    /// `cleanstop` (default yes).
    pub cleanstop: bool,
    /// `maintenancedir`.
    pub maintenancedir: Option<PathBuf>,
    /// xdirectord `backend`; `None` lets the agent choose.
    pub backend: Option<BackendKind>,
    /// xdirectord `interface`; empty lets the agent choose.
    pub interfaces: Vec<String>,
    /// xdirectord `xdpmode`; `None` lets the agent choose.
    pub xdpmode: Option<XdpMode>,
    /// xdirectord `metrics`: where to serve Prometheus text.
    pub metrics: Option<SocketAddr>,
    /// xdirectord `tunnelsource`: per-flow outer sources for `ipip` reals, at most one prefix
    /// per family; empty: the director's address on the egress interface.
    pub tunnelsource: Vec<TunnelPrefix>,
    /// xdirectord `maxflows`: flows per address family the XDP flow tables hold.
    pub maxflows: u32,
    /// xdirectord `maxtemplates`: persistence templates per address family (XDP).
    pub maxtemplates: u32,
    /// xdirectord `maxvirtuals`: virtual services the XDP data plane holds.
    pub maxvirtuals: u32,
    /// xdirectord `maxreals`: real server ids the XDP data plane holds (one is reserved).
    pub maxreals: u32,
}

impl Default for GlobalSettings {
    fn default() -> Self {
        GlobalSettings {
            checktimeout: None,
            negotiatetimeout: None,
            checkinterval: 10,
            checkcount: 1,
            failurecount: 1,
            fallback: None,
            fallback6: None,
            fallbackcommand: None,
            autoreload: false,
            callback: None,
            logfile: LogTarget::File(PathBuf::from("/var/log/ldirectord.log")),
            execute: Vec::new(),
            fork: false,
            supervised: false,
            quiescent: false,
            readdquiescent: false,
            emailalert: None,
            emailalertfreq: 0,
            emailalertstatus: EmailAlertStatus::ALL,
            emailalertfrom: None,
            smtp: None,
            cleanstop: true,
            maintenancedir: None,
            backend: None,
            interfaces: Vec::new(),
            xdpmode: None,
            metrics: None,
            tunnelsource: Vec::new(),
            maxflows: lb_common::maps::DEFAULT_FLOWS,
            maxtemplates: lb_common::maps::PERSIST_TABLE_SIZE,
            maxvirtuals: lb_common::maps::MAX_VIPS,
            maxreals: lb_common::maps::MAX_REALS,
        }
    }
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogTarget {
    /// A value starting with `/`: lines `[<localtime>|<CFGNAME>|<pid>] msg` appended.
    File(PathBuf),
    /// Anything else is a syslog facility (ident `ldirectord`, option pid, priority info).
    Syslog(String),
}

/// Which daemon states send e-mail alerts (`emailalertstatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailAlertStatus {
    pub starting: bool,
    pub running: bool,
    pub stopping: bool,
    pub reloading: bool,
}

impl EmailAlertStatus {
    pub const ALL: EmailAlertStatus = EmailAlertStatus {
        starting: true,
        running: true,
        stopping: true,
        reloading: true,
    };
    pub const NONE: EmailAlertStatus = EmailAlertStatus {
        starting: false,
        running: false,
        stopping: false,
        reloading: false,
    };
}

/// The global `fallback`/`fallback6`, resolved for both protocols as ldirectord does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalFallback {
    pub line: usize,
    pub address: IpAddr,
    /// The port resolved for TCP virtuals; `None` when the directive gave no port, in which
    /// case each virtual's own port is used.
    pub tcp_port: Option<u16>,
    /// The port resolved for UDP virtuals (a service name can exist for one protocol only).
    pub udp_port: Option<u16>,
    pub forwarding: Forwarding,
}

/// Address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Inet,
    Inet6,
}

/// Transport protocol of an address-and-port virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// What a virtual service matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VirtualAddress {
    /// `virtual = ip:port` / `virtual6 = [ip]:port` (hostnames and service names resolved).
    Socket {
        protocol: Protocol,
        address: SocketAddr,
    },
    /// `virtual = mark` / `virtual6 = mark`: packets carrying this firewall mark.
    Fwmark { mark: u32, family: Family },
}

impl VirtualAddress {
    pub fn family(&self) -> Family {
        match self {
            VirtualAddress::Socket {
                address: SocketAddr::V4(_),
                ..
            } => Family::Inet,
            VirtualAddress::Socket {
                address: SocketAddr::V6(_),
                ..
            } => Family::Inet6,
            VirtualAddress::Fwmark { family, .. } => *family,
        }
    }

    /// The transport protocol; `None` for a firewall mark (ldirectord's `fwm`, which its
    /// checks treat as TCP, except that `dns` asks over UDP).
    pub fn protocol(&self) -> Option<Protocol> {
        match self {
            VirtualAddress::Socket { protocol, .. } => Some(*protocol),
            VirtualAddress::Fwmark { .. } => None,
        }
    }

    /// The virtual's port; 0 for a firewall mark (as ldirectord stores it).
    pub fn port(&self) -> u16 {
        match self {
            VirtualAddress::Socket { address, .. } => address.port(),
            VirtualAddress::Fwmark { .. } => 0,
        }
    }
}

/// Forwarding method of a real (or fallback) server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Forwarding {
    /// Direct routing (`ipvsadm -g`).
    Gate,
    /// NAT (`ipvsadm -m`).
    Masq,
    /// IP-in-IP tunnelling (`ipvsadm -i`).
    Ipip,
}

impl Forwarding {
    pub fn as_str(self) -> &'static str {
        match self {
            Forwarding::Gate => "gate",
            Forwarding::Masq => "masq",
            Forwarding::Ipip => "ipip",
        }
    }
}

/// Persistence granularity (`netmask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Netmask {
    /// Dotted quad, for IPv4 virtuals.
    V4(Ipv4Addr),
    /// Prefix length 1..=128, for IPv6 virtuals.
    V6(u8),
}

/// One virtual service, with every value derived as ldirectord's `ld_setup` derives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VirtualService {
    /// Line of the `virtual`/`virtual6` directive.
    pub line: usize,
    /// ldirectord's id string (`tcp:1.2.3.4:80`, `tcp:[2001:db8::1]:80`, `fwm:1`, `fwm6:1`),
    /// used in its messages; unique within a file.
    pub id: String,
    pub address: VirtualAddress,
    /// `scheduler` as ldirectord stores it (default `wrr`); not checked against a list.
    pub scheduler: String,
    /// `persistent`, seconds.
    pub persistent: Option<u32>,
    /// `netmask` (only meaningful with `persistent`).
    pub netmask: Option<Netmask>,
    /// `schedflags`, passed to IPVS as `ipvsadm -b` would.
    pub schedflags: Option<String>,
    /// `ops = yes` (one-packet scheduling) on a UDP service; ldirectord ignores it on others.
    pub ops: bool,
    /// After range expansion, in file order.
    pub reals: Vec<Real>,
    /// The fallback that applies: the virtual's own, else the global one for its family.
    pub fallback: Option<Fallback>,
    pub check: CheckSettings,
    /// Virtual's `quiescent`, else the global.
    pub quiescent: bool,
    /// Virtual's `cleanstop`, else the global.
    pub cleanstop: bool,
    /// Virtual's `fallbackcommand`, else the global.
    pub fallbackcommand: Option<String>,
    /// Virtual's `emailalert`, else the global.
    pub emailalert: Option<String>,
    pub emailalertfreq: u32,
    pub emailalertstatus: EmailAlertStatus,
    pub smtp: Option<String>,
    /// `monitorfile`: where check results are appended.
    pub monitorfile: Option<PathBuf>,
    /// `servicename` and `comment`: free text for e-mails.
    pub servicename: Option<String>,
    pub comment: Option<String>,
    /// xdirectord `backend`, else the global; `None` lets the agent choose.
    pub backend: Option<BackendKind>,
    /// xdirectord `interface`, else the global; empty lets the agent choose.
    pub interfaces: Vec<String>,
    /// xdirectord `xdpmode`, else the global.
    pub xdpmode: Option<XdpMode>,
}

/// How reals of a virtual are checked, fully derived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckSettings {
    pub checktype: CheckType,
    /// `service`, else derived from the virtual's port; `none` for firewall marks.
    pub service: Service,
    /// `checkport` as given in the block; each real's effective port is in [`RealCheck`].
    pub checkport: Option<u16>,
    /// Seconds; the virtual's, else its negotiatetimeout, else the global checktimeout, else
    /// the global negotiatetimeout, else 5. 0 (written `00`) means no timeout, as in ldirectord.
    pub checktimeout: u32,
    /// Seconds; the virtual's, else its checktimeout, else the global negotiatetimeout, else
    /// the global checktimeout, else 30.
    pub negotiatetimeout: u32,
    pub failurecount: u32,
    pub checkcount: u32,
    /// Seconds between passes: the virtual's with `fork = yes`, else the global.
    pub checkinterval: u32,
    /// `request`, with the leading `/` ldirectord adds (default `/`).
    pub request: String,
    /// `receive`, a Perl regular expression; empty when unset.
    pub receive: String,
    pub virtualhost: Option<String>,
    pub httpmethod: HttpMethod,
    /// Empty when unset; `service = ftp`/`sip` fill them in (see the compatibility notes).
    pub login: String,
    pub passwd: String,
    pub database: String,
    pub secret: String,
    /// `checkcommand` (default `/bin/true`).
    pub checkcommand: String,
    /// `load = "word"`: legacy, stored, unused by ldirectord.
    pub load: Option<String>,
}

/// `checktype`: how the reals of a virtual are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckType {
    /// TCP connect, then close. With `protocol = udp` ldirectord runs [`CheckType::Ping`]
    /// instead.
    Connect,
    /// The service's own negotiate check ([`Service`]).
    Negotiate,
    /// A value containing digits: connect checks with a negotiate check after every N
    /// successful connects (ldirectord's "combined"); the first check is a negotiate and a
    /// failed connect forces one.
    Combined(u32),
    /// ICMP echo, up to `checkcount` attempts of `checktimeout` each.
    Ping,
    /// Never checked and never up: ldirectord does nothing on each pass, so reals (and the
    /// fallback) are never activated by a check.
    Off,
    /// Always up, no probe.
    On,
    /// Run `checkcommand <vip-or-fwmark> <vport> <rip> <rport>`; exit status 0 means up.
    External,
    /// As `External`, but the command file is a Perl script.
    ExternalPerl,
}

/// `httpmethod`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Head,
}

/// One real server of a virtual.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Real {
    /// Line of the `real`/`real6` directive.
    pub line: usize,
    pub address: IpAddr,
    /// 0 when not given (meant for firewall-mark services).
    pub port: u16,
    pub forwarding: Forwarding,
    /// Default 1; 0 is allowed.
    pub weight: u32,
    /// Per-real `"request", "receive"` as written (request with its leading `/`).
    pub request: Option<String>,
    pub receive: Option<String>,
    /// `l:N`: IPVS lower connection threshold.
    pub lower_threshold: Option<u32>,
    /// `u:N`: IPVS upper connection threshold.
    pub upper_threshold: Option<u32>,
    pub check: RealCheck,
}

/// What the checker uses for one real, derived as `ld_setup` derives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealCheck {
    /// `checkport`, else the real's port when non-zero, else the service's well-known port;
    /// `None` when none of these exists.
    pub port: Option<u16>,
    /// The per-real request, else the virtual's.
    pub request: String,
    /// The per-real receive, else the virtual's.
    pub receive: String,
    /// `<schema>://<real>:<port>/<request>` or the request itself when it is already a URL
    /// (or, for http_proxy, always the request itself).
    pub url: String,
}

/// The fallback server of a virtual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    /// Line of the `fallback` directive (in the block, or the global one).
    pub line: usize,
    pub address: IpAddr,
    /// The virtual's port when the directive gave none; 0 for firewall marks.
    pub port: u16,
    pub forwarding: Forwarding,
}

/// xdirectord's `backend` directive: which data plane serves a virtual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendKind {
    /// XDP where the program can serve the virtual, IPVS otherwise (the default).
    Auto,
    Xdp,
    Ipvs,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Xdp => "xdp",
            BackendKind::Ipvs => "ipvs",
        }
    }
}

/// A prefix of xdirectord's `tunnelsource`: the outer source of an `ipip` real's packets is
/// this prefix with its host bits (at most the last 32) taken from a hash of the flow, so that
/// the real's NIC spreads the tunnel over its receive queues (RSS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TunnelPrefix {
    pub addr: std::net::IpAddr,
    pub len: u8,
}

impl TunnelPrefix {
    /// How many low bits of the address vary per flow.
    pub fn flow_bits(&self) -> u8 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        (width - self.len).min(32)
    }
}

/// xdirectord's `xdpmode` directive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    Native,
    Generic,
}
