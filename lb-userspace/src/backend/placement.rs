//! Which data plane serves each virtual: `--backend`, else the virtual's `backend` (which
//! lb-config already falls back to the global one), else `auto`: XDP where the XDP program can
//! serve the virtual, IPVS for the rest. Pure: whether the kernel has IPVS is found when the
//! backends open.

use lb_config::{BackendKind, Config, VirtualService};

use crate::director::desired::{self, Placement, service_key};
use crate::director::state::Health;
use crate::table::{Service, ServiceKey};

/// What the command line says about the data plane; it overrides the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendOverrides {
    /// `--backend`: every virtual on this data plane.
    pub backend: Option<BackendKind>,
    /// `--interface IF[,IF…]`; empty = as the file says.
    pub interfaces: Vec<String>,
    /// `--metrics ADDR:PORT`: where to serve metrics, whatever the file says.
    pub metrics: Option<std::net::SocketAddr>,
}

impl BackendOverrides {
    /// Where metrics are served: `--metrics`, else the file's `metrics`; `None` = nowhere.
    pub fn metrics(&self, config: &lb_config::Config) -> Option<std::net::SocketAddr> {
        self.metrics.or(config.global.metrics)
    }

    /// The backend asked for `vs`: `--backend`, else the virtual's (or the file's), else auto.
    pub fn asked(&self, vs: &VirtualService) -> BackendKind {
        self.backend.or(vs.backend).unwrap_or(BackendKind::Auto)
    }

    /// The interfaces in force: `--interface`, else the file's `interface` lines, global and
    /// per virtual (the program is attached to each; a virtual's packets are balanced on
    /// whichever interface they arrive).
    pub fn interfaces(&self, config: &Config) -> Vec<String> {
        if !self.interfaces.is_empty() {
            return self.interfaces.clone();
        }
        let mut interfaces = config.global.interfaces.clone();
        for name in config.virtuals.iter().flat_map(|vs| &vs.interfaces) {
            if !interfaces.contains(name) {
                interfaces.push(name.clone());
            }
        }
        interfaces
    }
}

/// Where one virtual runs, and why, in a line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub key: ServiceKey,
    pub backend: BackendKind,
    pub why: String,
}

/// Every entry of `vs` the data plane may ever hold: every real as if up, and the fallback.
pub fn everything(vs: &VirtualService, backend: BackendKind) -> Service {
    let mut service = desired::service(vs, backend, |_| Health::Up);
    service.fallback = desired::fallback_entry(vs);
    service
}

/// Chooses a data plane for each virtual. `Err` names the first virtual that asks for XDP and
/// cannot have it, as a configuration error at its line.
pub fn place(
    config: &Config,
    overrides: &BackendOverrides,
) -> Result<Vec<Choice>, (usize, String)> {
    let interfaces = overrides.interfaces(config);
    config
        .virtuals
        .iter()
        .map(|vs| {
            let key = service_key(vs);
            let xdp = if interfaces.is_empty() {
                Err("no interface to attach the XDP program to (set interface = )".to_string())
            } else {
                crate::backend::xdp::validate(&key, &everything(vs, BackendKind::Xdp))
            };
            let asked = overrides.asked(vs);
            let (backend, why) = match (asked, xdp) {
                (BackendKind::Xdp | BackendKind::Auto, Ok(())) => {
                    (BackendKind::Xdp, format!("XDP on {}", interfaces.join(",")))
                }
                (BackendKind::Xdp, Err(why)) => {
                    return Err((
                        vs.line,
                        format!("virtual service {}: backend xdp: {why}", vs.id),
                    ));
                }
                (BackendKind::Auto, Err(why)) => (BackendKind::Ipvs, format!("IPVS: {why}")),
                (BackendKind::Ipvs, _) => (BackendKind::Ipvs, "IPVS, as configured".to_string()),
            };
            Ok(Choice { key, backend, why })
        })
        .collect()
}

/// A line per virtual saying where it runs and why, for the log at start and reload.
pub fn lines(config: &Config, choices: &[Choice]) -> Vec<String> {
    choices
        .iter()
        .zip(&config.virtuals)
        .map(|(c, vs)| format!("Virtual service {} runs on {}", vs.id, c.why))
        .collect()
}

/// The placement the director takes.
pub fn placement(choices: &[Choice]) -> Placement {
    choices.iter().map(|c| (c.key, c.backend)).collect()
}

/// What ipvsadm would refuse of a virtual placed on IPVS, as ldirectord would meet it: the
/// virtual (or real) then never appears in the table. Said as warnings by `-t` and at start.
pub fn ipvs_warnings(config: &Config, choices: &[Choice]) -> Vec<(usize, String)> {
    const SCHEDULERS: &[&str] = &[
        "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
        "twos",
    ];
    let mut warnings = Vec::new();
    for (vs, choice) in config.virtuals.iter().zip(choices) {
        if choice.backend != BackendKind::Ipvs {
            continue;
        }
        let service = everything(vs, BackendKind::Ipvs);
        if let Err(why) = crate::backend::ipvs::validate(&choice.key, &service) {
            warnings.push((
                vs.line,
                format!("virtual service {}: ipvsadm refuses it: {why}", vs.id),
            ));
        }
        if !SCHEDULERS.contains(&vs.scheduler.as_str()) {
            warnings.push((
                vs.line,
                format!(
                    "virtual service {}: scheduler {} is not one IPVS has (the kernel will refuse the virtual)",
                    vs.id, vs.scheduler
                ),
            ));
        }
        for real in &vs.reals {
            if let (Some(lower), upper) = (real.lower_threshold, real.upper_threshold.unwrap_or(0))
                && lower > upper
            {
                warnings.push((
                    real.line,
                    format!(
                        "real server {}: a lower threshold (l:{lower}) above the upper one (u:{upper}, 0 = none): the kernel refuses the real (ERANGE), as it does ldirectord's",
                        crate::table::SocketText(real.address, real.port)
                    ),
                ));
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use lb_config::testing::config;

    const MIXED: &str = "interface=eth0\n\
        virtual=192.0.2.1:80\n\treal=192.0.2.11:80 gate\n\tchecktype=on\n\
        virtual=192.0.2.2:80\n\treal=192.0.2.12:80 masq\n\tchecktype=on\n\
        virtual=7\n\treal=192.0.2.13 gate\n\tchecktype=on\n\
        virtual=192.0.2.3:80\n\treal=192.0.2.14:80 gate\n\tchecktype=on\n\tbackend=ipvs\n";

    #[test]
    fn auto_puts_on_xdp_what_it_can_serve_and_the_rest_on_ipvs() {
        let choices = place(&config(MIXED), &BackendOverrides::default()).unwrap();
        let backends: Vec<BackendKind> = choices.iter().map(|c| c.backend).collect();
        assert_eq!(
            backends,
            [
                BackendKind::Xdp,
                BackendKind::Ipvs,
                BackendKind::Ipvs,
                BackendKind::Ipvs
            ]
        );
        assert_eq!(choices[0].why, "XDP on eth0");
        assert!(choices[1].why.contains("masq"), "{}", choices[1].why);
        assert!(
            choices[2].why.contains("firewall marks"),
            "{}",
            choices[2].why
        );
        assert_eq!(choices[3].why, "IPVS, as configured");
    }

    #[test]
    fn without_an_interface_everything_is_ipvs() {
        let text = MIXED.replace("interface=eth0\n", "");
        let choices = place(&config(&text), &BackendOverrides::default()).unwrap();
        assert!(choices.iter().all(|c| c.backend == BackendKind::Ipvs));
        assert!(
            choices[0].why.contains("no interface"),
            "{}",
            choices[0].why
        );
    }

    #[test]
    fn xdp_asked_for_and_impossible_is_an_error_at_the_virtual_s_line() {
        let xdp = BackendOverrides {
            backend: Some(BackendKind::Xdp),
            ..Default::default()
        };
        let (line, message) = place(&config(MIXED), &xdp).unwrap_err();
        assert_eq!(line, 5);
        assert_eq!(
            message,
            "virtual service tcp:192.0.2.2:80: backend xdp: real server 192.0.2.12:80: forwarding method masq needs the IPVS backend"
        );
    }

    #[test]
    fn what_ipvsadm_refuses_is_a_warning() {
        let c = config(
            "virtual=192.0.2.1:0\n\treal=192.0.2.11 masq l:10\n\tchecktype=on\n\tscheduler=fancy\n",
        );
        let choices = place(&c, &BackendOverrides::default()).unwrap();
        let warnings: Vec<String> = ipvs_warnings(&c, &choices)
            .into_iter()
            .map(|(_, w)| w)
            .collect();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("Zero port specified for non-persistent service"));
        assert!(warnings[1].contains("scheduler fancy"));
        assert!(warnings[2].contains("ERANGE"));
    }
}
