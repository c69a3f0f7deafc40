//! From the configuration to lb-health's [`CheckSpec`]s: one per virtual × real, with every
//! value ldirectord's `ld_setup` derives (lb-config derives them, lb-health's
//! `CheckSpec::from_config` turns them into a spec; both crates speak one vocabulary).
//! lb-health deduplicates equal specs, so a real listed in several virtuals is probed once.
//!
//! Also the checks xdirectord makes before it uses a configuration (`-t`, start, reload):
//! a check lb-health cannot run is refused here with a message, never treated as up.

use lb_config::{Config, Diagnostic, Origin, Real, Severity, VirtualAddress, VirtualService};
use lb_health::{CheckSpec, Checker};

use super::desired::{RealKey, service_key};

/// The check of `real` in `vs`, as ldirectord would run it.
pub fn spec(config: &Config, vs: &VirtualService, real: &Real) -> CheckSpec {
    CheckSpec::from_config(config, vs, real)
}

/// Every check of the configuration, keyed by virtual and real, in file order. A real listed
/// twice in one virtual is checked once (the data plane can hold it only once).
pub fn specs(config: &Config) -> Vec<(RealKey, CheckSpec)> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for vs in &config.virtuals {
        let service = service_key(vs);
        for real in &vs.reals {
            let key = RealKey::new(service, real);
            if seen.insert(key) {
                out.push((key, spec(config, vs, real)));
            }
        }
    }
    out
}

/// The first check of `config` that lb-health refuses (an unsupported `service`, a `receive`
/// it cannot compile, a zero timeout …), as an error about the line of the virtual (or of the
/// real, for a real's own request and receive).
pub fn refusal(config: &Config) -> Option<Diagnostic> {
    for vs in &config.virtuals {
        for real in &vs.reals {
            if let Err(e) = Checker::new(spec(config, vs, real)) {
                let line = if real.request.is_some() {
                    real.line
                } else {
                    vs.line
                };
                return Some(error(line, format!("virtual service {}: {e}", vs.id)));
            }
        }
    }
    None
}

/// An error about `line` in ldirectord's format, marked as xdirectord's own.
pub fn error(line: usize, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        origin: Origin::Xdirectord,
        line: Some(line),
        message,
    }
}

/// ldirectord's `get_real_id_str`: `check:proto:ip:port:virtualhost:checkport:weight:forward:`
/// `quotemeta(request):quotemeta(receive)`, which names the real in `monitorfile` lines.
pub fn ldirectord_real_id(vs: &VirtualService, real: &Real) -> String {
    let check = match vs.check.checktype {
        lb_config::CheckType::Negotiate => format!("negotiate:{}", vs.check.service.as_str()),
        lb_config::CheckType::Combined(_) => format!("combined:{}", vs.check.service.as_str()),
        lb_config::CheckType::External => format!("external:{}", vs.check.checkcommand),
        lb_config::CheckType::ExternalPerl => format!("external-perl:{}", vs.check.checkcommand),
        lb_config::CheckType::Connect => "connect".into(),
        lb_config::CheckType::Ping => "ping".into(),
        lb_config::CheckType::Off => "off".into(),
        lb_config::CheckType::On => "on".into(),
    };
    let protocol = match vs.address {
        VirtualAddress::Socket { protocol, .. } => protocol.as_str(),
        VirtualAddress::Fwmark { .. } => "fwm",
    };
    let server = match real.address {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    };
    format!(
        "{check}:{protocol}:{server}:{}:{}:{}:{}:{}:{}:{}",
        real.port,
        vs.check.virtualhost.as_deref().unwrap_or(""),
        vs.check
            .checkport
            .map(|p| p.to_string())
            .unwrap_or_default(),
        real.weight,
        real.forwarding.as_str(),
        quotemeta(&real.check.request),
        quotemeta(&real.check.receive),
    )
}

/// Perl's `quotemeta`: a backslash before every character that is not a word character.
fn quotemeta(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if !(c.is_ascii_alphanumeric() || c == '_') && c.is_ascii() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::testing::StaticEnvironment;
    use std::time::Duration;

    fn parse(text: &str) -> Config {
        lb_config::parse(
            text.as_bytes(),
            "t.cf".as_ref(),
            &StaticEnvironment::default(),
        )
        .expect("valid")
    }

    #[test]
    fn every_derived_value_reaches_the_spec() {
        let config = parse(
            "checktimeout=3\nnegotiatetimeout=7\ncheckinterval=2\nmaintenancedir=/tmp\n\
             virtual=192.0.2.1:80\n\
             \treal=192.0.2.11:8080 gate 2 \"health\", \"ok\"\n\
             \treal=192.0.2.12 gate\n\
             \tservice=http\n\tchecktype=negotiate\n\trequest=\"index.html\"\n\treceive=\"Test\"\n\
             \tvirtualhost=www.example.com\n\thttpmethod=HEAD\n\tcheckcount=2\n",
        );
        let specs = specs(&config);
        assert_eq!(specs.len(), 2);
        let (key, a) = &specs[0];
        assert_eq!(key.real, "192.0.2.11:8080".parse().unwrap());
        assert_eq!(a.check_type, lb_config::CheckType::Negotiate);
        assert_eq!(a.negotiate.service(), lb_config::Service::Http);
        assert_eq!(a.protocol(), Some(lb_config::Protocol::Tcp));
        assert_eq!(a.virtual_address, config.virtuals[0].address);
        assert_eq!(a.check_port, 8080);
        let lb_health::Negotiate::Http(http) = &a.negotiate else {
            panic!("{:?}", a.negotiate)
        };
        assert_eq!(
            (http.request.as_str(), http.receive.as_str()),
            ("/health", "ok")
        );
        assert_eq!(http.virtualhost.as_deref(), Some("www.example.com"));
        assert_eq!(http.method, lb_config::HttpMethod::Head);
        assert_eq!(a.check_timeout, Duration::from_secs(3));
        assert_eq!(a.negotiate_timeout, Duration::from_secs(7));
        assert_eq!(a.check_interval, Duration::from_secs(2));
        assert_eq!(a.check_count, 2);
        assert_eq!(a.maintenance_dir.as_deref(), Some("/tmp".as_ref()));
        let (_, b) = &specs[1];
        assert_eq!(b.check_port, 80, "no port: the service's");
        let lb_health::Negotiate::Http(http) = &b.negotiate else {
            panic!("{:?}", b.negotiate)
        };
        assert_eq!(
            (http.request.as_str(), http.receive.as_str()),
            ("/index.html", "Test")
        );
    }

    #[test]
    fn checkport_udp_fwmark_and_external() {
        let config = parse(
            "virtual=192.0.2.1:53\n\treal=192.0.2.11:53 gate\n\tchecktype=connect\n\tcheckport=5353\n\
             \n\
             virtual=7\n\treal=192.0.2.12 gate\n\tchecktype=external\n\tcheckcommand=\"/bin/check it\"\n",
        );
        let specs = specs(&config);
        assert_eq!(specs[0].1.protocol(), Some(lb_config::Protocol::Udp));
        assert_eq!(specs[0].1.check_port, 5353);
        assert!(matches!(
            specs[1].1.virtual_address,
            VirtualAddress::Fwmark { mark: 7, .. }
        ));
        assert_eq!(specs[1].1.protocol(), None);
        assert_eq!(specs[1].1.check_type, lb_config::CheckType::External);
        assert_eq!(specs[1].1.check_command, "/bin/check it");
    }

    #[test]
    fn credentials_reach_the_checks() {
        let config = parse(
            "virtual=192.0.2.1:3306\n\treal=192.0.2.11:3306 gate\n\tservice=mysql\n\
             \tlogin=\"probe\"\n\tpasswd=\"pw\"\n\tdatabase=\"shop\"\n\trequest=\"SELECT 1\"\n",
        );
        let (_, spec) = &specs(&config)[0];
        let lb_health::Negotiate::Sql(sql) = &spec.negotiate else {
            panic!("{:?}", spec.negotiate)
        };
        assert_eq!(
            (
                sql.login.user.as_str(),
                sql.login.password.as_str(),
                sql.database.as_str(),
                sql.request.as_str()
            ),
            ("probe", "pw", "shop", "/SELECT 1")
        );
    }

    #[test]
    fn every_service_ldirectord_knows_is_accepted() {
        for service in lb_config::Service::ALL {
            let config = parse(&format!(
                "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\tservice={}\n\
                 \trequest=\"x\"\n\treceive=\"x\"\n\tlogin=\"u\"\n",
                service.as_str()
            ));
            let refused = refusal_of(&config);
            // http_proxy needs an absolute URL (refused with a message, see docs).
            if service == lb_config::Service::HttpProxy {
                assert!(refused.is_some());
            } else {
                assert_eq!(refused, None, "{}", service.as_str());
            }
        }
    }

    fn refusal_of(config: &Config) -> Option<String> {
        refusal(config).map(|d| d.message)
    }

    #[test]
    fn duplicate_reals_in_one_virtual_are_checked_once() {
        let config =
            parse("virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\treal=192.0.2.11:80 gate 3\n");
        assert_eq!(specs(&config).len(), 1);
    }

    #[test]
    fn real_ids_are_ldirectords() {
        let config = parse(
            "virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate 2\n\tservice=http\n\trequest=\"a:b\"\n\treceive=\"x.y\"\n",
        );
        let vs = &config.virtuals[0];
        assert_eq!(
            ldirectord_real_id(vs, &vs.reals[0]),
            r"negotiate:http:tcp:192.0.2.11:80:::2:gate:\/a\:b:x\.y"
        );
    }
}
