//! ldirectord's `ld_setup` and the lookups it does at run time (`fallback_find`,
//! `ld_checkport`, per-virtual settings falling back on the global ones): the effective
//! value of everything, computed once the whole file is read, since global directives may
//! follow the blocks they apply to.

use std::net::IpAddr;

use crate::diagnostics::Diagnostic;
use crate::model::{
    CheckSettings, Fallback, GlobalFallback, GlobalSettings, Protocol, Real, RealCheck,
    VirtualAddress, VirtualService, XdpMode,
};
use crate::parse::Reader;
use crate::quirk;
use crate::real::ParsedReal;
use crate::resolve::ResolvedVirtual;
use crate::service::Service;

pub(crate) fn derive(
    reader: &mut Reader<'_>,
    virtuals: Vec<ResolvedVirtual>,
) -> Result<Vec<VirtualService>, Diagnostic> {
    let mut out = Vec::with_capacity(virtuals.len());
    for v in virtuals {
        let fallback = effective_fallback(reader, &v);
        out.push(virtual_service(&reader.global, v, fallback));
    }
    check_xdpmode_conflicts(&out)?;
    Ok(out)
}

fn virtual_service(
    g: &GlobalSettings,
    v: ResolvedVirtual,
    fallback: Option<Fallback>,
) -> VirtualService {
    let b = &v.block;
    let (checktimeout, negotiatetimeout) = timeouts(
        b.checktimeout,
        b.negotiatetimeout,
        g.checktimeout,
        g.negotiatetimeout,
    );
    let check = CheckSettings {
        checktype: b.checktype,
        service: v.service,
        checkport: b.checkport,
        checktimeout,
        negotiatetimeout,
        failurecount: b.failurecount.unwrap_or(g.failurecount),
        checkcount: b.checkcount.unwrap_or(g.checkcount),
        // Only a forking ldirectord runs a loop per virtual (`$$v{checkinterval} ||
        // $CHECKINTERVAL`); otherwise one loop for all uses the global interval.
        checkinterval: match (g.fork, b.checkinterval) {
            (true, Some(interval)) => interval,
            _ => g.checkinterval,
        },
        request: b.request.clone(),
        receive: b.receive.clone(),
        virtualhost: b.virtualhost.clone(),
        httpmethod: b.httpmethod,
        login: b.login.clone(),
        passwd: b.passwd.clone(),
        database: b.database.clone(),
        secret: b.secret.clone(),
        checkcommand: b.checkcommand.clone(),
        load: b.load.clone(),
    };
    let reals = v.reals.iter().map(|r| real(&check, r)).collect();
    VirtualService {
        line: b.line,
        id: v.id.clone(),
        address: v.address,
        scheduler: b.scheduler.clone(),
        persistent: b.persistent,
        netmask: b.netmask,
        schedflags: b.schedflags.clone(),
        ops: b.ops
            && matches!(
                v.address,
                VirtualAddress::Socket {
                    protocol: Protocol::Udp,
                    ..
                }
            ),
        reals,
        fallback,
        check,
        quiescent: b.quiescent.unwrap_or(g.quiescent),
        cleanstop: b.cleanstop.unwrap_or(g.cleanstop),
        fallbackcommand: b
            .fallbackcommand
            .clone()
            .or_else(|| g.fallbackcommand.clone()),
        emailalert: b.emailalert.clone().or_else(|| g.emailalert.clone()),
        emailalertfreq: b.emailalertfreq.unwrap_or(g.emailalertfreq),
        emailalertstatus: b.emailalertstatus.unwrap_or(g.emailalertstatus),
        smtp: b.smtp.clone().or_else(|| g.smtp.clone()),
        monitorfile: b.monitorfile.clone(),
        servicename: b.servicename.clone(),
        comment: b.comment.clone(),
        backend: b.backend.or(g.backend),
        interfaces: b.interfaces.clone().unwrap_or_else(|| g.interfaces.clone()),
        xdpmode: b.xdpmode.or(g.xdpmode),
    }
}

/// `checktimeout` and `negotiatetimeout` are each other's default, the virtual's before the
/// global's, then 5 and 30 seconds.
pub(crate) fn timeouts(
    v_check: Option<u32>,
    v_negotiate: Option<u32>,
    g_check: Option<u32>,
    g_negotiate: Option<u32>,
) -> (u32, u32) {
    let check = v_check
        .or(v_negotiate)
        .or(g_check)
        .or(g_negotiate)
        .unwrap_or(5);
    let negotiate = v_negotiate
        .or(v_check)
        .or(g_negotiate)
        .or(g_check)
        .unwrap_or(30);
    (check, negotiate)
}

/// ldirectord's `ld_checkport`: `checkport`, else the real's port when non-zero, else the
/// service's well-known port; `None` when none of these exists (`none`, `simpletcp`).
pub fn check_port(checkport: Option<u16>, real_port: u16, service: Service) -> Option<u16> {
    checkport
        .or((real_port > 0).then_some(real_port))
        .or_else(|| service.well_known_port())
}

fn real(check: &CheckSettings, r: &ParsedReal) -> Real {
    let port = check_port(check.checkport, r.port, check.service);
    // Only a complete per-real pair replaces the virtual's URL and receive string; a request
    // whose receive string ldirectord lost still replaces the request itself (used by the
    // checks that read it rather than the URL: ldap, sql, simpletcp, ftp, dns).
    let pair = r.request.is_some() && r.receive.is_some();
    let request = r.request.clone().unwrap_or_else(|| check.request.clone());
    let receive = match (&r.receive, pair) {
        (Some(receive), true) => receive.clone(),
        _ => check.receive.clone(),
    };
    let url = check_url(
        check.service,
        r,
        port,
        if pair { &request } else { &check.request },
        pair,
    );
    Real {
        line: r.line,
        address: r.address,
        port: r.port,
        forwarding: r.forwarding,
        weight: r.weight,
        request: r.request.clone(),
        receive: r.receive.clone(),
        lower_threshold: r.lower_threshold,
        upper_threshold: r.upper_threshold,
        check: RealCheck {
            port,
            request,
            receive,
            url,
        },
    }
}

/// `ld_setup`'s URL. A per-real request containing `<schema>://` is a URL already;
/// `http_proxy` fetches the virtual's request as given (it must be an absolute URL).
fn check_url(
    service: Service,
    r: &ParsedReal,
    port: Option<u16>,
    request: &str,
    pair: bool,
) -> String {
    let schema = match service {
        Service::HttpProxy => "http",
        other => other.as_str(),
    };
    let uri = request.strip_prefix('/').unwrap_or(request);
    let is_url = if pair {
        request.contains(&format!("{schema}://"))
    } else {
        service == Service::HttpProxy
    };
    if is_url {
        return uri.to_string();
    }
    let host = match r.address {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let port = port.map(|p| p.to_string()).unwrap_or_default();
    format!("{schema}://{host}:{port}/{uri}")
}

/// `fallback_find`: the block's own, else the global one for the family, with its port for the
/// virtual's protocol or else the virtual's port.
fn effective_fallback(reader: &mut Reader<'_>, v: &ResolvedVirtual) -> Option<Fallback> {
    if let Some(own) = &v.fallback {
        return Some(own.clone());
    }
    let global: &GlobalFallback = match v.address.family() {
        crate::model::Family::Inet => reader.global.fallback.as_ref(),
        crate::model::Family::Inet6 => reader.global.fallback6.as_ref(),
    }?;
    let (protocol, port) = match v.address {
        VirtualAddress::Socket { protocol, address } => (protocol, address.port()),
        VirtualAddress::Fwmark { .. } => {
            reader.warn(quirk::global_fallback_fwmark(v.block.line, &v.id));
            return None;
        }
    };
    let own_port = match protocol {
        Protocol::Tcp => global.tcp_port,
        Protocol::Udp => global.udp_port,
    };
    Some(Fallback {
        line: global.line,
        address: global.address,
        port: own_port.unwrap_or(port),
        forwarding: global.forwarding,
    })
}

/// One XDP program is attached per interface, in one mode: two virtuals that name the same
/// interface cannot ask for different modes.
fn check_xdpmode_conflicts(virtuals: &[VirtualService]) -> Result<(), Diagnostic> {
    let mut modes: Vec<(&str, XdpMode, &VirtualService)> = Vec::new();
    for v in virtuals {
        let Some(mode) = v.xdpmode else { continue };
        for interface in &v.interfaces {
            if let Some((_, other_mode, other)) =
                modes.iter().find(|(i, m, _)| i == interface && *m != mode)
            {
                return Err(Diagnostic::error(
                    v.line,
                    format!(
                        "xdpmode {} of virtual service {} conflicts with xdpmode {} of virtual service {} on interface {interface}",
                        mode_name(mode),
                        v.id,
                        mode_name(*other_mode),
                        other.id
                    ),
                )
                .ours());
            }
            modes.push((interface, mode, v));
        }
    }
    Ok(())
}

fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Native => "native",
        XdpMode::Generic => "generic",
    }
}
